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

typedef struct gen {
    char buf[4096];
    size_t n;
    uint64_t rng;
} gen;

static unsigned rnd(gen *g, unsigned n)
{
    g->rng = g->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(g->rng >> 33) % n;
}

static void put(gen *g, const char *s)
{
    size_t k = strlen(s);
    if (g->n + k < sizeof g->buf)
        memcpy(g->buf + g->n, s, k), g->n += k;
}

static void gen_ws(gen *g)
{
    static const char *ws[] = {"", "", "", " ", "\n", "  ", "\t", "\r\n"};
    put(g, ws[rnd(g, 8)]);
}

static void gen_value(gen *g, int depth);

static void gen_string(gen *g)
{
    static const char *parts[] = {"a", "key", " ", "\\n", "\\\"", "\\\\", "\\u00e9", "\\u4e2d",
                                  "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x99\x82", "/", "\\/"};
    put(g, "\"");
    for (unsigned k = rnd(g, 4); k > 0; k--)
        put(g, parts[rnd(g, sizeof parts / sizeof *parts)]);
    put(g, "\"");
}

static void gen_value(gen *g, int depth)
{
    static const char *atoms[] = {"0", "-1", "12", "3.25", "-0.5", "1e3", "2E-2", "6.5e+1",
                                  "true", "false", "null"};
    unsigned kind = depth > 6 ? 2 + rnd(g, 2) : rnd(g, 4);
    gen_ws(g);
    if (kind == 0 || kind == 1) {
        put(g, kind ? "[" : "{");
        unsigned n = rnd(g, 4);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                put(g, ",");
            if (!kind) {
                gen_ws(g);
                gen_string(g);
                gen_ws(g);
                put(g, ":");
            }
            gen_value(g, depth + 1);
        }
        gen_ws(g);
        put(g, kind ? "]" : "}");
    } else if (kind == 2) {
        gen_string(g);
    } else {
        put(g, atoms[rnd(g, sizeof atoms / sizeof *atoms)]);
    }
    gen_ws(g);
}

/* One generated object, then maybe a byte mutation from JSON's own
 * alphabet (no 'd': no \u escape may turn into a lone surrogate, which
 * jansson refuses and RFC 8259 allows). */
static void gen_text(gen *g)
{
    g->n = 0;
    gen_ws(g);
    put(g, "{");
    for (unsigned i = 0, n = rnd(g, 4); i < n; i++) {
        if (i)
            put(g, ",");
        gen_ws(g);
        gen_string(g);
        put(g, ":");
        gen_value(g, 1);
    }
    put(g, "}");
    static const char alphabet[] = "{}[]:,\"\\ 0123456789.eE+-truefalsnl\n\x01\xff\xc3\xa9";
    for (unsigned m = rnd(g, 3); m > 0 && g->n > 0; m--) {
        size_t at = rnd(g, (unsigned)g->n);
        char c = alphabet[rnd(g, sizeof alphabet - 1)];
        switch (rnd(g, 3)) {
        case 0: g->buf[at] = c; break;
        case 1: memmove(g->buf + at, g->buf + at + 1, g->n - at - 1), g->n--; break;
        default:
            if (g->n + 1 < sizeof g->buf) {
                memmove(g->buf + at + 1, g->buf + at, g->n - at);
                g->buf[at] = c;
                g->n++;
            }
        }
    }
    /* jansson allows trailing whitespace, the automaton (which stops at the
     * closing brace) does not: compare without it */
    while (g->n > 0 && strchr(" \t\r\n", g->buf[g->n - 1]))
        g->n--;
}

START_TEST(test_agrees_with_jansson)
{
    gen g = {.rng = 12345};
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

/* Generates with random logits through the mask until the object closes;
 * later steps favour tokens that close something, so that every run ends. */
static void run_masked(const eng_tokenizer *tok, uint64_t seed, char *out, size_t cap, size_t *n_out)
{
    const int V = eng_tokenizer_vocab_size(tok);
    float *logits = malloc((size_t)V * sizeof *logits);
    uint8_t *ok = malloc((size_t)V);
    eng_json_prefix p;
    eng_json_prefix_init(&p);
    gen g = {.rng = seed};
    size_t n = 0;
    for (int step = 0; step < 4000 && !eng_json_prefix_complete(&p); step++) {
        for (int id = 0; id < V; id++) {
            logits[id] = (float)rnd(&g, 1000) / 100.0f;
            size_t len;
            const char *b = eng_tokenizer_token_bytes(tok, id, &len);
            if (step > 40 && b && (memchr(b, '}', len) || memchr(b, ']', len) || memchr(b, '"', len)))
                logits[id] += 20.0f;
        }
        int allowed = eng_json_mask(&p, tok, logits, V, ok);
        ck_assert_int_gt(allowed, 0);
        int best = -1;
        for (int id = 0; id < V; id++)
            if (!isinf(logits[id]) && (best < 0 || logits[id] > logits[best]))
                best = id;
        ck_assert(eng_json_take(&p, tok, best));
        size_t len;
        const char *b = eng_tokenizer_token_bytes(tok, best, &len);
        ck_assert(n + len < cap);
        memcpy(out + n, b, len);
        n += len;
    }
    ck_assert_msg(eng_json_prefix_complete(&p), "no object after 4000 steps: %.*s", (int)n, out);
    *n_out = n;
    free(logits);
    free(ok);
}

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
            run_masked(tok, seed, out, sizeof out, &n);
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
