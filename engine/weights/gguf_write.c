/* gguf_write.c - a Mamba-1 or Mamba-2 model as a GGUF v3 file
 * (gguf_write.h).
 *
 * The inverse of gguf.c: our tensor names to llama.cpp's (gguf.c's tables;
 * the original state-spaces layout's embedding name too), conv1d (E, 1, K)
 * squeezed to (E, K), A_log written as A = -exp(A_log), Mamba-2's A and D
 * as (H, 1) and its norm as (groups, E / groups), the config as mamba.*
 * (Mamba-1, Falcon-Mamba) or mamba2.* metadata, a byte-level BPE
 * tokenizer.json as tokenizer.ggml.* (gpt2 model, GPT-2 pre-tokenizer).  Tensors are
 * converted one at a time (through f32, so any source dtype works), so
 * memory stays at one tensor beyond the source's map.  Never knows the
 * backends.
 */
#include "engine/weights/gguf_write.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model_config.h"
#include "engine/quant.h"
#include "engine/weights/weights.h"
#include "engine/xalloc.h"

enum { ALIGN = 32 }; /* GGUF's default general.alignment */
enum { KV_U32 = 4, KV_I32 = 5, KV_F32 = 6, KV_BOOL = 7, KV_STRING = 8, KV_ARRAY = 9 };

/* A growing byte buffer: the header is built in memory, then written. */
typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
} wbuf;

