/* test_tokenizer.c - engine/text/tokenizer.c against Hugging Face `tokenizers`.
 *
 * tests/fixtures/gen_tokenizer.py trained tests/fixtures/tokenizer/
 * tokenizer.json (GPT-NeoX-shaped) and recorded in cases.json what
 * `tokenizers` answers: ids for ~50 texts, how its ByteLevel pre-tokenizer
 * splits them into words, decoded text for id lists (some splitting UTF-8
 * characters).  Here: the regex split, encode and decode parity, incremental
 * detokenization equal to decode with no split character in any piece, the
 * other accepted spellings of the file (merges as pairs, Sequence
 * pre-tokenizer), the error paths, thread safety and speed.
 */
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/text/bpe.h"
#include "engine/text/pretokenizers.h"
#include "engine/text/tokenizer.h"
#include "engine/text/unicode.h"

#define TOK_PATH "tests/fixtures/tokenizer/tokenizer.json"
#define CASES_PATH "tests/fixtures/tokenizer/cases.json"

static eng_tokenizer *load_ok(const char *path)
{
    eng_tokenizer *tok = NULL;
    ssmd_err err = {0};
    int rc = eng_tokenizer_load(path, &tok, &err);
    ck_assert_msg(rc == SSMD_OK, "load %s: %s", path, err.msg);
    ck_assert_ptr_nonnull(tok);
    return tok;
}

static json_t *load_json(const char *path)
{
    json_error_t jerr;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    ck_assert_msg(j != NULL, "%s: %s", path, jerr.text);
    return j;
}

