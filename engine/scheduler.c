/* scheduler.c - the engine thread and its two queues (see scheduler.h).
 *
 * One iteration: take the incoming requests, run session operations at once,
 * queue completions, drop canceled ones, admit waiting completions up to
 * max_batch (prefill + first token), then one batched decode step for every
 * active sequence, posting events after each phase.  Never touches HTTP or
 * JSON and never blocks on the loop thread: the only shared things are the
 * two lists, the stats and the stop flag, all under `lock`.
 */
#include "engine/scheduler.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/sampler.h"
#include "engine/session.h"
#include "engine/state_pool.h"
#include "engine/text/stop.h"

typedef struct seq {          /* one active completion */
    eng_request *req;
    int slot;
    int session;              /* session index, -1 for a one-off state */
    int eph;                  /* index into eph_used, -1 for a session slot */
    eng_sampler sampler;
    eng_detok detok;
    eng_stop stop;
    int32_t *history;         /* (cap) prompt + generated, for the penalty */
    int n_history, cap;
    int32_t last;             /* sampled, not consumed yet */
    int n_gen, n_prompt;
} seq;

typedef struct evlist {
    eng_event *head, *tail;
} evlist;

struct eng_sched {
    eng_sched_opts opts;
    char *model_dir;
    eng_notify_fn notify;
    void *notify_arg;
    pthread_t thread;
    int started, joined;

    pthread_mutex_t lock;     /* guards the fields down to `info` */
    pthread_cond_t wake;
    eng_request *in_head, *in_tail;
    eng_event *ev_head, *ev_tail;
    int stopping;
    eng_sched_stats stats;
    eng_model_info info;      /* written once before ENG_EV_LOADED */

    /* engine thread only */
    eng_model *model;
    eng_state_pool *pool;
    eng_session_table sessions;
    eng_request *wait_head, *wait_tail;
    int n_waiting;
    seq *seqs;                /* (max_batch) the first n_active are live */
    int n_active;
    int *eph_used;            /* (max_batch) one-off slots max_sessions + i */
    float *logits;            /* (max_batch, n_vocab) */
    int32_t *step_slots, *step_ids; /* (max_batch) */
};

double eng_now_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int64_t eng_now_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "ssmd: out of memory (%zu x %zu bytes)\n", n, size);
        abort();
    }
    return p;
}

eng_request *eng_request_new(eng_op op)
{
    eng_request *r = xcalloc(1, sizeof *r);
    r->op = op;
    r->blob_pending = -1;
    eng_sampling_defaults(&r->sampling);
    atomic_init(&r->canceled, 0);
    return r;
}

void eng_request_free(eng_request *r)
{
    if (!r)
        return;
    free(r->prompt);
    free(r->blob);
    free(r);
}

void eng_event_free(eng_event *e)
{
    if (!e)
        return;
    free(e->text);
    free(e->blob);
    free(e);
}

static eng_event *ev_new(evlist *l, eng_event_kind kind, eng_request *r)
{
    eng_event *e = xcalloc(1, sizeof *e);
    e->kind = kind;
    e->req = r;
    if (l->tail)
        l->tail->next = e;
    else
        l->head = e;
    l->tail = e;
    return e;
}

static void ev_error(evlist *l, eng_request *r, const ssmd_err *err)
{
    eng_event *e = ev_new(l, ENG_EV_ERROR, r);
    e->err = *err;
}

static void ev_error_code(evlist *l, eng_request *r, int code, const char *msg)
{
    ssmd_err err;
    ssmd_err_set(&err, code, "%s", msg ? msg : ssmd_err_default_message(code));
    ev_error(l, r, &err);
}

/* Moves l's events to the outgoing queue and wakes the loop. */
static void ev_post(eng_sched *s, evlist *l)
{
    if (!l->head)
        return;
    pthread_mutex_lock(&s->lock);
    if (s->ev_tail)
        s->ev_tail->next = l->head;
    else
        s->ev_head = l->head;
    s->ev_tail = l->tail;
    s->stats.running = s->n_active;
    s->stats.waiting = s->n_waiting;
    s->stats.sessions = s->sessions.n_live;
    pthread_mutex_unlock(&s->lock);
    l->head = l->tail = NULL;
    if (s->notify)
        s->notify(s->notify_arg);
}

