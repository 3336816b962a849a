/*
 * history.c - each channel's last messages, their ids and their expiry;
 * see history.h.
 *
 * Keeps: a channel's entries have offsets that follow one another, from
 * its head (oldest) to its tail (last); every entry is on the global list
 * in publish order, so the global head is the oldest entry of its
 * channel; stats.bytes is exactly what the live entries, their messages
 * and the channel records take; a channel record exists while it has an
 * entry or a user.
 * Must not: copy a payload (entries hold references), walk channels to
 * expire (the global head is enough), or keep a channel with neither
 * entries nor users.
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "history.h"
#include "mem.h"
#include "msg.h"
#include "util.h"

struct hchan {
    struct hchan *hnext;        /* hash chain */
    struct hentry *head, *tail; /* oldest, newest */
    uint64_t epoch;
    uint64_t last; /* the last offset given */
    uint32_t count;
    uint32_t users;
    uint32_t hash;
    uint16_t name_len;
    char name[]; /* NUL-terminated */
};

struct history {
    struct history_opts o;
    struct history_stats stats;
    struct hentry *ghead, *gtail; /* every entry, oldest first */
    struct hchan **buckets;
    uint32_t n_buckets; /* power of two */
    uint64_t made;      /* channel histories made: the epoch's counter */
};

#define MIN_BUCKETS 64

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint32_t hash_name(const char *p, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 16777619u;
    }
    return h;
}

static size_t chan_cost(size_t name_len)
{
    return sizeof(struct hchan) + name_len + 1;
}

static size_t entry_cost(const struct hentry *e)
{
    return sizeof(*e) + sizeof(struct msg) + e->m->len;
}

/* The history's own struct is pub/sub's (MEM_CHANNEL), made once per
 * loop; the table is made with the first channel and freed with the last
 * one, so the history tag holds what the history keeps and is back to 0
 * when nothing is kept. */
struct history *history_new(const struct history_opts *o)
{
    struct history *h = mem_calloc(MEM_CHANNEL, 1, sizeof(*h));

    if (!h)
        return NULL;
    h->o = *o;
    if (!h->o.seed && getrandom(&h->o.seed, sizeof(h->o.seed), GRND_NONBLOCK) !=
                          (ssize_t)sizeof(h->o.seed))
        h->o.seed = mix((uintptr_t)h ^ (uint64_t)o->ttl_ms);
    return h;
}

const struct history_stats *history_stats(const struct history *h)
{
    return &h->stats;
}

struct history_stats *history_stats_mut(struct history *h)
{
    return &h->stats;
}

/* ---- channels ----------------------------------------------------------- */

/* Doubles the table when channels outnumber buckets, halves it under a
 * quarter (as pubsub.c's). Best effort. */
static void maybe_resize(struct history *h)
{
    uint32_t nb;
    struct hchan **t;

    if ((uint64_t)h->stats.channels > h->n_buckets)
        nb = h->n_buckets * 2;
    else if (h->n_buckets > MIN_BUCKETS &&
             (uint64_t)h->stats.channels < h->n_buckets / 4)
        nb = h->n_buckets / 2;
    else
        return;
    if (nb == 0)
        return;
    t = mem_calloc(MEM_HISTORY, nb, sizeof(*t));
    if (!t)
        return;
    for (uint32_t i = 0; i < h->n_buckets; i++) {
        struct hchan *hc, *next;
        for (hc = h->buckets[i]; hc; hc = next) {
            next = hc->hnext;
            hc->hnext = t[hc->hash & (nb - 1)];
            t[hc->hash & (nb - 1)] = hc;
        }
    }
    mem_free(MEM_HISTORY, h->buckets);
    h->buckets = t;
    h->n_buckets = nb;
}