static int32_t *ids_of(const json_t *arr, size_t *n)
{
    *n = json_array_size(arr);
    int32_t *ids = malloc((*n + 1) * sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    for (size_t i = 0; i < *n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return ids;
}

/* Number of encode cases whose ids differ from the fixture's (printed). */
static size_t encode_mismatches(const eng_tokenizer *tok, const json_t *cases)
{
    size_t bad = 0, i;
    json_t *c;
    json_array_foreach(json_object_get(cases, "encode"), i, c) {
        const json_t *text = json_object_get(c, "text");
        size_t n_want;
        int32_t *want = ids_of(json_object_get(c, "ids"), &n_want);
        int32_t *got = NULL;
        int n = eng_tokenizer_encode(tok, json_string_value(text), json_string_length(text), &got);
        size_t k = 0;
        while (n >= 0 && k < (size_t)n && k < n_want && got[k] == want[k])
            k++;
        if (n < 0 || (size_t)n != n_want || k != n_want) {
            fprintf(stderr, "encode %s: %d ids, want %zu; first difference at %zu (got %d want %d)\n",
                    json_string_value(json_object_get(c, "name")), n, n_want, k,
                    n >= 0 && k < (size_t)n ? got[k] : -1, k < n_want ? want[k] : -1);
            bad++;
        }
        free(got);
        free(want);
    }
    return bad;
}

START_TEST(test_load_vocab_and_added_tokens)
{
    eng_tokenizer *tok = load_ok(TOK_PATH);
    json_t *j = load_json(TOK_PATH);
    /* vocab size = max id + 1 over the model's vocab and the added tokens */
    json_int_t max_id = -1;
    const char *key;
    json_t *val;
    size_t bad = 0;
    json_object_foreach(json_object_get(json_object_get(j, "model"), "vocab"), key, val) {
        if (json_integer_value(val) > max_id)
            max_id = json_integer_value(val);
        bad += eng_tokenizer_token_id(tok, key) != json_integer_value(val);
    }
    ck_assert_uint_eq(bad, 0);
    size_t i;
    json_array_foreach(json_object_get(j, "added_tokens"), i, val) {
        json_int_t id = json_integer_value(json_object_get(val, "id"));
        if (id > max_id)
            max_id = id;
        ck_assert_int_eq(eng_tokenizer_token_id(tok, json_string_value(json_object_get(val, "content"))), id);
    }
    ck_assert_int_eq(eng_tokenizer_vocab_size(tok), max_id + 1);
    ck_assert_int_eq(eng_tokenizer_token_id(tok, "<|endoftext|>"), 0);
    ck_assert_int_eq(eng_tokenizer_token_id(tok, "<|padding|>"), 1);
    ck_assert_int_eq(eng_tokenizer_token_id(tok, "no such token at all"), -1);
    json_decref(j);
    eng_tokenizer_free(tok);
}
END_TEST

START_TEST(test_encode_parity)
{
    eng_tokenizer *tok = load_ok(TOK_PATH);
    json_t *cases = load_json(CASES_PATH);
    ck_assert_uint_ge(json_array_size(json_object_get(cases, "encode")), 40);
    ck_assert_uint_eq(encode_mismatches(tok, cases), 0);
    json_decref(cases);
    eng_tokenizer_free(tok);
}
END_TEST

/* The GPT-2 regex alone: word boundaries as tokenizers' pre-tokenizer finds
 * them (BPE hides many split errors, so they are checked directly). */
START_TEST(test_pretok_words)
{
    json_t *cases = load_json(CASES_PATH);
    json_t *bl = json_pack("{s:s, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                           "use_regex", 1);
    eng_pretok *pre = NULL;
    ssmd_err err = {0};
    ck_assert_int_eq(eng_pretok_load(bl, "inline", &pre, &err), SSMD_OK);
    ck_assert(eng_pretok_bytes_out(pre)); /* the words are raw bytes: comparable */
    eng_pretok_scratch sc = {0};
    size_t i, bad = 0;
    json_t *c;
    json_array_foreach(json_object_get(cases, "encode"), i, c) {
        const json_t *words = json_object_get(c, "words");
        size_t len = 0, k;
        json_t *w;
        json_array_foreach(words, k, w)
            len += json_string_length(w);
        char *text = malloc(len + 1);
        size_t o = 0;
        json_array_foreach(words, k, w) {
            memcpy(text + o, json_string_value(w), json_string_length(w));
            o += json_string_length(w);
        }
        const eng_pieces *got = eng_pretok_run(pre, text, len, 1, &sc);
        size_t pos = 0;
        k = 0;
        while (k < got->n && k < json_array_size(words)) {
            const json_t *want = json_array_get(words, k);
            if (got->v[k].len != json_string_length(want) ||
                memcmp(got->text + got->v[k].off, json_string_value(want), got->v[k].len) != 0)
                break;
            pos += got->v[k].len;
            k++;
        }
        if (k != got->n)
            pos = (size_t)-1; /* a word of ours was left unmatched */
        if (pos != len || k != json_array_size(words)) {
            fprintf(stderr, "pretok %s: differs at word %zu (byte %zu)\n",
                    json_string_value(json_object_get(c, "name")), k, pos);
            bad++;
        }
        free(text);
    }
    ck_assert_uint_eq(bad, 0);
    eng_pretok_scratch_free(&sc);
    eng_pretok_free(pre);
    json_decref(bl);
    json_decref(cases);
}
END_TEST

/* Decodes ids both ways (whole and incrementally) and compares with want. */
static int decode_matches(const eng_tokenizer *tok, const int32_t *ids, size_t n, int skip,
                          const char *want, size_t want_n, const char *name)
{
    char *text = NULL;
    size_t len = 0;
    int ok = 1;
    ck_assert_int_eq(eng_tokenizer_decode(tok, ids, n, skip, &text, &len), SSMD_OK);
    if (len != want_n || memcmp(text, want, len) != 0 || text[len] != 0) {
        fprintf(stderr, "decode %s (skip %d): got \"%s\"\n", name, skip, text);
        ok = 0;
    }
    /* incremental: pieces concatenate to the decode, none splits a character */
    size_t cap = eng_tokenizer_piece_max(tok);
    char *piece = malloc(cap);
    char *joined = malloc(3 * want_n + 3 * n + 16);
    size_t jn = 0;
    eng_detok d;
    eng_detok_init(&d, tok, skip);
    for (size_t i = 0; i <= n; i++) {
        int r = i < n ? eng_detok_push(&d, ids[i], piece, cap) : eng_detok_flush(&d, piece, cap);
        ck_assert_int_ge(r, 0);
        ck_assert_int_eq(piece[r], 0);
        if (!eng_utf8_valid(piece, (size_t)r)) {
            fprintf(stderr, "detok %s: piece %zu is not valid UTF-8\n", name, i);
            ok = 0;
        }
        if (jn + (size_t)r <= 3 * want_n + 3 * n + 16) {
            memcpy(joined + jn, piece, (size_t)r);
            jn += (size_t)r;
        } else {
            ok = 0;
        }
    }
    if (jn != want_n || memcmp(joined, want, jn) != 0) {
        fprintf(stderr, "detok %s (skip %d): pieces joined differ from decode\n", name, skip);
        ok = 0;
    }
    free(joined);
    free(piece);
    free(text);
    return ok;
}

START_TEST(test_decode_and_detok_parity)
{
    eng_tokenizer *tok = load_ok(TOK_PATH);
    json_t *cases = load_json(CASES_PATH);
    size_t i, bad = 0, count = 0;
    json_t *c;
    json_array_foreach(json_object_get(cases, "decode"), i, c) {
        size_t n;
        int32_t *ids = ids_of(json_object_get(c, "ids"), &n);
        const json_t *want = json_object_get(c, "text");
        bad += !decode_matches(tok, ids, n, json_is_true(json_object_get(c, "skip_special")),
                               json_string_value(want), json_string_length(want),
                               json_string_value(json_object_get(c, "name")));
        count++;
        free(ids);
    }
    json_array_foreach(json_object_get(cases, "encode"), i, c) {
        size_t n;
        int32_t *ids = ids_of(json_object_get(c, "ids"), &n);
        const json_t *want = json_object_get(c, "decoded");
        if (memchr(json_string_value(want), 0, json_string_length(want)) == NULL) {
            bad += !decode_matches(tok, ids, n, 0, json_string_value(want),
                                   json_string_length(want),
                                   json_string_value(json_object_get(c, "name")));
            count++;
        }
        free(ids);
    }
    ck_assert_uint_ge(count, 80);
    ck_assert_uint_eq(bad, 0);
    json_decref(cases);
    eng_tokenizer_free(tok);
}
END_TEST

START_TEST(test_detok_holds_back_and_refuses_small_cap)
{
    eng_tokenizer *tok = load_ok(TOK_PATH);
    /* U+20AC (E2 82 AC) fed one byte-token at a time */
    int32_t b[3];
    const char *bytes_as_tokens[3] = {"\xC3\xA2", "\xC4\xA4", "\xC2\xAC"}; /* GPT-2's "âĤ¬" */
    for (int i = 0; i < 3; i++)
        b[i] = eng_tokenizer_token_id(tok, bytes_as_tokens[i]);
    ck_assert(b[0] >= 0 && b[1] >= 0 && b[2] >= 0);
    size_t len = 0;
    const char *bytes = eng_tokenizer_token_bytes(tok, b[1], &len);
    ck_assert(bytes && len == 1 && bytes[0] == '\x82');
    bytes = eng_tokenizer_token_bytes(tok, 0, &len);
    ck_assert(bytes && len == 13 && memcmp(bytes, "<|endoftext|>", 13) == 0);
    ck_assert_ptr_null(eng_tokenizer_token_bytes(tok, -1, &len));
    ck_assert(eng_tokenizer_is_special(tok, 0) && eng_tokenizer_is_special(tok, 1));
    ck_assert(!eng_tokenizer_is_special(tok, b[0]) && !eng_tokenizer_is_special(tok, 99999));
    char out[64];
    eng_detok d;
    eng_detok_init(&d, tok, 0);
    ck_assert_int_eq(eng_detok_push(&d, b[0], out, sizeof out), 0);
    ck_assert_int_eq(eng_detok_push(&d, b[1], out, sizeof out), 0);
    ck_assert_int_eq(eng_detok_push(&d, b[2], out, 3), -1); /* needs 4 with the NUL */
    ck_assert_int_eq(eng_detok_push(&d, b[2], out, sizeof out), 3);
    ck_assert_str_eq(out, "\xE2\x82\xAC");
    ck_assert_int_eq(eng_detok_flush(&d, out, sizeof out), 0);
    /* a held-back start followed by the end of the stream is one U+FFFD */
    ck_assert_int_eq(eng_detok_push(&d, b[0], out, sizeof out), 0);
    ck_assert_int_eq(eng_detok_flush(&d, out, sizeof out), 3);
    ck_assert_str_eq(out, "\xEF\xBF\xBD");
    /* skip_special: the special token vanishes, the character still joins */
    eng_detok_init(&d, tok, 1);
    ck_assert_int_eq(eng_detok_push(&d, b[0], out, sizeof out), 0);
    ck_assert_int_eq(eng_detok_push(&d, 0, out, sizeof out), 0);
    ck_assert_int_eq(eng_detok_push(&d, b[1], out, sizeof out), 0);
    ck_assert_int_eq(eng_detok_push(&d, b[2], out, sizeof out), 3);
    ck_assert_int_eq(eng_detok_push(&d, -1, out, sizeof out), -1);
    ck_assert_int_eq(eng_detok_push(&d, eng_tokenizer_vocab_size(tok), out, sizeof out), -1);
    ck_assert_uint_le(eng_tokenizer_piece_max(tok), ENG_DETOK_PIECE_MAX);
    eng_tokenizer_free(tok);
}
END_TEST

START_TEST(test_invalid_input)
{
    eng_tokenizer *tok = load_ok(TOK_PATH);
    int32_t *ids = (int32_t *)&ids; /* must be reset */
    ck_assert_int_eq(eng_tokenizer_encode(tok, "ok \xC3\x28 no", 7, &ids), -1);
    ck_assert_ptr_null(ids);
    ck_assert_int_eq(eng_tokenizer_encode(tok, "\xED\xA0\x80", 3, &ids), -1);
    /* empty text: zero ids and a pointer that may be freed */
    ck_assert_int_eq(eng_tokenizer_encode(tok, "", 0, &ids), 0);
    free(ids);
    int32_t bad_ids[2] = {5, eng_tokenizer_vocab_size(tok)};
    char *text = (char *)"unchanged";
    size_t len = 9;
    ck_assert_int_eq(eng_tokenizer_decode(tok, bad_ids, 2, 0, &text, &len), SSMD_EINVAL);
    ck_assert_ptr_null(text);
    bad_ids[1] = -3;
    ck_assert_int_eq(eng_tokenizer_decode(tok, bad_ids, 2, 0, &text, &len), SSMD_EINVAL);
    ck_assert_int_eq(eng_tokenizer_decode(tok, bad_ids, 0, 0, &text, &len), SSMD_OK);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(text, "");
    free(text);
    eng_tokenizer_free(tok);
}
END_TEST

/* ---- other spellings of the same tokenizer ------------------------------------------ */

/* Writes j to a fresh temporary file; returns its path (static buffer). */
static const char *write_temp(const json_t *j, char path[64])
{
    snprintf(path, 64, "/tmp/ssmd_test_tok_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(json_dump_file(j, path, 0), 0);
    return path;
}

static void check_variant_parity(json_t *variant)
{
    char path[64];
    write_temp(variant, path);
    eng_tokenizer *tok = load_ok(path);
    json_t *cases = load_json(CASES_PATH);
    ck_assert_uint_eq(encode_mismatches(tok, cases), 0);
    json_decref(cases);
    eng_tokenizer_free(tok);
    unlink(path);
}

START_TEST(test_merges_as_pairs)
{
    json_t *j = load_json(TOK_PATH);
    json_t *merges = json_object_get(json_object_get(j, "model"), "merges");
    ck_assert_uint_gt(json_array_size(merges), 100);
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        const char *s = json_string_value(m);
        const char *sp = strchr(s, ' ');
        json_t *pair = json_pack("[s#s]", s, (int)(sp - s), sp + 1);
        json_array_set_new(merges, i, pair);
    }
    check_variant_parity(j);
    json_decref(j);
}
END_TEST

START_TEST(test_sequence_pre_tokenizer)
{
    json_t *j = load_json(TOK_PATH);
    json_t *seq = json_pack(
        "{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type", "Sequence",
        "pretokenizers", "type", "Split", "pattern", "Regex",
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
        "behavior", "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0,
        "trim_offsets", 1, "use_regex", 0);
    ck_assert_ptr_nonnull(seq);
    json_object_set_new(j, "pre_tokenizer", seq);
    json_object_set_new(j, "normalizer", json_pack("{s:s, s:[{s:s}]}", "type", "Sequence",
                                                   "normalizers", "type", "NFC"));
    check_variant_parity(j);
    json_decref(j);
}
END_TEST

/* ---- error paths ----------------------------------------------------------------- */

static void expect_load_error(const char *path, int code, const char *needle)
{
    eng_tokenizer *tok = (eng_tokenizer *)&tok;
    ssmd_err err = {0};
    ck_assert_int_eq(eng_tokenizer_load(path, &tok, &err), code);
    ck_assert_int_eq(err.code, code);
    ck_assert_ptr_null(tok);
    ck_assert_msg(strstr(err.msg, path) != NULL, "message names the file: %s", err.msg);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "message \"%s\" lacks \"%s\"", err.msg, needle);
}

/* The fixture with one field replaced (value stolen), then loaded. */
static void expect_variant_error(const char *section, const char *field, json_t *value, int code,
                                 const char *needle)
{
    json_t *j = load_json(TOK_PATH);
    json_t *obj = section ? json_object_get(j, section) : j;
    json_object_set_new(obj, field, value);
    char path[64];
    write_temp(j, path);
    expect_load_error(path, code, needle);
    unlink(path);
    json_decref(j);
}

START_TEST(test_bad_files)
{
    expect_load_error("tests/fixtures/tokenizer/no-such-file.json", SSMD_EIO, "cannot open");
    char path[64];
    snprintf(path, sizeof path, "/tmp/ssmd_test_tok_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "{\"model\": {\"type\": \"BPE\",", 25), 25);
    close(fd);
    expect_load_error(path, SSMD_EFORMAT, "invalid JSON");
    unlink(path);

    expect_variant_error("model", "type", json_string("WordPiece"), SSMD_EUNSUPPORTED, "WordPiece");
    expect_variant_error("model", "type", json_string("Unigram"), SSMD_EUNSUPPORTED, "Unigram");
    /* found by fuzz_tokenizer_load: a non-string reached memcpy as NULL */
    expect_variant_error("model", "continuing_subword_prefix", json_true(), SSMD_EFORMAT,
                         "continuing_subword_prefix is not a string");
    expect_variant_error("model", "end_of_word_suffix", json_integer(3), SSMD_EFORMAT,
                         "end_of_word_suffix is not a string");
    expect_variant_error(NULL, "normalizer", json_pack("{s:s}", "type", "BertNormalizer"),
                         SSMD_EUNSUPPORTED, "BertNormalizer");
    expect_variant_error(NULL, "normalizer", json_pack("{s:s}", "type", "Precompiled"),
                         SSMD_EUNSUPPORTED, "Precompiled");
    expect_variant_error(NULL, "pre_tokenizer", json_pack("{s:s}", "type", "BertPreTokenizer"),
                         SSMD_EUNSUPPORTED, "BertPreTokenizer");
    expect_variant_error(NULL, "pre_tokenizer",
                         json_pack("{s:s, s:[{s:s}, {s:s}]}", "type", "Sequence", "pretokenizers",
                                   "type", "Digits", "type", "UnicodeScripts"),
                         SSMD_EUNSUPPORTED, "UnicodeScripts");
    expect_variant_error(NULL, "pre_tokenizer",
                         json_pack("{s:s, s:{s:s}, s:s}", "type", "Split", "pattern", "Regex",
                                   "(unclosed", "behavior", "Isolated"),
                         SSMD_EFORMAT, "(unclosed");
    expect_variant_error(NULL, "pre_tokenizer",
                         json_pack("{s:s, s:{s:s}, s:s}", "type", "Split", "pattern", "Regex",
                                   "a", "behavior", "Sideways"),
                         SSMD_EFORMAT, "Sideways");
    expect_variant_error(NULL, "decoder", json_pack("{s:s}", "type", "WordPiece"),
                         SSMD_EUNSUPPORTED, "WordPiece");
    expect_variant_error(NULL, "decoder", json_pack("{s:s}", "type", "CTC"), SSMD_EUNSUPPORTED,
                         "CTC");
    expect_variant_error(NULL, "post_processor", json_pack("{s:s}", "type", "Weird"),
                         SSMD_EUNSUPPORTED, "Weird");
    expect_variant_error(NULL, "post_processor",
                         json_pack("{s:s, s:[{s:{s:s}}], s:{}}", "type", "TemplateProcessing",
                                   "single", "SpecialToken", "id", "<s>", "special_tokens"),
                         SSMD_EFORMAT, "single[0]");
    expect_variant_error(NULL, "model", json_pack("{s:s, s:{s:i}, s:[s]}", "type", "BPE", "vocab",
                                                  "a", 0, "merges", "a zz"),
                         SSMD_EFORMAT, "merges[0]");
    expect_variant_error(NULL, "model", json_pack("{s:s, s:{s:i, s:i}, s:[s]}", "type", "BPE",
                                                  "vocab", "a", 0, "b", 1, "merges", "a b"),
                         SSMD_EFORMAT, "merged token");
    expect_variant_error(NULL, "model", json_pack("{s:s, s:{s:s}, s:[]}", "type", "BPE", "vocab",
                                                  "a", "zero", "merges"),
                         SSMD_EFORMAT, "vocab");
    expect_variant_error(NULL, "model", json_pack("{s:s, s:{s:i}, s:[i]}", "type", "BPE", "vocab",
                                                  "a", 0, "merges", 7),
                         SSMD_EFORMAT, "merges[0]");
    expect_variant_error(NULL, "added_tokens", json_pack("[{s:s}]", "content", "x"),
                         SSMD_EFORMAT, "added_tokens[0]");
    expect_variant_error(NULL, "model", json_string("BPE"), SSMD_EFORMAT, "model");
}
END_TEST

/* ---- threads and speed ---------------------------------------------------------------- */

typedef struct thread_arg {
    const eng_tokenizer *tok;
    const json_t *cases;
    size_t bad;
} thread_arg;

static void *encode_all(void *p)
{
    thread_arg *a = p;
    for (int rep = 0; rep < 3; rep++)
        a->bad += encode_mismatches(a->tok, a->cases);
    return NULL;
}

START_TEST(test_concurrent_encode)
{
    eng_tokenizer *tok = load_ok(TOK_PATH);
    json_t *cases = load_json(CASES_PATH);
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg){tok, cases, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, encode_all, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_uint_eq(args[i].bad, 0);
    }
    json_decref(cases);
    eng_tokenizer_free(tok);
}
END_TEST

START_TEST(test_encode_100kb_fast_and_round_trips)
{
    eng_tokenizer *tok = load_ok(TOK_PATH);
    json_t *cases = load_json(CASES_PATH);
    /* ~100 KB of the fixture texts without special tokens or NUL:
     * decode(encode(x)) must then be NFC(x) */
    size_t cap = 110 * 1024, len = 0;
    char *big = malloc(cap);
    while (len < 100 * 1024) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(cases, "encode"), i, c) {
            const json_t *t = json_object_get(c, "text");
            size_t n = json_string_length(t);
            const char *s = json_string_value(t);
            if (strstr(s, "<|") || memchr(s, 0, n) || len + n + 1 > cap)
                continue;
            memcpy(big + len, s, n);
            len += n;
            big[len++] = '\n';
        }
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int32_t *ids = NULL;
    int n = eng_tokenizer_encode(tok, big, len, &ids);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    fprintf(stderr, "encode: %zu bytes -> %d ids in %.3f s (sanitized build)\n", len, n, secs);
    ck_assert_int_gt(n, (int)(len / 8));
    ck_assert_msg(secs < 1.0, "encoding 100 KB took %.3f s", secs);
    char *text = NULL;
    size_t text_len = 0, nfc_len = 0;
    ck_assert_int_eq(eng_tokenizer_decode(tok, ids, (size_t)n, 0, &text, &text_len), SSMD_OK);
    char *nfc = eng_unicode_nfc(big, len, &nfc_len);
    ck_assert_uint_eq(text_len, nfc_len);
    ck_assert_int_eq(memcmp(text, nfc, nfc_len), 0);
    free(nfc);
    free(text);
    free(ids);
    free(big);
    json_decref(cases);
    eng_tokenizer_free(tok);
}
END_TEST

