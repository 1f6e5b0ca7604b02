/* sched_step.c - one engine iteration over the active sequences (see
 * sched_internal.h): the prefill phase under the per-iteration token budget,
 * then the batched decode step; and how a sequence ends.
 *
 * Why a budget: a prompt prefilled whole stalls every running stream for
 * as long as it takes.  Here an iteration prefills at most max_step_tokens
 * prompt tokens, so a stream waits at most one budgeted chunk between two
 * tokens however long the prompts that arrive.  A long prompt is prefilled
 * over several iterations, each chunk continuing from the state the
 * previous one left in the sequence's slot (eng_model_prefill continues
 * from the slot's state), and its first token is sampled only from the
 * last chunk's logits.  The budget counts prefill tokens only: the decode
 * step always runs, one token per decoding sequence.
 *
 * Engine thread only.  Never admits requests or touches the queues.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/sched_internal.h"
#include "engine/xalloc.h"

const double eng_queue_wait_bounds_s[ENG_WAIT_BUCKETS - 1] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                               0.25,  0.5,   1,    2.5,   10};

int eng_sched_default_step_tokens(const char *backend)
{
    return backend && !strcmp(backend, "cuda") ? 2048 : 256;
}

/* Appends text to the event's (malloc'ed, NUL-terminated) text. */
static void ev_text_append(eng_event *e, const char *text, size_t len)
{
    if (!len)
        return;
    e->text = xrealloc(e->text, e->text_len + len + 1);
    memcpy(e->text + e->text_len, text, len);
    e->text_len += len;
    e->text[e->text_len] = '\0';
}

void eng_sched_seq_end(eng_sched *s, int i, eng_finish finish, const ssmd_err *err, eng_evlist *out)
{
    sched_seq *q = &s->seqs[i];
    eng_request *r = q->req;
    if (!err) {
        eng_event *e = eng_evlist_add(out, ENG_EV_DONE, r);
        e->finish = finish;
        e->n_prompt_tokens = q->n_prompt;
        e->n_gen_tokens = q->seq.n_gen;
        eng_seq_finish(&q->seq);
        ev_text_append(e, q->seq.text, q->seq.text_len);
    } else {
        eng_evlist_error(out, r, err);
    }
    if (q->session >= 0)
        eng_sched_session_end(s, q->session, q, out->tail);
    if (q->eph >= 0)
        s->eph_used[q->eph] = 0;
    eng_seq_close(&q->seq);
    s->n_active--;
    if (i != s->n_active)
        s->seqs[i] = s->seqs[s->n_active];
    memset(&s->seqs[s->n_active], 0, sizeof(sched_seq));
}

void eng_sched_seq_fail(eng_sched *s, int i, int code, eng_evlist *out)
{
    ssmd_err err;
    ssmd_err_set(&err, code, "%s", ssmd_err_default_message(code));
    eng_sched_seq_end(s, i, ENG_FINISH_NONE, &err, out);
}

/* Samples sequence i's next token from logits: TOKEN event with its text,
 * and the sequence ends when it finished. */
static void seq_next(eng_sched *s, int i, float *logits, eng_evlist *out)
{
    sched_seq *q = &s->seqs[i];
    eng_logprobs lp;
    eng_finish finish = eng_seq_next(&q->seq, logits, &lp);
    eng_event *e = eng_evlist_add(out, ENG_EV_TOKEN, q->req);
    e->token = q->seq.last;
    e->step = s->iter;
    if (q->req->sampling.logprobs > 0) {
        e->has_logprobs = 1;
        e->lp = lp;
    }
    ev_text_append(e, q->seq.text, q->seq.text_len);
    if (finish != ENG_FINISH_NONE)
        eng_sched_seq_end(s, i, finish, NULL, out);
}

/* ---- prefill ---- */

/* Index of the earliest admitted sequence still prefilling, or -1. */
static int oldest_prefilling(const eng_sched *s)
{
    int best = -1;
    for (int i = 0; i < s->n_active; i++) {
        const sched_seq *q = &s->seqs[i];
        if (q->n_done < q->n_ids && (best < 0 || q->order < s->seqs[best].order))
            best = i;
    }
    return best;
}

