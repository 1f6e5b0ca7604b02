/* sched_tier.c - the host tier of sessions.  The state pool holds
 * max_sessions session states (device memory on a GPU backend).  When it
 * is full and a session needs a slot, the least recently used idle session
 * moves to host memory instead of being dropped: its table entry goes to a
 * second session table (s->host), its state bytes to a malloc'ed copy.  It
 * moves back on its next request, a copy of state_bytes.  The host tier is
 * bounded by --host-session-memory; beyond it the least recently used host
 * session is dropped, the last resort (with a session store, Redis still
 * holds every session and the server loads it back from there).
 *
 * A session lives in exactly one tier.  Engine thread only; never runs the
 * model.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sched_internal.h"
#include "engine/xalloc.h"

int eng_sched_tier_init(eng_sched *s, ssmd_err *err)
{
    memset(&s->host, 0, sizeof s->host);
    size_t per = s->info.state_bytes ? s->info.state_bytes : 1;
    size_t cap = s->opts.host_session_bytes / per;
    if (cap > 1000000) /* the table is scanned linearly: keep it a table */
        cap = 1000000;
    if (cap == 0)
        return SSMD_OK;
    int rc = eng_session_table_init(&s->host, (int)cap, err);
    if (rc != SSMD_OK)
        return rc;
    s->host_states = xcalloc(cap, sizeof *s->host_states);
    return SSMD_OK;
}

void eng_sched_tier_free(eng_sched *s)
{
    for (int i = 0; i < s->host.capacity; i++)
        free(s->host_states[i]);
    free(s->host_states);
    s->host_states = NULL;
    eng_session_table_free(&s->host);
}

static void count(eng_sched *s, uint64_t *counter)
{
    pthread_mutex_lock(&s->lock);
    (*counter)++;
    pthread_mutex_unlock(&s->lock);
}

/* Moves device session idx (idle) to the host tier, or drops it when the
 * host tier has no room at all; its device entry is free after. */
static void park(eng_sched *s, int idx)
{
    const eng_session *ss = &s->sessions.entries[idx];
    int evicted = -1, h = -1;
    if (s->host.capacity > 0)
        h = eng_session_create(&s->host, ss->id, ss->last_used_s, &evicted, NULL);
    if (h >= 0) {
        if (evicted >= 0) /* the host tier's least recently used: gone */
            count(s, &s->stats.sessions_dropped);
        s->host.entries[h] = *ss; /* every field: id, tokens, pending, version, history, times */
        if (!s->host_states[h]) /* an evicted session's buffer is reused */
            s->host_states[h] = xmalloc(s->info.state_bytes);
        eng_state_slot_read(s->pool, idx, s->host_states[h]);
        count(s, &s->stats.sessions_to_host);
    } else {
        count(s, &s->stats.sessions_dropped);
    }
    eng_session_remove(&s->sessions, idx);
}

int eng_sched_tier_make_room(eng_sched *s, ssmd_err *err)
{
    eng_session_table *t = &s->sessions;
    if (t->n_live < t->capacity)
        return SSMD_OK;
    int lru = eng_session_lru_idle(t);
    if (lru < 0)
        return ssmd_err_set(err, SSMD_EFULL, "all %d sessions are busy", t->capacity);
    park(s, lru);
    return SSMD_OK;
}

int eng_sched_tier_unpark(eng_sched *s, const char *id, ssmd_err *err)
{
    int h = s->host.capacity > 0 ? eng_session_find(&s->host, id, NULL) : -1;
    if (h < 0)
        return -1;
    /* out of the host table first, so that making room (which may park
     * another session there, evicting the host's oldest) cannot drop it */
    eng_session keep = s->host.entries[h];
    unsigned char *state = s->host_states[h];
    s->host_states[h] = NULL;
    eng_session_remove(&s->host, h);
    int idx = eng_sched_tier_make_room(s, err) == SSMD_OK
                  ? eng_session_create(&s->sessions, keep.id, keep.last_used_s, NULL, err)
                  : -1;
    if (idx < 0) { /* every device session busy: it stays on the host */
        h = eng_session_create(&s->host, keep.id, keep.last_used_s, NULL, NULL);
        s->host.entries[h] = keep;
        free(s->host_states[h]);
        s->host_states[h] = state;
        return -2;
    }
    s->sessions.entries[idx] = keep;
    eng_state_slot_write(s->pool, idx, state);
    free(state);
    count(s, &s->stats.sessions_from_host);
    return idx;
}

int eng_sched_tier_must_wait(const eng_sched *s, const char *id)
{
    const eng_session_table *t = &s->sessions;
    if (s->host.capacity == 0 || t->n_live < t->capacity || eng_session_lru_idle(t) >= 0)
        return 0;
    return eng_session_find(&s->host, id, NULL) >= 0 && eng_session_find(t, id, NULL) < 0;
}

void eng_sched_tier_expire(eng_sched *s, double now_s)
{
    if (s->host.capacity == 0 || eng_session_expire(&s->host, now_s, s->opts.session_ttl_s) == 0)
        return;
    for (int i = 0; i < s->host.capacity; i++)
        if (!s->host.entries[i].in_use && s->host_states[i]) {
            free(s->host_states[i]);
            s->host_states[i] = NULL;
        }
}
