/* s5.c - S5 language models on top of the backend interface.
 *
 * Semantics (proto/s5-format.md): embedding -> n_layer x [LayerNorm -> S5
 * SSM -> activation -> residual] -> LayerNorm -> LM head, where the S5
 * SSM is the reference's S5SSM (lindermanlab/S5): one multi-input
 * multi-output diagonal SSM per layer with P complex states,
 *     x_t = lambda_bar x_{t-1} + B_bar u_t,   y_t = f Re(C~ x_t) + D u_t
 * (f = 2 with conjugate symmetry, else 1), and the activation is one of
 * the reference SequenceLayer's (gelu, full_glu, half_glu1, half_glu2).
 *
 * Discretisation (ZOH or bilinear, per-state steps) happens once at load,
 * in double precision, and is folded into two real matrices so that the
 * layer is matmul -> elementwise complex recurrence -> matmul:
 *     Bm (2P, H) = [Re B_bar; Im B_bar]          v = u Bm^T   (Re | Im)
 *     Cm (H, 2P) = f [Re C~, -Im C~]             y = xs Cm^T
 * (Re(c x) = Re c Re x - Im c Im x).  The matmuls run at the backend's
 * GEMM speed for prefill and decode alike (and, for the prompts of one
 * engine step, over all their tokens at once); only the recurrence over the
 * P states is S5's own op (bk_s5_ops).
 *
 * Per-slot state, per layer: (2, P) fp32, the real then the imaginary
 * plane of x.  This file never touches HTTP or sessions.
 */
#include "models/s5.h"

#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"

/* ---- config.json -------------------------------------------------------- */

static const char *const act_names[] = {"gelu", "full_glu", "half_glu1", "half_glu2"};

static int s5_parse_config(const eng_cfg_reader *r, const json_t *root, eng_model_config *c)
{
    /* Every key the format defines and the ones that say nothing about
     * the math; any other may change the math and is refused. */
    static const char *const known[] = {
        "model_type", "d_model", "n_layer", "vocab_size", "ssm_size", "conj_sym",
        "discretization", "activation", "gelu_approximate", "prenorm", "batchnorm",
        "bidirectional", "layer_norm_epsilon", "tie_embeddings", "bos_token_id", "eos_token_id",
        "architectures", "torch_dtype", "transformers_version", "_name_or_path"};
    static const char *const required[] = {"d_model", "n_layer", "vocab_size", "ssm_size", NULL};
    s5_config *f = (s5_config *)c->family;
    const char *act = NULL, *disc = NULL;
    int rc, prenorm = 1, batchnorm = 0, bidir = 0;
    double eps;
    if ((rc = eng_cfg_require(r, root, required, "model_type \"s5\"")) ||
        (rc = mdl_cfg_known_keys(r, root, known, sizeof known / sizeof known[0],
                                 "S5 format (proto/s5-format.md)")))
        return rc;
    f->tie_given = json_object_get(root, "tie_embeddings") != NULL;
    if ((rc = eng_cfg_int(r, root, "d_model", 0, 1, ENG_CFG_DIM_MAX, &c->d_model)) ||
        (rc = eng_cfg_int(r, root, "n_layer", 0, 1, ENG_CFG_DIM_MAX, &c->n_layer)) ||
        (rc = eng_cfg_int(r, root, "vocab_size", 0, 1, ENG_CFG_DIM_MAX, &c->vocab_size)) ||
        (rc = eng_cfg_int(r, root, "ssm_size", 0, 1, 1 << 20, &f->ssm_size)) ||
        (rc = eng_cfg_bool(r, root, "conj_sym", 1, &f->conj_sym)) ||
        (rc = eng_cfg_str(r, root, "discretization", "zoh", &disc)) ||
        (rc = eng_cfg_str(r, root, "activation", "gelu", &act)) ||
        (rc = eng_cfg_bool(r, root, "gelu_approximate", 1, &f->gelu_tanh)) ||
        (rc = eng_cfg_bool(r, root, "prenorm", 1, &prenorm)) ||
        (rc = eng_cfg_bool(r, root, "batchnorm", 0, &batchnorm)) ||
        (rc = eng_cfg_bool(r, root, "bidirectional", 0, &bidir)) ||
        (rc = eng_cfg_bool(r, root, "tie_embeddings", 0, &c->tie_embeddings)) ||
        (rc = eng_cfg_num(r, root, "layer_norm_epsilon", 1e-6, 0.0, 1.0, &eps)) ||
        (rc = eng_cfg_token(r, root, "bos_token_id", -1, &c->bos_token_id)) ||
        (rc = eng_cfg_token(r, root, "eos_token_id", -1, &c->eos_token_id)))
        return rc;
    if (strcmp(disc, "bilinear") == 0)
        f->bilinear = 1;
    else if (strcmp(disc, "zoh") != 0)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'discretization' \"%.64s\" is not supported (\"zoh\" or "
                            "\"bilinear\")", r->path, disc);
    f->act = -1;
    for (int k = 0; k < (int)(sizeof act_names / sizeof act_names[0]); k++)
        if (!strcmp(act, act_names[k]))
            f->act = k;
    if (f->act < 0)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'activation' \"%.64s\" is not supported (\"gelu\", \"full_glu\", "
                            "\"half_glu1\" or \"half_glu2\")", r->path, act);
    /* A recurrence serves causal models only; the reference's other
     * options change the block itself. */
    if (bidir)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'bidirectional' true is not supported (a bidirectional S5 layer "
                            "reads the future; a language model cannot)", r->path);
    if (batchnorm)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'batchnorm' true is not supported (only LayerNorm)", r->path);
    if (!prenorm)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'prenorm' false (post-norm blocks) is not supported", r->path);
    c->norm_eps = (float)eps;
    return SSMD_OK;
}

