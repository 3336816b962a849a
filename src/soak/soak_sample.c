/*
 * soak_sample.c - what `moor soak` reads about the server at the quiet
 * point of every round: from /proc/PID its RSS, anonymous RSS, Pss and
 * private bytes (procfs.h), its open fds (the entries of /proc/PID/fd)
 * and threads (/proc/PID/status), and, when it is moor, the accounted
 * live bytes in all and per tag from /debug/mem (one GET on a plain
 * blocking socket with a deadline, Connection: close).
 *
 * Keeps: reads only, every socket wait bounded by --connect-timeout;
 * the fd count is taken once it holds still (the server may still be
 * closing what the round left), 2 s at most.
 * Must not: judge the figures; allocate other than the page buffer
 * (mem.c, freed at once).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "procfs.h"
#include "soak_int.h"
#include "url.h"
#include "mem.h"
#include "util.h"

#define MEM_PAGE_MAX KiB(64)
#define FD_STILL_MS 100u
#define FD_STILL_MAX_MS 2000u

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int count_fds(pid_t pid)
{
    char path[64];
    DIR *d;
    struct dirent *e;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    d = opendir(path);
    if (!d)
        return -errno;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int count_threads(pid_t pid)
{
    char path[64], line[256];
    FILE *f;
    int n = -ENOENT;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return -errno;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "Threads:", 8)) {
            n = atoi(line + 8);
            break;
        }
    fclose(f);
    return n;
}

/* GET s->mem_path from s->mem_addr into buf (the body, NUL-terminated).
 * Returns the body's length, or -1. */
static ssize_t get_mem_page(struct soak *s, char *buf, size_t len)
{
    struct timeval tv = {
        .tv_sec = s->o.connect_timeout_ms / 1000,
        .tv_usec = (s->o.connect_timeout_ms % 1000) * 1000,
    };
    char req[600];
    size_t n = 0;
    int fd, rl;
    char *body;

    fd = socket(s->mem_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    rl = snprintf(req, sizeof(req),
                  "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                  s->mem_path, s->mem_host);
    if (connect(fd, (const struct sockaddr *)&s->mem_addr, s->mem_addrlen) <
            0 ||
        rl <= 0 || (size_t)rl >= sizeof(req) ||
        send(fd, req, (size_t)rl, MSG_NOSIGNAL) != rl) {
        close(fd);
        return -1;
    }
    /* To the end of the body (Content-Length, or the close we asked
     * for: a server that keeps the connection open anyway is not kept
     * waiting on). */
    while (n < len - 1) {
        ssize_t r = recv(fd, buf + n, len - 1 - n, 0);
        const char *cl, *end;

        if (r < 0) {
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        buf[n] = '\0';
        end = strstr(buf, "\r\n\r\n");
        cl = end ? strcasestr(buf, "\r\ncontent-length:") : NULL;
        if (cl && cl < end &&
            n >= (size_t)(end + 4 - buf) + strtoull(cl + 17, NULL, 10))
            break;
    }
    close(fd);
    buf[n] = '\0';
    if (strncmp(buf, "HTTP/1.1 200", 12))
        return -1;
    body = strstr(buf, "\r\n\r\n");
    if (!body)
        return -1;
    body += 4;
    n = strlen(body);
    memmove(buf, body, n + 1);
    return (ssize_t)n;
}

/* The number after "\"live_bytes\":" at or after p, or -1. */
static double live_after(const char *p)
{
    const char *k = strstr(p, "\"live_bytes\":");

    return k ? strtod(k + 13, NULL) : -1;
}

static bool parse_mem(struct soak *s, const char *page, struct soak_sample *smp,
                      bool learn)
{
    const char *tags = strstr(page, "\"tags\":{");
    double total = live_after(page);

    if (!tags || total < 0 || page[0] != '{')
        return false;
    if (smp) {
        smp->v[S_LIVE] = total;
        smp->have[S_LIVE] = true;
    }
    if (learn)
        s->ntags = 0;
    if (learn) {
        /* "tags":{"NAME":{"live_bytes":N,...},"NAME2":{...}} */
        const char *p = tags + 8;

        while (*p == '"' && s->ntags < SOAK_MAX_TAGS) {
            const char *e = strchr(p + 1, '"');
            size_t n = e ? (size_t)(e - p - 1) : 0;

            if (!e || n == 0 || n >= SOAK_TAG_LEN)
                break;
            memcpy(s->tags[s->ntags], p + 1, n);
            s->tags[s->ntags++][n] = '\0';
            p = strchr(e, '}');
            if (!p)
                break;
            p += 1 + (p[1] == ',');
        }
    }
    for (uint32_t i = 0; smp && i < s->ntags; i++) {
        char key[SOAK_TAG_LEN + 8];
        const char *k;

        snprintf(key, sizeof(key), "\"%s\":{", s->tags[i]);
        k = strstr(tags, key);
        smp->tag[i] = k ? live_after(k) : -1;
    }
    return true;
}

/* u's host as an IPv4 or IPv6 address (no name lookups), with its
 * port. Returns 0 or -1. */
static int ip_literal(const struct url *u, struct sockaddr_storage *a,
                      socklen_t *len)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)a;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)a;

    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET, u->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(u->port);
        *len = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET6, u->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(u->port);
        *len = sizeof(*a6);
        return 0;
    }
    return -1;
}

