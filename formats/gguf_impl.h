/* gguf_impl.h — pieces shared by gguf_read.c and gguf_write.c; not part of the public API. */
#ifndef QKIT_FORMATS_GGUF_IMPL_H
#define QKIT_FORMATS_GGUF_IMPL_H

#include "gguf.h"

#define GGUF_NONE UINT64_MAX

/* Bytes of one scalar of type t in a file; 0 for strings, arrays and invalid types. */
size_t gguf_vtype_size(uint32_t t);

/* Sizes from files and callers are untrusted: every product and sum goes through these. */
bool gguf_mul_ok(uint64_t a, uint64_t b, uint64_t *out);
bool gguf_add_ok(uint64_t a, uint64_t b, uint64_t *out);

/* Bump allocator over one block. With base NULL it only measures, so the same code first sizes
 * a structure and then fills it after one allocation. */
typedef struct {
    uint8_t *base;
    uint64_t used;
    bool overflow;
} gguf_bump;

/* n bytes, 8-aligned; NULL while measuring (and for n == 0). */
void *gguf_bump_alloc(gguf_bump *b, uint64_t n);

/* n elements of esize bytes between little-endian file order and host order. */
void gguf_load_le(void *dst, const uint8_t *src, uint64_t n, size_t esize);
void gguf_store_le(uint8_t *dst, const void *src, uint64_t n, size_t esize);

/* The size (and validity) of a deep copy of v; QK_EFORMAT with a message for bad values. */
int gguf_value_measure(const gguf_value *v, int depth, gguf_bump *b, const char *key,
                       qk_err *err);
/* Copies src into dst with memory from b, which gguf_value_measure sized. */
void gguf_value_copy(gguf_value *dst, const gguf_value *src, gguf_bump *b);

/* The shape and type rules the reader and the writer share (1..4 dimensions, each > 0, element
 * count within int64, a known type, whole blocks per row). On success *nbytes is the tensor's
 * size; on failure why says what is wrong, without naming the file or the tensor. */
int gguf_shape_check(int type, uint32_t n_dims, const int64_t *ne, uint64_t *nbytes, qk_err *why);

/* Open-addressing hash of names to item indices. Items live elsewhere; name_of reads them. */
typedef const char *(*gguf_name_fn)(const void *items, uint64_t i);
typedef struct {
    uint64_t *slots; /* index + 1; 0 is empty */
    uint64_t mask;
    uint64_t count;
} gguf_index;

/* Makes room for n names in total, rehashing the ones present. QK_ENOMEM on failure. */
int gguf_index_reserve(gguf_index *ix, uint64_t n, gguf_name_fn name_of, const void *items);
/* Adds item i under its name (room reserved beforehand); returns the index already holding
 * that name, or GGUF_NONE. */
uint64_t gguf_index_put(gguf_index *ix, uint64_t i, gguf_name_fn name_of, const void *items);
uint64_t gguf_index_get(const gguf_index *ix, const char *name, gguf_name_fn name_of,
                        const void *items);
void gguf_index_free(gguf_index *ix);

#endif
