/* test_gguf_write.c - engine/weights/gguf_write.c and the quantized models
 * it makes:
 *  - a safetensors fixture written as F32 GGUF reads back to the same
 *    model (the fixture's reference logits), its tokenizer included;
 *  - quant_mixed.gguf (every block type the CPU reads, written by
 *    gen_gguf.py with gguf-py) against its own dequantised F32 copy, at
 *    every CPU level: logits close, greedy tokens equal where the margin
 *    allows;
 *  - the default model (models/default) quantized to Q8_0 and Q4_K the way
 *    `ssmd quantize` does, against the f32 model;
 *  - what cannot be written is refused by name. */
#include <check.h>
#include <math.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"
#include "engine/tensor.h"
#include "engine/text/tokenizer.h"
#include "engine/model_config.h"
#include "engine/weights/gguf_write.h"
#include "tests/engine/st_writer.h"
#include "tests/models/reference.h"

static char g_root[256];
static void root_setup(void) { stw_mkdtemp(g_root, sizeof g_root, "gguf-write"); }
static void root_teardown(void) { stw_rmtree(g_root); }

static json_t *load_json(const char *path)
{
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    ck_assert_msg(j != NULL, "%s: %s", path, jerr.text);
    return j;
}

/* The model at `in` (a directory or a GGUF file) written as dt to
 * g_root/<name>.gguf; the path in out. */
static void save(const char *in, eng_dtype dt, const char *name, char *out, size_t size)
{
    eng_weights *w;
    ssmd_err err = {0};
    ck_assert_msg(eng_weights_open(in, &w, &err) == SSMD_OK, "%s", err.msg);
    json_t *config, *tok = NULL;
    if (eng_weights_config(w)) {
        config = json_incref((json_t *)eng_weights_config(w));
        tok = json_incref((json_t *)eng_weights_tokenizer(w));
    } else {
        char path[512];
        snprintf(path, sizeof path, "%s/config.json", in);
        config = eng_cfg_load_json(path, &err); /* Infinity included */
        ck_assert_msg(config, "%s", err.msg);
        snprintf(path, sizeof path, "%s/tokenizer.json", in);
        if (access(path, F_OK) == 0)
            tok = load_json(path);
    }
    snprintf(out, size, "%s/%s.gguf", g_root, name);
    int nq = -1;
    ck_assert_msg(eng_gguf_save(w, config, tok, dt, out, &nq, &err) == SSMD_OK, "%s", err.msg);
    ck_assert_int_eq(nq > 0, eng_dtype_info_of(dt)->quantized);
    json_decref(config);
    json_decref(tok);
    eng_weights_close(w);
}

/* ---- round trip ------------------------------------------------------------ */

START_TEST(test_f32_round_trip)
{
    char path[512];
    save("tests/fixtures/mamba/tiny_auto", ENG_DTYPE_F32, "tiny_auto", path, sizeof path);
    eng_model *m = ref_open(path, 1, 4);
    ref_check_matches(m, "tests/fixtures/mamba/tiny_auto/expected.json", "tiny_auto.gguf");
    eng_model_close(m);
    /* the original state-spaces layout (d_model, backbone.embedding, F16,
     * padded vocabulary) */
    save("tests/fixtures/mamba/original_f16", ENG_DTYPE_F32, "original", path, sizeof path);
    m = ref_open(path, 1, 4);
    ref_check_matches(m, "tests/fixtures/mamba/original_f16/expected.json", "original.gguf");
    eng_model_close(m);
    /* Mamba-2 (transformers' layout, no biases, dt unclamped) */
    save("tests/fixtures/mamba2/hf_tiny", ENG_DTYPE_F32, "mamba2_tiny", path, sizeof path);
    m = ref_open(path, 1, 4);
    ck_assert_str_eq(eng_model_cfg(m)->model_type, "mamba2");
    ref_check_matches(m, "tests/fixtures/mamba2/hf_tiny/expected.json", "mamba2_tiny.gguf");
    eng_model_close(m);
    /* the tokenizer survives: text_tiny encodes as its tokenizer.json */
    save("tests/fixtures/mamba/text_tiny", ENG_DTYPE_F32, "text_tiny", path, sizeof path);
    eng_model *a = ref_open(path, 1, 1), *b = ref_open("tests/fixtures/mamba/text_tiny", 1, 1);
    const char *text = "In the beginning God created the heaven and the earth. 123 <|endoftext|>";
    int32_t *ia = NULL, *ib = NULL;
    int na = eng_tokenizer_encode(eng_model_tokenizer(a), text, strlen(text), &ia);
    int nb = eng_tokenizer_encode(eng_model_tokenizer(b), text, strlen(text), &ib);
    ck_assert_int_gt(na, 5);
    ck_assert_int_eq(na, nb);
    ck_assert(!memcmp(ia, ib, sizeof(int32_t) * (size_t)na));
    free(ia), free(ib);
    eng_model_close(a);
    eng_model_close(b);
}
END_TEST

