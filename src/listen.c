/*
 * listen.c - accept loop, admission control, EMFILE recovery.
 *
 * Keeps: every accepted fd is either handed to the accept callback or
 * closed here; a refused peer gets a complete "503" answer when the
 * socket takes it, never a silent reset. Must not: block, or spin when
 * accept keeps failing.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "listen.h"
#include "log.h"
#include "mem.h"
#include "util.h"

#define ACCEPT_BATCH 64 /* accepts per readiness event */
#define FD_LIMIT_PAUSE_MS 100

struct listener {
    struct watcher w;
    struct timer resume; /* ends an accept pause */
    struct loop *loop;
    struct conn_set *set;
    struct listen_opts opts;
    struct ratelimit rate;
    struct listen_stats stats;
    listen_accept_fn *fn;
    void *arg;
    int fd;
    int reserve_fd; /* spare fd for EMFILE recovery */
    uint16_t port;
    bool paused;
};

static const char refusal_503[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                  "Content-Type: text/plain\r\n"
                                  "Content-Length: 20\r\n"
                                  "Retry-After: 1\r\n"
                                  "Connection: close\r\n"
                                  "\r\n"
                                  "server at capacity\r\n";

const char *refuse_reason_name(enum refuse_reason r)
{
    static const char *const names[] = {"max_conns", "memory", "fd_limit"};
    return (unsigned)r < REFUSE_REASON_COUNT ? names[r] : "unknown";
}

const char *accept_pause_name(enum accept_pause p)
{
    static const char *const names[] = {"rate", "fd_limit"};
    return (unsigned)p < ACCEPT_PAUSE_COUNT ? names[p] : "unknown";
}

static int open_reserve(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void pause_accept(struct listener *ls, enum accept_pause why,
                         uint32_t ms)
{
    if (ls->fd < 0)
        return;
    ls->stats.paused[why]++;
    if (!ls->paused) {
        loop_unwatch(ls->loop, ls->fd);
        ls->paused = true;
    }
    loop_timer_in(ls->loop, &ls->resume, ms ? ms : 1);
}

static void on_resume(struct timer *t)
{
    struct listener *ls = container_of(t, struct listener, resume);

    if (ls->fd < 0 || !ls->paused)
        return;
    if (loop_watch(ls->loop, ls->fd, &ls->w, EPOLLIN) == 0)
        ls->paused = false;
    else
        loop_timer_in(ls->loop, &ls->resume, FD_LIMIT_PAUSE_MS);
}

/* Answers 503 and closes. The request (if any arrived yet) is read and
 * dropped first so close() does not turn into a reset that eats the
 * answer. */
static void refuse(struct listener *ls, int fd, enum refuse_reason why)
{
    char sink[512];
    ssize_t rc;

    ls->stats.refused[why]++;
    rc = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
    (void)rc;
    rc = send(fd, refusal_503, sizeof(refusal_503) - 1,
              MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)rc;
    shutdown(fd, SHUT_WR);
    close(fd);
    LOG_WARN("connection refused", "reason=%s", refuse_reason_name(why));
}

/* Out of fds: use the reserve to accept-and-close what waits. */
static void shed_on_fd_limit(struct listener *ls)
{
    int fd;

    if (ls->reserve_fd >= 0) {
        close(ls->reserve_fd);
        ls->reserve_fd = -1;
        for (int i = 0; i < ACCEPT_BATCH; i++) {
            fd = accept4(ls->fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0)
                break;
            ls->stats.refused[REFUSE_FD_LIMIT]++;
            close(fd);
        }
        ls->reserve_fd = open_reserve();
    }
    LOG_WARN("out of file descriptors, pausing accept", "pause_ms=%u",
             FD_LIMIT_PAUSE_MS);
    pause_accept(ls, ACCEPT_PAUSE_FD_LIMIT, FD_LIMIT_PAUSE_MS);
}

static void on_accept(struct watcher *w, uint32_t events)
{
    struct listener *ls = container_of(w, struct listener, w);
    uint32_t now = loop_now(ls->loop);

    for (int i = 0; i < ACCEPT_BATCH && ls->fd >= 0 && !ls->paused; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        uint32_t wait_ms;
        int fd;

        /* Look before taking: an accept that finds the backlog empty
         * (the last one of every batch) must not cost a token. */
        wait_ms = ratelimit_wait_ms(&ls->rate, 1, now);
        if (wait_ms > 0) {
            pause_accept(ls, ACCEPT_PAUSE_RATE, wait_ms);
            return;
        }
        fd = accept4(ls->fd, (struct sockaddr *)&ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                shed_on_fd_limit(ls);
                return;
            }
            /* EAGAIN, or a connection that died in the backlog. */
            return;
        }
        ratelimit_take(&ls->rate, 1, now);
        if (ls->set->stats.open >= (int64_t)ls->opts.max_conns) {
            refuse(ls, fd, REFUSE_MAX_CONNS);
            continue;
        }
        if (mem_over_budget()) {
            refuse(ls, fd, REFUSE_MEMORY);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        ls->fn(ls, fd, (struct sockaddr *)&ss, ls->arg);
    }
}

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss,
                   socklen_t *len)
{
    struct addrinfo hints = {0}, *res = NULL;
    char portstr[8];
    int rc;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof(portstr), "%u", port);
    rc = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res);
    if (rc != 0 || !res)
        return -EINVAL;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

