/* detok.c - incremental detokenization (eng_detok_*, declared in tokenizer.h).
 *
 * Turns a stream of ids into text pieces that never split a UTF-8 character:
 * the bytes of a character not complete yet are held back until a later id
 * completes it.  Invalid sequences become U+FFFD by the same "maximal
 * subpart" rule as eng_tokenizer_decode (one U+FFFD per byte under a
 * ByteFallback decoder, as its runs of byte tokens give), so the pieces,
 * joined, are the decode of the whole stream (see tokenizer.h for the
 * exceptions).  The first token of a stream decodes as a first token.  Must never allocate: it runs once per
 * generated token.
 */
#include <string.h>

#include "engine/text/tokenizer.h"
#include "engine/text/unicode.h"

void eng_detok_init(eng_detok *d, const eng_tokenizer *tok, int skip_special)
{
    memset(d, 0, sizeof *d);
    d->tok = tok;
    d->skip_special = skip_special;
}

/* Decodes the characters of s (len bytes) that start in [*i, upto) onto out
 * at *o.  Unless final, an incomplete sequence at the end of s stops it with
 * *i at its start; otherwise *i ends >= upto.  Returns 0, or -1 when out
 * (cap bytes, one kept for the NUL) is too small. */
static int detok_run(const unsigned char *s, size_t len, size_t *i, size_t upto, int final,
                     int per_byte, char *out, size_t cap, size_t *o)
{
    while (*i < upto) {
        uint32_t cp;
        size_t n;
        eng_utf8_status st = eng_utf8_next(s + *i, len - *i, &cp, &n);
        if (st == ENG_UTF8_STATUS_INCOMPLETE && !final)
            return 0;
        size_t reps = per_byte ? n : 1, w = st == ENG_UTF8_STATUS_OK ? n : 3 * reps;
        if (*o + w + 1 > cap)
            return -1;
        if (st == ENG_UTF8_STATUS_OK)
            memcpy(out + *o, s + *i, n);
        else
            for (size_t r = 0; r < reps; r++)
                eng_utf8_encode(ENG_UNICODE_REPLACEMENT, (unsigned char *)out + *o + 3 * r);
        *o += w;
        *i += n;
    }
    return 0;
}

/* Feeds the held-back bytes, then tok (len bytes), through the decoder; the
 * state changes only when it returns >= 0. */
static int detok_feed(eng_detok *d, const unsigned char *tok, size_t len, int final, char *out,
                      size_t cap)
{
    if (cap == 0)
        return -1;
    /* A character that starts in the held-back bytes (< 4) needs at most 3
     * more, so those are decoded from a small joined copy. */
    unsigned char head[8], keep[4];
    size_t k = (size_t)d->n_pending, take = len < 4 ? len : 4, o = 0, i = 0, n_keep;
    memcpy(head, d->pending, k);
    if (take)
        memcpy(head + k, tok, take);
    int per_byte = eng_tokenizer_byte_fallback(d->tok);
    if (detok_run(head, k + take, &i, k, final, per_byte, out, cap, &o) < 0)
        return -1;
    if (i < k) { /* still incomplete; then take == len: all of tok is in head */
        n_keep = k + take - i;
        memcpy(keep, head + i, n_keep);
    } else {
        size_t j = i - k;
        if (detok_run(tok, len, &j, len, final, per_byte, out, cap, &o) < 0)
            return -1;
        n_keep = len - j;
        if (n_keep)
            memcpy(keep, tok + j, n_keep);
    }
    if (n_keep)
        memcpy(d->pending, keep, n_keep);
    d->n_pending = (int)n_keep;
    out[o] = 0;
    return (int)o;
}

int eng_detok_push(eng_detok *d, int32_t id, char *out, size_t cap)
{
    size_t len;
    const char *bytes = eng_tokenizer_token_piece(d->tok, id, !d->started, &len);
    if (!bytes || cap == 0)
        return -1;
    if ((d->skip_special && eng_tokenizer_is_special(d->tok, id)) ||
        eng_tokenizer_is_hole(d->tok, id)) { /* decode leaves these out too */
        out[0] = 0;
        return 0;
    }
    int r = detok_feed(d, (const unsigned char *)bytes, len, 0, out, cap);
    if (r >= 0)
        d->started = 1;
    return r;
}

int eng_detok_flush(eng_detok *d, char *out, size_t cap)
{
    return detok_feed(d, NULL, 0, 1, out, cap);
}
