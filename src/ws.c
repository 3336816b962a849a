/*
 * ws.c - RFC 6455 WebSocket protocol: opening handshake checks, the
 * Sec-WebSocket-Accept key, frame parsing and encoding, close payloads,
 * masking and a streaming UTF-8 validator.
 *
 * What it does: ws_parse() turns the bytes of the caller's buffer into
 * events (a piece of a data message, a ping, a pong, a close) and enforces
 * every rule listed in ws.h, answering a broken peer with the close code to
 * send. Everything else is small pure helpers for the upgrade exchange and
 * for building frames.
 *
 * Invariants:
 *  - The parser holds no input bytes. A frame header, or a whole control
 *    frame, is parsed only once it is complete in the caller's buffer;
 *    until then nothing is consumed and the caller carries the tail, which
 *    is therefore never longer than WS_MAX_HEADER + WS_MAX_CONTROL bytes.
 *    Data payload is handed out in pieces as it arrives.
 *  - Bytes that are not consumed are never modified, so the caller may
 *    copy them to its carry buffer as they are. Consumed payload is
 *    unmasked in place.
 *  - Every length the peer claims is checked (minimal encoding, top bit,
 *    max_message) before any of the frame's payload is delivered; nothing
 *    is ever sized by it.
 *  - A rule that can be decided from the first bytes of a header is
 *    decided as soon as those bytes are present, so a peer cannot hold a
 *    broken frame open by sending its header slowly. The answer depends on
 *    the bytes only, never on how they were split between calls.
 *  - Text is validated piece by piece and fails at the piece holding the
 *    first bad byte (fail fast, RFC 6455 8.1), never later at FIN.
 *  - After a close frame or a protocol error the parser is closed: every
 *    further call consumes nothing and reports nothing.
 *
 * Must not: make syscalls, allocate through mem.c, keep mutable global
 * state (only const tables live here), or call upward into conn or server
 * code. OpenSSL is used for SHA-1 only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/evp.h>

#include "ws.h"
#include "url.h"
#include "util.h"

/* RFC 6455 1.3: appended to the client's key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ---- UTF-8 (RFC 3629 section 4) ---------------------------------------- */

/*
 * A DFA in the style of Bjoern Hoehrmann's decoder: every byte is first
 * mapped to a class, then (state, class) gives the next state. The classes
 * split the continuation range 80..BF where the grammar needs it: after
 * E0 only A0..BF may follow (no overlong 3-byte forms), after ED only
 * 80..9F (no surrogates D800..DFFF), after F0 only 90..BF (no overlong
 * 4-byte forms), after F4 only 80..8F (nothing above U+10FFFF).
 */
enum utf8_class {
    C_ASCII, /* 00..7F */
    C_C80,   /* 80..8F */
    C_C90,   /* 90..9F */
    C_CA0,   /* A0..BF */
    C_BAD,   /* C0, C1, F5..FF: never valid */
    C_L2,    /* C2..DF: lead of a 2-byte sequence */
    C_E0,    /* E0 */
    C_L3,    /* E1..EC, EE, EF */
    C_ED,    /* ED */
    C_F0,    /* F0 */
    C_L4,    /* F1..F3 */
    C_F4,    /* F4 */
    C_COUNT
};

/* States. ACCEPT and REJECT are the values ws.h publishes. */
enum utf8_state {
    S_ACCEPT = WS_UTF8_ACCEPT,
    S_REJECT = WS_UTF8_REJECT,
    S_TAIL1, /* one continuation byte (80..BF) left */
    S_TAIL2, /* two left */
    S_E0,    /* after E0: A0..BF, then one more */
    S_ED,    /* after ED: 80..9F, then one more */
    S_TAIL3, /* three left */
    S_F0,    /* after F0: 90..BF, then two more */
    S_F4,    /* after F4: 80..8F, then two more */
    S_COUNT
};

/* The byte to class table, written out so the hot loop is one load. The
 * unit tests check it, with the transitions, against a reference decoder
 * on every sequence of up to 3 bytes. */
