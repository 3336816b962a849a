/*
 * test_jwt.c - the token checker (src/jwt.c) against tokens made by other
 * implementations: tests/unit/jwt_tokens.py writes keys and tokens into a
 * temporary directory with PyJWT (python3-jwt, python3-cryptography) and
 * node's jsonwebtoken (tests/integration/node), every time claim relative
 * to NOW; this file checks them at NOW (or around it) and says what each
 * must give:
 *
 * - every algorithm verifies (HS256/384/512, RS256/384/512,
 *   PS256/384/512, ES256, ES384, EdDSA; five of them from node too);
 * - the wrong key, a tampered payload or signature, short or zero ECDSA
 *   signatures: bad_signature;
 * - "alg" none / missing / unknown, HS256 "signed" with the RSA public
 *   key's PEM, an alg of another key's kind: bad_alg; kid selection;
 * - exp, nbf, iat and the leeway; audience and issuer; duplicate members,
 *   bad JSON, "crit", wrong types; size limits and strict base64url;
 * - the channels / publish claims and their wildcards;
 * - jwt_keys_load's errors, one line each naming the file;
 * - every allocation of jwt_keys_load and jwt_verify failing in turn,
 *   and (in a child process) jwt_verify's with OpenSSL's failing too.
 *
 * After every test the auth tag holds the loaded keys' bytes and nothing
 * more; after the last, nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jwt.h"
#include "mem.h"
#include "tls.h"

#define NOW 1700000000LL

static char dir[] = "/tmp/moor-jwt.XXXXXX";
static struct jwt_keys *all; /* the secret and every supported key */
static int64_t keys_bytes;   /* MEM_AUTH live bytes with `all` loaded */
static const struct jwt_opts plain = {0};

/* ---- fixture ------------------------------------------------------------ */

static const char *path(const char *name)
{
    static char buf[4][PATH_MAX];
    static int i;

    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
    return buf[i];
}

/* The repository: this binary is build/<kind>/tests/test_jwt. */
static void repo_root(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    int up;

    assert_true(n > 0);
    exe[n] = 0;
    for (up = 0; up < 4; up++) {
        char *slash = strrchr(exe, '/');

        assert_non_null(slash);
        *slash = 0;
    }
    snprintf(out, cap, "%s", exe);
}

static struct jwt_keys *load(const char *secret, const char *files)
{
    char list[2048] = "", err[512] = "", *w = list;
    const char *p = files;
    struct jwt_keys *k;

    /* "a.pem,K=b.pem" -> "DIR/a.pem,K=DIR/b.pem" */
    while (p && *p) {
        const char *comma = strchr(p, ',');
        const char *eq = strchr(p, '=');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);

        if (eq && eq < p + n) {
            w += sprintf(w, "%.*s", (int)(eq + 1 - p), p);
            n -= (size_t)(eq + 1 - p);
            p = eq + 1;
        }
        w += sprintf(w, "%s/%.*s%s", dir, (int)n, p, comma ? "," : "");
        p = comma ? comma + 1 : NULL;
    }
    k = jwt_keys_load(secret ? path(secret) : NULL, list, err, sizeof(err));
    if (!k)
        fail_msg("load %s / %s: %s", secret ? secret : "-", files, err);
    return k;
}

/* ---- OpenSSL's allocations failing too ---------------------------------- */

static int walk_status = -1; /* the child's wait status */

