/* awq.h — activation-aware weight quantization (Lin et al., 2023) on qkit's engine.
 *
 * Block by block, in order, each block fed by the outputs of the already processed (quantized)
 * blocks before it:
 *   - the inputs of each group of linears that share an input are captured through the engine's
 *     matmul observer (q, k, v ← attention norm; gate, up ← ffn norm; down ← up; o ← v when v's
 *     rows equal o's columns, i.e. no grouped-query attention);
 *   - per input channel s = mean|x|^α (duo scaling: divided by the group's normalized mean |w|
 *     to the power 1 − α, as AutoAWQ and llm-compressor), normalized by sqrt(max s · min s), for α
 *     on a grid of `grid` points in [0, 1); the α with the least squared error of the group's
 *     outputs (fake-quantized scaled weights against the original, on the captured inputs) wins;
 *   - folding: the preceding norm weight (or the preceding linear's rows and bias) is divided by
 *     s, the linears' input columns multiplied by s — the unquantized model computes the same
 *     function up to float rounding;
 *   - clipping (not for q and k): per row and group of input columns the range max|w| shrunk by
 *     i/grid (i < grid/2) that minimizes the group's partial-output error on the inputs.
 * The fake quantizer is either AutoAWQ's asymmetric `bits`-bit round-to-nearest per group of
 * `group` columns, or a ggml type's own quantizer per tensor (type_of), with importance weights
 * from the captured inputs' mean x² (scaled by 1/s²) — so a GGUF target is searched with the
 * quantizer that will write it.
 * With gptq (AutoAWQ's quantizer only), the linears are then rounded by GPTQ (Frantar et al., 2022)
 * instead of to nearest, once the block's folds are done, on the inputs as the folded model sees
 * them (experts on their own routed rows), and skip the clipping search; awq_codes() hands out
 * the codes.
 *
 * The model is changed in place: every processed linear points to an owned f32 copy (folded and
 * clipped, not quantized: awq_weight() hands it to writers), norms and biases are the engine's
 * owned f32 vectors, changed in place. While later blocks are processed, earlier blocks run with
 * their fake-quantized weights. Deterministic: no randomness, fixed summation orders, any thread
 * count.
 *
 * Mixture-of-experts blocks (AutoAWQ's Mixtral / Qwen3-MoE recipe):
 *   - gate, up ← ffn norm: every expert's gate and up (3-D tensors, searched as one matrix of
 *     n_expert · rows rows) and the shared expert's gate and up get one scale vector, the input
 *     captured at the router (every token's normed input), scored by the block's output error;
 *     folding divides the ffn norm weight by s and multiplies the columns of the linears and of
 *     the router (it reads the same input and stays unquantized: routing is unchanged);
 *   - down ← up per expert: expert e's down input is captured where the engine runs expert e's
 *     slice (only the tokens routed to it); its own s is scored by the error of that expert's
 *     down output on those rows (AutoAWQ inspects the linear itself here: one block evaluation
 *     per expert and candidate would cost n_expert times the dense search), folded into expert
 *     e's up rows; experts that received no token keep s = 1 and are not clipped;
 *   - the shared expert's down ← its up, as a dense block's;
 *   - clipping of every expert linear over its captured rows, as for dense linears. */
#ifndef QKIT_CALIB_AWQ_H
#define QKIT_CALIB_AWQ_H

#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"
#include "engine.h"

