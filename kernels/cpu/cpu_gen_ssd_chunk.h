/* cpu_gen_ssd_chunk.h - one chunk of the Mamba-2 (SSD) prefill in the
 * quadratic (matmul) form of Dao & Gu, "Transformers are SSMs" (2024),
 * written once on cpu_vec.h's vector type.
 *
 * A template: included by cpu_gen_table.h inside each cpu_isa_*.c; every
 * function is static.  Never include it anywhere else.  The decays are the
 * level's vector exp; the four products per head are OpenBLAS sgemm on
 * views of the activations (one thread each: cpu_ssd.c splits the heads
 * over the pool's threads and walks the chunks), as the prefill matmuls of
 * cpu_matmul.c are.  The level's own streaming matmul (cpu_gen_matmul.h)
 * was measured here first: it computes x W^T with one horizontal sum per
 * output, which at these sizes (sums over 64-128 terms) made the chunked
 * form slower than the scan; sgemm made it ~1.6x faster (README).
 * cpu_gen_ssd.h is the token-by-token form this must equal.
 *
 * For head h (group g) over a chunk of Q tokens, with a_t = dt_t A and
 * cum_t = a_0 + ... + a_t, stepping token by token from s_in gives
 *   s_t = exp(cum_t) s_in + sum_{j<=t} exp(cum_t - cum_j) dt_j x_j B_j^T,
 *   y_t = s_t C_t + D x_t,
 * which as matmuls over the chunk is
 *   y    = ((C B^T) o L) diag(dt) X  +  diag(exp(cum)) C s_in^T  +  D X,
 *          L[t][j] = exp(cum_t - cum_j) for j <= t, 0 above;
 *   s_out = exp(cum_last) s_in + X^T diag(dt exp(cum_last - cum)) B,
 * state (head_dim, d_state) per head as the scan keeps it.  C B^T is
 * shared by the heads of a group.
 */
#include <cblas.h>

#include "kernels/cpu/cpu_math.h"

/* The decays into token t: seg[j] = a[j+1] + ... + a[t] for j <= t, summed
 * from t backwards, then dst[j] = scale[j] exp(seg[j]).  Summing each
 * segment (Dao & Gu's segsum) rather than subtracting running sums keeps
 * the decay between close tokens exact after a large one: cum_t - cum_j
 * would carry the rounding of the whole sum (1e-4 after a decay of e^-960,
 * measured), the segment only its own terms. */
static void gen_ssd_decay_row(float *dst, const float *scale, const float *a, float *seg, int t)
{
    float acc = 0.0f;
    seg[t] = 0.0f;
    for (int j = t - 1; j >= 0; j--)
        seg[j] = acc += a[j + 1];
    const int n = t + 1;
    int j = 0;
    for (; j + VF_W <= n; j += VF_W)
        vf_store(dst + j, vf_mul(vf_load(scale + j), vf_exp(vf_load(seg + j))));
    for (; j < n; j++)
        dst[j] = scale[j] * expf(seg[j]);
}

static void gen_ssd_chunk(const bk_mamba2_layer *l, float *state, const float *xbc,
                          const float *dtr, long lddt, int Q, float *y, int h0, int h1,
                          float *scratch)
{
    const int P = l->head_dim, N = l->d_state, heads_per_group = l->nheads / l->ngroups;
    const int cd = l->d_inner + 2 * l->ngroups * N, di = l->d_inner;
    cpu_ssd_scratch s;
    cpu_ssd_chunk_carve(l, Q, scratch, &s);
    int group = -1;
    for (int h = h0; h < h1; h++) {
        const int g = h / heads_per_group;
        const float *B = xbc + di + (size_t)g * N, *C = B + (size_t)l->ngroups * N;
        const float *x = xbc + (size_t)h * P;
        float *yh = y + (size_t)h * P, *sh = state + (size_t)h * P * N;
        if (g != group) /* cb = C B^T (Q, Q) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Q, Q, N, 1.0f, C, cd, B, cd,
                        0.0f, s.cb, Q);
        group = g;
        float cum = 0.0f;
        for (int t = 0; t < Q; t++) {
            float dt = cpu_softplus(dtr[(size_t)t * lddt + h] + l->dt_bias[h]);
            s.dt[t] = dt = fminf(fmaxf(dt, l->dt_min), l->dt_max);
            s.a[t] = dt * l->A[h];
            s.cum[t] = cum += s.a[t];
        }
        /* m = (C B^T) o L diag(dt), zero above the diagonal (the products
         * run over whole rows) */
        for (int t = 0; t < Q; t++) {
            float *mt = s.m + (size_t)t * Q;
            const float *cbt = s.cb + (size_t)t * Q;
            gen_ssd_decay_row(mt, s.dt, s.a, s.seg, t);
            for (int j = 0; j <= t; j++)
                mt[j] *= cbt[j];
            for (int j = t + 1; j < Q; j++)
                mt[j] = 0.0f;
        }
        /* y = m X (within the chunk) + diag(exp(cum)) C s_in^T + D X */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Q, P, Q, 1.0f, s.m, Q, x, cd, 0.0f,
                    yh, di);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Q, P, N, 1.0f, C, cd, sh, N, 0.0f,
                    s.yo, P);
        for (int t = 0; t < Q; t++) {
            const float in = expf(s.cum[t]), D = l->D[h];
            const float *xt = x + (size_t)t * cd, *yot = s.yo + (size_t)t * P;
            float *yt = yh + (size_t)t * di;
            for (int p = 0; p < P; p++)
                yt[p] += in * yot[p] + D * xt[p];
        }
        /* s_out = exp(cum_last) s_in + (diag(w) X)^T B, w = dt exp(cum_last - cum)
         * (m's last row, without C B^T); sgemm's beta decays the state */
        gen_ssd_decay_row(s.w, s.dt, s.a, s.seg, Q - 1);
        for (int t = 0; t < Q; t++)
            for (int p = 0; p < P; p++)
                s.xw[(size_t)t * P + p] = x[(size_t)t * cd + p] * s.w[t];
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, N, Q, 1.0f, s.xw, P, B, cd,
                    expf(s.cum[Q - 1]), sh, N);
    }
}
