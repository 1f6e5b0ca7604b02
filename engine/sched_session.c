/* sched_session.c - the engine thread's session operations: create, info,
 * delete, fork, state export and import; the checks a request on a session
 * passes (unknown, busy, the session store's version tags); a completion
 * taking and releasing its session; TTL expiry.  A session found in the
 * host tier is brought back first, and making room for a new one moves the
 * least recently used idle session there (sched_tier.c).
 *
 * Engine thread only (eng_sched_each_session: after the thread ended).
 * Must never queue or admit completions, or run the model: it only moves
 * state-pool slots.
 */
#include <string.h>

#include "engine/sched_internal.h"
#include "engine/xalloc.h"

static void session_info(const eng_session *ss, eng_session_info *out)
{
    memcpy(out->id, ss->id, sizeof out->id);
    out->n_tokens = ss->n_tokens;
    out->pending = ss->pending;
    out->gen = ss->gen;
    out->created_s = ss->created_s;
    out->last_used_s = ss->last_used_s;
    out->hist = ss->hist;
}

/* Gives e session idx's info and a copy of its state bytes. */
static void attach_state(eng_sched *s, eng_event *e, int idx)
{
    session_info(&s->sessions.entries[idx], &e->info);
    e->blob_bytes = s->info.state_bytes;
    e->blob = xcalloc(1, e->blob_bytes);
    eng_state_slot_read(s->pool, idx, e->blob);
}

int eng_sched_session_find(eng_sched *s, eng_request *r, eng_evlist *out)
{
    ssmd_err err = {0};
    eng_session_table *t = &s->sessions;
    int idx = eng_session_find(t, r->session, &err);
    if (idx < 0) {
        ssmd_err full = {0};
        int back = eng_sched_tier_unpark(s, r->session, &full);
        if (back < 0) {
            eng_evlist_error(out, r, back == -2 ? &full : &err);
            return -1;
        }
        idx = back;
        r->from_host = 1;
    }
    if (t->entries[idx].busy) {
        eng_evlist_error_code(out, r, SSMD_ECONFLICT, "session is busy with a running completion");
        return -1;
    }
    if (r->expect_gen == ENG_GEN_DELETED) { /* deleted on another replica */
        eng_session_remove(t, idx);
        ssmd_err_set(&err, SSMD_ENOTFOUND, "no session with id '%s'", r->session);
        eng_evlist_error(out, r, &err);
        return -1;
    }
    if (r->expect_gen && t->entries[idx].gen != r->expect_gen) {
        eng_evlist_error_code(out, r, SSMD_ESTALE, "session changed on another replica");
        return -1;
    }
    return idx;
}

/* A new session (id: a client's choice, or NULL) with a free entry: the
 * least recently used idle one moves to the host tier first if needed.
 * Returns its index or the error code (err set). */
static int session_create(eng_sched *s, const char *id, double now, ssmd_err *err)
{
    int rc = eng_sched_tier_make_room(s, err);
    return rc != SSMD_OK ? rc : eng_session_create(&s->sessions, id, now, NULL, err);
}

/* An import's blob fits this model; else appends the error, returns 0. */
static int import_valid(eng_sched *s, eng_request *r, eng_evlist *out)
{
    if (r->blob_bytes != s->info.state_bytes || !r->blob) {
        eng_evlist_error_code(out, r, SSMD_EFORMAT, "state size does not match this model");
        return 0;
    }
    if (r->blob_pending < -1 || r->blob_pending >= s->info.n_vocab || r->blob_n_tokens < 0) {
        eng_evlist_error_code(out, r, SSMD_EFORMAT, "state header holds an invalid token");
        return 0;
    }
    return 1;
}

