/* weights.h - for weights sources only: how a source (safetensors.c; a
 * GGUF reader next) fills the tensor table behind engine/tensor.h's
 * eng_weights.  Everything above the sources uses engine/tensor.h alone.
 */
#ifndef SSMD_WEIGHTS_H
#define SSMD_WEIGHTS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"
#include "engine/tensor.h"

typedef struct eng_weights_source {
    const char *name; /* "safetensors" */
    /* 1 when dir holds this source's files; NULL: the fallback source,
     * tried last, whose error says what is missing. */
    int (*probe)(const char *dir);
    /* Adds dir's tensors to w (eng_weights_add, eng_weights_set_origin,
     * then eng_weights_finish).  *priv receives what the source keeps open
     * (maps...); close(*priv) is called when w closes, after an error too.
     * Returns SSMD_OK or an error naming the file, tensor and problem. */
    int (*load)(eng_weights *w, const char *dir, void **priv, ssmd_err *err);
    void (*close)(void *priv);
} eng_weights_source;

extern const eng_weights_source eng_safetensors_source;
extern const eng_weights_source eng_gguf_source;

/* A new zeroed tensor named `name` (copied; owned by w), to be filled by
 * the source.  The pointer is valid until the next add. */
eng_tensor *eng_weights_add(eng_weights *w, const char *name);
/* The file or index named in messages about the whole set (copied). */
void eng_weights_set_origin(eng_weights *w, const char *origin);
const char *eng_weights_origin(const eng_weights *w);
/* Sorts the table for lookup, rejects a name that appears twice (across
 * files) and gives any tensor whose data is not aligned to its element
 * size an aligned copy, so that readers may use it as float/uint16_t
 * arrays without UB.  SSMD_OK or SSMD_EFORMAT. */
int eng_weights_finish(eng_weights *w, ssmd_err *err);

/* A whole file mapped read-only. */
typedef struct eng_mapped_file {
    char *path;         /* owned; named in every message about this file */
    const uint8_t *map; /* PROT_READ mapping, size bytes */
    size_t size;
} eng_mapped_file;

/* Maps the regular file at path, which must hold at least min_size bytes
 * (a `format` header).  why: appended to an open failure's message ("" or
 * " (shard listed in ...)").  SSMD_EIO when it cannot be opened or mapped,
 * SSMD_EFORMAT when it is not a regular file or too short. */
int eng_file_map(const char *path, size_t min_size, const char *format, const char *why,
                 eng_mapped_file *out, ssmd_err *err);
void eng_file_unmap(eng_mapped_file *f);

/* Hands w a config (the JSON object a config.json would hold) that the
 * weights file carries itself (GGUF's metadata); w owns it. */
void eng_weights_set_config(eng_weights *w, json_t *config);
/* The same for the tokenizer the file carries, as a tokenizer.json object. */
void eng_weights_set_tokenizer(eng_weights *w, json_t *tokenizer);

/* GGUF's (llama.cpp's) name for our tensor name `ours` in a file of
 * architecture `arch` ("mamba" or "mamba2"; into buf), or NULL when that
 * layout has none (gguf.c's tables, both directions). */
const char *eng_gguf_tensor_name(const char *arch, const char *ours, char *buf, size_t size);
/* The ggml type number of dt in a GGUF file, or -1 when GGUF has none. */
int eng_gguf_type_id(eng_dtype dt);

/* "[3, 4]" into buf (truncated if it does not fit). */
const char *eng_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

#endif
