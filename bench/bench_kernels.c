/* bench_kernels.c - the decode matmul kernels alone, per level and dtype.
 *
 *   bench_kernels [--rows 3072] [--cols 768] [--batches 1,16] [--levels avx2,avx2-plain]
 *                 [--dtypes f32,bf16,f16,q8_0,q4_0,q4_k,q6_k,q5_0] [--seconds 0.3]
 *
 * One thread runs each level's gemv_rows / qgemv_rows (what batch decode
 * streams; for quantized types the activation quantization that precedes
 * qgemv is included) over a random matrix of the given shape (default:
 * mamba-130m's in_proj).  At that size the weights of the smaller types
 * stay in the caches, so this measures the kernels' arithmetic: whether a
 * format's unpacking keeps up with memory, and A/B comparisons of kernel
 * changes.  Time is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so a
 * busy shared machine that takes the core away changes little.  Prints
 * nanoseconds per weight row and GB/s of weight bytes: a table on stderr
 * and one JSON line per case on stdout.  --levels takes SSMD_CPU's names
 * ("avx2-plain": the level without VNNI); by default every level here.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/quant.h"
#include "engine/tensor.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_quant.h"

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int parse_list(const char *s, char out[][16], int max)
{
    int n = 0;
    while (*s && n < max) {
        size_t len = strcspn(s, ",");
        snprintf(out[n++], 16, "%.*s", (int)len, s);
        s += len + (s[len] == ',');
    }
    return n;
}

static eng_dtype dtype_named(const char *name)
{
    for (int dt = 0; dt < ENG_DTYPE_COUNT; dt++)
        if (!strcmp(eng_dtype_info_of((eng_dtype)dt)->name, name) &&
            (dt <= ENG_DTYPE_BF16 || eng_dtype_info_of((eng_dtype)dt)->quantized))
            return (eng_dtype)dt;
    fprintf(stderr,
            "bench_kernels: unknown dtype '%s' (have: f32, bf16, f16, q8_0, q4_0, q4_k, q6_k, "
            "q5_0)\n",
            name);
    exit(2);
}

/* n bytes of blocks of a type ssmd cannot write (Q6_K, Q5_0): random
 * bytes, then each block's f16 scale set to a sane value (Q6_K's at byte
 * 208 of 210, Q5_0's at 0 of 22), so that the sums stay finite. */
static void random_blocks(eng_dtype dt, uint8_t *dst, uint64_t n, unsigned *s)
{
    const int bytes = eng_dtype_info_of(dt)->block_bytes, at = dt == ENG_DTYPE_Q6_K ? 208 : 0;
    for (uint64_t i = 0; i < n; i++)
        dst[i] = (uint8_t)((*s = *s * 1664525u + 1013904223u) >> 24);
    for (uint64_t b = 0; b < n; b += (uint64_t)bytes) {
        const uint16_t d = eng_f32_to_f16(0.01f);
        dst[b + at] = (uint8_t)d, dst[b + at + 1] = (uint8_t)(d >> 8);
    }
}

/* rows x cols random weights in dt (quantized from f32 in [-1, 1), or
 * random blocks where ssmd has no quantiser). */
