/* cpu_isa_avx2vnni.c - the AVX2 level again, for CPUs that also have
 * AVX-VNNI (the VEX-encoded 256-bit vpdpbusd) but no AVX-512: Intel's
 * client cores from Alder Lake on and the E-core Xeons (Sierra Forest).
 * The same generic kernels, with the quantized matmul's int8 products
 * taken by one vpdpbusd (cpu_vec_int8.h) instead of maddubs + madd.
 * cpu_level.c hands this table out for the avx2 level when cpuid reports
 * AVX-VNNI; the plain one (cpu_isa_avx2.c) serves the others and stays
 * tested on such CPUs.  Empty on other architectures. */
#if defined(__x86_64__)
#define CPU_ISA_AVX2 1
#include "kernels/cpu/cpu_gen_table.h"

CPU_GEN_TABLE_VARIANT(avx2vnni, "avx2", "+vnni", CPU_LEVEL_AVX2);
#endif
