/* eval_model.h — a model opened for evaluation: a GGUF file or a Hugging Face folder as an engine
 * model and its tokenizer, for perplexity, verify, imatrix and later calibration passes.
 *
 * Contract: the eng_model borrows its weights from the GGUF mapping or the converter's plan, both
 * owned here; everything lives until cv_eval_close(). Tensors carry their GGUF names either way,
 * so statistics collected from an HF folder match the GGUF file `quantize` reads. */
#ifndef QKIT_CONVERT_EVAL_MODEL_H
#define QKIT_CONVERT_EVAL_MODEL_H

#include "../calib/engine.h"
#include "../calib/metrics.h"
#include "../calib/perplexity.h"
#include "../calib/tokenizer.h"
#include "../formats/gguf.h"
#include "convert.h"

typedef struct {
    const char *path; /* borrowed from the caller */
    gguf_ctx *g;      /* a GGUF file, or */
    cv_plan *plan;    /* a HuggingFace folder read through the converter's plan */
    eng_model m;
    tok_vocab *vocab;
} cv_eval_model;

/* path is a GGUF file (any part of a split model) or a HuggingFace folder. Returns a qk status;
 * the message names the file. On failure *em is left closed. */
int cv_eval_open(cv_eval_model *em, const char *path, qk_err *err);
/* A fingerprint of the model's files (every GGUF part, or the folder's safetensors files): the
 * identity statistics collected on it record (imatrix parts from another model are refused). */
int cv_eval_fingerprint(const cv_eval_model *em, uint64_t *id, qk_err *err);

/* verify in one call: every candidate model file against the reference on text (chunks of n_ctx
 * tokens, at most max_chunks; 0: all), one engine pass per chunk and model; out[n_cands]. */
int cv_verify_models(const char *ref, const char *const *cands, int n_cands, const char *text,
                     int n_ctx, int max_chunks, eng_kld_summary *out, eng_chunk_cb cb, void *user,
                     qk_err *err);

/* Accepts a zeroed or closed em. */
void cv_eval_close(cv_eval_model *em);

#endif