struct hchan *history_chan(struct history *h, const char *name, size_t n,
                           bool create)
{
    uint32_t hash = hash_name(name, n);
    struct hchan *hc =
        h->buckets ? h->buckets[hash & (h->n_buckets - 1)] : NULL;
    struct hchan **b;

    for (; hc; hc = hc->hnext)
        if (hc->hash == hash && hc->name_len == n && !memcmp(hc->name, name, n))
            return hc;
    if (!create || n > UINT16_MAX)
        return NULL;
    if (!h->buckets) {
        h->buckets = mem_calloc(MEM_HISTORY, MIN_BUCKETS, sizeof(*h->buckets));
        if (!h->buckets)
            return NULL;
        h->n_buckets = MIN_BUCKETS;
    }
    hc = mem_calloc(MEM_HISTORY, 1, chan_cost(n));
    if (!hc) {
        if (!h->stats.channels) {
            mem_free(MEM_HISTORY, h->buckets);
            h->buckets = NULL;
        }
        return NULL;
    }
    hc->hash = hash;
    hc->name_len = (uint16_t)n;
    memcpy(hc->name, name, n);
    /* Never 0, so that no id a client makes up from nothing matches. */
    do
        hc->epoch = mix(h->o.seed ^ mix(++h->made));
    while (!hc->epoch);
    b = &h->buckets[hash & (h->n_buckets - 1)];
    hc->hnext = *b;
    *b = hc;
    h->stats.channels++;
    h->stats.bytes += (int64_t)chan_cost(n);
    maybe_resize(h);
    return hc;
}

static void chan_free(struct history *h, struct hchan *hc)
{
    struct hchan **pp;

    for (pp = &h->buckets[hc->hash & (h->n_buckets - 1)]; *pp;
         pp = &(*pp)->hnext) {
        if (*pp == hc) {
            *pp = hc->hnext;
            break;
        }
    }
    h->stats.channels--;
    h->stats.bytes -= (int64_t)chan_cost(hc->name_len);
    mem_free(MEM_HISTORY, hc);
    if (h->stats.channels == 0) {
        mem_free(MEM_HISTORY, h->buckets);
        h->buckets = NULL;
        h->n_buckets = 0;
        return;
    }
    maybe_resize(h);
}

void history_hold(struct hchan *hc)
{
    hc->users++;
}

void history_release(struct history *h, struct hchan *hc)
{
    if (--hc->users == 0 && hc->count == 0)
        chan_free(h, hc);
}

/* ---- entries ------------------------------------------------------------ */

/* Drops the oldest entry of hc (also unlinked from the global list),
 * counted under why; frees hc if that leaves it unused. */
static void drop_oldest(struct history *h, struct hchan *hc,
                        enum history_evict why)
{
    struct hentry *e = hc->head;

    hc->head = e->cnext;
    if (!hc->head)
        hc->tail = NULL;
    hc->count--;
    if (e->gprev)
        e->gprev->gnext = e->gnext;
    else
        h->ghead = e->gnext;
    if (e->gnext)
        e->gnext->gprev = e->gprev;
    else
        h->gtail = e->gprev;
    h->stats.messages--;
    h->stats.bytes -= (int64_t)entry_cost(e);
    h->stats.evicted[why]++;
    msg_unref(e->m);
    mem_free(MEM_HISTORY, e);
    if (hc->count == 0 && hc->users == 0)
        chan_free(h, hc);
}

int history_append(struct history *h, struct hchan *hc, struct msg *m,
                   bool text, uint32_t now, uint64_t *off)
{
    struct hentry *e = mem_calloc(MEM_HISTORY, 1, sizeof(*e));

    if (!e)
        return -ENOMEM;
    e->hc = hc;
    e->m = msg_ref(m);
    e->off = ++hc->last;
    e->at = now;
    e->text = text;
    if (hc->tail)
        hc->tail->cnext = e;
    else
        hc->head = e;
    hc->tail = e;
    hc->count++;
    e->gprev = h->gtail;
    if (h->gtail)
        h->gtail->gnext = e;
    else
        h->ghead = e;
    h->gtail = e;
    h->stats.messages++;
    h->stats.bytes += (int64_t)entry_cost(e);
    *off = e->off;
    /* hc is held by the caller or has e: neither drop below frees it
     * before it is looked at again (a drop of e itself may, after). */
    hc->users++;
    while (hc->count > h->o.size)
        drop_oldest(h, hc, HIST_EVICT_SIZE);
    while (h->o.max_bytes && h->ghead &&
           (uint64_t)h->stats.bytes > h->o.max_bytes)
        drop_oldest(h, h->ghead->hc, HIST_EVICT_BYTES);
    history_release(h, hc);
    return 0;
}

static bool expired(const struct history *h, const struct hentry *e,
                    uint32_t now)
{
    return (int32_t)(now - e->at) >= 0 && now - e->at >= h->o.ttl_ms;
}

