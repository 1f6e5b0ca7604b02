/* cpu_s5.c - the S5 family's ops on the CPU: the complex diagonal
 * recurrence x_t = lambda x_{t-1} + v_t in its recurrent view (prefill of
 * one sequence walking time in order, the batched decode step) and its scan
 * view (a two-level parallel scan over time chunks), and the skip +
 * activation that follows the output matmul.
 *
 * S5's B and C are dense (P x H) and (H x P): the model multiplies them as
 * matrices through the backend's matmul, so what is left here is
 * elementwise over the P states and cheap next to the matmuls; plain C
 * loops over states vectorise as they are (split planes, no complex type),
 * so there is no per-level kernel.  States are independent: threads split
 * them (or, for few states and a long input, time).  Never allocates
 * backend memory.
 */
#include "kernels/cpu/cpu_s5.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { BLOCK = 16 }; /* states per work unit: one cache line of each plane */

/* ---- recurrence ------------------------------------------------------- */

/* States [p0, p1) of one sequence over T steps: x = lambda x + v_t, every
 * x_t into xs.  Rows of v / xs are 2P wide (real plane then imaginary). */
static void walk(const float *lam, int P, float *state, const float *v, int T, float *xs, long p0,
                 long p1)
{
    const float *ar = lam, *ai = lam + P;
    for (int t = 0; t < T; t++) {
        const float *vr = v + (size_t)t * 2 * P, *vi = vr + P;
        float *yr = xs + (size_t)t * 2 * P, *yi = yr + P;
        for (long p = p0; p < p1; p++) {
            float xr = state[p], xi = state[P + p];
            float r = ar[p] * xr - ai[p] * xi + vr[p];
            float i = ar[p] * xi + ai[p] * xr + vi[p];
            state[p] = r;
            state[P + p] = i;
            yr[p] = r;
            yi[p] = i;
        }
    }
}

typedef struct walk_job {
    const float *lam, *v;
    float *state, *xs;
    int P, T;
} walk_job;

static void walk_worker(void *arg, int tid, int n_threads)
{
    walk_job *j = arg;
    long p0, p1;
    eng_split_range(j->P, BLOCK, tid, n_threads, &p0, &p1);
    walk(j->lam, j->P, j->state, j->v, j->T, j->xs, p0, p1);
}

void cpu_s5_prefill(eng_threadpool *pool, const float *lam, int P, float *state, const float *v,
                    int T, float *xs)
{
    int threads = eng_threadpool_size(pool);
    /* Too few states to keep every thread busy over a long input:
     * parallelise over time instead (the scan does about twice the work,
     * so only when the states alone cannot use the threads). */
    if (threads > 1 && P < BLOCK * threads && T >= 64 * threads) {
        int chunk = (T + 2 * threads - 1) / (2 * threads);
        float *scratch = malloc(cpu_s5_scan_scratch_floats(P, T, chunk) * sizeof(float));
        if (scratch) { /* else the sequential walk below */
            cpu_s5_scan(pool, lam, P, state, v, T, chunk, scratch, xs);
            free(scratch);
            return;
        }
    }
    walk_job j = {lam, v, state, xs, P, T};
    if (threads > 1 && P > BLOCK && (long)P * T >= 4096)
        eng_threadpool_run(pool, walk_worker, &j);
    else
        walk_worker(&j, 0, 1);
}

typedef struct step_job {
    const float *lam, *v;
    const bk_state_ref *st;
    float *xs;
    int P;
} step_job;

static void step_worker(void *arg, int tid, int n_threads)
{
    step_job *j = arg;
    long b0, b1;
    eng_split_range(j->st->batch, 1, tid, n_threads, &b0, &b1);
    for (long b = b0; b < b1; b++) {
        float *state = j->st->pool + (size_t)j->st->slots[b] * j->st->slot_stride +
                       j->st->ssm_offset;
        walk(j->lam, j->P, state, j->v + (size_t)b * 2 * j->P, 1, j->xs + (size_t)b * 2 * j->P, 0,
             j->P);
    }
}

void cpu_s5_step(eng_threadpool *pool, const float *lam, int P, const bk_state_ref *st,
                 const float *v, float *xs)
{
    step_job j = {lam, v, st, xs, P};
    if (st->batch > 1 && (long)st->batch * P >= 4096)
        eng_threadpool_run(pool, step_worker, &j);
    else
        step_worker(&j, 0, 1);
}

/* ---- scan view ------------------------------------------------------- */

typedef struct scan_job {
    const float *lam, *v;
    float *state, *xs;
    float *local, *carry; /* (n_chunks, 2P) each */
    int P, T, chunk, n_chunks, phase;
} scan_job;

static int chunk_len(const scan_job *j, int c)
{
    return c + 1 < j->n_chunks ? j->chunk : j->T - c * j->chunk;
}

/* lambda_p^k in double, by squaring (k up to T: repeated f32 products
 * would drift). */
