/* test_overload.c - overload and fault tests of `ssmd serve` (and one of
 * `ssmd generate`), against the real sanitized binary on loopback:
 *
 *  - a flood past --max-queue: the excess get 429 at once while the
 *    admitted requests still run, and every admitted one completes with the
 *    same greedy tokens as a lone request;
 *  - a client reading a stream one byte at a time and a client that never
 *    reads do not slow other streams (timed against a baseline with the same
 *    batch composition, measured in the same test); the client that never
 *    reads is dropped by --conn-timeout and its slot freed;
 *  - half-open connections (nothing sent, half the headers, half the body)
 *    do not block others and are closed by --conn-timeout;
 *  - clients that vanish mid-stream (FIN or RST, running or queued, with a
 *    session) free their slots: /metrics gauges go back to 0, the session
 *    is usable again;
 *  - the model directory renamed and deleted after loading: everything is
 *    still answered, the server exits 0;
 *  - `ssmd generate` writing to a full disk (/dev/full) exits 1 with a
 *    message naming the file, not a crash.
 *
 * Timing bounds compare with baselines or are loose (seconds), so a loaded
 * 2-core machine under ASan cannot fail them.  Never touches anything outside
 * /tmp and the processes it started.
 */
#include <check.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "tests/integration/itest.h"

#define MODEL "models/default"
#define TINY "tests/fixtures/mamba/text_tiny"
#define PROMPT "In the beginning"

/* ---- helpers ---- */

/* The value of the /metrics sample line "name value" (-1 when absent). */
static double metric(const it_server *s, const char *name)
{
    it_resp r = it_http(s, "GET", "/metrics", NULL);
    double v = -1;
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = r.body ? strstr(r.body, pat) : NULL;
    if (p)
        v = atof(p + strlen(pat));
    it_resp_free(&r);
    return v;
}

/* Polls until running and waiting gauges are both `want`; returns the
 * seconds it took, or -1 after timeout_s. */
static double wait_gauges(const it_server *s, double running, double waiting, double timeout_s)
{
    double t0 = it_now();
    while (it_now() - t0 < timeout_s) {
        if (metric(s, "ssmd_requests_running") == running && metric(s, "ssmd_requests_waiting") == waiting)
            return it_now() - t0;
        it_sleep(0.01);
    }
    return -1;
}

/* A completion request body. */
static void body_of(char *out, size_t cap, long max_tokens, int stream, const char *session)
{
    char sess[96] = "";
    if (session)
        snprintf(sess, sizeof sess, ", \"session\": \"%s\"", session);
    snprintf(out, cap,
             "{\"prompt\": \"" PROMPT "\", \"max_tokens\": %ld, \"ignore_eos\": true, \"temperature\": 0, "
             "\"stream\": %s%s}",
             max_tokens, stream ? "true" : "false", sess);
}

/* The generated token ids of a completion response (JSON or SSE) as a
 * malloc'ed comma-separated string; NULL when it is malformed. */
