/* mamba1.c - the Mamba-1 family: its config.json, its tensors and one
 * mixer layer on top of the backend interface (the model skeleton around
 * the layers is models/common.c).
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

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"

/* ---- config.json -------------------------------------------------------- */

/* time_step_rank / dt_rank: "auto" = ceil(d_model / 16), or an integer. */
static int cfg_rank(const eng_cfg_reader *r, const json_t *obj, const char *key, int d_model, int *out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0)) {
        *out = (d_model + 15) / 16;
        return SSMD_OK;
    }
    if (!json_is_number(v))
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: '%s%s' must be \"auto\" or an integer",
                            r->path, r->prefix, key);
    return eng_cfg_int(r, obj, key, 0, 1, ENG_CFG_DIM_MAX, out);
}

/* int(expand * d_model), as Python computes it. */
static int cfg_inner(const eng_cfg_reader *r, double expand, int d_model, const char *key, int *out)
{
    double d = floor(expand * (double)d_model);
    if (d < 1 || d > ENG_CFG_DIM_MAX)
        return ssmd_err_set(r->err, SSMD_EFORMAT,
                            "%s: '%s%s' %g times the model width %d gives an inner width of %.0f, "
                            "must be between 1 and %d", r->path, r->prefix, key, expand, d_model, d,
                            ENG_CFG_DIM_MAX);
    *out = (int)d;
    return SSMD_OK;
}

static int cfg_load_hf(const eng_cfg_reader *r, const json_t *root, eng_model_config *c,
                       mamba1_config *f)
{
    const char *act = NULL;
    int rc, fp32;
    double expand, eps;
    if ((rc = eng_cfg_str(r, root, "hidden_act", "silu", &act)) != SSMD_OK)
        return rc;
    if (strcmp(act, "silu") != 0 && strcmp(act, "swish") != 0)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'hidden_act' \"%.64s\" is not supported (only \"silu\")", r->path,
                            act);
    f->layout = MAMBA1_LAYOUT_HF;
    if ((rc = eng_cfg_int(r, root, "vocab_size", 50280, 1, ENG_CFG_DIM_MAX, &c->vocab_size)) ||
        (rc = eng_cfg_int(r, root, "hidden_size", 768, 1, ENG_CFG_DIM_MAX, &c->d_model)) ||
        (rc = eng_cfg_int(r, root, "state_size", 16, 1, ENG_CFG_DIM_MAX, &f->d_state)) ||
        (rc = eng_cfg_int(r, root, "num_hidden_layers", 32, 1, ENG_CFG_DIM_MAX, &c->n_layer)) ||
        (rc = eng_cfg_int(r, root, "conv_kernel", 4, 1, ENG_CFG_DIM_MAX, &f->d_conv)) ||
        (rc = eng_cfg_num(r, root, "expand", 2.0, 0.0, ENG_CFG_DIM_MAX, &expand)) ||
        (rc = cfg_inner(r, expand, c->d_model, "expand", &f->d_inner)) ||
        /* a saved intermediate_size overrides expand, as in transformers */
        (rc = eng_cfg_int(r, root, "intermediate_size", f->d_inner, 1, ENG_CFG_DIM_MAX,
                         &f->d_inner)) ||
        (rc = cfg_rank(r, root, "time_step_rank", c->d_model, &f->dt_rank)) ||
        (rc = eng_cfg_bool(r, root, "use_bias", 0, &f->use_bias)) ||
        (rc = eng_cfg_bool(r, root, "use_conv_bias", 1, &f->use_conv_bias)) ||
        (rc = eng_cfg_bool(r, root, "tie_word_embeddings", 1, &c->tie_embeddings)) ||
        (rc = eng_cfg_bool(r, root, "residual_in_fp32", 1, &fp32)) ||
        (rc = eng_cfg_num(r, root, "layer_norm_epsilon", 1e-5, 0.0, 1.0, &eps)) ||
        (rc = eng_cfg_token(r, root, "bos_token_id", 0, &c->bos_token_id)) ||
        (rc = eng_cfg_token(r, root, "eos_token_id", 0, &c->eos_token_id)))
        return rc;
    c->norm_eps = (float)eps;
    if (strcmp(c->model_type, "falcon_mamba") != 0)
        return SSMD_OK;
    double rms_eps;
    if ((rc = eng_cfg_num(r, root, "mixer_rms_eps", 1e-6, 0.0, 1.0, &rms_eps)))
        return rc;
    f->dbc_rms_eps = (float)rms_eps;
    return SSMD_OK;
}

