/* gguf.c - the GGUF weights source: a llama.cpp model file (`ssmd serve
 * --model file.gguf`) mapped read-only and validated completely before
 * anything is handed out.
 *
 * Layout (GGUF v2/v3, little-endian): "GGUF", u32 version, u64 tensor
 * count, u64 metadata count; the metadata as (string key, u32 type, value)
 * with nested arrays; the tensor infos as (string name, u32 n_dims, u64
 * dims innermost first, u32 ggml type, u64 offset); then, at the next
 * multiple of general.alignment (32), the data section the offsets point
 * into.  Every count, length and offset is checked against the bytes that
 * remain before it is used: nothing handed out can point outside the file.
 *
 * What the engine's families expect is transformers' layout, so this source
 * translates what llama.cpp's converter writes for the architectures it
 * knows (general.architecture "mamba": Mamba-1 and Falcon-Mamba; "mamba2":
 * Mamba-2): tensor names and shapes (ssm_conv1d as (E, 1, K); Mamba-2's
 * ssm_a and ssm_d (H, 1) and ssm_norm (groups, E / groups) flat again),
 * ssm_a (A itself) back to A_log = log(-A) in an owned f32 copy (the
 * loader's -exp(A_log) gives A back within an f32 rounding), and the
 * mamba.* / mamba2.* metadata into the config object that a config.json
 * would hold, and a byte-level BPE tokenizer
 * (tokenizer.ggml.model "gpt2") into a tokenizer.json object.  Anything
 * else -- another architecture, an unknown tensor type, another tokenizer
 * -- is refused by name.  Never knows the backends.
 */
#include <math.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tensor.h"
#include "engine/weights/weights.h"
#include "engine/xalloc.h"

enum { GGUF_MIN_BYTES = 24, GGUF_MAX_DIMS = 4, GGUF_MAX_DEPTH = 2 };
#define GGUF_MAX_STRING (1u << 20) /* a key, a tensor name or a token: far less */

typedef enum gguf_type {
    GT_U8 = 0, GT_I8, GT_U16, GT_I16, GT_U32, GT_I32, GT_F32, GT_BOOL, GT_STRING, GT_ARRAY,
    GT_U64, GT_I64, GT_F64, GT_COUNT
} gguf_type;

/* The ggml tensor types this source knows: the float types and the block
 * formats of engine/tensor.h; any other is refused by name. */
static const struct { unsigned ggml; eng_dtype dtype; const char *name; } ggml_types[] = {
    {0, ENG_DTYPE_F32, "F32"},   {1, ENG_DTYPE_F16, "F16"},   {30, ENG_DTYPE_BF16, "BF16"},
    {8, ENG_DTYPE_Q8_0, "Q8_0"}, {2, ENG_DTYPE_Q4_0, "Q4_0"}, {12, ENG_DTYPE_Q4_K, "Q4_K"},
    {14, ENG_DTYPE_Q6_K, "Q6_K"}, {6, ENG_DTYPE_Q5_0, "Q5_0"},
};

/* The names of ggml's other tensor types, so that a refusal names what the
 * file holds (ggml.h's numbering; 4 and 5 were removed from ggml). */
static const char *other_type_name(unsigned type)
{
    static const char *const names[] = {
        [3] = "Q4_1",     [7] = "Q5_1",    [9] = "Q8_1",    [10] = "Q2_K",
        [11] = "Q3_K",    [13] = "Q5_K",    [15] = "Q8_K",   [16] = "IQ2_XXS", [17] = "IQ2_XS",
        [18] = "IQ3_XXS", [19] = "IQ1_S",   [20] = "IQ4_NL", [21] = "IQ3_S",   [22] = "IQ2_S",
        [23] = "IQ4_XS",  [24] = "I8",      [25] = "I16",    [26] = "I32",     [27] = "I64",
        [28] = "F64",     [29] = "IQ1_M",   [34] = "TQ1_0",  [35] = "TQ2_0",   [39] = "MXFP4",
    };
    return type < sizeof names / sizeof names[0] ? names[type] : NULL;
}

typedef struct gguf_arch gguf_arch;

typedef struct gguf_reader {
    const uint8_t *p;
    size_t len, pos;
    const char *path;
    ssmd_err *err;
    const gguf_arch *arch; /* once general.architecture is read */
} gguf_reader;

