/* arch.h — the Hugging Face side of every architecture: which config.json keys hold the
 * hyper-parameters, and which checkpoint tensors become which GGUF tensor kind
 * (formats/gguf_arch.h) through which transform, as llama.cpp's convert_hf_to_gguf.py maps them
 * (LlamaModel for Llama, Mistral and Mixtral; Qwen2Model, Qwen3Model, Qwen3MoeModel, Llama4Model).
 *
 * One table row (CA_ARCHS in arch.c) describes an architecture completely: its HF class, its
 * GGUF architecture, the tensors of a block as (kind, HF name, transform, condition), how to tell
 * MoE blocks from dense ones, and the order of its GGUF metadata keys. The converter's plan, the
 * engine's view of HF folders (hf_engine.c), synth and inspect all read it.
 *
 * Contract
 * - ca_config_parse() reads config.json (untrusted: every count an integer in a sane range, derived
 *   sizes overflow-checked, experts: 1 <= num_experts_per_tok <= num_experts). RoPE: rope_theta at
 *   the top level or inside transformers-5 `rope_parameters`; scaling from `rope_scaling` or
 *   `rope_parameters`: default, linear, yarn, llama3 (the rope_freqs tensor, ca_rope_freqs()).
 *   FP8 checkpoints: `quantization_config` {"quant_method": "fp8", "weight_block_size": [r, c]}.
 * - ca_output_at() enumerates the GGUF tensors a checkpoint of this config converts to, each with
 *   its expected GGUF shape, transform and source name(s) (STACK: one per expert).
 * - ca_permute_row() is LlamaModel.permute as a row index map, so converters can gather rows.
 * - ca_general_meta() reproduces gguf-py's Metadata heuristics for general.* (name, basename,
 *   finetune, version, organization, size_label) from the folder name and `_name_or_path`. */
#ifndef QKIT_CONVERT_ARCH_H
#define QKIT_CONVERT_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../formats/gguf.h"
#include "../formats/gguf_arch.h"
#include "../quant/status.h"

/* How a GGUF tensor is made from the checkpoint. */
typedef enum {
    CA_X_COPY,       /* one source tensor, same layout (shape reversed: HF is outermost first) */
    CA_X_PERMUTE_Q,  /* LlamaModel.permute(w, n_head, n_head): rows regrouped for RoPE on pairs */
    CA_X_PERMUTE_K,  /* LlamaModel.permute(w, n_head, n_head_kv) */
    CA_X_STACK,      /* one 2-D source per expert (the name holds the expert index), stacked */
    CA_X_T,          /* one 3-D source [n_expert, ne0, ne1]: each expert's matrix transposed
                        (Llama 4's experts.down_proj) */
    CA_X_SPLIT0_T,   /* one 3-D source [n_expert, ne0, 2·ne1]: the first half of the last
                        dimension, transposed (Llama 4's experts.gate_up_proj → gate) */
    CA_X_SPLIT1_T,   /* … the second half (→ up) */
    CA_X_ROPE_FREQS, /* generated: Llama 3 rope_freqs (no source) */
} ca_xform;

/* When a block (or the model) holds a tensor, beyond the kind's dense/MoE placement. */
typedef enum {
    CA_C_ALWAYS,
    CA_C_ATTN_BIAS, /* config attention_bias */
    CA_C_MLP_BIAS,  /* config mlp_bias */
    CA_C_UNTIED,    /* tie_word_embeddings false */
    CA_C_LLAMA3,    /* llama3 RoPE scaling */
} ca_cond;

typedef struct {
    ga_kind kind;
    const char *hf;  /* name below the model root ("model.norm.weight") or, for block tensors,
                        below "model.layers.N." ("self_attn.q_proj.weight"); STACK names hold
                        "%d" for the expert index */
    ca_xform xform;
    ca_cond cond;
    int group;       /* > 0: the outputs of a group are written together, in table order, once
                        every source of the group has been read (convert_hf_to_gguf.py collects
                        all experts of a block before stacking) */
} ca_hf_tensor;

/* Which blocks are mixtures of experts. */
typedef enum {
    CA_MOE_NONE,  /* dense model */
    CA_MOE_EVERY, /* every block (Mixtral) */
    CA_MOE_STEP,  /* blocks with (l+1) % step == 0 (step from moe_step_key, default 1), except
                     those listed in mlp_only_layers (Qwen) */
} ca_moe_rule;

typedef struct {
    const char *hf_class;           /* "MixtralForCausalLM" */
    const char *gguf_arch;          /* "llama" */
    const char *root;               /* prefix of every tensor name ("" or "language_model.") */
    const char *sub_config;         /* object whose keys override the top level ("text_config") */
    const char *const *skip;        /* name prefixes not converted (vision tower), NULL-terminated */
    const ca_hf_tensor *const *tables; /* NULL-terminated list of tables (global, then per block) */
    ca_moe_rule moe;
    const char *n_expert_key;       /* "num_local_experts", "num_experts" (NULL: dense) */
    const char *moe_step_key;       /* CA_MOE_STEP: "decoder_sparse_step" … */
    const char *ff_key;             /* dense width key; NULL: intermediate_size */
    const char *ff_exp_key;         /* expert width key; NULL: the dense width */
    const char *norm_key;           /* renormalize top-k weights ("norm_topk_prob", default false);
                                       NULL: the GGUF architecture's behaviour */
    const ga_key *keys;             /* metadata in write order, GA_K_COUNT-terminated */
    bool need_head_dim;             /* transformers needs head_dim spelled out (Qwen3) */
    bool llama_vocab;               /* LlamaModel.set_vocab quirks (CodeLlama FIM ids, SmolLM BOS) */
    bool hf_rope_pairs;             /* the checkpoint's q/k rotate adjacent pairs (else halves) */
} ca_arch;

