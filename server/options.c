/* options.c - the one options table of `ssmd serve` (see options.h).
 *
 * Adding a flag is adding a row: parsing, bounds, --help and /v1/models all
 * read the table.  Never exits: errors go back to main.
 */
#include "server/options.h"
#include "engine/xalloc.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum opt_type { OPT_STR, OPT_LONG, OPT_DOUBLE, OPT_FLAG } opt_type;

typedef struct opt_row {
    const char *name;    /* without the leading "--" */
    opt_type type;
    const char *def;     /* default as text */
    double lo, hi;       /* bounds for numbers */
    size_t offset;       /* into srv_config */
    const char *help;
    int secret;          /* never shown */
} opt_row;

#define OFF(f) offsetof(srv_config, f)
static const opt_row opt_rows[] = {
    {"model", OPT_STR, "models/default", 0, 0, OFF(model), "model directory (config.json, model.safetensors, tokenizer.json)", 0},
    {"model-name", OPT_STR, "", 0, 0, OFF(model_name), "model id reported by /v1/models; empty = the directory name", 0},
    {"host", OPT_STR, "127.0.0.1", 0, 0, OFF(host), "address to listen on", 0},
    {"port", OPT_LONG, "8080", 1, 65535, OFF(port), "TCP port", 0},
    {"backend", OPT_STR, "cpu", 0, 0, OFF(backend), "compute backend: cpu or cuda", 0},
    {"threads", OPT_LONG, "0", 0, 1024, OFF(threads), "compute threads (0 = all cores)", 0},
    {"max-batch", OPT_LONG, "16", 1, 1024, OFF(max_batch), "sequences decoded together per step", 0},
    {"max-sessions", OPT_LONG, "64", 1, 1000000, OFF(max_sessions), "live sessions; the least recently used idle one is evicted beyond", 0},
    {"session-ttl", OPT_DOUBLE, "3600", 0, 1e9, OFF(session_ttl), "seconds an idle session lives (0 = forever)", 0},
    {"max-queue", OPT_LONG, "256", 0, 1000000, OFF(max_queue), "completions waiting for a batch slot before 429", 0},
    {"max-body", OPT_LONG, "8388608", 64, 1e10, OFF(max_body), "largest JSON request body in bytes (413 beyond)", 0},
    {"max-prompt", OPT_LONG, "65536", 1, 1e9, OFF(max_prompt), "most prompt tokens per request", 0},
    {"max-tokens", OPT_LONG, "4096", 1, 1e9, OFF(max_tokens), "largest max_tokens a request may ask for", 0},
    {"default-max-tokens", OPT_LONG, "16", 0, 1e9, OFF(default_max_tokens), "max_tokens of a request that names none", 0},
    {"api-key", OPT_STR, "", 0, 0, OFF(api_key), "require 'Authorization: Bearer KEY'; empty = no auth", 1},
    {"drain-timeout", OPT_DOUBLE, "30", 0, 1e6, OFF(drain_timeout), "seconds running requests may finish after SIGTERM", 0},
    {"session-store", OPT_STR, "", 0, 0, OFF(session_store), "redis://HOST:PORT[/DB]: keep every session's state there too, so any replica can continue it; empty = none", 0},
    {"drain-peer", OPT_STR, "", 0, 0, OFF(drain_peer), "http://HOST:PORT (a peer or the load balancer): on SIGTERM, hand each session's state to it before exiting; empty = none", 0},
    {"max-connections", OPT_LONG, "1024", 1, 1000000, OFF(max_connections), "simultaneous client connections", 0},
    {"max-stream-backlog", OPT_LONG, "33554432", 4096, 1e12, OFF(max_stream_backlog), "unsent bytes a streaming client may fall behind before it is canceled", 0},
    {"conn-timeout", OPT_DOUBLE, "120", 0, 1e6, OFF(conn_timeout), "seconds an idle connection stays open (0 = forever)", 0},
    {"log-format", OPT_STR, "text", 0, 0, OFF(log_format), "stderr log: text, or json (one object per line)", 0},
    {"quiet", OPT_FLAG, "0", 0, 1, OFF(quiet), "no request log lines (start-up and errors only)", 0},
    {"verbose", OPT_FLAG, "0", 0, 1, OFF(verbose), "also log /health, /ready and /metrics probes", 0},
};
#undef OFF
#define N_OPTS (sizeof opt_rows / sizeof opt_rows[0])

static void *field(srv_config *c, const opt_row *o) { return (char *)c + o->offset; }
static const void *cfield(const srv_config *c, const opt_row *o)
{
    return (const char *)c + o->offset;
}

