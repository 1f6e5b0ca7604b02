/* s4.c - S4D and S4 (DPLR) language models on top of the backend interface.
 *
 * Semantics (proto/s4-format.md): embedding -> n_layer x [LayerNorm ->
 * S4 layer -> residual] -> LayerNorm -> LM head; the S4 layer is the
 * reference S4Block / s4d.py layer: H independent SSMs (N/2 complex pairs
 * each), y = gelu(SSM(u) + D u), then Linear H -> 2H and GLU.
 *
 * The continuous-time parameters are discretised once at load, in double
 * precision: S4D by ZOH or bilinear into a diagonal recurrence; S4 into the
 * Woodbury form of its bilinear step (O(rank N) per step, never the
 * eigendecomposition of A, which is ill-conditioned for HiPPO matrices).
 * Decode is that recurrence, one token per slot for a batch of slots;
 * prefill runs it over the prompt (time in order, channels in parallel), so
 * the final state is the recurrence's from whatever state the slot held.
 *
 * Per-slot state, per layer: (2, N2, d_model) fp32, the real then the
 * imaginary plane of the complex state.  This file never touches HTTP or
 * sessions.
 */
#include "models/s4.h"

#include <complex.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"

/* ---- config.json -------------------------------------------------------- */

/* Every key the format defines (proto/s4-format.md) and the ones that say
 * nothing about the math; any other key may change the math and is
 * refused, never ignored. */
static int s4_check_keys(const eng_cfg_reader *r, const json_t *root)
{
    static const char *const known[] = {
        "model_type", "d_model", "n_layer", "vocab_size", "d_state", "rank", "discretization",
        "activation", "final_act", "prenorm", "layer_norm_epsilon", "tie_embeddings",
        "bos_token_id", "eos_token_id", "architectures", "torch_dtype", "transformers_version",
        "_name_or_path"};
    return mdl_cfg_known_keys(r, root, known, sizeof known / sizeof known[0],
                              "S4 format (proto/s4-format.md)");
}

static int s4_parse_config(const eng_cfg_reader *r, const json_t *root, eng_model_config *c)
{
    s4_config *f = (s4_config *)c->family;
    const char *type = c->model_type;
    const char *act = NULL, *disc = NULL, *final_act = NULL;
    int rc, prenorm = 1, s4 = strcmp(type, "s4") == 0;
    double eps;
    static const char *const required[] = {"d_model", "n_layer", "vocab_size", NULL};
    char what[64];
    snprintf(what, sizeof what, "model_type \"%s\"", type);
    if ((rc = eng_cfg_require(r, root, required, what)) || (rc = s4_check_keys(r, root)))
        return rc;
    f->tie_given = json_object_get(root, "tie_embeddings") != NULL;
    if ((rc = eng_cfg_int(r, root, "d_model", 0, 1, ENG_CFG_DIM_MAX, &c->d_model)) ||
        (rc = eng_cfg_int(r, root, "n_layer", 0, 1, ENG_CFG_DIM_MAX, &c->n_layer)) ||
        (rc = eng_cfg_int(r, root, "vocab_size", 0, 1, ENG_CFG_DIM_MAX, &c->vocab_size)) ||
        (rc = eng_cfg_int(r, root, "d_state", 64, 2, 65536, &f->d_state)) ||
        (rc = eng_cfg_int(r, root, "rank", 1, 1, 64, &f->rank)) ||
        (rc = eng_cfg_str(r, root, "discretization", s4 ? "bilinear" : "zoh", &disc)) ||
        (rc = eng_cfg_str(r, root, "activation", "gelu", &act)) ||
        (rc = eng_cfg_str(r, root, "final_act", "glu", &final_act)) ||
        (rc = eng_cfg_bool(r, root, "prenorm", 1, &prenorm)) ||
        (rc = eng_cfg_bool(r, root, "tie_embeddings", 0, &c->tie_embeddings)) ||
        (rc = eng_cfg_num(r, root, "layer_norm_epsilon", 1e-5, 0.0, 1.0, &eps)) ||
        (rc = eng_cfg_token(r, root, "bos_token_id", -1, &c->bos_token_id)) ||
        (rc = eng_cfg_token(r, root, "eos_token_id", -1, &c->eos_token_id)))
        return rc;
    if (f->d_state % 2)
        return ssmd_err_set(r->err, SSMD_EFORMAT,
                            "%s: 'd_state' %d must be even (N/2 complex conjugate pairs)", r->path,
                            f->d_state);
    if (strcmp(disc, "bilinear") == 0)
        f->bilinear = 1;
    else if (strcmp(disc, "zoh") != 0 || s4)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'discretization' \"%.64s\" is not supported (%s)", r->path, disc,
                            s4 ? "s4 has only \"bilinear\"" : "\"zoh\" or \"bilinear\"");
    if (strcmp(act, "gelu") != 0)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'activation' \"%.64s\" is not supported (only \"gelu\")", r->path,
                            act);
    if (strcmp(final_act, "glu") != 0)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'final_act' \"%.64s\" is not supported (only \"glu\")", r->path,
                            final_act);
    if (!prenorm)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'prenorm' false (post-norm blocks) is not supported", r->path);
    if (!s4)
        f->rank = 0;
    c->norm_eps = (float)eps;
    return SSMD_OK;
}