struct listener *listener_new(struct loop *l, struct conn_set *set,
                              const char *host, uint16_t port,
                              const struct listen_opts *opts,
                              listen_accept_fn *fn, void *arg, int *err)
{
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    struct listener *ls;
    int one = 1, rc;

    rc = resolve(host, port, &ss, &sl);
    if (rc < 0) {
        *err = rc;
        return NULL;
    }
    ls = mem_calloc(MEM_CONFIG, 1, sizeof(*ls));
    if (!ls) {
        *err = -ENOMEM;
        return NULL;
    }
    ls->fd =
        socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ls->fd < 0)
        goto err_free;
    setsockopt(ls->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (opts->reuse_port)
        setsockopt(ls->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(ls->fd, (struct sockaddr *)&ss, sl) < 0 ||
        listen(ls->fd, opts->backlog ? opts->backlog : SOMAXCONN) < 0)
        goto err_close;
    sl = sizeof(ss);
    if (getsockname(ls->fd, (struct sockaddr *)&ss, &sl) < 0)
        goto err_close;
    ls->port =
        ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
    ls->reserve_fd = open_reserve();
    ls->w.fn = on_accept;
    ls->loop = l;
    ls->set = set;
    ls->opts = *opts;
    ls->fn = fn;
    ls->arg = arg;
    timer_init(&ls->resume, on_resume);
    ratelimit_init(&ls->rate, opts->accept_rate, opts->accept_burst,
                   loop_now(l));
    if (loop_watch(l, ls->fd, &ls->w, EPOLLIN) < 0)
        goto err_reserve;
    return ls;

err_reserve:
    if (ls->reserve_fd >= 0)
        close(ls->reserve_fd);
err_close:
    rc = -errno;
    close(ls->fd);
    errno = -rc;
err_free:
    *err = -errno;
    mem_free(MEM_CONFIG, ls);
    return NULL;
}

void listener_stop(struct listener *ls)
{
    if (ls->fd < 0)
        return;
    timer_cancel(loop_timers(ls->loop), &ls->resume);
    if (!ls->paused)
        loop_unwatch(ls->loop, ls->fd);
    close(ls->fd);
    ls->fd = -1;
    if (ls->reserve_fd >= 0) {
        close(ls->reserve_fd);
        ls->reserve_fd = -1;
    }
}

void listener_free(struct listener *ls)
{
    if (!ls)
        return;
    listener_stop(ls);
    mem_free(MEM_CONFIG, ls);
}

uint16_t listener_port(const struct listener *ls)
{
    return ls->port;
}

const struct listen_stats *listener_stats(const struct listener *ls)
{
    return &ls->stats;
}