/* Sets option o from text; returns SSMD_OK or SSMD_EINVAL. */
static int opt_set(srv_config *c, const opt_row *o, const char *text, ssmd_err *err)
{
    char *end = NULL;
    switch (o->type) {
    case OPT_STR: {
        char **p = field(c, o);
        free(*p);
        *p = xstrdup(text);
        return SSMD_OK;
    }
    case OPT_LONG:
    case OPT_FLAG: {
        errno = 0;
        long v = strtol(text, &end, 10);
        if (errno || !*text || *end || (double)v < o->lo || (double)v > o->hi)
            return ssmd_err_set(err, SSMD_EINVAL, "--%s must be an integer in [%.0f, %.0f], got '%s'",
                                o->name, o->lo, o->hi, text);
        *(long *)field(c, o) = v;
        return SSMD_OK;
    }
    case OPT_DOUBLE: {
        errno = 0;
        double v = strtod(text, &end);
        if (errno || !*text || *end || !isfinite(v) || v < o->lo || v > o->hi)
            return ssmd_err_set(err, SSMD_EINVAL, "--%s must be a number in [%g, %g], got '%s'", o->name,
                                o->lo, o->hi, text);
        *(double *)field(c, o) = v;
        return SSMD_OK;
    }
    }
    return ssmd_err_set(err, SSMD_EINTERNAL, "bad option type");
}

void srv_config_defaults(srv_config *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_OPTS; i++) {
        int rc = opt_set(c, &opt_rows[i], opt_rows[i].def, NULL);
        (void)rc;
    }
}

void srv_config_free(srv_config *c)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (opt_rows[i].type == OPT_STR)
            free(*(char **)field(c, &opt_rows[i]));
    memset(c, 0, sizeof *c);
}

static const opt_row *opt_find(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strlen(opt_rows[i].name) == len && !strncmp(opt_rows[i].name, name, len))
            return &opt_rows[i];
    return NULL;
}

int srv_config_parse(srv_config *c, int argc, char **argv, FILE *out, ssmd_err *err)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            srv_config_print_help(out);
            return 1;
        }
        if (!strcmp(a, "--version")) {
            fprintf(out, "ssmd %s\n", SSMD_VERSION);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0)
            return ssmd_err_set(err, SSMD_EINVAL, "unexpected argument '%s' (see --help)", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const opt_row *o = opt_find(name, len);
        if (!o)
            return ssmd_err_set(err, SSMD_EINVAL, "unknown option '%s' (see --help)", a);
        const char *val;
        if (eq)
            val = eq + 1;
        else if (o->type == OPT_FLAG)
            val = "1";
        else if (i + 1 < argc)
            val = argv[++i];
        else
            return ssmd_err_set(err, SSMD_EINVAL, "option --%s needs a value", o->name);
        int rc = opt_set(c, o, val, err);
        if (rc != SSMD_OK)
            return rc;
    }
    if (!c->model || !*c->model)
        return ssmd_err_set(err, SSMD_EINVAL, "--model DIR must not be empty");
    if (strcmp(c->backend, "cpu") && strcmp(c->backend, "cuda"))
        return ssmd_err_set(err, SSMD_EINVAL, "--backend must be cpu or cuda, got '%s'", c->backend);
    if (strcmp(c->log_format, "text") && strcmp(c->log_format, "json"))
        return ssmd_err_set(err, SSMD_EINVAL, "--log-format must be text or json, got '%s'", c->log_format);
    if (c->default_max_tokens > c->max_tokens)
        return ssmd_err_set(err, SSMD_EINVAL, "--default-max-tokens (%ld) exceeds --max-tokens (%ld)",
                            c->default_max_tokens, c->max_tokens);
    return SSMD_OK;
}

void srv_config_print_help(FILE *out)
{
    fprintf(out, "usage: ssmd serve [--model DIR] [options]\n\n"
                 "OpenAI-compatible HTTP server with persistent sessions.\n\noptions:\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_row *o = &opt_rows[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s%s", o->name,
                 o->type == OPT_FLAG ? "" : o->type == OPT_STR ? " S" : " N");
        fprintf(out, "  %-24s %s", flag, o->help);
        if (o->type == OPT_FLAG)
            fprintf(out, " (default: %s)", strcmp(o->def, "0") ? "on" : "off");
        else
            fprintf(out, " (default: %s)", *o->def ? o->def : "none");
        fputc('\n', out);
    }
    fprintf(out, "  %-24s %s\n", "--help", "show this help");
    fprintf(out, "  %-24s %s\n", "--version", "print the version");
}

void srv_config_each(const srv_config *c, void (*fn)(void *arg, const char *name, const char *value),
                     void *arg)
{
    char buf[64];
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_row *o = &opt_rows[i];
        const char *v = buf;
        switch (o->type) {
        case OPT_STR:
            v = *(char *const *)cfield(c, o);
            if (o->secret)
                v = (v && *v) ? "(set)" : "";
            break;
        case OPT_LONG:
        case OPT_FLAG:
            snprintf(buf, sizeof buf, "%ld", *(const long *)cfield(c, o));
            break;
        case OPT_DOUBLE:
            snprintf(buf, sizeof buf, "%g", *(const double *)cfield(c, o));
            break;
        }
        fn(arg, o->name, v ? v : "");
    }
}
