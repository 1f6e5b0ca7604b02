/* test_unicode.c - engine/text/unicode.c: UTF-8 coding and validation against the
 * Unicode standard's own examples, character classes at known code points,
 * and NFC against Python's unicodedata (tests/fixtures/tokenizer/nfc.json,
 * written by tests/fixtures/gen_tokenizer.py) and UAX #15's examples.
 */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/text/unicode.h"

#define NFC_FIXTURE "tests/fixtures/tokenizer/nfc.json"

/* Check's assertions are slow (each marks a point); loops count failures. */
START_TEST(test_utf8_round_trip_all_scalars)
{
    unsigned char buf[4];
    size_t bad = 0;
    uint32_t first_bad = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        size_t n = eng_utf8_encode(cp, buf);
        int ok;
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            ok = n == 0;
        } else {
            size_t want = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            uint32_t back = 0, back2 = 0, dummy;
            size_t used = 0, used2 = 0;
            ok = n == want && eng_utf8_next(buf, n, &back, &used) == ENG_UTF8_STATUS_OK &&
                 used == n && back == cp && eng_utf8_decode_valid(buf, &back2) == n && back2 == cp;
            /* every proper prefix is a valid start, cut short */
            if (ok && n > 1)
                ok = eng_utf8_next(buf, n - 1, &dummy, &used2) == ENG_UTF8_STATUS_INCOMPLETE &&
                     used2 == n - 1;
        }
        if (!ok && bad++ == 0)
            first_bad = cp;
    }
    ck_assert_msg(bad == 0, "%zu code points fail, first U+%04X", bad, first_bad);
    ck_assert_uint_eq(eng_utf8_encode(0x110000, buf), 0);
}
END_TEST

