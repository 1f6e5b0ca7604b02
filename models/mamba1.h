/* mamba1.h - the Mamba-1 architecture (transformers' MambaForCausalLM). */
#ifndef SSMD_MAMBA1_H
#define SSMD_MAMBA1_H

#include "engine/arch.h"

extern const eng_arch mamba1_arch;

#endif
