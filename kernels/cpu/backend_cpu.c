/* backend_cpu.c - the reference backend: host memory, OpenBLAS + our own
 * SIMD kernels at the best level the CPU runs (cpu_kernels.h: scalar, AVX2,
 * AVX-512, NEON; SSMD_CPU forces one), one fork-join thread pool for every
 * op.
 *
 * Weights stay in the mmap (a view, zero-copy) in whatever dtype the file
 * has; kernels convert bf16/f16 on the fly and read quantized blocks as
 * they are.  OpenBLAS is told to use one thread: parallelism comes from our
 * pool, which calls sgemm on disjoint slices, so the two never fight over
 * the cores.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/backend.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_matmul.h"
#include "kernels/cpu/cpu_norm.h"
#include "kernels/cpu/cpu_s4.h"
#include "kernels/cpu/cpu_s5.h"
#include "kernels/cpu/cpu_ssd.h"
#include "kernels/cpu/cpu_ssm.h"
#include "kernels/cpu/threadpool.h"

void openblas_set_num_threads(int n); /* not declared by every cblas.h */

typedef struct cpu_backend {
    bk_backend base;
    eng_threadpool *pool;
    const cpu_kernels *k; /* chosen once at creation, static tables */
    cpu_ssd_form ssd_form; /* Mamba-2 prefill: SSMD_SSD's, else by length */
    cpu_matmul_ctx mm;
} cpu_backend;

static cpu_backend *cpu_of(bk_backend *bk) { return (cpu_backend *)bk; }

static void *cpu_alloc(bk_backend *bk, size_t bytes)
{
    /* 64-byte alignment for full-cache-line vector loads. */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p)
        memset(p, 0, rounded ? rounded : 64);
    return p;
}

static void cpu_release(bk_backend *bk, void *ptr) { free(ptr); }
static void cpu_copy(bk_backend *bk, void *dst, const void *src, size_t bytes)
{
    memmove(dst, src, bytes);
}
static void cpu_zero(bk_backend *bk, void *dst, size_t bytes) { memset(dst, 0, bytes); }

static int cpu_matrix_load(bk_backend *bk, const eng_tensor *t, int rows, int cols, bk_matrix *out,
                           ssmd_err *err)
{
    /* The kernels read f32/f16/bf16 and every block-quantized dtype of
     * tensor.h (Q8_0, Q4_0, Q4_K, Q6_K, Q5_0); anything else is refused by
     * name. */
    const eng_dtype_info *info = eng_dtype_info_of(t->dtype);
    if (info->block_elems == 0 || eng_dtype_row_bytes(t->dtype, cols) == 0)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                            "%s: tensor '%s': unsupported dtype %s (the cpu backend reads F32, "
                            "F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K, Q5_0)", t->file, t->name, t->dtype_name);
    *out = (bk_matrix){.data = t->data, .dtype = t->dtype, .rows = rows, .cols = cols,
                       .row_bytes = eng_dtype_row_bytes(t->dtype, cols), .owned = 0};
    return SSMD_OK;
}

static void cpu_matrix_release(bk_backend *bk, bk_matrix *m)
{
    if (m->owned)
        free((void *)m->data);
    memset(m, 0, sizeof *m);
}

static void cpu_matmul_op(bk_backend *bk, const bk_matrix *w, const float *x, int ldx, int m,
                          float *y, int ldy, const float *bias, bk_precision precision)
{
    /* every cpu path accumulates in f32: the precision hint changes nothing */
    if (!w->row_scale) {
        cpu_matmul(&cpu_of(bk)->mm, w, x, ldx, m, y, ldy, bias);
        return;
    }
    cpu_matmul(&cpu_of(bk)->mm, w, x, ldx, m, y, ldy, NULL);
    for (int i = 0; i < m; i++)
        for (int r = 0; r < w->rows; r++) {
            float *yr = &y[(size_t)i * ldy + r];
            *yr = *yr * w->row_scale[r] + (bias ? bias[r] : 0.0f);
        }
}

static void cpu_embed(bk_backend *bk, const bk_matrix *w, const int32_t *ids, int n, float *out)
{
    for (int i = 0; i < n; i++)
        cpu_of(bk)->k->row_to_f32((const char *)w->data + (size_t)ids[i] * w->row_bytes, w->dtype,
                                  w->cols,
                       out + (size_t)i * w->cols);
}

static void cpu_add_rmsnorm(bk_backend *bk, float *resid, const float *add, const float *weight,
                            float eps, int n, int dim, float *out)
{
    cpu_add_norm(cpu_of(bk)->pool, CPU_NORM_RMS, resid, add, weight, NULL, eps, n, dim, out);
}

