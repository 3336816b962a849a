/*
 * procfs.c - another process's memory, and the process behind a listening
 * socket, from /proc (see procfs.h).
 *
 * Keeps: every file is read through a fixed stack buffer or line by line
 * with fgets into one; nothing is allocated (stdio's own FILE buffer
 * aside, which libc frees at fclose). Must not: write anything, or trust
 * a line's shape: a line that does not parse is skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>

#include "procfs.h"
#include "util.h"

/* Finds "Key:" at the start of a line of text and returns its value in
 * bytes (the kernel writes "Key:   1234 kB"), or -1. */
static int64_t field_kb(const char *text, const char *key)
{
    size_t klen = strlen(key);
    const char *p = text;

    while (p && *p) {
        if (!strncmp(p, key, klen) && p[klen] == ':') {
            char *end;
            long long kb = strtoll(p + klen + 1, &end, 10);

            if (end == p + klen + 1 || kb < 0)
                return -1;
            return (int64_t)kb * 1024;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

/* Reads the whole of a small /proc file into buf (NUL-terminated).
 * Returns the length or -errno. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "re");
    size_t n;

    if (!f)
        return -errno;
    n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    if (ferror(f)) {
        int e = errno ? errno : EIO;

        fclose(f);
        return -e;
    }
    fclose(f);
    return (ssize_t)n;
}

int procfs_mem(pid_t pid, struct procfs_mem *m)
{
    char path[64], text[4096];
    ssize_t n;
    int64_t pc, pd;

    m->vm_rss = m->rss_anon = m->pss = m->priv = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    n = read_small(path, text, sizeof(text));
    if (n < 0)
        return (int)n;
    m->vm_rss = field_kb(text, "VmRSS");
    m->rss_anon = field_kb(text, "RssAnon");
    if (m->vm_rss < 0)
        return -ESRCH; /* a zombie has a status but no memory */

    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
    if (read_small(path, text, sizeof(text)) < 0)
        return 0;
    m->pss = field_kb(text, "Pss");
    pc = field_kb(text, "Private_Clean");
    pd = field_kb(text, "Private_Dirty");
    m->priv = pc >= 0 && pd >= 0 ? pc + pd : -1;
    return 0;
}

int procfs_cpu_ns(pid_t pid, uint64_t *ns)
{
    char path[64], text[1024], *p, *save = NULL, *tok;
    unsigned long long ticks = 0;
    long hz = sysconf(_SC_CLK_TCK);
    ssize_t n;
    int field;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    n = read_small(path, text, sizeof(text));
    if (n < 0)
        return (int)n;
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses,
     * so count fields from the last ')'. Field 3 is the state; utime and
     * stime are fields 14 and 15. */
    p = strrchr(text, ')');
    if (!p || hz <= 0)
        return -EINVAL;
    for (field = 3, tok = strtok_r(p + 1, " ", &save); tok && field <= 15;
         field++, tok = strtok_r(NULL, " ", &save))
        if (field >= 14)
            ticks += strtoull(tok, NULL, 10);
    if (field <= 15)
        return -EINVAL;
    *ns = (uint64_t)(ticks * (1000000000ull / (unsigned long long)hz));
    return 0;
}

/* ---- the listener's inode ---------------------------------------------- */

/* Parses n hex digits at p into *out. Returns false on a non-hex digit. */
static bool hex32(const char *p, size_t n, uint32_t *out)
{
    uint32_t v = 0;

    for (size_t i = 0; i < n; i++) {
        int d = ascii_hex_value((unsigned char)p[i]);

        if (d < 0)
            return false;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return true;
}

/* The address of a /proc/net/tcp{,6} line: the kernel prints each 32-bit
 * word of the address as loaded in host order with %08X, then ":PORT" in
 * hex. Fills words (1 for IPv4, 4 for IPv6) and port. */
static bool parse_local(const char *p, unsigned nwords, uint32_t *words,
                        uint16_t *port)
{
    uint32_t v;

    for (unsigned i = 0; i < nwords; i++)
        if (!hex32(p + 8 * i, 8, &words[i]))
            return false;
    p += 8 * nwords;
    if (*p != ':' || !hex32(p + 1, 4, &v) ||
        ascii_hex_value((unsigned char)p[5]) >= 0)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* True if a socket listening on words (nwords of them) and lport accepts
 * connections to addr. */
static bool listens_for(const struct sockaddr *addr, unsigned nwords,
                        const uint32_t *words, uint16_t lport)
{
    static const uint32_t zero[4];
    uint32_t want[4];

    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)addr;

        if (ntohs(a->sin_port) != lport)
            return false;
        memcpy(want, &a->sin_addr, 4);
        if (nwords == 1)
            return words[0] == want[0] || words[0] == 0;
        /* An IPv6 socket on [::] (not v6only: we cannot tell) or on
         * ::ffff:a.b.c.d also takes IPv4 connections. */
        if (!memcmp(words, zero, sizeof(zero)))
            return true;
        return words[0] == 0 && words[1] == 0 && words[2] == htonl(0xffff) &&
               words[3] == want[0];
    }
    if (addr->sa_family == AF_INET6 && nwords == 4) {
        const struct sockaddr_in6 *a = (const void *)addr;

        if (ntohs(a->sin6_port) != lport)
            return false;
        memcpy(want, &a->sin6_addr, 16);
        return !memcmp(words, want, 16) || !memcmp(words, zero, 16);
    }
    return false;
}

/* The inode of the socket listening for addr in one /proc/net file, or 0. */
static unsigned long find_inode(const char *path, unsigned nwords,
                                const struct sockaddr *addr)
{
    char line[512];
    unsigned long found = 0;
    FILE *f = fopen(path, "re");

    if (!f)
        return 0;
    while (!found && fgets(line, sizeof(line), f)) {
        uint32_t words[4];
        uint16_t port;
        unsigned long inode;
        char *p = strchr(line, ':'), *field, *save = NULL;
        int i;

        /* "  sl: local rem st tx:rx tr:when retr uid timeout inode" */
        if (!p)
            continue;
        p++;
        while (*p == ' ')
            p++;
        if (!parse_local(p, nwords, words, &port) ||
            !listens_for(addr, nwords, words, port))
            continue;
        /* Fields after "sl:": local rem st txrx trwhen retr uid timeout
         * inode; the state is the third, 0A = TCP_LISTEN. */
        field = strtok_r(p, " ", &save);
        for (i = 1; field && i < 3; i++)
            field = strtok_r(NULL, " ", &save);
        if (!field || strcmp(field, "0A"))
            continue;
        for (; field && i < 9; i++)
            field = strtok_r(NULL, " ", &save);
        inode = field ? strtoul(field, NULL, 10) : 0;
        found = inode;
    }
    fclose(f);
    return found;
}

pid_t procfs_listener_pid(const struct sockaddr *addr, pid_t *pids,
                          size_t npids, size_t *found)
{
    char want[48];
    unsigned long inode = 0;
    DIR *proc;
    struct dirent *de;
    pid_t first = 0;

    *found = 0;
    if (addr->sa_family == AF_INET)
        inode = find_inode("/proc/net/tcp", 1, addr);
    if (!inode)
        inode = find_inode("/proc/net/tcp6", 4, addr);
    if (!inode)
        return -ENOENT;
    snprintf(want, sizeof(want), "socket:[%lu]", inode);

    proc = opendir("/proc");
    if (!proc)
        return -ENOENT;
    while ((de = readdir(proc))) {
        char dir[300];
        DIR *fds;
        struct dirent *fe;

        if (!ascii_is_digit((unsigned char)de->d_name[0]))
            continue;
        snprintf(dir, sizeof(dir), "/proc/%s/fd", de->d_name);
        fds = opendir(dir);
        if (!fds)
            continue; /* gone, or not ours to look into */
        while ((fe = readdir(fds))) {
            char link[600], target[64];
            ssize_t n;

            if (fe->d_name[0] == '.')
                continue;
            snprintf(link, sizeof(link), "%s/%s", dir, fe->d_name);
            n = readlink(link, target, sizeof(target) - 1);
            if (n <= 0)
                continue;
            target[n] = '\0';
            if (strcmp(target, want))
                continue;
            if (*found < npids)
                pids[*found] = (pid_t)atoi(de->d_name);
            if (!first)
                first = (pid_t)atoi(de->d_name);
            (*found)++;
            break;
        }
        closedir(fds);
    }
    closedir(proc);
    if (*found == 0)
        return -ENOENT;
    return *found == 1 ? first : -EEXIST;
}
