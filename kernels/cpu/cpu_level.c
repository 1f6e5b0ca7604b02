/* cpu_level.c - which kernel level this CPU runs (cpuid and XGETBV on
 * x86-64, NEON being part of the aarch64 baseline), and the choice of a
 * table for the backend (see cpu_kernels.h).
 *
 * Never executes an instruction of a level it has not verified: AVX-512
 * needs both the cpuid bits and the OS saving the zmm/opmask state (XCR0),
 * AVX2 the ymm state; a binary built for the x86-64 baseline must not die
 * of SIGILL on an older host.
 */
#include "kernels/cpu/cpu_kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#define CPU_X86 1
#elif defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

static const char *const level_names[CPU_LEVEL_COUNT] = {
    [CPU_LEVEL_SCALAR] = "scalar",
    [CPU_LEVEL_NEON] = "neon",
    [CPU_LEVEL_AVX2] = "avx2",
    [CPU_LEVEL_AVX512] = "avx512",
};

const char *cpu_level_name(cpu_level l)
{
    return l >= 0 && l < CPU_LEVEL_COUNT ? level_names[l] : "?";
}

int cpu_level_parse(const char *name, cpu_level *out)
{
    for (int l = 0; l < CPU_LEVEL_COUNT; l++)
        if (name && !strcmp(name, level_names[l])) {
            *out = (cpu_level)l;
            return 0;
        }
    return -1;
}

#if CPU_X86
/* XCR0: which register states the OS saves across context switches. */
static unsigned long long xgetbv0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

/* The highest x86 level the CPU and the OS support. */
static cpu_level x86_level(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return CPU_LEVEL_SCALAR;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1,
              f16c = (c >> 29) & 1;
    if (!osxsave || !avx || !fma || !f16c)
        return CPU_LEVEL_SCALAR;
    unsigned long long xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) /* xmm and ymm state */
        return CPU_LEVEL_SCALAR;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !((b >> 5) & 1)) /* AVX2 */
        return CPU_LEVEL_SCALAR;
    const int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
              avx512vl = (b >> 31) & 1;
    if (avx512f && avx512dq && avx512bw && avx512vl && (xcr0 & 0xe6) == 0xe6) /* + opmask, zmm */
        return CPU_LEVEL_AVX512;
    return CPU_LEVEL_AVX2;
}

/* AVX-512 VNNI (cpuid 7.0 ecx bit 11), on top of x86_level's AVX-512. */
static int x86_vnni(void)
{
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && ((c >> 11) & 1);
}

/* AVX-VNNI (cpuid 7.1 eax bit 4), on top of x86_level's AVX2: ymm state
 * only, which AVX2 already needs. */
static int x86_avxvnni(void)
{
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 4) & 1);
}
#endif

/* Level l's table without extra instructions, or NULL if the CPU or this
 * binary cannot run the level. */
static const cpu_kernels *plain_for(cpu_level l)
{
    switch (l) {
    case CPU_LEVEL_SCALAR: return &cpu_kernels_scalar;
#if CPU_X86
    case CPU_LEVEL_AVX2: return x86_level() >= CPU_LEVEL_AVX2 ? &cpu_kernels_avx2 : NULL;
    case CPU_LEVEL_AVX512: return x86_level() >= CPU_LEVEL_AVX512 ? &cpu_kernels_avx512 : NULL;
#elif defined(__aarch64__)
    case CPU_LEVEL_NEON: return &cpu_kernels_neon;
#endif
    default: return NULL;
    }
}

const cpu_kernels *cpu_kernels_for(cpu_level l)
{
    const cpu_kernels *plain = plain_for(l);
#if CPU_X86
    if (plain == &cpu_kernels_avx2 && x86_avxvnni())
        return &cpu_kernels_avx2vnni;
    if (plain == &cpu_kernels_avx512 && x86_vnni())
        return &cpu_kernels_avx512vnni;
#elif defined(__aarch64__)
    if (plain == &cpu_kernels_neon && (getauxval(AT_HWCAP) & HWCAP_ASIMDDP))
        return &cpu_kernels_neon_dotprod;
#endif
    return plain;
}

int cpu_kernels_list(const cpu_kernels *out[CPU_LEVEL_COUNT])
{
    int n = 0;
    for (int l = 0; l < CPU_LEVEL_COUNT; l++)
        if (cpu_kernels_for((cpu_level)l))
            out[n++] = cpu_kernels_for((cpu_level)l);
    return n;
}

const cpu_kernels *cpu_kernels_best(void)
{
    const cpu_kernels *all[CPU_LEVEL_COUNT];
    return all[cpu_kernels_list(all) - 1];
}

/* "scalar, avx2, avx512": the levels this binary runs on this CPU. */
static void list_levels(char *buf, size_t size)
{
    const cpu_kernels *all[CPU_LEVEL_COUNT];
    int n = cpu_kernels_list(all);
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s%s", i ? ", " : "", all[i]->name, all[i]->variant);
    }
}

char *openblas_get_corename(void); /* not declared by every cblas.h */

void cpu_kernels_describe(char *buf, size_t size)
{
    char have[96];
    list_levels(have, sizeof have);
    const char *forced = getenv("SSMD_CPU");
    const cpu_kernels *k;
    if (cpu_kernels_choose(forced, &k, NULL) != SSMD_OK)
        snprintf(buf, size, "none (SSMD_CPU=%s cannot run here; this CPU runs %s)", forced, have);
    else if (forced && *forced)
        snprintf(buf, size, "%s%s (forced by SSMD_CPU; this CPU runs %s)", k->name, k->variant,
                 have);
    else
        snprintf(buf, size, "%s%s (the best of %s)", k->name, k->variant, have);
    /* and OpenBLAS's, which prefill's sgemm runs: chosen by OpenBLAS from
     * cpuid, or by OPENBLAS_CORETYPE (some hosts set it for every process) */
    const size_t used = strlen(buf);
    snprintf(buf + used, size - used, "; OpenBLAS's %s kernels%s", openblas_get_corename(),
             getenv("OPENBLAS_CORETYPE") ? " (OPENBLAS_CORETYPE)" : "");
}

int cpu_kernels_choose(const char *forced, const cpu_kernels **out, ssmd_err *err)
{
    if (!forced || !*forced) {
        *out = cpu_kernels_best();
        return SSMD_OK;
    }
    char have[96], name[32];
    list_levels(have, sizeof have);
    /* "avx2-plain": the level without its extra instructions, to measure
     * here what a CPU that lacks them runs */
    const char *dash = strchr(forced, '-');
    const int plain = dash && !strcmp(dash, "-plain");
    snprintf(name, sizeof name, "%.*s", plain ? (int)(dash - forced) : (int)strlen(forced), forced);
    cpu_level l;
    if (cpu_level_parse(name, &l) != 0)
        return ssmd_err_set(err, SSMD_EINVAL,
                            "SSMD_CPU=%s: unknown kernel level (this CPU runs: %s; a -plain suffix "
                            "drops VNNI / dotprod)", forced, have);
    const cpu_kernels *k = plain ? plain_for(l) : cpu_kernels_for(l);
    if (!k)
        return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                            "SSMD_CPU=%s: this binary or CPU cannot run that level (it runs: %s)",
                            forced, have);
    *out = k;
    return SSMD_OK;
}
