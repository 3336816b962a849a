/*
 * listen.c - accept loop, admission control, EMFILE recovery.
 *
 * Keeps: every accepted fd is either handed to the accept callback or
 * closed here; a refused peer gets a complete "503" answer when the
 * socket takes it, never a silent reset (on a raw listener, a plain
 * close); an fd counted for its address is released exactly once, by
 * conn_close() through the set's hook or here when it never became a
 * conn. Must not: block, or spin when accept keeps failing.
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
    struct ip_share *ip; /* per-address table, or NULL */
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
    static const char *const names[] = {"max_conns",   "memory",
                                        "fd_limit",    "per_ip_conns",
                                        "per_ip_rate", "ip_table_full"};
    return (unsigned)r < REFUSE_REASON_COUNT ? names[r] : "unknown";
}

const char *accept_pause_name(enum accept_pause p)
{
    static const char *const names[] = {"rate", "fd_limit"};
    return (unsigned)p < ACCEPT_PAUSE_COUNT ? names[p] : "unknown";
}

/* The per-address table of a conn set and the listeners that use it. */
struct ip_share {
    struct iplimit *t;
    struct conn_set *set;
    unsigned users;
};

static void ip_on_fd_close(void *arg, int fd)
{
    struct ip_share *sh = arg;

    iplimit_release(sh->t, fd, loop_now(sh->set->loop));
}

/* The set's table (made by the first listener that limits addresses),
 * or NULL with *err. */
static struct ip_share *ip_share_get(struct conn_set *set,
                                     const struct listen_opts *o, int *err)
{
    struct iplimit_opts io = {
        .max_conns = o->max_conns_per_ip,
        .rate = o->rate_per_ip,
        .burst = o->burst_per_ip,
        .table_size = o->ip_table_size,
    };
    struct ip_share *sh;

    if (set->on_fd_close == ip_on_fd_close) {
        sh = set->on_fd_close_arg;
        sh->users++;
        return sh;
    }
    if (set->on_fd_close) { /* someone else watches closes */
        *err = -EBUSY;
        return NULL;
    }
    *err = -ENOMEM;
    sh = mem_calloc(MEM_AUTH, 1, sizeof(*sh));
    if (!sh)
        return NULL;
    sh->t = iplimit_new(&io, loop_now(set->loop));
    if (!sh->t) {
        mem_free(MEM_AUTH, sh);
        return NULL;
    }
    sh->set = set;
    sh->users = 1;
    set->on_fd_close = ip_on_fd_close;
    set->on_fd_close_arg = sh;
    return sh;
}

static void ip_share_put(struct ip_share *sh)
{
    if (!sh || --sh->users > 0)
        return;
    sh->set->on_fd_close = NULL;
    sh->set->on_fd_close_arg = NULL;
    iplimit_free(sh->t);
    mem_free(MEM_AUTH, sh);
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

/* Answers 503 (a raw listener: nothing) and closes, unlogged. The
 * request (if any arrived yet) is read and dropped first so close() does
 * not turn into a reset that eats the answer. */
static void refuse_quietly(struct listener *ls, int fd, enum refuse_reason why)
{
    char sink[512];
    ssize_t rc;

    ls->stats.refused[why]++;
    rc = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
    (void)rc;
    if (!ls->opts.raw) {
        rc = send(fd, refusal_503, sizeof(refusal_503) - 1,
                  MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)rc;
    }
    shutdown(fd, SHUT_WR);
    close(fd);
}

static void refuse(struct listener *ls, int fd, enum refuse_reason why)
{
    refuse_quietly(ls, fd, why);
    LOG_WARN("connection refused", "reason=%s", refuse_reason_name(why));
}

/* The peer's address as text (the /64 for IPv6, as it is counted). */
static const char *peer_str(const struct sockaddr *sa, char *out, size_t len)
{
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out,
                  (socklen_t)len);
    } else if (sa->sa_family == AF_INET6) {
        struct in6_addr a = ((const struct sockaddr_in6 *)sa)->sin6_addr;
        bool mapped = IN6_IS_ADDR_V4MAPPED(&a);

        if (mapped) {
            inet_ntop(AF_INET, &a.s6_addr[12], out, (socklen_t)len);
        } else {
            memset(a.s6_addr + 8, 0, 8);
            inet_ntop(AF_INET6, &a, out, (socklen_t)len);
            strncat(out, "/64", len - strlen(out) - 1);
        }
    } else {
        snprintf(out, len, "unknown");
    }
    return out;
}

/* A refusal because of the peer's address: logged (rate limited, a site
 * of its own so a flood from one address does not hide the others)
 * with the address. */
static void refuse_peer(struct listener *ls, int fd,
                        const struct sockaddr *peer, enum refuse_reason why)
{
    char a[INET6_ADDRSTRLEN + 4];

    refuse_quietly(ls, fd, why);
    LOG_WARN("connection refused", "reason=%s addr=%s", refuse_reason_name(why),
             peer_str(peer, a, sizeof(a)));
}

/* Admits the peer's address, or refuses and returns false. */
static bool admit_peer(struct listener *ls, int fd, const struct sockaddr *peer,
                       uint32_t now)
{
    switch (iplimit_admit(ls->ip->t, fd, peer, now)) {
    case IPLIMIT_OK:
        return true;
    case IPLIMIT_CONNS:
        refuse_peer(ls, fd, peer, REFUSE_PER_IP_CONNS);
        return false;
    case IPLIMIT_RATE:
        refuse_peer(ls, fd, peer, REFUSE_PER_IP_RATE);
        return false;
    case IPLIMIT_TABLE_FULL:
        refuse_peer(ls, fd, peer, REFUSE_IP_TABLE_FULL);
        return false;
    case IPLIMIT_NO_MEMORY:
    default:
        refuse(ls, fd, REFUSE_MEMORY);
        return false;
    }
}

/* Hands fd over; a peer counted by address stays counted only if fd
 * became a conn of the set (conn_close() reports its end). Otherwise
 * the callback closed it or gave it elsewhere, and no close will come. */
static void hand_over(struct listener *ls, int fd, const struct sockaddr *peer)
{
    ls->fn(ls, fd, peer, ls->arg);
    if (ls->ip && ((uint32_t)fd >= ls->set->by_fd_len || !ls->set->by_fd[fd]))
        iplimit_release(ls->ip->t, fd, loop_now(ls->loop));
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
        if (ls->ip && !admit_peer(ls, fd, (struct sockaddr *)&ss, now))
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        hand_over(ls, fd, (struct sockaddr *)&ss);
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
    if (opts->max_conns_per_ip || opts->rate_per_ip) {
        ls->ip = ip_share_get(set, opts, &rc);
        if (!ls->ip) {
            close(ls->fd);
            *err = rc;
            mem_free(MEM_CONFIG, ls);
            return NULL;
        }
    }
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
    ip_share_put(ls->ip);
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
    ip_share_put(ls->ip);
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

const struct iplimit *listener_iplimit(const struct listener *ls)
{
    return ls->ip ? ls->ip->t : NULL;
}

void listener_set_admission(struct listener *ls, uint32_t max_conns,
                            uint32_t accept_rate, uint32_t accept_burst)
{
    ls->opts.max_conns = max_conns;
    ls->opts.accept_rate = accept_rate;
    ls->opts.accept_burst = accept_burst;
    ratelimit_init(&ls->rate, accept_rate, accept_burst, loop_now(ls->loop));
}
