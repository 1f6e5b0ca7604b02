/* test_s4.c - S4D / S4 (DPLR) language models, and DSS-exp / DSS-softmax
 * ones converted to S4D (the paper's convolution kernel = ssmd's recurrence), against the reference
 * fixtures (tests/fixtures/s4/, made by gen_s4.py from an independent
 * float64 PyTorch convolution-view implementation), the equivalences the
 * engine promises (prefill = token-by-token decode, prefill in pieces =
 * at once, batched decode = separate decodes), the three views of one layer
 * (recurrence, chunked scan, convolution with a closed-form Vandermonde
 * kernel) on odd lengths from non-zero states, and config/weight errors. */
#include <check.h>
#include <complex.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cpu/cpu_s4.h"
#include "engine/model.h"
#include "engine/model_config.h"
#include "models/s4.h"
#include "engine/state_pool.h"
#include "kernels/cpu/threadpool.h"
#include "tests/models/reference.h"

static const char *const fixtures[] = {"s4d_minimal", "s4d_block", "s4_legs",
                                       "s4_rank2",    "dss_exp",   "dss_softmax"};
enum { N_FIXTURES = 6 };

static const ref_family family = {"tests/fixtures/s4", fixtures, N_FIXTURES};

/* The reference rows and greedy tokens (ref_check_matches), at 1 and 2
 * threads, at every kernel level. */
START_TEST(test_matches_reference)
{
    const char *name = fixtures[_i % N_FIXTURES];
    ref_family_matches(&family, _i, strncmp(name, "s4_", 3) ? "s4d" : "s4");
}
END_TEST

/* A long odd-length sequence (crossing the 512-token prefill chunk): prefill
 * at once, in two uneven pieces, and token by token agree, states too. */
START_TEST(test_prefill_equivalences)
{
    ref_family_equivalences(&family, _i, 701, 333, 0, 0);
}
END_TEST

/* B sequences decoded together (slots out of order) = each decoded alone;
 * the family has no batched prefill: one by one. */
START_TEST(test_batched_decode_equals_single)
{
    ref_family_equivalences(&family, _i, 0, 0, 11, 5);
}
END_TEST

/* ---- one layer, three views ------------------------------------------- */

/* A random layer (H channels, N2 pairs, rank 0 or 1), built here from a
 * continuous Lambda (Re < 0), B, C, P and dt: ZOH for the diagonal, the
 * bilinear Woodbury step for DPLR (rank 1: M is a scalar). */
typedef struct test_layer {
    bk_s4_layer l;
    float *bufs[8];
    double complex *lam, *b; /* (N2, H) */
    double *dt;              /* (H) */
} test_layer;

static void put(float *plane, size_t pl, size_t o, double complex z)
{
    plane[o] = (float)creal(z);
    plane[pl + o] = (float)cimag(z);
}

