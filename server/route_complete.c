/* route_complete.c - POST /v1/completions and /v1/chat/completions: request
 * to engine, engine events to one JSON body or to Server-Sent Events.
 *
 * Streamed text is cut at UTF-8 character boundaries (srv_utf8_complete_prefix)
 * so no event ever carries half a character.  Never blocks: every engine
 * interaction is a submitted request and the events that come back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "server/srv.h"
#include "engine/xalloc.h"

/* A JSON string from len bytes, invalid UTF-8 replaced by U+FFFD. */
json_t *srv_json_text(const char *s, size_t len)
{
    json_t *j = json_stringn(s ? s : "", s ? len : 0);
    if (j)
        return j;
    srv_buf b = {0};
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        json_t *probe = n && i + n <= len ? json_stringn(s + i, n) : NULL;
        if (probe) {
            srv_buf_add(&b, s + i, n);
            json_decref(probe);
            i += n;
        } else {
            srv_buf_add(&b, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
    j = json_stringn(b.p ? b.p : "", b.len);
    srv_buf_free(&b);
    return j;
}

static const char *finish_name(eng_finish f)
{
    return f == ENG_FINISH_STOP ? "stop" : f == ENG_FINISH_LENGTH ? "length" : NULL;
}

static json_t *token_text(const srv_server *s, int32_t id)
{
    char *t = NULL;
    size_t n = 0;
    if (s->info && s->info->tok && eng_tokenizer_decode(s->info->tok, &id, 1, 0, &t, &n) == SSMD_OK) {
        json_t *j = srv_json_text(t, n);
        free(t);
        return j;
    }
    char buf[24];
    snprintf(buf, sizeof buf, "<%d>", id);
    return json_string(buf);
}

/* Logprobs of choice ch's tokens [from, to) in the completions or chat
 * shape. */
static json_t *logprobs_json(const srv_conn *c, const srv_choice *ch, int from, int to)
{
    const srv_gen *g = &c->gen;
    if (g->logprobs <= 0 || !ch->lps)
        return json_null();
    if (g->is_chat) {
        json_t *content = json_array();
        for (int i = from; i < to; i++) {
            const eng_logprobs *lp = &ch->lps[i];
            json_t *top = json_array();
            for (int k = 0; k < lp->n_top; k++)
                json_array_append_new(top, json_pack("{s:o, s:f, s:i}", "token", token_text(c->srv, lp->top_ids[k]),
                                                     "logprob", (double)lp->top_logprobs[k], "id", lp->top_ids[k]));
            json_array_append_new(content, json_pack("{s:o, s:f, s:i, s:o}", "token", token_text(c->srv, lp->token),
                                                     "logprob", (double)lp->logprob, "id", lp->token,
                                                     "top_logprobs", top));
        }
        return json_pack("{s:o}", "content", content);
    }
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *ids = json_array();
    for (int i = from; i < to; i++) {
        const eng_logprobs *lp = &ch->lps[i];
        json_array_append_new(toks, token_text(c->srv, lp->token));
        json_array_append_new(lps, json_real(lp->logprob));
        json_array_append_new(ids, json_integer(lp->token));
        json_t *top = json_object();
        for (int k = 0; k < lp->n_top; k++) {
            json_t *t = token_text(c->srv, lp->top_ids[k]);
            if (!json_object_get(top, json_string_value(t)))
                json_object_set_new(top, json_string_value(t), json_real(lp->top_logprobs[k]));
            json_decref(t);
        }
        json_array_append_new(tops, top);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs", tops,
                     "token_ids", ids);
}

static json_t *usage_json(const srv_gen *g)
{
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", g->n_prompt, "completion_tokens", g->n_gen,
                     "total_tokens", g->n_prompt + g->n_gen);
}

/* Every body and chunk carries the seed the sampler used (an extension,
 * like OpenAI's system_fingerprint): sent back as "seed", it reproduces the
 * completion. */
static json_t *envelope(const srv_conn *c, const char *object, json_t *choices)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:I, s:o}", "id", c->gen.id, "object", object, "created",
                     (json_int_t)c->gen.created, "model", c->srv->model_name, "seed", (json_int_t)c->gen.seed,
                     "choices", choices);
}

