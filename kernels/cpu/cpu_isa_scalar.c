/* cpu_isa_scalar.c - the generic CPU kernels as plain C at the build's
 * baseline: the level every CPU runs, and the reference the others are
 * tested against.  The Makefile compiles this file with the SIMD extensions
 * above the baseline turned off (-mno-avx on x86), so SSMD_CPU=scalar is
 * honest even in a -march=native build. */
#define CPU_ISA_SCALAR 1
#include "kernels/cpu/cpu_gen_table.h"

CPU_GEN_TABLE(scalar, CPU_LEVEL_SCALAR);
