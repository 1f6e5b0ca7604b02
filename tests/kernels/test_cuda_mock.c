/* test_cuda_mock.c - the real CUDA backend (kernels/cuda/backend_cuda.cu) on the
 * strict CUDA runtime/cuBLAS mock (kernels/emu/cuda_mock.cpp), for what the
 * fixture runs in test_emu_model.c do not reach: refusing machines without
 * a usable GPU, out-of-device-memory at creation, at load and for the state
 * pool (clear SSMD_ENOMEM, nothing leaked), a failing graph capture and
 * disabled graphs (eager fallback, same results), per-op synchronisation,
 * and every matmul path (GEMV, cuBLAS, widened 16-bit panels, biases,
 * strides) against a double-precision reference. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "engine/tensor.h"
#include "engine/state_pool.h"
#include "kernels/cuda/backend_core.h"
#include "kernels/emu/cuda_mock.h"
#include "kernels/emu/emu.h"
#include "tests/kernels/matmul_ref.h"
#include "tests/kernels/quant_blocks.h"

static const char *const FIXTURE = "tests/fixtures/mamba/untied_bias";

static int open_model(eng_model **m, ssmd_err *err)
{
    eng_model_opts o;
    eng_model_opts_defaults(&o);
    o.backend = "cuda";
    o.max_batch = 4;
    *m = NULL;
    return eng_model_open(FIXTURE, &o, m, err);
}

START_TEST(test_refuses_without_usable_gpu)
{
    bk_backend *bk = NULL;
    ssmd_err err = {0};
    kc_mock_reset();
    kc_mock_set_device(0, 9, 0);
    ck_assert_int_eq(bk_backend_create("cuda", NULL, &bk, &err), SSMD_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "no usable GPU"));
    kc_mock_set_device(1, 7, 5);
    ck_assert_int_eq(bk_backend_create("cuda", NULL, &bk, &err), SSMD_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "7.5") && strstr(err.msg, "8.0"), "%s", err.msg);
    kc_mock_reset();
    ck_assert_uint_eq(kc_mock_live_allocations(), 0);
}
END_TEST

/* Device bytes the backend alone needs, and with the fixture loaded. */
static void measure(size_t *backend_bytes, size_t *model_bytes)
{
    bk_backend *bk;
    ssmd_err err;
    kc_mock_reset();
    ck_assert_int_eq(bk_backend_create("cuda", NULL, &bk, &err), SSMD_OK);
    kc_mock_stats st;
    kc_mock_stats_get(&st);
    *backend_bytes = st.peak_bytes;
    bk->destroy(bk);
    kc_mock_reset();
    eng_model *m;
    ck_assert_int_eq(open_model(&m, &err), SSMD_OK);
    kc_mock_stats_get(&st);
    *model_bytes = st.peak_bytes;
    eng_model_close(m);
    ck_assert_uint_eq(kc_mock_live_allocations(), 0);
}

START_TEST(test_out_of_device_memory)
{
    size_t backend_bytes, model_bytes;
    measure(&backend_bytes, &model_bytes);
    ck_assert_uint_gt(model_bytes, backend_bytes);
    eng_model *m = NULL;
    ssmd_err err = {0};
    /* at creation */
    kc_mock_reset();
    kc_mock_set_budget(backend_bytes / 2);
    ck_assert_int_eq(open_model(&m, &err), SSMD_ENOMEM);
    ck_assert_msg(strstr(err.msg, "out of device memory"), "%s", err.msg);
    ck_assert_uint_eq(kc_mock_live_allocations(), 0);
    /* at load, at several points of it */
    for (size_t cut = 1; cut < 8; cut++) {
        kc_mock_reset();
        kc_mock_set_budget(backend_bytes + (model_bytes - backend_bytes) * cut / 8);
        ck_assert_int_eq(open_model(&m, &err), SSMD_ENOMEM);
        ck_assert_msg(strstr(err.msg, "out of"), "%s", err.msg);
        ck_assert_uint_eq(kc_mock_live_allocations(), 0);
    }
    /* for session states */
    kc_mock_reset();
    kc_mock_set_budget(model_bytes + (64 << 10)); /* one slot is ~11 KB */
    ck_assert_int_eq(open_model(&m, &err), SSMD_OK);
    eng_state_pool *pool = NULL;
    ck_assert_int_eq(eng_state_pool_create(m, 1000, &pool, &err), SSMD_ENOMEM);
    ck_assert_msg(strstr(err.msg, "cuda backend") && strstr(err.msg, "1000"), "%s", err.msg);
    ck_assert_int_eq(eng_state_pool_create(m, 1, &pool, &err), SSMD_OK);
    eng_state_pool_destroy(pool);
    eng_model_close(m);
    ck_assert_uint_eq(kc_mock_live_allocations(), 0);
    kc_mock_reset();
}
END_TEST

