/* imatrix.c — loads llama.cpp importance matrices (legacy .dat and GGUF); see imatrix.h. */
#include "imatrix.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/buf.h"
#include "../quant/types.h"
#include "file.h"
#include "gguf.h"

struct imx_file {
    int format;
    imx_entry *e; /* sorted by name */
    size_t n, cap;
    int64_t chunk_count;
    char **datasets;
    size_t n_datasets;
};

static const char SUMS_SUFFIX[] = ".in_sum2";
static const char COUNTS_SUFFIX[] = ".counts";

void imx_free(imx_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++) {
        free((char *)f->e[i].name);
        free((float *)f->e[i].values);
    }
    for (size_t i = 0; i < f->n_datasets; i++)
        free(f->datasets[i]);
    free(f->datasets);
    free(f->e);
    free(f);
}

int imx_format_of(const imx_file *f) { return f->format; }
size_t imx_count(const imx_file *f) { return f->n; }
const imx_entry *imx_entry_at(const imx_file *f, size_t i) { return i < f->n ? &f->e[i] : NULL; }
int64_t imx_chunk_count(const imx_file *f) { return f->chunk_count; }
size_t imx_n_datasets(const imx_file *f) { return f->n_datasets; }
const char *imx_dataset(const imx_file *f, size_t i)
{
    return i < f->n_datasets ? f->datasets[i] : NULL;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const imx_entry *)a)->name, ((const imx_entry *)b)->name);
}

const imx_entry *imx_find(const imx_file *f, const char *name)
{
    imx_entry key = {.name = name};
    return f->n ? bsearch(&key, f->e, f->n, sizeof key, entry_cmp) : NULL;
}

/* Takes ownership of name and values (freed here on failure). */
static int add_entry(imx_file *f, char *name, float *values, int64_t n_per_mat, int64_t n_mat,
                     int64_t ncall, const char *src, qk_err *err)
{
    imx_entry *e = qk_grow(f->e, &f->cap, f->n + 1, sizeof *e);
    if (!e) {
        free(name);
        free(values);
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", src);
    }
    f->e = e;
    f->e[f->n++] = (imx_entry){name, n_per_mat, n_mat, values, ncall};
    return QK_OK;
}

/* Sorts the entries for lookups and rejects a name that appears twice. */
static int finish(imx_file *f, const char *src, qk_err *err)
{
    if (f->n == 0)
        return qk_err_set(err, QK_EFORMAT, "%s: no importance matrix entries", src);
    qsort(f->e, f->n, sizeof *f->e, entry_cmp);
    for (size_t i = 1; i < f->n; i++)
        if (!strcmp(f->e[i - 1].name, f->e[i].name))
            return qk_err_set(err, QK_EFORMAT, "%s: entry '%s' appears twice", src, f->e[i].name);
    return QK_OK;
}

static int check_finite(const float *v, int64_t n, const char *src, const char *name, qk_err *err)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return qk_err_set(err, QK_ERANGE, "%s: entry '%s': value %lld is not finite (%g)", src,
                              name, (long long)i, (double)v[i]);
    return QK_OK;
}

/* ---- legacy .dat -------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t left;
    const char *src;
    qk_err *err;
} cursor;

static int take_i32(cursor *c, int32_t *v, const char *what, long entry)
{
    if (c->left < 4)
        return entry < 0 ? qk_err_set(c->err, QK_EFORMAT, "%s: truncated: %s missing", c->src, what)
                         : qk_err_set(c->err, QK_EFORMAT, "%s: entry %ld: truncated: %s missing",
                                      c->src, entry, what);
    uint32_t u = (uint32_t)c->p[0] | (uint32_t)c->p[1] << 8 | (uint32_t)c->p[2] << 16 |
                 (uint32_t)c->p[3] << 24;
    memcpy(v, &u, 4);
    c->p += 4;
    c->left -= 4;
    return QK_OK;
}

/* A length-prefixed string of len bytes at the cursor; *out is malloc'd and NUL-terminated. */
static int take_str(cursor *c, int32_t len, char **out, const char *what, long entry)
{
    if (len < 0 || (size_t)len > c->left)
        return qk_err_set(c->err, QK_EFORMAT, "%s: entry %ld: %s length %d but %zu bytes remain",
                          c->src, entry, what, len, c->left);
    if (!(*out = malloc((size_t)len + 1)))
        return qk_err_set(c->err, QK_ENOMEM, "%s: out of memory", c->src);
    memcpy(*out, c->p, (size_t)len);
    (*out)[len] = 0;
    c->p += len;
    c->left -= (size_t)len;
    return QK_OK;
}