static void session_info(const eng_session *ss, eng_session_info *out)
{
    memcpy(out->id, ss->id, sizeof out->id);
    out->n_tokens = ss->n_tokens;
    out->pending = ss->pending;
    out->gen = ss->gen;
    out->created_s = ss->created_s;
    out->last_used_s = ss->last_used_s;
}

/* Gives e session idx's info and a copy of its state bytes. */
static void attach_state(eng_sched *s, eng_event *e, int idx)
{
    session_info(&s->sessions.entries[idx], &e->info);
    e->blob_bytes = s->info.state_bytes;
    e->blob = xcalloc(1, e->blob_bytes);
    eng_state_slot_read(s->pool, idx, e->blob);
}

/* Finds r's session for an operation on it: its index, or -1 after posting
 * the error (unknown, busy, or older than the store's copy). */
static int find_session(eng_sched *s, eng_request *r, evlist *out)
{
    ssmd_err err = {0};
    eng_session_table *t = &s->sessions;
    int idx = eng_session_find(t, r->session, &err);
    if (idx < 0) {
        ev_error(out, r, &err);
        return -1;
    }
    if (t->entries[idx].busy) {
        ev_error_code(out, r, SSMD_ECONFLICT, "session is busy with a running completion");
        return -1;
    }
    if (r->expect_gen == ENG_GEN_DELETED) { /* deleted on another replica */
        eng_session_remove(t, idx);
        ssmd_err_set(&err, SSMD_ENOTFOUND, "no session with id '%s'", r->session);
        ev_error(out, r, &err);
        return -1;
    }
    if (r->expect_gen && t->entries[idx].gen != r->expect_gen) {
        ev_error_code(out, r, SSMD_ESTALE, "session changed on another replica");
        return -1;
    }
    return idx;
}

/* ---- session operations (run at once, never queued) ---- */

static void run_session_op(eng_sched *s, eng_request *r, evlist *out)
{
    ssmd_err err = {0};
    double now = eng_now_wall_s();
    eng_session_table *t = &s->sessions;
    int idx = -1, changed = -1; /* changed: the session whose state this op set */
    if (r->op == ENG_OP_STATE_IMPORT) {
        if (r->blob_bytes != s->info.state_bytes || !r->blob) {
            ev_error_code(out, r, SSMD_EFORMAT, "state size does not match this model");
            return;
        }
        if (r->blob_pending < -1 || r->blob_pending >= s->info.n_vocab || r->blob_n_tokens < 0) {
            ev_error_code(out, r, SSMD_EFORMAT, "state header holds an invalid token");
            return;
        }
    }
    if (r->op == ENG_OP_STATE_IMPORT && eng_session_find(t, r->session, NULL) < 0) {
        /* Importing a session this replica does not hold creates it (a
         * handoff from a draining peer, or the session store). */
        idx = eng_session_create(t, r->session, now, NULL, &err);
        if (idx < 0) {
            ev_error(out, r, &err);
            return;
        }
    } else if (r->op != ENG_OP_SESSION_CREATE) {
        idx = find_session(s, r, out);
        if (idx < 0)
            return;
    }
    eng_event *e;
    switch (r->op) {
    case ENG_OP_SESSION_CREATE:
        if (r->expect_gen && r->expect_gen != ENG_GEN_DELETED) { /* the chosen id lives in the store */
            ev_error_code(out, r, SSMD_ECONFLICT, "a session with this id already exists");
            return;
        }
        idx = eng_session_create(t, r->session, now, NULL, &err);
        if (idx < 0) {
            ev_error(out, r, &err);
            return;
        }
        eng_state_slot_zero(s->pool, idx);
        changed = idx;
        break;
    case ENG_OP_SESSION_INFO:
        break;
    case ENG_OP_SESSION_DELETE:
        e = ev_new(out, ENG_EV_RESULT, r);
        session_info(&t->entries[idx], &e->info);
        eng_session_remove(t, idx);
        return;
    case ENG_OP_SESSION_FORK: {
        t->entries[idx].busy = 1; /* never the one evicted to make room */
        t->entries[idx].last_used_s = now;
        int n = eng_session_create(t, NULL, now, NULL, &err);
        t->entries[idx].busy = 0;
        if (n < 0) {
            ev_error(out, r, &err);
            return;
        }
        eng_state_slot_copy(s->pool, n, idx);
        t->entries[n].pending = t->entries[idx].pending;
        t->entries[n].n_tokens = t->entries[idx].n_tokens;
        idx = changed = n; /* the answer is about the new session */
        break;
    }
    case ENG_OP_STATE_EXPORT:
        t->entries[idx].last_used_s = now;
        e = ev_new(out, ENG_EV_RESULT, r);
        attach_state(s, e, idx);
        return;
    case ENG_OP_STATE_IMPORT:
        eng_state_slot_write(s->pool, idx, r->blob);
        t->entries[idx].pending = r->blob_pending;
        t->entries[idx].n_tokens = r->blob_n_tokens;
        t->entries[idx].gen = r->blob_gen ? r->blob_gen : eng_session_new_gen();
        t->entries[idx].last_used_s = now;
        changed = idx;
        break;
    default:
        ev_error_code(out, r, SSMD_EINTERNAL, "unknown engine operation");
        return;
    }
    e = ev_new(out, ENG_EV_RESULT, r);
    if (r->want_state && changed >= 0)
        attach_state(s, e, changed);
    else
        session_info(&t->entries[idx], &e->info);
}

