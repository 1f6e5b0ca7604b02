/* reference.h - test helpers shared by the model tests: load a fixture's
 * expected.json (reference logits and greedy continuations written by
 * tests/fixtures/gen_*.py) and compare rows and states within a tolerance
 * relative to the reference's largest magnitude; and the conformance
 * checks every model family passes (prefill in pieces = at once = token by
 * token; batched decode = solo decode).  Header-only, static: included by
 * one test file each. */
#ifndef SSMD_TESTS_REFERENCE_H
#define SSMD_TESTS_REFERENCE_H

#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/model.h"
#include "engine/model_config.h"
#include "engine/state_pool.h"
#include "kernels/cpu/cpu_kernels.h"

/* Per-level runs: the exactness tests run once per CPU kernel level this
 * machine has (scalar, avx2, avx512 on an AVX-512 x86; scalar, neon on
 * aarch64), the level going to the backend through SSMD_CPU as it would
 * in production.  SSMD_TEST_LEVELS=best runs the best level only (the
 * TSan run: threading does not depend on the level). */
static inline int ref_levels(const cpu_kernels *out[CPU_LEVEL_COUNT])
{
    const char *only = getenv("SSMD_TEST_LEVELS");
    if (only && !strcmp(only, "best")) {
        out[0] = cpu_kernels_best();
        return 1;
    }
    return cpu_kernels_list(out);
}

static inline int ref_n_levels(void)
{
    const cpu_kernels *all[CPU_LEVEL_COUNT];
    return ref_levels(all);
}

/* The backends created from now on use the level-th level; returns its
 * name for messages. */
static inline const char *ref_use_level(int level)
{
    const cpu_kernels *all[CPU_LEVEL_COUNT];
    ck_assert_int_lt(level, ref_levels(all));
    setenv("SSMD_CPU", all[level]->name, 1);
    return all[level]->name;
}

typedef struct ref_case {
    int32_t *seq; /* prompt then greedy */
    int n_prompt, n_greedy;
    float *logits; /* (n_prompt + n_greedy - 1, V) */
} ref_case;

typedef struct ref {
    int V, n_cases;
    ref_case cases[8];
} ref;

static inline void ref_ids_of(json_t *arr, int32_t *dst)
{
    for (size_t i = 0; i < json_array_size(arr); i++)
        dst[i] = (int32_t)json_integer_value(json_array_get(arr, i));
}

/* Loads path (an expected.json) into r; fails the test when malformed. */
static inline void ref_load(const char *path, ref *r)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    ck_assert_msg(root, "%s: %s", path, jerr.text);
    r->V = (int)json_integer_value(json_object_get(root, "n_vocab"));
    json_t *cases = json_object_get(root, "cases");
    r->n_cases = (int)json_array_size(cases);
    ck_assert(r->n_cases > 0 && r->n_cases <= 8);
    for (int c = 0; c < r->n_cases; c++) {
        json_t *jc = json_array_get(cases, c);
        json_t *prompt = json_object_get(jc, "prompt"), *greedy = json_object_get(jc, "greedy");
        json_t *logits = json_object_get(jc, "logits");
        ref_case *rc = &r->cases[c];
        rc->n_prompt = (int)json_array_size(prompt);
        rc->n_greedy = (int)json_array_size(greedy);
        rc->seq = malloc(sizeof(int32_t) * (rc->n_prompt + rc->n_greedy));
        ref_ids_of(prompt, rc->seq);
        ref_ids_of(greedy, rc->seq + rc->n_prompt);
        int rows = rc->n_prompt + rc->n_greedy - 1;
        ck_assert_int_eq((int)json_array_size(logits), rows);
        rc->logits = malloc(sizeof(float) * rows * r->V);
        for (int i = 0; i < rows; i++) {
            json_t *row = json_array_get(logits, i);
            ck_assert_int_eq((int)json_array_size(row), r->V);
            for (int v = 0; v < r->V; v++)
                rc->logits[i * r->V + v] = (float)json_number_value(json_array_get(row, v));
        }
    }
    json_decref(root);
}

