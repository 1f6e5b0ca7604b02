/* backend_core.cu - the compute ops of the CUDA backend (and of its emulated
 * twin): each bk_backend op either runs at once (kernel launches and GEMMs on
 * the stream) or is recorded into the current trace; flushing a trace runs it
 * eagerly, captures it as a graph or replays its graph (see backend_core.h).
 *
 * Matmul dispatch (numerics fast and bf16 weights: more rows than
 * tune.gemv_max_rows go to the bf16 tensor-core GEMM, x rounded to bf16):
 * up to tune.gemv_max_rows rows of x go to kc_gemv (reads
 * the weights once, any dtype, f32 accumulation: the decode path); more rows
 * go to the device GEMM in f32, 16-bit weights first widened to f32 panel by
 * panel (a panel stays in L2), so that results do not depend on the batch
 * size beyond f32 rounding.  Never allocates device memory itself.
 */
#include "kernels/cuda/backend_core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OP_EMBED,
    OP_NORM,
    OP_MATMUL,
    OP_CONV_PREFILL,
    OP_SCAN_PREFILL,
    OP_CONV_STEP,
    OP_SCAN_STEP,
    OP_SSD_PREFILL,
    OP_SSD_STEP,
    OP_S4_PREFILL,
    OP_S4_STEP,
    OP_LAYERNORM,
    OP_GLU,
    OP_RMS_ROWS,
    OP_S5_SCAN,
    OP_S5_STEP,
    OP_S5_SKIP_ACT,
};

static const char *const op_names[] = {"embed",        "add_rmsnorm", "matmul",      "conv_prefill",
                                       "scan_prefill", "conv_step",   "scan_step",   "ssd_prefill",
                                       "ssd_step",     "s4_prefill",  "s4_step",     "add_layernorm",
                                       "glu",          "rms_rows",    "s5_scan",     "s5_step",
                                       "s5_skip_act"};

static_assert((int)KC_DT_F32 == (int)ENG_DTYPE_F32 && (int)KC_DT_F16 == (int)ENG_DTYPE_F16 &&
                  (int)KC_DT_BF16 == (int)ENG_DTYPE_BF16 && (int)KC_DT_Q8_0 == (int)ENG_DTYPE_Q8_0 &&
                  (int)KC_DT_Q4_0 == (int)ENG_DTYPE_Q4_0 && (int)KC_DT_Q4_K == (int)ENG_DTYPE_Q4_K &&
                  (int)KC_DT_Q6_K == (int)ENG_DTYPE_Q6_K && (int)KC_DT_Q5_0 == (int)ENG_DTYPE_Q5_0,
              "kc dtype codes follow eng_dtype");

static kc_core *core_of(bk_backend *bk) { return (kc_core *)bk; }

/* One recorded op must compare equal to its replay bytewise. */
static_assert(sizeof(bk_matrix) == 40 && sizeof(bk_ssm_layer) == 56 && sizeof(bk_mamba2_layer) == 88 &&
                  sizeof(bk_s4_layer) == 72,
              "no padding in recorded ops");

int kc_matrix_bytes(const eng_tensor *t, int rows, int cols, size_t *bytes, ssmd_err *err)
{
    if (t->dtype != ENG_DTYPE_F32 && t->dtype != ENG_DTYPE_F16 && t->dtype != ENG_DTYPE_BF16 &&
        !kc_dt_blocked(t->dtype))
        return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                            "%s: tensor '%s': dtype %s is not supported on the cuda backend (have: "
                            "F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K, Q5_0)", t->file, t->name, t->dtype_name);
    if (eng_dtype_row_bytes(t->dtype, cols) == 0) /* quant.cu reads rows of whole blocks */
        return ssmd_err_set(err, SSMD_EUNSUPPORTED, "%s: tensor '%s': rows of %d are not whole %s blocks",
                            t->file, t->name, cols, t->dtype_name);
    *bytes = (size_t)rows * eng_dtype_row_bytes(t->dtype, cols);
    return SSMD_OK;
}

bk_matrix kc_matrix_owned(void *data, const eng_tensor *t, int rows, int cols)
{
    bk_matrix m;
    memset(&m, 0, sizeof m);
    m.data = data, m.row_bytes = eng_dtype_row_bytes(t->dtype, cols), m.dtype = t->dtype;
    m.rows = rows, m.cols = cols, m.owned = 1;
    return m;
}

/* ---- running one op ------------------------------------------------------ */

