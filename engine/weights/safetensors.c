/* safetensors.c - opens, validates and memory-maps the safetensors weights of
 * a model directory (one file, or shards listed by an index).
 *
 * Layout of a file: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__"},
 * then the data section; offsets are relative to its start (byte 8 + N).
 *
 * Tensor bytes are used in place; only a tensor that the file leaves
 * misaligned for its element type is copied once (to keep typed reads legal).
 * Everything a header claims is checked at open, so that nothing handed out
 * afterwards can point outside its file.  This file must never trust a
 * number read from a file before checking it, never write through the map
 * (it is PROT_READ), and never know about any model architecture.
 * (A file truncated by someone else while mapped still raises SIGBUS: no
 * loader can prevent that.)
 */
#include "engine/tensor.h"
#include "engine/weights/weights.h"
#include "engine/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensor bytes are used in place as host floats: safetensors is little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; a big-endian host needs byte swapping here"
#endif

#define ST_HEADER_MAX_BYTES (100u << 20) /* a sane header is a few hundred KB */
#define ST_SINGLE_NAME "model.safetensors"
#define ST_INDEX_NAME "model.safetensors.index.json"

typedef eng_mapped_file st_file;

/* What this source keeps open while the weights live: the maps. */
typedef struct st_source {
    st_file *files;      /* (n_files) */
    int n_files;
} st_source;

/* ---- small helpers --------------------------------------------------------- */

static char *st_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = xrealloc(NULL, a + b + 2);
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

typedef struct st_dtype_row {
    const char *name;
    eng_dtype dtype;
    unsigned size; /* bytes per element */
} st_dtype_row;

static const st_dtype_row st_dtypes[] = {
    {"F32", ENG_DTYPE_F32, 4},    {"F16", ENG_DTYPE_F16, 2},      {"BF16", ENG_DTYPE_BF16, 2},
    {"F64", ENG_DTYPE_OTHER, 8},  {"I64", ENG_DTYPE_OTHER, 8},    {"I32", ENG_DTYPE_OTHER, 4},
    {"I16", ENG_DTYPE_OTHER, 2},  {"I8", ENG_DTYPE_OTHER, 1},     {"U64", ENG_DTYPE_OTHER, 8},
    {"U32", ENG_DTYPE_OTHER, 4},  {"U16", ENG_DTYPE_OTHER, 2},    {"U8", ENG_DTYPE_OTHER, 1},
    {"BOOL", ENG_DTYPE_OTHER, 1}, {"F8_E4M3", ENG_DTYPE_OTHER, 1}, {"F8_E5M2", ENG_DTYPE_OTHER, 1},
};

/* The row for a dtype name, or NULL for one we do not know (size unchecked). */
static const st_dtype_row *st_dtype_find(const char *name)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, name) == 0)
            return &st_dtypes[i];
    return NULL;
}

/* ---- one file ----------------------------------------------------------------- */

static int st_file_map(st_file *f, const char *path, const char *listed_in, ssmd_err *err)
{
    char why[160] = "";
    if (listed_in)
        snprintf(why, sizeof why, " (shard listed in %s)", listed_in);
    return eng_file_map(path, 8, "safetensors", why, f, err);
}

static void st_file_unmap(st_file *f) { eng_file_unmap(f); }

