#include "safetensors.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../quant/buf.h"
#include "file.h"
#include "outfile.h"

/* cJSON reads numbers as doubles, which hold every integer up to 2^53 exactly and no more. */
#define MAX_EXACT_INT (1ull << 53)
#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"
#define EXT ".safetensors"

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_DTYPE_COUNT] = {
    [ST_F64] = {"F64", 8},         [ST_F32] = {"F32", 4},         [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2},       [ST_I64] = {"I64", 8},         [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2},         [ST_I8] = {"I8", 1},           [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1},       [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
    [ST_U16] = {"U16", 2},         [ST_U32] = {"U32", 4},         [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(st_dtype dtype)
{
    return (unsigned)dtype < ST_DTYPE_COUNT ? dtypes[dtype].name : "invalid";
}

size_t st_dtype_size(st_dtype dtype)
{
    return (unsigned)dtype < ST_DTYPE_COUNT ? dtypes[dtype].size : 0;
}

int st_dtype_from_name(const char *name)
{
    for (int i = 0; name && i < ST_DTYPE_COUNT; i++)
        if (strcmp(name, dtypes[i].name) == 0)
            return i;
    return -1;
}

/* ---- small shared helpers -------------------------------------------------------------- */


typedef struct {
    char s[8 + ST_MAX_DIMS * 22];
} shape_text;

static shape_text fmt_shape(int n_dims, const int64_t *shape)
{
    shape_text r;
    size_t at = 0;
    r.s[at++] = '[';
    for (int d = 0; d < n_dims; d++)
        at += (size_t)snprintf(r.s + at, sizeof r.s - at, "%s%" PRId64, d ? ", " : "", shape[d]);
    snprintf(r.s + at, sizeof r.s - at, "]");
    return r;
}

/* Element count of a validated shape; -1 on 64-bit overflow. A zero dim makes the product 0 even
 * when the other dims alone would overflow. */
static int shape_elements(int n_dims, const int64_t *shape, uint64_t *out)
{
    uint64_t n = 1;
    for (int d = 0; d < n_dims; d++)
        if (shape[d] == 0) {
            *out = 0;
            return 0;
        }
    for (int d = 0; d < n_dims; d++)
        if (__builtin_mul_overflow(n, (uint64_t)shape[d], &n))
            return -1;
    *out = n;
    return 0;
}

/* st_spec_nbytes that also says what is wrong (into why[64]). */
static int spec_check(const st_tensor_spec *spec, uint64_t *nbytes, char *why)
{
    if ((unsigned)spec->dtype >= ST_DTYPE_COUNT) {
        snprintf(why, 64, "dtype %d is not an st_dtype", (int)spec->dtype);
        return QK_EFORMAT;
    }
    if (spec->n_dims < 0 || spec->n_dims > ST_MAX_DIMS) {
        snprintf(why, 64, "%d dims, not 0..%d", spec->n_dims, ST_MAX_DIMS);
        return QK_EFORMAT;
    }
    for (int d = 0; d < spec->n_dims; d++)
        if (spec->shape[d] < 0) {
            snprintf(why, 64, "shape[%d] is negative", d);
            return QK_EFORMAT;
        }
    uint64_t n;
    if (shape_elements(spec->n_dims, spec->shape, &n) != 0 ||
        __builtin_mul_overflow(n, (uint64_t)dtypes[spec->dtype].size, &n)) {
        snprintf(why, 64, "size overflows 64 bits");
        return QK_ERANGE;
    }
    *nbytes = n;
    return QK_OK;
}

int st_spec_nbytes(const st_tensor_spec *spec, uint64_t *nbytes)
{
    char why[64];
    return spec_check(spec, nbytes, why);
}

static uint64_t read_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* A JSON number that is an integer in [0, 2^53]. */
static int json_count(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= (double)MAX_EXACT_INT) || (double)(uint64_t)d != d)
        return 0;
    *out = (uint64_t)d;
    return 1;
}

/* The offset of a \u0000 escape inside a JSON string of text[0..n), or n when there is none.
 * cJSON decodes it into a NUL byte, which ends the C string: "a\u0000b" would become "a" and
 * alias a tensor of that name. */
static size_t escaped_nul(const char *t, size_t n)
{
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '"')
            in_str = !in_str;
        else if (in_str && t[i] == '\\') {
            if (n - i >= 6 && !memcmp(t + i + 1, "u0000", 5))
                return i;
            i++; /* the escaped character (a quote does not end the string) */
        }
    }
    return n;
}

/* Parses n bytes of untrusted text (not NUL-terminated) as one JSON value. The copy gives cJSON
 * the terminator it relies on; an embedded NUL would silently end the text, and an escaped one
 * (\u0000) a name, so both are refused. */