static size_t slurp(const char *name, char *buf, size_t cap)
{
    FILE *f = fopen(path(name), "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;

    if (f)
        fclose(f);
    return n;
}

/* Runs in a child forked before this process touched OpenSSL, so that
 * tls_mem_init() can route OpenSSL's allocations through mem.c: then the
 * n-th allocation failing reaches OpenSSL's (EVP contexts, the ECDSA
 * signature's DER) as well as jwt.c's. OpenSSL does not always say that a
 * failure was for want of memory, and has fallbacks, so a good token may
 * come back no_memory, bad_signature or ok; what must hold is that a bad
 * token is never accepted, no other reason appears, and the auth tag's
 * bytes come back every time. (jwt_keys_load is left out here: OpenSSL's
 * PEM decoders make ~15,000 allocations, a minute a walk.) Returns the
 * number of failures. */
static int openssl_walk(void)
{
    static const struct {
        const char *name;
        enum jwt_reason want;
    } c[] = {
        {"hs256.jwt", JWT_OK},
        {"rs256.jwt", JWT_OK},
        {"ps384.jwt", JWT_OK},
        {"es256.jwt", JWT_OK},
        {"es384.jwt", JWT_OK},
        {"eddsa.jwt", JWT_OK},
        {"node_es256.jwt", JWT_OK},
        {"es256_tampered_sig.jwt", JWT_BAD_SIGNATURE},
        {"rs256_tampered_payload.jwt", JWT_BAD_SIGNATURE},
        {"rs256_other_key.jwt", JWT_BAD_SIGNATURE},
        {"eddsa_tampered.jwt", JWT_BAD_SIGNATURE},
    };
    char list[2048], err[256], tok[8192];
    struct jwt_opts o = {0};
    struct jwt_keys *k;
    struct jwt_grant g;
    enum jwt_reason r;
    int64_t base;
    int bad = 0;
    size_t i, n;
    uint64_t at;
    bool fired;

    if (tls_mem_init() != 0)
        return 1;
    snprintf(list, sizeof(list), "%s,%s,%s,%s", path("rsa.pem"),
             path("ec256.pem"), path("ec384.pem"), path("ed.pem"));
    k = jwt_keys_load(path("hs.secret"), list, err, sizeof(err));
    if (!k) {
        fprintf(stderr, "openssl walk: %s\n", err);
        return 1;
    }
    base = mem_live_bytes(MEM_AUTH);
    for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        n = slurp(c[i].name, tok, sizeof(tok));
        for (at = 1;; at++) {
            mem_fail_at(at);
            r = jwt_verify(k, &o, tok, n, NOW, &g);
            fired = mem_fail_fired();
            jwt_grant_free(&g);
            if (mem_live_bytes(MEM_AUTH) != base ||
                (r != c[i].want &&
                 (!fired || (r != JWT_NO_MEMORY && r != JWT_BAD_SIGNATURE)))) {
                fprintf(stderr, "openssl walk: %s, allocation %llu: %s\n",
                        c[i].name, (unsigned long long)at, jwt_reason_name(r));
                bad++;
            }
            if (!fired)
                break;
        }
    }
    mem_fail_at(0);
    jwt_keys_free(k);
    return bad + (mem_live_bytes(MEM_AUTH) != 0);
}

static void test_fail_openssl_allocations(void **state)
{
    (void)state;
    assert_true(WIFEXITED(walk_status));
    assert_int_equal(WEXITSTATUS(walk_status), 0);
}

static int setup(void **state)
{
    char root[PATH_MAX], cmd[PATH_MAX * 2 + 128];
    pid_t pid;

    (void)state;
    if (!mkdtemp(dir))
        return -1;
    repo_root(root, sizeof(root));
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 %s/tests/unit/jwt_tokens.py %s %lld", root, dir,
             NOW);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_jwt: %s failed\n", cmd);
        return -1;
    }
    /* Nothing has used OpenSSL yet: the child may route it. */
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0)
        exit(openssl_walk() ? 1 : 0);
    if (waitpid(pid, &walk_status, 0) != pid)
        return -1;
    all = load("hs.secret",
               "rsa.pem,ec256.pem,ec384.pem,ed.pem,signer-2=ec256.pem");
    keys_bytes = mem_live_bytes(MEM_AUTH);
    return 0;
}

static int teardown(void **state)
{
    char cmd[PATH_MAX + 16];

    (void)state;
    jwt_keys_free(all);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return -1;
    return mem_live_bytes(MEM_AUTH) == 0 ? 0 : -1;
}

static size_t read_token(const char *name, char *buf, size_t cap)
{
    FILE *f = fopen(path(name), "rb");
    size_t n;

    if (!f)
        fail_msg("no token %s", name);
    n = fread(buf, 1, cap, f);
    fclose(f);
    assert_true(n < cap);
    return n;
}

