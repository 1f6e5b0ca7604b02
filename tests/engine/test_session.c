/* test_session.c - the session table: ids, lookup, LRU eviction, TTL. */
#include <check.h>
#include <string.h>

#include "engine/session.h"

START_TEST(test_ids_random_and_valid)
{
    char a[ENG_SESSION_ID_HEX + 1], b[ENG_SESSION_ID_HEX + 1];
    ck_assert_int_eq(eng_session_new_id(a, NULL), SSMD_OK);
    ck_assert_int_eq(eng_session_new_id(b, NULL), SSMD_OK);
    ck_assert_int_eq(strlen(a), 32);
    ck_assert(eng_session_id_valid(a));
    ck_assert_str_ne(a, b);
    /* every hex digit position varies over many ids (not a counter) */
    int seen[ENG_SESSION_ID_HEX] = {0};
    for (int k = 0; k < 64; k++) {
        ck_assert_int_eq(eng_session_new_id(b, NULL), SSMD_OK);
        for (int i = 0; i < ENG_SESSION_ID_HEX; i++)
            seen[i] |= a[i] != b[i];
    }
    for (int i = 0; i < ENG_SESSION_ID_HEX; i++)
        ck_assert(seen[i]);
    ck_assert(!eng_session_id_valid("abc"));
    ck_assert(!eng_session_id_valid("0123456789ABCDEF0123456789abcdef"));
    ck_assert(!eng_session_id_valid("0123456789abcdef0123456789abcdef0"));
    ck_assert(!eng_session_id_valid(NULL));
}
END_TEST

START_TEST(test_create_find_remove)
{
    eng_session_table t;
    ck_assert_int_eq(eng_session_table_init(&t, 3, NULL), SSMD_OK);
    ssmd_err err = {0};
    int a = eng_session_create(&t, NULL, 10, NULL, &err);
    int b = eng_session_create(&t, NULL, 11, NULL, &err);
    ck_assert_int_ge(a, 0);
    ck_assert_int_ne(a, b);
    ck_assert_int_eq(t.n_live, 2);
    ck_assert_int_eq(eng_session_find(&t, t.entries[b].id, &err), b);
    ck_assert_int_eq(t.entries[a].pending, -1);
    char id[ENG_SESSION_ID_HEX + 1];
    memcpy(id, t.entries[a].id, sizeof id);
    eng_session_remove(&t, a);
    ck_assert_int_eq(t.n_live, 1);
    ck_assert_int_eq(eng_session_find(&t, id, &err), SSMD_ENOTFOUND);
    ck_assert_int_eq(err.code, SSMD_ENOTFOUND);
    ck_assert_int_eq(eng_session_find(&t, "garbage", &err), SSMD_ENOTFOUND);
    eng_session_table_free(&t);
}
END_TEST

START_TEST(test_lru_eviction_skips_busy)
{
    eng_session_table t;
    eng_session_table_init(&t, 3, NULL);
    int s0 = eng_session_create(&t, NULL, 1, NULL, NULL);
    int s1 = eng_session_create(&t, NULL, 2, NULL, NULL);
    int s2 = eng_session_create(&t, NULL, 3, NULL, NULL);
    t.entries[s1].last_used_s = 0.5; /* s1 least recently used */
    int ev = -2;
    int s3 = eng_session_create(&t, NULL, 4, &ev, NULL);
    ck_assert_int_eq(ev, s1);
    ck_assert_int_eq(s3, s1);
    ck_assert_int_eq(t.n_live, 3);
    /* busy sessions are never evicted */
    t.entries[s0].busy = 1;
    int s4 = eng_session_create(&t, NULL, 5, &ev, NULL);
    ck_assert_int_eq(ev, s2);
    ck_assert_int_eq(s4, s2);
    t.entries[s3].busy = 1;
    t.entries[s4].busy = 1;
    ssmd_err err = {0};
    ck_assert_int_eq(eng_session_create(&t, NULL, 6, &ev, &err), SSMD_EFULL);
    ck_assert_int_eq(ev, -1);
    eng_session_table_free(&t);
}
END_TEST

START_TEST(test_ttl)
{
    eng_session_table t;
    eng_session_table_init(&t, 4, NULL);
    int a = eng_session_create(&t, NULL, 100, NULL, NULL);
    int b = eng_session_create(&t, NULL, 105, NULL, NULL);
    int c = eng_session_create(&t, NULL, 100, NULL, NULL);
    t.entries[c].busy = 1;
    ck_assert_double_eq_tol(eng_session_next_expiry(&t, 101, 10), 9, 1e-9);
    ck_assert_int_eq(eng_session_expire(&t, 109, 10), 0);
    ck_assert_int_eq(eng_session_expire(&t, 111, 10), 1); /* a; c is busy */
    ck_assert(!t.entries[a].in_use);
    ck_assert(t.entries[b].in_use && t.entries[c].in_use);
    ck_assert_int_eq(eng_session_expire(&t, 1e9, 0), 0);   /* ttl 0: never */
    ck_assert_double_eq(eng_session_next_expiry(&t, 1e9, 0), -1);
    eng_session_table_free(&t);
}
END_TEST

START_TEST(test_chosen_id_and_gen)
{
    eng_session_table t;
    eng_session_table_init(&t, 2, NULL);
    ssmd_err err = {0};
    const char *id = "0123456789abcdef0123456789abcdef";
    int a = eng_session_create(&t, id, 1, NULL, &err);
    ck_assert_int_ge(a, 0);
    ck_assert_str_eq(t.entries[a].id, id);
    ck_assert_int_eq(eng_session_find(&t, id, NULL), a);
    ck_assert_int_eq(eng_session_create(&t, id, 2, NULL, &err), SSMD_ECONFLICT);
    ck_assert_ptr_nonnull(strstr(err.msg, id));
    ck_assert_int_eq(eng_session_create(&t, "0123ABCD", 2, NULL, &err), SSMD_EINVAL);
    ck_assert_int_eq(t.n_live, 1);
    int b = eng_session_create(&t, "", 3, NULL, &err); /* "" = a random id */
    ck_assert_int_ge(b, 0);
    ck_assert_str_ne(t.entries[b].id, id);
    /* every version tag is nonzero and they differ */
    ck_assert(t.entries[a].gen != 0 && t.entries[b].gen != 0);
    ck_assert(t.entries[a].gen != t.entries[b].gen);
    uint64_t g1 = eng_session_new_gen(), g2 = eng_session_new_gen();
    ck_assert(g1 != 0 && g1 != g2);
    eng_session_table_free(&t);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("session");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_ids_random_and_valid);
    tcase_add_test(tc, test_create_find_remove);
    tcase_add_test(tc, test_lru_eviction_skips_busy);
    tcase_add_test(tc, test_ttl);
    tcase_add_test(tc, test_chosen_id_and_gen);
    suite_add_tcase(s, tc);
    return s;
}
