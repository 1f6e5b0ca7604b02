/* test_serve_api.c - integration tests of OpenAI API fidelity on the real
 * server with models/default: seed semantics (drawn per request and
 * reported, reproducible when sent back), presence/frequency penalties and
 * logit_bias checked step by step against the reported log-probabilities,
 * the fields accepted or refused as proto/openapi.yaml documents them,
 * error messages in the user's words, and the log lines (RFC 3339 time,
 * the reason of a 4xx, no probe lines without --verbose).
 *
 * One server for the whole file (an unchecked fixture); the tests only read
 * its log file.  Nothing is compared with fixed generated text: expected
 * values come from other responses of the same server.
 */
#include <check.h>
#include <ctype.h>
#include <math.h>

#include "tests/integration/itest.h"

static it_server srv;

static void setup_api(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    it_start_or_exit(&srv, "models/default", NULL);
}

static void teardown_api(void)
{
    it_stop_or_exit(&srv);
    curl_global_cleanup();
}

/* POSTs body to path; fails the test unless the status is want.  Returns
 * the JSON answer (caller frees). */
static json_t *post(const char *path, const char *body, long want)
{
    it_resp r = it_http(&srv, "POST", path, body);
    ck_assert_msg(r.status == want, "%s %s: status %ld, want %ld: %s", path, body, r.status, want, r.body);
    json_t *j = it_json(&r);
    ck_assert_msg(j != NULL, "not JSON: %s", r.body);
    it_resp_free(&r);
    return j;
}

static const char *error_message(const json_t *j)
{
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    ck_assert_ptr_nonnull(m);
    return m;
}

/* The 400 (or other status) answer to body must name `names` in its
 * message and speak plainly (no internals, no exponent notation). */
static void refused(const char *path, const char *body, long status, const char *names)
{
    json_t *j = post(path, body, status);
    const char *m = error_message(j);
    ck_assert_msg(strstr(m, names) != NULL, "%s: message '%s' lacks '%s'", body, m, names);
    ck_assert_msg(!strstr(m, "JSON_") && !strstr(m, "e+") && !strstr(m, "got "), "%s: message '%s'", body, m);
    json_decref(j);
}

static json_t *choice0(const json_t *j) { return json_array_get(json_object_get(j, "choices"), 0); }

/* ---- seeds ---- */

START_TEST(test_seed_semantics)
{
    const char *body = "{\"prompt\":\"And God said\",\"max_tokens\":16,\"ignore_eos\":true}";
    json_t *r[3];
    json_int_t seed[3];
    for (int i = 0; i < 3; i++) {
        r[i] = post("/v1/completions", body, 200);
        ck_assert_msg(json_is_integer(json_object_get(r[i], "seed")), "no seed reported");
        seed[i] = json_integer_value(json_object_get(r[i], "seed"));
        ck_assert(seed[i] >= 0 && seed[i] < (json_int_t)1 << 53);
    }
    ck_assert_msg(seed[0] != seed[1] && seed[1] != seed[2] && seed[0] != seed[2], "seeds repeat");
    int differ = !json_equal(json_object_get(choice0(r[0]), "tokens"), json_object_get(choice0(r[1]), "tokens")) ||
                 !json_equal(json_object_get(choice0(r[1]), "tokens"), json_object_get(choice0(r[2]), "tokens"));
    ck_assert_msg(differ, "three requests without a seed sampled the same tokens");

    /* the reported seed, sent back, reproduces the completion */
    char again[256];
    snprintf(again, sizeof again, "{\"prompt\":\"And God said\",\"max_tokens\":16,\"ignore_eos\":true,\"seed\":%lld}",
             (long long)seed[1]);
    json_t *a = post("/v1/completions", again, 200);
    ck_assert(json_equal(json_object_get(choice0(a), "tokens"), json_object_get(choice0(r[1]), "tokens")));
    ck_assert_int_eq(json_integer_value(json_object_get(a, "seed")), seed[1]);
    json_decref(a);
    /* the same in a stream: every chunk reports it */
    snprintf(again, sizeof again, "{\"prompt\":\"And God said\",\"max_tokens\":4,\"stream\":true,\"seed\":%lld}",
             (long long)seed[2]);
    it_resp s = it_http(&srv, "POST", "/v1/completions", again);
    json_t *events;
    ck_assert(it_sse_parse(s.body, &events));
    ck_assert_int_gt(json_array_size(events), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(events, 0), "seed")), seed[2]);
    json_decref(events);
    it_resp_free(&s);

    /* the request log names each request's seed */
    FILE *f = fopen(srv.log, "r");
    ck_assert_ptr_nonnull(f);
    char line[2048], want[64];
    int found = 0;
    snprintf(want, sizeof want, " seed=%lld", (long long)seed[0]);
    while (fgets(line, sizeof line, f))
        found |= strstr(line, "POST /v1/completions 200") && strstr(line, want);
    fclose(f);
    ck_assert_msg(found, "no request line with%s", want);
    for (int i = 0; i < 3; i++)
        json_decref(r[i]);
}
END_TEST

