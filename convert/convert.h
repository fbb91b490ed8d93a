/* convert.h — Hugging Face checkpoint folder → GGUF, streaming, like llama.cpp's
 * convert_hf_to_gguf.py (and, for a quantized --outtype, followed by llama-quantize).
 *
 * Contract
 * - cv_plan_create() reads config.json, the safetensors headers (one file, shards with or
 *   without an index) and the tokenizer, and checks everything before any byte is written:
 *   architecture, every tensor name (unexpected → named error), dtype (F32, F16, BF16 only),
 *   shape against config.json, required tensors present (missing → named error), Q/K rows
 *   divisible for the llama permutation. It decides every output type and the metadata.
 * - Output types follow convert_hf_to_gguf.py: 1-D tensors, "*_norm.weight" and biases stay F32,
 *   everything else takes the outtype. "auto" takes the dtype of the first tensor with two or
 *   more dimensions: BF16 → bf16, F16 → f16, anything else → f16 (current llama.cpp; at c392e50
 *   an F32 first tensor chose bf16). A llama-quantize mix or type name (q8_0, Q4_K_M …) means
 *   `--outtype f32` followed by `llama-quantize --type`: the per-tensor choice is convert/mix.h's
 *   and tensors are written in llama-quantize's order; quantized rows holding NaN/Inf are an
 *   error naming the tensor and the row.
 * - cv_plan_write() streams: each tensor is read through the mmap in chunks of rows (aligned to
 *   the permutation's head groups), converted (permuted, re-typed, quantized with OpenMP) and
 *   written, and the source pages are dropped again, so memory stays at a few tens of MiB
 *   whatever the model size. Results do not depend on the thread count. Output goes through the
 *   GGUF writer's temporaries: nothing appears at the target unless everything succeeded.
 * - Tensor data equals llama.cpp's: the llama Q/K permutation, f16 and bf16 rounding (nearest
 *   even), ggml's quantizers. Identity conversions (bf16 → bf16 …) copy bytes. */
#ifndef QKIT_CONVERT_CONVERT_H
#define QKIT_CONVERT_CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../formats/gguf.h"
#include "../quant/status.h"
#include "arch.h"

typedef struct {
    const char *outtype;      /* NULL or "auto", "f32", "f16", "bf16", or a mix/type name */
    int n_threads;            /* <= 0: the OpenMP default */
    uint64_t split_max_bytes; /* > 0: gguf-split parts of at most this much tensor data */
    uint64_t split_max_tensors; /* > 0: at most this many tensors per part */
    uint32_t split_parts;     /* > 0: exactly this many parts of balanced size (gguf.h) */
    uint32_t shard_index, shard_count; /* count > 0: write only the parts p (0-based) with
                                 p % count == index, byte-identical to the same parts of an
                                 unsharded run; without a split option: shard_count parts */
    int hf_layout;            /* keep the checkpoint's q/k row order (no llama permutation): for
                                 reading the checkpoint as an engine model (hf_engine.c) */
    /* Optional callbacks, called from the calling thread (NULL: none). */
    void (*progress)(void *user, size_t done, size_t total, uint64_t bytes_in, uint64_t bytes_out);
    void (*warn)(void *user, const char *msg);
    void *user;
} cv_options;

void cv_options_init(cv_options *o);

typedef struct {
    char name[GGUF_MAX_NAME]; /* GGUF name */
    char src_name[128];       /* checkpoint name ("…experts.*.w1.weight" for stacked experts);
                                 "" for the generated rope_freqs */
    int src_type;             /* enum q_type of the checkpoint data (F32, F16, BF16; F32 for FP8,
                                 which is dequantized with its block scales) */
    int fp8;                  /* the checkpoint stores it as FP8 with block scales */
    int type;                 /* enum q_type written */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t in_bytes, out_bytes;
    int64_t perm_heads;       /* > 0: LlamaModel.permute applied */
    int fallback;             /* a quantization type did not fit the rows */
} cv_tensor;

typedef struct cv_plan cv_plan;

/* *out is NULL on failure. Only o->outtype matters here (o may be NULL: auto). */
int cv_plan_create(const char *dir, const cv_options *o, cv_plan **out, qk_err *err);
void cv_plan_free(cv_plan *p); /* accepts NULL */

size_t cv_plan_n_tensors(const cv_plan *p);
const cv_tensor *cv_plan_tensor(const cv_plan *p, size_t i); /* write order; NULL out of range */
const ca_config *cv_plan_config(const cv_plan *p);
const char *cv_plan_outtype(const cv_plan *p); /* "f32", "f16", "bf16" or a mix name "Q4_K_M" */
uint32_t cv_plan_file_type(const cv_plan *p);  /* general.file_type */
uint64_t cv_plan_n_params(const cv_plan *p);
uint64_t cv_plan_in_bytes(const cv_plan *p);   /* checkpoint bytes read */
uint64_t cv_plan_out_bytes(const cv_plan *p);  /* tensor data written (without padding) */
size_t cv_plan_n_fallback(const cv_plan *p);

/* A fingerprint of the checkpoint's safetensors files (formats/hash.h: qk_file_fingerprint). */
int cv_plan_fingerprint(const cv_plan *p, uint64_t *id, qk_err *err);

/* Index of the planned tensor GGUF-named `name`, or -1. */
long cv_plan_find(const cv_plan *p, const char *name);
/* Whether tensor i's GGUF bytes are the checkpoint's bytes (one source, F32/F16/BF16, no
 * transform): then *type and *data (inside the mapping, valid while the plan lives) are set. */
bool cv_plan_in_place(const cv_plan *p, size_t i, int *type, const void **data);
/* Tensor i's values as float32, out [n_elements] in GGUF order (transforms and FP8 scales
 * applied, no type conversion). */
void cv_plan_read_f32(const cv_plan *p, size_t i, float *out, int n_threads);

typedef struct {
    size_t n_tensors;
    uint64_t in_bytes, out_bytes;
    uint32_t n_parts;
    uint32_t n_parts_written; /* all unless sharded */
    char split_id[17];        /* split output: the set's split.id, else "" */
} cv_result;

/* Writes the planned model to out_path (split: PREFIX-0000i-of-0000N.gguf). res may be NULL.
 * The plan stays valid and may be written again. */
int cv_plan_write(const cv_plan *p, const char *out_path, const cv_options *o, cv_result *res,
                  qk_err *err);

/* cv_plan_create + cv_plan_write. */
int cv_convert(const char *dir, const char *out_path, const cv_options *o, cv_result *res,
               qk_err *err);

#endif
