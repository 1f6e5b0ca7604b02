/* json_schema.h - response_format json_schema: a JSON Schema subset
 * compiled to a tree of nodes, and an incremental check that bytes are the
 * beginning of an instance of it, for the token mask (json_mask.h).
 *
 * The subset is what structured output needs: "type" object (with
 * "properties", "required", "additionalProperties": false), array (with
 * "items", "minItems", "maxItems"), string (with "minLength",
 * "maxLength"), number, integer, boolean, null; "enum" and "const" of any
 * JSON values; nesting.  Annotations ("title",
 * "description", "$schema", "default", "examples") are ignored.  Anything
 * else is refused at compile time with a message naming the keyword and
 * where it is, never silently dropped.  The root must be an object.
 *
 * Generation is stricter than validation, never looser: an object holds
 * only its listed properties, each at most once and in any order; enum
 * values, const and keys are written exactly as compact JSON would write
 * them.  Every prefix the check accepts can still be completed (no "," when
 * no property is left to name, no "]" below minItems), so a masked model
 * can always finish.  As in json_prefix.h, whitespace runs are at most
 * ENG_JSON_WS_MAX bytes; a number is at most ENG_SCHEMA_NUMBER_MAX bytes, an
 * integer at most ENG_SCHEMA_INTEGER_MAX (so that it fits 64 bits).
 */
#ifndef SSMD_JSON_SCHEMA_H
#define SSMD_JSON_SCHEMA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"
#include "engine/text/json_lex.h"

#define ENG_SCHEMA_DEPTH_MAX 16  /* nesting of objects/arrays */
#define ENG_SCHEMA_CHOICES_MAX 64 /* properties of one object, values of one enum */
#define ENG_SCHEMA_NODES_MAX 1024
#define ENG_SCHEMA_TEXT_MAX 255  /* bytes of one key or enum value as JSON */
#define ENG_SCHEMA_NUMBER_MAX 24 /* bytes of one number */
#define ENG_SCHEMA_INTEGER_MAX 19 /* bytes of one integer: a sign and 18 digits fit int64 */

typedef struct eng_json_schema eng_json_schema;

/* Compiles a schema; SSMD_EUNSUPPORTED naming the keyword and its path
 * ("$.properties.age") for what is outside the subset, SSMD_EINVAL for
 * what is not a valid schema.  The result is immutable: any number of
 * sequences may check against it at once. */
int eng_json_schema_compile(const json_t *schema, eng_json_schema **out, ssmd_err *err);
void eng_json_schema_free(eng_json_schema *s);

/* One open object/array/value being read. */
typedef struct eng_schema_frame {
    uint64_t cand;  /* keys / enum values still matching; in an object, also (seen) below */
    uint64_t seen;  /* object: properties given */
    uint16_t node;
    uint16_t count; /* array: items so far; object: the property being read */
    uint8_t phase;
    uint8_t pos;    /* bytes matched of a key / enum value */
    json_lex lex;   /* the string or number being read */
} eng_schema_frame;

typedef struct eng_schema_state {
    const eng_json_schema *schema;
    uint8_t depth;  /* frames open; 0 with done = the root closed */
    uint8_t done;
    uint8_t ws;     /* whitespace bytes in a row */
    eng_schema_frame frames[ENG_SCHEMA_DEPTH_MAX + 1];
} eng_schema_state;

void eng_schema_state_init(eng_schema_state *st, const eng_json_schema *s);

/* Copies only the frames in use (a mask copies the state once per token). */
void eng_schema_state_copy(eng_schema_state *dst, const eng_schema_state *src);

/* Feeds n bytes: 1 while the output can still become an instance. */
int eng_schema_state_feed(eng_schema_state *st, const char *bytes, size_t n);

/* 1 once the root object is closed. */
int eng_schema_state_complete(const eng_schema_state *st);

/* Inside a string value or key text?  For a string value between
 * characters: how many more characters its maxLength allows; -1 anywhere
 * else (keys and enum values are matched byte by byte). */
int eng_schema_state_string_room(const eng_schema_state *st);

#endif
