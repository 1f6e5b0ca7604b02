/* test_safetensors.c - engine/weights/safetensors.c: reading real and hand-built
 * files (single and sharded), every dtype, the scalar conversions against
 * independent references, and each kind of malformed input, where both the
 * return code and the message (file, tensor, problem) are checked.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/tensor.h"
#include "tests/engine/st_writer.h"

/* Scratch root of this test case, made and removed by the unchecked fixture
 * (in the parent process); each test works in its own subdirectory. */
static char g_root[64];

static void root_setup(void) { stw_mkdtemp(g_root, sizeof g_root, "st"); }
static void root_teardown(void) { stw_rmtree(g_root); }

/* A fresh empty model directory for one test. */
static void test_dir(char *buf, size_t n, const char *name)
{
    stw_subdir(buf, n, g_root, name);
}

#define ck_assert_msg_has(err, s)                                                       \
    ck_assert_msg(strstr((err).msg, (s)) != NULL, "message \"%s\" lacks \"%s\"", (err).msg, (s))

/* Opens dir expecting failure `code`; returns the error for message checks. */
static ssmd_err open_fails(const char *dir, int code)
{
    ssmd_err err = {0, ""};
    eng_weights *w = (eng_weights *)1;
    int rc = eng_weights_open(dir, &w, &err);
    ck_assert_msg(rc == code, "rc %d (%s), expected %d", rc, err.msg, code);
    ck_assert_int_eq(err.code, code);
    ck_assert_ptr_null(w);
    return err;
}

static eng_weights *open_ok(const char *dir)
{
    ssmd_err err = {0, ""};
    eng_weights *w = NULL;
    int rc = eng_weights_open(dir, &w, &err);
    ck_assert_msg(rc == SSMD_OK, "open failed: %s", err.msg);
    ck_assert_ptr_nonnull(w);
    return w;
}

/* Bytes written by Python's `safetensors.torch.save` 0.8.0 (the reference
 * writer): w32 F32 [2,3] = [[1,-2.5,3.25],[0.1,1e-8,-7]], h16 F16 [4] =
 * [1,-0.5,65504,6e-8 (subnormal 2^-24)], b16 BF16 [3] = [1,-3,0.1],
 * i64 I64 [2] = [7,-1], metadata {"format":"pt"}. */
static const char k_python_file[] =
    "\x08\x01\x00\x00\x00\x00\x00\x00\x7b\x22\x5f\x5f\x6d\x65\x74\x61\x64\x61"
    "\x74\x61\x5f\x5f\x22\x3a\x7b\x22\x66\x6f\x72\x6d\x61\x74\x22\x3a\x22\x70"
    "\x74\x22\x7d\x2c\x22\x69\x36\x34\x22\x3a\x7b\x22\x64\x74\x79\x70\x65\x22"
    "\x3a\x22\x49\x36\x34\x22\x2c\x22\x73\x68\x61\x70\x65\x22\x3a\x5b\x32\x5d"
    "\x2c\x22\x64\x61\x74\x61\x5f\x6f\x66\x66\x73\x65\x74\x73\x22\x3a\x5b\x30"
    "\x2c\x31\x36\x5d\x7d\x2c\x22\x77\x33\x32\x22\x3a\x7b\x22\x64\x74\x79\x70"
    "\x65\x22\x3a\x22\x46\x33\x32\x22\x2c\x22\x73\x68\x61\x70\x65\x22\x3a\x5b"
    "\x32\x2c\x33\x5d\x2c\x22\x64\x61\x74\x61\x5f\x6f\x66\x66\x73\x65\x74\x73"
    "\x22\x3a\x5b\x31\x36\x2c\x34\x30\x5d\x7d\x2c\x22\x62\x31\x36\x22\x3a\x7b"
    "\x22\x64\x74\x79\x70\x65\x22\x3a\x22\x42\x46\x31\x36\x22\x2c\x22\x73\x68"
    "\x61\x70\x65\x22\x3a\x5b\x33\x5d\x2c\x22\x64\x61\x74\x61\x5f\x6f\x66\x66"
    "\x73\x65\x74\x73\x22\x3a\x5b\x34\x30\x2c\x34\x36\x5d\x7d\x2c\x22\x68\x31"
    "\x36\x22\x3a\x7b\x22\x64\x74\x79\x70\x65\x22\x3a\x22\x46\x31\x36\x22\x2c"
    "\x22\x73\x68\x61\x70\x65\x22\x3a\x5b\x34\x5d\x2c\x22\x64\x61\x74\x61\x5f"
    "\x6f\x66\x66\x73\x65\x74\x73\x22\x3a\x5b\x34\x36\x2c\x35\x34\x5d\x7d\x7d"
    "\x20\x20\x07\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff"
    "\x00\x00\x80\x3f\x00\x00\x20\xc0\x00\x00\x50\x40\xcd\xcc\xcc\x3d\x77\xcc"
    "\x2b\x32\x00\x00\xe0\xc0\x80\x3f\x40\xc0\xcd\x3d\x00\x3c\x00\xb8\xff\x7b"
    "\x01\x00";

