/* safetensors.h — safetensors reader (mmap; single files and sharded models) and streaming writer.
 *
 * File layout: a u64 little-endian header length N, N bytes of UTF-8 JSON (an object; writers may
 * pad it with trailing spaces), then the data section. Each header key other than "__metadata__"
 * is a tensor name whose value is {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets":
 * [begin, end]}, the offsets being byte positions relative to the start of the data section.
 * Data is row-major and little-endian; shape[0] is the outermost (slowest-varying) dimension, the
 * reverse of ggml's ne[]. "__metadata__", when present, maps strings to strings.
 *
 * Reader contract
 * - st_file_open() maps the file read-only and validates the whole header before returning:
 *   dtype known, 0..ST_MAX_DIMS dims (0 dims is a scalar), each dim a non-negative integer,
 *   shape × dtype size equal to end - begin (overflow-checked), begin <= end <= data section
 *   size, no two tensors sharing a byte, no duplicate names, metadata values all strings. Gaps
 *   between tensors and bytes after the last one are allowed. The tensor bytes themselves are
 *   never read, so opening costs only the header pages.
 * - Numbers are read through cJSON (doubles): a dim or offset is accepted when its value is an
 *   integer in [0, 2^53]; "2.0" therefore reads as 2.
 * - Every pointer handed out (tensors, names, data, paths, metadata) is borrowed and lives until
 *   the file or model is closed. Tensors keep header order.
 * - st_model_open() accepts a .safetensors file, a *.json shard index (weight_map: tensor → shard
 *   file relative to the index's folder, optional metadata), or a folder: its
 *   model.safetensors.index.json if present, else its model.safetensors, else all its
 *   *.safetensors files in byte-wise sorted name order. All files form ONE namespace: a name in two
 *   files is an error. Tensors are ordered by file (index: shard names sorted; folder: sorted
 *   names), then header order. Every weight_map entry must be found in the shard it names; a
 *   tensor present in a shard but missing from the weight_map is still part of the model (as
 *   llama.cpp's converter reads whole shards). Lookup by name is a binary search.
 * - Model metadata is the __metadata__ of the first file (shards written together share it);
 *   the index's own "metadata" object (total_size ...) is exposed separately, each value as a
 *   string (strings verbatim, anything else as compact JSON).
 * - Messages name the file and, where one is involved, the tensor:
 *   "model.safetensors: tensor 'w': data ends at byte 9123 but the data section has 9000".
 *
 * Writer contract
 * - st_writer_open() takes the full list of tensor specs (and optional metadata pairs), validates
 *   it, creates PATH.tmp-XXXXXX (formats/outfile.h) and writes the header: "__metadata__" first,
 *   then the tensors in the caller's order with consecutive data_offsets in that order, the JSON
 *   padded with spaces so the data section starts at a multiple of 8. Numbers are written as
 *   plain integers. Specs and metadata are copied; the caller's arrays may be freed at once.
 * - st_writer_write() appends bytes to the data section: the tensors' bytes in declaration order,
 *   in pieces of any size (a piece may span tensors, since the data has no padding). Writing past
 *   the declared total is an error.
 * - Errors are sticky: the first is kept, later calls return it, st_writer_commit() reports it.
 *   Commit also fails when fewer bytes than declared were written. Commit and abort both free the
 *   writer and, unless commit succeeds, remove the temporary: nothing half-written ever appears
 *   at PATH.
 */
#ifndef QKIT_FORMATS_SAFETENSORS_H
#define QKIT_FORMATS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20) /* headers longer than 100 MiB are refused, as HF does */

typedef enum {
    ST_F64,
    ST_F32,
    ST_F16,
    ST_BF16,
    ST_I64,
    ST_I32,
    ST_I16,
    ST_I8,
    ST_U8,
    ST_BOOL,
    ST_F8_E4M3,
    ST_F8_E5M2,
    ST_U16,
    ST_U32,
    ST_U64,
    ST_DTYPE_COUNT
} st_dtype;

/* "F32", "BF16" ... as spelled in the header; "invalid" for values outside the enum. */
const char *st_dtype_name(st_dtype dtype);
/* Bytes per element; 0 for values outside the enum. */
size_t st_dtype_size(st_dtype dtype);
/* Exact (case-sensitive) header spelling to st_dtype; -1 when unknown. */
int st_dtype_from_name(const char *name);

