/* sequence.h - one generated sequence, whoever drives it: the token history
 * (prompt + generated, for the repetition penalty), sampling (held to one
 * JSON object when the request asked for json_object), incremental
 * detokenization, stop strings, and the finish reasons (EOS, a stop string,
 * the JSON object's end, max_tokens).  The scheduler (a batch of them) and `ssmd generate` (one)
 * both step through eng_seq_next, so there is one generation loop.
 *
 * Knows nothing of slots, sessions, events or output: the caller runs the
 * model and decides where tokens and text go.  Caller-allocated,
 * eng_seq_init / eng_seq_close; one thread at a time.
 */
#ifndef SSMD_SEQUENCE_H
#define SSMD_SEQUENCE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"
#include "engine/request.h"
#include "engine/sampler.h"
#include "engine/text/json_mask.h"
#include "engine/text/stop.h"
#include "engine/text/tokenizer.h"

/* Text one step may release: a detokenized piece plus what the stop matcher
 * held back (at most ENG_STOP_LEN_MAX - 1 bytes) twice over (take + final
 * flush), and a NUL. */
#define ENG_SEQ_TEXT_MAX (ENG_DETOK_PIECE_MAX + 2 * ENG_STOP_LEN_MAX + 8)

typedef struct eng_seq_params {
    const eng_sampling *sampling;
    int n_vocab;
    const eng_tokenizer *tok;  /* NULL: no text (and no stop strings can match) */
    const char *const *stops;  /* (n_stop) NUL-terminated */
    int n_stop;
    int max_tokens;            /* >= 0; the sequence ends with LENGTH there */
    int eos_id;                /* ends the sequence with STOP; -1 = never */
} eng_seq_params;

typedef struct eng_seq {
    eng_sampler sampler;
    eng_detok detok;           /* used only when tok != NULL */
    eng_stop stop;
    const eng_tokenizer *tok;
    int max_tokens, eos_id;
    int32_t *history;          /* (cap) prompt + generated, xrealloc'ed */
    int n_history, cap;
    int32_t last;              /* the last token taken */
    int n_gen;                 /* tokens taken */
    /* sampling.json_object / json_schema: the output is held to one JSON
     * object (json_mask.h) and ends when it closes */
    int json;                  /* 1 while the constraint holds */
    eng_json_rule json_rule;
    eng_json_vocab json_vocab; /* the mask's per-token tables */
    char text[ENG_SEQ_TEXT_MAX]; /* text released by the last eng_seq_next / eng_seq_finish */
    size_t text_len;
} eng_seq;

/* Returns SSMD_OK, or the sampler's / stop matcher's error (SSMD_EINVAL,
 * SSMD_ENOMEM; SSMD_EINVAL too for json_object without a tokenizer) with
 * nothing left to close.  p's strings are copied. */
int eng_seq_init(eng_seq *q, const eng_seq_params *p, ssmd_err *err);
void eng_seq_close(eng_seq *q);

/* Appends ids to the history (the prompt, or a session's pending token). */
void eng_seq_push_history(eng_seq *q, const int32_t *ids, int n);

/* The per-token step: samples from logits (n_vocab floats, used as
 * scratch), takes the token into the history, puts the text it releases
 * (through detok and the stop strings) in q->text, and says whether the
 * sequence ended.  lp: NULL, or filled when the sampling asked for
 * logprobs.  The token is q->last. */
eng_finish eng_seq_next(eng_seq *q, float *logits, eng_logprobs *lp);

/* After a finish or at any normal end: puts the text still held (detok's
 * incomplete bytes, the stop matcher's tail) in q->text; nothing when a
 * stop string matched. */
void eng_seq_finish(eng_seq *q);

#endif
