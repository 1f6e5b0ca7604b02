/* parse.c - completion request bodies into srv_completion (see parse.h).
 *
 * Scalar per-request fields come from one table; the few structured fields
 * (prompt, messages, stop, stream_options, session) have their own code.
 * Unknown fields are ignored, as OpenAI clients send many.  Never touches
 * the engine: the result is plain data.
 */
#include "server/parse.h"

#include "engine/text/json_schema.h"
#include "server/chat.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum field_type { F_INT, F_FLOAT, F_BOOL, F_U64 } field_type;

enum { ROUTE_COMPLETION = 1, ROUTE_CHAT = 2, ROUTE_BOTH = 3 };
#define HI_MAX_TOKENS (-1.0) /* upper bound taken from srv_limits */

typedef struct field_row {
    const char *name;
    field_type type;
    double lo, hi;
    int lo_open;    /* lo itself is not allowed */
    size_t offset;  /* into srv_completion */
    int routes;
} field_row;

#define OFF(f) offsetof(srv_completion, f)
#define SAMPLING_ROW(json_name, flag_name, type, lo, hi, lo_open, field, help) \
    {json_name, F_##type, lo, hi, lo_open, OFF(sampling.field), ROUTE_BOTH},
static const field_row field_rows[] = {
    {"max_tokens", F_INT, 0, HI_MAX_TOKENS, 0, OFF(max_tokens), ROUTE_BOTH},
    {"max_completion_tokens", F_INT, 0, HI_MAX_TOKENS, 0, OFF(max_tokens), ROUTE_CHAT},
    /* temperature, top_p, top_k, min_p, repetition_penalty, seed: the
     * bounds `ssmd generate`'s flags use too (sampler.h) */
    ENG_SAMPLING_FIELDS(SAMPLING_ROW)
    {"stream", F_BOOL, 0, 1, 0, OFF(stream), ROUTE_BOTH},
    {"echo", F_BOOL, 0, 1, 0, OFF(echo), ROUTE_COMPLETION},
    {"logprobs", F_INT, 0, ENG_LOGPROBS_MAX, 0, OFF(logprobs), ROUTE_COMPLETION},
    {"logprobs", F_BOOL, 0, 1, 0, OFF(chat_logprobs), ROUTE_CHAT},
    {"top_logprobs", F_INT, 0, ENG_LOGPROBS_MAX, 0, OFF(logprobs), ROUTE_CHAT},
    {"ignore_eos", F_BOOL, 0, 1, 0, OFF(ignore_eos), ROUTE_BOTH},
    {"n", F_INT, 1, 128, 0, OFF(n), ROUTE_BOTH}, /* 128: OpenAI's own bound; srv_limits' below */
    {"add_generation_prompt", F_BOOL, 0, 1, 0, OFF(add_generation_prompt), ROUTE_CHAT},
};
#undef SAMPLING_ROW
#undef OFF
#define N_FIELDS (sizeof field_rows / sizeof field_rows[0])

static const char *type_name(field_type t)
{
    return t == F_BOOL ? "a boolean" : t == F_FLOAT ? "a number" : "an integer";
}

/* A bound or a value as a person writes it: 4096, 0.5, 18000000000000000000
 * (never 1e+06). */
static void num_text(char *out, size_t cap, double x)
{
    if (x == (double)(long double)x && fabs(x) < 1e20 && x == floor(x))
        snprintf(out, cap, "%.0f", x);
    else
        snprintf(out, cap, "%.6g", x);
}

/* "'top_p' must be greater than 0 and at most 1 (it was 2)" */
static int range_error(const field_row *f, double hi, double x, ssmd_err *err)
{
    char lo_s[32], hi_s[32], x_s[32];
    num_text(lo_s, sizeof lo_s, f->lo);
    num_text(hi_s, sizeof hi_s, hi);
    num_text(x_s, sizeof x_s, x);
    if (f->lo_open)
        return ssmd_err_set(err, SSMD_EINVAL, "'%s' must be greater than %s and at most %s (it was %s)", f->name,
                            lo_s, hi_s, x_s);
    return ssmd_err_set(err, SSMD_EINVAL, "'%s' must be between %s and %s (it was %s)", f->name, lo_s, hi_s,
                        x_s);
}

static int field_parse(srv_completion *c, const field_row *f, const json_t *v, const srv_limits *lim,
                       ssmd_err *err)
{
    void *dst = (char *)c + f->offset;
    double hi = f->hi == HI_MAX_TOKENS ? (double)lim->max_tokens : f->hi;
    double x;
    if (f->type == F_BOOL) {
        if (!json_is_boolean(v))
            return ssmd_err_set(err, SSMD_EINVAL, "'%s' must be a boolean (true or false), not %s", f->name,
                                srv_json_kind(v));
        *(int *)dst = json_is_true(v);
        return SSMD_OK;
    }
    if (f->type == F_FLOAT ? !json_is_number(v) : !json_is_integer(v))
        return ssmd_err_set(err, SSMD_EINVAL, "'%s' must be %s, not %s", f->name, type_name(f->type),
                            srv_json_kind(v));
    x = json_number_value(v);
    if (!isfinite(x) || x < f->lo || x > hi || (f->lo_open && x == f->lo))
        return range_error(f, hi, x, err);
    switch (f->type) {
    case F_INT:
        *(int *)dst = (int)json_integer_value(v);
        break;
    case F_U64:
        *(uint64_t *)dst = (uint64_t)json_integer_value(v);
        break;
    case F_FLOAT:
        *(float *)dst = (float)x;
        break;
    default:
        break;
    }
    return SSMD_OK;
}

static int parse_stop(srv_completion *c, const json_t *v, ssmd_err *err)
{
    if (json_is_string(v)) {
        if (json_string_length(v) == 0)
            return SSMD_OK;
        if (json_string_length(v) > ENG_STOP_LEN_MAX)
            return ssmd_err_set(err, SSMD_EINVAL, "'stop' strings are limited to %d bytes", ENG_STOP_LEN_MAX);
        memcpy(c->stop[0], json_string_value(v), json_string_length(v) + 1);
        c->n_stop = 1;
        return SSMD_OK;
    }
    if (!json_is_array(v))
        return ssmd_err_set(err, SSMD_EINVAL, "'stop' must be a string or an array of strings");
    if (json_array_size(v) > ENG_STOP_MAX)
        return ssmd_err_set(err, SSMD_EINVAL, "'stop' holds at most %d strings", ENG_STOP_MAX);
    size_t i;
    const json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s) || json_string_length(s) == 0 || json_string_length(s) > ENG_STOP_LEN_MAX)
            return ssmd_err_set(err, SSMD_EINVAL,
                                "'stop[%zu]' must be a non-empty string of at most %d bytes", i,
                                ENG_STOP_LEN_MAX);
        memcpy(c->stop[c->n_stop++], json_string_value(s), json_string_length(s) + 1);
    }
    return SSMD_OK;
}

