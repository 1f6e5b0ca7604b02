/* test_emu_quant.c - the CUDA kernels that read GGUF's block-quantized
 * weights (kernels/cuda/quant.cu: Q8_0, Q4_0, Q5_0, Q4_K, Q6_K), run by the
 * emulation harness, against engine/quant.c's reference dequantiser:
 *  - blocks of random bytes with finite f16 scales (quant_blocks.h);
 *  - the decode GEMV (kc_gemv hands these types to kc_gemv_quant) against
 *    a double-precision product of the dequantised weights: within 4e-6 of
 *    the output's largest magnitude (f32 products and sums over up to 2304
 *    columns: 1e-6 measured), for 1..16 rows of x (strides odd and even),
 *    with and without bias, rows of one group up to two chunks of 32
 *    groups and a partial one, W staged with 16-byte loads and (W 2 bytes
 *    off 16, or Q6_K) with 2-byte ones;
 *  - kc_widen (prefill panels) and kc_embed (gathered rows, repeated and
 *    out of order) equal to the reference bit for bit: the kernels take the
 *    reference's products in its order (an nvcc build may contract one into
 *    an FMA; the emulation build, ISO C++, does not).
 * The model-level check (tests/fixtures/gguf/quant_mixed.gguf on the cuda
 * backends against the CPU backend) is in test_emu_model.c. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/quant.h"
#include "engine/tensor.h"
#include "kernels/cuda/kc_kernels.h"
#include "kernels/emu/emu.h"
#include "tests/kernels/kernel_data.h"
#include "tests/kernels/matmul_ref.h"
#include "tests/kernels/quant_blocks.h"

static const int block_types[] = {KC_DT_Q8_0, KC_DT_Q4_0, KC_DT_Q5_0, KC_DT_Q4_K, KC_DT_Q6_K};
enum { N_TYPES = sizeof block_types / sizeof block_types[0] };

enum { GEMV_TOL_X1E6 = 4 };

START_TEST(test_gemv_quant)
{
    const int dt = block_types[_i];
    const int kq = dt == KC_DT_Q4_K || dt == KC_DT_Q6_K;
    /* one group, a few, a partial chunk after a whole one (1056: 33 groups),
     * two chunks and a partial one (2304); rows of 16-byte multiples
     * (256, 2304: Q6_K's never are) take the 16-byte staging loads */
    static const int cols32[] = {32, 96, 256, 1056, 2304}, colsK[] = {256, 1280, 2304};
    const int *Ks = kq ? colsK : cols32, nK = kq ? 3 : 5;
    static const int Ns[] = {1, 5, 37}, Ms[] = {1, 2, 7, 16};
    double worst = 0.0;
    for (int ki = 0; ki < nK; ki++)
        for (int ni = 0; ni < 3; ni++)
            for (int mi = 0; mi < 4; mi++) {
                const int K = Ks[ki], N = Ns[ni], m = Ms[mi];
                /* odd m: x rows 3 floats apart; even m: 16-byte rows */
                const int ldx = m & 1 ? K + 3 : K + 4, ldy = N + 2;
                unsigned s = (unsigned)(dt * 1000 + ki * 100 + ni * 10 + m);
                float *exact;
                uint8_t *w0 = qb_rand_blocks((eng_dtype)dt, N, K, &s, &exact), *w = w0, *moved = NULL;
                if (ni == 1) { /* W 2 bytes off 16: the 2-byte staging loads whatever the rows */
                    const size_t bytes = (size_t)N * eng_dtype_row_bytes((eng_dtype)dt, K);
                    moved = malloc(bytes + 2);
                    w = memcpy(moved + 2, w0, bytes);
                }
                float *x = aligned_alloc(16, ((size_t)m * ldx * sizeof(float) + 15) / 16 * 16);
                float *bias = NULL;
                if (m & 1) {
                    bias = malloc(sizeof(float) * N);
                    for (int r = 0; r < N; r++)
                        bias[r] = frand(&s);
                }
                for (size_t i = 0; i < (size_t)m * ldx; i++)
                    x[i] = frand(&s);
                float *y = malloc(sizeof(float) * m * ldy), *ref = malloc(sizeof(float) * m * ldy);
                for (int i = 0; i < m * ldy; i++)
                    y[i] = ref[i] = 7.0f; /* the gaps between rows stay untouched */
                ref_matmul(exact, N, K, x, ldx, m, bias, ref, ldy);
                kc_emu_seed(s);
                kc_gemv(w, dt, N, K, x, ldx, m, y, ldy, bias, NULL);
                ck_assert_ptr_null(kc_emu_error());
                const double bad = badness(y, ref, (size_t)m * ldy);
                worst = fmax(worst, bad);
                ck_assert_msg(bad <= GEMV_TOL_X1E6 * 1e-6, "gemv %s K=%d N=%d m=%d: %g",
                              eng_dtype_info_of((eng_dtype)dt)->name, K, N, m, bad);
                free(w0), free(moved), free(exact), free(x), free(bias), free(y), free(ref);
            }
    if (getenv("SSMD_TEST_VERBOSE"))
        fprintf(stderr, "gemv %s: worst %.3g of the output scale\n", eng_dtype_info_of((eng_dtype)dt)->name,
                worst);
}
END_TEST