START_TEST(test_python_file)
{
    char dir[128];
    test_dir(dir, sizeof dir, "py");
    stw_write_bytes(dir, "model.safetensors", k_python_file, sizeof k_python_file - 1);
    eng_weights *w = open_ok(dir);
    ck_assert_int_eq(eng_weights_count(w), 4);
    /* eng_weights_at lists by name */
    ck_assert_str_eq(eng_weights_at(w, 0)->name, "b16");
    ck_assert_str_eq(eng_weights_at(w, 3)->name, "w32");

    const int64_t s23[2] = {2, 3};
    const eng_tensor *t = NULL;
    ssmd_err err = {0, ""};
    ck_assert_int_eq(eng_weights_get(w, "w32", 2, s23, &t, &err), SSMD_OK);
    ck_assert_int_eq(t->dtype, ENG_DTYPE_F32);
    ck_assert_str_eq(t->dtype_name, "F32");
    ck_assert_int_eq(t->numel, 6);
    ck_assert_uint_eq(t->nbytes, 24);
    ck_assert_ptr_nonnull(strstr(t->file, "model.safetensors"));
    float f[6];
    eng_tensor_to_f32(t, f);
    const float w32[6] = {1.0f, -2.5f, 3.25f, 0.1f, 1e-8f, -7.0f};
    for (int i = 0; i < 6; i++)
        ck_assert_msg(f[i] == w32[i], "w32[%d] = %g", i, f[i]);
    ck_assert(memcmp(t->data, w32, sizeof w32) == 0); /* zero-copy view */

    const int64_t s4[1] = {4}, s3[1] = {3};
    ck_assert_int_eq(eng_weights_get(w, "h16", 1, s4, &t, &err), SSMD_OK);
    ck_assert_int_eq(t->dtype, ENG_DTYPE_F16);
    eng_tensor_to_f32(t, f);
    ck_assert(f[0] == 1.0f && f[1] == -0.5f && f[2] == 65504.0f);
    ck_assert(f[3] == ldexpf(1.0f, -24));

    ck_assert_int_eq(eng_weights_get(w, "b16", 1, s3, &t, &err), SSMD_OK);
    ck_assert_int_eq(t->dtype, ENG_DTYPE_BF16);
    eng_tensor_to_f32(t, f);
    ck_assert(f[0] == 1.0f && f[1] == -3.0f && f[2] == 0.10009765625f);

    t = eng_weights_find(w, "i64");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, ENG_DTYPE_OTHER);
    ck_assert_str_eq(t->dtype_name, "I64");
    ck_assert_uint_eq(t->nbytes, 16);
    int64_t iv[2];
    memcpy(iv, t->data, sizeof iv);
    ck_assert(iv[0] == 7 && iv[1] == -1);
    ck_assert_ptr_null(eng_weights_find(w, "nope"));
    eng_weights_close(w);
}
END_TEST

