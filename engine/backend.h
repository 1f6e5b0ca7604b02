/* backend.h - the one interface between model code and the hardware.
 *
 * A backend is a core table of function pointers over "backend memory"
 * (plain host memory for the cpu backend, device memory for cuda) plus one
 * op table per model family (Mamba-1's selective scan, Mamba-2's SSD, the
 * S4 family).  A NULL family table, or a NULL optional core op,
 * means the backend does not have it: the model that needs it is refused
 * at load with a message (models/common.c, mdl_require).  Model code
 * (models/) allocates its activations and weights through the core and
 * calls the ops; it never dereferences backend memory itself.  The cpu
 * backend (kernels/cpu/) is the reference every other backend is compared
 * with; the registry (kernels/registry.c) creates them by name.
 *
 * Conventions: activations are f32 row-major (rows = tokens or sequences)
 * and every row stride is either an explicit ld* argument or stated as
 * "contiguous" (stride = width).  A weight matrix W has shape (rows, cols)
 * and matmul computes y = x W^T.  Recurrent state is f32 and
 * time/state-major so that kernels vectorise across channels.
 *
 * The step protocol: a forward pass (one prefill chunk or one decode step)
 * is bracketed by step_begin and step_end.  Between the two a backend may
 * record compute ops instead of running them (cuda records a decode step
 * and replays it as a captured graph); any memory op (read, write, copy,
 * zero, alloc, release) inside a step first runs what was recorded, so it
 * sees every earlier op's result.  After step_end everything issued has
 * run, or is queued in order before any later memory op.
 *
 * Engine thread only: a backend is not thread-safe.
 */
#ifndef SSMD_BACKEND_H
#define SSMD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"
#include "engine/tensor.h"

typedef struct bk_backend bk_backend;

/* A weight matrix as a backend holds it (made by matrix_load). */
typedef struct bk_matrix {
    /* (Fields ordered so the struct has no padding: the cuda backend
     * compares recorded ops bytewise.) */
    const void *data;      /* (rows, cols) in backend memory */
    uint64_t row_bytes;    /* bytes from one row to the next */
    const float *row_scale; /* (rows) backend memory, or NULL: output column r
                              is multiplied by row_scale[r] (per-row quantized
                              formats; no backend's matrix_load makes one yet) */
    eng_dtype dtype;       /* a float type or, where the backend reads it, a
                              block-quantized one (scales inside the blocks) */
    int rows, cols;
    int owned;             /* data was allocated by the backend (else a view) */
} bk_matrix;

/* What matmul may trade for speed.  DEFAULT follows the backend's numerics
 * option; EXACT asks for f32 accumulation of f32-rounded inputs even when
 * the backend runs "fast" (for products whose errors the model amplifies,
 * such as dt before exp()). */
typedef enum bk_precision { BK_PRECISION_DEFAULT = 0, BK_PRECISION_EXACT } bk_precision;

/* Where the decode ops find each sequence's state: slot s's conv window
 * of this layer is at pool + s * slot_stride + conv_offset, its SSM state at
 * pool + s * slot_stride + ssm_offset (offsets and stride in floats). */
typedef struct bk_state_ref {
    float *pool;
    size_t slot_stride, conv_offset, ssm_offset;
    const int32_t *slots; /* (batch) host memory, distinct slot indices */
    int batch;
} bk_state_ref;

/* ---- Mamba-1 (models/mamba1.c) ----------------------------------------- */

/* One Mamba-1 mixer's small tensors, all f32 in backend memory.  Its state
 * per slot: conv window (d_conv-1, d_inner), oldest input first, then SSM
 * state (d_state, d_inner). */
typedef struct bk_ssm_layer {
    const float *conv_w;  /* (d_conv, d_inner): tap k of channel e at [k][e] */
    const float *conv_b;  /* (d_inner) or NULL */
    const float *dt_bias; /* (d_inner) */
    const float *A;       /* (d_state, d_inner): -exp(A_log), transposed */
    const float *D;       /* (d_inner) */
    int d_inner, d_state, d_conv, dt_rank;
} bk_ssm_layer;

/* The activations one Mamba-1 sequence op reads and writes.  rows: the
 * tokens of one sequence (prefill) or one row per sequence (decode, where
 * rows = st->batch).  x and z are views into in_proj's output, x then z
 * side by side, so their strides are explicit. */