static int set_text_prompt(srv_completion *c, const char *text, size_t len, const eng_tokenizer *tok,
                           ssmd_err *err)
{
    if (!tok)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                            "this model has no tokenizer: send 'prompt' as an array of token ids");
    free(c->prompt_text);
    c->prompt_text = strndup(text, len);
    int n = eng_tokenizer_encode(tok, text, len, &c->prompt_ids);
    if (n < 0 || !c->prompt_text)
        return ssmd_err_set(err, SSMD_EINVAL, "the prompt is not valid UTF-8");
    c->n_prompt = n;
    return SSMD_OK;
}

/* One prompt at p (a string, or an array of token ids; `where` names it in
 * messages) into c->prompt_ids and c->n_prompt, replacing what was there. */
static int parse_one_prompt(srv_completion *c, const json_t *p, const char *where, const eng_tokenizer *tok,
                            const srv_limits *lim, ssmd_err *err)
{
    if (json_is_string(p)) {
        free(c->prompt_ids);
        c->prompt_ids = NULL;
        return set_text_prompt(c, json_string_value(p), json_string_length(p), tok, err);
    }
    if (!json_is_array(p))
        return ssmd_err_set(err, SSMD_EINVAL, "'%s' must be a string or an array of token ids, not %s", where,
                            srv_json_kind(p));
    size_t n = json_array_size(p);
    if (n > (size_t)lim->max_prompt)
        return ssmd_err_set(err, SSMD_EINVAL, "'%s' has %zu tokens, more than the limit %d", where, n,
                            lim->max_prompt);
    free(c->prompt_ids);
    c->prompt_ids = malloc((n ? n : 1) * sizeof *c->prompt_ids);
    if (!c->prompt_ids)
        return ssmd_err_set(err, SSMD_ENOMEM, "out of memory for the prompt");
    size_t i;
    const json_t *v;
    json_array_foreach(p, i, v) {
        if (!json_is_integer(v))
            return ssmd_err_set(err, SSMD_EINVAL,
                                "'%s[%zu]' must be a token id (an integer), not %s: a prompt is either one "
                                "string or an array of token ids",
                                where, i, srv_json_kind(v));
        json_int_t id = json_integer_value(v);
        if (id < 0 || id >= lim->n_vocab)
            return ssmd_err_set(err, SSMD_EINVAL, "'%s[%zu]' is %lld, not a token id of this model (0 to %d)",
                                where, i, (long long)id, lim->n_vocab - 1);
        c->prompt_ids[i] = (int32_t)id;
    }
    c->n_prompt = (int)n;
    return SSMD_OK;
}