/* ---- penalties and logit_bias, step by step ---- */

/* Greedy chat with top_logprobs 20 and the shaping in extra: at each step
 * the chosen token must have the best shaped score among the reported
 * alternatives, score = logprob + bias - count * freq - (count > 0) *
 * presence over the tokens chosen before.  Returns the chosen ids.  The
 * question is not one the default model was trained to answer (a verse
 * question gets a near-certain answer that penalties of 1.5 cannot move). */
static json_t *check_shaped(const char *extra, double freq, double presence, int bias_id, double bias)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":24,"
             "\"temperature\":0,\"ignore_eos\":true,\"logprobs\":true,\"top_logprobs\":20%s}",
             extra);
    json_t *j = post("/v1/chat/completions", body, 200);
    const json_t *content = json_object_get(json_object_get(choice0(j), "logprobs"), "content");
    ck_assert_int_eq(json_array_size(content), 24);
    int count[8192] = {0};
    size_t t;
    const json_t *step;
    json_array_foreach(content, t, step) {
        int chosen = (int)json_integer_value(json_object_get(step, "id"));
        ck_assert(chosen >= 0 && chosen < 8192);
#define SCORE(id, lp) ((lp) + ((id) == bias_id ? bias : 0) - count[id] * freq - (count[id] > 0) * presence)
        double best = SCORE(chosen, json_number_value(json_object_get(step, "logprob")));
        size_t k;
        const json_t *alt;
        json_array_foreach(json_object_get(step, "top_logprobs"), k, alt) {
            int id = (int)json_integer_value(json_object_get(alt, "id"));
            double sc = SCORE(id, json_number_value(json_object_get(alt, "logprob")));
            ck_assert_msg(sc <= best + 1e-3, "step %zu: token %d scores %g above the chosen %d (%g) with %s", t, id,
                          sc, chosen, best, extra);
        }
#undef SCORE
        count[chosen]++;
    }
    json_t *ids = json_incref(json_object_get(choice0(j), "tokens"));
    json_decref(j);
    return ids;
}

