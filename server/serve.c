/* serve.c - `ssmd serve`: parses the options, runs the loop until a drain
 * or a load failure ends it, and returns the exit code.
 *
 * The only place the server's lifetime is decided; never called from a
 * request path.
 */
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "server/model_dir.h"
#include "server/srv.h"

int srv_serve_main(int argc, char **argv)
{
    srv_config cfg;
    srv_config_defaults(&cfg);
    ssmd_err err = {0};
    int rc = srv_config_parse(&cfg, SRV_FRONT_SERVE, argc, argv, stdout, &err);
    if (rc == 1) {
        srv_config_free(&cfg);
        return 0;
    }
    if (rc != SSMD_OK) {
        fprintf(stderr, "ssmd serve: %s\n", err.msg);
        srv_config_free(&cfg);
        return 2;
    }
    srv_log log = {stderr, srv_log_format_parse(cfg.log_format)};
    char path[1024], looked[2048];
    if (srv_model_dir_resolve(&cfg.model, looked, sizeof looked) != 0) {
        srv_log_msg(&log, "error", "no_model",
                    "no --model given and no default model found; looked in %s.  Pass --model DIR with a Hugging "
                    "Face Mamba model (config.json, model.safetensors, tokenizer.json), set SSMD_MODEL=DIR, or "
                    "run `make install`",
                    looked);
        srv_config_free(&cfg);
        return 1;
    }
    /* A directory needs its config.json; a single file (GGUF) carries its own. */
    struct stat sb;
    const int single_file = stat(cfg.model, &sb) == 0 && S_ISREG(sb.st_mode);
    snprintf(path, sizeof path, "%s/config.json", cfg.model);
    if (!single_file && access(path, R_OK) != 0) {
        srv_log_msg(&log, "error", "no_model",
                    "no config.json in %s: pass --model DIR with a Hugging Face Mamba model (config.json, "
                    "model.safetensors, tokenizer.json)",
                    cfg.model);
        srv_config_free(&cfg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        srv_log_msg(&log, "error", "fatal", "cannot create the event loop");
        srv_config_free(&cfg);
        return 1;
    }
    srv_server srv;
    int code = 0;
    if (srv_server_start(&srv, &cfg, &loop, &err) != SSMD_OK) {
        srv_log_msg(&log, "error", "fatal", "%s", err.msg);
        code = 1;
    } else {
        uv_run(&loop, UV_RUN_DEFAULT);
        code = srv.exit_code;
    }
    srv_server_close(&srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        srv_log_msg(&log, "warn", "leak", "event loop still had handles at exit");
    if (code == 0)
        srv_log_msg(&log, "info", "stopped", "stopped");
    srv_config_free(&cfg);
    return code;
}