#define R16(c) c, c, c, c, c, c, c, c, c, c, c, c, c, c, c, c
/* One row per 16 bytes reads better than one entry per line. */
/* clang-format off */
static const uint8_t utf8_class[256] = {
    /* 00..7F */
    R16(C_ASCII), R16(C_ASCII), R16(C_ASCII), R16(C_ASCII),
    R16(C_ASCII), R16(C_ASCII), R16(C_ASCII), R16(C_ASCII),
    /* 80..BF */
    R16(C_C80), R16(C_C90), R16(C_CA0), R16(C_CA0),
    /* C0..CF: C0 and C1 could only start overlong 2-byte forms */
    C_BAD, C_BAD, C_L2, C_L2, C_L2, C_L2, C_L2, C_L2,
    C_L2, C_L2, C_L2, C_L2, C_L2, C_L2, C_L2, C_L2,
    /* D0..DF */
    R16(C_L2),
    /* E0..EF */
    C_E0, C_L3, C_L3, C_L3, C_L3, C_L3, C_L3, C_L3,
    C_L3, C_L3, C_L3, C_L3, C_L3, C_ED, C_L3, C_L3,
    /* F0..FF */
    C_F0, C_L4, C_L4, C_L4, C_F4, C_BAD, C_BAD, C_BAD,
    C_BAD, C_BAD, C_BAD, C_BAD, C_BAD, C_BAD, C_BAD, C_BAD,
};
/* clang-format on */
#undef R16

#define X S_REJECT
static const uint8_t utf8_next[S_COUNT][C_COUNT] = {
    /* Columns in enum utf8_class order: ASCII, 80..8F, 90..9F, A0..BF,
     * bad, L2, E0, L3, ED, F0, L4, F4. */
    [S_ACCEPT] = {S_ACCEPT, X, X, X, X, S_TAIL1, S_E0, S_TAIL2, S_ED, S_F0,
                  S_TAIL3, S_F4},
    [S_REJECT] = {X, X, X, X, X, X, X, X, X, X, X, X},
    [S_TAIL1] = {X, S_ACCEPT, S_ACCEPT, S_ACCEPT, X, X, X, X, X, X, X, X},
    [S_TAIL2] = {X, S_TAIL1, S_TAIL1, S_TAIL1, X, X, X, X, X, X, X, X},
    [S_E0] = {X, X, X, S_TAIL1, X, X, X, X, X, X, X, X},
    [S_ED] = {X, S_TAIL1, S_TAIL1, X, X, X, X, X, X, X, X, X},
    [S_TAIL3] = {X, S_TAIL2, S_TAIL2, S_TAIL2, X, X, X, X, X, X, X, X},
    [S_F0] = {X, X, S_TAIL2, S_TAIL2, X, X, X, X, X, X, X, X},
    [S_F4] = {X, S_TAIL2, X, X, X, X, X, X, X, X, X, X},
};
#undef X

/* True if the 8 bytes at p are all ASCII. memcpy keeps the load legal at
 * any alignment; compilers turn it into one 64-bit load. */
static bool ascii8(const uint8_t *p)
{
    uint64_t w;

    memcpy(&w, p, sizeof(w));
    return (w & UINT64_C(0x8080808080808080)) == 0;
}

bool ws_utf8_feed(uint32_t *st, const uint8_t *p, size_t n)
{
    uint32_t s = *st;
    size_t i = 0;

    if (s >= S_COUNT)
        s = S_REJECT; /* a corrupt state is treated as failed, not read */
    while (i < n && s != S_REJECT) {
        /* Between characters, skip runs of ASCII 8 bytes at a time. */
        if (s == S_ACCEPT) {
            while (n - i >= 8 && ascii8(p + i))
                i += 8;
            if (i == n)
                break;
        }
        s = utf8_next[s][utf8_class[p[i]]];
        i++;
    }
    *st = s;
    return s != S_REJECT;
}

/* ---- small helpers ----------------------------------------------------- */

/* True if the comma-separated list s[0..n) holds el exactly (ci: ignoring
 * ASCII case). Every list here is a header value or a flag's value, far
 * shorter than an http_str's 4 GiB. */
static bool list_has(const char *s, size_t n, const char *el, size_t el_len,
                     bool ci)
{
    struct http_str v = {s, (uint32_t)n}, it;
    uint32_t pos = 0;

    while (http_list_next(v, &pos, &it)) {
        if (ci ? ascii_ci_equal(it.p, it.len, el, el_len)
               : it.len == el_len && memcmp(it.p, el, el_len) == 0)
            return true;
    }
    return false;
}

static const struct http_str empty_str = {"", 0};

