/* test_family_serve.c - the model families beyond Mamba-1 (S4D / S4 / DSS,
 * S5, Mamba-2, Falcon-Mamba) through the real binary: `ssmd generate` (greedy
 * ids and --dump-logits rows against each family's reference fixtures) and
 * `ssmd serve` (greedy completions, a prompt split across a session, and
 * state export/import into another session), the same contract as for
 * Mamba-1 (test_serve.c, test_generate_cli.c). */
#include <check.h>
#include <math.h>

#include "tests/integration/itest.h"
#include "tests/models/reference.h"

/* under tests/fixtures/ */
static const char *const fixtures[] = {"s4/s4d_minimal",   "s4/s4d_block",     "s4/s4_legs",
                                       "s4/s4_rank2",      "s4/dss_exp",       "s4/dss_softmax",
                                       "mamba2/hf_tiny",   "mamba2/hf_groups", "mamba2/orig_gate",
                                       "mamba/falcon_tiny", "s5/s5_zoh_gelu",
                                       "s5/s5_bilinear_half_glu2"};
enum { N_FIXTURES = sizeof fixtures / sizeof fixtures[0] };

/* ---- generate --------------------------------------------------------- */

static int run_cmd(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0)
        n += got;
    buf[n] = 0;
    int st = pclose(p);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

START_TEST(test_generate_cli)
{
    const char *name = fixtures[_i];
    char path[256], ids[1024], want[256], cmd[4096], dump[] = "/tmp/ssmd-family-dump-XXXXXX";
    snprintf(path, sizeof path, "tests/fixtures/%s/expected.json", name);
    ref r;
    ref_load(path, &r);
    ck_assert(r.n_cases > 2);
    const ref_case *rc = &r.cases[2];
    ref_join_ids(rc->seq, rc->n_prompt, ",", ids, sizeof ids);
    ref_join_ids(rc->seq + rc->n_prompt, rc->n_greedy, " ", want, sizeof want);
    int fd = mkstemp(dump);
    ck_assert(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof cmd,
             "%s/ssmd-san generate --model tests/fixtures/%s --prompt-ids %s --max-tokens %d "
             "--temperature 0 --print-ids --ignore-eos --threads 2 --dump-logits %s",
             it_build_dir(), name, ids, rc->n_greedy, dump);
    char *out;
    ck_assert_int_eq(run_cmd(cmd, &out), 0);
    out[strcspn(out, "\n")] = 0;
    ck_assert_str_eq(out, want);
    assert_dump_close(dump, rc->logits, rc->n_prompt + rc->n_greedy - 1, r.V, 1e-4, name);
    free(out);
    unlink(dump);
    ref_free(&r);
}
END_TEST

/* ---- serve ------------------------------------------------------------ */

static it_server srv;
static char text_dir[256];
static const char *serve_fixture; /* the served model's directory */

static void setup_serve_at(const char *dir)
{
    serve_fixture = dir;
    curl_global_init(CURL_GLOBAL_ALL);
    if (it_text_model_dir(dir, text_dir, sizeof text_dir) != 0) {
        fprintf(stderr, "cannot make a temp model dir\n");
        exit(1);
    }
    const char *extra[] = {"--max-batch", "4", "--max-sessions", "6", NULL};
    it_start_or_exit(&srv, text_dir, extra);
}

static void setup_serve_s4(void) { setup_serve_at("tests/fixtures/s4/s4d_minimal"); }
static void setup_serve_dss(void) { setup_serve_at("tests/fixtures/s4/dss_softmax"); }
static void setup_serve_mamba2(void) { setup_serve_at("tests/fixtures/mamba2/hf_groups"); }
static void setup_serve_s5(void) { setup_serve_at("tests/fixtures/s5/s5_bilinear_half_glu2"); }

static void teardown_serve(void)
{
    it_stop_or_exit(&srv);
    it_rm_model_dir(text_dir);
    curl_global_cleanup();
}

