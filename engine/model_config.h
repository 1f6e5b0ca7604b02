/* model_config.h - a model directory's config.json, read into a plain struct.
 *
 * The file is parsed here; which family it describes is decided once, by
 * the architecture registry (engine/arch.h): each family (models/) reads
 * its own keys into cfg->arch with the reader helpers below, and fills the
 * shared fields every language model has.  Keys are read with their
 * library defaults when absent, type- and range-checked; the first problem
 * becomes one error naming the file and the key.  Never touches weights.
 */
#ifndef SSMD_MODEL_CONFIG_H
#define SSMD_MODEL_CONFIG_H

#include <jansson.h>

#include "engine/error.h"

struct eng_arch;

/* Room for a family's own hyper-parameters (models/<family>.h defines the
 * struct and checks that it fits). */
#define ENG_ARCH_CONFIG_BYTES 128

typedef struct eng_model_config {
    const struct eng_arch *arch; /* the family that read this config */
    char model_type[32];  /* "mamba" (also for the original layout), "s4d", "s4" */
    int d_model;          /* residual width */
    int n_layer;
    int vocab_size;       /* logits width; embedding rows may be more */
    int tie_embeddings;   /* LM head = embedding (an absent lm_head.weight too) */
    float norm_eps;       /* of every norm in the model */
    int eos_token_id;     /* -1 when unknown */
    int bos_token_id;     /* -1 when unknown */
    /* The family's own numbers, read only by its models/ file. */
    _Alignas(8) unsigned char family[ENG_ARCH_CONFIG_BYTES];
} eng_model_config;

/* Reads `path` (a config.json).  Returns SSMD_OK, or SSMD_EIO / SSMD_EFORMAT
 * / SSMD_EUNSUPPORTED with err->msg naming the file and the key or JSON
 * problem (with line and column for syntax errors); *cfg is untouched on
 * error.  Values must be positive and sane (no zero layers, no width that
 * overflows int).  Any thread. */
int eng_model_config_load(const char *path, eng_model_config *cfg, ssmd_err *err);

/* The same from a parsed config object; origin (a path) is named in the
 * messages.  For a config the weights file carries (GGUF). */
int eng_model_config_from_json(const json_t *root, const char *origin, eng_model_config *cfg,
                               ssmd_err *err);

/* ---- reader helpers for the families' config parsers ----------------------- */

#define ENG_CFG_DIM_MAX (1 << 20) /* larger than any real model dimension */

typedef struct eng_cfg_reader {
    const char *path;   /* named in every message */
    const char *prefix; /* "" or "ssm_cfg." for nested keys */
    ssmd_err *err;
} eng_cfg_reader;

/* Each reads `key` of obj into *out, or def when the key is absent, and
 * returns SSMD_OK or SSMD_EFORMAT naming path, prefix and key. */
/* An integer in [lo, hi]; integral JSON reals (768.0) count, as in Python. */
int eng_cfg_int(const eng_cfg_reader *r, const json_t *obj, const char *key, int def, int lo,
                int hi, int *out);
/* A number in (lo, hi]. */
int eng_cfg_num(const eng_cfg_reader *r, const json_t *obj, const char *key, double def, double lo,
                double hi, double *out);
int eng_cfg_bool(const eng_cfg_reader *r, const json_t *obj, const char *key, int def, int *out);
/* *out points into obj. */
int eng_cfg_str(const eng_cfg_reader *r, const json_t *obj, const char *key, const char *def,
                const char **out);
/* A token id: an integer, a list of integers (the first counts), or null
 * (-1, unknown). */
int eng_cfg_token(const eng_cfg_reader *r, const json_t *obj, const char *key, int def, int *out);
/* A config.json file as a JSON object, Python's bare Infinity / NaN
 * literals read as the strings "Infinity" / "NaN" (see
 * eng_cfg_json_number); NULL with err naming the file and line. */
json_t *eng_cfg_load_json(const char *path, ssmd_err *err);
/* A JSON number, or one of the literals Infinity / -Infinity that Python
 * writes (they reach the families as those strings): 1 and *out, else 0. */
int eng_cfg_json_number(const json_t *v, double *out);
/* Every key of `required` must be present (SSMD_EFORMAT naming the first
 * missing one and `what` needs it). */
int eng_cfg_require(const eng_cfg_reader *r, const json_t *obj, const char *const *required,
                    const char *what);

#endif
