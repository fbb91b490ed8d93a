/* gguf_read.c — the GGUF reader: maps each part, validates it, parses the metadata into one
 * block per part and joins the parts of a split model. */
#include "gguf_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_BYTES 24 /* magic, version, tensor count, kv count */
/* The smallest encodings, used to bound counts by the bytes left before allocating anything:
 * a key/value is a key length, a type and at least one byte of value; a tensor info is a name
 * length, n_dims, one dimension, a type and an offset. */
#define MIN_KV_BYTES 13
#define MIN_TENSOR_BYTES 32

typedef struct {
    const char *key;
    gguf_value value;
} rkv;

typedef struct {
    char *path;
    const uint8_t *map;
    uint64_t size;
    bool unmap;
    void *block; /* every kv, key, value, tensor info and name of this part */
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv;
    rkv *kv;
    uint64_t n_tensors;
    gguf_tensor_info *tensors;
    uint64_t infos_end;
    bool has_split;
    uint16_t split_no;
    uint16_t split_count;
    int32_t split_tensors;
    const gguf_str *split_id; /* NULL when the part has none */
} part;

struct gguf_ctx {
    part *parts;
    uint32_t n_parts;
    gguf_tensor_info *tensors; /* all parts' tensors; parts[0].tensors when there is one part */
    uint64_t n_tensors;
    uint64_t data_bytes;
    gguf_index keys;
    gguf_index names;
};

/* One pass over the metadata. With b.base NULL it validates and sizes; the second pass fills
 * the block allocated from that size and runs the same checks again. */
typedef struct {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    const char *file;
    qk_err *err;
    gguf_bump b;
    char where[320]; /* "key 'x'" or "tensor 'y'": the object messages name */
} parser;

static uint64_t left(const parser *ps) { return ps->size - ps->pos; }

static int need(parser *ps, uint64_t n)
{
    if (n <= left(ps))
        return QK_OK;
    return qk_err_set(ps->err, QK_EFORMAT,
                      "%s: %s: truncated: needs %llu bytes at offset %llu but the file has %llu",
                      ps->file, ps->where, (unsigned long long)n, (unsigned long long)ps->pos,
                      (unsigned long long)ps->size);
}

static int read_scalar(parser *ps, void *dst, size_t esize)
{
    int rc = need(ps, esize);
    if (rc)
        return rc;
    gguf_load_le(dst, ps->p + ps->pos, 1, esize);
    ps->pos += esize;
    return QK_OK;
}

static int read_u32(parser *ps, uint32_t *v) { return read_scalar(ps, v, 4); }
static int read_u64(parser *ps, uint64_t *v) { return read_scalar(ps, v, 8); }

static int read_str(parser *ps, gguf_str *out, const char *what)
{
    uint64_t len;
    int rc = read_u64(ps, &len);
    if (rc)
        return rc;
    if (len > left(ps))
        return qk_err_set(ps->err, QK_EFORMAT,
                          "%s: %s: %s length %llu exceeds the %llu bytes left in the file", ps->file,
                          ps->where, what, (unsigned long long)len, (unsigned long long)left(ps));
    char *s = gguf_bump_alloc(&ps->b, len + 1);
    if (s) {
        memcpy(s, ps->p + ps->pos, (size_t)len);
        s[len] = '\0';
    }
    if (out) {
        out->len = len;
        out->ptr = s;
    }
    ps->pos += len;
    return QK_OK;
}

/* A key or tensor name; from here on messages name the object after it. Names are looked up
 * as C strings, so they may not be empty or hide a NUL. */
static int read_name(parser *ps, const char **copy, const char *kind, uint64_t i)
{
    snprintf(ps->where, sizeof ps->where, "%s %llu", kind, (unsigned long long)i);
    gguf_str s = {0};
    uint64_t start = ps->pos + 8;
    int rc = read_str(ps, &s, "name");
    if (rc)
        return rc;
    if (s.len == 0)
        return qk_err_set(ps->err, QK_EFORMAT, "%s: %s: empty name", ps->file, ps->where);
    if (memchr(ps->p + start, 0, (size_t)s.len))
        return qk_err_set(ps->err, QK_EFORMAT, "%s: %s: name contains a NUL byte", ps->file,
                          ps->where);
    snprintf(ps->where, sizeof ps->where, "%s '%.*s'", kind, (int)(s.len < 200 ? s.len : 200),
             (const char *)(ps->p + start));
    *copy = s.ptr;
    return QK_OK;
}

static int read_value(parser *ps, uint32_t type, int depth, gguf_value *out);

