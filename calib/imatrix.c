/* imatrix.c — llama-imatrix's statistic from qkit's engine, in exact fixed point; see imatrix.h. */
#include "imatrix.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Columns per task when summing a product's input: one thread owns a column for all tokens. */
#define COL_BLOCK 64

typedef struct {
    const char *name; /* the model's tensor name (borrowed) */
    int64_t ne0, n_mat;
    int layer;        /* block index, -1 for model-wide tensors */
    uint64_t *sum2;   /* [n_mat][ne0][2] 64.64 fixed point */
    int64_t *counts;  /* [n_mat] */
    int present;      /* seen in a run or a merged file */
} mat_stats;

struct eng_imatrix {
    const eng_model *m;
    eng_imatrix_opts o;
    mat_stats *s; /* sorted by name */
    size_t n;
    double *colsum;   /* [max ne0] one product's column sums */
    char **datasets;  /* sorted, unique */
    size_t n_datasets;
    int64_t chunk_count;
    uint32_t chunk_size;
    int rc;           /* sticky observer error */
    char model_id[17]; /* "" until set */
    imx_shard shard;
    qk_err err;
    double seconds;   /* spent in the observer */
};

static int stat_cmp(const void *a, const void *b)
{
    return strcmp(((const mat_stats *)a)->name, ((const mat_stats *)b)->name);
}

static mat_stats *find(const eng_imatrix *im, const char *name)
{
    mat_stats key = {.name = name};
    return name && im->n ? bsearch(&key, im->s, im->n, sizeof key, stat_cmp) : NULL;
}

static const char *model_name(const eng_imatrix *im)
{
    return im->o.model_name ? im->o.model_name : "the model";
}

void eng_imatrix_free(eng_imatrix *im)
{
    if (!im)
        return;
    for (size_t i = 0; i < im->n; i++) {
        free(im->s[i].sum2);
        free(im->s[i].counts);
    }
    for (size_t i = 0; i < im->n_datasets; i++)
        free(im->datasets[i]);
    free(im->datasets);
    free(im->s);
    free(im->colsum);
    free(im);
}

/* Registers a matrix to collect (a tensor the engine multiplies; NULL data: absent). */
static int track(eng_imatrix *im, const eng_tensor *t, int layer, int64_t *max_ne0, qk_err *err)
{
    if (!t->data || !t->name)
        return QK_OK;
    mat_stats *st = &im->s[im->n];
    *st = (mat_stats){.name = t->name, .ne0 = t->ne0, .n_mat = t->ne2, .layer = layer};
    st->sum2 = calloc((size_t)(t->ne0 * t->ne2) * 2, sizeof *st->sum2);
    st->counts = calloc((size_t)t->ne2, sizeof *st->counts);
    im->n++;
    if (!st->sum2 || !st->counts)
        return qk_err_set(err, QK_ENOMEM, "out of memory for the statistics of '%s'", t->name);
    *max_ne0 = t->ne0 > *max_ne0 ? t->ne0 : *max_ne0;
    return QK_OK;
}

