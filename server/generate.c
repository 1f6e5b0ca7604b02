/* generate.c - `ssmd generate`: load a model, prefill a prompt, sample
 * tokens one by one and stream them to stdout.
 *
 * Contract used by tests (keep it): text goes to stdout as generated, logs
 * and errors to stderr; --print-ids prints the generated ids space-separated
 * on one line; --dump-logits FILE writes float32 rows of vocab_size values,
 * row i = logits after consuming token i of prompt + generated, for
 * i = 0 .. P+N-2.  --prompt-ids works without tokenizer.json.
 */
#include "server/generate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/state_pool.h"
#include "engine/text/tokenizer.h"
#include "server/options.h"

typedef struct gen_args {
    const char *model_dir, *prompt, *prompt_ids, *dump_logits, *backend;
    long max_tokens, threads, top_k, seed;
    double temperature, top_p, min_p, repetition_penalty;
    int print_ids, ignore_eos, help, version;
} gen_args;

typedef enum { OPT_STR, OPT_LONG, OPT_DOUBLE, OPT_FLAG } opt_kind;

typedef struct gen_opt {
    const char *name;
    opt_kind kind;
    size_t offset;
    double min, max;
    const char *help;
} gen_opt;

#define OFF(field) offsetof(gen_args, field)
static const gen_opt gen_opts[] = {
    {"--model", OPT_STR, OFF(model_dir), 0, 0, "model directory (default: models/default)"},
    {"--prompt", OPT_STR, OFF(prompt), 0, 0, "prompt text (needs tokenizer.json)"},
    {"--prompt-ids", OPT_STR, OFF(prompt_ids), 0, 0, "prompt as comma-separated token ids"},
    {"--max-tokens", OPT_LONG, OFF(max_tokens), 0, 1 << 20, "tokens to generate (default 64)"},
    {"--temperature", OPT_DOUBLE, OFF(temperature), 0, 100, "0 = greedy (default 1)"},
    {"--top-k", OPT_LONG, OFF(top_k), 0, 1 << 30, "keep the k most likely tokens, 0 = off"},
    {"--top-p", OPT_DOUBLE, OFF(top_p), 1e-9, 1, "nucleus sampling mass (default 1 = off)"},
    {"--min-p", OPT_DOUBLE, OFF(min_p), 0, 1, "drop tokens below min-p x max prob (default 0)"},
    {"--repetition-penalty", OPT_DOUBLE, OFF(repetition_penalty), 1e-6, 100, "default 1 = off"},
    {"--seed", OPT_LONG, OFF(seed), 0, 9.2e18, "sampling seed (default 0)"},
    {"--threads", OPT_LONG, OFF(threads), 0, 1024, "compute threads, 0 = all cores"},
    {"--backend", OPT_STR, OFF(backend), 0, 0, "cpu (default) or cuda"},
    {"--print-ids", OPT_FLAG, OFF(print_ids), 0, 0, "print generated token ids, not text"},
    {"--ignore-eos", OPT_FLAG, OFF(ignore_eos), 0, 0, "do not stop at the end-of-text token"},
    {"--dump-logits", OPT_STR, OFF(dump_logits), 0, 0, "write f32 logits rows to FILE"},
    {"--help", OPT_FLAG, OFF(help), 0, 0, "show this help"},
    {"--version", OPT_FLAG, OFF(version), 0, 0, "print the version"},
};
#undef OFF

static void usage(FILE *f)
{
    fprintf(f, "usage: ssmd generate [--model DIR] (--prompt TEXT | --prompt-ids 1,2,3) [options]\n");
    for (size_t i = 0; i < sizeof gen_opts / sizeof gen_opts[0]; i++)
        fprintf(f, "  %-22s %s\n", gen_opts[i].name, gen_opts[i].help);
}

