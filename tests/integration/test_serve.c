/* test_serve.c - integration tests of `ssmd serve` through HTTP: every
 * route, greedy outputs against the transformers reference in the fixture's
 * expected.json, streaming against non-streaming, sessions (continuation,
 * fork, export/import), concurrency, errors and limits.
 *
 * One server (the sanitizer build) is started per test case group in the
 * runner process; each test talks to it over loopback.  Its exit status
 * after SIGTERM must be 0 (which also means no leak reports).
 */
#include <check.h>

#include "server/state_fmt.h"
#include "tests/integration/itest.h"

#define FIXTURE "tests/fixtures/mamba/untied_bias"

static it_server srv;
static char text_dir[256];

static void setup_api(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    if (it_text_model_dir(FIXTURE, text_dir, sizeof text_dir) != 0) {
        fprintf(stderr, "cannot make a temp model dir\n");
        exit(1);
    }
    const char *extra[] = {"--max-batch", "4", "--max-sessions", "6", "--max-body", "4096", "--max-prompt", "64",
                           "--max-tokens", "100000000", NULL};
    it_start_or_exit(&srv, text_dir, extra);
}

static void teardown_api(void)
{
    it_stop_or_exit(&srv);
    it_rm_model_dir(text_dir);
    curl_global_cleanup();
}

/* ---- reference cases ---- */

typedef struct ref_case {
    int32_t prompt[64];
    int n_prompt;
    int32_t greedy[16];
    int n_greedy;
} ref_case;

static int load_cases(ref_case *out, int cap)
{
    json_error_t je;
    json_t *j = json_load_file(FIXTURE "/expected.json", 0, &je);
    ck_assert_msg(j != NULL, "expected.json: %s", je.text);
    json_t *cases = json_object_get(j, "cases");
    int n = 0;
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        if (n == cap)
            break;
        json_t *p = json_object_get(c, "prompt"), *g = json_object_get(c, "greedy");
        ref_case *r = &out[n++];
        r->n_prompt = (int)json_array_size(p);
        r->n_greedy = (int)json_array_size(g);
        ck_assert(r->n_prompt <= 64 && r->n_greedy <= 16);
        for (int k = 0; k < r->n_prompt; k++)
            r->prompt[k] = (int32_t)json_integer_value(json_array_get(p, (size_t)k));
        for (int k = 0; k < r->n_greedy; k++)
            r->greedy[k] = (int32_t)json_integer_value(json_array_get(g, (size_t)k));
    }
    json_decref(j);
    return n;
}

/* A completion body for ids[0..n) (greedy, ignore_eos); extra may add fields. */
static char *body_ids(const int32_t *ids, int n, int max_tokens, const char *session, int stream)
{
    json_t *p = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(p, json_integer(ids[i]));
    json_t *b = json_pack("{s:o, s:i, s:f, s:b, s:b}", "prompt", p, "max_tokens", max_tokens, "temperature", 0.0,
                          "ignore_eos", 1, "stream", stream);
    if (session)
        json_object_set_new(b, "session", json_string(session));
    if (stream)
        json_object_set_new(b, "stream_options", json_pack("{s:b}", "include_usage", 1));
    char *s = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    return s;
}

/* Runs a non-streaming completion; fills tokens (up to cap) and returns
 * their count, or -status on an HTTP error. */
static int complete(const int32_t *ids, int n, int max_tokens, const char *session, int32_t *tokens, int cap,
                    json_t **resp)
{
    char *body = body_ids(ids, n, max_tokens, session, 0);
    long status;
    json_t *j = it_post_json(&srv, "/v1/completions", body, &status);
    free(body);
    if (status != 200) {
        if (resp)
            *resp = j;
        else
            json_decref(j);
        return -(int)status;
    }
    json_t *toks = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "tokens");
    int k = 0;
    for (size_t i = 0; i < json_array_size(toks) && k < cap; i++)
        tokens[k++] = (int32_t)json_integer_value(json_array_get(toks, i));
    if (resp)
        *resp = j;
    else
        json_decref(j);
    return k;
}

