/* cpu_s4.c - the S4 / S4D family's ops on the CPU (LayerNorm is in cpu_norm.c):
 * GLU, and the SSM in its three views: recurrence (prefill of one sequence
 * walking time in order, and the batched decode step), a two-level parallel
 * scan over time chunks (diagonal layers), and the convolution (impulse
 * response kernel + causal convolution, for tests).
 *
 * Layouts are those of bk_s4_layer (backend.h): complex vectors as a real
 * and an imaginary plane of (N2, H), so the inner loops run over channels
 * and vectorise; those loops are in cpu_gen_s4.h, compiled once per
 * instruction-set level and reached through the cpu_kernels table.
 * Channels are independent: work is split by channel blocks
 * (and, for the scan, by time chunks).  This file never allocates backend
 * memory and never touches the model's weights beyond reading them.
 */
#include "engine/xalloc.h"
#include "kernels/cpu/cpu_s4.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    BLOCK = 64,              /* channels per scan work item */
    VW = CPU_S4_GROUP,       /* channels per vector group (cpu_gen_s4.h) */
    BB = CPU_S4_STEP_SLOTS,  /* slots per decode work item */
};

static inline float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

/* ---- GLU --------------------------------------------------------------- */

typedef struct glu_job {
    const float *x;
    float *out;
    int n, dim;
} glu_job;

static void glu_worker(void *arg, int tid, int n_threads)
{
    glu_job *j = arg;
    long r0, r1;
    eng_split_range(j->n, 1, tid, n_threads, &r0, &r1);
    for (long r = r0; r < r1; r++) {
        const float *a = j->x + (size_t)r * 2 * j->dim, *g = a + j->dim;
        float *o = j->out + (size_t)r * j->dim;
        for (int i = 0; i < j->dim; i++)
            o[i] = a[i] / (1.0f + expf(-g[i]));
    }
}

void cpu_glu(eng_threadpool *pool, const float *x, int n, int dim, float *out)
{
    glu_job j = {x, out, n, dim};
    if (n >= 2 * eng_threadpool_size(pool))
        eng_threadpool_run(pool, glu_worker, &j);
    else
        glu_worker(&j, 0, 1);
}

/* ---- prefill and decode ----------------------------------------------- */

typedef struct seq_job {
    const cpu_kernels *k;
    const bk_s4_layer *l;
    float *state;
    const float *u;
    float *y;
    int T;
} seq_job;

static void prefill_worker(void *arg, int tid, int n_threads)
{
    seq_job *j = arg;
    long h0, h1;
    eng_split_range(j->l->H, VW, tid, n_threads, &h0, &h1);
    j->k->s4_block(j->l, j->state, j->u, j->l->H, j->T, j->y, j->l->H, (int)h0, (int)h1,
                   CPU_S4_OUT_ACT);
}

void cpu_s4_prefill(const cpu_kernels *k, eng_threadpool *pool, const bk_s4_layer *l, float *state,
                    const float *u, int T, float *y)
{
    /* Too few channel groups to keep every thread busy and a long enough
     * sequence: parallelise over time too (diagonal layers). */
    int threads = eng_threadpool_size(pool);
    if (l->rank == 0 && threads > 1 && l->H < VW * threads && T >= 32 * threads) {
        int chunk = (T + 2 * threads - 1) / (2 * threads);
        float *scratch = malloc(cpu_s4_scan_scratch_floats(l, T, chunk) * sizeof(float));
        if (scratch) { /* else fall back to the sequential walk */
            cpu_s4_scan(k, pool, l, state, u, T, chunk, scratch, y);
            free(scratch);
            return;
        }
    }
    seq_job j = {k, l, state, u, y, T};
    if (l->H > VW && threads > 1)
        eng_threadpool_run(pool, prefill_worker, &j);
    else
        prefill_worker(&j, 0, 1);
}

typedef struct step_job {
    const cpu_kernels *k;
    const bk_s4_layer *l;
    const bk_state_ref *st;
    const float *u;
    float *y;
} step_job;

