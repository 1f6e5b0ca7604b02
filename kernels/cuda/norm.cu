/* norm.cu - row-wise kernels of the Mamba-1 forward: RMSNorm fused with the
 * residual add, the weightless RMS norm of strided rows (Falcon-Mamba's dt,
 * B and C), the embedding gather (any weight dtype to f32) and argmax over
 * logits rows (the greedy sampling helper).
 *
 * One block per row; block reductions are warp shuffles, then one value per
 * warp through shared memory.  Never allocates or synchronises.
 */
#include "kernels/cuda/kc_device.cuh"

enum { NORM_THREADS = 256, EMBED_THREADS = 128, ARGMAX_THREADS = 256 };

/* Block per row r: resid[r] += add[r]; out[r] = resid[r] * rsqrt(mean sq +
 * eps) * weight.  blockDim.x is a multiple of 32. */
__global__ void k_add_rmsnorm(float *resid, const float *add, const float *weight, float eps, int dim,
                              float *out)
{
    KC_SHARED(float, part, 32);
    KC_SHARED(float, total, 1);
    const int tid = threadIdx.x;
    float *x = resid + (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (int i = tid; i < dim; i += blockDim.x) {
        float v = x[i];
        if (add) {
            v += add[(size_t)blockIdx.x * dim + i];
            x[i] = v;
        }
        ss += v * v;
    }
    kc_block_sum(ss, part, total);
    const float scale = 1.0f / sqrtf(total[0] / (float)dim + eps);
    float *o = out + (size_t)blockIdx.x * dim;
    for (int i = tid; i < dim; i += blockDim.x)
        o[i] = weight[i] * (x[i] * scale);
}

/* Block per row r: x[r * ld, + dim) *= rsqrt(mean sq + eps), in place. */
__global__ void k_rms_rows(float *x, int ld, int dim, float eps)
{
    KC_SHARED(float, part, 32);
    KC_SHARED(float, total, 1);
    float *row = x + (size_t)blockIdx.x * ld;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        ss += row[i] * row[i];
    kc_block_sum(ss, part, total);
    const float scale = 1.0f / sqrtf(total[0] / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        row[i] *= scale;
}

/* Grid (column blocks, n). */
__global__ void k_embed(const void *w, int dt, int cols, const int32_t *ids, float *out)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
    if (c >= cols)
        return;
    out[(size_t)r * cols + c] = kc_load_w(w, dt, (size_t)ids[r] * cols + c);
}

/* (value, index) b beats a: larger, or equal with a lower index; NaN never. */
static __device__ __forceinline__ int kc_beats(float bv, int bi, float av, int ai)
{
    return bv > av || (bv == av && bi < ai);
}

/* Block per row. */
__global__ void k_argmax(const float *logits, int V, int ld, int32_t *out)
{
    KC_SHARED(float, pv, 32);
    KC_SHARED(int, pi, 32);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nwarps = blockDim.x >> 5;
    const float *row = logits + (size_t)blockIdx.x * ld;
    float best = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = tid; i < V; i += blockDim.x)
        if (kc_beats(row[i], i, best, bi))
            best = row[i], bi = i;
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(KC_FULL_MASK, best, o);
        int oi = __shfl_xor_sync(KC_FULL_MASK, bi, o);
        if (kc_beats(ov, oi, best, bi))
            best = ov, bi = oi;
    }
    if (lane == 0) {
        pv[warp] = best;
        pi[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        best = lane < nwarps ? pv[lane] : -INFINITY;
        bi = lane < nwarps ? pi[lane] : 0x7fffffff;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(KC_FULL_MASK, best, o);
            int oi = __shfl_xor_sync(KC_FULL_MASK, bi, o);
            if (kc_beats(ov, oi, best, bi))
                best = ov, bi = oi;
        }
        if (lane == 0)
            out[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;
    }
}

extern "C" void kc_add_rmsnorm(float *resid, const float *add, const float *weight, float eps, int n,
                               int dim, float *out, kc_stream s)
{
    if (n <= 0)
        return;
    KC_LAUNCH(k_add_rmsnorm, (unsigned)n, kc_warps_for(dim, NORM_THREADS), 0, s, resid, add, weight,
              eps, dim, out);
}

extern "C" void kc_rms_rows(float *x, int ld, int n, int dim, float eps, kc_stream s)
{
    if (n <= 0 || dim <= 0)
        return;
    KC_LAUNCH(k_rms_rows, (unsigned)n, kc_warps_for(dim, NORM_THREADS), 0, s, x, ld, dim, eps);
}

extern "C" void kc_embed(const void *w, int dt, int cols, const int32_t *ids, int n, float *out,
                         kc_stream s)
{
    if (n <= 0)
        return;
    if (kc_dt_blocked(dt)) {
        kc_dequant_rows(w, dt, (size_t)cols, ids, (size_t)n, out, s);
        return;
    }
    dim3 grid(kc_div_up(cols, EMBED_THREADS), (unsigned)n);
    KC_LAUNCH(k_embed, grid, EMBED_THREADS, 0, s, w, dt, cols, ids, out);
}

extern "C" void kc_argmax(const float *logits, int n, int V, int ld, int32_t *out, kc_stream s)
{
    if (n <= 0)
        return;
    KC_LAUNCH(k_argmax, (unsigned)n, kc_warps_for(V, ARGMAX_THREADS), 0, s, logits, V, ld, out);
}
