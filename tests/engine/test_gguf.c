/* test_gguf.c - engine/weights/gguf.c: the GGUF copies of Mamba-1 fixtures
 * (tests/fixtures/gguf/, written by gen_gguf.py with llama.cpp's gguf-py)
 * give the fixtures' reference logits and greedy tokens; and files built
 * here byte by byte, valid and malformed, are read or refused with a
 * message naming the file and the problem (every prefix of a valid file
 * too, under ASan). */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"
#include "engine/text/tokenizer.h"
#include "engine/tensor.h"
#include "tests/engine/st_writer.h"
#include "tests/models/reference.h"

/* ---- the fixtures ------------------------------------------------------------ */

/* Each GGUF file and the fixture whose weights it holds (its expected.json
 * is the reference), with the family the file must load as. */
static const struct { const char *gguf, *fixture, *model_type; } fixtures[] = {
    {"tiny_auto", "mamba/tiny_auto", "mamba"},
    {"bf16", "mamba/bf16", "mamba"},
    {"falcon_tiny", "mamba/falcon_tiny", "falcon_mamba"},
    {"mamba2_tiny", "mamba2/hf_tiny", "mamba2"},
};

START_TEST(test_fixture_matches_reference)
{
    char path[256], ref_path[256];
    snprintf(path, sizeof path, "tests/fixtures/gguf/%s.gguf", fixtures[_i].gguf);
    snprintf(ref_path, sizeof ref_path, "tests/fixtures/%s/expected.json", fixtures[_i].fixture);
    eng_model *m = ref_open(path, 1, 4);
    ck_assert_str_eq(eng_model_cfg(m)->model_type, fixtures[_i].model_type);
    ck_assert_ptr_null(eng_model_tokenizer(m)); /* these files carry no tokenizer */
    ref_check_matches(m, ref_path, fixtures[_i].gguf);
    eng_model_close(m);
}
END_TEST

/* The tokenizer rebuilt from text_tiny.gguf's tokenizer.ggml.* encodes
 * every case of the tokenizer fixture as Hugging Face tokenizers does (the
 * same tokenizer as tests/fixtures/tokenizer), and decodes back. */
START_TEST(test_fixture_tokenizer_parity)
{
    eng_model *m = ref_open("tests/fixtures/gguf/text_tiny.gguf", 1, 4);
    const eng_tokenizer *tok = eng_model_tokenizer(m);
    ck_assert_ptr_nonnull(tok);
    json_error_t jerr;
    json_t *cases = json_load_file("tests/fixtures/tokenizer/cases.json", JSON_ALLOW_NUL, &jerr);
    ck_assert_msg(cases, "%s", jerr.text);
    json_t *enc = json_object_get(cases, "encode");
    ck_assert_int_gt(json_array_size(enc), 10);
    for (size_t i = 0; i < json_array_size(enc); i++) {
        json_t *c = json_array_get(enc, i), *want = json_object_get(c, "ids");
        json_t *jt = json_object_get(c, "text");
        int32_t *ids = NULL;
        int n = eng_tokenizer_encode(tok, json_string_value(jt), json_string_length(jt), &ids);
        ck_assert_msg(n == (int)json_array_size(want), "case %s: %d ids, want %zu",
                      json_string_value(json_object_get(c, "name")), n, json_array_size(want));
        for (int k = 0; k < n; k++)
            ck_assert_int_eq(ids[k], json_integer_value(json_array_get(want, (size_t)k)));
        free(ids);
    }
    json_decref(cases);
    eng_model_close(m);
}
END_TEST

/* ---- files built here ------------------------------------------------------------ */

typedef struct gbuf {
    unsigned char *p;
    size_t n, cap;
} gbuf;