/* The fewest bytes one array element of type et occupies in the file. */
static uint64_t min_elem_bytes(uint32_t et)
{
    return et == GGUF_TYPE_STR ? 8 : et == GGUF_TYPE_ARR ? 12 : gguf_vtype_size(et);
}

static int read_arr_elems(parser *ps, uint32_t et, uint64_t n, int depth, gguf_value *out)
{
    if (et == GGUF_TYPE_STR || et == GGUF_TYPE_ARR) { /* elements of their own sizes */
        size_t slot = et == GGUF_TYPE_STR ? sizeof(gguf_str) : sizeof(gguf_value);
        uint8_t *elems = gguf_bump_alloc(&ps->b, n * slot); /* n <= file size / 8 */
        for (uint64_t i = 0; i < n; i++) {
            void *e = elems ? elems + i * slot : NULL;
            int rc = et == GGUF_TYPE_STR ? read_str(ps, e, "string") : read_value(ps, et, depth + 1, e);
            if (rc)
                return rc;
        }
        if (out)
            out->arr.data = elems;
        return QK_OK;
    }
    size_t esize = gguf_vtype_size(et);
    uint8_t *data = gguf_bump_alloc(&ps->b, n * esize);
    if (data) {
        gguf_load_le(data, ps->p + ps->pos, n, esize);
        for (uint64_t i = 0; et == GGUF_TYPE_BOOL && i < n; i++)
            data[i] = data[i] != 0; /* any non-zero byte is true, stored as a valid C bool */
    }
    ps->pos += n * esize;
    if (out)
        out->arr.data = data;
    return QK_OK;
}

static int read_arr(parser *ps, int depth, gguf_value *out)
{
    uint32_t et;
    uint64_t n;
    int rc = read_u32(ps, &et);
    if (!rc)
        rc = read_u64(ps, &n);
    if (rc)
        return rc;
    if (et >= GGUF_TYPE_COUNT)
        return qk_err_set(ps->err, QK_EFORMAT, "%s: %s: unknown array element type %u", ps->file,
                          ps->where, et);
    if (et == GGUF_TYPE_ARR && depth + 1 > GGUF_MAX_DEPTH)
        return qk_err_set(ps->err, QK_EFORMAT, "%s: %s: arrays nested deeper than %d levels",
                          ps->file, ps->where, GGUF_MAX_DEPTH);
    if (n > left(ps) / min_elem_bytes(et))
        return qk_err_set(ps->err, QK_EFORMAT,
                          "%s: %s: array of %llu %s elements exceeds the %llu bytes left in the file",
                          ps->file, ps->where, (unsigned long long)n, gguf_type_name(et),
                          (unsigned long long)left(ps));
    if (out) {
        out->arr.type = et;
        out->arr.n = n;
    }
    return read_arr_elems(ps, et, n, depth, out);
}

static int read_value(parser *ps, uint32_t type, int depth, gguf_value *out)
{
    gguf_value tmp;
    gguf_value *v = out ? out : &tmp;
    v->type = type;
    if (type == GGUF_TYPE_STR)
        return read_str(ps, out ? &out->str : NULL, "string");
    if (type == GGUF_TYPE_ARR)
        return read_arr(ps, depth, out);
    size_t esize = gguf_vtype_size(type);
    if (!esize)
        return qk_err_set(ps->err, QK_EFORMAT, "%s: %s: unknown value type %u", ps->file,
                          ps->where, type);
    int rc = read_scalar(ps, &v->u64, esize); /* every union member starts at the same address */
    if (!rc && type == GGUF_TYPE_BOOL)
        v->u8 = v->u8 != 0;
    return rc;
}

static int read_kv(parser *ps, uint64_t i, rkv *out)
{
    const char *key = NULL;
    uint32_t type;
    int rc = read_name(ps, &key, "key", i);
    if (!rc)
        rc = read_u32(ps, &type);
    if (!rc)
        rc = read_value(ps, type, 1, out ? &out->value : NULL);
    if (out)
        out->key = key;
    return rc;
}

/* Shape, type and size of one tensor; offsets are checked once the alignment is known. */
static int read_shape(parser *ps, gguf_tensor_info *t)
{
    uint32_t n_dims, type;
    int rc = read_u32(ps, &n_dims);
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (!rc && d < n_dims && n_dims <= GGUF_MAX_DIMS) /* a bad n_dims is reported below */
            rc = read_scalar(ps, &t->ne[d], 8);
    }
    if (!rc)
        rc = read_u32(ps, &type);
    if (rc)
        return rc;
    qk_err why;
    rc = gguf_shape_check((int)type, n_dims, t->ne, &t->nbytes, &why);
    if (rc)
        return qk_err_set(ps->err, rc, "%s: %s: %s", ps->file, ps->where, why.msg);
    t->n_dims = n_dims;
    t->type = (int)type;
    return QK_OK;
}

