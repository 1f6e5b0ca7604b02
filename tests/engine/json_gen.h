/* json_gen.h - what the JSON-output tests share (test_json_prefix.c,
 * test_json_schema.c): a seeded text builder with byte mutations, and a
 * generation driver that lets random logits pick tokens through the mask.
 * Header-only, static: tests only.
 */
#ifndef SSMD_TEST_JSON_GEN_H
#define SSMD_TEST_JSON_GEN_H

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/text/json_mask.h"

typedef struct json_gen {
    char buf[4096]; /* NUL-terminated while being built */
    size_t n;
    uint64_t rng;
} json_gen;

static inline unsigned jg_rnd(json_gen *g, unsigned n)
{
    g->rng = g->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(g->rng >> 33) % n;
}

static inline void jg_put(json_gen *g, const char *s)
{
    size_t k = strlen(s);
    if (g->n + k + 1 < sizeof g->buf) {
        memcpy(g->buf + g->n, s, k + 1);
        g->n += k;
    }
}

/* Up to max_edits random edits (replace, delete or insert one byte from
 * alphabet), then the trailing whitespace dropped: jansson allows it after
 * the value, the automata (which end at the closing brace) do not. */
static inline void jg_mutate(json_gen *g, const char *alphabet, size_t alphabet_len, unsigned max_edits)
{
    for (unsigned m = jg_rnd(g, max_edits + 1); m > 0 && g->n > 0; m--) {
        size_t at = jg_rnd(g, (unsigned)g->n);
        char c = alphabet[jg_rnd(g, (unsigned)alphabet_len)];
        switch (jg_rnd(g, 3)) {
        case 0: g->buf[at] = c; break;
        case 1: memmove(g->buf + at, g->buf + at + 1, g->n - at - 1), g->n--; break;
        default:
            if (g->n + 2 < sizeof g->buf) {
                memmove(g->buf + at + 1, g->buf + at, g->n - at);
                g->buf[at] = c;
                g->n++;
            }
        }
    }
    while (g->n > 0 && strchr(" \t\r\n", g->buf[g->n - 1]))
        g->n--;
    g->buf[g->n] = '\0';
}

/* Generates through the mask with random logits until rule r completes
 * (at most max_steps tokens); after 30 steps, tokens that close something
 * are favoured so that every run ends.  The bytes go to out (cap). */
static inline void jg_run_masked(eng_json_rule *r, const eng_tokenizer *tok, uint64_t seed, int max_steps,
                                 char *out, size_t cap, size_t *n_out)
{
    const int V = eng_tokenizer_vocab_size(tok);
    float *logits = malloc((size_t)V * sizeof *logits);
    eng_json_vocab vocab;
    eng_json_vocab_init(&vocab, tok, V);
    json_gen g = {.rng = seed};
    size_t n = 0;
    for (int step = 0; step < max_steps && !eng_json_rule_complete(r); step++) {
        for (int id = 0; id < V; id++) {
            size_t len;
            const char *b = eng_tokenizer_token_bytes(tok, id, &len);
            logits[id] = (float)jg_rnd(&g, 1000) / 100.0f;
            if (step > 30 && b && (memchr(b, '}', len) || memchr(b, ']', len) || memchr(b, '"', len)))
                logits[id] += 20.0f;
        }
        ck_assert_int_gt(eng_json_mask(r, tok, &vocab, logits), 0);
        /* the mask's shortcuts decide each token as feeding it would */
        for (int id = 0; id < V; id++) {
            eng_json_rule copy = *r;
            ck_assert_msg(vocab.ok[id] == eng_json_take(&copy, tok, id), "step %d token %d: mask %d", step,
                          id, vocab.ok[id]);
        }
        int best = -1;
        for (int id = 0; id < V; id++)
            if (!isinf(logits[id]) && (best < 0 || logits[id] > logits[best]))
                best = id;
        ck_assert(eng_json_take(r, tok, best));
        size_t len;
        const char *b = eng_tokenizer_token_bytes(tok, best, &len);
        ck_assert(n + len < cap);
        memcpy(out + n, b, len);
        n += len;
    }
    ck_assert_msg(eng_json_rule_complete(r), "unfinished after %d steps: %.*s", max_steps, (int)n, out);
    *n_out = n;
    free(logits);
    eng_json_vocab_free(&vocab);
}

#endif
