/* model.c - a loaded model: config, weights, backend, architecture,
 * tokenizer; validates forward inputs and hands them to the architecture.
 *
 * Owns every allocation of model memory (through the backend).  The
 * architecture is the family that read config.json (engine/arch.h).
 */
#include "engine/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/arch.h"
#include "engine/backend.h"
#include "engine/state_pool.h"
#include "engine/tensor.h"
#include "engine/xalloc.h"

struct eng_model {
    eng_model_config cfg;
    eng_model_opts opts;
    eng_weights *weights;
    eng_tokenizer *tok;       /* NULL without tokenizer.json */
    bk_backend *bk;
    const eng_arch *arch;
    void *arch_state;
    char fingerprint[33];     /* 128-bit hex */
};

void eng_model_opts_defaults(eng_model_opts *o)
{
    *o = (eng_model_opts){.backend = "cpu", .max_batch = 64};
    bk_options_defaults(&o->backend_opts);
}

/* FNV-1a, 64 bit; two differently seeded lanes make the 128-bit digest. */
static void fnv(uint64_t *h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        *h ^= p[i];
        *h *= 1099511628211ULL;
    }
}

/* Over model_type, the family's config numbers and every tensor's name,
 * dtype, shape and first/last bytes: equal for copies of one checkpoint on
 * any replica, different for another model of the same shape. */
static void make_fingerprint(eng_model *m)
{
    uint64_t h[2] = {14695981039346656037ULL, 0x9e3779b97f4a7c15ULL};
    int32_t nums[ENG_ARCH_MAX_FP_FIELDS];
    int n_nums = m->arch->fingerprint_fields(&m->cfg, nums);
    for (int lane = 0; lane < 2; lane++) {
        const eng_model_config *c = &m->cfg;
        fnv(&h[lane], c->model_type, strlen(c->model_type));
        fnv(&h[lane], nums, sizeof(int32_t) * (size_t)n_nums);
        for (int i = 0; i < eng_weights_count(m->weights); i++) {
            const eng_tensor *t = eng_weights_at(m->weights, i);
            fnv(&h[lane], t->name, strlen(t->name));
            fnv(&h[lane], &t->dtype, sizeof t->dtype);
            fnv(&h[lane], t->shape, sizeof(int64_t) * (size_t)t->ndim);
            size_t sample = t->nbytes < 64 ? t->nbytes : 64;
            fnv(&h[lane], t->data, sample);
            fnv(&h[lane], (const char *)t->data + t->nbytes - sample, sample);
        }
    }
    snprintf(m->fingerprint, sizeof m->fingerprint, "%016llx%016llx", (unsigned long long)h[0],
             (unsigned long long)h[1]);
}

int eng_model_open(const char *dir, const eng_model_opts *opts, eng_model **out, ssmd_err *err)
{
    char path[4096];
    eng_model *m = calloc(1, sizeof *m);
    if (!m)
        return ssmd_err_set(err, SSMD_ENOMEM, "out of memory");
    if (opts)
        m->opts = *opts;
    else
        eng_model_opts_defaults(&m->opts);
    if (m->opts.max_batch < 1)
        m->opts.max_batch = 1;
    int rc;
    /* A directory holds config.json, the weights and tokenizer.json; a
     * single file (GGUF) carries its config in its metadata. */
    struct stat sb;
    const int single_file = stat(dir, &sb) == 0 && S_ISREG(sb.st_mode);
    if (single_file) {
        if ((rc = eng_weights_open(dir, &m->weights, err)))
            goto fail;
        const json_t *carried = eng_weights_config(m->weights);
        rc = carried ? eng_model_config_from_json(carried, dir, &m->cfg, err)
                     : ssmd_err_set(err, SSMD_EFORMAT, "%s: a model file must carry its config "
                                    "(GGUF), or give a model directory", dir);
        if (rc)
            goto fail;
    } else {
        snprintf(path, sizeof path, "%s/config.json", dir);
        if ((rc = eng_model_config_load(path, &m->cfg, err)) ||
            (rc = eng_weights_open(dir, &m->weights, err)))
            goto fail;
    }
    m->arch = m->cfg.arch;
    if ((rc = bk_backend_create(m->opts.backend, &m->opts.backend_opts, &m->bk, err)))
        goto fail;
    if ((rc = m->arch->load(&m->cfg, m->weights, m->bk, m->opts.max_batch, &m->arch_state, err)))
        goto fail;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    const json_t *carried_tok = single_file ? eng_weights_tokenizer(m->weights) : NULL;
    if (carried_tok && (rc = eng_tokenizer_from_json(carried_tok, dir, &m->tok, err)))
        goto fail;
    if (!single_file && access(path, F_OK) == 0 && (rc = eng_tokenizer_load(path, &m->tok, err)))
        goto fail;
    make_fingerprint(m);
    *out = m;
    return SSMD_OK;
fail:
    eng_model_close(m);
    return rc;
}

void eng_model_close(eng_model *m)
{
    if (!m)
        return;
    if (m->arch_state)
        m->arch->free(m->arch_state);
    if (m->bk)
        m->bk->destroy(m->bk);
    if (m->tok)
        eng_tokenizer_free(m->tok);
    if (m->weights)
        eng_weights_close(m->weights);
    free(m);
}

