/*
 * mem.c - the allocation front: tags, per-thread counters, budget, trace,
 * fail-at-N (docs/principles.md, rule 7).
 *
 * What it does. Every allocation in moor comes through here with a tag.
 * Sizes are the allocator's usable size (malloc_usable_size), so the
 * counters show what the heap really holds. Counters live in a per-thread
 * block (one cache-line-aligned struct per thread) that only its thread
 * writes in the common case; mem_stats() sums the blocks of every thread
 * that ever allocated, with relaxed atomic loads. Updates are relaxed
 * atomic read-modify-writes, so a block may also be written by a second
 * thread (a thread that adopted it, see below) without losing counts.
 *
 * Invariants.
 * - A block freed on another thread than the one that allocated it makes
 *   the freeing thread's counters go negative; the sum over threads is
 *   still exact. Only sums are meaningful.
 * - The registry of per-thread blocks only grows, and its blocks are never
 *   freed: counts made by a thread that has exited must still be in the
 *   sum. To keep it bounded under thread churn, a thread's block is marked
 *   retired when the thread exits (pthread key destructor) and the next
 *   new thread adopts it instead of allocating another one. The blocks are
 *   allocated with libc directly and deliberately not counted.
 * - Trace mode keeps a side table (pointer -> tag, site, size), also
 *   allocated with libc and not counted, under one mutex: it is a debug
 *   mode and simplicity beats speed there. An entry is removed before its
 *   block is handed back to libc, and realloc holds the lock across the
 *   call, so an address reused by another thread is never confused with
 *   the old block.
 *
 * - Giving memory back (mem_trim_*): the decision is a pure function of
 *   the caller's struct mem_trim and two readings, so each event loop
 *   keeps its own state; only malloc_trim() itself is process-wide. Its
 *   counters sit in the per-thread blocks beside the tag counters.
 *
 * What it must not do. Abort on exhaustion (callers get NULL and handle
 * it), call into any other moor module (this is the bottom layer), or let
 * any file other than this one call malloc/calloc/realloc/free.
 */
#include "mem.h"

#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <sys/mman.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "buf.h"
#include "util.h"

#define CACHE_LINE 64

/* ------------------------------------------------------------------ */
/* Per-thread counters and their registry.                            */
/* ------------------------------------------------------------------ */

struct mem_thread {
    struct mem_tag_stats tags[MEM_TAG_COUNT];
    struct mem_trim_stats trim; /* mem_trim_check() and mem_trim_now() */
    struct mem_thread *next;    /* registry link, written under reg_lock */
    int retired;                /* atomic: owner thread has exited */
} __attribute__((aligned(CACHE_LINE)));

/* The registry. `fallback` is always on it: a thread whose block cannot be
 * allocated shares it (the atomic adds keep that correct), so accounting
 * never fails. */
static struct mem_thread fallback;
static struct mem_thread *reg_head = &fallback;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
static pthread_key_t reg_key;
static int reg_key_ok;

static _Thread_local struct mem_thread *self;

/* Budget: process-wide settings written once at start-up (and by tests),
 * read with relaxed atomics. */
static size_t budget_bytes;
static unsigned budget_low_pct = 80;

/* Trace mode switch; see the trace section below. */
static int trace_on;
static void trace_check_env(void);

static void thread_exit(void *arg)
{
    struct mem_thread *t = arg;

    __atomic_store_n(&t->retired, 1, __ATOMIC_RELEASE);
}

static void reg_init(void)
{
    reg_key_ok = pthread_key_create(&reg_key, thread_exit) == 0;
    trace_check_env();
}

/* Slow path of the first allocation on a thread: adopt a retired block or
 * allocate a new one. Never fails; falls back to the shared block. */
static struct mem_thread *thread_register(void)
{
    struct mem_thread *t;
    void *p = NULL;

    pthread_once(&reg_once, reg_init);

