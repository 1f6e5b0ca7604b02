/* test_cpu_kernels.c - the CPU backend's building blocks against plain
 * double-precision references, at every kernel level this machine runs
 * (cpu_kernels_list: scalar, avx2, avx512 here; scalar, neon on aarch64):
 * vector exp/softplus/silu, matmul in every dtype on both paths (streaming
 * kernel and sgemm), weight-row conversion and the bandwidth probe's sum,
 * quantized matmul (Q8_0, Q4_0, Q4_K, Q6_K) against dequantise-then-f32,
 * the level choice (SSMD_CPU), thread pool splits. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/quant.h"
#include "engine/tensor.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/cpu_matmul.h"
#include "kernels/cpu/cpu_ssm.h"
#include "kernels/cpu/threadpool.h"

static float frand(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

/* The _i-th level this machine runs (loop tests run once per level). */
static const cpu_kernels *level_at(int i)
{
    const cpu_kernels *all[CPU_LEVEL_COUNT];
    int n = cpu_kernels_list(all);
    ck_assert_int_lt(i, n);
    return all[i];
}

START_TEST(test_vector_math_accuracy)
{
    const cpu_kernels *k = level_at(_i);
    enum { N = 40000 * 16 };
    float *x = malloc(sizeof(float) * N), *e = malloc(sizeof(float) * N);
    float *sp = malloc(sizeof(float) * N), *si = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++)
        x[i] = -90.0f + (float)i * (120.0f / N);
    k->math(CPU_MATH_EXP, x, N, e);
    k->math(CPU_MATH_SOFTPLUS, x, N, sp);
    k->math(CPU_MATH_SILU, x, N, si);
    double worst_exp = 0, worst_sp = 0, worst_silu = 0;
    for (int i = 0; i < N; i++) {
        double re = exp((double)x[i]);
        if (re > 1e-37)
            worst_exp = fmax(worst_exp, fabs(e[i] - re) / re);
        double rs = x[i] > 20 ? x[i] : log1p(exp((double)x[i]));
        if (rs > 1e-37)
            worst_sp = fmax(worst_sp, fabs(sp[i] - rs) / rs);
        double rsi = x[i] / (1 + exp(-(double)x[i]));
        worst_silu = fmax(worst_silu, fabs(si[i] - rsi) / fmax(fabs(rsi), 1e-30));
    }
    ck_assert_msg(worst_exp < 4e-7, "%s: exp rel err %g", k->name, worst_exp);
    ck_assert_msg(worst_sp < 1e-6, "%s: softplus rel err %g", k->name, worst_sp);
    ck_assert_msg(worst_silu < 1e-6, "%s: silu rel err %g", k->name, worst_silu);
    /* subnormal results: exp(-100) is 3.7e-44, not flushed to zero */
    float tiny_x[16], tiny[16];
    for (int i = 0; i < 16; i++)
        tiny_x[i] = -100.0f;
    k->math(CPU_MATH_EXP, tiny_x, 16, tiny);
    ck_assert_msg(fabs(tiny[0] - exp(-100.0)) < 2e-45, "%s: exp(-100) = %g", k->name, tiny[0]);
    ck_assert_float_eq(cpu_softplus(30.0f), 30.0f);
    ck_assert(fabsf(cpu_softplus(0.0f) - logf(2.0f)) < 1e-7f);
    free(x), free(e), free(sp), free(si);
}
END_TEST

/* Row conversion (every dtype, lengths with tails) and the probe's sum. */
START_TEST(test_row_convert_and_sum)
{
    const cpu_kernels *k = level_at(_i);
    enum { N = 77 };
    uint16_t bf[N], hf[N];
    float want_bf[N], want_hf[N], got[N], f[N];
    unsigned seed = 3;
    for (int i = 0; i < N; i++) {
        f[i] = frand(&seed);
        bf[i] = eng_f32_to_bf16(f[i]);
        want_bf[i] = eng_bf16_to_f32(bf[i]);
        float q = roundf(f[i] * 1024.0f) / 1024.0f; /* an exact half */
        _Float16 hv = (_Float16)q;
        memcpy(&hf[i], &hv, 2);
        want_hf[i] = q;
    }
    for (int n = 0; n <= N; n += 11) {
        memset(got, 0, sizeof got);
        k->row_to_f32(bf, ENG_DTYPE_BF16, n, got);
        ck_assert_msg(!memcmp(got, want_bf, sizeof(float) * n), "%s: bf16 row of %d", k->name, n);
        k->row_to_f32(hf, ENG_DTYPE_F16, n, got);
        ck_assert_msg(!memcmp(got, want_hf, sizeof(float) * n), "%s: f16 row of %d", k->name, n);
        k->row_to_f32(f, ENG_DTYPE_F32, n, got);
        ck_assert_msg(!memcmp(got, f, sizeof(float) * n), "%s: f32 row of %d", k->name, n);
        double ref = 0;
        for (int i = 0; i < n; i++)
            ref += f[i];
        ck_assert_msg(fabs(k->sum(f, n) - ref) < 1e-5, "%s: sum of %d", k->name, n);
    }
}
END_TEST

