/* mamba2.c - the Mamba-2 family: its config.json, its tensors and one
 * mixer layer on top of the backend interface (the model skeleton around
 * the layers is models/common.c).
 *
 * Per layer: RMSNorm -> in_proj, whose output row is [z | xBC | dt] ->
 * causal depthwise conv + SiLU over xBC = [x | B | C] -> the SSD recurrence
 * per head (scalar A per head, dt = softplus(dt + dt_bias) clamped to
 * time_step_limit, D skip), heads sharing B/C within a group -> gated
 * RMSNorm per group (norm(y * silu(z)) * w, or norm(y) * w * silu(z) when
 * norm_before_gate) -> out_proj -> residual add.  The conventions are
 * mamba_ssm's, which transformers follows from 4.48 on; dt is clamped the
 * same way whether a token is prefilled or decoded, so a session's output
 * never depends on how its tokens were fed.
 *
 * Per-slot state, per layer: conv window (d_conv-1, conv_dim) then SSM
 * state (nheads, head_dim, d_state), fp32 (proto/state-format.md).  This
 * file never touches HTTP or sessions.
 */
#include "models/mamba2.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"

/* ---- config.json -------------------------------------------------------- */

/* A [lo, hi] pair of non-negative numbers (hi may be Infinity), lo < hi. */
static int cfg_dt_limit(const eng_cfg_reader *r, const json_t *obj, const char *key,
                        mamba2_config *f)
{
    const json_t *v = json_object_get(obj, key);
    double lim[2] = {0.0, INFINITY};
    if (v && (!json_is_array(v) || json_array_size(v) != 2 ||
              !eng_cfg_json_number(json_array_get(v, 0), &lim[0]) ||
              !eng_cfg_json_number(json_array_get(v, 1), &lim[1]) || !(lim[0] >= 0.0) ||
              !(lim[1] > lim[0])))
        return ssmd_err_set(r->err, SSMD_EFORMAT,
                            "%s: '%s%s' must be [low, high] with 0 <= low < high (high may be "
                            "Infinity)", r->path, r->prefix, key);
    f->dt_min = (float)lim[0];
    f->dt_max = (float)lim[1];
    return SSMD_OK;
}

/* transformers' Mamba2Config. */
static int cfg_load_hf(const eng_cfg_reader *r, const json_t *root, eng_model_config *c,
                       mamba2_config *f)
{
    const char *act = NULL;
    int rc, rms = 1, fp32 = 1;
    double expand, eps;
    f->layout = MAMBA2_LAYOUT_HF;
    if ((rc = eng_cfg_str(r, root, "hidden_act", "silu", &act)))
        return rc;
    if (strcmp(act, "silu") != 0 && strcmp(act, "swish") != 0)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'hidden_act' \"%.64s\" is not supported (only \"silu\")", r->path,
                            act);
    if ((rc = eng_cfg_int(r, root, "vocab_size", 32768, 1, ENG_CFG_DIM_MAX, &c->vocab_size)) ||
        (rc = eng_cfg_int(r, root, "hidden_size", 4096, 1, ENG_CFG_DIM_MAX, &c->d_model)) ||
        (rc = eng_cfg_int(r, root, "num_hidden_layers", 64, 1, ENG_CFG_DIM_MAX, &c->n_layer)) ||
        (rc = eng_cfg_int(r, root, "state_size", 128, 1, ENG_CFG_DIM_MAX, &f->d_state)) ||
        (rc = eng_cfg_int(r, root, "num_heads", 128, 1, ENG_CFG_DIM_MAX, &f->nheads)) ||
        (rc = eng_cfg_int(r, root, "head_dim", 64, 1, ENG_CFG_DIM_MAX, &f->head_dim)) ||
        (rc = eng_cfg_int(r, root, "n_groups", 8, 1, ENG_CFG_DIM_MAX, &f->ngroups)) ||
        (rc = eng_cfg_num(r, root, "expand", 2.0, 0.0, ENG_CFG_DIM_MAX, &expand)) ||
        (rc = eng_cfg_int(r, root, "conv_kernel", 4, 1, ENG_CFG_DIM_MAX, &f->d_conv)) ||
        (rc = eng_cfg_bool(r, root, "use_bias", 0, &f->use_bias)) ||
        (rc = eng_cfg_bool(r, root, "use_conv_bias", 1, &f->use_conv_bias)) ||
        (rc = eng_cfg_bool(r, root, "norm_before_gate", 0, &f->norm_before_gate)) ||
        (rc = eng_cfg_bool(r, root, "rms_norm", 1, &rms)) ||
        (rc = eng_cfg_bool(r, root, "residual_in_fp32", 1, &fp32)) ||
        (rc = eng_cfg_int(r, root, "chunk_size", 256, 1, ENG_CFG_DIM_MAX, &f->chunk_size)) ||
        (rc = cfg_dt_limit(r, root, "time_step_limit", f)) ||
        (rc = eng_cfg_bool(r, root, "tie_word_embeddings", 0, &c->tie_embeddings)) ||
        (rc = eng_cfg_num(r, root, "layer_norm_epsilon", 1e-5, 0.0, 1.0, &eps)) ||
        (rc = eng_cfg_token(r, root, "bos_token_id", 0, &c->bos_token_id)) ||
        (rc = eng_cfg_token(r, root, "eos_token_id", 2, &c->eos_token_id)))
        return rc;
    if (!rms)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'rms_norm' false (no gated norm) is not supported", r->path);
    f->d_inner = (int)floor(expand * (double)c->d_model);
    c->norm_eps = (float)eps;
    if ((int64_t)f->nheads * f->head_dim != f->d_inner)
        return ssmd_err_set(r->err, SSMD_EFORMAT,
                            "%s: 'num_heads' %d times 'head_dim' %d must equal 'expand' times "
                            "'hidden_size' (%d)", r->path, f->nheads, f->head_dim, f->d_inner);
    return SSMD_OK;
}