    pthread_mutex_lock(&reg_lock);
    for (t = reg_head; t; t = t->next) {
        if (t != &fallback && __atomic_load_n(&t->retired, __ATOMIC_ACQUIRE)) {
            __atomic_store_n(&t->retired, 0, __ATOMIC_RELAXED);
            goto out_unlock;
        }
    }
    /* Deliberately uncounted and never freed: see the file comment. */
    if (posix_memalign(&p, CACHE_LINE, sizeof(*t)) != 0) {
        t = &fallback;
        goto out_unlock;
    }
    t = memset(p, 0, sizeof(*t));
    t->next = reg_head;
    __atomic_store_n(&reg_head, t, __ATOMIC_RELEASE);

out_unlock:
    pthread_mutex_unlock(&reg_lock);
    /* The fallback block is shared and never retired. A failed setspecific
     * only means this block is not recycled when the thread exits. */
    if (t != &fallback && reg_key_ok)
        pthread_setspecific(reg_key, t);
    return t;
}

static inline struct mem_tag_stats *counters(enum mem_tag tag)
{
    if (unlikely(!self))
        self = thread_register();
    return &self->tags[tag];
}

static inline void count_alloc(enum mem_tag tag, size_t sz)
{
    struct mem_tag_stats *s = counters(tag);

    __atomic_fetch_add(&s->live_bytes, (int64_t)sz, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->live_count, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->total_allocs, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->total_bytes, (uint64_t)sz, __ATOMIC_RELAXED);
}

static inline void count_free(enum mem_tag tag, size_t sz)
{
    struct mem_tag_stats *s = counters(tag);

    __atomic_fetch_sub(&s->live_bytes, (int64_t)sz, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&s->live_count, 1, __ATOMIC_RELAXED);
}

static inline void count_failed(enum mem_tag tag)
{
    __atomic_fetch_add(&counters(tag)->failed, 1, __ATOMIC_RELAXED);
}

/* A tag out of range is a caller bug; in a release build it is counted as
 * misc rather than indexing past the counters. */
static inline enum mem_tag tag_check(enum mem_tag tag)
{
    assert((unsigned)tag < MEM_TAG_COUNT);
    return (unsigned)tag < MEM_TAG_COUNT ? tag : MEM_MISC;
}

const char *mem_tag_name(enum mem_tag tag)
{
    static const char *const names[MEM_TAG_COUNT] = {
        [MEM_MISC] = "misc",       [MEM_LOOP] = "loop",
        [MEM_READBUF] = "readbuf", [MEM_CONN] = "conn",
        [MEM_CARRY] = "carry",     [MEM_QUEUE] = "queue",
        [MEM_MSG] = "msg",         [MEM_HTTP] = "http",
        [MEM_TLS] = "tls",         [MEM_CHANNEL] = "channel",
        [MEM_CONFIG] = "config",   [MEM_METRICS] = "metrics",
        [MEM_DNS] = "dns",         [MEM_HTTPC] = "http_client",
        [MEM_AUTH] = "auth",       [MEM_INFLUX] = "influx",
        [MEM_HISTORY] = "history",
    };

    if ((unsigned)tag >= MEM_TAG_COUNT || !names[tag])
        return "unknown";
    return names[tag];
}

void mem_stats(enum mem_tag tag, struct mem_tag_stats *out)
{
    unsigned lo = (unsigned)tag, hi = (unsigned)tag + 1, i;
    struct mem_thread *t;

    memset(out, 0, sizeof(*out));
    if (tag == MEM_ALL) {
        lo = 0;
        hi = MEM_TAG_COUNT;
    } else if ((unsigned)tag > MEM_TAG_COUNT) {
        return;
    }
    /* The list is only ever prepended to, and links are never changed once
     * published, so it can be walked without the lock. */
    for (t = __atomic_load_n(&reg_head, __ATOMIC_ACQUIRE); t; t = t->next) {
        for (i = lo; i < hi; i++) {
            const struct mem_tag_stats *s = &t->tags[i];

            out->live_bytes +=
                __atomic_load_n(&s->live_bytes, __ATOMIC_RELAXED);
            out->live_count +=
                __atomic_load_n(&s->live_count, __ATOMIC_RELAXED);
            out->total_allocs +=
                __atomic_load_n(&s->total_allocs, __ATOMIC_RELAXED);
            out->total_bytes +=
                __atomic_load_n(&s->total_bytes, __ATOMIC_RELAXED);
            out->failed += __atomic_load_n(&s->failed, __ATOMIC_RELAXED);
        }
    }
}