/* SSMD_CPU: empty = best, a level the machine runs = that one, an unknown
 * name or a level this binary/CPU lacks = an error naming what it has. */
START_TEST(test_level_choice)
{
    const cpu_kernels *k = NULL, *all[CPU_LEVEL_COUNT];
    ssmd_err err = {0};
    int n = cpu_kernels_list(all);
    ck_assert_int_ge(n, 1);
    ck_assert_int_eq(all[0]->level, CPU_LEVEL_SCALAR);
    ck_assert_int_eq(cpu_kernels_choose(NULL, &k, &err), SSMD_OK);
    ck_assert_ptr_eq(k, all[n - 1]);
    ck_assert_ptr_eq(cpu_kernels_best(), all[n - 1]);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(cpu_kernels_choose(all[i]->name, &k, &err), SSMD_OK);
        ck_assert_ptr_eq(k, all[i]);
        ck_assert_str_eq(cpu_level_name(k->level), k->name);
        /* "-plain": the same level without its extra instructions */
        char plain[40];
        snprintf(plain, sizeof plain, "%s-plain", all[i]->name);
        ck_assert_int_eq(cpu_kernels_choose(plain, &k, &err), SSMD_OK);
        ck_assert_int_eq(k->level, all[i]->level);
        ck_assert_str_eq(k->variant, "");
    }
    ck_assert_int_eq(cpu_kernels_choose("scalar-fast", &k, &err), SSMD_EINVAL);
    k = NULL;
    ck_assert_int_eq(cpu_kernels_choose("sse9", &k, &err), SSMD_EINVAL);
    ck_assert_ptr_null(k);
    ck_assert_ptr_nonnull(strstr(err.msg, "sse9"));
    ck_assert_ptr_nonnull(strstr(err.msg, "scalar"));
#if defined(__x86_64__)
    const char *foreign = "neon";
#else
    const char *foreign = "avx2";
#endif
    ck_assert_int_eq(cpu_kernels_choose(foreign, &k, &err), SSMD_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, foreign));
    /* the backend refuses to start on a level it cannot run */
    setenv("SSMD_CPU", foreign, 1);
    bk_backend *bk = NULL;
    ck_assert_int_eq(bk_backend_create("cpu", NULL, &bk, &err), SSMD_EUNSUPPORTED);
    ck_assert_ptr_null(bk);
    unsetenv("SSMD_CPU");
}
END_TEST

/* The shapes a matmul test runs: every dtype x K x N x m, each on 1 and 3
 * threads at one level; odd indices of ms add a bias. */
typedef struct matmul_cases {
    const eng_dtype *dts;
    const int *Ks, *Ns, *ms;
    int n_dts, n_Ks, n_Ns, n_ms;
} matmul_cases;

/* One case: makes W (dt, N x K), x (m x K) and maybe a bias from *seed,
 * runs cpu_matmul with ctx and checks y. */
typedef void (*matmul_case_fn)(cpu_matmul_ctx *ctx, eng_dtype dt, int m, int K, int N,
                               int with_bias, unsigned *seed);

static void run_matmul_cases(const cpu_kernels *k, const matmul_cases *c, matmul_case_fn fn)
{
    for (int threads = 1; threads <= 3; threads += 2) {
        eng_threadpool *pool = eng_threadpool_create(threads);
        cpu_matmul_ctx ctx = {.pool = pool, .k = k};
        unsigned seed = 1;
        for (int di = 0; di < c->n_dts; di++)
            for (int ki = 0; ki < c->n_Ks; ki++)
                for (int ni = 0; ni < c->n_Ns; ni++)
                    for (int mi = 0; mi < c->n_ms; mi++)
                        fn(&ctx, c->dts[di], c->ms[mi], c->Ks[ki], c->Ns[ni], mi & 1, &seed);
        cpu_matmul_ctx_close(&ctx);
        eng_threadpool_destroy(pool);
    }
}

