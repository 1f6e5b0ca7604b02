/* emu.cpp - runs CUDA kernels (compiled for the host with cuda_shim.h) on the
 * CPU, so that every kernel can be executed and checked without a GPU.
 *
 * Each CUDA thread of a block is a fiber with its own stack, so
 * kernel code runs unmodified, locals and all.  A fiber runs until it reaches
 * a synchronisation point (__syncthreads, a warp shuffle/vote/syncwarp) or
 * returns; the scheduler then resumes the other runnable fibers, in an order
 * shuffled by a seeded RNG, and releases a barrier once every thread it
 * concerns has arrived.  So between two barriers threads really interleave in
 * varying orders: a missing __syncthreads or a race on shared memory shows up
 * as a wrong result.  Blocks run one after another in shuffled order (races
 * between blocks show up too).  Shared memory is a fresh malloc per block
 * filled with 0xFF bytes (NaN as float), so reading what nobody wrote shows,
 * and AddressSanitizer guards its bounds.
 *
 * Strictness beyond what a GPU enforces: __syncthreads after some threads of
 * the block returned, threads waiting at different __syncthreads, warp
 * operations whose mask names exited or absent lanes, and launch shapes a GPU
 * rejects are all reported as failures (kc_emu_error), and the launch stops.
 *
 * Not emulated: concurrent progress inside a barrier interval (a plain
 * read-modify-write race between threads of one block is not caught), memory
 * ordering, timing.  Never used by the production binary.
 */
#include "kernels/emu/cuda_shim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#if !defined(__x86_64__) || defined(EMU_UCONTEXT)
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif


/* ---- context switching --------------------------------------------------
 * On x86-64 a minimal switch (callee-saved registers, MXCSR and the x87
 * control word, then the stack pointer): no signal-mask system call and no
 * sanitizer interceptor per switch.  Elsewhere, ucontext. */
#if defined(__x86_64__) && !defined(EMU_UCONTEXT)
typedef struct emu_ctx {
    void *sp;
} emu_ctx;

extern "C" void emu_ctx_switch(void **save_sp, void *new_sp);
asm(".text\n"
    ".globl emu_ctx_switch\n"
    ".type emu_ctx_switch,@function\n"
    "emu_ctx_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size emu_ctx_switch, .-emu_ctx_switch\n");

/* A fresh context that starts entry() on [stack, stack + size). */
static void ctx_make(emu_ctx *c, char *stack, size_t size, void (*entry)(void))
{
    uintptr_t top = ((uintptr_t)(stack + size)) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)top;
    *--sp = 0;                     /* entry's return address: never used */
    *--sp = (uint64_t)(uintptr_t)entry;
    for (int i = 0; i < 6; i++)
        *--sp = 0;                 /* rbp rbx r12-r15 */
    *--sp = 0x037f00001f80ULL;     /* MXCSR default, x87 control word default */
    c->sp = sp;
}

static void ctx_swap(emu_ctx *from, emu_ctx *to) { emu_ctx_switch(&from->sp, to->sp); }
#else
typedef struct emu_ctx {
    ucontext_t uc;
} emu_ctx;

static void ctx_make(emu_ctx *c, char *stack, size_t size, void (*entry)(void))
{
    if (getcontext(&c->uc) != 0) {
        perror("emu: getcontext");
        abort();
    }
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = NULL;
    makecontext(&c->uc, entry, 0);
}

static void ctx_swap(emu_ctx *from, emu_ctx *to) { swapcontext(&from->uc, &to->uc); }
#endif

enum {
    ST_RUN,   /* runnable */
    ST_BLOCK, /* waiting at __syncthreads */
    ST_WARP,  /* waiting at a warp exchange */
    ST_DONE,  /* returned */
};

enum {
    MAX_THREADS = 1024,
    STACK_BYTES = 64 * 1024,
    MAX_SHARED_DECLS = 64,
    MAX_SITES = 256,
    SMEM_LIMIT = 48 * 1024, /* default per-block limit without opt-in */
};