/* state-spaces/mamba's MambaConfig with ssm_cfg.layer "Mamba2". */
static int cfg_load_original(const eng_cfg_reader *r, const json_t *root, eng_model_config *c,
                             mamba2_config *f)
{
    double expand;
    int rms = 1, d_ssm = 0, d_has_hdim = 0;
    json_t *ssm = NULL;
    eng_cfg_reader sub;
    f->layout = MAMBA2_LAYOUT_ORIGINAL;
    int rc = mdl_cfg_original(r, root, c, &sub, &ssm);
    if (!rc && !(rc = eng_cfg_int(&sub, ssm, "d_state", 128, 1, ENG_CFG_DIM_MAX, &f->d_state)) &&
        !(rc = eng_cfg_int(&sub, ssm, "d_conv", 4, 1, ENG_CFG_DIM_MAX, &f->d_conv)) &&
        !(rc = eng_cfg_num(&sub, ssm, "expand", 2.0, 0.0, ENG_CFG_DIM_MAX, &expand)) &&
        !(rc = eng_cfg_int(&sub, ssm, "headdim", 64, 1, ENG_CFG_DIM_MAX, &f->head_dim)) &&
        !(rc = eng_cfg_int(&sub, ssm, "ngroups", 1, 1, ENG_CFG_DIM_MAX, &f->ngroups)) &&
        !(rc = eng_cfg_int(&sub, ssm, "d_ssm", 0, 0, ENG_CFG_DIM_MAX, &d_ssm)) &&
        !(rc = eng_cfg_bool(&sub, ssm, "D_has_hdim", 0, &d_has_hdim)) &&
        !(rc = eng_cfg_bool(&sub, ssm, "rmsnorm", 1, &rms)) &&
        !(rc = eng_cfg_bool(&sub, ssm, "norm_before_gate", 0, &f->norm_before_gate)) &&
        !(rc = eng_cfg_int(&sub, ssm, "chunk_size", 256, 1, ENG_CFG_DIM_MAX, &f->chunk_size)) &&
        !(rc = cfg_dt_limit(&sub, ssm, "dt_limit", f)) &&
        !(rc = eng_cfg_bool(&sub, ssm, "bias", 0, &f->use_bias)))
        rc = eng_cfg_bool(&sub, ssm, "conv_bias", 1, &f->use_conv_bias);
    json_decref(ssm);
    if (rc)
        return rc;
    f->d_inner = (int)floor(expand * (double)c->d_model);
    const char *refused = d_ssm && d_ssm != f->d_inner ? "'ssm_cfg.d_ssm' (a partial SSM)"
                          : d_has_hdim                  ? "'ssm_cfg.D_has_hdim' true"
                          : !rms                        ? "'ssm_cfg.rmsnorm' false"
                                                        : NULL;
    if (refused)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED, "%s: %s is not supported", r->path, refused);
    if (f->d_inner < 1 || f->d_inner % f->head_dim)
        return ssmd_err_set(r->err, SSMD_EFORMAT,
                            "%s: the inner width %d ('ssm_cfg.expand' times 'd_model') is not a "
                            "multiple of 'ssm_cfg.headdim' %d", r->path, f->d_inner, f->head_dim);
    f->nheads = f->d_inner / f->head_dim;
    return SSMD_OK;
}

