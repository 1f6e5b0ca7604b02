/* cpu_gen_qmatmul.h - the decode matmul for block-quantized weights (Q8_0,
 * Q4_0, Q4_K, Q6_K, Q5_0), written once on cpu_vec_int8.h's int8 dot
 * products.
 *
 * A template like cpu_gen_matmul.h: included by cpu_gen_table.h inside
 * each cpu_isa_*.c, every function static; never include it elsewhere.
 *
 * Numerics: x arrives quantized to int8 blocks of 32 with an f32 scale
 * (cpu_quant.h).  Each 32 weights are unpacked to int8 (Q8_0's already
 * are), multiplied by x's int8 block exactly in integers, and the sum is
 * scaled by the weight block's scale(s) times x's scale and added to an
 * f32 accumulator; Q4_0's offset (8 * d * sum(x)) and Q4_K's mins (dmin *
 * min * dx * sum(x's q)) are taken off the same accumulator's lanes, a
 * group at a time.  So the only rounding beyond f32 accumulation is x's 8
 * bits.  Every row of x goes through the same operations in the same
 * order whatever the batch, so a sequence's logits do not depend on the
 * sequences it decodes beside.
 *
 * Shape: a row is walked in groups of 8 blocks (256 weights: one K-quant
 * super-block).  At batch 1 the kernel is bound by instructions, not by
 * the ~0.56-1.06 bytes per weight it streams, and the per-block scalar
 * work (f16 scale, scale products, offsets, Q4_K's 6-bit scales) cost as
 * much as the dot products: so a group's scales are computed together in
 * 8-lane vectors (vq8f), and the dot products then take two blocks per
 * step (vq2: one 512-bit step on AVX-512, two 256-bit ones elsewhere).
 * A group is unpacked once (gen_wgroup) for all the rows of x that meet
 * it: up to GEN_QT of them keep their accumulators in registers, more
 * keep them in memory (batched decode), where unpacking the group again
 * for every 4 rows cost about a sixth of the time.
 */
#include "engine/quant.h"
#include "kernels/cpu/cpu_quant.h"
#include "kernels/cpu/cpu_vec.h"
#include "kernels/cpu/cpu_vec_int8.h"

enum {
    GEN_QT = 4,     /* rows of x whose accumulators stay in registers */
    GEN_QWIDE = 48, /* rows of x per pass over a row of W beyond that */
    GEN_QG = 8,     /* blocks of 32 per group */
    GEN_QS = 16     /* scale products per group and row of x: Q6_K's one per 16 */
};

/* One group of a row of W, unpacked once for every row of x that meets
 * it: its blocks as int8 in pairs, and its scales as f32 vectors. */
typedef struct gen_wgroup {
    vq8x2 pair[GEN_QG / 2]; /* blocks 2p and 2p + 1; Q4_0's and Q4_K's
                               without their offset (0..15), the others signed */
    vq8f scale;  /* the 8 blocks' scales; Q6_K: its first 8 (of 16) times d */
    vq8f scale2; /* Q6_K: its last 8 times d; Q4_0 and Q4_K: each block's
                    offset per unit of x's dsum; otherwise unused */
} gen_wgroup;

/* Blocks 2p and 2p + 1 of the group at blk as int8. */
static inline __attribute__((always_inline)) vq8x2 gen_group_pair(const uint8_t *blk, eng_dtype dt,
                                                                  long bytes, int p)
{
    const uint8_t *b0 = blk + 2 * p * bytes, *b1 = b0 + bytes;
    switch (dt) {
    case ENG_DTYPE_Q4_K: return vq8x2_q4k(blk, 2 * p);
    case ENG_DTYPE_Q6_K: return vq8x2_q6k(blk, 2 * p);
    case ENG_DTYPE_Q4_0: return vq8x2_q4_0u(b0, b1);
    case ENG_DTYPE_Q5_0: { /* small tensors only (ssm_dt): unpacked in C */
        int8_t g[2 * CPU_Q8_BLOCK];
        eng_q5_0_group(b0, g);
        eng_q5_0_group(b1, g + CPU_Q8_BLOCK);
        return vq8x2_load(g, g + CPU_Q8_BLOCK);
    }
    default: return vq8x2_load(b0 + 2, b1 + 2);
    }
}