void eng_sched_session_run_op(eng_sched *s, eng_request *r, eng_evlist *out)
{
    ssmd_err err = {0};
    double now = eng_now_wall_s();
    eng_session_table *t = &s->sessions;
    int idx = -1, changed = -1; /* changed: the session whose state this op set */
    if (r->op == ENG_OP_STATE_IMPORT && !import_valid(s, r, out))
        return;
    if (r->op == ENG_OP_STATE_IMPORT && eng_session_find(t, r->session, NULL) < 0 &&
        eng_sched_tier_unpark(s, r->session, &err) == -1) {
        /* Importing a session this replica does not hold creates it (a
         * handoff from a draining peer, or the session store). */
        idx = session_create(s, r->session, now, &err);
        if (idx < 0) {
            eng_evlist_error(out, r, &err);
            return;
        }
    } else if (r->op != ENG_OP_SESSION_CREATE) {
        idx = eng_sched_session_find(s, r, out);
        if (idx < 0)
            return;
    }
    eng_event *e;
    switch (r->op) {
    case ENG_OP_SESSION_CREATE:
        if (r->expect_gen && r->expect_gen != ENG_GEN_DELETED) { /* the chosen id lives in the store */
            eng_evlist_error_code(out, r, SSMD_ECONFLICT, "a session with this id already exists");
            return;
        }
        if (eng_session_find(&s->host, r->session, NULL) >= 0) {
            eng_evlist_error_code(out, r, SSMD_ECONFLICT, "a session with this id already exists");
            return;
        }
        idx = session_create(s, r->session, now, &err);
        if (idx < 0) {
            eng_evlist_error(out, r, &err);
            return;
        }
        eng_state_slot_zero(s->pool, idx);
        changed = idx;
        break;
    case ENG_OP_SESSION_INFO:
        break;
    case ENG_OP_SESSION_DELETE:
        e = eng_evlist_add(out, ENG_EV_RESULT, r);
        session_info(&t->entries[idx], &e->info);
        eng_session_remove(t, idx);
        return;
    case ENG_OP_SESSION_FORK: {
        t->entries[idx].busy = 1; /* never the one evicted to make room */
        t->entries[idx].last_used_s = now;
        int n = session_create(s, NULL, now, &err);
        t->entries[idx].busy = 0;
        if (n < 0) {
            eng_evlist_error(out, r, &err);
            return;
        }
        eng_state_slot_copy(s->pool, n, idx);
        t->entries[n].pending = t->entries[idx].pending;
        t->entries[n].n_tokens = t->entries[idx].n_tokens;
        t->entries[n].hist = t->entries[idx].hist;
        idx = changed = n; /* the answer is about the new session */
        break;
    }
    case ENG_OP_STATE_EXPORT:
        t->entries[idx].last_used_s = now;
        e = eng_evlist_add(out, ENG_EV_RESULT, r);
        attach_state(s, e, idx);
        return;
    case ENG_OP_STATE_IMPORT:
        eng_state_slot_write(s->pool, idx, r->blob);
        t->entries[idx].pending = r->blob_pending;
        t->entries[idx].n_tokens = r->blob_n_tokens;
        t->entries[idx].hist = r->blob_hist; /* known = 0 when the export carried none */
        t->entries[idx].gen = r->blob_gen ? r->blob_gen : eng_session_new_gen();
        t->entries[idx].last_used_s = now;
        changed = idx;
        break;
    default:
        eng_evlist_error_code(out, r, SSMD_EINTERNAL, "unknown engine operation");
        return;
    }
    e = eng_evlist_add(out, ENG_EV_RESULT, r);
    if (r->want_state && changed >= 0)
        attach_state(s, e, changed);
    else
        session_info(&t->entries[idx], &e->info);
}

void eng_sched_session_begin(eng_sched *s, int idx)
{
    s->sessions.entries[idx].busy = 1;
}

void eng_sched_session_consumed(eng_sched *s, int idx, const int32_t *ids, int n, int prompt_done)
{
    eng_session *ss = &s->sessions.entries[idx];
    if (n > 0 && ss->pending >= 0) { /* already in n_tokens and the hash */
        ss->pending = -1;
        ids++;
        n--;
    }
    ss->n_tokens += n;
    ss->hist.hash = eng_session_hash(ss->hist.hash, ids, n);
    if (prompt_done) {
        ss->hist.mark_tokens = ss->n_tokens;
        ss->hist.mark_hash = ss->hist.hash;
    }
}