/* Merges a word as characters with and without the cuts of bpe_cuts.c. */
static void encode_both_ways(eng_bpe *b, const char *text, eng_idvec *cut, eng_idvec *whole)
{
    eng_bpe_scratch s = {0};
    eng_bpe_encode_chars(b, text, strlen(text), &s, cut);
    uint64_t *join = b->join_key;
    b->join_key = NULL; /* NULL: every pair may join, the word is merged whole */
    eng_bpe_encode_chars(b, text, strlen(text), &s, whole);
    b->join_key = join;
    eng_bpe_scratch_free(&s);
}

/* A long word is merged piece by piece where no token can span a boundary;
 * that must give the whole word's tokens, on every family's vocab, and the
 * cuts must actually happen (else a long unsplit text is slow again). */
START_TEST(test_bpe_cuts_keep_the_whole_word_result)
{
    static const char *families[] = {"tokenizer", "tokenizer_mistral", "tokenizer_llama3",
                                     "tokenizer_falcon", "tokenizer_nfkc"};
    char text[8192] = "";
    for (int r = 0; strlen(text) + 200 < sizeof text; r++)
        strcat(text, r % 2 ? "\u2581And\u2581God\u2581said,\u2581Let\u2581there\u2581be\u2581light:"
                          : "and there was light. \xc3\xa9t\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 LORD\n");
    for (size_t f = 0; f < sizeof families / sizeof *families; f++) {
        char path[128];
        snprintf(path, sizeof path, "tests/fixtures/%s/tokenizer.json", families[f]);
        json_t *j = load_json(path);
        eng_bpe b;
        ssmd_err err = {0};
        ck_assert_msg(eng_bpe_load(&b, json_object_get(j, "model"), path, &err) == SSMD_OK, "%s",
                      err.msg);
        ck_assert_msg(b.join_key != NULL, "%s: no join set", path);
        eng_idvec cut = {0}, whole = {0};
        encode_both_ways(&b, text, &cut, &whole);
        ck_assert_uint_eq(cut.n, whole.n);
        ck_assert_msg(memcmp(cut.v, whole.v, cut.n * sizeof *cut.v) == 0, "%s: cuts changed ids", path);
        size_t may_cut = 0;
        for (int32_t i = 1; i < b.n_ids && i < 2000; i++)
            may_cut += !eng_bpe_may_join(&b, i - 1, i);
        ck_assert_msg(may_cut > 0, "%s: no pair of tokens can be cut", path);
        free(cut.v);
        free(whole.v);
        eng_bpe_free(&b);
        json_decref(j);
    }
}
END_TEST

