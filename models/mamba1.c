/* mamba1.c - Mamba-1 forward on top of the backend interface.
 *
 * Semantics are transformers' MambaForCausalLM in fp32: per layer
 * RMSNorm -> in_proj -> causal depthwise conv + SiLU -> x_proj -> dt_proj ->
 * selective scan (softplus dt, ZOH, D skip, SiLU(z) gate) -> out_proj ->
 * residual add; final RMSNorm; LM head (tied to the embedding unless the
 * checkpoint has its own lm_head).
 *
 * Prefill runs one sequence through every layer as whole-chunk GEMMs; decode
 * runs a batch of sequences one token each, one GEMM per weight for the
 * whole batch.  Per-slot state layout, per layer: conv window
 * (d_conv-1, d_inner) then SSM state (d_state, d_inner), fp32 (proto/
 * state-format.md documents it).  This file never touches HTTP or sessions.
 */
#include "models/mamba1.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ssm.h"
#include "models/common.h"

/* Prefill processes prompts in chunks of this many tokens (bounds scratch). */
enum { PREFILL_CHUNK = 512, LOGITS_ROWS = 16 };

typedef struct m1_layer {
    float *norm_w;       /* (d_model) */
    bk_matrix in_proj;   /* (2*d_inner, d_model) */
    float *in_proj_b;    /* (2*d_inner) or NULL */
    bk_ssm_layer ssm;    /* conv/A/D/dt_bias, f32 */
    bk_matrix x_proj;    /* (dt_rank + 2*d_state, d_inner) */
    bk_matrix dt_proj;   /* (d_inner, dt_rank) */
    bk_matrix out_proj;  /* (d_model, d_inner) */
    float *out_proj_b;   /* (d_model) or NULL */
} m1_layer;

typedef struct mamba1 {
    eng_model_config cfg;
    bk_backend *bk;        /* borrowed */
    bk_matrix embed;       /* (embedding rows, d_model) */
    bk_matrix lm_head;     /* (vocab_size, d_model): own tensor or embed's rows */
    float *norm_f;         /* (d_model) */
    m1_layer *layers;      /* (n_layer) */
    int max_rows;          /* rows of scratch: max(PREFILL_CHUNK, max_batch) */
    /* scratch, backend memory, max_rows rows each */
    float *resid;          /* (rows, d_model) residual stream */
    float *xn;             /* (rows, d_model) normed input */
    float *xz;             /* (rows, 2*d_inner) */
    float *xc;             /* (rows, d_inner) conv output */
    float *dbc;            /* (rows, dt_rank + 2*d_state) */
    float *dt;             /* (rows, d_inner) */
    float *y;              /* (rows, d_inner) */
    float *out;            /* (rows, d_model) mixer output */
    float *logits;         /* (max(LOGITS_ROWS, max_batch), vocab) */
    int logits_rows;
    int64_t n_params;
    size_t weight_bytes;
} mamba1;

static size_t layer_floats(const eng_model_config *c)
{
    return (size_t)(c->d_conv - 1 + c->d_state) * (size_t)c->d_inner;
}

static size_t m1_state_floats(const void *arch)
{
    const mamba1 *m = arch;
    return layer_floats(&m->cfg) * (size_t)m->cfg.n_layer;
}

static int64_t m1_n_params(const void *arch) { return ((const mamba1 *)arch)->n_params; }
static size_t m1_weight_bytes(const void *arch) { return ((const mamba1 *)arch)->weight_bytes; }
static eng_dtype m1_weight_dtype(const void *arch) { return ((const mamba1 *)arch)->embed.dtype; }

/* ---- loading ---------------------------------------------------------- */

typedef struct loader {
    mamba1 *m;
    const eng_weights *w;
    const char *prefix; /* "backbone." */
    ssmd_err *err;
} loader;

