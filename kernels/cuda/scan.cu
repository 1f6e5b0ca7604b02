/* scan.cu - Mamba-1's selective scan on the GPU: prefill of one sequence
 * (parallel over channels and over chunks of time) and the decode step over a
 * batch of slots, both fused with softplus(dt + bias), ZOH discretisation,
 * the D skip and the SiLU(z) gate.
 *
 * Prefill from state h0 over T steps, chunks of L steps:
 *  1. k_scan_summary: per chunk c (but the last) and channel e, the chunk as
 *     an affine map of its start state, per state n: h_end = decay * h_start
 *     + offset, with decay = exp(A * sum(dt)) and offset = the chunk scanned
 *     from zero.
 *  2. k_scan_carry: per (n, e), a parallel prefix (Hillis-Steele in shared
 *     memory) over the chunks' (decay, offset) maps, which compose
 *     associatively, gives every chunk's start state from h0.
 *  3. k_scan_chunk: every chunk rescans from its start state and writes y;
 *     the last chunk writes the final state.
 * One chunk (no scratch) skips 1 and 2.  Never allocates or synchronises.
 */
#include "kernels/cuda/kc_device.cuh"

enum {
    CARRY_W = 32,           /* items (n, e) per carry block: one warp wide */
    BC_SMEM_FLOATS = 8192,  /* cap on a chunk's staged B/C rows (32 KiB) */
};

extern "C" void kc_tuning_default(kc_tuning *t)
{
    t->scan_chunk = 64;
    t->carry_rows = 16;
    t->gemv_max_rows = KC_GEMV_MAX;
    t->gemv_wide = 1;
    t->panel_floats = (size_t)4 << 20; /* 16 MiB: stays in L2 on sm_80/sm_90 */
    t->graph_cache = 80;
}

/* NS > 0: d_state known at compile time (registers); 0: any d_state up to
 * KC_MAX_STATE (local memory). */
template <int NS> struct state_regs {
    float v[NS > 0 ? NS : KC_MAX_STATE];
};

/* Chunk (blockIdx.y) of length <= L of the summary: decay and offset of
 * each (n, e) into dec/off (chunks, N, E).  bsh: the chunk's B rows (L, N). */
template <int NS> __global__ void k_scan_summary(kc_scan_args a, int L, float *dec, float *off)
{
    KC_SHARED_DYN(float, bsh);
    const int N = NS > 0 ? NS : a.N, E = a.E, ldd = a.R + 2 * N, c = blockIdx.y;
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    const int t0 = c * L, len = kc_imin(L, a.T - t0);
    for (int i = threadIdx.x; i < len * N; i += blockDim.x)
        bsh[i] = a.dbc[(size_t)(t0 + i / N) * ldd + a.R + i % N];
    __syncthreads();
    if (e >= E)
        return;
    state_regs<NS> h, A;
    for (int n = 0; n < N; n++) {
        h.v[n] = 0.0f;
        A.v[n] = a.A[(size_t)n * E + e];
    }
    const float bias = a.dt_bias[e];
    float sum_dt = 0.0f;
    for (int i = 0; i < len; i++) {
        const size_t t = (size_t)(t0 + i);
        const float dtv = kc_softplus(a.dt[t * E + e] + bias), xv = a.x[t * E + e];
        sum_dt += dtv;
        for (int n = 0; n < N; n++)
            h.v[n] = expf(dtv * A.v[n]) * h.v[n] + dtv * bsh[i * N + n] * xv;
    }
    const size_t base = (size_t)c * N * E + e;
    for (int n = 0; n < N; n++) {
        dec[base + (size_t)n * E] = expf(A.v[n] * sum_dt);
        off[base + (size_t)n * E] = h.v[n];
    }
}

/* Block (CARRY_W, rows): items i = blockIdx.x*CARRY_W + x of the flattened
 * (N, E) state, chunks in passes of `rows`.  Reads the maps of chunks
 * [0, nch-1) from dec/off and writes every chunk's start state over dec. */
