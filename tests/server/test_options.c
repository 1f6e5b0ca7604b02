/* test_options.c - the options table: defaults, parsing, bounds, help. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/options.h"

static int parse_front(srv_config *c, srv_front front, const char *const *args, ssmd_err *err)
{
    int argc = 0;
    char *argv[32];
    argv[argc++] = front == SRV_FRONT_SERVE ? "serve" : "generate";
    for (int i = 0; args[i]; i++)
        argv[argc++] = (char *)args[i];
    srv_config_defaults(c);
    return srv_config_parse(c, front, argc, argv, stdout, err);
}

static int parse(srv_config *c, const char *const *args, ssmd_err *err)
{
    return parse_front(c, SRV_FRONT_SERVE, args, err);
}

START_TEST(test_defaults_and_values)
{
    srv_config c;
    ssmd_err err = {0};
    const char *a[] = {"--model", "m", "--port", "9000", "--session-ttl=2.5", "--verbose", "--api-key", "k", NULL};
    ck_assert_int_eq(parse(&c, a, &err), SSMD_OK);
    ck_assert_str_eq(c.model, "m");
    ck_assert_int_eq(c.port, 9000);
    ck_assert_double_eq(c.session_ttl, 2.5);
    ck_assert_int_eq(c.verbose, 1);
    ck_assert_str_eq(c.api_key, "k");
    ck_assert_str_eq(c.host, "127.0.0.1");
    ck_assert_int_eq(c.max_body, 8 * 1024 * 1024);
    ck_assert_int_eq(c.max_batch, 16);
    srv_config_free(&c);
}
END_TEST

START_TEST(test_errors)
{
    srv_config c;
    ssmd_err err = {0};
    const char *none[] = {NULL};
    ck_assert_int_eq(parse(&c, none, &err), SSMD_OK); /* --model defaults to the embedded model */
    ck_assert_str_eq(c.model, "models/default");
    srv_config_free(&c);
    const char *empty[] = {"--model", "", NULL};
    ck_assert_int_eq(parse(&c, empty, &err), SSMD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "--model"));
    srv_config_free(&c);
    const char *bad_port[] = {"--model", "m", "--port", "70000", NULL};
    ck_assert_int_eq(parse(&c, bad_port, &err), SSMD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "--port"));
    srv_config_free(&c);
    const char *nan[] = {"--model", "m", "--max-batch", "x", NULL};
    ck_assert_int_eq(parse(&c, nan, &err), SSMD_EINVAL);
    srv_config_free(&c);
    const char *unk[] = {"--model", "m", "--frobnicate", NULL};
    ck_assert_int_eq(parse(&c, unk, &err), SSMD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "frobnicate"));
    srv_config_free(&c);
    const char *missing[] = {"--model", NULL};
    ck_assert_int_eq(parse(&c, missing, &err), SSMD_EINVAL);
    srv_config_free(&c);
    const char *be[] = {"--model", "m", "--backend", "tpu", NULL};
    ck_assert_int_eq(parse(&c, be, &err), SSMD_EINVAL);
    srv_config_free(&c);
}
END_TEST

static void count(void *arg, const char *name, const char *value)
{
    int *n = arg;
    (*n)++;
    if (!strcmp(name, "api-key"))
        ck_assert_str_eq(value, "(set)"); /* never shown */
}

static char *help_text(srv_front front)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    srv_config_print_help(front, f);
    fclose(f);
    return text;
}

/* Each option srv_config_each walks (the table's rows of one front end)
 * must appear in that front end's --help as "--NAME ". */
typedef struct help_walk {
    const char *text;
    int n;
} help_walk;

static void in_help(void *arg, const char *name, const char *value)
{
    help_walk *w = arg;
    char flag[64];
    snprintf(flag, sizeof flag, "  --%s ", name);
    ck_assert_msg(strstr(w->text, flag) != NULL, "--%s missing from --help", name);
    w->n++;
}

