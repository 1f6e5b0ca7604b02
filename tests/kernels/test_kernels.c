/* test_kernels.c - every CUDA kernel (kernels/NAME.cu), run by the CPU
 * emulation harness, against the CPU backend's ops (kernels/cpu/cpu_ssm.c,
 * the RMSNorm/embedding of backend_cpu.c) or double-precision references,
 * on tiny and awkward shapes: lengths that are not multiples of the chunk or
 * tile, one token, multi-pass carries, d_state 16 (the register path) and
 * others, batches of 1 and larger than a block, slots out of order, padding
 * slots.  Several shuffle seeds each.  Finally a mutation test: every
 * __syncthreads in every kernel, removed alone, must make some run wrong. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "kernels/cpu/cpu_ssd.h"
#include "kernels/cpu/cpu_ssm.h"
#include "engine/tensor.h"
#include "kernels/cpu/threadpool.h"
#include "kernels/emu/emu.h"
#include "kernels/cuda/kc_kernels.h"
#include "tests/kernels/kernel_data.h"
#include "tests/kernels/matmul_ref.h"

static double harness_verdict(double bad)
{
    if (kc_emu_error()) {
        kc_emu_clear_error();
        return INFINITY;
    }
    return bad;
}

/* One Mamba-1 mixer's small tensors and a sequence of inputs. */
typedef struct problem {
    bk_ssm_layer l;
    float *conv_w, *conv_b, *dt_bias, *A, *D;
    float *xz, *dt, *dbc; /* (rows, 2E), (rows, E), (rows, R + 2N) */
    int rows;
} problem;

static void problem_init(problem *p, int E, int N, int R, int K, int rows, int bias, unsigned seed)
{
    unsigned s = seed * 7919u + 13u;
    p->conv_w = rnd((size_t)K * E, &s, -0.6f, 0.6f);
    p->conv_b = bias ? rnd((size_t)E, &s, -0.3f, 0.3f) : NULL;
    p->dt_bias = rnd((size_t)E, &s, -1.0f, 0.5f);
    p->A = rnd((size_t)N * E, &s, -1.0f, 1.5f);
    for (int i = 0; i < N * E; i++)
        p->A[i] = -expf(p->A[i]);
    p->D = rnd((size_t)E, &s, -1.0f, 1.0f);
    p->xz = rnd((size_t)rows * 2 * E, &s, -1.5f, 1.5f);
    p->dt = rnd((size_t)rows * E, &s, -3.0f, -0.5f);
    p->dbc = rnd((size_t)rows * (R + 2 * N), &s, -1.0f, 1.0f);
    p->rows = rows;
    p->l = (bk_ssm_layer){.conv_w = p->conv_w, .conv_b = p->conv_b, .dt_bias = p->dt_bias,
                          .A = p->A, .D = p->D, .d_inner = E, .d_state = N, .d_conv = K,
                          .dt_rank = R};
}

static void problem_free(problem *p)
{
    float *v[] = {p->conv_w, p->conv_b, p->dt_bias, p->A, p->D, p->xz, p->dt, p->dbc};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        free(v[i]);
}

/* The CPU reference's view of rows of the problem: x and z are the halves
 * of xz's rows (stride 2E), as in_proj writes them. */
static bk_mamba1_io cpu_io(const problem *p, const float *xz, float *xc, const float *dt,
                           const float *dbc, float *y, int rows)
{
    const int E = p->l.d_inner;
    return (bk_mamba1_io){.x = xz, .ldx = 2 * E, .xc = xc, .dt = dt, .dbc = dbc, .z = xz + E,
                          .ldz = 2 * E, .y = y, .rows = rows};
}

static kc_scan_args scan_args(const problem *p)
{
    const bk_ssm_layer *l = &p->l;
    return (kc_scan_args){.dt_bias = l->dt_bias, .A = l->A, .D = l->D, .E = l->d_inner,
                          .N = l->d_state, .R = l->dt_rank, .dt = p->dt, .dbc = p->dbc,
                          .z = p->xz + l->d_inner, .ldz = 2 * l->d_inner};
}

/* ---- conv ------------------------------------------------------------- */

static double conv_prefill_case(int E, int K, int T, int bias, unsigned seed)
{
    problem p;
    problem_init(&p, E, 1, 1, K, T, bias, seed);
    unsigned s = seed;
    float *win = rnd((size_t)(K - 1) * E, &s, -1.0f, 1.0f), *win_ref = dup(win, (size_t)(K - 1) * E);
    float *xc = rnd((size_t)T * E, &s, 5, 6), *xc_ref = dup(xc, (size_t)T * E);
    eng_threadpool *pool = eng_threadpool_create(1);
    bk_mamba1_io io = cpu_io(&p, p.xz, xc_ref, NULL, NULL, NULL, T);
    cpu_conv_prefill(cpu_kernels_best(), pool, &p.l, win_ref, &io);
    kc_conv_args a = {.w = p.conv_w, .b = p.conv_b, .E = E, .K = K, .x = p.xz, .ldx = 2 * E,
                      .out = xc, .window = win, .T = T};
    kc_emu_seed(seed);
    kc_conv_prefill(&a, NULL);
    double bad = fmax(badness(xc, xc_ref, (size_t)T * E), badness(win, win_ref, (size_t)(K - 1) * E));
    eng_threadpool_destroy(pool);
    free(win), free(win_ref), free(xc), free(xc_ref);
    problem_free(&p);
    return harness_verdict(bad);
}

