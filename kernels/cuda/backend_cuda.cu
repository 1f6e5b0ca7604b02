/* backend_cuda.cu - the "cuda" backend: device memory, one stream, cuBLAS
 * for f32 GEMMs, pinned staging for token ids and slot indices, and CUDA
 * graphs for repeated decode steps.  The compute ops and the graph cache are
 * backend_core.cu's (shared with the emulated twin that the tests run); this
 * file is only what needs a real GPU.
 *
 * Errors: allocation failures are values (alloc returns NULL, matrix_load
 * SSMD_ENOMEM with free/total device memory in the message); any other CUDA
 * or cuBLAS failure is a bug or a dead device and aborts with the call, file,
 * line and CUDA's message.  Debugging aids: SSMD_CUDA_SYNC=1 synchronises and
 * checks after every op (so compute-sanitizer and asynchronous faults name
 * the op), SSMD_CUDA_GRAPHS=0 never captures graphs.
 *
 * Built only by `make cuda` (nvcc, sm_80 and sm_90); engine thread only.
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/backend_core.h"

extern "C" int kc_cuda_backend_create(const bk_options *o, bk_backend **out, ssmd_err *err);

enum {
    ARENA_INTS = 1 << 16,      /* ids + slots of one recorded step */
    STAGE_INTS = 1 << 18,      /* eager staging ring */
    WORKSPACE_BYTES = 32 << 20, /* cuBLAS workspace, fixed so graphs can capture GEMMs */
};

typedef struct cuda_backend {
    kc_core core; /* first */
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *workspace;
    int32_t *stage_host, *stage_dev; /* (STAGE_INTS) pinned / device */
    size_t stage_used;
    cudaEvent_t arena_done;
    float *scratch[KC_SCRATCH_KINDS];
    size_t scratch_floats[KC_SCRATCH_KINDS];
    int capturing, capture_error, sync_each_op, graphs_off;
} cuda_backend;

static cuda_backend *cu_of(void *p) { return (cuda_backend *)p; }

#define CK(call) ck_cuda((call), #call, __FILE__, __LINE__)
#define CKB(call) ck_blas((call), #call, __FILE__, __LINE__)

static void ck_cuda(cudaError_t e, const char *what, const char *file, int line)
{
    if (e == cudaSuccess)
        return;
    ssmd_fatal("cuda backend: %s failed at %s:%d: %s (%s)", what, file, line, cudaGetErrorString(e),
               cudaGetErrorName(e));
}

static void ck_blas(cublasStatus_t s, const char *what, const char *file, int line)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return;
    ssmd_fatal("cuda backend: %s failed at %s:%d: %s", what, file, line, cublasGetStatusString(s));
}

/* "N MiB free of M MiB" for out-of-memory messages. */
static const char *mem_info(char *buf, size_t n)
{
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess)
        cudaGetLastError(), free_b = total_b = 0;
    snprintf(buf, n, "%zu MiB free of %zu MiB", free_b >> 20, total_b >> 20);
    return buf;
}

/* cudaMalloc that reports exhaustion as NULL (and clears the error). */
static void *dev_malloc(size_t bytes)
{
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        return NULL;
    }
    CK(e);
    return p;
}

/* ---- device side of the core ------------------------------------------------ */

static const int32_t *cu_stage(kc_core *c, const int32_t *host, int n)
{
    cuda_backend *b = cu_of(c);
    size_t need = ((size_t)n + 3) & ~(size_t)3;
    if (need > STAGE_INTS) {
        ssmd_fatal("cuda backend: %d indices exceed the staging ring", n);
    }
    if (b->stage_used + need > STAGE_INTS) {
        CK(cudaStreamSynchronize(b->stream)); /* earlier copies have read the ring */
        b->stage_used = 0;
    }
    int32_t *h = b->stage_host + b->stage_used, *d = b->stage_dev + b->stage_used;
    memcpy(h, host, sizeof(int32_t) * (size_t)n);
    CK(cudaMemcpyAsync(d, h, sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice, b->stream));
    b->stage_used += need;
    return d;
}

