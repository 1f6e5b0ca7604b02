/* test_json_prefix.c - the JSON-object prefix automaton (json_prefix.c) and
 * the token mask built on it (json_mask.c).
 *
 * The automaton is checked against jansson as the independent reference:
 * on thousands of generated and mutated texts, "every byte fed and
 * complete" must equal "jansson parses it as an object", and every prefix
 * of an accepted text must be accepted.  The mask is checked by letting
 * random logits drive generation through it on two real tokenizers (byte
 * level, and byte fallback): every finished output must parse.
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/text/json_mask.h"
#include "engine/text/json_prefix.h"
#include "engine/text/tokenizer.h"
#include "tests/engine/json_gen.h"

static int feed_all(const char *s, size_t n, int *complete)
{
    eng_json_prefix p;
    eng_json_prefix_init(&p);
    int ok = eng_json_prefix_feed(&p, s, n);
    *complete = ok && eng_json_prefix_complete(&p);
    return ok;
}

START_TEST(test_known_texts)
{
    static const char *complete[] = {
        "{}", "{ }", "{\"a\":1}", "{\"a\": [1, 2.5, -0.5e+3, 0, 1E2, true, false, null]}",
        "{\"k\":{\"n\":{\"m\":[]}}}", "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\"}",
        "{\"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x99\x82\":\"x\"}", "\n{\"a\":[{},[]]}", "{\"a\":-0}",
    };
    static const char *prefixes[] = {"", " ", "{", "{\"a", "{\"a\":", "{\"a\":1", "{\"a\":1.",
                                     "{\"a\":tr", "{\"a\":\"\\u00", "{\"a\":\"\xe4\xb8", "{\"a\":[",
                                     "{\"a\":-", "{\"a\":1e", "{\"a\":1e-"};
    static const char *bad[] = {
        "[]", "\"x\"", "1", "{,", "{\"a\" 1}", "{\"a\":}", "{\"a\":01}", "{\"a\":1.}",
        "{\"a\":.5}", "{\"a\":+1}", "{\"a\":tru}", "{\"a\":nul1}", "{a:1}", "{\"a\":1,}",
        "{\"a\":[1,]}", "{\"a\":[1}", "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u00g0\"}",
        "{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf4\x90\x80\x80\"}",
        "{\"a\":\"\xff\"}", "{\"a\":\"\xe0\x80\xaf\"}", "{\"a\":\"\xf0\x80\x80\xaf\"}", "{} ", "{}{}", "{\"a\":1e+}", "{\"a\":1.5.5}", "{\"a\":--1}",
    };
    int done;
    for (size_t i = 0; i < sizeof complete / sizeof *complete; i++) {
        ck_assert_msg(feed_all(complete[i], strlen(complete[i]), &done) && done, "%s", complete[i]);
        for (size_t k = 0; k < strlen(complete[i]); k++)
            ck_assert_msg(feed_all(complete[i], k, &done) && !done, "prefix %zu of %s", k, complete[i]);
    }
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        ck_assert_msg(feed_all(prefixes[i], strlen(prefixes[i]), &done) && !done, "%s", prefixes[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(!(feed_all(bad[i], strlen(bad[i]), &done) && done), "accepted %s", bad[i]);
}
END_TEST

/* Nesting and whitespace bounds. */
START_TEST(test_limits)
{
    char deep[4 * ENG_JSON_DEPTH_MAX + 16];
    size_t n = 0;
    n += (size_t)sprintf(deep + n, "{\"a\":");
    for (int d = 1; d < ENG_JSON_DEPTH_MAX; d++)
        deep[n++] = '[';
    int done;
    ck_assert(feed_all(deep, n, &done));
    deep[n++] = '[';
    ck_assert(!feed_all(deep, n, &done));
    char ws[64] = "{";
    memset(ws + 1, ' ', ENG_JSON_WS_MAX);
    ck_assert(feed_all(ws, 1 + ENG_JSON_WS_MAX, &done));
    ws[1 + ENG_JSON_WS_MAX] = '\n';
    ck_assert(!feed_all(ws, 2 + ENG_JSON_WS_MAX, &done));
}
END_TEST

/* ---- generated texts against jansson -------------------------------------- */

static void gen_ws(json_gen *g)
{
    static const char *ws[] = {"", "", "", " ", "\n", "  ", "\t", "\r\n"};
    jg_put(g, ws[jg_rnd(g, 8)]);
}

static void gen_value(json_gen *g, int depth);

