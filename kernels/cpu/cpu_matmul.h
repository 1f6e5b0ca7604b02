/* cpu_matmul.h - the CPU backend's matrix multiply (see cpu_matmul.c). */
#ifndef SSMD_CPU_MATMUL_H
#define SSMD_CPU_MATMUL_H

#include <stddef.h>

#include "engine/backend.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/threadpool.h"

#define CPU_MAX_THREADS 256
/* From this many rows of x on, OpenBLAS sgemm beats the streaming kernel
 * (measured at 16 and 64 rows for bf16/f16, whose panels sgemm needs
 * converted first).  f32 weights, which sgemm reads as they are, once
 * switched at 8 rows (20% faster at 16 on Zen 4), but sgemm packs every
 * panel of W it is given, which at decode's few rows costs more than the
 * products: on an Intel Xeon, mamba-130m f32 decode with 2 threads ran
 * 195 / 215 / 290 tok/s at 8 / 16 / 32 rows through sgemm against 210 /
 * 292 / 374 through the streaming kernel, and both ~395 at 64. */
#define CPU_MATMUL_BLAS_MIN_ROWS 48

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

/* Thread tid's conversion panel of at least `floats` floats. */
float *cpu_matmul_panel(cpu_matmul_ctx *ctx, int tid, size_t floats);

#endif
