/* model_dir.c - the default model's directory, found like an installed
 * daemon finds its data (see model_dir.h).
 *
 * The current directory comes last, only as a fallback: a daemon is started
 * from anywhere (a unit file, a shell in $HOME), so it must not decide.
 */
#include "server/model_dir.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/xalloc.h"

static int has_config(const char *dir)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/config.json", dir);
    return access(path, R_OK) == 0;
}

/* Tries dir: on success *model becomes a copy; else dir joins `looked`. */
static int try_dir(char **model, const char *dir, char *looked, size_t cap)
{
    if (has_config(dir)) {
        char *real = realpath(dir, NULL); /* no "bin/.." in what the logs show */
        free(*model);
        *model = xstrdup(real ? real : dir);
        free(real);
        return 1;
    }
    size_t n = strlen(looked);
    snprintf(looked + n, cap - n, "%s%s", n ? ", " : "", dir);
    return 0;
}

int srv_model_dir_resolve(char **model, char *looked, size_t cap)
{
    looked[0] = '\0';
    if (strcmp(*model, SRV_MODEL_DEFAULT) != 0)
        return 0;
    char exe[PATH_MAX], dir[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    const char *bin_dir = NULL;
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            bin_dir = exe;
        }
    }
    if (bin_dir) {
        snprintf(dir, sizeof dir, "%s/" SRV_MODEL_DEFAULT, bin_dir);
        if (try_dir(model, dir, looked, cap))
            return 0;
        snprintf(dir, sizeof dir, "%s/../" SRV_MODEL_DEFAULT, bin_dir);
        if (try_dir(model, dir, looked, cap))
            return 0;
    }
    const char *env = getenv("SSMD_MODEL");
    if (env && *env) {
        if (try_dir(model, env, looked, cap))
            return 0;
    } else {
        size_t k = strlen(looked);
        snprintf(looked + k, cap - k, "%s$SSMD_MODEL (not set)", k ? ", " : "");
    }
    if (bin_dir) {
        snprintf(dir, sizeof dir, "%s/../share/ssmd/" SRV_MODEL_DEFAULT, bin_dir);
        if (try_dir(model, dir, looked, cap))
            return 0;
    }
    /* last, as before there was an install layout: a binary run from a
     * repository whose build directory lies elsewhere (BUILD=/out) */
    if (try_dir(model, "./" SRV_MODEL_DEFAULT, looked, cap))
        return 0;
    return -1;
}