/* The group at blk (dtype dt; bytes per block for the 32-weight types). */
static inline __attribute__((always_inline)) gen_wgroup gen_wgroup_at(const uint8_t *blk,
                                                                      eng_dtype dt, long bytes)
{
    gen_wgroup g;
    g.scale2 = vq8f_zero();
    if (dt == ENG_DTYPE_Q6_K) { /* scale k goes with x's block k / 2 */
        const vq8f d = vq8f_set1(vq_f16(blk + 208));
        g.scale = vq8f_mul(d, vq8f_i8((const int8_t *)blk + 192));
        g.scale2 = vq8f_mul(d, vq8f_i8((const int8_t *)blk + 200));
    } else if (dt == ENG_DTYPE_Q4_K) {
        uint64_t sc, mn;
        eng_q4k_scales_mins64(blk + 4, &sc, &mn);
        g.scale = vq8f_mul(vq8f_set1(vq_f16(blk)), vq8f_u8x8(sc));
        g.scale2 = vq8f_mul(vq8f_set1(vq_f16(blk + 2)), vq8f_u8x8(mn));
    } else {
        g.scale = vq8f_f16s(blk, bytes);
        if (dt == ENG_DTYPE_Q4_0) /* sum (q - 8) x = sum q x - 8 sum x */
            g.scale2 = vq8f_mul(g.scale, vq8f_set1(8.0f));
    }
#pragma GCC unroll 4 /* each pair's offsets and shift counts constant */
    for (int p = 0; p < GEN_QG / 2; p++)
        g.pair[p] = gen_group_pair(blk, dt, bytes, p);
    return g;
}

/* acc plus the unpacked group g times one row of x at the same group
 * (xq its 256 values, xd and xdsum its 8 blocks' scales and d * sum(q)).
 * The offsets of Q4_0 and Q4_K are taken off acc's lanes as they go. */
static inline __attribute__((always_inline)) vq2 gen_wgroup_dot(const gen_wgroup *g, eng_dtype dt,
                                                                const int8_t *xq, const float *xd,
                                                                const float *xdsum, vq2 acc)
{
    float s[GEN_QS];
    if (dt == ENG_DTYPE_Q6_K) {
        vq8f_store(s, vq8f_mul(g->scale, vq8f_dup2(xd)));
        vq8f_store(s + 8, vq8f_mul(g->scale2, vq8f_dup2(xd + 4)));
    } else {
        vq8f_store(s, vq8f_mul(g->scale, vq8f_load(xd)));
        if (dt == ENG_DTYPE_Q4_0 || dt == ENG_DTYPE_Q4_K)
            acc = vq2_fnma8(acc, g->scale2, xdsum);
    }
#pragma GCC unroll 4
    for (int p = 0; p < GEN_QG / 2; p++) {
        const int8_t *x = xq + 2 * p * CPU_Q8_BLOCK;
        if (dt == ENG_DTYPE_Q6_K)
            acc = vq2_dot16(acc, g->pair[p], x, s + 4 * p);
        else if (dt == ENG_DTYPE_Q4_0 || dt == ENG_DTYPE_Q4_K)
            acc = vq2_dotu(acc, g->pair[p], x, s + 2 * p);
        else
            acc = vq2_dot(acc, g->pair[p], x, s + 2 * p);
    }
    return acc;
}

/* The last n < 8 blocks of a Q8_0 / Q4_0 / Q5_0 row against one row of x
 * (at the same block): both copied into a group padded with zero blocks
 * (scale 0: they add nothing) so that they take the same code.  Only rows
 * that are not a multiple of 256 weights come here. */
static inline __attribute__((always_inline)) vq2 gen_tail_dot(const uint8_t *blk, eng_dtype dt,
                                                              long bytes, int n, const int8_t *xq,
                                                              const float *xd, const float *xdsum,
                                                              vq2 acc)
{
    uint8_t w[GEN_QG * ENG_Q8_0_BYTES] = {0}; /* Q8_0's blocks are the largest */
    int8_t q[GEN_QG * CPU_Q8_BLOCK] = {0};
    float d[GEN_QG] = {0}, dsum[GEN_QG] = {0};
    memcpy(w, blk, (size_t)(n * bytes));
    memcpy(q, xq, (size_t)n * CPU_Q8_BLOCK);
    memcpy(d, xd, sizeof(float) * (size_t)n);
    memcpy(dsum, xdsum, sizeof(float) * (size_t)n);
    const gen_wgroup g = gen_wgroup_at(w, dt, bytes);
    return gen_wgroup_dot(&g, dt, q, d, dsum, acc);
}

