/*
 * tls.c - OpenSSL behind moor's accounting: memory hooks, server and
 * client contexts with certificate reload, and a per-connection engine
 * over a non-blocking socket (transport layer; see tls.h for the
 * contract).
 *
 * Keeps:
 * - Every byte OpenSSL allocates goes through mem.c under MEM_TLS, once
 *   tls_mem_init() ran first; OpenSSL's file:line become trace sites.
 * - An idle connection holds no record buffer: SSL_MODE_RELEASE_BUFFERS
 *   frees the read buffer when the last record is consumed and the write
 *   buffer when the last record is sent; no session is cached and no
 *   ticket issued unless asked for (docs/tls.md has the figures).
 * - The engine has no plaintext buffer: bytes go from the socket into the
 *   caller's buffer and from the caller's iovecs to the socket, with only
 *   a 16 KiB stack buffer to coalesce small iovecs into full records.
 * - I/O goes through a tiny BIO of our own rather than OpenSSL's socket
 *   BIO: it sends with MSG_NOSIGNAL (a library user who does not ignore
 *   SIGPIPE survives a peer that left, as conn.c does) and records the
 *   errno text of a failed syscall as the connection's error.
 * - A server hands nothing to OpenSSL before the client's whole first
 *   record is in the socket (it only peeks until then), so a silent
 *   client, or one that sends half a ClientHello, costs the SSL object
 *   alone, and plain HTTP on the TLS port is recognised before OpenSSL
 *   consumes it.
 *
 * Must not: call conn.c or anything above the transport layer; block;
 * wait for the peer's close_notify; call SSL_shutdown() or SSL_write()
 * after a fatal error (OpenSSL forbids it: the TC_FATAL flag guards).
 */
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "mem.h"
#include "util.h"

/* The most plaintext one TLS record carries (RFC 8446 5.1). */
#define TLS_RECORD_MAX 16384

/* ------------------------------------------------------------------ */
/* OpenSSL's memory.                                                  */
/* ------------------------------------------------------------------ */

/* OpenSSL's allocations refused on this thread, so that a handshake that
 * failed for want of memory says so (tls_handshake). */
static _Thread_local unsigned ossl_refused;

/* OpenSSL passes its own __FILE__/__LINE__ (static strings), which is
 * exactly what trace mode records. */
static void *ossl_malloc(size_t n, const char *file, int line)
{
    void *p = mem_alloc_at(MEM_TLS, n, file, line);

    if (!p)
        ossl_refused++;
    return p;
}

/* CRYPTO_realloc's contract: a NULL block is a malloc, a size of 0 frees
 * the block and returns NULL. */
static void *ossl_realloc(void *p, size_t n, const char *file, int line)
{
    void *q;

    if (p && n == 0) {
        mem_free(MEM_TLS, p);
        return NULL;
    }
    q = mem_realloc_at(MEM_TLS, p, n, file, line);
    if (!q)
        ossl_refused++;
    return q;
}

static void ossl_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    mem_free(MEM_TLS, p);
}

static int mem_routed;  /* atomic: tls_mem_init() succeeded */
static int mem_refused; /* atomic: the -EBUSY warning was logged */

int tls_mem_init(void)
{
    CRYPTO_malloc_fn m;
    CRYPTO_realloc_fn r;
    CRYPTO_free_fn f;

    CRYPTO_get_mem_functions(&m, &r, &f);
    if (m == ossl_malloc) {
        __atomic_store_n(&mem_routed, 1, __ATOMIC_RELEASE);
        return 0;
    }
    /* OpenSSL refuses once its first allocation has been made: its
     * blocks then came from libc and must be freed by libc. */
    if (!CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free)) {
        if (!__atomic_exchange_n(&mem_refused, 1, __ATOMIC_RELAXED))
            LOG_WARN("tls memory not accounted",
                     "why=\"OpenSSL was used before tls_mem_init()\"");
        return -EBUSY;
    }
    __atomic_store_n(&mem_routed, 1, __ATOMIC_RELEASE);
    return 0;
}

bool tls_mem_routed(void)
{
    return __atomic_load_n(&mem_routed, __ATOMIC_ACQUIRE) != 0;
}

/* ------------------------------------------------------------------ */
/* The socket BIO.                                                    */
/* ------------------------------------------------------------------ */

struct tls_conn {
    SSL *ssl;
    const char *why; /* last error, a static string; NULL if none */
    int fd;
    uint16_t wpend; /* plaintext in a record half sent (<= 16 KiB) */
    uint8_t flags;  /* enum tc_flag */
    int8_t end;     /* sticky end of the read side: TLS_CLOSED, ... */
};

enum tc_flag {
    TC_SERVER = 1u << 0,
    TC_DONE = 1u << 1,      /* handshake complete */
    TC_SEEN = 1u << 2,      /* server: the first byte was looked at */
    TC_KEEP_BUFS = 1u << 2, /* client (TC_SEEN's bit): keep_buffers */
    TC_FATAL = 1u << 3,     /* OpenSSL failed: only SSL_free() is allowed */
    TC_EOF = 1u << 4,       /* the socket read returned 0 */
    TC_SHUT_SENT = 1u << 5, /* close_notify handed to the socket */
    TC_LOWAT = 1u << 6,     /* server: SO_RCVLOWAT raised (first_record) */
    TC_VERIFY = 1u << 7     /* the peer's certificate failed verification */
};

/* One method for the process, created with the first context and freed
 * by tls_mem_fini(). A context is always created before a connection, so
 * tls_conn_new() only reads it. */
