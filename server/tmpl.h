/* tmpl.h - a small, safe interpreter for the Jinja subset that simple chat
 * templates (tokenizer_config.json's `chat_template`) are written in, with
 * the settings transformers renders them with (trim_blocks, lstrip_blocks,
 * no kept trailing newline).
 *
 * The subset: text; {{ expr }}; {# comments #}; whitespace control (-, +);
 * {% for NAME in messages %} (not nested); {% if %}/{% elif %}/{% else %};
 * {% generation %}.  Expressions: string (with Python escapes, adjacent
 * literals joined) and integer literals, true/false/none, the variables
 * messages, add_generation_prompt, bos_token, eos_token, unk_token,
 * pad_token, tools, documents, the loop variable and loop.first / last /
 * index / index0 / length / revindex / revindex0; x.key, x['key'], x[i];
 * + - % ~, == != < <= > >= (chained), and, or, not, A if C else B;
 * .strip() .lstrip() .rstrip(); the filters trim and length; the tests
 * defined, undefined, none; raise_exception(msg).  Anything else is refused
 * by srv_tmpl_compile, so the caller can fall back to its own template.
 *
 * Safe by construction: no loop but the one over messages, no recursion at
 * run time beyond the template's own (bounded) nesting, every string and the
 * whole output bounded.  Pure functions: no I/O, no globals; a compiled
 * template is read-only and may be rendered from any thread at once.
 */
#ifndef SSMD_SRV_TMPL_H
#define SSMD_SRV_TMPL_H

#include <jansson.h>
#include <stddef.h>

#include "engine/error.h"

#define SRV_TMPL_MAX_SOURCE (64 * 1024)  /* bytes of template source */

typedef struct srv_tmpl srv_tmpl; /* opaque */

/* Compiles len bytes of template source.  Returns the template, or NULL
 * with a one-line reason in why (why_cap bytes) when the source is invalid,
 * too large or outside the subset.  The caller frees it with srv_tmpl_free. */
srv_tmpl *srv_tmpl_compile(const char *src, size_t len, char *why, size_t why_cap);
void srv_tmpl_free(srv_tmpl *t);

typedef struct srv_tmpl_vars {
    const json_t *messages;     /* a JSON array of objects (borrowed) */
    int add_generation_prompt;
    const char *bos_token;      /* NULL: undefined in the template */
    const char *eos_token;
    const char *unk_token;
    const char *pad_token;
    size_t max_output;          /* bytes; 0 = 16 MiB */
} srv_tmpl_vars;

/* Renders t.  Returns a malloc'ed NUL-terminated string (its length in
 * *out_len) or NULL with err set: SSMD_EINVAL naming what failed (the
 * message of raise_exception, a type error such as adding a string to a
 * number, an output over max_output).  Any thread. */
char *srv_tmpl_render(const srv_tmpl *t, const srv_tmpl_vars *v, size_t *out_len, ssmd_err *err);

#endif
