/* test_log.c - the stderr log: text lines (an RFC 3339 UTC time first),
 * JSON lines that parse and carry their fields, request lines with and
 * without token counts, seed and the reason of an error. */
#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/log.h"

/* Runs fn with a log of format fmt into memory; returns the text. */
static char *capture(srv_log_format fmt, void (*fn)(const srv_log *))
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    srv_log l = {f, fmt};
    fn(&l);
    fclose(f);
    return text;
}

static void write_some(const srv_log *l)
{
    srv_log_msg(l, "info", "loading", "loading %s ...", "dir \"q\"");
    srv_log_req r = {"POST", "/v1/completions", 200, 12.5, 7, 9, "0123456789abcdef0123456789abcdef", 1, 1, 42, "",
                     "host"};
    srv_log_request(l, &r);
    srv_log_req e = {"GET", "/x", 404, 0.25, -1, -1, "", 0, 0, 0, "no such route", NULL};
    srv_log_request(l, &e);
    srv_log_event(l, "info", "ready", json_pack("{s:s}", "url", "http://h:1"), "ready on http://h:1");
}

/* Checks that each line starts with "YYYY-MM-DDTHH:MM:SS.mmmZ " close to
 * now, and removes that prefix in place. */
static void strip_times(char *t)
{
    char *out = t;
    time_t now = time(NULL);
    while (*t) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        char *rest = strptime(t, "%Y-%m-%dT%H:%M:%S", &tm);
        ck_assert_msg(rest && rest[0] == '.' && isdigit((unsigned char)rest[1]) && isdigit((unsigned char)rest[2]) &&
                          isdigit((unsigned char)rest[3]) && rest[4] == 'Z' && rest[5] == ' ',
                      "no RFC 3339 UTC time at the start of: %s", t);
        double off = difftime(timegm(&tm), now);
        ck_assert_msg(off > -5 && off < 5, "the time is %g s off (not UTC?)", off);
        char *nl = strchr(rest, '\n');
        ck_assert_ptr_nonnull(nl);
        size_t n = (size_t)(nl + 1 - (rest + 6));
        memmove(out, rest + 6, n);
        out += n;
        t = nl + 1;
    }
    *out = '\0';
}

START_TEST(test_text)
{
    char *t = capture(SRV_LOG_TEXT, write_some);
    strip_times(t);
    ck_assert_str_eq(t, "ssmd: loading dir \"q\" ...\n"
                        "ssmd: POST /v1/completions 200 12.5ms tokens=7+9 stream "
                        "session=0123456789abcdef0123456789abcdef tier=host seed=42\n"
                        "ssmd: GET /x 404 0.2ms: no such route\n"
                        "ssmd: ready on http://h:1\n");
    free(t);
}
END_TEST

START_TEST(test_json)
{
    char *t = capture(SRV_LOG_JSON, write_some);
    json_t *lines[4] = {0};
    char *p = t;
    for (int i = 0; i < 4; i++) {
        char *nl = strchr(p, '\n');
        ck_assert_ptr_nonnull(nl);
        json_error_t je;
        lines[i] = json_loadb(p, (size_t)(nl - p), 0, &je);
        ck_assert_msg(lines[i] != NULL, "line %d: %s", i, je.text);
        ck_assert_ptr_nonnull(json_string_value(json_object_get(lines[i], "time")));
        p = nl + 1;
    }
    ck_assert_str_eq(p, "");
    ck_assert_str_eq(json_string_value(json_object_get(lines[0], "msg")), "loading dir \"q\" ...");
    ck_assert_str_eq(json_string_value(json_object_get(lines[0], "event")), "loading");
    json_t *r = lines[1];
    ck_assert_str_eq(json_string_value(json_object_get(r, "method")), "POST");
    ck_assert_str_eq(json_string_value(json_object_get(r, "path")), "/v1/completions");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "status")), 200);
    ck_assert_double_eq_tol(json_number_value(json_object_get(r, "duration_ms")), 12.5, 1e-9);
    ck_assert_int_eq(json_integer_value(json_object_get(r, "prompt_tokens")), 7);
    ck_assert_int_eq(json_integer_value(json_object_get(r, "completion_tokens")), 9);
    ck_assert(json_is_true(json_object_get(r, "stream")));
    ck_assert_str_eq(json_string_value(json_object_get(r, "level")), "info");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "seed")), 42);
    ck_assert_str_eq(json_string_value(json_object_get(r, "tier")), "host");
    ck_assert_ptr_null(json_object_get(r, "error"));
    json_t *e = lines[2];
    ck_assert_str_eq(json_string_value(json_object_get(e, "level")), "warn");
    ck_assert_ptr_null(json_object_get(e, "prompt_tokens"));
    ck_assert_ptr_null(json_object_get(e, "session"));
    ck_assert_ptr_null(json_object_get(e, "seed"));
    ck_assert_ptr_null(json_object_get(e, "tier"));
    ck_assert_str_eq(json_string_value(json_object_get(e, "error")), "no such route");
    ck_assert_str_eq(json_string_value(json_object_get(lines[3], "url")), "http://h:1");
    for (int i = 0; i < 4; i++)
        json_decref(lines[i]);
    free(t);
}
END_TEST

START_TEST(test_mb)
{
    char b[32];
    srv_log_mb(b, sizeof b, 5601792);
    ck_assert_str_eq(b, "5.6 MB");
    srv_log_mb(b, sizeof b, 0);
    ck_assert_str_eq(b, "0.0 MB");
    ck_assert_int_eq(srv_log_format_parse("json"), SRV_LOG_JSON);
    ck_assert_int_eq(srv_log_format_parse("text"), SRV_LOG_TEXT);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_text);
    tcase_add_test(tc, test_json);
    tcase_add_test(tc, test_mb);
    suite_add_tcase(s, tc);
    return s;
}
