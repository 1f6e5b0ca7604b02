/* scheduler.h - the engine thread: loads the model, owns the state pool and
 * the session table, and runs continuous batching: queued requests are
 * admitted up to max_batch, and each engine iteration prefills chunks of the
 * admitted prompts (first come, first served, at most max_step_tokens
 * tokens) and then runs one batched decode step for every sequence whose
 * prompt is done, posting events back to the loop thread.
 *
 * Two queues joined by one mutex: requests in (woken by a condition
 * variable), events out (the notify callback, e.g. uv_async_send, is called
 * after events are posted; the loop drains the whole list each time).
 */
#ifndef SSMD_SCHEDULER_H
#define SSMD_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"
#include "engine/model.h"
#include "engine/request.h"
#include "engine/text/tokenizer.h"

typedef struct eng_sched eng_sched; /* opaque */

typedef struct eng_sched_opts {
    const char *model_dir;
    eng_model_opts model;
    int max_batch;       /* active sequences per decode step (>= 1) */
    int max_sessions;    /* session slots (>= 1) */
    double session_ttl_s; /* idle seconds before a session expires; <= 0 never */
    int max_step_tokens; /* prompt tokens prefilled per iteration beside the
                          * decode step; <= 0: eng_sched_default_step_tokens */
    double prefill_time_ratio; /* while sequences decode, an iteration's prefill
                                * may take at most this many times the decode
                                * step's (measured) time, in chunks of at least
                                * ENG_MIN_PREFILL_CHUNK tokens; <= 0: the token
                                * budget alone decides */
    size_t host_session_bytes; /* host memory for idle sessions moved out of the
                                * state pool; 0: none (the oldest is dropped) */
    int prefill_unbatched; /* test seam: each chunk prefilled alone, not in one
                            * batched pass (the reference a test compares with) */
} eng_sched_opts;

/* The smallest prefill chunk the time ratio may cut an iteration's budget
 * to: prefill always advances, however slow it is next to decode. */
enum { ENG_MIN_PREFILL_CHUNK = 16 };

/* The per-iteration prefill budget a backend gets by default: small on the
 * CPU, where a prefill token costs about what a decode step does, larger on
 * a GPU, where a chunk is one wide GEMM.  Any thread. */
int eng_sched_default_step_tokens(const char *backend);

/* Read-only facts about the loaded model, valid after ENG_EV_LOADED until
 * eng_sched_destroy; any thread may read them then. */
typedef struct eng_model_info {
    const eng_tokenizer *tok;  /* NULL without tokenizer.json */
    int n_vocab;
    int eos_id;                /* -1 when unknown */
    int bos_id;
    size_t state_bytes;
    char fingerprint[129];
    char dtype[16];
    int64_t n_params;
    char model_type[32];       /* config.json's model_type ("mamba", "s4d", ...) */
    int n_layer, d_model;
    size_t weight_bytes;       /* weights as held by the backend */
    size_t pool_bytes;         /* the state pool: every slot's recurrent state */
} eng_model_info;

#define ENG_BATCH_BUCKETS 8  /* batch size histogram: <=1,2,4,...,64,+Inf */
#define ENG_PREFILL_BUCKETS 14 /* prefill tokens per iteration: <=1,2,4,...,4096,+Inf */
#define ENG_WAIT_BUCKETS 12  /* queue wait histogram: eng_queue_wait_bounds_s, +Inf */

/* Upper bounds (seconds) of the queue wait buckets but the last (+Inf). */
extern const double eng_queue_wait_bounds_s[ENG_WAIT_BUCKETS - 1];

/* Counters for /metrics, copied under the queue lock. */
typedef struct eng_sched_stats {
    int running;
    int waiting;
    int sessions;                               /* in the state pool */
    int sessions_host;                          /* in host memory */
    int host_capacity;                          /* sessions host memory holds */
    uint64_t sessions_to_host, sessions_from_host; /* moves between the tiers */
    uint64_t sessions_dropped;                  /* evicted for lack of room in any tier */
    uint64_t prompt_tokens;
    uint64_t gen_tokens;
    uint64_t steps;
    uint64_t batch_sum;                         /* sum of batch sizes over steps */
    uint64_t batch_hist[ENG_BATCH_BUCKETS];     /* non-cumulative counts */
    int max_step_tokens;                        /* the budget in force */
    int step_budget;                            /* the last iteration's budget after
                                                 * the time ratio (tokens) */
    uint64_t prefill_tokens;                    /* tokens prefilled, sessions' pending ones included */
    uint64_t prefill_steps;                     /* iterations that prefilled anything */
    uint64_t prefill_hist[ENG_PREFILL_BUCKETS]; /* tokens per such iteration, non-cumulative */
    int prefill_max;                            /* the most tokens one iteration prefilled */
    uint64_t queue_wait_hist[ENG_WAIT_BUCKETS]; /* submission -> first prefill chunk */
    double queue_wait_sum_s;
    uint64_t queue_waits;                       /* requests that reached their first chunk */
} eng_sched_stats;

typedef void (*eng_notify_fn)(void *arg);

/* Starts the engine thread, which loads the model and then posts
 * ENG_EV_LOADED or ENG_EV_LOAD_FAILED.  opts->model_dir is copied.  Returns
 * SSMD_OK or SSMD_ENOMEM/SSMD_EINTERNAL (no thread started).  Loop thread. */
int eng_sched_start(const eng_sched_opts *opts, eng_notify_fn notify, void *notify_arg,
                    eng_sched **out, ssmd_err *err);

/* Hands r to the engine (which owns it until its final event).  Loop
 * thread. */
void eng_sched_submit(eng_sched *s, eng_request *r);

/* Asks the engine to stop r within one decode step; its final event is an
 * ERROR with SSMD_ECANCELED (or whatever it finished with first). */
void eng_sched_cancel(eng_sched *s, eng_request *r);

/* Test seam: while held (hold = 1) the engine thread finishes its current
 * iteration and then does nothing (no new requests taken, no decode step)
 * until released (hold = 0) or stopped.  Lets a test queue several requests
 * so they are all waiting at once, without sleeping.  The server never
 * calls it.  Loop thread. */
void eng_sched_hold(eng_sched *s, int hold);

/* Takes every posted event, oldest first (a list through ->next); the
 * caller frees them.  NULL when there are none.  Loop thread. */
eng_event *eng_sched_take_events(eng_sched *s);

const eng_model_info *eng_sched_model_info(const eng_sched *s);
void eng_sched_get_stats(eng_sched *s, eng_sched_stats *out);

/* Stops the engine thread: requests still queued or running end with an
 * ERROR event (SSMD_EDRAINING), then the thread exits and is joined.  Events
 * stay available to eng_sched_take_events.  Loop thread. */
void eng_sched_stop(eng_sched *s);

/* Calls fn(arg, info, state bytes) for every session, in table order, and
 * returns how many were visited (fn returning nonzero stops the walk
 * early).  Only after eng_sched_stop: the engine thread has ended, so the
 * caller's thread reads the state pool itself (the drain handoff). */
typedef int (*eng_session_visit_fn)(void *arg, const eng_session_info *info, const void *state, size_t bytes);
int eng_sched_each_session(eng_sched *s, eng_session_visit_fn fn, void *arg);

/* Frees everything (stops first if needed), including events not taken and
 * the requests they point to. */
void eng_sched_destroy(eng_sched *s);

#endif
