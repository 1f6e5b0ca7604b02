/* common.c - the language-model skeleton shared by every family (see
 * common.h): loading the ends and the layers, scratch, and the forward
 * loops around the family's layer functions. */
#include "models/common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prefill runs prompts in chunks of this many tokens (bounds the scratch);
 * logits are computed this many rows at a time. */
enum { PREFILL_CHUNK = 512, LOGITS_ROWS = 16 };

static void *layer_at(const mdl_lm *m, int i)
{
    return (char *)m->layers + (size_t)i * m->fam->layer_bytes;
}

/* ---- loader helpers ----------------------------------------------------------- */

int mdl_require(int have, const bk_backend *bk, const eng_model_config *cfg, const char *what,
                ssmd_err *err)
{
    if (have)
        return SSMD_OK;
    return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                        "%s backend has no %s (model_type '%s'); use --backend cpu", bk->name, what,
                        cfg->model_type);
}

const eng_tensor *mdl_get(mdl_loader *ld, const char *name, int ndim, const int64_t *shape)
{
    const eng_tensor *t = NULL;
    if (eng_weights_get(ld->w, name, ndim, shape, &t, ld->err) != SSMD_OK)
        return NULL;
    ld->m->n_params += t->numel;
    ld->m->weight_bytes += t->nbytes;
    return t;
}

float *mdl_host_f32(mdl_loader *ld, const char *name, int ndim, const int64_t *shape)
{
    const eng_tensor *t = mdl_get(ld, name, ndim, shape);
    if (!t)
        return NULL;
    float *h = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
    if (!h) {
        ssmd_err_set(ld->err, SSMD_ENOMEM, "%s: out of memory converting '%s'", t->file, t->name);
        return NULL;
    }
    eng_tensor_to_f32(t, h);
    return h;
}

float *mdl_upload(mdl_loader *ld, const float *host, size_t n, const char *what)
{
    bk_backend *bk = ld->m->bk;
    float *dev = bk->alloc(bk, n * sizeof(float));
    if (!dev) {
        ssmd_err_set(ld->err, SSMD_ENOMEM, "%s: out of backend memory for '%s'",
                     ld->m->cfg.arch->name, what);
        return NULL;
    }
    bk->write(bk, dev, host, n * sizeof(float));
    return dev;
}

int mdl_transposed(mdl_loader *ld, float **dst, const char *name, int ndim, const int64_t *shape,
                   int rows, int cols, int neg_exp)
{
    float *host = mdl_host_f32(ld, name, ndim, shape);
    float *t = host ? malloc((size_t)rows * cols * sizeof(float)) : NULL;
    if (host && !t)
        ssmd_err_set(ld->err, SSMD_ENOMEM, "%s: out of memory converting '%s'",
                     ld->m->cfg.arch->name, name);
    for (int r = 0; t && r < rows; r++)
        for (int c = 0; c < cols; c++) {
            float v = host[(size_t)r * cols + c];
            t[(size_t)c * rows + r] = neg_exp ? -expf(v) : v;
        }
    *dst = t ? mdl_upload(ld, t, (size_t)rows * cols, name) : NULL;
    free(host);
    free(t);
    return *dst ? SSMD_OK : ld->err->code;
}

int mdl_vector(mdl_loader *ld, float **dst, const char *name, int64_t n)
{
    float *h = mdl_host_f32(ld, name, 1, &n);
    if (!h)
        return ld->err->code;
    *dst = mdl_upload(ld, h, (size_t)n, name);
    free(h);
    return *dst ? SSMD_OK : ld->err->code;
}

int mdl_matrix(mdl_loader *ld, bk_matrix *dst, const char *name, int64_t rows, int64_t cols)
{
    const eng_tensor *t = mdl_get(ld, name, 2, (int64_t[]){rows, cols});
    if (!t)
        return ld->err->code;
    return ld->m->bk->matrix_load(ld->m->bk, t, (int)rows, (int)cols, dst, ld->err);
}

