/* sched_internal.h - what the scheduler's own files share: the eng_sched
 * struct, an active sequence, the event list an engine iteration fills.
 *
 * Only engine/scheduler.c, engine/sched_step.c, engine/sched_session.c and
 * engine/request.c may
 * include it; everyone else goes through scheduler.h and request.h.  Apart
 * from the fields marked as guarded by `lock`, everything here belongs to
 * the engine thread.
 */
#ifndef SSMD_SCHED_INTERNAL_H
#define SSMD_SCHED_INTERNAL_H

#include <pthread.h>

#include "engine/prefill_cost.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "engine/session.h"
#include "engine/state_pool.h"

typedef enum sched_phase {
    SCHED_PREFILL = 0,        /* its prompt is prefilled in chunks */
    SCHED_FORK_WAIT,          /* choice k > 0: waits for choice 0's prompt, then copies its state */
    SCHED_DECODE,             /* one token per iteration */
} sched_phase;

typedef struct sched_seq {    /* one active completion (one choice of it) */
    eng_request *req;
    int choice;               /* over all of req's prompts: group * n_choices + k */
    int group;                /* which of req's prompts; its choice k = 0 prefills it for all */
    sched_phase phase;
    int slot;
    int session;              /* session index, -1 for a one-off state */
    int eph;                  /* index into eph_used, -1 for a session slot */
    int n_prompt;             /* tokens of the request's prompt */
    int n_ids;                /* tokens to prefill: a session's pending token + the prompt */
    int n_done;               /* of those, prefilled so far */
    uint64_t order;           /* admission number: prefill is first come, first served */
    uint64_t planned;         /* the iteration that last planned a chunk of it */
    eng_seq seq;              /* history (from which chunks are read), sampler, text, finish */
} sched_seq;

/* Events of one engine iteration, posted together (eng_evlist_*). */
typedef struct eng_evlist {
    eng_event *head, *tail;
} eng_evlist;

struct eng_sched {
    eng_sched_opts opts;
    char *model_dir;
    eng_notify_fn notify;
    void *notify_arg;
    pthread_t thread;
    int started, joined;

    pthread_mutex_t lock;     /* guards the fields down to `info` */
    pthread_cond_t wake;
    eng_request *in_head, *in_tail;
    eng_event *ev_head, *ev_tail;
    int stopping;
    int held;                 /* test seam: eng_sched_hold */
    eng_sched_stats stats;
    eng_model_info info;      /* written once before ENG_EV_LOADED */

    /* engine thread only */
    eng_model *model;
    eng_state_pool *pool;
    eng_session_table sessions;  /* sessions with a state-pool slot: entry i owns slot i */
    eng_session_table host;      /* idle sessions moved to host memory (sched_tier.c) */
    unsigned char **host_states; /* (host.capacity) their state bytes, malloc'ed */
    eng_request *wait_head, *wait_tail;
    int n_waiting;
    sched_seq *seqs;          /* (max_batch) the first n_active are live */
    int n_active;
    int *eph_used;            /* (max_batch) one-off slots max_sessions + i */
    float *logits;            /* (max_batch, n_vocab) */
    int32_t *step_slots, *step_ids; /* (max_batch) */
    int *step_seqs;           /* (max_batch) seqs index of each decode row */
    /* an iteration's prefill chunks (sched_step.c), (max_batch) each */
    eng_prefill_chunk *chunks;
    int *chunk_seq;           /* seqs index of chunk k while planning */
    eng_request **chunk_req;  /* its request, once sequences may move */
    int *chunk_choice;        /* and its sequence's choice (a prompt's first) */
    ssmd_err *chunk_err;
    float *prefill_logits;    /* (max_batch, n_vocab): chunk k's last-position logits */
    int max_step_tokens;      /* prefill budget per iteration (opts, or the backend's default) */
    eng_prefill_cost prefill_cost; /* what prefill passes cost, fitted as they run */
    double decode_step_ns;       /* moving average of the decode step's time (0: none yet) */
    uint64_t n_admitted;      /* admissions so far: the next sched_seq.order */
    uint64_t iter;            /* engine iterations run so far */
};

/* r's prompts and choices (request.h): n_prompts back to back in prompt. */
static inline int sched_n_prompts(const eng_request *r) { return r->n_prompts > 1 ? r->n_prompts : 1; }
static inline int sched_n_choices(const eng_request *r) { return r->n_choices > 1 ? r->n_choices : 1; }
static inline int sched_prompt_len(const eng_request *r, int g)
{
    return r->n_prompts > 1 ? r->prompt_lens[g] : r->n_prompt;
}
static inline const int32_t *sched_prompt_at(const eng_request *r, int g)
{
    const int32_t *p = r->prompt;
    for (int i = 0; i < g; i++)
        p += r->prompt_lens[i];
    return p;
}

