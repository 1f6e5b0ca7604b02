/* backend_core.h - the device-independent half of the CUDA backend, shared
 * with its emulated twin (kernels/emu/backend_emu.cpp) so that the tests run
 * the very code the GPU build runs: the bk_backend compute ops (embed,
 * add_rmsnorm, matmul dispatch, conv/scan prefill and step), the recording of
 * a decode step into a trace, and the cache of captured graphs that replays
 * a recorded step when the same step (same batch, same buffers) comes again.
 *
 * How a step becomes a graph: step_begin starts a trace; compute ops are
 * then recorded instead of run, their host index arrays (token ids, slots)
 * copied into a pinned arena; step_end, and any memory op (read, write,
 * copy, alloc...) before it, flushes the trace.  A trace with decode ops is looked up by its exact op
 * list: the first time it runs eagerly, the second time it is captured into
 * a graph, and from then on the graph is launched after uploading the arena.
 * A trace with prefill ops flushes at once and runs eagerly.
 *
 * Engine thread only, like every backend.
 */
#ifndef SSMD_KC_BACKEND_CORE_H
#define SSMD_KC_BACKEND_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "engine/backend.h"
#include "engine/xalloc.h"
#ifdef __cplusplus
}
#endif

#include "kernels/cuda/kc_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { KC_SCRATCH_SCAN = 0, KC_SCRATCH_PANEL = 1, KC_SCRATCH_X16 = 2, KC_SCRATCH_SSD = 3, KC_SCRATCH_KINDS = 4 };
enum { KC_MAX_GRAPHS = 128 }; /* bound of tune.graph_cache */

typedef struct kc_core kc_core;

/* What differs between the GPU and the emulation. */
typedef struct kc_dev_ops {
    /* Device copy of n host ints, valid for work enqueued next; the host
     * array may be reused when this returns. */
    const int32_t *(*stage)(kc_core *c, const int32_t *host, int n);
    /* Device scratch of at least `floats` floats for one purpose
     * (KC_SCRATCH_*), kept between calls; NULL when out of memory. */
    float *(*scratch)(kc_core *c, int which, size_t floats);
    /* y (m, n; ldy) = x (m, k; ldx) w^T with w (n, k; ldw), all f32;
     * fast: the inputs may be rounded to TF32 (tensor cores). */
    void (*gemm)(kc_core *c, int m, int n, int k, const float *x, int ldx, const float *w, int ldw,
                 float *y, int ldy, int fast);
    /* y (m, n; ldy, f32) = x16 (m, k; contiguous) w^T with x16 and w (n,
     * k; ldw) in bf16: tensor cores, f32 accumulation. */
    void (*gemm_bf16)(kc_core *c, int m, int n, int k, const uint16_t *x16, const void *w, int ldw,
                      float *y, int ldy);
    /* Copies arena_host[0, n) to arena_dev, in stream order. */
    void (*arena_upload)(kc_core *c, size_t n);
    /* Returns once the last upload no longer reads arena_host. */
    void (*arena_wait)(kc_core *c);
    /* Captures the stream work of run(c, arg) as a graph (without running
     * it); NULL when capture is impossible. */
    void *(*graph_capture)(kc_core *c, void (*run)(kc_core *, void *), void *arg);
    void (*graph_launch)(kc_core *c, void *graph);
    void (*graph_destroy)(kc_core *c, void *graph);
    /* Called after each op's launches (what: the op's name): checks launch
     * errors, or synchronises when debugging. */
    void (*after_op)(kc_core *c, const char *what);
    /* batch products y_i = x_i w_i^T as gemm (f32, exact), operand i at
     * x + i * sx, w + i * sw, y + i * sy. */
    void (*gemm_batched)(kc_core *c, int batch, int m, int n, int k, const float *x, int ldx,
                         long sx, const float *w, int ldw, long sw, float *y, int ldy, long sy);
} kc_dev_ops;

/* One recorded compute op; compared bytewise, so it is zeroed before its
 * fields are set one by one. */
