/* bpe.c - the BPE model: vocab and merges from tokenizer.json, and the
 * merge loop for one word (see bpe.h).
 *
 * The merge loop follows Hugging Face `tokenizers` exactly: symbols start as
 * one token per byte; the candidate pair with the lowest merge rank (then the
 * leftmost) is merged first, stale candidates are skipped.  This file must
 * never keep mutable state outside the caller's scratch: it runs on many
 * threads at once.
 */
#include "engine/text/bpe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/text/unicode.h"
#include "engine/xalloc.h"

#define BPE_MAX_IDS (1 << 24) /* refuse absurd ids rather than allocate for them */

void eng_idvec_push(eng_idvec *vec, int32_t id)
{
    if (vec->n == vec->cap) {
        vec->cap = vec->cap ? 2 * vec->cap : 64;
        vec->v = xrealloc(vec->v, vec->cap * sizeof *vec->v);
    }
    vec->v[vec->n++] = id;
}

/* ---- bytes_to_unicode ------------------------------------------------------ */

/* Bytes that stand for themselves: '!'..'~', 0xA1..0xAC, 0xAE..0xFF.  The 68
 * others map, in increasing order, to U+0100..U+0143. */
static int byte_is_printable(unsigned x)
{
    return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
}

uint32_t eng_bpe_byte_to_cp(unsigned x)
{
    if (byte_is_printable(x))
        return x;
    if (x <= 32)
        return 256 + x;
    if (x <= 160)
        return 256 + 33 + (x - 127);
    return 256 + 67; /* 0xAD */
}

int eng_bpe_cp_to_byte(uint32_t cp)
{
    if (cp < 256)
        return byte_is_printable(cp) ? (int)cp : -1;
    if (cp < 256 + 33)
        return (int)(cp - 256);
    if (cp < 256 + 67)
        return (int)(cp - 256 - 33 + 127);
    if (cp == 256 + 67)
        return 0xAD;
    return -1;
}

/* ---- vocab ------------------------------------------------------------------ */

static uint64_t str_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

int32_t eng_bpe_token_id(const eng_bpe *b, const char *s, size_t n)
{
    if (!b->str_slot)
        return -1;
    for (size_t i = str_hash(s, n) & b->str_mask;; i = (i + 1) & b->str_mask) {
        uint32_t slot = b->str_slot[i];
        if (slot == 0)
            return -1;
        int32_t id = (int32_t)(slot - 1);
        if (b->tok_len[id] == n && memcmp(b->pool + b->tok_off[id], s, n) == 0)
            return id;
    }
}

const char *eng_bpe_token_str(const eng_bpe *b, int32_t id, size_t *len)
{
    if (id < 0 || id >= b->n_ids || b->tok_off[id] == UINT32_MAX)
        return NULL;
    *len = b->tok_len[id];
    return b->pool + b->tok_off[id];
}

static size_t table_size(size_t n)
{
    size_t size = 16;
    while (size < 2 * n)
        size *= 2;
    return size;
}

static int load_vocab(eng_bpe *b, const json_t *vocab, const char *path, ssmd_err *err)
{
    if (!json_is_object(vocab))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: model.vocab is not an object", path);
    const char *key;
    json_t *val;
    size_t pool_size = 0;
    int max_id = -1;
    json_object_foreach((json_t *)vocab, key, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || id >= BPE_MAX_IDS)
            return ssmd_err_set(err, SSMD_EFORMAT,
                                "%s: model.vocab[\"%.64s\"] is not an id in 0..%d", path, key,
                                BPE_MAX_IDS - 1);
        if (id > max_id)
            max_id = (int)id;
        pool_size += strlen(key) + 1;
    }
    if (pool_size >= UINT32_MAX)
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: model.vocab is too large", path);
    b->n_ids = max_id + 1;
    b->pool = xrealloc(NULL, pool_size);
    b->tok_off = xrealloc(NULL, (size_t)b->n_ids * sizeof *b->tok_off);
    b->tok_len = xrealloc(NULL, (size_t)b->n_ids * sizeof *b->tok_len);
    memset(b->tok_off, 0xFF, (size_t)b->n_ids * sizeof *b->tok_off);
    memset(b->tok_len, 0, (size_t)b->n_ids * sizeof *b->tok_len);
    size_t size = table_size(json_object_size(vocab));
    b->str_mask = size - 1;
    b->str_slot = xrealloc(NULL, size * sizeof *b->str_slot);
    memset(b->str_slot, 0, size * sizeof *b->str_slot);
    json_object_foreach((json_t *)vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        size_t n = strlen(key);
        if (b->tok_off[id] != UINT32_MAX) /* two strings share an id: keep the first */
            continue;
        b->tok_off[id] = (uint32_t)b->pool_len;
        b->tok_len[id] = (uint32_t)n;
        memcpy(b->pool + b->pool_len, key, n + 1);
        b->pool_len += n + 1;
        size_t i = str_hash(key, n) & b->str_mask;
        while (b->str_slot[i])
            i = (i + 1) & b->str_mask;
        b->str_slot[i] = (uint32_t)id + 1;
    }
    return SSMD_OK;
}

