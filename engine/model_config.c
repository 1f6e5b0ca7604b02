/* model_config.c - reads a config.json and hands it to the family that
 * claims it (engine/arch.h's registry); the reader helpers the families
 * use to read their keys.
 *
 * This file never touches weights and never guesses: a value a family
 * cannot honour is refused by that family, not approximated.
 */
#include "engine/model_config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/arch.h"
#include "engine/xalloc.h"

#define CFG_MAX_BYTES (16 << 20) /* a config.json is a few KB */

/* Integer key in [lo, hi], *out = def when absent.  Integral JSON reals
 * (768.0) are accepted as Python would; anything else is a type error. */
int eng_cfg_int(const eng_cfg_reader *r, const json_t *obj, const char *key, int def, int lo, int hi,
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
int eng_cfg_num(const eng_cfg_reader *r, const json_t *obj, const char *key, double def, double lo,
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

int eng_cfg_bool(const eng_cfg_reader *r, const json_t *obj, const char *key, int def, int *out)
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
int eng_cfg_str(const eng_cfg_reader *r, const json_t *obj, const char *key, const char *def,
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

/* bos/eos token id: an integer, a list of integers (the first counts), or
 * null (-1, unknown). */
int eng_cfg_token(const eng_cfg_reader *r, const json_t *obj, const char *key, int def, int *out)
{
    const json_t *v = json_object_get(obj, key);
    if (json_is_null(v)) {
        *out = -1;
        return SSMD_OK;
    }
    if (json_is_array(v) && json_array_size(v) > 0) {
        json_t *wrap = json_pack("{sO}", key, json_array_get(v, 0));
        int rc = eng_cfg_int(r, wrap, key, def, 0, INT_MAX, out);
        json_decref(wrap);
        return rc;
    }
    if (json_is_array(v))
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: '%s' is an empty list", r->path, key);
    return eng_cfg_int(r, obj, key, def, 0, INT_MAX, out);
}

int eng_cfg_require(const eng_cfg_reader *r, const json_t *obj, const char *const *required,
                    const char *what)
{
    for (; *required; required++)
        if (!json_object_get(obj, *required))
            return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: no '%s' (required for %s)", r->path,
                                *required, what);
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

/* Python's json writes the non-standard literals Infinity, -Infinity and
 * NaN (Hugging Face configs have "time_step_limit": [0.0, Infinity]);
 * jansson refuses them.  Returns a copy of buf (len bytes) in which each
 * such literal outside a string is quoted, so that it parses as a string
 * that eng_cfg_json_number reads back; *out_len its length. */
static char *cfg_quote_literals(const char *buf, size_t len, size_t *out_len)
{
    static const char *const words[] = {"-Infinity", "Infinity", "NaN"};
    char *out = xmalloc(len + 2 * (len / 3) + 1); /* each word of 3+ bytes grows by 2 */
    size_t o = 0;
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        if (in_string) {
            out[o++] = buf[i];
            if (buf[i] == '\\' && i + 1 < len)
                out[o++] = buf[++i];
            else if (buf[i] == '"')
                in_string = 0;
            continue;
        }
        size_t w = 0, wl = 0;
        for (; w < sizeof words / sizeof words[0]; w++)
            if (len - i >= (wl = strlen(words[w])) && !memcmp(buf + i, words[w], wl))
                break;
        if (w < sizeof words / sizeof words[0]) {
            out[o++] = '"';
            memcpy(out + o, words[w], wl);
            o += wl;
            out[o++] = '"';
            i += wl - 1;
            continue;
        }
        in_string = buf[i] == '"';
        out[o++] = buf[i];
    }
    *out_len = o;
    return out;
}

int eng_cfg_json_number(const json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 1;
    }
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    if (!strcmp(s, "Infinity") || !strcmp(s, "-Infinity")) {
        *out = s[0] == '-' ? -INFINITY : INFINITY;
        return 1;
    }
    return 0;
}

/* The family that reads root: by model_type, or, for a config without
 * one, the family that recognises its keys.  NULL with err set. */
static const eng_arch *cfg_pick_arch(const eng_cfg_reader *r, const json_t *root,
                                     const char **type)
{
    const char *t = NULL;
    if (eng_cfg_str(r, root, "model_type", NULL, &t) != SSMD_OK)
        return NULL;
    *type = t;
    const eng_arch *a = t ? eng_arch_find(t) : eng_arch_find_untyped(root);
    if (a)
        return a;
    char have[128];
    eng_arch_list_types(have, sizeof have);
    if (t)
        ssmd_err_set(r->err, SSMD_EUNSUPPORTED, "%s: 'model_type' \"%.64s\" is not supported (have: %s)",
                     r->path, t, have);
    else
        ssmd_err_set(r->err, SSMD_EFORMAT, "%s: no 'model_type' (have: %s) and no keys of a known layout",
                     r->path, have);
    return NULL;
}

int eng_model_config_from_json(const json_t *root, const char *origin, eng_model_config *cfg,
                               ssmd_err *err)
{
    eng_model_config c;
    memset(&c, 0, sizeof c);
    eng_cfg_reader r = {origin, "", err};
    const char *type = NULL;
    int rc;
    if (!json_is_object(root)) {
        rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: top level is not a JSON object", origin);
    } else if (!(c.arch = cfg_pick_arch(&r, root, &type))) {
        rc = err->code;
    } else {
        snprintf(c.model_type, sizeof c.model_type, "%s", type ? type : c.arch->model_types[0]);
        rc = c.arch->parse_config(&r, root, &c);
    }
    if (rc == SSMD_OK)
        *cfg = c;
    return rc;
}

json_t *eng_cfg_load_json(const char *path, ssmd_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    if (cfg_read_file(path, &buf, &len, err) != SSMD_OK)
        return NULL;
    size_t qlen = 0;
    char *quoted = cfg_quote_literals(buf, len, &qlen);
    free(buf);
    json_error_t jerr;
    json_t *root = json_loadb(quoted, qlen, JSON_REJECT_DUPLICATES, &jerr);
    free(quoted);
    if (!root)
        ssmd_err_set(err, SSMD_EFORMAT, "%s: bad JSON at line %d, column %d: %s", path, jerr.line,
                     jerr.column, jerr.text);
    return root;
}

int eng_model_config_load(const char *path, eng_model_config *cfg, ssmd_err *err)
{
    json_t *root = eng_cfg_load_json(path, err);
    if (!root)
        return err->code;
    int rc = eng_model_config_from_json(root, path, cfg, err);
    json_decref(root);
    return rc;
}
