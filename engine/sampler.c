/* sampler.c - turns a row of logits into the next token: repetition penalty,
 * logit bias, presence/frequency penalties, temperature, top-k, top-p,
 * min-p, then a seeded draw (or argmax), and the top-n log-probabilities of
 * the raw logits.
 *
 * The steps run in the order Hugging Face transformers and vLLM use, so the
 * same request parameters mean the same distribution.  No step sorts the
 * vocabulary: top-k is a k-heap over the logits (only its survivors get an
 * exp), top-p a radix selection on the bits of the probabilities (a
 * histogram pass, then only the boundary bucket), min-p a threshold; with no
 * filter the draw is one scan of a vectorised softmax.
 *
 * Ties: greedy takes the lowest id; top-k keeps every id tied with the k-th
 * logit (as HF and vLLM do); top-p takes tied ids lowest first, only as many
 * as reach top_p; min-p keeps every id at or above the threshold.
 *
 * Must never: keep state outside eng_sampler (no globals, no time-based
 * seeds), allocate per call, or write to the caller's logits.
 */
#include "engine/sampler.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void eng_sampling_defaults(eng_sampling *p)
{
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repetition_penalty = 1.0f;
    p->presence_penalty = 0.0f;
    p->frequency_penalty = 0.0f;
    p->seed = 0;
    p->logprobs = 0;
    p->json_object = 0;
    p->json_schema = NULL;
    p->n_logit_bias = 0;
}

int eng_sampling_validate(const eng_sampling *p, ssmd_err *err)
{
    /* Written as !(in range) so that NaN fails every check. */
    if (!(p->temperature >= 0.0f && isfinite(p->temperature)))
        return ssmd_err_set(err, SSMD_EINVAL, "temperature must be a finite number >= 0");
    if (p->top_k < 0)
        return ssmd_err_set(err, SSMD_EINVAL, "top_k must be >= 0 (0 disables it)");
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return ssmd_err_set(err, SSMD_EINVAL, "top_p must be in (0, 1]");
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return ssmd_err_set(err, SSMD_EINVAL, "min_p must be in [0, 1]");
    if (!(p->repetition_penalty > 0.0f && isfinite(p->repetition_penalty)))
        return ssmd_err_set(err, SSMD_EINVAL, "repetition_penalty must be a finite number > 0");
    if (!isfinite(p->presence_penalty))
        return ssmd_err_set(err, SSMD_EINVAL, "presence_penalty must be a finite number");
    if (!isfinite(p->frequency_penalty))
        return ssmd_err_set(err, SSMD_EINVAL, "frequency_penalty must be a finite number");
    if (p->logprobs < 0 || p->logprobs > ENG_LOGPROBS_MAX)
        return ssmd_err_set(err, SSMD_EINVAL, "logprobs must be in 0..%d", ENG_LOGPROBS_MAX);
    if (p->n_logit_bias < 0 || p->n_logit_bias > ENG_LOGIT_BIAS_MAX)
        return ssmd_err_set(err, SSMD_EINVAL, "logit_bias holds at most %d tokens", ENG_LOGIT_BIAS_MAX);
    for (int i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias[i].token < 0 || !isfinite(p->logit_bias[i].bias))
            return ssmd_err_set(err, SSMD_EINVAL, "logit_bias needs token ids >= 0 and finite biases");
    return SSMD_OK;
}

/* ---- RNG: xoshiro256** (Blackman & Vigna), seeded through splitmix64 ---- */

static uint64_t sampler_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t sampler_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t sampler_rng_next(uint64_t s[4])
{
    uint64_t out = sampler_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = sampler_rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1) with 53 random bits. */
static double sampler_rng_uniform(uint64_t s[4])
{
    return (double)(sampler_rng_next(s) >> 11) * 0x1.0p-53;
}

