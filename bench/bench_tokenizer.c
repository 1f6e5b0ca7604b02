/* bench_tokenizer.c - encode speed of engine/text/ on one text file:
 *   bench_tokenizer TOKENIZER.json TEXT [REPEATS [IDS_OUT]]
 * prints one JSON line {"bytes", "ids", "best_s", "mb_per_s"} (best of
 * REPEATS, one thread) and writes the ids, one per line, to IDS_OUT.  bench/tokenizer_vs_hf.py runs it next to Hugging
 * Face `tokenizers` on the same files.  Never part of ssmd.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine/text/tokenizer.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER.json TEXT [REPEATS [IDS_OUT]]\n");
        return 2;
    }
    int repeats = argc > 3 ? atoi(argv[3]) : 5;
    eng_tokenizer *tok = NULL;
    ssmd_err err = {0};
    if (eng_tokenizer_load(argv[1], &tok, &err) != SSMD_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "%s: read error\n", argv[2]);
        return 1;
    }
    fclose(f);
    double best = 1e30;
    int ids_n = 0;
    FILE *ids_out = argc > 4 ? fopen(argv[4], "w") : NULL;
    for (int r = 0; r < repeats; r++) {
        int32_t *ids = NULL;
        double t0 = now_s();
        ids_n = eng_tokenizer_encode(tok, text, (size_t)n, &ids);
        double dt = now_s() - t0;
        for (int i = 0; ids_out && i < ids_n; i++)
            fprintf(ids_out, "%d\n", (int)ids[i]);
        if (ids_out)
            fclose(ids_out);
        ids_out = NULL;
        free(ids);
        if (dt < best)
            best = dt;
    }
    printf("{\"bytes\": %ld, \"ids\": %d, \"best_s\": %.4f, \"mb_per_s\": %.2f}\n", n, ids_n, best,
           (double)n / best / 1e6);
    free(text);
    eng_tokenizer_free(tok);
    return ids_n < 0;
}
