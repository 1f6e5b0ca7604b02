/* cpu_isa_neon_dotprod.c - the NEON level again, for cores with the
 * Armv8.2 dot-product instructions (Neoverse N1 / Graviton2, Apple M1 and
 * later): the same generic kernels, with the quantized matmul's int8
 * products taken by sdot (cpu_vec_int8.h) instead of widening multiplies.
 * cpu_level.c hands this table out for the neon level when the kernel's
 * hwcaps report ASIMDDP.  The Makefile compiles this file with
 * +dotprod.  Empty on other architectures. */
#if defined(__aarch64__)
#define CPU_ISA_NEON 1
#include "kernels/cpu/cpu_gen_table.h"

CPU_GEN_TABLE_VARIANT(neon_dotprod, "neon", "+dotprod", CPU_LEVEL_NEON);
#endif
