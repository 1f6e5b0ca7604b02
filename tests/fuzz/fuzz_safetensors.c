/* fuzz_safetensors.c - libFuzzer target: arbitrary bytes as a model
 * directory's model.safetensors, opened with eng_weights_open.  When the
 * header is accepted every tensor is looked up and (when small) converted
 * to f32, so ASan sees any byte the validation let through out of bounds.
 *
 * Test code only: never linked into ssmd.
 */
#include <stdint.h>
#include <stdlib.h>

#include "engine/tensor.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fuzz_write_file("model.safetensors", data, size, path, sizeof path);
    eng_weights *w = NULL;
    ssmd_err err = {0};
    if (eng_weights_open(fuzz_dir(), &w, &err) != SSMD_OK) {
        if (!err.msg[0])
            abort(); /* every error must say what failed */
        return 0;
    }
    int n = eng_weights_count(w);
    for (int i = 0; i < n; i++) {
        const eng_tensor *t = eng_weights_at(w, i);
        if (eng_weights_find(w, t->name) == NULL)
            abort();
        if (t->dtype == ENG_DTYPE_OTHER || t->numel > 4096)
            continue;
        float *dst = malloc(((size_t)t->numel + 1) * sizeof *dst);
        eng_tensor_to_f32(t, dst);
        free(dst);
        const eng_tensor *got = NULL;
        ssmd_err e2 = {0};
        eng_weights_get(w, t->name, t->ndim, t->shape, &got, &e2);
    }
    eng_weights_close(w);
    return 0;
}