static void layer_make(test_layer *t, int H, int N2, int rank, unsigned seed)
{
    unsigned s = seed;
    size_t pl = (size_t)N2 * H;
    memset(t, 0, sizeof *t);
    for (int i = 0; i < 8; i++)
        t->bufs[i] = calloc(2 * pl + H, sizeof(float));
    float *dA = t->bufs[0], *dB = t->bufs[1], *dC = t->bufs[2], *D = t->bufs[3];
    float *Dinv = t->bufs[4], *P = t->bufs[5], *R = t->bufs[6];
    t->lam = calloc(pl, sizeof *t->lam);
    t->b = calloc(pl, sizeof *t->b);
    t->dt = calloc((size_t)H, sizeof *t->dt);
    for (int h = 0; h < H; h++) {
        double dt = exp(-4.0 + 3.0 * (ref_frand(&s) + 1.0) / 2.0); /* [e^-4, e^-1] */
        t->dt[h] = dt;
        D[h] = ref_frand(&s);
        double complex m = 1.0;
        double complex p[64], d[64];
        for (int n = 0; n < N2; n++) {
            size_t o = (size_t)n * H + h;
            double complex lam =
                -0.5 * exp(0.5 * ref_frand(&s)) + I * (3.14159 * n + ref_frand(&s));
            double complex b = ref_frand(&s) + I * ref_frand(&s);
            double complex c = ref_frand(&s) + I * ref_frand(&s);
            t->lam[o] = lam;
            t->b[o] = b;
            put(dC, pl, o, 2.0 * c);
            if (rank == 0) {
                put(dA, pl, o, cexp(dt * lam));
                put(dB, pl, o, b * (cexp(dt * lam) - 1.0) / lam);
            } else {
                p[n] = 0.5 * (ref_frand(&s) + I * ref_frand(&s));
                d[n] = 1.0 / (2.0 / dt - lam);
                put(dA, pl, o, 2.0 / dt + lam);
                put(dB, pl, o, 2.0 * b);
                put(Dinv, pl, o, d[n]);
                put(P, pl, o, p[n]);
                m += 2.0 * creal(conj(p[n]) * d[n] * p[n]);
            }
        }
        for (int n = 0; rank && n < N2; n++)
            put(R, pl, (size_t)n * H + h, conj(p[n]) * d[n] / m);
    }
    t->l = (bk_s4_layer){.H = H, .N2 = N2, .rank = rank, .dA = dA, .dB = dB, .dC = dC, .D = D,
                         .Dinv = rank ? Dinv : NULL, .P = rank ? P : NULL, .R = rank ? R : NULL};
}

static void layer_free(test_layer *t)
{
    for (int i = 0; i < 8; i++)
        free(t->bufs[i]);
    free(t->lam);
    free(t->b);
    free(t->dt);
}

/* Diagonal and DPLR layers, odd sizes and lengths: prefill from a random
 * state = T decode steps = the chunked scan (state and outputs); from a
 * zero state = the convolution with the layer's kernel, which for the
 * diagonal layer also equals the closed-form Vandermonde sum. */
