/* options.h - the command-line options of both front ends, `ssmd serve` and
 * `ssmd generate`: one table of options (name, type, bounds, default, help,
 * offset, which front ends take it) drives argv parsing, --help,
 * validation and what /v1/models reports.  Options both take (--model,
 * --backend, --threads, --numerics, --device) are one row each; the
 * sampling flags of generate share their bounds with the request fields of
 * server/parse.c (ENG_SAMPLING_FIELDS in engine/sampler.h).
 *
 * The config is filled once in main and read-only afterwards.  Never touches
 * the model or the network.
 */
#ifndef SSMD_SRV_OPTIONS_H
#define SSMD_SRV_OPTIONS_H

#include <stdio.h>

#include "engine/error.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/text/stop.h"

#define SSMD_VERSION "0.1.0"

/* Which front end parses: a row is taken by the front ends in its mask. */
typedef enum srv_front {
    SRV_FRONT_SERVE = 1,
    SRV_FRONT_GENERATE = 2,
} srv_front;

/* A repeatable string option (--stop). */
typedef struct srv_strlist {
    int n;
    char *v[ENG_STOP_MAX]; /* malloc'ed */
} srv_strlist;

typedef struct srv_config {
    /* both front ends */
    char *model;           /* model directory */
    char *backend;         /* "cpu" | "cuda" */
    long threads;          /* 0 = all cores */
    char *numerics;        /* "exact" | "fast" (bk_numerics_parse) */
    long device;           /* accelerator index */
    /* ssmd serve */
    char *model_name;      /* name reported by /v1/models ("" = dir basename) */
    char *host;
    long port;
    long max_batch;        /* sequences per decode step */
    long max_step_tokens;  /* prompt tokens prefilled per engine iteration; 0 = the backend's default */
    double prefill_time_ratio; /* an iteration's prefill time / decode step time while streams run; 0 = off */
    long max_sessions;     /* live sessions (state slots) */
    long host_session_memory; /* bytes of host memory for idle sessions beyond the state pool */
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
    /* ssmd generate */
    char *prompt;          /* "" = none */
    char *prompt_ids;      /* "1,2,3" or "" */
    long gen_max_tokens;   /* tokens to generate */
    eng_sampling sampling; /* the ENG_SAMPLING_FIELDS flags */
    srv_strlist stop;      /* --stop, repeatable */
    long print_ids;
    long ignore_eos;
    char *dump_logits;     /* file for the logits rows, "" = none */
} srv_config;

/* Sets every field to its default (strings are malloc'ed copies). */
void srv_config_defaults(srv_config *c);
void srv_config_free(srv_config *c);

/* Parses argv[1..argc) (argv[0] is the subcommand) with the rows of
 * front.  Returns SSMD_OK, or SSMD_EINVAL with err->msg naming the flag and
 * why; 1 when --help or --version was asked (already printed to out). */
int srv_config_parse(srv_config *c, srv_front front, int argc, char **argv, FILE *out, ssmd_err *err);

/* Prints front's usage with every flag it takes, its default and help. */
void srv_config_print_help(srv_front front, FILE *out);

/* Calls fn for each option of front, in table order, with its name
 * (without "--") and its current value as text (the API key is never
 * shown).  For /v1/models (SRV_FRONT_SERVE) and the --help test. */
void srv_config_each(const srv_config *c, srv_front front,
                     void (*fn)(void *arg, const char *name, const char *value), void *arg);

/* The model options both front ends pass to the engine: backend, threads,
 * numerics, device (over eng_model_opts_defaults). */
void srv_config_model_opts(const srv_config *c, eng_model_opts *out);

#endif
