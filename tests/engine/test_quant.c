/* test_quant.c - engine/quant.c: the reference dequantiser of every block
 * type against numpy (tests/fixtures/quant/, written by gen_quant.py and
 * checked there against gguf-py's dequantiser), the Q8_0 / Q4_0 quantisers
 * byte for byte against gguf-py's, Q4_K's scale decoder bit by bit, its
 * quantiser by its round-trip error, and the f32 -> f16 rounding. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/quant.h"
#include "engine/tensor.h"

/* The whole of tests/fixtures/quant/<name><ext>; *size its bytes. */
static void *load(const char *name, const char *ext, long *size)
{
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/quant/%s%s", name, ext);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s (run from the repository root)", path);
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc((size_t)*size);
    ck_assert(fread(p, 1, (size_t)*size, f) == (size_t)*size);
    fclose(f);
    return p;
}

/* The fixture files are named by the dtype table's names ("q8_0"...). */
static const eng_dtype types[] = {ENG_DTYPE_Q8_0, ENG_DTYPE_Q4_0, ENG_DTYPE_Q4_K, ENG_DTYPE_Q6_K,
                                  ENG_DTYPE_Q5_0};
#define NAME(i) eng_dtype_info_of(types[i])->name

START_TEST(test_dequant_matches_numpy)
{
    long nb, nf;
    uint8_t *blocks = load(NAME(_i), ".blocks", &nb);
    float *want = load(NAME(_i), ".f32", &nf);
    const eng_dtype_info *info = eng_dtype_info_of(types[_i]);
    const int64_t n = nf / 4;
    ck_assert_int_eq(nb, n / info->block_elems * info->block_bytes);
    ck_assert_uint_eq(eng_dtype_row_bytes(types[_i], n), (uint64_t)nb);
    float *got = malloc((size_t)nf);
    eng_quant_dequant(types[_i], blocks, n, got);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(got[i] - want[i]) <= 1e-6f * fabsf(want[i]) + 1e-30f,
                      "%s: weight %lld = %g, numpy %g", NAME(_i), (long long)i, got[i],
                      want[i]);
    /* the same through the tensor API (a flat run of blocks) */
    eng_tensor t = {.name = "t", .file = "mem", .dtype = types[_i], .ndim = 1, .shape = {n},
                    .numel = n, .data = blocks, .nbytes = (uint64_t)nb};
    eng_tensor_to_f32(&t, got);
    for (int64_t i = 0; i < n; i++)
        ck_assert(fabsf(got[i] - want[i]) <= 1e-6f * fabsf(want[i]) + 1e-30f);
    free(blocks), free(want), free(got);
}
END_TEST

/* Q8_0 and Q4_0: the bytes gguf-py writes for the same floats. */
START_TEST(test_quantize_matches_gguf_py)
{
    long nx, nr;
    float *x = load(NAME(_i), ".in.f32", &nx);
    uint8_t *want = load(NAME(_i), ".ref", &nr);
    ck_assert(eng_quant_can_write(types[_i]));
    uint8_t *got = malloc((size_t)nr);
    ck_assert_uint_eq(eng_dtype_row_bytes(types[_i], nx / 4), (uint64_t)nr);
    eng_quant_quantize(types[_i], x, nx / 4, got);
    for (long i = 0; i < nr; i++)
        ck_assert_msg(got[i] == want[i], "%s: byte %ld = %d, gguf-py %d", NAME(_i), i,
                      got[i], want[i]);
    free(x), free(want), free(got);
}
END_TEST

/* Q4_K's 12 bytes of 6-bit scales and mins, decoded four bytes per
 * operation: against the layout written out byte by byte, with each of
 * the 96 bits set alone (a shift that leaks a neighbour byte's bit shows)
 * and all of them set. */
START_TEST(test_q4k_scales_mins)
{
    for (int bit = 0; bit <= 96; bit++) {
        uint8_t p[12] = {0}, sc[8], mn[8];
        for (int i = 0; i < 12; i++)
            p[i] = bit == 96 ? 0xff : (uint8_t)(bit / 8 == i ? 1u << (bit % 8) : 0u);
        eng_q4k_scales_mins(p, sc, mn);
        for (int j = 0; j < 8; j++) {
            const int want_sc = j < 4 ? p[j] & 63 : (p[j + 4] & 15) | (p[j - 4] >> 6) << 4;
            const int want_mn = j < 4 ? p[j + 4] & 63 : (p[j + 4] >> 4) | (p[j] >> 6) << 4;
            ck_assert_msg(sc[j] == want_sc && mn[j] == want_mn,
                          "bit %d, sub-block %d: scale %d min %d, want %d %d", bit, j, sc[j],
                          mn[j], want_sc, want_mn);
        }
    }
}
END_TEST

/* Q4_K: every weight comes back within one step of its sub-block's
 * quantisation grid (plus the f16 rounding of the scales). */
START_TEST(test_q4k_round_trip)
{
    enum { N = 4 * 256 };
    static float x[N], y[N];
    static uint8_t blocks[4 * 144];
    unsigned s = 5;
    for (int i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        float u = ((s >> 8) / 16777216.0f) * 2.0f - 1.0f;
        /* sub-blocks of different spreads and offsets, one all positive */
        x[i] = u * (float)(1 + (i / 32) % 5) + ((i / 32) % 8 == 3 ? 4.0f : 0.0f);
    }
    x[700] = 0.0f;
    eng_quant_quantize(ENG_DTYPE_Q4_K, x, N, blocks);
    eng_quant_dequant(ENG_DTYPE_Q4_K, blocks, N, y);
    for (int sb = 0; sb < N / 32; sb++) {
        float lo = 0.0f, hi = x[32 * sb];
        for (int l = 0; l < 32; l++)
            lo = fminf(lo, x[32 * sb + l]), hi = fmaxf(hi, x[32 * sb + l]);
        const float step = (hi - lo) / 15.0f;
        for (int l = 0; l < 32; l++) {
            const int i = 32 * sb + l;
            ck_assert_msg(fabsf(y[i] - x[i]) <= 0.6f * step + 0.02f * (hi - lo),
                          "weight %d: %g -> %g (step %g)", i, x[i], y[i], step);
        }
    }
    ck_assert(!eng_quant_can_write(ENG_DTYPE_Q6_K));
}
END_TEST

START_TEST(test_f32_to_f16)
{
    const float cases[] = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 65520.0f, 1e6f,
                           6.103515625e-05f, 3e-6f, 5.96e-8f, 1e-9f, 0.1f, 1.0009765625f};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        _Float16 h = (_Float16)cases[i]; /* the compiler's own round-to-nearest-even */
        uint16_t want;
        __builtin_memcpy(&want, &h, 2);
        ck_assert_msg(eng_f32_to_f16(cases[i]) == want, "%g: %#x, want %#x", cases[i],
                      eng_f32_to_f16(cases[i]), want);
        ck_assert(eng_f16_to_f32(eng_f32_to_f16(cases[i])) == (float)h);
    }
    ck_assert_uint_eq(eng_f32_to_f16(NAN) & 0x7e00u, 0x7e00u);
    /* halfway between 1 and the next half: ties to even (1) */
    ck_assert_uint_eq(eng_f32_to_f16(1.00048828125f), 0x3c00u);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("quant");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, test_dequant_matches_numpy, 0, 5);
    tcase_add_loop_test(tc, test_quantize_matches_gguf_py, 0, 2);
    tcase_add_test(tc, test_q4k_scales_mins);
    tcase_add_test(tc, test_q4k_round_trip);
    tcase_add_test(tc, test_f32_to_f16);
    suite_add_tcase(s, tc);
    return s;
}