static void run_matmul(kc_core *c, const kc_op *o)
{
    const bk_matrix *w = &o->w;
    const float *x = o->in[0], *bias = o->in[1];
    float *y = o->out[0];
    const int m = o->m;
    int small = c->tune.gemv_max_rows < KC_GEMV_MAX ? c->tune.gemv_max_rows : KC_GEMV_MAX;
    float *panel = NULL;
    int panel_rows = 0;
    if (m > small && w->dtype == ENG_DTYPE_BF16 && o->fast) {
        /* numerics fast: x rounded to bf16 once, then the tensor cores
         * against W as stored (2 bytes a weight, never widened) */
        uint16_t *x16 = (uint16_t *)c->dev->scratch(c, KC_SCRATCH_X16, ((size_t)m * w->cols + 1) / 2);
        if (x16) {
            kc_narrow_bf16(x, o->ldx, m, w->cols, x16, c->stream);
            c->dev->gemm_bf16(c, m, w->rows, w->cols, x16, w->data, w->cols, y, o->ldy);
            if (bias)
                kc_add_bias(y, o->ldy, m, w->rows, bias, c->stream);
            return;
        }
    }
    if (m > small && w->dtype != ENG_DTYPE_F32) {
        size_t fit = c->tune.panel_floats / (size_t)w->cols;
        panel_rows = fit < 1 ? 1 : fit > (size_t)w->rows ? w->rows : (int)fit;
        panel = c->dev->scratch(c, KC_SCRATCH_PANEL, (size_t)panel_rows * w->cols);
    }
    if (m <= small || (w->dtype != ENG_DTYPE_F32 && !panel)) {
        /* the GEMV path, also the fallback when no panel fits in memory */
        for (int i0 = 0; i0 < m; i0 += KC_GEMV_MAX) {
            int mi = m - i0 < KC_GEMV_MAX ? m - i0 : KC_GEMV_MAX;
            const float *xi = x + (size_t)i0 * o->ldx;
            float *yi = y + (size_t)i0 * o->ldy;
            if (!c->tune.gemv_wide || !kc_gemv_wide(w->data, w->dtype, w->rows, w->cols, xi, o->ldx, mi,
                                                    yi, o->ldy, bias, c->stream))
                kc_gemv(w->data, w->dtype, w->rows, w->cols, xi, o->ldx, mi, yi, o->ldy, bias, c->stream);
        }
        return;
    }
    if (w->dtype == ENG_DTYPE_F32) {
        c->dev->gemm(c, m, w->rows, w->cols, x, o->ldx, (const float *)w->data, w->cols, y, o->ldy,
                     o->fast);
    } else {
        const size_t row_bytes = (size_t)w->row_bytes;
        for (int r0 = 0; r0 < w->rows; r0 += panel_rows) {
            int nr = w->rows - r0 < panel_rows ? w->rows - r0 : panel_rows;
            kc_widen((const char *)w->data + (size_t)r0 * row_bytes, w->dtype, (size_t)nr * w->cols,
                     panel, c->stream);
            c->dev->gemm(c, m, nr, w->cols, x, o->ldx, panel, w->cols, y + r0, o->ldy, o->fast);
        }
    }
    if (bias)
        kc_add_bias(y, o->ldy, m, w->rows, bias, c->stream);
}

static kc_conv_args conv_args(const kc_op *o)
{
    const bk_ssm_layer *l = &o->l;
    kc_conv_args a;
    memset(&a, 0, sizeof a);
    a.w = l->conv_w, a.b = l->conv_b, a.E = l->d_inner, a.K = l->d_conv;
    a.x = o->in[0], a.ldx = o->ldx, a.out = o->out[0];
    return a;
}

static kc_scan_args scan_args(const kc_op *o)
{
    const bk_ssm_layer *l = &o->l;
    kc_scan_args a;
    memset(&a, 0, sizeof a);
    a.dt_bias = l->dt_bias, a.A = l->A, a.D = l->D;
    a.E = l->d_inner, a.N = l->d_state, a.R = l->dt_rank;
    a.x = o->in[0], a.dt = o->in[1], a.dbc = o->in[2];
    a.z = o->in[3], a.ldz = o->ldz;
    a.y = o->out[0];
    return a;
}

static kc_ssd_args ssd_args(const kc_op *o)
{
    const bk_mamba2_layer *l = &o->l2;
    kc_ssd_args a;
    memset(&a, 0, sizeof a);
    a.dt_bias = l->dt_bias, a.A = l->A, a.D = l->D, a.norm_w = l->norm_w;
    a.E = l->d_inner, a.N = l->d_state, a.H = l->nheads, a.P = l->head_dim, a.G = l->ngroups;
    a.dt_min = l->dt_min, a.dt_max = l->dt_max, a.eps = l->norm_eps;
    a.norm_before_gate = l->norm_before_gate;
    a.xbc = o->in[0], a.dt = o->in[1], a.lddt = o->ldx, a.z = o->in[2], a.ldz = o->ldz;
    a.y = o->out[0];
    return a;
}

