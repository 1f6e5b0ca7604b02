/* added_tokens.c - loading and matching added tokens (see added_tokens.h).
 * Must never keep per-call state in the eng_added (threads share it).
 */
#include "engine/text/added_tokens.h"

#include <string.h>

#include "engine/text/json_util.h"
#include "engine/text/unicode.h"
#include "engine/xalloc.h"

#define ADDED_MAX_ID ((1 << 24) - 1)

static char *memdup0(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static void build_set(eng_added *a, eng_added_set *set, int normalized)
{
    size_t count[256] = {0};
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].normalized == normalized && a->v[i].pattern_len > 0)
            count[(unsigned char)a->v[i].pattern[0]]++;
    set->start[0] = 0;
    for (int x = 0; x < 256; x++)
        set->start[x + 1] = set->start[x] + (uint32_t)count[x];
    set->order = xmalloc((set->start[256] + 1) * sizeof *set->order);
    uint32_t fill[256];
    memcpy(fill, set->start, sizeof fill);
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].normalized == normalized && a->v[i].pattern_len > 0)
            set->order[fill[(unsigned char)a->v[i].pattern[0]]++] = (int32_t)i;
    /* Longest first; among equal lengths the earlier token (insertion sort is
     * stable), which is what the first match of equal length gives. */
    for (int x = 0; x < 256; x++) {
        int32_t *g = set->order + set->start[x];
        size_t gn = set->start[x + 1] - set->start[x];
        for (size_t i = 1; i < gn; i++) {
            int32_t v = g[i];
            size_t j = i;
            while (j > 0 && a->v[g[j - 1]].pattern_len < a->v[v].pattern_len) {
                g[j] = g[j - 1];
                j--;
            }
            g[j] = v;
        }
    }
}

int eng_added_load(eng_added *a, const json_t *list, const eng_norm *nm, const char *path,
                   ssmd_err *err)
{
    memset(a, 0, sizeof *a);
    if (!list || json_is_null(list))
        list = NULL;
    else if (!json_is_array(list))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: added_tokens is not an array", path);
    size_t n = json_array_size(list);
    a->v = xmalloc((n + 1) * sizeof *a->v);
    eng_norm_scratch sc = {0};
    /* Specials first, then the others, as tokenizers orders its matchers. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            const json_t *t = json_array_get(list, i);
            const json_t *id = json_object_get(t, "id"), *content = json_object_get(t, "content");
            if (!json_is_integer(id) || json_integer_value(id) < 0 ||
                json_integer_value(id) > ADDED_MAX_ID || !json_is_string(content)) {
                eng_norm_scratch_free(&sc);
                return ssmd_err_set(err, SSMD_EFORMAT, "%s: added_tokens[%zu] needs an id in "
                                    "0..%d and a content string", path, i, ADDED_MAX_ID);
            }
            int special = eng_json_bool(t, "special", 0);
            if (special != (pass == 0) || json_string_length(content) == 0)
                continue;
            eng_added_tok *at = &a->v[a->n++];
            memset(at, 0, sizeof *at);
            at->len = json_string_length(content);
            at->content = memdup0(json_string_value(content), at->len);
            at->id = (int32_t)json_integer_value(id);
            at->special = special;
            at->lstrip = eng_json_bool(t, "lstrip", 0);
            at->rstrip = eng_json_bool(t, "rstrip", 0);
            at->single_word = eng_json_bool(t, "single_word", 0);
            at->normalized = eng_json_bool(t, "normalized", !special);
            const char *p = at->content;
            size_t pn = at->len;
            if (at->normalized && eng_utf8_valid(p, pn))
                p = eng_norm_run(nm, p, pn, &pn, &sc);
            at->pattern = memdup0(p, pn);
            at->pattern_len = pn;
        }
    }
    eng_norm_scratch_free(&sc);
    build_set(a, &a->raw, 0);
    build_set(a, &a->norm, 1);
    return SSMD_OK;
}

void eng_added_free(eng_added *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->v[i].content);
        free(a->v[i].pattern);
    }
    free(a->v);
    free(a->raw.order);
    free(a->norm.order);
    memset(a, 0, sizeof *a);
}

int32_t eng_added_find(const eng_added *a, const char *s, size_t n)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].len == n && memcmp(a->v[i].content, s, n) == 0)
            return a->v[i].id;
    return -1;
}

/* ---- matching ---------------------------------------------------------------------- */

static uint32_t char_at(const char *s, size_t i)
{
    uint32_t cp;
    eng_utf8_decode_valid((const unsigned char *)s + i, &cp);
    return cp;
}

/* Index of the first byte of the character that ends at end (> 0). */
static size_t char_start_before(const char *s, size_t end)
{
    size_t i = end - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
        i--;
    return i;
}

static uint32_t char_before(const char *s, size_t end) { return char_at(s, char_start_before(s, end)); }

/* Start of the run of White_Space that ends at end. */
static size_t space_run_start(const char *s, size_t end)
{
    while (end > 0 && eng_unicode_is_space(char_before(s, end)))
        end = char_start_before(s, end);
    return end;
}

static size_t space_run_end(const char *s, size_t n, size_t i)
{
    while (i < n) {
        uint32_t cp;
        size_t l = eng_utf8_decode_valid((const unsigned char *)s + i, &cp);
        if (!eng_unicode_is_space(cp))
            break;
        i += l;
    }
    return i;
}

void eng_added_split(const eng_added *a, int normalized, const char *s, size_t n, eng_idvec *ids,
                     eng_added_gap_fn gap, void *ctx)
{
    const eng_added_set *set = normalized ? &a->norm : &a->raw;
    size_t pos = 0, done = 0;
    while (pos < n && set->start[256] > 0) {
        unsigned x = (unsigned char)s[pos];
        const eng_added_tok *m = NULL;
        for (uint32_t k = set->start[x]; k < set->start[x + 1]; k++) {
            const eng_added_tok *t = &a->v[set->order[k]];
            if (t->pattern_len <= n - pos && memcmp(s + pos, t->pattern, t->pattern_len) == 0) {
                m = t;
                break;
            }
        }
        if (!m) {
            pos++;
            continue;
        }
        size_t start = pos, stop = pos + m->pattern_len;
        pos = stop; /* matching goes on after the match, whatever happens to it */
        if (m->single_word && ((start > 0 && eng_unicode_is_word(char_before(s, start))) ||
                               (stop < n && eng_unicode_is_word(char_at(s, stop)))))
            continue;
        if (m->lstrip) {
            size_t ls = space_run_start(s, start);
            start = ls > done ? ls : done;
        }
        if (m->rstrip)
            stop = space_run_end(s, n, stop);
        if (done < start)
            gap(ctx, s + done, start - done, done);
        eng_idvec_push(ids, m->id);
        done = stop;
    }
    if (done < n)
        gap(ctx, s + done, n - done, done);
}
