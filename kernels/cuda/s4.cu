/* s4.cu - the S4 / S4D family on the GPU: the recurrence (diagonal, and
 * DPLR in its Woodbury form), LayerNorm fused with the residual add, GLU.
 *
 * The recurrence runs one thread per channel: channels are independent
 * and the state planes (2, N2, H) put a channel's pairs H apart, so a
 * warp's loads coalesce.  A diagonal layer walks time in tiles of S4_TILE
 * tokens, each pair's state and coefficients loaded once per tile.
 *
 * Prefill of a diagonal layer (the S4D and DSS models) longer than one
 * chunk is a parallel scan over time chunks, as kernels/cpu/cpu_s4.c's:
 *  1. k_s4_local, one thread per (channel, chunk): chunk 0 runs from the
 *     slot's state and writes its final outputs; every other chunk runs
 *     from zero and writes raw outputs (before the skip and GELU); each
 *     chunk's final state goes to scratch;
 *  2. kc_diag_carry (diag_carry.cu) turns those into the true state at
 *     the end of each chunk (dA^len carry + local), the last into the slot;
 *  3. k_s4_fix: chunks 1.. add the free response of their incoming true
 *     state (dA^k carry, no input) to the raw outputs, then the skip and
 *     GELU.
 * About twice the token work of the walk, for H x chunks threads instead
 * of H.  A DPLR layer (S4, rank > 0) longer than three chunks runs
 * dplr_scan.cu's chunked scan: its Woodbury step is not a diagonal map of
 * the state, so chunk states join by the chunk's dense transition instead
 * of a power of dA.  Same arithmetic per token as kernels/cpu/cpu_s4.c
 * (the DPLR step is kc_s4.cuh's, shared with dplr_scan.cu).  Never
 * allocates or synchronises.
 */
#include "kernels/cuda/kc_s4.cuh"

enum {
    S4_THREADS = 128, LN_THREADS = 256, GLU_THREADS = 256,
    S4_TILE = 8, /* tokens per register tile of the diagonal walk */
};

/* What the diagonal walk writes to y: gelu(acc + D u) (final outputs),
 * acc alone (a chunk from zero, corrected later), or, with the input term
 * dropped (the free response of a carried state), gelu(y + acc + D u). */
enum { S4_OUT_ACT, S4_OUT_RAW, S4_OUT_FIX };

/* Channel h of a diagonal layer over T tokens (u, y rows of H): x' = dA x
 * + dB u from `from` (NULL: zero) into `to` (may be from), y by mode. */
static __device__ void s4_diag_walk(const kc_s4_args &a, const float *from, float *to, int h,
                                    const float *u, float *y, int T, int mode)
{
    const int H = a.H, N2 = a.N2;
    const size_t pl = (size_t)N2 * H;
    for (int t0 = 0; t0 < T; t0 += S4_TILE) {
        const int tt = kc_imin(S4_TILE, T - t0);
        float uu[S4_TILE], acc[S4_TILE];
        for (int k = 0; k < S4_TILE; k++) {
            uu[k] = k < tt && mode != S4_OUT_FIX ? u[(size_t)(t0 + k) * H + h] : 0.0f;
            acc[k] = 0.0f;
        }
        const float *src = t0 ? to : from;
        for (int n = 0; n < N2; n++) {
            const size_t o = (size_t)n * H + h;
            const float ar = a.dA[o], ai = a.dA[pl + o], br = a.dB[o], bi = a.dB[pl + o];
            const float cr = a.dC[o], ci = a.dC[pl + o];
            float xr = src ? src[o] : 0.0f, xi = src ? src[pl + o] : 0.0f;
            for (int k = 0; k < tt; k++) {
                const float r = ar * xr - ai * xi + br * uu[k];
                const float i = ar * xi + ai * xr + bi * uu[k];
                xr = r, xi = i;
                acc[k] += cr * r - ci * i;
            }
            to[o] = xr, to[pl + o] = xi;
        }
        for (int k = 0; k < tt; k++) {
            const size_t r = (size_t)(t0 + k) * H + h;
            const float ut = u[r];
            y[r] = mode == S4_OUT_RAW ? acc[k]
                                      : kc_gelu((mode == S4_OUT_FIX ? y[r] : 0.0f) + acc[k] + a.D[h] * ut);
        }
    }
}

/* Grid (channel blocks, rows of a step or 1): the walk in token order. */
__global__ void k_s4(kc_s4_args a, int step)
{
    const int h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= a.H)
        return;
    /* a step's row blockIdx.y, or the whole prompt */
    const size_t r0 = step ? (size_t)blockIdx.y * a.H : 0;
    const int T = step ? 1 : a.T;
    float *state = step ? kc_slot_state(a.at, blockIdx.y) : a.state, *y = a.y + r0;
    const float *u = a.u + r0;
    if (!state) { /* padding */
        y[h] = 0.0f;
        return;
    }
    if (a.R == 0) {
        s4_diag_walk(a, state, state, h, u, y, T, S4_OUT_ACT);
        return;
    }
    s4_dplr_walk(a, state, h, u, y, T);
}

/* Scan pass 1, grid (channel blocks, chunks of L tokens); local (chunks,
 * 2, N2, H). */
