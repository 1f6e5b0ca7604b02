/* test_scheduler.c - engine/scheduler.c (and sched_step.c) driven through
 * its public API with a fixture model: completions are admitted in arrival
 * order, a queued and a running request end with SSMD_ECANCELED, a request
 * on a session that is running gets the busy error at once, a full session
 * table evicts the least recently used session; chunked and batched
 * prefill give every request the tokens whole prefill gives, at budgets 1,
 * 7 and 512; prompts
 * are prefilled first come, first served; a running stream gets a token
 * every iteration while a 4,000-token prompt is prefilled; n choices come
 * from one prefill and equal separate requests seeded seed + k; sessions
 * moved to host memory and back continue exactly.
 *
 * No sleeping: the test waits on the notify callback (10 s at most per
 * event, then fails), and eng_sched_hold lets it queue several requests
 * before the engine thread sees any. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/scheduler.h"

#define EVENT_WAIT_S 10
#define FOREVER (1 << 30) /* max_tokens of a request only a cancel ends */

typedef struct harness {
    eng_sched *s;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int notified;
    eng_event *head, *tail; /* taken from the scheduler, not yet looked at */
} harness;

static void on_notify(void *arg)
{
    harness *h = arg;
    pthread_mutex_lock(&h->mu);
    h->notified = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* The next event, oldest first; fails the test after EVENT_WAIT_S. */
static eng_event *next_event(harness *h)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += EVENT_WAIT_S;
    for (;;) {
        if (h->head) {
            eng_event *e = h->head;
            h->head = e->next;
            if (!h->head)
                h->tail = NULL;
            e->next = NULL;
            return e;
        }
        eng_event *got = eng_sched_take_events(h->s);
        if (got) {
            h->head = got;
            for (h->tail = got; h->tail->next; h->tail = h->tail->next)
                ;
            continue;
        }
        /* a notify between the take and here left notified set: no wake-up is lost */
        pthread_mutex_lock(&h->mu);
        while (!h->notified)
            if (pthread_cond_timedwait(&h->cv, &h->mu, &until) != 0) {
                pthread_mutex_unlock(&h->mu);
                ck_abort_msg("no engine event within %d s", EVENT_WAIT_S);
            }
        h->notified = 0;
        pthread_mutex_unlock(&h->mu);
    }
}

static int is_final(const eng_event *e)
{
    return e->kind == ENG_EV_DONE || e->kind == ENG_EV_RESULT || e->kind == ENG_EV_ERROR;
}

/* Frees e, and its request when e is final (the engine is done with it). */
static void event_done(eng_event *e)
{
    if (is_final(e))
        eng_request_free(e->req);
    eng_event_free(e);
}

static size_t host_bytes; /* the next start's --host-session-memory (0: none) */
static double time_ratio; /* the next start's prefill_time_ratio (0: off) */

static void start_full(harness *h, int max_batch, int max_sessions, int max_step_tokens, int unbatched)
{
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    eng_sched_opts o;
    memset(&o, 0, sizeof o);
    o.model_dir = "tests/fixtures/mamba/untied_bias";
    eng_model_opts_defaults(&o.model);
    o.model.backend_opts.threads = 1;
    o.max_batch = max_batch;
    o.max_sessions = max_sessions;
    o.max_step_tokens = max_step_tokens;
    o.prefill_unbatched = unbatched;
    o.host_session_bytes = host_bytes;
    o.prefill_time_ratio = time_ratio;
    ssmd_err err = {0};
    ck_assert_int_eq(eng_sched_start(&o, on_notify, h, &h->s, &err), SSMD_OK);
    eng_event *e = next_event(h);
    ck_assert_msg(e->kind == ENG_EV_LOADED, "load failed: %s", e->err.msg);
    event_done(e);
}

static void start_budget(harness *h, int max_batch, int max_sessions, int max_step_tokens)
{
    start_full(h, max_batch, max_sessions, max_step_tokens, 0);
}

static void start(harness *h, int max_batch, int max_sessions)
{
    start_budget(h, max_batch, max_sessions, 0);
}

static void stop(harness *h)
{
    eng_event *e;
    while ((e = h->head)) {
        h->head = e->next;
        event_done(e);
    }
    eng_sched_destroy(h->s); /* ends what still runs; frees its events */
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
}

