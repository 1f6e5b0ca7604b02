/* cpu_vec_int8.h - the int8 vocabulary of the quantized matmul
 * (cpu_gen_qmatmul.h): weight blocks unpacked to int8 in registers, their
 * exact integer dot products with x's int8 blocks, and the f32 scales that
 * weigh them, defined once per instruction-set level.
 *
 * Included like cpu_vec.h, after it (which picks the level), only by the
 * per-level translation units through cpu_gen_table.h: these intrinsics
 * fault on a CPU without the level.
 *
 * One block of 32.  vq8 holds 32 int8 weights, unpacked from a block by
 * vq8_load (Q8_0's bytes as they are), vq8_q4_0u (a Q4_0 block's q, 0..15),
 * vq8_q4k (Q4_K sub-block s of a super-block: nibbles 0..15) and vq8_q6k
 * (Q6_K group g: q - 32), with the meaning of engine/quant.h's unpackers
 * (the scalar level calls those).  vq accumulates scaled integer dot
 * products in f32 lanes: vq_dot32(acc, w, x, s0, s1) adds
 * s0 * sum(w[l] x[l], l < 16) + s1 * sum(w[l] x[l], 16 <= l < 32) to acc's
 * lanes (spread as the level likes; vq_hsum adds them up); vq_dot32s is
 * the same with one scale for all 32, and vq_dotu32s the same again for
 * weights in [0, 127] (Q4 nibbles before their offset: vq8_q4_0u is a
 * Q4_0 block's q without the - 8, which the caller takes off through x's
 * block sum), which AVX2's maddubs multiplies without moving signs.  x is
 * int8 in [-127, 127]; each integer sum is exact.  vq_f16 reads a block's
 * little-endian f16 scale.  The x86 levels share one 256-bit version (32
 * bytes are one block), which takes VNNI's vpdpbusd where the level's
 * variant has it; NEON widens with vmull_s8, or uses sdot in the
 * +dotprod variant.
 * Unpacking in registers matters: built byte by byte through memory, a
 * Q4_0 row ran 6x slower than its Q8_0 twin. */
#ifndef SSMD_CPU_VEC_INT8_H
#define SSMD_CPU_VEC_INT8_H

#include <stdint.h>
#include <string.h>

#include "engine/quant.h"
#include "kernels/cpu/cpu_vec.h"

/* ---- vq8 / vq: one block of 32 ------------------------------------------ */
#if defined(CPU_ISA_AVX512) || defined(CPU_ISA_AVX2)
typedef __m256 vq;
typedef __m256i vq8;
static inline vq vq_zero(void) { return _mm256_setzero_ps(); }
static inline vq8 vq8_load(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
/* (p[l] >> shift) & 15 for 32 bytes (shift 0 or 4; 16-bit shifts, masked) */
static inline vq8 vq8_nibbles(vq8 v, int shift)
{
    return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(shift)), _mm256_set1_epi8(15));
}
static inline vq8 vq8_q4k(const uint8_t *block, int s)
{
    return vq8_nibbles(vq8_load(block + 16 + 32 * (s >> 1)), (s & 1) * 4);
}
static inline vq8 vq8_q6k(const uint8_t *block, int g)
{
    const int h = g >> 2, k = g & 3;
    const vq8 lo = vq8_nibbles(vq8_load(block + 64 * h + 32 * (k & 1)), (k >> 1) * 4);
    const vq8 qh = _mm256_srl_epi16(vq8_load(block + 128 + 32 * h), _mm_cvtsi32_si128(2 * k));
    const vq8 hi = _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(3)), 4);
    return _mm256_sub_epi8(_mm256_or_si256(lo, hi), _mm256_set1_epi8(32));
}
static inline __m256i vq_p32(__m256i w_unsigned, __m256i x_signed)
{
    /* int32 lane i sums bytes 4i..4i+3 of the products */
#if defined(__AVX512VNNI__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w_unsigned, x_signed);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w_unsigned, x_signed), _mm256_set1_epi16(1));
#endif
}
/* The unsigned-by-signed byte products (maddubs, or VNNI's vpdpbusd)
 * take w's sign moved onto x: |w| <= 128 fits unsigned, and |x| <= 127
 * keeps maddubs' pair sums inside int16.  Lanes 0-3 hold the first 16. */
