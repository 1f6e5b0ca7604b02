/* test_stop.c - eng_stop against a byte-at-a-time reference written here:
 * the output is the text up to the first stop string to complete (cut
 * before the longest one completing there), whatever the piece boundaries.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/text/stop.h"

/* Reference: scans text end by end; returns the emitted length and sets
 * *stopped.  Independent of eng_stop: no holding, no buffers. */
static size_t ref_stop(const char *const *stops, int n, const char *text, size_t len, int *stopped)
{
    for (size_t end = 1; end <= len; end++) {
        size_t best = 0;
        for (int i = 0; i < n; i++) {
            size_t l = strlen(stops[i]);
            if (l <= end && memcmp(text + end - l, stops[i], l) == 0 && l > best)
                best = l;
        }
        if (best) {
            *stopped = 1;
            return end - best;
        }
    }
    *stopped = 0;
    return len;
}

/* Feeds text in pieces of the given sizes (cycled), then flushes; returns
 * the concatenated output (caller frees) and its length. */
static char *run_pieces(eng_stop *s, const char *text, size_t len, const size_t *sizes, int n_sizes,
                        size_t *out_len)
{
    char *all = malloc(len + ENG_STOP_LEN_MAX + 1);
    char *out = malloc(len + ENG_STOP_LEN_MAX);
    size_t n_all = 0, pos = 0;
    for (int k = 0; pos < len; k++) {
        size_t sz = sizes[k % n_sizes];
        if (sz > len - pos)
            sz = len - pos;
        size_t got = eng_stop_feed(s, text + pos, sz, out);
        ck_assert_uint_le(got, sz + ENG_STOP_LEN_MAX);
        memcpy(all + n_all, out, got);
        n_all += got;
        pos += sz;
        if (s->stopped)
            ck_assert_uint_eq(eng_stop_feed(s, "zzz", 3, out), 0); /* nothing after a stop */
    }
    n_all += eng_stop_flush(s, all + n_all);
    all[n_all] = '\0';
    free(out);
    *out_len = n_all;
    return all;
}

static void check_case(const char *const *stops, int n, const char *text, const char *want,
                       int want_stopped)
{
    const size_t one[] = {1}, whole[] = {100000}, mixed[] = {3, 1, 2, 5, 1, 7};
    const size_t *plans[] = {one, whole, mixed};
    const int plan_n[] = {1, 1, 6};
    for (int p = 0; p < 3; p++) {
        eng_stop s;
        ck_assert_int_eq(eng_stop_init(&s, stops, n, NULL), SSMD_OK);
        size_t got_len;
        char *got = run_pieces(&s, text, strlen(text), plans[p], plan_n[p], &got_len);
        ck_assert_msg(got_len == strlen(want) && memcmp(got, want, got_len) == 0,
                      "text '%s' plan %d: got '%s' want '%s'", text, p, got, want);
        ck_assert_int_eq(s.stopped, want_stopped);
        free(got);
    }
}

START_TEST(test_init_limits)
{
    ssmd_err err;
    eng_stop s;
    const char *nine[9] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
    ck_assert_int_eq(eng_stop_init(&s, nine, 9, &err), SSMD_EINVAL);
    ck_assert(strstr(err.msg, "8") != NULL);
    ck_assert_int_eq(eng_stop_init(&s, nine, 8, &err), SSMD_OK);
    ck_assert_int_eq(eng_stop_init(&s, nine, -1, &err), SSMD_EINVAL);
    const char *empty[2] = {"ok", ""};
    ck_assert_int_eq(eng_stop_init(&s, empty, 2, &err), SSMD_EINVAL);
    ck_assert(strstr(err.msg, "empty") != NULL);
    char longest[ENG_STOP_LEN_MAX + 2];
    memset(longest, 'x', sizeof longest);
    longest[ENG_STOP_LEN_MAX + 1] = '\0';
    const char *too_long[1] = {longest};
    ck_assert_int_eq(eng_stop_init(&s, too_long, 1, &err), SSMD_EINVAL);
    longest[ENG_STOP_LEN_MAX] = '\0';
    ck_assert_int_eq(eng_stop_init(&s, too_long, 1, &err), SSMD_OK);
    ck_assert_int_eq(eng_stop_init(&s, NULL, 0, &err), SSMD_OK);
}
END_TEST

