/* http.c - the life of one HTTP request (srv_conn): routing, auth, body
 * limits, replies, suspension while the engine works, Server-Sent Events,
 * disconnect detection.
 *
 * A connection waiting for the engine is suspended (MHD suspend/resume);
 * server.c resumes it when its events arrive.  While it waits, a uv_poll on
 * the client socket turns a hang-up into a cancel event, not a timer poll.
 * Never blocks, never touches the model.
 */
#include "server/srv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "server/state_fmt.h"
#include "server/store.h"
#include "engine/xalloc.h"

void srv_buf_add(srv_buf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1)
            nc *= 2;
        b->p = xrealloc(b->p, nc);
        b->cap = nc;
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void srv_buf_free(srv_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- connection bookkeeping ---- */

void srv_conn_unref(srv_conn *c)
{
    if (--c->refs > 0)
        return;
    srv_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    if (c->resp)
        MHD_destroy_response(c->resp);
    srv_buf_free(&c->body);
    srv_buf_free(&c->out);
    srv_gen_free(&c->gen);
    free(c);
}

static void watch_closed(uv_handle_t *h)
{
    srv_conn *c = h->data;
    free(h);
    srv_conn_unref(c);
}

void srv_conn_watch_stop(srv_conn *c)
{
    if (!c->watch)
        return;
    uv_poll_stop(c->watch);
    uv_close((uv_handle_t *)c->watch, watch_closed);
    c->watch = NULL;
}

static void conn_cancel(srv_conn *c)
{
    if (c->req && !c->abort) {
        eng_sched_cancel(c->srv->sched, c->req);
        if (c->is_completion)
            c->srv->metrics.canceled_total++;
    }
    c->abort = 1;
    srv_conn_watch_stop(c);
}

/* The client socket became readable or hung up while its request runs. */
static void on_watch(uv_poll_t *h, int status, int events)
{
    srv_conn *c = h->data;
    char b;
    uv_os_fd_t fd = -1;
    ssize_t n = -1;
    if (status >= 0 && uv_fileno((uv_handle_t *)h, &fd) == 0)
        n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0 && !(events & UV_DISCONNECT)) {
        srv_conn_watch_stop(c); /* a pipelined request: MHD reads it later */
        return;
    }
    if (n < 0 && status >= 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    conn_cancel(c);
}

static void watch_start(srv_conn *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci || c->watch)
        return;
    uv_poll_t *w = calloc(1, sizeof *w);
    if (!w)
        return;
    if (uv_poll_init(c->srv->loop, w, ci->connect_fd) != 0) {
        free(w);
        return;
    }
    w->data = c;
    c->refs++;
    c->watch = w;
    uv_poll_start(w, UV_READABLE | UV_DISCONNECT, on_watch);
}

void srv_conn_resume(srv_conn *c)
{
    if (c->suspended && !c->closed) {
        c->suspended = 0;
        MHD_resume_connection(c->mc);
    }
}

/* ---- replies ---- */

json_t *srv_error_body(int code, const char *msg)
{
    return json_pack("{s:{s:s, s:s, s:s}}", "error", "message", msg && *msg ? msg : ssmd_err_default_message(code),
                     "type", ssmd_err_type(code), "code", ssmd_err_name(code));
}

void srv_reply_bytes(srv_conn *c, unsigned status, const char *ctype, void *data, size_t len)
{
    if (c->resp)
        MHD_destroy_response(c->resp);
    c->resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!c->resp)
        ssmd_fatal("cannot create a response (out of memory)");
    MHD_add_response_header(c->resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    c->status = status;
}

void srv_reply_json(srv_conn *c, unsigned status, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text)
        ssmd_fatal("cannot encode a JSON reply (out of memory)");
    size_t n = strlen(text);
    char *body = xrealloc(text, n + 2);
    body[n] = '\n';
    body[n + 1] = '\0';
    srv_reply_bytes(c, status, "application/json", body, n + 1);
}

void srv_reply_error_code(srv_conn *c, int code, const char *code_name, const char *msg)
{
    json_t *body = srv_error_body(code, msg);
    if (code_name)
        json_object_set_new(json_object_get(body, "error"), "code", json_string(code_name));
    snprintf(c->why, sizeof c->why, "%s", msg && *msg ? msg : ssmd_err_default_message(code));
    srv_reply_json(c, (unsigned)ssmd_err_http_status(code), body);
}

void srv_reply_error(srv_conn *c, int code, const char *msg) { srv_reply_error_code(c, code, NULL, msg); }

