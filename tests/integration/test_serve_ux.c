/* test_serve_ux.c - integration tests of what a daemon's user sees: the
 * start-up and request log lines on stderr (text and --log-format json),
 * --quiet, the X-Session-Id header both ways (request and response), and
 * --help / --version of ssmd, `ssmd serve` and `ssmd generate`.
 *
 * Each test starts its own server (the sanitizer build) on a free loopback
 * port with models/default, its stderr in a temp file; after SIGTERM the
 * exit status must be 0.  Logged token counts are checked against the
 * usage the HTTP responses reported, not against fixed numbers.
 */
#include <check.h>

#include "tests/integration/itest.h"

/* The embedded default model: small, with a tokenizer that matches it. */
static const char *text_dir = "models/default";

static void setup_all(void) { curl_global_init(CURL_GLOBAL_ALL); }

static void teardown_all(void) { curl_global_cleanup(); }

/* ---- helpers ---- */

static void start_or_die(it_server *s, const char *const *extra)
{
    if (it_start(s, text_dir, extra) != 0) {
        it_dump_log(s);
        ck_abort_msg("server did not start");
    }
}

/* Stops the server (exit 0 expected) and returns its whole log (malloc'ed). */
static char *stop_and_read_log(it_server *s)
{
    char log[256];
    snprintf(log, sizeof log, "%s", s->log);
    int st = it_stop(s, 20);
    FILE *f = fopen(log, "r");
    ck_assert_ptr_nonnull(f);
    size_t cap = 1 << 20;
    char *buf = calloc(1, cap);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    if (st != 0)
        fprintf(stderr, "server log:\n%s\n", buf);
    ck_assert_msg(st == 0, "server exited with status %d after SIGTERM", st);
    unlink(log);
    return buf;
}

typedef struct hdr_cap {
    char session[128]; /* X-Session-Id of the response, "" when absent */
} hdr_cap;

static size_t header_cb(char *p, size_t size, size_t n, void *arg)
{
    hdr_cap *h = arg;
    size_t len = size * n;
    const char *name = "x-session-id:";
    size_t nl = strlen(name);
    if (len > nl && !strncasecmp(p, name, nl)) {
        size_t i = nl;
        while (i < len && p[i] == ' ')
            i++;
        size_t j = len;
        while (j > i && (p[j - 1] == '\r' || p[j - 1] == '\n' || p[j - 1] == ' '))
            j--;
        snprintf(h->session, sizeof h->session, "%.*s", (int)(j - i), p + i);
    }
    return len;
}

/* method path with body and an optional X-Session-Id; the response's
 * X-Session-Id in *h. */
static it_resp http_sess(const it_server *s, const char *method, const char *path, const char *body,
                         const char *session_hdr, hdr_cap *h)
{
    it_resp r = {0};
    struct curl_slist *hdrs;
    CURL *c = it_easy(s, method, path, body, -1, NULL, &r, &hdrs);
    char line[160];
    if (session_hdr) {
        snprintf(line, sizeof line, "X-Session-Id: %s", session_hdr);
        hdrs = curl_slist_append(hdrs, line);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    }
    memset(h, 0, sizeof *h);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    else
        r.status = -1;
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    if (!r.body)
        r.body = calloc(1, 1);
    return r;
}

/* Runs `BUILD/ssmd-san args`; returns the exit status, stdout+stderr in *out. */
static int run_cli(const char *args, char **out)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/ssmd-san %s 2>&1", it_build_dir(), args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t cap = 1 << 16;
    char *buf = calloc(1, cap);
    size_t n = fread(buf, 1, cap - 1, p);
    buf[n] = '\0';
    int st = pclose(p);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static json_t *get_usage(const it_resp *r)
{
    json_t *j = it_json(r);
    ck_assert_msg(j != NULL, "not JSON: %s", r->body);
    json_t *u = json_incref(json_object_get(j, "usage"));
    json_decref(j);
    ck_assert_ptr_nonnull(u);
    return u;
}

