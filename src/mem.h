/*
 * mem.h - the only door to the allocator (docs/principles.md, rule 7).
 *
 * Every allocation carries a tag. Live bytes, live count and total
 * allocations are kept per tag, per thread (no shared cache line between
 * loops), and summed when read. Sizes are the allocator's usable size
 * (malloc_usable_size), so what the metrics show is what the heap holds.
 *
 * Failure: mem_alloc() returns NULL on exhaustion or when fail-at-N fires;
 * callers must handle it (tests prove they do). Nothing here aborts.
 *
 * Trace mode (MOOR_MEM_TRACE=1 in the environment, or mem_trace_enable()):
 * every live allocation's call site (file:line) is recorded in a side table
 * that is itself not counted, and mem_trace_dump() prints the live set
 * grouped by site, largest first: the C answer to Go's heap profile.
 */
#ifndef MOOR_MEM_H
#define MOOR_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>

#include "util.h"

/* Keep mem_tag_name() in mem.c in step with this list. */
enum mem_tag {
    MEM_MISC = 0,
    MEM_LOOP,    /* loop structures, epoll event arrays, fd tables */
    MEM_READBUF, /* the per-loop shared read buffer */
    MEM_CONN,    /* struct conn and per-connection protocol state */
    MEM_CARRY,   /* exact-size incomplete-tail buffers */
    MEM_QUEUE,   /* outbound queue rings */
    MEM_MSG,     /* refcounted messages (payloads) */
    MEM_HTTP,    /* HTTP responses being built, request scratch */
    MEM_TLS,     /* everything OpenSSL allocates */
    MEM_CHANNEL, /* pub/sub channels and subscriptions */
    MEM_CONFIG,  /* parsed configuration, listeners */
    MEM_METRICS, /* metric tables */
    MEM_DNS,     /* the resolver: c-ares state, queries, the name cache */
    MEM_HTTPC,   /* the HTTP client: pools, hosts, requests in flight */
    MEM_AUTH,    /* authorization: keys, connections' grants and expiry,
                    per-address tables, the callback's cache */
    MEM_INFLUX,  /* the InfluxDB push: its outbox of line protocol */
    MEM_HISTORY, /* channel history: entries and channel records (the
                    messages they hold stay under MEM_MSG) */
    MEM_TAG_COUNT
};

struct mem_tag_stats {
    int64_t live_bytes;
    int64_t live_count;
    uint64_t total_allocs; /* allocations ever made under the tag */
    uint64_t total_bytes;  /* bytes ever allocated under the tag */
    uint64_t failed;       /* allocations that returned NULL */
};

/* Returns the tag's short lower-case name ("conn", "tls", ...). */
const char *mem_tag_name(enum mem_tag tag);

/* Allocators. Return NULL on failure (or when fail-at-N fires). The size
 * 0 is rounded up to 1 so a non-NULL result always needs mem_free(). */
#define mem_alloc(tag, n) mem_alloc_at((tag), (n), __FILE__, __LINE__)
#define mem_calloc(tag, n, sz)                                                 \
    mem_calloc_at((tag), (n), (sz), __FILE__, __LINE__)
/* Like realloc(); on failure the old block is untouched and still owned. */
#define mem_realloc(tag, p, n)                                                 \
    mem_realloc_at((tag), (p), (n), __FILE__, __LINE__)
#define mem_strndup(tag, s, n)                                                 \
    mem_strndup_at((tag), (s), (n), __FILE__, __LINE__)

void *mem_alloc_at(enum mem_tag tag, size_t n, const char *file, int line);
void *mem_calloc_at(enum mem_tag tag, size_t n, size_t sz, const char *file,
                    int line);
void *mem_realloc_at(enum mem_tag tag, void *p, size_t n, const char *file,
                     int line);
char *mem_strndup_at(enum mem_tag tag, const char *s, size_t n,
                     const char *file, int line);

/* Frees p (NULL is a no-op). The tag must be the one p was allocated with. */
void mem_free(enum mem_tag tag, void *p);

/* Slabs for fixed-size object pools (pool.c): MEM_SLAB_SIZE bytes,
 * aligned to MEM_SLAB_SIZE, page-backed (mmap), zero-filled. Counted as
 * MEM_SLAB_SIZE live bytes under tag. NULL on failure. */
