/* test_emu_model.c - whole Mamba-1, Mamba-2 and S4/S4D models through the CUDA backend with
 * emulated kernels, in two builds: "emu" (kernels/cuda/backend_core.cu + the
 * kernels run by kernels/emu, a host GEMM for cuBLAS, small tuning so tiny
 * models take every path) and "cuda" (the real kernels/cuda/backend_cuda.cu on
 * the CUDA runtime/cuBLAS mock, kernels/emu/cuda_mock.cpp, default tuning):
 *  - prefill + greedy decode of every fixture model reproduce transformers'
 *    logits (tests/fixtures/mamba/NAME/expected.json) within 1e-4 of each
 *    row's largest logit, as the CPU backend does;
 *  - batched decode over slots out of order, steps recorded into traces and
 *    replayed as graphs (or evicted from the cache), matches the CPU backend
 *    step by step, logits and states, with and without logits read back;
 *  - a batched prefill of several sequences (one matmul over all their
 *    rows, conv and scan per sequence in device memory) = each alone. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/arch.h"
#include "engine/model.h"
#include "engine/model_config.h"
#include "engine/tensor.h"
#include "engine/weights/gguf_write.h"
#include "engine/weights/weights.h"
#include "engine/state_pool.h"
#include "kernels/cuda/backend_core.h"
#include "kernels/emu/cuda_mock.h"
#include "kernels/emu/emu.h"
#include "models/mamba1.h"
#include "tests/models/reference.h"

static const char *const fixtures[] = {"tiny_auto", "untied_bias", "bf16", "original_f16"};
enum { N_FIXTURES = 4 };
/* runs: every Mamba-1 and Mamba-2 fixture on "emu", then some on "cuda"
 * (the slower one to emulate: default tuning) */
static const struct { const char *dir, *backend; } runs[] = {
    {"mamba/tiny_auto", "emu"},   {"mamba/untied_bias", "emu"}, {"mamba/bf16", "emu"},
    {"mamba/original_f16", "emu"}, {"mamba2/hf_tiny", "emu"},   {"mamba2/hf_groups", "emu"},
    {"mamba2/orig_gate", "emu"},  {"s4/s4d_minimal", "emu"},    {"s4/s4d_block", "emu"},
    {"s4/s4_legs", "emu"},        {"s4/s4_rank2", "emu"},       {"s4/dss_exp", "emu"},
    {"s4/dss_softmax", "emu"},    {"mamba/falcon_tiny", "emu"}, {"mamba/untied_bias", "cuda"},
    {"mamba/bf16", "cuda"},       {"mamba2/hf_groups", "cuda"}, {"s4/s4_rank2", "cuda"},
};
enum { N_RUNS = sizeof runs / sizeof runs[0] };

static eng_model *open_run(int i, int max_batch)
{
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", runs[i].dir);
    eng_model_opts o;
    eng_model_opts_defaults(&o);
    o.backend = runs[i].backend;
    o.max_batch = max_batch;
    eng_model *m = NULL;
    ssmd_err err = {0};
    ck_assert_msg(eng_model_open(dir, &o, &m, &err) == SSMD_OK, "open %s: %s", dir, err.msg);
    return m;
}

/* The reference rows and greedy tokens, as on the CPU backend. */
START_TEST(test_emu_matches_reference)
{
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/%s/expected.json", runs[_i].dir);
    eng_model *m = open_run(_i, 4);
    ref_check_matches(m, path, runs[_i].dir);
    ck_assert_msg(!kc_emu_error(), "%s", kc_emu_error());
    eng_model_close(m);
    ck_assert_uint_eq(kc_mock_live_allocations(), 0);
}
END_TEST

/* Mamba-2 and the S4 family through the GPU code: prefill in pieces = at
 * once = token by token, batched decode (recorded, replayed as graphs) =
 * solo decode. */
START_TEST(test_emu_family_conformance)
{
    eng_model *m = open_run(4 + _i, 8);
    ref_check_prefill_equivalences(m, 40, 17);
    ref_check_batched_decode(m, 5, 3);
    ck_assert_msg(!kc_emu_error(), "%s", kc_emu_error());
    eng_model_close(m);
}
END_TEST

