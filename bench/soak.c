/* soak.c - long mixed-traffic soak of `ssmd serve` (make soak).
 *
 * Starts the server (--server BIN --model DIR, small --max-sessions and
 * --host-session-memory so sessions move to host memory and get evicted
 * from it) on a free loopback port, runs --clients threads of mixed
 * traffic for --seconds (completions streamed and not, chat, sessions
 * created / continued / forked / exported / imported / deleted, clients that
 * vanish mid-stream, bad requests, probes), samples the server's RSS
 * (/proc/PID/status VmRSS) and /metrics every --sample seconds, then
 * checks: no 5xx and no transport error where none was provoked, RSS flat
 * after warm-up (the last third's max within --rss-tol of the first third's
 * max, or within --rss-mb MB), requests running/waiting back to 0 when idle,
 * sessions never above --max-sessions, and exit 0 after SIGTERM.  Prints a
 * summary; exits 0 when every check held, 1 otherwise.
 *
 * Never needs Python; only libcurl, jansson and pthreads.  Never touches
 * anything but the server process it started and its log under /tmp.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { K_COMPLETE, K_STREAM, K_CHAT, K_SESSION, K_CONTINUE, K_FORK, K_EXPORT, K_IMPORT, K_DELETE, K_VANISH, K_BAD,
       K_PROBE, K_N };
static const char *const kind_names[K_N] = {"complete", "stream", "chat", "session_create", "session_continue",
                                            "fork", "export", "import", "delete", "vanish", "bad", "probe"};

typedef struct soak_opts {
    const char *server, *model;
    const char *session_store; /* --session-store for the server, or NULL */
    double seconds, sample_s, rss_tol, rss_mb;
    int clients, max_sessions, port;
} soak_opts;

typedef struct sample {
    double t, rss_mb, running, waiting, sessions;
} sample;

/* Everything the threads share; counters are atomics, the samples belong to
 * the sampler thread until it is joined. */
typedef struct soak {
    const soak_opts *o;
    pid_t pid;
    char base[64];
    atomic_int stop;
    atomic_long by_kind[K_N];
    atomic_long by_status[6];   /* transport error, 1xx..5xx */
    atomic_long by_code[600];
    atomic_long unexpected;     /* 5xx or transport errors nobody provoked */
    atomic_long max_sessions_seen;
    atomic_long busy_after_vanish; /* 409 on a session just after its client vanished */
    sample *samples;
    size_t n_samples, cap_samples;
    double t0;
} soak;

typedef struct resp {
    long status;
    char *body;
    size_t len, limit; /* limit > 0: abort the transfer after that many bytes */
} resp;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* xorshift64*: each client thread has its own state. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static int rnd_in(uint64_t *s, int lo, int hi) { return lo + (int)(rnd(s) % (uint64_t)(hi - lo + 1)); }

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    resp *r = arg;
    size_t add = size * n;
    char *b = realloc(r->body, r->len + add + 1);
    if (!b)
        return 0;
    r->body = b;
    memcpy(r->body + r->len, p, add);
    r->len += add;
    r->body[r->len] = '\0';
    if (r->limit && r->len >= r->limit)
        return 0; /* the client vanishes */
    return add;
}

/* One request on the thread's handle h.  Returns the status (-1 for a
 * transport error); the body stays in *r for the caller to free. */
static long http(soak *S, CURL *h, const char *method, const char *path, const void *body, long len, resp *r,
                 double timeout_s)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", S->base, path);
    curl_easy_reset(h);
    struct curl_slist *hd = curl_slist_append(NULL, "Expect:");
    hd = curl_slist_append(hd, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, len < 0 ? (long)strlen(body) : len);
    }
    CURLcode rc = curl_easy_perform(h);
    r->status = -1;
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hd);
    return r->status;
}

/* Counts a finished request; `provoked` marks transport errors and
 * statuses the client asked for (a vanish, a bad request). */
