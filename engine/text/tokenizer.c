/* tokenizer.c - Hugging Face `tokenizer.json`: loading, the encode pipeline
 * and decode (see tokenizer.h).  The components live in their own files;
 * this one wires them together.
 *
 * Encode follows `tokenizers` step by step:
 *   1. added tokens with normalized=false (the special ones) are cut out of
 *      the raw text (engine/text/added_tokens.c);
 *   2. each remaining piece is normalized (normalizers.c), then added tokens
 *      with normalized=true are cut out of it;
 *   3. each remaining piece is pre-tokenized into words (pretokenizers.c)
 *      and every word goes through BPE (bpe.c);
 *   4. on request, the post-processor's special tokens go around (postproc.c).
 * Decode runs the decoder chain (decoders.c) over the tokens' strings.  For
 * the incremental detokenizer (detok.c) the chain is run at load over each
 * token alone, as the first token and as a later one, keeping raw bytes.
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

#include "engine/text/added_tokens.h"
#include "engine/text/bpe.h"
#include "engine/text/decoders.h"
#include "engine/text/normalizers.h"
#include "engine/text/postproc.h"
#include "engine/text/pretokenizers.h"
#include "engine/text/unicode.h"
#include "engine/xalloc.h"

#define TOK_MAX_FILE_BYTES ((size_t)1 << 30)

enum {
    TOK_FLAG_SPECIAL = 1, /* skip_special drops it */
    TOK_FLAG_HOLE = 2,    /* no token has this id: decode skips it, as tokenizers does */
};

/* What each id decodes to alone: the bytes of id are pool[off[id] .. off[id+1]). */
typedef struct dec_table {
    char *pool;
    size_t *off; /* (n_ids + 1) */
} dec_table;

struct eng_tokenizer {
    eng_bpe bpe;
    eng_norm *norm;       /* NULL: none */
    eng_pretok *pretok;   /* NULL: none */
    eng_dec *dec;
    eng_added added;
    eng_postproc post;
    int n_ids;            /* max id + 1 over vocab and added tokens */
    unsigned char *flags; /* (n_ids) TOK_FLAG_* */
    int32_t *added_of;    /* (n_ids) index into added.v of id's added token, or -1 */
    dec_table mid, first; /* raw decode of each id inside a text / starting it */
    size_t max_dec_len;   /* longest entry of either table */
};

/* ---- loading: per-id token strings and decode tables ------------------------------ */

/* The string of id as decode sees it: an added token's content, else the
 * vocab's; NULL for a hole. */
static const char *token_string(const eng_tokenizer *t, const int32_t *added_of, int32_t id,
                                size_t *n)
{
    if (added_of[id] >= 0) {
        *n = t->added.v[added_of[id]].len;
        return t->added.v[added_of[id]].content;
    }
    return eng_bpe_token_str(&t->bpe, id, n);
}

static void build_tables(eng_tokenizer *t)
{
    int32_t *added_of = t->added_of = xmalloc((size_t)t->n_ids * sizeof *added_of);
    for (int i = 0; i < t->n_ids; i++)
        added_of[i] = -1;
    for (size_t i = 0; i < t->added.n; i++)
        if (added_of[t->added.v[i].id] < 0)
            added_of[t->added.v[i].id] = (int32_t)i;
    t->flags = xcalloc((size_t)t->n_ids, 1);
    eng_pieces list = {.keep_empty = 1};
    eng_dec_scratch sc = {0};
    eng_pieces pools[2] = {{0}, {0}};
    dec_table *tabs[2] = {&t->mid, &t->first};
    for (int k = 0; k < 2; k++)
        tabs[k]->off = xmalloc(((size_t)t->n_ids + 1) * sizeof(size_t));
    for (int32_t id = 0; id < t->n_ids; id++) {
        size_t n = 0;
        const char *s = token_string(t, added_of, id, &n);
        if (!s)
            t->flags[id] |= TOK_FLAG_HOLE;
        /* skip_special drops any token whose string is a special token's */
        for (size_t k = 0; s && k < t->added.n && t->added.v[k].special; k++)
            if (t->added.v[k].len == n && memcmp(t->added.v[k].content, s, n) == 0)
                t->flags[id] |= TOK_FLAG_SPECIAL;
        for (int k = 0; k < 2; k++) {
            tabs[k]->off[id] = pools[k].len;
            if (!s)
                continue;
            eng_pieces_clear(&list);
            eng_pieces_add(&list, s, n, 0);
            eng_dec_mode mode = {.at_start = k, .at_end = 0, .raw = 1};
            const eng_pieces *r = eng_dec_run(t->dec, &list, mode, &sc);
            size_t before = pools[k].len;
            for (size_t i = 0; i < r->n; i++)
                eng_pieces_add(&pools[k], r->text + r->v[i].off, r->v[i].len, 0);
            if (pools[k].len - before > t->max_dec_len)
                t->max_dec_len = pools[k].len - before;
        }
    }
    for (int k = 0; k < 2; k++) {
        tabs[k]->off[t->n_ids] = pools[k].len;
        tabs[k]->pool = pools[k].text; /* the piece array goes, the text stays */
        free(pools[k].v);
    }
    eng_pieces_free(&list);
    eng_dec_scratch_free(&sc);
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
    int rc = read_file(path, &text, &text_len, err);
    if (rc != SSMD_OK)
        return rc;
    json_error_t jerr;
    json_t *root = json_loadb(text, text_len, 0, &jerr);
    free(text);
    if (!root)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: invalid JSON at line %d column %d: %s", path,
                            jerr.line, jerr.column, jerr.text);
    rc = eng_tokenizer_from_json(root, path, out, err);
    json_decref(root);
    return rc;
}

