/* tokenizer.c - Hugging Face `tokenizer.json` byte-level BPE: loading, the
 * encode pipeline and decode (see tokenizer.h).
 *
 * Encode follows `tokenizers` step by step:
 *   1. added tokens with normalized=false (the special ones) are cut out of
 *      the raw text (leftmost-longest, with lstrip/rstrip/single_word);
 *   2. each remaining piece is normalized (NFC), then added tokens with
 *      normalized=true are cut out of it;
 *   3. each remaining piece is split by the GPT-2 regex (ByteLevel
 *      pre-tokenizer, engine/text/pretok.c) and every word goes through BPE
 *      (engine/text/bpe.c).
 * Decode maps every token back to bytes (ByteLevel decoder) and replaces
 * invalid UTF-8 with U+FFFD as `tokenizers` does; engine/text/detok.c does the
 * same one id at a time.
 *
 * A loaded tokenizer is never written again: it must hold no cache or other
 * mutable state, since any number of threads encode with it at once.
 */
#include "engine/text/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/text/bpe.h"
#include "engine/text/pretok.h"
#include "engine/text/unicode.h"
#include "engine/xalloc.h"

#define TOK_MAX_IDS (1 << 24)
#define TOK_MAX_FILE_BYTES ((size_t)1 << 30)

/* One entry of "added_tokens". */
typedef struct added_tok {
    char *content;    /* as in the file; what decode emits */
    size_t len;
    char *pattern;    /* what is matched: content, or its NFC when normalized */
    size_t pattern_len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
} added_tok;

/* Leftmost-longest matcher over some of the added tokens: their indices
 * grouped by the first byte of the pattern, longest first in each group. */
typedef struct added_set {
    int32_t *order;
    uint32_t start[257]; /* group of byte x is order[start[x] .. start[x+1]) */
} added_set;

struct eng_tokenizer {
    eng_bpe bpe;
    int n_ids;            /* max id + 1 over vocab and added tokens */
    added_tok *added;     /* (n_added) specials first, then the others, file order */
    size_t n_added;
    added_set raw_set;    /* added tokens with normalized=false */
    added_set norm_set;   /* added tokens with normalized=true */
    char *dec_pool;       /* bytes every id decodes to, back to back */
    size_t *dec_off;      /* (n_ids + 1) id's bytes are dec_pool[dec_off[id] .. dec_off[id+1]) */
    unsigned char *special; /* (n_ids) 1 for ids that skip_special drops */
    size_t max_dec_len;   /* longest dec bytes of one id */
    int nfc;              /* normalizer: NFC (else none) */
    int use_regex;        /* split words with the GPT-2 regex */
    int prefix_space;     /* ByteLevel add_prefix_space */
    int prefix_per_word;  /* ... applied to every word (Sequence[Split, ByteLevel]) */
};