START_TEST(test_help_lists_every_flag)
{
    char *text = help_text(SRV_FRONT_SERVE);
    srv_config c;
    ssmd_err err = {0};
    const char *a[] = {"--model", "m", "--api-key", "secret", NULL};
    ck_assert_int_eq(parse(&c, a, &err), SSMD_OK);
    int n = 0;
    srv_config_each(&c, SRV_FRONT_SERVE, count, &n);
    ck_assert_int_ge(n, 15);
    help_walk w = {text, 0};
    srv_config_each(&c, SRV_FRONT_SERVE, in_help, &w);
    ck_assert_int_eq(w.n, n);
    ck_assert_ptr_nonnull(strstr(text, "(default: 8080)"));
    ck_assert_ptr_null(strstr(text, "--prompt ")); /* generate's rows stay out */
    free(text);

    text = help_text(SRV_FRONT_GENERATE);
    w = (help_walk){text, 0};
    srv_config_each(&c, SRV_FRONT_GENERATE, in_help, &w);
    ck_assert_int_ge(w.n, 15);
    ck_assert_ptr_nonnull(strstr(text, "--stop S"));
    ck_assert_ptr_null(strstr(text, "--port ")); /* serve's rows stay out */
    srv_config_free(&c);
    free(text);
}
END_TEST

START_TEST(test_log_options_and_version)
{
    srv_config c;
    ssmd_err err = {0};
    const char *none[] = {NULL};
    ck_assert_int_eq(parse(&c, none, &err), SSMD_OK);
    ck_assert_str_eq(c.log_format, "text");
    ck_assert_int_eq(c.quiet, 0);
    srv_config_free(&c);
    const char *json[] = {"--log-format", "json", "--quiet", NULL};
    ck_assert_int_eq(parse(&c, json, &err), SSMD_OK);
    ck_assert_str_eq(c.log_format, "json");
    ck_assert_int_eq(c.quiet, 1);
    srv_config_free(&c);
    const char *bad[] = {"--log-format=yaml", NULL};
    ck_assert_int_eq(parse(&c, bad, &err), SSMD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "--log-format"));
    srv_config_free(&c);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    srv_config_defaults(&c);
    char *argv[] = {"serve", "--port", "1", "--version", NULL};
    ck_assert_int_eq(srv_config_parse(&c, SRV_FRONT_SERVE, 4, argv, f, &err), 1);
    fclose(f);
    ck_assert_str_eq(text, "ssmd " SSMD_VERSION "\n");
    srv_config_free(&c);
    free(text);
}
END_TEST

/* --numerics and --device: both front ends, into the model options. */
START_TEST(test_numerics_and_device)
{
    srv_config c;
    ssmd_err err = {0};
    eng_model_opts mo;
    const char *none[] = {NULL};
    ck_assert_int_eq(parse(&c, none, &err), SSMD_OK);
    srv_config_model_opts(&c, &mo);
    ck_assert_int_eq(mo.backend_opts.numerics, BK_NUMERICS_EXACT);
    ck_assert_int_eq(mo.backend_opts.device, 0);
    srv_config_free(&c);
    const char *set[] = {"--numerics", "fast", "--device=3", "--threads", "2", "--backend", "cuda", NULL};
    ck_assert_int_eq(parse(&c, set, &err), SSMD_OK);
    srv_config_model_opts(&c, &mo);
    ck_assert_int_eq(mo.backend_opts.numerics, BK_NUMERICS_FAST);
    ck_assert_int_eq(mo.backend_opts.device, 3);
    ck_assert_int_eq(mo.backend_opts.threads, 2);
    ck_assert_str_eq(mo.backend, "cuda");
    srv_config_free(&c);
    const char *gen[] = {"--prompt-ids", "1", "--numerics", "fast", "--device", "1", NULL};
    ck_assert_int_eq(parse_front(&c, SRV_FRONT_GENERATE, gen, &err), SSMD_OK);
    srv_config_model_opts(&c, &mo);
    ck_assert_int_eq(mo.backend_opts.numerics, BK_NUMERICS_FAST);
    ck_assert_int_eq(mo.backend_opts.device, 1);
    srv_config_free(&c);
    const char *bad_num[] = {"--numerics", "quick", NULL};
    ck_assert_int_eq(parse(&c, bad_num, &err), SSMD_EINVAL);
    ck_assert_str_eq(err.msg, "--numerics must be exact or fast, got 'quick'");
    srv_config_free(&c);
    const char *bad_dev[] = {"--prompt-ids", "1", "--device", "-1", NULL};
    ck_assert_int_eq(parse_front(&c, SRV_FRONT_GENERATE, bad_dev, &err), SSMD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "--device"));
    srv_config_free(&c);
}
END_TEST