static void put(wbuf *b, const void *v, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, v, n);
    b->n += n;
}
/* GGUF is little-endian, as every machine ssmd runs on. */
static void put_u32(wbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(wbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(wbuf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

/* One metadata entry: key, type, value; each helper counts it. */
static void kv_u32(wbuf *b, uint64_t *n, const char *key, uint32_t v)
{
    put_str(b, key), put_u32(b, KV_U32), put_u32(b, v), (*n)++;
}
static void kv_f32(wbuf *b, uint64_t *n, const char *key, float v)
{
    put_str(b, key), put_u32(b, KV_F32), put(b, &v, 4), (*n)++;
}
static void kv_str(wbuf *b, uint64_t *n, const char *key, const char *v)
{
    put_str(b, key), put_u32(b, KV_STRING), put_str(b, v), (*n)++;
}
static void kv_bool(wbuf *b, uint64_t *n, const char *key, int v)
{
    uint8_t c = (uint8_t)(v != 0);
    put_str(b, key), put_u32(b, KV_BOOL), put(b, &c, 1), (*n)++;
}
static void kv_array_head(wbuf *b, uint64_t *n, const char *key, uint32_t type, size_t count)
{
    put_str(b, key), put_u32(b, KV_ARRAY), put_u32(b, type), put_u64(b, count), (*n)++;
}

/* ---- tensors ------------------------------------------------------------ */

typedef struct out_tensor {
    const eng_tensor *src;
    char name[96];   /* llama.cpp's */
    eng_dtype dtype; /* as written */
    int ndim;
    int64_t shape[4]; /* outermost first, as ours */
    uint64_t nbytes, offset;
} out_tensor;

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* The type a matrix of `cols` columns is written in: the one asked, else
 * Q8_0 when only the K-quant super-block does not fit, else F16 (what
 * llama.cpp's quantizer falls back to as well).  Only Mamba-1's dt_proj,
 * 16 or 48 columns at the small sizes, takes the last: in F32 it was 9% of
 * a Q4_K mamba-130m's bytes read per decoded token, and its values (about
 * a tenth) keep 11 significant bits in F16. */
static eng_dtype matrix_dtype(eng_dtype want, int64_t cols)
{
    if (eng_dtype_row_bytes(want, cols))
        return want;
    if (want != ENG_DTYPE_F32 && eng_dtype_row_bytes(ENG_DTYPE_Q8_0, cols))
        return ENG_DTYPE_Q8_0;
    return ENG_DTYPE_F16;
}

/* The original state-spaces checkpoints (config d_model, n_layer) call the
 * embedding what transformers calls backbone.embeddings.weight. */
static const char *const ORIGINAL_EMBED = "backbone.embedding.weight";

static const char *embed_name(const eng_weights *w)
{
    return eng_weights_find(w, ORIGINAL_EMBED) ? ORIGINAL_EMBED : "backbone.embeddings.weight";
}

/* arch: "mamba" or "mamba2"; groups: Mamba-2's n_groups (its gated norm's
 * weight is written (groups, E / groups), A and D as (H, 1), as llama.cpp's
 * converter does). */
static int plan_tensor(const eng_tensor *t, const char *arch, int groups, eng_dtype matrix_type,
                       out_tensor *o, ssmd_err *err)
{
    memset(o, 0, sizeof *o);
    o->src = t;
    char buf[sizeof o->name];
    const char *ours = strcmp(t->name, ORIGINAL_EMBED) ? t->name : "backbone.embeddings.weight";
    const char *g = eng_gguf_tensor_name(arch, ours, buf, sizeof buf);
    if (!g)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED, "%s: tensor '%s' has no GGUF (llama.cpp "
                            "%s) name", t->file, t->name, arch);
    snprintf(o->name, sizeof o->name, "%s", g);
    o->ndim = t->ndim;
    memcpy(o->shape, t->shape, sizeof o->shape);
    if (ends_with(t->name, "conv1d.weight") && t->ndim == 3) { /* (E, 1, K) -> (E, K) */
        o->ndim = 2;
        o->shape[1] = t->shape[2];
    }
    const int mamba2 = !strcmp(arch, "mamba2");
    if (mamba2 && t->ndim == 1 && (ends_with(t->name, "mixer.A_log") || ends_with(t->name, "mixer.D"))) {
        o->ndim = 2; /* (H) -> (H, 1) */
        o->shape[1] = 1;
    }
    if (mamba2 && t->ndim == 1 && ends_with(t->name, "mixer.norm.weight") && groups > 1 &&
        t->shape[0] % groups == 0) {
        o->ndim = 2; /* (E) -> (groups, E / groups) */
        o->shape[0] = groups;
        o->shape[1] = t->shape[0] / groups;
    }
    if (o->ndim > 4 || o->ndim < 1)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: tensor '%s' has %d dimensions", t->file,
                            t->name, t->ndim);
    /* the weight matrices: 2-D as stored (not the vectors reshaped above) */
    const int matrix = t->ndim == 2 && !ends_with(t->name, "A_log") &&
                       !ends_with(t->name, "conv1d.weight");
    o->dtype = matrix ? matrix_dtype(matrix_type, o->shape[1]) : ENG_DTYPE_F32;
    const int64_t cols = o->shape[o->ndim - 1];
    o->nbytes = eng_dtype_row_bytes(o->dtype, cols) * (uint64_t)(t->numel / cols);
    return SSMD_OK;
}

/* One tensor's bytes as written, into *buf (grown as needed).  A weight
 * that is not finite has no quantisation: SSMD_EFORMAT naming it. */
static int convert_tensor(const out_tensor *o, float **f32, uint8_t **buf, ssmd_err *err)
{
    const eng_tensor *t = o->src;
    *f32 = xrealloc(*f32, (size_t)t->numel * sizeof(float));
    eng_tensor_to_f32(t, *f32);
    if (ends_with(t->name, "A_log")) /* llama.cpp stores A itself */
        for (int64_t i = 0; i < t->numel; i++)
            (*f32)[i] = -expf((*f32)[i]);
    *buf = xrealloc(*buf, (size_t)o->nbytes);
    if (o->dtype == ENG_DTYPE_F32) {
        memcpy(*buf, *f32, (size_t)o->nbytes);
        return SSMD_OK;
    }
    if (o->dtype == ENG_DTYPE_F16 || o->dtype == ENG_DTYPE_BF16) { /* rounded, never refused */
        uint16_t *h = (uint16_t *)*buf;
        for (int64_t i = 0; i < t->numel; i++)
            h[i] = o->dtype == ENG_DTYPE_F16 ? eng_f32_to_f16((*f32)[i]) : eng_f32_to_bf16((*f32)[i]);
        return SSMD_OK;
    }
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite((*f32)[i]))
            return ssmd_err_set(err, SSMD_EFORMAT, "%s: tensor '%s': weight %lld is %g, which "
                                "cannot be quantized", t->file, t->name, (long long)i,
                                (*f32)[i]);
    eng_quant_quantize(o->dtype, *f32, t->numel, *buf);
    return SSMD_OK;
}

