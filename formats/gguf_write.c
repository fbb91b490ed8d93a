/* gguf_write.c — the streaming GGUF writer: metadata and tensor infos are kept in memory, tensor
 * bytes go straight to the output (one or several split parts, each a crash-safe temporary). */
#include "gguf_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../quant/buf.h"
#include "file.h"
#include "hash.h"
#include "outfile.h"

#define STREAM_BUFFER (1u << 20)

typedef struct {
    const char *key;  /* into block */
    gguf_value value; /* strings and arrays into block */
    void *block;
} wkv;

typedef struct {
    char *name;
    int type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset; /* in its part's data section */
    uint32_t part;
    bool new_part;   /* gguf_writer_next_part() was called before it */
} wtensor;

typedef struct {
    char *path;
    of_file *f;
    FILE *fp;
    uint64_t pos; /* bytes written so far */
    uint64_t n_tensors;
} wpart;

/* The split set's identity (split.id): a 64-bit hash of every part's header (metadata, tensor
 * table, with a constant placeholder where the id goes) and of the caller's source id (a
 * fingerprint of the input: gguf_writer_set_source_id). It is known before any data is written,
 * so every job of a sharded write (gguf_writer_set_shard) computes the same id from the same plan
 * and input, and the parts of two different plans or inputs (a set mixed by an interrupted write,
 * or shards of different runs in one folder) differ. */
#define SPLIT_ID_LEN 16 /* hex digits */

struct gguf_writer {
    char *path;
    bool split;
    gguf_split_opts opts;
    uint32_t alignment;
    wkv *kv;
    uint64_t n_kv;
    size_t cap_kv;
    gguf_index keys;
    wtensor *t;
    uint64_t n_t;
    size_t cap_t;
    gguf_index names;
    wpart *parts;
    uint32_t n_parts;
    bool data_phase;
    bool break_next;  /* the next declared tensor starts a part */
    uint64_t cur;     /* the tensor being written */
    uint64_t written; /* bytes of it so far */
    int status;       /* sticky: the first error */
    qk_err err;
    char **protect;   /* inputs no output may be (gguf_writer_protect) */
    size_t n_protect;
    uint64_t source_id; /* gguf_writer_set_source_id */
    uint32_t shard_index, shard_count; /* count 0: every part is written */
    bool hashing;     /* put() hashes instead of writing (computing split.id) */
    qk_hash id;
    char id_hex[SPLIT_ID_LEN + 1];
};

/* Records the first error (file and problem in the message) and returns the sticky status. */
static int fail(gguf_writer *w, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int fail(gguf_writer *w, int code, const char *fmt, ...)
{
    if (w->status)
        return w->status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err.msg, sizeof w->err.msg, fmt, ap);
    va_end(ap);
    w->status = code;
    return code;
}

static const char *wkv_name(const void *items, uint64_t i) { return ((const wkv *)items)[i].key; }
static const char *wt_name(const void *items, uint64_t i) { return ((const wtensor *)items)[i].name; }

int gguf_writer_open(gguf_writer **out, const char *path, const gguf_split_opts *opts, qk_err *err)
{
    *out = NULL;
    gguf_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    }
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (opts)
        w->opts = *opts;
    w->split = w->opts.max_bytes || w->opts.max_tensors || w->opts.n_parts;
    if (w->opts.n_parts && (w->opts.max_bytes || w->opts.max_tensors)) {
        qk_err_set(err, QK_EUNSUPPORTED, "%s: a split into a number of parts takes no size or "
                   "tensor limit", path);
        free(w->path);
        free(w);
        return QK_EUNSUPPORTED;
    }
    memset(w->id_hex, '0', SPLIT_ID_LEN);
    *out = w;
    return QK_OK;
}

int gguf_writer_protect(gguf_writer *w, const char *path)
{
    if (w->status)
        return w->status;
    char **grown = realloc(w->protect, (w->n_protect + 1) * sizeof *grown);
    if (grown)
        w->protect = grown;
    if (!grown || !(w->protect[w->n_protect] = strdup(path)))
        return fail(w, QK_ENOMEM, "%s: out of memory", w->path);
    w->n_protect++;
    return QK_OK;
}

