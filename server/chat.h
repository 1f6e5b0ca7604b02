/* chat.h - the chat template of /v1/chat/completions: the model's own
 * (tokenizer_config.json's `chat_template`, or chat_template.jinja, run by
 * the interpreter of tmpl.h) when it is in the supported subset, else the
 * default template documented in proto/openapi.yaml (srv_chat_render).
 *
 * srv_chat_load reads files once at start-up, before any request; the rest
 * is pure and read-only afterwards, usable from any thread.
 */
#ifndef SSMD_SRV_CHAT_H
#define SSMD_SRV_CHAT_H

#include <jansson.h>
#include <stddef.h>

#include "engine/error.h"
#include "server/tmpl.h"

typedef struct srv_chat {
    srv_tmpl *tmpl;     /* NULL: the default template */
    char *bos_token;    /* special tokens from tokenizer_config.json (malloc'ed), NULL when absent */
    char *eos_token;
    char *unk_token;
    char *pad_token;
    size_t max_output;  /* cap of a rendered prompt in bytes (0: 16 MiB) */
} srv_chat;

/* Fills c from model_dir.  Never fails: returns 1 when the model's template
 * will be used, 0 when the default will (why, why_cap bytes, says why: no
 * tokenizer_config.json, no chat_template, or the construct that is outside
 * the subset).  srv_chat_free releases it. */
int srv_chat_load(srv_chat *c, const char *model_dir, char *why, size_t why_cap);
void srv_chat_free(srv_chat *c);

/* Renders the request's messages -- a non-empty array of {"role": string,
 * "content": string | [{"type": "text", "text": string}, ...] | null, ...}
 * (parts are joined, null is "") -- with c's template, or with the default
 * one when c is NULL or has none (default_eos: the EOS token's text there).
 * Returns a malloc'ed string, or NULL with err set (SSMD_EINVAL naming the
 * message or the template's complaint; SSMD_ENOMEM). */
char *srv_chat_apply(const srv_chat *c, const json_t *messages, int add_generation_prompt,
                     const char *default_eos, ssmd_err *err);

#endif