/* The JSON log's lines (all must parse) as an array. */
static json_t *parse_json_log(const char *log)
{
    json_t *lines = json_array();
    const char *p = log;
    while (*p) {
        size_t n = strcspn(p, "\n");
        if (n > 0) {
            json_error_t je;
            json_t *j = json_loadb(p, n, 0, &je);
            ck_assert_msg(j && json_is_object(j), "log line is not a JSON object: %.*s", (int)n, p);
            ck_assert_msg(json_is_string(json_object_get(j, "time")) && json_is_string(json_object_get(j, "level")) &&
                              json_is_string(json_object_get(j, "event")) && json_is_string(json_object_get(j, "msg")),
                          "log line lacks time/level/event/msg: %.*s", (int)n, p);
            json_array_append_new(lines, j);
        }
        p += n;
        if (*p)
            p++;
    }
    return lines;
}

static json_t *find_event(json_t *lines, const char *event, int nth)
{
    size_t i;
    json_t *j;
    json_array_foreach(lines, i, j) {
        if (!strcmp(json_string_value(json_object_get(j, "event")), event) && nth-- == 0)
            return j;
    }
    return NULL;
}

/* The request line for method path with this status (nth match). */
static json_t *find_request(json_t *lines, const char *method, const char *path, int status, int nth)
{
    for (int k = 0;; k++) {
        json_t *j = find_event(lines, "request", k);
        if (!j)
            return NULL;
        if (!strcmp(json_string_value(json_object_get(j, "method")), method) &&
            !strcmp(json_string_value(json_object_get(j, "path")), path) &&
            json_integer_value(json_object_get(j, "status")) == status && nth-- == 0)
            return j;
    }
}

/* ---- start-up and request log, text ---- */

START_TEST(test_text_log)
{
    it_server s;
    const char *extra[] = {"--threads", "2", "--max-batch", "3", "--max-sessions", "5", NULL};
    start_or_die(&s, extra);
    int port = s.port;
    it_resp r = it_http(&s, "POST", "/v1/completions", "{\"prompt\":\"hello\",\"max_tokens\":4,\"temperature\":0}");
    ck_assert_int_eq(r.status, 200);
    json_t *u = get_usage(&r);
    it_resp_free(&r);
    r = it_http(&s, "GET", "/health", NULL); /* a probe: not logged without --verbose */
    it_resp_free(&r);
    r = it_http(&s, "GET", "/v1/nothing", NULL);
    ck_assert_int_eq(r.status, 404);
    it_resp_free(&r);
    char *log = stop_and_read_log(&s);

    ck_assert_msg(strstr(log, "ssmd: loading ") != NULL, "%s", log);
    ck_assert_msg(strstr(log, "ssmd: loaded in ") != NULL, "%s", log);
    ck_assert_msg(strstr(log, "parameters") && strstr(log, "mamba"), "%s", log);
    ck_assert_msg(strstr(log, "backend cpu, 2 threads, max batch 3, max sessions 5, max step tokens 256,"), "%s", log);
    ck_assert_msg(strstr(log, "memory: weights ") && strstr(log, " MB, state pool ") && strstr(log, "(8 slots x "),
                  "%s", log);
    char url[64];
    snprintf(url, sizeof url, "ready on http://127.0.0.1:%d", port);
    ck_assert_msg(strstr(log, url) != NULL, "%s", log);
    char want[128];
    snprintf(want, sizeof want, "POST /v1/completions 200 ");
    const char *line = strstr(log, want);
    ck_assert_msg(line != NULL, "%s", log);
    snprintf(want, sizeof want, "tokens=%d+%d", (int)json_integer_value(json_object_get(u, "prompt_tokens")),
             (int)json_integer_value(json_object_get(u, "completion_tokens")));
    ck_assert_msg(strstr(line, want) && strstr(line, want) < strchr(line, '\n'), "want %s in %s", want, line);
    ck_assert_msg(strstr(log, "GET /v1/nothing 404 ") != NULL, "%s", log);
    ck_assert_msg(strstr(log, "GET /health") == NULL, "a probe was logged without --verbose:\n%s", log);
    ck_assert_msg(strstr(log, "ssmd: stopped") != NULL, "%s", log);
    json_decref(u);
    free(log);
}
END_TEST