/* A greedy completion of 3 prompt tokens that never stops at EOS. */
static eng_request *completion(const char *session, int max_tokens)
{
    eng_request *r = eng_request_new(ENG_OP_COMPLETE);
    r->n_prompt = 3;
    r->prompt = malloc(3 * sizeof *r->prompt);
    for (int i = 0; i < 3; i++)
        r->prompt[i] = 1 + i;
    r->max_tokens = max_tokens;
    r->ignore_eos = 1;
    r->sampling.temperature = 0;
    if (session)
        snprintf(r->session, sizeof r->session, "%s", session);
    return r;
}

static eng_request *session_op(eng_op op, const char *id)
{
    eng_request *r = eng_request_new(op);
    if (id)
        snprintf(r->session, sizeof r->session, "%s", id);
    return r;
}

/* Submits r and returns its final event's kind, with its error code in
 * *code and the session id of a RESULT in id (when not NULL).  Fails on an
 * event of another request. */
static eng_event_kind run_op(harness *h, eng_request *r, int *code, char *id)
{
    eng_sched_submit(h->s, r);
    for (;;) {
        eng_event *e = next_event(h);
        ck_assert_ptr_eq(e->req, r);
        if (!is_final(e)) {
            event_done(e);
            continue;
        }
        eng_event_kind k = e->kind;
        *code = e->kind == ENG_EV_ERROR ? e->err.code : SSMD_OK;
        if (id)
            memcpy(id, e->info.id, ENG_SESSION_ID_HEX + 1);
        event_done(e);
        return k;
    }
}

/* Waits for r's first TOKEN (r is then running); other requests' events
 * are not expected. */
static void wait_running(harness *h, eng_request *r)
{
    eng_event *e = next_event(h);
    ck_assert_ptr_eq(e->req, r);
    ck_assert_int_eq(e->kind, ENG_EV_TOKEN);
    event_done(e);
}

/* max_batch 1: three requests queued together run one after the other in
 * the order they were submitted. */
START_TEST(test_admission_is_fifo)
{
    harness h;
    start(&h, 1, 2);
    eng_request *r[3];
    eng_sched_hold(h.s, 1);
    for (int i = 0; i < 3; i++) {
        r[i] = completion(NULL, 3);
        eng_sched_submit(h.s, r[i]);
    }
    eng_sched_hold(h.s, 0);
    int current = 0, tokens = 0;
    while (current < 3) {
        eng_event *e = next_event(&h);
        ck_assert_msg(e->req == r[current], "event of request %d while %d runs",
                      e->req == r[0] ? 0 : e->req == r[1] ? 1 : 2, current);
        if (e->kind == ENG_EV_TOKEN) {
            tokens++;
        } else {
            ck_assert_int_eq(e->kind, ENG_EV_DONE);
            ck_assert_int_eq(e->finish, ENG_FINISH_LENGTH);
            ck_assert_int_eq(e->n_gen_tokens, 3);
            ck_assert_int_eq(tokens, 3);
            current++;
            tokens = 0;
        }
        event_done(e);
    }
    stop(&h);
}
END_TEST

/* A request waiting behind a running one, then the running one, are
 * canceled: each ends with an ERROR SSMD_ECANCELED, the waiting one without
 * ever producing a token. */
START_TEST(test_cancel_queued_and_running)
{
    harness h;
    start(&h, 1, 2);
    eng_request *run = completion(NULL, FOREVER), *queued = completion(NULL, 3);
    eng_sched_submit(h.s, run);
    wait_running(&h, run);
    eng_sched_submit(h.s, queued);
    /* The stats say `queued` is in the waiting queue; run's steps keep
     * events (and stats) coming meanwhile. */
    eng_sched_stats st;
    for (eng_sched_get_stats(h.s, &st); st.waiting != 1; eng_sched_get_stats(h.s, &st)) {
        eng_event *e = next_event(&h);
        ck_assert_ptr_eq(e->req, run);
        event_done(e);
    }
    ck_assert_int_eq(st.running, 1);
    eng_sched_cancel(h.s, queued);
    int ended = 0;
    while (ended < 2) {
        eng_event *e = next_event(&h);
        if (e->req == queued) {
            ck_assert_int_eq(e->kind, ENG_EV_ERROR); /* never a TOKEN */
            ck_assert_int_eq(e->err.code, SSMD_ECANCELED);
            ended++;
            eng_sched_cancel(h.s, run); /* now the running one */
        } else {
            ck_assert_ptr_eq(e->req, run);
            if (is_final(e)) {
                ck_assert_int_eq(ended, 1);
                ck_assert_int_eq(e->kind, ENG_EV_ERROR);
                ck_assert_int_eq(e->err.code, SSMD_ECANCELED);
                ended++;
            }
        }
        event_done(e);
    }
    eng_sched_get_stats(h.s, &st);
    ck_assert_int_eq(st.running + st.waiting, 0);
    stop(&h);
}
END_TEST

