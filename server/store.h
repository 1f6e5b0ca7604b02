/* store.h - the session store: every session's state also kept in Redis
 * (--session-store redis://host:port[/db]), so any replica behind a load
 * balancer can continue any session.
 *
 * Write-through: a request that changed a session answers its client only
 * after the new state is in the store.  Before a request on a session the
 * store's version tag is checked, so a replica never continues from a copy
 * older than the store's; a session this replica does not hold (or holds
 * stale) is loaded from the store and the request retried once.  When the
 * store is down, requests go on with the local copies (logged, counted).
 *
 * Keys: "ssmd:session:<id>", a hash with "gen" (16 hex digits, the
 * session's version tag) and "state" (the export format of
 * proto/state-format.md); they expire with --session-ttl.
 * Loop thread only (hiredis' async API on the libuv loop).
 */
#ifndef SSMD_SRV_STORE_H
#define SSMD_SRV_STORE_H

#include "server/srv.h"

typedef struct srv_store srv_store;

/* Parses url and connects (asynchronously; a store that is down at start is
 * retried later).  Returns SSMD_OK or SSMD_EINVAL for a malformed url. */
int srv_store_open(srv_server *s, const char *url, srv_store **out, ssmd_err *err);

/* Disconnects; callbacks of commands still pending run as failures. */
void srv_store_close(srv_store *st);

/* Hands r (a request of c naming a session) to the engine after checking
 * the store's version of the session.  Called by srv_submit. */
void srv_store_submit(srv_store *st, srv_conn *c, eng_request *r);

/* Looks at an event for c before its route does: returns 1 when the store
 * took it (a load to do, or a state to write first), and will deliver it
 * later through srv_deliver_event; 0 to deliver it now. */
int srv_store_on_event(srv_store *st, srv_conn *c, eng_event *e);

/* Drain: writes each session the store lacks, synchronously (the engine has
 * stopped).  Returns how many were written. */
int srv_store_drain(srv_store *st, eng_sched *sched);

#endif
