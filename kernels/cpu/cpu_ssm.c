/* cpu_ssm.c - the Mamba-1 mixer's sequence ops on the CPU: causal
 * depthwise conv1d and the selective scan, for prefill (one sequence, T
 * tokens, from a given state) and decode (a batch of slots, one token each).
 *
 * Both views share one kernel per op that walks a range of channels over
 * T time steps (cpu_gen_ssm.h, compiled once per instruction-set level and
 * reached through the cpu_kernels table); prefill calls it with T tokens,
 * decode with T = 1 per slot.  Work is split across threads by channel
 * (channels are independent).  Decode's scan can also compute dt_proj's
 * rows for its own channels first (cpu_scan_step_dt): a layer's step then
 * waits on one fork-join fewer, and the 48-column dt_proj, too short a row
 * to stream well on its own, is read while the other thread scans.
 * Allocates nothing but what the matmul context grows for quantized rows.
 */
#include "kernels/cpu/cpu_ssm.h"

enum { CHANNEL_ALIGN = 16 };

typedef struct ssm_job {
    const cpu_kernels *k;
    const bk_ssm_layer *l;
    const bk_state_ref *st; /* decode: where the slots are; NULL for prefill */
    float *window, *state;  /* prefill */
    const bk_mamba1_io *io;
    int T;                  /* prefill: io->rows; decode: 1 per slot */
    const bk_matrix *dt_proj; /* scan_step_dt: dt's weights */
    const cpu_q8_act *dbc_q;  /* and the dbc rows quantized, for block types */
} ssm_job;

static float *slot_ptr(const bk_state_ref *st, int b, size_t offset)
{
    return st->pool + (size_t)st->slots[b] * st->slot_stride + offset;
}

/* Thread tid's channels [e0, e1) of E, the same for every op (scan_dt_worker
 * relies on it); 0 when it has none. */
static int thread_channels(long E, int tid, int n_threads, long *e0, long *e1)
{
    eng_split_range(E, CHANNEL_ALIGN, tid, n_threads, e0, e1);
    return *e0 < *e1;
}

static void conv_worker(void *arg, int tid, int n_threads)
{
    ssm_job *j = arg;
    const bk_mamba1_io *io = j->io;
    const long E = j->l->d_inner;
    long e0, e1;
    if (!thread_channels(E, tid, n_threads, &e0, &e1))
        return;
    if (!j->st) {
        j->k->conv_channels(j->l, j->window, io->x, io->ldx, j->T, io->xc, E, e0, e1);
        return;
    }
    for (int b = 0; b < j->st->batch; b++)
        j->k->conv_channels(j->l, slot_ptr(j->st, b, j->st->conv_offset),
                            io->x + (size_t)b * io->ldx, io->ldx, 1, io->xc + (size_t)b * E, E,
                            e0, e1);
}

static void scan_worker(void *arg, int tid, int n_threads)
{
    ssm_job *j = arg;
    const bk_mamba1_io *io = j->io;
    const long E = j->l->d_inner;
    const long ldd = j->l->dt_rank + 2L * j->l->d_state;
    long e0, e1;
    if (!thread_channels(E, tid, n_threads, &e0, &e1))
        return;
    if (!j->st) {
        j->k->scan_channels(j->l, j->state, io->xc, io->dt, io->z, E, io->ldz, io->dbc, ldd, j->T,
                            io->y, e0, e1);
        return;
    }
    for (int b = 0; b < j->st->batch; b++)
        j->k->scan_channels(j->l, slot_ptr(j->st, b, j->st->ssm_offset), io->xc + (size_t)b * E,
                      io->dt + (size_t)b * E, io->z + (size_t)b * io->ldz, E, io->ldz,
                      io->dbc + (size_t)b * ldd, ldd, 1, io->y + (size_t)b * E, e0, e1);
}

/* Rows [e0, e1) of dt = dt_proj(dbc's first dt_rank columns) for this
 * thread's channels, through cpu_matmul's own streaming path, then their
 * scan (thread_channels gives both the same ones). */
static void scan_dt_worker(void *arg, int tid, int n_threads)
{
    ssm_job *j = arg;
    long e0, e1;
    if (thread_channels(j->l->d_inner, tid, n_threads, &e0, &e1))
        cpu_matmul_stream_rows(j->k, j->dt_proj, j->io->dbc, j->l->dt_rank + 2 * j->l->d_state,
                               j->st->batch, j->dbc_q, (float *)j->io->dt /* the op's output */,
                               j->l->d_inner, NULL, e0, e1);
    scan_worker(arg, tid, n_threads);
}

/* Rough multiply-adds of an op over `rows` token rows, for the pool. */
static double conv_work(const bk_ssm_layer *l, int rows) { return (double)rows * l->d_inner * l->d_conv; }
static double scan_work(const bk_ssm_layer *l, int rows)
{
    return 8.0 * rows * l->d_inner * l->d_state; /* exp + 3 FMAs per state */
}

void cpu_conv_prefill(const cpu_kernels *k, eng_threadpool *pool, const bk_ssm_layer *l,
                      float *window, const bk_mamba1_io *io)
{
    ssm_job j = {.k = k, .l = l, .window = window, .io = io, .T = io->rows};
    eng_threadpool_run_sized(pool, conv_worker, &j, conv_work(l, io->rows));
}

void cpu_scan_prefill(const cpu_kernels *k, eng_threadpool *pool, const bk_ssm_layer *l,
                      float *state, const bk_mamba1_io *io)
{
    ssm_job j = {.k = k, .l = l, .state = state, .io = io, .T = io->rows};
    eng_threadpool_run_sized(pool, scan_worker, &j, scan_work(l, io->rows));
}

void cpu_conv_step(const cpu_kernels *k, eng_threadpool *pool, const bk_ssm_layer *l,
                   const bk_state_ref *st, const bk_mamba1_io *io)
{
    ssm_job j = {.k = k, .l = l, .st = st, .io = io, .T = 1};
    eng_threadpool_run_sized(pool, conv_worker, &j, conv_work(l, st->batch));
}

void cpu_scan_step(const cpu_kernels *k, eng_threadpool *pool, const bk_ssm_layer *l,
                   const bk_state_ref *st, const bk_mamba1_io *io)
{
    ssm_job j = {.k = k, .l = l, .st = st, .io = io, .T = 1};
    eng_threadpool_run_sized(pool, scan_worker, &j, scan_work(l, st->batch));
}

void cpu_scan_step_dt(cpu_matmul_ctx *mm, const bk_ssm_layer *l, const bk_matrix *dt_proj,
                      const bk_state_ref *st, const bk_mamba1_io *io)
{
    const int ldd = l->dt_rank + 2 * l->d_state, B = st->batch;
    if (B >= cpu_matmul_blas_min_rows(mm->k)) { /* sgemm's rows: as the model would */
        cpu_matmul(mm, dt_proj, io->dbc, ldd, B, (float *)io->dt, l->d_inner, NULL);
        cpu_scan_step(mm->k, mm->pool, l, st, io);
        return;
    }
    ssm_job j = {.k = mm->k, .l = l, .st = st, .io = io, .T = 1, .dt_proj = dt_proj,
                 .dbc_q = cpu_matmul_quantize_x(mm, dt_proj, io->dbc, ldd, B)};
    eng_threadpool_run_sized(mm->pool, scan_dt_worker, &j,
                             scan_work(l, B) + (double)B * l->d_inner * l->dt_rank);
}
