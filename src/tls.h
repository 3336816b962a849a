/*
 * tls.h - TLS over a non-blocking socket with OpenSSL, its memory
 * accounted under MEM_TLS (docs/principles.md, rules 3 and 7).
 *
 * Three things live here:
 *
 *  - tls_mem_init() routes every OpenSSL allocation through mem.c under
 *    the tls tag (with OpenSSL's own file:line as the trace site), and
 *    tls_mem_fini() hands OpenSSL's process-wide state back at exit, so
 *    that live bytes can reach zero.
 *  - struct tls_ctx: the settings shared by many connections (server:
 *    certificate chain and key, versions, ciphers, ALPN, SNI, session
 *    policy; client: trust store and verification). A server context can
 *    be reloaded (new certificate and key) while connections are open.
 *  - struct tls_conn: one connection's engine over a non-blocking fd. It
 *    has no buffer of its own: reads land in the caller's buffer (the
 *    loop's shared read buffer), writes come from the caller's iovecs
 *    (the queued messages). OpenSSL's record buffers exist only while a
 *    record is half read or half written (SSL_MODE_RELEASE_BUFFERS), so
 *    an idle connection holds none.
 *
 * Results. The engine calls return TLS_OK or a count of bytes, or one of
 * the negative enum tls_result values: TLS_WANT_READ / TLS_WANT_WRITE (the
 * socket would block: wait for that event and call again), TLS_CLOSED (the
 * peer sent close_notify), TLS_EOF (the peer closed TCP without one),
 * TLS_ERR (a protocol or socket error; tls_conn_error() says which) and
 * TLS_ERR_PLAINTEXT (server: the client spoke plain HTTP to the TLS port).
 * After TLS_CLOSED, TLS_EOF, TLS_ERR or TLS_ERR_PLAINTEXT the only calls
 * left to make are tls_shutdown() (harmless) and tls_conn_free().
 *
 * Threads. A tls_ctx may be shared by every loop: tls_conn_new() and
 * tls_reload() may run concurrently on different threads. A tls_conn
 * belongs to the thread that drives its fd.
 *
 * Must not: depend on conn.c or anything above the transport layer, buffer
 * plaintext of its own, block, or wait for the peer's close_notify.
 */
#ifndef MOOR_TLS_H
#define MOOR_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

struct ssl_st;         /* OpenSSL's SSL, for tls_conn_ssl() */
struct ssl_session_st; /* OpenSSL's SSL_SESSION */
struct tls_ctx;
struct tls_conn;

enum tls_result {
    TLS_OK = 0,
    TLS_WANT_READ = -1,     /* call again when the fd is readable */
    TLS_WANT_WRITE = -2,    /* call again when the fd is writable */
    TLS_CLOSED = -3,        /* the peer sent close_notify */
    TLS_EOF = -4,           /* the peer closed TCP without close_notify */
    TLS_ERR = -5,           /* protocol or socket error: tls_conn_error() */
    TLS_ERR_PLAINTEXT = -6, /* server: plain HTTP on the TLS port */
};

/* A short name for a result ("want_read", "closed", ...), for logs. */
const char *tls_result_name(int r);

/* Protocol versions, as on the wire. */
#define TLS_V1_2 0x0303
#define TLS_V1_3 0x0304
/* Parses "1.2" or "1.3" (what --tls-min-version takes). Returns TLS_V1_2,
 * TLS_V1_3, or -EINVAL. */
int tls_parse_version(const char *s);

/* The defaults: Mozilla's "intermediate" list for TLS 1.2 without the
 * DHE suites (ECDHE with AES-GCM or ChaCha20-Poly1305 only: forward
 * secrecy, AEAD, no CBC), and the three TLS 1.3 suites, AES-128 first. */
#define TLS_CIPHERS_DEFAULT                                                    \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"               \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"               \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_SUITES_DEFAULT                                                     \
    "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:"                     \
    "TLS_AES_256_GCM_SHA384"
#define TLS_GROUPS_DEFAULT "X25519:P-256:P-384"

/* ---- OpenSSL's memory ------------------------------------------------- */

/* Routes OpenSSL's malloc/realloc/free into mem.c under MEM_TLS
 * (CRYPTO_set_mem_functions), so /metrics and /debug/mem show TLS memory
 * and trace mode records OpenSSL's own call sites (e.g.
 * "tls ssl/ssl_lib.c:701"). It must run before anything in the process
 * calls OpenSSL, which in moor means first thing in main(): ws.c's SHA-1
 * and ws_client.c's RAND_bytes are OpenSSL calls too. Call it before any
 * thread is started.
 *
 * Idempotent. Returns 0 once OpenSSL's allocations are routed (also on a
 * second call), or -EBUSY if OpenSSL had already allocated: then nothing
 * changes, OpenSSL keeps using libc directly and its bytes are not
 * accounted (a warning is logged once). Never aborts. */