/* ---- merges ----------------------------------------------------------------- */

size_t eng_bpe_pair_slot(const uint64_t *keys, size_t mask, uint64_t key)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h ^ (h >> 29)) & mask;
    while (keys[i] != key && keys[i] != UINT64_MAX)
        i = (i + 1) & mask;
    return i;
}

static size_t merge_slot(const eng_bpe *b, uint64_t key)
{
    return eng_bpe_pair_slot(b->merge_key, b->merge_mask, key);
}

static int add_merge(eng_bpe *b, const char *l, size_t ln, const char *r, size_t rn, size_t rank,
                     const char *path, ssmd_err *err)
{
    int32_t a = eng_bpe_token_id(b, l, ln), c = eng_bpe_token_id(b, r, rn);
    if (a < 0 || c < 0)
        return ssmd_err_set(err, SSMD_EFORMAT,
                            "%s: model.merges[%zu] (\"%.*s\" \"%.*s\") names a token not in the vocab",
                            path, rank, (int)(ln < 64 ? ln : 64), l, (int)(rn < 64 ? rn : 64), r);
    /* With a continuing_subword_prefix the right part loses its prefix
     * (tokenizers cuts that many bytes whatever they are). */
    size_t cut = b->prefix_len <= rn ? b->prefix_len : rn;
    char *buf = xrealloc(NULL, ln + rn);
    memcpy(buf, l, ln);
    memcpy(buf + ln, r + cut, rn - cut);
    rn -= cut;
    int32_t merged = eng_bpe_token_id(b, buf, ln + rn);
    if (merged < 0) {
        ssmd_err_set(err, SSMD_EFORMAT,
                     "%s: model.merges[%zu]: the merged token \"%.*s\" is not in the vocab", path,
                     rank, (int)(ln + rn < 128 ? ln + rn : 128), buf);
        free(buf);
        return SSMD_EFORMAT;
    }
    free(buf);
    uint64_t key = (uint64_t)a << 32 | (uint32_t)c;
    size_t i = merge_slot(b, key);
    if (b->merge_key[i] == UINT64_MAX)
        b->n_merges++;
    b->merge_key[i] = key; /* a repeated pair takes its last rank, as in tokenizers */
    b->merge_rank[i] = (uint32_t)rank;
    b->merge_new[i] = merged;
    return SSMD_OK;
}

static int load_merges(eng_bpe *b, const json_t *merges, const char *path, ssmd_err *err)
{
    if (!merges)
        merges = json_array(); /* no merges: every byte is a token */
    else
        json_incref((json_t *)merges);
    int rc = SSMD_OK;
    if (!json_is_array(merges)) {
        rc = ssmd_err_set(err, SSMD_EFORMAT, "%s: model.merges is not an array", path);
        goto cleanup;
    }
    size_t size = table_size(json_array_size(merges));
    b->merge_mask = size - 1;
    b->merge_key = xrealloc(NULL, size * sizeof *b->merge_key);
    b->merge_rank = xrealloc(NULL, size * sizeof *b->merge_rank);
    b->merge_new = xrealloc(NULL, size * sizeof *b->merge_new);
    memset(b->merge_key, 0xFF, size * sizeof *b->merge_key);
    for (size_t k = 0; k < json_array_size(merges) && rc == SSMD_OK; k++) {
        const json_t *m = json_array_get(merges, k);
        if (json_is_string(m)) { /* "left right" */
            const char *s = json_string_value(m);
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                rc = ssmd_err_set(err, SSMD_EFORMAT,
                                  "%s: model.merges[%zu] is not two tokens split by one space",
                                  path, k);
                break;
            }
            rc = add_merge(b, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), k, path, err);
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            const json_t *l = json_array_get(m, 0), *r = json_array_get(m, 1);
            rc = add_merge(b, json_string_value(l), json_string_length(l), json_string_value(r),
                           json_string_length(r), k, path, err);
        } else {
            rc = ssmd_err_set(err, SSMD_EFORMAT,
                              "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", path, k);
        }
    }
