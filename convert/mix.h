/* mix.h — quantization mixes: which ggml type each tensor of a model gets for a llama-quantize
 * file type (Q4_K_M ...), exactly as llama.cpp's llama-quantize decides at commit c392e50
 * (src/llama-quant.cpp: llama_tensor_get_type and the "quantize at all?" rules of
 * llama_model_quantize_impl).
 *
 * The planner knows nothing about files: give it the architecture and a few hyper-parameters,
 * and every tensor's name, shape and source type; it returns, per tensor, the type to write and
 * a warning when a fallback was needed. `qkit quantize` and `qkit convert --outtype q4_k_m` both
 * use it, so a converted-and-quantized model equals a converted-then-quantized one.
 *
 * Order matters. llama-quantize counts attn_v / ffn_down tensors as it meets them (Q3_K_M gives
 * the first two attn_v more bits, Q4_K_M uses "use_more_bits(i, n)"), and it meets them in the
 * order of its model loader: tensors outside "blk.N." first, then by layer number, and by name
 * (strcmp) within a layer; with --keep-split it uses file order instead. The planner sorts
 * accordingly and exposes that order: writers that want llama-quantize's file layout write the
 * tensors in mx_plan_order() order.
 *
 * Usage
 *     mx_model m = {.arch = "llama", .n_layer = 22, .n_head = 32, .n_head_kv = 4};
 *     mx_options o; mx_options_init(&o);
 *     mx_plan *p; int rc = mx_plan_create(&p, &m, MX_FTYPE_Q4_K_M, &o, tensors, n, &err);
 *     for (size_t k = 0; k < n; k++) { size_t i = mx_plan_order(p, k);
 *         const mx_decision *d = mx_plan_get(p, i); ... d->type, d->warning ... }
 *     mx_plan_free(p);
 */
#ifndef QKIT_CONVERT_MIX_H
#define QKIT_CONVERT_MIX_H

#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"

/* llama.cpp's llama_ftype values (stored in general.file_type). Only those with an entry in
 * the mix table can be planned; the others are listed so file_type values can be named. */
enum mx_ftype {
    MX_FTYPE_ALL_F32 = 0,
    MX_FTYPE_F16 = 1,
    MX_FTYPE_Q4_0 = 2,
    MX_FTYPE_Q4_1 = 3,
    MX_FTYPE_Q8_0 = 7,
    MX_FTYPE_Q5_0 = 8,
    MX_FTYPE_Q5_1 = 9,
    MX_FTYPE_Q2_K = 10,
    MX_FTYPE_Q3_K_S = 11,
    MX_FTYPE_Q3_K_M = 12,
    MX_FTYPE_Q3_K_L = 13,
    MX_FTYPE_Q4_K_S = 14,
    MX_FTYPE_Q4_K_M = 15,
    MX_FTYPE_Q5_K_S = 16,
    MX_FTYPE_Q5_K_M = 17,
    MX_FTYPE_Q6_K = 18,
    MX_FTYPE_IQ2_XXS = 19,
    MX_FTYPE_IQ2_XS = 20,
    MX_FTYPE_Q2_K_S = 21,
    MX_FTYPE_IQ3_XS = 22,
    MX_FTYPE_IQ3_XXS = 23,
    MX_FTYPE_IQ1_S = 24,
    MX_FTYPE_IQ4_NL = 25,
    MX_FTYPE_IQ3_S = 26,
    MX_FTYPE_IQ3_M = 27,
    MX_FTYPE_IQ2_S = 28,
    MX_FTYPE_IQ2_M = 29,
    MX_FTYPE_IQ4_XS = 30,
    MX_FTYPE_IQ1_M = 31,
    MX_FTYPE_BF16 = 32,
};

/* One row of the mix table. */
typedef struct {
    const char *name; /* llama-quantize's spelling: "Q4_K_M" */
    int ftype;        /* enum mx_ftype */
    int base_type;    /* enum q_type every quantizable tensor starts from (Q4_K_M: q4_K) */
    int needs_imatrix;/* llama-quantize refuses the mix without an importance matrix (Q2_K_S) */
    const char *desc; /* one line for usage text */
} mx_mix;

/* The mixes qkit plans, in llama-quantize's usage order. Borrowed, static. */
const mx_mix *mx_mix_list(size_t *n);
/* Case-insensitive: the names above and llama-quantize's aliases Q3_K, Q4_K, Q5_K (→ _M), or a
 * decimal ftype number. NULL when unknown. */
const mx_mix *mx_mix_from_name(const char *name);
const mx_mix *mx_mix_from_ftype(int ftype);

/* What the planner needs to know about the model (from the GGUF metadata or the HF config). */
typedef struct {
    const char *arch;   /* general.architecture: "llama", "falcon", "qwen2" ... */
    uint32_t n_layer;   /* <arch>.block_count */
    uint32_t n_head;    /* <arch>.attention.head_count (of layer 0 when per layer) */
    uint32_t n_head_kv; /* <arch>.attention.head_count_kv; 0: same as n_head */
    uint32_t n_expert;  /* <arch>.expert_count; 0 for dense models */
} mx_model;

