/* fuzz_tokenizer.c - libFuzzer target: the fixture tokenizer
 * (tests/fixtures/tokenizer/tokenizer.json, loaded once) on arbitrary
 * bytes.  The first byte picks the mode: encode the rest as text (valid
 * UTF-8 must encode, and its ids must decode back without error), or read
 * the rest as little-endian int32 ids (in range or not) for decode and for
 * the incremental detokenizer, whose pieces must concatenate to the decode.
 *
 * Test code only: never linked into ssmd.  Run from the repository root.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/text/tokenizer.h"

#define FUZZ_TOKENIZER "tests/fixtures/tokenizer/tokenizer.json"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static eng_tokenizer *fixture;

static void fixture_free(void)
{
    eng_tokenizer_free(fixture);
}

static void run_ids(const uint8_t *data, size_t size, int skip)
{
    size_t n = size / 4;
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    int nv = eng_tokenizer_vocab_size(fixture);
    int all_valid = 1;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)data[4 * i] | (uint32_t)data[4 * i + 1] << 8 | (uint32_t)data[4 * i + 2] << 16 |
                     (uint32_t)data[4 * i + 3] << 24;
        /* mostly in range, sometimes not (negative, just past the end) */
        ids[i] = (v & 0x80000000u) ? (int32_t)v : (int32_t)(v % (uint32_t)(nv + 2));
        if (ids[i] < 0 || ids[i] >= nv)
            all_valid = 0;
    }
    char *out = NULL;
    size_t out_len = 0;
    int rc = eng_tokenizer_decode(fixture, ids, n, skip, &out, &out_len);
    if (all_valid && rc != SSMD_OK)
        abort();
    size_t cap = eng_tokenizer_piece_max(fixture);
    char *piece = malloc(cap);
    char *cat = malloc(n * cap + cap + 1);
    size_t cat_len = 0;
    eng_detok d;
    eng_detok_init(&d, fixture, skip);
    for (size_t i = 0; i < n; i++) {
        int k = eng_detok_push(&d, ids[i], piece, cap);
        if (k < 0)
            continue;
        if ((size_t)k >= cap || piece[k] != '\0')
            abort(); /* (a piece may hold U+0000 itself) */
        memcpy(cat + cat_len, piece, (size_t)k);
        cat_len += (size_t)k;
    }
    int k = eng_detok_flush(&d, piece, cap);
    memcpy(cat + cat_len, piece, (size_t)k);
    cat_len += (size_t)k;
    if (rc == SSMD_OK && all_valid && (cat_len != out_len || memcmp(cat, out, out_len) != 0))
        abort(); /* the stream's pieces must add up to the decode */
    free(cat);
    free(piece);
    free(out);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fixture) {
        ssmd_err err = {0};
        if (eng_tokenizer_load(FUZZ_TOKENIZER, &fixture, &err) != SSMD_OK) {
            fprintf(stderr, "fuzz_tokenizer: %s (run from the repository root)\n", err.msg);
            abort();
        }
        atexit(fixture_free);
    }
    if (size == 0)
        return 0;
    int mode = data[0] % 3;
    data++, size--;
    if (mode == 0) {
        int32_t *ids = NULL;
        int n = eng_tokenizer_encode(fixture, (const char *)data, size, &ids);
        if (n < 0)
            return 0;
        char *out = NULL;
        size_t out_len = 0;
        if (eng_tokenizer_decode(fixture, ids, (size_t)n, 0, &out, &out_len) != SSMD_OK)
            abort(); /* ids from encode are always in range */
        free(out);
        free(ids);
        return 0;
    }
    run_ids(data, size, mode == 2);
    return 0;
}
