/* test_serve_limits.c - integration tests of `ssmd serve` limits and
 * lifecycle: API key (401), queue full (429 at once), cancellation by
 * client disconnect, session TTL, and the SIGTERM drain (ready turns 503,
 * new requests 503, running ones finish, exit 0; the drain timeout).
 */
#include <check.h>

#include "tests/integration/itest.h"

#define FIXTURE "tests/fixtures/mamba/untied_bias"
#define KEY "sekret-key"

static it_server srv;

static void setup_limits(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    const char *extra[] = {"--api-key", KEY, "--max-batch", "1", "--max-queue", "0", "--max-tokens", "10000000",
                           "--session-ttl", "1", "--threads", "1", NULL};
    it_start_or_exit(&srv, FIXTURE, extra);
}

static void teardown_limits(void)
{
    it_stop_or_exit(&srv);
    curl_global_cleanup();
}

static long status_of(const it_server *s, const char *method, const char *path, const char *body, const char *key)
{
    it_resp r = it_http_key(s, method, path, body, -1, key);
    long st = r.status;
    it_resp_free(&r);
    return st;
}

START_TEST(test_auth)
{
    const char *body = "{\"prompt\": [1, 2], \"max_tokens\": 1}";
    ck_assert_int_eq(status_of(&srv, "POST", "/v1/completions", body, NULL), 401);
    ck_assert_int_eq(status_of(&srv, "POST", "/v1/completions", body, "wrong"), 401);
    ck_assert_int_eq(status_of(&srv, "POST", "/v1/completions", body, KEY "x"), 401);
    ck_assert_int_eq(status_of(&srv, "POST", "/v1/completions", body, "sekret-ke"), 401);
    ck_assert_int_eq(status_of(&srv, "POST", "/v1/sessions", "", NULL), 401);
    ck_assert_int_eq(status_of(&srv, "GET", "/v1/models", NULL, NULL), 401);
    it_resp r = it_http_key(&srv, "POST", "/v1/completions", body, -1, "nope");
    json_t *j = it_json(&r);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "type")), "authentication_error");
    json_decref(j);
    it_resp_free(&r);
    ck_assert_int_eq(status_of(&srv, "POST", "/v1/completions", body, KEY), 200);
    /* probes stay open */
    ck_assert_int_eq(status_of(&srv, "GET", "/health", NULL, NULL), 200);
    ck_assert_int_eq(status_of(&srv, "GET", "/ready", NULL, NULL), 200);
    ck_assert_int_eq(status_of(&srv, "GET", "/metrics", NULL, NULL), 200);
}
END_TEST

/* Reads /metrics and returns the value of the sample line starting with name. */
static double metric(const it_server *s, const char *name)
{
    it_resp r = it_http(s, "GET", "/metrics", NULL);
    double v = -1;
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = strstr(r.body, pat);
    if (p)
        v = atof(p + strlen(pat));
    it_resp_free(&r);
    return v;
}

START_TEST(test_queue_full_and_cancel)
{
    /* one long streaming request fills --max-batch 1 with --max-queue 0 */
    const char *lng = "{\"prompt\": [3], \"max_tokens\": 10000000, \"ignore_eos\": true, \"stream\": true}";
    it_resp r1 = {0};
    struct curl_slist *h1;
    CURL *e1 = it_easy(&srv, "POST", "/v1/completions", lng, -1, KEY, &r1, &h1);
    CURLM *m = curl_multi_init();
    curl_multi_add_handle(m, e1);
    it_multi_first_bytes(m, &r1, 30);
    ck_assert_int_gt(r1.len, 0);
    double t0 = it_now();
    it_resp r = it_http_key(&srv, "POST", "/v1/completions", "{\"prompt\": [4], \"max_tokens\": 1}", -1, KEY);
    ck_assert_int_eq(r.status, 429);
    /* at once, not after the long one (which would take hours); the bound
     * is loose so that a loaded machine cannot fail it */
    ck_assert_double_lt(it_now() - t0, 10.0);
    json_t *j = it_json(&r);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "type")), "rate_limit_error");
    json_decref(j);
    it_resp_free(&r);
    ck_assert_double_eq(metric(&srv, "ssmd_requests_running"), 1);
    /* the client goes away: its request is canceled and the slot freed */
    double canceled0 = metric(&srv, "ssmd_completions_canceled_total");
    curl_multi_remove_handle(m, e1);
    curl_easy_cleanup(e1);
    curl_multi_cleanup(m);
    curl_slist_free_all(h1);
    it_resp_free(&r1);
    double t1 = it_now();
    while (metric(&srv, "ssmd_requests_running") != 0 && it_now() - t1 < 20)
        it_sleep(0.005);
    ck_assert_double_eq(metric(&srv, "ssmd_requests_running"), 0);
    ck_assert_double_lt(it_now() - t1, 10.0); /* the request alone would run for hours */
    ck_assert_double_eq(metric(&srv, "ssmd_completions_canceled_total"), canceled0 + 1);
    ck_assert_int_eq(status_of(&srv, "POST", "/v1/completions", "{\"prompt\": [4], \"max_tokens\": 1}", KEY), 200);
}
END_TEST

