/* engine.h — qkit's reference engine: a batched CPU forward pass of Llama-family models.
 *
 * Contract: the model struct borrows its weights (memory-mapped GGUF data, never copied); the
 * engine only owns small F32 copies of 1-D vectors (norms, biases, rope factors). eng_forward()
 * runs a whole sequence from position 0 (a perplexity chunk) and writes logits for every position.
 * Matrix products quantize activations to the weight type's dot partner (q8_K, q8_0 …) as ggml
 * does, so figures track llama.cpp. Results do not depend on the thread count. */
#ifndef QKIT_CALIB_ENGINE_H
#define QKIT_CALIB_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../formats/gguf_arch.h"
#include "../quant/status.h"

/* A weight: ne2 matrices (experts; 1 for a plain matrix) of ne1 rows of ne0 values of a ggml type.
 * Expert e's matrix starts at data + e · ne1 · row size. 1-D tensors have ne1 == ne2 == 1. */
typedef struct {
    const char *name;
    int type;
    int64_t ne0, ne1, ne2;
    const void *data;
} eng_tensor;

/* One block's weights by tensor kind (formats/gguf_arch.h): w[k] for matrices (data NULL when
 * the block has none), v[k] for 1-D tensors as owned F32 copies (norms, biases; NULL when absent). */
typedef struct {
    eng_tensor w[GA_T_COUNT];
    float *v[GA_T_COUNT];
    int moe;  /* the feed-forward is a mixture of experts (router and expert tensors) */
    int nope; /* no RoPE in this block (Llama 4's every 4th): full attention, q temperature-scaled */
} eng_layer;

typedef struct {
    const ga_arch *arch;
    ga_hparams hp;     /* the shape rules' inputs (ga_shape), layer_moe included */
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train, n_rot;
    int n_expert, n_expert_used, n_ff_exp;
    int expert_weights_norm; /* renormalize the selected experts' weights to sum 1 */
    ga_gating gating;        /* router probabilities: softmax over all experts, or sigmoid */
    int moe_weight_input;    /* 1: an expert's weight scales its input (Llama 4), 0: its output */
    /* Llama 4 attention (0 when off): */
    int attn_chunk;          /* > 0: RoPE blocks attend only to keys in the query's chunk of
                                attn_chunk positions (key p visible to query t iff
                                p <= t and p >= (t / attn_chunk) * attn_chunk) */
    int qk_rms_norm;         /* RoPE blocks RMS-normalize q and k per head (no weight, eps rms_eps)
                                after RoPE */
    float attn_temp_scale;   /* > 0: NoPE blocks multiply q at position t by
                                log(floor((t + 1) / attn_temp_floor) + 1) * attn_temp_scale + 1 */
    int attn_temp_floor;
    float rms_eps, rope_base;
    int rope_neox;     /* 1: rotate halves (NeoX, Qwen, HF checkpoints); 0: adjacent pairs */
    float *rope_freqs; /* [n_rot/2] frequency divisors (Llama 3) or NULL */
    int bos_id;
    eng_tensor tok_embd, output; /* output == tok_embd when tied */
    float *output_norm;
    eng_layer *layers;
    void **owned;      /* buffers the model owns (tensors materialized by a loader), freed with it */
    size_t n_owned;
} eng_model;

/* Checks shapes and that every weight type has kernels; message names the tensor. */
int eng_model_validate(const eng_model *m, qk_err *err);

/* Frees the owned F32 vectors, owned buffers and the layer array (not the borrowed weights).
 * Accepts NULL. */
void eng_model_free_owned(eng_model *m);

/* The engine tensors that hold the GGUF tensor name: one, two for a tied token embedding
 * (tok_embd and output), or none. For swapping a weight (probes); out[] point into m. */
size_t eng_model_tensors_named(eng_model *m, const char *name, eng_tensor *out[2]);

typedef struct eng_ctx eng_ctx;

/* Scratch for sequences of up to n_ctx tokens. */
int eng_ctx_create(eng_ctx **out, const eng_model *m, int n_ctx, qk_err *err);
void eng_ctx_free(eng_ctx *c);

/* The pieces of eng_forward, for passes that work block by block (AWQ): the token embeddings of
 * a sequence into x [n][n_embd]; blocks [l0, l1) applied to the residual stream x in place (x is
 * block l0's input for positions 0..n-1; the observer sees these blocks' products). */
int eng_embed(eng_ctx *c, const int32_t *tokens, int n, float *x, qk_err *err);
int eng_blocks(eng_ctx *c, float *x, int n, int l0, int l1, qk_err *err);
/* The output norm and head on the residual stream x [n][n_embd]: logits [n][n_vocab]. */
int eng_head(eng_ctx *c, const float *x, int n, float *logits, qk_err *err);

/* y [n][n_out] = x [n][n_in] · w [n_out][n_in]ᵀ in f32 with the engine's kernels and threads
 * (results independent of the thread count). */
void eng_gemm_f32(const float *w, int64_t n_out, int64_t n_in, const float *x, int n, float *y);

/* logits [n][n_vocab]. tokens must be < n_vocab (checked). */
int eng_forward(eng_ctx *c, const int32_t *tokens, int n, float *logits, qk_err *err);

/* Called for every weight matrix product of eng_forward (attention, feed-forward, router, expert
 * and output matrices; not attention's K·q and p·V), in the forward pass's order, with the float
 * input rows x [n][w->ne0] before they are quantized to the weight type's dot partner. w is the
 * weight (w->name its GGUF name); for one expert of a 3-D tensor, w is that expert's 2-D slice
 * (ne2 == 1) and expert its index, else expert is -1. The observer runs on the calling thread
 * outside any parallel region (it may start its own), must not keep x past the call and cannot
 * change results. A mixture-of-experts block calls it once per expert that received tokens,
 * experts in ascending order, its rows the tokens routed to it in ascending position. */
typedef void (*eng_matmul_observer)(void *user, const eng_tensor *w, int expert,
                                    const float *x /* [n][w->ne0] */, int n);
/* fn NULL removes the observer. */
void eng_ctx_set_observer(eng_ctx *c, eng_matmul_observer fn, void *user);

/* Routing of one token through a mixture of experts, as llama.cpp's build_moe_ffn: probabilities
 * from the router logits [n_expert] (softmax over all experts with a max-subtracted exp and a
 * double sum, or sigmoid), the k most probable experts in descending order (ties to the lower
 * index) into idx[k], their probabilities into w[k]; with norm, w is divided by its sum (a double
 * sum rounded to float, clamped below at 2^-14 as llama.cpp does). 1 <= k <= n_expert.
 * The engine routes every token of a mixture-of-experts block with it; exposed for tests. */
void eng_moe_route(const float *logits /* [n_expert] */, int n_expert, int k, int norm, ga_gating gating,
                   int *idx /* [k] */, float *w /* [k] */);

#endif
