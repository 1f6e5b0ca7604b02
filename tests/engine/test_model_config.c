/* test_model_config.c - engine/model_config.c: Hugging Face and original
 * state-spaces configs read by the Mamba-1 family (models/mamba1.c), the
 * family registry, defaults, derived values (d_inner, dt_rank), and
 * rejection of bad JSON, wrong types and absurd values with a message that
 * names the file and the key.  Expected values of the HF cases were computed
 * with transformers 4.44.2 `MambaConfig(**kwargs)`, the reference.
 */
#include <check.h>
#include <math.h>
#include <string.h>

#include "engine/model_config.h"
#include "models/mamba1.h"
#include "tests/engine/st_writer.h"

/* Mamba-1's own numbers of a loaded config. */
#define M1(c) (*mamba1_cfg(&(c)))

static char g_root[64]; /* scratch dir of this test case (unchecked fixture) */

static void root_setup(void) { stw_mkdtemp(g_root, sizeof g_root, "cfg"); }
static void root_teardown(void) { stw_rmtree(g_root); }

#define ck_assert_msg_has(err, s)                                                       \
    ck_assert_msg(strstr((err).msg, (s)) != NULL, "message \"%s\" lacks \"%s\"", (err).msg, (s))

/* Writes text as config.json in the scratch dir and loads it. */
static int load_text(const char *text, eng_model_config *cfg, ssmd_err *err)
{
    stw_write_text(g_root, "config.json", text);
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", g_root);
    memset(err, 0, sizeof *err);
    return eng_model_config_load(path, cfg, err);
}

static eng_model_config load_ok(const char *text)
{
    eng_model_config c;
    ssmd_err err;
    memset(&c, 0x7f, sizeof c);
    int rc = load_text(text, &c, &err);
    ck_assert_msg(rc == SSMD_OK, "load failed: %s", err.msg);
    return c;
}

/* Loads text expecting `code`; the message must name config.json. */
static ssmd_err load_fails(const char *text, int code)
{
    eng_model_config c;
    ssmd_err err;
    memset(&c, 0, sizeof c);
    c.d_model = 12345;
    int rc = load_text(text, &c, &err);
    ck_assert_msg(rc == code, "rc %d (%s), expected %d", rc, err.msg, code);
    ck_assert_int_eq(err.code, code);
    ck_assert_int_eq(c.d_model, 12345); /* untouched on error */
    ck_assert_msg_has(err, "config.json");
    return err;
}

/* state-spaces/mamba-130m-hf's config.json. */
static const char k_hf_130m[] =
    "{\n"
    "  \"architectures\": [\"MambaForCausalLM\"],\n"
    "  \"bos_token_id\": 0, \"conv_kernel\": 4, \"eos_token_id\": 0, \"expand\": 2,\n"
    "  \"fused_add_norm\": true, \"hidden_act\": \"silu\", \"hidden_size\": 768,\n"
    "  \"initializer_range\": 0.1, \"intermediate_size\": 1536,\n"
    "  \"layer_norm_epsilon\": 1e-05, \"model_type\": \"mamba\", \"n_layer\": 24,\n"
    "  \"num_hidden_layers\": 24, \"pad_token_id\": 0, \"pad_vocab_size_multiple\": 8,\n"
    "  \"rescale_prenorm_residual\": false, \"residual_in_fp32\": true, \"rms_norm\": true,\n"
    "  \"state_size\": 16, \"time_step_floor\": 0.0001, \"time_step_init_scheme\": \"random\",\n"
    "  \"time_step_max\": 0.1, \"time_step_min\": 0.001, \"time_step_rank\": 48,\n"
    "  \"time_step_scale\": 1.0, \"torch_dtype\": \"float32\",\n"
    "  \"transformers_version\": \"4.39.0.dev0\", \"use_bias\": false, \"use_cache\": true,\n"
    "  \"use_conv_bias\": true, \"vocab_size\": 50280\n"
    "}\n";