/* ---- completions ---- */

static void history_push(seq *q, int32_t id)
{
    if (q->n_history == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 64;
        q->history = realloc(q->history, (size_t)q->cap * sizeof *q->history);
        if (!q->history) {
            fprintf(stderr, "ssmd: out of memory (history)\n");
            abort();
        }
    }
    q->history[q->n_history++] = id;
}

/* Appends stop-filtered text to the event. */
static void ev_text_append(eng_event *e, const char *text, size_t len)
{
    if (!len)
        return;
    char *t = realloc(e->text, e->text_len + len + 1);
    if (!t) {
        fprintf(stderr, "ssmd: out of memory (event text)\n");
        abort();
    }
    memcpy(t + e->text_len, text, len);
    e->text_len += len;
    t[e->text_len] = '\0';
    e->text = t;
}

static void feed_text(seq *q, eng_event *e, const char *piece, size_t len)
{
    if (!len || q->stop.stopped)
        return;
    char out[ENG_DETOK_PIECE_MAX + ENG_STOP_LEN_MAX + 8];
    while (len && !q->stop.stopped) {
        size_t n = len < ENG_DETOK_PIECE_MAX ? len : ENG_DETOK_PIECE_MAX;
        size_t got = eng_stop_feed(&q->stop, piece, n, out);
        ev_text_append(e, out, got);
        piece += n;
        len -= n;
    }
}

/* Ends the sequence at index i of seqs: DONE event, session bookkeeping,
 * slot release.  code != SSMD_OK ends it with an ERROR instead. */
static void seq_end(eng_sched *s, int i, eng_finish finish, int code, evlist *out)
{
    seq *q = &s->seqs[i];
    eng_request *r = q->req;
    if (code == SSMD_OK) {
        eng_event *e = ev_new(out, ENG_EV_DONE, r);
        e->finish = finish;
        e->n_prompt_tokens = q->n_prompt;
        e->n_gen_tokens = q->n_gen;
        if (!q->stop.stopped && s->info.tok) {
            char piece[ENG_DETOK_PIECE_MAX];
            int n = eng_detok_flush(&q->detok, piece, sizeof piece);
            if (n > 0)
                feed_text(q, e, piece, (size_t)n);
            char tail[ENG_STOP_LEN_MAX + 8];
            if (!q->stop.stopped)
                ev_text_append(e, tail, eng_stop_flush(&q->stop, tail));
        }
    } else {
        ev_error_code(out, r, code, NULL);
    }
    if (q->session >= 0) {
        eng_session *ss = &s->sessions.entries[q->session];
        ss->busy = 0;
        ss->pending = q->n_gen > 0 ? q->last : -1;
        ss->n_tokens += q->n_gen;
        ss->last_used_s = eng_now_wall_s();
        ss->gen = eng_session_new_gen();
        if (r->want_state) /* a canceled request changed the state too */
            attach_state(s, out->tail, q->session);
    }
    if (q->eph >= 0)
        s->eph_used[q->eph] = 0;
    eng_sampler_close(&q->sampler);
    free(q->history);
    s->n_active--;
    if (i != s->n_active)
        s->seqs[i] = s->seqs[s->n_active];
    memset(&s->seqs[s->n_active], 0, sizeof(seq));
}