/* ---- metadata ----------------------------------------------------------- */

static int64_t dim_of(const eng_weights *w, const char *name, int d)
{
    const eng_tensor *t = eng_weights_find(w, name);
    return t && d < t->ndim ? t->shape[d] : -1;
}

/* bos/eos ids, when the config has them. */
static void put_token_ids(wbuf *b, uint64_t *n, const json_t *config)
{
    const char *ids[][2] = {{"bos_token_id", "tokenizer.ggml.bos_token_id"},
                            {"eos_token_id", "tokenizer.ggml.eos_token_id"}};
    for (size_t i = 0; i < 2; i++) {
        const json_t *v = json_object_get(config, ids[i][0]);
        if (json_is_integer(v) && json_integer_value(v) >= 0)
            kv_u32(b, n, ids[i][1], (uint32_t)json_integer_value(v));
    }
}

static int count_layers(const eng_weights *w)
{
    int layers = 0;
    char name[96];
    while (snprintf(name, sizeof name, "backbone.layers.%d.mixer.D", layers),
           eng_weights_find(w, name))
        layers++;
    return layers;
}

/* <arch>.<key> = sizes[i] for each key, every one known from the tensors;
 * with the block count, context length, vocab size and norm eps. */
static int put_shape(wbuf *b, uint64_t *n, const eng_weights *w, const json_t *config, const char *arch,
                     const char *const *keys, const int64_t *sizes, size_t n_keys, const char *path,
                     ssmd_err *err)
{
    char k[96];
    const int layers = count_layers(w);
    if (layers == 0)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: no layers (backbone.layers.0.mixer.D)", path);
    const json_t *vocab = json_object_get(config, "vocab_size");
    const json_t *eps = json_object_get(config, "layer_norm_epsilon");
    kv_str(b, n, "general.architecture", arch);
    kv_u32(b, n, "general.alignment", ALIGN);
    snprintf(k, sizeof k, "%s.block_count", arch);
    kv_u32(b, n, k, (uint32_t)layers);
    snprintf(k, sizeof k, "%s.context_length", arch);
    kv_u32(b, n, k, 1u << 20); /* a recurrence has no window */
    for (size_t i = 0; i < n_keys; i++) {
        snprintf(k, sizeof k, "%s.%s", arch, keys[i]);
        if (sizes[i] <= 0)
            return ssmd_err_set(err, SSMD_EFORMAT, "%s: cannot tell %s from the tensors", path, k);
        kv_u32(b, n, k, (uint32_t)sizes[i]);
    }
    const int64_t rows = dim_of(w, embed_name(w), 0); /* padded, maybe */
    snprintf(k, sizeof k, "%s.vocab_size", arch);
    kv_u32(b, n, k, (uint32_t)(json_is_integer(vocab) ? json_integer_value(vocab) : rows));
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    kv_f32(b, n, k, json_is_number(eps) ? (float)json_number_value(eps) : 1e-5f);
    put_token_ids(b, n, config);
    return SSMD_OK;
}

/* Mamba-2 in transformers' layout, as far as llama.cpp's mamba2 graph
 * computes it: no projection biases, dt unclamped, the gate before the
 * norm; anything else is refused by name rather than written wrong. */
