/* engine.h — qkit's reference engine: a batched CPU forward pass of Llama-family models.
 *
 * Contract: the model struct borrows its weights (memory-mapped GGUF data, never copied); the
 * engine only owns small F32 copies of 1-D vectors (norms, biases, rope factors). eng_forward()
 * runs a whole sequence from position 0 (a perplexity chunk) and writes logits for every position.
 * Matrix products quantize activations to the weight type's dot partner (q8_K, q8_0 …) as ggml
 * does, so figures track llama.cpp. Results do not depend on the thread count. */
#ifndef QKIT_CALIB_ENGINE_H
#define QKIT_CALIB_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"

typedef enum { ENG_ARCH_LLAMA, ENG_ARCH_QWEN2, ENG_ARCH_QWEN3 } eng_arch;

/* A 2-D weight: ne1 rows of ne0 values of a ggml type (1-D tensors have ne1 == 1). */
typedef struct {
    const char *name;
    int type;
    int64_t ne0, ne1;
    const void *data;
} eng_tensor;

typedef struct {
    eng_tensor wq, wk, wv, wo, ffn_gate, ffn_up, ffn_down;
    float *attn_norm, *ffn_norm;  /* [n_embd] */
    float *bq, *bk, *bv;          /* Qwen2 biases or NULL */
    float *q_norm, *k_norm;       /* Qwen3 per-head norms [head_dim] or NULL */
} eng_layer;

typedef struct {
    eng_arch arch;
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train, n_rot;
    float rms_eps, rope_base;
    int rope_neox;     /* 1: rotate halves (NeoX, Qwen); 0: adjacent pairs (llama) */
    float *rope_freqs; /* [n_rot/2] frequency divisors (Llama 3) or NULL */
    int bos_id;
    eng_tensor tok_embd, output; /* output == tok_embd when tied */
    float *output_norm;
    eng_layer *layers;
} eng_model;

/* Checks shapes and that every weight type has kernels; message names the tensor. */
int eng_model_validate(const eng_model *m, qk_err *err);

/* Frees the owned F32 vectors and the layer array (not the borrowed weights). Accepts NULL. */
void eng_model_free_owned(eng_model *m);

typedef struct eng_ctx eng_ctx;

/* Scratch for sequences of up to n_ctx tokens. */
int eng_ctx_create(eng_ctx **out, const eng_model *m, int n_ctx, qk_err *err);
void eng_ctx_free(eng_ctx *c);

/* logits [n][n_vocab]. tokens must be < n_vocab (checked). */
int eng_forward(eng_ctx *c, const int32_t *tokens, int n, float *logits, qk_err *err);

#endif
