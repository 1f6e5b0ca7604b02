/* state_pool.c - the recurrent states of all sequences: one backend
 * allocation of n_slots equal slots (see state_pool.h).  Knows nothing of
 * what a state holds; the model's architecture defines the layout.
 */
#include "engine/state_pool.h"

#include <stdlib.h>

#include "engine/backend.h"

struct eng_state_pool {
    eng_model *model;         /* borrowed: the pool is only valid with it */
    bk_backend *bk;           /* the model's backend */
    float *states;            /* (n_slots, slot_floats) backend memory */
    int n_slots;
    size_t slot_floats;
};

int eng_state_pool_create(eng_model *m, int n_slots, eng_state_pool **out, ssmd_err *err)
{
    if (n_slots < 1)
        return ssmd_err_set(err, SSMD_EINVAL, "state pool needs at least one slot");
    eng_state_pool *p = calloc(1, sizeof *p);
    if (!p)
        return ssmd_err_set(err, SSMD_ENOMEM, "out of memory");
    p->model = m;
    p->n_slots = n_slots;
    p->slot_floats = eng_model_state_bytes(m) / sizeof(float);
    size_t bytes = (size_t)n_slots * p->slot_floats * sizeof(float);
    p->bk = eng_model_backend(m);
    p->states = p->bk->alloc(p->bk, bytes);
    if (!p->states) {
        ssmd_err_set(err, SSMD_ENOMEM,
                     "%s backend: cannot allocate %zu bytes for %d session states (%zu each); "
                     "lower --max-sessions",
                     p->bk->name, bytes, n_slots, eng_model_state_bytes(m));
        free(p);
        return SSMD_ENOMEM;
    }
    *out = p;
    return SSMD_OK;
}

void eng_state_pool_destroy(eng_state_pool *p)
{
    if (!p)
        return;
    p->bk->release(p->bk, p->states);
    free(p);
}

int eng_state_pool_n_slots(const eng_state_pool *p) { return p->n_slots; }
size_t eng_state_pool_slot_bytes(const eng_state_pool *p) { return p->slot_floats * sizeof(float); }

static float *slot_at(const eng_state_pool *p, int slot)
{
    return p->states + (size_t)slot * p->slot_floats;
}

void eng_state_slot_zero(eng_state_pool *p, int slot)
{
    p->bk->zero(p->bk, slot_at(p, slot), eng_state_pool_slot_bytes(p));
}

void eng_state_slot_copy(eng_state_pool *p, int dst_slot, int src_slot)
{
    if (dst_slot != src_slot)
        p->bk->copy(p->bk, slot_at(p, dst_slot), slot_at(p, src_slot),
                           eng_state_pool_slot_bytes(p));
}

void eng_state_slot_read(const eng_state_pool *p, int slot, void *dst)
{
    p->bk->read(p->bk, dst, slot_at(p, slot), eng_state_pool_slot_bytes(p));
}

void eng_state_slot_write(eng_state_pool *p, int slot, const void *src)
{
    p->bk->write(p->bk, slot_at(p, slot), src, eng_state_pool_slot_bytes(p));
}

eng_model *eng_state_pool_model(const eng_state_pool *p) { return p->model; }

float *eng_state_slot_ptr(const eng_state_pool *p, int slot) { return slot_at(p, slot); }