static const eng_tensor *get(loader *ld, const char *name, int ndim, int64_t d0, int64_t d1,
                             int64_t d2)
{
    int64_t shape[3] = {d0, d1, d2};
    const eng_tensor *t = NULL;
    if (eng_weights_get(ld->w, name, ndim, shape, &t, ld->err) != SSMD_OK)
        return NULL;
    ld->m->n_params += t->numel;
    ld->m->weight_bytes += t->nbytes;
    return t;
}

/* Converts a small tensor to f32 and puts it in backend memory; transpose
 * (rows, cols) -> (cols, rows) when asked, negating exp() for A_log. */
enum { AS_IS = 0, TRANSPOSE = 1, NEG_EXP_TRANSPOSE = 2 };

static float *to_backend(loader *ld, const eng_tensor *t, int rows, int cols, int how)
{
    size_t n = (size_t)rows * (size_t)cols;
    float *host = malloc(n * sizeof(float));
    float *tmp = malloc(n * sizeof(float));
    float *dev = ld->m->bk->alloc(ld->m->bk, n * sizeof(float));
    if (!host || !tmp || !dev) {
        free(host);
        free(tmp);
        if (dev)
            ld->m->bk->release(ld->m->bk, dev);
        ssmd_err_set(ld->err, SSMD_ENOMEM, "%s: out of memory converting '%s'", t->file, t->name);
        return NULL;
    }
    eng_tensor_to_f32(t, tmp);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            float v = tmp[(size_t)r * cols + c];
            if (how == AS_IS)
                host[(size_t)r * cols + c] = v;
            else
                host[(size_t)c * rows + r] = how == NEG_EXP_TRANSPOSE ? -expf(v) : v;
        }
    ld->m->bk->write(ld->m->bk, dev, host, n * sizeof(float));
    free(host);
    free(tmp);
    return dev;
}

static int small(loader *ld, float **dst, const char *name, int ndim, int64_t d0, int64_t d1,
                 int64_t d2, int rows, int cols, int how)
{
    const eng_tensor *t = get(ld, name, ndim, d0, d1, d2);
    if (!t)
        return ld->err->code;
    *dst = to_backend(ld, t, rows, cols, how);
    return *dst ? SSMD_OK : ld->err->code;
}

static int matrix(loader *ld, bk_matrix *dst, const char *name, int64_t rows, int64_t cols)
{
    const eng_tensor *t = get(ld, name, 2, rows, cols, 0);
    if (!t)
        return ld->err->code;
    return ld->m->bk->matrix_load(ld->m->bk, t, (int)rows, (int)cols, dst, ld->err);
}

static int load_layer(loader *ld, int i, m1_layer *L)
{
    const eng_model_config *c = &ld->m->cfg;
    const int D = c->d_model, E = c->d_inner, N = c->d_state, K = c->d_conv, R = c->dt_rank;
    char name[256];
    int rc;
#define NAME(suffix) (snprintf(name, sizeof name, "%slayers.%d.%s", ld->prefix, i, suffix), name)
    if ((rc = small(ld, &L->norm_w, NAME("norm.weight"), 1, D, 0, 0, 1, D, AS_IS)))
        return rc;
    if ((rc = matrix(ld, &L->in_proj, NAME("mixer.in_proj.weight"), 2L * E, D)))
        return rc;
    if (c->use_bias &&
        (rc = small(ld, &L->in_proj_b, NAME("mixer.in_proj.bias"), 1, 2L * E, 0, 0, 1, 2 * E, AS_IS)))
        return rc;
    /* conv1d.weight (E, 1, K) -> (K, E) so the kernel walks channels. */
    if ((rc = small(ld, (float **)&L->ssm.conv_w, NAME("mixer.conv1d.weight"), 3, E, 1, K, E, K,
                    TRANSPOSE)))
        return rc;
    if (c->use_conv_bias &&
        (rc = small(ld, (float **)&L->ssm.conv_b, NAME("mixer.conv1d.bias"), 1, E, 0, 0, 1, E, AS_IS)))
        return rc;
    if ((rc = matrix(ld, &L->x_proj, NAME("mixer.x_proj.weight"), (int64_t)R + 2L * N, E)))
        return rc;
    if ((rc = matrix(ld, &L->dt_proj, NAME("mixer.dt_proj.weight"), E, R)))
        return rc;
    if ((rc = small(ld, (float **)&L->ssm.dt_bias, NAME("mixer.dt_proj.bias"), 1, E, 0, 0, 1, E,
                    AS_IS)))
        return rc;
    if ((rc = small(ld, (float **)&L->ssm.A, NAME("mixer.A_log"), 2, E, N, 0, E, N,
                    NEG_EXP_TRANSPOSE)))
        return rc;
    if ((rc = small(ld, (float **)&L->ssm.D, NAME("mixer.D"), 1, E, 0, 0, 1, E, AS_IS)))
        return rc;
    if ((rc = matrix(ld, &L->out_proj, NAME("mixer.out_proj.weight"), D, E)))
        return rc;
    if (c->use_bias &&
        (rc = small(ld, &L->out_proj_b, NAME("mixer.out_proj.bias"), 1, D, 0, 0, 1, D, AS_IS)))
        return rc;
#undef NAME
    L->ssm.d_inner = E;
    L->ssm.d_state = N;
    L->ssm.d_conv = K;
    L->ssm.dt_rank = R;
    return SSMD_OK;
}