START_TEST(test_cancel_nonstream)
{
    /* a non-streaming request whose client times out is canceled too */
    it_resp r = {0};
    struct curl_slist *h;
    CURL *e = it_easy(&srv, "POST", "/v1/completions",
                      "{\"prompt\": [3], \"max_tokens\": 10000000, \"ignore_eos\": true}", -1, KEY, &r, &h);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 300L);
    ck_assert_int_eq(curl_easy_perform(e), CURLE_OPERATION_TIMEDOUT);
    curl_easy_cleanup(e);
    curl_slist_free_all(h);
    it_resp_free(&r);
    double t1 = it_now();
    while (metric(&srv, "ssmd_requests_running") != 0 && it_now() - t1 < 20)
        it_sleep(0.005);
    ck_assert_double_eq(metric(&srv, "ssmd_requests_running"), 0);
    ck_assert_double_lt(it_now() - t1, 10.0); /* the request alone would run for hours */
}
END_TEST

START_TEST(test_session_ttl)
{
    it_resp r = it_http_key(&srv, "POST", "/v1/sessions", "", -1, KEY);
    ck_assert_int_eq(r.status, 200);
    json_t *j = it_json(&r);
    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    it_resp_free(&r);
    ck_assert_int_eq(status_of(&srv, "GET", path, NULL, KEY), 200);
    /* --session-ttl 1: idle for longer than that whatever the load, since
     * the engine expires sessions before it looks one up */
    it_sleep(1.5);
    ck_assert_int_eq(status_of(&srv, "GET", path, NULL, KEY), 404);
}
END_TEST

/* ---- drain: each test starts its own server ---- */

static void global_init(void) { curl_global_init(CURL_GLOBAL_ALL); }

/* Bytes the kernel may buffer for a sender on one TCP connection: the
 * autotuning ceiling net.ipv4.tcp_wmem[2] (4 MiB when unreadable). */
static long sender_buffer_max(void)
{
    long lo = 0, def = 0, hi = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
    if (!f || fscanf(f, "%ld %ld %ld", &lo, &def, &hi) != 3 || hi <= 0)
        hi = 4L << 20;
    if (f)
        fclose(f);
    return hi;
}

/* A small receive buffer for the paused client below (the kernel doubles it). */
static int small_rcvbuf(void *arg, curl_socket_t fd, curlsocktype purpose)
{
    int v = 16 * 1024;
    (void)arg;
    (void)purpose;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    return CURL_SOCKOPT_OK;
}

/* Polls path until its status is not `from` (a signal is handled
 * asynchronously); returns the first other status, or `from` after 30 s. */
static long status_change(const it_server *s, const char *path, long from)
{
    long st = from;
    for (double t0 = it_now(); st == from && it_now() - t0 < 30; it_sleep(0.01))
        st = status_of(s, "GET", path, NULL, NULL);
    return st;
}

/* The drain must keep a running request alive until its client has all of
 * it.  "Running" is made certain, not hoped for: the client stops reading
 * after the first event, and the response (N tokens with 20 logprobs each,
 * >= 600 bytes a token) is larger than everything the kernel can buffer
 * (the sender's autotuned ceiling plus the client's small receive buffer),
 * so the server cannot have delivered it -- and so cannot have exited --
 * before the client reads again.  Neither a slow machine (no deadline but
 * the tcase timeout: --drain-timeout is longer) nor a fast one (no race
 * with the engine) changes the outcome. */