/* ---- handshake --------------------------------------------------------- */

/* True if any field named name carries token tok in its list. Upgrade and
 * Connection may be split over several field lines (RFC 9110 5.3). */
static bool any_field_has(const struct http_request *req, const char *name,
                          const char *tok)
{
    size_t nlen = strlen(name);

    for (uint32_t i = 0; i < req->n_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (ascii_ci_equal(h->name.p, h->name.len, name, nlen) &&
            http_token_list_has(h->value, tok))
            return true;
    }
    return false;
}

/* The only field named name: *out is set and 1 returned; 0 if absent;
 * 2 if it occurs more than once (out holds the first). */
static int single_field(const struct http_request *req, const char *name,
                        struct http_str *out)
{
    size_t nlen = strlen(name);
    int seen = 0;

    for (uint32_t i = 0; i < req->n_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (!ascii_ci_equal(h->name.p, h->name.len, name, nlen))
            continue;
        if (seen++ == 0)
            *out = h->value;
    }
    return seen > 1 ? 2 : seen;
}

static bool is_b64(char c)
{
    return ascii_is_alnum((unsigned char)c) || c == '+' || c == '/';
}

/* True if k is base64 of exactly 16 bytes: 22 characters of the alphabet
 * and "==". Like most servers, the 4 unused bits of the last character are
 * not required to be zero: they decode to 16 bytes either way. */
static bool key_valid(struct http_str k)
{
    if (k.len != 24 || k.p[22] != '=' || k.p[23] != '=')
        return false;
    for (int i = 0; i < 22; i++) {
        if (!is_b64(k.p[i]))
            return false;
    }
    return true;
}

int ws_handshake_check(const struct http_request *req, struct ws_handshake *hs)
{
    struct http_str v = empty_str;

    if (req->method != HTTP_GET)
        return 405;
    if (req->version_minor != 1)
        return 400;
    if (!any_field_has(req, "upgrade", "websocket") ||
        !any_field_has(req, "connection", "upgrade"))
        return 400;
    /* The version comes before the key: a client speaking another version
     * may format its key differently, and 426 tells it what to retry. */
    switch (single_field(req, "sec-websocket-version", &v)) {
    case 0:
        return 426;
    case 1:
        if (v.len != 2 || memcmp(v.p, "13", 2) != 0)
            return 426;
        break;
    default:
        return 400;
    }
    if (single_field(req, "sec-websocket-key", &hs->key) != 1 ||
        !key_valid(hs->key))
        return 400;
    hs->protocols = empty_str;
    hs->origin = empty_str;
    hs->extensions = empty_str;
    (void)single_field(req, "sec-websocket-protocol", &hs->protocols);
    (void)single_field(req, "origin", &hs->origin);
    (void)single_field(req, "sec-websocket-extensions", &hs->extensions);
    return 0;
}

bool ws_origin_allowed(struct http_str origin, const char *allowed,
                       bool require)
{
    size_t n = allowed ? strlen(allowed) : 0;

    if (n == 0)
        return true;
    /* A non-empty list with require set wants an Origin, even with "*":
     * "*" allows every origin, not the absence of one. */
    if (origin.len == 0)
        return !require;
    return list_has(allowed, n, "*", 1, false) ||
           list_has(allowed, n, origin.p, origin.len, true);
}

bool ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok;

    ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, key, key_len) == 1 &&
         EVP_DigestUpdate(ctx, ws_guid, sizeof(ws_guid) - 1) == 1 &&
         EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == 20;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        out[0] = '\0';
        return false;
    }
    /* 20 bytes encode to exactly 28 characters plus the NUL. */
    EVP_EncodeBlock((unsigned char *)out, md, 20);
    return true;
}

ssize_t ws_format_upgrade(char *out, size_t cap, const char *accept,
                          const char *protocol)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "%s%s%s"
                     "\r\n",
                     accept, protocol ? "Sec-WebSocket-Protocol: " : "",
                     protocol ? protocol : "", protocol ? "\r\n" : "");

    if (n < 0 || (size_t)n >= cap)
        return -ENOBUFS;
    return n;
}

