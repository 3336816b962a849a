/*
 * api.c - the public functions of include/moor.h, as thin wrappers over
 * the internal modules. Nothing else in the library is visible outside it
 * (built with -fvisibility=hidden).
 */
#include <errno.h>
#include <string.h>

#include "moor.h"
#include "buf.h"
#include "mem.h"
#include "metrics.h"

MOOR_API const char *moor_version(void)
{
    return MOOR_VERSION;
}

MOOR_API int64_t moor_mem_live_bytes(void)
{
    return mem_live_bytes(MEM_ALL);
}

MOOR_API long moor_mem_json(char *out, unsigned long cap)
{
    struct sbuf b;
    long need;

    sbuf_init(&b, MEM_METRICS, 16u << 20);
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