/* response_format, once srv_compat_parse let through only "text",
 * "json_object" and "json_schema": the latter's schema is compiled here
 * (json_schema.h says which subset; anything else is a 400 naming it). */
static int parse_response_format(srv_completion *c, const json_t *v, ssmd_err *err)
{
    const char *type = json_string_value(json_object_get(v, "type"));
    c->sampling.json_object = !strcmp(type, "json_object");
    if (strcmp(type, "json_schema") != 0)
        return SSMD_OK;
    const json_t *js = json_object_get(v, "json_schema");
    const json_t *schema = json_object_get(js, "schema");
    if (!json_is_object(js) || !json_is_object(schema))
        return ssmd_err_set(err, SSMD_EINVAL,
                            "'response_format' json_schema must be {\"type\": \"json_schema\", "
                            "\"json_schema\": {\"name\": ..., \"schema\": {...}}}");
    int rc = eng_json_schema_compile(schema, &c->json_schema, err);
    c->sampling.json_schema = c->json_schema;
    return rc;
}

/* prompt: a string, an array of token ids, or (OpenAI's batch form) a list
 * of those; a list of one is that one prompt, a longer list is several
 * prompts back to back in prompt_ids (each within --max-prompt, none
 * empty). */
static int parse_prompt(srv_completion *c, const json_t *p, const eng_tokenizer *tok,
                        const srv_limits *lim, ssmd_err *err)
{
    const json_t *first = json_is_array(p) ? json_array_get(p, 0) : NULL;
    if (!first || !(json_is_string(first) || json_is_array(first)))
        return parse_one_prompt(c, p, "prompt", tok, lim, err);
    size_t n_list = json_array_size(p);
    if (n_list == 1)
        return parse_one_prompt(c, first, "prompt[0]", tok, lim, err);
    if (n_list > 128)
        return ssmd_err_set(err, SSMD_EINVAL, "'prompt' holds %zu prompts, more than 128", n_list);
    int32_t *all = NULL;
    int *lens = calloc(n_list, sizeof *lens);
    int total = 0, rc = lens ? SSMD_OK : ssmd_err_set(err, SSMD_ENOMEM, "out of memory for the prompts");
    for (size_t g = 0; g < n_list && rc == SSMD_OK; g++) {
        char where[32];
        snprintf(where, sizeof where, "prompt[%zu]", g);
        rc = parse_one_prompt(c, json_array_get(p, g), where, tok, lim, err);
        if (rc == SSMD_OK && c->n_prompt == 0)
            rc = ssmd_err_set(err, SSMD_EINVAL, "'%s' is empty", where);
        if (rc == SSMD_OK && c->n_prompt > lim->max_prompt)
            rc = ssmd_err_set(err, SSMD_EINVAL, "'%s' has %d tokens, more than the limit %d", where, c->n_prompt,
                              lim->max_prompt);
        int32_t *grown = rc == SSMD_OK ? realloc(all, (size_t)(total + c->n_prompt) * sizeof *all) : NULL;
        if (rc == SSMD_OK && !grown)
            rc = ssmd_err_set(err, SSMD_ENOMEM, "out of memory for the prompts");
        if (rc == SSMD_OK) {
            all = grown;
            memcpy(all + total, c->prompt_ids, (size_t)c->n_prompt * sizeof *all);
            lens[g] = c->n_prompt;
            total += c->n_prompt;
        }
    }
    free(c->prompt_text); /* each prompt's own text is not kept: echo decodes the ids */
    c->prompt_text = NULL;
    free(c->prompt_ids);
    c->prompt_ids = all;
    c->n_prompt = total;
    c->n_prompts = (int)n_list;
    c->prompt_lens = lens;
    return rc;
}