/* Verifies DIR/name.jwt; on JWT_OK the grant is left in *g. */
static enum jwt_reason verify_g(const struct jwt_keys *k,
                                const struct jwt_opts *o, const char *name,
                                int64_t now, struct jwt_grant *g)
{
    char file[128], tok[16384];
    size_t n;
    enum jwt_reason r;

    snprintf(file, sizeof(file), "%s.jwt", name);
    n = read_token(file, tok, sizeof(tok));
    r = jwt_verify(k, o, tok, n, now, g);
    if (r) {
        assert_null(g->patterns);
        assert_int_equal(g->n_sub + g->n_pub, 0);
    }
    return r;
}

/* Checks that DIR/name.jwt gives want, and leaves nothing behind. */
static void expect_at(const struct jwt_keys *k, const struct jwt_opts *o,
                      const char *name, int64_t now, enum jwt_reason want)
{
    struct jwt_grant g;
    int64_t before = mem_live_bytes(MEM_AUTH);
    enum jwt_reason r = verify_g(k, o, name, now, &g);

    jwt_grant_free(&g);
    if (r != want)
        fail_msg("%s: %s, want %s", name, jwt_reason_name(r),
                 jwt_reason_name(want));
    assert_int_equal(mem_live_bytes(MEM_AUTH), before);
}

static void expect(const char *name, enum jwt_reason want)
{
    expect_at(all, &plain, name, NOW, want);
}

static bool allows(const struct jwt_grant *g, bool publish, const char *name)
{
    return jwt_grant_allows(g, publish, name, strlen(name));
}

/* ---- algorithms and signatures ------------------------------------------ */

static void test_every_algorithm(void **state)
{
    static const char *const ok[] = {
        "hs256",      "hs384",      "hs512",      "rs256",      "rs384",
        "rs512",      "ps256",      "ps384",      "ps512",      "es256",
        "es384",      "eddsa",      "node_hs256", "node_hs512", "node_rs256",
        "node_ps384", "node_es256",
    };
    struct jwt_grant g;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (verify_g(all, &plain, ok[i], NOW, &g) != JWT_OK)
            fail_msg("%s refused", ok[i]);
        assert_int_equal(g.exp, NOW + 3600);
        assert_string_equal(g.sub, "user-1");
        assert_int_equal(g.n_sub, 2);
        assert_int_equal(g.n_pub, 1);
        assert_true(allows(&g, false, "news"));
        jwt_grant_free(&g);
        assert_null(g.patterns);
    }
    assert_int_equal(mem_live_bytes(MEM_AUTH), keys_bytes);
}

static void test_bad_signatures(void **state)
{
    (void)state;
    expect("rs256_other_key", JWT_BAD_SIGNATURE);
    expect("hs256_other_secret", JWT_BAD_SIGNATURE);
    expect("rs256_tampered_payload", JWT_BAD_SIGNATURE);
    expect("es256_tampered_sig", JWT_BAD_SIGNATURE);
    expect("hs256_tampered_sig", JWT_BAD_SIGNATURE);
    expect("es256_short_sig", JWT_BAD_SIGNATURE);
    expect("es256_zero_sig", JWT_BAD_SIGNATURE);
    expect("eddsa_tampered", JWT_BAD_SIGNATURE);
    expect("node_expired", JWT_EXPIRED); /* signed right, but expired */
}

static void test_alg_policy(void **state)
{
    struct jwt_keys *rsa = load(NULL, "rsa.pem");
    struct jwt_keys *ec = load(NULL, "ec256.pem");
    struct jwt_keys *hs = load("hs.secret", NULL);

    (void)state;
    expect("alg_none", JWT_BAD_ALG);
    expect("alg_none_upper", JWT_BAD_ALG);
    expect("alg_missing", JWT_BAD_ALG);
    expect("alg_number", JWT_MALFORMED);
    expect("alg_es512", JWT_BAD_ALG);
    /* The RSA public key as an HMAC secret: no RSA key takes HS256. */
    expect_at(rsa, &plain, "hs256_rsa_pem_secret", NOW, JWT_BAD_ALG);
    expect_at(rsa, &plain, "hs256_rsa_pem_secret_kid", NOW, JWT_BAD_ALG);
    expect("hs256_rsa_pem_secret_kid", JWT_BAD_ALG);
    /* With a secret loaded, that secret is tried, and it is not the PEM. */
    expect("hs256_rsa_pem_secret", JWT_BAD_SIGNATURE);
    /* An RS256 token relabelled ES256, and kinds that do not match. */
    expect_at(rsa, &plain, "rs256_as_es256", NOW, JWT_BAD_ALG);
    expect("rs256_as_es256", JWT_BAD_SIGNATURE);
    expect_at(ec, &plain, "rs256", NOW, JWT_BAD_ALG);
    expect_at(ec, &plain, "hs256", NOW, JWT_BAD_ALG);
    expect_at(ec, &plain, "es384", NOW, JWT_BAD_ALG);
    expect_at(hs, &plain, "rs256", NOW, JWT_BAD_ALG);
    expect_at(hs, &plain, "eddsa", NOW, JWT_BAD_ALG);
    expect_at(rsa, &plain, "ps512", NOW, JWT_OK);
    expect_at(ec, &plain, "es256", NOW, JWT_OK);
    expect_at(hs, &plain, "hs384", NOW, JWT_OK);
    jwt_keys_free(rsa);
    jwt_keys_free(ec);
    jwt_keys_free(hs);
    assert_int_equal(mem_live_bytes(MEM_AUTH), keys_bytes);
}