/* Sequence i reaches its first chunk: how long it waited since submission. */
static void observe_queue_wait(eng_sched *s, const sched_seq *q)
{
    double wait_s = (double)(eng_now_mono_ns() - q->req->submit_ns) * 1e-9;
    int b = 0;
    while (b < ENG_WAIT_BUCKETS - 1 && wait_s > eng_queue_wait_bounds_s[b])
        b++;
    pthread_mutex_lock(&s->lock);
    s->stats.queue_wait_hist[b]++;
    s->stats.queue_wait_sum_s += wait_s;
    s->stats.queue_waits++;
    pthread_mutex_unlock(&s->lock);
}

/* Sequence i's whole prompt is in its state: count it, and take the first
 * token from the last chunk's logits (or end at once for max_tokens 0). */
static void prefill_done(eng_sched *s, int i, eng_evlist *out)
{
    eng_request *r = s->seqs[i].req;
    pthread_mutex_lock(&s->lock);
    /* the request's own prompt, as its usage counts it: a session's
     * pending token was counted when it was generated */
    s->stats.prompt_tokens += (uint64_t)r->n_prompt;
    s->stats.gen_tokens += r->max_tokens > 0;
    pthread_mutex_unlock(&s->lock);
    if (r->max_tokens == 0)
        eng_sched_seq_end(s, i, ENG_FINISH_LENGTH, NULL, out);
    else
        seq_next(s, i, s->logits, out);
}

/* Prefills chunks, oldest admission first, until the budget is spent or no
 * sequence is prefilling; returns the tokens prefilled.  Only the oldest
 * prefilling sequence can be cut short, so no sequence waits behind a
 * younger one (no starvation). */
static int prefill_phase(eng_sched *s, eng_evlist *out)
{
    int budget = s->max_step_tokens, done = 0, i;
    while (budget > 0 && (i = oldest_prefilling(s)) >= 0) {
        sched_seq *q = &s->seqs[i];
        int chunk = q->n_ids - q->n_done < budget ? q->n_ids - q->n_done : budget;
        int last = q->n_done + chunk == q->n_ids;
        if (q->n_done == 0)
            observe_queue_wait(s, q);
        float *logits = last && q->req->max_tokens > 0 ? s->logits : NULL;
        ssmd_err err = {0};
        int rc = eng_model_prefill(s->model, s->pool, q->slot, q->seq.history + q->n_done, chunk, logits, 0,
                                   &err);
        if (rc != SSMD_OK) { /* a bad id: the state is unchanged */
            eng_sched_seq_end(s, i, ENG_FINISH_NONE, &err, out);
            continue;
        }
        if (q->session >= 0)
            eng_sched_session_consumed(s, q->session, q->seq.history + q->n_done, chunk, last);
        q->n_done += chunk;
        budget -= chunk;
        done += chunk;
        if (last)
            prefill_done(s, i, out);
    }
    return done;
}

/* ---- decode ---- */

/* One batched decode step for every sequence whose prompt is done. */
static void decode_step(eng_sched *s, eng_evlist *out)
{
    int b = 0;
    for (int i = 0; i < s->n_active; i++) {
        if (s->seqs[i].n_done < s->seqs[i].n_ids)
            continue;
        s->step_seqs[b] = i;
        s->step_slots[b] = s->seqs[i].slot;
        s->step_ids[b] = s->seqs[i].seq.last;
        b++;
    }
    if (b == 0)
        return;
    ssmd_err err = {0};
    int rc = eng_model_decode(s->model, s->pool, s->step_slots, s->step_ids, b, s->logits, &err);
    if (rc != SSMD_OK) {
        for (int k = b - 1; k >= 0; k--)
            eng_sched_seq_fail(s, s->step_seqs[k], SSMD_EINTERNAL, out);
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
    /* Row k's sequence is at step_seqs[k], in increasing order.  Ending a
     * sequence moves the last one into its index, which is above every
     * index not yet visited, so walk the rows backwards. */
    for (int k = b - 1; k >= 0; k--)
        seq_next(s, s->step_seqs[k], s->logits + (size_t)k * (size_t)s->info.n_vocab, out);
}

void eng_sched_iterate(eng_sched *s, eng_evlist *out)
{
    s->iter++;
    int n = prefill_phase(s, out);
    if (n > 0) {
        int bucket = 0;
        while (bucket < ENG_PREFILL_BUCKETS - 1 && (1 << bucket) < n)
            bucket++;
        pthread_mutex_lock(&s->lock);
        s->stats.prefill_tokens += (uint64_t)n;
        s->stats.prefill_steps++;
        s->stats.prefill_hist[bucket]++;
        if (n > s->stats.prefill_max)
            s->stats.prefill_max = n;
        pthread_mutex_unlock(&s->lock);
    }
    decode_step(s, out);
}
