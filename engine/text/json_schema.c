/* json_schema.c - the schema compiler and the instance-prefix automaton of
 * json_schema.h.
 *
 * A compiled schema is an array of nodes.  Keys and enum/const values are
 * "texts": their exact compact-JSON bytes, matched byte by byte against the
 * set of texts still possible (a bit mask, so at most 64 per node).  The
 * automaton keeps one frame per open value; a frame whose value can only
 * be seen to end at the next byte (a number, an enum value that is a prefix
 * of another) ends there and hands that byte to its parent.
 */
#include "engine/text/json_schema.h"

#include "engine/text/json_prefix.h" /* ENG_JSON_WS_MAX */

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/xalloc.h"

enum { SN_OBJECT, SN_ARRAY, SN_STRING, SN_NUMBER, SN_INTEGER, SN_TEXTS };

typedef struct sn_node {
    uint8_t kind;
    uint16_t first, n;   /* OBJECT: its keys, TEXTS: its values, in texts[first, first + n) */
    uint64_t required;   /* OBJECT: bit i = key first + i must be given */
    uint16_t items;      /* ARRAY: the node of every item */
    uint16_t min_items, max_items; /* ARRAY */
    uint16_t min_len, max_len;     /* STRING: characters (code points) */
} sn_node;

typedef struct sn_text {
    char *bytes;         /* compact JSON, not NUL-terminated in use */
    uint8_t len;
    uint16_t node;       /* a key: the node of its value */
} sn_text;

struct eng_json_schema {
    sn_node *nodes;
    int n_nodes;
    sn_text *texts;
    int n_texts;
};

/* ---- compiling ------------------------------------------------------------ */

typedef struct compiler {
    eng_json_schema *s;
    ssmd_err *err;
} compiler;

static int new_node(compiler *c, int kind, const char *path)
{
    if (c->s->n_nodes >= ENG_SCHEMA_NODES_MAX)
        return ssmd_err_set(c->err, SSMD_EUNSUPPORTED, "json_schema at %s: more than %d nodes", path,
                            ENG_SCHEMA_NODES_MAX);
    c->s->nodes = xrealloc(c->s->nodes, (size_t)(c->s->n_nodes + 1) * sizeof *c->s->nodes);
    memset(&c->s->nodes[c->s->n_nodes], 0, sizeof *c->s->nodes);
    c->s->nodes[c->s->n_nodes].kind = (uint8_t)kind;
    return c->s->n_nodes++;
}

/* Appends v's compact JSON as a text; returns its index or < 0. */
static int add_text(compiler *c, const json_t *v, const char *path)
{
    char *bytes = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!bytes)
        return ssmd_err_set(c->err, SSMD_ENOMEM, "json_schema at %s: out of memory", path);
    size_t len = strlen(bytes);
    if (len > ENG_SCHEMA_TEXT_MAX) {
        free(bytes);
        return ssmd_err_set(c->err, SSMD_EUNSUPPORTED,
                            "json_schema at %s: a key or enum value longer than %d bytes", path,
                            ENG_SCHEMA_TEXT_MAX);
    }
    c->s->texts = xrealloc(c->s->texts, (size_t)(c->s->n_texts + 1) * sizeof *c->s->texts);
    c->s->texts[c->s->n_texts] = (sn_text){bytes, (uint8_t)len, 0};
    return c->s->n_texts++;
}

static int compile_node(compiler *c, const json_t *sch, const char *path, int depth);

/* A node whose value is one of the JSON values in list (enum, const,
 * boolean, null). */
static int compile_texts(compiler *c, const json_t *list, const char *path)
{
    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > ENG_SCHEMA_CHOICES_MAX)
        return ssmd_err_set(c->err, SSMD_EINVAL,
                            "json_schema at %s: 'enum' must list 1 to %d values", path,
                            ENG_SCHEMA_CHOICES_MAX);
    int rc, id = new_node(c, SN_TEXTS, path);
    if (id < 0)
        return id;
    c->s->nodes[id].first = (uint16_t)c->s->n_texts;
    c->s->nodes[id].n = (uint16_t)json_array_size(list);
    for (size_t i = 0; i < json_array_size(list); i++)
        if ((rc = add_text(c, json_array_get(list, i), path)) < 0)
            return rc;
    return id;
}