/* Greedy completion of ids (through session when not NULL): the tokens. */
static int complete(json_t *ids, int max_tokens, const char *session, int32_t *out, int cap)
{
    json_t *b = json_pack("{s:O, s:i, s:f, s:b}", "prompt", ids, "max_tokens", max_tokens,
                          "temperature", 0.0, "ignore_eos", 1);
    if (session)
        json_object_set_new(b, "session", json_string(session));
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    long status;
    json_t *j = it_post_json(&srv, "/v1/completions", body, &status);
    free(body);
    ck_assert_msg(status == 200, "completion: status %ld", status);
    json_t *toks = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "tokens");
    int k = 0;
    for (size_t i = 0; i < json_array_size(toks) && k < cap; i++)
        out[k++] = (int32_t)json_integer_value(json_array_get(toks, i));
    json_decref(j);
    return k;
}

static json_t *slice(json_t *arr, size_t from, size_t to)
{
    json_t *s = json_array();
    for (size_t i = from; i < to; i++)
        json_array_append(s, json_array_get(arr, i));
    return s;
}

START_TEST(test_serve_sessions)
{
    json_error_t jerr;
    char epath[256];
    snprintf(epath, sizeof epath, "%s/expected.json", serve_fixture);
    json_t *root = json_load_file(epath, 0, &jerr);
    ck_assert_msg(root, "%s", jerr.text);
    json_t *jc = json_array_get(json_object_get(root, "cases"), 2);
    json_t *prompt = json_object_get(jc, "prompt"), *greedy = json_object_get(jc, "greedy");
    size_t P = json_array_size(prompt), G = json_array_size(greedy);
    int32_t got[32];
    /* plain greedy */
    int k = complete(prompt, (int)G, NULL, got, 32);
    ck_assert_int_eq(k, (int)G);
    for (int i = 0; i < k; i++)
        ck_assert_int_eq(got[i], json_integer_value(json_array_get(greedy, (size_t)i)));
    /* the prompt split across a session: state carried between prefills */
    char *s = it_new_session(&srv);
    json_t *a = slice(prompt, 0, 10), *b = slice(prompt, 10, P);
    ck_assert_int_eq(complete(a, 0, s, got, 32), 0);
    k = complete(b, (int)G, s, got, 32);
    ck_assert_int_eq(k, (int)G);
    for (int i = 0; i < k; i++)
        ck_assert_int_eq(got[i], json_integer_value(json_array_get(greedy, (size_t)i)));
    /* export after the first part, import into a fresh session, continue */
    char *t = it_new_session(&srv), path[128], tpath[128];
    ck_assert_int_eq(complete(a, 0, t, got, 32), 0);
    snprintf(path, sizeof path, "/v1/sessions/%s/state", t);
    it_resp blob = it_http(&srv, "GET", path, NULL);
    ck_assert_int_eq(blob.status, 200);
    char *u = it_new_session(&srv);
    snprintf(tpath, sizeof tpath, "/v1/sessions/%s/state", u);
    it_resp r = it_http_key(&srv, "PUT", tpath, blob.body, (long)blob.len, NULL);
    ck_assert_msg(r.status == 200, "import: %ld %s", r.status, r.body);
    it_resp_free(&r);
    it_resp_free(&blob);
    k = complete(b, (int)G, u, got, 32);
    ck_assert_int_eq(k, (int)G);
    for (int i = 0; i < k; i++)
        ck_assert_int_eq(got[i], json_integer_value(json_array_get(greedy, (size_t)i)));
    json_decref(a), json_decref(b), json_decref(root);
    free(s), free(t), free(u);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("family_serve");
    TCase *gen = tcase_create("generate");
    tcase_set_timeout(gen, 120);
    tcase_add_loop_test(gen, test_generate_cli, 0, N_FIXTURES);
    suite_add_tcase(s, gen);
    void (*setups[])(void) = {setup_serve_s4, setup_serve_dss, setup_serve_mamba2, setup_serve_s5};
    const char *names[] = {"serve s4d", "serve dss", "serve mamba2", "serve s5"};
    for (int i = 0; i < 4; i++) {
        TCase *tc = tcase_create(names[i]);
        tcase_set_timeout(tc, 120);
        tcase_add_unchecked_fixture(tc, setups[i], teardown_serve);
        tcase_add_test(tc, test_serve_sessions);
        suite_add_tcase(s, tc);
    }
    return s;
}
