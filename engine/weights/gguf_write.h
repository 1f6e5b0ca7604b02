/* gguf_write.h - writing a Mamba-1 or Mamba-2 model as a GGUF file that gguf.c (and
 * llama.cpp) reads: `ssmd quantize`, and tests that need a file of given
 * weights.  Public: used outside engine/weights/.
 */
#ifndef SSMD_GGUF_WRITE_H
#define SSMD_GGUF_WRITE_H

#include <jansson.h>

#include "engine/error.h"
#include "engine/tensor.h"

/* Writes the Mamba-1 / Falcon-Mamba / Mamba-2 model whose tensors are w (any source,
 * our names) and whose config is `config` (a config.json object:
 * model_type, vocab_size, layer_norm_epsilon, bos/eos ids; the sizes come
 * from the tensors) to path.  The matrices (2-D weights but A_log) become
 * matrix_type (F32, Q8_0, Q4_0 or Q4_K), falling back to Q8_0 and then
 * F32 for a matrix whose rows are not whole blocks; everything else F32.
 * A byte-level BPE `tokenizer` (a tokenizer.json object, or NULL: none)
 * becomes tokenizer.ggml.*.  Returns SSMD_OK, or an error naming the model
 * or the file (another model_type, a tensor GGUF has no name for, another
 * tokenizer model, a write failure); a failed write removes path.
 * *n_quantized (may be NULL) receives how many tensors were quantized. */
int eng_gguf_save(const eng_weights *w, const json_t *config, const json_t *tokenizer,
                  eng_dtype matrix_type, const char *path, int *n_quantized, ssmd_err *err);

#endif
