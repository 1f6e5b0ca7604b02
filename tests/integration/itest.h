/* itest.h - helpers for integration tests that start the real server
 * (BUILD/ssmd-san serve, BUILD from the environment, default "build") on a
 * free 127.0.0.1 port and talk HTTP to it with libcurl.
 *
 * Header-only (static functions) so each test_*.c stays one binary.  Never
 * touches anything outside /tmp and the child processes it started.
 */
#ifndef SSMD_ITEST_H
#define SSMD_ITEST_H

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct it_server {
    pid_t pid;
    int port;
    char log[256];
} it_server;

typedef struct it_resp {
    long status;
    char *body;
    size_t len, cap;
} it_resp;

static inline double it_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline void it_sleep(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static inline int it_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static inline size_t it_write_cb(char *p, size_t size, size_t n, void *arg)
{
    it_resp *r = arg;
    size_t add = size * n;
    if (r->len + add + 1 > r->cap) { /* geometric growth: long streams stay linear */
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + add + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b)
            return 0;
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, p, add);
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static inline void it_resp_free(it_resp *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* Prepares an easy handle for method path with an optional body and
 * Authorization key; the response goes to r. */
static inline CURL *it_easy(const it_server *s, const char *method, const char *path, const void *body, long len,
                     const char *key, it_resp *r, struct curl_slist **hdrs)
{
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->port, path);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, it_write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    *hdrs = curl_slist_append(NULL, "Expect:");
    *hdrs = curl_slist_append(*hdrs, "Content-Type: application/json");
    if (key) {
        char a[256];
        snprintf(a, sizeof a, "Authorization: Bearer %s", key);
        *hdrs = curl_slist_append(*hdrs, a);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, len < 0 ? (long)strlen(body) : len);
    }
    return h;
}

static inline it_resp it_http_key(const it_server *s, const char *method, const char *path, const void *body, long len,
                           const char *key)
{
    it_resp r = {0};
    struct curl_slist *hdrs;
    CURL *h = it_easy(s, method, path, body, len, key, &r, &hdrs);
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    else
        r.status = -1;
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    if (!r.body)
        r.body = calloc(1, 1);
    return r;
}

/* Drives m until r has its first bytes (a stream has begun) or timeout_s
 * pass; returns whether the transfer is still running. */
static inline int it_multi_first_bytes(CURLM *m, const it_resp *r, double timeout_s)
{
    int running = 1;
    for (double t0 = it_now(); running && r->len == 0 && it_now() - t0 < timeout_s;) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 20, NULL);
    }
    return running;
}

static inline it_resp it_http(const it_server *s, const char *method, const char *path, const char *body)
{
    return it_http_key(s, method, path, body, -1, NULL);
}

/* The JSON of a response body (NULL when it is not JSON). */
static inline json_t *it_json(const it_resp *r)
{
    return json_loadb(r->body ? r->body : "", r->len, JSON_ALLOW_NUL, NULL); /* "\u0000" is valid JSON */
}

/* POST path with body; returns the parsed JSON and the status. */
static inline json_t *it_post_json(const it_server *s, const char *path, const char *body, long *status)
{
    it_resp r = it_http(s, "POST", path, body);
    *status = r.status;
    json_t *j = it_json(&r);
    it_resp_free(&r);
    return j;
}

/* POST /v1/sessions on s: the new session's id (malloc'd), checked to be
 * 128 bits in hex. */
static inline char *it_new_session(const it_server *s)
{
    long status;
    json_t *j = it_post_json(s, "/v1/sessions", "", &status);
    ck_assert_int_eq(status, 200);
    const char *id = json_string_value(json_object_get(j, "id"));
    ck_assert_ptr_nonnull(id);
    ck_assert_int_ge(strlen(id), 32);
    char *out = strdup(id);
    json_decref(j);
    return out;
}

/* Splits an SSE body into its data payloads: JSON events in *events (an
 * array), returns 1 when the last payload was [DONE]. */
static inline int it_sse_parse(const char *body, json_t **events)
{
    *events = json_array();
    int done = 0;
    const char *p = body;
    while (p && *p) {
        /* a plain scan: sanitizers check the whole rest of the string on
         * each strstr, which makes long streams quadratic */
        const char *end = p;
        while (*end && !(end[0] == '\n' && end[1] == '\n'))
            end++;
        size_t n = (size_t)(end - p);
        if (!*end)
            end = NULL;
        if (n > 6 && !strncmp(p, "data: ", 6)) {
            if (n - 6 == 6 && !strncmp(p + 6, "[DONE]", 6)) {
                done = 1;
            } else {
                json_t *j = json_loadb(p + 6, n - 6, JSON_ALLOW_NUL, NULL);
                json_array_append_new(*events, j ? j : json_null());
                done = 0;
            }
        }
        p = end ? end + 2 : NULL;
    }
    return done;
}