static kc_s4_args s4_args(const kc_op *o)
{
    const bk_s4_layer *l = &o->l4;
    kc_s4_args a;
    memset(&a, 0, sizeof a);
    a.H = l->H, a.N2 = l->N2, a.R = l->rank;
    a.dA = l->dA, a.dB = l->dB, a.dC = l->dC, a.D = l->D, a.Dinv = l->Dinv, a.P = l->P, a.Rw = l->R;
    a.u = o->in[0], a.y = o->out[0];
    return a;
}

/* The S5 recurrence record: in = lam, v; dim = P; out = xs. */
static kc_s5_args s5_args(const kc_op *o)
{
    kc_s5_args a;
    memset(&a, 0, sizeof a);
    a.lam = o->in[0], a.P = o->dim, a.v = o->in[1], a.xs = o->out[0];
    return a;
}

/* A step op's slots: idx (device memory) over the pool at this offset. */
static kc_slots slots_at(const kc_op *o, const int32_t *idx, size_t offset)
{
    kc_slots at = {o->pool, o->slot_stride, offset, idx, o->n};
    return at;
}

/* kc_gemm_fn of the chunked SSD: the device's f32 GEMM, exact (the
 * decays multiply what it returns, so TF32 rounding would compound). */
static void ssd_gemm(void *ctx, int batch, int m, int n, int k, const float *x, int ldx, long sx,
                     const float *w, int ldw, long sw, float *y, int ldy, long sy)
{
    kc_core *c = (kc_core *)ctx;
    c->dev->gemm_batched(c, batch, m, n, k, x, ldx, sx, w, ldw, sw, y, ldy, sy);
}

/* idx: the op's ids or slots in device memory (or NULL). */
static void run_op(kc_core *c, const kc_op *o, const int32_t *idx)
{
    switch (o->kind) {
    case OP_EMBED:
        kc_embed(o->w.data, o->w.dtype, o->w.cols, idx, o->n, o->out[0], c->stream);
        break;
    case OP_NORM:
        kc_add_rmsnorm(o->out[0], o->in[0], o->in[1], o->eps, o->n, o->dim, o->out[1], c->stream);
        break;
    case OP_MATMUL:
        run_matmul(c, o);
        break;
    case OP_CONV_PREFILL: {
        kc_conv_args a = conv_args(o);
        a.window = o->out[1], a.T = o->T;
        kc_conv_prefill(&a, c->stream);
        break;
    }
    case OP_SCAN_PREFILL: {
        kc_scan_args a = scan_args(o);
        a.state = o->out[1], a.T = o->T;
        size_t need = kc_scan_prefill_scratch(a.E, a.N, a.T, &c->tune);
        float *scratch = need ? c->dev->scratch(c, KC_SCRATCH_SCAN, need) : NULL;
        kc_scan_prefill(&a, scratch, &c->tune, c->stream);
        break;
    }
    case OP_CONV_STEP: {
        kc_conv_args a = conv_args(o);
        a.at = slots_at(o, idx, o->conv_offset);
        kc_conv_step(&a, c->stream);
        break;
    }
    case OP_SCAN_STEP: {
        kc_scan_args a = scan_args(o);
        a.at = slots_at(o, idx, o->ssm_offset);
        kc_scan_step(&a, c->stream);
        break;
    }
    case OP_SSD_PREFILL: {
        kc_ssd_args a = ssd_args(o);
        a.state = o->out[1], a.T = o->T;
        /* the chunked form, its GEMMs on cuBLAS; the walk in time order
         * where the scratch cannot be had */
        float *scratch = c->dev->scratch(c, KC_SCRATCH_SSD, kc_ssd_chunk_scratch(&a));
        if (scratch)
            kc_ssd_prefill_chunked(&a, scratch, ssd_gemm, c, c->stream);
        else
            kc_ssd_prefill(&a, c->stream);
        break;
    }
    case OP_SSD_STEP: {
        kc_ssd_args a = ssd_args(o);
        a.at = slots_at(o, idx, o->ssm_offset);
        kc_ssd_step(&a, c->stream);
        break;
    }
    case OP_S4_PREFILL: {
        kc_s4_args a = s4_args(o);
        a.state = o->out[1], a.T = o->T;
        size_t need = kc_s4_prefill_scratch(&a, &c->tune);
        kc_s4_prefill(&a, need ? c->dev->scratch(c, KC_SCRATCH_SCAN, need) : NULL, &c->tune,
                      c->stream);
        break;
    }
    case OP_S4_STEP: {
        kc_s4_args a = s4_args(o);
        a.at = slots_at(o, idx, o->ssm_offset);
        kc_s4_step(&a, c->stream);
        break;
    }
    case OP_LAYERNORM:
        kc_add_layernorm(o->out[0], o->in[0], o->in[1], o->in[2], o->eps, o->n, o->dim, o->out[1],
                         c->stream);
        break;
    case OP_GLU:
        kc_glu(o->in[0], o->n, o->dim, o->out[0], c->stream);
        break;
    case OP_RMS_ROWS:
        kc_rms_rows(o->out[0], o->ldx, o->n, o->dim, o->eps, c->stream);
        break;
    case OP_S5_SCAN: {
        kc_s5_args a = s5_args(o);
        a.state = o->out[1], a.T = o->T;
        size_t need = kc_s5_scan_scratch(&a, &c->tune);
        kc_s5_scan(&a, need ? c->dev->scratch(c, KC_SCRATCH_SCAN, need) : NULL, &c->tune, c->stream);
        break;
    }
    case OP_S5_STEP: {
        kc_s5_args a = s5_args(o);
        a.at = slots_at(o, idx, o->ssm_offset);
        kc_s5_step(&a, c->stream);
        break;
    }
    case OP_S5_SKIP_ACT:
        kc_s5_skip_act(o->in[0], o->in[1], o->in[2], o->n, o->dim, o->m, o->out[0], o->ldx, o->out[1],
                       o->ldy, c->stream);
        break;
    default:
        ssmd_fatal("cuda backend: unknown recorded op %d", o->kind);
    }
    c->dev->after_op(c, op_names[o->kind]);
}

