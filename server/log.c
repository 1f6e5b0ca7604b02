/* log.c - stderr log lines in text or JSON (see log.h).
 *
 * Each line is formatted whole and written with one fputs, so lines from
 * the loop thread never interleave.  Never exits, never blocks on anything
 * but stderr.
 */
#include "server/log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

srv_log_format srv_log_format_parse(const char *name)
{
    return name && !strcmp(name, "json") ? SRV_LOG_JSON : SRV_LOG_TEXT;
}

void srv_log_mb(char *out, size_t cap, uint64_t bytes)
{
    snprintf(out, cap, "%.1f MB", (double)bytes / 1e6);
}

/* RFC 3339 UTC time with milliseconds. */
static void now_text(char *out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char sec[32];
    strftime(sec, sizeof sec, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03ldZ", sec, ts.tv_nsec / 1000000);
}

static void write_json(const srv_log *l, json_t *obj)
{
    char *t = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(obj);
    if (!t)
        return;
    size_t n = strlen(t);
    char *line = realloc(t, n + 2);
    if (!line) {
        free(t);
        return;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    fputs(line, l->out);
    fflush(l->out);
    free(line);
}

void srv_log_event(const srv_log *l, const char *level, const char *event, json_t *fields, const char *msg)
{
    char ts[48];
    now_text(ts, sizeof ts);
    if (l->format == SRV_LOG_TEXT) {
        json_decref(fields);
        fprintf(l->out, "%s ssmd: %s\n", ts, msg);
        fflush(l->out);
        return;
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "time", ts, "level", level, "event", event, "msg", msg);
    if (fields)
        json_object_update_missing(o, fields);
    json_decref(fields);
    write_json(l, o);
}

void srv_log_msg(const srv_log *l, const char *level, const char *event, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    srv_log_event(l, level, event, NULL, msg);
}

void srv_log_request(const srv_log *l, const srv_log_req *r)
{
    char msg[900], tok[80] = "", sess[80] = "", seed[40] = "", why[300] = "";
    if (r->prompt_tokens >= 0)
        snprintf(tok, sizeof tok, " tokens=%d+%d", r->prompt_tokens, r->completion_tokens);
    if (r->session && *r->session)
        snprintf(sess, sizeof sess, " session=%s%s%s", r->session, r->tier ? " tier=" : "", r->tier ? r->tier : "");
    if (r->has_seed)
        snprintf(seed, sizeof seed, " seed=%llu", (unsigned long long)r->seed);
    if (r->why && *r->why)
        snprintf(why, sizeof why, ": %s", r->why);
    snprintf(msg, sizeof msg, "%s %s %u %.1fms%s%s%s%s%s", r->method, r->path, r->status, r->duration_ms, tok,
             r->stream ? " stream" : "", sess, seed, why);
    if (l->format == SRV_LOG_TEXT) {
        srv_log_event(l, "info", "request", NULL, msg);
        return;
    }
    json_t *f = json_pack("{s:s, s:s, s:i, s:f}", "method", r->method, "path", r->path, "status", (int)r->status,
                          "duration_ms", r->duration_ms);
    if (r->prompt_tokens >= 0) {
        json_object_set_new(f, "prompt_tokens", json_integer(r->prompt_tokens));
        json_object_set_new(f, "completion_tokens", json_integer(r->completion_tokens));
    }
    if (r->stream)
        json_object_set_new(f, "stream", json_true());
    if (r->session && *r->session)
        json_object_set_new(f, "session", json_string(r->session));
    if (r->tier)
        json_object_set_new(f, "tier", json_string(r->tier));
    if (r->has_seed)
        json_object_set_new(f, "seed", json_integer((json_int_t)r->seed));
    if (r->why && *r->why)
        json_object_set_new(f, "error", json_string(r->why));
    srv_log_event(l, r->status >= 500 ? "error" : r->status >= 400 ? "warn" : "info", "request", f, msg);
}
