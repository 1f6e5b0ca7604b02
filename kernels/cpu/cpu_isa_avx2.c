/* cpu_isa_avx2.c - the generic CPU kernels for AVX2 + FMA + F16C (8 lanes).
 * The Makefile compiles this file with -mavx2 -mfma -mf16c -mno-avx512f
 * whatever ARCH_FLAGS says; cpu_level.c calls into it only on a CPU (and OS)
 * that runs AVX2.  Empty on other architectures. */
#if defined(__x86_64__)
#define CPU_ISA_AVX2 1
#include "kernels/cpu/cpu_gen_table.h"

CPU_GEN_TABLE(avx2, CPU_LEVEL_AVX2);
#endif