static char *tokens_of(const it_resp *r)
{
    json_t *events = NULL, *j = NULL;
    if (r->body && !strncmp(r->body, "data: ", 6)) {
        if (!it_sse_parse(r->body, &events)) {
            json_decref(events);
            return NULL;
        }
    } else {
        j = it_json(r);
        if (!j)
            return NULL;
        events = json_array();
        json_array_append(events, j);
        json_decref(j);
    }
    size_t cap = 64, len = 0, i, k;
    char *out = calloc(1, cap);
    json_t *e, *t;
    int ok = 1;
    json_array_foreach(events, i, e) {
        json_t *toks = json_object_get(json_array_get(json_object_get(e, "choices"), 0), "tokens");
        if (!json_is_array(toks)) {
            ok = json_object_get(e, "usage") != NULL; /* a usage-only event */
            if (!ok)
                break;
            continue;
        }
        json_array_foreach(toks, k, t) {
            if (len + 24 > cap)
                out = realloc(out, cap *= 2);
            len += (size_t)snprintf(out + len, cap - len, "%s%lld", len ? "," : "", (long long)json_integer_value(t));
        }
    }
    json_decref(events);
    if (!ok || len == 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* A TCP connection to the server (blocking), or -1. */
static int raw_connect(const it_server *s, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)s->port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Sends a POST /v1/completions with body over a raw socket. */
static int raw_post(int fd, const char *body)
{
    char head[256];
    snprintf(head, sizeof head,
             "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n",
             strlen(body));
    return send_all(fd, head, strlen(head)) || send_all(fd, body, strlen(body)) ? -1 : 0;
}

/* Reads (and discards) until the peer closes the connection; returns the
 * seconds it took, or -1 when it stayed open for timeout_s. */
static double wait_closed(int fd, double timeout_s)
{
    double t0 = it_now();
    char buf[65536];
    while (it_now() - t0 < timeout_s) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            return it_now() - t0;
    }
    return -1;
}

/* Closes fd with an RST instead of a FIN. */
static void close_rst(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

typedef struct multi_req {
    CURL *h;
    struct curl_slist *hdrs;
    it_resp r;
    double t_add, t_done;
    int done;
    char body[320];
} multi_req;

static void mr_add(CURLM *m, multi_req *q, const it_server *s)
{
    q->h = it_easy(s, "POST", "/v1/completions", q->body, -1, NULL, &q->r, &q->hdrs);
    curl_easy_setopt(q->h, CURLOPT_PRIVATE, q);
    curl_easy_setopt(q->h, CURLOPT_TIMEOUT, 0L); /* the tcase timeout bounds it */
    q->t_add = it_now();
    curl_multi_add_handle(m, q->h);
}

static void mr_free(CURLM *m, multi_req *q)
{
    if (!q->h)
        return;
    curl_multi_remove_handle(m, q->h);
    curl_easy_cleanup(q->h);
    curl_slist_free_all(q->hdrs);
    it_resp_free(&q->r);
    q->h = NULL;
}

/* Drives m for up to max_s seconds (or until nothing runs); marks finished
 * transfers with their time and status.  Returns the number still running. */
static int multi_drive(CURLM *m, double max_s)
{
    int running = 0;
    double t0 = it_now();
    do {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            multi_req *q = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
            q->done = 1;
            q->t_done = it_now();
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &q->r.status);
            else
                q->r.status = -1;
        }
        if (running)
            curl_multi_poll(m, NULL, 0, 5, NULL);
    } while (running && it_now() - t0 < max_s);
    return running;
}

/* A lone request: its tokens (malloc'ed) and its wall time. */
static char *lone_tokens(const it_server *s, long max_tokens, int stream, double *secs)
{
    char body[256];
    body_of(body, sizeof body, max_tokens, stream, NULL);
    double t0 = it_now();
    it_resp r = it_http(s, "POST", "/v1/completions", body);
    if (secs)
        *secs = it_now() - t0;
    char *t = r.status == 200 ? tokens_of(&r) : NULL;
    it_resp_free(&r);
    return t;
}

static void global_init(void) { curl_global_init(CURL_GLOBAL_ALL); }
static void global_free(void) { curl_global_cleanup(); }

/* ---- flood past --max-queue ---- */