/* ---- metadata ---------------------------------------------------------------------------- */

static bool is_split_key(const char *k)
{
    return !strcmp(k, GGUF_KEY_SPLIT_NO) || !strcmp(k, GGUF_KEY_SPLIT_COUNT) ||
           !strcmp(k, GGUF_KEY_SPLIT_TENSORS) || !strcmp(k, GGUF_KEY_SPLIT_ID);
}

static int check_key(gguf_writer *w, const char *key, const gguf_value *v)
{
    if (w->data_phase)
        return fail(w, QK_EFORMAT, "%s: key '%s' set after gguf_writer_begin_data", w->path,
                    key ? key : "(null)");
    if (!key || !*key || !v)
        return fail(w, QK_EFORMAT, "%s: %s", w->path, v ? "empty key" : "key without a value");
    if (is_split_key(key))
        return fail(w, QK_EFORMAT, "%s: key '%s' is reserved: the writer sets the split keys",
                    w->path, key);
    if (strcmp(key, GGUF_KEY_ALIGNMENT) != 0)
        return QK_OK;
    if (v->type != GGUF_TYPE_U32)
        return fail(w, QK_EFORMAT, "%s: key '%s' must be a u32, got %s", w->path, key,
                    gguf_type_name(v->type));
    if (v->u32 == 0 || (v->u32 & (v->u32 - 1)))
        return fail(w, QK_EFORMAT, "%s: %s = %u is not a non-zero power of two", w->path, key,
                    v->u32);
    if (v->u32 > GGUF_MAX_ALIGNMENT)
        return fail(w, QK_EFORMAT, "%s: %s = %u is above qkit's limit of %u", w->path, key, v->u32,
                    GGUF_MAX_ALIGNMENT);
    return QK_OK;
}

/* A deep copy of key and value in one block. */
static int copy_kv(gguf_writer *w, const char *key, const gguf_value *v, wkv *out)
{
    size_t key_bytes = strlen(key) + 1;
    gguf_bump b = {0};
    gguf_bump_alloc(&b, key_bytes);
    qk_err e;
    int rc = gguf_value_measure(v, 1, &b, key, &e);
    if (rc)
        return fail(w, rc, "%s: %s", w->path, e.msg);
    void *block = malloc((size_t)b.used);
    if (!block)
        return fail(w, QK_ENOMEM, "%s: key '%s': out of memory for %llu bytes", w->path, key,
                    (unsigned long long)b.used);
    b = (gguf_bump){.base = block};
    char *k = gguf_bump_alloc(&b, key_bytes);
    memcpy(k, key, key_bytes);
    gguf_value_copy(&out->value, v, &b);
    out->key = k;
    out->block = block;
    return QK_OK;
}

int gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v)
{
    if (w->status || check_key(w, key, v))
        return w->status;
    wkv kv;
    if (copy_kv(w, key, v, &kv))
        return w->status;
    if (!strcmp(key, GGUF_KEY_ALIGNMENT))
        w->alignment = v->u32;
    uint64_t i = gguf_index_get(&w->keys, key, wkv_name, w->kv);
    if (i != GGUF_NONE) { /* replace in place: the key keeps its position */
        free(w->kv[i].block);
        w->kv[i] = kv;
        return QK_OK;
    }
    wkv *grown = qk_grow(w->kv, &w->cap_kv, w->n_kv + 1, sizeof *grown);
    if (grown)
        w->kv = grown;
    if (!grown || gguf_index_reserve(&w->keys, w->n_kv + 1, wkv_name, w->kv)) {
        free(kv.block);
        return fail(w, QK_ENOMEM, "%s: out of memory", w->path);
    }
    w->kv[w->n_kv] = kv;
    gguf_index_put(&w->keys, w->n_kv++, wkv_name, w->kv);
    return QK_OK;
}

#define GGUF_SETTER(NAME, CTYPE, TYPE, FIELD)                                     \
    int gguf_writer_set_##NAME(gguf_writer *w, const char *key, CTYPE v)          \
    {                                                                             \
        gguf_value val = {.type = TYPE, .FIELD = v};                              \
        return gguf_writer_set_value(w, key, &val);                               \
    }

