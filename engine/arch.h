/* arch.h - what a model architecture (models/) provides to the engine.
 *
 * engine/model.c picks the architecture by config.json's model_type and
 * drives it only through this table; the architecture sees weights and a
 * backend, never sessions, HTTP or the scheduler.
 */
#ifndef SSMD_ARCH_H
#define SSMD_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"
#include "engine/error.h"
#include "engine/model_config.h"
#include "engine/weights/safetensors.h"

typedef struct eng_arch {
    const char *model_type; /* config.json's model_type */

    /* Builds the forward state (weights on bk, scratch for max_batch rows).
     * Returns SSMD_OK and *out, or an error naming file/tensor/problem. */
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
    /* As eng_model_decode; pool = slot 0's state, slots validated. */
    void (*decode)(void *arch, float *pool, const int32_t *slots, const int32_t *ids, int batch,
                   float *logits);
} eng_arch;

#endif
