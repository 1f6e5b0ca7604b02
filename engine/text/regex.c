/* regex.c - PCRE2 behind the small interface of regex.h.
 *
 * Patterns compile with UTF and UCP (so \s, \w, \d and POSIX classes are
 * Unicode-aware as in Oniguruma) and are JIT-compiled when the platform
 * allows; matching then runs the JIT code, and falls back to the
 * interpreter when the JIT stack is too small for one input.  Subjects are
 * always valid UTF-8 (the caller validated them), so the UTF check is off.
 * Must never keep per-call state in the eng_regex: it is shared by threads.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "engine/text/regex.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/xalloc.h"

struct eng_regex {
    pcre2_code *code;
};

/* Oniguruma's \s (what `tokenizers` runs) is exactly White_Space; PCRE2's,
 * with UCP, also takes U+180E.  So \s becomes this list, and \S outside a
 * class its complement.  (\S inside a class is left as PCRE2 reads it.) */
#define RE_WHITE_SPACE \
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
    "\\x{202F}\\x{205F}\\x{3000}"

static void put(char **o, const char *s, size_t n)
{
    memcpy(*o, s, n);
    *o += n;
}

/* The pattern with \s and \S spelled as Oniguruma means them; malloc'ed. */
static char *onig_spaces(const char *p, size_t n, size_t *out_n)
{
    static const char ws[] = RE_WHITE_SPACE;
    char *out = xmalloc(n * (sizeof ws + 3) + 1), *o = out;
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[++i];
            if (e == 'Q') { /* \Q...\E is literal */
                size_t end = i + 1;
                while (end < n && !(p[end] == '\\' && end + 1 < n && p[end + 1] == 'E'))
                    end++;
                end = end < n ? end + 2 : n;
                put(&o, p + i - 1, end - (i - 1));
                i = end - 1;
            } else if (e == 's') {
                if (!in_class)
                    put(&o, "[", 1);
                put(&o, ws, sizeof ws - 1);
                if (!in_class)
                    put(&o, "]", 1);
            } else if (e == 'S' && !in_class) {
                put(&o, "[^", 2);
                put(&o, ws, sizeof ws - 1);
                put(&o, "]", 1);
            } else {
                put(&o, p + i - 1, 2);
            }
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            put(&o, p + i, 1);
            if (i + 1 < n && p[i + 1] == '^')
                put(&o, p + ++i, 1);
            if (i + 1 < n && p[i + 1] == ']') /* a leading ] is literal */
                put(&o, p + ++i, 1);
            continue;
        }
        if (c == '[' && in_class && i + 1 < n && p[i + 1] == ':') { /* [:alpha:] */
            size_t end = i + 2;
            while (end + 1 < n && !(p[end] == ':' && p[end + 1] == ']'))
                end++;
            end = end + 1 < n ? end + 2 : n;
            put(&o, p + i, end - i);
            i = end - 1;
            continue;
        }
        if (c == ']' && in_class)
            in_class = 0;
        put(&o, p + i, 1);
    }
    *out_n = (size_t)(o - out);
    return out;
}

eng_regex *eng_regex_compile(const char *pattern, size_t len, int literal, char *msg, size_t cap)
{
    int errcode = 0;
    PCRE2_SIZE erroff = 0;
    /* PCRE2 refuses UCP with LITERAL; a literal needs no classes anyway */
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    size_t plen = len;
    char *p = literal ? NULL : onig_spaces(pattern, len, &plen);
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)(p ? p : pattern), plen, opts, &errcode,
                                     &erroff, NULL);
    free(p);
    if (!code) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(errcode, buf, sizeof buf);
        snprintf(msg, cap, "%s", (const char *)buf); /* (an offset would be into the rewrite) */
        return NULL;
    }
    /* No JIT (an unsupported CPU, or a hardened kernel) only costs speed. */
    (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    eng_regex *re = xmalloc(sizeof *re);
    re->code = code;
    return re;
}

void eng_regex_free(eng_regex *re)
{
    if (!re)
        return;
    pcre2_code_free(re->code);
    free(re);
}

void eng_regex_scratch_free(eng_regex_scratch *sc)
{
    pcre2_match_data_free(sc->match_data);
    sc->match_data = NULL;
}

void eng_regex_iter_init(eng_regex_iter *it, const eng_regex *re, const char *s, size_t len,
                         eng_regex_scratch *sc)
{
    *it = (eng_regex_iter){.re = re, .s = s, .len = len, .sc = sc};
    if (!sc->match_data) {
        /* Only the whole match is read: one pair is enough for any pattern. */
        sc->match_data = pcre2_match_data_create(1, NULL);
        if (!sc->match_data)
            ssmd_fatal("out of memory (PCRE2 match data)");
    }
}

/* One search from it->next; returns 1 with [*a, *b) or 0. */
static int search(eng_regex_iter *it, size_t *a, size_t *b)
{
    pcre2_match_data *md = it->sc->match_data;
    int rc = pcre2_match(it->re->code, (PCRE2_SPTR)it->s, it->len, it->next, PCRE2_NO_UTF_CHECK,
                         md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* the interpreter keeps its frames on the heap */
        rc = pcre2_match(it->re->code, (PCRE2_SPTR)it->s, it->len, it->next,
                         PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    if (rc < 0)
        return 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *a = ov[0];
    *b = ov[1];
    /* \K can put the start after the end; such a match is taken as empty. */
    if (*a > *b)
        *a = *b;
    return 1;
}

static size_t char_len_at(const char *s, size_t len, size_t i)
{
    size_t n = 1;
    while (i + n < len && ((unsigned char)s[i + n] & 0xC0) == 0x80)
        n++;
    return n;
}

int eng_regex_iter_next(eng_regex_iter *it, size_t *start, size_t *end)
{
    while (it->next <= it->len) {
        size_t a, b;
        if (!search(it, &a, &b)) {
            it->next = it->len + 1;
            return 0;
        }
        if (a == b && it->have_last && b == it->last_end) {
            /* an empty match touching the previous one: step over a character */
            it->next += it->next < it->len ? char_len_at(it->s, it->len, it->next) : 1;
            continue;
        }
        it->next = b;
        it->last_end = b;
        it->have_last = 1;
        *start = a;
        *end = b;
        return 1;
    }
    return 0;
}