int64_t mem_live_bytes(enum mem_tag tag)
{
    struct mem_thread *t;
    int64_t sum = 0;
    unsigned i;

    for (t = __atomic_load_n(&reg_head, __ATOMIC_ACQUIRE); t; t = t->next) {
        for (i = 0; i < MEM_TAG_COUNT; i++) {
            if (tag != MEM_ALL && i != (unsigned)tag)
                continue;
            sum += __atomic_load_n(&t->tags[i].live_bytes, __ATOMIC_RELAXED);
        }
    }
    return sum;
}

/* ------------------------------------------------------------------ */
/* Budget.                                                            */
/* ------------------------------------------------------------------ */

void mem_set_budget(size_t bytes, unsigned low_water_pct)
{
    if (low_water_pct > 100)
        low_water_pct = 100;
    __atomic_store_n(&budget_low_pct, low_water_pct, __ATOMIC_RELAXED);
    __atomic_store_n(&budget_bytes, bytes, __ATOMIC_RELAXED);
}

size_t mem_budget(void)
{
    return __atomic_load_n(&budget_bytes, __ATOMIC_RELAXED);
}

/* Both predicates sum every thread's counters: O(threads * tags) loads.
 * That is cheap next to a read syscall, which is where they are asked. */
bool mem_over_budget(void)
{
    size_t b = mem_budget();

    return b != 0 && mem_live_bytes(MEM_ALL) > (int64_t)b;
}

bool mem_under_low_water(void)
{
    size_t b = mem_budget();
    unsigned pct = __atomic_load_n(&budget_low_pct, __ATOMIC_RELAXED);

    if (b == 0)
        return true;
    return mem_live_bytes(MEM_ALL) <=
           (int64_t)(b / 100 * pct + b % 100 * pct / 100);
}

/* ------------------------------------------------------------------ */
/* Fail-at-N. A test hook only: production code never arms it. It is   */
/* thread-local so that a test is deterministic however many threads   */
/* allocate, and two loops never share a countdown.                    */
/* ------------------------------------------------------------------ */

static _Thread_local uint64_t fail_countdown;
static _Thread_local uint64_t fail_seen;
static _Thread_local bool fail_hit;

uint64_t mem_fail_at(uint64_t n)
{
    uint64_t seen = fail_seen;

    fail_countdown = n;
    fail_seen = 0;
    fail_hit = false;
    return seen;
}

bool mem_fail_fired(void)
{
    return fail_hit;
}

/* Counts one allocation attempt; true if this one must fail. */
static inline bool fail_now(void)
{
    fail_seen++;
    if (likely(fail_countdown == 0))
        return false;
    if (--fail_countdown != 0)
        return false;
    fail_hit = true;
    return true;
}

/* ------------------------------------------------------------------ */
/* Trace side table: open addressing, linear probing, backward-shift   */
/* deletion, keyed by block address. libc-allocated and uncounted.     */
/* ------------------------------------------------------------------ */

struct trace_ent {
    uintptr_t key; /* 0 = empty slot */
    const char *file;
    size_t size;
    int line;
    enum mem_tag tag;
};

static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;
static struct trace_ent *trace_tab;
static size_t trace_cap; /* power of two, or 0 */
static size_t trace_used;
static uint64_t trace_dropped; /* entries not recorded: table full */