/* How far ahead of the group being read the quantized GEMV prefetches.
 * Measured on mamba-130m Q8_0/Q4_K decode at batch 1 (2 threads, Xeon):
 * none 80/99 tok/s, 2 KB 105/189, 4 KB 108-119/198-200, 8 KB 98-111/175-191. */
enum { GEN_QPF_BYTES = 4096 };

/* A row of W of dtype dt: its blocks' size, and its groups'. */
typedef struct gen_qshape {
    long bytes;       /* per block of the 32-weight types; 0 for K-quants */
    long group_bytes; /* per group of 8 blocks (one K-quant super-block) */
    long groups;      /* whole groups per row */
    int tail;         /* blocks after them (32-weight types only) */
} gen_qshape;

static inline __attribute__((always_inline)) gen_qshape gen_qshape_of(eng_dtype dt, long cols)
{
    gen_qshape s;
    s.bytes = dt == ENG_DTYPE_Q8_0   ? ENG_Q8_0_BYTES
              : dt == ENG_DTYPE_Q4_0 ? ENG_Q4_0_BYTES
              : dt == ENG_DTYPE_Q5_0 ? ENG_Q5_0_BYTES
                                     : 0;
    s.group_bytes = dt == ENG_DTYPE_Q4_K   ? ENG_Q4_K_BYTES
                    : dt == ENG_DTYPE_Q6_K ? ENG_Q6_K_BYTES
                                           : GEN_QG * s.bytes;
    s.groups = cols / CPU_Q8_BLOCK / GEN_QG;
    s.tail = (int)(cols / CPU_Q8_BLOCK % GEN_QG); /* K-quant rows are whole super-blocks */
    return s;
}

/* Group j of a row of W, prefetching the bytes GEN_QPF_BYTES further on
 * when asked (rows are contiguous, so that runs into the next rows): the
 * kernel reads one row at a time, a single sequential stream that the
 * hardware prefetcher alone kept at half the bandwidth. */
static inline __attribute__((always_inline)) const uint8_t *gen_qgroup(const uint8_t *wrow,
                                                                      const gen_qshape *s, long j,
                                                                      int prefetch)
{
    const uint8_t *group = wrow + j * s->group_bytes;
    if (prefetch)
        for (long o = 0; o < s->group_bytes; o += 64)
            __builtin_prefetch(group + GEN_QPF_BYTES + o, 0, 3);
    return group;
}

/* The rows of x that a call multiplies, with what gen_qgroup needs of W:
 * taken apart once per call, not once per row of W. */
typedef struct gen_qcall {
    gen_qshape w;
    const int8_t *q; /* x's values, row after row */
    const float *d, *dsum;
    long nb;         /* blocks per row of x */
} gen_qcall;

/* acc plus group j of a row of W, unpacked in g, times row i of x. */
static inline __attribute__((always_inline)) vq2 gen_qcall_dot(const gen_qcall *c,
                                                               const gen_wgroup *g, eng_dtype dt,
                                                               long i, long j, vq2 acc)
{
    const long block = i * c->nb + j * GEN_QG;
    return gen_wgroup_dot(g, dt, c->q + block * CPU_Q8_BLOCK, c->d + block, c->dsum + block, acc);
}

/* acc plus the tail blocks of wrow (after its whole groups) times row i. */
static inline __attribute__((always_inline)) vq2 gen_qcall_tail(const gen_qcall *c,
                                                                const uint8_t *wrow, eng_dtype dt,
                                                                long i, vq2 acc)
{
    const long block = i * c->nb + c->w.groups * GEN_QG;
    return gen_tail_dot(wrow + c->w.groups * c->w.group_bytes, dt, c->w.bytes, c->w.tail,
                        c->q + block * CPU_Q8_BLOCK, c->d + block, c->dsum + block, acc);
}

/* Row r of W (at wrow) against rows [i0, i0 + n) of x: their sums, not
 * yet reduced, in acc[0..n).  Prefetches ahead on the first pass over the
 * row only (i0 == 0). */
