/* scheduler.c - the engine thread and its two queues (see scheduler.h):
 * admission of queued completions.
 *
 * One iteration: take the incoming requests, run session operations at once
 * (sched_session.c), queue completions, drop canceled ones, admit waiting
 * completions in arrival order up to max_batch (a slot and a history; no
 * model work), then eng_sched_iterate (sched_step.c): budgeted prefill
 * chunks and one batched decode step, posting events after each phase.
 * Each sequence steps through eng_seq_next (sequence.c), the same step
 * `ssmd generate` uses.  Never touches HTTP or JSON and never
 * blocks on the loop thread: the only shared things are the two lists, the
 * stats and the stop and hold flags, all under `lock`.
 */
#include "engine/scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/sched_internal.h"
#include "engine/xalloc.h"

/* Moves l's events to the outgoing queue and wakes the loop. */
static void ev_post(eng_sched *s, eng_evlist *l)
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
    s->stats.sessions_host = s->host.n_live;
    pthread_mutex_unlock(&s->lock);
    l->head = l->tail = NULL;
    if (s->notify)
        s->notify(s->notify_arg);
}

/* ---- completions ---- */

/* The seqs entries r takes: one per choice of each prompt. */
static int n_seqs(const eng_request *r) { return sched_n_prompts(r) * sched_n_choices(r); }

/* Opens choice c of r in the next free seqs entry (not yet counted in
 * n_active): its sampler (seed + c), its slot (the session's, or a free
 * one-off slot).  Returns SSMD_OK or the sampler's error (nothing kept). */
static int seq_open(eng_sched *s, eng_request *r, int c, int sidx, ssmd_err *err)
{
    sched_seq *q = &s->seqs[s->n_active];
    const int k = c % sched_n_choices(r);
    memset(q, 0, sizeof *q);
    q->req = r;
    q->choice = c;
    q->group = c / sched_n_choices(r);
    q->phase = k ? SCHED_FORK_WAIT : SCHED_PREFILL;
    q->session = sidx;
    q->eph = -1;
    q->n_prompt = sched_prompt_len(r, q->group);
    q->order = s->n_admitted;
    const char *stops[ENG_STOP_MAX];
    for (int j = 0; j < r->n_stop; j++)
        stops[j] = r->stop[j];
    eng_sampling sampling = r->sampling;
    sampling.seed += (uint64_t)c; /* wraps: the documented derivation */
    eng_seq_params sp = {.sampling = &sampling, .n_vocab = s->info.n_vocab, .tok = s->info.tok,
                         .stops = stops, .n_stop = r->n_stop, .max_tokens = r->max_tokens,
                         .eos_id = r->ignore_eos ? -1 : s->info.eos_id};
    if (eng_seq_init(&q->seq, &sp, err) != SSMD_OK) {
        memset(q, 0, sizeof *q);
        return err->code;
    }
    if (sidx >= 0) {
        q->slot = sidx;
    } else {
        for (int j = 0; j < s->opts.max_batch && q->eph < 0; j++)
            if (!s->eph_used[j])
                q->eph = j;
        q->slot = s->opts.max_sessions + q->eph;
        s->eph_used[q->eph] = 1;
    }
    s->n_active++;
    return SSMD_OK;
}

/* Starts r's sequences in free seqs entries (the caller made room for
 * n_seqs(r)): choice 0 with the prompt in its history (pending token
 * first), the others waiting to copy its state; the prefill runs in later
 * iterations (sched_step.c).  Errors become r's final event. */
