/*
 * jwt.c - the token checker of jwt.h: keys loaded once, then tokens
 * checked in a fixed order, each step on bytes the previous one vouched
 * for: size, then the three base64url parts, then the header, then the
 * algorithm and the keys it allows, then the signature, and only a
 * signed payload is read for its claims.
 *
 * The algorithm table below is the whole policy: a header's "alg" is
 * looked up in it, and a key is tried only if its kind is the one the
 * entry names. Nothing in a token can make an RSA public key an HMAC
 * secret, or choose "none".
 *
 * Must not: keep mutable global state (the keys are read-only once
 * loaded, so loops may share them), or allocate but under the auth tag.
 */
#include "jwt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "frame.h"
#include "json.h"
#include "mem.h"

#define JWT_MAX_KEYS 16
#define JWT_MAX_DEPTH 16     /* JSON nesting in a header or payload */
#define JWT_MAX_ENTRIES 64   /* per channels / publish claim */
#define JWT_MAX_ENTRY 128    /* bytes of one entry, its '*' included */
#define JWT_DEFAULT_MAX 8192 /* max_token_bytes 0 */
#define JWT_MIN_SECRET 32    /* bytes: 256 bits, HS256's output */
#define JWT_MAX_SECRET 4096  /* a larger secret file is a mistake */
#define JWT_MIN_RSA_BITS 2048
/* Times are clamped to +-2^62 s, so adding a 32-bit leeway cannot
 * overflow (and nothing real lies beyond). */
#define JWT_TIME_LIMIT ((int64_t)1 << 62)

enum key_kind { KEY_HMAC, KEY_RSA, KEY_P256, KEY_P384, KEY_ED25519 };

enum alg_how { HOW_HMAC, HOW_PKCS1, HOW_PSS, HOW_ECDSA, HOW_EDDSA };

struct alg {
    const char *name;
    enum key_kind kind;
    enum alg_how how;
    const EVP_MD *(*md)(void); /* NULL for EdDSA (the key fixes it) */
    size_t coord;              /* ECDSA: bytes of r and of s */
};

static const struct alg algs[] = {
    {"HS256", KEY_HMAC, HOW_HMAC, EVP_sha256, 0},
    {"HS384", KEY_HMAC, HOW_HMAC, EVP_sha384, 0},
    {"HS512", KEY_HMAC, HOW_HMAC, EVP_sha512, 0},
    {"RS256", KEY_RSA, HOW_PKCS1, EVP_sha256, 0},
    {"RS384", KEY_RSA, HOW_PKCS1, EVP_sha384, 0},
    {"RS512", KEY_RSA, HOW_PKCS1, EVP_sha512, 0},
    {"PS256", KEY_RSA, HOW_PSS, EVP_sha256, 0},
    {"PS384", KEY_RSA, HOW_PSS, EVP_sha384, 0},
    {"PS512", KEY_RSA, HOW_PSS, EVP_sha512, 0},
    {"ES256", KEY_P256, HOW_ECDSA, EVP_sha256, 32},
    {"ES384", KEY_P384, HOW_ECDSA, EVP_sha384, 48},
    {"EdDSA", KEY_ED25519, HOW_EDDSA, NULL, 0},
};

struct jwt_key {
    enum key_kind kind;
    char *kid;      /* NUL-terminated, auth tag */
    EVP_PKEY *pkey; /* public keys */
    uint8_t *secret;
    size_t secret_len;
};

struct jwt_keys {
    size_t n;
    struct jwt_key key[JWT_MAX_KEYS];
};

static const char *const reason_names[JWT_REASON_COUNT] = {
    [JWT_OK] = "ok",
    [JWT_MALFORMED] = "malformed",
    [JWT_BAD_ALG] = "bad_alg",
    [JWT_UNKNOWN_KEY] = "unknown_key",
    [JWT_BAD_SIGNATURE] = "bad_signature",
    [JWT_EXPIRED] = "expired",
    [JWT_NOT_YET_VALID] = "not_yet_valid",
    [JWT_WRONG_AUDIENCE] = "wrong_audience",
    [JWT_WRONG_ISSUER] = "wrong_issuer",
    [JWT_NO_MEMORY] = "no_memory",
};