static void *make_weights(eng_dtype dt, int rows, int cols, uint64_t *row_bytes)
{
    float *f = malloc(sizeof(float) * (size_t)rows * cols);
    unsigned s = 12345;
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        f[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f * 2.0f - 1.0f;
    *row_bytes = eng_dtype_row_bytes(dt, cols);
    uint8_t *w = aligned_alloc(64, (*row_bytes * rows + 63) / 64 * 64);
    for (int r = 0; r < rows; r++) {
        const float *src = f + (size_t)r * cols;
        uint8_t *dst = w + (size_t)r * *row_bytes;
        if (dt == ENG_DTYPE_F32)
            memcpy(dst, src, sizeof(float) * cols);
        else if (dt == ENG_DTYPE_F16 || dt == ENG_DTYPE_BF16)
            for (int c = 0; c < cols; c++)
                ((uint16_t *)dst)[c] = dt == ENG_DTYPE_F16 ? eng_f32_to_f16(src[c]) : eng_f32_to_bf16(src[c]);
        else if (eng_quant_can_write(dt))
            eng_quant_quantize(dt, src, cols, dst);
        else
            random_blocks(dt, dst, *row_bytes, &s);
    }
    free(f);
    return w;
}

int main(int argc, char **argv)
{
    int rows = 3072, cols = 768;
    double seconds = 0.3;
    const char *batches_arg = "1,16", *levels_arg = NULL,
               *dtypes_arg = "f32,bf16,f16,q8_0,q4_0,q4_k,q6_k,q5_0";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--rows"))
            rows = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--cols"))
            cols = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batches"))
            batches_arg = argv[i + 1];
        else if (!strcmp(argv[i], "--levels"))
            levels_arg = argv[i + 1];
        else if (!strcmp(argv[i], "--dtypes"))
            dtypes_arg = argv[i + 1];
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else {
            fprintf(stderr, "bench_kernels: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (rows < 4 || cols < 256 || cols % 256) {
        fprintf(stderr, "bench_kernels: --rows >= 4 and --cols a multiple of 256, please\n");
        return 2;
    }
    const cpu_kernels *levels[8];
    char want_levels[8][16], dtypes[16][16], batch_s[8][16];
    int n_levels = levels_arg ? parse_list(levels_arg, want_levels, 8) : cpu_kernels_list(levels);
    for (int j = 0; levels_arg && j < n_levels; j++) {
        ssmd_err err;
        if (cpu_kernels_choose(want_levels[j], &levels[j], &err) != SSMD_OK) {
            fprintf(stderr, "bench_kernels: %s\n", err.msg);
            return 2;
        }
    }
    int n_dtypes = parse_list(dtypes_arg, dtypes, 16), n_batches = parse_list(batches_arg, batch_s, 8);
    int max_b = 1;
    for (int i = 0; i < n_batches; i++)
        max_b = atoi(batch_s[i]) > max_b ? atoi(batch_s[i]) : max_b;

    float *x = malloc(sizeof(float) * (size_t)max_b * cols), *y = malloc(sizeof(float) * (size_t)max_b * rows);
    for (long i = 0; i < (long)max_b * cols; i++)
        x[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    cpu_q8_act act = {0};
    fprintf(stderr, "bench_kernels: %d x %d, one thread, CPU time\n", rows, cols);
    fprintf(stderr, "%-12s %-6s %3s %12s %10s\n", "level", "dtype", "B", "ns/row", "GB/s");
    for (int d = 0; d < n_dtypes; d++) {
        const eng_dtype dt = dtype_named(dtypes[d]);
        uint64_t row_bytes;
        void *data = make_weights(dt, rows, cols, &row_bytes);
        bk_matrix w = {.data = data, .row_bytes = row_bytes, .dtype = dt, .rows = rows, .cols = cols};
        const int quantized = eng_dtype_info_of(dt)->quantized;
        for (int li = 0; li < n_levels; li++) {
            const cpu_kernels *k = levels[li];
            for (int bi = 0; bi < n_batches; bi++) {
                const int B = atoi(batch_s[bi]);
                long reps = 0;
                double t0 = cpu_s(), t = 0;
                do {
                    if (quantized) {
                        cpu_q8_act_fill(&act, x, cols, B, cols);
                        k->qgemv_rows(&w, &act, y, rows, NULL, 0, rows);
                    } else {
                        k->gemv_rows(&w, x, cols, B, y, rows, NULL, 0, rows);
                    }
                    reps++;
                    t = cpu_s() - t0;
                } while (t < seconds);
                const double per = t / reps, gbs = (double)row_bytes * rows / per / 1e9;
                char level[32];
                snprintf(level, sizeof level, "%s%s", k->name, k->variant);
                fprintf(stderr, "%-12s %-6s %3d %12.1f %10.2f\n", level, dtypes[d], B,
                        per / rows * 1e9, gbs);
                printf("{\"level\": \"%s\", \"dtype\": \"%s\", \"batch\": %d, \"rows\": %d, "
                       "\"cols\": %d, \"us_per_call\": %.3f, \"weight_gbs\": %.3f}\n",
                       level, dtypes[d], B, rows, cols, per * 1e6, gbs);
            }
        }
        free(data);
    }
    cpu_q8_act_free(&act);
    free(x);
    free(y);
    return 0;
}