typedef struct gguf_source {
    eng_mapped_file file;
    float **owned; /* (n_owned) converted tensors (A_log) */
    int n_owned;
} gguf_source;

/* ---- reading ----------------------------------------------------------------- */

static int need(gguf_reader *r, uint64_t n, const char *what)
{
    if (n > r->len - r->pos)
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: truncated at byte %zu (reading %s)",
                            r->path, r->pos, what);
    return SSMD_OK;
}

static int rd_bytes(gguf_reader *r, void *dst, size_t n, const char *what)
{
    int rc = need(r, n, what);
    if (rc == SSMD_OK) {
        memcpy(dst, r->p + r->pos, n);
        r->pos += n;
    }
    return rc;
}

static int rd_u32(gguf_reader *r, uint32_t *v, const char *what) { return rd_bytes(r, v, 4, what); }
static int rd_u64(gguf_reader *r, uint64_t *v, const char *what) { return rd_bytes(r, v, 8, what); }

/* A string: u64 length, then the bytes (not NUL-terminated in the file). */
static int rd_str(gguf_reader *r, const char **s, size_t *n, const char *what)
{
    uint64_t len;
    int rc = rd_u64(r, &len, what);
    if (rc)
        return rc;
    if (len > GGUF_MAX_STRING)
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: %s of %llu bytes at byte %zu is too long",
                            r->path, what, (unsigned long long)len, r->pos);
    if ((rc = need(r, len, what)))
        return rc;
    *s = (const char *)r->p + r->pos;
    *n = (size_t)len;
    r->pos += len;
    return SSMD_OK;
}

static json_t *rd_value(gguf_reader *r, uint32_t type, int depth, const char *key);

/* One scalar of a fixed-size type, as JSON. */
static json_t *rd_scalar(gguf_reader *r, uint32_t type, const char *key)
{
    static const uint8_t sizes[GT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    uint8_t b[8] = {0};
    if (rd_bytes(r, b, sizes[type], key))
        return NULL;
    int64_t i = 0;
    switch (type) {
    case GT_U8: return json_integer(b[0]);
    case GT_I8: return json_integer((int8_t)b[0]);
    case GT_BOOL: return json_boolean(b[0] != 0);
    case GT_U16: { uint16_t v; memcpy(&v, b, 2); return json_integer(v); }
    case GT_I16: { int16_t v; memcpy(&v, b, 2); return json_integer(v); }
    case GT_U32: { uint32_t v; memcpy(&v, b, 4); return json_integer(v); }
    case GT_I32: { int32_t v; memcpy(&v, b, 4); return json_integer(v); }
    case GT_F32: { float v; memcpy(&v, b, 4); return json_real(v); }
    case GT_F64: { double v; memcpy(&v, b, 8); return json_real(v); }
    case GT_I64: memcpy(&i, b, 8); return json_integer(i);
    default: { /* GT_U64 */
        uint64_t v;
        memcpy(&v, b, 8);
        if (v > (uint64_t)INT64_MAX) {
            ssmd_err_set(r->err, SSMD_EFORMAT, "%s: metadata '%s': value %llu is too large", r->path,
                         key, (unsigned long long)v);
            return NULL;
        }
        return json_integer((json_int_t)v);
    }
    }
}

static json_t *rd_array(gguf_reader *r, int depth, const char *key)
{
    uint32_t type;
    uint64_t n;
    if (rd_u32(r, &type, key) || rd_u64(r, &n, key))
        return NULL;
    /* every element takes at least one byte: a count beyond the file is a lie */
    if (n > r->len - r->pos) {
        ssmd_err_set(r->err, SSMD_EFORMAT, "%s: metadata '%s': array of %llu elements is longer "
                     "than the file", r->path, key, (unsigned long long)n);
        return NULL;
    }
    json_t *a = json_array();
    for (uint64_t i = 0; i < n; i++) {
        json_t *v = rd_value(r, type, depth + 1, key);
        if (!v) {
            json_decref(a);
            return NULL;
        }
        json_array_append_new(a, v);
    }
    return a;
}

/* A value of `type` as JSON, or NULL with r->err set. */
static json_t *rd_value(gguf_reader *r, uint32_t type, int depth, const char *key)
{
    if (type >= GT_COUNT) {
        ssmd_err_set(r->err, SSMD_EFORMAT, "%s: metadata '%s': unknown value type %u", r->path, key,
                     type);
        return NULL;
    }
    if (type == GT_STRING) {
        const char *s;
        size_t n;
        return rd_str(r, &s, &n, key) ? NULL : json_stringn_nocheck(s, n);
    }
    if (type == GT_ARRAY) {
        if (depth >= GGUF_MAX_DEPTH) {
            ssmd_err_set(r->err, SSMD_EFORMAT, "%s: metadata '%s': arrays nested too deep", r->path,
                         key);
            return NULL;
        }
        return rd_array(r, depth, key);
    }
    return rd_scalar(r, type, key);
}

static int rd_metadata(gguf_reader *r, uint64_t n, json_t *meta)
{
    for (uint64_t i = 0; i < n; i++) {
        const char *k;
        size_t kn;
        uint32_t type;
        int rc = rd_str(r, &k, &kn, "a metadata key");
        if (rc)
            return rc;
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(kn < 255 ? kn : 255), k);
        if ((rc = rd_u32(r, &type, key)))
            return rc;
        if (json_object_get(meta, key))
            return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: metadata '%s' appears twice", r->path,
                                key);
        json_t *v = rd_value(r, type, 0, key);
        if (!v)
            return r->err->code;
        json_object_set_new(meta, key, v);
    }
    return SSMD_OK;
}