START_TEST(test_hf_130m)
{
    eng_model_config c = load_ok(k_hf_130m);
    ck_assert_str_eq(c.model_type, "mamba");
    ck_assert_int_eq(M1(c).layout, MAMBA1_LAYOUT_HF);
    ck_assert_int_eq(c.d_model, 768);
    ck_assert_int_eq(c.n_layer, 24);
    ck_assert_int_eq(c.vocab_size, 50280);
    ck_assert_int_eq(M1(c).d_state, 16);
    ck_assert_int_eq(M1(c).d_inner, 1536);
    ck_assert_int_eq(M1(c).d_conv, 4);
    ck_assert_int_eq(M1(c).dt_rank, 48);
    ck_assert_int_eq(M1(c).use_bias, 0);
    ck_assert_int_eq(M1(c).use_conv_bias, 1);
    ck_assert_int_eq(c.tie_embeddings, 1);
    ck_assert(c.norm_eps == 1e-5f);
    ck_assert_int_eq(c.bos_token_id, 0);
    ck_assert_int_eq(c.eos_token_id, 0);
}
END_TEST

/* MambaConfig() -> 50280 768 32 16 1536 4 48 False True True 1e-05 0 0 */
START_TEST(test_hf_defaults)
{
    eng_model_config c = load_ok("{\"model_type\": \"mamba\"}");
    ck_assert_int_eq(c.vocab_size, 50280);
    ck_assert_int_eq(c.d_model, 768);
    ck_assert_int_eq(c.n_layer, 32);
    ck_assert_int_eq(M1(c).d_state, 16);
    ck_assert_int_eq(M1(c).d_inner, 1536);
    ck_assert_int_eq(M1(c).d_conv, 4);
    ck_assert_int_eq(M1(c).dt_rank, 48);
    ck_assert_int_eq(M1(c).use_bias, 0);
    ck_assert_int_eq(M1(c).use_conv_bias, 1);
    ck_assert_int_eq(c.tie_embeddings, 1);
    ck_assert(c.norm_eps == 1e-5f);
    ck_assert_int_eq(c.bos_token_id, 0);
    ck_assert_int_eq(c.eos_token_id, 0);
}
END_TEST

START_TEST(test_hf_derived)
{
    /* hidden_size=65 -> intermediate 130, time_step_rank auto = ceil(65/16) = 5 */
    eng_model_config c = load_ok("{\"model_type\": \"mamba\", \"hidden_size\": 65, "
                                 "\"num_hidden_layers\": 3, \"vocab_size\": 100, "
                                 "\"time_step_rank\": \"auto\"}");
    ck_assert_int_eq(c.d_model, 65);
    ck_assert_int_eq(c.n_layer, 3);
    ck_assert_int_eq(c.vocab_size, 100);
    ck_assert_int_eq(M1(c).d_inner, 130);
    ck_assert_int_eq(M1(c).dt_rank, 5);
    /* expand=1.5 -> int(96.0); explicit rank 7; every flag flipped */
    c = load_ok("{\"model_type\": \"mamba\", \"hidden_size\": 64, \"expand\": 1.5, "
                "\"time_step_rank\": 7, \"state_size\": 8, \"conv_kernel\": 3, "
                "\"use_bias\": true, \"use_conv_bias\": false, \"tie_word_embeddings\": false, "
                "\"layer_norm_epsilon\": 1e-6, \"eos_token_id\": 5, \"bos_token_id\": 4}");
    ck_assert_int_eq(M1(c).d_inner, 96);
    ck_assert_int_eq(M1(c).dt_rank, 7);
    ck_assert_int_eq(M1(c).d_state, 8);
    ck_assert_int_eq(M1(c).d_conv, 3);
    ck_assert_int_eq(M1(c).use_bias, 1);
    ck_assert_int_eq(M1(c).use_conv_bias, 0);
    ck_assert_int_eq(c.tie_embeddings, 0);
    ck_assert(c.norm_eps == 1e-6f);
    ck_assert_int_eq(c.bos_token_id, 4);
    ck_assert_int_eq(c.eos_token_id, 5);
    /* int(1.5 * 65) = int(97.5) = 97: truncation, as Python's int() */
    c = load_ok("{\"model_type\": \"mamba\", \"hidden_size\": 65, \"expand\": 1.5}");
    ck_assert_int_eq(M1(c).d_inner, 97);
    /* a saved intermediate_size wins over expand: 100, not 128 */
    c = load_ok("{\"model_type\": \"mamba\", \"hidden_size\": 64, \"expand\": 2, "
                "\"intermediate_size\": 100}");
    ck_assert_int_eq(M1(c).d_inner, 100);
    ck_assert_int_eq(M1(c).dt_rank, 4);
    /* token ids: a list (first counts), or null (unknown) */
    c = load_ok("{\"model_type\": \"mamba\", \"eos_token_id\": [2, 3], \"bos_token_id\": null}");
    ck_assert_int_eq(c.eos_token_id, 2);
    ck_assert_int_eq(c.bos_token_id, -1);
    /* integral reals are integers, as in Python */
    c = load_ok("{\"model_type\": \"mamba\", \"hidden_size\": 32.0}");
    ck_assert_int_eq(c.d_model, 32);
    ck_assert_int_eq(M1(c).dt_rank, 2);
}
END_TEST

