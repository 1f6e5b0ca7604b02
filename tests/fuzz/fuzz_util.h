/* fuzz_util.h - helpers shared by the libFuzzer targets of tests/fuzz/: a
 * private scratch directory per process and writing one input into a file
 * there, for the parsers that only take a path.
 *
 * Test code only; never linked into ssmd.  Header-only (static functions) so
 * each target stays one translation unit.
 */
#ifndef SSMD_FUZZ_UTIL_H
#define SSMD_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A directory made once per process (mkdtemp under $TMPDIR or /tmp) and
 * removed at exit with the files the target wrote into it. */
static char fuzz_dir_path[256];
static const char *fuzz_dir_files[4];

static void fuzz_dir_cleanup(void)
{
    char p[512];
    for (int i = 0; i < 4 && fuzz_dir_files[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", fuzz_dir_path, fuzz_dir_files[i]);
        unlink(p);
    }
    rmdir(fuzz_dir_path);
}

static const char *fuzz_dir(void)
{
    if (!fuzz_dir_path[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/ssmd-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fuzz_dir_path)) {
            perror("mkdtemp");
            abort();
        }
        atexit(fuzz_dir_cleanup);
    }
    return fuzz_dir_path;
}

/* Writes data into fuzz_dir()/name (replacing it) and puts its path in
 * path[cap].  Aborts on I/O errors: those are the harness's, not the
 * parser's. */
static void fuzz_write_file(const char *name, const unsigned char *data, size_t size, char *path, size_t cap)
{
    const char *d = fuzz_dir();
    for (int i = 0; i < 4; i++) {
        if (!fuzz_dir_files[i]) {
            fuzz_dir_files[i] = name;
            break;
        }
        if (!strcmp(fuzz_dir_files[i], name))
            break;
    }
    snprintf(path, cap, "%s/%s", d, name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

#endif
