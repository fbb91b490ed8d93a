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
#include "outfile.h"

struct imx_file {
    int format;
    imx_entry *e; /* sorted by name */
    size_t n, cap;
    int64_t chunk_count;
    uint32_t chunk_size;
    char **datasets;
    size_t n_datasets;
    char *model_id;
    imx_shard shard;
};

static const char SUMS_SUFFIX[] = ".in_sum2";
static const char COUNTS_SUFFIX[] = ".counts";
static const char EXACT_SUFFIX[] = ".exact";
static const char KEY_FRAC_BITS[] = "qkit.imatrix.sum2_fraction_bits";
static const char KEY_MODEL_ID[] = "qkit.imatrix.model_id";
static const char KEY_SHARD[] = "qkit.imatrix.shard";
static const char KEY_SHARD_PLAN[] = "qkit.imatrix.shard_plan";

double imx_fx_to_double(const uint64_t v[2])
{
    return (double)v[1] + ldexp((double)v[0], -64);
}

void imx_free(imx_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++) {
        free((char *)f->e[i].name);
        free((float *)f->e[i].values);
        free((float *)f->e[i].stored);
        free((float *)f->e[i].counts);
        free((uint64_t *)f->e[i].exact);
        free((int64_t *)f->e[i].exact_counts);
    }
    for (size_t i = 0; i < f->n_datasets; i++)
        free(f->datasets[i]);
    free(f->datasets);
    free(f->model_id);
    free(f->e);
    free(f);
}

const char *imx_model_id(const imx_file *f) { return f->model_id; }
imx_shard imx_shard_of(const imx_file *f) { return f->shard; }

int imx_format_of(const imx_file *f) { return f->format; }
size_t imx_count(const imx_file *f) { return f->n; }
const imx_entry *imx_entry_at(const imx_file *f, size_t i) { return i < f->n ? &f->e[i] : NULL; }
int64_t imx_chunk_count(const imx_file *f) { return f->chunk_count; }
uint32_t imx_chunk_size(const imx_file *f) { return f->chunk_size; }
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

static void entry_free(imx_entry *e)
{
    free((char *)e->name);
    free((float *)e->values);
    free((float *)e->stored);
    free((float *)e->counts);
    free((uint64_t *)e->exact);
    free((int64_t *)e->exact_counts);
}

/* Takes ownership of the entry's buffers (freed here on failure). */
static int add_entry(imx_file *f, imx_entry ent, const char *src, qk_err *err)
{
    imx_entry *e = qk_grow(f->e, &f->cap, f->n + 1, sizeof *e);
    if (!e) {
        entry_free(&ent);
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", src);
    }
    f->e = e;
    f->e[f->n++] = ent;
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
            return qk_err_set(err, QK_EFORMAT, "%s: entry '%s' appears twice", src, qk_show(f->e[i].name).s);
    return QK_OK;
}

/* Sums of squares: finite and not negative. */
static int check_values(const float *v, int64_t n, const char *src, const char *name, qk_err *err)
{
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            return qk_err_set(err, QK_ERANGE, "%s: entry '%s': value %lld is not finite (%g)", src,
                              qk_show(name).s, (long long)i, (double)v[i]);
        if (v[i] < 0.0f)
            return qk_err_set(err, QK_ERANGE, "%s: entry '%s': value %lld is negative (%g)", src,
                              qk_show(name).s, (long long)i, (double)v[i]);
    }
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
                          c->src, qk_show(name).s, n, (unsigned long long)n * 4, c->left);
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
        rc = qk_err_set(c->err, QK_EFORMAT, "%s: entry '%s': %d values", c->src, qk_show(name).s, nval);
    if (!rc && ncall < 0)
        rc = qk_err_set(c->err, QK_EFORMAT, "%s: entry '%s': call count %d", c->src, qk_show(name).s, ncall);
    if (!rc)
        rc = take_floats(c, nval, &v, name);
    if (!rc)
        rc = check_values(v, nval, c->src, name, c->err);
    float *stored = rc ? NULL : malloc((size_t)nval * sizeof *stored);
    if (!rc && !stored)
        rc = qk_err_set(c->err, QK_ENOMEM, "%s: out of memory", c->src);
    if (rc) {
        free(name);
        free(v);
        return rc;
    }
    memcpy(stored, v, (size_t)nval * sizeof *stored);
    /* The file stores mean(x²)·ncall; llama-quantize divides in float, value by value. */
    for (int32_t j = 0; ncall > 0 && j < nval; j++)
        v[j] /= (float)ncall;
    return add_entry(f, (imx_entry){.name = name, .n_per_mat = nval, .n_mat = 1, .values = v,
                                    .ncall = ncall, .stored = stored},
                     c->src, c->err);
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

