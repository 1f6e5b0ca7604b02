/* cpu_quant.h - activations quantized to int8 for the quantized matmul.
 *
 * Decode multiplies block-quantized weights (engine/quant.h) by a few rows
 * of f32 activations.  Rather than widening every weight to f32, each row
 * of x is quantized once per matmul to int8 in blocks of 32 with one f32
 * scale (like Q8_0, but the scale stays f32), so that the kernels
 * (cpu_gen_qmatmul.h) multiply 8-bit integers exactly and apply the two
 * blocks' scales once per 32 (or 16) products.  Numerics: x is rounded to
 * 8 bits (relative error up to 1/254 of its block's largest value); every
 * integer dot product is exact; the scaled partial sums accumulate in f32.
 * The quantizing itself is each level's q8_rows (cpu_kernels.h), all of
 * them to the same bytes.
 */
#ifndef SSMD_CPU_QUANT_H
#define SSMD_CPU_QUANT_H

#include <stddef.h>
#include <stdint.h>

enum { CPU_Q8_BLOCK = 32 };

typedef struct cpu_q8_act {
    int8_t *q;      /* (m, cols) x / d, rounded to nearest */
    float *d;       /* (m, cols / 32) each block's scale: max |x| / 127 */
    float *dsum;    /* (m, cols / 32) d * (sum of the block's q): what Q4_K's
                       mins multiply, kept as a float so that the kernel's
                       inner loop converts nothing */
    int m;
    long cols;      /* a multiple of 32 */
    size_t cap_q, cap_blocks; /* allocated elements of q and of d / sum */
} cpu_q8_act;

/* Makes a hold m rows of cols (a multiple of 32) values, growing its
 * buffers as needed (xmalloc: aborts when out of memory). */
void cpu_q8_act_reserve(cpu_q8_act *a, int m, long cols);

/* Quantizes rows [0, m) of x (stride ldx) into a with the scalar level's
 * q8_rows: the reference that tests and benches hold every level to. */
void cpu_q8_act_fill(cpu_q8_act *a, const float *x, int ldx, int m, long cols);

/* Frees the buffers; a is then empty (and may be filled again). */
void cpu_q8_act_free(cpu_q8_act *a);

#endif
