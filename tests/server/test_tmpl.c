/* test_tmpl.c - the chat template interpreter (server/tmpl_*.c) against
 * transformers' apply_chat_template (jinja2): every template of
 * tests/fixtures/mamba/text_tiny/chat_cases.json on every conversation must
 * render byte for byte what transformers rendered, or fail where it raised;
 * the templates outside the subset must be refused at compile time.  Plus
 * the limits that keep a template from costing unbounded time or memory.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "server/tmpl.h"

#define CASES "tests/fixtures/mamba/text_tiny/chat_cases.json"

static json_t *load_cases(void)
{
    json_error_t je;
    json_t *j = json_load_file(CASES, 0, &je);
    ck_assert_msg(j != NULL, "%s: %s", CASES, je.text);
    return j;
}

static char *render(const srv_tmpl *t, const json_t *msgs, int agp, const char *bos, const char *eos,
                    ssmd_err *err)
{
    srv_tmpl_vars v;
    memset(&v, 0, sizeof v);
    v.messages = msgs;
    v.add_generation_prompt = agp;
    v.bos_token = bos;
    v.eos_token = eos;
    size_t n;
    return srv_tmpl_render(t, &v, &n, err);
}

START_TEST(test_matches_transformers)
{
    json_t *j = load_cases();
    const char *bos = json_string_value(json_object_get(j, "bos_token"));
    const char *eos = json_string_value(json_object_get(j, "eos_token"));
    json_t *templates = json_object_get(j, "templates"), *convs = json_object_get(j, "conversations");
    size_t i;
    json_t *c;
    int n_ok = 0, n_err = 0;
    json_array_foreach(json_object_get(j, "renders"), i, c) {
        const char *name = json_string_value(json_object_get(c, "template"));
        const json_t *src = json_object_get(templates, name);
        char why[200];
        srv_tmpl *t = srv_tmpl_compile(json_string_value(src), json_string_length(src), why, sizeof why);
        ck_assert_msg(t != NULL, "template %s refused: %s", name, why);
        const json_t *msgs = json_array_get(convs, (size_t)json_integer_value(json_object_get(c, "conversation")));
        int agp = json_is_true(json_object_get(c, "add_generation_prompt"));
        ssmd_err err = {0};
        char *out = render(t, msgs, agp, bos, eos, &err);
        const json_t *want = json_object_get(c, "expected");
        if (want) {
            ck_assert_msg(out != NULL, "%s (case %zu) failed: %s", name, i, err.msg);
            ck_assert_msg(strlen(out) == json_string_length(want) && !strcmp(out, json_string_value(want)),
                          "%s (case %zu):\n got  [%s]\n want [%s]", name, i, out, json_string_value(want));
            n_ok++;
        } else {
            ck_assert_msg(out == NULL, "%s (case %zu) rendered where transformers raised", name, i);
            const char *msg = json_string_value(json_object_get(c, "error"));
            ck_assert_msg(strstr(err.msg, msg) != NULL, "error '%s' does not carry '%s'", err.msg, msg);
            n_err++;
        }
        free(out);
        srv_tmpl_free(t);
    }
    ck_assert_int_ge(n_ok, 40);
    ck_assert_int_ge(n_err, 2);
    json_decref(j);
}
END_TEST

START_TEST(test_unsupported_refused)
{
    json_t *j = load_cases();
    const char *name;
    json_t *src;
    int n = 0;
    json_object_foreach(json_object_get(j, "unsupported"), name, src) {
        char why[200] = "";
        srv_tmpl *t = srv_tmpl_compile(json_string_value(src), json_string_length(src), why, sizeof why);
        ck_assert_msg(t == NULL, "template %s compiled", name);
        ck_assert_msg(why[0] != '\0', "template %s refused without a reason", name);
        n++;
    }
    ck_assert_int_ge(n, 5);
    json_decref(j);
}
END_TEST

static char *render_src(const char *src, const char *msgs_json, ssmd_err *err)
{
    char why[200];
    srv_tmpl *t = srv_tmpl_compile(src, strlen(src), why, sizeof why);
    ck_assert_msg(t != NULL, "refused: %s", why);
    json_t *m = json_loads(msgs_json, 0, NULL);
    char *out = render(t, m, 1, "<s>", "</s>", err);
    json_decref(m);
    srv_tmpl_free(t);
    return out;
}

/* Small cases whose expected output follows from Jinja's documented rules. */
START_TEST(test_semantics)
{
    ssmd_err err = {0};
    const char *one = "[{\"role\": \"user\", \"content\": \"hi\", \"n\": 3, \"f\": false, \"z\": null}]";
    struct { const char *src, *want; } cases[] = {
        {"{{ 'a' ~ 1 ~ true ~ none ~ undefined_is_refused_below }}", NULL},
        {"{% for m in messages %}{{ m.n + 2 }}{{ m['n'] % 2 }}{{ m.f }}{{ m.z }}{{ m.missing }}{% endfor %}",
         "51FalseNone"},
        {"{% for m in messages %}{{ m.missing or 'x' }}{{ m.content and 'y' }}{{ m.f or 0 }}{% endfor %}", "xy0"},
        {"{{ 1 if add_generation_prompt }}{{ 2 if not add_generation_prompt }}", "1"},
        {"{{ messages[5] is defined }}{{ messages[-1].role }}{{ messages | length }}", "Falseuser1"},
        {"a\n{% if true %}\n  b\n{% endif %}\nc\n", "a\n  b\nc"},
        {"  {%- if true -%}  x  {%- endif -%}  ", "x"},
        {"{{ -3 % 5 }} {{ 7 % -2 }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'b' > 'a' }}", "2 -1 True False True"},
        {"{{ bos_token + eos_token }}{{ unk_token is none }}{{ unk_token is undefined }}", "<s></s>FalseTrue"},
        {"{# c #}\n{{ '\\u00e9' | length }}{{ ' \\u3000x\\t' | trim }}|{{ '  x '.lstrip() }}|", "1x|x |"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!cases[i].want) {
            char why[200];
            ck_assert_ptr_null(srv_tmpl_compile(cases[i].src, strlen(cases[i].src), why, sizeof why));
            ck_assert_ptr_nonnull(strstr(why, "undefined_is_refused_below"));
            continue;
        }
        char *out = render_src(cases[i].src, one, &err);
        ck_assert_msg(out != NULL, "case %zu failed: %s", i, err.msg);
        ck_assert_msg(!strcmp(out, cases[i].want), "case %zu: got [%s] want [%s]", i, out, cases[i].want);
        free(out);
    }
}
END_TEST

