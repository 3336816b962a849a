/*
 * debug.c - the /debug/conns listing; see debug.h.
 *
 * Keeps: reading only; one TCP_INFO read per conn listed (conn_tcp_info()).
 */
#include <errno.h>
#include <string.h>
#include <linux/tcp.h>

#include "debug.h"
#include "loop.h"
#include "mem.h"
#include "metrics.h"

struct walk {
    struct sbuf *out;
    debug_describe_fn *fn;
    void *arg;
    int rc;
};

static void row(struct conn *c, void *arg)
{
    struct walk *w = arg;
    struct tcp_info ti;
    char peer[64], channels[1024] = "", paused[48] = "";
    const char *role = "", *sub = NULL;
    uint32_t now = loop_now(conn_loop(c));
    unsigned long long in = 0, out = 0;
    long long idle = -1;

    if (w->rc < 0)
        return;
    if (conn_tcp_info(c, &ti, sizeof(ti)) == 0) {
        in = ti.tcpi_bytes_received;
        out = ti.tcpi_bytes_acked;
        idle = ti.tcpi_last_data_recv < ti.tcpi_last_data_sent
                   ? ti.tcpi_last_data_recv
                   : ti.tcpi_last_data_sent;
    }
    conn_peer_str(c, peer, sizeof(peer));
    if (w->fn)
        role = w->fn(w->arg, c, channels, sizeof(channels), &sub);
    for (unsigned b = 0; b < PAUSE_CAUSE_COUNT; b++) {
        if (conn_paused(c) & (1u << b)) {
            strcat(paused, pause_cause_name(b));
            strcat(paused, ",");
        }
    }
    if (paused[0])
        paused[strlen(paused) - 1] = '\0';
    w->rc = sbuf_printf(w->out, "{\"id\":%llu,\"protocol\":", conn_id(c));
    if (w->rc == 0)
        w->rc = sbuf_json_str(w->out, conn_proto(c)->name,
                              strlen(conn_proto(c)->name));
    if (w->rc == 0)
        w->rc = sbuf_printf(w->out, ",\"role\":\"%s\",\"peer\":", role);
    if (w->rc == 0)
        w->rc = sbuf_json_str(w->out, peer, strlen(peer));
    if (w->rc == 0)
        w->rc = sbuf_printf(w->out,
                            ",\"age_s\":%u,\"idle_ms\":%lld,"
                            "\"channels\":",
                            (now - conn_created(c)) / 1000, idle);
    if (w->rc == 0)
        w->rc = sbuf_json_str(w->out, channels, strlen(channels));
    if (w->rc == 0 && sub)
        w->rc = sbuf_printf(w->out, ",\"sub\":");
    if (w->rc == 0 && sub)
        w->rc = sbuf_json_str(w->out, sub, strlen(sub));
    if (w->rc == 0)
        w->rc =
            sbuf_printf(w->out,
                        ",\"queued\":%u,\"bytes_in\":%llu,\"bytes_out\":%llu,"
                        "\"state\":\"%s\",\"paused\":\"%s\"}\n",
                        conn_queued_bytes(c), in, out,
                        conn_state_name(conn_state_of(c)), paused);
}

int debug_conns(struct sbuf *out, struct conn_set *set, debug_describe_fn *fn,
                void *arg)
{
    struct walk w = {out, fn, arg, 0};

    conn_set_each(set, row, &w);
    return w.rc;
}

void debug_conns_page(struct http_exchange *ex, struct conn_set *set,
                      debug_describe_fn *fn, void *arg)
{
    struct sbuf b;

    sbuf_init(&b, MEM_METRICS, DEBUG_PAGE_MAX);
    http_respond_page(ex, debug_conns(&b, set, fn, arg), &b,
                      "application/x-ndjson");
}

void debug_mem_page(struct http_exchange *ex, void *arg)
{
    struct sbuf b;

    (void)arg;
    sbuf_init(&b, MEM_METRICS, DEBUG_PAGE_MAX);
    http_respond_page(ex, metrics_debug_mem(&b), &b, "application/json");
}