static int m2_claims_untyped(const json_t *root) { return mdl_cfg_original_is(root, "Mamba2"); }

static int m2_parse_config(const eng_cfg_reader *r, const json_t *root, eng_model_config *c)
{
    mamba2_config *f = (mamba2_config *)c->family;
    int rc = json_object_get(root, "d_model") ? cfg_load_original(r, root, c, f)
                                              : cfg_load_hf(r, root, c, f);
    if (rc)
        return rc;
    if (f->nheads % f->ngroups)
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: %d heads do not split into %d groups",
                            r->path, f->nheads, f->ngroups);
    /* The state (nheads x head_dim x d_state) and in_proj's rows are indexed
     * with int by the backends. */
    int64_t conv_dim = (int64_t)f->d_inner + 2LL * f->ngroups * f->d_state;
    if ((int64_t)f->d_inner * f->d_state > INT32_MAX || 2 * conv_dim > INT32_MAX)
        return ssmd_err_set(r->err, SSMD_EFORMAT,
                            "%s: inner width %d with state size %d and %d groups overflows a "
                            "32-bit int", r->path, f->d_inner, f->d_state, f->ngroups);
    return SSMD_OK;
}

static int m2_fingerprint_fields(const eng_model_config *c, int32_t *out)
{
    const mamba2_config *f = mamba2_cfg(c);
    float lim[2] = {f->dt_min, f->dt_max};
    int32_t bits[2];
    memcpy(bits, lim, sizeof bits);
    const int32_t nums[] = {c->d_model,   c->n_layer,         c->vocab_size,       f->d_inner,
                            f->d_state,   f->d_conv,          f->nheads,           f->head_dim,
                            f->ngroups,   f->use_bias,        f->use_conv_bias,    f->norm_before_gate,
                            bits[0],      bits[1]};
    memcpy(out, nums, sizeof nums);
    return (int)(sizeof nums / sizeof nums[0]);
}

/* ---- the model ------------------------------------------------------------ */

typedef struct m2_layer {
    float *norm_w;       /* (d_model) pre-norm */
    bk_matrix in_proj;   /* (2*d_inner + 2*ngroups*d_state + nheads, d_model) */
    float *in_proj_b;    /* or NULL */
    bk_mamba2_layer ssd; /* conv, dt_bias, A, D, gated-norm weight: f32 */
    bk_matrix out_proj;  /* (d_model, d_inner) */
    float *out_proj_b;   /* or NULL */
} m2_layer;

typedef struct mamba2 {
    mdl_lm lm;           /* first: the shared skeleton */
    /* scratch, backend memory, lm.max_rows rows each */
    float *proj;         /* (rows, n_proj): in_proj's [z | xBC | dt] */
    float *xbc;          /* (rows, conv_dim) conv output [x | B | C] */
    float *y;            /* (rows, d_inner) gated-normed SSM output */
} mamba2;

static int conv_dim_of(const mamba2_config *f) { return f->d_inner + 2 * f->ngroups * f->d_state; }
static int n_proj_of(const mamba2_config *f) { return f->d_inner + conv_dim_of(f) + f->nheads; }

static int m2_check(const eng_model_config *c, const bk_backend *bk, ssmd_err *err)
{
    int rc = mdl_require(bk->mamba2 != NULL, bk, c, "Mamba-2 ops", err);
    if (!rc && mamba2_cfg(c)->d_state > bk->mamba2->max_state)
        rc = ssmd_err_set(err, SSMD_EUNSUPPORTED,
                          "mamba2: state_size %d is above the %d the %s backend supports",
                          mamba2_cfg(c)->d_state, bk->mamba2->max_state, bk->name);
    return rc;
}

static size_t m2_layer_floats(const eng_model_config *c)
{
    const mamba2_config *f = mamba2_cfg(c);
    return (size_t)(f->d_conv - 1) * (size_t)conv_dim_of(f) +
           (size_t)f->d_inner * (size_t)f->d_state;
}

static void m2_end_names(const eng_model_config *c, mdl_end_names *out)
{
    *out = (mdl_end_names){
        .embed = mamba2_cfg(c)->layout == MAMBA2_LAYOUT_ORIGINAL ? "backbone.embedding.weight"
                                                                 : "backbone.embeddings.weight",
        .lm_head = "lm_head.weight",
        .norm_w = "backbone.norm_f.weight",
    };
}

