/* cuda_mock.cpp - a strict host implementation of the CUDA runtime and
 * cuBLAS calls that kernels/cuda/backend_cuda.cu makes, so that the real backend
 * runs in tests without a GPU (kernels launch through the emulation harness).
 *
 * Strict where a GPU would forgive a bug only by luck:
 *  - streams are really asynchronous: copies, memsets, kernels, GEMMs and
 *    graph launches are queued and run only at a synchronisation point
 *    (stream/event synchronise, cudaFree), so a missing synchronisation or
 *    a host buffer reused too early gives wrong results;
 *  - stream capture records work without running it; a graph replays the
 *    recorded nodes; synchronising or allocating during a capture fails and
 *    invalidates it, as in cudaStreamCaptureModeThreadLocal;
 *  - copies check direction and bounds against live allocations, device
 *    memory starts as NaN bytes, cudaFree of an unknown pointer fails;
 *  - cublasGemmEx implements the documented column-major semantics and
 *    checks types, leading dimensions and operand extents.
 * Not modelled: several devices, concurrency between streams, timing.
 */
#include "kernels/emu/cuda_mock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <map>
#include <memory>
#include <set>
#include <vector>

#include "kernels/emu/cuda_shim.h"
#include "kernels/emu/mock/cublas_v2.h"

enum { N_KERNEL, N_COPY, N_SET, N_GEMM, N_EVENT, N_GRAPH };

typedef struct gemm_args {
    int ta, tb, m, n, k, lda, ldb, ldc;
    float alpha, beta;
    const void *A, *B; /* f32, or bf16 when bf16 */
    float *C;
    int bf16;
} gemm_args;

struct node {
    int kind = N_EVENT;
    dim3 grid, block;
    size_t smem = 0;
    const char *name = NULL;
    void (*fn)(void *) = NULL;
    std::shared_ptr<void> arg; /* shared by a graph and its executable copies */
    void *dst = NULL;
    const void *src = NULL;
    size_t n = 0;
    int value = 0;
    gemm_args g = {};
    cudaGraphExec_t exec = NULL;
};

struct CUstream_st {
    std::vector<node> q, cap;
    int capturing = 0, invalidated = 0;
};
struct CUevent_st {
    cudaStream_t s = NULL;
};
struct CUgraph_st {
    std::vector<node> nodes;
};
struct CUgraphExec_st {
    std::vector<node> nodes;
};
struct cublasContext {
    cudaStream_t s = NULL;
    int tf32 = 0;
};

/* The mock device: process-global like the runtime it stands for. */
struct mock_dev {
    size_t budget = (size_t)-1, live = 0;
    std::map<const char *, size_t> dev, pinned;
    std::set<cudaStream_t> streams;
    std::set<cudaGraphExec_t> execs;
    cudaError_t last = cudaSuccess;
    int count = 1, major = 9, minor = 0, fail_captures = 0;
    kc_mock_stats stats = {};
};

static mock_dev &M()
{
    static mock_dev m;
    return m;
}

static cudaError_t fail(cudaError_t e)
{
    M().last = e;
    return e;
}

static void die(const char *what)
{
    fprintf(stderr, "cuda mock: %s\n", what);
    abort();
}

/* Is [p, p + n) inside one allocation of map a? */
static int inside(const std::map<const char *, size_t> &a, const void *p, size_t n)
{
    const char *c = (const char *)p;
    auto it = a.upper_bound(c);
    if (it == a.begin())
        return 0;
    --it;
    return c >= it->first && c + n <= it->first + it->second;
}
static int is_dev(const void *p, size_t n) { return inside(M().dev, p, n ? n : 1); }

/* ---- execution ------------------------------------------------------------ */

