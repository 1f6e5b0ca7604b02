/* kc_gemv.cuh - the pieces every decode GEMV kernel shares (gemv.cu for
 * f32/f16/bf16 weights, quant.cu for GGUF's block-quantized ones): the warp
 * per row of W, the dot of unpacked weights with a run of x, and the warp
 * reduction that writes y.  Device code only; include after kc_device.cuh.
 */
#ifndef SSMD_KC_GEMV_CUH
#define SSMD_KC_GEMV_CUH

#include "kernels/cuda/kc_device.cuh"

enum { GEMV_WARPS = 4 }; /* rows of W (one warp each) per block */

/* The end of every GEMV: each of the m lane-partial sums of row r reduced
 * over the warp, and lane 0 writes it (+ bias) to y. */
static __device__ __forceinline__ void kc_gemv_store(const float acc[KC_GEMV_MAX], int m, int lane, int r,
                                                     float *y, int ldy, const float *bias)
{
    const float b = bias ? bias[r] : 0.0f;
    for (int i = 0; i < KC_GEMV_MAX; i++)
        if (i < m) {
            const float v = kc_warp_sum(acc[i]);
            if (lane == 0)
                y[(size_t)i * ldy + r] = v + b;
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

/* Whether x's rows (stride ldx) all start on 16 bytes: float4 loads. */
static inline bool kc_x_aligned(const float *x, int ldx) { return (ldx & 3) == 0 && ((uintptr_t)x & 15) == 0; }

#endif
