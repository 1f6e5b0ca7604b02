/* fuzz_json_schema.c - libFuzzer target: schema bytes, NUL, output bytes.
 * The schema is compiled (json_schema.c) and the output fed to its
 * automaton and to the any-object automaton (json_prefix.c); an output
 * either automaton calls complete must parse with jansson as an object,
 * else the target aborts.  Every refused schema must say why.
 *
 * Test code only: never linked into ssmd.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/text/json_prefix.h"
#include "engine/text/json_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* jansson refuses a few texts RFC 8259 allows: lone surrogate escapes,
 * integers beyond 64 bits, reals beyond double.  Those are not the
 * automata's fault. */
static int jansson_may_refuse(const char *text, size_t n)
{
    if (memmem(text, n, "\\u", 2))
        return 1;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        run = text[i] >= '0' && text[i] <= '9' ? run + 1 : 0;
        if (run >= 18)
            return 1;
        /* an exponent of three digits or more may overflow a double */
        if (i > 0 && (text[i] == 'e' || text[i] == 'E') && text[i - 1] >= '0' && text[i - 1] <= '9') {
            size_t k = i + 1 + (i + 1 < n && (text[i + 1] == '+' || text[i + 1] == '-'));
            size_t d = 0;
            while (k + d < n && text[k + d] >= '0' && text[k + d] <= '9')
                d++;
            if (d >= 3)
                return 1;
        }
    }
    return 0;
}

static void must_parse_as_object(const char *text, size_t n)
{
    json_t *j = json_loadb(text, n, JSON_ALLOW_NUL, NULL);
    if (!(j && json_is_object(j)) && !jansson_may_refuse(text, n))
        abort();
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul)
        return 0;
    const char *out = (const char *)nul + 1;
    const size_t n_out = size - (size_t)(nul + 1 - data);

    eng_json_prefix any;
    eng_json_prefix_init(&any);
    if (eng_json_prefix_feed(&any, out, n_out) && eng_json_prefix_complete(&any))
        must_parse_as_object(out, n_out);

    json_t *schema = json_loadb((const char *)data, (size_t)(nul - data), 0, NULL);
    if (!schema)
        return 0;
    eng_json_schema *s = NULL;
    ssmd_err err = {0};
    if (eng_json_schema_compile(schema, &s, &err) != SSMD_OK) {
        if (!err.msg[0] || s)
            abort();
    } else {
        eng_schema_state st;
        eng_schema_state_init(&st, s);
        if (eng_schema_state_feed(&st, out, n_out) && eng_schema_state_complete(&st))
            must_parse_as_object(out, n_out);
        eng_json_schema_free(s);
    }
    json_decref(schema);
    return 0;
}
