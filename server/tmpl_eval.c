/* tmpl_eval.c - renders a compiled chat template (see tmpl.h) with Jinja's
 * semantics for the subset: Python truthiness, `and`/`or` returning an
 * operand, undefined values that print as "" but fail in arithmetic,
 * True/False/None printed as Python does.
 *
 * Every string made while rendering comes from a per-render arena with a
 * byte budget, and the output has a cap, so a template cannot make the
 * server allocate without bound.  No I/O, no globals.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/tmpl_ast.h"

typedef enum vk { VK_UNDEF, VK_NONE, VK_BOOL, VK_INT, VK_STR, VK_LIST, VK_DICT, VK_LOOP } vk;

typedef struct val {
    vk k;
    int64_t i;        /* BOOL, INT */
    const char *s;    /* STR (not NUL-terminated) */
    size_t n;
    const json_t *j;  /* LIST, DICT */
} val;

typedef struct blk {
    struct blk *next;
    char data[];
} blk;

typedef struct ev {
    const srv_tmpl *t;
    const srv_tmpl_vars *v;
    char *out;
    size_t len, cap, max;
    blk *arena;
    size_t arena_bytes, arena_max;
    const json_t *item;   /* the loop variable's message */
    size_t loop_i, loop_n;
    ssmd_err *err;
    int failed;
} ev;

static int fail(ev *e, const char *fmt, const char *arg)
{
    if (!e->failed) {
        e->failed = 1;
        ssmd_err_set(e->err, SSMD_EINVAL, fmt, arg ? arg : "");
    }
    return -1;
}

static char *alloc(ev *e, size_t n)
{
    if (n > e->arena_max - e->arena_bytes) {
        fail(e, "chat template: strings larger than the limit%s", "");
        return NULL;
    }
    blk *b = malloc(sizeof *b + (n ? n : 1));
    if (!b) {
        fail(e, "chat template: out of memory%s", "");
        return NULL;
    }
    b->next = e->arena;
    e->arena = b;
    e->arena_bytes += n;
    return b->data;
}

static const char *kind_name(vk k)
{
    static const char *const names[] = {"undefined", "none", "boolean", "integer", "string", "list", "object",
                                        "loop"};
    return names[k];
}

static void from_json(const json_t *j, val *o)
{
    memset(o, 0, sizeof *o);
    if (json_is_string(j)) {
        o->k = VK_STR;
        o->s = json_string_value(j);
        o->n = json_string_length(j);
    } else if (json_is_integer(j)) {
        o->k = VK_INT;
        o->i = json_integer_value(j);
    } else if (json_is_boolean(j)) {
        o->k = VK_BOOL;
        o->i = json_is_true(j);
    } else if (json_is_array(j)) {
        o->k = VK_LIST;
        o->j = j;
    } else if (json_is_object(j)) {
        o->k = VK_DICT;
        o->j = j;
    } else if (json_is_null(j)) {
        o->k = VK_NONE;
    } else {
        o->k = VK_UNDEF; /* a real number: not in the subset, treated as absent */
    }
}

static int truthy(const val *a)
{
    switch (a->k) {
    case VK_BOOL:
    case VK_INT:
        return a->i != 0;
    case VK_STR:
        return a->n > 0;
    case VK_LIST:
        return json_array_size(a->j) > 0;
    case VK_DICT:
        return json_object_size(a->j) > 0;
    case VK_LOOP:
        return 1;
    default:
        return 0;
    }
}

/* Python's str() of a value, for output, ~ and trim. */
static int to_str(ev *e, const val *a, const char **s, size_t *n)
{
    char buf[32];
    switch (a->k) {
    case VK_STR:
        *s = a->s;
        *n = a->n;
        return 0;
    case VK_UNDEF:
        *s = "";
        *n = 0;
        return 0;
    case VK_NONE:
        *s = "None";
        *n = 4;
        return 0;
    case VK_BOOL:
        *s = a->i ? "True" : "False";
        *n = strlen(*s);
        return 0;
    case VK_INT: {
        int k = snprintf(buf, sizeof buf, "%" PRId64, a->i);
        char *p = alloc(e, (size_t)k);
        if (!p)
            return -1;
        memcpy(p, buf, (size_t)k);
        *s = p;
        *n = (size_t)k;
        return 0;
    }
    default:
        return fail(e, "chat template: cannot turn a%s into text", a->k == VK_LIST ? " list" : "n object");
    }
}

static int concat(ev *e, const char *a, size_t an, const char *b, size_t bn, val *o)
{
    char *p = alloc(e, an + bn);
    if (!p)
        return -1;
    memcpy(p, a, an);
    memcpy(p + an, b, bn);
    memset(o, 0, sizeof *o);
    o->k = VK_STR;
    o->s = p;
    o->n = an + bn;
    return 0;
}

