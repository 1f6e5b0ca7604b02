/* cpu_norm.h - residual add fused with RMSNorm (Mamba) or LayerNorm (S4)
 * on the CPU. */
#ifndef SSMD_CPU_NORM_H
#define SSMD_CPU_NORM_H

#include "kernels/cpu/threadpool.h"

typedef enum cpu_norm_kind {
    CPU_NORM_RMS = 0,   /* x * rsqrt(mean(x^2) + eps) * weight */
    CPU_NORM_LAYER,     /* (x - mean) * rsqrt(var + eps) * weight + bias */
} cpu_norm_kind;

/* resid (n, dim) += add (when not NULL); out = norm(resid).  bias is used
 * by CPU_NORM_LAYER only.  Rows are split over the pool when there are
 * enough of them. */
void cpu_add_norm(eng_threadpool *pool, cpu_norm_kind kind, float *resid, const float *add,
                  const float *weight, const float *bias, float eps, int n, int dim, float *out);

/* Each of n rows of x (dim values, row stride ld) scaled in place to unit
 * RMS (no weight).  Small: runs on the caller. */
void cpu_rms_rows(float *x, long ld, int n, int dim, float eps);

#endif