static float *cu_scratch(kc_core *c, int which, size_t floats)
{
    cuda_backend *b = cu_of(c);
    if (b->scratch_floats[which] >= floats)
        return b->scratch[which];
    if (b->capturing)
        return NULL; /* never allocate inside a capture; the op falls back */
    CK(cudaStreamSynchronize(b->stream));
    if (b->scratch[which])
        CK(cudaFree(b->scratch[which]));
    b->scratch[which] = (float *)dev_malloc(sizeof(float) * floats);
    b->scratch_floats[which] = b->scratch[which] ? floats : 0;
    return b->scratch[which];
}

static void cu_gemm(kc_core *c, int m, int n, int k, const float *x, int ldx, const float *w, int ldw,
                    float *y, int ldy, int fast)
{
    /* Row-major y = x w^T is column-major y^T = w x^T: A = w (k x n col-major,
     * transposed), B = x (k x m col-major). */
    const float one = 1.0f, zero = 0.0f;
    CKB(cublasGemmEx(cu_of(c)->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w, CUDA_R_32F, ldw, x,
                     CUDA_R_32F, ldx, &zero, y, CUDA_R_32F, ldy,
                     fast ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT));
}

static void cu_gemm_batched(kc_core *c, int batch, int m, int n, int k, const float *x, int ldx,
                            long sx, const float *w, int ldw, long sw, float *y, int ldy, long sy)
{
    const float one = 1.0f, zero = 0.0f; /* operands as in cu_gemm */
    CKB(cublasGemmStridedBatchedEx(cu_of(c)->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w,
                                   CUDA_R_32F, ldw, sw, x, CUDA_R_32F, ldx, sx, &zero, y, CUDA_R_32F,
                                   ldy, sy, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static void cu_gemm_bf16(kc_core *c, int m, int n, int k, const uint16_t *x16, const void *w, int ldw,
                         float *y, int ldy)
{
    const float one = 1.0f, zero = 0.0f;
    CKB(cublasGemmEx(cu_of(c)->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w, CUDA_R_16BF, ldw, x16,
                     CUDA_R_16BF, k, &zero, y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static void cu_arena_upload(kc_core *c, size_t n)
{
    cuda_backend *b = cu_of(c);
    if (!n)
        return;
    CK(cudaMemcpyAsync(c->arena_dev, c->arena_host, sizeof(int32_t) * n, cudaMemcpyHostToDevice,
                       b->stream));
    CK(cudaEventRecord(b->arena_done, b->stream));
}

static void cu_arena_wait(kc_core *c) { CK(cudaEventSynchronize(cu_of(c)->arena_done)); }

static void *cu_graph_capture(kc_core *c, void (*run)(kc_core *, void *), void *arg)
{
    cuda_backend *b = cu_of(c);
    if (b->graphs_off)
        return NULL;
    CK(cudaStreamBeginCapture(b->stream, cudaStreamCaptureModeThreadLocal));
    b->capturing = 1;
    b->capture_error = 0;
    run(c, arg);
    b->capturing = 0;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(b->stream, &graph);
    cudaGraphExec_t exec = NULL;
    if (e == cudaSuccess && !b->capture_error)
        e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph)
        cudaGraphDestroy(graph);
    if (e != cudaSuccess || b->capture_error) {
        fprintf(stderr, "ssmd: cuda backend: decode step not captured as a graph (%s); running it "
                "op by op\n", e != cudaSuccess ? cudaGetErrorString(e) : "an op failed in capture");
        cudaGetLastError();
        return NULL;
    }
    return exec;
}

static void cu_graph_launch(kc_core *c, void *graph)
{
    cuda_backend *b = cu_of(c);
    CK(cudaGraphLaunch((cudaGraphExec_t)graph, b->stream));
    if (b->sync_each_op)
        CK(cudaStreamSynchronize(b->stream));
}

static void cu_graph_destroy(kc_core *c, void *graph) { CK(cudaGraphExecDestroy((cudaGraphExec_t)graph)); }

static void cu_after_op(kc_core *c, const char *what)
{
    cuda_backend *b = cu_of(c);
    cudaError_t e = cudaGetLastError();
    if (b->capturing) {
        if (e != cudaSuccess)
            b->capture_error = 1;
        return;
    }
    if (e == cudaSuccess && b->sync_each_op)
        e = cudaStreamSynchronize(b->stream);
    if (e != cudaSuccess) {
        ssmd_fatal("cuda backend: op %s failed: %s (%s)", what, cudaGetErrorString(e),
                   cudaGetErrorName(e));
    }
}

static const kc_dev_ops cuda_dev = {
    cu_stage,         cu_scratch,      cu_gemm,          cu_gemm_bf16,    cu_arena_upload, cu_arena_wait,
    cu_graph_capture, cu_graph_launch, cu_graph_destroy, cu_after_op,      cu_gemm_batched,
};

/* ---- memory ops ------------------------------------------------------------------ */

static void *cu_alloc(bk_backend *bk, size_t bytes)
{
    cuda_backend *b = cu_of(bk);
    kc_core_flush(&b->core);
    void *p = dev_malloc(bytes);
    if (p)
        CK(cudaMemsetAsync(p, 0, bytes, b->stream));
    return p;
}

static void cu_release(bk_backend *bk, void *ptr)
{
    cuda_backend *b = cu_of(bk);
    kc_core_flush(&b->core);
    CK(cudaStreamSynchronize(b->stream));
    CK(cudaFree(ptr));
}

static void cu_write(bk_backend *bk, void *dst, const void *src, size_t bytes)
{
    cuda_backend *b = cu_of(bk);
    kc_core_flush(&b->core);
    CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, b->stream));
    CK(cudaStreamSynchronize(b->stream)); /* src may be reused at once */
}

static void cu_read(bk_backend *bk, void *dst, const void *src, size_t bytes)
{
    cuda_backend *b = cu_of(bk);
    kc_core_flush(&b->core);
    CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, b->stream));
    CK(cudaStreamSynchronize(b->stream));
    b->stage_used = 0; /* everything staged so far has been consumed */
}

static void cu_copy(bk_backend *bk, void *dst, const void *src, size_t bytes)
{
    cuda_backend *b = cu_of(bk);
    kc_core_flush(&b->core);
    CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, b->stream));
}

