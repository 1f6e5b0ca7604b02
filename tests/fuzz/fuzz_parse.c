/* fuzz_parse.c - libFuzzer target: the HTTP body -> request-struct path of
 * /v1/completions and /v1/chat/completions.  The first byte picks the route
 * (completion or chat) and the chat template (text_tiny's own, through the
 * tmpl.h interpreter, or the default); the rest is the body, parsed with
 * jansson as the server does, then srv_completion_parse with the text_tiny
 * tokenizer, and an accepted request is turned into an eng_request.
 *
 * Test code only: never linked into ssmd.  Run from the repository root.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/request.h"
#include "engine/text/tokenizer.h"
#include "server/chat.h"
#include "server/parse.h"

#define FUZZ_MODEL "tests/fixtures/mamba/text_tiny"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static eng_tokenizer *tok;
static srv_chat chat;

static void fixture_free(void)
{
    eng_tokenizer_free(tok);
    srv_chat_free(&chat);
}

static void fixture_load(void)
{
    ssmd_err err = {0};
    if (eng_tokenizer_load(FUZZ_MODEL "/tokenizer.json", &tok, &err) != SSMD_OK) {
        fprintf(stderr, "fuzz_parse: %s (run from the repository root)\n", err.msg);
        abort();
    }
    char why[256];
    if (srv_chat_load(&chat, FUZZ_MODEL, why, sizeof why) != 1) {
        fprintf(stderr, "fuzz_parse: text_tiny's chat template not used: %s\n", why);
        abort();
    }
    chat.max_output = 64 * 1024;
    atexit(fixture_free);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tok)
        fixture_load();
    if (size == 0)
        return 0;
    int is_chat = data[0] & 1, own_template = data[0] & 2, no_tok = (data[0] & 12) == 12;
    json_error_t je;
    json_t *body = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, &je);
    if (!body)
        return 0;
    srv_limits lim = {256, 64, 16, eng_tokenizer_vocab_size(tok), "<|endoftext|>", own_template ? &chat : NULL,
                      NULL /* any model name */, 4 /* choices: n up to 4 */};
    srv_completion c;
    ssmd_err err = {0};
    int rc = srv_completion_parse(&c, body, is_chat, no_tok ? NULL : tok, &lim, &err);
    json_decref(body);
    if (rc != SSMD_OK) {
        if (!err.msg[0])
            abort();
        srv_completion_free(&c);
        return 0;
    }
    if (c.n_prompt < 0 || c.max_tokens < 0 || c.max_tokens > lim.max_tokens || c.n < 1 || c.n_prompts < 1 ||
        c.n * c.n_prompts > lim.max_choices)
        abort();
    if (c.n_prompts == 1 ? c.n_prompt > lim.max_prompt || c.prompt_lens : !c.prompt_lens)
        abort();
    for (int g = 0, sum = 0; g < c.n_prompts && c.n_prompts > 1; g++) { /* a list: each within the limit */
        if (c.prompt_lens[g] < 1 || c.prompt_lens[g] > lim.max_prompt)
            abort();
        sum += c.prompt_lens[g];
        if (g == c.n_prompts - 1 && sum != c.n_prompt)
            abort();
    }
    for (int i = 0; i < c.n_prompt; i++)
        if (c.prompt_ids[i] < 0 || c.prompt_ids[i] >= lim.n_vocab)
            abort();
    eng_request *r = srv_completion_to_request(&c);
    eng_request_free(r);
    srv_completion_free(&c);
    return 0;
}