typedef struct bk_mamba1_io {
    const float *x;   /* (rows, d_inner), row stride ldx: conv input */
    int ldx;
    float *xc;        /* (rows, d_inner) contiguous: silu(conv(x)), the scan input */
    const float *dt;  /* (rows, d_inner) contiguous: dt_proj(dt_low), no bias yet */
    const float *dbc; /* (rows, dt_rank + 2*d_state) contiguous: [dt_low | B | C] */
    const float *z;   /* (rows, d_inner), row stride ldz: the gate */
    int ldz;
    float *y;         /* (rows, d_inner) contiguous: (C.h + D*xc) * silu(z) */
    int rows;
} bk_mamba1_io;

typedef struct bk_mamba1_ops {
    int max_state; /* largest d_state the scan takes; bigger models are refused */
    /* Prefill of one sequence of io->rows tokens.  conv: xc = silu(causal
     * depthwise conv of x continuing from window); window is left holding
     * the last inputs.  scan: continues from state, leaves it final; y. */
    void (*conv_prefill)(bk_backend *bk, const bk_ssm_layer *l, float *window,
                         const bk_mamba1_io *io);
    void (*scan_prefill)(bk_backend *bk, const bk_ssm_layer *l, float *state,
                         const bk_mamba1_io *io);
    /* Decode: row b belongs to the sequence in slot st->slots[b]; its
     * window / state are updated in place. */
    void (*conv_step)(bk_backend *bk, const bk_ssm_layer *l, const bk_state_ref *st,
                      const bk_mamba1_io *io);
    void (*scan_step)(bk_backend *bk, const bk_ssm_layer *l, const bk_state_ref *st,
                      const bk_mamba1_io *io);
    /* Optional (NULL: the model runs dt_proj as a matmul, then scan_step):
     * scan_step that first writes io->dt = dt_proj(the first dt_rank
     * columns of io->dbc) itself, with the bits the matmul would give, so
     * that each thread computes the dt of the channels it then scans and
     * a decode layer takes one fork-join fewer. */
    void (*scan_step_dt)(bk_backend *bk, const bk_ssm_layer *l, const bk_matrix *dt_proj,
                         const bk_state_ref *st, const bk_mamba1_io *io);
} bk_mamba1_ops;

/* ---- Mamba-2 (models/mamba2.c) ----------------------------------------- */

/* One Mamba-2 mixer's small tensors, f32 in backend memory, and its sizes.
 * d_inner = nheads * head_dim channels; the conv runs over conv_dim =
 * d_inner + 2 * ngroups * d_state channels (x, then B, then C); head h
 * reads B/C group h / (nheads / ngroups).  State per slot: conv window
 * (d_conv-1, conv_dim), oldest input first, then SSM state (nheads,
 * head_dim, d_state). */
typedef struct bk_mamba2_layer {
    const float *conv_w;  /* (d_conv, conv_dim): tap k of channel c at [k][c] */
    const float *conv_b;  /* (conv_dim) or NULL */
    const float *dt_bias; /* (nheads) */
    const float *A;       /* (nheads): -exp(A_log) */
    const float *D;       /* (nheads) */
    const float *norm_w;  /* (d_inner): the gated RMSNorm's weight */
    int d_inner, d_state, d_conv, nheads, head_dim, ngroups;
    int norm_before_gate; /* 1: norm(y) * silu(z); 0: norm(y * silu(z)) */
    float dt_min, dt_max; /* dt = clamp(softplus(dt + dt_bias), dt_min, dt_max) */
    float norm_eps;       /* of the gated RMSNorm, per group of d_inner/ngroups */
} bk_mamba2_layer;

/* The activations of one Mamba-2 sequence op; rows as in bk_mamba1_io.
 * xbc_in, dt and z are views into in_proj's output [z | xBC | dt], so their
 * strides are explicit. */
typedef struct bk_mamba2_io {
    const float *xbc_in; /* (rows, conv_dim), row stride ld_in: conv input */
    int ld_in;
    float *xbc;          /* (rows, conv_dim) contiguous: silu(conv(xbc_in)) = [x | B | C] */
    const float *dt;     /* (rows, nheads), row stride lddt: raw dt (no bias) */
    int lddt;
    const float *z;      /* (rows, d_inner), row stride ldz: the gate */
    int ldz;
    float *y;            /* (rows, d_inner) contiguous: gated-normed SSM output */
    int rows;
} bk_mamba2_io;