static void assert_tokens(const int32_t *got, int n_got, const int32_t *want, int n_want, const char *what)
{
    ck_assert_msg(n_got == n_want, "%s: %d tokens, want %d", what, n_got, n_want);
    for (int i = 0; i < n_want; i++)
        ck_assert_msg(got[i] == want[i], "%s: token %d is %d, reference %d", what, i, got[i], want[i]);
}

/* ---- tests ---- */

START_TEST(test_probes_and_models)
{
    it_resp r = it_http(&srv, "GET", "/health", NULL);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    r = it_http(&srv, "GET", "/ready", NULL);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    r = it_http(&srv, "GET", "/v1/models", NULL);
    ck_assert_int_eq(r.status, 200);
    json_t *j = it_json(&r);
    json_t *m = json_array_get(json_object_get(j, "data"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(m, "object")), "model");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(m, "meta"), "n_vocab")), 97);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(m, "meta"), "options"), "max-batch")), "4");
    json_decref(j);
    it_resp_free(&r);
}
END_TEST

START_TEST(test_greedy_matches_reference)
{
    ref_case cases[8];
    int n = load_cases(cases, 8);
    ck_assert_int_ge(n, 3);
    for (int i = 0; i < n; i++) {
        int32_t got[32];
        json_t *j = NULL;
        int k = complete(cases[i].prompt, cases[i].n_prompt, cases[i].n_greedy, NULL, got, 32, &j);
        assert_tokens(got, k, cases[i].greedy, cases[i].n_greedy, "greedy");
        json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
        ck_assert_str_eq(json_string_value(json_object_get(ch, "finish_reason")), "length");
        json_t *u = json_object_get(j, "usage");
        ck_assert_int_eq(json_integer_value(json_object_get(u, "prompt_tokens")), cases[i].n_prompt);
        ck_assert_int_eq(json_integer_value(json_object_get(u, "completion_tokens")), cases[i].n_greedy);
        ck_assert_str_eq(json_string_value(json_object_get(j, "object")), "text_completion");
        json_decref(j);
    }
}
END_TEST

START_TEST(test_stream_equals_nonstream)
{
    ref_case cases[8];
    int n = load_cases(cases, 8);
    for (int i = 0; i < n; i++) {
        char *body = body_ids(cases[i].prompt, cases[i].n_prompt, 12, NULL, 1);
        it_resp r = it_http(&srv, "POST", "/v1/completions", body);
        free(body);
        ck_assert_int_eq(r.status, 200);
        json_t *events;
        ck_assert_msg(it_sse_parse(r.body, &events), "stream does not end with [DONE]");
        int32_t stoks[64];
        int ns = 0, saw_usage = 0;
        char text[4096] = "";
        const char *finish = NULL;
        size_t k;
        json_t *e;
        json_array_foreach(events, k, e) {
            json_t *ch = json_array_get(json_object_get(e, "choices"), 0);
            if (json_object_get(e, "usage")) {
                saw_usage = 1;
                ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(e, "usage"), "completion_tokens")), 12);
                continue;
            }
            ck_assert_ptr_nonnull(ch);
            json_t *t = json_object_get(ch, "tokens");
            for (size_t q = 0; q < json_array_size(t) && ns < 64; q++)
                stoks[ns++] = (int32_t)json_integer_value(json_array_get(t, q));
            strncat(text, json_string_value(json_object_get(ch, "text")), sizeof text - strlen(text) - 1);
            if (json_is_string(json_object_get(ch, "finish_reason")))
                finish = json_string_value(json_object_get(ch, "finish_reason"));
        }
        ck_assert(saw_usage);
        ck_assert_str_eq(finish, "length");
        int32_t want[64];
        json_t *j = NULL;
        int nw = complete(cases[i].prompt, cases[i].n_prompt, 12, NULL, want, 64, &j);
        assert_tokens(stoks, ns, want, nw, "stream vs non-stream");
        assert_tokens(stoks, cases[i].n_greedy, cases[i].greedy, cases[i].n_greedy, "stream vs reference");
        const char *full = json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
        ck_assert_str_eq(text, full);
        ck_assert_int_gt(strlen(full), 0); /* the fixture tokenizer gives the ids text */
        json_decref(j);
        json_decref(events);
        it_resp_free(&r);
    }
}
END_TEST

