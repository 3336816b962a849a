/*
 * ws.h - RFC 6455 WebSocket protocol: handshake, frame parsing and
 * encoding, UTF-8 validation, close codes, masking. Pure code: no
 * syscalls, no allocation, no global state (OpenSSL is used only for
 * SHA-1 in ws_accept_key). A fuzzer drives it with bytes alone.
 *
 * The parser holds no bytes. A frame header, or a whole control frame
 * (at most 2 + 8 + 4 + 125 bytes), is parsed only once it is complete in
 * the caller's buffer; until then ws_parse() consumes nothing and the
 * caller (conn.c) carries the tail. Data frame payload is delivered in
 * pieces as it arrives, unmasked in place in the caller's buffer, so a
 * 16 MiB frame never needs 16 MiB of buffer here. What the parser keeps
 * between calls is the current frame's remaining length and mask
 * position and the current message's type, length and UTF-8 state.
 *
 * Rules enforced (each failure returns the close code to send):
 *  - 1002: reserved bits set (no extension is negotiated); reserved
 *    opcodes 3-7 and 0xB-0xF; a server receiving an unmasked frame (or a
 *    client a masked one); a control frame with payload > 125 or FIN = 0;
 *    a continuation with no message in progress; a new data frame inside
 *    a fragmented message; a length not in its minimal encoding; a 64-bit
 *    length with the top bit set; a close payload of 1 byte; a close code
 *    that is invalid on the wire (0-999, 1004, 1005, 1006, 1015,
 *    1016-2999 unassigned, >= 5000).
 *  - 1007: text that is not valid UTF-8 (found at the first bad byte, even
 *    across fragment boundaries); a close reason that is not UTF-8.
 *  - 1009: a message longer than max_message (never more than 4 GiB - 1,
 *    WS_MAX_MESSAGE_LIMIT), decided from the frame header (current message
 *    length + this frame's length) before any of its payload is
 *    delivered.
 */
#ifndef MOOR_WS_H
#define MOOR_WS_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/socket.h>
#include "http1.h"

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005, /* never on the wire */
    WS_CLOSE_ABNORMAL = 1006,  /* never on the wire */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_EXTENSION = 1010,
    WS_CLOSE_INTERNAL = 1011,
    /* moor's own (the application range, RFC 6455 7.4.2; docs/auth.md). */
    WS_CLOSE_TOKEN_EXPIRED = 4001, /* --auth: the token's exp passed */
};

#define WS_MAX_HEADER 14 /* 2 + 8 (length) + 4 (mask) */
#define WS_MAX_CONTROL 125
#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 */

/* ---- UTF-8 ------------------------------------------------------------- */

/* Streaming validator (Hoehrmann-style DFA). State 0 = at a character
 * boundary. */
#define WS_UTF8_ACCEPT 0u
#define WS_UTF8_REJECT 1u

/* Feeds p[0..n) from state *st. Returns false at the first byte that makes
 * the text invalid (overlong forms, surrogates, > U+10FFFF, bad
 * continuation). A true return with *st != WS_UTF8_ACCEPT means a
 * sequence is still open (valid so far). */
bool ws_utf8_feed(uint32_t *st, const uint8_t *p, size_t n);

/* ---- handshake --------------------------------------------------------- */

struct ws_handshake {
    struct http_str key;        /* Sec-WebSocket-Key, 24 base64 chars */
    struct http_str protocols;  /* Sec-WebSocket-Protocol list, or empty */
    struct http_str origin;     /* Origin, or empty */
    struct http_str extensions; /* Sec-WebSocket-Extensions, or empty */
};

/*
 * Checks that req is a valid WebSocket upgrade request (RFC 6455 4.2.1):
 * method GET, HTTP/1.1, Upgrade contains token "websocket", Connection
 * contains token "upgrade" (both any case, token lists, possibly over
 * several field lines), exactly one Sec-WebSocket-Key that is base64 of
 * exactly 16 bytes, and exactly one Sec-WebSocket-Version, 13. Checked in
 * that order. hs fields point into req's buffer (the first field line of
 * each; "" when absent).
 * Return value: 0 and *hs filled; or the HTTP status to answer: 400 (bad
 * or missing fields), 405 (not GET), 426 (missing or other version; the
 * answer must carry "Sec-WebSocket-Version: 13").
 */
int ws_handshake_check(const struct http_request *req, struct ws_handshake *hs);

