/* kc_gemv.cuh - the pieces every decode GEMV kernel shares (gemv.cu for
 * f32/f16/bf16 weights, quant.cu for GGUF's block-quantized ones): the warp
 * per row of W and the warp reduction that writes y.  Device code only.
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

#endif