/* f32 / bf16 / f16 W: reference in double from the same (rounded) weights. */
static void float_case(cpu_matmul_ctx *ctx, eng_dtype dt, int m, int K, int N, int with_bias,
                       unsigned *seed)
{
    float *wf = malloc(sizeof(float) * N * K);
    uint16_t *wh = malloc(2 * (size_t)N * K);
    float *x = malloc(sizeof(float) * m * K), *bias = malloc(sizeof(float) * N);
    float *y = malloc(sizeof(float) * m * (N + 3));
    for (int i = 0; i < N * K; i++) {
        float v = frand(seed);
        if (dt == ENG_DTYPE_BF16) {
            wh[i] = eng_f32_to_bf16(v);
            wf[i] = eng_bf16_to_f32(wh[i]);
        } else if (dt == ENG_DTYPE_F16) {
            /* exact halves: multiples of 1/1024 in [-1, 1] */
            float q = roundf(v * 1024.0f) / 1024.0f;
            wf[i] = q;
            unsigned short bits;
            _Float16 hv = (_Float16)q;
            __builtin_memcpy(&bits, &hv, 2);
            wh[i] = bits;
        } else {
            wf[i] = v;
        }
    }
    for (int i = 0; i < m * K; i++)
        x[i] = frand(seed);
    for (int i = 0; i < N; i++)
        bias[i] = frand(seed);
    bk_matrix w = {.data = dt == ENG_DTYPE_F32 ? (void *)wf : (void *)wh,
                   .row_bytes = eng_dtype_row_bytes(dt, K), .dtype = dt, .rows = N, .cols = K};
    cpu_matmul(ctx, &w, x, K, m, y, N + 3, with_bias ? bias : NULL);
    for (int i = 0; i < m; i++)
        for (int n = 0; n < N; n++) {
            double ref = with_bias ? bias[n] : 0.0, mag = fabs(ref);
            for (int c = 0; c < K; c++) {
                ref += (double)wf[n * K + c] * x[i * K + c];
                mag += fabs((double)wf[n * K + c] * x[i * K + c]);
            }
            double got = y[i * (N + 3) + n];
            ck_assert_msg(fabs(got - ref) <= 1e-6 * (mag + 1),
                          "%s dtype %d m %d K %d N %d: y[%d][%d] = %g, want %g", ctx->k->name, dt,
                          m, K, N, i, n, got, ref);
        }
    free(wf), free(wh), free(x), free(bias), free(y);
}

/* y = x W^T for rows m in {1..5, 7, 17, 97, 170} (both paths at every
 * level: sgemm from 48, 80 or 160 rows), K with tails, every float dtype,
 * 1 and 3 threads, at level _i. */
START_TEST(test_matmul_all_paths)
{
    const int ms[] = {1, 2, 3, 4, 5, 7, 17, 97, 170}, Ks[] = {7, 16, 33, 96},
              Ns[] = {1, 5, 37, 130};
    const eng_dtype dts[] = {ENG_DTYPE_F32, ENG_DTYPE_BF16, ENG_DTYPE_F16};
    const matmul_cases c = {dts, Ks, Ns, ms, 3, 4, 4, 9};
    run_matmul_cases(level_at(_i), &c, float_case);
}
END_TEST

/* Random weights of a quantized dtype: real quantisations of random floats
 * where ssmd can write the type, random blocks with a sane scale (Q6_K,
 * Q5_0). */
static void random_qweights(eng_dtype dt, int N, int K, uint8_t *w, unsigned *seed)
{
    const uint64_t rb = eng_dtype_row_bytes(dt, K);
    float *row = malloc(sizeof(float) * K);
    for (int n = 0; n < N; n++) {
        uint8_t *wr = w + (size_t)n * rb;
        if (eng_quant_can_write(dt)) {
            for (int c = 0; c < K; c++)
                row[c] = frand(seed) * (1.0f + (float)(c % 7)) + (n % 3 == 1 ? 0.5f : 0.0f);
            eng_quant_quantize(dt, row, K, wr);
            continue;
        }
        for (uint64_t b = 0; b < rb; b++)
            wr[b] = (uint8_t)(frand(seed) * 128.0f + 128.0f);
        /* the f16 scale: Q6_K's at byte 208 of 210, Q5_0's at 0 of 22 */
        const int bytes = eng_dtype_info_of(dt)->block_bytes, at = dt == ENG_DTYPE_Q6_K ? 208 : 0;
        for (uint64_t b = 0; b < rb; b += (uint64_t)bytes) {
            uint16_t d = eng_f32_to_f16(0.01f * (1.0f + frand(seed)));
            wr[b + at] = (uint8_t)d, wr[b + at + 1] = (uint8_t)(d >> 8);
        }
    }
    free(row);
}

/* Quantized W against double-precision products of the dequantised
 * weights: (1) with the exact x, within the bound x's rounding to 8 bits
 * allows on the decode path (each product moves by at most
 * |w| * max|x block| / 254), plus 1e-5 of the magnitude for f32 sums;
 * (2) tightly, within 2e-6 of the magnitude, with the x the path really
 * multiplies: exact x for sgemm (cpu_matmul_blas_min_rows on), x as cpu_quant.c rounds it for
 * the integer kernels, so that a wrong unpacked value cannot hide inside
 * the first bound. */
