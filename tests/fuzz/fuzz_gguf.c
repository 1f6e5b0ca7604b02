/* fuzz_gguf.c - libFuzzer target: arbitrary bytes as a model.gguf, opened
 * with eng_weights_open (the GGUF source).  When the file is accepted every
 * tensor is looked up and (when small and plain) converted to f32, and the
 * config it carries is read by the families, so ASan sees any byte the
 * validation let through out of bounds.
 *
 * Test code only: never linked into ssmd.
 */
#include <stdint.h>
#include <stdlib.h>

#include "engine/model_config.h"
#include "engine/text/tokenizer.h"
#include "engine/tensor.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fuzz_write_file("model.gguf", data, size, path, sizeof path);
    eng_weights *w = NULL;
    ssmd_err err = {0};
    if (eng_weights_open(path, &w, &err) != SSMD_OK) {
        if (!err.msg[0])
            abort(); /* every error must say what failed */
        return 0;
    }
    for (int i = 0; i < eng_weights_count(w); i++) {
        const eng_tensor *t = eng_weights_at(w, i);
        if (eng_weights_find(w, t->name) == NULL)
            abort();
        if (eng_dtype_info_of(t->dtype)->block_elems != 1 || t->numel > 4096)
            continue;
        float *dst = malloc(((size_t)t->numel + 1) * sizeof *dst);
        eng_tensor_to_f32(t, dst);
        free(dst);
    }
    const json_t *tj = eng_weights_tokenizer(w);
    eng_tokenizer *tok = NULL;
    ssmd_err e3 = {0};
    if (tj && eng_tokenizer_from_json(tj, "model.gguf", &tok, &e3) != SSMD_OK && !e3.msg[0])
        abort();
    eng_tokenizer_free(tok);
    eng_model_config cfg;
    ssmd_err e2 = {0};
    if (eng_model_config_from_json(eng_weights_config(w), "model.gguf", &cfg, &e2) != SSMD_OK &&
        !e2.msg[0])
        abort();
    eng_weights_close(w);
    return 0;
}
