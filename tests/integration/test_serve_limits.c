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
                           "--session-ttl", "1", NULL};
    if (it_start(&srv, FIXTURE, extra) != 0) {
        fprintf(stderr, "server did not start:\n");
        it_dump_log(&srv);
        exit(1);
    }
}

static void teardown_limits(void)
{
    int st = it_stop(&srv, 20);
    if (st != 0) {
        fprintf(stderr, "FAIL: server exited with status %d after SIGTERM\n", st);
        it_dump_log(&srv);
        exit(1);
    }
    unlink(srv.log);
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
    int running = 1;
    for (double t0 = it_now(); running && r1.len == 0 && it_now() - t0 < 10;) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 20, NULL);
    }
    ck_assert_int_gt(r1.len, 0);
    double t0 = it_now();
    it_resp r = it_http_key(&srv, "POST", "/v1/completions", "{\"prompt\": [4], \"max_tokens\": 1}", -1, KEY);
    ck_assert_int_eq(r.status, 429);
    ck_assert_double_lt(it_now() - t0, 2.0); /* at once, not after the long one */
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
    while (metric(&srv, "ssmd_requests_running") != 0 && it_now() - t1 < 5)
        it_sleep(0.005);
    ck_assert_double_eq(metric(&srv, "ssmd_requests_running"), 0);
    ck_assert_double_lt(it_now() - t1, 2.0);
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
    while (metric(&srv, "ssmd_requests_running") != 0 && it_now() - t1 < 5)
        it_sleep(0.005);
    ck_assert_double_eq(metric(&srv, "ssmd_requests_running"), 0);
    ck_assert_double_lt(it_now() - t1, 2.0);
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
    it_sleep(2.2); /* --session-ttl 1 */
    ck_assert_int_eq(status_of(&srv, "GET", path, NULL, KEY), 404);
}
END_TEST

/* ---- drain: each test starts its own server ---- */

static void global_init(void) { curl_global_init(CURL_GLOBAL_ALL); }

START_TEST(test_drain_finishes_running)
{
    it_server d;
    const char *extra[] = {"--max-tokens", "10000000", NULL};
    ck_assert_int_eq(it_start(&d, FIXTURE, extra), 0);
    enum { N = 3000 };
    char body[160];
    snprintf(body, sizeof body, "{\"prompt\": [3], \"max_tokens\": %d, \"ignore_eos\": true, \"stream\": true}", N);
    it_resp r1 = {0};
    struct curl_slist *h1;
    CURL *e1 = it_easy(&d, "POST", "/v1/completions", body, -1, NULL, &r1, &h1);
    curl_easy_setopt(e1, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)256 * 1024); /* a slow reader */
    CURLM *m = curl_multi_init();
    curl_multi_add_handle(m, e1);
    int running = 1;
    for (double t0 = it_now(); running && r1.len == 0 && it_now() - t0 < 10;) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 20, NULL);
    }
    ck_assert_int_gt(r1.len, 0);
    kill(d.pid, SIGTERM);
    it_sleep(0.2);
    ck_assert_int_eq(status_of(&d, "GET", "/ready", NULL, NULL), 503);
    ck_assert_int_eq(status_of(&d, "POST", "/v1/completions", "{\"prompt\": [4], \"max_tokens\": 1}", NULL), 503);
    ck_assert_int_eq(status_of(&d, "GET", "/health", NULL, NULL), 200);
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 50, NULL);
    }
    json_t *ev;
    ck_assert_msg(it_sse_parse(r1.body, &ev), "drained stream did not end with [DONE]");
    int n_tok = 0;
    const char *finish = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e) {
        json_t *ch = json_array_get(json_object_get(e, "choices"), 0);
        n_tok += (int)json_array_size(json_object_get(ch, "tokens"));
        if (json_is_string(json_object_get(ch, "finish_reason")))
            finish = json_string_value(json_object_get(ch, "finish_reason"));
    }
    ck_assert_int_eq(n_tok, N);
    ck_assert_str_eq(finish, "length");
    json_decref(ev);
    curl_multi_remove_handle(m, e1);
    curl_easy_cleanup(e1);
    curl_multi_cleanup(m);
    curl_slist_free_all(h1);
    it_resp_free(&r1);
    int st;
    double t0 = it_now();
    while (waitpid(d.pid, &st, WNOHANG) == 0 && it_now() - t0 < 10)
        it_sleep(0.01);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        it_dump_log(&d);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server did not exit 0 after the drain");
    unlink(d.log);
}
END_TEST

START_TEST(test_drain_timeout)
{
    it_server d;
    const char *extra[] = {"--max-tokens", "100000000", "--drain-timeout", "0.5", NULL};
    ck_assert_int_eq(it_start(&d, FIXTURE, extra), 0);
    it_resp r1 = {0};
    struct curl_slist *h1;
    CURL *e1 = it_easy(&d, "POST", "/v1/completions",
                       "{\"prompt\": [3], \"max_tokens\": 100000000, \"ignore_eos\": true, \"stream\": true}", -1, NULL,
                       &r1, &h1);
    CURLM *m = curl_multi_init();
    curl_multi_add_handle(m, e1);
    int running = 1;
    for (double t0 = it_now(); running && r1.len == 0 && it_now() - t0 < 10;) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 20, NULL);
    }
    ck_assert_int_gt(r1.len, 0);
    double t0 = it_now();
    kill(d.pid, SIGTERM);
    while (running && it_now() - t0 < 10) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 50, NULL);
    }
    int st = 0;
    while (waitpid(d.pid, &st, WNOHANG) == 0 && it_now() - t0 < 10)
        it_sleep(0.01);
    ck_assert_double_lt(it_now() - t0, 5.0);
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
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_auth);
    tcase_add_test(tc, test_queue_full_and_cancel);
    tcase_add_test(tc, test_cancel_nonstream);
    tcase_add_test(tc, test_session_ttl);
    suite_add_tcase(s, tc);
    TCase *td = tcase_create("drain");
    tcase_set_timeout(td, 60);
    tcase_add_unchecked_fixture(td, global_init, NULL);
    tcase_add_test(td, test_drain_finishes_running);
    tcase_add_test(td, test_drain_timeout);
    tcase_add_test(td, test_bad_model_exits_nonzero);
    suite_add_tcase(s, td);
    return s;
}
