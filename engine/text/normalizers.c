/* normalizers.c - loading and running the normalizer chain (see
 * normalizers.h), step by step as `tokenizers` applies a Sequence.  Only the
 * normalized text matters here: no alignments are kept, since encode never
 * reports offsets.
 *
 * Must never keep per-call state in the eng_norm (threads share it).
 */
#include "engine/text/normalizers.h"

#include <string.h>

#include "engine/text/json_util.h"
#include "engine/text/unicode.h"
#include "engine/xalloc.h"

typedef enum norm_kind {
    NORM_KIND_FORM,      /* NFC, NFD, NFKC, NFKD */
    NORM_KIND_LOWERCASE,
    NORM_KIND_REPLACE,
    NORM_KIND_PREPEND,
    NORM_KIND_STRIP,
} norm_kind;

typedef struct norm_step {
    norm_kind kind;
    eng_unicode_form form;
    eng_regex *re;     /* Replace */
    char *content;     /* Replace: the replacement; Prepend: the prefix */
    size_t content_len;
    int left, right;   /* Strip */
} norm_step;

struct eng_norm {
    norm_step *steps; /* (n) */
    size_t n;
};

/* ---- loading ------------------------------------------------------------------ */

static char *dup_json_string(const json_t *v, size_t *len)
{
    *len = json_string_length(v);
    char *d = xmalloc(*len + 1);
    memcpy(d, json_string_value(v), *len + 1);
    return d;
}

static int load_replace(norm_step *st, const json_t *j, const char *what, const char *path,
                        ssmd_err *err, eng_regex **re_out)
{
    const json_t *pat = json_object_get(j, "pattern");
    const json_t *rx = json_object_get(pat, "Regex"), *lit = json_object_get(pat, "String");
    const json_t *src = json_is_string(rx) ? rx : lit;
    const json_t *content = json_object_get(j, "content");
    if (!json_is_string(src) || !json_is_string(content))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: %s Replace needs a pattern {\"Regex\" or "
                            "\"String\": ...} and a content string", path, what);
    char msg[300];
    *re_out = eng_regex_compile(json_string_value(src), json_string_length(src), src == lit, msg,
                                sizeof msg);
    if (!*re_out)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: %s Replace pattern \"%.100s\" does not "
                            "compile: %s", path, what, json_string_value(src), msg);
    st->content = dup_json_string(content, &st->content_len);
    return SSMD_OK;
}

int eng_replace_load(const json_t *j, const char *what, const char *path, eng_regex **re,
                     char **content, size_t *content_len, ssmd_err *err)
{
    norm_step st = {0};
    int rc = load_replace(&st, j, what, path, err, re);
    *content = st.content;
    *content_len = st.content_len;
    return rc;
}

static int load_step_cb(void *obj, const json_t *j, const char *path, ssmd_err *err);

static int load_step(eng_norm *nm, const json_t *j, const char *path, ssmd_err *err)
{
    if (!json_is_object(j))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: normalizer is not an object", path);
    const char *type = eng_json_str(j, "type", "");
    if (strcmp(type, "Sequence") == 0)
        return eng_json_sequence(nm, j, "normalizers", "normalizer", load_step_cb, path, err);
    static const char *const forms[] = {"NFC", "NFD", "NFKC", "NFKD"};
    norm_step st = {0};
    int rc = SSMD_OK, known = 0;
    for (int f = 0; f < 4; f++)
        if (strcmp(type, forms[f]) == 0) {
            st.kind = NORM_KIND_FORM;
            st.form = (eng_unicode_form)f;
            known = 1;
        }
    if (known) {
    } else if (strcmp(type, "Lowercase") == 0) {
        st.kind = NORM_KIND_LOWERCASE;
    } else if (strcmp(type, "Replace") == 0) {
        st.kind = NORM_KIND_REPLACE;
        rc = load_replace(&st, j, "normalizer", path, err, &st.re);
    } else if (strcmp(type, "Prepend") == 0) {
        const json_t *pre = json_object_get(j, "prepend");
        if (!json_is_string(pre))
            return ssmd_err_set(err, SSMD_EFORMAT, "%s: normalizer Prepend needs a \"prepend\" "
                                "string", path);
        st.kind = NORM_KIND_PREPEND;
        st.content = dup_json_string(pre, &st.content_len);
    } else if (strcmp(type, "Strip") == 0) {
        st.kind = NORM_KIND_STRIP;
        st.left = eng_json_bool(j, "strip_left", 1);
        st.right = eng_json_bool(j, "strip_right", 1);
    } else {
        return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                            "%s: normalizer \"%.64s\" is not supported (NFC, NFD, NFKC, NFKD, "
                            "Lowercase, Replace, Prepend, Strip and Sequence are)", path, type);
    }
    if (rc != SSMD_OK) {
        eng_regex_free(st.re);
        free(st.content);
        return rc;
    }
    nm->steps = xrealloc(nm->steps, (nm->n + 1) * sizeof *nm->steps);
    nm->steps[nm->n++] = st;
    return SSMD_OK;
}