START_TEST(test_penalties_and_bias)
{
    json_t *plain = check_shaped("", 0, 0, -1, 0);
    json_t *pen = check_shaped(",\"frequency_penalty\":1.5,\"presence_penalty\":0.5", 1.5, 0.5, -1, 0);
    ck_assert_msg(!json_equal(plain, pen), "the penalties changed nothing");
    json_decref(pen);
    json_decref(check_shaped(",\"presence_penalty\":2", 0, 2, -1, 0));
    /* ban the greedy first token; then force another one */
    int first = (int)json_integer_value(json_array_get(plain, 0));
    char extra[128];
    snprintf(extra, sizeof extra, ",\"logit_bias\":{\"%d\":-100}", first);
    json_t *banned = check_shaped(extra, 0, 0, first, -100);
    for (size_t i = 0; i < json_array_size(banned); i++)
        ck_assert_int_ne(json_integer_value(json_array_get(banned, i)), first);
    json_decref(banned);
    snprintf(extra, sizeof extra, ",\"logit_bias\":{\"%d\":100}", first + 1);
    json_t *forced = check_shaped(extra, 0, 0, first + 1, 100);
    for (size_t i = 0; i < json_array_size(forced); i++)
        ck_assert_int_eq(json_integer_value(json_array_get(forced, i)), first + 1);
    json_decref(forced);
    json_decref(plain);
}
END_TEST

/* ---- fields accepted or refused ---- */

START_TEST(test_fields_accepted)
{
    const char *ok_completion[] = {
        "{\"prompt\":\"a\",\"max_tokens\":1,\"best_of\":1}",
        "{\"prompt\":\"a\",\"max_tokens\":1,\"suffix\":\"\"}",
        "{\"prompt\":\"a\",\"max_tokens\":1,\"user\":\"someone\"}",
        "{\"prompt\":\"a\",\"max_tokens\":1,\"n\":1,\"model\":\"default\"}",
        "{\"prompt\":[\"a\"],\"max_tokens\":1}",
        "{\"prompt\":[[1,2,3]],\"max_tokens\":1}",
        "{\"prompt\":\"a\",\"max_tokens\":1,\"presence_penalty\":-2,\"frequency_penalty\":2,\"logit_bias\":{}}",
        "{\"prompt\":\"a\",\"max_tokens\":1,\"response_format\":{\"type\":\"text\"}}",
    };
    for (size_t i = 0; i < sizeof ok_completion / sizeof *ok_completion; i++)
        json_decref(post("/v1/completions", ok_completion[i], 200));
    const char *ok_chat[] = {
        "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"max_tokens\":1,\"store\":false,\"tools\":[],"
        "\"tool_choice\":\"none\",\"parallel_tool_calls\":false,\"user\":\"u\"}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"max_tokens\":1,\"tool_choice\":\"auto\"}",
    };
    for (size_t i = 0; i < sizeof ok_chat / sizeof *ok_chat; i++)
        json_decref(post("/v1/chat/completions", ok_chat[i], 200));
}
END_TEST

/* response_format json_object: the text is one JSON object when the
 * choice stops, at any temperature and seed, streamed or not; with too
 * few tokens it is cut ("length") but still the start of one. */
static void check_json_choice(const char *path, const char *body, int want_stop)
{
    json_t *j = post(path, body, 200);
    json_t *c = choice0(j);
    const json_t *msg = json_object_get(c, "message");
    const char *text = json_string_value(msg ? json_object_get(msg, "content") : json_object_get(c, "text"));
    const char *finish = json_string_value(json_object_get(c, "finish_reason"));
    ck_assert_ptr_nonnull(text);
    json_error_t jerr;
    json_t *obj = json_loads(text, JSON_ALLOW_NUL, &jerr);
    if (want_stop || !strcmp(finish, "stop")) {
        ck_assert_msg(!strcmp(finish, "stop"), "%s: finish %s", body, finish);
        ck_assert_msg(obj && json_is_object(obj), "%s: not an object: [%s]: %s", body, text, jerr.text);
    } else {
        ck_assert_str_eq(finish, "length");
        ck_assert_msg(!obj, "%s: cut at length yet complete: [%s]", body, text);
        const char c0 = text[strspn(text, " \t\r\n")];
        ck_assert_msg(c0 == '{' || c0 == '\0', "%s: [%s]", body, text);
    }
    if (getenv("SSMD_TEST_VERBOSE"))
        fprintf(stderr, "%s -> %s [%s]\n", body, finish, text);
    json_decref(obj);
    json_decref(j);
}

