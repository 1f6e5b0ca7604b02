/* pretokenizers.c - loading and running the pre-tokenizer chain (see
 * pretokenizers.h).  Each step rewrites the whole piece list into the other
 * buffer of the scratch, as `tokenizers` splits its PreTokenizedString step
 * by step; pieces never merge across steps and empty ones vanish.
 *
 * Must never keep per-call state in the eng_pretok (threads share it).
 */
#include "engine/text/pretokenizers.h"

#include <stdio.h>
#include <string.h>

#include "engine/text/bpe.h"
#include "engine/text/json_util.h"
#include "engine/text/unicode.h"
#include "engine/xalloc.h"

/* The regex of ByteLevel's use_regex (GPT-2's). */
#define PRETOK_GPT2_PATTERN \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

typedef enum pretok_kind {
    PRETOK_KIND_BYTE_LEVEL,
    PRETOK_KIND_SPLIT,
    PRETOK_KIND_DIGITS,
    PRETOK_KIND_PUNCTUATION,
    PRETOK_KIND_WHITESPACE,
    PRETOK_KIND_WHITESPACE_SPLIT,
    PRETOK_KIND_METASPACE,
} pretok_kind;

typedef enum pretok_prepend {
    PRETOK_PREPEND_NEVER,
    PRETOK_PREPEND_FIRST,
    PRETOK_PREPEND_ALWAYS,
} pretok_prepend;

typedef struct pretok_step {
    pretok_kind kind;
    eng_regex *re;               /* Split; ByteLevel with use_regex */
    int invert;                  /* Split */
    eng_split_behavior behavior; /* Split, Punctuation, Digits */
    int prefix_space;            /* ByteLevel add_prefix_space */
    int map_bytes;               /* ByteLevel: write the byte-to-unicode spelling */
    char repl[8];                /* Metaspace replacement, UTF-8 */
    size_t repl_len;
    uint32_t repl_cp;
    pretok_prepend prepend;      /* Metaspace prepend_scheme */
    int split;                   /* Metaspace split */
} pretok_step;

struct eng_pretok {
    pretok_step *steps; /* (n) */
    size_t n;
    int bytes_out;
};

/* ---- loading ------------------------------------------------------------------ */

static int load_split(pretok_step *st, const json_t *j, const char *path, ssmd_err *err)
{
    const json_t *pat = json_object_get(j, "pattern");
    const json_t *rx = json_object_get(pat, "Regex"), *lit = json_object_get(pat, "String");
    const json_t *src = json_is_string(rx) ? rx : lit;
    if (!json_is_string(src))
        return ssmd_err_set(err, SSMD_EFORMAT,
                            "%s: pre_tokenizer Split needs a pattern {\"Regex\": ...} or "
                            "{\"String\": ...}", path);
    int b = eng_split_behavior_parse(eng_json_str(j, "behavior", ""));
    if (b < 0)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: pre_tokenizer Split has an unknown behavior "
                            "\"%.64s\"", path, eng_json_str(j, "behavior", ""));
    st->behavior = (eng_split_behavior)b;
    st->invert = eng_json_bool(j, "invert", 0);
    char msg[300];
    st->re = eng_regex_compile(json_string_value(src), json_string_length(src), src == lit, msg,
                               sizeof msg);
    if (!st->re)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: pre_tokenizer Split pattern \"%.100s\" does "
                            "not compile: %s", path, json_string_value(src), msg);
    return SSMD_OK;
}

