/* test_emu_s4s5.c - the S4D / S4 and S5 recurrences of the CUDA backend
 * (kernels/cuda/s4.cu, dplr_scan.cu, s5.cu, diag_carry.cu) run by the
 * emulation harness:
 *  - kernels: the chunked prefill scans, diagonal and DPLR (many chunks, an
 *    uneven last one, a chunk of one step, chunks lengthened for a wide
 *    layer, rank 1 and 2, more pairs than a warp or a carry block has
 *    threads) = the walk in token order = T decode steps = the CPU
 *    backend's recurrence, outputs and final states; the DPLR scan's carry
 *    barrier removed, a transition one token too long or short, or no
 *    carry at all is caught; S5's skip + GELU (both forms, strided
 *    outputs) = the CPU's; a padding slot's row is zeroed;
 *  - models: every S5 fixture on "emu" (and one on the real backend over
 *    the CUDA mock) reproduces its expected.json; prompts of hundreds of
 *    tokens (dozens of scan chunks) fed to S4D, S4 (DPLR, the scan taken)
 *    and S5 models at once, in uneven pieces and token by token give the
 *    CPU backend's logits and states; batched decode = solo decode. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/model.h"
#include "engine/state_pool.h"
#include "kernels/cuda/backend_core.h"
#include "kernels/emu/cuda_mock.h"
#include "kernels/emu/emu.h"
#include "tests/models/reference.h"

/* ---- kernels ----------------------------------------------------------- */

static float *rand_vec(size_t n, unsigned *s)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        v[i] = ref_frand(s);
    return v;
}

/* A stable complex diagonal (2, n): radii in [0.6, 0.995], any angle. */
static float *rand_decay(size_t n, unsigned *s)
{
    float *a = malloc(sizeof(float) * 2 * n);
    for (size_t i = 0; i < n; i++) {
        double r = 0.6 + 0.395 * (ref_frand(s) + 1.0) / 2, th = 3.14159265 * ref_frand(s);
        a[i] = (float)(r * cos(th)), a[n + i] = (float)(r * sin(th));
    }
    return a;
}

static bk_backend *cpu_backend(void)
{
    bk_backend *bk;
    ssmd_err err;
    bk_options o;
    bk_options_defaults(&o);
    o.threads = 1; /* the recurrence in token order: the reference */
    ck_assert_int_eq(bk_backend_create("cpu", &o, &bk, &err), SSMD_OK);
    return bk;
}

static kc_tuning tuning(int chunk)
{
    kc_tuning t;
    kc_tuning_default(&t);
    t.scan_chunk = chunk;
    return t;
}

/* n floats of NaN, as the backend's scratch starts (every value a scan
 * uses must be written first), or NULL for n = 0. */
static float *garbage(size_t n)
{
    float *p = n ? malloc(sizeof(float) * n) : NULL;
    if (p)
        memset(p, 0xff, sizeof(float) * n);
    return p;
}

/* After a prefill launched since kc_emu_stats_reset: frees its scratch,
 * checks the harness saw no failure; 1 when it took the chunked scan
 * (more than one launch). */
static int launched_several(float *scratch)
{
    kc_emu_stats st;
    kc_emu_stats_get(&st);
    free(scratch);
    ck_assert_msg(!kc_emu_error(), "%s", kc_emu_error());
    return st.launches > 1;
}

/* One S4 layer (rank R), random: coefficients owned by the caller. */
typedef struct s4_case {
    bk_s4_layer l;
    float *bufs[7];
} s4_case;