static int m2_load_layer(mdl_loader *ld, int i, void *layer)
{
    m2_layer *L = layer;
    const eng_model_config *c = &ld->m->cfg;
    const mamba2_config *f = mamba2_cfg(c);
    const int D = c->d_model, E = f->d_inner, H = f->nheads, K = f->d_conv, CD = conv_dim_of(f);
    char n[256];
    const size_t nn = sizeof n;
    const char *b = "backbone.";
    int rc;
    if ((rc = mdl_vector(ld, &L->norm_w, mdl_layer_name(n, nn, b, i, "norm.weight"), D)) ||
        (rc = mdl_matrix(ld, &L->in_proj, mdl_layer_name(n, nn, b, i, "mixer.in_proj.weight"),
                         n_proj_of(f), D)) ||
        (f->use_bias && (rc = mdl_vector(ld, &L->in_proj_b,
                                         mdl_layer_name(n, nn, b, i, "mixer.in_proj.bias"),
                                         n_proj_of(f)))) ||
        /* conv1d.weight (conv_dim, 1, K) -> (K, conv_dim) so the kernel walks channels */
        (rc = mdl_transposed(ld, (float **)&L->ssd.conv_w,
                             mdl_layer_name(n, nn, b, i, "mixer.conv1d.weight"), 3,
                             (int64_t[]){CD, 1, K}, CD, K, 0)) ||
        (f->use_conv_bias &&
         (rc = mdl_vector(ld, (float **)&L->ssd.conv_b,
                          mdl_layer_name(n, nn, b, i, "mixer.conv1d.bias"), CD))) ||
        (rc = mdl_vector(ld, (float **)&L->ssd.dt_bias,
                         mdl_layer_name(n, nn, b, i, "mixer.dt_bias"), H)) ||
        (rc = mdl_transposed(ld, (float **)&L->ssd.A, mdl_layer_name(n, nn, b, i, "mixer.A_log"),
                             1, (int64_t[]){H}, H, 1, 1)) ||
        (rc = mdl_vector(ld, (float **)&L->ssd.D, mdl_layer_name(n, nn, b, i, "mixer.D"), H)) ||
        (rc = mdl_vector(ld, (float **)&L->ssd.norm_w,
                         mdl_layer_name(n, nn, b, i, "mixer.norm.weight"), E)) ||
        (rc = mdl_matrix(ld, &L->out_proj, mdl_layer_name(n, nn, b, i, "mixer.out_proj.weight"),
                         D, E)) ||
        (f->use_bias && (rc = mdl_vector(ld, &L->out_proj_b,
                                         mdl_layer_name(n, nn, b, i, "mixer.out_proj.bias"), D))))
        return rc;
    L->ssd.d_inner = E, L->ssd.d_state = f->d_state, L->ssd.d_conv = K;
    L->ssd.nheads = H, L->ssd.head_dim = f->head_dim, L->ssd.ngroups = f->ngroups;
    L->ssd.norm_before_gate = f->norm_before_gate;
    L->ssd.dt_min = f->dt_min, L->ssd.dt_max = f->dt_max, L->ssd.norm_eps = c->norm_eps;
    return SSMD_OK;
}

static void m2_free_layer(mdl_lm *m, void *layer)
{
    m2_layer *L = layer;
    void *smalls[] = {L->norm_w, L->in_proj_b, (void *)L->ssd.conv_w, (void *)L->ssd.conv_b,
                      (void *)L->ssd.dt_bias, (void *)L->ssd.A, (void *)L->ssd.D,
                      (void *)L->ssd.norm_w, L->out_proj_b};
    mdl_release_all(m->bk, smalls, sizeof smalls / sizeof smalls[0]);
    bk_matrix *mats[] = {&L->in_proj, &L->out_proj};
    mdl_release_matrices(m->bk, mats, sizeof mats / sizeof mats[0]);
}

static int m2_alloc_scratch(mdl_lm *lm, ssmd_err *err)
{
    mamba2 *m = (mamba2 *)lm;
    const mamba2_config *f = mamba2_cfg(&lm->cfg);
    const size_t rows = (size_t)lm->max_rows;
    return mdl_alloc_all(lm, (float **const[]){&m->proj, &m->xbc, &m->y},
                         (size_t[]){rows * n_proj_of(f), rows * conv_dim_of(f),
                                    rows * (size_t)f->d_inner},
                         3, err);
}