static int load_metaspace(pretok_step *st, const json_t *j, const char *path, ssmd_err *err)
{
    const char *r = eng_json_str(j, "replacement", "\xE2\x96\x81"); /* U+2581 */
    uint32_t cp;
    size_t n = strlen(r);
    if (n == 0 || n > 4 || !eng_utf8_valid(r, n) ||
        eng_utf8_decode_valid((const unsigned char *)r, &cp) != n)
        return ssmd_err_set(err, SSMD_EFORMAT,
                            "%s: Metaspace replacement must be one character", path);
    memcpy(st->repl, r, n + 1);
    st->repl_len = n;
    st->repl_cp = cp;
    st->split = eng_json_bool(j, "split", 1);
    const char *scheme = eng_json_str(j, "prepend_scheme", NULL);
    if (!scheme) /* older files: add_prefix_space */
        st->prepend = eng_json_bool(j, "add_prefix_space", 1) ? PRETOK_PREPEND_ALWAYS
                                                              : PRETOK_PREPEND_NEVER;
    else if (strcmp(scheme, "always") == 0)
        st->prepend = PRETOK_PREPEND_ALWAYS;
    else if (strcmp(scheme, "first") == 0)
        st->prepend = PRETOK_PREPEND_FIRST;
    else if (strcmp(scheme, "never") == 0)
        st->prepend = PRETOK_PREPEND_NEVER;
    else
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: Metaspace prepend_scheme \"%.32s\" is not "
                            "always, first or never", path, scheme);
    return SSMD_OK;
}

static int load_step_cb(void *obj, const json_t *j, const char *path, ssmd_err *err);

static int load_step(eng_pretok *p, const json_t *j, const char *path, ssmd_err *err)
{
    if (!json_is_object(j))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: pre_tokenizer is not an object", path);
    const char *type = eng_json_str(j, "type", "");
    if (strcmp(type, "Sequence") == 0)
        return eng_json_sequence(p, j, "pretokenizers", "pre_tokenizer", load_step_cb, path, err);
    pretok_step st = {0};
    int rc = SSMD_OK;
    if (strcmp(type, "ByteLevel") == 0) {
        st.kind = PRETOK_KIND_BYTE_LEVEL;
        st.prefix_space = eng_json_bool(j, "add_prefix_space", 1);
        st.map_bytes = 1;
        char msg[300];
        if (eng_json_bool(j, "use_regex", 1) &&
            !(st.re = eng_regex_compile(PRETOK_GPT2_PATTERN, strlen(PRETOK_GPT2_PATTERN), 0, msg,
                                        sizeof msg)))
            ssmd_fatal("the GPT-2 pattern does not compile: %s", msg);
    } else if (strcmp(type, "Split") == 0) {
        st.kind = PRETOK_KIND_SPLIT;
        rc = load_split(&st, j, path, err);
    } else if (strcmp(type, "Digits") == 0) {
        st.kind = PRETOK_KIND_DIGITS;
        st.behavior = eng_json_bool(j, "individual_digits", 0) ? ENG_SPLIT_BEHAVIOR_ISOLATED
                                                                : ENG_SPLIT_BEHAVIOR_CONTIGUOUS;
    } else if (strcmp(type, "Punctuation") == 0) {
        st.kind = PRETOK_KIND_PUNCTUATION;
        int b = eng_split_behavior_parse(eng_json_str(j, "behavior", "Isolated"));
        if (b < 0)
            return ssmd_err_set(err, SSMD_EFORMAT, "%s: pre_tokenizer Punctuation has an unknown "
                                "behavior", path);
        st.behavior = (eng_split_behavior)b;
    } else if (strcmp(type, "Whitespace") == 0) {
        st.kind = PRETOK_KIND_WHITESPACE;
    } else if (strcmp(type, "WhitespaceSplit") == 0) {
        st.kind = PRETOK_KIND_WHITESPACE_SPLIT;
    } else if (strcmp(type, "Metaspace") == 0) {
        st.kind = PRETOK_KIND_METASPACE;
        rc = load_metaspace(&st, j, path, err);
    } else {
        return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                            "%s: pre_tokenizer \"%.64s\" is not supported (ByteLevel, Split, "
                            "Digits, Punctuation, Whitespace, WhitespaceSplit, Metaspace and "
                            "Sequence are)", path, type);
    }
    if (rc != SSMD_OK) {
        eng_regex_free(st.re);
        return rc;
    }
    p->steps = xrealloc(p->steps, (p->n + 1) * sizeof *p->steps);
    p->steps[p->n++] = st;
    return SSMD_OK;
}

