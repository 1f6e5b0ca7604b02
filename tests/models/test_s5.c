/* test_s5.c - S5 language models against the reference fixtures
 * (tests/fixtures/s5/, made by gen_s5.py from an independent float64 numpy
 * implementation of the paper, itself checked recurrence = convolution),
 * at every CPU kernel level and 1-2 threads; the equivalences the engine
 * promises (prefill = prefill in pieces = token-by-token decode, batched
 * decode = separate decodes, sessions continued and forked through the
 * state pool); the recurrence's views (prefill walk, decode step, chunked
 * parallel scan) on odd sizes from non-zero states; and config / weight
 * errors named. */
#include <check.h>
#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"
#include "engine/model_config.h"
#include "engine/state_pool.h"
#include "engine/tensor.h"
#include "kernels/cpu/cpu_s5.h"
#include "kernels/cpu/threadpool.h"
#include "models/s5.h"
#include "tests/models/reference.h"

static const char *const fixtures[] = {"s5_zoh_gelu", "s5_bilinear_half_glu2", "s5_full_glu",
                                       "s5_half_glu1"};
enum { N_FIXTURES = 4 };

static const ref_family family = {"tests/fixtures/s5", fixtures, N_FIXTURES};

/* The reference rows and greedy tokens within 1e-4 of each row's largest
 * logit (ref_check_matches), at 1 and 2 threads, at every kernel level. */
START_TEST(test_matches_reference)
{
    ref_family_matches(&family, _i, "s5");
}
END_TEST

/* A long odd-length sequence (crossing the 512-token prefill chunk, and
 * long enough for the time-chunked scan at 2 threads): prefill at once, in
 * two uneven pieces, and token by token agree, states too. */
START_TEST(test_prefill_equivalences)
{
    ref_family_equivalences(&family, _i, 701, 333, 0, 0);
}
END_TEST

/* B sequences decoded together (slots out of order) = each decoded alone;
 * prefill of several sequences = each alone. */
START_TEST(test_batched_decode_equals_single)
{
    ref_family_equivalences(&family, _i, 0, 0, 11, 5);
}
END_TEST

/* A session through the state pool: the state after a prompt, copied to
 * another slot (a fork), continues there exactly as in its own slot, and
 * the state is 2 * P floats per layer. */
START_TEST(test_session_fork)
{
    eng_model *m = ref_open_fixture(&family, "s5_bilinear_half_glu2", 1, 4);
    const int V = eng_model_n_vocab(m);
    eng_state_pool *pool;
    ssmd_err err;
    ck_assert_int_eq(eng_state_pool_create(m, 3, &pool, &err), 0);
    const int32_t prompt[] = {3, 14, 15, 9, 26, 5}, more[] = {35, 8, 9, 7};
    float *a = malloc(sizeof(float) * V), *b = malloc(sizeof(float) * V);
    ck_assert_int_eq(eng_model_prefill(m, pool, 2, prompt, 6, NULL, 0, &err), 0);
    eng_state_slot_copy(pool, 0, 2);
    ck_assert_int_eq(eng_model_prefill(m, pool, 2, more, 4, a, 0, &err), 0);
    ck_assert_int_eq(eng_model_prefill(m, pool, 0, more, 4, b, 0, &err), 0);
    assert_rows_close(b, a, 1, V, 0.0, "forked session");
    assert_states_close(pool, 0, 2, 0.0);
    /* the whole history at once gives the same continuation */
    int32_t all[10];
    memcpy(all, prompt, sizeof prompt);
    memcpy(all + 6, more, sizeof more);
    eng_state_slot_zero(pool, 1);
    ck_assert_int_eq(eng_model_prefill(m, pool, 1, all, 10, b, 0, &err), 0);
    assert_rows_close(b, a, 1, V, 1e-5, "history at once");
    assert_states_close(pool, 1, 2, 1e-5);
    free(a), free(b);
    eng_state_pool_destroy(pool);
    eng_model_close(m);
}
END_TEST

/* ---- the recurrence's views ------------------------------------------- */

/* P states (odd), T steps (odd): from a random state, prefill (1 thread,
 * and 2 threads splitting the states, in place) = T decode steps = the
 * chunked scan (chunks of 7, and of 1), outputs and final states (the
 * model tests reach the scan through prefill: few states, long prompts);
 * and the outputs equal the
 * convolution view x_t = lambda^(t+1) x_0 + sum_k lambda^k v_{t-k} in double. */
