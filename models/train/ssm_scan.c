/* ssm_scan.c - the Mamba-1 selective scan for training on the CPU, forward
 * and backward, fused (no [B, L, Di, N] temporaries except the saved states).
 * Built by train_mamba.py into a shared library and called through ctypes;
 * part of the training tools only, never of ssmd (the Makefile's models/*.c
 * wildcard does not reach models/train/).
 *
 * It must never allocate, keep state between calls or use threads: the
 * caller owns every buffer, and the order of every sum is fixed, so results
 * are reproducible bit for bit on one machine.
 *
 * Math (transformers' MambaMixer slow path), per batch row b, channel d,
 * state n, step t (all float32, row-major):
 *   a = exp(dt[b,t,d] * A[d,n])
 *   s[t] = a * s[t-1] + dt[b,t,d] * x[b,t,d] * Bm[b,t,n]     s[-1] = 0
 *   y[b,t,d] = sum_n s[t][d,n] * Cm[b,t,n]
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

/* The state size is fixed at compile time (train_mamba.py passes -DSSM_N=N)
 * so that the inner loops are whole SIMD vectors. */
#ifndef SSM_N
#define SSM_N 16
#endif
#define N SSM_N

/* x, dt: [B, L, Di]; A: [Di, N]; Bm, Cm: [B, L, N]; y: [B, L, Di] out;
 * S: [B, L, Di, N] out (every state, for the backward pass).
 * work: [Di*N] scratch. */
void ssm_scan_fwd(int B, int L, int Di, const float *restrict x, const float *restrict dt,
                  const float *restrict A, const float *restrict Bm, const float *restrict Cm,
                  float *restrict y, float *restrict S, float *restrict work)
{
    const size_t dn = (size_t)Di * N;
    for (int b = 0; b < B; b++) {
        memset(work, 0, sizeof(float) * dn);
        const float *sp = work; /* s[t-1] */
        for (int t = 0; t < L; t++) {
            size_t bt = (size_t)b * L + t;
            const float *restrict xt = x + bt * Di, *restrict dtt = dt + bt * Di;
            const float *restrict bv = Bm + bt * N, *restrict cv = Cm + bt * N;
            float *restrict st = S + bt * dn, *restrict yt = y + bt * Di;
            for (int d = 0; d < Di; d++) {
                float dl = dtt[d], dx = dl * xt[d], acc = 0.0f;
                const float *restrict ad = A + (size_t)d * N, *restrict pd = sp + (size_t)d * N;
                float *restrict sd = st + (size_t)d * N;
                for (int n = 0; n < N; n++) {
                    float v = expf(dl * ad[n]) * pd[n] + dx * bv[n];
                    sd[n] = v;
                    acc += v * cv[n];
                }
                yt[d] = acc;
            }
            sp = st;
        }
    }
}

/* Gradients given dy [B, L, Di] and the states S from ssm_scan_fwd.
 * dx, ddt: [B, L, Di]; dA: [Di, N]; dBm, dCm: [B, L, N]: all written
 * (not accumulated into).  work: [2*Di*N] scratch. */
void ssm_scan_bwd(int B, int L, int Di, const float *restrict x, const float *restrict dt,
                  const float *restrict A, const float *restrict Bm, const float *restrict Cm,
                  const float *restrict S, const float *restrict dy, float *restrict dx,
                  float *restrict ddt, float *restrict dA, float *restrict dBm,
                  float *restrict dCm, float *restrict work)
{
    const size_t dn = (size_t)Di * N;
    float *restrict lam = work;            /* a[t+1] * dLoss/ds[t+1] */
    float *restrict zero = work + dn;      /* s[-1] */
    memset(dA, 0, sizeof(float) * dn);
    memset(zero, 0, sizeof(float) * dn);
    for (int b = 0; b < B; b++) {
        memset(lam, 0, sizeof(float) * dn);
        for (int t = L - 1; t >= 0; t--) {
            size_t bt = (size_t)b * L + t;
            const float *restrict xt = x + bt * Di, *restrict dtt = dt + bt * Di;
            const float *restrict dyt = dy + bt * Di;
            const float *restrict bv = Bm + bt * N, *restrict cv = Cm + bt * N;
            const float *restrict st = S + bt * dn;
            const float *restrict sp = t > 0 ? st - dn : zero;
            float dbv[N], dcv[N];
            for (int n = 0; n < N; n++)
                dbv[n] = dcv[n] = 0.0f;
            for (int d = 0; d < Di; d++) {
                float dl = dtt[d], xd = xt[d], dxd = dl * xd, g = dyt[d];
                float *restrict ld = lam + (size_t)d * N, *restrict dad = dA + (size_t)d * N;
                const float *restrict ad = A + (size_t)d * N, *restrict sd = st + (size_t)d * N;
                const float *restrict pd = sp + (size_t)d * N;
                float gdt = 0.0f, gdx = 0.0f;
                for (int n = 0; n < N; n++) {
                    float a = expf(dl * ad[n]);
                    float gs = g * cv[n] + ld[n]; /* dLoss/ds[t] */
                    float ga = gs * pd[n] * a;    /* dLoss/d(dt*A) */
                    dcv[n] += g * sd[n];
                    dbv[n] += gs * dxd;
                    gdx += gs * bv[n];
                    gdt += ga * ad[n];
                    dad[n] += ga * dl;
                    ld[n] = gs * a;
                }
                dx[bt * Di + d] = gdx * dl;
                ddt[bt * Di + d] = gdt + gdx * xd;
            }
            memcpy(dBm + bt * N, dbv, sizeof dbv);
            memcpy(dCm + bt * N, dcv, sizeof dcv);
        }
    }
}