/* ---- tensors -------------------------------------------------------------------- */

/* llama.cpp's names of a Mamba-1 checkpoint -> transformers'. */
static const char *const mamba_names[][2] = {
    {"attn_norm.weight", "norm.weight"},
    {"ssm_in.weight", "mixer.in_proj.weight"},
    {"ssm_conv1d.weight", "mixer.conv1d.weight"},
    {"ssm_conv1d.bias", "mixer.conv1d.bias"},
    {"ssm_x.weight", "mixer.x_proj.weight"},
    {"ssm_dt.weight", "mixer.dt_proj.weight"},
    {"ssm_dt.bias", "mixer.dt_proj.bias"},
    {"ssm_a", "mixer.A_log"},
    {"ssm_d", "mixer.D"},
    {"ssm_out.weight", "mixer.out_proj.weight"},
};

/* The same for Mamba-2 (dt_bias travels as ssm_dt.bias; ssm_norm is the
 * gated RMSNorm). */
static const char *const mamba2_names[][2] = {
    {"attn_norm.weight", "norm.weight"},
    {"ssm_in.weight", "mixer.in_proj.weight"},
    {"ssm_conv1d.weight", "mixer.conv1d.weight"},
    {"ssm_conv1d.bias", "mixer.conv1d.bias"},
    {"ssm_dt.bias", "mixer.dt_bias"},
    {"ssm_a", "mixer.A_log"},
    {"ssm_d", "mixer.D"},
    {"ssm_norm.weight", "mixer.norm.weight"},
    {"ssm_out.weight", "mixer.out_proj.weight"},
};

/* An architecture this source reads: its metadata prefix and its per-layer
 * tensor names. */
struct gguf_arch {
    const char *name;             /* general.architecture, and the metadata prefix */
    const char *const (*layer_names)[2];
    size_t n_layer_names;
};

static const gguf_arch archs[] = {
    {"mamba", mamba_names, sizeof mamba_names / sizeof mamba_names[0]},
    {"mamba2", mamba2_names, sizeof mamba2_names / sizeof mamba2_names[0]},
};

/* The same for the tensors outside the layers. */
static const char *const end_names[][2] = {{"token_embd.weight", "backbone.embeddings.weight"},
                                           {"output_norm.weight", "backbone.norm_f.weight"},
                                           {"output.weight", "lm_head.weight"}};

/* The name in the `from` column (0: llama.cpp's, 1: ours) of one of arch's
 * tables, in the other column's naming (into buf); NULL when the name is in
 * neither table. */