/* qkit.imatrix.model_id and the shard keys (imatrix.h), all optional. */
static int qkit_keys(imx_file *f, const gguf_ctx *g, const char *src, qk_err *err)
{
    const char *id;
    int rc = gguf_get_str(g, KEY_MODEL_ID, &id);
    if (rc == QK_OK && !(f->model_id = strdup(id)))
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", src);
    if (rc != QK_OK && rc != GGUF_MISSING)
        return qk_err_set(err, QK_EFORMAT, "%s: %s is not a string", src, KEY_MODEL_ID);
    const void *a, *b;
    uint64_t na = 0, nb = 0;
    int ra = gguf_get_arr(g, KEY_SHARD, GGUF_TYPE_U32, &a, &na);
    int rb = gguf_get_arr(g, KEY_SHARD_PLAN, GGUF_TYPE_U32, &b, &nb);
    if (ra == GGUF_MISSING && rb == GGUF_MISSING)
        return QK_OK;
    if (ra || rb || na != 2 || nb != 2)
        return qk_err_set(err, QK_EFORMAT, "%s: %s and %s must both be arrays of two u32", src,
                          KEY_SHARD, KEY_SHARD_PLAN);
    const uint32_t *sa = a, *sb = b;
    imx_shard sh = {sa[0], sa[1], sb[0], sb[1]};
    if (sh.count == 0 || sh.index >= sh.count || sh.plan_chunks < sh.count ||
        sh.plan_first > UINT32_MAX - sh.plan_chunks)
        return qk_err_set(err, QK_EFORMAT, "%s: %s [%u, %u] with %s [%u, %u] is not a shard of a "
                          "plan (index < count <= chunks)", src, KEY_SHARD, sh.index, sh.count,
                          KEY_SHARD_PLAN, sh.plan_first, sh.plan_chunks);
    f->shard = sh;
    return QK_OK;
}

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
    f->chunk_size = chunk_size;
    if (n && !(f->datasets = calloc(n, sizeof *f->datasets)))
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", src);
    const gguf_str *s = arr;
    for (uint64_t i = 0; i < n; i++, f->n_datasets++)
        if (!(f->datasets[i] = strndup(s[i].ptr, s[i].len)))
            return qk_err_set(err, QK_ENOMEM, "%s: out of memory", src);
    return qkit_keys(f, g, src, err);
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
                          src, qk_show(s->name).s, q_type_info(s->type != Q_TYPE_F32 ? s->type : c->type)->name);
    if (s->ne[2] != 1 || s->ne[3] != 1 || s->ne[0] < 1 || s->ne[1] < 1)
        return qk_err_set(err, QK_EFORMAT, "%s: '%s': expected 2 dimensions [n, n_mat] of at least 1",
                          src, qk_show(s->name).s);
    if (c->ne[0] * c->ne[1] * c->ne[2] * c->ne[3] != s->ne[1])
        return qk_err_set(err, QK_EFORMAT, "%s: '%s': %lld counts for %lld matrices", src, qk_show(c->name).s,
                          (long long)(c->ne[0] * c->ne[1] * c->ne[2] * c->ne[3]),
                          (long long)s->ne[1]);
    return QK_OK;
}

static int64_t load_i64(const void *base, int64_t i)
{
    int64_t v;
    memcpy(&v, (const uint8_t *)base + (size_t)i * 8, 8);
    return v;
}

/* qkit's exact tensors of an entry, when present: shapes, non-negative counts, and the f32
 * tensors must be their rounding (anything else is a damaged or edited file). */
