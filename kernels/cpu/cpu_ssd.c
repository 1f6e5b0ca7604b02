/* cpu_ssd.c - Mamba-2 on the CPU: the causal conv over x||B||C (Mamba-1's
 * conv kernel, run over conv_dim channels), the SSD recurrence per head and
 * the gated RMSNorm.
 *
 * Prefill takes one of two forms, both the level's kernels with the heads
 * split over the threads: the scan walks time in order, one token at a
 * time (cpu_gen_ssd.h; a head's state stays in cache for the whole
 * prompt), and the chunked form does CPU_SSD_CHUNK_LEN tokens at once as
 * small matmuls (cpu_gen_ssd_chunk.h), which wins on long prompts.  Then
 * each row is gated and normalised per group of d_inner / ngroups
 * channels.  Only the chunked form allocates (its per-thread scratch, per
 * call; the scan runs instead when that fails).
 */
#include "kernels/cpu/cpu_ssd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* Prefill in the matmul form: the thread's heads, chunk after chunk (a
 * chunk's C B^T is shared by the heads of a group, so a thread keeps the
 * same chunk for all its heads before moving on). */
typedef struct chunk_job {
    const cpu_kernels *k;
    const bk_mamba2_layer *l;
    const bk_mamba2_io *io;
    float *state;
    float *scratch; /* (threads, per) */
    size_t per;
    int Q;
} chunk_job;

static void chunk_worker(void *arg, int tid, int n_threads)
{
    const chunk_job *j = arg;
    const bk_mamba2_io *io = j->io;
    const int cd = conv_dim(j->l);
    long h0, h1;
    eng_split_range(j->l->nheads, 1, tid, n_threads, &h0, &h1);
    for (int t0 = 0; t0 < io->rows && h0 < h1; t0 += j->Q)
        j->k->ssd_chunk(j->l, j->state, io->xbc + (size_t)t0 * cd, io->dt + (size_t)t0 * io->lddt,
                        io->lddt, io->rows - t0 < j->Q ? io->rows - t0 : j->Q,
                        io->y + (size_t)t0 * j->l->d_inner, (int)h0, (int)h1,
                        j->scratch + (size_t)tid * j->per);
}

/* 1 when the chunked form runs: forced, or long enough to pay (always at
 * the scalar level, whose scan is plain C). */
static int use_chunks(const cpu_kernels *k, cpu_ssd_form form, int rows)
{
    const int min_rows = k->level == CPU_LEVEL_SCALAR ? 1 : CPU_SSD_CHUNK_MIN_ROWS;
    return form == CPU_SSD_CHUNK || (form == CPU_SSD_AUTO && rows >= min_rows);
}

static void norm_rows(eng_threadpool *pool, const ssd_job *j, int rows)
{
    eng_threadpool_run_sized(pool, norm_worker, (void *)j, 8.0 * rows * j->l->d_inner);
}

int cpu_ssd_form_parse(const char *name, cpu_ssd_form *out)
{
    if (!name || !*name || !strcmp(name, "auto"))
        *out = CPU_SSD_AUTO;
    else if (!strcmp(name, "scan"))
        *out = CPU_SSD_SCAN;
    else if (!strcmp(name, "chunk"))
        *out = CPU_SSD_CHUNK;
    else
        return -1;
    return 0;
}

void cpu_ssd_prefill(const cpu_kernels *k, eng_threadpool *pool, const bk_mamba2_layer *l,
                     float *state, const bk_mamba2_io *io, cpu_ssd_form form)
{
    ssd_job j = {.k = k, .l = l, .io = io, .state = state};
    const double work = 4.0 * io->rows * l->d_inner * l->d_state;
    float *scratch = NULL;
    if (use_chunks(k, form, io->rows)) {
        /* per call: a few hundred KB, small beside the layer's matmuls */
        const size_t per = cpu_ssd_chunk_carve(l, CPU_SSD_CHUNK_LEN, NULL, NULL);
        scratch = aligned_alloc(64, per * sizeof(float) * (size_t)eng_threadpool_size(pool));
        chunk_job c = {.k = k, .l = l, .io = io, .state = state, .scratch = scratch, .per = per,
                       .Q = CPU_SSD_CHUNK_LEN};
        if (scratch) /* else the scan below */
            eng_threadpool_run_sized(pool, chunk_worker, &c, work);
    }
    if (!scratch)
        eng_threadpool_run_sized(pool, scan_worker, &j, work);
    free(scratch);
    norm_rows(pool, &j, io->rows);
}

void cpu_ssd_step(const cpu_kernels *k, eng_threadpool *pool, const bk_mamba2_layer *l,
                  const bk_state_ref *st, const bk_mamba2_io *io)
{
    ssd_job j = {.k = k, .l = l, .io = io, .st = st};
    eng_threadpool_run_sized(pool, scan_worker, &j, 4.0 * st->batch * l->d_inner * l->d_state);
    norm_rows(pool, &j, st->batch);
}