static int parse_json(const char *text, size_t n, const char *path, const char *what,
                      cJSON **out, qk_err *err)
{
    *out = NULL;
    const char *nul = memchr(text, 0, n);
    if (nul)
        return qk_err_set(err, QK_EFORMAT, "%s: %s contains a NUL byte at offset %zu", path, what,
                          (size_t)(nul - text));
    size_t esc = escaped_nul(text, n);
    if (esc < n)
        return qk_err_set(err, QK_EFORMAT, "%s: %s holds an escaped NUL (\\u0000) in a string at "
                          "offset %zu: names cannot contain NUL bytes", path, what, esc);
    char *buf = malloc(n + 1);
    if (!buf)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory reading the %s", path, what);
    memcpy(buf, text, n);
    buf[n] = 0;
    const char *end = NULL;
    *out = cJSON_ParseWithOpts(buf, &end, 1);
    size_t at = end ? (size_t)(end - buf) : 0;
    free(buf);
    if (!*out)
        return qk_err_set(err, QK_EFORMAT, "%s: %s is not valid JSON (error at byte %zu of %zu)",
                          path, what, at, n);
    return QK_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts names (an array of pointers) and returns a name that occurs twice, or NULL. */
static const char *sorted_duplicate(const char **names, size_t n)
{
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            return names[i];
    return NULL;
}

static char *path_join(const char *dir, const char *name)
{
    size_t a = dir ? strlen(dir) : 0, b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    if (a) {
        memcpy(p, dir, a);
        p[a++] = '/';
    }
    memcpy(p + a, name, b + 1);
    return p;
}

static int is_regular(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* ---- one file ---------------------------------------------------------------------------- */

struct st_file {
    char *path;
    const uint8_t *base;
    size_t size;
    size_t map_size; /* non-zero when base is our own mapping */
    uint64_t data_start, data_size, data_bytes;
    st_tensor *tensors;
    size_t n_tensors;
    const st_tensor **by_name;
    const char **meta; /* n_meta (key, value) pairs */
    size_t n_meta;
    char *strings; /* names, metadata keys and values */
    size_t strings_used;
};

static const char *keep(st_file *f, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = f->strings + f->strings_used;
    memcpy(p, s, n);
    f->strings_used += n;
    return p;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->file != y->file ? (x->file < y->file ? -1 : 1) : 0;
}

static int cmp_tensor_key(const void *key, const void *elem)
{
    return strcmp(key, (*(const st_tensor *const *)elem)->name);
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int parse_meta(st_file *f, const cJSON *meta, qk_err *err)
{
    if (!cJSON_IsObject(meta))
        return qk_err_set(err, QK_EFORMAT, "%s: '__metadata__' is not an object", f->path);
    size_t n = 0;
    for (const cJSON *c = meta->child; c; c = c->next, n++)
        if (!cJSON_IsString(c))
            return qk_err_set(err, QK_EFORMAT, "%s: metadata '%s' is not a string", f->path,
                              qk_show(c->string).s);
    if (!n)
        return QK_OK;
    f->meta = malloc(2 * n * sizeof *f->meta);
    const char **keys = malloc(n * sizeof *keys);
    int rc = QK_OK;
    if (!f->meta || !keys) {
        rc = qk_err_set(err, QK_ENOMEM, "%s: out of memory reading the metadata", f->path);
        goto done;
    }
    for (const cJSON *c = meta->child; c; c = c->next, f->n_meta++) {
        f->meta[2 * f->n_meta] = keys[f->n_meta] = keep(f, c->string);
        f->meta[2 * f->n_meta + 1] = keep(f, c->valuestring);
    }
    const char *twice = sorted_duplicate(keys, n);
    if (twice)
        rc = qk_err_set(err, QK_EFORMAT, "%s: metadata key '%s' appears twice", f->path,
                        qk_show(twice).s);
done:
    free(keys);
    return rc;
}

static int parse_shape(const st_file *f, const char *name, const cJSON *shape, st_tensor *t,
                       qk_err *err)
{
    if (!shape)
        return qk_err_set(err, QK_EFORMAT, "%s: tensor '%s': missing 'shape'", f->path, name);
    if (!cJSON_IsArray(shape))
        return qk_err_set(err, QK_EFORMAT, "%s: tensor '%s': 'shape' is not an array", f->path,
                          name);
    int n = cJSON_GetArraySize(shape);
    if (n > ST_MAX_DIMS)
        return qk_err_set(err, QK_EUNSUPPORTED,
                          "%s: tensor '%s': shape has %d dims, at most %d are supported", f->path,
                          name, n, ST_MAX_DIMS);
    t->n_dims = 0;
    for (const cJSON *c = shape->child; c; c = c->next) {
        uint64_t v;
        if (!json_count(c, &v))
            return qk_err_set(err, QK_EFORMAT,
                              "%s: tensor '%s': shape[%d] is not a non-negative integer", f->path,
                              name, t->n_dims);
        t->shape[t->n_dims++] = (int64_t)v;
    }
    return QK_OK;
}

static int parse_offsets(const st_file *f, const char *name, const cJSON *offs, uint64_t se[2],
                         qk_err *err)
{
    if (!offs)
        return qk_err_set(err, QK_EFORMAT, "%s: tensor '%s': missing 'data_offsets'", f->path,
                          name);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return qk_err_set(err, QK_EFORMAT,
                          "%s: tensor '%s': 'data_offsets' is not an array of two integers",
                          f->path, name);
    for (int i = 0; i < 2; i++)
        if (!json_count(cJSON_GetArrayItem(offs, i), &se[i]))
            return qk_err_set(err, QK_EFORMAT,
                              "%s: tensor '%s': data_offsets[%d] is not a non-negative integer",
                              f->path, name, i);
    if (se[0] > se[1])
        return qk_err_set(err, QK_EFORMAT,
                          "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                          "] begin after they end",
                          f->path, name, se[0], se[1]);
    if (se[1] > f->data_size)
        return qk_err_set(err, QK_EFORMAT,
                          "%s: tensor '%s': data ends at byte %" PRIu64
                          " but the data section has %" PRIu64,
                          f->path, name, se[1], f->data_size);
    return QK_OK;
}

/* Fills t from one header entry; t->name is already set. */
static int parse_tensor(const st_file *f, const cJSON *entry, st_tensor *t, qk_err *err)
{
    qk_shown shown_name = qk_show(t->name);
    const char *name = shown_name.s;
    if (!cJSON_IsObject(entry))
        return qk_err_set(err, QK_EFORMAT, "%s: tensor '%s': entry is not an object", f->path,
                          name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!dt)
        return qk_err_set(err, QK_EFORMAT, "%s: tensor '%s': missing 'dtype'", f->path, name);
    if (!cJSON_IsString(dt))
        return qk_err_set(err, QK_EFORMAT, "%s: tensor '%s': 'dtype' is not a string", f->path,
                          name);
    int dtype = st_dtype_from_name(dt->valuestring);
    if (dtype < 0)
        return qk_err_set(err, QK_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", f->path, name,
                          qk_show(dt->valuestring).s);
    t->dtype = (st_dtype)dtype;
    int rc = parse_shape(f, name, cJSON_GetObjectItemCaseSensitive(entry, "shape"), t, err);
    uint64_t se[2];
    if (rc == QK_OK)
        rc = parse_offsets(f, name, cJSON_GetObjectItemCaseSensitive(entry, "data_offsets"), se,
                           err);
    if (rc != QK_OK)
        return rc;
    if (shape_elements(t->n_dims, t->shape, &t->n_elements) != 0 ||
        __builtin_mul_overflow(t->n_elements, (uint64_t)dtypes[dtype].size, &t->nbytes))
        return qk_err_set(err, QK_ERANGE, "%s: tensor '%s': shape %s of %s overflows 64 bits",
                          f->path, name, fmt_shape(t->n_dims, t->shape).s, dtypes[dtype].name);
    if (t->nbytes != se[1] - se[0])
        return qk_err_set(err, QK_EFORMAT,
                          "%s: tensor '%s': shape %s of %s is %" PRIu64
                          " bytes but data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64,
                          f->path, name, fmt_shape(t->n_dims, t->shape).s, dtypes[dtype].name,
                          t->nbytes, se[0], se[1], se[1] - se[0]);
    t->offset = f->data_start + se[0];
    t->data = f->base + t->offset;
    t->path = f->path;
    return QK_OK;
}

/* No byte may belong to two tensors (empty tensors own no bytes). */
static int check_overlap(const st_file *f, qk_err *err)
{
    if (f->n_tensors < 2)
        return QK_OK;
    const st_tensor **v = malloc(f->n_tensors * sizeof *v);
    if (!v)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", f->path);
    for (size_t i = 0; i < f->n_tensors; i++)
        v[i] = &f->tensors[i];
    qsort(v, f->n_tensors, sizeof *v, cmp_tensor_offset);
    /* Sorted by start, the first overlap is always with the previous non-empty tensor. */
    const st_tensor *prev = NULL;
    int rc = QK_OK;
    for (size_t i = 0; i < f->n_tensors && rc == QK_OK; i++) {
        const st_tensor *t = v[i];
        if (!t->nbytes)
            continue;
        if (prev && t->offset < prev->offset + prev->nbytes) {
            uint64_t a = prev->offset - f->data_start, b = t->offset - f->data_start;
            rc = qk_err_set(err, QK_EFORMAT,
                            "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64
                            ", %" PRIu64 ") overlap",
                            f->path, qk_show(prev->name).s, a, a + prev->nbytes, qk_show(t->name).s, b,
                            b + t->nbytes);
        }
        prev = t;
    }
    free(v);
    return rc;
}

static int index_names(st_file *f, qk_err *err)
{
    f->by_name = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *f->by_name);
    if (!f->by_name)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", f->path);
    for (size_t i = 0; i < f->n_tensors; i++)
        f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, f->n_tensors, sizeof *f->by_name, cmp_tensor_name);
    for (size_t i = 1; i < f->n_tensors; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
            return qk_err_set(err, QK_EFORMAT, "%s: tensor '%s' appears twice in the header",
                              f->path, qk_show(f->by_name[i]->name).s);
    return QK_OK;
}

static int parse_root(st_file *f, const cJSON *root, size_t header_len, qk_err *err)
{
    if (!cJSON_IsObject(root))
        return qk_err_set(err, QK_EFORMAT, "%s: header is not a JSON object", f->path);
    const cJSON *meta = NULL;
    size_t n = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") != 0)
            n++;
        else if (meta)
            return qk_err_set(err, QK_EFORMAT, "%s: '__metadata__' appears twice", f->path);
        else
            meta = c;
    }
    /* Decoded strings are never longer than their JSON spelling, plus one terminator each. */
    f->strings = malloc(header_len + 2 * (size_t)cJSON_GetArraySize(root) + 1);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->strings || !f->tensors)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory reading the header", f->path);
    int rc = meta ? parse_meta(f, meta, err) : QK_OK;
    for (const cJSON *c = root->child; c && rc == QK_OK; c = c->next) {
        if (c == meta)
            continue;
        st_tensor *t = &f->tensors[f->n_tensors++];
        t->name = keep(f, c->string);
        rc = parse_tensor(f, c, t, err);
        f->data_bytes += t->nbytes;
    }
    if (rc == QK_OK)
        rc = index_names(f, err);
    return rc == QK_OK ? check_overlap(f, err) : rc;
}

