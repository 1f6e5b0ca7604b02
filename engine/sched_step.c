/* sched_step.c - one engine iteration over the active sequences (see
 * sched_internal.h): the prefill phase under the per-iteration token budget
 * (the chunks of one iteration in one batched pass), the fork of a
 * request's n choices once its prompt is in, then the batched decode step;
 * and how a sequence ends.
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
 * A token budget alone leaves the pace to the model: on a bigger model or a
 * slower machine, 256 prompt tokens may take ten decode steps' time.  So,
 * with a time ratio set, while sequences are decoding an iteration prefills
 * no more tokens than fit in ratio x the decode step's time (a moving
 * average) at the cost prefill has been measured at (prefill_cost.h: an
 * overhead per chunk plus a cost per token, so three short chunks are
 * charged three passes), never fewer than ENG_MIN_PREFILL_CHUNK.  An
 * iteration with prefill then takes at most about 1 + ratio decode steps,
 * which is what bounds a running stream's inter-token latency; with
 * nothing decoding, prompts take the whole token budget.
 *
 * Engine thread only.  Never admits requests or touches the queues.
 */
#include <math.h>
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
    r->run.choices_left--;
    r->run.n_gen += q->seq.n_gen;
    if (err && !r->run.failed) {
        r->run.failed = 1;
        r->run.err = *err;
    }
    if (r->run.choices_left == 0 && r->run.failed) {
        eng_evlist_error(out, r, &r->run.err);
    } else if (!err) { /* a failed choice of a request still running says nothing yet */
        eng_event *e = eng_evlist_add(out, r->run.choices_left ? ENG_EV_CHOICE_END : ENG_EV_DONE, r);
        e->choice = q->choice;
        e->finish = finish;
        e->n_prompt_tokens = r->n_prompt; /* every prompt, once */
        e->n_gen_tokens = r->run.choices_left ? q->seq.n_gen : r->run.n_gen;
        eng_seq_finish(&q->seq);
        ev_text_append(e, q->seq.text, q->seq.text_len);
    }
    if (q->session >= 0) /* one choice only: out's tail is the final event */
        eng_sched_session_end(s, q->session, q, out->tail);
    if (q->eph >= 0)
        s->eph_used[q->eph] = 0;
    eng_seq_close(&q->seq);
    s->n_active--;
    if (i != s->n_active)
        s->seqs[i] = s->seqs[s->n_active];
    memset(&s->seqs[s->n_active], 0, sizeof(sched_seq));
}

/* Ends every sequence of r with err (all its choices). */
static void end_request(eng_sched *s, eng_request *r, const ssmd_err *err, eng_evlist *out)
{
    for (int i = s->n_active - 1; i >= 0; i--)
        if (s->seqs[i].req == r)
            eng_sched_seq_end(s, i, ENG_FINISH_NONE, err, out);
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
    e->choice = q->choice;
    if (q->req->sampling.logprobs > 0) {
        e->has_logprobs = 1;
        e->lp = lp;
    }
    ev_text_append(e, q->seq.text, q->seq.text_len);
    if (finish != ENG_FINISH_NONE)
        eng_sched_seq_end(s, i, finish, NULL, out);
}

/* ---- prefill ---- */

/* Sequence q reaches its first chunk: how long it waited since submission. */
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

/* Index of choice k of r, or -1 when it has ended. */
static int find_choice(const eng_sched *s, const eng_request *r, int k)
{
    for (int i = 0; i < s->n_active; i++)
        if (s->seqs[i].req == r && s->seqs[i].choice == k)
            return i;
    return -1;
}

/* A prompt's first choice (at index i) has the whole prompt in its state:
 * every other choice of that prompt copies that state and history, and its
 * own copy of the prompt's logits (row c of s->logits for choice c:
 * sampling uses them as scratch).  This is what makes n choices cost one
 * prefill. */
static void fork_choices(eng_sched *s, int i, const float *logits)
{
    const sched_seq *lead = &s->seqs[i];
    const size_t V = (size_t)s->info.n_vocab;
    for (int j = 0; j < s->n_active; j++) {
        sched_seq *q = &s->seqs[j];
        if (q->req != lead->req || q->group != lead->group || q->phase != SCHED_FORK_WAIT)
            continue;
        eng_state_slot_copy(s->pool, q->slot, lead->slot);
        eng_seq_push_history(&q->seq, lead->seq.history, lead->seq.n_history);
        q->n_done = lead->n_done;
        q->phase = SCHED_DECODE;
        if (logits)
            memcpy(s->logits + (size_t)q->choice * V, logits, V * sizeof *s->logits);
    }
}