START_TEST(test_json_object_output)
{
    char body[256];
    for (int seed = 0; seed < 6; seed++) {
        snprintf(body, sizeof body,
                 "{\"prompt\":\"And God said\",\"max_tokens\":400,\"seed\":%d,\"temperature\":%.1f,"
                 "\"response_format\":{\"type\":\"json_object\"}}", seed, 0.5 * seed);
        check_json_choice("/v1/completions", body, 0);
    }
    check_json_choice("/v1/chat/completions",
                      "{\"messages\":[{\"role\":\"user\",\"content\":\"Answer in JSON\"}],\"max_tokens\":400,"
                      "\"temperature\":0,\"response_format\":{\"type\":\"json_object\"}}", 0);
    check_json_choice("/v1/completions",
                      "{\"prompt\":\"x\",\"max_tokens\":2,\"temperature\":0,"
                      "\"response_format\":{\"type\":\"json_object\"}}", 0);
}
END_TEST

START_TEST(test_fields_refused)
{
    /* C: chat, P: completions; the message must name the last string */
    enum { P, C };
    static const struct {
        int chat;
        const char *body, *names;
    } rows[] = {
        {P, "{\"prompt\":\"a\",\"best_of\":2}", "best_of"},
        {P, "{\"prompt\":\"a\",\"suffix\":\"z\"}", "suffix"},
        {P, "{\"prompt\":\"a\",\"user\":7}", "'user' must be a string"},
        {P, "{\"prompt\":\"a\",\"n\":17}", "--max-batch"},
        {P, "{\"prompt\":\"a\",\"n\":2,\"session\":\"0123456789abcdef0123456789abcdef\"}", "fork the session"},
        {P, "{\"prompt\":[\"a\",\"\"]}", "'prompt[1]' is empty"},
        {P, "{\"prompt\":[1,\"b\"]}", "'prompt[1]' must be a token id"},
        {P, "{\"prompt\":\"a\",\"presence_penalty\":\"abc\"}",
         "'presence_penalty' must be a number, not a string"},
        {P, "{\"prompt\":\"a\",\"frequency_penalty\":2.5}", "between -2 and 2"},
        {P, "{\"prompt\":\"a\",\"logit_bias\":[1]}", "'logit_bias' must be an object"},
        {P, "{\"prompt\":\"a\",\"logit_bias\":{\"x\":1}}", "not a token id"},
        {P, "{\"prompt\":\"a\",\"logit_bias\":{\"1\":101}}", "between -100 and 100"},
        {P, "{\"prompt\":\"a\",\"response_format\":{\"type\":\"xml\"}}", "json_object"},
        {C, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"response_format\":{\"type\":\"json_schema\","
         "\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":"
         "\"string\",\"format\":\"date\"}}}}}}", "'format' (at $.properties.a)"},
        {C, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"tools\":[{\"type\":\"function\",\"function\":"
         "{\"name\":\"f\"}}]}", "'tools' is not supported"},
        {C, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"tool_choice\":\"required\"}", "tool_choice"},
        {C, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"store\":true}", "store"},
        {P, "{\"prompt\":\"a\",\"model\":7}", "'model' must be a string"},
        {P, "{\"prompt\":\"a\",\"temperature\":1000000}", "1000000"},
        {P, "{\"prompt\":\"a\\u0000\"}", "NUL"},
        {P, "{\"prompt\":\"a\",\"prompt\":\"b\"}", "twice"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        refused(rows[i].chat ? "/v1/chat/completions" : "/v1/completions", rows[i].body, 400, rows[i].names);

    /* another model: 404 model_not_found, as OpenAI answers */
    json_t *j = post("/v1/completions", "{\"prompt\":\"a\",\"model\":\"gpt-4o\"}", 404);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "code")), "model_not_found");
    ck_assert(strstr(error_message(j), "gpt-4o") && strstr(error_message(j), "default"));
    json_decref(j);
}
END_TEST

