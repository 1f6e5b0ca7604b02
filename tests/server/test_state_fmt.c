/* test_state_fmt.c - the state export format: CRC-32 check value, round
 * trip (with and without a token history), version 1 exports still read,
 * and every rejection (magic, version, size, checksum, fingerprint, flags). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "server/state_fmt.h"

START_TEST(test_crc32_check_value)
{
    /* the standard CRC-32 check value of "123456789" */
    ck_assert_uint_eq(srv_crc32(0, "123456789", 9), 0xCBF43926u);
    ck_assert_uint_eq(srv_crc32(srv_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
    ck_assert_uint_eq(srv_crc32(0, "", 0), 0);
}
END_TEST

static unsigned char *make(size_t n, size_t *len)
{
    srv_state_meta m = {.n_tokens = 42, .pending = 7, .state_bytes = n,
                        .hist = {.known = 1, .hash = 0x0123456789abcdefULL, .mark_tokens = 30, .mark_hash = 99}};
    strcpy(m.fingerprint, "abcdef0123456789");
    unsigned char *state = malloc(n);
    for (size_t i = 0; i < n; i++)
        state[i] = (unsigned char)(i * 31 + 3);
    unsigned char *buf;
    ck_assert_int_eq(srv_state_encode(&m, state, &buf, len, NULL), SSMD_OK);
    free(state);
    return buf;
}

START_TEST(test_round_trip)
{
    size_t len;
    unsigned char *buf = make(1000, &len);
    ck_assert_uint_eq(len, srv_state_encoded_bytes(1000));
    ck_assert_uint_eq(len, 192 + 1000 + 4);
    ck_assert_int_eq(memcmp(buf, "SSMDSTAT", 8), 0);
    srv_state_meta m;
    const unsigned char *st;
    ck_assert_int_eq(srv_state_decode(buf, len, "abcdef0123456789", 1000, &m, &st, NULL), SSMD_OK);
    ck_assert_int_eq(m.n_tokens, 42);
    ck_assert_int_eq(m.pending, 7);
    ck_assert_uint_eq(m.state_bytes, 1000);
    ck_assert_str_eq(m.fingerprint, "abcdef0123456789");
    ck_assert_int_eq(m.hist.known, 1);
    ck_assert(m.hist.hash == 0x0123456789abcdefULL);
    ck_assert_int_eq(m.hist.mark_tokens, 30);
    ck_assert(m.hist.mark_hash == 99);
    for (size_t i = 0; i < 1000; i++)
        ck_assert_uint_eq(st[i], (unsigned char)(i * 31 + 3));
    /* the trailer is the CRC of everything before it, little-endian */
    uint32_t crc = srv_crc32(0, buf, len - 4);
    ck_assert_uint_eq(buf[len - 4] | buf[len - 3] << 8 | buf[len - 2] << 16 | (uint32_t)buf[len - 1] << 24, crc);
    free(buf);
}
END_TEST

START_TEST(test_rejections)
{
    size_t len;
    unsigned char *buf = make(256, &len);
    srv_state_meta m;
    const unsigned char *st;
    ssmd_err err = {0};
    ck_assert_int_eq(srv_state_decode(buf, len, "other-model", 256, &m, &st, &err), SSMD_ECONFLICT);
    ck_assert_int_eq(srv_state_decode(buf, len, "abcdef0123456789", 512, &m, &st, &err), SSMD_ECONFLICT);
    ck_assert_int_eq(srv_state_decode(buf, len - 1, NULL, 0, &m, &st, &err), SSMD_EFORMAT);
    ck_assert_int_eq(srv_state_decode(buf, 10, NULL, 0, &m, &st, &err), SSMD_EFORMAT);
    ck_assert_ptr_null(st);
    for (size_t pos = 0; pos < len; pos += 37) { /* any flipped byte is caught */
        buf[pos] ^= 0x10;
        ck_assert_int_eq(srv_state_decode(buf, len, "abcdef0123456789", 256, &m, &st, &err), SSMD_EFORMAT);
        buf[pos] ^= 0x10;
    }
    buf[8] = 3; /* version */
    ck_assert_int_eq(srv_state_decode(buf, len, NULL, 0, &m, &st, &err), SSMD_EFORMAT);
    buf[8] = 2;
    buf[36] = 2; /* a flag this version does not know, checksum fixed */
    uint32_t crc = srv_crc32(0, buf, len - 4);
    for (int i = 0; i < 4; i++)
        buf[len - 4 + (size_t)i] = (unsigned char)(crc >> (8 * i));
    ck_assert_int_eq(srv_state_decode(buf, len, NULL, 0, &m, &st, &err), SSMD_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "flags"));
    free(buf);
}
END_TEST

/* A version 1 export (168-byte header, no history) is read: its history
 * is unknown. */
START_TEST(test_version1_read)
{
    size_t len2;
    unsigned char *v2 = make(64, &len2);
    size_t len = 168 + 64 + 4;
    unsigned char *buf = calloc(1, len);
    memcpy(buf, v2, 168);
    buf[8] = 1;
    buf[12] = 168;
    memset(buf + 36, 0, 4); /* no flags in version 1 */
    memcpy(buf + 168, v2 + 192, 64);
    uint32_t crc = srv_crc32(0, buf, len - 4);
    for (int i = 0; i < 4; i++)
        buf[len - 4 + (size_t)i] = (unsigned char)(crc >> (8 * i));
    srv_state_meta m;
    const unsigned char *st;
    ck_assert_int_eq(srv_state_decode(buf, len, "abcdef0123456789", 64, &m, &st, NULL), SSMD_OK);
    ck_assert_int_eq(m.n_tokens, 42);
    ck_assert_int_eq(m.hist.known, 0);
    ck_assert_int_eq(memcmp(st, v2 + 192, 64), 0);
    free(buf);
    free(v2);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("state_fmt");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_crc32_check_value);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_rejections);
    tcase_add_test(tc, test_version1_read);
    suite_add_tcase(s, tc);
    return s;
}
