/* unicode.h - generic Unicode helpers: UTF-8 decode/encode/validation with
 * the "maximal subpart" rule for U+FFFD replacement, the character classes a
 * tokenizer needs (\p{L}, \p{N}, \s, \w, punctuation), lowercase and the
 * four normalization forms (in engine/text/unicode_norm.c).
 *
 * Pure functions over caller memory; no state, safe from any thread.  The
 * tables are generated into engine/text/unicode_tables.c by
 * engine/text/gen_unicode_tables.py (Unicode version in eng_unicode_version).
 */
#ifndef SSMD_UNICODE_H
#define SSMD_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#define ENG_UNICODE_REPLACEMENT 0xFFFDu /* U+FFFD, "\xEF\xBF\xBD" in UTF-8 */

/* ---- UTF-8 ---------------------------------------------------------------- */

/* What eng_utf8_next found at the start of a byte string. */
typedef enum eng_utf8_status {
    ENG_UTF8_STATUS_OK = 0,         /* a valid character of *n bytes, *cp set */
    ENG_UTF8_STATUS_INVALID = 1,    /* not valid: the *n bytes (>= 1, the maximal
                                     * subpart) become one U+FFFD */
    ENG_UTF8_STATUS_INCOMPLETE = 2, /* all len bytes (*n = len, 1..3) are a valid
                                     * start of a character cut short by the end */
} eng_utf8_status;

/* Classifies the character at the start of s (len >= 1 bytes) following
 * Unicode's "maximal subpart" practice (the one Rust's from_utf8_lossy and
 * WHATWG use), so replacing every INVALID run with one U+FFFD, and treating
 * INCOMPLETE at the very end of the input as INVALID, gives the standard
 * lossy decoding; and a streaming decoder that holds INCOMPLETE bytes back
 * gives the same output.  Never reads past s[len-1]. */
eng_utf8_status eng_utf8_next(const unsigned char *s, size_t len, uint32_t *cp, size_t *n);

/* Decodes one character of a string already known to be valid UTF-8;
 * returns its length (1..4) and sets *cp. */
size_t eng_utf8_decode_valid(const unsigned char *s, uint32_t *cp);

/* Writes cp (<= 0x10FFFF, not a surrogate) as UTF-8 into out (>= 4 bytes);
 * returns the length (1..4), or 0 for a value that is not a scalar value. */
size_t eng_utf8_encode(uint32_t cp, unsigned char *out);

/* 1 when the len bytes are valid UTF-8 (no surrogates, no overlongs). */
int eng_utf8_valid(const char *s, size_t len);

/* Lossy conversion: writes s with every invalid or incomplete sequence
 * replaced by U+FFFD into out, which must hold 3 * len bytes; returns the
 * number of bytes written (no NUL is added). */
size_t eng_utf8_sanitize(const unsigned char *s, size_t len, char *out);

/* ---- character classes ----------------------------------------------------- */

int eng_unicode_is_letter(uint32_t cp); /* General_Category L* */
int eng_unicode_is_number(uint32_t cp); /* General_Category N* */
int eng_unicode_is_space(uint32_t cp);  /* White_Space (regex \s) */
int eng_unicode_is_word(uint32_t cp);   /* regex \w (Unicode, as Rust's regex) */
int eng_unicode_ccc(uint32_t cp);       /* canonical combining class, 0..254 */
int eng_unicode_is_punct(uint32_t cp);  /* General_Category P*, or ASCII punctuation */
/* Writes the lowercase of cp (Rust's char::to_lowercase: one or two
 * characters, no context) to out; returns how many. */
size_t eng_unicode_lower(uint32_t cp, uint32_t out[2]);

/* ---- normalization -------------------------------------------------------- */

/* The four normalization forms. */
typedef enum eng_unicode_form {
    ENG_UNICODE_FORM_NFC = 0,
    ENG_UNICODE_FORM_NFD,
    ENG_UNICODE_FORM_NFKC,
    ENG_UNICODE_FORM_NFKD,
} eng_unicode_form;

/* Normalization form `form` of len bytes of valid UTF-8, with the same
 * contract as eng_unicode_nfc. */
char *eng_unicode_normalize(const char *s, size_t len, eng_unicode_form form, size_t *out_len);

/* NFC of len bytes of valid UTF-8.  Returns a malloc'ed NUL-terminated string
 * (the caller frees it) and sets *out_len; the input is not changed.  Aborts
 * on allocation failure; behaviour on invalid UTF-8 is unspecified (validate
 * first). */
char *eng_unicode_nfc(const char *s, size_t len, size_t *out_len);

/* 1 when s (valid UTF-8) is certainly already NFC without running the
 * algorithm (every character below U+0300); a fast path for callers. */
int eng_unicode_nfc_quick(const char *s, size_t len);

/* ---- generated tables (engine/text/unicode_tables.c); for unicode.c only ------- */

typedef struct eng_unicode_range {
    uint32_t lo, hi; /* inclusive */
} eng_unicode_range;

typedef struct eng_unicode_ccc_range {
    uint32_t lo, hi; /* inclusive */
    uint32_t ccc;
} eng_unicode_ccc_range;

typedef struct eng_unicode_decomp_entry {
    uint32_t cp;    /* sorted */
    uint32_t first; /* canonical decomposition, one level */
    uint32_t second; /* 0 for a singleton */
} eng_unicode_decomp_entry;

typedef struct eng_unicode_comp_entry {
    uint32_t first, second; /* sorted by (first, second) */
    uint32_t composite;
} eng_unicode_comp_entry;

typedef struct eng_unicode_kdecomp_entry {
    uint32_t cp;  /* sorted */
    uint32_t off; /* the mapping is eng_unicode_kdecomp_pool[off .. off+len) */
    uint32_t len;
} eng_unicode_kdecomp_entry;

typedef struct eng_unicode_lower_entry {
    uint32_t cp;    /* sorted */
    uint32_t first; /* lowercase, one or two characters */
    uint32_t second; /* 0 for one */
} eng_unicode_lower_entry;

extern const char eng_unicode_version[];
extern const eng_unicode_range eng_unicode_letters[];
extern const size_t eng_unicode_letters_n;
extern const eng_unicode_range eng_unicode_numbers[];
extern const size_t eng_unicode_numbers_n;
extern const eng_unicode_range eng_unicode_spaces[];
extern const size_t eng_unicode_spaces_n;
extern const eng_unicode_range eng_unicode_word[];
extern const size_t eng_unicode_word_n;
extern const eng_unicode_ccc_range eng_unicode_ccc_ranges[];
extern const size_t eng_unicode_ccc_ranges_n;
extern const eng_unicode_decomp_entry eng_unicode_decomp[];
extern const size_t eng_unicode_decomp_n;
extern const eng_unicode_comp_entry eng_unicode_comp[];
extern const size_t eng_unicode_comp_n;
extern const uint32_t eng_unicode_kdecomp_pool[];
extern const eng_unicode_kdecomp_entry eng_unicode_kdecomp[];
extern const size_t eng_unicode_kdecomp_n;
extern const eng_unicode_range eng_unicode_punct[];
extern const size_t eng_unicode_punct_n;
extern const eng_unicode_lower_entry eng_unicode_lower_map[];
extern const size_t eng_unicode_lower_map_n;

#endif
