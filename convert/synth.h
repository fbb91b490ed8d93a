/* synth.h — deterministic random-weight HuggingFace checkpoints built from real config.json files.
 *
 * `qkit synth` turns a config (TinyLlama, SmolLM2, Qwen2.5, Qwen3, Llama-3.2, Mistral ...) into a
 * folder a converter cannot tell from a downloaded model except by its values: config.json,
 * model.safetensors (or model-0000i-of-0000N.safetensors shards and model.safetensors.index.json)
 * and the tokenizer files of a real model (or generated ones). It serves tests, full-size
 * benchmarks and the demo.
 *
 * Contract
 * - Tensors: every tensor the architecture's HF module holds, with HF names and shapes (see
 *   sy_arch_tensors). Values are mean + std·z with z an approximately standard normal variate
 *   (Irwin–Hall sum of four 16-bit uniforms: |z| <= 2·sqrt(3), excess kurtosis -0.3): matrices
 *   and biases use mean 0 and the config's initializer_range (0.02 when absent), norms mean 1.
 * - Determinism: element j of a tensor is a pure function of (seed, tensor name, j), computed
 *   with integer arithmetic and IEEE single-precision multiply and add only (no libm), then
 *   rounded to the output dtype. Files are byte-identical for the same arguments whatever the
 *   machine or thread count; a tensor has the same values in every dtype (up to rounding), in
 *   every shard layout, and whatever --layers says for the layers both runs hold.
 * - Streaming: tensors are generated in fixed pieces (OpenMP inside each piece) and written at
 *   once; memory use is a few MiB whatever the model size.
 * - Layout: shards follow model order (embeddings, layers 0..N-1, final norm, head) like
 *   transformers' save_pretrained; inside each file tensors are sorted by name, as the
 *   safetensors library stores them. Each file carries __metadata__ {"format": "pt"}. A run that
 *   yields a single shard writes model.safetensors and no index.
 * - FP8 (dtype ST_F8_E4M3, `--dtype fp8`): a checkpoint in the DeepSeek-V3 / Qwen3-FP8 layout.
 *   The linear weights of the blocks (sy_tensor.linear: attention q/k/v/o, dense and expert
 *   gate/up/down, shared experts) are F8_E4M3, each followed by `<name>_scale_inv`, F32 of shape
 *   [ceil(rows/128), ceil(cols/128)]; everything else (embeddings, lm_head, norms, biases, MoE
 *   routers) is BF16. The values are those of dtype ST_F32, quantized per 128 x 128 block (the
 *   last row and column of blocks partial): scale = max|x| / 448 in float32 (1 for an all-zero
 *   block), code = q_fp32_to_fp8_e4m3(x / scale), and the scale is stored as the block's
 *   scale_inv, so fp8(code) · scale_inv is within e4m3's rounding (2^-4 relative, or 2^-10 · scale
 *   for the subnormal codes) of the ST_F32 value. config.json gets torch_dtype "bfloat16" and
 *   "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method":
 *   "fp8", "weight_block_size": [128, 128]}; with any other dtype a quantization_config of the
 *   given config is dropped. Sizes, shards and the index count each tensor with its own dtype;
 *   a weight and its scale grid may land in different shards. Weights are generated in bands of
 *   128 rows and a scale grid is recomputed when it is written, so memory stays bounded (two
 *   buffers of 8 MiB or one band of codes, whichever is larger).
 * - Tokenizer: copied from the config's folder or tokenizer_dir, or with tokenizer_gen generated
 *   (sy_tokenizer_write), so a checkpoint can be made from a config alone. The generated one is a
 *   SentencePiece BPE model with exactly vocab_size pieces, and config.json then says
 *   bos_token_id 1 and eos_token_id 2 (and has no pad_token_id) to match it.
 * - Atomicity: everything is written into OUT.tmp-XXXXXX beside OUT, which is renamed to OUT at
 *   the end. On failure nothing named OUT or OUT.tmp-* is left; sy_remove_temporaries() does the
 *   same from a signal handler. An existing non-empty OUT is refused unless force is set; then
 *   it must hold only files (no sub-folders), and is replaced as a whole.
 */
#ifndef QKIT_CONVERT_SYNTH_H
#define QKIT_CONVERT_SYNTH_H

#include <cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "../formats/safetensors.h"
#include "../quant/status.h"
#include "arch.h"

#define SY_NAME_MAX 128
#define SY_MAX_SHARDS 99999 /* the five digits of model-00001-of-00002.safetensors */

/* The hyper-parameters the weights depend on. */
typedef struct {
    const char *arch; /* canonical name, e.g. "Qwen2ForCausalLM"; static storage */
    int64_t hidden, intermediate, n_layers, n_heads, n_kv_heads, head_dim, vocab, n_experts;
    int tied;     /* tie_word_embeddings: no lm_head.weight */
    float init_std;
    ca_config cfg; /* the converter's description of the config: which tensors, which shapes */
} sy_arch;