static int compile_object(compiler *c, const json_t *sch, const char *path, int depth)
{
    const json_t *props = json_object_get(sch, "properties");
    const json_t *req = json_object_get(sch, "required");
    const json_t *extra = json_object_get(sch, "additionalProperties");
    if (extra && !json_is_false(extra))
        return ssmd_err_set(c->err, SSMD_EUNSUPPORTED,
                            "json_schema at %s: 'additionalProperties' other than false is not "
                            "supported (list every property)", path);
    if (props && !json_is_object(props))
        return ssmd_err_set(c->err, SSMD_EINVAL, "json_schema at %s: 'properties' must be an object",
                            path);
    if (props && json_object_size(props) > ENG_SCHEMA_CHOICES_MAX)
        return ssmd_err_set(c->err, SSMD_EUNSUPPORTED,
                            "json_schema at %s: more than %d properties", path, ENG_SCHEMA_CHOICES_MAX);
    int id = new_node(c, SN_OBJECT, path);
    if (id < 0)
        return id;
    const int first = c->s->n_texts, n = props ? (int)json_object_size(props) : 0;
    /* the keys first, contiguous; then their value nodes */
    const char *key;
    json_t *sub;
    json_object_foreach((json_t *)props, key, sub) {
        json_t *k = json_string(key);
        int t = add_text(c, k, path);
        json_decref(k);
        if (t < 0)
            return t;
    }
    c->s->nodes[id].first = (uint16_t)first;
    c->s->nodes[id].n = (uint16_t)n;
    int i = 0;
    json_object_foreach((json_t *)props, key, sub) {
        char sub_path[512];
        snprintf(sub_path, sizeof sub_path, "%s.properties.%s", path, key);
        int child = compile_node(c, sub, sub_path, depth + 1);
        if (child < 0)
            return child;
        c->s->texts[first + i++].node = (uint16_t)child;
    }
    if (req && !json_is_array(req))
        return ssmd_err_set(c->err, SSMD_EINVAL, "json_schema at %s: 'required' must be a list", path);
    for (size_t r = 0; req && r < json_array_size(req); r++) {
        const json_t *name = json_array_get(req, r);
        int found = -1;
        i = 0;
        json_object_foreach((json_t *)props, key, sub) {
            if (json_is_string(name) && !strcmp(key, json_string_value(name)))
                found = i;
            i++;
        }
        if (found < 0)
            return ssmd_err_set(c->err, SSMD_EINVAL,
                                "json_schema at %s: 'required' names a property not in 'properties'",
                                path);
        c->s->nodes[id].required |= 1ull << found;
    }
    return id;
}

/* The bounds lo_name..hi_name (absent: 0..65535) into *lo, *hi; SSMD_OK or
 * an error naming the keyword. */
static int count_range(compiler *c, const json_t *sch, const char *lo_name, const char *hi_name,
                       const char *path, uint16_t *lo, uint16_t *hi)
{
    const char *names[2] = {lo_name, hi_name};
    int v[2] = {0, 65535};
    for (int i = 0; i < 2; i++) {
        const json_t *j = json_object_get(sch, names[i]);
        if (!j)
            continue;
        if (!json_is_integer(j) || json_integer_value(j) < 0 || json_integer_value(j) > 65535)
            return ssmd_err_set(c->err, SSMD_EUNSUPPORTED,
                                "json_schema at %s: '%s' must be an integer from 0 to 65535", path,
                                names[i]);
        v[i] = (int)json_integer_value(j);
    }
    if (v[0] > v[1])
        return ssmd_err_set(c->err, SSMD_EINVAL, "json_schema at %s: %s above %s", path, lo_name,
                            hi_name);
    *lo = (uint16_t)v[0];
    *hi = (uint16_t)v[1];
    return SSMD_OK;
}