static int take_floats(cursor *c, int32_t n, float **out, const char *name)
{
    if ((uint64_t)n * 4 > c->left)
        return qk_err_set(c->err, QK_EFORMAT, "%s: entry '%s': %d values need %llu bytes, %zu remain",
                          c->src, name, n, (unsigned long long)n * 4, c->left);
    if (!(*out = malloc((size_t)n * sizeof **out)))
        return qk_err_set(c->err, QK_ENOMEM, "%s: out of memory", c->src);
    for (int32_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)c->p[0] | (uint32_t)c->p[1] << 8 | (uint32_t)c->p[2] << 16 |
                     (uint32_t)c->p[3] << 24;
        memcpy(&(*out)[i], &u, 4);
        c->p += 4;
    }
    c->left -= (size_t)n * 4;
    return QK_OK;
}

static int legacy_entry(imx_file *f, cursor *c, long i)
{
    int32_t len, ncall, nval;
    char *name = NULL;
    float *v = NULL;
    int rc = take_i32(c, &len, "name length", i);
    if (!rc && len == 0)
        rc = qk_err_set(c->err, QK_EFORMAT, "%s: entry %ld: empty name", c->src, i);
    if (!rc)
        rc = take_str(c, len, &name, "name", i);
    if (!rc && strlen(name) != (size_t)len)
        rc = qk_err_set(c->err, QK_EFORMAT, "%s: entry %ld: name contains a NUL byte", c->src, i);
    if (!rc && !(rc = take_i32(c, &ncall, "call count", i)) &&
        !(rc = take_i32(c, &nval, "value count", i)) && nval < 1)
        rc = qk_err_set(c->err, QK_EFORMAT, "%s: entry '%s': %d values", c->src, name, nval);
    if (!rc)
        rc = take_floats(c, nval, &v, name);
    if (!rc)
        rc = check_finite(v, nval, c->src, name, c->err);
    if (rc) {
        free(name);
        free(v);
        return rc;
    }
    /* The file stores mean(x²)·ncall; llama-quantize divides in float, value by value. */
    for (int32_t j = 0; ncall > 0 && j < nval; j++)
        v[j] /= (float)ncall;
    return add_entry(f, name, v, nval, 1, ncall, c->src, c->err);
}

/* The optional trailer: chunk count and the name of the calibration text. */
static int legacy_trailer(imx_file *f, cursor *c)
{
    if (c->left == 0)
        return QK_OK;
    int32_t chunks, len;
    char *ds = NULL;
    int rc = take_i32(c, &chunks, "chunk count of the trailer", -1);
    if (!rc)
        rc = take_i32(c, &len, "dataset name length of the trailer", -1);
    if (!rc && (len < 0 || (size_t)len > c->left))
        rc = qk_err_set(c->err, QK_EFORMAT, "%s: trailer: dataset name length %d but %zu bytes remain",
                        c->src, len, c->left);
    if (!rc && c->left > (size_t)len)
        rc = qk_err_set(c->err, QK_EFORMAT, "%s: %zu unexpected bytes after the trailer", c->src,
                        c->left - (size_t)len);
    if (!rc)
        rc = take_str(c, len, &ds, "dataset name", -1);
    if (rc)
        return rc;
    f->chunk_count = chunks;
    if (len == 0) {
        free(ds);
        return QK_OK;
    }
    if (!(f->datasets = malloc(sizeof *f->datasets))) {
        free(ds);
        return qk_err_set(c->err, QK_ENOMEM, "%s: out of memory", c->src);
    }
    f->datasets[0] = ds;
    f->n_datasets = 1;
    return QK_OK;
}

