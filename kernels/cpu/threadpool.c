/* threadpool.c - fork-join compute threads (see threadpool.h).
 *
 * A job is published by bumping `generation` under the mutex; workers notice
 * it by spinning on the atomic for a while, then by waiting on the condition
 * variable.  The caller takes part as thread 0.
 *
 * Each worker's share of a job is claimed once, by the worker or by the
 * caller: `claimed` holds the last generation the share was taken for, and
 * a compare-and-swap from an older value takes it.  When the caller has
 * finished its own share it takes every share whose worker has not started
 * yet and runs it itself.  On a machine with other busy processes (these
 * are shared VMs), a descheduled worker then costs one share's time instead
 * of a time slice for every one of the ~150 ops of a decode step.  A share
 * is still run exactly once, with its own index, so kernels that split
 * work statically by thread index (and keep per-index scratch) are safe.
 * Never used for I/O or anything that blocks.
 */
#include "kernels/cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

/* A spin-wait hint where the architecture has one (it frees the core's
 * shared resources for the sibling hyperthread); a no-op elsewhere. */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() ((void)0)
#endif

/* ~0.3 ms of pause instructions: long enough to catch the next op of a
 * decode step (a few microseconds apart), short enough not to steal a core
 * from other processes when the engine is idle. */
enum { SPIN_ITERS = 20000, SERIAL_WORK = 1 << 15 };

typedef struct worker {
    struct eng_threadpool *pool;
    pthread_t thread;
    int idx;
    atomic_uint claimed;  /* last generation this share was taken for */
    atomic_uint finished; /* last generation the worker finished its share of */
} worker;

struct eng_threadpool {
    int n_threads;
    worker *workers;          /* (n_threads - 1) */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_uint generation;   /* bumped once per job */
    atomic_int stop;
    eng_pool_fn fn;           /* current job: written before `generation` */
    void *arg;
};

/* Takes share w for generation gen unless someone already has.  Wrap-safe:
 * generations only grow, so "older" is a negative signed difference. */
static int claim(worker *w, unsigned gen)
{
    unsigned c = atomic_load_explicit(&w->claimed, memory_order_acquire);
    while ((int)(c - gen) < 0)
        if (atomic_compare_exchange_weak_explicit(&w->claimed, &c, gen, memory_order_acq_rel,
                                                  memory_order_acquire))
            return 1;
    return 0;
}

static void *worker_main(void *p)
{
    worker *w = p;
    eng_threadpool *pool = w->pool;
    unsigned seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen &&
               !atomic_load(&pool->stop) && spins < SPIN_ITERS) {
            cpu_relax();
            spins++;
        }
        if (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen) {
            pthread_mutex_lock(&pool->lock);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->lock);
            pthread_mutex_unlock(&pool->lock);
        }
        if (atomic_load(&pool->stop))
            return NULL;
        seen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        /* A won claim means the caller is still inside job `seen` (it waits
         * for every share), so fn and arg are that job's. */
        if (claim(w, seen)) {
            pool->fn(pool->arg, w->idx, pool->n_threads);
            atomic_store_explicit(&w->finished, seen, memory_order_release);
        }
    }
}

eng_threadpool *eng_threadpool_create(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    eng_threadpool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->workers = calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->workers)
        goto fail;
    for (int i = 1; i < n_threads; i++) {
        worker *w = &p->workers[i - 1];
        w->pool = p;
        w->idx = i;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            p->n_threads = i; /* only these exist; destroy joins them */
            eng_threadpool_destroy(p);
            return NULL;
        }
    }
    return p;
fail:
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
    return NULL;
}

void eng_threadpool_destroy(eng_threadpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->workers[i - 1].thread, NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p->workers);
    free(p);
}

int eng_threadpool_size(const eng_threadpool *p) { return p->n_threads; }

void eng_threadpool_run(eng_threadpool *p, eng_pool_fn fn, void *arg)
{
    if (p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&p->lock);
    const unsigned gen = atomic_fetch_add_explicit(&p->generation, 1, memory_order_release) + 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    fn(arg, 0, p->n_threads);
    /* Shares not started by now run here: their worker is late by at least
     * one share's time already, and may be off the CPU for a time slice. */
    for (int i = 1; i < p->n_threads; i++) {
        worker *w = &p->workers[i - 1];
        if (claim(w, gen)) {
            fn(arg, i, p->n_threads);
            atomic_store_explicit(&w->finished, gen, memory_order_relaxed);
        }
    }
    /* Spin for the shares workers took, but yield the core if they were
     * descheduled mid-share: spinning then only delays them. */
    for (int i = 1; i < p->n_threads; i++) {
        worker *w = &p->workers[i - 1];
        for (int spins = 0; atomic_load_explicit(&w->finished, memory_order_acquire) != gen;)
            if (++spins < SPIN_ITERS / 10)
                cpu_relax();
            else
                sched_yield();
    }
}

void eng_threadpool_run_sized(eng_threadpool *p, eng_pool_fn fn, void *arg, double work)
{
    if (work < SERIAL_WORK)
        fn(arg, 0, 1);
    else
        eng_threadpool_run(p, fn, arg);
}

void eng_split_range(long n, long align, int idx, int n_threads, long *begin, long *end)
{
    long units = (n + align - 1) / align;
    long per = units / n_threads, extra = units % n_threads;
    long first = idx * per + (idx < extra ? idx : extra);
    long count = per + (idx < extra ? 1 : 0);
    *begin = first * align;
    *end = (first + count) * align;
    if (*begin > n)
        *begin = n;
    if (*end > n)
        *end = n;
}