static void account(soak *S, int kind, long status, int provoked)
{
    atomic_fetch_add(&S->by_kind[kind], 1);
    int cls = status < 100 || status > 599 ? 0 : (int)(status / 100);
    atomic_fetch_add(&S->by_status[cls], 1);
    if (cls)
        atomic_fetch_add(&S->by_code[status], 1);
    if (!provoked && (cls == 0 || cls == 5)) {
        atomic_fetch_add(&S->unexpected, 1);
        fprintf(stderr, "soak: unexpected status %ld for %s\n", status, kind_names[kind]);
    }
}

static void resp_free(resp *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

static const char *const prompts[] = {"In the beginning", "And God said", "The quick brown fox",
                                      "Once upon a time there was", "Let there be light", "Hello"};

/* A completion body; a long one (ignore_eos) for a client about to vanish. */
static void completion_body(char *out, size_t cap, uint64_t *rs, const char *session, int stream, int max_tokens)
{
    char sess[96] = "";
    if (session)
        snprintf(sess, sizeof sess, ", \"session\": \"%s\"", session);
    snprintf(out, cap,
             "{\"prompt\": \"%s\", \"max_tokens\": %d, \"temperature\": %.2f, \"stream\": %s%s%s}",
             prompts[rnd(rs) % (sizeof prompts / sizeof prompts[0])], max_tokens, (double)rnd_in(rs, 0, 100) / 100,
             stream ? "true" : "false", sess, max_tokens > 1000 ? ", \"ignore_eos\": true" : "");
}

/* POST /v1/sessions (or a fork): the new id in out, or 0 on failure. */
static int new_session(soak *S, CURL *h, const char *path, int kind, char *out, size_t cap)
{
    resp r = {0};
    long st = http(S, h, "POST", path, "{}", -1, &r, 30);
    account(S, kind, st, kind == K_FORK && st == 404); /* the parent may have been evicted */
    json_t *j = st == 200 ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    const char *id = json_string_value(json_object_get(j, "id"));
    int ok = id != NULL;
    if (ok)
        snprintf(out, cap, "%s", id);
    json_decref(j);
    resp_free(&r);
    return ok;
}

/* A session's life: created, continued, maybe forked, exported and
 * imported, usually deleted (else left to eviction). */
static void session_flow(soak *S, CURL *h, uint64_t *rs)
{
    char id[96], fork_id[96], path[200], body[512];
    if (!new_session(S, h, "/v1/sessions", K_SESSION, id, sizeof id))
        return;
    int turns = rnd_in(rs, 1, 4);
    for (int t = 0; t < turns && !atomic_load(&S->stop); t++) {
        completion_body(body, sizeof body, rs, id, rnd(rs) & 1, rnd_in(rs, 1, 24));
        resp r = {0};
        long st = http(S, h, "POST", "/v1/completions", body, -1, &r, 60);
        account(S, K_CONTINUE, st, 0);
        resp_free(&r);
    }
    int vanished = rnd(rs) % 4 == 0;
    if (vanished) { /* the session's client goes away mid-stream */
        completion_body(body, sizeof body, rs, id, 1, 4000);
        resp r = {.limit = (size_t)rnd_in(rs, 1, 4000)};
        account(S, K_VANISH, http(S, h, "POST", "/v1/completions", body, -1, &r, 60), 1);
        resp_free(&r);
    }
    if (rnd(rs) % 3 == 0) {
        snprintf(path, sizeof path, "/v1/sessions/%s/fork", id);
        if (new_session(S, h, path, K_FORK, fork_id, sizeof fork_id)) {
            completion_body(body, sizeof body, rs, fork_id, 0, rnd_in(rs, 1, 8));
            resp r = {0};
            account(S, K_CONTINUE, http(S, h, "POST", "/v1/completions", body, -1, &r, 60), 0);
            resp_free(&r);
            snprintf(path, sizeof path, "/v1/sessions/%s", fork_id);
            account(S, K_DELETE, http(S, h, "DELETE", path, NULL, 0, &r, 30), 0);
            resp_free(&r);
        }
    }
    if (rnd(rs) % 3 == 0) {
        resp st = {0};
        snprintf(path, sizeof path, "/v1/sessions/%s/state", id);
        long code = http(S, h, "GET", path, NULL, 0, &st, 30);
        account(S, K_EXPORT, code, 0);
        char imp[96];
        if (code == 200 && new_session(S, h, "/v1/sessions", K_SESSION, imp, sizeof imp)) {
            resp r = {0};
            snprintf(path, sizeof path, "/v1/sessions/%s/state", imp);
            account(S, K_IMPORT, http(S, h, "PUT", path, st.body, (long)st.len, &r, 30), 0);
            resp_free(&r);
            snprintf(path, sizeof path, "/v1/sessions/%s", imp);
            account(S, K_DELETE, http(S, h, "DELETE", path, NULL, 0, &r, 30), 0);
            resp_free(&r);
        }
        resp_free(&st);
    }
    if (rnd(rs) % 5 != 0) { /* else: left for eviction or the TTL */
        resp r = {0};
        snprintf(path, sizeof path, "/v1/sessions/%s", id);
        long st = http(S, h, "DELETE", path, NULL, 0, &r, 30);
        account(S, K_DELETE, st, 0);
        if (vanished && st == 409) /* the cancel had not landed yet: once more */
            atomic_fetch_add(&S->busy_after_vanish, 1);
        resp_free(&r);
    }
}

/* A malformed or refused request: the server must answer 4xx. */
static void bad_request(soak *S, CURL *h, uint64_t *rs)
{
    static const char *const bodies[] = {"{\"prompt\": ", "[1, 2, 3]", "{\"prompt\": \"x\", \"max_tokens\": -5}",
                                         "{\"prompt\": \"x\", \"max_tokens\": 999999999}",
                                         "{\"prompt\": \"x\", \"session\": \"0123456789abcdef0123456789abcdef\"}",
                                         "{\"prompt\": \"x\", \"temperature\": \"hot\"}", "\xff\xfe garbage"};
    resp r = {0};
    int which = (int)(rnd(rs) % 9);
    long st;
    if (which < 7)
        st = http(S, h, "POST", "/v1/completions", bodies[which], -1, &r, 30);
    else if (which == 7)
        st = http(S, h, "PUT", "/v1/sessions/0123456789abcdef0123456789abcdef/state", "not a state", -1, &r, 30);
    else
        st = http(S, h, "DELETE", "/v1/completions", NULL, 0, &r, 30);
    if (!(st >= 400 && st < 500)) {
        atomic_fetch_add(&S->unexpected, 1);
        fprintf(stderr, "soak: bad request %d answered %ld\n", which, st);
    }
    account(S, K_BAD, st, 1);
    resp_free(&r);
}

static void *client_main(void *arg)
{
    soak *S = ((void **)arg)[0];
    uint64_t rs = (uint64_t)(uintptr_t)((void **)arg)[1] * 0x9E3779B97F4A7C15ULL + 1;
    CURL *h = curl_easy_init();
    char body[512];
    while (!atomic_load(&S->stop)) {
        int dice = rnd_in(&rs, 0, 99);
        resp r = {0};
        if (dice < 20) {
            completion_body(body, sizeof body, &rs, NULL, 0, rnd_in(&rs, 1, 48));
            account(S, K_COMPLETE, http(S, h, "POST", "/v1/completions", body, -1, &r, 60), 0);
        } else if (dice < 40) {
            completion_body(body, sizeof body, &rs, NULL, 1, rnd_in(&rs, 1, 48));
            account(S, K_STREAM, http(S, h, "POST", "/v1/completions", body, -1, &r, 60), 0);
        } else if (dice < 48) {
            snprintf(body, sizeof body,
                     "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}], \"max_tokens\": %d, \"stream\": %s}",
                     prompts[rnd(&rs) % 6], rnd_in(&rs, 1, 32), rnd(&rs) & 1 ? "true" : "false");
            long st = http(S, h, "POST", "/v1/chat/completions", body, -1, &r, 60);
            account(S, K_CHAT, st, st == 400); /* a model without a chat template says 400 */
        } else if (dice < 73) {
            session_flow(S, h, &rs);
        } else if (dice < 83) {
            /* vanish after a few events of a long stream */
            completion_body(body, sizeof body, &rs, NULL, 1, 4000);
            r.limit = (size_t)rnd_in(&rs, 1, 4000);
            account(S, K_VANISH, http(S, h, "POST", "/v1/completions", body, -1, &r, 60), 1);
        } else if (dice < 93) {
            bad_request(S, h, &rs);
        } else {
            const char *paths[] = {"/metrics", "/v1/models", "/health", "/ready"};
            account(S, K_PROBE, http(S, h, "GET", paths[rnd(&rs) % 4], NULL, 0, &r, 30), 0);
        }
        resp_free(&r);
    }
    curl_easy_cleanup(h);
    return NULL;
}

/* ---- sampling ---- */

static double rss_mb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = atof(line + 6);
    if (f)
        fclose(f);
    return kb / 1024;
}