static BIO_METHOD *bio_meth;
static pthread_mutex_t bio_lock = PTHREAD_MUTEX_INITIALIZER;

/* A socket error: its text becomes the connection's error. A reset or a
 * broken pipe means the peer is gone, reported as TLS_EOF like a FIN
 * (conn.c counts ECONNRESET as peer_closed too). The end of file itself
 * (read() == 0) is recorded by bio_read(). */
static void sys_error(struct tls_conn *tc, int err)
{
    /* The first cause wins: sending the fatal alert that follows may
     * fail too ("Broken pipe"), and that says less. */
    if (!tc->why)
        tc->why = strerrordesc_np(err);
    if (err == ECONNRESET || err == EPIPE)
        tc->flags |= TC_EOF;
}

static int bio_write(BIO *b, const char *p, int len)
{
    struct tls_conn *tc = BIO_get_data(b);
    ssize_t n;

    BIO_clear_retry_flags(b);
    do {
        n = send(tc->fd, p, (size_t)len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n >= 0)
        return (int)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        BIO_set_retry_write(b);
    else
        sys_error(tc, errno);
    return -1;
}

static int bio_read(BIO *b, char *p, int len)
{
    struct tls_conn *tc = BIO_get_data(b);
    ssize_t n;

    BIO_clear_retry_flags(b);
    do {
        n = read(tc->fd, p, (size_t)len);
    } while (n < 0 && errno == EINTR);
    if (n > 0)
        return (int)n;
    if (n == 0) {
        tc->flags |= TC_EOF;
        if (!tc->why)
            tc->why = "peer closed the connection without close_notify";
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        BIO_set_retry_read(b);
    else
        sys_error(tc, errno);
    return -1;
}

/* What libssl asks of a transport BIO: flush (nothing is buffered here),
 * end of file (so OpenSSL can tell a truncated stream from a would-block)
 * and the fd (SSL_get_fd). Everything else is unsupported. */
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct tls_conn *tc = BIO_get_data(b);

    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return tc && (tc->flags & TC_EOF) ? 1 : 0;
    case BIO_C_GET_FD:
        if (!tc)
            return -1;
        if (ptr)
            *(int *)ptr = tc->fd;
        return tc->fd;
    default:
        return 0;
    }
}