static int parse_file(st_file *f, qk_err *err)
{
    if (f->size < 8)
        return qk_err_set(err, QK_EFORMAT,
                          "%s: file is %zu bytes, too short for the 8-byte header length", f->path,
                          f->size);
    uint64_t n = read_le64(f->base);
    if (n > ST_MAX_HEADER)
        return qk_err_set(err, QK_EFORMAT,
                          "%s: header length %" PRIu64 " is over the limit of %u bytes (100 MiB)",
                          f->path, n, ST_MAX_HEADER);
    if (n > f->size - 8)
        return qk_err_set(err, QK_EFORMAT,
                          "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)",
                          f->path, n, f->size);
    f->data_start = 8 + n;
    f->data_size = f->size - f->data_start;
    cJSON *root;
    int rc = parse_json((const char *)f->base + 8, (size_t)n, f->path, "header", &root, err);
    if (rc == QK_OK)
        rc = parse_root(f, root, (size_t)n, err);
    cJSON_Delete(root);
    return rc;
}

/* Takes ownership of a mapping of map_size bytes (0: base is borrowed). */
static int file_init(st_file **out, const void *base, size_t size, size_t map_size,
                     const char *path, qk_err *err)
{
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        if (map_size)
            munmap((void *)base, map_size);
        free(f);
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    }
    f->base = base;
    f->size = size;
    f->map_size = map_size;
    int rc = parse_file(f, err);
    if (rc != QK_OK) {
        st_file_close(f);
        return rc;
    }
    *out = f;
    return QK_OK;
}

