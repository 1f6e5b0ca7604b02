/* routes.c - the route table and the small routes: health, readiness,
 * models, metrics, tokenize/detokenize and the session routes.
 *
 * Session routes only build engine requests and turn the engine's answer
 * into JSON (or the binary export of state_fmt); the session table itself
 * lives on the engine thread.  Never blocks.
 */
#include <stdlib.h>
#include <string.h>

#include "server/srv.h"
#include "server/state_fmt.h"
#include "engine/xalloc.h"

/* ---- probes, models, metrics ---- */

static void start_health(srv_conn *c) { srv_reply_json(c, 200, json_pack("{s:s}", "status", "ok")); }

static void start_ready(srv_conn *c)
{
    srv_server *s = c->srv;
    if (s->draining)
        srv_reply_error(c, SSMD_EDRAINING, "server is shutting down");
    else if (!s->loaded)
        srv_reply_error(c, SSMD_EDRAINING, "model is loading");
    else
        srv_reply_json(c, 200, json_pack("{s:s}", "status", "ready"));
}

static void add_option(void *arg, const char *name, const char *value)
{
    json_object_set_new(arg, name, json_string(value));
}

/* The served model as OpenAI's model object, with our meta. */
static json_t *model_json(const srv_server *s)
{
    json_t *opts = json_object();
    srv_config_each(s->cfg, SRV_FRONT_SERVE, add_option, opts);
    json_t *meta = json_pack("{s:o, s:b}", "options", opts, "loaded", s->loaded);
    if (s->info) {
        json_object_set_new(meta, "n_vocab", json_integer(s->info->n_vocab));
        json_object_set_new(meta, "n_params", json_integer(s->info->n_params));
        json_object_set_new(meta, "dtype", json_string(s->info->dtype));
        json_object_set_new(meta, "state_bytes", json_integer((json_int_t)s->info->state_bytes));
        json_object_set_new(meta, "fingerprint", json_string(s->info->fingerprint));
        json_object_set_new(meta, "tokenizer", json_boolean(s->info->tok != NULL));
        json_object_set_new(meta, "chat_template", json_string(s->chat.tmpl ? "model" : "default"));
    }
    return json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", s->model_name, "object", "model", "created",
                     (json_int_t)0, "owned_by", "ssmd", "meta", meta);
}

static void start_models(srv_conn *c)
{
    srv_reply_json(c, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", model_json(c->srv)));
}

/* GET /v1/models/{name}: the served model, or 404 model_not_found as
 * OpenAI answers for a model it does not have.  {name} is the rest of the
 * path, so ids with a '/' ("org/model") work. */
static void start_model_get(srv_conn *c)
{
    if (strcmp(c->path_id, c->srv->model_name) != 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "the model '%.150s' does not exist here: this server serves '%.150s'", c->path_id,
                 c->srv->model_name);
        srv_reply_error_code(c, SSMD_ENOTFOUND, "model_not_found", msg);
        return;
    }
    srv_reply_json(c, 200, model_json(c->srv));
}

static void start_metrics(srv_conn *c)
{
    srv_server *s = c->srv;
    eng_sched_stats st;
    memset(&st, 0, sizeof st);
    if (s->sched)
        eng_sched_get_stats(s->sched, &st);
    char *text = srv_metrics_render(&s->metrics, &st, s->loaded, s->draining);
    if (!text) {
        srv_reply_error(c, SSMD_ENOMEM, NULL);
        return;
    }
    srv_reply_bytes(c, 200, "text/plain; version=0.0.4", text, strlen(text));
}

/* ---- tokenizer ---- */

static const eng_tokenizer *need_tokenizer(srv_conn *c)
{
    const eng_tokenizer *tok = c->srv->info->tok;
    if (!tok)
        srv_reply_error(c, SSMD_EUNSUPPORTED, "this model has no tokenizer.json");
    return tok;
}

static void start_tokenize(srv_conn *c)
{
    json_t *body = srv_body_json(c);
    if (!body)
        return;
    const json_t *content = json_object_get(body, "content");
    const json_t *add_special = json_object_get(body, "add_special"); /* llama.cpp's option */
    const eng_tokenizer *tok;
    if (!json_is_string(content)) {
        srv_reply_error(c, SSMD_EINVAL, "'content' must be a string");
    } else if (add_special && !json_is_boolean(add_special)) {
        srv_reply_error(c, SSMD_EINVAL, "'add_special' must be a boolean");
    } else if ((tok = need_tokenizer(c)) != NULL) {
        int32_t *ids = NULL;
        int n = eng_tokenizer_encode_special(tok, json_string_value(content),
                                             json_string_length(content),
                                             json_is_true(add_special), &ids);
        if (n < 0) {
            srv_reply_error(c, SSMD_EINVAL, "'content' is not valid UTF-8");
        } else {
            json_t *a = json_array();
            for (int i = 0; i < n; i++)
                json_array_append_new(a, json_integer(ids[i]));
            srv_reply_json(c, 200, json_pack("{s:o}", "tokens", a));
        }
        free(ids);
    }
    json_decref(body);
}

