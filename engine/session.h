/* session.h - the session table: unguessable ids, one state-pool slot per
 * session, the token a session has sampled but not yet consumed, idle TTL and
 * least-recently-used eviction.
 *
 * Session i owns slot i of the state pool (slots [0, capacity)); the table
 * never touches the pool itself, the scheduler does.  Times are seconds on
 * a clock the caller passes in, so tests can move time.  Engine thread only;
 * never blocks and never allocates after init.
 */
#ifndef SSMD_SESSION_H
#define SSMD_SESSION_H

#include <stdint.h>

#include "engine/error.h"

#define ENG_SESSION_ID_BYTES 16                        /* 128 random bits */
#define ENG_SESSION_ID_HEX (2 * ENG_SESSION_ID_BYTES)  /* 32 hex chars */

/* The identity of the token history behind a session's state, so that a
 * chat request (which sends the whole conversation) can be checked to
 * extend it.  Travels with the state (exports, the session store). */
typedef struct eng_session_history {
    int known;            /* 0: not known here (a state imported without it) */
    uint64_t hash;        /* eng_session_hash over the n_tokens tokens (consumed + pending) */
    int64_t mark_tokens;  /* length and hash at the end of the last completion's
                           * prompt: tells a changed reply from a changed message */
    uint64_t mark_hash;
} eng_session_history;

typedef struct eng_session {
    char id[ENG_SESSION_ID_HEX + 1]; /* lowercase hex, "" when the entry is free */
    int in_use;
    int busy;             /* a completion runs on it right now */
    int32_t pending;      /* sampled, not yet consumed into the state; -1 none */
    int64_t n_tokens;     /* tokens consumed into the state + the pending one */
    uint64_t gen;         /* random tag of this version of the state: a new one
                           * at every change, so replicas sharing a session
                           * store can tell a stale copy (never 0) */
    double created_s;     /* wall clock (unix seconds) */
    double last_used_s;
    eng_session_history hist;
} eng_session;

typedef struct eng_session_table {
    int capacity;         /* = slots reserved for sessions */
    int n_live;
    eng_session *entries; /* (capacity) */
} eng_session_table;

/* Returns SSMD_OK or SSMD_ENOMEM.  capacity >= 1. */
int eng_session_table_init(eng_session_table *t, int capacity, ssmd_err *err);
void eng_session_table_free(eng_session_table *t);

/* Creates a session with the given id (ENG_SESSION_ID_HEX lowercase hex, a
 * client's choice), or a fresh random one when id is NULL or "".  When the
 * table is full the least-recently-used idle session is evicted first (its
 * index is stored in *evicted, else -1).  Returns the new index (its slot)
 * or SSMD_ECONFLICT when the id is taken, SSMD_EINVAL for a malformed id,
 * SSMD_EFULL when every session is busy, SSMD_EIO when the OS has no
 * randomness.  The caller zeroes the slot. */
int eng_session_create(eng_session_table *t, const char *id, double now_s, int *evicted, ssmd_err *err);

/* A new nonzero random generation tag.  Any thread. */
uint64_t eng_session_new_gen(void);

/* Index of the session with this id, or SSMD_ENOTFOUND.  Compares every
 * live id in full, so the time taken does not depend on where ids differ. */
int eng_session_find(const eng_session_table *t, const char *id, ssmd_err *err);

/* Index of the least recently used idle session, or -1 when every live
 * session is busy (or none lives). */
int eng_session_lru_idle(const eng_session_table *t);

/* Frees entry idx (must be in use and not busy). */
void eng_session_remove(eng_session_table *t, int idx);

/* Removes idle sessions not used for more than ttl_s seconds (ttl_s <= 0:
 * never).  Returns how many were removed. */
int eng_session_expire(eng_session_table *t, double now_s, double ttl_s);

/* Seconds until the next idle session expires (>= 0), or -1 if none can. */
double eng_session_next_expiry(const eng_session_table *t, double now_s, double ttl_s);

/* The history hash of an empty session, and h extended by ids[0..n)
 * (64-bit FNV-1a over the ids' little-endian bytes): equal histories give
 * equal hashes whichever requests fed them.  Any thread. */
#define ENG_SESSION_HASH_INIT UINT64_C(0xcbf29ce484222325)
uint64_t eng_session_hash(uint64_t h, const int32_t *ids, int64_t n);

/* Fills id (ENG_SESSION_ID_HEX + 1 bytes) with a new random hex id.
 * Returns SSMD_OK or SSMD_EIO.  Any thread. */
int eng_session_new_id(char *id, ssmd_err *err);

/* 1 if s is ENG_SESSION_ID_HEX lowercase hex chars, else 0.  Any thread. */
int eng_session_id_valid(const char *s);

#endif
