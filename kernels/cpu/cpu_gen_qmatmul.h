/* cpu_gen_qmatmul.h - the decode matmul for block-quantized weights (Q8_0,
 * Q4_0, Q4_K, Q6_K, Q5_0), written once on cpu_vec_int8.h's int8 dot
 * product.
 *
 * A template like cpu_gen_matmul.h: included by cpu_gen_table.h inside
 * each cpu_isa_*.c, every function static; never include it elsewhere.
 *
 * Numerics: x arrives quantized to int8 blocks of 32 with an f32 scale
 * (cpu_quant.h).  Each 32 weights are unpacked to int8 (Q8_0's already
 * are), multiplied by x's int8 block exactly in integers, and the sum is
 * scaled by the weight block's scale(s) times x's scale and added to an
 * f32 accumulator; Q4_K's mins contribute dmin * min * dx * sum(x's q) per
 * sub-block.  So the only rounding beyond f32 accumulation is x's 8 bits.
 * The weights stream once per call at ~1.06 (Q8_0) or ~0.56 (Q4_0, Q4_K)
 * bytes per weight, the point of the format for a bandwidth-bound decode.
 */
#include "engine/quant.h"
#include "kernels/cpu/cpu_quant.h"
#include "kernels/cpu/cpu_vec.h"
#include "kernels/cpu/cpu_vec_int8.h"

enum { GEN_QT = 4 }; /* rows of x per pass over a row of W */

/* Rows [i0, i0 + NI) of the quantized activations, by block. */
typedef struct gen_xrows {
    const int8_t *q[GEN_QT];
    const float *d[GEN_QT], *dsum[GEN_QT];
} gen_xrows;

/* Block j of 32 weights (Q8_0, Q4_0 or Q5_0 at blk) against the NI rows
 * of x, into acc; Q4_0's offset goes to corr. */
static inline __attribute__((always_inline)) void gen_qblock(const uint8_t *blk, eng_dtype dt,
                                                             long j, const gen_xrows *x, int NI,
                                                             vq acc[GEN_QT], float corr[GEN_QT])
{
    const float d = vq_f16(blk);
    if (dt == ENG_DTYPE_Q4_0) { /* sum (q - 8) x = sum q x - 8 sum x */
        const vq8 w = vq8_q4_0u(blk);
        for (int b = 0; b < NI; b++) {
            acc[b] = vq_dotu32s(acc[b], w, x->q[b] + j * CPU_Q8_BLOCK, d * x->d[b][j]);
            corr[b] -= 8.0f * d * x->dsum[b][j];
        }
        return;
    }
    vq8 w;
    if (dt == ENG_DTYPE_Q5_0) { /* small tensors only (ssm_dt): unpacked in C */
        int8_t g[32];
        eng_q5_0_group(blk, g);
        w = vq8_load(g);
    } else {
        w = vq8_load(blk + 2);
    }
    for (int b = 0; b < NI; b++)
        acc[b] = vq_dot32s(acc[b], w, x->q[b] + j * CPU_Q8_BLOCK, d * x->d[b][j]);
}

/* Sub-block s (32 weights) of the Q4_K super-block blk, number j of the
 * row's 32-blocks, with its scale and min already in ws / wm. */
static inline __attribute__((always_inline)) void gen_q4k_sub(const uint8_t *blk, int s, long j,
                                                              float ws, float wm,
                                                              const gen_xrows *x, int NI,
                                                              vq acc[GEN_QT], float corr[GEN_QT])
{
    const vq8 w = vq8_q4k(blk, s);
    for (int b = 0; b < NI; b++) {
        acc[b] = vq_dotu32s(acc[b], w, x->q[b] + j * CPU_Q8_BLOCK, ws * x->d[b][j]);
        corr[b] -= wm * x->dsum[b][j];
    }
}

/* Group g (32 weights, two scales) of the Q6_K super-block blk. */
static inline __attribute__((always_inline)) void gen_q6k_group(const uint8_t *blk, int g, long j,
                                                                const gen_xrows *x, int NI,
                                                                vq acc[GEN_QT])
{
    const float d = vq_f16(blk + 208);
    const int8_t *scales = (const int8_t *)(blk + 192);
    const vq8 w = vq8_q6k(blk, g);
    const float s0 = d * (float)scales[2 * g], s1 = d * (float)scales[2 * g + 1];
    for (int b = 0; b < NI; b++)
        acc[b] = vq_dot32(acc[b], w, x->q[b] + j * CPU_Q8_BLOCK, s0 * x->d[b][j], s1 * x->d[b][j]);
}