#define MEM_SLAB_SIZE ((size_t)KiB(64))
#define mem_slab_alloc(tag) mem_slab_alloc_at((tag), __FILE__, __LINE__)
void *mem_slab_alloc_at(enum mem_tag tag, const char *file, int line);
void mem_slab_free(enum mem_tag tag, void *slab);

/* Sum over all threads of one tag, or of all tags when tag == MEM_ALL. */
void mem_stats(enum mem_tag tag, struct mem_tag_stats *out);
/* Live bytes of one tag, or of all tags when tag == MEM_TAG_COUNT. */
int64_t mem_live_bytes(enum mem_tag tag);
#define MEM_ALL MEM_TAG_COUNT

/* Budget: 0 = none. mem_over_budget() is true while live bytes of all tags
 * exceed the budget; mem_under_low_water() is true once they fall back under
 * budget * low_water_pct / 100 (hysteresis for pausing readers). */
void mem_set_budget(size_t bytes, unsigned low_water_pct);
size_t mem_budget(void);
bool mem_over_budget(void);
bool mem_under_low_water(void);

/* Test hook: the n-th allocation from now (1 = the next one) fails, once.
 * n = 0 disarms. Returns how many allocations were made since the last
 * mem_fail_at() call, so a test can loop n = 1, 2, ... until the operation
 * succeeds without a failure having fired (mem_fail_fired() == false). */
uint64_t mem_fail_at(uint64_t n);
bool mem_fail_fired(void);

/* Trace mode. mem_trace_enable() must be called before any allocation it
 * is to see (moor calls it first thing in main when MOOR_MEM_TRACE=1 or
 * --mem-trace is given). */
void mem_trace_enable(void);
bool mem_trace_enabled(void);
/* Writes the live set grouped by (tag, site), largest first, one line per
 * site: "tag file:line bytes count". Returns the number of live blocks. */
size_t mem_trace_dump(FILE *out);
/* Same data as JSON array of objects {tag,site,bytes,count}; appended to
 * out (a stdio stream). Returns the number of sites. */
size_t mem_trace_dump_json(FILE *out);

/* Process-level facts from /proc/self: resident set size and open fds.
 * Return -1 when unavailable. */
int64_t mem_process_rss(void);
int64_t mem_process_open_fds(void);

/*
 * Giving memory back (docs/principles.md, rule 7: RSS comes back after a
 * burst, not only the accounted bytes). glibc keeps the heap it freed:
 * after 2,000 TLS connections come and go, the live bytes are back but
 * VmRSS stays ~30 MB higher, because a few live blocks near the top of
 * the heap stop it from shrinking and free pages inside it stay resident.
 * malloc_trim(0) hands those pages back (madvise), whatever is live
 * around them; docs/memory.md has the measurements that chose it over
 * the other allocators and glibc settings.
 *
 * The policy. Every check (an event loop calls mem_trim_check() on a
 * timer) reads the gap between the anonymous resident memory (RssAnon:
 * VmRSS less the file pages of the binary and libraries, which fault in
 * as code first runs and which no trim can give back) and the accounted
 * live bytes. The gap has a floor: the allocator's own overhead, and
 * whatever else is not counted (stacks, libc's stdio), which no trim
 * removes. The floor is the smallest gap seen since the first check; it
 * never rises. A trim is due when
 *   - the gap is more than `threshold` bytes above the floor (that much
 *     freed memory may be held), and
 *   - neither the accounted bytes nor RssAnon grew by more than
 *     threshold / 4 since the previous check (the burst is over; memory
 *     being taken on now would only fault the trimmed pages back in.
 *     RssAnon also sees what is not accounted: OpenSSL's allocations in
 *     a library program, which does not call tls_mem_init()), and
 *   - the backoff does not hold it off.
 * The backoff. Not all of the gap is free heap: memory that is live but
 * not accounted (a library program's OpenSSL state while its connections
 * are open, a host's own allocations) is in it too, and no trim gives it
 * back. A trim that gives back less than threshold / 2 doubles the number
 * of checks until the next one may run (2, 4, ... MEM_TRIM_BACKOFF_MAX),
 * so a gap that no trim can shrink costs one trim every 64 checks, not
 * one every check. A trim that gives back more, or a check that finds
 * the gap back within threshold of the floor, resets it to 1 (trim
 * whenever due). The floor is not raised instead (as it once was): the
 * unaccounted memory is freed later, when its connections close, and
 * with a raised floor the heap it leaves would never be trimmed.
 * So at most one trim per check, and one per MEM_TRIM_BACKOFF_MAX checks
 * while trims give nothing back.
 *
 * The action is process-wide (malloc_trim trims every arena; VmRSS and
 * the live bytes are the process's), but the policy state is the
 * caller's: one struct mem_trim per event loop, no global mutable state
 * (docs/principles.md, rule 10). A second loop checking just after a
 * first one trimmed sees the gap at its floor and does nothing (after a
 * trim that gave back little, each loop backs off on its own). Counters
 * are per thread like the tag counters, summed by mem_trim_stats().
 *
 * Sanitizer builds: ASan has its own allocator and glibc's heap is
 * nearly unused, so malloc_trim() gives back almost nothing there; the
 * policy and the counters still run (and the trims back off). (ASan's
 * quarantine is deliberately not drained: it is what catches use after
 * free.)
 */