static void s4_case_init(s4_case *c, int H, int N2, int R, unsigned *s)
{
    const size_t pl = (size_t)N2 * H;
    memset(c, 0, sizeof *c);
    c->bufs[0] = rand_decay(pl, s);
    c->bufs[1] = rand_vec(2 * pl, s);
    c->bufs[2] = rand_vec(2 * pl, s);
    c->bufs[3] = rand_vec((size_t)H, s);
    if (R) { /* small P and R keep the Woodbury step stable enough for T steps */
        c->bufs[4] = rand_decay(pl, s);
        c->bufs[5] = rand_vec((size_t)R * 2 * pl, s);
        c->bufs[6] = rand_vec((size_t)R * 2 * pl, s);
        for (size_t i = 0; i < (size_t)R * 2 * pl; i++)
            c->bufs[5][i] *= 0.1f, c->bufs[6][i] *= 0.1f;
    }
    c->l = (bk_s4_layer){.H = H, .N2 = N2, .rank = R, .dA = c->bufs[0], .dB = c->bufs[1],
                         .dC = c->bufs[2], .D = c->bufs[3], .Dinv = c->bufs[4], .P = c->bufs[5],
                         .R = c->bufs[6]};
}

static void s4_case_free(s4_case *c)
{
    for (int i = 0; i < 7; i++)
        free(c->bufs[i]);
}

static kc_s4_args s4_args_of(const bk_s4_layer *l, const float *u, float *y, float *state, int T)
{
    kc_s4_args a;
    memset(&a, 0, sizeof a);
    a.H = l->H, a.N2 = l->N2, a.R = l->rank;
    a.dA = l->dA, a.dB = l->dB, a.dC = l->dC, a.D = l->D, a.Dinv = l->Dinv, a.P = l->P, a.Rw = l->R;
    a.u = u, a.y = y, a.state = state, a.T = T;
    return a;
}

/* The emulated prefill from state0 with chunk length `chunk` (0: no
 * scratch, the walk): y (T, H) and the final state; returns whether it
 * took the scan (launched more than one kernel). */
static int s4_gpu_prefill(const bk_s4_layer *l, const float *state0, const float *u, int T, int chunk,
                          float *y, float *state)
{
    const size_t S = 2 * (size_t)l->N2 * l->H;
    memcpy(state, state0, sizeof(float) * S);
    kc_tuning t = tuning(chunk > 0 ? chunk : 1);
    kc_s4_args a = s4_args_of(l, u, y, state, T);
    float *scratch = garbage(chunk > 0 ? kc_s4_prefill_scratch(&a, &t) : 0);
    kc_emu_stats_reset();
    kc_s4_prefill(&a, scratch, &t, NULL);
    return launched_several(scratch);
}

/* H channels, N2 pairs, rank R, T tokens, chunk length; expect_scan: the
 * chunked path must (1) or must not (0) run. */
