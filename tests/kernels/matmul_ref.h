/* matmul_ref.h - the double-precision reference every matmul test of the
 * CUDA backend compares with (test_kernels.c, test_emu_quant.c,
 * test_cuda_mock.c).  Header-only (static inline): each test binary is one
 * .c file. */
#ifndef SSMD_TESTS_MATMUL_REF_H
#define SSMD_TESTS_MATMUL_REF_H

#include <stddef.h>

/* y (m, rows; stride ldy) = x (m, cols; stride ldx) W^T + bias (NULL:
 * none), W (rows, cols) f32, summed in double and rounded once. */
static inline void ref_matmul(const float *w, int rows, int cols, const float *x, int ldx, int m,
                              const float *bias, float *y, int ldy)
{
    for (int i = 0; i < m; i++)
        for (int r = 0; r < rows; r++) {
            double acc = bias ? bias[r] : 0.0;
            for (int k = 0; k < cols; k++)
                acc += (double)w[(size_t)r * cols + k] * x[(size_t)i * ldx + k];
            y[(size_t)i * ldy + r] = (float)acc;
        }
}

#endif