/* A second request on a session whose completion is running is answered
 * at once with the busy conflict; the session is usable again after. */
START_TEST(test_busy_session)
{
    harness h;
    start(&h, 2, 2);
    char id[ENG_SESSION_ID_HEX + 1];
    int code;
    ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_CREATE, NULL), &code, id), ENG_EV_RESULT);
    eng_request *first = completion(id, FOREVER);
    eng_sched_submit(h.s, first);
    wait_running(&h, first);
    eng_request *second = completion(id, 3);
    eng_sched_submit(h.s, second);
    for (;;) { /* first keeps running: only its tokens until second's answer */
        eng_event *e = next_event(&h);
        if (e->req == first) {
            ck_assert_int_eq(e->kind, ENG_EV_TOKEN);
            event_done(e);
            continue;
        }
        ck_assert_ptr_eq(e->req, second);
        ck_assert_int_eq(e->kind, ENG_EV_ERROR);
        ck_assert_int_eq(e->err.code, SSMD_ECONFLICT);
        ck_assert_ptr_nonnull(strstr(e->err.msg, "busy"));
        event_done(e);
        break;
    }
    eng_sched_cancel(h.s, first);
    for (;;) {
        eng_event *e = next_event(&h);
        ck_assert_ptr_eq(e->req, first);
        int final = is_final(e);
        if (final)
            ck_assert_int_eq(e->err.code, SSMD_ECANCELED);
        event_done(e);
        if (final)
            break;
    }
    ck_assert_int_eq(run_op(&h, completion(id, 2), &code, NULL), ENG_EV_DONE);
    stop(&h);
}
END_TEST

/* max_sessions 2: creating a third session evicts the least recently used
 * idle one (B: A was used by a completion after B was made). */
START_TEST(test_lru_eviction)
{
    harness h;
    start(&h, 1, 2);
    char a[ENG_SESSION_ID_HEX + 1], b[ENG_SESSION_ID_HEX + 1], c[ENG_SESSION_ID_HEX + 1];
    int code;
    ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_CREATE, NULL), &code, a), ENG_EV_RESULT);
    ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_CREATE, NULL), &code, b), ENG_EV_RESULT);
    ck_assert_int_eq(run_op(&h, completion(a, 1), &code, NULL), ENG_EV_DONE);
    ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_CREATE, NULL), &code, c), ENG_EV_RESULT);
    ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_INFO, b), &code, NULL), ENG_EV_ERROR);
    ck_assert_int_eq(code, SSMD_ENOTFOUND);
    ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_INFO, a), &code, NULL), ENG_EV_RESULT);
    ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_INFO, c), &code, NULL), ENG_EV_RESULT);
    eng_sched_stats st;
    eng_sched_get_stats(h.s, &st);
    ck_assert_int_eq(st.sessions, 2);
    stop(&h);
}
END_TEST

/* ---- chunked prefill ---- */

#define FIXTURE_VOCAB 97

/* A completion of n prompt tokens, a fixed pseudo-random sequence drawn
 * from `salt` (ids in [1, FIXTURE_VOCAB)), greedy when seed is 0, else
 * sampled with that seed; never stops at EOS. */
static eng_request *prompt_completion(const char *session, int n, uint32_t salt, uint64_t seed, int max_tokens)
{
    eng_request *r = eng_request_new(ENG_OP_COMPLETE);
    r->n_prompt = n;
    r->prompt = malloc((size_t)n * sizeof *r->prompt);
    uint32_t x = salt * 2654435761u + 1;
    for (int i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        r->prompt[i] = 1 + (int32_t)((x >> 8) % (FIXTURE_VOCAB - 1));
    }
    r->max_tokens = max_tokens;
    r->ignore_eos = 1;
    r->sampling.temperature = seed ? 0.9f : 0;
    r->sampling.seed = seed;
    if (session)
        snprintf(r->session, sizeof r->session, "%s", session);
    return r;
}

#define MIX_N 5
#define MIX_TOKENS 12

/* What every request of one run generated, by request. */
typedef struct mix_out {
    int32_t tokens[2 * MIX_N][MIX_TOKENS];
    int n[2 * MIX_N];
} mix_out;

/* Collects the events of reqs (n of them) until each has its final event,
 * which must be DONE; tokens go to row base + i of o. */
