/*
 * fuzz_jwt.c - libFuzzer target for the token checker (src/jwt.c) and
 * the JSON reader under it (src/json.c).
 *
 * What it does: the first input byte picks a mode, the rest is data.
 *   0  the data is a token, as a peer would send it;
 *   1  the data is a payload: the target wraps it in {"alg":"HS256"},
 *      base64url-encodes both and signs them with the fixed secret, so
 *      every claim check is reached;
 *   2  the same, ES256-signed with the fixed P-256 key (r||s from DER);
 *   3  the data is "HEADER\nPAYLOAD", HMAC-signed as in 1: the header
 *      checks (alg, kid, typ, crit) with a valid signature in reach;
 *   4  the data is a JSON document for json_parse() alone.
 * The keys (the secret, and the EC key's public half as "ec") are made
 * in LLVMFuzzerInitialize() and loaded with jwt_keys_load() from a
 * temporary directory. Options (leeway, audience, issuer, claim names,
 * max size) come from the second input byte; "now" is fixed.
 *
 * Invariants checked: a reason is in range; every input leaves the auth
 * tag's live bytes where they were (the keys'); a refused token leaves
 * its grant empty; an accepted grant holds at most 64 + 64 entries, each
 * a valid channel or prefix that allows itself; in modes 1 and 2 (signed
 * with a key loaded, under the alg it takes) the answer is never
 * bad_alg, unknown_key or bad_signature. For the JSON reader: node ends
 * nest, counts match the children walked, and strings lie inside the
 * decoded block.
 *
 * Build: scripts/fuzz.sh 60 jwt
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "check.h"
#include "frame.h"
#include "json.h"
#include "jwt.h"
#include "mem.h"

#define NOW 1700000000LL
#define MAX_DATA 12000

static const char secret[] = "fuzz-secret-0123456789abcdef-0123456789";
static struct jwt_keys *keys;
static EVP_PKEY *ec_priv;
static int64_t base_auth;
static char tok[4 * MAX_DATA];

/* ---- set-up ------------------------------------------------------------- */

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");

    CHECK(f);
    CHECK(fwrite(p, 1, n, f) == n);
    fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char dir[] = "/tmp/fuzz-jwt.XXXXXX", sp[64], kp[64], list[80], err[256];
    FILE *f;

    (void)argc;
    (void)argv;
    CHECK(mkdtemp(dir));
    snprintf(sp, sizeof(sp), "%s/secret", dir);
    snprintf(kp, sizeof(kp), "%s/ec.pem", dir);
    write_file(sp, secret, strlen(secret));
    ec_priv = EVP_EC_gen("P-256");
    CHECK(ec_priv);
    f = fopen(kp, "w");
    CHECK(f);
    CHECK(PEM_write_PUBKEY(f, ec_priv));
    fclose(f);
    snprintf(list, sizeof(list), "%s", kp);
    keys = jwt_keys_load(sp, list, err, sizeof(err));
    if (!keys)
        fprintf(stderr, "fuzz_jwt: %s\n", err);
    CHECK(keys);
    CHECK(jwt_keys_count(keys) == 2);
    unlink(sp);
    unlink(kp);
    rmdir(dir);
    base_auth = mem_live_bytes(MEM_AUTH);
    return 0;
}

/* ---- building tokens ---------------------------------------------------- */

static size_t b64url(const uint8_t *p, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
                            "wxyz0123456789-_";
    size_t i, w = 0;

    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

        out[w++] = a[v >> 18];
        out[w++] = a[v >> 12 & 63];
        out[w++] = a[v >> 6 & 63];
        out[w++] = a[v & 63];
    }
    if (n - i == 1) {
        out[w++] = a[p[i] >> 2];
        out[w++] = a[(p[i] & 3) << 4];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 8 | p[i + 1];

        out[w++] = a[v >> 10];
        out[w++] = a[v >> 4 & 63];
        out[w++] = a[(v & 15) << 2];
    }
    return w;
}

/* ECDSA's DER signature as JWS's r || s, 32 bytes each. */
static bool es256_sign(const char *msg, size_t n, uint8_t out[64])
{
    uint8_t der[80];
    size_t dlen = sizeof(der);
    const unsigned char *p = der;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    ECDSA_SIG *s = NULL;
    bool ok;

    ok = m && EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, ec_priv) == 1 &&
         EVP_DigestSign(m, der, &dlen, (const uint8_t *)msg, n) == 1 &&
         (s = d2i_ECDSA_SIG(NULL, &p, (long)dlen)) != NULL &&
         BN_bn2binpad(ECDSA_SIG_get0_r(s), out, 32) == 32 &&
         BN_bn2binpad(ECDSA_SIG_get0_s(s), out + 32, 32) == 32;
    ECDSA_SIG_free(s);
    EVP_MD_CTX_free(m);
    return ok;
}

