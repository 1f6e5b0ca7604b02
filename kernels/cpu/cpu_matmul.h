/* cpu_matmul.h - the CPU backend's matrix multiply (see cpu_matmul.c). */
#ifndef SSMD_CPU_MATMUL_H
#define SSMD_CPU_MATMUL_H

#include <stddef.h>

#include "engine/backend.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/threadpool.h"

#define CPU_MAX_THREADS 256

typedef struct cpu_matmul_ctx {
    eng_threadpool *pool;                 /* borrowed */
    const cpu_kernels *k;                 /* the level's kernels (static) */
    float *panels[CPU_MAX_THREADS];       /* per-thread f32 conversion panel */
    size_t panel_floats[CPU_MAX_THREADS];
    cpu_q8_act act;                       /* x quantized for quantized W (kept) */
} cpu_matmul_ctx;

/* y (m, w->rows; stride ldy) = x (m, w->cols; stride ldx) W^T (+ bias). */
void cpu_matmul(cpu_matmul_ctx *ctx, const bk_matrix *w, const float *x, int ldx, int m, float *y,
                int ldy, const float *bias);
/* Frees the panels and the quantized-x buffers. */
void cpu_matmul_ctx_close(cpu_matmul_ctx *ctx);

/* From how many rows of x on OpenBLAS's sgemm (on W converted to f32
 * panels where it is not f32) beats level k's own kernels, which stream W
 * as it is (cpu_matmul.c says what was measured). */
int cpu_matmul_blas_min_rows(const cpu_kernels *k);

/* Thread tid's conversion panel of at least `floats` floats. */
float *cpu_matmul_panel(cpu_matmul_ctx *ctx, int tid, size_t floats);

#endif