START_TEST(test_flood_429)
{
    it_server s;
    const char *extra[] = {"--max-batch", "2", "--max-queue", "2", "--threads", "1", "--max-tokens", "100000",
                           "--quiet", NULL};
    ck_assert_int_eq(it_start(&s, MODEL, extra), 0);
    /* calibrate: admitted requests should run ~1.5 s alone, so the flood
     * certainly arrives while they run */
    double t32 = 1;
    free(lone_tokens(&s, 32, 0, &t32));
    long n_tok = (long)(32 * 1.5 / (t32 > 1e-3 ? t32 : 1e-3));
    n_tok = n_tok < 64 ? 64 : n_tok > 4000 ? 4000 : n_tok;
    double t_lone = 0;
    char *ref = lone_tokens(&s, n_tok, 0, &t_lone);
    ck_assert_ptr_nonnull(ref);
    long n_ref = 1;
    for (const char *p = ref; *p; p++)
        n_ref += *p == ',';
    ck_assert_int_eq(n_ref, n_tok); /* ignore_eos: the full length */

    enum { N_ADM = 4, N_FLOOD = 12 };
    multi_req q[N_ADM + N_FLOOD];
    memset(q, 0, sizeof q);
    CURLM *m = curl_multi_init();
    for (int i = 0; i < N_ADM; i++) { /* two streamed, two not */
        body_of(q[i].body, sizeof q[i].body, n_tok, i % 2, NULL);
        mr_add(m, &q[i], &s);
    }
    /* all admitted: 2 in the batch, 2 queued */
    int ok = 0;
    for (double t0 = it_now(); !ok && it_now() - t0 < 20;) {
        multi_drive(m, 0.02);
        ok = metric(&s, "ssmd_requests_running") == 2 && metric(&s, "ssmd_requests_waiting") == 2;
    }
    ck_assert_msg(ok, "the 4 admitted requests never showed as 2 running + 2 waiting");
    for (int i = N_ADM; i < N_ADM + N_FLOOD; i++) {
        body_of(q[i].body, sizeof q[i].body, n_tok, i % 2, NULL);
        mr_add(m, &q[i], &s);
    }
    int flood_done = 0;
    double t_flood0 = it_now();
    while (flood_done < N_FLOOD && it_now() - t_flood0 < 30) {
        multi_drive(m, 0.01);
        flood_done = 0;
        for (int i = N_ADM; i < N_ADM + N_FLOOD; i++)
            flood_done += q[i].done;
    }
    ck_assert_int_eq(flood_done, N_FLOOD);
    int adm_done_early = 0;
    for (int i = 0; i < N_ADM; i++)
        adm_done_early += q[i].done;
    double worst = 0;
    for (int i = N_ADM; i < N_ADM + N_FLOOD; i++) {
        ck_assert_int_eq(q[i].r.status, 429);
        json_t *j = it_json(&q[i].r);
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "type")), "rate_limit_error");
        json_decref(j);
        if (q[i].t_done - q[i].t_add > worst)
            worst = q[i].t_done - q[i].t_add;
    }
    fprintf(stderr, "flood: %ld tokens, lone %.2f s; %d x 429, slowest after %.3f s\n", n_tok, t_lone, N_FLOOD,
            worst);
    ck_assert_double_lt(worst, 1.0); /* at once */
    /* ... and while the admitted ones still ran (the queued two cannot
     * finish before the first two, which alone take t_lone) */
    ck_assert_int_eq(adm_done_early, 0);
    ck_assert_int_eq(multi_drive(m, 120), 0);
    for (int i = 0; i < N_ADM; i++) {
        ck_assert_int_eq(q[i].r.status, 200);
        char *t = tokens_of(&q[i].r);
        ck_assert_ptr_nonnull(t);
        ck_assert_msg(!strcmp(t, ref), "admitted request %d (stream=%d) differs from the lone request", i, i % 2);
        free(t);
    }
    for (int i = 0; i < N_ADM + N_FLOOD; i++)
        mr_free(m, &q[i]);
    curl_multi_cleanup(m);
    free(ref);
    ck_assert_double_ge(wait_gauges(&s, 0, 0, 10), 0);
    ck_assert_int_eq(it_stop(&s, 20), 0);
    unlink(s.log);
}
END_TEST

/* ---- slow clients ---- */

typedef struct slow_reader {
    int fd;
    atomic_int stop;      /* set by the test thread */
    atomic_size_t got;    /* bytes read so far (the test polls it) */
    char first[64];       /* read by the test thread only after the join */
} slow_reader;

/* Reads one byte at a time, pausing 100 us between reads, until stopped. */
static void *slow_read_main(void *arg)
{
    slow_reader *sr = arg;
    while (!sr->stop) {
        char b;
        struct pollfd p = {sr->fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0)
            continue;
        ssize_t n = recv(sr->fd, &b, 1, 0);
        if (n <= 0)
            break;
        size_t got = atomic_load(&sr->got);
        if (got < sizeof sr->first - 1)
            sr->first[got] = b;
        atomic_store(&sr->got, got + 1);
        it_sleep(100e-6);
    }
    return NULL;
}

/* Runs the two measured streams together with `others` (already running)
 * and returns their wall time; fills tok[2]. */