static void trace_check_env(void)
{
    const char *v = getenv("MOOR_MEM_TRACE");

    if (v && strcmp(v, "1") == 0)
        mem_trace_enable();
}

void mem_trace_enable(void)
{
    __atomic_store_n(&trace_on, 1, __ATOMIC_RELEASE);
}

bool mem_trace_enabled(void)
{
    /* The environment is looked at once, by the first allocating thread;
     * asking before any allocation should see it too. */
    pthread_once(&reg_once, reg_init);
    return __atomic_load_n(&trace_on, __ATOMIC_ACQUIRE) != 0;
}

static inline bool tracing(void)
{
    return __atomic_load_n(&trace_on, __ATOMIC_RELAXED) != 0;
}

static inline size_t trace_slot(uintptr_t key, size_t cap)
{
    uint64_t h = (uint64_t)(key >> 4) * 0x9e3779b97f4a7c15ull;

    return (size_t)(h >> 32) & (cap - 1);
}

/* Called with trace_lock held. Returns false if the table cannot grow. */
static bool trace_grow(void)
{
    size_t ncap = trace_cap ? trace_cap * 2 : 1024;
    struct trace_ent *ntab = calloc(ncap, sizeof(*ntab));
    size_t i, j;

    if (!ntab)
        return false;
    for (i = 0; i < trace_cap; i++) {
        if (!trace_tab[i].key)
            continue;
        j = trace_slot(trace_tab[i].key, ncap);
        while (ntab[j].key)
            j = (j + 1) & (ncap - 1);
        ntab[j] = trace_tab[i];
    }
    free(trace_tab);
    trace_tab = ntab;
    trace_cap = ncap;
    return true;
}

/* Called with trace_lock held. */
static void trace_put(void *p, enum mem_tag tag, size_t size, const char *file,
                      int line)
{
    size_t i;

    /* Keep the load under one half; if growing fails, carry on until the
     * table is nearly full, then drop entries (counted) rather than fail
     * the allocation itself. */
    if ((trace_used + 1) * 2 > trace_cap && !trace_grow() &&
        trace_used + 1 >= trace_cap) {
        trace_dropped++;
        return;
    }
    i = trace_slot((uintptr_t)p, trace_cap);
    while (trace_tab[i].key && trace_tab[i].key != (uintptr_t)p)
        i = (i + 1) & (trace_cap - 1);
    if (!trace_tab[i].key)
        trace_used++;
    trace_tab[i] = (struct trace_ent){
        .key = (uintptr_t)p,
        .file = file,
        .size = size,
        .line = line,
        .tag = tag,
    };
}

/* Called with trace_lock held. Removes p's entry and returns it (key 0 if
 * p was not found: blocks allocated before tracing was turned on are not
 * in the table). */
static struct trace_ent trace_del(void *p, enum mem_tag tag)
{
    struct trace_ent gone = {0};
    size_t i, j, home;

    if (!trace_cap)
        return gone;
    i = trace_slot((uintptr_t)p, trace_cap);
    while (trace_tab[i].key != (uintptr_t)p) {
        if (!trace_tab[i].key)
            return gone;
        i = (i + 1) & (trace_cap - 1);
    }
    gone = trace_tab[i];
    /* A free under another tag than the allocation is a caller bug that
     * would skew the per-tag counters; trace mode is where it shows. */
    assert(gone.tag == tag);
    (void)tag;
    trace_used--;
    /* Backward-shift deletion: pull later members of the probe run into
     * the hole so that lookups never stop early. */
    for (j = (i + 1) & (trace_cap - 1); trace_tab[j].key;
         j = (j + 1) & (trace_cap - 1)) {
        home = trace_slot(trace_tab[j].key, trace_cap);
        /* Move j into i unless home lies cyclically in (i, j]. */
        if (((j - home) & (trace_cap - 1)) >= ((j - i) & (trace_cap - 1))) {
            trace_tab[i] = trace_tab[j];
            i = j;
        }
    }
    trace_tab[i].key = 0;
    return gone;
}