/* state-spaces/mamba `MambaConfig` (mamba_ssm.models.config_mamba). */
static int cfg_load_original(const eng_cfg_reader *r, const json_t *root, eng_model_config *c,
                             mamba1_config *f)
{
    double expand;
    const char *layer = NULL;
    json_t *ssm = NULL;
    eng_cfg_reader sub; /* messages name the nested keys */
    f->layout = MAMBA1_LAYOUT_ORIGINAL;
    int rc = mdl_cfg_original(r, root, c, &sub, &ssm);
    if (rc)
        return rc;
    if (!(rc = eng_cfg_str(&sub, ssm, "layer", "Mamba1", &layer)) && strcmp(layer, "Mamba1") != 0)
        rc = ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                          "%s: 'ssm_cfg.layer' \"%.64s\" is not supported (only \"Mamba1\" or \"Mamba2\")",
                          r->path, layer);
    if (!rc && !(rc = eng_cfg_int(&sub, ssm, "d_state", 16, 1, ENG_CFG_DIM_MAX, &f->d_state)) &&
        !(rc = eng_cfg_int(&sub, ssm, "d_conv", 4, 1, ENG_CFG_DIM_MAX, &f->d_conv)) &&
        !(rc = eng_cfg_num(&sub, ssm, "expand", 2.0, 0.0, ENG_CFG_DIM_MAX, &expand)) &&
        !(rc = cfg_inner(&sub, expand, c->d_model, "expand", &f->d_inner)) &&
        !(rc = cfg_rank(&sub, ssm, "dt_rank", c->d_model, &f->dt_rank)) &&
        !(rc = eng_cfg_bool(&sub, ssm, "bias", 0, &f->use_bias)))
        rc = eng_cfg_bool(&sub, ssm, "conv_bias", 1, &f->use_conv_bias);
    json_decref(ssm);
    return rc;
}

/* The original layout has no model_type; its d_model says what it is
 * (every ssm_cfg.layer but Mamba-2's: an unknown layer gets this family's
 * message). */
static int m1_claims_untyped(const json_t *root)
{
    return json_object_get(root, "d_model") && !mdl_cfg_original_is(root, "Mamba2");
}

static int m1_parse_config(const eng_cfg_reader *r, const json_t *root, eng_model_config *c)
{
    mamba1_config *f = (mamba1_config *)c->family;
    int rc = json_object_get(root, "d_model") ? cfg_load_original(r, root, c, f)
                                              : cfg_load_hf(r, root, c, f);
    if (rc)
        return rc;
    /* The recurrent state (d_inner x d_state, d_inner x d_conv) is indexed
     * with int by the backends. */
    int hf = f->layout == MAMBA1_LAYOUT_HF, by_state = (int64_t)f->d_inner * f->d_state > INT_MAX;
    if (by_state || (int64_t)f->d_inner * f->d_conv > INT_MAX)
        return ssmd_err_set(r->err, SSMD_EFORMAT,
                            "%s: inner width %d ('%s') times '%s' %d overflows a 32-bit int",
                            r->path, f->d_inner, hf ? "intermediate_size" : "ssm_cfg.expand",
                            by_state ? (hf ? "state_size" : "ssm_cfg.d_state")
                                     : (hf ? "conv_kernel" : "ssm_cfg.d_conv"),
                            by_state ? f->d_state : f->d_conv);
    return SSMD_OK;
}