const char *jwt_reason_name(enum jwt_reason r)
{
    return (unsigned)r < JWT_REASON_COUNT ? reason_names[r] : "unknown";
}

/* Why OpenSSL said no: out of memory if an allocation failed on the way
 * (its error queue says so), else a bad signature. Empties the queue, where
 * TLS code would find the errors. */
static enum jwt_reason refused(void)
{
    enum jwt_reason r = JWT_BAD_SIGNATURE;
    unsigned long e;

    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE)
            r = JWT_NO_MEMORY;
    return r;
}

/* ---- keys --------------------------------------------------------------- */

static void key_clear(struct jwt_key *k)
{
    if (k->secret) {
        OPENSSL_cleanse(k->secret, k->secret_len);
        mem_free(MEM_AUTH, k->secret);
    }
    EVP_PKEY_free(k->pkey);
    mem_free(MEM_AUTH, k->kid);
    memset(k, 0, sizeof(*k));
}

void jwt_keys_free(struct jwt_keys *k)
{
    size_t i;

    if (!k)
        return;
    for (i = 0; i < k->n; i++)
        key_clear(&k->key[i]);
    mem_free(MEM_AUTH, k);
}

size_t jwt_keys_count(const struct jwt_keys *k)
{
    return k ? k->n : 0;
}

/* The kid a file gets by default: its base name without ".pem". */
static char *default_kid(const char *path)
{
    const char *b = strrchr(path, '/');
    size_t n;

    b = b ? b + 1 : path;
    n = strlen(b);
    if (n > 4 && !strcmp(b + n - 4, ".pem"))
        n -= 4;
    return mem_strndup(MEM_AUTH, b, n);
}

/* The secret's checks, on the n bytes read (one more than allowed means
 * too long), less one trailing "\n" or "\r\n". */
static int take_secret(struct jwt_key *k, const char *path, const uint8_t *buf,
                       size_t n, char *err, size_t errlen)
{
    if (n > JWT_MAX_SECRET) {
        snprintf(err, errlen, "%s: secret over %d bytes", path, JWT_MAX_SECRET);
        return -1;
    }
    if (n && buf[n - 1] == '\n')
        n -= 1 + (n > 1 && buf[n - 2] == '\r');
    if (n < JWT_MIN_SECRET) {
        snprintf(err, errlen, "%s: secret of %zu bytes: at least %d", path, n,
                 JWT_MIN_SECRET);
        return -1;
    }
    k->kind = KEY_HMAC;
    k->secret = mem_alloc(MEM_AUTH, n);
    if (!k->secret) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    memcpy(k->secret, buf, n);
    k->secret_len = n;
    return 0;
}