static void start_detokenize(srv_conn *c)
{
    json_t *body = srv_body_json(c);
    if (!body)
        return;
    const json_t *toks = json_object_get(body, "tokens");
    const eng_tokenizer *tok;
    if (!json_is_array(toks)) {
        srv_reply_error(c, SSMD_EINVAL, "'tokens' must be an array of token ids");
    } else if ((tok = need_tokenizer(c)) != NULL) {
        size_t n = json_array_size(toks), i;
        int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
        const json_t *v;
        int bad = -1;
        int vocab = eng_tokenizer_vocab_size(tok);
        json_array_foreach(toks, i, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= vocab) {
                bad = (int)i;
                break;
            }
            ids[i] = (int32_t)json_integer_value(v);
        }
        char *text = NULL;
        size_t len = 0;
        if (bad >= 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "'tokens[%d]' is not a token id of this tokenizer", bad);
            srv_reply_error(c, SSMD_EINVAL, msg);
        } else if (eng_tokenizer_decode(tok, ids, n, 0, &text, &len) != SSMD_OK) {
            srv_reply_error(c, SSMD_EINVAL, "cannot decode these tokens");
        } else {
            srv_reply_json(c, 200, json_pack("{s:o}", "content", srv_json_text(text, len)));
        }
        free(text);
        free(ids);
    }
    json_decref(body);
}

/* ---- sessions ---- */

static json_t *session_json(const srv_server *s, const eng_session_info *in)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "id", in->id, "object", "session", "model", s->model_name,
                     "n_tokens", (json_int_t)in->n_tokens, "created", (json_int_t)in->created_s, "last_used",
                     (json_int_t)in->last_used_s);
}

static void on_session_event(srv_conn *c, const eng_event *e)
{
    srv_server *s = c->srv;
    if (e->kind == ENG_EV_ERROR) {
        srv_reply_error(c, e->err.code, e->err.msg);
        return;
    }
    if (e->kind != ENG_EV_RESULT)
        return;
    if (e->req->op == ENG_OP_SESSION_CREATE || e->req->op == ENG_OP_SESSION_FORK)
        srv_conn_set_session(c, e->info.id); /* the new session */
    switch (e->req->op) {
    case ENG_OP_SESSION_DELETE: {
        json_t *j = session_json(s, &e->info);
        json_object_set_new(j, "deleted", json_true());
        srv_reply_json(c, 200, j);
        return;
    }
    case ENG_OP_STATE_EXPORT: {
        unsigned char *buf;
        size_t len;
        ssmd_err err = {0};
        if (srv_state_pack(s->info->fingerprint, &e->info, e->blob, e->blob_bytes, &buf,
                           &len, &err) != SSMD_OK) {
            srv_reply_error(c, err.code, err.msg);
            return;
        }
        srv_reply_bytes(c, 200, "application/octet-stream", buf, len);
        return;
    }
    default:
        srv_reply_json(c, 200, session_json(s, &e->info));
        return;
    }
}

/* Submits op for the {id} of the path; 404 for an id that cannot exist. */
static eng_request *session_request(srv_conn *c, eng_op op)
{
    if (op != ENG_OP_SESSION_CREATE && !eng_session_id_valid(c->path_id)) {
        srv_reply_error(c, SSMD_ENOTFOUND, "no such session");
        return NULL;
    }
    eng_request *r = eng_request_new(op);
    if (op != ENG_OP_SESSION_CREATE)
        memcpy(r->session, c->path_id, sizeof r->session);
    return r;
}

static void submit_op(srv_conn *c, eng_op op)
{
    eng_request *r = session_request(c, op);
    if (r)
        srv_submit(c, r, 0);
}

/* POST /v1/sessions: a fresh id, or the client's own in X-Session-Id (so
 * it can pick one that a hashing load balancer sends to a known replica). */
static void start_session_create(srv_conn *c)
{
    if (c->hdr_session && !eng_session_id_valid(c->hdr_session)) {
        srv_reply_error(c, SSMD_EINVAL, "X-Session-Id must be 32 lowercase hex characters");
        return;
    }
    eng_request *r = eng_request_new(ENG_OP_SESSION_CREATE);
    if (c->hdr_session)
        memcpy(r->session, c->hdr_session, sizeof r->session);
    srv_submit(c, r, 0);
}
static void start_session_get(srv_conn *c) { submit_op(c, ENG_OP_SESSION_INFO); }
static void start_session_delete(srv_conn *c) { submit_op(c, ENG_OP_SESSION_DELETE); }
static void start_session_fork(srv_conn *c) { submit_op(c, ENG_OP_SESSION_FORK); }
static void start_state_export(srv_conn *c) { submit_op(c, ENG_OP_STATE_EXPORT); }