static double measured_pair(const it_server *s, long n_tok, char **tok)
{
    multi_req q[2];
    memset(q, 0, sizeof q);
    CURLM *m = curl_multi_init();
    double t0 = it_now();
    for (int i = 0; i < 2; i++) {
        body_of(q[i].body, sizeof q[i].body, n_tok, 1, NULL);
        mr_add(m, &q[i], s);
    }
    multi_drive(m, 120);
    double t = it_now() - t0;
    for (int i = 0; i < 2; i++) {
        tok[i] = q[i].r.status == 200 ? tokens_of(&q[i].r) : NULL;
        mr_free(m, &q[i]);
    }
    curl_multi_cleanup(m);
    return t;
}

START_TEST(test_slow_clients)
{
    it_server s;
    const char *extra[] = {"--max-batch", "8", "--threads", "1", "--max-tokens", "10000000", "--conn-timeout", "2",
                           "--quiet", NULL};
    ck_assert_int_eq(it_start(&s, TINY, extra), 0);
    double t32 = 1;
    free(lone_tokens(&s, 32, 1, &t32));
    long n_tok = (long)(32 * 1.0 / (t32 > 1e-3 ? t32 : 1e-3));
    n_tok = n_tok < 48 ? 48 : n_tok > 4000 ? 4000 : n_tok;
    char *ref = lone_tokens(&s, n_tok, 1, NULL);
    ck_assert_ptr_nonnull(ref);
    char lng[256], lng_lp[300];
    body_of(lng, sizeof lng, 10000000, 1, NULL);
    /* >= 600 bytes a token: the never-reading client's kernel buffers (up
     * to tcp_wmem[2] on the server's side) fill within seconds */
    snprintf(lng_lp, sizeof lng_lp,
             "{\"prompt\": \"" PROMPT "\", \"max_tokens\": 10000000, \"ignore_eos\": true, \"stream\": true, "
             "\"logprobs\": 20}");

    /* baseline: the measured pair beside two endless streams read at once */
    multi_req fill[2];
    memset(fill, 0, sizeof fill);
    CURLM *fm = curl_multi_init();
    for (int i = 0; i < 2; i++) {
        snprintf(fill[i].body, sizeof fill[i].body, "%s", i ? lng_lp : lng);
        mr_add(fm, &fill[i], &s);
    }
    int ok = 0;
    for (double t0 = it_now(); !ok && it_now() - t0 < 20;) {
        multi_drive(fm, 0.02);
        ok = metric(&s, "ssmd_requests_running") == 2;
    }
    ck_assert(ok);
    /* the fillers must be read while the pair runs: a thread would do, but
     * one multi handle for all four is simpler */
    multi_req q[2];
    memset(q, 0, sizeof q);
    double tb0 = it_now();
    for (int i = 0; i < 2; i++) {
        body_of(q[i].body, sizeof q[i].body, n_tok, 1, NULL);
        mr_add(fm, &q[i], &s);
    }
    while (!(q[0].done && q[1].done) && it_now() - tb0 < 120)
        multi_drive(fm, 0.01);
    double t_base = it_now() - tb0;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(q[i].r.status, 200);
        char *t = tokens_of(&q[i].r);
        ck_assert_ptr_nonnull(t);
        ck_assert_str_eq(t, ref);
        free(t);
        mr_free(fm, &q[i]);
    }
    for (int i = 0; i < 2; i++)
        mr_free(fm, &fill[i]);
    curl_multi_cleanup(fm);
    ck_assert_double_ge(wait_gauges(&s, 0, 0, 10), 0);

    /* loaded: the same pair beside a 1-byte-at-a-time reader and a client
     * that never reads (small receive buffers, so the server sees them) */
    slow_reader sr = {0};
    sr.fd = raw_connect(&s, 4096);
    int never = raw_connect(&s, 4096);
    ck_assert_int_ge(sr.fd, 0);
    ck_assert_int_ge(never, 0);
    ck_assert_int_eq(raw_post(sr.fd, lng), 0);
    ck_assert_int_eq(raw_post(never, lng_lp), 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, slow_read_main, &sr), 0);
    ok = wait_gauges(&s, 2, 0, 20) >= 0;
    ck_assert(ok);
    it_sleep(0.5); /* let the never-reading client's buffers fill */
    char *tok[2];
    double t_load = measured_pair(&s, n_tok, tok);
    double gen0 = metric(&s, "ssmd_generation_tokens_total");
    it_sleep(0.3);
    double gen1 = metric(&s, "ssmd_generation_tokens_total");
    fprintf(stderr, "slow clients: %ld tokens, pair alone-ish %.2f s, beside slow/never readers %.2f s; "
            "slow reader got %zu bytes\n", n_tok, t_base, t_load, atomic_load(&sr.got));
    for (int i = 0; i < 2; i++) {
        ck_assert_ptr_nonnull(tok[i]);
        ck_assert_str_eq(tok[i], ref);
        free(tok[i]);
    }
    ck_assert_double_lt(t_load, 2.0 * t_base + 1.0);
    ck_assert_double_gt(gen1, gen0); /* the decode loop still runs */
    ck_assert_int_gt(atomic_load(&sr.got), 0);
    /* the never-reading client is dropped by --conn-timeout 2 while the
     * slow reader (which makes progress) stays */
    double t_drop = wait_gauges(&s, 1, 0, 30);
    fprintf(stderr, "slow clients: the never-reading client was dropped %.2f s after the pair\n", t_drop);
    ck_assert_double_ge(t_drop, 0);
    ck_assert_double_ge(wait_closed(never, 10), 0);
    close(never);
    atomic_store(&sr.stop, 1);
    pthread_join(th, NULL);
    ck_assert(!strncmp(sr.first, "HTTP/1.1 200", 12));
    close(sr.fd);
    ck_assert_double_ge(wait_gauges(&s, 0, 0, 10), 0);
    free(ref);
    ck_assert_int_eq(it_stop(&s, 20), 0);
    unlink(s.log);
}
END_TEST