/* A fixture loaded straight through the architecture on a given backend,
 * with its own state pool (so the emu backend's statistics are reachable). */
typedef struct direct {
    eng_model_config cfg;
    eng_weights *w;
    bk_backend *bk;
    void *arch;
    float *pool;
    size_t slot_floats;
} direct;

static void direct_open(direct *d, const char *name, bk_backend *bk, int max_batch, int n_slots)
{
    char dir[256], path[300];
    ssmd_err err = {0};
    snprintf(dir, sizeof dir, "tests/fixtures/mamba/%s", name);
    snprintf(path, sizeof path, "%s/config.json", dir);
    ck_assert_msg(eng_model_config_load(path, &d->cfg, &err) == SSMD_OK, "%s", err.msg);
    ck_assert_msg(eng_weights_open(dir, &d->w, &err) == SSMD_OK, "%s", err.msg);
    d->bk = bk;
    ck_assert_msg(mamba1_arch.load(&d->cfg, d->w, bk, max_batch, &d->arch, &err) == SSMD_OK, "%s", err.msg);
    d->slot_floats = mamba1_arch.state_floats(d->arch);
    d->pool = bk->alloc(bk, sizeof(float) * d->slot_floats * n_slots);
    ck_assert_ptr_nonnull(d->pool);
}

static void direct_close(direct *d)
{
    d->bk->release(d->bk, d->pool);
    mamba1_arch.free(d->arch);
    d->bk->destroy(d->bk);
    eng_weights_close(d->w);
}

/* B sequences prefilled then decoded together on bk (slots out of order;
 * batches of B, 1 and B - 2 in turn, so three traces; every fourth step
 * without logits) and on the CPU backend: logits and all states agree. */
static void batched_vs_cpu(const char *name, bk_backend *bk_gpu, int B, unsigned seed)
{
    enum { STEPS = 5, MAX_B = 32 };
    const int SLOTS = 2 * B + 1;
    bk_backend *bk_cpu;
    ssmd_err err;
    bk_options one_thread;
    bk_options_defaults(&one_thread);
    one_thread.threads = 1;
    ck_assert_int_eq(bk_backend_create("cpu", &one_thread, &bk_cpu, &err), SSMD_OK);
    direct gpu, cpu;
    direct_open(&gpu, name, bk_gpu, B, SLOTS);
    direct_open(&cpu, name, bk_cpu, B, SLOTS);
    const int V = gpu.cfg.vocab_size;
    const size_t S = gpu.slot_floats;
    int32_t slots[MAX_B], ids[MAX_B], prompt[9];
    unsigned s = seed;
    for (int b = 0; b < B; b++) {
        slots[b] = (int32_t)(SLOTS - 1 - 2 * b); /* even slots, descending */
        int n = 1 + (b * 3) % 9;
        for (int k = 0; k < n; k++)
            prompt[k] = (int32_t)(lcg(&s) % (unsigned)V);
        mamba1_arch.prefill(gpu.arch, gpu.pool + (size_t)slots[b] * S, prompt, n, NULL, 0);
        mamba1_arch.prefill(cpu.arch, cpu.pool + (size_t)slots[b] * S, prompt, n, NULL, 0);
    }
    float *lg = malloc(sizeof(float) * B * V), *lc = malloc(sizeof(float) * B * V);
    float *sg = malloc(sizeof(float) * S * SLOTS), *sc = malloc(sizeof(float) * S * SLOTS);
    for (int t = 0; t < 3 * STEPS; t++) {
        int batch = t % 3 == 0 ? B : t % 3 == 1 ? 1 : B - 2;
        const int32_t *sl = t % 3 == 2 ? slots + 1 : slots;
        for (int b = 0; b < batch; b++)
            ids[b] = (int32_t)(lcg(&s) % (unsigned)V);
        int with_logits = t % 4 != 3;
        mamba1_arch.decode(gpu.arch, gpu.pool, sl, ids, batch, with_logits ? lg : NULL);
        mamba1_arch.decode(cpu.arch, cpu.pool, sl, ids, batch, with_logits ? lc : NULL);
        if (with_logits)
            assert_rows_close(lg, lc, batch, V, 2e-5, "gpu vs cpu decode");
        bk_gpu->read(bk_gpu, sg, gpu.pool, sizeof(float) * S * SLOTS);
        bk_cpu->read(bk_cpu, sc, cpu.pool, sizeof(float) * S * SLOTS);
        assert_rows_close(sg, sc, SLOTS, (int)S, 2e-5, "gpu vs cpu states");
    }
    ck_assert_msg(!kc_emu_error(), "%s", kc_emu_error());
    free(lg), free(lc), free(sg), free(sc);
    direct_close(&cpu);
    /* gpu closed by the caller after reading its statistics */
    gpu.bk->release(gpu.bk, gpu.pool);
    mamba1_arch.free(gpu.arch);
    eng_weights_close(gpu.w);
}

