/* request.c - the plain structs the loop and engine threads exchange (see
 * request.h): requests and events made and freed, the event list an engine
 * iteration fills, and the two clocks.
 *
 * Must never queue, post or look inside a model: allocation and freeing
 * only, callable from any thread.
 */
#include "engine/request.h"

#include <stdlib.h>
#include <time.h>

#include "engine/sched_internal.h"
#include "engine/text/json_schema.h"
#include "engine/xalloc.h"

double eng_now_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int64_t eng_now_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

eng_request *eng_request_new(eng_op op)
{
    eng_request *r = xcalloc(1, sizeof *r);
    r->op = op;
    r->blob_pending = -1;
    r->n_choices = 1;
    eng_sampling_defaults(&r->sampling);
    atomic_init(&r->canceled, 0);
    return r;
}

void eng_request_free(eng_request *r)
{
    if (!r)
        return;
    free(r->prompt);
    free(r->prompt_lens);
    free(r->blob);
    eng_json_schema_free(r->json_schema);
    free(r);
}

void eng_event_free(eng_event *e)
{
    if (!e)
        return;
    free(e->text);
    free(e->blob);
    free(e);
}

eng_event *eng_evlist_add(eng_evlist *l, eng_event_kind kind, eng_request *r)
{
    eng_event *e = xcalloc(1, sizeof *e);
    e->kind = kind;
    e->req = r;
    if (l->tail)
        l->tail->next = e;
    else
        l->head = e;
    l->tail = e;
    return e;
}

void eng_evlist_error(eng_evlist *l, eng_request *r, const ssmd_err *err)
{
    eng_event *e = eng_evlist_add(l, ENG_EV_ERROR, r);
    e->err = *err;
}

void eng_evlist_error_code(eng_evlist *l, eng_request *r, int code, const char *msg)
{
    ssmd_err err;
    ssmd_err_set(&err, code, "%s", msg ? msg : ssmd_err_default_message(code));
    eng_evlist_error(l, r, &err);
}
