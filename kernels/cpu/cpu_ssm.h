/* cpu_ssm.h - CPU conv1d and selective scan for Mamba-1 (see cpu_ssm.c);
 * the semantics of each op are those of the same-named slot of bk_mamba1_ops in
 * backend.h. */
#ifndef SSMD_CPU_SSM_H
#define SSMD_CPU_SSM_H

#include "engine/backend.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_matmul.h"
#include "kernels/cpu/threadpool.h"

/* The scan keeps d_state vectors in registers/stack; models above this are
 * rejected at load. */
#define CPU_SSM_MAX_STATE 256

/* k: the kernel level to run (cpu_kernels_choose). */
void cpu_conv_prefill(const cpu_kernels *k, eng_threadpool *pool, const bk_ssm_layer *l,
                      float *window, const bk_mamba1_io *io);
void cpu_scan_prefill(const cpu_kernels *k, eng_threadpool *pool, const bk_ssm_layer *l,
                      float *state, const bk_mamba1_io *io);
void cpu_conv_step(const cpu_kernels *k, eng_threadpool *pool, const bk_ssm_layer *l,
                   const bk_state_ref *st, const bk_mamba1_io *io);
void cpu_scan_step(const cpu_kernels *k, eng_threadpool *pool, const bk_ssm_layer *l,
                   const bk_state_ref *st, const bk_mamba1_io *io);
/* scan_step_dt: at mm's level, on mm's pool; batches that cpu_matmul
 * would give to sgemm take cpu_matmul then cpu_scan_step. */
void cpu_scan_step_dt(cpu_matmul_ctx *mm, const bk_ssm_layer *l, const bk_matrix *dt_proj,
                      const bk_state_ref *st, const bk_mamba1_io *io);

#endif
