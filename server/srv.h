/* srv.h - the HTTP server's shared types: the server (libuv loop +
 * libmicrohttpd daemon + engine scheduler), one HTTP request in flight
 * (srv_conn), the route table's row, and the reply helpers routes use.
 *
 * Everything here belongs to the loop thread.  The engine is reached only
 * through eng_sched_* (queues); routes never block and never touch tensors.
 */
#ifndef SSMD_SRV_H
#define SSMD_SRV_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdint.h>
#include <uv.h>

#include "engine/request.h"
#include "engine/scheduler.h"
#include "server/chat.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/options.h"
#include "server/parse.h"

typedef struct srv_server srv_server;
typedef struct srv_conn srv_conn;

typedef struct srv_buf {
    char *p;
    size_t len, cap;
} srv_buf;

void srv_buf_add(srv_buf *b, const void *data, size_t n); /* aborts when out of memory */
void srv_buf_free(srv_buf *b);

typedef enum srv_body { SRV_BODY_NONE = 0, SRV_BODY_JSON, SRV_BODY_STATE } srv_body;

typedef struct srv_route {
    const char *method;
    const char *pattern;   /* "{id}" matches one path segment */
    srv_body body;
    int auth;              /* requires the API key when one is set */
    int needs_model;       /* 503 while loading or draining */
    /* The body is complete: reply (srv_reply_*) or srv_submit a request. */
    void (*start)(srv_conn *c);
    /* One engine event for c->req (never a final one after c closed). */
    void (*on_event)(srv_conn *c, const eng_event *e);
} srv_route;

/* What a completion request keeps between its events. */
/* One choice of a completion as it arrives (n of them for "n": n). */
typedef struct srv_choice {
    srv_buf text;          /* non-stream: all text; stream: unsent UTF-8 tail */
    int32_t *tokens;       /* (n_tokens) generated ids */
    eng_logprobs *lps;     /* (n_tokens) when logprobs > 0 */
    int n_tokens, cap_tokens;
    int sent_role;         /* chat stream: the first delta carried the role */
    eng_finish finish;
    char *echo;            /* its prompt's text to echo (malloc'ed) or NULL */
} srv_choice;

typedef struct srv_gen {
    int is_chat, stream, echo, include_usage, logprobs;
    uint64_t seed;         /* the sampler's seed, given or drawn (choice k: seed + k) */
    int has_seed;          /* a completion got as far as choosing it (for the log) */
    char id[48];
    int64_t created;
    srv_choice *choices;   /* (n_choices) xcalloc'ed: n per prompt, prompt after prompt */
    int n_choices;
    int n_prompt, n_gen;
    int usage_known;       /* n_prompt/n_gen came from the engine */
} srv_gen;

/* Frees what g holds (route_complete.c).  Loop thread. */
void srv_gen_free(srv_gen *g);

struct srv_conn {
    srv_server *srv;
    struct MHD_Connection *mc;
    srv_conn *prev, *next;   /* srv->conns */
    const srv_route *route;
    char path_id[264];       /* the {id} segment, or the {name} rest of the path */
    char method[8];          /* for the request log */
    char path[160];          /* printable ASCII, query string cut */
    int64_t t_accept_ns;
    const char *hdr_session; /* X-Session-Id request header (MHD's copy) or NULL */
    char session[72];        /* the session the request names: sent back as X-Session-Id */
    int refs;                /* MHD request, engine request, fd watcher, stream response */
    int closed;              /* MHD completed the request */
    int suspended;
    int started;             /* route->start ran */
    int abort;               /* client gone: close without a response */
    int64_t t_start_ns, t_first_ns, t_last_ns;
    srv_buf body;
    size_t body_limit;
    int body_too_large;
    struct MHD_Response *resp; /* ready to queue */
    unsigned status;
    char why[256];           /* an error reply's message, for the log line */
    int queued;
    eng_request *req;        /* owned by the engine until its final event */
    int is_completion;       /* counted in srv->n_inflight */
    uv_poll_t *watch;        /* client socket, while a request runs */
    srv_gen gen;
    /* session store (store.c): while it works for this request, the engine
     * request or its final event waits here instead of in the engine */
    int store_tries;         /* loads from the store tried for this request */
    int store_loaded;        /* its session was loaded from the store */
    const char *tier;        /* the session's tier that served it (log): "pool", "host", "store" */
    eng_request *store_held; /* our request, back from the engine, waiting for a load */
    eng_request *store_aux;  /* the store's own import request, in the engine */
    eng_event *store_ev;     /* an event held until the store answers */
    /* streaming */
    int streaming;
    srv_buf out;
    size_t out_off;
    int out_done;
};

