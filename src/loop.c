/*
 * loop.c - one epoll event loop: I/O dispatch, cached time, the timer
 * wheel, end-of-iteration hooks, and a cross-thread wake-up (eventfd).
 *
 * An iteration (loop_run_once): compute the timeout from the wheel, wait,
 * refresh the clocks, dispatch every collected event to the watcher stored
 * in its data.ptr, refresh the clocks again, run the due timers, then run
 * the hooks in registration order.
 *
 * Invariants: loop_now() is never TICK_UNSET and never goes back; every
 * allocation is tagged MEM_LOOP (the loop, the event array) or MEM_READBUF
 * (the shared read buffer); loop_wake() touches nothing but the eventfd, so
 * it is the one call that is safe from another thread.
 *
 * Must not: keep global state (a second loop on another thread must just
 * work), free or look inside a watcher (watchers belong to their owners;
 * see the loop_unwatch() contract in loop.h), or treat EINTR as an error.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "loop.h"
#include "mem.h"
#include "util.h"

/* Events taken per epoll_wait(); more simply wait for the next iteration
 * (level triggered, so nothing is lost). */
#define LOOP_MAX_EVENTS 256

struct loop {
    int epfd;
    int wakefd; /* eventfd; loop_wake() writes to it */
    bool stop;
    struct watcher wake_w; /* watches wakefd */
    loop_wake_fn *on_wake;
    void *wake_arg;

    uint64_t mono_start_ms; /* CLOCK_MONOTONIC at loop_new(), in ms */
    uint32_t now;           /* ticks: ms since start + 1 */
    uint64_t wall_ms;       /* CLOCK_REALTIME, ms since the epoch */

    struct loop_hook *hooks;
    struct loop_hook **hooks_tail;

    struct epoll_event *events; /* LOOP_MAX_EVENTS entries, MEM_LOOP */
    struct readbuf rb;
    struct timer_wheel *wheels[LOOP_MAX_WHEELS]; /* added by owners */
    struct {
        loop_fd_fn *fn;
        void *arg;
    } fd_handlers[LOOP_MAX_FD_HANDLERS];
    unsigned n_fd_handlers;
    uint64_t iter; /* iterations begun */
    bool poked;    /* the next wait must not block */
    unsigned n_wheels;
    struct timer trim_timer; /* armed while trim_interval_ms != 0 */
    struct mem_trim trim;
    uint32_t trim_interval_ms;
    struct timer_wheel timers; /* last: 33 KiB of slots and bitmap */
};

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void loop_update_time(struct loop *l)
{
    uint32_t t = (uint32_t)(clock_ms(CLOCK_MONOTONIC) - l->mono_start_ms) + 1;

    /* Every 49.7 days the tick passes through 0, which means "unset";
     * that one millisecond is reported as 1 instead. */
    l->now = t == TICK_UNSET ? 1 : t;
    l->wall_ms = clock_ms(CLOCK_REALTIME);
}

/* Drains the eventfd (one read resets its counter, so any number of
 * loop_wake() calls since the last drain cost one callback), then tells
 * the owner. */
static void on_wakefd(struct watcher *w, uint32_t events)
{
    struct loop *l = container_of(w, struct loop, wake_w);
    uint64_t n;

    while (read(l->wakefd, &n, sizeof(n)) < 0 && errno == EINTR)
        ;
    if (l->on_wake)
        l->on_wake(l, l->wake_arg);
}

static void on_trim_timer(struct timer *t)
{
    struct loop *l = container_of(t, struct loop, trim_timer);

    mem_trim_check(&l->trim);
    loop_timer_in(l, &l->trim_timer, l->trim_interval_ms);
}

void loop_set_trim(struct loop *l, uint32_t interval_ms, uint64_t threshold)
{
    timer_cancel(&l->timers, &l->trim_timer);
    l->trim_interval_ms = interval_ms;
    mem_trim_init(&l->trim, threshold);
    if (!interval_ms)
        return;
    /* The first reading now, so the check's code is also faulted in
     * before any connection (else its first run shows up in a measured
     * burst's VmRSS). */
    mem_trim_check(&l->trim);
    loop_timer_in(l, &l->trim_timer, interval_ms);
}

struct loop *loop_new(size_t readbuf_size)
{
    struct loop *l = mem_calloc(MEM_LOOP, 1, sizeof(*l));

