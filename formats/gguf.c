/* gguf.c — what the GGUF reader and writer share: value types, checked arithmetic, the bump
 * allocator, byte order, deep copies of values, the name index and split file names. */
#include "gguf_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/types.h"

_Static_assert(sizeof(bool) == 1, "GGUF bool arrays are stored as C bool arrays");
_Static_assert(sizeof(float) == 4 && sizeof(double) == 8, "IEEE floats expected");

static const struct {
    const char *name;
    size_t size;
} VTYPES[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_U8] = {"u8", 1},   [GGUF_TYPE_I8] = {"i8", 1},     [GGUF_TYPE_U16] = {"u16", 2},
    [GGUF_TYPE_I16] = {"i16", 2}, [GGUF_TYPE_U32] = {"u32", 4},   [GGUF_TYPE_I32] = {"i32", 4},
    [GGUF_TYPE_F32] = {"f32", 4}, [GGUF_TYPE_BOOL] = {"bool", 1}, [GGUF_TYPE_STR] = {"str", 0},
    [GGUF_TYPE_ARR] = {"arr", 0}, [GGUF_TYPE_U64] = {"u64", 8},   [GGUF_TYPE_I64] = {"i64", 8},
    [GGUF_TYPE_F64] = {"f64", 8},
};

const char *gguf_type_name(enum gguf_vtype type)
{
    return (unsigned)type < GGUF_TYPE_COUNT ? VTYPES[type].name : "invalid";
}

size_t gguf_vtype_size(uint32_t t) { return t < GGUF_TYPE_COUNT ? VTYPES[t].size : 0; }

bool gguf_mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a)
        return false;
    *out = a * b;
    return true;
}

bool gguf_add_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b > UINT64_MAX - a)
        return false;
    *out = a + b;
    return true;
}

void *gguf_bump_alloc(gguf_bump *b, uint64_t n)
{
    uint64_t padded, end;
    if (!gguf_add_ok(n, 7, &padded) || !gguf_add_ok(b->used, padded & ~(uint64_t)7, &end) ||
        end > SIZE_MAX) {
        b->overflow = true;
        return NULL;
    }
    void *p = b->base && n ? b->base + b->used : NULL;
    b->used = end;
    return p;
}

