/* pieces.h - a list of text pieces in one owned buffer: what each stage of
 * the encode pipeline (normalizer, added tokens, pre-tokenizers) hands to
 * the next.  Knows nothing about tokenizers.
 *
 * Owned by one thread at a time; zero-initialize, clear to reuse, free once.
 */
#ifndef SSMD_PIECES_H
#define SSMD_PIECES_H

#include <stddef.h>

typedef struct eng_piece {
    size_t off, len; /* bytes text[off .. off+len) */
    int at_start;    /* begins where the original text began (Metaspace "first") */
} eng_piece;

typedef struct eng_pieces {
    char *text;      /* (len, capacity cap) the pieces' bytes, back to back */
    size_t len, cap;
    eng_piece *v;    /* (n, capacity cap_n) */
    size_t n, cap_n;
    int keep_empty;  /* keep empty pieces (a decoder's token list) */
} eng_pieces;

void eng_pieces_clear(eng_pieces *p);
void eng_pieces_free(eng_pieces *p);
/* Room for n more bytes at the end of p->text; returns where they go.  The
 * pointer is valid until the next call that grows p. */
char *eng_pieces_reserve(eng_pieces *p, size_t n);
/* Appends a piece made of the `len` bytes written at the end of p->text
 * (after eng_pieces_reserve).  Empty pieces are dropped, as `tokenizers`
 * drops empty splits, unless p->keep_empty. */
void eng_pieces_close(eng_pieces *p, size_t len, int at_start);
/* Copies n bytes of s as a new piece. */
void eng_pieces_add(eng_pieces *p, const char *s, size_t n, int at_start);

#endif
