/*
 * jwt.h - JSON Web Tokens (RFC 7519, JWS compact form, RFC 7515) checked
 * by moor itself: the keys, the signature, the claims, and the channel
 * rights a token grants (issue 16; docs/auth.md).
 *
 * Keeps: the algorithm is fixed by the key, never by the token's header
 * (an HMAC secret verifies only HS256/384/512, an RSA key RS256/384/512
 * and PS256/384/512, a P-256 key ES256, P-384 ES384, an Ed25519 key
 * EdDSA): "alg":"none" and an HS token "signed" with an RSA public key
 * as its secret are refused. HMAC is compared in constant time. A token
 * is size-checked before it is decoded; malformed base64url, bad JSON,
 * wrong types and duplicate claims are refused with a reason, never a
 * crash. Every byte is under the auth tag (OpenSSL's under tls).
 * Pure: no I/O but jwt_keys_load() reading its files.
 */
#ifndef MOOR_JWT_H
#define MOOR_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why a token was refused (a metric label each: jwt_reason_name()). */
enum jwt_reason {
    JWT_OK = 0,
    JWT_MALFORMED,     /* not three base64url parts, bad JSON, wrong types,
                          a duplicate member, "crit" in the header, "exp"
                          missing, over max_token_bytes */
    JWT_BAD_ALG,       /* "alg" missing, "none", unknown, or one that no
                          loaded key takes (with a "kid": that key) */
    JWT_UNKNOWN_KEY,   /* a "kid" no key has */
    JWT_BAD_SIGNATURE, /* the signature does not verify */
    JWT_EXPIRED,       /* now >= exp + leeway */
    JWT_NOT_YET_VALID, /* now < nbf - leeway, or iat in the future */
    JWT_WRONG_AUDIENCE,
    JWT_WRONG_ISSUER,
    JWT_NO_MEMORY,
    JWT_REASON_COUNT
};

/* "ok", "malformed", "bad_alg", "unknown_key", "bad_signature",
 * "expired", "not_yet_valid", "wrong_audience", "wrong_issuer",
 * "no_memory". */
const char *jwt_reason_name(enum jwt_reason r);

/* The keys tokens are checked with: an HMAC secret (the whole file's
 * bytes, a trailing newline removed; 32 to 4096 bytes) and/or PEM public
 * keys (RSA of 2048 bits or more, EC P-256/P-384, Ed25519), one per file
 * (a second one in a file is an error). A key's "kid" is its file's base
 * name without .pem (the secret's too), or given as "KID=FILE" in the
 * list; two keys may not share one. At most 16 keys in all. With a "kid"
 * in a token's header only that key is tried; without, every key that
 * takes the token's "alg". */
struct jwt_keys;

/* secret_file: NULL or "" for none. key_files: comma-separated list of
 * "FILE" or "KID=FILE", NULL or "" for none. At least one key in all.
 * Returns NULL with a one-line message in err (naming the file and what
 * is wrong with it). */
struct jwt_keys *jwt_keys_load(const char *secret_file, const char *key_files,
                               char *err, size_t errlen);
void jwt_keys_free(struct jwt_keys *k);
/* Keys loaded (the secret counts as one). */
size_t jwt_keys_count(const struct jwt_keys *k);

struct jwt_opts {
    uint32_t leeway_s;          /* clock skew allowed on exp, nbf, iat */
    uint32_t max_token_bytes;   /* longer tokens: JWT_MALFORMED, undecoded
                                   (0: 8192) */
    const char *audience;       /* NULL/"": "aud" not checked; else it must
                                   be this string or an array holding it */
    const char *issuer;         /* NULL/"": "iss" not checked */
    const char *channels_claim; /* what it may subscribe to (NULL/"":
                                   "channels") */
    const char *publish_claim;  /* what it may publish to (NULL/"":
                                   "publish") */
};

/* The rights a token grants: lists of channel names and prefixes (an
 * entry ending in '*' matches every name that starts with the rest; "*"
 * alone matches all). A claim that is absent grants nothing; a claim
 * that is not an array of at most 64 strings, each a channel name
 * (channel_name_valid()) with an optional trailing '*', or "*", is
 * JWT_MALFORMED. */
struct jwt_grant {
    int64_t exp;    /* seconds since the epoch */
    char sub[128];  /* "sub", truncated, "" if none (for /debug/conns) */
    char *patterns; /* subscribe entries then publish entries, each NUL
                       terminated, in one block (auth tag) */
    uint16_t n_sub; /* entries of the channels claim */
    uint16_t n_pub; /* entries of the publish claim */
};

/* Checks tok[0..len) at now_s (seconds since the epoch). JWT_OK fills
 * *g (free it with jwt_grant_free()); any other reason leaves *g empty
 * (nothing to free). */
enum jwt_reason jwt_verify(const struct jwt_keys *k, const struct jwt_opts *o,
                           const char *tok, size_t len, int64_t now_s,
                           struct jwt_grant *g);
void jwt_grant_free(struct jwt_grant *g);

/* What jwt_grant_from_json() found (bits of *present). */
enum {
    JWT_HAS_CHANNELS = 1u << 0,
    JWT_HAS_PUBLISH = 1u << 1,
    JWT_HAS_EXP = 1u << 2,
};
/* The same rights from an unsigned JSON object s[0..n) (an auth
 * callback's answer: {"channels": [...], "publish": [...], "exp": N,
 * "sub": "..."}, every member optional; an empty s is an empty object).
 * *present says which lists and exp were there (absent ones narrow
 * nothing: the caller decides). JWT_OK fills *g (jwt_grant_free());
 * JWT_MALFORMED or JWT_NO_MEMORY leave it empty. */
enum jwt_reason jwt_grant_from_json(const char *s, size_t n,
                                    const struct jwt_opts *o,
                                    struct jwt_grant *g, unsigned *present);

/* True if the grant lets its holder subscribe to (publish: publish to)
 * channel name[0..n). */
bool jwt_grant_allows(const struct jwt_grant *g, bool publish, const char *name,
                      size_t n);

#endif
