/* json_util.h - the few jansson look-ups every tokenizer.json loader
 * repeats: an optional string or boolean field with a default, and a
 * Sequence of components.  Header-only
 * and pure; must never allocate. */
#ifndef SSMD_TEXT_JSON_UTIL_H
#define SSMD_TEXT_JSON_UTIL_H

#include <jansson.h>

#include "engine/error.h"

/* j[name] when it is a string, else dflt (which may be NULL). */
static inline const char *eng_json_str(const json_t *j, const char *name, const char *dflt)
{
    const json_t *v = json_object_get(j, name);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

/* j[name] when it is a boolean, else dflt. */
static inline int eng_json_bool(const json_t *j, const char *name, int dflt)
{
    const json_t *v = json_object_get(j, name);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* Loads one component of a chain (a normalizer, pre-tokenizer, ...) into obj. */
typedef int (*eng_json_load_fn)(void *obj, const json_t *j, const char *path, ssmd_err *err);

/* A "Sequence" of components: j[key] must be an array, each element goes to
 * load in order; what names the component kind in the message.  Returns
 * SSMD_OK or the first error. */
static inline int eng_json_sequence(void *obj, const json_t *j, const char *key, const char *what,
                                    eng_json_load_fn load, const char *path, ssmd_err *err)
{
    const json_t *list = json_object_get(j, key);
    if (!json_is_array(list))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: %s Sequence has no \"%s\" list", path, what,
                            key);
    for (size_t i = 0; i < json_array_size(list); i++) {
        int rc = load(obj, json_array_get(list, i), path, err);
        if (rc != SSMD_OK)
            return rc;
    }
    return SSMD_OK;
}

#endif