/* The embedding may have more rows than vocab_size (padded); any count
 * >= vocab_size is accepted, the extra rows are never used. */
static int load_embeddings(loader *ld)
{
    mamba1 *m = ld->m;
    const eng_model_config *c = &m->cfg;
    const char *emb_name = c->layout == ENG_LAYOUT_ORIGINAL ? "backbone.embedding.weight"
                                                             : "backbone.embeddings.weight";
    const eng_tensor *e = eng_weights_find(ld->w, emb_name);
    int64_t rows = e && e->ndim == 2 && e->shape[0] >= c->vocab_size ? e->shape[0] : c->vocab_size;
    int rc = matrix(ld, &m->embed, emb_name, rows, c->d_model);
    if (rc)
        return rc;
    const eng_tensor *h = eng_weights_find(ld->w, "lm_head.weight");
    if (h && !c->tie_embeddings) {
        int64_t hrows = h->ndim == 2 && h->shape[0] >= c->vocab_size ? h->shape[0] : c->vocab_size;
        if ((rc = matrix(ld, &m->lm_head, "lm_head.weight", hrows, c->d_model)))
            return rc;
    } else {
        m->lm_head = m->embed;
        m->lm_head.owned = 0;
    }
    m->lm_head.rows = c->vocab_size; /* padded rows produce no logits */
    return small(ld, &m->norm_f, "backbone.norm_f.weight", 1, c->d_model, 0, 0, 1, c->d_model,
                 AS_IS);
}

static void m1_free(void *arch);

static int alloc_scratch(mamba1 *m, ssmd_err *err)
{
    const eng_model_config *c = &m->cfg;
    bk_backend *bk = m->bk;
    size_t rows = (size_t)m->max_rows;
    struct { float **p; size_t floats; } bufs[] = {
        {&m->resid, rows * c->d_model},
        {&m->xn, rows * c->d_model},
        {&m->xz, rows * 2 * (size_t)c->d_inner},
        {&m->xc, rows * c->d_inner},
        {&m->dbc, rows * ((size_t)c->dt_rank + 2 * (size_t)c->d_state)},
        {&m->dt, rows * c->d_inner},
        {&m->y, rows * c->d_inner},
        {&m->out, rows * c->d_model},
        {&m->logits, (size_t)m->logits_rows * c->vocab_size},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        *bufs[i].p = bk->alloc(bk, bufs[i].floats * sizeof(float));
        if (!*bufs[i].p)
            return ssmd_err_set(err, SSMD_ENOMEM, "mamba1: out of memory for %zu scratch bytes",
                                bufs[i].floats * sizeof(float));
    }
    return SSMD_OK;
}

