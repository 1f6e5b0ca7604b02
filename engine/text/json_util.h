/* json_util.h - the few jansson look-ups every tokenizer.json loader
 * repeats: an optional string or boolean field with a default.  Header-only
 * and pure; must never allocate. */
#ifndef SSMD_TEXT_JSON_UTIL_H
#define SSMD_TEXT_JSON_UTIL_H

#include <jansson.h>

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

#endif