static void quant_case(cpu_matmul_ctx *ctx, eng_dtype dt, int m, int K, int N, int with_bias,
                       unsigned *seed)
{
    const uint64_t rb = eng_dtype_row_bytes(dt, K);
    uint8_t *wq = malloc(rb * N);
    float *wf = malloc(sizeof(float) * N * K);
    float *x = malloc(sizeof(float) * m * K), *bias = malloc(sizeof(float) * N);
    float *y = malloc(sizeof(float) * m * (N + 3));
    random_qweights(dt, N, K, wq, seed);
    eng_quant_dequant(dt, wq, (int64_t)N * K, wf);
    for (int i = 0; i < m * K; i++)
        x[i] = frand(seed) * (i % 32 == 5 ? 4.0f : 1.0f);
    for (int i = 0; i < N; i++)
        bias[i] = frand(seed);
    bk_matrix w = {.data = wq, .row_bytes = rb, .dtype = dt, .rows = N, .cols = K};
    cpu_matmul(ctx, &w, x, K, m, y, N + 3, with_bias ? bias : NULL);
    float *xr = malloc(sizeof(float) * m * K); /* x as the path multiplies it */
    memcpy(xr, x, sizeof(float) * m * K);
    if (m < cpu_matmul_blas_min_rows(ctx->k)) {
        cpu_q8_act a = {0};
        cpu_q8_act_fill(&a, x, K, m, K);
        for (int i = 0; i < m * K; i++)
            xr[i] = (float)a.q[i] * a.d[i / CPU_Q8_BLOCK];
        cpu_q8_act_free(&a);
    }
    for (int i = 0; i < m; i++)
        for (int n = 0; n < N; n++) {
            double refr = with_bias ? bias[n] : 0.0, magr = fabs(refr);
            for (int c = 0; c < K; c++) {
                refr += (double)wf[(size_t)n * K + c] * xr[i * K + c];
                magr += fabs((double)wf[(size_t)n * K + c] * xr[i * K + c]);
            }
            ck_assert_msg(fabs(y[i * (N + 3) + n] - refr) <= 2e-6 * (magr + 1),
                          "%s %s m %d K %d N %d: y[%d][%d] = %g, want %g with x as rounded",
                          ctx->k->name, eng_dtype_info_of(dt)->name, m, K, N, i, n,
                          y[i * (N + 3) + n], refr);
            double ref = with_bias ? bias[n] : 0.0, mag = fabs(ref), tol = 0;
            for (int c = 0; c < K; c++) {
                const double wv = wf[(size_t)n * K + c], xv = x[i * K + c];
                float amax = 0.0f;
                for (int l = c / 32 * 32; l < c / 32 * 32 + 32; l++)
                    amax = fmaxf(amax, fabsf(x[i * K + l]));
                ref += wv * xv;
                mag += fabs(wv * xv);
                tol += fabs(wv) * amax / 254.0;
            }
            const double got = y[i * (N + 3) + n];
            ck_assert_msg(fabs(got - ref) <= 1.01 * tol + 1e-5 * (mag + 1),
                          "%s %s m %d K %d N %d: y[%d][%d] = %g, want %g (tol %g)", ctx->k->name,
                          eng_dtype_info_of(dt)->name, m, K, N, i, n, got, ref, tol);
        }
    free(wq), free(wf), free(x), free(xr), free(bias), free(y);
}

/* y = x W^T for quantized W on both paths (below cpu_matmul_blas_min_rows:
 * x quantized to int8 blocks and the level's integer kernel, 50 rows
 * included where that is 80 or 160; from it on: dequantised panels
 * through sgemm), every block type, 1 and 3 threads, at level _i. */
START_TEST(test_qmatmul_all_paths)
{
    const int ms[] = {1, 2, 3, 4, 5, 9, 50, 170}, Ks[] = {256, 768}, Ns[] = {1, 6, 37};
    const eng_dtype dts[] = {ENG_DTYPE_Q8_0, ENG_DTYPE_Q4_0, ENG_DTYPE_Q4_K, ENG_DTYPE_Q6_K,
                             ENG_DTYPE_Q5_0};
    const matmul_cases c = {dts, Ks, Ns, ms, 5, 2, 3, 8};
    run_matmul_cases(level_at(_i), &c, quant_case);
}
END_TEST

/* Level _i's q8_rows against the definition in plain C (cpu_quant.h):
 * the same bytes, scales and sums, bit for bit, on blocks of random
 * values, all zeros, halves that round to even, and one huge value. */