static int m1_fingerprint_fields(const eng_model_config *c, int32_t *out)
{
    const mamba1_config *f = mamba1_cfg(c);
    const int32_t nums[] = {c->d_model,  c->n_layer,  c->vocab_size, f->d_state,      f->d_inner,
                            f->d_conv,   f->dt_rank,  f->use_bias,   f->use_conv_bias};
    int n = (int)(sizeof nums / sizeof nums[0]);
    memcpy(out, nums, sizeof nums);
    if (f->dbc_rms_eps > 0.0f) /* Falcon-Mamba only: Mamba digests stay as they were */
        memcpy(&out[n++], &f->dbc_rms_eps, sizeof(int32_t));
    return n;
}

/* ---- the model ------------------------------------------------------------ */

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
    mdl_lm lm;             /* first: the shared skeleton */
    /* scratch, backend memory, lm.max_rows rows each */
    float *xz;             /* (rows, 2*d_inner): in_proj's x then z */
    float *xc;             /* (rows, d_inner) conv output */
    float *dbc;            /* (rows, dt_rank + 2*d_state) */
    float *dt;             /* (rows, d_inner) */
    float *y;              /* (rows, d_inner) */
} mamba1;

static int m1_check(const eng_model_config *c, const bk_backend *bk, ssmd_err *err)
{
    int rc = mdl_require(bk->mamba1 != NULL, bk, c, "Mamba-1 ops", err);
    if (!rc && mamba1_cfg(c)->dbc_rms_eps > 0.0f)
        rc = mdl_require(bk->rms_rows != NULL, bk, c, "RMS norm of dt, B and C", err);
    if (!rc && mamba1_cfg(c)->d_state > bk->mamba1->max_state)
        rc = ssmd_err_set(err, SSMD_EUNSUPPORTED,
                          "mamba1: state_size %d is above the %d the %s backend supports",
                          mamba1_cfg(c)->d_state, bk->mamba1->max_state, bk->name);
    return rc;
}

static size_t m1_layer_floats(const eng_model_config *c)
{
    const mamba1_config *f = mamba1_cfg(c);
    return (size_t)(f->d_conv - 1 + f->d_state) * (size_t)f->d_inner;
}

static void m1_end_names(const eng_model_config *c, mdl_end_names *out)
{
    *out = (mdl_end_names){
        .embed = mamba1_cfg(c)->layout == MAMBA1_LAYOUT_ORIGINAL ? "backbone.embedding.weight"
                                                                 : "backbone.embeddings.weight",
        .lm_head = "lm_head.weight",
        .norm_w = "backbone.norm_f.weight",
    };
}

