/* options.c - the one options table of `ssmd serve` and `ssmd generate`
 * (see options.h).
 *
 * Adding a flag is adding a row: parsing, bounds, --help and /v1/models all
 * read the table; `fronts` says which subcommands take it.  Never exits:
 * errors go back to main.
 */
#include "server/options.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/xalloc.h"

typedef enum opt_type {
    OPT_STR,    /* char * */
    OPT_LONG,   /* long */
    OPT_DOUBLE, /* double */
    OPT_FLAG,   /* long, 0/1; no value needed */
    OPT_FLOAT,  /* float (sampling fields) */
    OPT_INT,    /* int */
    OPT_U64,    /* uint64_t */
    OPT_LIST,   /* srv_strlist: repeatable, each value a non-empty string */
} opt_type;

enum { BOTH = SRV_FRONT_SERVE | SRV_FRONT_GENERATE, SERVE = SRV_FRONT_SERVE, GEN = SRV_FRONT_GENERATE };

typedef struct opt_row {
    const char *name;    /* without the leading "--" */
    opt_type type;
    const char *def;     /* default as text; NULL: set by srv_config_defaults itself */
    double lo, hi;       /* bounds for numbers; for OPT_LIST hi is the longest value */
    int lo_open;         /* lo itself is refused */
    size_t offset;       /* into srv_config */
    const char *help;
    int fronts;          /* SRV_FRONT_* mask */
    const char *choices; /* OPT_STR: "a|b" the only values allowed, or NULL */
    int secret;          /* never shown */
} opt_row;