static void run_ops(kc_core *c, const kc_op *ops, int n)
{
    for (int i = 0; i < n; i++)
        run_op(c, &ops[i], ops[i].arena_off == SIZE_MAX ? NULL : c->arena_dev + ops[i].arena_off);
}

static void run_graph_ops(kc_core *c, void *arg)
{
    const kc_graph *g = (const kc_graph *)arg;
    run_ops(c, g->ops, g->n_ops);
}

/* ---- traces ---------------------------------------------------------------- */

static int trace_is_decode(const kc_core *c)
{
    for (int i = 0; i < c->n_ops; i++)
        if (c->ops[i].kind == OP_CONV_STEP || c->ops[i].kind == OP_SCAN_STEP ||
            c->ops[i].kind == OP_SSD_STEP || c->ops[i].kind == OP_S4_STEP ||
            c->ops[i].kind == OP_S5_STEP)
            return 1;
    return 0;
}

static kc_graph *graph_find(kc_core *c)
{
    for (int i = 0; i < c->n_graphs; i++) {
        kc_graph *g = &c->graphs[i];
        if (g->n_ops == c->n_ops && !memcmp(g->ops, c->ops, sizeof(kc_op) * (size_t)c->n_ops))
            return g;
    }
    return NULL;
}

/* A cache slot for a new trace: a free one, else the least recently used
 * (its graph destroyed). */
static kc_graph *graph_slot(kc_core *c)
{
    int cap = c->tune.graph_cache < 1 ? 1 : c->tune.graph_cache > KC_MAX_GRAPHS ? KC_MAX_GRAPHS
                                                                                 : c->tune.graph_cache;
    if (c->n_graphs < cap)
        return &c->graphs[c->n_graphs++];
    kc_graph *g = &c->graphs[0];
    for (int i = 1; i < c->n_graphs; i++)
        if (c->graphs[i].last_use < g->last_use)
            g = &c->graphs[i];
    if (g->exec)
        c->dev->graph_destroy(c, g->exec);
    free(g->ops);
    memset(g, 0, sizeof *g);
    c->stats.evictions++;
    return g;
}

static void flush_decode(kc_core *c)
{
    kc_graph *g = graph_find(c);
    if (!g) {
        g = graph_slot(c);
        g->ops = (kc_op *)xmalloc(sizeof(kc_op) * (size_t)c->n_ops);
        memcpy(g->ops, c->ops, sizeof(kc_op) * (size_t)c->n_ops);
        g->n_ops = c->n_ops, g->seen = 1, g->failed = 0, g->exec = NULL, g->last_use = c->clock;
        c->stats.eager_traces++;
        run_ops(c, c->ops, c->n_ops);
        return;
    }
    g->seen++;
    g->last_use = c->clock;
    if (!g->exec && !g->failed) {
        g->exec = c->dev->graph_capture(c, run_graph_ops, g);
        if (g->exec)
            c->stats.graph_captures++;
        else
            g->failed = 1, c->stats.capture_failures++;
    }
    if (g->exec) {
        c->dev->graph_launch(c, g->exec);
        c->stats.graph_launches++;
    } else {
        c->stats.eager_traces++;
        run_ops(c, c->ops, c->n_ops);
    }
}