int eng_tokenizer_from_json(const json_t *root, const char *path, eng_tokenizer **out,
                            ssmd_err *err)
{
    *out = NULL;
    int rc;
    eng_tokenizer *t = xcalloc(1, sizeof *t);
    if (!json_is_object(root)) {
        rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: not a JSON object", path);
        goto fail;
    }
    if ((rc = eng_bpe_load(&t->bpe, json_object_get(root, "model"), path, err)) != SSMD_OK ||
        (rc = eng_norm_load(json_object_get(root, "normalizer"), path, &t->norm, err)) != SSMD_OK ||
        (rc = eng_pretok_load(json_object_get(root, "pre_tokenizer"), path, &t->pretok, err)) != SSMD_OK ||
        (rc = eng_dec_load(json_object_get(root, "decoder"), path, &t->dec, err)) != SSMD_OK ||
        (rc = eng_postproc_load(&t->post, json_object_get(root, "post_processor"), path, err)) != SSMD_OK ||
        (rc = eng_added_load(&t->added, json_object_get(root, "added_tokens"), t->norm, path, err)) != SSMD_OK)
        goto fail;
    t->n_ids = t->bpe.n_ids;
    for (size_t i = 0; i < t->added.n; i++)
        if (t->added.v[i].id >= t->n_ids)
            t->n_ids = t->added.v[i].id + 1;
    if (t->n_ids == 0) {
        rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: the vocab is empty", path);
        goto fail;
    }
    for (size_t i = 0; i < t->post.n_prefix + t->post.n_suffix; i++) {
        int32_t id = i < t->post.n_prefix ? t->post.prefix[i] : t->post.suffix[i - t->post.n_prefix];
        if (id >= t->n_ids) {
            rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: post_processor adds id %d, outside the "
                              "vocab (%d ids)", path, id, t->n_ids);
            goto fail;
        }
    }
    build_tables(t);
    *out = t;
    return SSMD_OK;
fail:
    eng_tokenizer_free(t);
    return rc;
}


void eng_tokenizer_free(eng_tokenizer *t)
{
    if (!t)
        return;
    eng_bpe_free(&t->bpe);
    eng_norm_free(t->norm);
    eng_pretok_free(t->pretok);
    eng_dec_free(t->dec);
    eng_added_free(&t->added);
    eng_postproc_free(&t->post);
    free(t->flags);
    free(t->added_of);
    free(t->mid.pool);
    free(t->mid.off);
    free(t->first.pool);
    free(t->first.off);
    free(t);
}

int eng_tokenizer_vocab_size(const eng_tokenizer *t) { return t->n_ids; }

const char *eng_tokenizer_token_piece(const eng_tokenizer *t, int32_t id, int first, size_t *len)
{
    if (id < 0 || id >= t->n_ids)
        return NULL;
    const dec_table *tab = first ? &t->first : &t->mid;
    *len = tab->off[id + 1] - tab->off[id];
    return tab->pool ? tab->pool + tab->off[id] : "";
}

const char *eng_tokenizer_token_bytes(const eng_tokenizer *t, int32_t id, size_t *len)
{
    return eng_tokenizer_token_piece(t, id, 0, len);
}

int eng_tokenizer_is_special(const eng_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_ids && (t->flags[id] & TOK_FLAG_SPECIAL);
}

int eng_tokenizer_is_hole(const eng_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_ids && (t->flags[id] & TOK_FLAG_HOLE);
}

int eng_tokenizer_byte_fallback(const eng_tokenizer *t) { return eng_dec_has_byte_fallback(t->dec); }