/* Prompt g of r is whole in the state of its first choice (choice
 * c0 = g * n): count it, fork its other choices, and take each choice's
 * first token from logits, the last position's (the first choice uses them
 * as they are; NULL for max_tokens 0, which ends every choice at once). */
static void prefill_done(eng_sched *s, eng_request *r, int c0, float *logits, eng_evlist *out)
{
    const int n = sched_n_choices(r), g = c0 / n;
    pthread_mutex_lock(&s->lock);
    /* the prompt, once, as usage counts it: a session's pending token was
     * counted when it was generated */
    s->stats.prompt_tokens += (uint64_t)sched_prompt_len(r, g);
    s->stats.gen_tokens += r->max_tokens > 0 ? (uint64_t)n : 0;
    pthread_mutex_unlock(&s->lock);
    if (n > 1)
        fork_choices(s, find_choice(s, r, c0), logits);
    for (int c = c0; c < c0 + n; c++) {
        int j = find_choice(s, r, c); /* ending a choice moves the others */
        if (j < 0)
            continue;
        if (r->max_tokens == 0)
            eng_sched_seq_end(s, j, ENG_FINISH_LENGTH, NULL, out);
        else
            seq_next(s, j, c > c0 ? s->logits + (size_t)c * (size_t)s->info.n_vocab : logits, out);
    }
}

/* Moves a moving average a quarter of the way to sample (the first sample
 * sets it): recent iterations count most, one odd one not much. */
static void average_in(double *avg, double sample)
{
    *avg = *avg > 0 ? *avg + 0.25 * (sample - *avg) : sample;
}

/* This iteration's prefill time allowance in ns (see the top of the file),
 * infinite when time does not limit it: no ratio, nothing decoding, or
 * nothing measured yet. */
static double step_allowance(const eng_sched *s)
{
    int decoding = 0;
    for (int i = 0; i < s->n_active && !decoding; i++)
        decoding = s->seqs[i].phase == SCHED_DECODE;
    const double ratio = s->opts.prefill_time_ratio;
    if (ratio <= 0 || !decoding || s->decode_step_ns <= 0 || !(s->prefill_cost.per_token_ns > 0))
        return INFINITY;
    return ratio * s->decode_step_ns;
}

/* The tokens a chunk may take out of *allowance (all of want when time
 * does not limit it): the first chunk of an iteration at least
 * ENG_MIN_PREFILL_CHUNK, so that prompts always advance; a later one 0
 * rather than a pass over fewer tokens than that. */
static int chunk_take(const eng_sched *s, double *allowance, int want, int first)
{
    int fit = (int)eng_prefill_cost_take(&s->prefill_cost, allowance, want);
    if (fit < ENG_MIN_PREFILL_CHUNK && fit < want) {
        *allowance = 0; /* spent: no later chunk this iteration */
        fit = first ? (want < ENG_MIN_PREFILL_CHUNK ? want : ENG_MIN_PREFILL_CHUNK) : 0;
    }
    return fit;
}

/* The chunks of this iteration into s->chunks (n of them): the oldest
 * prefilling sequences first, each taking what the token budget and the
 * time allowance leave, each chunk charged its own pass's overhead.  Only
 * the last one planned can be cut short, so no sequence waits behind a
 * younger one (no starvation). */
static int plan_chunks(eng_sched *s)
{
    const size_t V = (size_t)s->info.n_vocab;
    int budget = s->max_step_tokens, n = 0;
    double allowance = step_allowance(s);
    { /* the gauge: what one chunk may take this iteration */
        double a = allowance;
        int one = chunk_take(s, &a, budget, 1);
        if (one != s->stats.step_budget) { /* this thread is its only writer */
            pthread_mutex_lock(&s->lock);
            s->stats.step_budget = one;
            pthread_mutex_unlock(&s->lock);
        }
    }
    while (budget > 0) {
        int i = -1;
        for (int j = 0; j < s->n_active; j++) { /* the oldest not planned yet */
            const sched_seq *q = &s->seqs[j];
            if (q->phase == SCHED_PREFILL && q->planned != s->iter && (i < 0 || q->order < s->seqs[i].order))
                i = j;
        }
        if (i < 0)
            break;
        sched_seq *q = &s->seqs[i];
        int len = chunk_take(s, &allowance, q->n_ids - q->n_done < budget ? q->n_ids - q->n_done : budget, n == 0);
        if (len == 0)
            break;
        int last = q->n_done + len == q->n_ids;
        q->planned = s->iter;
        s->chunk_seq[n] = i;
        s->chunks[n] = (eng_prefill_chunk){.slot = q->slot, .ids = q->seq.history + q->n_done, .n = len,
                                           .logits = last && q->req->max_tokens > 0
                                                         ? s->prefill_logits + (size_t)n * V
                                                         : NULL};
        budget -= len;
        n++;
    }
    return n;
}