static json_t *ids_json(const int32_t *ids, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

/* Choice k: text (or delta) of its tokens [from, to), with finish. */
static json_t *choice_json(srv_conn *c, int k, const char *text, size_t len, int from, int to, eng_finish f,
                           int stream)
{
    const srv_gen *g = &c->gen;
    srv_choice *ch = &c->gen.choices[k];
    const char *fin = finish_name(f);
    json_t *fj = fin ? json_string(fin) : json_null();
    if (!g->is_chat)
        return json_pack("{s:i, s:o, s:o, s:o, s:o}", "index", k, "text", srv_json_text(text, len), "logprobs",
                         logprobs_json(c, ch, from, to), "finish_reason", fj, "tokens",
                         ids_json(ch->tokens + from, to - from));
    json_t *msg = json_pack("{s:o}", "content", srv_json_text(text, len));
    if (!stream || !ch->sent_role)
        json_object_set_new(msg, "role", json_string("assistant"));
    ch->sent_role = 1;
    return json_pack("{s:i, s:o, s:o, s:o, s:o}", "index", k, stream ? "delta" : "message", msg, "logprobs",
                     logprobs_json(c, ch, from, to), "finish_reason", fj, "tokens",
                     ids_json(ch->tokens + from, to - from));
}

static void sse_send(srv_conn *c, json_t *obj)
{
    char *t = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!t)
        ssmd_fatal("cannot encode a stream event (out of memory)");
    srv_stream_write(c, "data: ", 6);
    srv_stream_write(c, t, strlen(t));
    srv_stream_write(c, "\n\n", 2);
    free(t);
}

static void sse_chunk(srv_conn *c, int k, const char *text, size_t len, int from, int to, eng_finish f)
{
    json_t *ch = json_array();
    json_array_append_new(ch, choice_json(c, k, text, len, from, to, f, 1));
    sse_send(c, envelope(c, c->gen.is_chat ? "chat.completion.chunk" : "text_completion", ch));
}

static void choice_push(srv_choice *ch, int logprobs, const eng_event *e)
{
    if (ch->n_tokens == ch->cap_tokens) {
        ch->cap_tokens = ch->cap_tokens ? 2 * ch->cap_tokens : 32;
        ch->tokens = xrealloc(ch->tokens, (size_t)ch->cap_tokens * sizeof *ch->tokens);
        if (logprobs > 0)
            ch->lps = xrealloc(ch->lps, (size_t)ch->cap_tokens * sizeof *ch->lps);
    }
    if (logprobs > 0)
        ch->lps[ch->n_tokens] = e->lp;
    ch->tokens[ch->n_tokens++] = e->token;
}

void srv_gen_free(srv_gen *g)
{
    for (int k = 0; k < g->n_choices; k++) {
        srv_buf_free(&g->choices[k].text);
        free(g->choices[k].tokens);
        free(g->choices[k].lps);
        free(g->choices[k].echo);
    }
    free(g->choices);
    g->choices = NULL;
    g->n_choices = 0;
}

/* The stream's head: each choice's echoed prompt. */
static void stream_begin(srv_conn *c)
{
    if (c->streaming)
        return;
    srv_stream_start(c);
    for (int k = 0; k < c->gen.n_choices; k++) {
        const char *echo = c->gen.choices[k].echo;
        if (echo && *echo)
            sse_chunk(c, k, echo, strlen(echo), 0, 0, ENG_FINISH_NONE);
    }
}

/* The whole body of a finished non-streamed completion: every choice. */
static void reply_whole(srv_conn *c)
{
    srv_gen *g = &c->gen;
    json_t *chs = json_array();
    for (int k = 0; k < g->n_choices; k++) {
        srv_choice *ch = &g->choices[k];
        srv_buf full = {0};
        if (ch->echo)
            srv_buf_add(&full, ch->echo, strlen(ch->echo));
        srv_buf_add(&full, ch->text.p, ch->text.len);
        json_array_append_new(chs, choice_json(c, k, full.p, full.len, 0, ch->n_tokens, ch->finish, 0));
        srv_buf_free(&full);
    }
    json_t *env = envelope(c, g->is_chat ? "chat.completion" : "text_completion", chs);
    json_object_set_new(env, "usage", usage_json(g));
    srv_reply_json(c, 200, env);
}

