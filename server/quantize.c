/* quantize.c - `ssmd quantize IN OUT.gguf --type q8_0|q4_0|q4_k|f16|bf16|f32`:
 * reads a Mamba-1 model through the weights-source interface (a model
 * directory with config.json, safetensors and tokenizer.json, or a GGUF
 * file) and writes it as a GGUF file with its matrices block-quantized
 * (engine/weights/gguf_write.h), which `ssmd serve --model OUT.gguf` and
 * llama.cpp read.
 *
 * Three positional words and one flag: parsed here by hand rather than
 * through options.c's table, which describes the serving options.
 */
#include "server/quantize.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/model_config.h"
#include "engine/quant.h"
#include "engine/tensor.h"
#include "engine/weights/gguf_write.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: ssmd quantize IN OUT.gguf [--type q8_0|q4_0|q4_k|f16|bf16|f32]\n"
               "\n"
               "Writes the Mamba-1 model IN (a model directory: config.json, model.safetensors,\n"
               "tokenizer.json; or a GGUF file) as the GGUF file OUT.gguf with its matrices\n"
               "quantized to --type (default q8_0), or stored as f16/bf16 (rounded to nearest\n"
               "even); norms, conv, A, D and biases stay f32.\n"
               "A matrix whose rows are not whole blocks of the type falls back to q8_0, then\n"
               "f32.  A byte-level BPE tokenizer is carried into the file.\n");
}

/* The --type named `name` (the dtype table's names: "q8_0", "f32"...) if
 * a file can be written in it; -1 otherwise. */
static int type_named(const char *name)
{
    for (int dt = 0; dt < ENG_DTYPE_COUNT; dt++)
        if ((dt == ENG_DTYPE_F32 || dt == ENG_DTYPE_F16 || dt == ENG_DTYPE_BF16 ||
             eng_quant_can_write((eng_dtype)dt)) &&
            !strcmp(eng_dtype_info_of((eng_dtype)dt)->name, name))
            return dt;
    return -1;
}

/* dir/name as JSON, NULL (with a message on stderr) when it cannot be read;
 * *missing is set when the file does not exist. */
static json_t *load_json(const char *dir, const char *name, int *missing)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat sb;
    *missing = stat(path, &sb) != 0;
    if (*missing)
        return NULL;
    json_error_t jerr;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (!j)
        fprintf(stderr, "ssmd quantize: %s: line %d: %s\n", path, jerr.line, jerr.text);
    return j;
}

int srv_quantize_main(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *type = "q8_0";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            type = argv[++i];
        } else if (!strncmp(argv[i], "--type=", 7)) {
            type = argv[i] + 7;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "ssmd quantize: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!in) {
            in = argv[i];
        } else if (!out) {
            out = argv[i];
        } else {
            fprintf(stderr, "ssmd quantize: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    const int dt = type_named(type);
    if (!in || !out || dt < 0) {
        if (in && out)
            fprintf(stderr, "ssmd quantize: unknown --type '%s' (have: q8_0, q4_0, q4_k, f16, bf16, f32)\n",
                    type);
        usage(stderr);
        return 2;
    }
    eng_weights *w = NULL;
    ssmd_err err = {0};
    if (eng_weights_open(in, &w, &err) != SSMD_OK) {
        fprintf(stderr, "ssmd quantize: %s\n", err.msg);
        return 1;
    }
    /* A GGUF file carries its config and tokenizer; a directory has files. */
    json_t *config = NULL, *tokenizer = NULL;
    int missing = 0, rc = 1;
    if (eng_weights_config(w)) {
        config = json_incref((json_t *)eng_weights_config(w));
        tokenizer = json_incref((json_t *)eng_weights_tokenizer(w));
    } else {
        char path[4096];
        snprintf(path, sizeof path, "%s/config.json", in);
        config = eng_cfg_load_json(path, &err); /* Hugging Face's bare Infinity included */
        if (!config) {
            fprintf(stderr, "ssmd quantize: %s\n", err.msg);
            goto done;
        }
        tokenizer = load_json(in, "tokenizer.json", &missing);
        if (!tokenizer && !missing)
            goto done;
    }
    int quantized = 0;
    if (eng_gguf_save(w, config, tokenizer, (eng_dtype)dt, out, &quantized, &err) != SSMD_OK) {
        fprintf(stderr, "ssmd quantize: %s\n", err.msg);
        goto done;
    }
    fprintf(stderr, "ssmd quantize: wrote %s: %d tensors, %d of them quantized (%s)%s\n", out,
            eng_weights_count(w), quantized, type,
            tokenizer ? ", with the tokenizer" : " (no tokenizer.json: token-id prompts only)");
    rc = 0;
done:
    json_decref(config);
    json_decref(tokenizer);
    eng_weights_close(w);
    return rc;
}