static void test_kid(void **state)
{
    struct jwt_keys *one = load(NULL, "ec256.pem,rsa.pem,rsa_other.pem");

    (void)state;
    expect("es256_kid", JWT_OK);
    expect("es256_kid_renamed", JWT_OK); /* "signer-2=ec256.pem" */
    expect_at(one, &plain, "es256_kid_renamed", NOW, JWT_UNKNOWN_KEY);
    expect("es256_kid_unknown", JWT_UNKNOWN_KEY);
    expect("es256_kid_rsa", JWT_BAD_ALG);
    expect("hs256_kid", JWT_OK); /* the secret's kid: its file name */
    expect_at(one, &plain, "node_es256", NOW, JWT_OK);
    expect_at(one, &plain, "node_rs256", NOW, JWT_OK);
    /* Signed by "rsa" but naming "rsa_other": only that key is tried. */
    expect_at(one, &plain, "rs256_kid_other", NOW, JWT_BAD_SIGNATURE);
    /* Without a kid every RSA key is tried, the right one second. */
    expect_at(one, &plain, "rs256_other_key", NOW, JWT_OK);
    jwt_keys_free(one);
}

/* ---- claims ------------------------------------------------------------- */

static void test_time(void **state)
{
    struct jwt_opts lw = {.leeway_s = 30}, lw100 = {.leeway_s = 100};
    struct jwt_opts lw1 = {.leeway_s = 1};
    struct jwt_grant g;

    (void)state;
    expect("expired", JWT_EXPIRED);
    expect_at(all, &lw, "expired", NOW, JWT_OK);
    expect_at(all, &lw, "expired_long_ago", NOW, JWT_EXPIRED);
    expect("exp_now", JWT_EXPIRED); /* now >= exp */
    /* (iat is NOW: a second of leeway lets NOW - 1 pass it.) */
    expect_at(all, &lw1, "exp_now", NOW - 1, JWT_OK);
    expect_at(all, &lw1, "exp_now", NOW, JWT_OK);
    expect_at(all, &lw1, "exp_now", NOW + 1, JWT_EXPIRED);
    /* A fraction is dropped: NOW + 0.75 is NOW. */
    expect("exp_fraction", JWT_EXPIRED);
    assert_int_equal(verify_g(all, &lw1, "exp_fraction", NOW - 1, &g), JWT_OK);
    assert_int_equal(g.exp, NOW);
    jwt_grant_free(&g);
    expect("exp_missing", JWT_MALFORMED);
    expect("exp_string", JWT_MALFORMED);
    assert_int_equal(verify_g(all, &plain, "exp_huge", NOW, &g), JWT_OK);
    assert_int_equal(g.exp, (int64_t)1 << 62);
    jwt_grant_free(&g);
    expect("nbf_future", JWT_NOT_YET_VALID);
    expect_at(all, &lw100, "nbf_future", NOW, JWT_OK);
    expect_at(all, &plain, "nbf_future", NOW + 100, JWT_OK);
    expect_at(all, &plain, "nbf_future", NOW + 99, JWT_NOT_YET_VALID);
    expect("nbf_soon", JWT_NOT_YET_VALID);
    expect_at(all, &lw, "nbf_soon", NOW, JWT_OK);
    expect("iat_future", JWT_NOT_YET_VALID);
    expect_at(all, &lw100, "iat_future", NOW, JWT_OK);
    expect_at(all, &plain, "hs256", NOW + 3599, JWT_OK);
    expect_at(all, &plain, "hs256", NOW + 3600, JWT_EXPIRED);
}

