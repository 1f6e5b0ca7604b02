/* s4.h - S4D and S4 (DPLR) language models (proto/s4-format.md). */
#ifndef SSMD_S4_H
#define SSMD_S4_H

#include "engine/arch.h"

extern const eng_arch s4d_arch; /* model_type "s4d": diagonal A, ZOH or bilinear */
extern const eng_arch s4_arch;  /* model_type "s4": A = Lambda - P P^*, bilinear */

#endif