START_TEST(test_views_agree)
{
    const int rank = _i % 2, threads = 1 + _i / 2 % 2, H = 37, N2 = 5, T = 61;
    const cpu_kernels *kern = NULL;
    ck_assert_int_eq(cpu_kernels_choose(ref_use_level(_i / 4), &kern, NULL), SSMD_OK);
    test_layer t;
    layer_make(&t, H, N2, rank, 99 + _i);
    const bk_s4_layer *l = &t.l;
    eng_threadpool *pool = eng_threadpool_create(threads);
    size_t sf = 2 * (size_t)N2 * H;
    float *s0 = malloc(sf * sizeof(float)), *s1 = malloc(sf * sizeof(float));
    float *s2 = malloc(sf * sizeof(float)), *s3 = malloc(sf * sizeof(float));
    float *u = malloc((size_t)T * H * sizeof(float));
    float *y1 = malloc((size_t)T * H * sizeof(float)), *y2 = malloc((size_t)T * H * sizeof(float));
    float *y3 = malloc((size_t)T * H * sizeof(float));
    unsigned s = 5;
    for (size_t i = 0; i < sf; i++)
        s0[i] = ref_frand(&s);
    for (int i = 0; i < T * H; i++)
        u[i] = ref_frand(&s);
    /* recurrence: prefill vs step by step, from s0 */
    memcpy(s1, s0, sf * sizeof(float));
    memcpy(s2, s0, sf * sizeof(float));
    cpu_s4_prefill(kern, pool, l, s1, u, T, y1);
    int32_t slot = 0;
    for (int k = 0; k < T; k++) {
        bk_state_ref st = {.pool = s2, .slot_stride = sf, .ssm_offset = 0, .slots = &slot,
                           .batch = 1};
        cpu_s4_step(kern, pool, l, &st, u + (size_t)k * H, y2 + (size_t)k * H);
    }
    ref_assert_close(y2, y1, (size_t)T * H, 1e-5, "step y");
    ref_assert_close(s2, s1, sf, 1e-5, "step state");
    if (rank == 0) { /* scan, chunks of 8 (odd tail) */
        memcpy(s3, s0, sf * sizeof(float));
        float *scratch = malloc(cpu_s4_scan_scratch_floats(l, T, 8) * sizeof(float));
        cpu_s4_scan(kern, pool, l, s3, u, T, 8, scratch, y3);
        ref_assert_close(y3, y1, (size_t)T * H, 1e-5, "scan y");
        ref_assert_close(s3, s1, sf, 1e-5, "scan state");
        free(scratch);
    }
    /* convolution from a zero state */
    memset(s1, 0, sf * sizeof(float));
    cpu_s4_prefill(kern, pool, l, s1, u, T, y1);
    float *K = malloc((size_t)T * H * sizeof(float));
    cpu_s4_kernel(kern, l, T, K);
    cpu_s4_conv(l, K, u, T, y3);
    ref_assert_close(y3, y1, (size_t)T * H, 1e-5, "conv y");
    if (rank == 0) { /* K_l = 2 Re sum_n C_n B~_n exp(dt lam_n l), in double */
        for (int k = 0; k < T; k++)
            for (int h = 0; h < H; h++) {
                double complex acc = 0.0;
                for (int n = 0; n < N2; n++) {
                    size_t o = (size_t)n * H + h, pl = (size_t)N2 * H;
                    double complex c2 = l->dC[o] + I * l->dC[pl + o];
                    double complex lam = t.lam[o];
                    double complex bt = t.b[o] * (cexp(t.dt[h] * lam) - 1.0) / lam;
                    acc += c2 * bt * cexp(t.dt[h] * lam * k);
                }
                y1[(size_t)k * H + h] = (float)creal(acc);
            }
        ref_assert_close(K, y1, (size_t)T * H, 1e-5, "Vandermonde kernel");
    }
    free(K), free(s0), free(s1), free(s2), free(s3), free(u), free(y1), free(y2), free(y3);
    eng_threadpool_destroy(pool);
    layer_free(&t);
}
END_TEST

/* ---- errors ----------------------------------------------------------- */