static int s4_fingerprint_fields(const eng_model_config *c, int32_t *out)
{
    const s4_config *f = s4_cfg(c);
    /* The Mamba-shaped prefix (d_inner = H; no conv, dt rank or biases)
     * keeps the digests of models made before the families split. */
    const int32_t nums[] = {c->d_model, c->n_layer, c->vocab_size, f->d_state, c->d_model, 0, 0, 0, 0};
    int n = (int)(sizeof nums / sizeof nums[0]);
    memcpy(out, nums, sizeof nums);
    if (f->rank || f->bilinear) {
        out[n++] = f->rank;
        out[n++] = f->bilinear;
    }
    return n;
}

/* ---- the model ------------------------------------------------------------ */

typedef struct s4_block {
    float *norm_w, *norm_b; /* (H) */
    bk_s4_layer ssm;        /* discretised, backend memory owned here */
    bk_matrix out;          /* (2H, H) */
    float *out_b;           /* (2H) */
} s4_block;

typedef struct s4_model {
    mdl_lm lm;               /* first: the shared skeleton */
    /* scratch, backend memory, lm.max_rows rows */
    float *y;                /* (rows, H) SSM + skip + gelu */
    float *o2;               /* (rows, 2H) output linear */
} s4_model;

static size_t s4_layer_floats(const eng_model_config *c)
{
    return (size_t)s4_cfg(c)->d_state * (size_t)c->d_model; /* 2 planes x N2 x H */
}

/* ---- loading ---------------------------------------------------------- */

/* Solves in place: inv = M^-1 for a small real R x R matrix (Gauss-Jordan
 * with partial pivoting).  Returns 0, or -1 when M is singular. */
static int invert_small(double *M, double *inv, int R)
{
    for (int i = 0; i < R; i++)
        for (int j = 0; j < R; j++)
            inv[i * R + j] = i == j;
    for (int c = 0; c < R; c++) {
        int p = c;
        for (int i = c + 1; i < R; i++)
            if (fabs(M[i * R + c]) > fabs(M[p * R + c]))
                p = i;
        if (fabs(M[p * R + c]) < 1e-300)
            return -1;
        for (int j = 0; j < R; j++) {
            double t = M[c * R + j];
            M[c * R + j] = M[p * R + j];
            M[p * R + j] = t;
            t = inv[c * R + j];
            inv[c * R + j] = inv[p * R + j];
            inv[p * R + j] = t;
        }
        double d = M[c * R + c];
        for (int j = 0; j < R; j++) {
            M[c * R + j] /= d;
            inv[c * R + j] /= d;
        }
        for (int i = 0; i < R; i++)
            if (i != c) {
                double f = M[i * R + c];
                for (int j = 0; j < R; j++) {
                    M[i * R + j] -= f * M[c * R + j];
                    inv[i * R + j] -= f * inv[c * R + j];
                }
            }
    }
    return 0;
}

typedef struct ssm_host {
    float *log_dt, *A, *B, *C, *P, *D; /* as in the file, f32 */
    int dt_per_state;                  /* log_dt is (H, N2), not (H) */
    /* discretised planes, (2, N2, H) each; P and R (rank, 2, N2, H) */
    float *dA, *dB, *dC, *Dinv, *Pp, *Rp;
    double *M, *Minv;                  /* (rank, rank) Woodbury scratch */
} ssm_host;

static void ssm_host_free(ssm_host *s)
{
    float *all[] = {s->log_dt, s->A, s->B, s->C, s->P, s->D, s->dA, s->dB, s->dC, s->Dinv, s->Pp,
                    s->Rp};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    free(s->M);
    free(s->Minv);
}

static void put(float *plane, size_t pl, size_t o, double complex z)
{
    plane[o] = (float)creal(z);
    plane[pl + o] = (float)cimag(z);
}