static int gguf_exact(const gguf_ctx *g, imx_entry *e, const char *sname, const char *cname,
                      const char *src, qk_err *err)
{
    char xs[GGUF_MAX_NAME + 16], xc[GGUF_MAX_NAME + 16];
    snprintf(xs, sizeof xs, "%s%s", sname, EXACT_SUFFIX);
    snprintf(xc, sizeof xc, "%s%s", cname, EXACT_SUFFIX);
    const gguf_tensor_info *ts = gguf_find_tensor(g, xs), *tc = gguf_find_tensor(g, xc);
    if (!ts && !tc)
        return QK_OK;
    if (!ts || !tc)
        return qk_err_set(err, QK_EFORMAT, "%s: '%s' has no matching '%s'", src, qk_show(ts ? xs : xc).s,
                          qk_show(ts ? xc : xs).s);
    uint32_t bits = 0;
    int rc = gguf_get_u32(g, KEY_FRAC_BITS, &bits);
    if (rc || bits != 64)
        return qk_err_set(err, QK_EFORMAT, "%s: exact sums need u32 %s = 64 (%s)", src, KEY_FRAC_BITS,
                          rc == GGUF_MISSING ? "missing" : rc ? "wrong type" : "other value");
    const int64_t ne0 = e->n_per_mat, nmat = e->n_mat;
    if (ts->type != Q_TYPE_I64 || tc->type != Q_TYPE_I64 || ts->ne[0] != 2 || ts->ne[1] != ne0 ||
        ts->ne[2] != nmat || ts->ne[3] != 1 || tc->ne[0] * tc->ne[1] * tc->ne[2] * tc->ne[3] != nmat)
        return qk_err_set(err, QK_EFORMAT,
                          "%s: '%s' and '%s' must be i64 of shape [2, %lld, %lld] and [%lld]", src,
                          qk_show(xs).s, qk_show(xc).s, (long long)ne0, (long long)nmat, (long long)nmat);
    uint64_t *x = malloc((size_t)(2 * ne0 * nmat) * sizeof *x);
    int64_t *xcnt = malloc((size_t)nmat * sizeof *xcnt);
    e->exact = x;
    e->exact_counts = xcnt;
    if (!x || !xcnt)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", src);
    memcpy(x, ts->data, (size_t)(2 * ne0 * nmat) * sizeof *x);
    for (int64_t j = 0; j < nmat; j++) {
        xcnt[j] = load_i64(tc->data, j);
        if (xcnt[j] < 0 || (float)xcnt[j] != e->counts[j])
            return qk_err_set(err, QK_EFORMAT, "%s: '%s': count %lld is %lld, '%s' holds %g", src,
                              qk_show(xc).s, (long long)j, (long long)xcnt[j], qk_show(cname).s, (double)e->counts[j]);
    }
    for (int64_t i = 0; i < ne0 * nmat; i++)
        if ((float)imx_fx_to_double(x + 2 * i) != e->stored[i])
            return qk_err_set(err, QK_EFORMAT, "%s: '%s': value %lld disagrees with '%s' (%.9g vs %.9g)",
                              src, qk_show(xs).s, (long long)i, qk_show(sname).s, imx_fx_to_double(x + 2 * i),
                              (double)e->stored[i]);
    return QK_OK;
}

