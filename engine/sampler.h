/* sampler.h - turns a row of logits into the next token: repetition penalty,
 * temperature, top-k, top-p, min-p, seeded sampling (or greedy), and the
 * top-n log-probabilities a request asked for.
 *
 * One eng_sampler per sequence; it owns its RNG and scratch, so no globals
 * and the same seed gives the same tokens.  Not shared between threads.
 */
#ifndef SSMD_SAMPLER_H
#define SSMD_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"

typedef struct eng_sampling {
    float temperature;        /* 0 = greedy (argmax); default 1 */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off; (0, 1] */
    float min_p;              /* 0 = off; [0, 1] */
    float repetition_penalty; /* 1 = off; > 0, HF semantics over the history */
    uint64_t seed;            /* RNG seed */
    int logprobs;             /* how many top log-probabilities to report, 0..ENG_LOGPROBS_MAX */
} eng_sampling;

#define ENG_LOGPROBS_MAX 20

/* The range each sampling field accepts from outside, for every front end
 * that reads one: the request fields of server/parse.c and the flags of
 * `ssmd generate` (server/options.c) both expand this list, so their bounds
 * cannot drift apart.  lo_open: lo itself is refused.  (eng_sampling_validate
 * checks what the sampler needs, a wider range.)
 * X(json_name, flag_name, TYPE: FLOAT|INT|U64, lo, hi, lo_open, field, help) */
#define ENG_SAMPLING_FIELDS(X)                                                                       \
    X("temperature", "temperature", FLOAT, 0, 100, 0, temperature, "0 = greedy")                     \
    X("top_p", "top-p", FLOAT, 0, 1, 1, top_p, "nucleus sampling mass, 1 = off")                     \
    X("top_k", "top-k", INT, 0, 1e9, 0, top_k, "keep the k most likely tokens, 0 = off")              \
    X("min_p", "min-p", FLOAT, 0, 1, 0, min_p, "drop tokens below min-p x the top probability")      \
    X("repetition_penalty", "repetition-penalty", FLOAT, 0, 100, 1, repetition_penalty, "1 = off")  \
    X("seed", "seed", U64, 0, 1.8e19, 0, seed, "sampling seed")

/* Fills the defaults above (seed 0). */
void eng_sampling_defaults(eng_sampling *p);

/* Returns SSMD_OK or SSMD_EINVAL with err->msg naming the field that is out
 * of range ("top_p must be in (0, 1]"). */
int eng_sampling_validate(const eng_sampling *p, ssmd_err *err);

/* Log-probabilities of one step, from log_softmax of the raw logits. */
typedef struct eng_logprobs {
    int32_t token;                   /* the sampled token */
    float logprob;                   /* its log-probability */
    int n_top;                       /* = eng_sampling.logprobs */
    int32_t top_ids[ENG_LOGPROBS_MAX];
    float top_logprobs[ENG_LOGPROBS_MAX]; /* descending */
} eng_logprobs;

typedef struct eng_sampler {
    eng_sampling params;
    int n_vocab;
    uint64_t rng[4];     /* xoshiro256** state, seeded from params.seed */
    float *probs;        /* (n_vocab) scratch */
    int32_t *order;      /* (n_vocab) scratch candidate ids */
} eng_sampler;

/* Returns SSMD_OK, or SSMD_EINVAL for bad params / SSMD_ENOMEM. */
int eng_sampler_init(eng_sampler *s, const eng_sampling *p, int n_vocab, ssmd_err *err);
void eng_sampler_close(eng_sampler *s);

/* Samples one id from logits[n_vocab] (modified in place as scratch).
 * history[n_history] holds the ids seen so far (prompt + generated) for the
 * repetition penalty.  If lp is not NULL it is filled (lp->n_top =
 * params.logprobs). */
int32_t eng_sampler_sample(eng_sampler *s, float *logits, const int32_t *history, int n_history,
                           eng_logprobs *lp);

#endif
