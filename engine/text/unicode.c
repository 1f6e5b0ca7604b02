/* unicode.c - UTF-8 helpers, character classes and NFC (see unicode.h).
 *
 * Generic: knows nothing about tokenizers.  Must never keep state between
 * calls or read outside the bytes it is given; the tables it searches are the
 * generated ones in unicode_tables.c.
 */
#include "engine/text/unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/xalloc.h"

/* ---- UTF-8 ---------------------------------------------------------------- */

eng_utf8_status eng_utf8_next(const unsigned char *s, size_t len, uint32_t *cp, size_t *n)
{
    unsigned b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        *n = 1;
        return ENG_UTF8_STATUS_OK;
    }
    size_t need;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    uint32_t v;
    if (b0 < 0xC2) { /* a continuation byte, or C0/C1 (always overlong) */
        *n = 1;
        return ENG_UTF8_STATUS_INVALID;
    } else if (b0 < 0xE0) {
        need = 2;
        v = b0 & 0x1F;
    } else if (b0 < 0xF0) {
        need = 3;
        v = b0 & 0x0F;
        if (b0 == 0xE0)
            lo = 0xA0; /* no overlongs */
        else if (b0 == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (b0 < 0xF5) {
        need = 4;
        v = b0 & 0x07;
        if (b0 == 0xF0)
            lo = 0x90; /* no overlongs */
        else if (b0 == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        *n = 1;
        return ENG_UTF8_STATUS_INVALID;
    }
    for (size_t i = 1; i < need; i++) {
        if (i >= len) {
            *n = len;
            return ENG_UTF8_STATUS_INCOMPLETE;
        }
        unsigned b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) {
            *n = i;
            return ENG_UTF8_STATUS_INVALID;
        }
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    *n = need;
    return ENG_UTF8_STATUS_OK;
}

size_t eng_utf8_decode_valid(const unsigned char *s, uint32_t *cp)
{
    unsigned b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    if (b0 < 0xE0) {
        *cp = ((uint32_t)(b0 & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (b0 < 0xF0) {
        *cp = ((uint32_t)(b0 & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(b0 & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
          ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
}

size_t eng_utf8_encode(uint32_t cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            return 0;
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp <= 0x10FFFF) {
        out[0] = (unsigned char)(0xF0 | (cp >> 18));
        out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (unsigned char)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

int eng_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t n;
        if (eng_utf8_next(p + i, len - i, &cp, &n) != ENG_UTF8_STATUS_OK)
            return 0;
        i += n;
    }
    return 1;
}

size_t eng_utf8_sanitize(const unsigned char *s, size_t len, char *out)
{
    size_t i = 0, o = 0;
    while (i < len) {
        uint32_t cp;
        size_t n;
        if (eng_utf8_next(s + i, len - i, &cp, &n) == ENG_UTF8_STATUS_OK) {
            memcpy(out + o, s + i, n);
            o += n;
        } else { /* INVALID, or INCOMPLETE at the end of the input */
            o += eng_utf8_encode(ENG_UNICODE_REPLACEMENT, (unsigned char *)out + o);
        }
        i += n;
    }
    return o;
}

/* ---- character classes ----------------------------------------------------- */

static int range_find(const eng_unicode_range *r, size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].lo)
            hi = mid;
        else if (cp > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

int eng_unicode_is_letter(uint32_t cp)
{
    if (cp < 0x80)
        return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return range_find(eng_unicode_letters, eng_unicode_letters_n, cp);
}

int eng_unicode_is_number(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= '0' && cp <= '9';
    return range_find(eng_unicode_numbers, eng_unicode_numbers_n, cp);
}

int eng_unicode_is_space(uint32_t cp)
{
    if (cp < 0x80)
        return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    return range_find(eng_unicode_spaces, eng_unicode_spaces_n, cp);
}

int eng_unicode_is_word(uint32_t cp)
{
    if (cp < 0x80)
        return cp == '_' || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') || (cp >= '0' && cp <= '9');
    return range_find(eng_unicode_word, eng_unicode_word_n, cp);
}

int eng_unicode_ccc(uint32_t cp)
{
    if (cp < 0x300)
        return 0;
    size_t lo = 0, hi = eng_unicode_ccc_ranges_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const eng_unicode_ccc_range *r = &eng_unicode_ccc_ranges[mid];
        if (cp < r->lo)
            hi = mid;
        else if (cp > r->hi)
            lo = mid + 1;
        else
            return (int)r->ccc;
    }
    return 0;
}


int eng_unicode_is_punct(uint32_t cp)
{
    /* Rust's is_ascii_punctuation also counts the ASCII symbols ($+<=>^`|~). */
    if (cp < 0x80)
        return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) ||
               (cp >= 0x5B && cp <= 0x60) || (cp >= 0x7B && cp <= 0x7E);
    return range_find(eng_unicode_punct, eng_unicode_punct_n, cp);
}

size_t eng_unicode_lower(uint32_t cp, uint32_t out[2])
{
    if (cp < 0x80) {
        out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
        return 1;
    }
    size_t lo = 0, hi = eng_unicode_lower_map_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const eng_unicode_lower_entry *e = &eng_unicode_lower_map[mid];
        if (cp < e->cp) {
            hi = mid;
        } else if (cp > e->cp) {
            lo = mid + 1;
        } else {
            out[0] = e->first;
            out[1] = e->second;
            return e->second ? 2 : 1;
        }
    }
    out[0] = cp;
    return 1;
}