/* Takes the sampled token: event, text through detok and stop, finish
 * checks.  Returns 1 when the sequence at i ended. */
static int seq_take(eng_sched *s, int i, int32_t tok, const eng_logprobs *lp, evlist *out)
{
    seq *q = &s->seqs[i];
    eng_request *r = q->req;
    q->last = tok;
    q->n_gen++;
    history_push(q, tok);
    eng_event *e = ev_new(out, ENG_EV_TOKEN, r);
    e->token = tok;
    if (lp && r->sampling.logprobs > 0) {
        e->has_logprobs = 1;
        e->lp = *lp;
    }
    eng_finish finish = ENG_FINISH_NONE;
    if (tok == s->info.eos_id && !r->ignore_eos) {
        finish = ENG_FINISH_STOP;
    } else if (s->info.tok) {
        char piece[ENG_DETOK_PIECE_MAX];
        int n = eng_detok_push(&q->detok, tok, piece, sizeof piece);
        if (n > 0)
            feed_text(q, e, piece, (size_t)n);
        if (q->stop.stopped)
            finish = ENG_FINISH_STOP;
    }
    if (finish == ENG_FINISH_NONE && q->n_gen >= r->max_tokens)
        finish = ENG_FINISH_LENGTH;
    if (finish == ENG_FINISH_NONE)
        return 0;
    seq_end(s, i, finish, SSMD_OK, out);
    return 1;
}

static void admit(eng_sched *s, eng_request *r, evlist *out)
{
    ssmd_err err = {0};
    eng_session_table *t = &s->sessions;
    int sidx = -1;
    if (r->session[0]) {
        sidx = find_session(s, r, out);
        if (sidx < 0)
            return;
    }
    int32_t pending = sidx >= 0 ? t->entries[sidx].pending : -1;
    int n_ids = r->n_prompt + (pending >= 0);
    if (n_ids == 0) {
        ev_error_code(out, r, SSMD_EINVAL, "prompt is empty");
        return;
    }
    seq *q = &s->seqs[s->n_active];
    memset(q, 0, sizeof *q);
    q->req = r;
    q->session = sidx;
    q->eph = -1;
    q->n_prompt = r->n_prompt;
    if (eng_sampler_init(&q->sampler, &r->sampling, s->info.n_vocab, &err) != SSMD_OK) {
        ev_error(out, r, &err);
        return;
    }
    const char *stops[ENG_STOP_MAX];
    for (int k = 0; k < r->n_stop; k++)
        stops[k] = r->stop[k];
    if (eng_stop_init(&q->stop, stops, r->n_stop, &err) != SSMD_OK) {
        eng_sampler_close(&q->sampler);
        ev_error(out, r, &err);
        return;
    }
    if (s->info.tok)
        eng_detok_init(&q->detok, s->info.tok, 1);
    if (sidx >= 0) {
        q->slot = sidx;
    } else {
        for (int k = 0; k < s->opts.max_batch && q->eph < 0; k++)
            if (!s->eph_used[k])
                q->eph = k;
        q->slot = s->opts.max_sessions + q->eph;
        eng_state_slot_zero(s->pool, q->slot);
    }
    if (pending >= 0)
        history_push(q, pending);
    for (int k = 0; k < r->n_prompt; k++)
        history_push(q, r->prompt[k]);
    float *logits = r->max_tokens > 0 ? s->logits : NULL;
    int rc = eng_model_prefill(s->model, s->pool, q->slot, q->history, n_ids, logits, 0, &err);
    if (rc != SSMD_OK) {
        eng_sampler_close(&q->sampler);
        free(q->history);
        memset(q, 0, sizeof *q);
        ev_error(out, r, &err);
        return;
    }
    if (q->eph >= 0)
        s->eph_used[q->eph] = 1;
    if (sidx >= 0) {
        t->entries[sidx].busy = 1;
        t->entries[sidx].pending = -1;
        t->entries[sidx].n_tokens += r->n_prompt;
    }
    s->n_active++;
    pthread_mutex_lock(&s->lock);
    s->stats.prompt_tokens += (uint64_t)n_ids;
    s->stats.gen_tokens += r->max_tokens > 0;
    pthread_mutex_unlock(&s->lock);
    int i = s->n_active - 1;
    if (r->max_tokens == 0) {
        seq_end(s, i, ENG_FINISH_LENGTH, SSMD_OK, out);
        return;
    }
    eng_logprobs lp;
    int32_t tok = eng_sampler_sample(&q->sampler, s->logits, q->history, q->n_history,
                                     r->sampling.logprobs > 0 ? &lp : NULL);
    seq_take(s, i, tok, &lp, out);
}