int st_file_open(st_file **out, const char *path, qk_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qk_err_set(err, QK_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = QK_OK;
    void *map = NULL;
    if (fstat(fd, &st) != 0)
        rc = qk_err_set(err, QK_EIO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = qk_err_set(err, QK_EFORMAT, "%s: not a regular file", path);
    else if ((uint64_t)st.st_size > SIZE_MAX)
        rc = qk_err_set(err, QK_ERANGE, "%s: file too large to map", path);
    /* Files too short to hold the header length are rejected by the parser without a mapping. */
    size_t size = rc == QK_OK ? (size_t)st.st_size : 0;
    if (size >= 8) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED)
            rc = qk_err_set(err, QK_EIO, "%s: cannot map: %s", path, strerror(errno));
    }
    close(fd);
    if (rc != QK_OK)
        return rc;
    return file_init(out, map, size, size >= 8 ? size : 0, path, err);
}

int st_file_open_mem(st_file **out, const void *data, size_t size, const char *name, qk_err *err)
{
    *out = NULL;
    return file_init(out, data, size, 0, name, err);
}

void st_file_close(st_file *f)
{
    if (!f)
        return;
    if (f->map_size)
        munmap((void *)f->base, f->map_size);
    free(f->tensors);
    free(f->by_name);
    free(f->meta);
    free(f->strings);
    free(f->path);
    free(f);
}

const char *st_file_path(const st_file *f) { return f->path; }
size_t st_file_n_tensors(const st_file *f) { return f->n_tensors; }
uint64_t st_file_data_bytes(const st_file *f) { return f->data_bytes; }
size_t st_file_n_meta(const st_file *f) { return f->n_meta; }

const st_tensor *st_file_tensor(const st_file *f, size_t i)
{
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const st_tensor *st_file_find(const st_file *f, const char *name)
{
    const st_tensor **hit = bsearch(name, f->by_name, f->n_tensors, sizeof *hit, cmp_tensor_key);
    return hit ? *hit : NULL;
}

const char *st_file_meta_key(const st_file *f, size_t i)
{
    return i < f->n_meta ? f->meta[2 * i] : NULL;
}

const char *st_file_meta_value(const st_file *f, size_t i)
{
    return i < f->n_meta ? f->meta[2 * i + 1] : NULL;
}

/* ---- model --------------------------------------------------------------------------------- */

struct st_model {
    st_file **files;
    size_t n_files, cap_files;
    const st_tensor **order, **by_name;
    size_t n_tensors;
    uint64_t data_bytes;
    char **index_meta; /* n_index_meta (key, value) pairs, owned */
    size_t n_index_meta;
};

static int add_file(st_model *m, const char *path, qk_err *err)
{
    st_file **files = qk_grow(m->files, &m->cap_files, m->n_files + 1, sizeof *files);
    if (!files)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    m->files = files;
    st_file *f;
    int rc = st_file_open(&f, path, err);
    if (rc == QK_OK) {
        for (size_t i = 0; i < f->n_tensors; i++)
            f->tensors[i].file = (uint32_t)m->n_files;
        m->files[m->n_files++] = f;
    }
    return rc;
}

/* Lays every file's tensors out in model order and indexes them by name. */
static int build_namespace(st_model *m, qk_err *err)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_files; i++)
        n += m->files[i]->n_tensors;
    m->order = malloc((n ? n : 1) * sizeof *m->order);
    m->by_name = malloc((n ? n : 1) * sizeof *m->by_name);
    if (!m->order || !m->by_name)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", m->files[0]->path);
    for (size_t i = 0; i < m->n_files; i++)
        for (size_t j = 0; j < m->files[i]->n_tensors; j++) {
            m->order[m->n_tensors++] = &m->files[i]->tensors[j];
            m->data_bytes += m->files[i]->tensors[j].nbytes;
        }
    memcpy(m->by_name, m->order, n * sizeof *m->order);
    qsort(m->by_name, n, sizeof *m->by_name, cmp_tensor_name);
    for (size_t i = 1; i < n; i++) {
        const st_tensor *a = m->by_name[i - 1], *b = m->by_name[i];
        if (strcmp(a->name, b->name) == 0)
            return qk_err_set(err, QK_EFORMAT, "%s: tensor '%s' is also in %s", b->path,
                              qk_show(b->name).s, a->path);
    }
    return QK_OK;
}

/* Shard names come from an untrusted index: stay inside the index's folder. */
/* A relative path inside the folder, without ".." and without control bytes (a newline in a
 * file name only ever serves to forge lines in logs and messages). */
static int shard_name_ok(const char *s)
{
    if (!*s || *s == '/')
        return 0;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return 0;
    for (const char *part = s;;) {
        if (part[0] == '.' && part[1] == '.' && (part[2] == '/' || part[2] == 0))
            return 0;
        const char *slash = strchr(part, '/');
        if (!slash)
            return 1;
        part = slash + 1;
    }
}

typedef struct {
    const char *tensor, *shard;
} wm_entry;