static void gen_string(json_gen *g)
{
    static const char *parts[] = {"a", "key", " ", "\\n", "\\\"", "\\\\", "\\u00e9", "\\u4e2d",
                                  "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x99\x82", "/", "\\/"};
    jg_put(g, "\"");
    for (unsigned k = jg_rnd(g, 4); k > 0; k--)
        jg_put(g, parts[jg_rnd(g, sizeof parts / sizeof *parts)]);
    jg_put(g, "\"");
}

static void gen_value(json_gen *g, int depth)
{
    static const char *atoms[] = {"0", "-1", "12", "3.25", "-0.5", "1e3", "2E-2", "6.5e+1",
                                  "true", "false", "null"};
    unsigned kind = depth > 6 ? 2 + jg_rnd(g, 2) : jg_rnd(g, 4);
    gen_ws(g);
    if (kind == 0 || kind == 1) {
        jg_put(g, kind ? "[" : "{");
        unsigned n = jg_rnd(g, 4);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                jg_put(g, ",");
            if (!kind) {
                gen_ws(g);
                gen_string(g);
                gen_ws(g);
                jg_put(g, ":");
            }
            gen_value(g, depth + 1);
        }
        gen_ws(g);
        jg_put(g, kind ? "]" : "}");
    } else if (kind == 2) {
        gen_string(g);
    } else {
        jg_put(g, atoms[jg_rnd(g, sizeof atoms / sizeof *atoms)]);
    }
    gen_ws(g);
}

/* One generated object, then maybe a byte mutation from JSON's own
 * alphabet (no 'd': no \u escape may turn into a lone surrogate, which
 * jansson refuses and RFC 8259 allows). */
static void gen_text(json_gen *g)
{
    g->n = 0;
    gen_ws(g);
    jg_put(g, "{");
    for (unsigned i = 0, n = jg_rnd(g, 4); i < n; i++) {
        if (i)
            jg_put(g, ",");
        gen_ws(g);
        gen_string(g);
        jg_put(g, ":");
        gen_value(g, 1);
    }
    jg_put(g, "}");
    static const char alphabet[] = "{}[]:,\"\\ 0123456789.eE+-truefalsnl\n\x01\xff\xc3\xa9";
    jg_mutate(g, alphabet, sizeof alphabet - 1, 2);
}

START_TEST(test_agrees_with_jansson)
{
    json_gen g = {.rng = 12345};
    int n_valid = 0, n_invalid = 0;
    for (int i = 0; i < 20000; i++) {
        gen_text(&g);
        json_error_t jerr;
        json_t *j = json_loadb(g.buf, g.n, JSON_ALLOW_NUL, &jerr);
        int ref = j && json_is_object(j);
        json_decref(j);
        int done;
        int ours = feed_all(g.buf, g.n, &done) && done;
        ck_assert_msg(ours == ref, "ours %d, jansson %d (%s) on [%.*s]", ours, ref, jerr.text, (int)g.n,
                      g.buf);
        if (ref)
            for (size_t k = 0; k < g.n; k++)
                ck_assert_msg(feed_all(g.buf, k, &done) && !done, "prefix %zu of [%.*s]", k, (int)g.n,
                              g.buf);
        n_valid += ref;
        n_invalid += !ref;
    }
    /* the generator must exercise both sides */
    ck_assert_int_gt(n_valid, 2000);
    ck_assert_int_gt(n_invalid, 2000);
}
END_TEST

/* ---- the mask on real tokenizers --------------------------------------- */

START_TEST(test_mask_outputs_parse)
{
    static const char *paths[] = {"tests/fixtures/tokenizer/tokenizer.json",
                                  "tests/fixtures/tokenizer_mistral/tokenizer.json"};
    for (size_t f = 0; f < 2; f++) {
        eng_tokenizer *tok = NULL;
        ssmd_err err = {0};
        ck_assert_msg(eng_tokenizer_load(paths[f], &tok, &err) == SSMD_OK, "%s", err.msg);
        for (uint64_t seed = 1; seed <= 4; seed++) {
            static char out[1 << 16];
            size_t n = 0;
            eng_json_rule r;
            eng_json_rule_init(&r, NULL);
            jg_run_masked(&r, tok, seed, 4000, out, sizeof out, &n);
            json_error_t jerr;
            json_t *j = json_loadb(out, n, JSON_ALLOW_NUL, &jerr);
            ck_assert_msg(j && json_is_object(j), "%s seed %d: [%.*s]: %s", paths[f], (int)seed, (int)n,
                          out, jerr.text);
            json_decref(j);
        }
        eng_tokenizer_free(tok);
    }
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("json_prefix");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_known_texts);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_agrees_with_jansson);
    tcase_add_test(tc, test_mask_outputs_parse);
    suite_add_tcase(s, tc);
    return s;
}
