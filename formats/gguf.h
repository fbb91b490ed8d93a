/* gguf.h — GGUF v3 reader (mmap) and streaming writer, including llama.cpp's split models.
 *
 * File layout (little-endian): "GGUF", u32 version, i64 tensor count, i64 key/value count, the
 * key/value pairs (string key, u32 value type, value), the tensor infos (string name, u32 n_dims,
 * i64 ne[n_dims], u32 ggml type, u64 offset into the data section), zero padding up to
 * general.alignment (u32, default 32), then the data section; every tensor's offset is a multiple
 * of the alignment. Strings are a u64 byte count and the bytes, no terminator. Arrays are a u32
 * element type, a u64 count and the elements; arrays may hold arrays. Version 2 has the same
 * layout; version 1 (32-bit counts) is rejected.
 *
 * Reader contract
 * - gguf_open() maps the file read-only and parses and validates everything except the tensor
 *   bytes. Every pointer it hands out (keys, values, strings, arrays, tensor infos, tensor data)
 *   is borrowed and lives until gguf_close(). Keys, tensor names and string values are
 *   NUL-terminated copies; a string value may itself contain NUL bytes, so its length is kept.
 * - Split models (NAME-00001-of-00003.gguf, keys split.no / split.count / split.tensors.count):
 *   opening any part opens all of them as one model. The metadata is part 1's, the tensors are
 *   those of all parts in part order, each with a data pointer into its own part. The split.*
 *   keys are consumed by the reader and NOT listed among the keys (gguf_n_parts() and
 *   gguf_part_path() describe the split); the writer owns them in the same way.
 * - split.id (a string; qkit writes 16 hex digits, a hash of every part's header and of a
 *   fingerprint of the input, so the same output always has the same id, and every job of a
 *   sharded write computes it alone): when any part has one, every part must have the same, or
 *   the set is refused as mixed (parts of two different writes, e.g. an interrupted one, or
 *   shards of different runs in one folder).
 *   Sets without it (llama.cpp's gguf-split) are read as before.
 * - String values holding a NUL byte are read (gguf_kv_value shows the length) but the typed
 *   getter gguf_get_str() refuses them with QK_EFORMAT: as C strings they would be silently
 *   cut, and they are used as names (architecture, tokenizer model).
 *
 * Writer contract
 * - gguf_writer_open() only records the path; set metadata and declare every tensor, then
 *   gguf_writer_begin_data() lays out the offsets, creates the output(s) as temporaries and
 *   writes header, metadata and tensor infos. Then the tensor bytes follow in declaration order,
 *   one tensor at a time, each in one or several gguf_writer_write() pieces (a piece may not run
 *   past the end of the current tensor; gguf_writer_begin_tensor() first checks that the pieces
 *   are for the tensor the caller means) or in one gguf_writer_write_tensor() call. Only the
 *   piece being written needs to be in memory.
 * - Setters copy everything they are given (keys, strings, arrays, nested arrays); the caller's
 *   buffers may be freed as soon as a call returns.
 * - Errors are sticky: the first one is kept, every later call returns it without doing anything,
 *   and gguf_writer_commit() reports it. gguf_writer_error() shows the message at any time.
 * - gguf_writer_commit() renames the temporaries into place only when every part is complete,
 *   and otherwise removes them; gguf_writer_abort() removes them. The parts of a split output
 *   are renamed as one set (formats/outfile.h: of_commit_set), each carrying the set's split.id. Both free the writer, so
 *   exactly one of them ends every writer's life. Nothing ever appears at the target paths
 *   unless commit succeeds.
 * - Split output (gguf_split_opts with a limit): the path names the model, and a trailing
 *   ".gguf" is dropped to form PREFIX; the parts are PREFIX-00001-of-0000N.gguf (even when N is
 *   1, as llama.cpp's gguf-split does). Part 1 holds all the metadata, later parts only the
 *   split keys (plus general.alignment when it is not 32): split.no, split.count,
 *   split.tensors.count and split.id. A new part starts when the next
 *   tensor would exceed a limit; a tensor larger than max_bytes gets a part of its own.
 */