cleanup:
    json_decref((json_t *)merges);
    return rc;
}

/* ---- load / free ------------------------------------------------------------ */

/* Whether an optional field is absent, null, or equal to the given default. */
static int is_unset_string(const json_t *v)
{
    return !v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0);
}

int eng_bpe_load(eng_bpe *b, const json_t *model, const char *path, ssmd_err *err)
{
    memset(b, 0, sizeof *b);
    b->unk_id = -1;
    int rc;
    if (!json_is_object(model))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: no \"model\" object", path);
    const json_t *type = json_object_get(model, "type");
    if (type && !json_is_string(type))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: model.type is not a string", path);
    /* Older files omit "type"; a BPE model is then recognized by its merges. */
    if (type ? strcmp(json_string_value(type), "BPE") != 0 : !json_object_get(model, "merges"))
        return ssmd_err_set(err, SSMD_EUNSUPPORTED,
                            "%s: tokenizer model type \"%s\" is not supported (only \"BPE\")",
                            path, type ? json_string_value(type) : "?");
    const json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0))
        return ssmd_err_set(err, SSMD_EUNSUPPORTED, "%s: BPE dropout is not supported", path);
    const json_t *pre = json_object_get(model, "continuing_subword_prefix");
    const json_t *suf = json_object_get(model, "end_of_word_suffix");
    if (!is_unset_string(pre) && !json_is_string(pre))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: model.continuing_subword_prefix is not a string",
                            path);
    if (!is_unset_string(suf) && !json_is_string(suf))
        return ssmd_err_set(err, SSMD_EFORMAT, "%s: model.end_of_word_suffix is not a string", path);
    if (!is_unset_string(pre)) {
        b->prefix_len = json_string_length(pre);
        b->prefix = xrealloc(NULL, b->prefix_len + 1);
        memcpy(b->prefix, json_string_value(pre), b->prefix_len + 1);
    }
    if (!is_unset_string(suf)) {
        b->suffix_len = json_string_length(suf);
        b->suffix = xrealloc(NULL, b->suffix_len + 1);
        memcpy(b->suffix, json_string_value(suf), b->suffix_len + 1);
    }
    b->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    b->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    b->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));

    rc = load_vocab(b, json_object_get(model, "vocab"), path, err);
    if (rc != SSMD_OK)
        goto fail;
    rc = load_merges(b, json_object_get(model, "merges"), path, err);
    if (rc != SSMD_OK)
        goto fail;
    const json_t *unk = json_object_get(model, "unk_token");
    if (json_is_string(unk))
        b->unk_id = eng_bpe_token_id(b, json_string_value(unk), json_string_length(unk));
    for (unsigned x = 0; x < 256; x++) {
        unsigned char u[4];
        size_t n = eng_utf8_encode(eng_bpe_byte_to_cp(x), u);
        b->byte_id[x] = eng_bpe_token_id(b, (const char *)u, n);
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", x);
        b->fallback_id[x] = eng_bpe_token_id(b, hex, 6);
    }
    eng_bpe_find_cuts(b);
    return SSMD_OK;
fail:
    eng_bpe_free(b);
    return rc;
}

void eng_bpe_free(eng_bpe *b)
{
    free(b->pool);
    free(b->tok_off);
    free(b->tok_len);
    free(b->str_slot);
    free(b->merge_key);
    free(b->merge_rank);
    free(b->merge_new);
    free(b->join_key);
    free(b->prefix);
    free(b->suffix);
    memset(b, 0, sizeof *b);
    b->unk_id = -1;
}

/* ---- the merge loop ----------------------------------------------------------- */

typedef struct bpe_sym {
    int32_t id;
    int32_t prev, next; /* neighbours among live symbols, -1 at the ends */
    int32_t live;       /* 0 once merged into its left neighbour */
} bpe_sym;

