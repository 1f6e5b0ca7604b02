/* json_mask.h - which tokens keep a generated text the beginning of one
 * JSON object, or of one instance of a JSON schema: the logits step of
 * response_format json_object / json_schema.
 *
 * A rule is the output's check state: json_prefix.h for any object,
 * json_schema.h for a schema.  Each token is judged by the bytes it decodes
 * to mid-text (eng_tokenizer_token_bytes) fed to a copy of the rule;
 * special tokens, holes and empty tokens never qualify (a token that adds
 * nothing could repeat forever).  Read-only on the tokenizer and the
 * schema: any number of sequences may mask at once.
 */
#ifndef SSMD_JSON_MASK_H
#define SSMD_JSON_MASK_H

#include "engine/text/json_prefix.h"
#include "engine/text/json_schema.h"
#include "engine/text/tokenizer.h"

typedef struct eng_json_rule {
    const eng_json_schema *schema; /* NULL: any JSON object */
    eng_json_prefix any;           /* used when schema is NULL */
    eng_schema_state inst;         /* used with a schema */
} eng_json_rule;

void eng_json_rule_init(eng_json_rule *r, const eng_json_schema *schema);

/* 1 once the object has closed: nothing may follow. */
int eng_json_rule_complete(const eng_json_rule *r);

/* Inside a string between characters: how many more characters it may
 * take; -1 anywhere else. */
int eng_json_rule_string_room(const eng_json_rule *r);

/* What the mask keeps per token of a vocabulary, made once per sequence:
 * whether the token is plain string text (read by json_lex from inside a
 * string, between characters, it ends there again), and scratch. */
typedef struct eng_json_vocab {
    int n;          /* ids (a logits row's width) */
    uint8_t *plain; /* (n) 1 + its characters when plain (up to 254), else 0 */
    int16_t *first; /* (n) its first byte; -1: never allowed (special, hole, empty) */
    uint8_t *ok;    /* (n) scratch */
} eng_json_vocab;

void eng_json_vocab_init(eng_json_vocab *v, const eng_tokenizer *tok, int n_vocab);
void eng_json_vocab_free(eng_json_vocab *v);

/* Sets logits[id] = -INFINITY for every id below v->n that would break the
 * rule, and returns how many ids remain.  When none would remain (a
 * vocabulary that cannot spell what must come next) the logits are left as
 * they were and 0 is returned. */
int eng_json_mask(const eng_json_rule *r, const eng_tokenizer *tok, eng_json_vocab *v, float *logits);

/* Feeds token id's bytes to r: 1 when the output still keeps the rule. */
int eng_json_take(eng_json_rule *r, const eng_tokenizer *tok, int32_t id);

#endif
