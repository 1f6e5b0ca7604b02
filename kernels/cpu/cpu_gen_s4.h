/* cpu_gen_s4.h - the S4 / S4D recurrence on groups of 16 channels (the
 * diagonal walk, the DPLR step in its Woodbury form, the batched diagonal
 * decode step), written once with GCC/Clang vector extensions.
 *
 * A template: included by cpu_gen_table.h inside each cpu_isa_*.c, so the
 * same code is compiled once per level (AVX-512, AVX2, NEON, baseline) and
 * the backend picks the build at run time; every function is static.  Never
 * include it anywhere else.  The threading, the scan over time chunks and
 * the convolution view are in cpu_s4.c.  Layouts are those of bk_s4_layer
 * (backend.h): complex vectors as a real and an imaginary plane of (N2, H).
 */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_s4.h"

/* v16 values are passed between static functions of one translation unit,
 * so GCC's note that a 64-byte vector argument's ABI depends on AVX-512
 * concerns no caller outside. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

static inline float gen_gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

/* 16 channels as one vector (one zmm with AVX-512, two ymm with AVX2, four
 * q registers with NEON, whatever the baseline has otherwise).  A group at
 * the end of the channels may be narrower (w < VW): loads pad with zeros and
 * stores write w lanes. */
typedef float v16 __attribute__((vector_size(64)));
enum { VW = CPU_S4_GROUP, TT = 64, BB = CPU_S4_STEP_SLOTS };

static inline v16 ldw(const float *p, int w)
{
    v16 v = {0};
    if (w == VW)
        memcpy(&v, p, sizeof v); /* one unaligned vector load */
    else
        memcpy(&v, p, (size_t)w * sizeof(float));
    return v;
}

static inline void stw(float *p, v16 v, int w)
{
    if (w == VW)
        memcpy(p, &v, sizeof v);
    else
        memcpy(p, &v, (size_t)w * sizeof(float));
}

/* Output modes: CPU_S4_OUT_* (cpu_kernels.h). */
enum { OUT_ACT = CPU_S4_OUT_ACT, OUT_RAW = CPU_S4_OUT_RAW, OUT_FIX = CPU_S4_OUT_FIX };

static void gen_out_row(const bk_s4_layer *l, v16 acc, const float *ut, float *yt, int h0, int w,
                    int mode)
{
    float a[VW];
    memcpy(a, &acc, sizeof a);
    for (int k = 0; k < w; k++) {
        if (mode == OUT_RAW)
            yt[k] = a[k];
        else
            yt[k] = gen_gelu((mode == OUT_FIX ? yt[k] : 0.0f) + a[k] + l->D[h0 + k] * ut[k]);
    }
}

/* Diagonal layer, channels [h0, h0 + w), T steps from `state` (2, N2, H),
 * left final; input row t at u + t * ldu, output row t at y + t * ldy.
 * Time is tiled so that each pair's state and coefficients stay in
 * registers across a tile. */
static void gen_diag_group(const bk_s4_layer *l, float *state, const float *u, long ldu, int T,
                       float *y, long ldy, int h0, int w, int mode)
{
    const int H = l->H, N2 = l->N2;
    const size_t pl = (size_t)N2 * H;
    v16 acc[TT], uu[TT];
    for (int t0 = 0; t0 < T; t0 += TT) {
        int tt = T - t0 < TT ? T - t0 : TT;
        for (int t = 0; t < tt; t++) {
            uu[t] = ldw(u + (size_t)(t0 + t) * ldu + h0, w);
            acc[t] = (v16){0};
        }
        for (int n = 0; n < N2; n++) {
            size_t o = (size_t)n * H + h0;
            v16 ar = ldw(l->dA + o, w), ai = ldw(l->dA + pl + o, w);
            v16 br = ldw(l->dB + o, w), bi = ldw(l->dB + pl + o, w);
            v16 cr = ldw(l->dC + o, w), ci = ldw(l->dC + pl + o, w);
            v16 xr = ldw(state + o, w), xi = ldw(state + pl + o, w);
            if (mode == OUT_FIX)
                br = bi = (v16){0};
            for (int t = 0; t < tt; t++) {
                v16 r = ar * xr - ai * xi + br * uu[t];
                v16 i = ar * xi + ai * xr + bi * uu[t];
                xr = r;
                xi = i;
                acc[t] += cr * r - ci * i;
            }
            stw(state + o, xr, w);
            stw(state + pl + o, xi, w);
        }
        for (int t = 0; t < tt; t++)
            gen_out_row(l, acc[t], u + (size_t)(t0 + t) * ldu + h0, y + (size_t)(t0 + t) * ldy + h0,
                    h0, w, mode);
    }
}

/* DPLR layer, as diag_group: the bilinear step in its Woodbury form,
 * O(rank * N) per channel and step (see bk_s4_layer); three passes over
 * the pairs per step, all 16 channels wide. */