static char *xmemdup(const char *s, size_t n)
{
    char *d = xrealloc(NULL, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* ---- loading: normalizer, pre-tokenizer, decoder ------------------------------- */

static const char *type_of(const json_t *j)
{
    const json_t *t = json_object_get(j, "type");
    return json_is_string(t) ? json_string_value(t) : "";
}

static int parse_normalizer(eng_tokenizer *t, const json_t *j, const char *path, ssmd_err *err)
{
    if (!j || json_is_null(j))
        return SSMD_OK;
    if (!json_is_object(j))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: normalizer is not an object", path);
    if (strcmp(type_of(j), "NFC") == 0) {
        t->nfc = 1;
        return SSMD_OK;
    }
    if (strcmp(type_of(j), "Sequence") == 0) {
        const json_t *list = json_object_get(j, "normalizers");
        if (!json_is_array(list))
            return ssmd_err_set(err, SSMD_EFORMAT, "%s: normalizer Sequence has no list", path);
        for (size_t i = 0; i < json_array_size(list); i++) {
            int rc = parse_normalizer(t, json_array_get(list, i), path, err);
            if (rc != SSMD_OK)
                return rc;
        }
        return SSMD_OK;
    }
    return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                        "%s: normalizer \"%s\" is not supported (only NFC, or a Sequence of it)",
                        path, type_of(j));
}

static int bool_field(const json_t *j, const char *name, int dflt)
{
    const json_t *v = json_object_get(j, name);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int parse_pre_tokenizer(eng_tokenizer *t, const json_t *j, const char *path, ssmd_err *err)
{
    if (json_is_object(j) && strcmp(type_of(j), "ByteLevel") == 0) {
        t->prefix_space = bool_field(j, "add_prefix_space", 1);
        t->use_regex = bool_field(j, "use_regex", 1);
        return SSMD_OK;
    }
    if (json_is_object(j) && strcmp(type_of(j), "Sequence") == 0) {
        const json_t *list = json_object_get(j, "pretokenizers");
        size_t n = json_array_size(list);
        if (n == 1)
            return parse_pre_tokenizer(t, json_array_get(list, 0), path, err);
        /* Split(GPT-2 regex, Isolated) then ByteLevel without its own regex
         * is the same as ByteLevel with it. */
        const json_t *split = json_array_get(list, 0), *bl = json_array_get(list, 1);
        const json_t *pat = json_object_get(json_object_get(split, "pattern"), "Regex");
        const json_t *behavior = json_object_get(split, "behavior");
        if (n == 2 && strcmp(type_of(split), "Split") == 0 && json_is_string(pat) &&
            strcmp(json_string_value(pat), ENG_PRETOK_GPT2_PATTERN) == 0 &&
            json_is_string(behavior) && strcmp(json_string_value(behavior), "Isolated") == 0 &&
            !bool_field(split, "invert", 0) && strcmp(type_of(bl), "ByteLevel") == 0 &&
            !bool_field(bl, "use_regex", 1)) {
            t->use_regex = 1;
            t->prefix_space = bool_field(bl, "add_prefix_space", 1);
            t->prefix_per_word = 1;
            return SSMD_OK;
        }
    }
    return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                        "%s: pre_tokenizer \"%s\" is not supported (only ByteLevel, or a Sequence "
                        "of Split with the GPT-2 pattern and ByteLevel)",
                        path, json_is_object(j) ? type_of(j) : "null");
}

static int parse_decoder(const json_t *j, const char *path, ssmd_err *err)
{
    if (json_is_object(j) && strcmp(type_of(j), "ByteLevel") == 0)
        return SSMD_OK;
    return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                        "%s: decoder \"%s\" is not supported (only ByteLevel)", path,
                        json_is_object(j) ? type_of(j) : "null");
}

/* ---- loading: added tokens ------------------------------------------------------ */

static int parse_added_tokens(eng_tokenizer *t, const json_t *list, const char *path,
                              ssmd_err *err)
{
    if (!list || json_is_null(list))
        return SSMD_OK;
    if (!json_is_array(list))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: added_tokens is not an array", path);
    size_t n = json_array_size(list);
    t->added = xrealloc(NULL, n * sizeof *t->added);
    /* Specials first, then the others, as tokenizers orders its matchers. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            const json_t *a = json_array_get(list, i);
            const json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
            if (!json_is_integer(id) || json_integer_value(id) < 0 ||
                json_integer_value(id) >= TOK_MAX_IDS || !json_is_string(content))
                return ssmd_err_set(err, SSMD_EFORMAT,
                                    "%s: added_tokens[%zu] needs an id in 0..%d and a content "
                                    "string", path, i, TOK_MAX_IDS - 1);
            int special = bool_field(a, "special", 0);
            if (special != (pass == 0) || json_string_length(content) == 0)
                continue;
            added_tok *at = &t->added[t->n_added++];
            memset(at, 0, sizeof *at);
            at->len = json_string_length(content);
            at->content = xmemdup(json_string_value(content), at->len);
            at->id = (int32_t)json_integer_value(id);
            at->special = special;
            at->lstrip = bool_field(a, "lstrip", 0);
            at->rstrip = bool_field(a, "rstrip", 0);
            at->single_word = bool_field(a, "single_word", 0);
            at->normalized = bool_field(a, "normalized", !special);
            if (at->normalized && t->nfc) {
                at->pattern = eng_unicode_nfc(at->content, at->len, &at->pattern_len);
            } else {
                at->pattern = xmemdup(at->content, at->len);
                at->pattern_len = at->len;
            }
        }
    }
    return SSMD_OK;
}

static void build_set(eng_tokenizer *t, added_set *set, int normalized)
{
    size_t count[256] = {0};
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == normalized)
            count[(unsigned char)t->added[i].pattern[0]]++;
    set->start[0] = 0;
    for (int x = 0; x < 256; x++)
        set->start[x + 1] = set->start[x] + (uint32_t)count[x];
    set->order = xrealloc(NULL, (set->start[256] + 1) * sizeof *set->order);
    uint32_t fill[256];
    memcpy(fill, set->start, sizeof fill);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == normalized)
            set->order[fill[(unsigned char)t->added[i].pattern[0]]++] = (int32_t)i;
    /* Longest first; among equal lengths the earlier token (insertion sort is
     * stable), which is what the first match of equal length gives. */
    for (int x = 0; x < 256; x++) {
        int32_t *g = set->order + set->start[x];
        size_t gn = set->start[x + 1] - set->start[x];
        for (size_t i = 1; i < gn; i++) {
            int32_t v = g[i];
            size_t j = i;
            while (j > 0 && t->added[g[j - 1]].pattern_len < t->added[v].pattern_len) {
                g[j] = g[j - 1];
                j--;
            }
            g[j] = v;
        }
    }
}

