/* test_prefill_cost.c - the prefill cost model the scheduler's time ratio
 * plans with: it recovers a known per-chunk and per-token cost from
 * iterations of mixed shapes, follows a change of load, falls back to a
 * cost per token when the samples cannot tell the two apart, and a planned
 * iteration never exceeds its allowance. */
#include <check.h>
#include <math.h>

#include "engine/prefill_cost.h"

/* A machine where a pass costs 400 us plus 20 us a token. */
static double cost_of(int chunks, long tokens) { return 400e3 * chunks + 20e3 * (double)tokens; }

START_TEST(test_recovers_both_costs)
{
    eng_prefill_cost c = {0};
    const int chunks[] = {1, 3, 1, 2, 1, 4};
    const long tokens[] = {16, 48, 256, 100, 40, 256};
    for (int r = 0; r < 5; r++)
        for (int i = 0; i < 6; i++)
            eng_prefill_cost_add(&c, chunks[i], tokens[i], cost_of(chunks[i], tokens[i]));
    ck_assert_msg(fabs(c.per_chunk_ns - 400e3) < 1, "per chunk %g", c.per_chunk_ns);
    ck_assert_msg(fabs(c.per_token_ns - 20e3) < 0.01, "per token %g", c.per_token_ns);
}
END_TEST

START_TEST(test_follows_the_load)
{
    eng_prefill_cost c = {0};
    for (int i = 0; i < 20; i++)
        eng_prefill_cost_add(&c, 1 + i % 3, 16 + 37 * i, cost_of(1 + i % 3, 16 + 37 * i));
    for (int i = 0; i < 60; i++) /* the machine gets twice as slow */
        eng_prefill_cost_add(&c, 1 + i % 3, 16 + 37 * i, 2 * cost_of(1 + i % 3, 16 + 37 * i));
    /* what counts is the cost it predicts for an iteration like those */
    const double want = 2 * cost_of(1, 100), got = c.per_chunk_ns + 100 * c.per_token_ns;
    ck_assert_msg(fabs(got - want) < 0.02 * want, "predicted %g for %g", got, want);
    ck_assert_msg(fabs(c.per_token_ns - 40e3) < 400, "per token %g", c.per_token_ns);
}
END_TEST

START_TEST(test_alike_samples_fall_back)
{
    eng_prefill_cost c = {0};
    for (int i = 0; i < 8; i++) /* always one chunk of 100: no way to split */
        eng_prefill_cost_add(&c, 1, 100, 2.4e6);
    ck_assert(c.per_chunk_ns == 0);
    ck_assert_msg(fabs(c.per_token_ns - 24e3) < 1e-6, "per token %g", c.per_token_ns);
    eng_prefill_cost_add(&c, 0, 10, 1e6); /* nonsense samples are ignored */
    eng_prefill_cost_add(&c, 1, 0, 1e6);
    eng_prefill_cost_add(&c, 1, 10, NAN);
    ck_assert_msg(fabs(c.per_token_ns - 24e3) < 1e-6, "per token %g", c.per_token_ns);
}
END_TEST

START_TEST(test_take_stays_within_allowance)
{
    eng_prefill_cost c = {0};
    double allowance = 1e6;
    ck_assert_int_eq(eng_prefill_cost_take(&c, &allowance, 77), 77); /* no fit yet */
    ck_assert(allowance == 1e6);
    for (int i = 0; i < 12; i++)
        eng_prefill_cost_add(&c, 1 + i % 2, 10 + 20 * i, cost_of(1 + i % 2, 10 + 20 * i));
    /* 2 ms: the first chunk pays 400 us and takes 80 tokens ... */
    allowance = 2e6;
    long first = eng_prefill_cost_take(&c, &allowance, 1000);
    ck_assert_int_eq(first, 80);
    ck_assert_msg(fabs(allowance) < 1e3, "left %g", allowance);
    /* ... and then nothing fits, not even the second chunk's overhead */
    ck_assert_int_eq(eng_prefill_cost_take(&c, &allowance, 1000), 0);
    /* a chunk that wants less leaves the rest for the next one */
    allowance = 2e6;
    ck_assert_int_eq(eng_prefill_cost_take(&c, &allowance, 10), 10);
    long second = eng_prefill_cost_take(&c, &allowance, 1000);
    ck_assert_int_eq(second, 50); /* 2 ms - 2 x 400 us - 10 x 20 us = 50 x 20 us */
    /* unlimited time: what is wanted */
    allowance = INFINITY;
    ck_assert_int_eq(eng_prefill_cost_take(&c, &allowance, 4000), 4000);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("prefill_cost");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_recovers_both_costs);
    tcase_add_test(tc, test_follows_the_load);
    tcase_add_test(tc, test_alike_samples_fall_back);
    tcase_add_test(tc, test_take_stays_within_allowance);
    suite_add_tcase(s, tc);
    return s;
}