GGUF_SETTER(u8, uint8_t, GGUF_TYPE_U8, u8)
GGUF_SETTER(i8, int8_t, GGUF_TYPE_I8, i8)
GGUF_SETTER(u16, uint16_t, GGUF_TYPE_U16, u16)
GGUF_SETTER(i16, int16_t, GGUF_TYPE_I16, i16)
GGUF_SETTER(u32, uint32_t, GGUF_TYPE_U32, u32)
GGUF_SETTER(i32, int32_t, GGUF_TYPE_I32, i32)
GGUF_SETTER(f32, float, GGUF_TYPE_F32, f32)
GGUF_SETTER(bool, bool, GGUF_TYPE_BOOL, b)
GGUF_SETTER(u64, uint64_t, GGUF_TYPE_U64, u64)
GGUF_SETTER(i64, int64_t, GGUF_TYPE_I64, i64)
GGUF_SETTER(f64, double, GGUF_TYPE_F64, f64)

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *s)
{
    gguf_value val = {.type = GGUF_TYPE_STR, .str = {s ? strlen(s) : 0, s}};
    if (!s && !w->status)
        return fail(w, QK_EFORMAT, "%s: key '%s': NULL string", w->path, key ? key : "(null)");
    return gguf_writer_set_value(w, key, &val);
}

int gguf_writer_set_arr(gguf_writer *w, const char *key, enum gguf_vtype elem_type,
                        const void *data, uint64_t n)
{
    gguf_value val = {.type = GGUF_TYPE_ARR, .arr = {elem_type, n, data}};
    return gguf_writer_set_value(w, key, &val);
}

int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n)
{
    if (w->status)
        return w->status;
    const char *k = key ? key : "(null)";
    if (n && !strs)
        return fail(w, QK_EFORMAT, "%s: key '%s': array of %llu strings has no data", w->path, k,
                    (unsigned long long)n);
    if (n > SIZE_MAX / sizeof(gguf_str))
        return fail(w, QK_ERANGE, "%s: key '%s': array of %llu strings is too large", w->path, k,
                    (unsigned long long)n);
    gguf_str *s = malloc(n ? (size_t)n * sizeof *s : 1);
    if (!s)
        return fail(w, QK_ENOMEM, "%s: key '%s': out of memory", w->path, k);
    for (uint64_t i = 0; i < n && !w->status; i++) {
        if (!strs[i])
            fail(w, QK_EFORMAT, "%s: key '%s': string %llu is NULL", w->path, k, (unsigned long long)i);
        else
            s[i] = (gguf_str){strlen(strs[i]), strs[i]};
    }
    if (!w->status)
        gguf_writer_set_arr(w, key, GGUF_TYPE_STR, s, n);
    free(s);
    return w->status;
}

/* ---- tensor declarations ----------------------------------------------------------------- */

static int check_tensor_name(gguf_writer *w, const char *name)
{
    if (w->data_phase)
        return fail(w, QK_EFORMAT, "%s: tensor '%s' added after gguf_writer_begin_data", w->path,
                    name ? name : "(null)");
    if (!name || !*name)
        return fail(w, QK_EFORMAT, "%s: tensor %llu has an empty name", w->path,
                    (unsigned long long)w->n_t);
    if (strlen(name) >= GGUF_MAX_NAME)
        return fail(w, QK_EFORMAT, "%s: tensor '%s': name longer than %d bytes", w->path, name,
                    GGUF_MAX_NAME - 1);
    if (gguf_index_get(&w->names, name, wt_name, w->t) != GGUF_NONE)
        return fail(w, QK_EFORMAT, "%s: duplicate tensor name '%s'", w->path, name);
    return QK_OK;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, uint32_t n_dims,
                           const int64_t *ne)
{
    if (w->status || check_tensor_name(w, name))
        return w->status;
    wtensor t = {.type = type, .n_dims = n_dims, .new_part = w->break_next};
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
        t.ne[d] = ne && d < n_dims ? ne[d] : 1;
    qk_err why;
    int rc = gguf_shape_check(type, ne ? n_dims : 0, t.ne, &t.nbytes, &why);
    if (rc)
        return fail(w, rc, "%s: tensor '%s': %s", w->path, name, why.msg);
    wtensor *grown = (t.name = strdup(name)) ? qk_grow(w->t, &w->cap_t, w->n_t + 1, sizeof *grown)
                                             : NULL;
    if (grown)
        w->t = grown;
    if (!grown || gguf_index_reserve(&w->names, w->n_t + 1, wt_name, w->t)) {
        free(t.name);
        return fail(w, QK_ENOMEM, "%s: out of memory", w->path);
    }
    w->t[w->n_t] = t;
    gguf_index_put(&w->names, w->n_t++, wt_name, w->t);
    w->break_next = false;
    return QK_OK;
}

