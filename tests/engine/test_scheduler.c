/* test_scheduler.c - engine/scheduler.c driven through its public API with
 * a fixture model: completions are admitted in arrival order, a queued and
 * a running request end with SSMD_ECANCELED, a request on a session that is
 * running gets the busy error at once, a full session table evicts the
 * least recently used session.
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

static void start(harness *h, int max_batch, int max_sessions)
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
    ssmd_err err = {0};
    ck_assert_int_eq(eng_sched_start(&o, on_notify, h, &h->s, &err), SSMD_OK);
    eng_event *e = next_event(h);
    ck_assert_msg(e->kind == ENG_EV_LOADED, "load failed: %s", e->err.msg);
    event_done(e);
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

Suite *test_suite(void)
{
    Suite *s = suite_create("scheduler");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_admission_is_fifo);
    tcase_add_test(tc, test_cancel_queued_and_running);
    tcase_add_test(tc, test_busy_session);
    tcase_add_test(tc, test_lru_eviction);
    suite_add_tcase(s, tc);
    return s;
}