int eng_sampler_init(eng_sampler *s, const eng_sampling *p, int n_vocab, ssmd_err *err)
{
    memset(s, 0, sizeof *s);
    int rc = eng_sampling_validate(p, err);
    if (rc != SSMD_OK)
        return rc;
    if (n_vocab <= 0)
        return ssmd_err_set(err, SSMD_EINVAL, "n_vocab must be > 0 (got %d)", n_vocab);
    for (int i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias[i].token >= n_vocab)
            return ssmd_err_set(err, SSMD_EINVAL, "logit_bias names token %d, outside the vocabulary (%d)",
                                p->logit_bias[i].token, n_vocab);
    s->params = *p;
    s->n_vocab = n_vocab;
    /* size_t before multiplying: n_vocab * 4 may not fit in an int. */
    s->probs = malloc((size_t)n_vocab * sizeof *s->probs);
    s->order = malloc((size_t)n_vocab * sizeof *s->order);
    int counting = p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
    if (counting) {
        s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
        s->seen = malloc((size_t)n_vocab * sizeof *s->seen);
    }
    if (!s->probs || !s->order || (counting && (!s->counts || !s->seen))) {
        eng_sampler_close(s);
        return ssmd_err_set(err, SSMD_ENOMEM, "sampler: cannot allocate scratch for %d tokens",
                            n_vocab);
    }
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = sampler_splitmix64(&x);
    return SSMD_OK;
}

void eng_sampler_close(eng_sampler *s)
{
    free(s->probs);
    free(s->order);
    free(s->counts);
    free(s->seen);
    memset(s, 0, sizeof *s);
}

/* ---- row primitives, written so that compilers vectorise them ---- */

/* e^x for x <= 0: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then a
 * degree-7 Taylor polynomial (relative error below 1e-7).  Below -87 (where
 * e^x leaves the normal floats), -inf and NaN give exactly 0, so masked
 * tokens stay impossible. */
static inline float sampler_exp(float x)
{
    int in_range = x >= -87.0f;
    float xc = in_range ? x : 0.0f;
    float n = rintf(xc * 1.44269504f);
    float r = xc - n * 0.693145752f - n * 1.42860677e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union {
        uint32_t u;
        float f;
    } scale = {.u = (uint32_t)((int32_t)n + 127) << 23}; /* 2^n, n in [-126, 0] */
    return in_range ? p * scale.f : 0.0f;
}

#define SAMPLER_BLOCK 64 /* rows are scanned in blocks; a block is 8 vectors of 8 */

