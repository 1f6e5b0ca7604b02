/* cpu_gen_matmul.h - the streaming decode matmul, weight-row conversion and
 * the bandwidth probe's sum, written once on cpu_vec.h's vector type.
 *
 * A template: included by cpu_gen_table.h inside each cpu_isa_*.c, which
 * compiles it for its level; every function is static.  Never include it
 * anywhere else.  Accumulation is f32; weights (f32, f16, bf16) are widened
 * to f32 as they are loaded, so every level computes the same products.
 */
#include "engine/quant.h"
#include "kernels/cpu/cpu_vec.h"

/* Prefetching the next panel pays where a step consumes at least a cache
 * line per row; one-lane code leaves it to the hardware prefetcher. */
#define GEN_PREFETCH (VF_W >= 4)
enum { GEN_PF_BYTES = 4096 }; /* how far ahead of the panel being read, at least */

static inline const void *gen_w_row(const bk_matrix *w, long r)
{
    return (const char *)w->data + (size_t)r * w->row_bytes;
}

/* What a pass over a panel prefetches: `bytes` of the next panel from
 * `lo` (none when bytes is 0). */
typedef struct gen_pf {
    const char *lo;
    long bytes;
} gen_pf;

/* One tile: 4 rows of W (wr) against NI rows of x, KV elements each (a
 * multiple of VF_W), into acc[a][b].  Inlined with NI and dt constants so
 * that acc stays in registers and the weight load has no branch. */
static inline __attribute__((always_inline)) void gen_tile(const void *const wr[4], eng_dtype dt,
                                                           const float *x, int ldx, int NI, long KV,
                                                           vf acc[4][VF_TILE_M], gen_pf pf,
                                                           int PACED)
{
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < NI; b++)
            acc[a][b] = vf_zero();
    /* Unpaced (the whole next panel in this one pass: batch <= VF_TILE_M),
     * the fixed 4 x VF_W weights a step; paced, pf.bytes spread over the
     * steps in 1/256ths of a byte (a counted loop that was 5-9% slower at
     * batch 1, hence the two forms, chosen at compile time). */
    const long esize = dt == ENG_DTYPE_F32 ? 4 : 2, step_bytes = 4 * VF_W * esize;
    const long pace = PACED && pf.bytes > 0 && KV > 0 ? pf.bytes * 256 / (KV / VF_W) : 0;
    long due = 0, sent = 0; /* bytes due by this step (x 256), bytes prefetched */
    for (long k = 0; k < KV; k += VF_W) {
        if (GEN_PREFETCH && !PACED && pf.bytes) {
            for (long off = 0; off < step_bytes; off += 64)
                __builtin_prefetch(pf.lo + k / VF_W * step_bytes + off, 0, 3);
        } else if (GEN_PREFETCH && pace) {
            due += pace;
            for (; sent < due >> 8; sent += 64)
                __builtin_prefetch(pf.lo + sent, 0, 3);
        }
        vf wv[4];
        for (int a = 0; a < 4; a++) {
            wv[a] = vf_load_w(wr[a], dt, k);
            if (NI > 1) /* loaded once for NI uses */
                vf_keep(wv[a]);
        }
        for (int b = 0; b < NI; b++) {
            vf xv = vf_load(x + (size_t)b * ldx + k);
            for (int a = 0; a < 4; a++)
                acc[a][b] = vf_fma(wv[a], xv, acc[a][b]);
        }
    }
}

/* gen_tile for ni rows of x (NI constant in each case). */
static inline __attribute__((always_inline)) void gen_tile_pass(const void *const wr[4], eng_dtype dt,
                                                                const float *x, int ldx, int ni,
                                                                long KV, vf acc[4][VF_TILE_M],
                                                                gen_pf pf, int PACED)
{
    switch (ni) {
    case 1: gen_tile(wr, dt, x, ldx, 1, KV, acc, pf, PACED); break;
#if VF_TILE_M >= 4
    case 2: gen_tile(wr, dt, x, ldx, 2, KV, acc, pf, PACED); break;
    case 3: gen_tile(wr, dt, x, ldx, 3, KV, acc, pf, PACED); break;
#endif
    default: gen_tile(wr, dt, x, ldx, VF_TILE_M, KV, acc, pf, PACED); break;
    }
}

/* Rows [r0, r1) of W (dtype dt, a constant after inlining) against rows
 * [0, m) of x.  Each 4-row panel of W is read from memory once and kept in
 * L1 while it meets every row of x, VF_TILE_M at a time.  Meanwhile the
 * next panel (the 4 rows after these, contiguous) is prefetched, a share
 * of it in each pass at the pace the pass runs: prefetched all in the
 * first pass, as it once was, the memory idled through the other passes
 * while that first one stalled on the line fill buffers (130m f32 decode
 * B=16 at level avx2: prefetches took 14% of the kernel's samples). */
