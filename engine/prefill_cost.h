/* prefill_cost.h - what an iteration's prefill costs, learned from the
 * iterations that ran, and how many prompt tokens fit in a time allowance.
 *
 * The scheduler's time ratio (sched_step.c) cuts an iteration's prefill to
 * what fits in ratio x one decode step.  A cost per token averaged over
 * chunks of every size misses at the tail: a pass over 16 tokens costs
 * more per token than one over 256, and an iteration of three short chunks
 * costs three passes' overheads.  So the model here is
 *
 *     time = per_chunk_ns x chunks + per_token_ns x tokens,
 *
 * fitted by least squares over recent iterations (each older sample
 * weighs PREFILL_COST_DECAY times less than the next), and the planner
 * charges each chunk its own overhead.  Plain data, no locking: the
 * engine thread owns it.
 */
#ifndef SSMD_PREFILL_COST_H
#define SSMD_PREFILL_COST_H

typedef struct eng_prefill_cost {
    /* decayed sums of the normal equations: c chunks, t tokens, y ns */
    double s_cc, s_ct, s_tt, s_cy, s_ty;
    double per_chunk_ns, per_token_ns; /* the current fit (0, 0: no sample yet) */
} eng_prefill_cost;

/* Adds one iteration's prefill: `chunks` passes over `tokens` tokens in
 * `ns` nanoseconds; refits. */
void eng_prefill_cost_add(eng_prefill_cost *c, int chunks, long tokens, double ns);

/* Tokens one more chunk may take out of *allowance_ns (at most `want`),
 * which it then charges; 0 when not even one token fits.  Without a fit
 * yet, `want` and nothing charged. */
long eng_prefill_cost_take(const eng_prefill_cost *c, double *allowance_ns, long want);

#endif