static double metric_of(const char *text, const char *name)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = text ? strstr(text, pat) : NULL;
    return p ? atof(p + strlen(pat)) : -1;
}

static void take_sample(soak *S, CURL *h)
{
    resp r = {0};
    http(S, h, "GET", "/metrics", NULL, 0, &r, 30);
    sample s = {now_s() - S->t0, rss_mb(S->pid), metric_of(r.body, "ssmd_requests_running"),
                metric_of(r.body, "ssmd_requests_waiting"), metric_of(r.body, "ssmd_sessions_live")};
    resp_free(&r);
    if (S->n_samples == S->cap_samples) {
        S->cap_samples = S->cap_samples ? 2 * S->cap_samples : 256;
        S->samples = realloc(S->samples, S->cap_samples * sizeof *S->samples);
        if (!S->samples)
            abort();
    }
    S->samples[S->n_samples++] = s;
    if ((long)s.sessions > atomic_load(&S->max_sessions_seen))
        atomic_store(&S->max_sessions_seen, (long)s.sessions);
}

static void *sampler_main(void *arg)
{
    soak *S = arg;
    CURL *h = curl_easy_init();
    int k = 0;
    while (!atomic_load(&S->stop)) {
        take_sample(S, h);
        if (++k % 10 == 0) {
            const sample *s = &S->samples[S->n_samples - 1];
            fprintf(stderr, "soak: t=%5.0f s  rss %.1f MB  running %.0f  waiting %.0f  sessions %.0f\n", s->t,
                    s->rss_mb, s->running, s->waiting, s->sessions);
        }
        for (double t = now_s() + S->o->sample_s; now_s() < t && !atomic_load(&S->stop);)
            sleep_s(0.05);
    }
    curl_easy_cleanup(h);
    return NULL;
}