/* Builds a file with every dtype and checks values and lookups. */
START_TEST(test_all_dtypes_built)
{
    char dir[128];
    test_dir(dir, sizeof dir, "dtypes");
    stw_file *sf = malloc(sizeof *sf);
    stw_begin(sf);
    const float a[6] = {0.5f, -1.0f, 2.0f, 1e30f, -0.0f, 3.0f};
    const int64_t sa[3] = {1, 2, 3};
    /* f16: 1, -2, 2^-14 (smallest normal), 2^-24*1023 (largest subnormal) */
    const uint16_t h[4] = {0x3c00, 0xc000, 0x0400, 0x03ff};
    /* bf16: 1, -2, 2^-126, 1.5 */
    const uint16_t b[4] = {0x3f80, 0xc000, 0x0080, 0x3fc0};
    const int64_t s22[2] = {2, 2}, s0[1] = {0};
    const uint8_t u8[3] = {1, 2, 3};
    const int64_t s3[1] = {3};
    stw_add(sf, "a.f32", "F32", 3, sa, a, sizeof a);
    stw_add(sf, "b.f16", "F16", 2, s22, h, sizeof h);
    stw_add(sf, "c.bf16", "BF16", 2, s22, b, sizeof b);
    stw_add(sf, "d.empty", "F32", 1, s0, NULL, 0);
    stw_add(sf, "e.scalar", "F32", 0, NULL, a, 4);
    stw_add(sf, "f.u8", "U8", 1, s3, u8, 3);
    stw_finish(sf, dir, "model.safetensors", 8);
    free(sf);

    eng_weights *w = open_ok(dir);
    ck_assert_int_eq(eng_weights_count(w), 6);
    const eng_tensor *t = NULL;
    ssmd_err err = {0, ""};
    float f[6];
    ck_assert_int_eq(eng_weights_get(w, "a.f32", 3, sa, &t, &err), SSMD_OK);
    eng_tensor_to_f32(t, f);
    ck_assert(memcmp(f, a, sizeof a) == 0);
    ck_assert_int_eq(eng_weights_get(w, "b.f16", 2, s22, &t, &err), SSMD_OK);
    eng_tensor_to_f32(t, f);
    ck_assert(f[0] == 1.0f && f[1] == -2.0f && f[2] == ldexpf(1, -14));
    ck_assert(f[3] == ldexpf(1023, -24));
    ck_assert_int_eq(eng_weights_get(w, "c.bf16", 2, s22, &t, &err), SSMD_OK);
    eng_tensor_to_f32(t, f);
    ck_assert(f[0] == 1.0f && f[1] == -2.0f && f[2] == ldexpf(1, -126) && f[3] == 1.5f);
    ck_assert_int_eq(eng_weights_get(w, "d.empty", 1, s0, &t, &err), SSMD_OK);
    ck_assert_int_eq(t->numel, 0);
    eng_tensor_to_f32(t, f); /* no-op, no crash */
    ck_assert_int_eq(eng_weights_get(w, "e.scalar", 0, NULL, &t, &err), SSMD_OK);
    ck_assert_int_eq(t->numel, 1);
    ck_assert_int_eq(eng_weights_get(w, "f.u8", 1, s3, &t, &err), SSMD_EFORMAT);
    ck_assert_msg_has(err, "'f.u8'");
    ck_assert_msg_has(err, "unsupported dtype U8");
    ck_assert_msg_has(err, "model.safetensors");
    ck_assert_ptr_null(t);
    eng_weights_close(w);
}
END_TEST

/* 600 tensors (a big Mamba has ~500): each found by name. */
START_TEST(test_many_tensors_lookup)
{
    char dir[128], name[64];
    test_dir(dir, sizeof dir, "many");
    stw_file *sf = malloc(sizeof *sf);
    stw_begin(sf);
    const int64_t s1[1] = {1};
    for (int i = 599; i >= 0; i--) {
        float v = (float)i;
        snprintf(name, sizeof name, "backbone.layers.%d.mixer.D", i);
        stw_add(sf, name, "F32", 1, s1, &v, 4);
    }
    stw_finish(sf, dir, "model.safetensors", 8);
    free(sf);
    eng_weights *w = open_ok(dir);
    ck_assert_int_eq(eng_weights_count(w), 600);
    for (int i = 0; i < 600; i++) {
        snprintf(name, sizeof name, "backbone.layers.%d.mixer.D", i);
        const eng_tensor *t = eng_weights_find(w, name);
        ck_assert_ptr_nonnull(t);
        float v;
        eng_tensor_to_f32(t, &v);
        ck_assert(v == (float)i);
    }
    ck_assert_ptr_null(eng_weights_find(w, "backbone.layers.600.mixer.D"));
    ck_assert_ptr_null(eng_weights_find(w, ""));
    eng_weights_close(w);
}
END_TEST

/* A header whose length is not a multiple of 4 leaves F32 data misaligned;
 * the loader must still hand out a pointer usable as float*. */
START_TEST(test_misaligned_data)
{
    char dir[128];
    test_dir(dir, sizeof dir, "misaligned");
    stw_file *sf = malloc(sizeof *sf);
    stw_begin(sf);
    const float a[3] = {1.25f, -8.0f, 1e-3f};
    const int64_t s3[1] = {3};
    stw_add(sf, "x", "F32", 1, s3, a, sizeof a);
    stw_finish(sf, dir, "model.safetensors", 1);
    int hlen = (int)sf->hlen;
    free(sf);
    eng_weights *w = open_ok(dir);
    const eng_tensor *t = eng_weights_find(w, "x");
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq((uintptr_t)t->data % 4, 0);
    ck_assert_msg((8 + hlen) % 4 != 0, "fixture meant to be misaligned");
    const float *p = t->data;
    ck_assert(p[0] == 1.25f && p[1] == -8.0f && p[2] == 1e-3f);
    eng_weights_close(w);
}
END_TEST

/* ---- conversions against independent references ---------------------------------- */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