int eng_imatrix_create(eng_imatrix **out, const eng_model *m, const eng_imatrix_opts *o, qk_err *err)
{
    *out = NULL;
    eng_imatrix *im = calloc(1, sizeof *im);
    const size_t cap = (size_t)m->n_layer * GA_T_COUNT + 1;
    if (!im || !(im->s = calloc(cap, sizeof *im->s))) {
        free(im);
        return qk_err_set(err, QK_ENOMEM, "out of memory for the importance matrix");
    }
    im->m = m;
    if (o)
        im->o = *o;
    int64_t max_ne0 = 0;
    int rc = QK_OK;
    for (int l = 0; !rc && l < m->n_layer; l++)
        for (int k = 0; !rc && k < GA_T_COUNT; k++)
            if (!ga_kind_get((ga_kind)k)->vector)
                rc = track(im, &m->layers[l].w[k], l, &max_ne0, err);
    /* llama-imatrix's --process-output names output.weight; a tied output is token_embd */
    if (!rc && im->o.process_output && m->output.name && !strcmp(m->output.name, "output.weight"))
        rc = track(im, &m->output, -1, &max_ne0, err);
    if (!rc && !(im->colsum = malloc((size_t)(max_ne0 ? max_ne0 : 1) * sizeof *im->colsum)))
        rc = qk_err_set(err, QK_ENOMEM, "out of memory for the importance matrix");
    if (!rc) {
        qsort(im->s, im->n, sizeof *im->s, stat_cmp);
        for (size_t i = 1; i < im->n; i++)
            if (!strcmp(im->s[i - 1].name, im->s[i].name))
                rc = qk_err_set(err, QK_EFORMAT, "tensor '%s' is used twice", im->s[i].name);
    }
    if (rc) {
        eng_imatrix_free(im);
        return rc;
    }
    *out = im;
    return QK_OK;
}

/* ---- collecting ---------------------------------------------------------------------------- */

void eng_imatrix_observe(void *user, const eng_tensor *w, int expert, const float *x, int n)
{
    eng_imatrix *im = user;
    mat_stats *st = im->rc ? NULL : find(im, w->name);
    if (!st || n <= 0)
        return;
    const double t0 = omp_get_wtime();
    const int mat = expert < 0 ? 0 : expert;
    const int64_t ne0 = st->ne0;
    if (w->ne0 != ne0 || mat >= st->n_mat) {
        im->rc = qk_err_set(&im->err, QK_EINTERNAL, "tensor '%s': product of %lld columns (expert %d)",
                            st->name, (long long)w->ne0, expert);
        return;
    }
    double *acc = im->colsum;
    const int64_t nblk = (ne0 + COL_BLOCK - 1) / COL_BLOCK;
    /* Each column is summed over the tokens in order by one thread: the double sum depends only
     * on the product's input, never on the thread count. */
#pragma omp parallel for schedule(static) if ((int64_t)n * ne0 >= (1 << 20))
    for (int64_t b = 0; b < nblk; b++) {
        const int64_t j0 = b * COL_BLOCK, width = ne0 - j0 < COL_BLOCK ? ne0 - j0 : COL_BLOCK;
        double a[COL_BLOCK] = {0};
        if (width == COL_BLOCK) { /* a fixed trip count the compiler vectorizes */
            for (int t = 0; t < n; t++) {
                const float *r = x + (size_t)t * (size_t)ne0 + j0;
                for (int j = 0; j < COL_BLOCK; j++) {
                    const float sq = r[j] * r[j];
                    a[j] += (double)sq;
                }
            }
        } else {
            for (int t = 0; t < n; t++) {
                const float *r = x + (size_t)t * (size_t)ne0 + j0;
                for (int64_t j = 0; j < width; j++) {
                    const float sq = r[j] * r[j];
                    a[j] += (double)sq;
                }
            }
        }
        memcpy(acc + j0, a, (size_t)width * sizeof *a);
    }
    uint64_t *sum = st->sum2 + (size_t)mat * (size_t)ne0 * 2, q[2];
    for (int64_t j = 0; j < ne0; j++) {
        if (imx_fx_from_double(acc[j], q) || imx_fx_add(sum + 2 * j, q)) {
            char ex[32] = "";
            if (expert >= 0)
                snprintf(ex, sizeof ex, " (expert %d)", expert);
            im->rc = isfinite(acc[j])
                         ? qk_err_set(&im->err, QK_ERANGE,
                                      "tensor '%s'%s: the sum of squares of input column %lld "
                                      "reaches 2^64 (%g)", st->name, ex, (long long)j, acc[j])
                         : qk_err_set(&im->err, QK_ERANGE,
                                      "tensor '%s'%s: input column %lld holds a non-finite "
                                      "activation (%g)", st->name, ex, (long long)j, acc[j]);
            return;
        }
    }
    st->counts[mat] += n;
    st->present = 1;
    im->seconds += omp_get_wtime() - t0;
}