static void strip(val *a, int left, int right)
{
    size_t w;
    while (left && a->n > 0 && (w = tmpl_space_at(a->s, a->n)) > 0) {
        a->s += w;
        a->n -= w;
    }
    while (right && a->n > 0 && (w = tmpl_space_before(a->s, a->n)) > 0)
        a->n -= w;
}

static int is_num(const val *a) { return a->k == VK_INT || a->k == VK_BOOL; }

static int equal(const val *a, const val *b)
{
    if (is_num(a) && is_num(b))
        return a->i == b->i;
    if (a->k != b->k)
        return 0;
    switch (a->k) {
    case VK_STR:
        return a->n == b->n && !memcmp(a->s, b->s, a->n);
    case VK_LIST:
    case VK_DICT:
        return json_equal((json_t *)a->j, (json_t *)b->j);
    default:
        return 1; /* undefined, none, loop */
    }
}

/* a OP b for an ordering operator: 1/0, or -1 on a type error. */
static int order(ev *e, const val *a, int op, const val *b)
{
    int c;
    if (is_num(a) && is_num(b)) {
        c = a->i < b->i ? -1 : a->i > b->i;
    } else if (a->k == VK_STR && b->k == VK_STR) { /* UTF-8 byte order is code point order */
        size_t m = a->n < b->n ? a->n : b->n;
        c = memcmp(a->s, b->s, m);
        if (c == 0)
            c = a->n < b->n ? -1 : a->n > b->n;
    } else {
        return fail(e, "chat template: cannot order a %s", kind_name(a->k == VK_STR || is_num(a) ? b->k : a->k));
    }
    return op == TC_LT ? c < 0 : op == TC_LE ? c <= 0 : op == TC_GT ? c > 0 : c >= 0;
}

static int eval(ev *e, int n, val *o);

static int eval_bin(ev *e, const tnode *nd, val *o)
{
    val a, b;
    if (eval(e, nd->a, &a) < 0 || eval(e, nd->b, &b) < 0)
        return -1;
    if (nd->op == '~') {
        const char *as, *bs;
        size_t an, bn;
        if (to_str(e, &a, &as, &an) < 0 || to_str(e, &b, &bs, &bn) < 0)
            return -1;
        return concat(e, as, an, bs, bn, o);
    }
    if (a.k == VK_UNDEF || b.k == VK_UNDEF)
        return fail(e, "chat template: an undefined value used with '%s'", nd->op == '+' ? "+" : nd->op == '-' ? "-" : "%");
    if (nd->op == '+' && a.k == VK_STR && b.k == VK_STR)
        return concat(e, a.s, a.n, b.s, b.n, o);
    if (!is_num(&a) || !is_num(&b)) {
        char what[64];
        snprintf(what, sizeof what, "%s %c %s", kind_name(a.k), nd->op, kind_name(b.k));
        return fail(e, "chat template: unsupported operation %s", what);
    }
    memset(o, 0, sizeof *o);
    o->k = VK_INT;
    if (nd->op == '+' ? __builtin_add_overflow(a.i, b.i, &o->i)
        : nd->op == '-' ? __builtin_sub_overflow(a.i, b.i, &o->i)
                        : 0)
        return fail(e, "chat template: integer overflow%s", "");
    if (nd->op == '%') {
        if (b.i == 0)
            return fail(e, "chat template: modulo by zero%s", "");
        if (b.i == -1) {
            o->i = 0;
        } else {
            o->i = a.i % b.i; /* then Python's sign: that of the divisor */
            if (o->i != 0 && ((o->i < 0) != (b.i < 0)))
                o->i += b.i;
        }
    }
    return 0;
}

static int eval_attr(ev *e, const tnode *nd, val *o)
{
    val a;
    if (eval(e, nd->a, &a) < 0)
        return -1;
    memset(o, 0, sizeof *o);
    if (a.k == VK_LOOP) {
        size_t i = e->loop_i, n = e->loop_n;
        o->k = nd->op == TL_FIRST || nd->op == TL_LAST ? VK_BOOL : VK_INT;
        switch (nd->op) {
        case TL_FIRST: o->i = i == 0; break;
        case TL_LAST: o->i = i + 1 == n; break;
        case TL_INDEX: o->i = (int64_t)i + 1; break;
        case TL_INDEX0: o->i = (int64_t)i; break;
        case TL_LENGTH: o->i = (int64_t)n; break;
        case TL_REVINDEX: o->i = (int64_t)(n - i); break;
        default: o->i = (int64_t)(n - i - 1); break;
        }
        return 0;
    }
    if (a.k == VK_UNDEF) {
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(nd->len < 60 ? nd->len : 60), nd->s);
        return fail(e, "chat template: an undefined value has no attribute '%s'", name);
    }
    if (a.k == VK_DICT) {
        const json_t *j = json_object_getn(a.j, nd->s, nd->len);
        if (j)
            from_json(j, o);
    }
    return 0; /* anything else: undefined */
}