int eng_sched_session_trim_history(eng_sched *s, int idx, eng_request *r, eng_evlist *out)
{
    const eng_session *ss = &s->sessions.entries[idx];
    ssmd_err err;
    const int64_t n = ss->n_tokens;
    if (!ss->hist.known) {
        ssmd_err_set(&err, SSMD_ECONFLICT,
                     "session %s holds an imported state whose token history is unknown here, so a chat "
                     "conversation cannot be matched against it; continue it with /v1/completions, whose "
                     "prompt is only the new text",
                     ss->id);
    } else if (r->n_prompt < n) {
        ssmd_err_set(&err, SSMD_ECONFLICT,
                     "the conversation renders to %d tokens, fewer than the %lld tokens of history session %s "
                     "holds: send the whole conversation, the assistant's replies included",
                     r->n_prompt, (long long)n, ss->id);
    } else if (eng_session_hash(ENG_SESSION_HASH_INIT, r->prompt, n) == ss->hist.hash) {
        r->n_prompt -= (int)n;
        memmove(r->prompt, r->prompt + n, (size_t)r->n_prompt * sizeof *r->prompt);
        return 1;
    } else if (ss->hist.mark_tokens < n && eng_session_hash(ENG_SESSION_HASH_INIT, r->prompt, ss->hist.mark_tokens) ==
                                          ss->hist.mark_hash) {
        ssmd_err_set(&err, SSMD_ECONFLICT,
                     "the conversation's first %lld tokens match session %s up to its last reply, but that "
                     "reply differs from the %lld tokens the session generated: send the assistant's message "
                     "back exactly as it was returned (the state holds those tokens, and is never prefilled "
                     "again silently)",
                     (long long)ss->hist.mark_tokens, ss->id, (long long)(n - ss->hist.mark_tokens));
    } else {
        ssmd_err_set(&err, SSMD_ECONFLICT,
                     "the conversation differs from the %lld tokens of history session %s holds%s: an earlier "
                     "message was changed or removed; start a new session for a different conversation",
                     (long long)n, ss->id,
                     ss->hist.mark_tokens < n ? ", before its last reply" : "");
    }
    eng_evlist_error(out, r, &err);
    return 0;
}

void eng_sched_session_end(eng_sched *s, int idx, const sched_seq *q, eng_event *e)
{
    eng_session *ss = &s->sessions.entries[idx];
    ss->busy = 0;
    /* without a generated token, the pending one stays pending unless the
     * prefill consumed it (eng_sched_session_consumed); a request canceled
     * in the middle of its prompt leaves the state holding the chunks done */
    if (q->seq.n_gen > 0)
        ss->pending = q->seq.last;
    ss->n_tokens += q->seq.n_gen;
    ss->hist.hash = eng_session_hash(ss->hist.hash, q->seq.history + q->seq.n_history - q->seq.n_gen,
                                     q->seq.n_gen);
    ss->last_used_s = eng_now_wall_s();
    ss->gen = eng_session_new_gen();
    if (q->req->want_state) /* a canceled request changed the state too */
        attach_state(s, e, idx);
}

void eng_sched_session_expire(eng_sched *s)
{
    double now = eng_now_wall_s();
    eng_session_expire(&s->sessions, now, s->opts.session_ttl_s);
    eng_sched_tier_expire(s, now);
}

double eng_sched_session_wait_s(const eng_sched *s)
{
    double now = eng_now_wall_s();
    double a = eng_session_next_expiry(&s->sessions, now, s->opts.session_ttl_s);
    double b = s->host.capacity ? eng_session_next_expiry(&s->host, now, s->opts.session_ttl_s) : -1;
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

int eng_sched_each_session(eng_sched *s, eng_session_visit_fn fn, void *arg)
{
    if (!s->joined || !s->pool)
        return 0;
    unsigned char *state = xcalloc(1, s->info.state_bytes);
    int n = 0;
    for (int i = 0; i < s->sessions.capacity; i++) {
        const eng_session *ss = &s->sessions.entries[i];
        if (!ss->in_use)
            continue;
        eng_session_info info;
        session_info(ss, &info);
        eng_state_slot_read(s->pool, i, state);
        n++;
        if (fn(arg, &info, state, s->info.state_bytes))
            goto done;
    }
    for (int i = 0; i < s->host.capacity; i++) { /* and those in host memory */
        const eng_session *ss = &s->host.entries[i];
        if (!ss->in_use)
            continue;
        eng_session_info info;
        session_info(ss, &info);
        n++;
        if (fn(arg, &info, s->host_states[i], s->info.state_bytes))
            break;
    }
done:
    free(state);
    return n;
}
