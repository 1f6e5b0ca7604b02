/* quant.c - the reference dequantiser and the quantisers of quant.h.
 *
 * The quantisers follow GGUF's reference rules where gguf-py has them
 * (Q8_0: d = max|x| / 127, q = round(x / d); Q4_0: d = the value of
 * largest magnitude / -8, q = trunc(x / d + 8.5) clamped to 0..15), so that
 * their bytes can be compared with gguf-py's.  Q4_K takes each sub-block's
 * range [min(0, lo), hi] as scale and min and quantises those to 6 bits
 * under the super-block's two f16 scales: simpler than llama.cpp's search,
 * a little less accurate.
 */
#include "engine/quant.h"

#include <assert.h>
#include <math.h>
#include <string.h>

uint16_t eng_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) /* NaN */
        return sign | 0x7e00u;
    if (u >= 0x477ff000u) /* rounds to 65536 or more: infinity */
        return sign | 0x7c00u;
    if (u < 0x38800000u) { /* below 2^-14: a subnormal half, units of 2^-24 */
        float a;
        memcpy(&a, &u, sizeof a);
        return sign | (uint16_t)lrintf(a * 16777216.0f); /* 1024 encodes 2^-14 itself */
    }
    /* rebias the exponent (127 -> 15) and round the 13 dropped bits to
     * nearest even; a carry into the exponent is the right answer */
    u += 0xfffu + ((u >> 13) & 1u);
    return sign | (uint16_t)((u - 0x38000000u) >> 13);
}

int eng_quant_can_write(eng_dtype dt)
{
    return dt == ENG_DTYPE_Q8_0 || dt == ENG_DTYPE_Q4_0 || dt == ENG_DTYPE_Q4_K;
}

void eng_quant_dequant(eng_dtype dt, const void *src, int64_t n, float *dst)
{
    const eng_dtype_info *info = eng_dtype_info_of(dt);
    assert(info->quantized && n % info->block_elems == 0);
    const uint8_t *b = src;
    int8_t q[32];
    const int be = info->block_elems;
    for (int64_t i = 0; i < n; i += be, b += info->block_bytes, dst += be) {
        switch (dt) {
        case ENG_DTYPE_Q8_0: {
            const float d = eng_f16_to_f32(eng_quant_u16(b));
            for (int l = 0; l < 32; l++)
                dst[l] = d * (float)(int8_t)b[2 + l];
            break;
        }
        case ENG_DTYPE_Q4_0:
        case ENG_DTYPE_Q5_0: {
            const float d = eng_f16_to_f32(eng_quant_u16(b));
            if (dt == ENG_DTYPE_Q4_0)
                eng_q4_0_group(b, q);
            else
                eng_q5_0_group(b, q);
            for (int l = 0; l < 32; l++)
                dst[l] = d * (float)q[l];
            break;
        }
        case ENG_DTYPE_Q4_K: {
            const float d = eng_f16_to_f32(eng_quant_u16(b));
            const float dmin = eng_f16_to_f32(eng_quant_u16(b + 2));
            uint8_t sc[8], mn[8];
            eng_q4k_scales_mins(b + 4, sc, mn);
            for (int s = 0; s < 8; s++) {
                eng_q4k_group(b, s, q);
                for (int l = 0; l < 32; l++)
                    dst[32 * s + l] = d * (float)sc[s] * (float)q[l] - dmin * (float)mn[s];
            }
            break;
        }
        case ENG_DTYPE_Q6_K: {
            const float d = eng_f16_to_f32(eng_quant_u16(b + 208));
            const int8_t *scales = (const int8_t *)(b + 192);
            for (int g = 0; g < 8; g++) {
                eng_q6k_group(b, g, q);
                for (int l = 0; l < 32; l++)
                    dst[32 * g + l] = d * (float)scales[2 * g + l / 16] * (float)q[l];
            }
            break;
        }
        default: assert(!"eng_quant_dequant: not a block-quantized dtype");
        }
    }
}

