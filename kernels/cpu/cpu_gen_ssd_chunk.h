/* cpu_gen_ssd_chunk.h - one chunk of the Mamba-2 (SSD) prefill in the
 * quadratic (matmul) form of Dao & Gu, "Transformers are SSMs" (2024),
 * written once on cpu_vec.h's vector type.
 *
 * A template: included by cpu_gen_table.h inside each cpu_isa_*.c after
 * cpu_gen_matmul.h, whose gen_gemv_rows does every product here, so each
 * level multiplies with its own kernel; every function is static.  Never
 * include it anywhere else.  cpu_ssd.c walks the chunks and splits heads
 * over threads; cpu_gen_ssd.h is the token-by-token form it must equal.
 *
 * For head h (group g) over a chunk of Q tokens, with a_t = dt_t A and
 * cum_t = a_0 + ... + a_t, stepping token by token from s_in gives
 *   s_t = exp(cum_t) s_in + sum_{j<=t} exp(cum_t - cum_j) dt_j x_j B_j^T,
 *   y_t = s_t C_t + D x_t,
 * which as matmuls over the chunk is
 *   y    = ((C B^T) o L) diag(dt) X  +  diag(exp(cum)) C s_in^T  +  D X,
 *          L[t][j] = exp(cum_t - cum_j) for j <= t, 0 above;
 *   s_out = exp(cum_last) s_in + X^T diag(dt exp(cum_last - cum)) B.
 * gen_gemv_rows computes x W^T, which wants the summed index contiguous in
 * both operands, so B (per group) and X (per head) are transposed into the
 * scratch first; C B^T is shared by the heads of a group.
 */
#include "kernels/cpu/cpu_math.h"

/* y (m, R; stride ldy) = x (m, K; stride ldx) W^T, W (R, K; stride ldw)
 * f32: the level's matmul on a view. */
static void gen_ssd_mm(const float *w, long ldw, int R, int K, const float *x, long ldx, int m,
                       float *y, long ldy)
{
    const bk_matrix view = {.data = w, .row_bytes = (uint64_t)ldw * sizeof(float),
                            .dtype = ENG_DTYPE_F32, .rows = R, .cols = K};
    gen_gemv_rows(&view, x, (int)ldx, m, y, (int)ldy, NULL, 0, R);
}

/* dst (cols, rows) = src (rows, cols; stride lds)^T. */
static void gen_ssd_transpose(const float *src, long lds, int rows, int cols, float *dst)
{
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            dst[(size_t)c * rows + r] = src[(size_t)r * lds + c];
}

/* dst[j] = scale[j] exp(c - cum[j]) for j < n. */
static void gen_ssd_decay_row(float *dst, const float *scale, const float *cum, float c, int n)
{
    const vf vc = vf_set1(c);
    int j = 0;
    for (; j + VF_W <= n; j += VF_W)
        vf_store(dst + j, vf_mul(vf_load(scale + j), vf_exp(vf_sub(vc, vf_load(cum + j)))));
    for (; j < n; j++)
        dst[j] = scale[j] * expf(c - cum[j]);
}

static void gen_ssd_chunk(const bk_mamba2_layer *l, float *state, const float *xbc,
                          const float *dtr, long lddt, int Q, float *y, int h0, int h1,
                          float *scratch)
{
    const int P = l->head_dim, N = l->d_state, heads_per_group = l->nheads / l->ngroups;
    const long cd = l->d_inner + 2L * l->ngroups * N, di = l->d_inner;
    cpu_ssd_scratch s;
    cpu_ssd_chunk_carve(l, Q, scratch, &s);
    int group = -1;
    for (int h = h0; h < h1; h++) {
        const int g = h / heads_per_group;
        const float *B = xbc + di + (size_t)g * N, *C = B + (size_t)l->ngroups * N;
        if (g != group) {
            gen_ssd_mm(B, cd, Q, N, C, cd, Q, s.cb, Q);
            gen_ssd_transpose(B, cd, Q, N, s.bt);
            group = g;
        }
        float cum = 0.0f;
        for (int t = 0; t < Q; t++) {
            float dt = cpu_softplus(dtr[(size_t)t * lddt + h] + l->dt_bias[h]);
            s.dt[t] = dt = fminf(fmaxf(dt, l->dt_min), l->dt_max);
            s.cum[t] = cum += dt * l->A[h];
        }
        /* m = (C B^T) o L diag(dt): row t's decays, then zeros above the
         * diagonal so that the matmul's full rows add nothing there. */
        for (int t = 0; t < Q; t++) {
            float *mt = s.m + (size_t)t * Q;
            gen_ssd_decay_row(mt, s.dt, s.cum, s.cum[t], t + 1);
            for (int j = 0; j <= t; j++)
                mt[j] *= s.cb[(size_t)t * Q + j];
            for (int j = t + 1; j < Q; j++)
                mt[j] = 0.0f;
        }
        const float *x = xbc + (size_t)h * P;
        float *yh = y + (size_t)h * P;
        float *sh = state + (size_t)h * P * N;
        gen_ssd_transpose(x, cd, Q, P, s.xt);
        gen_ssd_mm(s.xt, Q, P, Q, s.m, Q, Q, yh, di);  /* within the chunk */
        gen_ssd_mm(sh, N, P, N, C, cd, Q, s.yo, P);     /* from the incoming state */
        for (int t = 0; t < Q; t++) {
            const float in = expf(s.cum[t]), D = l->D[h];
            for (int p = 0; p < P; p++)
                yh[(size_t)t * di + p] += in * s.yo[(size_t)t * P + p] + D * x[(size_t)t * cd + p];
        }
        /* s_out = exp(cum_last) s_in + (X^T diag(w)) B, w = dt exp(cum_last - cum) */
        const float last = s.cum[Q - 1];
        gen_ssd_decay_row(s.w, s.dt, s.cum, last, Q);
        for (int p = 0; p < P; p++)
            for (int j = 0; j < Q; j++)
                s.xt[(size_t)p * Q + j] *= s.w[j];
        gen_ssd_mm(s.bt, Q, N, Q, s.xt, Q, P, s.ds, N);
        const float keep = expf(last);
        const vf vkeep = vf_set1(keep);
        const size_t PN = (size_t)P * N;
        size_t i = 0;
        for (; i + VF_W <= PN; i += VF_W)
            vf_store(sh + i, vf_fma(vf_load(sh + i), vkeep, vf_load(s.ds + i)));
        for (; i < PN; i++)
            sh[i] = sh[i] * keep + s.ds[i];
    }
}
