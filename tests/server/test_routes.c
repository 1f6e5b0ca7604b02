/* test_routes.c - route lookup (404 vs 405, {id} segments, query strings),
 * error bodies from the error table, and the /metrics text format. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "server/srv.h"

START_TEST(test_match)
{
    char id[72];
    int code = 0;
    const srv_route *r = srv_route_match("POST", "/v1/completions", id, sizeof id, &code);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->pattern, "/v1/completions");
    r = srv_route_match("GET", "/v1/sessions/abc123/state?x=1", id, sizeof id, &code);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->pattern, "/v1/sessions/{id}/state");
    ck_assert_str_eq(id, "abc123");
    r = srv_route_match("PUT", "/v1/sessions/abc/state", id, sizeof id, &code);
    ck_assert_int_eq(r->body, SRV_BODY_STATE);
    r = srv_route_match("DELETE", "/v1/sessions/abc/", id, sizeof id, &code);
    ck_assert_str_eq(r->pattern, "/v1/sessions/{id}");
    ck_assert_ptr_null(srv_route_match("GET", "/v1/completions", id, sizeof id, &code));
    ck_assert_int_eq(code, SSMD_ENOMETHOD);
    ck_assert_ptr_null(srv_route_match("GET", "/v2/nothing", id, sizeof id, &code));
    ck_assert_int_eq(code, SSMD_ENOTFOUND);
    char allow[64];
    srv_route_allow("/v1/sessions/abc", allow, sizeof allow);
    ck_assert_str_eq(allow, "GET, DELETE");
    srv_route_allow("/v1/sessions/abc/state", allow, sizeof allow);
    ck_assert_str_eq(allow, "GET, PUT");
    ck_assert_ptr_null(srv_route_match("GET", "/v1/sessions//state", id, sizeof id, &code));
    ck_assert_ptr_null(srv_route_match("GET", "/v1/sessions/a/b/state", id, sizeof id, &code));
    /* probes need no key; everything else does */
    for (int i = 0; i < srv_n_routes; i++) {
        int probe = !strcmp(srv_routes[i].pattern, "/health") || !strcmp(srv_routes[i].pattern, "/ready") ||
                    !strcmp(srv_routes[i].pattern, "/metrics");
        ck_assert_int_eq(srv_routes[i].auth, !probe);
    }
}
END_TEST

START_TEST(test_error_body)
{
    json_t *j = srv_error_body(SSMD_EBUSY, NULL);
    json_t *e = json_object_get(j, "error");
    ck_assert_str_eq(json_string_value(json_object_get(e, "type")), ssmd_err_type(SSMD_EBUSY));
    ck_assert_str_eq(json_string_value(json_object_get(e, "message")), ssmd_err_default_message(SSMD_EBUSY));
    ck_assert_str_eq(json_string_value(json_object_get(e, "code")), "SSMD_EBUSY");
    ck_assert_int_eq(ssmd_err_http_status(SSMD_EBUSY), 429);
    json_decref(j);
}
END_TEST

START_TEST(test_metrics_render)
{
    srv_metrics m;
    srv_metrics_init(&m);
    srv_hist_observe(&m.ttft, 0.003);
    srv_hist_observe(&m.ttft, 0.2);
    srv_hist_observe(&m.ttft, 1000);
    srv_metrics_count_status(&m, 200);
    srv_metrics_count_status(&m, 429);
    eng_sched_stats st;
    memset(&st, 0, sizeof st);
    st.running = 3;
    st.steps = 2;
    st.batch_sum = 5;
    st.batch_hist[1] = 1; /* batch 2 */
    st.batch_hist[2] = 1; /* batch 3 -> le 4 */
    char *t = srv_metrics_render(&m, &st, 1, 0);
    ck_assert_ptr_nonnull(strstr(t, "\nssmd_requests_running 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "ssmd_time_to_first_token_seconds_bucket{le=\"0.005\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "ssmd_time_to_first_token_seconds_bucket{le=\"0.25\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "ssmd_time_to_first_token_seconds_bucket{le=\"60\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "ssmd_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "ssmd_time_to_first_token_seconds_count 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "ssmd_batch_size_bucket{le=\"1\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(t, "ssmd_batch_size_bucket{le=\"4\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "ssmd_batch_size_sum 5\n"));
    ck_assert_ptr_nonnull(strstr(t, "ssmd_http_requests_total{code=\"4xx\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(t, "# TYPE ssmd_inter_token_latency_seconds histogram\n"));
    free(t);
}
END_TEST

START_TEST(test_json_text_replaces_invalid_utf8)
{
    json_t *j = srv_json_text("a\xFF" "b\xC3", 4);
    ck_assert_str_eq(json_string_value(j), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD");
    json_decref(j);
    j = srv_json_text("\xC3\xA9", 2);
    ck_assert_str_eq(json_string_value(j), "\xC3\xA9");
    json_decref(j);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("routes");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_match);
    tcase_add_test(tc, test_error_body);
    tcase_add_test(tc, test_metrics_render);
    tcase_add_test(tc, test_json_text_replaces_invalid_utf8);
    suite_add_tcase(s, tc);
    return s;
}