static int load_legacy(imx_file *f, const void *data, size_t size, const char *src, qk_err *err)
{
    cursor c = {data, size, src, err};
    int32_t n;
    int rc = take_i32(&c, &n, "entry count", -1);
    if (rc)
        return rc;
    if (n < 1)
        return qk_err_set(err, QK_EFORMAT, "%s: entry count %d (not an importance matrix?)", src, n);
    for (long i = 0; i < n && !rc; i++)
        rc = legacy_entry(f, &c, i);
    if (!rc)
        rc = legacy_trailer(f, &c);
    return rc ? rc : finish(f, src, err);
}

/* ---- GGUF --------------------------------------------------------------------------------- */

static int gguf_keys(imx_file *f, const gguf_ctx *g, const char *src, qk_err *err)
{
    uint32_t chunks = 0, chunk_size = 0;
    const void *arr;
    uint64_t n;
    int rc1 = gguf_get_u32(g, "imatrix.chunk_count", &chunks);
    int rc2 = gguf_get_u32(g, "imatrix.chunk_size", &chunk_size);
    int rc3 = gguf_get_arr(g, "imatrix.datasets", GGUF_TYPE_STR, &arr, &n);
    if (rc1 || rc2 || rc3)
        return qk_err_set(err, QK_EFORMAT, "%s: %s %s (u32 imatrix.chunk_count, u32 "
                          "imatrix.chunk_size and string array imatrix.datasets are required)",
                          src, rc1 ? "imatrix.chunk_count" : rc2 ? "imatrix.chunk_size" :
                          "imatrix.datasets", (rc1 ? rc1 : rc2 ? rc2 : rc3) == GGUF_MISSING ?
                          "missing" : "has the wrong type");
    f->chunk_count = chunks;
    if (n && !(f->datasets = calloc(n, sizeof *f->datasets)))
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", src);
    const gguf_str *s = arr;
    for (uint64_t i = 0; i < n; i++, f->n_datasets++)
        if (!(f->datasets[i] = strndup(s[i].ptr, s[i].len)))
            return qk_err_set(err, QK_ENOMEM, "%s: out of memory", src);
    return QK_OK;
}

static int ends_with(const char *s, const char *suffix, size_t *base_len)
{
    size_t n = strlen(s), m = strlen(suffix);
    *base_len = n >= m ? n - m : 0;
    return n > m && !strcmp(s + n - m, suffix);
}

static const gguf_tensor_info *find_partner(const gguf_ctx *g, const char *name, size_t base_len,
                                            const char *suffix)
{
    char buf[GGUF_MAX_NAME + 16];
    if (base_len + strlen(suffix) >= sizeof buf)
        return NULL;
    memcpy(buf, name, base_len);
    strcpy(buf + base_len, suffix);
    return gguf_find_tensor(g, buf);
}

static float load_f32(const void *base, int64_t i)
{
    float v;
    memcpy(&v, (const uint8_t *)base + (size_t)i * 4, 4);
    return v;
}

static int gguf_pair_check(const gguf_tensor_info *s, const gguf_tensor_info *c, const char *src,
                           qk_err *err)
{
    if (s->type != Q_TYPE_F32 || c->type != Q_TYPE_F32)
        return qk_err_set(err, QK_EFORMAT, "%s: '%s': in_sum2 and counts must be f32, not %s",
                          src, s->name, q_type_info(s->type != Q_TYPE_F32 ? s->type : c->type)->name);
    if (s->ne[2] != 1 || s->ne[3] != 1)
        return qk_err_set(err, QK_EFORMAT, "%s: '%s': expected 2 dimensions [n, n_mat]", src,
                          s->name);
    if (c->ne[0] * c->ne[1] * c->ne[2] * c->ne[3] != s->ne[1])
        return qk_err_set(err, QK_EFORMAT, "%s: '%s': %lld counts for %lld matrices", src, c->name,
                          (long long)(c->ne[0] * c->ne[1] * c->ne[2] * c->ne[3]),
                          (long long)s->ne[1]);
    return QK_OK;
}