static int compile_array(compiler *c, const json_t *sch, const char *path, int depth)
{
    const json_t *items = json_object_get(sch, "items");
    if (!json_is_object(items))
        return ssmd_err_set(c->err, SSMD_EUNSUPPORTED,
                            "json_schema at %s: an array needs 'items' (one schema)", path);
    uint16_t lo, hi;
    int rc = count_range(c, sch, "minItems", "maxItems", path, &lo, &hi);
    if (rc != SSMD_OK)
        return rc;
    int id = new_node(c, SN_ARRAY, path);
    if (id < 0)
        return id;
    char sub_path[512];
    snprintf(sub_path, sizeof sub_path, "%s.items", path);
    int child = compile_node(c, items, sub_path, depth + 1);
    if (child < 0)
        return child;
    sn_node *n = &c->s->nodes[id];
    n->items = (uint16_t)child;
    n->min_items = lo;
    n->max_items = hi;
    return id;
}

static int compile_string(compiler *c, const json_t *sch, const char *path)
{
    uint16_t lo, hi;
    int rc = count_range(c, sch, "minLength", "maxLength", path, &lo, &hi);
    if (rc != SSMD_OK)
        return rc;
    int id = new_node(c, SN_STRING, path);
    if (id >= 0) {
        c->s->nodes[id].min_len = lo;
        c->s->nodes[id].max_len = hi;
    }
    return id;
}

/* Keywords a node may carry; annotations are read and ignored. */
static const char *const known_keywords[] = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "minLength", "maxLength", "enum", "const", "title", "description", "$schema", "default",
    "examples",
};

static int compile_node(compiler *c, const json_t *sch, const char *path, int depth)
{
    if (!json_is_object(sch))
        return ssmd_err_set(c->err, SSMD_EINVAL, "json_schema at %s: a schema must be an object", path);
    if (depth > ENG_SCHEMA_DEPTH_MAX)
        return ssmd_err_set(c->err, SSMD_EUNSUPPORTED, "json_schema at %s: nested deeper than %d",
                            path, ENG_SCHEMA_DEPTH_MAX);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)sch, key, v) {
        size_t k = 0;
        while (k < sizeof known_keywords / sizeof *known_keywords && strcmp(key, known_keywords[k]))
            k++;
        if (k == sizeof known_keywords / sizeof *known_keywords)
            return ssmd_err_set(c->err, SSMD_EUNSUPPORTED,
                                "json_schema keyword '%.64s' (at %s) is not supported", key, path);
    }
    if (json_object_get(sch, "const")) {
        json_t *one = json_pack("[O]", json_object_get(sch, "const"));
        int id = compile_texts(c, one, path);
        json_decref(one);
        return id;
    }
    if (json_object_get(sch, "enum"))
        return compile_texts(c, json_object_get(sch, "enum"), path);
    const json_t *type = json_object_get(sch, "type");
    if (!json_is_string(type))
        return ssmd_err_set(c->err, SSMD_EUNSUPPORTED,
                            "json_schema at %s: 'type' must be one type name (a list of types, or no "
                            "type, is not supported)", path);
    const char *t = json_string_value(type);
    if (!strcmp(t, "object"))
        return compile_object(c, sch, path, depth);
    if (!strcmp(t, "array"))
        return compile_array(c, sch, path, depth);
    if (!strcmp(t, "string"))
        return compile_string(c, sch, path);
    if (!strcmp(t, "number"))
        return new_node(c, SN_NUMBER, path);
    if (!strcmp(t, "integer"))
        return new_node(c, SN_INTEGER, path);
    if (!strcmp(t, "boolean") || !strcmp(t, "null")) {
        json_t *list = !strcmp(t, "null") ? json_pack("[n]") : json_pack("[bb]", 1, 0);
        int id = compile_texts(c, list, path);
        json_decref(list);
        return id;
    }
    return ssmd_err_set(c->err, SSMD_EINVAL, "json_schema at %s: unknown type '%.32s'", path, t);
}

int eng_json_schema_compile(const json_t *schema, eng_json_schema **out, ssmd_err *err)
{
    *out = NULL;
    if (!json_is_object(schema) || !json_is_string(json_object_get(schema, "type")) ||
        strcmp(json_string_value(json_object_get(schema, "type")), "object") != 0)
        return ssmd_err_set(err, SSMD_EINVAL, "json_schema: the root must be {\"type\": \"object\", ...}");
    compiler c = {xrealloc(NULL, sizeof(eng_json_schema)), err};
    memset(c.s, 0, sizeof *c.s);
    int rc = compile_node(&c, schema, "$", 1);
    if (rc < 0) {
        eng_json_schema_free(c.s);
        return rc;
    }
    *out = c.s;
    return SSMD_OK;
}

