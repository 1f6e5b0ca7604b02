/* json_mask.c - the token mask of json_mask.h.  A step costs one pass over
 * the vocabulary, made cheap where JSON output spends its tokens:
 * - inside a string, between characters, a plain token (eng_json_vocab)
 *   is in as long as the string has room for its characters, with no
 *   state copied;
 * - the 256 possible first bytes are tried once each, and a token whose
 *   first byte already breaks the rule is out (between tokens only a few
 *   bytes can come next, so most of the vocabulary goes this way);
 * - the rest have their bytes fed to a copy of the rule's state (24 bytes
 *   for any object; the open frames of a schema instance).
 * Each shortcut decides a token as the full feed would. */
#include "engine/text/json_mask.h"

#include <math.h>
#include <stdlib.h>

#include "engine/xalloc.h"

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

int eng_json_rule_string_room(const eng_json_rule *r)
{
    return r->schema ? eng_schema_state_string_room(&r->inst) : eng_json_prefix_string_room(&r->any);
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

void eng_json_vocab_init(eng_json_vocab *v, const eng_tokenizer *tok, int n_vocab)
{
    const int n_tok = eng_tokenizer_vocab_size(tok);
    v->n = n_vocab;
    v->plain = xcalloc((size_t)n_vocab, 1);
    v->ok = xcalloc((size_t)n_vocab, 1);
    v->first = xmalloc((size_t)n_vocab * sizeof *v->first);
    for (int32_t id = 0; id < n_vocab; id++) {
        const char *bytes;
        size_t len;
        v->first[id] = -1;
        if (id >= n_tok || !token_bytes(tok, id, &bytes, &len))
            continue;
        v->first[id] = (unsigned char)bytes[0];
        json_lex l;
        json_lex_string(&l);
        size_t i = 0;
        while (i < len && json_lex_string_byte(&l, (unsigned char)bytes[i]) == JL_MORE)
            i++;
        if (i == len && json_lex_between_chars(&l) && l.chars <= 254)
            v->plain[id] = (uint8_t)(1 + l.chars);
    }
}

void eng_json_vocab_free(eng_json_vocab *v)
{
    free(v->plain);
    free(v->first);
    free(v->ok);
    v->plain = v->ok = NULL;
    v->first = NULL;
}

int eng_json_mask(const eng_json_rule *r, const eng_tokenizer *tok, eng_json_vocab *v, float *logits)
{
    const int room = eng_json_rule_string_room(r);
    uint8_t first_ok[256]; /* a failure on the first byte is a failure of the token */
    for (int b = 0; b < 256; b++) {
        const char c = (char)b;
        first_ok[b] = (uint8_t)keeps(r, &c, 1);
    }
    int allowed = 0;
    for (int32_t id = 0; id < v->n; id++) {
        const char *bytes;
        size_t len;
        if (room >= 0 && v->plain[id] && v->plain[id] - 1 <= room)
            v->ok[id] = 1;
        else if (v->first[id] < 0 || !first_ok[v->first[id]])
            v->ok[id] = 0;
        else
            v->ok[id] = token_bytes(tok, id, &bytes, &len) && (len == 1 || keeps(r, bytes, len));
        allowed += v->ok[id];
    }
    for (int32_t id = 0; allowed > 0 && id < v->n; id++)
        if (!v->ok[id])
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
