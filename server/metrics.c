/* metrics.c - histograms and the Prometheus text format (see metrics.h).
 * Names follow Prometheus conventions: ssmd_ prefix, _seconds, _total.
 */
#include "server/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                        1, 2.5, 5, 10, 30, 60};
static const double itl_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1, 0.25, 0.5, 1, 2.5};

static void hist_init(srv_hist *h, const double *bounds, int n)
{
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->n_bounds = n;
}

void srv_metrics_init(srv_metrics *m)
{
    memset(m, 0, sizeof *m);
    hist_init(&m->ttft, latency_bounds, (int)(sizeof latency_bounds / sizeof *latency_bounds));
    hist_init(&m->e2e, latency_bounds, (int)(sizeof latency_bounds / sizeof *latency_bounds));
    hist_init(&m->itl, itl_bounds, (int)(sizeof itl_bounds / sizeof *itl_bounds));
}

void srv_hist_observe(srv_hist *h, double s)
{
    int i = 0;
    while (i < h->n_bounds && s > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += s;
    h->count++;
}

void srv_metrics_count_status(srv_metrics *m, unsigned status)
{
    m->requests_total++;
    if (status >= 100 && status < 600)
        m->requests_by_class[status / 100]++;
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = b->cap * 2 + (size_t)n;
        char *q = realloc(b->p, nc);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = nc;
    }
}

static void hist_render(sbuf *b, const char *name, const char *help, const srv_hist *h)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        sb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[h->n_bounds];
    sb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
              (unsigned long long)cum, name, h->sum, name, (unsigned long long)h->count);
}

static void gauge(sbuf *b, const char *name, const char *type, const char *help, double v)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

