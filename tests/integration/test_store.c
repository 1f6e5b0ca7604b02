/* test_store.c - sessions that survive replicas: the Redis session store
 * (--session-store) and the drain handoff (--drain-peer), with real
 * redis-server and real ssmd processes on loopback.
 *
 * The reference is always one session continued on one server; a session
 * that moves between servers must produce exactly the same greedy text.
 * Without redis-server on PATH the store tests are left out (the drain
 * handoff test still runs).
 */
#include <check.h>
#include <hiredis/hiredis.h>

#include "tests/integration/itest.h"

#define MODEL "models/default"

static const char *prompts[] = {"In the beginning", " and the LORD said", " unto Moses"};
#define N_TURNS 3

typedef struct redis_proc {
    pid_t pid;
    int port;
    char dir[64];
} redis_proc;

static int redis_available(void) { return system("command -v redis-server >/dev/null 2>&1") == 0; }

static redisContext *redis_cli(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Starts redis-server on port (a free one when 0), no persistence. */
static void redis_start(redis_proc *r, int port)
{
    memset(r, 0, sizeof *r);
    r->port = port ? port : it_free_port();
    snprintf(r->dir, sizeof r->dir, "/tmp/ssmd-redis-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(r->dir));
    char p[16];
    snprintf(p, sizeof p, "%d", r->port);
    fflush(NULL);
    r->pid = fork();
    if (r->pid == 0) {
        FILE *f = freopen("/dev/null", "w", stdout);
        (void)f;
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", r->dir, (char *)NULL);
        _exit(127);
    }
    for (double t0 = it_now(); it_now() - t0 < 10; it_sleep(0.02)) {
        redisContext *c = redis_cli(r->port);
        if (c) {
            redisFree(c);
            return;
        }
    }
    ck_abort_msg("redis-server did not start on port %d", r->port);
}

static void redis_stop(redis_proc *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
    }
    r->pid = 0;
    rmdir(r->dir);
}

static void redis_do(int port, const char *cmd)
{
    redisContext *c = redis_cli(port);
    ck_assert_ptr_nonnull(c);
    redisReply *rep = redisCommand(c, cmd);
    ck_assert_msg(rep && rep->type != REDIS_REPLY_ERROR, "redis: %s failed", cmd);
    freeReplyObject(rep);
    redisFree(c);
}

static void start_replica(it_server *s, const char *flag, const char *value)
{
    const char *extra[] = {"--threads", "1", flag, value, NULL};
    if (it_start(s, MODEL, flag ? extra : extra + 2) != 0) {
        it_dump_log(s);
        ck_abort_msg("server did not start");
    }
}

static void stop_replica(it_server *s)
{
    int st = it_stop(s, 20);
    if (st != 0)
        it_dump_log(s);
    ck_assert_int_eq(st, 0);
    unlink(s->log);
}

static char *new_session(const it_server *s)
{
    long status;
    json_t *j = it_post_json(s, "/v1/sessions", "{}", &status);
    ck_assert_int_eq(status, 200);
    char *id = strdup(json_string_value(json_object_get(j, "id")));
    json_decref(j);
    return id;
}

/* One greedy turn of session id on s; returns the text (malloc'ed) and
 * the status in *status. */
static char *turn(const it_server *s, const char *id, const char *prompt, long *status)
{
    char body[512];
    snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":8,\"temperature\":0,\"session\":\"%s\"}", prompt,
             id);
    json_t *j = it_post_json(s, "/v1/completions", body, status);
    const char *t = json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
    char *text = strdup(t ? t : "");
    json_decref(j);
    return text;
}

static char *turn_ok(const it_server *s, const char *id, const char *prompt)
{
    long status;
    char *t = turn(s, id, prompt, &status);
    ck_assert_msg(status == 200, "turn '%s' answered %ld", prompt, status);
    return t;
}

/* The texts of N_TURNS turns of one session on one server. */
static void reference(const it_server *s, char **out)
{
    char *id = new_session(s);
    for (int i = 0; i < N_TURNS; i++)
        out[i] = turn_ok(s, id, prompts[i]);
    free(id);
}

static double metric(const it_server *s, const char *name)
{
    it_resp r = it_http(s, "GET", "/metrics", NULL);
    double v = -1;
    size_t n = strlen(name);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, n) && p[n] == ' ')
            v = atof(p + n + 1);
    it_resp_free(&r);
    return v;
}

static void free_texts(char **t)
{
    for (int i = 0; i < N_TURNS; i++)
        free(t[i]);
}

/* A session continued A -> B -> A through the store gives the one-server
 * text; B loads it (it never held it), A finds its own copy stale. */