/* True if origin is allowed by the comma-separated list `allowed`
 * (exact, case-insensitive match of scheme://host[:port]; "*" allows all).
 * An empty or NULL list allows every origin, including none. A non-empty
 * list rejects a request with no Origin only if require is true ("*"
 * included: it allows any origin, not a missing one). */
bool ws_origin_allowed(struct http_str origin, const char *allowed,
                       bool require);

/* Writes the Sec-WebSocket-Accept value for key (base64(SHA-1(key +
 * GUID))) to out: WS_ACCEPT_LEN characters and a NUL. Returns false, with
 * out = "", if OpenSSL could not compute the digest (OpenSSL 3 allocates a
 * digest context, so this can fail when memory runs out): answer 503. */
bool ws_accept_key(const char *key, size_t key_len,
                   char out[WS_ACCEPT_LEN + 1]);

/* Formats the "101 Switching Protocols" response into out[0..cap), with
 * Sec-WebSocket-Protocol if protocol is non-NULL. Returns its length or
 * -ENOBUFS. */
ssize_t ws_format_upgrade(char *out, size_t cap, const char *accept,
                          const char *protocol);

/* Picks the first protocol of the client's list (hs->protocols, in the
 * client's order of preference) that is in the server's comma-separated
 * list `supported` (names compare case-sensitively, RFC 7936; one that
 * does not fit in cap with its NUL is skipped). Writes it NUL-terminated
 * to out and returns true, or returns false (then no
 * Sec-WebSocket-Protocol is sent). */
bool ws_pick_protocol(struct http_str offered, const char *supported, char *out,
                      size_t cap);

/* ---- the client's side of the handshake --------------------------------- */

#define WS_MAX_RESPONSE 8192 /* a longer 101 response head is refused */

/* Formats the opening handshake request (RFC 6455 4.1) into out[0..cap):
 * GET path with Host, Upgrade, Connection, Sec-WebSocket-Key key (base64
 * of 16 random bytes), version 13, and Origin / Sec-WebSocket-Protocol
 * when non-NULL. Returns its length or -ENOBUFS. */
ssize_t ws_format_request(char *out, size_t cap, const char *host,
                          const char *path, const char *key, const char *origin,
                          const char *protocols);

struct ws_response {
    uint16_t status;          /* the status code, once the line parsed */
    struct http_str protocol; /* chosen subprotocol, or empty */
    const char *why;          /* on failure: what was wrong (static) */
};

/*
 * Checks the server's answer to the opening handshake in in[0..len):
 * HTTP/1.1 101, Upgrade containing "websocket", Connection containing
 * "upgrade" (any case, token lists), exactly the Sec-WebSocket-Accept
 * `accept` (WS_ACCEPT_LEN characters, from ws_accept_key() of our key),
 * no extension (we offer none), and a subprotocol only if it is one of
 * the comma-separated `protocols` we offered (NULL: none).
 * Return value: >0 the length of the response head (the bytes after it
 * are frames); 0 the head is not complete yet (call again with more);
 * <0 the handshake failed: r->why says why, r->status holds the status if
 * the status line was read. A head longer than WS_MAX_RESPONSE fails.
 */
ssize_t ws_check_response(const uint8_t *in, size_t len, const char *accept,
                          const char *protocols, struct ws_response *r);

/* A ws:// URL, parsed. */
struct ws_url {
    char host[256];  /* Host header value: host, and :port unless the
                        scheme's default */
    char name[64];   /* the host alone (no port, no brackets): TLS's SNI
                        and certificate check */
    char path[1024]; /* request target, "/" if none */
    struct sockaddr_storage addr; /* the address to connect to */
    socklen_t addrlen;
    bool tls; /* wss:// */
};

/* Parses "ws://HOST[:PORT][/PATH]" or "wss://..." where HOST is an IPv4
 * address, [IPv6] or "localhost" (127.0.0.1); PORT defaults to 80 (443
 * for wss). No name lookups: no blocking. Returns NULL, or a static
 * message saying what is wrong. */
const char *ws_url_parse(const char *url, struct ws_url *u);

/* ---- frames ------------------------------------------------------------ */

enum ws_event_type {
    WS_EV_NONE = 0, /* bytes consumed, nothing to report yet */
    WS_EV_DATA,     /* a piece of a text/binary message */
    WS_EV_PING,
    WS_EV_PONG,
    WS_EV_CLOSE,
};