#define OFF(f) offsetof(srv_config, f)
#define SAMPLING_OPT(json_name, flag_name, type, lo, hi, lo_open, field, help) \
    {flag_name, OPT_##type, NULL, lo, hi, lo_open, OFF(sampling.field), help, GEN, NULL, 0},
static const opt_row opt_rows[] = {
    {"model", OPT_STR, "models/default", 0, 0, 0, OFF(model), "model directory (config.json, model.safetensors, tokenizer.json); the default is found next to the binary, else in $SSMD_MODEL, else in PREFIX/share/ssmd (make install)", BOTH, NULL, 0},
    {"model-name", OPT_STR, "", 0, 0, 0, OFF(model_name), "model id reported by /v1/models; empty = the directory name", SERVE, NULL, 0},
    {"host", OPT_STR, "127.0.0.1", 0, 0, 0, OFF(host), "address to listen on", SERVE, NULL, 0},
    {"port", OPT_LONG, "8080", 1, 65535, 0, OFF(port), "TCP port", SERVE, NULL, 0},
    {"backend", OPT_STR, "cpu", 0, 0, 0, OFF(backend), "compute backend: cpu or cuda", BOTH, "cpu|cuda", 0},
    {"threads", OPT_LONG, "0", 0, 1024, 0, OFF(threads), "compute threads (0 = all cores)", BOTH, NULL, 0},
    {"numerics", OPT_STR, "exact", 0, 0, 0, OFF(numerics), "exact, or fast: the backend may use its fast units (TF32 on cuda) where they change results only by rounding", BOTH, "exact|fast", 0},
    {"device", OPT_LONG, "0", 0, 1023, 0, OFF(device), "accelerator index (cuda)", BOTH, NULL, 0},
    {"max-batch", OPT_LONG, "16", 1, 1024, 0, OFF(max_batch), "sequences decoded together per step", SERVE, NULL, 0},
    {"prefill-time-ratio", OPT_DOUBLE, "0", 0, 1000, 0, OFF(prefill_time_ratio), "while streams are decoding, an engine iteration prefills at most this many decode steps' worth of time (measured; chunks of at least 16 tokens): lower inter-token latency, later first tokens; 0 = --max-step-tokens alone", SERVE, NULL, 0},
    {"max-step-tokens", OPT_LONG, "0", 0, 1000000, 0, OFF(max_step_tokens), "prompt tokens prefilled per engine iteration beside the decode step (long prompts go in chunks, so running streams keep their pace); 0 = the backend's default (256 on cpu, 2048 on cuda)", SERVE, NULL, 0},
    {"max-sessions", OPT_LONG, "64", 1, 1000000, 0, OFF(max_sessions), "live sessions; the least recently used idle one is evicted beyond", SERVE, NULL, 0},
    {"host-session-memory", OPT_LONG, "1073741824", 0, 1e15, 0, OFF(host_session_memory), "bytes of host memory for idle sessions moved out of the state pool when it is full (they move back on their next request); 0 = none: the least recently used is dropped", SERVE, NULL, 0},
    {"session-ttl", OPT_DOUBLE, "3600", 0, 1e9, 0, OFF(session_ttl), "seconds an idle session lives (0 = forever)", SERVE, NULL, 0},
    {"max-queue", OPT_LONG, "256", 0, 1000000, 0, OFF(max_queue), "completions waiting for a batch slot before 429", SERVE, NULL, 0},
    {"max-body", OPT_LONG, "8388608", 64, 1e10, 0, OFF(max_body), "largest JSON request body in bytes (413 beyond)", SERVE, NULL, 0},
    {"max-prompt", OPT_LONG, "65536", 1, 1e9, 0, OFF(max_prompt), "most prompt tokens per request", SERVE, NULL, 0},
    {"max-tokens", OPT_LONG, "4096", 1, 1e9, 0, OFF(max_tokens), "largest max_tokens a request may ask for", SERVE, NULL, 0},
    {"default-max-tokens", OPT_LONG, "16", 0, 1e9, 0, OFF(default_max_tokens), "max_tokens of a request that names none", SERVE, NULL, 0},
    {"api-key", OPT_STR, "", 0, 0, 0, OFF(api_key), "require 'Authorization: Bearer KEY'; empty = no auth", SERVE, NULL, 1},
    {"drain-timeout", OPT_DOUBLE, "30", 0, 1e6, 0, OFF(drain_timeout), "seconds running requests may finish after SIGTERM", SERVE, NULL, 0},
    {"session-store", OPT_STR, "", 0, 0, 0, OFF(session_store), "redis://HOST:PORT[/DB]: keep every session's state there too, so any replica can continue it; empty = none", SERVE, NULL, 0},
    {"drain-peer", OPT_STR, "", 0, 0, 0, OFF(drain_peer), "http://HOST:PORT (a peer or the load balancer): on SIGTERM, hand each session's state to it before exiting; empty = none", SERVE, NULL, 0},
    {"max-connections", OPT_LONG, "1024", 1, 1000000, 0, OFF(max_connections), "simultaneous client connections", SERVE, NULL, 0},
    {"max-stream-backlog", OPT_LONG, "33554432", 4096, 1e12, 0, OFF(max_stream_backlog), "unsent bytes a streaming client may fall behind before it is canceled", SERVE, NULL, 0},
    {"conn-timeout", OPT_DOUBLE, "120", 0, 1e6, 0, OFF(conn_timeout), "seconds an idle connection stays open (0 = forever)", SERVE, NULL, 0},
    {"log-format", OPT_STR, "text", 0, 0, 0, OFF(log_format), "stderr log: text, or json (one object per line)", SERVE, "text|json", 0},
    {"quiet", OPT_FLAG, "0", 0, 1, 0, OFF(quiet), "no request log lines (start-up and errors only)", SERVE, NULL, 0},
    {"verbose", OPT_FLAG, "0", 0, 1, 0, OFF(verbose), "also log /health, /ready and /metrics probes", SERVE, NULL, 0},
    {"prompt", OPT_STR, "", 0, 0, 0, OFF(prompt), "prompt text (needs tokenizer.json)", GEN, NULL, 0},
    {"prompt-ids", OPT_STR, "", 0, 0, 0, OFF(prompt_ids), "prompt as comma-separated token ids", GEN, NULL, 0},
    {"max-tokens", OPT_LONG, "64", 0, 1 << 20, 0, OFF(gen_max_tokens), "tokens to generate", GEN, NULL, 0},
    ENG_SAMPLING_FIELDS(SAMPLING_OPT)
    {"stop", OPT_LIST, "", 0, ENG_STOP_LEN_MAX, 0, OFF(stop), "stop before this text (repeat for up to 8 strings)", GEN, NULL, 0},
    {"print-ids", OPT_FLAG, "0", 0, 1, 0, OFF(print_ids), "print generated token ids, not text", GEN, NULL, 0},
    {"ignore-eos", OPT_FLAG, "0", 0, 1, 0, OFF(ignore_eos), "do not stop at the end-of-text token", GEN, NULL, 0},
    {"dump-logits", OPT_STR, "", 0, 0, 0, OFF(dump_logits), "write f32 logits rows to FILE", GEN, NULL, 0},
};
#undef SAMPLING_OPT
#undef OFF
#define N_OPTS (sizeof opt_rows / sizeof opt_rows[0])

static void *field(srv_config *c, const opt_row *o) { return (char *)c + o->offset; }
static const void *cfield(const srv_config *c, const opt_row *o)
{
    return (const char *)c + o->offset;
}

/* 1 if text is one of o->choices ("a|b|c"). */
static int choice_ok(const opt_row *o, const char *text)
{
    size_t n = strlen(text);
    for (const char *p = o->choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, text, n))
            return 1;
        p += len + (bar != NULL);
    }
    return 0;
}

