/* bench_cuda.c - GPU engine benchmark (`make bench-cuda`): prefill tokens/s,
 * decode tokens/s per batch size, and the weight bandwidth each decode step
 * achieves next to the device's measured copy bandwidth.
 *
 *   bench_cuda [--model DIR] [--out DIR] [--backend cuda] [--prompt-len 512]
 *              [--batches 1,4,16,64,128] [--steps 50] [--numerics exact|fast]
 *              [--family mamba|s4d|s4]
 *
 * --numerics fast lets the backend trade exactness for its fast units (on
 * cuda: TF32 for f32 weights, the bf16 tensor-core GEMM for bf16 weights'
 * prefill), as `ssmd serve --numerics fast` does.
 * Without --model it writes mamba-130m-shaped random models (F32 and BF16)
 * under --out and measures both; no Python needed on the GPU machine.  With
 * --family s4d or s4 the random models are S4D (ZOH) or S4 (DPLR rank 1,
 * bilinear) of 1024 channels x 40 layers, N = 64, the same vocabulary.
 * Each decode line puts the step beside its floor: the weights read once
 * plus every slot's state read and written, at the device's copy
 * bandwidth (S4's states are 64 x 1024 x 40 floats, 10 MB a sequence, so
 * they outweigh the weights from a batch of about 16).  Uses
 * only the engine API; the device bandwidth probe reaches the CUDA runtime
 * through weak references, so this file also links (and says "no GPU") in a
 * CPU-only build.  Table on stderr, one JSON line per model on stdout.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/model.h"
#include "engine/tensor.h"
#include "engine/state_pool.h"

/* The few CUDA runtime calls of the bandwidth probe (C ABI; NULL when the
 * runtime is not linked in). */