/* Returns 0, or 2 after printing what is wrong. */
static int parse_args(int argc, char **argv, gen_args *a)
{
    *a = (gen_args){.model_dir = "models/default", .backend = "cpu", .max_tokens = 64,
                    .temperature = 1.0, .top_p = 1.0, .repetition_penalty = 1.0};
    for (int i = 1; i < argc; i++) {
        const gen_opt *o = NULL;
        for (size_t k = 0; k < sizeof gen_opts / sizeof gen_opts[0]; k++)
            if (!strcmp(argv[i], gen_opts[k].name))
                o = &gen_opts[k];
        if (!o) {
            fprintf(stderr, "ssmd generate: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        }
        char *field = (char *)a + o->offset;
        if (o->kind == OPT_FLAG) {
            *(int *)field = 1;
            continue;
        }
        if (++i >= argc) {
            fprintf(stderr, "ssmd generate: %s needs a value\n", o->name);
            return 2;
        }
        if (o->kind == OPT_STR) {
            *(const char **)field = argv[i];
            continue;
        }
        char *end;
        errno = 0;
        double v = strtod(argv[i], &end);
        if (errno || *end || end == argv[i] || v < o->min || v > o->max ||
            (o->kind == OPT_LONG && v != (double)(long)v)) {
            fprintf(stderr, "ssmd generate: %s '%s' must be a %s in [%g, %g]\n", o->name, argv[i],
                    o->kind == OPT_LONG ? "whole number" : "number", o->min, o->max);
            return 2;
        }
        if (o->kind == OPT_LONG)
            *(long *)field = (long)v;
        else
            *(double *)field = v;
    }
    if (!a->help && !a->version && !a->prompt == !a->prompt_ids) {
        fprintf(stderr, "ssmd generate: give exactly one of --prompt and --prompt-ids\n");
        return 2;
    }
    return 0;
}

/* Parses "1,2,3" into a malloc'ed array; returns the count or -1. */
static int parse_ids(const char *s, int32_t **out)
{
    size_t cap = 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    while (ids && *s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            return -1;
        }
        if (n == cap) {
            int32_t *grown = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!grown) {
                free(ids);
                return -1;
            }
            ids = grown;
        }
        ids[n++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    if (!ids || n == 0) {
        free(ids);
        return -1;
    }
    *out = ids;
    return (int)n;
}

static int write_rows(FILE *f, const float *rows, size_t n_floats, const char *path)
{
    if (fwrite(rows, sizeof(float), n_floats, f) != n_floats) {
        fprintf(stderr, "ssmd generate: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Says why stdout cannot be written (a full disk, a closed pipe); returns -1. */
static int stdout_failed(void)
{
    fprintf(stderr, "ssmd generate: cannot write standard output: %s\n", strerror(errno));
    return -1;
}

/* Emits one generated token to stdout as text or id; returns 0, or -1 after
 * saying why stdout cannot be written. */
static int emit(const gen_args *a, eng_detok *detok, int32_t id, int first)
{
    if (a->print_ids) {
        printf(first ? "%d" : " %d", (int)id);
    } else {
        char piece[ENG_DETOK_PIECE_MAX];
        int len = eng_detok_push(detok, id, piece, sizeof piece);
        if (len > 0)
            fwrite(piece, 1, (size_t)len, stdout);
    }
    return fflush(stdout) != 0 || ferror(stdout) ? stdout_failed() : 0;
}

static int run(const gen_args *a)
{
    ssmd_err err = {0};
    eng_model_opts mo;
    eng_model_opts_defaults(&mo);
    mo.backend = a->backend;
    mo.backend_opts.threads = (int)a->threads;
    mo.max_batch = 1;
    eng_model *model = NULL;
    eng_state_pool *pool = NULL;
    eng_sampler sampler = {0};
    int32_t *ids = NULL, *history = NULL;
    float *logits = NULL;
    FILE *dump = NULL;
    int rc = 1, n_prompt;

    if (eng_model_open(a->model_dir, &mo, &model, &err)) {
        fprintf(stderr, "ssmd generate: %s\n", err.msg);
        return 1;
    }
    const eng_tokenizer *tok = eng_model_tokenizer(model);
    if (a->prompt_ids) {
        n_prompt = parse_ids(a->prompt_ids, &ids);
        if (n_prompt < 0) {
            fprintf(stderr, "ssmd generate: --prompt-ids must be comma-separated token ids\n");
            goto out;
        }
    } else {
        if (!tok || !a->prompt[0]) {
            fprintf(stderr, "ssmd generate: %s\n",
                    !tok ? "--prompt needs tokenizer.json in the model directory (or use --prompt-ids)"
                         : "--prompt is empty");
            goto out;
        }
        n_prompt = eng_tokenizer_encode(tok, a->prompt, strlen(a->prompt), &ids);
        if (n_prompt <= 0) {
            fprintf(stderr, "ssmd generate: --prompt is not valid UTF-8 text or encodes to nothing\n");
            goto out;
        }
    }
    if (!tok && !a->print_ids) {
        fprintf(stderr, "ssmd generate: no tokenizer.json in %s, use --print-ids\n", a->model_dir);
        goto out;
    }
    const int V = eng_model_n_vocab(model);
    const long N = a->max_tokens;
    eng_sampling sp;
    eng_sampling_defaults(&sp);
    sp.temperature = (float)a->temperature;
    sp.top_k = (int)a->top_k;
    sp.top_p = (float)a->top_p;
    sp.min_p = (float)a->min_p;
    sp.repetition_penalty = (float)a->repetition_penalty;
    sp.seed = (uint64_t)a->seed;
    if (eng_sampler_init(&sampler, &sp, V, &err) ||
        eng_state_pool_create(model, 1, &pool, &err)) {
        fprintf(stderr, "ssmd generate: %s\n", err.msg);
        goto out;
    }
    logits = malloc((size_t)(a->dump_logits ? n_prompt : 1) * V * sizeof(float));
    history = malloc((size_t)(n_prompt + N + 1) * sizeof(int32_t));
    if (!logits || !history) {
        fprintf(stderr, "ssmd generate: out of memory\n");
        goto out;
    }
    if (a->dump_logits && !(dump = fopen(a->dump_logits, "wb"))) {
        fprintf(stderr, "ssmd generate: cannot open %s: %s\n", a->dump_logits, strerror(errno));
        goto out;
    }
    if (eng_model_prefill(model, pool, 0, ids, n_prompt, logits, dump != NULL, &err)) {
        fprintf(stderr, "ssmd generate: %s\n", err.msg);
        goto out;
    }
    memcpy(history, ids, (size_t)n_prompt * sizeof(int32_t));
    float *row = logits + (size_t)(dump ? n_prompt - 1 : 0) * V;
    if (dump && write_rows(dump, logits, (size_t)n_prompt * V, a->dump_logits))
        goto out;
    const int eos = a->ignore_eos ? -1 : eng_model_cfg(model)->eos_token_id;
    eng_detok detok;
    if (tok)
        eng_detok_init(&detok, tok, 1);
    int n_hist = n_prompt;
    for (long k = 0; k < N; k++) {
        int32_t next = eng_sampler_sample(&sampler, row, history, n_hist, NULL);
        history[n_hist++] = next;
        if (next == eos)
            break;
        if (emit(a, &detok, next, k == 0))
            goto out;
        if (k + 1 == N)
            break;
        if (eng_model_decode(model, pool, &(int32_t){0}, &next, 1, row, &err)) {
            fprintf(stderr, "ssmd generate: %s\n", err.msg);
            goto out;
        }
        if (dump && write_rows(dump, row, (size_t)V, a->dump_logits))
            goto out;
    }
    if (a->print_ids) {
        printf("\n");
    } else if (tok) {
        char piece[ENG_DETOK_PIECE_MAX];
        int len = eng_detok_flush(&detok, piece, sizeof piece);
        fwrite(piece, 1, (size_t)(len > 0 ? len : 0), stdout);
        printf("\n");
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        stdout_failed();
        goto out;
    }
    rc = 0;
out:
    if (dump && fclose(dump) != 0 && rc == 0) {
        fprintf(stderr, "ssmd generate: cannot write %s: %s\n", a->dump_logits, strerror(errno));
        rc = 1;
    }
    free(logits);
    free(history);
    free(ids);
    eng_sampler_close(&sampler);
    eng_state_pool_destroy(pool);
    eng_model_close(model);
    return rc;
}

int srv_generate_main(int argc, char **argv)
{
    gen_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc;
    if (a.help) {
        usage(stdout);
        return 0;
    }
    if (a.version) {
        printf("ssmd %s\n", SSMD_VERSION);
        return 0;
    }
    return run(&a);
}