/* Decodes `steps` tokens for 3 slots out of order; logits into out. */
static void decode_run(eng_model *m, int steps, float *out)
{
    eng_state_pool *pool;
    ssmd_err err;
    ck_assert_int_eq(eng_state_pool_create(m, 5, &pool, &err), SSMD_OK);
    int32_t slots[3] = {4, 0, 2}, prompt[4] = {5, 9, 1, 7};
    for (int b = 0; b < 3; b++)
        ck_assert_int_eq(eng_model_prefill(m, pool, slots[b], prompt + b, 2, NULL, 0, &err), SSMD_OK);
    const int V = eng_model_n_vocab(m);
    for (int t = 0; t < steps; t++) {
        int32_t ids[3] = {(int32_t)(t * 7 % V), (int32_t)(t * 13 % V), (int32_t)(t * 5 % V)};
        ck_assert_int_eq(eng_model_decode(m, pool, slots, ids, 3, out + (size_t)t * 3 * V, &err), SSMD_OK);
    }
    eng_state_pool_destroy(pool);
}

static double max_rel_diff(const float *a, const float *b, size_t n)
{
    double scale = 1e-6, worst = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)a[i] - b[i]) / scale);
    return worst;
}

START_TEST(test_graph_fallbacks)
{
    enum { STEPS = 4 };
    ssmd_err err;
    eng_model *m;
    eng_model_opts o;
    eng_model_opts_defaults(&o);
    o.max_batch = 4;
    o.backend_opts.threads = 1;
    ck_assert_int_eq(eng_model_open(FIXTURE, &o, &m, &err), SSMD_OK); /* cpu reference */
    const int V = eng_model_n_vocab(m);
    float *ref = malloc(sizeof(float) * STEPS * 3 * V), *got = malloc(sizeof(float) * STEPS * 3 * V);
    decode_run(m, STEPS, ref);
    eng_model_close(m);
    /* 0: graphs (captured at step 2), 1: capture fails once, 2: graphs off,
     * 3: graphs off and a synchronisation after every op */
    for (int mode = 0; mode < 4; mode++) {
        kc_mock_reset();
        if (mode == 1)
            kc_mock_fail_captures(1);
        if (mode >= 2)
            setenv("SSMD_CUDA_GRAPHS", "0", 1);
        if (mode == 3)
            setenv("SSMD_CUDA_SYNC", "1", 1);
        ck_assert_int_eq(open_model(&m, &err), SSMD_OK);
        unsetenv("SSMD_CUDA_GRAPHS");
        unsetenv("SSMD_CUDA_SYNC");
        memset(got, 0, sizeof(float) * STEPS * 3 * V);
        decode_run(m, STEPS, got);
        double d = max_rel_diff(got, ref, (size_t)STEPS * 3 * V);
        ck_assert_msg(d <= 2e-5, "mode %d: %g", mode, d);
        kc_mock_stats ms;
        kc_mock_stats_get(&ms);
        ck_assert_uint_eq(ms.graph_launches, mode == 0 ? STEPS - 1 : 0);
        if (mode == 3)
            ck_assert_uint_gt(ms.syncs, 100);
        eng_model_close(m);
        ck_assert_uint_eq(kc_mock_live_allocations(), 0);
    }
    free(ref), free(got);
    ck_assert_ptr_null(kc_emu_error());
}
END_TEST

/* y = x W^T + bias through bk->matmul for m rows (GEMV up to 16, cuBLAS
 * above; 16-bit and block-quantized weights widened first), W of rows x
 * cols in dtype dt, strided x and y; against double sums of the same
 * rounded (dequantised) weights. */
