/*
 * sdnotify.h - `moor serve` tells its service manager how it is doing
 * (systemd's notification protocol, sd_notify(3), with Debian's
 * libsystemd): READY=1 once every listener is bound and the loop is about
 * to run, WATCHDOG=1 from a timer on that loop, RELOADING=1 ... READY=1
 * around a SIGHUP reload, STOPPING=1 when the graceful shutdown begins.
 * dist/moor.service.in is the unit that expects them (Type=notify,
 * WatchdogSec=); docs/operations.md explains it.
 *
 * Keeps: one struct sdnotify per process (it lives in struct serve), a
 * timer on the loop when the manager asked for a watchdog, and the
 * STATUS= text of the last READY=1. No allocation.
 *
 * Must not: do anything without NOTIFY_SOCKET in the environment (every
 * call is then a no-op: a plain `moor serve` in a terminal sends
 * nothing); feed the watchdog from anywhere but the loop's own timer (a
 * stuck loop must stop feeding it, so the manager restarts the process);
 * or be linked into libmoor: the app layer alone depends on libsystemd
 * (the Makefile links it into the `moor` binary only).
 */
#ifndef MOOR_SDNOTIFY_H
#define MOOR_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "loop.h"

struct sdnotify {
    struct loop *loop;
    struct timer watchdog; /* armed while the manager wants WATCHDOG=1 */
    uint32_t interval_ms;  /* half of WATCHDOG_USEC; 0 = no watchdog */
    bool on;               /* NOTIFY_SOCKET is set */
    char status[256];      /* STATUS= of READY=1, sent again after reload */
};

/* Reads the environment (NOTIFY_SOCKET, and WATCHDOG_USEC / WATCHDOG_PID
 * through sd_watchdog_enabled()); sends nothing yet. Call once, before
 * the loop runs. */
void sdnotify_init(struct sdnotify *n, struct loop *l);
/* READY=1 with STATUS=status and MAINPID=; arms the watchdog timer at
 * half of WATCHDOG_USEC. Call when every listener is bound and the loop
 * is about to run (after a failure to start, never). */
void sdnotify_ready(struct sdnotify *n, const char *status);
/* RELOADING=1 (with MONOTONIC_USEC=, which newer managers ask for), then
 * sdnotify_reloaded() sends READY=1 with the same status again. */
void sdnotify_reloading(struct sdnotify *n);
void sdnotify_reloaded(struct sdnotify *n);
/* STOPPING=1: the graceful shutdown has begun. The watchdog keeps being
 * fed while the drain runs (it is bounded by --shutdown-timeout). */
void sdnotify_stopping(struct sdnotify *n);
/* Cancels the watchdog timer; call before the loop is freed. */
void sdnotify_fini(struct sdnotify *n);

#endif