void kc_core_flush(kc_core *c)
{
    if (!c->tracing)
        return;
    c->tracing = 0;
    if (!c->n_ops)
        return;
    c->stats.traces++;
    c->clock++;
    c->dev->arena_upload(c, c->arena_used);
    if (trace_is_decode(c)) {
        flush_decode(c);
    } else {
        c->stats.eager_traces++;
        run_ops(c, c->ops, c->n_ops);
    }
    c->n_ops = 0;
}

static void trace_start(kc_core *c)
{
    kc_core_flush(c);
    c->dev->arena_wait(c);
    c->tracing = 1;
    c->n_ops = 0;
    c->arena_used = 0;
    c->last_slots_n = -1;
}

/* A zeroed record appended to the trace, or NULL when not tracing. */
static kc_op *record(kc_core *c, int kind)
{
    if (!c->tracing)
        return NULL;
    if (c->n_ops == c->cap_ops) {
        int cap = c->cap_ops ? 2 * c->cap_ops : 256;
        c->ops = (kc_op *)xrealloc(c->ops, sizeof(kc_op) * (size_t)cap);
        c->cap_ops = cap;
    }
    kc_op *o = &c->ops[c->n_ops++];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->arena_off = SIZE_MAX;
    return o;
}

/* Copies n ints into the arena; returns the offset, or SIZE_MAX when they
 * do not fit (the caller then flushes and runs eagerly). */
static size_t arena_put(kc_core *c, const int32_t *v, int n, int dedup)
{
    if (dedup && c->last_slots_n == n &&
        !memcmp(c->arena_host + c->last_slots_off, v, sizeof(int32_t) * (size_t)n))
        return c->last_slots_off;
    size_t off = (c->arena_used + 3) & ~(size_t)3; /* 16-byte aligned starts */
    if (off + (size_t)n > c->arena_cap)
        return SIZE_MAX;
    memcpy(c->arena_host + off, v, sizeof(int32_t) * (size_t)n);
    c->arena_used = off + (size_t)n;
    if (dedup)
        c->last_slots_off = off, c->last_slots_n = n;
    return off;
}

/* The op being issued: a record in the trace, or *tmp when it runs now. */
static kc_op *op_begin(kc_core *c, int kind, kc_op *tmp)
{
    kc_op *o = record(c, kind);
    if (!o) {
        o = tmp;
        memset(o, 0, sizeof *o);
        o->kind = kind;
        o->arena_off = SIZE_MAX;
    }
    return o;
}

/* Finishes an op from op_begin: a recorded op gets its index array (ids or
 * slots) in the arena; an op that is not recorded, or whose index array no
 * longer fits the arena (the trace is flushed first), runs now. */
static void op_end(kc_core *c, kc_op *o, const kc_op *tmp, const int32_t *idx, int n_idx, int dedup)
{
    if (o != tmp) {
        if (!idx)
            return;
        size_t off = arena_put(c, idx, n_idx, dedup);
        if (off != SIZE_MAX) {
            o->arena_off = off;
            return;
        }
        kc_op copy = *o;
        c->n_ops--;
        kc_core_flush(c);
        run_op(c, &copy, c->dev->stage(c, idx, n_idx));
        return;
    }
    run_op(c, o, idx ? c->dev->stage(c, idx, n_idx) : NULL);
}

/* ---- the bk_backend compute ops ----------------------------------------------- */

static void core_step_begin(bk_backend *bk) { trace_start(core_of(bk)); }
static void core_step_end(bk_backend *bk) { kc_core_flush(core_of(bk)); }

static void core_embed(bk_backend *bk, const bk_matrix *w, const int32_t *ids, int n, float *out)
{
    kc_core *c = core_of(bk);
    if (n <= 0)
        return;
    kc_op tmp, *o = op_begin(c, OP_EMBED, &tmp);
    o->w = *w, o->n = n, o->out[0] = out;
    op_end(c, o, &tmp, ids, n, 0);
}

static void core_add_rmsnorm(bk_backend *bk, float *resid, const float *add, const float *weight,
                             float eps, int n, int dim, float *out)
{
    kc_core *c = core_of(bk);
    kc_op tmp, *o = op_begin(c, OP_NORM, &tmp);
    o->in[0] = add, o->in[1] = weight, o->eps = eps, o->n = n, o->dim = dim;
    o->out[0] = resid, o->out[1] = out;
    op_end(c, o, &tmp, NULL, 0, 0);
}

