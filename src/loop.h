/*
 * loop.h - one epoll event loop per worker thread.
 *
 * An iteration: wait (timeout = nearest timer), dispatch I/O events, run due
 * timers, then run the end-of-iteration hooks (conn.c flushes corked writes
 * and frees the connections closed during the iteration there). Time is
 * read once per iteration (CLOCK_MONOTONIC) and cached: loop_now().
 *
 * The loop owns no global state; everything a second loop would need is in
 * struct loop. loop_wake() is the only function safe to call from another
 * thread.
 */
#ifndef MOOR_LOOP_H
#define MOOR_LOOP_H

#include <stdint.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include "timer.h"
#include "buf.h"

struct loop;

/* Embedded first in anything registered with epoll. events are EPOLL*. */
struct watcher;
typedef void watcher_fn(struct watcher *w, uint32_t events);
struct watcher {
    watcher_fn *fn;
};

/* Runs at the end of every iteration, after timers, in registration order.
 * Borrows h until loop_remove_hook() (or the loop's end); an owner may
 * also switch it off by setting h->fn to NULL. Add each hook once. */
struct loop_hook;
typedef void loop_hook_fn(struct loop_hook *h);
struct loop_hook {
    loop_hook_fn *fn;
    struct loop_hook *next;
};

/* Called on the loop's thread after loop_wake() from any thread. */
typedef void loop_wake_fn(struct loop *l, void *arg);

/* Returns a new loop with a read buffer of readbuf_size bytes, or NULL
 * (errors: allocation, epoll_create1, eventfd). Caller frees with
 * loop_free() once loop_run() has returned. */
struct loop *loop_new(size_t readbuf_size);
void loop_free(struct loop *l);

/* Registers fd with epoll, events = EPOLLIN | EPOLLOUT | ... (level
 * triggered). Borrows w, which must stay valid until the end of the loop
 * iteration in which loop_unwatch() is called (see below).
 * Return 0 or -errno. */
int loop_watch(struct loop *l, int fd, struct watcher *w, uint32_t events);
int loop_modify(struct loop *l, int fd, struct watcher *w, uint32_t events);
/* Removes fd from epoll. Return 0 or -errno.
 *
 * Stale events: one epoll_wait() collects up to 256 events, which are then
 * dispatched in turn. If a callback unwatches another fd whose event is
 * still ahead in that batch, the loop still calls that fd's watcher with
 * it, once, in this iteration. So an owner that unwatches must (1) keep the
 * watcher's memory valid until the end of the iteration, i.e. free it in an
 * end-of-iteration hook (as conn.c does), and (2) make its callback
 * harmless once closed (conn.c checks its CONN_CLOSING flag first). The
 * same holds if the fd number is reused within the iteration: events are
 * routed by watcher, never by fd, so the new owner sees none of them. */
int loop_unwatch(struct loop *l, int fd);

/* Watching without a watcher struct (8 bytes saved per connection): the
 * fd's events go to handler fn(arg, fd, events), registered once per
 * loop with loop_add_fd_handler() (returns its index, or -ENOSPC past
 * LOOP_MAX_FD_HANDLERS). Stale events are routed by fd: after an fd is
 * unwatched and its number reused within the same iteration, the new
 * owner may see one stale event, so the handler must treat an event as
 * a hint (read/write until EAGAIN), never as a fact. */
#define LOOP_MAX_FD_HANDLERS 32
typedef void loop_fd_fn(void *arg, int fd, uint32_t events);
int loop_add_fd_handler(struct loop *l, loop_fd_fn *fn, void *arg);
/* Frees handler's slot for reuse; a stale event still queued for it in
 * this iteration is dropped. Unwatch its fds first. */
void loop_remove_fd_handler(struct loop *l, int handler);
int loop_watch_fd(struct loop *l, int fd, int handler, uint32_t events);
int loop_modify_fd(struct loop *l, int fd, int handler, uint32_t events);

/* Cached time in ticks (ms since the loop started, never TICK_UNSET),
 * refreshed once per iteration and by loop_update_time(). */
uint32_t loop_now(const struct loop *l);
void loop_update_time(struct loop *l);
/* Wall clock in ms since the epoch, cached like loop_now(). */
uint64_t loop_wall_ms(const struct loop *l);

struct timer_wheel *loop_timers(struct loop *l);
/* Runs another wheel (borrowed) with this loop's clock, after the loop's
 * own: a conn set keeps its conns' deadlines in a wheel of bare nodes.
 * Returns 0 or -ENOSPC (LOOP_MAX_WHEELS). Remove it before freeing it. */
#define LOOP_MAX_WHEELS 32
int loop_add_wheel(struct loop *l, struct timer_wheel *w);
void loop_remove_wheel(struct loop *l, struct timer_wheel *w);
/* Arms t to fire `ms` from now on this loop's wheel. */
void loop_timer_in(struct loop *l, struct timer *t, uint32_t ms);
struct readbuf *loop_readbuf(struct loop *l);

void loop_add_hook(struct loop *l, struct loop_hook *h);
/* Unlinks h (a no-op if it is not linked). Not from inside a hook: the
 * hook pass may be standing on h. */
void loop_remove_hook(struct loop *l, struct loop_hook *h);
/* The number of the current iteration (counts from 1). */
uint64_t loop_iteration(const struct loop *l);
/* Makes the next wait return at once: work was queued for a hook that
 * has already run in this iteration (a later hook's sends). */
void loop_poke(struct loop *l);

/* Sets the callback run on this loop after loop_wake(). */
void loop_on_wake(struct loop *l, loop_wake_fn *fn, void *arg);
/* Thread-safe: wakes the loop (eventfd); coalesces. */
void loop_wake(struct loop *l);

/* Runs until loop_stop(). Returns 0, or -errno if epoll_wait failed for a
 * reason other than EINTR. */
int loop_run(struct loop *l);
/* Runs a single iteration waiting at most timeout_ms (-1: until the next
 * timer or event). Returns 0 (also when a signal cut the wait short), or
 * -errno if epoll_wait failed. Used by tests. */
int loop_run_once(struct loop *l, int timeout_ms);
/* Makes loop_run() return after the current iteration. Loop thread only. */
void loop_stop(struct loop *l);

/* Gives freed heap back (mem.h, struct mem_trim): every interval_ms the
 * loop compares RssAnon with the live bytes and trims when threshold
 * bytes more than usual are held, backing off (up to 64 intervals) while
 * trims give little back. A timer rather than a hook, so a busy loop
 * pays for one /proc read per interval. interval_ms 0 turns it off. The
 * first reading is taken now (the floor starts at the start-up gap). */
void loop_set_trim(struct loop *l, uint32_t interval_ms, uint64_t threshold);

/* For a host's own event loop: the epoll fd, readable whenever an
 * iteration has I/O to dispatch, and the longest the host may wait
 * before the next iteration (ms until the nearest timer; 0 when work is
 * queued for the next iteration; -1 when nothing is timed). */
int loop_fd(const struct loop *l);
int loop_timeout(const struct loop *l);

#endif
