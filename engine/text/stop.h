/* stop.h - stop sequences over streamed text.
 *
 * Text arrives in pieces; a stop string may span pieces.  The matcher holds
 * back the shortest tail that could still begin a stop string, so what it
 * releases is final: OpenAI semantics, the stop string itself and anything
 * after it are never emitted.  One per sequence, one thread at a time.
 */
#ifndef SSMD_STOP_H
#define SSMD_STOP_H

#include <stddef.h>

#include "engine/error.h"

#define ENG_STOP_MAX 8          /* stop strings per request */
#define ENG_STOP_LEN_MAX 256    /* bytes per stop string */

typedef struct eng_stop {
    int n;
    char strs[ENG_STOP_MAX][ENG_STOP_LEN_MAX + 1];
    size_t lens[ENG_STOP_MAX];
    char held[ENG_STOP_LEN_MAX]; /* tail not yet released */
    size_t n_held;
    int stopped;                 /* a stop string matched; nothing more is released */
} eng_stop;

/* Returns SSMD_OK or SSMD_EINVAL (too many, empty or too long strings). */
int eng_stop_init(eng_stop *s, const char *const *strs, int n, ssmd_err *err);

/* Feeds len bytes.  Writes the bytes that are now safe to emit to out (which
 * must hold len + ENG_STOP_LEN_MAX bytes) and returns their count; sets
 * s->stopped when a stop string matched (out then ends right before it).
 * Held bytes never split a UTF-8 character only if the input pieces do not. */
size_t eng_stop_feed(eng_stop *s, const char *text, size_t len, char *out);

/* End of stream without a stop: releases what is held; returns its count. */
size_t eng_stop_flush(eng_stop *s, char *out);

#endif