static void trace_add(void *p, enum mem_tag tag, size_t size, const char *file,
                      int line)
{
    pthread_mutex_lock(&trace_lock);
    trace_put(p, tag, size, file, line);
    pthread_mutex_unlock(&trace_lock);
}

static void trace_remove(void *p, enum mem_tag tag)
{
    pthread_mutex_lock(&trace_lock);
    trace_del(p, tag);
    pthread_mutex_unlock(&trace_lock);
}

/* ------------------------------------------------------------------ */
/* Allocators.                                                        */
/* ------------------------------------------------------------------ */

/* Accounts a block libc just returned (p may be NULL: a failure). */
static void *took(enum mem_tag tag, void *p, const char *file, int line)
{
    size_t sz;

    if (unlikely(!p)) {
        count_failed(tag);
        return NULL;
    }
    sz = malloc_usable_size(p);
    count_alloc(tag, sz);
    if (unlikely(tracing()))
        trace_add(p, tag, sz, file, line);
    return p;
}

void *mem_alloc_at(enum mem_tag tag, size_t n, const char *file, int line)
{
    tag = tag_check(tag);
    if (unlikely(fail_now()))
        return took(tag, NULL, file, line);
    return took(tag, malloc(n ? n : 1), file, line);
}

void *mem_calloc_at(enum mem_tag tag, size_t n, size_t sz, const char *file,
                    int line)
{
    size_t total;

    tag = tag_check(tag);
    if (unlikely(fail_now()) || __builtin_mul_overflow(n, sz, &total))
        return took(tag, NULL, file, line);
    return took(tag, calloc(total ? n : 1, total ? sz : 1), file, line);
}