static int cmp_wm_entry(const void *a, const void *b)
{
    return strcmp(((const wm_entry *)a)->tensor, ((const wm_entry *)b)->tensor);
}

/* weight_map → entries (pointing into the cJSON tree) sorted by tensor name. */
static int read_weight_map(const char *path, const cJSON *wm, wm_entry **out, size_t *n_out,
                           qk_err *err)
{
    if (!wm)
        return qk_err_set(err, QK_EFORMAT, "%s: no 'weight_map' in the index", path);
    if (!cJSON_IsObject(wm))
        return qk_err_set(err, QK_EFORMAT, "%s: 'weight_map' is not an object", path);
    size_t n = (size_t)cJSON_GetArraySize(wm);
    if (!n)
        return qk_err_set(err, QK_EFORMAT, "%s: 'weight_map' is empty", path);
    wm_entry *e = malloc(n * sizeof *e);
    if (!e)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    size_t i = 0;
    int rc = QK_OK;
    for (const cJSON *c = wm->child; c && rc == QK_OK; c = c->next, i++) {
        e[i].tensor = c->string;
        e[i].shard = cJSON_IsString(c) ? c->valuestring : NULL;
        if (!e[i].shard)
            rc = qk_err_set(err, QK_EFORMAT, "%s: weight_map: tensor '%s': shard is not a string",
                            path, qk_show(c->string).s);
        else if (!shard_name_ok(e[i].shard))
            rc = qk_err_set(err, QK_EFORMAT,
                            "%s: weight_map: tensor '%s': shard '%s' is not a path inside the "
                            "model folder",
                            path, qk_show(c->string).s, qk_show(e[i].shard).s);
    }
    if (rc != QK_OK) { /* entries past the bad one were never filled: nothing to sort */
        free(e);
        return rc;
    }
    qsort(e, n, sizeof *e, cmp_wm_entry);
    for (i = 1; i < n && rc == QK_OK; i++)
        if (strcmp(e[i - 1].tensor, e[i].tensor) == 0)
            rc = qk_err_set(err, QK_EFORMAT, "%s: weight_map lists tensor '%s' twice", path,
                            qk_show(e[i].tensor).s);
    if (rc != QK_OK) {
        free(e);
        return rc;
    }
    *out = e;
    *n_out = n;
    return QK_OK;
}

/* The distinct shard names, sorted; borrowed from the entries. */
static int unique_shards(const char *path, const wm_entry *e, size_t n, const char ***out,
                         size_t *n_out, qk_err *err)
{
    const char **s = malloc(n * sizeof *s);
    if (!s)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        s[i] = e[i].shard;
    qsort(s, n, sizeof *s, cmp_str);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!k || strcmp(s[k - 1], s[i]) != 0)
            s[k++] = s[i];
    *out = s;
    *n_out = k;
    return QK_OK;
}

static int open_shards(st_model *m, const char *index_path, const char **shards, size_t n,
                       qk_err *err)
{
    const char *slash = strrchr(index_path, '/');
    char *dir = slash ? strndup(index_path, (size_t)(slash - index_path + (slash == index_path)))
                      : NULL;
    if (slash && !dir)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", index_path);
    int rc = QK_OK;
    for (size_t i = 0; i < n && rc == QK_OK; i++) {
        char *p = path_join(dir, shards[i]);
        rc = p ? add_file(m, p, err) : qk_err_set(err, QK_ENOMEM, "%s: out of memory", index_path);
        if (rc == QK_EIO)
            qk_err_prefix(err, index_path);
        free(p);
    }
    free(dir);
    return rc;
}

/* Every weight_map entry must be in the shard it names (shards[k] is file k). */
static int check_weight_map(const st_model *m, const char *path, const wm_entry *e, size_t n,
                            const char **shards, size_t n_shards, qk_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_model_find(m, e[i].tensor);
        const char **k = bsearch(&e[i].shard, shards, n_shards, sizeof *shards, cmp_str);
        if (!t || t->file != (size_t)(k - shards))
            return qk_err_set(err, QK_EFORMAT,
                              "%s: weight_map puts tensor '%s' in %s but that file has no such "
                              "tensor",
                              path, qk_show(e[i].tensor).s, qk_show(e[i].shard).s);
    }
    return QK_OK;
}

static int read_index_meta(st_model *m, const char *path, const cJSON *md, qk_err *err)
{
    if (!md || cJSON_IsNull(md))
        return QK_OK;
    if (!cJSON_IsObject(md))
        return qk_err_set(err, QK_EFORMAT, "%s: 'metadata' is not an object", path);
    size_t n = (size_t)cJSON_GetArraySize(md);
    if (!n)
        return QK_OK;
    m->index_meta = calloc(2 * n, sizeof *m->index_meta);
    if (!m->index_meta)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    for (const cJSON *c = md->child; c; c = c->next) {
        char *printed = cJSON_IsString(c) ? NULL : cJSON_PrintUnformatted(c);
        char **kv = &m->index_meta[2 * m->n_index_meta++];
        kv[0] = strdup(c->string);
        kv[1] = printed ? strdup(printed) : cJSON_IsString(c) ? strdup(c->valuestring) : NULL;
        cJSON_free(printed);
        if (!kv[0] || !kv[1])
            return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    }
    return QK_OK;
}