static inline vq vq_dot32(vq acc, vq8 wv, const int8_t *x, float s0, float s1)
{
    const __m256i xv = _mm256_loadu_si256((const __m256i *)x);
    const __m256i p32 = vq_p32(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
    const __m256 s = _mm256_set_m128(_mm_set1_ps(s1), _mm_set1_ps(s0));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), s, acc);
}
static inline vq vq_dot32s(vq acc, vq8 wv, const int8_t *x, float s)
{
    const __m256i xv = _mm256_loadu_si256((const __m256i *)x);
    const __m256i p32 = vq_p32(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(s), acc);
}
static inline vq vq_dotu32s(vq acc, vq8 wv, const int8_t *x, float s)
{
    const __m256i p32 = vq_p32(wv, _mm256_loadu_si256((const __m256i *)x));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(s), acc);
}
static inline vq8 vq8_q4_0u(const uint8_t *block)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)(block + 2)), m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}
/* one F16C instruction, not a call per 32 weights */
static inline float vq_f16(const uint8_t *p)
{
    return _cvtsh_ss((unsigned short)(p[0] | p[1] << 8));
}
#if defined(CPU_ISA_AVX512)
#define vq_hsum(v) _mm512_reduce_add_ps(_mm512_zextps256_ps512(v))
#else
#define vq_hsum(v) vf_hsum(v)
#endif
#elif defined(CPU_ISA_NEON)
typedef float32x4_t vq;
typedef int8x16x2_t vq8;
static inline vq vq_zero(void) { return vdupq_n_f32(0.0f); }
static inline vq8 vq8_load(const void *p) { return vld1q_s8_x2((const int8_t *)p); }
static inline int8x16_t vq8_nib16(uint8x16_t v, int high)
{
    return vreinterpretq_s8_u8(high ? vshrq_n_u8(v, 4) : vandq_u8(v, vdupq_n_u8(15)));
}
static inline vq8 vq8_q4k(const uint8_t *block, int s)
{
    const uint8_t *p = block + 16 + 32 * (s >> 1);
    return (vq8){{vq8_nib16(vld1q_u8(p), s & 1), vq8_nib16(vld1q_u8(p + 16), s & 1)}};
}
static inline vq8 vq8_q6k(const uint8_t *block, int g)
{
    const int h = g >> 2, k = g & 3;
    const uint8_t *ql = block + 64 * h + 32 * (k & 1), *qh = block + 128 + 32 * h;
    const int8x16_t down = vdupq_n_s8((int8_t)(-2 * k)); /* a negative shift shifts right */
    vq8 r;
    for (int i = 0; i < 2; i++) {
        const uint8x16_t hi = vandq_u8(vshlq_u8(vld1q_u8(qh + 16 * i), down), vdupq_n_u8(3));
        const uint8x16_t q = vorrq_u8(vreinterpretq_u8_s8(vq8_nib16(vld1q_u8(ql + 16 * i), k >> 1)),
                                      vshlq_n_u8(hi, 4));
        r.val[i] = vsubq_s8(vreinterpretq_s8_u8(q), vdupq_n_s8(32));
    }
    return r;
}
static inline int32x4_t vq_dot16(int8x16_t wv, const int8_t *x)
{
    const int8x16_t xv = vld1q_s8(x);
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(vdupq_n_s32(0), wv, xv); /* lane i sums bytes 4i..4i+3 */
#else
    /* products fit int16 (|w x| <= 128 * 127); pairwise-add them to int32 */
    int32x4_t s = vpaddlq_s16(vmull_s8(vget_low_s8(wv), vget_low_s8(xv)));
    return vpadalq_s16(s, vmull_s8(vget_high_s8(wv), vget_high_s8(xv)));
#endif
}
static inline vq vq_dot32(vq acc, vq8 w, const int8_t *x, float s0, float s1)
{
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(vq_dot16(w.val[0], x)), s0);
    return vfmaq_n_f32(acc, vcvtq_f32_s32(vq_dot16(w.val[1], x + 16)), s1);
}
static inline vq vq_dot32s(vq acc, vq8 w, const int8_t *x, float s)
{
    const int32x4_t p = vaddq_s32(vq_dot16(w.val[0], x), vq_dot16(w.val[1], x + 16));
    return vfmaq_n_f32(acc, vcvtq_f32_s32(p), s);
}
#define vq_dotu32s vq_dot32s /* signed products cover [0, 127] as they are */
static inline vq8 vq8_q4_0u(const uint8_t *block)
{
    const uint8x16_t v = vld1q_u8(block + 2);
    return (vq8){{vq8_nib16(v, 0), vq8_nib16(v, 1)}};
}
static inline float vq_hsum(vq v) { return vaddvq_f32(v); }
static inline float vq_f16(const uint8_t *p)
{
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h;
}
#else
typedef float vq;
typedef struct vq8 {
    int8_t v[32];
} vq8;
static inline vq vq_zero(void) { return 0.0f; }
static inline vq8 vq8_load(const void *p)
{
    vq8 r;
    memcpy(r.v, p, 32);
    return r;
}
static inline vq8 vq8_q4k(const uint8_t *block, int s)
{
    vq8 r;
    eng_q4k_group(block, s, r.v);
    return r;
}
static inline vq8 vq8_q6k(const uint8_t *block, int g)
{
    vq8 r;
    eng_q6k_group(block, g, r.v);
    return r;
}
static inline vq vq_dot32(vq acc, vq8 w, const int8_t *x, float s0, float s1)
{
    int32_t a = 0, b = 0;
    for (int l = 0; l < 16; l++) {
        a += w.v[l] * x[l];
        b += w.v[l + 16] * x[l + 16];
    }
    return acc + s0 * (float)a + s1 * (float)b;
}
static inline vq vq_dot32s(vq acc, vq8 w, const int8_t *x, float s)
{
    int32_t a = 0;
    for (int l = 0; l < 32; l++)
        a += w.v[l] * x[l];
    return acc + s * (float)a;
}
#define vq_dotu32s vq_dot32s
static inline vq8 vq8_q4_0u(const uint8_t *block)
{
    vq8 r;
    eng_q4_0_group(block, r.v);
    for (int l = 0; l < 32; l++)
        r.v[l] = (int8_t)(r.v[l] + 8);
    return r;
}
static inline float vq_hsum(vq v) { return v; }
static inline float vq_f16(const uint8_t *p)
{
    return eng_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}
#endif


#endif