int gguf_writer_next_part(gguf_writer *w)
{
    if (w->status)
        return w->status;
    if (w->data_phase)
        return fail(w, QK_EFORMAT, "%s: part break after gguf_writer_begin_data", w->path);
    w->split = w->break_next = true;
    return QK_OK;
}

/* ---- layout and headers ------------------------------------------------------------------ */

static uint64_t pad_to(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

static bool starts_new_part(const gguf_writer *w, const wtensor *t, uint64_t count, uint64_t bytes,
                            uint64_t padded)
{
    if (!w->split || count == 0) /* an oversized tensor still gets a part of its own */
        return false;
    if (t->new_part)
        return true;
    if (w->opts.max_tensors && count >= w->opts.max_tensors)
        return true;
    return w->opts.max_bytes && (bytes + padded < bytes || bytes + padded > w->opts.max_bytes);
}

/* opts.n_parts: marks the tensors that start parts 2..N so that part k holds the tensors whose
 * data starts in the k-th N-th of all tensor data (padded), every part at least one tensor. */
static int balance_parts(gguf_writer *w)
{
    uint32_t n = w->opts.n_parts;
    if (n > GGUF_MAX_PARTS)
        return fail(w, QK_ERANGE, "%s: more than %d split parts", w->path, GGUF_MAX_PARTS);
    if (w->n_t < n)
        return fail(w, QK_ERANGE, "%s: %llu tensors cannot fill %u split parts", w->path,
                    (unsigned long long)w->n_t, n);
    unsigned __int128 total = 0, start = 0;
    for (uint64_t i = 0; i < w->n_t; i++)
        total += pad_to(w->t[i].nbytes, w->alignment);
    uint32_t p = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        bool due = start * n >= (unsigned __int128)(p + 1) * total;
        bool forced = w->n_t - i == (uint64_t)(n - 1 - p); /* one tensor left per remaining part */
        if (i > 0 && p + 1 < n && (due || forced)) {
            t->new_part = true;
            p++;
        }
        start += pad_to(t->nbytes, w->alignment);
    }
    return QK_OK;
}

/* Assigns every tensor its part and offset; counts the parts. */
static int layout(gguf_writer *w)
{
    if (w->opts.n_parts && balance_parts(w))
        return w->status;
    uint32_t p = 0;
    uint64_t bytes = 0, count = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        uint64_t padded = pad_to(t->nbytes, w->alignment); /* nbytes < 2^63: no overflow */
        if (starts_new_part(w, t, count, bytes, padded)) {
            if (++p >= GGUF_MAX_PARTS)
                return fail(w, QK_ERANGE, "%s: more than %d split parts", w->path, GGUF_MAX_PARTS);
            bytes = count = 0;
        }
        t->part = p;
        t->offset = bytes;
        if (!gguf_add_ok(bytes, padded, &bytes))
            return fail(w, QK_ERANGE, "%s: tensor data too large", w->path);
        count++;
    }
    if (w->split && w->n_t > INT32_MAX)
        return fail(w, QK_ERANGE, "%s: %llu tensors do not fit %s", w->path,
                    (unsigned long long)w->n_t, GGUF_KEY_SPLIT_TENSORS);
    w->n_parts = p + 1;
    return QK_OK;
}

