/* cpu_matmul.c - y = x W^T on the CPU for f32, bf16, f16 and block-quantized
 * (Q8_0, Q4_0, Q4_K, Q6_K, Q5_0) weights.
 *
 * Two paths, both split over the pool's threads by rows of W so that every
 * weight byte is read by exactly one thread once per call:
 *  - few rows of x (decode: one row per sequence): our own kernel
 *    (cpu_gen_matmul.h, at the level of ctx->k) streams a 4-row panel of W
 *    once and multiplies it with a few rows of x at a time from cache.
 *    This is the memory-bound path that decode lives on.  For quantized W,
 *    x is first quantized to int8 blocks once per call (cpu_quant.h) and
 *    the level's qgemv_rows kernel (cpu_gen_qmatmul.h) streams W's blocks.
 *  - many rows of x (prefill): OpenBLAS sgemm per thread on its slice of W
 *    (converted to f32 panel by panel when W is bf16/f16 or dequantised).
 * Accumulation is always f32.  Never allocates on the hot path except the
 * per-thread conversion panels, which are kept.
 */
#include "engine/xalloc.h"
#include "kernels/cpu/cpu_matmul.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tensor.h"

enum {
    ROW_ALIGN = 16,   /* work items are a multiple of this many rows of W */
    CHUNK_ROWS = 64,  /* rows of W per work item on the streaming path */
    PANEL_ROWS = 128, /* rows of W per work item (converted to f32) for sgemm */
};

static inline const void *w_row(const bk_matrix *w, long r)
{
    return (const char *)w->data + (size_t)r * w->row_bytes;
}

/* Rows [r0, r1) of W against all m rows of x through sgemm. */
static void gemm_rows(cpu_matmul_ctx *ctx, int tid, const bk_matrix *w, const float *x, int ldx,
                      int m, float *y, int ldy, const float *bias, long r0, long r1)
{
    const long K = w->cols;
    for (long p = r0; p < r1; p += PANEL_ROWS) {
        long np = r1 - p < PANEL_ROWS ? r1 - p : PANEL_ROWS;
        const float *panel;
        if (w->dtype == ENG_DTYPE_F32) {
            panel = (const float *)w_row(w, p);
        } else {
            float *buf = cpu_matmul_panel(ctx, tid, (size_t)PANEL_ROWS * (size_t)K);
            for (long r = 0; r < np; r++)
                ctx->k->row_to_f32(w_row(w, p + r), w->dtype, K, buf + (size_t)r * K);
            panel = buf;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)np, (int)K, 1.0f, x, ldx,
                    panel, (int)K, 0.0f, y + p, ldy);
        if (bias)
            for (int i = 0; i < m; i++)
                for (long r = 0; r < np; r++)
                    y[(size_t)i * ldy + p + r] += bias[p + r];
    }
}

float *cpu_matmul_panel(cpu_matmul_ctx *ctx, int tid, size_t floats)
{
    if (ctx->panel_floats[tid] < floats) {
        free(ctx->panels[tid]);
        ctx->panels[tid] = xmalloc(floats * sizeof(float)); /* a few hundred KB */
        ctx->panel_floats[tid] = floats;
    }
    return ctx->panels[tid];
}

/* sgemm pays off only for many rows of x (prefill, or a large decode
 * batch), from a number that depends on how fast the level's own kernels
 * are next to OpenBLAS's on the same CPU.  mamba-130m decode, 2 threads,
 * tok/s, sgemm / streaming (int8 for quantized W) in the same run:
 *  - Zen 5, avx512+vnni, OpenBLAS's AVX-512 (SkylakeX) kernels: at 64
 *    rows f32 952 / 927, bf16 793 / 928, Q4_K 840 / 893, Q8_0 770 / 868;
 *    at 96 f32 1073 / 1030, bf16 982 / 1026, Q4_K 1005 / 897: from 80.
 *  - the same machine as an AVX2-only one (avx2-plain, OpenBLAS's
 *    Haswell kernels): at 64 f32 623 / 629, bf16 493 / 587, Q4_K 586 /
 *    734, Q4_0 509 / 674; at 128 f32 583 / 688, bf16 575 / 617, Q4_K 552
 *    / 650; at 192 f32 694 / 659, bf16 610 / 603, Q4_K 581 / 657: from 160.
 *  - earlier, an Intel Xeon, f32: 195 / 210, 215 / 292, 290 / 374 at 8 /
 *    16 / 32 rows, both ~395 at 64.
 * A 512-token prefill takes sgemm at every level (Zen 5 avx512, Q4_K:
 * 1770 tok/s against 1355 streaming).  NEON and the scalar level keep the
 * threshold measured before, unmeasured since. */