int cudaMalloc(void **p, size_t n) __attribute__((weak));
int cudaFree(void *p) __attribute__((weak));
int cudaMemcpy(void *dst, const void *src, size_t n, int kind) __attribute__((weak));
int cudaDeviceSynchronize(void) __attribute__((weak));
enum { CUDA_MEMCPY_D2D = 3 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Device copy bandwidth (read + write bytes per second, GB/s), best of 10
 * copies of 1 GiB; 0 when unavailable. */
static double device_copy_gbs(void)
{
    const size_t n = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    if (!cudaMalloc || cudaMalloc(&a, n) || cudaMalloc(&b, n))
        return 0.0;
    double best = 1e30;
    for (int i = 0; i < 11; i++) {
        double t0 = now_s();
        if (cudaMemcpy(b, a, n, CUDA_MEMCPY_D2D) || cudaDeviceSynchronize())
            break;
        if (i)
            best = fmin(best, now_s() - t0);
    }
    cudaFree(a), cudaFree(b);
    return best < 1e30 ? 2.0 * (double)n / best / 1e9 : 0.0;
}

/* ---- random models: mamba-130m-shaped, S4D / S4 1024 x 40 ------------------- */

enum { D_MODEL = 768, N_LAYER = 24, VOCAB = 50280, D_STATE = 16, D_CONV = 4, EXPAND = 2, RANK = 48 };
enum { S4_H = 1024, S4_LAYERS = 40, S4_N2 = 32, MAX_TENSORS = 2 + 10 * S4_LAYERS + 3 };
typedef enum { FAM_MAMBA, FAM_S4D, FAM_S4 } family;
static const char *const family_names[] = {"mamba", "s4d", "s4"};

typedef struct tensor_spec {
    char name[96];
    int64_t shape[4];
    int ndim;
    /* 0 random, 1 ones, 2 A_log, 3 dt bias, 4 zeros, 5 S4 log_dt, 6 S4D-Lin
     * Lambda (-1/2 + i pi n), 7 random of unit scale */
    int kind;
} tensor_spec;

static void add(tensor_spec *t, int *n, const char *prefix, const char *suffix, int kind, int ndim,
                int64_t d0, int64_t d1, int64_t d2)
{
    tensor_spec *s = &t[(*n)++];
    snprintf(s->name, sizeof s->name, "%s%s", prefix, suffix);
    s->kind = kind, s->ndim = ndim;
    s->shape[0] = d0, s->shape[1] = d1, s->shape[2] = d2, s->shape[3] = 0;
}

/* The S4 family's tensors (proto/s4-format.md), tied head. */
static int s4_specs(tensor_spec *t, family fam)
{
    int n = 0;
    add(t, &n, "", "embedding.weight", 0, 2, VOCAB, S4_H, 0);
    add(t, &n, "", "norm_f.weight", 1, 1, S4_H, 0, 0);
    add(t, &n, "", "norm_f.bias", 4, 1, S4_H, 0, 0);
    for (int l = 0; l < S4_LAYERS; l++) {
        char p[64];
        snprintf(p, sizeof p, "layers.%d.", l);
        add(t, &n, p, "norm.weight", 1, 1, S4_H, 0, 0);
        add(t, &n, p, "norm.bias", 4, 1, S4_H, 0, 0);
        add(t, &n, p, "ssm.log_dt", 5, fam == FAM_S4D ? 2 : 1, S4_H, S4_N2, 0);
        add(t, &n, p, "ssm.A", 6, 3, S4_H, S4_N2, 2);
        add(t, &n, p, "ssm.B", 7, 3, S4_H, S4_N2, 2);
        add(t, &n, p, "ssm.C", 7, 3, S4_H, S4_N2, 2);
        if (fam == FAM_S4) { /* rank 1: (1, H, N/2, 2) */
            add(t, &n, p, "ssm.P", 0, 4, 1, S4_H, S4_N2);
            t[n - 1].shape[3] = 2;
        }
        add(t, &n, p, "ssm.D", 7, 1, S4_H, 0, 0);
        add(t, &n, p, "out.weight", 0, 2, 2 * S4_H, S4_H, 0);
        add(t, &n, p, "out.bias", 4, 1, 2 * S4_H, 0, 0);
    }
    return n;
}

static int specs(tensor_spec *t, family fam)
{
    if (fam != FAM_MAMBA)
        return s4_specs(t, fam);
    const int E = EXPAND * D_MODEL;
    int n = 0;
    add(t, &n, "backbone.", "embeddings.weight", 0, 2, VOCAB, D_MODEL, 0);
    add(t, &n, "backbone.", "norm_f.weight", 1, 1, D_MODEL, 0, 0);
    for (int l = 0; l < N_LAYER; l++) {
        char p[64];
        snprintf(p, sizeof p, "backbone.layers.%d.", l);
        add(t, &n, p, "norm.weight", 1, 1, D_MODEL, 0, 0);
        add(t, &n, p, "mixer.in_proj.weight", 0, 2, 2 * E, D_MODEL, 0);
        add(t, &n, p, "mixer.conv1d.weight", 0, 3, E, 1, D_CONV);
        add(t, &n, p, "mixer.conv1d.bias", 0, 1, E, 0, 0);
        add(t, &n, p, "mixer.x_proj.weight", 0, 2, RANK + 2 * D_STATE, E, 0);
        add(t, &n, p, "mixer.dt_proj.weight", 0, 2, E, RANK, 0);
        add(t, &n, p, "mixer.dt_proj.bias", 3, 1, E, 0, 0);
        add(t, &n, p, "mixer.A_log", 2, 2, E, D_STATE, 0);
        add(t, &n, p, "mixer.D", 1, 1, E, 0, 0);
        add(t, &n, p, "mixer.out_proj.weight", 0, 2, D_MODEL, E, 0);
    }
    return n;
}

static int64_t numel(const tensor_spec *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

static float value(const tensor_spec *t, int64_t i, uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    float u = ((*s >> 8) / 16777216.0f) * 2.0f - 1.0f;
    switch (t->kind) {
    case 1: return 1.0f;
    case 2: return logf((float)(i % D_STATE + 1));
    case 3: return -4.6f + 0.5f * u; /* softplus -> dt around 0.01 */
    case 4: return 0.0f;
    case 5: return -4.6f + 2.3f * u; /* dt in [0.001, 0.1] */
    case 6: return i % 2 ? 3.14159265f * (float)(i / 2 % S4_N2) : -0.5f;
    case 7: return u;
    default: return 0.04f * u;
    }
}

static void mkdir_p(const char *dir)
{
    char p[512];
    snprintf(p, sizeof p, "%s", dir);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = 0;
            mkdir(p, 0755);
            *c = '/';
        }
    mkdir(p, 0755);
}

/* Writes dir/config.json and dir/model.safetensors (bf16 or f32). */
static int write_model(const char *dir, family fam, int bf16)
{
    mkdir_p(dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    if (fam == FAM_MAMBA)
        fprintf(f, "{\"model_type\": \"mamba\", \"hidden_size\": %d, \"num_hidden_layers\": %d, "
                   "\"vocab_size\": %d, \"state_size\": %d, \"conv_kernel\": %d, \"expand\": %d, "
                   "\"time_step_rank\": %d, \"use_bias\": false, \"use_conv_bias\": true, "
                   "\"layer_norm_epsilon\": 1e-5, \"tie_word_embeddings\": true}\n",
                D_MODEL, N_LAYER, VOCAB, D_STATE, D_CONV, EXPAND, RANK);
    else
        fprintf(f, "{\"model_type\": \"%s\", \"d_model\": %d, \"n_layer\": %d, \"vocab_size\": %d, "
                   "\"d_state\": %d, %s\"discretization\": \"%s\", \"tie_embeddings\": true}\n",
                family_names[fam], S4_H, S4_LAYERS, VOCAB, 2 * S4_N2, fam == FAM_S4 ? "\"rank\": 1, " : "",
                fam == FAM_S4 ? "bilinear" : "zoh");
    fclose(f);
    static tensor_spec t[MAX_TENSORS];
    int n = specs(t, fam);
    size_t esize = bf16 ? 2 : 4, cap = 1 << 20, len = 0, off = 0;
    char *hdr = malloc(cap);
    len += (size_t)snprintf(hdr + len, cap - len, "{");
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)numel(&t[i]) * esize;
        len += (size_t)snprintf(hdr + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "",
                                t[i].name, bf16 ? "BF16" : "F32");
        for (int d = 0; d < t[i].ndim; d++)
            len += (size_t)snprintf(hdr + len, cap - len, "%s%lld", d ? "," : "", (long long)t[i].shape[d]);
        len += (size_t)snprintf(hdr + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off, off + bytes);
        off += bytes;
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while (len % 8)
        hdr[len++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    uint64_t hlen = len;
    int ok = f && fwrite(&hlen, 8, 1, f) == 1 && fwrite(hdr, 1, len, f) == len;
    uint32_t seed = 1;
    for (int i = 0; ok && i < n; i++) {
        int64_t ne = numel(&t[i]);
        void *buf = malloc((size_t)ne * esize);
        for (int64_t k = 0; k < ne; k++) {
            float v = value(&t[i], k, &seed);
            if (bf16)
                ((uint16_t *)buf)[k] = eng_f32_to_bf16(v);
            else
                ((float *)buf)[k] = v;
        }
        ok = fwrite(buf, esize, (size_t)ne, f) == (size_t)ne;
        free(buf);
    }
    if (f && fclose(f) != 0)
        ok = 0;
    free(hdr);
    return ok ? 0 : -1;
}

/* ---- measurement ---------------------------------------------------------------- */

static int bench_model(const char *dir, const char *backend, int fast, int prompt_len, const int *batches,
                       int n_batches, int steps, double dev_gbs)
{
    int max_b = 1;
    for (int i = 0; i < n_batches; i++)
        max_b = batches[i] > max_b ? batches[i] : max_b;
    eng_model_opts o;
    eng_model_opts_defaults(&o);
    o.backend = backend;
    o.backend_opts.numerics = fast ? BK_NUMERICS_FAST : BK_NUMERICS_EXACT;
    o.max_batch = max_b;
    eng_model *m = NULL;
    eng_state_pool *pool = NULL;
    ssmd_err err = {0};
    if (eng_model_open(dir, &o, &m, &err) || eng_state_pool_create(m, max_b + 1, &pool, &err)) {
        fprintf(stderr, "bench_cuda: %s: %s\n", dir, err.msg);
        eng_model_close(m);
        return 1;
    }
    const int V = eng_model_n_vocab(m);
    const double wbytes = (double)eng_model_weight_bytes(m);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(prompt_len > max_b ? prompt_len : max_b));
    int32_t *slots = malloc(sizeof(int32_t) * (size_t)max_b);
    float *logits = malloc(sizeof(float) * (size_t)V * max_b);
    for (int i = 0; i < prompt_len || i < max_b; i++)
        ids[i] = (int32_t)((i * 7919) % V);
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        eng_state_slot_zero(pool, max_b);
        double t0 = now_s();
        eng_model_prefill(m, pool, max_b, ids, prompt_len, logits, 0, &err); /* reads logits: synced */
        if (r)
            best = fmin(best, now_s() - t0);
    }
    double prefill_tps = prompt_len / best;
    fprintf(stderr, "%s on %s: %.1f MB weights (%s); device copy bandwidth %.0f GB/s\n", dir, backend,
            wbytes / 1e6, eng_model_dtype_name(m), dev_gbs);
    fprintf(stderr, "  prefill %d tokens: %.0f tokens/s\n", prompt_len, prefill_tps);
    printf("{\"model\": \"%s\", \"backend\": \"%s\", \"numerics\": \"%s\", \"dtype\": \"%s\", "
           "\"device_copy_gbs\": %.1f, \"prefill_tok_s\": %.1f, \"decode\": [", dir, backend,
           fast ? "fast" : "exact", eng_model_dtype_name(m), dev_gbs, prefill_tps);
    for (int bi = 0; bi < n_batches; bi++) {
        const int B = batches[bi];
        for (int b = 0; b < B; b++) {
            slots[b] = (int32_t)(B - 1 - b);
            eng_state_slot_zero(pool, b);
            eng_model_prefill(m, pool, b, ids + b, 4, NULL, 0, &err);
        }
        for (int w = 0; w < 3; w++) /* eager, capture, replay */
            eng_model_decode(m, pool, slots, ids, B, logits, &err);
        double t0 = now_s();
        for (int s = 0; s < steps; s++)
            eng_model_decode(m, pool, slots, ids, B, logits, &err);
        double dt = (now_s() - t0) / steps;
        double gbs = wbytes / dt / 1e9;
        /* the floor: weights once, each slot's state read and written */
        const double step_bytes = wbytes + 2.0 * B * (double)eng_state_pool_slot_bytes(pool);
        const double floor_ms = dev_gbs > 0 ? step_bytes / (dev_gbs * 1e9) * 1e3 : 0.0;
        fprintf(stderr, "  decode batch %3d: %9.0f tokens/s  %7.3f ms/step  weights %6.0f GB/s (%.0f%% of copy bw)"
                        "  floor %.3f ms\n",
                B, B / dt, dt * 1e3, gbs, dev_gbs > 0 ? 100.0 * gbs / dev_gbs : 0.0, floor_ms);
        printf("%s{\"batch\": %d, \"tok_s\": %.1f, \"ms_per_step\": %.4f, \"weight_gbs\": %.1f, "
               "\"floor_ms\": %.4f}", bi ? ", " : "", B, B / dt, dt * 1e3, gbs, floor_ms);
    }
    printf("]}\n");
    fflush(stdout);
    free(ids), free(slots), free(logits);
    eng_state_pool_destroy(pool);
    eng_model_close(m);
    return 0;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *out = "build/bench/cuda", *backend = "cuda", *numerics = "exact";
    const char *fam_name = "mamba";
    int prompt_len = 512, steps = 50, batches[16], n_batches = 0;
    const char *blist = "1,4,16,64,128";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "usage: bench_cuda [--model DIR] [--out DIR] [--backend cuda|cpu] "
                            "[--prompt-len N] [--batches 1,4,16] [--steps N] [--numerics exact|fast] "
                            "[--family mamba|s4d|s4]\n");
            return 2;
        }
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--backend")) backend = v;
        else if (!strcmp(a, "--prompt-len")) prompt_len = atoi(v);
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--batches")) blist = v;
        else if (!strcmp(a, "--numerics")) numerics = v;
        else if (!strcmp(a, "--family")) fam_name = v;
        else { fprintf(stderr, "bench_cuda: unknown option %s\n", a); return 2; }
        i++;
    }
    for (const char *p = blist; *p && n_batches < 16; p = strchr(p, ',') ? strchr(p, ',') + 1 : "")
        if (atoi(p) > 0)
            batches[n_batches++] = atoi(p);
    const int fast = !strcmp(numerics, "fast");
    int fam = 0;
    while (fam < 3 && strcmp(fam_name, family_names[fam]))
        fam++;
    if (prompt_len < 1 || steps < 1 || !n_batches || (!fast && strcmp(numerics, "exact")) || fam == 3) {
        fprintf(stderr, "bench_cuda: bad --prompt-len, --steps, --batches, --numerics or --family\n");
        return 2;
    }
    double dev_gbs = device_copy_gbs();
    if (model)
        return bench_model(model, backend, fast, prompt_len, batches, n_batches, steps, dev_gbs);
    char path[512];
    int rc = 0;
    for (int bf16 = 0; bf16 < 2; bf16++) {
        if (fam == FAM_MAMBA)
            snprintf(path, sizeof path, "%s/mamba130m-%s", out, bf16 ? "bf16" : "f32");
        else
            snprintf(path, sizeof path, "%s/%s-%dx%d-%s", out, family_names[fam], S4_H, S4_LAYERS,
                     bf16 ? "bf16" : "f32");
        char mk[600];
        snprintf(mk, sizeof mk, "%s/model.safetensors", path);
        struct stat st;
        if (stat(mk, &st) != 0 && write_model(path, (family)fam, bf16) != 0) {
            fprintf(stderr, "bench_cuda: cannot write %s\n", path);
            return 1;
        }
        rc |= bench_model(path, backend, fast, prompt_len, batches, n_batches, steps, dev_gbs);
    }
    return rc;
}
