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

#include "kernels/cpu/cpu_s4.h"
#include "models/common.h"

enum { PREFILL_CHUNK = 512, LOGITS_ROWS = 16 };

typedef struct s4_block {
    float *norm_w, *norm_b; /* (H) */
    bk_s4_layer ssm;        /* discretised, backend memory owned here */
    bk_matrix out;          /* (2H, H) */
    float *out_b;           /* (2H) */
} s4_block;

typedef struct s4_model {
    eng_model_config cfg;
    bk_backend *bk;          /* borrowed */
    bk_matrix embed;         /* (embedding rows, H) */
    bk_matrix lm_head;       /* (vocab_size, H): own tensor or embed's rows */
    float *lm_head_b;        /* (vocab_size) or NULL */
    float *norm_f_w, *norm_f_b; /* (H) */
    s4_block *blocks;        /* (n_layer) */
    int max_rows, logits_rows;
    /* scratch, backend memory */
    float *resid;            /* (rows, H) residual stream */
    float *xn;               /* (rows, H) normed */
    float *y;                /* (rows, H) SSM + skip + gelu */
    float *o2;               /* (rows, 2H) output linear */
    float *out;              /* (rows, H) block output (GLU) */
    float *logits;           /* (logits_rows, vocab) */
    int64_t n_params;
    size_t weight_bytes;
} s4_model;

static size_t layer_floats(const eng_model_config *c)
{
    return (size_t)c->d_state * (size_t)c->d_model; /* 2 planes x N2 x H */
}

static size_t s4_state_floats(const void *arch)
{
    const s4_model *m = arch;
    return layer_floats(&m->cfg) * (size_t)m->cfg.n_layer;
}

static int64_t s4_n_params(const void *arch) { return ((const s4_model *)arch)->n_params; }
static size_t s4_weight_bytes(const void *arch) { return ((const s4_model *)arch)->weight_bytes; }
static eng_dtype s4_weight_dtype(const void *arch) { return ((const s4_model *)arch)->embed.dtype; }

/* ---- loading ---------------------------------------------------------- */

typedef struct loader {
    s4_model *m;
    const eng_weights *w;
    ssmd_err *err;
    char name[256];
} loader;

static const eng_tensor *get(loader *ld, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t shape[4] = {d0, d1, d2, d3};
    const eng_tensor *t = NULL;
    if (eng_weights_get(ld->w, ld->name, ndim, shape, &t, ld->err) != SSMD_OK)
        return NULL;
    ld->m->n_params += t->numel;
    ld->m->weight_bytes += t->nbytes;
    return t;
}

/* The tensor as f32 host memory (malloc'd), or NULL with err set. */
static float *host_f32(loader *ld, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    const eng_tensor *t = get(ld, ndim, d0, d1, d2, d3);
    if (!t)
        return NULL;
    float *h = malloc((size_t)t->numel * sizeof(float));
    if (!h) {
        ssmd_err_set(ld->err, SSMD_ENOMEM, "%s: out of memory converting '%s'", t->file, t->name);
        return NULL;
    }
    eng_tensor_to_f32(t, h);
    return h;
}

static float *upload(loader *ld, const float *host, size_t n)
{
    bk_backend *bk = ld->m->bk;
    float *dev = bk->alloc(bk, n * sizeof(float));
    if (!dev) {
        ssmd_err_set(ld->err, SSMD_ENOMEM, "s4: out of backend memory for '%s'", ld->name);
        return NULL;
    }
    bk->write(bk, dev, host, n * sizeof(float));
    return dev;
}

static int small(loader *ld, float **dst, int64_t n)
{
    float *h = host_f32(ld, 1, n, 0, 0, 0);
    if (!h)
        return ld->err->code;
    *dst = upload(ld, h, (size_t)n);
    free(h);
    return *dst ? SSMD_OK : ld->err->code;
}

static int matrix(loader *ld, bk_matrix *dst, int64_t rows, int64_t cols)
{
    const eng_tensor *t = get(ld, 2, rows, cols, 0, 0);
    if (!t)
        return ld->err->code;
    return ld->m->bk->matrix_load(ld->m->bk, t, (int)rows, (int)cols, dst, ld->err);
}

#define NAME(...) snprintf(ld->name, sizeof ld->name, __VA_ARGS__)

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
} ssm_host;

