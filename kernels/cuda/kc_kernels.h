/* kc_kernels.h - launchers of the CUDA kernels in kernels/NAME.cu, one per op;
 * the same functions launch on a GPU (nvcc build) or in the CPU emulation
 * harness (kernels/emu).  C API: the CUDA backend, the emulated backend and
 * the Check tests call it.
 *
 * Every pointer argument is device memory (host memory in the emulation),
 * including index arrays (ids, slots).  Shapes follow engine/backend.h:
 * activations f32 row-major, conv window (d_conv-1, d_inner), SSM state
 * (d_state, d_inner).  Launchers only enqueue work on the stream; they never
 * allocate, synchronise or check errors (the backend does).
 */
#ifndef SSMD_KC_KERNELS_H
#define SSMD_KC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *kc_stream; /* = cudaStream_t */

/* Where a decode step's row b finds its state: at pool + slots[b] *
 * slot_stride + offset (floats); a negative slot is padding (its output
 * row is zeroed, no state is touched). */
typedef struct kc_slots {
    float *pool;
    size_t slot_stride, offset;
    const int32_t *slots; /* (batch) */
    int batch;
} kc_slots;

/* Weight dtypes; the values are engine/tensor.h's eng_dtype.  Q8_0 .. Q5_0
 * are GGUF's block-quantized types (layouts in engine/quant.h; quant.cu
 * reads them), rows of whole blocks one after another, so element i is in
 * block i / (weights per block). */
enum {
    KC_DT_F32 = 0, KC_DT_F16 = 1, KC_DT_BF16 = 2,
    KC_DT_Q8_0 = 4, KC_DT_Q4_0 = 5, KC_DT_Q4_K = 6, KC_DT_Q6_K = 7, KC_DT_Q5_0 = 8
};
static inline int kc_dt_blocked(int dt) { return dt >= KC_DT_Q8_0 && dt <= KC_DT_Q5_0; }

/* The generic scan keeps up to this many state values per thread; the same
 * bound as the CPU backend's (models above it are rejected at load). */
#define KC_MAX_STATE 256
/* kc_gemv handles at most this many rows of x per launch. */
#define KC_GEMV_MAX 16

/* Knobs the backend chooses; the emulated tests shrink them so that small
 * shapes still cover multi-chunk and multi-pass paths. */
typedef struct kc_tuning {
    int scan_chunk;       /* time steps per chunk of the prefill scan */
    int carry_rows;       /* chunks per pass of the carry prefix, 1..32 */
    int gemv_max_rows;    /* matmuls with <= this many rows use kc_gemv (<= KC_GEMV_MAX) */
    int gemv_wide;        /* 1: kc_gemv_wide where the rows allow (SSMD_CUDA_GEMV_WIDE=0: never) */
    size_t panel_floats;  /* f32 panel for widening 16-bit weights before a GEMM */
    int graph_cache;      /* decode-step graphs kept (least recently used go) */
} kc_tuning;

void kc_tuning_default(kc_tuning *t);

/* Causal depthwise conv1d + SiLU.  Prefill: T rows of x (stride ldx), from
 * window, which is left holding the last d_conv-1 inputs.  Step: row b of x
 * belongs to the sequence in slot slots[b]; its window is at pool +
 * slots[b] * slot_stride + offset and is updated in place; a negative slot is
 * padding: its output row is zeroed and no state is touched. */
typedef struct kc_conv_args {
    const float *w;            /* (K, E): tap k of channel e at [k][e] */
    const float *b;            /* (E) or NULL */
    int E, K;
    const float *x;            /* (rows, E), row stride ldx */
    int ldx;
    float *out;                /* (rows, E) */
    float *window;             /* prefill: (K-1, E) */
    int T;                     /* prefill: rows */
    kc_slots at;               /* step */
} kc_conv_args;

void kc_conv_prefill(const kc_conv_args *a, kc_stream s);
void kc_conv_step(const kc_conv_args *a, kc_stream s);