/* ---- half-open connections ---- */

/* A client that never reads is canceled once its unsent output passes
 * --max-stream-backlog, long before --conn-timeout would drop it. */
START_TEST(test_stream_backlog_cap)
{
    it_server s;
    const char *extra[] = {"--threads", "1", "--max-tokens", "10000000", "--conn-timeout", "60",
                           "--max-stream-backlog", "65536", NULL};
    ck_assert_int_eq(it_start(&s, TINY, extra), 0);
    double canceled0 = metric(&s, "ssmd_completions_canceled_total");
    int never = raw_connect(&s, 4096);
    ck_assert_int_ge(never, 0);
    ck_assert_int_eq(raw_post(never, "{\"prompt\": \"" PROMPT "\", \"max_tokens\": 10000000, "
                                     "\"ignore_eos\": true, \"stream\": true, \"logprobs\": 20}"),
                     0);
    /* never read meanwhile (reading would drain the backlog): wait for the
     * server to cancel the request, then for the connection to close */
    ck_assert_double_ge(wait_gauges(&s, 1, 0, 10), 0);
    double t0 = it_now(), t_cancel = -1;
    while (t_cancel < 0 && it_now() - t0 < 30) {
        if (metric(&s, "ssmd_completions_canceled_total") > canceled0)
            t_cancel = it_now() - t0;
        else
            it_sleep(0.05);
    }
    fprintf(stderr, "backlog cap: a non-reading client was canceled after %.2f s\n", t_cancel);
    ck_assert_double_ge(t_cancel, 0);
    ck_assert_double_lt(t_cancel, 30);
    ck_assert_double_ge(wait_closed(never, 10), 0);
    close(never);
    ck_assert_double_ge(wait_gauges(&s, 0, 0, 10), 0);
    /* and the server goes on serving */
    char *t = lone_tokens(&s, 8, 0, NULL);
    ck_assert_ptr_nonnull(t);
    free(t);
    ck_assert_int_eq(it_stop(&s, 20), 0);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "grep -q 'client reads too slowly' %s", s.log);
    ck_assert_int_eq(system(cmd), 0);
    unlink(s.log);
}
END_TEST

