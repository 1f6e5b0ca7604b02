/* sequence.c - one generated sequence (see sequence.h): the step that turns
 * a row of logits into a token, its text and maybe a finish reason.
 *
 * Must never run the model, touch a state slot or decide where text goes:
 * that is the scheduler's or `ssmd generate`'s business.
 */
#include "engine/sequence.h"

#include <assert.h>
#include <string.h>

#include "engine/xalloc.h"

int eng_seq_init(eng_seq *q, const eng_seq_params *p, ssmd_err *err)
{
    memset(q, 0, sizeof *q);
    if ((p->sampling->json_object || p->sampling->json_schema) && !p->tok)
        return ssmd_err_set(err, SSMD_EINVAL,
                            "response_format json_object / json_schema needs the model's tokenizer, and this model "
                            "has none");
    int rc = eng_sampler_init(&q->sampler, p->sampling, p->n_vocab, err);
    if (rc != SSMD_OK)
        return rc;
    rc = eng_stop_init(&q->stop, p->stops, p->n_stop, err);
    if (rc != SSMD_OK) {
        eng_sampler_close(&q->sampler);
        return rc;
    }
    q->tok = p->tok;
    if (q->tok)
        eng_detok_init(&q->detok, q->tok, 1);
    q->max_tokens = p->max_tokens;
    q->eos_id = p->eos_id;
    if (p->sampling->json_object || p->sampling->json_schema) {
        q->json = 1;
        eng_json_rule_init(&q->json_rule, p->sampling->json_schema);
        eng_json_vocab_init(&q->json_vocab, p->tok, p->n_vocab);
    }
    return SSMD_OK;
}

void eng_seq_close(eng_seq *q)
{
    eng_sampler_close(&q->sampler);
    if (q->json_vocab.plain)
        eng_json_vocab_free(&q->json_vocab);
    free(q->history);
    q->history = NULL;
    q->n_history = q->cap = 0;
}

void eng_seq_push_history(eng_seq *q, const int32_t *ids, int n)
{
    if (q->n_history + n > q->cap) {
        while (q->n_history + n > q->cap)
            q->cap = q->cap ? 2 * q->cap : 64;
        q->history = xrealloc(q->history, (size_t)q->cap * sizeof *q->history);
    }
    memcpy(q->history + q->n_history, ids, (size_t)n * sizeof *ids);
    q->n_history += n;
}

/* Feeds detokenized text through the stop matcher into q->text. */
static void seq_feed_text(eng_seq *q, const char *piece, size_t len)
{
    while (len && !q->stop.stopped) {
        size_t n = len < ENG_DETOK_PIECE_MAX ? len : ENG_DETOK_PIECE_MAX;
        /* eng_stop_feed writes up to n + ENG_STOP_LEN_MAX bytes */
        assert(q->text_len + n + ENG_STOP_LEN_MAX < sizeof q->text);
        q->text_len += eng_stop_feed(&q->stop, piece, n, q->text + q->text_len);
        piece += n;
        len -= n;
    }
    q->text[q->text_len] = '\0';
}

eng_finish eng_seq_next(eng_seq *q, float *logits, eng_logprobs *lp)
{
    if (q->sampler.params.logprobs <= 0)
        lp = NULL;
    /* a vocabulary that cannot go on leaves the logits free (then the take
     * below fails and the constraint ends: the text is what the model says) */
    if (q->json)
        eng_json_mask(&q->json_rule, q->tok, &q->json_vocab, logits);
    int32_t tok = eng_sampler_sample(&q->sampler, logits, q->history, q->n_history, lp);
    if (q->json && !eng_json_take(&q->json_rule, q->tok, tok))
        q->json = 0;
    q->last = tok;
    q->n_gen++;
    eng_seq_push_history(q, &tok, 1);
    q->text_len = 0;
    q->text[0] = '\0';
    /* EOS ends the sequence without text of its own */
    if (tok == q->eos_id)
        return ENG_FINISH_STOP;
    if (q->tok) {
        char piece[ENG_DETOK_PIECE_MAX];
        int n = eng_detok_push(&q->detok, tok, piece, sizeof piece);
        if (n > 0)
            seq_feed_text(q, piece, (size_t)n);
        if (q->stop.stopped)
            return ENG_FINISH_STOP;
    }
    if (q->json && eng_json_rule_complete(&q->json_rule))
        return ENG_FINISH_STOP;
    return q->n_gen >= q->max_tokens ? ENG_FINISH_LENGTH : ENG_FINISH_NONE;
}

void eng_seq_finish(eng_seq *q)
{
    q->text_len = 0;
    q->text[0] = '\0';
    if (!q->tok || q->stop.stopped)
        return;
    char piece[ENG_DETOK_PIECE_MAX];
    int n = eng_detok_flush(&q->detok, piece, sizeof piece);
    if (n > 0)
        seq_feed_text(q, piece, (size_t)n);
    if (!q->stop.stopped) {
        assert(q->text_len + ENG_STOP_LEN_MAX < sizeof q->text);
        q->text_len += eng_stop_flush(&q->stop, q->text + q->text_len);
        q->text[q->text_len] = '\0';
    }
}
