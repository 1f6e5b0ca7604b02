/* kc_s4.cuh - the DPLR (Woodbury) step of the S4 family that s4.cu (the
 * walk in token order, decode) and dplr_scan.cu (the chunked prefill)
 * share, so that every path takes the same arithmetic per token as
 * kernels/cpu/cpu_gen_s4.h.  Device code only.
 */
#ifndef SSMD_KC_S4_CUH
#define SSMD_KC_S4_CUH

#include "kernels/cuda/kc_device.cuh"

/* One token of channel h of a DPLR layer from state (the planes of
 * bk_s4_layer), updated in place; returns Re sum_n dC_n x'_n. */
static __device__ inline float s4_dplr_token(const kc_s4_args &a, float *state, int h, float u)
{
    const int H = a.H, N2 = a.N2, R = a.R;
    const size_t pl = (size_t)N2 * H;
    float acc = 0.0f;
    float s[KC_S4_MAX_RANK], t[KC_S4_MAX_RANK];
    for (int r = 0; r < R; r++)
        s[r] = t[r] = 0.0f;
    for (int n = 0; n < N2; n++) { /* s_r = 2 Re sum_n conj(P_rn) x_n */
        const size_t o = (size_t)n * H + h;
        for (int r = 0; r < R; r++)
            s[r] += a.P[r * 2 * pl + o] * state[o] + a.P[r * 2 * pl + pl + o] * state[pl + o];
    }
    for (int n = 0; n < N2; n++) { /* v = E x - P s + dB u; t_r = 2 Re sum_n R_rn v_n */
        const size_t o = (size_t)n * H + h;
        const float xr = state[o], xi = state[pl + o], er = a.dA[o], ei = a.dA[pl + o];
        float vr = er * xr - ei * xi + a.dB[o] * u, vi = er * xi + ei * xr + a.dB[pl + o] * u;
        for (int r = 0; r < R; r++) {
            vr -= a.P[r * 2 * pl + o] * 2.0f * s[r];
            vi -= a.P[r * 2 * pl + pl + o] * 2.0f * s[r];
        }
        for (int r = 0; r < R; r++)
            t[r] += a.Rw[r * 2 * pl + o] * vr - a.Rw[r * 2 * pl + pl + o] * vi;
        state[o] = vr, state[pl + o] = vi;
    }
    for (int n = 0; n < N2; n++) { /* x' = Dinv (v - P t) */
        const size_t o = (size_t)n * H + h;
        float vr = state[o], vi = state[pl + o];
        for (int r = 0; r < R; r++) {
            vr -= a.P[r * 2 * pl + o] * 2.0f * t[r];
            vi -= a.P[r * 2 * pl + pl + o] * 2.0f * t[r];
        }
        const float dr = a.Dinv[o], di = a.Dinv[pl + o];
        const float nr = dr * vr - di * vi, ni = dr * vi + di * vr;
        state[o] = nr, state[pl + o] = ni;
        acc += a.dC[o] * nr - a.dC[pl + o] * ni;
    }
    return acc;
}

/* Channel h of a DPLR layer over T tokens from state, left final: input
 * row t at u + t * H (u NULL: zero input), and, when y is not NULL, the
 * final output gelu(Re dC x' + D u) to row t of y. */
static __device__ inline void s4_dplr_walk(const kc_s4_args &a, float *state, int h, const float *u,
                                           float *y, int T)
{
    for (int t = 0; t < T; t++) {
        const float ut = u ? u[(size_t)t * a.H + h] : 0.0f;
        const float out = s4_dplr_token(a, state, h, ut);
        if (y)
            y[(size_t)t * a.H + h] = kc_gelu(out + a.D[h] * ut);
    }
}

#endif