static int load_step_cb(void *obj, const json_t *j, const char *path, ssmd_err *err)
{
    return load_step((eng_pretok *)obj, j, path, err);
}

int eng_pretok_load(const json_t *j, const char *path, eng_pretok **out, ssmd_err *err)
{
    *out = NULL;
    if (!j || json_is_null(j))
        return SSMD_OK;
    eng_pretok *p = xcalloc(1, sizeof *p);
    int rc = load_step(p, j, path, err);
    if (rc != SSMD_OK) {
        eng_pretok_free(p);
        return rc;
    }
    /* A ByteLevel step last leaves its mapping to BPE, which reads bytes. */
    if (p->n > 0 && p->steps[p->n - 1].kind == PRETOK_KIND_BYTE_LEVEL) {
        p->steps[p->n - 1].map_bytes = 0;
        p->bytes_out = 1;
    }
    *out = p;
    return SSMD_OK;
}

void eng_pretok_free(eng_pretok *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        eng_regex_free(p->steps[i].re);
    free(p->steps);
    free(p);
}

int eng_pretok_bytes_out(const eng_pretok *p) { return p && p->bytes_out; }

int eng_pretok_metaspace(const eng_pretok *p, char replacement[8])
{
    for (size_t i = 0; p && i < p->n; i++)
        if (p->steps[i].kind == PRETOK_KIND_METASPACE) {
            memcpy(replacement, p->steps[i].repl, 8);
            return 1;
        }
    return 0;
}

void eng_pretok_scratch_free(eng_pretok_scratch *sc)
{
    eng_pieces_free(&sc->a);
    eng_pieces_free(&sc->b);
    eng_pieces_free(&sc->tmp);
    eng_segs_free(&sc->segs);
    eng_regex_scratch_free(&sc->re);
}

/* ---- running ------------------------------------------------------------------ */

/* Appends s as one piece, in GPT-2's byte-to-unicode spelling when map. */
static void add_mapped(eng_pieces *out, const char *s, size_t n, int at_start, int map)
{
    if (!map) {
        eng_pieces_add(out, s, n, at_start);
        return;
    }
    unsigned char *w = (unsigned char *)eng_pieces_reserve(out, 2 * n); /* <= 2 bytes a byte */
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += eng_utf8_encode(eng_bpe_byte_to_cp((unsigned char)s[i]), w + o);
    eng_pieces_close(out, o, at_start);
}

static void run_byte_level(const pretok_step *st, const char *s, size_t n, int at_start,
                           eng_pretok_scratch *sc, eng_pieces *out)
{
    if (st->prefix_space && s[0] != ' ') {
        eng_pieces_clear(&sc->tmp);
        char *w = eng_pieces_reserve(&sc->tmp, n + 1);
        w[0] = ' ';
        memcpy(w + 1, s, n);
        s = w;
        n++;
    }
    if (!st->re) {
        add_mapped(out, s, n, at_start, st->map_bytes);
        return;
    }
    /* Isolated: every match and every gap is a word of its own. */
    eng_segs_regex(&sc->segs, st->re, s, n, &sc->re);
    for (size_t i = 0; i < sc->segs.n; i++) {
        const eng_seg *g = &sc->segs.v[i];
        add_mapped(out, s + g->a, g->b - g->a, at_start && g->a == 0, st->map_bytes);
    }
}

static int pred_equal(uint32_t cp, const void *arg) { return cp == *(const uint32_t *)arg; }

