/* registry.c - every model family ssmd serves: adding one is a file in
 * models/, its ops in kernels/, and one line here. */
#include <stdio.h>
#include <string.h>

#include "engine/arch.h"
#include "models/mamba1.h"
#include "models/mamba2.h"
#include "models/s4.h"
#include "models/s5.h"

static const eng_arch *const families[] = {
    &mamba1_arch,
    &mamba2_arch,
    &s4_arch,
    &s5_arch,
};

#define N_FAMILIES (sizeof families / sizeof families[0])

const eng_arch *eng_arch_find(const char *model_type)
{
    for (size_t i = 0; i < N_FAMILIES; i++)
        for (const char *const *t = families[i]->model_types; *t; t++)
            if (!strcmp(*t, model_type))
                return families[i];
    return NULL;
}

const eng_arch *eng_arch_find_untyped(const json_t *root)
{
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (families[i]->claims_untyped && families[i]->claims_untyped(root))
            return families[i];
    return NULL;
}

void eng_arch_list_types(char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_FAMILIES; i++)
        for (const char *const *t = families[i]->model_types; *t && len < size; t++)
            len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? ", " : "", *t);
}