static inline void ref_free(ref *r)
{
    for (int c = 0; c < r->n_cases; c++) {
        free(r->cases[c].seq);
        free(r->cases[c].logits);
    }
}

/* Rows agree within rel of the reference row's largest magnitude (one
 * ck_assert per call: Check records every assertion it evaluates). */
static inline void assert_rows_close(const float *got, const float *want, int rows, int V,
                                     double rel, const char *what)
{
    int bad_i = -1, bad_v = -1;
    double bad_scale = 0;
    for (int i = 0; i < rows && bad_i < 0; i++) {
        double scale = 1e-6;
        for (int v = 0; v < V; v++)
            scale = fmax(scale, fabs(want[(size_t)i * V + v]));
        for (int v = 0; v < V && bad_i < 0; v++)
            if (!(fabs((double)got[(size_t)i * V + v] - want[(size_t)i * V + v]) <= rel * scale))
                bad_i = i, bad_v = v, bad_scale = scale;
    }
    ck_assert_msg(bad_i < 0, "%s: row %d col %d: got %.7g want %.7g (scale %g)", what, bad_i, bad_v,
                  bad_i < 0 ? 0.0 : got[(size_t)bad_i * V + bad_v],
                  bad_i < 0 ? 0.0 : want[(size_t)bad_i * V + bad_v], bad_scale);
}

static inline int argmax(const float *row, int V)
{
    int best = 0;
    for (int v = 1; v < V; v++)
        if (row[v] > row[best])
            best = v;
    return best;
}

/* Slots a and b of p hold the same state within rel of b's largest value. */
static inline void assert_states_close(eng_state_pool *p, int a, int b, double rel)
{
    size_t n = eng_state_pool_slot_bytes(p) / sizeof(float);
    float *sa = malloc(n * sizeof(float)), *sb = malloc(n * sizeof(float));
    eng_state_slot_read(p, a, sa);
    eng_state_slot_read(p, b, sb);
    assert_rows_close(sa, sb, 1, (int)n, rel, "state");
    free(sa);
    free(sb);
}

/* A --dump-logits file at path holds exactly rows x V floats that agree
 * with want within rel (as assert_rows_close). */
static inline void assert_dump_close(const char *path, const float *want, int rows, int V,
                                     double rel, const char *what)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: cannot open %s", what, path);
    size_t n = (size_t)rows * V;
    float *got = malloc(sizeof(float) * (n + 1));
    size_t read = fread(got, sizeof(float), n + 1, f);
    fclose(f);
    ck_assert_msg(read == n, "%s: %s holds %zu floats, want %zu", what, path, read, n);
    assert_rows_close(got, want, rows, V, rel, what);
    free(got);
}

/* Writes ids[0..n) joined by sep into dst (cap bytes). */
static inline void ref_join_ids(const int32_t *ids, int n, const char *sep, char *dst, size_t cap)
{
    dst[0] = 0;
    for (int i = 0; i < n; i++)
        snprintf(dst + strlen(dst), cap - strlen(dst), "%s%d", i ? sep : "", (int)ids[i]);
}

static inline unsigned lcg(unsigned *s) { return *s = *s * 1664525u + 1013904223u; }

/* ---- conformance: what every model family must satisfy ------------------- */

/* A uniform float in [-1, 1) from lcg state s. */
static inline float ref_frand(unsigned *s)
{
    return (float)(lcg(s) >> 8) / 16777216.0f * 2.0f - 1.0f;
}

/* got[0..n) within tol of want's largest magnitude (raw arrays: kernel
 * views, states). */
static inline void ref_assert_close(const float *got, const float *want, size_t n, double tol,
                                    const char *what)
{
    double scale = 1e-6;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol * scale, "%s[%zu]: got %.7g want %.7g", what, i,
                      got[i], want[i]);
}

/* The model at dir (a directory or a GGUF file) on the cpu backend; fails
 * the test when it does not load. */
