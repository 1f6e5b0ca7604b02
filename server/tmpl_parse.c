/* tmpl_parse.c - chat template tokens to nodes (see tmpl.h): a
 * recursive-descent parser with Jinja's operator precedence (or < and <
 * not < comparisons < + - < ~ < % < unary - < postfix, filters and tests),
 * names resolved at compile time, nesting and expression height bounded.
 *
 * Refuses, with a reason, everything outside the subset; never evaluates
 * anything.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/tmpl_ast.h"

/* ---- parser ---- */

typedef struct parser {
    tmpl_lexer L;
    srv_tmpl *t;
    int depth, in_for;
    const char *loop_name;
    size_t loop_len;
} parser;

#define fail(p, ...) tmpl_fail(&(p)->L, __VA_ARGS__)
#define next(p) tmpl_lex_next(&(p)->L)


static int is_name(const parser *p, const char *name)
{
    return p->L.tok.kind == TK_NAME && p->L.tok.len == strlen(name) && !memcmp(p->L.tok.s, name, p->L.tok.len);
}

static int is_op(const parser *p, int op) { return p->L.tok.kind == TK_OP && p->L.tok.op == op; }

static int node(parser *p, tn_kind kind)
{
    srv_tmpl *t = p->t;
    if (t->n_nodes >= TMPL_MAX_NODES)
        return fail(p, "template too large", NULL, 0);
    tnode *nd = &t->nodes[t->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    nd->a = nd->b = nd->c = nd->next = -1;
    return t->n_nodes++;
}

static int expect_op(parser *p, int op, const char *what)
{
    if (!is_op(p, op))
        return fail(p, "expected '%s'", what, strlen(what));
    return next(p);
}

static int parse_expr(parser *p);

static int resolve(parser *p, const char *s, size_t n)
{
    static const char *const globals[] = {"messages", "add_generation_prompt", "bos_token", "eos_token",
                                          "unk_token", "pad_token", "tools", "documents"};
    if (p->in_for && n == p->loop_len && !memcmp(s, p->loop_name, n))
        return TV_LOOPVAR;
    if (p->in_for && n == 4 && !memcmp(s, "loop", 4))
        return TV_LOOP;
    for (int k = 0; k < (int)(sizeof globals / sizeof *globals); k++)
        if (strlen(globals[k]) == n && !memcmp(s, globals[k], n))
            return k; /* TV_MESSAGES .. TV_DOCUMENTS in this order */
    return fail(p, "unknown variable '%s'", s, n);
}

static int parse_primary(parser *p)
{
    int n;
    if (p->L.tok.kind == TK_NAME) {
        const char *s = p->L.tok.s;
        size_t len = p->L.tok.len;
        if (is_name(p, "true") || is_name(p, "True") || is_name(p, "false") || is_name(p, "False")) {
            if ((n = node(p, TN_BOOL)) < 0)
                return -1;
            p->t->nodes[n].i = s[0] == 't' || s[0] == 'T';
        } else if (is_name(p, "none") || is_name(p, "None")) {
            n = node(p, TN_NONE);
        } else if (is_name(p, "raise_exception")) {
            int a;
            if (next(p) < 0 || expect_op(p, '(', "(") < 0 || (a = parse_expr(p)) < 0)
                return -1;
            if (!is_op(p, ')'))
                return fail(p, "raise_exception takes one argument", NULL, 0);
            if ((n = node(p, TN_RAISE)) < 0)
                return -1;
            p->t->nodes[n].a = a;
        } else {
            int v = resolve(p, s, len);
            if (v < 0 || (n = node(p, TN_VAR)) < 0)
                return -1;
            p->t->nodes[n].op = v;
        }
        return n < 0 || next(p) < 0 ? -1 : n;
    }
    if (p->L.tok.kind == TK_STR) {
        if ((n = node(p, TN_STR)) < 0)
            return -1;
        p->t->nodes[n].s = p->L.tok.s;
        p->t->nodes[n].len = p->L.tok.len;
        /* adjacent literals are one string; they were decoded back to back */
        while (next(p) == 0 && p->L.tok.kind == TK_STR)
            p->t->nodes[n].len += p->L.tok.len;
        return p->L.failed ? -1 : n;
    }
    if (p->L.tok.kind == TK_INT) {
        if ((n = node(p, TN_INT)) < 0)
            return -1;
        p->t->nodes[n].i = p->L.tok.i;
        return next(p) < 0 ? -1 : n;
    }
    if (is_op(p, '(')) {
        if (next(p) < 0 || (n = parse_expr(p)) < 0)
            return -1;
        if (is_op(p, ','))
            return fail(p, "tuples are not supported", NULL, 0);
        return expect_op(p, ')', ")") < 0 ? -1 : n;
    }
    if (p->L.tok.kind == TK_OP && (p->L.tok.op == '[' || p->L.tok.op == '{'))
        return fail(p, "list and dict literals are not supported", NULL, 0);
    return fail(p, "unexpected token in an expression", NULL, 0);
}

static int parse_postfix(parser *p, int n)
{
    static const char *const loop_attrs[] = {"first", "last", "index", "index0", "length", "revindex", "revindex0"};
    static const char *const dict_methods[] = {"items", "keys", "values", "get", "pop", "popitem", "update",
                                               "setdefault", "clear", "copy", "fromkeys"};
    for (;;) {
        tnode *obj = &p->t->nodes[n];
        int is_loop = obj->kind == TN_VAR && obj->op == TV_LOOP;
        if (is_op(p, '.')) {
            if (next(p) < 0)
                return -1;
            if (p->L.tok.kind != TK_NAME)
                return fail(p, "expected a name after '.'", NULL, 0);
            const char *s = p->L.tok.s;
            size_t len = p->L.tok.len;
            if (next(p) < 0)
                return -1;
            int m;
            if (is_op(p, '(')) {
                int meth = len == 5 && !memcmp(s, "strip", 5)    ? TM_STRIP
                           : len == 6 && !memcmp(s, "lstrip", 6) ? TM_LSTRIP
                           : len == 6 && !memcmp(s, "rstrip", 6) ? TM_RSTRIP
                                                                 : -1;
                if (meth < 0 || next(p) < 0 || !is_op(p, ')'))
                    return meth < 0 ? fail(p, "unsupported method '%s'", s, len)
                                    : fail(p, "strip() with arguments is not supported", NULL, 0);
                if ((m = node(p, TN_METHOD)) < 0 || next(p) < 0)
                    return -1;
                p->t->nodes[m].op = meth;
            } else {
                if ((m = node(p, TN_ATTR)) < 0)
                    return -1;
                p->t->nodes[m].s = s;
                p->t->nodes[m].len = len;
                p->t->nodes[m].op = -1;
                for (int k = 0; k < (int)(sizeof loop_attrs / sizeof *loop_attrs); k++)
                    if (strlen(loop_attrs[k]) == len && !memcmp(s, loop_attrs[k], len))
                        p->t->nodes[m].op = k;
                if (is_loop && p->t->nodes[m].op < 0)
                    return fail(p, "unsupported loop attribute '%s'", s, len);
                for (int k = 0; k < (int)(sizeof dict_methods / sizeof *dict_methods); k++)
                    if (strlen(dict_methods[k]) == len && !memcmp(s, dict_methods[k], len))
                        return fail(p, "unsupported attribute '%s'", s, len);
            }
            p->t->nodes[m].a = n;
            n = m;
        } else if (is_op(p, '[')) {
            if (is_loop)
                return fail(p, "loop[...] is not supported", NULL, 0);
            int m, k;
            if (next(p) < 0 || (k = parse_expr(p)) < 0)
                return -1;
            if (is_op(p, ':') || is_op(p, ','))
                return fail(p, "slices are not supported", NULL, 0);
            if (expect_op(p, ']', "]") < 0 || (m = node(p, TN_ITEM)) < 0)
                return -1;
            p->t->nodes[m].a = n;
            p->t->nodes[m].b = k;
            n = m;
        } else if (is_op(p, '(')) {
            return fail(p, "function calls are not supported", NULL, 0);
        } else {
            return n;
        }
    }
}

static int parse_filters(parser *p, int n)
{
    for (;;) {
        int m;
        if (is_op(p, '|')) {
            if (next(p) < 0)
                return -1;
            int f = is_name(p, "trim") ? TF_TRIM : is_name(p, "length") || is_name(p, "count") ? TF_LENGTH : -1;
            if (f < 0)
                return fail(p, "unsupported filter '%s'", p->L.tok.s, p->L.tok.kind == TK_NAME ? p->L.tok.len : 1);
            if (next(p) < 0)
                return -1;
            if (is_op(p, '(') && (next(p) < 0 || !is_op(p, ')') || next(p) < 0))
                return fail(p, "filter arguments are not supported", NULL, 0);
            if ((m = node(p, TN_FILTER)) < 0)
                return -1;
            p->t->nodes[m].op = f;
        } else if (is_name(p, "is")) {
            if (next(p) < 0 || (m = node(p, TN_TEST)) < 0)
                return -1;
            if (is_name(p, "not")) {
                p->t->nodes[m].i = 1;
                if (next(p) < 0)
                    return -1;
            }
            int t = is_name(p, "defined") ? TT_DEFINED : is_name(p, "undefined") ? TT_UNDEFINED
                    : is_name(p, "none")  ? TT_NONE : -1;
            if (t < 0)
                return fail(p, "unsupported test '%s'", p->L.tok.s, p->L.tok.kind == TK_NAME ? p->L.tok.len : 1);
            p->t->nodes[m].op = t;
            if (next(p) < 0)
                return -1;
            if ((p->L.tok.kind == TK_NAME && !is_name(p, "else") && !is_name(p, "or") && !is_name(p, "and")) ||
                p->L.tok.kind == TK_STR || p->L.tok.kind == TK_INT || is_op(p, '(') || is_op(p, '['))
                return fail(p, "tests with arguments are not supported", NULL, 0);
        } else if (is_op(p, '(')) {
            return fail(p, "function calls are not supported", NULL, 0);
        } else {
            return n;
        }
        p->t->nodes[m].a = n;
        n = m;
    }
}

static int parse_unary(parser *p, int with_filter)
{
    int n;
    if (++p->depth > TMPL_MAX_DEPTH)
        return fail(p, "expression nested too deeply", NULL, 0);
    if (is_op(p, '-')) {
        int a;
        if (next(p) < 0 || (a = parse_unary(p, 0)) < 0 || (n = node(p, TN_NEG)) < 0)
            return -1;
        p->t->nodes[n].a = a;
    } else if (is_op(p, '+')) {
        return fail(p, "unary '+' is not supported", NULL, 0);
    } else if ((n = parse_primary(p)) < 0) {
        return -1;
    }
    if ((n = parse_postfix(p, n)) < 0 || (with_filter && (n = parse_filters(p, n)) < 0))
        return -1;
    p->depth--;
    return n;
}

/* Left-associative binary level: ops (0-terminated) over sub. */
static int binary(parser *p, int (*sub)(parser *), const int *ops)
{
    int a = sub(p);
    for (;;) {
        if (a < 0 || p->L.tok.kind != TK_OP)
            return a;
        int op = 0;
        for (const int *o = ops; *o; o++)
            if (p->L.tok.op == *o)
                op = *o;
        if (!op)
            return a;
        int b, n;
        if (next(p) < 0 || (b = sub(p)) < 0 || (n = node(p, TN_BIN)) < 0)
            return -1;
        p->t->nodes[n].op = op;
        p->t->nodes[n].a = a;
        p->t->nodes[n].b = b;
        a = n;
    }
}

static int parse_unary_f(parser *p) { return parse_unary(p, 1); }

static int parse_math2(parser *p)
{
    int a = parse_unary_f(p);
    if (a >= 0 && p->L.tok.kind == TK_OP && (p->L.tok.op == OP_POW))
        return fail(p, "'**' is not supported", NULL, 0);
    while (a >= 0 && p->L.tok.kind == TK_OP &&
           (p->L.tok.op == '%' || p->L.tok.op == '*' || p->L.tok.op == '/' || p->L.tok.op == OP_FLOORDIV)) {
        if (p->L.tok.op != '%')
            return fail(p, "only '%%' of the multiplicative operators is supported", NULL, 0);
        int b, n;
        if (next(p) < 0 || (b = parse_unary_f(p)) < 0 || (n = node(p, TN_BIN)) < 0)
            return -1;
        p->t->nodes[n].op = '%';
        p->t->nodes[n].a = a;
        p->t->nodes[n].b = b;
        a = n;
        if (p->L.tok.kind == TK_OP && p->L.tok.op == OP_POW)
            return fail(p, "'**' is not supported", NULL, 0);
    }
    return a;
}

static int parse_concat(parser *p)
{
    static const int ops[] = {'~', 0};
    return binary(p, parse_math2, ops);
}

static int parse_math1(parser *p)
{
    static const int ops[] = {'+', '-', 0};
    return binary(p, parse_concat, ops);
}

static int parse_compare(parser *p)
{
    int a = parse_math1(p);
    int head = -1, tail = -1;
    while (a >= 0) {
        int op = is_op(p, OP_EQ) ? TC_EQ : is_op(p, OP_NE) ? TC_NE : is_op(p, '<') ? TC_LT : is_op(p, OP_LE) ? TC_LE
                 : is_op(p, '>') ? TC_GT : is_op(p, OP_GE) ? TC_GE : -1;
        if (op < 0) {
            if (is_name(p, "in") || is_name(p, "not"))
                return fail(p, "'in' is not supported", NULL, 0);
            break;
        }
        int b, n;
        if (next(p) < 0 || (b = parse_math1(p)) < 0 || (n = node(p, TN_CMPOP)) < 0)
            return -1;
        p->t->nodes[n].op = op;
        p->t->nodes[n].a = b;
        if (tail >= 0)
            p->t->nodes[tail].next = n;
        else
            head = n;
        tail = n;
    }
    if (a < 0 || head < 0)
        return a;
    int n = node(p, TN_CMP);
    if (n >= 0) {
        p->t->nodes[n].a = a;
        p->t->nodes[n].b = head;
    }
    return n;
}

static int parse_not(parser *p)
{
    if (!is_name(p, "not"))
        return parse_compare(p);
    int a, n;
    if (++p->depth > TMPL_MAX_DEPTH)
        return fail(p, "expression nested too deeply", NULL, 0);
    if (next(p) < 0 || (a = parse_not(p)) < 0 || (n = node(p, TN_NOT)) < 0)
        return -1;
    p->t->nodes[n].a = a;
    p->depth--;
    return n;
}

static int logical(parser *p, int (*sub)(parser *), const char *word, tn_kind kind)
{
    int a = sub(p);
    while (a >= 0 && is_name(p, word)) {
        int b, n;
        if (next(p) < 0 || (b = sub(p)) < 0 || (n = node(p, kind)) < 0)
            return -1;
        p->t->nodes[n].a = a;
        p->t->nodes[n].b = b;
        a = n;
    }
    return a;
}

static int parse_and(parser *p) { return logical(p, parse_not, "and", TN_AND); }
static int parse_or(parser *p) { return logical(p, parse_and, "or", TN_OR); }

static int parse_expr(parser *p)
{
    if (++p->depth > TMPL_MAX_DEPTH)
        return fail(p, "expression nested too deeply", NULL, 0);
    int a = parse_or(p);
    while (a >= 0 && is_name(p, "if")) {
        int cond, other = -1, n;
        if (next(p) < 0 || (cond = parse_or(p)) < 0)
            return -1;
        if (is_name(p, "else") && (next(p) < 0 || (other = parse_expr(p)) < 0))
            return -1;
        if ((n = node(p, TN_COND)) < 0)
            return -1;
        p->t->nodes[n].a = cond;
        p->t->nodes[n].b = a;
        p->t->nodes[n].c = other;
        a = n;
    }
    p->depth--;
    return a;
}

/* ---- statements ---- */

/* Parses statements until EOF or a block tag whose keyword is in stops
 * (a space-separated list; the keyword is consumed, *stop names it).
 * Returns the first statement or -1 (none or failure: see p->L.failed). */
static int parse_body(parser *p, const char *stops, char *stop, size_t stop_cap);

static int expect_block_end(parser *p)
{
    if (p->L.tok.kind != TK_BLOCK_END)
        return fail(p, "expected the end of a block tag", NULL, 0);
    return next(p);
}

static int parse_if(parser *p)
{
    int first = -1, prev = -1;
    for (;;) { /* one round per if / elif */
        int cond, n, body;
        char stop[16];
        if ((cond = parse_expr(p)) < 0 || expect_block_end(p) < 0 || (n = node(p, TN_IF)) < 0)
            return -1;
        body = parse_body(p, "elif else endif", stop, sizeof stop);
        if (p->L.failed)
            return -1;
        p->t->nodes[n].a = cond;
        p->t->nodes[n].b = body;
        if (prev >= 0)
            p->t->nodes[prev].c = n;
        else
            first = n;
        prev = n;
        if (!strcmp(stop, "elif"))
            continue;
        if (!strcmp(stop, "else")) {
            int e;
            if (expect_block_end(p) < 0 || (e = node(p, TN_BODY)) < 0)
                return -1;
            p->t->nodes[e].b = parse_body(p, "endif", stop, sizeof stop);
            if (p->L.failed)
                return -1;
            p->t->nodes[prev].c = e;
        }
        return expect_block_end(p) < 0 ? -1 : first;
    }
}

static int parse_for(parser *p)
{
    if (p->in_for)
        return fail(p, "nested for loops are not supported", NULL, 0);
    if (p->L.tok.kind != TK_NAME)
        return fail(p, "expected a loop variable", NULL, 0);
    const char *name = p->L.tok.s;
    size_t len = p->L.tok.len;
    if ((len == 4 && !memcmp(name, "loop", 4)) || (len == 8 && !memcmp(name, "messages", 8)))
        return fail(p, "unsupported loop variable '%s'", name, len);
    if (next(p) < 0 || !is_name(p, "in") || next(p) < 0)
        return fail(p, "expected 'in'", NULL, 0);
    if (!is_name(p, "messages"))
        return fail(p, "only 'for x in messages' loops are supported", NULL, 0);
    if (next(p) < 0 || p->L.tok.kind != TK_BLOCK_END)
        return fail(p, "only plain 'for x in messages' loops are supported", NULL, 0);
    int n = node(p, TN_FOR);
    if (n < 0 || next(p) < 0)
        return -1;
    p->in_for = 1;
    p->loop_name = name;
    p->loop_len = len;
    char stop[16];
    int body = parse_body(p, "endfor", stop, sizeof stop);
    p->in_for = 0;
    if (p->L.failed)
        return -1;
    p->t->nodes[n].b = body;
    return expect_block_end(p) < 0 ? -1 : n;
}

static int word_in(const char *list, const char *s, size_t n)
{
    for (const char *w = list; w && *w;) {
        size_t k = strcspn(w, " ");
        if (k == n && !memcmp(w, s, n))
            return 1;
        w += k;
        while (*w == ' ')
            w++;
    }
    return 0;
}

static int parse_body(parser *p, const char *stops, char *stop, size_t stop_cap)
{
    int head = -1, tail = -1;
    if (++p->depth > TMPL_MAX_DEPTH)
        return fail(p, "blocks nested too deeply", NULL, 0);
    for (;;) {
        int n = -1;
        if (p->L.tok.kind == TK_EOF) {
            if (stops)
                return fail(p, "missing {%% %s %%}", stops, strlen(stops));
            break;
        }
        if (p->L.tok.kind == TK_DATA) {
            if ((n = node(p, TN_TEXT)) < 0)
                return -1;
            p->t->nodes[n].s = p->L.tok.s;
            p->t->nodes[n].len = p->L.tok.len;
            if (next(p) < 0)
                return -1;
        } else if (p->L.tok.kind == TK_VAR_BEGIN) {
            int e;
            if (next(p) < 0 || (e = parse_expr(p)) < 0 || (n = node(p, TN_OUTPUT)) < 0)
                return -1;
            p->t->nodes[n].a = e;
            if (p->L.tok.kind != TK_VAR_END)
                return fail(p, "expected '}}'", NULL, 0);
            if (next(p) < 0)
                return -1;
        } else if (p->L.tok.kind == TK_BLOCK_BEGIN) {
            if (next(p) < 0)
                return -1;
            if (p->L.tok.kind != TK_NAME)
                return fail(p, "expected a statement keyword", NULL, 0);
            const char *kw = p->L.tok.s;
            size_t kl = p->L.tok.len;
            if (stops && word_in(stops, kw, kl)) {
                snprintf(stop, stop_cap, "%.*s", (int)kl, kw);
                p->depth--;
                return next(p) < 0 ? -1 : head;
            }
            if (next(p) < 0)
                return -1;
            if (kl == 3 && !memcmp(kw, "for", 3)) {
                n = parse_for(p);
            } else if (kl == 2 && !memcmp(kw, "if", 2)) {
                n = parse_if(p);
            } else if (kl == 10 && !memcmp(kw, "generation", 10)) {
                char st[16];
                if (expect_block_end(p) < 0 || (n = node(p, TN_BODY)) < 0)
                    return -1;
                int b = parse_body(p, "endgeneration", st, sizeof st);
                if (p->L.failed || expect_block_end(p) < 0)
                    return -1;
                p->t->nodes[n].b = b;
            } else {
                return fail(p, "unsupported statement {%% %s %%}", kw, kl);
            }
            if (n < 0)
                return -1;
        } else {
            return fail(p, "unexpected token", NULL, 0);
        }
        if (tail >= 0)
            p->t->nodes[tail].next = n;
        else
            head = n;
        tail = n;
        while (p->t->nodes[tail].next >= 0)
            tail = p->t->nodes[tail].next;
    }
    p->depth--;
    return head;
}

/* ---- entry points ---- */

/* Expression trees are evaluated recursively: bound their height.  A
 * node's children always come before it in the array, except statements,
 * whose nesting the parser bounds. */
static int check_height(srv_tmpl *t, char *why, size_t why_cap)
{
    enum { MAX_HEIGHT = 200 };
    int *h = calloc((size_t)t->n_nodes + 1, sizeof *h);
    if (!h) {
        snprintf(why, why_cap, "out of memory");
        return -1;
    }
    int ok = 1;
    for (int i = 0; i < t->n_nodes && ok; i++) {
        const tnode *nd = &t->nodes[i];
        if (nd->kind < TN_STR)
            continue;
        int m = 0;
        const int kids[3] = {nd->a, nd->b, nd->c};
        for (int k = 0; k < 3; k++)
            if (kids[k] >= 0 && kids[k] < i && h[kids[k]] > m)
                m = h[kids[k]];
        if (nd->kind == TN_CMP)
            for (int l = nd->b; l >= 0; l = t->nodes[l].next)
                if (h[l] > m)
                    m = h[l];
        h[i] = m + 1;
        ok = h[i] <= MAX_HEIGHT;
    }
    free(h);
    if (!ok)
        snprintf(why, why_cap, "expression too long");
    return ok ? 0 : -1;
}

srv_tmpl *srv_tmpl_compile(const char *src, size_t len, char *why, size_t why_cap)
{
    char scratch[8];
    if (!why || why_cap == 0) {
        why = scratch;
        why_cap = sizeof scratch;
    }
    why[0] = '\0';
    if (len > SRV_TMPL_MAX_SOURCE) {
        snprintf(why, why_cap, "template longer than %d bytes", SRV_TMPL_MAX_SOURCE);
        return NULL;
    }
    if (memchr(src, '\0', len)) {
        snprintf(why, why_cap, "template contains a NUL byte");
        return NULL;
    }
    srv_tmpl *t = calloc(1, sizeof *t);
    if (t)
        t->strings = malloc(2 * len + 16);
    if (t)
        t->nodes = malloc(TMPL_MAX_NODES * sizeof *t->nodes);
    if (!t || !t->strings || !t->nodes) {
        srv_tmpl_free(t);
        snprintf(why, why_cap, "out of memory");
        return NULL;
    }
    /* newlines as Jinja normalizes them, one trailing newline dropped */
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            t->strings[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            t->strings[n++] = src[i];
        }
    }
    if (n > 0 && t->strings[n - 1] == '\n')
        n--;
    t->strings[n] = '\0';
    parser p;
    memset(&p, 0, sizeof p);
    p.L.src = t->strings;
    p.L.n = n;
    p.L.line_starting = 1;
    p.L.lit = t->strings + n + 1;
    p.L.why = why;
    p.L.why_cap = why_cap;
    p.t = t;
    t->root = -1;
    if (next(&p) == 0)
        t->root = parse_body(&p, NULL, NULL, 0);
    if (p.L.failed || check_height(t, why, why_cap) != 0) {
        srv_tmpl_free(t);
        return NULL;
    }
    return t;
}

void srv_tmpl_free(srv_tmpl *t)
{
    if (!t)
        return;
    free(t->nodes);
    free(t->strings);
    free(t);
}