    if (!l)
        return NULL;
    l->hooks_tail = &l->hooks;
    l->mono_start_ms = clock_ms(CLOCK_MONOTONIC);
    loop_update_time(l);
    timer_wheel_init(&l->timers, l->now);
    timer_init(&l->trim_timer, on_trim_timer);

    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0)
        goto err_free_loop;
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wakefd < 0)
        goto err_close_epoll;
    l->events =
        mem_alloc(MEM_LOOP, LOOP_MAX_EVENTS * sizeof(struct epoll_event));
    if (!l->events)
        goto err_close_wakefd;
    if (readbuf_init(&l->rb, readbuf_size) < 0)
        goto err_free_events;
    l->wake_w.fn = on_wakefd;
    if (loop_watch(l, l->wakefd, &l->wake_w, EPOLLIN) < 0)
        goto err_fini_readbuf;
    return l;

err_fini_readbuf:
    readbuf_fini(&l->rb);
err_free_events:
    mem_free(MEM_LOOP, l->events);
err_close_wakefd:
    close(l->wakefd);
err_close_epoll:
    close(l->epfd);
err_free_loop:
    mem_free(MEM_LOOP, l);
    return NULL;
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    /* Timers still armed belong to their owners; the wheel holds only
     * pointers to them, so there is nothing to free for them here. */
    timer_cancel(&l->timers, &l->trim_timer);
    readbuf_fini(&l->rb);
    mem_free(MEM_LOOP, l->events);
    close(l->wakefd);
    close(l->epfd);
    mem_free(MEM_LOOP, l);
}

