/* cpu_ssm.c - the Mamba-1 mixer's sequence ops on the CPU: causal
 * depthwise conv1d and the selective scan, for prefill (one sequence, T
 * tokens, from a given state) and decode (a batch of slots, one token each).
 *
 * Both views share one kernel per op that walks a range of channels over
 * T time steps; prefill calls it with T tokens, decode with T = 1 per slot.
 * Work is split across threads by channel (channels are independent); within
 * a thread the scan vectorises across 16 channels at a time, with the SSM
 * state of those channels held in registers for the whole sequence, so time
 * is walked in order with no horizontal reductions.
 */
#include "kernels/cpu/cpu_ssm.h"

#include "kernels/cpu/cpu_math.h"

enum { CHANNEL_ALIGN = 16 };

void cpu_silu_inplace(float *v, long n)
{
    long i = 0;
#if CPU_HAVE_AVX512
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(v + i, cpu_silu16(_mm512_loadu_ps(v + i)));
#endif
    for (; i < n; i++)
        v[i] = cpu_silu(v[i]);
}

/* Channels [e0, e1) of the causal conv over T steps.  Input row t of x is
 * at x + t * ldx; window (d_conv-1, d_inner) holds the inputs before t = 0
 * (oldest first) and is left holding the last d_conv-1 inputs. */
static void conv_channels(const bk_ssm_layer *l, float *window, const float *x, long ldx, int T,
                          float *xc, long ldxc, long e0, long e1)
{
    const long E = l->d_inner;
    const int K = l->d_conv;
    for (int t = 0; t < T; t++) {
        float *out = xc + (size_t)t * ldxc;
        for (long e = e0; e < e1; e++)
            out[e] = l->conv_b ? l->conv_b[e] : 0.0f;
        for (int k = 0; k < K; k++) {
            long src_t = (long)t + k - (K - 1);
            const float *src = src_t >= 0 ? x + (size_t)src_t * ldx
                                          : window + (size_t)(src_t + K - 1) * E;
            const float *w = l->conv_w + (size_t)k * E;
            for (long e = e0; e < e1; e++)
                out[e] += w[e] * src[e];
        }
        cpu_silu_inplace(out + e0, e1 - e0);
    }
    /* Shift: new row j holds input at time T-(K-1)+j.  Sources are rows at
     * or after j of the old window, so ascending j never reads a row it
     * already overwrote. */
    for (int j = 0; j < K - 1; j++) {
        long src_t = (long)T - (K - 1) + j;
        const float *src = src_t >= 0 ? x + (size_t)src_t * ldx : window + (size_t)(T + j) * E;
        float *dst = window + (size_t)j * E;
        for (long e = e0; e < e1; e++)
            dst[e] = src[e];
    }
}

/* Channels [e0, e1) of the selective scan over T steps, see backend.h.
 * Row strides: x/dt/y rows are d_inner apart (ldx), z rows ldz, dbc rows
 * ldd.  state is (d_state, d_inner). */
static void scan_channels(const bk_ssm_layer *l, float *state, const float *x, const float *dt,
                          const float *z, long ldx, long ldz, const float *dbc, long ldd, int T,
                          float *y, long e0, long e1)
{
    const long E = l->d_inner;
    const int N = l->d_state, R = l->dt_rank;
    long e = e0;
#if CPU_HAVE_AVX512
    __m512 h[CPU_SSM_MAX_STATE];
    for (; e + 16 <= e1; e += 16) {
        for (int n = 0; n < N; n++)
            h[n] = _mm512_loadu_ps(state + (size_t)n * E + e);
        const __m512 bias = _mm512_loadu_ps(l->dt_bias + e);
        const __m512 Dv = _mm512_loadu_ps(l->D + e);
        for (int t = 0; t < T; t++) {
            const float *Bt = dbc + (size_t)t * ldd + R, *Ct = Bt + N;
            __m512 dtv = cpu_softplus16(_mm512_add_ps(_mm512_loadu_ps(dt + (size_t)t * ldx + e), bias));
            __m512 xv = _mm512_loadu_ps(x + (size_t)t * ldx + e);
            __m512 yv = _mm512_setzero_ps();
            for (int n = 0; n < N; n++) {
                __m512 dA = cpu_exp16(_mm512_mul_ps(dtv, _mm512_loadu_ps(l->A + (size_t)n * E + e)));
                __m512 dBx = _mm512_mul_ps(_mm512_mul_ps(dtv, _mm512_set1_ps(Bt[n])), xv);
                h[n] = _mm512_fmadd_ps(dA, h[n], dBx);
                yv = _mm512_fmadd_ps(h[n], _mm512_set1_ps(Ct[n]), yv);
            }
            yv = _mm512_fmadd_ps(xv, Dv, yv);
            yv = _mm512_mul_ps(yv, cpu_silu16(_mm512_loadu_ps(z + (size_t)t * ldz + e)));
            _mm512_storeu_ps(y + (size_t)t * ldx + e, yv);
        }
        for (int n = 0; n < N; n++)
            _mm512_storeu_ps(state + (size_t)n * E + e, h[n]);
    }
#endif
    for (; e < e1; e++) {
        for (int t = 0; t < T; t++) {
            const float *Bt = dbc + (size_t)t * ldd + R, *Ct = Bt + N;
            float dtv = cpu_softplus(dt[(size_t)t * ldx + e] + l->dt_bias[e]);
            float xv = x[(size_t)t * ldx + e];
            float yv = 0.0f;
            for (int n = 0; n < N; n++) {
                float *hn = state + (size_t)n * E + e;
                float dA = expf(dtv * l->A[(size_t)n * E + e]);
                *hn = dA * *hn + (dtv * Bt[n]) * xv;
                yv += *hn * Ct[n];
            }
            yv += xv * l->D[e];
            y[(size_t)t * ldx + e] = yv * cpu_silu(z[(size_t)t * ldz + e]);
        }
    }
}