/* One tensor as the source has it. */
typedef struct {
    const char *name; /* GGUF name: "blk.3.attn_v.weight", "output.weight" */
    uint32_t n_dims;  /* 1..4 */
    int64_t ne[4];    /* ne[0] is the row length; unused dimensions are 1 */
    int type;         /* enum q_type of the source data */
} mx_tensor;

typedef struct {
    int pure;               /* --pure: every quantizable tensor gets the base type */
    int leave_output;       /* --leave-output-tensor: output.weight is copied as is */
    int output_type;        /* --output-tensor-type: enum q_type, or -1 for the mix's choice */
    int token_embd_type;    /* --token-embedding-type: enum q_type, or -1 */
    int has_imatrix;        /* some mixes choose differently with an importance matrix */
    int keep_order;         /* process in the given (file) order, as --keep-split does */
    const char *const *tensor_types; /* --tensor-type REGEX=TYPE, n_tensor_types of them */
    size_t n_tensor_types;
    const int *forced_types; /* NULL, or per tensor (index as given to create): an enum q_type
                                that decides a quantizable tensor's type after everything else
                                (a size-budget allocation), or -1 */
} mx_options;

/* All off, no overrides (output_type = token_embd_type = -1). */
void mx_options_init(mx_options *o);

/* Checks one --tensor-type argument "REGEX=TYPE" (PCRE2 syntax, caseless, searched anywhere in
 * the name like std::regex_search; TYPE a ggml type name, case-insensitive). QK_EFORMAT with a
 * message naming the problem. mx_plan_create checks them again.
 *
 * llama.cpp c392e50 has no --tensor-type; qkit follows later llama-quantize: the first pattern
 * that matches a quantizable tensor decides its type, also with --pure. The mix still counts
 * the tensor, so no other tensor's choice changes, and a type that does not fit the row length
 * falls back like the mix's own choices. --output-tensor-type and --token-embedding-type take
 * precedence over the patterns. */
int mx_tensor_type_check(const char *arg, qk_err *err);

#define MX_WARNING_MAX 200

/* The decision for one tensor. */
typedef struct {
    int quantize;   /* 1: convert to type; 0: copy the source bytes (type == source type) */
    int type;       /* enum q_type to write */
    int fallback;   /* 1: the row length did not fit the chosen type and a fallback was used */
    int overridden; /* 1: a --tensor-type / --output-tensor-type / --token-embedding-type chose */
    char warning[MX_WARNING_MAX]; /* "" or one line: "blk.0.ffn_down.weight: rows of 172 are
                                     not a multiple of 256 (q4_K): using fallback q5_0" */
} mx_decision;

typedef struct mx_plan mx_plan;

/* Plans every tensor of a model for ftype. tensors[0..n) are borrowed only during the call.
 * Errors: QK_EUNSUPPORTED for an ftype with no mix entry; QK_EFORMAT for a bad --tensor-type,
 * an expert tensor whose name has no layer number, a layer number out of [0, n_layer), or a
 * malformed tensor (n_dims, ne). *out is NULL on failure. */
int mx_plan_create(mx_plan **out, const mx_model *model, int ftype, const mx_options *opts,
                   const mx_tensor *tensors, size_t n, qk_err *err);
void mx_plan_free(mx_plan *p); /* accepts NULL */

size_t mx_plan_count(const mx_plan *p);
/* The index (into the tensors given to create) of the k-th tensor llama-quantize processes and
 * writes; k < mx_plan_count(). */
size_t mx_plan_order(const mx_plan *p, size_t k);
/* The decision for tensors[i]; borrowed until mx_plan_free. NULL when i is out of range. */
const mx_decision *mx_plan_get(const mx_plan *p, size_t i);
/* Tensors that needed a fallback, and quantized tensors checked for a fitting row length (llama-quantize's
 * "n_fallback of n_k_quantized + n_fallback" summary). */
size_t mx_plan_n_fallback(const mx_plan *p);
size_t mx_plan_n_checked(const mx_plan *p);

/* Whether llama-quantize would quantize the tensor at all (2-D or more, a ".weight", not a
 * norm, router or position embedding; output.weight unless leave_output). */
int mx_is_quantizable(const mx_tensor *t, const mx_options *o);

/* ggml_n_dims(): the dimensions up to the last one above 1 (trailing 1s do not count). ggml
 * decides "2-D or more" with it, and writes it as a tensor's n_dims. */
uint32_t mx_ggml_n_dims(const int64_t ne[4]);

/* The tensor order of llama.cpp's model loader (see the top of this file): negative, zero or
 * positive like strcmp. Exposed for writers and tests. */
int mx_name_cmp(const char *a, const char *b);

#endif
