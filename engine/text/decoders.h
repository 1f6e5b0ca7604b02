/* decoders.h - the decoder of a tokenizer.json: ByteLevel, Metaspace,
 * ByteFallback, Fuse, Strip, Replace and Sequence of these (or none: tokens
 * joined by spaces), run over a list of token strings as `tokenizers`'
 * decode_chain does.
 *
 * Two uses: eng_tokenizer_decode runs it over all the tokens at once; at load
 * the tokenizer runs it over each token alone, "raw" (bytes not yet checked
 * as UTF-8, byte-fallback tokens as their byte) and as the first token of a
 * stream or a later one, for the incremental detokenizer.
 *
 * A loaded eng_dec is read-only and shared by threads.
 */
#ifndef SSMD_DECODERS_H
#define SSMD_DECODERS_H

#include <jansson.h>
#include <stddef.h>

#include "engine/error.h"
#include "engine/text/pieces.h"
#include "engine/text/regex.h"
#include "engine/text/split.h"

typedef struct eng_dec eng_dec; /* opaque */

/* Reads "decoder" (NULL or null: none).  Returns SSMD_OK and sets *out, or
 * SSMD_EFORMAT / SSMD_EUNSUPPORTED with err->msg naming the file (path) and
 * the component; nothing to free then. */
int eng_dec_load(const json_t *j, const char *path, eng_dec **out, ssmd_err *err);
void eng_dec_free(eng_dec *d);

/* How a run sees its list of tokens. */
typedef struct eng_dec_mode {
    int at_start; /* the list begins the text (Metaspace and Strip treat it so) */
    int at_end;   /* the list ends the text (Strip's stop) */
    int raw;      /* leave invalid UTF-8 and byte-fallback bytes as bytes */
} eng_dec_mode;

typedef struct eng_dec_scratch {
    eng_pieces other; /* ping-pong with the caller's list */
    eng_segs segs;
    eng_regex_scratch re;
    char *buf;
    size_t cap;
} eng_dec_scratch;

void eng_dec_scratch_free(eng_dec_scratch *sc);

/* Runs the chain over the tokens in *list (one piece each, the caller's);
 * returns the list of decoded strings: list itself or sc->other, both left
 * for the caller to reuse.  The text is their concatenation; not raw, it is
 * valid UTF-8.  d may be NULL (no decoder: tokens joined by spaces). */
eng_pieces *eng_dec_run(const eng_dec *d, eng_pieces *list, eng_dec_mode mode,
                        eng_dec_scratch *sc);

/* 1 when token (n bytes) is a byte-fallback token <0xHH> and the chain has
 * ByteFallback; sets *byte. */
int eng_dec_byte_token(const eng_dec *d, const char *token, size_t n, unsigned char *byte);

/* 1 when the chain has a ByteFallback step. */
int eng_dec_has_byte_fallback(const eng_dec *d);

#endif
