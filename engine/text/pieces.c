/* pieces.c - the piece list of pieces.h.  Plain growable buffers; must never
 * look at what the bytes mean. */
#include "engine/text/pieces.h"

#include <string.h>

#include "engine/xalloc.h"

void eng_pieces_clear(eng_pieces *p)
{
    p->len = 0;
    p->n = 0;
}

void eng_pieces_free(eng_pieces *p)
{
    free(p->text);
    free(p->v);
    int keep = p->keep_empty;
    memset(p, 0, sizeof *p);
    p->keep_empty = keep;
}

char *eng_pieces_reserve(eng_pieces *p, size_t n)
{
    if (!p->text || p->cap - p->len < n) { /* (never NULL, even for 0 bytes) */
        size_t cap = p->cap ? 2 * p->cap : 256;
        while (cap - p->len < n)
            cap *= 2;
        p->text = xrealloc(p->text, cap);
        p->cap = cap;
    }
    return p->text + p->len;
}

void eng_pieces_close(eng_pieces *p, size_t len, int at_start)
{
    if (len == 0 && !p->keep_empty)
        return;
    if (p->n == p->cap_n) {
        p->cap_n = p->cap_n ? 2 * p->cap_n : 64;
        p->v = xrealloc(p->v, p->cap_n * sizeof *p->v);
    }
    p->v[p->n++] = (eng_piece){p->len, len, at_start};
    p->len += len;
}

void eng_pieces_add(eng_pieces *p, const char *s, size_t n, int at_start)
{
    if (n == 0 && !p->keep_empty)
        return;
    if (n)
        memcpy(eng_pieces_reserve(p, n), s, n);
    eng_pieces_close(p, n, at_start);
}
