/* json_mask.c - the token mask of json_mask.h.  A step costs one pass over
 * the vocabulary, each token's bytes fed to a copy of the rule's state
 * (24 bytes for any object; the open frames of a schema instance). */
#include "engine/text/json_mask.h"

#include <math.h>

void eng_json_rule_init(eng_json_rule *r, const eng_json_schema *schema)
{
    r->schema = schema;
    if (schema)
        eng_schema_state_init(&r->inst, schema);
    else
        eng_json_prefix_init(&r->any);
}

int eng_json_rule_complete(const eng_json_rule *r)
{
    return r->schema ? eng_schema_state_complete(&r->inst) : eng_json_prefix_complete(&r->any);
}

static int token_bytes(const eng_tokenizer *tok, int32_t id, const char **bytes, size_t *len)
{
    if (eng_tokenizer_is_special(tok, id) || eng_tokenizer_is_hole(tok, id))
        return 0;
    *bytes = eng_tokenizer_token_bytes(tok, id, len);
    return *bytes && *len > 0;
}

/* Whether bytes keep the rule, tried on a copy (r is not changed). */
static int keeps(const eng_json_rule *r, const char *bytes, size_t len)
{
    if (r->schema) {
        eng_schema_state next;
        eng_schema_state_copy(&next, &r->inst);
        return eng_schema_state_feed(&next, bytes, len);
    }
    eng_json_prefix next = r->any;
    return eng_json_prefix_feed(&next, bytes, len);
}

int eng_json_mask(const eng_json_rule *r, const eng_tokenizer *tok, float *logits, int n_vocab,
                  uint8_t *ok)
{
    const int n_tok = eng_tokenizer_vocab_size(tok);
    int allowed = 0;
    for (int32_t id = 0; id < n_vocab; id++) {
        const char *bytes;
        size_t len;
        ok[id] = id < n_tok && token_bytes(tok, id, &bytes, &len) && keeps(r, bytes, len);
        allowed += ok[id];
    }
    for (int32_t id = 0; allowed > 0 && id < n_vocab; id++)
        if (!ok[id])
            logits[id] = -INFINITY;
    return allowed;
}

int eng_json_take(eng_json_rule *r, const eng_tokenizer *tok, int32_t id)
{
    const char *bytes;
    size_t len;
    if (!token_bytes(tok, id, &bytes, &len))
        return 0;
    return r->schema ? eng_schema_state_feed(&r->inst, bytes, len)
                     : eng_json_prefix_feed(&r->any, bytes, len);
}
