/* st_writer.h - test-only helpers: a scratch directory tree under /tmp and
 * safetensors files written byte by byte (header text built here, not by
 * engine/weights/safetensors.c, so that the reader is checked against an independent
 * writer).  Header-only, every helper static; never linked into ssmd.
 * Failures abort the test process: these are fixtures, not code under test.
 */
#ifndef SSMD_TESTS_ST_WRITER_H
#define SSMD_TESTS_ST_WRITER_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline void stw_die(const char *what, const char *path)
{
    fprintf(stderr, "st_writer: %s %s failed\n", what, path);
    abort();
}

/* Creates a fresh directory /tmp/ssmd-<tag>-XXXXXX into buf (>= 64 bytes). */
static inline void stw_mkdtemp(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/ssmd-%s-XXXXXX", tag);
    if (!mkdtemp(buf))
        stw_die("mkdtemp", buf);
}

/* Creates dir/name (a subdirectory) and writes its path into buf. */
static inline void stw_subdir(char *buf, size_t n, const char *dir, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
    if (mkdir(buf, 0700) != 0)
        stw_die("mkdir", buf);
}

static inline int stw_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Removes dir and everything under it (never follows symlinks). */
static inline void stw_rmtree(const char *dir)
{
    if (dir[0])
        nftw(dir, stw_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes n bytes to dir/name. */
static inline void stw_write_bytes(const char *dir, const char *name, const void *bytes, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(bytes, 1, n, f) != n) || fclose(f) != 0)
        stw_die("write", path);
}

static inline void stw_write_text(const char *dir, const char *name, const char *text)
{
    stw_write_bytes(dir, name, text, strlen(text));
}

/* Writes a safetensors file from its parts: the u64 little-endian length
 * `declared_len` (pass UINT64_MAX to use strlen(header)), the header text,
 * then `data_len` data bytes. */
static inline void stw_write_raw(const char *dir, const char *name, uint64_t declared_len,
                          const char *header, const void *data, size_t data_len)
{
    size_t hlen = strlen(header);
    uint64_t len = declared_len == UINT64_MAX ? hlen : declared_len;
    size_t total = 8 + hlen + data_len;
    unsigned char *buf = malloc(total);
    if (!buf)
        stw_die("malloc", name);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(len >> (8 * i));
    memcpy(buf + 8, header, hlen);
    if (data_len)
        memcpy(buf + 8 + hlen, data, data_len);
    stw_write_bytes(dir, name, buf, total);
    free(buf);
}

/* A well-formed file built tensor by tensor: data laid out in order. */
typedef struct stw_file {
    char header[65536]; /* JSON text so far, without the closing brace */
    size_t hlen;
    unsigned char data[1 << 16];
    size_t dlen;
} stw_file;

static inline void stw_begin(stw_file *w)
{
    w->hlen = (size_t)snprintf(w->header, sizeof w->header,
                               "{\"__metadata__\":{\"format\":\"pt\"}");
    w->dlen = 0;
}

/* Appends a tensor: its bytes go at the end of the data section. */
static inline void stw_add(stw_file *w, const char *name, const char *dtype, int ndim,
                    const int64_t *shape, const void *bytes, size_t nbytes)
{
    if (w->dlen + nbytes > sizeof w->data)
        stw_die("stw_add (data full)", name);
    w->hlen += (size_t)snprintf(w->header + w->hlen, sizeof w->header - w->hlen,
                                ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", name, dtype);
    for (int i = 0; i < ndim; i++)
        w->hlen += (size_t)snprintf(w->header + w->hlen, sizeof w->header - w->hlen, "%s%lld",
                                    i ? "," : "", (long long)shape[i]);
    w->hlen += (size_t)snprintf(w->header + w->hlen, sizeof w->header - w->hlen,
                                "],\"data_offsets\":[%zu,%zu]}", w->dlen, w->dlen + nbytes);
    if (w->hlen >= sizeof w->header - 16)
        stw_die("stw_add (header full)", name);
    if (nbytes)
        memcpy(w->data + w->dlen, bytes, nbytes);
    w->dlen += nbytes;
}

/* Closes the header, pads it with spaces to `align` bytes (1 = none) as the
 * Python library does with 8, and writes dir/name. */
static inline void stw_finish(stw_file *w, const char *dir, const char *name, int align)
{
    w->header[w->hlen++] = '}';
    while ((8 + w->hlen) % (size_t)align != 0)
        w->header[w->hlen++] = ' ';
    w->header[w->hlen] = '\0';
    stw_write_raw(dir, name, UINT64_MAX, w->header, w->data, w->dlen);
}

#endif