char *srv_metrics_render(const srv_metrics *m, const eng_sched_stats *st, int ready, int draining)
{
    sbuf b = {malloc(4096), 0, 4096, 0};
    if (!b.p)
        return NULL;
    b.p[0] = '\0';
    gauge(&b, "ssmd_ready", "gauge", "1 when the model is loaded and admitting", ready && !draining);
    gauge(&b, "ssmd_draining", "gauge", "1 after SIGTERM", draining);
    gauge(&b, "ssmd_requests_running", "gauge", "completions in the decode batch", st->running);
    gauge(&b, "ssmd_requests_waiting", "gauge", "completions queued for a batch slot", st->waiting);
    gauge(&b, "ssmd_sessions_live", "gauge", "sessions holding a state slot", st->sessions);
    gauge(&b, "ssmd_sessions_host", "gauge", "idle sessions moved to host memory (--host-session-memory)",
          st->sessions_host);
    gauge(&b, "ssmd_sessions_to_host_total", "counter", "sessions moved from the state pool to host memory",
          (double)st->sessions_to_host);
    gauge(&b, "ssmd_sessions_from_host_total", "counter", "sessions moved back from host memory for a request",
          (double)st->sessions_from_host);
    gauge(&b, "ssmd_sessions_dropped_total", "counter", "sessions evicted for lack of room in any tier",
          (double)st->sessions_dropped);
    gauge(&b, "ssmd_prompt_tokens_total", "counter", "prompt tokens of requests, as usage.prompt_tokens counts them", (double)st->prompt_tokens);
    gauge(&b, "ssmd_generation_tokens_total", "counter", "tokens generated", (double)st->gen_tokens);
    gauge(&b, "ssmd_completions_total", "counter", "completion requests finished", (double)m->completions_total);
    gauge(&b, "ssmd_completions_canceled_total", "counter", "completions canceled by a client disconnect",
          (double)m->canceled_total);
    gauge(&b, "ssmd_store_writes_total", "counter", "session states written to the session store",
          (double)m->store_writes_total);
    gauge(&b, "ssmd_store_loads_total", "counter", "sessions loaded from the session store",
          (double)m->store_loads_total);
    gauge(&b, "ssmd_store_stale_total", "counter", "local session copies found older than the store's",
          (double)m->store_stale_total);
    gauge(&b, "ssmd_store_errors_total", "counter", "session store commands that failed or timed out",
          (double)m->store_errors_total);
    gauge(&b, "ssmd_drain_exported_sessions_total", "counter", "sessions handed to the store or a peer on drain",
          (double)m->drain_exported_total);
    sb_printf(&b, "# HELP ssmd_http_requests_total HTTP responses by status class\n"
                  "# TYPE ssmd_http_requests_total counter\n");
    for (int k = 1; k < 6; k++)
        sb_printf(&b, "ssmd_http_requests_total{code=\"%dxx\"} %llu\n", k,
                  (unsigned long long)m->requests_by_class[k]);
    hist_render(&b, "ssmd_time_to_first_token_seconds", "time from request to its first token", &m->ttft);
    hist_render(&b, "ssmd_inter_token_latency_seconds", "time between consecutive tokens of a request", &m->itl);
    hist_render(&b, "ssmd_request_latency_seconds", "completion request end-to-end latency", &m->e2e);
    sb_printf(&b, "# HELP ssmd_batch_size decode batch size per scheduler step\n"
                  "# TYPE ssmd_batch_size histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < ENG_BATCH_BUCKETS; i++) {
        cum += st->batch_hist[i];
        if (i < ENG_BATCH_BUCKETS - 1)
            sb_printf(&b, "ssmd_batch_size_bucket{le=\"%d\"} %llu\n", 1 << i, (unsigned long long)cum);
        else
            sb_printf(&b, "ssmd_batch_size_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    sb_printf(&b, "ssmd_batch_size_sum %llu\nssmd_batch_size_count %llu\n",
              (unsigned long long)st->batch_sum, (unsigned long long)st->steps);
    gauge(&b, "ssmd_max_step_tokens", "gauge", "prompt tokens an engine iteration may prefill (--max-step-tokens)",
          st->max_step_tokens);
    gauge(&b, "ssmd_step_prefill_budget", "gauge",
          "prompt tokens the last engine iteration could prefill, after --prefill-time-ratio", st->step_budget);
    gauge(&b, "ssmd_prefill_tokens_total", "counter",
          "tokens prefilled, a session's pending token included", (double)st->prefill_tokens);
    gauge(&b, "ssmd_prefill_step_tokens_max", "gauge", "the most tokens one engine iteration prefilled",
          st->prefill_max);
    sb_printf(&b, "# HELP ssmd_prefill_tokens_per_step prompt tokens prefilled per engine iteration that prefilled\n"
                  "# TYPE ssmd_prefill_tokens_per_step histogram\n");
    cum = 0;
    for (int i = 0; i < ENG_PREFILL_BUCKETS; i++) {
        cum += st->prefill_hist[i];
        if (i < ENG_PREFILL_BUCKETS - 1)
            sb_printf(&b, "ssmd_prefill_tokens_per_step_bucket{le=\"%d\"} %llu\n", 1 << i, (unsigned long long)cum);
        else
            sb_printf(&b, "ssmd_prefill_tokens_per_step_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    sb_printf(&b, "ssmd_prefill_tokens_per_step_sum %llu\nssmd_prefill_tokens_per_step_count %llu\n",
              (unsigned long long)st->prefill_tokens, (unsigned long long)st->prefill_steps);
    _Static_assert(ENG_WAIT_BUCKETS <= SRV_HIST_MAX + 1, "queue wait buckets fit a srv_hist");
    srv_hist wait = {.bounds = eng_queue_wait_bounds_s, .n_bounds = ENG_WAIT_BUCKETS - 1,
                     .sum = st->queue_wait_sum_s, .count = st->queue_waits};
    memcpy(wait.counts, st->queue_wait_hist, sizeof st->queue_wait_hist);
    hist_render(&b, "ssmd_queue_wait_seconds", "time from a completion's arrival to its first prefill chunk", &wait);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