const char *mdl_layer_name(char *buf, size_t size, const char *prefix, int i, const char *suffix)
{
    snprintf(buf, size, "%slayers.%d.%s", prefix, i, suffix);
    return buf;
}

int mdl_alloc_all(mdl_lm *m, float **const *ptrs, const size_t *floats, size_t n, ssmd_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (!(*ptrs[i] = m->bk->alloc(m->bk, floats[i] * sizeof(float))))
            return ssmd_err_set(err, SSMD_ENOMEM, "%s: out of memory for %zu scratch bytes",
                                m->cfg.arch->name, floats[i] * sizeof(float));
    return SSMD_OK;
}

void mdl_release_all(bk_backend *bk, void *const *ptrs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ptrs[i])
            bk->release(bk, ptrs[i]);
}

void mdl_release_matrices(bk_backend *bk, bk_matrix *const *mats, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (mats[i]->data)
            bk->matrix_release(bk, mats[i]);
}

/* ---- config ------------------------------------------------------------------- */

int mdl_cfg_original(const eng_cfg_reader *r, const json_t *root, eng_model_config *c,
                     eng_cfg_reader *sub, json_t **ssm)
{
    int rc, rms = 1, fp32 = 1, pad = 8, d_inter = 0;
    *ssm = NULL;
    if ((rc = eng_cfg_int(r, root, "d_model", 2560, 1, ENG_CFG_DIM_MAX, &c->d_model)) ||
        (rc = eng_cfg_int(r, root, "n_layer", 64, 1, ENG_CFG_DIM_MAX, &c->n_layer)) ||
        (rc = eng_cfg_int(r, root, "vocab_size", 50277, 1, ENG_CFG_DIM_MAX, &c->vocab_size)) ||
        (rc = eng_cfg_int(r, root, "pad_vocab_size_multiple", 8, 1, ENG_CFG_DIM_MAX, &pad)) ||
        (rc = eng_cfg_int(r, root, "d_intermediate", 0, 0, ENG_CFG_DIM_MAX, &d_inter)) ||
        (rc = eng_cfg_bool(r, root, "rms_norm", 1, &rms)) ||
        (rc = eng_cfg_bool(r, root, "residual_in_fp32", 1, &fp32)) ||
        (rc = eng_cfg_bool(r, root, "tie_embeddings", 1, &c->tie_embeddings)) ||
        (rc = eng_cfg_token(r, root, "bos_token_id", -1, &c->bos_token_id)) ||
        (rc = eng_cfg_token(r, root, "eos_token_id", -1, &c->eos_token_id)))
        return rc;
    if (d_inter != 0)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'd_intermediate' %d (MLP blocks between mixers) is not supported",
                            r->path, d_inter);
    if (!rms)
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'rms_norm' false (LayerNorm) is not supported", r->path);
    const json_t *attn = json_object_get(root, "attn_layer_idx");
    if (attn && !(json_is_array(attn) && json_array_size(attn) == 0))
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: 'attn_layer_idx' (hybrid attention layers) is not supported",
                            r->path);
    json_t *s = json_object_get(root, "ssm_cfg");
    if (s && !json_is_null(s) && !json_is_object(s))
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: 'ssm_cfg' must be an object", r->path);
    *ssm = json_is_object(s) ? json_incref(s) : json_object();
    *sub = *r;
    sub->prefix = "ssm_cfg.";
    c->norm_eps = 1e-5f; /* mamba_ssm's MixerModel default; not in the config */
    return SSMD_OK;
}

int mdl_cfg_known_keys(const eng_cfg_reader *r, const json_t *root, const char *const *known,
                       size_t n, const char *format)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)root, key, v) {
        size_t k = 0;
        while (k < n && strcmp(known[k], key))
            k++;
        if (k == n)
            return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                                "%s: '%.64s' is not a key of the %s and may change the math",
                                r->path, key, format);
    }
    return SSMD_OK;
}