/* Returns false only when out of memory. */
static bool bio_meth_ensure(void)
{
    BIO_METHOD *m;
    int type;

    if (__atomic_load_n(&bio_meth, __ATOMIC_ACQUIRE))
        return true;
    pthread_mutex_lock(&bio_lock);
    if (!bio_meth) {
        type = BIO_get_new_index();
        m = type > 0 ? BIO_meth_new(type | BIO_TYPE_SOURCE_SINK |
                                        BIO_TYPE_DESCRIPTOR,
                                    "moor socket")
                     : NULL;
        if (m && (!BIO_meth_set_write(m, bio_write) ||
                  !BIO_meth_set_read(m, bio_read) ||
                  !BIO_meth_set_ctrl(m, bio_ctrl))) {
            BIO_meth_free(m);
            m = NULL;
        }
        if (m)
            __atomic_store_n(&bio_meth, m, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&bio_lock);
    return bio_meth != NULL;
}

void tls_mem_fini(void)
{
    BIO_METHOD *m;

    pthread_mutex_lock(&bio_lock);
    m = bio_meth;
    __atomic_store_n(&bio_meth, NULL, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&bio_lock);
    BIO_meth_free(m);
    /* Safe if OpenSSL was never initialised, and idempotent; the atexit
     * handler OpenSSL registered does nothing afterwards. */
    OPENSSL_cleanup();
}

/* ------------------------------------------------------------------ */
/* Small helpers.                                                     */
/* ------------------------------------------------------------------ */

const char *tls_result_name(int r)
{
    switch (r) {
    case TLS_OK:
        return "ok";
    case TLS_WANT_READ:
        return "want_read";
    case TLS_WANT_WRITE:
        return "want_write";
    case TLS_CLOSED:
        return "closed";
    case TLS_EOF:
        return "eof";
    case TLS_ERR:
        return "error";
    case TLS_ERR_PLAINTEXT:
        return "plaintext";
    default:
        return r > 0 ? "bytes" : "unknown";
    }
}

int tls_parse_version(const char *s)
{
    if (!s)
        return -EINVAL;
    if (!strcmp(s, "1.2") || !strcmp(s, "TLSv1.2"))
        return TLS_V1_2;
    if (!strcmp(s, "1.3") || !strcmp(s, "TLSv1.3"))
        return TLS_V1_3;
    return -EINVAL;
}

/* The reason text of an OpenSSL error code: a static string. */
static const char *err_text(unsigned long e)
{
    const char *r;

    if (e == 0)
        return NULL;
    if (ERR_SYSTEM_ERROR(e))
        return strerrordesc_np(ERR_GET_REASON(e));
    r = ERR_reason_error_string(e);
    return r ? r : "unknown error";
}

/* Formats "<what> <path>: <reason>" from the oldest error in the thread's
 * queue (the root cause: "no start line", "No such file or directory",
 * "key values mismatch"; later entries only say which layer passed it
 * up), then empties the queue. */
static void load_error(char *err, size_t errlen, const char *what,
                       const char *path)
{
    const char *r = err_text(ERR_peek_error());

    if (err && errlen)
        snprintf(err, errlen, "%s %s: %s", what, path ? path : "(none)",
                 r ? r : "not loaded");
    ERR_clear_error();
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    ERR_clear_error();
}

/* ------------------------------------------------------------------ */
/* Contexts.                                                          */
/* ------------------------------------------------------------------ */

struct tls_ctx {
    pthread_mutex_t lock;   /* guards ssl_ctx */
    SSL_CTX *ssl_ctx;       /* the one new connections use; one ref held */
    uint64_t reload_ok;     /* atomic */
    uint64_t reload_failed; /* atomic */
    char *ciphers;          /* MEM_TLS copies of the settings, NULL: default */
    char *suites;
    int min_version;
    uint32_t session_cache;
    uint32_t session_timeout_s;
    bool tickets;
    bool server;
    bool insecure;
    bool keep_buffers; /* client: record buffers kept once handshaken */
    /* client: where new sessions go (tls_client_opts.on_session) */
    void (*on_session)(void *arg, SSL_SESSION *session);
};

/* Encrypted keys are not supported: without this callback OpenSSL would
 * prompt on the terminal, and a SIGHUP reload would hang the process. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* ALPN (server): moor speaks HTTP/1.1 (and upgrades from it), nothing
 * else. A client that offers ALPN without http/1.1 gets the fatal
 * no_application_protocol alert (RFC 7301 3.2); a client that offers no
 * ALPN at all is served as HTTP/1.1 (the callback is not called). */
static int alpn_select(SSL *s, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned int i = 0, len;

    (void)s;
    (void)arg;
    while (i < inlen) {
        len = in[i];
        if (len == 0 || len > inlen - i - 1)
            break; /* OpenSSL has validated the list; be safe anyway */
        if (len == 8 && !memcmp(in + i + 1, "http/1.1", 8)) {
            *out = in + i + 1; /* OpenSSL copies it */
            *outlen = (unsigned char)len;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* SNI (server): one certificate serves every name, so any name is
 * accepted (and acknowledged). This is where a per-name certificate
 * would be chosen (SSL_set_SSL_CTX). */
static int sni_any(SSL *s, int *alert, void *arg)
{
    (void)s;
    (void)alert;
    (void)arg;
    return SSL_TLSEXT_ERR_OK;
}

/* Settings shared by servers and clients. */
static bool setup_common(SSL_CTX *c, const struct tls_ctx *t, char *err,
                         size_t errlen)
{
    const char *ciphers = t->ciphers ? t->ciphers : TLS_CIPHERS_DEFAULT;
    const char *suites = t->suites ? t->suites : TLS_SUITES_DEFAULT;

    if (!SSL_CTX_set_min_proto_version(c, t->min_version) ||
        !SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION)) {
        set_err(err, errlen, "cannot set the TLS versions");
        return false;
    }
    if (SSL_CTX_set_cipher_list(c, ciphers) != 1) {
        load_error(err, errlen, "--tls-ciphers", ciphers);
        return false;
    }
    if (SSL_CTX_set_ciphersuites(c, suites) != 1) {
        load_error(err, errlen, "--tls-ciphersuites", suites);
        return false;
    }
    if (SSL_CTX_set1_groups_list(c, TLS_GROUPS_DEFAULT) != 1) {
        load_error(err, errlen, "groups", TLS_GROUPS_DEFAULT);
        return false;
    }
    /* RELEASE_BUFFERS: no record buffer while idle (docs/principles.md,
     * rule 3).
     * ENABLE_PARTIAL_WRITE: SSL_write() returns after each record, like
     * writev() returns a short count. ACCEPT_MOVING_WRITE_BUFFER: a retry
     * may come from another address with the same bytes (the coalescing
     * stack buffer of tls_writev). */
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS |
                            SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Renegotiation: refused in both directions (TLS 1.2; TLS 1.3 has
     * none). OpenSSL 3 already refuses client-initiated renegotiation
     * unless SSL_OP_ALLOW_CLIENT_RENEGOTIATION is set; this also covers
     * a server's HelloRequest to our client. */
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    return true;
}

/* Builds an OpenSSL server context with t's settings and the given
 * files. Returns it (one reference) or NULL with err set. */
static SSL_CTX *server_ssl_ctx(const struct tls_ctx *t, const char *cert,
                               const char *key, char *err, size_t errlen)
{
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    long timeout = t->session_timeout_s ? (long)t->session_timeout_s : 300;

    if (!c) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    if (!setup_common(c, t, err, errlen))
        goto err_free_ctx;
    SSL_CTX_set_default_passwd_cb(c, no_passphrase);
    if (!cert || SSL_CTX_use_certificate_chain_file(c, cert) != 1) {
        load_error(err, errlen, "certificate", cert);
        goto err_free_ctx;
    }
    if (!key || SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1) {
        load_error(err, errlen, "key", key);
        goto err_free_ctx;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
        load_error(err, errlen, "key", key);
        goto err_free_ctx;
    }
    SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Resumption policy (docs/tls.md): by default no cache and no
     * tickets, so that nothing outlives a connection and an idle
     * connection holds nothing a resumption would need. */
    if (t->session_cache) {
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(c, (long)t->session_cache);
        SSL_CTX_set_session_id_context(c, (const unsigned char *)"moor", 4);
    } else {
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    }
    SSL_CTX_set_timeout(c, timeout);
    if (t->tickets) {
        SSL_CTX_clear_options(c, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(c, 1);
    } else {
        SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(c, 0);
    }
    SSL_CTX_set_alpn_select_cb(c, alpn_select, NULL);
    SSL_CTX_set_tlsext_servername_callback(c, sni_any);
    ERR_clear_error();
    return c;

err_free_ctx:
    SSL_CTX_free(c);
    return NULL;
}

/* The system trust store, looked up lazily: the hashed directory loads
 * a CA certificate only when a chain needs it, where OpenSSL's default
 * file (SSL_CTX_set_default_verify_paths) would parse the whole bundle,
 * ~140 certificates and a few hundred KiB, into every client context. */
static bool load_system_store(SSL_CTX *c, char *err, size_t errlen)
{
    const char *dir = getenv(X509_get_default_cert_dir_env());
    const char *file = getenv(X509_get_default_cert_file_env());
    struct stat st;

    if (!dir || !*dir)
        dir = X509_get_default_cert_dir();
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (SSL_CTX_set_default_verify_paths(c) != 1) {
            load_error(err, errlen, "system trust store", dir);
            return false;
        }
        return true;
    }
    if (X509_STORE_load_path(SSL_CTX_get_cert_store(c), dir) != 1) {
        load_error(err, errlen, "system trust store", dir);
        return false;
    }
    /* A bundle named explicitly in the environment is honoured too. */
    if (file && *file &&
        X509_STORE_load_file(SSL_CTX_get_cert_store(c), file) != 1) {
        load_error(err, errlen, "CA file", file);
        return false;
    }
    return true;
}

/* Decodes the extensions of every certificate in c's store now, while
 * the context is made. OpenSSL does it the first time a chain needs the
 * certificate, once: if an allocation fails there it marks the
 * certificate invalid for good, and every later handshake of the context
 * fails verification ("self-signed certificate") although memory is back.
 * Returns false if a certificate's extensions could not be decoded (bad,
 * or no memory): a trust anchor OpenSSL would never use. */
static bool store_cache_extensions(SSL_CTX *c)
{
    STACK_OF(X509_OBJECT) *objs =
        X509_STORE_get0_objects(SSL_CTX_get_cert_store(c));

    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));

        if (x && (X509_get_extension_flags(x) & EXFLAG_INVALID))
            return false;
    }
    return true;
}

