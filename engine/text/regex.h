/* regex.h - the regular expressions of a tokenizer.json (Split pre-tokenizer,
 * Replace normalizer and decoder), compiled with PCRE2 (8-bit, UTF, UCP, JIT),
 * and the iteration over matches that Hugging Face `tokenizers` uses
 * (Oniguruma's find_iter: an empty match right after the previous match is
 * skipped by one character).
 *
 * A compiled eng_regex is read-only: any number of threads may match with it
 * at once, each with its own eng_regex_scratch.  Never holds a global.
 */
#ifndef SSMD_REGEX_H
#define SSMD_REGEX_H

#include <stddef.h>

typedef struct eng_regex eng_regex; /* opaque */

/* Compiles len bytes of pattern (a regex, or a literal string when literal
 * is 1).  Returns NULL and writes PCRE2's message, with the offset, into
 * msg (cap bytes) when the pattern does not compile. */
eng_regex *eng_regex_compile(const char *pattern, size_t len, int literal, char *msg, size_t cap);
void eng_regex_free(eng_regex *re);

/* Per-thread working memory of matching; zero-initialize, reuse for any
 * pattern, release with eng_regex_scratch_free. */
typedef struct eng_regex_scratch {
    void *match_data; /* pcre2_match_data_8, created on first use */
} eng_regex_scratch;

void eng_regex_scratch_free(eng_regex_scratch *sc);

/* Iterator over the matches in s (len bytes of valid UTF-8). */
typedef struct eng_regex_iter {
    const eng_regex *re;
    const char *s;
    size_t len;
    size_t next;        /* where the next search starts */
    size_t last_end;    /* end of the previous match ... */
    int have_last;      /* ... when there was one */
    eng_regex_scratch *sc;
} eng_regex_iter;

void eng_regex_iter_init(eng_regex_iter *it, const eng_regex *re, const char *s, size_t len,
                         eng_regex_scratch *sc);
/* The next match [*start, *end): returns 1, or 0 when there is none.  A
 * match that PCRE2 gives up on (its match or depth limit: a pathological
 * pattern) ends the iteration as if nothing more matched. */
int eng_regex_iter_next(eng_regex_iter *it, size_t *start, size_t *end);

#endif