/* Sum of one block, in 8 lanes. */
static float sampler_block_sum(const float *x)
{
    float lane[8] = {0};
    for (int i = 0; i < SAMPLER_BLOCK; i += 8)
        for (int l = 0; l < 8; l++)
            lane[l] += x[i + l];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

/* Maximum of one block, in 8 lanes; NaN counts as -inf. */
static float sampler_block_max(const float *x)
{
    float lane[8];
    for (int l = 0; l < 8; l++)
        lane[l] = -INFINITY;
    for (int i = 0; i < SAMPLER_BLOCK; i += 8)
        for (int l = 0; l < 8; l++)
            lane[l] = x[i + l] > lane[l] ? x[i + l] : lane[l];
    float v = lane[0];
    for (int l = 1; l < 8; l++)
        v = lane[l] > v ? lane[l] : v;
    return v;
}

/* Sum of x[n]: float within blocks, double across them. */
static double sampler_sum(const float *x, int n)
{
    double acc = 0.0;
    int i = 0;
    for (; i + SAMPLER_BLOCK <= n; i += SAMPLER_BLOCK)
        acc += sampler_block_sum(x + i);
    for (; i < n; i++)
        acc += x[i];
    return acc;
}

/* Lowest id among the largest values; NaN never wins.  Only the block that
 * last raised the maximum is searched for the id. */
static int32_t sampler_argmax(const float *w, int n)
{
    float best_v = -INFINITY;
    int best_block = -1, i = 0;
    for (; i + SAMPLER_BLOCK <= n; i += SAMPLER_BLOCK) {
        float v = sampler_block_max(w + i);
        if (v > best_v) {
            best_v = v;
            best_block = i;
        }
    }
    int32_t best = 0;
    if (best_block >= 0) {
        best = best_block;
        while (!(w[best] == best_v))
            best++;
    }
    for (; i < n; i++) {
        if (w[i] > best_v) {
            best_v = w[i];
            best = i;
        }
    }
    return best;
}

/* Writes the ids i with x[i] >= t to out, ascending, and returns their
 * count.  Blocks whose maximum is below t are skipped after one vector
 * pass; inside a block the test is branch-free (it is a coin toss there). */
static int sampler_gather(const float *x, int n, float t, int32_t *out)
{
    int k = 0;
    for (int i = 0; i < n; i += SAMPLER_BLOCK) {
        int end = n - i >= SAMPLER_BLOCK ? i + SAMPLER_BLOCK : n;
        if (end - i == SAMPLER_BLOCK && !(sampler_block_max(x + i) >= t))
            continue;
        for (int j = i; j < end; j++) {
            out[k] = j;
            k += x[j] >= t;
        }
    }
    return k;
}

/* probs[i] = exp((w[i] - mx) / T) for the whole row; w may be probs.
 * Returns the total.  The argmax gets exactly exp(0) = 1. */
static double sampler_softmax_all(float *probs, const float *w, int n, float mx, float inv_t)
{
    if (w == probs) {
        for (int i = 0; i < n; i++)
            probs[i] = sampler_exp((probs[i] - mx) * inv_t);
    } else {
        for (int i = 0; i < n; i++)
            probs[i] = sampler_exp((w[i] - mx) * inv_t);
    }
    return sampler_sum(probs, n);
}

/* ---- top-k: a k-heap over the logits ---- */

static void sampler_heap_down(int32_t *heap, int h, const float *w, int i)
{
    for (;;) {
        int c = 2 * i + 1;
        if (c >= h)
            return;
        if (c + 1 < h && w[heap[c + 1]] < w[heap[c]])
            c++;
        if (!(w[heap[c]] < w[heap[i]]))
            return;
        int32_t t = heap[c];
        heap[c] = heap[i];
        heap[i] = t;
        i = c;
    }
}

/* Offers id i to the min-heap of the k largest logits; returns the new
 * admission threshold (-inf while the heap is not full). */
static float sampler_heap_offer(int32_t *heap, int *h, int k, const float *w, int i, float thr)
{
    float v = w[i];
    if (!(v > thr)) /* also drops NaN */
        return thr;
    if (*h < k) {
        int j = (*h)++;
        while (j > 0 && v < w[heap[(j - 1) / 2]]) { /* sift up */
            heap[j] = heap[(j - 1) / 2];
            j = (j - 1) / 2;
        }
        heap[j] = i;
        return *h < k ? -INFINITY : w[heap[0]];
    }
    heap[0] = i;
    sampler_heap_down(heap, *h, w, 0);
    return w[heap[0]];
}

/* Writes to out, ascending, the ids whose logit is >= the k-th largest (HF
 * and vLLM keep every id tied with the k-th value) and returns their count.
 * NaN logits are never kept.  Blocks whose maximum cannot enter the heap
 * are skipped whole.  out doubles as the heap. */
static int sampler_top_k(const float *w, int n, int k, int32_t *out)
{
    int h = 0, i = 0;
    float thr = -INFINITY;
    for (; i + SAMPLER_BLOCK <= n; i += SAMPLER_BLOCK) {
        if (h == k && !(sampler_block_max(w + i) > thr))
            continue;
        for (int j = i; j < i + SAMPLER_BLOCK; j++)
            thr = sampler_heap_offer(out, &h, k, w, j, thr);
    }
    for (; i < n; i++)
        thr = sampler_heap_offer(out, &h, k, w, i, thr);
    /* fewer than k non-NaN logits: thr is -inf and every one stays */
    return sampler_gather(w, n, thr, out);
}

/* ---- kept sets: a cut in the order (probability desc, id asc) ---- */

/* The bits of a float in [0, 1] order like the float: a radix key. */
static int32_t sampler_key(float p)
{
    union {
        float f;
        int32_t i;
    } v = {.f = p};
    return v.i;
}

/* The kept set of every filter is a prefix of the candidates ordered by
 * (probability desc, id asc): the ids at or before (key, id_max).
 * id_max = INT32_MAX keeps every id tied at key; {0, INT32_MAX} keeps all. */
typedef struct sampler_cut {
    int32_t key;
    int32_t id_max;
} sampler_cut;

static inline int sampler_in_cut(float p, int32_t id, sampler_cut c)
{
    int32_t key = sampler_key(p);
    return (key > c.key) | ((key == c.key) & (id <= c.id_max));
}

/* a keeps no more than b */
static int sampler_cut_within(sampler_cut a, sampler_cut b)
{
    return a.key > b.key || (a.key == b.key && a.id_max <= b.id_max);
}

/* Sum of the block of ids base.. that lies inside c, in 8 lanes. */
static float sampler_block_sum_in(const float *x, int32_t base, sampler_cut c)
{
    float lane[8] = {0};
    for (int i = 0; i < SAMPLER_BLOCK; i += 8)
        for (int l = 0; l < 8; l++)
            lane[l] += sampler_in_cut(x[i + l], base + i + l, c) ? x[i + l] : 0.0f;
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

/* Mass of the candidates (ids[m], or the row 0..m-1 if ids is NULL) in c. */
static double sampler_cut_mass(const float *probs, const int32_t *ids, int m, sampler_cut c)
{
    double acc = 0.0;
    int j = 0;
    if (!ids)
        for (; j + SAMPLER_BLOCK <= m; j += SAMPLER_BLOCK)
            acc += sampler_block_sum_in(probs + j, j, c);
    for (; j < m; j++) {
        int32_t id = ids ? ids[j] : j;
        if (sampler_in_cut(probs[id], id, c))
            acc += probs[id];
    }
    return acc;
}

/* Top-p: the smallest prefix of the candidates (ids[m] ascending, or the
 * row 0..m-1 if ids is NULL) whose mass reaches goal; ties at the cut go to
 * the lowest ids.  Returns the cut and its mass in *kept.
 *
 * A radix selection on the keys (at most 0x3F800000, split 12 + 10 + 10
 * bits): a histogram of mass per key prefix, walked from the top, narrows
 * the cut to one bucket, then the next bits.  The ids below t = (total -
 * goal) / m hold less than total - goal, so the cut lies above t and they
 * are left out: on a peaked row whole blocks are skipped by their maximum.
 * row_scratch (m ids, used when ids is NULL) receives the ids above t,
 * then those of the boundary bucket, so the finer levels do not rescan the
 * row. */
static sampler_cut sampler_top_p_cut(const float *probs, const int32_t *ids, int m, double total,
                                     double goal, int32_t *row_scratch, double *kept)
{
    double mass[4][1024]; /* level 0 of a big set spreads over 4 copies: shorter store chains */
    int copies = m >= 4096 ? 4 : 1;
    float t = (float)((total - goal) / m * 0.99);
    double above = 0.0; /* mass of the candidates known to be kept */
    int32_t prefix = 0;
    sampler_cut all = {0, INT32_MAX};

    memset(mass, 0, (size_t)copies * sizeof mass[0]);
    int n_above_t = 0; /* row: the ids >= t, listed in row_scratch */
    for (int j0 = 0; j0 < m; j0 += SAMPLER_BLOCK) {
        int end = m - j0 >= SAMPLER_BLOCK ? j0 + SAMPLER_BLOCK : m;
        if (!ids && end - j0 == SAMPLER_BLOCK && !(sampler_block_max(probs + j0) >= t))
            continue;
        for (int j = j0; j < end; j++) {
            float p = probs[ids ? ids[j] : j];
            int in = p >= t;
            mass[j & (copies - 1)][sampler_key(p) >> 20] += in ? p : 0.0f;
            if (!ids) {
                row_scratch[n_above_t] = j;
                n_above_t += in;
            }
        }
    }
    for (int c = 1; c < copies; c++)
        for (int b = 0; b < 1024; b++)
            mass[0][b] += mass[c][b];

    for (int level = 0; level < 3; level++) {
        int sh = 20 - 10 * level;
        int b = 0x3F8, lo = -1; /* the top bucket at level 0: key(1.0f) >> 20 */
        if (level > 0) {
            memset(mass[0], 0, sizeof mass[0]);
            b = 0;
            lo = 1023;
            for (int j = 0; j < m; j++) {
                float p = probs[ids ? ids[j] : j];
                int32_t key = sampler_key(p);
                if ((key >> (sh + 10)) == prefix) {
                    int bj = (key >> sh) & 1023;
                    mass[0][bj] += p;
                    b = bj > b ? bj : b;
                    lo = bj < lo ? bj : lo;
                }
            }
        }
        /* Below level 0 the goal lies inside the bucket chosen above; the
         * walk stops at its lowest part even if summing in another order
         * leaves a rounding hair short. */
        for (; b > lo; b--) {
            if (above + mass[0][b] >= goal)
                break;
            above += mass[0][b];
        }
        if (b < 0) { /* goal is the whole mass (or a rounding hair above it) */
            *kept = total;
            return all;
        }
        prefix = (prefix << 10) | b;
        if (level == 0 && !ids) {
            /* The boundary bucket's ids >= t are in row_scratch; those
             * below t come after the nucleus anyway. */
            int k = 0;
            for (int j = 0; j < n_above_t; j++) {
                int32_t id = row_scratch[j];
                row_scratch[k] = id;
                k += (sampler_key(probs[id]) >> 20) == prefix;
            }
            ids = row_scratch;
            m = k;
        }
    }

    /* All that is left has the same value: the lowest ids go first.  If
     * rounding never reaches goal, every tie stays (a hair too many). */
    sampler_cut cut = {prefix, INT32_MAX};
    for (int j = 0; j < m; j++) {
        int32_t id = ids ? ids[j] : j;
        if (sampler_key(probs[id]) != prefix)
            continue;
        above += probs[id];
        if (above >= goal) {
            cut.id_max = id;
            break;
        }
    }
    *kept = above;
    return cut;
}

/* Draws from the candidates inside c (ids[m], or the row if ids is NULL)
 * with weights probs of total mass.  Over the row, blocks whose kept sum
 * stays below the target are skipped whole. */
static int32_t sampler_draw(eng_sampler *s, const int32_t *ids, int m, sampler_cut c, double mass)
{
    const float *probs = s->probs;
    double u = sampler_rng_uniform(s->rng) * mass;
    double acc = 0.0;
    int j = 0;
    if (!ids) {
        for (; j + SAMPLER_BLOCK <= m; j += SAMPLER_BLOCK) {
            double block = sampler_block_sum_in(probs + j, j, c);
            if (acc + block > u)
                break;
            acc += block;
        }
    }
    for (; j < m; j++) {
        int32_t id = ids ? ids[j] : j;
        if (probs[id] <= 0.0f || !sampler_in_cut(probs[id], id, c))
            continue;
        acc += probs[id];
        if (acc > u)
            return id;
    }
    /* u fell in the rounding gap at the very end: the last possible id */
    for (j = m - 1; j >= 0; j--) {
        int32_t id = ids ? ids[j] : j;
        if (probs[id] > 0.0f && sampler_in_cut(probs[id], id, c))
            return id;
    }
    assert(0 && "no candidate with weight: the argmax always has weight 1");
    return ids ? ids[0] : 0;
}

/* ---- the rest of the pipeline ---- */

/* HF repetition penalty: each id in history once, from its raw logit, so a
 * repeated id is not penalised twice.  Out-of-range ids are ignored. */
static void sampler_penalize(float *w, const float *logits, int n, const int32_t *history,
                             int n_history, float penalty)
{
    for (int i = 0; i < n_history; i++) {
        int32_t id = history[i];
        if (id < 0 || id >= n)
            continue;
        float x = logits[id];
        w[id] = x > 0.0f ? x / penalty : x * penalty;
    }
}

/* OpenAI's shaping after the repetition penalty: + logit_bias, then
 * - count * frequency_penalty - presence_penalty for each id this sampler
 * returned before (only the seen ids are visited). */
static void sampler_shape(const eng_sampler *s, float *w)
{
    const eng_sampling *p = &s->params;
    for (int i = 0; i < p->n_logit_bias; i++)
        w[p->logit_bias[i].token] += p->logit_bias[i].bias;
    for (int i = 0; i < s->n_seen; i++) {
        int32_t id = s->seen[i];
        w[id] -= (float)s->counts[id] * p->frequency_penalty + p->presence_penalty;
    }
}

/* Remembers a returned id for the presence/frequency penalties. */
static void sampler_count(eng_sampler *s, int32_t id)
{
    if (s->counts && s->counts[id]++ == 0)
        s->seen[s->n_seen++] = id;
}

/* Fills lp from log_softmax(logits): the token's value and the n_top best,
 * descending, ties by lowest id.  scratch[n] is overwritten. */
static void sampler_logprobs(const float *logits, int n, int n_top, int32_t token,
                             float *scratch, eng_logprobs *lp)
{
    float mx = logits[sampler_argmax(logits, n)];
    for (int i = 0; i < n; i++)
        scratch[i] = sampler_exp(logits[i] - mx);
    double lse = (double)mx + log(sampler_sum(scratch, n)); /* no finite max: NaN/inf, as is */

    lp->token = token;
    lp->logprob = (float)((double)logits[token] - lse);
    int c = 0;
    float thr = -INFINITY; /* the n_top-th best so far */
    for (int i = 0; i < n && n_top > 0; i++) {
        float v = logits[i];
        if (isnan(v) || (c == n_top && !(v > thr)))
            continue;
        int j = c < n_top ? c++ : n_top - 1;
        while (j > 0 && lp->top_logprobs[j - 1] < v) {
            lp->top_logprobs[j] = lp->top_logprobs[j - 1];
            lp->top_ids[j] = lp->top_ids[j - 1];
            j--;
        }
        lp->top_logprobs[j] = v; /* the raw logit until the loop ends */
        lp->top_ids[j] = i;
        thr = lp->top_logprobs[c - 1];
    }
    for (int j = 0; j < c; j++)
        lp->top_logprobs[j] = (float)((double)lp->top_logprobs[j] - lse);
    lp->n_top = c; /* less than asked only when the vocabulary is smaller */
}

int32_t eng_sampler_sample(eng_sampler *s, const float *logits, const int32_t *history, int n_history,
                           eng_logprobs *lp)
{
    const eng_sampling *p = &s->params;
    const int n = s->n_vocab;
    float *probs = s->probs; /* (n_vocab) penalised logits, then weights */

    const float *w = logits; /* the logits after the penalties and the bias */
    int repeat = p->repetition_penalty != 1.0f && n_history > 0;
    if (repeat || p->n_logit_bias > 0 || s->n_seen > 0) {
        memcpy(probs, logits, (size_t)n * sizeof *probs);
        if (repeat)
            sampler_penalize(probs, logits, n, history, n_history, p->repetition_penalty);
        sampler_shape(s, probs);
        w = probs;
    }

    int32_t token = sampler_argmax(w, n);
    float mx = w[token];
    float inv_t = p->temperature > 0.0f ? 1.0f / p->temperature : INFINITY;
    /* Greedy, a temperature so small that 1/T overflows, or a row with no
     * finite maximum (all -inf/NaN, or a +inf): the argmax is the answer. */
    if (!isfinite(inv_t) || !isfinite(mx))
        goto done;

    int32_t *ids = NULL; /* the candidates, ascending; NULL: all of 0..n-1 */
    int m = n;
    double mass; /* of the candidates inside cut */
    sampler_cut cut = {0, INT32_MAX};
    if (p->top_k > 0 && p->top_k < n) {
        /* On the logits, so only the survivors need an exp. */
        ids = s->order;
        m = sampler_top_k(w, n, p->top_k, ids);
        mass = 0.0;
        for (int j = 0; j < m; j++) {
            float e = sampler_exp((w[ids[j]] - mx) * inv_t);
            probs[ids[j]] = e;
            mass += e;
        }
    } else {
        mass = sampler_softmax_all(probs, w, n, mx, inv_t);
    }
    if (p->top_p < 1.0f)
        cut = sampler_top_p_cut(probs, ids, m, mass, (double)p->top_p * mass, s->order, &mass);
    if (p->min_p > 0.0f) {
        /* p_i < min_p * p_max, and p_max = 1: a cut at key(min_p). */
        sampler_cut cut_min = {sampler_key(p->min_p), INT32_MAX};
        if (sampler_cut_within(cut_min, cut)) {
            cut = cut_min;
            mass = sampler_cut_mass(probs, ids, m, cut);
        }
    }
    assert(mass >= 1.0); /* the argmax (weight 1) survives every filter */
    token = sampler_draw(s, ids, m, cut, mass);

done:
    sampler_count(s, token);
    if (lp)
        sampler_logprobs(logits, n, p->logprobs, token, probs, lp);
    return token;
}