#ifndef QKIT_FORMATS_GGUF_H
#define QKIT_FORMATS_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"

#define GGUF_VERSION 3
#define GGUF_DEFAULT_ALIGNMENT 32
/* The largest general.alignment qkit reads or writes: every tensor is padded to it, so a 100-byte
 * hostile file asking for 2^31 would make each rewrite of it write gigabytes of zeros (files in
 * the wild use 32, sometimes 64 or 4096). */
#define GGUF_MAX_ALIGNMENT (1u << 20)
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 64  /* tensor names must be shorter (ggml's GGML_MAX_NAME) */
#define GGUF_MAX_DEPTH 8  /* arrays nested deeper than this are rejected */
#define GGUF_MAX_PARTS 65535 /* split.count is a u16 */

#define GGUF_KEY_ALIGNMENT "general.alignment"
#define GGUF_KEY_SPLIT_NO "split.no"
#define GGUF_KEY_SPLIT_COUNT "split.count"
#define GGUF_KEY_SPLIT_TENSORS "split.tensors.count"
#define GGUF_KEY_SPLIT_ID "split.id" /* qkit's: the set's identity (llama.cpp ignores it) */

/* Returned by the typed getters when the key is absent: positive, so `rc < 0` tests catch only
 * real errors and the caller's default (the untouched *out) applies. */
#define GGUF_MISSING 1

enum gguf_vtype {
    GGUF_TYPE_U8 = 0,
    GGUF_TYPE_I8 = 1,
    GGUF_TYPE_U16 = 2,
    GGUF_TYPE_I16 = 3,
    GGUF_TYPE_U32 = 4,
    GGUF_TYPE_I32 = 5,
    GGUF_TYPE_F32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STR = 8,
    GGUF_TYPE_ARR = 9,
    GGUF_TYPE_U64 = 10,
    GGUF_TYPE_I64 = 11,
    GGUF_TYPE_F64 = 12,
    GGUF_TYPE_COUNT = 13,
};

/* "u8", "i8", ... "str", "arr", ... "f64"; "invalid" for anything else. */
const char *gguf_type_name(enum gguf_vtype type);

typedef struct {
    uint64_t len;    /* bytes, without the terminator */
    const char *ptr; /* NUL-terminated; may contain NULs when len says so */
} gguf_str;

/* A metadata value. Arrays: arr.data points to arr.n elements laid out by arr.type:
 * a native C array (uint8_t ... double; bool for GGUF_TYPE_BOOL) for scalars, gguf_str[] for
 * strings and gguf_value[] (each of type GGUF_TYPE_ARR) for arrays of arrays. */
typedef struct gguf_value {
    enum gguf_vtype type;
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        float f32;
        bool b;
        uint64_t u64;
        int64_t i64;
        double f64;
        gguf_str str;
        struct {
            enum gguf_vtype type;
            uint64_t n;
            const void *data;
        } arr;
    };
} gguf_value;

typedef struct {
    const char *name;
    int type;               /* enum q_type (quant/types.h) */
    uint32_t n_dims;        /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the row length; unused dimensions are 1 */
    uint64_t nbytes;
    uint64_t offset;        /* from the start of its part's data section */
    const void *data;       /* nbytes inside the mapped part */
    uint32_t part;          /* 0-based part index */
} gguf_tensor_info;

/* ---- reader ---------------------------------------------------------------------------- */

typedef struct gguf_ctx gguf_ctx;

/* Opens path (any part of a split model opens all parts). *out is NULL on failure. */
int gguf_open(gguf_ctx **out, const char *path, qk_err *err);

/* Parses an in-memory GGUF image (borrowed: must outlive the context). name is used in
 * messages. A part of a split model with more than one part is refused (open it by path). */
int gguf_open_mem(gguf_ctx **out, const void *data, size_t size, const char *name, qk_err *err);

void gguf_close(gguf_ctx *ctx); /* accepts NULL */

uint32_t gguf_version(const gguf_ctx *ctx);   /* of part 1 */
uint32_t gguf_alignment(const gguf_ctx *ctx); /* of part 1 */

