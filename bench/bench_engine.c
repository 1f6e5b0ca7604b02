/* bench_engine.c - CPU engine benchmark on one model directory.
 *
 *   bench_engine MODEL_DIR [--threads N] [--prompt-len 512] [--batches 1,4,16,64]
 *
 * Measures, in this one run: the machine's read bandwidth (the benchmark's
 * threads summing a buffer far larger than the caches with the SIMD sum of
 * the kernel level in use, so the probe works on every architecture the
 * kernels do), prefill tokens/s of one
 * prompt, decode tokens/s (total over the batch) per batch size, and the
 * bandwidth batch-1 decode achieves (weight bytes per step x steps/s) as a
 * fraction of the measured read bandwidth.  Prints the CPU kernel level
 * (SSMD_CPU forces one), OpenBLAS's kernels (prefill's sgemm:
 * OPENBLAS_CORETYPE forces them) and the Mamba-2 prefill form (SSMD_SSD
 * forces one), a table on stderr and one JSON object on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/model.h"
#include "engine/state_pool.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/threadpool.h"

char *openblas_get_corename(void); /* not declared by every cblas.h */

static double clock_s(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }

typedef struct bw_job {
    const cpu_kernels *k;
    const float *buf;
    long n;
    double sink[256];
} bw_job;

static void bw_worker(void *arg, int tid, int n_threads)
{
    bw_job *j = arg;
    long b, e;
    eng_split_range(j->n, 1024, tid, n_threads, &b, &e);
    j->sink[tid] = j->k->sum(j->buf + b, e - b);
}

/* Best of 5 passes over 1 GiB, in GB/s (1e9 bytes), summed with k's
 * vector sum (the scalar level's sum is not a memory probe: it measures
 * the adder, so it borrows the best level's). */
static double read_bandwidth(const cpu_kernels *k, int threads)
{
    if (k->level == CPU_LEVEL_SCALAR)
        k = cpu_kernels_best();
    long n = 1L << 28;
    float *buf = aligned_alloc(64, (size_t)n * sizeof(float));
    if (!buf)
        return 0;
    for (long i = 0; i < n; i++)
        buf[i] = (float)(i & 7);
    eng_threadpool *pool = eng_threadpool_create(threads);
    bw_job j = {.k = k, .buf = buf, .n = n};
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        eng_threadpool_run(pool, bw_worker, &j);
        double dt = now_s() - t0;
        if (dt < best)
            best = dt;
    }
    eng_threadpool_destroy(pool);
    free(buf);
    return (double)n * sizeof(float) / best / 1e9;
}