/* Selective scan (softplus(dt + dt_bias), ZOH, D skip, SiLU(z) gate), see
 * backend.h.  Prefill runs from state (N, E) and leaves it final; it splits
 * T into chunks scanned in parallel, joined by a parallel prefix over the
 * chunks' (decay, offset) pairs; scratch holds kc_scan_prefill_scratch()
 * floats (NULL: one chunk, no parallelism in time).  Step: as conv step,
 * state at pool + slots[b] * slot_stride + offset. */
typedef struct kc_scan_args {
    const float *dt_bias, *A, *D; /* (E), (N, E), (E) */
    int E, N, R;
    const float *x, *dt;          /* (rows, E) */
    const float *dbc;             /* (rows, R + 2N): [dt_low | B | C] */
    const float *z;               /* (rows, E), row stride ldz */
    int ldz;
    float *y;                     /* (rows, E) */
    float *state;                 /* prefill */
    int T;
    kc_slots at;                  /* step */
} kc_scan_args;

size_t kc_scan_prefill_scratch(int E, int N, int T, const kc_tuning *t);
void kc_scan_prefill(const kc_scan_args *a, float *scratch, const kc_tuning *t, kc_stream s);
void kc_scan_step(const kc_scan_args *a, kc_stream s);

/* Mamba-2's SSD recurrence per head with the D skip, then the gated
 * RMSNorm per group (see engine/backend.h, bk_mamba2_layer).  Prefill runs
 * io rows 0..T-1 in order from state (H, P, N), left final; step: row b
 * belongs to slot slots[b] (state at pool + slots[b] * slot_stride +
 * offset), a negative slot is padding (output zero, no state touched). */
typedef struct kc_ssd_args {
    const float *dt_bias, *A, *D; /* (H) each; A = -exp(A_log) */
    const float *norm_w;          /* (E) */
    int E, N, H, P, G;            /* d_inner = H * P; G groups */
    float dt_min, dt_max, eps;
    int norm_before_gate;
    const float *xbc;             /* (rows, E + 2*G*N) contiguous: [x | B | C] */
    const float *dt;              /* (rows, H), row stride lddt: raw dt */
    int lddt;
    const float *z;               /* (rows, E), row stride ldz */
    int ldz;
    float *y;                     /* (rows, E) */
    float *state;                 /* prefill */
    int T;
    int chunk;                    /* chunked prefill: tokens per chunk, 1..KC_SSD_MAX_CHUNK (0: KC_SSD_CHUNK) */
    kc_slots at;                  /* step */
} kc_ssd_args;

void kc_ssd_prefill(const kc_ssd_args *a, kc_stream s);
void kc_ssd_step(const kc_ssd_args *a, kc_stream s);

/* The same prefill in the chunked form of SSD (Dao & Gu): the products
 * of every chunk, head and group through four batched GEMMs (the backend's
 * cuBLAS, in stream order), the decays, transposes and the pass of the
 * state from chunk to chunk in kernels; equal to kc_ssd_prefill within
 * float rounding.  scratch: device memory of kc_ssd_chunk_scratch(a)
 * floats (it grows with T). */
enum { KC_SSD_CHUNK = 64, KC_SSD_MAX_CHUNK = 64 };
/* For i < batch: y_i (m, n; ldy) = x_i (m, k; ldx) w_i^T, w_i (n, k; ldw),
 * with x_i = x + i * sx, w_i = w + i * sw, y_i = y + i * sy; f32 device
 * memory. */
typedef void (*kc_gemm_fn)(void *ctx, int batch, int m, int n, int k, const float *x, int ldx, long sx,
                           const float *w, int ldw, long sw, float *y, int ldy, long sy);
size_t kc_ssd_chunk_scratch(const kc_ssd_args *a);
void kc_ssd_prefill_chunked(const kc_ssd_args *a, float *scratch, kc_gemm_fn gemm, void *ctx,
                            kc_stream s);

/* The S4 / S4D recurrence (engine/backend.h, bk_s4_layer), one thread per
 * channel; u and y (rows, H) contiguous.  Prefill from state (2, N2, H),
 * left final: a prompt longer than one chunk (diagonal) or three (DPLR)
 * runs a parallel scan over time chunks in scratch (kc_s4_prefill_scratch()
 * floats; s4.cu and dplr_scan.cu say how), anything else (a short prompt,
 * scratch NULL) walks the tokens in order.  Step: row b in slot slots[b]
 * (a negative slot is padding: output zero, no state touched). */