START_TEST(test_widen_embed_quant)
{
    const int dt = block_types[_i];
    const int cols = dt == KC_DT_Q4_K || dt == KC_DT_Q6_K ? 512 : 96, rows = 11, n = 7;
    unsigned s = 31u + (unsigned)dt;
    float *exact;
    uint8_t *w = qb_rand_blocks((eng_dtype)dt, rows, cols, &s, &exact);
    float *wide = malloc(sizeof(float) * rows * cols);
    for (int i = 0; i < rows * cols; i++)
        wide[i] = NAN;
    kc_emu_seed(s);
    kc_widen(w, dt, (size_t)rows * cols, wide, NULL);
    ck_assert_ptr_null(kc_emu_error());
    ck_assert_msg(memcmp(wide, exact, sizeof(float) * rows * cols) == 0, "widen %s",
                  eng_dtype_info_of((eng_dtype)dt)->name);
    /* a panel that starts at a later row, as the prefill GEMM widens them */
    const size_t row_bytes = eng_dtype_row_bytes((eng_dtype)dt, cols);
    kc_widen(w + 3 * row_bytes, dt, (size_t)2 * cols, wide, NULL);
    ck_assert(memcmp(wide, exact + (size_t)3 * cols, sizeof(float) * 2 * cols) == 0);
    const int32_t ids[7] = {10, 0, 3, 3, 7, 1, 10};
    float *out = malloc(sizeof(float) * n * cols), *ref = malloc(sizeof(float) * n * cols);
    for (int r = 0; r < n; r++)
        memcpy(ref + (size_t)r * cols, exact + (size_t)ids[r] * cols, sizeof(float) * cols);
    kc_embed(w, dt, cols, ids, n, out, NULL);
    ck_assert_ptr_null(kc_emu_error());
    ck_assert_msg(memcmp(out, ref, sizeof(float) * n * cols) == 0, "embed %s",
                  eng_dtype_info_of((eng_dtype)dt)->name);
    free(w), free(exact), free(wide), free(out), free(ref);
}
END_TEST

START_TEST(test_blocked_types)
{
    for (int i = 0; i < N_TYPES; i++)
        ck_assert(kc_dt_blocked(block_types[i]));
    ck_assert(!kc_dt_blocked(KC_DT_F32) && !kc_dt_blocked(KC_DT_F16) && !kc_dt_blocked(KC_DT_BF16));
    ck_assert(!kc_dt_blocked(ENG_DTYPE_OTHER) && !kc_dt_blocked(ENG_DTYPE_COUNT));
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("emu_quant");
    TCase *tc = tcase_create("emulated");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_gemv_quant, 0, N_TYPES);
    tcase_add_loop_test(tc, test_widen_embed_quant, 0, N_TYPES);
    tcase_add_test(tc, test_blocked_types);
    suite_add_tcase(s, tc);
    return s;
}