START_TEST(test_session_continuation)
{
    ref_case cases[8];
    load_cases(cases, 8);
    ref_case *c = &cases[1];
    int32_t got[32];
    /* split prompt, nothing generated in between */
    char *s = it_new_session(&srv);
    ck_assert_int_eq(complete(c->prompt, 4, 0, s, got, 32, NULL), 0);
    int k = complete(c->prompt + 4, c->n_prompt - 4, c->n_greedy, s, got, 32, NULL);
    assert_tokens(got, k, c->greedy, c->n_greedy, "split prompt through a session");
    free(s);
    /* generated tokens stay in the session: the last one is consumed next time */
    s = it_new_session(&srv);
    k = complete(c->prompt, c->n_prompt, 3, s, got, 32, NULL);
    assert_tokens(got, k, c->greedy, 3, "first part");
    k = complete(c->greedy + 3, 1, c->n_greedy - 4, s, got, 32, NULL);
    assert_tokens(got, k, c->greedy + 4, c->n_greedy - 4, "continuation after generated tokens");
    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s", s);
    it_resp r = it_http(&srv, "GET", path, NULL);
    ck_assert_int_eq(r.status, 200);
    json_t *j = it_json(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "n_tokens")), c->n_prompt + c->n_greedy);
    ck_assert_int_gt(json_integer_value(json_object_get(j, "last_used")), 0);
    json_decref(j);
    it_resp_free(&r);
    r = it_http(&srv, "DELETE", path, NULL);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    r = it_http(&srv, "GET", path, NULL);
    ck_assert_int_eq(r.status, 404);
    it_resp_free(&r);
    free(s);
}
END_TEST

START_TEST(test_session_fork)
{
    ref_case cases[8];
    load_cases(cases, 8);
    ref_case *c = &cases[2];
    int32_t got[32];
    char *s = it_new_session(&srv);
    ck_assert_int_eq(complete(c->prompt, 10, 0, s, got, 32, NULL), 0);
    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s/fork", s);
    long status;
    json_t *j = it_post_json(&srv, path, "", &status);
    ck_assert_int_eq(status, 200);
    char *f = strdup(json_string_value(json_object_get(j, "id")));
    ck_assert_str_ne(f, s);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "n_tokens")), 10);
    json_decref(j);
    int k = complete(c->prompt + 10, c->n_prompt - 10, c->n_greedy, f, got, 32, NULL);
    assert_tokens(got, k, c->greedy, c->n_greedy, "fork");
    k = complete(c->prompt + 10, c->n_prompt - 10, c->n_greedy, s, got, 32, NULL);
    assert_tokens(got, k, c->greedy, c->n_greedy, "original after fork");
    free(f);
    free(s);
}
END_TEST