START_TEST(test_conv_prefill)
{
    static const int cases[][4] = {{5, 4, 1, 1},   {37, 4, 3, 0}, {64, 4, 33, 1}, {50, 3, 70, 1},
                                   {33, 2, 2, 0},  {40, 1, 5, 1}, {3, 4, 2, 1},   {96, 4, 64, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (unsigned seed = 1; seed <= 2; seed++) {
            double bad = conv_prefill_case(cases[c][0], cases[c][1], cases[c][2], cases[c][3], seed);
            ck_assert_msg(bad <= 1e-6, "conv prefill E=%d K=%d T=%d: %g", cases[c][0], cases[c][1],
                          cases[c][2], bad);
        }
}
END_TEST

/* Slots: a permutation of odd slots of a pool of 2B+3, some rows padding
 * (-1) when pad; unused slots and padding must be left alone. */
static void make_slots(int B, int pad, unsigned *s, int32_t *slots)
{
    for (int b = 0; b < B; b++)
        slots[b] = 2 * b + 1;
    for (int b = B - 1; b > 0; b--) {
        int j = (int)((frand(s) + 1.0f) * 0.5f * (b + 1)) % (b + 1);
        int32_t t = slots[b];
        slots[b] = slots[j], slots[j] = t;
    }
    if (pad)
        for (int b = 0; b < B; b += 3)
            slots[b] = -1;
}

/* The CPU reference for a batch with padding: the non-padding rows only. */
typedef struct packed {
    int32_t slots[128];
    int rows[128], n;
} packed;

static void pack(const int32_t *slots, int B, packed *pk)
{
    pk->n = 0;
    for (int b = 0; b < B; b++)
        if (slots[b] >= 0) {
            pk->slots[pk->n] = slots[b];
            pk->rows[pk->n++] = b;
        }
}

static float *gather_rows(const float *v, size_t width, size_t ld, const packed *pk)
{
    float *g = malloc(sizeof(float) * (pk->n ? pk->n : 1) * ld);
    for (int i = 0; i < pk->n; i++)
        memcpy(g + (size_t)i * ld, v + (size_t)pk->rows[i] * ld, sizeof(float) * width);
    return g;
}

/* Output rows of the kernel vs the packed reference; padding rows zero. */
static double rows_badness(const float *got, const float *ref, int B, int E, const packed *pk,
                           const int32_t *slots)
{
    double bad = 0.0;
    for (int i = 0; i < pk->n; i++)
        bad = fmax(bad, badness(got + (size_t)pk->rows[i] * E, ref + (size_t)i * E, (size_t)E));
    for (int b = 0; b < B; b++)
        if (slots[b] < 0)
            for (int e = 0; e < E; e++)
                if (got[(size_t)b * E + e] != 0.0f)
                    return INFINITY;
    return bad;
}

static double step_case(int scan, int E, int N, int K, int B, int pad, unsigned seed)
{
    const int R = 3;
    problem p;
    problem_init(&p, E, N, R, K, B, 1, seed);
    unsigned s = seed + 99;
    int32_t slots[128];
    make_slots(B, pad, &s, slots);
    const size_t conv_f = (size_t)(K - 1) * E, stride = conv_f + (size_t)N * E + 5;
    const int n_slots = 2 * B + 3;
    float *pool = rnd(stride * n_slots, &s, -1.0f, 1.0f), *pool_ref = dup(pool, stride * n_slots);
    float *xc = rnd((size_t)B * E, &s, -1.0f, 1.0f), *out = rnd((size_t)B * E, &s, 5, 6);
    packed pk;
    pack(slots, B, &pk);
    bk_state_ref st = {.pool = pool_ref, .slot_stride = stride, .conv_offset = 2,
                       .ssm_offset = 2 + conv_f, .slots = pk.slots, .batch = pk.n};
    float *xz_p = gather_rows(p.xz, 2 * (size_t)E, 2 * (size_t)E, &pk);
    float *xc_p = gather_rows(xc, E, E, &pk), *dt_p = gather_rows(p.dt, E, E, &pk);
    float *dbc_p = gather_rows(p.dbc, R + 2 * (size_t)N, R + 2 * (size_t)N, &pk);
    float *ref = malloc(sizeof(float) * (size_t)(pk.n ? pk.n : 1) * E);
    eng_threadpool *tp = eng_threadpool_create(1);
    kc_emu_seed(seed);
    bk_mamba1_io io = scan ? cpu_io(&p, xz_p, (float *)xc_p, dt_p, dbc_p, ref, pk.n)
                           : cpu_io(&p, xz_p, ref, NULL, NULL, NULL, pk.n);
    if (pk.n && !scan)
        cpu_conv_step(cpu_kernels_best(), tp, &p.l, &st, &io);
    if (pk.n && scan)
        cpu_scan_step(cpu_kernels_best(), tp, &p.l, &st, &io);
    if (!scan) {
        kc_conv_args a = {.w = p.conv_w, .b = p.conv_b, .E = E, .K = K, .x = p.xz, .ldx = 2 * E,
                          .out = out, .at = {pool, stride, 2, slots, B}};
        kc_conv_step(&a, NULL);
    } else {
        kc_scan_args a = scan_args(&p);
        a.x = xc, a.y = out, a.at = (kc_slots){pool, stride, 2 + conv_f, slots, B};
        kc_scan_step(&a, NULL);
    }
    double bad = fmax(rows_badness(out, ref, B, E, &pk, slots), badness(pool, pool_ref, stride * n_slots));
    eng_threadpool_destroy(tp);
    free(pool), free(pool_ref), free(xc), free(out), free(xz_p), free(xc_p), free(dt_p);
    free(dbc_p), free(ref);
    problem_free(&p);
    return harness_verdict(bad);
}

START_TEST(test_conv_step)
{
    static const int cases[][4] = {{37, 4, 1, 0}, {20, 4, 70, 1}, {64, 3, 5, 1}, {129, 2, 3, 0}, {8, 1, 4, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (unsigned seed = 1; seed <= 2; seed++) {
            double bad = step_case(0, cases[c][0], 4, cases[c][1], cases[c][2], cases[c][3], seed);
            ck_assert_msg(bad <= 1e-6, "conv step case %zu: %g", c, bad);
        }
}
END_TEST

/* ---- scan ------------------------------------------------------------- */

static double scan_prefill_case(int E, int N, int R, int T, int chunk, int rows, int use_scratch,
                                unsigned seed)
{
    problem p;
    problem_init(&p, E, N, R, 4, T, 1, seed);
    unsigned s = seed + 5;
    float *xc = rnd((size_t)T * E, &s, -1.0f, 1.0f);
    float *state = rnd((size_t)N * E, &s, -2.0f, 2.0f), *state_ref = dup(state, (size_t)N * E);
    float *y = rnd((size_t)T * E, &s, 5, 6), *y_ref = dup(y, (size_t)T * E);
    eng_threadpool *tp = eng_threadpool_create(1);
    bk_mamba1_io io = cpu_io(&p, p.xz, xc, p.dt, p.dbc, y_ref, T);
    cpu_scan_prefill(cpu_kernels_best(), tp, &p.l, state_ref, &io);
    kc_tuning tune;
    kc_tuning_default(&tune);
    tune.scan_chunk = chunk;
    tune.carry_rows = rows;
    size_t nscratch = kc_scan_prefill_scratch(E, N, T, &tune);
    float *scratch = use_scratch && nscratch ? rnd(nscratch, &s, 7, 8) : NULL;
    kc_scan_args a = scan_args(&p);
    a.x = xc, a.y = y, a.state = state, a.T = T;
    kc_emu_seed(seed);
    kc_scan_prefill(&a, scratch, &tune, NULL);
    double bad = fmax(badness(y, y_ref, (size_t)T * E), badness(state, state_ref, (size_t)N * E));
    eng_threadpool_destroy(tp);
    free(xc), free(state), free(state_ref), free(y), free(y_ref), free(scratch);
    problem_free(&p);
    return harness_verdict(bad);
}

static const int scan_cases[][7] = {
    /* E, N, R, T, chunk, carry rows, scratch */
    {5, 16, 2, 1, 4, 4, 1},    {37, 16, 3, 150, 4, 4, 1}, {64, 4, 2, 70, 16, 32, 1},
    {50, 5, 5, 33, 7, 2, 1},   {33, 1, 1, 20, 3, 3, 0},   {40, 16, 4, 64, 64, 16, 1},
    {130, 8, 2, 9, 2, 1, 1},   {24, 3, 2, 100, 5, 3, 1},
};

START_TEST(test_scan_prefill)
{
    const int *c = scan_cases[_i];
    for (unsigned seed = 1; seed <= 2; seed++) {
        double bad = scan_prefill_case(c[0], c[1], c[2], c[3], c[4], c[5], c[6], seed);
        ck_assert_msg(bad <= 2e-5, "scan prefill E=%d N=%d T=%d chunk=%d rows=%d: %g", c[0], c[1],
                      c[3], c[4], c[5], bad);
    }
}
END_TEST

START_TEST(test_scan_step)
{
    static const int cases[][4] = {{37, 16, 1, 0}, {20, 4, 70, 1}, {64, 5, 5, 1}, {129, 16, 3, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (unsigned seed = 1; seed <= 2; seed++) {
            double bad = step_case(1, cases[c][0], cases[c][1], 4, cases[c][2], cases[c][3], seed);
            ck_assert_msg(bad <= 1e-5, "scan step case %zu: %g", c, bad);
        }
}
END_TEST

/* ---- Mamba-2 SSD + gated norm ------------------------------------------- */

/* The batched GEMM kc_ssd_prefill_chunked gets from the backend (cuBLAS
 * there): y_b (m, n) = x_b (m, k) w_b^T in f32, on the host memory the
 * harness runs on. */
static void host_gemm(void *ctx, int batch, int m, int n, int k, const float *x, int ldx, long sx,
                      const float *w, int ldw, long sw, float *y, int ldy, long sy)
{
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                float acc = 0.0f;
                for (int e = 0; e < k; e++)
                    acc += x[b * sx + (long)i * ldx + e] * w[b * sw + (long)j * ldw + e];
                y[b * sy + (long)i * ldy + j] = acc;
            }
}

/* kc_ssd_prefill (mode 0; T rows from a random state), kc_ssd_step (mode
 * 1; T slots of a pool, one padding) or kc_ssd_prefill_chunked (mode > 1:
 * chunks of `mode` tokens, scratch starting as NaN) against the CPU
 * backend's cpu_ssd_* (the scan): outputs and states.  H heads of P
 * channels, N states, G groups; spike: token 0 decays by e^-960, the
 * others barely (test_cpu_ssd.c's case for the decays of the chunked
 * form). */
static double ssd_case(int mode, int H, int P, int N, int G, int T, int before_gate, int spike,
                       unsigned seed)
{
    const int step = mode == 1;
    unsigned s = seed * 131u + 7u;
    const int E = H * P, cd = E + 2 * G * N, ld = cd + E + H + 3;
    float *dt_bias = rnd(H, &s, -2, 1), *A = rnd(H, &s, -3, -0.2f), *D = rnd(H, &s, -1, 1);
    float *w = rnd(E, &s, 0.5f, 1.5f), *xbc = rnd((size_t)T * cd, &s, -1.5f, 1.5f);
    float *proj = rnd((size_t)T * ld, &s, -2, 2); /* z at 0, dt at E + cd */
    for (int h = 0; h < H && spike; h++) {
        A[h] = -16.0f, dt_bias[h] = 0.0f;
        for (int t = 0; t < T; t++)
            proj[(size_t)t * ld + E + cd + h] = t == 0 ? 60.0f : -5.0f;
    }
    const float dt_max = spike ? INFINITY : 1.5f;
    const size_t sf = (size_t)H * P * N, stride = sf + 5;
    const int n_slots = T + 2;
    float *state = rnd(stride * n_slots, &s, -1, 1), *state_ref = dup(state, stride * n_slots);
    float *y = rnd((size_t)T * E, &s, 5, 6), *y_ref = dup(y, (size_t)T * E);
    int32_t *slots = malloc(sizeof(int32_t) * (T ? T : 1));
    for (int t = 0; t < T; t++)
        slots[t] = t == 1 ? -1 : (int32_t)(n_slots - 1 - t);
    bk_mamba2_layer l = {.dt_bias = dt_bias, .A = A, .D = D, .norm_w = w, .d_inner = E, .d_state = N,
                         .d_conv = 2, .nheads = H, .head_dim = P, .ngroups = G,
                         .norm_before_gate = before_gate, .dt_min = 0.02f, .dt_max = dt_max,
                         .norm_eps = 1e-5f};
    bk_mamba2_io io = {.xbc = xbc, .dt = proj + E + cd, .lddt = ld, .z = proj, .ldz = ld,
                       .y = y_ref, .rows = T};
    bk_state_ref st = {.pool = state_ref, .slot_stride = stride, .ssm_offset = 2, .slots = slots,
                       .batch = T};
    eng_threadpool *tp = eng_threadpool_create(1);
    kc_ssd_args a = {.dt_bias = dt_bias, .A = A, .D = D, .norm_w = w, .E = E, .N = N, .H = H, .P = P,
                     .G = G, .dt_min = 0.02f, .dt_max = dt_max, .eps = 1e-5f,
                     .norm_before_gate = before_gate, .xbc = xbc, .dt = proj + E + cd, .lddt = ld,
                     .z = proj, .ldz = ld, .y = y};
    kc_emu_seed(seed);
    if (step) {
        /* the CPU op skips padding rows; the kernel zeroes them */
        int32_t live[64];
        int n_live = 0;
        for (int t = 0; t < T; t++)
            if (slots[t] >= 0)
                live[n_live++] = t;
        for (int k = 0; k < n_live; k++) { /* one row at a time: rows are not contiguous */
            int t = live[k];
            bk_mamba2_io one = io;
            one.xbc = xbc + (size_t)t * cd, one.dt = io.dt + (size_t)t * ld;
            one.z = proj + (size_t)t * ld, one.y = y_ref + (size_t)t * E, one.rows = 1;
            bk_state_ref st1 = st;
            st1.slots = &slots[t], st1.batch = 1;
            cpu_ssd_step(cpu_kernels_best(), tp, &l, &st1, &one);
        }
        for (int e = 0; e < E && T > 1; e++) /* row 1 is padding */
            y_ref[(size_t)E + e] = 0.0f;
        a.at = (kc_slots){state, stride, 2, slots, T};
        kc_ssd_step(&a, NULL);
    } else {
        cpu_ssd_prefill(cpu_kernels_best(), tp, &l, state_ref + 2, &io, CPU_SSD_SCAN);
        a.state = state + 2, a.T = T;
        if (mode > 1) {
            a.chunk = mode;
            const size_t n_scratch = kc_ssd_chunk_scratch(&a);
            float *scratch = malloc(sizeof(float) * n_scratch);
            for (size_t i = 0; i < n_scratch; i++)
                scratch[i] = NAN;
            kc_ssd_prefill_chunked(&a, scratch, host_gemm, NULL, NULL);
            free(scratch);
        } else {
            kc_ssd_prefill(&a, NULL);
        }
    }
    double bad = fmax(badness(y, y_ref, (size_t)T * E), badness(state, state_ref, stride * n_slots));
    eng_threadpool_destroy(tp);
    float *bufs[] = {dt_bias, A, D, w, xbc, proj, state, state_ref, y, y_ref};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(slots);
    return harness_verdict(bad);
}

START_TEST(test_ssd)
{
    /* mode (0 walk, 1 step, > 1 chunked by that many tokens), H, P, N, G,
     * T, norm_before_gate, spike; the chunked cases end on a partial chunk,
     * one has a single chunk, one the default length */
    static const int cases[][8] = {
        {0, 4, 8, 16, 1, 11, 0, 0}, {0, 6, 5, 7, 3, 9, 1, 0}, {0, 2, 40, 3, 2, 4, 0, 0},
        {1, 4, 6, 10, 2, 5, 0, 0},  {1, 3, 33, 4, 1, 3, 1, 0}, {4, 4, 8, 16, 1, 11, 0, 0},
        {3, 6, 5, 7, 3, 9, 1, 0},   {5, 2, 40, 3, 2, 4, 0, 0}, {64, 2, 6, 5, 1, 70, 1, 0},
        {0, 2, 4, 8, 1, 20, 0, 1},  {16, 2, 4, 8, 1, 20, 0, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (unsigned seed = 1; seed <= 2; seed++) {
            const int *k = cases[c];
            double bad = ssd_case(k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], seed);
            ck_assert_msg(bad <= 2e-5, "ssd case %zu seed %u: %g", c, seed, bad);
        }
}
END_TEST

/* ---- row kernels -------------------------------------------------------- */

static double norm_case(int n, int dim, int with_add, unsigned seed)
{
    unsigned s = seed * 31u;
    float *resid = rnd((size_t)n * dim, &s, -2, 2), *add = with_add ? rnd((size_t)n * dim, &s, -1, 1) : NULL;
    float *w = rnd((size_t)dim, &s, 0.5f, 1.5f), *out = rnd((size_t)n * dim, &s, 5, 6);
    float *r_ref = malloc(sizeof(float) * n * dim), *o_ref = malloc(sizeof(float) * n * dim);
    const float eps = 1e-5f;
    for (int r = 0; r < n; r++) {
        double ss = 0;
        for (int i = 0; i < dim; i++) {
            size_t k = (size_t)r * dim + i;
            r_ref[k] = resid[k] + (add ? add[k] : 0.0f);
            ss += (double)r_ref[k] * r_ref[k];
        }
        double scale = 1.0 / sqrt(ss / dim + eps);
        for (int i = 0; i < dim; i++)
            o_ref[(size_t)r * dim + i] = (float)(w[i] * (r_ref[(size_t)r * dim + i] * scale));
    }
    kc_emu_seed(seed);
    kc_add_rmsnorm(resid, add, w, eps, n, dim, out, NULL);
    double bad = fmax(badness(resid, r_ref, (size_t)n * dim), badness(out, o_ref, (size_t)n * dim));
    free(resid), free(add), free(w), free(out), free(r_ref), free(o_ref);
    return harness_verdict(bad);
}

/* kc_rms_rows against double precision, on rows of dim values ld apart
 * (the values between rows must stay as they were). */
static double rms_rows_case(int n, int dim, int ld, unsigned seed)
{
    unsigned s = seed * 53u + 7u;
    float *x = rnd((size_t)n * ld, &s, -2, 3), *ref = dup(x, (size_t)n * ld);
    const float eps = 1e-6f;
    for (int r = 0; r < n; r++) {
        double ss = 0;
        for (int i = 0; i < dim; i++)
            ss += (double)ref[(size_t)r * ld + i] * ref[(size_t)r * ld + i];
        double scale = 1.0 / sqrt(ss / dim + eps);
        for (int i = 0; i < dim; i++)
            ref[(size_t)r * ld + i] = (float)(ref[(size_t)r * ld + i] * scale);
    }
    kc_emu_seed(seed);
    kc_rms_rows(x, ld, n, dim, eps, NULL);
    double bad = badness(x, ref, (size_t)n * ld);
    free(x), free(ref);
    return harness_verdict(bad);
}

START_TEST(test_rms_rows)
{
    static const int cases[][3] = {{1, 1, 1}, {3, 16, 40}, {5, 48, 80}, {2, 300, 301}, {4, 1000, 1000}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (unsigned seed = 1; seed <= 2; seed++) {
            double bad = rms_rows_case(cases[c][0], cases[c][1], cases[c][2], seed);
            ck_assert_msg(bad <= 2e-6, "rms_rows case %zu seed %u: %g", c, seed, bad);
        }
}
END_TEST

/* kc_add_layernorm against a double-precision LayerNorm (biased variance). */
static double layernorm_case(int n, int dim, int with_add, unsigned seed)
{
    unsigned s = seed * 37u + 1u;
    float *resid = rnd((size_t)n * dim, &s, -2, 3), *add = with_add ? rnd((size_t)n * dim, &s, -1, 1) : NULL;
    float *w = rnd((size_t)dim, &s, 0.5f, 1.5f), *b = rnd((size_t)dim, &s, -0.5f, 0.5f);
    float *out = rnd((size_t)n * dim, &s, 5, 6), *r_ref = malloc(sizeof(float) * n * dim);
    float *o_ref = malloc(sizeof(float) * n * dim);
    const float eps = 1e-5f;
    for (int r = 0; r < n; r++) {
        double mean = 0, var = 0;
        for (int i = 0; i < dim; i++) {
            size_t k = (size_t)r * dim + i;
            r_ref[k] = resid[k] + (add ? add[k] : 0.0f);
            mean += r_ref[k];
        }
        mean /= dim;
        for (int i = 0; i < dim; i++)
            var += (r_ref[(size_t)r * dim + i] - mean) * (r_ref[(size_t)r * dim + i] - mean);
        double scale = 1.0 / sqrt(var / dim + eps);
        for (int i = 0; i < dim; i++)
            o_ref[(size_t)r * dim + i] = (float)((r_ref[(size_t)r * dim + i] - mean) * scale * w[i] + b[i]);
    }
    kc_emu_seed(seed);
    kc_add_layernorm(resid, add, w, b, eps, n, dim, out, NULL);
    double bad = fmax(badness(resid, r_ref, (size_t)n * dim), badness(out, o_ref, (size_t)n * dim));
    free(resid), free(add), free(w), free(b), free(out), free(r_ref), free(o_ref);
    return harness_verdict(bad);
}

START_TEST(test_add_layernorm)
{
    static const int cases[][3] = {{1, 1, 1}, {3, 24, 1}, {9, 33, 0}, {2, 300, 1}, {4, 1000, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (unsigned seed = 1; seed <= 2; seed++) {
            double bad = layernorm_case(cases[c][0], cases[c][1], cases[c][2], seed);
            ck_assert_msg(bad <= 4e-6, "layernorm case %zu seed %u: %g", c, seed, bad);
        }
}
END_TEST

START_TEST(test_add_rmsnorm)
{
    static const int cases[][3] = {{1, 1, 1}, {3, 24, 1}, {9, 33, 0}, {2, 300, 1}, {4, 1000, 1}, {1, 64, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (unsigned seed = 1; seed <= 2; seed++) {
            double bad = norm_case(cases[c][0], cases[c][1], cases[c][2], seed);
            ck_assert_msg(bad <= 2e-6, "rmsnorm n=%d dim=%d: %g", cases[c][0], cases[c][1], bad);
        }
}
END_TEST

/* A (rows, cols) weight in dtype dt, and its exact f32 values. */
static void *make_weight(int dt, size_t n, unsigned *s, float **exact)
{
    *exact = malloc(sizeof(float) * n);
    if (dt == KC_DT_F32) {
        float *w = rnd(n, s, -1, 1);
        memcpy(*exact, w, sizeof(float) * n);
        return w;
    }
    uint16_t *h = malloc(2 * n);
    for (size_t i = 0; i < n; i++) {
        float v = frand(s);
        if (dt == KC_DT_BF16) {
            h[i] = eng_f32_to_bf16(v);
            (*exact)[i] = eng_bf16_to_f32(h[i]);
        } else {
            /* halves spanning normals, subnormals, zero and a negative zero */
            static const uint16_t special[] = {0x0000, 0x8000, 0x0001, 0x83ff, 0x3c00, 0xfbff, 0x0400};
            h[i] = i < sizeof special / 2 ? special[i] : (uint16_t)((unsigned)(v * 16000.0f) & 0xbfffu);
            (*exact)[i] = eng_f16_to_f32(h[i]);
        }
    }
    return h;
}

START_TEST(test_embed_widen_bias)
{
    for (int dt = 0; dt < 3; dt++) {
        unsigned s = 17u + (unsigned)dt;
        const int rows = 11, cols = 37, n = 6;
        float *exact;
        void *w = make_weight(dt, (size_t)rows * cols, &s, &exact);
        int32_t ids[6] = {10, 0, 3, 3, 7, 1};
        float *out = rnd((size_t)n * cols, &s, 5, 6), *ref = malloc(sizeof(float) * n * cols);
        for (int r = 0; r < n; r++)
            memcpy(ref + (size_t)r * cols, exact + (size_t)ids[r] * cols, sizeof(float) * cols);
        kc_embed(w, dt, cols, ids, n, out, NULL);
        ck_assert_msg(badness(out, ref, (size_t)n * cols) == 0.0, "embed dtype %d", dt);
        float *wide = rnd((size_t)rows * cols, &s, 5, 6);
        kc_widen(w, dt, (size_t)rows * cols, wide, NULL);
        ck_assert_msg(memcmp(wide, exact, sizeof(float) * rows * cols) == 0, "widen dtype %d", dt);
        free(w), free(exact), free(out), free(ref), free(wide);
    }
    unsigned s = 5;
    const int m = 3, ncol = 130, ld = 140;
    float *y = rnd((size_t)m * ld, &s, -1, 1), *bias = rnd(ncol, &s, -1, 1), *ref = dup(y, (size_t)m * ld);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ncol; j++)
            ref[(size_t)i * ld + j] += bias[j];
    kc_add_bias(y, ld, m, ncol, bias, NULL);
    ck_assert(badness(y, ref, (size_t)m * ld) == 0.0);
    free(y), free(bias), free(ref);
    ck_assert_ptr_null(kc_emu_error());
}
END_TEST

START_TEST(test_argmax)
{
    enum { V = 1000, N = 6 };
    float *l = malloc(sizeof(float) * N * V);
    unsigned s = 3;
    for (int i = 0; i < N * V; i++)
        l[i] = frand(&s);
    l[0 * V + 999] = 5.0f;                          /* last */
    l[1 * V + 17] = 4.0f, l[1 * V + 600] = 4.0f;    /* tie: lowest index */
    l[2 * V + 0] = NAN, l[2 * V + 5] = 3.0f;        /* NaN never wins */
    for (int i = 0; i < V; i++)
        l[3 * V + i] = -INFINITY;                   /* all -inf: index 0 */
    l[4 * V + 0] = 9.0f;                            /* first */
    int32_t out[N];
    const int32_t want[N - 1] = {999, 17, 5, 0, 0};
    kc_emu_seed(8);
    kc_argmax(l, N - 1, V, V, out, NULL);
    for (int r = 0; r < N - 1; r++)
        ck_assert_int_eq(out[r], want[r]);
    kc_argmax(l + 5 * V, 1, 1, V, out, NULL); /* V = 1 */
    ck_assert_int_eq(out[0], 0);
    ck_assert_ptr_null(kc_emu_error());
    free(l);
}
END_TEST

START_TEST(test_gemv)
{
    int n_wide = 0;
    static const int Ks[] = {7, 16, 33, 96, 130, 264};
    static const int Ns[] = {1, 5, 37};
    for (int dt = 0; dt < 3; dt++)
        for (size_t ki = 0; ki < 6; ki++)
            for (size_t ni = 0; ni < 3; ni++)
                for (int m = 1; m <= KC_GEMV_MAX; m += (m < 3 ? 1 : m < 13 ? 5 : 3)) {
                    const int K = Ks[ki], N = Ns[ni], ldx = K + 3, ldy = N + 2;
                    unsigned s = (unsigned)(dt * 1000 + ki * 100 + ni * 10 + m);
                    float *exact;
                    void *w = make_weight(dt, (size_t)N * K, &s, &exact);
                    float *x = rnd((size_t)m * ldx, &s, -1, 1), *bias = m & 1 ? rnd(N, &s, -1, 1) : NULL;
                    float *y = rnd((size_t)m * ldy, &s, 5, 6), *ref = dup(y, (size_t)m * ldy);
                    ref_matmul(exact, N, K, x, ldx, m, bias, ref, ldy);
                    float *y0 = dup(y, (size_t)m * ldy);
                    kc_emu_seed(s);
                    kc_gemv(w, dt, N, K, x, ldx, m, y, ldy, bias, NULL);
                    double bad = harness_verdict(badness(y, ref, (size_t)m * ldy));
                    ck_assert_msg(bad <= 2e-6, "gemv dt=%d K=%d N=%d m=%d: %g", dt, K, N, m, bad);
                    /* the wide kernel: rows of 16 bytes' multiple only (w is malloc'ed: aligned);
                     * x unaligned (ldx = K + 3) and, for even m, aligned */
                    const float *xw = x;
                    float *xa = NULL;
                    int ldxa = ldx;
                    if (m % 2 == 0) {
                        ldxa = (K + 3) / 4 * 4;
                        xa = aligned_alloc(16, ((size_t)m * ldxa * sizeof(float) + 15) / 16 * 16);
                        for (int i = 0; i < m; i++)
                            memcpy(xa + (size_t)i * ldxa, x + (size_t)i * ldx, (size_t)K * sizeof(float));
                        xw = xa;
                    }
                    const int esize = dt == 0 ? 4 : 2;
                    const int fits = (size_t)K * esize % 16 == 0 && (uintptr_t)w % 16 == 0;
                    n_wide += fits;
                    ck_assert_int_eq(kc_gemv_wide(w, dt, N, K, xw, ldxa, m, y0, ldy, bias, NULL), fits);
                    if (fits) {
                        bad = harness_verdict(badness(y0, ref, (size_t)m * ldy));
                        ck_assert_msg(bad <= 2e-6, "gemv wide dt=%d K=%d N=%d m=%d: %g", dt, K, N, m, bad);
                    }
                    free(w), free(exact), free(x), free(bias), free(y), free(ref), free(y0), free(xa);
                }
    ck_assert_int_gt(n_wide, 100); /* the wide kernel ran on most dtypes, widths and m */
}
END_TEST

/* ---- mutation test: every barrier matters ----------------------------------- */

typedef double (*case_fn)(unsigned seed);
static double mut_conv(unsigned seed) { return conv_prefill_case(40, 4, 45, 1, seed); }
static double mut_scan(unsigned seed) { return scan_prefill_case(37, 16, 3, 60, 4, 4, 1, seed); }
static double mut_scan_generic(unsigned seed) { return scan_prefill_case(20, 3, 2, 30, 4, 8, 1, seed); }
static double mut_scan_step(unsigned seed) { return step_case(1, 40, 16, 4, 3, 0, seed); }
static double mut_norm(unsigned seed) { return norm_case(3, 300, 1, seed); }
static double mut_ssd(unsigned seed) { return ssd_case(0, 4, 6, 5, 2, 7, 0, 0, seed); }
static double mut_ssd_chunked(unsigned seed) { return ssd_case(3, 4, 6, 5, 2, 7, 0, 0, seed); }
static double mut_layernorm(unsigned seed) { return layernorm_case(3, 300, 1, seed); }
static double mut_rms_rows(unsigned seed) { return rms_rows_case(3, 300, 310, seed); }

static double mut_argmax(unsigned seed)
{
    enum { V = 700 };
    float l[V];
    unsigned s = seed;
    for (int i = 0; i < V; i++)
        l[i] = frand(&s);
    l[seed * 37 % V] = 2.0f;
    int32_t out = -1;
    kc_emu_seed(seed);
    kc_argmax(l, 1, V, V, &out, NULL);
    return harness_verdict(out == (int32_t)(seed * 37 % V) ? 0.0 : INFINITY);
}

START_TEST(test_every_barrier_matters)
{
    static const struct { const char *name; case_fn fn; double tol; } kernels[] = {
        {"conv prefill", mut_conv, 1e-6},      {"scan prefill N=16", mut_scan, 2e-5},
        {"scan prefill N=3", mut_scan_generic, 2e-5}, {"scan step", mut_scan_step, 1e-5},
        {"add_rmsnorm", mut_norm, 2e-6},       {"argmax", mut_argmax, 0.0},
        {"ssd prefill + gated norm", mut_ssd, 2e-5}, {"add_layernorm", mut_layernorm, 4e-6},
        {"rms_rows", mut_rms_rows, 2e-6},      {"ssd chunked prefill", mut_ssd_chunked, 2e-5},
    };
    int total_sites = 0;
    for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
        kc_emu_clear_error();
        kc_emu_sites_reset();
        ck_assert_msg(kernels[k].fn(1) <= kernels[k].tol, "%s fails intact", kernels[k].name);
        int n = kc_emu_site_count();
        ck_assert_msg(n > 0, "%s: no barrier reached", kernels[k].name);
        char names[16][96];
        for (int i = 0; i < n && i < 16; i++)
            strcpy(names[i], kc_emu_site(i));
        for (int i = 0; i < n && i < 16; i++) {
            kc_emu_disable_site(i);
            int caught = 0;
            for (unsigned seed = 1; seed <= 6 && !caught; seed++)
                caught = !(kernels[k].fn(seed) <= kernels[k].tol);
            kc_emu_disable_site(-1);
            ck_assert_msg(caught, "%s: removing the barrier at %s goes unnoticed", kernels[k].name,
                          names[i]);
        }
        total_sites += n;
    }
    ck_assert_int_ge(total_sites, 9);
    kc_emu_sites_reset();
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("emulated");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_conv_prefill);
    tcase_add_test(tc, test_conv_step);
    tcase_add_loop_test(tc, test_scan_prefill, 0, (int)(sizeof scan_cases / sizeof scan_cases[0]));
    tcase_add_test(tc, test_scan_step);
    tcase_add_test(tc, test_add_rmsnorm);
    tcase_add_test(tc, test_add_layernorm);
    tcase_add_test(tc, test_rms_rows);
    tcase_add_test(tc, test_embed_widen_bias);
    tcase_add_test(tc, test_argmax);
    tcase_add_test(tc, test_gemv);
    tcase_add_test(tc, test_ssd);
    tcase_add_test(tc, test_every_barrier_matters);
    suite_add_tcase(s, tc);
    return s;
}