static int read_tensor_info(parser *ps, uint64_t i, gguf_tensor_info *out)
{
    gguf_tensor_info tmp = {0};
    gguf_tensor_info *t = out ? out : &tmp;
    int rc = read_name(ps, &t->name, "tensor", i);
    if (!rc)
        rc = read_shape(ps, t);
    if (!rc)
        rc = read_u64(ps, &t->offset);
    return rc;
}

static int parse_pass(parser *ps, part *pt)
{
    ps->pos = HEADER_BYTES;
    rkv *kv = gguf_bump_alloc(&ps->b, pt->n_kv * sizeof *kv);
    gguf_tensor_info *ti = gguf_bump_alloc(&ps->b, pt->n_tensors * sizeof *ti);
    int rc = QK_OK;
    for (uint64_t i = 0; !rc && i < pt->n_kv; i++)
        rc = read_kv(ps, i, kv ? &kv[i] : NULL);
    for (uint64_t i = 0; !rc && i < pt->n_tensors; i++)
        rc = read_tensor_info(ps, i, ti ? &ti[i] : NULL);
    if (rc)
        return rc;
    pt->kv = kv;
    pt->tensors = ti;
    pt->infos_end = ps->pos;
    return QK_OK;
}

static uint32_t bswap32(uint32_t v)
{
    return (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
}

static int parse_header(parser *ps, part *pt)
{
    snprintf(ps->where, sizeof ps->where, "header");
    if (ps->size >= 4 && memcmp(ps->p, "GGUF", 4) != 0)
        return qk_err_set(ps->err, QK_EFORMAT, "%s: not a GGUF file (magic %02x %02x %02x %02x)",
                          ps->file, ps->p[0], ps->p[1], ps->p[2], ps->p[3]);
    int rc = need(ps, HEADER_BYTES);
    if (rc)
        return rc;
    uint64_t n_tensors, n_kv;
    ps->pos = 4;
    read_u32(ps, &pt->version);
    read_u64(ps, &n_tensors);
    read_u64(ps, &n_kv);
    uint32_t v = pt->version;
    if (v == 1)
        return qk_err_set(ps->err, QK_EUNSUPPORTED, "%s: GGUF version 1 is not supported (only 2 and 3)",
                          ps->file);
    if (v != 2 && v != 3 && bswap32(v) >= 1 && bswap32(v) <= 3)
        return qk_err_set(ps->err, QK_EUNSUPPORTED, "%s: big-endian GGUF files are not supported",
                          ps->file);
    if (v != 2 && v != 3)
        return qk_err_set(ps->err, QK_EUNSUPPORTED, "%s: unsupported GGUF version %u (only 2 and 3)",
                          ps->file, v);
    if (n_kv > left(ps) / MIN_KV_BYTES)
        return qk_err_set(ps->err, QK_EFORMAT,
                          "%s: key/value count %llu cannot fit in the %llu bytes after the header",
                          ps->file, (unsigned long long)n_kv, (unsigned long long)left(ps));
    if (n_tensors > (left(ps) - n_kv * MIN_KV_BYTES) / MIN_TENSOR_BYTES)
        return qk_err_set(ps->err, QK_EFORMAT,
                          "%s: tensor count %llu cannot fit in the %llu bytes after the header "
                          "and %llu keys",
                          ps->file, (unsigned long long)n_tensors, (unsigned long long)left(ps),
                          (unsigned long long)n_kv);
    pt->n_kv = n_kv;
    pt->n_tensors = n_tensors;
    return QK_OK;
}

static const char *kv_name(const void *items, uint64_t i) { return ((const rkv *)items)[i].key; }

static const char *tensor_name(const void *items, uint64_t i)
{
    return ((const gguf_tensor_info *)items)[i].name;
}

static int check_duplicate_keys(const part *pt, qk_err *err)
{
    gguf_index ix = {0};
    if (gguf_index_reserve(&ix, pt->n_kv, kv_name, pt->kv))
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory indexing %llu keys", pt->path,
                          (unsigned long long)pt->n_kv);
    int rc = QK_OK;
    for (uint64_t i = 0; !rc && i < pt->n_kv; i++) {
        uint64_t j = gguf_index_put(&ix, i, kv_name, pt->kv);
        if (j != GGUF_NONE)
            rc = qk_err_set(err, QK_EFORMAT, "%s: duplicate key '%s' (entries %llu and %llu)",
                            pt->path, pt->kv[i].key, (unsigned long long)j, (unsigned long long)i);
    }
    gguf_index_free(&ix);
    return rc;
}

