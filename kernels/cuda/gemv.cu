/* gemv.cu - the matmul kernels that are ours rather than cuBLAS's: the
 * decode GEMV (few rows of x against W in f32/f16/bf16, reading W once, f32
 * accumulation), the widening of 16-bit weight panels to f32 ahead of a
 * cuBLAS SGEMM, and the bias add that follows it.
 *
 * The GEMV gives one warp per row of W; lanes stride along the row with
 * 4-wide vector loads when the row length allows, and the m partial sums are
 * reduced with warp shuffles.  Never allocates or synchronises.
 */
#include "kernels/cuda/kc_device.cuh"

enum { GEMV_WARPS = 4, WIDEN_THREADS = 256, BIAS_THREADS = 128 };

__global__ void k_gemv(const void *w, int dt, int rows, int cols, const float *x, int ldx, int m, float *y,
                       int ldy, const float *bias)
{
    const int lane = threadIdx.x & 31, r = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (r >= rows)
        return; /* whole warps only: no block-wide barrier follows */
    const size_t row = (size_t)r * cols;
    float acc[KC_GEMV_MAX];
    for (int i = 0; i < KC_GEMV_MAX; i++)
        acc[i] = 0.0f;
    int k = 0;
    if ((cols & 3) == 0) {
        for (k = lane * 4; k < cols; k += 32 * 4) {
            float wv[4];
            kc_load_w4(w, dt, row + k, wv);
            for (int i = 0; i < KC_GEMV_MAX; i++)
                if (i < m) {
                    const float *xi = x + (size_t)i * ldx + k;
                    acc[i] += wv[0] * xi[0] + wv[1] * xi[1] + wv[2] * xi[2] + wv[3] * xi[3];
                }
        }
    } else {
        for (k = lane; k < cols; k += 32) {
            const float wv = kc_load_w(w, dt, row + k);
            for (int i = 0; i < KC_GEMV_MAX; i++)
                if (i < m)
                    acc[i] += wv * x[(size_t)i * ldx + k];
        }
    }
    const float b = bias ? bias[r] : 0.0f;
    for (int i = 0; i < KC_GEMV_MAX; i++)
        if (i < m) {
            const float v = kc_warp_sum(acc[i]);
            if (lane == 0)
                y[(size_t)i * ldy + r] = v + b;
        }
}

__global__ void k_widen(const void *w, int dt, size_t n, float *out)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = kc_load_w(w, dt, i);
}

/* Grid (column blocks, m). */
__global__ void k_add_bias(float *y, int ldy, int n, const float *bias)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < n)
        y[(size_t)blockIdx.y * ldy + j] += bias[j];
}

extern "C" void kc_gemv(const void *w, int dt, int rows, int cols, const float *x, int ldx, int m,
                        float *y, int ldy, const float *bias, kc_stream s)
{
    if (m <= 0 || rows <= 0)
        return;
    KC_LAUNCH(k_gemv, kc_div_up(rows, GEMV_WARPS), 32 * GEMV_WARPS, 0, s, w, dt, rows, cols, x, ldx,
              m, y, ldy, bias);
}

extern "C" void kc_widen(const void *w, int dt, size_t n, float *out, kc_stream s)
{
    if (n == 0)
        return;
    size_t blocks = (n + WIDEN_THREADS - 1) / WIDEN_THREADS;
    KC_LAUNCH(k_widen, (unsigned)(blocks < 4096 ? blocks : 4096), WIDEN_THREADS, 0, s, w, dt, n, out);
}

extern "C" void kc_add_bias(float *y, int ldy, int m, int n, const float *bias, kc_stream s)
{
    if (m <= 0 || n <= 0)
        return;
    dim3 grid(kc_div_up(n, BIAS_THREADS), (unsigned)m);
    KC_LAUNCH(k_add_bias, grid, BIAS_THREADS, 0, s, y, ldy, n, bias);
}