/* Reads the secret file; the stack copy is wiped whatever happens. */
static int load_secret(struct jwt_key *k, const char *path, char *err,
                       size_t errlen)
{
    uint8_t buf[JWT_MAX_SECRET + 1];
    FILE *f = fopen(path, "rb");
    size_t n;
    int rc;

    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    n = fread(buf, 1, sizeof(buf), f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        rc = -1;
    } else {
        rc = take_secret(k, path, buf, n, err, errlen);
    }
    fclose(f);
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

/* The kind of a public key, or -1 with the reason in err. */
static int pkey_kind(EVP_PKEY *pk, const char *path, char *err, size_t errlen)
{
    char group[64];
    int nid;

    switch (EVP_PKEY_get_base_id(pk)) {
    case EVP_PKEY_RSA:
        if (EVP_PKEY_get_bits(pk) <= 0) {
            snprintf(err, errlen, "%s: %s", path,
                     refused() == JWT_NO_MEMORY ? "out of memory"
                                                : "RSA key of unknown size");
            return -1;
        }
        if (EVP_PKEY_get_bits(pk) < JWT_MIN_RSA_BITS) {
            snprintf(err, errlen, "%s: RSA key of %d bits: at least %d", path,
                     EVP_PKEY_get_bits(pk), JWT_MIN_RSA_BITS);
            return -1;
        }
        return KEY_RSA;
    case EVP_PKEY_EC:
        if (!EVP_PKEY_get_group_name(pk, group, sizeof(group), NULL)) {
            if (refused() == JWT_NO_MEMORY) {
                snprintf(err, errlen, "%s: out of memory", path);
                return -1;
            }
            group[0] = 0;
        }
        nid = OBJ_sn2nid(group);
        if (nid == NID_undef)
            nid = EC_curve_nist2nid(group);
        if (nid == NID_X9_62_prime256v1)
            return KEY_P256;
        if (nid == NID_secp384r1)
            return KEY_P384;
        snprintf(err, errlen, "%s: EC key on curve \"%s\": P-256 or P-384",
                 path, group);
        return -1;
    case EVP_PKEY_ED25519:
        return KEY_ED25519;
    default:
        snprintf(err, errlen,
                 "%s: unsupported key type (RSA, EC P-256/P-384 or Ed25519)",
                 path);
        return -1;
    }
}

/* Reads the one PEM public key of path. */
static int load_pem(struct jwt_key *k, const char *path, char *err,
                    size_t errlen)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *more;
    int kind;

    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    k->pkey = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    more = k->pkey ? PEM_read_PUBKEY(f, NULL, NULL, NULL) : NULL;
    fclose(f);
    /* A failed read (the end of the file included) leaves its errors in
     * this thread's queue, where TLS code would find them: refused()
     * empties it. */
    if (refused() == JWT_NO_MEMORY) {
        EVP_PKEY_free(more);
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    if (!k->pkey) {
        snprintf(err, errlen,
                 "%s: not a PEM public key (-----BEGIN PUBLIC KEY-----)", path);
        return -1;
    }
    if (more) {
        EVP_PKEY_free(more);
        snprintf(err, errlen, "%s: more than one public key: one per file",
                 path);
        return -1;
    }
    kind = pkey_kind(k->pkey, path, err, errlen);
    if (kind < 0)
        return -1;
    k->kind = (enum key_kind)kind;
    return 0;
}

/* Adds the key of one "FILE" or "KID=FILE" (spec[0..n)), or of the
 * secret file (secret). */
static int add_key(struct jwt_keys *ks, const char *spec, size_t n, bool secret,
                   char *err, size_t errlen)
{
    char path[4096];
    const char *eq = secret ? NULL : memchr(spec, '=', n);
    const char *file = eq ? eq + 1 : spec;
    size_t flen = n - (size_t)(file - spec);
    struct jwt_key *k;
    size_t i;

    if (ks->n == JWT_MAX_KEYS) {
        snprintf(err, errlen,
                 "%.*s: one key too many: at most %d keys may be loaded",
                 (int)n, spec, JWT_MAX_KEYS);
        return -1;
    }
    if (!flen || (eq && eq == spec) || flen >= sizeof(path)) {
        snprintf(err, errlen, "\"%.*s\": not FILE or KID=FILE", (int)n, spec);
        return -1;
    }
    memcpy(path, file, flen);
    path[flen] = 0;
    k = &ks->key[ks->n++];
    k->kid = eq ? mem_strndup(MEM_AUTH, spec, (size_t)(eq - spec))
                : default_kid(path);
    if (!k->kid) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    for (i = 0; i + 1 < ks->n; i++) {
        if (!strcmp(ks->key[i].kid, k->kid)) {
            snprintf(err, errlen, "%s: kid \"%s\" given to two keys", path,
                     k->kid);
            return -1;
        }
    }
    return secret ? load_secret(k, path, err, errlen)
                  : load_pem(k, path, err, errlen);
}

struct jwt_keys *jwt_keys_load(const char *secret_file, const char *key_files,
                               char *err, size_t errlen)
{
    struct jwt_keys *ks = mem_calloc(MEM_AUTH, 1, sizeof(*ks));
    const char *p = key_files, *comma;

    if (!ks) {
        snprintf(err, errlen, "jwt keys: out of memory");
        return NULL;
    }
    if (secret_file && *secret_file &&
        add_key(ks, secret_file, strlen(secret_file), true, err, errlen) < 0)
        goto fail;
    while (p && *p) {
        comma = strchr(p, ',');
        if (!comma)
            comma = p + strlen(p);
        if (add_key(ks, p, (size_t)(comma - p), false, err, errlen) < 0)
            goto fail;
        p = *comma ? comma + 1 : comma;
        if (comma[0] == ',' && !comma[1]) {
            snprintf(err, errlen, "jwt key list \"%s\" ends with a comma",
                     key_files);
            goto fail;
        }
    }
    if (!ks->n) {
        snprintf(err, errlen, "jwt: no keys (a secret file or key files)");
        goto fail;
    }
    return ks;
fail:
    jwt_keys_free(ks);
    return NULL;
}

/* ---- base64url ---------------------------------------------------------- */

static int b64url_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Unpadded base64url, strictly (RFC 7515 section 2): nothing outside
 * the alphabet, no '=', no length of 4k+1, and the unused bits of the
 * last character zero, so every byte string has one encoding. Writes at
 * most n * 3 / 4 bytes. */
static bool b64url_decode(const char *s, size_t n, uint8_t *out, size_t *len)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t i, w = 0;

    if (n % 4 == 1)
        return false;
    for (i = 0; i < n; i++) {
        int v = b64url_value((uint8_t)s[i]);

        if (v < 0)
            return false;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[w++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc)
        return false;
    *len = w;
    return true;
}

/* ---- signatures --------------------------------------------------------- */

static enum jwt_reason verify_hmac(const struct jwt_key *k, const struct alg *a,
                                   const uint8_t *msg, size_t mlen,
                                   const uint8_t *sig, size_t slen)
{
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;

    /* HMAC() fails only for want of memory (or a broken library). */
    if (!HMAC(a->md(), k->secret, (int)k->secret_len, msg, mlen, mac,
              &maclen)) {
        ERR_clear_error();
        return JWT_NO_MEMORY;
    }
    if (slen != maclen || CRYPTO_memcmp(mac, sig, maclen))
        return JWT_BAD_SIGNATURE;
    return JWT_OK;
}

/* A JWS ECDSA signature is r || s, each fixed-width big-endian; OpenSSL
 * verifies the DER form. At most 2 * (2 + 1 + 48) + 3 bytes for P-384. */
static enum jwt_reason ecdsa_der(const struct alg *a, const uint8_t *sig,
                                 size_t slen, uint8_t *der, size_t cap,
                                 size_t *dlen)
{
    ECDSA_SIG *es;
    BIGNUM *r, *s;
    unsigned char *w = der;
    int n;

    if (slen != 2 * a->coord)
        return JWT_BAD_SIGNATURE;
    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig, (int)a->coord, NULL);
    s = BN_bin2bn(sig + a->coord, (int)a->coord, NULL);
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        ERR_clear_error();
        return JWT_NO_MEMORY;
    }
    n = i2d_ECDSA_SIG(es, NULL);
    if (n > 0 && (size_t)n <= cap)
        n = i2d_ECDSA_SIG(es, &w);
    ECDSA_SIG_free(es);
    if (n <= 0 || (size_t)n > cap)
        return refused();
    *dlen = (size_t)n;
    return JWT_OK;
}