/* state-spaces/mamba-130m's config.json (original layout). */
START_TEST(test_original)
{
    eng_model_config c = load_ok(
        "{\"d_model\": 768, \"n_layer\": 24, \"vocab_size\": 50277, \"ssm_cfg\": {},\n"
        " \"rms_norm\": true, \"residual_in_fp32\": true, \"fused_add_norm\": true,\n"
        " \"pad_vocab_size_multiple\": 8}");
    ck_assert_str_eq(c.model_type, "mamba");
    ck_assert_int_eq(M1(c).layout, MAMBA1_LAYOUT_ORIGINAL);
    ck_assert_int_eq(c.d_model, 768);
    ck_assert_int_eq(c.n_layer, 24);
    ck_assert_int_eq(c.vocab_size, 50277); /* as given; embedding rows are padded to 50280 */
    ck_assert_int_eq(M1(c).d_state, 16);
    ck_assert_int_eq(M1(c).d_inner, 1536);
    ck_assert_int_eq(M1(c).d_conv, 4);
    ck_assert_int_eq(M1(c).dt_rank, 48);
    ck_assert_int_eq(M1(c).use_bias, 0);
    ck_assert_int_eq(M1(c).use_conv_bias, 1);
    ck_assert_int_eq(c.tie_embeddings, 1);
    ck_assert(c.norm_eps == 1e-5f);
    ck_assert_int_eq(c.eos_token_id, -1);

    c = load_ok("{\"d_model\": 100, \"n_layer\": 2, \"vocab_size\": 300, \"tie_embeddings\": false,"
                " \"ssm_cfg\": {\"d_state\": 4, \"d_conv\": 2, \"expand\": 3, \"dt_rank\": 9,"
                " \"bias\": true, \"conv_bias\": false, \"layer\": \"Mamba1\"}}");
    ck_assert_int_eq(M1(c).d_inner, 300);
    ck_assert_int_eq(M1(c).d_state, 4);
    ck_assert_int_eq(M1(c).d_conv, 2);
    ck_assert_int_eq(M1(c).dt_rank, 9);
    ck_assert_int_eq(M1(c).use_bias, 1);
    ck_assert_int_eq(M1(c).use_conv_bias, 0);
    ck_assert_int_eq(c.tie_embeddings, 0);
    c = load_ok("{\"d_model\": 100, \"ssm_cfg\": {\"dt_rank\": \"auto\"}}");
    ck_assert_int_eq(M1(c).dt_rank, 7); /* ceil(100 / 16) */
}
END_TEST

START_TEST(test_bad_json)
{
    ssmd_err err = load_fails("{\n  \"model_type\": \"mamba\",\n  \"hidden_size\": 768,,\n}", SSMD_EFORMAT);
    ck_assert_msg_has(err, "bad JSON at line 3");
    err = load_fails("", SSMD_EFORMAT);
    ck_assert_msg_has(err, "bad JSON");
    err = load_fails("[1]", SSMD_EFORMAT);
    ck_assert_msg_has(err, "not a JSON object");
    err = load_fails("{\"model_type\": \"mamba\", \"hidden_size\": 1, \"hidden_size\": 2}",
                     SSMD_EFORMAT);
    ck_assert_msg_has(err, "duplicate");
}
END_TEST

START_TEST(test_missing_file)
{
    eng_model_config c;
    ssmd_err err;
    char path[128];
    snprintf(path, sizeof path, "%s/nothere/config.json", g_root);
    ck_assert_int_eq(eng_model_config_load(path, &c, &err), SSMD_EIO);
    ck_assert_msg_has(err, path);
    ck_assert_msg_has(err, "No such file");
}
END_TEST