static const gguf_value *part_find(const part *pt, const char *key)
{
    for (uint64_t i = 0; i < pt->n_kv; i++) /* for a few special keys; dups already excluded */
        if (strcmp(pt->kv[i].key, key) == 0)
            return &pt->kv[i].value;
    return NULL;
}

static int special_key(const part *pt, const char *key, enum gguf_vtype type, const gguf_value **v,
                       qk_err *err)
{
    *v = part_find(pt, key);
    if (*v && (*v)->type != type)
        return qk_err_set(err, QK_EFORMAT, "%s: key '%s' must be a %s, found %s", pt->path, key,
                          gguf_type_name(type), gguf_type_name((*v)->type));
    return QK_OK;
}

static int read_special_keys(part *pt, qk_err *err)
{
    const gguf_value *al, *no, *count, *total;
    int rc = special_key(pt, GGUF_KEY_ALIGNMENT, GGUF_TYPE_U32, &al, err);
    if (!rc)
        rc = special_key(pt, GGUF_KEY_SPLIT_NO, GGUF_TYPE_U16, &no, err);
    if (!rc)
        rc = special_key(pt, GGUF_KEY_SPLIT_COUNT, GGUF_TYPE_U16, &count, err);
    if (!rc)
        rc = special_key(pt, GGUF_KEY_SPLIT_TENSORS, GGUF_TYPE_I32, &total, err);
    const gguf_value *id = NULL;
    if (!rc)
        rc = special_key(pt, GGUF_KEY_SPLIT_ID, GGUF_TYPE_STR, &id, err);
    if (rc)
        return rc;
    pt->split_id = id ? &id->str : NULL;
    pt->alignment = al ? al->u32 : GGUF_DEFAULT_ALIGNMENT;
    if (pt->alignment == 0 || (pt->alignment & (pt->alignment - 1)))
        return qk_err_set(err, QK_EFORMAT, "%s: %s = %u is not a non-zero power of two", pt->path,
                          GGUF_KEY_ALIGNMENT, pt->alignment);
    if (pt->alignment > GGUF_MAX_ALIGNMENT)
        return qk_err_set(err, QK_EFORMAT, "%s: %s = %u is above qkit's limit of %u", pt->path,
                          GGUF_KEY_ALIGNMENT, pt->alignment, GGUF_MAX_ALIGNMENT);
    pt->has_split = no || count || total;
    if (!pt->has_split)
        return QK_OK;
    if (!no || !count || !total)
        return qk_err_set(err, QK_EFORMAT, "%s: split keys incomplete: needs %s, %s and %s",
                          pt->path, GGUF_KEY_SPLIT_NO, GGUF_KEY_SPLIT_COUNT, GGUF_KEY_SPLIT_TENSORS);
    pt->split_no = no->u16;
    pt->split_count = count->u16;
    pt->split_tensors = total->i32;
    if (pt->split_count == 0 || pt->split_no >= pt->split_count || pt->split_tensors < 0)
        return qk_err_set(err, QK_EFORMAT, "%s: invalid split keys: part %u of %u, %d tensors",
                          pt->path, pt->split_no, pt->split_count, pt->split_tensors);
    return QK_OK;
}