static const char *map_name(const gguf_arch *arch, const char *name, int from, char *buf, size_t size)
{
    for (size_t i = 0; i < sizeof end_names / sizeof end_names[0]; i++)
        if (!strcmp(name, end_names[i][from]))
            return end_names[i][!from];
    int layer, used = 0;
    const char *fmt_in = from ? "backbone.layers.%d.%n" : "blk.%d.%n";
    if (sscanf(name, fmt_in, &layer, &used) == 1 && used > 0)
        for (size_t i = 0; i < arch->n_layer_names; i++)
            if (!strcmp(name + used, arch->layer_names[i][from])) {
                snprintf(buf, size, from ? "blk.%d.%s" : "backbone.layers.%d.%s", layer,
                         arch->layer_names[i][!from]);
                return buf;
            }
    return NULL;
}

/* Our name for a llama.cpp tensor name (into buf), or the name itself. */
static const char *hf_name(const gguf_arch *arch, const char *g, char *buf, size_t size)
{
    const char *ours = map_name(arch, g, 0, buf, size);
    return ours ? ours : g;
}

const char *eng_gguf_tensor_name(const char *arch, const char *ours, char *buf, size_t size)
{
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (!strcmp(arch, archs[i].name))
            return map_name(&archs[i], ours, 1, buf, size);
    return NULL;
}

int eng_gguf_type_id(eng_dtype dt)
{
    for (size_t k = 0; k < sizeof ggml_types / sizeof ggml_types[0]; k++)
        if (ggml_types[k].dtype == dt)
            return (int)ggml_types[k].ggml;
    return -1;
}

/* ssm_a (A, f32) -> A_log = log(-A) in an owned copy. */
static int a_to_a_log(gguf_source *src, eng_tensor *t, const char *path, ssmd_err *err)
{
    if (t->dtype != ENG_DTYPE_F32)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: tensor '%s' must be F32 (it is %s)", path,
                            t->name, t->dtype_name);
    float *a = xmalloc((size_t)t->nbytes);
    memcpy(a, t->data, (size_t)t->nbytes);
    src->owned = xrealloc(src->owned, sizeof *src->owned * (size_t)(src->n_owned + 1));
    src->owned[src->n_owned++] = a;
    for (int64_t i = 0; i < t->numel; i++) {
        if (!(a[i] < 0.0f))
            return ssmd_err_set(err, SSMD_EFORMAT, "%s: tensor '%s': A[%lld] = %g, must be negative",
                                path, t->name, (long long)i, a[i]);
        a[i] = logf(-a[i]);
    }
    t->data = a;
    return SSMD_OK;
}

static int rd_tensor(gguf_reader *r, eng_weights *w, gguf_source *src, uint64_t *offset,
                     uint64_t *end)
{
    const char *nm;
    size_t nn;
    uint32_t n_dims, type;
    uint64_t dims[GGUF_MAX_DIMS];
    int rc = rd_str(r, &nm, &nn, "a tensor name");
    if (rc)
        return rc;
    char gname[256], buf[256];
    snprintf(gname, sizeof gname, "%.*s", (int)(nn < 255 ? nn : 255), nm);
    if ((rc = rd_u32(r, &n_dims, gname)))
        return rc;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: tensor '%s' has %u dimensions (1 to %d)",
                            r->path, gname, n_dims, GGUF_MAX_DIMS);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if ((rc = rd_u64(r, &dims[d], gname)))
            return rc;
        if (dims[d] == 0 || dims[d] > (1ULL << 40) || numel > (1ULL << 48) / dims[d])
            return ssmd_err_set(r->err, SSMD_EFORMAT, "%s: tensor '%s': dimension %u is %llu",
                                r->path, gname, d, (unsigned long long)dims[d]);
        numel *= dims[d];
    }
    if ((rc = rd_u32(r, &type, gname)) || (rc = rd_u64(r, offset, gname)))
        return rc;
    size_t k = 0;
    while (k < sizeof ggml_types / sizeof ggml_types[0] && ggml_types[k].ggml != type)
        k++;
    if (k == sizeof ggml_types / sizeof ggml_types[0])
        return ssmd_err_set(r->err, SSMD_EUNSUPPORTED,
                            "%s: tensor '%s': ggml type %u%s%s%s is not supported (have: F32, F16, "
                            "BF16, Q8_0, Q4_0, Q4_K, Q6_K, Q5_0)", r->path, gname, type,
                            other_type_name(type) ? " (" : "",
                            other_type_name(type) ? other_type_name(type) : "",
                            other_type_name(type) ? ")" : "");
    uint64_t row = eng_dtype_row_bytes(ggml_types[k].dtype, (int64_t)dims[0]);
    if (row == 0)
        return ssmd_err_set(r->err, SSMD_EFORMAT,
                            "%s: tensor '%s': %llu columns are not whole %s blocks", r->path,
                            gname, (unsigned long long)dims[0], ggml_types[k].name);
    eng_tensor *t = eng_weights_add(w, hf_name(r->arch, gname, buf, sizeof buf));
    t->dtype = ggml_types[k].dtype;
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", ggml_types[k].name);
    t->ndim = (int)n_dims;
    for (uint32_t d = 0; d < n_dims; d++) /* GGUF: innermost first; ours: outermost first */
        t->shape[d] = (int64_t)dims[n_dims - 1 - d];
    if (n_dims == 2 && strstr(t->name, "conv1d.weight")) { /* (E, K) -> (E, 1, K) */
        t->ndim = 3;
        t->shape[2] = t->shape[1];
        t->shape[1] = 1;
    }
    if (r->arch == &archs[1] && (strstr(t->name, "mixer.A_log") || strstr(t->name, "mixer.D") ||
                                 strstr(t->name, "mixer.norm.weight"))) {
        t->ndim = 1; /* Mamba-2: (H, 1) and (groups, E / groups) are flat vectors to us */
        t->shape[0] = (int64_t)numel;
    }
    t->numel = (int64_t)numel;
    t->nbytes = row * (numel / dims[0]);
    t->file = src->file.path;
    *end = *offset + t->nbytes; /* offset checked by the caller, before any use */
    return SSMD_OK;
}