double eng_imatrix_observer_seconds(const eng_imatrix *im) { return im->seconds; }

int eng_imatrix_status(const eng_imatrix *im, qk_err *err)
{
    if (im->rc && err)
        *err = im->err;
    return im->rc;
}

uint32_t eng_imatrix_chunk_size(const eng_imatrix *im) { return im->chunk_size; }
int64_t eng_imatrix_chunk_count(const eng_imatrix *im) { return im->chunk_count; }

int eng_imatrix_set_chunk_size(eng_imatrix *im, uint32_t n, qk_err *err)
{
    if (im->chunk_size && im->chunk_size != n)
        return qk_err_set(err, QK_EFORMAT,
                          "chunks of %u tokens, but the statistics merged so far used chunks of %u",
                          n, im->chunk_size);
    im->chunk_size = n;
    return QK_OK;
}

int eng_imatrix_plan(const eng_model *m, size_t n_tokens, const eng_imatrix_run_opts *o, int *first,
                     int *n_chunks, qk_err *err)
{
    if (o->n_ctx < 4)
        return qk_err_set(err, QK_ERANGE, "context of %d tokens is too small (at least 4)", o->n_ctx);
    if (m && o->n_ctx > m->n_ctx_train)
        return qk_err_set(err, QK_ERANGE, "context of %d tokens exceeds the model's %d", o->n_ctx,
                          m->n_ctx_train);
    const size_t avail = n_tokens / (size_t)o->n_ctx;
    if (avail == 0)
        return qk_err_set(err, QK_ERANGE,
                          "the text has %zu tokens, fewer than one chunk: at least %d are needed "
                          "(--ctx %d)", n_tokens, o->n_ctx, o->n_ctx);
    if (avail > (size_t)INT32_MAX)
        return qk_err_set(err, QK_ERANGE, "the text has too many chunks (%zu)", avail);
    if (o->first < 0 || (size_t)o->first >= avail || (o->last >= 0 && (size_t)o->last >= avail))
        return qk_err_set(err, QK_ERANGE, "chunk range %d:%d is outside the text's %zu chunks (0:%zu)",
                          o->first, o->last, avail, avail - 1);
    if (o->last >= 0 && o->last < o->first)
        return qk_err_set(err, QK_ERANGE, "chunk range %d:%d is empty", o->first, o->last);
    int64_t n = (o->last >= 0 ? o->last : (int64_t)avail - 1) - o->first + 1;
    if (o->max_chunks > 0 && o->max_chunks < n)
        n = o->max_chunks;
    *first = o->first;
    *n_chunks = (int)n;
    return QK_OK;
}

int eng_imatrix_run(eng_imatrix *im, const int32_t *tokens, size_t n_tokens, const eng_imatrix_run_opts *o,
                    eng_ppl_acc *ppl, eng_chunk_cb cb, void *user, qk_err *err)
{
    const eng_model *m = im->m;
    int first, n_chunks, rc = eng_imatrix_plan(m, n_tokens, o, &first, &n_chunks, err);
    if (!rc)
        rc = eng_imatrix_set_chunk_size(im, (uint32_t)o->n_ctx, err);
    if (rc)
        return rc;
    eng_ctx *c = NULL;
    float *logits = malloc((size_t)o->n_ctx * (size_t)m->n_vocab * sizeof(float));
    int32_t *tok = malloc((size_t)o->n_ctx * sizeof *tok);
    if (!logits || !tok)
        rc = qk_err_set(err, QK_ENOMEM, "out of memory for %d x %d logits", o->n_ctx, m->n_vocab);
    if (!rc && !(rc = eng_ctx_create(&c, m, o->n_ctx, err)))
        eng_ctx_set_observer(c, eng_imatrix_observe, im);
    const int half = o->n_ctx / 2;
    for (int i = 0; !rc && i < n_chunks; i++) {
        const int ch = first + i;
        const int32_t *src = tokens + (size_t)ch * (size_t)o->n_ctx;
        memcpy(tok, src, (size_t)o->n_ctx * sizeof *tok);
        if (o->bos >= 0)
            tok[0] = o->bos;
        rc = eng_forward(c, tok, o->n_ctx, logits, err);
        if (!rc && (rc = im->rc)) {
            *err = im->err;
            char where[32];
            snprintf(where, sizeof where, "chunk %d", ch);
            qk_err_prefix(err, where);
        }
        for (int j = half; !rc && ppl && j < o->n_ctx - 1; j++)
            eng_ppl_add(ppl, eng_log_softmax(logits + (size_t)j * m->n_vocab, m->n_vocab, src[j + 1], NULL));
        if (!rc) {
            im->chunk_count++;
            if (cb)
                cb(user, i, n_chunks);
        }
    }
    eng_ctx_free(c);
    free(logits);
    free(tok);
    return rc;
}

