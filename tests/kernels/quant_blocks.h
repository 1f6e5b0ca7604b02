/* quant_blocks.h - random block-quantized matrices for the tests of the
 * CUDA backend's quantized paths (test_emu_quant.c: the kernels;
 * test_cuda_mock.c: the backend's matmul): random bytes, so that every bit
 * pattern of the quants, Q4_K's packed scales, Q6_K's signed scales and
 * Q5_0's fifth bits occurs, with each block's f16 scale(s) then set to
 * finite values of either sign.  Header-only (static inline): each test
 * binary is one .c file. */
#ifndef SSMD_TESTS_QUANT_BLOCKS_H
#define SSMD_TESTS_QUANT_BLOCKS_H

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine/quant.h"
#include "engine/tensor.h"
#include "tests/kernels/kernel_data.h"

static inline void qb_put_f16(uint8_t *p, float f)
{
    const uint16_t h = eng_f32_to_f16(f);
    p[0] = (uint8_t)h, p[1] = (uint8_t)(h >> 8);
}

/* rows x cols weights of block-quantized dt (rows of whole blocks), its
 * bytes malloc'ed; the reference dequantisation (eng_quant_dequant) to a
 * malloc'ed *exact. */
static inline uint8_t *qb_rand_blocks(eng_dtype dt, int rows, int cols, unsigned *s, float **exact)
{
    const eng_dtype_info *info = eng_dtype_info_of(dt);
    const size_t n = (size_t)rows * cols, bytes = (size_t)rows * eng_dtype_row_bytes(dt, cols);
    ck_assert_uint_gt(bytes, 0);
    uint8_t *b = malloc(bytes);
    for (size_t i = 0; i < bytes; i++)
        b[i] = (uint8_t)((frand(s) + 1.0f) * 128.0f); /* frand < 1: 0..255 */
    for (size_t off = 0; off < bytes; off += (size_t)info->block_bytes) {
        if (dt == ENG_DTYPE_Q6_K) {
            qb_put_f16(b + off + 208, frand(s) / 256.0f); /* d * int8 scale * 6-bit q */
        } else {
            qb_put_f16(b + off, frand(s) / 16.0f);
            if (dt == ENG_DTYPE_Q4_K) /* dmin */
                qb_put_f16(b + off + 2, frand(s) / 16.0f);
        }
    }
    *exact = malloc(sizeof(float) * n);
    eng_quant_dequant(dt, b, (int64_t)n, *exact);
    return b;
}

#endif
