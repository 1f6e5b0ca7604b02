/* bench_serve.c - load generator for `ssmd serve` (make bench-serve).
 *
 * Starts the server (--server BIN --model DIR) on a free loopback port, or
 * talks to a running one (--port P), then for each concurrency level runs
 * N clients that each send streaming greedy completions back to back, and
 * reports request and output-token throughput with TTFT, inter-token and
 * end-to-end latency (mean, p50, p99).  Batching gains show as tokens/s at
 * 16 clients against 1.  --prompt-len MIN-MAX draws each prompt's length
 * uniformly (a mixed-length load: long prompts arriving beside running
 * streams), and --server-arg passes flags to the server it starts (e.g.
 * --max-step-tokens, to compare prefill schedules in one run).  Never needs
 * Python; only libcurl and jansson.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct vec {
    double *v;
    size_t n, cap;
} vec;

static void vec_push(vec *a, double x)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 256;
        a->v = realloc(a->v, a->cap * sizeof *a->v);
        if (!a->v)
            abort();
    }
    a->v[a->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct level_stats level_stats;

typedef struct client {
    level_stats *st;
    CURL *h;
    struct curl_slist *hdrs;
    char *body;
    double t_start, t_last;
    int n_tokens;
    int got_first;
    char carry[65536];
    size_t n_carry;
    int done_requests;
} client;

struct level_stats {
    vec ttft, itl, e2e;
    long tokens, requests, errors;
};

/* Counts generated tokens per SSE event as the bytes arrive. */
static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    client *c = arg;
    size_t len = size * n;
    double t = now_s();
    for (size_t i = 0; i < len; i++) {
        if (c->n_carry < sizeof c->carry - 1)
            c->carry[c->n_carry++] = p[i];
        if (c->n_carry >= 2 && c->carry[c->n_carry - 1] == '\n' && c->carry[c->n_carry - 2] == '\n') {
            c->carry[c->n_carry] = '\0';
            if (!strncmp(c->carry, "data: {", 7)) {
                json_t *j = json_loads(c->carry + 6, 0, NULL);
                json_t *t_arr = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "tokens");
                int k = (int)json_array_size(t_arr);
                if (k > 0) {
                    if (!c->got_first) {
                        vec_push(&c->st->ttft, t - c->t_start);
                        c->got_first = 1;
                    } else {
                        vec_push(&c->st->itl, t - c->t_last);
                    }
                    c->t_last = t;
                    c->n_tokens += k;
                }
                json_decref(j);
            }
            c->n_carry = 0;
        }
    }
    return len;
}

static void client_arm(client *c, const char *url, int n_vocab, int len_min, int len_max, int max_tokens,
                       unsigned *seed)
{
    int prompt_len = len_min + (len_max > len_min ? rand_r(seed) % (len_max - len_min + 1) : 0);
    json_t *p = json_array();
    for (int i = 0; i < prompt_len; i++)
        json_array_append_new(p, json_integer(rand_r(seed) % n_vocab));
    json_t *b = json_pack("{s:o, s:i, s:f, s:b, s:b}", "prompt", p, "max_tokens", max_tokens, "temperature", 0.0,
                          "ignore_eos", 1, "stream", 1);
    free(c->body);
    c->body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    if (c->h)
        curl_easy_cleanup(c->h);
    c->h = curl_easy_init();
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->h, CURLOPT_PRIVATE, c);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdrs);
    c->t_start = now_s();
    c->got_first = 0;
    c->n_tokens = 0;
    c->n_carry = 0;
}

static void summary(const char *name, vec *a, double scale, const char *unit)
{
    if (!a->n) {
        printf("  %-5s n/a", name);
        return;
    }
    qsort(a->v, a->n, sizeof *a->v, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < a->n; i++)
        sum += a->v[i];
    double p50 = a->v[a->n / 2], p99 = a->v[(size_t)((double)(a->n - 1) * 0.99)];
    printf("  %s mean %.1f p50 %.1f p99 %.1f %s (p99/p50 %.1f)", name, sum / (double)a->n * scale, p50 * scale,
           p99 * scale, unit, p50 > 0 ? p99 / p50 : 0.0);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    close(fd);
    return ntohs(a.sin_port);
}

static long http_get(const char *url, char **out)
{
    FILE *f;
    size_t n = 0;
    *out = NULL;
    f = open_memstream(out, &n);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
    long code = -1;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    fclose(f);
    return code;
}

