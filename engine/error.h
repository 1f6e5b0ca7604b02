/* error.h - the one table of ssmd error codes.
 *
 * Every failure a request, a model file or a full pool can cause is one of
 * these negative codes.  Each row carries the HTTP status and the OpenAI
 * error type, so the server generates error bodies from the table instead of
 * writing them per route.  A bug is an assert, never one of these.
 */
#ifndef SSMD_ERROR_H
#define SSMD_ERROR_H

#include <stddef.h>

/* X(name, value, http_status, openai_type, default_message) */
#define SSMD_ERRORS(X)                                                              \
    X(SSMD_OK, 0, 200, "ok", "success")                                             \
    X(SSMD_EINVAL, -1, 400, "invalid_request_error", "invalid argument")            \
    X(SSMD_EIO, -2, 500, "server_error", "input/output error")                      \
    X(SSMD_EFORMAT, -3, 400, "invalid_request_error", "malformed input")            \
    X(SSMD_ENOMEM, -4, 503, "server_error", "out of memory")                        \
    X(SSMD_ENOTFOUND, -5, 404, "not_found_error", "not found")                      \
    X(SSMD_ECONFLICT, -6, 409, "conflict_error", "conflict")                        \
    X(SSMD_ETOOLARGE, -7, 413, "invalid_request_error", "payload too large")        \
    X(SSMD_EBUSY, -8, 429, "rate_limit_error", "server busy, try again later")      \
    X(SSMD_EUNAUTH, -9, 401, "authentication_error", "missing or invalid API key")  \
    X(SSMD_EDRAINING, -10, 503, "server_error", "server is shutting down")          \
    X(SSMD_EUNSUPPORTED, -11, 400, "invalid_request_error", "unsupported")          \
    X(SSMD_EFULL, -12, 503, "server_error", "no free session slot")                 \
    X(SSMD_ECANCELED, -13, 499, "canceled", "request canceled")                     \
    X(SSMD_ENOMETHOD, -14, 405, "invalid_request_error", "method not allowed")      \
    X(SSMD_EINTERNAL, -15, 500, "server_error", "internal error")                  \
    X(SSMD_ESTALE, -16, 409, "conflict_error", "session changed on another replica")

enum ssmd_code {
#define SSMD_ERR_ENUM(name, value, status, type, msg) name = value,
    SSMD_ERRORS(SSMD_ERR_ENUM)
#undef SSMD_ERR_ENUM
};

/* An error with a human message that names what failed (file, tensor,
 * field).  Caller-allocated; functions that fail fill it and return code. */
typedef struct ssmd_err {
    int code;       /* one of enum ssmd_code, SSMD_OK when nothing failed */
    char msg[512];  /* NUL-terminated, complete sentence for the user */
} ssmd_err;

/* Fills err (if not NULL) with code and a printf-style message; returns code
 * so callers can write `return ssmd_err_set(err, SSMD_EFORMAT, ...)`. */
int ssmd_err_set(ssmd_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Table lookups; unknown codes map to the SSMD_EINTERNAL row. */
int ssmd_err_http_status(int code);
const char *ssmd_err_type(int code);
const char *ssmd_err_name(int code);
const char *ssmd_err_default_message(int code);

/* The one way the process dies on purpose outside main: prints "ssmd: "
 * and the message to stderr, then aborts.  Only for what no caller can
 * handle (a small host allocation failing, a library that cannot encode a
 * reply); anything a request can cause is an ssmd_err instead.  Any
 * thread. */
void ssmd_fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#endif