START_TEST(test_f16_to_f32)
{
    /* hand-checked values (IEEE 754 binary16) */
    ck_assert(eng_f16_to_f32(0x0000) == 0.0f && !signbit(eng_f16_to_f32(0x0000)));
    ck_assert(eng_f16_to_f32(0x8000) == 0.0f && signbit(eng_f16_to_f32(0x8000)));
    ck_assert(eng_f16_to_f32(0x0001) == 5.9604644775390625e-08f);
    ck_assert(eng_f16_to_f32(0x8001) == -5.9604644775390625e-08f);
    ck_assert(eng_f16_to_f32(0x03ff) == 6.097555160522461e-05f);
    ck_assert(eng_f16_to_f32(0x0400) == 6.103515625e-05f);
    ck_assert(eng_f16_to_f32(0x3555) == 0.333251953125f);
    ck_assert(eng_f16_to_f32(0x7bff) == 65504.0f);
    ck_assert(eng_f16_to_f32(0xc400) == -4.0f);
    ck_assert(isinf(eng_f16_to_f32(0x7c00)) && eng_f16_to_f32(0x7c00) > 0);
    ck_assert(isinf(eng_f16_to_f32(0xfc00)) && eng_f16_to_f32(0xfc00) < 0);
    ck_assert(isnan(eng_f16_to_f32(0x7e00)));
    ck_assert(isnan(eng_f16_to_f32(0x7c01)));
    ck_assert(isnan(eng_f16_to_f32(0xfe00)));
#ifdef __FLT16_MAX__
    /* every one of the 65536 values against the compiler's _Float16 */
    for (uint32_t v = 0; v < 65536; v++) {
        uint16_t h = (uint16_t)v;
        _Float16 r;
        memcpy(&r, &h, 2);
        float want = (float)r, got = eng_f16_to_f32(h);
        if (isnan(want))
            ck_assert_msg(isnan(got), "0x%04x", v);
        else
            ck_assert_msg(f32_bits(got) == f32_bits(want), "0x%04x: %g vs %g", v, got, want);
    }
#endif
}
END_TEST

/* Reference f32 -> bf16: the nearer of the two bf16 neighbours, measured in
 * double arithmetic, ties to the even one. */
static uint16_t ref_bf16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    if ((u & 0xffff) == 0)
        return lo;
    double x = fabs((double)f), vlo = fabs((double)bits_f32((uint32_t)lo << 16));
    double vhi = ((hi & 0x7fff) == 0x7f80) ? ldexp(1.0, 128) : fabs((double)bits_f32((uint32_t)hi << 16));
    double dlo = x - vlo, dhi = vhi - x;
    if (dlo < dhi)
        return lo;
    if (dhi < dlo)
        return hi;
    return (lo & 1) ? hi : lo;
}

START_TEST(test_bf16)
{
    ck_assert(eng_bf16_to_f32(0x3f80) == 1.0f);
    ck_assert(eng_bf16_to_f32(0xc040) == -3.0f);
    ck_assert(eng_bf16_to_f32(0x0001) == ldexpf(1, -133)); /* subnormal */
    ck_assert(isinf(eng_bf16_to_f32(0x7f80)));
    ck_assert(isnan(eng_bf16_to_f32(0x7fc0)));

    ck_assert_uint_eq(eng_f32_to_bf16(1.0f), 0x3f80);
    ck_assert_uint_eq(eng_f32_to_bf16(bits_f32(0x3f808000)), 0x3f80); /* tie -> even */
    ck_assert_uint_eq(eng_f32_to_bf16(bits_f32(0x3f818000)), 0x3f82); /* tie -> even */
    ck_assert_uint_eq(eng_f32_to_bf16(bits_f32(0x3f808001)), 0x3f81);
    ck_assert_uint_eq(eng_f32_to_bf16(bits_f32(0xbf807fff)), 0xbf80);
    ck_assert_uint_eq(eng_f32_to_bf16(0.1f), 0x3dcd);
    ck_assert_uint_eq(eng_f32_to_bf16(bits_f32(0x7f7fffff)), 0x7f80); /* FLT_MAX -> inf */
    ck_assert_uint_eq(eng_f32_to_bf16(INFINITY), 0x7f80);
    ck_assert_uint_eq(eng_f32_to_bf16(-INFINITY), 0xff80);
    /* NaN stays NaN, even one whose payload is only in the low 16 bits */
    uint16_t n = eng_f32_to_bf16(bits_f32(0x7f800001));
    ck_assert_msg(isnan(eng_bf16_to_f32(n)), "0x%04x", n);
    n = eng_f32_to_bf16(bits_f32(0xff800001));
    ck_assert(isnan(eng_bf16_to_f32(n)) && (n & 0x8000));

    /* pseudo-random finite floats, bit patterns from an LCG */
    uint32_t s = 12345;
    for (int i = 0; i < 200000; i++) {
        s = s * 1664525u + 1013904223u;
        uint32_t u = s;
        if (i % 4 == 0)
            u = (u & 0xffff0000u) | 0x8000u; /* many exact ties */
        float f = bits_f32(u);
        if (isnan(f))
            continue;
        ck_assert_msg(eng_f32_to_bf16(f) == ref_bf16(f), "0x%08x", u);
    }
}
END_TEST

