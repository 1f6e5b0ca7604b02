/* quant.cu - the kernels that read GGUF's block-quantized weights (Q8_0,
 * Q4_0, Q5_0, Q4_K, Q6_K) as they are stored: the decode GEMV, which
 * dequantises inside its bandwidth-bound loop, and the dequantisation of
 * whole rows to f32 (the embedding gather, and the panels widened ahead of
 * a prefill SGEMM).  The layouts are engine/quant.h's; the products are
 * taken in engine/quant.c's order, so that a dequantised weight is the
 * reference's float (short of an FMA contraction by nvcc).
 *
 * The unit everywhere is a group of 32 consecutive weights of a row: a
 * whole Q8_0 / Q4_0 / Q5_0 block, or an eighth of a Q4_K / Q6_K
 * super-block, so that group G holds the row's weights 32G .. 32G+31.  A
 * thread reads its group's bytes with 16-bit loads: the block sizes (34,
 * 18, 22, 144, 210 bytes) are all even, but 34, 18, 22 and 210 are not
 * multiples of 4, so a wider load would be misaligned on every other
 * block.  In the GEMV, lane l of a row's warp takes groups l, l+32, ...:
 * together the warp's loads of one step cover 32 consecutive groups, one
 * contiguous stretch of the row, each byte fetched from memory once (the 8
 * lanes of a K-quant super-block read its scales as one broadcast).  The
 * group is dequantised in registers and dotted with x in f32.
 *
 * No shared memory, no barrier (nothing for test_every_barrier_matters to
 * remove).  Never allocates or synchronises.
 */
#include "kernels/cuda/kc_gemv.cuh"

enum { DEQUANT_THREADS = 128, QK = 32 /* weights per group */ };

/* Bytes per block and 32-weight groups per block of each type. */
template <int DT> struct kc_qfmt {
    enum {
        BYTES = DT == KC_DT_Q8_0 ? 34 : DT == KC_DT_Q4_0 ? 18 : DT == KC_DT_Q5_0 ? 22 : DT == KC_DT_Q4_K ? 144 : 210,
        GROUPS = DT == KC_DT_Q4_K || DT == KC_DT_Q6_K ? 8 : 1
    };
};

/* N 16-bit words from p (2-byte aligned), all loads issued before any use. */
template <int N> static __device__ __forceinline__ void kc_ld16(const uint8_t *p, uint16_t h[N])
{
    const uint16_t *q = reinterpret_cast<const uint16_t *>(p);
    for (int k = 0; k < N; k++)
        h[k] = __ldg(q + k);
}

/* Byte j of the little-endian words h. */
static __device__ __forceinline__ unsigned kc_byte(const uint16_t *h, int j)
{
    return ((unsigned)h[j >> 1] >> ((j & 1) * 8)) & 0xffu;
}

/* Byte j of the 12 bytes in words p[0..5], j varying by lane: picked by
 * selects rather than an indexed load, which would put p in local memory. */
static __device__ __forceinline__ unsigned kc_byte12(const uint16_t p[6], int j)
{
    unsigned w = p[0];
    KC_UNROLL
    for (int k = 1; k < 6; k++)
        w = k == j >> 1 ? p[k] : w;
    return (w >> ((j & 1) * 8)) & 0xffu;
}

/* Q4_K's 6-bit (scale, min) of sub-block s from its 12 packed bytes p
 * (engine/quant.h, eng_q4k_scale_min, has the packing). */
static __device__ __forceinline__ void kc_q4k_scale_min(const uint16_t p[6], int s, int *sc, int *mn)
{
    if (s < 4) {
        *sc = (int)(kc_byte12(p, s) & 63);
        *mn = (int)(kc_byte12(p, s + 4) & 63);
    } else {
        *sc = (int)((kc_byte12(p, s + 4) & 15) | (kc_byte12(p, s - 4) >> 6) << 4);
        *mn = (int)((kc_byte12(p, s + 4) >> 4) | (kc_byte12(p, s) >> 6) << 4);
    }
}

