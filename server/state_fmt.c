/* state_fmt.c - encode/decode of session state exports (see state_fmt.h and
 * proto/state-format.md).  Layout of the 192-byte header, little-endian:
 *
 *   0  char[8]   magic "SSMDSTAT"
 *   8  u32       version (2; 1 is read too)
 *   12 u32       header bytes (192; 168 in version 1)
 *   16 u64       state bytes (payload)
 *   24 i64       tokens consumed by the session (incl. the pending one)
 *   32 i32       pending token (-1 none)
 *   36 u32       flags: bit 0 = the history fields below are known (v1: 0)
 *   40 char[128] model fingerprint, NUL-padded
 *   168 u64      history hash (eng_session_hash of the n_tokens tokens)  } version 2
 *   176 i64      tokens at the end of the last completion's prompt        } only
 *   184 u64      history hash at that point                               }
 *   192          payload, then u32 CRC-32 of bytes [0, 192 + state bytes)
 */
#include "server/state_fmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint32_t srv_crc32(uint32_t crc, const void *data, size_t n)
{
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

size_t srv_state_encoded_bytes(size_t state_bytes)
{
    return SRV_STATE_HEADER_BYTES + state_bytes + SRV_STATE_TRAILER_BYTES;
}

int srv_state_encode(const srv_state_meta *m, const void *state, unsigned char **out, size_t *out_len,
                     ssmd_err *err)
{
    size_t total = srv_state_encoded_bytes((size_t)m->state_bytes);
    unsigned char *b = calloc(1, total);
    *out = NULL;
    *out_len = 0;
    if (!b)
        return ssmd_err_set(err, SSMD_ENOMEM, "cannot allocate %zu bytes for a state export", total);
    memcpy(b, SRV_STATE_MAGIC, 8);
    put_u32(b + 8, SRV_STATE_VERSION);
    put_u32(b + 12, SRV_STATE_HEADER_BYTES);
    put_u64(b + 16, m->state_bytes);
    put_u64(b + 24, (uint64_t)m->n_tokens);
    put_u32(b + 32, (uint32_t)m->pending);
    put_u32(b + 36, m->hist.known ? 1u : 0u);
    memcpy(b + 40, m->fingerprint, strnlen(m->fingerprint, SRV_STATE_FP_BYTES));
    if (m->hist.known) {
        put_u64(b + 168, m->hist.hash);
        put_u64(b + 176, (uint64_t)m->hist.mark_tokens);
        put_u64(b + 184, m->hist.mark_hash);
    }
    if (m->state_bytes)
        memcpy(b + SRV_STATE_HEADER_BYTES, state, (size_t)m->state_bytes);
    size_t body = SRV_STATE_HEADER_BYTES + (size_t)m->state_bytes;
    put_u32(b + body, srv_crc32(0, b, body));
    *out = b;
    *out_len = total;
    return SSMD_OK;
}

int srv_state_decode(const unsigned char *buf, size_t len, const char *expect_fp, size_t expect_bytes,
                     srv_state_meta *m, const unsigned char **state, ssmd_err *err)
{
    memset(m, 0, sizeof *m);
    *state = NULL;
    if (len < SRV_STATE_V1_HEADER_BYTES + SRV_STATE_TRAILER_BYTES || memcmp(buf, SRV_STATE_MAGIC, 8) != 0)
        return ssmd_err_set(err, SSMD_EFORMAT, "not an ssmd state export (bad magic or too short)");
    uint32_t version = get_u32(buf + 8), hdr = get_u32(buf + 12);
    if (!(version == 1 && hdr == SRV_STATE_V1_HEADER_BYTES) && !(version == 2 && hdr == SRV_STATE_HEADER_BYTES))
        return ssmd_err_set(err, SSMD_EFORMAT, "unsupported state export version %u (header %u bytes)",
                            version, hdr);
    if (len < hdr + SRV_STATE_TRAILER_BYTES)
        return ssmd_err_set(err, SSMD_EFORMAT, "not an ssmd state export (too short)");
    m->state_bytes = get_u64(buf + 16);
    m->n_tokens = (int64_t)get_u64(buf + 24);
    m->pending = (int32_t)get_u32(buf + 32);
    uint32_t flags = get_u32(buf + 36);
    memcpy(m->fingerprint, buf + 40, SRV_STATE_FP_BYTES);
    m->fingerprint[SRV_STATE_FP_BYTES] = '\0';
    if (m->state_bytes != len - hdr - SRV_STATE_TRAILER_BYTES)
        return ssmd_err_set(err, SSMD_EFORMAT, "state export says %llu state bytes but holds %zu",
                            (unsigned long long)m->state_bytes, len - hdr - SRV_STATE_TRAILER_BYTES);
    size_t body = len - SRV_STATE_TRAILER_BYTES;
    uint32_t want = get_u32(buf + body), got = srv_crc32(0, buf, body);
    if (want != got)
        return ssmd_err_set(err, SSMD_EFORMAT, "state export checksum mismatch (corrupted)");
    if (version == 1 ? flags != 0 : flags > 1)
        return ssmd_err_set(err, SSMD_EFORMAT, "state export header holds unknown flags %#x", flags);
    if (flags & 1) {
        m->hist.known = 1;
        m->hist.hash = get_u64(buf + 168);
        m->hist.mark_tokens = (int64_t)get_u64(buf + 176);
        m->hist.mark_hash = get_u64(buf + 184);
    }
    if (m->n_tokens < 0 || m->pending < -1 || m->hist.mark_tokens < 0 || m->hist.mark_tokens > m->n_tokens)
        return ssmd_err_set(err, SSMD_EFORMAT, "state export header holds invalid token fields");
    if (expect_fp && strncmp(expect_fp, m->fingerprint, SRV_STATE_FP_BYTES) != 0)
        return ssmd_err_set(err, SSMD_ECONFLICT, "state was exported from another model (fingerprint %.16s..., this model %.16s...)",
                            m->fingerprint, expect_fp);
    if (expect_bytes && m->state_bytes != expect_bytes)
        return ssmd_err_set(err, SSMD_ECONFLICT, "state holds %llu bytes, this model's state is %zu",
                            (unsigned long long)m->state_bytes, expect_bytes);
    *state = buf + hdr;
    return SSMD_OK;
}

int srv_state_pack(const char *fingerprint, const eng_session_info *info, const void *state,
                   size_t state_bytes, unsigned char **out, size_t *out_len, ssmd_err *err)
{
    srv_state_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.fingerprint, sizeof m.fingerprint, "%s", fingerprint);
    m.n_tokens = info->n_tokens;
    m.pending = info->pending;
    m.hist = info->hist;
    m.state_bytes = state_bytes;
    return srv_state_encode(&m, state, out, out_len, err);
}
