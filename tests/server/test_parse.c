/* test_parse.c - completion bodies into srv_completion: the field table
 * (types, bounds, defaults), prompts (a list of several too), n, stop,
 * session; the chat template;
 * UTF-8 cut points for streamed text. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "server/parse.h"

static const srv_limits lim = {.max_prompt = 8, .max_tokens = 100, .default_max_tokens = 16, .n_vocab = 50,
                               .chat_eos = "</s>", .model_name = "m"};

static int parse(const char *text, int chat, srv_completion *c, ssmd_err *err)
{
    json_t *j = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(j);
    int rc = srv_completion_parse(c, j, chat, NULL, &lim, err);
    json_decref(j);
    return rc;
}

START_TEST(test_fields_and_defaults)
{
    srv_completion c;
    ssmd_err err = {0};
    ck_assert_int_eq(parse("{\"prompt\": [1, 2, 3]}", 0, &c, &err), SSMD_OK);
    ck_assert_int_eq(c.n_prompt, 3);
    ck_assert_int_eq(c.prompt_ids[2], 3);
    ck_assert_int_eq(c.max_tokens, 16);
    ck_assert_int_eq(c.stream, 0);
    ck_assert_double_eq(c.sampling.top_p, 1.0f);
    srv_completion_free(&c);
    ck_assert_int_eq(parse("{\"prompt\": [4], \"max_tokens\": 7, \"temperature\": 0.5, \"top_p\": 0.9, \"top_k\": 5,"
                           " \"min_p\": 0.1, \"repetition_penalty\": 1.3, \"seed\": 99, \"stream\": true,"
                           " \"stream_options\": {\"include_usage\": true}, \"echo\": true, \"logprobs\": 2,"
                           " \"stop\": [\"a\", \"bc\"], \"session\": \"0123456789abcdef0123456789abcdef\", \"user\": \"x\"}",
                           0, &c, &err), SSMD_OK);
    ck_assert_int_eq(c.max_tokens, 7);
    ck_assert_double_eq_tol(c.sampling.temperature, 0.5, 1e-6);
    ck_assert_double_eq_tol(c.sampling.top_p, 0.9, 1e-6);
    ck_assert_int_eq(c.sampling.top_k, 5);
    ck_assert_double_eq_tol(c.sampling.min_p, 0.1, 1e-6);
    ck_assert_double_eq_tol(c.sampling.repetition_penalty, 1.3, 1e-6);
    ck_assert_uint_eq(c.sampling.seed, 99);
    ck_assert_int_eq(c.sampling.logprobs, 2);
    ck_assert(c.stream && c.include_usage && c.echo);
    ck_assert_int_eq(c.n_stop, 2);
    ck_assert_str_eq(c.stop[1], "bc");
    ck_assert_str_eq(c.session, "0123456789abcdef0123456789abcdef");
    eng_request *r = srv_completion_to_request(&c);
    ck_assert_int_eq(r->n_prompt, 1);
    ck_assert_int_eq(r->prompt[0], 4);
    ck_assert_int_eq(r->max_tokens, 7);
    ck_assert_str_eq(r->session, c.session);
    ck_assert_ptr_null(c.prompt_ids); /* moved */
    eng_request_free(r);
    srv_completion_free(&c);
}
END_TEST

START_TEST(test_rejections)
{
    const char *bad[] = {
        "{}",                                          /* no prompt */
        "{\"prompt\": 5}",
        "{\"prompt\": [1, \"x\"]}",
        "{\"prompt\": [50]}",                          /* >= n_vocab */
        "{\"prompt\": [-1]}",
        "{\"prompt\": [1,2,3,4,5,6,7,8,9]}",           /* > max_prompt */
        "{\"prompt\": []}",                            /* empty without a session */
        "{\"prompt\": \"text\"}",                      /* no tokenizer */
        "{\"prompt\": [1], \"max_tokens\": 101}",
        "{\"prompt\": [1], \"max_tokens\": -1}",
        "{\"prompt\": [1], \"max_tokens\": 1.5}",
        "{\"prompt\": [1], \"temperature\": \"hot\"}",
        "{\"prompt\": [1], \"top_p\": 0}",
        "{\"prompt\": [1], \"repetition_penalty\": 0}",
        "{\"prompt\": [1], \"stream\": \"yes\"}",
        "{\"prompt\": [1], \"logprobs\": 21}",
        "{\"prompt\": [1], \"n\": 2}",
        "{\"prompt\": [1], \"stop\": [1]}",
        "{\"prompt\": [1], \"stop\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]}",
        "{\"prompt\": [1], \"session\": \"ABC\"}",
        "{\"prompt\": [1], \"stream_options\": 3}",
        "{\"prompt\": [1], \"presence_penalty\": 2.1}",
        "{\"prompt\": [1], \"frequency_penalty\": \"x\"}",
        "{\"prompt\": [1], \"logit_bias\": {\"50\": 1}}",  /* >= n_vocab */
        "{\"prompt\": [1], \"logit_bias\": {\"-1\": 1}}",
        "{\"prompt\": [1], \"logit_bias\": {\" 1\": 1}}",
        "{\"prompt\": [1], \"logit_bias\": {\"1\": -101}}",
        "{\"prompt\": [1], \"best_of\": 2}",
        "{\"prompt\": [1], \"suffix\": \"x\"}",
        "{\"prompt\": [1], \"user\": 1}",
        "{\"prompt\": [1], \"response_format\": {\"type\": \"json_schema\"}}",
        "{\"prompt\": [1], \"model\": \"other\"}",
        "{\"prompt\": [[1], [2]]}",                  /* two prompts */
        "{\"prompt\": [[1, \"x\"]]}",
        "[1]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        srv_completion c;
        ssmd_err err = {0};
        int rc = parse(bad[i], 0, &c, &err);
        ck_assert_msg(rc < 0, "accepted %s", bad[i]);
        ck_assert_msg(err.msg[0] != '\0', "no message for %s", bad[i]);
        srv_completion_free(&c);
    }
    /* an empty prompt is fine when a session continues */
    srv_completion c;
    ck_assert_int_eq(parse("{\"prompt\": [], \"session\": \"0123456789abcdef0123456789abcdef\"}", 0, &c, NULL), SSMD_OK);
    srv_completion_free(&c);
}
END_TEST