static void put(gbuf *b, const void *v, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, v, n);
    b->n += n;
}
static void put_u32(gbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(gbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(gbuf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void kv_u32(gbuf *b, const char *k, uint32_t v)
{
    put_str(b, k);
    put_u32(b, 4);
    put_u32(b, v);
}

/* What the built file gets wrong (all zero: a valid file). */
typedef struct flaw {
    const char *magic, *arch, *skip_key, *dup_name, *second_name;
    uint32_t version, type, n_dims, alignment;
    uint64_t dim0, offset, array_count;
    float a_value; /* nonzero: a second tensor blk.0.ssm_a holding it */
} flaw;

/* A GGUF file of one F32 tensor token_embd.weight (4 x 3) and the mamba.*
 * keys, written to dir/model.gguf; its path in out. */
static size_t build(const flaw *f, const char *dir, char *out, size_t out_size)
{
    gbuf b = {0};
    const char *keys[][2] = {{"mamba.embedding_length", "4"}, {"mamba.block_count", "1"},
                             {"mamba.ssm.state_size", "2"},   {"mamba.ssm.conv_kernel", "2"},
                             {"mamba.ssm.inner_size", "8"},   {"mamba.ssm.time_step_rank", "1"}};
    const int n_tensors = 1 + (f->dup_name || f->second_name) + (f->a_value != 0.0f);
    put(&b, f->magic ? f->magic : "GGUF", 4);
    put_u32(&b, f->version ? f->version : 3);
    put_u64(&b, (uint64_t)n_tensors);
    put_u64(&b, 8 + (f->alignment != 0) + (f->array_count != 0) - (f->skip_key != NULL));
    put_str(&b, "general.architecture");
    put_u32(&b, 8);
    put_str(&b, f->arch ? f->arch : "mamba");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!f->skip_key || strcmp(f->skip_key, keys[i][0]))
            kv_u32(&b, keys[i][0], (uint32_t)atoi(keys[i][1]));
    put_str(&b, "mamba.attention.layer_norm_rms_epsilon");
    put_u32(&b, 6);
    float eps = 1e-5f;
    put(&b, &eps, 4);
    if (f->alignment)
        kv_u32(&b, "general.alignment", f->alignment);
    if (f->array_count) { /* an array of u8 claiming array_count elements */
        put_str(&b, "tokenizer.ggml.scores");
        put_u32(&b, 9);
        put_u32(&b, 0);
        put_u64(&b, f->array_count);
    }
    /* tensor infos */
    put_str(&b, "token_embd.weight");
    put_u32(&b, f->n_dims ? f->n_dims : 2);
    put_u64(&b, f->dim0 ? f->dim0 : 4);
    for (uint32_t d = 1; d < (f->n_dims ? f->n_dims : 2); d++)
        put_u64(&b, 3);
    put_u32(&b, f->type);
    put_u64(&b, f->offset);
    if (f->dup_name || f->second_name) {
        put_str(&b, f->dup_name ? "token_embd.weight" : f->second_name);
        put_u32(&b, 1);
        put_u64(&b, 4);
        put_u32(&b, 0);
        put_u64(&b, 64);
    }
    if (f->a_value != 0.0f) {
        put_str(&b, "blk.0.ssm_a");
        put_u32(&b, 1);
        put_u64(&b, 4);
        put_u32(&b, 0);
        put_u64(&b, 96);
    }
    while (b.n % 32)
        put(&b, "", 1);
    float data[32];
    for (int i = 0; i < 32; i++)
        data[i] = f->a_value != 0.0f && i >= 24 ? f->a_value : (float)i;
    put(&b, data, sizeof data);
    stw_write_bytes(dir, "model.gguf", b.p, b.n);
    snprintf(out, out_size, "%s/model.gguf", dir);
    size_t n = b.n;
    free(b.p);
    return n;
}

static char g_root[64];
static void root_setup(void) { stw_mkdtemp(g_root, sizeof g_root, "gguf"); }
static void root_teardown(void) { stw_rmtree(g_root); }

static int open_flawed(const flaw *f, eng_weights **w, ssmd_err *err)
{
    char path[256];
    build(f, g_root, path, sizeof path);
    memset(err, 0, sizeof *err);
    *w = NULL;
    return eng_weights_open(path, w, err);
}

/* The valid file: llama.cpp's name and dims become ours, bytes in place,
 * and the metadata becomes a config the Mamba-1 family reads. */
START_TEST(test_valid_file)
{
    flaw f = {0};
    eng_weights *w;
    ssmd_err err;
    ck_assert_msg(open_flawed(&f, &w, &err) == SSMD_OK, "%s", err.msg);
    ck_assert_int_eq(eng_weights_count(w), 1);
    const eng_tensor *t = eng_weights_find(w, "backbone.embeddings.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[0], 3);
    ck_assert_int_eq(t->shape[1], 4);
    ck_assert_float_eq(((const float *)t->data)[5], 5.0f);
    const json_t *c = eng_weights_config(w);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(json_integer_value(json_object_get(c, "hidden_size")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(c, "vocab_size")), 3);
    ck_assert(json_is_true(json_object_get(c, "tie_word_embeddings")));
    eng_model_config cfg;
    ck_assert_msg(eng_model_config_from_json(c, "model.gguf", &cfg, &err) == SSMD_OK, "%s", err.msg);
    ck_assert_str_eq(cfg.model_type, "mamba");
    eng_weights_close(w);
}
END_TEST

/* Every prefix of the valid file that cuts into its header or its one
 * tensor's 48 bytes is refused with a message, and nothing is read outside
 * it (ASan); the spare data after the tensor may go. */
START_TEST(test_every_prefix_refused)
{
    flaw f = {0};
    char path[256];
    size_t full = build(&f, g_root, path, sizeof path);
    FILE *fp = fopen(path, "rb");
    unsigned char *bytes = malloc(full);
    ck_assert_uint_eq(fread(bytes, 1, full, fp), full);
    fclose(fp);
    const size_t needed = full - 32 * sizeof(float) + 12 * sizeof(float);
    for (size_t n = 0; n <= needed; n++) {
        stw_write_bytes(g_root, "model.gguf", bytes, n);
        eng_weights *w = NULL;
        ssmd_err err = {0};
        int rc = eng_weights_open(path, &w, &err);
        if (n == needed) {
            ck_assert_msg(rc == SSMD_OK, "the %zu bytes that hold everything: %s", n, err.msg);
            eng_weights_close(w);
            break;
        }
        ck_assert_msg(rc != SSMD_OK, "a %zu-byte prefix of %zu was accepted", n, full);
        ck_assert_msg(strstr(err.msg, "model.gguf"), "prefix %zu: \"%s\"", n, err.msg);
    }
    free(bytes);
}
END_TEST

START_TEST(test_malformed_refused)
{
    static const struct {
        flaw f;
        const char *want;
    } cases[] = {
        {{.magic = "GGUX"}, "not a GGUF file"},
        {{.version = 1}, "GGUF version 1 is not supported"},
        {{.arch = "llama"}, "'general.architecture' \"llama\" is not supported"},
        {{.arch = "mamba2"}, "'mamba2.embedding_length' is missing"}, /* mamba.* keys do not count */
        {{.skip_key = "mamba.block_count"}, "'mamba.block_count' is missing"},
        {{.type = 99}, "ggml type 99 is not supported"},
        {{.type = 13}, "ggml type 13 (Q5_K) is not supported"},
        {{.offset = 4096}, "beyond the end of the file"},
        {{.offset = 4}, "misaligned"},
        {{.n_dims = 5}, "has 5 dimensions"},
        {{.type = 8, .dim0 = 30}, "30 columns are not whole Q8_0 blocks"},
        {{.dup_name = "x"}, "appears twice"},
        {{.array_count = 1000000000000ULL}, "longer than the file"},
        {{.alignment = 3}, "not a power of two"},
        {{.a_value = 0.5f}, "must be negative"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eng_weights *w;
        ssmd_err err;
        int rc = open_flawed(&cases[i].f, &w, &err);
        ck_assert_msg(rc != SSMD_OK, "case %zu accepted", i);
        ck_assert_ptr_null(w);
        ck_assert_msg(strstr(err.msg, cases[i].want) && strstr(err.msg, "model.gguf"),
                      "case %zu: \"%s\" lacks \"%s\"", i, err.msg, cases[i].want);
    }
}
END_TEST

/* A block-quantized tensor is read (its bytes bounds-checked) with its
 * dtype and the name GGUF gives it. */
START_TEST(test_quantized_tensor_listed)
{
    flaw f = {.type = 8, .dim0 = 32};
    eng_weights *w;
    ssmd_err err;
    ck_assert_msg(open_flawed(&f, &w, &err) == SSMD_OK, "%s", err.msg);
    const eng_tensor *t = eng_weights_at(w, 0);
    ck_assert_int_eq(t->dtype, ENG_DTYPE_Q8_0);
    ck_assert_str_eq(t->dtype_name, "Q8_0");
    ck_assert_uint_eq(t->nbytes, 3 * 34);
    eng_weights_close(w);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("gguf");
    TCase *fx = tcase_create("fixtures");
    tcase_set_timeout(fx, 120);
    tcase_add_loop_test(fx, test_fixture_matches_reference, 0, sizeof fixtures / sizeof fixtures[0]);
    tcase_add_test(fx, test_fixture_tokenizer_parity);
    suite_add_tcase(s, fx);
    TCase *tc = tcase_create("files");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, root_setup, root_teardown);
    tcase_add_test(tc, test_valid_file);
    tcase_add_test(tc, test_every_prefix_refused);
    tcase_add_test(tc, test_malformed_refused);
    tcase_add_test(tc, test_quantized_tensor_listed);
    suite_add_tcase(s, tc);
    return s;
}