/* /proc/cpuinfo's "model name" (x86) or "CPU part" (Arm), "unknown" else. */
static void cpu_model(char *out, size_t size)
{
    snprintf(out, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (colon && (!strncmp(line, "model name", 10) || !strncmp(line, "CPU part", 8))) {
            snprintf(out, size, "%s", colon + 2);
            out[strcspn(out, "\n")] = '\0';
            break;
        }
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_engine MODEL_DIR [--threads N] [--prompt-len N] [--batches 1,4,16,64]\n");
        return 2;
    }
    int threads = 0, prompt_len = 512;
    const char *batches_arg = "1,4,16,64";
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prompt-len"))
            prompt_len = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batches"))
            batches_arg = argv[i + 1];
    }
    int batches[16], n_batches = 0, max_batch = 1;
    for (const char *s = batches_arg; *s && n_batches < 16;) {
        batches[n_batches] = atoi(s);
        if (batches[n_batches] > max_batch)
            max_batch = batches[n_batches];
        n_batches++;
        s = strchr(s, ',') ? strchr(s, ',') + 1 : s + strlen(s);
    }
    eng_model_opts o;
    eng_model_opts_defaults(&o);
    o.backend_opts.threads = threads;
    o.max_batch = max_batch;
    eng_model *m;
    ssmd_err err;
    if (eng_model_open(argv[1], &o, &m, &err)) {
        fprintf(stderr, "bench_engine: %s\n", err.msg);
        return 1;
    }
    /* the level the backend chose, by the same rule (SSMD_CPU or the best) */
    const cpu_kernels *k = NULL;
    if (cpu_kernels_choose(getenv("SSMD_CPU"), &k, &err) != SSMD_OK) {
        fprintf(stderr, "bench_engine: %s\n", err.msg);
        return 1;
    }
    char cpu[128], level[32];
    cpu_model(cpu, sizeof cpu);
    snprintf(level, sizeof level, "%s%s", k->name, k->variant);
    fprintf(stderr, "cpu: %s; kernel level %s%s (best here: %s%s)%s; OpenBLAS's %s kernels\n", cpu,
            k->name, k->variant, cpu_kernels_best()->name, cpu_kernels_best()->variant,
            getenv("SSMD_CPU") ? ", forced by SSMD_CPU" : "", openblas_get_corename());
    int n_threads = threads > 0 ? threads : 0;
    double bw = read_bandwidth(k, n_threads > 0 ? n_threads : 2);
    const int V = eng_model_n_vocab(m);
    eng_state_pool *pool;
    if (eng_state_pool_create(m, max_batch, &pool, &err)) {
        fprintf(stderr, "bench_engine: %s\n", err.msg);
        return 1;
    }
    int32_t *ids = malloc(sizeof(int32_t) * (prompt_len > max_batch ? prompt_len : max_batch));
    float *logits = malloc(sizeof(float) * (size_t)V * max_batch);
    unsigned seed = 1;
    for (int i = 0; i < prompt_len; i++)
        ids[i] = (int32_t)((seed = seed * 1664525u + 1013904223u) >> 8) % V;

    /* prefill: best of 3 after a warm-up; also the process's CPU time,
     * which on a shared machine (other jobs on the cores) compares forms
     * better than the wall clock: with --threads 1 it is the work done */
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r < 4; r++) {
        eng_state_slot_zero(pool, 0);
        double t0 = now_s(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        eng_model_prefill(m, pool, 0, ids, prompt_len, logits, 0, &err);
        double dt = now_s() - t0, dc = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (r > 0 && dt < best)
            best = dt;
        if (r > 0 && dc < best_cpu)
            best_cpu = dc;
    }
    double prefill_tps = prompt_len / best;
    const char *dtype = eng_model_dtype_name(m);
    fprintf(stderr, "model %s: %lld params, %s, %.1f MB weights\n", argv[1],
            (long long)eng_model_n_params(m), dtype, eng_model_weight_bytes(m) / 1e6);
    const char *ssd = getenv("SSMD_SSD"); /* the Mamba-2 prefill form (cpu_ssd.h) */
    fprintf(stderr, "read bandwidth: %.1f GB/s\nprefill (%d tokens): %.1f tokens/s, %.1f per CPU second\n",
            bw, prompt_len, prefill_tps, prompt_len / best_cpu);
    printf("{\"impl\": \"ssmd\", \"cpu\": \"%s\", \"level\": \"%s\", \"blas\": \"%s\", "
           "\"dtype\": \"%s\", \"ssd\": \"%s\", \"read_bw_gbs\": %.2f, \"prompt_len\": %d, "
           "\"prefill_tok_s\": %.1f, \"prefill_tok_cpu_s\": %.1f, \"decode_tok_s\": {",
           cpu, level, openblas_get_corename(), dtype, ssd && *ssd ? ssd : "auto", bw, prompt_len,
           prefill_tps, prompt_len / best_cpu);

    double b1_bw = 0;
    int32_t slots[1024];
    for (int bi = 0; bi < n_batches; bi++) {
        int B = batches[bi];
        for (int b = 0; b < B; b++) {
            slots[b] = b;
            eng_state_slot_zero(pool, b);
            eng_model_prefill(m, pool, b, ids, 4, NULL, 0, &err);
            ids[b] = (int32_t)(b * 7 % V);
        }
        /* 5 rounds of ~0.6 s each (steps estimated from a warm-up step); the
         * best round counts, since the machine is shared and noisy. */
        double t0 = now_s();
        eng_model_decode(m, pool, slots, ids, B, logits, &err);
        double one = now_s() - t0;
        int steps = (int)(0.6 / (one > 1e-4 ? one : 1e-4));
        steps = steps < 3 ? 3 : steps > 500 ? 500 : steps;
        double dt = 1e30;
        for (int round = 0; round < 5; round++) {
            t0 = now_s();
            for (int s = 0; s < steps; s++)
                eng_model_decode(m, pool, slots, ids, B, logits, &err);
            double t = now_s() - t0;
            if (t < dt)
                dt = t;
        }
        double tps = (double)B * steps / dt;
        if (B == 1)
            b1_bw = eng_model_weight_bytes(m) * (steps / dt) / 1e9;
        fprintf(stderr, "decode batch %2d: %8.1f tokens/s  (%.2f ms/step)\n", B, tps, dt / steps * 1e3);
        printf("%s\"%d\": %.1f", bi ? ", " : "", B, tps);
    }
    printf("}, \"b1_weight_gbs\": %.2f, \"b1_bw_fraction\": %.3f}\n", b1_bw, bw > 0 ? b1_bw / bw : 0);
    fprintf(stderr, "batch-1 decode streams %.1f GB/s of weights = %.0f%% of measured read bandwidth\n",
            b1_bw, bw > 0 ? 100 * b1_bw / bw : 0);
    free(ids);
    free(logits);
    eng_state_pool_destroy(pool);
    eng_model_close(m);
    return 0;
}
