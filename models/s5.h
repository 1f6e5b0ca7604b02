/* s5.h - the S5 family: language models built of S5 layers (Smith,
 * Warrington, Linderman, ICLR 2023; proto/s5-format.md). */
#ifndef SSMD_S5_H
#define SSMD_S5_H

#include "engine/arch.h"

/* The layer's activation ("activation"), as in the reference's
 * SequenceLayer. */
typedef enum s5_act {
    S5_ACT_GELU = 0,  /* gelu(y) */
    S5_ACT_FULL_GLU,  /* g = gelu(y); out1(g) * sigmoid(out2(g)) */
    S5_ACT_HALF_GLU1, /* g = gelu(y); g * sigmoid(out2(g)) */
    S5_ACT_HALF_GLU2, /* y * sigmoid(out2(gelu(y))) */
} s5_act;

/* The S5 family's own numbers in eng_model_config.family.  d_model is H. */
typedef struct s5_config {
    int ssm_size;   /* P: complex states stored per layer */
    int conj_sym;   /* "conj_sym": y = 2 Re(C x) (the other half of the
                       conjugate pairs implied) or Re(C x) */
    int bilinear;   /* "discretization": 1 "bilinear", 0 "zoh" */
    int act;        /* s5_act */
    int gelu_tanh;  /* "gelu_approximate": tanh form (flax's default) */
    int tie_given;  /* "tie_embeddings" was in the file */
} s5_config;

_Static_assert(sizeof(s5_config) <= ENG_ARCH_CONFIG_BYTES, "s5_config fits the config");

static inline const s5_config *s5_cfg(const eng_model_config *c)
{
    return (const s5_config *)c->family;
}

/* model_type "s5". */
extern const eng_arch s5_arch;

#endif