/* ---- config ------------------------------------------------------------------------ */

/* <arch>.<key> from meta as an integer into obj[as]; required unless def >= 0. */
static int cfg_int(json_t *obj, const json_t *meta, const char *arch, const char *key, const char *as,
                   int def, const char *path, ssmd_err *err)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    const json_t *v = json_object_get(meta, k);
    if (!v && def < 0)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: metadata '%s' is missing", path, k);
    if (v && !json_is_integer(v))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: metadata '%s' must be an integer", path, k);
    json_object_set_new(obj, as, v ? json_copy((json_t *)v) : json_integer(def));
    return SSMD_OK;
}

/* The bos/eos ids and the head's tying, as a config.json holds them. */
static void cfg_common(json_t *c, eng_weights *w, const json_t *meta)
{
    json_object_set_new(c, "tie_word_embeddings",
                        json_boolean(!eng_weights_find(w, "lm_head.weight")));
    json_object_set_new(c, "use_bias", json_false());
    json_object_set_new(c, "use_conv_bias",
                        json_boolean(eng_weights_find(w, "backbone.layers.0.mixer.conv1d.bias") != NULL));
    const char *ids[][2] = {{"tokenizer.ggml.bos_token_id", "bos_token_id"},
                            {"tokenizer.ggml.eos_token_id", "eos_token_id"}};
    for (size_t i = 0; i < 2; i++) {
        const json_t *v = json_object_get(meta, ids[i][0]);
        json_object_set_new(c, ids[i][1], json_is_integer(v) ? json_copy((json_t *)v) : json_null());
    }
}

/* The hyper-parameters both families carry; the model's norm eps in *eps. */
static int cfg_shape(json_t *c, eng_weights *w, const json_t *meta, const char *a, const char *path,
                     const json_t **eps, ssmd_err *err)
{
    const eng_tensor *emb = eng_weights_find(w, "backbone.embeddings.weight");
    char k[128];
    int rc = SSMD_OK;
    if (!emb || emb->ndim != 2)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: missing tensor 'token_embd.weight'", path);
    if (!(rc = cfg_int(c, meta, a, "embedding_length", "hidden_size", -1, path, err)) &&
        !(rc = cfg_int(c, meta, a, "block_count", "num_hidden_layers", -1, path, err)) &&
        !(rc = cfg_int(c, meta, a, "ssm.state_size", "state_size", -1, path, err)) &&
        !(rc = cfg_int(c, meta, a, "ssm.conv_kernel", "conv_kernel", -1, path, err)) &&
        !(rc = cfg_int(c, meta, a, "ssm.inner_size", "intermediate_size", -1, path, err)) &&
        !(rc = cfg_int(c, meta, a, "ssm.time_step_rank", "time_step_rank", -1, path, err)))
        rc = cfg_int(c, meta, a, "vocab_size", "vocab_size", (int)emb->shape[0], path, err);
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", a);
    *eps = json_object_get(meta, k);
    if (!rc && *eps && !json_is_number(*eps))
        rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: metadata '%s' must be a number", path, k);
    if (!rc)
        json_object_set_new(c, "layer_norm_epsilon", *eps ? json_copy((json_t *)*eps) : json_real(1e-5));
    return rc;
}