/* ---- malformed single files -------------------------------------------------------- */

/* Writes dir/model.safetensors from (declared length, header, data). */
static void put_raw(char *dir, size_t n, const char *name, uint64_t len, const char *header,
                    const void *data, size_t dlen)
{
    test_dir(dir, n, name);
    stw_write_raw(dir, "model.safetensors", len, header, data, dlen);
}

static const unsigned char k_zeros[64];

START_TEST(test_too_short)
{
    char dir[128];
    test_dir(dir, sizeof dir, "short");
    stw_write_bytes(dir, "model.safetensors", "\x10\x00\x00", 3);
    ssmd_err err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "model.safetensors");
    ck_assert_msg_has(err, "too short");
}
END_TEST

START_TEST(test_header_beyond_file)
{
    char dir[128];
    put_raw(dir, sizeof dir, "beyond", 1000, "{}", NULL, 0);
    ssmd_err err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "model.safetensors");
    ck_assert_msg_has(err, "header length 1000 beyond end of file");
    /* a length near 2^64 must not wrap around */
    put_raw(dir, sizeof dir, "beyond2", UINT64_MAX - 3, "{}", NULL, 0);
    err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "beyond end of file");
}
END_TEST

START_TEST(test_header_limit)
{
    char dir[128];
    test_dir(dir, sizeof dir, "limit");
    /* a sparse file: 8 + 101 MB, header length 101 MB */
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    uint64_t len = 101u << 20;
    unsigned char hdr[8];
    for (int i = 0; i < 8; i++)
        hdr[i] = (unsigned char)(len >> (8 * i));
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(hdr, 1, 8, f);
    ck_assert_int_eq(fseek(f, (long)len - 1, SEEK_CUR), 0);
    fputc(' ', f);
    fclose(f);
    ssmd_err err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "model.safetensors");
    ck_assert_msg_has(err, "exceeds");
}
END_TEST

START_TEST(test_bad_json_header)
{
    char dir[128];
    put_raw(dir, sizeof dir, "badjson", UINT64_MAX, "{\"a\": {\"dtype\": \"F32\",,}", NULL, 0);
    ssmd_err err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "model.safetensors");
    ck_assert_msg_has(err, "bad JSON header at line 1");
    /* duplicate tensor names are malformed too */
    put_raw(dir, sizeof dir, "dupkey", UINT64_MAX,
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
            "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", k_zeros, 4);
    err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "duplicate");
}
END_TEST

START_TEST(test_header_not_object)
{
    char dir[128];
    put_raw(dir, sizeof dir, "notobj", UINT64_MAX, "[1, 2]", NULL, 0);
    ssmd_err err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "model.safetensors");
    ck_assert_msg_has(err, "not a JSON object");
    put_raw(dir, sizeof dir, "entrynotobj", UINT64_MAX, "{\"w\": 3}", NULL, 0);
    err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "tensor 'w'");
    ck_assert_msg_has(err, "not a JSON object");
    put_raw(dir, sizeof dir, "meta", UINT64_MAX, "{\"__metadata__\": 3}", NULL, 0);
    err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "__metadata__");
}
END_TEST