static int s5_fingerprint_fields(const eng_model_config *c, int32_t *out)
{
    const s5_config *f = s5_cfg(c);
    const int32_t nums[] = {c->d_model, c->n_layer,   c->vocab_size, f->ssm_size,
                            f->conj_sym, f->bilinear, f->act,        f->gelu_tanh};
    memcpy(out, nums, sizeof nums);
    return (int)(sizeof nums / sizeof nums[0]);
}

/* ---- the model ------------------------------------------------------------ */

typedef struct s5_block {
    float *norm_w, *norm_b;  /* (H) */
    float *lam;              /* (2, P) lambda_bar, real then imaginary */
    bk_matrix Bm;            /* (2P, H) f32 backend memory: [Re B_bar; Im B_bar] */
    bk_matrix Cm;            /* (H, 2P) f32 backend memory: f [Re C~, -Im C~] */
    float *D;                /* (H) */
    bk_matrix out1, out2;    /* (H, H): out1 with full_glu, out2 with any GLU */
    float *out1_b, *out2_b;  /* (H) */
} s5_block;

typedef struct s5_model {
    mdl_lm lm;  /* first: the shared skeleton */
    /* scratch, backend memory, lm.max_rows rows */
    float *v;   /* (rows, 2P) B_bar u, then the states x_t in place */
    float *y;   /* (rows, H) f Re(C~ x_t) */
    float *g;   /* (rows, H) gelu(y + D u), the GLU's input */
    float *o2;  /* (rows, 2H) [value | gate logits] for the backend's glu */
} s5_model;

static size_t s5_layer_floats(const eng_model_config *c)
{
    return 2 * (size_t)s5_cfg(c)->ssm_size;
}

/* ---- loading ---------------------------------------------------------- */

/* A real f32 matrix computed at load, as a bk_matrix over backend memory
 * (released with bk->release, not matrix_release: owned stays 0). */
static int host_matrix(mdl_loader *ld, bk_matrix *dst, const float *host, int rows, int cols,
                       const char *what)
{
    float *dev = mdl_upload(ld, host, (size_t)rows * cols, what);
    if (!dev)
        return ld->err->code;
    *dst = (bk_matrix){.data = dev, .row_bytes = (uint64_t)cols * sizeof(float),
                       .dtype = ENG_DTYPE_F32, .rows = rows, .cols = cols};
    return SSMD_OK;
}