static int open_index(st_model *m, const char *path, qk_err *err)
{
    char *text;
    size_t len = 0;
    int rc = qk_file_read(path, ST_MAX_HEADER, &text, &len, err);
    if (rc != QK_OK)
        return rc;
    cJSON *root = NULL;
    wm_entry *e = NULL;
    const char **shards = NULL;
    size_t n = 0, n_shards = 0;
    rc = parse_json(text, len, path, "index", &root, err);
    if (rc == QK_OK && !cJSON_IsObject(root))
        rc = qk_err_set(err, QK_EFORMAT, "%s: index is not a JSON object", path);
    if (rc == QK_OK)
        rc = read_weight_map(path, cJSON_GetObjectItemCaseSensitive(root, "weight_map"), &e, &n,
                             err);
    if (rc == QK_OK)
        rc = unique_shards(path, e, n, &shards, &n_shards, err);
    if (rc == QK_OK)
        rc = open_shards(m, path, shards, n_shards, err);
    if (rc == QK_OK)
        rc = build_namespace(m, err);
    if (rc == QK_OK)
        rc = check_weight_map(m, path, e, n, shards, n_shards, err);
    if (rc == QK_OK)
        rc = read_index_meta(m, path, cJSON_GetObjectItemCaseSensitive(root, "metadata"), err);
    free(shards);
    free(e);
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* Every *.safetensors file of dir (hidden files excluded), sorted by name. */
static int open_all_in_dir(st_model *m, const char *dir, qk_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return qk_err_set(err, QK_EIO, "%s: cannot open folder: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = QK_OK;
    for (struct dirent *de; rc == QK_OK && (de = readdir(d));) {
        if (de->d_name[0] == '.' || !ends_with(de->d_name, EXT))
            continue;
        char **grown = qk_grow(names, &cap, n + 1, sizeof *names);
        if (!grown) {
            rc = qk_err_set(err, QK_ENOMEM, "%s: out of memory", dir);
            break;
        }
        names = grown;
        if (!(names[n] = path_join(dir, de->d_name)))
            rc = qk_err_set(err, QK_ENOMEM, "%s: out of memory", dir);
        else if (is_regular(names[n]))
            n++;
        else
            free(names[n]);
    }
    closedir(d);
    if (rc == QK_OK && !n)
        rc = qk_err_set(err, QK_EFORMAT,
                        "%s: no " INDEX_NAME ", " SINGLE_NAME " or other *" EXT
                        " file in this folder",
                        dir);
    if (rc == QK_OK)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && rc == QK_OK; i++)
        rc = add_file(m, names[i], err);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc == QK_OK ? build_namespace(m, err) : rc;
}

static int open_single(st_model *m, const char *path, qk_err *err)
{
    int rc = add_file(m, path, err);
    return rc == QK_OK ? build_namespace(m, err) : rc;
}

static int open_dir(st_model *m, const char *dir, qk_err *err)
{
    char *index = path_join(dir, INDEX_NAME), *single = path_join(dir, SINGLE_NAME);
    int rc;
    if (!index || !single)
        rc = qk_err_set(err, QK_ENOMEM, "%s: out of memory", dir);
    else if (is_regular(index))
        rc = open_index(m, index, err);
    else if (is_regular(single))
        rc = open_single(m, single, err);
    else
        rc = open_all_in_dir(m, dir, err);
    free(index);
    free(single);
    return rc;
}

int st_model_open(st_model **out, const char *path, qk_err *err)
{
    *out = NULL;
    st_model *m = calloc(1, sizeof *m);
    if (!m)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    struct stat st;
    int rc;
    if (stat(path, &st) != 0)
        rc = qk_err_set(err, QK_EIO, "%s: cannot open: %s", path, strerror(errno));
    else if (S_ISDIR(st.st_mode))
        rc = open_dir(m, path, err);
    else if (ends_with(path, ".json"))
        rc = open_index(m, path, err);
    else
        rc = open_single(m, path, err);
    if (rc != QK_OK) {
        st_model_close(m);
        return rc;
    }
    *out = m;
    return QK_OK;
}

void st_model_close(st_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_files; i++)
        st_file_close(m->files[i]);
    for (size_t i = 0; i < 2 * m->n_index_meta; i++)
        free(m->index_meta[i]);
    free(m->index_meta);
    free(m->files);
    free(m->order);
    free(m->by_name);
    free(m);
}

size_t st_model_n_tensors(const st_model *m) { return m->n_tensors; }
size_t st_model_n_files(const st_model *m) { return m->n_files; }
uint64_t st_model_data_bytes(const st_model *m) { return m->data_bytes; }
size_t st_model_n_meta(const st_model *m) { return m->files[0]->n_meta; }
size_t st_model_n_index_meta(const st_model *m) { return m->n_index_meta; }

const st_tensor *st_model_tensor(const st_model *m, size_t i)
{
    return i < m->n_tensors ? m->order[i] : NULL;
}

const st_tensor *st_model_find(const st_model *m, const char *name)
{
    const st_tensor **hit = bsearch(name, m->by_name, m->n_tensors, sizeof *hit, cmp_tensor_key);
    return hit ? *hit : NULL;
}

const char *st_model_file_path(const st_model *m, size_t i)
{
    return i < m->n_files ? m->files[i]->path : NULL;
}

const char *st_model_meta_key(const st_model *m, size_t i)
{
    return st_file_meta_key(m->files[0], i);
}

const char *st_model_meta_value(const st_model *m, size_t i)
{
    return st_file_meta_value(m->files[0], i);
}

const char *st_model_index_meta_key(const st_model *m, size_t i)
{
    return i < m->n_index_meta ? m->index_meta[2 * i] : NULL;
}

const char *st_model_index_meta_value(const st_model *m, size_t i)
{
    return i < m->n_index_meta ? m->index_meta[2 * i + 1] : NULL;
}

/* ---- writer -------------------------------------------------------------------------------- */

/* The header is built in a qk_buf: its sticky oom flag lets put_header run to the end and the
 * failure be reported once. */