START_TEST(test_model_route)
{
    it_resp r = it_http(&srv, "GET", "/v1/models/default", NULL);
    ck_assert_int_eq(r.status, 200);
    json_t *m = it_json(&r);
    ck_assert_str_eq(json_string_value(json_object_get(m, "id")), "default");
    ck_assert_str_eq(json_string_value(json_object_get(m, "object")), "model");
    json_decref(m);
    it_resp_free(&r);
    r = it_http(&srv, "GET", "/v1/models/org/other", NULL);
    ck_assert_int_eq(r.status, 404);
    m = it_json(&r);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(m, "error"), "code")), "model_not_found");
    json_decref(m);
    it_resp_free(&r);
}
END_TEST

/* Any Content-Type: the body of a JSON route is read as JSON. */
START_TEST(test_content_type)
{
    const char *types[] = {"Content-Type: text/plain", "Content-Type: application/x-www-form-urlencoded", NULL};
    for (int i = 0; i < 3; i++) {
        it_resp r = {0};
        char url[128];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/completions", srv.port);
        CURL *h = curl_easy_init();
        struct curl_slist *hdrs = types[i] ? curl_slist_append(NULL, types[i]) : NULL;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, it_write_cb);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "{\"prompt\":\"a\",\"max_tokens\":1}");
        ck_assert_int_eq(curl_easy_perform(h), CURLE_OK);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
        ck_assert_msg(r.status == 200, "%s: %ld", types[i] ? types[i] : "no type", r.status);
        curl_easy_cleanup(h);
        curl_slist_free_all(hdrs);
        it_resp_free(&r);
    }
}
END_TEST

/* ---- usage and metrics agree on prompt tokens ---- */

static long prompt_tokens_metric(void)
{
    it_resp r = it_http(&srv, "GET", "/metrics", NULL);
    const char *m = strstr(r.body, "\nssmd_prompt_tokens_total ");
    ck_assert_ptr_nonnull(m);
    long v = strtol(m + strlen("\nssmd_prompt_tokens_total "), NULL, 10);
    it_resp_free(&r);
    return v;
}

/* A session's second request has a pending token (the first request's
 * last one) to feed before its own prompt; it is counted nowhere twice. */
START_TEST(test_prompt_tokens_agree)
{
    json_t *sess = post("/v1/sessions", "{}", 200);
    char body[256];
    long usage = 0, before = prompt_tokens_metric();
    for (int i = 0; i < 2; i++) {
        snprintf(body, sizeof body, "{\"session\":\"%s\",\"prompt\":[5,6,7],\"max_tokens\":3,\"ignore_eos\":true}",
                 json_string_value(json_object_get(sess, "id")));
        json_t *j = post("/v1/completions", body, 200);
        json_int_t p = json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens"));
        ck_assert_int_eq(p, 3);
        usage += p;
        json_decref(j);
    }
    ck_assert_int_eq(prompt_tokens_metric() - before, usage);
    json_decref(sess);
}
END_TEST

/* ---- chat on a session ---- */

/* Chat on session sid (NULL: none), greedy, 8 tokens; messages are stolen.
 * Returns the answer when the status is want. */
static json_t *chat(const char *sid, json_t *messages, long want)
{
    json_t *b = json_pack("{s:o, s:i, s:f}", "messages", messages, "max_tokens", 8, "temperature", 0.0);
    if (sid)
        json_object_set_new(b, "session", json_string(sid));
    char *body = json_dumps(b, 0);
    json_t *j = post("/v1/chat/completions", body, want);
    free(body);
    json_decref(b);
    return j;
}

static json_int_t usage_prompt(const json_t *j)
{
    return json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens"));
}

static const char *reply(const json_t *j)
{
    return json_string_value(json_object_get(json_object_get(choice0(j), "message"), "content"));
}

