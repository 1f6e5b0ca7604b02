/* s4.h - the S4 family: S4D and S4 (DPLR) language models
 * (proto/s4-format.md). */
#ifndef SSMD_S4_H
#define SSMD_S4_H

#include "engine/arch.h"

/* The S4 family's own numbers in eng_model_config.family.  d_model is the
 * SSM's channel count H. */
typedef struct s4_config {
    int d_state;   /* N, even: N/2 complex conjugate pairs */
    int rank;      /* "rank": low-rank terms of S4's A (1); 0 for s4d */
    int bilinear;  /* "discretization": 1 "bilinear", 0 "zoh" (s4d default) */
    int tie_given; /* "tie_embeddings" was in the file (else: own head when
                      the file has lm_head.weight, the embedding otherwise) */
} s4_config;

_Static_assert(sizeof(s4_config) <= ENG_ARCH_CONFIG_BYTES, "s4_config fits the config");

static inline const s4_config *s4_cfg(const eng_model_config *c)
{
    return (const s4_config *)c->family;
}

/* model_type "s4d" (diagonal A, ZOH or bilinear) and "s4" (A = Lambda -
 * P P^*, bilinear): one family, told apart by rank. */
extern const eng_arch s4_arch;

#endif