int mdl_check_head(const eng_model_config *c, int tie_given, const eng_weights *w, ssmd_err *err)
{
    const eng_tensor *head = eng_weights_find(w, "lm_head.weight");
    const eng_tensor *bias = eng_weights_find(w, "lm_head.bias");
    if (head && tie_given && c->tie_embeddings)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: 'tie_embeddings' is true but the file has its "
                            "own 'lm_head.weight'", head->file);
    if (bias && (!head || c->tie_embeddings))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: 'lm_head.bias' with a head tied to the "
                            "embedding", bias->file);
    return SSMD_OK;
}

int mdl_cfg_original_is(const json_t *root, const char *layer)
{
    const json_t *ssm = json_object_get(root, "ssm_cfg");
    const json_t *l = json_is_object(ssm) ? json_object_get(ssm, "layer") : NULL;
    return json_is_string(l) && !strcmp(json_string_value(l), layer);
}

/* ---- the ends: embedding, LM head, final norm ---------------------------------- */

/* Rows of a table that may be padded past vocab_size (any count >= it is
 * accepted, the extra rows are never used). */
static int64_t padded_rows(const eng_tensor *t, int vocab)
{
    return t && t->ndim == 2 && t->shape[0] >= vocab ? t->shape[0] : vocab;
}

static int load_ends(mdl_loader *ld)
{
    mdl_lm *m = ld->m;
    const eng_model_config *c = &m->cfg;
    mdl_end_names nm;
    m->fam->end_names(c, &nm);
    int rc = mdl_matrix(ld, &m->embed, nm.embed,
                        padded_rows(eng_weights_find(ld->w, nm.embed), c->vocab_size), c->d_model);
    if (rc)
        return rc;
    const eng_tensor *h = eng_weights_find(ld->w, nm.lm_head);
    if (h && !c->tie_embeddings) {
        if ((rc = mdl_matrix(ld, &m->lm_head, nm.lm_head, padded_rows(h, c->vocab_size),
                             c->d_model)))
            return rc;
        if (nm.lm_head_bias && eng_weights_find(ld->w, nm.lm_head_bias) &&
            (rc = mdl_vector(ld, &m->lm_head_b, nm.lm_head_bias, c->vocab_size)))
            return rc;
    } else {
        m->lm_head = m->embed;
        m->lm_head.owned = 0;
    }
    m->lm_head.rows = c->vocab_size; /* padded rows produce no logits */
    if ((rc = mdl_vector(ld, &m->norm_f_w, nm.norm_w, c->d_model)))
        return rc;
    return nm.norm_b ? mdl_vector(ld, &m->norm_f_b, nm.norm_b, c->d_model) : SSMD_OK;
}

int mdl_lm_load(const mdl_family *fam, const eng_model_config *cfg, const eng_weights *w,
                bk_backend *bk, int max_batch, void **out, ssmd_err *err)
{
    int rc = fam->check(cfg, bk, err);
    if (rc)
        return rc;
    mdl_lm *m = calloc(1, fam->model_bytes);
    if (!m)
        return ssmd_err_set(err, SSMD_ENOMEM, "%s: out of memory", cfg->arch->name);
    m->fam = fam;
    m->cfg = *cfg;
    m->bk = bk;
    m->max_rows = max_batch > PREFILL_CHUNK ? max_batch : PREFILL_CHUNK;
    m->logits_rows = max_batch > LOGITS_ROWS ? max_batch : LOGITS_ROWS;
    m->layers = calloc((size_t)cfg->n_layer, fam->layer_bytes);
    mdl_loader ld = {m, w, err};
    rc = m->layers ? SSMD_OK : ssmd_err_set(err, SSMD_ENOMEM, "%s: out of memory", cfg->arch->name);
    if (!rc)
        rc = load_ends(&ld);
    for (int i = 0; !rc && i < cfg->n_layer; i++)
        rc = fam->load_layer(&ld, i, layer_at(m, i));
    if (!rc) {
        size_t rows = (size_t)m->max_rows, D = (size_t)cfg->d_model;
        rc = mdl_alloc_all(m, (float **const[]){&m->resid, &m->xn, &m->out, &m->logits},
                           (size_t[]){rows * D, rows * D, rows * D,
                                      (size_t)m->logits_rows * cfg->vocab_size},
                           4, err);
    }
    if (!rc && fam->alloc_scratch)
        rc = fam->alloc_scratch(m, err);
    if (rc) {
        mdl_lm_free(m);
        return rc;
    }
    *out = m;
    return SSMD_OK;
}