/* OpenAI clients send the whole conversation every turn: on a session,
 * turn 2 prefills only what follows the session's history (usage and the
 * prompt-token counter agree), and answers what the whole conversation
 * answers without a session.  A conversation that does not extend the
 * history is a 409 that says what differs, and leaves the session as it
 * was. */
START_TEST(test_chat_session_prefills_only_new)
{
    json_t *sess = post("/v1/sessions", "{}", 200);
    const char *sid = json_string_value(json_object_get(sess, "id"));
    json_t *t1 = chat(sid, json_pack("[{s:s, s:s}]", "role", "user", "content", "And God said"), 200);
    json_int_t p1 = usage_prompt(t1);
    json_t *conv = json_pack("[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}]", "role", "user", "content", "And God said",
                             "role", "assistant", "content", reply(t1), "role", "user", "content",
                             "Let there be light");
    long before = prompt_tokens_metric();
    json_t *t2 = chat(sid, json_deep_copy(conv), 200);
    json_int_t p2 = usage_prompt(t2);
    ck_assert_int_eq(prompt_tokens_metric() - before, p2);
    json_t *whole = chat(NULL, json_deep_copy(conv), 200);
    /* the history is turn 1's prompt and its 8 tokens */
    ck_assert_int_eq(usage_prompt(whole), p1 + 8 + p2);
    ck_assert_str_eq(reply(t2), reply(whole));
    ck_assert(json_equal(json_object_get(choice0(t2), "tokens"), json_object_get(choice0(whole), "tokens")));

    /* turn 3 with turn 2's reply changed, then with the first message
     * changed: 409s naming what differs */
    const char *long_msg = "And God saw the light, that it was good: and God divided the light from the darkness.";
    json_t *bad = json_deep_copy(conv);
    json_array_append_new(bad, json_pack("{s:s, s:s}", "role", "assistant", "content", "Amen."));
    json_array_append_new(bad, json_pack("{s:s, s:s}", "role", "user", "content", long_msg));
    json_t *j = chat(sid, bad, 409);
    ck_assert_msg(strstr(error_message(j), "reply differs"), "%s", error_message(j));
    json_decref(j);
    json_t *good = json_deep_copy(conv);
    json_array_append_new(good, json_pack("{s:s, s:s}", "role", "assistant", "content", reply(t2)));
    json_array_append_new(good, json_pack("{s:s, s:s}", "role", "user", "content", long_msg));
    bad = json_deep_copy(good);
    json_object_set_new(json_array_get(bad, 0), "content", json_string("And Moses said"));
    j = chat(sid, bad, 409);
    ck_assert_msg(strstr(error_message(j), "earlier message"), "%s", error_message(j));
    json_decref(j);
    /* the session is untouched: the right turn 3 prefills only its new part */
    json_t *whole3 = chat(NULL, json_deep_copy(good), 200);
    json_t *t3 = chat(sid, json_deep_copy(good), 200);
    ck_assert_int_eq(usage_prompt(whole3), p1 + 8 + p2 + 8 + usage_prompt(t3));
    ck_assert_str_eq(reply(t3), reply(whole3));

    /* the history travels with the state: exported and imported into
     * another session, turn 4 there still prefills only its new part */
    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s/state", sid);
    it_resp st = it_http(&srv, "GET", path, NULL);
    ck_assert_int_eq(st.status, 200);
    json_t *other = post("/v1/sessions", "{}", 200);
    const char *oid = json_string_value(json_object_get(other, "id"));
    snprintf(path, sizeof path, "/v1/sessions/%s/state", oid);
    it_resp put = it_http_key(&srv, "PUT", path, st.body, (long)st.len, NULL);
    ck_assert_msg(put.status == 200, "%s", put.body);
    it_resp_free(&put);
    it_resp_free(&st);
    json_array_append_new(good, json_pack("{s:s, s:s}", "role", "assistant", "content", reply(t3)));
    json_array_append_new(good, json_pack("{s:s, s:s}", "role", "user", "content", "And the evening"));
    json_t *whole4 = chat(NULL, json_deep_copy(good), 200);
    json_t *t4 = chat(oid, good, 200);
    ck_assert_int_eq(usage_prompt(whole4), usage_prompt(whole3) + 8 + usage_prompt(t4));
    ck_assert_str_eq(reply(t4), reply(whole4));
    json_decref(t4);
    json_decref(whole4);
    json_decref(other);
    json_decref(t3);
    json_decref(whole3);
    json_decref(whole);
    json_decref(t2);
    json_decref(conv);
    json_decref(t1);
    json_decref(sess);
}
END_TEST