static int put_config_mamba2(wbuf *b, uint64_t *n, const eng_weights *w, const json_t *config,
                             const char *path, ssmd_err *err)
{
    const json_t *lim = json_object_get(config, "time_step_limit");
    double lo = 0.0, hi = INFINITY;
    const int unclamped = !lim || (json_is_array(lim) && eng_cfg_json_number(json_array_get(lim, 0), &lo) &&
                                   eng_cfg_json_number(json_array_get(lim, 1), &hi) && lo == 0.0 &&
                                   isinf(hi));
    const char *refused = json_is_true(json_object_get(config, "use_bias")) ? "'use_bias' true"
                          : json_is_true(json_object_get(config, "norm_before_gate"))
                              ? "'norm_before_gate' true"
                          : !unclamped ? "'time_step_limit' other than [0, Infinity]"
                                       : NULL;
    if (refused)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED, "%s: %s cannot be written as GGUF (llama.cpp's "
                            "Mamba-2 has no such option)", path, refused);
    const json_t *groups = json_object_get(config, "n_groups"), *state = json_object_get(config, "state_size");
    const eng_tensor *conv = eng_weights_find(w, "backbone.layers.0.mixer.conv1d.weight");
    const int64_t sizes[] = {dim_of(w, embed_name(w), 1),
                             dim_of(w, "backbone.layers.0.mixer.norm.weight", 0),
                             json_is_integer(state) ? json_integer_value(state) : -1,
                             conv ? conv->shape[conv->ndim - 1] : -1,
                             dim_of(w, "backbone.layers.0.mixer.D", 0),
                             json_is_integer(groups) ? json_integer_value(groups) : 1};
    const char *const keys[] = {"embedding_length", "ssm.inner_size", "ssm.state_size",
                                "ssm.conv_kernel", "ssm.time_step_rank", "ssm.group_count"};
    return put_shape(b, n, w, config, "mamba2", keys, sizes, sizeof keys / sizeof keys[0], path, err);
}

/* The model type a config.json describes ("mamba" for the original
 * state-spaces layout of Mamba-1), or NULL for one GGUF cannot hold. */
static const char *gguf_arch_of(const json_t *config, int *falcon)
{
    const char *type = json_string_value(json_object_get(config, "model_type"));
    const json_t *ssm = json_object_get(config, "ssm_cfg");
    *falcon = type && !strcmp(type, "falcon_mamba");
    if (!type && json_object_get(config, "d_model") &&
        !(json_is_string(json_object_get(ssm, "layer")) &&
          strcmp(json_string_value(json_object_get(ssm, "layer")), "Mamba1")))
        return "mamba"; /* the original layout's config.json of a Mamba-1 */
    if (type && (!strcmp(type, "mamba") || *falcon))
        return "mamba";
    if (type && !strcmp(type, "mamba2"))
        return "mamba2";
    return NULL;
}

static int put_config(wbuf *b, uint64_t *n, const eng_weights *w, const json_t *config,
                      const char *path, ssmd_err *err)
{
    int falcon;
    const char *arch = gguf_arch_of(config, &falcon);
    const char *type = json_string_value(json_object_get(config, "model_type"));
    if (!arch)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED, "%s: model_type '%s' cannot be written as "
                            "GGUF (have: mamba, falcon_mamba, mamba2 in transformers' layout)", path,
                            type ? type : "(none)");
    if (!strcmp(arch, "mamba2"))
        return put_config_mamba2(b, n, w, config, path, err);
    const eng_tensor *conv = eng_weights_find(w, "backbone.layers.0.mixer.conv1d.weight");
    const int64_t sizes[] = {
        dim_of(w, embed_name(w), 1), dim_of(w, "backbone.layers.0.mixer.D", 0),
        dim_of(w, "backbone.layers.0.mixer.A_log", 1), conv ? conv->shape[conv->ndim - 1] : -1,
        dim_of(w, "backbone.layers.0.mixer.dt_proj.weight", 1)};
    const char *const keys[] = {"embedding_length", "ssm.inner_size", "ssm.state_size",
                                "ssm.conv_kernel", "ssm.time_step_rank"};
    int rc = put_shape(b, n, w, config, "mamba", keys, sizes, sizeof keys / sizeof keys[0], path, err);
    if (!rc && falcon)
        kv_bool(b, n, "mamba.ssm.dt_b_c_rms", 1);
    return rc;
}