static void on_complete_event(srv_conn *c, const eng_event *e)
{
    srv_gen *g = &c->gen;
    srv_server *s = c->srv;
    int64_t now = eng_now_mono_ns();
    if (e->kind == ENG_EV_ERROR) {
        if (!c->streaming) {
            srv_reply_error(c, e->err.code, e->err.msg);
            return;
        }
        sse_send(c, srv_error_body(e->err.code, e->err.msg));
        srv_stream_write(c, "data: [DONE]\n\n", 14);
        srv_stream_end(c);
        return;
    }
    int k = e->choice >= 0 && e->choice < g->n_choices ? e->choice : 0;
    srv_choice *ch = &g->choices[k];
    if (e->kind == ENG_EV_TOKEN) {
        if (!c->t_first_ns) {
            c->t_first_ns = now;
            srv_hist_observe(&s->metrics.ttft, (double)(now - c->t_start_ns) * 1e-9);
        } else {
            srv_hist_observe(&s->metrics.itl, (double)(now - c->t_last_ns) * 1e-9);
        }
        c->t_last_ns = now;
        choice_push(ch, g->logprobs, e);
    }
    srv_buf_add(&ch->text, e->text, e->text_len);
    if (e->kind == ENG_EV_TOKEN) {
        if (g->stream) {
            stream_begin(c);
            size_t n = srv_utf8_complete_prefix(ch->text.p, ch->text.len);
            sse_chunk(c, k, ch->text.p, n, ch->n_tokens - 1, ch->n_tokens, ENG_FINISH_NONE);
            memmove(ch->text.p, ch->text.p + n, ch->text.len - n);
            ch->text.len -= n;
        }
        return;
    }
    /* ENG_EV_CHOICE_END or ENG_EV_DONE: choice k finished */
    ch->finish = e->finish;
    if (g->stream) {
        stream_begin(c);
        sse_chunk(c, k, ch->text.p, ch->text.len, ch->n_tokens, ch->n_tokens, ch->finish);
        ch->text.len = 0;
    }
    if (e->kind == ENG_EV_CHOICE_END)
        return;
    /* ENG_EV_DONE: the request */
    g->n_prompt = e->n_prompt_tokens;
    g->n_gen = e->n_gen_tokens;
    g->usage_known = 1;
    s->metrics.completions_total++;
    srv_hist_observe(&s->metrics.e2e, (double)(now - c->t_start_ns) * 1e-9);
    if (!g->stream) {
        reply_whole(c);
        return;
    }
    if (g->include_usage) {
        json_t *env = envelope(c, g->is_chat ? "chat.completion.chunk" : "text_completion", json_array());
        json_object_set_new(env, "usage", usage_json(g));
        sse_send(c, env);
    }
    srv_stream_write(c, "data: [DONE]\n\n", 14);
    srv_stream_end(c);
}

/* The X-Session-Id header (for load balancers with session affinity) names
 * the session like the body's "session"; both may be given when they agree.
 * Returns 0 after replying 400. */
static int header_session(srv_conn *c, json_t *body)
{
    if (!eng_session_id_valid(c->hdr_session)) {
        srv_reply_error(c, SSMD_EINVAL, "the X-Session-Id header must be a session id from POST /v1/sessions");
        return 0;
    }
    const json_t *v = json_object_get(body, "session");
    if (!v || json_is_null(v)) {
        json_object_set_new(body, "session", json_string(c->hdr_session));
        return 1;
    }
    if (!json_is_string(v) || strcmp(json_string_value(v), c->hdr_session) != 0) {
        srv_reply_error(c, SSMD_EINVAL, "the X-Session-Id header and the body's 'session' name different sessions");
        return 0;
    }
    return 1;
}

