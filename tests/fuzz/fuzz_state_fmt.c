/* fuzz_state_fmt.c - libFuzzer target: the session state import parser
 * (srv_state_decode) on arbitrary bytes, with and without expected
 * fingerprint / size.  An accepted buffer must re-encode to the same bytes
 * and its state must lie inside the buffer.
 *
 * Test code only: never linked into ssmd.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/state_fmt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    srv_state_meta m;
    const unsigned char *state = NULL;
    ssmd_err err = {0};
    int rc = srv_state_decode(data, size, NULL, 0, &m, &state, &err);
    if (rc != SSMD_OK) {
        if (!err.msg[0])
            abort();
    } else {
        if (state < data || m.state_bytes > size || state + m.state_bytes > data + size)
            abort();
        if (strlen(m.fingerprint) > SRV_STATE_FP_BYTES)
            abort();
        unsigned char *again = NULL;
        size_t again_len = 0;
        /* re-encoded as the current version (a version 1 input grows by
           the history fields) */
        if (srv_state_encode(&m, state, &again, &again_len, &err) != SSMD_OK ||
            again_len != srv_state_encoded_bytes(m.state_bytes) || (again_len != size && data[8] != 1))
            abort();
        /* the header may carry bytes the encoder writes as zero; the state
           and the meta must survive */
        srv_state_meta m2;
        const unsigned char *s2 = NULL;
        if (srv_state_decode(again, again_len, m.fingerprint, m.state_bytes, &m2, &s2, &err) != SSMD_OK ||
            m2.n_tokens != m.n_tokens || m2.pending != m.pending || memcmp(s2, state, m.state_bytes) != 0 ||
            memcmp(&m2.hist, &m.hist, sizeof m.hist) != 0)
            abort();
        free(again);
    }
    /* the same bytes checked against a model that expects something else */
    srv_state_decode(data, size, "mamba1:fuzz", 64, &m, &state, &err);
    return 0;
}
