/* quant.h - GGUF's block-quantized weight formats (Q8_0, Q4_0, Q4_K, Q6_K,
 * Q5_0):
 * the scalar reference dequantiser every backend is tested against, and
 * the quantisers `ssmd quantize` writes files with.
 *
 * Plain, portable C on host memory; nothing here is on a hot path (the CPU
 * backend's matmul reads the blocks itself, kernels/cpu/cpu_gen_qmatmul.h).
 * The layouts, as GGUF defines them (little-endian, f16 = IEEE half):
 *  - Q8_0 (34 bytes / 32 weights): f16 d, int8 q[32]; w = d * q.
 *  - Q4_0 (18 bytes / 32): f16 d, 16 bytes of nibbles; byte j holds weight
 *    j in its low nibble and weight j+16 in its high one; w = d * (q - 8).
 *  - Q4_K (144 bytes / 256): f16 d, f16 dmin, 12 bytes packing a 6-bit
 *    scale and a 6-bit min for each of 8 sub-blocks of 32 (see
 *    eng_q4k_scales_mins), 128 bytes of nibbles: bytes [32c, 32c+32) hold
 *    sub-block 2c in their low nibbles and 2c+1 in their high ones;
 *    w = d * scale_s * q - dmin * min_s.
 *  - Q6_K (210 bytes / 256): ql[128] (low 4 bits), qh[64] (high 2 bits),
 *    int8 scales[16] (one per 16 weights), f16 d; w = d * scale * (q - 32).
 *    See eng_q6k_group for where each weight's bits are.
 *  - Q5_0 (22 bytes / 32): f16 d, a little-endian u32 whose bit j is the
 *    fifth bit of weight j, 16 bytes of nibbles as Q4_0's; w = d * (q - 16).
 */
#ifndef SSMD_QUANT_H
#define SSMD_QUANT_H

#include <stdint.h>
#include <string.h>

#include "engine/tensor.h"

/* n weights (a whole number of dt's blocks) of blocks at src to f32.
 * dt must be block-quantized (an assert otherwise). */
void eng_quant_dequant(eng_dtype dt, const void *src, int64_t n, float *dst);

/* Whether `ssmd quantize` can write dt (Q8_0, Q4_0, Q4_K). */
int eng_quant_can_write(eng_dtype dt);

/* n floats (a whole number of dt's blocks, all finite: the caller checks)
 * to dt's blocks at dst (eng_dtype_row_bytes(dt, n) bytes).  Round to
 * nearest; scales are chosen from each block's range (no search).  dt must
 * pass eng_quant_can_write. */
void eng_quant_quantize(eng_dtype dt, const float *src, int64_t n, void *dst);

/* IEEE half from f32, round to nearest even (scales in written blocks). */
uint16_t eng_f32_to_f16(float f);

/* ---- unpacking one 32-weight group to int8 ----------------------------------
 * Shared by the reference dequantiser and the CPU kernels (inline so that
 * the kernels' loops see through them).  Each writes the group's integer
 * values; the caller applies the scales. */

enum {
    ENG_Q8_0_BYTES = 34, ENG_Q4_0_BYTES = 18, ENG_Q4_K_BYTES = 144, ENG_Q6_K_BYTES = 210,
    ENG_Q5_0_BYTES = 22,
    ENG_QK_K = 256 /* weights per K-quant super-block */
};

static inline uint16_t eng_quant_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Q4_0 block b: weights j and j+16 share byte j; value q - 8. */
static inline void eng_q4_0_group(const uint8_t *block, int8_t out[32])
{
    const uint8_t *qs = block + 2;
    for (int j = 0; j < 16; j++) {
        out[j] = (int8_t)((qs[j] & 15) - 8);
        out[j + 16] = (int8_t)((qs[j] >> 4) - 8);
    }
}

/* Q5_0 block: Q4_0's nibbles plus bit j of the u32 at byte 2 as weight j's
 * fifth bit; value q - 16. */
static inline void eng_q5_0_group(const uint8_t *block, int8_t out[32])
{
    const uint32_t qh = (uint32_t)block[2] | (uint32_t)block[3] << 8 | (uint32_t)block[4] << 16 |
                        (uint32_t)block[5] << 24;
    const uint8_t *qs = block + 6;
    for (int j = 0; j < 16; j++) {
        out[j] = (int8_t)(((qs[j] & 15) | ((qh >> j) & 1) << 4) - 16);
        out[j + 16] = (int8_t)(((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16);
    }
}

/* Q4_K's packing of 8 sub-block (scale, min) pairs in 12 bytes p: for
 * sub-blocks 0-3, the low 6 bits of byte j (scale) and byte j+4 (min); for
 * 4-7, the low/high nibble of byte j+4 (scale/min) with their top 2 bits in
 * the top 2 bits of byte j-4 (scale) and byte j (min).  Decoded all 8 at
 * once in 64-bit words, byte k of *scale and *min being sub-block k's in
 * memory order (little-endian): the CPU kernels widen them straight from
 * a general register, once per 256 weights, and the scalar reference
 * decodes through the same function so that there is one decoder. */
static inline void eng_q4k_scales_mins64(const uint8_t p[12], uint64_t *scale, uint64_t *min)
{
    const uint64_t low6 = 0x3f3f3f3f3f3f3f3fu, low4 = 0x0f0f0f0fu, low2 = 0x0303030303030303u;
    uint64_t a; /* bytes 0-7 */
    uint32_t c; /* bytes 8-11 */
    memcpy(&a, p, 8);
    memcpy(&c, p + 8, 4);
    /* every shift is masked back to bits of the same byte */
    const uint64_t first = a & low6; /* scales 0-3 | mins 0-3 */
    const uint64_t last = ((c & low4) | ((c >> 4) & low4) << 32) | ((a >> 6) & low2) << 4;
    *scale = (first & 0xffffffffu) | last << 32;  /* scales 0-3 | 4-7 */
    *min = first >> 32 | (last & ~0xffffffffull); /* mins 0-3 | 4-7 */
}

static inline void eng_q4k_scales_mins(const uint8_t p[12], uint8_t scale[8], uint8_t min[8])
{
    uint64_t s, m;
    eng_q4k_scales_mins64(p, &s, &m);
    memcpy(scale, &s, 8);
    memcpy(min, &m, 8);
}

/* Q4_K sub-block s (0-7) of a super-block: nibbles 0-15, unsigned. */
static inline void eng_q4k_group(const uint8_t *block, int s, int8_t out[32])
{
    const uint8_t *qs = block + 16 + 32 * (s >> 1);
    const int shift = (s & 1) * 4;
    for (int l = 0; l < 32; l++)
        out[l] = (int8_t)((qs[l] >> shift) & 15);
}

/* Q6_K's 32-weight group g (0-7) of one super-block as q - 32 (weights
 * 32g .. 32g+31; scales[2g] covers the first 16, scales[2g+1] the last
 * 16).  Group g = 4h + k takes its low 4 bits from ql[64h + 32(k&1) + l]
 * (low nibble for k < 2, high for k >= 2) and its high 2 bits from bits
 * 2k..2k+1 of qh[32h + l]. */
static inline void eng_q6k_group(const uint8_t *block, int g, int8_t out[32])
{
    const int h = g >> 2, k = g & 3;
    const uint8_t *ql = block + 64 * h + 32 * (k & 1), *qh = block + 128 + 32 * h;
    const int lshift = (k >> 1) * 4, hshift = 2 * k;
    for (int l = 0; l < 32; l++)
        out[l] = (int8_t)((((ql[l] >> lshift) & 15) | ((qh[l] >> hshift) & 3) << 4) - 32);
}

#endif