static int m1_load_layer(mdl_loader *ld, int i, void *layer)
{
    m1_layer *L = layer;
    const eng_model_config *c = &ld->m->cfg;
    const mamba1_config *f = mamba1_cfg(c);
    const int D = c->d_model, E = f->d_inner, N = f->d_state, K = f->d_conv, R = f->dt_rank;
    char n[256];
    const size_t nn = sizeof n;
    int rc;
    if ((rc = mdl_vector(ld, &L->norm_w, mdl_layer_name(n, nn, "backbone.", i, "norm.weight"), D)) ||
        (rc = mdl_matrix(ld, &L->in_proj, mdl_layer_name(n, nn, "backbone.", i, "mixer.in_proj.weight"),
                         2L * E, D)) ||
        (f->use_bias &&
         (rc = mdl_vector(ld, &L->in_proj_b,
                          mdl_layer_name(n, nn, "backbone.", i, "mixer.in_proj.bias"), 2L * E))) ||
        /* conv1d.weight (E, 1, K) -> (K, E) so the kernel walks channels */
        (rc = mdl_transposed(ld, (float **)&L->ssm.conv_w,
                         mdl_layer_name(n, nn, "backbone.", i, "mixer.conv1d.weight"), 3,
                         (int64_t[]){E, 1, K}, E, K, 0)) ||
        (f->use_conv_bias &&
         (rc = mdl_vector(ld, (float **)&L->ssm.conv_b,
                          mdl_layer_name(n, nn, "backbone.", i, "mixer.conv1d.bias"), E))) ||
        (rc = mdl_matrix(ld, &L->x_proj, mdl_layer_name(n, nn, "backbone.", i, "mixer.x_proj.weight"),
                         (int64_t)R + 2L * N, E)) ||
        (rc = mdl_matrix(ld, &L->dt_proj,
                         mdl_layer_name(n, nn, "backbone.", i, "mixer.dt_proj.weight"), E, R)) ||
        (rc = mdl_vector(ld, (float **)&L->ssm.dt_bias,
                         mdl_layer_name(n, nn, "backbone.", i, "mixer.dt_proj.bias"), E)) ||
        /* A_log (E, N) -> A = -exp(A_log) as (N, E) */
        (rc = mdl_transposed(ld, (float **)&L->ssm.A, mdl_layer_name(n, nn, "backbone.", i, "mixer.A_log"),
                         2, (int64_t[]){E, N}, E, N, 1)) ||
        (rc = mdl_vector(ld, (float **)&L->ssm.D, mdl_layer_name(n, nn, "backbone.", i, "mixer.D"), E)) ||
        (rc = mdl_matrix(ld, &L->out_proj,
                         mdl_layer_name(n, nn, "backbone.", i, "mixer.out_proj.weight"), D, E)) ||
        (f->use_bias &&
         (rc = mdl_vector(ld, &L->out_proj_b,
                          mdl_layer_name(n, nn, "backbone.", i, "mixer.out_proj.bias"), D))))
        return rc;
    L->ssm.d_inner = E;
    L->ssm.d_state = N;
    L->ssm.d_conv = K;
    L->ssm.dt_rank = R;
    return SSMD_OK;
}

static void m1_free_layer(mdl_lm *m, void *layer)
{
    m1_layer *L = layer;
    void *smalls[] = {L->norm_w, L->in_proj_b, (void *)L->ssm.conv_w, (void *)L->ssm.conv_b,
                      (void *)L->ssm.dt_bias, (void *)L->ssm.A, (void *)L->ssm.D, L->out_proj_b};
    mdl_release_all(m->bk, smalls, sizeof smalls / sizeof smalls[0]);
    bk_matrix *mats[] = {&L->in_proj, &L->x_proj, &L->dt_proj, &L->out_proj};
    mdl_release_matrices(m->bk, mats, sizeof mats / sizeof mats[0]);
}

static int m1_alloc_scratch(mdl_lm *lm, ssmd_err *err)
{
    mamba1 *m = (mamba1 *)lm;
    const mamba1_config *f = mamba1_cfg(&lm->cfg);
    const size_t rows = (size_t)lm->max_rows, E = (size_t)f->d_inner;
    return mdl_alloc_all(lm, (float **const[]){&m->xz, &m->xc, &m->dbc, &m->dt, &m->y},
                         (size_t[]){rows * 2 * E, rows * E,
                                    rows * ((size_t)f->dt_rank + 2 * (size_t)f->d_state), rows * E,
                                    rows * E},
                         5, err);
}

static void m1_free_scratch(mdl_lm *lm)
{
    mamba1 *m = (mamba1 *)lm;
    void *bufs[] = {m->xz, m->xc, m->dbc, m->dt, m->y};
    mdl_release_all(lm->bk, bufs, sizeof bufs / sizeof bufs[0]);
}

/* ---- forward ---------------------------------------------------------- */

/* The activations of one layer's sequence ops over `rows` rows: x and z
 * are the two halves of in_proj's output rows. */