/* One row of W (dtype dt) against rows [i0, i0 + NI) of a, into out[].
 * Inlined with dt and NI constant so that the accumulators stay in
 * registers; a block is unpacked once for all NI rows of x.  Even and odd
 * blocks add into separate accumulators: at one row of x, a single chain
 * of dependent multiply-adds (4 cycles each) was what bounded the loop. */
static inline __attribute__((always_inline)) void gen_qrow(const uint8_t *wrow, eng_dtype dt,
                                                           const cpu_q8_act *a, int i0, int NI,
                                                           float out[GEN_QT])
{
    const long cols = a->cols, nb = cols / CPU_Q8_BLOCK;
    vq acc0[GEN_QT], acc1[GEN_QT];
    float corr[GEN_QT];
    gen_xrows x;
    for (int b = 0; b < NI; b++) {
        acc0[b] = acc1[b] = vq_zero();
        corr[b] = 0.0f;
        x.q[b] = a->q + (size_t)(i0 + b) * cols;
        x.d[b] = a->d + (size_t)(i0 + b) * nb;
        x.dsum[b] = a->dsum + (size_t)(i0 + b) * nb;
    }
    if (dt == ENG_DTYPE_Q8_0 || dt == ENG_DTYPE_Q4_0 || dt == ENG_DTYPE_Q5_0) {
        const long bytes = dt == ENG_DTYPE_Q8_0   ? ENG_Q8_0_BYTES
                           : dt == ENG_DTYPE_Q4_0 ? ENG_Q4_0_BYTES
                                                  : ENG_Q5_0_BYTES;
        long j = 0;
        for (; j + 2 <= nb; j += 2) {
            gen_qblock(wrow + j * bytes, dt, j, &x, NI, acc0, corr);
            gen_qblock(wrow + (j + 1) * bytes, dt, j + 1, &x, NI, acc1, corr);
        }
        if (j < nb)
            gen_qblock(wrow + j * bytes, dt, j, &x, NI, acc0, corr);
    } else if (dt == ENG_DTYPE_Q4_K) {
        for (long sb = 0; sb < nb / 8; sb++) {
            const uint8_t *blk = wrow + sb * ENG_Q4_K_BYTES;
            const float d = vq_f16(blk), dmin = vq_f16(blk + 2);
            /* the 8 sub-blocks' scale and min as floats, once for every
             * row of x (decoding them in the inner loop cost a third) */
            float ws[8], wm[8];
            uint8_t sc[8], mn[8];
            eng_q4k_scales_mins(blk + 4, sc, mn);
            for (int s = 0; s < 8; s++) {
                ws[s] = d * (float)sc[s];
                wm[s] = dmin * (float)mn[s];
            }
            for (int s = 0; s < 8; s += 2) {
                gen_q4k_sub(blk, s, sb * 8 + s, ws[s], wm[s], &x, NI, acc0, corr);
                gen_q4k_sub(blk, s + 1, sb * 8 + s + 1, ws[s + 1], wm[s + 1], &x, NI, acc1, corr);
            }
        }
    } else { /* Q6_K */
        for (long sb = 0; sb < nb / 8; sb++) {
            const uint8_t *blk = wrow + sb * ENG_Q6_K_BYTES;
            for (int g = 0; g < 8; g += 2) {
                gen_q6k_group(blk, g, sb * 8 + g, &x, NI, acc0);
                gen_q6k_group(blk, g + 1, sb * 8 + g + 1, &x, NI, acc1);
            }
        }
    }
    for (int b = 0; b < NI; b++)
        out[b] = vq_hsum(acc0[b]) + vq_hsum(acc1[b]) + corr[b];
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
            case 1: gen_qrow(wrow, dt, a, i0, 1, out); break;
            case 2: gen_qrow(wrow, dt, a, i0, 2, out); break;
            case 3: gen_qrow(wrow, dt, a, i0, 3, out); break;
            default: gen_qrow(wrow, dt, a, i0, GEN_QT, out); break;
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