static inline eng_model *ref_open(const char *dir, int threads, int max_batch)
{
    eng_model_opts o;
    eng_model_opts_defaults(&o);
    o.backend_opts.threads = threads;
    o.max_batch = max_batch;
    eng_model *m = NULL;
    ssmd_err err = {0};
    int rc = eng_model_open(dir, &o, &m, &err);
    ck_assert_msg(rc == SSMD_OK, "open %s: %s", dir, err.msg);
    return m;
}

/* The fixture's expected.json (at path) against m: one prefill of prompt +
 * greedy[:-1] with all logits gives the reference rows (the --dump-logits
 * contract), and prefilling the prompt then decoding one token at a time
 * reproduces the greedy tokens and their rows; within 1e-4 of each row's
 * largest logit. */
static inline void ref_check_matches(eng_model *m, const char *path, const char *name)
{
    ref r;
    ref_load(path, &r);
    ck_assert_int_eq(eng_model_n_vocab(m), r.V);
    eng_state_pool *pool;
    ssmd_err err;
    ck_assert_int_eq(eng_state_pool_create(m, 2, &pool, &err), SSMD_OK);
    for (int c = 0; c < r.n_cases; c++) {
        ref_case *rc = &r.cases[c];
        int rows = rc->n_prompt + rc->n_greedy - 1;
        float *logits = malloc(sizeof(float) * rows * r.V);
        eng_state_slot_zero(pool, 0);
        ck_assert_int_eq(eng_model_prefill(m, pool, 0, rc->seq, rows, logits, 1, &err), SSMD_OK);
        assert_rows_close(logits, rc->logits, rows, r.V, 1e-4, name);
        eng_state_slot_zero(pool, 1);
        ck_assert_int_eq(eng_model_prefill(m, pool, 1, rc->seq, rc->n_prompt, logits, 0, &err), 0);
        for (int k = 0; k < rc->n_greedy; k++) {
            int32_t next = argmax(logits, r.V), slot = 1;
            ck_assert_msg(next == rc->seq[rc->n_prompt + k], "%s case %d token %d: %d != %d", name,
                          c, k, next, rc->seq[rc->n_prompt + k]);
            assert_rows_close(logits, rc->logits + (size_t)(rc->n_prompt - 1 + k) * r.V, 1, r.V,
                              1e-4, "decode");
            if (k + 1 < rc->n_greedy)
                ck_assert_int_eq(eng_model_decode(m, pool, &slot, &next, 1, logits, &err), 0);
        }
        free(logits);
    }
    eng_state_pool_destroy(pool);
    ref_free(&r);
}

/* A random sequence of n ids (crossing the 512-token prefill chunk when n
 * is larger): prefill at once, in two pieces split at `cut`, and token by
 * token all give the same last logits and the same final state. */
static inline void ref_check_prefill_equivalences(eng_model *m, int n, int cut)
{
    const int V = eng_model_n_vocab(m);
    int32_t *ids = malloc(sizeof(int32_t) * n);
    unsigned s = 7;
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(lcg(&s) % (unsigned)V);
    eng_state_pool *pool;
    ssmd_err err;
    ck_assert_int_eq(eng_state_pool_create(m, 3, &pool, &err), 0);
    float *once = malloc(sizeof(float) * V), *pieces = malloc(sizeof(float) * V);
    float *step = malloc(sizeof(float) * V);
    ck_assert_int_eq(eng_model_prefill(m, pool, 0, ids, n, once, 0, &err), 0);
    ck_assert_int_eq(eng_model_prefill(m, pool, 1, ids, cut, NULL, 0, &err), 0);
    ck_assert_int_eq(eng_model_prefill(m, pool, 1, ids + cut, n - cut, pieces, 0, &err), 0);
    for (int i = 0; i < n; i++) {
        int32_t slot = 2;
        ck_assert_int_eq(eng_model_decode(m, pool, &slot, &ids[i], 1, step, &err), 0);
    }
    assert_rows_close(pieces, once, 1, V, 1e-5, "two pieces");
    assert_rows_close(step, once, 1, V, 1e-4, "token by token");
    assert_states_close(pool, 1, 0, 1e-5);
    assert_states_close(pool, 2, 0, 1e-4);
    free(once), free(pieces), free(step), free(ids);
    eng_state_pool_destroy(pool);
}