static void m2_free_scratch(mdl_lm *lm)
{
    mamba2 *m = (mamba2 *)lm;
    void *bufs[] = {m->proj, m->xbc, m->y};
    mdl_release_all(lm->bk, bufs, sizeof bufs / sizeof bufs[0]);
}

/* ---- forward ---------------------------------------------------------- */

/* Pre-norm and in_proj of `rows` rows; the io of the sequence ops over
 * in_proj's output row [z | xBC | dt]. */
static bk_mamba2_io mixer_in(mamba2 *m, int i, const m2_layer *L, int rows)
{
    bk_backend *bk = m->lm.bk;
    const mamba2_config *f = mamba2_cfg(&m->lm.cfg);
    const int ld = n_proj_of(f);
    mdl_prenorm(&m->lm, i, L->norm_w, NULL, rows);
    bk->matmul(bk, &L->in_proj, m->lm.xn, m->lm.cfg.d_model, rows, m->proj, ld, L->in_proj_b,
               BK_PRECISION_DEFAULT);
    return (bk_mamba2_io){.xbc_in = m->proj + f->d_inner, .ld_in = ld, .xbc = m->xbc,
                          .dt = m->proj + f->d_inner + conv_dim_of(f), .lddt = ld,
                          .z = m->proj, .ldz = ld, .y = m->y, .rows = rows};
}

static void mixer_out(mamba2 *m, const m2_layer *L, int rows)
{
    bk_backend *bk = m->lm.bk;
    bk->matmul(bk, &L->out_proj, m->y, mamba2_cfg(&m->lm.cfg)->d_inner, rows, m->lm.out,
               m->lm.cfg.d_model, L->out_proj_b, BK_PRECISION_DEFAULT);
}

static void m2_prefill_layer(mdl_lm *lm, int i, const void *layer, float *state, int rows)
{
    mamba2 *m = (mamba2 *)lm;
    const m2_layer *L = layer;
    const mamba2_config *f = mamba2_cfg(&lm->cfg);
    const bk_mamba2_ops *ops = lm->bk->mamba2;
    bk_mamba2_io io = mixer_in(m, i, L, rows);
    ops->conv_prefill(lm->bk, &L->ssd, state, &io);
    ops->ssd_prefill(lm->bk, &L->ssd, state + (size_t)(f->d_conv - 1) * conv_dim_of(f), &io);
    mixer_out(m, L, rows);
}

static void m2_decode_layer(mdl_lm *lm, int i, const void *layer, const bk_state_ref *base)
{
    mamba2 *m = (mamba2 *)lm;
    const m2_layer *L = layer;
    const mamba2_config *f = mamba2_cfg(&lm->cfg);
    const bk_mamba2_ops *ops = lm->bk->mamba2;
    bk_state_ref st = *base; /* the conv window first, then the SSM state */
    st.ssm_offset = st.conv_offset + (size_t)(f->d_conv - 1) * conv_dim_of(f);
    bk_mamba2_io io = mixer_in(m, i, L, st.batch);
    ops->conv_step(lm->bk, &L->ssd, &st, &io);
    ops->ssd_step(lm->bk, &L->ssd, &st, &io);
    mixer_out(m, L, st.batch);
}

static const mdl_family m2_family = {
    .model_bytes = sizeof(mamba2),
    .layer_bytes = sizeof(m2_layer),
    .layer_norm = 0,
    .check = m2_check,
    .layer_floats = m2_layer_floats,
    .end_names = m2_end_names,
    .load_layer = m2_load_layer,
    .free_layer = m2_free_layer,
    .alloc_scratch = m2_alloc_scratch,
    .free_scratch = m2_free_scratch,
    .prefill_layer = m2_prefill_layer,
    .decode_layer = m2_decode_layer,
};

static int m2_load(const eng_model_config *cfg, const eng_weights *w, bk_backend *bk, int max_batch,
                   void **out, ssmd_err *err)
{
    return mdl_lm_load(&m2_family, cfg, w, bk, max_batch, out, err);
}

static const char *const m2_types[] = {"mamba2", NULL};

const eng_arch mamba2_arch = {
    .name = "mamba2",
    .model_types = m2_types,
    .claims_untyped = m2_claims_untyped,
    .parse_config = m2_parse_config,
    .fingerprint_fields = m2_fingerprint_fields,
    .load = m2_load,
    MDL_LM_ARCH_OPS,
};