/* Mamba-2: transformers' Mamba2Config from the mamba2.* metadata.  llama.cpp
 * calls the head count ssm.time_step_rank and the inner size d_inner; its
 * graph gates before the grouped norm and clamps dt nowhere, transformers'
 * defaults (norm_before_gate false, time_step_limit (0, inf)). */
static int cfg_mamba2(json_t *c, const json_t *meta, const char *path, ssmd_err *err)
{
    int rc = cfg_int(c, meta, "mamba2", "ssm.group_count", "n_groups", 1, path, err);
    json_int_t d = json_integer_value(json_object_get(c, "hidden_size"));
    json_int_t e = json_integer_value(json_object_get(c, "intermediate_size"));
    json_int_t h = json_integer_value(json_object_get(c, "time_step_rank"));
    if (!rc && (d < 1 || h < 1 || e < 1 || e % h))
        rc = ssmd_err_set(err, SSMD_EFORMAT,
                          "%s: 'mamba2.ssm.inner_size' %lld is not a multiple of the head count "
                          "'mamba2.ssm.time_step_rank' %lld", path, (long long)e, (long long)h);
    if (rc)
        return rc;
    json_object_set_new(c, "model_type", json_string("mamba2"));
    json_object_set_new(c, "num_heads", json_integer(h));
    json_object_set_new(c, "head_dim", json_integer(e / h));
    /* half a channel over, so that the family's floor(expand * hidden) is e */
    json_object_set_new(c, "expand", json_real(((double)e + 0.5) / (double)d));
    json_object_del(c, "intermediate_size");
    json_object_del(c, "time_step_rank");
    return SSMD_OK;
}

/* The config.json of the model, from its metadata. */
static int make_config(eng_weights *w, const gguf_arch *arch, const json_t *meta, const char *path,
                       ssmd_err *err)
{
    json_t *c = json_object();
    const json_t *eps = NULL;
    int rc = cfg_shape(c, w, meta, arch->name, path, &eps, err);
    if (!rc && arch == &archs[1]) {
        rc = cfg_mamba2(c, meta, path, err);
    } else if (!rc) {
        /* Falcon-Mamba: dt, B and C normalised with the model's eps */
        int falcon = json_is_true(json_object_get(meta, "mamba.ssm.dt_b_c_rms"));
        json_object_set_new(c, "model_type", json_string(falcon ? "falcon_mamba" : "mamba"));
        if (falcon)
            json_object_set_new(c, "mixer_rms_eps", eps ? json_copy((json_t *)eps) : json_real(1e-5));
    }
    if (rc) {
        json_decref(c);
        return rc;
    }
    cfg_common(c, w, meta);
    eng_weights_set_config(w, c);
    return SSMD_OK;
}

/* ---- tokenizer ------------------------------------------------------------------------ */

/* tokenizer.ggml.pre names whose pre-tokenizer is GPT-2's byte-level regex
 * (the tokenizer of the GPT-NeoX-based Mamba checkpoints); absent counts. */
static const char *const gpt2_pre[] = {"default", "gpt-2", "gpt2", "olmo", "pythia", "gpt-neox"};

/* The tokenizer.json of a "gpt2" (byte-level BPE) tokenizer from
 * tokenizer.ggml.*: every token in the vocab, CONTROL tokens (type 3) as
 * special added tokens and USER_DEFINED ones (4) as plain added tokens;
 * NFC, byte-level pre-tokenizer and decoder as in GPT-NeoX's
 * tokenizer.json.  No tokenizer.ggml.model, or llama.cpp's "no_vocab" /
 * "none": no tokenizer (token-id prompts). */
