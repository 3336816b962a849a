/*
 * api.c - the parts of include/moor.h that belong to no object:
 * versions, error codes, memory accounting, and the helpers the other
 * api_*.c files share (api.h): error reports, sized options, addresses.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "addr.h"
#include "buf.h"
#include "debug.h"
#include "mem.h"
#include "metrics.h"

#define STR_(x) #x
#define STR(x) STR_(x)

MOOR_API const char *moor_version(void)
{
    return STR(MOOR_VERSION_MAJOR) "." STR(MOOR_VERSION_MINOR) "." STR(
        MOOR_VERSION_PATCH);
}

MOOR_API const char *moor_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case MOOR_EADDR:
        return "bad address (expected host:port or [v6]:port)";
    case MOOR_EURL:
        return "bad URL (expected scheme://host[:port][/path])";
    case MOOR_ETLS:
        return "TLS failed (certificate, key or settings not usable, or the "
               "handshake failed)";
    case MOOR_ECLOSED:
        return "the connection is closing or closed";
    case MOOR_EOPTIONS:
        return "options struct not filled by its _init(), or from a newer "
               "moor.h than this libmoor";
    case MOOR_ESTATE:
        return "not allowed in this state";
    case MOOR_ERESOLVE:
        return "the host name did not resolve";
    case MOOR_ETLS_VERIFY:
        return "the server's certificate or name failed verification";
    case MOOR_EBADRESPONSE:
        return "the response broke HTTP/1.1";
    case MOOR_ETOOBIG:
        return "the response head or body is over its limit";
    case MOOR_EPEERCLOSED:
        return "the server closed the connection before the response was "
               "complete";
    case MOOR_EQUEUEFULL:
        return "too many requests wait for a connection to this host";
    case MOOR_ETIMEOUT_RESOLVE:
        return "timeout: name resolution";
    case MOOR_ETIMEOUT_CONNECT:
        return "timeout: TCP connect";
    case MOOR_ETIMEOUT_TLS:
        return "timeout: TLS handshake";
    case MOOR_ETIMEOUT_WRITE:
        return "timeout: the server took no request bytes";
    case MOOR_ETIMEOUT_HEAD:
        return "timeout: no response head";
    case MOOR_ETIMEOUT_BODY:
        return "timeout: no response body bytes";
    case MOOR_ETIMEOUT_TOTAL:
        return "timeout: the whole request";
    case MOOR_ETIMEOUT_WAIT:
        return "timeout: waiting for a connection";
    case MOOR_ETIMEOUT_PAUSE:
        return "timeout: the body stayed paused";
    }
    if (err < 0 && err > -4096) {
        /* glibc's table, without strerror()'s shared buffer. */
        const char *s = strerrordesc_np(-err);
        if (s)
            return s;
    }
    return "unknown error";
}

int api_fail(struct moor_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err) {
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    }
    return code;
}

void api_options_init(void *o, size_t size, const void *d, size_t d_size)
{
    if (!o || size < sizeof(size_t))
        return;
    memcpy(o, d, size < d_size ? size : d_size);
    memcpy(o, &size, sizeof(size_t));
}

void *api_calloc_at(enum mem_tag tag, size_t size, struct moor_error *err,
                    const char *file, int line)
{
    void *p = mem_calloc_at(tag, 1, size, file, line);

    if (!p)
        api_fail(err, -ENOMEM, "out of memory");
    return p;
}

int api_options(void *dst, size_t dst_size, const void *src,
                void (*init)(void *o, size_t size), const char *what,
                struct moor_error *err)
{
    size_t size;

    init(dst, dst_size);
    if (!src)
        return 0; /* NULL: the defaults */
    memcpy(&size, src, sizeof(size));
    if (size < sizeof(size_t) || size > dst_size)
        return api_fail(err, MOOR_EOPTIONS,
                        "%s: size %zu is not one this libmoor %s knows "
                        "(%zu or less): fill it with %s_init()",
                        what, size, moor_version(), dst_size, what);
    memcpy(dst, src, size);
    memcpy(dst, &dst_size, sizeof(size_t));
    return 0;
}

/* The rule of `moor serve --listen` (addr.h). */
int api_addr(const char *addr, char *host, size_t hostlen, uint16_t *port,
             const char *what, struct moor_error *err)
{
    char why[160];

    if (addr_parse(addr ? addr : "", host, hostlen, port) == 0)
        return 0;
    addr_explain(addr ? addr : "", why, sizeof(why));
    return api_fail(err, MOOR_EADDR, "%s \"%s\": %s", what, addr ? addr : "",
                    why);
}

char *api_strdup(const char *s)
{
    return s ? mem_strndup(MEM_CONFIG, s, strlen(s)) : NULL;
}

void api_strfree(char *s)
{
    mem_free(MEM_CONFIG, s);
}

/* ---- memory ------------------------------------------------------------ */

MOOR_API int64_t moor_mem_live_bytes(void)
{
    return mem_live_bytes(MEM_ALL);
}

MOOR_API long moor_mem_json(char *out, size_t cap)
{
    struct sbuf b;
    long need;

    if (cap && !out)
        return -EINVAL;
    sbuf_init(&b, MEM_METRICS, DEBUG_PAGE_MAX);
    if (metrics_debug_mem(&b) < 0) {
        sbuf_fini(&b);
        return -ENOMEM;
    }
    need = (long)b.len;
    if (cap) {
        size_t n = b.len < cap - 1 ? b.len : cap - 1;
        memcpy(out, b.data, n);
        out[n] = '\0';
    }
    sbuf_fini(&b);
    return need;
}

MOOR_API void moor_mem_set_limit(uint64_t bytes)
{
    mem_set_budget((size_t)bytes, 90);
}