static bk_mamba1_io m1_io(const mamba1 *m, int rows)
{
    const int E = mamba1_cfg(&m->lm.cfg)->d_inner;
    return (bk_mamba1_io){.x = m->xz, .ldx = 2 * E, .xc = m->xc, .dt = m->dt, .dbc = m->dbc,
                          .z = m->xz + E, .ldz = 2 * E, .y = m->y, .rows = rows};
}

/* The parts of a layer before and after the sequence ops, shared by
 * prefill and decode: rows = tokens (prefill) or sequences (decode). */
static void mixer_in(mamba1 *m, int i, const m1_layer *L, int rows)
{
    bk_backend *bk = m->lm.bk;
    const int E = mamba1_cfg(&m->lm.cfg)->d_inner;
    mdl_prenorm(&m->lm, i, L->norm_w, NULL, rows);
    bk->matmul(bk, &L->in_proj, m->lm.xn, m->lm.cfg.d_model, rows, m->xz, 2 * E, L->in_proj_b,
               BK_PRECISION_DEFAULT);
}

/* x_proj (and Falcon-Mamba's norms), then dt_proj unless the backend's
 * scan computes dt itself (with_dt 0: decode on scan_step_dt). */
static void mixer_mid(mamba1 *m, const m1_layer *L, int rows, int with_dt)
{
    bk_backend *bk = m->lm.bk;
    const mamba1_config *f = mamba1_cfg(&m->lm.cfg);
    const int E = f->d_inner, ldd = f->dt_rank + 2 * f->d_state;
    bk->matmul(bk, &L->x_proj, m->xc, E, rows, m->dbc, ldd, NULL, BK_PRECISION_DEFAULT);
    if (f->dbc_rms_eps > 0.0f) { /* Falcon-Mamba: dt_low, B and C each to unit RMS */
        bk->rms_rows(bk, m->dbc, ldd, rows, f->dt_rank, f->dbc_rms_eps);
        bk->rms_rows(bk, m->dbc + f->dt_rank, ldd, rows, f->d_state, f->dbc_rms_eps);
        bk->rms_rows(bk, m->dbc + f->dt_rank + f->d_state, ldd, rows, f->d_state, f->dbc_rms_eps);
    }
    /* dt goes through softplus and exp(dt A): keep it f32 in fast mode */
    if (with_dt)
        bk->matmul(bk, &L->dt_proj, m->dbc, ldd, rows, m->dt, E, NULL, BK_PRECISION_EXACT);
}

static void mixer_out(mamba1 *m, const m1_layer *L, int rows)
{
    bk_backend *bk = m->lm.bk;
    bk->matmul(bk, &L->out_proj, m->y, mamba1_cfg(&m->lm.cfg)->d_inner, rows, m->lm.out,
               m->lm.cfg.d_model, L->out_proj_b, BK_PRECISION_DEFAULT);
}

static void m1_prefill_layer(mdl_lm *lm, int i, const void *layer, float *state, int rows)
{
    mamba1 *m = (mamba1 *)lm;
    const m1_layer *L = layer;
    const mamba1_config *f = mamba1_cfg(&lm->cfg);
    const bk_mamba1_ops *ops = lm->bk->mamba1;
    bk_mamba1_io io = m1_io(m, rows);
    mixer_in(m, i, L, rows);
    ops->conv_prefill(lm->bk, &L->ssm, state, &io);
    mixer_mid(m, L, rows, 1);
    ops->scan_prefill(lm->bk, &L->ssm, state + (size_t)(f->d_conv - 1) * f->d_inner, &io);
    mixer_out(m, L, rows);
}

/* The rows of io from row `off` on, n of them: one segment of a batched
 * prefill (pointer arithmetic is valid on backend memory too). */
static bk_mamba1_io m1_io_rows(const mamba1 *m, const bk_mamba1_io *all, int off, int n)
{
    const mamba1_config *f = mamba1_cfg(&m->lm.cfg);
    const size_t E = (size_t)f->d_inner, ldd = (size_t)(f->dt_rank + 2 * f->d_state), o = (size_t)off;
    bk_mamba1_io io = *all;
    io.x += o * (size_t)all->ldx;
    io.z += o * (size_t)all->ldz;
    io.xc += o * E;
    io.dt += o * E;
    io.dbc += o * ldd;
    io.y += o * E;
    io.rows = n;
    return io;
}