static void test_audience_issuer(void **state)
{
    struct jwt_opts aud = {.audience = "moor"};
    struct jwt_opts iss = {.issuer = "issuer-a"};
    struct jwt_opts both = {.audience = "moor", .issuer = "issuer-a"};
    struct jwt_opts empty = {.audience = "", .issuer = ""};

    (void)state;
    expect_at(all, &aud, "aud", NOW, JWT_OK);
    expect_at(all, &both, "aud", NOW, JWT_OK);
    expect_at(all, &aud, "aud_array", NOW, JWT_OK);
    expect_at(all, &both, "aud_array", NOW, JWT_WRONG_ISSUER);
    expect_at(all, &aud, "aud_wrong", NOW, JWT_WRONG_AUDIENCE);
    expect_at(all, &aud, "aud_wrong_array", NOW, JWT_WRONG_AUDIENCE);
    expect_at(all, &aud, "hs256", NOW, JWT_WRONG_AUDIENCE); /* no "aud" */
    expect_at(all, &iss, "aud_wrong", NOW, JWT_WRONG_ISSUER);
    expect_at(all, &iss, "hs256", NOW, JWT_WRONG_ISSUER);
    expect_at(all, &empty, "aud_wrong", NOW, JWT_OK);
    expect("aud_wrong", JWT_OK); /* not checked */
    expect("aud_number", JWT_MALFORMED);
    expect("aud_array_number", JWT_MALFORMED);
    expect("iss_number", JWT_MALFORMED);
    expect_at(all, &aud, "node_rs256", NOW, JWT_OK);
    expect_at(all, &aud, "node_ps384", NOW, JWT_OK);
}

static void test_structure(void **state)
{
    struct jwt_grant g;

    (void)state;
    expect("dup_claim", JWT_MALFORMED);
    expect("dup_exp", JWT_MALFORMED);
    expect("dup_header", JWT_MALFORMED);
    expect("bad_json", JWT_MALFORMED);
    expect("payload_array", JWT_MALFORMED);
    expect("header_bad_json", JWT_MALFORMED);
    expect("crit", JWT_MALFORMED);
    expect("typ_number", JWT_MALFORMED);
    expect("typ_other", JWT_OK);
    expect("deep_claim", JWT_MALFORMED);
    assert_int_equal(verify_g(all, &plain, "unknown_claims", NOW, &g), JWT_OK);
    assert_string_equal(g.sub, "\xc3\xa9t\xc3\xa9");
    assert_null(g.patterns);
    jwt_grant_free(&g);
    /* 126 bytes, then a two-byte character that does not fit in 127. */
    assert_int_equal(verify_g(all, &plain, "sub_long", NOW, &g), JWT_OK);
    assert_int_equal(strlen(g.sub), 126);
    jwt_grant_free(&g);
}

