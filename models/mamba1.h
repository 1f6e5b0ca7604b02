/* mamba1.h - the Mamba-1 family (transformers' MambaForCausalLM and the
 * original state-spaces/mamba layout) and its Falcon-Mamba variant
 * (FalconMambaForCausalLM). */
#ifndef SSMD_MAMBA1_H
#define SSMD_MAMBA1_H

#include "engine/arch.h"

typedef enum mamba1_layout {
    MAMBA1_LAYOUT_HF = 0,   /* backbone.embeddings.weight, transformers names */
    MAMBA1_LAYOUT_ORIGINAL, /* backbone.embedding.weight, state-spaces/mamba */
} mamba1_layout;

/* Mamba-1's own numbers in eng_model_config.family. */
typedef struct mamba1_config {
    mamba1_layout layout;
    int d_state;       /* state_size | ssm_cfg.d_state (16) */
    int d_inner;       /* intermediate_size | expand * d_model */
    int d_conv;        /* conv_kernel | ssm_cfg.d_conv (4) */
    int dt_rank;       /* time_step_rank, "auto" = ceil(d_model / 16) */
    int use_bias;      /* in_proj/out_proj bias (false) */
    int use_conv_bias; /* conv1d bias (true) */
    float dbc_rms_eps; /* Falcon-Mamba (model_type "falcon_mamba"): dt, B and C
                          are RMS-normalised without weights, with this eps
                          (mixer_rms_eps); 0 for Mamba */
} mamba1_config;

_Static_assert(sizeof(mamba1_config) <= ENG_ARCH_CONFIG_BYTES, "mamba1_config fits the config");

static inline const mamba1_config *mamba1_cfg(const eng_model_config *c)
{
    return (const mamba1_config *)c->family;
}

extern const eng_arch mamba1_arch;

#endif
