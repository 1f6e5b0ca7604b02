/* conv1d.cu - Mamba-1's causal depthwise conv1d + SiLU: prefill of one
 * sequence from its conv window (tiled through shared memory), the window
 * update, and the decode step over a batch of slots.
 *
 * Prefill is two launches so that no block reads the old window while
 * another writes the new one: k_conv_tile computes every output from a
 * (time x channel) tile with its d_conv-1 rows of history, then
 * k_conv_window shifts the window.  Never allocates or synchronises.
 */
#include "kernels/cuda/kc_device.cuh"

enum {
    TILE_E = 32, /* channels per block (one warp wide) */
    TILE_Y = 8,  /* thread rows per block */
    TILE_T = 32, /* time steps per block */
};

/* Block (TILE_E, TILE_Y) computes channels [bx*TILE_E, +TILE_E) for times
 * [by*TILE_T, +TILE_T).  tile: (TILE_T + K - 1, TILE_E), row i holds the
 * input at time t0 - (K-1) + i (old window for negative times). */
__global__ void k_conv_tile(kc_conv_args a)
{
    KC_SHARED_DYN(float, tile);
    const int tx = threadIdx.x, ty = threadIdx.y, K = a.K, E = a.E;
    const int e = blockIdx.x * TILE_E + tx, t0 = blockIdx.y * TILE_T;
    for (int i = ty; i < TILE_T + K - 1; i += TILE_Y) {
        int t = t0 - (K - 1) + i;
        float v = 0.0f;
        if (e < E) {
            if (t < 0)
                v = a.window[(size_t)(t + K - 1) * E + e];
            else if (t < a.T)
                v = a.x[(size_t)t * a.ldx + e];
        }
        tile[i * TILE_E + tx] = v;
    }
    __syncthreads();
    if (e >= E)
        return;
    for (int r = ty; r < TILE_T; r += TILE_Y) {
        int t = t0 + r;
        if (t >= a.T)
            break;
        float acc = a.b ? a.b[e] : 0.0f;
        for (int k = 0; k < K; k++)
            acc += a.w[(size_t)k * E + e] * tile[(r + k) * TILE_E + tx];
        a.out[(size_t)t * E + e] = kc_silu(acc);
    }
}

/* Thread per channel: new row j = input at time T-(K-1)+j.  A source in the
 * old window is row T+j >= j, not yet overwritten when j ascends. */
__global__ void k_conv_window(kc_conv_args a)
{
    const int e = blockIdx.x * blockDim.x + threadIdx.x, E = a.E;
    if (e >= E)
        return;
    for (int j = 0; j < a.K - 1; j++) {
        int src_t = a.T - (a.K - 1) + j;
        float v = src_t >= 0 ? a.x[(size_t)src_t * a.ldx + e] : a.window[(size_t)(a.T + j) * E + e];
        a.window[(size_t)j * E + e] = v;
    }
}

/* Grid (channel blocks, batch): one token of sequence b, window in place. */
__global__ void k_conv_step(kc_conv_args a)
{
    const int e = blockIdx.x * blockDim.x + threadIdx.x, b = blockIdx.y, E = a.E, K = a.K;
    if (e >= E)
        return;
    const int32_t slot = a.at.slots[b];
    if (slot < 0) {
        a.out[(size_t)b * E + e] = 0.0f;
        return;
    }
    float *win = a.at.pool + (size_t)slot * a.at.slot_stride + a.at.offset;
    const float xv = a.x[(size_t)b * a.ldx + e];
    float acc = a.b ? a.b[e] : 0.0f;
    for (int k = 0; k < K - 1; k++)
        acc += a.w[(size_t)k * E + e] * win[(size_t)k * E + e];
    acc += a.w[(size_t)(K - 1) * E + e] * xv;
    for (int j = 0; j + 1 < K - 1; j++)
        win[(size_t)j * E + e] = win[(size_t)(j + 1) * E + e];
    if (K > 1)
        win[(size_t)(K - 2) * E + e] = xv;
    a.out[(size_t)b * E + e] = kc_silu(acc);
}

extern "C" void kc_conv_prefill(const kc_conv_args *a, kc_stream s)
{
    if (a->T <= 0)
        return;
    dim3 grid(kc_div_up(a->E, TILE_E), kc_div_up(a->T, TILE_T)), block(TILE_E, TILE_Y);
    size_t smem = sizeof(float) * (size_t)(TILE_T + a->K - 1) * TILE_E;
    KC_LAUNCH(k_conv_tile, grid, block, smem, s, *a);
    if (a->K > 1) {
        unsigned bx = kc_warps_for(a->E, 256);
        KC_LAUNCH(k_conv_window, kc_div_up(a->E, bx), bx, 0, s, *a);
    }
}

extern "C" void kc_conv_step(const kc_conv_args *a, kc_stream s)
{
    if (a->at.batch <= 0)
        return;
    unsigned bx = kc_warps_for(a->E, 128);
    dim3 grid(kc_div_up(a->E, bx), (unsigned)a->at.batch);
    KC_LAUNCH(k_conv_step, grid, bx, 0, s, *a);
}