static void start_state_import(srv_conn *c)
{
    srv_server *s = c->srv;
    srv_state_meta m;
    const unsigned char *state;
    ssmd_err err = {0};
    if (!eng_session_id_valid(c->path_id)) {
        srv_reply_error(c, SSMD_ENOTFOUND, "no such session");
        return;
    }
    if (srv_state_decode((const unsigned char *)c->body.p, c->body.len, s->info->fingerprint, s->info->state_bytes,
                         &m, &state, &err) != SSMD_OK) {
        srv_reply_error(c, err.code, err.msg);
        return;
    }
    if (m.pending >= s->info->n_vocab) {
        srv_reply_error(c, SSMD_EFORMAT, "state export holds a token outside this model's vocabulary");
        return;
    }
    srv_submit(c, srv_import_request(c->path_id, &m, state), 0);
}

eng_request *srv_import_request(const char *id, const srv_state_meta *m, const unsigned char *state)
{
    eng_request *r = eng_request_new(ENG_OP_STATE_IMPORT);
    snprintf(r->session, sizeof r->session, "%.*s", ENG_SESSION_ID_HEX, id);
    r->blob = xmalloc(m->state_bytes);
    memcpy(r->blob, state, m->state_bytes);
    r->blob_bytes = m->state_bytes;
    r->blob_pending = m->pending;
    r->blob_n_tokens = m->n_tokens;
    r->blob_hist = m->hist;
    return r;
}

/* ---- the table ---- */

const srv_route srv_routes[] = {
    {"GET", "/health", SRV_BODY_NONE, 0, 0, start_health, NULL},
    {"GET", "/ready", SRV_BODY_NONE, 0, 0, start_ready, NULL},
    {"GET", "/metrics", SRV_BODY_NONE, 0, 0, start_metrics, NULL},
    {"GET", "/v1/models", SRV_BODY_NONE, 1, 0, start_models, NULL},
    {"GET", "/v1/models/{name}", SRV_BODY_NONE, 1, 0, start_model_get, NULL},
    {"POST", "/v1/completions", SRV_BODY_JSON, 1, 1, srv_completions_start, srv_completion_on_event},
    {"POST", "/v1/chat/completions", SRV_BODY_JSON, 1, 1, srv_chat_start, srv_completion_on_event},
    {"POST", "/v1/sessions", SRV_BODY_JSON, 1, 1, start_session_create, on_session_event},
    {"GET", "/v1/sessions/{id}", SRV_BODY_NONE, 1, 1, start_session_get, on_session_event},
    {"DELETE", "/v1/sessions/{id}", SRV_BODY_NONE, 1, 1, start_session_delete, on_session_event},
    {"POST", "/v1/sessions/{id}/fork", SRV_BODY_JSON, 1, 1, start_session_fork, on_session_event},
    {"GET", "/v1/sessions/{id}/state", SRV_BODY_NONE, 1, 1, start_state_export, on_session_event},
    {"PUT", "/v1/sessions/{id}/state", SRV_BODY_STATE, 1, 1, start_state_import, on_session_event},
    {"POST", "/tokenize", SRV_BODY_JSON, 1, 1, start_tokenize, NULL},
    {"POST", "/detokenize", SRV_BODY_JSON, 1, 1, start_detokenize, NULL},
};
const int srv_n_routes = (int)(sizeof srv_routes / sizeof srv_routes[0]);

/* Does path match pattern?  Copies the {id} segment (or the {name} rest
 * of the path) into id. */
static int path_match(const char *pattern, const char *path, char *id, size_t cap)
{
    while (*pattern && *path) {
        if (!strcmp(pattern, "{name}")) {
            size_t n = strlen(path);
            if (n >= cap)
                return 0;
            memcpy(id, path, n + 1);
            return 1;
        }
        if (!strncmp(pattern, "{id}", 4)) {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= cap)
                return 0;
            memcpy(id, path, n);
            id[n] = '\0';
            path += n;
            pattern += 4;
            continue;
        }
        if (*pattern != *path)
            return 0;
        pattern++;
        path++;
    }
    return *pattern == '\0' && *path == '\0';
}

void srv_route_allow(const char *url, char *out, size_t cap)
{
    char id[264];
    out[0] = '\0';
    const char *methods[] = {"GET", "POST", "PUT", "DELETE"};
    for (size_t m = 0; m < sizeof methods / sizeof *methods; m++) {
        int code;
        if (srv_route_match(methods[m], url, id, sizeof id, &code) && strlen(out) + 8 < cap) {
            if (out[0])
                strcat(out, ", ");
            strcat(out, methods[m]);
        }
    }
}

const srv_route *srv_route_match(const char *method, const char *url, char *id, size_t cap, int *code)
{
    int path_known = 0;
    size_t len = strcspn(url, "?");
    char path[512];
    if (len >= sizeof path) {
        *code = SSMD_ENOTFOUND;
        return NULL;
    }
    memcpy(path, url, len);
    path[len] = '\0';
    while (len > 1 && path[len - 1] == '/')
        path[--len] = '\0';
    for (int i = 0; i < srv_n_routes; i++) {
        if (!path_match(srv_routes[i].pattern, path, id, cap))
            continue;
        if (!strcmp(srv_routes[i].method, method))
            return &srv_routes[i];
        path_known = 1;
    }
    *code = path_known ? SSMD_ENOMETHOD : SSMD_ENOTFOUND;
    return NULL;
}