bool ws_pick_protocol(struct http_str offered, const char *supported, char *out,
                      size_t cap)
{
    size_t sn = supported ? strlen(supported) : 0;
    struct http_str el;
    uint32_t pos = 0;

    /* Subprotocol names compare case-sensitively (RFC 7936). */
    while (http_list_next(offered, &pos, &el)) {
        if (el.len == 0 || el.len >= cap ||
            !list_has(supported, sn, el.p, el.len, false))
            continue;
        memcpy(out, el.p, el.len);
        out[el.len] = '\0';
        return true;
    }
    return false;
}

/* ---- the client's side of the handshake --------------------------------- */

ssize_t ws_format_request(char *out, size_t cap, const char *host,
                          const char *path, const char *key, const char *origin,
                          const char *protocols)
{
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s%s%s"
                     "%s%s%s"
                     "\r\n",
                     path && *path ? path : "/", host, key,
                     origin ? "Origin: " : "", origin ? origin : "",
                     origin ? "\r\n" : "",
                     protocols ? "Sec-WebSocket-Protocol: " : "",
                     protocols ? protocols : "", protocols ? "\r\n" : "");

    if (n < 0 || (size_t)n >= cap)
        return -ENOBUFS;
    return n;
}

/* Finds "\r\n\r\n" (the end of a response head) in p[0..n). */
static size_t head_end(const char *p, size_t n)
{
    for (size_t i = 3; i < n; i++) {
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' &&
            p[i - 3] == '\r')
            return i + 1;
    }
    return 0;
}

static ssize_t resp_fail(struct ws_response *r, const char *why)
{
    r->why = why;
    return -1;
}

ssize_t ws_check_response(const uint8_t *in, size_t len, const char *accept,
                          const char *protocols, struct ws_response *r)
{
    const char *p = (const char *)in;
    size_t end = head_end(p, len < WS_MAX_RESPONSE ? len : WS_MAX_RESPONSE);
    size_t pos, line_end;
    bool upgrade = false, connection = false, accept_ok = false;

    memset(r, 0, sizeof(*r));
    if (!end)
        return len >= WS_MAX_RESPONSE
                   ? resp_fail(r, "response header too large")
                   : 0;
    /* Status line: HTTP/1.1 SP 3DIGIT SP reason */
    if (end < 12 || memcmp(p, "HTTP/1.1 ", 9) != 0 || p[9] < '0' ||
        p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' ||
        p[11] > '9' || (p[12] != ' ' && p[12] != '\r'))
        return resp_fail(r, "not an HTTP/1.1 response");
    r->status =
        (uint16_t)((p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0'));
    if (r->status != 101)
        return resp_fail(r, "status is not 101");
    pos = 0;
    while (p[pos] != '\n')
        pos++;
    pos++;
    for (; pos + 2 <= end && !(p[pos] == '\r' && p[pos + 1] == '\n');
         pos = line_end + 1) {
        const char *name = p + pos, *val;
        size_t name_len = 0, val_len;

        line_end = pos;
        while (p[line_end] != '\n')
            line_end++;
        if (line_end == pos || p[line_end - 1] != '\r')
            return resp_fail(r, "malformed header line");
        while (pos + name_len < line_end && p[pos + name_len] != ':')
            name_len++;
        if (pos + name_len >= line_end || name_len == 0)
            return resp_fail(r, "malformed header line");
        val = name + name_len + 1;
        val_len = (size_t)(p + line_end - 1 - val);
        while (val_len && ascii_is_ows(*val)) {
            val++;
            val_len--;
        }
        while (val_len && ascii_is_ows(val[val_len - 1]))
            val_len--;
        if (ascii_ci_equal(name, name_len, "upgrade", 7)) {
            upgrade = upgrade || list_has(val, val_len, "websocket", 9, true);
        } else if (ascii_ci_equal(name, name_len, "connection", 10)) {
            connection =
                connection || list_has(val, val_len, "upgrade", 7, true);
        } else if (ascii_ci_equal(name, name_len, "sec-websocket-accept", 20)) {
            if (accept_ok || val_len != WS_ACCEPT_LEN ||
                memcmp(val, accept, WS_ACCEPT_LEN) != 0)
                return resp_fail(r, "wrong Sec-WebSocket-Accept");
            accept_ok = true;
        } else if (ascii_ci_equal(name, name_len, "sec-websocket-extensions",
                                  24)) {
            /* We offer none, so the server may accept none (4.1). */
            if (val_len)
                return resp_fail(r, "extension not offered");
        } else if (ascii_ci_equal(name, name_len, "sec-websocket-protocol",
                                  22)) {
            if (r->protocol.len || !protocols ||
                !list_has(protocols, strlen(protocols), val, val_len, false))
                return resp_fail(r, "subprotocol not offered");
            r->protocol.p = val;
            r->protocol.len = val_len;
        }
    }
    if (!upgrade)
        return resp_fail(r, "no Upgrade: websocket");
    if (!connection)
        return resp_fail(r, "no Connection: upgrade");
    if (!accept_ok)
        return resp_fail(r, "no Sec-WebSocket-Accept");
    return (ssize_t)end;
}

/* ---- URLs --------------------------------------------------------------- */

const char *ws_url_parse(const char *url, struct ws_url *u)
{
    struct url x; /* url.c splits it; here: the scheme, and no lookups */
    const char *why = url_parse(url, &x);
    const char *ip;
    struct sockaddr_in *in = (struct sockaddr_in *)&u->addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&u->addr;

    memset(u, 0, sizeof(*u));
    if (why)
        return why;
    if (strcmp(x.scheme, "ws") && strcmp(x.scheme, "wss"))
        return "URL must start with ws:// or wss://";
    u->tls = x.tls;
    if (strlen(x.host) >= sizeof(u->name) ||
        strlen(x.authority) >= sizeof(u->host))
        return "URL host is too long";
    if (strlen(x.target) >= sizeof(u->path))
        return "URL path is too long";
    memcpy(u->name, x.host, strlen(x.host) + 1);
    memcpy(u->host, x.authority, strlen(x.authority) + 1);
    memcpy(u->path, x.target, strlen(x.target) + 1);
    ip = strcmp(x.host, "localhost") ? x.host : "127.0.0.1";
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(x.port);
        u->addrlen = sizeof(*in);
    } else if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(x.port);
        u->addrlen = sizeof(*in6);
    } else {
        return "URL host must be an IP address or localhost (no DNS "
               "lookups)";
    }
    return NULL;
}

