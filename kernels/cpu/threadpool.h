/* threadpool.h - a fixed set of compute threads that run one function at a
 * time on all of them (fork-join), for the CPU backend's kernels.
 *
 * Workers spin briefly between back-to-back jobs (a decode step runs ~150
 * of them) and sleep on a condition variable when idle.  One caller at a
 * time: the pool belongs to the engine thread.
 */
#ifndef SSMD_THREADPOOL_H
#define SSMD_THREADPOOL_H

typedef struct eng_threadpool eng_threadpool;

/* fn runs once per thread with its index in [0, n_threads). */
typedef void (*eng_pool_fn)(void *arg, int thread_idx, int n_threads);

/* Starts n_threads - 1 workers (the caller is thread 0).  Returns NULL when
 * threads cannot be created. */
eng_threadpool *eng_threadpool_create(int n_threads);
void eng_threadpool_destroy(eng_threadpool *p);
int eng_threadpool_size(const eng_threadpool *p);

/* Runs fn once for every index in [0, n_threads) and returns when all have
 * finished: index 0 on the caller, each other on its worker, or on the
 * caller when that worker has not started it by the time the caller's own
 * share is done (a descheduled worker must not stall the op).  So fn may
 * keep per-index state, but shares must never wait for one another. */
void eng_threadpool_run(eng_threadpool *p, eng_pool_fn fn, void *arg);

/* As eng_threadpool_run, but runs fn(arg, 0, 1) on the caller alone when
 * the job is small (work: its multiply-adds, roughly): waking the other
 * threads costs more than they would save, and on a busy machine a
 * descheduled worker would make every tiny op wait for a time slice. */
void eng_threadpool_run_sized(eng_threadpool *p, eng_pool_fn fn, void *arg, double work);

/* Splits [0, n) into n_threads contiguous ranges, each a multiple of align
 * (except the last); thread idx gets [*begin, *end). */
void eng_split_range(long n, long align, int idx, int n_threads, long *begin, long *end);

#endif