static bool host_is_le(void)
{
    const uint16_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* Both directions are the same byte reversal on a big-endian host. */
static void copy_le(uint8_t *dst, const uint8_t *src, uint64_t n, size_t esize)
{
    if (host_is_le() || esize == 1) {
        memcpy(dst, src, (size_t)(n * esize));
        return;
    }
    for (uint64_t i = 0; i < n; i++)
        for (size_t k = 0; k < esize; k++)
            dst[i * esize + k] = src[i * esize + esize - 1 - k];
}

void gguf_load_le(void *dst, const uint8_t *src, uint64_t n, size_t esize)
{
    copy_le(dst, src, n, esize);
}

void gguf_store_le(uint8_t *dst, const void *src, uint64_t n, size_t esize)
{
    copy_le(dst, src, n, esize);
}

/* ---- deep copies of in-memory values (the writer's setters) ------------------------------ */

static int measure_str(const gguf_str *s, gguf_bump *b, const char *key, qk_err *err)
{
    if (!s->ptr && s->len)
        return qk_err_set(err, QK_EFORMAT, "key '%s': string of %llu bytes has no data", key,
                          (unsigned long long)s->len);
    if (s->len == UINT64_MAX)
        return qk_err_set(err, QK_ERANGE, "key '%s': string too long", key);
    gguf_bump_alloc(b, s->len + 1);
    return QK_OK;
}

static int measure_arr(const gguf_value *v, int depth, gguf_bump *b, const char *key, qk_err *err)
{
    uint32_t et = v->arr.type;
    if (et >= GGUF_TYPE_COUNT)
        return qk_err_set(err, QK_EFORMAT, "key '%s': unknown array element type %u", key, et);
    if (et == GGUF_TYPE_ARR && depth + 1 > GGUF_MAX_DEPTH)
        return qk_err_set(err, QK_EFORMAT, "key '%s': arrays nested deeper than %d levels", key,
                          GGUF_MAX_DEPTH);
    if (v->arr.n && !v->arr.data)
        return qk_err_set(err, QK_EFORMAT, "key '%s': array of %llu elements has no data", key,
                          (unsigned long long)v->arr.n);
    size_t esize = et == GGUF_TYPE_STR   ? sizeof(gguf_str)
                   : et == GGUF_TYPE_ARR ? sizeof(gguf_value)
                                         : gguf_vtype_size(et);
    uint64_t bytes;
    if (!gguf_mul_ok(v->arr.n, esize, &bytes))
        return qk_err_set(err, QK_ERANGE, "key '%s': array of %llu elements is too large", key,
                          (unsigned long long)v->arr.n);
    gguf_bump_alloc(b, bytes);
    for (uint64_t i = 0; i < v->arr.n && et == GGUF_TYPE_STR; i++) {
        int rc = measure_str(&((const gguf_str *)v->arr.data)[i], b, key, err);
        if (rc)
            return rc;
    }
    for (uint64_t i = 0; i < v->arr.n && et == GGUF_TYPE_ARR; i++) {
        const gguf_value *e = &((const gguf_value *)v->arr.data)[i];
        if (e->type != GGUF_TYPE_ARR)
            return qk_err_set(err, QK_EFORMAT, "key '%s': element %llu of an array of arrays is a %s",
                              key, (unsigned long long)i, gguf_type_name(e->type));
        int rc = measure_arr(e, depth + 1, b, key, err);
        if (rc)
            return rc;
    }
    return QK_OK;
}

int gguf_value_measure(const gguf_value *v, int depth, gguf_bump *b, const char *key, qk_err *err)
{
    int rc = QK_OK;
    if ((unsigned)v->type >= GGUF_TYPE_COUNT)
        rc = qk_err_set(err, QK_EFORMAT, "key '%s': unknown value type %u", key, (unsigned)v->type);
    else if (v->type == GGUF_TYPE_STR)
        rc = measure_str(&v->str, b, key, err);
    else if (v->type == GGUF_TYPE_ARR)
        rc = measure_arr(v, depth, b, key, err);
    if (!rc && b->overflow)
        rc = qk_err_set(err, QK_ERANGE, "key '%s': value too large", key);
    return rc;
}

static void copy_str(gguf_str *dst, const gguf_str *src, gguf_bump *b)
{
    char *p = gguf_bump_alloc(b, src->len + 1);
    if (src->len)
        memcpy(p, src->ptr, (size_t)src->len);
    p[src->len] = '\0';
    dst->len = src->len;
    dst->ptr = p;
}

void gguf_value_copy(gguf_value *dst, const gguf_value *src, gguf_bump *b)
{
    *dst = *src;
    if (src->type == GGUF_TYPE_STR) {
        copy_str(&dst->str, &src->str, b);
        return;
    }
    if (src->type != GGUF_TYPE_ARR)
        return;
    uint32_t et = src->arr.type;
    uint64_t n = src->arr.n;
    if (et == GGUF_TYPE_STR) {
        gguf_str *s = gguf_bump_alloc(b, n * sizeof *s);
        for (uint64_t i = 0; i < n; i++)
            copy_str(&s[i], &((const gguf_str *)src->arr.data)[i], b);
        dst->arr.data = s;
    } else if (et == GGUF_TYPE_ARR) {
        gguf_value *a = gguf_bump_alloc(b, n * sizeof *a);
        for (uint64_t i = 0; i < n; i++)
            gguf_value_copy(&a[i], &((const gguf_value *)src->arr.data)[i], b);
        dst->arr.data = a;
    } else {
        void *p = gguf_bump_alloc(b, n * gguf_vtype_size(et));
        if (n)
            memcpy(p, src->arr.data, (size_t)(n * gguf_vtype_size(et)));
        dst->arr.data = p;
    }
}

/* ---- tensor shapes ------------------------------------------------------------------------ */

int gguf_shape_check(int type, uint32_t n_dims, const int64_t *ne, uint64_t *nbytes, qk_err *why)
{
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return qk_err_set(why, QK_EFORMAT, "%u dimensions (must be 1 to %d)", n_dims, GGUF_MAX_DIMS);
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] <= 0)
            return qk_err_set(why, QK_EFORMAT, "dimension %u has %lld elements (must be > 0)", d,
                              (long long)ne[d]);
        if (!gguf_mul_ok(n_elems, (uint64_t)ne[d], &n_elems) || n_elems > INT64_MAX)
            return qk_err_set(why, QK_EFORMAT, "element count overflows");
    }
    const q_type_info_t *ti = q_type_info(type);
    if (!ti)
        return qk_err_set(why, QK_EFORMAT, "unknown tensor type %d", type);
    if (ne[0] % ti->blck_size)
        return qk_err_set(why, QK_EFORMAT,
                          "row of %lld elements is not a multiple of the %s block size %lld",
                          (long long)ne[0], ti->name, (long long)ti->blck_size);
    /* whole blocks: n_elems / blck_size of them, each type_size bytes */
    if (!gguf_mul_ok(n_elems / (uint64_t)ti->blck_size, ti->type_size, nbytes))
        return qk_err_set(why, QK_EFORMAT, "byte size overflows");
    return QK_OK;
}