static void put(gguf_writer *w, wpart *p, const void *data, size_t n)
{
    if (w->status || n == 0)
        return;
    if (w->hashing) {
        qk_hash_update(&w->id, data, n);
        p->pos += n;
        return;
    }
    if (!p->fp) /* a part another shard writes */
        return;
    if (fwrite(data, 1, n, p->fp) != n) {
        fail(w, QK_EIO, "%s: write failed: %s", p->path, strerror(errno));
        return;
    }
    p->pos += n;
}

/* n scalars of esize bytes in file order; bools as 0/1 bytes. */
static void put_scalars(gguf_writer *w, wpart *p, const void *data, uint64_t n, size_t esize,
                        bool is_bool)
{
    uint8_t buf[4096];
    const uint8_t *src = data;
    while (n && !w->status) {
        uint64_t m = n < sizeof buf / esize ? n : sizeof buf / esize;
        gguf_store_le(buf, src, m, esize);
        for (uint64_t i = 0; is_bool && i < m; i++)
            buf[i] = buf[i] != 0;
        put(w, p, buf, (size_t)(m * esize));
        src += m * esize;
        n -= m;
    }
}

static void put_u32(gguf_writer *w, wpart *p, uint32_t v) { put_scalars(w, p, &v, 1, 4, false); }
static void put_u64(gguf_writer *w, wpart *p, uint64_t v) { put_scalars(w, p, &v, 1, 8, false); }

static void put_str(gguf_writer *w, wpart *p, const gguf_str *s)
{
    put_u64(w, p, s->len);
    put(w, p, s->ptr, (size_t)s->len);
}

static void put_value(gguf_writer *w, wpart *p, const gguf_value *v);

static void put_arr(gguf_writer *w, wpart *p, const gguf_value *v)
{
    uint32_t et = v->arr.type;
    put_u32(w, p, et);
    put_u64(w, p, v->arr.n);
    for (uint64_t i = 0; et == GGUF_TYPE_STR && i < v->arr.n; i++)
        put_str(w, p, &((const gguf_str *)v->arr.data)[i]);
    for (uint64_t i = 0; et == GGUF_TYPE_ARR && i < v->arr.n; i++)
        put_value(w, p, &((const gguf_value *)v->arr.data)[i]);
    if (et != GGUF_TYPE_STR && et != GGUF_TYPE_ARR)
        put_scalars(w, p, v->arr.data, v->arr.n, gguf_vtype_size(et), et == GGUF_TYPE_BOOL);
}

static void put_value(gguf_writer *w, wpart *p, const gguf_value *v)
{
    if (v->type == GGUF_TYPE_STR)
        put_str(w, p, &v->str);
    else if (v->type == GGUF_TYPE_ARR)
        put_arr(w, p, v);
    else
        put_scalars(w, p, &v->u64, 1, gguf_vtype_size(v->type), v->type == GGUF_TYPE_BOOL);
}

static void put_kv(gguf_writer *w, wpart *p, const char *key, const gguf_value *v)
{
    put_str(w, p, &(gguf_str){strlen(key), key});
    put_u32(w, p, v->type);
    if (v->type == GGUF_TYPE_ARR) /* the element type and count follow the ARR tag */
        put_arr(w, p, v);
    else
        put_value(w, p, v);
}

static void put_zeros(gguf_writer *w, wpart *p, uint64_t n)
{
    static const uint8_t zeros[256];
    for (; n > 0 && !w->status; n -= n < sizeof zeros ? n : sizeof zeros)
        put(w, p, zeros, (size_t)(n < sizeof zeros ? n : sizeof zeros));
}