/* ---- merging files ------------------------------------------------------------------------- */

int eng_imatrix_add_dataset(eng_imatrix *im, const char *name, qk_err *err)
{
    size_t pos = 0;
    while (pos < im->n_datasets && strcmp(im->datasets[pos], name) < 0)
        pos++;
    if (pos < im->n_datasets && !strcmp(im->datasets[pos], name))
        return QK_OK;
    char **grown = realloc(im->datasets, (im->n_datasets + 1) * sizeof *grown);
    char *copy = strdup(name);
    if (grown)
        im->datasets = grown;
    if (!grown || !copy) {
        free(copy);
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    }
    memmove(im->datasets + pos + 1, im->datasets + pos, (im->n_datasets - pos) * sizeof *grown);
    im->datasets[pos] = copy;
    im->n_datasets++;
    return QK_OK;
}

/* A count stored as f32 (llama.cpp rounds it); it must be a whole number of tokens. */
static int count_of(float c, int64_t *out)
{
    if (!(c >= 0.0f) || !(c < 9.0e15f) || c != floorf(c))
        return QK_ERANGE;
    *out = (int64_t)c;
    return QK_OK;
}

/* Matrix j of entry e, its fixed-point sums added to dst[ne0][2], its count to *cnt. */
static int add_matrix(const imx_entry *e, int64_t j, uint32_t chunk_size, int64_t ne0, uint64_t *dst,
                      int64_t *cnt, const char *path, qk_err *err)
{
    int64_t c;
    uint64_t q[2];
    if (e->exact) {
        c = e->exact_counts[j];
    } else if (e->counts) {
        if (count_of(e->counts[j], &c))
            return qk_err_set(err, QK_ERANGE, "%s: entry '%s': count %g is not a whole number of tokens",
                              path, qk_show(e->name).s, (double)e->counts[j]);
    } else { /* legacy: one ncall for the entry, mean·ncall stored */
        c = e->ncall * (int64_t)chunk_size;
    }
    if (!e->exact && !e->counts && e->ncall == 0)
        return QK_OK; /* llama.cpp adds nothing for such an entry either (its sums are undefined) */
    for (int64_t i = 0; i < ne0; i++) {
        const int64_t k = j * ne0 + i;
        int bad;
        if (e->exact) {
            bad = imx_fx_add(dst + 2 * i, e->exact + 2 * k);
        } else {
            const double v = e->counts ? (double)e->stored[k] : (double)e->stored[k] * chunk_size;
            bad = imx_fx_from_double(v, q) || imx_fx_add(dst + 2 * i, q);
        }
        if (bad)
            return qk_err_set(err, QK_ERANGE, "%s: entry '%s': the sum of column %lld reaches 2^64", path,
                              qk_show(e->name).s, (long long)i);
    }
    if (c > INT64_MAX - *cnt)
        return qk_err_set(err, QK_ERANGE, "%s: entry '%s': the token count overflows", path, qk_show(e->name).s);
    *cnt += c;
    return QK_OK;
}