static void run_metaspace(const pretok_step *st, const char *s, size_t n, int at_start,
                          eng_pretok_scratch *sc, eng_pieces *out)
{
    eng_pieces_clear(&sc->tmp);
    char *w = eng_pieces_reserve(&sc->tmp, st->repl_len * (n + 1));
    size_t o = 0;
    int starts_with_repl = (s[0] == ' ') || (n >= st->repl_len && memcmp(s, st->repl, st->repl_len) == 0);
    if (!starts_with_repl && (st->prepend == PRETOK_PREPEND_ALWAYS ||
                              (st->prepend == PRETOK_PREPEND_FIRST && at_start))) {
        memcpy(w, st->repl, st->repl_len);
        o = st->repl_len;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(w + o, st->repl, st->repl_len);
            o += st->repl_len;
        } else {
            w[o++] = s[i];
        }
    }
    if (!st->split) {
        eng_pieces_add(out, w, o, at_start);
        return;
    }
    eng_segs_chars(&sc->segs, pred_equal, &st->repl_cp, w, o);
    eng_split_emit(&sc->segs, ENG_SPLIT_BEHAVIOR_MERGED_WITH_NEXT, w, at_start, out);
}

/* Whitespace: the runs of \w+ and of [^\w\s]+ are words, the rest goes. */
static void run_whitespace(const char *s, size_t n, int at_start, eng_pieces *out)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = eng_utf8_decode_valid((const unsigned char *)s + i, &cp);
        if (eng_unicode_is_space(cp) && !eng_unicode_is_word(cp)) {
            i += l;
            continue;
        }
        int word = eng_unicode_is_word(cp);
        size_t j = i + l;
        while (j < n) {
            size_t m = eng_utf8_decode_valid((const unsigned char *)s + j, &cp);
            int w = eng_unicode_is_word(cp);
            if (w != word || (!w && eng_unicode_is_space(cp)))
                break;
            j += m;
        }
        eng_pieces_add(out, s + i, j - i, at_start && i == 0);
        i = j;
    }
}

static int pred_number(uint32_t cp, const void *arg) { return eng_unicode_is_number(cp); }
static int pred_punct(uint32_t cp, const void *arg) { return eng_unicode_is_punct(cp); }
static int pred_space(uint32_t cp, const void *arg) { return eng_unicode_is_space(cp); }

static void run_step(const pretok_step *st, const char *s, size_t n, int at_start,
                     eng_pretok_scratch *sc, eng_pieces *out)
{
    eng_segs *g = &sc->segs;
    switch (st->kind) {
    case PRETOK_KIND_BYTE_LEVEL:
        run_byte_level(st, s, n, at_start, sc, out);
        return;
    case PRETOK_KIND_METASPACE:
        run_metaspace(st, s, n, at_start, sc, out);
        return;
    case PRETOK_KIND_WHITESPACE:
        run_whitespace(s, n, at_start, out);
        return;
    case PRETOK_KIND_SPLIT:
        eng_segs_regex(g, st->re, s, n, &sc->re);
        if (st->invert)
            eng_segs_invert(g);
        break;
    case PRETOK_KIND_DIGITS:
        eng_segs_chars(g, pred_number, NULL, s, n);
        break;
    case PRETOK_KIND_PUNCTUATION:
        eng_segs_chars(g, pred_punct, NULL, s, n);
        break;
    case PRETOK_KIND_WHITESPACE_SPLIT:
        eng_segs_chars(g, pred_space, NULL, s, n);
        eng_split_emit(g, ENG_SPLIT_BEHAVIOR_REMOVED, s, at_start, out);
        return;
    }
    eng_split_emit(g, st->behavior, s, at_start, out);
}

const eng_pieces *eng_pretok_run(const eng_pretok *p, const char *s, size_t n, int at_start,
                                 eng_pretok_scratch *sc)
{
    eng_pieces *in = &sc->a, *out = &sc->b;
    eng_pieces_clear(in);
    eng_pieces_add(in, s, n, at_start);
    for (size_t k = 0; p && k < p->n; k++) {
        eng_pieces_clear(out);
        for (size_t i = 0; i < in->n; i++) {
            const eng_piece *pc = &in->v[i];
            run_step(&p->steps[k], in->text + pc->off, pc->len, pc->at_start, sc, out);
        }
        eng_pieces *t = in;
        in = out;
        out = t;
    }
    return in;
}