static inline __attribute__((always_inline)) void gen_qrow(const gen_qcall *c, const uint8_t *wrow,
                                                           eng_dtype dt, int i0, int n, vq2 acc[])
{
    for (int b = 0; b < n; b++)
        acc[b] = vq2_zero();
    for (long j = 0; j < c->w.groups; j++) {
        const gen_wgroup g = gen_wgroup_at(gen_qgroup(wrow, &c->w, j, i0 == 0), dt, c->w.bytes);
        for (int b = 0; b < n; b++)
            acc[b] = gen_qcall_dot(c, &g, dt, i0 + b, j, acc[b]);
    }
    for (int b = 0; b < n && c->w.tail; b++)
        acc[b] = gen_qcall_tail(c, wrow, dt, i0 + b, acc[b]);
}

/* Zero sums for rows nr..3 of a group of four rows of W that has only nr
 * (the last of a range), so that gen_qstore4 reduces defined values. */
static inline void gen_qrow_zero(vq2 *acc, int stride, int n, int nr)
{
    for (int a = nr; a < 4; a++)
        for (int b = 0; b < n; b++)
            acc[a * stride + b] = vq2_zero();
}

/* Rows r..r+nr-1 (nr <= 4) of W against rows [i0, i0 + n) of x, each
 * row's sums in acc[a][0..n): into y, plus bias.  The four rows are
 * reduced side by side (vq2_hsum4): on rows of a few hundred weights the
 * separate reductions held 15% of batch-1 samples in `perf annotate`;
 * together, batches 4 and 16 ran 3-5% faster in bench_kernels (batch 1
 * within its noise).  Row a's sums are at acc + a * stride; rows past nr
 * hold zeros (gen_qrow_zero). */
static inline __attribute__((always_inline)) void gen_qstore4(const vq2 *acc, int stride,
                                                              int n, int nr, int i0, float *y,
                                                              int ldy, const float *bias, long r)
{
    const vq2 *a0 = acc, *a1 = a0 + stride, *a2 = a1 + stride, *a3 = a2 + stride;
    for (int b = 0; b < n; b++) {
        float sum[4];
        vq2_hsum4(a0[b], a1[b], a2[b], a3[b], sum);
        for (int a = 0; a < nr; a++)
            y[(size_t)(i0 + b) * ldy + r + a] = sum[a] + (bias ? bias[r + a] : 0.0f);
    }
}

/* Rows [r0, r1) of W (dtype dt) against rows [0, NI) of x (NI <= GEN_QT:
 * all of them), into y, four rows of W at a time.  Inlined with dt and NI
 * constant so that the accumulators can stay in registers. */
static inline __attribute__((always_inline)) void gen_qrows_few(const gen_qcall *c,
                                                                const bk_matrix *w, eng_dtype dt,
                                                                int NI, float *y, int ldy,
                                                                const float *bias, long r0, long r1)
{
    for (long r = r0; r < r1; r += 4) {
        const int nr = r1 - r < 4 ? (int)(r1 - r) : 4;
        vq2 acc[4][GEN_QT];
        for (int a = 0; a < nr; a++)
            gen_qrow(c, (const uint8_t *)w->data + (size_t)(r + a) * w->row_bytes, dt, 0, NI, acc[a]);
        gen_qrow_zero(acc[0], GEN_QT, NI, nr);
        gen_qstore4(acc[0], GEN_QT, NI, nr, 0, y, ldy, bias, r);
    }
}

/* The same for any number m of rows of x, GEN_QWIDE at a time: the
 * accumulators live in memory (a load and a store per group and row of
 * x, against the 4 dot products between them, while the vector ports
 * are the limit), so that each group is unpacked once for all of them.
 * Four rows of W are a few KB: they stay in L1 between the passes. */
static inline __attribute__((always_inline)) void gen_qrows_many(const gen_qcall *c,
                                                                 const bk_matrix *w, eng_dtype dt,
                                                                 int m, float *y, int ldy,
                                                                 const float *bias, long r0,
                                                                 long r1)
{
    vq2 acc[4][GEN_QWIDE];
    for (long r = r0; r < r1; r += 4) {
        const int nr = r1 - r < 4 ? (int)(r1 - r) : 4;
        for (int i0 = 0; i0 < m; i0 += GEN_QWIDE) {
            const int n = m - i0 < GEN_QWIDE ? m - i0 : GEN_QWIDE;
            for (int a = 0; a < nr; a++)
                gen_qrow(c, (const uint8_t *)w->data + (size_t)(r + a) * w->row_bytes, dt, i0, n,
                         acc[a]);
            gen_qrow_zero(acc[0], GEN_QWIDE, n, nr);
            gen_qstore4(acc[0], GEN_QWIDE, n, nr, i0, y, ldy, bias, r);
        }
    }
}