/* OpenSSL hands over a new session (SSL_CTX_sess_set_new_cb): to the
 * context's on_session with the connection's argument. Returning 1 means
 * the callee took the reference. */
static int client_new_session(SSL *ssl, SSL_SESSION *sess)
{
    const struct tls_ctx *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    void *arg = SSL_get_app_data(ssl);

    if (!t || !t->on_session || !arg)
        return 0;
    t->on_session(arg, sess);
    return 1;
}

static SSL_CTX *client_ssl_ctx(const struct tls_ctx *t,
                               const struct tls_client_opts *o, char *err,
                               size_t errlen)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    const char *alpn = o->alpn ? o->alpn : "http/1.1";
    unsigned char wire[256];
    size_t alen = strlen(alpn);

    if (!c) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    if (!setup_common(c, t, err, errlen))
        goto err_free_ctx;
    if (t->insecure) {
        SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
        if (o->ca_file) {
            if (SSL_CTX_load_verify_locations(c, o->ca_file, NULL) != 1) {
                load_error(err, errlen, "CA file", o->ca_file);
                goto err_free_ctx;
            }
            if (!store_cache_extensions(c)) {
                if (err && errlen)
                    snprintf(err, errlen,
                             "CA file %s: a certificate's extensions could not "
                             "be decoded (invalid, or out of memory)",
                             o->ca_file);
                ERR_clear_error();
                goto err_free_ctx;
            }
        } else if (!load_system_store(c, err, errlen)) {
            goto err_free_ctx;
        }
    }
    if (alen > 0) {
        if (alen >= sizeof(wire)) {
            set_err(err, errlen, "ALPN protocol name too long");
            goto err_free_ctx;
        }
        wire[0] = (unsigned char)alen;
        memcpy(wire + 1, alpn, alen);
        /* Returns 0 on success, unlike its neighbours. */
        if (SSL_CTX_set_alpn_protos(c, wire, (unsigned)alen + 1) != 0) {
            set_err(err, errlen, "out of memory");
            goto err_free_ctx;
        }
    }
    /* Read ahead: one read() takes what the socket has (a whole
     * response, usually) instead of a record header and then its body. */
    SSL_CTX_set_read_ahead(c, 1);
    if (o->on_session) {
        /* Sessions go to the caller, never into OpenSSL's own cache: the
         * client's pool keeps a few per host, bounded. */
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT |
                                              SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(c, client_new_session);
    } else {
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    }
    SSL_CTX_set_app_data(c, (void *)t);
    ERR_clear_error();
    return c;

err_free_ctx:
    SSL_CTX_free(c);
    return NULL;
}

static void ctx_free_settings(struct tls_ctx *t)
{
    mem_free(MEM_TLS, t->ciphers);
    mem_free(MEM_TLS, t->suites);
    pthread_mutex_destroy(&t->lock);
    mem_free(MEM_TLS, t);
}

/* Allocates a context with the common settings copied in (and the BIO
 * method every connection of it uses made ready). */