static void cu_zero(bk_backend *bk, void *dst, size_t bytes)
{
    cuda_backend *b = cu_of(bk);
    kc_core_flush(&b->core);
    CK(cudaMemsetAsync(dst, 0, bytes, b->stream));
}

static int cu_matrix_load(bk_backend *bk, const eng_tensor *t, int rows, int cols, bk_matrix *out,
                          ssmd_err *err)
{
    cuda_backend *b = cu_of(bk);
    kc_core_flush(&b->core);
    size_t bytes = 0;
    int rc = kc_matrix_bytes(t, rows, cols, &bytes, err);
    if (rc)
        return rc;
    void *p = dev_malloc(bytes);
    if (!p) {
        char mem[96];
        return ssmd_err_set(err, SSMD_ENOMEM,
                            "cuda backend: out of device memory uploading '%s' from %s (%zu bytes; %s)",
                            t->name, t->file, bytes, mem_info(mem, sizeof mem));
    }
    CK(cudaMemcpyAsync(p, t->data, bytes, cudaMemcpyHostToDevice, b->stream));
    CK(cudaStreamSynchronize(b->stream));
    *out = kc_matrix_owned(p, t, rows, cols);
    return SSMD_OK;
}

static void cu_matrix_release(bk_backend *bk, bk_matrix *m)
{
    if (m->owned)
        cu_release(bk, (void *)m->data);
    memset(m, 0, sizeof *m);
}

static void cu_free_all(cuda_backend *b)
{
    kc_core_close(&b->core);
    for (int i = 0; i < KC_SCRATCH_KINDS; i++)
        if (b->scratch[i])
            cudaFree(b->scratch[i]);
    if (b->core.arena_dev)
        cudaFree(b->core.arena_dev);
    if (b->stage_dev)
        cudaFree(b->stage_dev);
    if (b->core.arena_host)
        cudaFreeHost(b->core.arena_host);
    if (b->stage_host)
        cudaFreeHost(b->stage_host);
    if (b->workspace)
        cudaFree(b->workspace);
    if (b->blas)
        cublasDestroy(b->blas);
    if (b->arena_done)
        cudaEventDestroy(b->arena_done);
    if (b->stream)
        cudaStreamDestroy(b->stream);
    free(b);
}

static void cu_destroy(bk_backend *bk)
{
    cuda_backend *b = cu_of(bk);
    kc_core_flush(&b->core);
    CK(cudaStreamSynchronize(b->stream));
    cu_free_all(b);
}

static int env_flag(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? strcmp(v, "0") != 0 : dflt;
}

