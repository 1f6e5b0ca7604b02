/* server.c - the server's life: libmicrohttpd driven from the libuv loop
 * (its epoll fd in a uv_poll, its timeouts in a uv_timer), engine events
 * delivered through a uv_async to the waiting connections, start-up, the
 * SIGTERM drain and shutdown.
 *
 * Loop thread only.  Never blocks on the engine: the only engine calls are
 * the queue operations of scheduler.h (and eng_sched_stop at shutdown).
 */
#include "kernels/cpu/cpu_kernels.h"
#include "server/srv.h"
#include "server/store.h"

#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- driving MHD from libuv ---- */

static void shutdown_now(srv_server *s);

static void check_drain(srv_server *s)
{
    if (s->draining && !s->stopping && s->n_inflight == 0 && s->n_conns == 0)
        shutdown_now(s);
}

static void on_mhd_timer(uv_timer_t *t);

static void mhd_run(srv_server *s)
{
    if (!s->mhd || s->stopping)
        return;
    MHD_run(s->mhd);
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(s->mhd, &ms) == MHD_YES)
        uv_timer_start(&s->mhd_timer, on_mhd_timer, (uint64_t)ms, 0);
    else
        uv_timer_stop(&s->mhd_timer);
    check_drain(s);
}

static void on_mhd_timer(uv_timer_t *t) { mhd_run(t->data); }

/* MHD's unescape callback that leaves the path as the client sent it:
 * percent-decoding would let "%00" end the path early and "%3F" add a '?'
 * (so ".../{id}%00/state" reached GET /v1/sessions/{id}).  Routes and ids
 * are plain ASCII, so an escaped path simply matches no route (404). */
static size_t unescape_none(void *cls, struct MHD_Connection *mc, char *s)
{
    (void)cls;
    (void)mc;
    return strlen(s);
}

static void on_mhd_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    mhd_run(p->data);
}

/* The start-up summary: what runs, how much memory it holds, where. */
static void log_ready(srv_server *s)
{
    const srv_config *cfg = s->cfg;
    const eng_model_info *in = s->info;
    long threads = cfg->threads;
    if (threads == 0) {
        threads = sysconf(_SC_NPROCESSORS_ONLN);
        if (threads < 1)
            threads = 1;
    }
    double load_s = (double)(eng_now_mono_ns() - s->t_load_ns) * 1e-9;
    int slots = (int)(cfg->max_sessions + cfg->max_batch);
    char wmb[32], pmb[32], msg[512];
    srv_log_mb(wmb, sizeof wmb, in->weight_bytes);
    srv_log_mb(pmb, sizeof pmb, in->pool_bytes);
    snprintf(msg, sizeof msg, "loaded in %.2f s", load_s);
    srv_log_event(&s->log, "info", "loaded", json_pack("{s:f}", "load_s", load_s), msg);
    snprintf(msg, sizeof msg, "model %s (%s): %s, %d layers, d_model %d, %.2fM parameters, %s, vocab %d",
             s->model_name, cfg->model, in->model_type, in->n_layer, in->d_model, (double)in->n_params * 1e-6,
             in->dtype, in->n_vocab);
    srv_log_event(&s->log, "info", "model",
                  json_pack("{s:s, s:s, s:s, s:i, s:i, s:I, s:s, s:i}", "model", s->model_name, "model_dir",
                            cfg->model, "architecture", in->model_type, "n_layer", in->n_layer, "d_model",
                            in->d_model, "n_params", (json_int_t)in->n_params, "dtype", in->dtype, "n_vocab",
                            in->n_vocab),
                  msg);
    eng_sched_stats st;
    eng_sched_get_stats(s->sched, &st);
    snprintf(msg, sizeof msg,
             "backend %s, %ld threads, max batch %ld, max sessions %ld, max step tokens %d, prefill time "
             "ratio %g, numerics %s, device %ld",
             cfg->backend, threads, cfg->max_batch, cfg->max_sessions, st.max_step_tokens, cfg->prefill_time_ratio,
             cfg->numerics, cfg->device);
    srv_log_event(&s->log, "info", "engine",
                  json_pack("{s:s, s:i, s:i, s:i, s:f, s:i, s:s, s:i}", "backend", cfg->backend, "threads",
                            (int)threads, "max_batch", (int)cfg->max_batch, "max_step_tokens", st.max_step_tokens,
                            "prefill_time_ratio", cfg->prefill_time_ratio,
                            "max_sessions", (int)cfg->max_sessions, "numerics", cfg->numerics, "device",
                            (int)cfg->device),
                  msg);
    if (!strcmp(cfg->backend, "cpu")) { /* which SIMD level the cpu kernels run, and why */
        cpu_kernels_describe(msg, sizeof msg);
        srv_log_msg(&s->log, "info", "cpu_kernels", "cpu kernels: %s", msg);
    }
    snprintf(msg, sizeof msg, "memory: weights %s, state pool %s (%d slots x %zu bytes)", wmb, pmb, slots,
             in->state_bytes);
    srv_log_event(&s->log, "info", "memory",
                  json_pack("{s:I, s:I, s:i, s:I}", "weight_bytes", (json_int_t)in->weight_bytes, "pool_bytes",
                            (json_int_t)in->pool_bytes, "slots", slots, "state_bytes", (json_int_t)in->state_bytes),
                  msg);
    /* sessions per GB: what a deployment sizes memory by */
    double per_gb = in->state_bytes ? 1e9 / (double)in->state_bytes : 0;
    snprintf(msg, sizeof msg,
             "sessions: %ld in the state pool, up to %d more in host memory (--host-session-memory); "
             "%.0f sessions per GB of state",
             cfg->max_sessions, st.host_capacity, per_gb);
    srv_log_event(&s->log, "info", "sessions",
                  json_pack("{s:i, s:i, s:f}", "pool_sessions", (int)cfg->max_sessions, "host_sessions",
                            st.host_capacity, "sessions_per_gb", per_gb),
                  msg);
    const char *h = cfg->host;
    int v6 = strchr(h, ':') != NULL;
    char url[300];
    if (!in->tok)
        srv_log_msg(&s->log, "warn", "no_tokenizer",
                    "the model has no tokenizer.json: text prompts and chat get 400; send prompts as token ids");
    snprintf(url, sizeof url, "http://%s%s%s:%ld", v6 ? "[" : "", h, v6 ? "]" : "", cfg->port);
    snprintf(msg, sizeof msg, "ready on %s", url);
    srv_log_event(&s->log, "info", "ready", json_pack("{s:s}", "url", url), msg);
}