/* logit_bias: {"token id": bias in [-100, 100], ...} as OpenAI sends it
 * (ids as decimal strings, the keys of a JSON object). */
static int parse_logit_bias(srv_completion *c, const json_t *v, const srv_limits *lim, ssmd_err *err)
{
    if (!json_is_object(v))
        return ssmd_err_set(err, SSMD_EINVAL,
                            "'logit_bias' must be an object mapping token ids to numbers, not %s", srv_json_kind(v));
    if (json_object_size(v) > ENG_LOGIT_BIAS_MAX)
        return ssmd_err_set(err, SSMD_EINVAL, "'logit_bias' may hold at most %d tokens", ENG_LOGIT_BIAS_MAX);
    const char *key;
    const json_t *b;
    json_object_foreach((json_t *)v, key, b) {
        size_t len = strspn(key, "0123456789");
        long id = len && len <= 9 && !key[len] ? strtol(key, NULL, 10) : -1;
        if (id < 0 || id >= lim->n_vocab)
            return ssmd_err_set(err, SSMD_EINVAL,
                                "'logit_bias' key \"%.40s\" is not a token id of this model (0 to %d)", key,
                                lim->n_vocab - 1);
        if (!json_is_number(b) || !(json_number_value(b) >= -100 && json_number_value(b) <= 100))
            return ssmd_err_set(err, SSMD_EINVAL, "'logit_bias[\"%s\"]' must be a number between -100 and 100",
                                key);
        eng_logit_bias *e = &c->sampling.logit_bias[c->sampling.n_logit_bias++];
        e->token = (int32_t)id;
        e->bias = (float)json_number_value(b);
    }
    return SSMD_OK;
}

/* "model" must name the served model (any other name is a 404, as OpenAI
 * and vLLM answer); absent is fine. */
static int check_model(const json_t *body, const srv_limits *lim, ssmd_err *err)
{
    const json_t *m = json_object_get(body, "model");
    if (!m || json_is_null(m) || !lim->model_name)
        return SSMD_OK;
    if (!json_is_string(m))
        return ssmd_err_set(err, SSMD_EINVAL, "'model' must be a string, not %s", srv_json_kind(m));
    if (strcmp(json_string_value(m), lim->model_name) != 0)
        return ssmd_err_set(err, SSMD_ENOTFOUND,
                            "the model '%.200s' does not exist here: this server serves '%.200s' (GET /v1/models)",
                            json_string_value(m), lim->model_name);
    return SSMD_OK;
}