static void ssm_host_free(ssm_host *s)
{
    float *all[] = {s->log_dt, s->A, s->B, s->C, s->P, s->D, s->dA, s->dB, s->dC, s->Dinv, s->Pp,
                    s->Rp};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

static void put(float *plane, size_t pl, size_t o, double complex z)
{
    plane[o] = (float)creal(z);
    plane[pl + o] = (float)cimag(z);
}

static double complex cget(const float *t, size_t f) { return t[2 * f] + I * t[2 * f + 1]; }

/* Continuous (file) parameters -> the planes of bk_s4_layer.  File tensors
 * are (H, N2, 2) (P: (R, H, N2, 2)); planes are (2, N2, H). */
static int discretise(loader *ld, int layer, ssm_host *s)
{
    const eng_model_config *c = &ld->m->cfg;
    const int H = c->d_model, N2 = c->d_state / 2, R = c->s4_rank;
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
            } else if (c->s4_bilinear) {
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
        double M[CPU_S4_MAX_RANK * CPU_S4_MAX_RANK], Minv[CPU_S4_MAX_RANK * CPU_S4_MAX_RANK];
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

static int load_ssm(loader *ld, int i, bk_s4_layer *l)
{
    const eng_model_config *c = &ld->m->cfg;
    const int H = c->d_model, N2 = c->d_state / 2, R = c->s4_rank;
    const size_t pl = (size_t)N2 * H;
    ssm_host s = {0};
    int rc = SSMD_OK;
    NAME("layers.%d.ssm.log_dt", i);
    const eng_tensor *t = eng_weights_find(ld->w, ld->name);
    s.dt_per_state = t && t->ndim == 2 && R == 0;
    if (!(s.log_dt = host_f32(ld, s.dt_per_state ? 2 : 1, H, N2, 0, 0)))
        goto fail;
    NAME("layers.%d.ssm.A", i);
    if (!(s.A = host_f32(ld, 3, H, N2, 2, 0)))
        goto fail;
    NAME("layers.%d.ssm.B", i);
    if (!(s.B = host_f32(ld, 3, H, N2, 2, 0)))
        goto fail;
    NAME("layers.%d.ssm.C", i);
    if (!(s.C = host_f32(ld, 3, H, N2, 2, 0)))
        goto fail;
    if (R > 0) {
        NAME("layers.%d.ssm.P", i);
        if (!(s.P = host_f32(ld, 4, R, H, N2, 2)))
            goto fail;
    }
    NAME("layers.%d.ssm.D", i);
    if (!(s.D = host_f32(ld, 1, H, 0, 0, 0)))
        goto fail;
    size_t cplx = 2 * pl, rk = R > 0 ? (size_t)R : 1;
    s.dA = calloc(cplx, sizeof(float));
    s.dB = calloc(cplx, sizeof(float));
    s.dC = calloc(cplx, sizeof(float));
    s.Dinv = calloc(cplx, sizeof(float));
    s.Pp = calloc(rk * cplx, sizeof(float));
    s.Rp = calloc(rk * cplx, sizeof(float));
    if (!s.dA || !s.dB || !s.dC || !s.Dinv || !s.Pp || !s.Rp) {
        rc = ssmd_err_set(ld->err, SSMD_ENOMEM, "s4: out of memory discretising layer %d", i);
        goto out;
    }
    if ((rc = discretise(ld, i, &s)))
        goto out;
    *l = (bk_s4_layer){.H = H, .N2 = N2, .rank = R};
    NAME("layers.%d.ssm (discretised)", i);
    if (!(l->dA = upload(ld, s.dA, cplx)) || !(l->dB = upload(ld, s.dB, cplx)) ||
        !(l->dC = upload(ld, s.dC, cplx)) || !(l->D = upload(ld, s.D, (size_t)H)))
        goto fail;
    if (R > 0 && (!(l->Dinv = upload(ld, s.Dinv, cplx)) || !(l->P = upload(ld, s.Pp, R * cplx)) ||
                  !(l->R = upload(ld, s.Rp, R * cplx))))
        goto fail;
    goto out;
fail:
    rc = ld->err->code;
out:
    ssm_host_free(&s);
    return rc;
}

static int load_block(loader *ld, int i, s4_block *b)
{
    const int H = ld->m->cfg.d_model;
    int rc;
    NAME("layers.%d.norm.weight", i);
    if ((rc = small(ld, &b->norm_w, H)))
        return rc;
    NAME("layers.%d.norm.bias", i);
    if ((rc = small(ld, &b->norm_b, H)))
        return rc;
    if ((rc = load_ssm(ld, i, &b->ssm)))
        return rc;
    NAME("layers.%d.out.weight", i);
    if ((rc = matrix(ld, &b->out, 2L * H, H)))
        return rc;
    NAME("layers.%d.out.bias", i);
    return small(ld, &b->out_b, 2L * H);
}

/* Embedding rows >= vocab_size are accepted (padded vocabularies). */
static int load_ends(loader *ld)
{
    s4_model *m = ld->m;
    const eng_model_config *c = &m->cfg;
    const int H = c->d_model;
    int rc;
    const eng_tensor *e = eng_weights_find(ld->w, "embedding.weight");
    int64_t rows = e && e->ndim == 2 && e->shape[0] >= c->vocab_size ? e->shape[0] : c->vocab_size;
    NAME("embedding.weight");
    if ((rc = matrix(ld, &m->embed, rows, H)))
        return rc;
    const eng_tensor *h = eng_weights_find(ld->w, "lm_head.weight");
    if (h && !c->tie_embeddings) {
        int64_t hrows = h->ndim == 2 && h->shape[0] >= c->vocab_size ? h->shape[0] : c->vocab_size;
        NAME("lm_head.weight");
        if ((rc = matrix(ld, &m->lm_head, hrows, H)))
            return rc;
        if (eng_weights_find(ld->w, "lm_head.bias")) {
            NAME("lm_head.bias");
            if ((rc = small(ld, &m->lm_head_b, c->vocab_size)))
                return rc;
        }
    } else {
        m->lm_head = m->embed;
        m->lm_head.owned = 0;
    }
    m->lm_head.rows = c->vocab_size;
    NAME("norm_f.weight");
    if ((rc = small(ld, &m->norm_f_w, H)))
        return rc;
    NAME("norm_f.bias");
    return small(ld, &m->norm_f_b, H);
}

#undef NAME

static void s4_free(void *arch);

static int alloc_scratch(s4_model *m, ssmd_err *err)
{
    bk_backend *bk = m->bk;
    size_t rows = (size_t)m->max_rows, H = (size_t)m->cfg.d_model;
    struct { float **p; size_t floats; } bufs[] = {
        {&m->resid, rows * H}, {&m->xn, rows * H}, {&m->y, rows * H},
        {&m->o2, rows * 2 * H}, {&m->out, rows * H},
        {&m->logits, (size_t)m->logits_rows * m->cfg.vocab_size},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (!(*bufs[i].p = bk->alloc(bk, bufs[i].floats * sizeof(float))))
            return ssmd_err_set(err, SSMD_ENOMEM, "s4: out of memory for %zu scratch bytes",
                                bufs[i].floats * sizeof(float));
    return SSMD_OK;
}

static int s4_load(const eng_model_config *cfg, const eng_weights *w, bk_backend *bk, int max_batch,
                   void **out, ssmd_err *err)
{
    if (!bk->add_layernorm || !bk->glu || !bk->s4_prefill || !bk->s4_step)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                            "%s backend has no S4 ops (model_type '%s'); use --backend cpu",
                            bk->name, cfg->model_type);
    if (cfg->s4_rank > CPU_S4_MAX_RANK)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED, "s4: rank %d is above the %d supported",
                            cfg->s4_rank, CPU_S4_MAX_RANK);
    s4_model *m = calloc(1, sizeof *m);
    if (!m)
        return ssmd_err_set(err, SSMD_ENOMEM, "s4: out of memory");
    m->cfg = *cfg;
    m->bk = bk;
    m->max_rows = max_batch > PREFILL_CHUNK ? max_batch : PREFILL_CHUNK;
    m->logits_rows = max_batch > LOGITS_ROWS ? max_batch : LOGITS_ROWS;
    m->blocks = calloc((size_t)cfg->n_layer, sizeof *m->blocks);
    loader ld = {.m = m, .w = w, .err = err};
    int rc = m->blocks ? SSMD_OK : ssmd_err_set(err, SSMD_ENOMEM, "s4: out of memory");
    if (!rc)
        rc = load_ends(&ld);
    for (int i = 0; !rc && i < cfg->n_layer; i++)
        rc = load_block(&ld, i, &m->blocks[i]);
    if (!rc)
        rc = alloc_scratch(m, err);
    if (rc) {
        s4_free(m);
        return rc;
    }
    *out = m;
    return SSMD_OK;
}

static void s4_free(void *arch)
{
    s4_model *m = arch;
    if (!m)
        return;
    bk_backend *bk = m->bk;
    if (m->blocks) {
        for (int i = 0; i < m->cfg.n_layer; i++) {
            s4_block *b = &m->blocks[i];
            void *smalls[] = {b->norm_w, b->norm_b, b->out_b, (void *)b->ssm.dA,
                              (void *)b->ssm.dB, (void *)b->ssm.dC, (void *)b->ssm.D,
                              (void *)b->ssm.Dinv, (void *)b->ssm.P, (void *)b->ssm.R};
            mdl_release_all(bk, smalls, sizeof smalls / sizeof smalls[0]);
            if (b->out.data)
                bk->matrix_release(bk, &b->out);
        }
        free(m->blocks);
    }
    mdl_release_embed_head(bk, &m->embed, &m->lm_head);
    void *bufs[] = {m->lm_head_b, m->norm_f_w, m->norm_f_b, m->resid, m->xn,
                    m->y,         m->o2,       m->out,      m->logits};
    mdl_release_all(bk, bufs, sizeof bufs / sizeof bufs[0]);
    free(m);
}

/* ---- forward ---------------------------------------------------------- */

/* After the sequence op: output linear + GLU into m->out. */
static void block_out(s4_model *m, const s4_block *b, int rows)
{
    bk_backend *bk = m->bk;
    const int H = m->cfg.d_model;
    bk->matmul(bk, &b->out, m->y, H, rows, m->o2, 2 * H, b->out_b);
    bk->glu(bk, m->o2, rows, H, m->out);
}

/* Final norm of `rows` rows (adding the last block's output) and logits of
 * rows [first, rows) into host dst. */
static void head(s4_model *m, int rows, int first, float *dst)
{
    bk_backend *bk = m->bk;
    const int H = m->cfg.d_model;
    bk->add_layernorm(bk, m->resid, m->out, m->norm_f_w, m->norm_f_b, m->cfg.norm_eps, rows, H,
                      m->xn);
    if (dst)
        mdl_logits(bk, &m->lm_head, m->lm_head_b, m->xn, H, rows, first, m->logits,
                   m->logits_rows, dst);
}

static void s4_prefill(void *arch, float *state, const int32_t *ids, int n, float *logits,
                       int all_logits)
{
    s4_model *m = arch;
    bk_backend *bk = m->bk;
    const eng_model_config *c = &m->cfg;
    const size_t per_layer = layer_floats(c);
    for (int pos = 0; pos < n; pos += m->max_rows) {
        int T = n - pos < m->max_rows ? n - pos : m->max_rows;
        bk->embed(bk, &m->embed, ids + pos, T, m->resid);
        for (int i = 0; i < c->n_layer; i++) {
            const s4_block *b = &m->blocks[i];
            bk->add_layernorm(bk, m->resid, i ? m->out : NULL, b->norm_w, b->norm_b, c->norm_eps, T,
                              c->d_model, m->xn);
            bk->s4_prefill(bk, &b->ssm, state + i * per_layer, m->xn, T, m->y);
            block_out(m, b, T);
        }
        if (all_logits && logits)
            head(m, T, 0, logits + (size_t)pos * c->vocab_size);
        else if (pos + T == n && logits)
            head(m, T, T - 1, logits);
    }
}

static void s4_decode(void *arch, float *pool, const int32_t *slots, const int32_t *ids, int batch,
                      float *logits)
{
    s4_model *m = arch;
    bk_backend *bk = m->bk;
    const eng_model_config *c = &m->cfg;
    const size_t per_layer = layer_floats(c);
    bk_state_ref st = {.pool = pool, .slot_stride = per_layer * c->n_layer, .slots = slots,
                       .batch = batch};
    bk->embed(bk, &m->embed, ids, batch, m->resid);
    for (int i = 0; i < c->n_layer; i++) {
        const s4_block *b = &m->blocks[i];
        st.ssm_offset = i * per_layer;
        bk->add_layernorm(bk, m->resid, i ? m->out : NULL, b->norm_w, b->norm_b, c->norm_eps, batch,
                          c->d_model, m->xn);
        bk->s4_step(bk, &b->ssm, &st, m->xn, m->y);
        block_out(m, b, batch);
    }
    head(m, batch, 0, logits);
}

const eng_arch s4d_arch = {
    .model_type = "s4d",
    .load = s4_load,
    .free = s4_free,
    .state_floats = s4_state_floats,
    .n_params = s4_n_params,
    .weight_bytes = s4_weight_bytes,
    .weight_dtype = s4_weight_dtype,
    .prefill = s4_prefill,
    .decode = s4_decode,
};

const eng_arch s4_arch = {
    .model_type = "s4",
    .load = s4_load,
    .free = s4_free,
    .state_floats = s4_state_floats,
    .n_params = s4_n_params,
    .weight_bytes = s4_weight_bytes,
    .weight_dtype = s4_weight_dtype,
    .prefill = s4_prefill,
    .decode = s4_decode,
};