static struct tls_ctx *ctx_alloc(int min_version, const char *ciphers,
                                 const char *suites, char *err, size_t errlen)
{
    struct tls_ctx *t;

    if (!bio_meth_ensure()) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    if (min_version == 0)
        min_version = TLS_V1_2;
    if (min_version != TLS_V1_2 && min_version != TLS_V1_3) {
        set_err(err, errlen, "minimum TLS version must be 1.2 or 1.3");
        return NULL;
    }
    t = mem_calloc(MEM_TLS, 1, sizeof(*t));
    if (!t) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->min_version = min_version;
    if (ciphers && !ciphers[0])
        ciphers = NULL; /* "": the default */
    if (suites && !suites[0])
        suites = NULL;
    if ((ciphers && !(t->ciphers = mem_strndup(MEM_TLS, ciphers, 4096))) ||
        (suites && !(t->suites = mem_strndup(MEM_TLS, suites, 4096)))) {
        ctx_free_settings(t);
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    return t;
}

struct tls_ctx *tls_server_new(const struct tls_server_opts *o, char *err,
                               size_t errlen)
{
    struct tls_ctx *t;

    t = ctx_alloc(o->min_version, o->ciphers, o->ciphersuites, err, errlen);
    if (!t)
        return NULL;
    t->server = true;
    t->session_cache = o->session_cache;
    t->session_timeout_s = o->session_timeout_s;
    t->tickets = o->tickets;
    t->ssl_ctx = server_ssl_ctx(t, o->cert_file, o->key_file, err, errlen);
    if (!t->ssl_ctx) {
        ctx_free_settings(t);
        return NULL;
    }
    return t;
}

struct tls_ctx *tls_client_new(const struct tls_client_opts *o, char *err,
                               size_t errlen)
{
    struct tls_ctx *t;

    t = ctx_alloc(o->min_version, NULL, NULL, err, errlen);
    if (!t)
        return NULL;
    t->insecure = o->insecure;
    t->keep_buffers = o->keep_buffers;
    t->on_session = o->on_session;
    t->ssl_ctx = client_ssl_ctx(t, o, err, errlen);
    if (!t->ssl_ctx) {
        ctx_free_settings(t);
        return NULL;
    }
    return t;
}

int tls_reload(struct tls_ctx *ctx, const char *cert_file, const char *key_file,
               char *err, size_t errlen)
{
    SSL_CTX *fresh, *old;

    if (!ctx->server) {
        set_err(err, errlen, "only a server context can be reloaded");
        return -EINVAL;
    }
    /* Built outside the lock: loading files is slow, and the settings it
     * reads never change after tls_server_new(). */
    fresh = server_ssl_ctx(ctx, cert_file, key_file, err, errlen);
    if (!fresh) {
        __atomic_fetch_add(&ctx->reload_failed, 1, __ATOMIC_RELAXED);
        return -EIO;
    }
    pthread_mutex_lock(&ctx->lock);
    old = ctx->ssl_ctx;
    ctx->ssl_ctx = fresh;
    pthread_mutex_unlock(&ctx->lock);
    __atomic_fetch_add(&ctx->reload_ok, 1, __ATOMIC_RELAXED);
    /* Drops our reference only: each open connection's SSL holds its own
     * and the old context goes with the last of them. */
    SSL_CTX_free(old);
    return 0;
}

void tls_reload_counts(const struct tls_ctx *ctx, uint64_t *ok,
                       uint64_t *failed)
{
    *ok = __atomic_load_n(&ctx->reload_ok, __ATOMIC_RELAXED);
    *failed = __atomic_load_n(&ctx->reload_failed, __ATOMIC_RELAXED);
}

void tls_ctx_free(struct tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    ctx_free_settings(ctx);
}

/* ------------------------------------------------------------------ */
/* Connections.                                                       */
/* ------------------------------------------------------------------ */

static bool is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
}

/* Client: SNI and the name the certificate must carry. */
static bool client_set_host(SSL *ssl, const char *host, bool verify)
{
    bool literal = is_ip_literal(host);
    X509_VERIFY_PARAM *vp;

    /* RFC 6066 3: SNI carries DNS names only, never an address. */
    if (!literal && SSL_set_tlsext_host_name(ssl, host) != 1)
        return false;
    if (!verify)
        return true;
    vp = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (literal)
        return X509_VERIFY_PARAM_set1_ip_asc(vp, host) == 1;
    return X509_VERIFY_PARAM_set1_host(vp, host, 0) == 1;
}

struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, bool server,
                              const char *host)
{
    struct tls_conn *tc;
    SSL_CTX *c;
    BIO *bio;

    if (server != ctx->server)
        return NULL;
    if (!server && !ctx->insecure && (!host || !*host))
        return NULL; /* verification without a name would prove nothing */
    tc = mem_calloc(MEM_TLS, 1, sizeof(*tc));
    if (!tc)
        return NULL;
    tc->fd = fd;
    if (server)
        tc->flags |= TC_SERVER;
    else if (ctx->keep_buffers)
        tc->flags |= TC_KEEP_BUFS;

    /* Take a reference under the lock so that a concurrent reload cannot
     * free the context between reading the pointer and SSL_new(). */
    pthread_mutex_lock(&ctx->lock);
    c = ctx->ssl_ctx;
    SSL_CTX_up_ref(c);
    pthread_mutex_unlock(&ctx->lock);
    ERR_clear_error();
    tc->ssl = SSL_new(c);
    SSL_CTX_free(c);
    if (!tc->ssl)
        goto err_free_tc;

    bio = BIO_new(__atomic_load_n(&bio_meth, __ATOMIC_ACQUIRE));
    if (!bio)
        goto err_free_ssl;
    BIO_set_data(bio, tc);
    BIO_set_init(bio, 1);
    SSL_set_bio(tc->ssl, bio, bio); /* the SSL owns the BIO now */

    if (server) {
        SSL_set_accept_state(tc->ssl);
    } else {
        SSL_set_connect_state(tc->ssl);
        if (host && !client_set_host(tc->ssl, host, !ctx->insecure))
            goto err_free_ssl;
    }
    return tc;

err_free_ssl:
    SSL_free(tc->ssl);
err_free_tc:
    ERR_clear_error();
    mem_free(MEM_TLS, tc);
    return NULL;
}

