/* json_prefix.c - the byte automaton behind json_prefix.h: a structural
 * state plus a stack of open containers (one bit each: array or object);
 * strings and numbers go through json_lex.c.
 */
#include "engine/text/json_prefix.h"

#include <limits.h>
#include <string.h>

enum {
    /* between tokens: whitespace may come first */
    JS_START,     /* before the object: '{' */
    JS_OBJ_FIRST, /* after '{': a key or '}' */
    JS_KEY,       /* after ',' in an object: a key */
    JS_COLON,     /* after a key */
    JS_VALUE,     /* after ':' or after ',' in an array */
    JS_ARR_FIRST, /* after '[': a value or ']' */
    JS_AFTER,     /* after a value inside a container: ',' or its closer */
    /* inside a token */
    JS_STR,       /* a string (json_lex) */
    JS_NUM,       /* a number (json_lex) */
    JS_LIT,       /* true / false / null */
    JS_DONE,      /* the object is closed */
};

void eng_json_prefix_init(eng_json_prefix *p)
{
    memset(p, 0, sizeof *p);
    p->state = JS_START;
}

int eng_json_prefix_complete(const eng_json_prefix *p) { return p->state == JS_DONE; }

int eng_json_prefix_string_room(const eng_json_prefix *p)
{
    return p->state == JS_STR && json_lex_between_chars(&p->lex) ? INT_MAX : -1;
}

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
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

static void begin_string(eng_json_prefix *p, int key)
{
    p->state = JS_STR;
    p->in_key = (uint8_t)key;
    json_lex_string(&p->lex);
}

/* The first byte of a value. */
static int value_start(eng_json_prefix *p, unsigned char c)
{
    switch (c) {
    case '{': return open_container(p, 0);
    case '[': return open_container(p, 1);
    case '"': begin_string(p, 0); return 1;
    case 't': p->state = JS_LIT; p->lit = "rue"; return 1;
    case 'f': p->state = JS_LIT; p->lit = "alse"; return 1;
    case 'n': p->state = JS_LIT; p->lit = "ull"; return 1;
    default:
        p->state = JS_NUM;
        return json_lex_number(&p->lex, c);
    }
}

static int feed_byte(eng_json_prefix *p, unsigned char c)
{
    for (;;) {
        if (is_ws(c) && p->state <= JS_AFTER)
            return ++p->ws <= ENG_JSON_WS_MAX;
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
            begin_string(p, 1);
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
            switch (json_lex_string_byte(&p->lex, c)) {
            case JL_BAD: return 0;
            case JL_END:
                if (p->in_key)
                    p->state = JS_COLON;
                else
                    value_end(p);
            }
            return 1;
        case JS_NUM:
            switch (json_lex_number_byte(&p->lex, c, 0)) {
            case JL_BAD: return 0;
            case JL_MORE: return 1;
            }
            value_end(p); /* c follows the number: read it again */
            continue;
        case JS_LIT:
            if (c != (unsigned char)*p->lit)
                return 0;
            if (*++p->lit == '\0')
                value_end(p);
            return 1;
        default: /* JS_DONE */
            return 0;
        }
    }
}

int eng_json_prefix_feed(eng_json_prefix *p, const char *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!feed_byte(p, (unsigned char)bytes[i]))
            return 0;
    return 1;
}
