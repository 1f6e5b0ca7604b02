/* cpu_vec.h - the vector vocabulary the generic CPU kernels are written in:
 * one float vector type `vf` of VF_W lanes and the few operations the
 * kernels need, defined once per instruction-set level.
 *
 * Included only by the per-level translation units (isa_*.c through
 * cpu_kernels_impl.h), each of which defines exactly one CPU_ISA_* macro
 * first and is compiled with that level's flags (see the Makefile).  Must
 * never be included by code that runs on every machine: these intrinsics
 * fault on a CPU without the level.  Every operation is a plain IEEE f32
 * operation (no approximate reciprocals), so all levels round alike except
 * for the order of additions.
 */
#ifndef SSMD_CPU_VEC_H
#define SSMD_CPU_VEC_H

#include <stdint.h>
#include <string.h>

#include "engine/tensor.h"

#if defined(CPU_ISA_AVX512) || defined(CPU_ISA_AVX2)
#include <immintrin.h>
/* The x86 levels share their intrinsics' names up to the width prefix
 * (_mm512_ / _mm256_) and the integer-vector suffix (si512 / si256). */
#if defined(CPU_ISA_AVX512)
#define VFX(op) _mm512_##op
#define VSI(op) _mm512_##op##_si512
typedef __m512 vf;
typedef __m512i vint;
enum { VF_W = 16 }; /* 32 registers: a 4x4 tile of sums fits */
#define VF_TILE_M 4 /* rows of x per pass of the matmul tile */
#else
#define VFX(op) _mm256_##op
#define VSI(op) _mm256_##op##_si256
typedef __m256 vf;
typedef __m256i vint;
enum { VF_W = 8 }; /* 16 registers: 4x2 sums + 4 weights + x */
#define VF_TILE_M 2 /* rows of x per pass of the matmul tile */
#endif
#define vf_zero() VFX(setzero_ps)()
#define vf_set1(f) VFX(set1_ps)(f)
#define vf_load(p) VFX(loadu_ps)(p)
#define vf_store(p, v) VFX(storeu_ps)(p, v)
#define vf_add(a, b) VFX(add_ps)(a, b)
#define vf_sub(a, b) VFX(sub_ps)(a, b)
#define vf_mul(a, b) VFX(mul_ps)(a, b)
#define vf_div(a, b) VFX(div_ps)(a, b)
#define vf_fma(a, b, c) VFX(fmadd_ps)(a, b, c) /* a * b + c */
#define vf_max(a, b) VFX(max_ps)(a, b)
#define vf_min(a, b) VFX(min_ps)(a, b)
#define vf_as_int(v) VSI(castps)(v)
#define vi_set1(n) VFX(set1_epi32)(n)
#define vi_add(a, b) VFX(add_epi32)(a, b)
#define vi_sub(a, b) VFX(sub_epi32)(a, b)
#define vi_and(a, b) VSI(and)(a, b)
#define vi_or(a, b) VSI(or)(a, b)
#define vi_shl(a, n) VFX(slli_epi32)(a, n)
#define vi_shr(a, n) VFX(srli_epi32)(a, n)
#define vi_from_vf(v) VFX(cvtps_epi32)(v) /* round to nearest */
#define vf_from_vi(i) VFX(cvtepi32_ps)(i)

