/* tensor.c - the dtype table and the element conversions of tensor.h. */
#include "engine/tensor.h"

#include "engine/quant.h"

#include <assert.h>
#include <math.h>
#include <string.h>

static const eng_dtype_info dtype_table[ENG_DTYPE_COUNT] = {
    [ENG_DTYPE_F32] = {"f32", 1, 4, 0},
    [ENG_DTYPE_F16] = {"f16", 1, 2, 0},
    [ENG_DTYPE_BF16] = {"bf16", 1, 2, 0},
    [ENG_DTYPE_OTHER] = {"other", 0, 0, 0},
    /* GGUF block layouts: Q8_0 = f16 scale + 32 int8; Q4_0 = f16 scale +
     * 32 nibbles; Q4_K = 256 weights in 8 sub-blocks with 6-bit scales and
     * mins under two f16 super-scales; Q6_K = 256 weights of 6 bits with
     * 16 int8 sub-scales and one f16 super-scale; Q5_0 = f16 scale + 32
     * high bits + 32 nibbles. */
    [ENG_DTYPE_Q8_0] = {"q8_0", 32, 34, 1},
    [ENG_DTYPE_Q4_0] = {"q4_0", 32, 18, 1},
    [ENG_DTYPE_Q4_K] = {"q4_k", 256, 144, 1},
    [ENG_DTYPE_Q6_K] = {"q6_k", 256, 210, 1},
    [ENG_DTYPE_Q5_0] = {"q5_0", 32, 22, 1},
};

const eng_dtype_info *eng_dtype_info_of(eng_dtype dt)
{
    if ((int)dt < 0 || dt >= ENG_DTYPE_COUNT)
        dt = ENG_DTYPE_OTHER;
    return &dtype_table[dt];
}

uint64_t eng_dtype_row_bytes(eng_dtype dt, int64_t cols)
{
    const eng_dtype_info *d = eng_dtype_info_of(dt);
    if (d->block_elems == 0 || cols < 0 || cols % d->block_elems)
        return 0;
    return (uint64_t)(cols / d->block_elems) * (uint64_t)d->block_bytes;
}

static float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float eng_bf16_to_f32(uint16_t v) { return bits_to_f32((uint32_t)v << 16); }

float eng_f16_to_f32(uint16_t v)
{
    uint32_t sign = (uint32_t)(v >> 15) << 31;
    uint32_t exp = (v >> 10) & 0x1f, mant = v & 0x3ff;
    if (exp == 0x1f) /* inf, or NaN keeping its payload */
        return bits_to_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact in f32 */
        float m = ldexpf((float)mant, -24);
        return sign ? -m : m;
    }
    return bits_to_f32(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

uint16_t eng_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign, force quiet */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

void eng_tensor_to_f32(const eng_tensor *t, float *dst)
{
    const uint8_t *src = t->data;
    size_t n = (size_t)t->numel;
    uint16_t h;
    switch (t->dtype) {
    case ENG_DTYPE_F32:
        if (n)
            memcpy(dst, src, n * sizeof *dst);
        break;
    case ENG_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            memcpy(&h, src + 2 * i, 2);
            dst[i] = eng_f16_to_f32(h);
        }
        break;
    case ENG_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            memcpy(&h, src + 2 * i, 2);
            dst[i] = eng_bf16_to_f32(h);
        }
        break;
    default:
        /* block-quantized: the tensor is a flat run of whole blocks (the
         * sources check that every row is) */
        assert(eng_dtype_info_of(t->dtype)->quantized &&
               "eng_tensor_to_f32: dtype has no values (use eng_weights_get)");
        eng_quant_dequant(t->dtype, src, t->numel, dst);
    }
}
