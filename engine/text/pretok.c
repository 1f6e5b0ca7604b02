/* pretok.c - the GPT-2 pre-tokenizer regex, by hand (see pretok.h).
 *
 * The alternatives are tried in the regex's order at each position, as a
 * backtracking engine (Oniguruma, which `tokenizers` uses) does.  Must never
 * read past len or allocate.
 */
#include "engine/text/pretok.h"

#include <stdint.h>

#include "engine/text/unicode.h"

typedef enum pretok_class {
    PRETOK_CLASS_LETTER, /* \p{L} */
    PRETOK_CLASS_NUMBER, /* \p{N} */
    PRETOK_CLASS_SPACE,  /* \s */
    PRETOK_CLASS_OTHER,  /* [^\s\p{L}\p{N}] */
} pretok_class;

/* Class of the character at i; sets *n to its length in bytes. */
static pretok_class class_at(const unsigned char *s, size_t i, size_t *n)
{
    uint32_t cp;
    *n = eng_utf8_decode_valid(s + i, &cp);
    if (eng_unicode_is_letter(cp))
        return PRETOK_CLASS_LETTER;
    if (eng_unicode_is_number(cp))
        return PRETOK_CLASS_NUMBER;
    if (eng_unicode_is_space(cp))
        return PRETOK_CLASS_SPACE;
    return PRETOK_CLASS_OTHER;
}

/* End of the run of characters of class c that starts at i. */
static size_t run_end(const unsigned char *s, size_t len, size_t i, pretok_class c)
{
    while (i < len) {
        size_t n;
        if (class_at(s, i, &n) != c)
            break;
        i += n;
    }
    return i;
}

size_t eng_pretok_gpt2_next(const char *str, size_t len, size_t pos)
{
    const unsigned char *s = (const unsigned char *)str;
    /* 's|'t|'re|'ve|'m|'ll|'d  (ASCII, case-sensitive) */
    if (s[pos] == '\'' && pos + 1 < len) {
        unsigned char a = s[pos + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd')
            return pos + 2;
        if (pos + 2 < len) {
            unsigned char b = s[pos + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
                return pos + 3;
        }
    }
    /*  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+  with the optional space taken */
    if (s[pos] == ' ' && pos + 1 < len) {
        size_t n;
        pretok_class c = class_at(s, pos + 1, &n);
        if (c != PRETOK_CLASS_SPACE)
            return run_end(s, len, pos + 1, c);
    }
    /* ... and without it */
    size_t n0;
    pretok_class c0 = class_at(s, pos, &n0);
    if (c0 != PRETOK_CLASS_SPACE)
        return run_end(s, len, pos, c0);
    /* \s+(?!\S): the whitespace run, less its last character when a
     * non-space follows; \s+ when that would leave nothing. */
    size_t end = pos, last = pos, count = 0;
    while (end < len) {
        size_t n;
        if (class_at(s, end, &n) != PRETOK_CLASS_SPACE)
            break;
        last = end;
        end += n;
        count++;
    }
    if (end == len || count == 1)
        return end;
    return last;
}
