/* cpu_isa_neon.c - the generic CPU kernels for aarch64 Advanced SIMD (4
 * lanes, FMA, f16 and bf16 widened on load).  NEON is part of the aarch64
 * baseline, so no flags are needed.  Empty on other architectures. */
#if defined(__aarch64__)
#define CPU_ISA_NEON 1
#include "kernels/cpu/cpu_gen_table.h"

CPU_GEN_TABLE(neon, CPU_LEVEL_NEON);
#endif
