/* test_generate_cli.c - the `ssmd generate` contract, driving the real
 * (sanitizer-built) binary: greedy ids and --dump-logits rows against the
 * transformers fixtures, text output through the fixture tokenizer, seeded
 * sampling reproducibility, and clear errors for bad arguments. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/models/reference.h"

static const char *binary(void)
{
    static char path[512];
    const char *build = getenv("BUILD");
    snprintf(path, sizeof path, "%s/ssmd-san", build && *build ? build : "build");
    return path;
}

/* Runs `binary generate args` and returns its exit status; stdout and stderr
 * are captured into malloc'ed strings. */
static int run_generate(const char *args, char **out, char **errs)
{
    char cmd[4096], err_path[] = "/tmp/ssmd-gen-err-XXXXXX";
    int fd = mkstemp(err_path);
    ck_assert(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof cmd, "%s generate %s 2>%s", binary(), args, err_path);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int status = pclose(p);
    FILE *ef = fopen(err_path, "r");
    char *ebuf = calloc(1, 1 << 16);
    if (ef) {
        size_t en = fread(ebuf, 1, (1 << 16) - 1, ef);
        ebuf[en] = 0;
        fclose(ef);
    }
    unlink(err_path);
    *out = buf;
    if (errs)
        *errs = ebuf;
    else
        free(ebuf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static const char *const fixtures[] = {"tiny_auto", "untied_bias", "bf16", "original_f16"};

/* For every fixture case: greedy ids as transformers, and the dumped logits
 * rows 0 .. P+N-2 equal the reference rows. */
START_TEST(test_greedy_and_dump_logits)
{
    const char *name = fixtures[_i];
    char path[256], args[2048], dump[] = "/tmp/ssmd-dump-XXXXXX";
    snprintf(path, sizeof path, "tests/fixtures/mamba/%s/expected.json", name);
    ref r;
    ref_load(path, &r);
    int fd = mkstemp(dump);
    ck_assert(fd >= 0);
    close(fd);
    for (int c = 0; c < r.n_cases; c++) {
        const ref_case *rc = &r.cases[c];
        char ids[1024], want[1024];
        ref_join_ids(rc->seq, rc->n_prompt, ",", ids, sizeof ids);
        ref_join_ids(rc->seq + rc->n_prompt, rc->n_greedy, " ", want, sizeof want);
        snprintf(args, sizeof args,
                 "--model tests/fixtures/mamba/%s --prompt-ids %s --max-tokens %d --temperature 0 "
                 "--print-ids --ignore-eos --threads 2 --dump-logits %s",
                 name, ids, rc->n_greedy, dump);
        char *out, *errs;
        int rc_exit = run_generate(args, &out, &errs);
        ck_assert_msg(rc_exit == 0, "%s: exit %d: %s", name, rc_exit, errs);
        out[strcspn(out, "\n")] = 0;
        ck_assert_str_eq(out, want);
        assert_dump_close(dump, rc->logits, rc->n_prompt + rc->n_greedy - 1, r.V, 1e-4, name);
        free(out);
        free(errs);
    }
    unlink(dump);
    ref_free(&r);
}
END_TEST

/* A model dir with the fixture tokenizer: text in, text out; the same seed
 * gives the same sample, and --prompt and its ids give the same tokens. */
START_TEST(test_text_and_seed)
{
    char dir[] = "/tmp/ssmd-gen-model-XXXXXX", cmd[1024];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    /* the fixture tokenizer has 3008 ids and untied_bias only 97, so the
     * prompt is text that encodes to low ids ("$&" -> [5, 7]) */
    snprintf(cmd, sizeof cmd,
             "cp tests/fixtures/mamba/untied_bias/config.json tests/fixtures/mamba/untied_bias/model.safetensors "
             "tests/fixtures/tokenizer/tokenizer.json %s/",
             dir);
    ck_assert_int_eq(system(cmd), 0);
    char args[2048], *a, *b, *c;
    snprintf(args, sizeof args, "--model %s --prompt '$&' --max-tokens 6 --temperature 0.9 --seed 7 --print-ids --ignore-eos", dir);
    ck_assert_int_eq(run_generate(args, &a, NULL), 0);
    ck_assert_int_eq(run_generate(args, &b, NULL), 0);
    ck_assert_str_eq(a, b);
    ck_assert_int_gt((int)strlen(a), 1);
    snprintf(args, sizeof args, "--model %s --prompt '$&' --max-tokens 6 --temperature 0 --ignore-eos", dir);
    ck_assert_int_eq(run_generate(args, &c, NULL), 0);
    ck_assert_int_gt((int)strlen(c), 0); /* decoded text (ids < 97 are printable bytes) */

    /* --stop: the same greedy text, cut right before the first occurrence
     * of a piece of it (each of these ids is one byte of text) */
    ck_assert_int_ge((int)strlen(c), 5);
    char stop[3] = {c[2], c[3], 0}, quoted[16], *d;
    size_t q = 0;
    quoted[q++] = '\'';
    for (int k = 0; k < 2; k++) {
        if (stop[k] == '\'')
            q += (size_t)snprintf(quoted + q, sizeof quoted - q, "'\\''");
        else
            quoted[q++] = stop[k];
    }
    quoted[q++] = '\'';
    quoted[q] = 0;
    snprintf(args, sizeof args, "--model %s --prompt '$&' --max-tokens 6 --temperature 0 --ignore-eos --stop %s",
             dir, quoted);
    ck_assert_int_eq(run_generate(args, &d, NULL), 0);
    size_t cut = (size_t)(strstr(c, stop) - c);
    ck_assert_int_eq(strlen(d), cut + 1);
    ck_assert_int_eq(memcmp(d, c, cut), 0);
    ck_assert_int_eq(d[cut], '\n');
    free(d);
    free(a), free(b), free(c);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_errors_are_clear)
{
    char *out, *errs;
    ck_assert_int_eq(run_generate("--model tests/fixtures/mamba/tiny_auto --prompt-ids 1,500 --max-tokens 2 --print-ids", &out, &errs), 1);
    ck_assert_ptr_nonnull(strstr(errs, "500"));
    free(out), free(errs);
    ck_assert_int_eq(run_generate("--model /nonexistent --prompt-ids 1", &out, &errs), 1);
    ck_assert_ptr_nonnull(strstr(errs, "/nonexistent"));
    free(out), free(errs);
    ck_assert_int_eq(run_generate("--model tests/fixtures/mamba/tiny_auto --prompt hi", &out, &errs), 1);
    ck_assert_ptr_nonnull(strstr(errs, "tokenizer.json"));
    free(out), free(errs);
    ck_assert_int_eq(run_generate("--model tests/fixtures/mamba/tiny_auto --prompt-ids 1,x", &out, &errs), 1);
    ck_assert_ptr_nonnull(strstr(errs, "--prompt-ids"));
    free(out), free(errs);
    ck_assert_int_eq(run_generate("--prompt-ids 1 --top-p 7", &out, &errs), 2);
    ck_assert_ptr_nonnull(strstr(errs, "--top-p"));
    free(out), free(errs);
    ck_assert_int_eq(run_generate("--bogus", &out, &errs), 2);
    ck_assert_ptr_nonnull(strstr(errs, "--bogus"));
    free(out), free(errs);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("generate_cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_greedy_and_dump_logits, 0, 4);
    tcase_add_test(tc, test_text_and_seed);
    tcase_add_test(tc, test_errors_are_clear);
    suite_add_tcase(s, tc);
    return s;
}