START_TEST(test_session_moves_between_replicas)
{
    redis_proc rd;
    redis_start(&rd, 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", rd.port);
    it_server a, b;
    start_replica(&a, "--session-store", url);
    start_replica(&b, "--session-store", url);
    char *ref[N_TURNS], *got[N_TURNS];
    reference(&a, ref);
    char *id = new_session(&a);
    got[0] = turn_ok(&a, id, prompts[0]);
    got[1] = turn_ok(&b, id, prompts[1]);
    got[2] = turn_ok(&a, id, prompts[2]);
    for (int i = 0; i < N_TURNS; i++)
        ck_assert_str_eq(got[i], ref[i]);
    ck_assert_double_ge(metric(&b, "ssmd_store_loads_total"), 1);
    ck_assert_double_ge(metric(&a, "ssmd_store_stale_total"), 1);
    ck_assert_double_eq(metric(&a, "ssmd_store_errors_total"), 0);
    /* the store holds the latest version under the session's key */
    redisContext *c = redis_cli(rd.port);
    redisReply *rep = redisCommand(c, "HGET ssmd:session:%s state", id);
    ck_assert(rep && rep->type == REDIS_REPLY_STRING && rep->len > 8 && !memcmp(rep->str, "SSMDSTAT", 8));
    freeReplyObject(rep);
    /* DELETE removes the state from the store and leaves a tombstone, so a
     * replica that still holds a copy (a) drops it instead of serving it */
    char path[96];
    snprintf(path, sizeof path, "/v1/sessions/%s", id);
    it_resp r = it_http(&b, "DELETE", path, NULL);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    rep = redisCommand(c, "HEXISTS ssmd:session:%s state", id);
    ck_assert(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0);
    freeReplyObject(rep);
    redisFree(c);
    for (int k = 0; k < 2; k++) {
        r = it_http(k ? &b : &a, "GET", path, NULL);
        ck_assert_int_eq(r.status, 404);
        it_resp_free(&r);
    }
    long st404;
    free(turn(&a, id, prompts[0], &st404));
    ck_assert_int_eq(st404, 404);
    /* an id chosen by the client is taken on every replica sharing the store */
    const char *chosen = "c0ffee00c0ffee00c0ffee00c0ffee00";
    const char *hdr = "X-Session-Id: c0ffee00c0ffee00c0ffee00c0ffee00";
    for (int k = 0; k < 2; k++) {
        CURL *h;
        struct curl_slist *hs;
        it_resp rr = {0};
        h = it_easy(k ? &b : &a, "POST", "/v1/sessions", "{}", -1, NULL, &rr, &hs);
        hs = curl_slist_append(hs, hdr);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
        ck_assert_int_eq(curl_easy_perform(h), CURLE_OK);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rr.status);
        ck_assert_int_eq(rr.status, k ? 409 : 200);
        if (!k)
            ck_assert_ptr_nonnull(strstr(rr.body, chosen));
        curl_easy_cleanup(h);
        curl_slist_free_all(hs);
        it_resp_free(&rr);
    }
    free(id);
    free_texts(ref);
    free_texts(got);
    stop_replica(&a);
    stop_replica(&b);
    redis_stop(&rd);
}
END_TEST

/* A store that is down, hangs or refuses writes (full) never fails a
 * request: the local copy serves, errors are counted, and a store that
 * comes back is used again. */
START_TEST(test_store_faults)
{
    int port = it_free_port();
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    it_server a;
    start_replica(&a, "--session-store", url); /* nothing listens there yet */
    char *ref[N_TURNS];
    char *id = new_session(&a);
    for (int i = 0; i < N_TURNS; i++)
        ref[i] = turn_ok(&a, id, prompts[i]);
    ck_assert_double_gt(metric(&a, "ssmd_store_errors_total"), 0);
    ck_assert_double_eq(metric(&a, "ssmd_store_writes_total"), 0);

    redis_proc rd;
    redis_start(&rd, port);
    it_sleep(1.1); /* one reconnection interval */
    char *t = turn_ok(&a, id, prompts[0]);
    free(t);
    double writes = metric(&a, "ssmd_store_writes_total");
    ck_assert_double_ge(writes, 1);

    /* full: Redis refuses writes (OOM) */
    redis_do(port, "CONFIG SET maxmemory-policy noeviction");
    redis_do(port, "CONFIG SET maxmemory 1");
    double errs = metric(&a, "ssmd_store_errors_total");
    t = turn_ok(&a, id, prompts[1]);
    free(t);
    ck_assert_double_gt(metric(&a, "ssmd_store_errors_total"), errs);
    redis_do(port, "CONFIG SET maxmemory 0");

    /* hung: the request still answers, after the store timeout */
    kill(rd.pid, SIGSTOP);
    double t0 = it_now();
    t = turn_ok(&a, id, prompts[2]);
    double waited = it_now() - t0;
    free(t);
    kill(rd.pid, SIGCONT);
    ck_assert_msg(waited < 8, "a hung store held a request %.1f s", waited);
    it_resp r = it_http(&a, "GET", "/health", NULL);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    free(id);
    free_texts(ref);
    stop_replica(&a);
    redis_stop(&rd);
}
END_TEST

/* SIGTERM with --drain-peer: the sessions move to the peer and continue
 * there exactly; no store involved. */
START_TEST(test_drain_handoff_to_peer)
{
    it_server a, b;
    start_replica(&b, NULL, NULL);
    char peer[64];
    snprintf(peer, sizeof peer, "http://127.0.0.1:%d", b.port);
    start_replica(&a, "--drain-peer", peer);
    char *ref[N_TURNS], *got[N_TURNS];
    reference(&b, ref);
    char *id = new_session(&a);
    char *idle = new_session(&a); /* never used: moves too */
    got[0] = turn_ok(&a, id, prompts[0]);
    ck_assert_int_eq(it_stop(&a, 20), 0);
    unlink(a.log);
    got[1] = turn_ok(&b, id, prompts[1]);
    got[2] = turn_ok(&b, id, prompts[2]);
    for (int i = 0; i < N_TURNS; i++)
        ck_assert_str_eq(got[i], ref[i]);
    char path[96];
    snprintf(path, sizeof path, "/v1/sessions/%s", idle);
    it_resp r = it_http(&b, "GET", path, NULL);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    free(id);
    free(idle);
    free_texts(ref);
    free_texts(got);
    stop_replica(&b);
}
END_TEST

Suite *test_suite(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("replicas");
    tcase_set_timeout(tc, 120);
    if (redis_available()) {
        tcase_add_test(tc, test_session_moves_between_replicas);
        tcase_add_test(tc, test_store_faults);
    } else {
        fprintf(stderr, "test_store: redis-server not installed; store tests left out (make test installs it)\n");
    }
    tcase_add_test(tc, test_drain_handoff_to_peer);
    suite_add_tcase(s, tc);
    return s;
}