#if defined(CPU_ISA_AVX512)
#define vf_abs(a) _mm512_abs_ps(a)
#define vf_hsum(v) _mm512_reduce_add_ps(v)
#define vf_round(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vf_select_gt(x, t, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, t, _CMP_GT_OQ), b, a)
#define vf_select_eq(x, t, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, t, _CMP_EQ_OQ), b, a)
#define vf_from_int(i) _mm512_castsi512_ps(i)
#define vh_load(p) _mm256_loadu_si256((const __m256i *)(p)) /* VF_W 16-bit values */
#else
#define vf_abs(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a)
#define vf_round(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vf_select_gt(x, t, a, b) _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, t, _CMP_GT_OQ))
#define vf_select_eq(x, t, a, b) _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, t, _CMP_EQ_OQ))
#define vf_from_int(i) _mm256_castsi256_ps(i)
#define vh_load(p) _mm_loadu_si128((const __m128i *)(p))
static inline float vf_hsum(vf v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#endif
/* bf16 is the top half of an f32: widen and shift; f16 through F16C. */
static inline vf vf_load_bf16(const uint16_t *p)
{
    return vf_from_int(vi_shl(VFX(cvtepu16_epi32)(vh_load(p)), 16));
}
static inline vf vf_load_f16(const uint16_t *p) { return VFX(cvtph_ps)(vh_load(p)); }

#elif defined(CPU_ISA_NEON)
#include <arm_neon.h>
typedef float32x4_t vf;
typedef int32x4_t vint;
enum { VF_W = 4 }; /* 32 registers */
#define VF_TILE_M 4 /* rows of x per pass of the matmul tile */
#define vf_zero() vdupq_n_f32(0.0f)
#define vf_set1(f) vdupq_n_f32(f)
#define vf_load(p) vld1q_f32(p)
#define vf_store(p, v) vst1q_f32(p, v)
#define vf_add(a, b) vaddq_f32(a, b)
#define vf_sub(a, b) vsubq_f32(a, b)
#define vf_mul(a, b) vmulq_f32(a, b)
#define vf_div(a, b) vdivq_f32(a, b)
#define vf_fma(a, b, c) vfmaq_f32(c, a, b)
#define vf_max(a, b) vmaxq_f32(a, b)
#define vf_min(a, b) vminq_f32(a, b)
#define vf_abs(a) vabsq_f32(a)
#define vf_hsum(v) vaddvq_f32(v)
#define vf_round(v) vrndnq_f32(v)
#define vf_select_gt(x, t, a, b) vbslq_f32(vcgtq_f32(x, t), a, b)
#define vf_select_eq(x, t, a, b) vbslq_f32(vceqq_f32(x, t), a, b)
#define vf_as_int(v) vreinterpretq_s32_f32(v)
#define vf_from_int(i) vreinterpretq_f32_s32(i)
#define vi_set1(n) vdupq_n_s32(n)
#define vi_add(a, b) vaddq_s32(a, b)
#define vi_sub(a, b) vsubq_s32(a, b)
#define vi_and(a, b) vandq_s32(a, b)
#define vi_or(a, b) vorrq_s32(a, b)
#define vi_shl(a, n) vshlq_n_s32(a, n)
#define vi_shr(a, n) vreinterpretq_s32_u32(vshrq_n_u32(vreinterpretq_u32_s32(a), n))
#define vi_from_vf(v) vcvtnq_s32_f32(v)
#define vf_from_vi(i) vcvtq_f32_s32(i)
static inline vf vf_load_bf16(const uint16_t *p)
{
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}
static inline vf vf_load_f16(const uint16_t *p)
{
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

#elif defined(CPU_ISA_SCALAR)
/* One lane: the same generic kernels as plain C (which the compiler may
 * still vectorise with the baseline instruction set). */
#include <math.h>
typedef float vf;
typedef int32_t vint;
enum { VF_W = 1 };
#define VF_TILE_M 4 /* rows of x per pass of the matmul tile */
static inline vf vf_zero(void) { return 0.0f; }
static inline vf vf_set1(float f) { return f; }
static inline vf vf_load(const float *p) { return *p; }
static inline void vf_store(float *p, vf v) { *p = v; }
static inline vf vf_add(vf a, vf b) { return a + b; }
static inline vf vf_sub(vf a, vf b) { return a - b; }
static inline vf vf_mul(vf a, vf b) { return a * b; }
static inline vf vf_div(vf a, vf b) { return a / b; }
static inline vf vf_fma(vf a, vf b, vf c) { return a * b + c; } /* fmaf is a libm call without FMA */
static inline vf vf_max(vf a, vf b) { return a > b ? a : b; }
static inline vf vf_min(vf a, vf b) { return a < b ? a : b; }
static inline vf vf_abs(vf a) { return fabsf(a); }
static inline float vf_hsum(vf v) { return v; }
static inline vf vf_round(vf v) { return rintf(v); }
static inline vf vf_select_gt(vf x, vf t, vf a, vf b) { return x > t ? a : b; }
static inline vf vf_select_eq(vf x, vf t, vf a, vf b) { return x == t ? a : b; }
static inline vint vf_as_int(vf v) { vint i; memcpy(&i, &v, 4); return i; }
static inline vf vf_from_int(vint i) { vf v; memcpy(&v, &i, 4); return v; }
static inline vint vi_set1(int32_t n) { return n; }
static inline vint vi_add(vint a, vint b) { return (vint)((uint32_t)a + (uint32_t)b); }
static inline vint vi_sub(vint a, vint b) { return (vint)((uint32_t)a - (uint32_t)b); }
static inline vint vi_and(vint a, vint b) { return a & b; }
static inline vint vi_or(vint a, vint b) { return a | b; }
static inline vint vi_shl(vint a, int n) { return (vint)((uint32_t)a << n); }
static inline vint vi_shr(vint a, int n) { return (vint)((uint32_t)a >> n); }
static inline vint vi_from_vf(vf v) { return (vint)lrintf(v); }
static inline vf vf_from_vi(vint i) { return (vf)i; }
static inline vf vf_load_bf16(const uint16_t *p) { return eng_bf16_to_f32(*p); }
static inline vf vf_load_f16(const uint16_t *p) { return eng_f16_to_f32(*p); }

#else
#error "cpu_vec.h: define one CPU_ISA_* level before including"
#endif

/* n weights of a row in dtype dt, starting at element k, as f32. */
static inline __attribute__((always_inline)) vf vf_load_w(const void *row, eng_dtype dt, long k)
{
    if (dt == ENG_DTYPE_F32)
        return vf_load((const float *)row + k);
    if (dt == ENG_DTYPE_F16)
        return vf_load_f16((const uint16_t *)row + k);
    return vf_load_bf16((const uint16_t *)row + k);
}

/* One weight, for loop tails. */
static inline float vf_load_w1(const void *row, eng_dtype dt, long k)
{
    switch (dt) {
    case ENG_DTYPE_F32: return ((const float *)row)[k];
    case ENG_DTYPE_F16: return eng_f16_to_f32(((const uint16_t *)row)[k]);
    default: return eng_bf16_to_f32(((const uint16_t *)row)[k]);
    }
}

/* ---- int8 dot products (the quantized matmul, cpu_gen_qmatmul.h) ----------
 * vq8 holds 32 int8 weights in registers, unpacked from a block by
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
#include "engine/quant.h"
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