static void step(eng_sched *s, evlist *out)
{
    int b = s->n_active;
    for (int i = 0; i < b; i++) {
        s->step_slots[i] = s->seqs[i].slot;
        s->step_ids[i] = s->seqs[i].last;
    }
    ssmd_err err = {0};
    int rc = eng_model_decode(s->model, s->pool, s->step_slots, s->step_ids, b, s->logits, &err);
    if (rc != SSMD_OK) {
        while (s->n_active > 0)
            seq_end(s, s->n_active - 1, ENG_FINISH_NONE, SSMD_EINTERNAL, out);
        return;
    }
    int bucket = 0;
    while (bucket < ENG_BATCH_BUCKETS - 1 && (1 << bucket) < b)
        bucket++;
    pthread_mutex_lock(&s->lock);
    s->stats.steps++;
    s->stats.batch_sum += (uint64_t)b;
    s->stats.batch_hist[bucket]++;
    s->stats.gen_tokens += (uint64_t)b;
    pthread_mutex_unlock(&s->lock);
    /* Sequence i's logits are row i; seq_end moves the last sequence into a
     * freed index, so walk backwards over the rows of this step. */
    for (int i = b - 1; i >= 0; i--) {
        seq *q = &s->seqs[i];
        eng_logprobs lp;
        float *row = s->logits + (size_t)i * (size_t)s->info.n_vocab;
        int32_t tok = eng_sampler_sample(&q->sampler, row, q->history, q->n_history,
                                         q->req->sampling.logprobs > 0 ? &lp : NULL);
        seq_take(s, i, tok, &lp, out);
    }
}

/* ---- the thread ---- */

static void end_all(eng_sched *s, int code, evlist *out)
{
    while (s->n_active > 0)
        seq_end(s, s->n_active - 1, ENG_FINISH_NONE, code, out);
    while (s->wait_head) {
        eng_request *r = s->wait_head;
        s->wait_head = r->next;
        r->next = NULL;
        ev_error_code(out, r, code, NULL);
    }
    s->wait_tail = NULL;
    s->n_waiting = 0;
}

static void drop_canceled(eng_sched *s, evlist *out)
{
    for (int i = s->n_active - 1; i >= 0; i--)
        if (atomic_load(&s->seqs[i].req->canceled))
            seq_end(s, i, ENG_FINISH_NONE, SSMD_ECANCELED, out);
    eng_request **pp = &s->wait_head;
    s->wait_tail = NULL;
    while (*pp) {
        eng_request *r = *pp;
        if (atomic_load(&r->canceled)) {
            *pp = r->next;
            r->next = NULL;
            s->n_waiting--;
            ev_error_code(out, r, SSMD_ECANCELED, NULL);
        } else {
            s->wait_tail = r;
            pp = &r->next;
        }
    }
}