static double complex cget(const float *t, size_t f) { return t[2 * f] + I * t[2 * f + 1]; }

/* Continuous (file) parameters -> the planes of bk_s4_layer.  File tensors
 * are (H, N2, 2) (P: (R, H, N2, 2)); planes are (2, N2, H). */
static int discretise(mdl_loader *ld, int layer, ssm_host *s)
{
    const eng_model_config *c = &ld->m->cfg;
    const s4_config *f4 = s4_cfg(c);
    const int H = c->d_model, N2 = f4->d_state / 2, R = f4->rank;
    const size_t pl = (size_t)N2 * H;
    for (int h = 0; h < H; h++) {
        for (int n = 0; n < N2; n++) {
            size_t f = (size_t)h * N2 + n, o = (size_t)n * H + h;
            double dt = exp(s->log_dt[s->dt_per_state ? f : (size_t)h]);
            double complex lam = cget(s->A, f), b = cget(s->B, f), z = dt * lam;
            put(s->dC, pl, o, 2.0 * cget(s->C, f));
            if (R > 0) {
                put(s->dA, pl, o, 2.0 / dt + lam);
                put(s->dB, pl, o, 2.0 * b);
                put(s->Dinv, pl, o, 1.0 / (2.0 / dt - lam));
            } else if (f4->bilinear) {
                put(s->dA, pl, o, (1.0 + z / 2) / (1.0 - z / 2));
                put(s->dB, pl, o, b * dt / (1.0 - z / 2));
            } else {
                /* (exp(z) - 1) / lam = dt (exp(z) - 1) / z, by series near 0 */
                double complex g = cabs(z) < 1e-5 ? dt * (1.0 + z / 2 + z * z / 6)
                                                  : (cexp(z) - 1.0) / lam;
                put(s->dA, pl, o, cexp(z));
                put(s->dB, pl, o, b * g);
            }
        }
        if (R == 0)
            continue;
        /* Woodbury: M = I + P^* Dinv P (real: conjugate pairs summed),
         * R = M^-1 P^* Dinv, with Dinv = (2/dt - Lambda)^-1. */
        double *M = s->M, *Minv = s->Minv;
        const double dt = exp(s->log_dt[h]);
        const size_t rs = (size_t)H * N2; /* stride of P's rank index */
        for (int r = 0; r < R; r++)
            for (int q = 0; q < R; q++) {
                double sum = 0.0;
                for (int n = 0; n < N2; n++) {
                    size_t f = (size_t)h * N2 + n;
                    double complex d = 1.0 / (2.0 / dt - cget(s->A, f));
                    sum += 2.0 * creal(conj(cget(s->P, r * rs + f)) * d * cget(s->P, q * rs + f));
                }
                M[r * R + q] = (r == q) + sum;
            }
        if (invert_small(M, Minv, R))
            return ssmd_err_set(ld->err, SSMD_EFORMAT,
                                "layer %d channel %d: I + P^* (2/dt - Lambda)^-1 P is singular",
                                layer, h);
        for (int n = 0; n < N2; n++) {
            size_t f = (size_t)h * N2 + n, o = (size_t)n * H + h;
            double complex d = 1.0 / (2.0 / dt - cget(s->A, f));
            for (int r = 0; r < R; r++) {
                double complex acc = 0.0;
                for (int q = 0; q < R; q++)
                    acc += Minv[r * R + q] * conj(cget(s->P, q * rs + f)) * d;
                put(s->Pp + (size_t)r * 2 * pl, pl, o, cget(s->P, r * rs + f));
                put(s->Rp + (size_t)r * 2 * pl, pl, o, acc);
            }
        }
    }
    return SSMD_OK;
}

/* One layer's SSM tensors "layers.<i>.ssm.*" (file layouts in
 * proto/s4-format.md), discretised and uploaded into l. */
