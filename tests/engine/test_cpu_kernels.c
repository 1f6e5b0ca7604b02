/* test_cpu_kernels.c - the CPU backend's building blocks against plain
 * double-precision references: vector exp/softplus/silu, matmul in every
 * dtype on both paths (streaming kernel and sgemm), thread pool splits. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "engine/backend.h"
#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/cpu_matmul.h"
#include "engine/tensor.h"
#include "kernels/cpu/threadpool.h"

static float frand(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

START_TEST(test_vector_math_accuracy)
{
#if CPU_HAVE_AVX512
    double worst_exp = 0, worst_sp = 0, worst_silu = 0;
    for (int i = 0; i < 40000; i++) {
        float x[16], e[16], sp[16], si[16];
        for (int k = 0; k < 16; k++)
            x[k] = -90.0f + (float)(i * 16 + k) * (120.0f / (40000.0f * 16));
        _mm512_storeu_ps(e, cpu_exp16(_mm512_loadu_ps(x)));
        _mm512_storeu_ps(sp, cpu_softplus16(_mm512_loadu_ps(x)));
        _mm512_storeu_ps(si, cpu_silu16(_mm512_loadu_ps(x)));
        for (int k = 0; k < 16; k++) {
            double re = exp((double)x[k]);
            if (re > 1e-37)
                worst_exp = fmax(worst_exp, fabs(e[k] - re) / re);
            double rs = x[k] > 20 ? x[k] : log1p(exp((double)x[k]));
            if (rs > 1e-37)
                worst_sp = fmax(worst_sp, fabs(sp[k] - rs) / rs);
            double rsi = x[k] / (1 + exp(-(double)x[k]));
            worst_silu = fmax(worst_silu, fabs(si[k] - rsi) / fmax(fabs(rsi), 1e-30));
        }
    }
    ck_assert_msg(worst_exp < 4e-7, "exp rel err %g", worst_exp);
    ck_assert_msg(worst_sp < 1e-6, "softplus rel err %g", worst_sp);
    ck_assert_msg(worst_silu < 1e-6, "silu rel err %g", worst_silu);
#endif
    ck_assert_float_eq(cpu_softplus(30.0f), 30.0f);
    ck_assert(fabsf(cpu_softplus(0.0f) - logf(2.0f)) < 1e-7f);
}
END_TEST

/* y = x W^T for rows m in {1..5, 8, 17, 97} (both paths), K with tails,
 * every dtype, 1 and 3 threads; reference in double from the same
 * (rounded) weights. */
START_TEST(test_matmul_all_paths)
{
    const int ms[] = {1, 2, 3, 4, 5, 7, 17, 97};
    const int Ks[] = {7, 16, 33, 96};
    const int Ns[] = {1, 5, 37, 130};
    const eng_dtype dts[] = {ENG_DTYPE_F32, ENG_DTYPE_BF16, ENG_DTYPE_F16};
    for (int threads = 1; threads <= 3; threads += 2) {
        eng_threadpool *pool = eng_threadpool_create(threads);
        cpu_matmul_ctx ctx = {.pool = pool};
        unsigned seed = 1;
        for (size_t di = 0; di < 3; di++)
            for (size_t ki = 0; ki < 4; ki++)
                for (size_t ni = 0; ni < 4; ni++)
                    for (size_t mi = 0; mi < 8; mi++) {
                        int m = ms[mi], K = Ks[ki], N = Ns[ni];
                        eng_dtype dt = dts[di];
                        float *wf = malloc(sizeof(float) * N * K);
                        uint16_t *wh = malloc(2 * (size_t)N * K);
                        float *x = malloc(sizeof(float) * m * K), *bias = malloc(sizeof(float) * N);
                        float *y = malloc(sizeof(float) * m * (N + 3));
                        for (int i = 0; i < N * K; i++) {
                            float v = frand(&seed);
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
                            x[i] = frand(&seed);
                        for (int i = 0; i < N; i++)
                            bias[i] = frand(&seed);
                        bk_matrix w = {.data = dt == ENG_DTYPE_F32 ? (void *)wf : (void *)wh,
                                       .row_bytes = eng_dtype_row_bytes(dt, K),
                                       .dtype = dt, .rows = N, .cols = K};
                        cpu_matmul(&ctx, &w, x, K, m, y, N + 3, (mi & 1) ? bias : NULL);
                        for (int i = 0; i < m; i++)
                            for (int n = 0; n < N; n++) {
                                double ref = (mi & 1) ? bias[n] : 0.0, mag = fabs(ref);
                                for (int k = 0; k < K; k++) {
                                    ref += (double)wf[n * K + k] * x[i * K + k];
                                    mag += fabs((double)wf[n * K + k] * x[i * K + k]);
                                }
                                double got = y[i * (N + 3) + n];
                                ck_assert_msg(fabs(got - ref) <= 1e-6 * (mag + 1),
                                              "dtype %d m %d K %d N %d: y[%d][%d] = %g, want %g", dt,
                                              m, K, N, i, n, got, ref);
                            }
                        free(wf), free(wh), free(x), free(bias), free(y);
                    }
        cpu_matmul_ctx_close(&ctx);
        eng_threadpool_destroy(pool);
    }
}
END_TEST

/* The cpu backend's matmul through its table: a matrix with row scales
 * gives y = (x W^T) * scale + bias, whatever precision is asked. */
START_TEST(test_backend_matmul_row_scale)
{
    enum { N = 5, K = 16, M = 3 };
    bk_options o;
    bk_options_defaults(&o);
    o.threads = 1;
    bk_backend *bk;
    ssmd_err err;
    ck_assert_int_eq(bk_backend_create("cpu", &o, &bk, &err), SSMD_OK);
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

Suite *test_suite(void)
{
    Suite *s = suite_create("cpu_kernels");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_vector_math_accuracy);
    tcase_add_test(tc, test_matmul_all_paths);
    tcase_add_test(tc, test_threadpool_runs_each_thread_once);
    tcase_add_test(tc, test_backend_matmul_row_scale);
    suite_add_tcase(s, tc);
    return s;
}
