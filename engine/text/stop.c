/* stop.c - stop sequences over streamed text.
 *
 * Each feed looks at held + new text as one buffer (built in the caller's
 * out, which is big enough), finds the first stop string to complete, and
 * otherwise releases all but the longest tail that is a proper prefix of
 * some stop string.  "First to complete" is the earliest end offset in the
 * text (ties: the longest string, so no part of any stop string leaks);
 * that is what a byte-at-a-time reader sees, so the result never depends on
 * how the text was split into pieces.
 *
 * Must never: emit a byte of a matched stop string or anything after it,
 * hold back a tail that cannot begin a stop string, or allocate.
 */
#include "engine/text/stop.h"

#include <assert.h>
#include <string.h>

int eng_stop_init(eng_stop *s, const char *const *strs, int n, ssmd_err *err)
{
    memset(s, 0, sizeof *s);
    if (n < 0 || n > ENG_STOP_MAX)
        return ssmd_err_set(err, SSMD_EINVAL, "stop: at most %d stop strings (got %d)",
                            ENG_STOP_MAX, n);
    for (int i = 0; i < n; i++) {
        size_t len = strs[i] ? strlen(strs[i]) : 0;
        if (len == 0)
            return ssmd_err_set(err, SSMD_EINVAL, "stop: string %d is empty", i);
        if (len > ENG_STOP_LEN_MAX)
            return ssmd_err_set(err, SSMD_EINVAL,
                                "stop: string %d is %zu bytes long; the limit is %d", i, len,
                                ENG_STOP_LEN_MAX);
        memcpy(s->strs[i], strs[i], len + 1);
        s->lens[i] = len;
    }
    s->n = n;
    return SSMD_OK;
}

/* Length of the longest suffix of buf[len] that is a proper prefix of some
 * stop string (0 if none). */
static size_t stop_hold_len(const eng_stop *s, const char *buf, size_t len)
{
    size_t best = 0;
    for (int i = 0; i < s->n; i++) {
        size_t k = s->lens[i] - 1; /* proper prefix */
        if (k > len)
            k = len;
        for (; k > best; k--) {
            const char *tail = buf + len - k;
            if (tail[0] == s->strs[i][0] && memcmp(tail, s->strs[i], k) == 0) {
                best = k;
                break;
            }
        }
    }
    return best;
}

size_t eng_stop_feed(eng_stop *s, const char *text, size_t len, char *out)
{
    if (s->stopped)
        return 0;
    /* out = held + text: held is at most ENG_STOP_LEN_MAX - 1 bytes. */
    size_t total = s->n_held + len;
    memcpy(out, s->held, s->n_held);
    if (len > 0)
        memcpy(out + s->n_held, text, len);
    s->n_held = 0;

    /* Earliest end; on equal ends the earliest start.  held holds no
     * complete stop string (it would have matched when it arrived), so the
     * first occurrence of each string is the one to compare. */
    size_t cut = total, cut_end = (size_t)-1;
    for (int i = 0; i < s->n; i++) {
        const char *hit = memmem(out, total, s->strs[i], s->lens[i]);
        if (!hit)
            continue;
        size_t start = (size_t)(hit - out);
        size_t end = start + s->lens[i];
        if (end < cut_end || (end == cut_end && start < cut)) {
            cut_end = end;
            cut = start;
        }
    }
    if (cut_end != (size_t)-1) {
        s->stopped = 1;
        return cut;
    }

    size_t hold = stop_hold_len(s, out, total);
    assert(hold < ENG_STOP_LEN_MAX);
    memcpy(s->held, out + total - hold, hold);
    s->n_held = hold;
    return total - hold;
}

size_t eng_stop_flush(eng_stop *s, char *out)
{
    if (s->stopped)
        return 0;
    size_t n = s->n_held;
    memcpy(out, s->held, n);
    s->n_held = 0;
    return n;
}