void soak_probe_mem(struct soak *s)
{
    struct url *u;
    char *page;
    const char *why;

    s->moor_mem = false;
    if (!strcmp(s->o.mem_url, "none"))
        return;
    u = mem_alloc(MEM_MISC, sizeof(*u));
    page = mem_alloc(MEM_MISC, MEM_PAGE_MAX);
    if (!u || !page)
        goto out;
    if (!strcmp(s->o.mem_url, "auto")) {
        if (s->t.tls || s->tcp)
            goto out; /* no plain HTTP there: only an explicit --mem-url */
        memcpy(&s->mem_addr, &s->t.addr, s->t.addrlen);
        s->mem_addrlen = s->t.addrlen;
        snprintf(s->mem_host, sizeof(s->mem_host), "%s", s->t.host);
        snprintf(s->mem_path, sizeof(s->mem_path), "/debug/mem");
    } else {
        why = url_parse(s->o.mem_url, u);
        if (!why && (strcmp(u->scheme, "http") ||
                     ip_literal(u, &s->mem_addr, &s->mem_addrlen) < 0))
            why = "expected http://IP:PORT/PATH";
        if (!why && (strlen(u->target) >= sizeof(s->mem_path) ||
                     strlen(u->authority) >= sizeof(s->mem_host)))
            why = "too long";
        if (why) {
            fprintf(stderr,
                    "moor soak: --mem-url %s: %s; going without accounted "
                    "bytes\n",
                    s->o.mem_url, why);
            goto out;
        }
        memcpy(s->mem_host, u->authority, strlen(u->authority) + 1);
        memcpy(s->mem_path, u->target, strlen(u->target) + 1);
    }
    if (get_mem_page(s, page, MEM_PAGE_MAX) >= 0 &&
        parse_mem(s, page, NULL, true))
        s->moor_mem = true;
    else if (strcmp(s->o.mem_url, "auto"))
        fprintf(stderr,
                "moor soak: --mem-url %s did not answer with moor's "
                "/debug/mem; going without accounted bytes\n",
                s->o.mem_url);
out:
    mem_free(MEM_MISC, page);
    mem_free(MEM_MISC, u);
}

int soak_sample(struct soak *s, struct soak_sample *smp, char *err,
                size_t errlen)
{
    struct procfs_mem m;
    int fds, prev, rc;
    uint32_t waited = 0;

    sleep_ms(s->o.settle_ms);
    prev = count_fds(s->pid);
    for (;;) {
        if (prev < 0)
            break;
        sleep_ms(FD_STILL_MS);
        waited += FD_STILL_MS;
        fds = count_fds(s->pid);
        if (fds == prev || waited >= FD_STILL_MAX_MS) {
            prev = fds;
            break;
        }
        prev = fds;
    }
    rc = procfs_mem(s->pid, &m);
    if (rc < 0 || prev < 0) {
        snprintf(err, errlen, "the server (pid %d) is gone: %s", (int)s->pid,
                 strerror(rc < 0 ? -rc : -prev));
        return -1;
    }
    smp->v[S_RSS] = (double)m.vm_rss;
    smp->v[S_ANON] = (double)m.rss_anon;
    smp->v[S_PSS] = (double)m.pss;
    smp->v[S_PRIV] = (double)m.priv;
    smp->have[S_RSS] = m.vm_rss >= 0;
    smp->have[S_ANON] = m.rss_anon >= 0;
    smp->have[S_PSS] = m.pss >= 0;
    smp->have[S_PRIV] = m.priv >= 0;
    smp->v[S_FDS] = prev;
    smp->have[S_FDS] = true;
    rc = count_threads(s->pid);
    smp->v[S_THREADS] = rc;
    smp->have[S_THREADS] = rc >= 0;
    if (s->moor_mem) {
        char *page = mem_alloc(MEM_MISC, MEM_PAGE_MAX);

        if (page && get_mem_page(s, page, MEM_PAGE_MAX) >= 0)
            parse_mem(s, page, smp, false);
        mem_free(MEM_MISC, page);
    }
    return 0;
}