static void core_matmul(bk_backend *bk, const bk_matrix *w, const float *x, int ldx, int m, float *y,
                        int ldy, const float *bias, bk_precision precision)
{
    kc_core *c = core_of(bk);
    if (w->row_scale) /* kc_matrix_owned never makes one: a caller's bug */
        ssmd_fatal("cuda backend: matmul of a matrix with row scales");
    kc_op tmp, *o = op_begin(c, OP_MATMUL, &tmp);
    o->w = *w, o->in[0] = x, o->ldx = ldx, o->m = m, o->out[0] = y, o->ldy = ldy, o->in[1] = bias;
    o->fast = c->fast_numerics && precision == BK_PRECISION_DEFAULT;
    op_end(c, o, &tmp, NULL, 0, 0);
}

/* ---- the Mamba-1 ops ---- */

/* The io fields of a Mamba-1 op into a record: in = x, dt, dbc, z; out =
 * xc or y. */
static void m1_io(kc_op *o, const bk_ssm_layer *l, const bk_mamba1_io *io, const float *in0, float *out0)
{
    o->l = *l, o->in[0] = in0, o->in[1] = io->dt, o->in[2] = io->dbc, o->in[3] = io->z;
    o->ldx = io->ldx, o->ldz = io->ldz, o->out[0] = out0;
}

/* Prefill ops end a trace: what was recorded runs now, and so does this.
 * carried: the window (conv) or state (scan) continued and left final. */
static void prefill_op(kc_core *c, int kind, const bk_ssm_layer *l, const bk_mamba1_io *io,
                       const float *in0, float *out0, float *carried)
{
    kc_core_flush(c);
    kc_op tmp, *o = op_begin(c, kind, &tmp);
    m1_io(o, l, io, in0, out0);
    o->T = io->rows, o->out[1] = carried;
    op_end(c, o, &tmp, NULL, 0, 0);
}

static void core_conv_prefill(bk_backend *bk, const bk_ssm_layer *l, float *window,
                              const bk_mamba1_io *io)
{
    prefill_op(core_of(bk), OP_CONV_PREFILL, l, io, io->x, io->xc, window);
}

static void core_scan_prefill(bk_backend *bk, const bk_ssm_layer *l, float *state,
                              const bk_mamba1_io *io)
{
    prefill_op(core_of(bk), OP_SCAN_PREFILL, l, io, io->xc, io->y, state);
}

static void step_op(kc_core *c, int kind, const bk_ssm_layer *l, const bk_state_ref *st,
                    const bk_mamba1_io *io, const float *in0, float *out0)
{
    if (st->batch <= 0)
        return;
    kc_op tmp, *o = op_begin(c, kind, &tmp);
    m1_io(o, l, io, in0, out0);
    o->pool = st->pool, o->slot_stride = st->slot_stride;
    o->conv_offset = st->conv_offset, o->ssm_offset = st->ssm_offset, o->n = st->batch;
    op_end(c, o, &tmp, st->slots, st->batch, 1);
}

static void core_conv_step(bk_backend *bk, const bk_ssm_layer *l, const bk_state_ref *st,
                           const bk_mamba1_io *io)
{
    step_op(core_of(bk), OP_CONV_STEP, l, st, io, io->x, io->xc);
}

static void core_scan_step(bk_backend *bk, const bk_ssm_layer *l, const bk_state_ref *st,
                           const bk_mamba1_io *io)
{
    step_op(core_of(bk), OP_SCAN_STEP, l, st, io, io->xc, io->y);
}

/* no scan_step_dt: the model runs dt_proj as a matmul before the scan (the
 * fused op saves the CPU's thread pool a fork-join per layer) */
static const bk_mamba1_ops core_mamba1 = {
    KC_MAX_STATE, core_conv_prefill, core_scan_prefill, core_conv_step, core_scan_step, NULL,
};

/* ---- the Mamba-2 ops ---- */

/* Mamba-2's conv is Mamba-1's over conv_dim channels: the same recorded
 * op, on a layer and io that carry only the conv's fields. */
static void m2_as_conv(const bk_mamba2_layer *l, const bk_mamba2_io *io, int rows, bk_ssm_layer *cl,
                       bk_mamba1_io *cio)
{
    memset(cl, 0, sizeof *cl);
    cl->conv_w = l->conv_w, cl->conv_b = l->conv_b, cl->d_conv = l->d_conv;
    cl->d_inner = l->d_inner + 2 * l->ngroups * l->d_state;
    memset(cio, 0, sizeof *cio);
    cio->x = io->xbc_in, cio->ldx = io->ld_in, cio->xc = io->xbc, cio->rows = rows;
}

