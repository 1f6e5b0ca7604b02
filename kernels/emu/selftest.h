/* selftest.h - small kernels that exercise the emulation harness itself
 * (barriers, warp operations, shared memory, strictness checks); see
 * selftest.cu.  C API for tests/kernels/test_emu.c.  Not part of ssmd. */
#ifndef SSMD_KC_SELFTEST_H
#define SSMD_KC_SELFTEST_H

#ifdef __cplusplus
extern "C" {
#endif

/* One block of n threads: io[t] = io[t-1] (io[0] = 0) through shared
 * memory, with or without the __syncthreads between write and read. */
void kc_selftest_shift(float *io, int n, int with_barrier);
/* One warp: out (8, 32) = shfl idx (lane 5), xor 3, up 2, down 7, xor 1 at
 * width 8, ballot(lane odd), any(lane == 17), all(lane < 40) of in (32). */
void kc_selftest_warp(const int *in, int *out);
/* Block (bx, by): ids[t] = linear thread id seen in threadIdx/blockDim,
 * via a block-wide sum in shared memory (checks the built-ins). */
void kc_selftest_builtins(int bx, int by, int gx, int *ids, int *sums);
/* Kernels that break the harness's strictness rules:
 * 0: __syncthreads in a branch taken by half of the block (others return),
 * 1: half a warp shuffles while the other half waits at __syncthreads,
 * 2: a launch with 2048 threads per block,
 * 3: reads shared memory nobody wrote (out[0] gets it),
 * 4: a shuffle with a full mask in a block of 20 threads. */
void kc_selftest_bad(int which, float *out);

#ifdef __cplusplus
}
#endif

#endif