/* Mamba-1's batched prefill through the GPU code, on "emu" and "cuda". */
START_TEST(test_emu_prefill_multi)
{
    static const int picks[] = {1, 11}; /* mamba/untied_bias on emu, then on cuda */
    eng_model *m = open_run(picks[_i], 4);
    ref_check_prefill_multi(m);
    ck_assert_msg(!kc_emu_error(), "%s", kc_emu_error());
    eng_model_close(m);
    ck_assert_uint_eq(kc_mock_live_allocations(), 0);
}
END_TEST

START_TEST(test_emu_batched_decode_matches_cpu)
{
    const char *name = fixtures[_i];
    bk_backend *bk;
    ssmd_err err;
    /* odd fixtures: a graph cache of 2 for 3 alternating batch shapes, so
     * that every step evicts and runs eagerly */
    const int thrash = _i & 1;
    kc_tuning tune;
    kc_tuning_default(&tune);
    tune.scan_chunk = 4, tune.carry_rows = 4, tune.gemv_max_rows = 2, tune.panel_floats = 512;
    tune.graph_cache = thrash ? 2 : 8;
    ck_assert_int_eq(kc_emu_backend_create_tuned(&tune, &bk, &err), SSMD_OK);
    batched_vs_cpu(name, bk, 6, 11u + (unsigned)_i);
    kc_core_stats st;
    kc_core_stats_get(bk, &st);
    if (thrash) {
        ck_assert_uint_eq(st.graph_launches, 0);
        ck_assert_uint_ge(st.evictions, 13);
    } else {
        ck_assert_uint_eq(st.graph_captures, 3);
        ck_assert_uint_eq(st.graph_launches, 9);
        ck_assert_uint_eq(st.evictions, 0);
    }
    ck_assert_uint_eq(st.capture_failures, 0);
    bk->destroy(bk);
}
END_TEST

/* The real CUDA backend on the mock: B = 20 takes the cuBLAS path (more
 * than 16 rows) for the full batch and the GEMV path for the others. */
START_TEST(test_cuda_mock_batched_decode_matches_cpu)
{
    const char *name = fixtures[1 + _i]; /* untied_bias, bf16 */
    bk_backend *bk;
    ssmd_err err;
    kc_mock_reset();
    ck_assert_msg(bk_backend_create("cuda", NULL, &bk, &err) == SSMD_OK, "%s", err.msg);
    batched_vs_cpu(name, bk, 20, 5u + (unsigned)_i);
    kc_core_stats st;
    kc_core_stats_get(bk, &st);
    ck_assert_uint_eq(st.graph_captures, 3);
    ck_assert_uint_eq(st.graph_launches, 9);
    ck_assert_uint_eq(st.capture_failures, 0);
    bk->destroy(bk);
    kc_mock_stats ms;
    kc_mock_stats_get(&ms);
    ck_assert_uint_eq(ms.graph_launches, 9);
    ck_assert_uint_gt(ms.gemms, 0);
    ck_assert_uint_eq(ms.tf32_gemms, 0);
    ck_assert_uint_eq(kc_mock_live_allocations(), 0);
}
END_TEST