uint32_t history_expire(struct history *h, uint32_t now)
{
    uint32_t n = 0;

    while (h->ghead && expired(h, h->ghead, now)) {
        drop_oldest(h, h->ghead->hc, HIST_EVICT_TTL);
        n++;
    }
    return n;
}

bool history_next_expiry(const struct history *h, uint32_t now, uint32_t *in_ms)
{
    int32_t left;

    if (!h->ghead)
        return false;
    left = (int32_t)(h->ghead->at + h->o.ttl_ms - now);
    *in_ms = left > 0 ? (uint32_t)left : 0;
    return true;
}

void history_free(struct history *h)
{
    if (!h)
        return;
    /* Hold every channel so that none is freed under the walk. */
    for (uint32_t i = 0; i < h->n_buckets; i++)
        for (struct hchan *hc = h->buckets[i]; hc; hc = hc->hnext)
            hc->users++;
    while (h->ghead)
        drop_oldest(h, h->ghead->hc, HIST_EVICT_TTL);
    for (uint32_t i = 0; i < h->n_buckets; i++) {
        struct hchan *hc, *next;
        for (hc = h->buckets[i]; hc; hc = next) {
            next = hc->hnext;
            mem_free(MEM_HISTORY, hc);
        }
    }
    mem_free(MEM_HISTORY, h->buckets);
    mem_free(MEM_CHANNEL, h);
}

/* ---- lookups ------------------------------------------------------------ */

uint64_t history_chan_epoch(const struct hchan *hc)
{
    return hc->epoch;
}

uint64_t history_chan_last(const struct hchan *hc)
{
    return hc->last;
}

uint32_t history_chan_count(const struct hchan *hc)
{
    return hc->count;
}

enum history_find history_since(const struct hchan *hc, uint64_t epoch,
                                uint64_t off, uint32_t max,
                                const struct hentry **first, uint32_t *count)
{
    const struct hentry *e;
    uint64_t oldest, missed;

    *first = NULL;
    *count = 0;
    if (!hc || epoch != hc->epoch || off > hc->last)
        return HIST_RESET_EPOCH;
    missed = hc->last - off;
    if (missed == 0)
        return HIST_FOUND;
    oldest = hc->head ? hc->head->off : hc->last + 1;
    if (off + 1 < oldest)
        return HIST_RESET_TOO_OLD;
    if (max && missed > max)
        return HIST_RESET_TOO_MANY;
    for (e = hc->head; e && e->off <= off; e = e->cnext)
        ;
    *first = e;
    *count = (uint32_t)missed;
    return HIST_FOUND;
}

/* ---- ids ---------------------------------------------------------------- */

size_t history_format_id(char *out, uint64_t epoch, uint64_t off)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[20];
    size_t n = 0, k = 0;
    int shift = 60;

    while (shift > 0 && !((epoch >> shift) & 15))
        shift -= 4;
    for (; shift >= 0; shift -= 4)
        out[n++] = hex[(epoch >> shift) & 15];
    out[n++] = ':';
    do {
        tmp[k++] = (char)('0' + off % 10);
        off /= 10;
    } while (off);
    while (k)
        out[n++] = tmp[--k];
    out[n] = '\0';
    return n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool history_parse_id(const char *p, size_t n, uint64_t *epoch, uint64_t *off)
{
    uint64_t e = 0, o = 0;
    size_t i = 0, start;

    for (; i < n && i < 16 && hexval(p[i]) >= 0; i++)
        e = e << 4 | (uint64_t)hexval(p[i]);
    if (i == 0 || i >= n || p[i] != ':')
        return false;
    start = ++i;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        if (o > (UINT64_MAX - (uint64_t)(p[i] - '0')) / 10)
            return false;
        o = o * 10 + (uint64_t)(p[i] - '0');
    }
    if (i == start || i - start > 20)
        return false;
    *epoch = e;
    *off = o;
    return true;
}

const char *history_evict_name(enum history_evict r)
{
    static const char *const names[HIST_EVICT_COUNT] = {"size", "ttl", "bytes"};

    return (unsigned)r < HIST_EVICT_COUNT ? names[r] : "?";
}

const char *history_find_name(enum history_find r)
{
    static const char *const names[HIST_FIND_COUNT] = {
        "found", "epoch", "too_old", "too_many", "several", "too_big", "off"};

    return (unsigned)r < HIST_FIND_COUNT ? names[r] : "?";
}