char *mem_strndup_at(enum mem_tag tag, const char *s, size_t n,
                     const char *file, int line)
{
    size_t len = strnlen(s, n);
    char *d = mem_alloc_at(tag, len + 1, file, line);

    if (!d)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

/* A realloc of a live block counts as one more allocation of its new size
 * (total_allocs, total_bytes) and moves live_bytes by the difference;
 * live_count does not change. */
void *mem_realloc_at(enum mem_tag tag, void *p, size_t n, const char *file,
                     int line)
{
    size_t old_sz, new_sz;
    struct mem_tag_stats *s;
    struct trace_ent old = {0};
    bool tr;
    void *q;

    if (!p)
        return mem_alloc_at(tag, n, file, line);
    tag = tag_check(tag);
    if (unlikely(fail_now()))
        return took(tag, NULL, file, line);

    old_sz = malloc_usable_size(p);
    tr = tracing();
    /* The entry is removed before realloc() and the lock held across it:
     * once libc has released p, another thread may be handed the same
     * address, and its entry must not be the one we delete. */
    if (unlikely(tr)) {
        pthread_mutex_lock(&trace_lock);
        old = trace_del(p, tag);
    }
    q = realloc(p, n ? n : 1);
    if (!q) {
        if (unlikely(tr)) {
            if (old.key)
                trace_put(p, tag, old.size, old.file, old.line);
            pthread_mutex_unlock(&trace_lock);
        }
        count_failed(tag);
        return NULL;
    }
    new_sz = malloc_usable_size(q);
    if (unlikely(tr)) {
        trace_put(q, tag, new_sz, file, line);
        pthread_mutex_unlock(&trace_lock);
    }

    s = counters(tag);
    __atomic_fetch_add(&s->live_bytes, (int64_t)new_sz - (int64_t)old_sz,
                       __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->total_allocs, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->total_bytes, (uint64_t)new_sz, __ATOMIC_RELAXED);
    return q;
}

void mem_free(enum mem_tag tag, void *p)
{
    size_t sz;

    if (!p)
        return;
    tag = tag_check(tag);
    sz = malloc_usable_size(p);
    /* Removed before free(): see the realloc comment. */
    if (unlikely(tracing()))
        trace_remove(p, tag);
    free(p);
    count_free(tag, sz);
}

/* Slabs: MEM_SLAB_SIZE bytes aligned to MEM_SLAB_SIZE, from mmap so that
 * long-lived pooled objects never sit between short-lived heap blocks
 * (which would pin heap pages), and untouched pages cost no RSS. An
 * aligned region is cut from a mapping twice the size. */
void *mem_slab_alloc_at(enum mem_tag tag, const char *file, int line)
{
    size_t sz = MEM_SLAB_SIZE;
    uintptr_t base, aligned;
    void *p;

    tag = tag_check(tag);
    if (unlikely(fail_now())) {
        count_failed(tag);
        return NULL;
    }
    p = mmap(NULL, 2 * sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
             -1, 0);
    if (p == MAP_FAILED) {
        count_failed(tag);
        return NULL;
    }
    base = (uintptr_t)p;
    aligned = (base + sz - 1) & ~(uintptr_t)(sz - 1);
    if (aligned > base)
        munmap(p, aligned - base);
    if (base + 2 * sz > aligned + sz)
        munmap((void *)(aligned + sz), base + 2 * sz - (aligned + sz));
    count_alloc(tag, sz);
    if (unlikely(tracing()))
        trace_add((void *)aligned, tag, sz, file, line);
    return (void *)aligned;
}

void mem_slab_free(enum mem_tag tag, void *slab)
{
    if (!slab)
        return;
    tag = tag_check(tag);
    if (unlikely(tracing()))
        trace_remove(slab, tag);
    munmap(slab, MEM_SLAB_SIZE);
    count_free(tag, MEM_SLAB_SIZE);
}

/* ------------------------------------------------------------------ */
/* Trace dump.                                                        */
/* ------------------------------------------------------------------ */

struct trace_site {
    const char *file;
    int line;
    enum mem_tag tag;
    uint64_t bytes;
    uint64_t count;
};

static int site_key_cmp(const void *a, const void *b)
{
    const struct trace_site *x = a, *y = b;
    int c;

    if (x->tag != y->tag)
        return x->tag < y->tag ? -1 : 1;
    c = strcmp(x->file, y->file);
    if (c)
        return c;
    return (x->line > y->line) - (x->line < y->line);
}

static int site_bytes_cmp(const void *a, const void *b)
{
    const struct trace_site *x = a, *y = b;

    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    return site_key_cmp(a, b);
}

/* Snapshots the live set grouped by (tag, file, line), largest first.
 * Returns the number of sites in *out (libc-allocated, caller frees with
 * free()), or -1 if the snapshot could not be allocated. *blocks gets the
 * number of live blocks. */
static ssize_t trace_snapshot(struct trace_site **out, size_t *blocks)
{
    struct trace_site *v = NULL;
    size_t i, n = 0, k;

    pthread_mutex_lock(&trace_lock);
    if (trace_used) {
        v = malloc(trace_used * sizeof(*v));
        if (!v) {
            pthread_mutex_unlock(&trace_lock);
            return -1;
        }
    }
    for (i = 0; i < trace_cap; i++) {
        const struct trace_ent *e = &trace_tab[i];

        if (!e->key)
            continue;
        v[n++] = (struct trace_site){
            .file = e->file ? e->file : "?",
            .line = e->line,
            .tag = e->tag,
            .bytes = e->size,
            .count = 1,
        };
    }
    pthread_mutex_unlock(&trace_lock);

    *blocks = n;
    if (n == 0) {
        free(v);
        *out = NULL;
        return 0;
    }
    qsort(v, n, sizeof(*v), site_key_cmp);
    for (i = 1, k = 0; i < n; i++) {
        if (site_key_cmp(&v[k], &v[i]) == 0) {
            v[k].bytes += v[i].bytes;
            v[k].count += v[i].count;
        } else {
            v[++k] = v[i];
        }
    }
    k++;
    qsort(v, k, sizeof(*v), site_bytes_cmp);
    *out = v;
    return (ssize_t)k;
}

size_t mem_trace_dump(FILE *out)
{
    struct trace_site *v;
    uint64_t bytes = 0;
    size_t blocks = 0;
    ssize_t n, i;

    n = trace_snapshot(&v, &blocks);
    if (n < 0) {
        fprintf(out, "trace dump failed: out of memory\n");
        return 0;
    }
    for (i = 0; i < n; i++) {
        fprintf(out, "%s %s:%d %" PRIu64 " %" PRIu64 "\n",
                mem_tag_name(v[i].tag), v[i].file, v[i].line, v[i].bytes,
                v[i].count);
        bytes += v[i].bytes;
    }
    fprintf(out, "total %" PRIu64 " %zu\n", bytes, blocks);
    free(v);
    return blocks;
}

size_t mem_trace_dump_json(FILE *out)
{
    struct trace_site *v;
    size_t blocks = 0;
    ssize_t n, i;

    n = trace_snapshot(&v, &blocks);
    fputc('[', out);
    for (i = 0; i < n; i++) {
        fprintf(out, "%s{\"tag\":\"%s\",\"site\":\"", i ? "," : "",
                mem_tag_name(v[i].tag));
        /* File names come from __FILE__ and are tame, but are escaped
         * anyway so the output is always valid JSON. */
        json_fput_escaped(out, v[i].file, strlen(v[i].file));
        fprintf(out, ":%d\",\"bytes\":%" PRIu64 ",\"count\":%" PRIu64 "}",
                v[i].line, v[i].bytes, v[i].count);
    }
    fputc(']', out);
    free(v);
    return n < 0 ? 0 : (size_t)n;
}

/* ------------------------------------------------------------------ */
/* Process facts from /proc/self.                                     */
/* ------------------------------------------------------------------ */

int64_t mem_process_rss(void)
{
    char line[256];
    long long kb = -1;
    FILE *f = fopen("/proc/self/status", "re");

    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            if (sscanf(line + 6, "%lld", &kb) != 1)
                kb = -1;
            break;
        }
    }
    fclose(f);
    return kb < 0 ? -1 : (int64_t)kb * 1024;
}

