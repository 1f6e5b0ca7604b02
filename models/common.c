/* common.c - see common.h. */
#include "models/common.h"

void mdl_logits(bk_backend *bk, const bk_matrix *lm_head, const float *bias, const float *xn,
                int d_model, int rows, int first, float *scratch, int scratch_rows, float *dst)
{
    const int V = lm_head->rows;
    for (int r = first; r < rows; r += scratch_rows) {
        int n = rows - r < scratch_rows ? rows - r : scratch_rows;
        bk->matmul(bk, lm_head, xn + (size_t)r * d_model, d_model, n, scratch, V, bias);
        bk->read(bk, dst + (size_t)(r - first) * V, scratch, (size_t)n * V * sizeof(float));
    }
}

void mdl_release_all(bk_backend *bk, void *const *ptrs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ptrs[i])
            bk->release(bk, ptrs[i]);
}

void mdl_release_embed_head(bk_backend *bk, bk_matrix *embed, bk_matrix *lm_head)
{
    if (lm_head->data && lm_head->data != embed->data)
        bk->matrix_release(bk, lm_head);
    if (embed->data)
        bk->matrix_release(bk, embed);
}
