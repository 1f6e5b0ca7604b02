/* test_sequence.c - engine/sequence.c, the per-token step the scheduler and
 * `ssmd generate` share: greedy picks from crafted logits, the text each
 * step releases through detok and the stop strings, and the finish reasons
 * (stop string, EOS without text, max_tokens), with the held-back tail
 * released by eng_seq_finish.  The fixture tokenizer maps id k < 97 to the
 * one byte k + 31 ('$' is 5). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sequence.h"

static eng_tokenizer *tok;
static int n_vocab;

static void setup(void)
{
    ssmd_err err = {0};
    ck_assert_int_eq(eng_tokenizer_load("tests/fixtures/tokenizer/tokenizer.json", &tok, &err), SSMD_OK);
    n_vocab = 3008;
}

static void teardown(void) { eng_tokenizer_free(tok); }

static void init(eng_seq *q, const char *stop, int max_tokens, int eos_id)
{
    eng_sampling sp;
    eng_sampling_defaults(&sp);
    sp.temperature = 0;
    const char *stops[1] = {stop};
    eng_seq_params p = {.sampling = &sp, .n_vocab = n_vocab, .tok = tok, .stops = stops,
                        .n_stop = stop ? 1 : 0, .max_tokens = max_tokens, .eos_id = eos_id};
    ssmd_err err = {0};
    ck_assert_int_eq(eng_seq_init(q, &p, &err), SSMD_OK);
    const int32_t prompt[] = {5, 7};
    eng_seq_push_history(q, prompt, 2);
}

/* One step whose logits make `byte` the greedy pick. */
static eng_finish step_byte(eng_seq *q, char byte)
{
    float *logits = calloc((size_t)n_vocab, sizeof *logits);
    logits[byte - 31] = 10.0f;
    eng_finish f = eng_seq_next(q, logits, NULL);
    ck_assert_int_eq(q->last, byte - 31);
    free(logits);
    return f;
}

START_TEST(test_stop_string_cuts_text)
{
    eng_seq q;
    init(&q, "cd", 10, -1);
    ck_assert_int_eq(step_byte(&q, 'a'), ENG_FINISH_NONE);
    ck_assert_str_eq(q.text, "a");
    ck_assert_int_eq(step_byte(&q, 'c'), ENG_FINISH_NONE);
    ck_assert_str_eq(q.text, ""); /* 'c' may begin the stop string: held */
    ck_assert_int_eq(step_byte(&q, 'd'), ENG_FINISH_STOP);
    ck_assert_str_eq(q.text, "");
    eng_seq_finish(&q);
    ck_assert_str_eq(q.text, ""); /* nothing after a stop string */
    ck_assert_int_eq(q.n_gen, 3);
    ck_assert_int_eq(q.n_history, 5); /* prompt + generated */
    eng_seq_close(&q);
}
END_TEST

START_TEST(test_length_and_held_tail)
{
    eng_seq q;
    init(&q, "xyz", 2, -1);
    ck_assert_int_eq(step_byte(&q, 'a'), ENG_FINISH_NONE);
    ck_assert_int_eq(step_byte(&q, 'x'), ENG_FINISH_LENGTH);
    ck_assert_str_eq(q.text, "");
    eng_seq_finish(&q); /* the held "x" is text after all */
    ck_assert_str_eq(q.text, "x");
    ck_assert_uint_eq(q.text_len, 1);
    eng_seq_close(&q);
}
END_TEST

START_TEST(test_eos_has_no_text)
{
    eng_seq q;
    init(&q, NULL, 10, 'e' - 31);
    ck_assert_int_eq(step_byte(&q, 'a'), ENG_FINISH_NONE);
    ck_assert_int_eq(step_byte(&q, 'e'), ENG_FINISH_STOP);
    ck_assert_str_eq(q.text, "");
    eng_seq_close(&q);
    init(&q, NULL, 10, -1); /* eos_id -1 (ignore_eos): just a token */
    ck_assert_int_eq(step_byte(&q, 'e'), ENG_FINISH_NONE);
    ck_assert_str_eq(q.text, "e");
    eng_seq_close(&q);
}
END_TEST

START_TEST(test_bad_params)
{
    eng_sampling sp;
    eng_sampling_defaults(&sp);
    const char *stops[1] = {""};
    eng_seq_params p = {.sampling = &sp, .n_vocab = n_vocab, .tok = tok, .stops = stops, .n_stop = 1,
                        .max_tokens = 1, .eos_id = -1};
    eng_seq q;
    ssmd_err err = {0};
    ck_assert_int_eq(eng_seq_init(&q, &p, &err), SSMD_EINVAL); /* empty stop string; nothing to close */
    sp.top_p = 0;
    p.n_stop = 0;
    ck_assert_int_eq(eng_seq_init(&q, &p, &err), SSMD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "top_p"));
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("sequence");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_stop_string_cuts_text);
    tcase_add_test(tc, test_length_and_held_tail);
    tcase_add_test(tc, test_eos_has_no_text);
    tcase_add_test(tc, test_bad_params);
    suite_add_tcase(s, tc);
    return s;
}
