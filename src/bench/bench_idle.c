/*
 * bench_idle.c - `moor bench idle`: the server's memory per idle
 * connection. It reads the server's VmRSS (/proc/PID/status) and Pss and
 * Private (/proc/PID/smaps_rollup) after the warm-up, once all are open,
 * and after --hold; bytes per connection = growth / open conns.
 */
#include <inttypes.h>
#include <stdio.h>

#include "bench_int.h"
#include "procfs.h"
#include "util.h"

static void idle_start(struct bench *b)
{
    b->at_open.ok = procfs_mem(b->pid, &b->at_open.m) == 0;
    if (b->o.hold_ms)
        bench_note(b, "holding them idle for %.1f s", b->o.hold_ms / 1000.0);
    loop_timer_in(b->loop, &b->timer, MAX(b->o.hold_ms, 1u));
}

static void idle_on_timer(struct bench *b)
{
    b->after.ok = procfs_mem(b->pid, &b->after.m) == 0;
    b->open_at_end = b->open;
    if (!b->after.ok)
        bench_stop(b, "cannot read the memory of pid %d (has it exited?)",
                   (int)b->pid);
    else
        bench_begin_close(b);
}

/* (after - before) / n, or INT64_MIN when not known. */
static int64_t per_conn(int64_t before, int64_t after, uint32_t n)
{
    if (before < 0 || after < 0 || n == 0)
        return INT64_MIN;
    return (after - before) / (int64_t)n;
}

static void idle_row(FILE *out, const char *label, const struct mem_sample *s)
{
    const struct procfs_mem *m = &s->m;

    if (!s->ok) {
        fprintf(out, "  %-22s %12s %12s %12s\n", label, "-", "-", "-");
        return;
    }
    fprintf(out, "  %-22s %12" PRId64 " %12" PRId64 " %12" PRId64 "\n", label,
            m->vm_rss / 1024, m->pss >= 0 ? m->pss / 1024 : -1,
            m->priv >= 0 ? m->priv / 1024 : -1);
}

static uint32_t idle_n(const struct bench *b)
{
    return b->open_at_end ? b->open_at_end : b->open;
}

static void idle_report(struct bench *b, FILE *out)
{
    uint32_t n = idle_n(b);
    char hold[48];

    fprintf(out, "idle %s (server pid %d)\n", b->o.url, (int)b->pid);
    fprintf(out,
            "connections  %" PRIu32 " of %" PRIu32 " open in %.2f s, "
            "%" PRIu32 " failed, %" PRIu32 " closed early; %" PRIu32
            " source address%s\n",
            n, b->o.conns, bench_open_secs(b), b->failed, b->lost, b->nsrc,
            b->nsrc == 1 ? "" : "es");
    fprintf(out, "server memory (KiB)    %12s %12s %12s\n", "VmRSS", "Pss",
            "Private");
    idle_row(out, "before", &b->before);
    idle_row(out, "all open", &b->at_open);
    snprintf(hold, sizeof(hold), "after %.1f s idle", b->o.hold_ms / 1000.0);
    idle_row(out, hold, &b->after);
    if (b->before.ok && b->after.ok && n) {
        int64_t rss = per_conn(b->before.m.vm_rss, b->after.m.vm_rss, n);
        int64_t pss = per_conn(b->before.m.pss, b->after.m.pss, n);
        int64_t prv = per_conn(b->before.m.priv, b->after.m.priv, n);

        fprintf(out, "bytes per connection   %12" PRId64, rss);
        if (pss != INT64_MIN)
            fprintf(out, " %12" PRId64 " %12" PRId64, pss, prv);
        fprintf(out, "\n");
    }
}

static void json_mem(FILE *out, const char *name, const struct mem_sample *s)
{
    fprintf(out, "\"%s\": ", name);
    if (!s->ok) {
        fputs("null", out);
        return;
    }
    fprintf(out,
            "{\"vm_rss\": %" PRId64 ", \"rss_anon\": %" PRId64
            ", \"pss\": %" PRId64 ", \"private\": %" PRId64 "}",
            s->m.vm_rss, s->m.rss_anon, s->m.pss, s->m.priv);
}

static void json_per_conn(FILE *out, const char *name, int64_t v)
{
    if (v == INT64_MIN)
        fprintf(out, "\"%s\": null", name);
    else
        fprintf(out, "\"%s\": %" PRId64, name, v);
}

static void idle_report_json(struct bench *b, FILE *out)
{
    uint32_t n = idle_n(b);
    bool ok = b->before.ok && b->after.ok && n;

    fprintf(out, "\"pid\": %d, \"hold_s\": %.3f, \"open_s\": %.3f, ",
            (int)b->pid, b->o.hold_ms / 1000.0, bench_open_secs(b));
    json_mem(out, "before", &b->before);
    fputs(", ", out);
    json_mem(out, "all_open", &b->at_open);
    fputs(", ", out);
    json_mem(out, "after_hold", &b->after);
    fputs(", ", out);
    json_per_conn(out, "bytes_per_conn",
                  ok ? per_conn(b->before.m.vm_rss, b->after.m.vm_rss, n)
                     : INT64_MIN);
    fputs(", ", out);
    json_per_conn(out, "pss_per_conn",
                  ok ? per_conn(b->before.m.pss, b->after.m.pss, n)
                     : INT64_MIN);
    fputs(", ", out);
    json_per_conn(out, "private_per_conn",
                  ok ? per_conn(b->before.m.priv, b->after.m.priv, n)
                     : INT64_MIN);
}

const struct bench_mode bench_idle = {
    .name = "idle",
    .bit = M_IDLE,
    .default_conns = 10000,
    .summary = "open --conns connections, hold them idle for --hold, "
               "and report the server's memory per connection: the "
               "growth of its VmRSS (/proc/PID/status) and of its Pss "
               "and Private (/proc/PID/smaps_rollup) from before the "
               "first connection to the end of the hold, divided by "
               "the connections open",
    .needs_pid = true,
    .start = idle_start,
    .on_timer = idle_on_timer,
    .report = idle_report,
    .report_json = idle_report_json,
};