START_TEST(test_utf8_known_encodings)
{
    /* RFC 3629 section 7 examples */
    static const struct {
        uint32_t cp;
        const char *utf8;
    } rows[] = {
        {0x41, "A"}, {0x391, "\xCE\x91"}, {0x2262, "\xE2\x89\xA2"}, {0xD55C, "\xED\x95\x9C"},
        {0x65E5, "\xE6\x97\xA5"}, {0x233B4, "\xF0\xA3\x8E\xB4"}, {0xFEFF, "\xEF\xBB\xBF"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        unsigned char buf[4];
        size_t n = eng_utf8_encode(rows[i].cp, buf);
        ck_assert_uint_eq(n, strlen(rows[i].utf8));
        ck_assert_int_eq(memcmp(buf, rows[i].utf8, n), 0);
    }
}
END_TEST

START_TEST(test_utf8_invalid_maximal_subparts)
{
    static const struct {
        const char *bytes;
        size_t len;
        eng_utf8_status st;
        size_t n;
    } rows[] = {
        {"\x80", 1, ENG_UTF8_STATUS_INVALID, 1},         /* lone continuation */
        {"\xC0\x80", 2, ENG_UTF8_STATUS_INVALID, 1},     /* overlong lead */
        {"\xC1\xBF", 2, ENG_UTF8_STATUS_INVALID, 1},
        {"\xE0\x80\x80", 3, ENG_UTF8_STATUS_INVALID, 1}, /* overlong 3-byte */
        {"\xE0\xA0", 2, ENG_UTF8_STATUS_INCOMPLETE, 2},
        {"\xED\xA0\x80", 3, ENG_UTF8_STATUS_INVALID, 1}, /* surrogate */
        {"\xED\x9F\xBF", 3, ENG_UTF8_STATUS_OK, 3},      /* U+D7FF */
        {"\xF0\x8F\xBF\xBF", 4, ENG_UTF8_STATUS_INVALID, 1},
        {"\xF0\x90\x80", 3, ENG_UTF8_STATUS_INCOMPLETE, 3},
        {"\xF0\x90\x80\x41", 4, ENG_UTF8_STATUS_INVALID, 3},
        {"\xF4\x8F\xBF\xBF", 4, ENG_UTF8_STATUS_OK, 4},  /* U+10FFFF */
        {"\xF4\x90\x80\x80", 4, ENG_UTF8_STATUS_INVALID, 1},
        {"\xF5\x80", 2, ENG_UTF8_STATUS_INVALID, 1},
        {"\xFF", 1, ENG_UTF8_STATUS_INVALID, 1},
        {"\xE2\x82\x41", 3, ENG_UTF8_STATUS_INVALID, 2},
        {"\xE2", 1, ENG_UTF8_STATUS_INCOMPLETE, 1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint32_t cp;
        size_t n = 99;
        eng_utf8_status st = eng_utf8_next((const unsigned char *)rows[i].bytes, rows[i].len, &cp, &n);
        ck_assert_msg(st == rows[i].st && n == rows[i].n, "row %zu: status %d n %zu", i, st, n);
        ck_assert_int_eq(eng_utf8_valid(rows[i].bytes, rows[i].len), rows[i].st == ENG_UTF8_STATUS_OK);
    }
    ck_assert(eng_utf8_valid("", 0));
    ck_assert(eng_utf8_valid("a\0b", 3));
}
END_TEST

START_TEST(test_utf8_sanitize_standard_example)
{
    /* The Unicode Standard, chapter 3, Table 3-8 (U+FFFD for maximal subparts). */
    const unsigned char in[] = {0x61, 0xF1, 0x80, 0x80, 0xE1, 0x80, 0xC2, 0x62,
                                0x80, 0x63, 0x80, 0xBF, 0x64};
    const char *want = "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD"
                       "c\xEF\xBF\xBD\xEF\xBF\xBD" "d";
    char out[3 * sizeof in];
    size_t n = eng_utf8_sanitize(in, sizeof in, out);
    ck_assert_uint_eq(n, strlen(want));
    ck_assert_int_eq(memcmp(out, want, n), 0);
    /* an incomplete sequence at the end is one U+FFFD */
    n = eng_utf8_sanitize((const unsigned char *)"x\xF0\x9F\x98", 4, out);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(memcmp(out, "x\xEF\xBF\xBD", 4), 0);
}
END_TEST

START_TEST(test_classes)
{
    static const uint32_t letters[] = {'A', 'z', 0xAA, 0xE9, 0x416, 0x3B1, 0x5D0, 0x627, 0x4E2D,
                                       0x3042, 0xAC00, 0xFF71, 0x1D400, 0x20000, 0x2B0};
    static const uint32_t not_letters[] = {'1', '!', ' ', '_', 0x301, 0x1F600, 0x2764, 0xD7,
                                           0x3000, 0x663};
    static const uint32_t numbers[] = {'0', '9', 0x663, 0x967, 0x2167, 0xBD, 0xB2, 0xFF15,
                                       0x2460, 0x1D7CE};
    static const uint32_t spaces[] = {9, 10, 11, 12, 13, 0x20, 0x85, 0xA0, 0x1680, 0x2000,
                                      0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    static const uint32_t not_spaces[] = {0x1C, 0x1F, 0x200B, 0x180E, 0xFEFF, 'a', 0x7F};
    static const uint32_t words[] = {'_', 'a', '7', 0x301, 0x203F, 0x200D, 0x4E2D, 0x24B6, 0x663};
    static const uint32_t not_words[] = {'-', ' ', 0xB2, 0x1F600, '.', 0x2764};
    for (size_t i = 0; i < sizeof letters / sizeof *letters; i++)
        ck_assert_msg(eng_unicode_is_letter(letters[i]), "U+%04X letter", letters[i]);
    for (size_t i = 0; i < sizeof not_letters / sizeof *not_letters; i++)
        ck_assert_msg(!eng_unicode_is_letter(not_letters[i]), "U+%04X not letter", not_letters[i]);
    for (size_t i = 0; i < sizeof numbers / sizeof *numbers; i++) {
        ck_assert_msg(eng_unicode_is_number(numbers[i]), "U+%04X number", numbers[i]);
        ck_assert(!eng_unicode_is_letter(numbers[i]));
    }
    ck_assert(!eng_unicode_is_number('a'));
    for (size_t i = 0; i < sizeof spaces / sizeof *spaces; i++)
        ck_assert_msg(eng_unicode_is_space(spaces[i]), "U+%04X space", spaces[i]);
    for (size_t i = 0; i < sizeof not_spaces / sizeof *not_spaces; i++)
        ck_assert_msg(!eng_unicode_is_space(not_spaces[i]), "U+%04X not space", not_spaces[i]);
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        ck_assert_msg(eng_unicode_is_word(words[i]), "U+%04X word", words[i]);
    for (size_t i = 0; i < sizeof not_words / sizeof *not_words; i++)
        ck_assert_msg(!eng_unicode_is_word(not_words[i]), "U+%04X not word", not_words[i]);
}
END_TEST

START_TEST(test_ccc)
{
    ck_assert_int_eq(eng_unicode_ccc('a'), 0);
    ck_assert_int_eq(eng_unicode_ccc(0x301), 230);
    ck_assert_int_eq(eng_unicode_ccc(0x323), 220);
    ck_assert_int_eq(eng_unicode_ccc(0x345), 240);
    ck_assert_int_eq(eng_unicode_ccc(0x5B0), 10);
    ck_assert_int_eq(eng_unicode_ccc(0x94D), 9);
    ck_assert_int_eq(eng_unicode_ccc(0x1D165), 216);
    ck_assert_int_eq(eng_unicode_ccc(0x4E2D), 0);
}
END_TEST

/* 1 when NFC(in) == want; prints the difference otherwise. */
static int nfc_is(const char *in, size_t n, const char *want, size_t want_n, const char *what)
{
    size_t got_n;
    char *got = eng_unicode_nfc(in, n, &got_n);
    int ok = got_n == want_n && memcmp(got, want, want_n) == 0 && got[got_n] == 0;
    if (!ok) {
        fprintf(stderr, "NFC of %s: got", what);
        for (size_t i = 0; i < got_n; i++)
            fprintf(stderr, " %02X", (unsigned char)got[i]);
        fprintf(stderr, ", want");
        for (size_t i = 0; i < want_n; i++)
            fprintf(stderr, " %02X", (unsigned char)want[i]);
        fprintf(stderr, "\n");
    }
    free(got);
    return ok;
}

START_TEST(test_nfc_known)
{
    /* UAX #15 examples and the Hangul algorithm */
    static const char *rows[][2] = {
        {"e\xCC\x81", "\xC3\xA9"},                                  /* e + acute */
        {"\xE2\x84\xAB", "\xC3\x85"},                               /* angstrom sign */
        {"\xE2\x84\xA6", "\xCE\xA9"},                               /* ohm sign */
        {"D\xCC\x87\xCC\xA3", "\xE1\xB8\x8C\xCC\x87"},              /* D dot-above dot-below */
        {"\xE1\xB8\x8A\xCC\xA3", "\xE1\xB8\x8C\xCC\x87"},     /* D-dot-above dot-below */
        {"\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81"},   /* L V T -> syllable */
        {"\xEA\xB0\x80\xE1\x86\xA8", "\xEA\xB0\x81"},               /* LV + T */
        {"\xCC\x81" "a", "\xCC\x81" "a"},                           /* leading mark */
        {"\xE0\xA5\x98", "\xE0\xA4\x95\xE0\xA4\xBC"},               /* excluded composite */
        {"plain ascii", "plain ascii"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        ck_assert_msg(nfc_is(rows[i][0], strlen(rows[i][0]), rows[i][1], strlen(rows[i][1]),
                             rows[i][0]), "row %zu", i);
    ck_assert(eng_unicode_nfc_quick("caf\xC3\xA9 ok", 8));
    ck_assert(!eng_unicode_nfc_quick("cafe\xCC\x81", 6));
}
END_TEST

START_TEST(test_nfc_matches_python)
{
    json_error_t jerr;
    json_t *cases = json_load_file(NFC_FIXTURE, 0, &jerr);
    ck_assert_msg(cases != NULL, "%s: %s", NFC_FIXTURE, jerr.text);
    ck_assert_uint_gt(json_array_size(cases), 1000);
    size_t i, bad = 0;
    json_t *row;
    json_array_foreach(cases, i, row) {
        const json_t *in = json_array_get(row, 0), *want = json_array_get(row, 1);
        char what[48];
        snprintf(what, sizeof what, "nfc.json row %zu", i);
        bad += !nfc_is(json_string_value(in), json_string_length(in), json_string_value(want),
                       json_string_length(want), what);
    }
    json_decref(cases);
    ck_assert_msg(bad == 0, "%zu of the NFC cases differ from Python", bad);
}
END_TEST

/* The other three forms and the tables behind Lowercase and Punctuation,
 * on characters whose answers the Unicode data fixes. */
static void expect_form(const char *in, eng_unicode_form f, const char *want)
{
    size_t n = 0;
    char *got = eng_unicode_normalize(in, strlen(in), f, &n);
    ck_assert_msg(n == strlen(want) && memcmp(got, want, n) == 0, "form %d of \"%s\" is \"%s\"",
                  (int)f, in, got);
    free(got);
}

START_TEST(test_forms_lower_punct)
{
    expect_form("\xC3\xA9", ENG_UNICODE_FORM_NFD, "e\xCC\x81");           /* é */
    expect_form("\xEF\xAC\x81", ENG_UNICODE_FORM_NFD, "\xEF\xAC\x81");      /* ﬁ: compat only */
    expect_form("\xEF\xAC\x81", ENG_UNICODE_FORM_NFKD, "fi");
    expect_form("\xE2\x91\xA0x\xC2\xB2", ENG_UNICODE_FORM_NFKC, "1x2");     /* ①x² */
    expect_form("\xE1\xBA\x9B\xCC\xA3", ENG_UNICODE_FORM_NFKC, "\xE1\xB9\xA9"); /* ẛ̣ -> ṩ */
    expect_form("\xE1\xBA\x9B\xCC\xA3", ENG_UNICODE_FORM_NFKD, "s\xCC\xA3\xCC\x87");
    expect_form("\xEA\xB0\x80", ENG_UNICODE_FORM_NFKD, "\xE1\x84\x80\xE1\x85\xA1"); /* 가 */
    expect_form("\xEF\xBD\xB6\xEF\xBE\x9E", ENG_UNICODE_FORM_NFKC, "\xE3\x82\xAC"); /* ｶﾞ -> ガ */
    uint32_t low[2];
    ck_assert_uint_eq(eng_unicode_lower('Q', low), 1);
    ck_assert_uint_eq(low[0], 'q');
    ck_assert_uint_eq(eng_unicode_lower(0x130, low), 2); /* İ -> i + U+0307 */
    ck_assert(low[0] == 'i' && low[1] == 0x307);
    ck_assert_uint_eq(eng_unicode_lower(0x3A3, low), 1); /* Σ -> σ: no context */
    ck_assert_uint_eq(low[0], 0x3C3);
    ck_assert(eng_unicode_is_punct('$') && eng_unicode_is_punct('~') && eng_unicode_is_punct(0x3002));
    ck_assert(!eng_unicode_is_punct('a') && !eng_unicode_is_punct(' ') && !eng_unicode_is_punct(0x20AC));
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("unicode");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_utf8_round_trip_all_scalars);
    tcase_add_test(tc, test_utf8_known_encodings);
    tcase_add_test(tc, test_utf8_invalid_maximal_subparts);
    tcase_add_test(tc, test_utf8_sanitize_standard_example);
    tcase_add_test(tc, test_classes);
    tcase_add_test(tc, test_ccc);
    tcase_add_test(tc, test_nfc_known);
    tcase_add_test(tc, test_nfc_matches_python);
    tcase_add_test(tc, test_forms_lower_punct);
    suite_add_tcase(s, tc);
    return s;
}
