/* ssd.cu - Mamba-2's SSD recurrence and gated RMSNorm (kc_ssd_args in
 * kc_kernels.h; semantics of bk_mamba2_ops in engine/backend.h).
 *
 * k_ssd: one block per head (and, for a decode step, per sequence); a
 * thread per channel p of the head keeps its d_state-long state row.  The
 * head's B and C for the token are staged in shared memory once per token.
 * kc_ssd_prefill walks the tokens of the prompt in order inside the block:
 * simple, but sequential in time.
 * kc_ssd_prefill_chunked is the chunked form of SSD (Dao & Gu, "Transformers
 * are SSMs"; the algebra is in kernels/cpu/cpu_gen_ssd_chunk.h): per chunk
 * of Q tokens, k_chunk_prep (dt, running decay sums, X^T and B^T), the
 * GEMMs C B^T per group, k_chunk_m (the masked decays), the GEMMs within
 * the chunk (per head), from the incoming state and into the state (per
 * group), and k_chunk_finish, which adds the parts and passes the state to
 * the next chunk.  The GEMMs are the caller's (cuBLAS): H + 3 G per chunk.
 * k_gated_norm: one block per row; for each group of E/G channels, a block
 * sum of squares, then the scale.  Never allocates or synchronises.
 */
#include "kernels/cuda/kc_device.cuh"

enum { NORM_THREADS = 256 };

/* step: blockIdx.y is the row (= sequence) b; prefill: rows 0..T-1. */
__global__ void k_ssd(kc_ssd_args a, int step)
{
    KC_SHARED_DYN(float, bc); /* (2N): the group's B then C for the token */
    const int h = blockIdx.x, p = threadIdx.x, N = a.N, P = a.P;
    const int cd = a.E + 2 * a.G * N, g = h / (a.H / a.G);
    int t0 = 0, t1 = a.T;
    float *state = a.state;
    if (step) {
        t0 = blockIdx.y, t1 = t0 + 1;
        const int32_t slot = a.at.slots[t0];
        state = slot < 0 ? NULL : a.at.pool + (size_t)slot * a.at.slot_stride + a.at.offset;
    }
    for (int t = t0; t < t1; t++) {
        const float *row = a.xbc + (size_t)t * cd;
        for (int i = threadIdx.x; i < 2 * N; i += blockDim.x)
            bc[i] = row[a.E + (i < N ? g * N + i : a.G * N + g * N + (i - N))];
        __syncthreads();
        if (p < P) {
            float *y = a.y + (size_t)t * a.E + h * P + p;
            if (!state) {
                *y = 0.0f; /* a padding row */
            } else {
                float dt = kc_softplus(a.dt[(size_t)t * a.lddt + h] + a.dt_bias[h]);
                dt = fminf(fmaxf(dt, a.dt_min), a.dt_max);
                const float decay = expf(dt * a.A[h]), xv = row[h * P + p], dx = dt * xv;
                float *s = state + ((size_t)h * P + p) * N, acc = 0.0f;
                for (int n = 0; n < N; n++) {
                    const float sn = s[n] * decay + dx * bc[n];
                    s[n] = sn;
                    acc += sn * bc[N + n];
                }
                *y = acc + a.D[h] * xv;
            }
        }
        __syncthreads(); /* bc is restaged for the next token */
    }
}

/* Block per row r: per group, y = rmsnorm(y * silu(z)) * w, or rmsnorm(y)
 * * w * silu(z) when the norm comes first.  blockDim.x: multiple of 32. */
__global__ void k_gated_norm(kc_ssd_args a)
{
    KC_SHARED(float, part, 32);
    KC_SHARED(float, total, 1);
    const int tid = threadIdx.x, gs = a.E / a.G;
    float *y = a.y + (size_t)blockIdx.x * a.E;
    const float *z = a.z + (size_t)blockIdx.x * a.ldz;
    for (int g0 = 0; g0 < a.E; g0 += gs) {
        float ss = 0.0f;
        for (int i = g0 + tid; i < g0 + gs; i += blockDim.x) {
            float v = y[i];
            if (!a.norm_before_gate)
                y[i] = v = v * kc_silu(z[i]);
            ss += v * v;
        }
        kc_block_sum(ss, part, total);
        const float scale = 1.0f / sqrtf(total[0] / (float)gs + a.eps);
        for (int i = g0 + tid; i < g0 + gs; i += blockDim.x)
            y[i] = y[i] * scale * a.norm_w[i] * (a.norm_before_gate ? kc_silu(z[i]) : 1.0f);
    }
}

/* ---- the chunked form -------------------------------------------------- */

