/* test_mamba2.c - the Mamba-2 family against the float64 reference
 * fixtures of gen_mamba2.py (tests/fixtures/mamba2/: transformers' layout
 * with one and two groups, head_dim != d_state, a dt clamp, f32/f16/bf16,
 * tied and untied heads, and the original layout with norm_before_gate and
 * a padded vocabulary), the conformance checks every family passes, and
 * its config.json: Hugging Face's bare Infinity, and the refusals.  The
 * forward runs at every CPU kernel level the machine has, the prefill in
 * both of the cpu backend's forms (scan and chunked). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/model.h"
#include "engine/model_config.h"
#include "engine/state_pool.h"
#include "models/mamba2.h"
#include "tests/engine/st_writer.h"
#include "tests/models/reference.h"

static const char *const fixtures[] = {"hf_tiny", "hf_groups", "orig_gate"};
enum { N_FIXTURES = 3 };

static eng_model *open_fixture(const char *name, int threads, int max_batch)
{
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/mamba2/%s", name);
    return ref_open(dir, threads, max_batch);
}

/* The cpu backend's two prefill forms (cpu_ssd.h), forced through
 * SSMD_SSD as a user would: the exactness tests run each, at every level
 * (loop index i: form i % 2, then the test's own index i / 2). */
enum { N_FORMS = 2 };
static int use_form(int i)
{
    setenv("SSMD_SSD", i % N_FORMS ? "chunk" : "scan", 1);
    return i / N_FORMS;
}

START_TEST(test_matches_reference)
{
    const int i = use_form(_i);
    const char *name = fixtures[i % N_FIXTURES];
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/mamba2/%s/expected.json", name);
    ref_use_level(i / (2 * N_FIXTURES));
    eng_model *m = open_fixture(name, 1 + i / N_FIXTURES % 2, 4);
    ck_assert_str_eq(eng_model_cfg(m)->model_type, "mamba2");
    ref_check_matches(m, path, name);
    eng_model_close(m);
}
END_TEST

/* 600 tokens (two engine chunks of 512 and 88 rows, each several SSD
 * chunks and a partial one) cut at 277, against token-by-token decode. */
START_TEST(test_prefill_equivalences)
{
    const int i = use_form(_i);
    ref_use_level(i / N_FIXTURES);
    eng_model *m = open_fixture(fixtures[i % N_FIXTURES], 2, 4);
    ref_check_prefill_equivalences(m, 600, 277);
    eng_model_close(m);
}
END_TEST

START_TEST(test_batched_decode_equals_single)
{
    ref_use_level(_i / N_FIXTURES);
    eng_model *m = open_fixture(fixtures[_i % N_FIXTURES], 2, 16);
    ref_check_batched_decode(m, 9, 5);
    ref_check_prefill_multi(m); /* the family has no batched prefill: one by one */
    eng_model_close(m);
}
END_TEST

/* SSMD_SSD: "", "auto", "scan" and "chunk" start the cpu backend; anything
 * else is refused, the message naming the variable, the value and the
 * forms. */
START_TEST(test_form_choice)
{
    static const char *const ok[] = {"", "auto", "scan", "chunk"};
    bk_backend *bk = NULL;
    ssmd_err err = {0};
    for (int i = 0; i < 4; i++) {
        setenv("SSMD_SSD", ok[i], 1);
        ck_assert_int_eq(bk_backend_create("cpu", NULL, &bk, &err), SSMD_OK);
        bk->destroy(bk);
        bk = NULL;
    }
    setenv("SSMD_SSD", "matmul", 1);
    ck_assert_int_eq(bk_backend_create("cpu", NULL, &bk, &err), SSMD_EINVAL);
    ck_assert_ptr_null(bk);
    ck_assert_msg(strstr(err.msg, "SSMD_SSD") && strstr(err.msg, "'matmul'") &&
                  strstr(err.msg, "scan") && strstr(err.msg, "chunk"), "%s", err.msg);
    unsetenv("SSMD_SSD");
}
END_TEST

/* The state a slot holds: conv window (d_conv-1, conv_dim) + (nheads,
 * head_dim, d_state) per layer (proto/state-format.md). */
START_TEST(test_state_size)
{
    eng_model *m = open_fixture("hf_groups", 1, 4);
    const eng_model_config *c = eng_model_cfg(m);
    const mamba2_config *f = mamba2_cfg(c);
    ck_assert_int_eq(f->nheads, 4);
    ck_assert_int_eq(f->head_dim, 6);
    ck_assert_int_eq(f->ngroups, 2);
    ck_assert_float_eq(f->dt_min, 0.05f);
    ck_assert(isinf(f->dt_max));
    size_t conv_dim = 24 + 2 * 2 * 10, per_layer = (3 - 1) * conv_dim + 24 * 10;
    ck_assert_uint_eq(eng_model_state_bytes(m), 2 * per_layer * sizeof(float));
    eng_model_close(m);
}
END_TEST

static char g_root[64];
static void root_setup(void) { stw_mkdtemp(g_root, sizeof g_root, "m2cfg"); }
static void root_teardown(void) { stw_rmtree(g_root); }

static int load_text(const char *text, eng_model_config *c, ssmd_err *err)
{
    char path[128];
    stw_write_text(g_root, "config.json", text);
    snprintf(path, sizeof path, "%s/config.json", g_root);
    memset(err, 0, sizeof *err);
    return eng_model_config_load(path, c, err);
}

