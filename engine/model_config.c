/* model_config.c - reads a Mamba config.json (Hugging Face `MambaConfig`, or
 * the original state-spaces/mamba layout) into eng_model_config.
 *
 * Every key that changes the math is read with its library default when
 * absent, type-checked and range-checked; the first problem becomes one error
 * naming the file and the key.  Keys that only matter for training
 * (initialisation, dropout...) are ignored.  This file never touches weights
 * and never guesses: a value it cannot honour (LayerNorm instead of RMSNorm,
 * another activation, Mamba-2 blocks) is refused, not approximated.
 */
#include "engine/model_config.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG_MAX_BYTES (16 << 20) /* a config.json is a few KB */
#define CFG_DIM_MAX (1 << 20)    /* larger than any real model dimension */

typedef struct cfg_reader {
    const char *path;   /* named in every message */
    const char *prefix; /* "" or "ssm_cfg." for nested keys */
    ssmd_err *err;
} cfg_reader;

/* Integer key in [lo, hi], *out = def when absent.  Integral JSON reals
 * (768.0) are accepted as Python would; anything else is a type error. */
static int cfg_int(const cfg_reader *r, const json_t *obj, const char *key, int def, int lo, int hi,
                   int *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return SSMD_OK;
    }
    double d;
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)))
        d = json_real_value(v);
    else
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: '%s%s' must be an integer", r->path,
                            r->prefix, key);
    if (d < lo || d > hi)
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: '%s%s' is %.0f, must be between %d and %d",
                            r->path, r->prefix, key, d, lo, hi);
    *out = (int)d;
    return SSMD_OK;
}

/* Number key in (lo, hi] (strictly above lo), *out = def when absent. */
static int cfg_num(const cfg_reader *r, const json_t *obj, const char *key, double def, double lo,
                   double hi, double *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return SSMD_OK;
    }
    if (!json_is_number(v))
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: '%s%s' must be a number", r->path,
                            r->prefix, key);
    double d = json_number_value(v);
    if (!(d > lo && d <= hi))
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: '%s%s' is %g, must be above %g and at most %g",
                            r->path, r->prefix, key, d, lo, hi);
    *out = d;
    return SSMD_OK;
}

static int cfg_bool(const cfg_reader *r, const json_t *obj, const char *key, int def, int *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return SSMD_OK;
    }
    if (!json_is_boolean(v))
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: '%s%s' must be a boolean (true or false)",
                            r->path, r->prefix, key);
    *out = json_is_true(v);
    return SSMD_OK;
}

/* String key; *out = def when absent (pointer into obj). */
static int cfg_str(const cfg_reader *r, const json_t *obj, const char *key, const char *def,
                   const char **out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return SSMD_OK;
    }
    if (!json_is_string(v))
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: '%s%s' must be a string", r->path,
                            r->prefix, key);
    *out = json_string_value(v);
    return SSMD_OK;
}

/* time_step_rank / dt_rank: "auto" = ceil(d_model / 16), or an integer. */
static int cfg_rank(const cfg_reader *r, const json_t *obj, const char *key, int d_model, int *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0)) {
        *out = (d_model + 15) / 16;
        return SSMD_OK;
    }
    if (!json_is_number(v))
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: '%s%s' must be \"auto\" or an integer",
                            r->path, r->prefix, key);
    return cfg_int(r, obj, key, 0, 1, CFG_DIM_MAX, out);
}

/* bos/eos token id: an integer, a list of integers (the first counts), or
 * null (-1, unknown). */
static int cfg_token(const cfg_reader *r, const json_t *obj, const char *key, int def, int *out)
{
    const json_t *v = json_object_get(obj, key);
    if (json_is_null(v)) {
        *out = -1;
        return SSMD_OK;
    }
    if (json_is_array(v) && json_array_size(v) > 0) {
        json_t *wrap = json_pack("{sO}", key, json_array_get(v, 0));
        int rc = cfg_int(r, wrap, key, def, 0, INT_MAX, out);
        json_decref(wrap);
        return rc;
    }
    if (json_is_array(v))
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: '%s' is an empty list", r->path, key);
    return cfg_int(r, obj, key, def, 0, INT_MAX, out);
}

