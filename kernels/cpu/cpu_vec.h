/* cpu_vec.h - the vector vocabulary the generic CPU kernels are written in:
 * one float vector type `vf` of VF_W lanes and the few operations the
 * kernels need, defined once per instruction-set level.  The quantized
 * matmul's int8 vocabulary is cpu_vec_int8.h, built on this one.
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
/* The sum of 8 lanes: 128 bits onto 128, 64 onto 64, lane 1 onto lane 0.
 * Both levels' vf_hsum end with it, and their vf_hsum4 add in its order. */
static inline float x86_hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#define vf_zero() VFX(setzero_ps)()
#define vf_set1(f) VFX(set1_ps)(f)
#define vf_load(p) VFX(loadu_ps)(p)
#define vf_store(p, v) VFX(storeu_ps)(p, v)
#define vf_add(a, b) VFX(add_ps)(a, b)
#define vf_sub(a, b) VFX(sub_ps)(a, b)
#define vf_mul(a, b) VFX(mul_ps)(a, b)
#define vf_div(a, b) VFX(div_ps)(a, b)
#define vf_fma(a, b, c) VFX(fmadd_ps)(a, b, c) /* a * b + c */
/* Holds v in a register: without it the compiler folds a loaded vector
 * used by several FMAs into each of them as a memory operand, one load
 * per use. */
#define vf_keep(v) __asm__("" : "+v"(v))
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
#define vf_round(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vf_select_gt(x, t, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, t, _CMP_GT_OQ), b, a)
#define vf_select_eq(x, t, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, t, _CMP_EQ_OQ), b, a)
#define vf_from_int(i) _mm512_castsi512_ps(i)
#define vh_load(p) _mm256_loadu_si256((const __m256i *)(p)) /* VF_W 16-bit values */
#define vf_hmax(v) _mm512_reduce_max_ps(v)
/* the lanes (each in [-128, 127]) as VF_W bytes */
static inline void vi_store_i8(int8_t *p, vint v)
{
    _mm_storeu_si128((__m128i *)p, _mm512_cvtepi32_epi8(v));
}
/* The lanes' sum: the high 256 bits onto the low, then x86_hsum8.
 * vf_hsum4 adds in this same order, so a row's sum does not depend on
 * which of the two took it. */
static inline float vf_hsum(vf v)
{
    return x86_hsum8(_mm256_add_ps(_mm512_castps512_ps256(v),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}
/* out[k] = vf_hsum of the k-th vector, the four reduced side by side:
 * 14 operations where four vf_hsum take 32. */
static inline void vf_hsum4(vf a, vf b, vf c, vf d, float out[4])
{
    /* 128-bit chunks [a0+a2 a1+a3 b0+b2 b1+b3], the same for c and d */
    const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
    /* chunk k: the four partial sums of vector k */
    const __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 t = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(1, 0, 3, 2)));
    const __m512 u = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m512i first = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm_storeu_ps(out, _mm512_castps512_ps128(_mm512_permutexvar_ps(first, u)));
}
#else
#define vf_abs(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a)
#define vf_round(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vf_select_gt(x, t, a, b) _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, t, _CMP_GT_OQ))
#define vf_select_eq(x, t, a, b) _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, t, _CMP_EQ_OQ))
#define vf_from_int(i) _mm256_castsi256_ps(i)
#define vh_load(p) _mm_loadu_si128((const __m128i *)(p))
static inline float vf_hmax(vf v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}
static inline void vi_store_i8(int8_t *p, vint v)
{
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64((__m128i *)p, _mm_packs_epi16(w, w));
}
#define vf_hsum(v) x86_hsum8(v) /* in the order vf_hsum4 adds too */
/* out[k] = vf_hsum of the k-th vector, the four reduced side by side. */
static inline void vf_hsum4(vf a, vf b, vf c, vf d, float out[4])
{
    /* [a's 4 partial sums | b's], the same for c and d */
    const __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20),
                                    _mm256_permute2f128_ps(a, b, 0x31));
    const __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20),
                                    _mm256_permute2f128_ps(c, d, 0x31));
    /* [a0+a2 a1+a3 c0+c2 c1+c3 | the same for b and d] */
    const __m256 s = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    /* [a c a c | b d b d] */
    const __m256 t = _mm256_add_ps(_mm256_shuffle_ps(s, s, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm256_shuffle_ps(s, s, _MM_SHUFFLE(3, 1, 3, 1)));
    _mm_storeu_ps(out, _mm_unpacklo_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)));
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
#define vf_keep(v) __asm__("" : "+w"(v))
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
/* (v0 + v1) + (v2 + v3), as vf_hsum4 adds them too */
static inline float vf_hsum(vf v)
{
    const float32x4_t p = vpaddq_f32(v, v);
    return vgetq_lane_f32(vpaddq_f32(p, p), 0);
}
/* out[k] = vf_hsum of the k-th vector, the four reduced side by side. */
static inline void vf_hsum4(vf a, vf b, vf c, vf d, float out[4])
{
    vst1q_f32(out, vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d)));
}
#define vf_hmax(v) vmaxvq_f32(v)
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
static inline void vi_store_i8(int8_t *p, vint v)
{
    const int16x4_t h = vmovn_s32(v);
    int8_t t[8];
    vst1_s8(t, vmovn_s16(vcombine_s16(h, h)));
    memcpy(p, t, 4);
}

#elif defined(CPU_ISA_SCALAR)
/* One lane: the same generic kernels as plain C (which the compiler may
 * still vectorise with the baseline instruction set). */
#include <math.h>
typedef float vf;
typedef int32_t vint;
enum { VF_W = 1 };
#define VF_TILE_M 4 /* rows of x per pass of the matmul tile */
#define vf_keep(v) ((void)(v))
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
static inline void vf_hsum4(vf a, vf b, vf c, vf d, float out[4])
{
    out[0] = a, out[1] = b, out[2] = c, out[3] = d;
}
static inline float vf_hmax(vf v) { return v; }
static inline void vi_store_i8(int8_t *p, vint v) { *p = (int8_t)v; }
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

#endif