static void collect(harness *h, eng_request **reqs, int n, mix_out *o, int base)
{
    int left = n;
    while (left > 0) {
        eng_event *e = next_event(h);
        int i = 0;
        while (i < n && reqs[i] != e->req)
            i++;
        ck_assert_msg(i < n, "event of an unknown request");
        if (e->kind == ENG_EV_TOKEN) {
            ck_assert_int_lt(o->n[base + i], MIX_TOKENS);
            o->tokens[base + i][o->n[base + i]++] = e->token;
        } else {
            ck_assert_msg(e->kind == ENG_EV_DONE, "request %d failed: %s", i, e->err.msg);
            ck_assert_int_eq(e->n_gen_tokens, MIX_TOKENS);
            left--;
        }
        event_done(e);
    }
}

/* One run of a mixed load at a budget: MIX_N sessions each take a first
 * completion (prompts of 1 to 1,300 tokens, greedy and sampled, all queued
 * at once), then a second one that continues the session (its pending
 * token first). */
static void run_mix(int budget, int unbatched, mix_out *o)
{
    static const int lens[MIX_N] = {1, 9, 300, 1300, 40};
    harness h;
    memset(o, 0, sizeof *o);
    start_full(&h, 3, MIX_N, budget, unbatched);
    char ids[MIX_N][ENG_SESSION_ID_HEX + 1];
    int code;
    for (int i = 0; i < MIX_N; i++)
        ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_CREATE, NULL), &code, ids[i]), ENG_EV_RESULT);
    for (int round = 0; round < 2; round++) {
        eng_request *r[MIX_N];
        eng_sched_hold(h.s, 1);
        for (int i = 0; i < MIX_N; i++) {
            int n = round ? lens[MIX_N - 1 - i] / 2 + 1 : lens[i];
            r[i] = prompt_completion(ids[i], n, (uint32_t)(10 * round + i), i % 2 ? 0 : 100 + (uint64_t)i,
                                     MIX_TOKENS);
            eng_sched_submit(h.s, r[i]);
        }
        eng_sched_hold(h.s, 0);
        collect(&h, r, MIX_N, o, round * MIX_N);
    }
    eng_sched_stats st;
    eng_sched_get_stats(h.s, &st);
    ck_assert_int_eq(st.max_step_tokens, budget);
    ck_assert_int_le(st.prefill_max, budget);
    stop(&h);
}

/* Every request's tokens are the same whether its prompt is prefilled whole
 * and alone (a budget above every prompt, each chunk its own prefill) or in
 * chunks of 1, 7 or 512 tokens interleaved with other requests' chunks and
 * decode steps, the chunks of one iteration prefilled alone or together in
 * one batched pass. */
START_TEST(test_chunked_prefill_same_tokens)
{
    static const int budgets[] = {1, 7, 512, 1 << 20};
    static mix_out whole, chunked; /* static: too big for a test's stack under ASan */
    run_mix(1 << 20, 1, &whole);
    for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++) {
        for (int unbatched = 0; unbatched < 2; unbatched++) {
            if (budgets[b] == 1 << 20 && unbatched)
                continue; /* the reference itself */
            run_mix(budgets[b], unbatched, &chunked);
            for (int i = 0; i < 2 * MIX_N; i++) {
                ck_assert_int_eq(chunked.n[i], MIX_TOKENS);
                for (int k = 0; k < MIX_TOKENS; k++)
                    ck_assert_msg(chunked.tokens[i][k] == whole.tokens[i][k],
                                  "budget %d%s, request %d, token %d: %d, whole prefill gave %d", budgets[b],
                                  unbatched ? " unbatched" : "", i, k, chunked.tokens[i][k], whole.tokens[i][k]);
            }
        }
    }
}
END_TEST

/* Budget 16: a 100-token prompt queued before a 10-token one gets its first
 * token first, although the short one could have finished sooner. */
START_TEST(test_prefill_fcfs)
{
    harness h;
    start_budget(&h, 3, 2, 16);
    eng_request *first = prompt_completion(NULL, 100, 1, 0, 1), *second = prompt_completion(NULL, 10, 2, 0, 1);
    eng_sched_hold(h.s, 1);
    eng_sched_submit(h.s, first);
    eng_sched_submit(h.s, second);
    eng_sched_hold(h.s, 0);
    eng_event *e = next_event(&h);
    ck_assert_ptr_eq(e->req, first);
    ck_assert_int_eq(e->kind, ENG_EV_TOKEN);
    ck_assert_int_eq(e->step, 7); /* ceil(100 / 16) iterations */
    event_done(e);
    int final = 0;
    while (final < 2) {
        e = next_event(&h);
        if (e->req == second && e->kind == ENG_EV_TOKEN)
            ck_assert_int_eq(e->step, 7); /* the rest of iteration 7's budget */
        final += is_final(e);
        event_done(e);
    }
    stop(&h);
}
END_TEST