/* ---- frames ------------------------------------------------------------ */

bool ws_close_code_valid(uint16_t code)
{
    /* 1004 is reserved, 1005, 1006 and 1015 are never sent, 1016-2999 are
     * unassigned; 1012-1014 are registered with IANA. */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

void ws_pstate_init(struct ws_pstate *s)
{
    memset(s, 0, sizeof(*s));
    s->utf8 = WS_UTF8_ACCEPT;
}

void ws_parser_init(struct ws_parser *p, bool server, uint64_t max_message)
{
    memset(p, 0, sizeof(*p));
    ws_pstate_init(&p->s);
    p->server = server;
    p->max_message = max_message < WS_MAX_MESSAGE_LIMIT ? (uint32_t)max_message
                                                        : WS_MAX_MESSAGE_LIMIT;
}

static bool is_control(uint8_t op)
{
    return (op & 0x8) != 0;
}

static bool op_known(uint8_t op)
{
    return op <= WS_OP_BINARY || (op >= WS_OP_CLOSE && op <= WS_OP_PONG);
}

struct frame_head {
    uint64_t len; /* payload length */
    size_t size;  /* header bytes, mask key included */
    uint8_t op;
    bool fin;
    bool masked;
    uint8_t mask[4];
};

static uint64_t get_be(const uint8_t *p, int n)
{
    uint64_t v = 0;

    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* True if a data frame of len bytes would take the message past the limit.
 * msg_len never exceeds max_message, so the subtraction cannot wrap. */
static bool too_big(const struct ws_parser *p, uint64_t len)
{
    uint32_t max = p->max_message ? p->max_message : WS_MAX_MESSAGE_LIMIT;

    return len > max - p->s.msg_len;
}

/*
 * Parses and checks the frame header at in[0..n).
 * Return value: the header length once it is complete and valid; 0 if
 * more bytes are needed; or minus the close code. Each rule is applied as
 * soon as the bytes it needs are present.
 */
static int head_parse(const struct ws_parser *p, const uint8_t *in, size_t n,
                      struct frame_head *h)
{
    uint8_t len7;

    memset(h->mask, 0, sizeof(h->mask));
    if (n < 2)
        return 0;
    h->fin = (in[0] & 0x80) != 0;
    h->op = in[0] & 0x0F;
    h->masked = (in[1] & 0x80) != 0;
    len7 = in[1] & 0x7F;
    if ((in[0] & 0x70) != 0 || !op_known(h->op) || h->masked != p->server)
        return -WS_CLOSE_PROTOCOL;
    if (is_control(h->op)) {
        if (!h->fin || len7 > WS_MAX_CONTROL)
            return -WS_CLOSE_PROTOCOL;
    } else if ((h->op == WS_OP_CONT) != (p->s.msg_op != 0)) {
        /* A continuation needs a message in progress; a new message may
         * not start inside one. */
        return -WS_CLOSE_PROTOCOL;
    }
    h->size = 2;
    h->len = len7;
    if (len7 == 126) {
        if (n < 4)
            return 0;
        h->len = get_be(in + 2, 2);
        h->size = 4;
        if (h->len < 126)
            return -WS_CLOSE_PROTOCOL;
    } else if (len7 == 127) {
        if (n < 10)
            return 0;
        h->len = get_be(in + 2, 8);
        h->size = 10;
        if ((h->len >> 63) != 0 || h->len <= 0xFFFF)
            return -WS_CLOSE_PROTOCOL;
    }
    if (!is_control(h->op) && too_big(p, h->len))
        return -WS_CLOSE_TOO_BIG;
    if (h->masked) {
        if (n < h->size + 4)
            return 0;
        memcpy(h->mask, in + h->size, 4);
        h->size += 4;
    }
    return (int)h->size;
}

/* Records the protocol error: the parser is closed from now on. */
static ssize_t fail(struct ws_parser *p, uint16_t *code, uint16_t c)
{
    p->s.closed = true;
    *code = c;
    return -1;
}

/* Reports the control frame whose payload, already unmasked, is
 * pl[0..len). Returns 0 or the close code. */
static uint16_t control_event(struct ws_parser *p, uint8_t op, uint8_t *pl,
                              size_t len, struct ws_event *ev)
{
    uint32_t st = WS_UTF8_ACCEPT;

    ev->data = pl;
    ev->len = len;
    if (op == WS_OP_PING) {
        ev->type = WS_EV_PING;
        return 0;
    }
    if (op == WS_OP_PONG) {
        ev->type = WS_EV_PONG;
        return 0;
    }
    /* Close (RFC 6455 5.5.1): empty, or a 2-byte code and a UTF-8
     * reason. */
    if (len == 1)
        return WS_CLOSE_PROTOCOL;
    ev->close_code = WS_CLOSE_NO_STATUS;
    ev->reason = pl + (len ? 2 : 0);
    ev->reason_len = len ? len - 2 : 0;
    if (len >= 2) {
        ev->close_code = (uint16_t)get_be(pl, 2);
        if (!ws_close_code_valid(ev->close_code))
            return WS_CLOSE_PROTOCOL;
        if (!ws_utf8_feed(&st, ev->reason, ev->reason_len) ||
            st != WS_UTF8_ACCEPT)
            return WS_CLOSE_INVALID_DATA;
    }
    ev->type = WS_EV_CLOSE;
    p->s.closed = true;
    return 0;
}

/*
 * Delivers the next piece of the current data frame from in[0..avail).
 * Return value: bytes consumed (0 only when avail is 0 and payload is
 * still due: nothing to report), or -1 with *code set.
 */
static ssize_t deliver(struct ws_parser *p, uint8_t *in, size_t avail,
                       struct ws_event *ev, uint16_t *code)
{
    size_t n = p->s.remaining < avail ? (size_t)p->s.remaining : avail;
    bool fin;

    if (n == 0 && p->s.remaining != 0)
        return 0;
    if (p->server)
        p->s.mask_pos = ws_mask(in, n, p->s.mask, p->s.mask_pos) & 3;
    p->s.remaining -= n;
    fin = p->s.frame_fin && p->s.remaining == 0;
    if (p->s.msg_op == WS_OP_TEXT) {
        uint32_t st = p->s.utf8;
        bool ok = ws_utf8_feed(&st, in, n);
        p->s.utf8 = st & 0xF;
        if (!ok || (fin && st != WS_UTF8_ACCEPT))
            return fail(p, code, WS_CLOSE_INVALID_DATA);
    }
    ev->type = WS_EV_DATA;
    ev->opcode = p->s.msg_op;
    ev->first = p->s.msg_first;
    ev->fin = fin;
    ev->data = in;
    ev->len = n;
    p->s.msg_first = false;
    p->s.msg_len += n;
    if (p->s.remaining == 0) {
        p->s.in_frame = false;
        if (p->s.frame_fin) {
            p->s.msg_op = 0;
            p->s.msg_len = 0;
            p->s.utf8 = WS_UTF8_ACCEPT;
        }
    }
    return (ssize_t)n;
}

ssize_t ws_parse(struct ws_parser *p, uint8_t *in, size_t len,
                 struct ws_event *ev, uint16_t *code)
{
    struct frame_head h;
    ssize_t n;
    int r;

    memset(ev, 0, sizeof(*ev));
    if (p->s.closed || len == 0)
        return 0;
    if (p->s.in_frame)
        return deliver(p, in, len, ev, code);

    r = head_parse(p, in, len, &h);
    if (r < 0)
        return fail(p, code, (uint16_t)-r);
    if (r == 0)
        return 0;

    if (is_control(h.op)) {
        uint16_t c;
        /* Control frames are small: wait until the whole frame is here,
         * then report it in one event. */
        if (len - h.size < h.len)
            return 0;
        if (h.masked)
            ws_mask(in + h.size, (size_t)h.len, h.mask, 0);
        c = control_event(p, h.op, in + h.size, (size_t)h.len, ev);
        if (c != 0) {
            memset(ev, 0, sizeof(*ev));
            return fail(p, code, c);
        }
        return (ssize_t)(h.size + h.len);
    }

    if (h.op != WS_OP_CONT) {
        p->s.msg_op = h.op;
        p->s.msg_len = 0;
        p->s.utf8 = WS_UTF8_ACCEPT;
        p->s.msg_first = true;
    }
    p->s.remaining = (uint32_t)h.len; /* too_big() held it under 4 GiB */
    p->s.frame_fin = h.fin;
    memcpy(p->s.mask, h.mask, sizeof(p->s.mask));
    p->s.mask_pos = 0;
    p->s.in_frame = true;
    n = deliver(p, in + h.size, len - h.size, ev, code);
    return n < 0 ? n : (ssize_t)h.size + n;
}

size_t ws_encode_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t len,
                        const uint8_t *mask)
{
    uint8_t mbit = mask ? 0x80 : 0;
    size_t n = 2;

    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (len < 126) {
        out[1] = (uint8_t)(mbit | len);
    } else if (len <= 0xFFFF) {
        out[1] = mbit | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = mbit | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

size_t ws_encode_close_payload(uint8_t *out, uint16_t code, const char *reason)
{
    size_t n = reason ? strnlen(reason, WS_MAX_CONTROL - 1) : 0;

    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (n > WS_MAX_CONTROL - 2) {
        /* Cut before the character that would not fit whole: back up
         * while the first byte left out is a continuation byte. A UTF-8
         * character has at most 3 of them; more means the reason is not
         * UTF-8 at all, and backing up further would not mend it. */
        n = WS_MAX_CONTROL - 2;
        for (int back = 0; back < 3 && ((uint8_t)reason[n] & 0xC0) == 0x80;
             back++)
            n--;
    }
    if (n > 0)
        memcpy(out + 2, reason, n);
    return 2 + n;
}

uint8_t ws_mask(uint8_t *p, size_t n, const uint8_t key[4], uint8_t pos)
{
    size_t i = 0;

    pos &= 3;
    if (n >= 8) {
        uint8_t rot[8];
        uint64_t k, a, b;

        /* The key rotated to pos and repeated: byte j of the word masks
         * payload byte i + j for every i that is a multiple of 8. */
        for (int j = 0; j < 8; j++)
            rot[j] = key[(pos + j) & 3];
        memcpy(&k, rot, sizeof(k));
        for (; n - i >= 16; i += 16) {
            memcpy(&a, p + i, 8);
            memcpy(&b, p + i + 8, 8);
            a ^= k;
            b ^= k;
            memcpy(p + i, &a, 8);
            memcpy(p + i + 8, &b, 8);
        }
        for (; n - i >= 8; i += 8) {
            memcpy(&a, p + i, 8);
            a ^= k;
            memcpy(p + i, &a, 8);
        }
    }
    for (; i < n; i++)
        p[i] ^= key[(pos + i) & 3];
    return (uint8_t)((pos + n) & 3);
}