static void on_loaded(srv_server *s)
{
    s->info = eng_sched_model_info(s->sched);
    s->loaded = 1;
    uv_timer_stop(&s->load_timer);
    free(s->eos_text);
    s->eos_text = NULL;
    if (s->info->tok && s->info->eos_id >= 0) {
        int32_t id = s->info->eos_id;
        size_t n;
        if (eng_tokenizer_decode(s->info->tok, &id, 1, 0, &s->eos_text, &n) != SSMD_OK)
            s->eos_text = NULL;
    }
    log_ready(s);
}

/* A load failure, with what to try next. */
static void log_load_failed(srv_server *s, const ssmd_err *e)
{
    char cfgpath[1024];
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", s->cfg->model);
    const char *hint = access(cfgpath, R_OK) != 0
                           ? "pass --model DIR with a Hugging Face Mamba model (config.json, model.safetensors, "
                             "tokenizer.json)"
                           : "check that --model names a complete Mamba-1 or S4 model directory; "
                             "see README.md, 'Serving a Hugging Face Mamba model'";
    srv_log_msg(&s->log, "error", "load_failed", "cannot load the model from %s: %s; %s", s->cfg->model, e->msg,
                hint);
}

static void on_load_timer(uv_timer_t *t)
{
    srv_server *s = t->data;
    if (!s->loaded)
        srv_log_msg(&s->log, "info", "loading", "still loading %s (%.0f s)", s->cfg->model,
                    (double)(eng_now_mono_ns() - s->t_load_ns) * 1e-9);
}

void srv_deliver_event(srv_server *s, eng_event *e)
{
    srv_conn *c = e->req->udata;
    int final = e->kind == ENG_EV_DONE || e->kind == ENG_EV_RESULT || e->kind == ENG_EV_ERROR;
    if (final && e->req->session[0] && e->kind != ENG_EV_ERROR)
        c->tier = c->store_loaded ? "store" : e->req->from_host ? "host" : "pool";
    if (!c->closed && !c->abort)
        c->route->on_event(c, e);
    if (final) {
        eng_request_free(e->req);
        c->req = NULL;
        if (c->is_completion) {
            s->n_inflight--;
            c->is_completion = 0;
        }
        srv_conn_watch_stop(c);
    }
    if (c->suspended && (c->resp || c->abort || (c->streaming && (c->out.len > c->out_off || c->out_done))))
        srv_conn_resume(c);
    if (final)
        srv_conn_unref(c);
    eng_event_free(e);
}