START_TEST(test_state_export_import)
{
    ref_case cases[8];
    load_cases(cases, 8);
    ref_case *c = &cases[1];
    int32_t got[32];
    char *s = it_new_session(&srv);
    ck_assert_int_eq(complete(c->prompt, c->n_prompt, 2, s, got, 32, NULL), 2);
    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s/state", s);
    it_resp blob = it_http(&srv, "GET", path, NULL);
    ck_assert_int_eq(blob.status, 200);
    ck_assert_int_gt(blob.len, 172);
    ck_assert_int_eq(memcmp(blob.body, "SSMDSTAT", 8), 0);

    char *t = it_new_session(&srv);
    char tpath[128], tinfo[128];
    snprintf(tpath, sizeof tpath, "/v1/sessions/%s/state", t);
    snprintf(tinfo, sizeof tinfo, "/v1/sessions/%s", t);
    /* corrupted payload: 400, session unchanged */
    char *bad = malloc(blob.len);
    memcpy(bad, blob.body, blob.len);
    bad[200] ^= 0x5a;
    it_resp r = it_http_key(&srv, "PUT", tpath, bad, (long)blob.len, NULL);
    ck_assert_int_eq(r.status, 400);
    it_resp_free(&r);
    /* another model's fingerprint, with the checksum made right again so it
     * is the fingerprint check that refuses it: 409, saying why */
    memcpy(bad, blob.body, blob.len);
    bad[40] = bad[40] == 'x' ? 'y' : 'x';
    size_t body = blob.len - SRV_STATE_TRAILER_BYTES;
    uint32_t crc = srv_crc32(0, bad, body);
    for (int k = 0; k < 4; k++) /* little-endian, as state_fmt.c writes it */
        bad[body + (size_t)k] = (char)(crc >> (8 * k));
    r = it_http_key(&srv, "PUT", tpath, bad, (long)blob.len, NULL);
    ck_assert_int_eq(r.status, 409);
    ck_assert_ptr_nonnull(strstr(r.body, "exported from another model"));
    it_resp_free(&r);
    r = it_http_key(&srv, "PUT", tpath, blob.body, 100, NULL); /* truncated */
    ck_assert_int_eq(r.status, 400);
    it_resp_free(&r);
    free(bad);
    r = it_http(&srv, "GET", tinfo, NULL);
    json_t *j = it_json(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "n_tokens")), 0);
    json_decref(j);
    it_resp_free(&r);
    /* a good import continues exactly like the original */
    r = it_http_key(&srv, "PUT", tpath, blob.body, (long)blob.len, NULL);
    ck_assert_int_eq(r.status, 200);
    j = it_json(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "n_tokens")), c->n_prompt + 2);
    json_decref(j);
    it_resp_free(&r);
    int k = complete(c->greedy + 2, 1, c->n_greedy - 3, t, got, 32, NULL);
    assert_tokens(got, k, c->greedy + 3, c->n_greedy - 3, "imported session");
    /* importing under an id this server does not hold creates that session
     * (the drain handoff), and it continues like the original; a refused
     * blob creates nothing */
    const char *nid = "00000000000000000000000000000000";
    char npath[128], ninfo[128];
    snprintf(npath, sizeof npath, "/v1/sessions/%s/state", nid);
    snprintf(ninfo, sizeof ninfo, "/v1/sessions/%s", nid);
    r = it_http_key(&srv, "PUT", npath, blob.body, 100, NULL);
    ck_assert_int_eq(r.status, 400);
    it_resp_free(&r);
    r = it_http(&srv, "GET", ninfo, NULL);
    ck_assert_int_eq(r.status, 404);
    it_resp_free(&r);
    r = it_http_key(&srv, "PUT", npath, blob.body, (long)blob.len, NULL);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    k = complete(c->greedy + 2, 1, c->n_greedy - 3, nid, got, 32, NULL);
    assert_tokens(got, k, c->greedy + 3, c->n_greedy - 3, "session created by import");
    it_resp_free(&blob);
    free(s);
    free(t);
}
END_TEST

typedef struct conc_client {
    it_resp r;
    struct curl_slist *hdrs;
    char *body;
    int which;
    int max_tokens;
} conc_client;

