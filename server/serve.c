/* serve.c - `ssmd serve`: parses the options, runs the loop until a drain
 * or a load failure ends it, and returns the exit code.
 *
 * The only place the server's lifetime is decided; never called from a
 * request path.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "server/srv.h"

int srv_serve_main(int argc, char **argv)
{
    srv_config cfg;
    srv_config_defaults(&cfg);
    ssmd_err err = {0};
    int rc = srv_config_parse(&cfg, argc, argv, stdout, &err);
    if (rc == 1) {
        srv_config_free(&cfg);
        return 0;
    }
    if (rc != SSMD_OK) {
        fprintf(stderr, "ssmd serve: %s\n", err.msg);
        srv_config_free(&cfg);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        fprintf(stderr, "ssmd serve: cannot create the event loop\n");
        srv_config_free(&cfg);
        return 1;
    }
    srv_server srv;
    int code = 0;
    if (srv_server_start(&srv, &cfg, &loop, &err) != SSMD_OK) {
        fprintf(stderr, "ssmd serve: %s\n", err.msg);
        code = 1;
    } else {
        uv_run(&loop, UV_RUN_DEFAULT);
        code = srv.exit_code;
    }
    srv_server_close(&srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        fprintf(stderr, "ssmd serve: event loop still had handles at exit\n");
    srv_config_free(&cfg);
    if (code == 0)
        fprintf(stderr, "ssmd: stopped\n");
    return code;
}
