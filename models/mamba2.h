/* mamba2.h - the Mamba-2 family (transformers' Mamba2ForCausalLM and the
 * original state-spaces/mamba layout with ssm_cfg.layer "Mamba2"). */
#ifndef SSMD_MAMBA2_H
#define SSMD_MAMBA2_H

#include "engine/arch.h"

typedef enum mamba2_layout {
    MAMBA2_LAYOUT_HF = 0,   /* backbone.embeddings.weight */
    MAMBA2_LAYOUT_ORIGINAL, /* backbone.embedding.weight, padded vocabulary */
} mamba2_layout;

/* Mamba-2's own numbers in eng_model_config.family. */
typedef struct mamba2_config {
    mamba2_layout layout;
    int d_inner;          /* expand * d_model = nheads * head_dim */
    int d_state;          /* state_size | ssm_cfg.d_state (128) */
    int d_conv;           /* conv_kernel | ssm_cfg.d_conv (4) */
    int nheads, head_dim; /* num_heads, head_dim | d_inner / headdim, headdim (64) */
    int ngroups;          /* n_groups | ssm_cfg.ngroups: B/C groups and norm groups */
    int use_bias;         /* in_proj/out_proj bias */
    int use_conv_bias;    /* conv1d bias */
    int norm_before_gate; /* original layout's option; transformers: false */
    int chunk_size;       /* the training kernels' chunk (kept for the fingerprint) */
    float dt_min, dt_max; /* time_step_limit | ssm_cfg.dt_limit: dt is clamped to it */
} mamba2_config;

_Static_assert(sizeof(mamba2_config) <= ENG_ARCH_CONFIG_BYTES, "mamba2_config fits the config");

static inline const mamba2_config *mamba2_cfg(const eng_model_config *c)
{
    return (const mamba2_config *)c->family;
}

extern const eng_arch mamba2_arch;

#endif
