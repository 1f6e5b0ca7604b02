/* log.h - the server's log on stderr: start-up and shutdown messages and
 * one line per HTTP request, as text ("<RFC 3339 UTC time> ssmd: ...",
 * e.g. "2025-06-01T12:00:00.123Z ssmd: ready on ...") or, with
 * --log-format json, one JSON object per line for log collectors.
 *
 * Loop thread (and main before the loop starts).  Never exits, never
 * touches the model; a failed write is ignored.
 */
#ifndef SSMD_SRV_LOG_H
#define SSMD_SRV_LOG_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

typedef enum srv_log_format { SRV_LOG_TEXT = 0, SRV_LOG_JSON } srv_log_format;

typedef struct srv_log {
    FILE *out;             /* stderr; not owned */
    srv_log_format format;
} srv_log;

/* Returns SRV_LOG_JSON for "json", SRV_LOG_TEXT otherwise. */
srv_log_format srv_log_format_parse(const char *name);

/* One message: "<time> ssmd: <text>" or {"time","level","event","msg"}.  level is
 * "info", "warn" or "error"; event a short machine name ("listening"). */
void srv_log_msg(const srv_log *l, const char *level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One structured event: fields (stolen) are written as they are in JSON
 * mode, merged with time/level/event/msg; text mode writes only msg. */
void srv_log_event(const srv_log *l, const char *level, const char *event, json_t *fields, const char *msg);

/* What one finished HTTP request logs. */
typedef struct srv_log_req {
    const char *method, *path;
    unsigned status;             /* 499 when the client went away first */
    double duration_ms;
    int prompt_tokens, completion_tokens; /* -1 when not a completion / unknown */
    const char *session;         /* "" when none */
    int stream;
    int has_seed;                /* a completion: seed is the sampler's */
    uint64_t seed;
    const char *why;             /* an error's message, "" when none */
    const char *tier;            /* the session's tier: "pool", "host", "store"; NULL when none */
} srv_log_req;

void srv_log_request(const srv_log *l, const srv_log_req *r);

/* bytes as "12.3 MB" (decimal megabytes) into out. */
void srv_log_mb(char *out, size_t cap, uint64_t bytes);

#endif