/* Runs the n planned chunks: one batched prefill, or (the test seam, or a
 * bad id somewhere) one by one so each chunk's error is its own.  Sets
 * s->chunk_err[k].code (SSMD_OK or the chunk's error). */
static void run_chunks(eng_sched *s, int n)
{
    for (int k = 0; k < n; k++)
        s->chunk_err[k].code = SSMD_OK;
    if (!s->opts.prefill_unbatched &&
        eng_model_prefill_multi(s->model, s->pool, s->chunks, n, &s->chunk_err[0]) == SSMD_OK)
        return;
    for (int k = 0; k < n; k++) { /* a failed chunk leaves its state unchanged */
        const eng_prefill_chunk *c = &s->chunks[k];
        eng_model_prefill(s->model, s->pool, c->slot, c->ids, c->n, c->logits, 0, &s->chunk_err[k]);
    }
}

/* The prefill phase: plans, runs and books this iteration's chunks; a
 * sequence whose last chunk ran takes its first tokens.  Returns the
 * tokens prefilled. */
static int prefill_phase(eng_sched *s, eng_evlist *out)
{
    int n = plan_chunks(s), done = 0;
    if (n == 0)
        return 0;
    for (int k = 0; k < n; k++)
        if (s->seqs[s->chunk_seq[k]].n_done == 0)
            observe_queue_wait(s, &s->seqs[s->chunk_seq[k]]);
    const int64_t t0 = eng_now_mono_ns();
    run_chunks(s, n);
    const int64_t spent = eng_now_mono_ns() - t0;
    /* book every chunk while the indices hold, then end and sample (which
     * move sequences), finding each by its request */
    for (int k = 0; k < n; k++) {
        sched_seq *q = &s->seqs[s->chunk_seq[k]];
        const eng_prefill_chunk *c = &s->chunks[k];
        s->chunk_req[k] = q->req;
        s->chunk_choice[k] = q->choice;
        if (s->chunk_err[k].code != SSMD_OK)
            continue;
        int last = q->n_done + c->n == q->n_ids;
        if (q->session >= 0)
            eng_sched_session_consumed(s, q->session, c->ids, c->n, last);
        q->n_done += c->n;
        done += c->n;
        if (last)
            q->phase = SCHED_DECODE;
    }
    eng_prefill_cost_add(&s->prefill_cost, n, done, (double)spent);
    for (int k = 0; k < n; k++) {
        eng_request *r = s->chunk_req[k];
        int i = find_choice(s, r, s->chunk_choice[k]);
        if (s->chunk_err[k].code != SSMD_OK) {
            if (i >= 0) /* not yet ended by another of its prompts' chunks */
                end_request(s, r, &s->chunk_err[k], out);
        } else if (i >= 0 && s->seqs[i].phase == SCHED_DECODE && s->seqs[i].seq.n_gen == 0) {
            prefill_done(s, r, s->chunk_choice[k], s->chunks[k].logits, out);
        }
    }
    return done;
}

/* ---- decode ---- */

/* One batched decode step for every sequence whose prompt is done. */
static void decode_step(eng_sched *s, eng_evlist *out)
{
    int b = 0;
    for (int i = 0; i < s->n_active; i++) {
        if (s->seqs[i].phase != SCHED_DECODE)
            continue;
        s->step_seqs[b] = i;
        s->step_slots[b] = s->seqs[i].slot;
        s->step_ids[b] = s->seqs[i].seq.last;
        b++;
    }
    if (b == 0)
        return;
    ssmd_err err = {0};
    const int64_t t0 = eng_now_mono_ns();
    int rc = eng_model_decode(s->model, s->pool, s->step_slots, s->step_ids, b, s->logits, &err);
    average_in(&s->decode_step_ns, (double)(eng_now_mono_ns() - t0));
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