/* ---- loading: decode table -------------------------------------------------------- */

/* The ByteLevel decoder: a token whose characters all stand for bytes gives
 * those bytes; any other token gives its own UTF-8. */
static void build_decode_table(eng_tokenizer *t)
{
    int32_t *added_of = xrealloc(NULL, (size_t)t->n_ids * sizeof *added_of);
    for (int i = 0; i < t->n_ids; i++)
        added_of[i] = -1;
    for (size_t i = 0; i < t->n_added; i++)
        if (added_of[t->added[i].id] < 0)
            added_of[t->added[i].id] = (int32_t)i;
    size_t cap = 0;
    for (int i = 0; i < t->n_ids; i++) {
        size_t n = 0;
        if (added_of[i] >= 0)
            n = t->added[added_of[i]].len;
        else
            eng_bpe_token_str(&t->bpe, i, &n);
        cap += n;
    }
    t->dec_pool = xrealloc(NULL, cap);
    t->dec_off = xrealloc(NULL, ((size_t)t->n_ids + 1) * sizeof *t->dec_off);
    t->special = xrealloc(NULL, (size_t)t->n_ids);
    size_t o = 0;
    for (int i = 0; i < t->n_ids; i++) {
        const char *s = NULL;
        size_t n = 0;
        t->special[i] = 0;
        if (added_of[i] >= 0) {
            s = t->added[added_of[i]].content;
            n = t->added[added_of[i]].len;
        } else {
            s = eng_bpe_token_str(&t->bpe, i, &n);
        }
        /* skip_special drops any token whose string is a special token's. */
        for (size_t k = 0; s && k < t->n_added && t->added[k].special; k++)
            if (t->added[k].len == n && memcmp(t->added[k].content, s, n) == 0)
                t->special[i] = 1;
        t->dec_off[i] = o;
        size_t start = o;
        for (size_t k = 0; s && k < n;) {
            uint32_t cp;
            k += eng_utf8_decode_valid((const unsigned char *)s + k, &cp);
            int byte = eng_bpe_cp_to_byte(cp);
            if (byte < 0) { /* not a byte-level token: its own bytes */
                memcpy(t->dec_pool + start, s, n);
                o = start + n;
                break;
            }
            t->dec_pool[o++] = (char)byte;
        }
        if (o - start > t->max_dec_len)
            t->max_dec_len = o - start;
    }
    t->dec_off[t->n_ids] = o;
    free(added_of);
}

/* ---- load / free ---------------------------------------------------------------- */

static int read_file(const char *path, char **out, size_t *out_len, ssmd_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ssmd_err_set(err, SSMD_EIO, "%s: cannot open tokenizer: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? 2 * cap : 1 << 20;
            buf = xrealloc(buf, cap);
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
        if (len > TOK_MAX_FILE_BYTES) {
            fclose(f);
            free(buf);
            return ssmd_err_set(err, SSMD_EFORMAT, "%s: tokenizer file is larger than 1 GiB", path);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return ssmd_err_set(err, SSMD_EIO, "%s: read error", path);
    }
    *out = buf;
    *out_len = len;
    return SSMD_OK;
}

int eng_tokenizer_load(const char *path, eng_tokenizer **out, ssmd_err *err)
{
    *out = NULL;
    char *text = NULL;
    size_t text_len = 0;
    json_t *root = NULL;
    eng_tokenizer *t = xrealloc(NULL, sizeof *t);
    memset(t, 0, sizeof *t);
    int rc = read_file(path, &text, &text_len, err);
    if (rc != SSMD_OK)
        goto fail;
    json_error_t jerr;
    root = json_loadb(text, text_len, 0, &jerr);
    if (!root) {
        rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: invalid JSON at line %d column %d: %s", path,
                          jerr.line, jerr.column, jerr.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: not a JSON object", path);
        goto fail;
    }
    rc = eng_bpe_load(&t->bpe, json_object_get(root, "model"), path, err);
    if (rc != SSMD_OK)
        goto fail;
    if ((rc = parse_normalizer(t, json_object_get(root, "normalizer"), path, err)) != SSMD_OK ||
        (rc = parse_pre_tokenizer(t, json_object_get(root, "pre_tokenizer"), path, err)) != SSMD_OK ||
        (rc = parse_decoder(json_object_get(root, "decoder"), path, err)) != SSMD_OK ||
        (rc = parse_added_tokens(t, json_object_get(root, "added_tokens"), path, err)) != SSMD_OK)
        goto fail;
    t->n_ids = t->bpe.n_ids;
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id >= t->n_ids)
            t->n_ids = t->added[i].id + 1;
    if (t->n_ids == 0) {
        rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: the vocab is empty", path);
        goto fail;
    }
    build_set(t, &t->raw_set, 0);
    build_set(t, &t->norm_set, 1);
    build_decode_table(t);
    json_decref(root);
    free(text);
    *out = t;
    return SSMD_OK;
fail:
    json_decref(root);
    free(text);
    eng_tokenizer_free(t);
    return rc;
}

