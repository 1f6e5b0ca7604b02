/* ssd.cu - Mamba-2's SSD recurrence and gated RMSNorm (kc_ssd_args in
 * kc_kernels.h; semantics of bk_mamba2_ops in engine/backend.h).
 *
 * k_ssd: one block per head (and, for a decode step, per sequence); a
 * thread per channel p of the head keeps its d_state-long state row.  The
 * head's B and C for the token are staged in shared memory once per token.
 * kc_ssd_prefill walks the tokens of the prompt in order inside the block:
 * simple, but sequential in time.
 * kc_ssd_prefill_chunked is the chunked form of SSD (Dao & Gu, "Transformers
 * are SSMs"; the algebra is in kernels/cpu/cpu_gen_ssd_chunk.h), every chunk
 * at once but the state pass: k_chunk_prep (dt, decay sums, padded copies
 * and transposes), C B^T, k_chunk_m (the masked decays), the outputs within
 * each chunk and each chunk's own state, k_chunk_pass (the state entering
 * each chunk, in order), what each chunk reads of it, k_chunk_finish (the
 * sum).  The four GEMMs are the caller's (strided-batched cuBLAS), over
 * chunks x heads or chunks x groups (a group's heads as one operand).
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

/* The scratch of all nc chunks (floats, device); the last chunk is padded
 * to Q tokens with dt = 0 and zero inputs, which leave it unchanged, so
 * that every batched GEMM has one shape. */
typedef struct chunk_buf {
    float *dt, *cum;    /* (nc, H, Q): clamped dt, running sum of dt A */
    float *cpad, *bpad; /* (nc, G, Q, N): C and B rows */
    float *bt;          /* (nc, G, N, Q): B^T */
    float *xt, *xwt;    /* (nc, H, P, Q): X^T; X^T weighted by the decay to the chunk's end */
    float *cb;          /* (nc, G, Q, Q): C B^T */
    float *m;           /* (nc, H, Q, Q): C B^T masked by the decays, times dt */
    float *yd;          /* (nc, H, Q, P): the output from within the chunk */
    float *yo;          /* (nc, G, Q, heads per group * P): C s_in^T */
    float *ds;          /* (nc, H, P, N): the chunk's state from a zero one */
    float *sin;         /* (nc, H, P, N): the state entering the chunk */
} chunk_buf;

static __host__ __device__ int chunk_len(const kc_ssd_args *a)
{
    return a->chunk > 0 ? a->chunk : KC_SSD_CHUNK;
}

static __host__ __device__ int n_chunks(const kc_ssd_args *a)
{
    return (a->T + chunk_len(a) - 1) / chunk_len(a);
}