/* One entry from W.in_sum2 and W.counts: sums divided by the count, 1 where nothing was seen. */
static int gguf_entry(imx_file *f, const gguf_tensor_info *s, const gguf_tensor_info *c,
                      size_t base_len, const char *src, qk_err *err)
{
    int rc = gguf_pair_check(s, c, src, err);
    if (rc)
        return rc;
    int64_t ne0 = s->ne[0], nmat = s->ne[1];
    float maxc = 0.0f;
    char *name = strndup(s->name, base_len);
    float *v = malloc((size_t)(ne0 * nmat) * sizeof *v);
    if (!name || !v) {
        free(name);
        free(v);
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", src);
    }
    for (int64_t j = 0; j < nmat && !rc; j++) {
        float cnt = load_f32(c->data, j);
        if (!isfinite(cnt))
            rc = qk_err_set(err, QK_ERANGE, "%s: '%s': count %lld is not finite", src, c->name,
                            (long long)j);
        maxc = cnt > maxc ? cnt : maxc;
        for (int64_t i = 0; i < ne0; i++)
            v[j * ne0 + i] = cnt > 0.0f ? load_f32(s->data, j * ne0 + i) / cnt : 1.0f;
    }
    if (!rc)
        rc = check_finite(v, ne0 * nmat, src, name, err);
    if (rc) {
        free(name);
        free(v);
        return rc;
    }
    int64_t calls = maxc < 9.2e18f ? (int64_t)maxc : INT64_MAX;
    return add_entry(f, name, v, ne0, nmat, calls, src, err);
}

static int load_gguf_ctx(imx_file *f, const gguf_ctx *g, const char *src, qk_err *err)
{
    int rc = gguf_keys(f, g, src, err);
    for (uint64_t i = 0; !rc && i < gguf_n_tensors(g); i++) {
        const gguf_tensor_info *t = gguf_tensor(g, i);
        size_t base;
        if (ends_with(t->name, SUMS_SUFFIX, &base)) {
            const gguf_tensor_info *c = find_partner(g, t->name, base, COUNTS_SUFFIX);
            rc = c ? gguf_entry(f, t, c, base, src, err)
                   : qk_err_set(err, QK_EFORMAT, "%s: '%s' has no matching '%.*s%s'", src, t->name,
                                (int)base, t->name, COUNTS_SUFFIX);
        } else if (ends_with(t->name, COUNTS_SUFFIX, &base) &&
                   !find_partner(g, t->name, base, SUMS_SUFFIX)) {
            rc = qk_err_set(err, QK_EFORMAT, "%s: '%s' has no matching '%.*s%s'", src, t->name,
                            (int)base, t->name, SUMS_SUFFIX);
        }
    }
    return rc ? rc : finish(f, src, err);
}

/* ---- entry points ------------------------------------------------------------------------- */

static int load_common(imx_file **out, const void *data, size_t size, const char *src,
                       qk_err *err)
{
    *out = NULL;
    imx_file *f = calloc(1, sizeof *f);
    if (!f)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", src);
    int rc;
    if (size >= 4 && !memcmp(data, "GGUF", 4)) {
        gguf_ctx *g = NULL;
        f->format = IMX_GGUF;
        rc = gguf_open_mem(&g, data, size, src, err);
        if (!rc)
            rc = load_gguf_ctx(f, g, src, err);
        gguf_close(g);
    } else {
        f->format = IMX_LEGACY;
        rc = load_legacy(f, data, size, src, err);
    }
    if (rc) {
        imx_free(f);
        return rc;
    }
    *out = f;
    return QK_OK;
}

int imx_load_mem(imx_file **out, const void *data, size_t size, const char *name, qk_err *err)
{
    return load_common(out, data, size, name ? name : "imatrix", err);
}

int imx_load(imx_file **out, const char *path, qk_err *err)
{
    char *data = NULL;
    size_t size = 0;
    *out = NULL;
    /* Whole file into memory: imatrix files are small next to the models they describe. */
    int rc = qk_file_read(path, QK_FILE_NO_LIMIT, &data, &size, err);
    if (rc)
        return rc;
    /* A GGUF image is parsed from the bytes already read (the reader keeps no pointer past the
     * load: every entry is copied). */
    rc = load_common(out, data, size, path, err);
    free(data);
    return rc;
}
