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
 * lanes (spread as the level likes); vq_dot32s is
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
 * Q4_0 row ran 6x slower than its Q8_0 twin.
 *
 * Eight blocks' scales.  vq8f holds 8 f32 lanes, one per block of a group
 * of 8 (256 weights): the per-block products (weight scale times x's
 * scale) and offsets are computed a group at a time with vector
 * multiplies, not one scalar chain per block, which profiling showed cost
 * as much as the dot products.  vq8f_f16s gathers the 8 blocks' f16
 * scales (p + k * stride), vq8f_u8x8 widens the 8 bytes of a word (Q4_K's
 * scales and mins, decoded in a general register), vq8f_i8 8 bytes at p, vq8f_dup2
 * reads p[0..3] each twice (x's block scales against Q6_K's 16 scales).
 *
 * Two blocks.  vq8x2 holds 64 int8 weights (blocks 2p and 2p + 1 of a
 * group) and vq2 their scaled sums: vq2_dot(acc, w, x, s) adds s[0] times
 * the first 32 products and s[1] times the last 32 (x: 64 int8), vq2_dotu
 * the same for weights in [0, 127], vq2_dot16 one scale per 16 (s[0..3],
 * Q6_K), vq2_fnma8(acc, wm, p) takes wm[k] * p[k] (k < 8) off acc's
 * lanes (Q4_0's and Q4_K's offsets); vq2_hsum4 adds up the lanes of four
 * vq2 side by side (cpu_vec.h's vf_hsum4).  AVX-512 does a pair in one 512-bit
 * register (one vpdpbusd for 64 products); the other levels run the
 * single-block functions twice. */
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
/* Unsigned w by signed x, byte by byte: int32 lane i sums the products of
 * bytes 4i..4i+3.  X is the width's prefix (_mm256, _mm512), zero its
 * zero vector. */
#if defined(__AVX512VNNI__)
#define VQ_P32(X, zero, w_unsigned, x_signed) X##_dpbusd_epi32(zero, w_unsigned, x_signed)
#elif defined(__AVXVNNI__) /* 256 bits only: the AVX2 level's variant */
#define VQ_P32(X, zero, w_unsigned, x_signed) X##_dpbusd_avx_epi32(zero, w_unsigned, x_signed)
#else
#define VQ_P32(X, zero, w_unsigned, x_signed)                                                     \
    X##_madd_epi16(X##_maddubs_epi16(w_unsigned, x_signed), X##_set1_epi16(1))
#endif
static inline __m256i vq_p32(__m256i w_unsigned, __m256i x_signed)
{
    return VQ_P32(_mm256, _mm256_setzero_si256(), w_unsigned, x_signed);
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
/* the block's 16 bytes in both halves (one broadcast load), the second
 * half shifted down by a nibble: three instructions where splitting one
 * 16-byte load took five */
static inline vq8 vq8_q4_0u(const uint8_t *block)
{
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(block + 2)));
    return _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)),
                            _mm256_set1_epi8(15));
}
/* one F16C instruction, not a call per 32 weights */
static inline float vq_f16(const uint8_t *p)
{
    return _cvtsh_ss((unsigned short)(p[0] | p[1] << 8));
}
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
static inline float vq_f16(const uint8_t *p)
{
    return eng_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}
#endif

/* ---- vq8f: eight blocks' f32 scales ------------------------------------- */
#if defined(CPU_ISA_AVX512) || defined(CPU_ISA_AVX2)
typedef __m256 vq8f;
static inline vq8f vq8f_zero(void) { return _mm256_setzero_ps(); }
static inline vq8f vq8f_set1(float f) { return _mm256_set1_ps(f); }
static inline vq8f vq8f_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void vq8f_store(float *p, vq8f v) { _mm256_storeu_ps(p, v); }
static inline vq8f vq8f_mul(vq8f a, vq8f b) { return _mm256_mul_ps(a, b); }
/* the 8 bytes of a word (little-endian: byte k = lane k), from a
 * general register */