START_TEST(test_q8_rows_exact)
{
    enum { M = 3, COLS = 128, LDX = COLS + 5 };
    const cpu_kernels *k = level_at(_i);
    unsigned seed = 11;
    float x[M * LDX];
    for (int i = 0; i < M * LDX; i++)
        x[i] = frand(&seed) * (i % 7 == 0 ? 40.0f : 1.0f);
    for (int l = 0; l < 32; l++) /* row 0, block 1: all zeros */
        x[32 + l] = 0.0f;
    for (int l = 0; l < 32; l++) /* row 1, block 0: max 127, d = 1, so x / d ends in .5 */
        x[LDX + l] = (float)(l - 16) + 0.5f;
    x[LDX] = 127.0f;
    x[2 * LDX + 64] = 3e30f; /* row 2, block 2: one huge value */
    cpu_q8_act a = {0};
    cpu_q8_act_reserve(&a, M, COLS);
    k->q8_rows(&a, x, LDX);
    for (int i = 0; i < M; i++)
        for (int b = 0; b < COLS / 32; b++) {
            const float *xb = x + i * LDX + b * 32;
            float amax = 0.0f;
            for (int l = 0; l < 32; l++)
                amax = fabsf(xb[l]) > amax ? fabsf(xb[l]) : amax;
            const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
            int sum = 0;
            for (int l = 0; l < 32; l++) {
                float q = nearbyintf(xb[l] * id);
                q = q < 127.0f ? q : 127.0f;
                q = q > -127.0f ? q : -127.0f;
                ck_assert_msg(a.q[(i * COLS) + b * 32 + l] == (int8_t)q, "%s row %d block %d [%d]: %d, want %d",
                              k->name, i, b, l, a.q[(i * COLS) + b * 32 + l], (int)q);
                sum += (int)q;
            }
            const int bi = i * (COLS / 32) + b;
            ck_assert_msg(a.d[bi] == d && a.dsum[bi] == d * (float)sum,
                          "%s row %d block %d: d %g dsum %g, want %g %g", k->name, i, b, a.d[bi],
                          a.dsum[bi], d, d * (float)sum);
        }
    cpu_q8_act_free(&a);
}
END_TEST

/* Rows of 32-weight blocks that are not whole groups of 8 (1, 3, 7, 9
 * blocks): the integer kernel's padded last group, at level _i. */
START_TEST(test_qmatmul_block_tails)
{
    const int ms[] = {1, 2, 4, 5}, Ks[] = {32, 96, 224, 288}, Ns[] = {3};
    const eng_dtype dts[] = {ENG_DTYPE_Q8_0, ENG_DTYPE_Q4_0, ENG_DTYPE_Q5_0};
    const matmul_cases c = {dts, Ks, Ns, ms, 3, 4, 1, 4};
    run_matmul_cases(level_at(_i), &c, quant_case);
}
END_TEST

/* The tables of the levels that cpu_kernels_for passes over here because
 * the CPU has the level's extra instructions (plain AVX-512 where AVX-512
 * VNNI exists, plain AVX2 where AVX-VNNI does, plain NEON where the dot
 * product does): they must still compute the same, for CPUs that lack
 * them.  Nothing to run where no such table exists. */
START_TEST(test_qmatmul_plain_variant)
{
    const cpu_kernels *plain[2] = {NULL, NULL};
#if defined(__x86_64__)
    if (cpu_kernels_for(CPU_LEVEL_AVX512) == &cpu_kernels_avx512vnni)
        plain[0] = &cpu_kernels_avx512;
    if (cpu_kernels_for(CPU_LEVEL_AVX2) == &cpu_kernels_avx2vnni)
        plain[1] = &cpu_kernels_avx2;
#elif defined(__aarch64__)
    if (cpu_kernels_for(CPU_LEVEL_NEON) == &cpu_kernels_neon_dotprod)
        plain[0] = &cpu_kernels_neon;
#endif
    const int ms[] = {1, 3, 4, 9}, Ks[] = {256}, Ns[] = {6, 37};
    const eng_dtype dts[] = {ENG_DTYPE_Q8_0, ENG_DTYPE_Q4_0, ENG_DTYPE_Q4_K, ENG_DTYPE_Q6_K};
    const matmul_cases c = {dts, Ks, Ns, ms, 4, 1, 2, 4};
    for (int i = 0; i < 2; i++)
        if (plain[i]) {
            ck_assert_str_eq(plain[i]->variant, "");
            run_matmul_cases(plain[i], &c, quant_case);
        }
}
END_TEST

/* y for rows of x multiplied alone (m = 1) and in a batch of 6, with W's
 * N rows all the same: every output of one row of x must be the same bits
 * (rows reduced four at a time, vf_hsum4 / vq2_hsum4, and the others one
 * at a time must add in one order), and a row's outputs must not depend on
 * the batch it is in.  dt any dtype; K columns.  At level k, one thread. */