/* The seed of a request that named none, as OpenAI does: fresh from the
 * OS each time, so identical requests sample differently.  53 bits, so
 * every JSON reader (JavaScript's doubles too) keeps it exact when it is
 * sent back. */
static uint64_t draw_seed(void)
{
    uint64_t x = 0;
    if (getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x) {
        /* no entropy yet (early boot): the clock, scrambled */
        x = (uint64_t)eng_now_mono_ns() * 0x9e3779b97f4a7c15ULL;
        x ^= x >> 31;
    }
    return x & ((UINT64_C(1) << 53) - 1);
}

static void start_common(srv_conn *c, int is_chat)
{
    srv_server *s = c->srv;
    json_t *body = srv_body_json(c);
    if (!body)
        return;
    if (c->hdr_session && !header_session(c, body)) {
        json_decref(body);
        return;
    }
    srv_limits lim = {(int)s->cfg->max_prompt, (int)s->cfg->max_tokens, (int)s->cfg->default_max_tokens,
                      s->info->n_vocab, s->eos_text, &s->chat, s->model_name, (int)s->cfg->max_batch};
    if (is_chat && lim.default_max_tokens < 256)
        lim.default_max_tokens = lim.max_tokens < 256 ? lim.max_tokens : 256;
    srv_completion p;
    ssmd_err err = {0};
    int rc = srv_completion_parse(&p, body, is_chat, s->info->tok, &lim, &err);
    json_decref(body);
    if (rc != SSMD_OK) {
        /* parse's only 404 is another model's name: OpenAI's code for it */
        srv_reply_error_code(c, err.code ? err.code : rc, rc == SSMD_ENOTFOUND ? "model_not_found" : NULL,
                             err.msg);
        srv_completion_free(&p);
        return;
    }
    if (!p.seed_given)
        p.sampling.seed = draw_seed();
    srv_conn_set_session(c, p.session);
    if (s->n_inflight >= s->cfg->max_batch + s->cfg->max_queue) {
        srv_completion_free(&p);
        srv_reply_error(c, SSMD_EBUSY, "too many requests are waiting; try again later");
        return;
    }
    srv_gen *g = &c->gen;
    g->is_chat = is_chat;
    g->stream = p.stream;
    g->echo = p.echo;
    g->include_usage = p.include_usage;
    g->logprobs = p.logprobs;
    g->seed = p.sampling.seed;
    g->has_seed = 1;
    g->created = (int64_t)eng_now_wall_s();
    g->n_choices = p.n * p.n_prompts;
    g->choices = xcalloc((size_t)g->n_choices, sizeof *g->choices);
    char rnd[ENG_SESSION_ID_HEX + 1];
    if (eng_session_new_id(rnd, NULL) != SSMD_OK)
        snprintf(rnd, sizeof rnd, "%llx", (unsigned long long)eng_now_mono_ns());
    snprintf(g->id, sizeof g->id, "%s-%.24s", is_chat ? "chatcmpl" : "cmpl", rnd);
    for (int k = 0, off = 0; p.echo && !is_chat && k < g->n_choices; k++) {
        int pg = k / p.n, len = p.n_prompts > 1 ? p.prompt_lens[pg] : p.n_prompt;
        char **echo = &g->choices[k].echo;
        size_t n;
        if (p.prompt_text)
            *echo = strdup(p.prompt_text);
        else if (s->info->tok && eng_tokenizer_decode(s->info->tok, p.prompt_ids + off, (size_t)len, 0, echo, &n) != SSMD_OK)
            *echo = NULL;
        if (k % p.n == p.n - 1) /* the next prompt */
            off += len;
    }
    eng_request *r = srv_completion_to_request(&p);
    srv_completion_free(&p);
    srv_submit(c, r, 1);
}

void srv_completions_start(srv_conn *c) { start_common(c, 0); }
void srv_chat_start(srv_conn *c) { start_common(c, 1); }
void srv_completion_on_event(srv_conn *c, const eng_event *e) { on_complete_event(c, e); }
