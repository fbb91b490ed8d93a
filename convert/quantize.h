/* quantize.h — the llama-quantize pipeline: GGUF in (split too), a mix, an optional importance
 * matrix, GGUF out, and a report of what was done to every tensor.
 *
 * Contract: for the same input, mix, options and importance matrix the output tensors (types,
 * shapes, order, bytes) and metadata equal llama-quantize's at llama.cpp c392e50, whatever
 * n_threads and chunk_values are. Tensors stream through in pieces of whole rows (never across
 * two expert matrices of a 3-D tensor): besides the memory-mapped input, whose pages are dropped
 * after each piece, memory holds one piece (about chunk_values floats and its quantized bytes)
 * and a few rows per thread, never a whole tensor. Everything that can be checked before writing is checked first (type plan,
 * requantization, imatrix names and sizes, non-finite weights); the output appears only when
 * complete (crash-safe writer), so a failed run leaves nothing behind.
 *
 * Differences from llama-quantize, all deliberate:
 * - a fallback (rows not a multiple of the block size) is reported as a warning and counted;
 * - a tensor with no imatrix entry gets a warning and unweighted quantization, never an abort
 *   (llama.cpp aborts for Q2_K_S tensors, llama.cpp issue #9167);
 * - imatrix entries that name no tensor of the model are an error ("different model");
 * - an explicit type (--pure, --tensor-type, --output-tensor-type, --token-embedding-type) that
 *   does not fit a row length falls back like the mix does, instead of crashing;
 * - non-finite weights in any float tensor are an error naming the tensor and the row. */
#ifndef QKIT_CONVERT_QUANTIZE_H
#define QKIT_CONVERT_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"
#include "mix.h"

/* Default piece size in values: 16 MiB of float32 scratch. */
#define QZ_CHUNK_VALUES ((int64_t)4 << 20)

typedef struct {
    const char *in_path;      /* GGUF; any part of a split model */
    const char *out_path;     /* with keep_split: PREFIX[.gguf] → PREFIX-0000i-of-0000n.gguf */
    int ftype;                /* enum mx_ftype with an mx_mix entry */
    int n_threads;            /* <= 0: OpenMP default */
    const char *imatrix_path; /* NULL: none; legacy .dat or GGUF */
    mx_options mix;           /* pure, leave_output, output/token-embedding types, tensor types;
                                 has_imatrix and keep_order are set by the pipeline */
    int allow_requantize;     /* quantized input tensors may be dequantized and requantized */
    int keep_split;           /* output parts follow the input parts */
    uint64_t split_max_bytes; /* > 0: gguf-split parts of at most this much tensor data */
    uint64_t split_max_tensors; /* > 0: at most this many tensors per part */
    uint32_t split_parts;     /* > 0: exactly this many parts of balanced size (gguf.h) */
    uint32_t shard_index, shard_count; /* count > 0: this job writes only the parts p (0-based)
                                 with p % count == index, byte-identical to the same parts of an
                                 unsharded run with the same split; without a split option the
                                 split is shard_count balanced parts */
    int64_t chunk_values;     /* values per piece, rounded down to whole rows (at least one) and
                                 cut at expert matrix boundaries; <= 0: QZ_CHUNK_VALUES. Only
                                 memory and speed depend on it, never the output or the report */
    /* Quality at a size budget (convert/target.h): target_bytes (the whole file) or target_bpw
     * (tensor data bits per weight) > 0 choose every quantizable tensor's type; ftype then only
     * names the file type written when no tensor type dominates. */
    uint64_t target_bytes;
    double target_bpw;
    const int *target_types;  /* candidates; NULL: tg_default_types() */
    size_t n_target_types;
    const char *calib_path;   /* text for the sensitivities (required with a target) */
    int calib_ctx, calib_chunks; /* <= 0: 256 and 8 */
    const char *sens_cache;   /* NULL: none */
    /* Optional callbacks (NULL: none); user is passed back. Warnings also land in the report. */
    void (*warn)(void *user, const char *msg);
    /* After every tensor (done tensors of total, bytes_done source bytes), and within a tensor
     * that takes several pieces after each piece (done unchanged, bytes_done growing). */
    void (*progress)(void *user, size_t done, size_t total, uint64_t bytes_done);
    void *user;
} qz_params;

