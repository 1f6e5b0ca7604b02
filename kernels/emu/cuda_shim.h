/* cuda_shim.h - the CUDA C++ surface our kernels use, for compiling the very
 * same kernels/NAME.cu sources as ordinary C++ on the host (kernels/emu).
 *
 * Built-ins (threadIdx, blockIdx, ...) read the emulated thread that runs
 * now; __syncthreads() and every warp operation are real synchronisation
 * points between emulated threads (see emu.cpp: one fiber per CUDA thread,
 * a seeded shuffle of the order in which they run between barriers).
 * Shared memory is declared through KC_SHARED* (kc_device.cuh), never
 * __shared__, so the harness can give each block fresh, garbage-filled,
 * ASan-guarded storage.  Never include this from nvcc builds.
 */
#ifndef SSMD_CUDA_SHIM_H
#define SSMD_CUDA_SHIM_H

#ifdef __CUDACC__
#error "kernels/emu/cuda_shim.h is for the CPU emulation build only"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/emu/emu.h"

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3 {
    unsigned x, y, z;
};
/* Vector types: kernels load through them; UBSan checks their alignment. */
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
typedef struct CUstream_st *cudaStream_t;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict

/* The emulated CUDA thread that runs now (valid only inside a launch). */
struct emu_builtins {
    uint3 thread_idx, block_idx;
    dim3 block_dim, grid_dim;
};
emu_builtins *emu_self(void);

#define threadIdx (emu_self()->thread_idx)
#define blockIdx (emu_self()->block_idx)
#define blockDim (emu_self()->block_dim)
#define gridDim (emu_self()->grid_dim)
#define warpSize 32

/* ---- synchronisation ---------------------------------------------------- */

void emu_syncthreads(const char *file, int line);
#define __syncthreads() emu_syncthreads(__FILE__, __LINE__)

/* Every lane named in mask stores `mine`, waits for all of them, and gets a
 * snapshot of the 32 lanes' values (valid until its next warp operation). */
const uint64_t *emu_warp_exchange(unsigned mask, uint64_t mine);
unsigned emu_lane(void);

inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)emu_warp_exchange(mask, 0); }

template <typename T> inline uint64_t emu_bits(T v)
{
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 64 bits");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    return b;
}
template <typename T> inline T emu_from_bits(uint64_t b)
{
    T v;
    memcpy(&v, &b, sizeof v);
    return v;
}

/* Lane `src` of this lane's width-segment; out-of-segment reads return the
 * caller's own value, as CUDA documents for up/down/xor. */
template <typename T> inline T emu_shfl(unsigned mask, T v, int src, int width, int own_if_outside)
{
    unsigned lane = emu_lane();
    unsigned seg = lane & ~(unsigned)(width - 1);
    const uint64_t *all = emu_warp_exchange(mask, emu_bits(v));
    if (own_if_outside && (src < (int)seg || src >= (int)(seg + width)))
        return v;
    unsigned from = own_if_outside ? (unsigned)src : seg + ((unsigned)src & (unsigned)(width - 1));
    if (!(mask & (1u << from)))
        emu_fail("shuffle reads lane %u, which is not in the mask 0x%08x", from, mask);
    return emu_from_bits<T>(all[from]);
}
template <typename T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32)
{
    return emu_shfl(mask, v, src, width, 0);
}
template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32)
{
    return emu_shfl(mask, v, (int)(emu_lane() ^ (unsigned)lane_mask), width, 1);
}
template <typename T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    return emu_shfl(mask, v, (int)(emu_lane() + delta), width, 1);
}
template <typename T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    return emu_shfl(mask, v, (int)emu_lane() - (int)delta, width, 1);
}

inline unsigned __ballot_sync(unsigned mask, int pred)
{
    const uint64_t *all = emu_warp_exchange(mask, pred != 0);
    unsigned r = 0;
    for (unsigned l = 0; l < 32; l++)
        if ((mask & (1u << l)) && all[l])
            r |= 1u << l;
    return r;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }

/* Atomics: emulated threads of a block never run at the same time and blocks
 * run one after another, so a plain read-modify-write is atomic here. */
inline float atomicAdd(float *p, float v) { float o = *p; *p = o + v; return o; }
inline int atomicAdd(int *p, int v) { int o = *p; *p = o + v; return o; }
inline unsigned atomicAdd(unsigned *p, unsigned v) { unsigned o = *p; *p = o + v; return o; }
inline int atomicMax(int *p, int v) { int o = *p; if (v > o) *p = v; return o; }
inline int atomicMin(int *p, int v) { int o = *p; if (v < o) *p = v; return o; }
inline int atomicExch(int *p, int v) { int o = *p; *p = v; return o; }
inline int atomicCAS(int *p, int cmp, int v) { int o = *p; if (o == cmp) *p = v; return o; }

/* ---- math and memory intrinsics ------------------------------------------ */

template <typename T> inline T __ldg(const T *p) { return *p; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline unsigned __float_as_uint(float f) { return emu_from_bits<unsigned>(emu_bits(f)); }
inline float __uint_as_float(unsigned u) { return emu_from_bits<float>(emu_bits(u)); }
inline int __float_as_int(float f) { return emu_from_bits<int>(emu_bits(f)); }
inline float __int_as_float(int i) { return emu_from_bits<float>(emu_bits(i)); }

/* ---- shared memory and launches ------------------------------------------ */

/* The k-th KC_SHARED declaration a thread reaches in its block: the same
 * fresh allocation for every thread of the block. */
void *emu_shared(size_t bytes, const char *file, int line);
/* The launch's dynamic shared memory (its size is the launch's smem). */
void *emu_dyn_shared(void);

void emu_launch_raw(dim3 grid, dim3 block, size_t smem, const char *name, void (*fn)(void *),
                    void *arg);

/* When set (by the CUDA runtime mock), launches are handed over instead of
 * run: the hook owns fn/arg (free it with del) and runs it in stream order. */
typedef void (*emu_launch_hook_fn)(cudaStream_t s, dim3 grid, dim3 block, size_t smem,
                                   const char *name, void (*fn)(void *), void *arg,
                                   void (*del)(void *));
extern emu_launch_hook_fn emu_launch_hook;

/* A launch: the arguments are copied now, as CUDA copies kernel parameters
 * at launch, and the kernel runs now or when the hook's stream gets to it. */
template <typename K, typename... A>
inline void emu_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t s, const char *name, K kernel,
                       A... args)
{
    auto call = [=]() { kernel(args...); };
    typedef decltype(call) F;
    void (*run)(void *) = [](void *p) { (*static_cast<F *>(p))(); };
    if (emu_launch_hook) {
        emu_launch_hook(s, grid, block, smem, name, run, new F(call),
                        [](void *p) { delete static_cast<F *>(p); });
        return;
    }
    emu_launch_raw(grid, block, smem, name, run, &call);
}

#endif
