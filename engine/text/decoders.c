/* decoders.c - loading and running the decoder chain (see decoders.h), each
 * step as `tokenizers`' decode_chain over a list of strings.  After a step
 * that fuses the list into one string (ByteLevel, Fuse, no decoder), "the
 * first token" and "the last token" are the start and end of the text,
 * which a run over a slice of the stream may not hold: eng_dec_mode says.
 *
 * Must never keep per-call state in the eng_dec (threads share it).
 */
#include "engine/text/decoders.h"

#include <string.h>

#include "engine/text/bpe.h"
#include "engine/text/json_util.h"
#include "engine/text/normalizers.h"
#include "engine/text/unicode.h"
#include "engine/xalloc.h"

typedef enum dec_kind {
    DEC_KIND_BYTE_LEVEL,
    DEC_KIND_METASPACE,
    DEC_KIND_BYTE_FALLBACK,
    DEC_KIND_FUSE,
    DEC_KIND_STRIP,
    DEC_KIND_REPLACE,
    DEC_KIND_JOIN_SPACES, /* no decoder at all */
} dec_kind;

typedef struct dec_step {
    dec_kind kind;
    uint32_t cp;       /* Metaspace replacement, Strip content */
    int drop_first;    /* Metaspace: prepend_scheme is not "never" */
    size_t start, stop; /* Strip */
    eng_regex *re;     /* Replace */
    char *content;
    size_t content_len;
} dec_step;

struct eng_dec {
    dec_step *steps; /* (n) */
    size_t n;
    int byte_fallback;
};

/* ---- loading ------------------------------------------------------------------ */

/* The one character of j[name]; 0 when it is not exactly one. */
static uint32_t one_char(const json_t *j, const char *name, const char *dflt)
{
    const char *s = eng_json_str(j, name, dflt);
    uint32_t cp;
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 4 || !eng_utf8_valid(s, n) ||
        eng_utf8_decode_valid((const unsigned char *)s, &cp) != n)
        return 0;
    return cp;
}

static int size_field(const json_t *j, const char *name, size_t *out)
{
    const json_t *v = json_object_get(j, name);
    if (!v) {
        *out = 0;
        return 1;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000)
        return 0;
    *out = (size_t)json_integer_value(v);
    return 1;
}

static int load_step_cb(void *obj, const json_t *j, const char *path, ssmd_err *err);

static int load_step(eng_dec *d, const json_t *j, const char *path, ssmd_err *err)
{
    if (!json_is_object(j))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: decoder is not an object", path);
    const char *type = eng_json_str(j, "type", "");
    if (strcmp(type, "Sequence") == 0)
        return eng_json_sequence(d, j, "decoders", "decoder", load_step_cb, path, err);
    dec_step st = {0};
    if (strcmp(type, "ByteLevel") == 0) {
        st.kind = DEC_KIND_BYTE_LEVEL;
    } else if (strcmp(type, "Metaspace") == 0) {
        st.kind = DEC_KIND_METASPACE;
        st.cp = one_char(j, "replacement", "\xE2\x96\x81");
        const char *scheme = eng_json_str(j, "prepend_scheme", NULL);
        st.drop_first = scheme ? strcmp(scheme, "never") != 0
                               : eng_json_bool(j, "add_prefix_space", 1);
        if (!st.cp)
            return ssmd_err_set(err, SSMD_EFORMAT, "%s: decoder Metaspace replacement must be "
                                "one character", path);
    } else if (strcmp(type, "ByteFallback") == 0) {
        st.kind = DEC_KIND_BYTE_FALLBACK;
        d->byte_fallback = 1;
    } else if (strcmp(type, "Fuse") == 0) {
        st.kind = DEC_KIND_FUSE;
    } else if (strcmp(type, "Strip") == 0) {
        st.kind = DEC_KIND_STRIP;
        st.cp = one_char(j, "content", NULL);
        if (!st.cp || !size_field(j, "start", &st.start) || !size_field(j, "stop", &st.stop))
            return ssmd_err_set(err, SSMD_EFORMAT, "%s: decoder Strip needs one content "
                                "character and start/stop counts", path);
    } else if (strcmp(type, "Replace") == 0) {
        st.kind = DEC_KIND_REPLACE;
        int rc = eng_replace_load(j, "decoder", path, &st.re, &st.content, &st.content_len, err);
        if (rc != SSMD_OK)
            return rc;
    } else {
        return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                            "%s: decoder \"%.64s\" is not supported (ByteLevel, Metaspace, "
                            "ByteFallback, Fuse, Strip, Replace and Sequence are)", path, type);
    }
    d->steps = xrealloc(d->steps, (d->n + 1) * sizeof *d->steps);
    d->steps[d->n++] = st;
    return SSMD_OK;
}

