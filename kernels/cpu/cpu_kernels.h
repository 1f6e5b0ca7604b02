/* cpu_kernels.h - the CPU backend's instruction-set levels: the table of
 * SIMD kernels one level provides, and the choice of a level at run time.
 *
 * One binary carries every level its target architecture has (scalar and
 * AVX2 / AVX-512 on x86-64, scalar and NEON on aarch64): the same generic
 * kernels (cpu_gen_*.h) compiled once per level (cpu_isa_*.c, each with its
 * own flags).  The backend asks cpu_kernels_choose for a table when it is
 * created, from cpuid / hwcaps or the SSMD_CPU environment variable, and
 * passes that table down to every op.  Nothing here runs a level's code
 * before the CPU has been checked for it.
 */
#ifndef SSMD_CPU_KERNELS_H
#define SSMD_CPU_KERNELS_H

#include "engine/backend.h"
#include "engine/error.h"
#include "kernels/cpu/cpu_quant.h"

typedef enum cpu_level {
    CPU_LEVEL_SCALAR = 0, /* plain C at the build's baseline */
    CPU_LEVEL_NEON,       /* aarch64 Advanced SIMD (always present there) */
    CPU_LEVEL_AVX2,       /* AVX2 + FMA + F16C */
    CPU_LEVEL_AVX512,     /* AVX-512 F/BW/DQ/VL (x86-64-v4) */
    CPU_LEVEL_COUNT
} cpu_level;

/* What the test-only math entry computes. */
typedef enum cpu_math_fn { CPU_MATH_EXP, CPU_MATH_SOFTPLUS, CPU_MATH_SILU } cpu_math_fn;

/* What an S4 channel walk writes to y: the activated output gelu(Re C x +
 * D u), the raw Re C x (input still drives the state), or, for the scan's
 * correction, gelu(y + Re C x + D u) with the state evolving without input. */
enum { CPU_S4_OUT_ACT = 0, CPU_S4_OUT_RAW = 1, CPU_S4_OUT_FIX = 2 };

typedef struct cpu_kernels {
    cpu_level level;
    const char *name; /* "scalar", "neon", "avx2", "avx512" */
    const char *variant; /* "" or the extra instructions this table of the
                            level uses: "+vnni" (avx512), "+dotprod" (neon) */

    /* Rows [r0, r1) of y (m, w->rows; stride ldy) = x (m, w->cols; stride
     * ldx) W^T (+ bias): the streaming matmul decode lives on, each 4-row
     * panel of W read once per call. */
    void (*gemv_rows)(const bk_matrix *w, const float *x, int ldx, int m, float *y, int ldy,
                      const float *bias, long r0, long r1);
    /* The same for block-quantized W (Q8_0, Q4_0, Q4_K, Q6_K, Q5_0) against the
     * rows of x quantized to int8 (cpu_quant.h): rows [r0, r1) of y (a->m,
     * w->rows; stride ldy). */
    void (*qgemv_rows)(const bk_matrix *w, const cpu_q8_act *a, float *y, int ldy,
                       const float *bias, long r0, long r1);
    /* Rows of x (stride ldx) quantized for qgemv_rows into a, which
     * cpu_q8_act_reserve sized (a->m rows of a->cols). */
    void (*q8_rows)(cpu_q8_act *a, const float *x, int ldx);
    /* n weights of one row (dtype dt, quantized ones included) to f32. */
    void (*row_to_f32)(const void *row, eng_dtype dt, long n, float *dst);
    /* Sum of n floats: the bandwidth probe of bench_engine. */
    double (*sum)(const float *p, long n);
    /* y[i] = fn(x[i]) with the vector math the kernels use (tests). */
    void (*math)(cpu_math_fn fn, const float *x, long n, float *y);

    /* Mamba-1 (cpu_ssm.c): channels [e0, e1) of the causal conv over T
     * steps (window (d_conv-1, d_inner), oldest first, left holding the
     * last inputs) and of the selective scan (state (d_state, d_inner)). */
    void (*conv_channels)(const bk_ssm_layer *l, float *window, const float *x, long ldx, int T,
                          float *xc, long ldxc, long e0, long e1);
    void (*scan_channels)(const bk_ssm_layer *l, float *state, const float *x, const float *dt,
                          const float *z, long ldx, long ldz, const float *dbc, long ldd, int T,
                          float *y, long e0, long e1);

    /* Mamba-2 (cpu_ssd.c): the SSD recurrence of heads [h0, h1) for one
     * token (row xbc = [x | B | C], raw dt row dtr, state (nheads,
     * head_dim, d_state)), writing y before the gated norm. */
    void (*ssd_token)(const bk_mamba2_layer *l, float *state, const float *xbc, const float *dtr,
                      float *y, int h0, int h1);
    /* The same heads over one chunk of Q tokens at once, in the matmul
     * form (cpu_gen_ssd_chunk.h; its products are OpenBLAS sgemm): rows xbc (Q, conv_dim) contiguous, raw dt
     * (Q, nheads) of row stride lddt, y (Q, d_inner) contiguous; the state
     * is continued and left at the chunk's end.  scratch holds
     * cpu_ssd_chunk_carve(l, Q, NULL, NULL) floats of the caller's thread. */
    void (*ssd_chunk)(const bk_mamba2_layer *l, float *state, const float *xbc, const float *dtr,
                      long lddt, int Q, float *y, int h0, int h1, float *scratch);
    /* S4 (cpu_s4.c): channels [h0, h1) of a layer, T steps on one state
     * (2, N2, H), output mode CPU_S4_OUT_*; and the decode step of a
     * diagonal layer for slots [b0, b1) of channels [h0, h0 + w), w <= 16. */
    void (*s4_block)(const bk_s4_layer *l, float *state, const float *u, long ldu, int T, float *y,
                     long ldy, int h0, int h1, int mode);
    void (*s4_diag_step)(const bk_s4_layer *l, const bk_state_ref *st, const float *u, float *y,
                         int h0, int w, int b0, int b1);
} cpu_kernels;