/* ---- server ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &len))
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int start_server(soak *S, const char *log)
{
    char port[16], ms[16];
    snprintf(port, sizeof port, "%d", S->o->port);
    snprintf(ms, sizeof ms, "%d", S->o->max_sessions);
    const char *argv[] = {S->o->server, "serve", "--model", S->o->model, "--host", "127.0.0.1", "--port", port,
                          "--max-sessions", ms, "--max-batch", "4", "--max-queue", "64", "--threads", "1",
                          "--session-ttl", "20", "--conn-timeout", "10", "--quiet",
                          /* a small host tier: sessions move out, back, and off its end */
                          "--host-session-memory", "4000000", NULL, NULL, NULL};
    if (S->o->session_store) { /* the two spare slots before the final NULL */
        argv[sizeof argv / sizeof *argv - 3] = "--session-store";
        argv[sizeof argv / sizeof *argv - 2] = S->o->session_store;
    }
    fflush(NULL);
    S->pid = fork();
    if (S->pid == 0) {
        if (!freopen(log, "w", stderr))
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    CURL *h = curl_easy_init();
    int ok = 0;
    for (double t0 = now_s(); !ok && now_s() - t0 < 60; sleep_s(0.05)) {
        if (waitpid(S->pid, NULL, WNOHANG) == S->pid)
            break;
        resp r = {0};
        ok = http(S, h, "GET", "/ready", NULL, 0, &r, 5) == 200;
        resp_free(&r);
    }
    curl_easy_cleanup(h);
    return ok ? 0 : -1;
}