static inline vq8f vq8f_u8x8(uint64_t bytes)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)bytes)));
}
static inline vq8f vq8f_i8(const int8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
static inline vq8f vq8f_dup2(const float *p)
{
    const __m256i twice = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(p)), twice);
}
/* Four halves at p + k * stride, k = k0..k0+3, in one 64-bit word. */
static inline uint64_t vq_f16x4(const uint8_t *p, long stride, int k0)
{
    uint64_t r = 0;
    for (int k = 3; k >= 0; k--)
        r = r << 16 | eng_quant_u16(p + (k0 + k) * stride);
    return r;
}
/* The halves gathered in general registers, which have ports to spare
 * (16-bit vector inserts queued on the one port the dot products' shuffles
 * need), then one F16C conversion for all 8. */
static inline vq8f vq8f_f16s(const uint8_t *p, long stride)
{
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)vq_f16x4(p, stride, 4), (long long)vq_f16x4(p, stride, 0)));
}
#elif defined(CPU_ISA_NEON)
typedef float32x4x2_t vq8f;
static inline vq8f vq8f_of(float32x4_t lo, float32x4_t hi) { return (vq8f){{lo, hi}}; }
static inline vq8f vq8f_zero(void) { return vq8f_of(vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)); }
static inline vq8f vq8f_set1(float f) { return vq8f_of(vdupq_n_f32(f), vdupq_n_f32(f)); }
static inline vq8f vq8f_load(const float *p) { return vq8f_of(vld1q_f32(p), vld1q_f32(p + 4)); }
static inline void vq8f_store(float *p, vq8f v)
{
    vst1q_f32(p, v.val[0]);
    vst1q_f32(p + 4, v.val[1]);
}
static inline vq8f vq8f_mul(vq8f a, vq8f b)
{
    return vq8f_of(vmulq_f32(a.val[0], b.val[0]), vmulq_f32(a.val[1], b.val[1]));
}
static inline vq8f vq8f_u8x8(uint64_t bytes)
{
    const uint16x8_t h = vmovl_u8(vcreate_u8(bytes));
    return vq8f_of(vcvtq_f32_u32(vmovl_u16(vget_low_u16(h))), vcvtq_f32_u32(vmovl_u16(vget_high_u16(h))));
}
static inline vq8f vq8f_i8(const int8_t *p)
{
    const int16x8_t h = vmovl_s8(vld1_s8(p));
    return vq8f_of(vcvtq_f32_s32(vmovl_s16(vget_low_s16(h))), vcvtq_f32_s32(vmovl_s16(vget_high_s16(h))));
}
static inline vq8f vq8f_dup2(const float *p)
{
    const float32x4_t v = vld1q_f32(p);
    return vq8f_of(vzip1q_f32(v, v), vzip2q_f32(v, v));
}
static inline vq8f vq8f_f16s(const uint8_t *p, long stride)
{
    uint16_t h[8];
    for (int k = 0; k < 8; k++)
        h[k] = eng_quant_u16(p + k * stride);
    const float16x8_t f = vreinterpretq_f16_u16(vld1q_u16(h));
    return vq8f_of(vcvt_f32_f16(vget_low_f16(f)), vcvt_f32_f16(vget_high_f16(f)));
}
#else
typedef struct vq8f {
    float v[8];
} vq8f;
static inline vq8f vq8f_set1(float f)
{
    vq8f r;
    for (int k = 0; k < 8; k++)
        r.v[k] = f;
    return r;
}
static inline vq8f vq8f_zero(void) { return vq8f_set1(0.0f); }
static inline vq8f vq8f_load(const float *p)
{
    vq8f r;
    memcpy(r.v, p, sizeof r.v);
    return r;
}
static inline void vq8f_store(float *p, vq8f v) { memcpy(p, v.v, sizeof v.v); }
static inline vq8f vq8f_mul(vq8f a, vq8f b)
{
    for (int k = 0; k < 8; k++)
        a.v[k] *= b.v[k];
    return a;
}
static inline vq8f vq8f_u8x8(uint64_t bytes)
{
    vq8f r;
    for (int k = 0; k < 8; k++)
        r.v[k] = (float)(uint8_t)(bytes >> 8 * k);
    return r;
}
static inline vq8f vq8f_i8(const int8_t *p)
{
    vq8f r;
    for (int k = 0; k < 8; k++)
        r.v[k] = (float)p[k];
    return r;
}
static inline vq8f vq8f_dup2(const float *p)
{
    vq8f r;
    for (int k = 0; k < 8; k++)
        r.v[k] = p[k / 2];
    return r;
}
static inline vq8f vq8f_f16s(const uint8_t *p, long stride)
{
    vq8f r;
    for (int k = 0; k < 8; k++)
        r.v[k] = eng_f16_to_f32(eng_quant_u16(p + k * stride));
    return r;
}
#endif

