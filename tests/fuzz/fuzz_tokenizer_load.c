/* fuzz_tokenizer_load.c - libFuzzer target: arbitrary bytes as
 * tokenizer.json, loaded with eng_tokenizer_load; an accepted tokenizer then
 * encodes and decodes a short text and decodes every id once.
 *
 * Test code only: never linked into ssmd.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/text/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fuzz_write_file("tokenizer.json", data, size, path, sizeof path);
    eng_tokenizer *tok = NULL;
    ssmd_err err = {0};
    if (eng_tokenizer_load(path, &tok, &err) != SSMD_OK) {
        if (!err.msg[0])
            abort();
        return 0;
    }
    static const char text[] = "Hello, world! caf\xc3\xa9 <|endoftext|> 123  \n\tend";
    int32_t *ids = NULL;
    int n = eng_tokenizer_encode(tok, text, sizeof text - 1, &ids);
    if (n >= 0) {
        char *out = NULL;
        size_t out_len = 0;
        if (eng_tokenizer_decode(tok, ids, (size_t)n, 0, &out, &out_len) == SSMD_OK)
            free(out);
        free(ids);
    }
    int nv = eng_tokenizer_vocab_size(tok);
    char piece[ENG_DETOK_PIECE_MAX];
    eng_detok d;
    eng_detok_init(&d, tok, 1);
    for (int32_t id = 0; id < nv && id < 4096; id++) {
        size_t len;
        eng_tokenizer_token_bytes(tok, id, &len);
        eng_detok_push(&d, id, piece, sizeof piece);
    }
    eng_detok_flush(&d, piece, sizeof piece);
    eng_tokenizer_free(tok);
    return 0;
}