int tls_mem_init(void);
/* True if tls_mem_init() succeeded. */
bool tls_mem_routed(void);

/* Frees OpenSSL's process-wide state (OPENSSL_cleanup(): loaded
 * providers, algorithm caches, error strings, the main thread's error
 * queue and random generators) so that MEM_TLS live bytes return to zero
 * before the exit check. Every tls_ctx and tls_conn must be freed first
 * and every other thread that used OpenSSL must have exited (OpenSSL
 * frees a thread's state when the thread exits). OpenSSL cannot be used
 * again in this process afterwards, not even for SHA-1: call it last. */
void tls_mem_fini(void);

/* ---- contexts --------------------------------------------------------- */

struct tls_server_opts {
    const char *cert_file;    /* PEM: the leaf first, then intermediates */
    const char *key_file;     /* PEM, not encrypted (no passphrase prompt) */
    int min_version;          /* TLS_V1_2 (also when 0) or TLS_V1_3 */
    const char *ciphers;      /* TLS <= 1.2 list; NULL: TLS_CIPHERS_DEFAULT */
    const char *ciphersuites; /* TLS 1.3; NULL: TLS_SUITES_DEFAULT */
    /* Resumption. Both off by default: see docs/tls.md. session_cache is
     * the number of sessions the server-side cache may hold (0: no
     * cache); tickets issues one stateless ticket per handshake (TLS 1.3)
     * or on request (TLS 1.2). session_timeout_s bounds the lifetime of
     * either (0: 300 s). */
    uint32_t session_cache;
    uint32_t session_timeout_s;
    bool tickets;
};

/* Builds a server context: certificate chain and key (checked to match),
 * versions min_version..1.3, the cipher lists, groups X25519/P-256/P-384,
 * ALPN "http/1.1" (a client that offers ALPN without it gets the fatal
 * no_application_protocol alert, RFC 7301), SNI accepted for any name
 * (one certificate), renegotiation refused, SSL_MODE_RELEASE_BUFFERS and
 * partial writes. Allocates under MEM_TLS. Returns the context (caller
 * frees with tls_ctx_free()), or NULL with a message in err ("cert
 * /path: no start line", "out of memory", ...). */
struct tls_ctx *tls_server_new(const struct tls_server_opts *o, char *err,
                               size_t errlen);

struct tls_client_opts {
    const char *ca_file; /* PEM bundle to trust; NULL: the system store */
    int min_version;     /* TLS_V1_2 (also when 0) or TLS_V1_3 */
    const char *alpn;    /* one protocol to offer; NULL: "http/1.1"; "": none */
    bool insecure;       /* no certificate or host name check at all; only
                            ever from an explicit --insecure */
    /* Resumption: every session a server hands this client (after the
     * handshake in TLS 1.2, in NewSessionTicket messages read later in
     * TLS 1.3) goes to on_session(arg, session), arg being what
     * tls_conn_set_session() gave for that connection; the callee takes
     * the session (tls_session_free()). NULL: no session is kept. */
    void (*on_session)(void *arg, struct ssl_session_st *session);
    /* OpenSSL's record buffers are freed after every record
     * (SSL_MODE_RELEASE_BUFFERS) until the owner calls
     * tls_conn_keep_buffers(): from then on they stay while the
     * connection is busy, and the owner gives them back with
     * tls_conn_release_buffers() when it goes idle (a pooled client
     * connection: kept from its second request on, so a connection used
     * once, or waiting long for its first answer, holds none). */
    bool keep_buffers;
};

/* Builds a client context. Verification is on unless o->insecure: the
 * peer's chain must lead to ca_file, or without one to the system store
 * (the hashed directory, $SSL_CERT_DIR or OpenSSL's default, looked up
 * lazily so that only the CA certificates in use are loaded; if that
 * directory does not exist, OpenSSL's default file and directory). The
 * host name is checked per connection (tls_conn_new). Returns the context
 * or NULL with a message in err. */
struct tls_ctx *tls_client_new(const struct tls_client_opts *o, char *err,
                               size_t errlen);

/* Server only: loads cert_file and key_file into a new OpenSSL context
 * with the same settings and makes it the one new connections use. The
 * swap happens only if everything loads and the key matches; otherwise
 * the old certificate stays in service and err says why. Connections
 * already open keep the context they started with (OpenSSL counts its
 * references; the old one is freed with its last connection). May run on
 * any thread (a SIGHUP handler's loop) while others call tls_conn_new().
 * Returns 0, -EINVAL (not a server context) or -EIO (not loaded). */
