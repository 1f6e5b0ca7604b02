/* cpu_quant.c - quantizing activation rows to int8 blocks (cpu_quant.h). */
#include "kernels/cpu/cpu_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/xalloc.h"

void cpu_q8_act_fill(cpu_q8_act *a, const float *x, int ldx, int m, long cols)
{
    const size_t nq = (size_t)m * (size_t)cols, nb = nq / CPU_Q8_BLOCK;
    if (a->cap_q < nq) {
        free(a->q);
        a->q = xmalloc(nq);
        a->cap_q = nq;
    }
    if (a->cap_blocks < nb) {
        free(a->d);
        free(a->dsum);
        a->d = xmalloc(nb * sizeof *a->d);
        a->dsum = xmalloc(nb * sizeof *a->dsum);
        a->cap_blocks = nb;
    }
    a->m = m;
    a->cols = cols;
    for (int i = 0; i < m; i++) {
        const float *xr = x + (size_t)i * ldx;
        for (long b = 0; b < cols / CPU_Q8_BLOCK; b++) {
            const float *xb = xr + b * CPU_Q8_BLOCK;
            int8_t *qb = a->q + (size_t)i * cols + b * CPU_Q8_BLOCK;
            /* comparisons, not fmaxf/fminf: those are libm calls at the
             * x86-64 baseline (NaN rules), and this loop runs per matmul */
            float amax = 0.0f;
            for (int l = 0; l < CPU_Q8_BLOCK; l++) {
                const float v = fabsf(xb[l]);
                amax = v > amax ? v : amax;
            }
            const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
            int32_t s = 0;
            for (int l = 0; l < CPU_Q8_BLOCK; l++) {
                /* |x * id| <= 127 up to rounding: clamp keeps -128 out,
                 * which the AVX2 sign trick could not negate */
                float q = nearbyintf(xb[l] * id);
                q = q < 127.0f ? q : 127.0f; /* NaN becomes 127: never cast */
                q = q > -127.0f ? q : -127.0f;
                qb[l] = (int8_t)q;
                s += qb[l];
            }
            const size_t bi = (size_t)i * (size_t)(cols / CPU_Q8_BLOCK) + (size_t)b;
            a->d[bi] = d;
            a->dsum[bi] = d * (float)s;
        }
    }
}

void cpu_q8_act_free(cpu_q8_act *a)
{
    free(a->q);
    free(a->d);
    free(a->dsum);
    memset(a, 0, sizeof *a);
}