/* Several sequences' chunks: the projections once over all rows (one
 * matmul each), conv and scan per segment from its own state. */
static void m1_prefill_layer_multi(mdl_lm *lm, int i, const void *layer, float *const *states,
                                   const int *seg_rows, int n_seg, int rows)
{
    mamba1 *m = (mamba1 *)lm;
    const m1_layer *L = layer;
    const mamba1_config *f = mamba1_cfg(&lm->cfg);
    const bk_mamba1_ops *ops = lm->bk->mamba1;
    const size_t ssm_at = (size_t)(f->d_conv - 1) * f->d_inner;
    bk_mamba1_io all = m1_io(m, rows);
    mixer_in(m, i, L, rows);
    for (int k = 0, off = 0; k < n_seg; off += seg_rows[k], k++) {
        bk_mamba1_io io = m1_io_rows(m, &all, off, seg_rows[k]);
        ops->conv_prefill(lm->bk, &L->ssm, states[k], &io);
    }
    mixer_mid(m, L, rows, 1);
    for (int k = 0, off = 0; k < n_seg; off += seg_rows[k], k++) {
        bk_mamba1_io io = m1_io_rows(m, &all, off, seg_rows[k]);
        ops->scan_prefill(lm->bk, &L->ssm, states[k] + ssm_at, &io);
    }
    mixer_out(m, L, rows);
}

static void m1_decode_layer(mdl_lm *lm, int i, const void *layer, const bk_state_ref *base)
{
    mamba1 *m = (mamba1 *)lm;
    const m1_layer *L = layer;
    const mamba1_config *f = mamba1_cfg(&lm->cfg);
    const bk_mamba1_ops *ops = lm->bk->mamba1;
    bk_state_ref st = *base; /* the conv window first, then the SSM state */
    st.ssm_offset = st.conv_offset + (size_t)(f->d_conv - 1) * f->d_inner;
    bk_mamba1_io io = m1_io(m, st.batch);
    mixer_in(m, i, L, st.batch);
    ops->conv_step(lm->bk, &L->ssm, &st, &io);
    mixer_mid(m, L, st.batch, !ops->scan_step_dt);
    if (ops->scan_step_dt)
        ops->scan_step_dt(lm->bk, &L->ssm, &L->dt_proj, &st, &io);
    else
        ops->scan_step(lm->bk, &L->ssm, &st, &io);
    mixer_out(m, L, st.batch);
}

static const mdl_family m1_family = {
    .model_bytes = sizeof(mamba1),
    .layer_bytes = sizeof(m1_layer),
    .layer_norm = 0,
    .check = m1_check,
    .layer_floats = m1_layer_floats,
    .end_names = m1_end_names,
    .load_layer = m1_load_layer,
    .free_layer = m1_free_layer,
    .alloc_scratch = m1_alloc_scratch,
    .free_scratch = m1_free_scratch,
    .prefill_layer = m1_prefill_layer,
    .decode_layer = m1_decode_layer,
    .prefill_layer_multi = m1_prefill_layer_multi,
};

static int m1_load(const eng_model_config *cfg, const eng_weights *w, bk_backend *bk, int max_batch,
                   void **out, ssmd_err *err)
{
    return mdl_lm_load(&m1_family, cfg, w, bk, max_batch, out, err);
}

static const char *const m1_types[] = {"mamba", "falcon_mamba", NULL};

const eng_arch mamba1_arch = {
    .name = "mamba1",
    .model_types = m1_types,
    .claims_untyped = m1_claims_untyped,
    .parse_config = m1_parse_config,
    .fingerprint_fields = m1_fingerprint_fields,
    .load = m1_load,
    MDL_LM_ARCH_OPS,
};