int tls_reload(struct tls_ctx *ctx, const char *cert_file, const char *key_file,
               char *err, size_t errlen);

/* Reload outcomes so far, for metrics. */
void tls_reload_counts(const struct tls_ctx *ctx, uint64_t *ok,
                       uint64_t *failed);

/* Frees ctx (NULL is a no-op). Connections still open keep the OpenSSL
 * context alive until they are freed; ctx itself must not be used by a
 * later tls_conn_new(). */
void tls_ctx_free(struct tls_ctx *ctx);

/* ---- connections ------------------------------------------------------ */

/* Sets up TLS on fd, a connected non-blocking socket. Borrows fd (the
 * caller still closes it, after tls_conn_free()) and ctx (which must
 * outlive the call, not the connection). server must match the kind of
 * ctx. For a client, host is the server's name: sent as SNI (unless it is
 * an IP literal) and checked against the certificate (DNS name, or IP
 * address for a literal); it is required unless the context is insecure.
 * For a server, host is ignored (pass NULL). Nothing is sent or read
 * yet. Allocates under MEM_TLS. Returns the connection (caller frees with
 * tls_conn_free()), or NULL: out of memory, or misuse (a kind mismatch, a
 * verifying client without a host). */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, bool server,
                              const char *host);

/* Client, before the handshake: offers session (may be NULL; borrowed:
 * OpenSSL takes its own reference) for resumption, and makes arg the
 * argument of the context's on_session for this connection's new
 * sessions. A TLS 1.3 connection that finishes resuming marks the
 * session not resumable (OpenSSL's single use of tickets): offer a copy
 * (tls_session_dup) to keep the original good. Returns 0, or -EINVAL (a
 * server connection, or the handshake has begun). */
int tls_conn_set_session(struct tls_conn *tc, struct ssl_session_st *session,
                         void *arg);
/* After the handshake: true if the session was resumed. */
bool tls_conn_resumed(const struct tls_conn *tc);
/* After the handshake: true if the server's sessions come after it
 * (TLS 1.3 tickets), false if they came with it (TLS 1.2). */
bool tls_conn_sessions_later(const struct tls_conn *tc);
/* True if session may still be offered (not expired, resumable). */
bool tls_session_usable(struct ssl_session_st *session, uint64_t now_s);
/* From now on c's record buffers stay between records (a context with
 * keep_buffers; does nothing otherwise). */
void tls_conn_keep_buffers(struct tls_conn *tc);
/* Frees OpenSSL's record buffers now, if no record is half read or half
 * written (for a context with keep_buffers). Returns true if none is
 * held afterwards. */
bool tls_conn_release_buffers(struct tls_conn *tc);
/* Drops a session handed over by on_session (NULL is a no-op). */
void tls_session_free(struct ssl_session_st *session);
/* A copy of session (sharing its certificates), or NULL (no memory). */
struct ssl_session_st *tls_session_dup(struct ssl_session_st *session);
/* Frees tc and everything OpenSSL holds for it (no I/O; nothing is sent:
 * call tls_shutdown() first for a close_notify). NULL is a no-op. */
void tls_conn_free(struct tls_conn *tc);

/* Drives the handshake. Returns TLS_OK once it is complete (and on every
 * call after), TLS_WANT_READ / TLS_WANT_WRITE, TLS_EOF (the peer left
 * midway), TLS_ERR (bad certificate, no common version or cipher, bad
 * ALPN, a peer's alert, ...; tls_conn_error() says which), or, on a
 * server, TLS_ERR_PLAINTEXT if the first byte from the client is an
 * ASCII capital letter (an HTTP method: no TLS record starts with one).
 * That check only peeks (MSG_PEEK), so the plaintext request is still in
 * the socket: the caller may read it and answer "400 The plain HTTP
 * request was sent to HTTPS port" in plaintext, or just close.
 *
 * A server hands nothing to OpenSSL until the client's whole first record
 * (the ClientHello) is in the socket: until then it only peeks, and on a
 * TCP socket it raises SO_RCVLOWAT to the size of that record so that
 * epoll does not report the fd readable before they are there (set back
 * to 1 after; AF_UNIX sockets skip this wait). A silent client, or one
 * that sends half a ClientHello, so holds only the SSL object (~8.8 KB)
 * instead of OpenSSL's ~64 KB of handshake buffers, and this returns
 * TLS_WANT_READ for ever: the caller's handshake deadline ends it. Once
 * the ClientHello is in, a client that stalls mid-handshake does hold
 * those buffers until the deadline. */
