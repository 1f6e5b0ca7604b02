/* fuzz_safetensors_index.c - libFuzzer target: a sharded model directory.
 * The input is model.safetensors.index.json, a NUL byte, then the bytes of
 * the one shard file "model-1.safetensors" (the index may name it, other
 * files that do not exist, or names that try to leave the directory).
 * eng_weights_open must refuse or hand out tensors that lie inside their
 * shard, each listed by the index in the shard it is in.
 *
 * Test code only: never linked into ssmd.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tensor.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t ilen = nul ? (size_t)(nul - data) : size;
    char path[512];
    fuzz_write_file("model.safetensors.index.json", data, ilen, path, sizeof path);
    if (nul)
        fuzz_write_file("model-1.safetensors", nul + 1, size - ilen - 1, path, sizeof path);
    else
        fuzz_write_file("model-1.safetensors", data, 0, path, sizeof path);
    eng_weights *w = NULL;
    ssmd_err err = {0};
    if (eng_weights_open(fuzz_dir(), &w, &err) != SSMD_OK) {
        if (!err.msg[0])
            abort();
        return 0;
    }
    for (int i = 0; i < eng_weights_count(w); i++) {
        const eng_tensor *t = eng_weights_at(w, i);
        if (t->dtype == ENG_DTYPE_OTHER || t->numel > 4096)
            continue;
        float *dst = malloc(((size_t)t->numel + 1) * sizeof *dst);
        eng_tensor_to_f32(t, dst);
        free(dst);
    }
    eng_weights_close(w);
    return 0;
}