static void sb_u64(qk_buf *b, uint64_t v)
{
    char tmp[24];
    qk_buf_append(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%" PRIu64, v));
}

/* A JSON string literal: quotes, backslashes and control bytes escaped, other bytes verbatim. */
static void sb_json_str(qk_buf *b, const char *s)
{
    qk_buf_append(b, "\"", 1);
    for (const char *run = s;; s++) {
        unsigned char c = (unsigned char)*s;
        if (c && c >= 0x20 && c != '"' && c != '\\')
            continue;
        qk_buf_append(b, run, (size_t)(s - run));
        if (!c)
            break;
        char esc[8];
        if (c == '"' || c == '\\')
            snprintf(esc, sizeof esc, "\\%c", c);
        else
            snprintf(esc, sizeof esc, "\\u%04x", c);
        qk_buf_puts(b, esc);
        run = s + 1;
    }
    qk_buf_append(b, "\"", 1);
}

struct st_writer {
    of_file *of;
    char *path;
    uint64_t total, written;
    size_t n;
    uint64_t *ends;     /* data end of each tensor, to name the incomplete one */
    const char **names; /* into names_buf */
    char *names_buf;
    int status;
    char msg[QK_ERR_MSG_MAX];
};

static int validate_specs(const char *path, const st_tensor_spec *specs, size_t n,
                          uint64_t *total, qk_err *err)
{
    *total = 0;
    for (size_t i = 0; i < n; i++) {
        const st_tensor_spec *s = &specs[i];
        uint64_t nb;
        if (!s->name)
            return qk_err_set(err, QK_EFORMAT, "%s: tensor %zu has no name", path, i);
        if (strcmp(s->name, "__metadata__") == 0)
            return qk_err_set(err, QK_EFORMAT, "%s: '__metadata__' is not a valid tensor name",
                              path);
        char why[64];
        int rc = spec_check(s, &nb, why);
        if (rc != QK_OK)
            return qk_err_set(err, rc, "%s: tensor '%s': %s", path, qk_show(s->name).s, why);
        if (__builtin_add_overflow(*total, nb, total))
            return qk_err_set(err, QK_ERANGE, "%s: total tensor size overflows 64 bits", path);
    }
    return QK_OK;
}

/* Fails when names (n of them, read through get) hold a duplicate or a NULL. */
static int check_unique(const char *path, const char *what, const char *const *names, size_t n,
                        qk_err *err)
{
    const char **v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    int rc = QK_OK;
    for (size_t i = 0; i < n && rc == QK_OK; i++)
        if (!(v[i] = names[i]))
            rc = qk_err_set(err, QK_EFORMAT, "%s: %s %zu is NULL", path, what, i);
    const char *twice = rc == QK_OK ? sorted_duplicate(v, n) : NULL;
    if (twice)
        rc = qk_err_set(err, QK_EFORMAT, "%s: %s '%s' appears twice", path, what, qk_show(twice).s);
    free(v);
    return rc;
}

static int check_names_unique(const char *path, const st_tensor_spec *specs, size_t n,
                              qk_err *err)
{
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        names[i] = specs[i].name;
    int rc = check_unique(path, "tensor name", names, n, err);
    free(names);
    return rc;
}

static void put_header(qk_buf *b, const st_tensor_spec *specs, size_t n, const char *const *keys,
                       const char *const *vals, size_t n_meta)
{
    qk_buf_puts(b, "{");
    if (n_meta) {
        qk_buf_puts(b, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            qk_buf_puts(b, i ? "," : "");
            sb_json_str(b, keys[i]);
            qk_buf_puts(b, ":");
            sb_json_str(b, vals[i]);
        }
        qk_buf_puts(b, n ? "}," : "}");
    }
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t nb = 0;
        st_spec_nbytes(&specs[i], &nb); /* validated by the caller */
        qk_buf_puts(b, i ? "," : "");
        sb_json_str(b, specs[i].name);
        qk_buf_puts(b, ":{\"dtype\":\"");
        qk_buf_puts(b, dtypes[specs[i].dtype].name);
        qk_buf_puts(b, "\",\"shape\":[");
        for (int d = 0; d < specs[i].n_dims; d++) {
            qk_buf_puts(b, d ? "," : "");
            sb_u64(b, (uint64_t)specs[i].shape[d]);
        }
        qk_buf_puts(b, "],\"data_offsets\":[");
        sb_u64(b, at);
        qk_buf_puts(b, ",");
        sb_u64(b, at += nb);
        qk_buf_puts(b, "]}");
    }
    qk_buf_puts(b, "}");
    /* Pad with spaces (valid trailing JSON whitespace) so the data starts 8-byte aligned. */
    while (!b->oom && b->n % 8)
        qk_buf_puts(b, " ");
}

/* Copies the tensor names and data ends the writer needs for its messages. */
static int writer_alloc(st_writer **out, const char *path, const st_tensor_spec *specs, size_t n,
                        qk_err *err)
{
    size_t chars = 0;
    for (size_t i = 0; i < n; i++)
        chars += strlen(specs[i].name) + 1;
    st_writer *w = calloc(1, sizeof *w);
    if (w) {
        w->path = strdup(path);
        w->ends = malloc((n ? n : 1) * sizeof *w->ends);
        w->names = malloc((n ? n : 1) * sizeof *w->names);
        w->names_buf = malloc(chars ? chars : 1);
    }
    if (!w || !w->path || !w->ends || !w->names || !w->names_buf) {
        st_writer_abort(w);
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    }
    char *p = w->names_buf;
    for (size_t i = 0; i < n; i++) {
        uint64_t nb = 0;
        st_spec_nbytes(&specs[i], &nb);
        w->ends[i] = w->total += nb;
        size_t len = strlen(specs[i].name) + 1;
        w->names[i] = memcpy(p, specs[i].name, len);
        p += len;
    }
    w->n = n;
    *out = w;
    return QK_OK;
}

