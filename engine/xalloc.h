/* xalloc.h - host allocations that cannot fail: on failure they print
 * "ssmd: out of memory (N bytes)" and abort (STYLE.md: a small host
 * allocation failing is not an error a caller could handle).
 *
 * Only for small, bounded host allocations (structs, buffers that grow with
 * text or token history).  Never for sizes a request or a model file picks
 * (the state pool, weights, an uploaded state): those must fail with an
 * ssmd_err the client or the loader message can show.  Any thread.
 */
#ifndef SSMD_XALLOC_H
#define SSMD_XALLOC_H

#include <stdlib.h>
#include <string.h>

#include "engine/error.h"

/* Size 0 is asked as 1 byte, so a NULL result always means failure. */
static inline void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        ssmd_fatal("out of memory (%zu bytes)", bytes);
    return p;
}

static inline void *xcalloc(size_t n, size_t size)
{
    if (size && n > (size_t)-1 / size) /* n * size would wrap: never a small allocation */
        ssmd_fatal("out of memory (%zu x %zu bytes)", n, size);
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        ssmd_fatal("out of memory (%zu bytes)", n * size);
    return p;
}

static inline void *xrealloc(void *old, size_t bytes)
{
    void *p = realloc(old, bytes ? bytes : 1);
    if (!p)
        ssmd_fatal("out of memory (%zu bytes)", bytes);
    return p;
}

static inline char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return (char *)memcpy(xmalloc(n), s, n); /* the cast: also C++ (kernels/) */
}

#endif
