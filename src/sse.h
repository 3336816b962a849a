/*
 * sse.h - Server-Sent Events (text/event-stream, WHATWG HTML "Server-sent
 * events"): the encoder for events, retry lines and heartbeat comments,
 * the response head, and the Last-Event-ID request header. Pure code: no
 * syscalls, no allocation, no global state. A fuzzer drives it with bytes
 * alone.
 *
 * Exact size first, then encode: sse_event_size() says how many bytes an
 * event takes, the caller allocates that once per publish (not per
 * subscriber), and sse_encode_event() fills exactly that many bytes.
 *
 * The wire form of one event:
 *
 *     id: <decimal id>\n
 *     event: <name>\n            (only when a name is given)
 *     data: <line 1>\n
 *     data: <line 2>\n           (one line per line of the payload)
 *     \n
 *
 * The payload is split at "\n", "\r\n" and a lone "\r", the three line
 * ends the event stream grammar knows, so none of them can end a field
 * early. A client (EventSource) joins the data lines with "\n": it gets
 * the payload back with every "\r\n" and lone "\r" turned into "\n". That
 * is the only change; any other byte, NUL included, is passed as it is.
 * The stream is UTF-8 by definition: a payload that is not UTF-8 reaches a
 * browser with U+FFFD in place of each bad sequence.
 *
 * An empty payload is written as one empty data line ("data: \n"). The
 * client's data buffer is then "\n", which is not empty, so the event IS
 * dispatched, with data "" (an event with no data line at all would be
 * dropped by the client).
 *
 * Size: each line end of the payload (1 or 2 bytes) becomes "\ndata: "
 * (7 bytes), so an event is at most 7 * len + SSE_PREFIX_MAX + 8 bytes
 * (a payload made only of "\n"). A payload without CR or LF costs
 * len + the prefix + 2 bytes, and can be sent without copying it (see
 * sse_event_prefix()).
 */
#ifndef MOOR_SSE_H
#define MOOR_SSE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

/* Longest event name (sse_event_name_ok). Channel names fit (128). */
#define SSE_EVENT_NAME_MAX 128
/* "id: " + 20 digits + "\n" + "event: " + name + "\n" + "data: " */
#define SSE_PREFIX_MAX (4 + 20 + 1 + 7 + SSE_EVENT_NAME_MAX + 1 + 6)
/* Longest id of the _sid functions (an EPOCH:OFFSET is 37 bytes), and
 * the longest prefix with one. */
#define SSE_ID_MAX 40
#define SSE_SID_PREFIX_MAX (SSE_PREFIX_MAX - 20 + SSE_ID_MAX)
/* "retry: " + 10 digits + "\n\n" */
#define SSE_RETRY_MAX (7 + 10 + 2)

/* True if name may be an event type: 1 to SSE_EVENT_NAME_MAX bytes of
 * visible ASCII (0x21-0x7E), so no space, CR, LF or control byte, and
 * nothing a client would strip or split. NULL is not a name (false). */
bool sse_event_name_ok(const char *name);

/*
 * The size of the event for id, event (NULL for none: the client reports
 * it as type "message") and payload data[0..len) (data may be NULL when
 * len is 0).
 * Return value: the exact byte count sse_encode_event() will write, or 0
 * if event is not NULL and fails sse_event_name_ok() (no event is 0
 * bytes long).
 */
size_t sse_event_size(uint64_t id, const char *event, const uint8_t *data,
                      size_t len);

/*
 * Writes the event (see the top of this file) to out[0..cap). Borrows
 * every argument; never writes past out + cap.
 * Return value: the bytes written, which equals sse_event_size() for the
 * same arguments; or 0, with nothing useful in out, if cap is smaller
 * than that or the event name is not valid.
 */
size_t sse_encode_event(uint8_t *out, size_t cap, uint64_t id,
                        const char *event, const uint8_t *data, size_t len);