/* header "." payload "." signature into tok; its length. */
static size_t sign(const uint8_t *h, size_t hn, const uint8_t *p, size_t pn,
                   bool ec)
{
    uint8_t sig[EVP_MAX_MD_SIZE + 64];
    unsigned int slen = 0;
    size_t w;

    w = b64url(h, hn, tok);
    tok[w++] = '.';
    w += b64url(p, pn, tok + w);
    if (ec) {
        CHECK(es256_sign(tok, w, sig));
        slen = 64;
    } else {
        CHECK(HMAC(EVP_sha256(), secret, (int)strlen(secret),
                   (const uint8_t *)tok, w, sig, &slen));
    }
    tok[w++] = '.';
    return w + b64url(sig, slen, tok + w);
}

/* ---- checks ------------------------------------------------------------- */

static void check_grant(const struct jwt_grant *g)
{
    const char *e = g->patterns;
    size_t i, n;

    CHECK(g->n_sub <= 64 && g->n_pub <= 64);
    CHECK(strnlen(g->sub, sizeof(g->sub)) < sizeof(g->sub));
    CHECK((e != NULL) == (g->n_sub + g->n_pub > 0));
    for (i = 0; i < (size_t)g->n_sub + g->n_pub; i++) {
        n = strlen(e);
        CHECK(n >= 1 && n <= 128);
        if (e[n - 1] == '*')
            CHECK(n == 1 || channel_name_valid((const uint8_t *)e, n - 1));
        else
            CHECK(channel_name_valid((const uint8_t *)e, n));
        CHECK(jwt_grant_allows(g, i >= g->n_sub, e, n));
        e += n + 1;
    }
}

static enum jwt_reason verify(const struct jwt_opts *o, const char *t, size_t n)
{
    struct jwt_grant g;
    enum jwt_reason r = jwt_verify(keys, o, t, n, NOW, &g);

    CHECK((unsigned)r < JWT_REASON_COUNT);
    CHECK(strcmp(jwt_reason_name(r), "unknown"));
    if (r == JWT_OK) {
        check_grant(&g);
    } else {
        CHECK(!g.patterns && !g.n_sub && !g.n_pub);
    }
    jwt_grant_free(&g);
    CHECK(mem_live_bytes(MEM_AUTH) == base_auth);
    return r;
}

static void check_json(const uint8_t *p, size_t n)
{
    struct json_doc d;
    size_t i, c, k;

    if (json_parse(&d, (const char *)p, n, 16, MEM_AUTH) != JSON_OK) {
        CHECK(d.why && d.err_at <= n && !d.nodes);
        CHECK(mem_live_bytes(MEM_AUTH) == base_auth);
        return;
    }
    CHECK(d.n_nodes >= 1 && d.n_nodes <= n);
    CHECK(json_at(&d, 0)->end == d.n_nodes);
    for (i = 0; i < d.n_nodes; i++) {
        const struct json_node *x = json_at(&d, i);

        CHECK(x->end > i && x->end <= d.n_nodes);
        if (x->type == JSON_STRING) {
            CHECK((size_t)x->v.off + x->len < n + 1);
            CHECK(json_str(&d, i)[x->len] == 0);
        }
        if (x->type != JSON_ARRAY && x->type != JSON_OBJECT) {
            CHECK(x->end == i + 1);
            continue;
        }
        k = 0;
        for (c = json_first(&d, i); c != JSON_NONE;
             c = json_next(&d, i, x->type == JSON_OBJECT ? c + 1 : c)) {
            if (x->type == JSON_OBJECT) {
                CHECK(json_at(&d, c)->type == JSON_STRING);
                CHECK(json_get(&d, i, json_str(&d, c), json_at(&d, c)->len) ==
                      c + 1);
            }
            k++;
        }
        CHECK(k == x->count);
    }
    json_free(&d);
    CHECK(mem_live_bytes(MEM_AUTH) == base_auth);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char hs[] = "{\"alg\":\"HS256\"}";
    static const char es[] = "{\"alg\":\"ES256\",\"kid\":\"ec\"}";
    struct jwt_opts o = {0};
    const uint8_t *p, *nl;
    enum jwt_reason r;
    size_t n;

    if (size < 2 || size - 2 > MAX_DATA)
        return 0;
    p = data + 2;
    n = size - 2;
    o.leeway_s = data[1] & 1 ? 60 : 0;
    o.audience = data[1] & 2 ? "moor" : NULL;
    o.issuer = data[1] & 4 ? "iss" : NULL;
    o.channels_claim = data[1] & 8 ? "c" : NULL;
    o.publish_claim = data[1] & 16 ? "c" : NULL;
    o.max_token_bytes = data[1] & 32 ? 512 : 4 * MAX_DATA;
    switch (data[0] % 5) {
    case 0:
        verify(&o, (const char *)p, n);
        break;
    case 1:
    case 2:
        r = verify(&o, tok,
                   data[0] % 5 == 1
                       ? sign((const uint8_t *)hs, strlen(hs), p, n, false)
                       : sign((const uint8_t *)es, strlen(es), p, n, true));
        CHECK(r != JWT_BAD_ALG && r != JWT_UNKNOWN_KEY &&
              r != JWT_BAD_SIGNATURE);
        break;
    case 3:
        nl = memchr(p, '\n', n);
        if (!nl)
            return 0;
        verify(
            &o, tok,
            sign(p, (size_t)(nl - p), nl + 1, n - (size_t)(nl + 1 - p), false));
        break;
    default:
        check_json(p, n);
        break;
    }
    return 0;
}