/* ---- quantized against f32 -------------------------------------------------- */

/* q against f (the same weights dequantised, or unquantized): prefill of
 * `ids` with every row's logits within rel of the row's largest, then
 * `steps` greedy decode steps fed f's choice, q's choice equal whenever f's
 * top two logits are more than `margin` (of the row's largest) apart.
 * Returns how many steps had that margin. */
static int compare_models(eng_model *q, eng_model *f, const int32_t *ids, int n, int steps,
                          double rel, double margin, const char *what)
{
    const int V = eng_model_n_vocab(f);
    ck_assert_int_eq(eng_model_n_vocab(q), V);
    eng_state_pool *pq, *pf;
    ssmd_err err;
    ck_assert_int_eq(eng_state_pool_create(q, 1, &pq, &err), SSMD_OK);
    ck_assert_int_eq(eng_state_pool_create(f, 1, &pf, &err), SSMD_OK);
    float *lq = malloc(sizeof(float) * (size_t)n * V), *lf = malloc(sizeof(float) * (size_t)n * V);
    eng_state_slot_zero(pq, 0);
    eng_state_slot_zero(pf, 0);
    ck_assert_int_eq(eng_model_prefill(q, pq, 0, ids, n, lq, 1, &err), SSMD_OK);
    ck_assert_int_eq(eng_model_prefill(f, pf, 0, ids, n, lf, 1, &err), SSMD_OK);
    assert_rows_close(lq, lf, n, V, rel, what);
    int decided = 0, slot = 0;
    const float *rq = lq + (size_t)(n - 1) * V, *rf = lf + (size_t)(n - 1) * V;
    for (int s = 0; s < steps; s++) {
        int best = argmax(rf, V), second = best == 0;
        double scale = 1e-6;
        for (int v = 0; v < V; v++) {
            if (v != best && rf[v] > rf[second])
                second = v;
            scale = fmax(scale, fabs(rf[v]));
        }
        if (rf[best] - rf[second] > margin * scale) {
            decided++;
            ck_assert_msg(argmax(rq, V) == best, "%s step %d: greedy %d, f32 %d", what, s,
                          argmax(rq, V), best);
        }
        int32_t next = best;
        ck_assert_int_eq(eng_model_decode(q, pq, &slot, &next, 1, lq, &err), SSMD_OK);
        ck_assert_int_eq(eng_model_decode(f, pf, &slot, &next, 1, lf, &err), SSMD_OK);
        rq = lq, rf = lf;
        assert_rows_close(rq, rf, 1, V, rel, what);
    }
    free(lq), free(lf);
    eng_state_pool_destroy(pq);
    eng_state_pool_destroy(pf);
    return decided;
}

START_TEST(test_quant_mixed_vs_dequantised)
{
    const char *level = ref_use_level(_i);
    char path[512];
    save("tests/fixtures/gguf/quant_mixed.gguf", ENG_DTYPE_F32, "quant_mixed_f32", path,
         sizeof path);
    eng_model *q = ref_open("tests/fixtures/gguf/quant_mixed.gguf", 1, 1);
    eng_model *f = ref_open(path, 1, 1);
    /* 60 ids: the prompt's matmuls take the dequantised sgemm path, the
     * decode steps the int8 kernels */
    int32_t ids[60];
    for (int i = 0; i < 60; i++)
        ids[i] = (i * 37 + 11) % 64;
    int decided = compare_models(q, f, ids, 60, 24, 0.02, 0.04, level);
    ck_assert_int_gt(decided, 12);
    int decided_short = compare_models(q, f, ids, 5, 8, 0.02, 0.04, level);
    ck_assert_int_ge(decided_short, 3);
    eng_model_close(q);
    eng_model_close(f);
}
END_TEST