/* ---- vq8x2 / vq2: two blocks at a time ----------------------------------- */
#if defined(CPU_ISA_AVX512)
typedef __m512 vq2;
typedef __m512i vq8x2;
static inline vq2 vq2_zero(void) { return _mm512_setzero_ps(); }
#define vq2_hsum4(a, b, c, d, out) vf_hsum4(a, b, c, d, out)
/* acc - wm * p[0..7] in its first 8 lanes (zero-extended: the rest
 * gain -0 * 0) */
static inline vq2 vq2_fnma8(vq2 acc, vq8f wm, const float *p)
{
    return _mm512_fnmadd_ps(_mm512_zextps256_ps512(wm), _mm512_zextps256_ps512(_mm256_loadu_ps(p)),
                            acc);
}
static inline vq8x2 vq8x2_load(const void *p0, const void *p1)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(vq8_load(p0)), vq8_load(p1), 1);
}
/* lo in each 16-bit element of the first 256 bits, hi in the second */
static inline __m512i vq8x2_halves16(int lo, int hi)
{
    return _mm512_inserti64x4(_mm512_set1_epi16((short)lo), _mm256_set1_epi16((short)hi), 1);
}
/* (v >> shift) & 15 per byte, the shift per 16-bit element (then masked) */
static inline vq8x2 vq8x2_nibbles(vq8x2 v, __m512i shift16)
{
    return _mm512_and_si512(_mm512_srlv_epi16(v, shift16), _mm512_set1_epi8(15));
}
static inline vq8x2 vq8x2_q4_0u(const uint8_t *block0, const uint8_t *block1)
{
    /* 128-bit lanes: block0's 16 bytes twice, then block1's twice; low
     * nibbles from lanes 0 and 2, high ones from 1 and 3 */
    const __m128i q0 = _mm_loadu_si128((const __m128i *)(block0 + 2));
    const __m128i q1 = _mm_loadu_si128((const __m128i *)(block1 + 2));
    const __m512i v = _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(q0), 0xff00, q1);
    const long long four = 0x0004000400040004LL;
    return vq8x2_nibbles(v, _mm512_setr_epi64(0, 0, four, four, 0, 0, four, four));
}
static inline vq8x2 vq8x2_q4k(const uint8_t *block, int s)
{
    /* sub-blocks s and s + 1 (s even): the low and high nibbles of the
     * same 32 bytes */
    const __m512i v = _mm512_broadcast_i64x4(vq8_load(block + 16 + 32 * (s >> 1)));
    return vq8x2_nibbles(v, vq8x2_halves16(0, 4));
}
static inline vq8x2 vq8x2_q6k(const uint8_t *block, int g)
{
    /* groups g and g + 1 (g = 4h + k, k even): their low 4 bits are the
     * same nibble of 64 consecutive ql bytes, their high 2 bits 2k and
     * 2k + 2 of the same 32 qh bytes */
    const int h = g >> 2, k = g & 3, lshift = (k >> 1) * 4;
    const __m512i lo = vq8x2_nibbles(_mm512_loadu_si512(block + 64 * h), vq8x2_halves16(lshift, lshift));
    const __m512i qh = _mm512_srlv_epi16(_mm512_broadcast_i64x4(vq8_load(block + 128 + 32 * h)),
                                         vq8x2_halves16(2 * k, 2 * k + 2));
    const __m512i hi = _mm512_slli_epi16(_mm512_and_si512(qh, _mm512_set1_epi8(3)), 4);
    return _mm512_sub_epi8(_mm512_or_si512(lo, hi), _mm512_set1_epi8(32));
}
static inline __m512i vq2_p32(__m512i w_unsigned, __m512i x_signed)
{
    return VQ_P32(_mm512, _mm512_setzero_si512(), w_unsigned, x_signed);
}
/* Signed weights as vq_dot32 takes them: |w| and x negated where w < 0
 * (AVX-512 has no vpsignb: a byte mask of w's signs instead). */