/* Group G of the blocks at w, dequantised to v. */
template <int DT> static __device__ __forceinline__ void kc_q_group(const uint8_t *w, size_t G, float v[QK])
{
    const uint8_t *b = w + G / kc_qfmt<DT>::GROUPS * (size_t)kc_qfmt<DT>::BYTES;
    const int g = (int)(G % kc_qfmt<DT>::GROUPS); /* group within a super-block */
    if (DT == KC_DT_Q8_0) { /* f16 d, int8 q[32]: d * q */
        uint16_t h[17];
        kc_ld16<17>(b, h);
        const float d = kc_f16_to_f32(h[0]);
        for (int l = 0; l < QK; l++)
            v[l] = d * (float)(int8_t)kc_byte(h + 1, l);
    } else if (DT == KC_DT_Q4_0 || DT == KC_DT_Q5_0) {
        /* f16 d, [Q5_0: u32 of fifth bits], 16 bytes: byte j holds weight j
         * low and j+16 high; d * (q - 8), or d * (q - 16) with the bit */
        enum { NW = DT == KC_DT_Q4_0 ? 9 : 11, QS = DT == KC_DT_Q4_0 ? 1 : 3 };
        uint16_t h[NW];
        kc_ld16<NW>(b, h);
        const float d = kc_f16_to_f32(h[0]);
        const uint32_t qh = DT == KC_DT_Q5_0 ? (uint32_t)h[1] | (uint32_t)h[2] << 16 : 0u;
        const int off = DT == KC_DT_Q4_0 ? 8 : 16;
        for (int j = 0; j < 16; j++) {
            const unsigned q = kc_byte(h + QS, j);
            v[j] = d * (float)((int)((q & 15) | ((qh >> j) & 1) << 4) - off);
            v[j + 16] = d * (float)((int)((q >> 4) | ((qh >> (j + 16)) & 1) << 4) - off);
        }
    } else if (DT == KC_DT_Q4_K) {
        /* f16 d, f16 dmin, 12 bytes of scales/mins, nibbles: bytes
         * [16 + 32c, +32) hold sub-block 2c low and 2c+1 high;
         * d * scale * q - dmin * min */
        uint16_t hd[8], hq[16];
        kc_ld16<8>(b, hd);
        kc_ld16<16>(b + 16 + 32 * (g >> 1), hq);
        int sc, mn;
        kc_q4k_scale_min(hd + 2, g, &sc, &mn);
        const float ds = kc_f16_to_f32(hd[0]) * (float)sc, dm = kc_f16_to_f32(hd[1]) * (float)mn;
        const int shift = (g & 1) * 4;
        for (int l = 0; l < QK; l++)
            v[l] = ds * (float)((kc_byte(hq, l) >> shift) & 15) - dm;
    } else { /* Q6_K */
        /* ql[128], qh[64], int8 scales[16], f16 d; group g = 4h + k: low 4
         * bits from ql[64h + 32(k&1) + l] (high nibble for k >= 2), high 2
         * from bits 2k.. of qh[32h + l]; d * scale * (q - 32) */
        const int hh = g >> 2, k = g & 3;
        uint16_t ql[16], qhi[16];
        kc_ld16<16>(b + 64 * hh + 32 * (k & 1), ql);
        kc_ld16<16>(b + 128 + 32 * hh, qhi);
        const unsigned sw = __ldg(reinterpret_cast<const uint16_t *>(b + 192) + g); /* scales[2g], [2g+1] */
        const float d = kc_f16_to_f32(__ldg(reinterpret_cast<const uint16_t *>(b + 208)));
        const float d0 = d * (float)(int8_t)(sw & 0xffu), d1 = d * (float)(int8_t)(sw >> 8);
        const int lshift = (k >> 1) * 4, hshift = 2 * k;
        for (int l = 0; l < QK; l++) {
            const int q = (int)(((kc_byte(ql, l) >> lshift) & 15) | ((kc_byte(qhi, l) >> hshift) & 3) << 4) - 32;
            v[l] = (l < 16 ? d0 : d1) * (float)q;
        }
    }
}

/* One warp per row r of W; lane l takes the row's groups l, l+32, ... */
template <int DT, bool XV>
__global__ void k_gemv_q(const uint8_t *w, int rows, int cols, const float *x, int ldx, int m, float *y,
                         int ldy, const float *bias)
{
    const int lane = threadIdx.x & 31, r = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (r >= rows)
        return; /* whole warps only: no block-wide barrier follows */
    const int groups = cols / QK;
    const uint8_t *row = w + (size_t)r * (size_t)(groups / kc_qfmt<DT>::GROUPS) * kc_qfmt<DT>::BYTES;
    float acc[KC_GEMV_MAX];
    for (int i = 0; i < KC_GEMV_MAX; i++)
        acc[i] = 0.0f;
    for (int g = lane; g < groups; g += 32) {
        float v[QK];
        kc_q_group<DT>(row, (size_t)g, v);
        KC_UNROLL /* acc stays in registers only if every index is a constant */
        for (int i = 0; i < KC_GEMV_MAX; i++)
            if (i < m)
                acc[i] += kc_dot_x<QK, XV>(v, x + (size_t)i * ldx + (size_t)g * QK);
    }
    kc_gemv_store(acc, m, lane, r, y, ldy, bias);
}

/* Thread per output group j of `groups`: output row j / gpr (gpr groups a
 * row) from source row ids[j / gpr] (ids NULL: the same row). */
template <int DT>
__global__ void k_dequant_rows(const uint8_t *w, const int32_t *ids, size_t gpr, size_t groups, float *out)
{
    for (size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x; j < groups;
         j += (size_t)gridDim.x * blockDim.x) {
        const size_t r = j / gpr, src = (ids ? (size_t)ids[r] : r) * gpr + j % gpr;
        float v[QK];
        kc_q_group<DT>(w, src, v);
        float *o = out + j * QK;
        for (int l = 0; l < QK; l++)
            o[l] = v[l];
    }
}

/* ---- launchers: one instantiation per block type -------------------------- */

template <int DT> struct gemv_q_launch {
    static void run(const void *w, int rows, int cols, const float *x, int ldx, int m, float *y, int ldy,
                    const float *bias, kc_stream s)
    {
        void (*k_gemv_q_dt)(const uint8_t *, int, int, const float *, int, int, float *, int, const float *) =
            kc_x_aligned(x, ldx) ? k_gemv_q<DT, true> : k_gemv_q<DT, false>;
        KC_LAUNCH(k_gemv_q_dt, kc_div_up(rows, GEMV_WARPS), 32 * GEMV_WARPS, 0, s, (const uint8_t *)w, rows,
                  cols, x, ldx, m, y, ldy, bias);
    }
};

template <int DT> struct dequant_launch {
    static void run(const void *w, const int32_t *ids, size_t gpr, size_t groups, float *out, kc_stream s)
    {
        const size_t blocks = (groups + DEQUANT_THREADS - 1) / DEQUANT_THREADS;
        void (*k_dequant_rows_dt)(const uint8_t *, const int32_t *, size_t, size_t, float *) =
            k_dequant_rows<DT>;
        KC_LAUNCH(k_dequant_rows_dt, (unsigned)(blocks < 4096 ? blocks : 4096), DEQUANT_THREADS, 0, s,
                  (const uint8_t *)w, ids, gpr, groups, out);
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
    for_block_type<dequant_launch>(dt, w, ids, cols / QK, n * (cols / QK), out, s);
}
