/* json_prefix.c - the byte automaton behind json_prefix.h: a lexer state
 * plus a stack of open containers (one bit each: array or object).
 */
#include "engine/text/json_prefix.h"

#include <string.h>

enum {
    JS_START,     /* before the object: '{' */
    JS_OBJ_FIRST, /* after '{': a key or '}' */
    JS_KEY,       /* after ',' in an object: a key */
    JS_COLON,     /* after a key */
    JS_VALUE,     /* after ':' or after ',' in an array */
    JS_ARR_FIRST, /* after '[': a value or ']' */
    JS_AFTER,     /* after a value inside a container: ',' or its closer */
    JS_STR,       /* inside a string */
    JS_ESC,       /* after a backslash */
    JS_HEX,       /* inside \uXXXX */
    JS_UTF8,      /* inside a multi-byte character */
    JS_LIT,       /* inside true / false / null */
    JS_MINUS,     /* number: after '-' */
    JS_ZERO,      /* number: a leading 0 */
    JS_INT,       /* number: integer digits */
    JS_DOT,       /* number: after '.' */
    JS_FRAC,      /* number: fraction digits */
    JS_E,         /* number: after 'e' */
    JS_ESIGN,     /* number: after the exponent's sign */
    JS_EXP,       /* number: exponent digits */
    JS_DONE,      /* the object is closed */
};

void eng_json_prefix_init(eng_json_prefix *p)
{
    memset(p, 0, sizeof *p);
    p->state = JS_START;
}

int eng_json_prefix_complete(const eng_json_prefix *p) { return p->state == JS_DONE; }

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static int top_is_array(const eng_json_prefix *p) { return (p->arrays >> (p->depth - 1)) & 1; }

/* A value has just ended: back in its container, or the end. */
static void value_end(eng_json_prefix *p) { p->state = p->depth ? JS_AFTER : JS_DONE; }

static int open_container(eng_json_prefix *p, int array)
{
    if (p->depth >= ENG_JSON_DEPTH_MAX)
        return 0;
    p->arrays = (p->arrays & ~(1ull << p->depth)) | ((uint64_t)array << p->depth);
    p->depth++;
    p->state = array ? JS_ARR_FIRST : JS_OBJ_FIRST;
    return 1;
}

static int close_container(eng_json_prefix *p, int array)
{
    if (top_is_array(p) != array)
        return 0;
    p->depth--;
    value_end(p);
    return 1;
}

/* The first byte of a value. */
static int value_start(eng_json_prefix *p, unsigned char c)
{
    switch (c) {
    case '{': return open_container(p, 0);
    case '[': return open_container(p, 1);
    case '"': p->state = JS_STR; p->in_key = 0; return 1;
    case 't': p->state = JS_LIT; p->lit = "rue"; return 1;
    case 'f': p->state = JS_LIT; p->lit = "alse"; return 1;
    case 'n': p->state = JS_LIT; p->lit = "ull"; return 1;
    case '-': p->state = JS_MINUS; return 1;
    case '0': p->state = JS_ZERO; return 1;
    default:
        if (c >= '1' && c <= '9') {
            p->state = JS_INT;
            return 1;
        }
        return 0;
    }
}

/* The lead byte of a UTF-8 character inside a string; sets how many
 * continuation bytes follow and the range of the first (which rules out
 * overlong forms, surrogates and code points above U+10FFFF). */
static int utf8_lead(eng_json_prefix *p, unsigned char c)
{
    p->lo = 0x80;
    p->hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        p->left = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        p->left = 2;
        if (c == 0xE0)
            p->lo = 0xA0;
        if (c == 0xED)
            p->hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        p->left = 3;
        if (c == 0xF0)
            p->lo = 0x90;
        if (c == 0xF4)
            p->hi = 0x8F;
    } else
        return 0;
    p->state = JS_UTF8;
    return 1;
}