struct ws_event {
    enum ws_event_type type;
    uint8_t opcode; /* DATA: WS_OP_TEXT or WS_OP_BINARY */
    bool first;     /* DATA: first piece of its message */
    bool fin;       /* DATA: last piece of its message */
    uint8_t *data;  /* payload, unmasked, inside the input */
    size_t len;
    uint16_t close_code;   /* CLOSE: the code, or 1005 if none */
    const uint8_t *reason; /* CLOSE: the reason (UTF-8), inside input */
    size_t reason_len;
};

/* What a connection keeps between reads: 14 bytes. Message and frame
 * lengths fit 32 bits because max_message is at most 4 GiB - 1. */
struct ws_pstate {
    uint32_t remaining; /* payload bytes left in the current frame */
    uint32_t msg_len;   /* bytes of the current message so far */
    uint8_t mask[4];
    uint16_t utf8 : 4;      /* UTF-8 state of the current text message */
    uint16_t mask_pos : 2;  /* 0..3: where the next byte's key is */
    uint16_t msg_op : 2;    /* opcode of the message in progress, or 0 */
    uint16_t in_frame : 1;  /* a data frame's payload is being read */
    uint16_t frame_fin : 1; /* the current data frame has FIN */
    uint16_t msg_first : 1; /* no piece of the current message delivered */
    uint16_t closed : 1;    /* a close frame was parsed, or the peer broke
                               the protocol: nothing after */
} __attribute__((packed, aligned(2)));

/* A parser: the kept state plus the settings, which a connection takes
 * from its server instead of storing them (see ws_server.c). */
struct ws_parser {
    struct ws_pstate s;
    uint32_t max_message; /* 0 = the most there is: 4 GiB - 1 */
    bool server;          /* expects masked frames (else unmasked) */
};

#define WS_MAX_MESSAGE_LIMIT 0xFFFFFFFFu /* max_message's ceiling */

/* server: true to parse a client's frames (masked), false for a server's. */
void ws_parser_init(struct ws_parser *p, bool server, uint64_t max_message);
/* The kept state of a parser that has seen nothing yet. */
void ws_pstate_init(struct ws_pstate *s);

/*
 * Parses from in[0..len), which it may modify (payload is unmasked in
 * place; bytes it does not consume are left as they were, so the caller
 * can carry them unchanged). Reports at most one event per call.
 * Return value: >0 bytes consumed (ev says what, possibly WS_EV_NONE);
 * 0 more input is needed (nothing consumed; keep the bytes and call again
 * with more); <0 the peer broke the protocol: *code is the close code to
 * send (1002, 1007, 1009). A rule is applied as soon as the bytes it needs
 * are present, even if the header is not complete yet; the outcome never
 * depends on how the input was split. After a WS_EV_CLOSE or an error
 * every further call returns 0 consumed and WS_EV_NONE: nothing is
 * processed after a close.
 * A zero-length data frame yields a WS_EV_DATA with len 0 (an empty
 * message, or its end); a non-empty frame yields pieces of len > 0 only.
 * Text failing UTF-8 is rejected at the piece holding the first bad byte;
 * that piece is not delivered, earlier ones were.
 */
ssize_t ws_parse(struct ws_parser *p, uint8_t *in, size_t len,
                 struct ws_event *ev, uint16_t *code);

/* True if code may be sent in a close frame (1000-1003, 1007-1011,
 * 1012-1014, 3000-4999). */
bool ws_close_code_valid(uint16_t code);

/* Writes a frame header for a payload of len bytes into out (at least
 * WS_MAX_HEADER bytes). mask is NULL for a server's frame, or the 4-byte
 * key of a client's frame (the caller masks the payload with ws_mask).
 * Returns the header length (2 to 14). */
size_t ws_encode_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t len,
                        const uint8_t *mask);

/* The length of ws_encode_header()'s header for a len-byte payload, for
 * a server's frame (no mask; a client's adds 4). */
static inline size_t ws_header_size(uint64_t len)
{
    return len < 126 ? 2 : len <= 0xFFFF ? 4 : 10;
}

/* Encodes a close frame payload (code + reason, reason cut to fit 123
 * bytes on a UTF-8 boundary) into out[0..125). reason is UTF-8 text,
 * NUL-terminated, or NULL for none. Returns its length. */
size_t ws_encode_close_payload(uint8_t *out, uint16_t code, const char *reason);

/* XORs p[0..n) with key, starting at key position pos (0..3); returns
 * the next position. Works 8 or 16 bytes per step, not byte by byte. */
uint8_t ws_mask(uint8_t *p, size_t n, const uint8_t key[4], uint8_t pos);

#endif