static void dispatch_events(srv_server *s)
{
    if (!s->sched)
        return;
    eng_event *e = eng_sched_take_events(s->sched);
    while (e) {
        eng_event *next = e->next;
        e->next = NULL;
        if (!e->req) {
            if (e->kind == ENG_EV_LOADED) {
                on_loaded(s);
            } else if (e->kind == ENG_EV_LOAD_FAILED) {
                log_load_failed(s, &e->err);
                s->exit_code = 1;
                if (!s->stopping)
                    shutdown_now(s);
            }
            eng_event_free(e);
        } else if (!s->store || !srv_store_on_event(s->store, e->req->udata, e)) {
            srv_deliver_event(s, e);
        }
        e = next;
    }
}

static void on_async(uv_async_t *a)
{
    srv_server *s = a->data;
    dispatch_events(s);
    mhd_run(s);
}

static void notify_loop(void *arg) { uv_async_send(&((srv_server *)arg)->async); }

void srv_server_wake(srv_server *s)
{
    if (!s->stopping)
        uv_async_send(&s->async);
}

/* Drain's last act, with the engine stopped: close the listening socket
 * (so a balancer's next attempt is refused at once and goes elsewhere),
 * then hand the sessions to the store and/or the peer. */
static void hand_off_sessions(srv_server *s)
{
    if (!s->draining || !s->loaded || (!s->store && !*s->cfg->drain_peer))
        return;
    /* Stop HTTP altogether: the listening socket and every idle keep-alive
     * connection (a balancer would send the handoff's own PUT back here
     * over one of those, to a loop that cannot answer while it hands off). */
    uv_poll_stop(&s->mhd_poll);
    uv_timer_stop(&s->mhd_timer);
    MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
    if (s->store) {
        int n = srv_store_drain(s->store, s->sched);
        srv_log_msg(&s->log, "info", "drain_store", "wrote %d sessions missing from the session store", n);
    }
    if (*s->cfg->drain_peer)
        srv_handoff_peer(s);
}

static void shutdown_now(srv_server *s)
{
    if (s->stopping)
        return;
    if (s->sched)
        eng_sched_stop(s->sched); /* no notify after this */
    s->engine_stopped = 1;
    dispatch_events(s);
    hand_off_sessions(s);
    srv_store_close(s->store); /* held events are answered now */
    s->store = NULL;
    for (srv_conn *c = s->conns; c; c = c->next) {
        if (!c->queued && !c->closed)
            c->abort = 1;
        if (c->streaming)
            c->out_done = 1;
        srv_conn_resume(c);
    }
    if (s->mhd)
        MHD_run(s->mhd);
    s->stopping = 1;
    uv_close((uv_handle_t *)&s->async, NULL);
    uv_close((uv_handle_t *)&s->mhd_poll, NULL);
    uv_close((uv_handle_t *)&s->mhd_timer, NULL);
    uv_close((uv_handle_t *)&s->drain_timer, NULL);
    uv_close((uv_handle_t *)&s->load_timer, NULL);
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
}

static void on_drain_timeout(uv_timer_t *t);

/* Cancels every running request and stops after grace_ms: a canceled
 * stream ends with its error event and [DONE], and the loop keeps running
 * long enough to write those last bytes, so clients see a complete
 * response instead of a cut connection. */
static void force_stop(srv_server *s, uint64_t grace_ms)
{
    s->force = 1;
    for (srv_conn *c = s->conns; c; c = c->next)
        if (c->req)
            eng_sched_cancel(s->sched, c->req);
    uv_timer_start(&s->drain_timer, on_drain_timeout, grace_ms, 0);
}

static void on_drain_timeout(uv_timer_t *t)
{
    srv_server *s = t->data;
    if (!s->force) {
        srv_log_msg(&s->log, "warn", "drain_timeout", "drain timeout: canceling %d running requests", s->n_inflight);
        force_stop(s, 1000);
        return;
    }
    shutdown_now(s);
}