START_TEST(test_concurrency)
{
    ref_case cases[8];
    int n = load_cases(cases, 8);
    enum { N = 16 };
    conc_client cl[N];
    memset(cl, 0, sizeof cl);
    CURLM *m = curl_multi_init();
    CURL *hs[N];
    for (int i = 0; i < N; i++) {
        cl[i].which = i % n;
        cl[i].max_tokens = 1 + (i * 5) % cases[cl[i].which].n_greedy; /* staggered finishes */
        ref_case *c = &cases[cl[i].which];
        cl[i].body = body_ids(c->prompt, c->n_prompt, cl[i].max_tokens, NULL, i % 2);
        hs[i] = it_easy(&srv, "POST", "/v1/completions", cl[i].body, -1, NULL, &cl[i].r, &cl[i].hdrs);
        curl_multi_add_handle(m, hs[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < N; i++) {
        long status = 0;
        curl_easy_getinfo(hs[i], CURLINFO_RESPONSE_CODE, &status);
        ck_assert_msg(status == 200, "client %d: status %ld: %s", i, status, cl[i].r.body);
        int32_t got[64];
        int k = 0;
        if (i % 2) {
            json_t *ev;
            it_sse_parse(cl[i].r.body, &ev);
            size_t q;
            json_t *e;
            json_array_foreach(ev, q, e) {
                json_t *t = json_object_get(json_array_get(json_object_get(e, "choices"), 0), "tokens");
                for (size_t z = 0; z < json_array_size(t); z++)
                    got[k++] = (int32_t)json_integer_value(json_array_get(t, z));
            }
            json_decref(ev);
        } else {
            json_t *j = it_json(&cl[i].r);
            json_t *t = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "tokens");
            for (size_t z = 0; z < json_array_size(t); z++)
                got[k++] = (int32_t)json_integer_value(json_array_get(t, z));
            json_decref(j);
        }
        assert_tokens(got, k, cases[cl[i].which].greedy, cl[i].max_tokens, "concurrent client");
        curl_multi_remove_handle(m, hs[i]);
        curl_easy_cleanup(hs[i]);
        curl_slist_free_all(cl[i].hdrs);
        it_resp_free(&cl[i].r);
        free(cl[i].body);
    }
    curl_multi_cleanup(m);
}
END_TEST

static void expect_error(const char *method, const char *path, const char *body, long want, const char *type)
{
    it_resp r = it_http(&srv, method, path, body);
    ck_assert_msg(r.status == want, "%s %s %s: status %ld, want %ld (%s)", method, path, body ? body : "", r.status,
                  want, r.body);
    json_t *j = it_json(&r);
    json_t *e = json_object_get(j, "error");
    ck_assert_msg(json_is_string(json_object_get(e, "message")), "no error.message in %s", r.body);
    ck_assert_msg(json_is_string(json_object_get(e, "code")), "no error.code in %s", r.body);
    if (type)
        ck_assert_str_eq(json_string_value(json_object_get(e, "type")), type);
    json_decref(j);
    it_resp_free(&r);
}

START_TEST(test_errors)
{
    expect_error("GET", "/v1/nothing", NULL, 404, "not_found_error");
    expect_error("GET", "/v1/completions", NULL, 405, NULL);
    expect_error("POST", "/v1/completions", "{\"prompt\": [1, 2", 400, "invalid_request_error");
    expect_error("POST", "/v1/completions", "[1]", 400, NULL);
    expect_error("POST", "/v1/completions", "{\"prompt\": [1], \"max_tokens\": \"x\"}", 400, NULL);
    expect_error("POST", "/v1/completions", "{\"prompt\": [1], \"temperature\": -1}", 400, NULL);
    expect_error("POST", "/v1/completions", "{\"prompt\": [1], \"top_p\": 1.5}", 400, NULL);
    expect_error("POST", "/v1/completions", "{\"prompt\": [1], \"stream\": 1}", 400, NULL);
    expect_error("POST", "/v1/completions", "{\"prompt\": [97]}", 400, NULL);   /* out of vocabulary */
    expect_error("POST", "/v1/completions", "{\"prompt\": [1, \"a\"]}", 400, NULL);
    expect_error("POST", "/v1/completions", "{\"prompt\": []}", 400, NULL);
    expect_error("POST", "/v1/completions", "{}", 400, NULL);
    expect_error("POST", "/v1/completions", "{\"prompt\": [1], \"max_tokens\": 100000001}", 400, NULL);
    expect_error("POST", "/v1/completions", "{\"prompt\": [1], \"stop\": 5}", 400, NULL);
    expect_error("POST", "/v1/completions", "{\"prompt\": [1], \"session\": \"nope\"}", 400, NULL);
    expect_error("POST", "/v1/completions",
                 "{\"prompt\": [1], \"session\": \"0123456789abcdef0123456789abcdef\"}", 404, NULL);
    /* prompt over --max-prompt 64 */
    char big[1024] = "{\"prompt\": [1";
    for (int i = 0; i < 64; i++)
        strcat(big, ", 2");
    strcat(big, "]}");
    expect_error("POST", "/v1/completions", big, 400, NULL);
    /* body over --max-body 4096: refused from Content-Length */
    char *huge = malloc(8192);
    memset(huge, ' ', 8191);
    huge[0] = '{';
    huge[8190] = '}';
    huge[8191] = '\0';
    expect_error("POST", "/v1/completions", huge, 413, NULL);
    free(huge);
    expect_error("GET", "/v1/sessions/zzz", NULL, 404, NULL);
    expect_error("GET", "/v1/sessions/0123456789abcdef0123456789abcdef", NULL, 404, NULL);
    expect_error("DELETE", "/v1/sessions/0123456789abcdef0123456789abcdef", NULL, 404, NULL);
    expect_error("POST", "/v1/sessions/0123456789abcdef0123456789abcdef/fork", NULL, 404, NULL);
    expect_error("PATCH", "/v1/sessions", NULL, 405, NULL);
    expect_error("POST", "/tokenize", "{\"content\": 5}", 400, NULL);
    expect_error("POST", "/detokenize", "{\"tokens\": [-1]}", 400, NULL);
    /* the server still serves after all that */
    it_resp r = it_http(&srv, "GET", "/health", NULL);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
}
END_TEST

START_TEST(test_session_busy_conflict)
{
    char *s = it_new_session(&srv);
    /* a streaming completion on s that runs until its client goes away
     * (10^8 tokens: hours), then a second one on s: 409 */
    char body[256];
    snprintf(body, sizeof body,
             "{\"prompt\": [5], \"max_tokens\": 100000000, \"ignore_eos\": true, \"stream\": true, \"session\": \"%s\"}", s);
    it_resp r1 = {0};
    struct curl_slist *h1;
    CURL *e1 = it_easy(&srv, "POST", "/v1/completions", body, -1, NULL, &r1, &h1);
    CURLM *m = curl_multi_init();
    curl_multi_add_handle(m, e1);
    it_multi_first_bytes(m, &r1, 30);
    ck_assert_int_gt(r1.len, 0);
    snprintf(body, sizeof body, "{\"prompt\": [6], \"max_tokens\": 1, \"session\": \"%s\"}", s);
    expect_error("POST", "/v1/completions", body, 409, NULL);
    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s/state", s);
    expect_error("GET", path, NULL, 409, NULL);
    /* disconnecting cancels the long one; the session becomes free again */
    curl_multi_remove_handle(m, e1);
    curl_easy_cleanup(e1);
    curl_multi_cleanup(m);
    curl_slist_free_all(h1);
    it_resp_free(&r1);
    long status = 0;
    for (double t0 = it_now(); it_now() - t0 < 30; it_sleep(0.02)) {
        json_t *j = it_post_json(&srv, "/v1/completions", body, &status);
        json_decref(j);
        if (status == 200)
            break;
    }
    ck_assert_int_eq(status, 200);
    free(s);
}
END_TEST

START_TEST(test_text_routes)
{
    long status;
    json_t *j = it_post_json(&srv, "/tokenize", "{\"content\": \"Hello, world!\"}", &status);
    ck_assert_int_eq(status, 200);
    /* ids from tests/fixtures/tokenizer/cases.json (HF tokenizers) */
    const int want[] = {41, 1953, 80, 13, 2125, 2};
    json_t *t = json_object_get(j, "tokens");
    ck_assert_int_eq(json_array_size(t), 6);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(json_integer_value(json_array_get(t, (size_t)i)), want[i]);
    json_decref(j);
    j = it_post_json(&srv, "/detokenize", "{\"tokens\": [41, 1953, 80, 13, 2125, 2]}", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "content")), "Hello, world!");
    json_decref(j);
}
END_TEST