static void admit(eng_sched *s, eng_request *r, eng_evlist *out)
{
    ssmd_err err = {0};
    int sidx = -1;
    if (r->session[0]) {
        sidx = eng_sched_session_find(s, r, out);
        if (sidx < 0)
            return;
        if (r->prompt_is_history && !eng_sched_session_trim_history(s, sidx, r, out))
            return;
    }
    int32_t pending = sidx >= 0 ? s->sessions.entries[sidx].pending : -1;
    for (int g = 0; g < sched_n_prompts(r); g++)
        if (sched_prompt_len(r, g) + (pending >= 0) == 0) {
            eng_evlist_error_code(out, r, SSMD_EINVAL, "prompt is empty");
            return;
        }
    int first = s->n_active;
    for (int c = 0; c < n_seqs(r); c++) {
        if (seq_open(s, r, c, sidx, &err) != SSMD_OK) {
            while (s->n_active > first) { /* no event was posted for them */
                sched_seq *q = &s->seqs[--s->n_active];
                if (q->eph >= 0)
                    s->eph_used[q->eph] = 0;
                eng_seq_close(&q->seq);
                memset(q, 0, sizeof *q);
            }
            eng_evlist_error(out, r, &err);
            return;
        }
    }
    s->n_admitted++;
    memset(&r->run, 0, sizeof r->run);
    r->run.choices_left = n_seqs(r);
    if (sidx >= 0)
        eng_sched_session_begin(s, sidx);
    for (int i = first; i < s->n_active; i++) { /* each prompt's first choice prefills it */
        sched_seq *lead = &s->seqs[i];
        if (lead->phase != SCHED_PREFILL)
            continue;
        lead->n_ids = lead->n_prompt + (pending >= 0);
        if (sidx < 0)
            eng_state_slot_zero(s->pool, lead->slot);
        /* the chunks are read from the history: pending token, then prompt */
        if (pending >= 0)
            eng_seq_push_history(&lead->seq, &pending, 1);
        eng_seq_push_history(&lead->seq, sched_prompt_at(r, lead->group), lead->n_prompt);
    }
}

/* Whether a completion can never run here: more choices than a batch
 * holds, or several choices on a session (which would it keep?).  Appends
 * the error.  The server refuses both first; this guards the engine. */
static int refuse_choices(eng_sched *s, eng_request *r, eng_evlist *out)
{
    ssmd_err err;
    if (n_seqs(r) > s->opts.max_batch)
        ssmd_err_set(&err, SSMD_EINVAL,
                     "%d choices (n times the prompts) are more than the %d sequences a batch holds (--max-batch)",
                     n_seqs(r), s->opts.max_batch);
    else if (n_seqs(r) > 1 && r->session[0])
        ssmd_err_set(&err, SSMD_EINVAL,
                     "several choices or prompts cannot continue a session: a session keeps one history");
    else
        return 0;
    eng_evlist_error(out, r, &err);
    return 1;
}

/* ---- the thread ---- */

static void end_all(eng_sched *s, int code, eng_evlist *out)
{
    while (s->n_active > 0)
        eng_sched_seq_fail(s, s->n_active - 1, code, out);
    while (s->wait_head) {
        eng_request *r = s->wait_head;
        s->wait_head = r->next;
        r->next = NULL;
        eng_evlist_error_code(out, r, code, NULL);
    }
    s->wait_tail = NULL;
    s->n_waiting = 0;
}

