/* quant.cu - the kernels that read GGUF's block-quantized weights (Q8_0,
 * Q4_0, Q5_0, Q4_K, Q6_K) as they are stored: the decode GEMV, which
 * dequantises inside its bandwidth-bound loop, and the dequantisation of
 * whole rows to f32 (the embedding gather, and the panels widened ahead of
 * a prefill SGEMM).  The layouts are engine/quant.h's; the products are
 * taken in engine/quant.c's order, so that a dequantised weight is the
 * reference's float (short of an FMA contraction by nvcc).
 *
 * The unit of addressing is a group of 32 consecutive weights of a row: a
 * whole Q8_0 / Q4_0 / Q5_0 block, or an eighth of a Q4_K / Q6_K
 * super-block, so that group G holds the row's weights 32G .. 32G+31, and
 * one weight is (group, lane).  The GEMV gives each row a warp, which
 * walks the row a chunk of 32 groups (1024 weights) at a time:
 *  1. the warp copies the chunk's bytes (32 blocks or 4 super-blocks, one
 *     contiguous stretch of the row) to its slice of shared memory, lane k
 *     taking 16-byte words k, k+32, ... (2-byte words where the row does
 *     not start on 16 bytes: Q6_K's 210-byte super-blocks, odd shapes), so
 *     that every load instruction of the warp reads one contiguous span;
 *  2. lane l dequantises weight l of each of the chunk's groups in
 *     registers (the group's scales are one broadcast read) and multiplies
 *     it with x[32G + l]: the warp's x loads are contiguous too;
 *  3. f32 partial sums per lane, reduced over the warp at the end.
 * The dequantiser thread takes one weight, so its f32 stores are
 * contiguous across the warp.
 *
 * Only __syncwarp (the warp's own slice of shared memory), no block
 * barrier: nothing for test_every_barrier_matters to remove.  Never
 * allocates or synchronises.
 */
#include "kernels/cuda/kc_gemv.cuh"

enum { DEQUANT_THREADS = 128, QK = 32 /* weights per group */, CHUNK = 32 /* groups per GEMV step */ };

/* Bytes per block and 32-weight groups per block of each type. */
template <int DT> struct kc_qfmt {
    enum {
        BYTES = DT == KC_DT_Q8_0 ? 34 : DT == KC_DT_Q4_0 ? 18 : DT == KC_DT_Q5_0 ? 22 : DT == KC_DT_Q4_K ? 144 : 210,
        GROUPS = DT == KC_DT_Q4_K || DT == KC_DT_Q6_K ? 8 : 1,
        CHUNK_BYTES = CHUNK / GROUPS * BYTES, /* a GEMV step's bytes */
        STAGE16 = (CHUNK_BYTES + 15) / 16      /* its shared memory, 16-byte words */
    };
};

/* The little-endian u16 at p (any alignment: p may be shared or global). */
static __device__ __forceinline__ unsigned kc_u16(const uint8_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }

