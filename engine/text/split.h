/* split.h - how `tokenizers` cuts one piece of text by a pattern: the
 * pattern's matches and the gaps between them as segments, optionally
 * inverted, then one of five behaviours (Removed, Isolated,
 * MergedWithPrevious, MergedWithNext, Contiguous) decides which segments
 * become pieces.  Shared by the pre-tokenizers and the Replace normalizer.
 *
 * Pure functions over caller buffers; safe from any thread.
 */
#ifndef SSMD_SPLIT_H
#define SSMD_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/text/pieces.h"
#include "engine/text/regex.h"

typedef enum eng_split_behavior {
    ENG_SPLIT_BEHAVIOR_REMOVED = 0,
    ENG_SPLIT_BEHAVIOR_ISOLATED,
    ENG_SPLIT_BEHAVIOR_MERGED_WITH_PREVIOUS,
    ENG_SPLIT_BEHAVIOR_MERGED_WITH_NEXT,
    ENG_SPLIT_BEHAVIOR_CONTIGUOUS,
} eng_split_behavior;

/* The behaviour a tokenizer.json spells `name`, or -1. */
int eng_split_behavior_parse(const char *name);

typedef struct eng_seg {
    size_t a, b; /* bytes [a, b) of the piece */
    int match;
} eng_seg;

typedef struct eng_segs {
    eng_seg *v;
    size_t n, cap;
} eng_segs;

void eng_segs_free(eng_segs *g);

/* Segments of s (n bytes, valid UTF-8) for the matches of re: every match
 * (empty ones too) and every non-empty gap, in order. */
void eng_segs_regex(eng_segs *g, const eng_regex *re, const char *s, size_t n,
                    eng_regex_scratch *sc);
/* Segments for a character predicate: each character for which pred is true
 * is a match of its own; runs of the others are gaps. */
void eng_segs_chars(eng_segs *g, int (*pred)(uint32_t cp, const void *arg), const void *arg,
                    const char *s, size_t n);
void eng_segs_invert(eng_segs *g);

/* Appends the pieces that behaviour b makes of the segments of s to out;
 * at_start marks the one that begins at byte 0 when s itself is at_start. */
void eng_split_emit(eng_segs *g, eng_split_behavior b, const char *s, int at_start,
                    eng_pieces *out);

/* Writes s (n bytes, valid UTF-8) with every match of re (empty ones too)
 * replaced by content (clen bytes) into *buf, grown as needed (*cap bytes);
 * returns the length written. */
size_t eng_regex_replace(const eng_regex *re, const char *content, size_t clen, const char *s,
                         size_t n, eng_segs *g, eng_regex_scratch *sc, char **buf, size_t *cap);

#endif
