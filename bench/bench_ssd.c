/* bench_ssd.c - the Mamba-2 prefill recurrence alone on the CPU: the scan
 * and the chunked (matmul) form of cpu_ssd.c, in one run.
 *
 *   bench_ssd [--rows 64,512] [--threads N] [--heads 24] [--head-dim 64]
 *             [--state 128] [--groups 1]
 *
 * One layer of a mamba2-130m-shaped model by default, on random
 * activations.  For each prompt length: the best of 9 timings of each form
 * (after a warm-up), wall time and CPU time (which compares the forms
 * fairly where other jobs share the cores), at the kernel level
 * the backend would use (SSMD_CPU forces one).  One JSON object per length
 * on stdout, a table on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_ssd.h"
#include "kernels/cpu/threadpool.h"

void openblas_set_num_threads(int n); /* not declared by every cblas.h */

static double clock_s(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *random_floats(size_t n, float lo, float hi, unsigned *seed)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = lo + (hi - lo) * (float)((*seed = *seed * 1664525u + 1013904223u) >> 8) / 16777216.0f;
    return p;
}

/* Best wall and CPU seconds of one form over 9 runs after a warm-up.  CPU
 * time is the calling thread's when it runs the op alone (one thread):
 * library threads that spin for a while after start-up (OpenBLAS's) would
 * otherwise count. */
static void time_form(const cpu_kernels *k, eng_threadpool *pool, const bk_mamba2_layer *l,
                      float *state, const bk_mamba2_io *io, cpu_ssd_form form, double *wall,
                      double *cpu)
{
    const clockid_t cpu_clock =
        eng_threadpool_size(pool) == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_PROCESS_CPUTIME_ID;
    *wall = *cpu = 1e30;
    for (int r = 0; r < 10; r++) {
        double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(cpu_clock);
        cpu_ssd_prefill(k, pool, l, state, io, form);
        double dt = clock_s(CLOCK_MONOTONIC) - t0, dc = clock_s(cpu_clock) - c0;
        if (r > 0 && dt < *wall)
            *wall = dt;
        if (r > 0 && dc < *cpu)
            *cpu = dc;
    }
}

int main(int argc, char **argv)
{
    const char *rows_arg = "64,512";
    int threads = 1, H = 24, P = 64, N = 128, G = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        int *dst = !strcmp(argv[i], "--threads")    ? &threads
                   : !strcmp(argv[i], "--heads")    ? &H
                   : !strcmp(argv[i], "--head-dim") ? &P
                   : !strcmp(argv[i], "--state")    ? &N
                   : !strcmp(argv[i], "--groups")   ? &G
                                                    : NULL;
        if (dst)
            *dst = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rows"))
            rows_arg = argv[i + 1];
        else {
            fprintf(stderr, "usage: bench_ssd [--rows 64,512] [--threads N] [--heads H] "
                            "[--head-dim P] [--state N] [--groups G]\n");
            return 2;
        }
    }
    if (threads < 1 || H < 1 || P < 1 || N < 1 || G < 1 || H % G) {
        fprintf(stderr, "bench_ssd: bad sizes\n");
        return 2;
    }
    const cpu_kernels *k;
    ssmd_err err;
    if (cpu_kernels_choose(getenv("SSMD_CPU"), &k, &err) != SSMD_OK) {
        fprintf(stderr, "bench_ssd: %s\n", err.msg);
        return 1;
    }
    const int di = H * P, cd = di + 2 * G * N;
    unsigned seed = 1;
    float *dt_bias = random_floats(H, -6.0f, -2.0f, &seed), *A = random_floats(H, -16.0f, -1.0f, &seed);
    float *D = random_floats(H, 0.5f, 1.5f, &seed), *norm_w = random_floats(di, 0.5f, 1.5f, &seed);
    float *state = random_floats((size_t)H * P * N, -0.1f, 0.1f, &seed);
    bk_mamba2_layer l = {.dt_bias = dt_bias, .A = A, .D = D, .norm_w = norm_w, .d_inner = di,
                         .d_state = N, .d_conv = 4, .nheads = H, .head_dim = P, .ngroups = G,
                         .dt_min = 0.0f, .dt_max = 1e30f, .norm_eps = 1e-5f};
    /* as the cpu backend does: our pool's threads each call sgemm */
    openblas_set_num_threads(1);
    eng_threadpool *pool = eng_threadpool_create(threads);
    for (const char *p = rows_arg; *p;) {
        const int T = atoi(p);
        float *xbc = random_floats((size_t)T * cd, -1.0f, 1.0f, &seed);
        float *dt = random_floats((size_t)T * H, -1.0f, 1.0f, &seed);
        float *z = random_floats((size_t)T * di, -1.0f, 1.0f, &seed);
        float *y = malloc(sizeof(float) * T * di);
        bk_mamba2_io io = {.xbc = xbc, .dt = dt, .lddt = H, .z = z, .ldz = di, .y = y, .rows = T};
        double ws, cs, wc, cc;
        time_form(k, pool, &l, state, &io, CPU_SSD_SCAN, &ws, &cs);
        time_form(k, pool, &l, state, &io, CPU_SSD_CHUNK, &wc, &cc);
        fprintf(stderr, "%s%s, %d thread(s), %d rows: scan %.3f ms (CPU %.3f), chunked %.3f ms "
                        "(CPU %.3f): chunked/scan %.2fx by CPU time\n",
                k->name, k->variant, threads, T, ws * 1e3, cs * 1e3, wc * 1e3, cc * 1e3, cs / cc);
        printf("{\"level\": \"%s%s\", \"threads\": %d, \"rows\": %d, \"heads\": %d, \"head_dim\": %d, "
               "\"d_state\": %d, \"groups\": %d, \"scan_ms\": %.4f, \"scan_cpu_ms\": %.4f, "
               "\"chunk_ms\": %.4f, \"chunk_cpu_ms\": %.4f}\n",
               k->name, k->variant, threads, T, H, P, N, G, ws * 1e3, cs * 1e3, wc * 1e3, cc * 1e3);
        free(xbc), free(dt), free(z), free(y);
        p = strchr(p, ',');
        p = p ? p + 1 : "";
    }
    eng_threadpool_destroy(pool);
    free(dt_bias), free(A), free(D), free(norm_w), free(state);
    return 0;
}