static int load_step_cb(void *obj, const json_t *j, const char *path, ssmd_err *err)
{
    return load_step((eng_dec *)obj, j, path, err);
}

int eng_dec_load(const json_t *j, const char *path, eng_dec **out, ssmd_err *err)
{
    eng_dec *d = xcalloc(1, sizeof *d);
    int rc = SSMD_OK;
    if (!j || json_is_null(j)) {
        d->steps = xcalloc(1, sizeof *d->steps);
        d->steps[0].kind = DEC_KIND_JOIN_SPACES;
        d->n = 1;
    } else {
        rc = load_step(d, j, path, err);
    }
    if (rc != SSMD_OK) {
        eng_dec_free(d);
        d = NULL;
    }
    *out = d;
    return rc;
}

void eng_dec_free(eng_dec *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        eng_regex_free(d->steps[i].re);
        free(d->steps[i].content);
    }
    free(d->steps);
    free(d);
}

void eng_dec_scratch_free(eng_dec_scratch *sc)
{
    eng_pieces_free(&sc->other);
    eng_segs_free(&sc->segs);
    eng_regex_scratch_free(&sc->re);
    free(sc->buf);
    memset(sc, 0, sizeof *sc);
}

int eng_dec_has_byte_fallback(const eng_dec *d) { return d && d->byte_fallback; }

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int eng_dec_byte_token(const eng_dec *d, const char *t, size_t n, unsigned char *byte)
{
    if (!d || !d->byte_fallback || n != 6 || memcmp(t, "<0x", 3) != 0 || t[5] != '>')
        return 0;
    /* Rust's u8::from_str_radix also takes a '+' sign */
    int hi = t[3] == '+' ? 0 : hex_digit(t[3]), lo = hex_digit(t[4]);
    if (hi < 0 || lo < 0)
        return 0;
    *byte = (unsigned char)(hi * 16 + lo);
    return 1;
}

/* ---- running ------------------------------------------------------------------ */

#define PIECE(l, i) ((l)->text + (l)->v[i].off)

static void run_byte_level(const eng_pieces *in, eng_pieces *out, int raw, eng_dec_scratch *sc)
{
    char *w = eng_pieces_reserve(out, in->len);
    size_t o = 0;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = PIECE(in, i);
        size_t n = in->v[i].len, start = o;
        for (size_t k = 0; k < n;) {
            uint32_t cp;
            k += eng_utf8_decode_valid((const unsigned char *)s + k, &cp);
            int b = eng_bpe_cp_to_byte(cp);
            if (b < 0) { /* not all byte characters: the token's own bytes */
                memcpy(w + start, s, n);
                o = start + n;
                break;
            }
            w[o++] = (char)b;
        }
    }
    if (raw) {
        eng_pieces_close(out, o, 0);
        return;
    }
    if (sc->cap < 3 * o + 1) {
        sc->cap = 3 * o + 1;
        sc->buf = xrealloc(sc->buf, sc->cap);
    }
    size_t m = eng_utf8_sanitize((const unsigned char *)w, o, sc->buf);
    eng_pieces_add(out, sc->buf, m, 0);
}

/* Ends a run of byte-fallback bytes (out's last piece, still open). */
static void close_byte_run(eng_pieces *out, size_t *run, int raw)
{
    if (*run == 0)
        return;
    const char *s = out->text + out->len;
    if (raw || eng_utf8_valid(s, *run)) {
        eng_pieces_close(out, *run, 0);
    } else {
        size_t k = *run; /* one U+FFFD per byte */
        for (size_t i = 0; i < k; i++)
            eng_pieces_add(out, "\xEF\xBF\xBD", 3, 0);
    }
    *run = 0;
}

static void run_byte_fallback(const eng_dec *d, const eng_pieces *in, eng_pieces *out, int raw)
{
    size_t run = 0; /* bytes of the open run, written after out->len */
    for (size_t i = 0; i < in->n; i++) {
        unsigned char byte;
        if (eng_dec_byte_token(d, PIECE(in, i), in->v[i].len, &byte)) {
            eng_pieces_reserve(out, run + 1)[run] = (char)byte;
            run++;
            continue;
        }
        close_byte_run(out, &run, raw);
        eng_pieces_add(out, PIECE(in, i), in->v[i].len, 0);
    }
    close_byte_run(out, &run, raw);
}