/* int(expand * d_model), as Python computes it. */
static int cfg_inner(const cfg_reader *r, double expand, int d_model, const char *key, int *out)
{
    double d = floor(expand * (double)d_model);
    if (d < 1 || d > CFG_DIM_MAX)
        return ssmd_err_set(r->err, SSMD_EFORMAT,
                            "%s: '%s%s' %g times the model width %d gives an inner width of %.0f, "
                            "must be between 1 and %d", r->path, r->prefix, key, expand, d_model, d,
                            CFG_DIM_MAX);
    *out = (int)d;
    return SSMD_OK;
}

static int cfg_load_hf(const cfg_reader *r, const json_t *root, eng_model_config *c)
{
    const char *type = NULL, *act = NULL;
    int rc, fp32;
    double expand, eps;
    if ((rc = cfg_str(r, root, "model_type", NULL, &type)) != SSMD_OK)
        return rc;
    if (!type)
        return ssmd_err_set(r->err, SSMD_EFORMAT,
                            "%s: no 'model_type' (expected \"mamba\") and no 'd_model'", r->path);
    if (strcmp(type, "mamba") != 0)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'model_type' \"%.64s\" is not supported (expected \"mamba\")",
                            r->path, type);
    if ((rc = cfg_str(r, root, "hidden_act", "silu", &act)) != SSMD_OK)
        return rc;
    if (strcmp(act, "silu") != 0 && strcmp(act, "swish") != 0)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'hidden_act' \"%.64s\" is not supported (only \"silu\")", r->path,
                            act);
    c->layout = ENG_LAYOUT_HF;
    if ((rc = cfg_int(r, root, "vocab_size", 50280, 1, CFG_DIM_MAX, &c->vocab_size)) ||
        (rc = cfg_int(r, root, "hidden_size", 768, 1, CFG_DIM_MAX, &c->d_model)) ||
        (rc = cfg_int(r, root, "state_size", 16, 1, CFG_DIM_MAX, &c->d_state)) ||
        (rc = cfg_int(r, root, "num_hidden_layers", 32, 1, CFG_DIM_MAX, &c->n_layer)) ||
        (rc = cfg_int(r, root, "conv_kernel", 4, 1, CFG_DIM_MAX, &c->d_conv)) ||
        (rc = cfg_num(r, root, "expand", 2.0, 0.0, CFG_DIM_MAX, &expand)) ||
        (rc = cfg_inner(r, expand, c->d_model, "expand", &c->d_inner)) ||
        /* a saved intermediate_size overrides expand, as in transformers */
        (rc = cfg_int(r, root, "intermediate_size", c->d_inner, 1, CFG_DIM_MAX, &c->d_inner)) ||
        (rc = cfg_rank(r, root, "time_step_rank", c->d_model, &c->dt_rank)) ||
        (rc = cfg_bool(r, root, "use_bias", 0, &c->use_bias)) ||
        (rc = cfg_bool(r, root, "use_conv_bias", 1, &c->use_conv_bias)) ||
        (rc = cfg_bool(r, root, "tie_word_embeddings", 1, &c->tie_embeddings)) ||
        (rc = cfg_bool(r, root, "residual_in_fp32", 1, &fp32)) ||
        (rc = cfg_num(r, root, "layer_norm_epsilon", 1e-5, 0.0, 1.0, &eps)) ||
        (rc = cfg_token(r, root, "bos_token_id", 0, &c->bos_token_id)) ||
        (rc = cfg_token(r, root, "eos_token_id", 0, &c->eos_token_id)))
        return rc;
    c->norm_eps = (float)eps;
    return SSMD_OK;
}

