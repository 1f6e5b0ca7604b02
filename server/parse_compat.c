/* parse_compat.c - the OpenAI request fields ssmd implements only in part:
 * one table says, per field, which values are accepted (and then mean what
 * OpenAI means by them) and why any other value is refused with a 400.
 * proto/openapi.yaml documents the same rows; keep them in step.
 *
 * A field that is absent or null is always accepted.  Pure: no I/O, never
 * touches the engine; only reads the body.
 */
#include "server/parse.h"

#include <string.h>

typedef enum compat_kind {
    COMPAT_ONE,         /* an integer; only 1 is accepted */
    COMPAT_EMPTY_TEXT,  /* a string; only "" is accepted */
    COMPAT_ANY_TEXT,    /* a string; any is accepted (and ignored) */
    COMPAT_FALSE,       /* a boolean; only false is accepted */
    COMPAT_ANY_BOOL,    /* a boolean; either is accepted (and ignored) */
    COMPAT_EMPTY_LIST,  /* an array; only [] is accepted */
    COMPAT_NO_CALL,     /* "none" or "auto" (with no tools, both mean: answer in text) */
    COMPAT_TEXT_FORMAT, /* {"type": "text" | "json_object" | "json_schema"} (parse.c reads the schema) */
} compat_kind;

typedef struct compat_row {
    const char *name;
    int chat, completion;  /* on which routes the row applies */
    compat_kind kind;
    const char *refusal;   /* the whole message for a well-typed value that is refused */
} compat_row;

static const compat_row compat_rows[] = {
    {"best_of", 0, 1, COMPAT_ONE,
     "'best_of' above 1 is not supported: ssmd does not generate several completions to keep the best one; "
     "send several requests and compare their logprobs instead"},
    {"suffix", 0, 1, COMPAT_EMPTY_TEXT,
     "'suffix' is not supported: the models ssmd serves only continue a text, they cannot fill in text "
     "before a suffix"},
    {"user", 1, 1, COMPAT_ANY_TEXT, NULL},
    {"store", 1, 0, COMPAT_FALSE,
     "'store': true is not supported: ssmd keeps no completion after answering it"},
    {"parallel_tool_calls", 1, 0, COMPAT_ANY_BOOL, NULL},
    {"tools", 1, 0, COMPAT_EMPTY_LIST,
     "'tools' is not supported: ssmd has no tool (function) calling; describe the tools in the messages "
     "instead"},
    {"functions", 1, 0, COMPAT_EMPTY_LIST,
     "'functions' is not supported: ssmd has no tool (function) calling"},
    {"tool_choice", 1, 0, COMPAT_NO_CALL,
     "'tool_choice' may only be \"none\" or \"auto\": ssmd has no tool (function) calling"},
    {"function_call", 1, 0, COMPAT_NO_CALL,
     "'function_call' may only be \"none\" or \"auto\": ssmd has no tool (function) calling"},
    {"response_format", 1, 1, COMPAT_TEXT_FORMAT,
     "'response_format' type must be \"text\", \"json_object\" or \"json_schema\""},
};
#define N_COMPAT (sizeof compat_rows / sizeof compat_rows[0])

const char *srv_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static int str_is(const json_t *v, const char *s)
{
    return json_is_string(v) && !strcmp(json_string_value(v), s);
}

/* 1 when v is accepted, 0 when refused, -1 when it has the wrong type
 * (*want then says which type). */
static int compat_check(const compat_row *r, const json_t *v, const char **want)
{
    switch (r->kind) {
    case COMPAT_ONE:
        *want = "an integer";
        return !json_is_integer(v) ? -1 : json_integer_value(v) == 1;
    case COMPAT_EMPTY_TEXT:
        *want = "a string";
        return !json_is_string(v) ? -1 : json_string_length(v) == 0;
    case COMPAT_ANY_TEXT:
        *want = "a string";
        return json_is_string(v) ? 1 : -1;
    case COMPAT_FALSE:
        *want = "a boolean";
        return !json_is_boolean(v) ? -1 : json_is_false(v);
    case COMPAT_ANY_BOOL:
        *want = "a boolean";
        return json_is_boolean(v) ? 1 : -1;
    case COMPAT_EMPTY_LIST:
        *want = "an array";
        return !json_is_array(v) ? -1 : json_array_size(v) == 0;
    case COMPAT_NO_CALL:
        *want = "a string or an object";
        if (!json_is_string(v) && !json_is_object(v))
            return -1;
        return str_is(v, "none") || str_is(v, "auto");
    case COMPAT_TEXT_FORMAT:
        *want = "an object such as {\"type\": \"text\"}";
        if (!json_is_object(v) || !json_is_string(json_object_get(v, "type")))
            return -1;
        return str_is(json_object_get(v, "type"), "text") ||
               str_is(json_object_get(v, "type"), "json_object") ||
               str_is(json_object_get(v, "type"), "json_schema");
    }
    return -1;
}

int srv_compat_parse(const json_t *body, int is_chat, ssmd_err *err)
{
    for (size_t i = 0; i < N_COMPAT; i++) {
        const compat_row *r = &compat_rows[i];
        const json_t *v = json_object_get(body, r->name);
        if (!v || json_is_null(v) || !(is_chat ? r->chat : r->completion))
            continue;
        const char *want = "";
        int ok = compat_check(r, v, &want);
        if (ok < 0)
            return ssmd_err_set(err, SSMD_EINVAL, "'%s' must be %s, not %s", r->name, want, srv_json_kind(v));
        if (ok == 0)
            return ssmd_err_set(err, SSMD_EUNSUPPORTED, "%s", r->refusal);
    }
    return SSMD_OK;
}