__global__ void k_scan_carry(kc_scan_args a, int nch, float *dec, const float *off)
{
    KC_SHARED2(float, sa, 32, CARRY_W + 1);
    KC_SHARED2(float, sb, 32, CARRY_W + 1);
    KC_SHARED(float, carry, CARRY_W); /* state before the pass's first chunk */
    const int tx = threadIdx.x, ty = threadIdx.y, rows = blockDim.y;
    const size_t NE = (size_t)a.N * a.E, i = (size_t)blockIdx.x * CARRY_W + tx;
    const int valid = i < NE;
    /* No barrier needed here: the pass's first barrier orders this write
     * before any read of carry. */
    if (ty == 0)
        carry[tx] = valid ? a.state[i] : 0.0f;
    for (int p0 = 0; p0 < nch; p0 += rows) {
        const int c = p0 + ty;
        float ma = 1.0f, mb = 0.0f; /* this chunk's map h -> ma*h + mb */
        if (valid && c < nch - 1) {
            ma = dec[(size_t)c * NE + i];
            mb = off[(size_t)c * NE + i];
        }
        sa[ty][tx] = ma;
        sb[ty][tx] = mb;
        __syncthreads();
        for (int d = 1; d < rows; d <<= 1) {
            float pa = 1.0f, pb = 0.0f;
            if (ty >= d) {
                pa = sa[ty - d][tx];
                pb = sb[ty - d][tx];
            }
            __syncthreads();
            mb = ma * pb + mb; /* this map after the earlier ones */
            ma = ma * pa;
            sa[ty][tx] = ma;
            sb[ty][tx] = mb;
            __syncthreads();
        }
        /* sa/sb[ty] now map the pass start to the end of chunk c. */
        const float h = ty == 0 ? carry[tx] : sa[ty - 1][tx] * carry[tx] + sb[ty - 1][tx];
        if (valid && c < nch)
            dec[(size_t)c * NE + i] = h;
        __syncthreads(); /* every thread has read carry and sa/sb */
        if (ty == rows - 1)
            carry[tx] = ma * carry[tx] + mb;
        /* No barrier needed here: the next pass reads carry and sa/sb only
         * after its first barrier. */
    }
}

/* Chunk (blockIdx.y) from its start state (hs, or a.state when hs is NULL),
 * writing y; the last chunk writes the final state.  bcsh: (L, 2N) B|C. */
template <int NS> __global__ void k_scan_chunk(kc_scan_args a, int L, const float *hs)
{
    KC_SHARED_DYN(float, bcsh);
    const int N = NS > 0 ? NS : a.N, E = a.E, ldd = a.R + 2 * N, c = blockIdx.y;
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    const int t0 = c * L, len = kc_imin(L, a.T - t0);
    for (int i = threadIdx.x; i < len * 2 * N; i += blockDim.x)
        bcsh[i] = a.dbc[(size_t)(t0 + i / (2 * N)) * ldd + a.R + i % (2 * N)];
    __syncthreads();
    if (e >= E)
        return;
    state_regs<NS> h, A;
    const float *h0 = hs ? hs + (size_t)c * N * E : a.state;
    for (int n = 0; n < N; n++) {
        h.v[n] = h0[(size_t)n * E + e];
        A.v[n] = a.A[(size_t)n * E + e];
    }
    const float bias = a.dt_bias[e], Dv = a.D[e];
    for (int i = 0; i < len; i++) {
        const size_t t = (size_t)(t0 + i);
        const float dtv = kc_softplus(a.dt[t * E + e] + bias), xv = a.x[t * E + e];
        const float *Bt = bcsh + i * 2 * N, *Ct = Bt + N;
        float yv = 0.0f;
        for (int n = 0; n < N; n++) {
            h.v[n] = expf(dtv * A.v[n]) * h.v[n] + dtv * Bt[n] * xv;
            yv += h.v[n] * Ct[n];
        }
        yv += xv * Dv;
        a.y[t * E + e] = yv * kc_silu(a.z[t * a.ldz + e]);
    }
    if (c == (int)gridDim.y - 1)
        for (int n = 0; n < N; n++)
            a.state[(size_t)n * E + e] = h.v[n];
}

/* Grid (channel blocks, batch): one token of sequence b, state in place.
 * bcsh: row b's B|C (2N). */
