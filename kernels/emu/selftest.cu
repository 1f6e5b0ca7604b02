/* selftest.cu - kernels that check the emulation harness itself: that a
 * missing barrier is visible, that warp operations and built-ins behave as
 * on a GPU, and that the harness's strictness checks fire.  Compiled by nvcc
 * too (cuda-check), so it stays valid CUDA.  Never part of ssmd. */
#include "kernels/emu/selftest.h"
#include "kernels/cuda/kc_device.cuh"

__global__ void k_shift(float *io, int with_barrier)
{
    KC_SHARED(float, s, 1024);
    const int t = threadIdx.x;
    s[t] = io[t];
    if (with_barrier)
        __syncthreads();
    io[t] = t ? s[t - 1] : 0.0f;
}

__global__ void k_warp(const int *in, int *out)
{
    const int l = threadIdx.x, v = in[l];
    out[0 * 32 + l] = __shfl_sync(KC_FULL_MASK, v, 5);
    out[1 * 32 + l] = __shfl_xor_sync(KC_FULL_MASK, v, 3);
    out[2 * 32 + l] = __shfl_up_sync(KC_FULL_MASK, v, 2);
    out[3 * 32 + l] = __shfl_down_sync(KC_FULL_MASK, v, 7);
    out[4 * 32 + l] = __shfl_xor_sync(KC_FULL_MASK, v, 1, 8);
    out[5 * 32 + l] = (int)__ballot_sync(KC_FULL_MASK, l & 1);
    out[6 * 32 + l] = __any_sync(KC_FULL_MASK, l == 17);
    out[7 * 32 + l] = __all_sync(KC_FULL_MASK, l < 40);
}

__global__ void k_builtins(int *ids, int *sums)
{
    KC_SHARED(int, acc, 1);
    const int lin = threadIdx.x + threadIdx.y * blockDim.x;
    const int nt = blockDim.x * blockDim.y, blk = blockIdx.x;
    if (lin == 0)
        acc[0] = 0;
    __syncthreads();
    atomicAdd(&acc[0], lin);
    ids[blk * nt + lin] = lin;
    __syncthreads();
    if (lin == 0)
        sums[blk] = acc[0] + 1000 * (int)gridDim.x;
}

__global__ void k_bad(int which, float *out)
{
    KC_SHARED(float, s, 64);
    const int t = threadIdx.x;
    if (which == 0) {
        if (t < 16)
            __syncthreads();
        return;
    }
    if (which == 1) {
        if ((t & 31) < 16)
            out[t] = __shfl_xor_sync(KC_FULL_MASK, (float)t, 1);
        else
            __syncthreads();
        return;
    }
    if (which == 3) {
        if (t == 0)
            out[0] = s[7];
        return;
    }
    out[t] = __shfl_xor_sync(KC_FULL_MASK, (float)t, 1);
}

extern "C" void kc_selftest_shift(float *io, int n, int with_barrier)
{
    KC_LAUNCH(k_shift, 1, (unsigned)n, 0, (kc_stream)0, io, with_barrier);
}

extern "C" void kc_selftest_warp(const int *in, int *out)
{
    KC_LAUNCH(k_warp, 1, 32, 0, (kc_stream)0, in, out);
}

extern "C" void kc_selftest_builtins(int bx, int by, int gx, int *ids, int *sums)
{
    KC_LAUNCH(k_builtins, (unsigned)gx, dim3((unsigned)bx, (unsigned)by), 0, (kc_stream)0, ids, sums);
}

extern "C" void kc_selftest_bad(int which, float *out)
{
    unsigned threads = which == 2 ? 2048 : which == 4 ? 20 : 64;
    KC_LAUNCH(k_bad, 1, threads, 0, (kc_stream)0, which, out);
}