/* Cancels the endless `run`, takes events until it and the one other
 * request still open have ended, and stops the harness. */
static void cancel_and_stop(harness *h, eng_request *run)
{
    eng_sched_cancel(h->s, run);
    for (int final = 0; final < 2;) {
        eng_event *e = next_event(h);
        final += is_final(e);
        event_done(e);
    }
    stop(h);
}

/* Budget 64: while a 4,000-token prompt is prefilled (63 iterations), a
 * running stream gets one token in every iteration, and no iteration
 * prefills more than the budget.  Counted in iterations, not seconds, so
 * the test cannot flake on a slow machine. */
START_TEST(test_running_stream_not_stalled)
{
    enum { BUDGET = 64, LONG = 4000 };
    harness h;
    start_budget(&h, 2, 2, BUDGET);
    eng_request *run = completion(NULL, FOREVER);
    eng_sched_submit(h.s, run);
    eng_event *e;
    uint64_t last_step = 0;
    for (int k = 0; k < 2; k++) { /* iteration 1: the token after its prompt, then a decoded one */
        e = next_event(&h);
        ck_assert_ptr_eq(e->req, run);
        ck_assert_uint_eq(e->step, 1);
        last_step = e->step;
        event_done(e);
    }
    eng_request *lng = prompt_completion(NULL, LONG, 3, 0, 1);
    eng_sched_submit(h.s, lng);
    int during = 0; /* run's tokens before lng's first */
    for (;;) {
        e = next_event(&h);
        if (e->req == lng) {
            ck_assert_int_eq(e->kind, ENG_EV_TOKEN);
            ck_assert_uint_eq(e->step, last_step + 1); /* in the iteration after run's last token */
            event_done(e);
            break;
        }
        ck_assert_ptr_eq(e->req, run);
        ck_assert_int_eq(e->kind, ENG_EV_TOKEN);
        ck_assert_uint_eq(e->step, last_step + 1); /* a token in every iteration */
        last_step = e->step;
        during++;
        event_done(e);
    }
    ck_assert_int_ge(during, (LONG + BUDGET - 1) / BUDGET - 1);
    eng_sched_stats st;
    eng_sched_get_stats(h.s, &st);
    ck_assert_int_eq(st.prefill_max, BUDGET);
    ck_assert_uint_ge(st.prefill_steps, (LONG + BUDGET - 1) / BUDGET);
    ck_assert_uint_eq(st.queue_waits, 2);
    cancel_and_stop(&h, run);
}
END_TEST

/* With a prefill time ratio (0.25: an iteration's prefill may take a
 * quarter of a decode step), a 1,500-token prompt that arrives while a
 * stream decodes is cut into chunks smaller than the token budget (but
 * never below ENG_MIN_PREFILL_CHUNK), so it takes more iterations than the
 * budget alone makes; the stream still gets a token in every iteration,
 * and the prompt's tokens are those of a run without the ratio. */
START_TEST(test_time_ratio_cuts_chunks)
{
    enum { BUDGET = 256, LONG = 1500, GEN = 4 };
    int32_t tokens[2][GEN];
    uint64_t steps[2];
    for (int pass = 0; pass < 2; pass++) {
        time_ratio = pass ? 0.25 : 0;
        harness h;
        start_budget(&h, 2, 2, BUDGET);
        time_ratio = 0;
        eng_request *run = completion(NULL, FOREVER);
        eng_sched_submit(h.s, run);
        eng_event *e;
        uint64_t last_step = 0;
        for (int k = 0; k < 3; k++) { /* a few decode steps: the decode time is measured */
            e = next_event(&h);
            last_step = e->step;
            event_done(e);
        }
        eng_request *lng = prompt_completion(NULL, LONG, 5, 0, GEN);
        eng_sched_submit(h.s, lng);
        for (int n = 0; n < GEN;) {
            e = next_event(&h);
            if (e->req == lng) {
                if (e->kind == ENG_EV_TOKEN)
                    tokens[pass][n++] = e->token;
            } else {
                ck_assert_int_eq(e->kind, ENG_EV_TOKEN);
                ck_assert_uint_eq(e->step, last_step + 1); /* a token in every iteration */
                last_step = e->step;
            }
            event_done(e);
        }
        eng_sched_stats st;
        eng_sched_get_stats(h.s, &st);
        steps[pass] = st.prefill_steps;
        if (pass) {
            ck_assert_int_ge(st.step_budget, ENG_MIN_PREFILL_CHUNK);
            ck_assert_int_lt(st.step_budget, BUDGET);
        } else {
            ck_assert_int_eq(st.step_budget, BUDGET);
        }
        cancel_and_stop(&h, run);
    }
    ck_assert_uint_le(steps[0], 1 + (LONG + BUDGET - 1) / BUDGET);
    ck_assert_msg(steps[1] >= 2 * steps[0], "prefill iterations: %llu with the ratio, %llu without",
                  (unsigned long long)steps[1], (unsigned long long)steps[0]);
    for (int k = 0; k < GEN; k++)
        ck_assert_int_eq(tokens[1][k], tokens[0][k]);
}
END_TEST

