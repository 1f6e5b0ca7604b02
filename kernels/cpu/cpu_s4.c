/* cpu_s4.c - the S4 / S4D family's ops on the CPU (LayerNorm is in cpu_norm.c):
 * GLU, and the SSM in its three views: recurrence (prefill of one sequence
 * walking time in order, and the batched decode step), a two-level parallel
 * scan over time chunks (diagonal layers), and the convolution (impulse
 * response kernel + causal convolution, for tests).
 *
 * Layouts are those of bk_s4_layer (backend.h): complex vectors as a real
 * and an imaginary plane of (N2, H), so the inner loops run over channels
 * and vectorise.  Channels are independent: work is split by channel blocks
 * (and, for the scan, by time chunks).  This file never allocates backend
 * memory and never touches the model's weights beyond reading them.
 */
#include "engine/xalloc.h"
#include "kernels/cpu/cpu_s4.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { BLOCK = 64 }; /* channels per scan work item */

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

/* ---- the recurrence on one group of 16 channels ------------------------ */

/* 16 channels as one vector (GCC/Clang vector extension: AVX-512 with
 * -march=native, narrower SIMD or scalar code elsewhere).  A group at the
 * end of the channels may be narrower (w < VW): loads pad with zeros and
 * stores write w lanes. */
typedef float v16 __attribute__((vector_size(64)));
enum { VW = 16, TT = 64, BB = 32 };

static inline v16 ldw(const float *p, int w)
{
    v16 v = {0};
    if (w == VW)
        memcpy(&v, p, sizeof v); /* one unaligned vector load */
    else
        memcpy(&v, p, (size_t)w * sizeof(float));
    return v;
}

static inline void stw(float *p, v16 v, int w)
{
    if (w == VW)
        memcpy(p, &v, sizeof v);
    else
        memcpy(p, &v, (size_t)w * sizeof(float));
}

/* What a walk writes to y: the activated output gelu(Re C x + D u), the
 * raw Re C x (input still drives the state), or, for the scan's
 * correction, gelu(y + Re C x + D u) with the state evolving without input. */
enum { OUT_ACT = 0, OUT_RAW = 1, OUT_FIX = 2 };

static void out_row(const bk_s4_layer *l, v16 acc, const float *ut, float *yt, int h0, int w,
                    int mode)
{
    float a[VW];
    memcpy(a, &acc, sizeof a);
    for (int k = 0; k < w; k++) {
        if (mode == OUT_RAW)
            yt[k] = a[k];
        else
            yt[k] = gelu((mode == OUT_FIX ? yt[k] : 0.0f) + a[k] + l->D[h0 + k] * ut[k]);
    }
}

/* Diagonal layer, channels [h0, h0 + w), T steps from `state` (2, N2, H),
 * left final; input row t at u + t * ldu, output row t at y + t * ldy.
 * Time is tiled so that each pair's state and coefficients stay in
 * registers across a tile. */
static void diag_group(const bk_s4_layer *l, float *state, const float *u, long ldu, int T,
                       float *y, long ldy, int h0, int w, int mode)
{
    const int H = l->H, N2 = l->N2;
    const size_t pl = (size_t)N2 * H;
    v16 acc[TT], uu[TT];
    for (int t0 = 0; t0 < T; t0 += TT) {
        int tt = T - t0 < TT ? T - t0 : TT;
        for (int t = 0; t < tt; t++) {
            uu[t] = ldw(u + (size_t)(t0 + t) * ldu + h0, w);
            acc[t] = (v16){0};
        }
        for (int n = 0; n < N2; n++) {
            size_t o = (size_t)n * H + h0;
            v16 ar = ldw(l->dA + o, w), ai = ldw(l->dA + pl + o, w);
            v16 br = ldw(l->dB + o, w), bi = ldw(l->dB + pl + o, w);
            v16 cr = ldw(l->dC + o, w), ci = ldw(l->dC + pl + o, w);
            v16 xr = ldw(state + o, w), xi = ldw(state + pl + o, w);
            if (mode == OUT_FIX)
                br = bi = (v16){0};
            for (int t = 0; t < tt; t++) {
                v16 r = ar * xr - ai * xi + br * uu[t];
                v16 i = ar * xi + ai * xr + bi * uu[t];
                xr = r;
                xi = i;
                acc[t] += cr * r - ci * i;
            }
            stw(state + o, xr, w);
            stw(state + pl + o, xi, w);
        }
        for (int t = 0; t < tt; t++)
            out_row(l, acc[t], u + (size_t)(t0 + t) * ldu + h0, y + (size_t)(t0 + t) * ldy + h0,
                    h0, w, mode);
    }
}

/* DPLR layer, as diag_group: the bilinear step in its Woodbury form,
 * O(rank * N) per channel and step (see bk_s4_layer); three passes over
 * the pairs per step, all 16 channels wide. */
