/*
 * serve.h - the `moor serve` command, and the server it runs built apart
 * from the command line, so a test or a fuzz target drives the very same
 * routes (fuzz/fuzz_conn.c).
 */
#ifndef MOOR_SERVE_H
#define MOOR_SERVE_H

#include "config.h"
#include "push.h"
#include "server.h"

/* Runs `moor serve` with the words after "serve". Returns the process
 * exit status (0 ok, 1 cannot start, 2 usage, 3 memory left live). */
int serve_main(int argc, char **argv);

struct serve;

/* Builds what `moor serve` runs for cfg (borrowed: it must outlive the
 * result): the server and its listener, the built-in routes (/healthz,
 * /metrics, /debug/mem, /debug/conns, /echo), the push gateway (/sub,
 * /pub) and, as cfg asks, the TLS context, --tls-listen, --tcp-listen and
 * --admin-listen (which takes /metrics and the /debug pages off the public
 * listeners: they answer 404 there).
 * Prints nothing on success (the banner is serve_main's); on failure
 * prints the reason to stderr and returns NULL. Caller frees with
 * serve_free() once the loop has stopped. */
struct serve *serve_new(const struct moor_config *cfg);
/* Frees all of it: listeners, the server (every conn), the push gateway,
 * the TLS context, then OpenSSL's process-wide state so that live bytes
 * can reach 0. NULL is a no-op. */
void serve_free(struct serve *sv);

/* Borrowed parts, valid until serve_free(). */
struct server *serve_server(struct serve *sv);
struct push *serve_push(struct serve *sv);

#endif
