/* state_pool.h - the recurrent states of all sequences, one slot each, in
 * the model's backend memory (host for cpu, device for cuda).
 *
 * A slot holds everything a sequence needs to continue: per layer the conv
 * window and the SSM state, fp32.  Which slot belongs to which session is the
 * session table's business, not the pool's.  Engine thread only.
 */
#ifndef SSMD_STATE_POOL_H
#define SSMD_STATE_POOL_H

#include <stddef.h>

#include "engine/error.h"
#include "engine/model.h"

/* Allocates n_slots zeroed states for model m.  Returns SSMD_OK or
 * SSMD_ENOMEM with a message giving the bytes asked for. */
int eng_state_pool_create(eng_model *m, int n_slots, eng_state_pool **out, ssmd_err *err);
void eng_state_pool_destroy(eng_state_pool *p);

int eng_state_pool_n_slots(const eng_state_pool *p);
size_t eng_state_pool_slot_bytes(const eng_state_pool *p);

void eng_state_slot_zero(eng_state_pool *p, int slot);
void eng_state_slot_copy(eng_state_pool *p, int dst_slot, int src_slot);
/* Copies a slot's state out to / in from host memory of slot_bytes bytes
 * (the layout is the model's; proto/ documents it for export). */
void eng_state_slot_read(const eng_state_pool *p, int slot, void *dst);
void eng_state_slot_write(eng_state_pool *p, int slot, const void *src);

/* For the engine's forward code only: the pool's model, and slot's state in
 * backend memory (not dereferenceable on the host for non-cpu backends). */
eng_model *eng_state_pool_model(const eng_state_pool *p);
float *eng_state_slot_ptr(const eng_state_pool *p, int slot);

#endif