static void dplr_group(const bk_s4_layer *l, float *state, const float *u, long ldu, int T,
                       float *y, long ldy, int h0, int w, int mode)
{
    const int H = l->H, N2 = l->N2, R = l->rank;
    const size_t pl = (size_t)N2 * H;
    v16 s[CPU_S4_MAX_RANK], tr[CPU_S4_MAX_RANK];
    for (int t = 0; t < T; t++) {
        const float *ut = u + (size_t)t * ldu + h0;
        v16 uu = ldw(ut, w), acc = {0};
        for (int r = 0; r < R; r++)
            s[r] = tr[r] = (v16){0};
        /* s_r = 2 Re sum_n conj(P_rn) x_n */
        for (int n = 0; n < N2; n++) {
            size_t o = (size_t)n * H + h0;
            v16 xr = ldw(state + o, w), xi = ldw(state + pl + o, w);
            for (int r = 0; r < R; r++) {
                const float *pr = l->P + r * 2 * pl + o;
                s[r] += ldw(pr, w) * xr + ldw(pr + pl, w) * xi;
            }
        }
        for (int r = 0; r < R; r++)
            s[r] *= 2.0f;
        /* v = E x - P s + dB u, in place of x; t_r = 2 Re sum_n R_rn v_n */
        for (int n = 0; n < N2; n++) {
            size_t o = (size_t)n * H + h0;
            v16 xr = ldw(state + o, w), xi = ldw(state + pl + o, w);
            v16 er = ldw(l->dA + o, w), ei = ldw(l->dA + pl + o, w);
            v16 vr = er * xr - ei * xi, vi = er * xi + ei * xr;
            if (mode != OUT_FIX) {
                vr += ldw(l->dB + o, w) * uu;
                vi += ldw(l->dB + pl + o, w) * uu;
            }
            for (int r = 0; r < R; r++) {
                const float *pr = l->P + r * 2 * pl + o;
                vr -= ldw(pr, w) * s[r];
                vi -= ldw(pr + pl, w) * s[r];
            }
            for (int r = 0; r < R; r++) {
                const float *rr = l->R + r * 2 * pl + o;
                tr[r] += ldw(rr, w) * vr - ldw(rr + pl, w) * vi;
            }
            stw(state + o, vr, w);
            stw(state + pl + o, vi, w);
        }
        for (int r = 0; r < R; r++)
            tr[r] *= 2.0f;
        /* x' = Dinv (v - P t); y = Re sum_n dC_n x'_n */
        for (int n = 0; n < N2; n++) {
            size_t o = (size_t)n * H + h0;
            v16 vr = ldw(state + o, w), vi = ldw(state + pl + o, w);
            for (int r = 0; r < R; r++) {
                const float *pr = l->P + r * 2 * pl + o;
                vr -= ldw(pr, w) * tr[r];
                vi -= ldw(pr + pl, w) * tr[r];
            }
            v16 dr = ldw(l->Dinv + o, w), di = ldw(l->Dinv + pl + o, w);
            v16 nr = dr * vr - di * vi, ni = dr * vi + di * vr;
            acc += ldw(l->dC + o, w) * nr - ldw(l->dC + pl + o, w) * ni;
            stw(state + o, nr, w);
            stw(state + pl + o, ni, w);
        }
        out_row(l, acc, ut, y + (size_t)t * ldy + h0, h0, w, mode);
    }
}

/* Channels [h0, h1) of any layer, T steps on one state. */
static void run_block(const bk_s4_layer *l, float *state, const float *u, long ldu, int T, float *y,
                      long ldy, int h0, int h1, int mode)
{
    for (int h = h0; h < h1; h += VW) {
        int w = h1 - h < VW ? h1 - h : VW;
        if (l->rank > 0)
            dplr_group(l, state, u, ldu, T, y, ldy, h, w, mode);
        else
            diag_group(l, state, u, ldu, T, y, ldy, h, w, mode);
    }
}

/* Decode of a diagonal layer: one step for slots [b0, b1) of channels
 * [h0, h0 + w), coefficients loaded once for all the slots. */
static void diag_step_group(const bk_s4_layer *l, const bk_state_ref *st, const float *u, float *y,
                            int h0, int w, int b0, int b1)
{
    const int H = l->H, N2 = l->N2;
    const size_t pl = (size_t)N2 * H;
    v16 acc[BB], uu[BB];
    for (int b = b0; b < b1; b++) {
        uu[b - b0] = ldw(u + (size_t)b * H + h0, w);
        acc[b - b0] = (v16){0};
    }
    for (int n = 0; n < N2; n++) {
        size_t o = (size_t)n * H + h0;
        v16 ar = ldw(l->dA + o, w), ai = ldw(l->dA + pl + o, w);
        v16 br = ldw(l->dB + o, w), bi = ldw(l->dB + pl + o, w);
        v16 cr = ldw(l->dC + o, w), ci = ldw(l->dC + pl + o, w);
        for (int b = b0; b < b1; b++) {
            float *x = st->pool + (size_t)st->slots[b] * st->slot_stride + st->ssm_offset + o;
            v16 xr = ldw(x, w), xi = ldw(x + pl, w);
            v16 r = ar * xr - ai * xi + br * uu[b - b0];
            v16 i = ar * xi + ai * xr + bi * uu[b - b0];
            stw(x, r, w);
            stw(x + pl, i, w);
            acc[b - b0] += cr * r - ci * i;
        }
    }
    for (int b = b0; b < b1; b++)
        out_row(l, acc[b - b0], u + (size_t)b * H + h0, y + (size_t)b * H + h0, h0, w, OUT_ACT);
}