/* generate's rows: its own --max-tokens, the sampling flags with the
 * request fields' bounds, repeatable --stop, the prompt rule. */
START_TEST(test_generate_rows)
{
    srv_config c;
    ssmd_err err = {0};
    const char *a[] = {"--prompt", "hi", "--max-tokens", "5", "--top-p", "0.5", "--top-k", "7", "--seed",
                       "18000000000000000000", "--stop", "a", "--stop=bc", "--print-ids", NULL};
    ck_assert_int_eq(parse_front(&c, SRV_FRONT_GENERATE, a, &err), SSMD_OK);
    ck_assert_int_eq(c.gen_max_tokens, 5);
    ck_assert_int_eq(c.max_tokens, 4096); /* serve's --max-tokens is another row */
    ck_assert_float_eq(c.sampling.top_p, 0.5f);
    ck_assert_int_eq(c.sampling.top_k, 7);
    ck_assert(c.sampling.seed == 18000000000000000000ULL);
    ck_assert_float_eq(c.sampling.temperature, 1.0f); /* eng_sampling_defaults */
    ck_assert_int_eq(c.stop.n, 2);
    ck_assert_str_eq(c.stop.v[1], "bc");
    ck_assert_int_eq(c.print_ids, 1);
    srv_config_free(&c);
    /* top_p's open lower bound, as for the request field */
    const char *p0[] = {"--prompt", "hi", "--top-p", "0", NULL};
    ck_assert_int_eq(parse_front(&c, SRV_FRONT_GENERATE, p0, &err), SSMD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "--top-p must be a number in (0, 1]"));
    srv_config_free(&c);
    const char *both[] = {"--prompt", "hi", "--prompt-ids", "1", NULL};
    ck_assert_int_eq(parse_front(&c, SRV_FRONT_GENERATE, both, &err), SSMD_EINVAL);
    srv_config_free(&c);
    const char *port[] = {"--prompt", "hi", "--port", "1", NULL}; /* serve only */
    ck_assert_int_eq(parse_front(&c, SRV_FRONT_GENERATE, port, &err), SSMD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "--port"));
    srv_config_free(&c);
    const char *temp[] = {"--temperature", "0.5", NULL}; /* generate only */
    ck_assert_int_eq(parse(&c, temp, &err), SSMD_EINVAL);
    srv_config_free(&c);
    const char *stop9[] = {"--prompt", "x", "--stop", "1", "--stop", "2", "--stop", "3", "--stop", "4", "--stop", "5",
                           "--stop", "6", "--stop", "7", "--stop", "8", "--stop", "9", NULL};
    ck_assert_int_eq(parse_front(&c, SRV_FRONT_GENERATE, stop9, &err), SSMD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "--stop"));
    srv_config_free(&c);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("options");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_defaults_and_values);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_help_lists_every_flag);
    tcase_add_test(tc, test_log_options_and_version);
    tcase_add_test(tc, test_numerics_and_device);
    tcase_add_test(tc, test_generate_rows);
    suite_add_tcase(s, tc);
    return s;
}
