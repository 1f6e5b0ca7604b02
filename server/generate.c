/* generate.c - `ssmd generate`: load a model, prefill a prompt, sample
 * tokens one by one and stream them to stdout.
 *
 * Contract used by tests (keep it): text goes to stdout as generated, logs
 * and errors to stderr; --print-ids prints the generated ids space-separated
 * on one line; --dump-logits FILE writes float32 rows of vocab_size values,
 * row i = logits after consuming token i of prompt + generated, for
 * i = 0 .. P+N-2.  --prompt-ids works without tokenizer.json.
 *
 * Flags come from the one options table (options.c); each token goes
 * through eng_seq_next (engine/sequence.c), the scheduler's step, so stop
 * strings, EOS and max_tokens end a generation here as they end a request.
 * Must never grow its own sampling or finish logic.
 */
#include "server/generate.h"
#include "server/model_dir.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"
#include "engine/sequence.h"
#include "engine/state_pool.h"
#include "engine/text/tokenizer.h"
#include "engine/xalloc.h"
#include "server/options.h"

/* Parses "1,2,3" into a malloc'ed array; returns the count or -1. */
static int parse_ids(const char *s, int32_t **out)
{
    size_t cap = 16, n = 0;
    int32_t *ids = xmalloc(cap * sizeof *ids);
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            return -1;
        }
        if (n == cap)
            ids = xrealloc(ids, (cap *= 2) * sizeof *ids);
        ids[n++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    if (n == 0) {
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

/* Writes what the last step released to stdout: the token's id, or the
 * sequence's text; returns 0, or -1 after saying why stdout cannot be
 * written. */
static int emit(const srv_config *a, const eng_seq *q, int with_id)
{
    if (a->print_ids && with_id)
        printf(q->n_gen == 1 ? "%d" : " %d", (int)q->last);
    else if (!a->print_ids)
        fwrite(q->text, 1, q->text_len, stdout);
    return fflush(stdout) != 0 || ferror(stdout) ? stdout_failed() : 0;
}

/* The prompt's ids (malloc'ed in *ids); returns the count, or -1 after
 * saying what is wrong. */
static int prompt_ids(const srv_config *a, const eng_tokenizer *tok, int32_t **ids)
{
    if (*a->prompt_ids) {
        int n = parse_ids(a->prompt_ids, ids);
        if (n < 0)
            fprintf(stderr, "ssmd generate: --prompt-ids must be comma-separated token ids\n");
        return n;
    }
    if (!tok) {
        fprintf(stderr, "ssmd generate: --prompt needs tokenizer.json in the model directory (or use --prompt-ids)\n");
        return -1;
    }
    int n = eng_tokenizer_encode(tok, a->prompt, strlen(a->prompt), ids);
    if (n <= 0) {
        fprintf(stderr, "ssmd generate: --prompt is not valid UTF-8 text or encodes to nothing\n");
        return -1;
    }
    return n;
}

static int run(const srv_config *a)
{
    ssmd_err err = {0};
    eng_model_opts mo;
    srv_config_model_opts(a, &mo);
    mo.max_batch = 1;
    eng_model *model = NULL;
    eng_state_pool *pool = NULL;
    eng_seq seq;
    int seq_live = 0;
    int32_t *ids = NULL;
    float *logits = NULL;
    FILE *dump = NULL;
    int rc = 1;

    if (eng_model_open(a->model, &mo, &model, &err)) {
        fprintf(stderr, "ssmd generate: %s\n", err.msg);
        return 1;
    }
    const eng_tokenizer *tok = eng_model_tokenizer(model);
    int n_prompt = prompt_ids(a, tok, &ids);
    if (n_prompt < 0)
        goto out;
    if (!tok && !a->print_ids) {
        fprintf(stderr, "ssmd generate: no tokenizer.json in %s, use --print-ids\n", a->model);
        goto out;
    }
    const int V = eng_model_n_vocab(model);
    const char *stops[ENG_STOP_MAX];
    for (int k = 0; k < a->stop.n; k++)
        stops[k] = a->stop.v[k];
    eng_seq_params sp = {.sampling = &a->sampling, .n_vocab = V, .tok = tok, .stops = stops,
                         .n_stop = a->stop.n, .max_tokens = (int)a->gen_max_tokens,
                         .eos_id = a->ignore_eos ? -1 : eng_model_cfg(model)->eos_token_id};
    if (eng_seq_init(&seq, &sp, &err) == SSMD_OK)
        seq_live = 1;
    if (!seq_live || eng_state_pool_create(model, 1, &pool, &err)) {
        fprintf(stderr, "ssmd generate: %s\n", err.msg);
        goto out;
    }
    /* the prompt's length picks this size: an error, not an abort */
    logits = malloc((size_t)(*a->dump_logits ? n_prompt : 1) * V * sizeof(float));
    if (!logits) {
        fprintf(stderr, "ssmd generate: out of memory for %d rows of logits\n", *a->dump_logits ? n_prompt : 1);
        goto out;
    }
    if (*a->dump_logits && !(dump = fopen(a->dump_logits, "wb"))) {
        fprintf(stderr, "ssmd generate: cannot open %s: %s\n", a->dump_logits, strerror(errno));
        goto out;
    }
    if (eng_model_prefill(model, pool, 0, ids, n_prompt, logits, dump != NULL, &err)) {
        fprintf(stderr, "ssmd generate: %s\n", err.msg);
        goto out;
    }
    eng_seq_push_history(&seq, ids, n_prompt);
    float *row = logits + (size_t)(dump ? n_prompt - 1 : 0) * V;
    if (dump && write_rows(dump, logits, (size_t)n_prompt * V, a->dump_logits))
        goto out;
    /* The loop of one sequence; the scheduler runs the same step for a
     * batch.  The EOS token itself is never printed. */
    eng_finish finish = a->gen_max_tokens > 0 ? ENG_FINISH_NONE : ENG_FINISH_LENGTH;
    while (finish == ENG_FINISH_NONE) {
        finish = eng_seq_next(&seq, row, NULL);
        int is_eos = seq.last == sp.eos_id;
        if (emit(a, &seq, !is_eos))
            goto out;
        if (finish != ENG_FINISH_NONE)
            break;
        if (eng_model_decode(model, pool, &(int32_t){0}, &seq.last, 1, row, &err)) {
            fprintf(stderr, "ssmd generate: %s\n", err.msg);
            goto out;
        }
        if (dump && write_rows(dump, row, (size_t)V, a->dump_logits))
            goto out;
    }
    eng_seq_finish(&seq);
    if (emit(a, &seq, 0))
        goto out;
    if (a->print_ids || tok)
        printf("\n");
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
    free(ids);
    if (seq_live)
        eng_seq_close(&seq);
    eng_state_pool_destroy(pool);
    eng_model_close(model);
    return rc;
}

int srv_generate_main(int argc, char **argv)
{
    srv_config cfg;
    srv_config_defaults(&cfg);
    ssmd_err err = {0};
    int rc = srv_config_parse(&cfg, SRV_FRONT_GENERATE, argc, argv, stdout, &err);
    if (rc == 1) {
        rc = 0; /* --help or --version, printed */
    } else if (rc != SSMD_OK) {
        fprintf(stderr, "ssmd generate: %s\n", err.msg);
        rc = 2;
    } else {
        char looked[2048];
        if (srv_model_dir_resolve(&cfg.model, looked, sizeof looked) != 0) {
            fprintf(stderr, "ssmd generate: no --model given and no default model found; looked in %s\n", looked);
            rc = 1;
        } else {
            rc = run(&cfg);
        }
    }
    srv_config_free(&cfg);
    return rc;
}