typedef struct ssm_job {
    const bk_ssm_layer *l;
    const bk_state_ref *st; /* decode: where the slots are; NULL for prefill */
    float *window, *state;  /* prefill */
    const bk_mamba1_io *io;
    int T;                  /* prefill: io->rows; decode: 1 per slot */
} ssm_job;

static float *slot_ptr(const bk_state_ref *st, int b, size_t offset)
{
    return st->pool + (size_t)st->slots[b] * st->slot_stride + offset;
}

static void conv_worker(void *arg, int tid, int n_threads)
{
    ssm_job *j = arg;
    const bk_mamba1_io *io = j->io;
    const long E = j->l->d_inner;
    long e0, e1;
    eng_split_range(E, CHANNEL_ALIGN, tid, n_threads, &e0, &e1);
    if (e0 >= e1)
        return;
    if (!j->st) {
        conv_channels(j->l, j->window, io->x, io->ldx, j->T, io->xc, E, e0, e1);
        return;
    }
    for (int b = 0; b < j->st->batch; b++)
        conv_channels(j->l, slot_ptr(j->st, b, j->st->conv_offset), io->x + (size_t)b * io->ldx,
                      io->ldx, 1, io->xc + (size_t)b * E, E, e0, e1);
}

static void scan_worker(void *arg, int tid, int n_threads)
{
    ssm_job *j = arg;
    const bk_mamba1_io *io = j->io;
    const long E = j->l->d_inner;
    const long ldd = j->l->dt_rank + 2L * j->l->d_state;
    long e0, e1;
    eng_split_range(E, CHANNEL_ALIGN, tid, n_threads, &e0, &e1);
    if (e0 >= e1)
        return;
    if (!j->st) {
        scan_channels(j->l, j->state, io->xc, io->dt, io->z, E, io->ldz, io->dbc, ldd, j->T, io->y,
                      e0, e1);
        return;
    }
    for (int b = 0; b < j->st->batch; b++)
        scan_channels(j->l, slot_ptr(j->st, b, j->st->ssm_offset), io->xc + (size_t)b * E,
                      io->dt + (size_t)b * E, io->z + (size_t)b * io->ldz, E, io->ldz,
                      io->dbc + (size_t)b * ldd, ldd, 1, io->y + (size_t)b * E, e0, e1);
}

/* Rough multiply-adds of an op over `rows` token rows, for the pool. */
static double conv_work(const bk_ssm_layer *l, int rows) { return (double)rows * l->d_inner * l->d_conv; }
static double scan_work(const bk_ssm_layer *l, int rows)
{
    return 8.0 * rows * l->d_inner * l->d_state; /* exp + 3 FMAs per state */
}

void cpu_conv_prefill(eng_threadpool *pool, const bk_ssm_layer *l, float *window,
                      const bk_mamba1_io *io)
{
    ssm_job j = {.l = l, .window = window, .io = io, .T = io->rows};
    eng_threadpool_run_sized(pool, conv_worker, &j, conv_work(l, io->rows));
}

void cpu_scan_prefill(eng_threadpool *pool, const bk_ssm_layer *l, float *state,
                      const bk_mamba1_io *io)
{
    ssm_job j = {.l = l, .state = state, .io = io, .T = io->rows};
    eng_threadpool_run_sized(pool, scan_worker, &j, scan_work(l, io->rows));
}

void cpu_conv_step(eng_threadpool *pool, const bk_ssm_layer *l, const bk_state_ref *st,
                   const bk_mamba1_io *io)
{
    ssm_job j = {.l = l, .st = st, .io = io, .T = 1};
    eng_threadpool_run_sized(pool, conv_worker, &j, conv_work(l, st->batch));
}

void cpu_scan_step(eng_threadpool *pool, const bk_ssm_layer *l, const bk_state_ref *st,
                   const bk_mamba1_io *io)
{
    ssm_job j = {.l = l, .st = st, .io = io, .T = 1};
    eng_threadpool_run_sized(pool, scan_worker, &j, scan_work(l, st->batch));
}
