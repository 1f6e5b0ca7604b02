/* cpu_math.h - exp, log, softplus and silu on the vector type of
 * cpu_vec.h, written once for every level, plus libm scalar versions for
 * loop tails.
 *
 * Accurate to a few ulp (the engine must match PyTorch to 1e-4 relative);
 * only IEEE adds, multiplies, divides and integer bit operations, so the
 * results are the same at every level up to FMA contraction.  Header-only,
 * static inline; include cpu_vec.h first.  Never uses approximate
 * reciprocal or exponent instructions.
 */
#ifndef SSMD_CPU_MATH_H
#define SSMD_CPU_MATH_H

#include <math.h>

/* PyTorch's softplus(beta=1, threshold=20). */
static inline float cpu_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
static inline float cpu_silu(float x) { return x / (1.0f + expf(-x)); }

#if defined(SSMD_CPU_VEC_H)
/* c[0] x^(n-1) + ... + c[n-1] by Horner's rule; c is a constant table, so
 * the loop unrolls into n-1 FMAs on broadcast constants. */
static inline vf vf_poly(vf x, const float *c, int n)
{
    vf p = vf_set1(c[0]);
    for (int i = 1; i < n; i++)
        p = vf_fma(p, x, vf_set1(c[i]));
    return p;
}

/* 2^n for integer-valued n in [-126, 127], from the exponent bits. */
static inline vf vf_pow2i(vf n)
{
    return vf_from_int(vi_shl(vi_add(vi_from_vf(n), vi_set1(127)), 23));
}

/* exp(x): x = n ln2 + r with |r| <= ln2/2 (Cody-Waite split of ln2), a
 * degree-7 Taylor polynomial for e^r, then scale by 2^n in two halves so
 * that n down to -150 (x down to -104) lands in the subnormals with one
 * rounding instead of flushing.  About 1 ulp. */
static inline vf vf_exp(vf x)
{
    x = vf_max(vf_min(x, vf_set1(88.7f)), vf_set1(-104.0f));
    vf n = vf_round(vf_mul(x, vf_set1(1.44269504088896341f)));
    vf r = vf_sub(x, vf_mul(n, vf_set1(0.693359375f)));
    r = vf_sub(r, vf_mul(n, vf_set1(-2.12194440e-4f)));
    static const float taylor[] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24,
                                   1.0f / 6,    0.5f,       1.0f,       1.0f};
    vf p = vf_poly(r, taylor, 8);
    vf n1 = vf_round(vf_mul(n, vf_set1(0.5f)));
    return vf_mul(vf_mul(p, vf_pow2i(n1)), vf_pow2i(vf_sub(n, n1)));
}

/* log(v) for normal positive v: v = m 2^e with m in [0.75, 1.5), then
 * log(m) = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.2, odd series to s^11. */
static inline vf vf_log(vf v)
{
    vint bits = vf_as_int(v);
    vf e = vf_from_vi(vi_sub(vi_shr(bits, 23), vi_set1(127)));
    vf m = vf_from_int(vi_or(vi_and(bits, vi_set1(0x7fffff)), vi_set1(0x3f800000)));
    vf big = vf_set1(1.5f);
    e = vf_select_gt(m, big, vf_add(e, vf_set1(1.0f)), e);
    m = vf_select_gt(m, big, vf_mul(m, vf_set1(0.5f)), m);
    vf s = vf_div(vf_sub(m, vf_set1(1.0f)), vf_add(m, vf_set1(1.0f)));
    vf s2 = vf_mul(s, s);
    static const float atanh_series[] = {2.0f / 11, 2.0f / 9, 2.0f / 7, 2.0f / 5, 2.0f / 3, 2.0f};
    vf p = vf_poly(s2, atanh_series, 6);
    return vf_fma(e, vf_set1(0.693147180559945309f), vf_mul(p, s));
}

/* softplus(x) = max(x, 0) + log1p(exp(-|x|)), with log1p(u) computed as
 * log(1+u) * u / ((1+u) - 1) so that tiny u keep full relative accuracy
 * (u itself where 1+u rounds to 1); x > 20 returns x as PyTorch does. */
static inline vf vf_softplus(vf x)
{
    const vf zero = vf_zero(), one = vf_set1(1.0f);
    vf u = vf_exp(vf_sub(zero, vf_abs(x)));
    vf v = vf_add(one, u);
    vf dv = vf_sub(v, one);
    vf ratio = vf_div(u, vf_select_eq(dv, zero, one, dv));
    vf log1p_u = vf_select_eq(dv, zero, u, vf_mul(vf_log(v), ratio));
    vf r = vf_add(vf_max(x, zero), log1p_u);
    return vf_select_gt(x, vf_set1(20.0f), x, r);
}

static inline vf vf_silu(vf x)
{
    return vf_div(x, vf_add(vf_set1(1.0f), vf_exp(vf_sub(vf_zero(), x))));
}
#endif

#endif
