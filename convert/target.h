/* target.h — quality at a size budget: one ggml type per tensor so that the file fits a byte
 * budget and the predicted loss of quality (mean KL divergence of the output distribution against
 * the unquantized model) is minimal.
 *
 * Model of the loss: quantizing tensor t to type τ adds s_t · e_t(τ) to the mean KLD, where
 *   e_t(τ)  is the relative quantization error qkit's own quantizer produces,
 *           Σ w_j (x − q)² / Σ w_j x² (w the importance matrix's weights of that matrix, or 1),
 *           measured without the engine on up to TG_SAMPLE_ROWS evenly spaced rows per tensor;
 *   s_t     is the tensor's sensitivity, measured with the engine: the mean KLD on calibration
 *           text of the model with only t quantized to a probe type, divided by e_t(probe).
 * That takes 1 + (quantizable tensors) engine passes, whatever the number of candidate types,
 * and is cached in a JSON file keyed by the model's, the importance matrix's and the text's
 * fingerprints, so another budget needs no engine pass at all.
 *
 * Allocation: minimizing Σ s_t e_t(τ_t) under Σ bytes_t(τ_t) ≤ budget is a multiple-choice
 * knapsack, solved by dynamic programming over the budget in units of ⌈budget / TG_DP_UNITS⌉
 * bytes (every tensor's size rounded up, so the result never exceeds the budget), then a greedy
 * fill of what rounding left over (the upgrade with the best loss decrease per byte that still
 * fits, repeated). Deterministic: the same inputs give the same choice on any machine and thread
 * count. */
#ifndef QKIT_CONVERT_TARGET_H
#define QKIT_CONVERT_TARGET_H

#include <stddef.h>
#include <stdint.h>

#include "../formats/gguf.h"
#include "../formats/imatrix.h"
#include "../quant/status.h"
#include "mix.h"

#define TG_SAMPLE_ROWS 256
#define TG_DP_UNITS 16384
#define TG_MAX_TYPES 16

typedef struct {
    uint64_t budget;          /* bytes for the quantizable tensors' data, each padded to alignment */
    uint32_t alignment;
    const int *types;         /* candidate q_types; a type that does not fit a tensor's rows is
                                 not offered for it */
    size_t n_types;
    const char *model_path;   /* the GGUF the engine opens (the quantize input) */
    const char *calib_path;   /* calibration text */
    int n_ctx, n_chunks;      /* engine passes: chunks of n_ctx tokens */
    int probe_type;           /* q_type of the sensitivity probe; -1: q3_K where it fits, else
                                 the smallest candidate */
    const char *cache_path;   /* NULL: no cache; else read when it matches, (re)written when not */
    const char *imatrix_path; /* for the cache key; NULL when none */
    int n_threads;
    void (*progress)(void *user, const char *stage, size_t done, size_t total);
    void *user;
} tg_params;

/* One quantizable tensor as the allocator sees it. */
typedef struct {
    size_t index;             /* into the model's tensors */
    const char *name;
    int64_t ne[4];
    int src_type;
    const void *data;         /* the tensor's bytes (mapped) */
    const float *imat;        /* [n_mat][ne0] importance weights, or NULL */
} tg_tensor;

typedef struct {
    size_t index;
    int type;                 /* chosen */
    uint64_t bytes;           /* padded */
    double err;               /* e_t(type) */
    double sens;              /* s_t */
    double pred;              /* s_t · e_t(type) */
    double probe_kld;
    int probe_type;
} tg_choice;

typedef struct {
    tg_choice *t;             /* one per tensor given, same order */
    size_t n;
    double pred_kld;          /* Σ pred */
    uint64_t bytes;           /* Σ bytes */
    uint64_t min_bytes;       /* the smallest possible: every tensor at its smallest type */
    int engine_passes;        /* 0 when the cache held everything */
    int cache_hit;
    double seconds_errors, seconds_sens, seconds_alloc;
} tg_result;

/* Measures (or reads from the cache) and allocates. A budget below min_bytes is QK_ERANGE with a
 * message saying the smallest possible size; a tensor no candidate type fits is QK_EFORMAT; a
 * cache of another model, importance matrix or text is QK_EFORMAT naming the file and the key. */
int tg_allocate(const tg_params *p, const tg_tensor *t, size_t n, tg_result *r, qk_err *err);
void tg_result_free(tg_result *r);

/* The default candidates: q2_K q3_K q4_K q5_K q6_K iq4_xs iq4_nl q5_0 q8_0 f16. */
size_t tg_default_types(int *types /* [TG_MAX_TYPES] */);

#endif