/* One entry from W.in_sum2 and W.counts: sums divided by the count, 1 where nothing was seen. */
static int gguf_entry(imx_file *f, const gguf_ctx *g, const gguf_tensor_info *s,
                      const gguf_tensor_info *c, size_t base_len, const char *src, qk_err *err)
{
    int rc = gguf_pair_check(s, c, src, err);
    if (rc)
        return rc;
    const int64_t ne0 = s->ne[0], nmat = s->ne[1];
    float maxc = 0.0f;
    imx_entry e = {.name = strndup(s->name, base_len), .n_per_mat = ne0, .n_mat = nmat};
    float *v = malloc((size_t)(ne0 * nmat) * sizeof *v), *stored = malloc((size_t)(ne0 * nmat) * sizeof *v);
    float *counts = malloc((size_t)nmat * sizeof *counts);
    e.values = v, e.stored = stored, e.counts = counts;
    if (!e.name || !v || !stored || !counts)
        rc = qk_err_set(err, QK_ENOMEM, "%s: out of memory", src);
    for (int64_t i = 0; !rc && i < ne0 * nmat; i++)
        stored[i] = load_f32(s->data, i);
    if (!rc)
        rc = check_values(stored, ne0 * nmat, src, e.name, err);
    for (int64_t j = 0; j < nmat && !rc; j++) {
        float cnt = counts[j] = load_f32(c->data, j);
        if (!isfinite(cnt) || cnt < 0.0f)
            rc = qk_err_set(err, QK_ERANGE, "%s: '%s': count %lld is %s (%g)", src, qk_show(c->name).s,
                            (long long)j, isfinite(cnt) ? "negative" : "not finite", (double)cnt);
        maxc = cnt > maxc ? cnt : maxc;
        e.n_unseen += !(cnt > 0.0f);
        for (int64_t i = 0; i < ne0; i++)
            v[j * ne0 + i] = cnt > 0.0f ? stored[j * ne0 + i] / cnt : 1.0f;
    }
    if (!rc)
        rc = check_values(v, ne0 * nmat, src, e.name, err);
    if (!rc)
        rc = gguf_exact(g, &e, s->name, c->name, src, err);
    if (rc) {
        entry_free(&e);
        return rc;
    }
    e.ncall = maxc < 9.2e18f ? (int64_t)maxc : INT64_MAX;
    return add_entry(f, e, src, err);
}

static int no_partner(const char *name, const char *partner, const char *src, qk_err *err)
{
    return qk_err_set(err, QK_EFORMAT, "%s: '%s' has no matching '%s'", src, qk_show(name).s,
                      qk_show(partner).s);
}

/* A tensor named BASE.SUFFIX[.exact] must have its partners; others are ignored. */
static int gguf_tensor_entry(imx_file *f, const gguf_ctx *g, const gguf_tensor_info *t, const char *src,
                             qk_err *err)
{
    size_t base;
    char name[GGUF_MAX_NAME + 16];
    if (ends_with(t->name, EXACT_SUFFIX, &base)) {
        snprintf(name, sizeof name, "%.*s", (int)base, t->name);
        if ((ends_with(name, SUMS_SUFFIX, &base) || ends_with(name, COUNTS_SUFFIX, &base)) &&
            !gguf_find_tensor(g, name))
            return no_partner(t->name, name, src, err);
        return QK_OK;
    }
    if (ends_with(t->name, SUMS_SUFFIX, &base)) {
        const gguf_tensor_info *c = find_partner(g, t->name, base, COUNTS_SUFFIX);
        snprintf(name, sizeof name, "%.*s%s", (int)base, t->name, COUNTS_SUFFIX);
        return c ? gguf_entry(f, g, t, c, base, src, err) : no_partner(t->name, name, src, err);
    }
    if (ends_with(t->name, COUNTS_SUFFIX, &base) && !find_partner(g, t->name, base, SUMS_SUFFIX)) {
        snprintf(name, sizeof name, "%.*s%s", (int)base, t->name, SUMS_SUFFIX);
        return no_partner(t->name, name, src, err);
    }
    return QK_OK;
}

static int load_gguf_ctx(imx_file *f, const gguf_ctx *g, const char *src, qk_err *err)
{
    int rc = gguf_keys(f, g, src, err);
    for (uint64_t i = 0; !rc && i < gguf_n_tensors(g); i++)
        rc = gguf_tensor_entry(f, g, gguf_tensor(g, i), src, err);
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

/* ---- writer ------------------------------------------------------------------------------- */

static int ptr_cmp(const void *a, const void *b)
{
    return strcmp((*(const imx_out_entry *const *)a)->name, (*(const imx_out_entry *const *)b)->name);
}

/* The entries sorted by name; duplicates are a caller error. */
static int sorted_order(const imx_out *o, const imx_out_entry ***out, const char *path, qk_err *err)
{
    const imx_out_entry **ix = malloc((o->n ? o->n : 1) * sizeof *ix);
    if (!ix)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < o->n; i++)
        ix[i] = &o->e[i];
    qsort(ix, o->n, sizeof *ix, ptr_cmp);
    for (size_t i = 1; i < o->n; i++)
        if (!strcmp(ix[i - 1]->name, ix[i]->name)) {
            const int rc = qk_err_set(err, QK_EINTERNAL, "%s: entry '%s' given twice", path, ix[i]->name);
            free(ix);
            return rc;
        }
    *out = ix;
    return QK_OK;
}

