/* unicode_norm.c - the four Unicode normalization forms (see unicode.h):
 * full decomposition (canonical, or compatibility for NFKD/NFKC), canonical
 * ordering, and canonical composition for NFC/NFKC.
 *
 * Generic: knows nothing about tokenizers.  Must never keep state between
 * calls; the tables are the generated ones in unicode_tables.c.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/text/unicode.h"
#include "engine/xalloc.h"

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

/* Both tables start every entry with its sorted code point. */
static int cmp_cp(const void *key, const void *entry)
{
    uint32_t a = *(const uint32_t *)key, b = *(const uint32_t *)entry;
    return a < b ? -1 : a > b;
}

static const eng_unicode_decomp_entry *decomp_find(uint32_t cp)
{
    return bsearch(&cp, eng_unicode_decomp, eng_unicode_decomp_n, sizeof *eng_unicode_decomp,
                   cmp_cp);
}

static const eng_unicode_kdecomp_entry *kdecomp_find(uint32_t cp)
{
    return bsearch(&cp, eng_unicode_kdecomp, eng_unicode_kdecomp_n, sizeof *eng_unicode_kdecomp,
                   cmp_cp);
}

/* Appends the full decomposition of cp: canonical, or compatibility too
 * when compat (a compatibility mapping may lead to canonical ones and back). */
static void decompose(cp_buf *b, uint32_t cp, int compat)
{
    if (cp >= HANGUL_S_BASE && cp < HANGUL_S_BASE + HANGUL_S_COUNT) {
        uint32_t s = cp - HANGUL_S_BASE;
        cp_push(b, HANGUL_L_BASE + s / HANGUL_N_COUNT);
        cp_push(b, HANGUL_V_BASE + (s % HANGUL_N_COUNT) / HANGUL_T_COUNT);
        if (s % HANGUL_T_COUNT)
            cp_push(b, HANGUL_T_BASE + s % HANGUL_T_COUNT);
        return;
    }
    const eng_unicode_kdecomp_entry *k = compat && cp >= 0xA0 ? kdecomp_find(cp) : NULL;
    if (k) {
        for (uint32_t i = 0; i < k->len; i++) /* depth is bounded by the data */
            decompose(b, eng_unicode_kdecomp_pool[k->off + i], compat);
        return;
    }
    const eng_unicode_decomp_entry *d = cp >= 0xC0 ? decomp_find(cp) : NULL;
    if (!d) {
        cp_push(b, cp);
        return;
    }
    decompose(b, d->first, compat); /* depth is bounded by the data (at most 4) */
    if (d->second)
        decompose(b, d->second, compat);
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

char *eng_unicode_normalize(const char *s, size_t len, eng_unicode_form form, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)s;
    int compat = form == ENG_UNICODE_FORM_NFKC || form == ENG_UNICODE_FORM_NFKD;
    cp_buf b = {0};
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += eng_utf8_decode_valid(p + i, &cp);
        decompose(&b, cp, compat);
    }
    uint8_t *cc = xrealloc(NULL, b.n);
    for (size_t i = 0; i < b.n; i++)
        cc[i] = (uint8_t)eng_unicode_ccc(b.v[i]);
    reorder(b.v, cc, b.n);
    size_t n = b.n;
    if (form == ENG_UNICODE_FORM_NFC || form == ENG_UNICODE_FORM_NFKC)
        n = recompose(b.v, cc, b.n);
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

char *eng_unicode_nfc(const char *s, size_t len, size_t *out_len)
{
    return eng_unicode_normalize(s, len, ENG_UNICODE_FORM_NFC, out_len);
}