/* ---- n choices ---- */

/* n = 3 with seed S: choice i is the completion of a request of its own
 * with seed S + i (text and tokens), streamed or not; usage counts the
 * prompt once. */
START_TEST(test_n_choices_equal_seeded_requests)
{
    const char *base = "\"prompt\":\"In the beginning\",\"max_tokens\":6,\"temperature\":0.9";
    char body[256];
    json_t *alone[3];
    for (int i = 0; i < 3; i++) {
        snprintf(body, sizeof body, "{%s,\"seed\":%d}", base, 5 + i);
        alone[i] = post("/v1/completions", body, 200);
    }
    long before = prompt_tokens_metric();
    snprintf(body, sizeof body, "{%s,\"seed\":5,\"n\":3}", base);
    json_t *j = post("/v1/completions", body, 200);
    ck_assert_int_eq(prompt_tokens_metric() - before, usage_prompt(alone[0]));
    json_t *u = json_object_get(j, "usage");
    ck_assert_int_eq(usage_prompt(j), usage_prompt(alone[0]));
    ck_assert_int_eq(json_integer_value(json_object_get(u, "completion_tokens")), 18);
    ck_assert_int_eq(json_array_size(json_object_get(j, "choices")), 3);
    for (int i = 0; i < 3; i++) {
        json_t *c = json_array_get(json_object_get(j, "choices"), (size_t)i);
        ck_assert_int_eq(json_integer_value(json_object_get(c, "index")), i);
        ck_assert_str_eq(json_string_value(json_object_get(c, "text")),
                         json_string_value(json_object_get(choice0(alone[i]), "text")));
        ck_assert(json_equal(json_object_get(c, "tokens"), json_object_get(choice0(alone[i]), "tokens")));
    }
    json_decref(j);
    /* streamed: each choice's deltas, by index, add up to the same text */
    snprintf(body, sizeof body, "{%s,\"seed\":5,\"n\":3,\"stream\":true}", base);
    it_resp r = it_http(&srv, "POST", "/v1/completions", body);
    ck_assert_int_eq(r.status, 200);
    json_t *events = NULL;
    ck_assert(it_sse_parse(r.body, &events));
    char text[3][256] = {"", "", ""};
    int finished[3] = {0};
    for (size_t e = 0; e < json_array_size(events); e++) {
        json_t *c = json_array_get(json_object_get(json_array_get(events, e), "choices"), 0);
        if (!c)
            continue;
        json_int_t i = json_integer_value(json_object_get(c, "index"));
        ck_assert(i >= 0 && i < 3);
        strncat(text[i], json_string_value(json_object_get(c, "text")), sizeof text[i] - strlen(text[i]) - 1);
        finished[i] += json_is_string(json_object_get(c, "finish_reason"));
    }
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(finished[i], 1);
        ck_assert_str_eq(text[i], json_string_value(json_object_get(choice0(alone[i]), "text")));
        json_decref(alone[i]);
    }
    json_decref(events);
    it_resp_free(&r);
}
END_TEST

/* A list of two prompts with n = 2 and seed S: choice 2g + k is prompt g
 * alone with seed S + 2g + k, echoed with its own prompt; usage counts
 * both prompts once. */
