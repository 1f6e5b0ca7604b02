/* handoff.c - the drain handoff to a peer (--drain-peer URL): after the
 * last running request ended and the engine stopped, every session's state
 * is PUT to URL/v1/sessions/{id}/state, so the replica (or the load
 * balancer) at URL holds it when the session's next request arrives.
 *
 * Blocking libcurl calls on the loop thread: by then the server has closed
 * its listening socket and every connection, and the whole handoff is
 * bounded by HANDOFF_BUDGET_MS.  Never touches the engine's live state: it
 * reads the stopped engine's pool through eng_sched_each_session.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/srv.h"
#include "server/state_fmt.h"

#define HANDOFF_BUDGET_MS 10000  /* for all sessions together */
#define HANDOFF_EACH_MS 3000     /* for one PUT */

typedef struct handoff {
    srv_server *srv;
    CURL *curl;
    int64_t t_end_ns;
    int sent, failed;
} handoff;

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* PUTs one session; returns nonzero to stop the walk (out of time). */
static int put_one(void *arg, const eng_session_info *info, const void *state, size_t bytes)
{
    handoff *h = arg;
    srv_server *s = h->srv;
    int64_t left_ms = (h->t_end_ns - eng_now_mono_ns()) / 1000000;
    if (left_ms <= 0)
        return 1;
    unsigned char *buf;
    size_t len;
    if (srv_state_pack(s->info->fingerprint, info, state, bytes, &buf, &len, NULL) !=
        SSMD_OK) {
        h->failed++;
        return 0;
    }
    const char *peer = s->cfg->drain_peer;
    size_t plen = strlen(peer);
    while (plen && peer[plen - 1] == '/')
        plen--;
    char url[1200], hdr_id[80], hdr_auth[600];
    snprintf(url, sizeof url, "%.*s/v1/sessions/%s/state", (int)plen, peer, info->id);
    snprintf(hdr_id, sizeof hdr_id, "X-Session-Id: %s", info->id);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    hdrs = curl_slist_append(hdrs, hdr_id);
    if (*s->cfg->api_key) {
        snprintf(hdr_auth, sizeof hdr_auth, "Authorization: Bearer %s", s->cfg->api_key);
        hdrs = curl_slist_append(hdrs, hdr_auth);
    }
    CURL *cu = h->curl;
    curl_easy_reset(cu);
    curl_easy_setopt(cu, CURLOPT_URL, url);
    curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(cu, CURLOPT_POSTFIELDS, (const char *)buf);
    curl_easy_setopt(cu, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(cu, CURLOPT_PROXY, ""); /* the peer is named directly: never via *_proxy */
    curl_easy_setopt(cu, CURLOPT_TIMEOUT_MS, (long)(left_ms < HANDOFF_EACH_MS ? left_ms : HANDOFF_EACH_MS));
    CURLcode rc = curl_easy_perform(cu);
    long status = 0;
    curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    free(buf);
    if (rc == CURLE_OK && status == 200) {
        h->sent++;
    } else {
        h->failed++;
        srv_log_msg(&s->log, "warn", "drain_handoff", "session %s: handoff to %s failed: %s", info->id, peer,
                    rc != CURLE_OK ? curl_easy_strerror(rc) : "the peer refused it");
    }
    return 0;
}

void srv_handoff_peer(srv_server *s)
{
    handoff h = {s, curl_easy_init(), eng_now_mono_ns() + (int64_t)HANDOFF_BUDGET_MS * 1000000, 0, 0};
    if (!h.curl) {
        srv_log_msg(&s->log, "error", "drain_handoff", "cannot start an HTTP client for the drain handoff");
        return;
    }
    int64_t t0 = eng_now_mono_ns();
    int n = eng_sched_each_session(s->sched, put_one, &h);
    curl_easy_cleanup(h.curl);
    s->metrics.drain_exported_total += (uint64_t)h.sent;
    double ms = (double)(eng_now_mono_ns() - t0) * 1e-6;
    char msg[1200];
    snprintf(msg, sizeof msg, "handed %d of %d sessions to %s in %.0f ms", h.sent, n, s->cfg->drain_peer, ms);
    srv_log_event(&s->log, h.sent < n ? "warn" : "info", "drain_handoff",
                  json_pack("{s:s, s:i, s:i, s:f}", "peer", s->cfg->drain_peer, "sessions", n, "sent", h.sent, "ms", ms),
                  msg);
}
