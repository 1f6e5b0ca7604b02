/* metrics.h - the loop thread's latency histograms and counters, and the
 * Prometheus text rendering of them together with the engine's stats.
 *
 * Loop thread only (the engine's numbers arrive as an eng_sched_stats copy).
 * Never allocates except in srv_metrics_render.
 */
#ifndef SSMD_SRV_METRICS_H
#define SSMD_SRV_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/scheduler.h"

#define SRV_HIST_MAX 16

typedef struct srv_hist {
    int n_bounds;
    const double *bounds;            /* (n_bounds) upper bounds, seconds */
    uint64_t counts[SRV_HIST_MAX + 1]; /* non-cumulative; last = +Inf */
    double sum;
    uint64_t count;
} srv_hist;

typedef struct srv_metrics {
    srv_hist ttft;      /* time to first token */
    srv_hist itl;       /* inter-token latency */
    srv_hist e2e;       /* request end to end */
    uint64_t requests_total;         /* HTTP requests answered */
    uint64_t requests_by_class[6];   /* 1xx..5xx by first digit */
    uint64_t completions_total;
    uint64_t canceled_total;
    /* session store and drain handoff (store.c, handoff.c) */
    uint64_t store_writes_total;     /* states written to the store */
    uint64_t store_loads_total;      /* sessions loaded from the store */
    uint64_t store_stale_total;      /* local copies found older than the store's */
    uint64_t store_errors_total;     /* store commands that failed or timed out */
    uint64_t drain_exported_total;   /* sessions handed off on drain */
} srv_metrics;

void srv_metrics_init(srv_metrics *m);
void srv_hist_observe(srv_hist *h, double seconds);
void srv_metrics_count_status(srv_metrics *m, unsigned status);

/* Renders everything as Prometheus text exposition (version 0.0.4) into a
 * malloc'ed NUL-terminated string; NULL when out of memory. */
char *srv_metrics_render(const srv_metrics *m, const eng_sched_stats *st, int ready, int draining);

#endif