START_TEST(test_entry_fields)
{
    char dir[128];
    struct {
        const char *header, *want;
    } cases[] = {
        {"{\"w.x\":{\"dtype\":\"F32\",\"shape\":[1]}}", "no 'data_offsets'"},
        {"{\"w.x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "no 'dtype'"},
        {"{\"w.x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "no 'shape'"},
        {"{\"w.x\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", "'dtype' is not a string"},
        {"{\"w.x\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", "'shape' is not an array"},
        {"{\"w.x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", "'data_offsets' must be"},
        {"{\"w.x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", "'data_offsets' must be"},
        {"{\"w.x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", "'data_offsets' must be"},
        {"{\"w.x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "shape dimension 0"},
        {"{\"w.x\":{\"dtype\":\"F32\",\"shape\":[1,1.5],\"data_offsets\":[0,4]}}", "shape dimension 1"},
        {"{\"w.x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
         "9 dimensions"},
        {"{\"w.x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}",
         "overflows"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "fields%zu", i);
        put_raw(dir, sizeof dir, name, UINT64_MAX, cases[i].header, k_zeros, 16);
        ssmd_err err = open_fails(dir, SSMD_EFORMAT);
        ck_assert_msg_has(err, "model.safetensors");
        ck_assert_msg_has(err, "tensor 'w.x'");
        ck_assert_msg_has(err, cases[i].want);
    }
}
END_TEST

START_TEST(test_offsets_outside_data)
{
    char dir[128];
    /* truncated: the header promises 16 bytes, the file has 8 */
    put_raw(dir, sizeof dir, "trunc", UINT64_MAX,
            "{\"backbone.norm_f.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
            k_zeros, 8);
    ssmd_err err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "model.safetensors: tensor 'backbone.norm_f.weight': data_offsets "
                           "[0, 16] outside the data section (8 bytes)");
    /* begin > end */
    put_raw(dir, sizeof dir, "reversed", UINT64_MAX,
            "{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", k_zeros, 16);
    err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "tensor 'x'");
    ck_assert_msg_has(err, "data_offsets [8, 4] begin after end");
    /* one byte past the end */
    put_raw(dir, sizeof dir, "onepast", UINT64_MAX,
            "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[16,17]}}", k_zeros, 16);
    err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "data_offsets [16, 17] outside the data section (16 bytes)");
    /* huge offsets must not wrap */
    put_raw(dir, sizeof dir, "huge", UINT64_MAX,
            "{\"x\":{\"dtype\":\"U8\",\"shape\":[4],"
            "\"data_offsets\":[9223372036854775800,9223372036854775804]}}", k_zeros, 16);
    err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "outside the data section");
}
END_TEST

START_TEST(test_size_mismatch)
{
    char dir[128];
    put_raw(dir, sizeof dir, "mismatch", UINT64_MAX,
            "{\"m.w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", k_zeros, 16);
    ssmd_err err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "model.safetensors");
    ck_assert_msg_has(err, "tensor 'm.w'");
    ck_assert_msg_has(err, "hold 16 bytes but shape [2, 3] of BF16 needs 12");
    /* a known non-float dtype is size-checked too */
    put_raw(dir, sizeof dir, "mismatch64", UINT64_MAX,
            "{\"ids\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,16]}}", k_zeros, 16);
    err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "tensor 'ids'");
    ck_assert_msg_has(err, "needs 24");
}
END_TEST

START_TEST(test_overlap_allowed)
{
    char dir[128];
    const float v[2] = {4.0f, 5.0f};
    /* header padded so that 8 + its length is a multiple of 8: data in place */
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    char padded[256];
    snprintf(padded, sizeof padded, "%s%.*s", h, (int)((8 - strlen(h) % 8) % 8), "        ");
    ck_assert_uint_eq(strlen(padded) % 8, 0);
    put_raw(dir, sizeof dir, "overlap", UINT64_MAX, padded, v, sizeof v);
    eng_weights *w = open_ok(dir);
    const eng_tensor *a = eng_weights_find(w, "a"), *b = eng_weights_find(w, "b");
    ck_assert(a && b);
    ck_assert_ptr_eq((const char *)a->data + 4, b->data);
    float f;
    eng_tensor_to_f32(b, &f);
    ck_assert(f == 5.0f);
    eng_weights_close(w);
}
END_TEST

START_TEST(test_get_errors)
{
    char dir[128];
    put_raw(dir, sizeof dir, "get", UINT64_MAX,
            "{\"backbone.layers.0.mixer.A_log\":{\"dtype\":\"F32\",\"shape\":[2,3],"
            "\"data_offsets\":[0,24]},"
            "\"ids\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[24,32]},"
            "\"q\":{\"dtype\":\"Q4_K\",\"shape\":[5],\"data_offsets\":[32,35]}}",
            k_zeros, 40);
    eng_weights *w = open_ok(dir);
    const eng_tensor *t = (const eng_tensor *)1;
    ssmd_err err = {0, ""};
    const int64_t want[2] = {3, 2};
    ck_assert_int_eq(eng_weights_get(w, "backbone.layers.0.mixer.A_log", 2, want, &t, &err),
                     SSMD_EFORMAT);
    ck_assert_ptr_null(t);
    ck_assert_msg_has(err, "model.safetensors");
    ck_assert_msg_has(err, "tensor 'backbone.layers.0.mixer.A_log': shape [2, 3] but expected [3, 2]");
    ck_assert_int_eq(eng_weights_get(w, "backbone.layers.0.mixer.A_log", 1, want, &t, &err),
                     SSMD_EFORMAT);
    ck_assert_msg_has(err, "shape [2, 3] but expected [3]");
    const int64_t one[1] = {1}, five[1] = {5};
    ck_assert_int_eq(eng_weights_get(w, "ids", 1, one, &t, &err), SSMD_EFORMAT);
    ck_assert_msg_has(err, "tensor 'ids': unsupported dtype I64");
    /* an unknown dtype loads (its size unchecked) but cannot be used */
    ck_assert_int_eq(eng_weights_get(w, "q", 1, five, &t, &err), SSMD_EFORMAT);
    ck_assert_msg_has(err, "unsupported dtype Q4_K");
    ck_assert_int_eq(eng_weights_get(w, "lm_head.weight", 1, one, &t, &err), SSMD_EFORMAT);
    ck_assert_msg_has(err, "model.safetensors: missing tensor 'lm_head.weight'");
    eng_weights_close(w);
}
END_TEST

