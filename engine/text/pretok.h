/* pretok.h - the GPT-2 pre-tokenizer regex of the ByteLevel pre-tokenizer,
 * matched by hand over code points (no regex library):
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Pure function, safe from any thread.
 */
#ifndef SSMD_PRETOK_H
#define SSMD_PRETOK_H

#include <stddef.h>

/* The pattern as tokenizer.json spells it in a Split pre-tokenizer. */
#define ENG_PRETOK_GPT2_PATTERN \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

/* End (exclusive) of the word that starts at pos (< len) in s, valid UTF-8:
 * the regex's match at pos.  Every character belongs to some word, so words
 * are contiguous: call again from the returned end. */
size_t eng_pretok_gpt2_next(const char *s, size_t len, size_t pos);

#endif