static void core_m2_conv_prefill(bk_backend *bk, const bk_mamba2_layer *l, float *window,
                                 const bk_mamba2_io *io)
{
    bk_ssm_layer cl;
    bk_mamba1_io cio;
    m2_as_conv(l, io, io->rows, &cl, &cio);
    prefill_op(core_of(bk), OP_CONV_PREFILL, &cl, &cio, cio.x, cio.xc, window);
}

static void core_m2_conv_step(bk_backend *bk, const bk_mamba2_layer *l, const bk_state_ref *st,
                              const bk_mamba2_io *io)
{
    bk_ssm_layer cl;
    bk_mamba1_io cio;
    m2_as_conv(l, io, st->batch, &cl, &cio);
    step_op(core_of(bk), OP_CONV_STEP, &cl, st, &cio, cio.x, cio.xc);
}

/* The SSD record: in = xbc, dt, z (strides in ldx, ldz); out = y. */
static kc_op *ssd_record(kc_core *c, int kind, kc_op *tmp, const bk_mamba2_layer *l,
                         const bk_mamba2_io *io)
{
    kc_op *o = op_begin(c, kind, tmp);
    o->l2 = *l, o->in[0] = io->xbc, o->in[1] = io->dt, o->in[2] = io->z, o->out[0] = io->y;
    o->ldx = io->lddt, o->ldz = io->ldz;
    return o;
}

static void core_ssd_prefill(bk_backend *bk, const bk_mamba2_layer *l, float *state,
                             const bk_mamba2_io *io)
{
    kc_core *c = core_of(bk);
    kc_core_flush(c);
    kc_op tmp, *o = ssd_record(c, OP_SSD_PREFILL, &tmp, l, io);
    o->T = io->rows, o->out[1] = state;
    op_end(c, o, &tmp, NULL, 0, 0);
}

static void core_ssd_step(bk_backend *bk, const bk_mamba2_layer *l, const bk_state_ref *st,
                          const bk_mamba2_io *io)
{
    kc_core *c = core_of(bk);
    if (st->batch <= 0)
        return;
    kc_op tmp, *o = ssd_record(c, OP_SSD_STEP, &tmp, l, io);
    o->pool = st->pool, o->slot_stride = st->slot_stride, o->ssm_offset = st->ssm_offset;
    o->n = st->batch;
    op_end(c, o, &tmp, st->slots, st->batch, 1);
}

static const bk_mamba2_ops core_mamba2 = {
    KC_MAX_STATE, core_m2_conv_prefill, core_ssd_prefill, core_m2_conv_step, core_ssd_step,
};

/* ---- the S4 family and its core ops ---- */

static void core_add_layernorm(bk_backend *bk, float *resid, const float *add, const float *weight,
                               const float *bias, float eps, int n, int dim, float *out)
{
    kc_core *c = core_of(bk);
    kc_op tmp, *o = op_begin(c, OP_LAYERNORM, &tmp);
    o->in[0] = add, o->in[1] = weight, o->in[2] = bias, o->eps = eps, o->n = n, o->dim = dim;
    o->out[0] = resid, o->out[1] = out;
    op_end(c, o, &tmp, NULL, 0, 0);
}

static void core_glu(bk_backend *bk, const float *x, int n, int dim, float *out)
{
    kc_core *c = core_of(bk);
    kc_op tmp, *o = op_begin(c, OP_GLU, &tmp);
    o->in[0] = x, o->n = n, o->dim = dim, o->out[0] = out;
    op_end(c, o, &tmp, NULL, 0, 0);
}

static void core_rms_rows(bk_backend *bk, float *x, int ld, int n, int dim, float eps)
{
    kc_core *c = core_of(bk);
    kc_op tmp, *o = op_begin(c, OP_RMS_ROWS, &tmp);
    o->out[0] = x, o->ldx = ld, o->n = n, o->dim = dim, o->eps = eps;
    op_end(c, o, &tmp, NULL, 0, 0);
}

static void core_s4_prefill(bk_backend *bk, const bk_s4_layer *l, float *state, const float *u,
                            int T, float *y)
{
    kc_core *c = core_of(bk);
    kc_core_flush(c);
    kc_op tmp, *o = op_begin(c, OP_S4_PREFILL, &tmp);
    o->l4 = *l, o->in[0] = u, o->out[0] = y, o->out[1] = state, o->T = T;
    op_end(c, o, &tmp, NULL, 0, 0);
}