/* ---- n choices from one prefill ---- */

#define N_CHOICES 3

/* n = 3 with seed S prefills once (the prompt counted once) and gives
 * choice k the tokens of a request of its own with seed S + k; at budget 7
 * the shared prompt is prefilled in chunks before the fork. */
START_TEST(test_n_choices_from_one_prefill)
{
    enum { LEN = 50, GEN = 10 };
    const uint64_t seed = 41;
    harness h;
    start_budget(&h, 4, 2, 7);
    int32_t alone[N_CHOICES][GEN];
    for (int k = 0; k < N_CHOICES; k++) {
        eng_request *r = prompt_completion(NULL, LEN, 9, seed + (uint64_t)k, GEN);
        eng_sched_submit(h.s, r);
        for (int n = 0;;) {
            eng_event *e = next_event(&h);
            ck_assert_ptr_eq(e->req, r);
            if (e->kind == ENG_EV_TOKEN)
                alone[k][n++] = e->token;
            int final = is_final(e);
            ck_assert(!final || e->kind == ENG_EV_DONE);
            event_done(e);
            if (final)
                break;
        }
    }
    eng_sched_stats before;
    eng_sched_get_stats(h.s, &before);
    eng_request *r = prompt_completion(NULL, LEN, 9, seed, GEN);
    r->n_choices = N_CHOICES;
    eng_sched_submit(h.s, r);
    int got[N_CHOICES] = {0}, ended[N_CHOICES] = {0};
    for (;;) {
        eng_event *e = next_event(&h);
        ck_assert_ptr_eq(e->req, r);
        ck_assert_int_lt(e->choice, N_CHOICES);
        int k = e->choice, final = is_final(e);
        if (e->kind == ENG_EV_TOKEN) {
            ck_assert_int_lt(got[k], GEN);
            ck_assert_msg(e->token == alone[k][got[k]], "choice %d token %d: %d, alone %d", k, got[k], e->token,
                          alone[k][got[k]]);
            got[k]++;
        } else if (e->kind == ENG_EV_CHOICE_END) {
            ck_assert_int_eq(e->n_gen_tokens, GEN);
            ended[k]++;
        } else {
            ck_assert_int_eq(e->kind, ENG_EV_DONE);
            ck_assert_int_eq(e->n_prompt_tokens, LEN);
            ck_assert_int_eq(e->n_gen_tokens, N_CHOICES * GEN);
            ended[k]++;
        }
        event_done(e);
        if (final)
            break;
    }
    for (int k = 0; k < N_CHOICES; k++) {
        ck_assert_int_eq(got[k], GEN);
        ck_assert_int_eq(ended[k], 1);
    }
    eng_sched_stats after;
    eng_sched_get_stats(h.s, &after);
    ck_assert_uint_eq(after.prompt_tokens - before.prompt_tokens, LEN);
    ck_assert_uint_eq(after.prefill_tokens - before.prefill_tokens, LEN); /* one prefill */
    stop(&h);
}
END_TEST

/* More choices than a batch holds, or several on a session: refused at
 * once (never left waiting). */
START_TEST(test_n_choices_refused)
{
    harness h;
    start(&h, 2, 2);
    int code;
    eng_request *r = completion(NULL, 2);
    r->n_choices = 3;
    ck_assert_int_eq(run_op(&h, r, &code, NULL), ENG_EV_ERROR);
    ck_assert_int_eq(code, SSMD_EINVAL);
    char id[ENG_SESSION_ID_HEX + 1];
    ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_CREATE, NULL), &code, id), ENG_EV_RESULT);
    r = completion(id, 2);
    r->n_choices = 2;
    ck_assert_int_eq(run_op(&h, r, &code, NULL), ENG_EV_ERROR);
    ck_assert_int_eq(code, SSMD_EINVAL);
    stop(&h);
}
END_TEST

/* ---- the host tier ---- */

/* Runs a greedy 4-token completion on session id (prompt from salt) and
 * stores its tokens in out. */
