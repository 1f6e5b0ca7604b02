/* request.h - the plain structs the loop thread and the engine thread
 * exchange: a request goes to the engine, events come back.
 *
 * Ownership: the loop allocates a request and hands it to the scheduler; the
 * engine owns it until it posts the request's final event (DONE, RESULT or
 * ERROR), after which it never touches it again and the loop frees it
 * (eng_request_free).  Only `canceled` is written by the loop while the
 * engine owns the request.  No JSON, no HTTP and no tensors in here.
 */
#ifndef SSMD_REQUEST_H
#define SSMD_REQUEST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"
#include "engine/sampler.h"
#include "engine/session.h"
#include "engine/text/stop.h"

typedef enum eng_op {
    ENG_OP_COMPLETE = 0,    /* generate tokens, in a session or a fresh state */
    ENG_OP_SESSION_CREATE,  /* -> RESULT with info; `session` = a chosen id or "" */
    ENG_OP_SESSION_INFO,    /* -> RESULT with info */
    ENG_OP_SESSION_DELETE,  /* -> RESULT */
    ENG_OP_SESSION_FORK,    /* -> RESULT with the new session's info */
    ENG_OP_STATE_EXPORT,    /* -> RESULT with info and the slot bytes in blob */
    ENG_OP_STATE_IMPORT,    /* blob -> the session's slot (created when missing); RESULT with info */
} eng_op;

typedef enum eng_finish {
    ENG_FINISH_NONE = 0,
    ENG_FINISH_STOP,    /* EOS or a stop string */
    ENG_FINISH_LENGTH,  /* max_tokens reached */
} eng_finish;

/* expect_gen's value for "deleted on another replica": the session's copy
 * here is removed and the request answered as for an unknown session.
 * Version tags never take this value. */
#define ENG_GEN_DELETED UINT64_MAX

typedef struct eng_request {
    struct eng_request *next;            /* queue link (whoever queues it) */
    eng_op op;
    char session[ENG_SESSION_ID_HEX + 1]; /* "" = none */

    /* ENG_OP_COMPLETE */
    int32_t *prompt;                     /* (n_prompt) malloc'ed, owned */
    int n_prompt;                        /* all the prompts' tokens */
    /* Several prompts (OpenAI's list form): prompt holds n_prompts of them
     * back to back, prompt_lens[g] tokens each; each is prefilled once and
     * gives n_choices choices (choice g * n_choices + k).  n_prompts <= 1:
     * one prompt, prompt_lens NULL.  Never on a session. */
    int n_prompts;
    int *prompt_lens;                    /* (n_prompts) malloc'ed, owned, or NULL */
    int max_tokens;                      /* >= 0 */
    int ignore_eos;
    /* On a session: the prompt is the whole conversation (a chat request),
     * not only what is new.  The engine checks that it starts with the
     * session's history (SSMD_ECONFLICT saying what differs if not) and
     * prefills only the rest. */
    int prompt_is_history;
    /* Choices sampled from one prefill of each prompt (>= 1; 1 on a
     * session): the state after the prompt is copied n ways, and choice i
     * (over all prompts) samples with seed sampling.seed + i (wrapping), so
     * it equals a request of its own with that seed. */
    int n_choices;
    eng_sampling sampling;               /* its json_schema is json_schema below */
    struct eng_json_schema *json_schema; /* response_format json_schema, compiled, owned; or NULL */
    int n_stop;
    char stop[ENG_STOP_MAX][ENG_STOP_LEN_MAX + 1];

    /* ENG_OP_STATE_IMPORT: raw slot bytes (malloc'ed, owned) and the session
     * fields exported with them */
    unsigned char *blob;
    size_t blob_bytes;
    int32_t blob_pending;
    int64_t blob_n_tokens;
    uint64_t blob_gen;                   /* the version tag to keep; 0 = a new one */
    eng_session_history blob_hist;       /* known = 0: the export carried none */

    /* Session store support (server/store.c): a nonzero expect_gen makes a
     * request on a session fail with SSMD_ESTALE unless the session's
     * version tag equals it (the copy held here is older than the store's);
     * want_state makes the final event of a request that changed a session
     * carry that session's info and state bytes, taken at that moment. */
    uint64_t expect_gen;                 /* or ENG_GEN_DELETED: drop the copy held here */
    int want_state;

    int64_t submit_ns;    /* eng_now_mono_ns() at eng_sched_submit (queue wait) */
    int from_host;        /* set by the engine: its session came back from host memory */
    struct {              /* the engine's own bookkeeping; the loop never reads it */
        int choices_left; /* choices not ended yet */
        int n_gen;        /* tokens generated over the ended choices */
        int failed;       /* a choice ended with an error: the final event is err */
        ssmd_err err;
    } run;
    atomic_int canceled;  /* set by the loop: stop within one decode step */
    void *udata;          /* the loop's own pointer; the engine never reads it */
} eng_request;

typedef enum eng_event_kind {
    ENG_EV_TOKEN = 0,  /* one generated token and the text it released */
    ENG_EV_DONE,       /* final: a completion finished (finish, usage, text tail) */
    ENG_EV_RESULT,     /* final: a session op succeeded */
    ENG_EV_ERROR,      /* final: failed or canceled (err) */
    ENG_EV_LOADED,     /* req == NULL: the model is loaded, admitting */
    ENG_EV_LOAD_FAILED, /* req == NULL: loading failed (err); the thread ended */
    ENG_EV_CHOICE_END  /* one choice of an n > 1 request finished (choice, finish, text tail);
                        * the last choice to finish gets the DONE instead */
} eng_event_kind;

typedef struct eng_session_info {
    char id[ENG_SESSION_ID_HEX + 1];
    int64_t n_tokens;
    int32_t pending;
    uint64_t gen;
    double created_s;
    double last_used_s;
    eng_session_history hist;
} eng_session_info;

typedef struct eng_event {
    struct eng_event *next;
    eng_request *req;
    eng_event_kind kind;
    /* TOKEN */
    int32_t token;
    uint64_t step;        /* the engine iteration that produced it (1, 2, ...) */
    /* TOKEN, CHOICE_END, DONE: which choice (0 .. n_choices - 1) */
    int choice;
    int has_logprobs;
    eng_logprobs lp;
    /* TOKEN, DONE: released text (malloc'ed, owned by the event; may be NULL) */
    char *text;
    size_t text_len;
    /* CHOICE_END, DONE */
    eng_finish finish;
    int n_prompt_tokens;  /* DONE: the request's prompt tokens (once, whatever n_choices) */
    int n_gen_tokens;     /* DONE: over all choices; CHOICE_END: this choice's */
    /* RESULT (and any final event of a want_state request) */
    eng_session_info info;
    unsigned char *blob;  /* STATE_EXPORT, want_state: slot bytes, malloc'ed, owned */
    size_t blob_bytes;
    /* ERROR, LOAD_FAILED */
    ssmd_err err;
} eng_event;

/* Zeroed request with default sampling; aborts when out of memory.  Any
 * thread. */
eng_request *eng_request_new(eng_op op);
/* Frees the request and what it owns; NULL is fine. */
void eng_request_free(eng_request *r);
/* Frees the event and what it owns (not its req); NULL is fine. */
void eng_event_free(eng_event *e);

/* Wall-clock seconds (CLOCK_REALTIME) and a monotonic clock in ns.  Any
 * thread. */
double eng_now_wall_s(void);
int64_t eng_now_mono_ns(void);

#endif