void eng_tokenizer_free(eng_tokenizer *t)
{
    if (!t)
        return;
    eng_bpe_free(&t->bpe);
    for (size_t i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].pattern);
    }
    free(t->added);
    free(t->raw_set.order);
    free(t->norm_set.order);
    free(t->dec_pool);
    free(t->dec_off);
    free(t->special);
    free(t);
}

int eng_tokenizer_vocab_size(const eng_tokenizer *t) { return t->n_ids; }

const char *eng_tokenizer_token_bytes(const eng_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_ids)
        return NULL;
    *len = t->dec_off[id + 1] - t->dec_off[id];
    return t->dec_pool + t->dec_off[id];
}

int eng_tokenizer_is_special(const eng_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_ids && t->special[id];
}

size_t eng_tokenizer_piece_max(const eng_tokenizer *t)
{
    /* held-back bytes (< 4) + the token, each byte at worst one U+FFFD, + NUL */
    return 3 * (t->max_dec_len + 3) + 1;
}

int32_t eng_tokenizer_token_id(const eng_tokenizer *t, const char *token)
{
    size_t n = strlen(token);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->added[i].content, token, n) == 0)
            return t->added[i].id;
    return eng_bpe_token_id(&t->bpe, token, n);
}

/* ---- encode ---------------------------------------------------------------------- */

typedef struct enc_ctx {
    const eng_tokenizer *tok;
    eng_idvec ids;
    eng_bpe_scratch scratch;
    char *buf; /* room to put a prefix space in front of a piece or word */
    size_t buf_cap;
} enc_ctx;

typedef void (*gap_fn)(enc_ctx *c, const char *s, size_t n);

static uint32_t char_at(const char *s, size_t i)
{
    uint32_t cp;
    eng_utf8_decode_valid((const unsigned char *)s + i, &cp);
    return cp;
}

/* Index of the first byte of the character that ends at end (> 0). */
static size_t char_start_before(const char *s, size_t end)
{
    size_t i = end - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
        i--;
    return i;
}

static uint32_t char_before(const char *s, size_t end) { return char_at(s, char_start_before(s, end)); }

/* Start of the run of White_Space that ends at end. */
static size_t space_run_start(const char *s, size_t end)
{
    while (end > 0 && eng_unicode_is_space(char_before(s, end)))
        end = char_start_before(s, end);
    return end;
}

static size_t space_run_end(const char *s, size_t n, size_t i)
{
    while (i < n) {
        uint32_t cp;
        size_t l = eng_utf8_decode_valid((const unsigned char *)s + i, &cp);
        if (!eng_unicode_is_space(cp))
            break;
        i += l;
    }
    return i;
}

/* Cuts the added tokens of set out of s (as tokenizers' AddedVocabulary
 * find_matches does), emitting their ids and handing the rest to gap. */