/* "--backend must be cpu or cuda, got 'tpu'" */
static int choice_error(const opt_row *o, const char *text, ssmd_err *err)
{
    char list[128] = "";
    size_t k = 0;
    for (const char *p = o->choices; *p && k < sizeof list - 8;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        k += (size_t)snprintf(list + k, sizeof list - k, "%s%.*s", k ? (bar ? ", " : " or ") : "", (int)len, p);
        p += len + (bar != NULL);
    }
    return ssmd_err_set(err, SSMD_EINVAL, "--%s must be %s, got '%s'", o->name, list, text);
}

/* A number for o from text, in o's bounds; SSMD_EINVAL naming the flag.
 * Whole-number types take decimal digits only (no "1e3", no "0x10"). */
static int opt_number(const opt_row *o, const char *text, double *out, ssmd_err *err)
{
    char *end = NULL;
    int whole = o->type != OPT_DOUBLE && o->type != OPT_FLOAT;
    double v;
    errno = 0;
    if (!whole)
        v = strtod(text, &end);
    else if (o->type == OPT_U64 && text[0] != '-') /* strtoull would wrap a minus sign */
        v = (double)strtoull(text, &end, 10);
    else
        v = (double)strtoll(text, &end, 10);
    if (errno || !*text || *end || !isfinite(v) || v < o->lo || v > o->hi || (o->lo_open && v == o->lo))
        return ssmd_err_set(err, SSMD_EINVAL, whole ? "--%s must be an integer in %s%.0f, %.0f], got '%s'"
                                                    : "--%s must be a number in %s%g, %g], got '%s'",
                            o->name, o->lo_open ? "(" : "[", o->lo, o->hi, text);
    *out = v;
    return SSMD_OK;
}

/* Sets option o from text; returns SSMD_OK or SSMD_EINVAL. */
static int opt_set(srv_config *c, const opt_row *o, const char *text, ssmd_err *err)
{
    double v = 0;
    if (o->type == OPT_STR) {
        if (o->choices && !choice_ok(o, text))
            return choice_error(o, text, err);
        char **p = field(c, o);
        free(*p);
        *p = xstrdup(text);
        return SSMD_OK;
    }
    if (o->type == OPT_LIST) {
        srv_strlist *l = field(c, o);
        if (!*text)
            return SSMD_OK; /* the default: none */
        if (l->n == ENG_STOP_MAX || strlen(text) > (size_t)o->hi)
            return ssmd_err_set(err, SSMD_EINVAL, "--%s takes at most %d strings of at most %.0f bytes",
                                o->name, ENG_STOP_MAX, o->hi);
        l->v[l->n++] = xstrdup(text);
        return SSMD_OK;
    }
    int rc = opt_number(o, text, &v, err);
    if (rc != SSMD_OK)
        return rc;
    switch (o->type) {
    case OPT_LONG:
    case OPT_FLAG:
        *(long *)field(c, o) = (long)v;
        break;
    case OPT_DOUBLE:
        *(double *)field(c, o) = v;
        break;
    case OPT_FLOAT:
        *(float *)field(c, o) = (float)v;
        break;
    case OPT_INT:
        *(int *)field(c, o) = (int)v;
        break;
    case OPT_U64: /* strtoull: doubles lose the low bits of large seeds */
        *(uint64_t *)field(c, o) = strtoull(text, NULL, 10);
        break;
    default:
        break;
    }
    return SSMD_OK;
}

void srv_config_defaults(srv_config *c)
{
    memset(c, 0, sizeof *c);
    eng_sampling_defaults(&c->sampling); /* the rows with def == NULL */
    for (size_t i = 0; i < N_OPTS; i++) {
        if (!opt_rows[i].def)
            continue;
        int rc = opt_set(c, &opt_rows[i], opt_rows[i].def, NULL);
        (void)rc;
    }
}

void srv_config_free(srv_config *c)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_row *o = &opt_rows[i];
        if (o->type == OPT_STR) {
            free(*(char **)field(c, o));
        } else if (o->type == OPT_LIST) {
            srv_strlist *l = field(c, o);
            for (int k = 0; k < l->n; k++)
                free(l->v[k]);
        }
    }
    memset(c, 0, sizeof *c);
}

static const opt_row *opt_find(srv_front front, const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if ((opt_rows[i].fronts & front) && strlen(opt_rows[i].name) == len &&
            !strncmp(opt_rows[i].name, name, len))
            return &opt_rows[i];
    return NULL;
}

