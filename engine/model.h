/* model.h - a loaded language model, whatever its architecture: config,
 * weights on a backend, tokenizer, and the two forward entry points that the
 * scheduler and `ssmd generate` call (prefill a slot, decode a batch).
 *
 * A model and the state pools made from it belong to one thread (the engine
 * thread) after loading: the forward uses scratch buffers inside the model.
 * The tokenizer it hands out is read-only and may be used from any thread.
 */
#ifndef SSMD_MODEL_H
#define SSMD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"
#include "engine/error.h"
#include "engine/model_config.h"
#include "engine/text/tokenizer.h"

typedef struct eng_model eng_model;           /* opaque */
typedef struct eng_state_pool eng_state_pool; /* see state_pool.h */

typedef struct eng_model_opts {
    const char *backend; /* "cpu" (default) or "cuda" */
    bk_options backend_opts; /* threads, numerics, device */
    int max_batch;       /* largest decode batch (default 64) */
} eng_model_opts;

void eng_model_opts_defaults(eng_model_opts *o);

/* Loads the model in directory dir (config.json, weights, tokenizer.json if
 * present), or the single model file dir names (GGUF: its config is in its
 * metadata and its tokenizer).  Returns SSMD_OK and sets *out, or an error whose message names
 * the file, tensor and problem.  Nothing leaks on error. */
int eng_model_open(const char *dir, const eng_model_opts *opts, eng_model **out, ssmd_err *err);
void eng_model_close(eng_model *m);

const eng_model_config *eng_model_cfg(const eng_model *m);
/* The backend holding the weights; engine-internal (state pool). */
struct bk_backend *eng_model_backend(const eng_model *m);
/* NULL when the directory has no tokenizer.json. */
const eng_tokenizer *eng_model_tokenizer(const eng_model *m);
int eng_model_n_vocab(const eng_model *m);     /* width of a logits row */
size_t eng_model_state_bytes(const eng_model *m);  /* one sequence's recurrent state */
size_t eng_model_weight_bytes(const eng_model *m); /* weights as held by the backend */
int64_t eng_model_n_params(const eng_model *m);
const char *eng_model_dtype_name(const eng_model *m); /* "f32", "bf16", "f16" (of the big matrices) */
/* Hex digest over architecture, config and the tensor table: states are only
 * exchanged between models with the same fingerprint. */
const char *eng_model_fingerprint(const eng_model *m);

/* Consumes ids[0..n) into the state of `slot`, continuing from whatever that
 * state holds (zero it first for a fresh sequence).  logits: NULL, or
 * n_vocab floats for the last position (all_logits = 0), or n x n_vocab rows,
 * row i computed after consuming ids[i] (all_logits = 1).  Long inputs are
 * processed in chunks internally.  Returns SSMD_OK or SSMD_EINVAL (token id
 * out of range; the state is then unchanged).  Engine thread only. */
int eng_model_prefill(eng_model *m, eng_state_pool *pool, int slot, const int32_t *ids, int n,
                      float *logits, int all_logits, ssmd_err *err);

/* One sequence's part of eng_model_prefill_multi. */
typedef struct eng_prefill_chunk {
    int slot;
    const int32_t *ids;  /* (n) */
    int n;               /* >= 1 */
    float *logits;       /* NULL, or n_vocab floats for the chunk's last position */
} eng_prefill_chunk;

/* eng_model_prefill (all_logits 0) of n chunks, each into its own slot
 * (distinct), in one pass where the family can: the projections run once
 * over every chunk's tokens, the scan of each from its own state.  Returns
 * SSMD_OK, or SSMD_EINVAL (a bad slot, length or id; no state changed).
 * Engine thread only. */
int eng_model_prefill_multi(eng_model *m, eng_state_pool *pool, const eng_prefill_chunk *chunks, int n,
                            ssmd_err *err);

/* Advances batch sequences by one token each: sequence b is in slot
 * slots[b] and consumes ids[b]; slots are distinct, in any order.  logits
 * receives batch x n_vocab rows.  batch <= opts.max_batch.  Returns SSMD_OK
 * or SSMD_EINVAL (bad id or slot; no state changed).  Engine thread only. */
int eng_model_decode(eng_model *m, eng_state_pool *pool, const int32_t *slots, const int32_t *ids,
                     int batch, float *logits, ssmd_err *err);

#endif