int tls_conn_set_session(struct tls_conn *tc, SSL_SESSION *session, void *arg)
{
    if ((tc->flags & TC_SERVER) || (tc->flags & TC_DONE) ||
        SSL_in_init(tc->ssl) != 1 || SSL_want(tc->ssl) != SSL_NOTHING)
        return -EINVAL;
    if (session && SSL_set_session(tc->ssl, session) != 1) {
        ERR_clear_error();
        return -EINVAL;
    }
    SSL_set_app_data(tc->ssl, arg);
    return 0;
}

void tls_conn_keep_buffers(struct tls_conn *tc)
{
    if ((tc->flags & (TC_SERVER | TC_KEEP_BUFS)) == TC_KEEP_BUFS)
        SSL_clear_mode(tc->ssl, SSL_MODE_RELEASE_BUFFERS);
}

bool tls_conn_release_buffers(struct tls_conn *tc)
{
    return SSL_free_buffers(tc->ssl) == 1;
}

bool tls_conn_resumed(const struct tls_conn *tc)
{
    return SSL_session_reused(tc->ssl) == 1;
}

bool tls_conn_sessions_later(const struct tls_conn *tc)
{
    return SSL_version(tc->ssl) >= TLS1_3_VERSION;
}

bool tls_session_usable(SSL_SESSION *session, uint64_t now_s)
{
    uint64_t t = (uint64_t)SSL_SESSION_get_time(session);
    uint64_t life = (uint64_t)SSL_SESSION_get_timeout(session);

    return SSL_SESSION_is_resumable(session) == 1 && now_s < t + life;
}

SSL_SESSION *tls_session_dup(SSL_SESSION *session)
{
    SSL_SESSION *d = SSL_SESSION_dup(session);

    if (!d)
        ERR_clear_error();
    return d;
}

void tls_session_free(SSL_SESSION *session)
{
    SSL_SESSION_free(session);
}

void tls_conn_free(struct tls_conn *tc)
{
    if (!tc)
        return;
    SSL_free(tc->ssl);
    mem_free(MEM_TLS, tc);
}

/* Turns an OpenSSL failure (ret from the call just made, on this thread)
 * into a result; records the reason and makes an end of stream sticky. */
static int fail(struct tls_conn *tc, int ret)
{
    int e = SSL_get_error(tc->ssl, ret);
    unsigned long code;
    long vr;

    switch (e) {
    case SSL_ERROR_WANT_READ:
        return TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        /* close_notify: the read side is over; writing is still allowed
         * (a half-closed peer may wait for our answers). */
        tc->end = TLS_CLOSED;
        return TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
        tc->flags |= TC_FATAL;
        ERR_clear_error();
        if (tc->flags & TC_EOF) {
            if (!tc->why)
                tc->why = "peer closed the connection";
            tc->end = TLS_EOF;
            return TLS_EOF;
        }
        if (!tc->why)
            tc->why = "socket error";
        tc->end = TLS_ERR;
        return TLS_ERR;
    default:
        break;
    }
    tc->flags |= TC_FATAL;
    code = ERR_peek_error();
    if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
        ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        if (!tc->why)
            tc->why = "peer closed the connection without close_notify";
        tc->end = TLS_EOF;
        return TLS_EOF;
    }
    vr = SSL_get_verify_result(tc->ssl);
    if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
        ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
        vr != X509_V_OK) {
        tc->why = X509_verify_cert_error_string(vr);
        tc->flags |= TC_VERIFY;
    } else
        tc->why = code ? err_text(code) : (tc->why ? tc->why : "tls error");
    ERR_clear_error();
    tc->end = TLS_ERR;
    return TLS_ERR;
}

/* Ends the connection before OpenSSL saw a byte. */
static int early_end(struct tls_conn *tc, int r, const char *why)
{
    tc->why = why;
    tc->flags |= TC_FATAL;
    tc->end = (int8_t)r;
    return r;
}

/* Whether the rest of a record can still come: not once the peer has
 * sent its FIN or reset the connection. Bytes still queued hide both
 * from recv() (it returns them first), while epoll keeps reporting the
 * hang-up: without this check a peer that resets after half a
 * ClientHello spun the loop until --handshake-timeout. */
static bool peer_gone(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    int err = 0;
    socklen_t elen = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err)
        return true;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return false; /* not TCP */
    return ti.tcpi_state == TCP_CLOSE_WAIT || ti.tcpi_state == TCP_CLOSE ||
           ti.tcpi_state == TCP_LAST_ACK || ti.tcpi_state == TCP_CLOSING;
}

/* Makes epoll report the socket readable only once `need` bytes are
 * queued (SO_RCVLOWAT), so that a partial first record neither spins a
 * level-triggered loop nor needs a buffer of ours. TCP only: AF_UNIX
 * accepts the option but its poll ignores it, and would spin. Returns
 * true if set. */