static int validate_args(const char *path, const st_tensor_spec *specs, size_t n,
                         const char *const *keys, const char *const *vals, size_t n_meta,
                         qk_err *err)
{
    uint64_t total;
    if ((n && !specs) || (n_meta && (!keys || !vals)))
        return qk_err_set(err, QK_EFORMAT, "%s: NULL tensor or metadata list", path);
    int rc = validate_specs(path, specs, n, &total, err);
    if (rc == QK_OK)
        rc = check_names_unique(path, specs, n, err);
    if (rc == QK_OK)
        rc = check_unique(path, "metadata key", keys, n_meta, err);
    for (size_t i = 0; i < n_meta && rc == QK_OK; i++)
        if (!vals[i])
            rc = qk_err_set(err, QK_EFORMAT, "%s: metadata '%s' has a NULL value", path,
                            qk_show(keys[i]).s);
    return rc;
}

int st_writer_open(st_writer **out, const char *path, const st_tensor_spec *specs, size_t n,
                   const char *const *meta_keys, const char *const *meta_vals, size_t n_meta,
                   qk_err *err)
{
    *out = NULL;
    int rc = validate_args(path, specs, n, meta_keys, meta_vals, n_meta, err);
    if (rc != QK_OK)
        return rc;
    qk_buf b = {0};
    put_header(&b, specs, n, meta_keys, meta_vals, n_meta);
    st_writer *w = NULL;
    if (b.oom)
        rc = qk_err_set(err, QK_ENOMEM, "%s: out of memory building the header", path);
    else
        rc = writer_alloc(&w, path, specs, n, err);
    if (rc == QK_OK)
        rc = of_open(&w->of, path, err);
    if (rc == QK_OK) {
        uint8_t len[8];
        for (int i = 0; i < 8; i++)
            len[i] = (uint8_t)((uint64_t)b.n >> (8 * i));
        FILE *fp = of_stream(w->of);
        if (fwrite(len, 1, 8, fp) != 8 || fwrite(b.p, 1, b.n, fp) != b.n)
            rc = qk_err_set(err, QK_EIO, "%s: write failed: %s", path, strerror(errno));
    }
    qk_buf_free(&b);
    if (rc != QK_OK) {
        st_writer_abort(w);
        return rc;
    }
    *out = w;
    return QK_OK;
}

/* Records the first error (sticky) and copies it to err. */
static int writer_fail(st_writer *w, qk_err *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int writer_fail(st_writer *w, qk_err *err, int code, const char *fmt, ...)
{
    if (!w->status) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->msg, sizeof w->msg, fmt, ap);
        va_end(ap);
        w->status = code;
    }
    return qk_err_set(err, w->status, "%s", w->msg);
}

int st_writer_write(st_writer *w, const void *data, size_t nbytes, qk_err *err)
{
    if (w->status)
        return qk_err_set(err, w->status, "%s", w->msg);
    if (nbytes > w->total - w->written)
        return writer_fail(w, err, QK_ERANGE,
                           "%s: writing %zu bytes would pass the %" PRIu64
                           " bytes of tensor data the header declares (%" PRIu64 " written)",
                           w->path, nbytes, w->total, w->written);
    if (nbytes && !data)
        return writer_fail(w, err, QK_EFORMAT, "%s: NULL data for %zu bytes", w->path, nbytes);
    if (nbytes && fwrite(data, 1, nbytes, of_stream(w->of)) != nbytes)
        return writer_fail(w, err, QK_EIO, "%s: write failed: %s", w->path, strerror(errno));
    w->written += nbytes;
    return QK_OK;
}

uint64_t st_writer_remaining(const st_writer *w) { return w->total - w->written; }

int st_writer_commit(st_writer *w, qk_err *err)
{
    if (!w->status && w->written < w->total) {
        size_t i = 0;
        while (w->ends[i] <= w->written)
            i++;
        writer_fail(w, err, QK_EFORMAT,
                    "%s: only %" PRIu64 " of the %" PRIu64
                    " bytes of tensor data were written (tensor '%s' is incomplete)",
                    w->path, w->written, w->total, qk_show(w->names[i]).s);
    }
    int rc;
    if (w->status) {
        rc = qk_err_set(err, w->status, "%s", w->msg);
        of_abort(w->of);
    } else {
        rc = of_commit(w->of, err);
    }
    w->of = NULL;
    st_writer_abort(w);
    return rc;
}

void st_writer_abort(st_writer *w)
{
    if (!w)
        return;
    of_abort(w->of);
    free(w->ends);
    free(w->names);
    free(w->names_buf);
    free(w->path);
    free(w);
}

int st_write_file(const char *path, const st_tensor_spec *specs, const void *const *data, size_t n,
                  const char *const *meta_keys, const char *const *meta_vals, size_t n_meta,
                  qk_err *err)
{
    if (n && !data)
        return qk_err_set(err, QK_EFORMAT, "%s: NULL data list", path);
    st_writer *w;
    int rc = st_writer_open(&w, path, specs, n, meta_keys, meta_vals, n_meta, err);
    for (size_t i = 0; i < n && rc == QK_OK; i++) {
        uint64_t nb = 0;
        st_spec_nbytes(&specs[i], &nb);
        if (nb > SIZE_MAX)
            rc = qk_err_set(err, QK_ERANGE, "%s: tensor '%s' does not fit in memory", path,
                            qk_show(specs[i].name).s);
        else
            rc = st_writer_write(w, data[i], (size_t)nb, err);
    }
    if (rc != QK_OK) {
        st_writer_abort(w);
        return rc;
    }
    return st_writer_commit(w, err);
}