static int load(eng_sched *s, ssmd_err *err)
{
    int rc = eng_model_open(s->model_dir, &s->opts.model, &s->model, err);
    if (rc != SSMD_OK)
        return rc;
    rc = eng_state_pool_create(s->model, s->opts.max_sessions + s->opts.max_batch, &s->pool, err);
    if (rc != SSMD_OK)
        return rc;
    rc = eng_session_table_init(&s->sessions, s->opts.max_sessions, err);
    if (rc != SSMD_OK)
        return rc;
    eng_model_info *in = &s->info;
    const eng_model_config *cfg = eng_model_cfg(s->model);
    in->tok = eng_model_tokenizer(s->model);
    in->n_vocab = eng_model_n_vocab(s->model);
    in->eos_id = cfg->eos_token_id;
    in->bos_id = cfg->bos_token_id;
    in->state_bytes = eng_model_state_bytes(s->model);
    snprintf(in->fingerprint, sizeof in->fingerprint, "%s", eng_model_fingerprint(s->model));
    snprintf(in->dtype, sizeof in->dtype, "%s", eng_model_dtype_name(s->model));
    in->n_params = eng_model_n_params(s->model);
    snprintf(in->model_type, sizeof in->model_type, "%s", cfg->model_type);
    in->n_layer = cfg->n_layer;
    in->d_model = cfg->d_model;
    in->weight_bytes = eng_model_weight_bytes(s->model);
    /* 64-bit: slots times bytes per slot can pass 4 GiB */
    in->pool_bytes = (size_t)(s->opts.max_sessions + s->opts.max_batch) * in->state_bytes;
    int mb = s->opts.max_batch;
    s->seqs = xcalloc((size_t)mb, sizeof *s->seqs);
    s->eph_used = xcalloc((size_t)mb, sizeof *s->eph_used);
    s->logits = xcalloc((size_t)mb * (size_t)in->n_vocab, sizeof *s->logits);
    s->step_slots = xcalloc((size_t)mb, sizeof *s->step_slots);
    s->step_ids = xcalloc((size_t)mb, sizeof *s->step_ids);
    return SSMD_OK;
}

static void *thread_main(void *arg)
{
    eng_sched *s = arg;
    evlist out = {0};
    ssmd_err err = {0};
    if (load(s, &err) != SSMD_OK) {
        eng_event *e = ev_new(&out, ENG_EV_LOAD_FAILED, NULL);
        e->err = err;
        ev_post(s, &out);
        return NULL;
    }
    ev_new(&out, ENG_EV_LOADED, NULL);
    ev_post(s, &out);
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!s->stopping && !s->in_head && s->n_active == 0 && !s->n_waiting) {
            double left = eng_session_next_expiry(&s->sessions, eng_now_wall_s(),
                                                  s->opts.session_ttl_s);
            if (left < 0) {
                pthread_cond_wait(&s->wake, &s->lock);
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                left += 0.01;
                ts.tv_sec += (time_t)left;
                ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&s->wake, &s->lock, &ts);
                break;
            }
        }
        eng_request *in = s->in_head;
        s->in_head = s->in_tail = NULL;
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->lock);

        /* Expire first: a session idle beyond its TTL is gone for a request
         * that arrives late, however late this thread woke up. */
        eng_session_expire(&s->sessions, eng_now_wall_s(), s->opts.session_ttl_s);
        while (in) {
            eng_request *r = in;
            in = r->next;
            r->next = NULL;
            if (r->op != ENG_OP_COMPLETE) {
                run_session_op(s, r, &out);
            } else if (r->session[0] && find_session(s, r, &out) < 0) {
                /* unknown, busy or stale: answered now, not after waiting
                 * for a batch slot (admit checks again) */
            } else {
                if (s->wait_tail)
                    s->wait_tail->next = r;
                else
                    s->wait_head = r;
                s->wait_tail = r;
                s->n_waiting++;
            }
        }
        if (stopping) {
            end_all(s, SSMD_EDRAINING, &out);
            ev_post(s, &out);
            break;
        }
        drop_canceled(s, &out);
        ev_post(s, &out);
        while (s->n_active < s->opts.max_batch && s->wait_head) {
            eng_request *r = s->wait_head;
            s->wait_head = r->next;
            if (!s->wait_head)
                s->wait_tail = NULL;
            r->next = NULL;
            s->n_waiting--;
            admit(s, r, &out);
            ev_post(s, &out);
        }
        if (s->n_active > 0) {
            step(s, &out);
            ev_post(s, &out);
        }
    }
    return NULL;
}