static int m1_load(const eng_model_config *cfg, const eng_weights *w, bk_backend *bk, int max_batch,
                   void **out, ssmd_err *err)
{
    if (cfg->d_state > CPU_SSM_MAX_STATE)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED, "mamba1: state_size %d is above the %d supported",
                            cfg->d_state, CPU_SSM_MAX_STATE);
    mamba1 *m = calloc(1, sizeof *m);
    if (!m)
        return ssmd_err_set(err, SSMD_ENOMEM, "mamba1: out of memory");
    m->cfg = *cfg;
    m->bk = bk;
    m->max_rows = max_batch > PREFILL_CHUNK ? max_batch : PREFILL_CHUNK;
    m->logits_rows = max_batch > LOGITS_ROWS ? max_batch : LOGITS_ROWS;
    m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);
    loader ld = {m, w, "backbone.", err};
    int rc = m->layers ? SSMD_OK : ssmd_err_set(err, SSMD_ENOMEM, "mamba1: out of memory");
    if (!rc)
        rc = load_embeddings(&ld);
    for (int i = 0; !rc && i < cfg->n_layer; i++)
        rc = load_layer(&ld, i, &m->layers[i]);
    if (!rc)
        rc = alloc_scratch(m, err);
    if (rc) {
        m1_free(m);
        return rc;
    }
    *out = m;
    return SSMD_OK;
}

static void m1_free(void *arch)
{
    mamba1 *m = arch;
    if (!m)
        return;
    bk_backend *bk = m->bk;
    if (m->layers) {
        for (int i = 0; i < m->cfg.n_layer; i++) {
            m1_layer *L = &m->layers[i];
            void *smalls[] = {L->norm_w, L->in_proj_b, (void *)L->ssm.conv_w, (void *)L->ssm.conv_b,
                              (void *)L->ssm.dt_bias, (void *)L->ssm.A, (void *)L->ssm.D,
                              L->out_proj_b};
            mdl_release_all(bk, smalls, sizeof smalls / sizeof smalls[0]);
            bk_matrix *mats[] = {&L->in_proj, &L->x_proj, &L->dt_proj, &L->out_proj};
            for (size_t k = 0; k < sizeof mats / sizeof mats[0]; k++)
                if (mats[k]->data)
                    bk->matrix_release(bk, mats[k]);
        }
        free(m->layers);
    }
    mdl_release_embed_head(bk, &m->embed, &m->lm_head);
    void *bufs[] = {m->norm_f, m->resid, m->xn, m->xz, m->xc, m->dbc, m->dt, m->y, m->out, m->logits};
    mdl_release_all(bk, bufs, sizeof bufs / sizeof bufs[0]);
    free(m);
}

/* ---- forward ---------------------------------------------------------- */

/* The part of a layer before and after the sequence ops, shared by prefill
 * and decode: rows = tokens (prefill) or sequences (decode). */
static void mixer_in(mamba1 *m, const m1_layer *L, int rows)
{
    bk_backend *bk = m->bk;
    bk->matmul(bk, &L->in_proj, m->xn, m->cfg.d_model, rows, m->xz, 2 * m->cfg.d_inner, L->in_proj_b);
}

static void mixer_mid(mamba1 *m, const m1_layer *L, int rows)
{
    bk_backend *bk = m->bk;
    const int E = m->cfg.d_inner, ldd = m->cfg.dt_rank + 2 * m->cfg.d_state;
    bk->matmul(bk, &L->x_proj, m->xc, E, rows, m->dbc, ldd, NULL);
    bk->matmul(bk, &L->dt_proj, m->dbc, ldd, rows, m->dt, E, NULL);
}

