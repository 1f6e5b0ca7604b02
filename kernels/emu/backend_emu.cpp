/* backend_emu.cpp - the CUDA backend's twin for machines without a GPU: the
 * same compute path (backend_core.cu: dispatch, traces, graph cache) and the
 * same kernels, launched through the CPU emulation harness, over host memory
 * standing in for device memory.  Only what cannot be emulated differs: the
 * GEMM is a plain host loop instead of cuBLAS, a "graph" replays the op list
 * it was captured from, and copies are memcpy.
 *
 * Device-like habits are kept so that bugs show: allocations are 256-byte
 * aligned like cudaMalloc, scratch starts as garbage (NaN), the trace arena
 * has separate host and device copies.  For tests only; never in ssmd.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/backend_core.h"
#include "kernels/emu/emu.h"

extern "C" int kc_emu_backend_create(const bk_options *o, bk_backend **out, ssmd_err *err);

enum { ARENA_INTS = 1 << 16 };

typedef struct emu_backend {
    kc_core core; /* first */
    int32_t *stage_buf;
    size_t stage_cap;
    float *scratch[KC_SCRATCH_KINDS];
    size_t scratch_floats[KC_SCRATCH_KINDS];
} emu_backend;

typedef struct emu_graph {
    void (*run)(kc_core *, void *);
    void *arg;
} emu_graph;

static emu_backend *emu_of(void *p) { return (emu_backend *)p; }

/* ---- device side ----------------------------------------------------------- */

static const int32_t *emu_stage(kc_core *c, const int32_t *host, int n)
{
    emu_backend *e = emu_of(c);
    if ((size_t)n > e->stage_cap) {
        free(e->stage_buf);
        e->stage_cap = (size_t)n;
        e->stage_buf = (int32_t *)xmalloc(sizeof(int32_t) * e->stage_cap);
    }
    memcpy(e->stage_buf, host, sizeof(int32_t) * (size_t)n);
    return e->stage_buf;
}

static float *emu_scratch(kc_core *c, int which, size_t floats)
{
    emu_backend *e = emu_of(c);
    if (e->scratch_floats[which] < floats) {
        free(e->scratch[which]);
        e->scratch[which] = (float *)xmalloc(sizeof(float) * floats);
        memset(e->scratch[which], 0xff, sizeof(float) * floats);
        e->scratch_floats[which] = floats;
    }
    return e->scratch[which];
}

/* In double whatever `fast` says: the emulation checks the kernels' logic,
 * not tensor-core rounding. */
static void emu_gemm(kc_core *c, int m, int n, int k, const float *x, int ldx, const float *w, int ldw,
                     float *y, int ldy, int fast)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double acc = 0.0;
            for (int q = 0; q < k; q++)
                acc += (double)x[(size_t)i * ldx + q] * w[(size_t)j * ldw + q];
            y[(size_t)i * ldy + j] = (float)acc;
        }
}

static void emu_gemm_batched(kc_core *c, int batch, int m, int n, int k, const float *x, int ldx,
                             long sx, const float *w, int ldw, long sw, float *y, int ldy, long sy)
{
    for (int i = 0; i < batch; i++)
        emu_gemm(c, m, n, k, x + i * sx, ldx, w + i * sw, ldw, y + i * sy, ldy, 0);
}

static float emu_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* In double, from the bf16 inputs as given. */
static void emu_gemm_bf16(kc_core *c, int m, int n, int k, const uint16_t *x16, const void *w, int ldw,
                          float *y, int ldy)
{
    const uint16_t *w16 = (const uint16_t *)w;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double acc = 0.0;
            for (int q = 0; q < k; q++)
                acc += (double)emu_bf16(x16[(size_t)i * k + q]) * emu_bf16(w16[(size_t)j * ldw + q]);
            y[(size_t)i * ldy + j] = (float)acc;
        }
}

static void emu_arena_upload(kc_core *c, size_t n)
{
    memcpy(c->arena_dev, c->arena_host, sizeof(int32_t) * n);
}

static void emu_arena_wait(kc_core *c) {}

static void *emu_graph_capture(kc_core *c, void (*run)(kc_core *, void *), void *arg)
{
    emu_graph *g = (emu_graph *)xmalloc(sizeof *g);
    g->run = run;
    g->arg = arg;
    return g;
}

static void emu_graph_launch(kc_core *c, void *graph)
{
    emu_graph *g = (emu_graph *)graph;
    g->run(c, g->arg);
}

static void emu_graph_destroy(kc_core *c, void *graph) { free(graph); }

