/* gemv.cu - the matmul kernels that are ours rather than cuBLAS's: the
 * decode GEMV (few rows of x against W in f32/f16/bf16, reading W once, f32
 * accumulation), the widening of 16-bit weight panels to f32 ahead of a
 * cuBLAS SGEMM, and the bias add that follows it.  Block-quantized W goes
 * to quant.cu's GEMV and dequantiser.
 *
 * The GEMV gives one warp per row of W; lanes stride along the row with
 * 4-wide vector loads when the row length allows, and the m partial sums are
 * reduced with warp shuffles.  The wide GEMV (kc_gemv_wide) is the same
 * shape with every lane loading 16 bytes of weights at a time (4 f32 or 8
 * f16/bf16) and two such loads in flight before it uses either: decode is
 * bound by how many bytes are in flight per SM, and the first kernel keeps
 * only 8 (bf16) or 16 (f32) bytes per lane outstanding.  It needs rows that
 * start on 16 bytes; kc_gemv_wide says when they do not.  Never allocates
 * or synchronises.
 */
#include "kernels/cuda/kc_gemv.cuh"

enum { WIDEN_THREADS = 256, BIAS_THREADS = 128 };

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
    kc_gemv_store(acc, m, lane, r, y, ldy, bias);
}

/* 16 bytes of weights of dtype DT as floats (4 or 8 of them). */
template <int DT> static __device__ __forceinline__ void kc_unpack16(const uint4 q, float *v)
{
    const unsigned u[4] = {q.x, q.y, q.z, q.w};
    for (int k = 0; k < 4; k++) {
        if (DT == KC_DT_F32) {
            v[k] = __uint_as_float(u[k]);
        } else {
            const uint16_t lo = (uint16_t)(u[k] & 0xffffu), hi = (uint16_t)(u[k] >> 16);
            v[2 * k] = DT == KC_DT_F16 ? kc_f16_to_f32(lo) : kc_bf16_to_f32(lo);
            v[2 * k + 1] = DT == KC_DT_F16 ? kc_f16_to_f32(hi) : kc_bf16_to_f32(hi);
        }
    }
}

/* x[0, V) dotted with v; XV: x is 16-byte aligned (float4 loads). */
template <int V, bool XV> static __device__ __forceinline__ float kc_dot_x(const float *v, const float *x)
{
    float s = 0.0f;
    if (XV) {
        for (int e = 0; e < V; e += 4) {
            const float4 q = __ldg(reinterpret_cast<const float4 *>(x + e));
            s += v[e] * q.x + v[e + 1] * q.y + v[e + 2] * q.z + v[e + 3] * q.w;
        }
    } else {
        for (int e = 0; e < V; e++)
            s += v[e] * __ldg(x + e);
    }
    return s;
}

enum { GEMV_WIDE_UNROLL = 2 }; /* 16-byte loads in flight per lane */

template <int DT, bool XV>
__global__ void k_gemv_wide(const void *w, int rows, int cols, const float *x, int ldx, int m, float *y,
                            int ldy, const float *bias)
{
    enum { V = DT == KC_DT_F32 ? 4 : 8, U = GEMV_WIDE_UNROLL };
    const int lane = threadIdx.x & 31, r = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (r >= rows)
        return; /* whole warps only: no block-wide barrier follows */
    const int nvec = cols / V;
    const uint4 *row = reinterpret_cast<const uint4 *>(w) + (size_t)r * nvec;
    float acc[KC_GEMV_MAX];
    for (int i = 0; i < KC_GEMV_MAX; i++)
        acc[i] = 0.0f;
    for (int v0 = lane; v0 < nvec; v0 += 32 * U) {
        uint4 q[U];
        for (int u = 0; u < U; u++) /* every load issued before any is used */
            if (v0 + 32 * u < nvec)
                q[u] = __ldg(row + v0 + 32 * u);
        for (int u = 0; u < U; u++) {
            const int vi = v0 + 32 * u;
            if (vi >= nvec)
                break;
            float wv[V];
            kc_unpack16<DT>(q[u], wv);
            for (int i = 0; i < KC_GEMV_MAX; i++)
                if (i < m)
                    acc[i] += kc_dot_x<V, XV>(wv, x + (size_t)i * ldx + (size_t)vi * V);
        }
    }
    kc_gemv_store(acc, m, lane, r, y, ldy, bias);
}