/* Per piece: s with cp replaced (first: dropped) - Metaspace. */
static void run_metaspace(const dec_step *st, const eng_pieces *in, eng_pieces *out, int at_start)
{
    for (size_t i = 0; i < in->n; i++) {
        const char *s = PIECE(in, i);
        size_t n = in->v[i].len, o = 0;
        int drop = i == 0 && at_start && st->drop_first;
        char *w = eng_pieces_reserve(out, n);
        for (size_t k = 0; k < n;) {
            uint32_t cp = 0;
            size_t l;
            /* raw runs may hold invalid bytes: they pass through */
            if (eng_utf8_next((const unsigned char *)s + k, n - k, &cp, &l) == ENG_UTF8_STATUS_OK &&
                cp == st->cp) {
                if (!drop)
                    w[o++] = ' ';
            } else {
                memcpy(w + o, s + k, l);
                o += l;
            }
            k += l;
        }
        eng_pieces_close(out, o, 0);
    }
}

/* Bytes of the character that ends at end in s. */
static size_t last_char_len(const char *s, size_t end)
{
    size_t i = end - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80 && end - i < 4)
        i--;
    return end - i;
}

static void run_strip(const dec_step *st, const eng_pieces *in, eng_pieces *out, int fused,
                      eng_dec_mode mode)
{
    size_t start = fused && !mode.at_start ? 0 : st->start;
    size_t stop = fused && !mode.at_end ? 0 : st->stop;
    unsigned char c[4];
    size_t cl = eng_utf8_encode(st->cp, c);
    for (size_t i = 0; i < in->n; i++) {
        const char *s = PIECE(in, i);
        size_t a = 0, b = in->v[i].len;
        for (size_t k = 0; k < start && b - a >= cl && memcmp(s + a, c, cl) == 0; k++)
            a += cl;
        for (size_t k = 0; k < stop && b > a && last_char_len(s, b) == cl &&
                           memcmp(s + b - cl, c, cl) == 0; k++)
            b -= cl;
        eng_pieces_add(out, s + a, b - a, 0);
    }
}

eng_pieces *eng_dec_run(const eng_dec *d, eng_pieces *list, eng_dec_mode mode,
                        eng_dec_scratch *sc)
{
    eng_pieces *in = list, *out = &sc->other;
    out->keep_empty = 1; /* positions matter: Metaspace treats index 0 apart */
    int fused = 0;
    for (size_t k = 0; d && k < d->n; k++) {
        const dec_step *st = &d->steps[k];
        eng_pieces_clear(out);
        switch (st->kind) {
        case DEC_KIND_BYTE_LEVEL:
            run_byte_level(in, out, mode.raw, sc);
            fused = 1;
            break;
        case DEC_KIND_METASPACE:
            run_metaspace(st, in, out, mode.at_start);
            break;
        case DEC_KIND_BYTE_FALLBACK:
            run_byte_fallback(d, in, out, mode.raw);
            break;
        case DEC_KIND_FUSE:
        case DEC_KIND_JOIN_SPACES: {
            int spaces = st->kind == DEC_KIND_JOIN_SPACES;
            char *w = eng_pieces_reserve(out, 2 * in->len + in->n + 1);
            size_t o = 0;
            for (size_t i = 0; i < in->n; i++) {
                if (spaces && (i > 0 || !mode.at_start))
                    w[o++] = ' ';
                memcpy(w + o, PIECE(in, i), in->v[i].len);
                o += in->v[i].len;
            }
            eng_pieces_close(out, o, 0);
            fused = 1;
            break;
        }
        case DEC_KIND_STRIP:
            run_strip(st, in, out, fused, mode);
            break;
        case DEC_KIND_REPLACE:
            for (size_t i = 0; i < in->n; i++) {
                if (!eng_utf8_valid(PIECE(in, i), in->v[i].len)) { /* raw bytes: left alone */
                    eng_pieces_add(out, PIECE(in, i), in->v[i].len, 0);
                    continue;
                }
                size_t m = eng_regex_replace(st->re, st->content, st->content_len, PIECE(in, i),
                                             in->v[i].len, &sc->segs, &sc->re, &sc->buf, &sc->cap);
                eng_pieces_add(out, sc->buf, m, 0);
            }
            break;
        }
        eng_pieces *t = in;
        in = out;
        out = t;
    }
    return in;
}