static int stop_server(soak *S)
{
    kill(S->pid, SIGTERM);
    int st = 0;
    for (double t0 = now_s();; sleep_s(0.02)) {
        if (waitpid(S->pid, &st, WNOHANG) == S->pid)
            break;
        if (now_s() - t0 > 60) {
            kill(S->pid, SIGKILL);
            waitpid(S->pid, &st, 0);
            break;
        }
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- verdict ---- */

static double max_rss(const soak *S, size_t from, size_t to)
{
    double m = 0;
    for (size_t i = from; i < to; i++)
        if (S->samples[i].rss_mb > m)
            m = S->samples[i].rss_mb;
    return m;
}

static int verdict(soak *S, double duration, int idle_ok, int exit_code)
{
    const soak_opts *o = S->o;
    size_t n = S->n_samples, third = n / 3;
    double first = max_rss(S, 0, third ? third : n), last = max_rss(S, n - (third ? third : n), n);
    long total = 0;
    for (int k = 0; k < K_N; k++)
        total += atomic_load(&S->by_kind[k]);
    printf("soak summary: %.0f s, %d clients, --max-sessions %d, %zu samples\n", duration, o->clients, o->max_sessions,
           n);
    printf("  requests: %ld (%.1f/s)\n", total, (double)total / duration);
    for (int k = 0; k < K_N; k++)
        printf("    %-17s %ld\n", kind_names[k], atomic_load(&S->by_kind[k]));
    printf("  statuses: transport-error %ld (mostly provoked vanishes), 2xx %ld, 4xx %ld, 5xx %ld\n",
           atomic_load(&S->by_status[0]), atomic_load(&S->by_status[2]), atomic_load(&S->by_status[4]),
           atomic_load(&S->by_status[5]));
    printf("  by code:");
    for (int c = 100; c < 600; c++)
        if (atomic_load(&S->by_code[c]))
            printf(" %d:%ld", c, atomic_load(&S->by_code[c]));
    printf("\n");
    printf("  409 on a session right after its client vanished: %ld\n", atomic_load(&S->busy_after_vanish));
    printf("  unexpected (5xx / transport errors not provoked / bad request not 4xx): %ld\n",
           atomic_load(&S->unexpected));
    printf("  rss MB: first %.1f, last %.1f, max %.1f; first third max %.1f, last third max %.1f\n",
           n ? S->samples[0].rss_mb : 0, n ? S->samples[n - 1].rss_mb : 0, max_rss(S, 0, n), first, last);
    printf("  sessions live max %ld (limit %d); idle running/waiting 0: %s; exit after SIGTERM: %d\n",
           atomic_load(&S->max_sessions_seen), o->max_sessions, idle_ok ? "yes" : "NO", exit_code);
    int fail = 0;
    if (atomic_load(&S->unexpected)) {
        printf("FAIL: unexpected responses\n");
        fail = 1;
    }
    if (n >= 3 && last > first * (1 + o->rss_tol) && last - first > o->rss_mb) {
        printf("FAIL: RSS grew from %.1f to %.1f MB after warm-up (tolerance %.0f%% and %.0f MB)\n", first, last,
               o->rss_tol * 100, o->rss_mb);
        fail = 1;
    }
    if (!idle_ok) {
        printf("FAIL: requests running or waiting when idle (leaked slots)\n");
        fail = 1;
    }
    if (atomic_load(&S->max_sessions_seen) > o->max_sessions) {
        printf("FAIL: more sessions than --max-sessions\n");
        fail = 1;
    }
    if (exit_code != 0) {
        printf("FAIL: the server exited %d after SIGTERM\n", exit_code);
        fail = 1;
    }
    printf("%s\n", fail ? "soak: FAIL" : "soak: PASS");
    return fail;
}

static void usage(void)
{
    fprintf(stderr, "usage: soak --server BIN [--model DIR] [--seconds S] [--clients N] [--max-sessions N]\n"
                    "            [--session-store redis://HOST:PORT]\n"
                    "            [--sample S] [--rss-tol FRACTION] [--rss-mb MB]\n");
}

int main(int argc, char **argv)
{
    soak_opts o = {NULL, "models/default", NULL, 60, 2, 0.10, 8, 6, 6, 0};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--server"))
            o.server = v;
        else if (!strcmp(k, "--model"))
            o.model = v;
        else if (!strcmp(k, "--seconds"))
            o.seconds = atof(v);
        else if (!strcmp(k, "--clients"))
            o.clients = atoi(v);
        else if (!strcmp(k, "--max-sessions"))
            o.max_sessions = atoi(v);
        else if (!strcmp(k, "--session-store"))
            o.session_store = v;
        else if (!strcmp(k, "--sample"))
            o.sample_s = atof(v);
        else if (!strcmp(k, "--rss-tol"))
            o.rss_tol = atof(v);
        else if (!strcmp(k, "--rss-mb"))
            o.rss_mb = atof(v);
        else {
            usage();
            return 2;
        }
    }
    if (!o.server || o.clients < 1 || o.clients > 256 || o.seconds <= 0 || o.sample_s <= 0) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_ALL);
    o.port = free_port();
    soak *S = calloc(1, sizeof *S);
    S->o = &o;
    snprintf(S->base, sizeof S->base, "http://127.0.0.1:%d", o.port);
    char log[128];
    snprintf(log, sizeof log, "/tmp/ssmd-soak-%d.log", (int)getpid());
    if (start_server(S, log) != 0) {
        fprintf(stderr, "soak: the server did not start (see %s)\n", log);
        return 1;
    }
    fprintf(stderr, "soak: server pid %d on port %d, %d clients for %.0f s (log %s)\n", (int)S->pid, o.port,
            o.clients, o.seconds, log);
    S->t0 = now_s();
    pthread_t sampler, *th = calloc((size_t)o.clients, sizeof *th);
    void *(*args)[2] = calloc((size_t)o.clients, sizeof *args);
    pthread_create(&sampler, NULL, sampler_main, S);
    for (int i = 0; i < o.clients; i++) {
        args[i][0] = S;
        args[i][1] = (void *)(uintptr_t)(i + 1);
        pthread_create(&th[i], NULL, client_main, args[i]);
    }
    while (now_s() - S->t0 < o.seconds)
        sleep_s(0.2);
    atomic_store(&S->stop, 1);
    for (int i = 0; i < o.clients; i++)
        pthread_join(th[i], NULL);
    pthread_join(sampler, NULL);
    double duration = now_s() - S->t0;
    /* idle now: every slot must come back */
    CURL *h = curl_easy_init();
    int idle_ok = 0;
    for (double t0 = now_s(); !idle_ok && now_s() - t0 < 15; sleep_s(0.1)) {
        resp r = {0};
        http(S, h, "GET", "/metrics", NULL, 0, &r, 10);
        idle_ok = metric_of(r.body, "ssmd_requests_running") == 0 && metric_of(r.body, "ssmd_requests_waiting") == 0;
        resp_free(&r);
    }
    take_sample(S, h);
    curl_easy_cleanup(h);
    int code = stop_server(S);
    int fail = verdict(S, duration, idle_ok, code);
    if (!fail)
        unlink(log);
    else
        fprintf(stderr, "soak: server log kept at %s\n", log);
    free(S->samples);
    free(S);
    free(th);
    free(args);
    curl_global_cleanup();
    return fail;
}
