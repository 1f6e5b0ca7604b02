/* added_tokens.h - the "added_tokens" of a tokenizer.json (special or not,
 * with lstrip, rstrip, single_word and normalized) and how encode cuts them
 * out of the text before anything else sees it, as `tokenizers`'
 * AddedVocabulary does: leftmost-longest, tokens with normalized=false on the
 * raw text, the others on the normalized pieces.
 *
 * A loaded eng_added is read-only and shared by threads.
 */
#ifndef SSMD_ADDED_TOKENS_H
#define SSMD_ADDED_TOKENS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"
#include "engine/text/bpe.h"
#include "engine/text/normalizers.h"

typedef struct eng_added_tok {
    char *content;    /* as in the file; what decode emits */
    size_t len;
    char *pattern;    /* what is matched: content, or its normalized form */
    size_t pattern_len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
} eng_added_tok;

/* Leftmost-longest matcher over some of the added tokens: their indices
 * grouped by the first byte of the pattern, longest first in each group. */
typedef struct eng_added_set {
    int32_t *order;
    uint32_t start[257]; /* group of byte x is order[start[x] .. start[x+1]) */
} eng_added_set;

typedef struct eng_added {
    eng_added_tok *v;   /* (n) specials first, then the others, file order */
    size_t n;
    eng_added_set raw;  /* normalized=false */
    eng_added_set norm; /* normalized=true */
} eng_added;

/* Reads the "added_tokens" list (NULL or null: none); normalized tokens are
 * matched in their form after nm.  Returns SSMD_OK, or SSMD_EFORMAT with
 * err->msg naming the file and entry (a is then empty: free it anyway). */
int eng_added_load(eng_added *a, const json_t *list, const eng_norm *nm, const char *path,
                   ssmd_err *err);
void eng_added_free(eng_added *a);

/* Id of the added token whose content is s (n bytes), or -1. */
int32_t eng_added_find(const eng_added *a, const char *s, size_t n);

/* What is left between the tokens: s[0..n), which starts at byte `at` of the
 * text given to eng_added_split. */
typedef void (*eng_added_gap_fn)(void *ctx, const char *s, size_t n, size_t at);

/* Cuts the tokens of one set (normalized 0: the raw set, 1: the normalized
 * one) out of s (n bytes, valid UTF-8): appends their ids to ids and hands
 * every gap to gap, in order. */
void eng_added_split(const eng_added *a, int normalized, const char *s, size_t n, eng_idvec *ids,
                     eng_added_gap_fn gap, void *ctx);

#endif