/* Hugging Face's non-standard literals parse (outside strings only); the
 * original layout with ssm_cfg.layer "Mamba2" is this family's. */
START_TEST(test_config_reads)
{
    eng_model_config c;
    ssmd_err err;
    ck_assert_int_eq(load_text("{\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_heads\": 8,"
                               " \"head_dim\": 16, \"n_groups\": 2, \"bos_token_id\": [1],"
                               " \"time_step_limit\": [0.0, Infinity], \"name\": \"NaN Infinity\"}",
                               &c, &err), SSMD_OK);
    ck_assert_int_eq(mamba2_cfg(&c)->d_inner, 128);
    ck_assert(isinf(mamba2_cfg(&c)->dt_max));
    ck_assert_int_eq(c.tie_embeddings, 0); /* Mamba2Config's default, unlike Mamba-1's */
    ck_assert_int_eq(load_text("{\"d_model\": 32, \"ssm_cfg\": {\"layer\": \"Mamba2\", \"headdim\": 16,"
                               " \"d_state\": 64, \"dt_limit\": [0.001, 0.1]}}", &c, &err), SSMD_OK);
    ck_assert_ptr_eq(c.arch, &mamba2_arch);
    ck_assert_str_eq(c.model_type, "mamba2"); /* the family, whatever the layout */
    ck_assert_int_eq(mamba2_cfg(&c)->nheads, 4);
    ck_assert_int_eq(mamba2_cfg(&c)->ngroups, 1);
    ck_assert_float_eq_tol(mamba2_cfg(&c)->dt_max, 0.1f, 1e-9f);
}
END_TEST

/* What the engine cannot honour is refused, naming the file and key. */
START_TEST(test_config_refusals)
{
    static const struct {
        const char *text, *want;
        int code;
    } cases[] = {
        {"{\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_heads\": 7, \"head_dim\": 16}",
         "'num_heads' 7 times 'head_dim' 16", SSMD_EFORMAT},
        {"{\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_heads\": 8, \"head_dim\": 16,"
         " \"n_groups\": 3}", "8 heads do not split into 3 groups", SSMD_EFORMAT},
        {"{\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_heads\": 8, \"head_dim\": 16,"
         " \"time_step_limit\": [0.5, 0.1]}", "'time_step_limit'", SSMD_EFORMAT},
        {"{\"model_type\": \"mamba2\", \"time_step_limit\": \"Infinity\"}", "'time_step_limit'",
         SSMD_EFORMAT},
        {"{\"model_type\": \"mamba2\", \"rms_norm\": false}", "'rms_norm' false", SSMD_EUNSUPPORTED},
        {"{\"model_type\": \"mamba2\", \"hidden_act\": \"gelu\"}", "'hidden_act'", SSMD_EUNSUPPORTED},
        {"{\"d_model\": 32, \"ssm_cfg\": {\"layer\": \"Mamba2\", \"headdim\": 24}}",
         "not a multiple of 'ssm_cfg.headdim' 24", SSMD_EFORMAT},
        {"{\"d_model\": 32, \"ssm_cfg\": {\"layer\": \"Mamba2\", \"headdim\": 16, \"D_has_hdim\": true}}",
         "'ssm_cfg.D_has_hdim'", SSMD_EUNSUPPORTED},
        {"{\"d_model\": 32, \"ssm_cfg\": {\"layer\": \"Mamba2\", \"headdim\": 16, \"d_ssm\": 16}}",
         "'ssm_cfg.d_ssm'", SSMD_EUNSUPPORTED},
        {"{\"d_model\": 32, \"d_intermediate\": 64, \"ssm_cfg\": {\"layer\": \"Mamba2\"}}",
         "'d_intermediate' 64", SSMD_EUNSUPPORTED},
        {"{\"model_type\": \"mamba2\", \"name\": Infinit}", "bad JSON", SSMD_EFORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_model_config c;
        ssmd_err err;
        int rc = load_text(cases[i].text, &c, &err);
        ck_assert_msg(rc == cases[i].code, "case %zu: rc %d (%s)", i, rc, err.msg);
        ck_assert_msg(strstr(err.msg, cases[i].want) && strstr(err.msg, "config.json"),
                      "case %zu: \"%s\" lacks \"%s\"", i, err.msg, cases[i].want);
    }
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("mamba2");
    TCase *tc = tcase_create("reference");
    tcase_set_timeout(tc, 300);
    const int levels = ref_n_levels();
    tcase_add_loop_test(tc, test_matches_reference, 0, N_FORMS * 2 * N_FIXTURES * levels);
    tcase_add_loop_test(tc, test_prefill_equivalences, 0, N_FORMS * N_FIXTURES * levels);
    tcase_add_loop_test(tc, test_batched_decode_equals_single, 0, N_FIXTURES * levels);
    tcase_add_test(tc, test_state_size);
    tcase_add_test(tc, test_form_choice);
    suite_add_tcase(s, tc);
    TCase *cfg = tcase_create("config");
    tcase_add_unchecked_fixture(cfg, root_setup, root_teardown);
    tcase_add_test(cfg, test_config_reads);
    tcase_add_test(cfg, test_config_refusals);
    suite_add_tcase(s, cfg);
    return s;
}