/* Edits of a good HS256 token, each refused before its signature. */
static void test_encoding(void **state)
{
    struct jwt_opts o = {0};
    struct jwt_grant g;
    char tok[4096], t2[4200], *d1, *d2, *big;
    size_t n, big_n = (size_t)1 << 20;

    (void)state;
    n = read_token("hs256.jwt", tok, sizeof(tok));
    tok[n] = 0;
    d1 = strchr(tok, '.');
    d2 = strchr(d1 + 1, '.');
    assert_int_equal(jwt_verify(all, &o, tok, n, NOW, &g), JWT_OK);
    jwt_grant_free(&g);
#define REFUSE(s, len)                                                         \
    do {                                                                       \
        assert_int_equal(jwt_verify(all, &o, (s), (len), NOW, &g),             \
                         JWT_MALFORMED);                                       \
        assert_null(g.patterns);                                               \
    } while (0)
    /* Size: checked first, against the limit or the default 8192. */
    o.max_token_bytes = (uint32_t)n - 1;
    REFUSE(tok, n);
    o.max_token_bytes = (uint32_t)n;
    assert_int_equal(jwt_verify(all, &o, tok, n, NOW, &g), JWT_OK);
    jwt_grant_free(&g);
    o.max_token_bytes = 0;
    big = malloc(big_n); /* lint: allow - test scratch, not moor's */
    assert_non_null(big);
    memset(big, 'A', big_n);
    REFUSE(big, big_n);
    REFUSE(big, 8193);
    free(big); /* lint: allow - see above */
    /* Parts. */
    REFUSE("", 0);
    REFUSE("..", 2);
    REFUSE("a..b", 4);
    REFUSE(tok, (size_t)(d2 - tok)); /* two parts */
    snprintf(t2, sizeof(t2), "%s.", tok);
    REFUSE(t2, n + 1);                  /* four parts */
    REFUSE(d1, n - (size_t)(d1 - tok)); /* empty header */
    snprintf(t2, sizeof(t2), "%.*s%s", (int)(d1 - tok + 1), tok, d2);
    REFUSE(t2, strlen(t2)); /* empty payload */
    /* base64url: padding, the other alphabet, whitespace, 4k+1, bits. */
    snprintf(t2, sizeof(t2), "%.*s=%s", (int)(d1 - tok), tok, d1);
    REFUSE(t2, n + 1);
    snprintf(t2, sizeof(t2), "%s=", tok);
    REFUSE(t2, n + 1);
    snprintf(t2, sizeof(t2), "%s", tok);
    t2[3] = '+';
    REFUSE(t2, n);
    t2[3] = '/';
    REFUSE(t2, n);
    t2[3] = ' ';
    REFUSE(t2, n);
    snprintf(t2, sizeof(t2), "%s\n", tok);
    REFUSE(t2, n + 1);
    snprintf(t2, sizeof(t2), "%sAA", tok); /* 43 + 2: 4k+1 */
    REFUSE(t2, n + 2);
    snprintf(t2, sizeof(t2), "%sA", tok); /* 44: decodes, 33 bytes */
    assert_int_equal(jwt_verify(all, &o, t2, n + 1, NOW, &g),
                     JWT_BAD_SIGNATURE);
    /* A 32-byte MAC is 43 characters whose last carries 2 unused bits. */
    snprintf(t2, sizeof(t2), "%s", tok);
    assert_int_equal(n - (size_t)(d2 + 1 - tok), 43);
    t2[n - 1] = t2[n - 1] == 'A' ? 'B' : t2[n - 1] == 'B' ? 'A' : 'B';
    REFUSE(t2, n);
    t2[n - 1] = tok[n - 1];
    /* A NUL inside is a byte like another. */
    t2[5] = 0;
    REFUSE(t2, n);
#undef REFUSE
    assert_int_equal(mem_live_bytes(MEM_AUTH), keys_bytes);
}

/* ---- channels ----------------------------------------------------------- */