static void rows_agree_case(const cpu_kernels *k, eng_dtype dt, int K)
{
    enum { N = 7, M = 6 };
    unsigned seed = 5;
    const uint64_t rb = eng_dtype_row_bytes(dt, K);
    uint8_t *w = malloc(rb * N);
    float *x = malloc(sizeof(float) * M * K), *y1 = malloc(sizeof(float) * N),
          *ym = malloc(sizeof(float) * M * N), *row = malloc(sizeof(float) * K);
    for (int c = 0; c < K; c++)
        row[c] = frand(&seed);
    if (eng_dtype_info_of(dt)->quantized)
        eng_quant_quantize(dt, row, K, w);
    else if (dt == ENG_DTYPE_F32)
        memcpy(w, row, rb);
    else
        for (int c = 0; c < K; c++)
            ((uint16_t *)w)[c] = dt == ENG_DTYPE_F16 ? eng_f32_to_f16(row[c]) : eng_f32_to_bf16(row[c]);
    for (int n = 1; n < N; n++)
        memcpy(w + n * rb, w, rb);
    for (int i = 0; i < M * K; i++)
        x[i] = frand(&seed);
    eng_threadpool *pool = eng_threadpool_create(1);
    cpu_matmul_ctx ctx = {.pool = pool, .k = k};
    bk_matrix wm = {.data = w, .row_bytes = rb, .dtype = dt, .rows = N, .cols = K};
    cpu_matmul(&ctx, &wm, x, K, M, ym, N, NULL);
    for (int i = 0; i < M; i++) {
        cpu_matmul(&ctx, &wm, x + i * K, K, 1, y1, N, NULL);
        for (int n = 0; n < N; n++) {
            ck_assert_msg(y1[n] == y1[0], "%s %s K %d: row %d of W gives %.9g, row 0 %.9g",
                          k->name, eng_dtype_info_of(dt)->name, K, n, y1[n], y1[0]);
            ck_assert_msg(ym[i * N + n] == y1[n], "%s %s K %d: x row %d in a batch of %d gives %.9g, alone %.9g",
                          k->name, eng_dtype_info_of(dt)->name, K, i, M, ym[i * N + n], y1[n]);
        }
    }
    cpu_matmul_ctx_close(&ctx);
    eng_threadpool_destroy(pool);
    free(w), free(x), free(y1), free(ym), free(row);
}

START_TEST(test_matmul_rows_agree)
{
    const cpu_kernels *k = level_at(_i);
    const eng_dtype floats[] = {ENG_DTYPE_F32, ENG_DTYPE_F16, ENG_DTYPE_BF16};
    for (int d = 0; d < 3; d++) {
        rows_agree_case(k, floats[d], 48); /* dt_proj's rows */
        rows_agree_case(k, floats[d], 85);
    }
    rows_agree_case(k, ENG_DTYPE_Q8_0, 256);
    rows_agree_case(k, ENG_DTYPE_Q4_0, 288);
    rows_agree_case(k, ENG_DTYPE_Q4_K, 512);
}
END_TEST

/* A cpu backend (best level) on one thread. */
static bk_backend *cpu_backend_one_thread(void)
{
    bk_options o;
    bk_options_defaults(&o);
    o.threads = 1;
    bk_backend *bk;
    ssmd_err err;
    ck_assert_int_eq(bk_backend_create("cpu", &o, &bk, &err), SSMD_OK);
    return bk;
}

/* The cpu backend's matmul through its table: a matrix with row scales
 * gives y = (x W^T) * scale + bias, whatever precision is asked. */
START_TEST(test_backend_matmul_row_scale)
{
    enum { N = 5, K = 16, M = 3 };
    bk_backend *bk = cpu_backend_one_thread();
    ssmd_err err;
    unsigned seed = 7;
    float w[N * K], x[M * K], scale[N], bias[N], y[M * N];
    for (int i = 0; i < N * K; i++)
        w[i] = frand(&seed);
    for (int i = 0; i < M * K; i++)
        x[i] = frand(&seed);
    for (int i = 0; i < N; i++)
        scale[i] = 0.5f + (float)i, bias[i] = frand(&seed);
    eng_tensor t = {.name = "w", .file = "mem", .dtype = ENG_DTYPE_F32, .ndim = 2, .shape = {N, K},
                    .numel = N * K, .data = w, .nbytes = sizeof w};
    bk_matrix m;
    ck_assert_int_eq(bk->matrix_load(bk, &t, N, K, &m, &err), SSMD_OK);
    ck_assert_uint_eq(m.row_bytes, K * sizeof(float));
    m.row_scale = scale;
    for (int prec = 0; prec < 2; prec++) {
        bk->matmul(bk, &m, x, K, M, y, N, bias, (bk_precision)prec);
        for (int i = 0; i < M; i++)
            for (int n = 0; n < N; n++) {
                double ref = 0.0;
                for (int k = 0; k < K; k++)
                    ref += (double)w[n * K + k] * x[i * K + k];
                ref = ref * scale[n] + bias[n];
                ck_assert_msg(fabs(y[i * N + n] - ref) <= 1e-5 * (1 + fabs(ref)), "y[%d][%d] %g, want %g",
                              i, n, y[i * N + n], ref);
            }
    }
    bk->matrix_release(bk, &m);
    bk->destroy(bk);
}
END_TEST