static void step_worker(void *arg, int tid, int n_threads)
{
    step_job *j = arg;
    const bk_s4_layer *l = j->l;
    const int H = l->H, groups = (H + VW - 1) / VW, batch = j->st->batch;
    const int chunks = (batch + BB - 1) / BB;
    long i0, i1;
    eng_split_range((long)groups * chunks, 1, tid, n_threads, &i0, &i1);
    for (long i = i0; i < i1; i++) {
        int h0 = (int)(i % groups) * VW, w = H - h0 < VW ? H - h0 : VW;
        int b0 = (int)(i / groups) * BB, b1 = b0 + BB < batch ? b0 + BB : batch;
        if (l->rank == 0) {
            j->k->s4_diag_step(l, j->st, j->u, j->y, h0, w, b0, b1);
            continue;
        }
        for (int b = b0; b < b1; b++) {
            float *state = j->st->pool + (size_t)j->st->slots[b] * j->st->slot_stride +
                           j->st->ssm_offset;
            j->k->s4_block(l, state, j->u + (size_t)b * H, H, 1, j->y + (size_t)b * H, H, h0,
                           h0 + w, CPU_S4_OUT_ACT);
        }
    }
}

void cpu_s4_step(const cpu_kernels *k, eng_threadpool *pool, const bk_s4_layer *l,
                 const bk_state_ref *st, const float *u, float *y)
{
    step_job j = {k, l, st, u, y};
    long items = (long)((l->H + VW - 1) / VW) * ((st->batch + BB - 1) / BB);
    if (items > 1 && (long)st->batch * l->H * l->N2 * (l->rank + 1) >= 8192)
        eng_threadpool_run(pool, step_worker, &j);
    else
        step_worker(&j, 0, 1);
}

/* ---- scan view (diagonal layers) -------------------------------------- */

typedef struct scan_job {
    const cpu_kernels *k;
    const bk_s4_layer *l;
    float *state, *local, *carry, *y;
    const float *u;
    int T, chunk, n_chunks, phase;
} scan_job;

/* z (2, N2, H) channels [h0, h1) := dA^k z, by squaring. */
static void pow_apply(const bk_s4_layer *l, float *z, int k, int h0, int h1)
{
    const size_t pl = (size_t)l->N2 * l->H;
    for (int n = 0; n < l->N2; n++)
        for (int h = h0; h < h1; h++) {
            size_t o = (size_t)n * l->H + h;
            double br = l->dA[o], bi = l->dA[pl + o], pr = 1.0, pi = 0.0;
            for (int e = k; e; e >>= 1) {
                if (e & 1) {
                    double t = pr * br - pi * bi;
                    pi = pr * bi + pi * br;
                    pr = t;
                }
                double t = br * br - bi * bi;
                bi = 2 * br * bi;
                br = t;
            }
            float zr = z[o], zi = z[pl + o];
            z[o] = (float)(pr * zr - pi * zi);
            z[pl + o] = (float)(pr * zi + pi * zr);
        }
}

