/* bpe_cuts.c - where a word can be cut before the merge loop without
 * changing its result.
 *
 * The merge loop takes the lowest-ranked pair over the whole word, so a word
 * of a million symbols (a text that no pre-tokenizer splits, as with
 * Metaspace split=false) means a heap of a million candidates that misses the
 * cache at every step.  Yet a merge only ever joins neighbours: if no token
 * of the vocab can span the boundary between two starting symbols a and b,
 * the two sides never interact, and merging each side alone gives the same
 * tokens in the same order (ties between equal ranks are broken leftmost
 * first on both sides alike).
 *
 * Which boundaries can be spanned follows from the merges.  Every token the
 * merges build has one leftmost and one rightmost starting symbol (its
 * "leaves"), found by following "new = left + right" down to tokens that
 * can start a word's symbol list.  The merge (left, right) then spans
 * exactly the boundaries (rightmost leaf of left, leftmost leaf of right).
 * The pairs of all merges form the "join" set; a boundary whose pair is
 * not in it is a safe cut.  A vocab where some token has two different
 * leftmost (or rightmost) leaves - two derivations that disagree - gets no
 * join set, and words are then merged whole, as before.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/text/bpe.h"
#include "engine/text/unicode.h"
#include "engine/xalloc.h"

enum { LEAF_NONE = -1, LEAF_MANY = -2 };

/* Whether token id can be a starting symbol of some word: one byte token,
 * one byte-fallback token, unk, or one character with the optional
 * continuing-subword prefix and end-of-word suffix around it.  Tokens that
 * no merge builds are counted as well, whatever they spell, so that the
 * list errs on the side of too many leaves (which only costs cuts). */
static int can_start(const eng_bpe *b, int32_t id, const uint8_t *built)
{
    if (!built[id] || id == b->unk_id)
        return 1;
    size_t n;
    const char *s = eng_bpe_token_str(b, id, &n);
    if (!s)
        return 0;
    if (b->prefix && n >= b->prefix_len && !memcmp(s, b->prefix, b->prefix_len)) {
        s += b->prefix_len;
        n -= b->prefix_len;
    }
    if (b->suffix && n >= b->suffix_len && !memcmp(s + n - b->suffix_len, b->suffix, b->suffix_len))
        n -= b->suffix_len;
    if (n == 0)
        return 1;
    uint32_t cp;
    return eng_utf8_decode_valid((const unsigned char *)s, &cp) == n ||
           (n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>');
}

static int32_t leaf_join(int32_t have, int32_t add)
{
    if (add == LEAF_NONE || have == add)
        return have;
    if (have == LEAF_NONE)
        return add;
    return LEAF_MANY;
}

/* Follows the merges to a fixed point: a well-formed file ranks each
 * token's merge after its parts', so the first pass settles it and the
 * second confirms; a file in any other order takes a few more. */
static int find_leaves(const eng_bpe *b, int32_t *lleaf, int32_t *rleaf)
{
    size_t slots = b->merge_mask + 1;
    for (int pass = 0; pass < 64; pass++) {
        int changed = 0;
        for (size_t i = 0; i < slots; i++) {
            if (b->merge_key[i] == UINT64_MAX)
                continue;
            int32_t l = (int32_t)(b->merge_key[i] >> 32), r = (int32_t)(uint32_t)b->merge_key[i];
            int32_t t = b->merge_new[i];
            int32_t nl = leaf_join(lleaf[t], lleaf[l]), nr = leaf_join(rleaf[t], rleaf[r]);
            changed |= nl != lleaf[t] || nr != rleaf[t];
            lleaf[t] = nl;
            rleaf[t] = nr;
            if (nl == LEAF_MANY || nr == LEAF_MANY)
                return 0;
        }
        if (!changed)
            return 1;
    }
    return 0; /* a cycle of merges: keep words whole */
}

static size_t join_slot(const eng_bpe *b, uint64_t key)
{
    return eng_bpe_pair_slot(b->join_key, b->join_mask, key);
}

void eng_bpe_find_cuts(eng_bpe *b)
{
    b->join_key = NULL;
    if (b->n_merges == 0 || b->n_ids == 0)
        return;
    size_t n = (size_t)b->n_ids, slots = b->merge_mask + 1;
    uint8_t *built = xrealloc(NULL, n);
    int32_t *lleaf = xrealloc(NULL, n * sizeof *lleaf), *rleaf = xrealloc(NULL, n * sizeof *rleaf);
    memset(built, 0, n);
    for (size_t i = 0; i < slots; i++)
        if (b->merge_key[i] != UINT64_MAX)
            built[b->merge_new[i]] = 1;
    for (int32_t id = 0; id < b->n_ids; id++)
        lleaf[id] = rleaf[id] = can_start(b, id, built) ? id : LEAF_NONE;
    if (find_leaves(b, lleaf, rleaf)) {
        size_t size = 16;
        while (size < 2 * b->n_merges)
            size *= 2;
        b->join_mask = size - 1;
        b->join_key = xrealloc(NULL, size * sizeof *b->join_key);
        memset(b->join_key, 0xFF, size * sizeof *b->join_key);
        for (size_t i = 0; i < slots; i++) {
            if (b->merge_key[i] == UINT64_MAX)
                continue;
            int32_t a = rleaf[b->merge_key[i] >> 32], c = lleaf[(uint32_t)b->merge_key[i]];
            if (a < 0 || c < 0) /* a part no word can build: the merge never fires */
                continue;
            uint64_t key = (uint64_t)a << 32 | (uint32_t)c;
            b->join_key[join_slot(b, key)] = key;
        }
    }
    free(built);
    free(lleaf);
    free(rleaf);
}

int eng_bpe_may_join(const eng_bpe *b, int32_t left, int32_t right)
{
    if (!b->join_key)
        return 1;
    uint64_t key = (uint64_t)left << 32 | (uint32_t)right;
    return b->join_key[join_slot(b, key)] == key;
}