/* Everything that can run out of memory at creation, in order. */
static int cu_setup(cuda_backend *b, ssmd_err *err)
{
    char mem[96];
    cudaError_t e;
    if ((e = cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaEventCreateWithFlags(&b->arena_done, cudaEventDisableTiming)) != cudaSuccess)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED, "cuda backend: cannot create a stream: %s",
                            cudaGetErrorString(e));
    cublasStatus_t s = cublasCreate(&b->blas);
    if (s != CUBLAS_STATUS_SUCCESS)
        return ssmd_err_set(err, s == CUBLAS_STATUS_ALLOC_FAILED ? SSMD_ENOMEM : SSMD_EUNSUPPORTED,
                            "cuda backend: cublasCreate failed: %s", cublasGetStatusString(s));
    kc_core *c = &b->core;
    b->workspace = dev_malloc(WORKSPACE_BYTES);
    c->arena_dev = (int32_t *)dev_malloc(sizeof(int32_t) * ARENA_INTS);
    b->stage_dev = (int32_t *)dev_malloc(sizeof(int32_t) * STAGE_INTS);
    b->scratch[KC_SCRATCH_PANEL] = (float *)dev_malloc(sizeof(float) * c->tune.panel_floats);
    b->scratch_floats[KC_SCRATCH_PANEL] = c->tune.panel_floats;
    if (!b->workspace || !c->arena_dev || !b->stage_dev || !b->scratch[KC_SCRATCH_PANEL])
        return ssmd_err_set(err, SSMD_ENOMEM, "cuda backend: out of device memory for buffers (%s)",
                            mem_info(mem, sizeof mem));
    if (cudaMallocHost((void **)&c->arena_host, sizeof(int32_t) * ARENA_INTS) != cudaSuccess ||
        cudaMallocHost((void **)&b->stage_host, sizeof(int32_t) * STAGE_INTS) != cudaSuccess) {
        cudaGetLastError();
        return ssmd_err_set(err, SSMD_ENOMEM, "cuda backend: cannot allocate pinned host memory");
    }
    CKB(cublasSetStream(b->blas, b->stream));
    CKB(cublasSetWorkspace(b->blas, b->workspace, WORKSPACE_BYTES));
    /* No TF32 by default (f32 results as the CPU); each GEMM asks for it by
     * its compute type when numerics is "fast" (kc_op.fast). */
    CKB(cublasSetMathMode(b->blas, CUBLAS_DEFAULT_MATH));
    return SSMD_OK;
}

extern "C" int kc_cuda_backend_create(const bk_options *o, bk_backend **out, ssmd_err *err)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        return ssmd_err_set(err, SSMD_EUNSUPPORTED, "cuda backend: no usable GPU (%s)",
                            e != cudaSuccess ? cudaGetErrorString(e) : "no device found");
    }
    if (o->device < 0 || o->device >= n)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED, "cuda backend: device %d does not exist (%d found)",
                            o->device, n);
    cudaDeviceProp prop;
    CK(cudaSetDevice(o->device));
    CK(cudaGetDeviceProperties(&prop, o->device));
    if (prop.major < 8)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                            "cuda backend: %s has compute capability %d.%d; this build needs 8.0 or newer",
                            prop.name, prop.major, prop.minor);
    cuda_backend *b = (cuda_backend *)calloc(1, sizeof *b);
    if (!b)
        return ssmd_err_set(err, SSMD_ENOMEM, "cuda backend: out of memory");
    kc_core *c = &b->core;
    static const kc_memory_ops cuda_memory = {"cuda",   cu_destroy, cu_alloc,       cu_release,
                                              cu_write, cu_read,    cu_copy,        cu_zero,
                                              cu_matrix_load,       cu_matrix_release};
    kc_core_init(c, &cuda_memory);
    kc_tuning_default(&c->tune);
    c->dev = &cuda_dev;
    c->arena_cap = ARENA_INTS;
    b->sync_each_op = env_flag("SSMD_CUDA_SYNC", 0);
    b->graphs_off = !env_flag("SSMD_CUDA_GRAPHS", 1);
    c->tune.gemv_wide = env_flag("SSMD_CUDA_GEMV_WIDE", 1);
    b->device = o->device;
    c->fast_numerics = o->numerics == BK_NUMERICS_FAST;
    int rc = cu_setup(b, err);
    if (rc) {
        cu_free_all(b);
        return rc;
    }
    c->stream = (kc_stream)b->stream;
    *out = &c->base;
    return SSMD_OK;
}
