/* normalizers.h - the normalizer of a tokenizer.json: NFC, NFD, NFKC, NFKD,
 * Lowercase, Replace (string or regex), Prepend, Strip and Sequence of
 * these, run over one piece of text before pre-tokenization.
 *
 * A loaded eng_norm is read-only and shared by threads; each thread runs it
 * with its own eng_norm_scratch.
 */
#ifndef SSMD_NORMALIZERS_H
#define SSMD_NORMALIZERS_H

#include <jansson.h>
#include <stddef.h>

#include "engine/error.h"
#include "engine/text/regex.h"
#include "engine/text/split.h"

typedef struct eng_norm eng_norm; /* opaque */

/* Reads "normalizer" (j may be NULL or null: none; *out is then NULL).
 * Returns SSMD_OK, or SSMD_EFORMAT / SSMD_EUNSUPPORTED with err->msg naming
 * the file (path) and the component; nothing to free then. */
int eng_norm_load(const json_t *j, const char *path, eng_norm **out, ssmd_err *err);
void eng_norm_free(eng_norm *nm);

typedef struct eng_norm_scratch {
    char *buf[2]; /* ping-pong between steps */
    size_t cap[2];
    eng_segs segs;
    eng_regex_scratch re;
} eng_norm_scratch;

void eng_norm_scratch_free(eng_norm_scratch *sc);

/* Normalizes s (n bytes of valid UTF-8).  Returns the result (valid UTF-8,
 * *out_n bytes, not NUL-terminated): s itself when nothing changed, else
 * memory of sc valid until its next use.  nm may be NULL. */
const char *eng_norm_run(const eng_norm *nm, const char *s, size_t n, size_t *out_n,
                         eng_norm_scratch *sc);

/* Reads a Replace object (normalizer or decoder, named by what in messages):
 * its pattern compiled into *re and its content copied into *content (the
 * caller frees both).  Returns SSMD_OK or SSMD_EFORMAT (nothing allocated). */
int eng_replace_load(const json_t *j, const char *what, const char *path, eng_regex **re,
                     char **content, size_t *content_len, ssmd_err *err);

#endif