static void put_f16(uint8_t *p, float f)
{
    uint16_t h = eng_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

static void quantize_q8_0(const float *x, uint8_t *b)
{
    float amax = 0.0f;
    for (int l = 0; l < 32; l++)
        amax = fmaxf(amax, fabsf(x[l]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    put_f16(b, d);
    for (int l = 0; l < 32; l++)
        b[2 + l] = (uint8_t)(int8_t)roundf(x[l] * id);
}

static void quantize_q4_0(const float *x, uint8_t *b)
{
    /* the value of largest magnitude maps to -8, the end with one more step */
    float vmax = 0.0f;
    for (int l = 0; l < 32; l++)
        if (fabsf(x[l]) > fabsf(vmax))
            vmax = x[l];
    const float d = vmax / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    put_f16(b, d);
    uint8_t q[32];
    for (int l = 0; l < 32; l++)
        q[l] = (uint8_t)fminf(15.0f, truncf(x[l] * id + 8.5f));
    for (int j = 0; j < 16; j++)
        b[2 + j] = (uint8_t)(q[j] | q[j + 16] << 4);
}

static void quantize_q4_k(const float *x, uint8_t *b)
{
    /* Each sub-block s: w = scale_s * q - min_s with q in 0..15, from its
     * range [lo, hi] where lo <= 0 (so min_s >= 0, as the format wants). */
    float scale[8], mins[8], max_scale = 0.0f, max_min = 0.0f;
    for (int s = 0; s < 8; s++) {
        float lo = 0.0f, hi = -INFINITY;
        for (int l = 0; l < 32; l++) {
            lo = fminf(lo, x[32 * s + l]);
            hi = fmaxf(hi, x[32 * s + l]);
        }
        scale[s] = (hi - lo) / 15.0f;
        mins[s] = -lo;
        max_scale = fmaxf(max_scale, scale[s]);
        max_min = fmaxf(max_min, mins[s]);
    }
    /* the super-block scales bring the largest 6-bit code to 63 */
    const uint16_t dh = eng_f32_to_f16(max_scale / 63.0f), mh = eng_f32_to_f16(max_min / 63.0f);
    const float d = eng_f16_to_f32(dh), dmin = eng_f16_to_f32(mh);
    b[0] = (uint8_t)dh, b[1] = (uint8_t)(dh >> 8), b[2] = (uint8_t)mh, b[3] = (uint8_t)(mh >> 8);
    uint8_t sc[8], mn[8];
    for (int s = 0; s < 8; s++) {
        /* round the scale up when rounding down would clip the top of the range */
        sc[s] = d > 0.0f ? (uint8_t)fminf(63.0f, ceilf(scale[s] / d - 0.01f)) : 0;
        mn[s] = dmin > 0.0f ? (uint8_t)fminf(63.0f, roundf(mins[s] / dmin)) : 0;
    }
    uint8_t *p = b + 4;
    memset(p, 0, 12);
    for (int j = 0; j < 4; j++) {
        p[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        p[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        p[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
    uint8_t *qs = b + 16;
    memset(qs, 0, 128);
    for (int s = 0; s < 8; s++) {
        const float step = d * (float)sc[s], off = dmin * (float)mn[s];
        for (int l = 0; l < 32; l++) {
            float q = step > 0.0f ? roundf((x[32 * s + l] + off) / step) : 0.0f;
            int qi = (int)fmaxf(0.0f, fminf(15.0f, q));
            qs[32 * (s >> 1) + l] |= (uint8_t)(qi << (4 * (s & 1)));
        }
    }
}

void eng_quant_quantize(eng_dtype dt, const float *src, int64_t n, void *dst)
{
    assert(eng_quant_can_write(dt));
    const eng_dtype_info *info = eng_dtype_info_of(dt);
    assert(n % info->block_elems == 0);
    uint8_t *b = dst;
    const int be = info->block_elems;
    for (int64_t i = 0; i < n; i += be, b += info->block_bytes, src += be) {
        if (dt == ENG_DTYPE_Q8_0)
            quantize_q8_0(src, b);
        else if (dt == ENG_DTYPE_Q4_0)
            quantize_q4_0(src, b);
        else
            quantize_q4_k(src, b);
    }
}