#define KC_S4_MAX_RANK 16
typedef struct kc_s4_args {
    int H, N2, R;
    const float *dA, *dB, *dC, *D, *Dinv, *P, *Rw; /* as bk_s4_layer (Rw: its R) */
    const float *u;
    float *y;
    float *state;                 /* prefill */
    int T;
    kc_slots at;                  /* step */
} kc_s4_args;

size_t kc_s4_prefill_scratch(const kc_s4_args *a, const kc_tuning *t);
void kc_s4_prefill(const kc_s4_args *a, float *scratch, const kc_tuning *t, kc_stream s);
void kc_s4_step(const kc_s4_args *a, kc_stream s);
/* The chunked prefill of a DPLR layer (R > 0) in chunks of L tokens, T >
 * L (dplr_scan.cu): kc_s4_dplr_prefill runs the four passes below in
 * order on scratch of kc_s4_dplr_scratch() floats, the chunks' ends
 * (chunks - 1, 2, N2, H) first and the transition (2 N2, 2, N2, H) after
 * them.  The passes are public so that tests can take the scan apart. */
size_t kc_s4_dplr_scratch(const kc_s4_args *a, int L);
void kc_s4_dplr_prefill(const kc_s4_args *a, int L, float *scratch, kc_stream s);
/* 1: local := the end of each chunk but the last (chunk 0 from state,
 * writing its outputs; the others from zero, no outputs). */
void kc_s4_dplr_local(const kc_s4_args *a, int L, float *local, kc_stream s);
/* 2: M := the transition of `steps` zero-input tokens (L in the scan). */
void kc_s4_dplr_transition(const kc_s4_args *a, int steps, float *M, kc_stream s);
/* 3: local[c] += M local[c - 1] in chunk order: the true chunk ends. */
void kc_s4_dplr_carry(const kc_s4_args *a, int L, const float *M, float *local, kc_stream s);
/* 4: chunks 1.. from their true starts: outputs, the final state. */
void kc_s4_dplr_fix(const kc_s4_args *a, int L, float *local, kc_stream s);
/* The S5 recurrence (engine/backend.h, bk_s5_ops): P independent complex
 * diagonal recurrences x' = lam x + v, rows of v / xs 2P wide (real plane
 * then imaginary); xs may be v.  Scan: one sequence from state (2P), left
 * final, by the chunked scan of s5.cu in scratch (kc_s5_scan_scratch()
 * floats; NULL or one chunk: in order).  Step: row b in slot slots[b] (a
 * negative slot is padding: its xs row zeroed, no state touched). */
typedef struct kc_s5_args {
    const float *lam;             /* (2P) lambda_bar */
    int P;
    const float *v;               /* (rows, 2P) */
    float *xs;                    /* (rows, 2P) */
    float *state;                 /* scan */
    int T;
    kc_slots at;                  /* step */
} kc_s5_args;

size_t kc_s5_scan_scratch(const kc_s5_args *a, const kc_tuning *t);
void kc_s5_scan(const kc_s5_args *a, float *scratch, const kc_tuning *t, kc_stream s);
void kc_s5_step(const kc_s5_args *a, kc_stream s);
/* pre = y + D u over (rows, H) (y, u contiguous, D (H)): pre to out_pre
 * (row stride ld_pre) and gelu(pre) (tanh form when gelu_tanh, else erf)
 * to out_act (ld_act), each when not NULL. */
void kc_s5_skip_act(const float *y, const float *u, const float *D, int rows, int H, int gelu_tanh,
                    float *out_pre, int ld_pre, float *out_act, int ld_act, kc_stream s);

/* The carry pass of the chunked scans of a complex diagonal recurrence
 * x' = lam x + input (s4.cu, s5.cu): n elements, lam (2, n) (real plane
 * then imaginary); local (n_chunks, 2, n) holds each chunk's final state,
 * chunk 0's from the true initial state and the others' from zero.  Turns
 * local[c] into the true state at the end of chunk c (chunks of len steps,
 * the last one last_len) and copies the last into state (2, n). */
