/* dplr_scan.cu - the prefill of a DPLR S4 layer (rank R > 0, kc_s4.cuh's
 * Woodbury step) as a parallel scan over time chunks, for prompts that
 * s4.cu would otherwise walk token by token on one thread per channel.
 *
 * Per channel the state is 2 N2 reals (the half-stored conjugate pairs)
 * and the step is real-linear in it plus the input's term, so over a chunk
 * of L tokens the true end state is M x0 + local: M = Abar^L, the chunk's
 * dense (2N2 x 2N2) transition, x0 the chunk's true start and local its
 * end from a zero start.  Four launches, in stream order:
 *  1. k_dplr_local, a thread per (channel, chunk but the last): chunk 0
 *     from the slot's state (writing its final outputs: its start is
 *     true), the others from zero (no outputs); each end state to local;
 *  2. k_dplr_transition, a thread per (channel, basis vector j): column j
 *     of M is L zero-input steps from e_j.  A column is laid out as a
 *     state, so the step is s4_dplr_token unchanged;
 *  3. k_dplr_carry, a block per channel, the rows of M x split over its
 *     threads: local[c] += M local[c - 1] for c = 1 .. chunks - 2 in
 *     order (sums in double, rounded to f32 per chunk like the walk's
 *     state), so local[c] becomes the true end of chunk c;
 *  4. k_dplr_fix, a thread per (channel, chunk >= 1): the chunk again from
 *     its true start with the inputs, writing the final outputs, and for
 *     the last chunk the final state into the slot.
 * Token steps per channel: about 2 T (passes 1 and 4) + 2 N2 L (pass 2),
 * on H x chunks and H x 2 N2 threads instead of H; the carry is chunks x
 * (2 N2)^2 multiply-adds per channel.  Results equal the walk's within f32
 * rounding (the chunks' sums reassociate it).  M is scratch of this call
 * only: a copy per layer would be H (2 N2)^2 floats each.  Never allocates
 * or synchronises.
 */
#include "kernels/cuda/kc_s4.cuh"

enum {
    DPLR_THREADS = 128,       /* channels per block of passes 1, 2 and 4 */
    DPLR_CARRY_THREADS = 256, /* at most, rows of M x per block of pass 3 */
};

/* Floats of one state (2, N2, H): a chunk's local end, a column of M. */
static __host__ __device__ inline size_t dplr_per(const kc_s4_args &a) { return 2 * (size_t)a.N2 * a.H; }

static __host__ __device__ inline int dplr_chunks(const kc_s4_args &a, int L) { return (a.T + L - 1) / L; }

/* Channel h of state dst := src's (NULL: zero). */
static __device__ void dplr_copy(const kc_s4_args &a, float *dst, const float *src, int h)
{
    for (size_t i = 0, n = 2 * (size_t)a.N2; i < n; i++)
        dst[i * a.H + h] = src ? src[i * a.H + h] : 0.0f;
}

/* Pass 1, grid (channel blocks, chunks - 1); local (chunks - 1, 2, N2, H). */
__global__ void k_dplr_local(kc_s4_args a, int L, float *local)
{
    const int h = blockIdx.x * blockDim.x + threadIdx.x, c = blockIdx.y;
    if (h >= a.H)
        return;
    const size_t t0 = (size_t)c * L;
    float *st = local + c * dplr_per(a);
    dplr_copy(a, st, c ? NULL : a.state, h);
    s4_dplr_walk(a, st, h, a.u + t0 * a.H, c ? NULL : a.y, L);
}

/* Pass 2, grid (channel blocks, 2 N2); M (2 N2, 2, N2, H): column j of
 * channel h at M + j * per, its element i at i * H + h. */
__global__ void k_dplr_transition(kc_s4_args a, int steps, float *M)
{
    const int h = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y;
    if (h >= a.H)
        return;
    float *col = M + j * dplr_per(a);
    dplr_copy(a, col, NULL, h);
    col[(size_t)j * a.H + h] = 1.0f;
    s4_dplr_walk(a, col, h, NULL, NULL, steps);
}

