/* imatrix.h — importance matrices as llama.cpp's llama-imatrix writes them, in both layouts.
 *
 * Legacy ".dat" (llama.cpp c392e50, examples/imatrix): all little-endian
 *     i32 n_entries (>= 1)
 *     n_entries × { i32 name_len, name bytes, i32 ncall, i32 nval (>= 1), f32 values[nval] }
 *     optional trailer: i32 chunk_count, i32 dataset_len, dataset bytes
 * where values[j] = (sum of x_j² / count_j) * ncall; llama-quantize divides by ncall (when > 0)
 * to get the mean of x_j², the importance weight it hands to the quantizers.
 *
 * GGUF (later llama.cpp): keys imatrix.datasets (array of strings), imatrix.chunk_count (u32),
 * imatrix.chunk_size (u32) (general.type = "imatrix" is usual but not required, as in
 * llama-quantize); per weight tensor W two f32 tensors, "W.in_sum2" of shape [ne0, n_mat] (sums
 * of x_j² per matrix, n_mat > 1 for expert tensors) and "W.counts" with n_mat values (tokens per
 * matrix). The weight is in_sum2 / count, or 1 for a matrix that never saw a token. Other
 * tensors are ignored.
 *
 * Contract: imx_load() reads either layout (a file starting with "GGUF" is GGUF) and validates
 * everything: counts and lengths against the bytes present, duplicate names, sums without
 * counts, non-finite values. The entries hold the averaged weights exactly as llama-quantize
 * computes them. Everything returned is borrowed until imx_free(). */
#ifndef QKIT_FORMATS_IMATRIX_H
#define QKIT_FORMATS_IMATRIX_H

#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"

enum imx_format { IMX_LEGACY = 1, IMX_GGUF = 2 };

typedef struct {
    const char *name;     /* weight tensor name: "blk.0.attn_q.weight" */
    int64_t n_per_mat;    /* values per matrix: the weight's row length ne[0] */
    int64_t n_mat;        /* matrices: 1, or the expert count (the weight's ne[2]) */
    const float *values;  /* [n_mat][n_per_mat] averaged importance */
    int64_t ncall;        /* legacy: ncall; GGUF: the largest count (tokens seen) */
} imx_entry;

typedef struct imx_file imx_file;

/* Reads path. *out is NULL on failure; messages start with the path. */
int imx_load(imx_file **out, const char *path, qk_err *err);
/* The same from memory (borrowed during the call only); name is used in messages. */
int imx_load_mem(imx_file **out, const void *data, size_t size, const char *name, qk_err *err);
void imx_free(imx_file *f); /* accepts NULL */

int imx_format_of(const imx_file *f);
size_t imx_count(const imx_file *f);
const imx_entry *imx_entry_at(const imx_file *f, size_t i); /* NULL when out of range */
const imx_entry *imx_find(const imx_file *f, const char *name); /* NULL when absent */
/* Chunks the statistics were collected on (legacy trailer or imatrix.chunk_count); 0 unknown. */
int64_t imx_chunk_count(const imx_file *f);
size_t imx_n_datasets(const imx_file *f);
const char *imx_dataset(const imx_file *f, size_t i); /* NULL when out of range */

#endif