static enum jwt_reason verify_pkey(const struct jwt_key *k, const struct alg *a,
                                   const uint8_t *msg, size_t mlen,
                                   const uint8_t *sig, size_t slen)
{
    uint8_t der[128];
    EVP_MD_CTX *mctx;
    EVP_PKEY_CTX *pctx = NULL;
    enum jwt_reason r;

    if (a->how == HOW_ECDSA) {
        r = ecdsa_der(a, sig, slen, der, sizeof(der), &slen);
        if (r)
            return r;
        sig = der;
    }
    mctx = EVP_MD_CTX_new();
    if (!mctx) {
        ERR_clear_error();
        return JWT_NO_MEMORY;
    }
    r = JWT_OK;
    if (EVP_DigestVerifyInit(mctx, &pctx, a->md ? a->md() : NULL, NULL,
                             k->pkey) != 1)
        r = refused();
    /* PSS as RFC 7518 section 3.5 has it: MGF1 with the same hash (the
     * default) and a salt as long as the hash. */
    if (!r && a->how == HOW_PSS &&
        (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1))
        r = refused();
    if (!r && EVP_DigestVerify(mctx, sig, slen, msg, mlen) != 1)
        r = refused();
    EVP_MD_CTX_free(mctx);
    return r;
}

/* JWT_OK, JWT_BAD_SIGNATURE or JWT_NO_MEMORY. */
static enum jwt_reason verify_with(const struct jwt_key *k, const struct alg *a,
                                   const uint8_t *msg, size_t mlen,
                                   const uint8_t *sig, size_t slen)
{
    if (a->how == HOW_HMAC)
        return verify_hmac(k, a, msg, mlen, sig, slen);
    return verify_pkey(k, a, msg, mlen, sig, slen);
}