int srv_completion_parse(srv_completion *c, const json_t *body, int is_chat, const eng_tokenizer *tok,
                         const srv_limits *lim, ssmd_err *err)
{
    memset(c, 0, sizeof *c);
    c->is_chat = is_chat;
    c->n = 1;
    c->n_prompts = 1;
    c->add_generation_prompt = 1;
    c->max_tokens = lim->default_max_tokens;
    eng_sampling_defaults(&c->sampling);
    if (!json_is_object(body))
        return ssmd_err_set(err, SSMD_EINVAL, "the request body must be a JSON object");
    int rc = check_model(body, lim, err);
    if (rc == SSMD_OK)
        rc = srv_compat_parse(body, is_chat, err);
    if (rc != SSMD_OK)
        return rc;
    int route = is_chat ? ROUTE_CHAT : ROUTE_COMPLETION;
    for (size_t i = 0; i < N_FIELDS; i++) {
        const field_row *f = &field_rows[i];
        const json_t *v = json_object_get(body, f->name);
        if (!(f->routes & route) || !v || json_is_null(v))
            continue;
        rc = field_parse(c, f, v, lim, err);
        if (rc != SSMD_OK)
            return rc;
    }
    const json_t *v = json_object_get(body, "seed");
    c->seed_given = v && !json_is_null(v);
    v = json_object_get(body, "logit_bias");
    if (v && !json_is_null(v) && parse_logit_bias(c, v, lim, err) != SSMD_OK)
        return SSMD_EINVAL;
    v = json_object_get(body, "response_format");
    if (v && !json_is_null(v) && (rc = parse_response_format(c, v, err)) != SSMD_OK)
        return rc;
    if (is_chat && !c->chat_logprobs)
        c->logprobs = 0;
    else if (is_chat && c->logprobs == 0)
        c->logprobs = 1; /* logprobs: true alone reports the chosen token */
    c->sampling.logprobs = c->logprobs;
    if (eng_sampling_validate(&c->sampling, err) != SSMD_OK)
        return SSMD_EINVAL;

    v = json_object_get(body, "stop");
    if (v && !json_is_null(v) && parse_stop(c, v, err) != SSMD_OK)
        return SSMD_EINVAL;
    v = json_object_get(body, "stream_options");
    if (v && !json_is_null(v)) {
        const json_t *u = json_object_get(v, "include_usage");
        if (!json_is_object(v) || (u && !json_is_boolean(u)))
            return ssmd_err_set(err, SSMD_EINVAL, "'stream_options' must be {\"include_usage\": bool}");
        c->include_usage = json_is_true(u);
    }
    v = json_object_get(body, "session");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || !eng_session_id_valid(json_string_value(v)))
            return ssmd_err_set(err, SSMD_EINVAL, "'session' must be a session id from POST /v1/sessions");
        memcpy(c->session, json_string_value(v), ENG_SESSION_ID_HEX + 1);
    }

    if (is_chat) {
        v = json_object_get(body, "messages");
        if (!v)
            return ssmd_err_set(err, SSMD_EINVAL, "'messages' is required");
        char *text = srv_chat_apply(lim->chat, v, c->add_generation_prompt, lim->chat_eos, err);
        if (!text)
            return err->code ? err->code : SSMD_EINVAL;
        rc = set_text_prompt(c, text, strlen(text), tok, err);
        free(text);
    } else {
        v = json_object_get(body, "prompt");
        if (!v)
            return ssmd_err_set(err, SSMD_EINVAL, "'prompt' is required");
        rc = parse_prompt(c, v, tok, lim, err);
    }
    if (rc != SSMD_OK)
        return rc;
    if (c->n_prompts == 1 && c->n_prompt > lim->max_prompt) /* a list's prompts were checked one by one */
        return ssmd_err_set(err, SSMD_EINVAL, "the prompt has %d tokens, more than the limit %d", c->n_prompt,
                            lim->max_prompt);
    for (int i = 0; i < c->n_prompt; i++)
        if (c->prompt_ids[i] < 0 || c->prompt_ids[i] >= lim->n_vocab)
            return ssmd_err_set(err, SSMD_EINVAL,
                                "the prompt encodes to token %d, outside the model's vocabulary (%d)",
                                c->prompt_ids[i], lim->n_vocab);
    int max_choices = lim->max_choices > 0 ? lim->max_choices : 1;
    if (c->n > max_choices / c->n_prompts)
        return ssmd_err_set(err, SSMD_EINVAL,
                            "'n' is %d for %d prompt(s): %d choices, more than the %d a request may ask for "
                            "here: each choice is a sequence of the decode batch (--max-batch)",
                            c->n, c->n_prompts, c->n * c->n_prompts, max_choices);
    if (c->n > 1 && c->session[0])
        return ssmd_err_set(err, SSMD_EINVAL,
                            "'n' above 1 cannot continue a session, which keeps one history: fork the session "
                            "once per choice instead");
    if (c->n_prompts > 1 && c->session[0])
        return ssmd_err_set(err, SSMD_EINVAL,
                            "a list of prompts cannot continue a session, which keeps one history: send one "
                            "request per prompt");
    if (c->n_prompt == 0 && !c->session[0])
        return ssmd_err_set(err, SSMD_EINVAL, "the prompt is empty");
    return SSMD_OK;
}

void srv_completion_free(srv_completion *c)
{
    free(c->prompt_text);
    free(c->prompt_ids);
    eng_json_schema_free(c->json_schema);
    free(c->prompt_lens);
    c->prompt_text = NULL;
    c->prompt_ids = NULL;
    c->prompt_lens = NULL;
    c->json_schema = NULL;
    c->sampling.json_schema = NULL;
}