static int eval_item(ev *e, const tnode *nd, val *o)
{
    val a, k;
    if (eval(e, nd->a, &a) < 0 || eval(e, nd->b, &k) < 0)
        return -1;
    memset(o, 0, sizeof *o);
    if (a.k == VK_UNDEF)
        return fail(e, "chat template: an undefined value cannot be indexed%s", "");
    if (a.k == VK_DICT && k.k == VK_STR) {
        const json_t *j = json_object_getn(a.j, k.s, k.n);
        if (j)
            from_json(j, o);
    } else if (a.k == VK_LIST && is_num(&k)) {
        int64_t n = (int64_t)json_array_size(a.j), i = k.i < 0 ? k.i + n : k.i;
        if (i >= 0 && i < n)
            from_json(json_array_get(a.j, (size_t)i), o);
    } else if (a.k == VK_STR) {
        return fail(e, "chat template: indexing a string is not supported%s", "");
    }
    return 0;
}

static int eval(ev *e, int n, val *o)
{
    const tnode *nd = &e->t->nodes[n];
    const srv_tmpl_vars *v = e->v;
    val a;
    memset(o, 0, sizeof *o);
    switch (nd->kind) {
    case TN_STR:
        o->k = VK_STR;
        o->s = nd->s;
        o->n = nd->len;
        return 0;
    case TN_INT:
    case TN_BOOL:
        o->k = nd->kind == TN_INT ? VK_INT : VK_BOOL;
        o->i = nd->i;
        return 0;
    case TN_NONE:
        o->k = VK_NONE;
        return 0;
    case TN_VAR: {
        const char *tokens[] = {v->bos_token, v->eos_token, v->unk_token, v->pad_token};
        switch (nd->op) {
        case TV_MESSAGES: o->k = VK_LIST; o->j = v->messages; break;
        case TV_AGP: o->k = VK_BOOL; o->i = v->add_generation_prompt != 0; break;
        case TV_TOOLS:
        case TV_DOCUMENTS: o->k = VK_NONE; break;
        case TV_LOOPVAR: from_json(e->item, o); break;
        case TV_LOOP: o->k = VK_LOOP; break;
        default:
            if (tokens[nd->op - TV_BOS]) {
                o->k = VK_STR;
                o->s = tokens[nd->op - TV_BOS];
                o->n = strlen(o->s);
            }
        }
        return 0;
    }
    case TN_ATTR:
        return eval_attr(e, nd, o);
    case TN_ITEM:
        return eval_item(e, nd, o);
    case TN_METHOD:
        if (eval(e, nd->a, o) < 0)
            return -1;
        if (o->k != VK_STR)
            return fail(e, "chat template: strip() of a %s", kind_name(o->k));
        strip(o, nd->op != TM_RSTRIP, nd->op != TM_LSTRIP);
        return 0;
    case TN_FILTER:
        if (eval(e, nd->a, &a) < 0)
            return -1;
        if (nd->op == TF_TRIM) {
            if (to_str(e, &a, &o->s, &o->n) < 0)
                return -1;
            o->k = VK_STR;
            strip(o, 1, 1);
            return 0;
        }
        o->k = VK_INT;
        if (a.k == VK_STR) {
            for (size_t i = 0; i < a.n; i++)
                o->i += ((unsigned char)a.s[i] & 0xC0) != 0x80;
        } else if (a.k == VK_LIST || a.k == VK_DICT) {
            o->i = (int64_t)(a.k == VK_LIST ? json_array_size(a.j) : json_object_size(a.j));
        } else if (a.k != VK_UNDEF) {
            return fail(e, "chat template: length of a %s", kind_name(a.k));
        }
        return 0;
    case TN_TEST: {
        if (eval(e, nd->a, &a) < 0)
            return -1;
        int r = nd->op == TT_DEFINED ? a.k != VK_UNDEF : nd->op == TT_UNDEFINED ? a.k == VK_UNDEF : a.k == VK_NONE;
        o->k = VK_BOOL;
        o->i = nd->i ? !r : r;
        return 0;
    }
    case TN_NOT:
        if (eval(e, nd->a, &a) < 0)
            return -1;
        o->k = VK_BOOL;
        o->i = !truthy(&a);
        return 0;
    case TN_NEG:
        if (eval(e, nd->a, &a) < 0)
            return -1;
        if (!is_num(&a) || a.i == INT64_MIN)
            return fail(e, "chat template: cannot negate a %s", kind_name(a.k));
        o->k = VK_INT;
        o->i = -a.i;
        return 0;
    case TN_BIN:
        return eval_bin(e, nd, o);
    case TN_AND:
    case TN_OR:
        if (eval(e, nd->a, o) < 0)
            return -1;
        if (truthy(o) == (nd->kind == TN_OR))
            return 0;
        return eval(e, nd->b, o);
    case TN_COND:
        if (eval(e, nd->a, &a) < 0)
            return -1;
        if (truthy(&a))
            return eval(e, nd->b, o);
        return nd->c >= 0 ? eval(e, nd->c, o) : 0;
    case TN_CMP: {
        val l, r;
        if (eval(e, nd->a, &l) < 0)
            return -1;
        o->k = VK_BOOL;
        o->i = 1;
        for (int k = nd->b; k >= 0; k = e->t->nodes[k].next) {
            const tnode *c = &e->t->nodes[k];
            if (eval(e, c->a, &r) < 0)
                return -1;
            int res = c->op == TC_EQ ? equal(&l, &r) : c->op == TC_NE ? !equal(&l, &r) : order(e, &l, c->op, &r);
            if (res < 0)
                return -1;
            if (!res) {
                o->i = 0;
                return 0;
            }
            l = r;
        }
        return 0;
    }
    case TN_RAISE: {
        const char *s;
        size_t len;
        if (eval(e, nd->a, &a) < 0 || to_str(e, &a, &s, &len) < 0)
            return -1;
        char msg[300];
        snprintf(msg, sizeof msg, "%.*s", (int)(len < 280 ? len : 280), s);
        return fail(e, "the chat template refused these messages: %s", msg);
    }
    default:
        return fail(e, "chat template: bad node%s", "");
    }
}