START_TEST(test_no_stops_pass_through)
{
    eng_stop s;
    ck_assert_int_eq(eng_stop_init(&s, NULL, 0, NULL), SSMD_OK);
    char out[64];
    ck_assert_uint_eq(eng_stop_feed(&s, "hello", 5, out), 5);
    ck_assert(memcmp(out, "hello", 5) == 0);
    ck_assert_uint_eq(eng_stop_feed(&s, NULL, 0, out), 0);
    ck_assert_uint_eq(eng_stop_flush(&s, out), 0);
    ck_assert(!s.stopped);
}
END_TEST

START_TEST(test_basic_and_split)
{
    const char *st[1] = {"\n\n"};
    check_case(st, 1, "Hello world.\n\nBye", "Hello world.", 1);
    const char *st2[1] = {"STOP"};
    check_case(st2, 1, "abcSTOPdef", "abc", 1);
    check_case(st2, 1, "STOP", "", 1);
    check_case(st2, 1, "abcSTO", "abcSTO", 0); /* released at flush */
    check_case(st2, 1, "xSTxSTOxSTOP!", "xSTxSTOx", 1);
}
END_TEST

START_TEST(test_holds_exactly)
{
    const char *st[1] = {"abc"};
    eng_stop s;
    char out[64];
    ck_assert_int_eq(eng_stop_init(&s, st, 1, NULL), SSMD_OK);
    /* "ab" may start "abc": held; "xyz" is released at once */
    ck_assert_uint_eq(eng_stop_feed(&s, "xyzab", 5, out), 3);
    ck_assert(memcmp(out, "xyz", 3) == 0);
    ck_assert_uint_eq(s.n_held, 2);
    /* "abd" cannot start it any more: all released, nothing held */
    ck_assert_uint_eq(eng_stop_feed(&s, "d", 1, out), 3);
    ck_assert(memcmp(out, "abd", 3) == 0);
    ck_assert_uint_eq(s.n_held, 0);
    /* 'a', then "ab" are held; "abb" is no prefix of "abc" and goes */
    ck_assert_uint_eq(eng_stop_feed(&s, "a", 1, out), 0);
    ck_assert_uint_eq(eng_stop_feed(&s, "b", 1, out), 0);
    ck_assert_uint_eq(s.n_held, 2);
    ck_assert_uint_eq(eng_stop_feed(&s, "b", 1, out), 3);
    ck_assert(memcmp(out, "abb", 3) == 0);
    ck_assert_uint_eq(eng_stop_feed(&s, "b", 1, out), 1);
    /* flush gives back what is held, once */
    ck_assert_uint_eq(eng_stop_feed(&s, "xa", 2, out), 1);
    ck_assert_uint_eq(eng_stop_flush(&s, out), 1);
    ck_assert(out[0] == 'a');
    ck_assert_uint_eq(eng_stop_flush(&s, out), 0);
    ck_assert(!s.stopped);
}
END_TEST

START_TEST(test_overlap)
{
    const char *st[1] = {"abc"};
    check_case(st, 1, "ababc", "ab", 1);
    check_case(st, 1, "aababcx", "aab", 1);
    check_case(st, 1, "abababab", "abababab", 0);
    const char *aa[1] = {"aab"};
    check_case(aa, 1, "aaaab", "aa", 1);
    const char *self[1] = {"abab"};
    check_case(self, 1, "aabababx", "a", 1);
}
END_TEST

START_TEST(test_multiple)
{
    /* the first to complete wins: "lo" ends at 5, "world" at 11 */
    const char *st[2] = {"world", "lo"};
    check_case(st, 2, "hello world", "hel", 1);
    const char *st2[3] = {"xyz", "rld", "hello"};
    check_case(st2, 3, "say hello world", "say ", 1);
    /* one stop inside another: "bc" completes before "abcd" could */
    const char *nest[2] = {"abcd", "bc"};
    check_case(nest, 2, "zabcd", "za", 1);
    /* both end at the same byte: cut before the longer one */
    const char *suffix[2] = {"c", "abc"};
    check_case(suffix, 2, "zzabc", "zz", 1);
    /* a held prefix of one string, completed as another */
    const char *two[2] = {"abcdef", "cx"};
    check_case(two, 2, "abcx", "ab", 1);
}
END_TEST

static int utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++)
            if (((unsigned char)s[i + k] >> 6) != 2)
                return 0;
        i += len;
    }
    return 1;
}

