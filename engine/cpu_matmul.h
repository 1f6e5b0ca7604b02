/* cpu_matmul.h - the CPU backend's matrix multiply (see cpu_matmul.c). */
#ifndef SSMD_CPU_MATMUL_H
#define SSMD_CPU_MATMUL_H

#include <stddef.h>

#include "engine/backend.h"
#include "engine/threadpool.h"

#define CPU_MAX_THREADS 256
/* From this many rows of x on (prefill), OpenBLAS sgemm beats the
 * streaming kernel; decode batches up to the default 64 stay below it. */
#define CPU_MATMUL_BLAS_MIN_ROWS 80

typedef struct cpu_matmul_ctx {
    eng_threadpool *pool;                 /* borrowed */
    float *panels[CPU_MAX_THREADS];       /* per-thread f32 conversion panel */
    size_t panel_floats[CPU_MAX_THREADS];
} cpu_matmul_ctx;

/* y (m, w->rows; stride ldy) = x (m, w->cols; stride ldx) W^T (+ bias). */
void cpu_matmul(cpu_matmul_ctx *ctx, const bk_matrix *w, const float *x, int ldx, int m, float *y,
                int ldy, const float *bias);
/* Frees the panels. */
void cpu_matmul_ctx_close(cpu_matmul_ctx *ctx);

/* Converts n weights of one row (dtype dt) to f32. */
void cpu_row_to_f32(const void *row, eng_dtype dt, long n, float *dst);
/* Thread tid's conversion panel of at least `floats` floats. */
float *cpu_matmul_panel(cpu_matmul_ctx *ctx, int tid, size_t floats);

#endif