/* ---- prefill and decode ----------------------------------------------- */

typedef struct seq_job {
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
    run_block(j->l, j->state, j->u, j->l->H, j->T, j->y, j->l->H, (int)h0, (int)h1, OUT_ACT);
}

void cpu_s4_prefill(eng_threadpool *pool, const bk_s4_layer *l, float *state, const float *u, int T,
                    float *y)
{
    /* Too few channel groups to keep every thread busy and a long enough
     * sequence: parallelise over time too (diagonal layers). */
    int threads = eng_threadpool_size(pool);
    if (l->rank == 0 && threads > 1 && l->H < VW * threads && T >= 32 * threads) {
        int chunk = (T + 2 * threads - 1) / (2 * threads);
        float *scratch = malloc(cpu_s4_scan_scratch_floats(l, T, chunk) * sizeof(float));
        if (scratch) { /* else fall back to the sequential walk */
            cpu_s4_scan(pool, l, state, u, T, chunk, scratch, y);
            free(scratch);
            return;
        }
    }
    seq_job j = {l, state, u, y, T};
    if (l->H > VW && threads > 1)
        eng_threadpool_run(pool, prefill_worker, &j);
    else
        prefill_worker(&j, 0, 1);
}

typedef struct step_job {
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
            diag_step_group(l, j->st, j->u, j->y, h0, w, b0, b1);
            continue;
        }
        for (int b = b0; b < b1; b++) {
            float *state = j->st->pool + (size_t)j->st->slots[b] * j->st->slot_stride +
                           j->st->ssm_offset;
            dplr_group(l, state, j->u + (size_t)b * H, H, 1, j->y + (size_t)b * H, H, h0, w,
                       OUT_ACT);
        }
    }
}

void cpu_s4_step(eng_threadpool *pool, const bk_s4_layer *l, const bk_state_ref *st,
                 const float *u, float *y)
{
    step_job j = {l, st, u, y};
    long items = (long)((l->H + VW - 1) / VW) * ((st->batch + BB - 1) / BB);
    if (items > 1 && (long)st->batch * l->H * l->N2 * (l->rank + 1) >= 8192)
        eng_threadpool_run(pool, step_worker, &j);
    else
        step_worker(&j, 0, 1);
}

/* ---- scan view (diagonal layers) -------------------------------------- */

typedef struct scan_job {
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
            run_block(l, j->local + c * per, u, H, len, y, H, h0, h1, OUT_RAW);
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
        run_block(l, z, u, H, len, y, H, h0, h1, OUT_FIX);
    }
}

size_t cpu_s4_scan_scratch_floats(const bk_s4_layer *l, int T, int chunk)
{
    size_t n_chunks = ((size_t)T + chunk - 1) / chunk;
    return 2 * n_chunks * 2 * (size_t)l->N2 * l->H;
}

void cpu_s4_scan(eng_threadpool *pool, const bk_s4_layer *l, float *state, const float *u, int T,
                 int chunk, float *scratch, float *y)
{
    int n_chunks = (T + chunk - 1) / chunk;
    size_t per = 2 * (size_t)l->N2 * l->H;
    memset(scratch, 0, (size_t)n_chunks * per * sizeof(float));
    scan_job j = {l, state, scratch, scratch + (size_t)n_chunks * per, y, u, T, chunk, n_chunks, 1};
    eng_threadpool_run(pool, scan_worker, &j);
    j.phase = 2;
    eng_threadpool_run(pool, scan_worker, &j);
    j.phase = 3;
    eng_threadpool_run(pool, scan_worker, &j);
    memcpy(state, j.carry + (size_t)(n_chunks - 1) * per, per * sizeof(float));
}

/* ---- convolution view ------------------------------------------------- */

void cpu_s4_kernel(const bk_s4_layer *l, int L, float *K)
{
    const int H = l->H;
    float *state = xcalloc(2 * (size_t)l->N2 * H, sizeof(float));
    float *u = xcalloc((size_t)L * H, sizeof(float));
    for (int h = 0; h < H; h++)
        u[h] = 1.0f;
    run_block(l, state, u, H, L, K, H, 0, H, OUT_RAW);
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