START_TEST(test_wrong_types)
{
    struct {
        const char *text, *want;
    } cases[] = {
        {"{\"model_type\": \"mamba\", \"hidden_size\": \"768\"}", "'hidden_size' must be an integer"},
        {"{\"model_type\": \"mamba\", \"hidden_size\": 7.5}", "'hidden_size' must be an integer"},
        {"{\"model_type\": \"mamba\", \"state_size\": true}", "'state_size' must be an integer"},
        {"{\"model_type\": \"mamba\", \"num_hidden_layers\": null}",
         "'num_hidden_layers' must be an integer"},
        {"{\"model_type\": \"mamba\", \"vocab_size\": [1]}", "'vocab_size' must be an integer"},
        {"{\"model_type\": \"mamba\", \"conv_kernel\": {}}", "'conv_kernel' must be an integer"},
        {"{\"model_type\": \"mamba\", \"intermediate_size\": \"x\"}",
         "'intermediate_size' must be an integer"},
        {"{\"model_type\": \"mamba\", \"expand\": \"2\"}", "'expand' must be a number"},
        {"{\"model_type\": \"mamba\", \"time_step_rank\": \"big\"}",
         "'time_step_rank' must be \"auto\" or an integer"},
        {"{\"model_type\": \"mamba\", \"time_step_rank\": false}",
         "'time_step_rank' must be \"auto\" or an integer"},
        {"{\"model_type\": \"mamba\", \"use_bias\": 1}", "'use_bias' must be a boolean"},
        {"{\"model_type\": \"mamba\", \"use_conv_bias\": \"true\"}", "'use_conv_bias' must be a boolean"},
        {"{\"model_type\": \"mamba\", \"tie_word_embeddings\": 0}",
         "'tie_word_embeddings' must be a boolean"},
        {"{\"model_type\": \"mamba\", \"layer_norm_epsilon\": \"1e-5\"}",
         "'layer_norm_epsilon' must be a number"},
        {"{\"model_type\": \"mamba\", \"eos_token_id\": \"0\"}", "'eos_token_id' must be an integer"},
        {"{\"model_type\": \"mamba\", \"eos_token_id\": []}", "'eos_token_id' is an empty list"},
        {"{\"model_type\": 3}", "'model_type' must be a string"},
        {"{\"model_type\": \"mamba\", \"hidden_act\": 1}", "'hidden_act' must be a string"},
        {"{\"d_model\": \"768\"}", "'d_model' must be an integer"},
        {"{\"d_model\": 768, \"n_layer\": 2.5}", "'n_layer' must be an integer"},
        {"{\"d_model\": 768, \"ssm_cfg\": []}", "'ssm_cfg' must be an object"},
        {"{\"d_model\": 768, \"ssm_cfg\": {\"d_state\": \"16\"}}", "'ssm_cfg.d_state' must be an integer"},
        {"{\"d_model\": 768, \"ssm_cfg\": {\"dt_rank\": \"x\"}}", "'ssm_cfg.dt_rank' must be"},
        {"{\"d_model\": 768, \"ssm_cfg\": {\"conv_bias\": 1}}", "'ssm_cfg.conv_bias' must be a boolean"},
        {"{\"d_model\": 768, \"rms_norm\": \"yes\"}", "'rms_norm' must be a boolean"},
        {"{\"d_model\": 768, \"tie_embeddings\": 1}", "'tie_embeddings' must be a boolean"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ssmd_err err = load_fails(cases[i].text, SSMD_EFORMAT);
        ck_assert_msg_has(err, cases[i].want);
    }
}
END_TEST

START_TEST(test_bad_values)
{
    struct {
        const char *text, *want;
        int code;
    } cases[] = {
        {"{\"model_type\": \"mamba\", \"hidden_size\": 0}", "'hidden_size' is 0", SSMD_EFORMAT},
        {"{\"model_type\": \"mamba\", \"num_hidden_layers\": -2}", "'num_hidden_layers' is -2",
         SSMD_EFORMAT},
        {"{\"model_type\": \"mamba\", \"vocab_size\": 2097152}", "'vocab_size' is 2097152",
         SSMD_EFORMAT},
        {"{\"model_type\": \"mamba\", \"state_size\": 99999999999999}", "'state_size'", SSMD_EFORMAT},
        {"{\"model_type\": \"mamba\", \"conv_kernel\": 0}", "'conv_kernel' is 0", SSMD_EFORMAT},
        {"{\"model_type\": \"mamba\", \"time_step_rank\": 0}", "'time_step_rank' is 0", SSMD_EFORMAT},
        {"{\"model_type\": \"mamba\", \"expand\": 0}", "'expand'", SSMD_EFORMAT},
        {"{\"model_type\": \"mamba\", \"expand\": 0.001, \"hidden_size\": 64}", "'expand'",
         SSMD_EFORMAT},
        {"{\"model_type\": \"mamba\", \"expand\": 100000, \"hidden_size\": 1024}", "'expand'",
         SSMD_EFORMAT},
        {"{\"model_type\": \"mamba\", \"intermediate_size\": -1}", "'intermediate_size' is -1",
         SSMD_EFORMAT},
        {"{\"model_type\": \"mamba\", \"layer_norm_epsilon\": 0}", "'layer_norm_epsilon' is 0",
         SSMD_EFORMAT},
        {"{\"model_type\": \"mamba\", \"layer_norm_epsilon\": -1e-5}", "'layer_norm_epsilon'",
         SSMD_EFORMAT},
        {"{\"model_type\": \"mamba\", \"eos_token_id\": -5}", "'eos_token_id' is -5", SSMD_EFORMAT},
        /* d_inner * d_state overflows int */
        {"{\"model_type\": \"mamba\", \"intermediate_size\": 1048576, \"state_size\": 4096}",
         "inner width 1048576 ('intermediate_size') times 'state_size' 4096 overflows",
         SSMD_EFORMAT},
        {"{\"d_model\": 1024, \"ssm_cfg\": {\"expand\": 1024, \"d_conv\": 4096}}",
         "inner width 1048576 ('ssm_cfg.expand') times 'ssm_cfg.d_conv' 4096 overflows",
         SSMD_EFORMAT},
        {"{\"hidden_size\": 768}", "'model_type'", SSMD_EFORMAT},
        {"{\"model_type\": \"mamba3\"}", "'model_type' \"mamba3\" is not supported",
         SSMD_EUNSUPPORTED},
        {"{\"model_type\": \"mamba\", \"hidden_act\": \"gelu\"}", "'hidden_act' \"gelu\"",
         SSMD_EUNSUPPORTED},
        {"{\"d_model\": 0}", "'d_model' is 0", SSMD_EFORMAT},
        {"{\"d_model\": 768, \"rms_norm\": false}", "'rms_norm' false", SSMD_EUNSUPPORTED},
        {"{\"d_model\": 768, \"ssm_cfg\": {\"layer\": \"Mamba3\"}}", "'ssm_cfg.layer' \"Mamba3\"",
         SSMD_EUNSUPPORTED},
        {"{\"d_model\": 768, \"ssm_cfg\": {\"d_conv\": 0}}", "'ssm_cfg.d_conv' is 0", SSMD_EFORMAT},
        {"{\"d_model\": 768, \"d_intermediate\": 1024}", "'d_intermediate' 1024", SSMD_EUNSUPPORTED},
        {"{\"d_model\": 768, \"attn_layer_idx\": [3]}", "'attn_layer_idx'", SSMD_EUNSUPPORTED},
        {"{\"d_model\": 768, \"pad_vocab_size_multiple\": 0}", "'pad_vocab_size_multiple' is 0",
         SSMD_EFORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ssmd_err err = load_fails(cases[i].text, cases[i].code);
        ck_assert_msg_has(err, cases[i].want);
    }
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("model_config");
    TCase *tc = tcase_create("model_config");
    tcase_add_unchecked_fixture(tc, root_setup, root_teardown);
    tcase_add_test(tc, test_hf_130m);
    tcase_add_test(tc, test_hf_defaults);
    tcase_add_test(tc, test_hf_derived);
    tcase_add_test(tc, test_original);
    tcase_add_test(tc, test_bad_json);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_wrong_types);
    tcase_add_test(tc, test_bad_values);
    suite_add_tcase(s, tc);
    return s;
}
