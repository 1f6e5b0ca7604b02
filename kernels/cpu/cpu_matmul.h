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

/* The two halves of cpu_matmul's streaming path (below the threshold),
 * for an op that runs rows of W inside its own threads (cpu_ssm.c's
 * scan_step_dt) and must give the bits cpu_matmul gives:
 * cpu_matmul_quantize_x quantizes x into ctx's buffer where W is
 * block-quantized and m takes that path (NULL otherwise: x is used as it
 * is), once per call; cpu_matmul_stream_rows computes rows [r0, r1) of y
 * with level k's kernel, a row alike in any range of rows. */
const cpu_q8_act *cpu_matmul_quantize_x(cpu_matmul_ctx *ctx, const bk_matrix *w, const float *x,
                                        int ldx, int m);
void cpu_matmul_stream_rows(const cpu_kernels *k, const bk_matrix *w, const float *x, int ldx,
                            int m, const cpu_q8_act *xq, float *y, int ldy, const float *bias,
                            long r0, long r1);

/* Thread tid's conversion panel of at least `floats` floats. */
float *cpu_matmul_panel(cpu_matmul_ctx *ctx, int tid, size_t floats);

#endif