int eng_sched_start(const eng_sched_opts *opts, eng_notify_fn notify, void *notify_arg,
                    eng_sched **out, ssmd_err *err)
{
    *out = NULL;
    if (opts->max_batch < 1 || opts->max_sessions < 1)
        return ssmd_err_set(err, SSMD_EINVAL, "max_batch and max_sessions must be at least 1");
    eng_sched *s = xcalloc(1, sizeof *s);
    s->opts = *opts;
    if (s->opts.model.max_batch < opts->max_batch)
        s->opts.model.max_batch = opts->max_batch;
    s->model_dir = strdup(opts->model_dir ? opts->model_dir : "");
    s->opts.model_dir = s->model_dir;
    s->notify = notify;
    s->notify_arg = notify_arg;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    s->info.eos_id = -1;
    s->info.bos_id = -1;
    if (pthread_create(&s->thread, NULL, thread_main, s) != 0) {
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->lock);
        free(s->model_dir);
        free(s);
        return ssmd_err_set(err, SSMD_EINTERNAL, "cannot start the engine thread");
    }
    s->started = 1;
    *out = s;
    return SSMD_OK;
}

void eng_sched_submit(eng_sched *s, eng_request *r)
{
    r->next = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->in_tail)
        s->in_tail->next = r;
    else
        s->in_head = r;
    s->in_tail = r;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
}

void eng_sched_cancel(eng_sched *s, eng_request *r)
{
    atomic_store(&r->canceled, 1);
    pthread_mutex_lock(&s->lock);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
}

eng_event *eng_sched_take_events(eng_sched *s)
{
    pthread_mutex_lock(&s->lock);
    eng_event *e = s->ev_head;
    s->ev_head = s->ev_tail = NULL;
    pthread_mutex_unlock(&s->lock);
    return e;
}

const eng_model_info *eng_sched_model_info(const eng_sched *s) { return &s->info; }

void eng_sched_get_stats(eng_sched *s, eng_sched_stats *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->lock);
}

void eng_sched_stop(eng_sched *s)
{
    if (!s->started || s->joined)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    s->joined = 1;
    /* Requests submitted after the thread left still need a final event. */
    evlist out = {0};
    pthread_mutex_lock(&s->lock);
    eng_request *in = s->in_head;
    s->in_head = s->in_tail = NULL;
    pthread_mutex_unlock(&s->lock);
    while (in) {
        eng_request *r = in;
        in = r->next;
        r->next = NULL;
        ev_error_code(&out, r, SSMD_EDRAINING, NULL);
    }
    end_all(s, SSMD_EDRAINING, &out);
    ev_post(s, &out);
}

int eng_sched_each_session(eng_sched *s, eng_session_visit_fn fn, void *arg)
{
    if (!s->joined || !s->pool)
        return 0;
    unsigned char *state = xcalloc(1, s->info.state_bytes ? s->info.state_bytes : 1);
    int n = 0;
    for (int i = 0; i < s->sessions.capacity; i++) {
        const eng_session *ss = &s->sessions.entries[i];
        if (!ss->in_use)
            continue;
        eng_session_info info;
        session_info(ss, &info);
        eng_state_slot_read(s->pool, i, state);
        n++;
        if (fn(arg, &info, state, s->info.state_bytes))
            break;
    }
    free(state);
    return n;
}

void eng_sched_destroy(eng_sched *s)
{
    if (!s)
        return;
    eng_sched_stop(s);
    eng_event *e = eng_sched_take_events(s);
    while (e) {
        eng_event *next = e->next;
        if (e->kind == ENG_EV_DONE || e->kind == ENG_EV_RESULT || e->kind == ENG_EV_ERROR)
            eng_request_free(e->req);
        eng_event_free(e);
        e = next;
    }
    free(s->seqs);
    free(s->eph_used);
    free(s->logits);
    free(s->step_slots);
    free(s->step_ids);
    eng_session_table_free(&s->sessions);
    if (s->pool)
        eng_state_pool_destroy(s->pool);
    if (s->model)
        eng_model_close(s->model);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s->model_dir);
    free(s);
}