static void s4_kernel_case(int H, int N2, int R, int T, int chunk, int expect_scan, unsigned seed)
{
    unsigned s = seed;
    s4_case c;
    s4_case_init(&c, H, N2, R, &s);
    const size_t S = 2 * (size_t)N2 * H, Y = (size_t)T * H;
    float *state0 = rand_vec(S, &s), *u = rand_vec(Y, &s);
    float *y_scan = malloc(sizeof(float) * Y), *st_scan = malloc(sizeof(float) * S);
    float *y_walk = malloc(sizeof(float) * Y), *st_walk = malloc(sizeof(float) * S);
    float *y_cpu = malloc(sizeof(float) * Y), *st_cpu = malloc(sizeof(float) * S);
    float *y_step = malloc(sizeof(float) * Y), *pool = malloc(sizeof(float) * 3 * S);
    ck_assert_int_eq(s4_gpu_prefill(&c.l, state0, u, T, chunk, y_scan, st_scan), expect_scan);
    ck_assert_int_eq(s4_gpu_prefill(&c.l, state0, u, T, 0, y_walk, st_walk), 0);
    /* token by token through the decode kernel, the state in slot 1 of 3,
     * beside a padding row */
    memcpy(pool + S, state0, sizeof(float) * S);
    const int32_t slots[2] = {-1, 1};
    float yy[2 * 4096];
    for (int t = 0; t < T; t++) {
        float uu[2 * 4096];
        memcpy(uu, u + (size_t)t * H, sizeof(float) * H);
        memcpy(uu + H, u + (size_t)t * H, sizeof(float) * H);
        yy[0] = 1.0f;
        kc_s4_args a = s4_args_of(&c.l, uu, yy, NULL, 0);
        a.at = (kc_slots){pool, S, 0, slots, 2};
        kc_s4_step(&a, NULL);
        ck_assert_float_eq(yy[0], 0.0f); /* the padding row */
        memcpy(y_step + (size_t)t * H, yy + H, sizeof(float) * H);
    }
    bk_backend *cpu = cpu_backend();
    memcpy(st_cpu, state0, sizeof(float) * S);
    cpu->s4->prefill(cpu, &c.l, st_cpu, u, T, y_cpu);
    cpu->destroy(cpu);
    char what[96];
    snprintf(what, sizeof what, "s4 H=%d N2=%d R=%d T=%d chunk=%d", H, N2, R, T, chunk);
    assert_rows_close(y_walk, y_cpu, T, H, 2e-6, what);
    assert_rows_close(st_walk, st_cpu, 1, (int)S, 2e-6, what);
    assert_rows_close(y_step, y_cpu, T, H, 2e-6, what);
    assert_rows_close(pool + S, st_cpu, 1, (int)S, 2e-6, what);
    assert_rows_close(y_scan, y_cpu, T, H, 2e-5, what);
    assert_rows_close(st_scan, st_cpu, 1, (int)S, 2e-5, what);
    free(state0), free(u), free(y_scan), free(st_scan), free(y_walk), free(st_walk);
    free(y_cpu), free(st_cpu), free(y_step), free(pool);
    s4_case_free(&c);
}

static const struct { int H, N2, R, T, chunk, scan; } s4_cases[] = {
    {20, 4, 0, 203, 4, 1},   /* 51 chunks, the last of 3 */
    {130, 3, 0, 33, 8, 1},   /* two channel blocks, a last chunk of 1 step */
    {24, 3, 0, 100, 19, 1},  /* chunks of several register tiles (8 tokens) */
    {7, 2, 0, 9, 9, 0},      /* one chunk: the walk */
    {1100, 2, 0, 150, 1, 1}, /* 59 chunks at most for 1100 channels: lengthened to 3 */
    {12, 4, 1, 40, 4, 1},    /* DPLR: 10 chunks */
    {9, 3, 2, 25, 4, 1},     /* rank 2, a last chunk of 1 step */
    {9, 3, 2, 12, 4, 0},     /* DPLR over three chunks: the walk */
    {9, 3, 2, 13, 4, 1},     /* one token more: the scan */
    {130, 3, 1, 47, 8, 1},   /* two channel blocks, an uneven last chunk */
    {5, 20, 1, 50, 6, 1},    /* 40 rows of the transition: two warps carry */
    {3, 130, 2, 21, 4, 1},   /* 260 rows: more than a carry block's threads */
    {1100, 2, 1, 300, 1, 1}, /* lengthened to 6 tokens: 50 chunks */
};

START_TEST(test_s4_prefill_scan)
{
    s4_kernel_case(s4_cases[_i].H, s4_cases[_i].N2, s4_cases[_i].R, s4_cases[_i].T, s4_cases[_i].chunk,
                   s4_cases[_i].scan, 100u + (unsigned)_i);
}
END_TEST

static int s5_gpu_scan(const float *lam, int P, const float *state0, const float *v, int T, int chunk,
                       float *xs, float *state)
{
    memcpy(state, state0, sizeof(float) * 2 * P);
    memcpy(xs, v, sizeof(float) * (size_t)T * 2 * P); /* in place, as the model runs it */
    kc_tuning t = tuning(chunk > 0 ? chunk : 1);
    kc_s5_args a = {lam, P, xs, xs, state, T, {0}};
    float *scratch = garbage(chunk > 0 ? kc_s5_scan_scratch(&a, &t) : 0);
    kc_emu_stats_reset();
    kc_s5_scan(&a, scratch, &t, NULL);
    return launched_several(scratch);
}