void mdl_lm_free(void *arch)
{
    mdl_lm *m = arch;
    if (!m)
        return;
    bk_backend *bk = m->bk;
    if (m->layers)
        for (int i = 0; i < m->cfg.n_layer; i++)
            m->fam->free_layer(m, layer_at(m, i));
    free(m->layers);
    if (m->fam->free_scratch)
        m->fam->free_scratch(m);
    if (m->lm_head.data && m->lm_head.data != m->embed.data)
        bk->matrix_release(bk, &m->lm_head);
    if (m->embed.data)
        bk->matrix_release(bk, &m->embed);
    void *bufs[] = {m->lm_head_b, m->norm_f_w, m->norm_f_b, m->resid, m->xn, m->out, m->logits};
    mdl_release_all(bk, bufs, sizeof bufs / sizeof bufs[0]);
    free(m);
}

/* ---- facts ------------------------------------------------------------------------- */

size_t mdl_lm_state_floats(const void *arch)
{
    const mdl_lm *m = arch;
    return m->fam->layer_floats(&m->cfg) * (size_t)m->cfg.n_layer;
}

int64_t mdl_lm_n_params(const void *arch) { return ((const mdl_lm *)arch)->n_params; }
size_t mdl_lm_weight_bytes(const void *arch) { return ((const mdl_lm *)arch)->weight_bytes; }
eng_dtype mdl_lm_weight_dtype(const void *arch) { return ((const mdl_lm *)arch)->embed.dtype; }

/* ---- forward ------------------------------------------------------------------------ */

/* xn = norm(resid += add) with the model's norm kind. */
static void add_norm(mdl_lm *m, const float *add, const float *w, const float *b, int rows)
{
    bk_backend *bk = m->bk;
    if (m->fam->layer_norm)
        bk->add_layernorm(bk, m->resid, add, w, b, m->cfg.norm_eps, rows, m->cfg.d_model, m->xn);
    else
        bk->add_rmsnorm(bk, m->resid, add, w, m->cfg.norm_eps, rows, m->cfg.d_model, m->xn);
}

void mdl_prenorm(mdl_lm *m, int i, const float *w, const float *b, int rows)
{
    add_norm(m, i ? m->out : NULL, w, b, rows);
}

/* Final norm of `rows` rows (adding the last block's output) and logits
 * of rows [first, rows) into host dst (none when NULL), logits_rows at a
 * time. */
static void head(mdl_lm *m, int rows, int first, float *dst)
{
    bk_backend *bk = m->bk;
    const int D = m->cfg.d_model, V = m->lm_head.rows;
    add_norm(m, m->out, m->norm_f_w, m->norm_f_b, rows);
    for (int r = first; dst && r < rows; r += m->logits_rows) {
        int n = rows - r < m->logits_rows ? rows - r : m->logits_rows;
        bk->matmul(bk, &m->lm_head, m->xn + (size_t)r * D, D, n, m->logits, V, m->lm_head_b,
                   BK_PRECISION_DEFAULT);
        bk->read(bk, dst + (size_t)(r - first) * V, m->logits, (size_t)n * V * sizeof(float));
    }
}