/* eng_model_prefill_multi of sequences of different lengths (one above the
 * 512-row prefill chunk, so it runs alone), each continuing a state that
 * already holds a prefix = each prefilled alone: logits and states. */
static inline void ref_check_prefill_multi(eng_model *m)
{
    enum { K = 4, PREFIX = 7 };
    static const int lens[K] = {5, 1, 200, 600};
    const int V = eng_model_n_vocab(m);
    eng_state_pool *pool;
    ssmd_err err;
    ck_assert_int_eq(eng_state_pool_create(m, 2 * K, &pool, &err), 0);
    int32_t *ids[K];
    float *alone = malloc(sizeof(float) * V * K), *multi = malloc(sizeof(float) * V * K);
    eng_prefill_chunk chunks[K];
    unsigned s = 11;
    for (int k = 0; k < K; k++) {
        ids[k] = malloc(sizeof(int32_t) * (PREFIX + lens[k]));
        for (int i = 0; i < PREFIX + lens[k]; i++)
            ids[k][i] = (int32_t)(lcg(&s) % (unsigned)V);
        /* slot 2k: alone; slot 2k + 1: in the batch (listed in reverse) */
        ck_assert_int_eq(eng_model_prefill(m, pool, 2 * k, ids[k], PREFIX, NULL, 0, &err), 0);
        eng_state_slot_copy(pool, 2 * k + 1, 2 * k);
        ck_assert_int_eq(eng_model_prefill(m, pool, 2 * k, ids[k] + PREFIX, lens[k], alone + (size_t)k * V, 0,
                                           &err), 0);
        chunks[K - 1 - k] = (eng_prefill_chunk){.slot = 2 * k + 1, .ids = ids[k] + PREFIX, .n = lens[k],
                                                .logits = k == 1 ? NULL : multi + (size_t)k * V};
    }
    ck_assert_int_eq(eng_model_prefill_multi(m, pool, chunks, K, &err), 0);
    for (int k = 0; k < K; k++) {
        if (k != 1)
            assert_rows_close(multi + (size_t)k * V, alone + (size_t)k * V, 1, V, 1e-5, "batched prefill");
        assert_states_close(pool, 2 * k + 1, 2 * k, 1e-5);
    }
    /* a repeated slot or a bad id: refused, nothing changed */
    eng_state_slot_copy(pool, 0, 1);
    chunks[0].slot = chunks[1].slot;
    ck_assert_int_eq(eng_model_prefill_multi(m, pool, chunks, 2, &err), SSMD_EINVAL);
    assert_states_close(pool, 0, 1, 0.0);
    for (int k = 0; k < K; k++)
        free(ids[k]);
    free(alone), free(multi);
    eng_state_pool_destroy(pool);
}

/* B sequences of different prompt lengths decoded together for `steps`
 * steps (slots out of order, odd and descending) = each decoded alone:
 * logits and states.  m needs max_batch >= B. */
static inline void ref_check_batched_decode(eng_model *m, int B, int steps)
{
    const int V = eng_model_n_vocab(m);
    eng_state_pool *pool;
    ssmd_err err;
    ck_assert_int_eq(eng_state_pool_create(m, 2 * B, &pool, &err), 0);
    int32_t *slots = malloc(sizeof(int32_t) * B), *ids = malloc(sizeof(int32_t) * B);
    unsigned s = 3;
    for (int b = 0; b < B; b++) {
        slots[b] = (int32_t)(2 * B - 1 - 2 * b); /* odd slots, descending */
        int32_t prompt[5];
        for (int k = 0; k < 5; k++)
            prompt[k] = (int32_t)(lcg(&s) % (unsigned)V);
        /* batch copy in slots[b], solo copy in slots[b] - 1 */
        ck_assert_int_eq(eng_model_prefill(m, pool, slots[b], prompt, 1 + b % 5, NULL, 0, &err), 0);
        eng_state_slot_copy(pool, slots[b] - 1, slots[b]);
    }
    float *batch_logits = malloc(sizeof(float) * B * V), *solo = malloc(sizeof(float) * V);
    for (int t = 0; t < steps; t++) {
        for (int b = 0; b < B; b++)
            ids[b] = (int32_t)(lcg(&s) % (unsigned)V);
        ck_assert_int_eq(eng_model_decode(m, pool, slots, ids, B, batch_logits, &err), 0);
        for (int b = 0; b < B; b++) {
            int32_t solo_slot = slots[b] - 1;
            ck_assert_int_eq(eng_model_decode(m, pool, &solo_slot, &ids[b], 1, solo, &err), 0);
            assert_rows_close(batch_logits + (size_t)b * V, solo, 1, V, 1e-5, "batch vs solo");
        }
    }
    for (int b = 0; b < B; b++)
        assert_states_close(pool, slots[b], slots[b] - 1, 1e-5);
    free(batch_logits), free(solo), free(slots), free(ids);
    eng_state_pool_destroy(pool);
}