static int add_entry(eng_imatrix *im, const imx_entry *e, const char *path, qk_err *err)
{
    mat_stats *st = find(im, e->name);
    if (!st)
        return qk_err_set(err, QK_EFORMAT,
                          "%s: entry '%s' is not a weight matrix of %s (an importance matrix of "
                          "another model?)", path, qk_show(e->name).s, model_name(im));
    /* llama.cpp's broadcast: one count (legacy, old GGUF) for every expert of a 3-D tensor */
    const int spread = e->n_mat == 1 && st->n_mat > 1 && e->n_per_mat == st->ne0 * st->n_mat;
    if (!spread && (e->n_per_mat != st->ne0 || e->n_mat != st->n_mat))
        return qk_err_set(err, QK_EFORMAT,
                          "%s: entry '%s' has %lld values x %lld matrices, the tensor in %s %lld x %lld "
                          "(an importance matrix of another model?)", path, qk_show(e->name).s,
                          (long long)e->n_per_mat, (long long)e->n_mat, model_name(im),
                          (long long)st->ne0, (long long)st->n_mat);
    /* into copies: a failed merge leaves the statistics unchanged */
    const size_t nv = (size_t)(st->ne0 * st->n_mat);
    uint64_t *sum = malloc(nv * 2 * sizeof *sum);
    int64_t *cnt = malloc((size_t)st->n_mat * sizeof *cnt);
    int rc = sum && cnt ? QK_OK : qk_err_set(err, QK_ENOMEM, "out of memory");
    if (!rc) {
        memcpy(sum, st->sum2, nv * 2 * sizeof *sum);
        memcpy(cnt, st->counts, (size_t)st->n_mat * sizeof *cnt);
    }
    for (int64_t j = 0; !rc && j < st->n_mat; j++) {
        if (spread) { /* the entry's values of expert j, with the entry's single count */
            imx_entry one = *e;
            one.n_per_mat = st->ne0;
            one.stored = e->stored + j * st->ne0;
            one.exact = e->exact ? e->exact + 2 * j * st->ne0 : NULL;
            rc = add_matrix(&one, 0, im->chunk_size, st->ne0, sum + 2 * j * st->ne0, &cnt[j], path, err);
        } else {
            rc = add_matrix(e, j, im->chunk_size, st->ne0, sum + 2 * j * st->ne0, &cnt[j], path, err);
        }
    }
    if (!rc) {
        memcpy(st->sum2, sum, nv * 2 * sizeof *sum);
        memcpy(st->counts, cnt, (size_t)st->n_mat * sizeof *cnt);
        st->present = 1;
    }
    free(sum);
    free(cnt);
    return rc;
}

void eng_imatrix_set_model_id(eng_imatrix *im, const char *id)
{
    snprintf(im->model_id, sizeof im->model_id, "%s", id ? id : "");
}

void eng_imatrix_set_shard(eng_imatrix *im, imx_shard sh) { im->shard = sh; }

void eng_imatrix_shard_range(int first, int n_chunks, uint32_t index, uint32_t count, int *sfirst,
                             int *sn)
{
    const int64_t a = (int64_t)n_chunks * index / count, b = (int64_t)n_chunks * (index + 1) / count;
    *sfirst = first + (int)a;
    *sn = (int)(b - a);
}

/* A shard's chunks as --chunk-range numbers them. */
static void shard_chunks(imx_shard sh, uint32_t index, char *buf, size_t n)
{
    int f, k;
    eng_imatrix_shard_range((int)sh.plan_first, (int)sh.plan_chunks, index, sh.count, &f, &k);
    snprintf(buf, n, "chunks %d-%d", f, f + k - 1);
}

static int check_set(const imx_file *const *f, const char *const *paths, size_t n, size_t first,
                     const char **seen, qk_err *err);

