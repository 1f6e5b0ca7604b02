/* state_fmt.h - the session state export format of proto/state-format.md:
 * a fixed little-endian header (magic, version, sizes, the session's token
 * count and pending token, the model fingerprint, since version 2 the
 * identity of its token history), the raw slot bytes, and a CRC-32 over
 * everything before it.  Version 1 exports are still read.
 *
 * Pure functions over memory; any thread.  Never trusts the input: every
 * size is checked before it is used.
 */
#ifndef SSMD_SRV_STATE_FMT_H
#define SSMD_SRV_STATE_FMT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/error.h"
#include "engine/request.h"

#define SRV_STATE_MAGIC "SSMDSTAT"
#define SRV_STATE_VERSION 2u
#define SRV_STATE_HEADER_BYTES 192u    /* version 2, written */
#define SRV_STATE_V1_HEADER_BYTES 168u /* version 1, read */
#define SRV_STATE_FP_BYTES 128u
#define SRV_STATE_TRAILER_BYTES 4u

typedef struct srv_state_meta {
    char fingerprint[SRV_STATE_FP_BYTES + 1];
    int64_t n_tokens;
    int32_t pending;      /* -1 none */
    uint64_t state_bytes;
    eng_session_history hist; /* known = 0: none (a version 1 export, or not known) */
} srv_state_meta;

/* Total bytes of an export holding state_bytes of state (as written: the
 * largest a reader accepts). */
size_t srv_state_encoded_bytes(size_t state_bytes);

/* Writes header + state + CRC into a malloc'ed buffer (*out, *out_len).
 * Returns SSMD_OK or SSMD_ENOMEM. */
int srv_state_encode(const srv_state_meta *m, const void *state, unsigned char **out, size_t *out_len,
                     ssmd_err *err);

/* srv_state_encode for a session (its tokens, pending token and history):
 * the common case of routes, the session store and the drain handoff. */
int srv_state_pack(const char *fingerprint, const eng_session_info *info, const void *state,
                   size_t state_bytes, unsigned char **out, size_t *out_len, ssmd_err *err);

/* Checks buf and points *state into it (no copy).  Returns SSMD_OK;
 * SSMD_EFORMAT for a bad magic, version, size or checksum; SSMD_ECONFLICT
 * when the fingerprint or state size differ from the expected ones
 * (expect_fp / expect_bytes; NULL / 0 skip the check). */
int srv_state_decode(const unsigned char *buf, size_t len, const char *expect_fp, size_t expect_bytes,
                     srv_state_meta *m, const unsigned char **state, ssmd_err *err);

/* CRC-32 (IEEE 802.3, the zlib one) of n bytes, continuing from crc (0 to
 * start). */
uint32_t srv_crc32(uint32_t crc, const void *data, size_t n);

#endif
