/* backend.h - the one interface between model code and the hardware.
 *
 * A backend is a struct of function pointers over "backend memory": plain
 * host memory for the cpu backend, device memory for cuda.  Model code
 * (models/) allocates its activations and weights through it and calls the
 * ops below; it never dereferences backend memory itself.  The cpu backend
 * is the reference every other backend is compared with.
 *
 * Conventions: activations are f32 row-major (rows = tokens or sequences);
 * a weight matrix W has shape (rows, cols) and matmul computes y = x W^T.
 * Recurrent state is fp32 and time/state-major so that kernels vectorise
 * across channels:  conv window (d_conv-1, d_inner), oldest input first;
 * SSM state (d_state, d_inner).
 */
#ifndef SSMD_BACKEND_H
#define SSMD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"
#include "engine/weights/safetensors.h"

typedef struct bk_matrix {
    const void *data; /* (rows, cols) in backend memory */
    eng_dtype dtype;  /* F32, F16 or BF16 */
    int rows, cols;
    int owned;        /* data was allocated by the backend (else a view) */
} bk_matrix;

/* One Mamba-1 mixer's small tensors, all f32 in backend memory. */
typedef struct bk_ssm_layer {
    const float *conv_w;  /* (d_conv, d_inner): tap k of channel e at [k][e] */
    const float *conv_b;  /* (d_inner) or NULL */
    const float *dt_bias; /* (d_inner) */
    const float *A;       /* (d_state, d_inner): -exp(A_log), transposed */
    const float *D;       /* (d_inner) */
    int d_inner, d_state, d_conv, dt_rank;
} bk_ssm_layer;

/* Where the decode ops find each sequence's state: slot s's conv window
 * of this layer is at pool + s * slot_stride + conv_offset, its SSM state at
 * pool + s * slot_stride + ssm_offset (offsets and stride in floats). */
typedef struct bk_state_ref {
    float *pool;
    size_t slot_stride, conv_offset, ssm_offset;
    const int32_t *slots; /* (batch) host memory, distinct slot indices */
    int batch;
} bk_state_ref;

/* One S4 / S4D layer's SSM (models/s4.c), discretised at load, f32 in
 * backend memory.  A complex vector is two planes, real then imaginary,
 * each (N2, H): pair n of channel h at [n * H + h] (and the imaginary part
 * N2 * H further), so kernels vectorise across channels.  Only one of each
 * conjugate pair is kept; outputs take twice the real part.
 *   diagonal (rank 0):  x' = dA x + dB u
 *   DPLR (rank > 0), the bilinear step of A = Lambda - P P^*:
 *     v  = E x - P s + dB u,      s_r = 2 Re sum_n conj(P_rn) x_n
 *     x' = Dinv (v - P t),        t_r = 2 Re sum_n R_rn v_n
 *   both:  y = gelu(Re sum_n dC_n x'_n + D u). */
typedef struct bk_s4_layer {
    int H, N2;            /* channels; complex pairs (state size N = 2 * N2) */
    int rank;             /* 0: diagonal (S4D); > 0: DPLR (S4) */
    const float *dA;      /* (2, N2, H) diagonal: exp(dt A) or bilinear; DPLR: E = 2/dt + Lambda */
    const float *dB;      /* (2, N2, H) diagonal: discretised B; DPLR: 2 B */
    const float *dC;      /* (2, N2, H) 2 C */
    const float *D;       /* (H) */
    const float *Dinv;    /* (2, N2, H) DPLR: 1 / (2/dt - Lambda); NULL for diagonal */
    const float *P;       /* (rank, 2, N2, H) DPLR */
    const float *R;       /* (rank, 2, N2, H) DPLR: (I + P^* Dinv P)^-1 P^* Dinv */
} bk_s4_layer;

typedef struct bk_backend bk_backend;
struct bk_backend {
    const char *name;
    void *impl;
    void (*destroy)(bk_backend *bk);

    /* Memory.  alloc returns zeroed memory or NULL when out of memory. */
    void *(*alloc)(bk_backend *bk, size_t bytes);
    void (*release)(bk_backend *bk, void *ptr);
    void (*write)(bk_backend *bk, void *dst, const void *host_src, size_t bytes);
    void (*read)(bk_backend *bk, void *host_dst, const void *src, size_t bytes);
    void (*copy)(bk_backend *bk, void *dst, const void *src, size_t bytes);
    void (*zero)(bk_backend *bk, void *dst, size_t bytes);

    /* Makes a weight matrix usable by matmul: a view of the mmap (cpu) or an
     * upload.  Returns SSMD_OK or SSMD_ENOMEM/SSMD_EUNSUPPORTED. */
    int (*matrix_load)(bk_backend *bk, const eng_tensor *t, int rows, int cols, bk_matrix *out,
                       ssmd_err *err);
    void (*matrix_release)(bk_backend *bk, bk_matrix *m);