int64_t mem_process_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int64_t n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    /* The directory stream itself held one fd while we counted. */
    return n > 0 ? n - 1 : 0;
}

/* ------------------------------------------------------------------ */
/* Giving memory back: see mem.h for the policy.                       */
/* ------------------------------------------------------------------ */

int64_t mem_process_rss_anon(void)
{
    /* "size resident shared text lib data dt", in pages; shared is the
     * file-backed and shmem part of resident. Parsed by hand: this runs
     * every check, and sscanf would fault in a good part of libc's scanf
     * the first time. */
    char buf[128], *p = buf;
    unsigned long long v[3] = {0, 0, 0};
    long page = sysconf(_SC_PAGESIZE);
    ssize_t n;
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0 || page <= 0)
        return -1;
    buf[n] = '\0';
    for (int i = 0; i < 3; i++) {
        if (*p < '0' || *p > '9')
            return -1;
        for (; *p >= '0' && *p <= '9'; p++)
            v[i] = v[i] * 10 + (unsigned)(*p - '0');
        if (*p == ' ')
            p++;
    }
    if (v[2] > v[1])
        return -1;
    return (int64_t)(v[1] - v[2]) * page;
}

void mem_trim_init(struct mem_trim *t, size_t threshold)
{
    memset(t, 0, sizeof(*t));
    t->threshold = threshold > INT64_MAX ? INT64_MAX : (int64_t)threshold;
    t->backoff = 1;
}