/* Rows [r0, r1) of W (dtype dt, constant after inlining) against every
 * row of a. */
static inline __attribute__((always_inline)) void gen_qgemv_dt(const bk_matrix *w, eng_dtype dt,
                                                               const cpu_q8_act *a, float *y,
                                                               int ldy, const float *bias,
                                                               long r0, long r1)
{
    const gen_qcall c = {gen_qshape_of(dt, a->cols), a->q, a->d, a->dsum, a->cols / CPU_Q8_BLOCK};
    switch (a->m) {
    case 1: gen_qrows_few(&c, w, dt, 1, y, ldy, bias, r0, r1); break;
    case 2: gen_qrows_few(&c, w, dt, 2, y, ldy, bias, r0, r1); break;
    case 3: gen_qrows_few(&c, w, dt, 3, y, ldy, bias, r0, r1); break;
    case 4: gen_qrows_few(&c, w, dt, 4, y, ldy, bias, r0, r1); break;
    default: gen_qrows_many(&c, w, dt, a->m, y, ldy, bias, r0, r1); break;
    }
}

/* The rows of x (stride ldx) quantized into a, which cpu_q8_act_reserve
 * sized: cpu_quant.h's numerics, a block of 32 at a time in vectors.  The
 * same bytes and scales as the scalar level's, which the tests take for
 * the reference: a maximum, one division, one product and a rounding to
 * nearest even per value are each exact.  (Scalar, this ran at 2 ns per
 * value on one thread while the others waited: a tenth of a batched
 * quantized step.) */
static void gen_q8_rows(cpu_q8_act *a, const float *x, int ldx)
{
    const long nb = a->cols / CPU_Q8_BLOCK;
    const vf hi = vf_set1(127.0f), lo = vf_set1(-127.0f);
    for (int i = 0; i < a->m; i++)
        for (long b = 0; b < nb; b++) {
            const float *xb = x + (size_t)i * ldx + b * CPU_Q8_BLOCK;
            const size_t bi = (size_t)i * nb + b;
            vf amax = vf_zero();
            for (int l = 0; l < CPU_Q8_BLOCK; l += VF_W) /* x first: x86 passes over a NaN */
                amax = vf_max(vf_abs(vf_load(xb + l)), amax);
            const float d = vf_hmax(amax) / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
            const vf vid = vf_set1(id);
            vint sum = vi_set1(0);
            for (int l = 0; l < CPU_Q8_BLOCK; l += VF_W) {
                /* clamped before rounding, the same as after since +-127
                 * are whole; x86 takes a NaN to 127 as the scalar C does */
                const vint q = vi_from_vf(vf_max(vf_min(vf_mul(vf_load(xb + l), vid), hi), lo));
                vi_store_i8(a->q + bi * CPU_Q8_BLOCK + l, q);
                sum = vi_add(sum, q);
            }
            a->d[bi] = d;
            a->dsum[bi] = d * vf_hsum(vf_from_vi(sum)); /* whole numbers: exact */
        }
}

static void gen_qgemv_rows(const bk_matrix *w, const cpu_q8_act *a, float *y, int ldy,
                           const float *bias, long r0, long r1)
{
    switch (w->dtype) {
    case ENG_DTYPE_Q8_0: gen_qgemv_dt(w, ENG_DTYPE_Q8_0, a, y, ldy, bias, r0, r1); break;
    case ENG_DTYPE_Q4_0: gen_qgemv_dt(w, ENG_DTYPE_Q4_0, a, y, ldy, bias, r0, r1); break;
    case ENG_DTYPE_Q4_K: gen_qgemv_dt(w, ENG_DTYPE_Q4_K, a, y, ldy, bias, r0, r1); break;
    case ENG_DTYPE_Q5_0: gen_qgemv_dt(w, ENG_DTYPE_Q5_0, a, y, ldy, bias, r0, r1); break;
    default: gen_qgemv_dt(w, ENG_DTYPE_Q6_K, a, y, ldy, bias, r0, r1); break;
    }
}
