/* test_threadpool.c - the fork-join pool: every index of every job runs
 * exactly once and before the job returns, whether its worker or the
 * caller ran it; more threads than cores (so workers are often late and
 * their shares are taken by the caller); jobs too small to split.
 * (eng_split_range is covered by test_cpu_kernels.) */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cpu/threadpool.h"

enum { MAX_IDX = 16, JOBS = 20000 };

typedef struct tally {
    atomic_int runs[MAX_IDX]; /* shares run, per index, this job */
    atomic_int total;
    pthread_t caller;
    atomic_int on_caller;     /* shares other than 0 the caller ran */
    atomic_int wrong_n;
} tally;

static void count_share(void *arg, int idx, int n)
{
    tally *t = arg;
    if (idx < 0 || idx >= MAX_IDX) {
        atomic_fetch_add(&t->wrong_n, 1);
        return;
    }
    atomic_fetch_add(&t->runs[idx], 1);
    atomic_fetch_add(&t->total, 1);
    if (idx != 0 && pthread_equal(pthread_self(), t->caller))
        atomic_fetch_add(&t->on_caller, 1);
    (void)n;
}

START_TEST(test_every_share_once)
{
    const int n = 1 + _i * 3; /* 1, 4, 7 threads on a 2-core machine */
    eng_threadpool *p = eng_threadpool_create(n);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(eng_threadpool_size(p), n);
    tally t = {.caller = pthread_self()};
    int stolen = 0;
    for (int job = 0; job < JOBS; job++) {
        for (int i = 0; i < MAX_IDX; i++)
            atomic_store(&t.runs[i], 0);
        atomic_store(&t.on_caller, 0);
        eng_threadpool_run(p, count_share, &t);
        for (int i = 0; i < MAX_IDX; i++)
            ck_assert_msg(atomic_load(&t.runs[i]) == (i < n), "job %d: index %d ran %d times", job,
                          i, atomic_load(&t.runs[i]));
        stolen += atomic_load(&t.on_caller);
    }
    ck_assert_int_eq(atomic_load(&t.total), JOBS * n);
    ck_assert_int_eq(atomic_load(&t.wrong_n), 0);
    /* not asserted (scheduling decides), but worth seeing in the log */
    if (n > 1)
        fprintf(stderr, "threadpool %d threads: the caller ran %d of %d worker shares\n", n,
                stolen, JOBS * (n - 1));
    eng_threadpool_destroy(p);
}
END_TEST

/* A share that is slow on one index: the others must not be lost or run
 * twice while it holds the job open. */
static void slow_share(void *arg, int idx, int n)
{
    if (idx == n - 1)
        for (volatile int k = 0; k < 20000; k++)
            ;
    count_share(arg, idx, n);
}

START_TEST(test_slow_share)
{
    eng_threadpool *p = eng_threadpool_create(3);
    tally t = {.caller = pthread_self()};
    for (int job = 0; job < 2000; job++) {
        for (int i = 0; i < MAX_IDX; i++)
            atomic_store(&t.runs[i], 0);
        eng_threadpool_run(p, slow_share, &t);
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(atomic_load(&t.runs[i]), 1);
    }
    eng_threadpool_destroy(p);
}
END_TEST

START_TEST(test_small_job_serial)
{
    eng_threadpool *p = eng_threadpool_create(4);
    tally t = {.caller = pthread_self()};
    eng_threadpool_run_sized(p, count_share, &t, 10.0);
    ck_assert_int_eq(atomic_load(&t.total), 1); /* fn(arg, 0, 1) alone */
    ck_assert_int_eq(atomic_load(&t.runs[0]), 1);
    eng_threadpool_destroy(p);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("threadpool");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_every_share_once, 0, 3);
    tcase_add_test(tc, test_slow_share);
    tcase_add_test(tc, test_small_job_serial);
    suite_add_tcase(s, tc);
    return s;
}
