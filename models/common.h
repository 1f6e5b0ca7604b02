/* common.h - small pieces every language-model architecture in models/
 * shares: the chunked LM-head projection and freeing backend buffers. */
#ifndef SSMD_MODELS_COMMON_H
#define SSMD_MODELS_COMMON_H

#include <stddef.h>

#include "engine/backend.h"

/* Logits of rows [first, rows) of xn (rows, d_model): lm_head (+ bias)
 * through the backend scratch `scratch` (scratch_rows x lm_head->rows),
 * copied to host dst row after row. */
void mdl_logits(bk_backend *bk, const bk_matrix *lm_head, const float *bias, const float *xn,
                int d_model, int rows, int first, float *scratch, int scratch_rows, float *dst);

/* Releases every non-NULL backend buffer in ptrs[0..n). */
void mdl_release_all(bk_backend *bk, void *const *ptrs, size_t n);

/* Releases the embedding and, when it is its own tensor, the LM head. */
void mdl_release_embed_head(bk_backend *bk, bk_matrix *embed, bk_matrix *lm_head);

#endif