typedef struct {
    char hf_arch[64];      /* architectures[0] as written */
    const ca_arch *arch;
    const char *gguf_arch; /* arch->gguf_arch */
    ga_hparams hp;         /* n_rot = head_dim; layer_moe from the MoE rule */
    bool tie_embeddings;
    bool attention_bias, mlp_bias;
    bool has_expert_used;  /* num_experts_per_tok present (llama.cpp writes it whenever it is) */
    int64_t fp8_block[2];  /* quantization_config weight_block_size; 0 when absent */
    bool fp8;              /* quant_method "fp8" */
    int w4;                /* 4-bit group-quantized linears: CA_W4_AWQ (quant_method "awq", GEMM)
                              or CA_W4_CT (compressed-tensors pack-quantized); 0: none */
    int64_t w4_group;      /* input columns per group (0: the whole row) */
    bool w4_sym;           /* compressed-tensors symmetric: no zero points */
    char dtype[16];        /* torch_dtype or dtype ("" when absent) */
    char name_or_path[256]; /* _name_or_path ("" when absent or too long) */
} ca_config;

/* "LlamaForCausalLM, MistralForCausalLM, …" */
const char *ca_supported(void);
/* The description of an HF class; NULL when unsupported. */
const ca_arch *ca_arch_find(const char *hf_class);

/* json[0..len) is config.json; name prefixes messages. */
int ca_config_parse(const char *json, size_t len, const char *name, ca_config *out, qk_err *err);
/* The same from a parsed document (NULL or not an object: QK_EFORMAT). */
struct cJSON;
int ca_config_from_json(const struct cJSON *root, const char *name, ca_config *out, qk_err *err);
/* A copy of config.json with its architecture's sub-config (text_config) laid over the top
 * level, as the converter reads it; a plain copy for other architectures. NULL: out of memory. */
struct cJSON *ca_config_flat(const struct cJSON *root);
/* DIR/config.json; a missing file is QK_EFORMAT "DIR/config.json: not found (...)". */
int ca_config_load(const char *dir, ca_config *out, qk_err *err);

/* ---- tensors ------------------------------------------------------------------------------ */

typedef struct {
    ga_kind kind;
    int layer;                      /* -1 for model-wide tensors */
    char name[GGUF_MAX_NAME];       /* GGUF name */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];      /* expected GGUF shape, ne[0] = row length */
    ca_xform xform;
    int64_t perm_heads;             /* > 0: rows go through LlamaModel.permute with this many heads */
    int group;                      /* from the table; layer-local */
    size_t order;                   /* position in the description (ties in write order) */
    int n_src;                      /* sources: 0 (generated), 1, or n_expert (STACK) */
    bool src_split;                 /* SPLIT0_T / SPLIT1_T: half of a fused source */
    char src[128];                  /* the HF name; STACK: a pattern with %d */
} ca_output;

/* The i-th GGUF tensor of a checkpoint with this config (i = 0, 1, … until it returns false),
 * in description order. */
bool ca_output_at(const ca_config *c, size_t i, ca_output *out);

/* Name of source k (0 <= k < n_src) of an output. */
void ca_output_src_name(const ca_output *o, int k, char *buf, size_t size);

/* The shape (HF order, outermost first) source tensors of an output must have. */
void ca_output_src_shape(const ca_output *o, int *n_dims, int64_t shape[4]);

/* Names llama.cpp's converter drops (rotary_emb.inv_freq …). */
bool ca_ignored(const char *hf_name);
/* Names of parts of the checkpoint the text model does not use (a vision tower), skipped. */
bool ca_skipped(const ca_config *c, const char *hf_name);

/* Source row of output row `row` under LlamaModel.permute(w, heads) for a tensor of n_rows rows
 * (n_rows divisible by 2·heads, checked by the caller). */
int64_t ca_permute_row(int64_t row, int64_t n_rows, int64_t heads);

/* Llama-3 rope_freqs: head_dim/2 factors, computed in float32 step by step as llama.cpp's
 * generate_extra_tensors does in torch. out has head_dim/2 entries. */
void ca_rope_freqs(const ca_config *c, float *out);

/* Writes the {arch}.* hyper-parameters and general.file_type in the converter's order. */
int ca_write_hparams(gguf_writer *w, const ca_config *c, uint32_t file_type);

/* ---- general.* metadata ------------------------------------------------------------------- */

typedef struct {
    char name[128], basename[128], finetune[128], version[64], organization[128], size_label[32];
} ca_general;

/* gguf-py Metadata.load without a model card: `_name_or_path` (when it has at most one '/'),
 * then the folder name, then size_label from the parameter count — for mixtures of experts
 * gguf-py's "{expert_count}x{size}" with size = shared parameters + one expert's share
 * (label_params). Empty strings mean "not written"; name is never empty. */
void ca_general_meta(const char *dir_name, const char *name_or_path, int64_t total_params,
                     int64_t expert_count, int64_t label_params, ca_general *out);

/* gguf-py's size_label(): "3.4M", "1.1B" … */
void ca_size_label(int64_t n_params, char *buf, size_t size);

/* Writes general.name … general.size_label (the non-empty ones) in gguf-py's order. */
int ca_write_general(gguf_writer *w, const ca_general *g);

enum { CA_W4_AWQ = 1, CA_W4_CT = 2 }; /* ca_config.w4 */

#endif