__global__ void k_scan_step(kc_scan_args a)
{
    KC_SHARED_DYN(float, bcsh);
    const int N = a.N, E = a.E, b = blockIdx.y, ldd = a.R + 2 * N;
    const int e = blockIdx.x * blockDim.x + threadIdx.x;
    for (int i = threadIdx.x; i < 2 * N; i += blockDim.x)
        bcsh[i] = a.dbc[(size_t)b * ldd + a.R + i];
    __syncthreads();
    if (e >= E)
        return;
    const int32_t slot = a.at.slots[b];
    if (slot < 0) {
        a.y[(size_t)b * E + e] = 0.0f;
        return;
    }
    float *h = a.at.pool + (size_t)slot * a.at.slot_stride + a.at.offset;
    const float dtv = kc_softplus(a.dt[(size_t)b * E + e] + a.dt_bias[e]);
    const float xv = a.x[(size_t)b * E + e];
    float yv = 0.0f;
    for (int n = 0; n < N; n++) {
        float hn = h[(size_t)n * E + e];
        hn = expf(dtv * a.A[(size_t)n * E + e]) * hn + dtv * bcsh[n] * xv;
        h[(size_t)n * E + e] = hn;
        yv += hn * bcsh[N + n];
    }
    yv += xv * a.D[e];
    a.y[(size_t)b * E + e] = yv * kc_silu(a.z[(size_t)b * a.ldz + e]);
}

/* The chunk length actually used: the tuning's, shrunk so that a chunk's
 * B|C rows fit the shared-memory cap. */
static int chunk_len(int N, const kc_tuning *t)
{
    int L = t->scan_chunk > 0 ? t->scan_chunk : 1;
    int cap = BC_SMEM_FLOATS / (2 * N);
    return L < cap ? L : cap > 0 ? cap : 1;
}

extern "C" size_t kc_scan_prefill_scratch(int E, int N, int T, const kc_tuning *t)
{
    int L = chunk_len(N, t);
    size_t nch = (size_t)(T + L - 1) / (size_t)L;
    return nch > 1 ? 2 * nch * (size_t)N * (size_t)E : 0;
}

template <int NS>
static void scan_prefill(const kc_scan_args *a, float *scratch, int L, int rows, kc_stream s)
{
    const int nch = (a->T + L - 1) / L;
    const unsigned bx = kc_warps_for(a->E, 128), gx = kc_div_up(a->E, bx);
    float *dec = scratch, *off = scratch ? scratch + (size_t)nch * a->N * a->E : NULL;
    if (nch > 1) {
        size_t smem = sizeof(float) * (size_t)L * a->N;
        KC_LAUNCH(k_scan_summary<NS>, dim3(gx, (unsigned)(nch - 1)), bx, smem, s, *a, L, dec, off);
        rows = rows < 1 ? 1 : rows > 32 ? 32 : rows > nch ? nch : rows;
        KC_LAUNCH(k_scan_carry, kc_div_up((long)a->N * a->E, CARRY_W), dim3(CARRY_W, (unsigned)rows),
                  0, s, *a, nch, dec, off);
    }
    size_t smem = sizeof(float) * (size_t)L * 2 * a->N;
    KC_LAUNCH(k_scan_chunk<NS>, dim3(gx, (unsigned)nch), bx, smem, s, *a, L, nch > 1 ? dec : NULL);
}

static void scan_dispatch(const kc_scan_args *a, float *scratch, int L, int rows, kc_stream s)
{
    if (a->N == 16)
        scan_prefill<16>(a, scratch, L, rows, s);
    else
        scan_prefill<0>(a, scratch, L, rows, s);
}

extern "C" void kc_scan_prefill(const kc_scan_args *a, float *scratch, const kc_tuning *t, kc_stream s)
{
    if (a->T <= 0)
        return;
    const int L = chunk_len(a->N, t);
    if (a->T <= L || scratch) {
        scan_dispatch(a, scratch, L, t->carry_rows, s);
        return;
    }
    /* No scratch for the carries: chunks run one after another, each from
     * the state the previous one left. */
    for (int t0 = 0; t0 < a->T; t0 += L) {
        kc_scan_args part = *a;
        part.T = a->T - t0 < L ? a->T - t0 : L;
        part.x += (size_t)t0 * a->E;
        part.dt += (size_t)t0 * a->E;
        part.dbc += (size_t)t0 * (a->R + 2 * a->N);
        part.z += (size_t)t0 * a->ldz;
        part.y += (size_t)t0 * a->E;
        scan_dispatch(&part, NULL, L, t->carry_rows, s);
    }
}

extern "C" void kc_scan_step(const kc_scan_args *a, kc_stream s)
{
    if (a->at.batch <= 0)
        return;
    unsigned bx = kc_warps_for(a->E, 128);
    dim3 grid(kc_div_up(a->E, bx), (unsigned)a->at.batch);
    KC_LAUNCH(k_scan_step, grid, bx, sizeof(float) * 2 * (size_t)a->N, s, *a);
}
