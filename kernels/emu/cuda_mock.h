/* cuda_mock.h - control surface of the CUDA runtime/cuBLAS mock
 * (cuda_mock.cpp) that lets tests run the real kernels/cuda/backend_cuda.cu on
 * the host: device count and compute capability, a device-memory budget
 * (out-of-memory paths), failing graph captures, leak and activity
 * counters.  C API for the Check tests; never part of ssmd. */
#ifndef SSMD_KC_CUDA_MOCK_H
#define SSMD_KC_CUDA_MOCK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kc_mock_stats {
    uint64_t kernels, copies, memsets, gemms, graph_launches, syncs;
    uint64_t tf32_gemms;     /* GEMMs run with TF32 math allowed (should stay 0) */
    uint64_t bf16_gemms;     /* GEMMs on bf16 inputs (numerics fast only) */
    size_t peak_bytes;       /* most device memory live at once */
} kc_mock_stats;

/* Back to one device of compute capability 9.0, no budget, no faults, zero
 * counters.  Only while no backend is alive. */
void kc_mock_reset(void);
void kc_mock_set_device(int count, int major, int minor);
/* cudaMalloc fails once live device bytes would exceed this. */
void kc_mock_set_budget(size_t bytes);
/* The next n stream captures end with cudaErrorStreamCaptureInvalidated. */
void kc_mock_fail_captures(int n);
/* Device and pinned allocations still alive. */
size_t kc_mock_live_allocations(void);
void kc_mock_stats_get(kc_mock_stats *out);

#ifdef __cplusplus
}
#endif

#endif
