/* tensor.h - the tensor vocabulary every room shares: element types (plain
 * floats and block-quantized formats), one named tensor as a weights
 * source hands it out, and the weights-source interface (a set of named
 * tensors, whatever file format they came from).
 *
 * A source (engine/weights/: safetensors today, GGUF next) validates its
 * files completely before handing out a tensor: after a successful open
 * every tensor's bytes lie inside memory the source owns, so no later
 * access can read out of bounds.  Nothing here knows any model
 * architecture or backend.
 */
#ifndef SSMD_TENSOR_H
#define SSMD_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"

/* Element types.  The values of the first four are hashed into model
 * fingerprints: never renumber them, only append. */
typedef enum eng_dtype {
    ENG_DTYPE_F32 = 0,
    ENG_DTYPE_F16 = 1,
    ENG_DTYPE_BF16 = 2,
    ENG_DTYPE_OTHER = 3, /* present in a file (I64, U8...), refused when used */
    /* Block-quantized: a row is a whole number of blocks of block_elems
     * weights, each block block_bytes long with its own scale(s).  The
     * layouts are GGUF's (ggml's Q8_0, Q4_0, Q4_K, Q6_K, Q5_0). */
    ENG_DTYPE_Q8_0 = 4,
    ENG_DTYPE_Q4_0 = 5,
    ENG_DTYPE_Q4_K = 6,
    ENG_DTYPE_Q6_K = 7,
    ENG_DTYPE_Q5_0 = 8, /* what llama.cpp's K-quant files fall back to for
                           rows that are not whole 256-weight super-blocks */
    ENG_DTYPE_COUNT
} eng_dtype;

typedef struct eng_dtype_info {
    const char *name;   /* "f32", "bf16", "q8_0"... */
    int block_elems;    /* weights per block: 1 for plain types, 0 for OTHER */
    int block_bytes;    /* bytes per block */
    int quantized;      /* 1: block-quantized (needs a backend that reads it) */
} eng_dtype_info;

/* The row of dt in the dtype table (dt outside the enum: OTHER's row). */
const eng_dtype_info *eng_dtype_info_of(eng_dtype dt);

/* Bytes of `cols` consecutive weights (one matrix row) of type dt, 64-bit
 * because a row times the rows of a big matrix overflows 32 bits.  0 when
 * dt has no size (OTHER) or cols is not a whole number of blocks. */
uint64_t eng_dtype_row_bytes(eng_dtype dt, int64_t cols);

#define ENG_TENSOR_MAX_DIMS 8

typedef struct eng_tensor {
    const char *name;                   /* owned by the eng_weights */
    const char *file;                   /* path of the file it lives in */
    eng_dtype dtype;
    char dtype_name[12];                /* as written in the file: "F32", "Q8_0"... */
    int ndim;
    int64_t shape[ENG_TENSOR_MAX_DIMS]; /* outermost first, as torch */
    int64_t numel;
    const void *data;                   /* nbytes long, owned by the source;
                                           aligned to the element size */
    uint64_t nbytes;
} eng_tensor;

/* ---- the weights-source interface ---------------------------------------- */

typedef struct eng_weights eng_weights; /* opaque: a source's tensor table */

/* Opens the weights in model directory `dir` with the first source that
 * recognises it (engine/weights/).  Returns SSMD_OK and sets *out, or an
 * error (SSMD_EIO, SSMD_EFORMAT...) whose message names the file, tensor
 * and problem; nothing is left open on error.  Any thread. */
int eng_weights_open(const char *dir, eng_weights **out, ssmd_err *err);

/* Releases everything; pointers from eng_weights_find die with it. */
void eng_weights_close(eng_weights *w);

/* The model's config when the weights file carries its own (GGUF's
 * metadata, as the JSON object a config.json would hold), else NULL:
 * borrowed, valid until eng_weights_close. */
const struct json_t *eng_weights_config(const eng_weights *w);
/* The tokenizer the weights file carries (GGUF's tokenizer.ggml.*), as a
 * tokenizer.json object, or NULL; borrowed like the config. */
const struct json_t *eng_weights_tokenizer(const eng_weights *w);

/* The tensor called `name`, or NULL. */
const eng_tensor *eng_weights_find(const eng_weights *w, const char *name);

/* The tensor called `name`, checked: it must exist, have a float dtype
 * (F32/F16/BF16) or a block-quantized one, and exactly the given shape
 * (ndim dims).  On error returns SSMD_EFORMAT with a message naming the
 * file, tensor and problem ("missing tensor", "shape [3,4] but expected
 * [4,4]", "unsupported dtype I64"). */
int eng_weights_get(const eng_weights *w, const char *name, int ndim, const int64_t *shape,
                    const eng_tensor **out, ssmd_err *err);

/* Number of tensors, and the i-th in name order (listings, fingerprints). */
int eng_weights_count(const eng_weights *w);
const eng_tensor *eng_weights_at(const eng_weights *w, int i);

/* ---- conversions ------------------------------------------------------------ */

/* Converts t (F32/F16/BF16 or block-quantized) into t->numel floats at dst. */
void eng_tensor_to_f32(const eng_tensor *t, float *dst);

/* Scalar conversions, exact (bf16/f16 -> f32) and round-to-nearest-even. */
float eng_bf16_to_f32(uint16_t v);
float eng_f16_to_f32(uint16_t v);
uint16_t eng_f32_to_bf16(float f);

#endif