int tls_handshake(struct tls_conn *tc);

/* True once the handshake is complete. */
bool tls_handshake_done(const struct tls_conn *tc);

/* Reads decrypted bytes into buf[0..cap) (cap > 0): record after record
 * until buf is full or the socket has no more. Returns the count (> 0),
 * or TLS_WANT_READ (nothing yet), TLS_WANT_WRITE (OpenSSL must send
 * something first, e.g. a TLS 1.3 KeyUpdate answer, and the socket is
 * full), TLS_CLOSED, TLS_EOF or TLS_ERR. If the stream ends or fails
 * after some bytes were read, the bytes are returned first and the end on
 * the next call. Runs the handshake first if it is not complete.
 *
 * When buf fills up, decrypted bytes may remain inside OpenSSL where
 * epoll cannot see them: check tls_pending() after processing, and read
 * again while it is non-zero. */
ssize_t tls_read(struct tls_conn *tc, void *buf, size_t cap);

/* Decrypted bytes held inside OpenSSL that tls_read() can return without
 * reading the socket (SSL_pending); for a client, which reads ahead,
 * non-zero also while undecrypted bytes wait in OpenSSL's buffer. */
size_t tls_pending(const struct tls_conn *tc);
/* True while part of a record has arrived and OpenSSL holds it, waiting
 * for the rest (nothing of it can be decrypted yet). */
bool tls_partial_record(const struct tls_conn *tc);

/* Encrypts and sends the bytes of iov[0..n) in order, as one stream.
 * Small iovecs are coalesced (copied into a 16 KiB stack buffer) so that
 * each record is full, up to 16 KiB of plaintext; an iovec with at least
 * 16 KiB left is encrypted in place. Returns the number of bytes taken
 * (> 0; fewer than offered means the socket filled up, as with writev),
 * or TLS_WANT_WRITE / TLS_WANT_READ when none could be taken, or TLS_ERR /
 * TLS_EOF (the peer is gone). n == 0 or no bytes returns 0.
 *
 * OpenSSL's rule (SSL_write, non-blocking): once a record has been
 * encrypted but the socket did not take all of it, the next write must
 * offer the same bytes again. So after a short count or a TLS_WANT_*, the
 * caller's next tls_writev() must begin with the bytes that followed the
 * count, unchanged, for at least tls_write_pending() bytes (a queue of
 * immutable messages that advances only by the count does this by
 * itself; a policy that drops queued messages must keep those bytes, as
 * it keeps a message partly written). The buffers may move
 * (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER); their contents must not. Offering
 * fewer bytes than tls_write_pending() is refused with TLS_ERR. */
ssize_t tls_writev(struct tls_conn *tc, const struct iovec *iov, int n);

/* Plaintext bytes that are inside an encrypted record OpenSSL could not
 * finish sending: the next tls_writev() must start with them. 0 when no
 * record is half sent. */
size_t tls_write_pending(const struct tls_conn *tc);

/* Sends close_notify without blocking and never waits for the peer's
 * (RFC 8446 6.1 allows closing at once). Returns TLS_OK when it is sent,
 * or when there is nothing to send (no completed handshake, a fatal
 * error already, or sent before); TLS_WANT_WRITE if the socket is full
 * (call again when writable, or give up and close: the caller's deadline
 * decides); TLS_ERR if it cannot be sent (a socket error, or application
 * data still half written: the caller should flush before shutting
 * down). The caller closes the fd afterwards in every case. */
int tls_shutdown(struct tls_conn *tc);

/* The reason for the last TLS_ERR / TLS_EOF / TLS_ERR_PLAINTEXT: a static
 * string such as "certificate verify failed: hostname mismatch",
 * "sslv3 alert handshake failure", "plain HTTP request on a TLS port" or
 * "Connection reset by peer". "" if there was none. */
const char *tls_conn_error(const struct tls_conn *tc);

/* After the handshake: the protocol chosen by ALPN (not NUL-terminated;
 * *len = 0 if none), the version ("TLSv1.3") and the cipher name, all
 * owned by OpenSSL and valid while tc is. */
/* The error was the peer's certificate failing verification (unknown
 * issuer, expired, wrong host name...): tls_conn_error() says which. */
bool tls_conn_verify_failed(const struct tls_conn *tc);
const char *tls_conn_alpn(const struct tls_conn *tc, size_t *len);
const char *tls_conn_version(const struct tls_conn *tc);
const char *tls_conn_cipher(const struct tls_conn *tc);

/* The OpenSSL object, for what this API does not cover (peer
 * certificate, tests). Borrowed; valid while tc is. */
struct ssl_st *tls_conn_ssl(const struct tls_conn *tc);

#endif