START_TEST(test_config)
{
    eng_model_config c;
    ssmd_err err;
    ck_assert_int_eq(ref_load_cfg_text("{\"model_type\":\"s4\",\"d_model\":8,\"n_layer\":2,"
                                   "\"vocab_size\":10,\"d_state\":6,\"rank\":2}", &c, &err), 0);
    ck_assert_str_eq(c.model_type, "s4");
    ck_assert_int_eq(s4_cfg(&c)->rank, 2);
    ck_assert_int_eq(s4_cfg(&c)->bilinear, 1);
    ck_assert_int_eq(c.eos_token_id, -1);
    ck_assert(fabsf(c.norm_eps - 1e-5f) < 1e-12f);
    ck_assert_int_eq(ref_load_cfg_text("{\"model_type\":\"s4d\",\"d_model\":8,\"n_layer\":1,"
                                   "\"vocab_size\":10}", &c, &err), 0);
    ck_assert_int_eq(s4_cfg(&c)->d_state, 64);
    ck_assert_int_eq(s4_cfg(&c)->rank, 0);
    ck_assert_int_eq(s4_cfg(&c)->bilinear, 0);
    static const struct { const char *text, *needle; int code; } bad[] = {
        {"{\"model_type\":\"s4\",\"d_model\":8,\"n_layer\":1,\"vocab_size\":10,"
         "\"discretization\":\"zoh\"}", "discretization", SSMD_EUNSUPPORTED},
        {"{\"model_type\":\"s4d\",\"d_model\":8,\"n_layer\":1,\"vocab_size\":10,\"d_state\":7}",
         "even", SSMD_EFORMAT},
        {"{\"model_type\":\"s4d\",\"n_layer\":1,\"vocab_size\":10}", "d_model", SSMD_EFORMAT},
        {"{\"model_type\":\"s4d\",\"d_model\":8,\"n_layer\":1,\"vocab_size\":10,"
         "\"activation\":\"relu\"}", "activation", SSMD_EUNSUPPORTED},
        {"{\"model_type\":\"s4d\",\"d_model\":8,\"n_layer\":1,\"vocab_size\":10,"
         "\"prenorm\":false}", "prenorm", SSMD_EUNSUPPORTED},
        {"{\"model_type\":\"s4d\",\"d_model\":8,\"n_layer\":1,\"vocab_size\":10,"
         "\"d_state\":\"x\"}", "d_state", SSMD_EFORMAT},
        {"{\"model_type\":\"s4d\",\"d_model\":8,\"n_layer\":1,\"vocab_size\":10,"
         "\"bidirectional\":true}", "'bidirectional' is not a key of the S4 format",
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
    static const struct { const char *fixture, *config, *needle; } cases[] = {
        {"s4_legs", "{\"model_type\":\"s4\",\"d_model\":16,\"n_layer\":2,\"vocab_size\":96,"
                    "\"d_state\":14}", "layers.0.ssm.A"},
        /* the file's own head, and tie_embeddings true */
        {"s4d_block", "{\"model_type\":\"s4d\",\"d_model\":16,\"n_layer\":2,\"vocab_size\":80,"
                      "\"d_state\":12,\"discretization\":\"bilinear\",\"tie_embeddings\":true}",
         "'tie_embeddings' is true but the file has its own 'lm_head.weight'"},
        /* an S4 checkpoint called s4d: its low-rank term has no place */
        {"s4_legs", "{\"model_type\":\"s4d\",\"d_model\":16,\"n_layer\":2,\"vocab_size\":96,"
                    "\"d_state\":16,\"discretization\":\"bilinear\"}",
         "'layers.0.ssm.P' in an s4d model"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_model *m;
        ssmd_err err;
        ck_assert_int_eq(ref_open_with_config("tests/fixtures/s4", cases[i].fixture,
                                              cases[i].config, &m, &err),
                         SSMD_EFORMAT);
        ck_assert_ptr_null(m);
        ck_assert_msg(strstr(err.msg, cases[i].needle), "case %zu: %s", i, err.msg);
    }
}
END_TEST

/* Without tie_embeddings, a file with lm_head.weight uses it (the format's
 * architecture line): s4d_block's reference comes out. */
START_TEST(test_own_head_without_tie_key)
{
    eng_model *m;
    ssmd_err err;
    ck_assert_int_eq(ref_open_with_config("tests/fixtures/s4", "s4d_block",
                                      "{\"model_type\":\"s4d\",\"d_model\":16,\"n_layer\":2,"
                                      "\"vocab_size\":80,\"d_state\":12,\"discretization\":"
                                      "\"bilinear\",\"eos_token_id\":0}", &m, &err), SSMD_OK);
    ref_check_matches(m, "tests/fixtures/s4/s4d_block/expected.json", "s4d_block");
    eng_model_close(m);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("s4");
    TCase *tc = tcase_create("reference");
    tcase_set_timeout(tc, 300);
    const int levels = ref_n_levels();
    tcase_add_loop_test(tc, test_matches_reference, 0, 2 * N_FIXTURES * levels);
    tcase_add_loop_test(tc, test_prefill_equivalences, 0, N_FIXTURES * levels);
    tcase_add_loop_test(tc, test_batched_decode_equals_single, 0, N_FIXTURES * levels);
    tcase_add_loop_test(tc, test_views_agree, 0, 4 * levels);
    tcase_add_test(tc, test_config);
    tcase_add_test(tc, test_weights_mismatch);
    tcase_add_test(tc, test_own_head_without_tie_key);
    suite_add_tcase(s, tc);
    return s;
}
