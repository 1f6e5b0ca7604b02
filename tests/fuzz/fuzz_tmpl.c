/* fuzz_tmpl.c - libFuzzer target: the chat template interpreter
 * (server/tmpl.h).  The input is template source, optionally followed by a
 * NUL byte and a JSON array of message objects (else a fixed four-message
 * conversation); what compiles is rendered with and without the generation
 * prompt under a 64 KiB output cap.
 *
 * Test code only: never linked into ssmd.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/tmpl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char default_msgs[] =
    "[{\"role\":\"system\",\"content\":\"  Be brief. \"},{\"role\":\"user\",\"content\":\"Hi\"},"
    "{\"role\":\"assistant\",\"content\":\"Hello\"},{\"role\":\"user\",\"content\":[1,{\"a\":null}]}]";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *src = (const char *)data;
    const unsigned char *nul = memchr(data, 0, size);
    size_t src_len = nul ? (size_t)(nul - data) : size;
    json_t *msgs;
    if (nul) {
        json_error_t je;
        msgs = json_loadb((const char *)nul + 1, size - src_len - 1, 0, &je);
        size_t i;
        json_t *m;
        int ok = json_is_array(msgs);
        json_array_foreach(ok ? msgs : NULL, i, m) {
            ok &= json_is_object(m);
        }
        if (!ok) { /* the contract: an array of objects (their values may be anything) */
            json_decref(msgs);
            msgs = json_loads(default_msgs, 0, &je);
        }
    } else {
        json_error_t je;
        msgs = json_loads(default_msgs, 0, &je);
    }
    char why[256];
    srv_tmpl *t = srv_tmpl_compile(src, src_len, why, sizeof why);
    if (!t) {
        json_decref(msgs);
        return 0;
    }
    for (int agp = 0; agp < 2; agp++) {
        srv_tmpl_vars v = {msgs, agp, "<s>", "</s>", agp ? NULL : "<unk>", NULL, 64 * 1024};
        size_t n = 0;
        ssmd_err err = {0};
        char *out = srv_tmpl_render(t, &v, &n, &err);
        if (out) {
            if (n > v.max_output || strlen(out) > n)
                abort();
            free(out);
        } else if (!err.msg[0]) {
            abort();
        }
    }
    srv_tmpl_free(t);
    json_decref(msgs);
    return 0;
}