/* numerics "fast" on bf16 weights: prefill products of more than
 * gemv_max_rows rows run on the bf16 tensor-core GEMM (x rounded to bf16),
 * here through the mocked cuBLAS.  Stated tolerance of that path: logits
 * within 3e-2 of each reference row's largest magnitude (the fixture's
 * float64 reference; every in/x/out projection of the prompt rounds its
 * input to bf16, 2^-9 relative, and the errors compound through the
 * layers: 1.1e-2 measured here); greedy ids equal wherever the
 * reference's top-2 margin exceeds twice that.  numerics "exact" never
 * takes the path. */
enum { FAST_TOL_X1000 = 30 };

/* Greedy ids of got equal want's on every row where want's top-2 margin
 * exceeds twice tol of the row scale; returns how many rows were checked. */
static int same_greedy_where_clear(const float *got, const float *want, int rows, int V, double tol)
{
    int checked = 0;
    for (int i = 0; i < rows; i++) {
        const float *w = want + (size_t)i * V;
        int best = argmax(w, V);
        double scale = 1e-6, second = -INFINITY;
        for (int v = 0; v < V; v++) {
            scale = fmax(scale, fabs(w[v]));
            if (v != best)
                second = fmax(second, w[v]);
        }
        if (w[best] - second > 2 * tol * scale) {
            ck_assert_int_eq(argmax(got + (size_t)i * V, V), best);
            checked++;
        }
    }
    return checked;
}

static int prefill_rows_fast(eng_model *m, const ref_case *rc, int rows, float *logits)
{
    eng_state_pool *pool;
    ssmd_err err;
    ck_assert_int_eq(eng_state_pool_create(m, 1, &pool, &err), SSMD_OK);
    eng_state_slot_zero(pool, 0);
    int rc_ = eng_model_prefill(m, pool, 0, rc->seq, rows, logits, 1, &err);
    eng_state_pool_destroy(pool);
    return rc_;
}

START_TEST(test_cuda_mock_bf16_fast_path)
{
    const double tol = FAST_TOL_X1000 / 1000.0;
    for (int fast = 0; fast <= 1; fast++) {
        eng_model_opts o;
        eng_model_opts_defaults(&o);
        o.backend = "cuda";
        o.backend_opts.numerics = fast ? BK_NUMERICS_FAST : BK_NUMERICS_EXACT;
        eng_model *m = NULL;
        ssmd_err err = {0};
        kc_mock_reset();
        ck_assert_msg(eng_model_open("tests/fixtures/mamba/bf16", &o, &m, &err) == SSMD_OK, "%s", err.msg);
        ref r;
        ref_load("tests/fixtures/mamba/bf16/expected.json", &r);
        int checked_ids = 0;
        for (int c = 0; c < r.n_cases; c++) {
            const ref_case *rc = &r.cases[c];
            const int rows = rc->n_prompt + rc->n_greedy - 1, V = r.V;
            float *logits = malloc(sizeof(float) * rows * V);
            ck_assert_int_eq(prefill_rows_fast(m, rc, rows, logits), SSMD_OK);
            assert_rows_close(logits, rc->logits, rows, V, fast ? tol : 1e-4, fast ? "bf16 fast" : "exact");
            for (int i = 0; i < rows && getenv("SSMD_TEST_VERBOSE"); i++) {
                double scale = 1e-6, worst = 0;
                for (int v = 0; v < V; v++)
                    scale = fmax(scale, fabs(rc->logits[(size_t)i * V + v]));
                for (int v = 0; v < V; v++)
                    worst = fmax(worst, fabs(logits[(size_t)i * V + v] - rc->logits[(size_t)i * V + v]));
                fprintf(stderr, "numerics %s case %d row %d: %.3g of the row scale\n", fast ? "fast" : "exact",
                        c, i, worst / scale);
            }
            checked_ids += same_greedy_where_clear(logits, rc->logits, rows, V, tol);
            free(logits);
        }
        ck_assert_int_gt(checked_ids, 0);
        kc_mock_stats st;
        kc_mock_stats_get(&st);
        if (fast)
            ck_assert_uint_gt(st.bf16_gemms, 0); /* the 44-row prefill took the tensor-core path */
        else
            ck_assert_uint_eq(st.bf16_gemms, 0);
        ref_free(&r);
        eng_model_close(m);
        ck_assert_uint_eq(kc_mock_live_allocations(), 0);
    }
}
END_TEST