/* Part 1 carries all the metadata; later parts only what a reader needs to find their data. */
static void put_header(gguf_writer *w, uint32_t pi)
{
    wpart *p = &w->parts[pi];
    gguf_value no = {.type = GGUF_TYPE_U16, .u16 = (uint16_t)pi};
    gguf_value count = {.type = GGUF_TYPE_U16, .u16 = (uint16_t)w->n_parts};
    gguf_value total = {.type = GGUF_TYPE_I32, .i32 = (int32_t)w->n_t};
    gguf_value align = {.type = GGUF_TYPE_U32, .u32 = w->alignment};
    bool own_align = pi > 0 && w->alignment != GGUF_DEFAULT_ALIGNMENT;
    uint64_t n_kv = (pi == 0 ? w->n_kv : own_align) + (w->split ? 4 : 0);
    put(w, p, "GGUF", 4);
    put_u32(w, p, GGUF_VERSION);
    put_u64(w, p, p->n_tensors);
    put_u64(w, p, n_kv);
    for (uint64_t i = 0; pi == 0 && i < w->n_kv; i++)
        put_kv(w, p, w->kv[i].key, &w->kv[i].value);
    if (own_align)
        put_kv(w, p, GGUF_KEY_ALIGNMENT, &align);
    if (w->split) {
        put_kv(w, p, GGUF_KEY_SPLIT_NO, &no);
        put_kv(w, p, GGUF_KEY_SPLIT_COUNT, &count);
        put_kv(w, p, GGUF_KEY_SPLIT_TENSORS, &total);
        /* split.id (qkit's key; llama.cpp ignores it): all zeros while it is being computed */
        put_str(w, p, &(gguf_str){strlen(GGUF_KEY_SPLIT_ID), GGUF_KEY_SPLIT_ID});
        put_u32(w, p, GGUF_TYPE_STR);
        put_u64(w, p, SPLIT_ID_LEN);
        put(w, p, w->id_hex, SPLIT_ID_LEN);
    }
    for (uint64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        if (t->part != pi)
            continue;
        put_str(w, p, &(gguf_str){strlen(t->name), t->name});
        put_u32(w, p, t->n_dims);
        put_scalars(w, p, t->ne, t->n_dims, 8, false);
        put_u32(w, p, (uint32_t)t->type);
        put_u64(w, p, t->offset);
    }
    put_zeros(w, p, pad_to(p->pos, w->alignment) - p->pos);
}

/* The path as given, or PREFIX-0000K-of-0000N.gguf with PREFIX the path without ".gguf". */
static int part_paths(gguf_writer *w)
{
    if (!(w->parts = calloc(w->n_parts, sizeof *w->parts)))
        return fail(w, QK_ENOMEM, "%s: out of memory", w->path);
    size_t n = strlen(w->path);
    if (n > 5 && !strcmp(w->path + n - 5, ".gguf"))
        n -= 5;
    char *prefix = strndup(w->path, n);
    for (uint32_t i = 0; prefix && i < w->n_parts; i++) {
        wpart *p = &w->parts[i];
        p->path = w->split ? malloc(n + 32) : strdup(w->path);
        if (!p->path)
            break;
        if (w->split)
            gguf_split_path(p->path, n + 32, prefix, i, w->n_parts);
    }
    free(prefix);
    if (!prefix || !w->parts[w->n_parts - 1].path)
        return fail(w, QK_ENOMEM, "%s: out of memory", w->path);
    for (uint64_t i = 0; i < w->n_t; i++)
        w->parts[w->t[i].part].n_tensors++;
    return QK_OK;
}

static bool owns_part(const gguf_writer *w, uint32_t part)
{
    return w->shard_count == 0 || part % w->shard_count == w->shard_index;
}

/* Sharded writes: the tensors of parts another shard writes are passed over. */
static void skip_foreign(gguf_writer *w)
{
    while (w->cur < w->n_t && !owns_part(w, w->t[w->cur].part))
        w->cur++;
}

/* split.id: hashes every part's header with the placeholder id, then the source id. */
static void compute_split_id(gguf_writer *w)
{
    qk_hash_init(&w->id);
    w->hashing = true;
    for (uint32_t i = 0; i < w->n_parts; i++) {
        put_header(w, i);
        w->parts[i].pos = 0;
    }
    w->hashing = false;
    qk_hash_u64(&w->id, w->source_id);
    char hex[SPLIT_ID_LEN + 1];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)qk_hash_final(&w->id));
    memcpy(w->id_hex, hex, SPLIT_ID_LEN);
}

