/* cpu_ssd.c - Mamba-2 on the CPU: the causal conv over x||B||C (Mamba-1's
 * conv kernel, run over conv_dim channels), the SSD recurrence per head and
 * the gated RMSNorm.
 *
 * The recurrence of one token is the level's kernel (cpu_gen_ssd.h).
 * Prefill walks time in order with the heads split over the threads (the
 * state of a head stays in cache for the whole prompt); the chunked matmul
 * form of SSD is not used here.  Then each row is gated and normalised per
 * group of d_inner / ngroups channels.  Never allocates: the caller's
 * buffers hold everything.
 */
#include "kernels/cpu/cpu_ssd.h"

#include <math.h>

#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/cpu_ssm.h"

static int conv_dim(const bk_mamba2_layer *l) { return l->d_inner + 2 * l->ngroups * l->d_state; }

/* The conv is Mamba-1's over conv_dim channels (the Mamba-1 kernel reads
 * only the conv fields of its layer and x/xc of its io). */
static void as_conv(const bk_mamba2_layer *l, const bk_mamba2_io *io, int rows, bk_ssm_layer *cl,
                    bk_mamba1_io *cio)
{
    *cl = (bk_ssm_layer){.conv_w = l->conv_w, .conv_b = l->conv_b, .d_inner = conv_dim(l),
                         .d_conv = l->d_conv};
    *cio = (bk_mamba1_io){.x = io->xbc_in, .ldx = io->ld_in, .xc = io->xbc, .rows = rows};
}

void cpu_m2_conv_prefill(const cpu_kernels *k, eng_threadpool *pool, const bk_mamba2_layer *l, float *window,
                         const bk_mamba2_io *io)
{
    bk_ssm_layer cl;
    bk_mamba1_io cio;
    as_conv(l, io, io->rows, &cl, &cio);
    cpu_conv_prefill(k, pool, &cl, window, &cio);
}

void cpu_m2_conv_step(const cpu_kernels *k, eng_threadpool *pool, const bk_mamba2_layer *l, const bk_state_ref *st,
                      const bk_mamba2_io *io)
{
    bk_ssm_layer cl;
    bk_mamba1_io cio;
    as_conv(l, io, st->batch, &cl, &cio);
    cpu_conv_step(k, pool, &cl, st, &cio);
}

/* y = rmsnorm_g(y * silu(z)) * w, or rmsnorm_g(y) * w * silu(z) when the
 * norm comes before the gate; per group of d_inner / ngroups channels. */
static void gated_norm_row(const bk_mamba2_layer *l, float *y, const float *z)
{
    const int group = l->d_inner / l->ngroups;
    if (!l->norm_before_gate)
        for (int e = 0; e < l->d_inner; e++)
            y[e] *= cpu_silu(z[e]);
    for (int g0 = 0; g0 < l->d_inner; g0 += group) {
        float ss = 0.0f;
        for (int e = g0; e < g0 + group; e++)
            ss += y[e] * y[e];
        const float inv = 1.0f / sqrtf(ss / (float)group + l->norm_eps);
        for (int e = g0; e < g0 + group; e++)
            y[e] *= inv * l->norm_w[e] * (l->norm_before_gate ? cpu_silu(z[e]) : 1.0f);
    }
}

typedef struct ssd_job {
    const cpu_kernels *k;
    const bk_mamba2_layer *l;
    const bk_mamba2_io *io;
    float *state;           /* prefill: this layer's state; NULL for decode */
    const bk_state_ref *st; /* decode */
} ssd_job;

static float *slot_state(const bk_state_ref *st, int b)
{
    return st->pool + (size_t)st->slots[b] * st->slot_stride + st->ssm_offset;
}

/* Prefill: the thread's heads over every token in order; decode: its heads
 * of every slot. */
static void scan_worker(void *arg, int tid, int n_threads)
{
    const ssd_job *j = arg;
    const bk_mamba2_io *io = j->io;
    const int cd = conv_dim(j->l), rows = j->st ? j->st->batch : io->rows;
    long h0, h1;
    eng_split_range(j->l->nheads, 1, tid, n_threads, &h0, &h1);
    for (int t = 0; t < rows && h0 < h1; t++)
        j->k->ssd_token(j->l, j->st ? slot_state(j->st, t) : j->state, io->xbc + (size_t)t * cd,
                  io->dt + (size_t)t * io->lddt, io->y + (size_t)t * j->l->d_inner, (int)h0,
                  (int)h1);
}

static void norm_worker(void *arg, int tid, int n_threads)
{
    const ssd_job *j = arg;
    const bk_mamba2_io *io = j->io;
    long r0, r1;
    eng_split_range(j->st ? j->st->batch : io->rows, 1, tid, n_threads, &r0, &r1);
    for (long t = r0; t < r1; t++)
        gated_norm_row(j->l, io->y + (size_t)t * j->l->d_inner, io->z + (size_t)t * io->ldz);
}

static void run_ssd(eng_threadpool *pool, const ssd_job *j, int rows)
{
    const bk_mamba2_layer *l = j->l;
    double scan_work = 4.0 * rows * l->d_inner * l->d_state;
    eng_threadpool_run_sized(pool, scan_worker, (void *)j, scan_work);
    eng_threadpool_run_sized(pool, norm_worker, (void *)j, 8.0 * rows * l->d_inner);
}

void cpu_ssd_prefill(const cpu_kernels *k, eng_threadpool *pool, const bk_mamba2_layer *l,
                     float *state, const bk_mamba2_io *io)
{
    ssd_job j = {.k = k, .l = l, .io = io, .state = state};
    run_ssd(pool, &j, io->rows);
}

void cpu_ssd_step(const cpu_kernels *k, eng_threadpool *pool, const bk_mamba2_layer *l,
                  const bk_state_ref *st, const bk_mamba2_io *io)
{
    ssd_job j = {.k = k, .l = l, .io = io, .st = st};
    run_ssd(pool, &j, st->batch);
}
