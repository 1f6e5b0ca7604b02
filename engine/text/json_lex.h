/* json_lex.h - the two JSON tokens whose bytes carry state, strings and
 * numbers (RFC 8259), read one byte at a time; shared by the automata of
 * json_prefix.c (any object) and json_schema.c (a schema's instance).
 *
 * Strings must be valid UTF-8 (no overlong forms, no surrogates, nothing
 * above U+10FFFF); \u escapes take any four hex digits.  A number's end can
 * only be seen at the byte after it, which the lexer then hands back.
 */
#ifndef SSMD_JSON_LEX_H
#define SSMD_JSON_LEX_H

#include <stdint.h>

enum { JL_BAD = -1, JL_MORE = 0, JL_END = 1 };

typedef struct json_lex {
    uint8_t phase;     /* json_lex.c's LX_* */
    uint8_t left;      /* \u digits or UTF-8 continuation bytes due */
    uint8_t lo, hi;    /* range of the next continuation byte */
    uint8_t surrogate; /* the \u escape being read may be a high surrogate */
    uint16_t chars;    /* string: characters so far, a surrogate pair counting once;
                        * number: bytes so far */
} json_lex;

/* After a string's opening quote.  Then each byte: JL_MORE, JL_END for
 * the closing quote, JL_BAD. */
void json_lex_string(json_lex *l);
int json_lex_string_byte(json_lex *l, unsigned char c);

/* 1 when the string being read is between characters (not inside an
 * escape or a multi-byte character): any further text that the lexer
 * reads from a fresh string to the same point is read alike from here. */
int json_lex_between_chars(const json_lex *l);

/* From a number's first byte: 0 when c cannot begin one.  integer: no
 * fraction, no exponent.  Then each byte: JL_MORE, JL_BAD, or JL_END when
 * c does not belong to the number (the number is complete and c is the
 * caller's to read). */
int json_lex_number(json_lex *l, unsigned char c);
int json_lex_number_byte(json_lex *l, unsigned char c, int integer);

#endif
