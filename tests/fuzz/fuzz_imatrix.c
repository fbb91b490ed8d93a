/* fuzz_imatrix.c — the importance matrix readers (legacy .dat and GGUF with qkit's exact sums) on
 * arbitrary bytes: they must refuse cleanly or hand out entries whose every value is readable,
 * finite and not negative. What loads is then merged into the statistics of a small made-up
 * model (names, shapes, the legacy spread over experts, fixed-point overflow) and summarized. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../calib/imatrix.h"
#include "../../formats/imatrix.h"
#include "../../quant/types.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* blk.0 of a model with a dense attn_q [4 columns] and a 2-expert ffn_down_exps [3 columns]. */
static float g_weights[64];

static void fake_model(eng_model *m, eng_layer *L)
{
    memset(m, 0, sizeof *m);
    memset(L, 0, sizeof *L);
    L->w[GA_T_ATTN_Q] = (eng_tensor){"blk.0.attn_q.weight", Q_TYPE_F32, 4, 4, 1, g_weights};
    L->w[GA_T_FFN_DOWN_EXPS] = (eng_tensor){"blk.0.ffn_down_exps.weight", Q_TYPE_F32, 3, 2, 2, g_weights};
    L->moe = 1;
    m->n_layer = 1;
    m->n_expert = 2;
    m->layers = L;
}

static void check_entries(const imx_file *f)
{
    for (size_t i = 0; i < imx_count(f); i++) {
        const imx_entry *e = imx_entry_at(f, i);
        if (!e || !e->name || e->n_per_mat < 1 || e->n_mat < 1 || e->n_unseen < 0 || e->n_unseen > e->n_mat)
            abort();
        for (int64_t j = 0; j < e->n_per_mat * e->n_mat; j++)
            if (!isfinite(e->values[j]) || e->values[j] < 0 || !isfinite(e->stored[j]) || e->stored[j] < 0)
                abort();
        for (int64_t j = 0; e->counts && j < e->n_mat; j++)
            if (!(e->counts[j] >= 0))
                abort();
        for (int64_t j = 0; e->exact && j < e->n_mat; j++)
            if (e->exact_counts[j] < 0 || (float)e->exact_counts[j] != e->counts[j])
                abort();
        if (imx_find(f, e->name) != e)
            abort();
    }
    for (size_t i = 0; i < imx_n_datasets(f); i++)
        if (!imx_dataset(f, i))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    imx_file *f = NULL;
    qk_err err;
    if (imx_load_mem(&f, data, size, "fuzz", &err) != QK_OK) {
        if (f)
            abort();
        return 0;
    }
    check_entries(f);
    eng_model m;
    eng_layer L;
    fake_model(&m, &L);
    eng_imatrix *im = NULL;
    if (eng_imatrix_create(&im, &m, NULL, &err) == QK_OK) {
        if (imx_format_of(f) == IMX_LEGACY)
            eng_imatrix_set_chunk_size(im, 512, &err);
        if (eng_imatrix_add_file(im, f, "fuzz", &err) == QK_OK) {
            eng_imatrix_summary *s = NULL;
            size_t n = 0;
            int64_t unrouted, total;
            if (eng_imatrix_summarize(im, &s, &n, &err) == QK_OK)
                for (size_t i = 0; i < n; i++)
                    if (!(s[i].frac50 >= 0 && s[i].frac50 <= 1) || s[i].n_unseen < 0)
                        abort();
            free(s);
            eng_imatrix_unrouted(im, &unrouted, &total);
            if (unrouted < 0 || unrouted > total)
                abort();
        }
        eng_imatrix_free(im);
    }
    imx_free(f);
    return 0;
}
