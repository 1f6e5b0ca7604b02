/* emu.h - control surface of the CPU emulation harness (kernels/emu/emu.cpp)
 * that runs our CUDA kernels on the host: seeding the thread-order shuffle,
 * reading failures and statistics, and switching single barriers off for
 * mutation tests.  C API, for the Check tests.
 *
 * The harness is single-threaded and process-global (the built-ins of an
 * emulated thread must be reachable from anywhere in kernel code); tests run
 * one launch at a time.  It never touches a GPU.
 */
#ifndef SSMD_KC_EMU_H
#define SSMD_KC_EMU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kc_emu_stats {
    uint64_t launches, blocks, threads;
    uint64_t block_barriers; /* __syncthreads released */
    uint64_t warp_syncs;     /* warp exchanges released (shuffles, votes, syncwarp) */
    uint64_t switches;       /* fiber resumptions */
    uint64_t order_hash;     /* hash of the order in which threads were resumed */
} kc_emu_stats;

/* Seeds the shuffle of block order and of thread order between barriers. */
void kc_emu_seed(uint64_t seed);
/* shuffle = 0 runs blocks and threads in index order (for comparisons). */
void kc_emu_set_shuffle(int shuffle);

/* The first failure since the last clear (deadlock, barrier divergence, bad
 * shuffle, bad launch), or NULL.  A failing launch stops at once. */
const char *kc_emu_error(void);
void kc_emu_clear_error(void);
/* Records a failure from kernel code or the shim (first one wins). */
void emu_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void kc_emu_stats_get(kc_emu_stats *out);
void kc_emu_stats_reset(void);

/* Barrier sites (__syncthreads calls, by file and line) reached since the
 * last reset, for mutation tests: kc_emu_sites_reset, run kernels, then
 * kc_emu_site(i) for i < kc_emu_site_count(). */
void kc_emu_sites_reset(void);
int kc_emu_site_count(void);
/* "file:line" of site i (static storage), or NULL when out of range. */
const char *kc_emu_site(int i);
/* Makes site i a no-op (-1: none), as if that __syncthreads were deleted. */
void kc_emu_disable_site(int i);

#ifdef __cplusplus
}
#endif

#endif
