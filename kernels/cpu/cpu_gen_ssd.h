/* cpu_gen_ssd.h - the Mamba-2 (SSD) recurrence for one token, written once
 * on cpu_vec.h's vector type.
 *
 * A template: included by cpu_gen_table.h inside each cpu_isa_*.c; every
 * function is static.  Never include it anywhere else.  The threading over
 * heads, the prefill/decode views and the gated norm are in cpu_ssd.c.
 *
 * For head h (group g), channel p of the head and state index n:
 *   dt = clamp(softplus(dt_raw + dt_bias), dt_min, dt_max),
 *   s[p][n] = exp(dt A) s[p][n] + dt x[p] B[g][n],
 *   y[p] = sum_n s[p][n] C[g][n] + D x[p].
 * State is (nheads, head_dim, d_state): the loop over n is contiguous and
 * runs VF_W lanes at a time, B and C of the group staying in L1 for all the
 * head's channels (a head's state, 32 KB at 64 x 128, stays in L1 or L2 for
 * a whole prompt: cpu_ssd.c walks time inside each thread's heads).
 */
#include "kernels/cpu/cpu_math.h"

/* s = s decay + dx B and the dot product of the new s with C, over n. */
static inline float gen_ssd_channel(float *s, const float *B, const float *C, int N, float decay,
                                    float dx)
{
    const vf vdecay = vf_set1(decay), vdx = vf_set1(dx);
    vf acc = vf_zero();
    int n = 0;
    for (; n + VF_W <= N; n += VF_W) {
        vf sv = vf_fma(vf_load(s + n), vdecay, vf_mul(vdx, vf_load(B + n)));
        vf_store(s + n, sv);
        acc = vf_fma(sv, vf_load(C + n), acc);
    }
    float sum = vf_hsum(acc);
    for (; n < N; n++) {
        s[n] = s[n] * decay + dx * B[n];
        sum += s[n] * C[n];
    }
    return sum;
}

/* One token of heads [h0, h1): row xbc ([x | B | C]), raw dt row dtr,
 * state (nheads, head_dim, d_state), output row y (before the norm). */
static void gen_ssd_token(const bk_mamba2_layer *l, float *state, const float *xbc,
                          const float *dtr, float *y, int h0, int h1)
{
    const int P = l->head_dim, N = l->d_state, heads_per_group = l->nheads / l->ngroups;
    const float *B0 = xbc + l->d_inner, *C0 = B0 + (size_t)l->ngroups * N;
    for (int h = h0; h < h1; h++) {
        const float *B = B0 + (size_t)(h / heads_per_group) * N;
        const float *C = C0 + (size_t)(h / heads_per_group) * N;
        float dt = cpu_softplus(dtr[h] + l->dt_bias[h]);
        dt = fminf(fmaxf(dt, l->dt_min), l->dt_max);
        const float decay = expf(dt * l->A[h]);
        const float *x = xbc + (size_t)h * P;
        float *s = state + (size_t)h * P * N;
        for (int p = 0; p < P; p++, s += N)
            y[h * P + p] = gen_ssd_channel(s, B, C, N, decay, dt * x[p]) + l->D[h] * x[p];
    }
}