/* The dtype tensor `name` of the GGUF file at path was written in. */
static eng_dtype dtype_in(const char *path, const char *name)
{
    eng_weights *w;
    ssmd_err err = {0};
    ck_assert_msg(eng_weights_open(path, &w, &err) == SSMD_OK, "%s", err.msg);
    const eng_tensor *t = eng_weights_find(w, name);
    ck_assert_msg(t != NULL, "%s: no %s", path, name);
    const eng_dtype dt = t->dtype;
    eng_weights_close(w);
    return dt;
}

/* The default model, quantized as `ssmd quantize` does: Q8_0 close to f32
 * (logits within 2% of each row's largest, greedy equal), Q4_K within 30%
 * (4 bits: weights off by ~8% RMS, a small model amplifies it).  Each
 * matrix takes the type asked where its rows are whole blocks, else Q8_0,
 * else F16: dt_proj has 16 columns. */
START_TEST(test_default_model_quantized)
{
    char q8[512], q4k[512];
    save("models/default", ENG_DTYPE_Q8_0, "default_q8_0", q8, sizeof q8);
    save("models/default", ENG_DTYPE_Q4_K, "default_q4_k", q4k, sizeof q4k);
    const char *dt_proj = "backbone.layers.0.mixer.dt_proj.weight";
    const char *x_proj = "backbone.layers.0.mixer.x_proj.weight"; /* 512 columns */
    const char *out_proj = "backbone.layers.0.mixer.out_proj.weight";
    ck_assert_int_eq(dtype_in(q8, dt_proj), ENG_DTYPE_F16);
    ck_assert_int_eq(dtype_in(q4k, dt_proj), ENG_DTYPE_F16);
    ck_assert_int_eq(dtype_in(q8, x_proj), ENG_DTYPE_Q8_0);
    ck_assert_int_eq(dtype_in(q4k, x_proj), ENG_DTYPE_Q4_K);
    ck_assert_int_eq(dtype_in(q4k, out_proj), ENG_DTYPE_Q4_K);
    eng_model *f = ref_open("models/default", 1, 1);
    const char *text = "And God said unto Moses, I AM THAT I AM: and he said, Thus shalt thou say";
    int32_t *ids = NULL;
    int n = eng_tokenizer_encode(eng_model_tokenizer(f), text, strlen(text), &ids);
    ck_assert_int_gt(n, 10);
    eng_model *m = ref_open(q8, 1, 1);
    ck_assert_int_ge(compare_models(m, f, ids, n, 16, 0.02, 0.02, "q8_0"), 8);
    eng_model_close(m);
    m = ref_open(q4k, 1, 1);
    compare_models(m, f, ids, n, 16, 0.3, 0.3, "q4_k");
    eng_model_close(m);
    eng_model_close(f);
    free(ids);
}
END_TEST

/* F16 and BF16 matrices (`ssmd quantize --type f16|bf16`, what llama.cpp's
 * F16 files hold): rounded once, so logits stay within 1% (f16, 11-bit
 * significand) or 3% (bf16, 8 bits) of each row's largest over 24 tokens,
 * and greedy choices agree wherever the margin is wider. */
START_TEST(test_half_precision_files)
{
    static const eng_dtype types[] = {ENG_DTYPE_F16, ENG_DTYPE_BF16};
    static const double tol[] = {0.01, 0.03};
    eng_model *f = ref_open("tests/fixtures/mamba/tiny_auto", 1, 1);
    int32_t ids[24];
    for (int i = 0; i < 24; i++)
        ids[i] = (i * 13 + 5) % eng_model_n_vocab(f);
    for (size_t t = 0; t < 2; t++) {
        char path[512];
        const char *name = eng_dtype_info_of(types[t])->name;
        save("tests/fixtures/mamba/tiny_auto", types[t], name, path, sizeof path);
        eng_weights *w;
        ssmd_err err = {0};
        ck_assert_msg(eng_weights_open(path, &w, &err) == SSMD_OK, "%s", err.msg);
        const eng_tensor *in_proj = eng_weights_find(w, "backbone.layers.0.mixer.in_proj.weight");
        ck_assert_ptr_nonnull(in_proj);
        ck_assert_int_eq(in_proj->dtype, types[t]);
        eng_weights_close(w);
        eng_model *h = ref_open(path, 1, 1);
        compare_models(h, f, ids, 24, 8, tol[t], tol[t], name);
        eng_model_close(h);
    }
    eng_model_close(f);
}
END_TEST

/* ---- refusals ---------------------------------------------------------------- */

