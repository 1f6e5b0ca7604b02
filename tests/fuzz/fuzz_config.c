/* fuzz_config.c - libFuzzer target: arbitrary bytes as config.json, read
 * with eng_model_config_load.  An accepted config must hold the sane values
 * the header promises (positive sizes).
 *
 * Test code only: never linked into ssmd.
 */
#include <stdint.h>
#include <stdlib.h>

#include "engine/model_config.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[512];
    fuzz_write_file("config.json", data, size, path, sizeof path);
    eng_model_config cfg;
    ssmd_err err = {0};
    if (eng_model_config_load(path, &cfg, &err) != SSMD_OK) {
        if (!err.msg[0])
            abort();
        return 0;
    }
    if (cfg.d_model <= 0 || cfg.n_layer <= 0 || cfg.vocab_size <= 0)
        abort();
    return 0;
}