/* One chunk's scratch (floats, device). */
typedef struct chunk_buf {
    float *dt, *cum; /* (H, Q): clamped dt, running sum of dt A */
    float *xt, *xwt; /* (H, P, Q): X^T; X^T weighted by dt exp(cum_last - cum) */
    float *bt;       /* (G, N, Q): B^T */
    float *cb;       /* (G, Q, Q): C B^T */
    float *m;        /* (H, Q, Q): C B^T masked by the decays, times dt */
    float *yo;       /* (Q, H * P): C s_in^T, heads side by side */
    float *ds;       /* (H, P, N): what the chunk adds to the state */
} chunk_buf;

static __host__ __device__ int chunk_len(const kc_ssd_args *a)
{
    return a->chunk > 0 ? a->chunk : KC_SSD_CHUNK;
}

/* Carves base (may be NULL) into *b; returns the floats used. */
static size_t chunk_carve(const kc_ssd_args *a, float *base, chunk_buf *b)
{
    const size_t Q = (size_t)chunk_len(a), H = a->H, P = a->P, N = a->N, G = a->G;
    const size_t sizes[9] = {H * Q, H * Q, H * P * Q, H * P * Q, G * N * Q, G * Q * Q, H * Q * Q,
                             H * Q * P, H * P * N};
    float **const dst[9] = {&b->dt, &b->cum, &b->xt, &b->xwt, &b->bt, &b->cb, &b->m, &b->yo, &b->ds};
    size_t used = 0;
    for (int i = 0; i < 9; i++) {
        *dst[i] = base ? base + used : NULL;
        used += (sizes[i] + 63) / 64 * 64; /* 256-byte aligned arrays */
    }
    return used;
}

/* a_t = dt_t A summed over the segment (j, t]: from t backwards, as
 * kernels/cpu/cpu_gen_ssd_chunk.h sums it (the decay between close tokens
 * stays exact after a large one, which a difference of running sums
 * loses). */
static __device__ float seg_sum(const float *dt, float A, int j, int t)
{
    float acc = 0.0f;
    for (int k = t; k > j; k--)
        acc += dt[k] * A;
    return acc;
}

/* Block per head h, thread per token t of the chunk's q: dt and the
 * running sum of dt A (serial, in token order, as the CPU sums), then the
 * head's X^T and X^T weighted by its decay to the chunk's end; the group's
 * first head writes B^T. */
__global__ void k_chunk_prep(kc_ssd_args a, chunk_buf b, int t0, int q)
{
    KC_SHARED(float, sdt, KC_SSD_MAX_CHUNK);
    KC_SHARED(float, scum, KC_SSD_MAX_CHUNK);
    const int h = blockIdx.x, t = threadIdx.x, Q = chunk_len(&a), P = a.P, N = a.N;
    const int cd = a.E + 2 * a.G * N, hpg = a.H / a.G, g = h / hpg;
    if (t < q) {
        float dt = kc_softplus(a.dt[(size_t)(t0 + t) * a.lddt + h] + a.dt_bias[h]);
        sdt[t] = dt = fminf(fmaxf(dt, a.dt_min), a.dt_max);
        scum[t] = dt * a.A[h];
    }
    __syncthreads();
    if (t == 0)
        for (int j = 1; j < q; j++)
            scum[j] += scum[j - 1];
    __syncthreads();
    if (t >= q)
        return;
    const float cum = scum[t], w = sdt[t] * expf(seg_sum(sdt, a.A[h], t, q - 1));
    b.dt[h * Q + t] = sdt[t];
    b.cum[h * Q + t] = cum;
    const float *row = a.xbc + (size_t)(t0 + t) * cd;
    for (int p = 0; p < P; p++) {
        const float x = row[h * P + p];
        b.xt[((size_t)h * P + p) * Q + t] = x;
        b.xwt[((size_t)h * P + p) * Q + t] = x * w;
    }
    if (h % hpg == 0)
        for (int n = 0; n < N; n++)
            b.bt[((size_t)g * N + n) * Q + t] = row[a.E + g * N + n];
}

/* Block (h, row t), thread per column j: m[t][j] = (C B^T)[t][j]
 * exp(a_{j+1} + ... + a_t) dt_j for j <= t, 0 above. */
__global__ void k_chunk_m(kc_ssd_args a, chunk_buf b, int q)
{
    const int h = blockIdx.x, t = blockIdx.y, j = threadIdx.x, Q = chunk_len(&a);
    const int g = h / (a.H / a.G);
    if (j >= q)
        return;
    const float *dt = b.dt + h * Q;
    b.m[((size_t)h * Q + t) * Q + j] =
        j <= t ? b.cb[((size_t)g * Q + t) * Q + j] * expf(seg_sum(dt, a.A[h], j, t)) * dt[j] : 0.0f;
}

