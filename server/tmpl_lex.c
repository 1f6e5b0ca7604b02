/* tmpl_lex.c - chat template source to tokens (see tmpl.h), with Jinja's
 * lexer rules as transformers configures them: trim_blocks (one newline
 * after a block or comment tag dropped), lstrip_blocks (blanks before a
 * block or comment tag on its own line dropped), whitespace control with -
 * and +, string literals with Python's escapes, Python's idea of
 * whitespace.
 *
 * Reads only within the source; refuses with a reason whatever it does not
 * know.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/tmpl_ast.h"

/* ---- Python whitespace (str.isspace) on UTF-8 ---- */

static int cp_space(unsigned cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

size_t tmpl_space_at(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n >= 1 && u[0] < 0x80)
        return cp_space(u[0]) ? 1 : 0;
    if (n >= 2 && (u[0] & 0xE0) == 0xC0 && (u[1] & 0xC0) == 0x80)
        return cp_space(((u[0] & 0x1Fu) << 6) | (u[1] & 0x3Fu)) ? 2 : 0;
    if (n >= 3 && (u[0] & 0xF0) == 0xE0 && (u[1] & 0xC0) == 0x80 && (u[2] & 0xC0) == 0x80)
        return cp_space(((u[0] & 0x0Fu) << 12) | ((u[1] & 0x3Fu) << 6) | (u[2] & 0x3Fu)) ? 3 : 0;
    return 0;
}

size_t tmpl_space_before(const char *s, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++)
        if (tmpl_space_at(s + n - k, k) == k)
            return k;
    return 0;
}

/* ---- lexer ---- */

int tmpl_fail(tmpl_lexer *L, const char *fmt, const char *arg, size_t arg_len)
{
    if (!L->failed) {
        L->failed = 1;
        char a[48];
        snprintf(a, sizeof a, "%.*s", (int)(arg_len < 40 ? arg_len : 40), arg ? arg : "");
        snprintf(L->why, L->why_cap, fmt, a);
    }
    return -1;
}

static int at(const tmpl_lexer *L, const char *lit)
{
    size_t k = strlen(lit);
    return L->pos + k <= L->n && memcmp(L->src + L->pos, lit, k) == 0;
}

static void skip_space(tmpl_lexer *L)
{
    size_t w;
    while (L->pos < L->n && (w = tmpl_space_at(L->src + L->pos, L->n - L->pos)) > 0)
        L->pos += w;
}

