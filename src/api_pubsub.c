/*
 * api_pubsub.c - struct moor_pubsub of include/moor.h: the push gateway
 * of `moor serve` (push.c: /sub and /pub over WebSocket, SSE and HTTP
 * POST; framed TCP listeners) on a server made with moor_server_new(),
 * and publishing to it from C.
 *
 * Keeps: one gateway per server, freed with it (after every conn, as
 * push_free() requires); limits of messages and timeouts are the
 * server's, so a subscriber over WebSocket and over TCP meet the same
 * ones.
 */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "frame.h"
#include "mem.h"
#include "util.h"

struct moor_pubsub {
    struct moor_server *s;
    struct push *push;
};

static void pubsub_defaults(void *p, size_t size)
{
    /* `moor serve`'s defaults (config.c's table). */
    struct moor_pubsub_options d = {
        .size = sizeof(d),
        .max_channels = 100000,
        .max_channels_per_conn = 64,
        .queue_soft_limit = KiB(256),
        .queue_soft_time_ms = 10000,
        .slow_policy = MOOR_SLOW_DISCONNECT,
        .rate = 10000,
        .burst = 0,
        .byte_rate = 0,
        .heartbeat_ms = 15000,
        .sse_retry_ms = 3000,
    };

    api_options_init(p, size, &d, sizeof(d));
}

MOOR_API void moor_pubsub_options_init_(struct moor_pubsub_options *o,
                                        size_t size)
{
    pubsub_defaults(o, size);
}

MOOR_API struct moor_pubsub *
moor_pubsub_new(struct moor_server *s, const struct moor_pubsub_options *o,
                struct moor_error *err)
{
    struct moor_pubsub_options po;
    struct push_opts io;
    struct moor_pubsub *ps;

    if (api_options(&po, sizeof(po), o, pubsub_defaults, "moor_pubsub_options",
                    err) < 0)
        return NULL;
    if (s->ps) {
        api_fail(err, -EEXIST, "this server has its pub/sub already");
        return NULL;
    }
    if (po.slow_policy != MOOR_SLOW_DISCONNECT &&
        po.slow_policy != MOOR_SLOW_DROP_OLDEST) {
        api_fail(err, -EINVAL,
                 "slow_policy: MOOR_SLOW_DISCONNECT or "
                 "MOOR_SLOW_DROP_OLDEST");
        return NULL;
    }
    ps = api_calloc(MEM_CONFIG, sizeof(*ps), err);
    if (!ps)
        return NULL;
    memset(&io, 0, sizeof(io));
    io.pubsub.max_channels = po.max_channels;
    io.pubsub.max_channels_per_conn = po.max_channels_per_conn;
    io.pubsub.soft_limit = (uint32_t)MIN(po.queue_soft_limit, UINT32_MAX);
    io.pubsub.soft_time_ms = po.queue_soft_time_ms;
    io.pubsub.close_timeout_ms = s->close_timeout_ms;
    io.pubsub.policy = po.slow_policy == MOOR_SLOW_DROP_OLDEST
                           ? SLOW_DROP_OLDEST
                           : SLOW_DISCONNECT;
    io.pubsub.heartbeat_ms = po.heartbeat_ms;
    io.max_message = s->max_message;
    io.rate = po.rate;
    io.burst = po.burst;
    io.byte_rate = po.byte_rate;
    io.sse_heartbeat_ms = po.heartbeat_ms;
    io.sse_retry_ms = po.sse_retry_ms;
    io.header_timeout_ms = s->header_timeout_ms;
    io.allowed_origins = s->allowed_origins;
    ps->push = push_new(server_http(s->srv), server_ws(s->srv),
                        server_conns(s->srv), &io);
    if (!ps->push) {
        mem_free(MEM_CONFIG, ps);
        api_fail(err, -ENOMEM, "out of memory, or the route table is full");
        return NULL;
    }
    ps->s = s;
    s->ps = ps;
    return ps;
}

MOOR_API int moor_pubsub_listen_tcp(struct moor_pubsub *ps, const char *addr,
                                    struct moor_tls *t, struct moor_error *err)
{
    return api_server_listen(ps->s, addr, t, true, "TCP listener", err);
}

MOOR_API int moor_pubsub_tcp_port(const struct moor_pubsub *ps, unsigned n)
{
    return api_server_listener_port(ps->s, true, n);
}

MOOR_API long moor_publish(struct moor_pubsub *ps, const char *channel,
                           const void *data, size_t len, int is_text)
{
    size_t n = channel ? strlen(channel) : 0;
    /* push.h hands out its pub/sub read-only, for metrics; publishing
     * is what the gateway's own routes do with it too. */
    struct pubsub *p = (struct pubsub *)push_pubsub(ps->push);

    if (!channel_name_valid((const uint8_t *)channel, n) || (len && !data))
        return -EINVAL;
    return pubsub_publish(p, channel, n, data, len, is_text != 0);
}

MOOR_API long moor_pubsub_subscribers(const struct moor_pubsub *ps,
                                      const char *channel)
{
    size_t n = channel ? strlen(channel) : 0;

    if (!channel_name_valid((const uint8_t *)channel, n))
        return -EINVAL;
    return pubsub_channel_subscribers(push_pubsub(ps->push), channel, n);
}

void api_pubsub_drain(struct moor_pubsub *ps)
{
    push_drain(ps->push);
}

void api_pubsub_free(struct moor_pubsub *ps)
{
    push_free(ps->push);
    mem_free(MEM_CONFIG, ps);
}

struct push *api_pubsub_push(struct moor_pubsub *ps)
{
    return ps->push;
}