bool mem_trim_due(struct mem_trim *t, int64_t rss, int64_t live)
{
    int64_t gap = rss - live, prev_live = t->last_live, prev_rss = t->last_rss;

    if (rss < 0 || live < 0)
        return false;
    t->last_live = live;
    t->last_rss = rss;
    if (!t->primed) {
        t->primed = true;
        t->floor = gap;
        return false;
    }
    if (gap < t->floor)
        t->floor = gap;
    if (t->threshold <= 0)
        return false;
    if (gap - t->floor <= t->threshold) {
        /* Nothing held: whatever made the trims back off is gone. */
        t->backoff = 1;
        t->wait = 0;
        return false;
    }
    if (t->wait > 0) {
        t->wait--;
        return false;
    }
    /* Still taking memory on, accounted or not: a burst in progress. */
    if (live - prev_live > t->threshold / 4 ||
        rss - prev_rss > t->threshold / 4)
        return false;
    return true;
}

bool mem_trim_done(struct mem_trim *t, int64_t rss, int64_t live)
{
    if (rss >= 0 && live >= 0) {
        int64_t back = t->last_rss - rss; /* last_rss: the check's */

        if (!t->primed || rss - live < t->floor)
            t->floor = rss - live;
        t->primed = true;
        t->last_live = live;
        t->last_rss = rss;
        if (back >= t->threshold / 2) {
            t->backoff = 1;
            t->wait = 0;
            return false;
        }
    }
    /* Little came back: what is held is live, or not heap. Retry later,
     * later each time, rather than every check (or never). */
    if (t->backoff < MEM_TRIM_BACKOFF_MAX)
        t->backoff *= 2;
    t->wait = t->backoff - 1;
    return true;
}

int64_t mem_trim_now(void)
{
    struct mem_trim_stats *s;
    int64_t before, after;
    uint64_t t0, ns;

    before = mem_process_rss_anon();
    t0 = mono_ns();
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    ns = mono_ns() - t0;
    after = mem_process_rss_anon();

    if (unlikely(!self))
        self = thread_register();
    s = &self->trim;
    __atomic_fetch_add(&s->trims, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->ns, ns, __ATOMIC_RELAXED);
    if (before < 0 || after < 0)
        return -1;
    if (after >= before)
        return 0;
    __atomic_fetch_add(&s->given_back, (uint64_t)(before - after),
                       __ATOMIC_RELAXED);
    return before - after;
}

int64_t mem_trim_check(struct mem_trim *t)
{
    int64_t rss = mem_process_rss_anon(), live = mem_live_bytes(MEM_ALL);
    int64_t back;

    if (unlikely(!self))
        self = thread_register();
    __atomic_fetch_add(&self->trim.checks, 1, __ATOMIC_RELAXED);
    if (!mem_trim_due(t, rss, live))
        return -1;
    back = mem_trim_now();
    if (mem_trim_done(t, mem_process_rss_anon(), mem_live_bytes(MEM_ALL)))
        __atomic_fetch_add(&self->trim.backed_off, 1, __ATOMIC_RELAXED);
    return back < 0 ? 0 : back;
}

void mem_trim_stats(struct mem_trim_stats *out)
{
    struct mem_thread *t;

    memset(out, 0, sizeof(*out));
    for (t = __atomic_load_n(&reg_head, __ATOMIC_ACQUIRE); t; t = t->next) {
        out->checks += __atomic_load_n(&t->trim.checks, __ATOMIC_RELAXED);
        out->trims += __atomic_load_n(&t->trim.trims, __ATOMIC_RELAXED);
        out->backed_off +=
            __atomic_load_n(&t->trim.backed_off, __ATOMIC_RELAXED);
        out->given_back +=
            __atomic_load_n(&t->trim.given_back, __ATOMIC_RELAXED);
        out->ns += __atomic_load_n(&t->trim.ns, __ATOMIC_RELAXED);
    }
}
