/*
 * sdnotify.c - see sdnotify.h. App layer: `moor serve` only; the one
 * file that calls libsystemd.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include "sdnotify.h"
#include "log.h"
#include "util.h"

/* The longest interval between two WATCHDOG=1: feeding more often than
 * the manager asks is harmless, and a tick deadline must stay far below
 * 2^31 ms (timer.h). */
#define WATCHDOG_MAX_MS (3600u * 1000)

/* Sends one message; what it sent is a debug line, a failure a warning
 * (the service keeps running: the manager will notice on its own). */
static void send_state(const struct sdnotify *n, const char *state)
{
    int rc;

    if (!n->on)
        return;
    rc = sd_notify(0, state);
    if (rc > 0)
        LOG_DEBUG("sd_notify", "state=\"%.*s\"", (int)strcspn(state, "\n"),
                  state);
    else
        LOG_WARN("sd_notify failed", "state=\"%.*s\" err=%d",
                 (int)strcspn(state, "\n"), state, rc);
}

/* Fed by the loop's own timer: a loop that is stuck stops feeding it. */
static void on_watchdog(struct timer *t)
{
    struct sdnotify *n = container_of(t, struct sdnotify, watchdog);

    send_state(n, "WATCHDOG=1");
    loop_timer_in(n->loop, &n->watchdog, n->interval_ms);
}

void sdnotify_init(struct sdnotify *n, struct loop *l)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    uint64_t usec = 0;

    n->loop = l;
    n->interval_ms = 0;
    n->status[0] = '\0';
    n->on = sock && *sock;
    timer_init(&n->watchdog, on_watchdog);
    /* > 0 only if WATCHDOG_USEC is set and WATCHDOG_PID (if set) is us. */
    if (n->on && sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
        n->interval_ms = (uint32_t)MIN(MAX(usec / 2000, 1), WATCHDOG_MAX_MS);
}

void sdnotify_ready(struct sdnotify *n, const char *status)
{
    char msg[sizeof(n->status) + 64];

    if (!n->on)
        return;
    snprintf(n->status, sizeof(n->status), "%s", status);
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s\nMAINPID=%d", n->status,
             (int)getpid());
    send_state(n, msg);
    if (n->interval_ms && !tnode_armed(&n->watchdog.node)) {
        LOG_DEBUG("sd_notify watchdog", "interval_ms=%u", n->interval_ms);
        loop_timer_in(n->loop, &n->watchdog, n->interval_ms);
    }
}

void sdnotify_reloading(struct sdnotify *n)
{
    struct timespec ts;
    char msg[96];

    if (!n->on)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull +
                 (unsigned long long)ts.tv_nsec / 1000);
    send_state(n, msg);
}

void sdnotify_reloaded(struct sdnotify *n)
{
    char status[sizeof(n->status)];

    memcpy(status, n->status, sizeof(status));
    sdnotify_ready(n, status);
}

void sdnotify_stopping(struct sdnotify *n)
{
    send_state(n, "STOPPING=1\nSTATUS=stopping (graceful shutdown)");
}

void sdnotify_fini(struct sdnotify *n)
{
    if (n->loop)
        timer_cancel(loop_timers(n->loop), &n->watchdog);
}