/* ---- a family's fixtures, run by a loop test's index ------------------- */

/* The fixtures of one family under root (tests/fixtures/<family>). */
typedef struct ref_family {
    const char *root;
    const char *const *names;
    int n;
} ref_family;

static inline eng_model *ref_open_fixture(const ref_family *f, const char *name, int threads,
                                          int max_batch)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s", f->root, name);
    return ref_open(dir, threads, max_batch);
}

/* Loop index i over 2 * f->n * ref_n_levels(): fixture i % n at 1 or 2
 * threads at level i / (2n) matches its expected.json (ref_check_matches)
 * and has model_type `type` (NULL: the fixture's name decides). */
static inline void ref_family_matches(const ref_family *f, int i, const char *type)
{
    const char *name = f->names[i % f->n];
    char path[256];
    snprintf(path, sizeof path, "%s/%s/expected.json", f->root, name);
    ref_use_level(i / (2 * f->n));
    eng_model *m = ref_open_fixture(f, name, 1 + i / f->n % 2, 4);
    if (type)
        ck_assert_str_eq(eng_model_cfg(m)->model_type, type);
    ref_check_matches(m, path, name);
    eng_model_close(m);
}

/* Loop index i over f->n * ref_n_levels(), 2 threads:
 * ref_check_prefill_equivalences(n, cut), or with B > 0
 * ref_check_batched_decode(B, steps) and ref_check_prefill_multi. */
static inline void ref_family_equivalences(const ref_family *f, int i, int n, int cut, int B,
                                           int steps)
{
    ref_use_level(i / f->n);
    eng_model *m = ref_open_fixture(f, f->names[i % f->n], 2, B > 0 ? 16 : 4);
    if (B > 0) {
        ref_check_batched_decode(m, B, steps);
        ref_check_prefill_multi(m);
    } else {
        ref_check_prefill_equivalences(m, n, cut);
    }
    eng_model_close(m);
}

/* ---- configs and weights that disagree (the families' error tests) ---- */

/* eng_model_config_load of a config.json holding text. */
static inline int ref_load_cfg_text(const char *text, eng_model_config *c, ssmd_err *err)
{
    char path[] = "/tmp/ssmd-cfg-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    ck_assert(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    int rc = eng_model_config_load(path, c, err);
    unlink(path);
    return rc;
}

/* Opens root/fixture's weights under another config.json (a temp
 * directory with a link to the weights): SSMD_OK and *out, or the error. */
static inline int ref_open_with_config(const char *root, const char *fixture, const char *config,
                                       eng_model **out, ssmd_err *err)
{
    char dir[] = "/tmp/ssmd-dir-XXXXXX", path[512], src[512], weights[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fputs(config, f);
    fclose(f);
    snprintf(weights, sizeof weights, "%s/%s/model.safetensors", root, fixture);
    ck_assert_ptr_nonnull(realpath(weights, src));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_int_eq(symlink(src, path), 0);
    *out = NULL;
    memset(err, 0, sizeof *err);
    int rc = eng_model_open(dir, NULL, out, err);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
    return rc;
}

#endif