typedef struct fiber {
    emu_builtins b;
    emu_ctx ctx;
    char *map;          /* guard page + stack */
    char *stack;        /* STACK_BYTES */
    int status, site;   /* site: barrier waited at */
    unsigned mask;      /* warp exchange mask */
    uint64_t send;      /* warp exchange value */
    int shared_k;       /* KC_SHARED declarations reached in this block */
    int dirty;          /* abandoned mid-run: stack shadow must be reset */
    void *fake_stack;   /* ASan bookkeeping across switches */
} fiber;

typedef struct site {
    const char *file;
    int line;
    char name[96];
} site;

/* The harness: one per process (see emu.h). */
typedef struct harness {
    uint64_t rng;
    int no_shuffle;
    fiber *fibers[MAX_THREADS];
    int n;                      /* threads in the block that runs */
    fiber *cur;
    emu_ctx sched;
    void *sched_fake;
    const void *sched_bottom;
    size_t sched_size;
    /* launch */
    void (*fn)(void *);
    void *arg;
    const char *name;
    uint3 block_idx;
    /* block */
    void *shared[MAX_SHARED_DECLS];
    size_t shared_bytes[MAX_SHARED_DECLS], shared_total;
    int n_shared;
    void *dyn;
    size_t dyn_bytes;
    uint64_t recv[MAX_THREADS / 32][32];
    /* results */
    int failed;
    char err[1024];
    kc_emu_stats stats;
    site sites[MAX_SITES];
    int n_sites, disabled_site; /* disabled_site: site index + 1, 0 = none */
} harness;

/* Zero-initialised: rng state 0, shuffle on, no site disabled. */
static harness H;

emu_launch_hook_fn emu_launch_hook;