static inline __m512i vq2_p32s(vq8x2 w, const int8_t *x)
{
    const __m512i xv = _mm512_loadu_si512(x);
    const __m512i xs = _mm512_mask_sub_epi8(xv, _mm512_movepi8_mask(w), _mm512_setzero_si512(), xv);
    return vq2_p32(_mm512_abs_epi8(w), xs);
}
/* s[0] in the first 8 lanes, s[1] in the last 8: one 8-byte load and one
 * permute (two broadcasts and an insert took three shuffles) */
static inline __m512 vq2_scales(const float s[2])
{
    const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m128 s01 = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)s));
    return _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(s01));
}
static inline vq2 vq2_dot(vq2 acc, vq8x2 w, const int8_t *x, const float s[2])
{
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(vq2_p32s(w, x)), vq2_scales(s), acc);
}
static inline vq2 vq2_dotu(vq2 acc, vq8x2 w, const int8_t *x, const float s[2])
{
    const __m512i p32 = vq2_p32(w, _mm512_loadu_si512(x));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(p32), vq2_scales(s), acc);
}
static inline vq2 vq2_dot16(vq2 acc, vq8x2 w, const int8_t *x, const float s[4])
{
    /* s[k] for int32 lanes 4k..4k+3 (16 products each) */
    const __m512i each4 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512 sv = _mm512_permutexvar_ps(each4, _mm512_castps128_ps512(_mm_loadu_ps(s)));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(vq2_p32s(w, x)), sv, acc);
}
#else
typedef struct vq2 {
    vq lo, hi;
} vq2;
typedef struct vq8x2 {
    vq8 lo, hi;
} vq8x2;
static inline vq2 vq2_zero(void) { return (vq2){vq_zero(), vq_zero()}; }
/* (vq is vf at these levels) each one's two halves added lane by lane first */
static inline void vq2_hsum4(vq2 a, vq2 b, vq2 c, vq2 d, float out[4])
{
    vf_hsum4(vf_add(a.lo, a.hi), vf_add(b.lo, b.hi), vf_add(c.lo, c.hi), vf_add(d.lo, d.hi), out);
}
/* acc - wm * p[0..7], in acc.lo's lanes */
static inline vq2 vq2_fnma8(vq2 acc, vq8f wm, const float *p)
{
#if defined(CPU_ISA_AVX2)
    acc.lo = _mm256_fnmadd_ps(wm, _mm256_loadu_ps(p), acc.lo);
#elif defined(CPU_ISA_NEON)
    acc.lo = vfmsq_f32(acc.lo, wm.val[0], vld1q_f32(p));
    acc.lo = vfmsq_f32(acc.lo, wm.val[1], vld1q_f32(p + 4));
#else
    for (int k = 0; k < 8; k++)
        acc.lo -= wm.v[k] * p[k];
#endif
    return acc;
}
static inline vq8x2 vq8x2_load(const void *p0, const void *p1)
{
    return (vq8x2){vq8_load(p0), vq8_load(p1)};
}
static inline vq8x2 vq8x2_q4_0u(const uint8_t *block0, const uint8_t *block1)
{
    return (vq8x2){vq8_q4_0u(block0), vq8_q4_0u(block1)};
}
static inline vq8x2 vq8x2_q4k(const uint8_t *block, int s)
{
    return (vq8x2){vq8_q4k(block, s), vq8_q4k(block, s + 1)};
}
static inline vq8x2 vq8x2_q6k(const uint8_t *block, int g)
{
    return (vq8x2){vq8_q6k(block, g), vq8_q6k(block, g + 1)};
}
static inline vq2 vq2_dot(vq2 acc, vq8x2 w, const int8_t *x, const float s[2])
{
    return (vq2){vq_dot32s(acc.lo, w.lo, x, s[0]), vq_dot32s(acc.hi, w.hi, x + 32, s[1])};
}
static inline vq2 vq2_dotu(vq2 acc, vq8x2 w, const int8_t *x, const float s[2])
{
    return (vq2){vq_dotu32s(acc.lo, w.lo, x, s[0]), vq_dotu32s(acc.hi, w.hi, x + 32, s[1])};
}
static inline vq2 vq2_dot16(vq2 acc, vq8x2 w, const int8_t *x, const float s[4])
{
    return (vq2){vq_dot32(acc.lo, w.lo, x, s[0], s[1]), vq_dot32(acc.hi, w.hi, x + 32, s[2], s[3])};
}
#endif

#endif