START_TEST(test_views_agree)
{
    const int P = 37, T = 301, row = 2 * P;
    unsigned s = 11 + _i;
    float *lam = malloc(sizeof(float) * row), *s0 = malloc(sizeof(float) * row);
    float *v = malloc(sizeof(float) * T * row);
    float *states[4], *xs[4];
    for (int k = 0; k < 4; k++) {
        states[k] = malloc(sizeof(float) * row);
        xs[k] = malloc(sizeof(float) * T * row);
    }
    for (int p = 0; p < P; p++) { /* |lambda| in [0.9, 1) so the sums stay alive over T */
        double r = 0.9 + 0.0999 * (ref_frand(&s) + 1) / 2, th = 3.0 * ref_frand(&s);
        lam[p] = (float)(r * cos(th));
        lam[P + p] = (float)(r * sin(th));
    }
    for (int i = 0; i < row; i++)
        s0[i] = ref_frand(&s);
    for (int i = 0; i < T * row; i++)
        v[i] = ref_frand(&s);
    eng_threadpool *pool1 = eng_threadpool_create(1), *pool2 = eng_threadpool_create(2);
    memcpy(states[0], s0, sizeof(float) * row);
    cpu_s5_prefill(pool1, lam, P, states[0], v, T, xs[0]);
    memcpy(states[1], s0, sizeof(float) * row);
    memcpy(xs[1], v, sizeof(float) * T * row); /* in place, as the model runs it */
    cpu_s5_prefill(pool2, lam, P, states[1], xs[1], T, xs[1]);
    memcpy(states[2], s0, sizeof(float) * row);
    int32_t slot = 0;
    bk_state_ref st = {.pool = states[2], .slot_stride = (size_t)row, .slots = &slot, .batch = 1};
    for (int t = 0; t < T; t++)
        cpu_s5_step(pool1, lam, P, &st, v + (size_t)t * row, xs[2] + (size_t)t * row);
    const int chunk = _i ? 1 : 7;
    memcpy(states[3], s0, sizeof(float) * row);
    float *scratch = malloc(sizeof(float) * cpu_s5_scan_scratch_floats(P, T, chunk));
    cpu_s5_scan(pool2, lam, P, states[3], v, T, chunk, scratch, xs[3]);
    for (int k = 1; k < 4; k++) {
        ref_assert_close(xs[k], xs[0], (size_t)T * row, 2e-5, "outputs");
        ref_assert_close(states[k], states[0], (size_t)row, 2e-5, "state");
    }
    /* the convolution view, in double: x_t = lambda^(t+1) x_0 +
     * sum_{k<=t} lambda^k v_{t-k}, the powers of lambda as the kernel */
    float *want = malloc(sizeof(float) * T * row);
    double complex *pw = malloc(sizeof(double complex) * (T + 1));
    for (int p = 0; p < P; p++) {
        const double complex l = lam[p] + I * lam[P + p], x0 = s0[p] + I * s0[P + p];
        pw[0] = 1.0;
        for (int k = 1; k <= T; k++)
            pw[k] = pw[k - 1] * l;
        for (int t = 0; t < T; t++) {
            double complex x = pw[t + 1] * x0;
            for (int k = 0; k <= t; k++)
                x += pw[k] * (v[(size_t)(t - k) * row + p] + I * v[(size_t)(t - k) * row + P + p]);
            want[(size_t)t * row + p] = (float)creal(x);
            want[(size_t)t * row + P + p] = (float)cimag(x);
        }
    }
    free(pw);
    ref_assert_close(xs[0], want, (size_t)T * row, 2e-5, "convolution");
    free(want), free(scratch), free(lam), free(s0), free(v);
    for (int k = 0; k < 4; k++)
        free(states[k]), free(xs[k]);
    eng_threadpool_destroy(pool1);
    eng_threadpool_destroy(pool2);
}
END_TEST

/* ---- errors ----------------------------------------------------------- */

#define S5_BASE                                                                       \
    "{\"model_type\":\"s5\",\"d_model\":8,\"n_layer\":1,\"vocab_size\":10,\"ssm_size\":4"

