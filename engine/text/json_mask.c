/* json_mask.c - the token mask of json_mask.h.  A step costs one pass over
 * the vocabulary, each token's bytes fed to a copy of a 24-byte state:
 * about a microsecond per thousand tokens, small beside a model step. */
#include "engine/text/json_mask.h"

#include <math.h>

static int token_qualifies(const eng_tokenizer *tok, int32_t id, const char **bytes, size_t *len)
{
    if (eng_tokenizer_is_special(tok, id) || eng_tokenizer_is_hole(tok, id))
        return 0;
    *bytes = eng_tokenizer_token_bytes(tok, id, len);
    return *bytes && *len > 0;
}

int eng_json_mask(const eng_json_prefix *p, const eng_tokenizer *tok, float *logits, int n_vocab,
                  uint8_t *ok)
{
    const int n_tok = eng_tokenizer_vocab_size(tok);
    int allowed = 0;
    for (int32_t id = 0; id < n_vocab; id++) {
        const char *bytes;
        size_t len;
        eng_json_prefix next = *p;
        ok[id] = id < n_tok && token_qualifies(tok, id, &bytes, &len) &&
                 eng_json_prefix_feed(&next, bytes, len);
        allowed += ok[id];
    }
    for (int32_t id = 0; allowed > 0 && id < n_vocab; id++)
        if (!ok[id])
            logits[id] = -INFINITY;
    return allowed;
}

int eng_json_take(eng_json_prefix *p, const eng_tokenizer *tok, int32_t id)
{
    const char *bytes;
    size_t len;
    return token_qualifies(tok, id, &bytes, &len) && eng_json_prefix_feed(p, bytes, len);
}
