/* test_cpu_ssd.c - the two Mamba-2 prefill forms of kernels/cpu/cpu_ssd.c
 * against each other at every CPU kernel level the machine runs: the
 * chunked (matmul) form must leave the outputs and the final state the
 * token-by-token scan leaves, for groups, head_dim != d_state, partial
 * chunks, a prompt fed in two calls, and a decay spike (one token whose
 * dt A is -960, the others tiny), where decays computed as differences of
 * running sums lose 1e-4. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/cpu_ssd.h"
#include "kernels/cpu/threadpool.h"
#include "tests/kernels/kernel_data.h"

/* H heads of P channels, N states, G groups, T tokens (the chunked form
 * fed in two calls, cut at `cut`); spike: token 0 decays by e^-960.
 * Returns the worse of the outputs' and the states' relative errors. */
static double forms_case(const cpu_kernels *k, int H, int P, int N, int G, int T, int cut, int spike,
                         unsigned seed)
{
    unsigned s = seed * 977u + 3u;
    const int E = H * P, cd = E + 2 * G * N;
    float *dt_bias = rnd(H, &s, -3, 0), *A = rnd(H, &s, -4, -0.5f), *D = rnd(H, &s, -1, 1);
    float *w = rnd(E, &s, 0.5f, 1.5f), *xbc = rnd((size_t)T * cd, &s, -1.5f, 1.5f);
    float *dt = rnd((size_t)T * H, &s, -3, 2), *z = rnd((size_t)T * E, &s, -2, 2);
    float *scan_s = rnd((size_t)H * P * N, &s, -1, 1), *chunk_s = malloc(sizeof(float) * H * P * N);
    float *scan_y = malloc(sizeof(float) * T * E), *chunk_y = malloc(sizeof(float) * T * E);
    for (int i = 0; i < H * P * N; i++)
        chunk_s[i] = scan_s[i];
    if (spike)
        for (int h = 0; h < H; h++) {
            A[h] = -16.0f, dt_bias[h] = 0.0f, dt[h] = 60.0f; /* dt A = -960 at token 0 */
            for (int t = 1; t < T; t++)
                dt[(size_t)t * H + h] = -5.0f;
        }
    bk_mamba2_layer l = {.dt_bias = dt_bias, .A = A, .D = D, .norm_w = w, .d_inner = E, .d_state = N,
                         .d_conv = 4, .nheads = H, .head_dim = P, .ngroups = G,
                         .norm_before_gate = (int)(seed & 1), .dt_min = 0.0f,
                         .dt_max = spike ? INFINITY : 2.0f, .norm_eps = 1e-5f};
    eng_threadpool *pool = eng_threadpool_create(2);
    bk_mamba2_io io = {.xbc = xbc, .dt = dt, .lddt = H, .z = z, .ldz = E, .y = scan_y, .rows = T};
    cpu_ssd_prefill(k, pool, &l, scan_s, &io, CPU_SSD_SCAN);
    io.y = chunk_y, io.rows = cut;
    cpu_ssd_prefill(k, pool, &l, chunk_s, &io, CPU_SSD_CHUNK);
    io.xbc = xbc + (size_t)cut * cd, io.dt = dt + (size_t)cut * H, io.z = z + (size_t)cut * E;
    io.y = chunk_y + (size_t)cut * E, io.rows = T - cut;
    cpu_ssd_prefill(k, pool, &l, chunk_s, &io, CPU_SSD_CHUNK);
    double bad = fmax(badness(chunk_y, scan_y, (size_t)T * E),
                      badness(chunk_s, scan_s, (size_t)H * P * N));
    eng_threadpool_destroy(pool);
    float *bufs[] = {dt_bias, A, D, w, xbc, dt, z, scan_s, chunk_s, scan_y, chunk_y};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    return bad;
}

START_TEST(test_chunked_equals_scan)
{
    /* H, P, N, G, T, cut, spike */
    static const int cases[][7] = {
        {4, 8, 16, 1, 150, 150, 0}, /* three chunks, the last partial */
        {6, 5, 7, 3, 70, 37, 0},    /* groups; continued from a cut mid-chunk */
        {2, 40, 3, 2, 5, 2, 0},     /* head_dim > d_state, a short prompt */
        {3, 4, 9, 1, 1, 0, 0},      /* one token (and an empty call) */
        {2, 4, 8, 1, 64, 64, 1},    /* the decay spike */
        {4, 6, 10, 2, 100, 70, 1},
    };
    const cpu_kernels *levels[CPU_LEVEL_COUNT];
    const int n = cpu_kernels_list(levels);
    for (int v = 0; v < n; v++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (unsigned seed = 1; seed <= 2; seed++) {
                const int *k = cases[c];
                double bad = forms_case(levels[v], k[0], k[1], k[2], k[3], k[4], k[5], k[6], seed);
                ck_assert_msg(bad <= 1e-5, "%s case %zu seed %u: chunked vs scan %g", levels[v]->name,
                              c, seed, bad);
            }
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("cpu_ssd");
    TCase *tc = tcase_create("forms");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_chunked_equals_scan);
    suite_add_tcase(s, tc);
    return s;
}