/* Carves base (may be NULL) into *b; returns the floats used. */
static size_t chunk_carve(const kc_ssd_args *a, float *base, chunk_buf *b)
{
    const size_t Q = (size_t)chunk_len(a), C = (size_t)n_chunks(a), H = a->H, P = a->P, N = a->N;
    const size_t G = a->G;
    const size_t sizes[13] = {C * H * Q,     C * H * Q,     C * G * Q * N, C * G * Q * N, C * G * N * Q,
                              C * H * P * Q, C * H * P * Q, C * G * Q * Q, C * H * Q * Q, C * H * Q * P,
                              C * H * Q * P, C * H * P * N, C * H * P * N};
    float **const dst[13] = {&b->dt, &b->cum, &b->cpad, &b->bpad, &b->bt, &b->xt,  &b->xwt,
                             &b->cb, &b->m,   &b->yd,   &b->yo,   &b->ds, &b->sin};
    size_t used = 0;
    for (int i = 0; i < 13; i++) {
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

/* Block (head h, chunk c), thread per token t of the chunk: dt and the
 * running sum of dt A (serial, in token order, as the CPU sums), then the
 * head's X^T and X^T weighted by its decay to the chunk's end; the group's
 * first head copies the group's B and C (and B^T). */
__global__ void k_chunk_prep(kc_ssd_args a, chunk_buf b)
{
    KC_SHARED(float, sdt, KC_SSD_MAX_CHUNK);
    KC_SHARED(float, scum, KC_SSD_MAX_CHUNK);
    const int h = blockIdx.x, c = blockIdx.y, t = threadIdx.x, Q = chunk_len(&a), P = a.P, N = a.N;
    const int cd = a.E + 2 * a.G * N, hpg = a.H / a.G, g = h / hpg, tt = c * Q + t;
    const float *row = tt < a.T ? a.xbc + (size_t)tt * cd : NULL; /* NULL: padding */
    float dt = 0.0f;
    if (row) {
        dt = kc_softplus(a.dt[(size_t)tt * a.lddt + h] + a.dt_bias[h]);
        dt = fminf(fmaxf(dt, a.dt_min), a.dt_max);
    }
    sdt[t] = dt;
    __syncthreads();
    if (t == 0) {
        float acc = 0.0f;
        for (int j = 0; j < Q; j++)
            scum[j] = acc += sdt[j] * a.A[h];
    }
    __syncthreads();
    const size_t ch = (size_t)c * a.H + h, cg = (size_t)c * a.G + g;
    const float w = dt * expf(seg_sum(sdt, a.A[h], t, Q - 1));
    b.dt[ch * Q + t] = dt;
    b.cum[ch * Q + t] = scum[t];
    for (int p = 0; p < P; p++) {
        const float x = row ? row[h * P + p] : 0.0f;
        b.xt[(ch * P + p) * Q + t] = x;
        b.xwt[(ch * P + p) * Q + t] = x * w;
    }
    if (h % hpg == 0)
        for (int n = 0; n < N; n++) {
            const float bv = row ? row[a.E + g * N + n] : 0.0f;
            b.bt[(cg * N + n) * Q + t] = bv;
            b.bpad[(cg * Q + t) * N + n] = bv;
            b.cpad[(cg * Q + t) * N + n] = row ? row[a.E + (a.G + g) * N + n] : 0.0f;
        }
}

/* Block (h, row t, chunk c), thread per column j: m[t][j] = (C B^T)[t][j]
 * exp(a_{j+1} + ... + a_t) dt_j for j <= t, 0 above. */
__global__ void k_chunk_m(kc_ssd_args a, chunk_buf b)
{
    const int h = blockIdx.x, t = blockIdx.y, c = blockIdx.z, j = threadIdx.x, Q = chunk_len(&a);
    const size_t ch = (size_t)c * a.H + h, cg = (size_t)c * a.G + h / (a.H / a.G);
    const float *dt = b.dt + ch * Q;
    b.m[(ch * Q + t) * Q + j] =
        j <= t ? b.cb[(cg * Q + t) * Q + j] * expf(seg_sum(dt, a.A[h], j, t)) * dt[j] : 0.0f;
}

/* Thread per state element i of head blockIdx.y: the state entering each
 * chunk in turn, s = exp(cum_last) s + ds; the last one left in a.state. */
__global__ void k_chunk_pass(kc_ssd_args a, chunk_buf b)
{
    const int h = blockIdx.y, Q = chunk_len(&a), PN = a.P * a.N, nc = n_chunks(&a);
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= PN)
        return;
    float *state = a.state + (size_t)h * PN + i, s = *state;
    for (int c = 0; c < nc; c++) {
        const size_t ch = (size_t)c * a.H + h;
        b.sin[ch * PN + i] = s;
        s = s * expf(b.cum[ch * Q + Q - 1]) + b.ds[ch * PN + i];
    }
    *state = s;
}

/* Block per row: y = (within the chunk) + exp(cum_t) (C s_in^T) + D x. */
__global__ void k_chunk_finish(kc_ssd_args a, chunk_buf b)
{
    const int tt = blockIdx.x, Q = chunk_len(&a), c = tt / Q, t = tt % Q, P = a.P;
    const int hpg = a.H / a.G, cd = a.E + 2 * a.G * a.N;
    for (int e = threadIdx.x; e < a.E; e += blockDim.x) {
        const int h = e / P, p = e % P, g = h / hpg;
        const size_t ch = (size_t)c * a.H + h, cg = (size_t)c * a.G + g;
        a.y[(size_t)tt * a.E + e] = b.yd[(ch * Q + t) * P + p] +
                                    expf(b.cum[ch * Q + t]) * b.yo[(cg * Q + t) * hpg * P + e - g * hpg * P] +
                                    a.D[h] * a.xbc[(size_t)tt * cd + e];
    }
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
    const int Q = chunk_len(a), nc = n_chunks(a), P = a->P, N = a->N, H = a->H, G = a->G;
    const int hp = H / G * P; /* the rows of a group's heads */
    KC_LAUNCH(k_chunk_prep, dim3((unsigned)H, (unsigned)nc), (unsigned)Q, 0, s, *a, b);
    /* C B^T per chunk and group */
    gemm(ctx, nc * G, Q, Q, N, b.cpad, N, (long)Q * N, b.bpad, N, (long)Q * N, b.cb, Q, (long)Q * Q);
    KC_LAUNCH(k_chunk_m, dim3((unsigned)H, (unsigned)Q, (unsigned)nc), (unsigned)Q, 0, s, *a, b);
    /* within each chunk, per head: yd = m X */
    gemm(ctx, nc * H, Q, P, Q, b.m, Q, (long)Q * Q, b.xt, Q, (long)P * Q, b.yd, P, (long)Q * P);
    /* each chunk's state from zero, per group over its heads: (X^T diag(w)) B */
    gemm(ctx, nc * G, hp, N, Q, b.xwt, Q, (long)hp * Q, b.bt, Q, (long)N * Q, b.ds, N, (long)hp * N);
    KC_LAUNCH(k_chunk_pass, dim3(kc_div_up((long)P * N, 256), (unsigned)H), 256u, 0, s, *a, b);
    /* what each chunk reads of the state entering it, per group */
    gemm(ctx, nc * G, Q, hp, N, b.cpad, N, (long)Q * N, b.sin, N, (long)hp * N, b.yo, hp, (long)Q * hp);
    KC_LAUNCH(k_chunk_finish, (unsigned)a->T, 256u, 0, s, *a, b);
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
