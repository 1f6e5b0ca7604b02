/* test_options.c - the options table: defaults, parsing, bounds, help. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/options.h"

static int parse(srv_config *c, const char *const *args, ssmd_err *err)
{
    int argc = 0;
    char *argv[32];
    argv[argc++] = "serve";
    for (int i = 0; args[i]; i++)
        argv[argc++] = (char *)args[i];
    srv_config_defaults(c);
    return srv_config_parse(c, argc, argv, stdout, err);
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

START_TEST(test_help_lists_every_flag)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    srv_config_print_help(f);
    fclose(f);
    srv_config c;
    ssmd_err err = {0};
    const char *a[] = {"--model", "m", "--api-key", "secret", NULL};
    ck_assert_int_eq(parse(&c, a, &err), SSMD_OK);
    int n = 0;
    srv_config_each(&c, count, &n);
    ck_assert_int_ge(n, 15);
    const char *flags[] = {"--model", "--host", "--port", "--backend", "--threads", "--max-batch", "--max-sessions",
                           "--session-ttl", "--max-queue", "--max-body", "--api-key", "--drain-timeout"};
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++)
        ck_assert_msg(strstr(text, flags[i]) != NULL, "%s missing from --help", flags[i]);
    ck_assert_ptr_nonnull(strstr(text, "(default: 8080)"));
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
    ck_assert_int_eq(srv_config_parse(&c, 4, argv, f, &err), 1);
    fclose(f);
    ck_assert_str_eq(text, "ssmd " SSMD_VERSION "\n");
    srv_config_free(&c);
    free(text);
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
    suite_add_tcase(s, tc);
    return s;
}