/* Weight l (0..31) of group G of the blocks at b, dequantised. */
template <int DT> static __device__ __forceinline__ float kc_q_weight(const uint8_t *b, size_t G, int l)
{
    if (DT == KC_DT_Q8_0) { /* f16 d, int8 q[32]: d * q */
        const uint8_t *blk = b + G * 34;
        return kc_f16_to_f32((uint16_t)kc_u16(blk)) * (float)(int8_t)blk[2 + l];
    }
    if (DT == KC_DT_Q4_0 || DT == KC_DT_Q5_0) {
        /* f16 d, [Q5_0: a u32 whose bit l is weight l's fifth bit], 16
         * bytes: byte j holds weight j low, j+16 high; d * (q - 8) or
         * d * (q - 16) */
        const uint8_t *blk = b + G * kc_qfmt<DT>::BYTES;
        const unsigned byte = blk[(DT == KC_DT_Q4_0 ? 2 : 6) + (l & 15)];
        int q = (int)(l < 16 ? byte & 15 : byte >> 4);
        if (DT == KC_DT_Q5_0) {
            const uint32_t qh = (uint32_t)kc_u16(blk + 2) | (uint32_t)kc_u16(blk + 4) << 16;
            q = (q | (int)((qh >> l) & 1) << 4) - 16;
        } else {
            q -= 8;
        }
        return kc_f16_to_f32((uint16_t)kc_u16(blk)) * (float)q;
    }
    const uint8_t *sb = b + G / 8 * kc_qfmt<DT>::BYTES;
    const int g = (int)(G % 8); /* the group within its super-block */
    if (DT == KC_DT_Q4_K) {
        /* f16 d, f16 dmin, 12 bytes p packing 6-bit (scale, min) pairs
         * (engine/quant.h, eng_q4k_scales_mins), nibbles: bytes [16 + 32c,
         * +32) hold sub-block 2c low and 2c+1 high; d * scale * q - dmin * min */
        const uint8_t *p = sb + 4;
        int sc, mn;
        if (g < 4) {
            sc = p[g] & 63, mn = p[g + 4] & 63;
        } else {
            sc = (p[g + 4] & 15) | (p[g - 4] >> 6) << 4;
            mn = (p[g + 4] >> 4) | (p[g] >> 6) << 4;
        }
        const int q = (sb[16 + 32 * (g >> 1) + l] >> (4 * (g & 1))) & 15;
        return kc_f16_to_f32((uint16_t)kc_u16(sb)) * (float)sc * (float)q -
               kc_f16_to_f32((uint16_t)kc_u16(sb + 2)) * (float)mn;
    }
    /* Q6_K: ql[128], qh[64], int8 scales[16], f16 d; group g = 4h + k takes
     * its low 4 bits from ql[64h + 32(k&1) + l] (high nibble for k >= 2),
     * its high 2 from bits 2k.. of qh[32h + l]; d * scales[2g + l/16] * (q - 32) */
    const int h = g >> 2, k = g & 3;
    const int q = (int)(((sb[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 15) |
                        ((sb[128 + 32 * h + l] >> (2 * k)) & 3) << 4) - 32;
    return kc_f16_to_f32((uint16_t)kc_u16(sb + 208)) * (float)(int8_t)sb[192 + 2 * g + (l >> 4)] * (float)q;
}

/* The warp's copy of `bytes` at src to stage.  WIDE: src is 16-byte
 * aligned and bytes a multiple of 16 (16-byte loads; the launcher asks for
 * rows of a multiple of 16 bytes, so for every type here a whole number of
 * 8 groups a row, and a chunk of 32 groups or of the last multiple of 8 is
 * 16-byte words); else 2-byte loads (bytes is even: every block is). */
template <bool WIDE, int MAX16>
static __device__ __forceinline__ void kc_stage(const uint8_t *src, int bytes, uint4 *stage, int lane)
{
    if (WIDE) {
        KC_UNROLL /* every load issued before any store */
        for (int j = 0; j < (MAX16 + 31) / 32; j++) {
            const int k = lane + 32 * j;
            if (k < bytes / 16)
                stage[k] = __ldg(reinterpret_cast<const uint4 *>(src) + k);
        }
    } else {
        uint16_t *s16 = reinterpret_cast<uint16_t *>(stage);
        KC_UNROLL
        for (int j = 0; j < (MAX16 * 8 + 31) / 32; j++) {
            const int k = lane + 32 * j;
            if (k < bytes / 2)
                s16[k] = __ldg(reinterpret_cast<const uint16_t *>(src) + k);
        }
    }
}

/* One warp per row r of W, a chunk of CHUNK groups per step (see above). */
template <int DT, bool WIDE>
__global__ void k_gemv_q(const uint8_t *w, int rows, int cols, const float *x, int ldx, int m, float *y,
                         int ldy, const float *bias)
{
    typedef kc_qfmt<DT> F;
    KC_SHARED2(uint4, stage, GEMV_WARPS, F::STAGE16);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r = blockIdx.x * GEMV_WARPS + warp;
    if (r >= rows)
        return; /* whole warps only: the warps sync only among themselves */
    const int groups = cols / QK;
    const uint8_t *row = w + (size_t)r * (size_t)(groups / F::GROUPS) * F::BYTES;
    const uint8_t *st = reinterpret_cast<const uint8_t *>(stage[warp]);
    float acc[KC_GEMV_MAX];
    for (int i = 0; i < KC_GEMV_MAX; i++)
        acc[i] = 0.0f;
    for (int g0 = 0; g0 < groups; g0 += CHUNK) {
        const int n = kc_imin(CHUNK, groups - g0); /* a multiple of 8 for the K-quants */
        kc_stage<WIDE, F::STAGE16>(row + (size_t)(g0 / F::GROUPS) * F::BYTES, n / F::GROUPS * F::BYTES,
                                   stage[warp], lane);
        __syncwarp(); /* the chunk is staged */
        for (int j = 0; j < n; j++) {
            const float v = kc_q_weight<DT>(st, (size_t)j, lane);
            const float *xj = x + (size_t)(g0 + j) * QK + lane;
            KC_UNROLL /* acc stays in registers only if every index is a constant */
            for (int i = 0; i < KC_GEMV_MAX; i++)
                if (i < m)
                    acc[i] += v * __ldg(xj + (size_t)i * ldx);
        }
        __syncwarp(); /* every lane is done with the chunk before the next overwrites it */
    }
    kc_gemv_store(acc, m, lane, r, y, ldy, bias);
}

/* Thread per output weight e of n_out: output row e / cols from source row
 * ids[e / cols] (ids NULL: the same row), cols a multiple of QK. */
template <int DT>
__global__ void k_dequant_rows(const uint8_t *w, const int32_t *ids, size_t cols, size_t n_out, float *out)
{
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n_out; e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / cols, c = e % cols, src = ids ? (size_t)ids[r] : r;
        out[e] = kc_q_weight<DT>(w, (src * cols + c) / QK, (int)(c % QK));
    }
}

/* ---- launchers: one instantiation per block type -------------------------- */

template <int DT> struct gemv_q_launch {
    static void run(const void *w, int rows, int cols, const float *x, int ldx, int m, float *y, int ldy,
                    const float *bias, kc_stream s)
    {
        /* 16-byte staging loads need every chunk of every row on 16 bytes */
        const size_t row_bytes = (size_t)cols / QK / kc_qfmt<DT>::GROUPS * kc_qfmt<DT>::BYTES;
        const bool wide = ((uintptr_t)w & 15) == 0 && row_bytes % 16 == 0 && kc_qfmt<DT>::CHUNK_BYTES % 16 == 0;
        void (*k_gemv_q_dt)(const uint8_t *, int, int, const float *, int, int, float *, int, const float *) =
            wide ? k_gemv_q<DT, true> : k_gemv_q<DT, false>;
        KC_LAUNCH(k_gemv_q_dt, kc_div_up(rows, GEMV_WARPS), 32 * GEMV_WARPS, 0, s, (const uint8_t *)w, rows,
                  cols, x, ldx, m, y, ldy, bias);
    }
};

template <int DT> struct dequant_launch {
    static void run(const void *w, const int32_t *ids, size_t cols, size_t n_out, float *out, kc_stream s)
    {
        const size_t blocks = (n_out + DEQUANT_THREADS - 1) / DEQUANT_THREADS;
        void (*k_dequant_rows_dt)(const uint8_t *, const int32_t *, size_t, size_t, float *) =
            k_dequant_rows<DT>;
        KC_LAUNCH(k_dequant_rows_dt, (unsigned)(blocks < 4096 ? blocks : 4096), DEQUANT_THREADS, 0, s,
                  (const uint8_t *)w, ids, cols, n_out, out);
    }
};

/* L<dt>::run(args...) for the block-quantized dt (a bug otherwise: no launch). */
template <template <int> class L, typename... A> static void for_block_type(int dt, A... a)
{
    switch (dt) {
    case KC_DT_Q8_0: L<KC_DT_Q8_0>::run(a...); break;
    case KC_DT_Q4_0: L<KC_DT_Q4_0>::run(a...); break;
    case KC_DT_Q5_0: L<KC_DT_Q5_0>::run(a...); break;
    case KC_DT_Q4_K: L<KC_DT_Q4_K>::run(a...); break;
    case KC_DT_Q6_K: L<KC_DT_Q6_K>::run(a...); break;
    default: break;
    }
}

extern "C" void kc_gemv_quant(const void *w, int dt, int rows, int cols, const float *x, int ldx, int m,
                              float *y, int ldy, const float *bias, kc_stream s)
{
    if (m <= 0 || rows <= 0)
        return;
    for_block_type<gemv_q_launch>(dt, w, rows, cols, x, ldx, m, y, ldy, bias, s);
}

extern "C" void kc_dequant_rows(const void *w, int dt, size_t cols, const int32_t *ids, size_t n, float *out,
                                kc_stream s)
{
    if (n == 0 || cols < QK)
        return;
    for_block_type<dequant_launch>(dt, w, ids, cols, n * cols, out, s);
}