int eng_imatrix_check_shards(const imx_file *const *f, const char *const *paths, size_t n, qk_err *err)
{
    size_t first = n;
    for (size_t i = 0; i < n && first == n; i++)
        if (imx_shard_of(f[i]).count)
            first = i;
    if (first == n)
        return QK_OK;
    const imx_shard s0 = imx_shard_of(f[first]);
    const char **seen = calloc(s0.count, sizeof *seen);
    if (!seen)
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    int rc = check_set(f, paths, n, first, seen, err);
    free(seen);
    return rc;
}

static int check_set(const imx_file *const *f, const char *const *paths, size_t n, size_t first,
                     const char **seen, qk_err *err)
{
    const imx_shard s0 = imx_shard_of(f[first]);
    for (size_t i = 0; i < n; i++) {
        const imx_shard s = imx_shard_of(f[i]);
        if (!s.count)
            return qk_err_set(err, QK_EFORMAT, "%s: not a shard, but %s is one (shard %u of %u): "
                              "merge a shard set alone", paths[i], paths[first], s0.index, s0.count);
        if (s.count != s0.count || s.plan_first != s0.plan_first || s.plan_chunks != s0.plan_chunks)
            return qk_err_set(err, QK_EFORMAT, "%s: shard %u of %u of chunks %u-%u, but %s is shard "
                              "%u of %u of chunks %u-%u: parts of different runs", paths[i], s.index,
                              s.count, s.plan_first, s.plan_first + s.plan_chunks - 1, paths[first],
                              s0.index, s0.count, s0.plan_first, s0.plan_first + s0.plan_chunks - 1);
        const char *id = imx_model_id(f[i]), *id0 = imx_model_id(f[first]);
        if ((id || id0) && (!id || !id0 || strcmp(id, id0)))
            return qk_err_set(err, QK_EFORMAT, "%s: collected on another model than %s (model id %s "
                              "vs %s)", paths[i], paths[first], id ? id : "(none)", id0 ? id0 : "(none)");
        if (imx_chunk_size(f[i]) != imx_chunk_size(f[first]))
            return qk_err_set(err, QK_EFORMAT, "%s: chunks of %u tokens, but %s has %u", paths[i],
                              imx_chunk_size(f[i]), paths[first], imx_chunk_size(f[first]));
        if (seen[s.index])
            return qk_err_set(err, QK_EFORMAT, "%s: shard %u of %u is also in %s", paths[i], s.index,
                              s.count, seen[s.index]);
        seen[s.index] = paths[i];
    }
    for (uint32_t k = 0; k < s0.count; k++)
        if (!seen[k]) {
            char ch[64];
            shard_chunks(s0, k, ch, sizeof ch);
            return qk_err_set(err, QK_EFORMAT, "shard %u of %u (%s) is missing: the set is "
                              "incomplete (run that job again, then merge)", k, s0.count, ch);
        }
    return QK_OK;
}

int eng_imatrix_add_file(eng_imatrix *im, const imx_file *f, const char *path, qk_err *err)
{
    int rc = QK_OK;
    const char *id = imx_model_id(f);
    if (id && im->model_id[0] && strcmp(id, im->model_id))
        return qk_err_set(err, QK_EFORMAT, "%s: collected on another model (model id %s; %s has "
                          "%s)", path, id, im->o.model_name ? im->o.model_name : "the model",
                          im->model_id);
    if (imx_format_of(f) == IMX_GGUF && (rc = eng_imatrix_set_chunk_size(im, imx_chunk_size(f), err)))
        qk_err_prefix(err, path);
    if (!rc && !im->chunk_size)
        rc = qk_err_set(err, QK_EINTERNAL, "%s: a legacy file needs the chunk size first", path);
    for (size_t i = 0; !rc && i < imx_count(f); i++)
        rc = add_entry(im, imx_entry_at(f, i), path, err);
    for (size_t i = 0; !rc && i < imx_n_datasets(f); i++)
        rc = eng_imatrix_add_dataset(im, imx_dataset(f, i), err);
    if (!rc)
        im->chunk_count += imx_chunk_count(f) > 0 ? imx_chunk_count(f) : 0;
    return rc;
}