static int load_ssm(mdl_loader *ld, int i, bk_s4_layer *l)
{
    const eng_model_config *c = &ld->m->cfg;
    const int H = c->d_model, N2 = s4_cfg(c)->d_state / 2, R = s4_cfg(c)->rank;
    const size_t pl = (size_t)N2 * H;
    char n[256];
    const size_t nn = sizeof n;
    ssm_host s = {0};
    int rc = SSMD_OK;
    const eng_tensor *t = eng_weights_find(ld->w, mdl_layer_name(n, nn, "", i, "ssm.log_dt"));
    s.dt_per_state = t && t->ndim == 2 && R == 0;
    int64_t cplx_shape[] = {H, N2, 2}, p_shape[] = {R, H, N2, 2};
    if (!(s.log_dt = mdl_host_f32(ld, n, s.dt_per_state ? 2 : 1, (int64_t[]){H, N2})) ||
        !(s.A = mdl_host_f32(ld, mdl_layer_name(n, nn, "", i, "ssm.A"), 3, cplx_shape)) ||
        !(s.B = mdl_host_f32(ld, mdl_layer_name(n, nn, "", i, "ssm.B"), 3, cplx_shape)) ||
        !(s.C = mdl_host_f32(ld, mdl_layer_name(n, nn, "", i, "ssm.C"), 3, cplx_shape)) ||
        (R > 0 && !(s.P = mdl_host_f32(ld, mdl_layer_name(n, nn, "", i, "ssm.P"), 4, p_shape))) ||
        !(s.D = mdl_host_f32(ld, mdl_layer_name(n, nn, "", i, "ssm.D"), 1, (int64_t[]){H})))
        goto fail;
    size_t cplx = 2 * pl, rk = R > 0 ? (size_t)R : 1;
    s.dA = calloc(cplx, sizeof(float));
    s.dB = calloc(cplx, sizeof(float));
    s.dC = calloc(cplx, sizeof(float));
    s.Dinv = calloc(cplx, sizeof(float));
    s.Pp = calloc(rk * cplx, sizeof(float));
    s.Rp = calloc(rk * cplx, sizeof(float));
    s.M = calloc(rk * rk, sizeof(double));
    s.Minv = calloc(rk * rk, sizeof(double));
    if (!s.dA || !s.dB || !s.dC || !s.Dinv || !s.Pp || !s.Rp || !s.M || !s.Minv) {
        rc = ssmd_err_set(ld->err, SSMD_ENOMEM, "s4: out of memory discretising layer %d", i);
        goto out;
    }
    if ((rc = discretise(ld, i, &s)))
        goto out;
    *l = (bk_s4_layer){.H = H, .N2 = N2, .rank = R};
    mdl_layer_name(n, nn, "", i, "ssm (discretised)");
    if (!(l->dA = mdl_upload(ld, s.dA, cplx, n)) || !(l->dB = mdl_upload(ld, s.dB, cplx, n)) ||
        !(l->dC = mdl_upload(ld, s.dC, cplx, n)) || !(l->D = mdl_upload(ld, s.D, (size_t)H, n)))
        goto fail;
    if (R > 0 && (!(l->Dinv = mdl_upload(ld, s.Dinv, cplx, n)) ||
                  !(l->P = mdl_upload(ld, s.Pp, R * cplx, n)) ||
                  !(l->R = mdl_upload(ld, s.Rp, R * cplx, n))))
        goto fail;
    goto out;
fail:
    rc = ld->err->code;
out:
    ssm_host_free(&s);
    return rc;
}

static int s4_load_layer(mdl_loader *ld, int i, void *layer)
{
    s4_block *b = layer;
    const int H = ld->m->cfg.d_model;
    char n[256];
    const size_t nn = sizeof n;
    int rc;
    if ((rc = mdl_vector(ld, &b->norm_w, mdl_layer_name(n, nn, "", i, "norm.weight"), H)) ||
        (rc = mdl_vector(ld, &b->norm_b, mdl_layer_name(n, nn, "", i, "norm.bias"), H)) ||
        (rc = load_ssm(ld, i, &b->ssm)) ||
        (rc = mdl_matrix(ld, &b->out, mdl_layer_name(n, nn, "", i, "out.weight"), 2L * H, H)))
        return rc;
    return mdl_vector(ld, &b->out_b, mdl_layer_name(n, nn, "", i, "out.bias"), 2L * H);
}

static void s4_free_layer(mdl_lm *m, void *layer)
{
    s4_block *b = layer;
    void *smalls[] = {b->norm_w, b->norm_b, b->out_b, (void *)b->ssm.dA, (void *)b->ssm.dB,
                      (void *)b->ssm.dC, (void *)b->ssm.D, (void *)b->ssm.Dinv, (void *)b->ssm.P,
                      (void *)b->ssm.R};
    mdl_release_all(m->bk, smalls, sizeof smalls / sizeof smalls[0]);
    bk_matrix *mats[] = {&b->out};
    mdl_release_matrices(m->bk, mats, 1);
}

static void s4_end_names(const eng_model_config *c, mdl_end_names *out)
{
    *out = (mdl_end_names){.embed = "embedding.weight", .lm_head = "lm_head.weight",
                           .lm_head_bias = "lm_head.bias", .norm_w = "norm_f.weight",
                           .norm_b = "norm_f.bias"};
}

