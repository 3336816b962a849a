/*
 * fuzz_ws_handshake.c - libFuzzer target for the WebSocket opening
 * handshake helpers (src/ws.c) on top of the HTTP/1.1 parser (src/http1.c).
 *
 * What it does: parses the input as a request header block; when it is a
 * request, runs ws_handshake_check and, on success, computes the accept
 * key, formats the 101 answer, picks a subprotocol from a fixed server
 * list and checks the origin against a few lists. Independently of HTTP,
 * the input is also split at its first two newlines into an offered list,
 * a supported list and an origin, so the list parsing of
 * ws_pick_protocol and ws_origin_allowed is exercised on any bytes.
 *
 * Invariants checked: a rejection is 400, 405 or 426; an accepted request
 * is a GET over HTTP/1.1 with a 24-character key; handshake fields point
 * into the input; the accept key is 28 base64 characters; the 101 answer
 * fits or -ENOBUFS is returned; a picked protocol is a non-empty trimmed
 * element of both lists that fits in the buffer; an origin is allowed by a
 * list only through "*" or an element equal to it ignoring case.
 *
 * Must not: allocate through mem.c or keep state between inputs beyond
 * scratch buffers that each run overwrites.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -Isrc
 *        fuzz/fuzz_ws_handshake.c src/ws.c src/http1.c -lcrypto
 *        (or scripts/fuzz.sh 60 ws_handshake)
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http1.h"
#include "ws.h"
#include "check.h"

#define MAX_IN 8192

static const struct http_limits lim = {
    .max_header_bytes = 4096,
    .max_headers = 32,
    .max_body = 1024,
};

static const char *const supported_lists[] = {
    "chat, superchat",
    "v1.moor,v2.moor , mqtt",
    "",
};

static const char *const origin_lists[] = {
    "https://a.example, http://b.example:8080",
    "*",
    "null",
};

/* Large (256 headers): static rather than on the stack. */
static struct http_request req;

static void check_in(struct http_str s, const uint8_t *d, size_t n)
{
    const char *lo = (const char *)d;

    if (s.len == 0)
        return; /* absent fields may point at a static "" */
    CHECK(s.p >= lo && s.p + s.len <= lo + n);
}

static bool is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* True if list[0..n) holds el[0..el_len) as a whole element: bounded by
 * the list's ends or by commas, with only spaces and tabs between. */
static bool has_element(const char *list, size_t n, const char *el,
                        size_t el_len, bool ci)
{
    for (size_t i = 0; i + el_len <= n; i++) {
        size_t a = i, b = i + el_len;
        bool same = ci ? strncasecmp(list + i, el, el_len) == 0
                       : memcmp(list + i, el, el_len) == 0;
        if (!same)
            continue;
        while (a > 0 && is_ows(list[a - 1]))
            a--;
        while (b < n && is_ows(list[b]))
            b++;
        if ((a == 0 || list[a - 1] == ',') && (b == n || list[b] == ','))
            return true;
    }
    return false;
}

static void check_pick(struct http_str offered, const char *supported,
                       size_t cap)
{
    char out[64];
    size_t len;

    if (!ws_pick_protocol(offered, supported, out, cap))
        return;
    len = strlen(out);
    CHECK(len > 0 && len < cap);
    CHECK(memchr(out, ',', len) == NULL);
    CHECK(!is_ows(out[0]) && !is_ows(out[len - 1]));
    CHECK(has_element(offered.p, offered.len, out, len, false));
    CHECK(has_element(supported, strlen(supported), out, len, false));
}

static void check_origin(struct http_str origin, const char *allowed,
                         bool require)
{
    bool ok = ws_origin_allowed(origin, allowed, require);
    size_t n = allowed ? strlen(allowed) : 0;

    if (n == 0) {
        CHECK(ok);
        return;
    }
    if (origin.len == 0) {
        CHECK(ok == !require);
        return;
    }
    if (ok)
        CHECK(has_element(allowed, n, "*", 1, false) ||
              has_element(allowed, n, origin.p, origin.len, true));
}

static void fuzz_request(const uint8_t *d, size_t n)
{
    uint32_t scan = 0;
    int status = 0;
    struct ws_handshake hs;
    char accept[WS_ACCEPT_LEN + 1];
    char proto[32];
    char head[512];
    ssize_t k = http_parse_request(d, n, &lim, &scan, &req, &status);
    int st;

    if (k <= 0)
        return;
    st = ws_handshake_check(&req, &hs);
    CHECK(st == 0 || st == 400 || st == 405 || st == 426);
    if (st != 0)
        return;
    CHECK(req.method == HTTP_GET && req.version_minor == 1);
    CHECK(hs.key.len == 24);
    check_in(hs.key, d, (size_t)k);
    check_in(hs.protocols, d, (size_t)k);
    check_in(hs.origin, d, (size_t)k);
    check_in(hs.extensions, d, (size_t)k);

    CHECK(ws_accept_key(hs.key.p, hs.key.len, accept));
    CHECK(strlen(accept) == WS_ACCEPT_LEN && accept[27] == '=');
    for (int i = 0; i < 27; i++)
        CHECK(is_b64(accept[i]));

    for (size_t i = 0; i < sizeof(supported_lists) / sizeof(char *); i++) {
        check_pick(hs.protocols, supported_lists[i], sizeof(proto));
        check_pick(hs.protocols, supported_lists[i], 4);
    }
    for (size_t i = 0; i < sizeof(origin_lists) / sizeof(char *); i++) {
        check_origin(hs.origin, origin_lists[i], false);
        check_origin(hs.origin, origin_lists[i], true);
    }

    for (size_t cap = 0; cap <= sizeof(head); cap += 37) {
        bool with = ws_pick_protocol(hs.protocols, "chat, superchat", proto,
                                     sizeof(proto));
        ssize_t h = ws_format_upgrade(head, cap, accept, with ? proto : NULL);
        if (h >= 0)
            CHECK((size_t)h < cap && strlen(head) == (size_t)h);
        else
            CHECK(h == -ENOBUFS);
    }
}

/* Input split at its first two newlines: offered, supported, origin. */
static void fuzz_lists(const uint8_t *d, size_t n)
{
    static char buf[MAX_IN + 1];
    const char *a = buf, *b, *c;
    char *nl;
    struct http_str offered, origin;

    memcpy(buf, d, n);
    buf[n] = '\0';
    nl = memchr(buf, '\n', n);
    if (!nl)
        return;
    *nl = '\0';
    b = nl + 1;
    nl = strchr(b, '\n');
    if (!nl)
        return;
    *nl = '\0';
    c = nl + 1;
    offered.p = a;
    offered.len = (uint32_t)strlen(a);
    origin.p = c;
    origin.len = (uint32_t)strlen(c);
    check_pick(offered, b, 64);
    check_pick(offered, b, 1 + (n % 8));
    check_origin(origin, b, false);
    check_origin(origin, b, true);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n > MAX_IN)
        return 0;
    fuzz_request(d, n);
    fuzz_lists(d, n);
    return 0;
}