START_TEST(test_utf8)
{
    const char *st[1] = {"世界"};
    check_case(st, 1, "你好世界!", "你好", 1);
    check_case(st, 1, "世世界", "世", 1);
    const char *accent[2] = {"é", "€"};
    check_case(accent, 2, "cafe café", "cafe caf", 1);
    check_case(accent, 2, "price: 5€", "price: 5", 1);

    /* fed character by character, every released chunk is whole UTF-8:
     * a held tail always starts where a stop string starts */
    const char *text = "日本語の世の中、世界は広い";
    eng_stop s;
    ck_assert_int_eq(eng_stop_init(&s, st, 1, NULL), SSMD_OK);
    char out[64], all[128];
    size_t n_all = 0;
    for (size_t i = 0; text[i] && !s.stopped;) {
        size_t len = 1;
        while (((unsigned char)text[i + len] >> 6) == 2)
            len++;
        size_t got = eng_stop_feed(&s, text + i, len, out);
        ck_assert(utf8_valid(out, got));
        memcpy(all + n_all, out, got);
        n_all += got;
        i += len;
    }
    all[n_all] = '\0';
    ck_assert_str_eq(all, "日本語の世の中、");
    ck_assert(s.stopped);
}
END_TEST

START_TEST(test_longest_stop)
{
    char stop[ENG_STOP_LEN_MAX + 1];
    for (int i = 0; i < ENG_STOP_LEN_MAX; i++)
        stop[i] = (char)('a' + i % 7);
    stop[ENG_STOP_LEN_MAX] = '\0';
    const char *st[1] = {stop};
    char text[3 * ENG_STOP_LEN_MAX + 8];
    /* almost the stop (last byte wrong), then the stop */
    memcpy(text, "pre", 3);
    memcpy(text + 3, stop, ENG_STOP_LEN_MAX - 1);
    text[3 + ENG_STOP_LEN_MAX - 1] = '#';
    memcpy(text + 3 + ENG_STOP_LEN_MAX, stop, ENG_STOP_LEN_MAX);
    strcpy(text + 3 + 2 * ENG_STOP_LEN_MAX, "post");
    char want[ENG_STOP_LEN_MAX + 8];
    memcpy(want, text, 3 + ENG_STOP_LEN_MAX);
    want[3 + ENG_STOP_LEN_MAX] = '\0';
    check_case(st, 1, text, want, 1);
}
END_TEST

/* Random texts over a small alphabet, random stop strings and random
 * piece sizes, against the reference. */
START_TEST(test_random_vs_reference)
{
    uint64_t x = 88172645463325252ULL;
#define RND() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
    for (int iter = 0; iter < 3000; iter++) {
        char stops_buf[4][8];
        const char *stops[4];
        int n = 1 + (int)(RND() % 4);
        for (int i = 0; i < n; i++) {
            int l = 1 + (int)(RND() % 5);
            for (int k = 0; k < l; k++)
                stops_buf[i][k] = (char)('a' + RND() % 3);
            stops_buf[i][l] = '\0';
            stops[i] = stops_buf[i];
        }
        char text[64];
        size_t len = RND() % 40;
        for (size_t k = 0; k < len; k++)
            text[k] = (char)('a' + RND() % 4);
        text[len] = '\0';
        size_t sizes[5];
        for (int k = 0; k < 5; k++)
            sizes[k] = RND() % 6; /* 0-byte pieces too */
        sizes[0] += 1;            /* progress is guaranteed */

        int want_stopped;
        size_t want = ref_stop(stops, n, text, len, &want_stopped);
        eng_stop s;
        ck_assert_int_eq(eng_stop_init(&s, stops, n, NULL), SSMD_OK);
        size_t got_len;
        char *got = run_pieces(&s, text, len, sizes, 5, &got_len);
        if (got_len != want || memcmp(got, text, want) != 0 || s.stopped != want_stopped)
            ck_abort_msg("text '%s' stops %d (%s...): got '%s' want %zu bytes", text, n, stops[0],
                         got, want);
        free(got);
    }
#undef RND
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("stop");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_init_limits);
    tcase_add_test(tc, test_no_stops_pass_through);
    tcase_add_test(tc, test_basic_and_split);
    tcase_add_test(tc, test_holds_exactly);
    tcase_add_test(tc, test_overlap);
    tcase_add_test(tc, test_multiple);
    tcase_add_test(tc, test_utf8);
    tcase_add_test(tc, test_longest_stop);
    tcase_add_test(tc, test_random_vs_reference);
    suite_add_tcase(s, tc);
    return s;
}