/* The same two with the id given as text, id[0..id_len) (at most
 * SSE_ID_MAX bytes, no CR, LF or NUL; else 0): a channel history's
 * "EPOCH:OFFSET" (docs/pubsub.md). An empty id (id_len 0) writes no "id:"
 * line at all, so the client's last event id stays what it was (an
 * "id:" line with nothing after it would clear it). */
size_t sse_event_size_sid(const char *id, size_t id_len, const char *event,
                          const uint8_t *data, size_t len);
size_t sse_encode_event_sid(uint8_t *out, size_t cap, const char *id,
                            size_t id_len, const char *event,
                            const uint8_t *data, size_t len);

/* True if data[0..len) holds no CR and no LF: then its event is exactly
 * sse_event_prefix() + data + "\n\n". An empty payload is one line too. */
bool sse_data_one_line(const uint8_t *data, size_t len);

/*
 * Writes "id: N\n", "event: NAME\n" if event is not NULL, and "data: "
 * to out[0..cap) (at most SSE_PREFIX_MAX bytes). For a payload that
 * passes sse_data_one_line(), the event on the wire is this prefix, the
 * payload bytes and "\n\n", so a caller may queue the three pieces and
 * share the payload instead of copying it.
 * Return value: the bytes written; 0 if they do not fit in cap or the
 * event name is not valid.
 */
size_t sse_event_prefix(uint8_t *out, size_t cap, uint64_t id,
                        const char *event);

/* Writes "retry: MS\n\n" to out[0..cap) (at most SSE_RETRY_MAX bytes):
 * the client waits ms milliseconds before it reconnects. The blank line
 * dispatches nothing (there is no data). Returns the bytes written, or 0
 * if they do not fit. */
size_t sse_encode_retry(uint8_t *out, size_t cap, uint32_t ms);

/* Writes the comment ": TEXT\n\n" (or ":\n\n" when text is NULL or "")
 * to out[0..cap): the heartbeat. A client ignores it (comments and an
 * empty dispatch deliver nothing) but proxies see traffic and a dead peer
 * shows as a failed write. Returns the bytes written, or 0 if they do not
 * fit or text holds CR or LF. */
size_t sse_encode_comment(uint8_t *out, size_t cap, const char *text);

/*
 * Formats the response head that starts a stream into out[0..cap):
 *
 *     HTTP/1.1 200 OK\r\n
 *     Content-Type: text/event-stream\r\n
 *     Cache-Control: no-cache\r\n
 *     X-Accel-Buffering: no\r\n
 *     Connection: keep-alive\r\n
 *     <extra_headers>
 *     \r\n
 *
 * There is no Content-Length and no Transfer-Encoding: chunked. An
 * HTTP/1.1 response with neither has a body that ends when the server
 * closes the connection (RFC 9112 6.3, last rule), which is exactly an
 * event stream's life; events go out as they are, with no chunk framing
 * per write. The connection is never reused after the stream, so the
 * server closes it when the stream ends; "Connection: keep-alive" only
 * tells HTTP/1.0 hops and proxies not to cut an idle-looking response.
 * Buffering proxies must pass bytes through at once: nginx obeys
 * X-Accel-Buffering: no; others need their buffering turned off for this
 * path. Heartbeat comments keep idle timeouts of proxies from firing.
 *
 * extra_headers is NULL, "", or complete header lines, each ending in
 * "\r\n" (e.g. "Access-Control-Allow-Origin: *\r\n"); a bare CR or LF, an
 * empty line, or a missing final "\r\n" is refused.
 * Return value: the length written (a NUL follows it), -EINVAL for bad
 * extra_headers, or -ENOBUFS if it does not fit in cap.
 */
ssize_t sse_format_head(char *out, size_t cap, const char *extra_headers);

/*
 * Parses the value of a Last-Event-ID request header, p[0..n), as one of
 * moor's event ids: ASCII decimal digits only (leading zeros allowed),
 * after dropping spaces and tabs around them, with a value that fits 64
 * bits.
 * Return value: true and *id set; false (and *id untouched) for an empty
 * value, any other byte (sign, space inside, "0x", ...), or overflow.
 */
bool sse_parse_last_event_id(const char *p, size_t n, uint64_t *id);

#endif