int main(int argc, char **argv)
{
    const char *server = NULL, *model = NULL, *levels = "1,4,16", *threads = NULL;
    int port = 0, requests = 32, max_tokens = 64, len_min = 32, len_max = 32;
    const char *server_args[8];
    int n_server_args = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--server") && v) server = argv[++i];
        else if (!strcmp(a, "--model") && v) model = argv[++i];
        else if (!strcmp(a, "--port") && v) port = atoi(argv[++i]);
        else if (!strcmp(a, "--concurrency") && v) levels = argv[++i];
        else if (!strcmp(a, "--requests") && v) requests = atoi(argv[++i]);
        else if (!strcmp(a, "--max-tokens") && v) max_tokens = atoi(argv[++i]);
        else if (!strcmp(a, "--prompt-len") && v) {
            if (sscanf(argv[++i], "%d-%d", &len_min, &len_max) != 2)
                len_max = len_min;
        }
        else if (!strcmp(a, "--server-arg") && v && n_server_args < 8) server_args[n_server_args++] = argv[++i];
        else if (!strcmp(a, "--threads") && v) threads = argv[++i];
        else {
            fprintf(stderr, "usage: bench_serve (--server BIN --model DIR | --port P) [--concurrency 1,4,16]\n"
                            "       [--requests N per level (32)] [--max-tokens N (64)]\n"
                            "       [--prompt-len N | MIN-MAX (32)] [--threads N] [--server-arg ARG]...\n");
            return 2;
        }
    }
    curl_global_init(CURL_GLOBAL_ALL);
    pid_t pid = 0;
    if (server) {
        if (!model) {
            fprintf(stderr, "bench_serve: --server needs --model\n");
            return 2;
        }
        port = free_port();
        char ps[16];
        snprintf(ps, sizeof ps, "%d", port);
        pid = fork();
        if (pid == 0) {
            const char *args[32] = {server, "serve", "--model", model, "--port", ps, "--max-batch", "64",
                                    "--max-queue", "4096", "--max-tokens", "100000", "--quiet"};
            int n = 13;
            if (threads) {
                args[n++] = "--threads";
                args[n++] = threads;
            }
            for (int k = 0; k < n_server_args; k++)
                args[n++] = server_args[k];
            args[n] = NULL;
            execv(server, (char *const *)args);
            perror("exec");
            _exit(127);
        }
    }
    char base[64], url[128];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    char *body = NULL;
    double t0 = now_s();
    snprintf(url, sizeof url, "%s/ready", base);
    while (http_get(url, &body) != 200) {
        free(body);
        if (now_s() - t0 > 120) {
            fprintf(stderr, "bench_serve: server not ready\n");
            return 1;
        }
        usleep(50000);
    }
    free(body);
    snprintf(url, sizeof url, "%s/v1/models", base);
    http_get(url, &body);
    json_t *mj = json_loads(body ? body : "", 0, NULL);
    json_t *meta = json_object_get(json_array_get(json_object_get(mj, "data"), 0), "meta");
    int n_vocab = (int)json_integer_value(json_object_get(meta, "n_vocab"));
    printf("model %s, n_vocab %d, prompt %d-%d tokens, %d output tokens per request, %d requests per level",
           json_string_value(json_object_get(json_array_get(json_object_get(mj, "data"), 0), "id")), n_vocab,
           len_min, len_max, max_tokens, requests);
    for (int k = 0; k < n_server_args; k++)
        printf("%s%s", k ? " " : ", server flags: ", server_args[k]);
    printf("\n");
    json_decref(mj);
    free(body);
    if (n_vocab <= 0)
        return 1;
    snprintf(url, sizeof url, "%s/v1/completions", base);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    unsigned seed = 1234;
    double base_tps = 0;
    for (const char *l = levels; *l;) {
        int conc = atoi(l);
        while (*l && *l != ',')
            l++;
        if (*l == ',')
            l++;
        if (conc < 1)
            continue;
        level_stats st = {0};
        client *cl = calloc((size_t)conc, sizeof *cl);
        CURLM *m = curl_multi_init();
        int issued = 0;
        double start = now_s();
        for (int i = 0; i < conc && issued < requests; i++, issued++) {
            cl[i].hdrs = hdrs;
            cl[i].st = &st;
            client_arm(&cl[i], url, n_vocab, len_min, len_max, max_tokens, &seed);
            curl_multi_add_handle(m, cl[i].h);
        }
        int running = 1;
        while (running || issued < requests) {
            curl_multi_perform(m, &running);
            CURLMsg *msg;
            int q;
            while ((msg = curl_multi_info_read(m, &q))) {
                if (msg->msg != CURLMSG_DONE)
                    continue;
                client *c;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
                long code = 0;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
                if (msg->data.result != CURLE_OK || code != 200) {
                    st.errors++;
                } else {
                    st.requests++;
                    st.tokens += c->n_tokens;
                    vec_push(&st.e2e, now_s() - c->t_start);
                }
                curl_multi_remove_handle(m, c->h);
                if (issued < requests) {
                    issued++;
                    client_arm(c, url, n_vocab, len_min, len_max, max_tokens, &seed);
                    curl_multi_add_handle(m, c->h);
                    running = 1;
                }
            }
            if (running)
                curl_multi_poll(m, NULL, 0, 10, NULL);
        }
        double wall = now_s() - start;
        double tps = (double)st.tokens / wall;
        if (base_tps == 0)
            base_tps = tps;
        printf("concurrency %3d: %6.2f req/s  %8.1f tok/s (x%.2f)  errors %ld\n", conc, (double)st.requests / wall,
               tps, tps / base_tps, st.errors);
        summary("ttft", &st.ttft, 1e3, "ms");
        printf("\n");
        summary("itl ", &st.itl, 1e3, "ms");
        printf("\n");
        summary("e2e ", &st.e2e, 1e3, "ms");
        printf("\n");
        fflush(stdout);
        for (int i = 0; i < conc; i++) {
            if (cl[i].h)
                curl_easy_cleanup(cl[i].h);
            free(cl[i].body);
        }
        free(cl);
        curl_multi_cleanup(m);
        free(st.ttft.v);
        free(st.itl.v);
        free(st.e2e.v);
    }
    curl_slist_free_all(hdrs);
    if (pid > 0) {
        kill(pid, SIGTERM);
        int wst;
        waitpid(pid, &wst, 0);
    }
    curl_global_cleanup();
    return 0;
}
