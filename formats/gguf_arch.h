/* gguf_arch.h — the GGUF side of every architecture qkit knows, as data: tensor kinds with their
 * GGUF names and shape rules, hyper-parameter keys, and per architecture which kinds a block may
 * hold and how its forward pass is parameterized (RoPE layout, q/k norms, expert gating).
 *
 * This is the one place where GGUF tensor names ("blk.%d.ffn_gate_exps.weight") and metadata keys
 * ("%s.expert_count") are spelled. The converter (convert/arch.h maps Hugging Face checkpoints onto
 * these kinds), the engine's loader (calib/model.c fills its slots by kind), synth and inspect all
 * read it. Adding a dense architecture that reuses existing kinds is one row in GA_ARCHS.
 *
 * Contract
 * - A tensor kind is also the engine slot it fills: eng_layer holds one matrix and one vector per
 *   kind. ga_kind_info() gives its GGUF base name, whether it is per block, its shape rule (in
 *   ggml order, ne[0] the row length) and whether converters keep it in F32.
 * - ga_tensor_name() writes "blk.N.<base>.weight" (or ".bias", or the model-wide name).
 * - ga_hparams is what a model's shape depends on; ga_shape() evaluates a kind's shape rule on it.
 * - ga_hparams_read() reads the hyper-parameters of an architecture from GGUF metadata (any
 *   integer type is accepted, values range-checked); messages name the key.
 * - GGUF keys: ga_key_name() formats a ga_key for an architecture ("llama.expert_count"). */
#ifndef QKIT_FORMATS_GGUF_ARCH_H
#define QKIT_FORMATS_GGUF_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"
#include "gguf.h"

#define GA_MAX_LAYERS 4096

typedef struct ga_arch ga_arch;

/* ---- tensor kinds (= engine slots) ---------------------------------------------------------- */

typedef enum {
    /* model-wide */
    GA_T_TOKEN_EMBD,
    GA_T_OUTPUT_NORM,
    GA_T_OUTPUT,
    GA_T_ROPE_FREQS,
    /* per block: attention */
    GA_T_ATTN_NORM,
    GA_T_ATTN_Q,
    GA_T_ATTN_K,
    GA_T_ATTN_V,
    GA_T_ATTN_OUT,
    GA_T_ATTN_Q_B,
    GA_T_ATTN_K_B,
    GA_T_ATTN_V_B,
    GA_T_ATTN_OUT_B,
    GA_T_ATTN_Q_NORM,
    GA_T_ATTN_K_NORM,
    /* per block: feed-forward, dense */
    GA_T_FFN_NORM,
    GA_T_FFN_GATE,
    GA_T_FFN_UP,
    GA_T_FFN_DOWN,
    GA_T_FFN_GATE_B,
    GA_T_FFN_UP_B,
    GA_T_FFN_DOWN_B,
    /* per block: mixture of experts */
    GA_T_FFN_GATE_INP,   /* router [n_embd, n_expert] */
    GA_T_FFN_GATE_EXPS,  /* [n_embd, n_ff_exp, n_expert] */
    GA_T_FFN_UP_EXPS,
    GA_T_FFN_DOWN_EXPS,  /* [n_ff_exp, n_embd, n_expert] */
    GA_T_FFN_GATE_SHEXP, /* shared expert [n_embd, n_ff_shexp] */
    GA_T_FFN_UP_SHEXP,
    GA_T_FFN_DOWN_SHEXP,
    GA_T_COUNT
} ga_kind;

/* Dimension symbols of the shape rules. */
typedef enum {
    GA_D_NONE, /* unused dimension (1) */
    GA_D_EMBD,
    GA_D_VOCAB,
    GA_D_Q,        /* n_head · head_dim */
    GA_D_KV,       /* n_head_kv · head_dim */
    GA_D_HEAD,     /* head_dim */
    GA_D_ROT_HALF, /* n_rot / 2 (rope_freqs) */
    GA_D_FF,       /* dense feed-forward width */
    GA_D_FF_EXP,   /* one expert's feed-forward width */
    GA_D_FF_SHEXP, /* the shared expert's width */
    GA_D_EXPERT,   /* n_expert */
} ga_dim;