int gguf_writer_begin_data(gguf_writer *w)
{
    if (w->status)
        return w->status;
    if (w->data_phase)
        return fail(w, QK_EFORMAT, "%s: gguf_writer_begin_data called twice", w->path);
    w->data_phase = true;
    if (layout(w) || part_paths(w))
        return w->status;
    if (w->shard_count > w->n_parts)
        return fail(w, QK_ERANGE, "%s: shard %u of %u: the output has only %u split part%s; run "
                    "%u job%s (--shard 0/%u ... %u/%u)", w->path, w->shard_index, w->shard_count,
                    w->n_parts, w->n_parts == 1 ? "" : "s", w->n_parts, w->n_parts == 1 ? "" : "s",
                    w->n_parts, w->n_parts - 1, w->n_parts);
    for (uint32_t i = 0; i < w->n_parts && !w->status; i++)
        for (size_t k = 0; k < w->n_protect && !w->status; k++) {
            int rc = qk_output_check(w->parts[i].path, w->protect[k], &w->err);
            if (rc)
                w->status = rc;
        }
    if (w->status)
        return w->status;
    if (w->split)
        compute_split_id(w);
    for (uint32_t i = 0; i < w->n_parts && !w->status; i++) {
        wpart *p = &w->parts[i];
        if (!owns_part(w, i))
            continue;
        int rc = of_open(&p->f, p->path, &w->err);
        if (rc) {
            w->status = rc;
            break;
        }
        p->fp = of_stream(p->f);
        setvbuf(p->fp, NULL, _IOFBF, STREAM_BUFFER); /* fails only harmlessly */
        put_header(w, i);
    }
    skip_foreign(w);
    return w->status;
}

uint32_t gguf_writer_n_parts(const gguf_writer *w) { return w->data_phase ? w->n_parts : 0; }

uint64_t gguf_writer_header_size(gguf_writer *w)
{
    if (w->status || w->data_phase || w->split || layout(w))
        return 0;
    wpart tmp = {0}, *saved = w->parts;
    uint32_t saved_n = w->n_parts;
    qk_hash saved_id = w->id;
    w->parts = &tmp;
    w->n_parts = 1;
    w->hashing = true; /* counts positions, writes nothing */
    put_header(w, 0);
    w->hashing = false;
    w->parts = saved;
    w->n_parts = saved_n;
    w->id = saved_id;
    return tmp.pos;
}

const char *gguf_writer_split_id(const gguf_writer *w)
{
    return w->data_phase && w->split && !w->status ? w->id_hex : NULL;
}

int gguf_writer_set_shard(gguf_writer *w, uint32_t index, uint32_t count)
{
    if (w->status)
        return w->status;
    if (w->data_phase)
        return fail(w, QK_EFORMAT, "%s: gguf_writer_set_shard after gguf_writer_begin_data", w->path);
    if (count == 0 || index >= count)
        return fail(w, QK_ERANGE, "%s: shard %u of %u does not exist (0 <= I < N)", w->path, index,
                    count);
    w->shard_index = index;
    w->shard_count = count;
    w->split = true;
    return QK_OK;
}

void gguf_writer_set_source_id(gguf_writer *w, uint64_t id) { w->source_id = id; }

bool gguf_writer_writes(const gguf_writer *w, const char *name)
{
    if (!w->data_phase || w->status)
        return false;
    uint64_t i = gguf_index_get(&w->names, name, wt_name, w->t);
    return i < w->n_t && owns_part(w, w->t[i].part);
}

bool gguf_writer_writes_part(const gguf_writer *w, uint32_t part)
{
    return w->data_phase && part < w->n_parts && owns_part(w, part);
}

/* ---- tensor data ------------------------------------------------------------------------- */

/* Data may be written: after begin_data and while a tensor is left. */
static int check_writable(gguf_writer *w, size_t nbytes)
{
    if (w->status)
        return w->status;
    if (!w->data_phase)
        return fail(w, QK_EFORMAT, "%s: tensor data written before gguf_writer_begin_data", w->path);
    if (w->cur == w->n_t)
        return fail(w, QK_EFORMAT, "%s: write of %zu bytes past the last tensor", w->path, nbytes);
    return QK_OK;
}