static void test_channels(void **state)
{
    struct jwt_opts custom = {.channels_claim = "subs",
                              .publish_claim = "pubs"};
    struct jwt_grant g;
    char name[200];

    (void)state;
    memset(&g, 0, sizeof(g));
    assert_false(allows(&g, false, "news"));
    assert_int_equal(verify_g(all, &plain, "hs256", NOW, &g), JWT_OK);
    assert_true(allows(&g, false, "news"));
    assert_false(allows(&g, false, "news2"));
    assert_false(allows(&g, false, "new"));
    assert_true(allows(&g, false, "chat.x"));
    assert_true(allows(&g, false, "chat."));
    assert_false(allows(&g, false, "chat"));
    assert_true(allows(&g, false, "chat.room1"));
    assert_true(allows(&g, true, "chat.room1"));
    assert_false(allows(&g, true, "chat.room2"));
    assert_false(allows(&g, true, "news")); /* subscribe is not publish */
    assert_false(jwt_grant_allows(&g, false, "news", 3));
    jwt_grant_free(&g);

    assert_int_equal(verify_g(all, &plain, "channels_star", NOW, &g), JWT_OK);
    assert_true(allows(&g, false, "anything:at@all"));
    assert_false(allows(&g, true, "anything"));
    jwt_grant_free(&g);

    assert_int_equal(verify_g(all, &plain, "channels_none", NOW, &g), JWT_OK);
    assert_null(g.patterns);
    assert_false(allows(&g, false, "news"));
    assert_false(allows(&g, true, "news"));
    jwt_grant_free(&g);

    assert_int_equal(verify_g(all, &custom, "channels_custom", NOW, &g),
                     JWT_OK);
    assert_true(allows(&g, false, "a.b"));
    assert_true(allows(&g, false, "c"));
    assert_true(allows(&g, false, "cx"));
    assert_false(allows(&g, false, "x"));
    assert_true(allows(&g, true, "x"));
    assert_false(allows(&g, true, "a.b"));
    jwt_grant_free(&g);
    assert_int_equal(verify_g(all, &plain, "channels_custom", NOW, &g), JWT_OK);
    assert_int_equal(g.n_sub + g.n_pub, 0);
    jwt_grant_free(&g);

    assert_int_equal(verify_g(all, &plain, "channels_64", NOW, &g), JWT_OK);
    assert_int_equal(g.n_sub, 64);
    assert_int_equal(g.n_pub, 1);
    assert_true(allows(&g, false, "c63"));
    memset(name, 'p', 128);
    assert_true(jwt_grant_allows(&g, true, name, 128));
    assert_false(jwt_grant_allows(&g, true, name, 126));
    jwt_grant_free(&g);

    expect("channels_string", JWT_MALFORMED);
    expect("channels_bad_name", JWT_MALFORMED);
    expect("channels_empty_entry", JWT_MALFORMED);
    expect("channels_number", JWT_MALFORMED);
    expect("channels_star_middle", JWT_MALFORMED);
    expect("channels_65", JWT_MALFORMED);
    expect("channels_long", JWT_MALFORMED);
    expect("publish_object", JWT_MALFORMED);
    assert_int_equal(mem_live_bytes(MEM_AUTH), keys_bytes);
}

/* ---- keys --------------------------------------------------------------- */

/* jwt_keys_load(secret, files) must fail with an error holding want (and
 * naming file if given), on one line, leaving nothing behind. */
static void load_fails(const char *secret, const char *files, const char *want,
                       const char *file)
{
    char err[512] = "";
    int64_t before = mem_live_bytes(MEM_AUTH);

    assert_null(jwt_keys_load(secret, files, err, sizeof(err)));
    if (!strstr(err, want) || (file && !strstr(err, file)))
        fail_msg("load %s / %s: \"%s\", want \"%s\"", secret ? secret : "-",
                 files ? files : "-", err, want);
    assert_null(strchr(err, '\n'));
    assert_int_equal(mem_live_bytes(MEM_AUTH), before);
}

static void test_keys_load(void **state)
{
    char list[4096], err[256];
    struct jwt_keys *k;
    int i, w;

    (void)state;
    load_fails(path("short.secret"), NULL, "secret of 30 bytes: at least 32",
               "short.secret");
    load_fails(path("missing.secret"), NULL, "cannot open", "missing.secret");
    load_fails(NULL, path("missing.pem"), "cannot open", "missing.pem");
    load_fails(NULL, path("rsa1024.pem"), "RSA key of 1024 bits: at least 2048",
               "rsa1024.pem");
    load_fails(NULL, path("ec521.pem"), "EC key on curve", "ec521.pem");
    load_fails(NULL, path("two.pem"), "more than one public key", "two.pem");
    load_fails(NULL, path("garbage.pem"), "not a PEM public key",
               "garbage.pem");
    load_fails(NULL, path("hs.secret"), "not a PEM public key", "hs.secret");
    load_fails(NULL, path("rsa.key"), "not a PEM public key", "rsa.key");
    load_fails(NULL, NULL, "no keys", NULL);
    load_fails("", "", "no keys", NULL);
    snprintf(list, sizeof(list), "%s,a=%s", path("rsa.pem"), path("ec256.pem"));
    k = jwt_keys_load(NULL, list, err, sizeof(err));
    assert_non_null(k);
    assert_int_equal(jwt_keys_count(k), 2);
    jwt_keys_free(k);
    snprintf(list, sizeof(list), "%s,%s", path("rsa.pem"), path("rsa.pem"));
    load_fails(NULL, list, "kid \"rsa\" given to two keys", "rsa.pem");
    snprintf(list, sizeof(list), "x=%s,x=%s", path("rsa.pem"),
             path("ec256.pem"));
    load_fails(NULL, list, "kid \"x\" given to two keys", "ec256.pem");
    snprintf(list, sizeof(list), "=%s", path("rsa.pem"));
    load_fails(NULL, list, "not FILE or KID=FILE", NULL);
    snprintf(list, sizeof(list), "%s,,%s", path("rsa.pem"), path("ed.pem"));
    load_fails(NULL, list, "not FILE or KID=FILE", NULL);
    snprintf(list, sizeof(list), "%s,", path("rsa.pem"));
    load_fails(NULL, list, "ends with a comma", NULL);
    /* 16 keys load; a 17th does not. */
    for (i = 0, w = 0; i < 16; i++)
        w += snprintf(list + w, sizeof(list) - (size_t)w, "%sk%d=%s",
                      i ? "," : "", i, path("ed.pem"));
    k = jwt_keys_load(NULL, list, err, sizeof(err));
    assert_non_null(k);
    assert_int_equal(jwt_keys_count(k), 16);
    jwt_keys_free(k);
    k = jwt_keys_load(path("hs.secret"), list, err, sizeof(err));
    assert_null(k);
    assert_non_null(strstr(err, "at most 16 keys may be loaded"));
    assert_int_equal(jwt_keys_count(all), 6);
    assert_int_equal(jwt_keys_count(NULL), 0);
    jwt_keys_free(NULL);
    assert_int_equal(mem_live_bytes(MEM_AUTH), keys_bytes);
}

