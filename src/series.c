/*
 * series.c - the table of every series on /metrics; see series.h.
 *
 * Keeps: one row per family, in the order /metrics renders them; units
 * are what one unit of the value counts ("bytes", "seconds",
 * "connections"; "1" for a flag or an info gauge); a counter's name ends
 * in _total.
 * Must not: hold state or allocate.
 */
#include <stdio.h>
#include <string.h>

#include "series.h"
#include "util.h"

static const struct series rows[] = {
    {"moor_build_info", "gauge", "1", "version",
     "Always 1; the version is in the label."},
    {"moor_start_time_seconds", "gauge", "seconds", "",
     "Start time of the process since the Unix epoch."},
    {"moor_loops", "gauge", "loops", "", "Event loops (worker threads)."},
    {"moor_accepted_total", "counter", "connections", "",
     "Connections accepted and handed to a protocol."},
    {"moor_closed_total", "counter", "connections", "reason",
     "Connections closed, by the reason that closed them."},
    {"moor_refused_total", "counter", "connections", "reason",
     "Connections refused at accept (503 and close; only close on "
     "--tcp-listen), by reason."},
    {"moor_ip_table_entries", "gauge", "addresses", "",
     "Client addresses tracked for the per-address limits "
     "(--ip-table-size)."},
    {"moor_accept_paused_total", "counter", "pauses", "reason",
     "Times accepting was paused, by reason."},
    {"moor_connections", "gauge", "connections", "state",
     "Open connections, by state."},
    {"moor_connections_by_protocol", "gauge", "connections", "protocol",
     "Open connections, by protocol: http (HTTP/1.1, before an upgrade), "
     "websocket, sse, tcp (--tcp-listen frames); TLS ones are also in "
     "moor_tls_connections."},
    {"moor_connections_paused", "gauge", "connections", "",
     "Open connections whose reading is paused."},
    {"moor_connections_paused_by_cause", "gauge", "connections", "cause",
     "Open connections whose reading is paused, by cause (one "
     "connection may have several)."},
    {"moor_read_pauses_total", "counter", "pauses", "cause",
     "Times a connection's reading was paused, by cause."},
    {"moor_queued_bytes", "gauge", "bytes", "",
     "Bytes queued for sending, all connections."},
    {"moor_queue_overflows_total", "counter", "sends", "",
     "Sends refused because a connection's queue was at "
     "--queue-limit."},
    {"moor_carry_saves_total", "counter", "reads", "",
     "Reads that ended in an incomplete tail copied to a carry "
     "buffer."},
    {"moor_bytes_received_total", "counter", "bytes", "",
     "Bytes read from connections."},
    {"moor_bytes_sent_total", "counter", "bytes", "",
     "Bytes written to connections."},
    {"moor_tls_handshakes_total", "counter", "handshakes", "result",
     "TLS handshakes, by outcome: ok, failed (alert, bad record, "
     "no common version or cipher), timeout "
     "(--handshake-timeout), plaintext (plain HTTP on the TLS "
     "port, answered 400)."},
    {"moor_tls_connections", "gauge", "connections", "",
     "Open connections with TLS (in handshake or established)."},
    {"moor_tls_reloads_total", "counter", "reloads", "result",
     "Certificate reloads (SIGHUP), by outcome; a failed one "
     "keeps the certificate in service."},
    {"moor_http_requests_total", "counter", "requests", "",
     "HTTP requests whose header block was parsed."},
    {"moor_http_responses_total", "counter", "responses", "code",
     "HTTP responses sent, by status class."},
    {"moor_http_rejected_total", "counter", "requests", "status",
     "HTTP requests answered with an error status, by status."},
    {"moor_pubsub_published_total", "counter", "messages", "",
     "Messages published (whether or not anyone listened)."},
    {"moor_pubsub_delivered_total", "counter", "messages", "",
     "Messages queued to a subscriber."},
    {"moor_pubsub_dropped_total", "counter", "messages", "reason",
     "Messages a subscriber did not get, by reason: drop_oldest "
     "(--slow-policy drop-oldest), closing (it was leaving)."},
    {"moor_pubsub_slow_disconnects_total", "counter", "connections", "limit",
     "Subscribers disconnected as slow consumers, by the limit "
     "passed: hard (--queue-limit) or soft (--queue-soft-limit "
     "for --queue-soft-time)."},
    {"moor_pubsub_refused_total", "counter", "subscriptions", "",
     "Subscriptions refused by --max-channels or "
     "--max-channels-per-conn."},
    {"moor_pubsub_channels", "gauge", "channels", "",
     "Channels with at least one subscriber."},
    {"moor_pubsub_subscriptions", "gauge", "subscriptions", "",
     "Subscriptions: (connection, channel) pairs."},
    {"moor_pubsub_subscribers", "gauge", "connections", "",
     "Connections subscribed to at least one channel."},
    {"moor_pubsub_delivery_seconds", "histogram", "seconds", "",
     "Time from a publish to the write that put the message in a "
     "subscriber's socket."},
    {"moor_pubsub_queue_max_bytes", "gauge", "bytes", "",
     "The largest subscriber queue seen at a publish since start."},
    {"moor_history_messages", "gauge", "messages", "",
     "Messages kept in channel histories (--history-size, --history-ttl)."},
    {"moor_history_bytes", "gauge", "bytes", "",
     "Bytes channel histories hold: messages, entries and channel "
     "records (bounded by --history-max-bytes)."},
    {"moor_history_channels", "gauge", "channels", "",
     "Channels with a history (subscribed, or with messages kept)."},
    {"moor_history_evicted_total", "counter", "messages", "reason",
     "Messages that left a history, by reason: size (--history-size), "
     "ttl (--history-ttl) or bytes (--history-max-bytes)."},
    {"moor_history_replayed_total", "counter", "messages", "",
     "Messages replayed to recovering subscribers (since=, "
     "Last-Event-ID)."},
    {"moor_history_resets_total", "counter", "notices", "reason",
     "Reset notices sent to subscribers whose missed messages could not "
     "be replayed, by reason: epoch, too_old, too_many, several, too_big, "
     "off."},
    {"moor_auth_total", "counter", "checks", "result,reason",
     "Subscriptions and publications checked by --auth: allowed, "
     "or denied by reason (no_token, malformed, bad_signature, "
     "expired, not_allowed, ...)."},
    {"moor_auth_expired_total", "counter", "connections", "",
     "Connections closed because their token expired."},
    {"moor_auth_connections", "gauge", "connections", "",
     "Open connections whose token's expiry is tracked."},
    {"moor_auth_callback_calls_total", "counter", "requests", "",
     "Questions sent to --auth-url."},
    {"moor_auth_callback_inflight", "gauge", "requests", "",
     "Questions out to --auth-url now (--auth-max-inflight)."},
    {"moor_auth_callback_cache_hits_total", "counter", "checks", "",
     "Decisions taken from the --auth-cache-ttl cache."},
    {"moor_auth_callback_cached", "gauge", "entries", "",
     "Decisions in the cache (--auth-cache-entries)."},
    {"moor_auth_callback_seconds", "histogram", "seconds", "",
     "Time from a question to --auth-url to its answer (or its "
     "timeout)."},
    {"moor_auth_reloads_total", "counter", "reloads", "result",
     "Key reloads (SIGHUP), by outcome; a failed one keeps the "
     "old keys."},
    {"moor_config_reloads_total", "counter", "reloads", "result",
     "Config file rereads (SIGHUP with --config), by outcome; a failed one "
     "keeps the running settings."},
    {"moor_debug_streams", "gauge", "streams", "",
     "Open GET /debug/stream feeds (--max-debug-streams)."},
    {"moor_debug_streams_refused_total", "counter", "requests", "",
     "GET /debug/stream requests answered 503 at --max-debug-streams."},
    {"moor_influx_points_total", "counter", "points", "result",
     "Points for --influx-url: written, dropped (the outbox full: "
     "--influx-buffer) or rejected (the sink refused their batch)."},
    {"moor_influx_writes_total", "counter", "requests", "result",
     "Writes to --influx-url, by result: ok, failed (retried with "
     "backoff), rejected (a 4xx: dropped)."},
    {"moor_influx_queued_bytes", "gauge", "bytes", "",
     "Line protocol waiting for --influx-url (at most "
     "--influx-buffer)."},
    {"moor_influx_sent_bytes_total", "counter", "bytes", "encoding",
     "Body bytes of the writes to --influx-url (retries included), by "
     "encoding: gzip or identity (--influx-gzip)."},
    {"moor_mem_live_bytes", "gauge", "bytes", "tag",
     "Bytes allocated and not yet freed, by tag."},
    {"moor_mem_live_allocations", "gauge", "allocations", "tag",
     "Allocations not yet freed, by tag."},
    {"moor_mem_allocations_total", "counter", "allocations", "tag",
     "Allocations made, by tag."},
    {"moor_mem_allocated_bytes_total", "counter", "bytes", "tag",
     "Bytes allocated, by tag."},
    {"moor_mem_failed_allocations_total", "counter", "allocations", "tag",
     "Allocations that failed, by tag."},
    {"moor_mem_budget_bytes", "gauge", "bytes", "",
     "The --memory-limit budget in bytes (0 = none)."},
    {"moor_mem_over_budget", "gauge", "1", "",
     "1 while live bytes are over --memory-limit."},
    {"moor_process_resident_memory_bytes", "gauge", "bytes", "",
     "Resident set size of the process (VmRSS); compare with the "
     "sum of moor_mem_live_bytes."},
    {"moor_mem_trims_total", "counter", "trims", "",
     "Times freed heap was handed back to the system "
     "(malloc_trim) by the --mem-trim-interval check."},
    {"moor_mem_trims_backed_off_total", "counter", "trims", "",
     "Trims that gave back less than half of --mem-trim-threshold "
     "(the memory held is live or not heap): each doubles the "
     "checks until the next may run, up to 64."},
    {"moor_mem_trimmed_bytes_total", "counter", "bytes", "",
     "Bytes of resident memory given back by those trims (RssAnon "
     "before minus after each)."},
    {"moor_mem_trim_seconds_total", "counter", "seconds", "",
     "Time the event loops spent trimming."},
    {"moor_log_suppressed_total", "counter", "lines", "",
     "Log lines dropped by per-site rate limiting."},
    {"moor_process_open_fds", "gauge", "fds", "",
     "Open file descriptors of the process."},
    {"moor_http_client_connections", "gauge", "connections", "host,state",
     "Pooled HTTP client connections by host and state."},
    {"moor_http_client_requests_waiting", "gauge", "requests", "host",
     "Requests queued for a connection (max_conns_per_host "
     "reached)."},
    {"moor_http_client_requests_total", "counter", "requests", "host",
     "Requests started."},
    {"moor_http_client_requests_reused_total", "counter", "requests", "host",
     "Requests that ran on a pooled connection."},
    {"moor_http_client_retries_total", "counter", "requests", "host",
     "Idempotent requests sent again after a reused connection "
     "failed before any response byte."},
    {"moor_http_client_tls_resumed_total", "counter", "connections", "host",
     "TLS connections that resumed a session instead of a full "
     "handshake."},
    {"moor_http_client_tls_handshakes_waiting", "gauge", "connections", "host",
     "Connections whose TLS handshake waits for its turn "
     "(max_handshakes in flight)."},
    {"moor_http_client_tls_handshakes_waited_total", "counter", "handshakes",
     "host", "TLS handshakes that waited for their turn (max_handshakes)."},
    {"moor_http_client_connections_opened_total", "counter", "connections",
     "host", "Connections dialed."},
    {"moor_http_client_connections_closed_total", "counter", "connections",
     "host,reason", "Connections closed, by reason."},
    {"moor_http_client_bytes_held", "gauge", "bytes", "",
     "Bytes the HTTP client holds (tag http_client)."},
};

const struct series *series_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
        if (!strcmp(rows[i].name, name))
            return &rows[i];
    return NULL;
}

const struct series *series_table(size_t *n)
{
    *n = ARRAY_SIZE(rows);
    return rows;
}

void series_print_text(FILE *out)
{
    char left[128];

    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        const struct series *s = &rows[i];

        snprintf(left, sizeof(left), s->labels[0] ? "%s{%s}" : "%s", s->name,
                 s->labels);
        fprintf(out, "  %-54s %-9s %s\n", left, s->type, s->unit);
    }
}

void series_print_md(FILE *out)
{
    fprintf(out, "| series | type | unit | labels | what it counts |\n"
                 "|---|---|---|---|---|\n");
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        const struct series *s = &rows[i];

        fprintf(out, "| `%s` | %s | %s | %s | ", s->name, s->type, s->unit,
                s->labels[0] ? s->labels : "");
        for (const char *c = s->help; *c; c++)
            if (*c == '|')
                fputs("\\|", out);
            else
                fputc(*c, out);
        fputs(" |\n", out);
    }
}