int gguf_writer_write(gguf_writer *w, const void *data, size_t nbytes)
{
    if (nbytes == 0 && !w->status) /* an empty piece changes nothing, even at the end */
        return QK_OK;
    if (check_writable(w, nbytes))
        return w->status;
    const wtensor *t = &w->t[w->cur];
    wpart *p = &w->parts[t->part];
    if (nbytes > t->nbytes - w->written)
        return fail(w, QK_EFORMAT,
                    "%s: tensor '%s': %zu more bytes exceed its declared size of %llu bytes "
                    "(%llu written)",
                    w->path, t->name, nbytes, (unsigned long long)t->nbytes,
                    (unsigned long long)w->written);
    put(w, p, data, nbytes);
    w->written += nbytes;
    if (w->written == t->nbytes) {
        put_zeros(w, p, pad_to(p->pos, w->alignment) - p->pos);
        w->cur++;
        w->written = 0;
        skip_foreign(w);
    }
    return w->status;
}

int gguf_writer_begin_tensor(gguf_writer *w, const char *name, size_t nbytes)
{
    if (check_writable(w, nbytes))
        return w->status;
    const wtensor *t = &w->t[w->cur];
    if (w->written)
        return fail(w, QK_EFORMAT, "%s: tensor '%s' is already partly written", w->path, t->name);
    if (!name || strcmp(name, t->name))
        return fail(w, QK_EFORMAT, "%s: expected tensor '%s' next, got '%s'", w->path, t->name,
                    name ? name : "(null)");
    if (nbytes != t->nbytes)
        return fail(w, QK_EFORMAT, "%s: tensor '%s': %zu bytes given, %llu declared", w->path,
                    t->name, nbytes, (unsigned long long)t->nbytes);
    return QK_OK;
}

int gguf_writer_write_tensor(gguf_writer *w, const char *name, const void *data, size_t nbytes)
{
    if (gguf_writer_begin_tensor(w, name, nbytes))
        return w->status;
    return gguf_writer_write(w, data, nbytes);
}

const char *gguf_writer_error(const gguf_writer *w) { return w->status ? w->err.msg : ""; }

/* ---- commit and abort -------------------------------------------------------------------- */

/* All parts are complete temporaries; they are flushed, fsynced and renamed as one set (see
 * outfile.h: signals wait for the renames, a failed rename puts the old files back). */
static void rename_all(gguf_writer *w)
{
    of_file **fs = malloc(w->n_parts * sizeof *fs);
    if (!fs) {
        fail(w, QK_ENOMEM, "%s: out of memory", w->path);
        return;
    }
    size_t n = 0;
    for (uint32_t i = 0; i < w->n_parts; i++) {
        if (w->parts[i].f)
            fs[n++] = w->parts[i].f;
        w->parts[i].f = NULL;
    }
    int rc = of_commit_set(fs, n, &w->err);
    if (rc)
        w->status = rc;
    free(fs);
}

static void writer_free(gguf_writer *w)
{
    for (uint32_t i = 0; w->parts && i < w->n_parts; i++) {
        of_abort(w->parts[i].f);
        free(w->parts[i].path);
    }
    free(w->parts);
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->kv[i].block);
    for (uint64_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->kv);
    free(w->t);
    gguf_index_free(&w->keys);
    gguf_index_free(&w->names);
    for (size_t i = 0; i < w->n_protect; i++)
        free(w->protect[i]);
    free(w->protect);
    free(w->path);
    free(w);
}

int gguf_writer_commit(gguf_writer *w, qk_err *err)
{
    if (!w->status && !w->data_phase)
        gguf_writer_begin_data(w);
    if (!w->status && w->cur < w->n_t)
        fail(w, QK_EFORMAT,
             "%s: commit before all tensor data was written: tensor '%s' (%llu of %llu) has %llu "
             "of %llu bytes",
             w->path, w->t[w->cur].name, (unsigned long long)w->cur + 1,
             (unsigned long long)w->n_t, (unsigned long long)w->written,
             (unsigned long long)w->t[w->cur].nbytes);
    if (!w->status)
        rename_all(w);
    int rc = w->status;
    if (rc)
        qk_err_set(err, rc, "%s", w->err.msg);
    writer_free(w);
    return rc;
}

void gguf_writer_abort(gguf_writer *w)
{
    if (w)
        writer_free(w);
}