/* Reads and checks the hyper-parameters of a parsed config.json; path is used in messages.
 * QK_EUNSUPPORTED for an architecture other than those in sy_supported_archs(), QK_EFORMAT for a
 * missing or mistyped field, QK_ERANGE for nonsense sizes. */
int sy_arch_from_config(sy_arch *out, const cJSON *config, const char *path, qk_err *err);

/* "LlamaForCausalLM, MistralForCausalLM, ..." for messages and usage text. */
const char *sy_supported_archs(void);

typedef struct {
    char name[SY_NAME_MAX];
    int n_dims;       /* 1, 2, or 3 (Llama 4's fused experts [n_expert, in, out]) */
    int64_t shape[3]; /* HF order: [out_features, in_features] for a Linear weight; unused 0 */
    float mean, std;
    int linear;       /* a block's linear-layer weight (attention, MLP, experts): FP8 with
                         --dtype fp8; not embeddings, lm_head, norms, biases or routers */
} sy_tensor;

#define SY_FP8_BLOCK 128 /* rows and columns of an FP8 scale block (weight_block_size) */

/* The tensors of arch in model order, in *out (malloc'd; the caller frees it). */
int sy_arch_tensors(const sy_arch *arch, sy_tensor **out, size_t *n, qk_err *err);

/* The generator itself, exposed so tests can compare files against it: writes elements
 * [first, first + n) of the tensor with key `key` (sy_tensor_key) into out, as dtype ST_F32,
 * ST_F16 or ST_BF16. Parallel over n with OpenMP; the result does not depend on the split. */
uint64_t sy_tensor_key(uint64_t seed, const char *name);
void sy_fill(uint64_t key, uint64_t first, size_t n, float mean, float std, st_dtype dtype,
             void *out /* [n] elements of dtype */);

typedef void (*sy_progress_fn)(void *ud, uint64_t bytes_done, uint64_t bytes_total);

typedef struct {
    const char *config_path;   /* config.json to imitate */
    const char *tokenizer_dir; /* NULL: the config's folder */
    int tokenizer_gen;         /* generate the tokenizer (sy_tokenizer_write) instead of copying;
                                  excludes tokenizer_dir */
    const char *out_dir;
    int64_t layers;            /* 0: keep num_hidden_layers */
    st_dtype dtype;            /* ST_F32, ST_F16, ST_BF16, or ST_F8_E4M3 for an FP8 checkpoint
                                  (block-scaled linear weights, BF16 elsewhere; see above) */
    uint64_t seed;
    int64_t shards;            /* 0: none asked; N: exactly N files (balanced by bytes) */
    uint64_t max_shard_size;   /* 0: none; else bytes per shard, as save_pretrained splits */
    int force;                 /* replace a non-empty out_dir */
    sy_progress_fn progress;   /* may be NULL; called from the calling thread */
    void *progress_ud;
} sy_options;

typedef struct {
    sy_arch arch;            /* after --layers */
    size_t n_tensors;        /* stored: with fp8, the scale grids too */
    uint64_t n_params;       /* the model's parameters (fp8: not the scale grids' elements) */
    uint64_t n_bytes;        /* of every stored tensor */
    int64_t n_files;         /* safetensors files written */
    int n_tokenizer_files;   /* copied or generated; 0 is allowed when tokenizer_dir was not
                                given */
} sy_result;

/* Writes the checkpoint. Exactly one of shards/max_shard_size may be non-zero. */
int sy_synth(const sy_options *opt, sy_result *res, qk_err *err);

/* A generated Llama-style tokenizer: writes tokenizer.model, tokenizer_config.json and
 * special_tokens_map.json into dir (each atomically). tokenizer.model is a SentencePiece BPE
 * model with byte fallback (add_dummy_prefix on, remove_extra_whitespaces off) holding exactly
 * vocab_size pieces: <unk> (UNKNOWN), <s>, </s> (CONTROL), <0x00>..<0xFF> (BYTE), then "▁", the
 * printable ASCII characters and frequent English words ("▁the") and letter groups, each after
 * its prefixes, scored 0, -1, -2 ... so common words encode as one token; letter strings fill
 * larger vocabularies. The same vocab_size always gives the same bytes. tokenizer_config.json
 * names LlamaTokenizer, add_bos_token true, add_eos_token false. QK_ERANGE when vocab_size is
 * outside [SY_GEN_MIN_VOCAB, SY_GEN_MAX_VOCAB]. */
#define SY_GEN_MIN_VOCAB 259
#define SY_GEN_MAX_VOCAB (1 << 20)
int sy_tokenizer_write(const char *dir, int64_t vocab_size, qk_err *err);

/* Async-signal-safe: removes the files and temporary folder of a sy_synth() in progress (call
 * after of_remove_all_temporaries()). */
void sy_remove_temporaries(void);

#endif