static void split_added(enc_ctx *c, const added_set *set, const char *s, size_t n, gap_fn gap)
{
    const eng_tokenizer *t = c->tok;
    size_t pos = 0, done = 0;
    while (pos < n) {
        unsigned x = (unsigned char)s[pos];
        const added_tok *m = NULL;
        for (uint32_t k = set->start[x]; k < set->start[x + 1]; k++) {
            const added_tok *a = &t->added[set->order[k]];
            if (a->pattern_len <= n - pos && memcmp(s + pos, a->pattern, a->pattern_len) == 0) {
                m = a;
                break;
            }
        }
        if (!m) {
            pos++;
            continue;
        }
        size_t start = pos, stop = pos + m->pattern_len;
        pos = stop; /* matching goes on after the match, whatever happens to it */
        if (m->single_word && ((start > 0 && eng_unicode_is_word(char_before(s, start))) ||
                               (stop < n && eng_unicode_is_word(char_at(s, stop)))))
            continue;
        if (m->lstrip) {
            size_t ls = space_run_start(s, start);
            start = ls > done ? ls : done;
        }
        if (m->rstrip)
            stop = space_run_end(s, n, stop);
        if (done < start)
            gap(c, s + done, start - done);
        eng_idvec_push(&c->ids, m->id);
        done = stop;
    }
    if (done < n)
        gap(c, s + done, n - done);
}

static char *ctx_buf(enc_ctx *c, size_t n)
{
    if (c->buf_cap < n) {
        c->buf_cap = n > 2 * c->buf_cap ? n : 2 * c->buf_cap;
        c->buf = xrealloc(c->buf, c->buf_cap);
    }
    return c->buf;
}

static void encode_word(enc_ctx *c, const char *w, size_t n)
{
    const eng_tokenizer *t = c->tok;
    if (t->prefix_per_word && t->prefix_space && w[0] != ' ') {
        char *b = ctx_buf(c, n + 1);
        b[0] = ' ';
        memcpy(b + 1, w, n);
        eng_bpe_encode_word(&t->bpe, (const unsigned char *)b, n + 1, &c->scratch, &c->ids);
        return;
    }
    eng_bpe_encode_word(&t->bpe, (const unsigned char *)w, n, &c->scratch, &c->ids);
}

/* A piece with no added token left in it: pre-tokenize, then BPE. */
static void encode_piece(enc_ctx *c, const char *s, size_t n)
{
    const eng_tokenizer *t = c->tok;
    if (t->prefix_space && !t->prefix_per_word && s[0] != ' ') {
        char *b = ctx_buf(c, n + 1); /* encode_word does not use it in this mode */
        b[0] = ' ';
        memcpy(b + 1, s, n);
        s = b;
        n++;
    }
    if (!t->use_regex) {
        encode_word(c, s, n);
    } else {
        for (size_t pos = 0; pos < n;) {
            size_t end = eng_pretok_gpt2_next(s, n, pos);
            encode_word(c, s + pos, end - pos);
            pos = end;
        }
    }
}

/* A piece of the raw text between non-normalized added tokens. */
static void encode_raw_piece(enc_ctx *c, const char *s, size_t n)
{
    const eng_tokenizer *t = c->tok;
    if (!t->nfc || eng_unicode_nfc_quick(s, n)) {
        split_added(c, &t->norm_set, s, n, encode_piece);
        return;
    }
    size_t nn;
    char *norm = eng_unicode_nfc(s, n, &nn);
    if (nn > 0)
        split_added(c, &t->norm_set, norm, nn, encode_piece);
    free(norm);
}

int eng_tokenizer_encode(const eng_tokenizer *t, const char *text, size_t len, int32_t **ids)
{
    *ids = NULL;
    if (!eng_utf8_valid(text, len))
        return -1;
    enc_ctx c = {.tok = t};
    split_added(&c, &t->raw_set, text, len, encode_raw_piece);
    eng_bpe_scratch_free(&c.scratch);
    free(c.buf);
    if (c.ids.n > (size_t)INT32_MAX) {
        free(c.ids.v);
        return -1;
    }
    *ids = c.ids.v ? c.ids.v : xrealloc(NULL, sizeof(int32_t));
    return (int)c.ids.n;
}

/* ---- decode ---------------------------------------------------------------------- */

int eng_tokenizer_decode(const eng_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                         char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids)
            return SSMD_EINVAL;
        if (!(skip_special && t->special[ids[i]]))
            total += t->dec_off[ids[i] + 1] - t->dec_off[ids[i]];
    }
    unsigned char *raw = xrealloc(NULL, total);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && t->special[ids[i]])
            continue;
        size_t a = t->dec_off[ids[i]], b = t->dec_off[ids[i] + 1];
        memcpy(raw + o, t->dec_pool + a, b - a);
        o += b - a;
    }
    char *s = xrealloc(NULL, 3 * total + 1);
    size_t sl = eng_utf8_sanitize(raw, total, s);
    s[sl] = 0;
    free(raw);
    *out = s;
    *out_len = sl;
    return SSMD_OK;
}