void eng_json_schema_free(eng_json_schema *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n_texts; i++)
        free(s->texts[i].bytes);
    free(s->texts);
    free(s->nodes);
    free(s);
}

/* ---- the automaton --------------------------------------------------------- */

enum {
    /* structural: whitespace may come before the next byte */
    PH_VALUE,     /* before a value */
    PH_OBJ_FIRST, /* after '{': a key or '}' */
    PH_OBJ_KEY,   /* after ',': a key */
    PH_COLON,     /* after a key */
    PH_OBJ_AFTER, /* after a property's value: ',' or '}' */
    PH_ARR_FIRST, /* after '[': an item or ']' */
    PH_ARR_AFTER, /* after an item: ',' or ']' */
    /* inside a token */
    PH_KEY,       /* matching a key */
    PH_TEXT,      /* matching an enum value */
    PH_STR,       /* a string (json_lex) */
    PH_NUM,       /* a number (json_lex) */
};

void eng_schema_state_init(eng_schema_state *st, const eng_json_schema *s)
{
    memset(st, 0, sizeof *st);
    st->schema = s;
    st->depth = 1;
    st->frames[0].node = 0;
    st->frames[0].phase = PH_VALUE;
}

void eng_schema_state_copy(eng_schema_state *dst, const eng_schema_state *src)
{
    memcpy(dst, src, offsetof(eng_schema_state, frames) + src->depth * sizeof(eng_schema_frame));
}

int eng_schema_state_complete(const eng_schema_state *st) { return st->done; }

int eng_schema_state_string_room(const eng_schema_state *st)
{
    if (st->done || st->depth == 0)
        return -1;
    const eng_schema_frame *f = &st->frames[st->depth - 1];
    if (f->phase != PH_STR || !json_lex_between_chars(&f->lex))
        return -1;
    return (int)st->schema->nodes[f->node].max_len - (int)f->lex.chars;
}

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static uint64_t all_bits(int n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }

static void end_value(eng_schema_state *st)
{
    if (--st->depth == 0)
        st->done = 1;
}

static void push(eng_schema_state *st, int node)
{
    eng_schema_frame *f = &st->frames[st->depth++];
    memset(f, 0, sizeof *f);
    f->node = (uint16_t)node;
    f->phase = PH_VALUE;
}

/* Narrows f's candidate texts (texts[first + i]) to those with c at pos.
 * Returns 1 when some remain; 0 when none does (cand unchanged). */
static int match_text(const eng_json_schema *s, const sn_node *n, eng_schema_frame *f, unsigned char c)
{
    uint64_t keep = 0;
    for (uint64_t m = f->cand; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        const sn_text *t = &s->texts[n->first + i];
        if (f->pos < t->len && (unsigned char)t->bytes[f->pos] == c)
            keep |= 1ull << i;
    }
    if (!keep)
        return 0;
    f->cand = keep;
    f->pos++;
    return 1;
}

/* The candidate that ends at pos, or -1; and whether another goes on. */
static int text_ended(const eng_json_schema *s, const sn_node *n, const eng_schema_frame *f, int *longer)
{
    int ended = -1;
    *longer = 0;
    for (uint64_t m = f->cand; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        if (s->texts[n->first + i].len == f->pos)
            ended = i;
        else
            *longer = 1;
    }
    return ended;
}

/* The first byte of frame f's value (an enum's goes on to PH_TEXT). */
static int value_start(eng_schema_frame *f, const sn_node *n, unsigned char c, int *again)
{
    switch (n->kind) {
    case SN_OBJECT:
        f->phase = PH_OBJ_FIRST;
        return c == '{';
    case SN_ARRAY:
        f->phase = PH_ARR_FIRST;
        return c == '[';
    case SN_STRING:
        f->phase = PH_STR;
        json_lex_string(&f->lex);
        return c == '"';
    case SN_NUMBER:
    case SN_INTEGER:
        f->phase = PH_NUM;
        return json_lex_number(&f->lex, c);
    default: /* SN_TEXTS: matched from its first byte on */
        f->phase = PH_TEXT;
        f->cand = all_bits(n->n);
        f->pos = 0;
        *again = 1;
        return 1;
    }
}