static int write_gguf_entry(gguf_writer *w, const imx_out_entry *e, const char *path, qk_err *err)
{
    const size_t nv = (size_t)(e->n_per_mat * e->n_mat), nm = (size_t)e->n_mat;
    float *sums = malloc(nv * sizeof *sums), *counts = malloc(nm * sizeof *counts);
    char n1[GGUF_MAX_NAME + 32], n2[sizeof n1], n3[sizeof n1], n4[sizeof n1];
    int rc = sums && counts ? QK_OK : qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; !rc && i < nv; i++)
        sums[i] = (float)imx_fx_to_double(e->sum2 + 2 * i);
    for (size_t j = 0; !rc && j < nm; j++)
        counts[j] = (float)e->counts[j];
    snprintf(n1, sizeof n1, "%s%s", e->name, SUMS_SUFFIX);
    snprintf(n2, sizeof n2, "%s%s", e->name, COUNTS_SUFFIX);
    snprintf(n3, sizeof n3, "%s%s%s", e->name, SUMS_SUFFIX, EXACT_SUFFIX);
    snprintf(n4, sizeof n4, "%s%s%s", e->name, COUNTS_SUFFIX, EXACT_SUFFIX);
    if (!rc) { /* the writer's errors are sticky: gguf_writer_commit() reports them */
        gguf_writer_write_tensor(w, n1, sums, nv * sizeof *sums);
        gguf_writer_write_tensor(w, n2, counts, nm * sizeof *counts);
        gguf_writer_write_tensor(w, n3, e->sum2, 2 * nv * sizeof *e->sum2);
        gguf_writer_write_tensor(w, n4, e->counts, nm * sizeof *e->counts);
    }
    free(sums);
    free(counts);
    return rc;
}

static int write_gguf(const imx_out *o, const imx_out_entry *const *ix, const char *path, qk_err *err)
{
    gguf_writer *w;
    int rc = gguf_writer_open(&w, path, NULL, err);
    if (rc)
        return rc;
    if (o->chunk_count < 0 || o->chunk_count > UINT32_MAX) {
        gguf_writer_abort(w);
        return qk_err_set(err, QK_ERANGE, "%s: chunk count %lld does not fit a u32", path,
                          (long long)o->chunk_count);
    }
    gguf_writer_set_str(w, "general.type", "imatrix");
    gguf_writer_set_arr_str(w, "imatrix.datasets", o->datasets, o->n_datasets);
    gguf_writer_set_u32(w, "imatrix.chunk_count", (uint32_t)o->chunk_count);
    gguf_writer_set_u32(w, "imatrix.chunk_size", o->chunk_size);
    gguf_writer_set_u32(w, KEY_FRAC_BITS, 64);
    if (o->model_id)
        gguf_writer_set_str(w, KEY_MODEL_ID, o->model_id);
    if (o->shard.count) {
        const uint32_t sh[2] = {o->shard.index, o->shard.count};
        const uint32_t plan[2] = {o->shard.plan_first, o->shard.plan_chunks};
        gguf_writer_set_arr(w, KEY_SHARD, GGUF_TYPE_U32, sh, 2);
        gguf_writer_set_arr(w, KEY_SHARD_PLAN, GGUF_TYPE_U32, plan, 2);
    }
    for (size_t k = 0; k < o->n; k++) {
        const imx_out_entry *e = ix[k];
        char name[GGUF_MAX_NAME + 32];
        snprintf(name, sizeof name, "%s%s", e->name, SUMS_SUFFIX);
        gguf_writer_add_tensor(w, name, Q_TYPE_F32, 2, (int64_t[]){e->n_per_mat, e->n_mat});
        snprintf(name, sizeof name, "%s%s", e->name, COUNTS_SUFFIX);
        gguf_writer_add_tensor(w, name, Q_TYPE_F32, 2, (int64_t[]){1, e->n_mat});
        snprintf(name, sizeof name, "%s%s%s", e->name, SUMS_SUFFIX, EXACT_SUFFIX);
        gguf_writer_add_tensor(w, name, Q_TYPE_I64, 3, (int64_t[]){2, e->n_per_mat, e->n_mat});
        snprintf(name, sizeof name, "%s%s%s", e->name, COUNTS_SUFFIX, EXACT_SUFFIX);
        gguf_writer_add_tensor(w, name, Q_TYPE_I64, 1, (int64_t[]){e->n_mat});
    }
    gguf_writer_begin_data(w);
    rc = QK_OK;
    for (size_t k = 0; !rc && k < o->n; k++)
        rc = write_gguf_entry(w, ix[k], path, err);
    if (rc) {
        gguf_writer_abort(w);
        return rc;
    }
    return gguf_writer_commit(w, err);
}

