/* tmpl_ast.h - the compiled form of a chat template and the lexer's
 * tokens, shared by tmpl_lex.c, tmpl_parse.c and tmpl_eval.c; not for other
 * files.
 *
 * Nodes live in one array and point at each other by index (-1 = none);
 * strings point into the template's own string buffer.  Read-only after
 * srv_tmpl_compile.
 */
#ifndef SSMD_SRV_TMPL_AST_H
#define SSMD_SRV_TMPL_AST_H

#include <stddef.h>
#include <stdint.h>

#include "server/tmpl.h"

#define TMPL_MAX_NODES 8192
#define TMPL_MAX_DEPTH 48    /* nesting of expressions and blocks */

typedef enum tn_kind {
    /* statements, chained through next */
    TN_TEXT,    /* s, len */
    TN_OUTPUT,  /* a = expr */
    TN_IF,      /* a = cond, b = body, c = else part (an TN_IF for elif, a TN_BODY, or -1) */
    TN_FOR,     /* b = body (the iterable is always messages) */
    TN_BODY,    /* b = body (else branch, {% generation %}) */
    /* expressions */
    TN_STR,     /* s, len */
    TN_INT,     /* i */
    TN_BOOL,    /* i */
    TN_NONE,
    TN_VAR,     /* op = tmpl_var */
    TN_ATTR,    /* a = object, s/len = key (op = loop attribute when a is loop) */
    TN_ITEM,    /* a = object, b = key expr */
    TN_METHOD,  /* a = object, op = tmpl_method */
    TN_FILTER,  /* a = value, op = tmpl_filter */
    TN_TEST,    /* a = value, op = tmpl_test, i = 1 when negated */
    TN_NOT,     /* a */
    TN_NEG,     /* a */
    TN_BIN,     /* a op b, op = '+', '-', '%', '~' */
    TN_AND,     /* a and b */
    TN_OR,      /* a or b */
    TN_COND,    /* b if a else c (c may be -1: undefined) */
    TN_CMP,     /* a = first operand, b = chain of TN_CMPOP */
    TN_CMPOP,   /* op = tmpl_cmp, a = operand, next = the next link */
    TN_RAISE,   /* a = message */
} tn_kind;

typedef enum tmpl_var {
    TV_MESSAGES, TV_AGP, TV_BOS, TV_EOS, TV_UNK, TV_PAD, TV_TOOLS, TV_DOCUMENTS,
    TV_LOOPVAR, TV_LOOP,
} tmpl_var;

typedef enum tmpl_loop_attr {
    TL_FIRST, TL_LAST, TL_INDEX, TL_INDEX0, TL_LENGTH, TL_REVINDEX, TL_REVINDEX0,
} tmpl_loop_attr;

typedef enum tmpl_method { TM_STRIP, TM_LSTRIP, TM_RSTRIP } tmpl_method;
typedef enum tmpl_filter { TF_TRIM, TF_LENGTH } tmpl_filter;
typedef enum tmpl_test { TT_DEFINED, TT_UNDEFINED, TT_NONE } tmpl_test;
typedef enum tmpl_cmp { TC_EQ, TC_NE, TC_LT, TC_LE, TC_GT, TC_GE } tmpl_cmp;

typedef struct tnode {
    tn_kind kind;
    int op;
    int a, b, c;
    int next;
    const char *s;
    size_t len;
    int64_t i;
} tnode;

struct srv_tmpl {
    tnode *nodes;     /* (n_nodes) */
    int n_nodes;
    int root;         /* first statement, -1 for an empty template */
    char *strings;    /* every TN_TEXT / TN_STR / TN_ATTR string */
};

/* Python's str.isspace() for the UTF-8 character at s[0..n): its byte
 * length when it is whitespace, else 0.  (Jinja's \s and str.strip use it.) */
size_t tmpl_space_at(const char *s, size_t n);
/* The same for the character that ends at s[n-1]. */
size_t tmpl_space_before(const char *s, size_t n);

/* ---- the lexer, shared by tmpl_lex.c and tmpl_parse.c ---- */

typedef enum tmpl_tk {
    TK_EOF, TK_DATA, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END, TK_NAME, TK_STR, TK_INT, TK_OP,
} tmpl_tk;

/* two-character operators; single characters stand for themselves */
enum { OP_EQ = 256, OP_NE, OP_LE, OP_GE, OP_FLOORDIV, OP_POW };

typedef struct tmpl_token {
    tmpl_tk kind;
    const char *s;  /* DATA, NAME, STR: text (STR: decoded, in the literal buffer) */
    size_t len;
    int64_t i;      /* INT */
    int op;         /* OP */
} tmpl_token;

typedef struct tmpl_lexer {
    const char *src;  /* normalized source */
    size_t n, pos;
    int mode;         /* 0 text, 1 inside {{ }}, 2 inside {% %} */
    int line_starting, balance;
    int pending;      /* an opener to return after the DATA token before it */
    size_t pending_pos;
    char *lit;        /* decoded literals go here (never longer than their source) */
    size_t lit_len;
    tmpl_token tok;   /* the current token */
    char *why;        /* the first failure, why_cap bytes */
    size_t why_cap;
    int failed;
} tmpl_lexer;

/* Moves L->tok to the next token.  Returns 0, or -1 with L->why set. */
int tmpl_lex_next(tmpl_lexer *L);
/* Records the first failure (fmt has one %s for arg[0..arg_len)); returns -1. */
int tmpl_fail(tmpl_lexer *L, const char *fmt, const char *arg, size_t arg_len);

#endif
