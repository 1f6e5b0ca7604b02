/* main.c - the ssmd command: dispatches to a subcommand.  The only file
 * that may exit the process (by returning from main). */
#include <stdio.h>
#include <string.h>

#include "server/generate.h"
#include "server/options.h"
#include "server/quantize.h"
#include "server/srv.h"

static void usage(FILE *f)
{
    fprintf(f,
            "ssmd %s - inference server for state-space language models (Mamba-1, S4/S4D)\n"
            "\n"
            "usage: ssmd <command> [options]\n"
            "\n"
            "commands:\n"
            "  serve      OpenAI-compatible HTTP server with persistent sessions\n"
            "             (default model: models/default; see `ssmd serve --help`)\n"
            "  generate   one-shot generation from a prompt to stdout\n"
            "             (see `ssmd generate --help`)\n"
            "  quantize   write a model as a GGUF file with Q8_0/Q4_0/Q4_K matrices\n"
            "             (see `ssmd quantize --help`)\n"
            "\n"
            "options:\n"
            "  --help     show this help\n"
            "  --version  print the version\n"
            "\n"
            "example: ssmd serve --model models/default --port 8080\n",
            SSMD_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "serve"))
        return srv_serve_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "generate"))
        return srv_generate_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "quantize"))
        return srv_quantize_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("ssmd %s\n", SSMD_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "ssmd: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