static void scan_worker(void *arg, int tid, int n_threads)
{
    scan_job *j = arg;
    const bk_s4_layer *l = j->l;
    const int H = l->H, nblk = (H + BLOCK - 1) / BLOCK;
    const size_t per = 2 * (size_t)l->N2 * H;
    if (j->phase == 2) { /* carries, in chunk order; threads split channels */
        long h0, h1;
        eng_split_range(H, 16, tid, n_threads, &h0, &h1);
        for (int c = 0; c < j->n_chunks; c++) {
            float *in = c ? j->carry + (c - 1) * per : j->state, *out = j->carry + c * per;
            int len = c + 1 < j->n_chunks ? j->chunk : j->T - c * j->chunk;
            for (int p = 0; p < 2; p++)
                for (int n = 0; n < l->N2; n++)
                    for (long h = h0; h < h1; h++) {
                        size_t o = (size_t)p * l->N2 * H + (size_t)n * H + h;
                        out[o] = in[o];
                    }
            pow_apply(l, out, len, (int)h0, (int)h1);
            for (int p = 0; p < 2; p++)
                for (int n = 0; n < l->N2; n++)
                    for (long h = h0; h < h1; h++) {
                        size_t o = (size_t)p * l->N2 * H + (size_t)n * H + h;
                        out[o] += j->local[c * per + o];
                    }
        }
        return;
    }
    long i0, i1;
    eng_split_range((long)j->n_chunks * nblk, 1, tid, n_threads, &i0, &i1);
    for (long i = i0; i < i1; i++) {
        int c = (int)(i / nblk), h0 = (int)(i % nblk) * BLOCK;
        int h1 = h0 + BLOCK < H ? h0 + BLOCK : H;
        int t0 = c * j->chunk, len = c + 1 < j->n_chunks ? j->chunk : j->T - t0;
        const float *u = j->u + (size_t)t0 * H;
        float *y = j->y + (size_t)t0 * H;
        if (j->phase == 1) { /* chunk from a zero state: raw outputs, local final state */
            j->k->s4_block(l, j->local + c * per, u, H, len, y, H, h0, h1, CPU_S4_OUT_RAW);
            continue;
        }
        /* phase 3: add the incoming carry's free response, then activate.
         * The carry (chunk c-1's final state, or the initial state) evolves
         * in a copy, over phase 1's local state, no longer needed. */
        float *z = j->local + c * per;
        const float *in = c ? j->carry + (c - 1) * per : j->state;
        const size_t pl = (size_t)l->N2 * H;
        for (int p = 0; p < 2; p++)
            for (int n = 0; n < l->N2; n++)
                memcpy(z + p * pl + (size_t)n * H + h0, in + p * pl + (size_t)n * H + h0,
                       (size_t)(h1 - h0) * sizeof(float));
        j->k->s4_block(l, z, u, H, len, y, H, h0, h1, CPU_S4_OUT_FIX);
    }
}

size_t cpu_s4_scan_scratch_floats(const bk_s4_layer *l, int T, int chunk)
{
    size_t n_chunks = ((size_t)T + chunk - 1) / chunk;
    return 2 * n_chunks * 2 * (size_t)l->N2 * l->H;
}

void cpu_s4_scan(const cpu_kernels *k, eng_threadpool *pool, const bk_s4_layer *l, float *state,
                 const float *u, int T, int chunk, float *scratch, float *y)
{
    int n_chunks = (T + chunk - 1) / chunk;
    size_t per = 2 * (size_t)l->N2 * l->H;
    memset(scratch, 0, (size_t)n_chunks * per * sizeof(float));
    scan_job j = {k, l, state, scratch, scratch + (size_t)n_chunks * per, y, u, T, chunk,
                  n_chunks, 1};
    eng_threadpool_run(pool, scan_worker, &j);
    j.phase = 2;
    eng_threadpool_run(pool, scan_worker, &j);
    j.phase = 3;
    eng_threadpool_run(pool, scan_worker, &j);
    memcpy(state, j.carry + (size_t)(n_chunks - 1) * per, per * sizeof(float));
}

/* ---- convolution view ------------------------------------------------- */

void cpu_s4_kernel(const cpu_kernels *k, const bk_s4_layer *l, int L, float *K)
{
    const int H = l->H;
    float *state = xcalloc(2 * (size_t)l->N2 * H, sizeof(float));
    float *u = xcalloc((size_t)L * H, sizeof(float));
    for (int h = 0; h < H; h++)
        u[h] = 1.0f;
    k->s4_block(l, state, u, H, L, K, H, 0, H, CPU_S4_OUT_RAW);
    free(state);
    free(u);
}

void cpu_s4_conv(const bk_s4_layer *l, const float *K, const float *u, int T, float *y)
{
    const int H = l->H;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            double acc = 0.0;
            for (int j = 0; j <= t; j++)
                acc += (double)K[(size_t)j * H + h] * u[(size_t)(t - j) * H + h];
            y[(size_t)t * H + h] = gelu((float)acc + l->D[h] * u[(size_t)t * H + h]);
        }
}