/* The longest backoff, in checks (64 s at the default 1 s interval). */
#define MEM_TRIM_BACKOFF_MAX 64

struct mem_trim {
    int64_t threshold; /* bytes; 0 = never trim */
    int64_t floor;     /* smallest RSS - live gap seen */
    int64_t last_live; /* live bytes at the previous check */
    int64_t last_rss;  /* RssAnon at the previous check (or trim) */
    uint32_t backoff;  /* checks from a trim to the next: 1, 2, 4 ... */
    uint32_t wait;     /* checks still to pass before the next trim */
    bool primed;       /* floor, last_live and last_rss hold a reading */
};

struct mem_trim_stats {
    uint64_t checks;     /* mem_trim_check() calls that read the RSS */
    uint64_t trims;      /* trims made */
    uint64_t backed_off; /* trims that gave back < threshold / 2 */
    uint64_t given_back; /* bytes of RSS given back, summed over trims */
    uint64_t ns;         /* time spent trimming, in nanoseconds */
};

/* Sets t up with the given threshold (0 = never trim). */
void mem_trim_init(struct mem_trim *t, size_t threshold);

/* The decision alone, for the readings rss (RssAnon) and live (accounted
 * bytes) taken now: true when a trim is due. Updates t's floor, previous
 * readings and backoff. A reading of -1 (unavailable) is never due and
 * changes nothing. */
bool mem_trim_due(struct mem_trim *t, int64_t rss, int64_t live);

/* Records the readings taken right after the trim that mem_trim_due()
 * asked for: what it gave back is the RssAnon of that check minus rss.
 * Returns true if that was under threshold / 2 and the next trim is
 * backed off (also when a reading is -1). */
bool mem_trim_done(struct mem_trim *t, int64_t rss, int64_t live);

/* One check: reads RssAnon and the live bytes, asks mem_trim_due(), and
 * if due trims (mem_trim_now()) and records the result (a trim that backs
 * off is counted in mem_trim_stats' backed_off). Returns the bytes
 * of RSS given back (0 or more) if it trimmed, -1 if it did not. */
int64_t mem_trim_check(struct mem_trim *t);

/* Trims now, whatever the policy says: malloc_trim(0) where the C library
 * is glibc. Counted in mem_trim_stats(). Returns RssAnon before minus
 * after (0 if it grew), or -1 if it cannot be read. A trim releases only
 * anonymous pages, so that is also what VmRSS loses. */
int64_t mem_trim_now(void);

/* Sum over all threads. */
void mem_trim_stats(struct mem_trim_stats *out);

/* The anonymous part of the resident set (status's RssAnon: VmRSS less
 * the binary's and libraries' file pages), in bytes, from
 * /proc/self/statm (resident - shared; cheaper than /proc/self/status),
 * or -1. */
int64_t mem_process_rss_anon(void);

#endif