START_TEST(test_config)
{
    eng_model_config c;
    ssmd_err err;
    ck_assert_int_eq(ref_load_cfg_text(S5_BASE "}", &c, &err), 0);
    ck_assert_str_eq(c.model_type, "s5");
    ck_assert_int_eq(s5_cfg(&c)->ssm_size, 4);
    ck_assert_int_eq(s5_cfg(&c)->conj_sym, 1);
    ck_assert_int_eq(s5_cfg(&c)->bilinear, 0);
    ck_assert_int_eq(s5_cfg(&c)->act, S5_ACT_GELU);
    ck_assert_int_eq(s5_cfg(&c)->gelu_tanh, 1);
    ck_assert(fabsf(c.norm_eps - 1e-6f) < 1e-12f);
    ck_assert_int_eq(ref_load_cfg_text(S5_BASE ",\"activation\":\"half_glu2\",\"conj_sym\":false,"
                                       "\"discretization\":\"bilinear\"}", &c, &err), 0);
    ck_assert_int_eq(s5_cfg(&c)->act, S5_ACT_HALF_GLU2);
    ck_assert_int_eq(s5_cfg(&c)->conj_sym, 0);
    ck_assert_int_eq(s5_cfg(&c)->bilinear, 1);
    static const struct { const char *text, *needle; int code; } bad[] = {
        {"{\"model_type\":\"s5\",\"d_model\":8,\"n_layer\":1,\"vocab_size\":10}", "ssm_size",
         SSMD_EFORMAT},
        {S5_BASE ",\"discretization\":\"euler\"}", "discretization", SSMD_EUNSUPPORTED},
        {S5_BASE ",\"activation\":\"relu\"}", "activation", SSMD_EUNSUPPORTED},
        {S5_BASE ",\"bidirectional\":true}", "bidirectional", SSMD_EUNSUPPORTED},
        {S5_BASE ",\"batchnorm\":true}", "batchnorm", SSMD_EUNSUPPORTED},
        {S5_BASE ",\"prenorm\":false}", "prenorm", SSMD_EUNSUPPORTED},
        {S5_BASE ",\"ssm_size\":0}", "ssm_size", SSMD_EFORMAT},
        {S5_BASE ",\"clip_eigs\":true}", "'clip_eigs' is not a key of the S5 format",
         SSMD_EUNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = ref_load_cfg_text(bad[i].text, &c, &err);
        ck_assert_msg(rc == bad[i].code, "case %zu: rc %d (%s)", i, rc, err.msg);
        ck_assert_msg(strstr(err.msg, bad[i].needle), "case %zu: %s", i, err.msg);
    }
}
END_TEST

/* A config that disagrees with the weights fails to load, naming the
 * tensor; nothing leaks (ASan). */
START_TEST(test_weights_mismatch)
{
#define ZOH "{\"model_type\":\"s5\",\"d_model\":16,\"n_layer\":2,\"vocab_size\":48,"
    static const struct { const char *fixture, *config, *needle; } cases[] = {
        {"s5_zoh_gelu", ZOH "\"ssm_size\":9}", "layers.0.ssm.Lambda_re"},
        /* a GLU without its gate weights */
        {"s5_zoh_gelu", ZOH "\"ssm_size\":8,\"activation\":\"half_glu1\"}",
         "layers.0.out2.weight"},
        /* a tensor the config does not use is refused by name */
        {"s5_full_glu", "{\"model_type\":\"s5\",\"d_model\":8,\"n_layer\":3,\"vocab_size\":40,"
                        "\"ssm_size\":6,\"activation\":\"half_glu1\"}",
         "tensor 'layers.0.out1.bias' is not part of an S5 model"},
        {"s5_full_glu", "{\"model_type\":\"s5\",\"d_model\":8,\"n_layer\":2,\"vocab_size\":40,"
                        "\"ssm_size\":6,\"activation\":\"full_glu\"}",
         "is not part of an S5 model with 2 layers"},
        {"s5_full_glu", "{\"model_type\":\"s5\",\"d_model\":8,\"n_layer\":3,\"vocab_size\":40,"
                        "\"ssm_size\":6,\"activation\":\"full_glu\",\"tie_embeddings\":true}",
         "'tie_embeddings' is true but the file has its own 'lm_head.weight'"},
    };
#undef ZOH
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_model *m;
        ssmd_err err;
        int rc = ref_open_with_config("tests/fixtures/s5", cases[i].fixture, cases[i].config, &m,
                                      &err);
        ck_assert_msg(rc == SSMD_EFORMAT, "case %zu: rc %d (%s)", i, rc, err.msg);
        ck_assert_ptr_null(m);
        ck_assert_msg(strstr(err.msg, cases[i].needle), "case %zu: %s", i, err.msg);
    }
}
END_TEST

/* A backend without the S5 table (the CUDA backend's case) refuses the
 * model by name at load, before touching anything. */
START_TEST(test_backend_without_s5)
{
    const char *dir = "tests/fixtures/s5/s5_zoh_gelu";
    eng_model_config c;
    eng_weights *w;
    bk_backend *bk;
    ssmd_err err;
    ck_assert_int_eq(eng_model_config_load("tests/fixtures/s5/s5_zoh_gelu/config.json", &c, &err),
                     SSMD_OK);
    ck_assert_int_eq(eng_weights_open(dir, &w, &err), SSMD_OK);
    ck_assert_int_eq(bk_backend_create("cpu", NULL, &bk, &err), SSMD_OK);
    bk_backend lacking = *bk; /* only the table is read before the refusal */
    lacking.s5 = NULL;
    void *out = NULL;
    ck_assert_int_eq(c.arch->load(&c, w, &lacking, 4, &out, &err), SSMD_EUNSUPPORTED);
    ck_assert_ptr_null(out);
    ck_assert_msg(strstr(err.msg, "has no S5 ops (model_type 's5')"), "%s", err.msg);
    bk->destroy(bk);
    eng_weights_close(w);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("s5");
    TCase *tc = tcase_create("reference");
    tcase_set_timeout(tc, 300);
    const int levels = ref_n_levels();
    tcase_add_loop_test(tc, test_matches_reference, 0, 2 * N_FIXTURES * levels);
    tcase_add_loop_test(tc, test_prefill_equivalences, 0, N_FIXTURES * levels);
    tcase_add_loop_test(tc, test_batched_decode_equals_single, 0, N_FIXTURES * levels);
    tcase_add_test(tc, test_session_fork);
    tcase_add_loop_test(tc, test_views_agree, 0, 2);
    tcase_add_test(tc, test_config);
    tcase_add_test(tc, test_weights_mismatch);
    tcase_add_test(tc, test_backend_without_s5);
    suite_add_tcase(s, tc);
    return s;
}