typedef struct bpe_cand {
    uint32_t rank;
    int32_t pos;    /* index of the left symbol */
    int32_t new_id; /* what the pair merges into */
} bpe_cand;

static int cand_less(const bpe_cand *x, const bpe_cand *y)
{
    return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos;
}

static void heap_push(eng_bpe_scratch *s, size_t *n, bpe_cand c)
{
    if (*n == s->heap_cap) {
        s->heap_cap = s->heap_cap ? 2 * s->heap_cap : 64;
        s->heap = xrealloc(s->heap, s->heap_cap * sizeof(bpe_cand));
    }
    bpe_cand *h = s->heap;
    size_t i = (*n)++;
    while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

/* Pops the smallest candidate.  The hole left at the top goes down to a
 * leaf along the smaller children (one comparison a level), then the last
 * element climbs from there: on big words (a text no pre-tokenizer splits)
 * this halves the comparisons of the textbook sift-down. */
static bpe_cand heap_pop(eng_bpe_scratch *s, size_t *n)
{
    bpe_cand *h = s->heap;
    bpe_cand top = h[0], last = h[--*n];
    if (*n == 0)
        return top;
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c]))
            c++;
        h[i] = h[c];
        i = c;
    }
    while (i > 0 && cand_less(&last, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = last;
    return top;
}

/* Looks up the pair (a, b); returns 1 and fills rank/new_id when it merges. */
static int merge_find(const eng_bpe *b, int32_t l, int32_t r, uint32_t *rank, int32_t *new_id)
{
    if (b->n_merges == 0)
        return 0;
    size_t i = merge_slot(b, (uint64_t)l << 32 | (uint32_t)r);
    if (b->merge_key[i] == UINT64_MAX)
        return 0;
    *rank = b->merge_rank[i];
    *new_id = b->merge_new[i];
    return 1;
}

static void push_pair(const eng_bpe *b, eng_bpe_scratch *s, size_t *nh, const bpe_sym *sym,
                      int32_t pos)
{
    uint32_t rank;
    int32_t new_id;
    if (merge_find(b, sym[pos].id, sym[sym[pos].next].id, &rank, &new_id))
        heap_push(s, nh, (bpe_cand){rank, pos, new_id});
}

static bpe_sym *sym_room(eng_bpe_scratch *s, size_t n)
{
    if (s->sym_cap < n) {
        s->sym_cap = n;
        s->sym = xrealloc(s->sym, n * sizeof(bpe_sym));
    }
    return s->sym;
}

/* Runs the merges over the ns symbols at sym and appends the result. */
static void merge_piece(const eng_bpe *b, eng_bpe_scratch *s, bpe_sym *sym, int32_t ns,
                        eng_idvec *out)
{
    for (int32_t i = 0; i < ns; i++)
        sym[i] = (bpe_sym){sym[i].id, i - 1, i + 1, 1};
    sym[ns - 1].next = -1;
    size_t nh = 0;
    for (int32_t i = 0; i + 1 < ns; i++)
        push_pair(b, s, &nh, sym, i);
    while (nh > 0) {
        bpe_cand top = heap_pop(s, &nh);
        bpe_sym *left = &sym[top.pos];
        if (!left->live || left->next < 0)
            continue;
        uint32_t rank;
        int32_t new_id;
        /* stale: the pair at pos changed since this candidate was pushed */
        if (!merge_find(b, left->id, sym[left->next].id, &rank, &new_id) || new_id != top.new_id)
            continue;
        bpe_sym *right = &sym[left->next];
        left->id = top.new_id;
        left->next = right->next;
        right->live = 0;
        if (left->next >= 0)
            sym[left->next].prev = top.pos;
        if (left->prev >= 0)
            push_pair(b, s, &nh, sym, left->prev);
        if (left->next >= 0)
            push_pair(b, s, &nh, sym, top.pos);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next)
        eng_idvec_push(out, sym[i].id);
}

/* Merges the ns symbols in s->sym piece by piece, cutting wherever no token
 * can span the boundary (bpe_cuts.c): the result is the whole word's. */
static void merge_all(const eng_bpe *b, eng_bpe_scratch *s, int32_t ns, eng_idvec *out)
{
    bpe_sym *sym = s->sym;
    int32_t start = 0;
    for (int32_t i = 1; i <= ns; i++)
        if (i == ns || !eng_bpe_may_join(b, sym[i - 1].id, sym[i].id)) {
            merge_piece(b, s, sym + start, i - start, out);
            start = i;
        }
}

void eng_bpe_encode_word(const eng_bpe *b, const unsigned char *word, size_t n,
                         eng_bpe_scratch *s, eng_idvec *out)
{
    if (n == 0)
        return;
    if (b->ignore_merges || b->prefix || b->suffix || b->byte_fallback) {
        /* the options work on the vocab's spelling of the word */
        if (s->mapped_cap < 2 * n) {
            s->mapped_cap = 2 * n;
            s->mapped = xrealloc(s->mapped, s->mapped_cap);
        }
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            m += eng_utf8_encode(eng_bpe_byte_to_cp(word[i]), (unsigned char *)s->mapped + m);
        eng_bpe_encode_chars(b, s->mapped, m, s, out);
        return;
    }
    bpe_sym *sym = sym_room(s, n);
    int32_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = b->byte_id[word[i]];
        if (id < 0) { /* a byte the vocab lacks: unk, or dropped when there is none */
            if (b->unk_id < 0)
                continue;
            if (b->fuse_unk && ns > 0 && sym[ns - 1].id == b->unk_id)
                continue;
            id = b->unk_id;
        }
        sym[ns++].id = id;
    }
    merge_all(b, s, ns, out);
}