typedef struct {
    uint64_t start, end, idx;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int check_overlaps(const part *pt, qk_err *err)
{
    if (pt->n_tensors < 2)
        return QK_OK;
    span *s = malloc((size_t)pt->n_tensors * sizeof *s);
    if (!s)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", pt->path);
    for (uint64_t i = 0; i < pt->n_tensors; i++)
        s[i] = (span){pt->tensors[i].offset, pt->tensors[i].offset + pt->tensors[i].nbytes, i};
    qsort(s, (size_t)pt->n_tensors, sizeof *s, span_cmp);
    int rc = QK_OK;
    for (uint64_t i = 1; !rc && i < pt->n_tensors; i++)
        if (s[i].start < s[i - 1].end)
            rc = qk_err_set(err, QK_EFORMAT,
                            "%s: tensor '%s' (data bytes %llu..%llu) overlaps tensor '%s' "
                            "(bytes %llu..%llu)",
                            pt->path, pt->tensors[s[i].idx].name, (unsigned long long)s[i].start,
                            (unsigned long long)s[i].end, pt->tensors[s[i - 1].idx].name,
                            (unsigned long long)s[i - 1].start, (unsigned long long)s[i - 1].end);
    free(s);
    return rc;
}

/* Offsets: aligned, inside the file (the last tensor's padding may be missing), disjoint. */
static int place_tensors(part *pt, qk_err *err)
{
    uint64_t a = pt->alignment;
    uint64_t data_start = (pt->infos_end + a - 1) / a * a;
    for (uint64_t i = 0; i < pt->n_tensors; i++) {
        gguf_tensor_info *t = &pt->tensors[i];
        if (t->offset % a)
            return qk_err_set(err, QK_EFORMAT,
                              "%s: tensor '%s': data offset %llu is not a multiple of the alignment %llu",
                              pt->path, t->name, (unsigned long long)t->offset, (unsigned long long)a);
        if (data_start > pt->size || t->offset > pt->size - data_start ||
            t->nbytes > pt->size - data_start - t->offset)
            return qk_err_set(err, QK_EFORMAT,
                              "%s: tensor '%s': data at offset %llu + %llu of %llu bytes runs past "
                              "the end of the file (%llu bytes)",
                              pt->path, t->name, (unsigned long long)data_start,
                              (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                              (unsigned long long)pt->size);
        t->data = pt->map + data_start + t->offset;
    }
    return check_overlaps(pt, err);
}

static int parse_part(part *pt, qk_err *err)
{
    parser ps = {.p = pt->map, .size = pt->size, .file = pt->path, .err = err};
    int rc = parse_header(&ps, pt);
    if (!rc)
        rc = parse_pass(&ps, pt);
    if (rc)
        return rc;
    if (ps.b.overflow || ps.b.used > SIZE_MAX)
        return qk_err_set(err, QK_ENOMEM, "%s: metadata too large", pt->path);
    if (ps.b.used && !(pt->block = malloc((size_t)ps.b.used)))
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory for %llu bytes of metadata", pt->path,
                          (unsigned long long)ps.b.used);
    ps.b = (gguf_bump){.base = pt->block};
    rc = parse_pass(&ps, pt);
    if (!rc)
        rc = check_duplicate_keys(pt, err);
    if (!rc)
        rc = read_special_keys(pt, err);
    if (!rc)
        rc = place_tensors(pt, err);
    return rc;
}

static void part_free(part *pt)
{
    if (pt->unmap && pt->map)
        munmap((void *)pt->map, (size_t)pt->size);
    free(pt->block);
    free(pt->path);
    *pt = (part){0};
}

static int map_file(part *pt, qk_err *err)
{
    int fd = open(pt->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qk_err_set(err, QK_EIO, "%s: cannot open: %s", pt->path, strerror(errno));
    struct stat st;
    int rc = QK_OK;
    if (fstat(fd, &st) != 0)
        rc = qk_err_set(err, QK_EIO, "%s: cannot stat: %s", pt->path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = qk_err_set(err, QK_EIO, "%s: not a regular file", pt->path);
    else if ((uint64_t)st.st_size > SIZE_MAX)
        rc = qk_err_set(err, QK_ERANGE, "%s: too large to map", pt->path);
    if (!rc && st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
            rc = qk_err_set(err, QK_EIO, "%s: cannot map: %s", pt->path, strerror(errno));
        else {
            pt->map = m;
            pt->size = (uint64_t)st.st_size;
            pt->unmap = true;
        }
    }
    close(fd);
    return rc;
}

static int load_part(part *pt, const char *path, qk_err *err)
{
    *pt = (part){0};
    if (!(pt->path = strdup(path)))
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    int rc = map_file(pt, err);
    if (!rc)
        rc = parse_part(pt, err);
    if (rc)
        part_free(pt);
    return rc;
}

/* "PREFIX-0000K-of-0000N.gguf" → PREFIX, for the part this file says it is. */
static int split_prefix(const part *pt, char **prefix, qk_err *err)
{
    char suffix[48];
    snprintf(suffix, sizeof suffix, "-%05u-of-%05u.gguf", pt->split_no + 1u, pt->split_count + 0u);
    size_t n = strlen(pt->path), s = strlen(suffix);
    if (n <= s || strcmp(pt->path + n - s, suffix) != 0)
        return qk_err_set(err, QK_EFORMAT,
                          "%s: part %u of a %u-part split model, but the file name does not end in '%s'",
                          pt->path, pt->split_no + 1u, pt->split_count + 0u, suffix);
    if (!(*prefix = strndup(pt->path, n - s)))
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", pt->path);
    return QK_OK;
}

static int check_sibling(const part *pt, const part *first, uint32_t idx, qk_err *err)
{
    if (!pt->has_split)
        return qk_err_set(err, QK_EFORMAT, "%s: expected part %u of %u of a split model, but it "
                                           "has no split keys",
                          pt->path, idx + 1, first->split_count + 0u);
    if (pt->split_no != idx || pt->split_count != first->split_count)
        return qk_err_set(err, QK_EFORMAT, "%s: says it is part %u of %u, expected part %u of %u",
                          pt->path, pt->split_no + 1u, pt->split_count + 0u, idx + 1,
                          first->split_count + 0u);
    if (pt->split_tensors != first->split_tensors)
        return qk_err_set(err, QK_EFORMAT, "%s: %s = %d but %s says %d", pt->path,
                          GGUF_KEY_SPLIT_TENSORS, pt->split_tensors, first->path,
                          first->split_tensors);
    const gguf_str *a = pt->split_id, *b = first->split_id;
    if ((a || b) && (!a || !b || a->len != b->len || memcmp(a->ptr, b->ptr, (size_t)a->len)))
        return qk_err_set(err, QK_EFORMAT,
                          "%s: belongs to another write of the model than %s (%s '%.32s' vs '%.32s'): "
                          "the parts are a mixed set (an interrupted write, or parts of different "
                          "runs or sharded jobs in one folder); write the model again, or rerun the job "
                          "that writes this part with the set's options",
                          pt->path, first->path, GGUF_KEY_SPLIT_ID, a ? a->ptr : "(none)",
                          b ? b->ptr : "(none)");
    return QK_OK;
}

/* ctx->parts[] from the part already open: itself alone, or every part of its split. */
static int gather_parts(gguf_ctx *ctx, part *opened, qk_err *err)
{
    uint32_t count = opened->has_split ? opened->split_count : 1;
    if (!(ctx->parts = calloc(count, sizeof *ctx->parts))) {
        part_free(opened);
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    }
    ctx->n_parts = count;
    uint32_t at = opened->has_split ? opened->split_no : 0;
    ctx->parts[at] = *opened;
    if (count == 1)
        return QK_OK;
    char *prefix = NULL;
    int rc = split_prefix(&ctx->parts[at], &prefix, err);
    size_t cap = prefix ? strlen(prefix) + 32 : 0;
    char *path = prefix ? malloc(cap) : NULL;
    if (prefix && !path)
        rc = qk_err_set(err, QK_ENOMEM, "out of memory");
    for (uint32_t i = 0; !rc && i < count; i++) {
        if (i == at)
            continue;
        gguf_split_path(path, cap, prefix, i, count);
        if (access(path, F_OK) != 0)
            rc = qk_err_set(err, QK_EFORMAT, "%s: missing: part %u of the %u-part model %s", path, i + 1,
                            count, ctx->parts[at].path);
        if (!rc)
            rc = load_part(&ctx->parts[i], path, err);
        if (!rc)
            rc = check_sibling(&ctx->parts[i], &ctx->parts[at], i, err);
    }
    free(path);
    free(prefix);
    return rc;
}

static int merge_tensors(gguf_ctx *ctx, qk_err *err)
{
    uint64_t n = 0;
    for (uint32_t p = 0; p < ctx->n_parts; p++)
        n += ctx->parts[p].n_tensors; /* each bounded by its file size */
    const part *first = &ctx->parts[0];
    if (first->has_split && n != (uint64_t)first->split_tensors)
        return qk_err_set(err, QK_EFORMAT, "%s: %s = %d but the %u part(s) hold %llu tensors",
                          first->path, GGUF_KEY_SPLIT_TENSORS, first->split_tensors, ctx->n_parts,
                          (unsigned long long)n);
    ctx->n_tensors = n;
    if (ctx->n_parts == 1) {
        ctx->tensors = ctx->parts[0].tensors;
    } else if (n && !(ctx->tensors = malloc((size_t)n * sizeof *ctx->tensors))) {
        return qk_err_set(err, QK_ENOMEM, "out of memory for %llu tensor infos", (unsigned long long)n);
    }
    uint64_t k = 0;
    for (uint32_t p = 0; p < ctx->n_parts; p++)
        for (uint64_t i = 0; i < ctx->parts[p].n_tensors; i++) {
            if (ctx->n_parts > 1)
                ctx->tensors[k] = ctx->parts[p].tensors[i];
            ctx->tensors[k].part = p;
            ctx->data_bytes += ctx->tensors[k++].nbytes;
        }
    return QK_OK;
}

static int index_tensors(gguf_ctx *ctx, qk_err *err)
{
    if (gguf_index_reserve(&ctx->names, ctx->n_tensors, tensor_name, ctx->tensors))
        return qk_err_set(err, QK_ENOMEM, "out of memory indexing tensors");
    for (uint64_t i = 0; i < ctx->n_tensors; i++) {
        uint64_t j = gguf_index_put(&ctx->names, i, tensor_name, ctx->tensors);
        if (j == GGUF_NONE)
            continue;
        const gguf_tensor_info *a = &ctx->tensors[j], *b = &ctx->tensors[i];
        if (a->part == b->part)
            return qk_err_set(err, QK_EFORMAT, "%s: duplicate tensor name '%s' (tensors %llu and %llu)",
                              ctx->parts[b->part].path, b->name, (unsigned long long)j,
                              (unsigned long long)i);
        return qk_err_set(err, QK_EFORMAT, "%s: duplicate tensor name '%s', also in %s",
                          ctx->parts[b->part].path, b->name, ctx->parts[a->part].path);
    }
    return QK_OK;
}

static bool is_split_key(const char *k)
{
    return !strcmp(k, GGUF_KEY_SPLIT_NO) || !strcmp(k, GGUF_KEY_SPLIT_COUNT) ||
           !strcmp(k, GGUF_KEY_SPLIT_TENSORS) || !strcmp(k, GGUF_KEY_SPLIT_ID);
}

/* The split keys belong to the reader (see gguf.h): drop them from the visible list. */
static int index_keys(gguf_ctx *ctx, qk_err *err)
{
    part *p = &ctx->parts[0];
    uint64_t kept = 0;
    for (uint64_t i = 0; i < p->n_kv; i++)
        if (!is_split_key(p->kv[i].key))
            p->kv[kept++] = p->kv[i];
    p->n_kv = kept;
    if (gguf_index_reserve(&ctx->keys, kept, kv_name, p->kv))
        return qk_err_set(err, QK_ENOMEM, "out of memory indexing keys");
    for (uint64_t i = 0; i < kept; i++)
        gguf_index_put(&ctx->keys, i, kv_name, p->kv);
    return QK_OK;
}

static int finish(gguf_ctx *ctx, qk_err *err)
{
    int rc = merge_tensors(ctx, err);
    if (!rc)
        rc = index_tensors(ctx, err);
    if (!rc)
        rc = index_keys(ctx, err);
    return rc;
}

static int open_from(gguf_ctx **out, part *opened, qk_err *err)
{
    gguf_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        part_free(opened);
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    }
    int rc = gather_parts(ctx, opened, err);
    if (!rc)
        rc = finish(ctx, err);
    if (rc) {
        gguf_close(ctx);
        return rc;
    }
    *out = ctx;
    return QK_OK;
}

int gguf_open(gguf_ctx **out, const char *path, qk_err *err)
{
    *out = NULL;
    part first;
    int rc = load_part(&first, path, err);
    return rc ? rc : open_from(out, &first, err);
}

int gguf_open_mem(gguf_ctx **out, const void *data, size_t size, const char *name, qk_err *err)
{
    *out = NULL;
    part pt = {.map = data, .size = size, .path = strdup(name ? name : "(memory)")};
    if (!pt.path)
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    int rc = parse_part(&pt, err);
    if (!rc && pt.has_split && pt.split_count > 1)
        rc = qk_err_set(err, QK_EUNSUPPORTED, "%s: part %u of a %u-part split model: open it by path",
                        pt.path, pt.split_no + 1u, pt.split_count + 0u);
    if (rc) {
        part_free(&pt);
        return rc;
    }
    return open_from(out, &pt, err);
}

void gguf_close(gguf_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->n_parts > 1)
        free(ctx->tensors);
    for (uint32_t p = 0; p < ctx->n_parts; p++)
        part_free(&ctx->parts[p]);
    free(ctx->parts);
    gguf_index_free(&ctx->keys);
    gguf_index_free(&ctx->names);
    free(ctx);
}

/* ---- accessors --------------------------------------------------------------------------- */

uint32_t gguf_version(const gguf_ctx *ctx) { return ctx->parts[0].version; }
uint32_t gguf_alignment(const gguf_ctx *ctx) { return ctx->parts[0].alignment; }
uint64_t gguf_n_kv(const gguf_ctx *ctx) { return ctx->parts[0].n_kv; }

const char *gguf_kv_key(const gguf_ctx *ctx, uint64_t i)
{
    return i < ctx->parts[0].n_kv ? ctx->parts[0].kv[i].key : NULL;
}

const gguf_value *gguf_kv_value(const gguf_ctx *ctx, uint64_t i)
{
    return i < ctx->parts[0].n_kv ? &ctx->parts[0].kv[i].value : NULL;
}

int64_t gguf_find_key(const gguf_ctx *ctx, const char *key)
{
    uint64_t i = gguf_index_get(&ctx->keys, key, kv_name, ctx->parts[0].kv);
    return i == GGUF_NONE ? -1 : (int64_t)i;
}

static int get_typed(const gguf_ctx *ctx, const char *key, enum gguf_vtype type,
                     const gguf_value **v)
{
    int64_t i = gguf_find_key(ctx, key);
    if (i < 0)
        return GGUF_MISSING;
    *v = &ctx->parts[0].kv[i].value;
    return (*v)->type == type ? QK_OK : QK_EFORMAT;
}

#define GGUF_GETTER(NAME, CTYPE, TYPE, FIELD)                                     \
    int gguf_get_##NAME(const gguf_ctx *ctx, const char *key, CTYPE *out)         \
    {                                                                             \
        const gguf_value *v;                                                      \
        int rc = get_typed(ctx, key, TYPE, &v);                                   \
        if (rc == QK_OK)                                                          \
            *out = v->FIELD;                                                      \
        return rc;                                                                \
    }

GGUF_GETTER(u8, uint8_t, GGUF_TYPE_U8, u8)
GGUF_GETTER(i8, int8_t, GGUF_TYPE_I8, i8)
GGUF_GETTER(u16, uint16_t, GGUF_TYPE_U16, u16)
GGUF_GETTER(i16, int16_t, GGUF_TYPE_I16, i16)
GGUF_GETTER(u32, uint32_t, GGUF_TYPE_U32, u32)
GGUF_GETTER(i32, int32_t, GGUF_TYPE_I32, i32)
GGUF_GETTER(f32, float, GGUF_TYPE_F32, f32)
GGUF_GETTER(bool, bool, GGUF_TYPE_BOOL, b)
GGUF_GETTER(u64, uint64_t, GGUF_TYPE_U64, u64)
GGUF_GETTER(i64, int64_t, GGUF_TYPE_I64, i64)
GGUF_GETTER(f64, double, GGUF_TYPE_F64, f64)

/* A string with a NUL byte inside is no C string: refused rather than silently cut. */
int gguf_get_str(const gguf_ctx *ctx, const char *key, const char **out)
{
    const gguf_value *v;
    int rc = get_typed(ctx, key, GGUF_TYPE_STR, &v);
    if (rc == QK_OK && memchr(v->str.ptr, 0, (size_t)v->str.len))
        rc = QK_EFORMAT;
    if (rc == QK_OK)
        *out = v->str.ptr;
    return rc;
}

int gguf_get_arr(const gguf_ctx *ctx, const char *key, enum gguf_vtype elem, const void **data,
                 uint64_t *n)
{
    const gguf_value *v;
    int rc = get_typed(ctx, key, GGUF_TYPE_ARR, &v);
    if (rc == QK_OK && v->arr.type != elem)
        rc = QK_EFORMAT;
    if (rc == QK_OK) {
        *data = v->arr.data;
        *n = v->arr.n;
    }
    return rc;
}

const char *gguf_arr_str(const gguf_value *v, uint64_t i, uint64_t *len_or_null)
{
    if (!v || v->type != GGUF_TYPE_ARR || v->arr.type != GGUF_TYPE_STR || i >= v->arr.n)
        return NULL;
    const gguf_str *s = &((const gguf_str *)v->arr.data)[i];
    if (len_or_null)
        *len_or_null = s->len;
    return s->ptr;
}

uint64_t gguf_n_tensors(const gguf_ctx *ctx) { return ctx->n_tensors; }

const gguf_tensor_info *gguf_tensor(const gguf_ctx *ctx, uint64_t i)
{
    return i < ctx->n_tensors ? &ctx->tensors[i] : NULL;
}

const gguf_tensor_info *gguf_find_tensor(const gguf_ctx *ctx, const char *name)
{
    uint64_t i = gguf_index_get(&ctx->names, name, tensor_name, ctx->tensors);
    return i == GGUF_NONE ? NULL : &ctx->tensors[i];
}

uint32_t gguf_n_parts(const gguf_ctx *ctx) { return ctx->n_parts; }

const char *gguf_part_path(const gguf_ctx *ctx, uint32_t part_idx)
{
    return part_idx < ctx->n_parts ? ctx->parts[part_idx].path : NULL;
}

uint64_t gguf_data_bytes(const gguf_ctx *ctx) { return ctx->data_bytes; }
