/*
 * procfs.h - what /proc says about another process: its memory
 * (/proc/PID/status and /proc/PID/smaps_rollup), its CPU time
 * (/proc/PID/stat), and which process holds
 * the socket listening on a given TCP address (/proc/net/tcp{,6} give
 * the socket's inode, /proc/PID/fd/ the processes that hold it).
 *
 * For `moor bench`, which measures a server's memory per connection.
 * Reads only; allocates nothing; Linux only.
 */
#ifndef MOOR_PROCFS_H
#define MOOR_PROCFS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Bytes; -1 where the kernel did not say. */
struct procfs_mem {
    int64_t vm_rss;   /* status: VmRSS */
    int64_t rss_anon; /* status: RssAnon */
    int64_t pss;      /* smaps_rollup: Pss */
    int64_t priv;     /* smaps_rollup: Private_Clean + Private_Dirty */
};

/* Reads pid's memory into m. Returns 0, or -errno (-ENOENT: no such
 * process; -EACCES: not ours to read). smaps_rollup (Linux 4.14) is
 * optional: without it pss and priv are -1 and the call still succeeds. */
int procfs_mem(pid_t pid, struct procfs_mem *m);

/* CPU time (user + system) pid has used, in ns, into *ns (clock-tick
 * resolution, 10 ms). Returns 0 or -errno. */
int procfs_cpu_ns(pid_t pid, uint64_t *ns);

/* Finds the process holding the TCP socket that listens on addr (IPv4 or
 * IPv6; a socket listening on the wildcard address of the family, or on
 * [::] for an IPv4 addr, counts). Returns the pid (> 0), or -ENOENT (no
 * such listener, or it belongs to another network namespace or a process
 * we may not look into), or -EEXIST when several processes hold it; then
 * *pids (up to npids of them) say which. */
pid_t procfs_listener_pid(const struct sockaddr *addr, pid_t *pids,
                          size_t npids, size_t *found);

#endif