void srv_server_drain(srv_server *s)
{
    if (s->stopping)
        return;
    if (s->draining && !s->force) {
        srv_log_msg(&s->log, "warn", "stopping", "second signal: canceling %d running requests and stopping now",
                    s->n_inflight);
        force_stop(s, 300);
        return;
    }
    if (s->draining) { /* a third: no more grace */
        shutdown_now(s);
        return;
    }
    s->draining = 1;
    srv_log_msg(&s->log, "info", "draining", "draining (%d running, up to %g s; a second Ctrl-C or SIGTERM stops at once)",
                s->n_inflight, s->cfg->drain_timeout);
    uv_timer_start(&s->drain_timer, on_drain_timeout, (uint64_t)(s->cfg->drain_timeout * 1000), 0);
    check_drain(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    srv_server_drain(h->data);
}

int srv_server_start(srv_server *s, const srv_config *cfg, uv_loop_t *loop, ssmd_err *err)
{
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->loop = loop;
    s->log.out = stderr;
    s->log.format = srv_log_format_parse(cfg->log_format);
    srv_metrics_init(&s->metrics);
    const char *name = *cfg->model_name ? cfg->model_name : cfg->model;
    if (!*cfg->model_name) {
        size_t n = strlen(name);
        while (n > 1 && name[n - 1] == '/')
            n--;
        const char *slash = memrchr(name, '/', n);
        const char *base = slash ? slash + 1 : name;
        snprintf(s->model_name, sizeof s->model_name, "%.*s", (int)(n - (size_t)(base - name)), base);
    } else {
        snprintf(s->model_name, sizeof s->model_name, "%s", name);
    }

    /* The chat template is read once here, before any request; a template
     * outside the interpreter's subset is reported once and replaced by the
     * default one. */
    char why[300];
    if (srv_chat_load(&s->chat, cfg->model, why, sizeof why))
        srv_log_msg(&s->log, "info", "chat_template", "chat template: the model's (tokenizer_config.json)");
    else
        srv_log_msg(&s->log, "info", "chat_template", "chat template: the default one (%s)", why);
    s->chat.max_output = (size_t)cfg->max_body + ((size_t)1 << 20);

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, cfg->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)cfg->port);
    } else if (inet_pton(AF_INET6, cfg->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        srv_chat_free(&s->chat);
        return ssmd_err_set(err, SSMD_EINVAL, "--host '%s' is not an IPv4 or IPv6 address", cfg->host);
    }
    s->mhd = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, srv_on_request, s,
                              MHD_OPTION_NOTIFY_COMPLETED, srv_on_completed, s,
                              MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->conn_timeout,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                              MHD_OPTION_END);
    if (!s->mhd) {
        srv_chat_free(&s->chat);
        return ssmd_err_set(err, SSMD_EIO,
                            "cannot listen on %s:%ld (address in use?): pass --port N for another port, "
                            "or stop what listens there",
                            cfg->host, cfg->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!di) {
        MHD_stop_daemon(s->mhd);
        s->mhd = NULL;
        srv_chat_free(&s->chat);
        return ssmd_err_set(err, SSMD_EINTERNAL, "libmicrohttpd has no epoll support");
    }
    uv_poll_init(loop, &s->mhd_poll, di->epoll_fd);
    s->mhd_poll.data = s;
    uv_poll_start(&s->mhd_poll, UV_READABLE, on_mhd_poll);
    uv_timer_init(loop, &s->mhd_timer);
    s->mhd_timer.data = s;
    uv_timer_init(loop, &s->drain_timer);
    s->drain_timer.data = s;
    uv_timer_init(loop, &s->load_timer);
    s->load_timer.data = s;
    uv_async_init(loop, &s->async, on_async);
    s->async.data = s;
    uv_signal_init(loop, &s->sig_term);
    s->sig_term.data = s;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_init(loop, &s->sig_int);
    s->sig_int.data = s;
    uv_signal_start(&s->sig_int, on_signal, SIGINT);

    if (*cfg->session_store && srv_store_open(s, cfg->session_store, &s->store, err) != SSMD_OK) {
        shutdown_now(s);
        return err->code;
    }
    eng_sched_opts o;
    memset(&o, 0, sizeof o);
    o.model_dir = cfg->model;
    srv_config_model_opts(cfg, &o.model);
    o.max_batch = (int)cfg->max_batch;
    o.max_sessions = (int)cfg->max_sessions;
    o.session_ttl_s = cfg->session_ttl;
    o.max_step_tokens = (int)cfg->max_step_tokens;
    o.prefill_time_ratio = cfg->prefill_time_ratio;
    o.host_session_bytes = (size_t)cfg->host_session_memory;
    s->t_load_ns = eng_now_mono_ns();
    srv_log_msg(&s->log, "info", "loading", "loading %s (backend %s) ...", cfg->model, cfg->backend);
    int rc = eng_sched_start(&o, notify_loop, s, &s->sched, err);
    if (rc != SSMD_OK) {
        shutdown_now(s);
        return rc;
    }
    uv_timer_start(&s->load_timer, on_load_timer, 5000, 5000);
    mhd_run(s);
    return SSMD_OK;
}

void srv_server_close(srv_server *s)
{
    if (!s->mhd && !s->sched)
        return;
    if (!s->stopping)
        shutdown_now(s);
    uv_run(s->loop, UV_RUN_DEFAULT); /* close callbacks */
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
    uv_run(s->loop, UV_RUN_DEFAULT); /* watchers closed by MHD's completions */
    eng_sched_destroy(s->sched);
    s->sched = NULL;
    free(s->eos_text);
    s->eos_text = NULL;
    srv_chat_free(&s->chat);
}
