/* test_sampler.c - eng_sampler against references written here in double
 * precision: softmax(logits / T), kept sets of top-k/top-p/min-p built by a
 * full sort, the HF repetition-penalty formula, and log_softmax.
 *
 * Distributions are checked with a chi-square test (see chi2_limit for the
 * bound), and each such test also checks that a slightly wrong reference is
 * rejected, so a test that cannot fail would show.  Seeds are fixed: runs are
 * deterministic.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"

#define N_SAMPLES 200000

/* ---- references ---- */

/* Test-side generator (independent of the sampler's): splitmix64. */
static uint64_t t_rand(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double t_uniform(uint64_t *x) { return (double)(t_rand(x) >> 11) * 0x1.0p-53; }

static double t_normal(uint64_t *x)
{
    double u1 = t_uniform(x), u2 = t_uniform(x);
    return sqrt(-2.0 * log(u1 + 1e-300)) * cos(2.0 * M_PI * u2);
}

/* Full reference pipeline: penalty, softmax(w/T), then top-k (ties at the
 * k-th value kept), top-p (smallest prefix by (prob desc, id asc) with
 * cumulative >= top_p), min-p (prob >= min_p * max).  Writes the final
 * normalised distribution to out[n] (0 outside the kept set). */
typedef struct ref_item {
    double p;
    int id;
} ref_item;

static int ref_cmp(const void *a, const void *b)
{
    const ref_item *x = a, *y = b;
    if (x->p != y->p)
        return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

static void ref_dist(const float *logits, int n, const int32_t *hist, int n_hist,
                     const eng_sampling *sp, double *out)
{
    double *w = malloc((size_t)n * sizeof *w);
    ref_item *it = malloc((size_t)n * sizeof *it);
    for (int i = 0; i < n; i++)
        w[i] = logits[i];
    for (int h = 0; h < n_hist; h++) {
        double x = logits[hist[h]];
        w[hist[h]] = x > 0 ? x / sp->repetition_penalty : x * sp->repetition_penalty;
    }
    for (int b = 0; b < sp->n_logit_bias; b++)
        w[sp->logit_bias[b].token] += sp->logit_bias[b].bias;
    double mx = -INFINITY;
    for (int i = 0; i < n; i++)
        mx = w[i] > mx ? w[i] : mx;
    double z = 0;
    for (int i = 0; i < n; i++) {
        it[i].p = exp((w[i] - mx) / sp->temperature);
        it[i].id = i;
        z += it[i].p;
    }
    for (int i = 0; i < n; i++)
        it[i].p /= z;
    qsort(it, (size_t)n, sizeof *it, ref_cmp);
    int keep = n;
    if (sp->top_k > 0 && sp->top_k < n) {
        keep = sp->top_k;
        while (keep < n && it[keep].p == it[sp->top_k - 1].p)
            keep++;
    }
    if (sp->top_p < 1.0f) {
        double zk = 0, cum = 0;
        for (int j = 0; j < keep; j++)
            zk += it[j].p;
        int j = 0;
        while (j < keep) {
            cum += it[j].p / zk;
            j++;
            if (cum >= sp->top_p)
                break;
        }
        keep = j;
    }
    if (sp->min_p > 0.0f) {
        int j = 0;
        while (j < keep && it[j].p >= sp->min_p * it[0].p)
            j++;
        keep = j;
    }
    memset(out, 0, (size_t)n * sizeof *out);
    double zk = 0;
    for (int j = 0; j < keep; j++)
        zk += it[j].p;
    for (int j = 0; j < keep; j++)
        out[it[j].id] = it[j].p / zk;
    free(w);
    free(it);
}

/* Upper bound for a chi-square statistic with df degrees of freedom that a
 * correct sampler exceeds with probability about 3e-7: the Wilson-Hilferty
 * cube-root normal approximation at z = 5.  Accurate to a few percent for
 * df >= 1, far below the margin a wrong distribution produces. */
static double chi2_limit(int df)
{
    double a = 2.0 / (9.0 * df);
    double c = 1.0 - a + 5.0 * sqrt(a);
    return df * c * c * c;
}

/* Pearson chi-square of counts against expected probabilities; categories
 * with expected count < 5 are pooled into one.  Returns the statistic and
 * the degrees of freedom in *df.  A sample where expected is 0 gives +inf. */
static double chi2(const long *counts, const double *prob, int n, long total, int *df)
{
    double stat = 0, pool_e = 0;
    long pool_o = 0;
    int cats = 0;
    *df = 1;
    for (int i = 0; i < n; i++) {
        double e = prob[i] * (double)total;
        if (prob[i] == 0.0) {
            if (counts[i] > 0)
                return INFINITY;
            continue;
        }
        if (e < 5.0) {
            pool_e += e;
            pool_o += counts[i];
            continue;
        }
        stat += (counts[i] - e) * (counts[i] - e) / e;
        cats++;
    }
    if (pool_e > 0) {
        stat += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
        cats++;
    }
    *df = cats > 1 ? cats - 1 : 1;
    return stat;
}

/* Draws `total` samples and returns the counts (caller frees). */
static long *draw_counts(const eng_sampling *sp, const float *logits, int n, const int32_t *hist,
                         int n_hist, long total)
{
    eng_sampler s;
    ssmd_err err;
    ck_assert_int_eq(eng_sampler_init(&s, sp, n, &err), SSMD_OK);
    long *counts = calloc((size_t)n, sizeof *counts);
    float *row = malloc((size_t)n * sizeof *row);
    for (long t = 0; t < total; t++) {
        memcpy(row, logits, (size_t)n * sizeof *row);
        int32_t id = eng_sampler_sample(&s, row, hist, n_hist, NULL);
        if (id < 0 || id >= n) /* not ck_assert: Check logs every call of it */
            ck_abort_msg("id %d out of range", id);
        counts[id]++;
    }
    free(row);
    eng_sampler_close(&s);
    return counts;
}

/* Samples and checks the counts against the reference distribution; also
 * checks that the reference for `wrong` (if not NULL) is rejected. */
static void check_dist(const eng_sampling *sp, const float *logits, int n, const int32_t *hist,
                       int n_hist, long total, const eng_sampling *wrong)
{
    double *ref = malloc((size_t)n * sizeof *ref);
    long *counts = draw_counts(sp, logits, n, hist, n_hist, total);
    ref_dist(logits, n, hist, n_hist, sp, ref);
    int df;
    double stat = chi2(counts, ref, n, total, &df);
    ck_assert_msg(stat < chi2_limit(df), "chi2 %.1f >= %.1f (df %d) T=%g k=%d p=%g minp=%g",
                  stat, chi2_limit(df), df, sp->temperature, sp->top_k, sp->top_p, sp->min_p);
    if (wrong) {
        ref_dist(logits, n, hist, n_hist, wrong, ref);
        double bad = chi2(counts, ref, n, total, &df);
        ck_assert_msg(bad > chi2_limit(df), "wrong reference not rejected: %.1f", bad);
    }
    free(counts);
    free(ref);
}

static const float k_logits8[8] = {1.0f, 2.5f, -0.5f, 0.0f, 2.0f, 1.5f, -2.0f, 0.7f};

/* ---- validation ---- */

START_TEST(test_validate)
{
    eng_sampling p;
    ssmd_err err;
    eng_sampling_defaults(&p);
    ck_assert(p.temperature == 1.0f && p.top_k == 0 && p.top_p == 1.0f && p.min_p == 0.0f &&
              p.repetition_penalty == 1.0f && p.seed == 0 && p.logprobs == 0);
    ck_assert_int_eq(eng_sampling_validate(&p, &err), SSMD_OK);

    eng_sampling q;
#define BAD(field, stmt)                                                               \
    do {                                                                               \
        q = p;                                                                         \
        stmt;                                                                          \
        memset(&err, 0, sizeof err);                                                   \
        ck_assert_int_eq(eng_sampling_validate(&q, &err), SSMD_EINVAL);                \
        ck_assert_int_eq(err.code, SSMD_EINVAL);                                       \
        ck_assert_msg(strstr(err.msg, field) != NULL, "message '%s' lacks %s", err.msg, \
                      field);                                                          \
    } while (0)
#define GOOD(stmt)                                                         \
    do {                                                                   \
        q = p;                                                             \
        stmt;                                                              \
        ck_assert_int_eq(eng_sampling_validate(&q, &err), SSMD_OK);        \
    } while (0)
    BAD("temperature", q.temperature = -0.1f);
    BAD("temperature", q.temperature = NAN);
    BAD("temperature", q.temperature = INFINITY);
    BAD("top_k", q.top_k = -1);
    BAD("top_p", q.top_p = 0.0f);
    BAD("top_p", q.top_p = 1.0001f);
    BAD("top_p", q.top_p = NAN);
    BAD("min_p", q.min_p = -0.01f);
    BAD("min_p", q.min_p = 1.01f);
    BAD("min_p", q.min_p = NAN);
    BAD("repetition_penalty", q.repetition_penalty = 0.0f);
    BAD("repetition_penalty", q.repetition_penalty = -1.0f);
    BAD("repetition_penalty", q.repetition_penalty = INFINITY);
    BAD("logprobs", q.logprobs = -1);
    BAD("logprobs", q.logprobs = ENG_LOGPROBS_MAX + 1);
    BAD("presence_penalty", q.presence_penalty = NAN);
    BAD("frequency_penalty", q.frequency_penalty = INFINITY);
    BAD("logit_bias", q.n_logit_bias = ENG_LOGIT_BIAS_MAX + 1);
    BAD("logit_bias", (q.n_logit_bias = 1, q.logit_bias[0].token = -1));
    BAD("logit_bias", (q.n_logit_bias = 1, q.logit_bias[0].token = 3, q.logit_bias[0].bias = NAN));
    GOOD(q.temperature = 0.0f);
    GOOD(q.top_k = 1000000);
    GOOD(q.top_p = 1e-6f);
    GOOD(q.min_p = 1.0f);
    GOOD(q.repetition_penalty = 0.5f);
    GOOD(q.logprobs = ENG_LOGPROBS_MAX);
#undef BAD
#undef GOOD

    eng_sampler s;
    q = p;
    q.top_p = 2.0f;
    ck_assert_int_eq(eng_sampler_init(&s, &q, 10, &err), SSMD_EINVAL);
    ck_assert(strstr(err.msg, "top_p") != NULL);
    eng_sampler_close(&s); /* safe after a failed init */
    ck_assert_int_eq(eng_sampler_init(&s, &p, 0, &err), SSMD_EINVAL);
    ck_assert(strstr(err.msg, "n_vocab") != NULL);
    q = p; /* a biased id beyond the vocabulary is the sampler's to refuse */
    q.n_logit_bias = 1;
    q.logit_bias[0].token = 10;
    ck_assert_int_eq(eng_sampler_init(&s, &q, 10, &err), SSMD_EINVAL);
    ck_assert(strstr(err.msg, "logit_bias") != NULL);
}
END_TEST

/* ---- greedy ---- */

START_TEST(test_greedy_argmax)
{
    enum { V = 50280 };
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.temperature = 0.0f;
    eng_sampler s;
    ck_assert_int_eq(eng_sampler_init(&s, &p, V, NULL), SSMD_OK);
    float *row = malloc(V * sizeof *row);
    uint64_t x = 7;
    for (int r = 0; r < 20; r++) {
        for (int i = 0; i < V; i++)
            row[i] = (float)(t_normal(&x) * 3.0);
        int want = 0;
        for (int i = 1; i < V; i++)
            if (row[i] > row[want])
                want = i;
        ck_assert_int_eq(eng_sampler_sample(&s, row, NULL, 0, NULL), want);
    }
    /* ties: the lowest id wins, also when it is not first */
    for (int i = 0; i < V; i++)
        row[i] = -1.0f;
    row[40000] = 5.0f;
    row[123] = 5.0f;
    row[50279] = 5.0f;
    ck_assert_int_eq(eng_sampler_sample(&s, row, NULL, 0, NULL), 123);
    /* -inf and NaN never win */
    row[123] = NAN;
    row[40000] = -INFINITY;
    ck_assert_int_eq(eng_sampler_sample(&s, row, NULL, 0, NULL), 50279);
    free(row);
    eng_sampler_close(&s);
}
END_TEST

/* ---- temperature ---- */

START_TEST(test_temperature_distribution)
{
    const float temps[] = {0.3f, 0.7f, 1.0f, 1.6f, 4.0f};
    for (size_t t = 0; t < sizeof temps / sizeof temps[0]; t++) {
        eng_sampling p, wrong;
        eng_sampling_defaults(&p);
        p.temperature = temps[t];
        p.seed = 100 + t;
        wrong = p;
        wrong.temperature = temps[t] * 1.1f;
        check_dist(&p, k_logits8, 8, NULL, 0, N_SAMPLES, &wrong);
    }
}
END_TEST

/* Beyond chi-square: the largest deviation of an empirical frequency from
 * softmax is below 5 standard errors sqrt(p(1-p)/N) <= 0.0056 at N = 200k. */
START_TEST(test_max_abs_deviation)
{
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.seed = 42;
    long *counts = draw_counts(&p, k_logits8, 8, NULL, 0, N_SAMPLES);
    double ref[8];
    ref_dist(k_logits8, 8, NULL, 0, &p, ref);
    for (int i = 0; i < 8; i++) {
        double f = (double)counts[i] / N_SAMPLES;
        double se = sqrt(ref[i] * (1 - ref[i]) / N_SAMPLES);
        ck_assert_msg(fabs(f - ref[i]) < 5 * se, "id %d: %.5f vs %.5f", i, f, ref[i]);
    }
    free(counts);
}
END_TEST

/* ---- top-k ---- */

START_TEST(test_top_k)
{
    const float logits[6] = {1.0f, 3.0f, 2.0f, 0.5f, 2.5f, -1.0f};
    eng_sampling p, wrong;
    eng_sampling_defaults(&p);
    p.top_k = 2;
    p.temperature = 0.8f;
    p.seed = 5;
    long *counts = draw_counts(&p, logits, 6, NULL, 0, N_SAMPLES);
    for (int i = 0; i < 6; i++)
        if (i != 1 && i != 4)
            ck_assert_int_eq(counts[i], 0);
    /* ratio of ids 1 and 4 is exp(0.5 / 0.8); binomial test on id 1 */
    double q = 1.0 / (1.0 + exp(-0.5 / 0.8));
    double se = sqrt(q * (1 - q) / N_SAMPLES);
    ck_assert_msg(fabs((double)counts[1] / N_SAMPLES - q) < 5 * se, "%ld", counts[1]);
    free(counts);

    wrong = p;
    wrong.top_k = 3;
    check_dist(&p, logits, 6, NULL, 0, N_SAMPLES, &wrong);
    /* k = 1 is greedy */
    p.top_k = 1;
    counts = draw_counts(&p, logits, 6, NULL, 0, 1000);
    ck_assert_int_eq(counts[1], 1000);
    free(counts);
    /* k >= n_vocab is off */
    p.top_k = 6;
    wrong = p;
    wrong.top_k = 5;
    check_dist(&p, logits, 6, NULL, 0, N_SAMPLES, &wrong);
    p.top_k = 100;
    check_dist(&p, logits, 6, NULL, 0, N_SAMPLES, NULL);
}
END_TEST

START_TEST(test_top_k_ties)
{
    /* HF/vLLM keep every token tied with the k-th value: 1, 2, 3 here */
    const float logits[5] = {1.0f, 2.0f, 2.0f, 2.0f, 0.0f};
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.top_k = 2;
    p.seed = 9;
    long *counts = draw_counts(&p, logits, 5, NULL, 0, 30000);
    ck_assert_int_eq(counts[0] + counts[4], 0);
    for (int i = 1; i <= 3; i++) /* 10000 each, sd 82 */
        ck_assert_msg(labs(counts[i] - 10000) < 500, "%d: %ld", i, counts[i]);
    free(counts);
}
END_TEST

/* ---- top-p ---- */

START_TEST(test_top_p_sets)
{
    /* probabilities 0.4, 0.3, 0.2, 0.1 (ids shuffled) */
    const float logits[4] = {logf(0.2f), logf(0.4f), logf(0.1f), logf(0.3f)};
    const struct {
        float top_p;
        int keep[4];
    } cases[] = {
        {0.3f, {0, 1, 0, 0}},  {0.39f, {0, 1, 0, 0}}, {0.45f, {0, 1, 0, 1}},
        {0.65f, {0, 1, 0, 1}}, {0.75f, {1, 1, 0, 1}}, {0.95f, {1, 1, 1, 1}},
        {1.0f, {1, 1, 1, 1}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        eng_sampling p;
        eng_sampling_defaults(&p);
        p.top_p = cases[c].top_p;
        p.seed = c;
        long *counts = draw_counts(&p, logits, 4, NULL, 0, 20000);
        for (int i = 0; i < 4; i++)
            ck_assert_msg((counts[i] > 0) == cases[c].keep[i], "top_p %g id %d count %ld",
                          cases[c].top_p, i, counts[i]);
        free(counts);
        check_dist(&p, logits, 4, NULL, 0, 50000, NULL);
    }
}
END_TEST

START_TEST(test_top_p_ties)
{
    /* four equal tokens and one smaller: the nucleus takes tied tokens in
     * id order, exactly as many as reach top_p */
    const float logits[5] = {-3.0f, 1.0f, 1.0f, 1.0f, 1.0f};
    const struct {
        float top_p;
        long mask; /* bit i: id i kept */
    } cases[] = {
        {0.1f, 0x02}, {0.3f, 0x06}, {0.6f, 0x0e}, {0.8f, 0x1e}, {0.999f, 0x1f}, {1.0f, 0x1f},
    };
    /* p(id 0) = e^-4 / (4 + e^-4) = 0.0046, the others 0.2489 each:
     * cumulative 0.2489, 0.4977, 0.7466, 0.9954, 1 */
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        eng_sampling p;
        eng_sampling_defaults(&p);
        p.top_p = cases[c].top_p;
        p.seed = 77 + c;
        long *counts = draw_counts(&p, logits, 5, NULL, 0, 40000);
        for (int i = 0; i < 5; i++)
            ck_assert_msg((counts[i] > 0) == ((cases[c].mask >> i) & 1),
                          "top_p %g id %d count %ld", cases[c].top_p, i, counts[i]);
        free(counts);
        check_dist(&p, logits, 5, NULL, 0, 40000, NULL);
    }
    /* exactly on a boundary that float arithmetic represents exactly:
     * 4 equal tokens, top_p 0.5 -> cumulative 0.25, 0.5 >= 0.5: two kept */
    const float eq[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.top_p = 0.5f;
    long *counts = draw_counts(&p, eq, 4, NULL, 0, 10000);
    ck_assert(counts[0] > 4500 && counts[1] > 4500 && counts[2] == 0 && counts[3] == 0);
    free(counts);
}
END_TEST

/* ---- min-p ---- */

START_TEST(test_min_p)
{
    /* relative probabilities 1, e^-0.5, e^-1, e^-2, e^-3 (= 1, .61, .37, .14, .05) */
    const float logits[5] = {-1.0f, 0.0f, -3.0f, -0.5f, -2.0f};
    const struct {
        float min_p;
        long mask;
    } cases[] = {
        {0.0f, 0x1f}, {0.1f, 0x1b}, {0.2f, 0x0b}, {0.5f, 0x0a}, {0.7f, 0x02}, {1.0f, 0x02},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        eng_sampling p;
        eng_sampling_defaults(&p);
        p.min_p = cases[c].min_p;
        p.seed = 300 + c;
        long *counts = draw_counts(&p, logits, 5, NULL, 0, 40000);
        for (int i = 0; i < 5; i++)
            ck_assert_msg((counts[i] > 0) == ((cases[c].mask >> i) & 1),
                          "min_p %g id %d count %ld", cases[c].min_p, i, counts[i]);
        free(counts);
        check_dist(&p, logits, 5, NULL, 0, 40000, NULL);
    }
    /* min_p = 1 keeps every token tied with the maximum */
    const float tied[4] = {3.0f, 1.0f, 3.0f, 2.9f};
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.min_p = 1.0f;
    long *counts = draw_counts(&p, tied, 4, NULL, 0, 10000);
    ck_assert(counts[1] == 0 && counts[3] == 0 && counts[0] > 4500 && counts[2] > 4500);
    free(counts);
    /* the temperature applies first: at T = 4 the ratios are 1, .88, .78, ... */
    p.min_p = 0.8f;
    p.temperature = 4.0f;
    check_dist(&p, logits, 5, NULL, 0, 40000, NULL);
}
END_TEST

/* ---- all filters, against the reference, on random rows ---- */

START_TEST(test_filters_random)
{
    /* 200 = 3 blocks of 64 and a tail of 8: block paths and tail paths */
    enum { V = 200 };
    uint64_t x = 1234;
    float logits[V];
    for (int c = 0; c < 16; c++) {
        for (int i = 0; i < V; i++) {
            double v = t_normal(&x) * 1.5;
            logits[i] = (c % 3 == 0) ? (float)(round(v * 2) / 2) : (float)v; /* ties */
        }
        eng_sampling p;
        eng_sampling_defaults(&p);
        p.temperature = (float)(0.3 + 1.7 * t_uniform(&x));
        p.top_k = (c % 4 == 1) ? 0 : 1 + (int)(t_rand(&x) % 60);
        p.top_p = (c % 5 == 2) ? 1.0f : (float)(0.2 + 0.8 * t_uniform(&x));
        p.min_p = (c % 2) ? 0.0f : (float)(0.3 * t_uniform(&x));
        p.repetition_penalty = (c % 3 == 1) ? 1.3f : 1.0f;
        p.seed = (uint64_t)c;
        int32_t hist[4] = {(int32_t)(t_rand(&x) % V), (int32_t)(t_rand(&x) % V), 3, 3};
        check_dist(&p, logits, V, hist, 4, 20000, NULL);
    }
}
END_TEST

/* Full-size rows: every sample lies in the reference kept set (computed by a
 * full sort), and a pooled chi-square on that set. */
START_TEST(test_filters_full_vocab)
{
    enum { V = 50280 };
    float *logits = malloc(V * sizeof *logits);
    double *ref = malloc(V * sizeof *ref);
    uint64_t x = 99;
    const struct {
        double sigma, quant;
        float t, top_p, min_p;
        int top_k;
    } cases[] = {
        {3.0, 0, 0.8f, 0.9f, 0.05f, 40},   /* a usual request */
        {3.0, 0, 1.0f, 0.95f, 0.0f, 0},    /* top-p alone on a peaked row */
        {0.1, 0, 1.0f, 0.5f, 0.0f, 0},     /* a flat row: a nucleus of ~25k */
        {2.0, 0.5, 1.0f, 0.7f, 0.0f, 0},   /* many exact ties */
        {2.0, 0.5, 0.7f, 1.0f, 0.0f, 100}, /* top-k with ties */
        {3.0, 0, 1.0f, 1.0f, 0.02f, 0},    /* min-p alone */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < V; i++) {
            double v = t_normal(&x) * cases[c].sigma;
            logits[i] = (float)(cases[c].quant > 0 ? round(v / cases[c].quant) * cases[c].quant
                                                   : v);
        }
        eng_sampling p;
        eng_sampling_defaults(&p);
        p.temperature = cases[c].t;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        p.top_k = cases[c].top_k;
        p.seed = c;
        ref_dist(logits, V, NULL, 0, &p, ref);
        long *counts = draw_counts(&p, logits, V, NULL, 0, 200);
        int df;
        double stat = chi2(counts, ref, V, 200, &df);
        ck_assert_msg(stat < chi2_limit(df), "case %zu: chi2 %.1f df %d", c, stat, df);
        free(counts);
    }
    free(logits);
    free(ref);
}
END_TEST

/* ---- repetition penalty ---- */

static int32_t greedy(const float *logits, int n, const int32_t *hist, int n_hist, float pen)
{
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.temperature = 0.0f;
    p.repetition_penalty = pen;
    eng_sampler s;
    ck_assert_int_eq(eng_sampler_init(&s, &p, n, NULL), SSMD_OK);
    float row[16];
    memcpy(row, logits, (size_t)n * sizeof *row);
    int32_t id = eng_sampler_sample(&s, row, hist, n_hist, NULL);
    eng_sampler_close(&s);
    return id;
}

/* argmax after x > 0 ? x / pen : x * pen on the ids in hist */
static int32_t greedy_ref(const float *logits, int n, const int32_t *hist, int n_hist, float pen)
{
    double w[16];
    for (int i = 0; i < n; i++)
        w[i] = logits[i];
    for (int h = 0; h < n_hist; h++)
        w[hist[h]] = logits[hist[h]] > 0 ? logits[hist[h]] / pen : logits[hist[h]] * pen;
    int best = 0;
    for (int i = 1; i < n; i++)
        if (w[i] > w[best])
            best = i;
    return best;
}

START_TEST(test_repetition_penalty)
{
    const float pos[3] = {2.0f, 1.5f, 0.1f};
    const int32_t h0[1] = {0};
    /* 2.0 / 1.5 = 1.33 < 1.5: the choice moves to id 1 */
    ck_assert_int_eq(greedy(pos, 3, h0, 1, 1.5f), 1);
    ck_assert_int_eq(greedy_ref(pos, 3, h0, 1, 1.5f), 1);
    /* 2.0 / 1.2 = 1.67 > 1.5: stays; repeats in history apply once */
    const int32_t h000[3] = {0, 0, 0};
    ck_assert_int_eq(greedy(pos, 3, h000, 3, 1.2f), 0);
    /* negative logits are multiplied: -1.0 * 1.5 = -1.5 < -1.2 */
    const float neg[3] = {-1.0f, -1.2f, -4.0f};
    ck_assert_int_eq(greedy(neg, 3, h0, 1, 1.5f), 1);
    ck_assert_int_eq(greedy(neg, 3, h0, 1, 1.1f), 0); /* -1.1 > -1.2 */
    /* a penalty < 1 boosts: 1.0 / 0.5 = 2.0 > 1.2 */
    const float boost[2] = {1.0f, 1.2f};
    ck_assert_int_eq(greedy(boost, 2, h0, 1, 0.5f), 0);
    /* a naive "divide always" would make -1.0 / 1.5 = -0.67 win here */
    const float mixed[3] = {-1.0f, -0.8f, -3.0f};
    ck_assert_int_eq(greedy(mixed, 3, h0, 1, 1.5f), 1);
    /* out-of-range history ids are ignored */
    const int32_t bad[2] = {-5, 99};
    ck_assert_int_eq(greedy(pos, 3, bad, 2, 1.5f), 0);

    /* random rows against the formula */
    uint64_t x = 5;
    for (int r = 0; r < 500; r++) {
        float row[12];
        int32_t hist[5];
        for (int i = 0; i < 12; i++)
            row[i] = (float)(t_normal(&x) * 2);
        for (int h = 0; h < 5; h++)
            hist[h] = (int32_t)(t_rand(&x) % 12);
        float pen = (float)(0.5 + 2.0 * t_uniform(&x));
        ck_assert_int_eq(greedy(row, 12, hist, 5, pen), greedy_ref(row, 12, hist, 5, pen));
    }

    /* and the sampled distribution */
    eng_sampling p, wrong;
    eng_sampling_defaults(&p);
    p.repetition_penalty = 1.8f;
    p.seed = 11;
    wrong = p;
    wrong.repetition_penalty = 1.0f;
    const int32_t hist[3] = {1, 4, 6};
    check_dist(&p, k_logits8, 8, hist, 3, N_SAMPLES, &wrong);
}
END_TEST

/* ---- logit bias, presence and frequency penalties ---- */

START_TEST(test_logit_bias)
{
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.temperature = 0.0f;
    float row[8];
    memcpy(row, k_logits8, sizeof row);
    eng_sampler s;
    /* -100 bans the argmax (id 1); the next best (id 4, 2.0) wins */
    p.n_logit_bias = 1;
    p.logit_bias[0] = (eng_logit_bias){1, -100.0f};
    ck_assert_int_eq(eng_sampler_init(&s, &p, 8, NULL), SSMD_OK);
    ck_assert_int_eq(eng_sampler_sample(&s, row, NULL, 0, NULL), 4);
    ck_assert(memcmp(row, k_logits8, sizeof row) == 0); /* the caller's row is not written */
    eng_sampler_close(&s);
    /* +5 lifts the worst id (6, -2.0) above the best (2.5) */
    p.n_logit_bias = 2;
    p.logit_bias[1] = (eng_logit_bias){6, 5.0f};
    ck_assert_int_eq(eng_sampler_init(&s, &p, 8, NULL), SSMD_OK);
    ck_assert_int_eq(eng_sampler_sample(&s, row, NULL, 0, NULL), 6);
    eng_sampler_close(&s);

    /* the sampled distribution is softmax(logits + bias) */
    eng_sampling q, wrong;
    eng_sampling_defaults(&q);
    q.seed = 21;
    q.n_logit_bias = 2;
    q.logit_bias[0] = (eng_logit_bias){0, 1.5f};
    q.logit_bias[1] = (eng_logit_bias){1, -2.0f};
    wrong = q;
    wrong.n_logit_bias = 0;
    check_dist(&q, k_logits8, 8, NULL, 0, N_SAMPLES, &wrong);
}
END_TEST

/* Greedy with presence/frequency penalties, against the formula written
 * out here: logit - count * frequency - (count > 0) * presence over what
 * was generated before. */
static void penalty_greedy_case(const float *logits, int n, float presence, float frequency, int steps)
{
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.temperature = 0.0f;
    p.presence_penalty = presence;
    p.frequency_penalty = frequency;
    eng_sampler s;
    ck_assert_int_eq(eng_sampler_init(&s, &p, n, NULL), SSMD_OK);
    int count[64] = {0};
    ck_assert(n <= 64);
    for (int t = 0; t < steps; t++) {
        int want = 0;
        double best = -INFINITY;
        for (int i = 0; i < n; i++) {
            double v = (double)logits[i] - count[i] * (double)frequency - (count[i] > 0) * (double)presence;
            if (v > best) {
                best = v;
                want = i;
            }
        }
        ck_assert_int_eq(eng_sampler_sample(&s, logits, NULL, 0, NULL), want);
        count[want]++;
    }
    eng_sampler_close(&s);
}

START_TEST(test_presence_frequency)
{
    /* frequency 1: 3.0 -> 2.0 after one pick, so 2.5 is next, ... */
    const float row[3] = {3.0f, 2.5f, 0.0f};
    penalty_greedy_case(row, 3, 0.0f, 1.0f, 12);
    /* presence only: once each; after that the order is the raw one */
    penalty_greedy_case(row, 3, 1.0f, 0.0f, 6);
    /* negative penalties make repeats more likely */
    penalty_greedy_case(row, 3, -0.5f, -0.25f, 6);
    uint64_t x = 17;
    for (int r = 0; r < 200; r++) {
        float rr[20];
        for (int i = 0; i < 20; i++)
            rr[i] = (float)(t_normal(&x) * 2);
        penalty_greedy_case(rr, 20, (float)(4 * t_uniform(&x) - 2), (float)(4 * t_uniform(&x) - 2), 30);
    }

    /* sampled: the first token is forced (id 1), the second is drawn from
     * softmax(logits - frequency - presence at id 1) */
    enum { TRIALS = 100000 };
    const float force[8] = {0, 1000.0f, 0, 0, 0, 0, 0, 0};
    long *counts = calloc(8, sizeof *counts);
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.7f;
    for (long t = 0; t < TRIALS; t++) {
        eng_sampler s;
        p.seed = (uint64_t)t;
        ck_assert_int_eq(eng_sampler_init(&s, &p, 8, NULL), SSMD_OK);
        if (eng_sampler_sample(&s, force, NULL, 0, NULL) != 1)
            ck_abort_msg("the forced token was not drawn");
        counts[eng_sampler_sample(&s, k_logits8, NULL, 0, NULL)]++;
        eng_sampler_close(&s);
    }
    float shifted[8];
    memcpy(shifted, k_logits8, sizeof shifted);
    shifted[1] -= 1.2f;
    eng_sampling plain;
    eng_sampling_defaults(&plain);
    double ref[8];
    int df;
    ref_dist(shifted, 8, NULL, 0, &plain, ref);
    double stat = chi2(counts, ref, 8, TRIALS, &df);
    ck_assert_msg(stat < chi2_limit(df), "chi2 %.1f >= %.1f", stat, chi2_limit(df));
    ref_dist(k_logits8, 8, NULL, 0, &plain, ref); /* no penalty: must be rejected */
    stat = chi2(counts, ref, 8, TRIALS, &df);
    ck_assert_msg(stat > chi2_limit(df), "the unpenalised reference was not rejected: %.1f", stat);
    free(counts);
}
END_TEST

/* ---- seeds ---- */

START_TEST(test_seed_determinism)
{
    enum { V = 1000, T = 500 };
    float *logits = malloc(V * sizeof *logits), *row = malloc(V * sizeof *row);
    uint64_t x = 3;
    for (int i = 0; i < V; i++)
        logits[i] = (float)t_normal(&x);
    int32_t seq[3][T];
    const uint64_t seeds[3] = {12345, 12345, 12346};
    for (int k = 0; k < 3; k++) {
        eng_sampling p;
        eng_sampling_defaults(&p);
        p.seed = seeds[k];
        p.top_p = 0.9f;
        eng_sampler s;
        ck_assert_int_eq(eng_sampler_init(&s, &p, V, NULL), SSMD_OK);
        for (int t = 0; t < T; t++) {
            memcpy(row, logits, V * sizeof *row);
            seq[k][t] = eng_sampler_sample(&s, row, seq[k], t, NULL);
        }
        eng_sampler_close(&s);
    }
    ck_assert(memcmp(seq[0], seq[1], sizeof seq[0]) == 0);
    int same = 0;
    for (int t = 0; t < T; t++)
        same += seq[0][t] == seq[2][t];
    ck_assert_msg(same < T / 10, "%d of %d equal across seeds", same, T);
    free(logits);
    free(row);
}
END_TEST

/* ---- logprobs ---- */

START_TEST(test_logprobs)
{
    enum { V = 3000 };
    float *logits = malloc(V * sizeof *logits), *row = malloc(V * sizeof *row);
    double *ls = malloc(V * sizeof *ls);
    uint64_t x = 8;
    for (int i = 0; i < V; i++)
        logits[i] = (float)(t_normal(&x) * 4);
    logits[17] = logits[2999] = logits[5] = 14.0f; /* ties at the top */
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < V; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < V; i++)
        z += exp(logits[i] - mx);
    for (int i = 0; i < V; i++)
        ls[i] = logits[i] - mx - log(z);

    eng_sampling p;
    eng_sampling_defaults(&p);
    p.logprobs = ENG_LOGPROBS_MAX;
    p.temperature = 0.5f; /* neither temperature nor penalty change logprobs */
    p.repetition_penalty = 2.0f;
    int32_t hist[2] = {17, 5};
    eng_sampler s;
    ck_assert_int_eq(eng_sampler_init(&s, &p, V, NULL), SSMD_OK);
    for (int r = 0; r < 20; r++) {
        eng_logprobs lp;
        memcpy(row, logits, V * sizeof *row);
        int32_t tok = eng_sampler_sample(&s, row, hist, 2, &lp);
        ck_assert_int_eq(lp.token, tok);
        ck_assert(fabs(lp.logprob - ls[tok]) < 1e-4);
        ck_assert_int_eq(lp.n_top, ENG_LOGPROBS_MAX);
        /* reference order: logit desc, id asc */
        int used[V];
        memset(used, 0, sizeof used);
        for (int j = 0; j < lp.n_top; j++) {
            int best = -1;
            for (int i = 0; i < V; i++)
                if (!used[i] && (best < 0 || logits[i] > logits[best]))
                    best = i;
            used[best] = 1;
            ck_assert_int_eq(lp.top_ids[j], best);
            ck_assert(fabs(lp.top_logprobs[j] - ls[best]) < 1e-4);
            if (j > 0)
                ck_assert(lp.top_logprobs[j] <= lp.top_logprobs[j - 1]);
        }
    }
    eng_sampler_close(&s);

    /* a vocabulary fully listed: the probabilities sum to 1 */
    const float small[5] = {0.3f, -2.0f, 5.0f, 1.0f, 1.0f};
    eng_sampling_defaults(&p);
    p.logprobs = 5;
    p.temperature = 0.0f;
    ck_assert_int_eq(eng_sampler_init(&s, &p, 5, NULL), SSMD_OK);
    eng_logprobs lp;
    float srow[5];
    memcpy(srow, small, sizeof srow);
    ck_assert_int_eq(eng_sampler_sample(&s, srow, NULL, 0, &lp), 2);
    double sum = 0;
    for (int j = 0; j < 5; j++)
        sum += exp(lp.top_logprobs[j]);
    ck_assert(fabs(sum - 1.0) < 1e-5);
    const int32_t want_ids[5] = {2, 3, 4, 0, 1};
    for (int j = 0; j < 5; j++)
        ck_assert_int_eq(lp.top_ids[j], want_ids[j]);
    ck_assert(lp.logprob == lp.top_logprobs[0]);
    eng_sampler_close(&s);

    /* logprobs = 0 fills only the token's own value */
    p.logprobs = 0;
    ck_assert_int_eq(eng_sampler_init(&s, &p, 5, NULL), SSMD_OK);
    memcpy(srow, small, sizeof srow);
    ck_assert_int_eq(eng_sampler_sample(&s, srow, NULL, 0, &lp), 2);
    ck_assert_int_eq(lp.n_top, 0);
    eng_sampler_close(&s);
    free(logits);
    free(row);
    free(ls);
}
END_TEST

/* Degenerate rows never crash and give the argmax. */
START_TEST(test_degenerate_rows)
{
    eng_sampling p;
    eng_sampling_defaults(&p);
    p.top_p = 0.5f;
    p.top_k = 3;
    eng_sampler s;
    ck_assert_int_eq(eng_sampler_init(&s, &p, 4, NULL), SSMD_OK);
    float a[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    ck_assert_int_eq(eng_sampler_sample(&s, a, NULL, 0, NULL), 0);
    float b[4] = {0.0f, INFINITY, 1.0f, INFINITY};
    ck_assert_int_eq(eng_sampler_sample(&s, b, NULL, 0, NULL), 1);
    float c[4] = {NAN, 2.0f, NAN, -INFINITY};
    for (int r = 0; r < 100; r++) {
        float row[4];
        memcpy(row, c, sizeof row);
        ck_assert_int_eq(eng_sampler_sample(&s, row, NULL, 0, NULL), 1);
    }
    eng_sampler_close(&s);
    /* a one-token vocabulary */
    ck_assert_int_eq(eng_sampler_init(&s, &p, 1, NULL), SSMD_OK);
    float one[1] = {0.0f};
    ck_assert_int_eq(eng_sampler_sample(&s, one, NULL, 0, NULL), 0);
    eng_sampler_close(&s);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("sampler");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_validate);
    tcase_add_test(tc, test_greedy_argmax);
    tcase_add_test(tc, test_temperature_distribution);
    tcase_add_test(tc, test_max_abs_deviation);
    tcase_add_test(tc, test_top_k);
    tcase_add_test(tc, test_top_k_ties);
    tcase_add_test(tc, test_top_p_sets);
    tcase_add_test(tc, test_top_p_ties);
    tcase_add_test(tc, test_min_p);
    tcase_add_test(tc, test_filters_random);
    tcase_add_test(tc, test_filters_full_vocab);
    tcase_add_test(tc, test_repetition_penalty);
    tcase_add_test(tc, test_logit_bias);
    tcase_add_test(tc, test_presence_frequency);
    tcase_add_test(tc, test_seed_determinism);
    tcase_add_test(tc, test_logprobs);
    tcase_add_test(tc, test_degenerate_rows);
    suite_add_tcase(s, tc);
    return s;
}
