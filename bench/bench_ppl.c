/* bench_ppl.c - held-out perplexity of a model as ssmd computes it.
 *
 *   bench_ppl MODEL TEXT_FILE [--seq 256] [--threads N] [--decode 1]
 *
 * Encodes the whole text with the model's tokenizer (no special tokens)
 * and scores it as models/train/export.py scores the held-out split: windows
 * of seq + 1 ids starting every seq ids, each from a fresh state, the
 * cross-entropy of ids 1..seq given the ones before.  MODEL is a model
 * directory or a GGUF file (quantized or not), so the same text measures
 * what quantisation costs.  The windows go through prefill (many rows per
 * matmul: quantized weights are dequantised for sgemm), or with --decode 1
 * one token per step through decode (quantized weights meet int8-rounded
 * activations, cpu_quant.h), the path generation runs on.  Prints one JSON
 * object on stdout:
 * tokens scored, nats per token, perplexity per token and per byte.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"
#include "engine/state_pool.h"
#include "engine/text/tokenizer.h"

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        buf[n] = 0, *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr,
                "usage: bench_ppl MODEL TEXT_FILE [--seq 256] [--threads N] [--decode 1]\n");
        return 2;
    }
    int seq = 256, threads = 0, decode = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--seq"))
            seq = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--decode"))
            decode = atoi(argv[i + 1]);
    }
    size_t len = 0;
    char *text = read_all(argv[2], &len);
    if (!text || seq < 1) {
        fprintf(stderr, "bench_ppl: cannot read %s\n", argv[2]);
        return 1;
    }
    eng_model_opts o;
    eng_model_opts_defaults(&o);
    o.backend_opts.threads = threads;
    eng_model *m;
    ssmd_err err = {0};
    if (eng_model_open(argv[1], &o, &m, &err) != SSMD_OK) {
        fprintf(stderr, "bench_ppl: %s\n", err.msg);
        return 1;
    }
    const eng_tokenizer *tok = eng_model_tokenizer(m);
    if (!tok) {
        fprintf(stderr, "bench_ppl: %s has no tokenizer\n", argv[1]);
        return 1;
    }
    int32_t *ids = NULL;
    const int n = eng_tokenizer_encode(tok, text, len, &ids);
    const int V = eng_model_n_vocab(m), n_win = (n - 1) / seq;
    eng_state_pool *pool;
    if (n_win < 1 || eng_state_pool_create(m, 1, &pool, &err) != SSMD_OK) {
        fprintf(stderr, "bench_ppl: %d tokens: too short, or %s\n", n, err.msg);
        return 1;
    }
    float *logits = malloc(sizeof(float) * (size_t)seq * V);
    double nats = 0.0;
    for (int w = 0; w < n_win; w++) {
        const int32_t *x = ids + (size_t)w * seq;
        eng_state_slot_zero(pool, 0);
        int rc = SSMD_OK;
        const int32_t slot = 0;
        if (!decode)
            rc = eng_model_prefill(m, pool, 0, x, seq, logits, 1, &err);
        for (int t = 0; decode && t < seq && !rc; t++)
            rc = eng_model_decode(m, pool, &slot, &x[t], 1, logits + (size_t)t * V, &err);
        if (rc != SSMD_OK) {
            fprintf(stderr, "bench_ppl: %s\n", err.msg);
            return 1;
        }
        for (int t = 0; t < seq; t++) { /* -log softmax(row t)[x[t + 1]] */
            const float *row = logits + (size_t)t * V;
            double mx = row[0], sum = 0.0;
            for (int v = 1; v < V; v++)
                mx = fmax(mx, row[v]);
            for (int v = 0; v < V; v++)
                sum += exp(row[v] - mx);
            nats += mx + log(sum) - row[x[t + 1]];
        }
    }
    const long scored = (long)n_win * seq;
    /* bytes per token over the whole text: the per-byte figure's scale */
    const double bytes_scored = (double)len * scored / n;
    printf("{\"model\": \"%s\", \"dtype\": \"%s\", \"path\": \"%s\", \"tokens_scored\": %ld, "
           "\"nats_per_token\": %.5f, \"ppl_per_token\": %.4f, \"ppl_per_byte\": %.4f}\n",
           argv[1], eng_model_dtype_name(m), decode ? "decode" : "prefill", scored, nats / scored,
           exp(nats / scored),
           exp(nats / bytes_scored));
    free(logits), free(ids), free(text);
    eng_state_pool_destroy(pool);
    eng_model_close(m);
    return 0;
}
