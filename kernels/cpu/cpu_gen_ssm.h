/* cpu_gen_ssm.h - the Mamba-1 mixer's per-channel kernels (causal depthwise
 * conv1d + SiLU, selective scan), written once on cpu_vec.h's vector type.
 *
 * A template: included by cpu_gen_table.h inside each cpu_isa_*.c; every
 * function is static.  Never include it anywhere else.  The threading, the
 * prefill/decode views and the slot addressing are in cpu_ssm.c.  Within a
 * call the scan vectorises across VF_W channels at a time with their SSM
 * state held in registers (or L1) for the whole sequence, so time is walked
 * in order with no horizontal reductions.
 */
#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/cpu_ssm.h"

enum { GEN_SCAN_PF = 64 }; /* floats: 256 bytes ahead in each row of the state */

static void gen_silu_inplace(float *v, long n)
{
    long i = 0;
    for (; i + VF_W <= n; i += VF_W)
        vf_store(v + i, vf_silu(vf_load(v + i)));
    for (; i < n; i++)
        v[i] = cpu_silu(v[i]);
}

/* Channels [e0, e1) of the causal conv over T steps.  Input row t of x is
 * at x + t * ldx; window (d_conv-1, d_inner) holds the inputs before t = 0
 * (oldest first) and is left holding the last d_conv-1 inputs. */
static void gen_conv_channels(const bk_ssm_layer *l, float *window, const float *x, long ldx, int T,
                              float *xc, long ldxc, long e0, long e1)
{
    const long E = l->d_inner;
    const int K = l->d_conv;
    for (int t = 0; t < T; t++) {
        float *out = xc + (size_t)t * ldxc;
        for (long e = e0; e < e1; e++)
            out[e] = l->conv_b ? l->conv_b[e] : 0.0f;
        for (int k = 0; k < K; k++) {
            long src_t = (long)t + k - (K - 1);
            const float *src = src_t >= 0 ? x + (size_t)src_t * ldx
                                          : window + (size_t)(src_t + K - 1) * E;
            const float *w = l->conv_w + (size_t)k * E;
            for (long e = e0; e < e1; e++)
                out[e] += w[e] * src[e];
        }
        gen_silu_inplace(out + e0, e1 - e0);
    }
    /* Shift: new row j holds input at time T-(K-1)+j.  Sources are rows at
     * or after j of the old window, so ascending j never reads a row it
     * already overwrote. */
    for (int j = 0; j < K - 1; j++) {
        long src_t = (long)T - (K - 1) + j;
        const float *src = src_t >= 0 ? x + (size_t)src_t * ldx : window + (size_t)(T + j) * E;
        float *dst = window + (size_t)j * E;
        for (long e = e0; e < e1; e++)
            dst[e] = src[e];
    }
}

/* Channels [e0, e1) of the selective scan over T steps, see backend.h.
 * Row strides: x/dt/y rows are d_inner apart (ldx), z rows ldz, dbc rows
 * ldd.  state is (d_state, d_inner). */
static void gen_scan_channels(const bk_ssm_layer *l, float *state, const float *x, const float *dt,
                              const float *z, long ldx, long ldz, const float *dbc, long ldd, int T,
                              float *y, long e0, long e1)
{
    const long E = l->d_inner;
    const int N = l->d_state, R = l->dt_rank;
    long e = e0;
    vf h[CPU_SSM_MAX_STATE];
    for (; e + VF_W <= e1; e += VF_W) {
        /* The state and A rows are N streams VF_W floats wide: prefetched
         * GEN_SCAN_PF floats on, or each vector of channels waits for
         * memory N times (decode reads them once per step, cold) */
        for (int n = 0; n < N && e + GEN_SCAN_PF < e1; n++) {
            __builtin_prefetch(state + (size_t)n * E + e + GEN_SCAN_PF, 1, 3);
            __builtin_prefetch(l->A + (size_t)n * E + e + GEN_SCAN_PF, 0, 3);
        }
        for (int n = 0; n < N; n++)
            h[n] = vf_load(state + (size_t)n * E + e);
        const vf bias = vf_load(l->dt_bias + e), Dv = vf_load(l->D + e);
        for (int t = 0; t < T; t++) {
            const float *Bt = dbc + (size_t)t * ldd + R, *Ct = Bt + N;
            vf dtv = vf_softplus(vf_add(vf_load(dt + (size_t)t * ldx + e), bias));
            vf xv = vf_load(x + (size_t)t * ldx + e);
            vf yv = vf_zero();
            for (int n = 0; n < N; n++) {
                vf dA = vf_exp(vf_mul(dtv, vf_load(l->A + (size_t)n * E + e)));
                vf dBx = vf_mul(vf_mul(dtv, vf_set1(Bt[n])), xv);
                h[n] = vf_fma(dA, h[n], dBx);
                yv = vf_fma(h[n], vf_set1(Ct[n]), yv);
            }
            yv = vf_fma(xv, Dv, yv);
            yv = vf_mul(yv, vf_silu(vf_load(z + (size_t)t * ldz + e)));
            vf_store(y + (size_t)t * ldx + e, yv);
        }
        for (int n = 0; n < N; n++)
            vf_store(state + (size_t)n * E + e, h[n]);
    }
    /* channels past the last full vector (d_inner not a multiple of VF_W) */
    for (; e < e1; e++) {
        for (int t = 0; t < T; t++) {
            const float *Bt = dbc + (size_t)t * ldd + R, *Ct = Bt + N;
            float dtv = cpu_softplus(dt[(size_t)t * ldx + e] + l->dt_bias[e]);
            float xv = x[(size_t)t * ldx + e];
            float yv = 0.0f;
            for (int n = 0; n < N; n++) {
                float *hn = state + (size_t)n * E + e;
                float dA = expf(dtv * l->A[(size_t)n * E + e]);
                *hn = dA * *hn + (dtv * Bt[n]) * xv;
                yv += *hn * Ct[n];
            }
            yv += xv * l->D[e];
            y[(size_t)t * ldx + e] = yv * cpu_silu(z[(size_t)t * ldz + e]);
        }
    }
}

static void gen_math(cpu_math_fn fn, const float *x, long n, float *y)
{
    long i = 0;
    for (; i + VF_W <= n; i += VF_W) {
        vf v = vf_load(x + i);
        vf_store(y + i, fn == CPU_MATH_EXP ? vf_exp(v) : fn == CPU_MATH_SOFTPLUS ? vf_softplus(v)
                                                                                 : vf_silu(v));
    }
    for (; i < n; i++)
        y[i] = fn == CPU_MATH_EXP ? expf(x[i]) : fn == CPU_MATH_SOFTPLUS ? cpu_softplus(x[i])
                                                                         : cpu_silu(x[i]);
}