/* tokenizer.ggml.* of a byte-level BPE tokenizer.json (what gguf.c reads
 * back): tokens by id, their types (1 normal, 3 special added, 4 other
 * added), merges as "a b" strings. */
static int put_tokenizer(wbuf *b, uint64_t *n, const json_t *t, const char *path, ssmd_err *err)
{
    const json_t *model = json_object_get(t, "model");
    const json_t *pre = json_object_get(t, "pre_tokenizer");
    const char *mt = json_string_value(json_object_get(model, "type"));
    const char *pt = json_string_value(json_object_get(pre, "type"));
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    if (!mt || strcmp(mt, "BPE") || !pt || strcmp(pt, "ByteLevel") || !json_is_object(vocab) ||
        !json_is_array(merges))
        return ssmd_err_set(err, SSMD_EUNSUPPORTED, "%s: only a byte-level BPE tokenizer can be "
                            "written as GGUF (this one: model %s, pre-tokenizer %s)", path,
                            mt ? mt : "?", pt ? pt : "?");
    size_t count = 0;
    const char *tok;
    const json_t *id;
    json_object_foreach((json_t *)vocab, tok, id)
        if (json_integer_value(id) + 1 > (json_int_t)count)
            count = (size_t)json_integer_value(id) + 1;
    const json_t *added = json_object_get(t, "added_tokens");
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_int_t a = json_integer_value(json_object_get(json_array_get(added, i), "id"));
        if (a + 1 > (json_int_t)count)
            count = (size_t)a + 1;
    }
    if (count > (1u << 24)) /* ids this large are a broken file, not a vocabulary */
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: the tokenizer's ids reach %zu", path, count);
    const char **by_id = xcalloc(count, sizeof *by_id);
    int32_t *types = xcalloc(count, sizeof *types);
    json_object_foreach((json_t *)vocab, tok, id)
        if (json_integer_value(id) >= 0)
            by_id[json_integer_value(id)] = tok, types[json_integer_value(id)] = 1;
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        json_int_t k = json_integer_value(json_object_get(a, "id"));
        if (k >= 0 && json_is_string(json_object_get(a, "content"))) {
            by_id[k] = json_string_value(json_object_get(a, "content"));
            types[k] = json_is_true(json_object_get(a, "special")) ? 3 : 4;
        }
    }
    int rc = SSMD_OK;
    for (size_t i = 0; i < count && !rc; i++)
        if (!by_id[i])
            rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: the tokenizer has no token with id %zu",
                              path, i);
    if (!rc) {
        kv_str(b, n, "tokenizer.ggml.model", "gpt2");
        kv_str(b, n, "tokenizer.ggml.pre", "gpt-2");
        kv_array_head(b, n, "tokenizer.ggml.tokens", KV_STRING, count);
        for (size_t i = 0; i < count; i++)
            put_str(b, by_id[i]);
        kv_array_head(b, n, "tokenizer.ggml.token_type", KV_I32, count);
        put(b, types, count * sizeof *types);
        kv_array_head(b, n, "tokenizer.ggml.merges", KV_STRING, json_array_size(merges));
        for (size_t i = 0; i < json_array_size(merges); i++) {
            const json_t *m = json_array_get(merges, i);
            char pair[512];
            if (json_is_array(m)) /* newer tokenizer.json: ["a", "b"] */
                snprintf(pair, sizeof pair, "%s %s", json_string_value(json_array_get(m, 0)),
                         json_string_value(json_array_get(m, 1)));
            else
                snprintf(pair, sizeof pair, "%s", json_is_string(m) ? json_string_value(m) : "");
            put_str(b, pair);
        }
    }
    free(by_id);
    free(types);
    return rc;
}

