/* cpu_gen_qmatmul.h - the decode matmul for block-quantized weights (Q8_0,
 * Q4_0, Q4_K, Q6_K, Q5_0), written once on cpu_vec.h's int8 dot product.
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

enum { GEN_QT = 4 }; /* rows of x per pass over a row of W */

/* One row of W (dtype dt) against rows [i0, i0 + NI) of a, into out[].
 * Inlined with dt and NI constant so that the accumulators stay in
 * registers; a block is unpacked once for all NI rows of x. */
static inline __attribute__((always_inline)) void gen_qrow(const uint8_t *wrow, eng_dtype dt,
                                                           const cpu_q8_act *a, int i0, int NI,
                                                           float out[GEN_QT])
{
    const long cols = a->cols, nb = cols / CPU_Q8_BLOCK;
    vq acc[GEN_QT];
    float corr[GEN_QT];
    const int8_t *xq[GEN_QT];
    const float *xd[GEN_QT];
    const float *xs[GEN_QT];
    for (int b = 0; b < NI; b++) {
        acc[b] = vq_zero();
        corr[b] = 0.0f;
        xq[b] = a->q + (size_t)(i0 + b) * cols;
        xd[b] = a->d + (size_t)(i0 + b) * nb;
        xs[b] = a->dsum + (size_t)(i0 + b) * nb;
    }
    if (dt == ENG_DTYPE_Q8_0 || dt == ENG_DTYPE_Q4_0 || dt == ENG_DTYPE_Q5_0) {
        const long bytes = dt == ENG_DTYPE_Q8_0   ? ENG_Q8_0_BYTES
                           : dt == ENG_DTYPE_Q4_0 ? ENG_Q4_0_BYTES
                                                  : ENG_Q5_0_BYTES;
        int8_t g[32];
        for (long j = 0; j < nb; j++) {
            const uint8_t *blk = wrow + j * bytes;
            const float d = vq_f16(blk);
            vq8 w;
            if (dt == ENG_DTYPE_Q5_0) { /* small tensors only (ssm_dt): unpacked in C */
                eng_q5_0_group(blk, g);
                w = vq8_load(g);
            } else {
                w = dt == ENG_DTYPE_Q8_0 ? vq8_load(blk + 2) : vq8_q4_0(blk);
            }
            for (int b = 0; b < NI; b++) {
                const float s = d * xd[b][j];
                acc[b] = vq_dot32(acc[b], w, xq[b] + j * CPU_Q8_BLOCK, s, s);
            }
        }
    } else if (dt == ENG_DTYPE_Q4_K) {
        for (long sb = 0; sb < nb / 8; sb++) {
            const uint8_t *blk = wrow + sb * ENG_Q4_K_BYTES;
            const float d = vq_f16(blk), dmin = vq_f16(blk + 2);
            /* the 8 sub-blocks' scale and min as floats, once for every
             * row of x (decoding them in the inner loop cost a third) */
            float ws[8], wm[8];
            for (int s = 0; s < 8; s++) {
                int sc, mn;
                eng_q4k_scale_min(blk + 4, s, &sc, &mn);
                ws[s] = d * (float)sc;
                wm[s] = dmin * (float)mn;
            }
            for (int s = 0; s < 8; s++) {
                const vq8 w = vq8_q4k(blk, s);
                const long j = sb * 8 + s;
                for (int b = 0; b < NI; b++) {
                    const float sx = ws[s] * xd[b][j];
                    acc[b] = vq_dot32(acc[b], w, xq[b] + j * CPU_Q8_BLOCK, sx, sx);
                    corr[b] -= wm[s] * xs[b][j];
                }
            }
        }
    } else { /* Q6_K */
        for (long sb = 0; sb < nb / 8; sb++) {
            const uint8_t *blk = wrow + sb * ENG_Q6_K_BYTES;
            const float d = vq_f16(blk + 208);
            const int8_t *scales = (const int8_t *)(blk + 192);
            for (int g = 0; g < 8; g++) {
                const vq8 w = vq8_q6k(blk, g);
                const long j = sb * 8 + g;
                const float s0 = d * (float)scales[2 * g], s1 = d * (float)scales[2 * g + 1];
                for (int b = 0; b < NI; b++)
                    acc[b] = vq_dot32(acc[b], w, xq[b] + j * CPU_Q8_BLOCK, s0 * xd[b][j],
                                      s1 * xd[b][j]);
            }
        }
    }
    for (int b = 0; b < NI; b++)
        out[b] = vq_hsum(acc[b]) + corr[b];
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