START_TEST(test_stop_echo_logprobs)
{
    ref_case cases[8];
    load_cases(cases, 8);
    ref_case *c = &cases[1];
    int32_t got[32];
    json_t *j = NULL;
    complete(c->prompt, c->n_prompt, 8, NULL, got, 32, &j);
    const char *text = json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
    char full[256];
    snprintf(full, sizeof full, "%s", text);
    json_decref(j);
    ck_assert_int_ge(strlen(full), 6);
    /* stop on a substring that starts at byte 3: the text ends right before it */
    char stop[3] = {full[3], full[4], 0};
    const char *first = strstr(full, stop);
    size_t cut = (size_t)(first - full);
    json_t *p = json_array();
    for (int i = 0; i < c->n_prompt; i++)
        json_array_append_new(p, json_integer(c->prompt[i]));
    for (int stream = 0; stream < 2; stream++) {
        json_t *b = json_pack("{s:O, s:i, s:f, s:b, s:s, s:b}", "prompt", p, "max_tokens", 8, "temperature", 0.0,
                              "ignore_eos", 1, "stop", stop, "stream", stream);
        char *body = json_dumps(b, JSON_COMPACT);
        it_resp r = it_http(&srv, "POST", "/v1/completions", body);
        ck_assert_int_eq(r.status, 200);
        char got_text[256] = "";
        const char *finish = NULL;
        json_t *ev = NULL;
        if (stream) {
            it_sse_parse(r.body, &ev);
        } else {
            ev = json_array();
            json_array_append_new(ev, it_json(&r));
        }
        size_t q;
        json_t *e;
        json_array_foreach(ev, q, e) {
            json_t *ch = json_array_get(json_object_get(e, "choices"), 0);
            if (!ch)
                continue;
            strncat(got_text, json_string_value(json_object_get(ch, "text")), sizeof got_text - strlen(got_text) - 1);
            if (json_is_string(json_object_get(ch, "finish_reason")))
                finish = json_string_value(json_object_get(ch, "finish_reason"));
        }
        ck_assert_int_eq(strlen(got_text), cut);
        ck_assert_int_eq(strncmp(got_text, full, cut), 0);
        ck_assert_str_eq(finish, "stop");
        json_decref(ev);
        json_decref(b);
        free(body);
        it_resp_free(&r);
    }
    /* echo prepends the prompt's text; logprobs report the chosen greedy token as the top one */
    json_t *b = json_pack("{s:O, s:i, s:f, s:b, s:b, s:i}", "prompt", p, "max_tokens", 4, "temperature", 0.0,
                          "ignore_eos", 1, "echo", 1, "logprobs", 3);
    char *body = json_dumps(b, JSON_COMPACT);
    long status;
    j = it_post_json(&srv, "/v1/completions", body, &status);
    ck_assert_int_eq(status, 200);
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    json_t *dreq = json_pack("{s:O}", "tokens", p);
    char *dbody = json_dumps(dreq, JSON_COMPACT);
    json_t *dj = it_post_json(&srv, "/detokenize", dbody, &status);
    ck_assert_int_eq(status, 200);
    const char *ptext = json_string_value(json_object_get(dj, "content"));
    const char *etext = json_string_value(json_object_get(ch, "text"));
    size_t pl = strlen(ptext);
    ck_assert_int_gt(pl, 0);
    ck_assert_int_eq(strncmp(etext, ptext, pl), 0);             /* the echoed prompt */
    ck_assert_int_eq(strncmp(etext + pl, full, strlen(etext + pl)), 0); /* then the greedy text */
    json_decref(dj);
    json_decref(dreq);
    free(dbody);
    json_t *lp = json_object_get(ch, "logprobs");
    ck_assert_int_eq(json_array_size(json_object_get(lp, "token_logprobs")), 4);
    for (size_t i = 0; i < 4; i++) {
        double l = json_real_value(json_array_get(json_object_get(lp, "token_logprobs"), i));
        ck_assert(l <= 1e-6);
        json_t *top = json_array_get(json_object_get(lp, "top_logprobs"), i);
        ck_assert_int_ge(json_object_size(top), 1);
        double best = -1e30;
        const char *key;
        json_t *v;
        json_object_foreach(top, key, v) if (json_real_value(v) > best) best = json_real_value(v);
        ck_assert(l >= best - 1e-5); /* greedy: the chosen token is the most likely */
        ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(lp, "token_ids"), i)), c->greedy[i]);
    }
    json_decref(j);
    json_decref(b);
    free(body);
    json_decref(p);
}
END_TEST