static int string_byte(eng_json_prefix *p, unsigned char c)
{
    if (c == '"') {
        if (p->in_key)
            p->state = JS_COLON;
        else
            value_end(p);
        return 1;
    }
    if (c == '\\') {
        p->state = JS_ESC;
        return 1;
    }
    if (c < 0x20)
        return 0; /* control characters must be escaped */
    return c < 0x80 ? 1 : utf8_lead(p, c);
}

/* A byte after a number's last digit ends it; the byte is then read in the
 * state the number's end left. */
static int number_byte(eng_json_prefix *p, unsigned char c, int *again)
{
    switch (p->state) {
    case JS_MINUS:
        if (!is_digit(c))
            return 0;
        p->state = c == '0' ? JS_ZERO : JS_INT;
        return 1;
    case JS_DOT:
        if (!is_digit(c))
            return 0;
        p->state = JS_FRAC;
        return 1;
    case JS_E:
        if (c == '+' || c == '-') {
            p->state = JS_ESIGN;
            return 1;
        }
        /* else a digit right after the e: */
        /* fall through */
    case JS_ESIGN:
        if (!is_digit(c))
            return 0;
        p->state = JS_EXP;
        return 1;
    }
    if (is_digit(c) && p->state != JS_ZERO)
        return 1; /* JS_INT, JS_FRAC, JS_EXP go on */
    if (c == '.' && (p->state == JS_ZERO || p->state == JS_INT)) {
        p->state = JS_DOT;
        return 1;
    }
    if ((c == 'e' || c == 'E') && p->state != JS_EXP) {
        p->state = JS_E;
        return 1;
    }
    value_end(p);
    *again = 1;
    return 1;
}

static int feed_byte(eng_json_prefix *p, unsigned char c)
{
    int again = 0;
    do {
        again = 0;
        if (is_ws(c) && p->state <= JS_AFTER) {
            if (++p->ws > ENG_JSON_WS_MAX)
                return 0;
            return 1;
        }
        if (p->state <= JS_AFTER)
            p->ws = 0;
        switch (p->state) {
        case JS_START:
            return c == '{' && open_container(p, 0);
        case JS_OBJ_FIRST:
            if (c == '}')
                return close_container(p, 0);
            /* else a key: */
            /* fall through */
        case JS_KEY:
            if (c != '"')
                return 0;
            p->state = JS_STR;
            p->in_key = 1;
            return 1;
        case JS_COLON:
            if (c != ':')
                return 0;
            p->state = JS_VALUE;
            return 1;
        case JS_ARR_FIRST:
            if (c == ']')
                return close_container(p, 1);
            return value_start(p, c);
        case JS_VALUE:
            return value_start(p, c);
        case JS_AFTER:
            if (c == ',') {
                p->state = top_is_array(p) ? JS_VALUE : JS_KEY;
                return 1;
            }
            if (c == '}' || c == ']')
                return close_container(p, c == ']');
            return 0;
        case JS_STR:
            return string_byte(p, c);
        case JS_ESC:
            if (c == 'u') {
                p->state = JS_HEX;
                p->left = 4;
                return 1;
            }
            p->state = JS_STR;
            return strchr("\"\\/bfnrt", c) != NULL && c != 0;
        case JS_HEX:
            if (!is_hex(c))
                return 0;
            if (--p->left == 0)
                p->state = JS_STR;
            return 1;
        case JS_UTF8:
            if (c < p->lo || c > p->hi)
                return 0;
            p->lo = 0x80;
            p->hi = 0xBF;
            if (--p->left == 0)
                p->state = JS_STR;
            return 1;
        case JS_LIT:
            if (c != (unsigned char)*p->lit)
                return 0;
            if (*++p->lit == '\0')
                value_end(p);
            return 1;
        case JS_DONE:
            return 0;
        default:
            if (!number_byte(p, c, &again))
                return 0;
        }
    } while (again);
    return 1;
}

int eng_json_prefix_feed(eng_json_prefix *p, const char *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!feed_byte(p, (unsigned char)bytes[i]))
            return 0;
    return 1;
}