static void session_turn(harness *h, const char *id, uint32_t salt, int32_t out[4])
{
    eng_request *r = prompt_completion(id, 5, salt, 0, 4);
    eng_sched_submit(h->s, r);
    for (int n = 0;;) {
        eng_event *e = next_event(h);
        ck_assert_ptr_eq(e->req, r);
        if (e->kind == ENG_EV_TOKEN)
            out[n++] = e->token;
        int final = is_final(e);
        ck_assert_msg(!final || e->kind == ENG_EV_DONE, "turn failed: %s", e->err.msg);
        event_done(e);
        if (final)
            break;
    }
}

/* Two slots for sessions and host memory for two more: four sessions take
 * a turn each, so the two oldest move to the host; their second turns
 * (moved back, moving others out) give exactly the tokens of sessions that
 * never moved.  With host memory for one, the oldest is dropped. */
START_TEST(test_host_tier_exact)
{
    enum { N = 4 };
    int32_t ref[N][2][4], got[N][2][4];
    char ids[N][ENG_SESSION_ID_HEX + 1];
    int code;
    harness h;
    host_bytes = 0;
    start(&h, 2, N); /* the reference: every session keeps its slot */
    size_t state_bytes = eng_sched_model_info(h.s)->state_bytes;
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_CREATE, NULL), &code, ids[i]), ENG_EV_RESULT);
    for (int turn = 0; turn < 2; turn++)
        for (int i = 0; i < N; i++)
            session_turn(&h, ids[i], (uint32_t)(10 * turn + i), ref[i][turn]);
    stop(&h);

    host_bytes = 2 * state_bytes;
    start(&h, 2, 2);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_CREATE, NULL), &code, ids[i]), ENG_EV_RESULT);
        session_turn(&h, ids[i], (uint32_t)i, got[i][0]);
    }
    for (int i = 0; i < N; i++)
        session_turn(&h, ids[i], (uint32_t)(10 + i), got[i][1]);
    ck_assert_int_eq(memcmp(got, ref, sizeof ref), 0);
    eng_sched_stats st;
    eng_sched_get_stats(h.s, &st);
    ck_assert_int_eq(st.host_capacity, 2);
    ck_assert_uint_ge(st.sessions_to_host, 4);
    ck_assert_uint_ge(st.sessions_from_host, 4);
    ck_assert_uint_eq(st.sessions_dropped, 0);
    stop(&h);

    host_bytes = state_bytes; /* one in host memory: a third session drops the first */
    start(&h, 2, 1);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_CREATE, NULL), &code, ids[i]), ENG_EV_RESULT);
    ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_INFO, ids[0]), &code, NULL), ENG_EV_ERROR);
    ck_assert_int_eq(code, SSMD_ENOTFOUND);
    ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_INFO, ids[1]), &code, NULL), ENG_EV_RESULT);
    eng_sched_get_stats(h.s, &st);
    ck_assert_uint_eq(st.sessions_dropped, 1);
    stop(&h);
    host_bytes = 0;
}
END_TEST

/* One device slot for sessions, room for two in host memory: while
 * session B runs a completion, a turn on session A (moved to the host to
 * make room for B) cannot come back, so it waits in the queue rather than
 * being refused; it runs, exactly as before, once B's completion ends. */
START_TEST(test_host_session_waits_for_slot)
{
    int32_t ref[4], got[4], first[4];
    char a[ENG_SESSION_ID_HEX + 1], b[ENG_SESSION_ID_HEX + 1];
    int code;
    harness h;
    host_bytes = 0;
    start(&h, 2, 2); /* the reference: A's two turns with nothing else */
    ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_CREATE, NULL), &code, a), ENG_EV_RESULT);
    session_turn(&h, a, 1, first);
    session_turn(&h, a, 2, ref);
    host_bytes = 2 * eng_sched_model_info(h.s)->state_bytes;
    stop(&h);

    start(&h, 2, 1);
    host_bytes = 0;
    ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_CREATE, NULL), &code, a), ENG_EV_RESULT);
    session_turn(&h, a, 1, got);
    ck_assert_int_eq(memcmp(got, first, sizeof got), 0);
    ck_assert_int_eq(run_op(&h, session_op(ENG_OP_SESSION_CREATE, NULL), &code, b), ENG_EV_RESULT);
    eng_request *rb = completion(b, FOREVER), *ra = prompt_completion(a, 5, 2, 0, 4);
    eng_sched_submit(h.s, rb);
    eng_event *e = next_event(&h); /* B is running */
    ck_assert_ptr_eq(e->req, rb);
    ck_assert_int_eq(e->kind, ENG_EV_TOKEN);
    event_done(e);
    eng_sched_submit(h.s, ra);
    for (int k = 0; k < 20; k++) { /* B goes on; A neither fails nor starts */
        e = next_event(&h);
        ck_assert_msg(e->req == rb && e->kind == ENG_EV_TOKEN, "event %d of kind %d for %s: %s", k, e->kind,
                      e->req == ra ? "A" : "B", e->err.msg);
        event_done(e);
    }
    eng_sched_cancel(h.s, rb);
    int n = 0, b_done = 0;
    for (int final = 0; final < 2;) {
        e = next_event(&h);
        if (e->req == ra) {
            ck_assert_msg(e->kind != ENG_EV_ERROR, "A failed: %s", e->err.msg);
            if (e->kind == ENG_EV_TOKEN)
                got[n++] = e->token;
        } else {
            b_done |= is_final(e);
        }
        final += is_final(e);
        event_done(e);
    }
    ck_assert(b_done);
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(memcmp(got, ref, sizeof got), 0);
    stop(&h);
}
END_TEST