/* Tag end with its whitespace rule; returns 1 when one was consumed. */
static int tag_end(tmpl_lexer *L)
{
    int block = L->mode == 2;
    size_t start = L->pos;
    if (block && at(L, "+%}")) {
        L->pos += 3;
    } else if (at(L, block ? "-%}" : "-}}")) {
        L->pos += 3;
        skip_space(L);
    } else if (at(L, block ? "%}" : "}}")) {
        L->pos += 2;
        if (block && L->pos < L->n && L->src[L->pos] == '\n')
            L->pos++; /* trim_blocks */
    } else {
        return 0;
    }
    L->line_starting = L->pos > start && L->src[L->pos - 1] == '\n';
    return 1;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void put_utf8(tmpl_lexer *L, unsigned cp)
{
    char *o = L->lit + L->lit_len;
    if (cp < 0x80) {
        o[0] = (char)cp;
        L->lit_len += 1;
    } else if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        L->lit_len += 2;
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        L->lit_len += 3;
    } else {
        o[0] = (char)(0xF0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (char)(0x80 | (cp & 0x3F));
        L->lit_len += 4;
    }
}

/* A quoted literal with Python's escapes, decoded at the end of L->lit
 * (never longer than its source). */
static int lex_string(tmpl_lexer *L)
{
    char q = L->src[L->pos++];
    L->tok.kind = TK_STR;
    L->tok.s = L->lit + L->lit_len;
    while (L->pos < L->n && L->src[L->pos] != q) {
        char c = L->src[L->pos++];
        if (c != '\\') {
            L->lit[L->lit_len++] = c;
            continue;
        }
        if (L->pos >= L->n)
            break;
        c = L->src[L->pos++];
        const char *simple = "n\nt\tr\ra\ab\bf\fv\v\\\\''\"\"";
        const char *hit = strchr(simple, c);
        if (c && hit && (hit - simple) % 2 == 0) {
            L->lit[L->lit_len++] = hit[1];
        } else if (c == '\n') {
            /* line continuation */
        } else if (c >= '0' && c <= '7') {
            unsigned v = (unsigned)(c - '0');
            for (int k = 0; k < 2 && L->pos < L->n && L->src[L->pos] >= '0' && L->src[L->pos] <= '7'; k++)
                v = v * 8 + (unsigned)(L->src[L->pos++] - '0');
            put_utf8(L, v);
        } else if (c == 'x' || c == 'u' || c == 'U') {
            int nd = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            unsigned long v = 0;
            for (int k = 0; k < nd; k++) {
                int h = L->pos < L->n ? hexval(L->src[L->pos]) : -1;
                if (h < 0)
                    return tmpl_fail(L, "bad \\%s escape in a string literal", &c, 1);
                v = v * 16 + (unsigned long)h;
                L->pos++;
            }
            if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
                return tmpl_fail(L, "escape out of Unicode range in a string literal", NULL, 0);
            put_utf8(L, (unsigned)v);
        } else if ((unsigned char)c < 0x80 && c != 'N') {
            L->lit[L->lit_len++] = '\\'; /* Python keeps unknown escapes */
            L->lit[L->lit_len++] = c;
        } else {
            return tmpl_fail(L, "unsupported escape in a string literal", NULL, 0);
        }
    }
    if (L->pos >= L->n)
        return tmpl_fail(L, "unterminated string literal", NULL, 0);
    L->pos++;
    L->tok.len = (size_t)(L->lit + L->lit_len - L->tok.s);
    return 0;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_name0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }

/* One token inside {{ }} or {% %}. */
static int lex_tag(tmpl_lexer *L)
{
    for (;;) {
        if (L->balance == 0 && tag_end(L)) {
            L->tok.kind = L->mode == 2 ? TK_BLOCK_END : TK_VAR_END;
            L->mode = 0;
            return 0;
        }
        size_t before = L->pos;
        skip_space(L);
        if (L->pos == before)
            break;
    }
    if (L->pos >= L->n)
        return tmpl_fail(L, "unterminated tag", NULL, 0);
    const char *s = L->src + L->pos;
    char c = *s;
    if (c == '\'' || c == '"')
        return lex_string(L);
    if (is_digit(c)) {
        /* Jinja tries a float first: (\d+_)*\d+ then .\d or e[+-]?\d */
        size_t k = 0;
        while (L->pos + k < L->n && (is_digit(s[k]) || (s[k] == '_' && k > 0 && L->pos + k + 1 < L->n &&
                                                         is_digit(s[k + 1]))))
            k++;
        const char *f = s + k;
        size_t left = L->n - L->pos - k;
        if ((left >= 2 && f[0] == '.' && is_digit(f[1])) ||
            (left >= 2 && (f[0] == 'e' || f[0] == 'E') &&
             (is_digit(f[1]) || (left >= 3 && (f[1] == '+' || f[1] == '-') && is_digit(f[2])))))
            return tmpl_fail(L, "floating-point numbers are not supported", NULL, 0);
        /* then an integer: [1-9](_?\d)* or 0(_?0)* (0b/0o/0x are refused) */
        int64_t v = 0;
        size_t i = 0;
        if (c == '0') {
            for (i = 1; i < k && (s[i] == '0' || (s[i] == '_' && s[i + 1] == '0'));)
                i += s[i] == '_' ? 2 : 1;
            if (L->pos + i < L->n && (s[i] == 'b' || s[i] == 'o' || s[i] == 'x' || s[i] == 'B' || s[i] == 'O' ||
                                      s[i] == 'X'))
                return tmpl_fail(L, "binary, octal and hex literals are not supported", NULL, 0);
        } else {
            for (i = 0; i < k; i++) {
                if (s[i] == '_')
                    continue;
                if (v > (INT64_MAX - 9) / 10)
                    return tmpl_fail(L, "integer literal too large", NULL, 0);
                v = v * 10 + (s[i] - '0');
            }
        }
        L->pos += i;
        L->tok.kind = TK_INT;
        L->tok.i = v;
        return 0;
    }
    if (is_name0(c)) {
        size_t k = 0;
        while (L->pos + k < L->n && (is_name0(s[k]) || is_digit(s[k])))
            k++;
        L->tok.kind = TK_NAME;
        L->tok.s = s;
        L->tok.len = k;
        L->pos += k;
        return 0;
    }
    static const struct { const char *text; int op; } two[] = {
        {"==", OP_EQ}, {"!=", OP_NE}, {"<=", OP_LE}, {">=", OP_GE}, {"//", OP_FLOORDIV}, {"**", OP_POW}};
    L->tok.kind = TK_OP;
    for (size_t k = 0; k < sizeof two / sizeof two[0]; k++)
        if (at(L, two[k].text)) {
            L->tok.op = two[k].op;
            L->pos += 2;
            return 0;
        }
    if (!strchr("+-/*%~[](){}<>=.:|,;", c) || c == '\0')
        return tmpl_fail(L, "unexpected character '%s' in a tag", s, 1);
    if (c == '(' || c == '[' || c == '{')
        L->balance++;
    else if (c == ')' || c == ']' || c == '}') {
        if (L->balance == 0)
            return tmpl_fail(L, "unbalanced '%s'", s, 1);
        L->balance--;
    }
    L->tok.op = c;
    L->pos++;
    return 0;
}

/* The next token of text mode: DATA (whitespace control applied), an
 * opener, or EOF; comments are skipped here. */
static int lex_text(tmpl_lexer *L)
{
    for (;;) {
        if (L->pending) {
            L->tok.kind = L->pending;
            L->mode = L->pending == TK_VAR_BEGIN ? 1 : 2;
            L->pos = L->pending_pos;
            L->pending = 0;
            return 0;
        }
        if (L->pos >= L->n) {
            L->tok.kind = TK_EOF;
            return 0;
        }
        size_t o = L->pos;
        while (o + 1 < L->n && !(L->src[o] == '{' && strchr("{%#", L->src[o + 1]) && L->src[o + 1]))
            o++;
        if (o + 1 >= L->n) { /* no tag: the rest is text */
            L->tok.kind = TK_DATA;
            L->tok.s = L->src + L->pos;
            L->tok.len = L->n - L->pos;
            L->pos = L->n;
            return 0;
        }
        char kind = L->src[o + 1];
        char sign = o + 2 < L->n && (L->src[o + 2] == '-' || L->src[o + 2] == '+') ? L->src[o + 2] : 0;
        const char *text = L->src + L->pos;
        size_t len = o - L->pos;
        if (sign == '-') {
            size_t w;
            while (len > 0 && (w = tmpl_space_before(text, len)) > 0)
                len -= w;
        } else if (sign != '+' && kind != '{') { /* lstrip_blocks */
            size_t l = len;
            while (l > 0 && text[l - 1] != '\n')
                l--;
            if (l < len && (l > 0 || L->line_starting)) {
                size_t k = l, w;
                while (k < len && (w = tmpl_space_at(text + k, len - k)) > 0)
                    k += w;
                if (k == len)
                    len = l;
            }
        }
        size_t after = o + 2 + (sign ? 1 : 0);
        if (kind == '#') { /* comment: its end follows the block-end rules */
            size_t e = after;
            while (e + 1 < L->n && !(L->src[e] == '#' && L->src[e + 1] == '}') &&
                   !((L->src[e] == '-' || L->src[e] == '+') && e + 2 < L->n && L->src[e + 1] == '#' &&
                     L->src[e + 2] == '}'))
                e++;
            if (e + 1 >= L->n)
                return tmpl_fail(L, "unterminated comment", NULL, 0);
            if (L->src[e] == '#') { /* "#}": trim_blocks as after "%}" */
                L->pos = e + 2;
                if (L->pos < L->n && L->src[L->pos] == '\n')
                    L->pos++;
            } else {                /* "-#}" strips what follows, "+#}" keeps it */
                L->pos = e + 3;
                if (L->src[e] == '-')
                    skip_space(L);
            }
            L->line_starting = L->src[L->pos - 1] == '\n';
        } else {
            L->pending = kind == '{' ? TK_VAR_BEGIN : TK_BLOCK_BEGIN;
            L->pending_pos = after;
            L->pos = after;
            L->balance = 0;
        }
        if (len > 0) {
            L->tok.kind = TK_DATA;
            L->tok.s = text;
            L->tok.len = len;
            return 0;
        }
    }
}

int tmpl_lex_next(tmpl_lexer *L) { return L->mode == 0 ? lex_text(L) : lex_tag(L); }

