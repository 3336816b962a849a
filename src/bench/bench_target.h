/*
 * bench_target.h - the parts of bench_target.c that `moor soak`
 * (src/soak/) uses too: a ws:// or wss:// URL parsed into an address
 * to connect to (struct target), and the server's process found from
 * the socket listening on that address. The rest of the bench's
 * internals stay in bench_int.h.
 */
#ifndef MOOR_BENCH_TARGET_H
#define MOOR_BENCH_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

struct target {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host[300]; /* Host header: host[:port] as in the URL */
    char name[64];  /* the host alone: TLS's SNI and certificate check */
    char path[512]; /* the request target, query included (?token=...) */
    bool loopback;
    bool tls; /* wss:// */
};

/* ws://HOST[:PORT][/PATH] or wss://, the value of --flag, into t.
 * Returns 0 or -1 with err set. */
int bench_parse_url(const char *flag, const char *url, struct target *t,
                    char *err, size_t errlen);

/* The server's process: want if not 0 (checked to be readable in
 * /proc), else the one process holding the socket listening on t's
 * address. Returns 0 with *pid set (0 when none was found and not
 * required), or -1 with err set. */
int bench_target_pid(const struct target *t, uint32_t want, bool required,
                     pid_t *pid, char *err, size_t errlen);

/* The help of --tls-ca and --insecure, the same in both commands. */
#define BENCH_TLS_CA_HELP                                                      \
    "wss:// and https:// URLs: trust the CA certificates in this PEM file "    \
    "instead of the system's"
#define BENCH_INSECURE_HELP                                                    \
    "wss:// and https:// URLs: do not verify the server's certificate or "     \
    "name (for tests with self-signed certificates only)"

struct tls_ctx;

/* The client TLS context for wss:// targets: ca_file "" trusts the
 * system's store; insecure checks nothing. Returns it (tls_ctx_free()),
 * or NULL with err set ("TLS: ..."). */
struct tls_ctx *bench_tls_client(const char *ca_file, bool insecure, char *err,
                                 size_t errlen);

#endif