START_TEST(test_drain_finishes_running)
{
    it_server d;
    const char *extra[] = {"--max-tokens", "10000000", "--threads", "1", "--drain-timeout", "600", NULL};
    ck_assert_int_eq(it_start(&d, FIXTURE, extra), 0);
    const int n = (int)((sender_buffer_max() + (2L << 20)) / 600);
    char body[200];
    snprintf(body, sizeof body,
             "{\"prompt\": [3], \"max_tokens\": %d, \"ignore_eos\": true, \"stream\": true, \"logprobs\": 20}", n);
    it_resp r1 = {0};
    struct curl_slist *h1;
    CURL *e1 = it_easy(&d, "POST", "/v1/completions", body, -1, NULL, &r1, &h1);
    curl_easy_setopt(e1, CURLOPT_SOCKOPTFUNCTION, small_rcvbuf);
    curl_easy_setopt(e1, CURLOPT_BUFFERSIZE, 4096L);
    curl_easy_setopt(e1, CURLOPT_TIMEOUT, 0L); /* the tcase timeout bounds it */
    CURLM *m = curl_multi_init();
    curl_multi_add_handle(m, e1);
    int running = it_multi_first_bytes(m, &r1, 30);
    ck_assert_int_gt(r1.len, 0);
    /* the client now reads nothing until the checks below are done */
    kill(d.pid, SIGTERM);
    ck_assert_int_eq(status_change(&d, "/ready", 200), 503);
    ck_assert_int_eq(status_of(&d, "POST", "/v1/completions", "{\"prompt\": [4], \"max_tokens\": 1}", NULL), 503);
    ck_assert_int_eq(status_of(&d, "POST", "/v1/sessions", "", NULL), 503);
    ck_assert_int_eq(status_of(&d, "GET", "/health", NULL, NULL), 200);
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 50, NULL);
    }
    json_t *ev;
    ck_assert_msg(it_sse_parse(r1.body, &ev), "drained stream did not end with [DONE]");
    int n_tok = 0, n_err = 0; /* no ck_assert per event: each one costs an IPC round */
    const char *finish = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e) {
        n_err += json_object_get(e, "error") != NULL;
        json_t *ch = json_array_get(json_object_get(e, "choices"), 0);
        n_tok += (int)json_array_size(json_object_get(ch, "tokens"));
        if (json_is_string(json_object_get(ch, "finish_reason")))
            finish = json_string_value(json_object_get(ch, "finish_reason"));
    }
    ck_assert_int_eq(n_err, 0);
    ck_assert_int_eq(n_tok, n);
    ck_assert_int_ge(r1.len, (size_t)sender_buffer_max()); /* the premise above held */
    ck_assert_str_eq(finish, "length");
    json_decref(ev);
    curl_multi_remove_handle(m, e1);
    curl_easy_cleanup(e1);
    curl_multi_cleanup(m);
    curl_slist_free_all(h1);
    it_resp_free(&r1);
    int st = 0;
    double t0 = it_now();
    while (waitpid(d.pid, &st, WNOHANG) == 0 && it_now() - t0 < 30)
        it_sleep(0.01);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        it_dump_log(&d);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server did not exit 0 after the drain");
    unlink(d.log);
}
END_TEST

/* A request that would run for hours is cut at --drain-timeout and the
 * server exits 0 long before the request could have finished.  (Whether the
 * client got the stream's last bytes depends on how fast it reads during
 * the one second of grace, so that is not asserted.) */
START_TEST(test_drain_timeout)
{
    it_server d;
    const char *extra[] = {"--max-tokens", "100000000", "--drain-timeout", "0.5", "--threads", "1", NULL};
    ck_assert_int_eq(it_start(&d, FIXTURE, extra), 0);
    it_resp r1 = {0};
    struct curl_slist *h1;
    CURL *e1 = it_easy(&d, "POST", "/v1/completions",
                       "{\"prompt\": [3], \"max_tokens\": 100000000, \"ignore_eos\": true, \"stream\": true}", -1, NULL,
                       &r1, &h1);
    curl_easy_setopt(e1, CURLOPT_TIMEOUT, 0L);
    CURLM *m = curl_multi_init();
    curl_multi_add_handle(m, e1);
    int running = it_multi_first_bytes(m, &r1, 30);
    ck_assert_int_gt(r1.len, 0);
    double t0 = it_now();
    kill(d.pid, SIGTERM);
    while (running && it_now() - t0 < 30) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 50, NULL);
    }
    int st = 0;
    while (waitpid(d.pid, &st, WNOHANG) == 0 && it_now() - t0 < 30)
        it_sleep(0.01);
    /* 0.5 s of drain, 1 s of grace; the rest is slack for a loaded machine */
    ck_assert_double_lt(it_now() - t0, 20.0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        it_dump_log(&d);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server did not exit 0 after the drain timeout");
    curl_multi_remove_handle(m, e1);
    curl_easy_cleanup(e1);
    curl_multi_cleanup(m);
    curl_slist_free_all(h1);
    it_resp_free(&r1);
    unlink(d.log);
}
END_TEST

START_TEST(test_bad_model_exits_nonzero)
{
    it_server d;
    ck_assert_int_ne(it_start(&d, "tests/fixtures/does-not-exist", NULL), 0);
    unlink(d.log);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("serve_limits");
    TCase *tc = tcase_create("limits");
    tcase_add_unchecked_fixture(tc, setup_limits, teardown_limits);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_auth);
    tcase_add_test(tc, test_queue_full_and_cancel);
    tcase_add_test(tc, test_cancel_nonstream);
    tcase_add_test(tc, test_session_ttl);
    suite_add_tcase(s, tc);
    TCase *td = tcase_create("drain");
    tcase_set_timeout(td, 180);
    tcase_add_unchecked_fixture(td, global_init, NULL);
    tcase_add_test(td, test_drain_finishes_running);
    tcase_add_test(td, test_drain_timeout);
    tcase_add_test(td, test_bad_model_exits_nonzero);
    suite_add_tcase(s, td);
    return s;
}