static const struct { int P, T, chunk, scan; } s5_cases[] = {
    {6, 157, 4, 1}, {140, 30, 7, 1}, {5, 4, 4, 0}, {3000, 90, 1, 1},
};

/* S5 kernel case i: the chunked scan = the walk = T decode steps (beside
 * a padding row) = the CPU backend's scan, states and outputs. */
static void s5_kernel_case(int i)
{
    const int P = s5_cases[i].P, T = s5_cases[i].T, chunk = s5_cases[i].chunk;
    unsigned s = 300u + (unsigned)i;
    const size_t row = 2 * (size_t)P, X = (size_t)T * row;
    float *lam = rand_decay((size_t)P, &s), *state0 = rand_vec(row, &s), *v = rand_vec(X, &s);
    float *xs_scan = malloc(sizeof(float) * X), *st_scan = malloc(sizeof(float) * row);
    float *xs_walk = malloc(sizeof(float) * X), *st_walk = malloc(sizeof(float) * row);
    float *xs_cpu = malloc(sizeof(float) * X), *st_cpu = malloc(sizeof(float) * row);
    float *xs_step = malloc(sizeof(float) * X), *pool = malloc(sizeof(float) * 2 * row);
    ck_assert_int_eq(s5_gpu_scan(lam, P, state0, v, T, chunk, xs_scan, st_scan), s5_cases[i].scan);
    ck_assert_int_eq(s5_gpu_scan(lam, P, state0, v, T, 0, xs_walk, st_walk), 0);
    memcpy(pool + row, state0, sizeof(float) * row);
    const int32_t slots[2] = {1, -1};
    float *vv = malloc(sizeof(float) * 2 * row), *xx = malloc(sizeof(float) * 2 * row);
    for (int t = 0; t < T; t++) {
        memcpy(vv, v + (size_t)t * row, sizeof(float) * row);
        memcpy(vv + row, vv, sizeof(float) * row);
        xx[row] = 1.0f;
        kc_s5_args a = {lam, P, vv, xx, NULL, 0, {pool, row, 0, slots, 2}};
        kc_s5_step(&a, NULL);
        ck_assert_float_eq(xx[row], 0.0f); /* the padding row */
        memcpy(xs_step + (size_t)t * row, xx, sizeof(float) * row);
    }
    bk_backend *cpu = cpu_backend();
    memcpy(st_cpu, state0, sizeof(float) * row);
    cpu->s5->scan(cpu, lam, P, st_cpu, v, T, xs_cpu);
    cpu->destroy(cpu);
    assert_rows_close(xs_walk, xs_cpu, T, (int)row, 1e-6, "s5 walk");
    assert_rows_close(st_walk, st_cpu, 1, (int)row, 1e-6, "s5 walk state");
    assert_rows_close(xs_step, xs_cpu, T, (int)row, 1e-6, "s5 steps");
    assert_rows_close(pool + row, st_cpu, 1, (int)row, 1e-6, "s5 steps state");
    assert_rows_close(xs_scan, xs_cpu, T, (int)row, 2e-5, "s5 scan");
    assert_rows_close(st_scan, st_cpu, 1, (int)row, 2e-5, "s5 scan state");
    free(lam), free(state0), free(v), free(xs_scan), free(st_scan), free(xs_walk), free(st_walk);
    free(xs_cpu), free(st_cpu), free(xs_step), free(pool), free(vv), free(xx);
}

START_TEST(test_s5_scan)
{
    s5_kernel_case(_i);
}
END_TEST

/* 1 when a barrier in file was reached since kc_emu_sites_reset. */
static int site_reached(const char *file)
{
    for (int i = 0; i < kc_emu_site_count(); i++)
        if (strstr(kc_emu_site(i), file))
            return 1;
    return 0;
}