/* With room for 4 choices: a list of prompts back to back with their
 * lengths, n times the prompts bounded, none empty, not on a session. */
START_TEST(test_prompt_list_and_n)
{
    srv_limits four = lim;
    four.max_choices = 4;
    srv_completion c;
    ssmd_err err = {0};
    json_t *j = json_loads("{\"prompt\": [[1], [2, 3]], \"n\": 2}", 0, NULL);
    ck_assert_int_eq(srv_completion_parse(&c, j, 0, NULL, &four, &err), SSMD_OK);
    json_decref(j);
    ck_assert_int_eq(c.n_prompts, 2);
    ck_assert_int_eq(c.n_prompt, 3);
    ck_assert_int_eq(c.prompt_lens[0], 1);
    ck_assert_int_eq(c.prompt_lens[1], 2);
    ck_assert_int_eq(c.prompt_ids[2], 3);
    ck_assert_int_eq(c.n, 2);
    eng_request *r = srv_completion_to_request(&c);
    ck_assert_int_eq(r->n_prompts, 2);
    ck_assert_int_eq(r->prompt_lens[1], 2);
    ck_assert_int_eq(r->n_choices, 2);
    eng_request_free(r);
    srv_completion_free(&c);
    static const struct {
        const char *body, *names;
    } bad[] = {
        {"{\"prompt\": [[1], [2]], \"n\": 3}", "6 choices"},
        {"{\"prompt\": [[1], []]}", "'prompt[1]' is empty"},
        {"{\"prompt\": [[1], [1,2,3,4,5,6,7,8,9]]}", "'prompt[1]' has 9 tokens"},
        {"{\"prompt\": [[1], [2]], \"session\": \"0123456789abcdef0123456789abcdef\"}", "list of prompts"},
        {"{\"prompt\": [1], \"n\": 2, \"session\": \"0123456789abcdef0123456789abcdef\"}", "fork the session"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        j = json_loads(bad[i].body, 0, NULL);
        ck_assert_int_eq(srv_completion_parse(&c, j, 0, NULL, &four, &err), SSMD_EINVAL);
        ck_assert_msg(strstr(err.msg, bad[i].names), "%s: %s", bad[i].body, err.msg);
        json_decref(j);
        srv_completion_free(&c);
    }
}
END_TEST

START_TEST(test_openai_fields)
{
    srv_completion c;
    ssmd_err err = {0};
    ck_assert_int_eq(parse("{\"prompt\": [[3, 4]], \"model\": \"m\", \"best_of\": 1, \"suffix\": \"\","
                           " \"logit_bias\": {\"7\": -100, \"49\": 2.5}, \"presence_penalty\": -2,"
                           " \"frequency_penalty\": 0.5, \"response_format\": {\"type\": \"text\"}}",
                           0, &c, &err),
                     SSMD_OK);
    ck_assert_int_eq(c.n_prompt, 2);
    ck_assert_int_eq(c.prompt_ids[1], 4);
    ck_assert(!c.seed_given);
    ck_assert_int_eq(c.sampling.n_logit_bias, 2);
    int i7 = c.sampling.logit_bias[0].token == 7 ? 0 : 1;
    ck_assert_int_eq(c.sampling.logit_bias[i7].token, 7);
    ck_assert_double_eq_tol(c.sampling.logit_bias[i7].bias, -100, 1e-6);
    ck_assert_int_eq(c.sampling.logit_bias[1 - i7].token, 49);
    ck_assert_double_eq_tol(c.sampling.presence_penalty, -2, 1e-6);
    ck_assert_double_eq_tol(c.sampling.frequency_penalty, 0.5, 1e-6);
    ck_assert_int_eq(c.sampling.json_object, 0);
    srv_completion_free(&c);
    ck_assert_int_eq(parse("{\"prompt\": [1], \"response_format\": {\"type\": \"json_object\"}}", 0, &c,
                           &err), SSMD_OK);
    ck_assert_int_eq(c.sampling.json_object, 1);
    srv_completion_free(&c);
    ck_assert_int_eq(parse("{\"prompt\": [1], \"seed\": 0}", 0, &c, &err), SSMD_OK);
    ck_assert(c.seed_given);
    srv_completion_free(&c);
    /* refusals are told apart by code: unsupported, unknown model, bad type */
    ck_assert_int_eq(parse("{\"prompt\": [1], \"model\": \"x\"}", 0, &c, &err), SSMD_ENOTFOUND);
    srv_completion_free(&c);
    ck_assert_int_eq(parse("{\"messages\": [{\"role\":\"user\",\"content\":\"a\"}], \"tools\": [{}]}", 1, &c, &err),
                     SSMD_EUNSUPPORTED);
    ck_assert(strstr(err.msg, "'tools' is not supported") != NULL);
    srv_completion_free(&c);
    ck_assert_int_eq(parse("{\"prompt\": [1], \"store\": true}", 0, &c, &err), SSMD_OK); /* chat only */
    srv_completion_free(&c);
    ck_assert_int_eq(parse("{\"prompt\": [1], \"temperature\": 1000000}", 0, &c, &err), SSMD_EINVAL);
    ck_assert_str_eq(err.msg, "'temperature' must be between 0 and 100 (it was 1000000)");
    srv_completion_free(&c);
    ck_assert_int_eq(parse("{\"prompt\": [1], \"top_p\": \"x\"}", 0, &c, &err), SSMD_EINVAL);
    ck_assert_str_eq(err.msg, "'top_p' must be a number, not a string");
    srv_completion_free(&c);
}
END_TEST

START_TEST(test_chat_template)
{
    json_t *m = json_loads("[{\"role\": \"system\", \"content\": \"Be brief.\"},"
                           " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Hi\"}, {\"type\": \"text\", \"text\": \"!\"}]}]",
                           0, NULL);
    ssmd_err err = {0};
    char *t = srv_chat_render(m, "</s>", 1, &err);
    ck_assert_str_eq(t, "<|system|>\nBe brief.</s>\n<|user|>\nHi!</s>\n<|assistant|>\n");
    free(t);
    t = srv_chat_render(m, "</s>", 0, &err); /* add_generation_prompt: false */
    ck_assert_str_eq(t, "<|system|>\nBe brief.</s>\n<|user|>\nHi!</s>\n");
    free(t);
    json_decref(m);
    const char *bad[] = {"[]", "{}", "[{\"content\": \"x\"}]", "[{\"role\": \"user\", \"content\": 5}]",
                         "[{\"role\": \"user\", \"content\": [{\"type\": \"image\"}]}]",
                         "[{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"text\": \"x\"}]}]",
                         "[{\"role\": \"user\", \"content\": [{\"type\": 5, \"text\": \"x\"}]}]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        m = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        ck_assert_msg(srv_chat_render(m, "", 1, &err) == NULL, "%s", bad[i]);
        json_decref(m);
    }
    /* chat without a tokenizer: a clean error */
    srv_completion c;
    ck_assert_int_lt(parse("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", 1, &c, &err), 0);
    srv_completion_free(&c);
}
END_TEST

START_TEST(test_utf8_prefix)
{
    ck_assert_uint_eq(srv_utf8_complete_prefix("abc", 3), 3);
    ck_assert_uint_eq(srv_utf8_complete_prefix("", 0), 0);
    const char *e_acute = "a\xC3\xA9";         /* a é */
    ck_assert_uint_eq(srv_utf8_complete_prefix(e_acute, 3), 3);
    ck_assert_uint_eq(srv_utf8_complete_prefix(e_acute, 2), 1);
    const char *euro = "\xE2\x82\xAC";          /* € */
    ck_assert_uint_eq(srv_utf8_complete_prefix(euro, 1), 0);
    ck_assert_uint_eq(srv_utf8_complete_prefix(euro, 2), 0);
    ck_assert_uint_eq(srv_utf8_complete_prefix(euro, 3), 3);
    const char *emoji = "x\xF0\x9F\x98\x80";   /* x 😀 */
    for (size_t n = 2; n < 5; n++)
        ck_assert_uint_eq(srv_utf8_complete_prefix(emoji, n), 1);
    ck_assert_uint_eq(srv_utf8_complete_prefix(emoji, 5), 5);
    ck_assert_uint_eq(srv_utf8_complete_prefix("\xFF", 1), 1); /* invalid: nothing to wait for */
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("parse");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_fields_and_defaults);
    tcase_add_test(tc, test_rejections);
    tcase_add_test(tc, test_openai_fields);
    tcase_add_test(tc, test_prompt_list_and_n);
    tcase_add_test(tc, test_chat_template);
    tcase_add_test(tc, test_utf8_prefix);
    suite_add_tcase(s, tc);
    return s;
}