static inline __attribute__((always_inline)) void gen_gemv_dt(const bk_matrix *w, eng_dtype dt,
                                                              const float *x, int ldx, int m,
                                                              float *y, int ldy, const float *bias,
                                                              long r0, long r1)
{
    const long K = w->cols, KV = K / VF_W * VF_W;
    /* The panel prefetched is `ahead` panels on: at least GEN_PF_BYTES, or
     * short rows (dt_proj's 48 f32 columns: 768 bytes a panel) wait for
     * memory at every panel.  Those reach past r1 into the next work item
     * (the same stream); one panel ahead stops at r1 as it always did, the
     * next item of long rows being as likely another thread's.  The first
     * `ahead` panels are prefetched up front. */
    const long panel_bytes = 4 * w->row_bytes;
    const long ahead = panel_bytes >= GEN_PF_BYTES ? 1 : (GEN_PF_BYTES + panel_bytes - 1) / panel_bytes;
    if (GEN_PREFETCH && ahead > 1 && r0 + 4 < w->rows) {
        const long end = r0 + 4 * ahead < w->rows ? r0 + 4 * ahead : w->rows;
        for (long o = 0; o < (end - r0 - 4) * (long)w->row_bytes; o += 64)
            __builtin_prefetch((const char *)gen_w_row(w, r0 + 4) + o, 0, 3);
    }
    long r = r0;
    for (; r + 4 <= r1; r += 4) {
        const void *const wr[4] = {gen_w_row(w, r), gen_w_row(w, r + 1), gen_w_row(w, r + 2),
                                   gen_w_row(w, r + 3)};
        const int npass = (m + VF_TILE_M - 1) / VF_TILE_M;
        const long pr = r + 4 * ahead; /* the panel to prefetch */
        const char *next = pr + 4 <= w->rows && (ahead > 1 || pr + 4 <= r1)
                               ? (const char *)gen_w_row(w, pr)
                               : NULL;
        for (int i0 = 0; i0 < m; i0 += VF_TILE_M) {
            int ni = m - i0 < VF_TILE_M ? m - i0 : VF_TILE_M;
            const float *xi = x + (size_t)i0 * ldx;
            vf acc[4][VF_TILE_M];
            const int pass = i0 / VF_TILE_M;
            const long lo = panel_bytes * pass / npass, hi = panel_bytes * (pass + 1) / npass;
            const gen_pf pf = {next ? next + lo : NULL, next ? hi - lo : 0};
            if (npass == 1)
                gen_tile_pass(wr, dt, xi, ldx, ni, KV, acc, pf, 0);
            else
                gen_tile_pass(wr, dt, xi, ldx, ni, KV, acc, pf, 1);
            for (int b = 0; b < ni; b++) {
                const float *xr = xi + (size_t)b * ldx;
                float sum[4]; /* reduced together: on short rows (dt_proj's 48
                                 columns) four separate sums cost more than the FMAs */
                vf_hsum4(acc[0][b], acc[1][b], acc[2][b], acc[3][b], sum);
                for (int a = 0; a < 4; a++) {
                    float s = sum[a];
                    for (long k = KV; k < K; k++)
                        s += vf_load_w1(wr[a], dt, k) * xr[k];
                    y[(size_t)(i0 + b) * ldy + r + a] = s + (bias ? bias[r + a] : 0.0f);
                }
            }
        }
    }
    /* the last rows (fewer than 4) one at a time */
    for (; r < r1; r++) {
        const void *wr = gen_w_row(w, r);
        for (int i = 0; i < m; i++) {
            const float *xr = x + (size_t)i * ldx;
            vf acc = vf_zero();
            for (long k = 0; k < KV; k += VF_W)
                acc = vf_fma(vf_load_w(wr, dt, k), vf_load(xr + k), acc);
            float s = vf_hsum(acc);
            for (long k = KV; k < K; k++)
                s += vf_load_w1(wr, dt, k) * xr[k];
            y[(size_t)i * ldy + r] = s + (bias ? bias[r] : 0.0f);
        }
    }
}

static void gen_gemv_rows(const bk_matrix *w, const float *x, int ldx, int m, float *y, int ldy,
                          const float *bias, long r0, long r1)
{
    switch (w->dtype) {
    case ENG_DTYPE_F32: gen_gemv_dt(w, ENG_DTYPE_F32, x, ldx, m, y, ldy, bias, r0, r1); break;
    case ENG_DTYPE_F16: gen_gemv_dt(w, ENG_DTYPE_F16, x, ldx, m, y, ldy, bias, r0, r1); break;
    default: gen_gemv_dt(w, ENG_DTYPE_BF16, x, ldx, m, y, ldy, bias, r0, r1); break;
    }
}

static void gen_row_to_f32(const void *row, eng_dtype dt, long n, float *dst)
{
    if (eng_dtype_info_of(dt)->quantized) { /* prefill's panels, embeddings: not per token */
        eng_quant_dequant(dt, row, n, dst);
        return;
    }
    long k = 0;
    for (; k + VF_W <= n; k += VF_W)
        vf_store(dst + k, vf_load_w(row, dt, k));
    for (; k < n; k++)
        dst[k] = vf_load_w1(row, dt, k);
}

/* Four independent sums so that the adds overlap; memory is the limit. */
static double gen_sum(const float *p, long n)
{
    vf a0 = vf_zero(), a1 = a0, a2 = a0, a3 = a0;
    long i = 0;
    for (; i + 4 * VF_W <= n; i += 4 * VF_W) {
        a0 = vf_add(a0, vf_load(p + i));
        a1 = vf_add(a1, vf_load(p + i + VF_W));
        a2 = vf_add(a2, vf_load(p + i + 2 * VF_W));
        a3 = vf_add(a3, vf_load(p + i + 3 * VF_W));
    }
    double s = vf_hsum(vf_add(vf_add(a0, a1), vf_add(a2, a3)));
    for (; i < n; i++)
        s += p[i];
    return s;
}