/* The largest difference of got from want (rows of V), relative to the
 * largest magnitude of want; infinite for a NaN. */
static double rows_error(const float *got, const float *want, int rows, int V)
{
    double scale = 1e-6, err = 0.0;
    for (size_t i = 0; i < (size_t)rows * V; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < (size_t)rows * V; i++) {
        const double d = fabs((double)got[i] - want[i]);
        err = d <= err ? err : d != d ? INFINITY : d;
    }
    return err / scale;
}

/* The DPLR scan taken apart: rank 2, MUT_T tokens in chunks of MUT_L from
 * a random state, the harness seeded, the transition over m_steps tokens
 * (MUT_L: intact) and the carry pass run or skipped; returns the error of
 * outputs and final state against the CPU backend (rows_error). */
enum { MUT_H = 20, MUT_N2 = 4, MUT_T = 50, MUT_L = 4 };

static double dplr_mutant_error(unsigned seed, int m_steps, int carry)
{
    unsigned s = 41;
    s4_case c;
    s4_case_init(&c, MUT_H, MUT_N2, 2, &s);
    const size_t S = 2 * MUT_N2 * MUT_H, Y = MUT_T * MUT_H;
    float *state0 = rand_vec(S, &s), *u = rand_vec(Y, &s);
    float *y = malloc(sizeof(float) * Y), *st = malloc(sizeof(float) * S);
    float *y_cpu = malloc(sizeof(float) * Y), *st_cpu = malloc(sizeof(float) * S);
    memcpy(st, state0, sizeof(float) * S);
    kc_s4_args a = s4_args_of(&c.l, u, y, st, MUT_T);
    float *scratch = garbage(kc_s4_dplr_scratch(&a, MUT_L));
    float *M = scratch + (size_t)((MUT_T + MUT_L - 1) / MUT_L - 1) * S;
    kc_emu_seed(seed);
    kc_s4_dplr_local(&a, MUT_L, scratch, NULL);
    kc_s4_dplr_transition(&a, m_steps, M, NULL);
    if (carry)
        kc_s4_dplr_carry(&a, MUT_L, M, scratch, NULL);
    kc_s4_dplr_fix(&a, MUT_L, scratch, NULL);
    ck_assert_msg(!kc_emu_error(), "%s", kc_emu_error());
    bk_backend *cpu = cpu_backend();
    memcpy(st_cpu, state0, sizeof(float) * S);
    cpu->s4->prefill(cpu, &c.l, st_cpu, u, MUT_T, y_cpu);
    cpu->destroy(cpu);
    const double err = fmax(rows_error(y, y_cpu, MUT_T, MUT_H), rows_error(st, st_cpu, 1, (int)S));
    free(state0), free(u), free(y), free(st), free(y_cpu), free(st_cpu), free(scratch);
    s4_case_free(&c);
    return err;
}

/* The one barrier of the S4 and S5 kernels is the DPLR carry's (threads
 * share nothing else; the scans' passes are separate launches): removing
 * it must be caught (some seed of six), as must a wrong carry (the
 * transition one token too long or short, or none at all).  Whoever adds
 * a barrier makes the site count fail and should cover it here or in
 * test_kernels.c's test_every_barrier_matters. */
