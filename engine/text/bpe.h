/* bpe.h - the BPE model of a `tokenizer.json` (model.type "BPE"): vocab
 * (token string <-> id), merge ranks, the options (byte_fallback,
 * ignore_merges, unk_token, fuse_unk, continuing_subword_prefix,
 * end_of_word_suffix), and the merge loop that turns one pre-tokenized word
 * into ids the way Hugging Face `tokenizers` does.  Used by engine/text/tokenizer.c; knows nothing about added tokens,
 * normalizers or pre-tokenizers.
 *
 * A loaded eng_bpe is read-only; any number of threads may encode with it at
 * once, each with its own eng_bpe_scratch.
 */
#ifndef SSMD_BPE_H
#define SSMD_BPE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"

/* A growable array of ids. */
typedef struct eng_idvec {
    int32_t *v;
    size_t n, cap;
} eng_idvec;

void eng_idvec_push(eng_idvec *vec, int32_t id); /* aborts when out of memory */

typedef struct eng_bpe {
    int n_ids;          /* max vocab id + 1 */
    char *pool;         /* every token string, NUL-separated */
    size_t pool_len;
    uint32_t *tok_off;  /* (n_ids) offset into pool, UINT32_MAX for an unused id */
    uint32_t *tok_len;  /* (n_ids) bytes */
    uint32_t *str_slot; /* (str_mask + 1) open addressing: id + 1, 0 = empty */
    size_t str_mask;
    uint64_t *merge_key; /* (merge_mask + 1) left id << 32 | right id; UINT64_MAX = empty */
    uint32_t *merge_rank; /* (merge_mask + 1) */
    int32_t *merge_new;  /* (merge_mask + 1) id of the merged token */
    size_t merge_mask;
    size_t n_merges;
    uint64_t *join_key;  /* (join_mask + 1) starting-symbol pairs a merge can span
                          * (bpe_cuts.c); NULL = any pair may join */
    size_t join_mask;
    int32_t byte_id[256]; /* id of the one-byte token of each byte, -1 if none */
    int32_t unk_id;       /* -1 when the model has no unk_token */
    int fuse_unk;
    int ignore_merges;    /* a word that is itself in the vocab is one token */
    int byte_fallback;    /* a character not in the vocab becomes its <0xHH> tokens */
    int32_t fallback_id[256]; /* id of "<0xHH>" for each byte, -1 if none */
    char *prefix;         /* continuing_subword_prefix, NULL if none */
    size_t prefix_len;
    char *suffix;         /* end_of_word_suffix, NULL if none */
    size_t suffix_len;
} eng_bpe;

/* Per-call working memory of eng_bpe_encode_word; zero-initialize, reuse for
 * any number of words, release with eng_bpe_scratch_free. */
typedef struct eng_bpe_scratch {
    void *sym;
    size_t sym_cap;
    void *heap;
    size_t heap_cap;
    char *mapped;
    size_t mapped_cap;
    char *sym_str;   /* one symbol with its prefix/suffix */
    size_t sym_str_cap;
} eng_bpe_scratch;

void eng_bpe_scratch_free(eng_bpe_scratch *s);

/* Reads the "model" object of tokenizer.json (path is only used in
 * messages).  Returns SSMD_OK, or SSMD_EFORMAT / SSMD_EUNSUPPORTED with
 * err->msg naming the file and field; on error b holds nothing to free. */
int eng_bpe_load(eng_bpe *b, const json_t *model, const char *path, ssmd_err *err);
void eng_bpe_free(eng_bpe *b);

/* Id of the exact token string s (n bytes), or -1. */
int32_t eng_bpe_token_id(const eng_bpe *b, const char *s, size_t n);

/* The token string of id (NUL-terminated, owned by b) and its length, or
 * NULL for an id the vocab does not use. */
const char *eng_bpe_token_str(const eng_bpe *b, int32_t id, size_t *len);

/* Appends the ids of one word given as raw bytes (before the byte-to-unicode
 * mapping) to out. */
void eng_bpe_encode_word(const eng_bpe *b, const unsigned char *word, size_t n,
                         eng_bpe_scratch *s, eng_idvec *out);

/* Appends the ids of one word given in the vocab's own spelling (n bytes of
 * valid UTF-8: one symbol per character to start with) to out. */
void eng_bpe_encode_chars(const eng_bpe *b, const char *word, size_t n, eng_bpe_scratch *s,
                          eng_idvec *out);

/* GPT-2's bytes_to_unicode: the code point that stands for byte x in token
 * strings, and the inverse (-1 for a code point that stands for no byte). */
/* Open addressing over (left id << 32 | right id) keys, UINT64_MAX = empty:
 * the slot holding key, or the empty slot where it would go. */
size_t eng_bpe_pair_slot(const uint64_t *keys, size_t mask, uint64_t key);

/* bpe_cuts.c: builds join_key from the loaded merges (called by
 * eng_bpe_load), and tells whether two neighbouring starting symbols can
 * ever end up in one token; where they cannot, a word is cut in two. */
void eng_bpe_find_cuts(eng_bpe *b);
int eng_bpe_may_join(const eng_bpe *b, int32_t left, int32_t right);

uint32_t eng_bpe_byte_to_cp(unsigned x);
int eng_bpe_cp_to_byte(uint32_t cp);

#endif
