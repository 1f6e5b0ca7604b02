/* cpu_gen_table.h - compiles every generic CPU kernel (cpu_gen_*.h) for
 * the level its includer selected, and defines that level's table.
 *
 * Included once by each cpu_isa_*.c after it has defined its CPU_ISA_*
 * macro; CPU_GEN_TABLE(name, level) then defines cpu_kernels_<name>, and
 * CPU_GEN_TABLE_VARIANT a second table of a level built with more
 * instructions (VNNI, dot product).  The
 * level's flags come from the Makefile (per-file), so nothing in here may
 * be called before cpu_level.c has checked that the CPU runs the level.
 */
#ifndef SSMD_CPU_GEN_TABLE_H
#define SSMD_CPU_GEN_TABLE_H

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_vec.h"

#include "kernels/cpu/cpu_gen_matmul.h"
#include "kernels/cpu/cpu_gen_qmatmul.h"
#include "kernels/cpu/cpu_gen_s4.h"
#include "kernels/cpu/cpu_gen_ssd.h"
#include "kernels/cpu/cpu_gen_ssd_chunk.h"
#include "kernels/cpu/cpu_gen_ssm.h"

#define CPU_GEN_TABLE(NAME, LEVEL) CPU_GEN_TABLE_VARIANT(NAME, #NAME, "", LEVEL)

/* A level's table compiled with extra instructions (cpu_kernels.variant),
 * defined as cpu_kernels_<SYM> and answering to the level's name. */
#define CPU_GEN_TABLE_VARIANT(SYM, NAME, VARIANT, LEVEL)                                          \
    const cpu_kernels cpu_kernels_##SYM = {                                                       \
        .level = LEVEL,                                                                           \
        .name = NAME,                                                                             \
        .variant = VARIANT,                                                                       \
        .gemv_rows = gen_gemv_rows,                                                               \
        .qgemv_rows = gen_qgemv_rows,                                                             \
        .q8_rows = gen_q8_rows,                                                                   \
        .row_to_f32 = gen_row_to_f32,                                                             \
        .sum = gen_sum,                                                                           \
        .math = gen_math,                                                                         \
        .conv_channels = gen_conv_channels,                                                       \
        .scan_channels = gen_scan_channels,                                                       \
        .ssd_token = gen_ssd_token,                                                               \
        .ssd_chunk = gen_ssd_chunk,                                                               \
        .s4_block = gen_s4_block,                                                                 \
        .s4_diag_step = gen_s4_diag_step,                                                         \
    }

#endif
