/* fuzz_tokenizer_families.c - libFuzzer target: the family tokenizers of
 * tests/fixtures/tokenizer_<family>/ (Llama-3 regex Split, Mistral Metaspace
 * with byte fallback, Falcon Punctuation/Digits/ByteLevel, NFKC/Lowercase
 * with suffixes and added-token options; loaded once) on arbitrary bytes.
 * Byte 0 picks the family, byte 1 the mode: encode the rest as text (valid
 * UTF-8 must encode, with and without specials, and its ids must decode), or
 * read it as int32 ids for decode and the incremental detokenizer (every
 * piece valid UTF-8, none longer than piece_max).
 *
 * Test code only: never linked into ssmd.  Run from the repository root.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/text/tokenizer.h"
#include "engine/text/unicode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const families[] = {"llama3", "mistral", "falcon", "nfkc"};
static eng_tokenizer *toks[4];

static void toks_free(void)
{
    for (int i = 0; i < 4; i++)
        eng_tokenizer_free(toks[i]);
}

static void load_all(void)
{
    for (int i = 0; i < 4; i++) {
        char path[128];
        ssmd_err err = {0};
        snprintf(path, sizeof path, "tests/fixtures/tokenizer_%s/tokenizer.json", families[i]);
        if (eng_tokenizer_load(path, &toks[i], &err) != SSMD_OK) {
            fprintf(stderr, "fuzz_tokenizer_families: %s (run from the repository root)\n", err.msg);
            abort();
        }
    }
    atexit(toks_free);
}

static void run_text(const eng_tokenizer *tok, const char *s, size_t n)
{
    for (int special = 0; special < 2; special++) {
        int32_t *ids = NULL;
        int k = eng_tokenizer_encode_special(tok, s, n, special, &ids);
        if (k < 0 && eng_utf8_valid(s, n))
            abort(); /* valid text always encodes */
        if (k >= 0) {
            char *out = NULL;
            size_t len = 0;
            if (eng_tokenizer_decode(tok, ids, (size_t)k, special, &out, &len) != SSMD_OK ||
                !eng_utf8_valid(out, len))
                abort();
            free(out);
        }
        free(ids);
    }
}

static void run_ids(const eng_tokenizer *tok, const uint8_t *d, size_t size, int skip)
{
    size_t n = size / 2;
    int nv = eng_tokenizer_vocab_size(tok);
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    for (size_t i = 0; i < n; i++) /* 16-bit ids cover these small vocabs, and a few past them */
        ids[i] = (int32_t)((d[2 * i] | d[2 * i + 1] << 8) % (nv + 3));
    char *out = NULL;
    size_t len = 0;
    int rc = eng_tokenizer_decode(tok, ids, n, skip, &out, &len);
    if (rc == SSMD_OK && !eng_utf8_valid(out, len))
        abort();
    free(out);
    size_t cap = eng_tokenizer_piece_max(tok);
    char *piece = malloc(cap);
    eng_detok dt;
    eng_detok_init(&dt, tok, skip);
    for (size_t i = 0; i <= n; i++) {
        int k = i < n ? eng_detok_push(&dt, ids[i], piece, cap) : eng_detok_flush(&dt, piece, cap);
        if (k < 0) {
            if (i < n && ids[i] < nv)
                abort(); /* an id in range always fits in piece_max */
            continue;
        }
        if ((size_t)k >= cap || !eng_utf8_valid(piece, (size_t)k))
            abort();
    }
    free(piece);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!toks[0])
        load_all();
    if (size < 2)
        return 0;
    const eng_tokenizer *tok = toks[data[0] % 4];
    switch (data[1] % 3) {
    case 0:
        run_text(tok, (const char *)data + 2, size - 2);
        break;
    default:
        run_ids(tok, data + 2, size - 2, data[1] % 3 == 2);
        break;
    }
    return 0;
}