static void gen_dplr_group(const bk_s4_layer *l, float *state, const float *u, long ldu, int T,
                       float *y, long ldy, int h0, int w, int mode)
{
    const int H = l->H, N2 = l->N2, R = l->rank;
    const size_t pl = (size_t)N2 * H;
    v16 s[CPU_S4_MAX_RANK], tr[CPU_S4_MAX_RANK];
    for (int t = 0; t < T; t++) {
        const float *ut = u + (size_t)t * ldu + h0;
        v16 uu = ldw(ut, w), acc = {0};
        for (int r = 0; r < R; r++)
            s[r] = tr[r] = (v16){0};
        /* s_r = 2 Re sum_n conj(P_rn) x_n */
        for (int n = 0; n < N2; n++) {
            size_t o = (size_t)n * H + h0;
            v16 xr = ldw(state + o, w), xi = ldw(state + pl + o, w);
            for (int r = 0; r < R; r++) {
                const float *pr = l->P + r * 2 * pl + o;
                s[r] += ldw(pr, w) * xr + ldw(pr + pl, w) * xi;
            }
        }
        for (int r = 0; r < R; r++)
            s[r] *= 2.0f;
        /* v = E x - P s + dB u, in place of x; t_r = 2 Re sum_n R_rn v_n */
        for (int n = 0; n < N2; n++) {
            size_t o = (size_t)n * H + h0;
            v16 xr = ldw(state + o, w), xi = ldw(state + pl + o, w);
            v16 er = ldw(l->dA + o, w), ei = ldw(l->dA + pl + o, w);
            v16 vr = er * xr - ei * xi, vi = er * xi + ei * xr;
            if (mode != OUT_FIX) {
                vr += ldw(l->dB + o, w) * uu;
                vi += ldw(l->dB + pl + o, w) * uu;
            }
            for (int r = 0; r < R; r++) {
                const float *pr = l->P + r * 2 * pl + o;
                vr -= ldw(pr, w) * s[r];
                vi -= ldw(pr + pl, w) * s[r];
            }
            for (int r = 0; r < R; r++) {
                const float *rr = l->R + r * 2 * pl + o;
                tr[r] += ldw(rr, w) * vr - ldw(rr + pl, w) * vi;
            }
            stw(state + o, vr, w);
            stw(state + pl + o, vi, w);
        }
        for (int r = 0; r < R; r++)
            tr[r] *= 2.0f;
        /* x' = Dinv (v - P t); y = Re sum_n dC_n x'_n */
        for (int n = 0; n < N2; n++) {
            size_t o = (size_t)n * H + h0;
            v16 vr = ldw(state + o, w), vi = ldw(state + pl + o, w);
            for (int r = 0; r < R; r++) {
                const float *pr = l->P + r * 2 * pl + o;
                vr -= ldw(pr, w) * tr[r];
                vi -= ldw(pr + pl, w) * tr[r];
            }
            v16 dr = ldw(l->Dinv + o, w), di = ldw(l->Dinv + pl + o, w);
            v16 nr = dr * vr - di * vi, ni = dr * vi + di * vr;
            acc += ldw(l->dC + o, w) * nr - ldw(l->dC + pl + o, w) * ni;
            stw(state + o, nr, w);
            stw(state + pl + o, ni, w);
        }
        gen_out_row(l, acc, ut, y + (size_t)t * ldy + h0, h0, w, mode);
    }
}

/* Channels [h0, h1) of any layer, T steps on one state. */
static void gen_s4_block(const bk_s4_layer *l, float *state, const float *u, long ldu, int T,
                         float *y, long ldy, int h0, int h1, int mode)
{
    for (int h = h0; h < h1; h += VW) {
        int w = h1 - h < VW ? h1 - h : VW;
        if (l->rank > 0)
            gen_dplr_group(l, state, u, ldu, T, y, ldy, h, w, mode);
        else
            gen_diag_group(l, state, u, ldu, T, y, ldy, h, w, mode);
    }
}

/* Decode of a diagonal layer: one step for slots [b0, b1) of channels
 * [h0, h0 + w), coefficients loaded once for all the slots. */
static void gen_s4_diag_step(const bk_s4_layer *l, const bk_state_ref *st, const float *u, float *y,
                            int h0, int w, int b0, int b1)
{
    const int H = l->H, N2 = l->N2;
    const size_t pl = (size_t)N2 * H;
    v16 acc[BB], uu[BB];
    for (int b = b0; b < b1; b++) {
        uu[b - b0] = ldw(u + (size_t)b * H + h0, w);
        acc[b - b0] = (v16){0};
    }
    for (int n = 0; n < N2; n++) {
        size_t o = (size_t)n * H + h0;
        v16 ar = ldw(l->dA + o, w), ai = ldw(l->dA + pl + o, w);
        v16 br = ldw(l->dB + o, w), bi = ldw(l->dB + pl + o, w);
        v16 cr = ldw(l->dC + o, w), ci = ldw(l->dC + pl + o, w);
        for (int b = b0; b < b1; b++) {
            float *x = st->pool + (size_t)st->slots[b] * st->slot_stride + st->ssm_offset + o;
            v16 xr = ldw(x, w), xi = ldw(x + pl, w);
            v16 r = ar * xr - ai * xi + br * uu[b - b0];
            v16 i = ar * xi + ai * xr + bi * uu[b - b0];
            stw(x, r, w);
            stw(x + pl, i, w);
            acc[b - b0] += cr * r - ci * i;
        }
    }
    for (int b = b0; b < b1; b++)
        gen_out_row(l, acc[b - b0], u + (size_t)b * H + h0, y + (size_t)b * H + h0, h0, w, OUT_ACT);
}

