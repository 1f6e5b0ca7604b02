/* cpu_s5.h - CPU ops of the S5 family (see cpu_s5.c); the semantics of
 * each op are those of the same-named slot of bk_s5_ops in backend.h. */
#ifndef SSMD_CPU_S5_H
#define SSMD_CPU_S5_H

#include "engine/backend.h"
#include "kernels/cpu/threadpool.h"

/* Recurrent views: prefill walks time in order (threads split the states,
 * or, for a long input with few states, cpu_s5_scan splits time), step
 * advances a batch of slots one token. */
void cpu_s5_prefill(eng_threadpool *pool, const float *lam, int P, float *state, const float *v,
                    int T, float *xs);
void cpu_s5_step(eng_threadpool *pool, const float *lam, int P, const bk_state_ref *st,
                 const float *v, float *xs);

/* Scan view: the same result as cpu_s5_prefill (states and outputs, up to
 * rounding) by a two-level parallel scan over time chunks of `chunk` steps:
 * every chunk runs from a zero state, the chunk carries are combined in
 * order (carry' = lambda^len carry + local final), and each chunk's outputs
 * get lambda^(k+1) times its incoming carry.  Host scratch of
 * cpu_s5_scan_scratch_floats(P, T, chunk) floats; xs may be v. */
size_t cpu_s5_scan_scratch_floats(int P, int T, int chunk);
void cpu_s5_scan(eng_threadpool *pool, const float *lam, int P, float *state, const float *v,
                 int T, int chunk, float *scratch, float *xs);

/* pre = y + D u, then gelu (tanh or erf form); see bk_s5_ops.skip_act. */
void cpu_s5_skip_act(eng_threadpool *pool, const float *y, const float *u, const float *D, int rows,
                     int H, int gelu_tanh, float *out_pre, int ld_pre, float *out_act, int ld_act);

#endif