void srv_submit(srv_conn *c, eng_request *r, int is_completion)
{
    r->udata = c;
    c->req = r;
    c->refs++;
    c->is_completion = is_completion;
    if (is_completion)
        c->srv->n_inflight++;
    c->t_start_ns = eng_now_mono_ns();
    if (!c->suspended) {
        c->suspended = 1;
        MHD_suspend_connection(c->mc);
    }
    watch_start(c);
    if (c->srv->store && (r->session[0] || r->op == ENG_OP_SESSION_CREATE))
        srv_store_submit(c->srv->store, c, r);
    else
        eng_sched_submit(c->srv->sched, r);
}

/* ---- streaming ---- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    srv_conn *c = cls;
    (void)pos;
    if (c->abort)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t avail = c->out.len - c->out_off;
    if (avail) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, c->out.p + c->out_off, n);
        c->out_off += n;
        if (c->out_off == c->out.len)
            c->out.len = c->out_off = 0;
        return (ssize_t)n;
    }
    if (c->out_done)
        return MHD_CONTENT_READER_END_OF_STREAM;
    c->suspended = 1;
    MHD_suspend_connection(c->mc);
    return 0;
}

static void stream_free(void *cls) { srv_conn_unref(cls); }

void srv_stream_start(srv_conn *c)
{
    c->streaming = 1;
    c->resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, c, stream_free);
    if (!c->resp)
        ssmd_fatal("cannot create a stream response (out of memory)");
    c->refs++;
    c->status = MHD_HTTP_OK;
    MHD_add_response_header(c->resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(c->resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    if (c->session[0])
        MHD_add_response_header(c->resp, "X-Session-Id", c->session);
}

/* A client that stops reading is canceled once --max-stream-backlog bytes
 * wait for it, instead of buffering its whole output until --conn-timeout
 * (a slow but reading client of a long stream stays far below it). */
void srv_stream_write(srv_conn *c, const char *data, size_t len)
{
    if (c->abort)
        return;
    if (c->out.len - c->out_off + len > (size_t)c->srv->cfg->max_stream_backlog) {
        srv_log_msg(&c->srv->log, "warn", "slow_client", "%s %s: client reads too slowly (%zu bytes unsent); canceled",
                    c->method, c->path, c->out.len - c->out_off);
        conn_cancel(c);
        return;
    }
    srv_buf_add(&c->out, data, len);
}

void srv_stream_end(srv_conn *c) { c->out_done = 1; }

/* ---- MHD callbacks ---- */

static int header_is(struct MHD_Connection *mc, const char *name, const char *prefix, const char **rest)
{
    const char *v = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, name);
    size_t n = strlen(prefix);
    if (!v || strncasecmp(v, prefix, n) != 0)
        return 0;
    *rest = v + n;
    return 1;
}

/* Constant-time comparison of the presented key with the configured one. */
static int key_ok(const char *given, const char *want)
{
    size_t gl = strlen(given), wl = strlen(want);
    unsigned char diff = (unsigned char)(gl != wl);
    for (size_t i = 0; i < wl; i++)
        diff |= (unsigned char)(want[i] ^ (i < gl ? given[i] : 0));
    return diff == 0;
}

void srv_conn_set_session(srv_conn *c, const char *id)
{
    if (id && eng_session_id_valid(id))
        snprintf(c->session, sizeof c->session, "%.*s", (int)sizeof c->session - 1, id);
}

static enum MHD_Result queue(srv_conn *c)
{
    if (c->session[0])
        MHD_add_response_header(c->resp, "X-Session-Id", c->session);
    enum MHD_Result rc = MHD_queue_response(c->mc, c->status, c->resp);
    srv_metrics_count_status(&c->srv->metrics, c->status);
    MHD_destroy_response(c->resp);
    c->resp = NULL;
    c->queued = 1;
    return rc;
}

/* Remembers what the request log needs: method, printable path, start. */
static void conn_note(srv_conn *c, const char *method, const char *url)
{
    c->t_accept_ns = eng_now_mono_ns();
    snprintf(c->method, sizeof c->method, "%s", method);
    size_t n = strcspn(url, "?"), i;
    if (n >= sizeof c->path)
        n = sizeof c->path - 1;
    for (i = 0; i < n; i++)
        c->path[i] = url[i] > 0x20 && url[i] < 0x7f && url[i] != '"' && url[i] != '\\' ? url[i] : '?';
    c->path[i] = '\0';
    c->hdr_session = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, "X-Session-Id");
}

static int is_probe(const srv_conn *c)
{
    return c->route && c->route->body == SRV_BODY_NONE && !c->route->auth;
}

