/* cpu_norm.c - residual add + RMSNorm / LayerNorm, as PyTorch computes
 * them in f32 (MambaRMSNorm, torch.nn.functional.layer_norm with biased
 * variance), with the sums accumulated in double for stability. */
#include "kernels/cpu/cpu_norm.h"

#include <math.h>
#include <stddef.h>

typedef struct norm_job {
    cpu_norm_kind kind;
    float *resid, *out;
    const float *add, *weight, *bias;
    float eps;
    int n, dim;
} norm_job;

static void norm_row(const norm_job *j, long r)
{
    float *x = j->resid + (size_t)r * j->dim;
    float *o = j->out + (size_t)r * j->dim;
    if (j->add) {
        const float *a = j->add + (size_t)r * j->dim;
        for (int i = 0; i < j->dim; i++)
            x[i] += a[i];
    }
    if (j->kind == CPU_NORM_RMS) {
        double ss = 0.0;
        for (int i = 0; i < j->dim; i++)
            ss += (double)x[i] * x[i];
        float scale = 1.0f / sqrtf((float)(ss / j->dim) + j->eps);
        for (int i = 0; i < j->dim; i++)
            o[i] = j->weight[i] * (x[i] * scale);
        return;
    }
    double sum = 0.0, ss = 0.0;
    for (int i = 0; i < j->dim; i++)
        sum += x[i];
    double mean = sum / j->dim;
    for (int i = 0; i < j->dim; i++)
        ss += ((double)x[i] - mean) * ((double)x[i] - mean);
    float scale = (float)(1.0 / sqrt(ss / j->dim + (double)j->eps)), m = (float)mean;
    for (int i = 0; i < j->dim; i++)
        o[i] = (x[i] - m) * scale * j->weight[i] + j->bias[i];
}

static void norm_worker(void *arg, int tid, int n_threads)
{
    norm_job *j = arg;
    long r0, r1;
    eng_split_range(j->n, 1, tid, n_threads, &r0, &r1);
    for (long r = r0; r < r1; r++)
        norm_row(j, r);
}

void cpu_add_norm(eng_threadpool *pool, cpu_norm_kind kind, float *resid, const float *add,
                  const float *weight, const float *bias, float eps, int n, int dim, float *out)
{
    norm_job j = {kind, resid, out, add, weight, bias, eps, n, dim};
    if (n >= 2 * eng_threadpool_size(pool))
        eng_threadpool_run(pool, norm_worker, &j);
    else
        norm_worker(&j, 0, 1);
}

void cpu_rms_rows(float *x, long ld, int n, int dim, float eps)
{
    for (int r = 0; r < n; r++) {
        float *row = x + (size_t)r * (size_t)ld, ss = 0.0f;
        for (int i = 0; i < dim; i++)
            ss += row[i] * row[i];
        const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
        for (int i = 0; i < dim; i++)
            row[i] *= inv;
    }
}