/* A token built two ways keeps cuts when the ways agree on its first and
 * last starting symbols ("ab" + "c" and "a" + "bc"), and turns them off
 * when they do not ("x" + "yz" and "xy" + "z", where no merge builds "xy",
 * so "xy" itself may start a word). */
START_TEST(test_bpe_cuts_refused_when_leaves_disagree)
{
    json_t *model = json_pack("{s:s, s:{s:i, s:i, s:i, s:i, s:i, s:i}, s:[s, s, s, s]}", "type", "BPE",
                              "vocab", "a", 0, "b", 1, "c", 2, "ab", 3, "bc", 4, "abc", 5,
                              "merges", "a b", "b c", "ab c", "a bc");
    eng_bpe b;
    ssmd_err err = {0};
    ck_assert_int_eq(eng_bpe_load(&b, model, "agree.json", &err), SSMD_OK);
    ck_assert_ptr_nonnull(b.join_key);
    ck_assert_int_eq(eng_bpe_may_join(&b, 0, 1), 1); /* a|b */
    ck_assert_int_eq(eng_bpe_may_join(&b, 1, 2), 1); /* b|c */
    ck_assert_int_eq(eng_bpe_may_join(&b, 2, 0), 0); /* c|a: no token spans it */
    ck_assert_int_eq(eng_bpe_may_join(&b, 1, 0), 0);
    eng_bpe_free(&b);
    json_decref(model);
    model = json_pack("{s:s, s:{s:i, s:i, s:i, s:i, s:i, s:i}, s:[s, s, s]}", "type", "BPE",
                      "vocab", "x", 0, "y", 1, "z", 2, "yz", 3, "xy", 4, "xyz", 5, "merges", "y z",
                      "x yz", "xy z");
    ck_assert_int_eq(eng_bpe_load(&b, model, "disagree.json", &err), SSMD_OK);
    ck_assert_ptr_null(b.join_key);
    ck_assert_int_eq(eng_bpe_may_join(&b, 2, 0), 1);
    eng_bpe_free(&b);
    json_decref(model);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_load_vocab_and_added_tokens);
    tcase_add_test(tc, test_pretok_words);
    tcase_add_test(tc, test_encode_parity);
    tcase_add_test(tc, test_decode_and_detok_parity);
    tcase_add_test(tc, test_detok_holds_back_and_refuses_small_cap);
    tcase_add_test(tc, test_invalid_input);
    tcase_add_test(tc, test_merges_as_pairs);
    tcase_add_test(tc, test_bpe_cuts_keep_the_whole_word_result);
    tcase_add_test(tc, test_bpe_cuts_refused_when_leaves_disagree);
    tcase_add_test(tc, test_sequence_pre_tokenizer);
    tcase_add_test(tc, test_bad_files);
    tcase_add_test(tc, test_concurrent_encode);
    tcase_add_test(tc, test_encode_100kb_fast_and_round_trips);
    suite_add_tcase(s, tc);
    return s;
}