static int emit(ev *e, const char *s, size_t n)
{
    if (n > e->max - e->len)
        return fail(e, "chat template: the rendered prompt is larger than the limit%s", "");
    if (e->len + n + 1 > e->cap) {
        size_t cap = e->cap ? e->cap : 1024;
        while (cap < e->len + n + 1)
            cap *= 2;
        char *p = realloc(e->out, cap);
        if (!p)
            return fail(e, "chat template: out of memory%s", "");
        e->out = p;
        e->cap = cap;
    }
    memcpy(e->out + e->len, s, n);
    e->len += n;
    e->out[e->len] = '\0';
    return 0;
}

static int exec(ev *e, int n)
{
    for (; n >= 0; n = e->t->nodes[n].next) {
        const tnode *nd = &e->t->nodes[n];
        val a;
        const char *s;
        size_t len;
        switch (nd->kind) {
        case TN_TEXT:
            if (emit(e, nd->s, nd->len) < 0)
                return -1;
            break;
        case TN_OUTPUT:
            if (eval(e, nd->a, &a) < 0 || to_str(e, &a, &s, &len) < 0 || emit(e, s, len) < 0)
                return -1;
            break;
        case TN_IF: {
            int k = n;
            while (k >= 0 && e->t->nodes[k].kind == TN_IF) {
                if (eval(e, e->t->nodes[k].a, &a) < 0)
                    return -1;
                if (truthy(&a))
                    break;
                k = e->t->nodes[k].c;
            }
            if (k >= 0 && exec(e, e->t->nodes[k].b) < 0)
                return -1;
            break;
        }
        case TN_FOR:
            e->loop_n = json_array_size(e->v->messages);
            for (e->loop_i = 0; e->loop_i < e->loop_n; e->loop_i++) {
                e->item = json_array_get(e->v->messages, e->loop_i);
                if (exec(e, nd->b) < 0)
                    return -1;
            }
            e->item = NULL;
            break;
        case TN_BODY:
            if (exec(e, nd->b) < 0)
                return -1;
            break;
        default:
            return fail(e, "chat template: bad statement%s", "");
        }
    }
    return 0;
}

char *srv_tmpl_render(const srv_tmpl *t, const srv_tmpl_vars *v, size_t *out_len, ssmd_err *err)
{
    ev e;
    memset(&e, 0, sizeof e);
    e.t = t;
    e.v = v;
    e.err = err;
    e.max = v->max_output ? v->max_output : (size_t)16 << 20;
    e.arena_max = 4 * e.max + ((size_t)1 << 20);
    int rc = json_is_array(v->messages) ? exec(&e, t->root) : fail(&e, "chat template: no messages%s", "");
    if (rc == 0)
        rc = emit(&e, "", 0); /* an empty output is still a string */
    while (e.arena) {
        blk *b = e.arena;
        e.arena = b->next;
        free(b);
    }
    if (rc < 0) {
        free(e.out);
        return NULL;
    }
    if (out_len)
        *out_len = e.len;
    return e.out;
}