START_TEST(test_dplr_mutations)
{
    const double tol = 2e-5;
    kc_emu_sites_reset();
    s4_kernel_case(20, 4, 0, 50, 4, 1, 7);
    s4_kernel_case(9, 3, 2, 25, 4, 1, 8);
    s5_kernel_case(0);
    float yv[4] = {1, 2, 3, 4}, uv[4] = {1, 1, 1, 1}, D[2] = {0.5f, 2}, act[4];
    kc_s5_skip_act(yv, uv, D, 2, 2, 1, NULL, 0, act, 2, NULL);
    ck_assert_int_eq(kc_emu_site_count(), 1);
    ck_assert_msg(site_reached("dplr_scan.cu"), "barrier at %s", kc_emu_site(0));
    kc_emu_sites_reset();
    ck_assert_msg(dplr_mutant_error(1, MUT_L, 1) <= tol, "the intact scan fails");
    ck_assert_int_eq(kc_emu_site_count(), 1);
    kc_emu_disable_site(0);
    int caught = 0;
    for (unsigned seed = 1; seed <= 6 && !caught; seed++)
        caught = !(dplr_mutant_error(seed, MUT_L, 1) <= tol);
    kc_emu_disable_site(-1);
    ck_assert_msg(caught, "removing the barrier at %s goes unnoticed", kc_emu_site(0));
    ck_assert_msg(!(dplr_mutant_error(1, MUT_L + 1, 1) <= tol), "a transition too long goes unnoticed");
    ck_assert_msg(!(dplr_mutant_error(1, MUT_L - 1, 1) <= tol), "a transition too short goes unnoticed");
    ck_assert_msg(!(dplr_mutant_error(1, MUT_L, 0) <= tol), "a missing carry goes unnoticed");
}
END_TEST

/* The chunk rule: the tuning's length for short inputs, 0 when one chunk
 * holds T, and for long ones a length that keeps chunks x width near 2^16
 * threads and the chunks within a grid's y dimension. */
START_TEST(test_diag_chunk_rule)
{
    kc_tuning t = tuning(64);
    ck_assert_int_eq(kc_diag_chunk(256, 64, &t), 0);
    ck_assert_int_eq(kc_diag_chunk(256, 65, &t), 64);
    ck_assert_int_eq(kc_diag_chunk(256, 700, &t), 64);
    ck_assert_int_eq(kc_diag_chunk(0, 700, &t), 0);
    static const int widths[] = {1, 3, 100, 1024, 40000, 1 << 20};
    static const int lens[] = {65, 1000, 100000, 1 << 24};
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++)
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            const int W = widths[w], T = lens[k], L = kc_diag_chunk(W, T, &t);
            ck_assert_int_ge(L, 64);
            ck_assert_int_lt(L, T);
            const long chunks = (T + L - 1) / L;
            ck_assert_int_le(chunks, 65535);
            ck_assert(chunks <= 2 || chunks * W <= (1 << 16) + W); /* near 2^16 threads, no more */
        }
}
END_TEST

START_TEST(test_s5_skip_act)
{
    enum { ROWS = 5, H = 37, LD = 50 };
    unsigned s = 9;
    float *y = rand_vec(ROWS * H, &s), *u = rand_vec(ROWS * H, &s), *D = rand_vec(H, &s);
    for (int i = 0; i < ROWS * H; i++)
        y[i] *= 4.0f; /* into GELU's curved range and its tails */
    bk_backend *cpu = cpu_backend();
    for (int tanh_form = 0; tanh_form <= 1; tanh_form++) {
        float pre[2][ROWS * LD], act[2][ROWS * H];
        memset(pre, 0, sizeof pre);
        kc_s5_skip_act(y, u, D, ROWS, H, tanh_form, pre[0], LD, act[0], H, NULL);
        cpu->s5->skip_act(cpu, y, u, D, ROWS, H, tanh_form, pre[1], LD, act[1], H);
        ck_assert_msg(!kc_emu_error(), "%s", kc_emu_error());
        for (int r = 0; r < ROWS; r++)
            assert_rows_close(pre[0] + r * LD, pre[1] + r * LD, 1, H, 0.0, "pre");
        assert_rows_close(act[0], act[1], ROWS, H, 1e-6, tanh_form ? "gelu tanh" : "gelu erf");
        /* act only: pre untouched */
        kc_s5_skip_act(y, u, D, ROWS, H, tanh_form, NULL, 0, act[0], H, NULL);
        assert_rows_close(act[0], act[1], ROWS, H, 1e-6, "act only");
    }
    cpu->destroy(cpu);
    free(y), free(u), free(D);
}
END_TEST