/* Element i of an operand: f32, or bf16 widened exactly. */
static float elem(const void *p, size_t i, int bf16)
{
    if (!bf16)
        return ((const float *)p)[i];
    uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void run_gemm(const gemm_args &g)
{
    for (int j = 0; j < g.n; j++)
        for (int i = 0; i < g.m; i++) {
            double acc = 0.0;
            for (int l = 0; l < g.k; l++) {
                float a = elem(g.A, g.ta == CUBLAS_OP_N ? i + (size_t)l * g.lda : l + (size_t)i * g.lda, g.bf16);
                float b = elem(g.B, g.tb == CUBLAS_OP_N ? l + (size_t)j * g.ldb : j + (size_t)l * g.ldb, g.bf16);
                acc += (double)a * b;
            }
            float *c = &g.C[i + (size_t)j * g.ldc];
            *c = (float)(g.alpha * acc + (g.beta != 0.0f ? (double)g.beta * *c : 0.0));
        }
}

static void run(const node &d)
{
    switch (d.kind) {
    case N_KERNEL:
        emu_launch_raw(d.grid, d.block, d.smem, d.name, d.fn, d.arg.get());
        M().stats.kernels++;
        break;
    case N_COPY:
        memmove(d.dst, d.src, d.n);
        break;
    case N_SET:
        memset(d.dst, d.value, d.n);
        break;
    case N_GEMM:
        run_gemm(d.g);
        break;
    case N_GRAPH:
        if (!M().execs.count(d.exec))
            die("a graph launch runs after its executable graph was destroyed");
        for (const node &x : d.exec->nodes)
            run(x);
        break;
    default:
        break;
    }
}

static void drain(cudaStream_t s)
{
    for (size_t i = 0; i < s->q.size(); i++)
        run(s->q[i]);
    s->q.clear();
}

static void drain_all(void)
{
    for (cudaStream_t s : M().streams)
        drain(s);
}

static int any_capturing(void)
{
    for (cudaStream_t s : M().streams)
        if (s->capturing)
            return 1;
    return 0;
}

/* A call that is illegal while capturing: invalidates the capture. */
static int prohibited(void)
{
    if (!any_capturing())
        return 0;
    for (cudaStream_t s : M().streams)
        if (s->capturing)
            s->invalidated = 1;
    fail(cudaErrorStreamCaptureUnsupported);
    return 1;
}

static void enqueue(cudaStream_t s, const node &d)
{
    if (!s) { /* legacy default stream: after everything else, at once */
        drain_all();
        run(d);
        return;
    }
    if (!M().streams.count(s))
        die("work enqueued on a stream that does not exist");
    (s->capturing ? s->cap : s->q).push_back(d);
}

static void launch_hook(cudaStream_t s, dim3 grid, dim3 block, size_t smem, const char *name,
                        void (*fn)(void *), void *arg, void (*del)(void *))
{
    node d;
    d.kind = N_KERNEL, d.grid = grid, d.block = block, d.smem = smem, d.name = name, d.fn = fn;
    d.arg = std::shared_ptr<void>(arg, del);
    enqueue(s, d);
}

/* ---- runtime API --------------------------------------------------------------- */

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    default: return "unknown error";
    }
}
const char *cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaErrorMock"; }

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = M().last;
    M().last = cudaSuccess;
    return e;
}

