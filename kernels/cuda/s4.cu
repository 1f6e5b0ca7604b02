/* s4.cu - the S4 / S4D family on the GPU: the recurrence (diagonal, and
 * DPLR in its Woodbury form), LayerNorm fused with the residual add, GLU.
 *
 * The recurrence runs one thread per channel: channels are independent
 * and the state planes (2, N2, H) put a channel's pairs H apart, so a
 * warp's loads coalesce.  Prefill walks the prompt's tokens in order in
 * each thread (the parallel scan over time chunks that the CPU backend has
 * for diagonal layers is not written here yet).  Same arithmetic as
 * kernels/cpu/cpu_s4.c.  Never allocates or synchronises.
 */
#include "kernels/cuda/kc_device.cuh"

enum { S4_THREADS = 128, LN_THREADS = 256, GLU_THREADS = 256 };

static __device__ __forceinline__ float kc_gelu(float x)
{
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

/* One token of channel h from state (the planes of bk_s4_layer); returns
 * Re sum_n dC_n x'_n. */
static __device__ float s4_token(const kc_s4_args &a, float *state, int h, float u)
{
    const int H = a.H, N2 = a.N2, R = a.R;
    const size_t pl = (size_t)N2 * H;
    float acc = 0.0f;
    if (R == 0) {
        for (int n = 0; n < N2; n++) {
            const size_t o = (size_t)n * H + h;
            const float xr = state[o], xi = state[pl + o], ar = a.dA[o], ai = a.dA[pl + o];
            const float r = ar * xr - ai * xi + a.dB[o] * u;
            const float i = ar * xi + ai * xr + a.dB[pl + o] * u;
            state[o] = r, state[pl + o] = i;
            acc += a.dC[o] * r - a.dC[pl + o] * i;
        }
        return acc;
    }
    float s[KC_S4_MAX_RANK], t[KC_S4_MAX_RANK];
    for (int r = 0; r < R; r++)
        s[r] = t[r] = 0.0f;
    for (int n = 0; n < N2; n++) { /* s_r = 2 Re sum_n conj(P_rn) x_n */
        const size_t o = (size_t)n * H + h;
        for (int r = 0; r < R; r++)
            s[r] += a.P[r * 2 * pl + o] * state[o] + a.P[r * 2 * pl + pl + o] * state[pl + o];
    }
    for (int n = 0; n < N2; n++) { /* v = E x - P s + dB u; t_r = 2 Re sum_n R_rn v_n */
        const size_t o = (size_t)n * H + h;
        const float xr = state[o], xi = state[pl + o], er = a.dA[o], ei = a.dA[pl + o];
        float vr = er * xr - ei * xi + a.dB[o] * u, vi = er * xi + ei * xr + a.dB[pl + o] * u;
        for (int r = 0; r < R; r++) {
            vr -= a.P[r * 2 * pl + o] * 2.0f * s[r];
            vi -= a.P[r * 2 * pl + pl + o] * 2.0f * s[r];
        }
        for (int r = 0; r < R; r++)
            t[r] += a.Rw[r * 2 * pl + o] * vr - a.Rw[r * 2 * pl + pl + o] * vi;
        state[o] = vr, state[pl + o] = vi;
    }
    for (int n = 0; n < N2; n++) { /* x' = Dinv (v - P t) */
        const size_t o = (size_t)n * H + h;
        float vr = state[o], vi = state[pl + o];
        for (int r = 0; r < R; r++) {
            vr -= a.P[r * 2 * pl + o] * 2.0f * t[r];
            vi -= a.P[r * 2 * pl + pl + o] * 2.0f * t[r];
        }
        const float dr = a.Dinv[o], di = a.Dinv[pl + o];
        const float nr = dr * vr - di * vi, ni = dr * vi + di * vr;
        state[o] = nr, state[pl + o] = ni;
        acc += a.dC[o] * nr - a.dC[pl + o] * ni;
    }
    return acc;
}

/* Grid (channel blocks, rows of a step or 1). */
__global__ void k_s4(kc_s4_args a, int step)
{
    const int h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= a.H)
        return;
    int t0 = 0, t1 = a.T;
    float *state = a.state;
    if (step) {
        t0 = blockIdx.y, t1 = t0 + 1;
        state = a.at.slots[t0] < 0 ? NULL : a.at.pool + (size_t)a.at.slots[t0] * a.at.slot_stride + a.at.offset;
    }
    for (int t = t0; t < t1; t++) {
        const float u = a.u[(size_t)t * a.H + h];
        a.y[(size_t)t * a.H + h] = state ? kc_gelu(s4_token(a, state, h, u) + a.D[h] * u) : 0.0f;
    }
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

extern "C" void kc_s4_prefill(const kc_s4_args *a, kc_stream s) { s4_launch(a, a->T, 0, s); }
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
