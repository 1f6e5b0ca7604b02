/* parse.h - JSON bodies of /v1/completions and /v1/chat/completions into a
 * plain struct, through one table of per-request fields (name, JSON type,
 * bounds, where it goes); the chat template that turns messages into text.
 *
 * Loop thread (pure functions: no I/O, no engine).  Every failure is an
 * SSMD_EINVAL / SSMD_EFORMAT naming the field.
 */
#ifndef SSMD_SRV_PARSE_H
#define SSMD_SRV_PARSE_H

#include <jansson.h>
#include <stdint.h>

#include "engine/error.h"
#include "engine/request.h"
#include "engine/text/tokenizer.h"

struct srv_chat;

typedef struct srv_limits {
    int max_prompt;          /* prompt tokens */
    int max_tokens;          /* bound of max_tokens */
    int default_max_tokens;
    int n_vocab;             /* token ids must be below it */
    const char *chat_eos;    /* text of the EOS token for the default chat template, or NULL */
    const struct srv_chat *chat; /* the model's chat template (chat.h), NULL: the default */
    const char *model_name;  /* the served model: another "model" is SSMD_ENOTFOUND; NULL: any */
    int max_choices;         /* the most choices ("n") a request may ask for; 0: 1 */
} srv_limits;

typedef struct srv_completion {
    int is_chat;
    char *prompt_text;       /* string prompt or rendered chat (malloc'ed), or NULL */
    int32_t *prompt_ids;     /* (n_prompt) malloc'ed: given ids or the encoded text */
    int n_prompt;            /* every prompt's tokens */
    int n_prompts;           /* a list of several prompts: back to back in prompt_ids; else 1 */
    int *prompt_lens;        /* (n_prompts) malloc'ed when n_prompts > 1, else NULL */
    /* fields filled by the table (see parse.c) */
    int max_tokens;
    int stream;
    int include_usage;
    int echo;
    int logprobs;            /* top-n per token; chat: top_logprobs when logprobs is true */
    int chat_logprobs;       /* chat's boolean "logprobs" */
    int ignore_eos;
    int n;                   /* choices, >= 1: one prefill, the state copied n ways */
    int add_generation_prompt; /* chat: end the prompt with the assistant's header (default 1) */
    eng_sampling sampling;   /* its json_schema is json_schema below */
    struct eng_json_schema *json_schema; /* response_format json_schema, compiled, owned; or NULL */
    int seed_given;          /* the body named a seed; else the caller draws one */
    int n_stop;
    char stop[ENG_STOP_MAX][ENG_STOP_LEN_MAX + 1];
    char session[ENG_SESSION_ID_HEX + 1];
} srv_completion;

/* Parses body into c (which the caller frees with srv_completion_free, also
 * after an error).  Text prompts are encoded with tok (NULL: only token-id
 * prompts are accepted); chat messages are rendered with srv_chat_apply
 * (lim->chat's template, or srv_chat_render).  Returns SSMD_OK or an error
 * naming the field: SSMD_EINVAL for a wrong type or range, SSMD_EUNSUPPORTED
 * for an OpenAI feature ssmd does not have, and SSMD_ENOTFOUND only for a
 * "model" other than lim->model_name (OpenAI's model_not_found). */
int srv_completion_parse(srv_completion *c, const json_t *body, int is_chat, const eng_tokenizer *tok,
                         const srv_limits *lim, ssmd_err *err);
void srv_completion_free(srv_completion *c);

/* The OpenAI fields ssmd implements in part (best_of, suffix, user, store,
 * tools, tool_choice, response_format, ...; the table in
 * parse_compat.c): SSMD_OK when body's values are accepted, else
 * SSMD_EINVAL (wrong type) or SSMD_EUNSUPPORTED saying why not. */
int srv_compat_parse(const json_t *body, int is_chat, ssmd_err *err);

/* "a string", "an integer", ... for error messages. */
const char *srv_json_kind(const json_t *v);

/* Moves the parsed fields into a new engine request (prompt ownership goes
 * to the request). */
eng_request *srv_completion_to_request(srv_completion *c);

/* Renders chat messages ([{"role","content"}], content a string or an array
 * of {"type":"text","text"} parts) with the default template documented in
 * proto/openapi.yaml:
 *     for each message: "<|ROLE|>\n" CONTENT EOS "\n"
 *     then, when add_generation_prompt: "<|assistant|>\n"
 * eos is the text of the EOS token ("" when unknown).  Returns a malloc'ed
 * string or NULL with err set. */
char *srv_chat_render(const json_t *messages, const char *eos, int add_generation_prompt, ssmd_err *err);

/* The "text" string of a chat content part {"type": "text", "text": "..."}
 * ("type" may be left out), or NULL when part is anything else: another
 * type (an image), no string "text", or a NUL inside the text. */
const json_t *srv_chat_part_text(const json_t *part);

/* Length of the longest prefix of s[0..len) that does not end inside a
 * UTF-8 sequence (the rest waits for more bytes). */
size_t srv_utf8_complete_prefix(const char *s, size_t len);

#endif