eng_request *srv_completion_to_request(srv_completion *c)
{
    eng_request *r = eng_request_new(ENG_OP_COMPLETE);
    r->prompt = c->prompt_ids;
    r->n_prompt = c->n_prompt;
    c->prompt_ids = NULL;
    r->max_tokens = c->max_tokens;
    r->ignore_eos = c->ignore_eos;
    r->sampling = c->sampling;
    r->json_schema = c->json_schema; /* moved, like the prompt */
    c->json_schema = NULL;
    r->n_stop = c->n_stop;
    memcpy(r->stop, c->stop, sizeof r->stop);
    memcpy(r->session, c->session, sizeof r->session);
    r->n_choices = c->n;
    r->n_prompts = c->n_prompts;
    r->prompt_lens = c->prompt_lens;
    c->prompt_lens = NULL;
    /* a chat request sends the whole conversation every turn */
    r->prompt_is_history = c->is_chat && c->session[0];
    return r;
}

/* Appends s to the growing buffer; returns 0 or -1 when out of memory. */
static int buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = (*cap ? *cap : 256);
        while (nc < *len + n + 1)
            nc *= 2;
        char *b = realloc(*buf, nc);
        if (!b)
            return -1;
        *buf = b;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

const json_t *srv_chat_part_text(const json_t *part)
{
    const json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
    if (type && !(json_is_string(type) && json_string_length(type) == 4 && !memcmp(json_string_value(type), "text", 4)))
        return NULL;
    if (!json_is_string(text) || strlen(json_string_value(text)) != json_string_length(text))
        return NULL;
    return text;
}

char *srv_chat_render(const json_t *messages, const char *eos, int add_generation_prompt, ssmd_err *err)
{
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        ssmd_err_set(err, SSMD_EINVAL, "'messages' must be a non-empty array");
        return NULL;
    }
    char *out = NULL;
    size_t len = 0, cap = 0;
    size_t i;
    const json_t *m;
    int bad = 0;
    json_array_foreach(messages, i, m) {
        const json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(role) || json_string_length(role) == 0 ||
            json_string_length(role) > 64) {
            ssmd_err_set(err, SSMD_EINVAL, "'messages[%zu].role' must be a short non-empty string", i);
            bad = 1;
            break;
        }
        bad |= buf_add(&out, &len, &cap, "<|", 2);
        bad |= buf_add(&out, &len, &cap, json_string_value(role), json_string_length(role));
        bad |= buf_add(&out, &len, &cap, "|>\n", 3);
        if (json_is_string(content)) {
            bad |= buf_add(&out, &len, &cap, json_string_value(content), json_string_length(content));
        } else if (json_is_array(content)) {
            size_t k;
            const json_t *part;
            json_array_foreach(content, k, part) {
                const json_t *t = srv_chat_part_text(part);
                if (!t) {
                    ssmd_err_set(err, SSMD_EINVAL, "'messages[%zu].content[%zu]' must be {\"type\":\"text\",\"text\":...}", i, k);
                    free(out);
                    return NULL;
                }
                bad |= buf_add(&out, &len, &cap, json_string_value(t), json_string_length(t));
            }
        } else if (!json_is_null(content)) {
            ssmd_err_set(err, SSMD_EINVAL, "'messages[%zu].content' must be a string or an array of parts", i);
            bad = 1;
            break;
        }
        bad |= buf_add(&out, &len, &cap, eos, strlen(eos));
        bad |= buf_add(&out, &len, &cap, "\n", 1);
        if (bad) {
            ssmd_err_set(err, SSMD_ENOMEM, "out of memory rendering messages");
            break;
        }
    }
    if (!bad && (!add_generation_prompt || buf_add(&out, &len, &cap, "<|assistant|>\n", 14) == 0))
        return out;
    free(out);
    return NULL;
}

size_t srv_utf8_complete_prefix(const char *s, size_t len)
{
    /* Walk back over at most 3 continuation bytes to the last lead byte. */
    size_t i = len, back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) {
        i--;
        back++;
    }
    if (i == 0)
        return back ? len : 0; /* only continuation bytes: nothing to wait for */
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : (lead & 0xF8) == 0xF0 ? 4 : 1;
    if (lead < 0x80 || need == 1)
        return len; /* ASCII or an invalid byte: nothing can complete it */
    return back + 1 >= need ? len : i - 1;
}