void mdl_lm_prefill(void *arch, float *state, const int32_t *ids, int n, float *logits,
                    int all_logits)
{
    mdl_lm *m = arch;
    bk_backend *bk = m->bk;
    const size_t per_layer = m->fam->layer_floats(&m->cfg);
    for (int pos = 0; pos < n; pos += m->max_rows) {
        int T = n - pos < m->max_rows ? n - pos : m->max_rows;
        bk->step_begin(bk);
        bk->embed(bk, &m->embed, ids + pos, T, m->resid);
        for (int i = 0; i < m->cfg.n_layer; i++)
            m->fam->prefill_layer(m, i, layer_at(m, i), state + i * per_layer, T);
        if (all_logits && logits)
            head(m, T, 0, logits + (size_t)pos * m->cfg.vocab_size);
        else if (pos + T == n && logits)
            head(m, T, T - 1, logits);
        bk->step_end(bk);
    }
}

/* One pass of mdl_lm_prefill_multi: segments [0, n_seg) together, rows
 * tokens in all (<= max_rows). */
static void prefill_pass(mdl_lm *m, float *const *states, const int32_t *const *ids, const int *n,
                         float *const *logits, int n_seg, int rows)
{
    bk_backend *bk = m->bk;
    const size_t per_layer = m->fam->layer_floats(&m->cfg);
    const int D = m->cfg.d_model, V = m->lm_head.rows;
    int32_t *all = malloc((size_t)rows * sizeof *all);
    float **layer_states = malloc((size_t)n_seg * sizeof *layer_states);
    if (!all || !layer_states)
        ssmd_fatal("out of memory for a batched prefill of %d tokens", rows);
    for (int k = 0, off = 0; k < n_seg; off += n[k], k++)
        memcpy(all + off, ids[k], (size_t)n[k] * sizeof *all);
    bk->step_begin(bk);
    bk->embed(bk, &m->embed, all, rows, m->resid);
    for (int i = 0; i < m->cfg.n_layer; i++) {
        for (int k = 0; k < n_seg; k++)
            layer_states[k] = states[k] + i * per_layer;
        m->fam->prefill_layer_multi(m, i, layer_at(m, i), layer_states, n, n_seg, rows);
    }
    add_norm(m, m->out, m->norm_f_w, m->norm_f_b, rows);
    for (int k = 0, off = 0; k < n_seg; off += n[k], k++) {
        if (!logits[k])
            continue;
        int r = off + n[k] - 1; /* the segment's last position, one row as prefill's head */
        bk->matmul(bk, &m->lm_head, m->xn + (size_t)r * D, D, 1, m->logits, V, m->lm_head_b,
                   BK_PRECISION_DEFAULT);
        bk->read(bk, logits[k], m->logits, (size_t)V * sizeof(float));
    }
    bk->step_end(bk);
    free(layer_states);
    free(all);
}

void mdl_lm_prefill_multi(void *arch, float *const *states, const int32_t *const *ids, const int *n,
                          float *const *logits, int n_seq)
{
    mdl_lm *m = arch;
    int k = 0;
    while (k < n_seq) {
        if (!m->fam->prefill_layer_multi || n[k] > m->max_rows) { /* alone, in chunks */
            mdl_lm_prefill(arch, states[k], ids[k], n[k], logits[k], 0);
            k++;
            continue;
        }
        int first = k, rows = 0; /* as many whole sequences as the scratch holds */
        while (k < n_seq && rows + n[k] <= m->max_rows)
            rows += n[k++];
        prefill_pass(m, states + first, ids + first, n + first, logits + first, k - first, rows);
    }
}

void mdl_lm_decode(void *arch, float *pool, const int32_t *slots, const int32_t *ids, int batch,
                   float *logits)
{
    mdl_lm *m = arch;
    bk_backend *bk = m->bk;
    const size_t per_layer = m->fam->layer_floats(&m->cfg);
    bk_state_ref st = {.pool = pool, .slot_stride = per_layer * m->cfg.n_layer, .slots = slots,
                       .batch = batch};
    bk->step_begin(bk);
    bk->embed(bk, &m->embed, ids, batch, m->resid);
    for (int i = 0; i < m->cfg.n_layer; i++) {
        st.conv_offset = st.ssm_offset = i * per_layer;
        m->fam->decode_layer(m, i, layer_at(m, i), &st);
    }
    head(m, batch, 0, logits);
    bk->step_end(bk);
}
