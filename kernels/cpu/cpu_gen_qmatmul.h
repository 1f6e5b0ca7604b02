/* cpu_gen_qmatmul.h - the decode matmul for block-quantized weights (Q8_0,
 * Q4_0, Q4_K, Q6_K, Q5_0), written once on cpu_vec_int8.h's int8 dot
 * products.
 *
 * A template like cpu_gen_matmul.h: included by cpu_gen_table.h inside
 * each cpu_isa_*.c, every function static; never include it elsewhere.
 *
 * Numerics: x arrives quantized to int8 blocks of 32 with an f32 scale
 * (cpu_quant.h).  Each 32 weights are unpacked to int8 (Q8_0's already
 * are), multiplied by x's int8 block exactly in integers, and the sum is
 * scaled by the weight block's scale(s) times x's scale and added to an
 * f32 accumulator; Q4_0's offset (8 * d * sum(x)) and Q4_K's mins (dmin *
 * min * dx * sum(x's q)) are summed apart and taken off at the end.  So
 * the only rounding beyond f32 accumulation is x's 8 bits.
 *
 * Shape: a row is walked in groups of 8 blocks (256 weights: one K-quant
 * super-block).  At batch 1 the kernel is bound by instructions, not by
 * the ~0.56-1.06 bytes per weight it streams, and the per-block scalar
 * work (f16 scale, scale products, offsets, Q4_K's 6-bit scales) cost as
 * much as the dot products: so a group's scales are computed together in
 * 8-lane vectors (vq8f), and the dot products then take two blocks per
 * step (vq2: one 512-bit step on AVX-512, two 256-bit ones elsewhere).
 */
#include "engine/quant.h"
#include "kernels/cpu/cpu_quant.h"
#include "kernels/cpu/cpu_vec.h"
#include "kernels/cpu/cpu_vec_int8.h"

enum {
    GEN_QT = 4,    /* rows of x per pass over a row of W */
    GEN_QG = 8,    /* blocks of 32 per group */
    GEN_QS = 16    /* scale products per group and row of x: Q6_K's one per 16 */
};

/* Rows [i0, i0 + NI) of the quantized activations, each at one group. */
typedef struct gen_xrows {
    const int8_t *q[GEN_QT];               /* the group's 256 values */
    const float *d[GEN_QT], *dsum[GEN_QT]; /* its 8 blocks' scales and d * sum(q) */
} gen_xrows;

/* x moved on by j blocks. */
static inline __attribute__((always_inline)) gen_xrows gen_xrows_at(const gen_xrows *x, long j,
                                                                    int NI)
{
    gen_xrows r = {0};
    for (int b = 0; b < NI; b++) {
        r.q[b] = x->q[b] + j * CPU_Q8_BLOCK;
        r.d[b] = x->d[b] + j;
        r.dsum[b] = x->dsum[b] + j;
    }
    return r;
}

/* The scale products of the group at blk (dtype dt, bytes per block for
 * the 32-weight types) with each row of x into s[b]: one per block
 * (s[b][0..7]), or for Q6_K one per 16 weights (s[b][0..15]).  The
 * offsets that Q4_0 and Q4_K subtract, per unit of x's dsum, add to off. */
static inline __attribute__((always_inline)) void gen_group_scales(const uint8_t *blk, eng_dtype dt,
                                                                   long bytes, const gen_xrows *x,
                                                                   int NI, float s[][GEN_QS],
                                                                   vq8f off[GEN_QT])
{
    if (dt == ENG_DTYPE_Q6_K) { /* scale k goes with x's block k / 2 */
        const vq8f d = vq8f_set1(vq_f16(blk + 208));
        const vq8f lo = vq8f_mul(d, vq8f_i8((const int8_t *)blk + 192));
        const vq8f hi = vq8f_mul(d, vq8f_i8((const int8_t *)blk + 200));
        for (int b = 0; b < NI; b++) {
            vq8f_store(s[b], vq8f_mul(lo, vq8f_dup2(x->d[b])));
            vq8f_store(s[b] + 8, vq8f_mul(hi, vq8f_dup2(x->d[b] + 4)));
        }
        return;
    }
    vq8f ws, wm = vq8f_zero(); /* the 8 blocks' scales and offsets */
    if (dt == ENG_DTYPE_Q4_K) {
        uint8_t sc[8], mn[8];
        eng_q4k_scales_mins(blk + 4, sc, mn);
        ws = vq8f_mul(vq8f_set1(vq_f16(blk)), vq8f_u8(sc));
        wm = vq8f_mul(vq8f_set1(vq_f16(blk + 2)), vq8f_u8(mn));
    } else {
        ws = vq8f_f16s(blk, bytes);
        if (dt == ENG_DTYPE_Q4_0) /* sum (q - 8) x = sum q x - 8 sum x */
            wm = vq8f_mul(ws, vq8f_set1(8.0f));
    }
    for (int b = 0; b < NI; b++) {
        vq8f_store(s[b], vq8f_mul(ws, vq8f_load(x->d[b])));
        if (dt == ENG_DTYPE_Q4_0 || dt == ENG_DTYPE_Q4_K)
            off[b] = vq8f_fma(wm, vq8f_load(x->dsum[b]), off[b]);
    }
}