typedef struct kc_op {
    int kind, n, dim, T, m, ldx, ldy, ldz;
    float eps;
    int fast;          /* matmul: TF32 allowed (numerics fast, precision default) */
    bk_matrix w;
    bk_ssm_layer l;
    bk_mamba2_layer l2;  /* the SSD ops */
    bk_s4_layer l4;      /* the S4 ops */
    const float *in[4];
    float *out[3];
    float *pool;
    size_t slot_stride, conv_offset, ssm_offset;
    size_t arena_off;  /* ids or slots in the arena; SIZE_MAX: none */
} kc_op;

typedef struct kc_graph {
    kc_op *ops;
    int n_ops, seen, failed;
    uint64_t last_use;  /* for evicting the least recently used */
    void *exec;
} kc_graph;

typedef struct kc_core_stats {
    uint64_t traces, eager_traces, graph_captures, graph_launches, capture_failures, evictions;
} kc_core_stats;

struct kc_core {
    bk_backend base;           /* first: the handle given out */
    const kc_dev_ops *dev;
    kc_stream stream;
    kc_tuning tune;
    int fast_numerics;         /* bk_options numerics "fast" */
    int tracing;
    kc_op *ops;                /* (cap_ops) the trace being recorded */
    int n_ops, cap_ops;
    int32_t *arena_host;       /* (arena_cap) pinned host memory */
    int32_t *arena_dev;        /* (arena_cap) device memory */
    size_t arena_cap, arena_used;
    size_t last_slots_off;     /* dedup of identical slot arrays in a trace */
    int last_slots_n;
    kc_graph graphs[KC_MAX_GRAPHS];
    int n_graphs;
    uint64_t clock;            /* flushes so far, for last_use */
    kc_core_stats stats;
};

/* What a backend built on kc_core supplies of the bk_backend core: its
 * name and memory ops (in bk_backend's order). */
typedef struct kc_memory_ops {
    const char *name;
    void (*destroy)(bk_backend *bk);
    void *(*alloc)(bk_backend *bk, size_t bytes);
    void (*release)(bk_backend *bk, void *ptr);
    void (*write)(bk_backend *bk, void *dst, const void *host_src, size_t bytes);
    void (*read)(bk_backend *bk, void *host_dst, const void *src, size_t bytes);
    void (*copy)(bk_backend *bk, void *dst, const void *src, size_t bytes);
    void (*zero)(bk_backend *bk, void *dst, size_t bytes);
    int (*matrix_load)(bk_backend *bk, const eng_tensor *t, int rows, int cols, bk_matrix *out,
                       ssmd_err *err);
    void (*matrix_release)(bk_backend *bk, bk_matrix *m);
} kc_memory_ops;

/* Sets c->base: mem's name and memory ops, and the shared compute ops and
 * family tables (Mamba-1, Mamba-2, the S4 family, S5, and the optional
 * add_layernorm, glu and rms_rows).  The caller sets c->dev/stream/tune/arena_* before
 * any op runs. */
void kc_core_init(kc_core *c, const kc_memory_ops *mem);

/* What matrix_load needs of a weight tensor on this backend: f32/f16/bf16
 * (SSMD_EUNSUPPORTED naming the tensor otherwise); *bytes of the whole
 * matrix. */
int kc_matrix_bytes(const eng_tensor *t, int rows, int cols, size_t *bytes, ssmd_err *err);
/* The matrix for t's copy at data (owned by the backend). */
bk_matrix kc_matrix_owned(void *data, const eng_tensor *t, int rows, int cols);
/* Runs whatever is recorded.  Every memory op of a backend calls it first. */
void kc_core_flush(kc_core *c);
/* Destroys the graphs and the trace (not the arena: the backend owns it). */
void kc_core_close(kc_core *c);

/* Trace and graph statistics of a backend built on kc_core (cuda or emu;
 * never the cpu backend). */
void kc_core_stats_get(bk_backend *bk, kc_core_stats *out);

/* The emulated backend (kernels/emu/backend_emu.cpp), for tests: tune NULL
 * uses small chunk/tile settings that make tiny models cover every path. */
int kc_emu_backend_create_tuned(const kc_tuning *tune, bk_backend **out, ssmd_err *err);

#ifdef __cplusplus
}
#endif

#endif