/* ---- the file ----------------------------------------------------------- */

static const uint8_t zeros[ALIGN];

int eng_gguf_save(const eng_weights *w, const json_t *config, const json_t *tokenizer,
                  eng_dtype matrix_type, const char *path, int *n_quantized, ssmd_err *err)
{
    const int nt = eng_weights_count(w);
    out_tensor *ts = xcalloc((size_t)(nt ? nt : 1), sizeof *ts);
    wbuf kv = {0}, hdr = {0};
    uint64_t n_kv = 0, offset = 0;
    float *f32 = NULL;
    uint8_t *buf = NULL;
    FILE *f = NULL;
    int rc = SSMD_OK, quantized = 0, falcon;
    const char *arch = gguf_arch_of(config, &falcon);
    const json_t *groups = json_object_get(config, "n_groups");
    rc = put_config(&kv, &n_kv, w, config, path, err); /* refuses what GGUF cannot say first */
    for (int i = 0; i < nt && !rc; i++) {
        rc = plan_tensor(eng_weights_at(w, i), arch, json_is_integer(groups) ? (int)json_integer_value(groups) : 1,
                         matrix_type, &ts[i], err);
        ts[i].offset = offset;
        offset += (ts[i].nbytes + ALIGN - 1) / ALIGN * ALIGN;
        quantized += eng_dtype_info_of(ts[i].dtype)->quantized;
    }
    if (!rc && tokenizer)
        rc = put_tokenizer(&kv, &n_kv, tokenizer, path, err);
    else if (!rc) /* llama.cpp's word for a model without one; it requires the key */
        kv_str(&kv, &n_kv, "tokenizer.ggml.model", "no_vocab");
    if (rc)
        goto done;
    put(&hdr, "GGUF", 4);
    put_u32(&hdr, 3);
    put_u64(&hdr, (uint64_t)nt);
    put_u64(&hdr, n_kv);
    put(&hdr, kv.p, kv.n);
    for (int i = 0; i < nt; i++) {
        put_str(&hdr, ts[i].name);
        put_u32(&hdr, (uint32_t)ts[i].ndim);
        for (int d = ts[i].ndim - 1; d >= 0; d--) /* GGUF: innermost first */
            put_u64(&hdr, (uint64_t)ts[i].shape[d]);
        put_u32(&hdr, (uint32_t)eng_gguf_type_id(ts[i].dtype));
        put_u64(&hdr, ts[i].offset);
    }
    put(&hdr, zeros, (ALIGN - hdr.n % ALIGN) % ALIGN);
    if (!(f = fopen(path, "wb"))) {
        rc = ssmd_err_set(err, SSMD_EIO, "%s: cannot create: %s", path, strerror(errno));
        goto done;
    }
    int ok = fwrite(hdr.p, 1, hdr.n, f) == hdr.n;
    for (int i = 0; i < nt && ok && !rc; i++) {
        if ((rc = convert_tensor(&ts[i], &f32, &buf, err)))
            break;
        ok = fwrite(buf, 1, (size_t)ts[i].nbytes, f) == ts[i].nbytes;
        size_t pad = (size_t)((ALIGN - ts[i].nbytes % ALIGN) % ALIGN);
        ok = ok && fwrite(zeros, 1, pad, f) == pad;
    }
    if ((fclose(f) != 0 || !ok) && !rc)
        rc = ssmd_err_set(err, SSMD_EIO, "%s: write failed: %s", path, strerror(errno));
    if (rc)
        remove(path);
done:
    free(ts), free(kv.p), free(hdr.p), free(f32), free(buf);
    if (!rc && n_quantized)
        *n_quantized = quantized;
    return rc;
}