typedef struct ssm_host {
    float *lre, *lim, *B, *C, *D, *log_step; /* as in the file, f32 */
    float *lam, *Bm, *Cm;                    /* discretised, as in s5_block */
} ssm_host;

static void ssm_host_free(ssm_host *s)
{
    float *all[] = {s->lre, s->lim, s->B, s->C, s->D, s->log_step, s->lam, s->Bm, s->Cm};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

/* File parameters -> lam, Bm, Cm, in double.  B is (P, H, 2), C (H, P, 2)
 * (the reference's (real, imag) last axis). */
static int discretise(mdl_loader *ld, int layer, ssm_host *s)
{
    const eng_model_config *c = &ld->m->cfg;
    const s5_config *f = s5_cfg(c);
    const int H = c->d_model, P = f->ssm_size;
    const double scale = f->conj_sym ? 2.0 : 1.0;
    for (int p = 0; p < P; p++) {
        double dt = exp(s->log_step[p]);
        double complex lam = s->lre[p] + I * s->lim[p], z = dt * lam, lb, g;
        if (f->bilinear) {
            double complex bl = 1.0 / (1.0 - z / 2);
            lb = bl * (1.0 + z / 2);
            g = bl * dt;
        } else {
            lb = cexp(z);
            /* (exp(z) - 1) / lambda = dt (exp(z) - 1) / z, by its series
             * near 0, where the quotient cancels */
            g = cabs(z) < 1e-5 ? dt * (1.0 + z / 2 + z * z / 6) : (lb - 1.0) / lam;
        }
        if (!isfinite(creal(lb)) || !isfinite(cimag(lb)) || !isfinite(creal(g)) ||
            !isfinite(cimag(g)))
            return ssmd_err_set(ld->err, SSMD_EFORMAT,
                                "layer %d state %d: lambda %g%+gi with step exp(%g) does not "
                                "discretise to a finite value", layer, p, s->lre[p], s->lim[p],
                                s->log_step[p]);
        s->lam[p] = (float)creal(lb);
        s->lam[P + p] = (float)cimag(lb);
        for (int h = 0; h < H; h++) {
            size_t fb = ((size_t)p * H + h) * 2;
            double complex bb = g * (s->B[fb] + I * s->B[fb + 1]);
            s->Bm[(size_t)p * H + h] = (float)creal(bb);
            s->Bm[(size_t)(P + p) * H + h] = (float)cimag(bb);
            size_t fc = ((size_t)h * P + p) * 2;
            s->Cm[(size_t)h * 2 * P + p] = (float)(scale * s->C[fc]);
            s->Cm[(size_t)h * 2 * P + P + p] = (float)(-scale * s->C[fc + 1]);
        }
    }
    return SSMD_OK;
}

/* One layer's "layers.<i>.ssm.*" tensors (proto/s5-format.md),
 * discretised and uploaded into b. */
static int load_ssm(mdl_loader *ld, int i, s5_block *b)
{
    const eng_model_config *c = &ld->m->cfg;
    const int H = c->d_model, P = s5_cfg(c)->ssm_size;
    char n[256];
    const size_t nn = sizeof n;
    ssm_host s = {0};
    int rc = SSMD_OK;
    if (!(s.lre = mdl_host_f32(ld, mdl_layer_name(n, nn, "", i, "ssm.Lambda_re"), 1,
                               (int64_t[]){P})) ||
        !(s.lim = mdl_host_f32(ld, mdl_layer_name(n, nn, "", i, "ssm.Lambda_im"), 1,
                               (int64_t[]){P})) ||
        !(s.B = mdl_host_f32(ld, mdl_layer_name(n, nn, "", i, "ssm.B"), 3, (int64_t[]){P, H, 2})) ||
        !(s.C = mdl_host_f32(ld, mdl_layer_name(n, nn, "", i, "ssm.C"), 3, (int64_t[]){H, P, 2})) ||
        !(s.D = mdl_host_f32(ld, mdl_layer_name(n, nn, "", i, "ssm.D"), 1, (int64_t[]){H})) ||
        !(s.log_step = mdl_host_f32(ld, mdl_layer_name(n, nn, "", i, "ssm.log_step"), 1,
                                    (int64_t[]){P})))
        goto fail;
    s.lam = calloc(2 * (size_t)P, sizeof(float));
    s.Bm = calloc(2 * (size_t)P * H, sizeof(float));
    s.Cm = calloc(2 * (size_t)P * H, sizeof(float));
    if (!s.lam || !s.Bm || !s.Cm) {
        rc = ssmd_err_set(ld->err, SSMD_ENOMEM, "s5: out of memory discretising layer %d", i);
        goto out;
    }
    if ((rc = discretise(ld, i, &s)))
        goto out;
    mdl_layer_name(n, nn, "", i, "ssm (discretised)");
    if (!(b->lam = mdl_upload(ld, s.lam, 2 * (size_t)P, n)) ||
        !(b->D = mdl_upload(ld, s.D, (size_t)H, n)) ||
        host_matrix(ld, &b->Bm, s.Bm, 2 * P, H, n) || host_matrix(ld, &b->Cm, s.Cm, H, 2 * P, n))
        goto fail;
    goto out;
fail:
    rc = ld->err->code;
out:
    ssm_host_free(&s);
    return rc;
}

static int s5_load_layer(mdl_loader *ld, int i, void *layer)
{
    s5_block *b = layer;
    const int H = ld->m->cfg.d_model, act = s5_cfg(&ld->m->cfg)->act;
    char n[256];
    const size_t nn = sizeof n;
    int rc;
    if ((rc = mdl_vector(ld, &b->norm_w, mdl_layer_name(n, nn, "", i, "norm.weight"), H)) ||
        (rc = mdl_vector(ld, &b->norm_b, mdl_layer_name(n, nn, "", i, "norm.bias"), H)) ||
        (rc = load_ssm(ld, i, b)))
        return rc;
    if (act == S5_ACT_FULL_GLU &&
        ((rc = mdl_matrix(ld, &b->out1, mdl_layer_name(n, nn, "", i, "out1.weight"), H, H)) ||
         (rc = mdl_vector(ld, &b->out1_b, mdl_layer_name(n, nn, "", i, "out1.bias"), H))))
        return rc;
    if (act != S5_ACT_GELU &&
        ((rc = mdl_matrix(ld, &b->out2, mdl_layer_name(n, nn, "", i, "out2.weight"), H, H)) ||
         (rc = mdl_vector(ld, &b->out2_b, mdl_layer_name(n, nn, "", i, "out2.bias"), H))))
        return rc;
    return SSMD_OK;
}

static void s5_free_layer(mdl_lm *m, void *layer)
{
    s5_block *b = layer;
    void *smalls[] = {b->norm_w, b->norm_b, b->lam, (void *)b->Bm.data, (void *)b->Cm.data,
                      b->D, b->out1_b, b->out2_b};
    mdl_release_all(m->bk, smalls, sizeof smalls / sizeof smalls[0]);
    bk_matrix *mats[] = {&b->out1, &b->out2};
    mdl_release_matrices(m->bk, mats, 2);
}

static void s5_end_names(const eng_model_config *c, mdl_end_names *out)
{
    (void)c;
    *out = (mdl_end_names){.embed = "embedding.weight", .lm_head = "lm_head.weight",
                           .lm_head_bias = "lm_head.bias", .norm_w = "norm_f.weight",
                           .norm_b = "norm_f.bias"};
}

static int s5_check(const eng_model_config *c, const bk_backend *bk, ssmd_err *err)
{
    return mdl_require(bk->s5 && bk->add_layernorm && bk->glu, bk, c, "S5 ops", err);
}

static int s5_alloc_scratch(mdl_lm *lm, ssmd_err *err)
{
    s5_model *m = (s5_model *)lm;
    const size_t rows = (size_t)lm->max_rows, H = (size_t)lm->cfg.d_model;
    const size_t P = (size_t)s5_cfg(&lm->cfg)->ssm_size;
    return mdl_alloc_all(lm, (float **const[]){&m->v, &m->y, &m->g, &m->o2},
                         (size_t[]){rows * 2 * P, rows * H, rows * H, rows * 2 * H}, 4, err);
}

static void s5_free_scratch(mdl_lm *lm)
{
    s5_model *m = (s5_model *)lm;
    void *bufs[] = {m->v, m->y, m->g, m->o2};
    mdl_release_all(lm->bk, bufs, 4);
}

/* ---- forward ---------------------------------------------------------- */

/* Before the recurrence: v = xn B_bar (Re | Im). */
static void ssm_in(s5_model *m, const s5_block *b, int rows)
{
    bk_backend *bk = m->lm.bk;
    bk->matmul(bk, &b->Bm, m->lm.xn, m->lm.cfg.d_model, rows, m->v, b->Bm.rows, NULL,
               BK_PRECISION_DEFAULT);
}

/* After the recurrence (states in m->v): y = f Re(C~ x), then the skip
 * D u and the activation into the block output lm.out.  The GLU forms
 * write value and gate logits side by side into o2 (row stride 2H) for
 * the backend's glu. */
static void ssm_out(s5_model *m, const s5_block *b, int rows)
{
    bk_backend *bk = m->lm.bk;
    const int H = m->lm.cfg.d_model, act = s5_cfg(&m->lm.cfg)->act;
    const int tanh_form = s5_cfg(&m->lm.cfg)->gelu_tanh;
    const float *u = m->lm.xn;
    bk->matmul(bk, &b->Cm, m->v, b->Cm.cols, rows, m->y, H, NULL, BK_PRECISION_DEFAULT);
    switch (act) {
    case S5_ACT_GELU:
        bk->s5->skip_act(bk, m->y, u, b->D, rows, H, tanh_form, NULL, 0, m->lm.out, H);
        return;
    case S5_ACT_FULL_GLU: /* out1(g) * sigmoid(out2(g)) */
        bk->s5->skip_act(bk, m->y, u, b->D, rows, H, tanh_form, NULL, 0, m->g, H);
        bk->matmul(bk, &b->out1, m->g, H, rows, m->o2, 2 * H, b->out1_b, BK_PRECISION_DEFAULT);
        break;
    case S5_ACT_HALF_GLU1: /* g * sigmoid(out2(g)): g is the value itself */
        bk->s5->skip_act(bk, m->y, u, b->D, rows, H, tanh_form, NULL, 0, m->o2, 2 * H);
        break;
    default: /* half_glu2: pre * sigmoid(out2(gelu(pre))) */
        bk->s5->skip_act(bk, m->y, u, b->D, rows, H, tanh_form, m->o2, 2 * H, m->g, H);
        break;
    }
    const float *gate_in = act == S5_ACT_HALF_GLU1 ? m->o2 : m->g;
    const int ld_in = act == S5_ACT_HALF_GLU1 ? 2 * H : H;
    bk->matmul(bk, &b->out2, gate_in, ld_in, rows, m->o2 + H, 2 * H, b->out2_b,
               BK_PRECISION_DEFAULT);
    bk->glu(bk, m->o2, rows, H, m->lm.out);
}

/* Several sequences' tokens back to back (segment k: seg_rows[k] rows,
 * states[k] its state): the norm and the matmuls run once over all rows,
 * the recurrence per segment from its own state. */
static void s5_prefill_layer_multi(mdl_lm *lm, int i, const void *layer, float *const *states,
                                   const int *seg_rows, int n_seg, int rows)
{
    s5_model *m = (s5_model *)lm;
    const s5_block *b = layer;
    const int P = s5_cfg(&lm->cfg)->ssm_size;
    mdl_prenorm(lm, i, b->norm_w, b->norm_b, rows);
    ssm_in(m, b, rows);
    for (int k = 0, off = 0; k < n_seg; off += seg_rows[k], k++) {
        float *v = m->v + (size_t)off * 2 * P;
        lm->bk->s5->scan(lm->bk, b->lam, P, states[k], v, seg_rows[k], v);
    }
    ssm_out(m, b, rows);
}

static void s5_prefill_layer(mdl_lm *lm, int i, const void *layer, float *state, int rows)
{
    s5_prefill_layer_multi(lm, i, layer, &state, &rows, 1, rows);
}

static void s5_decode_layer(mdl_lm *lm, int i, const void *layer, const bk_state_ref *st)
{
    s5_model *m = (s5_model *)lm;
    const s5_block *b = layer;
    const int P = s5_cfg(&lm->cfg)->ssm_size;
    mdl_prenorm(lm, i, b->norm_w, b->norm_b, st->batch);
    ssm_in(m, b, st->batch);
    lm->bk->s5->step(lm->bk, b->lam, P, st, m->v, m->v);
    ssm_out(m, b, st->batch);
}

static const mdl_family s5_family = {
    .model_bytes = sizeof(s5_model),
    .layer_bytes = sizeof(s5_block),
    .layer_norm = 1,
    .check = s5_check,
    .layer_floats = s5_layer_floats,
    .end_names = s5_end_names,
    .load_layer = s5_load_layer,
    .free_layer = s5_free_layer,
    .alloc_scratch = s5_alloc_scratch,
    .free_scratch = s5_free_scratch,
    .prefill_layer = s5_prefill_layer,
    .decode_layer = s5_decode_layer,
    .prefill_layer_multi = s5_prefill_layer_multi,
};

/* 1 when `suffix` is a tensor of every layer under activation act. */
static int layer_tensor(const char *suffix, int act)
{
    static const char *const always[] = {"norm.weight", "norm.bias",   "ssm.Lambda_re",
                                         "ssm.Lambda_im", "ssm.B",     "ssm.C",
                                         "ssm.D",       "ssm.log_step"};
    for (size_t k = 0; k < sizeof always / sizeof always[0]; k++)
        if (!strcmp(suffix, always[k]))
            return 1;
    if (act != S5_ACT_GELU && (!strcmp(suffix, "out2.weight") || !strcmp(suffix, "out2.bias")))
        return 1;
    return act == S5_ACT_FULL_GLU &&
           (!strcmp(suffix, "out1.weight") || !strcmp(suffix, "out1.bias"));
}

/* Every tensor in the file must be one the format defines for this
 * config: a tensor we would not read (a second C of a bidirectional layer,
 * an out1 without full_glu, a layer past n_layer) means the file is not
 * the model we would run. */
static int s5_check_tensors(const eng_model_config *c, const eng_weights *w, ssmd_err *err)
{
    const s5_config *f = s5_cfg(c);
    int rc = mdl_check_head(c, f->tie_given, w, err);
    for (int k = 0; !rc && k < eng_weights_count(w); k++) {
        const eng_tensor *t = eng_weights_at(w, k);
        static const char *const ends[] = {"embedding.weight", "norm_f.weight", "norm_f.bias",
                                           "lm_head.weight", "lm_head.bias"};
        int known = 0, layer = -1, used = 0;
        for (size_t e = 0; e < sizeof ends / sizeof ends[0]; e++)
            known |= !strcmp(t->name, ends[e]);
        if (!known && sscanf(t->name, "layers.%d.%n", &layer, &used) == 1 && used > 0 &&
            layer >= 0 && layer < c->n_layer)
            known = layer_tensor(t->name + used, f->act);
        if (!known)
            rc = ssmd_err_set(err, SSMD_EFORMAT,
                              "%s: tensor '%s' is not part of an S5 model with %d layers and "
                              "activation \"%s\" (proto/s5-format.md)", t->file, t->name,
                              c->n_layer, act_names[f->act]);
    }
    return rc;
}

static int s5_load(const eng_model_config *cfg, const eng_weights *w, bk_backend *bk, int max_batch,
                   void **out, ssmd_err *err)
{
    int rc = s5_check_tensors(cfg, w, err);
    if (rc)
        return rc;
    return mdl_lm_load(&s5_family, cfg, w, bk, max_batch, out, err);
}

static const char *const s5_types[] = {"s5", NULL};

const eng_arch s5_arch = {
    .name = "s5",
    .model_types = s5_types,
    .parse_config = s5_parse_config,
    .fingerprint_fields = s5_fingerprint_fields,
    .load = s5_load,
    MDL_LM_ARCH_OPS,
};
