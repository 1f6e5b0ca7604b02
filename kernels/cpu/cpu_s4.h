/* cpu_s4.h - CPU ops of the S4 / S4D family (see cpu_s4.c); the semantics
 * of each op are those of the same-named slot in backend.h. */
#ifndef SSMD_CPU_S4_H
#define SSMD_CPU_S4_H

#include "engine/backend.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/threadpool.h"

/* DPLR rank above this is rejected at load (the step keeps rank x 16
 * partial sums on the stack). */
#define CPU_S4_MAX_RANK 16
/* Channels per vector group, and slots per decode work item. */
enum { CPU_S4_GROUP = 16, CPU_S4_STEP_SLOTS = 32 };

void cpu_glu(eng_threadpool *pool, const float *x, int n, int dim, float *out);

/* Recurrent views: prefill walks time in order (threads split channels;
 * a diagonal layer with too few channels for the threads and a long input
 * goes through cpu_s4_scan instead, with malloc'd host scratch), step
 * advances a batch of slots one token.  k: the kernel level to run
 * (cpu_kernels_choose). */
void cpu_s4_prefill(const cpu_kernels *k, eng_threadpool *pool, const bk_s4_layer *l, float *state,
                    const float *u, int T, float *y);
void cpu_s4_step(const cpu_kernels *k, eng_threadpool *pool, const bk_s4_layer *l,
                 const bk_state_ref *st, const float *u, float *y);

/* Scan view (diagonal layers only): the same result as cpu_s4_prefill by a
 * two-level parallel scan over time chunks of `chunk` steps: chunks run
 * from a zero state in parallel, the carries are combined (dA^len), and each
 * chunk's outputs are corrected by its incoming carry.  scratch: at least
 * cpu_s4_scan_scratch_floats(l, T, chunk) floats of host memory. */
size_t cpu_s4_scan_scratch_floats(const bk_s4_layer *l, int T, int chunk);
void cpu_s4_scan(const cpu_kernels *k, eng_threadpool *pool, const bk_s4_layer *l, float *state,
                 const float *u, int T, int chunk, float *scratch, float *y);

/* Convolution view, from a zero state: K (L, H), K_l = Re sum_n dC_n
 * (dA^l dB)_n (the SSM's impulse response; the DPLR form is stepped), and
 * y (T, H) = gelu(sum_{j<=t} K_j u_{t-j} + D u_t) by direct causal
 * convolution.  Only tests call these (they check that the recurrent and
 * convolutional views agree); O(T^2 H), not a serving path. */
void cpu_s4_kernel(const cpu_kernels *k, const bk_s4_layer *l, int L, float *K);
void cpu_s4_conv(const bk_s4_layer *l, const float *K, const float *u, int T, float *y);

#endif