/* One request log line, when the request is over. */
static void conn_log(const srv_conn *c, enum MHD_RequestTerminationCode toe)
{
    const srv_config *cfg = c->srv->cfg;
    /* Probes are logged only with --verbose, whatever they answer: /ready's
     * 503 while loading or draining is the expected answer, not news. */
    if (cfg->quiet || (is_probe(c) && !cfg->verbose))
        return;
    srv_log_req r = {c->method, c->path, c->queued ? c->status : 499u,
                     (double)(eng_now_mono_ns() - c->t_accept_ns) * 1e-6, -1, -1, c->session, c->streaming,
                     c->gen.has_seed, c->gen.seed, c->status >= 400 ? c->why : "", c->tier};
    if (c->gen.usage_known) {
        r.prompt_tokens = c->gen.n_prompt;
        r.completion_tokens = c->gen.n_gen;
    }
    if (c->streaming && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !c->out_done)
        r.status = 499u; /* the stream was cut before its end */
    srv_log_request(&c->srv->log, &r);
}

/* Checks made before the body is read; replies and returns 1 on failure. */
static int early_checks(srv_conn *c, const char *method, const char *url)
{
    srv_server *s = c->srv;
    int code = SSMD_OK;
    c->route = srv_route_match(method, url, c->path_id, sizeof c->path_id, &code);
    if (!c->route) {
        srv_reply_error(c, code, code == SSMD_ENOMETHOD ? "method not allowed on this path" : "no such route");
        if (code == SSMD_ENOMETHOD) {
            char allow[64];
            srv_route_allow(url, allow, sizeof allow);
            MHD_add_response_header(c->resp, MHD_HTTP_HEADER_ALLOW, allow);
        }
        return 1;
    }
    const char *given;
    if (c->route->auth && s->cfg->api_key && *s->cfg->api_key &&
        (!header_is(c->mc, MHD_HTTP_HEADER_AUTHORIZATION, "Bearer ", &given) ||
         !key_ok(given, s->cfg->api_key))) {
        srv_reply_error(c, SSMD_EUNAUTH, NULL);
        MHD_add_response_header(c->resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
        return 1;
    }
    if (strstr(c->route->pattern, "{id}")) {
        srv_conn_set_session(c, c->path_id);
        if (c->hdr_session && strcmp(c->hdr_session, c->path_id) != 0) {
            srv_reply_error(c, SSMD_EINVAL, "the X-Session-Id header names another session than the path");
            return 1;
        }
    }
    if (c->route->needs_model && (s->draining || !s->loaded)) {
        srv_reply_error(c, SSMD_EDRAINING, s->draining ? "server is shutting down" : "model is loading");
        return 1;
    }
    c->body_limit = (size_t)s->cfg->max_body;
    if (c->route->body == SRV_BODY_STATE && s->info)
        c->body_limit = srv_state_encoded_bytes(s->info->state_bytes);
    const char *cl = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || end == cl || n > c->body_limit) {
            srv_reply_error(c, SSMD_ETOOLARGE, "request body is larger than the limit");
            return 1;
        }
    }
    return 0;
}

enum MHD_Result srv_on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    srv_server *s = cls;
    srv_conn *c = *con_cls;
    (void)version;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c)
            return MHD_NO;
        c->srv = s;
        c->mc = mc;
        c->refs = 1;
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->n_conns++;
        *con_cls = c;
        conn_note(c, method, url);
        if (early_checks(c, method, url))
            return queue(c);
        return MHD_YES;
    }
    if (c->abort)
        return MHD_NO;
    if (*upload_size) {
        if (c->queued)
            ;
        else if (!c->body_too_large && c->body.len + *upload_size <= c->body_limit)
            srv_buf_add(&c->body, upload, *upload_size);
        else
            c->body_too_large = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    if (c->queued)
        return MHD_YES;
    if (!c->started) {
        c->started = 1;
        if (c->body_too_large)
            srv_reply_error(c, SSMD_ETOOLARGE, "request body is larger than the limit");
        else
            c->route->start(c);
    }
    if (c->resp)
        return queue(c);
    if (!c->suspended) { /* resumed without a reply: wait again */
        c->suspended = 1;
        MHD_suspend_connection(mc);
    }
    return MHD_YES;
}

void srv_on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    srv_conn *c = *con_cls;
    (void)cls;
    (void)mc;
    if (!c)
        return;
    *con_cls = NULL;
    c->closed = 1;
    c->suspended = 0;
    conn_log(c, toe);
    if (c->req)
        conn_cancel(c);
    srv_conn_watch_stop(c);
    srv_conn_unref(c);
}