int cpu_matmul_blas_min_rows(const cpu_kernels *k)
{
    switch (k->level) {
    case CPU_LEVEL_AVX512: return 80;
    case CPU_LEVEL_AVX2: return 160;
    default: return 48;
    }
}

static int use_blas(const cpu_matmul_ctx *ctx, int m)
{
    return m >= cpu_matmul_blas_min_rows(ctx->k);
}

typedef struct matmul_job {
    cpu_matmul_ctx *ctx;
    const bk_matrix *w;
    const float *x, *bias;
    const cpu_q8_act *xq;  /* x quantized, for quantized W on the streaming path */
    float *y;
    int ldx, ldy, m;
    long chunk_rows;       /* rows of W per work item */
    atomic_long next_row;  /* first row of the next unclaimed item */
} matmul_job;

/* Threads claim chunks of W's rows until none are left: a thread slowed by
 * the machine (these are shared VMs) takes fewer chunks instead of making
 * the others wait at the end of the op. */
static void matmul_worker(void *arg, int tid, int n_threads)
{
    matmul_job *j = arg;
    const long rows = j->w->rows;
    for (;;) {
        long r0 = atomic_fetch_add_explicit(&j->next_row, j->chunk_rows, memory_order_relaxed);
        if (r0 >= rows)
            return;
        long r1 = r0 + j->chunk_rows < rows ? r0 + j->chunk_rows : rows;
        if (use_blas(j->ctx, j->m))
            gemm_rows(j->ctx, tid, j->w, j->x, j->ldx, j->m, j->y, j->ldy, j->bias, r0, r1);
        else
            cpu_matmul_stream_rows(j->ctx->k, j->w, j->x, j->ldx, j->m, j->xq, j->y, j->ldy,
                                   j->bias, r0, r1);
    }
}

const cpu_q8_act *cpu_matmul_quantize_x(cpu_matmul_ctx *ctx, const bk_matrix *w, const float *x,
                                        int ldx, int m)
{
    if (use_blas(ctx, m) || !eng_dtype_info_of(w->dtype)->quantized)
        return NULL;
    cpu_q8_act_reserve(&ctx->act, m, w->cols);
    ctx->k->q8_rows(&ctx->act, x, ldx);
    return &ctx->act;
}

void cpu_matmul_stream_rows(const cpu_kernels *k, const bk_matrix *w, const float *x, int ldx,
                            int m, const cpu_q8_act *xq, float *y, int ldy, const float *bias,
                            long r0, long r1)
{
    if (xq)
        k->qgemv_rows(w, xq, y, ldy, bias, r0, r1);
    else
        k->gemv_rows(w, x, ldx, m, y, ldy, bias, r0, r1);
}

void cpu_matmul(cpu_matmul_ctx *ctx, const bk_matrix *w, const float *x, int ldx, int m, float *y,
                int ldy, const float *bias)
{
    const cpu_q8_act *xq = cpu_matmul_quantize_x(ctx, w, x, ldx, m);
    matmul_job j = {ctx, w, x, bias, xq, y, ldx, ldy, m,
                    use_blas(ctx, m) ? PANEL_ROWS : CHUNK_ROWS, 0};
    /* Small matrices are not worth splitting finer than one item per thread. */
    int n = eng_threadpool_size(ctx->pool);
    if ((long)w->rows < j.chunk_rows * n)
        j.chunk_rows = ((w->rows + n - 1) / n + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
    eng_threadpool_run_sized(ctx->pool, matmul_worker, &j, (double)m * w->rows * w->cols);
}

void cpu_matmul_ctx_close(cpu_matmul_ctx *ctx)
{
    for (int i = 0; i < CPU_MAX_THREADS; i++)
        free(ctx->panels[i]);
    memset(ctx->panels, 0, sizeof ctx->panels);
    cpu_q8_act_free(&ctx->act);
}