/* Blocks 2p and 2p + 1 of the group at blk as int8: Q4_0's and Q4_K's
 * without their offset (0..15), the others signed. */
static inline __attribute__((always_inline)) vq8x2 gen_group_pair(const uint8_t *blk, eng_dtype dt,
                                                                  long bytes, int p)
{
    const uint8_t *b0 = blk + 2 * p * bytes, *b1 = b0 + bytes;
    switch (dt) {
    case ENG_DTYPE_Q4_K: return vq8x2_q4k(blk, 2 * p);
    case ENG_DTYPE_Q6_K: return vq8x2_q6k(blk, 2 * p);
    case ENG_DTYPE_Q4_0: return vq8x2_q4_0u(b0, b1);
    case ENG_DTYPE_Q5_0: { /* small tensors only (ssm_dt): unpacked in C */
        int8_t g[2 * CPU_Q8_BLOCK];
        eng_q5_0_group(b0, g);
        eng_q5_0_group(b1, g + CPU_Q8_BLOCK);
        return vq8x2_load(g, g + CPU_Q8_BLOCK);
    }
    default: return vq8x2_load(b0 + 2, b1 + 2);
    }
}

/* The group at blk (weights from blk, x from x) against NI rows of x,
 * into acc and off.  A pair of blocks is unpacked once for all NI rows. */
static inline __attribute__((always_inline)) void gen_group(const uint8_t *blk, eng_dtype dt,
                                                            long bytes, const gen_xrows *x, int NI,
                                                            vq2 acc[GEN_QT], vq8f off[GEN_QT])
{
    float s[GEN_QT][GEN_QS];
    gen_group_scales(blk, dt, bytes, x, NI, s, off);
#pragma GCC unroll 4 /* each pair's offsets and shift counts constant */
    for (int p = 0; p < GEN_QG / 2; p++) {
        const vq8x2 w = gen_group_pair(blk, dt, bytes, p);
        for (int b = 0; b < NI; b++) {
            const int8_t *xq = x->q[b] + 2 * p * CPU_Q8_BLOCK;
            if (dt == ENG_DTYPE_Q6_K)
                acc[b] = vq2_dot16(acc[b], w, xq, s[b] + 4 * p);
            else if (dt == ENG_DTYPE_Q4_0 || dt == ENG_DTYPE_Q4_K)
                acc[b] = vq2_dotu(acc[b], w, xq, s[b] + 2 * p);
            else
                acc[b] = vq2_dot(acc[b], w, xq, s[b] + 2 * p);
        }
    }
}

/* The last n < 8 blocks of a Q8_0 / Q4_0 / Q5_0 row: copied into a group
 * padded with zero blocks (scale 0: they add nothing) and zero x, so that
 * they take the same code.  Only rows that are not a multiple of 256
 * weights come here. */
static inline __attribute__((always_inline)) void gen_group_tail(const uint8_t *blk, eng_dtype dt,
                                                                 long bytes, int n,
                                                                 const gen_xrows *x, int NI,
                                                                 vq2 acc[GEN_QT], vq8f off[GEN_QT])
{
    uint8_t w[GEN_QG * ENG_Q8_0_BYTES] = {0}; /* Q8_0's blocks are the largest */
    int8_t q[GEN_QT][GEN_QG * CPU_Q8_BLOCK] = {{0}};
    float d[GEN_QT][GEN_QG] = {{0}}, dsum[GEN_QT][GEN_QG] = {{0}};
    gen_xrows padded = {0};
    memcpy(w, blk, (size_t)(n * bytes));
    for (int b = 0; b < NI; b++) {
        memcpy(q[b], x->q[b], (size_t)n * CPU_Q8_BLOCK);
        memcpy(d[b], x->d[b], sizeof(float) * (size_t)n);
        memcpy(dsum[b], x->dsum[b], sizeof(float) * (size_t)n);
        padded.q[b] = q[b], padded.d[b] = d[b], padded.dsum[b] = dsum[b];
    }
    gen_group(w, dt, bytes, &padded, NI, acc, off);
}

/* How far ahead of the group being read the quantized GEMV prefetches.
 * Measured on mamba-130m Q8_0/Q4_K decode at batch 1 (2 threads, Xeon):
 * none 80/99 tok/s, 2 KB 105/189, 4 KB 108-119/198-200, 8 KB 98-111/175-191. */
enum { GEN_QPF_BYTES = 4096 };

/* One row of W (dtype dt) against rows [i0, i0 + NI) of a, into out[].
 * Inlined with dt and NI constant so that the accumulators stay in
 * registers.  With `prefetch`, each group also prefetches the bytes
 * GEN_QPF_BYTES further on (rows are contiguous, so that runs into the
 * next rows): the kernel reads one row at a time, a single sequential
 * stream that the hardware prefetcher alone kept at half the bandwidth. */