/* One thread's scratch of ssd_chunk for chunks of up to Q tokens and
 * head_dim P. */
typedef struct cpu_ssd_scratch {
    float *cb;  /* (Q, Q): C B^T of the group */
    float *m;   /* (Q, Q): (C B^T) o L diag(dt) of the head */
    float *yo;  /* (Q, P): the incoming state read by each token's C */
    float *xw;  /* (Q, P): X weighted by each token's share of the final state */
    float *dt;  /* (Q): the head's clamped dt */
    float *a;   /* (Q): dt A */
    float *cum; /* (Q): running sum of dt A within the chunk */
    float *seg; /* (Q): sums of dt A over segments ending at one token */
    float *w;   /* (Q): dt exp(cum_last - cum) */
} cpu_ssd_scratch;

/* Carves base into *out (either may be NULL) and returns the floats used;
 * every array starts on a 64-byte boundary when base does. */
static inline size_t cpu_ssd_chunk_carve(const bk_mamba2_layer *l, int Q, float *base,
                                         cpu_ssd_scratch *out)
{
    const size_t P = (size_t)l->head_dim, q = (size_t)Q;
    const size_t sizes[9] = {q * q, q * q, q * P, q * P, q, q, q, q, q};
    cpu_ssd_scratch unused;
    cpu_ssd_scratch *s = out ? out : &unused;
    float **const dst[9] = {&s->cb, &s->m, &s->yo, &s->xw, &s->dt, &s->a, &s->cum, &s->seg, &s->w};
    size_t used = 0;
    for (int i = 0; i < 9; i++) {
        *dst[i] = base ? base + used : NULL;
        used += (sizes[i] + 15) / 16 * 16;
    }
    return used;
}

/* "scalar", "neon", "avx2", "avx512". */
const char *cpu_level_name(cpu_level l);
/* Name -> level; -1 for an unknown name, *out unchanged. */
int cpu_level_parse(const char *name, cpu_level *out);

/* Level l's table when this binary has it and this CPU runs it; NULL
 * otherwise.  Where the CPU has a level's extra instructions (VNNI with
 * AVX-512, the dot product with NEON), the variant table that uses them.
 * Any thread; the tables are constant. */
const cpu_kernels *cpu_kernels_for(cpu_level l);
/* The best level this CPU runs (never NULL: scalar always runs). */
const cpu_kernels *cpu_kernels_best(void);

/* Fills out with the tables of every level this binary and CPU run,
 * scalar first, best last; returns how many (at least 1).  For start-up
 * logs and for tests that cover every level the machine has. */
int cpu_kernels_list(const cpu_kernels *out[CPU_LEVEL_COUNT]);

/* The table the backend uses: the level named by `forced` (the SSMD_CPU
 * environment variable; NULL or "" = the best), in its best variant here;
 * "<level>-plain" names the level's table without VNNI / dotprod, what a
 * CPU without them runs (benches, tests).  Returns SSMD_OK, or
 * SSMD_EINVAL for an unknown name / SSMD_EUNSUPPORTED for a level this
 * binary or CPU lacks, with a message naming the levels available; *out is
 * then unchanged. */
int cpu_kernels_choose(const char *forced, const cpu_kernels **out, ssmd_err *err);

/* One line for start-up logs: the level a cpu backend created now uses and
 * why, e.g. "avx2 (forced by SSMD_CPU; this CPU runs scalar, avx2, avx512)"
 * or "avx512 (the best of scalar, avx2, avx512)". */
void cpu_kernels_describe(char *buf, size_t size);

/* Each level's table, defined by its cpu_isa_*.c (only those the target
 * architecture has are linked). */
extern const cpu_kernels cpu_kernels_scalar, cpu_kernels_neon, cpu_kernels_avx2,
    cpu_kernels_avx2vnni, cpu_kernels_avx512, cpu_kernels_avx512vnni, cpu_kernels_neon_dotprod;

#endif
