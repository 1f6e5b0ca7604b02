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

/* ---- NFC ------------------------------------------------------------------ */

/* Hangul syllables are composed and decomposed by arithmetic (Unicode 3.12). */
enum {
    HANGUL_S_BASE = 0xAC00, HANGUL_L_BASE = 0x1100, HANGUL_V_BASE = 0x1161,
    HANGUL_T_BASE = 0x11A7, HANGUL_L_COUNT = 19, HANGUL_V_COUNT = 21, HANGUL_T_COUNT = 28,
    HANGUL_N_COUNT = HANGUL_V_COUNT * HANGUL_T_COUNT,
    HANGUL_S_COUNT = HANGUL_L_COUNT * HANGUL_N_COUNT,
};

typedef struct cp_buf {
    uint32_t *v;
    size_t n, cap;
} cp_buf;

static void cp_push(cp_buf *b, uint32_t cp)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        b->v = xrealloc(b->v, b->cap * sizeof *b->v);
    }
    b->v[b->n++] = cp;
}

static const eng_unicode_decomp_entry *decomp_find(uint32_t cp)
{
    size_t lo = 0, hi = eng_unicode_decomp_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < eng_unicode_decomp[mid].cp)
            hi = mid;
        else if (cp > eng_unicode_decomp[mid].cp)
            lo = mid + 1;
        else
            return &eng_unicode_decomp[mid];
    }
    return NULL;
}

/* Appends the full canonical decomposition of cp. */
static void decompose(cp_buf *b, uint32_t cp)
{
    if (cp >= HANGUL_S_BASE && cp < HANGUL_S_BASE + HANGUL_S_COUNT) {
        uint32_t s = cp - HANGUL_S_BASE;
        cp_push(b, HANGUL_L_BASE + s / HANGUL_N_COUNT);
        cp_push(b, HANGUL_V_BASE + (s % HANGUL_N_COUNT) / HANGUL_T_COUNT);
        if (s % HANGUL_T_COUNT)
            cp_push(b, HANGUL_T_BASE + s % HANGUL_T_COUNT);
        return;
    }
    const eng_unicode_decomp_entry *d = cp >= 0xC0 ? decomp_find(cp) : NULL;
    if (!d) {
        cp_push(b, cp);
        return;
    }
    decompose(b, d->first); /* depth is bounded by the data (at most 4) */
    if (d->second)
        decompose(b, d->second);
}

/* The primary composite of (a, b), or 0. */
static uint32_t compose(uint32_t a, uint32_t b)
{
    if (a >= HANGUL_L_BASE && a < HANGUL_L_BASE + HANGUL_L_COUNT && b >= HANGUL_V_BASE &&
        b < HANGUL_V_BASE + HANGUL_V_COUNT)
        return HANGUL_S_BASE +
               ((a - HANGUL_L_BASE) * HANGUL_V_COUNT + (b - HANGUL_V_BASE)) * HANGUL_T_COUNT;
    if (a >= HANGUL_S_BASE && a < HANGUL_S_BASE + HANGUL_S_COUNT &&
        (a - HANGUL_S_BASE) % HANGUL_T_COUNT == 0 && b > HANGUL_T_BASE &&
        b < HANGUL_T_BASE + HANGUL_T_COUNT)
        return a + (b - HANGUL_T_BASE);
    size_t lo = 0, hi = eng_unicode_comp_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const eng_unicode_comp_entry *e = &eng_unicode_comp[mid];
        if (a < e->first || (a == e->first && b < e->second))
            hi = mid;
        else if (a > e->first || b > e->second)
            lo = mid + 1;
        else
            return e->composite;
    }
    return 0;
}

/* Stable sort of one run of non-starters by class; v and cc in step. */
static void sort_run(uint32_t *v, uint8_t *cc, size_t n)
{
    if (n <= 16) { /* insertion sort */
        for (size_t i = 1; i < n; i++) {
            uint32_t x = v[i];
            uint8_t c = cc[i];
            size_t j = i;
            for (; j > 0 && cc[j - 1] > c; j--) {
                v[j] = v[j - 1];
                cc[j] = cc[j - 1];
            }
            v[j] = x;
            cc[j] = c;
        }
        return;
    }
    /* counting sort: linear, so long runs of marks cannot make NFC quadratic */
    size_t start[257] = {0};
    for (size_t i = 0; i < n; i++)
        start[cc[i] + 1]++;
    for (int c = 0; c < 256; c++)
        start[c + 1] += start[c];
    uint32_t *tmp = xrealloc(NULL, n * sizeof *tmp);
    for (size_t i = 0; i < n; i++)
        tmp[start[cc[i]]++] = v[i];
    memcpy(v, tmp, n * sizeof *tmp);
    free(tmp);
    for (size_t i = 0; i < n; i++)
        cc[i] = (uint8_t)eng_unicode_ccc(v[i]);
}

/* Canonical ordering: stable sort of every run of non-starters by class. */
static void reorder(uint32_t *v, uint8_t *cc, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (cc[i] == 0) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && cc[j] != 0)
            j++;
        sort_run(v + i, cc + i, j - i);
        i = j;
    }
}

/* Canonical composition in place; returns the new length.  cc[i] is the
 * class of v[i] as given (only read at the current index, so compacting v
 * never invalidates it). */
static size_t recompose(uint32_t *v, const uint8_t *cc, size_t n)
{
    if (n == 0)
        return 0;
    size_t starter = 0, out = 1;
    int last = cc[0] ? 256 : 0; /* a leading non-starter never composes */
    for (size_t i = 1; i < n; i++) {
        uint32_t ch = v[i];
        int c = cc[i];
        /* ch is not blocked from the starter when nothing between them has
         * a class of 0 or >= c (last is the largest such class). */
        if (last == 0 || last < c) {
            uint32_t composite = compose(v[starter], ch);
            if (composite) {
                v[starter] = composite;
                continue;
            }
        }
        if (c == 0)
            starter = out;
        last = c;
        v[out++] = ch;
    }
    return out;
}

int eng_unicode_nfc_quick(const char *s, size_t len)
{
    /* Characters below U+0300 are ASCII or start with a byte below 0xCC; they
     * all have class 0 and no composition with what follows them. */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0xCC)
            return 0;
    return 1;
}

char *eng_unicode_nfc(const char *s, size_t len, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)s;
    cp_buf b = {0};
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += eng_utf8_decode_valid(p + i, &cp);
        decompose(&b, cp);
    }
    uint8_t *cc = xrealloc(NULL, b.n);
    for (size_t i = 0; i < b.n; i++)
        cc[i] = (uint8_t)eng_unicode_ccc(b.v[i]);
    reorder(b.v, cc, b.n);
    size_t n = recompose(b.v, cc, b.n);
    free(cc);
    unsigned char *out = xrealloc(NULL, 4 * n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += eng_utf8_encode(b.v[i], out + o);
    out[o] = 0;
    free(b.v);
    *out_len = o;
    return (char *)out;
}
