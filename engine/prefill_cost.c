/* prefill_cost.c - the per-chunk + per-token prefill cost model (see
 * prefill_cost.h). */
#include "engine/prefill_cost.h"

/* How much an iteration's sample outweighs the one before it: about the
 * last ten iterations count, so the fit follows the machine's load. */
#define PREFILL_COST_DECAY 0.9

void eng_prefill_cost_add(eng_prefill_cost *c, int chunks, long tokens, double ns)
{
    if (chunks <= 0 || tokens <= 0 || !(ns > 0))
        return;
    const double k = (double)chunks, t = (double)tokens, d = PREFILL_COST_DECAY;
    c->s_cc = d * c->s_cc + k * k;
    c->s_ct = d * c->s_ct + k * t;
    c->s_tt = d * c->s_tt + t * t;
    c->s_cy = d * c->s_cy + k * ns;
    c->s_ty = d * c->s_ty + t * ns;
    /* Solve [cc ct; ct tt] [a; b] = [cy; ty].  When the samples cannot tell
     * the two costs apart (all alike so far: a near-singular system), or
     * the fit goes negative (noise), all of the time goes to the tokens,
     * which is what an average per token would say. */
    const double det = c->s_cc * c->s_tt - c->s_ct * c->s_ct;
    double a = 0, b = 0;
    if (det > 1e-6 * c->s_cc * c->s_tt) {
        a = (c->s_tt * c->s_cy - c->s_ct * c->s_ty) / det;
        b = (c->s_cc * c->s_ty - c->s_ct * c->s_cy) / det;
    }
    if (a < 0 || b <= 0) {
        a = 0;
        b = c->s_ty / c->s_tt;
    }
    c->per_chunk_ns = a;
    c->per_token_ns = b;
}

long eng_prefill_cost_take(const eng_prefill_cost *c, double *allowance_ns, long want)
{
    if (!(c->per_token_ns > 0))
        return want;
    const double left = *allowance_ns - c->per_chunk_ns;
    if (left < c->per_token_ns)
        return 0;
    const double fit = left / c->per_token_ns;
    const long n = fit < (double)want ? (long)fit : want;
    *allowance_ns -= c->per_chunk_ns + c->per_token_ns * (double)n;
    return n;
}