/* ---- the token ---------------------------------------------------------- */

/* The three parts of a token, decoded into one block. */
struct parts {
    uint8_t *buf;
    const uint8_t *hdr, *pay, *sig;
    size_t hdr_len, pay_len, sig_len;
    size_t signed_len; /* header "." payload, as sent */
};

static enum jwt_reason split_token(const char *tok, size_t len,
                                   struct parts *pt)
{
    const char *d1 = len ? memchr(tok, '.', len) : NULL, *d2;
    size_t hl, pl, sl;
    uint8_t *w;

    if (!d1)
        return JWT_MALFORMED;
    d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok));
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
        return JWT_MALFORMED;
    hl = (size_t)(d1 - tok);
    pl = (size_t)(d2 - d1 - 1);
    sl = len - (size_t)(d2 + 1 - tok);
    if (!hl || !pl)
        return JWT_MALFORMED;
    /* Decoding shrinks by a quarter: len bytes hold all three. */
    pt->buf = mem_alloc(MEM_AUTH, len);
    if (!pt->buf)
        return JWT_NO_MEMORY;
    w = pt->buf;
    if (!b64url_decode(tok, hl, w, &pt->hdr_len))
        return JWT_MALFORMED;
    pt->hdr = w;
    w += pt->hdr_len;
    if (!b64url_decode(d1 + 1, pl, w, &pt->pay_len))
        return JWT_MALFORMED;
    pt->pay = w;
    w += pt->pay_len;
    if (!b64url_decode(d2 + 1, sl, w, &pt->sig_len))
        return JWT_MALFORMED;
    pt->sig = w;
    pt->signed_len = (size_t)(d2 - tok);
    return JWT_OK;
}

/* A header or payload: a JSON object, or nothing is kept. */
static enum jwt_reason parse_json(struct json_doc *d, const uint8_t *s,
                                  size_t n)
{
    enum json_error e =
        json_parse(d, (const char *)s, n, JWT_MAX_DEPTH, MEM_AUTH);

    if (e == JSON_ERR_NO_MEMORY)
        return JWT_NO_MEMORY;
    if (e)
        return JWT_MALFORMED;
    if (json_at(d, 0)->type != JSON_OBJECT) {
        json_free(d);
        return JWT_MALFORMED;
    }
    return JWT_OK;
}

static size_t member(const struct json_doc *d, const char *name)
{
    return json_get(d, 0, name, strlen(name));
}

static bool is_string(const struct json_doc *d, size_t i)
{
    return json_at(d, i)->type == JSON_STRING;
}

static bool str_eq(const struct json_doc *d, size_t i, const char *s)
{
    size_t n = strlen(s);

    return json_at(d, i)->len == n && !memcmp(json_str(d, i), s, n);
}

/* The header: "alg" (a string), optional "kid" and "typ" (strings), no
 * "crit" (no extension is understood, so none may be required). */