/* The logits of the model file at path on backend: T prompt rows (ids,
 * one prefill) then `steps` decode steps on tokens next[], as rows of
 * *out ((T + steps) x V, malloc'ed); returns V.  dtype: the model's dtype
 * name, checked when not NULL. */
static int run_file(const char *path, const char *backend, const char *dtype, const int32_t *ids, int T,
                    const int32_t *next, int steps, float **out)
{
    eng_model_opts o;
    eng_model_opts_defaults(&o);
    o.backend = backend;
    eng_model *m = NULL;
    ssmd_err err = {0};
    kc_mock_reset();
    ck_assert_msg(eng_model_open(path, &o, &m, &err) == SSMD_OK, "%s: %s", backend, err.msg);
    if (dtype)
        ck_assert_str_eq(eng_model_dtype_name(m), dtype);
    const int V = eng_model_n_vocab(m);
    *out = malloc(sizeof(float) * (size_t)(T + steps) * V);
    eng_state_pool *pool;
    ck_assert_int_eq(eng_state_pool_create(m, 1, &pool, &err), SSMD_OK);
    eng_state_slot_zero(pool, 0);
    ck_assert_int_eq(eng_model_prefill(m, pool, 0, ids, T, *out, 1, &err), SSMD_OK);
    const int32_t slot = 0;
    for (int t = 0; t < steps; t++)
        ck_assert_int_eq(eng_model_decode(m, pool, &slot, next + t, 1, *out + (size_t)(T + t) * V, &err),
                         SSMD_OK);
    eng_state_pool_destroy(pool);
    eng_model_close(m);
    ck_assert_uint_eq(kc_mock_live_allocations(), 0);
    ck_assert_ptr_null(kc_emu_error());
    return V;
}

/* A Q8_0 GGUF file of the default model (written by eng_gguf_save: its
 * 256- and 512-wide matrices are whole 32-blocks) on the mocked cuda
 * backend, where the blocks are read as stored by the GEMV, the embedding
 * gather and the widened GEMM, against the CPU backend on the same file
 * (which rounds x to int8 per block as well): logits within 3e-2 of the
 * row scale, the stated tolerance between the two Q8_0 paths, and greedy
 * ids equal where the CPU's top-2 margin exceeds twice that. */
START_TEST(test_cuda_mock_q8_0_model)
{
    char dir[] = "/tmp/ssmd-q8-XXXXXX", path[64];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/default_q8.gguf", dir);
    eng_weights *w;
    ssmd_err err = {0};
    ck_assert_msg(eng_weights_open("models/default", &w, &err) == SSMD_OK, "%s", err.msg);
    json_error_t jerr;
    json_t *cfg = json_load_file("models/default/config.json", 0, &jerr);
    ck_assert_ptr_nonnull(cfg);
    int nq = 0;
    ck_assert_msg(eng_gguf_save(w, cfg, NULL, ENG_DTYPE_Q8_0, path, &nq, &err) == SSMD_OK, "%s", err.msg);
    ck_assert_int_gt(nq, 0);
    json_decref(cfg);
    eng_weights_close(w);
    enum { T = 24 }; /* more rows than gemv_max_rows: the GEMM path too */
    int32_t ids[T];
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)(17 + 131 * t) % 4096;
    float *cpu, *cuda;
    const int V = run_file(path, "cpu", "q8_0", ids, T, NULL, 0, &cpu);
    run_file(path, "cuda", "q8_0", ids, T, NULL, 0, &cuda);
    assert_rows_close(cuda, cpu, T, V, 3e-2, "q8_0 cuda vs cpu");
    ck_assert_int_gt(same_greedy_where_clear(cuda, cpu, T, V, 3e-2), 0);
    free(cpu);
    free(cuda);
    unlink(path);
    rmdir(dir);
}
END_TEST

