/* tokenizer.h - Hugging Face `tokenizer.json` BPE tokenizers: byte-level
 * (GPT-2, GPT-NeoX, Llama-3, Falcon style) and SentencePiece-style (Metaspace,
 * byte fallback; Mistral, Llama-2 style), with their normalizers,
 * pre-tokenizers, decoders, added/special tokens and post-processor; encode,
 * decode and incremental detokenization that never emits a split UTF-8
 * sequence.  A component it does not implement is refused at load, named.
 *
 * A loaded tokenizer is read-only and may be used from any thread at once.
 */
#ifndef SSMD_TOKENIZER_H
#define SSMD_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "engine/error.h"

typedef struct eng_tokenizer eng_tokenizer; /* opaque */

/* Loads `path` (a tokenizer.json).  Returns SSMD_OK and sets *out, or
 * SSMD_EIO / SSMD_EFORMAT / SSMD_EUNSUPPORTED with err->msg naming the file
 * and the problem (e.g. a model type other than BPE). */
int eng_tokenizer_load(const char *path, eng_tokenizer **out, ssmd_err *err);
/* The same from a parsed tokenizer.json object (one a weights file
 * carries, e.g. GGUF's, rebuilt as JSON); path is named in messages. */
int eng_tokenizer_from_json(const json_t *root, const char *path, eng_tokenizer **out,
                            ssmd_err *err);
void eng_tokenizer_free(eng_tokenizer *tok);

/* Number of ids (max id + 1 over vocab and added tokens). */
int eng_tokenizer_vocab_size(const eng_tokenizer *tok);

/* Largest output of one eng_detok_push / eng_detok_flush, NUL included: 3
 * bytes (one U+FFFD) for each byte of the longest token plus 3 held back. */
size_t eng_tokenizer_piece_max(const eng_tokenizer *tok);

/* The bytes id decodes to in the middle of a text (the decoder run over it
 * alone; not always valid UTF-8 on its own: a byte-level or byte-fallback
 * piece), owned by tok, not NUL-terminated; NULL for an id out of range. */
const char *eng_tokenizer_token_bytes(const eng_tokenizer *tok, int32_t id, size_t *len);

/* The same for id as the first token of a text (first = 1), where the
 * decoder may differ (Metaspace drops the prefix space, Strip). */
const char *eng_tokenizer_token_piece(const eng_tokenizer *tok, int32_t id, int first,
                                      size_t *len);

/* 1 when id is a special added token (what skip_special drops), else 0. */
int eng_tokenizer_is_special(const eng_tokenizer *tok, int32_t id);

/* 1 when no token has id (a gap in the vocab: decode skips it), else 0. */
int eng_tokenizer_is_hole(const eng_tokenizer *tok, int32_t id);

/* 1 when the decoder has ByteFallback: invalid UTF-8 from byte tokens then
 * becomes one U+FFFD per byte rather than per maximal subpart. */
int eng_tokenizer_byte_fallback(const eng_tokenizer *tok);

/* Id of an exact token string (vocab or added), or -1. */
int32_t eng_tokenizer_token_id(const eng_tokenizer *tok, const char *token);

/* Encodes len bytes of UTF-8 text as HF `tokenizer.encode(text,
 * add_special_tokens=False)` does (added tokens in the text are matched).
 * Returns the count and sets *ids to a malloc'ed array the caller frees;
 * returns -1 (no allocation) when text is not valid UTF-8. */
int eng_tokenizer_encode(const eng_tokenizer *tok, const char *text, size_t len, int32_t **ids);

/* eng_tokenizer_encode, and with add_special the post-processor's special
 * tokens around the ids (HF add_special_tokens=True: e.g. a BOS). */
int eng_tokenizer_encode_special(const eng_tokenizer *tok, const char *text, size_t len,
                                 int add_special, int32_t **ids);

/* Decodes ids to a malloc'ed NUL-terminated UTF-8 string (*out_len bytes, not
 * counting the NUL); byte sequences that are not valid UTF-8 become U+FFFD as
 * HF decode does.  skip_special drops special added tokens.  Returns SSMD_OK or
 * SSMD_EINVAL for an id out of range. */
int eng_tokenizer_decode(const eng_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                         char **out, size_t *out_len);

/* Incremental detokenizer for one stream of generated ids.  Caller-allocated;
 * eng_detok_init; it holds no resources, so nothing to close.  Owned by one
 * thread at a time. */
typedef struct eng_detok {
    const eng_tokenizer *tok;
    int skip_special;
    unsigned char pending[8]; /* bytes of an incomplete UTF-8 sequence */
    int n_pending;
    int started;              /* a token was decoded (the next is not the first) */
} eng_detok;

void eng_detok_init(eng_detok *d, const eng_tokenizer *tok, int skip_special);
/* Writes the text that id completes to out[0..] (cap bytes, NUL-terminated)
 * and returns its length; bytes of a UTF-8 sequence that is not complete yet
 * are held back until a later id completes it (or flush).  An invalid sequence
 * is emitted as U+FFFD, as eng_tokenizer_decode does, so the pieces of a
 * stream, concatenated, equal the decode of all its ids.  (Exceptions, where
 * decode needs to see ahead: a run of byte-fallback tokens that turns
 * invalid after a complete character was emitted, which decode turns into
 * one U+FFFD per byte; a decoder Replace or Strip stop after Fuse.)  Returns -1, with d
 * unchanged, for an id out of range or cap too small: cap >=
 * eng_tokenizer_piece_max(tok) is always enough, and ENG_DETOK_PIECE_MAX is
 * for any token of up to 300 bytes. */
int eng_detok_push(eng_detok *d, int32_t id, char *out, size_t cap);
/* Emits what is held back (as U+FFFD) at the end of a stream; returns length. */
int eng_detok_flush(eng_detok *d, char *out, size_t cap);
#define ENG_DETOK_PIECE_MAX 1024

#endif