/* A JSON integer >= 0, into *out; 0 when v is anything else. */
static int st_json_uint(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

/* Validates one header entry and fills t (name and file are set by caller).
 * data: start of the data section, data_size bytes long. */
static int st_entry_parse(const char *path, const char *name, json_t *v, const uint8_t *data,
                          uint64_t data_size, eng_tensor *t, ssmd_err *err)
{
    if (!json_is_object(v))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: tensor '%s': entry is not a JSON object",
                            path, name);
    json_t *jd = json_object_get(v, "dtype");
    json_t *js = json_object_get(v, "shape");
    json_t *jo = json_object_get(v, "data_offsets");
    if (!jd || !js || !jo)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: tensor '%s': entry has no '%s'", path, name,
                            !jd ? "dtype" : !js ? "shape" : "data_offsets");
    if (!json_is_string(jd))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: tensor '%s': 'dtype' is not a string", path,
                            name);
    if (!json_is_array(js))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: tensor '%s': 'shape' is not an array", path,
                            name);
    uint64_t begin, end;
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        !st_json_uint(json_array_get(jo, 0), &begin) || !st_json_uint(json_array_get(jo, 1), &end))
        return ssmd_err_set(err, SSMD_EFORMAT,
                            "%s: tensor '%s': 'data_offsets' must be [begin, end], two "
                            "non-negative integers", path, name);

    const char *dname = json_string_value(jd);
    const st_dtype_row *row = st_dtype_find(dname);
    t->dtype = row ? row->dtype : ENG_DTYPE_OTHER;
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dname); /* unknown ones may truncate */

    size_t ndim = json_array_size(js);
    if (ndim > ENG_TENSOR_MAX_DIMS)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: tensor '%s': %zu dimensions, at most %d supported",
                            path, name, ndim, ENG_TENSOR_MAX_DIMS);
    t->ndim = (int)ndim;
    t->numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < ndim; i++) {
        uint64_t d;
        if (!st_json_uint(json_array_get(js, i), &d))
            return ssmd_err_set(err, SSMD_EFORMAT,
                                "%s: tensor '%s': shape dimension %zu is not a non-negative integer",
                                path, name, i);
        t->shape[i] = (int64_t)d; /* json_int_t is 64-bit and was >= 0 */
        if (d != 0 && (uint64_t)t->numel > (uint64_t)INT64_MAX / d)
            overflow = 1;
        else
            t->numel *= (int64_t)d;
    }
    char sh[160];
    eng_shape_str(sh, sizeof sh, t->ndim, t->shape);
    if (overflow) {
        /* A zero dimension after an overflowing prefix still means 0 elements,
         * but no real file does that: reject it as corrupt. */
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: tensor '%s': shape %s overflows 64-bit size",
                            path, name, sh);
    }
    if (begin > end)
        return ssmd_err_set(err, SSMD_EFORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] begin after end", path,
                            name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return ssmd_err_set(err, SSMD_EFORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] outside the data section "
                            "(%llu bytes)", path, name, (unsigned long long)begin,
                            (unsigned long long)end, (unsigned long long)data_size);
    t->nbytes = end - begin;
    if (row) {
        /* numel * size in 128-bit-free form: compare through a division. */
        uint64_t n = (uint64_t)t->numel;
        if (n > t->nbytes / row->size || n * row->size != t->nbytes)
            return ssmd_err_set(err, SSMD_EFORMAT,
                                "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but "
                                "shape %s of %s needs %llu", path, name,
                                (unsigned long long)begin, (unsigned long long)end,
                                (unsigned long long)t->nbytes, sh, row->name,
                                n > UINT64_MAX / row->size ? (unsigned long long)UINT64_MAX
                                                           : (unsigned long long)(n * row->size));
    }
    t->data = data + begin;
    return SSMD_OK;
}

/* Maps file `path` and appends its tensors to w.  listed_in: the index that
 * named this shard, or NULL. */
static int st_file_load(eng_weights *w, st_source *src, const char *path, const char *listed_in,
                        ssmd_err *err)
{
    src->files = xrealloc(src->files, (size_t)(src->n_files + 1) * sizeof *src->files);
    st_file *f = &src->files[src->n_files];
    memset(f, 0, sizeof *f);
    int rc = st_file_map(f, path, listed_in, err);
    if (rc != SSMD_OK)
        return rc;
    src->n_files++; /* mapped: closed with w from now on */

    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | f->map[i];
    uint64_t avail = (uint64_t)f->size - 8;
    if (n > avail)
        return ssmd_err_set(err, SSMD_EFORMAT,
                            "%s: header length %llu beyond end of file (%zu bytes)", path,
                            (unsigned long long)n, f->size);
    if (n > ST_HEADER_MAX_BYTES)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: header length %llu exceeds the %u MB limit",
                            path, (unsigned long long)n, ST_HEADER_MAX_BYTES >> 20);

    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->map + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: bad JSON header at line %d, column %d: %s",
                            path, jerr.line, jerr.column, jerr.text);
    rc = SSMD_OK;
    if (!json_is_object(root)) {
        rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: header is not a JSON object", path);
        goto out;
    }
    const uint8_t *data = f->map + 8 + n;
    uint64_t data_size = avail - n;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) {
                rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: '__metadata__' is not a JSON object",
                                  path);
                goto out;
            }
            continue;
        }
        eng_tensor *t = eng_weights_add(w, key);
        rc = st_entry_parse(path, key, v, data, data_size, t, err);
        if (rc != SSMD_OK)
            goto out;
        t->file = f->path;
    }