static void cpu_add_layernorm_op(bk_backend *bk, float *resid, const float *add,
                                 const float *weight, const float *bias, float eps, int n, int dim,
                                 float *out)
{
    cpu_add_norm(cpu_of(bk)->pool, CPU_NORM_LAYER, resid, add, weight, bias, eps, n, dim, out);
}

static void cpu_rms_rows_op(bk_backend *bk, float *x, int ld, int n, int dim, float eps)
{
    cpu_rms_rows(x, ld, n, dim, eps);
}

static void cpu_glu_op(bk_backend *bk, const float *x, int n, int dim, float *out)
{
    cpu_glu(cpu_of(bk)->pool, x, n, dim, out);
}

/* Every op runs when called: a step has nothing to record or flush. */
static void cpu_step_mark(bk_backend *bk) {}

/* ---- Mamba-1 ---- */

static void cpu_conv_prefill_op(bk_backend *bk, const bk_ssm_layer *l, float *window,
                                const bk_mamba1_io *io)
{
    cpu_conv_prefill(cpu_of(bk)->k, cpu_of(bk)->pool, l, window, io);
}

static void cpu_scan_prefill_op(bk_backend *bk, const bk_ssm_layer *l, float *state,
                                const bk_mamba1_io *io)
{
    cpu_scan_prefill(cpu_of(bk)->k, cpu_of(bk)->pool, l, state, io);
}

static void cpu_conv_step_op(bk_backend *bk, const bk_ssm_layer *l, const bk_state_ref *st,
                             const bk_mamba1_io *io)
{
    cpu_conv_step(cpu_of(bk)->k, cpu_of(bk)->pool, l, st, io);
}

static void cpu_scan_step_op(bk_backend *bk, const bk_ssm_layer *l, const bk_state_ref *st,
                             const bk_mamba1_io *io)
{
    cpu_scan_step(cpu_of(bk)->k, cpu_of(bk)->pool, l, st, io);
}

static void cpu_scan_step_dt_op(bk_backend *bk, const bk_ssm_layer *l, const bk_matrix *dt_proj,
                                const bk_state_ref *st, const bk_mamba1_io *io)
{
    cpu_scan_step_dt(&cpu_of(bk)->mm, l, dt_proj, st, io);
}

static const bk_mamba1_ops cpu_mamba1 = {
    .max_state = CPU_SSM_MAX_STATE,
    .conv_prefill = cpu_conv_prefill_op,
    .scan_prefill = cpu_scan_prefill_op,
    .conv_step = cpu_conv_step_op,
    .scan_step = cpu_scan_step_op,
    .scan_step_dt = cpu_scan_step_dt_op,
};

/* ---- Mamba-2 ---- */

static void cpu_m2_conv_prefill_op(bk_backend *bk, const bk_mamba2_layer *l, float *window,
                                   const bk_mamba2_io *io)
{
    cpu_m2_conv_prefill(cpu_of(bk)->k, cpu_of(bk)->pool, l, window, io);
}

static void cpu_ssd_prefill_op(bk_backend *bk, const bk_mamba2_layer *l, float *state,
                               const bk_mamba2_io *io)
{
    cpu_ssd_prefill(cpu_of(bk)->k, cpu_of(bk)->pool, l, state, io, cpu_of(bk)->ssd_form);
}

static void cpu_m2_conv_step_op(bk_backend *bk, const bk_mamba2_layer *l, const bk_state_ref *st,
                                const bk_mamba2_io *io)
{
    cpu_m2_conv_step(cpu_of(bk)->k, cpu_of(bk)->pool, l, st, io);
}

static void cpu_ssd_step_op(bk_backend *bk, const bk_mamba2_layer *l, const bk_state_ref *st,
                            const bk_mamba2_io *io)
{
    cpu_ssd_step(cpu_of(bk)->k, cpu_of(bk)->pool, l, st, io);
}

static const bk_mamba2_ops cpu_mamba2 = {
    .max_state = CPU_SSD_MAX_STATE,
    .conv_prefill = cpu_m2_conv_prefill_op,
    .ssd_prefill = cpu_ssd_prefill_op,
    .conv_step = cpu_m2_conv_step_op,
    .ssd_step = cpu_ssd_step_op,
};

/* ---- the S4 family ---- */

static void cpu_s4_prefill_op(bk_backend *bk, const bk_s4_layer *l, float *state, const float *u,
                              int T, float *y)
{
    cpu_s4_prefill(cpu_of(bk)->k, cpu_of(bk)->pool, l, state, u, T, y);
}