cudaError_t cudaGetDeviceCount(int *n)
{
    *n = M().count;
    return M().count ? cudaSuccess : fail(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int d) { return d >= 0 && d < M().count ? cudaSuccess : fail(cudaErrorInvalidValue); }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "emulated GPU (mock)");
    p->major = M().major, p->minor = M().minor;
    p->totalGlobalMem = M().budget;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t n)
{
    *p = NULL;
    if (prohibited())
        return cudaErrorStreamCaptureUnsupported;
    if (n > M().budget - M().live)
        return fail(cudaErrorMemoryAllocation);
    size_t r = (n + 255) & ~(size_t)255;
    char *c = (char *)aligned_alloc(256, r ? r : 256);
    if (!c)
        return fail(cudaErrorMemoryAllocation);
    memset(c, 0xff, r ? r : 256); /* device memory is not zeroed: NaN */
    M().dev[c] = n;
    M().live += n;
    if (M().live > M().stats.peak_bytes)
        M().stats.peak_bytes = M().live;
    *p = c;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    if (prohibited())
        return cudaErrorStreamCaptureUnsupported;
    drain_all(); /* cudaFree synchronises */
    if (!p)
        return cudaSuccess;
    auto it = M().dev.find((const char *)p);
    if (it == M().dev.end())
        return fail(cudaErrorInvalidValue);
    M().live -= it->second;
    M().dev.erase(it);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t n)
{
    *p = malloc(n ? n : 1);
    if (!*p)
        return fail(cudaErrorMemoryAllocation);
    M().pinned[(const char *)*p] = n;
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *p)
{
    auto it = M().pinned.find((const char *)p);
    if (it == M().pinned.end())
        return fail(cudaErrorInvalidValue);
    M().pinned.erase(it);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    size_t total = M().budget == (size_t)-1 ? (size_t)80 << 30 : M().budget;
    *total_bytes = total;
    *free_bytes = total - M().live;
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind, cudaStream_t s)
{
    int ok = kind == cudaMemcpyHostToDevice   ? is_dev(dst, n) && !is_dev(src, 1)
             : kind == cudaMemcpyDeviceToHost ? is_dev(src, n) && !is_dev(dst, 1)
             : kind == cudaMemcpyDeviceToDevice ? is_dev(src, n) && is_dev(dst, n)
                                                : 0;
    if (!ok)
        return fail(cudaErrorInvalidValue);
    node d;
    d.kind = N_COPY, d.dst = dst, d.src = src, d.n = n;
    enqueue(s, d);
    M().stats.copies++;
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s)
{
    if (!is_dev(p, n))
        return fail(cudaErrorInvalidValue);
    node d;
    d.kind = N_SET, d.dst = p, d.value = v, d.n = n;
    enqueue(s, d);
    M().stats.memsets++;
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags)
{
    *s = new CUstream_st;
    M().streams.insert(*s);
    emu_launch_hook = launch_hook;
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    if (!M().streams.count(s))
        return fail(cudaErrorInvalidResourceHandle);
    drain(s);
    M().streams.erase(s);
    delete s;
    if (M().streams.empty())
        emu_launch_hook = NULL;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    if (prohibited())
        return cudaErrorStreamCaptureUnsupported;
    M().stats.syncs++;
    if (s)
        drain(s);
    else
        drain_all();
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags)
{
    *e = new CUevent_st;
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    delete e;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
    e->s = s;
    node d;
    d.kind = N_EVENT;
    enqueue(s, d);
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
    if (prohibited())
        return cudaErrorStreamCaptureUnsupported;
    M().stats.syncs++;
    if (e->s && M().streams.count(e->s))
        drain(e->s);
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode)
{
    if (!M().streams.count(s) || s->capturing)
        return fail(cudaErrorInvalidValue);
    s->capturing = 1, s->invalidated = 0;
    s->cap.clear();
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g)
{
    *g = NULL;
    if (!M().streams.count(s) || !s->capturing)
        return fail(cudaErrorInvalidValue);
    s->capturing = 0;
    int injected = M().fail_captures > 0;
    if (injected)
        M().fail_captures--;
    if (s->invalidated || injected) {
        s->cap.clear();
        return fail(cudaErrorStreamCaptureInvalidated);
    }
    *g = new CUgraph_st;
    (*g)->nodes.swap(s->cap);
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags)
{
    *e = new CUgraphExec_st;
    (*e)->nodes = g->nodes;
    M().execs.insert(*e);
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t g)
{
    delete g;
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s)
{
    if (!M().execs.count(e))
        return fail(cudaErrorInvalidResourceHandle);
    node d;
    d.kind = N_GRAPH, d.exec = e;
    enqueue(s, d);
    M().stats.graph_launches++;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e)
{
    if (!M().execs.count(e))
        return fail(cudaErrorInvalidResourceHandle);
    drain_all();
    M().execs.erase(e);
    delete e;
    return cudaSuccess;
}

/* ---- cuBLAS ---------------------------------------------------------------------- */

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = new cublasContext;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
    h->s = s;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes)
{
    return is_dev(ws, bytes) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode)
{
    h->tf32 = mode == CUBLAS_TF32_TENSOR_OP_MATH;
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t s)
{
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_MOCK_FAILURE";
}