static void drop_canceled(eng_sched *s, eng_evlist *out)
{
    for (int i = s->n_active - 1; i >= 0; i--)
        if (atomic_load(&s->seqs[i].req->canceled))
            eng_sched_seq_fail(s, i, SSMD_ECANCELED, out);
    eng_request **pp = &s->wait_head;
    s->wait_tail = NULL;
    while (*pp) {
        eng_request *r = *pp;
        if (atomic_load(&r->canceled)) {
            *pp = r->next;
            r->next = NULL;
            s->n_waiting--;
            eng_evlist_error_code(out, r, SSMD_ECANCELED, NULL);
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
    in->state_bytes = eng_model_state_bytes(s->model); /* the host tier is sized by it */
    rc = eng_sched_tier_init(s, err);
    if (rc != SSMD_OK)
        return rc;
    pthread_mutex_lock(&s->lock);
    s->stats.host_capacity = s->host.capacity;
    pthread_mutex_unlock(&s->lock);
    const eng_model_config *cfg = eng_model_cfg(s->model);
    in->tok = eng_model_tokenizer(s->model);
    in->n_vocab = eng_model_n_vocab(s->model);
    in->eos_id = cfg->eos_token_id;
    in->bos_id = cfg->bos_token_id;
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
    s->step_seqs = xcalloc((size_t)mb, sizeof *s->step_seqs);
    s->chunks = xcalloc((size_t)mb, sizeof *s->chunks);
    s->chunk_seq = xcalloc((size_t)mb, sizeof *s->chunk_seq);
    s->chunk_req = xcalloc((size_t)mb, sizeof *s->chunk_req);
    s->chunk_choice = xcalloc((size_t)mb, sizeof *s->chunk_choice);
    s->chunk_err = xcalloc((size_t)mb, sizeof *s->chunk_err);
    s->prefill_logits = xcalloc((size_t)mb * (size_t)in->n_vocab, sizeof *s->prefill_logits);
    return SSMD_OK;
}

static void *thread_main(void *arg)
{
    eng_sched *s = arg;
    eng_evlist out = {0};
    ssmd_err err = {0};
    if (load(s, &err) != SSMD_OK) {
        eng_event *e = eng_evlist_add(&out, ENG_EV_LOAD_FAILED, NULL);
        e->err = err;
        ev_post(s, &out);
        return NULL;
    }
    eng_evlist_add(&out, ENG_EV_LOADED, NULL);
    ev_post(s, &out);
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!s->stopping && (s->held || (!s->in_head && s->n_active == 0 && !s->n_waiting))) {
            double left = s->held ? -1 : eng_sched_session_wait_s(s);
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
        eng_sched_session_expire(s);
        while (in) {
            eng_request *r = in;
            in = r->next;
            r->next = NULL;
            if (r->op != ENG_OP_COMPLETE) {
                eng_sched_session_run_op(s, r, &out);
            } else if (refuse_choices(s, r, &out)) {
                /* answered now: it could never be admitted */
            } else if (r->session[0] && !eng_sched_tier_must_wait(s, r->session) &&
                       eng_sched_session_find(s, r, &out) < 0) {
                /* unknown, busy or stale: answered now, not after waiting
                 * for a batch slot (admit checks again); a session that
                 * waits in host memory for a device slot to free is not
                 * refused but queued */
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
        /* first come, first served: a request with more choices than the
         * batch has room for waits, and so does everyone behind it; so does
         * one whose host-tier session has no device slot to come back to
         * until a running completion ends */
        while (s->wait_head && s->n_active + n_seqs(s->wait_head) <= s->opts.max_batch &&
               !(s->wait_head->session[0] && eng_sched_tier_must_wait(s, s->wait_head->session))) {
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
            eng_sched_iterate(s, &out);
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
    s->model_dir = xstrdup(opts->model_dir ? opts->model_dir : "");
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
    s->max_step_tokens = opts->max_step_tokens > 0 ? opts->max_step_tokens
                                                   : eng_sched_default_step_tokens(opts->model.backend);
    s->stats.max_step_tokens = s->max_step_tokens;
    s->stats.step_budget = s->max_step_tokens;
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
    r->submit_ns = eng_now_mono_ns();
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

void eng_sched_hold(eng_sched *s, int hold)
{
    pthread_mutex_lock(&s->lock);
    s->held = hold;
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
    eng_evlist out = {0};
    pthread_mutex_lock(&s->lock);
    eng_request *in = s->in_head;
    s->in_head = s->in_tail = NULL;
    pthread_mutex_unlock(&s->lock);
    while (in) {
        eng_request *r = in;
        in = r->next;
        r->next = NULL;
        eng_evlist_error_code(&out, r, SSMD_EDRAINING, NULL);
    }
    end_all(s, SSMD_EDRAINING, &out);
    ev_post(s, &out);
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
    free(s->step_seqs);
    free(s->chunks);
    free(s->chunk_seq);
    free(s->chunk_req);
    free(s->chunk_choice);
    free(s->chunk_err);
    free(s->prefill_logits);
    eng_sched_tier_free(s);
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