static void test_reason_names(void **state)
{
    static const char *const names[JWT_REASON_COUNT] = {
        "ok",
        "malformed",
        "bad_alg",
        "unknown_key",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "wrong_issuer",
        "no_memory",
    };
    int i;

    (void)state;
    for (i = 0; i < JWT_REASON_COUNT; i++)
        assert_string_equal(jwt_reason_name((enum jwt_reason)i), names[i]);
    assert_string_equal(jwt_reason_name(JWT_REASON_COUNT), "unknown");
}

/* ---- allocation failure ------------------------------------------------- */

static void test_fail_every_allocation(void **state)
{
    static const char *const toks[] = {"hs256", "es256", "node_rs256",
                                       "channels_64", "dup_claim"};
    char list[2048], err[256];
    struct jwt_keys *k;
    struct jwt_grant g;
    enum jwt_reason r, want;
    uint64_t n;
    size_t t;

    (void)state;
    snprintf(list, sizeof(list), "%s,%s,kid=%s", path("rsa.pem"),
             path("ec256.pem"), path("ed.pem"));
    for (n = 1;; n++) {
        mem_fail_at(n);
        k = jwt_keys_load(path("hs.secret"), list, err, sizeof(err));
        if (!mem_fail_fired())
            break;
        assert_null(k);
        assert_non_null(strstr(err, "out of memory"));
        assert_int_equal(mem_live_bytes(MEM_AUTH), keys_bytes);
    }
    mem_fail_at(0);
    assert_non_null(k);
    assert_true(n > 4); /* the set, a kid each, the secret */
    jwt_keys_free(k);

    for (t = 0; t < sizeof(toks) / sizeof(toks[0]); t++) {
        want = verify_g(all, &plain, toks[t], NOW, &g);
        jwt_grant_free(&g);
        for (n = 1;; n++) {
            mem_fail_at(n);
            r = verify_g(all, &plain, toks[t], NOW, &g);
            if (!mem_fail_fired())
                break;
            assert_int_equal(r, JWT_NO_MEMORY);
            assert_int_equal(mem_live_bytes(MEM_AUTH), keys_bytes);
        }
        mem_fail_at(0);
        assert_int_equal(r, want);
        assert_true(n > 3); /* the parts, a header and a payload */
        jwt_grant_free(&g);
        assert_int_equal(mem_live_bytes(MEM_AUTH), keys_bytes);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_algorithm),
        cmocka_unit_test(test_bad_signatures),
        cmocka_unit_test(test_alg_policy),
        cmocka_unit_test(test_kid),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_audience_issuer),
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_encoding),
        cmocka_unit_test(test_channels),
        cmocka_unit_test(test_keys_load),
        cmocka_unit_test(test_reason_names),
        cmocka_unit_test(test_fail_every_allocation),
        cmocka_unit_test(test_fail_openssl_allocations),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