/* Bytes spanned by a column-major rows x cols operand with leading dim ld
 * and elements of esize bytes. */
static size_t span(int rows, int cols, int ld, size_t esize = sizeof(float))
{
    return rows && cols ? ((size_t)(cols - 1) * ld + rows) * esize : 0;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType at, int lda,
                            const void *B, cudaDataType bt, int ldb, const void *beta, void *C,
                            cudaDataType ct, int ldc, cublasComputeType_t compute, cublasGemmAlgo_t algo)
{
    /* f32 x f32 (TF32 allowed or not), or bf16 x bf16 into f32 with f32 compute */
    const int bf16 = at == CUDA_R_16BF && bt == CUDA_R_16BF;
    if (!(bf16 || (at == CUDA_R_32F && bt == CUDA_R_32F)) || ct != CUDA_R_32F ||
        (compute != CUBLAS_COMPUTE_32F && (bf16 || compute != CUBLAS_COMPUTE_32F_FAST_TF32)))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    const size_t es = bf16 ? 2 : sizeof(float);
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T) || m < 0 ||
        n < 0 || k < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    const int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
    const int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
    if (lda < (ar > 1 ? ar : 1) || ldb < (br > 1 ? br : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if ((span(ar, ac, lda, es) && !is_dev(A, span(ar, ac, lda, es))) ||
        (span(br, bc, ldb, es) && !is_dev(B, span(br, bc, ldb, es))) || (span(m, n, ldc) && !is_dev(C, span(m, n, ldc))))
        return CUBLAS_STATUS_INVALID_VALUE;
    node d;
    d.kind = N_GEMM;
    d.g = gemm_args{ta, tb, m, n, k, lda, ldb, ldc, *(const float *)alpha, *(const float *)beta,
                    A, B, (float *)C, bf16};
    enqueue(h->s, d);
    M().stats.gemms++;
    if (bf16)
        M().stats.bf16_gemms++;
    if (h->tf32 || compute == CUBLAS_COMPUTE_32F_FAST_TF32)
        M().stats.tf32_gemms++;
    return CUBLAS_STATUS_SUCCESS;
}

/* One cublasGemmEx per batch member (same checks, same stream order). */
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                          int m, int n, int k, const void *alpha, const void *A,
                                          cudaDataType at, int lda, long long sa, const void *B,
                                          cudaDataType bt, int ldb, long long sb, const void *beta,
                                          void *C, cudaDataType ct, int ldc, long long sc, int batch,
                                          cublasComputeType_t compute, cublasGemmAlgo_t algo)
{
    if (batch < 0 || at != CUDA_R_32F || bt != CUDA_R_32F)
        return batch < 0 ? CUBLAS_STATUS_INVALID_VALUE : CUBLAS_STATUS_NOT_SUPPORTED;
    for (int i = 0; i < batch; i++) {
        cublasStatus_t st = cublasGemmEx(h, ta, tb, m, n, k, alpha, (const float *)A + i * sa, at, lda,
                                         (const float *)B + i * sb, bt, ldb, beta, (float *)C + i * sc,
                                         ct, ldc, compute, algo);
        if (st != CUBLAS_STATUS_SUCCESS)
            return st;
    }
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- test control ------------------------------------------------------------------- */

extern "C" void kc_mock_reset(void)
{
    mock_dev &m = M();
    m.budget = (size_t)-1;
    m.count = 1, m.major = 9, m.minor = 0, m.fail_captures = 0;
    m.last = cudaSuccess;
    m.stats = kc_mock_stats{};
}

extern "C" void kc_mock_set_device(int count, int major, int minor)
{
    M().count = count, M().major = major, M().minor = minor;
}

extern "C" void kc_mock_set_budget(size_t bytes) { M().budget = bytes; }
extern "C" void kc_mock_fail_captures(int n) { M().fail_captures = n; }
extern "C" size_t kc_mock_live_allocations(void) { return M().dev.size() + M().pinned.size(); }
extern "C" void kc_mock_stats_get(kc_mock_stats *out) { *out = M().stats; }
