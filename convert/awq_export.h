/* awq_export.h — `qkit awq`: run AWQ (calib/awq.h) over a model and write the result.
 *
 * - AW_GGUF: the AWQ-folded, clipped weights quantized to a qkit quantize type or mix (the
 *   search evaluates every candidate with the type the mix gives that tensor): an F32 GGUF of
 *   the folded model is written next to OUT, quantized with the quantize pipeline (optionally
 *   with an importance matrix rescaled by 1/s² per input column, since folding divided those
 *   inputs by s), and removed. An HF folder is converted to a temporary F32 GGUF first.
 * - AW_AWQ / AW_CT: the Hugging Face folder format AutoAWQ (GEMM) / llm-compressor
 *   (compressed-tensors pack-quantized) write, from an HF folder input (its config.json and
 *   tokenizer files are carried over); see formats/awq.h.
 * Every output is written atomically; nothing appears at OUT on failure. */
#ifndef QKIT_CONVERT_AWQ_EXPORT_H
#define QKIT_CONVERT_AWQ_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"

enum aw_format { AW_GGUF = 1, AW_AWQ = 2, AW_CT = 3 };

typedef struct {
    const char *model;     /* HF folder or GGUF (F32/F16/BF16) */
    const char *calib;     /* calibration text */
    const char *out;
    enum aw_format format;
    int ftype;             /* AW_GGUF: the quantize mix */
    const char *imatrix;   /* AW_GGUF: optional, rescaled by the AWQ scales */
    int bits, group;       /* AW_AWQ / AW_CT: 4, 128 */
    int grid, clip, duo;
    int gptq;              /* --format awq/ct: GPTQ rounding (default on; --no-gptq) */
    int rtn;               /* no search at all: plain round-to-nearest (the baseline) */
    int output_loss;       /* candidates scored by the model's output KLD (calib/awq.h) */
    int samples, seq_len;  /* calibration sequences (defaults 128 x 512, or what the text holds) */
    int n_threads;
    void (*progress)(void *user, int block, int n_blocks);
    void *user;
} aw_params;

typedef struct {
    int samples, seq_len;  /* used */
    int n_blocks;
    size_t n_groups;
    double mean_alpha;
    double seconds_search, seconds_total;
    uint64_t out_bytes;
} aw_result;

int aw_run(const aw_params *p, aw_result *r, qk_err *err);

#endif