/* A harness failure is a kernel bug: stop loudly, naming the op. */
static void emu_after_op(kc_core *c, const char *what)
{
    if (kc_emu_error())
        ssmd_fatal("emu backend: %s: %s", what, kc_emu_error());
}

static const kc_dev_ops emu_dev = {
    emu_stage,      emu_scratch,       emu_gemm,         emu_gemm_bf16,     emu_arena_upload,  emu_arena_wait,
    emu_graph_capture, emu_graph_launch, emu_graph_destroy, emu_after_op,  emu_gemm_batched,
};

/* ---- memory ops ------------------------------------------------------------------ */

static void *emu_alloc(bk_backend *bk, size_t bytes)
{
    kc_core_flush(&emu_of(bk)->core);
    size_t rounded = (bytes + 255) & ~(size_t)255;
    void *p = aligned_alloc(256, rounded ? rounded : 256);
    if (p)
        memset(p, 0, rounded ? rounded : 256);
    return p;
}

static void emu_release(bk_backend *bk, void *ptr)
{
    kc_core_flush(&emu_of(bk)->core);
    free(ptr);
}

static void emu_copy(bk_backend *bk, void *dst, const void *src, size_t bytes)
{
    kc_core_flush(&emu_of(bk)->core);
    memmove(dst, src, bytes);
}

static void emu_zero(bk_backend *bk, void *dst, size_t bytes)
{
    kc_core_flush(&emu_of(bk)->core);
    memset(dst, 0, bytes);
}

static int emu_matrix_load(bk_backend *bk, const eng_tensor *t, int rows, int cols, bk_matrix *out,
                           ssmd_err *err)
{
    size_t bytes = 0;
    int rc = kc_matrix_bytes(t, rows, cols, &bytes, err);
    if (rc)
        return rc;
    void *p = emu_alloc(bk, bytes);
    if (!p)
        return ssmd_err_set(err, SSMD_ENOMEM, "%s: out of memory for tensor '%s'", t->file, t->name);
    memcpy(p, t->data, bytes);
    *out = kc_matrix_owned(p, t, rows, cols);
    return SSMD_OK;
}

static void emu_matrix_release(bk_backend *bk, bk_matrix *m)
{
    if (m->owned)
        emu_release(bk, (void *)m->data);
    memset(m, 0, sizeof *m);
}

static void emu_destroy(bk_backend *bk)
{
    emu_backend *e = emu_of(bk);
    kc_core_flush(&e->core);
    kc_core_close(&e->core);
    free(e->core.arena_host);
    free(e->core.arena_dev);
    free(e->stage_buf);
    for (int i = 0; i < KC_SCRATCH_KINDS; i++)
        free(e->scratch[i]);
    free(e);
}

extern "C" int kc_emu_backend_create_tuned(const kc_tuning *tune, bk_backend **out, ssmd_err *err)
{
    emu_backend *e = (emu_backend *)calloc(1, sizeof *e);
    if (!e)
        return ssmd_err_set(err, SSMD_ENOMEM, "emu backend: out of memory");
    kc_core *c = &e->core;
    static const kc_memory_ops emu_memory = {"emu",    emu_destroy, emu_alloc,       emu_release,
                                             emu_copy, emu_copy,    emu_copy,        emu_zero,
                                             emu_matrix_load,       emu_matrix_release};
    kc_core_init(c, &emu_memory);
    c->dev = &emu_dev;
    c->stream = NULL;
    if (tune) {
        c->tune = *tune;
    } else {
        /* small settings so that tiny fixture models use every path: several
         * scan chunks and carry passes, GEMV and GEMM, several panels */
        kc_tuning_default(&c->tune);
        c->tune.scan_chunk = 4;
        c->tune.carry_rows = 4;
        c->tune.gemv_max_rows = 2;
        c->tune.panel_floats = 512;
    }
    c->arena_cap = ARENA_INTS;
    c->arena_host = (int32_t *)xmalloc(sizeof(int32_t) * ARENA_INTS);
    c->arena_dev = (int32_t *)xmalloc(sizeof(int32_t) * ARENA_INTS);
    memset(c->arena_dev, 0xff, sizeof(int32_t) * ARENA_INTS);
    *out = &c->base;
    return SSMD_OK;
}

extern "C" int kc_emu_backend_create(const bk_options *o, bk_backend **out, ssmd_err *err)
{
    int rc = kc_emu_backend_create_tuned(NULL, out, err);
    if (rc == SSMD_OK)
        ((kc_core *)*out)->fast_numerics = o && o->numerics == BK_NUMERICS_FAST;
    return rc;
}