static uint64_t rng_next(void)
{
    /* splitmix64 */
    uint64_t z = (H.rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void shuffle(int *v, int n)
{
    if (H.no_shuffle)
        return;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_next() % (uint64_t)(i + 1));
        int t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

extern "C" void emu_fail(const char *fmt, ...)
{
    if (H.failed)
        return;
    H.failed = 1;
    int n = snprintf(H.err, sizeof H.err, "%s block (%u,%u,%u)", H.name ? H.name : "(no launch)",
                     H.block_idx.x, H.block_idx.y, H.block_idx.z);
    if (H.cur)
        n += snprintf(H.err + n, sizeof H.err - (size_t)n, " thread (%u,%u,%u)",
                      H.cur->b.thread_idx.x, H.cur->b.thread_idx.y, H.cur->b.thread_idx.z);
    n += snprintf(H.err + n, sizeof H.err - (size_t)n, ": ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(H.err + n, sizeof H.err - (size_t)n, fmt, ap);
    va_end(ap);
}

extern "C" void kc_emu_seed(uint64_t seed) { H.rng = seed * 0x2545f4914f6cdd1dULL + 1; }
extern "C" void kc_emu_set_shuffle(int on) { H.no_shuffle = !on; }
extern "C" const char *kc_emu_error(void) { return H.failed ? H.err : NULL; }
extern "C" void kc_emu_clear_error(void) { H.failed = 0, H.err[0] = 0; }
extern "C" void kc_emu_stats_get(kc_emu_stats *out) { *out = H.stats; }
extern "C" void kc_emu_stats_reset(void) { memset(&H.stats, 0, sizeof H.stats); }
extern "C" void kc_emu_sites_reset(void) { H.n_sites = 0, H.disabled_site = 0; }
extern "C" int kc_emu_site_count(void) { return H.n_sites; }
extern "C" const char *kc_emu_site(int i) { return i >= 0 && i < H.n_sites ? H.sites[i].name : NULL; }
extern "C" void kc_emu_disable_site(int i) { H.disabled_site = i + 1; }

emu_builtins *emu_self(void)
{
    if (!H.cur) {
        fprintf(stderr, "emu: CUDA built-in used outside a kernel launch\n");
        abort();
    }
    return &H.cur->b;
}

unsigned emu_lane(void)
{
    const emu_builtins *b = emu_self();
    unsigned lin = b->thread_idx.x + b->block_dim.x * (b->thread_idx.y + b->block_dim.y * b->thread_idx.z);
    return lin & 31u;
}

static unsigned linear_tid(const fiber *f)
{
    return f->b.thread_idx.x + f->b.block_dim.x * (f->b.thread_idx.y + f->b.block_dim.y * f->b.thread_idx.z);
}

/* ---- fibers --------------------------------------------------------------- */

static void fiber_main(void);

static fiber *fiber_get(int i)
{
    if (!H.fibers[i]) {
        fiber *f = (fiber *)calloc(1, sizeof *f);
        long page = sysconf(_SC_PAGESIZE);
        void *map = mmap(NULL, STACK_BYTES + (size_t)page, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (!f || map == MAP_FAILED) {
            fprintf(stderr, "emu: cannot allocate a fiber stack\n");
            abort();
        }
        mprotect(map, (size_t)page, PROT_NONE); /* overflow faults instead of corrupting */
        f->map = (char *)map;
        f->stack = (char *)map + page;
        H.fibers[i] = f;
    }
    return H.fibers[i];
}

static void fiber_reset(fiber *f)
{
#if EMU_ASAN
    /* A fiber abandoned mid-kernel left poisoned frames all over its stack;
     * a finished one at most near the top. */
    if (f->dirty)
        ASAN_UNPOISON_MEMORY_REGION(f->stack, STACK_BYTES);
    else
        ASAN_UNPOISON_MEMORY_REGION(f->stack + STACK_BYTES - 4096, 4096);
#endif
    f->dirty = 0;
    f->status = ST_RUN;
    f->shared_k = 0;
    f->fake_stack = NULL;
    ctx_make(&f->ctx, f->stack, STACK_BYTES, fiber_main);
}

static void resume(fiber *f)
{
    H.cur = f;
    H.stats.switches++;
#if EMU_ASAN
    __sanitizer_start_switch_fiber(&H.sched_fake, f->stack, STACK_BYTES);
#endif
    ctx_swap(&H.sched, &f->ctx);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(H.sched_fake, NULL, NULL);
#endif
    H.cur = NULL;
}

/* Back to the scheduler; returns when resumed.  last = the fiber is done. */
static void yield(int last)
{
    fiber *f = H.cur;
#if EMU_ASAN
    __sanitizer_start_switch_fiber(last ? NULL : &f->fake_stack, H.sched_bottom, H.sched_size);
#endif
    ctx_swap(&f->ctx, &H.sched);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &H.sched_bottom, &H.sched_size);
#endif
    (void)last;
}

static void fiber_main(void)
{
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(NULL, &H.sched_bottom, &H.sched_size);
#endif
    H.fn(H.arg);
    H.cur->status = ST_DONE;
    yield(1);
    abort(); /* a finished fiber is never resumed */
}

/* ---- synchronisation -------------------------------------------------------- */

static int site_of(const char *file, int line)
{
    for (int i = 0; i < H.n_sites; i++)
        if (H.sites[i].line == line && (H.sites[i].file == file || !strcmp(H.sites[i].file, file)))
            return i;
    if (H.n_sites == MAX_SITES)
        return MAX_SITES - 1;
    site *s = &H.sites[H.n_sites];
    s->file = file;
    s->line = line;
    const char *base = strrchr(file, '/');
    snprintf(s->name, sizeof s->name, "%s:%d", base ? base + 1 : file, line);
    return H.n_sites++;
}

void emu_syncthreads(const char *file, int line)
{
    int s = site_of(file, line);
    if (s + 1 == H.disabled_site)
        return;
    H.cur->site = s;
    H.cur->status = ST_BLOCK;
    yield(0);
}

const uint64_t *emu_warp_exchange(unsigned mask, uint64_t mine)
{
    fiber *f = H.cur;
    unsigned lin = linear_tid(f);
    if (!(mask & (1u << (lin & 31u))))
        emu_fail("warp operation with mask 0x%08x that leaves out the calling lane %u", mask, lin & 31u);
    f->send = mine;
    f->mask = mask;
    f->status = ST_WARP;
    yield(0);
    return H.recv[lin / 32];
}

/* Releases what can be released.  Returns 1 when something was, 0 when
 * every thread is done, -1 on deadlock or a strictness failure. */
static int release(void)
{
    int released = 0;
    for (int w = 0; w * 32 < H.n; w++) {
        int lanes = H.n - w * 32 < 32 ? H.n - w * 32 : 32;
        fiber **lf = &H.fibers[w * 32];
        int first = -1;
        for (int l = 0; l < lanes && first < 0; l++)
            if (lf[l]->status == ST_WARP)
                first = l;
        if (first < 0)
            continue;
        unsigned m = lf[first]->mask;
        if (lanes < 32 && (m >> lanes)) {
            emu_fail("warp %d: mask 0x%08x names lanes beyond the block's %d threads", w, m, H.n);
            return -1;
        }
        int ready = 1;
        for (int l = 0; l < lanes; l++) {
            if (!(m & (1u << l)))
                continue;
            const fiber *g = lf[l];
            if (g->status == ST_DONE) {
                emu_fail("warp %d: lane %d exited but is named in a warp operation's mask 0x%08x", w, l, m);
                return -1;
            }
            if (g->status == ST_WARP && g->mask != m) {
                emu_fail("warp %d: lanes wait in warp operations with masks 0x%08x and 0x%08x", w, m,
                         g->mask);
                return -1;
            }
            if (g->status != ST_WARP)
                ready = 0;
        }
        if (!ready)
            continue;
        for (int l = 0; l < lanes; l++)
            if (m & (1u << l)) {
                H.recv[w][l] = lf[l]->send;
                lf[l]->status = ST_RUN;
            }
        H.stats.warp_syncs++;
        released = 1;
    }
    if (released)
        return 1;
    int n_done = 0, n_block = 0, site0 = -1;
    for (int i = 0; i < H.n; i++) {
        const fiber *f = H.fibers[i];
        if (f->status == ST_DONE)
            n_done++;
        if (f->status == ST_BLOCK) {
            if (site0 >= 0 && f->site != site0) {
                emu_fail("threads wait at different __syncthreads (%s and %s)", H.sites[site0].name,
                         H.sites[f->site].name);
                return -1;
            }
            site0 = f->site;
            n_block++;
        }
    }
    if (n_done == H.n)
        return 0;
    if (n_block + n_done == H.n) {
        if (n_done) {
            emu_fail("__syncthreads at %s reached by %d threads while %d threads of the block "
                     "already returned", H.sites[site0].name, n_block, n_done);
            return -1;
        }
        for (int i = 0; i < H.n; i++)
            H.fibers[i]->status = ST_RUN;
        H.stats.block_barriers++;
        return 1;
    }
    emu_fail("deadlock: %d threads at __syncthreads, %d in warp operations, %d returned", n_block,
             H.n - n_block - n_done, n_done);
    return -1;
}

/* ---- shared memory ------------------------------------------------------------ */

static void *garbage(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "emu: out of memory\n");
        abort();
    }
    memset(p, 0xff, bytes);
    return p;
}

void *emu_shared(size_t bytes, const char *file, int line)
{
    fiber *f = H.cur;
    int k = f->shared_k++;
    if (k < H.n_shared) {
        if (H.shared_bytes[k] != bytes)
            emu_fail("shared declaration %d (%s:%d) has %zu bytes here but %zu elsewhere", k, file,
                     line, bytes, H.shared_bytes[k]);
        return H.shared[k];
    }
    if (k >= MAX_SHARED_DECLS) {
        fprintf(stderr, "emu: more than %d shared declarations in a kernel\n", MAX_SHARED_DECLS);
        abort();
    }
    H.shared_total += bytes;
    if (H.shared_total + H.dyn_bytes > SMEM_LIMIT)
        emu_fail("%zu bytes of shared memory (static %zu + dynamic %zu) exceed %d", H.shared_total +
                 H.dyn_bytes, H.shared_total, H.dyn_bytes, (int)SMEM_LIMIT);
    H.shared[k] = garbage(bytes);
    H.shared_bytes[k] = bytes;
    H.n_shared = k + 1;
    return H.shared[k];
}

void *emu_dyn_shared(void) { return H.dyn; }

/* ---- launches ---------------------------------------------------------------- */

static void run_block(dim3 grid, dim3 block, uint3 bidx)
{
    H.block_idx = bidx;
    H.n_shared = 0;
    H.shared_total = 0;
    H.dyn = garbage(H.dyn_bytes);
    for (int i = 0; i < H.n; i++) {
        fiber *f = fiber_get(i);
        fiber_reset(f);
        f->b.thread_idx = uint3{(unsigned)i % block.x, ((unsigned)i / block.x) % block.y,
                                  (unsigned)i / (block.x * block.y)};
        f->b.block_idx = bidx;
        f->b.block_dim = block;
        f->b.grid_dim = grid;
    }
    int order[MAX_THREADS];
    for (;;) {
        int nr = 0;
        for (int i = 0; i < H.n; i++)
            if (H.fibers[i]->status == ST_RUN)
                order[nr++] = i;
        if (nr == 0) {
            if (release() <= 0)
                break;
            continue;
        }
        shuffle(order, nr);
        for (int k = 0; k < nr && !H.failed; k++) {
            resume(H.fibers[order[k]]);
            H.stats.order_hash = (H.stats.order_hash ^ (uint64_t)order[k]) * 0x100000001b3ULL;
        }
        if (H.failed)
            break;
    }
    for (int i = 0; i < H.n; i++)
        if (H.fibers[i]->status != ST_DONE)
            H.fibers[i]->dirty = 1;
    for (int k = 0; k < H.n_shared; k++)
        free(H.shared[k]);
    free(H.dyn);
    H.dyn = NULL;
    H.stats.blocks++;
}

void emu_launch_raw(dim3 grid, dim3 block, size_t smem, const char *name, void (*fn)(void *), void *arg)
{
    if (H.failed)
        return;
    H.name = name;
    H.block_idx = uint3{0, 0, 0};
    uint64_t nthreads = (uint64_t)block.x * block.y * block.z;
    uint64_t nblocks = (uint64_t)grid.x * grid.y * grid.z;
    if (!nthreads || nthreads > MAX_THREADS || block.z > 64 || !nblocks || grid.y > 65535 ||
        grid.z > 65535 || grid.x > 0x7fffffffu) {
        emu_fail("invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u)", grid.x, grid.y,
                 grid.z, block.x, block.y, block.z);
        return;
    }
    if (smem > SMEM_LIMIT) {
        emu_fail("%zu bytes of dynamic shared memory exceed %d", smem, (int)SMEM_LIMIT);
        return;
    }
    H.fn = fn;
    H.arg = arg;
    H.n = (int)nthreads;
    H.dyn_bytes = smem;
    H.stats.launches++;
    int *order = (int *)malloc(sizeof(int) * nblocks);
    if (!order)
        abort();
    for (uint64_t i = 0; i < nblocks; i++)
        order[i] = (int)i;
    shuffle(order, (int)nblocks);
    for (uint64_t k = 0; k < nblocks && !H.failed; k++) {
        unsigned i = (unsigned)order[k];
        run_block(grid, block, uint3{i % grid.x, (i / grid.x) % grid.y, i / (grid.x * grid.y)});
        H.stats.threads += nthreads;
    }
    free(order);
}
