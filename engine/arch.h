/* arch.h - what a model family (models/) provides to the engine, and the
 * registry of families (models/registry.c: one line per family).
 *
 * A family owns everything that is particular to it: which config.json it
 * reads and how (its numbers live in eng_model_config.family), the
 * numbers that make two checkpoints incompatible (fingerprint), the
 * tensor names and shapes, what it needs of a backend, and its forward
 * pass.  engine/ drives it only through this table; a family sees config,
 * weights and a backend, never sessions, HTTP or the scheduler.
 */
#ifndef SSMD_ARCH_H
#define SSMD_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"
#include "engine/error.h"
#include "engine/model_config.h"
#include "engine/tensor.h"

#define ENG_ARCH_MAX_FP_FIELDS 32

typedef struct eng_arch {
    const char *name;                /* "mamba1", "s4" (messages) */
    const char *const *model_types;  /* config.json model_type values it reads, NULL-ended */

    /* Optional: 1 when a config.json without model_type is this family's
     * (by its keys); NULL = never. */
    int (*claims_untyped)(const json_t *root);
    /* Reads root into cfg (shared fields and cfg->family; cfg->arch and
     * model_type are set).  Returns SSMD_OK or an error naming r->path and
     * the key. */
    int (*parse_config)(const eng_cfg_reader *r, const json_t *root, eng_model_config *cfg);
    /* The config numbers that change the math, in a fixed order, into
     * out[0..ENG_ARCH_MAX_FP_FIELDS); returns how many.  Hashed into the
     * model fingerprint with the model type and the tensor table. */
    int (*fingerprint_fields)(const eng_model_config *cfg, int32_t *out);

    /* Builds the forward state (weights on bk, scratch for max_batch rows).
     * Returns SSMD_OK and *out, or an error naming file/tensor/problem, or
     * SSMD_EUNSUPPORTED when bk lacks an op the family needs. */
    int (*load)(const eng_model_config *cfg, const eng_weights *w, bk_backend *bk, int max_batch,
                void **out, ssmd_err *err);
    void (*free)(void *arch);

    size_t (*state_floats)(const void *arch);  /* one slot's state, f32 */
    int64_t (*n_params)(const void *arch);
    size_t (*weight_bytes)(const void *arch);
    eng_dtype (*weight_dtype)(const void *arch);

    /* As eng_model_prefill, with state = that slot's state in backend
     * memory; ids already validated. */
    void (*prefill)(void *arch, float *state, const int32_t *ids, int n, float *logits,
                    int all_logits);
    /* Optional: several prefills at once, sequence k consuming ids[k][0..n[k])
     * into states[k] (distinct) with logits[k] as prefill's logits
     * (all_logits 0); ids validated.  NULL: the engine calls prefill for
     * each. */
    void (*prefill_multi)(void *arch, float *const *states, const int32_t *const *ids, const int *n,
                          float *const *logits, int n_seq);
    /* As eng_model_decode; pool = slot 0's state, slots validated. */
    void (*decode)(void *arch, float *pool, const int32_t *slots, const int32_t *ids, int batch,
                   float *logits);
} eng_arch;

/* The family reading model_type, or NULL. */
const eng_arch *eng_arch_find(const char *model_type);
/* The family claiming a config without model_type, or NULL. */
const eng_arch *eng_arch_find_untyped(const json_t *root);
/* "mamba, s4d, s4": every model_type served, for messages. */
void eng_arch_list_types(char *buf, size_t size);

#endif