START_TEST(test_half_open)
{
    it_server s;
    const char *extra[] = {"--threads", "1", "--conn-timeout", "2", "--quiet", NULL};
    ck_assert_int_eq(it_start(&s, TINY, extra), 0);
    double t_base = 0;
    char *ref = lone_tokens(&s, 32, 0, &t_base);
    ck_assert_ptr_nonnull(ref);
    enum { N = 4 };
    int fd[N];
    for (int i = 0; i < N; i++) {
        fd[i] = raw_connect(&s, 0);
        ck_assert_int_ge(fd[i], 0);
    }
    const char *half_head = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appli";
    const char *half_body = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                            "Content-Length: 200\r\n\r\n{\"prompt\": \"In the";
    const char *half_line = "GET /heal";
    ck_assert_int_eq(send_all(fd[1], half_head, strlen(half_head)), 0);
    ck_assert_int_eq(send_all(fd[2], half_body, strlen(half_body)), 0);
    ck_assert_int_eq(send_all(fd[3], half_line, strlen(half_line)), 0);
    double t_open = it_now();
    /* others are served meanwhile, as fast as before */
    double t_load = 0;
    char *t = lone_tokens(&s, 32, 0, &t_load);
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t, ref);
    free(t);
    it_resp h = it_http(&s, "GET", "/health", NULL);
    ck_assert_int_eq(h.status, 200);
    it_resp_free(&h);
    fprintf(stderr, "half-open: request alone %.3f s, beside %d half-open connections %.3f s\n", t_base, N, t_load);
    ck_assert_double_lt(t_load, 3 * t_base + 1.0);
    /* every half-open connection is closed by --conn-timeout 2 */
    for (int i = 0; i < N; i++) {
        double w = wait_closed(fd[i], 15);
        ck_assert_msg(w >= 0, "half-open connection %d was never closed", i);
        close(fd[i]);
    }
    double waited = it_now() - t_open;
    fprintf(stderr, "half-open: all closed %.2f s after opening\n", waited);
    ck_assert_double_ge(waited, 1.0); /* by the timeout, not at once */
    ck_assert_double_ge(wait_gauges(&s, 0, 0, 10), 0);
    free(ref);
    ck_assert_int_eq(it_stop(&s, 20), 0);
    unlink(s.log);
}
END_TEST

/* ---- clients that vanish ---- */

START_TEST(test_vanish_mid_stream)
{
    it_server s;
    const char *extra[] = {"--max-batch", "2", "--max-queue", "8", "--threads", "1", "--max-tokens", "10000000",
                           "--quiet", NULL};
    ck_assert_int_eq(it_start(&s, MODEL, extra), 0);
    it_resp r = it_http(&s, "POST", "/v1/sessions", "{}");
    ck_assert_int_eq(r.status, 200);
    json_t *j = it_json(&r);
    char sid[96];
    snprintf(sid, sizeof sid, "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    it_resp_free(&r);
    double canceled0 = metric(&s, "ssmd_completions_canceled_total");

    /* running: a session stream (curl) and a raw stream; queued: two curl
     * streams and one raw socket */
    enum { N = 3 };
    multi_req q[N];
    memset(q, 0, sizeof q);
    CURLM *m = curl_multi_init();
    body_of(q[0].body, sizeof q[0].body, 10000000, 1, sid);
    mr_add(m, &q[0], &s);
    int ok = 0;
    for (double t0 = it_now(); !ok && it_now() - t0 < 20;) {
        multi_drive(m, 0.02);
        ok = q[0].r.len > 0;
    }
    ck_assert(ok);
    char lng[256];
    body_of(lng, sizeof lng, 10000000, 1, NULL);
    int raw_run = raw_connect(&s, 0);
    ck_assert_int_eq(raw_post(raw_run, lng), 0);
    ck_assert_double_ge(wait_gauges(&s, 2, 0, 20), 0);
    for (int i = 1; i < N; i++) {
        snprintf(q[i].body, sizeof q[i].body, "%s", lng);
        mr_add(m, &q[i], &s);
    }
    int raw_wait = raw_connect(&s, 0);
    ck_assert_int_eq(raw_post(raw_wait, lng), 0);
    ok = 0;
    for (double t0 = it_now(); !ok && it_now() - t0 < 20;) {
        multi_drive(m, 0.02);
        ok = metric(&s, "ssmd_requests_running") == 2 && metric(&s, "ssmd_requests_waiting") == 3;
    }
    ck_assert_msg(ok, "never saw 2 running + 3 waiting");
    char cont[256];
    body_of(cont, sizeof cont, 1, 0, sid);
    /* everyone vanishes: the queued first (FIN, RST), then the running */
    mr_free(m, &q[1]);
    close_rst(raw_wait);
    mr_free(m, &q[2]);
    double t_gone = it_now();
    ck_assert_double_ge(wait_gauges(&s, 2, 0, 10), 0);
    mr_free(m, &q[0]);
    close_rst(raw_run);
    double w = wait_gauges(&s, 0, 0, 10);
    fprintf(stderr, "vanish: slots free %.3f s after the clients left\n", it_now() - t_gone);
    ck_assert_double_ge(w, 0);
    curl_multi_cleanup(m);
    ck_assert_double_eq(metric(&s, "ssmd_completions_canceled_total"), canceled0 + 5);
    /* the session is free again and works; deleting it empties the table */
    ck_assert_double_eq(metric(&s, "ssmd_sessions_live"), 1);
    r = it_http(&s, "POST", "/v1/completions", cont);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    char path[160];
    snprintf(path, sizeof path, "/v1/sessions/%s", sid);
    r = it_http(&s, "DELETE", path, NULL);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    ck_assert_double_eq(metric(&s, "ssmd_sessions_live"), 0);
    ck_assert_int_eq(it_stop(&s, 20), 0);
    unlink(s.log);
}
END_TEST

/* ---- the model directory goes away ---- */

static int copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb"), *out = in ? fopen(dst, "wb") : NULL;
    char buf[65536];
    size_t n;
    int rc = in && out ? 0 : -1;
    while (!rc && (n = fread(buf, 1, sizeof buf, in)) > 0)
        rc = fwrite(buf, 1, n, out) == n ? 0 : -1;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        rc = -1;
    return rc;
}