static int s4_check(const eng_model_config *c, const bk_backend *bk, ssmd_err *err)
{
    int rc = mdl_require(bk->s4 && bk->add_layernorm && bk->glu, bk, c, "S4 ops", err);
    if (!rc && s4_cfg(c)->rank > bk->s4->max_rank)
        rc = ssmd_err_set(err, SSMD_EUNSUPPORTED, "s4: rank %d is above the %d supported",
                          s4_cfg(c)->rank, bk->s4->max_rank);
    return rc;
}

static int s4_alloc_scratch(mdl_lm *lm, ssmd_err *err)
{
    s4_model *m = (s4_model *)lm;
    const size_t rows = (size_t)lm->max_rows, H = (size_t)lm->cfg.d_model;
    return mdl_alloc_all(lm, (float **const[]){&m->y, &m->o2}, (size_t[]){rows * H, rows * 2 * H},
                         2, err);
}

static void s4_free_scratch(mdl_lm *lm)
{
    s4_model *m = (s4_model *)lm;
    void *bufs[] = {m->y, m->o2};
    mdl_release_all(lm->bk, bufs, 2);
}

/* ---- forward ---------------------------------------------------------- */

/* After the sequence op: output linear + GLU into the block output. */
static void block_out(s4_model *m, const s4_block *b, int rows)
{
    bk_backend *bk = m->lm.bk;
    const int H = m->lm.cfg.d_model;
    bk->matmul(bk, &b->out, m->y, H, rows, m->o2, 2 * H, b->out_b, BK_PRECISION_DEFAULT);
    bk->glu(bk, m->o2, rows, H, m->lm.out);
}

static void s4_prefill_layer(mdl_lm *lm, int i, const void *layer, float *state, int rows)
{
    s4_model *m = (s4_model *)lm;
    const s4_block *b = layer;
    mdl_prenorm(lm, i, b->norm_w, b->norm_b, rows);
    lm->bk->s4->prefill(lm->bk, &b->ssm, state, lm->xn, rows, m->y);
    block_out(m, b, rows);
}

static void s4_decode_layer(mdl_lm *lm, int i, const void *layer, const bk_state_ref *st)
{
    s4_model *m = (s4_model *)lm;
    const s4_block *b = layer;
    mdl_prenorm(lm, i, b->norm_w, b->norm_b, st->batch);
    lm->bk->s4->step(lm->bk, &b->ssm, st, lm->xn, m->y);
    block_out(m, b, st->batch);
}

static const mdl_family s4_family = {
    .model_bytes = sizeof(s4_model),
    .layer_bytes = sizeof(s4_block),
    .layer_norm = 1,
    .check = s4_check,
    .layer_floats = s4_layer_floats,
    .end_names = s4_end_names,
    .load_layer = s4_load_layer,
    .free_layer = s4_free_layer,
    .alloc_scratch = s4_alloc_scratch,
    .free_scratch = s4_free_scratch,
    .prefill_layer = s4_prefill_layer,
    .decode_layer = s4_decode_layer,
};

/* What the tensors must agree with in the config: a head given twice, a
 * bias on a tied head, a low-rank term in a diagonal model. */
static int s4_check_tensors(const eng_model_config *c, const eng_weights *w, ssmd_err *err)
{
    const s4_config *f = s4_cfg(c);
    int rc = mdl_check_head(c, f->tie_given, w, err);
    if (rc)
        return rc;
    for (int i = 0; f->rank == 0 && i < c->n_layer; i++) {
        char name[64];
        const eng_tensor *p = eng_weights_find(w, mdl_layer_name(name, sizeof name, "", i, "ssm.P"));
        if (p)
            return ssmd_err_set(err, SSMD_EFORMAT, "%s: tensor '%s' in an s4d model (a diagonal A "
                                "has no low-rank term; model_type \"s4\" has)", p->file, name);
    }
    return SSMD_OK;
}

static int s4_load(const eng_model_config *cfg, const eng_weights *w, bk_backend *bk, int max_batch,
                   void **out, ssmd_err *err)
{
    int rc = s4_check_tensors(cfg, w, err);
    if (rc)
        return rc;
    return mdl_lm_load(&s4_family, cfg, w, bk, max_batch, out, err);
}

static const char *const s4_types[] = {"s4d", "s4", NULL};

const eng_arch s4_arch = {
    .name = "s4",
    .model_types = s4_types,
    .parse_config = s4_parse_config,
    .fingerprint_fields = s4_fingerprint_fields,
    .load = s4_load,
    MDL_LM_ARCH_OPS,
};