/* Pass 3, a block per channel. */
__global__ void k_dplr_carry(kc_s4_args a, int n_chunks, const float *M, float *local)
{
    const int h = blockIdx.x, n = 2 * a.N2;
    const size_t per = dplr_per(a), H = (size_t)a.H;
    for (int c = 1; c + 1 < n_chunks; c++) {
        const float *prev = local + (c - 1) * per + h;
        float *cur = local + c * per + h;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            const float *row = M + i * H + h;
            double acc = cur[i * H];
            for (int j = 0; j < n; j++)
                acc += (double)row[j * per] * prev[j * H];
            cur[i * H] = (float)acc;
        }
        __syncthreads(); /* chunk c's true end, every row, before c + 1 reads it */
    }
}

/* Pass 4, grid (channel blocks, chunks - 1): chunk c = 1 + blockIdx.y from
 * local[c - 1] (evolved in place: no other thread reads it), the last
 * chunk in the slot's state. */
__global__ void k_dplr_fix(kc_s4_args a, int L, float *local)
{
    const int h = blockIdx.x * blockDim.x + threadIdx.x, c = 1 + blockIdx.y;
    if (h >= a.H)
        return;
    const size_t t0 = (size_t)c * L;
    float *st = local + (c - 1) * dplr_per(a);
    if (c + 1 == dplr_chunks(a, L)) {
        dplr_copy(a, a.state, st, h);
        st = a.state;
    }
    s4_dplr_walk(a, st, h, a.u + t0 * a.H, a.y + t0 * a.H, kc_imin(L, a.T - (int)t0));
}

static dim3 dplr_grid(const kc_s4_args *a, int y) { return dim3(kc_div_up(a->H, DPLR_THREADS), (unsigned)y); }

extern "C" size_t kc_s4_dplr_scratch(const kc_s4_args *a, int L)
{
    return (size_t)(dplr_chunks(*a, L) - 1 + 2 * a->N2) * dplr_per(*a);
}

extern "C" void kc_s4_dplr_local(const kc_s4_args *a, int L, float *local, kc_stream s)
{
    KC_LAUNCH(k_dplr_local, dplr_grid(a, dplr_chunks(*a, L) - 1), (unsigned)DPLR_THREADS, 0, s, *a, L,
              local);
}

extern "C" void kc_s4_dplr_transition(const kc_s4_args *a, int steps, float *M, kc_stream s)
{
    KC_LAUNCH(k_dplr_transition, dplr_grid(a, 2 * a->N2), (unsigned)DPLR_THREADS, 0, s, *a, steps, M);
}

extern "C" void kc_s4_dplr_carry(const kc_s4_args *a, int L, const float *M, float *local, kc_stream s)
{
    const int warps = kc_div_up(2 * a->N2, 32);
    const unsigned threads = warps * 32 < DPLR_CARRY_THREADS ? warps * 32 : DPLR_CARRY_THREADS;
    KC_LAUNCH(k_dplr_carry, (unsigned)a->H, threads, 0, s, *a, dplr_chunks(*a, L), M, local);
}

extern "C" void kc_s4_dplr_fix(const kc_s4_args *a, int L, float *local, kc_stream s)
{
    KC_LAUNCH(k_dplr_fix, dplr_grid(a, dplr_chunks(*a, L) - 1), (unsigned)DPLR_THREADS, 0, s, *a, L,
              local);
}

extern "C" void kc_s4_dplr_prefill(const kc_s4_args *a, int L, float *scratch, kc_stream s)
{
    float *M = scratch + (size_t)(dplr_chunks(*a, L) - 1) * dplr_per(*a);
    kc_s4_dplr_local(a, L, scratch, s);
    kc_s4_dplr_transition(a, L, M, s);
    kc_s4_dplr_carry(a, L, M, scratch, s);
    kc_s4_dplr_fix(a, L, scratch, s);
}