/* Which blocks hold a kind. */
typedef enum {
    GA_IN_MODEL,  /* model-wide */
    GA_IN_BLOCK,  /* every block */
    GA_IN_DENSE,  /* blocks with a dense feed-forward */
    GA_IN_MOE,    /* blocks with experts */
} ga_where;

typedef struct {
    const char *base;  /* "token_embd", "attn_q" (a block tensor's name is blk.N.<base>) */
    bool bias;         /* ".bias" instead of ".weight" */
    ga_where where;
    uint8_t dims[3];   /* ga_dim, ggml order; GA_D_NONE ends the list */
    bool keep_f32;     /* converters and quantizers never change its type (norms, biases, router) */
    bool vector;       /* 1-D: the engine keeps an F32 copy */
    bool optional;     /* a file of an architecture listing it may still lack it (biases, the
                          output head of tied embeddings, rope_freqs) */
} ga_kind_info;

const ga_kind_info *ga_kind_get(ga_kind k);

/* "blk.3.attn_q.weight" (layer >= 0) or "output.weight". Returns false when it does not fit. */
bool ga_tensor_name(ga_kind k, int layer, char *buf, size_t size);

/* ---- hyper-parameters ---------------------------------------------------------------------- */

typedef enum { GA_ROPE_NONE, GA_ROPE_LINEAR, GA_ROPE_YARN, GA_ROPE_LLAMA3 } ga_rope_scaling;
typedef enum { GA_GATING_SOFTMAX, GA_GATING_SIGMOID } ga_gating;

typedef struct {
    int64_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_rot, n_vocab, n_ctx;
    bool has_head_kv;  /* the source names the KV head count (written only then) */
    bool has_head_dim; /* the source names head_dim (key_length / value_length written) */
    bool has_rope_theta;
    double rope_theta, rms_eps;
    ga_rope_scaling rope_scaling;
    double rope_factor, rope_low_freq, rope_high_freq;
    int64_t rope_orig_ctx;
    /* mixture of experts (n_expert == 0: dense) */
    int64_t n_expert, n_expert_used, n_ff_exp, n_ff_shexp;
    bool has_ff_exp;         /* expert_feed_forward_length is its own key (else n_ff) */
    bool expert_weights_norm; /* renormalize the top-k weights to sum 1 */
    int64_t moe_step;         /* blocks (l+1) % moe_step == 0 have experts (interleave_moe_layer_step) */
    uint8_t layer_moe[GA_MAX_LAYERS]; /* 1: block l has experts */
    /* Llama 4 attention (architectures with ga_arch.chunked_nope) */
    uint8_t layer_nope[GA_MAX_LAYERS]; /* 1: block l has no RoPE (full attention, q temperature) */
    int64_t attn_chunk;       /* RoPE blocks attend within chunks of this many positions */
    int64_t attn_temp_floor;  /* NoPE q scale: log(floor((pos+1)/floor)+1)·scale+1 … */
    double attn_temp_scale;   /* … 0: no temperature tuning */
    bool qk_rms_norm;         /* RoPE blocks RMS-normalize q and k (no weight) after RoPE */
} ga_hparams;

/* Size of a dimension symbol. */
int64_t ga_dim_size(const ga_hparams *hp, ga_dim d);

/* Shape of kind k: n_dims and ne[0..3] (unused entries 1). */
void ga_shape(ga_kind k, const ga_hparams *hp, uint32_t *n_dims, int64_t ne[GGUF_MAX_DIMS]);

/* Whether block `layer` (or the model, layer < 0) of an architecture holds kind k at all
 * (ga_arch's kinds and the block's dense/MoE nature; optional kinds count as held). */