/* Sets the defaults (ftype Q4_K_M, no imatrix, mix options from mx_options_init). */
void qz_params_init(qz_params *p);

enum qz_imatrix_use { QZ_IMAT_NA = -1, QZ_IMAT_NONE = 0, QZ_IMAT_USED = 1 };

typedef struct {
    char *name;
    uint32_t n_dims;
    int64_t ne[4];
    int src_type, type;        /* enum q_type */
    uint64_t src_bytes, bytes;
    int quantized;             /* 0: copied as is */
    int fallback;              /* the row length forced a fallback type */
    int imatrix;               /* enum qz_imatrix_use (NA: copied, or no --imatrix) */
    int other_shard;           /* sharded run: another job writes it (rel_rmse NaN, not computed) */
    int targeted;              /* the size-budget allocation chose its type */
    double sens, pred_kld;     /* with a target: sensitivity, predicted KLD contribution */
    double rel_rmse;           /* sqrt(Σw(x−q)² / Σw·x²) over the tensor (w: importance weight
                                  when used, else 1); 0 for copies; NaN for an all-zero tensor */
} qz_tensor_report;

typedef struct {
    const char *mix_name;      /* static */
    int ftype;
    size_t n;                  /* tensors, in output order */
    qz_tensor_report *t;
    uint64_t n_params, src_bytes, out_bytes;
    double bpw;                /* out_bytes * 8 / n_params */
    double seconds, mb_per_s;  /* wall time; source MB (10^6 bytes) per second */
    size_t n_quantized, n_fallback, n_checked, n_no_imatrix;
    size_t n_warnings;
    char **warnings;
    uint32_t n_parts_in, n_parts_out;
    uint32_t shard_index, shard_count; /* as given; count 0: unsharded */
    uint32_t n_parts_written;  /* parts this run wrote (all of them unless sharded) */
    char split_id[17];         /* split output: the set's split.id, else "" */
    /* size budget (when given) */
    int target;
    uint64_t target_limit;     /* the file size (or tensor data bytes for --target-bpw) allowed */
    double pred_kld;           /* predicted mean KLD of the allocation */
    int engine_passes, cache_hit;
    double seconds_sens, seconds_errors;
    int n_threads;
    /* imatrix (when given) */
    int imatrix_format;        /* enum imx_format, 0 when none */
    size_t imatrix_entries;
    int64_t imatrix_chunks;
} qz_report;

/* Runs the whole pipeline. On success *report (may be NULL) receives the report (free with
 * qz_report_free). On failure *output_failed (may be NULL) is 1 when writing the output failed
 * (disk full, permissions) and 0 for any problem with the inputs or options. */
int qz_quantize(const qz_params *p, qz_report **report, int *output_failed, qk_err *err);
void qz_report_free(qz_report *r); /* accepts NULL */

/* The type every tensor of the GGUF at in_path gets in the mix ftype (without overrides), -1 for
 * tensors copied as they are: (*names)[i], (*types)[i] for i < *n, malloc'd (free each name, then
 * both arrays). For searches that must use the quantizer a tensor will be written with (AWQ). */
int qz_plan_types(const char *in_path, int ftype, int has_imatrix, char ***names, int **types,
                  size_t *n, qk_err *err);

/* The first of nrows rows of ne0 values of type (data: raw tensor bytes) that holds a NaN or Inf,
 * or -1 when there is none or qkit cannot read the type. Float types are checked bit by bit,
 * others dequantized row by row. For naming the tensor behind a non-finite figure. */
int64_t qz_first_nonfinite_row(int type, const void *data, int64_t ne0, int64_t nrows, int n_threads);

#endif