/* ---- models -------------------------------------------------------------- */

static eng_model *open_on(const char *dir, const char *backend, int max_batch)
{
    eng_model_opts o;
    eng_model_opts_defaults(&o);
    o.backend = backend;
    o.max_batch = max_batch;
    o.backend_opts.threads = 1;
    eng_model *m = NULL;
    ssmd_err err = {0};
    ck_assert_msg(eng_model_open(dir, &o, &m, &err) == SSMD_OK, "open %s on %s: %s", dir, backend,
                  err.msg);
    return m;
}

static const char *const s5_fixtures[] = {"s5_zoh_gelu", "s5_full_glu", "s5_half_glu1",
                                          "s5_bilinear_half_glu2"};

/* Every S5 fixture on "emu", then the first two on the real backend over
 * the CUDA mock (default tuning), against its float64 reference. */
START_TEST(test_s5_matches_reference)
{
    const char *name = s5_fixtures[_i % 4], *backend = _i < 4 ? "emu" : "cuda";
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "tests/fixtures/s5/%s", name);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    kc_mock_reset();
    eng_model *m = open_on(dir, backend, 4);
    ref_check_matches(m, path, name);
    ck_assert_msg(!kc_emu_error(), "%s", kc_emu_error());
    eng_model_close(m);
    ck_assert_uint_eq(kc_mock_live_allocations(), 0);
}
END_TEST

/* Long prompts: the S4D fixtures (diagonal: the chunked scan), the S4
 * ones (DPLR, rank 1 and 2: dplr_scan.cu) and the S5 ones on "emu" (scan
 * chunks of 4, so 300 tokens are 75 chunks), then three on the real
 * backend over the CUDA mock (default chunks of 64: 5 chunks in scratch
 * from its allocator).  dplr: the DPLR scan must run (its carry's barrier
 * is reached) in the prefill at once. */
static const struct { const char *dir, *backend; int dplr; } long_runs[] = {
    {"s4/s4d_minimal", "emu", 0},    {"s4/s4d_block", "emu", 0},
    {"s4/dss_exp", "emu", 0},        {"s4/s4_rank2", "emu", 1},
    {"s4/s4_legs", "emu", 1},        {"s5/s5_zoh_gelu", "emu", 0},
    {"s5/s5_full_glu", "emu", 0},    {"s5/s5_half_glu1", "emu", 0},
    {"s5/s5_bilinear_half_glu2", "emu", 0},
    {"s4/s4d_block", "cuda", 0},     {"s5/s5_half_glu1", "cuda", 0},
    {"s4/s4_rank2", "cuda", 1},
};
enum { N_LONG = sizeof long_runs / sizeof long_runs[0], LONG_T = 300 };

/* One prompt prefilled on the CPU backend at once (all logits), and on
 * the GPU code at once, in uneven pieces and token by token: every row of logits
 * and every final state agree with the CPU's. */
