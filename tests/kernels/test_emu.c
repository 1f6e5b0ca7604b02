/* test_emu.c - the CPU emulation harness (kernels/emu) checked on its own:
 * a kernel with its barrier removed is caught once thread order is shuffled
 * (and would pass in plain index order, which is why the shuffle exists),
 * warp shuffles/votes and built-ins behave as CUDA documents, the order
 * really varies with the seed and repeats with it, and each strictness rule
 * (divergent barrier, deadlock, bad launch, unwritten shared memory, shuffle
 * over absent lanes) is reported. */
#include <check.h>
#include <math.h>
#include <string.h>

#include "kernels/emu/emu.h"
#include "kernels/emu/selftest.h"

/* Runs the shift kernel on n threads; returns how many outputs are wrong. */
static int shift_errors(int n, int with_barrier)
{
    float io[1024];
    for (int i = 0; i < n; i++)
        io[i] = (float)(i + 1);
    kc_selftest_shift(io, n, with_barrier);
    int bad = 0;
    for (int i = 0; i < n; i++)
        bad += io[i] != (float)i;
    return bad;
}

START_TEST(test_missing_barrier_is_caught)
{
    kc_emu_clear_error();
    kc_emu_set_shuffle(1);
    for (int seed = 1; seed <= 20; seed++) {
        kc_emu_seed((uint64_t)seed);
        ck_assert_int_eq(shift_errors(64, 1), 0);
        ck_assert_int_eq(shift_errors(1024, 1), 0);
    }
    int caught = 0;
    for (int seed = 1; seed <= 5; seed++) {
        kc_emu_seed((uint64_t)seed);
        caught += shift_errors(64, 0) > 0;
    }
    ck_assert_int_eq(caught, 5);
    /* In index order the broken kernel happens to work: the shuffle is what
     * exposes it. */
    kc_emu_set_shuffle(0);
    ck_assert_int_eq(shift_errors(64, 0), 0);
    kc_emu_set_shuffle(1);
    ck_assert_ptr_null(kc_emu_error());
}
END_TEST

START_TEST(test_warp_operations)
{
    int in[32], out[8 * 32];
    for (int l = 0; l < 32; l++)
        in[l] = 100 + l * 7;
    kc_emu_clear_error();
    kc_emu_seed(3);
    kc_selftest_warp(in, out);
    ck_assert_ptr_null(kc_emu_error());
    unsigned odd = 0;
    for (int l = 0; l < 32; l++)
        if (l & 1)
            odd |= 1u << l;
    for (int l = 0; l < 32; l++) {
        ck_assert_int_eq(out[0 * 32 + l], in[5]);
        ck_assert_int_eq(out[1 * 32 + l], in[l ^ 3]);
        ck_assert_int_eq(out[2 * 32 + l], l >= 2 ? in[l - 2] : in[l]);
        ck_assert_int_eq(out[3 * 32 + l], l + 7 < 32 ? in[l + 7] : in[l]);
        ck_assert_int_eq(out[4 * 32 + l], in[l ^ 1]);
        ck_assert_uint_eq((unsigned)out[5 * 32 + l], odd);
        ck_assert_int_eq(out[6 * 32 + l], 1);
        ck_assert_int_eq(out[7 * 32 + l], 1);
    }
}
END_TEST

START_TEST(test_builtins_and_block_order)
{
    enum { BX = 12, BY = 5, GX = 7, NT = BX * BY };
    int ids[GX * NT], sums[GX];
    kc_emu_clear_error();
    kc_emu_seed(11);
    kc_selftest_builtins(BX, BY, GX, ids, sums);
    ck_assert_ptr_null(kc_emu_error());
    for (int b = 0; b < GX; b++) {
        ck_assert_int_eq(sums[b], NT * (NT - 1) / 2 + 1000 * GX);
        for (int t = 0; t < NT; t++)
            ck_assert_int_eq(ids[b * NT + t], t);
    }
}
END_TEST

/* The interleaving depends on the seed and only on it. */
START_TEST(test_order_follows_seed)
{
    uint64_t h[3];
    const uint64_t seeds[3] = {5, 5, 6};
    for (int k = 0; k < 3; k++) {
        kc_emu_seed(seeds[k]);
        kc_emu_stats_reset();
        shift_errors(256, 1);
        kc_emu_stats st;
        kc_emu_stats_get(&st);
        ck_assert_uint_eq(st.block_barriers, 1);
        ck_assert_uint_eq(st.switches, 2 * 256);
        h[k] = st.order_hash;
    }
    ck_assert(h[0] == h[1]);
    ck_assert(h[0] != h[2]);
}
END_TEST

START_TEST(test_strictness)
{
    static const char *const expect[] = {"already returned", "deadlock", "invalid launch",
                                         NULL, "names lanes beyond"};
    float out[64];
    for (int which = 0; which < 5; which++) {
        kc_emu_clear_error();
        memset(out, 0, sizeof out);
        kc_selftest_bad(which, out);
        const char *e = kc_emu_error();
        if (!expect[which]) {
            ck_assert_ptr_null(e);
            ck_assert_msg(isnan(out[0]), "unwritten shared memory read as %g", out[0]);
            continue;
        }
        ck_assert_msg(e && strstr(e, expect[which]), "case %d: %s", which, e ? e : "(no error)");
    }
    kc_emu_clear_error();
    ck_assert_ptr_null(kc_emu_error());
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("emu");
    TCase *tc = tcase_create("harness");
    tcase_add_test(tc, test_missing_barrier_is_caught);
    tcase_add_test(tc, test_warp_operations);
    tcase_add_test(tc, test_builtins_and_block_order);
    tcase_add_test(tc, test_order_follows_seed);
    tcase_add_test(tc, test_strictness);
    suite_add_tcase(s, tc);
    return s;
}
