/* weights.c - the tensor table behind eng_weights (engine/tensor.h),
 * whatever source filled it, and the list of sources.
 *
 * A table is built by one source (weights.h), sorted once, then read-only:
 * lookups are a binary search by name.  Never knows any file format or
 * model architecture.
 */
#include "engine/weights/weights.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/xalloc.h"

struct eng_weights {
    char *origin;        /* owned: named in messages about the whole set */
    eng_tensor *tensors; /* (n_tensors) sorted by name once finished */
    int n_tensors, cap_tensors;
    void **copies;       /* (n_copies) aligned copies of misaligned tensors */
    int n_copies;
    const eng_weights_source *source;
    void *priv;          /* the source's open files */
    json_t *config;      /* the model's config from the file itself, or NULL */
    json_t *tokenizer;   /* its tokenizer as a tokenizer.json object, or NULL */
};

/* The sources, probed in order; the last one without a probe is the
 * fallback.  A GGUF reader goes before safetensors. */
static const eng_weights_source *const sources[] = {
    &eng_gguf_source,
    &eng_safetensors_source,
};

int eng_weights_open(const char *dir, eng_weights **out, ssmd_err *err)
{
    assert(dir && out);
    *out = NULL;
    eng_weights *w = xrealloc(NULL, sizeof *w);
    memset(w, 0, sizeof *w);
    for (size_t i = 0; i < sizeof sources / sizeof sources[0] && !w->source; i++)
        if (!sources[i]->probe || sources[i]->probe(dir))
            w->source = sources[i];
    int rc = w->source->load(w, dir, &w->priv, err);
    if (rc != SSMD_OK) {
        eng_weights_close(w);
        return rc;
    }
    *out = w;
    return SSMD_OK;
}

void eng_weights_close(eng_weights *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n_tensors; i++)
        free((char *)w->tensors[i].name);
    for (int i = 0; i < w->n_copies; i++)
        free(w->copies[i]);
    if (w->source)
        w->source->close(w->priv);
    json_decref(w->config);
    json_decref(w->tokenizer);
    free(w->copies);
    free(w->tensors);
    free(w->origin);
    free(w);
}

const json_t *eng_weights_config(const eng_weights *w) { return w->config; }
const json_t *eng_weights_tokenizer(const eng_weights *w) { return w->tokenizer; }

/* ---- for sources ------------------------------------------------------------- */

void eng_weights_set_config(eng_weights *w, json_t *config)
{
    json_decref(w->config);
    w->config = config;
}

void eng_weights_set_tokenizer(eng_weights *w, json_t *tokenizer)
{
    json_decref(w->tokenizer);
    w->tokenizer = tokenizer;
}

int eng_file_map(const char *path, size_t min_size, const char *format, const char *why,
                 eng_mapped_file *out, ssmd_err *err)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ssmd_err_set(err, SSMD_EIO, "%s: cannot open: %s%s", path, strerror(errno), why);
    struct stat sb;
    int rc = SSMD_OK;
    if (fstat(fd, &sb) != 0) {
        rc = ssmd_err_set(err, SSMD_EIO, "%s: cannot stat: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: not a regular file", path);
    } else if ((uint64_t)sb.st_size < min_size) {
        rc = ssmd_err_set(err, SSMD_EFORMAT,
                          "%s: file is %lld bytes, too short for a %s header (%zu bytes)", path,
                          (long long)sb.st_size, format, min_size);
    } else if ((uint64_t)sb.st_size > SIZE_MAX) {
        rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: file too large to map", path);
    } else {
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            rc = ssmd_err_set(err, SSMD_EIO, "%s: cannot mmap: %s", path, strerror(errno));
        } else {
            out->map = m;
            out->size = (size_t)sb.st_size;
            out->path = xstrdup(path);
        }
    }
    close(fd);
    return rc;
}

