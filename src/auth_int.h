/*
 * auth_int.h - what auth.c and auth_callback.c share: the auth itself.
 */
#ifndef MOOR_AUTH_INT_H
#define MOOR_AUTH_INT_H

#include "auth.h"

struct auth_sess;
struct auth_cb;

struct auth {
    struct loop *loop;
    struct jwt_keys *keys;
    auth_expire_fn *on_expire;
    void *arg;
    struct auth_stats st;
    /* Sessions by conn: a chained table, grown as they grow. */
    struct auth_sess **buckets;
    size_t n_buckets;
    /* Copies of the options' strings (the config may go first). */
    bool jwt;
    bool url; /* --auth url: cb is the callback's state */
    char *secret_file, *key_files, *cookie, *audience, *issuer, *ch_claim,
        *pub_claim;
    struct jwt_opts jo;
    struct auth_cb *cb;
};

/* auth_callback.c: the callback's client, questions and cache. 0, or -1
 * with err. auth_cb_free() is harmless without one. */
int auth_cb_new(struct auth *a, const struct auth_opts *o, char *err,
                size_t errlen);
void auth_cb_free(struct auth *a);

#endif