static int make_tokenizer(eng_weights *w, const json_t *meta, const char *path, ssmd_err *err)
{
    const json_t *model = json_object_get(meta, "tokenizer.ggml.model");
    if (!model || (json_is_string(model) && (!strcmp(json_string_value(model), "no_vocab") ||
                                             !strcmp(json_string_value(model), "none"))))
        return SSMD_OK;
    if (!json_is_string(model) || strcmp(json_string_value(model), "gpt2") != 0)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED, "%s: 'tokenizer.ggml.model' %s%.64s%s is not "
                            "supported (have: gpt2)", path, json_is_string(model) ? "\"" : "",
                            json_is_string(model) ? json_string_value(model) : "(not a string)",
                            json_is_string(model) ? "\"" : "");
    const json_t *pre = json_object_get(meta, "tokenizer.ggml.pre");
    size_t k = 0;
    while (json_is_string(pre) && k < sizeof gpt2_pre / sizeof gpt2_pre[0] &&
           strcmp(gpt2_pre[k], json_string_value(pre)))
        k++;
    if (pre && k == sizeof gpt2_pre / sizeof gpt2_pre[0])
        return ssmd_err_set(err, SSMD_EUNSUPPORTED, "%s: 'tokenizer.ggml.pre' %s%.64s%s is not "
                            "supported (GPT-2's byte-level pre-tokenizer only)", path,
                            json_is_string(pre) ? "\"" : "",
                            json_is_string(pre) ? json_string_value(pre) : "(not a string)",
                            json_is_string(pre) ? "\"" : "");
    const json_t *tokens = json_object_get(meta, "tokenizer.ggml.tokens");
    const json_t *merges = json_object_get(meta, "tokenizer.ggml.merges");
    const json_t *types = json_object_get(meta, "tokenizer.ggml.token_type");
    if (!json_is_array(tokens) || !json_array_size(tokens) || (merges && !json_is_array(merges)) ||
        (types && (!json_is_array(types) || json_array_size(types) != json_array_size(tokens))))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: 'tokenizer.ggml.tokens', '.merges' or "
                            "'.token_type' is missing or malformed", path);
    json_t *vocab = json_object(), *added = json_array();
    for (size_t i = 0; i < json_array_size(tokens); i++) {
        const json_t *tok = json_array_get(tokens, i);
        if (!json_is_string(tok)) {
            json_decref(vocab), json_decref(added);
            return ssmd_err_set(err, SSMD_EFORMAT, "%s: token %zu is not a string", path, i);
        }
        json_object_set_new(vocab, json_string_value(tok), json_integer((json_int_t)i));
        json_int_t type = types ? json_integer_value(json_array_get(types, i)) : 1;
        if (type == 3 || type == 4)
            json_array_append_new(added,
                                  json_pack("{s:I, s:O, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)i,
                                            "content", tok, "single_word", 0, "lstrip", 0,
                                            "rstrip", 0, "normalized", type == 4, "special",
                                            type == 3));
    }
    json_t *merge_list = merges ? json_incref((json_t *)merges) : json_array();
    json_t *byte_level = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space",
                                   0, "trim_offsets", 1, "use_regex", 1);
    json_t *t = json_pack("{s:{s:s}, s:O, s:O, s:o, s:{s:s, s:o, s:o, s:b, s:b, s:n},"
                          " s:o}",
                          "normalizer", "type", "NFC", "pre_tokenizer", byte_level, "decoder",
                          byte_level, "post_processor", json_null(), "model", "type", "BPE",
                          "vocab", vocab, "merges", merge_list,
                          "byte_fallback", 0, "ignore_merges", 0, "unk_token", "added_tokens",
                          added);
    json_decref(byte_level);
    if (!t)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: cannot build its tokenizer", path);
    eng_weights_set_tokenizer(w, t);
    return SSMD_OK;
}

/* ---- the source --------------------------------------------------------------------- */

/* A model given as one regular file is a GGUF file (its magic is checked
 * when it is read, so a wrong file gets this source's message). */