START_TEST(test_no_weights)
{
    char dir[128];
    test_dir(dir, sizeof dir, "empty");
    ssmd_err err = open_fails(dir, SSMD_EIO);
    ck_assert_msg_has(err, dir);
    ck_assert_msg_has(err, "no model.safetensors");
    /* model.safetensors that is a directory */
    char sub[200];
    stw_subdir(sub, sizeof sub, dir, "model.safetensors");
    err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "model.safetensors: not a regular file");
}
END_TEST

/* ---- sharded ------------------------------------------------------------------------ */

/* Two shards: s1 has a (F32) and b (BF16), s2 has c (F16). */
static void put_shards(const char *dir)
{
    stw_file *sf = malloc(sizeof *sf);
    const float a[2] = {1.5f, -2.0f};
    const uint16_t b[2] = {0x4040, 0xbf80}; /* 3, -1 */
    const uint16_t c[3] = {0x3800, 0x0001, 0xfc00}; /* 0.5, 2^-24, -inf */
    const int64_t s2[1] = {2}, s3[1] = {3};
    stw_begin(sf);
    stw_add(sf, "backbone.a", "F32", 1, s2, a, sizeof a);
    stw_add(sf, "backbone.b", "BF16", 1, s2, b, sizeof b);
    stw_finish(sf, dir, "model-00001-of-00002.safetensors", 8);
    stw_begin(sf);
    stw_add(sf, "lm_head.c", "F16", 1, s3, c, sizeof c);
    stw_finish(sf, dir, "model-00002-of-00002.safetensors", 8);
    free(sf);
}

static const char k_index[] =
    "{\"metadata\": {\"total_size\": 18},\n"
    " \"weight_map\": {\"backbone.a\": \"model-00001-of-00002.safetensors\",\n"
    "                \"lm_head.c\": \"model-00002-of-00002.safetensors\",\n"
    "                \"backbone.b\": \"model-00001-of-00002.safetensors\"}}\n";

START_TEST(test_sharded)
{
    char dir[128];
    test_dir(dir, sizeof dir, "sharded");
    put_shards(dir);
    stw_write_text(dir, "model.safetensors.index.json", k_index);
    eng_weights *w = open_ok(dir);
    ck_assert_int_eq(eng_weights_count(w), 3);
    float f[3];
    const eng_tensor *t = eng_weights_find(w, "backbone.a");
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(strstr(t->file, "model-00001-of-00002.safetensors"));
    eng_tensor_to_f32(t, f);
    ck_assert(f[0] == 1.5f && f[1] == -2.0f);
    t = eng_weights_find(w, "backbone.b");
    eng_tensor_to_f32(t, f);
    ck_assert(f[0] == 3.0f && f[1] == -1.0f);
    t = eng_weights_find(w, "lm_head.c");
    ck_assert_ptr_nonnull(strstr(t->file, "model-00002-of-00002.safetensors"));
    eng_tensor_to_f32(t, f);
    ck_assert(f[0] == 0.5f && f[1] == ldexpf(1, -24) && isinf(f[2]) && f[2] < 0);
    eng_weights_close(w);
}
END_TEST

START_TEST(test_prefer_single)
{
    char dir[128];
    test_dir(dir, sizeof dir, "prefer");
    put_shards(dir);
    stw_write_text(dir, "model.safetensors.index.json", "not even json");
    stw_write_bytes(dir, "model.safetensors", k_python_file, sizeof k_python_file - 1);
    eng_weights *w = open_ok(dir);
    ck_assert_int_eq(eng_weights_count(w), 4);
    ck_assert_ptr_nonnull(eng_weights_find(w, "w32"));
    ck_assert_ptr_null(eng_weights_find(w, "backbone.a"));
    eng_weights_close(w);
}
END_TEST