void eng_file_unmap(eng_mapped_file *f)
{
    if (f->map)
        munmap((void *)f->map, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

eng_tensor *eng_weights_add(eng_weights *w, const char *name)
{
    if (w->n_tensors == w->cap_tensors) {
        w->cap_tensors = w->cap_tensors ? 2 * w->cap_tensors : 64;
        w->tensors = xrealloc(w->tensors, (size_t)w->cap_tensors * sizeof *w->tensors);
    }
    eng_tensor *t = &w->tensors[w->n_tensors++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    return t;
}

void eng_weights_set_origin(eng_weights *w, const char *origin)
{
    free(w->origin);
    w->origin = xstrdup(origin);
}

const char *eng_weights_origin(const eng_weights *w) { return w->origin ? w->origin : "?"; }

static int tensor_cmp(const void *a, const void *b)
{
    return strcmp(((const eng_tensor *)a)->name, ((const eng_tensor *)b)->name);
}

static int name_cmp(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const eng_tensor *)elem)->name);
}

int eng_weights_finish(eng_weights *w, ssmd_err *err)
{
    if (w->n_tensors > 1)
        qsort(w->tensors, (size_t)w->n_tensors, sizeof *w->tensors, tensor_cmp);
    for (int i = 1; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i - 1].name, w->tensors[i].name) == 0)
            return ssmd_err_set(err, SSMD_EFORMAT, "%s: tensor '%s' appears twice (in %s and %s)",
                                eng_weights_origin(w), w->tensors[i].name, w->tensors[i - 1].file,
                                w->tensors[i].file);
    for (int i = 0; i < w->n_tensors; i++) {
        eng_tensor *t = &w->tensors[i];
        const eng_dtype_info *d = eng_dtype_info_of(t->dtype);
        /* plain types only: a block's fields are read bytewise */
        unsigned align = d->block_elems == 1 ? (unsigned)d->block_bytes : 0;
        if (align == 0 || t->nbytes == 0 || (uintptr_t)t->data % align == 0)
            continue;
        void *copy = xrealloc(NULL, (size_t)t->nbytes); /* malloc: max-aligned */
        memcpy(copy, t->data, (size_t)t->nbytes);
        w->copies = xrealloc(w->copies, (size_t)(w->n_copies + 1) * sizeof *w->copies);
        w->copies[w->n_copies++] = copy;
        t->data = copy;
    }
    return SSMD_OK;
}

const char *eng_shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < n)
        snprintf(buf + len, n - len, "]");
    return buf;
}

/* ---- lookups ------------------------------------------------------------------- */

const eng_tensor *eng_weights_find(const eng_weights *w, const char *name)
{
    if (w->n_tensors == 0)
        return NULL;
    return bsearch(name, w->tensors, (size_t)w->n_tensors, sizeof *w->tensors, name_cmp);
}

int eng_weights_get(const eng_weights *w, const char *name, int ndim, const int64_t *shape,
                    const eng_tensor **out, ssmd_err *err)
{
    assert(ndim >= 0 && ndim <= ENG_TENSOR_MAX_DIMS && (ndim == 0 || shape));
    *out = NULL;
    const eng_tensor *t = eng_weights_find(w, name);
    if (!t)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: missing tensor '%s'", eng_weights_origin(w),
                            name);
    if (t->dtype == ENG_DTYPE_OTHER)
        return ssmd_err_set(err, SSMD_EFORMAT,
                            "%s: tensor '%s': unsupported dtype %s (expected F32, F16 or BF16)",
                            t->file, name, t->dtype_name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char have[160], want[160];
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: tensor '%s': shape %s but expected %s",
                            t->file, name, eng_shape_str(have, sizeof have, t->ndim, t->shape),
                            eng_shape_str(want, sizeof want, ndim, shape));
    }
    *out = t;
    return SSMD_OK;
}

int eng_weights_count(const eng_weights *w) { return w->n_tensors; }

const eng_tensor *eng_weights_at(const eng_weights *w, int i)
{
    assert(i >= 0 && i < w->n_tensors);
    return &w->tensors[i];
}
