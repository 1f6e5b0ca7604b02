/* postproc.c - the post-processors of postproc.h.  Only the single-sequence
 * template matters to ssmd (pairs are never encoded), so that is all that is
 * kept.  Must never be written after load.
 */
#include "engine/text/postproc.h"

#include <string.h>

#include "engine/text/json_util.h"
#include "engine/xalloc.h"

static void push_ids(int32_t **v, size_t *n, const int32_t *ids, size_t k)
{
    *v = xrealloc(*v, (*n + k) * sizeof **v);
    memcpy(*v + *n, ids, k * sizeof *ids);
    *n += k;
}

/* Reads an id that must be an integer in 0..2^24. */
static int id_of(const json_t *v, int32_t *id)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= (1 << 24))
        return 0;
    *id = (int32_t)json_integer_value(v);
    return 1;
}

static int load_template(eng_postproc *p, const json_t *j, const char *path, ssmd_err *err)
{
    const json_t *single = json_object_get(j, "single"), *specials = json_object_get(j, "special_tokens");
    if (!json_is_array(single))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: TemplateProcessing has no \"single\" list",
                            path);
    int seen_seq = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
        const json_t *item = json_array_get(single, i);
        if (json_object_get(item, "Sequence")) {
            seen_seq = 1;
            continue;
        }
        const char *name = eng_json_str(json_object_get(item, "SpecialToken"), "id", NULL);
        const json_t *ids = json_object_get(json_object_get(specials, name ? name : ""), "ids");
        if (!name || !json_is_array(ids))
            return ssmd_err_set(err, SSMD_EFORMAT, "%s: TemplateProcessing single[%zu] names no "
                                "special token with ids", path, i);
        for (size_t k = 0; k < json_array_size(ids); k++) {
            int32_t id;
            if (!id_of(json_array_get(ids, k), &id))
                return ssmd_err_set(err, SSMD_EFORMAT, "%s: TemplateProcessing special token "
                                    "\"%.64s\" has a bad id", path, name);
            if (seen_seq)
                push_ids(&p->suffix, &p->n_suffix, &id, 1);
            else
                push_ids(&p->prefix, &p->n_prefix, &id, 1);
        }
    }
    return SSMD_OK;
}

static int load_one_cb(void *obj, const json_t *j, const char *path, ssmd_err *err);

static int load_one(eng_postproc *p, const json_t *j, const char *path, ssmd_err *err)
{
    const char *type = eng_json_str(j, "type", "");
    if (strcmp(type, "ByteLevel") == 0)
        return SSMD_OK;
    if (strcmp(type, "TemplateProcessing") == 0)
        return load_template(p, j, path, err);
    if (strcmp(type, "BertProcessing") == 0 || strcmp(type, "RobertaProcessing") == 0) {
        int32_t cls, sep;
        if (!id_of(json_array_get(json_object_get(j, "cls"), 1), &cls) ||
            !id_of(json_array_get(json_object_get(j, "sep"), 1), &sep))
            return ssmd_err_set(err, SSMD_EFORMAT, "%s: %s needs cls and sep [token, id] pairs",
                                path, type);
        push_ids(&p->prefix, &p->n_prefix, &cls, 1);
        push_ids(&p->suffix, &p->n_suffix, &sep, 1);
        return SSMD_OK;
    }
    if (strcmp(type, "Sequence") == 0)
        return eng_json_sequence(p, j, "processors", "post_processor", load_one_cb, path, err);
    return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                        "%s: post_processor \"%.64s\" is not supported (TemplateProcessing, "
                        "BertProcessing, RobertaProcessing, ByteLevel and Sequence are)", path,
                        type);
}

static int load_one_cb(void *obj, const json_t *j, const char *path, ssmd_err *err)
{
    return load_one((eng_postproc *)obj, j, path, err);
}

int eng_postproc_load(eng_postproc *p, const json_t *j, const char *path, ssmd_err *err)
{
    memset(p, 0, sizeof *p);
    if (!j || json_is_null(j))
        return SSMD_OK;
    if (!json_is_object(j))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: post_processor is not an object", path);
    return load_one(p, j, path, err);
}

void eng_postproc_free(eng_postproc *p)
{
    free(p->prefix);
    free(p->suffix);
    memset(p, 0, sizeof *p);
}
