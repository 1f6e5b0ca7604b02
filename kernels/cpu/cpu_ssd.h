/* cpu_ssd.h - CPU ops of the Mamba-2 family (see cpu_ssd.c); the semantics
 * of each op are those of the same-named slot of bk_mamba2_ops in
 * backend.h. */
#ifndef SSMD_CPU_SSD_H
#define SSMD_CPU_SSD_H

#include "engine/backend.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/threadpool.h"

/* The conv and the recurrence run on the level's kernels (k); the gated
 * norm is plain C at the build's baseline.
 * The scan has no size limit of its own (the state lives in the pool);
 * this only bounds what a config may ask. */
#define CPU_SSD_MAX_STATE 65536

/* Which form the prefill recurrence takes: AUTO picks by length (the
 * chunked form from CPU_SSD_CHUNK_MIN_ROWS rows on, from one row at the
 * scalar level); SSMD_SSD=scan|chunk forces one (tests run both).
 * bench/bench_ssd on a mamba2-130m-shaped layer (24 heads of 64 x 128, one
 * thread, Zen 4), CPU time of the op, chunked / scan: AVX-512 0.78x at one
 * row, 1.3x at two, 1.65x at 64, 1.55x at 512; AVX2 0.80x, 1.52x, 1.47x;
 * scalar (its scan has no SIMD, sgemm keeps its own) 3.7x, 6.0x, 5.7x.
 * Chunks of 32, 64 or 128 tokens time the same. */
typedef enum cpu_ssd_form { CPU_SSD_AUTO = 0, CPU_SSD_SCAN, CPU_SSD_CHUNK } cpu_ssd_form;
#define CPU_SSD_CHUNK_LEN 64
#define CPU_SSD_CHUNK_MIN_ROWS 2

/* "" / NULL / "auto", "scan", "chunk" -> *out, returning 0; -1 for
 * anything else, *out unchanged. */
int cpu_ssd_form_parse(const char *name, cpu_ssd_form *out);

void cpu_m2_conv_prefill(const cpu_kernels *k, eng_threadpool *pool, const bk_mamba2_layer *l, float *window,
                         const bk_mamba2_io *io);
void cpu_m2_conv_step(const cpu_kernels *k, eng_threadpool *pool, const bk_mamba2_layer *l, const bk_state_ref *st,
                      const bk_mamba2_io *io);
void cpu_ssd_prefill(const cpu_kernels *k, eng_threadpool *pool, const bk_mamba2_layer *l,
                     float *state, const bk_mamba2_io *io, cpu_ssd_form form);
void cpu_ssd_step(const cpu_kernels *k, eng_threadpool *pool, const bk_mamba2_layer *l,
                  const bk_state_ref *st, const bk_mamba2_io *io);

#endif
