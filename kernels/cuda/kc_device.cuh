/* kc_device.cuh - what every kernel source includes: the CUDA runtime under
 * nvcc or the emulation shim on the host, the shared-memory and launch
 * macros that work in both, and small device helpers (dtype loads, softplus,
 * SiLU, warp sums).
 *
 * Kernels must declare shared memory only through KC_SHARED / KC_SHARED2 /
 * KC_SHARED_DYN and launch only through KC_LAUNCH, so that one source runs
 * on a GPU and in kernels/emu.  Never put host-only logic here.
 */
#ifndef SSMD_KC_DEVICE_CUH
#define SSMD_KC_DEVICE_CUH

#ifdef __CUDACC__
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#else
#include "kernels/emu/cuda_shim.h"
#endif

#include "kernels/cuda/kc_kernels.h"

#ifdef __CUDACC__
#define KC_SHARED(type, name, n) __shared__ type name[n]
#define KC_SHARED2(type, name, n1, n2) __shared__ type name[n1][n2]
#define KC_SHARED_DYN(type, name) extern __shared__ type name[]
#define KC_LAUNCH(kernel, grid, block, smem, stream, ...) \
    kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#else
#define KC_SHARED(type, name, n) type *name = (type *)emu_shared(sizeof(type) * (n), __FILE__, __LINE__)
#define KC_SHARED2(type, name, n1, n2) \
    type(*name)[n2] = (type(*)[n2])emu_shared(sizeof(type) * (n1) * (n2), __FILE__, __LINE__)
#define KC_SHARED_DYN(type, name) type *name = (type *)emu_dyn_shared()
#define KC_LAUNCH(kernel, grid, block, smem, stream, ...) \
    emu_launch(dim3(grid), dim3(block), (smem), (cudaStream_t)(stream), #kernel, kernel, __VA_ARGS__)
#endif

#define KC_FULL_MASK 0xffffffffu
/* Before a loop nvcc must unroll (the emulation build has no use for it). */
#ifdef __CUDACC__
#define KC_UNROLL _Pragma("unroll")
#else
#define KC_UNROLL
#endif

static __device__ __forceinline__ float kc_bf16_to_f32(uint16_t v)
{
    return __uint_as_float((uint32_t)v << 16);
}

/* IEEE half -> float, exact (subnormals, inf, NaN included). */
static __device__ __forceinline__ float kc_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) {
        float v = (float)man * 5.9604644775390625e-8f; /* man * 2^-24 */
        return sign ? -v : v;
    }
    if (exp == 31)
        return __uint_as_float(sign | 0x7f800000u | (man << 13));
    return __uint_as_float(sign | ((exp + 112u) << 23) | (man << 13));
}

/* Element i of a weight array of dtype dt (F32, F16 or BF16: quant.cu
 * reads the block-quantized types) as float. */
static __device__ __forceinline__ float kc_load_w(const void *w, int dt, size_t i)
{
    if (dt == KC_DT_F32)
        return ((const float *)w)[i];
    uint16_t v = ((const uint16_t *)w)[i];
    return dt == KC_DT_F16 ? kc_f16_to_f32(v) : kc_bf16_to_f32(v);
}

/* Elements i..i+3 (i a multiple of 4, row 16- or 8-byte aligned). */
static __device__ __forceinline__ void kc_load_w4(const void *w, int dt, size_t i, float v[4])
{
    if (dt == KC_DT_F32) {
        float4 q = *reinterpret_cast<const float4 *>((const float *)w + i);
        v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
        return;
    }
    uint2 q = *reinterpret_cast<const uint2 *>((const uint16_t *)w + i);
    uint16_t h[4] = {(uint16_t)(q.x & 0xffffu), (uint16_t)(q.x >> 16), (uint16_t)(q.y & 0xffffu),
                     (uint16_t)(q.y >> 16)};
    for (int k = 0; k < 4; k++)
        v[k] = dt == KC_DT_F16 ? kc_f16_to_f32(h[k]) : kc_bf16_to_f32(h[k]);
}

/* As the CPU backend (cpu_math.h): softplus with PyTorch's threshold 20. */
static __device__ __forceinline__ float kc_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
static __device__ __forceinline__ float kc_silu(float x) { return x / (1.0f + expf(-x)); }
/* GELU, exact (erf) and in the tanh approximation (flax's default), as
 * the CPU backend's S4 and S5 ops. */
static __device__ __forceinline__ float kc_gelu(float x)
{
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}
static __device__ __forceinline__ float kc_gelu_tanh(float x)
{
    return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
}

/* Sum over the 32 lanes of a warp; every lane gets the total. */
static __device__ __forceinline__ float kc_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(KC_FULL_MASK, v, o);
    return v;
}

static __device__ __forceinline__ int kc_imin(int a, int b) { return a < b ? a : b; }

/* Row b's state of a decode step, or NULL for a padding row. */
static __device__ __forceinline__ float *kc_slot_state(const kc_slots &at, int b)
{
    return at.slots[b] < 0 ? NULL : at.pool + (size_t)at.slots[b] * at.slot_stride + at.offset;
}

/* Host side of launchers: ceil(a / b), and a block width for n items
 * rounded up to whole warps, at most cap. */
/* The sum of v over the block, in *total once every thread has returned
 * (and read by them after): warp sums, then one value per warp through
 * part (32 floats of shared memory).  Every thread of the block must call
 * it; blockDim.x is a multiple of 32.  The next call may reuse part and
 * total: a thread writes them only after all have passed the first barrier
 * of that call, i.e. read this total. */
static __device__ __forceinline__ void kc_block_sum(float v, float *part, float *total)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = kc_warp_sum(v);
    if (lane == 0)
        part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float w = kc_warp_sum(lane < nwarps ? part[lane] : 0.0f);
        if (lane == 0)
            total[0] = w;
    }
    __syncthreads();
}

static inline unsigned kc_div_up(long a, long b) { return (unsigned)((a + b - 1) / b); }
static inline unsigned kc_warps_for(long n, unsigned cap)
{
    long w = (n + 31) / 32 * 32;
    return w < 32 ? 32u : w > (long)cap ? cap : (unsigned)w;
}

#endif
