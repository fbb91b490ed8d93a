/* metrics.h — perplexity and KL-divergence statistics over scored tokens, computed the way
 * llama-perplexity does (NLL from a log-softmax with a double sum; PPL = exp(mean NLL); the same
 * uncertainty formulas), but from exact log-probabilities rather than 16-bit ones.
 *
 * Contract: accumulators grow by one scored token at a time; only per-token scalars are kept
 * (for the median and percentiles), never whole logit rows. */
#ifndef QKIT_CALIB_METRICS_H
#define QKIT_CALIB_METRICS_H

#include <stddef.h>

#include "../quant/status.h"

/* log-softmax of logits[n_vocab] into out (may be NULL); returns -log p(tok). */
double eng_log_softmax(const float *logits, int n_vocab, int tok, float *out);

typedef struct {
    double sum_nll, sum_nll2;
    size_t count;
} eng_ppl_acc;

void eng_ppl_add(eng_ppl_acc *a, double nll);
double eng_ppl_value(const eng_ppl_acc *a);
double eng_ppl_stderr(const eng_ppl_acc *a); /* of the PPL, as llama-perplexity prints it */

typedef struct {
    eng_ppl_acc ppl, ref;     /* candidate and reference NLL */
    double sum_nll_nll_ref;
    double sum_kld, sum_kld2, sum_dp, sum_dp2, sum_dp4;
    size_t same_top, count;
    float *kld;               /* one per scored token */
    size_t cap;
} eng_kld_acc;

/* ref_logp: the reference's log-softmax row; cand_logits: the candidate's raw logits. */
int eng_kld_add(eng_kld_acc *a, const float *ref_logp, const float *cand_logits, int n_vocab,
                int tok, float *scratch /* [n_vocab] */, qk_err *err);

typedef struct {
    double ppl, ppl_stderr, ppl_ratio, ppl_ratio_stderr;
    double kld_mean, kld_mean_stderr, kld_median, kld_p99, kld_max;
    double top1, top1_stderr; /* percent */
    double rms_dp, rms_dp_stderr; /* percent */
    size_t count;
} eng_kld_summary;

/* Sorts the per-token values in place. */
void eng_kld_summarize(eng_kld_acc *a, eng_kld_summary *s);
void eng_kld_free(eng_kld_acc *a);

#endif