/* ---- output and summaries ------------------------------------------------------------------ */

int eng_imatrix_write(const eng_imatrix *im, const char *path, enum imx_format format, size_t *n_skipped,
                      qk_err *err)
{
    imx_out_entry *e = malloc((im->n ? im->n : 1) * sizeof *e);
    if (!e)
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < im->n; i++)
        if (im->s[i].present)
            e[n++] = (imx_out_entry){im->s[i].name, im->s[i].ne0, im->s[i].n_mat, im->s[i].sum2,
                                     im->s[i].counts};
    const imx_out o = {e, n, (const char *const *)im->datasets, im->n_datasets, im->chunk_count,
                       im->chunk_size, im->model_id[0] ? im->model_id : NULL, im->shard};
    int rc = imx_write(&o, path, format, n_skipped, err);
    free(e);
    return rc;
}

static int desc_cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int summarize(const mat_stats *st, double *e, eng_imatrix_summary *s)
{
    *s = (eng_imatrix_summary){.name = st->name, .n_per_mat = st->ne0, .n_mat = st->n_mat};
    size_t n = 0;
    double total = 0.0;
    for (int64_t j = 0; j < st->n_mat; j++) {
        s->tokens = st->counts[j] > s->tokens ? st->counts[j] : s->tokens;
        if (st->counts[j] == 0) {
            s->n_unseen++;
            continue;
        }
        for (int64_t i = 0; i < st->ne0; i++) {
            const double v = imx_fx_to_double(st->sum2 + 2 * (j * st->ne0 + i)) / (double)st->counts[j];
            e[n++] = v;
            total += v;
            s->max = v > s->max ? v : s->max;
        }
    }
    if (n == 0)
        return QK_OK;
    s->mean = total / (double)n;
    qsort(e, n, sizeof *e, desc_cmp);
    double run = 0.0;
    size_t k = 0;
    while (k < n && run < 0.5 * total)
        run += e[k++];
    s->frac50 = (double)(k ? k : 1) / (double)n;
    return QK_OK;
}

int eng_imatrix_summarize(const eng_imatrix *im, eng_imatrix_summary **out, size_t *n, qk_err *err)
{
    *out = NULL;
    *n = 0;
    int64_t most = 1;
    for (size_t i = 0; i < im->n; i++)
        most = im->s[i].ne0 * im->s[i].n_mat > most ? im->s[i].ne0 * im->s[i].n_mat : most;
    eng_imatrix_summary *s = malloc((im->n ? im->n : 1) * sizeof *s);
    double *e = malloc((size_t)most * sizeof *e);
    if (!s || !e) {
        free(s);
        free(e);
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < im->n; i++)
        if (im->s[i].present)
            summarize(&im->s[i], e, &s[(*n)++]);
    free(e);
    *out = s;
    return QK_OK;
}

void eng_imatrix_unrouted(const eng_imatrix *im, int64_t *unrouted, int64_t *total)
{
    *unrouted = *total = 0;
    const int ne = im->m->n_expert;
    unsigned char *seen = ne > 0 ? malloc((size_t)ne) : NULL;
    for (int l = 0; seen && l < im->m->n_layer; l++) {
        int moe = 0;
        memset(seen, 1, (size_t)ne);
        for (size_t i = 0; i < im->n; i++) {
            const mat_stats *st = &im->s[i];
            if (st->layer != l || st->n_mat <= 1 || !st->present)
                continue;
            moe = 1;
            for (int64_t j = 0; j < st->n_mat && j < ne; j++)
                seen[j] &= st->counts[j] > 0;
        }
        for (int e = 0; moe && e < ne; e++)
            *unrouted += !seen[e];
        *total += moe ? ne : 0;
    }
    free(seen);
}