/* state-spaces/mamba `MambaConfig` (mamba_ssm.models.config_mamba). */
static int cfg_load_original(cfg_reader *r, const json_t *root, eng_model_config *c)
{
    int rc, rms = 1, fp32 = 1, pad = 8, d_inter = 0;
    double expand;
    const char *layer = NULL;
    c->layout = ENG_LAYOUT_ORIGINAL;
    if ((rc = cfg_int(r, root, "d_model", 2560, 1, CFG_DIM_MAX, &c->d_model)) ||
        (rc = cfg_int(r, root, "n_layer", 64, 1, CFG_DIM_MAX, &c->n_layer)) ||
        (rc = cfg_int(r, root, "vocab_size", 50277, 1, CFG_DIM_MAX, &c->vocab_size)) ||
        (rc = cfg_int(r, root, "pad_vocab_size_multiple", 8, 1, CFG_DIM_MAX, &pad)) ||
        (rc = cfg_int(r, root, "d_intermediate", 0, 0, CFG_DIM_MAX, &d_inter)) ||
        (rc = cfg_bool(r, root, "rms_norm", 1, &rms)) ||
        (rc = cfg_bool(r, root, "residual_in_fp32", 1, &fp32)) ||
        (rc = cfg_bool(r, root, "tie_embeddings", 1, &c->tie_embeddings)) ||
        (rc = cfg_token(r, root, "bos_token_id", -1, &c->bos_token_id)) ||
        (rc = cfg_token(r, root, "eos_token_id", -1, &c->eos_token_id)))
        return rc;
    if (d_inter != 0)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'd_intermediate' %d (MLP blocks between mixers) is not supported",
                            r->path, d_inter);
    if (!rms)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'rms_norm' false (LayerNorm) is not supported", r->path);
    const json_t *attn = json_object_get(root, "attn_layer_idx");
    if (attn && !(json_is_array(attn) && json_array_size(attn) == 0))
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'attn_layer_idx' (hybrid attention layers) is not supported",
                            r->path);
    const json_t *ssm = json_object_get(root, "ssm_cfg");
    json_t *empty = NULL;
    if (!ssm || json_is_null(ssm))
        ssm = empty = json_object();
    else if (!json_is_object(ssm))
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: 'ssm_cfg' must be an object", r->path);
    r->prefix = "ssm_cfg.";
    if (!(rc = cfg_str(r, ssm, "layer", "Mamba1", &layer)) && strcmp(layer, "Mamba1") != 0)
        rc = ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                          "%s: 'ssm_cfg.layer' \"%.64s\" is not supported (only \"Mamba1\")",
                          r->path, layer);
    if (rc || (rc = cfg_int(r, ssm, "d_state", 16, 1, CFG_DIM_MAX, &c->d_state)) ||
        (rc = cfg_int(r, ssm, "d_conv", 4, 1, CFG_DIM_MAX, &c->d_conv)) ||
        (rc = cfg_num(r, ssm, "expand", 2.0, 0.0, CFG_DIM_MAX, &expand)) ||
        (rc = cfg_inner(r, expand, c->d_model, "expand", &c->d_inner)) ||
        (rc = cfg_rank(r, ssm, "dt_rank", c->d_model, &c->dt_rank)) ||
        (rc = cfg_bool(r, ssm, "bias", 0, &c->use_bias)) ||
        (rc = cfg_bool(r, ssm, "conv_bias", 1, &c->use_conv_bias))) {
        json_decref(empty);
        return rc;
    }
    json_decref(empty);
    r->prefix = "";
    c->norm_eps = 1e-5f; /* mamba_ssm's MixerModel default; not in the config */
    return SSMD_OK;
}

/* Our S4 / S4D layout (proto/s4-format.md).  Sizes are required; the
 * options that change the math have the reference implementation's
 * defaults and anything we cannot honour is refused. */
static int cfg_load_s4(const cfg_reader *r, const json_t *root, const char *type,
                       eng_model_config *c)
{
    const char *act = NULL, *disc = NULL, *final_act = NULL;
    int rc, prenorm = 1, s4 = strcmp(type, "s4") == 0;
    double eps;
    static const char *const required[] = {"d_model", "n_layer", "vocab_size"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (!json_object_get(root, required[i]))
            return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: no '%s' (required for model_type \"%s\")",
                                r->path, required[i], type);
    snprintf(c->model_type, sizeof c->model_type, "%s", type);
    c->layout = ENG_LAYOUT_HF;
    if ((rc = cfg_int(r, root, "d_model", 0, 1, CFG_DIM_MAX, &c->d_model)) ||
        (rc = cfg_int(r, root, "n_layer", 0, 1, CFG_DIM_MAX, &c->n_layer)) ||
        (rc = cfg_int(r, root, "vocab_size", 0, 1, CFG_DIM_MAX, &c->vocab_size)) ||
        (rc = cfg_int(r, root, "d_state", 64, 2, 65536, &c->d_state)) ||
        (rc = cfg_int(r, root, "rank", 1, 1, 64, &c->s4_rank)) ||
        (rc = cfg_str(r, root, "discretization", s4 ? "bilinear" : "zoh", &disc)) ||
        (rc = cfg_str(r, root, "activation", "gelu", &act)) ||
        (rc = cfg_str(r, root, "final_act", "glu", &final_act)) ||
        (rc = cfg_bool(r, root, "prenorm", 1, &prenorm)) ||
        (rc = cfg_bool(r, root, "tie_embeddings", 1, &c->tie_embeddings)) ||
        (rc = cfg_num(r, root, "layer_norm_epsilon", 1e-5, 0.0, 1.0, &eps)) ||
        (rc = cfg_token(r, root, "bos_token_id", -1, &c->bos_token_id)) ||
        (rc = cfg_token(r, root, "eos_token_id", -1, &c->eos_token_id)))
        return rc;
    if (c->d_state % 2)
        return ssmd_err_set(r->err, SSMD_EFORMAT,
                            "%s: 'd_state' %d must be even (N/2 complex conjugate pairs)", r->path,
                            c->d_state);
    if (strcmp(disc, "bilinear") == 0)
        c->s4_bilinear = 1;
    else if (strcmp(disc, "zoh") != 0 || s4)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'discretization' \"%.64s\" is not supported (%s)", r->path, disc,
                            s4 ? "s4 has only \"bilinear\"" : "\"zoh\" or \"bilinear\"");
    if (strcmp(act, "gelu") != 0)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'activation' \"%.64s\" is not supported (only \"gelu\")", r->path,
                            act);
    if (strcmp(final_act, "glu") != 0)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'final_act' \"%.64s\" is not supported (only \"glu\")", r->path,
                            final_act);
    if (!prenorm)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'prenorm' false (post-norm blocks) is not supported", r->path);
    if (!s4)
        c->s4_rank = 0;
    c->d_inner = c->d_model;
    c->norm_eps = (float)eps;
    return SSMD_OK;
}