/* --max-sessions 6: a seventh session moves the least recently used one
 * to host memory (the default --host-session-memory), not away: it answers
 * again, and /metrics counts the moves. */
START_TEST(test_session_lru)
{
    char *ids[7];
    for (int i = 0; i < 7; i++)
        ids[i] = it_new_session(&srv);
    char path[128];
    for (int i = 0; i < 7; i++) {
        snprintf(path, sizeof path, "/v1/sessions/%s", ids[i]);
        it_resp r = it_http(&srv, "GET", path, NULL);
        ck_assert_msg(r.status == 200, "session %d: %ld %s", i, r.status, r.body);
        it_resp_free(&r);
    }
    it_resp r = it_http(&srv, "GET", "/metrics", NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "\nssmd_sessions_to_host_total "));
    ck_assert_ptr_null(strstr(r.body, "\nssmd_sessions_to_host_total 0\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "\nssmd_sessions_dropped_total 0\n"));
    it_resp_free(&r);
    for (int i = 0; i < 7; i++)
        free(ids[i]);
}
END_TEST

START_TEST(test_metrics)
{
    int32_t got[4];
    int32_t p[] = {3, 4, 5};
    ck_assert_int_eq(complete(p, 3, 2, NULL, got, 4, NULL), 2);
    it_resp r = it_http(&srv, "GET", "/metrics", NULL);
    ck_assert_int_eq(r.status, 200);
    const char *names[] = {"ssmd_requests_running ", "ssmd_requests_waiting ", "ssmd_sessions_live ",
                           "ssmd_prompt_tokens_total ", "ssmd_generation_tokens_total ",
                           "ssmd_time_to_first_token_seconds_bucket{le=\"+Inf\"} ",
                           "ssmd_inter_token_latency_seconds_count ", "ssmd_request_latency_seconds_sum ",
                           "ssmd_batch_size_count "};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        ck_assert_msg(strstr(r.body, names[i]) != NULL, "no %s in /metrics", names[i]);
    const char *t = strstr(r.body, "ssmd_time_to_first_token_seconds_count ");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_gt(atol(t + strlen("ssmd_time_to_first_token_seconds_count ")), 0);
    it_resp_free(&r);
}
END_TEST

START_TEST(test_chat)
{
    long status;
    json_t *j = it_post_json(&srv, "/v1/chat/completions",
                             "{\"messages\": [{\"role\": \"user\", \"content\": \"~\"}], \"max_tokens\": 3, \"temperature\": 0}",
                             &status);
    /* The fixture model's vocabulary (97) is smaller than the tokenizer's:
     * the rendered template needs ids beyond it, which must be a clean 400. */
    if (status == 200) {
        json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
        ck_assert_str_eq(json_string_value(json_object_get(j, "object")), "chat.completion");
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ch, "message"), "role")), "assistant");
    } else {
        ck_assert_int_eq(status, 400);
        ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                                     "vocabulary"));
    }
    json_decref(j);
    j = it_post_json(&srv, "/v1/chat/completions", "{\"messages\": []}", &status);
    ck_assert_int_eq(status, 400);
    json_decref(j);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("serve");
    TCase *tc = tcase_create("api");
    tcase_add_unchecked_fixture(tc, setup_api, teardown_api);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_probes_and_models);
    tcase_add_test(tc, test_greedy_matches_reference);
    tcase_add_test(tc, test_stream_equals_nonstream);
    tcase_add_test(tc, test_session_continuation);
    tcase_add_test(tc, test_session_fork);
    tcase_add_test(tc, test_state_export_import);
    tcase_add_test(tc, test_concurrency);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_session_busy_conflict);
    tcase_add_test(tc, test_text_routes);
    tcase_add_test(tc, test_stop_echo_logprobs);
    tcase_add_test(tc, test_session_lru);
    tcase_add_test(tc, test_metrics);
    tcase_add_test(tc, test_chat);
    suite_add_tcase(s, tc);
    return s;
}
