/* safetensors.h - memory-mapped safetensors weights of one model directory.
 *
 * Opens `model.safetensors`, or every shard listed by
 * `model.safetensors.index.json`, maps each file read-only and validates its
 * header completely before anything is handed out: after a successful open,
 * every tensor's bytes lie inside its file, so no later access can read out
 * of bounds.  Tensor data is used in place (zero-copy); conversion to f32 is
 * offered for the small tensors that the models keep in f32.
 *
 * This file never knows about any model architecture.
 */
#ifndef SSMD_SAFETENSORS_H
#define SSMD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"

typedef enum eng_dtype {
    ENG_DTYPE_F32 = 0,
    ENG_DTYPE_F16,
    ENG_DTYPE_BF16,
    ENG_DTYPE_OTHER, /* present in a file (I64, U8...), rejected when used */
} eng_dtype;

#define ENG_TENSOR_MAX_DIMS 8

typedef struct eng_tensor {
    const char *name;                   /* owned by the eng_weights */
    const char *file;                   /* path of the file it lives in */
    eng_dtype dtype;
    char dtype_name[12];                /* as written in the header: "F32"... */
    int ndim;
    int64_t shape[ENG_TENSOR_MAX_DIMS];
    int64_t numel;
    const void *data;                   /* inside the mmap, nbytes long; aligned
                                           to the element size (a tensor the file
                                           leaves misaligned gets an owned copy) */
    uint64_t nbytes;
} eng_tensor;

typedef struct eng_weights eng_weights; /* opaque: maps + tensor index */

/* Opens the weights in model directory `dir`.  Returns SSMD_OK and sets *out,
 * or an error (SSMD_EIO, SSMD_EFORMAT...) with err->msg naming the file,
 * tensor and problem; nothing is left mapped on error.  Any thread. */
int eng_weights_open(const char *dir, eng_weights **out, ssmd_err *err);

/* Unmaps everything; pointers from eng_weights_find die with it. */
void eng_weights_close(eng_weights *w);

/* The tensor called `name`, or NULL. */
const eng_tensor *eng_weights_find(const eng_weights *w, const char *name);

/* The tensor called `name`, checked: it must exist, have a supported dtype
 * (F32/F16/BF16) and exactly the given shape (ndim dims).  On error returns
 * SSMD_EFORMAT with a message naming the directory/file, tensor and the
 * problem ("missing tensor", "shape [3,4] but expected [4,4]", "unsupported
 * dtype I64"). */
int eng_weights_get(const eng_weights *w, const char *name, int ndim, const int64_t *shape,
                    const eng_tensor **out, ssmd_err *err);

/* Number of tensors, and the i-th (for listing and fingerprints). */
int eng_weights_count(const eng_weights *w);
const eng_tensor *eng_weights_at(const eng_weights *w, int i);

/* Converts t (F32/F16/BF16) into t->numel floats at dst. */
void eng_tensor_to_f32(const eng_tensor *t, float *dst);

/* Scalar conversions, exact (bf16/f16 -> f32) and round-to-nearest-even. */
float eng_bf16_to_f32(uint16_t v);
float eng_f16_to_f32(uint16_t v);
uint16_t eng_f32_to_bf16(float f);

#endif