bool ga_block_has(const ga_arch *a, const ga_hparams *hp, ga_kind k, int layer);

/* ---- metadata keys ------------------------------------------------------------------------- */

typedef enum {
    GA_K_BLOCK_COUNT,
    GA_K_CONTEXT_LENGTH,
    GA_K_EMBEDDING_LENGTH,
    GA_K_FEED_FORWARD_LENGTH,
    GA_K_HEAD_COUNT,
    GA_K_HEAD_COUNT_KV,
    GA_K_ROPE_FREQ_BASE,
    GA_K_RMS_EPS,
    GA_K_EXPERT_COUNT,
    GA_K_EXPERT_USED_COUNT,
    GA_K_KEY_LENGTH,
    GA_K_VALUE_LENGTH,
    GA_K_FILE_TYPE, /* general.file_type */
    GA_K_VOCAB_SIZE,
    GA_K_ROPE_DIMENSION_COUNT,
    GA_K_ROPE_SCALING, /* rope.scaling.type, .factor, .original_context_length (linear, yarn) */
    GA_K_EXPERT_FEED_FORWARD_LENGTH,
    GA_K_EXPERT_SHARED_FEED_FORWARD_LENGTH,
    GA_K_EXPERT_WEIGHTS_NORM,
    GA_K_INTERLEAVE_MOE_LAYER_STEP,
    /* qkit's own keys for what llama.cpp hard-codes for Llama 4 (it ignores them) */
    GA_K_ATTN_CHUNK_SIZE,
    GA_K_ATTN_TEMPERATURE_LENGTH,
    GA_K_ATTN_TEMPERATURE_SCALE,
    GA_K_ATTN_USE_QK_NORM,
    GA_K_NO_ROPE_LAYERS, /* i32 per block: 1 RoPE, 0 none (transformers' no_rope_layers) */
    GA_K_COUNT
} ga_key;

/* "%s.expert_count" formatted for arch ("general.file_type" for GA_K_FILE_TYPE). */
void ga_key_name(ga_key k, const char *arch, char *buf, size_t size);

/* ---- architectures ------------------------------------------------------------------------- */

typedef enum { GA_ROPE_PAIRS, GA_ROPE_HALVES } ga_rope_layout;

struct ga_arch {
    const char *name;             /* general.architecture */
    ga_rope_layout rope;          /* as stored in the GGUF: adjacent pairs (llama) or halves */
    bool moe;                     /* blocks may hold experts */
    bool expert_weights_norm;     /* default when no key says otherwise */
    ga_gating gating;
    bool moe_weight_input;        /* an expert's weight scales its input, not its output */
    bool chunked_nope;            /* Llama 4 attention: chunks, NoPE blocks, temperature, q/k norm */
    const ga_kind *kinds;         /* the kinds its files may hold, GA_T_COUNT-terminated */
    const ga_kind *required;      /* optional kinds this architecture always has (Qwen2's q/k/v
                                     biases), GA_T_COUNT-terminated */
};

/* NULL when unknown. */
const ga_arch *ga_arch_find(const char *name);
/* "llama, llama4, qwen2, qwen3, qwen3moe" */
const char *ga_arch_names(void);
bool ga_arch_has_kind(const ga_arch *a, ga_kind k);
/* Whether a file of this architecture must hold kind k where ga_block_has says it may. */
bool ga_arch_requires(const ga_arch *a, ga_kind k);

/* Reads the hyper-parameters of arch from a GGUF file. layer_moe is not set (the loader decides
 * it from the tensors present). Llama 4 keys llama.cpp does not write default to its hard-coded
 * behaviour: chunks of 8192, temperature floor 8192 and scale 0.1, no RoPE on every 4th block,
 * q/k norm unless there are 128 experts. */
int ga_hparams_read(const gguf_ctx *g, const ga_arch *a, ga_hparams *hp, qk_err *err);

#endif