START_TEST(test_render_errors)
{
    ssmd_err err = {0};
    const char *one = "[{\"role\": \"user\", \"content\": \"hi\"}]";
    const char *bad[] = {
        "{% for m in messages %}{{ m.content + 1 }}{% endfor %}",   /* str + int */
        "{% for m in messages %}{{ m.nope + 'x' }}{% endfor %}",    /* undefined + str */
        "{% for m in messages %}{{ m.nope.deeper }}{% endfor %}",   /* attribute of undefined */
        "{{ 1 % 0 }}",
        "{{ messages }}",
        "{{ raise_exception('no ' ~ 'way') }}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        char *out = render_src(bad[i], one, &err);
        ck_assert_msg(out == NULL, "case %zu rendered: %s", i, out);
        ck_assert_int_eq(err.code, SSMD_EINVAL);
        ck_assert_int_gt(strlen(err.msg), 0);
    }
    ck_assert_ptr_nonnull(strstr(err.msg, "no way"));
}
END_TEST

START_TEST(test_limits)
{
    char why[200];
    /* source size */
    size_t big = SRV_TMPL_MAX_SOURCE + 1;
    char *src = malloc(big + 1);
    memset(src, 'x', big);
    src[big] = '\0';
    ck_assert_ptr_null(srv_tmpl_compile(src, big, why, sizeof why));
    free(src);
    /* nesting and expression height */
    char deep[4096] = "";
    for (int i = 0; i < 60; i++)
        strcat(deep, "{% if true %}");
    ck_assert_ptr_null(srv_tmpl_compile(deep, strlen(deep), why, sizeof why));
    char chain[8192] = "{{ 'a'";
    for (int i = 0; i < 400; i++)
        strcat(chain, " + 'a'");
    strcat(chain, " }}");
    ck_assert_ptr_null(srv_tmpl_compile(chain, strlen(chain), why, sizeof why));
    char parens[1024] = "{{ ";
    for (int i = 0; i < 100; i++)
        strcat(parens, "(");
    strcat(parens, "1");
    for (int i = 0; i < 100; i++)
        strcat(parens, ")");
    strcat(parens, " }}");
    ck_assert_ptr_null(srv_tmpl_compile(parens, strlen(parens), why, sizeof why));
    /* output cap: a template that repeats each message many times */
    const char *rep = "{% for m in messages %}{{ m.content + m.content + m.content + m.content }}{% endfor %}";
    srv_tmpl *t = srv_tmpl_compile(rep, strlen(rep), why, sizeof why);
    ck_assert_ptr_nonnull(t);
    json_t *msgs = json_array();
    char *text = malloc(4001);
    memset(text, 'y', 4000);
    text[4000] = '\0';
    for (int i = 0; i < 10; i++)
        json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", text));
    free(text);
    srv_tmpl_vars v;
    memset(&v, 0, sizeof v);
    v.messages = msgs;
    v.max_output = 100000;
    ssmd_err err = {0};
    size_t n;
    ck_assert_ptr_null(srv_tmpl_render(t, &v, &n, &err));
    ck_assert_ptr_nonnull(strstr(err.msg, "limit"));
    v.max_output = 200000;
    char *out = srv_tmpl_render(t, &v, &n, &err);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(n, 160000);
    free(out);
    json_decref(msgs);
    srv_tmpl_free(t);
    /* broken syntax is refused, not crashed on */
    const char *broken[] = {"{{", "{% if %}", "{{ 'x }}", "{% for m in messages %}", "{% endfor %}",
                            "{{ a b }}", "{# open", "{{ ) }}", "{{ messages[0:1] }}", "{% if x %}{% else %}{% else %}{% endif %}",
                            "{{ 0125 }}", "{{ 3_ }}", "{{ 0x1F }}", "{{ 1e3 }}"};
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++)
        ck_assert_msg(srv_tmpl_compile(broken[i], strlen(broken[i]), why, sizeof why) == NULL, "%s", broken[i]);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("tmpl");
    TCase *tc = tcase_create("tmpl");
    tcase_add_test(tc, test_matches_transformers);
    tcase_add_test(tc, test_unsupported_refused);
    tcase_add_test(tc, test_semantics);
    tcase_add_test(tc, test_render_errors);
    tcase_add_test(tc, test_limits);
    suite_add_tcase(s, tc);
    return s;
}
