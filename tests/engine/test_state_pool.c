/* test_state_pool.c - engine/state_pool.c on the cpu backend with a fixture
 * model: slots made zeroed, read/write/copy/zero touch one slot only, slot
 * pointers are slot_bytes apart and are where prefill writes, and a pool
 * too big for memory or of no slots is refused with a message. */
#include <check.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/model.h"
#include "engine/state_pool.h"

/* The ENOMEM test asks for terabytes: let ASan's allocator answer NULL, as
 * the C library does, instead of reporting the request as a bug. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static eng_model *open_model(void)
{
    eng_model_opts o;
    eng_model_opts_defaults(&o);
    o.backend_opts.threads = 1;
    eng_model *m = NULL;
    ssmd_err err = {0};
    ck_assert_msg(eng_model_open("tests/fixtures/mamba/untied_bias", &o, &m, &err) == SSMD_OK, "%s", err.msg);
    return m;
}

static int all_zero(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0.0f)
            return 0;
    return 1;
}

/* 1 if slot s, read back, equals want (NULL: all zero). */
static int slot_is(const eng_state_pool *p, int s, const float *want)
{
    size_t bytes = eng_state_pool_slot_bytes(p);
    float *got = malloc(bytes);
    eng_state_slot_read(p, s, got);
    int same = want ? !memcmp(got, want, bytes) : all_zero(got, bytes / sizeof(float));
    free(got);
    return same;
}

START_TEST(test_slots_zeroed_and_separate)
{
    eng_model *m = open_model();
    eng_state_pool *p = NULL;
    ssmd_err err = {0};
    ck_assert_int_eq(eng_state_pool_create(m, 3, &p, &err), SSMD_OK);
    ck_assert_int_eq(eng_state_pool_n_slots(p), 3);
    size_t bytes = eng_state_pool_slot_bytes(p), n = bytes / sizeof(float);
    ck_assert_uint_eq(bytes, eng_model_state_bytes(m));
    ck_assert_ptr_eq(eng_state_pool_model(p), m);
    float *pattern = malloc(bytes);
    for (size_t i = 0; i < n; i++)
        pattern[i] = (float)i + 0.5f;
    for (int s = 0; s < 3; s++) /* made zeroed */
        ck_assert_msg(slot_is(p, s, NULL), "slot %d not zero after create", s);
    eng_state_slot_write(p, 1, pattern);
    ck_assert(slot_is(p, 1, pattern));
    ck_assert(slot_is(p, 0, NULL) && slot_is(p, 2, NULL)); /* neighbours untouched */
    eng_state_slot_copy(p, 2, 1);
    ck_assert(slot_is(p, 2, pattern));
    eng_state_slot_copy(p, 2, 2); /* onto itself: unchanged */
    ck_assert(slot_is(p, 2, pattern));
    eng_state_slot_zero(p, 1);
    ck_assert(slot_is(p, 1, NULL));
    ck_assert(slot_is(p, 2, pattern)); /* zeroing 1 leaves 2 */
    free(pattern);
    eng_state_pool_destroy(p);
    eng_state_pool_destroy(NULL);
    eng_model_close(m);
}
END_TEST

/* Slot pointers are slot_bytes apart (cpu: host memory) and prefill of a
 * slot writes that slot alone. */
START_TEST(test_slot_pointers)
{
    eng_model *m = open_model();
    eng_state_pool *p = NULL;
    ssmd_err err = {0};
    ck_assert_int_eq(eng_state_pool_create(m, 3, &p, &err), SSMD_OK);
    size_t n = eng_state_pool_slot_bytes(p) / sizeof(float);
    for (int s = 1; s < 3; s++)
        ck_assert_ptr_eq(eng_state_slot_ptr(p, s), eng_state_slot_ptr(p, 0) + (size_t)s * n);
    const int32_t ids[] = {1, 2, 3, 4};
    ck_assert_int_eq(eng_model_prefill(m, p, 1, ids, 4, NULL, 0, &err), SSMD_OK);
    ck_assert(all_zero(eng_state_slot_ptr(p, 0), n));
    ck_assert(!all_zero(eng_state_slot_ptr(p, 1), n));
    ck_assert(all_zero(eng_state_slot_ptr(p, 2), n));
    ck_assert(slot_is(p, 1, eng_state_slot_ptr(p, 1))); /* read goes through the same slot */
    eng_state_pool_destroy(p);
    eng_model_close(m);
}
END_TEST

START_TEST(test_exhaustion)
{
    eng_model *m = open_model();
    eng_state_pool *p = NULL;
    ssmd_err err = {0};
    ck_assert_int_eq(eng_state_pool_create(m, 0, &p, &err), SSMD_EINVAL);
    ck_assert_ptr_null(p);
    /* INT_MAX slots: terabytes, more than any machine here holds.  ASan
     * warns on stderr as it returns NULL; that line would land inside the
     * summary line tests/run.sh counts, so stderr is muted meanwhile. */
    fflush(stderr);
    int saved = dup(2), null = open("/dev/null", O_WRONLY);
    dup2(null, 2);
    int rc = eng_state_pool_create(m, INT_MAX, &p, &err);
    dup2(saved, 2);
    close(saved);
    close(null);
    ck_assert_int_eq(rc, SSMD_ENOMEM);
    ck_assert_ptr_null(p);
    ck_assert_ptr_nonnull(strstr(err.msg, "--max-sessions"));
    /* a refused pool leaves the model usable for a pool that fits */
    ck_assert_int_eq(eng_state_pool_create(m, 1, &p, &err), SSMD_OK);
    eng_state_pool_destroy(p);
    eng_model_close(m);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("state_pool");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_slots_zeroed_and_separate);
    tcase_add_test(tc, test_slot_pointers);
    tcase_add_test(tc, test_exhaustion);
    suite_add_tcase(s, tc);
    return s;
}
