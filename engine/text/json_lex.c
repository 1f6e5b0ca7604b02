/* json_lex.c - the string and number lexers of json_lex.h. */
#include "engine/text/json_lex.h"

#include <string.h>

enum {
    LX_STR, LX_ESC, LX_HEX, LX_UTF8,                            /* strings */
    LX_MINUS, LX_ZERO, LX_INT, LX_DOT, LX_FRAC, LX_E, LX_ESIGN, LX_EXP, /* numbers */
};

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int is_hex(unsigned char c)
{
    return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

void json_lex_string(json_lex *l)
{
    memset(l, 0, sizeof *l);
    l->phase = LX_STR;
}

/* A lead byte: how many continuation bytes follow and the range of the
 * first, which rules out overlong forms, surrogates and > U+10FFFF. */
static int utf8_lead(json_lex *l, unsigned char c)
{
    l->lo = 0x80;
    l->hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        l->left = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        l->left = 2;
        l->lo = c == 0xE0 ? 0xA0 : 0x80;
        l->hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        l->left = 3;
        l->lo = c == 0xF0 ? 0x90 : 0x80;
        l->hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return JL_BAD;
    }
    l->phase = LX_UTF8;
    return JL_MORE;
}

int json_lex_string_byte(json_lex *l, unsigned char c)
{
    switch (l->phase) {
    case LX_STR:
        if (c == '"')
            return JL_END;
        if (c < 0x20)
            return JL_BAD; /* control characters must be escaped */
        l->chars++;
        if (c == '\\')
            l->phase = LX_ESC;
        else if (c >= 0x80)
            return utf8_lead(l, c);
        return JL_MORE;
    case LX_ESC:
        if (c == 'u') {
            l->phase = LX_HEX;
            l->left = 4;
            return JL_MORE;
        }
        l->phase = LX_STR;
        return c != 0 && strchr("\"\\/bfnrt", c) ? JL_MORE : JL_BAD;
    case LX_HEX:
        if (!is_hex(c))
            return JL_BAD;
        /* \uD800-\uDBFF is the high half of a pair: the pair is one character */
        if (l->left == 4)
            l->surrogate = (c | 0x20) == 'd';
        else if (l->left == 3 && l->surrogate && strchr("89abAB", c))
            l->chars--;
        if (--l->left == 0)
            l->phase = LX_STR;
        return JL_MORE;
    default: /* LX_UTF8 */
        if (c < l->lo || c > l->hi)
            return JL_BAD;
        l->lo = 0x80;
        l->hi = 0xBF;
        if (--l->left == 0)
            l->phase = LX_STR;
        return JL_MORE;
    }
}

int json_lex_between_chars(const json_lex *l) { return l->phase == LX_STR; }

int json_lex_number(json_lex *l, unsigned char c)
{
    memset(l, 0, sizeof *l);
    l->chars = 1;
    l->phase = c == '-' ? LX_MINUS : c == '0' ? LX_ZERO : LX_INT;
    return c == '-' || is_digit(c);
}

int json_lex_number_byte(json_lex *l, unsigned char c, int integer)
{
    l->chars++;
    switch (l->phase) {
    case LX_MINUS:
        if (!is_digit(c))
            return JL_BAD;
        l->phase = c == '0' ? LX_ZERO : LX_INT;
        return JL_MORE;
    case LX_DOT:
        if (!is_digit(c))
            return JL_BAD;
        l->phase = LX_FRAC;
        return JL_MORE;
    case LX_E:
        if (c == '+' || c == '-') {
            l->phase = LX_ESIGN;
            return JL_MORE;
        }
        /* else a digit right after the e: */
        /* fall through */
    case LX_ESIGN:
        if (!is_digit(c))
            return JL_BAD;
        l->phase = LX_EXP;
        return JL_MORE;
    }
    if (is_digit(c) && l->phase != LX_ZERO)
        return JL_MORE; /* LX_INT, LX_FRAC, LX_EXP go on */
    if (!integer && c == '.' && (l->phase == LX_ZERO || l->phase == LX_INT)) {
        l->phase = LX_DOT;
        return JL_MORE;
    }
    if (!integer && (c == 'e' || c == 'E') && l->phase != LX_EXP) {
        l->phase = LX_E;
        return JL_MORE;
    }
    l->chars--;
    return JL_END;
}
