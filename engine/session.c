/* session.c - the session table (see session.h): ids, TTL, LRU.
 *
 * A fixed array, scanned linearly: a few thousand entries at most, and every
 * scan is cheap next to one decode step.  Never touches the state pool and
 * never allocates after init.
 */
#include "engine/session.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

int eng_session_table_init(eng_session_table *t, int capacity, ssmd_err *err)
{
    memset(t, 0, sizeof *t);
    if (capacity < 1)
        return ssmd_err_set(err, SSMD_EINVAL, "session table capacity must be at least 1");
    t->entries = calloc((size_t)capacity, sizeof *t->entries);
    if (!t->entries)
        return ssmd_err_set(err, SSMD_ENOMEM, "cannot allocate %d session entries", capacity);
    t->capacity = capacity;
    return SSMD_OK;
}

void eng_session_table_free(eng_session_table *t)
{
    free(t->entries);
    memset(t, 0, sizeof *t);
}

static int get_random(void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom((char *)buf + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

int eng_session_new_id(char *id, ssmd_err *err)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[ENG_SESSION_ID_BYTES];
    if (get_random(raw, sizeof raw) != 0)
        return ssmd_err_set(err, SSMD_EIO, "getrandom failed: %s", strerror(errno));
    for (size_t i = 0; i < sizeof raw; i++) {
        id[2 * i] = hex[raw[i] >> 4];
        id[2 * i + 1] = hex[raw[i] & 15];
    }
    id[ENG_SESSION_ID_HEX] = '\0';
    return SSMD_OK;
}

int eng_session_id_valid(const char *s)
{
    if (!s)
        return 0;
    for (int i = 0; i < ENG_SESSION_ID_HEX; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return s[ENG_SESSION_ID_HEX] == '\0';
}

/* Constant-time equality of two ENG_SESSION_ID_HEX-char ids. */
static int id_equal(const char *a, const char *b)
{
    unsigned char diff = 0;
    for (int i = 0; i < ENG_SESSION_ID_HEX; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

int eng_session_find(const eng_session_table *t, const char *id, ssmd_err *err)
{
    int found = -1;
    if (eng_session_id_valid(id)) {
        for (int i = 0; i < t->capacity; i++)
            if (t->entries[i].in_use && id_equal(t->entries[i].id, id) && found < 0)
                found = i;
    }
    if (found < 0)
        return ssmd_err_set(err, SSMD_ENOTFOUND, "no session with id '%.64s'", id ? id : "");
    return found;
}

void eng_session_remove(eng_session_table *t, int idx)
{
    eng_session *s = &t->entries[idx];
    if (!s->in_use)
        return;
    memset(s, 0, sizeof *s);
    s->pending = -1;
    t->n_live--;
}

int eng_session_lru_idle(const eng_session_table *t)
{
    int idx = -1;
    for (int i = 0; i < t->capacity; i++) {
        const eng_session *s = &t->entries[i];
        if (s->in_use && !s->busy && (idx < 0 || s->last_used_s < t->entries[idx].last_used_s))
            idx = i;
    }
    return idx;
}

uint64_t eng_session_hash(uint64_t h, const int32_t *ids, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        for (int b = 0; b < 4; b++) {
            h ^= (v >> (8 * b)) & 0xffu;
            h *= UINT64_C(0x100000001b3);
        }
    }
    return h;
}

uint64_t eng_session_new_gen(void)
{
    static _Atomic uint64_t fallback = 1;
    uint64_t g = 0;
    if (get_random(&g, sizeof g) != 0)
        g = fallback++ * 0x9e3779b97f4a7c15ull; /* no randomness: still distinct here */
    return g && g != UINT64_MAX ? g : 1; /* 0 and all-ones mean "none" and "deleted" */
}

int eng_session_create(eng_session_table *t, const char *id, double now_s, int *evicted, ssmd_err *err)
{
    if (evicted)
        *evicted = -1;
    if (id && *id) {
        if (!eng_session_id_valid(id))
            return ssmd_err_set(err, SSMD_EINVAL, "a session id is %d lowercase hex characters", ENG_SESSION_ID_HEX);
        if (eng_session_find(t, id, NULL) >= 0)
            return ssmd_err_set(err, SSMD_ECONFLICT, "session '%s' already exists", id);
    }
    int idx = -1;
    for (int i = 0; i < t->capacity && idx < 0; i++)
        if (!t->entries[i].in_use)
            idx = i;
    if (idx < 0) {
        idx = eng_session_lru_idle(t);
        if (idx < 0)
            return ssmd_err_set(err, SSMD_EFULL, "all %d sessions are busy", t->capacity);
        eng_session_remove(t, idx);
        if (evicted)
            *evicted = idx;
    }
    eng_session *s = &t->entries[idx];
    int rc = SSMD_OK;
    if (id && *id)
        memcpy(s->id, id, sizeof s->id);
    else
        rc = eng_session_new_id(s->id, err);
    if (rc != SSMD_OK) {
        memset(s, 0, sizeof *s);
        return rc;
    }
    s->gen = eng_session_new_gen();
    s->in_use = 1;
    s->busy = 0;
    s->pending = -1;
    s->n_tokens = 0;
    s->hist = (eng_session_history){.known = 1, .hash = ENG_SESSION_HASH_INIT, .mark_tokens = 0,
                                    .mark_hash = ENG_SESSION_HASH_INIT};
    s->created_s = now_s;
    s->last_used_s = now_s;
    t->n_live++;
    return idx;
}

int eng_session_expire(eng_session_table *t, double now_s, double ttl_s)
{
    if (ttl_s <= 0)
        return 0;
    int n = 0;
    for (int i = 0; i < t->capacity; i++) {
        eng_session *s = &t->entries[i];
        if (s->in_use && !s->busy && now_s - s->last_used_s > ttl_s) {
            eng_session_remove(t, i);
            n++;
        }
    }
    return n;
}

double eng_session_next_expiry(const eng_session_table *t, double now_s, double ttl_s)
{
    if (ttl_s <= 0)
        return -1;
    double best = -1;
    for (int i = 0; i < t->capacity; i++) {
        const eng_session *s = &t->entries[i];
        if (!s->in_use || s->busy)
            continue;
        double left = s->last_used_s + ttl_s - now_s;
        if (left < 0)
            left = 0;
        if (best < 0 || left < best)
            best = left;
    }
    return best;
}