size_t eng_tokenizer_piece_max(const eng_tokenizer *t)
{
    /* held-back bytes (< 4) + the token, each byte at worst one U+FFFD, + NUL */
    return 3 * (t->max_dec_len + 3) + 1;
}

int32_t eng_tokenizer_token_id(const eng_tokenizer *t, const char *token)
{
    size_t n = strlen(token);
    int32_t id = eng_added_find(&t->added, token, n);
    return id >= 0 ? id : eng_bpe_token_id(&t->bpe, token, n);
}

/* ---- encode ---------------------------------------------------------------------- */

typedef struct enc_ctx {
    const eng_tokenizer *tok;
    eng_idvec ids;
    eng_norm_scratch norm;
    eng_pretok_scratch pretok;
    eng_bpe_scratch bpe;
    int raw_at_start; /* the current raw piece begins the text */
} enc_ctx;

/* A normalized piece with no added token left in it: words, then BPE. */
static void encode_norm_piece(void *p, const char *s, size_t n, size_t at)
{
    enc_ctx *c = p;
    const eng_tokenizer *t = c->tok;
    const eng_pieces *w = eng_pretok_run(t->pretok, s, n, c->raw_at_start && at == 0, &c->pretok);
    int bytes = eng_pretok_bytes_out(t->pretok);
    for (size_t i = 0; i < w->n; i++) {
        const char *ws = w->text + w->v[i].off;
        if (bytes)
            eng_bpe_encode_word(&t->bpe, (const unsigned char *)ws, w->v[i].len, &c->bpe, &c->ids);
        else
            eng_bpe_encode_chars(&t->bpe, ws, w->v[i].len, &c->bpe, &c->ids);
    }
}

/* A piece of the raw text between non-normalized added tokens. */
static void encode_raw_piece(void *p, const char *s, size_t n, size_t at)
{
    enc_ctx *c = p;
    size_t nn;
    const char *norm = eng_norm_run(c->tok->norm, s, n, &nn, &c->norm);
    c->raw_at_start = at == 0;
    eng_added_split(&c->tok->added, 1, norm, nn, &c->ids, encode_norm_piece, c);
}

static void push_all(eng_idvec *v, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        eng_idvec_push(v, ids[i]);
}

int eng_tokenizer_encode_special(const eng_tokenizer *t, const char *text, size_t len,
                                 int add_special, int32_t **ids)
{
    *ids = NULL;
    if (!eng_utf8_valid(text, len))
        return -1;
    enc_ctx c = {.tok = t};
    if (add_special)
        push_all(&c.ids, t->post.prefix, t->post.n_prefix);
    eng_added_split(&t->added, 0, text, len, &c.ids, encode_raw_piece, &c);
    if (add_special)
        push_all(&c.ids, t->post.suffix, t->post.n_suffix);
    eng_norm_scratch_free(&c.norm);
    eng_pretok_scratch_free(&c.pretok);
    eng_bpe_scratch_free(&c.bpe);
    if (c.ids.n > (size_t)INT32_MAX) {
        free(c.ids.v);
        return -1;
    }
    *ids = c.ids.v ? c.ids.v : xmalloc(sizeof(int32_t));
    return (int)c.ids.n;
}

int eng_tokenizer_encode(const eng_tokenizer *t, const char *text, size_t len, int32_t **ids)
{
    return eng_tokenizer_encode_special(t, text, len, 0, ids);
}

/* ---- decode ---------------------------------------------------------------------- */

int eng_tokenizer_decode(const eng_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                         char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_ids)
            return SSMD_EINVAL;
    eng_pieces list = {.keep_empty = 1};
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if ((t->flags[id] & TOK_FLAG_HOLE) || (skip_special && (t->flags[id] & TOK_FLAG_SPECIAL)))
            continue;
        size_t len = 0;
        const char *s = token_string(t, t->added_of, id, &len);
        eng_pieces_add(&list, s, len, 0);
    }
    eng_dec_scratch sc = {0};
    eng_dec_mode mode = {.at_start = 1, .at_end = 1, .raw = 0};
    const eng_pieces *r = eng_dec_run(t->dec, &list, mode, &sc);
    /* the pieces lie back to back; the chain's output is valid UTF-8, and
     * sanitizing once more keeps that a guarantee */
    char *s = xmalloc(3 * r->len + 1);
    size_t sl = eng_utf8_sanitize((const unsigned char *)r->text, r->len, s);
    s[sl] = 0;
    eng_pieces_free(&list);
    eng_dec_scratch_free(&sc);
    *out = s;
    *out_len = sl;
    return SSMD_OK;
}