/* Reads the whole file (bounded) into a malloc'd buffer. */
static int cfg_read_file(const char *path, char **buf, size_t *len, ssmd_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ssmd_err_set(err, SSMD_EIO, "%s: cannot open: %s", path, strerror(errno));
    int rc = SSMD_OK;
    char *b = malloc(CFG_MAX_BYTES + 1);
    if (!b) {
        fclose(f);
        return ssmd_err_set(err, SSMD_ENOMEM, "%s: out of memory reading it", path);
    }
    size_t n = fread(b, 1, CFG_MAX_BYTES + 1, f);
    if (ferror(f))
        rc = ssmd_err_set(err, SSMD_EIO, "%s: read error: %s", path, strerror(errno));
    else if (n > CFG_MAX_BYTES)
        rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: larger than %d MB, not a config", path,
                          CFG_MAX_BYTES >> 20);
    fclose(f);
    if (rc != SSMD_OK) {
        free(b);
        return rc;
    }
    *buf = b;
    *len = n;
    return SSMD_OK;
}

int eng_model_config_load(const char *path, eng_model_config *cfg, ssmd_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = cfg_read_file(path, &buf, &len, err);
    if (rc != SSMD_OK)
        return rc;
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (!root)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: bad JSON at line %d, column %d: %s", path,
                            jerr.line, jerr.column, jerr.text);
    eng_model_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.model_type, sizeof c.model_type, "mamba");
    cfg_reader r = {path, "", err};
    const json_t *type = json_is_object(root) ? json_object_get(root, "model_type") : NULL;
    const char *tname = json_is_string(type) ? json_string_value(type) : "";
    if (!json_is_object(root))
        rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: top level is not a JSON object", path);
    else if (!strcmp(tname, "s4d") || !strcmp(tname, "s4"))
        rc = cfg_load_s4(&r, root, tname, &c);
    else if (json_object_get(root, "d_model"))
        rc = cfg_load_original(&r, root, &c);
    else
        rc = cfg_load_hf(&r, root, &c);
    json_decref(root);
    if (rc != SSMD_OK)
        return rc;
    /* The recurrent state (d_inner x d_state, d_inner x d_conv) is indexed
     * with int by the backends. */
    int hf = c.layout == ENG_LAYOUT_HF, by_state = (int64_t)c.d_inner * c.d_state > INT_MAX;
    if (by_state || (int64_t)c.d_inner * c.d_conv > INT_MAX)
        return ssmd_err_set(err, SSMD_EFORMAT,
                            "%s: inner width %d ('%s') times '%s' %d overflows a 32-bit int", path,
                            c.d_inner, hf ? "intermediate_size" : "ssm_cfg.expand",
                            by_state ? (hf ? "state_size" : "ssm_cfg.d_state")
                                     : (hf ? "conv_kernel" : "ssm_cfg.d_conv"),
                            by_state ? c.d_state : c.d_conv);
    *cfg = c;
    return SSMD_OK;
}