START_TEST(test_refused_by_name)
{
    eng_weights *w;
    ssmd_err err = {0};
    ck_assert_int_eq(eng_weights_open("tests/fixtures/mamba/tiny_auto", &w, &err), SSMD_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/x.gguf", g_root);
    json_t *cfg = json_pack("{s:s}", "model_type", "s4d");
    ck_assert_int_ne(eng_gguf_save(w, cfg, NULL, ENG_DTYPE_Q8_0, path, NULL, &err), SSMD_OK);
    ck_assert_msg(strstr(err.msg, "model_type 's4d'"), "%s", err.msg);
    json_decref(cfg);
    /* a Mamba-2 that llama.cpp's graph cannot compute is refused by option */
    eng_weights *wg;
    ck_assert_int_eq(eng_weights_open("tests/fixtures/mamba2/hf_groups", &wg, &err), SSMD_OK);
    cfg = eng_cfg_load_json("tests/fixtures/mamba2/hf_groups/config.json", &err);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_int_ne(eng_gguf_save(wg, cfg, NULL, ENG_DTYPE_Q8_0, path, NULL, &err), SSMD_OK);
    ck_assert_msg(strstr(err.msg, "'use_bias' true"), "%s", err.msg);
    eng_weights_close(wg);
    json_decref(cfg);
    cfg = json_pack("{s:s}", "model_type", "mamba");
    json_t *tok = json_pack("{s:{s:s}}", "model", "type", "Unigram");
    ck_assert_int_ne(eng_gguf_save(w, cfg, tok, ENG_DTYPE_Q8_0, path, NULL, &err), SSMD_OK);
    ck_assert_msg(strstr(err.msg, "model Unigram"), "%s", err.msg);
    ck_assert_int_ne(access(path, F_OK), 0); /* nothing left behind */
    /* a weight that is not finite cannot be quantized: named, no file */
    eng_weights *wn;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/nan", g_root);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    static stw_file sf; /* a one-layer model: d_model 32, d_inner 4 */
    static float zeros[8 * 32], in_proj[8 * 32];
    in_proj[37] = NAN;
    stw_begin(&sf);
    stw_add(&sf, "backbone.embeddings.weight", "F32", 2, (int64_t[]){4, 32}, zeros, 4 * 32 * 4);
    stw_add(&sf, "backbone.layers.0.mixer.D", "F32", 1, (int64_t[]){4}, zeros, 16);
    stw_add(&sf, "backbone.layers.0.mixer.A_log", "F32", 2, (int64_t[]){4, 2}, zeros, 32);
    stw_add(&sf, "backbone.layers.0.mixer.conv1d.weight", "F32", 3, (int64_t[]){4, 1, 2}, zeros,
            32);
    stw_add(&sf, "backbone.layers.0.mixer.dt_proj.weight", "F32", 2, (int64_t[]){4, 1}, zeros, 16);
    stw_add(&sf, "backbone.layers.0.mixer.in_proj.weight", "F32", 2, (int64_t[]){8, 32}, in_proj,
            sizeof in_proj);
    stw_finish(&sf, dir, "model.safetensors", 8);
    ck_assert_int_eq(eng_weights_open(dir, &wn, &err), SSMD_OK);
    ck_assert_int_eq(eng_gguf_save(wn, cfg, NULL, ENG_DTYPE_Q8_0, path, NULL, &err), SSMD_EFORMAT);
    ck_assert_msg(strstr(err.msg, "in_proj.weight': weight 37 is nan"), "%s", err.msg);
    ck_assert_int_ne(access(path, F_OK), 0);
    eng_weights_close(wn);
    snprintf(path, sizeof path, "%s/no/such/dir/x.gguf", g_root);
    ck_assert_int_eq(eng_gguf_save(w, cfg, NULL, ENG_DTYPE_Q8_0, path, NULL, &err), SSMD_EIO);
    ck_assert_msg(strstr(err.msg, "x.gguf"), "%s", err.msg);
    json_decref(cfg);
    json_decref(tok);
    eng_weights_close(w);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("gguf_write");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_unchecked_fixture(tc, root_setup, root_teardown);
    tcase_add_test(tc, test_f32_round_trip);
    tcase_add_loop_test(tc, test_quant_mixed_vs_dequantised, 0, ref_n_levels());
    tcase_add_test(tc, test_default_model_quantized);
    tcase_add_test(tc, test_half_precision_files);
    tcase_add_test(tc, test_refused_by_name);
    suite_add_tcase(s, tc);
    return s;
}