static int feed_byte(eng_schema_state *st, unsigned char c)
{
    const eng_json_schema *s = st->schema;
    int again;
    do {
        again = 0;
        if (st->done)
            return 0;
        eng_schema_frame *f = &st->frames[st->depth - 1];
        const sn_node *n = &s->nodes[f->node];
        if (is_ws(c) && f->phase <= PH_ARR_AFTER)
            return ++st->ws <= ENG_JSON_WS_MAX;
        if (!is_ws(c))
            st->ws = 0;
        switch (f->phase) {
        case PH_VALUE:
            if (!value_start(f, n, c, &again))
                return 0;
            break;
        case PH_OBJ_FIRST:
            if (c == '}' && n->required == 0) {
                end_value(st);
                break;
            }
            /* else a key: */
            /* fall through */
        case PH_OBJ_KEY:
            if (c != '"' || n->n == 0)
                return 0;
            f->cand = all_bits(n->n) & ~f->seen;
            f->pos = 1; /* every key begins with the quote */
            f->phase = PH_KEY;
            break;
        case PH_KEY: {
            if (!match_text(s, n, f, c))
                return 0;
            int longer, k = text_ended(s, n, f, &longer);
            if (k >= 0) { /* a key's closing quote ends it: no other key goes on */
                f->count = (uint16_t)k;
                f->seen |= 1ull << k;
                f->phase = PH_COLON;
            }
            break;
        }
        case PH_COLON:
            if (c != ':')
                return 0;
            f->phase = PH_OBJ_AFTER;
            push(st, s->texts[n->first + f->count].node);
            break;
        case PH_OBJ_AFTER:
            if (c == ',' && (all_bits(n->n) & ~f->seen)) {
                f->phase = PH_OBJ_KEY;
                break;
            }
            if (c == '}' && !(n->required & ~f->seen)) {
                end_value(st);
                break;
            }
            return 0;
        case PH_ARR_FIRST:
            if (c == ']') {
                if (n->min_items > 0)
                    return 0;
                end_value(st);
                break;
            }
            if (n->max_items == 0)
                return 0;
            f->count = 1;
            f->phase = PH_ARR_AFTER;
            push(st, n->items);
            again = 1;
            break;
        case PH_ARR_AFTER:
            if (c == ',' && f->count < n->max_items) {
                f->count++;
                push(st, n->items);
                break;
            }
            if (c == ']' && f->count >= n->min_items) {
                end_value(st);
                break;
            }
            return 0;
        case PH_TEXT: {
            if (match_text(s, n, f, c)) {
                int longer;
                if (text_ended(s, n, f, &longer) >= 0 && !longer)
                    end_value(st); /* nothing else could follow in this value */
                break;
            }
            int longer;
            if (text_ended(s, n, f, &longer) < 0)
                return 0;
            end_value(st); /* a value that is a prefix of another ended here */
            again = 1;
            break;
        }
        case PH_STR: {
            int r = json_lex_string_byte(&f->lex, c);
            if (r == JL_BAD || f->lex.chars > n->max_len ||
                (r == JL_END && f->lex.chars < n->min_len))
                return 0;
            if (r == JL_END)
                end_value(st);
            break;
        }
        default: { /* PH_NUM */
            int r = json_lex_number_byte(&f->lex, c, n->kind == SN_INTEGER);
            if (r == JL_BAD ||
                f->lex.chars > (n->kind == SN_INTEGER ? ENG_SCHEMA_INTEGER_MAX : ENG_SCHEMA_NUMBER_MAX))
                return 0;
            if (r == JL_END) { /* c follows the number: read it again */
                end_value(st);
                again = 1;
            }
        }
        }
    } while (again);
    return 1;
}

int eng_schema_state_feed(eng_schema_state *st, const char *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!feed_byte(st, (unsigned char)bytes[i]))
            return 0;
    return 1;
}