/* tests/fixtures/gguf/quant_mixed.gguf (Q8_0, Q4_0, Q5_0, Q4_K and Q6_K
 * matrices in one small Mamba-1) on "emu" (gemv_max_rows 2: the prompt's
 * products widen 512-float panels) and on the real backend over the mock
 * (default tuning: the 24-row prompt widens, decode runs the GEMV):
 *  - against the CPU backend on the same file: QUANT_TOL of each row's
 *    largest logit, the stated tolerance (the CPU rounds x to int8 per 32
 *    weights, ~2^-8 of each block's largest, where the cuda backend keeps
 *    x in f32: 1.7e-2 measured), and greedy ids equal where the CPU's
 *    top-2 margin exceeds twice that;
 *  - against the CPU backend on the file's dequantised F32 copy (written
 *    by eng_gguf_save through engine/quant.c): within 1e-4, the fixtures'
 *    tolerance, since both then multiply the same f32 weights by f32 x; a
 *    wrong nibble, bit or scale anywhere shows here. */
enum { QUANT_TOL_X1000 = 30 };

START_TEST(test_cuda_quant_mixed_model)
{
    static const char *const backends[] = {"emu", "cuda"};
    const double tol = QUANT_TOL_X1000 / 1000.0;
    enum { T = 24, STEPS = 12, ROWS = T + STEPS };
    int32_t ids[T], next[STEPS];
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)(t * 37 + 11) % 64;
    for (int t = 0; t < STEPS; t++)
        next[t] = (int32_t)(t * 29 + 5) % 64;
    const char *path = "tests/fixtures/gguf/quant_mixed.gguf";
    char dir[] = "/tmp/ssmd-qmix-XXXXXX", f32_path[64];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(f32_path, sizeof f32_path, "%s/quant_mixed_f32.gguf", dir);
    eng_weights *w;
    ssmd_err err = {0};
    ck_assert_msg(eng_weights_open(path, &w, &err) == SSMD_OK, "%s", err.msg);
    ck_assert_msg(eng_gguf_save(w, eng_weights_config(w), eng_weights_tokenizer(w), ENG_DTYPE_F32, f32_path,
                                NULL, &err) == SSMD_OK, "%s", err.msg);
    eng_weights_close(w);
    float *cpu, *cpu_f32, *cuda;
    const int V = run_file(path, "cpu", NULL, ids, T, next, STEPS, &cpu);
    run_file(f32_path, "cpu", "f32", ids, T, next, STEPS, &cpu_f32);
    for (int b = 0; b < 2; b++) {
        run_file(path, backends[b], NULL, ids, T, next, STEPS, &cuda);
        assert_rows_close(cuda, cpu, ROWS, V, tol, backends[b]);
        ck_assert_int_gt(same_greedy_where_clear(cuda, cpu, ROWS, V, tol), ROWS / 2);
        assert_rows_close(cuda, cpu_f32, ROWS, V, 1e-4, backends[b]);
        free(cuda);
    }
    free(cpu);
    free(cpu_f32);
    unlink(f32_path);
    rmdir(dir);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("emu_model");
    TCase *tc = tcase_create("fixtures");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_emu_matches_reference, 0, N_RUNS);
    tcase_add_loop_test(tc, test_emu_family_conformance, 0, 7);
    tcase_add_loop_test(tc, test_emu_prefill_multi, 0, 2);
    tcase_add_loop_test(tc, test_emu_batched_decode_matches_cpu, 0, N_FIXTURES);
    tcase_add_loop_test(tc, test_cuda_mock_batched_decode_matches_cpu, 0, 2);
    tcase_add_test(tc, test_cuda_mock_bf16_fast_path);
    tcase_add_test(tc, test_cuda_mock_q8_0_model);
    tcase_add_test(tc, test_cuda_quant_mixed_model);
    suite_add_tcase(s, tc);
    return s;
}
