/* test_mamba1.c - the Mamba-1 forward against transformers' reference
 * fixtures (tests/fixtures/mamba/, made by gen_mamba.py), and the
 * equivalences the engine promises: prefill = token-by-token decode,
 * prefill in pieces = prefill at once, batched decode = separate decodes,
 * batched prefill of several sequences = each alone. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"
#include "engine/state_pool.h"
#include "tests/models/reference.h"

/* falcon_tiny: Falcon-Mamba (gen_falcon_mamba.py), the family's variant. */
static const char *const fixtures[] = {"tiny_auto", "untied_bias", "bf16", "original_f16",
                                       "falcon_tiny"};
enum { N_FIXTURES = 5 };

static eng_model *open_fixture(const char *name, int threads, int max_batch)
{
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/mamba/%s", name);
    return ref_open(dir, threads, max_batch);
}

/* The reference rows and greedy tokens (ref_check_matches), at 1 and 2
 * threads, at every kernel level. */
START_TEST(test_matches_transformers)
{
    const char *name = fixtures[_i % N_FIXTURES];
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/mamba/%s/expected.json", name);
    ref_use_level(_i / (2 * N_FIXTURES));
    eng_model *m = open_fixture(name, 1 + _i / N_FIXTURES % 2, 4);
    ref_check_matches(m, path, name);
    eng_model_close(m);
}
END_TEST

/* Long random sequence (crossing the 512-token prefill chunk): prefill at
 * once, in two uneven pieces, and token by token all agree. */
START_TEST(test_prefill_equivalences)
{
    ref_use_level(_i / N_FIXTURES);
    eng_model *m = open_fixture(fixtures[_i % N_FIXTURES], 2, 4);
    ref_check_prefill_equivalences(m, 700, 333);
    eng_model_close(m);
}
END_TEST

/* B sequences decoded together (slots out of order, B above the 4-row
 * kernel tile and the BLAS threshold) = each decoded alone. */
START_TEST(test_batched_decode_equals_single)
{
    ref_use_level(_i / N_FIXTURES);
    eng_model *m = open_fixture(fixtures[_i % N_FIXTURES], 2, 16);
    ref_check_batched_decode(m, 11, 5);
    eng_model_close(m);
}
END_TEST

/* Several sequences prefilled in one batched pass = each alone. */
START_TEST(test_prefill_multi_equals_single)
{
    ref_use_level(_i / N_FIXTURES);
    eng_model *m = open_fixture(fixtures[_i % N_FIXTURES], 2, 4);
    ref_check_prefill_multi(m);
    eng_model_close(m);
}
END_TEST

/* Bad input is refused with SSMD_EINVAL and leaves every state as it was. */
START_TEST(test_bad_input_changes_nothing)
{
    eng_model *m = open_fixture("tiny_auto", 1, 4);
    eng_state_pool *pool;
    ssmd_err err;
    ck_assert_int_eq(eng_state_pool_create(m, 2, &pool, &err), 0);
    int32_t good[3] = {1, 2, 3}, bad[3] = {1, 101, 3}, slot = 0, slots2[2] = {1, 1};
    ck_assert_int_eq(eng_model_prefill(m, pool, 0, good, 3, NULL, 0, &err), 0);
    eng_state_slot_copy(pool, 1, 0);
    ck_assert_int_eq(eng_model_prefill(m, pool, 0, bad, 3, NULL, 0, &err), SSMD_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "101"));
    ck_assert_int_eq(eng_model_decode(m, pool, &slot, &bad[1], 1, NULL, &err), SSMD_EINVAL);
    ck_assert_int_eq(eng_model_decode(m, pool, slots2, good, 2, NULL, &err), SSMD_EINVAL);
    ck_assert_int_eq(eng_model_prefill(m, pool, 5, good, 3, NULL, 0, &err), SSMD_EINVAL);
    assert_states_close(pool, 0, 1, 0.0);
    eng_state_pool_destroy(pool);
    eng_model_close(m);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("mamba1");
    TCase *tc = tcase_create("reference");
    tcase_set_timeout(tc, 300);
    const int levels = ref_n_levels();
    tcase_add_loop_test(tc, test_matches_transformers, 0, 2 * N_FIXTURES * levels);
    tcase_add_loop_test(tc, test_prefill_equivalences, 0, N_FIXTURES * levels);
    tcase_add_loop_test(tc, test_batched_decode_equals_single, 0, N_FIXTURES * levels);
    tcase_add_loop_test(tc, test_prefill_multi_equals_single, 0, N_FIXTURES * levels);
    tcase_add_test(tc, test_bad_input_changes_nothing);
    suite_add_tcase(s, tc);
    return s;
}