static void mixer_out(mamba1 *m, const m1_layer *L, int rows)
{
    bk_backend *bk = m->bk;
    bk->matmul(bk, &L->out_proj, m->y, m->cfg.d_inner, rows, m->out, m->cfg.d_model, L->out_proj_b);
}

/* Final norm of `rows` rows of the residual stream (adding the last
 * layer's output) and logits of rows [first, rows) into host dst. */
static void head(mamba1 *m, int rows, int first, float *dst)
{
    bk_backend *bk = m->bk;
    const int Dm = m->cfg.d_model;
    bk->add_rmsnorm(bk, m->resid, m->out, m->norm_f, m->cfg.norm_eps, rows, Dm, m->xn);
    if (dst)
        mdl_logits(bk, &m->lm_head, NULL, m->xn, Dm, rows, first, m->logits, m->logits_rows, dst);
}

static void m1_prefill(void *arch, float *state, const int32_t *ids, int n, float *logits,
                       int all_logits)
{
    mamba1 *m = arch;
    bk_backend *bk = m->bk;
    const eng_model_config *c = &m->cfg;
    const size_t per_layer = layer_floats(c);
    const size_t conv_floats = (size_t)(c->d_conv - 1) * c->d_inner;
    for (int pos = 0; pos < n; pos += m->max_rows) {
        int T = n - pos < m->max_rows ? n - pos : m->max_rows;
        int last_chunk = pos + T == n;
        bk->embed(bk, &m->embed, ids + pos, T, m->resid);
        for (int i = 0; i < c->n_layer; i++) {
            const m1_layer *L = &m->layers[i];
            float *window = state + i * per_layer, *ssm = window + conv_floats;
            bk->add_rmsnorm(bk, m->resid, i ? m->out : NULL, L->norm_w, c->norm_eps, T, c->d_model,
                            m->xn);
            mixer_in(m, L, T);
            bk->conv_prefill(bk, &L->ssm, window, m->xz, T, m->xc);
            mixer_mid(m, L, T);
            bk->scan_prefill(bk, &L->ssm, ssm, m->xc, m->dt, m->dbc, m->xz, T, m->y);
            mixer_out(m, L, T);
        }
        if (all_logits && logits)
            head(m, T, 0, logits + (size_t)pos * c->vocab_size);
        else if (last_chunk && logits)
            head(m, T, T - 1, logits);
    }
}

static void m1_decode(void *arch, float *pool, const int32_t *slots, const int32_t *ids, int batch,
                      float *logits)
{
    mamba1 *m = arch;
    bk_backend *bk = m->bk;
    const eng_model_config *c = &m->cfg;
    const size_t per_layer = layer_floats(c);
    bk_state_ref st = {.pool = pool, .slot_stride = per_layer * c->n_layer, .slots = slots,
                       .batch = batch};
    bk->embed(bk, &m->embed, ids, batch, m->resid);
    for (int i = 0; i < c->n_layer; i++) {
        const m1_layer *L = &m->layers[i];
        st.conv_offset = i * per_layer;
        st.ssm_offset = st.conv_offset + (size_t)(c->d_conv - 1) * c->d_inner;
        bk->add_rmsnorm(bk, m->resid, i ? m->out : NULL, L->norm_w, c->norm_eps, batch, c->d_model,
                        m->xn);
        mixer_in(m, L, batch);
        bk->conv_step(bk, &L->ssm, &st, m->xz, m->xc);
        mixer_mid(m, L, batch);
        bk->scan_step(bk, &L->ssm, &st, m->xc, m->dt, m->dbc, m->xz, m->y);
        mixer_out(m, L, batch);
    }
    head(m, batch, 0, logits);
}

const eng_arch mamba1_arch = {
    .model_type = "mamba",
    .load = m1_load,
    .free = m1_free,
    .state_floats = m1_state_floats,
    .n_params = m1_n_params,
    .weight_bytes = m1_weight_bytes,
    .weight_dtype = m1_weight_dtype,
    .prefill = m1_prefill,
    .decode = m1_decode,
};
