#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/buf.h"
#include "detmath.h"

double eng_log_softmax(const float *logits, int n_vocab, int tok, float *out)
{
    float mx = logits[0];
    for (int i = 1; i < n_vocab; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    enum { PIECE = 512 }; /* the exponentials a piece at a time, 8 per instruction */
    float e[PIECE];
    for (int i0 = 0; i0 < n_vocab; i0 += PIECE) {
        const int len = n_vocab - i0 < PIECE ? n_vocab - i0 : PIECE;
        for (int i = 0; i < len; i++)
            e[i] = logits[i0 + i] - mx;
        qk_expf_array(e, e, (size_t)len);
        for (int i = 0; i < len; i++)
            sum += e[i];
    }
    const double lse = qk_log(sum);
    if (out)
        for (int i = 0; i < n_vocab; i++)
            out[i] = (float)((double)(logits[i] - mx) - lse);
    return (double)mx + lse - (double)logits[tok];
}

void eng_ppl_add(eng_ppl_acc *a, double nll)
{
    a->sum_nll += nll;
    a->sum_nll2 += nll * nll;
    a->count++;
}

double eng_ppl_value(const eng_ppl_acc *a) { return a->count ? qk_exp(a->sum_nll / (double)a->count) : NAN; }

double eng_ppl_stderr(const eng_ppl_acc *a)
{
    if (a->count < 2)
        return NAN;
    const double n = (double)a->count, mean = a->sum_nll / n;
    const double var = a->sum_nll2 / n - mean * mean;
    return var > 0 ? sqrt(var / (n - 1)) * qk_exp(mean) : 0.0;
}

int eng_kld_add(eng_kld_acc *a, const float *ref_logp, const float *cand_logits, int n_vocab,
                int tok, float *scratch, qk_err *err)
{
    float *k = qk_grow(a->kld, &a->cap, a->count + 1, sizeof *k);
    if (!k)
        return qk_err_set(err, QK_ENOMEM, "out of memory for KL-divergence values");
    a->kld = k;
    const double nll = eng_log_softmax(cand_logits, n_vocab, tok, scratch);
    const double nll_ref = -(double)ref_logp[tok];
    double kld = 0.0;
    int top = 0, top_ref = 0;
    for (int i = 0; i < n_vocab; i++) {
        const double lp = ref_logp[i];
        kld += qk_exp(lp) * (lp - (double)scratch[i]);
        top = scratch[i] > scratch[top] ? i : top;
        top_ref = ref_logp[i] > ref_logp[top_ref] ? i : top_ref;
    }
    eng_ppl_add(&a->ppl, nll);
    eng_ppl_add(&a->ref, nll_ref);
    a->sum_nll_nll_ref += nll * nll_ref;
    a->sum_kld += kld;
    a->sum_kld2 += kld * kld;
    const double dp = qk_exp(-nll) - qk_exp(-nll_ref);
    a->sum_dp += dp;
    a->sum_dp2 += dp * dp;
    a->sum_dp4 += dp * dp * dp * dp;
    a->same_top += top == top_ref;
    a->kld[a->count++] = (float)kld;
    return QK_OK;
}

static int cmp_float(const void *x, const void *y)
{
    const float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

/* Linear interpolation between order statistics, as llama-perplexity's percentile(). */
static double percentile(const float *v, size_t n, double frac)
{
    const double p = frac * (double)(n - 1);
    const size_t i = (size_t)p;
    const double w = p - (double)i;
    return (1 - w) * v[i] + w * v[i + 1 < n ? i + 1 : n - 1];
}

static void mean_unc(double sum, double sum2, size_t count, double *mean, double *unc)
{
    const double n = (double)count;
    *mean = sum / n;
    const double var = sum2 / n - *mean * *mean;
    *unc = count > 1 && var > 0 ? sqrt(var / (n - 1)) : 0.0;
}

void eng_kld_summarize(eng_kld_acc *a, eng_kld_summary *s)
{
    memset(s, 0, sizeof *s);
    s->count = a->count;
    if (a->count < 2)
        return;
    const double n = (double)a->count;
    s->ppl = eng_ppl_value(&a->ppl);
    s->ppl_stderr = eng_ppl_stderr(&a->ppl);
    /* ln(PPL_q/PPL_ref) = mean(nll - nll_ref); its uncertainty uses the covariance of the two. */
    const double mq = a->ppl.sum_nll / n, mr = a->ref.sum_nll / n;
    const double vq = a->ppl.sum_nll2 / n - mq * mq, vr = a->ref.sum_nll2 / n - mr * mr;
    const double cov = a->sum_nll_nll_ref / n - mq * mr;
    s->ppl_ratio = qk_exp(mq - mr);
    const double var_log_ratio = (vq + vr - 2 * cov) / (n - 1);
    s->ppl_ratio_stderr = var_log_ratio > 0 ? s->ppl_ratio * sqrt(var_log_ratio) : 0.0;
    mean_unc(a->sum_kld, a->sum_kld2, a->count, &s->kld_mean, &s->kld_mean_stderr);
    qsort(a->kld, a->count, sizeof(float), cmp_float);
    const size_t c = a->count;
    s->kld_median = c % 2 ? a->kld[c / 2] : 0.5 * (a->kld[c / 2] + a->kld[c / 2 - 1]);
    s->kld_p99 = percentile(a->kld, c, 0.99);
    s->kld_max = a->kld[c - 1];
    const double top = (double)a->same_top / n;
    s->top1 = 100.0 * top;
    s->top1_stderr = 100.0 * sqrt(top * (1 - top) / (n - 1));
    double mse, mse_unc;
    mean_unc(a->sum_dp2, a->sum_dp4, a->count, &mse, &mse_unc);
    s->rms_dp = 100.0 * sqrt(mse);
    s->rms_dp_stderr = mse > 0 ? 100.0 * 0.5 / sqrt(mse) * mse_unc : 0.0;
}

void eng_kld_free(eng_kld_acc *a)
{
    if (!a)
        return;
    free(a->kld);
    memset(a, 0, sizeof *a);
}