static enum jwt_reason read_header(const struct json_doc *d,
                                   const struct alg **a, size_t *kid)
{
    size_t alg = member(d, "alg"), typ = member(d, "typ"), i;

    *kid = member(d, "kid");
    if (member(d, "crit") != JSON_NONE)
        return JWT_MALFORMED;
    if ((typ != JSON_NONE && !is_string(d, typ)) ||
        (*kid != JSON_NONE && !is_string(d, *kid)))
        return JWT_MALFORMED;
    if (alg == JSON_NONE)
        return JWT_BAD_ALG;
    if (!is_string(d, alg))
        return JWT_MALFORMED;
    for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (str_eq(d, alg, algs[i].name)) {
            *a = &algs[i];
            return JWT_OK;
        }
    }
    return JWT_BAD_ALG; /* "none" among them */
}

/* With a kid, that key alone; without, every key of the alg's kind. */
static enum jwt_reason check_signature(const struct jwt_keys *ks,
                                       const struct json_doc *h, size_t kid,
                                       const struct alg *a, const char *tok,
                                       const struct parts *pt)
{
    const uint8_t *msg = (const uint8_t *)tok;
    enum jwt_reason r;
    bool tried = false;
    size_t i;

    for (i = 0; i < ks->n; i++) {
        const struct jwt_key *k = &ks->key[i];

        if (kid != JSON_NONE) {
            if (!str_eq(h, kid, k->kid))
                continue;
            if (k->kind != a->kind)
                return JWT_BAD_ALG;
            return verify_with(k, a, msg, pt->signed_len, pt->sig, pt->sig_len);
        }
        if (k->kind != a->kind)
            continue;
        tried = true;
        r = verify_with(k, a, msg, pt->signed_len, pt->sig, pt->sig_len);
        if (r != JWT_BAD_SIGNATURE)
            return r;
    }
    if (kid != JSON_NONE)
        return JWT_UNKNOWN_KEY;
    return tried ? JWT_BAD_SIGNATURE : JWT_BAD_ALG;
}

/* ---- claims ------------------------------------------------------------- */

/* A NumericDate (RFC 7519 section 2): a number of seconds, its fraction
 * dropped (floor), clamped to +-JWT_TIME_LIMIT. */
static bool read_time(const struct json_doc *d, const char *name, bool *has,
                      int64_t *t)
{
    size_t i = member(d, name);
    double v;

    *has = i != JSON_NONE;
    if (!*has)
        return true;
    if (json_at(d, i)->type != JSON_NUMBER)
        return false;
    v = floor(json_at(d, i)->v.num);
    if (v != v)
        return false;
    if (v >= (double)JWT_TIME_LIMIT)
        *t = JWT_TIME_LIMIT;
    else if (v <= -(double)JWT_TIME_LIMIT)
        *t = -JWT_TIME_LIMIT;
    else
        *t = (int64_t)v;
    return true;
}

/* One channels/publish entry: a channel name, or a prefix of one ending
 * in '*', or "*" alone. */
static bool entry_valid(const char *s, size_t n)
{
    if (n == 0 || n > JWT_MAX_ENTRY)
        return false;
    if (s[n - 1] == '*')
        return n == 1 || channel_name_valid((const uint8_t *)s, n - 1);
    return channel_name_valid((const uint8_t *)s, n);
}

/* Checks claim name: absent (0 entries) or an array of valid entries;
 * adds their bytes (with NULs) to *bytes. */
static bool check_list(const struct json_doc *d, const char *name,
                       uint16_t *count, size_t *bytes)
{
    size_t arr = member(d, name), i;

    *count = 0;
    if (arr == JSON_NONE)
        return true;
    if (json_at(d, arr)->type != JSON_ARRAY ||
        json_at(d, arr)->count > JWT_MAX_ENTRIES)
        return false;
    for (i = json_first(d, arr); i != JSON_NONE; i = json_next(d, arr, i)) {
        if (!is_string(d, i) ||
            !entry_valid(json_str(d, i), json_at(d, i)->len))
            return false;
        *bytes += json_at(d, i)->len + 1;
    }
    *count = (uint16_t)json_at(d, arr)->count;
    return true;
}