static inline __attribute__((always_inline)) void gen_qrow(const uint8_t *wrow, eng_dtype dt,
                                                           const cpu_q8_act *a, int i0, int NI,
                                                           int prefetch, float out[GEN_QT])
{
    const long cols = a->cols, nb = cols / CPU_Q8_BLOCK;
    /* bytes per block of the 32-weight types; per group of 8 blocks */
    const long bytes = dt == ENG_DTYPE_Q8_0   ? ENG_Q8_0_BYTES
                       : dt == ENG_DTYPE_Q4_0 ? ENG_Q4_0_BYTES
                       : dt == ENG_DTYPE_Q5_0 ? ENG_Q5_0_BYTES
                                              : 0;
    const long group_bytes = dt == ENG_DTYPE_Q4_K   ? ENG_Q4_K_BYTES
                             : dt == ENG_DTYPE_Q6_K ? ENG_Q6_K_BYTES
                                                    : GEN_QG * bytes;
    vq2 acc[GEN_QT];
    vq8f off[GEN_QT];
    gen_xrows x = {0};
    for (int b = 0; b < NI; b++) {
        acc[b] = vq2_zero();
        off[b] = vq8f_zero();
        x.q[b] = a->q + (size_t)(i0 + b) * cols;
        x.d[b] = a->d + (size_t)(i0 + b) * nb;
        x.dsum[b] = a->dsum + (size_t)(i0 + b) * nb;
    }
    long j = 0;
    for (; j + GEN_QG <= nb; j += GEN_QG) {
        const gen_xrows xj = gen_xrows_at(&x, j, NI);
        const uint8_t *group = wrow + j / GEN_QG * group_bytes;
        if (prefetch)
            for (long o = 0; o < group_bytes; o += 64)
                __builtin_prefetch(group + GEN_QPF_BYTES + o, 0, 3);
        gen_group(group, dt, bytes, &xj, NI, acc, off);
    }
    if (bytes && j < nb) { /* K-quant rows are whole super-blocks */
        const gen_xrows xj = gen_xrows_at(&x, j, NI);
        gen_group_tail(wrow + j / GEN_QG * group_bytes, dt, bytes, (int)(nb - j), &xj, NI, acc, off);
    }
    for (int b = 0; b < NI; b++)
        out[b] = vq2_hsum(acc[b]) - vq8f_hsum(off[b]);
}

/* Rows [r0, r1) of W (dtype dt, constant after inlining) against every
 * row of a, GEN_QT rows of x per pass over a row of W (which stays in L1
 * between passes: a row is at most a few KB). */
static inline __attribute__((always_inline)) void gen_qgemv_dt(const bk_matrix *w, eng_dtype dt,
                                                               const cpu_q8_act *a, float *y,
                                                               int ldy, const float *bias,
                                                               long r0, long r1)
{
    float out[GEN_QT];
    for (long r = r0; r < r1; r++) {
        const uint8_t *wrow = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        for (int i0 = 0; i0 < a->m; i0 += GEN_QT) {
            const int ni = a->m - i0 < GEN_QT ? a->m - i0 : GEN_QT;
            switch (ni) {
            case 1: gen_qrow(wrow, dt, a, i0, 1, i0 == 0, out); break;
            case 2: gen_qrow(wrow, dt, a, i0, 2, i0 == 0, out); break;
            case 3: gen_qrow(wrow, dt, a, i0, 3, i0 == 0, out); break;
            default: gen_qrow(wrow, dt, a, i0, GEN_QT, i0 == 0, out); break;
            }
            for (int b = 0; b < ni; b++)
                y[(size_t)(i0 + b) * ldy + r] = out[b] + (bias ? bias[r] : 0.0f);
        }
    }
}

static void gen_qgemv_rows(const bk_matrix *w, const cpu_q8_act *a, float *y, int ldy,
                           const float *bias, long r0, long r1)
{
    switch (w->dtype) {
    case ENG_DTYPE_Q8_0: gen_qgemv_dt(w, ENG_DTYPE_Q8_0, a, y, ldy, bias, r0, r1); break;
    case ENG_DTYPE_Q4_0: gen_qgemv_dt(w, ENG_DTYPE_Q4_0, a, y, ldy, bias, r0, r1); break;
    case ENG_DTYPE_Q4_K: gen_qgemv_dt(w, ENG_DTYPE_Q4_K, a, y, ldy, bias, r0, r1); break;
    case ENG_DTYPE_Q5_0: gen_qgemv_dt(w, ENG_DTYPE_Q5_0, a, y, ldy, bias, r0, r1); break;
    default: gen_qgemv_dt(w, ENG_DTYPE_Q6_K, a, y, ldy, bias, r0, r1); break;
    }
}