/* The cpu backend loads block-quantized matrices in place (row bytes of
 * whole blocks) and refuses a dtype it cannot read, naming it. */
START_TEST(test_backend_matrix_dtypes)
{
    bk_backend *bk = cpu_backend_one_thread();
    ssmd_err err;
    static uint8_t blocks[2 * 2 * 144];
    eng_tensor t = {.name = "w", .file = "mem.gguf", .dtype = ENG_DTYPE_Q4_K, .ndim = 2,
                    .shape = {2, 512}, .numel = 1024, .data = blocks, .nbytes = sizeof blocks};
    snprintf(t.dtype_name, sizeof t.dtype_name, "Q4_K");
    bk_matrix m;
    ck_assert_int_eq(bk->matrix_load(bk, &t, 2, 512, &m, &err), SSMD_OK);
    ck_assert_uint_eq(m.row_bytes, 2 * 144);
    ck_assert_ptr_eq(m.data, blocks);
    bk->matrix_release(bk, &m);
    t.dtype = ENG_DTYPE_OTHER;
    snprintf(t.dtype_name, sizeof t.dtype_name, "I64");
    ck_assert_int_eq(bk->matrix_load(bk, &t, 2, 512, &m, &err), SSMD_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "mem.gguf") && strstr(err.msg, "'w'") &&
                  strstr(err.msg, "unsupported dtype I64"), "%s", err.msg);
    bk->destroy(bk);
}
END_TEST

typedef struct count_job {
    int hits[8];
} count_job;

static void count_worker(void *arg, int tid, int n)
{
    count_job *j = arg;
    j->hits[tid]++;
}

START_TEST(test_threadpool_runs_each_thread_once)
{
    eng_threadpool *p = eng_threadpool_create(4);
    count_job j = {{0}};
    for (int r = 0; r < 1000; r++)
        eng_threadpool_run(p, count_worker, &j);
    for (int t = 0; t < 4; t++)
        ck_assert_int_eq(j.hits[t], 1000);
    /* a small job runs on the caller alone, a big one on every thread */
    count_job small = {{0}}, big = {{0}};
    eng_threadpool_run_sized(p, count_worker, &small, 100);
    eng_threadpool_run_sized(p, count_worker, &big, 1e9);
    ck_assert_int_eq(small.hits[0], 1);
    ck_assert_int_eq(small.hits[1] + small.hits[2] + small.hits[3], 0);
    for (int t = 0; t < 4; t++)
        ck_assert_int_eq(big.hits[t], 1);
    eng_threadpool_destroy(p);
    /* ranges cover [0, n) exactly, aligned */
    for (long n = 0; n < 100; n++) {
        long covered = 0, prev_end = 0;
        for (int t = 0; t < 3; t++) {
            long b, e;
            eng_split_range(n, 16, t, 3, &b, &e);
            ck_assert_int_eq(b, prev_end);
            ck_assert(b % 16 == 0 || b == n);
            covered += e - b;
            prev_end = e;
        }
        ck_assert_int_eq(covered, n);
    }
}
END_TEST

/* n floats from *seed in [lo, hi). */
static float *rand_floats(size_t n, unsigned *seed, float lo, float hi)
{
    float *v = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        v[i] = lo + (hi - lo) * (frand(seed) * 0.5f + 0.5f);
    return v;
}

/* scan_step_dt (the scan computing dt_proj itself, per thread) against
 * cpu_matmul then scan_step: the same dt, y and states bit for bit, for
 * f32, f16 and Q8_0 dt_proj, batches of 1 and 5 (the fused path) and 170
 * (sgemm's side of the threshold at every level), slots out of order,
 * 2 threads, at level _i. */