/* op_end of a decode op whose state is st's SSM state (one per row). */
static void op_end_ssm_step(kc_core *c, kc_op *o, const kc_op *tmp, const bk_state_ref *st)
{
    o->pool = st->pool, o->slot_stride = st->slot_stride, o->ssm_offset = st->ssm_offset;
    o->n = st->batch;
    op_end(c, o, tmp, st->slots, st->batch, 1);
}

static void core_s4_step(bk_backend *bk, const bk_s4_layer *l, const bk_state_ref *st,
                         const float *u, float *y)
{
    kc_core *c = core_of(bk);
    if (st->batch <= 0)
        return;
    kc_op tmp, *o = op_begin(c, OP_S4_STEP, &tmp);
    o->l4 = *l, o->in[0] = u, o->out[0] = y;
    op_end_ssm_step(c, o, &tmp, st);
}

static const bk_s4_ops core_s4 = {KC_S4_MAX_RANK, core_s4_prefill, core_s4_step};

/* ---- the S5 ops (its matmuls are core_matmul's) ---- */

static void core_s5_scan(bk_backend *bk, const float *lam, int P, float *state, const float *v, int T,
                         float *xs)
{
    kc_core *c = core_of(bk);
    kc_core_flush(c);
    kc_op tmp, *o = op_begin(c, OP_S5_SCAN, &tmp);
    o->in[0] = lam, o->dim = P, o->in[1] = v, o->out[0] = xs, o->out[1] = state, o->T = T;
    op_end(c, o, &tmp, NULL, 0, 0);
}

static void core_s5_step(bk_backend *bk, const float *lam, int P, const bk_state_ref *st,
                         const float *v, float *xs)
{
    kc_core *c = core_of(bk);
    if (st->batch <= 0)
        return;
    kc_op tmp, *o = op_begin(c, OP_S5_STEP, &tmp);
    o->in[0] = lam, o->dim = P, o->in[1] = v, o->out[0] = xs;
    op_end_ssm_step(c, o, &tmp, st);
}

/* Recorded as in = y, u, D; n = rows, dim = H, m = gelu_tanh; out = pre
 * (ldx), act (ldy). */
static void core_s5_skip_act(bk_backend *bk, const float *y, const float *u, const float *D, int rows,
                             int H, int gelu_tanh, float *out_pre, int ld_pre, float *out_act,
                             int ld_act)
{
    kc_core *c = core_of(bk);
    kc_op tmp, *o = op_begin(c, OP_S5_SKIP_ACT, &tmp);
    o->in[0] = y, o->in[1] = u, o->in[2] = D, o->n = rows, o->dim = H, o->m = gelu_tanh;
    o->out[0] = out_pre, o->ldx = ld_pre, o->out[1] = out_act, o->ldy = ld_act;
    op_end(c, o, &tmp, NULL, 0, 0);
}

static const bk_s5_ops core_s5 = {core_s5_scan, core_s5_step, core_s5_skip_act};

void kc_core_init(kc_core *c, const kc_memory_ops *mem)
{
    c->base.name = mem->name;
    c->base.destroy = mem->destroy;
    c->base.alloc = mem->alloc;
    c->base.release = mem->release;
    c->base.write = mem->write;
    c->base.read = mem->read;
    c->base.copy = mem->copy;
    c->base.zero = mem->zero;
    c->base.matrix_load = mem->matrix_load;
    c->base.matrix_release = mem->matrix_release;
    c->base.step_begin = core_step_begin;
    c->base.step_end = core_step_end;
    c->base.embed = core_embed;
    c->base.add_rmsnorm = core_add_rmsnorm;
    c->base.matmul = core_matmul;
    c->base.mamba1 = &core_mamba1;
    c->base.mamba2 = &core_mamba2;
    c->base.s4 = &core_s4;
    c->base.s5 = &core_s5;
    c->base.add_layernorm = core_add_layernorm;
    c->base.glu = core_glu;
    c->base.rms_rows = core_rms_rows;
    c->last_slots_n = -1;
}

void kc_core_stats_get(bk_backend *bk, kc_core_stats *out) { *out = core_of(bk)->stats; }

void kc_core_close(kc_core *c)
{
    for (int i = 0; i < c->n_graphs; i++) {
        if (c->graphs[i].exec)
            c->dev->graph_destroy(c, c->graphs[i].exec);
        free(c->graphs[i].ops);
    }
    c->n_graphs = 0;
    free(c->ops);
    c->ops = NULL;
    c->n_ops = c->cap_ops = 0;
    c->tracing = 0;
}
