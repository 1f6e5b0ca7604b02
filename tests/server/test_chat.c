/* test_chat.c - choosing and applying the chat template (server/chat.c):
 * text_tiny's tokenizer_config.json template renders exactly the prompt
 * text and ids that transformers' apply_chat_template produced (committed in
 * its expected.json), a model dir without a template or with one outside
 * the subset falls back to the default, and bad messages are clean errors.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/text/tokenizer.h"
#include "server/chat.h"
#include "server/parse.h"

#define TEXT_TINY "tests/fixtures/mamba/text_tiny"

static json_t *expected_chat(void)
{
    json_error_t je;
    json_t *j = json_load_file(TEXT_TINY "/expected.json", 0, &je);
    ck_assert_msg(j != NULL, "expected.json: %s", je.text);
    json_t *c = json_incref(json_object_get(j, "chat"));
    json_decref(j);
    ck_assert_ptr_nonnull(c);
    return c;
}

START_TEST(test_model_template)
{
    srv_chat chat;
    char why[256];
    ck_assert_int_eq(srv_chat_load(&chat, TEXT_TINY, why, sizeof why), 1);
    ck_assert_ptr_nonnull(chat.tmpl);
    ck_assert_str_eq(chat.bos_token, "<|endoftext|>");
    ck_assert_str_eq(chat.eos_token, "<|endoftext|>");
    json_t *want = expected_chat();
    ssmd_err err = {0};
    char *text = srv_chat_apply(&chat, json_object_get(want, "messages"), 1, "ignored", &err);
    ck_assert_msg(text != NULL, "%s", err.msg);
    ck_assert_str_eq(text, json_string_value(json_object_get(want, "prompt_text")));
    free(text);

    /* through the request parser and the real tokenizer: the same ids */
    eng_tokenizer *tok = NULL;
    ck_assert_int_eq(eng_tokenizer_load(TEXT_TINY "/tokenizer.json", &tok, &err), SSMD_OK);
    srv_limits lim = {.max_prompt = 1000, .max_tokens = 100, .default_max_tokens = 16,
                      .n_vocab = eng_tokenizer_vocab_size(tok), .chat_eos = "x", .chat = &chat};
    json_t *body = json_pack("{s:O}", "messages", json_object_get(want, "messages"));
    srv_completion c;
    ck_assert_int_eq(srv_completion_parse(&c, body, 1, tok, &lim, &err), SSMD_OK);
    json_t *ids = json_object_get(want, "prompt");
    ck_assert_int_eq(c.n_prompt, (int)json_array_size(ids));
    for (int i = 0; i < c.n_prompt; i++)
        ck_assert_int_eq(c.prompt_ids[i], (int)json_integer_value(json_array_get(ids, (size_t)i)));
    srv_completion_free(&c);
    /* add_generation_prompt: false drops the assistant header */
    json_object_set_new(body, "add_generation_prompt", json_false());
    ck_assert_int_eq(srv_completion_parse(&c, body, 1, tok, &lim, &err), SSMD_OK);
    ck_assert_int_lt(c.n_prompt, (int)json_array_size(ids));
    ck_assert_ptr_null(strstr(c.prompt_text, "<|assistant|>"));
    srv_completion_free(&c);
    /* a template error is a 400 naming the problem */
    json_object_set_new(body, "messages", json_pack("[{s:s, s:i}]", "role", "user", "content", 5));
    ck_assert_int_eq(srv_completion_parse(&c, body, 1, tok, &lim, &err), SSMD_EINVAL);
    srv_completion_free(&c);
    json_decref(body);
    eng_tokenizer_free(tok);
    json_decref(want);
    srv_chat_free(&chat);
}
END_TEST

/* Writes a tokenizer_config.json with template (a JSON value) into a temp dir. */
static void make_dir(char *dir, size_t cap, const char *config)
{
    char tmpl[] = "/tmp/ssmd-test-chat-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    snprintf(dir, cap, "%s", tmpl);
    if (!config)
        return;
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(config, f);
    fclose(f);
}

static void rm_dir(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    unlink(path);
    rmdir(dir);
}