static void check_matmul(bk_backend *bk, int dt, int m, int rows, int cols, int with_bias,
                         bk_precision prec)
{
    unsigned s = (unsigned)(dt * 7919 + m * 31 + rows + cols);
    const int ldx = cols + 5, ldy = rows + 3;
    const int quantized = eng_dtype_info_of((eng_dtype)dt)->quantized;
    const size_t n = (size_t)rows * cols, es = dt == ENG_DTYPE_F32 ? 4 : 2;
    const size_t raw_bytes = (size_t)rows * eng_dtype_row_bytes((eng_dtype)dt, cols);
    float *exact = NULL;
    void *raw = quantized ? qb_rand_blocks((eng_dtype)dt, rows, cols, &s, &exact) : malloc(n * es);
    if (!quantized)
        exact = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n && !quantized; i++) {
        float v = frand(&s);
        if (dt == ENG_DTYPE_F32) {
            ((float *)raw)[i] = exact[i] = v;
        } else if (dt == ENG_DTYPE_BF16) {
            ((uint16_t *)raw)[i] = eng_f32_to_bf16(v);
            exact[i] = eng_bf16_to_f32(((uint16_t *)raw)[i]);
        } else {
            ((uint16_t *)raw)[i] = (uint16_t)(0x3000 + (unsigned)((v + 1.0f) * 2000.0f)); /* finite halves */
            exact[i] = eng_f16_to_f32(((uint16_t *)raw)[i]);
        }
    }
    eng_tensor t = {.name = "w", .file = "mem", .dtype = (eng_dtype)dt, .ndim = 2,
                    .shape = {rows, cols}, .numel = (int64_t)n, .data = raw,
                    .nbytes = quantized ? raw_bytes : n * es};
    bk_matrix w;
    ssmd_err err;
    ck_assert_int_eq(bk->matrix_load(bk, &t, rows, cols, &w, &err), SSMD_OK);
    float *hx = malloc(sizeof(float) * (size_t)m * ldx), *hb = malloc(sizeof(float) * rows);
    float *hy = malloc(sizeof(float) * (size_t)m * ldy), *ref = malloc(sizeof(float) * (size_t)m * ldy);
    for (size_t i = 0; i < (size_t)m * ldx; i++)
        hx[i] = frand(&s);
    for (int r = 0; r < rows; r++)
        hb[r] = frand(&s);
    float *dx = bk->alloc(bk, sizeof(float) * (size_t)m * ldx), *db = bk->alloc(bk, sizeof(float) * rows);
    float *dy = bk->alloc(bk, sizeof(float) * (size_t)m * ldy);
    bk->write(bk, dx, hx, sizeof(float) * (size_t)m * ldx);
    bk->write(bk, db, hb, sizeof(float) * rows);
    bk->matmul(bk, &w, dx, ldx, m, dy, ldy, with_bias ? db : NULL, prec);
    bk->read(bk, hy, dy, sizeof(float) * (size_t)m * ldy);
    ref_matmul(exact, rows, cols, hx, ldx, m, with_bias ? hb : NULL, ref, ldy);
    double worst = 0, scale = 1e-6;
    for (int i = 0; i < m; i++)
        for (int r = 0; r < rows; r++)
            scale = fmax(scale, fabs(ref[(size_t)i * ldy + r]));
    for (int i = 0; i < m; i++)
        for (int r = 0; r < rows; r++)
            worst = fmax(worst, fabs((double)hy[(size_t)i * ldy + r] - ref[(size_t)i * ldy + r]) / scale);
    ck_assert_msg(worst <= 2e-6, "matmul dt=%d m=%d %dx%d bias=%d: %g", dt, m, rows, cols, with_bias, worst);
    bk->release(bk, dx), bk->release(bk, db), bk->release(bk, dy);
    bk->matrix_release(bk, &w);
    free(exact), free(raw), free(hx), free(hb), free(hy), free(ref);
}