static char *copy_list(const struct json_doc *d, const char *name, char *w)
{
    size_t arr = member(d, name), i;

    if (arr == JSON_NONE)
        return w;
    for (i = json_first(d, arr); i != JSON_NONE; i = json_next(d, arr, i)) {
        memcpy(w, json_str(d, i), json_at(d, i)->len + 1);
        w += json_at(d, i)->len + 1;
    }
    return w;
}

/* "aud" absent, a string, or an array of strings. */
static bool aud_has(const struct json_doc *d, size_t aud, const char *want,
                    bool *found)
{
    size_t i;

    *found = false;
    if (aud == JSON_NONE)
        return true;
    if (is_string(d, aud)) {
        *found = str_eq(d, aud, want);
        return true;
    }
    if (json_at(d, aud)->type != JSON_ARRAY)
        return false;
    for (i = json_first(d, aud); i != JSON_NONE; i = json_next(d, aud, i)) {
        if (!is_string(d, i))
            return false;
        *found = *found || str_eq(d, i, want);
    }
    return true;
}

static const char *claim_name(const char *name, const char *dflt)
{
    return name && *name ? name : dflt;
}

/* Types first (a malformed claim is malformed whatever else is true),
 * then time, then audience and issuer. */
static enum jwt_reason check_claims(const struct json_doc *d,
                                    const struct jwt_opts *o, int64_t now,
                                    int64_t *exp)
{
    size_t aud = member(d, "aud"), iss = member(d, "iss");
    size_t sub = member(d, "sub");
    int64_t nbf = 0, iat = 0;
    bool has_exp, has_nbf, has_iat, found;
    int64_t lw = o->leeway_s;

    if (!read_time(d, "exp", &has_exp, exp) || !has_exp ||
        !read_time(d, "nbf", &has_nbf, &nbf) ||
        !read_time(d, "iat", &has_iat, &iat))
        return JWT_MALFORMED;
    if ((iss != JSON_NONE && !is_string(d, iss)) ||
        (sub != JSON_NONE && !is_string(d, sub)) ||
        !aud_has(d, aud, o->audience ? o->audience : "", &found))
        return JWT_MALFORMED;
    if (now >= *exp + lw)
        return JWT_EXPIRED;
    if ((has_nbf && now < nbf - lw) || (has_iat && iat - lw > now))
        return JWT_NOT_YET_VALID;
    if (o->audience && *o->audience && !found)
        return JWT_WRONG_AUDIENCE;
    if (o->issuer && *o->issuer &&
        (iss == JSON_NONE || !str_eq(d, iss, o->issuer)))
        return JWT_WRONG_ISSUER;
    return JWT_OK;
}