uint64_t gguf_n_kv(const gguf_ctx *ctx);
const char *gguf_kv_key(const gguf_ctx *ctx, uint64_t i);         /* NULL when out of range */
const gguf_value *gguf_kv_value(const gguf_ctx *ctx, uint64_t i); /* NULL when out of range */
int64_t gguf_find_key(const gguf_ctx *ctx, const char *key);      /* -1 when absent */

/* Typed getters: QK_OK and *out set; GGUF_MISSING (*out untouched); QK_EFORMAT when the key
 * holds another type (*out untouched). Strings come back NUL-terminated, borrowed. */
int gguf_get_u8(const gguf_ctx *ctx, const char *key, uint8_t *out);
int gguf_get_i8(const gguf_ctx *ctx, const char *key, int8_t *out);
int gguf_get_u16(const gguf_ctx *ctx, const char *key, uint16_t *out);
int gguf_get_i16(const gguf_ctx *ctx, const char *key, int16_t *out);
int gguf_get_u32(const gguf_ctx *ctx, const char *key, uint32_t *out);
int gguf_get_i32(const gguf_ctx *ctx, const char *key, int32_t *out);
int gguf_get_f32(const gguf_ctx *ctx, const char *key, float *out);
int gguf_get_bool(const gguf_ctx *ctx, const char *key, bool *out);
int gguf_get_u64(const gguf_ctx *ctx, const char *key, uint64_t *out);
int gguf_get_i64(const gguf_ctx *ctx, const char *key, int64_t *out);
int gguf_get_f64(const gguf_ctx *ctx, const char *key, double *out);
int gguf_get_str(const gguf_ctx *ctx, const char *key, const char **out);

/* An array whose elements have type elem: *data and *n as in gguf_value.arr. Same statuses. */
int gguf_get_arr(const gguf_ctx *ctx, const char *key, enum gguf_vtype elem, const void **data,
                 uint64_t *n);

/* Element i of an array of strings; NULL when v is not one or i is out of range. */
const char *gguf_arr_str(const gguf_value *v, uint64_t i, uint64_t *len_or_null);

uint64_t gguf_n_tensors(const gguf_ctx *ctx);
const gguf_tensor_info *gguf_tensor(const gguf_ctx *ctx, uint64_t i); /* NULL out of range */
const gguf_tensor_info *gguf_find_tensor(const gguf_ctx *ctx, const char *name);

uint32_t gguf_n_parts(const gguf_ctx *ctx);
const char *gguf_part_path(const gguf_ctx *ctx, uint32_t part);

/* Sum of nbytes over all tensors (padding excluded). */
uint64_t gguf_data_bytes(const gguf_ctx *ctx);

/* ---- split naming ----------------------------------------------------------------------- */

/* Writes "PREFIX-%05u-of-%05u.gguf" for the 0-based part index; QK_ERANGE when it does not fit. */
int gguf_split_path(char *buf, size_t size, const char *prefix, uint32_t part, uint32_t count);

/* ---- writer ----------------------------------------------------------------------------- */

typedef struct {
    uint64_t max_bytes;   /* tensor data per part, each tensor padded to the alignment; 0: none */
    uint64_t max_tensors; /* tensors per part; 0: no limit */
    uint32_t n_parts;     /* > 0 (without limits): exactly this many parts, cut where the tensor
                             data (padded) crosses each N-th of its total, at least one tensor
                             each; fewer tensors than parts is QK_ERANGE at begin_data */
} gguf_split_opts;

typedef struct gguf_writer gguf_writer;

/* opts NULL (or both limits 0): one file written at path. */
int gguf_writer_open(gguf_writer **out, const char *path, const gguf_split_opts *opts,
                     qk_err *err);

/* Setters. Setting an existing key replaces its value and keeps its position. The key
 * general.alignment must be a u32 power of two; split.* keys are reserved. */
int gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v);
int gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v);
int gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v);
int gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v);
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v);
int gguf_writer_set_f64(gguf_writer *w, const char *key, double v);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *s);