START_TEST(test_long_prompt_matches_cpu)
{
    static const int pieces[] = {1, 37, 5, 130, 2, 64, 61}; /* sums to LONG_T */
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", long_runs[_i].dir);
    kc_mock_reset();
    eng_model *cpu = open_on(dir, "cpu", 4), *gpu = open_on(dir, long_runs[_i].backend, 4);
    const int V = eng_model_n_vocab(cpu);
    int32_t ids[LONG_T];
    unsigned s = 17u + (unsigned)_i;
    for (int i = 0; i < LONG_T; i++)
        ids[i] = (int32_t)(lcg(&s) % (unsigned)V);
    eng_state_pool *pc, *pg;
    ssmd_err err;
    ck_assert_int_eq(eng_state_pool_create(cpu, 1, &pc, &err), SSMD_OK);
    ck_assert_int_eq(eng_state_pool_create(gpu, 3, &pg, &err), SSMD_OK);
    float *want = malloc(sizeof(float) * LONG_T * V), *got = malloc(sizeof(float) * LONG_T * V);
    eng_state_slot_zero(pc, 0);
    ck_assert_int_eq(eng_model_prefill(cpu, pc, 0, ids, LONG_T, want, 1, &err), SSMD_OK);
    for (int k = 0; k < 3; k++)
        eng_state_slot_zero(pg, k);
    kc_emu_sites_reset();
    ck_assert_int_eq(eng_model_prefill(gpu, pg, 0, ids, LONG_T, got, 1, &err), SSMD_OK);
    assert_rows_close(got, want, LONG_T, V, 1e-4, "at once");
    if (long_runs[_i].dplr) /* the scan ran, not the walk */
        ck_assert_msg(site_reached("dplr_scan.cu"), "the DPLR prefill took the walk");
    for (int k = 0, off = 0; k < (int)(sizeof pieces / sizeof pieces[0]); off += pieces[k], k++) {
        ck_assert_int_eq(eng_model_prefill(gpu, pg, 1, ids + off, pieces[k], got + (size_t)off * V, 1,
                                           &err), SSMD_OK);
    }
    assert_rows_close(got, want, LONG_T, V, 1e-4, "uneven pieces");
    for (int t = 0; t < LONG_T; t++) {
        int32_t slot = 2;
        ck_assert_int_eq(eng_model_decode(gpu, pg, &slot, &ids[t], 1, got + (size_t)t * V, &err), 0);
    }
    assert_rows_close(got, want, LONG_T, V, 1e-4, "token by token");
    const size_t n = eng_state_pool_slot_bytes(pc) / sizeof(float);
    float *sc = malloc(sizeof(float) * n), *sg = malloc(sizeof(float) * n);
    eng_state_slot_read(pc, 0, sc);
    for (int k = 0; k < 3; k++) {
        eng_state_slot_read(pg, k, sg);
        assert_rows_close(sg, sc, 1, (int)n, 1e-4, k == 0 ? "state at once" : k == 1 ? "state pieces"
                                                                                     : "state steps");
    }
    ck_assert_msg(!kc_emu_error(), "%s", kc_emu_error());
    free(want), free(got), free(sc), free(sg);
    eng_state_pool_destroy(pc);
    eng_state_pool_destroy(pg);
    eng_model_close(cpu);
    eng_model_close(gpu);
    ck_assert_uint_eq(kc_mock_live_allocations(), 0);
}
END_TEST

/* S5 through the GPU code: the family's conformance checks (prefill in
 * pieces = at once = token by token; batched decode, recorded and replayed
 * as graphs = solo; a batched prefill of several sequences = each alone). */
START_TEST(test_s5_conformance)
{
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/s5/%s", s5_fixtures[_i]);
    eng_model *m = open_on(dir, "emu", 8);
    ref_check_prefill_equivalences(m, 40, 17);
    ref_check_batched_decode(m, 5, 3);
    ref_check_prefill_multi(m);
    ck_assert_msg(!kc_emu_error(), "%s", kc_emu_error());
    eng_model_close(m);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("emu_s4s5");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_s4_prefill_scan, 0, (int)(sizeof s4_cases / sizeof s4_cases[0]));
    tcase_add_loop_test(tc, test_s5_scan, 0, (int)(sizeof s5_cases / sizeof s5_cases[0]));
    tcase_add_test(tc, test_diag_chunk_rule);
    tcase_add_test(tc, test_dplr_mutations);
    tcase_add_test(tc, test_s5_skip_act);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("models");
    tcase_set_timeout(tm, 600);
    tcase_add_loop_test(tm, test_s5_matches_reference, 0, 6);
    tcase_add_loop_test(tm, test_long_prompt_matches_cpu, 0, N_LONG);
    tcase_add_loop_test(tm, test_s5_conformance, 0, 4);
    suite_add_tcase(s, tm);
    return s;
}