/* "sub" into g->sub, cut at a character boundary if it is too long. */
static void copy_sub(const struct json_doc *d, struct jwt_grant *g)
{
    size_t i = member(d, "sub"), n;

    g->sub[0] = 0;
    if (i == JSON_NONE)
        return;
    n = json_at(d, i)->len;
    if (n >= sizeof(g->sub)) {
        n = sizeof(g->sub) - 1;
        while (n && ((uint8_t)json_str(d, i)[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(g->sub, json_str(d, i), n);
    g->sub[n] = 0;
}

static enum jwt_reason fill_grant(const struct json_doc *d,
                                  const struct jwt_opts *o, int64_t exp,
                                  struct jwt_grant *g)
{
    const char *cn = claim_name(o->channels_claim, "channels");
    const char *pn = claim_name(o->publish_claim, "publish");
    size_t bytes = 0;
    char *w;

    if (!check_list(d, cn, &g->n_sub, &bytes) ||
        !check_list(d, pn, &g->n_pub, &bytes))
        return JWT_MALFORMED;
    if (bytes) {
        g->patterns = mem_alloc(MEM_AUTH, bytes);
        if (!g->patterns)
            return JWT_NO_MEMORY;
        w = copy_list(d, cn, g->patterns);
        copy_list(d, pn, w);
    }
    g->exp = exp;
    copy_sub(d, g);
    return JWT_OK;
}

enum jwt_reason jwt_grant_from_json(const char *s, size_t n,
                                    const struct jwt_opts *o,
                                    struct jwt_grant *g, unsigned *present)
{
    const char *cn = claim_name(o->channels_claim, "channels");
    const char *pn = claim_name(o->publish_claim, "publish");
    struct json_doc d;
    enum jwt_reason r;
    int64_t exp = 0;
    bool has_exp;
    size_t sub;

    memset(g, 0, sizeof(*g));
    *present = 0;
    if (n == 0)
        return JWT_OK;
    r = parse_json(&d, (const uint8_t *)s, n);
    if (r)
        return r;
    sub = member(&d, "sub");
    if (!read_time(&d, "exp", &has_exp, &exp) ||
        (sub != JSON_NONE && !is_string(&d, sub))) {
        json_free(&d);
        return JWT_MALFORMED;
    }
    *present = (member(&d, cn) != JSON_NONE ? JWT_HAS_CHANNELS : 0) |
               (member(&d, pn) != JSON_NONE ? JWT_HAS_PUBLISH : 0) |
               (has_exp ? JWT_HAS_EXP : 0);
    r = fill_grant(&d, o, exp, g);
    json_free(&d);
    if (r)
        *present = 0;
    return r;
}

/* Everything after the size check, on the decoded parts. */
static enum jwt_reason verify_parts(const struct jwt_keys *k,
                                    const struct jwt_opts *o, const char *tok,
                                    const struct parts *pt, int64_t now,
                                    struct jwt_grant *g)
{
    struct json_doc h, p;
    const struct alg *a = NULL;
    enum jwt_reason r;
    int64_t exp = 0;
    size_t kid;

    r = parse_json(&h, pt->hdr, pt->hdr_len);
    if (r)
        return r;
    r = read_header(&h, &a, &kid);
    if (!r)
        r = check_signature(k, &h, kid, a, tok, pt);
    json_free(&h);
    if (r)
        return r;
    r = parse_json(&p, pt->pay, pt->pay_len);
    if (r)
        return r;
    r = check_claims(&p, o, now, &exp);
    if (!r)
        r = fill_grant(&p, o, exp, g);
    json_free(&p);
    return r;
}

enum jwt_reason jwt_verify(const struct jwt_keys *k, const struct jwt_opts *o,
                           const char *tok, size_t len, int64_t now_s,
                           struct jwt_grant *g)
{
    size_t max = o->max_token_bytes ? o->max_token_bytes : JWT_DEFAULT_MAX;
    struct parts pt = {0};
    enum jwt_reason r;

    memset(g, 0, sizeof(*g));
    if (len > max || !k)
        return JWT_MALFORMED;
    r = split_token(tok, len, &pt);
    if (!r)
        r = verify_parts(k, o, tok, &pt, now_s, g);
    mem_free(MEM_AUTH, pt.buf);
    if (r)
        jwt_grant_free(g);
    return r;
}

void jwt_grant_free(struct jwt_grant *g)
{
    mem_free(MEM_AUTH, g->patterns);
    memset(g, 0, sizeof(*g));
}

bool jwt_grant_allows(const struct jwt_grant *g, bool publish, const char *name,
                      size_t n)
{
    const char *e = g->patterns;
    size_t i, len, first = publish ? g->n_sub : 0;
    size_t last = publish ? (size_t)g->n_sub + g->n_pub : g->n_sub;

    if (!e)
        return false;
    for (i = 0; i < last; i++, e += len + 1) {
        len = strlen(e);
        if (i < first)
            continue;
        if (len && e[len - 1] == '*') {
            if (n >= len - 1 && !memcmp(name, e, len - 1))
                return true;
        } else if (len == n && !memcmp(name, e, n)) {
            return true;
        }
    }
    return false;
}
