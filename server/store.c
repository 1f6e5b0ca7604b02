/* store.c - the session store in Redis (see store.h).
 *
 * One asynchronous hiredis connection on the server's libuv loop.  Each
 * connection (srv_conn) has at most one store command outstanding; the
 * command holds a reference to it, so a client that leaves meanwhile never
 * frees what the reply will touch.  A store that is down or slow never stops
 * a request: a command that fails, or gets no answer within
 * STORE_TIMEOUT_MS, counts as "the store does not know", and the request goes
 * on with the local copy.  Loop thread only; never blocks except in
 * srv_store_drain, which runs after the engine stopped.
 */
#include "server/store.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/state_fmt.h"
#include "engine/xalloc.h"

#define STORE_KEY_PREFIX "ssmd:session:"
#define STORE_RECONNECT_MS 1000  /* at most one connection attempt per second */
#define STORE_TIMEOUT_MS 2000    /* a command unanswered this long fails them all */

struct srv_store {
    srv_server *srv;
    char host[256];
    int port, db;
    redisAsyncContext *ac;    /* NULL while disconnected */
    int64_t t_connect_ns;     /* last connection attempt */
    int n_pending;            /* commands sent, not answered */
    int64_t t_progress_ns;    /* last reply, or the send that began a busy spell */
    uv_timer_t watchdog;
    int down_logged;          /* "store unavailable" said once per outage */
};

typedef enum store_op_kind {
    OP_CHECK,   /* HGET gen: the store's version before a request */
    OP_LOAD,    /* HMGET gen state: a session this replica lacks */
    OP_WRITE,   /* HSET gen state: a changed session, before its answer */
    OP_DELETE,  /* DEL: a deleted session, before its answer */
} store_op_kind;

typedef struct store_op {
    srv_store *st;
    srv_conn *c;
    store_op_kind kind;
} store_op;

/* ---- connection ---- */

static void store_unavailable(srv_store *st, const char *why)
{
    st->srv->metrics.store_errors_total++;
    if (!st->down_logged)
        srv_log_msg(&st->srv->log, "warn", "store_error", "session store %s:%d: %s; serving local sessions only",
                    st->host, st->port, why);
    st->down_logged = 1;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    srv_store *st = ac->data;
    if (status != REDIS_OK) {
        st->ac = NULL; /* hiredis frees it */
        store_unavailable(st, ac->errstr);
        return;
    }
    if (st->down_logged)
        srv_log_msg(&st->srv->log, "info", "store_connected", "session store %s:%d: connected", st->host, st->port);
    st->down_logged = 0;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    srv_store *st = ac->data;
    if (st->ac == ac)
        st->ac = NULL;
    if (status != REDIS_OK)
        store_unavailable(st, ac->errstr);
}