START_TEST(test_prompt_list_choices)
{
    static const char *const prompts[2] = {"In the beginning", "And the LORD said unto Moses"};
    char body[512];
    json_t *alone[4];
    long want_prompt = 0;
    for (int c = 0; c < 4; c++) {
        snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":5,\"temperature\":0.9,\"seed\":%d,\"echo\":true}",
                 prompts[c / 2], 11 + c);
        alone[c] = post("/v1/completions", body, 200);
        if (c % 2 == 0)
            want_prompt += usage_prompt(alone[c]);
    }
    snprintf(body, sizeof body,
             "{\"prompt\":[\"%s\",\"%s\"],\"max_tokens\":5,\"temperature\":0.9,\"seed\":11,\"n\":2,\"echo\":true}",
             prompts[0], prompts[1]);
    json_t *j = post("/v1/completions", body, 200);
    ck_assert_int_eq(usage_prompt(j), want_prompt);
    ck_assert_int_eq(json_array_size(json_object_get(j, "choices")), 4);
    for (int c = 0; c < 4; c++) {
        json_t *ch = json_array_get(json_object_get(j, "choices"), (size_t)c);
        ck_assert_int_eq(json_integer_value(json_object_get(ch, "index")), c);
        ck_assert_str_eq(json_string_value(json_object_get(ch, "text")),
                         json_string_value(json_object_get(choice0(alone[c]), "text")));
        json_decref(alone[c]);
    }
    json_decref(j);
}
END_TEST

/* ---- the log ---- */

START_TEST(test_log_lines)
{
    json_decref(post("/v1/completions", "{\"prompt\":\"a\",\"top_p\":0}", 400));
    it_resp r = it_http(&srv, "GET", "/ready", NULL);
    it_resp_free(&r);
    FILE *f = fopen(srv.log, "r");
    ck_assert_ptr_nonnull(f);
    char line[4096];
    int n = 0, why = 0;
    while (fgets(line, sizeof line, f)) {
        n++;
        /* 2025-06-01T12:00:00.123Z ssmd: ... */
        int ok = strlen(line) > 30 && line[4] == '-' && line[7] == '-' && line[10] == 'T' && line[13] == ':' &&
                 line[16] == ':' && line[19] == '.' && line[23] == 'Z' && !strncmp(line + 24, " ssmd: ", 7);
        for (int i = 0; ok && i < 23; i++)
            ok = (i == 4 || i == 7 || i == 10 || i == 13 || i == 16 || i == 19) || isdigit((unsigned char)line[i]);
        ck_assert_msg(ok, "not '<RFC 3339 UTC time> ssmd: ...': %s", line);
        ck_assert_msg(!strstr(line, "/ready") && !strstr(line, "/health"), "a probe logged without --verbose: %s",
                      line);
        why |= strstr(line, "POST /v1/completions 400 ") && strstr(line, "'top_p' must be greater than 0");
    }
    fclose(f);
    ck_assert_int_gt(n, 5);
    ck_assert_msg(why, "the 400 line does not say why");
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("serve_api");
    TCase *tc = tcase_create("api");
    tcase_add_unchecked_fixture(tc, setup_api, teardown_api);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_seed_semantics);
    tcase_add_test(tc, test_penalties_and_bias);
    tcase_add_test(tc, test_fields_accepted);
    tcase_add_test(tc, test_fields_refused);
    tcase_add_test(tc, test_json_object_output);
    tcase_add_test(tc, test_model_route);
    tcase_add_test(tc, test_content_type);
    tcase_add_test(tc, test_prompt_tokens_agree);
    tcase_add_test(tc, test_chat_session_prefills_only_new);
    tcase_add_test(tc, test_n_choices_equal_seeded_requests);
    tcase_add_test(tc, test_prompt_list_choices);
    tcase_add_test(tc, test_log_lines);
    suite_add_tcase(s, tc);
    return s;
}
