/* imatrix.h — importance matrices collected by qkit's engine: llama-imatrix's statistic.
 *
 * For every weight matrix the engine multiplies (an eng_matmul_observer on the context), per
 * input column j: Σ x_j² over the tokens that went through it, and the count of those tokens;
 * per expert for 3-D expert tensors. Which matrices count is llama-imatrix's rule (reference
 * commit c392e50): every matrix of a block ("blk.*": attention, feed-forward, router, experts,
 * shared expert), and output.weight only when asked (--process-output; a tied output is
 * token_embd.weight and never counts). Text is cut as llama-imatrix cuts it: chunks of n_ctx
 * tokens, the first of each replaced by BOS, every token of a chunk counted.
 *
 * Exact, order-independent sums: within one matrix product (one chunk, one matrix, one expert)
 * each column's x² (float products, as llama.cpp) is summed in double in token order, by one
 * thread; that sum is rounded down to a multiple of 2^-64 and added to a 128-bit fixed-point
 * accumulator (formats/imatrix.h). Integer addition is associative, so the accumulators do not
 * depend on the thread count, on how the chunks were split into jobs, or on the order partial
 * files are merged: N jobs over disjoint chunk ranges merged give the bytes of one job over all.
 * A column whose sum reaches 2^64 is an error (an activation of 2^32 would be one), as is a
 * non-finite activation (named: tensor, expert, column, chunk).
 *
 * Contract: the collector borrows the model (names included) for its whole life; it is not
 * thread-safe (the engine calls its observer from one thread). */
#ifndef QKIT_CALIB_IMATRIX_H
#define QKIT_CALIB_IMATRIX_H

#include <stddef.h>
#include <stdint.h>

#include "../formats/imatrix.h"
#include "engine.h"
#include "metrics.h"
#include "perplexity.h"

typedef struct eng_imatrix eng_imatrix;

typedef struct {
    int process_output;     /* also collect output.weight (llama-imatrix --process-output) */
    const char *model_name; /* for messages ("the model" when NULL) */
} eng_imatrix_opts;

int eng_imatrix_create(eng_imatrix **out, const eng_model *m, const eng_imatrix_opts *o, qk_err *err);
void eng_imatrix_free(eng_imatrix *im); /* accepts NULL */

/* The observer to install with eng_ctx_set_observer(c, eng_imatrix_observe, im); errors are
 * sticky and reported by eng_imatrix_status(). eng_imatrix_run() installs it itself. */
void eng_imatrix_observe(void *im, const eng_tensor *w, int expert, const float *x, int n);
int eng_imatrix_status(const eng_imatrix *im, qk_err *err);
/* Wall time spent inside the observer so far: what collecting costs on top of the forward pass. */
double eng_imatrix_observer_seconds(const eng_imatrix *im);

typedef struct {
    int n_ctx;      /* tokens per chunk */
    int first;      /* first chunk (0-based) */
    int last;       /* last chunk, included; -1: the text's last */
    int max_chunks; /* 0: no limit, else at most this many from first */
    int bos;        /* BOS id replacing each chunk's first token, or -1 */
} eng_imatrix_run_opts;

/* The chunks a text of n_tokens allows: *first and *n_chunks. Errors: a context outside
 * [4, model's n_ctx_train] (m may be NULL to skip that), a text shorter than one chunk (the
 * message says how many tokens are needed), a range outside the text. */
int eng_imatrix_plan(const eng_model *m, size_t n_tokens, const eng_imatrix_run_opts *o, int *first,
                     int *n_chunks, qk_err *err);

/* Runs the planned chunks through the model, collecting. ppl (may be NULL) receives the
 * perplexity of the chunks' second halves, as llama-imatrix prints it. cb after each chunk.
 * Sets the chunk size to n_ctx (an error if files merged before used another). */
int eng_imatrix_run(eng_imatrix *im, const int32_t *tokens, size_t n_tokens, const eng_imatrix_run_opts *o,
                    eng_ppl_acc *ppl, eng_chunk_cb cb, void *user, qk_err *err);

/* Tokens per chunk of the statistics: set by a run or the first GGUF file merged, or here
 * (legacy .dat files do not record it; they are read as llama.cpp reads them, with this size).
 * 0 until set. */
uint32_t eng_imatrix_chunk_size(const eng_imatrix *im);
int eng_imatrix_set_chunk_size(eng_imatrix *im, uint32_t n, qk_err *err);

/* Adds a file's statistics (path for messages). Every entry must name a matrix of the model
 * with its shape (a legacy or old-GGUF entry of n_per_mat · n_expert values with one count is
 * spread over the experts, as llama.cpp does); GGUF files must have the same chunk size.
 * Exact when the file holds qkit's exact sums; otherwise its f32 sums are converted (legacy:
 * Σx² = stored · chunk size, count = ncall · chunk size, as llama-imatrix merges them).
 * Chunk counts add; datasets join the set. */
int eng_imatrix_add_file(eng_imatrix *im, const imx_file *f, const char *path, qk_err *err);

/* Adds a dataset name; the set is kept sorted and without duplicates. */
int eng_imatrix_add_dataset(eng_imatrix *im, const char *name, qk_err *err);

int64_t eng_imatrix_chunk_count(const eng_imatrix *im);

/* The model's fingerprint (16 hex digits), written as qkit.imatrix.model_id; files merged later
 * with another id are refused. */
void eng_imatrix_set_model_id(eng_imatrix *im, const char *id);
/* Marks the output as one shard of a sharded run (formats/imatrix.h). */
void eng_imatrix_set_shard(eng_imatrix *im, imx_shard sh);
/* Shard index of count of n_chunks chunks from first: chunks [first + ⌊n·i/N⌋, first + ⌊n·(i+1)/N⌋). */
void eng_imatrix_shard_range(int first, int n_chunks, uint32_t index, uint32_t count, int *sfirst,
                             int *sn);
/* Files to merge: when any is a shard part, all must be shards of one run (same count, plan,
 * model and chunk size), each index exactly once, none missing; the message names the foreign
 * or duplicate file, or the missing shard and its chunks. */
int eng_imatrix_check_shards(const imx_file *const *f, const char *const *paths, size_t n, qk_err *err);

/* Writes every matrix that has statistics (seen in a run or present in a merged file). */
int eng_imatrix_write(const eng_imatrix *im, const char *path, enum imx_format format, size_t *n_skipped,
                      qk_err *err);

typedef struct {
    const char *name;
    int64_t n_per_mat, n_mat;
    int64_t tokens;   /* the largest count of its matrices */
    int64_t n_unseen; /* matrices (experts) that saw no token */
    /* over the columns of the matrices that saw tokens, e = Σx² / count ("activation energy"): */
    double mean, max;
    double frac50;    /* the smallest fraction of those columns whose e add up to half of Σ e */
} eng_imatrix_summary;

/* One summary per matrix with statistics, sorted by name; *out is malloc'd (free it). */
int eng_imatrix_summarize(const eng_imatrix *im, eng_imatrix_summary **out, size_t *n, qk_err *err);

/* Experts of mixture-of-experts blocks that no token was routed to: (block, expert) pairs with
 * a count of 0 in any of the block's expert tensors, and all pairs. */
void eng_imatrix_unrouted(const eng_imatrix *im, int64_t *unrouted, int64_t *total);

#endif
