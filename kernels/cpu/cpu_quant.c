/* cpu_quant.c - the buffers of activation rows quantized to int8 blocks
 * (cpu_quant.h); the quantizing is each level's q8_rows. */
#include "kernels/cpu/cpu_quant.h"

#include <stdlib.h>
#include <string.h>

#include "engine/xalloc.h"
#include "kernels/cpu/cpu_kernels.h"

void cpu_q8_act_reserve(cpu_q8_act *a, int m, long cols)
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
}

void cpu_q8_act_fill(cpu_q8_act *a, const float *x, int ldx, int m, long cols)
{
    cpu_q8_act_reserve(a, m, cols);
    cpu_kernels_scalar.q8_rows(a, x, ldx);
}

void cpu_q8_act_free(cpu_q8_act *a)
{
    free(a->q);
    free(a->d);
    free(a->dsum);
    memset(a, 0, sizeof *a);
}