/* What the front ends check across options, after every flag is read. */
static int config_check(const srv_config *c, srv_front front, ssmd_err *err)
{
    if (!c->model || !*c->model)
        return ssmd_err_set(err, SSMD_EINVAL, "--model DIR must not be empty");
    if (front == SRV_FRONT_SERVE && c->default_max_tokens > c->max_tokens)
        return ssmd_err_set(err, SSMD_EINVAL, "--default-max-tokens (%ld) exceeds --max-tokens (%ld)",
                            c->default_max_tokens, c->max_tokens);
    if (front == SRV_FRONT_GENERATE && !*c->prompt == !*c->prompt_ids)
        return ssmd_err_set(err, SSMD_EINVAL, "give exactly one of --prompt and --prompt-ids (not empty)");
    return SSMD_OK;
}

int srv_config_parse(srv_config *c, srv_front front, int argc, char **argv, FILE *out, ssmd_err *err)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            srv_config_print_help(front, out);
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
        const opt_row *o = opt_find(front, name, len);
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
        if (o->type == OPT_LIST && !*val)
            return ssmd_err_set(err, SSMD_EINVAL, "--%s must not be empty", o->name);
        int rc = opt_set(c, o, val, err);
        if (rc != SSMD_OK)
            return rc;
    }
    return config_check(c, front, err);
}

/* o's value in c as text (in buf, or a string of c); "(set)" for a set
 * secret. */
static const char *opt_format(const srv_config *c, const opt_row *o, char *buf, size_t cap)
{
    const char *v = buf;
    switch (o->type) {
    case OPT_STR:
        v = *(char *const *)cfield(c, o);
        if (o->secret)
            v = (v && *v) ? "(set)" : "";
        break;
    case OPT_LONG:
    case OPT_FLAG:
        snprintf(buf, cap, "%ld", *(const long *)cfield(c, o));
        break;
    case OPT_DOUBLE:
        snprintf(buf, cap, "%g", *(const double *)cfield(c, o));
        break;
    case OPT_FLOAT:
        snprintf(buf, cap, "%g", (double)*(const float *)cfield(c, o));
        break;
    case OPT_INT:
        snprintf(buf, cap, "%d", *(const int *)cfield(c, o));
        break;
    case OPT_U64:
        snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)cfield(c, o));
        break;
    case OPT_LIST: {
        const srv_strlist *l = cfield(c, o);
        size_t k = 0;
        buf[0] = '\0';
        for (int i = 0; i < l->n && k < cap; i++)
            k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? "," : "", l->v[i]);
        break;
    }
    }
    return v ? v : "";
}

void srv_config_print_help(srv_front front, FILE *out)
{
    if (front == SRV_FRONT_GENERATE)
        fprintf(out, "usage: ssmd generate [--model DIR] (--prompt TEXT | --prompt-ids 1,2,3) [options]\n\n"
                     "One-shot generation: the text (or, with --print-ids, the token ids) goes to stdout.\n\n"
                     "options:\n");
    else
        fprintf(out, "usage: ssmd serve [--model DIR] [options]\n\n"
                     "OpenAI-compatible HTTP server with persistent sessions.\n\noptions:\n");
    srv_config defaults;
    srv_config_defaults(&defaults);
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt_row *o = &opt_rows[i];
        if (!(o->fronts & front))
            continue;
        char flag[64], buf[64];
        snprintf(flag, sizeof flag, "--%s%s", o->name,
                 o->type == OPT_FLAG ? "" : o->type == OPT_STR || o->type == OPT_LIST ? " S" : " N");
        fprintf(out, "  %-24s %s", flag, o->help);
        const char *def = opt_format(&defaults, o, buf, sizeof buf);
        if (o->type == OPT_FLAG)
            fprintf(out, " (default: %s)", strcmp(def, "0") ? "on" : "off");
        else
            fprintf(out, " (default: %s)", *def ? def : "none");
        fputc('\n', out);
    }
    srv_config_free(&defaults);
    fprintf(out, "  %-24s %s\n", "--help", "show this help");
    fprintf(out, "  %-24s %s\n", "--version", "print the version");
}

void srv_config_each(const srv_config *c, srv_front front,
                     void (*fn)(void *arg, const char *name, const char *value), void *arg)
{
    char buf[64 + ENG_STOP_MAX * (ENG_STOP_LEN_MAX + 1)];
    for (size_t i = 0; i < N_OPTS; i++)
        if (opt_rows[i].fronts & front)
            fn(arg, opt_rows[i].name, opt_format(c, &opt_rows[i], buf, sizeof buf));
}

void srv_config_model_opts(const srv_config *c, eng_model_opts *out)
{
    eng_model_opts_defaults(out);
    out->backend = c->backend;
    out->backend_opts.threads = (int)c->threads;
    out->backend_opts.device = (int)c->device;
    int rc = bk_numerics_parse(c->numerics, &out->backend_opts.numerics);
    if (rc != SSMD_OK) /* the table's choices and the backend's names disagree: a bug */
        ssmd_fatal("--numerics '%s' passed the options table but not bk_numerics_parse", c->numerics);
}