struct srv_server {
    const srv_config *cfg;
    uv_loop_t *loop;
    uv_async_t async;
    uv_poll_t mhd_poll;
    uv_timer_t mhd_timer;
    uv_timer_t drain_timer;
    uv_signal_t sig_term, sig_int;
    struct MHD_Daemon *mhd;
    eng_sched *sched;
    const eng_model_info *info; /* set once loaded */
    char model_name[256];
    char *eos_text;             /* for the default chat template */
    srv_chat chat;              /* the model's chat template (read at start-up) */
    srv_metrics metrics;
    srv_conn *conns;            /* every live srv_conn */
    int n_conns;
    int n_inflight;             /* completions given to the engine, not final yet */
    srv_log log;
    struct srv_store *store;    /* --session-store, or NULL */
    int64_t t_load_ns;          /* when the engine thread began loading */
    uv_timer_t load_timer;      /* "still loading" progress lines */
    int loaded, draining, stopping, force;
    int engine_stopped;         /* eng_sched_stop ran: nothing more goes to the engine */
    int exit_code;
};

/* Starts listening and the engine thread (which loads the model).  Returns
 * SSMD_OK or an error (port in use, ...) with nothing left running. */
int srv_server_start(srv_server *s, const srv_config *cfg, uv_loop_t *loop, ssmd_err *err);
/* After uv_run returned: stops the daemon and the engine, frees all. */
void srv_server_close(srv_server *s);
/* Begins the drain that SIGTERM starts. */
void srv_server_drain(srv_server *s);

/* ---- for routes (loop thread, inside route->start or ->on_event) ---- */
void srv_reply_json(srv_conn *c, unsigned status, json_t *obj);   /* steals obj */
/* Status, type and code from the error table; the message is kept for the
 * request log line too.  code_name (or NULL) replaces the table's "code"
 * where OpenAI has its own (model_not_found). */
void srv_reply_error(srv_conn *c, int code, const char *msg);
void srv_reply_error_code(srv_conn *c, int code, const char *code_name, const char *msg);
void srv_reply_bytes(srv_conn *c, unsigned status, const char *ctype, void *data, size_t len); /* takes data (malloc'ed) */
json_t *srv_error_body(int code, const char *msg);
/* Hands r to the engine; c waits (suspended) for its events. */
void srv_submit(srv_conn *c, eng_request *r, int is_completion);
/* Switches c to a Server-Sent Events response; data goes out as it is
 * appended with srv_stream_write; srv_stream_end finishes it. */
void srv_stream_start(srv_conn *c);
void srv_stream_write(srv_conn *c, const char *data, size_t len);
void srv_stream_end(srv_conn *c);
/* Records the session a request names (a valid id, else nothing), so its
 * response carries X-Session-Id. */
void srv_conn_set_session(srv_conn *c, const char *id);
/* Parses c's JSON body; on failure replies 400 and returns NULL. */
json_t *srv_body_json(srv_conn *c);

/* Runs e's delivery as it arrived from the engine (route callback, final
 * bookkeeping, resume) and frees it; the store calls it for events it held. */
void srv_deliver_event(srv_server *s, eng_event *e);

/* Lets MHD run soon (from a callback outside the engine's events, so a
 * connection resumed there is served).  Loop thread. */
void srv_server_wake(srv_server *s);

/* Drain: PUTs every session's state to --drain-peer (handoff.c).  Only
 * after the engine stopped; blocks for at most a few seconds. */
void srv_handoff_peer(srv_server *s);

/* A STATE_IMPORT request of session id holding a copy of a decoded
 * export (routes.c; the session store's loads use it too). */
struct srv_state_meta;
eng_request *srv_import_request(const char *id, const struct srv_state_meta *m, const unsigned char *state);

/* Route handlers (route_complete.c, routes.c). */
void srv_completions_start(srv_conn *c);
void srv_chat_start(srv_conn *c);
void srv_completion_on_event(srv_conn *c, const eng_event *e);
/* A JSON string of len bytes with invalid UTF-8 replaced by U+FFFD. */
json_t *srv_json_text(const char *s, size_t len);

extern const srv_route srv_routes[];
extern const int srv_n_routes;

/* Route lookup: returns the row, or NULL with *code SSMD_ENOTFOUND /
 * SSMD_ENOMETHOD; fills id (cap bytes) with the {id} segment. */
const srv_route *srv_route_match(const char *method, const char *url, char *id, size_t cap, int *code);

/* The methods url accepts, as an Allow header value ("GET, DELETE"). */
void srv_route_allow(const char *url, char *out, size_t cap);

/* Connection plumbing shared by http.c and server.c (loop thread). */
void srv_conn_unref(srv_conn *c);      /* frees c when the last holder lets go */
void srv_conn_watch_stop(srv_conn *c); /* stops watching the client socket */
void srv_conn_resume(srv_conn *c);     /* resumes a suspended, still open connection */
enum MHD_Result srv_on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls);
void srv_on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe);

/* Entry point of `ssmd serve`; returns the process exit code. */
int srv_serve_main(int argc, char **argv);

#endif