__global__ void k_s4_local(kc_s4_args a, int L, float *local)
{
    const int h = blockIdx.x * blockDim.x + threadIdx.x, c = blockIdx.y;
    if (h >= a.H)
        return;
    const size_t t0 = (size_t)c * L, per = 2 * (size_t)a.N2 * a.H;
    const int len = kc_imin(L, a.T - (int)t0);
    s4_diag_walk(a, c ? NULL : a.state, local + c * per, h, a.u + t0 * a.H, a.y + t0 * a.H, len,
                 c ? S4_OUT_RAW : S4_OUT_ACT);
}

/* Scan pass 3, grid (channel blocks, chunks - 1): chunk c = 1 + blockIdx.y
 * from the true state after chunk c - 1 (in local, evolved in place: no
 * other chunk reads it). */
__global__ void k_s4_fix(kc_s4_args a, int L, float *local)
{
    const int h = blockIdx.x * blockDim.x + threadIdx.x, c = 1 + blockIdx.y;
    if (h >= a.H)
        return;
    const size_t t0 = (size_t)c * L, per = 2 * (size_t)a.N2 * a.H;
    const int len = kc_imin(L, a.T - (int)t0);
    float *carry = local + (c - 1) * per;
    s4_diag_walk(a, carry, carry, h, a.u + t0 * a.H, a.y + t0 * a.H, len, S4_OUT_FIX);
}

/* Block per row: resid += add; out = (resid - mean) / sqrt(var + eps) * w + b. */
__global__ void k_add_layernorm(float *resid, const float *add, const float *weight,
                                const float *bias, float eps, int dim, float *out)
{
    KC_SHARED(float, part, 32);
    KC_SHARED(float, total, 1);
    float *x = resid + (size_t)blockIdx.x * dim;
    float sum = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = x[i];
        if (add) {
            v += add[(size_t)blockIdx.x * dim + i];
            x[i] = v;
        }
        sum += v;
    }
    kc_block_sum(sum, part, total);
    const float mean = total[0] / (float)dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        ss += (x[i] - mean) * (x[i] - mean);
    kc_block_sum(ss, part, total);
    const float scale = 1.0f / sqrtf(total[0] / (float)dim + eps);
    float *o = out + (size_t)blockIdx.x * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        o[i] = (x[i] - mean) * scale * weight[i] + bias[i];
}

__global__ void k_glu(const float *x, int n, int dim, float *out)
{
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)n * dim)
        return;
    const long r = i / dim, c = i % dim;
    const float *row = x + (size_t)r * 2 * dim;
    out[i] = row[c] / (1.0f + expf(-row[dim + c]));
}

static void s4_launch(const kc_s4_args *a, int rows, int step, kc_stream s)
{
    if (rows <= 0)
        return;
    dim3 grid(kc_div_up(a->H, S4_THREADS), step ? (unsigned)rows : 1u);
    KC_LAUNCH(k_s4, grid, (unsigned)S4_THREADS, 0, s, *a, step);
}

/* The scan's chunk length; 0: walk in order.  Diagonal layers scan
 * whatever spans two chunks.  A DPLR scan runs three chunk-long walks one
 * after another (local ends, the transition, the fix) plus the carry over
 * the chunks, so it scans only prompts of more than three chunks: below
 * that the walk in order finishes no later, with no scratch. */
static int s4_chunk(const kc_s4_args *a, const kc_tuning *t)
{
    const int L = kc_diag_chunk(a->H, a->T, t);
    return a->R == 0 || a->T > 3 * L ? L : 0;
}

extern "C" size_t kc_s4_prefill_scratch(const kc_s4_args *a, const kc_tuning *t)
{
    const int L = s4_chunk(a, t);
    if (!L)
        return 0;
    return a->R ? kc_s4_dplr_scratch(a, L) : (size_t)kc_div_up(a->T, L) * 2 * a->N2 * a->H;
}

extern "C" void kc_s4_prefill(const kc_s4_args *a, float *scratch, const kc_tuning *t, kc_stream s)
{
    const int L = s4_chunk(a, t);
    if (!L || !scratch) {
        s4_launch(a, a->T, 0, s);
        return;
    }
    if (a->R) {
        kc_s4_dplr_prefill(a, L, scratch, s);
        return;
    }
    const unsigned chunks = kc_div_up(a->T, L), gx = kc_div_up(a->H, S4_THREADS);
    KC_LAUNCH(k_s4_local, dim3(gx, chunks), (unsigned)S4_THREADS, 0, s, *a, L, scratch);
    kc_diag_carry(a->dA, (size_t)a->N2 * a->H, scratch, (int)chunks, L,
                  a->T - (int)(chunks - 1) * L, a->state, s);
    KC_LAUNCH(k_s4_fix, dim3(gx, chunks - 1), (unsigned)S4_THREADS, 0, s, *a, L, scratch);
}
extern "C" void kc_s4_step(const kc_s4_args *a, kc_stream s) { s4_launch(a, a->at.batch, 1, s); }

extern "C" void kc_add_layernorm(float *resid, const float *add, const float *weight,
                                 const float *bias, float eps, int n, int dim, float *out,
                                 kc_stream s)
{
    if (n > 0)
        KC_LAUNCH(k_add_layernorm, (unsigned)n, (unsigned)LN_THREADS, 0, s, resid, add, weight, bias,
                  eps, dim, out);
}

extern "C" void kc_glu(const float *x, int n, int dim, float *out, kc_stream s)
{
    if (n > 0 && dim > 0)
        KC_LAUNCH(k_glu, kc_div_up((long)n * dim, GLU_THREADS), (unsigned)GLU_THREADS, 0, s, x, n,
                  dim, out);
}