START_TEST(test_matmul_paths)
{
    bk_backend *bk;
    ssmd_err err;
    kc_mock_reset();
    ck_assert_int_eq(bk_backend_create("cuda", NULL, &bk, &err), SSMD_OK);
    static const int ms[] = {1, 5, 16, 17, 40};
    for (int dt = 0; dt < 3; dt++)
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
            check_matmul(bk, dt, ms[i], 37 + dt, 20 + 4 * (int)i + (dt == 1), (int)(i & 1),
                         BK_PRECISION_DEFAULT);
    /* the block-quantized types: rows of whole blocks (of 32, or 256 for
     * the K-quants), through the GEMV and the widened GEMM */
    static const eng_dtype qs[] = {ENG_DTYPE_Q8_0, ENG_DTYPE_Q4_0, ENG_DTYPE_Q5_0, ENG_DTYPE_Q4_K, ENG_DTYPE_Q6_K};
    for (size_t q = 0; q < sizeof qs / sizeof qs[0]; q++) {
        const int block = qs[q] == ENG_DTYPE_Q4_K || qs[q] == ENG_DTYPE_Q6_K ? 256 : 32;
        for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
            check_matmul(bk, qs[q], ms[i], 29, block * (1 + (int)i % 3), (int)(i & 1), BK_PRECISION_DEFAULT);
    }
    bk->destroy(bk);
    kc_mock_stats st;
    kc_mock_stats_get(&st);
    ck_assert_uint_gt(st.gemms, 0);
    ck_assert_uint_eq(st.tf32_gemms, 0);
    ck_assert_uint_eq(kc_mock_live_allocations(), 0);
    ck_assert_ptr_null(kc_emu_error());
}
END_TEST

/* numerics "fast" lets the GEMM path use TF32 tensor cores, except for a
 * product that asks for BK_PRECISION_EXACT; "exact" (the default, above)
 * never does.  (The mock computes in f32 either way: what is checked is
 * the compute type each GEMM asks cuBLAS for.) */
START_TEST(test_numerics_fast)
{
    bk_backend *bk;
    ssmd_err err;
    bk_options o;
    bk_options_defaults(&o);
    o.numerics = BK_NUMERICS_FAST;
    kc_mock_reset();
    ck_assert_int_eq(bk_backend_create("cuda", &o, &bk, &err), SSMD_OK);
    kc_mock_stats st;
    check_matmul(bk, 0, 40, 37, 24, 1, BK_PRECISION_EXACT);
    kc_mock_stats_get(&st);
    ck_assert_uint_gt(st.gemms, 0);
    ck_assert_uint_eq(st.tf32_gemms, 0);
    check_matmul(bk, 0, 40, 37, 24, 1, BK_PRECISION_DEFAULT);
    kc_mock_stats_get(&st);
    ck_assert_uint_gt(st.tf32_gemms, 0);
    bk->destroy(bk);
    o.device = 1; /* the mock has one device */
    ck_assert_int_eq(bk_backend_create("cuda", &o, &bk, &err), SSMD_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "device 1 does not exist"), "%s", err.msg);
    ck_assert_uint_eq(kc_mock_live_allocations(), 0);
}
END_TEST

/* Falcon-Mamba's extra norms (rms_rows) are on the GPU: it loads on the
 * cuda backend and closes with nothing leaked. */
START_TEST(test_falcon_loads)
{
    eng_model_opts o;
    eng_model_opts_defaults(&o);
    o.backend = "cuda";
    eng_model *m = NULL;
    ssmd_err err = {0};
    kc_mock_reset();
    ck_assert_msg(eng_model_open("tests/fixtures/mamba/falcon_tiny", &o, &m, &err) == SSMD_OK, "%s", err.msg);
    ck_assert_ptr_nonnull(m);
    eng_model_close(m);
    ck_assert_uint_eq(kc_mock_live_allocations(), 0);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("cuda_mock");
    TCase *tc = tcase_create("backend");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_refuses_without_usable_gpu);
    tcase_add_test(tc, test_out_of_device_memory);
    tcase_add_test(tc, test_graph_fallbacks);
    tcase_add_test(tc, test_matmul_paths);
    tcase_add_test(tc, test_numerics_fast);
    tcase_add_test(tc, test_falcon_loads);
    suite_add_tcase(s, tc);
    return s;
}