/* Id of one starting symbol: the character c (cn bytes) with the prefix
 * when it is not the first and the suffix when it is the last; the spelling
 * is left in s->sym_str (*len bytes) for byte fallback. */
static int32_t symbol_id(const eng_bpe *b, const char *c, size_t cn, int first, int last,
                         eng_bpe_scratch *s, size_t *len)
{
    size_t need = cn + b->prefix_len + b->suffix_len, o = 0;
    if (s->sym_str_cap < need) {
        s->sym_str_cap = 2 * need;
        s->sym_str = xrealloc(s->sym_str, s->sym_str_cap);
    }
    if (!first && b->prefix) {
        memcpy(s->sym_str, b->prefix, b->prefix_len);
        o = b->prefix_len;
    }
    memcpy(s->sym_str + o, c, cn);
    o += cn;
    if (last && b->suffix) {
        memcpy(s->sym_str + o, b->suffix, b->suffix_len);
        o += b->suffix_len;
    }
    *len = o;
    return eng_bpe_token_id(b, s->sym_str, o);
}

void eng_bpe_encode_chars(const eng_bpe *b, const char *word, size_t n, eng_bpe_scratch *s,
                          eng_idvec *out)
{
    if (n == 0)
        return;
    if (b->ignore_merges) {
        int32_t id = eng_bpe_token_id(b, word, n);
        if (id >= 0) {
            eng_idvec_push(out, id);
            return;
        }
    }
    /* a character gives at most two symbols (a pending unknown and itself),
     * or its bytes with the prefix and suffix under byte fallback */
    bpe_sym *sym = sym_room(s, n * (2 + b->prefix_len + b->suffix_len) + 1);
    int32_t ns = 0;
    int unk_pending = 0; /* tokenizers adds an unknown run when it ends */
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t cn = eng_utf8_decode_valid((const unsigned char *)word + i, &cp), len;
        int32_t id = symbol_id(b, word + i, cn, i == 0, i + cn == n, s, &len);
        i += cn;
        if (id >= 0) {
            if (unk_pending)
                sym[ns++].id = b->unk_id;
            unk_pending = 0;
            sym[ns++].id = id;
            continue;
        }
        if (b->byte_fallback) {
            size_t k = 0;
            while (k < len && b->fallback_id[(unsigned char)s->sym_str[k]] >= 0)
                k++;
            if (k == len) { /* (a pending unknown run stays pending, as in tokenizers) */
                for (k = 0; k < len; k++)
                    sym[ns++].id = b->fallback_id[(unsigned char)s->sym_str[k]];
                continue;
            }
        }
        if (b->unk_id < 0)
            continue;
        if (unk_pending && !b->fuse_unk)
            sym[ns++].id = b->unk_id;
        unk_pending = 1;
    }
    if (unk_pending)
        sym[ns++].id = b->unk_id;
    merge_all(b, s, ns, out);
}

void eng_bpe_scratch_free(eng_bpe_scratch *s)
{
    free(s->sym);
    free(s->heap);
    free(s->mapped);
    free(s->sym_str);
    memset(s, 0, sizeof *s);
}