static int ctl(struct loop *l, int op, int fd, struct watcher *w,
               uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};

    /* A non-NULL event even for EPOLL_CTL_DEL, for kernels before 2.6.9. */
    return epoll_ctl(l->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

int loop_watch(struct loop *l, int fd, struct watcher *w, uint32_t events)
{
    return ctl(l, EPOLL_CTL_ADD, fd, w, events);
}

int loop_modify(struct loop *l, int fd, struct watcher *w, uint32_t events)
{
    return ctl(l, EPOLL_CTL_MOD, fd, w, events);
}

/* Events of fds watched by handler carry this tag, the handler's index
 * and the fd instead of a watcher pointer (user-space pointers never have
 * the top bit set). */
#define FD_TAG (1ull << 63)

int loop_add_fd_handler(struct loop *l, loop_fd_fn *fn, void *arg)
{
    unsigned i;

    for (i = 0; i < l->n_fd_handlers; i++)
        if (!l->fd_handlers[i].fn)
            break;
    if (i == LOOP_MAX_FD_HANDLERS)
        return -ENOSPC;
    l->fd_handlers[i].fn = fn;
    l->fd_handlers[i].arg = arg;
    if (i == l->n_fd_handlers)
        l->n_fd_handlers++;
    return (int)i;
}

void loop_remove_fd_handler(struct loop *l, int handler)
{
    if (handler >= 0 && (unsigned)handler < l->n_fd_handlers) {
        l->fd_handlers[handler].fn = NULL;
        l->fd_handlers[handler].arg = NULL;
    }
}

static int ctl_fd(struct loop *l, int op, int fd, int handler, uint32_t events)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.u64 = FD_TAG | ((uint64_t)(uint32_t)handler << 32) | (uint32_t)fd;
    return epoll_ctl(l->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

int loop_watch_fd(struct loop *l, int fd, int handler, uint32_t events)
{
    return ctl_fd(l, EPOLL_CTL_ADD, fd, handler, events);
}

int loop_modify_fd(struct loop *l, int fd, int handler, uint32_t events)
{
    return ctl_fd(l, EPOLL_CTL_MOD, fd, handler, events);
}

int loop_unwatch(struct loop *l, int fd)
{
    return ctl(l, EPOLL_CTL_DEL, fd, NULL, 0);
}

uint32_t loop_now(const struct loop *l)
{
    return l->now;
}

uint64_t loop_wall_ms(const struct loop *l)
{
    return l->wall_ms;
}

struct timer_wheel *loop_timers(struct loop *l)
{
    return &l->timers;
}

int loop_add_wheel(struct loop *l, struct timer_wheel *w)
{
    if (l->n_wheels >= LOOP_MAX_WHEELS)
        return -ENOSPC;
    l->wheels[l->n_wheels++] = w;
    return 0;
}

void loop_remove_wheel(struct loop *l, struct timer_wheel *w)
{
    for (unsigned i = 0; i < l->n_wheels; i++) {
        if (l->wheels[i] == w) {
            l->wheels[i] = l->wheels[--l->n_wheels];
            return;
        }
    }
}

void loop_timer_in(struct loop *l, struct timer *t, uint32_t ms)
{
    timer_arm(&l->timers, t, tick_add(l->now, ms));
}

struct readbuf *loop_readbuf(struct loop *l)
{
    return &l->rb;
}

void loop_add_hook(struct loop *l, struct loop_hook *h)
{
    h->next = NULL;
    *l->hooks_tail = h;
    l->hooks_tail = &h->next;
}

void loop_remove_hook(struct loop *l, struct loop_hook *h)
{
    struct loop_hook **pp;

    for (pp = &l->hooks; *pp; pp = &(*pp)->next) {
        if (*pp == h) {
            *pp = h->next;
            if (l->hooks_tail == &h->next)
                l->hooks_tail = pp;
            h->next = NULL;
            return;
        }
    }
}

void loop_on_wake(struct loop *l, loop_wake_fn *fn, void *arg)
{
    l->on_wake = fn;
    l->wake_arg = arg;
}

void loop_wake(struct loop *l)
{
    uint64_t one = 1;

    /* EAGAIN means the counter is saturated: a wake-up is pending anyway.
     * Nothing else can fail on a valid eventfd. */
    while (write(l->wakefd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

/* The wheel's next expiry bounds the caller's timeout (-1: no bound). */
uint64_t loop_iteration(const struct loop *l)
{
    return l->iter;
}

void loop_poke(struct loop *l)
{
    l->poked = true;
}

int loop_fd(const struct loop *l)
{
    return l->epfd;
}

int loop_timeout(const struct loop *l)
{
    int next;

    if (l->poked)
        return 0;
    next = timer_next_ms(&l->timers, l->now);
    for (unsigned i = 0; i < l->n_wheels; i++) {
        int n = timer_next_ms(l->wheels[i], l->now);
        if (n >= 0 && (next < 0 || n < next))
            next = n;
    }
    return next;
}

static int wait_timeout(struct loop *l, int timeout_ms)
{
    int next = loop_timeout(l);

    l->poked = false;
    if (next < 0)
        return timeout_ms;
    if (timeout_ms < 0 || next < timeout_ms)
        return next;
    return timeout_ms;
}

int loop_run_once(struct loop *l, int timeout_ms)
{
    struct loop_hook *h;
    int n, i;

    l->iter++;
    n = epoll_wait(l->epfd, l->events, LOOP_MAX_EVENTS,
                   wait_timeout(l, timeout_ms));
    if (n < 0) {
        if (errno != EINTR)
            return -errno;
        /* A signal: no events, but timers and hooks still run. */
        n = 0;
    }
    loop_update_time(l);

    /* A callback may unwatch (and close) an fd whose event is still ahead
     * in this array; its watcher is then called anyway. loop.h makes that
     * harmless by contract: watchers are freed only after the iteration. */
    for (i = 0; i < n; i++) {
        uint64_t d = l->events[i].data.u64;

        if (d & FD_TAG) {
            unsigned hi = (unsigned)(d >> 32) & 0x7fffffffu;
            /* NULL: removed earlier in this iteration (a stale event). */
            if (l->fd_handlers[hi].fn)
                l->fd_handlers[hi].fn(l->fd_handlers[hi].arg, (int)(uint32_t)d,
                                      l->events[i].events);
        } else {
            struct watcher *w = l->events[i].data.ptr;
            w->fn(w, l->events[i].events);
        }
    }

    loop_update_time(l);
    timer_run(&l->timers, l->now);
    for (i = 0; i < (int)l->n_wheels; i++)
        timer_run(l->wheels[i], l->now);

    /* Read next after the call, so a hook added by a hook runs too. A hook
     * whose fn is NULL has been switched off by its owner. */
    for (h = l->hooks; h; h = h->next) {
        if (h->fn)
            h->fn(h);
    }
    return 0;
}

int loop_run(struct loop *l)
{
    int rc = 0;

    while (!l->stop) {
        rc = loop_run_once(l, -1);
        if (rc < 0)
            break;
    }
    /* Reset here, not on entry: a loop_stop() made before loop_run() (by
     * a callback during setup) still stops it. */
    l->stop = false;
    return rc;
}

void loop_stop(struct loop *l)
{
    l->stop = true;
}