typedef struct bk_mamba2_ops {
    int max_state; /* largest d_state the scan takes; bigger models are refused */
    /* conv: xbc = silu(causal depthwise conv of xbc_in) continuing from the
     * window, which is left holding the last inputs.  ssd: the recurrence
     * over io->rows tokens from state, left final, with the D skip and the
     * gated RMSNorm: y. */
    void (*conv_prefill)(bk_backend *bk, const bk_mamba2_layer *l, float *window,
                         const bk_mamba2_io *io);
    void (*ssd_prefill)(bk_backend *bk, const bk_mamba2_layer *l, float *state,
                        const bk_mamba2_io *io);
    /* Decode: row b belongs to slot st->slots[b]; conv_offset / ssm_offset
     * point at this layer's window / SSM state; both updated in place. */
    void (*conv_step)(bk_backend *bk, const bk_mamba2_layer *l, const bk_state_ref *st,
                      const bk_mamba2_io *io);
    void (*ssd_step)(bk_backend *bk, const bk_mamba2_layer *l, const bk_state_ref *st,
                     const bk_mamba2_io *io);
} bk_mamba2_ops;

/* ---- The S4 / S4D family (models/s4.c) --------------------------------- */

/* One S4 / S4D layer's SSM, discretised at load, f32 in backend memory.
 * A complex vector is two planes, real then imaginary, each (N2, H): pair
 * n of channel h at [n * H + h] (and the imaginary part N2 * H further),
 * so kernels vectorise across channels.  Only one of each conjugate pair
 * is kept; outputs take twice the real part.  State per slot: (2, N2, H).
 *   diagonal (rank 0):  x' = dA x + dB u
 *   DPLR (rank > 0), the bilinear step of A = Lambda - P P^*:
 *     v  = E x - P s + dB u,      s_r = 2 Re sum_n conj(P_rn) x_n
 *     x' = Dinv (v - P t),        t_r = 2 Re sum_n R_rn v_n
 *   both:  y = gelu(Re sum_n dC_n x'_n + D u). */
typedef struct bk_s4_layer {
    int H, N2;            /* channels; complex pairs (state size N = 2 * N2) */
    int rank;             /* 0: diagonal (S4D); > 0: DPLR (S4) */
    int reserved_;        /* 0: no padding (the cuda backend compares recorded ops bytewise) */
    const float *dA;      /* (2, N2, H) diagonal: exp(dt A) or bilinear; DPLR: E = 2/dt + Lambda */
    const float *dB;      /* (2, N2, H) diagonal: discretised B; DPLR: 2 B */
    const float *dC;      /* (2, N2, H) 2 C */
    const float *D;       /* (H) */
    const float *Dinv;    /* (2, N2, H) DPLR: 1 / (2/dt - Lambda); NULL for diagonal */
    const float *P;       /* (rank, 2, N2, H) DPLR */
    const float *R;       /* (rank, 2, N2, H) DPLR: (I + P^* Dinv P)^-1 P^* Dinv */
} bk_s4_layer;

typedef struct bk_s4_ops {
    int max_rank; /* largest DPLR rank the step takes; bigger models are refused */
    /* Prefill of one sequence: u (T, H) contiguous; state (2, N2, H) is
     * continued and left final (the same as T step calls); y (T, H)
     * contiguous as in bk_s4_layer. */
    void (*prefill)(bk_backend *bk, const bk_s4_layer *l, float *state, const float *u, int T,
                    float *y);
    /* Decode: row b of u/y (batch, H) contiguous belongs to slot
     * st->slots[b], whose state of this layer is at st->ssm_offset. */
    void (*step)(bk_backend *bk, const bk_s4_layer *l, const bk_state_ref *st, const float *u,
                 float *y);
} bk_s4_ops;

/* ---- S5 (models/s5.c) ---------------------------------------------------- */

/* S5's multi-input multi-output SSM reduces, around two matmuls the model
 * runs itself (v = u B_bar^T before, y = xs C^T after), to P independent
 * complex diagonal recurrences: x_t = lambda x_{t-1} + v_t.  Complex rows
 * are split planes: a row of 2P floats holds the real parts (P) then the
 * imaginary parts (P); the state per slot is one such row. */
