/* cpu_isa_avx512vnni.c - the AVX-512 level again, for CPUs that also have
 * AVX-512 VNNI (Ice Lake, Cascade Lake, Zen 4 and later): the same
 * generic kernels, with the quantized matmul's int8 products taken by
 * vpdpbusd (cpu_vec_int8.h) instead of maddubs + madd.  cpu_level.c hands this
 * table out for the avx512 level when cpuid reports VNNI; the plain one
 * (cpu_isa_avx512.c) serves AVX-512 CPUs without it.  Empty elsewhere. */
#if defined(__x86_64__)
#define CPU_ISA_AVX512 1
#include "kernels/cpu/cpu_gen_table.h"

CPU_GEN_TABLE_VARIANT(avx512vnni, "avx512", "+vnni", CPU_LEVEL_AVX512);
#endif
