/* sampler.h - turns a row of logits into the next token: repetition penalty,
 * logit bias, presence and frequency penalties, temperature, top-k, top-p,
 * min-p, seeded sampling (or greedy), and the top-n log-probabilities a
 * request asked for.
 *
 * One eng_sampler per sequence; it owns its RNG and scratch, so no globals
 * and the same seed gives the same tokens.  Not shared between threads.
 */
#ifndef SSMD_SAMPLER_H
#define SSMD_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"

/* One entry of OpenAI's logit_bias: added to the token's logit. */
typedef struct eng_logit_bias {
    int32_t token;
    float bias;                /* [-100, 100] from requests; -100 bans, +100 all but forces */
} eng_logit_bias;

#define ENG_LOGIT_BIAS_MAX 300 /* OpenAI's own limit on logit_bias entries */

typedef struct eng_sampling {
    float temperature;        /* 0 = greedy (argmax); default 1 */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off; (0, 1] */
    float min_p;              /* 0 = off; [0, 1] */
    float repetition_penalty; /* 1 = off; > 0, HF semantics over the history */
    float presence_penalty;   /* 0 = off; subtracted once from each token generated so far */
    float frequency_penalty;  /* 0 = off; subtracted per time a token was generated so far */
    uint64_t seed;            /* RNG seed */
    int logprobs;             /* how many top log-probabilities to report, 0..ENG_LOGPROBS_MAX */
    int json_object;          /* 1: the output is one JSON object (sequence.c holds it so) */
    /* response_format json_schema: the output is one instance of it;
     * compiled, borrowed (the request owns it); NULL = none */
    const struct eng_json_schema *json_schema;
    int n_logit_bias;         /* 0..ENG_LOGIT_BIAS_MAX */
    eng_logit_bias logit_bias[ENG_LOGIT_BIAS_MAX]; /* (n_logit_bias) token ids below n_vocab */
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
    X("presence_penalty", "presence-penalty", FLOAT, -2, 2, 0, presence_penalty,                     \
      "subtract from the logit of each token already generated, 0 = off")                           \
    X("frequency_penalty", "frequency-penalty", FLOAT, -2, 2, 0, frequency_penalty,                  \
      "subtract per time a token was already generated, 0 = off")                                   \
    X("seed", "seed", U64, 0, 1.8e19, 0, seed, "sampling seed")

/* Fills the defaults above (seed 0, no penalties, no logit bias). */
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
    /* presence/frequency penalties only (else NULL): what this sampler has
     * returned so far */
    int32_t *counts;     /* (n_vocab) times each id was sampled */
    int32_t *seen;       /* (n_vocab) the ids with counts > 0, in first-seen order */
    int n_seen;
} eng_sampler;

/* Returns SSMD_OK, or SSMD_EINVAL for bad params / SSMD_ENOMEM. */
int eng_sampler_init(eng_sampler *s, const eng_sampling *p, int n_vocab, ssmd_err *err);
void eng_sampler_close(eng_sampler *s);

/* Samples one id from logits[n_vocab] (not written).  history[n_history]
 * holds the ids seen so far (prompt + generated) for the repetition
 * penalty; the presence and frequency penalties count only what this
 * sampler returned (OpenAI's "generated so far", as vLLM counts it).  The
 * logits are shaped in this order: repetition penalty (from the raw
 * logit), + logit_bias, - presence/frequency penalties, then temperature
 * and the filters.  If lp is not NULL it is filled (lp->n_top =
 * params.logprobs) from the raw logits. */
int32_t eng_sampler_sample(eng_sampler *s, const float *logits, const int32_t *history, int n_history,
                           eng_logprobs *lp);

#endif