/* ---- one iteration (sched_step.c) ---- */

/* Runs one engine iteration over the active sequences: prefill chunks, the
 * oldest admission first, up to max_step_tokens tokens (a sequence whose
 * prompt completes samples its first token), then one batched decode step
 * for every sequence whose prompt is done. */
void eng_sched_iterate(eng_sched *s, eng_evlist *out);
/* Ends the sequence at index i of seqs (err NULL: it finished), session
 * bookkeeping, slot release.  The request's final event comes with its
 * last choice: DONE, or the ERROR of the first choice that failed; an
 * earlier choice that finished posts CHOICE_END.  The last sequence moves
 * to index i. */
void eng_sched_seq_end(eng_sched *s, int i, eng_finish finish, const ssmd_err *err, eng_evlist *out);
/* The same with an error code and its default message. */
void eng_sched_seq_fail(eng_sched *s, int i, int code, eng_evlist *out);

/* ---- events (request.c) ---- */

/* Appends a zeroed event of this kind for r to l and returns it. */
eng_event *eng_evlist_add(eng_evlist *l, eng_event_kind kind, eng_request *r);
/* Appends r's final ERROR event with err, or with code and msg (NULL: the
 * code's default message). */
void eng_evlist_error(eng_evlist *l, eng_request *r, const ssmd_err *err);
void eng_evlist_error_code(eng_evlist *l, eng_request *r, int code, const char *msg);

/* ---- the host tier (sched_tier.c) ---- */

/* Sizes the host tier from opts.host_session_bytes (none when it holds
 * less than one state).  Returns SSMD_OK or SSMD_ENOMEM. */
int eng_sched_tier_init(eng_sched *s, ssmd_err *err);
void eng_sched_tier_free(eng_sched *s);
/* Makes sure the session table has a free entry, moving the least recently
 * used idle session to the host tier (or dropping it, without one).
 * Returns SSMD_OK, or SSMD_EFULL when every session is busy. */
int eng_sched_tier_make_room(eng_sched *s, ssmd_err *err);
/* Brings session id back from the host tier into the session table and
 * its slot.  Returns its index; -1 when the host tier does not hold it;
 * -2 (err set) when no slot can be freed (it stays on the host). */
int eng_sched_tier_unpark(eng_sched *s, const char *id, ssmd_err *err);
/* Whether a completion on session id must wait: the host tier holds it
 * and every device session is busy with a running completion, so it
 * cannot come back yet (it can once one of those ends). */
int eng_sched_tier_must_wait(const eng_sched *s, const char *id);
/* Removes the host sessions idle beyond --session-ttl. */
void eng_sched_tier_expire(eng_sched *s, double now_s);

/* ---- sessions (sched_session.c) ---- */

/* Index of r's session for an operation on it, or -1 after appending the
 * error (unknown, busy, deleted or older than the store's copy). */
int eng_sched_session_find(eng_sched *s, eng_request *r, eng_evlist *out);
/* Runs a session operation (anything but ENG_OP_COMPLETE) at once and
 * appends its final event. */
void eng_sched_session_run_op(eng_sched *s, eng_request *r, eng_evlist *out);
/* A completion starts on session idx: busy until it ends. */
void eng_sched_session_begin(eng_sched *s, int idx);
/* ids[0..n), n more of the completion's prefill tokens, went into session
 * idx's state: the pending token first (when there is one), then prompt
 * tokens.  prompt_done: they were the prompt's last ones. */
void eng_sched_session_consumed(eng_sched *s, int idx, const int32_t *ids, int n, int prompt_done);
/* r's prompt is a whole conversation (prompt_is_history): checks that it
 * starts with session idx's history and drops that part from r->prompt.
 * Returns 1, or 0 after appending the 409 that says what differs (r is
 * unchanged then). */
int eng_sched_session_trim_history(eng_sched *s, int idx, eng_request *r, eng_evlist *out);
/* The completion on session idx ended (final event e, already appended):
 * not busy, the last sampled token pending, a new version tag, and e
 * carries the state when the request wants it. */
void eng_sched_session_end(eng_sched *s, int idx, const sched_seq *q, eng_event *e);
/* Removes the sessions idle beyond --session-ttl. */
void eng_sched_session_expire(eng_sched *s);
/* Seconds until the next idle session expires (>= 0), or -1 when none can:
 * how long the idle engine thread may sleep. */
double eng_sched_session_wait_s(const eng_sched *s);

#endif
