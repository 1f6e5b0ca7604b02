/* common.h - the skeleton every language-model family in models/ shares:
 * embedding -> n_layer pre-norm residual blocks -> final norm -> LM head,
 * with the loader helpers, the tied or padded head, the scratch buffers
 * and the chunked prefill / batched decode loops.
 *
 * A family (models/mamba1.c, models/s4.c) embeds mdl_lm first in its model
 * struct and describes itself with an mdl_family: how to load, free and run
 * one layer, how much state a layer keeps, what it needs of the backend.
 * Everything else -- the eng_arch entry points but `load` -- is common and
 * lives here.  Never touches HTTP or sessions.
 */
#ifndef SSMD_MODELS_COMMON_H
#define SSMD_MODELS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "engine/arch.h"
#include "engine/backend.h"

typedef struct mdl_lm mdl_lm;

/* Loading one model: names the tensor being read in every message. */
typedef struct mdl_loader {
    mdl_lm *m;
    const eng_weights *w;
    ssmd_err *err;
} mdl_loader;

/* The tensor names of the parts outside the layers. */
typedef struct mdl_end_names {
    const char *embed;    /* (rows >= vocab_size, d_model) */
    const char *lm_head;  /* untied head, used when present and not tied */
    const char *lm_head_bias; /* optional bias of an untied head, or NULL */
    const char *norm_w;   /* final norm weight (d_model) */
    const char *norm_b;   /* final norm bias, NULL for RMSNorm */
} mdl_end_names;

typedef struct mdl_family {
    size_t model_bytes;   /* sizeof the family's model struct (mdl_lm first) */
    size_t layer_bytes;   /* sizeof one layer struct */
    int layer_norm;       /* 1: LayerNorm with bias everywhere; 0: RMSNorm */
    /* SSMD_OK, or SSMD_EUNSUPPORTED naming what bk lacks (mdl_require). */
    int (*check)(const eng_model_config *cfg, const bk_backend *bk, ssmd_err *err);
    /* Recurrent state floats of one layer of one slot. */
    size_t (*layer_floats)(const eng_model_config *cfg);
    void (*end_names)(const eng_model_config *cfg, mdl_end_names *out);
    /* Loads layer i into `layer` (zeroed); on error what it did load is
     * freed by free_layer. */
    int (*load_layer)(mdl_loader *ld, int i, void *layer);
    void (*free_layer)(mdl_lm *m, void *layer);
    /* The family's scratch beyond resid/xn/out, max_rows rows (optional). */
    int (*alloc_scratch)(mdl_lm *m, ssmd_err *err);
    void (*free_scratch)(mdl_lm *m);
    /* One block on `rows` rows of m->resid: mdl_prenorm(m, i, ...), the
     * mixer, output into m->out.  prefill: one sequence, state = this
     * layer's state.  decode: st's offsets point at this layer's state
     * (conv_offset = ssm_offset = the layer's start). */
    void (*prefill_layer)(mdl_lm *m, int i, const void *layer, float *state, int rows);
    void (*decode_layer)(mdl_lm *m, int i, const void *layer, const bk_state_ref *st);
    /* Optional: prefill of several sequences at once.  The rows are the
     * segments' tokens back to back (segment k: seg_rows[k] rows, states[k]
     * its state for this layer); the row-wise work (norms, matmuls) runs
     * once over all rows, the sequence ops per segment from its own state.
     * NULL: mdl_lm_prefill_multi runs the sequences one by one. */
    void (*prefill_layer_multi)(mdl_lm *m, int i, const void *layer, float *const *states,
                                const int *seg_rows, int n_seg, int rows);
} mdl_family;

struct mdl_lm {
    const mdl_family *fam;
    eng_model_config cfg;
    bk_backend *bk;          /* borrowed */
    bk_matrix embed;         /* (embedding rows, d_model) */
    bk_matrix lm_head;       /* (vocab_size, d_model): own tensor or embed's rows */
    float *lm_head_b;        /* (vocab_size) or NULL */
    float *norm_f_w, *norm_f_b; /* (d_model); b NULL for RMSNorm */
    void *layers;            /* (n_layer) of fam->layer_bytes */
    int max_rows;            /* rows of scratch: max(prefill chunk, max_batch) */
    int logits_rows;         /* rows of the logits scratch */
    /* scratch, backend memory */
    float *resid;            /* (max_rows, d_model) residual stream */
    float *xn;               /* (max_rows, d_model) normed block input */
    float *out;              /* (max_rows, d_model) block output */
    float *logits;           /* (logits_rows, vocab_size) */
    int64_t n_params;
    size_t weight_bytes;
};

/* ---- for a family's load ---------------------------------------------------- */

/* eng_arch.load of a family: builds the model (fam->model_bytes, zeroed,
 * mdl_lm first) through fam.  Returns SSMD_OK and *out, or an error with
 * nothing left allocated. */
int mdl_lm_load(const mdl_family *fam, const eng_model_config *cfg, const eng_weights *w,
                bk_backend *bk, int max_batch, void **out, ssmd_err *err);

/* SSMD_EUNSUPPORTED naming the backend, the family and `what` when !have. */
int mdl_require(int have, const bk_backend *bk, const eng_model_config *cfg, const char *what,
                ssmd_err *err);