static int load_step_cb(void *obj, const json_t *j, const char *path, ssmd_err *err)
{
    return load_step((eng_norm *)obj, j, path, err);
}

int eng_norm_load(const json_t *j, const char *path, eng_norm **out, ssmd_err *err)
{
    *out = NULL;
    if (!j || json_is_null(j))
        return SSMD_OK;
    eng_norm *nm = xcalloc(1, sizeof *nm);
    int rc = load_step(nm, j, path, err);
    if (rc != SSMD_OK) {
        eng_norm_free(nm);
        return rc;
    }
    *out = nm;
    return SSMD_OK;
}

void eng_norm_free(eng_norm *nm)
{
    if (!nm)
        return;
    for (size_t i = 0; i < nm->n; i++) {
        eng_regex_free(nm->steps[i].re);
        free(nm->steps[i].content);
    }
    free(nm->steps);
    free(nm);
}

void eng_norm_scratch_free(eng_norm_scratch *sc)
{
    free(sc->buf[0]);
    free(sc->buf[1]);
    eng_segs_free(&sc->segs);
    eng_regex_scratch_free(&sc->re);
    memset(sc, 0, sizeof *sc);
}

/* ---- running ------------------------------------------------------------------ */

/* Buffer k of sc with room for n bytes. */
static char *buf_get(eng_norm_scratch *sc, int k, size_t n)
{
    if (sc->cap[k] < n) {
        sc->cap[k] = n > 2 * sc->cap[k] ? n : 2 * sc->cap[k];
        sc->buf[k] = xrealloc(sc->buf[k], sc->cap[k]);
    }
    return sc->buf[k];
}

static int all_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    return 1;
}

static size_t run_lowercase(const char *s, size_t n, char *w)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp, low[2];
        i += eng_utf8_decode_valid((const unsigned char *)s + i, &cp);
        size_t k = eng_unicode_lower(cp, low);
        for (size_t j = 0; j < k; j++)
            o += eng_utf8_encode(low[j], (unsigned char *)w + o);
    }
    return o;
}

static const char *run_strip(const norm_step *st, const char *s, size_t *n)
{
    size_t a = 0, b = *n;
    uint32_t cp;
    while (st->left && a < b) {
        size_t l = eng_utf8_decode_valid((const unsigned char *)s + a, &cp);
        if (!eng_unicode_is_space(cp))
            break;
        a += l;
    }
    while (st->right && b > a) {
        size_t i = b - 1;
        while (i > a && ((unsigned char)s[i] & 0xC0) == 0x80)
            i--;
        eng_utf8_decode_valid((const unsigned char *)s + i, &cp);
        if (!eng_unicode_is_space(cp))
            break;
        b = i;
    }
    *n = b - a;
    return s + a;
}

const char *eng_norm_run(const eng_norm *nm, const char *s, size_t n, size_t *out_n,
                         eng_norm_scratch *sc)
{
    int k = 0; /* the buffer the next rewritten text goes to */
    for (size_t i = 0; nm && i < nm->n; i++) {
        const norm_step *st = &nm->steps[i];
        char *w = NULL;
        switch (st->kind) {
        case NORM_KIND_FORM:
            if (all_ascii(s, n) || (st->form == ENG_UNICODE_FORM_NFC && eng_unicode_nfc_quick(s, n)))
                continue;
            {
                size_t m;
                char *r = eng_unicode_normalize(s, n, st->form, &m);
                w = buf_get(sc, k, m + 1);
                memcpy(w, r, m);
                free(r);
                n = m;
            }
            break;
        case NORM_KIND_LOWERCASE:
            w = buf_get(sc, k, 3 * n + 1); /* a character's lowercase is at most 3x longer */
            n = run_lowercase(s, n, w);
            break;
        case NORM_KIND_REPLACE:
            n = eng_regex_replace(st->re, st->content, st->content_len, s, n, &sc->segs, &sc->re,
                                  &sc->buf[k], &sc->cap[k]);
            w = sc->buf[k];
            break;
        case NORM_KIND_PREPEND:
            if (n == 0)
                continue;
            w = buf_get(sc, k, st->content_len + n + 1);
            memmove(w + st->content_len, s, n); /* s is never buf[k] here, but be safe */
            memcpy(w, st->content, st->content_len);
            n += st->content_len;
            break;
        case NORM_KIND_STRIP:
            s = run_strip(st, s, &n);
            continue;
        }
        s = w;
        k ^= 1;
    }
    *out_n = n;
    return s;
}