out:
    json_decref(root);
    return rc;
}

/* ---- the set of files ------------------------------------------------------------ */

static int st_str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard name from an index: a plain file name in the same directory. */
static int st_shard_name_ok(const char *s)
{
    return s[0] != '\0' && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..");
}

static int st_open_index(eng_weights *w, st_source *src, const char *dir, ssmd_err *err)
{
    const char *ipath = eng_weights_origin(w);
    json_error_t jerr;
    json_t *root = json_load_file(ipath, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_cannot_open_file)
            return ssmd_err_set(err, SSMD_EIO, "%s: %s", ipath, jerr.text);
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: bad JSON at line %d, column %d: %s", ipath,
                            jerr.line, jerr.column, jerr.text);
    }
    int rc = SSMD_OK;
    const char **names = NULL;
    json_t *map = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(map) || json_object_size(map) == 0) {
        rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: no 'weight_map' object listing the tensors",
                          ipath);
        goto out;
    }
    size_t n = json_object_size(map), k = 0;
    names = xrealloc(NULL, n * sizeof *names);
    const char *key;
    json_t *v;
    json_object_foreach(map, key, v) {
        if (!json_is_string(v) || !st_shard_name_ok(json_string_value(v))) {
            rc = ssmd_err_set(err, SSMD_EFORMAT,
                              "%s: tensor '%s': shard must be a file name in the model directory "
                              "(no '/' or '..')", ipath, key);
            goto out;
        }
        names[k++] = json_string_value(v);
    }
    qsort(names, n, sizeof *names, st_str_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0)
            continue;
        char *path = st_path_join(dir, names[i]);
        rc = st_file_load(w, src, path, ipath, err);
        free(path);
        if (rc != SSMD_OK)
            goto out;
    }
    rc = eng_weights_finish(w, err);
    if (rc != SSMD_OK)
        goto out;
    json_object_foreach(map, key, v) {
        const eng_tensor *t = eng_weights_find(w, key);
        const char *shard = json_string_value(v);
        const char *base = t ? strrchr(t->file, '/') + 1 : NULL; /* file = dir + '/' + shard */
        if (!t || strcmp(base, shard) != 0) {
            rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: tensor '%s': missing from shard %s%s%s",
                              ipath, key, shard, t ? ", found in " : "", t ? base : "");
            goto out;
        }
    }
out:
    free(names);
    json_decref(root);
    return rc;
}

static void st_close(void *priv)
{
    st_source *src = priv;
    if (!src)
        return;
    for (int i = 0; i < src->n_files; i++)
        st_file_unmap(&src->files[i]);
    free(src->files);
    free(src);
}

/* model.safetensors, or the shards of model.safetensors.index.json; the
 * fallback source, so its message says what is missing. */
static int st_load(eng_weights *w, const char *dir, void **priv, ssmd_err *err)
{
    st_source *src = xrealloc(NULL, sizeof *src);
    memset(src, 0, sizeof *src);
    *priv = src;
    int rc;
    struct stat sb;
    char *single = st_path_join(dir, ST_SINGLE_NAME);
    if (stat(single, &sb) == 0 || errno != ENOENT) {
        eng_weights_set_origin(w, single); /* exists (or fails otherwise): open reports why */
        rc = st_file_load(w, src, single, NULL, err);
        if (rc == SSMD_OK)
            rc = eng_weights_finish(w, err);
    } else {
        char *index = st_path_join(dir, ST_INDEX_NAME);
        eng_weights_set_origin(w, index);
        if (stat(index, &sb) != 0 && errno == ENOENT)
            rc = ssmd_err_set(err, SSMD_EIO, "%s: no %s or %s in the model directory", dir,
                              ST_SINGLE_NAME, ST_INDEX_NAME);
        else
            rc = st_open_index(w, src, dir, err);
        free(index);
    }
    free(single);
    return rc;
}

const eng_weights_source eng_safetensors_source = {
    .name = "safetensors",
    .probe = NULL,
    .load = st_load,
    .close = st_close,
};
