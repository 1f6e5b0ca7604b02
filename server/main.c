/* main.c - the ssmd command: dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "server/generate.h"
#include "server/srv.h"

#define SSMD_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f,
            "ssmd %s - inference server for state-space language models\n"
            "usage: ssmd <command> [options]\n"
            "  serve      HTTP server (ssmd serve --help)\n"
            "  generate   one-shot generation (ssmd generate --help)\n"
            "  --version  print the version\n",
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
    if (!strcmp(argv[1], "--version")) {
        printf("ssmd %s\n", SSMD_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "ssmd: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