const eng_model_config *eng_model_cfg(const eng_model *m) { return &m->cfg; }
bk_backend *eng_model_backend(const eng_model *m) { return m->bk; }
const eng_tokenizer *eng_model_tokenizer(const eng_model *m) { return m->tok; }
int eng_model_n_vocab(const eng_model *m) { return m->cfg.vocab_size; }
const char *eng_model_fingerprint(const eng_model *m) { return m->fingerprint; }
int64_t eng_model_n_params(const eng_model *m) { return m->arch->n_params(m->arch_state); }
size_t eng_model_weight_bytes(const eng_model *m) { return m->arch->weight_bytes(m->arch_state); }

size_t eng_model_state_bytes(const eng_model *m)
{
    return m->arch->state_floats(m->arch_state) * sizeof(float);
}

const char *eng_model_dtype_name(const eng_model *m)
{
    /* "f32", "f16", "bf16", "q8_0", ... (the dtype table's names) */
    return eng_dtype_info_of(m->arch->weight_dtype(m->arch_state))->name;
}

static int check_ids(const eng_model *m, const int32_t *ids, int n, ssmd_err *err)
{
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return ssmd_err_set(err, SSMD_EINVAL, "token id %d at position %d is outside [0, %d)",
                                (int)ids[i], i, m->cfg.vocab_size);
    return SSMD_OK;
}

int eng_model_prefill(eng_model *m, eng_state_pool *pool, int slot, const int32_t *ids, int n,
                      float *logits, int all_logits, ssmd_err *err)
{
    if (eng_state_pool_model(pool) != m || slot < 0 || slot >= eng_state_pool_n_slots(pool))
        return ssmd_err_set(err, SSMD_EINVAL, "prefill: slot %d is not in the pool", slot);
    if (n < 0)
        return ssmd_err_set(err, SSMD_EINVAL, "prefill: negative length");
    int rc = check_ids(m, ids, n, err);
    if (rc || n == 0)
        return rc;
    m->arch->prefill(m->arch_state, eng_state_slot_ptr(pool, slot), ids, n, logits, all_logits);
    return SSMD_OK;
}

int eng_model_prefill_multi(eng_model *m, eng_state_pool *pool, const eng_prefill_chunk *chunks, int n,
                            ssmd_err *err)
{
    for (int k = 0; k < n; k++) {
        const eng_prefill_chunk *c = &chunks[k];
        if (eng_state_pool_model(pool) != m || c->slot < 0 || c->slot >= eng_state_pool_n_slots(pool))
            return ssmd_err_set(err, SSMD_EINVAL, "prefill: slot %d is not in the pool", c->slot);
        if (c->n < 1)
            return ssmd_err_set(err, SSMD_EINVAL, "prefill: chunk %d is empty", k);
        for (int j = 0; j < k; j++)
            if (chunks[j].slot == c->slot)
                return ssmd_err_set(err, SSMD_EINVAL, "prefill: slot %d appears twice", c->slot);
        int rc = check_ids(m, c->ids, c->n, err);
        if (rc)
            return rc;
    }
    if (!m->arch->prefill_multi || n == 1) {
        for (int k = 0; k < n; k++)
            m->arch->prefill(m->arch_state, eng_state_slot_ptr(pool, chunks[k].slot), chunks[k].ids,
                             chunks[k].n, chunks[k].logits, 0);
        return SSMD_OK;
    }
    /* the family's form: parallel arrays */
    float **states = xcalloc((size_t)n, sizeof *states);
    const int32_t **ids = xcalloc((size_t)n, sizeof *ids);
    int *lens = xcalloc((size_t)n, sizeof *lens);
    float **logits = xcalloc((size_t)n, sizeof *logits);
    for (int k = 0; k < n; k++) {
        states[k] = eng_state_slot_ptr(pool, chunks[k].slot);
        ids[k] = chunks[k].ids;
        lens[k] = chunks[k].n;
        logits[k] = chunks[k].logits;
    }
    m->arch->prefill_multi(m->arch_state, states, ids, lens, logits, n);
    free(logits);
    free(lens);
    free(ids);
    free(states);
    return SSMD_OK;
}

int eng_model_decode(eng_model *m, eng_state_pool *pool, const int32_t *slots, const int32_t *ids,
                     int batch, float *logits, ssmd_err *err)
{
    if (eng_state_pool_model(pool) != m || batch < 1 || batch > m->opts.max_batch)
        return ssmd_err_set(err, SSMD_EINVAL, "decode: batch %d outside [1, %d]", batch,
                            m->opts.max_batch);
    for (int b = 0; b < batch; b++) {
        if (slots[b] < 0 || slots[b] >= eng_state_pool_n_slots(pool))
            return ssmd_err_set(err, SSMD_EINVAL, "decode: slot %d is not in the pool", (int)slots[b]);
        for (int c = 0; c < b; c++)
            if (slots[c] == slots[b])
                return ssmd_err_set(err, SSMD_EINVAL, "decode: slot %d appears twice", (int)slots[b]);
    }
    int rc = check_ids(m, ids, batch, err);
    if (rc)
        return rc;
    m->arch->decode(m->arch_state, eng_state_slot_ptr(pool, 0), slots, ids, batch, logits);
    return SSMD_OK;
}