START_TEST(test_fallbacks)
{
    srv_chat chat;
    char why[256], dir[256];
    json_t *msgs = json_loads("[{\"role\": \"user\", \"content\": \"Hi\"}]", 0, NULL);
    ssmd_err err = {0};
    struct { const char *config; const char *reason; } cases[] = {
        {NULL, "no tokenizer_config.json"},
        {"{\"eos_token\": \"</s>\"}", "no chat_template"},
        {"[1, 2]", "not a JSON object"},
        {"{\"chat_template\": \"{% set x = 1 %}{{ x }}\"}", "outside the supported subset"},
        {"{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}]}", "none called 'default'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_dir(dir, sizeof dir, cases[i].config);
        ck_assert_int_eq(srv_chat_load(&chat, dir, why, sizeof why), 0);
        ck_assert_msg(strstr(why, cases[i].reason) != NULL, "case %zu: '%s'", i, why);
        ck_assert_ptr_null(chat.tmpl);
        char *text = srv_chat_apply(&chat, msgs, 1, "</s>", &err);
        ck_assert_str_eq(text, "<|user|>\nHi</s>\n<|assistant|>\n"); /* the default template */
        free(text);
        srv_chat_free(&chat);
        rm_dir(dir);
    }
    /* a named "default" template and special tokens given as AddedToken objects */
    make_dir(dir, sizeof dir,
             "{\"bos_token\": {\"content\": \"<B>\", \"lstrip\": false}, \"chat_template\": "
             "[{\"name\": \"default\", \"template\": \"{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}\"}]}");
    ck_assert_int_eq(srv_chat_load(&chat, dir, why, sizeof why), 1);
    char *text = srv_chat_apply(&chat, msgs, 1, "</s>", &err);
    ck_assert_str_eq(text, "<B>Hi");
    free(text);
    srv_chat_free(&chat);
    rm_dir(dir);
    /* chat_template.jinja beside a config without one */
    make_dir(dir, sizeof dir, "{}");
    char path[512];
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    FILE *f = fopen(path, "w");
    fputs("{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}\n", f);
    fclose(f);
    ck_assert_int_eq(srv_chat_load(&chat, dir, why, sizeof why), 1);
    text = srv_chat_apply(&chat, msgs, 1, "</s>", &err);
    ck_assert_str_eq(text, "[user]Hi");
    free(text);
    srv_chat_free(&chat);
    rm_dir(dir);
    json_decref(msgs);
}
END_TEST

START_TEST(test_bad_messages)
{
    srv_chat chat;
    char why[256];
    ck_assert_int_eq(srv_chat_load(&chat, TEXT_TINY, why, sizeof why), 1);
    const char *bad[] = {"[]", "{}", "[{\"content\": \"x\"}]", "[{\"role\": \"user\", \"content\": 5}]",
                         "[{\"role\": \"user\", \"content\": [{\"type\": \"image\"}]}]",
                         "[{\"role\": \"user\", \"content\": \"a\\u0000b\"}]", "[5]",
                         /* a part of another type is refused even with a text (schemathesis) */
                         "[{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"text\": \"x\"}]}]",
                         "[{\"role\": \"user\", \"content\": [{\"type\": {}, \"text\": \"x\"}]}]",
                         "[{\"role\": \"user\", \"content\": [{\"type\": \"text\\u0000\", \"text\": \"x\"}]}]",
                         "[{\"role\": \"user\", \"content\": [{\"text\": \"a\\u0000b\"}]}]",
                         "[{\"role\": \"user\", \"content\": [\"x\"]}]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *m = json_loads(bad[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        ssmd_err err = {0};
        ck_assert_msg(srv_chat_apply(&chat, m, 1, "", &err) == NULL, "%s", bad[i]);
        ck_assert_int_eq(err.code, SSMD_EINVAL);
        ck_assert_msg(srv_chat_apply(NULL, m, 1, "", &err) == NULL, "default: %s", bad[i]);
        json_decref(m);
    }
    /* parts are joined ("type" may be left out) and a null content is
     * empty, for both templates */
    json_t *m = json_loads("[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"},"
                           " {\"text\": \"b\"}]}, {\"role\": \"assistant\", \"content\": null}]",
                           0, NULL);
    ssmd_err err = {0};
    char *text = srv_chat_apply(&chat, m, 0, "", &err);
    ck_assert_str_eq(text, "<|endoftext|><|user|>\nab<|endoftext|>\n<|assistant|>\n<|endoftext|>\n");
    free(text);
    text = srv_chat_apply(NULL, m, 0, "E", &err);
    ck_assert_str_eq(text, "<|user|>\nabE\n<|assistant|>\nE\n");
    free(text);
    json_decref(m);
    srv_chat_free(&chat);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("chat");
    TCase *tc = tcase_create("chat");
    tcase_add_test(tc, test_model_template);
    tcase_add_test(tc, test_fallbacks);
    tcase_add_test(tc, test_bad_messages);
    suite_add_tcase(s, tc);
    return s;
}
