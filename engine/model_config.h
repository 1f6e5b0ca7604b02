/* model_config.h - a model directory's config.json, read into a plain struct.
 *
 * Understands the Hugging Face `MambaConfig` keys, the original
 * state-spaces/mamba layout (`d_model`, `n_layer`, `ssm_cfg`) and our S4/S4D
 * layout (model_type "s4d" / "s4", proto/s4-format.md), and fills every
 * hyper-parameter that changes the math, with transformers' defaults for
 * absent keys.  Never touches weights.
 */
#ifndef SSMD_MODEL_CONFIG_H
#define SSMD_MODEL_CONFIG_H

#include "engine/error.h"

typedef enum eng_layout {
    ENG_LAYOUT_HF = 0,   /* backbone.embeddings.weight, transformers names */
    ENG_LAYOUT_ORIGINAL, /* backbone.embedding.weight, state-spaces/mamba */
} eng_layout;

typedef struct eng_model_config {
    char model_type[32];  /* "mamba" (also for the original layout) */
    eng_layout layout;
    int d_model;          /* hidden_size | d_model */
    int n_layer;          /* num_hidden_layers | n_layer */
    int vocab_size;       /* logits width; embedding rows may be more */
    int d_state;          /* state_size | ssm_cfg.d_state (16) */
    int d_inner;          /* intermediate_size | expand * d_model */
    int d_conv;           /* conv_kernel | ssm_cfg.d_conv (4) */
    int dt_rank;          /* time_step_rank, "auto" = ceil(d_model / 16) */
    int use_bias;         /* in_proj/out_proj bias (false) */
    int use_conv_bias;    /* conv1d bias (true) */
    int tie_embeddings;   /* tie_word_embeddings (true); an absent
                             lm_head.weight also means tied */
    float norm_eps;       /* layer_norm_epsilon (1e-5) */
    int eos_token_id;     /* -1 when unknown */
    int bos_token_id;     /* -1 when unknown */
    /* S4 / S4D (model_type "s4d" or "s4", proto/s4-format.md): d_model (H),
     * n_layer, vocab_size, d_state (N, even: N/2 complex pairs), norm_eps
     * (LayerNorm), tie_embeddings, bos/eos above; d_inner = d_model,
     * d_conv = dt_rank = 0.  Zero for Mamba. */
    int s4_rank;          /* "rank": low-rank terms of S4's A (1); 0 for s4d */
    int s4_bilinear;      /* "discretization": 1 "bilinear", 0 "zoh" (s4d default) */
} eng_model_config;

/* Reads `path` (a config.json).  Returns SSMD_OK, or SSMD_EIO / SSMD_EFORMAT
 * with err->msg naming the file and the key or JSON problem (with line and
 * column for syntax errors).  Values must be positive and sane (no zero
 * layers, no d_inner that overflows int).  Any thread. */
int eng_model_config_load(const char *path, eng_model_config *cfg, ssmd_err *err);

#endif