/* n elements laid out as gguf_value.arr.data for elem_type. */
int gguf_writer_set_arr(gguf_writer *w, const char *key, enum gguf_vtype elem_type,
                        const void *data, uint64_t n);
int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n);

/* Deep copy of any value, e.g. gguf_kv_value() of a reader. */
int gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v);

/* An input no output part may be: gguf_writer_begin_data() refuses with QK_EALIAS (before it
 * creates anything) when a part path is this file, or, for a folder, the folder or a file in it
 * (formats/file.h: qk_output_check). The path is copied. */
int gguf_writer_protect(gguf_writer *w, const char *path);

/* Declares the next tensor; ne has n_dims entries. Names are unique and < GGUF_MAX_NAME bytes. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, uint32_t n_dims,
                           const int64_t *ne);

/* The next declared tensor starts a new split part (explicit layouts, e.g. keeping an input's
 * parts); turns split output on. Limits in gguf_split_opts still apply on top. */
int gguf_writer_next_part(gguf_writer *w);

/* Ends the declarations: creates the temporaries and writes everything before the data. */
int gguf_writer_begin_data(gguf_writer *w);

/* Appends bytes of the current tensor; a piece never crosses the end of the tensor. */
int gguf_writer_write(gguf_writer *w, const void *data, size_t nbytes);

/* Checks, before its pieces follow through gguf_writer_write(), that name is the next tensor,
 * nothing of it is written yet and nbytes is its declared size; writes nothing. The tensor ends
 * (padding included) with the piece that completes its nbytes. */
int gguf_writer_begin_tensor(gguf_writer *w, const char *name, size_t nbytes);

/* A whole tensor in one call: gguf_writer_begin_tensor(), then one gguf_writer_write(). */
int gguf_writer_write_tensor(gguf_writer *w, const char *name, const void *data, size_t nbytes);

/* The sticky error's message, "" when there is none; borrowed until commit/abort. */
const char *gguf_writer_error(const gguf_writer *w);

/* Number of parts; known after gguf_writer_begin_data() (0 before). */
uint32_t gguf_writer_n_parts(const gguf_writer *w);

/* Before begin_data, single-file output only: the bytes before the tensor data (header,
 * metadata, tensor table, padding) as the declarations stand; 0 when unknown. Tensor types do
 * not change it, so a planner can budget the data: file size = this + Σ tensor bytes, each
 * padded to the alignment. */
uint64_t gguf_writer_header_size(gguf_writer *w);

/* The split set's id (16 hex digits) after begin_data, NULL for a single file. It hashes every
 * part's header (metadata and tensor table, so the plan) and the source id; it does not depend
 * on the tensor bytes, so it is known before any is written. */
const char *gguf_writer_split_id(const gguf_writer *w);

/* A fingerprint of the input the data derives from (formats/hash.h), mixed into split.id so
 * that two runs with the same plan over different inputs get different ids. Before begin_data. */
void gguf_writer_set_source_id(gguf_writer *w, uint64_t id);

/* Sharded writing (one job of count, index 0-based; before begin_data; turns split output on):
 * this writer creates, writes and commits only the parts p (0-based) with p % count == index —
 * byte for byte what an unsharded writer with the same declarations writes at those paths. The
 * caller writes only the tensors gguf_writer_writes() names (in declaration order); the others
 * are passed over. count above the number of parts is QK_ERANGE at begin_data. */
int gguf_writer_set_shard(gguf_writer *w, uint32_t index, uint32_t count);

/* After begin_data: whether this writer writes tensor name's data (always, unsharded). */
bool gguf_writer_writes(const gguf_writer *w, const char *name);
bool gguf_writer_writes_part(const gguf_writer *w, uint32_t part); /* 0-based */

/* Checks that every tensor is complete, then fsyncs and renames all parts. Frees w. */
int gguf_writer_commit(gguf_writer *w, qk_err *err);

/* Removes the temporaries and frees w. Accepts NULL. */
void gguf_writer_abort(gguf_writer *w);

#endif
