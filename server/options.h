/* options.h - `ssmd serve` configuration: one table of options (name, type,
 * bounds, default, help, offset) drives argv parsing, --help, validation and
 * what /v1/models reports.
 *
 * The config is filled once in main and read-only afterwards.  Never touches
 * the model or the network.
 */
#ifndef SSMD_SRV_OPTIONS_H
#define SSMD_SRV_OPTIONS_H

#include <stdio.h>

#include "engine/error.h"

#define SSMD_VERSION "0.1.0"

typedef struct srv_config {
    char *model;           /* model directory */
    char *model_name;      /* name reported by /v1/models ("" = dir basename) */
    char *host;
    long port;
    char *backend;         /* "cpu" | "cuda" */
    long threads;          /* 0 = all cores */
    long max_batch;        /* sequences per decode step */
    long max_sessions;     /* live sessions (state slots) */
    double session_ttl;    /* idle seconds before a session expires, 0 = never */
    long max_queue;        /* completions waiting beyond max_batch before 429 */
    long max_body;         /* bytes of a JSON body */
    long max_prompt;       /* prompt tokens */
    long max_tokens;       /* upper bound of a request's max_tokens */
    long default_max_tokens; /* max_tokens when a request names none */
    char *api_key;         /* "" = no authentication */
    double drain_timeout;  /* seconds running requests may take after SIGTERM */
    char *session_store;   /* "redis://host:port[/db]" or "" */
    char *drain_peer;      /* base URL that receives session states on drain, or "" */
    long max_connections;
    double conn_timeout;   /* idle keep-alive seconds */
    long max_stream_backlog; /* unsent stream bytes before a slow client is canceled */
    char *log_format;      /* "text" | "json" */
    long quiet;            /* no request log */
    long verbose;          /* also log probe requests (/health, /ready, /metrics) */
} srv_config;

/* Sets every field to its default (strings are malloc'ed copies). */
void srv_config_defaults(srv_config *c);
void srv_config_free(srv_config *c);

/* Parses argv[1..argc) (argv[0] is "serve").  Returns SSMD_OK, or
 * SSMD_EINVAL with err->msg naming the flag and why; 1 when --help or
 * --version was asked (already printed to out). */
int srv_config_parse(srv_config *c, int argc, char **argv, FILE *out, ssmd_err *err);

/* Prints the usage with every flag, its default and help. */
void srv_config_print_help(FILE *out);

/* Calls fn for each option with its name and current value as text (the
 * API key is never shown).  For /v1/models. */
void srv_config_each(const srv_config *c, void (*fn)(void *arg, const char *name, const char *value),
                     void *arg);

#endif