typedef struct {
    int bits, group;       /* AutoAWQ fake quantizer: 4, 128 */
    int grid;              /* α grid points (20) */
    int clip;              /* search clipping ranges */
    int asym_clip;         /* shrink each end of a group's range on its own (else AutoAWQ's
                              symmetric ±max|w| shrink) */
    int duo;               /* duo scaling (default on) */
    int rtn;               /* no search, no clipping: scales of 1 (the round-to-nearest baseline) */
    int use_imatrix;       /* a ggml quantizer gets importance weights (mean x² / s²), as the
                              final quantization will when it has an importance matrix */
    int search_tokens;     /* tokens (evenly spaced over all samples) the losses use; 0: 2048 */
    int output_loss;       /* score candidates by the model's output (mean KL divergence of the
                              next-token distribution against the model before the group was
                              quantized, through all later blocks and the head) instead of the
                              block's output error: costlier, closer to what perplexity sees */
    int clip_tokens;       /* tokens for the clipping search; 0: 512 */
    int gptq;              /* AutoAWQ's quantizer: round with GPTQ's error feedback (after the
                              scales) instead of to nearest; no clipping search then (ranges tuned
                              for rounding to nearest made GPTQ worse) */
    /* NULL: AutoAWQ's quantizer for every linear; else the ggml type (enum q_type) a linear will
     * be written in, searched with that type's quantizer */
    int (*type_of)(void *user, const char *name);
    void *user;
    void (*progress)(void *progress_user, int block, int n_blocks);
    void *progress_user;
} awq_opts;

typedef struct {
    char name[64];         /* the group's first linear */
    int block;
    int expert;            /* the group is one expert's down projection: its index; else -1 */
    double alpha;          /* chosen */
    double loss0, loss;    /* output MSE at α = 0 and at the chosen α (fake-quantized) */
} awq_group_report;

/* Captured input rows GPTQ's Hessians use (at most; evenly spaced over the samples) */
enum { AWQ_GPTQ_ROWS = 16384 };

typedef struct awq_run awq_run;

/* Runs AWQ over n_seq sequences of seq_len tokens (tokens[n_seq][seq_len], BOS first where the
 * model uses one). m must stay alive while run lives; its weights are replaced (see above). */
int awq_run_model(awq_run **out, eng_model *m, const int32_t *tokens, int n_seq, int seq_len,
                  const awq_opts *o, qk_err *err);
void awq_run_free(awq_run *r); /* accepts NULL; the model's weights then point to freed memory:
                                  free the model first or do not use it */

/* The processed (folded, clipped, unquantized) f32 weight of a GGUF-named linear, NULL when AWQ
 * did not change it; [ne1][ne0]. A 3-D expert tensor comes as all its experts' rows: ne1 is
 * n_expert · rows per expert, expert e's matrix the e-th n_expert-th of them. Borrowed until
 * awq_run_free. */
const float *awq_weight(const awq_run *r, const char *name, int64_t *ne0, int64_t *ne1);

/* 1 when the weight awq_weight returns was only folded and is to be written unquantized (a
 * mixture-of-experts router, whose columns were scaled with the experts' inputs), else 0. */
int awq_weight_dense(const awq_run *r, const char *name);

/* The factor s a linear's input columns were multiplied by (its inputs are divided by it in the
 * folded model), NULL when unscaled: [n_mat][ne0], n_mat the tensor's matrix count (n_expert for
 * a 3-D expert tensor, expert e's scales at s + e · ne0; 1 for a plain matrix), into *n_mat when
 * not NULL. An importance matrix of the original model becomes Σx²/s² for it, matrix by
 * matrix. */
const float *awq_input_scale(const awq_run *r, const char *name, int64_t *n_mat);

/* GPTQ's codes [ne1][ne0], scales and zeros [ne1][ne0 / group] of a linear (AutoAWQ's grid): 1
 * when it has them (its awq_weight() is then their dequantized values), else 0. Borrowed. */
int awq_codes(const awq_run *r, const char *name, const uint8_t **codes, const float **scales,
              const uint8_t **zeros);
size_t awq_n_groups(const awq_run *r);
const awq_group_report *awq_group(const awq_run *r, size_t i);

/* AutoAWQ's asymmetric group quantizer for one row of n values (n a multiple of group):
 * per group scale = max(max − min, 1e-5) / (2^bits − 1), zero = clamp(round(−min / scale), 0,
 * 2^bits − 1), q = clamp(round(w / scale) + zero, 0, 2^bits − 1); writes q [n] and per group
 * scale and zero when non-NULL, and the dequantized row (q − zero) · scale into deq when
 * non-NULL. Scales are rounded to f16 first, as the checkpoint stores them. */
void awq_quantize_row(const float *w, int64_t n, int group, int bits, uint8_t *q, float *scales,
                      uint8_t *zeros, float *deq);

#endif
