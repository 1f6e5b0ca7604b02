/* cpu_matmul.c - y = x W^T on the CPU for f32, bf16 and f16 weights.
 *
 * Two paths, both split over the pool's threads by rows of W so that every
 * weight byte is read by exactly one thread once per call:
 *  - few rows of x (decode: one row per sequence): our own kernel streams
 *    a 4-row panel of W once and multiplies it with up to 4 rows of x at a
 *    time from cache.  This is the memory-bound path that decode lives on.
 *  - many rows of x (prefill): OpenBLAS sgemm per thread on its slice of W
 *    (converted to f32 panel by panel when W is bf16/f16).
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

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

enum {
    ROW_ALIGN = 16,   /* work items are a multiple of this many rows of W */
    CHUNK_ROWS = 64,  /* rows of W per work item on the streaming path */
    PANEL_ROWS = 128, /* rows of W per work item (converted to f32) for sgemm */
};

/* Loads 16 weights starting at element k of a row as f32. */
#if defined(__AVX512F__)
static inline __m512 load_w16(const void *row, eng_dtype dt, long k)
{
    if (dt == ENG_DTYPE_F32)
        return _mm512_loadu_ps((const float *)row + k);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k));
    if (dt == ENG_DTYPE_F16)
        return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
#endif

static inline float load_w1(const void *row, eng_dtype dt, long k)
{
    switch (dt) {
    case ENG_DTYPE_F32: return ((const float *)row)[k];
    case ENG_DTYPE_F16: return eng_f16_to_f32(((const uint16_t *)row)[k]);
    default: return eng_bf16_to_f32(((const uint16_t *)row)[k]);
    }
}

static inline const void *w_row(const bk_matrix *w, long r)
{
    return (const char *)w->data + (size_t)r * w->row_bytes;
}

#if defined(__AVX512F__)
/* One tile: 4 rows of W (wr) against NI rows of x, K16 elements each, into
 * acc[a][b].  Inlined with NI a constant so acc stays in registers. */
static inline __attribute__((always_inline)) void tile4(const void *const wr[4], eng_dtype dt,
                                                        const float *x, int ldx, int NI, long K16,
                                                        __m512 acc[4][4], const char *next)
{
    const long esize = dt == ENG_DTYPE_F32 ? 4 : 2;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < NI; b++)
            acc[a][b] = _mm512_setzero_ps();
    for (long k = 0; k < K16; k += 16) {
        /* Prefetch the next panel (the 4 rows after these, contiguous) at
         * the pace this one is consumed: 4 x 16 weights per step. */
        if (next) {
            const char *p = next + 4 * k * esize;
            for (long off = 0; off < 4 * 16 * esize; off += 64)
                _mm_prefetch(p + off, _MM_HINT_T0);
        }
        __m512 wv[4];
        for (int a = 0; a < 4; a++)
            wv[a] = load_w16(wr[a], dt, k);
        for (int b = 0; b < NI; b++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)b * ldx + k);
            for (int a = 0; a < 4; a++)
                acc[a][b] = _mm512_fmadd_ps(wv[a], xv, acc[a][b]);
        }
    }
}
#endif

/* Rows [r0, r1) of W against rows [0, m) of x: the decode kernel.  Each
 * 4-row panel of W is read from memory once and kept in L1 while it meets
 * every row of x, four at a time. */
static void gemv_rows(const bk_matrix *w, const float *x, int ldx, int m, float *y, int ldy,
                      const float *bias, long r0, long r1)
{
    const long K = w->cols;
    const eng_dtype dt = w->dtype;
    long r = r0;
#if defined(__AVX512F__)
    const long K16 = K & ~15L;
    for (; r + 4 <= r1; r += 4) {
        const void *const wr[4] = {w_row(w, r), w_row(w, r + 1), w_row(w, r + 2), w_row(w, r + 3)};
        for (int i0 = 0; i0 < m; i0 += 4) {
            int ni = m - i0 < 4 ? m - i0 : 4;
            const float *xi = x + (size_t)i0 * ldx;
            __m512 acc[4][4];
            /* only the first pass over the panel prefetches the next one */
            const char *next = i0 == 0 && r + 8 <= r1 ? (const char *)w_row(w, r + 4) : NULL;
            switch (ni) {
            case 1: tile4(wr, dt, xi, ldx, 1, K16, acc, next); break;
            case 2: tile4(wr, dt, xi, ldx, 2, K16, acc, next); break;
            case 3: tile4(wr, dt, xi, ldx, 3, K16, acc, next); break;
            default: tile4(wr, dt, xi, ldx, 4, K16, acc, next); break;
            }
            for (int b = 0; b < ni; b++) {
                const float *xr = xi + (size_t)b * ldx;
                for (int a = 0; a < 4; a++) {
                    float s = _mm512_reduce_add_ps(acc[a][b]);
                    for (long k = K16; k < K; k++)
                        s += load_w1(wr[a], dt, k) * xr[k];
                    y[(size_t)(i0 + b) * ldy + r + a] = s + (bias ? bias[r + a] : 0.0f);
                }
            }
        }
    }
#endif
    for (; r < r1; r++) {
        const void *wr = w_row(w, r);
        for (int i = 0; i < m; i++) {
            const float *xr = x + (size_t)i * ldx;
            float s = 0.0f;
            for (long k = 0; k < K; k++)
                s += load_w1(wr, dt, k) * xr[k];
            y[(size_t)i * ldy + r] = s + (bias ? bias[r] : 0.0f);
        }
    }
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
                cpu_row_to_f32(w_row(w, p + r), w->dtype, K, buf + (size_t)r * K);
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

void cpu_row_to_f32(const void *row, eng_dtype dt, long n, float *dst)
{
    long k = 0;
#if defined(__AVX512F__)
    for (; k + 16 <= n; k += 16)
        _mm512_storeu_ps(dst + k, load_w16(row, dt, k));
#endif
    for (; k < n; k++)
        dst[k] = load_w1(row, dt, k);
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

/* sgemm pays off from a few rows of x for f32 weights; bf16/f16 weights
 * must first be converted panel by panel, which only pays off for many. */
static int use_blas(const bk_matrix *w, int m)
{
    return m >= (w->dtype == ENG_DTYPE_F32 ? CPU_MATMUL_BLAS_MIN_ROWS_F32 : CPU_MATMUL_BLAS_MIN_ROWS);
}

typedef struct matmul_job {
    cpu_matmul_ctx *ctx;
    const bk_matrix *w;
    const float *x, *bias;
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
        if (use_blas(j->w, j->m))
            gemm_rows(j->ctx, tid, j->w, j->x, j->ldx, j->m, j->y, j->ldy, j->bias, r0, r1);
        else
            gemv_rows(j->w, j->x, j->ldx, j->m, j->y, j->ldy, j->bias, r0, r1);
    }
}

void cpu_matmul(cpu_matmul_ctx *ctx, const bk_matrix *w, const float *x, int ldx, int m, float *y,
                int ldy, const float *bias)
{
    matmul_job j = {ctx, w, x, bias, y, ldx, ldy, m,
                    use_blas(w, m) ? PANEL_ROWS : CHUNK_ROWS, 0};
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
}