typedef struct bk_s5_ops {
    /* Prefill of one sequence: lam (2P) backend memory, the discretised
     * lambda_bar; v (T, 2P) contiguous, the driven inputs B_bar u_t; state
     * (2P) continued and left final.  xs (T, 2P) contiguous gets every
     * x_t (xs may be v: in place).  The same as T step calls. */
    void (*scan)(bk_backend *bk, const float *lam, int P, float *state, const float *v, int T,
                 float *xs);
    /* Decode: row b of v / xs (batch, 2P) belongs to slot st->slots[b],
     * whose state of this layer is at st->ssm_offset. */
    void (*step)(bk_backend *bk, const float *lam, int P, const bk_state_ref *st, const float *v,
                 float *xs);
    /* The skip and the activation of rows rows of H: pre = y + D * u
     * (y, u contiguous (rows, H); D (H)); writes pre to out_pre (row stride
     * ld_pre) when not NULL and gelu(pre) to out_act (row stride ld_act)
     * when not NULL.  gelu_tanh: the tanh approximation (flax's default)
     * instead of the exact erf form. */
    void (*skip_act)(bk_backend *bk, const float *y, const float *u, const float *D, int rows,
                     int H, int gelu_tanh, float *out_pre, int ld_pre, float *out_act, int ld_act);
} bk_s5_ops;

/* ---- the backend ---------------------------------------------------------- */

struct bk_backend {
    const char *name;
    void (*destroy)(bk_backend *bk);

    /* Memory.  alloc returns zeroed memory or NULL when out of memory. */
    void *(*alloc)(bk_backend *bk, size_t bytes);
    void (*release)(bk_backend *bk, void *ptr);
    void (*write)(bk_backend *bk, void *dst, const void *host_src, size_t bytes);
    void (*read)(bk_backend *bk, void *host_dst, const void *src, size_t bytes);
    void (*copy)(bk_backend *bk, void *dst, const void *src, size_t bytes);
    void (*zero)(bk_backend *bk, void *dst, size_t bytes);

    /* The step protocol (see the top of this file). */
    void (*step_begin)(bk_backend *bk);
    void (*step_end)(bk_backend *bk);

    /* Makes a weight matrix usable by matmul and embed: a view of the mmap
     * (cpu) or an upload.  Returns SSMD_OK or SSMD_ENOMEM/SSMD_EUNSUPPORTED
     * (a dtype this backend cannot read, named in the message). */
    int (*matrix_load)(bk_backend *bk, const eng_tensor *t, int rows, int cols, bk_matrix *out,
                       ssmd_err *err);
    void (*matrix_release)(bk_backend *bk, bk_matrix *m);

    /* y (m, w->rows, row stride ldy) = x (m, w->cols, row stride ldx) W^T,
     * times w->row_scale per column when set, plus bias (w->rows) when not
     * NULL. */
    void (*matmul)(bk_backend *bk, const bk_matrix *w, const float *x, int ldx, int m, float *y,
                   int ldy, const float *bias, bk_precision precision);

    /* out (n, w->cols) contiguous = rows ids[i] of w.  ids are host memory
     * and valid. */
    void (*embed)(bk_backend *bk, const bk_matrix *w, const int32_t *ids, int n, float *out);

    /* resid (n, dim) += add (when not NULL); out = rmsnorm(resid) * weight.
     * All (n, dim) contiguous. */
    void (*add_rmsnorm)(bk_backend *bk, float *resid, const float *add, const float *weight,
                        float eps, int n, int dim, float *out);

    /* Optional (NULL: absent).  resid (n, dim) += add (when not NULL);
     * out = layernorm(resid) * weight + bias (biased variance, eps inside
     * the square root, as torch).  All contiguous. */
    void (*add_layernorm)(bk_backend *bk, float *resid, const float *add, const float *weight,
                          const float *bias, float eps, int n, int dim, float *out);
    /* Optional.  Each of n rows of x (dim values, row stride ld) scaled in
     * place to unit RMS, x / sqrt(mean(x^2) + eps), without a weight
     * (Falcon-Mamba's norms of dt, B and C). */
    void (*rms_rows)(bk_backend *bk, float *x, int ld, int n, int dim, float eps);
    /* Optional.  out (n, dim) = x[:, :dim] * sigmoid(x[:, dim:]) for x
     * (n, 2*dim); both contiguous. */
    void (*glu)(bk_backend *bk, const float *x, int n, int dim, float *out);

    /* Per-family op tables; NULL: the family is not supported. */
    const bk_mamba1_ops *mamba1;
    const bk_mamba2_ops *mamba2;
    const bk_s4_ops *s4;
    const bk_s5_ops *s5;
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