static const char *it_build_dir(void)
{
    const char *b = getenv("BUILD");
    return b && *b ? b : "build";
}

/* Starts BUILD/ssmd-san (or $SSMD_ITEST_SERVER when set) serve --model dir
 * extra... and waits for /ready.
 * Returns 0, or -1 (the log file says why). */
static inline int it_start(it_server *s, const char *dir, const char *const *extra)
{
    memset(s, 0, sizeof *s);
    s->port = it_free_port();
    char bin[512], port[16];
    const char *chosen = getenv("SSMD_ITEST_SERVER"); /* e.g. BUILD/ssmd-tsan (make tsan) */
    if (chosen && *chosen)
        snprintf(bin, sizeof bin, "%s", chosen);
    else
        snprintf(bin, sizeof bin, "%s/ssmd-san", it_build_dir());
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(s->log, sizeof s->log, "/tmp/ssmd-itest-%d-%d.log", (int)getpid(), s->port);
    const char *argv[64] = {bin, "serve", "--model", dir, "--port", port, "--host", "127.0.0.1"};
    int n = 8;
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    fflush(NULL);
    s->pid = fork();
    if (s->pid == 0) {
        FILE *f = freopen(s->log, "w", stderr);
        (void)f;
        execv(bin, (char *const *)argv);
        fprintf(stderr, "cannot exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    for (double t0 = it_now(); it_now() - t0 < 60;) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return -1;
        }
        it_resp r = it_http(s, "GET", "/ready", NULL);
        long code = r.status;
        it_resp_free(&r);
        if (code == 200)
            return 0;
        it_sleep(0.02);
    }
    return -1;
}

/* Sends SIGTERM and waits (up to timeout_s, then SIGKILL).  Returns the exit
 * status, 128+signal when killed, -1 when there was no server. */
static inline int it_stop(it_server *s, double timeout_s)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    int st = 0;
    for (double t0 = it_now();;) {
        pid_t p = waitpid(s->pid, &st, WNOHANG);
        if (p == s->pid)
            break;
        if (it_now() - t0 > timeout_s) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            break;
        }
        it_sleep(0.01);
    }
    s->pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Prints the server log to stderr (for a failing test). */
static inline void it_dump_log(const it_server *s)
{
    FILE *f = fopen(s->log, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f))
        fprintf(stderr, "  server: %s", line);
    fclose(f);
}

/* For unchecked fixtures (setup/teardown run outside any test, so a
 * failure there ends the whole program): start the server or print its log
 * and exit 1; stop it, insist on exit status 0 after SIGTERM (drain worked,
 * no sanitizer report), and remove its log. */
static inline void it_start_or_exit(it_server *s, const char *dir, const char *const *extra)
{
    if (it_start(s, dir, extra) != 0) {
        fprintf(stderr, "server did not start:\n");
        it_dump_log(s);
        exit(1);
    }
}

static inline void it_stop_or_exit(it_server *s)
{
    int st = it_stop(s, 20);
    if (st != 0) {
        fprintf(stderr, "FAIL: server exited with status %d after SIGTERM\n", st);
        it_dump_log(s);
        exit(1);
    }
    unlink(s->log);
}

/* Makes a temp model dir: the fixture model's files plus the fixture
 * tokenizer.json, as symlinks.  Returns 0 and fills out. */
static inline int it_text_model_dir(const char *model_dir, char *out, size_t cap)
{
    char tmpl[] = "/tmp/ssmd-itest-model-XXXXXX";
    if (!mkdtemp(tmpl))
        return -1;
    snprintf(out, cap, "%s", tmpl);
    char cwd[512], src[1024], dst[1024];
    if (!getcwd(cwd, sizeof cwd))
        return -1;
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/%s/%s", cwd, model_dir, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", out, files[i]);
        if (symlink(src, dst) != 0)
            return -1;
    }
    snprintf(src, sizeof src, "%s/tests/fixtures/tokenizer/tokenizer.json", cwd);
    snprintf(dst, sizeof dst, "%s/tokenizer.json", out);
    return symlink(src, dst);
}

static inline void it_rm_model_dir(const char *dir)
{
    char p[1024];
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

#endif
