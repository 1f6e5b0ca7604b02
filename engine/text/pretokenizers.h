/* pretokenizers.h - the pre-tokenizer of a tokenizer.json: ByteLevel (with
 * or without its regex, add_prefix_space), Split (any regex or string,
 * invert, behaviour), Digits, Punctuation, Whitespace, WhitespaceSplit,
 * Metaspace (replacement, prepend_scheme, split) and Sequence of these.
 * Cuts one normalized piece into the words BPE encodes.
 *
 * A loaded eng_pretok is read-only and shared by threads; each thread runs it
 * with its own eng_pretok_scratch.
 */
#ifndef SSMD_PRETOKENIZERS_H
#define SSMD_PRETOKENIZERS_H

#include <jansson.h>
#include <stddef.h>

#include "engine/error.h"
#include "engine/text/pieces.h"
#include "engine/text/regex.h"
#include "engine/text/split.h"

typedef struct eng_pretok eng_pretok; /* opaque */

/* Reads "pre_tokenizer" (j may be NULL or null: no pre-tokenizer).  Returns
 * SSMD_OK and sets *out, or SSMD_EFORMAT / SSMD_EUNSUPPORTED with err->msg
 * naming the file (path) and the component; nothing to free then. */
int eng_pretok_load(const json_t *j, const char *path, eng_pretok **out, ssmd_err *err);
void eng_pretok_free(eng_pretok *p);

/* 1 when the words eng_pretok_run gives are raw bytes that BPE must read in
 * GPT-2's byte-to-unicode spelling (a ByteLevel step last, its mapping left
 * to BPE); 0 when they are already in the vocab's spelling. */
int eng_pretok_bytes_out(const eng_pretok *p);

/* 1 when the chain has a Metaspace step; *replacement then holds its
 * replacement character as UTF-8 (NUL-terminated). */
int eng_pretok_metaspace(const eng_pretok *p, char replacement[8]);

typedef struct eng_pretok_scratch {
    eng_pieces a, b;     /* ping-pong between steps */
    eng_pieces tmp;      /* one rewritten piece (prefix added, spaces replaced) */
    eng_segs segs;
    eng_regex_scratch re;
} eng_pretok_scratch;

void eng_pretok_scratch_free(eng_pretok_scratch *sc);

/* Splits s (n bytes of valid UTF-8; at_start: it begins the original text)
 * into words.  Returns the word list, owned by sc and valid until its next
 * use.  p may be NULL (the whole piece is one word). */
const eng_pieces *eng_pretok_run(const eng_pretok *p, const char *s, size_t n, int at_start,
                                 eng_pretok_scratch *sc);

#endif
