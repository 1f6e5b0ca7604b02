/* registry.c - the one list of backends: name -> constructor.
 *
 * The cpu backend is always linked.  The others live in kernels/ sources
 * that only some binaries link (`make cuda` links kernels/cuda; kernel tests
 * link the emulated twin), so they are weak references here: NULL when
 * absent, and the CPU-only build links without them.
 */
#include <stdio.h>
#include <string.h>

#include "engine/backend.h"

int kc_cpu_backend_create(const bk_options *o, bk_backend **out, ssmd_err *err);
int kc_cuda_backend_create(const bk_options *o, bk_backend **out, ssmd_err *err)
    __attribute__((weak));
int kc_emu_backend_create(const bk_options *o, bk_backend **out, ssmd_err *err)
    __attribute__((weak));

typedef int (*bk_create_fn)(const bk_options *o, bk_backend **out, ssmd_err *err);

typedef struct bk_entry {
    const char *name;
    bk_create_fn create; /* NULL: not linked into this binary */
    int listed;          /* named in "have: ..." (the emulation is for tests) */
} bk_entry;

void bk_options_defaults(bk_options *o)
{
    *o = (bk_options){.threads = 0, .numerics = BK_NUMERICS_EXACT, .device = 0};
}

int bk_numerics_parse(const char *name, bk_numerics *out)
{
    if (!strcmp(name, "exact"))
        *out = BK_NUMERICS_EXACT;
    else if (!strcmp(name, "fast"))
        *out = BK_NUMERICS_FAST;
    else
        return SSMD_EINVAL;
    return SSMD_OK;
}

const char *bk_numerics_name(bk_numerics n) { return n == BK_NUMERICS_FAST ? "fast" : "exact"; }

int bk_backend_create(const char *name, const bk_options *opts, bk_backend **out, ssmd_err *err)
{
    const bk_entry table[] = {
        {"cpu", kc_cpu_backend_create, 1},
        {"cuda", kc_cuda_backend_create, 1},
        {"emu", kc_emu_backend_create, 0},
    };
    bk_options defaults;
    if (!opts) {
        bk_options_defaults(&defaults);
        opts = &defaults;
    }
    if (!name)
        name = "cpu";
    char have[64] = "";
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (table[i].create && !strcmp(name, table[i].name))
            return table[i].create(opts, out, err);
        if (table[i].create && table[i].listed)
            snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", *have ? ", " : "",
                     table[i].name);
    }
    return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                        "backend '%s' is not available in this build (have: %s)", name, have);
}