/* ---- name index -------------------------------------------------------------------------- */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static void place(uint64_t *slots, uint64_t mask, uint64_t h, uint64_t i)
{
    while (slots[h & mask])
        h++;
    slots[h & mask] = i + 1;
}

int gguf_index_reserve(gguf_index *ix, uint64_t n, gguf_name_fn name_of, const void *items)
{
    if (n > (UINT64_MAX >> 4))
        return QK_ENOMEM;
    uint64_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    if (cap > SIZE_MAX / sizeof(uint64_t))
        return QK_ENOMEM;
    if (ix->slots && ix->mask + 1 >= cap)
        return QK_OK;
    uint64_t *slots = calloc((size_t)cap, sizeof *slots);
    if (!slots)
        return QK_ENOMEM;
    for (uint64_t k = 0; ix->slots && k <= ix->mask; k++)
        if (ix->slots[k])
            place(slots, cap - 1, hash_name(name_of(items, ix->slots[k] - 1)), ix->slots[k] - 1);
    free(ix->slots);
    ix->slots = slots;
    ix->mask = cap - 1;
    return QK_OK;
}

uint64_t gguf_index_put(gguf_index *ix, uint64_t i, gguf_name_fn name_of, const void *items)
{
    const char *name = name_of(items, i);
    uint64_t found = gguf_index_get(ix, name, name_of, items);
    if (found != GGUF_NONE)
        return found;
    place(ix->slots, ix->mask, hash_name(name), i);
    ix->count++;
    return GGUF_NONE;
}

uint64_t gguf_index_get(const gguf_index *ix, const char *name, gguf_name_fn name_of,
                        const void *items)
{
    if (!ix->slots)
        return GGUF_NONE;
    for (uint64_t h = hash_name(name);; h++) {
        uint64_t s = ix->slots[h & ix->mask];
        if (!s)
            return GGUF_NONE;
        if (strcmp(name_of(items, s - 1), name) == 0)
            return s - 1;
    }
}

void gguf_index_free(gguf_index *ix)
{
    free(ix->slots);
    *ix = (gguf_index){0};
}

/* ---- split names ------------------------------------------------------------------------- */

int gguf_split_path(char *buf, size_t size, const char *prefix, uint32_t part, uint32_t count)
{
    int n = snprintf(buf, size, "%s-%05u-of-%05u.gguf", prefix, (unsigned)part + 1,
                     (unsigned)count);
    if (n < 0 || (size_t)n >= size)
        return QK_ERANGE;
    return QK_OK;
}
