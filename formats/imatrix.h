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
 * qkit's exact sums (GGUF only; llama.cpp ignores both the key and the tensors): key
 * qkit.imatrix.sum2_fraction_bits (u32, 64) and per weight two more tensors, "W.in_sum2.exact"
 * (i64 [2, ne0, n_mat]: per column the 64.64 unsigned fixed-point Σx² as two words, the fraction
 * in units of 2^-64 first, then the integer part) and "W.counts.exact" (i64 [n_mat]). W.in_sum2
 * and W.counts hold the same numbers rounded to f32. Integers add associatively, so files merged
 * in any order and grouping give the same sums (calib/imatrix.h).
 *
 * Contract: imx_load() reads either layout (a file starting with "GGUF" is GGUF) and validates
 * everything: counts and lengths against the bytes present, duplicate names, sums without
 * counts, non-finite or negative values, exact tensors that disagree with their f32 rounding.
 * The entries hold the averaged weights exactly as llama-quantize computes them, and the file's
 * own numbers for merging. Everything returned is borrowed until imx_free(). imx_write() writes
 * raw statistics in either layout through the crash-safe output writer. */
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
    int64_t n_unseen;     /* GGUF: matrices whose count is 0 (values 1: uniform weights) */
    /* The file's own numbers, for merging: */
    const float *stored;  /* [n_mat][n_per_mat] legacy: the stored mean·ncall; GGUF: in_sum2 */
    const float *counts;  /* GGUF: [n_mat] tokens per matrix; legacy: NULL */
    const uint64_t *exact;        /* qkit's exact Σx² [n_mat][n_per_mat][2] (lo, hi), or NULL */
    const int64_t *exact_counts;  /* [n_mat] with exact, else NULL */
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
/* GGUF: imatrix.chunk_size; legacy: 0 (the layout does not record it). */
uint32_t imx_chunk_size(const imx_file *f);

/* qkit's keys for sharded collection (GGUF only): qkit.imatrix.model_id (string, the model's
 * fingerprint, in every file qkit writes), and in a shard's part qkit.imatrix.shard (u32 [index,
 * count]) and qkit.imatrix.shard_plan (u32 [first chunk, chunks] of the whole run that was cut
 * into count shards). A merge of the complete set drops the shard keys and equals the file of one
 * run over the whole plan, byte for byte. */
typedef struct {
    uint32_t index, count;          /* count 0: not a shard */
    uint32_t plan_first, plan_chunks;
} imx_shard;

const char *imx_model_id(const imx_file *f);   /* NULL when the file has none */
imx_shard imx_shard_of(const imx_file *f);     /* count 0 when not a shard */

/* ---- 64.64 fixed-point sums ---------------------------------------------------------------- */

/* v >= 0 (finite, below 2^64) as {fraction in units of 2^-64, integer part}, bits below 2^-64
 * dropped; QK_ERANGE otherwise. Deterministic: the same double always gives the same words. */
static inline int imx_fx_from_double(double v, uint64_t out[2])
{
    if (!(v >= 0.0) || !(v < 18446744073709551616.0))
        return QK_ERANGE;
    const uint64_t hi = (uint64_t)v;
    out[1] = hi;
    out[0] = (uint64_t)((v - (double)hi) * 18446744073709551616.0); /* both steps exact */
    return QK_OK;
}

/* acc += v; QK_ERANGE (acc unchanged) when the sum reaches 2^64. */
static inline int imx_fx_add(uint64_t acc[2], const uint64_t v[2])
{
    const uint64_t lo = acc[0] + v[0], carry = lo < acc[0];
    const uint64_t hi = acc[1] + v[1] + carry;
    if (hi < acc[1] || (hi == acc[1] && (v[1] | carry)))
        return QK_ERANGE;
    acc[0] = lo;
    acc[1] = hi;
    return QK_OK;
}

/* The value, rounded to double (integer part first, then the fraction: deterministic). */
double imx_fx_to_double(const uint64_t v[2]);

/* ---- writer ---------------------------------------------------------------------------------- */

typedef struct {
    const char *name;       /* weight tensor name */
    int64_t n_per_mat, n_mat;
    const uint64_t *sum2;   /* [n_mat][n_per_mat][2] Σx² per column, 64.64 fixed point */
    const int64_t *counts;  /* [n_mat] tokens per matrix (>= 0) */
} imx_out_entry;

typedef struct {
    const imx_out_entry *e; /* any order: written sorted by name (bytewise), names unique */
    size_t n;
    const char *const *datasets;
    size_t n_datasets;
    int64_t chunk_count;    /* chunks the statistics come from */
    uint32_t chunk_size;    /* tokens per chunk */
    const char *model_id;   /* GGUF: qkit.imatrix.model_id (the model's fingerprint); NULL: none */
    imx_shard shard;        /* GGUF, count > 0: a part of a sharded run (qkit.imatrix.shard) */
} imx_out;

/* Writes path crash-safely (nothing appears there on failure).
 * IMX_GGUF: current llama.cpp's layout (general.type "imatrix", datasets, chunk count and size;
 *   per entry W.in_sum2 [n_per_mat, n_mat] and W.counts [1, n_mat] as f32, entries sorted by
 *   name) plus qkit's exact tensors after each pair. Matrices with count 0 are written as such.
 * IMX_LEGACY: llama.cpp c392e50's .dat: entries sorted by name, ncall = chunk_count, values
 *   (f32(Σx²) / f32(count)) · f32(ncall) computed in float as llama-imatrix does; a matrix with
 *   count 0 stores 1 · ncall (uniform weights, as current llama.cpp writes it) and an entry whose
 *   matrices all have count 0 is left out; the trailer holds chunk_count and the last dataset.
 *   Exactness and per-expert counts are lost. *n_skipped (may be NULL) receives the entries left
 *   out. */
int imx_write(const imx_out *o, const char *path, enum imx_format format, size_t *n_skipped,
              qk_err *err);

#endif
