/* cpu_math.h - vector exp, softplus and silu for the CPU kernels.
 *
 * AVX-512 versions accurate to a few ulp (the engine must match PyTorch to
 * 1e-4 relative), and scalar versions built on libm that the kernels use on
 * machines without AVX-512 and for loop tails.  Header-only (static inline).
 */
#ifndef SSMD_CPU_MATH_H
#define SSMD_CPU_MATH_H

#include <math.h>

/* PyTorch's softplus(beta=1, threshold=20). */
static inline float cpu_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
static inline float cpu_silu(float x) { return x / (1.0f + expf(-x)); }

#if defined(__AVX512F__)
#include <immintrin.h>
#define CPU_HAVE_AVX512 1

/* exp(x): x = n ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), a
 * degree-7 Taylor/minimax-like polynomial for e^r, then scale by 2^n.
 * Relative error about 1 ulp over the range that does not over/underflow;
 * x below -87.3 flushes towards 0 gracefully through scalef. */
static inline __m512 cpu_exp16(__m512 x)
{
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693359375f);
    const __m512 ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* log(v) for v in [1, 2^24]: v = m 2^e with m in [0.75, 1.5), then
 * log(m) = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.2, odd series to s^11. */
static inline __m512 cpu_log16(__m512 v)
{
    __m512 e = _mm512_getexp_ps(v);                        /* floor(log2 v) */
    __m512 m = _mm512_getmant_ps(v, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src);
    __mmask16 big = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.5f), _CMP_GE_OQ);
    m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5f));
    e = _mm512_mask_add_ps(e, big, e, _mm512_set1_ps(1.0f));
    __m512 s = _mm512_div_ps(_mm512_sub_ps(m, _mm512_set1_ps(1.0f)),
                             _mm512_add_ps(m, _mm512_set1_ps(1.0f)));
    __m512 s2 = _mm512_mul_ps(s, s);
    __m512 p = _mm512_set1_ps(2.0f / 11.0f);
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(2.0f / 9.0f));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(2.0f / 7.0f));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(2.0f / 5.0f));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(2.0f / 3.0f));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(2.0f));
    __m512 logm = _mm512_mul_ps(p, s);
    return _mm512_fmadd_ps(e, _mm512_set1_ps(0.693147180559945309f), logm);
}

/* softplus(x) = max(x, 0) + log1p(exp(-|x|)), with log1p(u) computed as
 * log(1+u) * u / ((1+u) - 1) so that tiny u keep full relative accuracy;
 * x > 20 returns x as PyTorch does. */
static inline __m512 cpu_softplus16(__m512 x)
{
    __m512 ax = _mm512_abs_ps(x);
    __m512 u = cpu_exp16(_mm512_sub_ps(_mm512_setzero_ps(), ax));
    __m512 v = _mm512_add_ps(_mm512_set1_ps(1.0f), u);
    __m512 dv = _mm512_sub_ps(v, _mm512_set1_ps(1.0f));
    __m512 l = cpu_log16(v);
    __mmask16 exact = _mm512_cmp_ps_mask(dv, _mm512_setzero_ps(), _CMP_EQ_OQ);
    __m512 log1p_u = _mm512_mask_blend_ps(exact, _mm512_mul_ps(l, _mm512_div_ps(u, dv)), u);
    __m512 r = _mm512_add_ps(_mm512_max_ps(x, _mm512_setzero_ps()), log1p_u);
    __mmask16 lin = _mm512_cmp_ps_mask(x, _mm512_set1_ps(20.0f), _CMP_GT_OQ);
    return _mm512_mask_blend_ps(lin, r, x);
}

static inline __m512 cpu_silu16(__m512 x)
{
    __m512 e = cpu_exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}
#endif

#endif
