/* postproc.h - the post_processor of a tokenizer.json, for one sequence:
 * the special tokens TemplateProcessing (or Bert/RobertaProcessing) puts
 * before and after the ids when encode is asked to add them (BOS/EOS).
 * ByteLevel post-processing changes no id.  Read-only after load.
 */
#ifndef SSMD_POSTPROC_H
#define SSMD_POSTPROC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"

typedef struct eng_postproc {
    int32_t *prefix; /* (n_prefix) ids before the sequence */
    size_t n_prefix;
    int32_t *suffix; /* (n_suffix) ids after it */
    size_t n_suffix;
} eng_postproc;

/* Reads "post_processor" (NULL or null: none).  Returns SSMD_OK, or
 * SSMD_EFORMAT / SSMD_EUNSUPPORTED with err->msg naming the file and the
 * component (p is then empty: free it anyway). */
int eng_postproc_load(eng_postproc *p, const json_t *j, const char *path, ssmd_err *err);
void eng_postproc_free(eng_postproc *p);

#endif