START_TEST(test_missing_shard)
{
    char dir[128], path[256];
    test_dir(dir, sizeof dir, "missingshard");
    put_shards(dir);
    stw_write_text(dir, "model.safetensors.index.json", k_index);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    ck_assert_int_eq(unlink(path), 0);
    ssmd_err err = open_fails(dir, SSMD_EIO);
    ck_assert_msg_has(err, "model-00002-of-00002.safetensors: cannot open");
    ck_assert_msg_has(err, "model.safetensors.index.json");
}
END_TEST

START_TEST(test_bad_index)
{
    char dir[128];
    test_dir(dir, sizeof dir, "badindex");
    put_shards(dir);
    stw_write_text(dir, "model.safetensors.index.json", "{\"weight_map\": {\n  \"a\": }\n}");
    ssmd_err err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "model.safetensors.index.json: bad JSON at line 2");

    struct {
        const char *text, *want;
    } cases[] = {
        {"[]", "no 'weight_map'"},
        {"{\"weight_map\": {}}", "no 'weight_map'"},
        {"{\"weight_map\": {\"backbone.a\": 3}}", "tensor 'backbone.a': shard must be"},
        {"{\"weight_map\": {\"backbone.a\": \"../model-00001-of-00002.safetensors\"}}",
         "tensor 'backbone.a': shard must be"},
        {"{\"weight_map\": {\"backbone.a\": \"/etc/passwd\"}}", "no '/' or '..'"},
        /* a tensor that its shard does not hold */
        {"{\"weight_map\": {\"backbone.zz\": \"model-00001-of-00002.safetensors\"}}",
         "tensor 'backbone.zz': missing from shard model-00001-of-00002.safetensors"},
        /* a tensor that is in the other shard */
        {"{\"weight_map\": {\"backbone.a\": \"model-00002-of-00002.safetensors\",\n"
         "                \"backbone.b\": \"model-00001-of-00002.safetensors\"}}",
         "tensor 'backbone.a': missing from shard model-00002-of-00002.safetensors, found in "
         "model-00001-of-00002.safetensors"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        stw_write_text(dir, "model.safetensors.index.json", cases[i].text);
        err = open_fails(dir, SSMD_EFORMAT);
        ck_assert_msg_has(err, "model.safetensors.index.json");
        ck_assert_msg_has(err, cases[i].want);
    }
}
END_TEST

START_TEST(test_shard_malformed)
{
    char dir[128];
    test_dir(dir, sizeof dir, "shardbad");
    put_shards(dir);
    stw_write_text(dir, "model.safetensors.index.json", k_index);
    /* the second shard's data is cut short */
    stw_write_raw(dir, "model-00002-of-00002.safetensors", UINT64_MAX,
                  "{\"lm_head.c\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]}}",
                  k_zeros, 4);
    ssmd_err err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "model-00002-of-00002.safetensors: tensor 'lm_head.c'");
    ck_assert_msg_has(err, "outside the data section");
    /* the same tensor in two shards */
    stw_write_raw(dir, "model-00002-of-00002.safetensors", UINT64_MAX,
                  "{\"lm_head.c\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]},"
                  "\"backbone.a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                  k_zeros, 8);
    err = open_fails(dir, SSMD_EFORMAT);
    ck_assert_msg_has(err, "tensor 'backbone.a' appears twice");
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_add_unchecked_fixture(tc, root_setup, root_teardown);
    tcase_add_test(tc, test_python_file);
    tcase_add_test(tc, test_all_dtypes_built);
    tcase_add_test(tc, test_many_tensors_lookup);
    tcase_add_test(tc, test_misaligned_data);
    tcase_add_test(tc, test_f16_to_f32);
    tcase_add_test(tc, test_bf16);
    tcase_add_test(tc, test_too_short);
    tcase_add_test(tc, test_header_beyond_file);
    tcase_add_test(tc, test_header_limit);
    tcase_add_test(tc, test_bad_json_header);
    tcase_add_test(tc, test_header_not_object);
    tcase_add_test(tc, test_entry_fields);
    tcase_add_test(tc, test_offsets_outside_data);
    tcase_add_test(tc, test_size_mismatch);
    tcase_add_test(tc, test_overlap_allowed);
    tcase_add_test(tc, test_get_errors);
    tcase_add_test(tc, test_no_weights);
    tcase_add_test(tc, test_sharded);
    tcase_add_test(tc, test_prefer_single);
    tcase_add_test(tc, test_missing_shard);
    tcase_add_test(tc, test_bad_index);
    tcase_add_test(tc, test_shard_malformed);
    suite_add_tcase(s, tc);
    return s;
}