START_TEST(test_quiet_and_verbose)
{
    it_server s;
    const char *quiet[] = {"--quiet", NULL};
    start_or_die(&s, quiet);
    it_resp r = it_http(&s, "POST", "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":2}");
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    char *log = stop_and_read_log(&s);
    ck_assert_msg(strstr(log, "ready on http://") != NULL, "%s", log);
    ck_assert_msg(strstr(log, "/v1/completions") == NULL, "--quiet still logged a request:\n%s", log);
    free(log);

    const char *verbose[] = {"--verbose", NULL};
    start_or_die(&s, verbose);
    r = it_http(&s, "GET", "/health", NULL);
    it_resp_free(&r);
    log = stop_and_read_log(&s);
    ck_assert_msg(strstr(log, "GET /health 200 ") != NULL, "--verbose did not log a probe:\n%s", log);
    free(log);
}
END_TEST

/* ---- JSON log ---- */

START_TEST(test_json_log)
{
    it_server s;
    const char *extra[] = {"--log-format", "json", "--threads", "1", NULL};
    start_or_die(&s, extra);
    int port = s.port;
    hdr_cap h;
    it_resp r = http_sess(&s, "POST", "/v1/sessions", "{}", NULL, &h);
    ck_assert_int_eq(r.status, 200);
    json_t *sj = it_json(&r);
    char sid[64];
    snprintf(sid, sizeof sid, "%s", json_string_value(json_object_get(sj, "id")));
    json_decref(sj);
    it_resp_free(&r);
    r = http_sess(&s, "POST", "/v1/completions", "{\"prompt\":\"one two\",\"max_tokens\":5,\"temperature\":0}", sid,
                  &h);
    ck_assert_int_eq(r.status, 200);
    json_t *u = get_usage(&r);
    it_resp_free(&r);
    r = it_http(&s, "POST", "/v1/completions",
                "{\"prompt\":\"x\",\"max_tokens\":3,\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    ck_assert_int_eq(r.status, 200);
    json_t *events;
    ck_assert(it_sse_parse(r.body, &events));
    json_t *su = json_object_get(json_array_get(events, json_array_size(events) - 1), "usage");
    ck_assert_msg(su != NULL, "%s", r.body);
    json_int_t stream_gen = json_integer_value(json_object_get(su, "completion_tokens"));
    json_decref(events);
    it_resp_free(&r);
    r = it_http(&s, "POST", "/v1/completions", "{\"prompt\":");
    ck_assert_int_eq(r.status, 400);
    it_resp_free(&r);
    char *log = stop_and_read_log(&s);
    json_t *lines = parse_json_log(log);

    json_t *e = find_event(lines, "loading", 0);
    ck_assert_msg(e != NULL, "%s", log);
    e = find_event(lines, "loaded", 0);
    ck_assert_msg(e && json_real_value(json_object_get(e, "load_s")) >= 0, "%s", log);
    e = find_event(lines, "model", 0);
    ck_assert_msg(e != NULL, "%s", log);
    ck_assert_int_gt(json_integer_value(json_object_get(e, "n_params")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(e, "architecture")), "mamba");
    ck_assert_ptr_nonnull(json_string_value(json_object_get(e, "dtype")));
    /* the default model's name resolves to where it is (server/model_dir.c) */
    const char *md = json_string_value(json_object_get(e, "model_dir"));
    ck_assert_msg(md && md[0] == '/' && strlen(md) > strlen(text_dir) &&
                      !strcmp(md + strlen(md) - strlen(text_dir), text_dir) && !strstr(md, ".."),
                  "model_dir %s", md);
    e = find_event(lines, "engine", 0);
    ck_assert_msg(e != NULL, "%s", log);
    ck_assert_str_eq(json_string_value(json_object_get(e, "backend")), "cpu");
    ck_assert_int_eq(json_integer_value(json_object_get(e, "threads")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(e, "numerics")), "exact");
    ck_assert_int_eq(json_integer_value(json_object_get(e, "device")), 0);
    e = find_event(lines, "memory", 0);
    ck_assert_msg(e != NULL, "%s", log);
    json_int_t wb = json_integer_value(json_object_get(e, "weight_bytes"));
    json_int_t pb = json_integer_value(json_object_get(e, "pool_bytes"));
    json_int_t sb = json_integer_value(json_object_get(e, "state_bytes"));
    json_int_t slots = json_integer_value(json_object_get(e, "slots"));
    ck_assert_int_gt(wb, 0);
    ck_assert_int_gt(sb, 0);
    ck_assert_int_eq(pb, sb * slots); /* default 64 sessions + 16 batch slots */
    ck_assert_int_eq(slots, 64 + 16);
    e = find_event(lines, "ready", 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    ck_assert_msg(e && !strcmp(json_string_value(json_object_get(e, "url")), url), "%s", log);

    e = find_request(lines, "POST", "/v1/sessions", 200, 0);
    ck_assert_msg(e != NULL, "%s", log);
    ck_assert_str_eq(json_string_value(json_object_get(e, "session")), sid);
    e = find_request(lines, "POST", "/v1/completions", 200, 0);
    ck_assert_msg(e != NULL, "%s", log);
    ck_assert_int_eq(json_integer_value(json_object_get(e, "prompt_tokens")),
                     json_integer_value(json_object_get(u, "prompt_tokens")));
    ck_assert_int_eq(json_integer_value(json_object_get(e, "completion_tokens")),
                     json_integer_value(json_object_get(u, "completion_tokens")));
    ck_assert_str_eq(json_string_value(json_object_get(e, "session")), sid);
    ck_assert(json_number_value(json_object_get(e, "duration_ms")) >= 0);
    e = find_request(lines, "POST", "/v1/completions", 200, 1);
    ck_assert_msg(e != NULL, "%s", log);
    ck_assert(json_is_true(json_object_get(e, "stream")));
    ck_assert_int_eq(json_integer_value(json_object_get(e, "completion_tokens")), stream_gen);
    e = find_request(lines, "POST", "/v1/completions", 400, 0);
    ck_assert_msg(e != NULL, "%s", log);
    ck_assert_str_eq(json_string_value(json_object_get(e, "level")), "warn");
    ck_assert_ptr_null(json_object_get(e, "prompt_tokens"));
    json_decref(lines);
    json_decref(u);
    free(log);
}
END_TEST

/* ---- X-Session-Id ---- */

static json_int_t session_tokens(const it_server *s, const char *sid)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s", sid);
    it_resp r = it_http(s, "GET", path, NULL);
    ck_assert_int_eq(r.status, 200);
    json_t *j = it_json(&r);
    json_int_t n = json_integer_value(json_object_get(j, "n_tokens"));
    json_decref(j);
    it_resp_free(&r);
    return n;
}

START_TEST(test_session_header)
{
    it_server s;
    start_or_die(&s, NULL);
    hdr_cap h;
    /* POST /v1/sessions: the header carries the new id */
    it_resp r = http_sess(&s, "POST", "/v1/sessions", "{}", NULL, &h);
    ck_assert_int_eq(r.status, 200);
    json_t *j = it_json(&r);
    char sid[64];
    snprintf(sid, sizeof sid, "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    it_resp_free(&r);
    ck_assert_str_eq(h.session, sid);

    /* the header alone names the session: the completion lands in it */
    r = http_sess(&s, "POST", "/v1/completions", "{\"prompt\":\"a b c\",\"max_tokens\":3,\"temperature\":0}", sid, &h);
    ck_assert_msg(r.status == 200, "%s", r.body);
    json_t *u = get_usage(&r);
    it_resp_free(&r);
    ck_assert_str_eq(h.session, sid);
    json_int_t n1 = json_integer_value(json_object_get(u, "prompt_tokens")) +
                    json_integer_value(json_object_get(u, "completion_tokens"));
    json_decref(u);
    ck_assert_int_eq(session_tokens(&s, sid), n1);

    /* the body alone: the response still carries the header */
    char body[256];
    snprintf(body, sizeof body, "{\"prompt\":\" d\",\"max_tokens\":2,\"session\":\"%s\"}", sid);
    r = http_sess(&s, "POST", "/v1/completions", body, NULL, &h);
    ck_assert_msg(r.status == 200, "%s", r.body);
    it_resp_free(&r);
    ck_assert_str_eq(h.session, sid);
    json_int_t n2 = session_tokens(&s, sid);
    ck_assert_int_gt(n2, n1);

    /* both, agreeing */
    r = http_sess(&s, "POST", "/v1/completions", body, sid, &h);
    ck_assert_msg(r.status == 200, "%s", r.body);
    it_resp_free(&r);
    ck_assert_str_eq(h.session, sid);

    /* both, differing: 400, and the session is untouched */
    json_int_t n3 = session_tokens(&s, sid);
    r = http_sess(&s, "POST", "/v1/completions", body, "0123456789abcdef0123456789abcdef", &h);
    ck_assert_int_eq(r.status, 400);
    ck_assert_msg(strstr(r.body, "X-Session-Id") != NULL, "%s", r.body);
    it_resp_free(&r);
    ck_assert_int_eq(session_tokens(&s, sid), n3);

    /* a malformed header: 400 */
    r = http_sess(&s, "POST", "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1}", "not-an-id", &h);
    ck_assert_int_eq(r.status, 400);
    it_resp_free(&r);

    /* an unknown session by header: 404, named back */
    const char *ghost = "00000000000000000000000000000001";
    r = http_sess(&s, "POST", "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1}", ghost, &h);
    ck_assert_int_eq(r.status, 404);
    it_resp_free(&r);
    ck_assert_str_eq(h.session, ghost);

    /* streamed: the header is on the event stream's response */
    r = http_sess(&s, "POST", "/v1/completions", "{\"prompt\":\" e\",\"max_tokens\":2,\"stream\":true}", sid, &h);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(strstr(r.body, "data: [DONE]") != NULL, "%s", r.body);
    it_resp_free(&r);
    ck_assert_str_eq(h.session, sid);

    /* chat completions take the header too (on a session of their own: a
     * chat request's messages must extend the session's history) */
    char *chat_sid = it_new_session(&s);
    r = http_sess(&s, "POST", "/v1/chat/completions",
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}", chat_sid, &h);
    ck_assert_msg(r.status == 200, "%s", r.body);
    it_resp_free(&r);
    ck_assert_str_eq(h.session, chat_sid);
    free(chat_sid);

    /* session routes: the path's id comes back; a differing header is 400 */
    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s", sid);
    r = http_sess(&s, "GET", path, NULL, NULL, &h);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    ck_assert_str_eq(h.session, sid);
    r = http_sess(&s, "GET", path, NULL, ghost, &h);
    ck_assert_int_eq(r.status, 400);
    it_resp_free(&r);

    /* fork: the header names the new session */
    snprintf(path, sizeof path, "/v1/sessions/%s/fork", sid);
    r = http_sess(&s, "POST", path, "{}", sid, &h);
    ck_assert_int_eq(r.status, 200);
    j = it_json(&r);
    const char *child = json_string_value(json_object_get(j, "id"));
    ck_assert_ptr_nonnull(child);
    ck_assert_str_ne(child, sid);
    ck_assert_str_eq(h.session, child);
    json_decref(j);
    it_resp_free(&r);

    /* no session named: no header */
    r = http_sess(&s, "POST", "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1}", NULL, &h);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    ck_assert_str_eq(h.session, "");

    free(stop_and_read_log(&s));
}
END_TEST

/* ---- --help / --version ---- */

static int is_version(const char *out)
{
    int a, b, c;
    char nl;
    return sscanf(out, "ssmd %d.%d.%d%c", &a, &b, &c, &nl) == 4 && nl == '\n';
}

START_TEST(test_help_version)
{
    char *out;
    ck_assert_int_eq(run_cli("--help", &out), 0);
    ck_assert_msg(strstr(out, "serve") && strstr(out, "generate") && strstr(out, "ssmd serve --help") &&
                      strstr(out, "ssmd generate --help") && strstr(out, "--version"),
                  "%s", out);
    free(out);
    ck_assert_int_eq(run_cli("--version", &out), 0);
    ck_assert_msg(is_version(out), "%s", out);
    char *v1 = out;
    ck_assert_int_eq(run_cli("serve --version", &out), 0);
    ck_assert_str_eq(out, v1);
    free(out);
    ck_assert_int_eq(run_cli("generate --version", &out), 0);
    ck_assert_str_eq(out, v1);
    free(out);
    free(v1);

    /* serve --help: every flag with its default (--help and --version excepted) */
    ck_assert_int_eq(run_cli("serve --help", &out), 0);
    const char *must[] = {"--model", "--port", "--host", "--threads", "--max-batch", "--max-sessions",
                          "--log-format", "--quiet", "--verbose", "--version", "--help"};
    for (size_t i = 0; i < sizeof must / sizeof *must; i++)
        ck_assert_msg(strstr(out, must[i]) != NULL, "serve --help lacks %s:\n%s", must[i], out);
    int n_flags = 0;
    for (const char *p = out; *p;) {
        size_t n = strcspn(p, "\n");
        if (n > 4 && !strncmp(p, "  --", 4)) {
            n_flags++;
            char line[512];
            snprintf(line, sizeof line, "%.*s", (int)n, p);
            if (strncmp(line, "  --help", 8) && strncmp(line, "  --version", 11))
                ck_assert_msg(strstr(line, "(default: ") != NULL, "no default: %s", line);
        }
        p += n;
        if (*p)
            p++;
    }
    ck_assert_int_ge(n_flags, 20);
    ck_assert_msg(strstr(out, "--model S") && strstr(out, "(default: models/default)"), "%s", out);
    ck_assert_msg(strstr(out, "--quiet") && strstr(out, "(default: off)"), "%s", out);
    free(out);

    /* errors say what to do next */
    ck_assert_int_eq(run_cli("serve --model /nonexistent-ssmd-model", &out), 1);
    ck_assert_msg(strstr(out, "/nonexistent-ssmd-model") && strstr(out, "pass --model DIR"), "%s", out);
    free(out);
    ck_assert_int_eq(run_cli("serve --log-format xml", &out), 2);
    ck_assert_msg(strstr(out, "--log-format must be text or json"), "%s", out);
    free(out);
    ck_assert_int_eq(run_cli("serve --no-such-flag", &out), 2);
    ck_assert_msg(strstr(out, "see --help"), "%s", out);
    free(out);
    ck_assert_int_eq(run_cli("frobnicate", &out), 2);
    ck_assert_msg(strstr(out, "unknown command") && strstr(out, "serve"), "%s", out);
    free(out);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("serve_ux");
    TCase *tc = tcase_create("ux");
    tcase_add_unchecked_fixture(tc, setup_all, teardown_all);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_text_log);
    tcase_add_test(tc, test_quiet_and_verbose);
    tcase_add_test(tc, test_json_log);
    tcase_add_test(tc, test_session_header);
    tcase_add_test(tc, test_help_version);
    suite_add_tcase(s, tc);
    return s;
}
