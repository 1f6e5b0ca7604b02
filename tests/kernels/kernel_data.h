/* kernel_data.h - random inputs and the relative error the kernel tests
 * (test_kernels.c, test_cpu_ssd.c) judge outputs by.  Header-only, static:
 * included by one test file each. */
#ifndef SSMD_TESTS_KERNEL_DATA_H
#define SSMD_TESTS_KERNEL_DATA_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline float frand(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

static inline float *rnd(size_t n, unsigned *s, float lo, float hi)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        v[i] = lo + (frand(s) + 1.0f) * 0.5f * (hi - lo);
    return v;
}

static inline float *dup(const float *v, size_t n)
{
    float *d = malloc(sizeof(float) * (n ? n : 1));
    memcpy(d, v, sizeof(float) * n);
    return d;
}

/* max |got - want| / max |want|; NaN gives INFINITY. */
static inline double badness(const float *got, const float *want, size_t n)
{
    double scale = 1e-6, worst = 0.0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= 1e30))
            return INFINITY;
        worst = fmax(worst, d / scale);
    }
    return worst;
}

#endif