static long status_of(const it_server *s, const char *method, const char *path, const char *body, long len,
                      char **out, size_t *out_len)
{
    it_resp r = it_http_key(s, method, path, body, len, NULL);
    long st = r.status;
    if (out) {
        *out = r.body;
        *out_len = r.len;
        r.body = NULL;
    }
    it_resp_free(&r);
    return st;
}

START_TEST(test_model_dir_gone)
{
    char dir[] = "/tmp/ssmd-itest-gone-XXXXXX", moved[96], src[256], dst[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 4; i++) {
        snprintf(src, sizeof src, TINY "/%s", files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        ck_assert_int_eq(copy_file(src, dst), 0);
    }
    it_server s;
    const char *extra[] = {"--threads", "1", "--quiet", NULL};
    ck_assert_int_eq(it_start(&s, dir, extra), 0);
    char *ref = lone_tokens(&s, 24, 0, NULL);
    ck_assert_ptr_nonnull(ref);
    /* renamed, then deleted */
    snprintf(moved, sizeof moved, "%s-moved", dir);
    ck_assert_int_eq(rename(dir, moved), 0);
    char *t = lone_tokens(&s, 24, 1, NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t, ref);
    free(t);
    for (int i = 0; i < 4; i++) {
        snprintf(dst, sizeof dst, "%s/%s", moved, files[i]);
        ck_assert_int_eq(unlink(dst), 0);
    }
    ck_assert_int_eq(rmdir(moved), 0);
    t = lone_tokens(&s, 24, 0, NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t, ref);
    free(t);
    /* sessions, fork, export, import, models, metrics */
    char *b = NULL;
    size_t bl = 0;
    ck_assert_int_eq(status_of(&s, "POST", "/v1/sessions", "{}", -1, &b, &bl), 200);
    json_t *j = json_loads(b, 0, NULL);
    free(b);
    char sid[96], path[200], body[300];
    snprintf(sid, sizeof sid, "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    snprintf(body, sizeof body, "{\"session\": \"%s\", \"prompt\": \"" PROMPT "\", \"max_tokens\": 4}", sid);
    ck_assert_int_eq(status_of(&s, "POST", "/v1/completions", body, -1, NULL, NULL), 200);
    snprintf(path, sizeof path, "/v1/sessions/%s/fork", sid);
    ck_assert_int_eq(status_of(&s, "POST", path, "{}", -1, NULL, NULL), 200);
    snprintf(path, sizeof path, "/v1/sessions/%s/state", sid);
    ck_assert_int_eq(status_of(&s, "GET", path, NULL, -1, &b, &bl), 200);
    ck_assert_int_gt(bl, 0);
    char *nb = NULL;
    size_t nl = 0;
    ck_assert_int_eq(status_of(&s, "POST", "/v1/sessions", "{}", -1, &nb, &nl), 200);
    j = json_loads(nb, 0, NULL);
    free(nb);
    snprintf(path, sizeof path, "/v1/sessions/%s/state", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    ck_assert_int_eq(status_of(&s, "PUT", path, b, (long)bl, NULL, NULL), 200);
    free(b);
    ck_assert_int_eq(status_of(&s, "GET", "/v1/models", NULL, -1, NULL, NULL), 200);
    ck_assert_int_eq(status_of(&s, "GET", "/metrics", NULL, -1, NULL, NULL), 200);
    ck_assert_int_eq(status_of(&s, "GET", "/ready", NULL, -1, NULL, NULL), 200);
    free(ref);
    ck_assert_int_eq(it_stop(&s, 20), 0);
    unlink(s.log);
}
END_TEST

/* ---- disk full in `ssmd generate` ---- */

/* Runs `ssmd-san generate args` with stdout to out_path and stderr captured;
 * returns the raw wait status. */
static int run_generate(const char *args, const char *out_path, char *errs, size_t cap)
{
    char err_path[] = "/tmp/ssmd-itest-generr-XXXXXX", cmd[1024];
    int fd = mkstemp(err_path);
    if (fd < 0)
        return -1;
    close(fd);
    snprintf(cmd, sizeof cmd, "%s/ssmd-san generate %s >%s 2>%s", it_build_dir(), args, out_path, err_path);
    int st = system(cmd);
    FILE *f = fopen(err_path, "r");
    size_t n = f ? fread(errs, 1, cap - 1, f) : 0;
    errs[n] = '\0';
    if (f)
        fclose(f);
    unlink(err_path);
    return st;
}

START_TEST(test_generate_disk_full)
{
    char errs[8192];
    /* logits rows to a full disk: a few rows (caught at fclose) and many
     * (caught at fwrite) */
    const char *cases[] = {
        "--model " TINY " --prompt-ids 1,2,3 --max-tokens 2 --temperature 0 --print-ids --dump-logits /dev/full",
        "--model " TINY " --prompt-ids 1,2,3 --max-tokens 40 --temperature 0 --print-ids --dump-logits /dev/full",
    };
    for (int i = 0; i < 2; i++) {
        int st = run_generate(cases[i], "/dev/null", errs, sizeof errs);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "case %d: status %d, stderr: %s", i, st, errs);
        ck_assert_msg(strstr(errs, "/dev/full") && strstr(errs, "No space left"), "case %d: stderr: %s", i, errs);
        ck_assert_msg(!strstr(errs, "Sanitizer"), "case %d: stderr: %s", i, errs);
    }
    /* the generated text itself to a full disk */
    int st = run_generate("--model " TINY " --prompt \"" PROMPT "\" --max-tokens 8 --temperature 0", "/dev/full", errs,
                          sizeof errs);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "stdout: status %d, stderr: %s", st, errs);
    ck_assert_msg(strstr(errs, "standard output") && strstr(errs, "No space left"), "stderr: %s", errs);
    /* the control: the same to /dev/null works */
    st = run_generate("--model " TINY " --prompt \"" PROMPT "\" --max-tokens 8 --temperature 0", "/dev/null", errs,
                      sizeof errs);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "control: status %d, stderr: %s", st, errs);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("overload");
    TCase *tc = tcase_create("overload");
    tcase_add_unchecked_fixture(tc, global_init, global_free);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_flood_429);
    tcase_add_test(tc, test_slow_clients);
    tcase_add_test(tc, test_stream_backlog_cap);
    tcase_add_test(tc, test_half_open);
    tcase_add_test(tc, test_vanish_mid_stream);
    tcase_add_test(tc, test_model_dir_gone);
    tcase_add_test(tc, test_generate_disk_full);
    suite_add_tcase(s, tc);
    return s;
}