/* The live context, connecting first if it is time to try; NULL if none. */
static redisAsyncContext *store_conn(srv_store *st)
{
    if (st->ac)
        return st->ac;
    int64_t now = eng_now_mono_ns();
    if (st->t_connect_ns && now - st->t_connect_ns < (int64_t)STORE_RECONNECT_MS * 1000000)
        return NULL;
    st->t_connect_ns = now;
    redisAsyncContext *ac = redisAsyncConnect(st->host, st->port);
    if (!ac)
        return NULL;
    if (ac->err) {
        store_unavailable(st, ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = st;
    if (redisLibuvAttach(ac, st->srv->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        return NULL;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (st->db)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", st->db); /* queued until connected */
    st->ac = ac;
    return ac;
}

/* Fails every pending command when the oldest waited too long: a store
 * that hangs must not hang requests. */
static void on_watchdog(uv_timer_t *t)
{
    srv_store *st = t->data;
    if (st->n_pending == 0) {
        uv_timer_stop(t);
        return;
    }
    if (eng_now_mono_ns() - st->t_progress_ns < (int64_t)STORE_TIMEOUT_MS * 1000000 || !st->ac)
        return;
    redisAsyncContext *ac = st->ac;
    st->ac = NULL;
    store_unavailable(st, "no answer in time");
    redisAsyncFree(ac); /* runs the pending callbacks with no reply */
}

static void key_of(char *key, size_t cap, const char *id) { snprintf(key, cap, STORE_KEY_PREFIX "%s", id); }

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* Sends one command for c; returns 0, or -1 when the store is unavailable
 * (nothing sent, the caller goes on without it). */
static int store_send(srv_store *st, srv_conn *c, store_op_kind kind, int argc, const char **argv,
                      const size_t *lens)
{
    redisAsyncContext *ac = store_conn(st);
    if (!ac)
        return -1;
    store_op *op = malloc(sizeof *op);
    if (!op)
        return -1;
    *op = (store_op){st, c, kind};
    if (redisAsyncCommandArgv(ac, on_reply, op, argc, argv, lens) != REDIS_OK) {
        free(op);
        store_unavailable(st, "cannot send a command");
        return -1;
    }
    if (st->n_pending++ == 0) {
        st->t_progress_ns = eng_now_mono_ns();
        uv_timer_start(&st->watchdog, on_watchdog, STORE_TIMEOUT_MS / 4, STORE_TIMEOUT_MS / 4);
    }
    c->refs++;
    return 0;
}

/* Keeps the key alive as long as the session may live here. */
static void store_touch(srv_store *st, const char *key)
{
    double ttl = st->srv->cfg->session_ttl;
    if (st->ac && ttl > 0)
        redisAsyncCommand(st->ac, NULL, NULL, "EXPIRE %s %lld", key, (long long)ttl + 1);
}

/* ---- requests ---- */

static uint64_t parse_gen(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_STRING || r->len != 16)
        return 0;
    char hex[17];
    memcpy(hex, r->str, 16);
    hex[16] = '\0';
    char *end;
    uint64_t g = strtoull(hex, &end, 16);
    return *end ? 0 : g;
}

/* DELETE leaves this in "gen" for a while, so replicas holding a copy of
 * the session drop it instead of serving (and rewriting) it. */
#define STORE_TOMBSTONE "deleted"

static int is_tombstone(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STRING && r->len == strlen(STORE_TOMBSTONE) &&
           !memcmp(r->str, STORE_TOMBSTONE, r->len);
}

/* A final ERROR event for c's request, delivered now. */
static void fail_request(srv_conn *c, int code, const char *msg)
{
    eng_event *e = xcalloc(1, sizeof *e);
    e->kind = ENG_EV_ERROR;
    e->req = c->req;
    ssmd_err_set(&e->err, code, "%s", msg);
    srv_deliver_event(c->srv, e);
}

static void submit_now(srv_conn *c, eng_request *r)
{
    if (c->srv->engine_stopped)
        fail_request(c, SSMD_EDRAINING, "server is shutting down");
    else
        eng_sched_submit(c->srv->sched, r);
}

void srv_store_submit(srv_store *st, srv_conn *c, eng_request *r)
{
    if (r->op != ENG_OP_SESSION_INFO && r->op != ENG_OP_STATE_EXPORT && r->op != ENG_OP_SESSION_DELETE)
        r->want_state = 1; /* complete, create, fork, import change a state */
    if (r->op == ENG_OP_STATE_IMPORT || (r->op == ENG_OP_SESSION_CREATE && !r->session[0])) {
        submit_now(c, r);
        return;
    }
    char key[80];
    key_of(key, sizeof key, r->session);
    const char *argv[] = {"HGET", key, "gen"};
    if (store_send(st, c, OP_CHECK, 3, argv, NULL) != 0) {
        submit_now(c, r);
        return;
    }
    store_touch(st, key);
}

/* The store's copy of c's session arrived (or not): import it, or give the
 * held "not found" to the route. */
static void load_done(srv_store *st, srv_conn *c, const redisReply *reply)
{
    srv_server *s = st->srv;
    eng_request *held = c->store_held;
    const redisReply *gen = NULL, *blob = NULL;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        gen = reply->element[0];
        blob = reply->element[1];
    }
    srv_state_meta m;
    const unsigned char *state = NULL;
    ssmd_err err = {0};
    if (!parse_gen(gen) || !blob || blob->type != REDIS_REPLY_STRING || c->closed || c->abort || s->engine_stopped ||
        srv_state_decode((const unsigned char *)blob->str, blob->len, s->info->fingerprint, s->info->state_bytes, &m,
                         &state, &err) != SSMD_OK) {
        if (err.code)
            srv_log_msg(&s->log, "warn", "store_load", "session %s in the store is unusable here: %s",
                        held->session, err.msg);
        eng_event *e = c->store_ev;
        c->store_ev = NULL;
        c->store_held = NULL;
        srv_deliver_event(s, e);
        return;
    }
    eng_request *imp = srv_import_request(held->session, &m, state);
    imp->blob_gen = parse_gen(gen);
    imp->udata = c;
    c->store_aux = imp;
    eng_sched_submit(s->sched, imp);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    store_op *op = privdata;
    srv_store *st = op->st;
    srv_conn *c = op->c;
    redisReply *r = reply;
    store_op_kind kind = op->kind;
    free(op);
    st->n_pending--;
    st->t_progress_ns = eng_now_mono_ns();
    int ok = r && r->type != REDIS_REPLY_ERROR;
    if (!ok)
        store_unavailable(st, r ? r->str : "connection lost");
    else
        st->down_logged = 0;
    switch (kind) {
    case OP_CHECK:
        c->req->expect_gen = ok ? parse_gen(r) : 0;
        if (ok && is_tombstone(r)) {
            c->req->expect_gen = ENG_GEN_DELETED;
            c->store_tries = 1; /* nothing to load */
        }
        submit_now(c, c->req);
        break;
    case OP_LOAD:
        load_done(st, c, ok ? r : NULL);
        break;
    case OP_WRITE:
    case OP_DELETE: {
        if (ok && kind == OP_WRITE)
            st->srv->metrics.store_writes_total++;
        eng_event *e = c->store_ev;
        c->store_ev = NULL;
        srv_deliver_event(st->srv, e);
        break;
    }
    }
    srv_conn_unref(c);
    srv_server_wake(st->srv);
}

/* Writes e's session state (or deletes it) before e reaches the route. */
static int write_first(srv_store *st, srv_conn *c, eng_event *e)
{
    char key[80], gen[17];
    eng_request *r = e->req;
    if (r->op == ENG_OP_SESSION_DELETE) {
        key_of(key, sizeof key, r->session);
        redisAsyncContext *ac = store_conn(st);
        if (!ac)
            return 0;
        redisAsyncCommand(ac, NULL, NULL, "HDEL %s state", key);
        const char *tomb[] = {"HSET", key, "gen", STORE_TOMBSTONE};
        if (store_send(st, c, OP_DELETE, 4, tomb, NULL) != 0)
            return 0;
        store_touch(st, key);
        c->store_ev = e;
        return 1;
    }
    unsigned char *buf;
    size_t len;
    if (srv_state_pack(st->srv->info->fingerprint, &e->info, e->blob, e->blob_bytes, &buf,
                       &len, NULL) != SSMD_OK)
        return 0;
    key_of(key, sizeof key, e->info.id);
    snprintf(gen, sizeof gen, "%016" PRIx64, e->info.gen);
    const char *argv[] = {"HSET", key, "gen", gen, "state", (const char *)buf};
    size_t lens[] = {4, strlen(key), 3, 16, 5, len};
    int rc = store_send(st, c, OP_WRITE, 6, argv, lens);
    free(buf);
    if (rc != 0)
        return 0;
    store_touch(st, key);
    c->store_ev = e;
    return 1;
}

int srv_store_on_event(srv_store *st, srv_conn *c, eng_event *e)
{
    eng_request *r = e->req;
    if (r == c->store_aux) { /* our import of the store's copy */
        eng_request *held = c->store_held;
        eng_event *notfound = c->store_ev;
        c->store_aux = NULL;
        c->store_held = NULL;
        c->store_ev = NULL;
        if (e->kind == ENG_EV_RESULT && !c->closed && !c->abort && !st->srv->engine_stopped) {
            st->srv->metrics.store_loads_total++;
            c->store_loaded = 1;
            eng_event_free(notfound); /* not its request: that goes round again */
            held->expect_gen = 0;
            eng_sched_submit(st->srv->sched, held);
        } else {
            srv_deliver_event(st->srv, notfound);
        }
        eng_request_free(r);
        eng_event_free(e);
        return 1;
    }
    if (e->kind != ENG_EV_DONE && e->kind != ENG_EV_RESULT && e->kind != ENG_EV_ERROR)
        return 0;
    if (st->srv->engine_stopped) /* shutting down: answer with what is here */
        return 0;
    if (e->kind == ENG_EV_ERROR && (e->err.code == SSMD_ENOTFOUND || e->err.code == SSMD_ESTALE) &&
        r->session[0] && r->op != ENG_OP_SESSION_CREATE && r->op != ENG_OP_STATE_IMPORT && c->store_tries == 0 &&
        !c->closed && !c->abort) {
        c->store_tries++;
        if (e->err.code == SSMD_ESTALE)
            st->srv->metrics.store_stale_total++;
        char key[80];
        key_of(key, sizeof key, r->session);
        const char *argv[] = {"HMGET", key, "gen", "state"};
        if (store_send(st, c, OP_LOAD, 4, argv, NULL) != 0)
            return 0;
        c->store_held = r;
        c->store_ev = e;
        return 1;
    }
    int changed = r->want_state && e->blob;
    int deleted = r->op == ENG_OP_SESSION_DELETE && e->kind == ENG_EV_RESULT;
    if (!changed && !deleted)
        return 0;
    r->want_state = 0; /* written once; delivered normally afterwards */
    return write_first(st, c, e);
}

/* ---- life ---- */

int srv_store_open(srv_server *s, const char *url, srv_store **out, ssmd_err *err)
{
    *out = NULL;
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0)
        return ssmd_err_set(err, SSMD_EINVAL, "--session-store '%s': expected redis://HOST:PORT[/DB]", url);
    p += 8;
    const char *colon = strrchr(p, ':');
    size_t hlen = colon ? (size_t)(colon - p) : strcspn(p, "/");
    if (hlen == 0 || hlen >= sizeof((srv_store *)0)->host)
        return ssmd_err_set(err, SSMD_EINVAL, "--session-store '%s': no host", url);
    long port = 6379, db = 0;
    char *end = (char *)p + hlen;
    if (colon) {
        port = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || port < 1 || port > 65535)
            return ssmd_err_set(err, SSMD_EINVAL, "--session-store '%s': bad port", url);
    }
    if (*end == '/') {
        const char *d = end + 1;
        db = strtol(d, &end, 10);
        if (end == d || db < 0 || db > 1000000)
            return ssmd_err_set(err, SSMD_EINVAL, "--session-store '%s': bad database number", url);
    }
    if (*end)
        return ssmd_err_set(err, SSMD_EINVAL, "--session-store '%s': unexpected '%s'", url, end);
    srv_store *st = calloc(1, sizeof *st);
    if (!st)
        return ssmd_err_set(err, SSMD_ENOMEM, "out of memory");
    st->srv = s;
    memcpy(st->host, p, hlen);
    st->host[hlen] = '\0';
    if (st->host[0] == '[' && hlen > 2 && st->host[hlen - 1] == ']') { /* [::1] */
        memmove(st->host, st->host + 1, hlen - 2);
        st->host[hlen - 2] = '\0';
    }
    st->port = (int)port;
    st->db = (int)db;
    uv_timer_init(s->loop, &st->watchdog);
    st->watchdog.data = st;
    store_conn(st);
    *out = st;
    return SSMD_OK;
}