static bool set_lowat(struct tls_conn *tc, int need)
{
    int domain = 0;
    socklen_t len = sizeof(domain);

    if (getsockopt(tc->fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 ||
        (domain != AF_INET && domain != AF_INET6))
        return false;
    if (setsockopt(tc->fd, SOL_SOCKET, SO_RCVLOWAT, &need, sizeof(need)) != 0)
        return false;
    tc->flags |= TC_LOWAT;
    return true;
}

/* Server, before OpenSSL reads anything: looks at the first record
 * without consuming it.
 *
 * - An ASCII capital letter first is an HTTP method ("GET ", "POST",
 *   "PRI * HTTP/2.0"): no TLS record starts with one (content types are
 *   20..24, SSLv2 hellos have the top bit set). Peeking leaves the
 *   request for the caller's plaintext answer.
 * - A handshake record (0x16) is handed to OpenSSL only once all of it
 *   is in the socket (FIONREAD). OpenSSL sets up about 64 KiB for a
 *   handshake (read and write record buffers, the message buffer, a
 *   buffering BIO) the moment it reads a byte, and would hold it for as
 *   long as half a ClientHello sits there; waiting here costs the SSL
 *   object only (docs/tls.md has the figures).
 * - Anything else goes to OpenSSL, which rejects it. */
static int first_record(struct tls_conn *tc)
{
    unsigned char h[5];
    int need, avail = 0;
    ssize_t n;

    do {
        n = recv(tc->fd, h, sizeof(h), MSG_PEEK | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return TLS_WANT_READ;
        return early_end(tc, TLS_ERR, strerrordesc_np(errno));
    }
    if (n == 0)
        return early_end(tc, TLS_EOF,
                         "peer closed the connection before the handshake");
    if (h[0] >= 'A' && h[0] <= 'Z')
        return early_end(tc, TLS_ERR_PLAINTEXT,
                         "plain HTTP request on a TLS port");
    if (h[0] != 0x16)
        goto pass;
    need = n < 5 ? 5 : 5 + (h[3] << 8 | h[4]);
    if (need > 5 + TLS_RECORD_MAX + 2048)
        goto pass; /* not a valid record: OpenSSL says so */
    if (n == 5 && ioctl(tc->fd, FIONREAD, &avail) == 0 && avail >= need)
        goto pass;
    if (peer_gone(tc->fd))
        return early_end(tc, TLS_EOF,
                         "peer left in the middle of its first record");
    if (tc->flags & TC_LOWAT) {
        /* Raised already; the target grows from 5 once the header is
         * in and gives the record's length. */
        setsockopt(tc->fd, SOL_SOCKET, SO_RCVLOWAT, &need, sizeof(need));
        return TLS_WANT_READ;
    }
    if (set_lowat(tc, need))
        return TLS_WANT_READ;
    /* Not TCP: no way to wait without spinning; let OpenSSL read. */
pass:
    if (tc->flags & TC_LOWAT) {
        int one = 1;

        setsockopt(tc->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
        tc->flags &= ~TC_LOWAT;
    }
    tc->flags |= TC_SEEN;
    return TLS_OK;
}

int tls_handshake(struct tls_conn *tc)
{
    unsigned refused;
    int r;

    if (tc->flags & TC_DONE)
        return TLS_OK;
    if (tc->end)
        return tc->end;
    if ((tc->flags & (TC_SERVER | TC_SEEN)) == TC_SERVER) {
        r = first_record(tc);
        if (r != TLS_OK)
            return r;
    }
    refused = ossl_refused;
    ERR_clear_error();
    r = SSL_do_handshake(tc->ssl);
    if (r == 1) {
        tc->flags |= TC_DONE;
        return TLS_OK;
    }
    r = fail(tc, r);
    if (r == TLS_ERR && ossl_refused != refused) {
        /* OpenSSL names a failed allocation after what it broke: "decode
         * error", "internal error", or a verification failure ("EE
         * certificate key too weak") that is no fault of the peer's. */
        tc->why = "out of memory";
        tc->flags &= (uint8_t)~TC_VERIFY;
    }
    return r;
}

bool tls_handshake_done(const struct tls_conn *tc)
{
    return (tc->flags & TC_DONE) != 0;
}

ssize_t tls_read(struct tls_conn *tc, void *buf, size_t cap)
{
    size_t got = 0, n;
    int r;

    if (tc->end)
        return tc->end;
    if (!(tc->flags & TC_DONE)) {
        r = tls_handshake(tc);
        if (r != TLS_OK)
            return r;
    }
    while (got < cap) {
        ERR_clear_error();
        if (SSL_read_ex(tc->ssl, (char *)buf + got, cap - got, &n)) {
            got += n;
            /* A client that got a record shorter than the largest, with
             * nothing more inside OpenSSL, has most likely had all its
             * server sent for now (a response): it stops here instead of
             * paying a read() that says EAGAIN. If more is in the socket,
             * epoll (level-triggered) says so at once. Full records (a
             * download) go on being read in one go. */
            if (!(tc->flags & TC_SERVER) && n < TLS_RECORD_MAX &&
                !SSL_has_pending(tc->ssl))
                break;
            continue;
        }
        r = fail(tc, 0);
        /* An end after some bytes is kept (tc->end) for the next call. */
        return got ? (ssize_t)got : r;
    }
    return (ssize_t)got;
}

size_t tls_pending(const struct tls_conn *tc)
{
    int n;

    if (tc->flags & TC_FATAL)
        return 0;
    n = SSL_pending(tc->ssl);
    if (n > 0)
        return (size_t)n;
    /* A client reads ahead: whole records may wait undecrypted in
     * OpenSSL's buffer, where epoll cannot see them either. (Half a
     * record counts too: the read that follows says WANT_READ once.) */
    return !(tc->flags & TC_SERVER) && SSL_has_pending(tc->ssl) ? 1 : 0;
}

bool tls_partial_record(const struct tls_conn *tc)
{
    /* SSL_has_pending() also counts unprocessed bytes: the record layer's
     * buffer, which holds a record that is not whole yet. */
    return !(tc->flags & TC_FATAL) && SSL_pending(tc->ssl) == 0 &&
           SSL_has_pending(tc->ssl);
}

/* Gathers the next chunk of the stream at (i, off) in iov: up to one
 * record's worth. An iovec with a full record left is used in place;
 * otherwise bytes are copied into stage. Its length is always
 * min(TLS_RECORD_MAX, bytes left), whatever the iovec boundaries, which
 * is what lets a retry after WANT_WRITE offer the same record again.
 * Returns the length (0 at the end) and sets *p. */
static size_t gather(const struct iovec *iov, int n, int i, size_t off,
                     unsigned char *stage, const unsigned char **p)
{
    size_t len = 0, take;

    while (i < n && off >= iov[i].iov_len) {
        off = 0;
        i++;
    }
    if (i == n)
        return 0;
    if (iov[i].iov_len - off >= TLS_RECORD_MAX) {
        *p = (const unsigned char *)iov[i].iov_base + off;
        return TLS_RECORD_MAX;
    }
    for (; i < n && len < TLS_RECORD_MAX; i++, off = 0) {
        if (off >= iov[i].iov_len)
            continue;
        take = MIN(iov[i].iov_len - off, (size_t)TLS_RECORD_MAX - len);
        memcpy(stage + len, (const unsigned char *)iov[i].iov_base + off, take);
        len += take;
    }
    *p = stage;
    return len;
}

/* Moves the stream position (*i, *off) forward by w bytes. */
static void advance(const struct iovec *iov, int n, int *i, size_t *off,
                    size_t w)
{
    while (w > 0 && *i < n) {
        size_t left = iov[*i].iov_len - *off;

        if (w < left) {
            *off += w;
            return;
        }
        w -= left;
        *off = 0;
        (*i)++;
    }
}

ssize_t tls_writev(struct tls_conn *tc, const struct iovec *iov, int n)
{
    unsigned char stage[TLS_RECORD_MAX];
    const unsigned char *p = NULL;
    size_t done = 0, len, w, off = 0;
    int i = 0, r;

    if (tc->flags & TC_FATAL)
        return tc->end ? tc->end : TLS_ERR;
    if (tc->flags & TC_SHUT_SENT) {
        tc->why = "write after close_notify";
        return TLS_ERR;
    }
    if (!(tc->flags & TC_DONE)) {
        r = tls_handshake(tc);
        if (r != TLS_OK)
            return r;
    }
    while ((len = gather(iov, n, i, off, stage, &p)) > 0) {
        if (len < tc->wpend) {
            /* The caller broke the retry rule (tls.h): OpenSSL would
             * fail the connection with "bad write retry" anyway. */
            tc->why = "write retried with fewer bytes than pending";
            return TLS_ERR;
        }
        ERR_clear_error();
        if (SSL_write_ex(tc->ssl, p, len, &w)) {
            tc->wpend = 0;
            done += w;
            advance(iov, n, &i, &off, w);
            continue;
        }
        r = fail(tc, 0);
        if (r == TLS_WANT_WRITE || r == TLS_WANT_READ)
            tc->wpend = (uint16_t)len; /* encrypted, not all sent */
        return done ? (ssize_t)done : r;
    }
    return (ssize_t)done;
}

size_t tls_write_pending(const struct tls_conn *tc)
{
    return tc->wpend;
}

int tls_shutdown(struct tls_conn *tc)
{
    int r;

    if ((tc->flags & TC_FATAL) || !(tc->flags & TC_DONE))
        return TLS_OK; /* nothing may or need be sent */
    if (tc->flags & TC_SHUT_SENT)
        return TLS_OK;
    if (tc->wpend) {
        /* The alert would have to queue behind the half-sent record,
         * which only the caller's bytes can complete. */
        tc->why = "application data still half written";
        return TLS_ERR;
    }
    ERR_clear_error();
    /* 0: ours sent, the peer's not seen; 1: both. Either way we are done:
     * never a second call, which would wait to read the peer's. */
    r = SSL_shutdown(tc->ssl);
    if (r >= 0) {
        tc->flags |= TC_SHUT_SENT;
        return TLS_OK;
    }
    r = fail(tc, r);
    if (r == TLS_WANT_WRITE || r == TLS_WANT_READ)
        return TLS_WANT_WRITE;
    return TLS_ERR;
}

const char *tls_conn_error(const struct tls_conn *tc)
{
    return tc->why ? tc->why : "";
}

bool tls_conn_verify_failed(const struct tls_conn *tc)
{
    return tc->flags & TC_VERIFY;
}

const char *tls_conn_alpn(const struct tls_conn *tc, size_t *len)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;

    SSL_get0_alpn_selected(tc->ssl, &p, &n);
    *len = n;
    return (const char *)p;
}

const char *tls_conn_version(const struct tls_conn *tc)
{
    return SSL_get_version(tc->ssl);
}

const char *tls_conn_cipher(const struct tls_conn *tc)
{
    return SSL_get_cipher_name(tc->ssl);
}

struct ssl_st *tls_conn_ssl(const struct tls_conn *tc)
{
    return tc->ssl;
}