void kc_diag_carry(const float *lam, size_t n, float *local, int n_chunks, int len, int last_len,
                   float *state, kc_stream s);
/* The chunk length of such a scan over T steps of `width` independent
 * elements (threads): tune's scan_chunk, or longer for a long input; 0
 * when T fits one chunk (walk in order). */
int kc_diag_chunk(int width, int T, const kc_tuning *t);

/* resid (n, dim) += add (if not NULL); out = layernorm(resid) * weight +
 * bias (biased variance, eps inside the square root). */
void kc_add_layernorm(float *resid, const float *add, const float *weight, const float *bias,
                      float eps, int n, int dim, float *out, kc_stream s);
/* out (n, dim) = x[:, :dim] * sigmoid(x[:, dim:]). */
void kc_glu(const float *x, int n, int dim, float *out, kc_stream s);

/* resid (n, dim) += add (if not NULL); out = rmsnorm(resid) * weight. */
void kc_add_rmsnorm(float *resid, const float *add, const float *weight, float eps, int n, int dim,
                    float *out, kc_stream s);
/* Rows [0, n) of x (stride ld), dim values each, scaled in place by
 * 1 / sqrt(mean square + eps): no weight (Falcon-Mamba's dt, B, C). */
void kc_rms_rows(float *x, int ld, int n, int dim, float eps, kc_stream s);
/* out (n, cols) = rows ids[i] of w (dtype dt), as f32. */
void kc_embed(const void *w, int dt, int cols, const int32_t *ids, int n, float *out, kc_stream s);
/* out[i] = index of the largest of logits row i (row stride ld); ties go
 * to the lowest index; NaNs are never chosen.  Only tests call it today:
 * it is ready for greedy sampling on the device (the sampler reads logits
 * back to the host instead). */
void kc_argmax(const float *logits, int n, int V, int ld, int32_t *out, kc_stream s);

/* y (m, rows; stride ldy) = x (m, cols; stride ldx) W^T (+ bias), W (rows,
 * cols) of dtype dt, f32 accumulation; m <= KC_GEMV_MAX.  Reads W once. */
void kc_gemv(const void *w, int dt, int rows, int cols, const float *x, int ldx, int m, float *y,
             int ldy, const float *bias, kc_stream s);
/* The same with 16-byte weight loads, two in flight per lane (gemv.cu
 * says why).  Returns 0, launching nothing, when W's rows do not start on
 * 16 bytes (w unaligned, or cols * element size not a multiple of 16): then
 * use kc_gemv.  1 when it ran. */
int kc_gemv_wide(const void *w, int dt, int rows, int cols, const float *x, int ldx, int m, float *y,
                 int ldy, const float *bias, kc_stream s);
/* out (m, k; contiguous) = x (m, k; stride ldx) rounded to bf16, to
 * nearest even (NaN stays NaN). */
void kc_narrow_bf16(const float *x, int ldx, int m, int k, uint16_t *out, kc_stream s);
/* out[i] = w[i] as f32 for i < n (w of dtype dt; for a block-quantized
 * dt, n is a whole number of rows). */
void kc_widen(const void *w, int dt, size_t n, float *out, kc_stream s);
/* kc_gemv for a block-quantized dt (kc_gemv hands such W here): a warp
 * per row stages the blocks of 1024 weights at a time in shared memory and
 * dequantises them in registers (quant.cu says how).  w 2-byte aligned
 * (every block size is even). */
void kc_gemv_quant(const void *w, int dt, int rows, int cols, const float *x, int ldx, int m, float *y,
                   int ldy, const float *bias, kc_stream s);
/* out (n, cols) = rows ids[r] of w (ids NULL: rows 0..n-1), block-quantized
 * dt with rows of whole blocks, dequantised to f32: kc_embed and kc_widen
 * hand such W here.  64-bit n * cols: a widened panel may exceed 2^31. */
void kc_dequant_rows(const void *w, int dt, size_t cols, const int32_t *ids, size_t n, float *out,
                     kc_stream s);
/* y[i][j] += bias[j] for i < m, j < n (row stride ldy). */
void kc_add_bias(float *y, int ldy, int m, int n, const float *bias, kc_stream s);

#ifdef __cplusplus
}
#endif

#endif
