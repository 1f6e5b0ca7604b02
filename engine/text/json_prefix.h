/* json_prefix.h - an incremental check that bytes are the beginning of one
 * JSON object (RFC 8259), for response_format {"type": "json_object"}.
 *
 * The generation loop asks, token by token, which tokens keep the output a
 * prefix of some valid object (eng_json_mask in json_mask.h), feeds the
 * chosen token's bytes, and ends the sequence once the object is complete.
 * The state is small and fixed-size: checking a candidate copies it and
 * feeds the copy.  No allocation, no globals.
 *
 * Beyond RFC 8259 it refuses what would let a model run on without ever
 * finishing: nesting deeper than ENG_JSON_DEPTH_MAX and runs of more than
 * ENG_JSON_WS_MAX whitespace bytes.  Strings and numbers are read by
 * json_lex.h.
 */
#ifndef SSMD_JSON_PREFIX_H
#define SSMD_JSON_PREFIX_H

#include <stddef.h>
#include <stdint.h>

#include "engine/text/json_lex.h"

#define ENG_JSON_DEPTH_MAX 64
#define ENG_JSON_WS_MAX 16

typedef struct eng_json_prefix {
    uint64_t arrays;   /* bit d set: the container at depth d + 1 is an array */
    uint8_t depth;     /* containers open */
    uint8_t state;     /* what may come next (json_prefix.c's JS_*) */
    uint8_t in_key;    /* the string being read is an object key */
    uint8_t ws;        /* whitespace bytes in a row */
    json_lex lex;      /* the string or number being read */
    const char *lit;   /* the rest of the literal being read ("rue" of true) */
} eng_json_prefix;

void eng_json_prefix_init(eng_json_prefix *p);

/* Feeds n bytes: 1 when the output so far is still the prefix of one JSON
 * object (p advanced), 0 when it no longer can be (p is then unspecified:
 * feed a copy to test a candidate). */
int eng_json_prefix_feed(eng_json_prefix *p, const char *bytes, size_t n);

/* 1 once the object is closed: nothing more may follow. */
int eng_json_prefix_complete(const eng_json_prefix *p);

/* Inside a string, between characters: how many more characters it may
 * take (INT_MAX: any); -1 anywhere else. */
int eng_json_prefix_string_room(const eng_json_prefix *p);

#endif