__global__ void k_widen(const void *w, int dt, size_t n, float *out)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = kc_load_w(w, dt, i);
}

static __device__ __forceinline__ uint16_t kc_f32_to_bf16(float f)
{
    const unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u); /* a quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Grid (column blocks, m). */
__global__ void k_narrow_bf16(const float *x, int ldx, int k, uint16_t *out)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < k)
        out[(size_t)blockIdx.y * k + j] = kc_f32_to_bf16(x[(size_t)blockIdx.y * ldx + j]);
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
    if (kc_dt_blocked(dt)) {
        kc_gemv_quant(w, dt, rows, cols, x, ldx, m, y, ldy, bias, s);
        return;
    }
    KC_LAUNCH(k_gemv, kc_div_up(rows, GEMV_WARPS), 32 * GEMV_WARPS, 0, s, w, dt, rows, cols, x, ldx,
              m, y, ldy, bias);
}

template <int DT>
static void launch_gemv_wide(const void *w, int rows, int cols, const float *x, int ldx, int m, float *y,
                             int ldy, const float *bias, kc_stream s)
{
    const unsigned blocks = (unsigned)kc_div_up(rows, GEMV_WARPS);
    void (*k_gemv_wide_dt)(const void *, int, int, const float *, int, int, float *, int, const float *) =
        (ldx & 3) == 0 && ((uintptr_t)x & 15) == 0 ? k_gemv_wide<DT, true> : k_gemv_wide<DT, false>;
    KC_LAUNCH(k_gemv_wide_dt, blocks, 32 * GEMV_WARPS, 0, s, w, rows, cols, x, ldx, m, y, ldy, bias);
}

extern "C" int kc_gemv_wide(const void *w, int dt, int rows, int cols, const float *x, int ldx, int m,
                            float *y, int ldy, const float *bias, kc_stream s)
{
    const int esize = dt == KC_DT_F32 ? 4 : 2;
    if ((dt != KC_DT_F32 && dt != KC_DT_F16 && dt != KC_DT_BF16) || ((uintptr_t)w & 15) != 0 ||
        ((size_t)cols * esize) % 16 != 0)
        return 0;
    if (m <= 0 || rows <= 0)
        return 1;
    if (dt == KC_DT_F32)
        launch_gemv_wide<KC_DT_F32>(w, rows, cols, x, ldx, m, y, ldy, bias, s);
    else if (dt == KC_DT_F16)
        launch_gemv_wide<KC_DT_F16>(w, rows, cols, x, ldx, m, y, ldy, bias, s);
    else
        launch_gemv_wide<KC_DT_BF16>(w, rows, cols, x, ldx, m, y, ldy, bias, s);
    return 1;
}

extern "C" void kc_widen(const void *w, int dt, size_t n, float *out, kc_stream s)
{
    if (n == 0)
        return;
    if (kc_dt_blocked(dt)) { /* whole rows, so whole blocks: dequantised as one long row */
        kc_dequant_rows(w, dt, n, NULL, 1, out, s);
        return;
    }
    size_t blocks = (n + WIDEN_THREADS - 1) / WIDEN_THREADS;
    KC_LAUNCH(k_widen, (unsigned)(blocks < 4096 ? blocks : 4096), WIDEN_THREADS, 0, s, w, dt, n, out);
}

extern "C" void kc_narrow_bf16(const float *x, int ldx, int m, int k, uint16_t *out, kc_stream s)
{
    if (m <= 0 || k <= 0)
        return;
    dim3 grid(kc_div_up(k, BIAS_THREADS), (unsigned)m);
    KC_LAUNCH(k_narrow_bf16, grid, BIAS_THREADS, 0, s, x, ldx, k, out);
}

extern "C" void kc_add_bias(float *y, int ldy, int m, int n, const float *bias, kc_stream s)
{
    if (m <= 0 || n <= 0)
        return;
    dim3 grid(kc_div_up(n, BIAS_THREADS), (unsigned)m);
    KC_LAUNCH(k_add_bias, grid, BIAS_THREADS, 0, s, y, ldy, n, bias);
}
