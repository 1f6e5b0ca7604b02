/* cpu_isa_avx512.c - the generic CPU kernels for AVX-512 F/BW/DQ/VL (16
 * lanes).  The Makefile compiles this file with those extensions whatever
 * ARCH_FLAGS says; cpu_level.c calls into it only on a CPU (and OS) that
 * runs them.  Empty on other architectures. */
#if defined(__x86_64__)
#define CPU_ISA_AVX512 1
#include "kernels/cpu/cpu_gen_table.h"

CPU_GEN_TABLE(avx512, CPU_LEVEL_AVX512);
#endif