static void watchdog_closed(uv_handle_t *h) { free(h->data); }

void srv_store_close(srv_store *st)
{
    if (!st)
        return;
    if (st->ac) {
        redisAsyncContext *ac = st->ac;
        st->ac = NULL;
        redisAsyncFree(ac);
    }
    uv_close((uv_handle_t *)&st->watchdog, watchdog_closed);
}

typedef struct drain_ctx {
    srv_store *st;
    redisContext *rc;
    int written;
} drain_ctx;

static int drain_one(void *arg, const eng_session_info *info, const void *state, size_t bytes)
{
    drain_ctx *d = arg;
    srv_server *s = d->st->srv;
    char key[80], gen[17];
    key_of(key, sizeof key, info->id);
    snprintf(gen, sizeof gen, "%016" PRIx64, info->gen);
    /* Only where the store has nothing: a copy there may be newer. */
    redisReply *r = redisCommand(d->rc, "HSETNX %s gen %s", key, gen);
    int fresh = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    int failed = !r || r->type == REDIS_REPLY_ERROR;
    freeReplyObject(r);
    if (failed)
        return 1;
    if (!fresh)
        return 0;
    unsigned char *buf;
    size_t len;
    if (srv_state_pack(s->info->fingerprint, info, state, bytes, &buf, &len, NULL) != SSMD_OK)
        return 1;
    r = redisCommand(d->rc, "HSET %s state %b", key, buf, len);
    free(buf);
    failed = !r || r->type == REDIS_REPLY_ERROR;
    freeReplyObject(r);
    if (failed)
        return 1;
    if (s->cfg->session_ttl > 0)
        freeReplyObject(redisCommand(d->rc, "EXPIRE %s %lld", key, (long long)s->cfg->session_ttl + 1));
    d->written++;
    return 0;
}

int srv_store_drain(srv_store *st, eng_sched *sched)
{
    struct timeval tv = {2, 0};
    redisContext *rc = redisConnectWithTimeout(st->host, st->port, tv);
    if (!rc || rc->err) {
        store_unavailable(st, rc ? rc->errstr : "cannot connect");
        redisFree(rc);
        return 0;
    }
    redisSetTimeout(rc, tv);
    if (st->db)
        freeReplyObject(redisCommand(rc, "SELECT %d", st->db));
    drain_ctx d = {st, rc, 0};
    eng_sched_each_session(sched, drain_one, &d);
    redisFree(rc);
    st->srv->metrics.drain_exported_total += (uint64_t)d.written;
    return d.written;
}