    /* y (m, w->rows, row stride ldy) = x (m, w->cols, row stride ldx) W^T
     * (+ bias (w->rows) when not NULL). */
    void (*matmul)(bk_backend *bk, const bk_matrix *w, const float *x, int ldx, int m, float *y,
                   int ldy, const float *bias);

    /* out (n, w->cols) = rows ids[i] of w.  ids are host memory and valid. */
    void (*embed)(bk_backend *bk, const bk_matrix *w, const int32_t *ids, int n, float *out);

    /* resid (n, dim) += add (when not NULL); out = rmsnorm(resid) * weight. */
    void (*add_rmsnorm)(bk_backend *bk, float *resid, const float *add, const float *weight,
                        float eps, int n, int dim, float *out);

    /* Prefill of one sequence of T tokens.  xz (T, 2*d_inner): x then z.
     * conv: xc (T, d_inner) = silu(causal depthwise conv of x, continuing
     * from window (d_conv-1, d_inner)); window is left holding the last inputs.
     * scan: from state (d_state, d_inner); dbc (T, dt_rank + 2*d_state) holds
     * [dt_low | B | C]; dt (T, d_inner) is dt_proj(dt_low) without bias;
     * y (T, d_inner) = (C.h + D*x) * silu(z); state is left final. */
    void (*conv_prefill)(bk_backend *bk, const bk_ssm_layer *l, float *window, const float *xz,
                         int T, float *xc);
    void (*scan_prefill)(bk_backend *bk, const bk_ssm_layer *l, float *state, const float *xc,
                         const float *dt, const float *dbc, const float *xz, int T, float *y);

    /* Decode: row b of xz/xc/dt/dbc/y belongs to sequence b whose state is in
     * slot st->slots[b]; states are updated in place. */
    void (*conv_step)(bk_backend *bk, const bk_ssm_layer *l, const bk_state_ref *st,
                      const float *xz, float *xc);
    void (*scan_step)(bk_backend *bk, const bk_ssm_layer *l, const bk_state_ref *st,
                      const float *xc, const float *dt, const float *dbc, const float *xz,
                      float *y);

    /* ---- Optional: the S4 / S4D family.  A backend may leave these NULL;
     * models/s4.c then refuses to load with SSMD_EUNSUPPORTED. ---- */

    /* resid (n, dim) += add (when not NULL); out = layernorm(resid) * weight
     * + bias (biased variance, eps inside the square root, as torch). */
    void (*add_layernorm)(bk_backend *bk, float *resid, const float *add, const float *weight,
                          const float *bias, float eps, int n, int dim, float *out);
    /* out (n, dim) = x[:, :dim] * sigmoid(x[:, dim:]) for x (n, 2*dim). */
    void (*glu)(bk_backend *bk, const float *x, int n, int dim, float *out);
    /* Prefill of one sequence: u (T, H); state (2, N2, H) is continued and
     * left final (the same as T s4_step calls); y (T, H) as in bk_s4_layer. */
    void (*s4_prefill)(bk_backend *bk, const bk_s4_layer *l, float *state, const float *u, int T,
                       float *y);
    /* Decode: row b of u/y (batch, H) belongs to slot st->slots[b], whose
     * state of this layer is at st->ssm_offset; updated in place. */
    void (*s4_step)(bk_backend *bk, const bk_s4_layer *l, const bk_state_ref *st, const float *u,
                    float *y);
};

/* How a backend may compute.  exact: f32 activations and f32 accumulation
 * everywhere (what the exactness tests pin; the default).  fast: the
 * backend may use its fast units (TF32/bf16 tensor cores) where they change
 * results only by rounding; each backend documents what it does. */
typedef enum bk_numerics { BK_NUMERICS_EXACT = 0, BK_NUMERICS_FAST } bk_numerics;

typedef struct bk_options {
    int threads;          /* compute threads, 0 = all cores (cpu) */
    bk_numerics numerics; /* exact (default) or fast */
    int device;           /* accelerator index (cuda), 0 = the first */
} bk_options;

void bk_options_defaults(bk_options *o);
/* "exact" / "fast" -> *out; SSMD_EINVAL for anything else. */
int bk_numerics_parse(const char *name, bk_numerics *out);
const char *bk_numerics_name(bk_numerics n);

/* Creates the named backend ("cpu"; "cuda" when built with it) from the
 * registry (kernels/registry.c).  opts NULL = defaults.  Returns SSMD_OK,
 * or SSMD_EUNSUPPORTED naming the backends this binary has. */
int bk_backend_create(const char *name, const bk_options *opts, bk_backend **out, ssmd_err *err);

#endif
