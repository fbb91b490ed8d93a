/* perplexity.h — llama-perplexity's method and the KL-divergence comparison, chunk by chunk.
 *
 * Method (as llama.cpp): the token stream is cut into chunks of n_ctx tokens; the first token of
 * each chunk is replaced by BOS (when the vocabulary adds one); each chunk runs from position 0;
 * positions n_ctx/2 … n_ctx-2 are scored against the next token; PPL = exp(mean NLL).
 *
 * Contract: nothing but one chunk's logits per model is held in memory; per-chunk callbacks
 * let the caller print running values. Candidates and reference see identical tokens. */
#ifndef QKIT_CALIB_PERPLEXITY_H
#define QKIT_CALIB_PERPLEXITY_H

#include <stddef.h>
#include <stdint.h>

#include "../formats/logits.h"
#include "engine.h"
#include "metrics.h"
#include "tokenizer.h"

/* Reads a whole text file and tokenizes it as llama-perplexity and llama-imatrix do (BOS first
 * when the vocabulary adds one, special-token text kept as text). An empty file is QK_EFORMAT;
 * messages start with the path. */
int eng_tokenize_text_file(const tok_vocab *v, const char *path, tok_ids *ids, qk_err *err);

typedef struct {
    int n_ctx;
    int max_chunks; /* 0: all */
    int bos;        /* BOS id, or -1 to keep the first token */
} eng_ppl_opts;

/* Chunks the text allows (checks n_ctx against the model and the token count). */
int eng_ppl_plan(const eng_model *m, size_t n_tokens, const eng_ppl_opts *o, int *n_chunks, qk_err *err);

typedef void (*eng_chunk_cb)(void *user, int chunk, int n_chunks);

int eng_perplexity(const eng_model *m, const int32_t *tokens, size_t n_tokens, const eng_ppl_opts *o,
                   eng_ppl_acc *acc, eng_chunk_cb cb, void *user, qk_err *err);

/* The reference is a model (ref != NULL) or a saved logits file (ref_logits != NULL). save, when
 * non-NULL, receives the reference's log-probabilities. accs[i] collects candidate i;
 * ref_acc the reference's own perplexity. */
typedef struct {
    const eng_model *ref;
    lg_reader *ref_logits;
    lg_writer *save;
    const eng_model *const *cands;
    int n_cands;
} eng_verify_models;

int eng_verify(const eng_verify_models *vm, const int32_t *tokens, size_t n_tokens,
               const eng_ppl_opts *o, eng_ppl_acc *ref_acc, eng_kld_acc *accs, eng_chunk_cb cb,
               void *user, qk_err *err);

/* KL-divergence probes: the model's log-probabilities on the scored positions of the text's
 * chunks (as verify scores them) are computed once at creation; each run then evaluates the
 * model as it is at that moment (the caller may swap weights in between) and returns its mean
 * KLD against them. The probe borrows m and tokens until freed. Memory: the reference holds
 * chunks x (n_ctx/2) x n_vocab floats. */
typedef struct eng_kld_probe eng_kld_probe;
int eng_kld_probe_create(eng_kld_probe **out, eng_model *m, const int32_t *tokens, size_t n_tokens,
                         const eng_ppl_opts *o, qk_err *err);
int eng_kld_probe_run(eng_kld_probe *p, double *mean_kld, qk_err *err);
/* The same when only blocks from `layer` on (n_layer: only the head; -1: the embeddings too)
 * changed: the reference's hidden states before that block are reused (kept when they fit in
 * 1 GiB), so a probe of block l costs n_layer − l blocks instead of all — bit for bit the
 * result of eng_kld_probe_run. */
int eng_kld_probe_run_from(eng_kld_probe *p, int layer, double *mean_kld, qk_err *err);
int eng_kld_probe_chunks(const eng_kld_probe *p);
void eng_kld_probe_free(eng_kld_probe *p); /* accepts NULL */

#endif