/* Two prompts with n = 2 and seed S: choice g * 2 + k is prompt g sampled
 * with seed S + g * 2 + k; usage counts both prompts once. */
START_TEST(test_prompt_list_choices)
{
    enum { GEN = 6 };
    static const int lens[2] = {20, 9};
    const uint64_t seed = 77;
    harness h;
    start_budget(&h, 4, 2, 8);
    int32_t alone[4][GEN];
    for (int c = 0; c < 4; c++) {
        eng_request *r = prompt_completion(NULL, lens[c / 2], (uint32_t)(c / 2), seed + (uint64_t)c, GEN);
        eng_sched_submit(h.s, r);
        for (int n = 0;;) {
            eng_event *e = next_event(&h);
            if (e->kind == ENG_EV_TOKEN)
                alone[c][n++] = e->token;
            int final = is_final(e);
            event_done(e);
            if (final)
                break;
        }
    }
    eng_request *a = prompt_completion(NULL, lens[0], 0, seed, GEN), *b = prompt_completion(NULL, lens[1], 1, 0, 0);
    eng_request *r = a; /* a's prompt, then b's, back to back */
    r->prompt = realloc(r->prompt, (size_t)(lens[0] + lens[1]) * sizeof *r->prompt);
    memcpy(r->prompt + lens[0], b->prompt, (size_t)lens[1] * sizeof *r->prompt);
    eng_request_free(b);
    r->n_prompt = lens[0] + lens[1];
    r->n_prompts = 2;
    r->prompt_lens = malloc(2 * sizeof *r->prompt_lens);
    r->prompt_lens[0] = lens[0];
    r->prompt_lens[1] = lens[1];
    r->n_choices = 2;
    eng_sched_submit(h.s, r);
    int got[4] = {0};
    for (;;) {
        eng_event *e = next_event(&h);
        ck_assert_ptr_eq(e->req, r);
        int final = is_final(e);
        if (e->kind == ENG_EV_TOKEN) {
            ck_assert_msg(e->token == alone[e->choice][got[e->choice]], "choice %d token %d", e->choice,
                          got[e->choice]);
            got[e->choice]++;
        } else if (final) {
            ck_assert_int_eq(e->kind, ENG_EV_DONE);
            ck_assert_int_eq(e->n_prompt_tokens, lens[0] + lens[1]);
            ck_assert_int_eq(e->n_gen_tokens, 4 * GEN);
        }
        event_done(e);
        if (final)
            break;
    }
    for (int c = 0; c < 4; c++)
        ck_assert_int_eq(got[c], GEN);
    stop(&h);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("scheduler");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_admission_is_fifo);
    tcase_add_test(tc, test_cancel_queued_and_running);
    tcase_add_test(tc, test_busy_session);
    tcase_add_test(tc, test_host_session_waits_for_slot);
    tcase_add_test(tc, test_lru_eviction);
    tcase_add_test(tc, test_chunked_prefill_same_tokens);
    tcase_add_test(tc, test_prefill_fcfs);
    tcase_add_test(tc, test_running_stream_not_stalled);
    tcase_add_test(tc, test_time_ratio_cuts_chunks);
    tcase_add_test(tc, test_n_choices_from_one_prefill);
    tcase_add_test(tc, test_n_choices_refused);
    tcase_add_test(tc, test_prompt_list_choices);
    tcase_add_test(tc, test_host_tier_exact);
    suite_add_tcase(s, tc);
    return s;
}
