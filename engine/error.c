/* error.c - lookups into the SSMD_ERRORS table, the message formatter and
 * ssmd_fatal.  Never allocates (ssmd_fatal runs when memory is gone). */
#include "engine/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int ssmd_err_set(ssmd_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

typedef struct err_row {
    int code;
    int status;
    const char *type;
    const char *name;
    const char *msg;
} err_row;

static const err_row err_rows[] = {
#define SSMD_ERR_ROW(name, value, status, type, msg) {value, status, type, #name, msg},
    SSMD_ERRORS(SSMD_ERR_ROW)
#undef SSMD_ERR_ROW
};

static const err_row *err_find(int code)
{
    const err_row *internal = NULL;
    for (size_t i = 0; i < sizeof err_rows / sizeof err_rows[0]; i++) {
        if (err_rows[i].code == code)
            return &err_rows[i];
        if (err_rows[i].code == SSMD_EINTERNAL)
            internal = &err_rows[i];
    }
    return internal;
}

int ssmd_err_http_status(int code) { return err_find(code)->status; }
const char *ssmd_err_type(int code) { return err_find(code)->type; }
const char *ssmd_err_name(int code) { return err_find(code)->name; }
const char *ssmd_err_default_message(int code) { return err_find(code)->msg; }

void ssmd_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ssmd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}