static int gguf_probe(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static void gguf_close(void *priv)
{
    gguf_source *src = priv;
    if (!src)
        return;
    eng_file_unmap(&src->file);
    for (int i = 0; i < src->n_owned; i++)
        free(src->owned[i]);
    free(src->owned);
    free(src);
}

/* Header, metadata, tensor infos; then every tensor placed in the data
 * section and checked to lie inside the file. */
static int gguf_parse(eng_weights *w, gguf_source *src, json_t *meta, const gguf_arch **arch_out,
                      ssmd_err *err)
{
    gguf_reader r = {src->file.map, src->file.size, 4, src->file.path, err, NULL};
    if (memcmp(r.p, "GGUF", 4) != 0)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: not a GGUF file (no \"GGUF\" magic)", r.path);
    uint32_t version;
    uint64_t n_tensors, n_kv;
    int rc;
    if ((rc = rd_u32(&r, &version, "the version")))
        return rc;
    if (version != 2 && version != 3)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED, "%s: GGUF version %u is not supported (2 or 3)",
                            r.path, version);
    if ((rc = rd_u64(&r, &n_tensors, "the tensor count")) ||
        (rc = rd_u64(&r, &n_kv, "the metadata count")) || (rc = rd_metadata(&r, n_kv, meta)))
        return rc;
    const json_t *arch = json_object_get(meta, "general.architecture");
    for (size_t i = 0; i < sizeof archs / sizeof archs[0] && json_is_string(arch); i++)
        if (!strcmp(json_string_value(arch), archs[i].name))
            r.arch = &archs[i];
    if (!r.arch)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                            "%s: 'general.architecture' %s%.64s%s is not supported (have: mamba, "
                            "mamba2)", r.path, json_is_string(arch) ? "\"" : "",
                            json_is_string(arch) ? json_string_value(arch) : "(missing)",
                            json_is_string(arch) ? "\"" : "");
    *arch_out = r.arch;
    const json_t *al = json_object_get(meta, "general.alignment");
    json_int_t align = json_is_integer(al) ? json_integer_value(al) : 32;
    if (align < 1 || align > 65536 || (align & (align - 1)))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: 'general.alignment' %lld is not a power of two",
                            r.path, (long long)align);
    if (n_tensors > r.len / 24) /* a tensor info takes at least 24 bytes */
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: %llu tensors cannot fit in the file", r.path,
                            (unsigned long long)n_tensors);
    uint64_t *offs = xcalloc(n_tensors ? n_tensors : 1, sizeof *offs);
    uint64_t *ends = xcalloc(n_tensors ? n_tensors : 1, sizeof *ends);
    for (uint64_t i = 0; !rc && i < n_tensors; i++)
        rc = rd_tensor(&r, w, src, &offs[i], &ends[i]);
    uint64_t data = (r.pos + (uint64_t)align - 1) / (uint64_t)align * (uint64_t)align;
    for (uint64_t i = 0; !rc && i < n_tensors; i++) {
        eng_tensor *t = (eng_tensor *)eng_weights_at(w, (int)i); /* unsorted yet: add order */
        if (offs[i] % (uint64_t)align || ends[i] < offs[i] || data > r.len ||
            ends[i] > r.len - data)
            rc = ssmd_err_set(err, SSMD_EFORMAT,
                              "%s: tensor '%s': bytes [%llu, %llu) of the data section are "
                              "misaligned or beyond the end of the file", r.path, t->name,
                              (unsigned long long)offs[i], (unsigned long long)ends[i]);
        else
            t->data = r.p + data + offs[i];
        if (!rc && strstr(t->name, "mixer.A_log"))
            rc = a_to_a_log(src, t, r.path, err);
    }
    free(offs);
    free(ends);
    return rc ? rc : eng_weights_finish(w, err);
}

static int gguf_load(eng_weights *w, const char *path, void **priv, ssmd_err *err)
{
    gguf_source *src = xcalloc(1, sizeof *src);
    *priv = src;
    eng_weights_set_origin(w, path);
    int rc = eng_file_map(path, GGUF_MIN_BYTES, "GGUF", "", &src->file, err);
    if (rc)
        return rc;
    json_t *meta = json_object();
    const gguf_arch *arch = NULL;
    if (!(rc = gguf_parse(w, src, meta, &arch, err)) && !(rc = make_config(w, arch, meta, path, err)))
        rc = make_tokenizer(w, meta, path, err);
    json_decref(meta);
    return rc;
}

const eng_weights_source eng_gguf_source = {
    .name = "gguf",
    .probe = gguf_probe,
    .load = gguf_load,
    .close = gguf_close,
};
