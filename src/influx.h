/*
 * influx.h - pushes moor's metrics to InfluxDB (issue 17,
 * docs/monitoring.md): every --influx-interval the /metrics page is
 * rendered, turned into line protocol (influx_line.h) and queued; one
 * write at a time goes out with the pooled HTTP client on the server's
 * own loop (never blocking it), to a v1 (`/write?db=...`) or v2
 * (`/api/v2/write?org=...&bucket=...`) endpoint.
 *
 * Keeps: the outbox is bounded (--influx-buffer, tag influx): when the
 * sink is down or slow, the oldest batches are dropped and counted;
 * failed writes are retried with backoff and jitter; a write the sink
 * refuses (4xx: a bad line, a bad token, no such database) is dropped,
 * counted and logged, never retried for ever. Bodies are gzipped (zlib,
 * its memory through mem.c, tag influx, freed before the write goes out)
 * unless --influx-gzip says otherwise or the sink cannot read them; the
 * outbox bound counts uncompressed bytes. Each push also writes the
 * delivery latency quantiles (influx_line.h) from the histogram's
 * increase since the previous push.
 */
#ifndef MOOR_INFLUX_H
#define MOOR_INFLUX_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct loop;
struct moor_http_client;

/* --influx-gzip: auto gzips until the sink answers 415 (or a 400 about
 * the encoding), then sends that sink plain bodies. */
enum influx_gzip { INFLUX_GZIP_AUTO, INFLUX_GZIP_ON, INFLUX_GZIP_OFF };

struct influx_opts {
    const char *url;        /* --influx-url (http:// or https://) */
    const char *token_file; /* v2: "Authorization: Token <file's text>" */
    const char *user;       /* v1: basic auth with password_file's text */
    const char *password_file;
    uint32_t interval_ms;  /* --influx-interval */
    const char *tags;      /* --influx-tags k=v,... (host= added unless set) */
    const char *precision; /* s, ms, us or ns */
    uint64_t buffer;       /* --influx-buffer: outbox bytes at most */
    enum influx_gzip gzip; /* --influx-gzip */
};

struct influx_stats {
    uint64_t points_written, points_dropped, points_rejected;
    uint64_t writes_ok, writes_failed, writes_rejected;
    uint64_t queued_bytes;
    uint64_t sent_gzip_bytes, sent_identity_bytes; /* bodies, retries too */
    long queued_batches;
};

/* Renders the metrics page into b (0 or -errno). */
typedef int influx_render_fn(struct sbuf *b, void *arg);

struct influx;

/* NULL with a one-line reason in err (a bad URL, tag list or precision,
 * an unreadable token or password file, no memory). */
struct influx *influx_new(struct loop *l, const struct influx_opts *o,
                          influx_render_fn *render, void *arg, char *err,
                          size_t errlen);
/* Drops what is queued, cancels the write in flight. NULL is a no-op. */
void influx_free(struct influx *ix);
const struct influx_stats *influx_stats(const struct influx *ix);
/* The pooled HTTP client the writes go out on (for its pool's metrics). */
struct moor_http_client *influx_client(const struct influx *ix);

#endif
