/* split.c - segments and split behaviours (see split.h), following
 * `tokenizers`' NormalizedString::split step by step.  Must never allocate
 * outside the caller's eng_segs and eng_pieces.
 */
#include "engine/text/split.h"

#include <string.h>

#include "engine/text/unicode.h"
#include "engine/xalloc.h"

int eng_split_behavior_parse(const char *name)
{
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

void eng_segs_free(eng_segs *g)
{
    free(g->v);
    memset(g, 0, sizeof *g);
}

static void seg_push(eng_segs *g, size_t a, size_t b, int match)
{
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 64;
        g->v = xrealloc(g->v, g->cap * sizeof *g->v);
    }
    g->v[g->n++] = (eng_seg){a, b, match};
}

void eng_segs_regex(eng_segs *g, const eng_regex *re, const char *s, size_t n,
                    eng_regex_scratch *sc)
{
    g->n = 0;
    if (n == 0) /* tokenizers: an empty text has no match, not even an empty one */
        return;
    eng_regex_iter it;
    eng_regex_iter_init(&it, re, s, n, sc);
    size_t prev = 0, a, b;
    while (eng_regex_iter_next(&it, &a, &b)) {
        if (a != prev)
            seg_push(g, prev, a, 0);
        seg_push(g, a, b, 1);
        prev = b;
    }
    if (prev != n)
        seg_push(g, prev, n, 0);
}

void eng_segs_chars(eng_segs *g, int (*pred)(uint32_t cp, const void *arg), const void *arg,
                    const char *s, size_t n)
{
    g->n = 0;
    size_t gap = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = eng_utf8_decode_valid((const unsigned char *)s + i, &cp);
        if (pred(cp, arg)) {
            if (gap < i)
                seg_push(g, gap, i, 0);
            seg_push(g, i, i + l, 1);
            gap = i + l;
        }
        i += l;
    }
    if (gap < n)
        seg_push(g, gap, n, 0);
}

void eng_segs_invert(eng_segs *g)
{
    for (size_t i = 0; i < g->n; i++)
        g->v[i].match = !g->v[i].match;
}

/* Rewrites the segments in place into the pieces to keep (match = 1 marks a
 * segment to remove), as NormalizedString::split does per behaviour. */
static void apply_behavior(eng_segs *g, eng_split_behavior b)
{
    size_t out = 0;
    int prev = 0;
    switch (b) {
    case ENG_SPLIT_BEHAVIOR_REMOVED:
        return; /* matches are removed: match already says so */
    case ENG_SPLIT_BEHAVIOR_ISOLATED:
        for (size_t i = 0; i < g->n; i++)
            g->v[i].match = 0;
        return;
    case ENG_SPLIT_BEHAVIOR_CONTIGUOUS:
        for (size_t i = 0; i < g->n; i++) {
            int m = g->v[i].match; /* read before v[out] may overwrite v[i] */
            if (out > 0 && m == prev)
                g->v[out - 1].b = g->v[i].b;
            else
                g->v[out++] = (eng_seg){g->v[i].a, g->v[i].b, 0};
            prev = m;
        }
        break;
    case ENG_SPLIT_BEHAVIOR_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < g->n; i++) {
            int m = g->v[i].match;
            if (m && !prev && out > 0)
                g->v[out - 1].b = g->v[i].b;
            else
                g->v[out++] = (eng_seg){g->v[i].a, g->v[i].b, 0};
            prev = m;
        }
        break;
    case ENG_SPLIT_BEHAVIOR_MERGED_WITH_NEXT: {
        /* the same fold from the end, written back to front */
        size_t w = g->n;
        for (size_t i = g->n; i-- > 0;) {
            int m = g->v[i].match;
            if (m && !prev && w < g->n)
                g->v[w].a = g->v[i].a;
            else
                g->v[--w] = (eng_seg){g->v[i].a, g->v[i].b, 0};
            prev = m;
        }
        memmove(g->v, g->v + w, (g->n - w) * sizeof *g->v);
        out = g->n - w;
        break;
    }
    }
    g->n = out;
}

void eng_split_emit(eng_segs *g, eng_split_behavior b, const char *s, int at_start,
                    eng_pieces *out)
{
    apply_behavior(g, b);
    for (size_t i = 0; i < g->n; i++)
        if (!g->v[i].match)
            eng_pieces_add(out, s + g->v[i].a, g->v[i].b - g->v[i].a, at_start && g->v[i].a == 0);
}

size_t eng_regex_replace(const eng_regex *re, const char *content, size_t clen, const char *s,
                         size_t n, eng_segs *g, eng_regex_scratch *sc, char **buf, size_t *cap)
{
    eng_segs_regex(g, re, s, n, sc);
    size_t total = 1;
    for (size_t i = 0; i < g->n; i++)
        total += g->v[i].match ? clen : g->v[i].b - g->v[i].a;
    if (*cap < total) {
        *cap = total > 2 * *cap ? total : 2 * *cap;
        *buf = xrealloc(*buf, *cap);
    }
    size_t o = 0;
    for (size_t i = 0; i < g->n; i++) {
        const eng_seg *x = &g->v[i];
        const char *src = x->match ? content : s + x->a;
        size_t len = x->match ? clen : x->b - x->a;
        memcpy(*buf + o, src, len);
        o += len;
    }
    return o;
}