static void cpu_s4_step_op(bk_backend *bk, const bk_s4_layer *l, const bk_state_ref *st,
                           const float *u, float *y)
{
    cpu_s4_step(cpu_of(bk)->k, cpu_of(bk)->pool, l, st, u, y);
}

static const bk_s4_ops cpu_s4 = {
    .max_rank = CPU_S4_MAX_RANK,
    .prefill = cpu_s4_prefill_op,
    .step = cpu_s4_step_op,
};

/* ---- S5 ---- */

static void cpu_s5_scan_op(bk_backend *bk, const float *lam, int P, float *state, const float *v,
                           int T, float *xs)
{
    cpu_s5_prefill(cpu_of(bk)->pool, lam, P, state, v, T, xs);
}

static void cpu_s5_step_op(bk_backend *bk, const float *lam, int P, const bk_state_ref *st,
                           const float *v, float *xs)
{
    cpu_s5_step(cpu_of(bk)->pool, lam, P, st, v, xs);
}

static void cpu_s5_skip_act_op(bk_backend *bk, const float *y, const float *u, const float *D,
                               int rows, int H, int gelu_tanh, float *out_pre, int ld_pre,
                               float *out_act, int ld_act)
{
    cpu_s5_skip_act(cpu_of(bk)->pool, y, u, D, rows, H, gelu_tanh, out_pre, ld_pre, out_act,
                    ld_act);
}

static const bk_s5_ops cpu_s5 = {
    .scan = cpu_s5_scan_op,
    .step = cpu_s5_step_op,
    .skip_act = cpu_s5_skip_act_op,
};

static void cpu_destroy(bk_backend *bk)
{
    cpu_backend *c = cpu_of(bk);
    cpu_matmul_ctx_close(&c->mm);
    eng_threadpool_destroy(c->pool);
    free(c);
}

/* The cpu backend's constructor, for the registry.  numerics has no
 * effect yet: the cpu kernels always run the exact path.  The kernel level
 * is the best the CPU runs, or SSMD_CPU's (an error names the levels this
 * machine has when it cannot run that one); SSMD_SSD=scan|chunk forces
 * the form of the Mamba-2 prefill (cpu_ssd.h). */
int kc_cpu_backend_create(const bk_options *o, bk_backend **out, ssmd_err *err)
{
    const cpu_kernels *k;
    int rc = cpu_kernels_choose(getenv("SSMD_CPU"), &k, err);
    if (rc != SSMD_OK)
        return rc;
    cpu_ssd_form ssd_form;
    if (cpu_ssd_form_parse(getenv("SSMD_SSD"), &ssd_form) != 0)
        return ssmd_err_set(err, SSMD_EINVAL, "SSMD_SSD: unknown form '%s' (auto, scan or chunk)",
                            getenv("SSMD_SSD"));
    int threads = o->threads;
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    if (threads > CPU_MAX_THREADS)
        threads = CPU_MAX_THREADS;
    cpu_backend *c = calloc(1, sizeof *c);
    if (!c)
        return ssmd_err_set(err, SSMD_ENOMEM, "cpu backend: out of memory");
    c->pool = eng_threadpool_create(threads);
    if (!c->pool) {
        free(c);
        return ssmd_err_set(err, SSMD_ENOMEM, "cpu backend: cannot start %d threads", threads);
    }
    openblas_set_num_threads(1);
    c->k = k;
    c->ssd_form = ssd_form;
    c->mm.pool = c->pool;
    c->mm.k = k;
    c->base = (bk_backend){
        .name = "cpu",
        .destroy = cpu_destroy,
        .alloc = cpu_alloc,
        .release = cpu_release,
        .write = cpu_copy,
        .read = cpu_copy,
        .copy = cpu_copy,
        .zero = cpu_zero,
        .step_begin = cpu_step_mark,
        .step_end = cpu_step_mark,
        .matrix_load = cpu_matrix_load,
        .matrix_release = cpu_matrix_release,
        .matmul = cpu_matmul_op,
        .embed = cpu_embed,
        .add_rmsnorm = cpu_add_rmsnorm,
        .add_layernorm = cpu_add_layernorm_op,
        .rms_rows = cpu_rms_rows_op,
        .glu = cpu_glu_op,
        .mamba1 = &cpu_mamba1,
        .mamba2 = &cpu_mamba2,
        .s4 = &cpu_s4,
        .s5 = &cpu_s5,
    };
    *out = &c->base;
    return SSMD_OK;
}