START_TEST(test_scan_step_dt_fused)
{
    enum { E = 96, N = 16, R = 64, KC = 4, LDD = R + 2 * N };
    const cpu_kernels *k = level_at(_i);
    eng_threadpool *pool = eng_threadpool_create(2);
    cpu_matmul_ctx mm = {.pool = pool, .k = k};
    unsigned seed = 11;
    float *dt_bias = rand_floats(E, &seed, -2.0f, 0.5f), *A = rand_floats(N * E, &seed, -8.0f, -0.1f);
    float *D = rand_floats(E, &seed, -1.0f, 1.0f), *conv_w = rand_floats(KC * E, &seed, -1.0f, 1.0f);
    const bk_ssm_layer l = {.conv_w = conv_w, .dt_bias = dt_bias, .A = A, .D = D, .d_inner = E,
                            .d_state = N, .d_conv = KC, .dt_rank = R};
    float *wf = rand_floats(E * R, &seed, -0.3f, 0.3f);
    uint8_t *wq = malloc(eng_dtype_row_bytes(ENG_DTYPE_F32, R) * E);
    const eng_dtype dts[] = {ENG_DTYPE_F32, ENG_DTYPE_F16, ENG_DTYPE_Q8_0};
    const int Bs[] = {1, 5, 170};
    for (size_t d = 0; d < 3; d++) {
        const eng_dtype dt = dts[d];
        if (dt == ENG_DTYPE_F32)
            memcpy(wq, wf, sizeof(float) * E * R);
        else if (dt == ENG_DTYPE_F16)
            for (int i = 0; i < E * R; i++)
                ((uint16_t *)wq)[i] = eng_f32_to_f16(wf[i]);
        else
            eng_quant_quantize(dt, wf, E * R, wq);
        const bk_matrix w = {.data = wq, .row_bytes = eng_dtype_row_bytes(dt, R), .dtype = dt,
                             .rows = E, .cols = R};
        for (size_t bi = 0; bi < 3; bi++) {
            const int B = Bs[bi];
            const size_t stride = (size_t)(KC - 1 + N) * E, n = (size_t)B * E;
            float *x = rand_floats(n, &seed, -1.0f, 1.0f), *z = rand_floats(n, &seed, -2.0f, 2.0f);
            float *dbc = rand_floats((size_t)B * LDD, &seed, -1.0f, 1.0f);
            float *states[2], *dts_out[2], *ys[2];
            states[0] = rand_floats(stride * B, &seed, -1.0f, 1.0f);
            states[1] = malloc(sizeof(float) * stride * B);
            memcpy(states[1], states[0], sizeof(float) * stride * B);
            int32_t *slots = malloc(sizeof(int32_t) * B);
            for (int b = 0; b < B; b++)
                slots[b] = B - 1 - b;
            for (int p = 0; p < 2; p++) {
                dts_out[p] = calloc(n, sizeof(float));
                ys[p] = calloc(n, sizeof(float));
                const bk_state_ref st = {.pool = states[p], .slot_stride = stride, .conv_offset = 0,
                                         .ssm_offset = (size_t)(KC - 1) * E, .slots = slots,
                                         .batch = B};
                const bk_mamba1_io io = {.x = x, .ldx = E, .xc = x, .dt = dts_out[p], .dbc = dbc,
                                         .z = z, .ldz = E, .y = ys[p], .rows = B};
                if (p == 0) {
                    cpu_matmul(&mm, &w, dbc, LDD, B, dts_out[p], E, NULL);
                    cpu_scan_step(k, pool, &l, &st, &io);
                } else {
                    cpu_scan_step_dt(&mm, &l, &w, &st, &io);
                }
            }
            ck_assert_msg(!memcmp(dts_out[0], dts_out[1], sizeof(float) * n), "%s %s B %d: dt",
                          k->name, eng_dtype_info_of(dt)->name, B);
            ck_assert_msg(!memcmp(ys[0], ys[1], sizeof(float) * n), "%s %s B %d: y", k->name,
                          eng_dtype_info_of(dt)->name, B);
            ck_assert_msg(!memcmp(states[0], states[1], sizeof(float) * stride * B),
                          "%s %s B %d: states", k->name, eng_dtype_info_of(dt)->name, B);
            for (int p = 0; p < 2; p++)
                free(states[p]), free(dts_out[p]), free(ys[p]);
            free(x), free(z), free(dbc), free(slots);
        }
    }
    cpu_matmul_ctx_close(&mm);
    eng_threadpool_destroy(pool);
    free(dt_bias), free(A), free(D), free(conv_w), free(wf), free(wq);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("cpu_kernels");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    const cpu_kernels *all[CPU_LEVEL_COUNT];
    int levels = cpu_kernels_list(all);
    tcase_add_loop_test(tc, test_vector_math_accuracy, 0, levels);
    tcase_add_loop_test(tc, test_row_convert_and_sum, 0, levels);
    tcase_add_loop_test(tc, test_matmul_all_paths, 0, levels);
    tcase_add_loop_test(tc, test_q8_rows_exact, 0, levels);
    tcase_add_loop_test(tc, test_matmul_rows_agree, 0, levels);
    tcase_add_loop_test(tc, test_qmatmul_all_paths, 0, levels);
    tcase_add_loop_test(tc, test_qmatmul_block_tails, 0, levels);
    tcase_add_loop_test(tc, test_scan_step_dt_fused, 0, levels);
    tcase_add_test(tc, test_qmatmul_plain_variant);
    tcase_add_test(tc, test_level_choice);
    tcase_add_test(tc, test_threadpool_runs_each_thread_once);
    tcase_add_test(tc, test_backend_matmul_row_scale);
    tcase_add_test(tc, test_backend_matrix_dtypes);
    suite_add_tcase(s, tc);
    return s;
}