static void lam_pow(double br, double bi, int k, double *pr, double *pi)
{
    double r = 1.0, i = 0.0;
    for (int e = k; e; e >>= 1) {
        if (e & 1) {
            double t = r * br - i * bi;
            i = r * bi + i * br;
            r = t;
        }
        double t = br * br - bi * bi;
        bi = 2 * br * bi;
        br = t;
    }
    *pr = r;
    *pi = i;
}

static void scan_worker(void *arg, int tid, int n_threads)
{
    scan_job *j = arg;
    const int P = j->P;
    const size_t row = 2 * (size_t)P;
    if (j->phase == 2) { /* carries in chunk order; threads split the states */
        long p0, p1;
        eng_split_range(P, BLOCK, tid, n_threads, &p0, &p1);
        for (int c = 0; c < j->n_chunks; c++) {
            const float *in = c ? j->carry + (c - 1) * row : j->state;
            float *out = j->carry + c * row;
            const float *loc = j->local + c * row;
            for (long p = p0; p < p1; p++) {
                double wr, wi;
                lam_pow(j->lam[p], j->lam[P + p], chunk_len(j, c), &wr, &wi);
                out[p] = (float)(wr * in[p] - wi * in[P + p] + loc[p]);
                out[P + p] = (float)(wr * in[P + p] + wi * in[p] + loc[P + p]);
            }
        }
        return;
    }
    long c0, c1;
    eng_split_range(j->n_chunks, 1, tid, n_threads, &c0, &c1);
    for (long c = c0; c < c1; c++) {
        const int t0 = (int)c * j->chunk, len = chunk_len(j, (int)c);
        float *xs = j->xs + (size_t)t0 * row;
        if (j->phase == 1) { /* from a zero state: local outputs and final state */
            float *loc = j->local + c * row;
            memset(loc, 0, row * sizeof(float));
            walk(j->lam, P, loc, j->v + (size_t)t0 * row, len, xs, 0, P);
            continue;
        }
        /* phase 3: the incoming carry's free response, lambda^(k+1) carry,
         * added to each local output (the carry evolves in a copy). */
        float *z = j->local + c * row;
        memcpy(z, c ? j->carry + (c - 1) * row : j->state, row * sizeof(float));
        for (int k = 0; k < len; k++) {
            float *yr = xs + (size_t)k * row, *yi = yr + P;
            for (int p = 0; p < P; p++) {
                float r = j->lam[p] * z[p] - j->lam[P + p] * z[P + p];
                float i = j->lam[p] * z[P + p] + j->lam[P + p] * z[p];
                z[p] = r;
                z[P + p] = i;
                yr[p] += r;
                yi[p] += i;
            }
        }
    }
}

size_t cpu_s5_scan_scratch_floats(int P, int T, int chunk)
{
    size_t n_chunks = ((size_t)T + chunk - 1) / chunk;
    return 2 * n_chunks * 2 * (size_t)P;
}

void cpu_s5_scan(eng_threadpool *pool, const float *lam, int P, float *state, const float *v,
                 int T, int chunk, float *scratch, float *xs)
{
    int n_chunks = (T + chunk - 1) / chunk;
    size_t row = 2 * (size_t)P;
    scan_job j = {lam, v, state, xs, scratch, scratch + (size_t)n_chunks * row, P, T, chunk,
                  n_chunks, 1};
    eng_threadpool_run(pool, scan_worker, &j);
    j.phase = 2;
    eng_threadpool_run(pool, scan_worker, &j);
    j.phase = 3;
    eng_threadpool_run(pool, scan_worker, &j);
    memcpy(state, j.carry + (size_t)(n_chunks - 1) * row, row * sizeof(float));
}

/* ---- skip and activation ---------------------------------------------- */

static inline float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

/* flax.linen.gelu's default (approximate=True). */
static inline float gelu_tanh(float x)
{
    return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
}

typedef struct act_job {
    const float *y, *u, *D;
    float *pre, *act;
    int rows, H, tanh_form, ld_pre, ld_act;
} act_job;

static void act_worker(void *arg, int tid, int n_threads)
{
    act_job *j = arg;
    long r0, r1;
    eng_split_range(j->rows, 1, tid, n_threads, &r0, &r1);
    for (long r = r0; r < r1; r++) {
        const float *y = j->y + (size_t)r * j->H, *u = j->u + (size_t)r * j->H;
        for (int h = 0; h < j->H; h++) {
            float x = y[h] + j->D[h] * u[h];
            if (j->pre)
                j->pre[(size_t)r * j->ld_pre + h] = x;
            if (j->act)
                j->act[(size_t)r * j->ld_act + h] = j->tanh_form ? gelu_tanh(x) : gelu_erf(x);
        }
    }
}

void cpu_s5_skip_act(eng_threadpool *pool, const float *y, const float *u, const float *D, int rows,
                     int H, int gelu_tanh, float *out_pre, int ld_pre, float *out_act, int ld_act)
{
    act_job j = {y, u, D, out_pre, out_act, rows, H, gelu_tanh, ld_pre, ld_act};
    if (rows >= 2 * eng_threadpool_size(pool) && (long)rows * H >= 4096)
        eng_threadpool_run(pool, act_worker, &j);
    else
        act_worker(&j, 0, 1);
}
