/* ssd.cu - Mamba-2's SSD recurrence and gated RMSNorm (kc_ssd_args in
 * kc_kernels.h; semantics of bk_mamba2_ops in engine/backend.h).
 *
 * k_ssd: one block per head (and, for a decode step, per sequence); a
 * thread per channel p of the head keeps its d_state-long state row.  The
 * head's B and C for the token are staged in shared memory once per token.
 * Prefill walks the tokens of the prompt in order inside the block: correct
 * and simple, but sequential in time (the chunked matmul form of SSD, which
 * runs on tensor cores, is not written yet).
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
