/* sweep.h — compare quantization schemes on one model: every llama.cpp mix asked for and every
 * size-budget point (--target-bpw) is quantized to a temporary file, all of them are verified
 * against the unquantized model in one engine pass over the text, and the results come back as
 * rows (size, bits per weight, PPL, KLD mean/p99, top-1) plus an SVG chart of KLD against bits per
 * weight with the mixes and the budget points as two series. Temporary files are deleted.
 *
 * Deterministic: the same inputs give the same rows (timings aside) and the same chart. */
#ifndef QKIT_CONVERT_SWEEP_H
#define QKIT_CONVERT_SWEEP_H

#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"

#define SW_MAX_SCHEMES 32

typedef struct {
    const char *model;        /* GGUF (F32/F16/BF16) or a Hugging Face folder (converted to a
                                 temporary F32 GGUF first) */
    const char *text;         /* evaluation text */
    const char *imatrix;      /* NULL: none */
    const char *calib;        /* text the size-budget sensitivities are measured on (required
                                 with bpw points); NULL otherwise */
    const char *const *mixes; /* llama.cpp mix names */
    size_t n_mixes;
    const double *bpw;        /* size-budget points */
    size_t n_bpw;
    const char *tmp_dir;      /* where the temporary files go */
    int n_ctx, max_chunks;    /* evaluation chunks (max 0: all) */
    int n_threads;
    void (*progress)(void *user, const char *stage, size_t done, size_t total);
    void *user;
} sw_params;

typedef struct {
    char name[32];            /* "Q4_K_M" or "bpw 4.50" */
    int is_target;
    uint64_t bytes;           /* file size */
    double bpw;               /* tensor data bits per weight */
    double ppl, kld_mean, kld_p99, top1;
    double pred_kld;          /* targets: predicted */
    double seconds;           /* quantizing it */
    int skipped;              /* a budget below the smallest possible file: not measured */
    char note[QK_ERR_MSG_MAX]; /* why it was skipped */
} sw_row;

typedef struct {
    sw_row rows[SW_MAX_SCHEMES];
    size_t n;
    double ref_ppl;
    double seconds_verify;
} sw_result;

int sw_run(const sw_params *p, sw_result *r, qk_err *err);

/* The chart as an SVG document (malloc'd, NUL-terminated): mean KLD (log scale) against bits
 * per weight; title is escaped. */
char *sw_svg(const sw_result *r, const char *title);

#endif