/* Tensor `name` checked against shape[0..ndim), counted in the model's
 * parameters and bytes; NULL with ld->err set. */
const eng_tensor *mdl_get(mdl_loader *ld, const char *name, int ndim, const int64_t *shape);
/* The tensor as malloc'd host f32 (the caller frees), or NULL. */
float *mdl_host_f32(mdl_loader *ld, const char *name, int ndim, const int64_t *shape);
/* n host floats copied into new backend memory (`what` names it in the
 * out-of-memory message), or NULL. */
float *mdl_upload(mdl_loader *ld, const float *host, size_t n, const char *what);
/* A small tensor (rows, cols) read as f32, transposed to (cols, rows) --
 * the time/state-major layout the kernels walk -- optionally mapped
 * through A = -exp(A_log), and uploaded to *dst. */
int mdl_transposed(mdl_loader *ld, float **dst, const char *name, int ndim, const int64_t *shape,
                   int rows, int cols, int neg_exp);
/* A 1-D f32 tensor of n values uploaded to *dst. */
int mdl_vector(mdl_loader *ld, float **dst, const char *name, int64_t n);
/* A 2-D weight matrix through the backend's matrix_load. */
int mdl_matrix(mdl_loader *ld, bk_matrix *dst, const char *name, int64_t rows, int64_t cols);
/* "prefix.layers.<i>.<suffix>" into buf (the layer tensor names). */
const char *mdl_layer_name(char *buf, size_t size, const char *prefix, int i, const char *suffix);

/* Allocates each *ptrs[k] = floats[k] floats of backend memory. */
int mdl_alloc_all(mdl_lm *m, float **const *ptrs, const size_t *floats, size_t n, ssmd_err *err);
/* Releases every non-NULL backend buffer in ptrs[0..n). */
void mdl_release_all(bk_backend *bk, void *const *ptrs, size_t n);
/* Releases every loaded matrix in mats[0..n). */
void mdl_release_matrices(bk_backend *bk, bk_matrix *const *mats, size_t n);

/* ---- for a family's config ------------------------------------------------- */

/* The top level of state-spaces/mamba's MambaConfig (the "original" layout,
 * no model_type): d_model, n_layer, vocab_size, tie_embeddings, bos/eos
 * into c; refuses MLP blocks, LayerNorm and attention layers.  *ssm gets a
 * reference to ssm_cfg (an empty object when absent; the caller
 * json_decref's it) and *sub a reader whose messages say "ssm_cfg.". */
int mdl_cfg_original(const eng_cfg_reader *r, const json_t *root, eng_model_config *c,
                     eng_cfg_reader *sub, json_t **ssm);
/* SSMD_EUNSUPPORTED naming the first key of root that is not in
 * known[0..n) (a key a format does not define may change the math, so it
 * is refused, never ignored); `format` names the format in the message. */
int mdl_cfg_known_keys(const eng_cfg_reader *r, const json_t *root, const char *const *known,
                       size_t n, const char *format);

/* What the head tensors must agree with in the config: no 'lm_head.weight'
 * when tie_embeddings was given true (tie_given), no 'lm_head.bias' on a
 * tied head (our formats' names). */
int mdl_check_head(const eng_model_config *c, int tie_given, const eng_weights *w, ssmd_err *err);

/* 1 when root is an original-layout config whose ssm_cfg.layer is `layer`. */
int mdl_cfg_original_is(const json_t *root, const char *layer);

/* ---- for a family's layers ----------------------------------------------------- */

/* The pre-norm of block i: resid (rows) += the previous block's output
 * (none for block 0); xn = norm(resid) with this block's weights. */
void mdl_prenorm(mdl_lm *m, int i, const float *w, const float *b, int rows);

/* ---- the common eng_arch entry points ------------------------------------------- */

void mdl_lm_free(void *arch);
size_t mdl_lm_state_floats(const void *arch);
int64_t mdl_lm_n_params(const void *arch);
size_t mdl_lm_weight_bytes(const void *arch);
eng_dtype mdl_lm_weight_dtype(const void *arch);
void mdl_lm_prefill(void *arch, float *state, const int32_t *ids, int n, float *logits,
                    int all_logits);
/* eng_arch.prefill_multi: one pass over the sequences' tokens (at most
 * max_rows rows at a time) when the family has prefill_layer_multi. */
void mdl_lm_prefill_multi(void *arch, float *const *states, const int32_t *const *ids, const int *n,
                          float *const *logits, int n_seq);
void mdl_lm_decode(void *arch, float *pool, const int32_t *slots, const int32_t *ids, int batch,
                   float *logits);

/* The eng_arch fields every family shares (after .load). */
#define MDL_LM_ARCH_OPS                                                                  \
    .free = mdl_lm_free, .state_floats = mdl_lm_state_floats, .n_params = mdl_lm_n_params, \
    .weight_bytes = mdl_lm_weight_bytes, .weight_dtype = mdl_lm_weight_dtype,              \
    .prefill = mdl_lm_prefill, .prefill_multi = mdl_lm_prefill_multi, .decode = mdl_lm_decode

#endif
