/* s5.cu - S5 on the GPU: the P complex diagonal recurrences x' = lam x + v
 * between the model's two matmuls (B_bar before, C~ after: those run on
 * the backend's GEMV/GEMM paths, not here), and the skip + GELU after them.
 *
 * One thread per state p (rows of v / xs are split planes, so a warp's
 * loads coalesce).  Prefill longer than one chunk is the same parallel scan
 * over time chunks as the S4D layer's (s4.cu): k_s5_local runs every chunk
 * (chunk 0 from the slot's state, the others from zero) writing each x_t
 * and the chunk's final state, kc_diag_carry (diag_carry.cu) joins the
 * final states, and k_s5_fix adds lam^(k+1) times each chunk's true
 * incoming state to its outputs.  S5's P is small (hundreds), so without
 * chunks a prompt would run on a few hundred threads.  Same arithmetic as
 * kernels/cpu/cpu_s5.c.  Never allocates or synchronises.
 */
#include "kernels/cuda/kc_device.cuh"

enum { S5_THREADS = 128, ACT_THREADS = 256 };

/* State p over T rows of v / xs from `from` (NULL: zero) into `to` (may be
 * from): with_input 1: x = lam x + v_t, xs_t = x; 0 (the free response of
 * a carried state): x = lam x, xs_t += x. */
static __device__ void s5_walk(const kc_s5_args &a, const float *from, float *to, int p,
                               const float *v, float *xs, int T, int with_input)
{
    const int P = a.P;
    const float ar = a.lam[p], ai = a.lam[P + p];
    float xr = from ? from[p] : 0.0f, xi = from ? from[P + p] : 0.0f;
    for (int t = 0; t < T; t++) {
        const size_t o = (size_t)t * 2 * P + p;
        float r = ar * xr - ai * xi, i = ar * xi + ai * xr;
        if (with_input) {
            r += v[o], i += v[o + P];
            xs[o] = r, xs[o + P] = i;
        } else {
            xs[o] += r, xs[o + P] += i;
        }
        xr = r, xi = i;
    }
    to[p] = xr, to[P + p] = xi;
}

/* Grid (state blocks, rows of a step or 1): in token order. */
__global__ void k_s5(kc_s5_args a, int step)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= a.P)
        return;
    /* a step's row blockIdx.y, or the whole prompt */
    const size_t r0 = step ? (size_t)blockIdx.y * 2 * a.P : 0;
    float *state = step ? kc_slot_state(a.at, blockIdx.y) : a.state;
    if (!state) { /* padding */
        a.xs[r0 + p] = 0.0f, a.xs[r0 + a.P + p] = 0.0f;
        return;
    }
    s5_walk(a, state, state, p, a.v + r0, a.xs + r0, step ? 1 : a.T, 1);
}

/* Scan pass 1, grid (state blocks, chunks of L rows); local (chunks, 2P). */
__global__ void k_s5_local(kc_s5_args a, int L, float *local)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x, c = blockIdx.y;
    if (p >= a.P)
        return;
    const size_t row = 2 * (size_t)a.P, t0 = (size_t)c * L;
    s5_walk(a, c ? NULL : a.state, local + c * row, p, a.v + t0 * row, a.xs + t0 * row,
            kc_imin(L, a.T - (int)t0), 1);
}

/* Scan pass 3, grid (state blocks, chunks - 1): chunk c = 1 + blockIdx.y
 * from the true state after chunk c - 1 (evolved in place in local). */
__global__ void k_s5_fix(kc_s5_args a, int L, float *local)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x, c = 1 + blockIdx.y;
    if (p >= a.P)
        return;
    const size_t row = 2 * (size_t)a.P, t0 = (size_t)c * L;
    float *carry = local + (c - 1) * row;
    s5_walk(a, carry, carry, p, NULL, a.xs + t0 * row, kc_imin(L, a.T - (int)t0), 0);
}

__global__ void k_s5_skip_act(const float *y, const float *u, const float *D, int rows, int H,
                              int gelu_tanh, float *pre, int ld_pre, float *act, int ld_act)
{
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)rows * H)
        return;
    const long r = i / H, h = i % H;
    const float x = y[i] + D[h] * u[i];
    if (pre)
        pre[r * ld_pre + h] = x;
    if (act)
        act[r * ld_act + h] = gelu_tanh ? kc_gelu_tanh(x) : kc_gelu(x);
}

static void s5_launch(const kc_s5_args *a, int rows, int step, kc_stream s)
{
    if (rows <= 0 || a->P <= 0)
        return;
    dim3 grid(kc_div_up(a->P, S5_THREADS), step ? (unsigned)rows : 1u);
    KC_LAUNCH(k_s5, grid, (unsigned)S5_THREADS, 0, s, *a, step);
}

extern "C" size_t kc_s5_scan_scratch(const kc_s5_args *a, const kc_tuning *t)
{
    const int L = kc_diag_chunk(a->P, a->T, t);
    return L ? (size_t)kc_div_up(a->T, L) * 2 * a->P : 0;
}

extern "C" void kc_s5_scan(const kc_s5_args *a, float *scratch, const kc_tuning *t, kc_stream s)
{
    const int L = kc_diag_chunk(a->P, a->T, t);
    if (!L || !scratch) {
        s5_launch(a, a->T, 0, s);
        return;
    }
    const unsigned chunks = kc_div_up(a->T, L), gx = kc_div_up(a->P, S5_THREADS);
    KC_LAUNCH(k_s5_local, dim3(gx, chunks), (unsigned)S5_THREADS, 0, s, *a, L, scratch);
    kc_diag_carry(a->lam, (size_t)a->P, scratch, (int)chunks, L, a->T - (int)(chunks - 1) * L,
                  a->state, s);
    KC_LAUNCH(k_s5_fix, dim3(gx, chunks - 1), (unsigned)S5_THREADS, 0, s, *a, L, scratch);
}

extern "C" void kc_s5_step(const kc_s5_args *a, kc_stream s) { s5_launch(a, a->at.batch, 1, s); }

extern "C" void kc_s5_skip_act(const float *y, const float *u, const float *D, int rows, int H,
                               int gelu_tanh, float *out_pre, int ld_pre, float *out_act, int ld_act,
                               kc_stream s)
{
    if (rows > 0 && H > 0)
        KC_LAUNCH(k_s5_skip_act, kc_div_up((long)rows * H, ACT_THREADS), (unsigned)ACT_THREADS, 0, s,
                  y, u, D, rows, H, gelu_tanh, out_pre, ld_pre, out_act, ld_act);
}