/* Block per head: y += exp(cum_t) (C s_in^T) + D x over the chunk's rows
 * (y already holds the within-chunk part); s = exp(cum_last) s + ds. */
__global__ void k_chunk_finish(kc_ssd_args a, chunk_buf b, int t0, int q)
{
    const int h = blockIdx.x, Q = chunk_len(&a), P = a.P, cd = a.E + 2 * a.G * a.N;
    for (int i = threadIdx.x; i < q * P; i += blockDim.x) {
        const int t = i / P, p = i % P;
        const float x = a.xbc[(size_t)(t0 + t) * cd + h * P + p];
        a.y[(size_t)(t0 + t) * a.E + h * P + p] +=
            expf(b.cum[h * Q + t]) * b.yo[(size_t)t * a.E + h * P + p] + a.D[h] * x;
    }
    const float keep = expf(b.cum[h * Q + q - 1]);
    float *s = a.state + (size_t)h * P * a.N;
    const float *ds = b.ds + (size_t)h * P * a.N;
    for (int i = threadIdx.x; i < P * a.N; i += blockDim.x)
        s[i] = s[i] * keep + ds[i];
}

extern "C" size_t kc_ssd_chunk_scratch(const kc_ssd_args *a)
{
    chunk_buf b;
    return chunk_carve(a, NULL, &b);
}

extern "C" void kc_ssd_prefill_chunked(const kc_ssd_args *a, float *scratch, kc_gemm_fn gemm,
                                       void *ctx, kc_stream s)
{
    if (a->T <= 0)
        return;
    chunk_buf b;
    chunk_carve(a, scratch, &b);
    const int Q = chunk_len(a), P = a->P, N = a->N, E = a->E, cd = E + 2 * a->G * N;
    const int hpg = a->H / a->G;
    for (int t0 = 0; t0 < a->T; t0 += Q) {
        const int q = a->T - t0 < Q ? a->T - t0 : Q;
        const float *Bc = a->xbc + (size_t)t0 * cd + E, *Cc = Bc + (size_t)a->G * N;
        KC_LAUNCH(k_chunk_prep, (unsigned)a->H, (unsigned)Q, 0, s, *a, b, t0, q);
        for (int g = 0; g < a->G; g++)
            gemm(ctx, q, q, N, Cc + g * N, cd, Bc + g * N, cd, b.cb + (size_t)g * Q * Q, Q);
        KC_LAUNCH(k_chunk_m, dim3((unsigned)a->H, (unsigned)q), (unsigned)Q, 0, s, *a, b, q);
        for (int h = 0; h < a->H; h++) /* m differs per head */
            gemm(ctx, q, P, q, b.m + (size_t)h * Q * Q, Q, b.xt + (size_t)h * P * Q, Q,
                 a->y + (size_t)t0 * E + h * P, E);
        /* the heads of a group share C and B, and their states and
         * weighted X^T are consecutive rows: one GEMM each per group */
        for (int g = 0; g < a->G; g++) {
            const size_t h0 = (size_t)g * hpg;
            gemm(ctx, q, hpg * P, N, Cc + g * N, cd, a->state + h0 * P * N, N, b.yo + h0 * P, E);
            gemm(ctx, hpg * P, N, q, b.xwt + h0 * P * Q, Q, b.bt + (size_t)g * N * Q, Q,
                 b.ds + h0 * P * N, N);
        }
        KC_LAUNCH(k_chunk_finish, (unsigned)a->H, 256u, 0, s, *a, b, t0, q);
    }
    KC_LAUNCH(k_gated_norm, (unsigned)a->T, (unsigned)NORM_THREADS, 0, s, *a);
}

static void ssd_launch(const kc_ssd_args *a, int rows, int step, kc_stream s)
{
    if (rows <= 0)
        return;
    const unsigned bx = kc_warps_for(a->P, 256);
    KC_LAUNCH(k_ssd, dim3((unsigned)a->H, step ? (unsigned)rows : 1u), bx,
              sizeof(float) * 2 * (size_t)a->N, s, *a, step);
    KC_LAUNCH(k_gated_norm, (unsigned)rows, (unsigned)NORM_THREADS, 0, s, *a);
}

extern "C" void kc_ssd_prefill(const kc_ssd_args *a, kc_stream s) { ssd_launch(a, a->T, 0, s); }
extern "C" void kc_ssd_step(const kc_ssd_args *a, kc_stream s) { ssd_launch(a, a->at.batch, 1, s); }
