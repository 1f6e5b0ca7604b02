/* json_mask.h - which tokens keep a generated text the prefix of one JSON
 * object: the logits step of response_format {"type": "json_object"}.
 *
 * Each token is judged by the bytes it decodes to mid-text
 * (eng_tokenizer_token_bytes) fed to a copy of the output's json_prefix
 * state; special tokens, holes and empty tokens never qualify (a token
 * that adds nothing could repeat forever).  Read-only on the tokenizer:
 * any number of sequences may mask at once.
 */
#ifndef SSMD_JSON_MASK_H
#define SSMD_JSON_MASK_H

#include "engine/text/json_prefix.h"
#include "engine/text/tokenizer.h"

/* Sets logits[id] = -INFINITY for every id below n_vocab that would break
 * the object p has begun, and returns how many ids remain.  When none
 * would remain (a vocabulary that cannot spell what must come next) the
 * logits are left as they were and 0 is returned.  ok: n_vocab bytes of
 * scratch. */
int eng_json_mask(const eng_json_prefix *p, const eng_tokenizer *tok, float *logits, int n_vocab,
                  uint8_t *ok);

/* Feeds token id's bytes to p: 1 when the output is still a prefix. */
int eng_json_take(eng_json_prefix *p, const eng_tokenizer *tok, int32_t id);

#endif