static void put_i32(FILE *f, int32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)((uint32_t)v >> 8), (uint8_t)((uint32_t)v >> 16),
                    (uint8_t)((uint32_t)v >> 24)};
    fwrite(b, 1, 4, f);
}

static void put_f32(FILE *f, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    put_i32(f, (int32_t)u);
}

static int all_unseen(const imx_out_entry *e)
{
    for (int64_t j = 0; j < e->n_mat; j++)
        if (e->counts[j] > 0)
            return 0;
    return 1;
}

static int write_legacy(const imx_out *o, const imx_out_entry *const *ix, const char *path, size_t *n_skipped,
                        qk_err *err)
{
    if (o->chunk_count < 0 || o->chunk_count > INT32_MAX)
        return qk_err_set(err, QK_ERANGE, "%s: chunk count %lld does not fit the legacy layout", path,
                          (long long)o->chunk_count);
    const int32_t ncall = o->chunk_count > 0 ? (int32_t)o->chunk_count : 1;
    int32_t n = 0;
    for (size_t k = 0; k < o->n; k++) {
        const imx_out_entry *e = ix[k];
        if (e->n_per_mat * e->n_mat > INT32_MAX || strlen(e->name) > INT32_MAX)
            return qk_err_set(err, QK_ERANGE, "%s: entry '%s' is too large for the legacy layout", path,
                              e->name);
        n += !all_unseen(e);
    }
    if (n_skipped)
        *n_skipped = o->n - (size_t)n;
    if (n == 0)
        return qk_err_set(err, QK_ERANGE, "%s: no entry has seen a token", path);
    of_file *of;
    int rc = of_open(&of, path, err);
    if (rc)
        return rc;
    FILE *f = of_stream(of);
    put_i32(f, n);
    for (size_t k = 0; k < o->n; k++) {
        const imx_out_entry *e = ix[k];
        if (all_unseen(e))
            continue;
        put_i32(f, (int32_t)strlen(e->name));
        fwrite(e->name, 1, strlen(e->name), f);
        put_i32(f, ncall);
        put_i32(f, (int32_t)(e->n_per_mat * e->n_mat));
        for (int64_t j = 0; j < e->n_mat; j++)
            for (int64_t i = 0; i < e->n_per_mat; i++) {
                float v = (float)imx_fx_to_double(e->sum2 + 2 * (j * e->n_per_mat + i));
                float cnt = (float)e->counts[j];
                if (cnt == 0.0f) /* a matrix that saw no token: uniform weights */
                    v = cnt = 1.0f;
                put_f32(f, v / cnt * (float)ncall);
            }
    }
    const char *ds = o->n_datasets ? o->datasets[o->n_datasets - 1] : "";
    put_i32(f, (int32_t)o->chunk_count);
    put_i32(f, (int32_t)strlen(ds));
    fwrite(ds, 1, strlen(ds), f);
    return of_commit(of, err);
}

int imx_write(const imx_out *o, const char *path, enum imx_format format, size_t *n_skipped,
              qk_err *err)
{
    if (n_skipped)
        *n_skipped = 0;
    if (o->n == 0)
        return qk_err_set(err, QK_ERANGE, "%s: no importance matrix entries to write", path);
    const imx_out_entry **ix = NULL;
    int rc = sorted_order(o, &ix, path, err);
    if (rc)
        return rc;
    rc = format == IMX_LEGACY ? write_legacy(o, ix, path, n_skipped, err) : write_gguf(o, ix, path, err);
    free(ix);
    return rc;
}