typedef struct {
    const char *name;
    st_dtype dtype;
    int n_dims;                   /* 0..ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS];   /* shape[0] outermost; entries past n_dims are 0 */
    uint64_t n_elements;          /* product of the dims; 1 for a scalar */
    uint64_t nbytes;
    uint64_t offset;              /* of the first byte, from the start of its file */
    const void *data;             /* nbytes inside the mapping */
    const char *path;             /* the file holding it */
    uint32_t file;                /* index of that file in its model (0 for st_file_open) */
} st_tensor;

/* ---- one file ---------------------------------------------------------------------------- */

typedef struct st_file st_file;

/* Maps and validates path. *out is NULL on failure. */
int st_file_open(st_file **out, const char *path, qk_err *err);
/* Same over an in-memory image (borrowed: it must outlive the file); name is used in messages
 * and as the tensors' path. */
int st_file_open_mem(st_file **out, const void *data, size_t size, const char *name, qk_err *err);
void st_file_close(st_file *f); /* accepts NULL */

const char *st_file_path(const st_file *f);
size_t st_file_n_tensors(const st_file *f);
const st_tensor *st_file_tensor(const st_file *f, size_t i);        /* NULL out of range */
const st_tensor *st_file_find(const st_file *f, const char *name);  /* NULL when absent */
size_t st_file_n_meta(const st_file *f);
const char *st_file_meta_key(const st_file *f, size_t i);   /* NULL out of range */
const char *st_file_meta_value(const st_file *f, size_t i); /* NULL out of range */
/* Sum of the tensors' nbytes. */
uint64_t st_file_data_bytes(const st_file *f);

/* ---- a model: one file, a sharded checkpoint, or a folder -------------------------------- */

typedef struct st_model st_model;

int st_model_open(st_model **out, const char *path, qk_err *err);
void st_model_close(st_model *m); /* accepts NULL */

size_t st_model_n_tensors(const st_model *m);
const st_tensor *st_model_tensor(const st_model *m, size_t i);       /* NULL out of range */
const st_tensor *st_model_find(const st_model *m, const char *name); /* NULL when absent */
size_t st_model_n_files(const st_model *m);
const char *st_model_file_path(const st_model *m, size_t i); /* NULL out of range */
uint64_t st_model_data_bytes(const st_model *m);

/* __metadata__ of the first file. */
size_t st_model_n_meta(const st_model *m);
const char *st_model_meta_key(const st_model *m, size_t i);
const char *st_model_meta_value(const st_model *m, size_t i);
/* The index's "metadata" object (0 entries when the model was not opened through an index). */
size_t st_model_n_index_meta(const st_model *m);
const char *st_model_index_meta_key(const st_model *m, size_t i);
const char *st_model_index_meta_value(const st_model *m, size_t i);

/* ---- writer ------------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    st_dtype dtype;
    int n_dims;
    int64_t shape[ST_MAX_DIMS]; /* shape[0] outermost */
} st_tensor_spec;

/* Bytes of a tensor of this spec; QK_EFORMAT for an invalid dtype, n_dims or negative dim,
 * QK_ERANGE when the size overflows 64 bits. */
int st_spec_nbytes(const st_tensor_spec *spec, uint64_t *nbytes);

typedef struct st_writer st_writer;

/* meta_keys/meta_vals: n_meta pairs (may be NULL when n_meta is 0). *out is NULL on failure. */
int st_writer_open(st_writer **out, const char *path, const st_tensor_spec *specs, size_t n,
                   const char *const *meta_keys, const char *const *meta_vals, size_t n_meta,
                   qk_err *err);
int st_writer_write(st_writer *w, const void *data, size_t nbytes, qk_err *err);
/* Bytes still expected before commit can succeed. */
uint64_t st_writer_remaining(const st_writer *w);
int st_writer_commit(st_writer *w, qk_err *err);
void st_writer_abort(st_writer *w); /* accepts NULL */

/* One call for tensors already in memory: data[i] holds specs[i]'s bytes. */
int st_write_file(const char *path, const st_tensor_spec *specs, const void *const *data, size_t n,
                  const char *const *meta_keys, const char *const *meta_vals, size_t n_meta,
                  qk_err *err);

#endif
