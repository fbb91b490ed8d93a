/* arch.h — architecture tables: a Hugging Face config.json and tensor names to GGUF, as llama.cpp's
 * convert_hf_to_gguf.py maps them (LlamaModel, Qwen2Model, Qwen3Model).
 *
 * Contract
 * - ca_config_parse() reads the hyper-parameters of one of the supported architectures
 *   (LlamaForCausalLM and MistralForCausalLM → "llama", Qwen2ForCausalLM → "qwen2",
 *   Qwen3ForCausalLM → "qwen3"); any other architecture is QK_EUNSUPPORTED with a message listing
 *   the supported ones. config.json is untrusted: every count is checked to be an integer in a
 *   sane range, and the derived sizes (head_dim × heads …) are overflow-checked.
 * - RoPE: rope_theta at the top level or inside transformers-5 `rope_parameters`; scaling from
 *   `rope_scaling` or `rope_parameters` ("rope_type" or the older "type"): default, linear, yarn
 *   and llama3 (the rope_freqs tensor, ca_rope_freqs()); any other kind is QK_EUNSUPPORTED.
 * - ca_map_tensor() names the GGUF tensor a checkpoint tensor becomes, its expected GGUF shape
 *   (from the config), and whether the llama Q/K row permutation applies. Buffers the rotary
 *   inverse frequencies (which llama.cpp drops) are reported as skipped; any other unknown name is
 *   an error naming the tensor. ca_required() enumerates what a complete checkpoint must hold.
 * - ca_permute_row() is LlamaModel.permute as a row index map, so converters can gather rows.
 * - ca_general() reproduces gguf-py's Metadata heuristics for general.* (name, basename,
 *   finetune, version, organization, size_label) from the folder name and `_name_or_path`. */
#ifndef QKIT_CONVERT_ARCH_H
#define QKIT_CONVERT_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../formats/gguf.h"
#include "../quant/status.h"

typedef enum { CA_ARCH_LLAMA, CA_ARCH_QWEN2, CA_ARCH_QWEN3, CA_ARCH_COUNT } ca_arch;

typedef enum { CA_ROPE_NONE, CA_ROPE_LINEAR, CA_ROPE_YARN, CA_ROPE_LLAMA3 } ca_rope_kind;

typedef struct {
    char hf_arch[64];      /* architectures[0] as written */
    ca_arch arch;
    const char *gguf_arch; /* "llama", "qwen2", "qwen3"; static */

    int64_t n_layer, n_embd, n_ff, n_head, n_head_kv, n_vocab, n_ctx;
    int64_t head_dim;       /* explicit, or n_embd / n_head */
    bool has_head_dim;      /* config.json names head_dim (llama.cpp then writes key/value_length) */
    bool has_head_kv;       /* num_key_value_heads present (else n_head_kv = n_head, not written) */
    bool has_rope_theta;
    double rope_theta;
    double rms_eps;
    bool tie_embeddings;
    bool attention_bias, mlp_bias; /* llama: optional biases present in the checkpoint */
    char dtype[16];         /* torch_dtype or dtype ("" when absent) */
    char name_or_path[256]; /* _name_or_path ("" when absent or too long) */

    ca_rope_kind rope_kind;
    double rope_factor;
    double rope_low_freq, rope_high_freq; /* llama3 */
    int64_t rope_orig_ctx;                /* yarn: rope params; llama3: top-level or 8192 */
} ca_config;

/* "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM" */
const char *ca_supported(void);

/* json[0..len) is config.json; name prefixes messages. */
int ca_config_parse(const char *json, size_t len, const char *name, ca_config *out, qk_err *err);
/* DIR/config.json; a missing file is QK_EIO "DIR/config.json: not found". */
int ca_config_load(const char *dir, ca_config *out, qk_err *err);

/* ---- tensors ------------------------------------------------------------------------------ */

typedef enum {
    CA_T_TOKEN_EMBD,
    CA_T_OUTPUT_NORM,
    CA_T_OUTPUT,
    CA_T_ROPE_FREQS,
    CA_T_ATTN_NORM,
    CA_T_ATTN_Q,
    CA_T_ATTN_K,
    CA_T_ATTN_V,
    CA_T_ATTN_OUT,
    CA_T_ATTN_Q_NORM,
    CA_T_ATTN_K_NORM,
    CA_T_FFN_NORM,
    CA_T_FFN_GATE,
    CA_T_FFN_UP,
    CA_T_FFN_DOWN,
    CA_T_COUNT
} ca_kind;

typedef struct {
    ca_kind kind;
    int layer; /* -1 for model-wide tensors */
    bool bias; /* ".bias" rather than ".weight" */
    char name[GGUF_MAX_NAME];      /* GGUF name */
    char hf_name[96];              /* the checkpoint's name (empty for generated tensors) */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];     /* expected GGUF shape, ne[0] = row length */
    int64_t perm_heads;            /* > 0: rows go through LlamaModel.permute with this many heads */
} ca_tensor;

enum { CA_MAPPED = 0, CA_SKIP = 1 };

/* CA_MAPPED and *out filled; CA_SKIP for names llama.cpp drops (rotary_emb.inv_freq …);
 * QK_EFORMAT "unexpected tensor 'NAME'" for anything else. */
int ca_map_tensor(const ca_config *c, const char *hf_name, ca_tensor *out, qk_err *err);

/* Tensors a checkpoint must contain: i = 0, 1, … until it returns false. */
bool ca_required(const ca_config *c, size_t i, ca_tensor *out);

/* Source row of output row `row` under LlamaModel.permute(w, heads) for a tensor of n_rows rows
 * (n_rows divisible by 2·heads, checked by the caller). */
int64_t ca_permute_row(int64_t row, int64_t n_rows, int64_t heads);

/* Llama-3 rope_freqs: head_dim/2 factors, computed in float32 step by step as llama.cpp's
 * generate_extra_tensors does in torch. out has head_dim/2 entries. */
void ca_rope_freqs(const ca_config *c, float *out);

/* Writes the {arch}.* hyper-parameters and general.file_type in llama.cpp's order. */
int ca_write_hparams(gguf_writer *w, const ca_config *c, uint32_t file_type);

/* ---- general.* metadata ------------------------------------------------------------------- */

typedef struct {
    char name[128], basename[128], finetune[128], version[64], organization[128], size_label[32];
} ca_general;

/* gguf-py Metadata.load without a model card: `_name_or_path` (when it has at most one '/'),
 * then the folder name, then size_label from the parameter count. Empty strings mean "not
 * written"; name is never empty. */
void ca_general_meta(const char *dir_name, const char *name_or_path, int64_t total_params,
                     ca_general *out);

/* gguf-py's size_label(): "3.4M", "1.1B" … */
void ca_size_label(int64_t n_params, char *buf, size_t size);

/* Writes general.name … general.size_label (the non-empty ones) in gguf-py's order. */
int ca_write_general(gguf_writer *w, const ca_general *g);

#endif
