/* quantize.c — the llama-quantize pipeline (llama.cpp c392e50, llama_model_quantize_impl):
 * read, plan, check, then stream every tensor through dequantize → quantize → writer. */
#include "quantize.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../formats/file.h"
#include "../formats/gguf.h"
#include "../formats/hash.h"
#include "../formats/imatrix.h"
#include "../formats/mapping.h"
#include "../quant/quant.h"
#include "../quant/types.h"
#include "target.h"

#define QNT_VERSION 2 /* GGML_QNT_VERSION */
#define KV_QUANT_VERSION "general.quantization_version"
#define KV_FILE_TYPE "general.file_type"
#define KV_IMAT_FILE "quantize.imatrix.file"
#define KV_IMAT_DATASET "quantize.imatrix.dataset"
#define KV_IMAT_ENTRIES "quantize.imatrix.entries_count"
#define KV_IMAT_CHUNKS "quantize.imatrix.chunks_count"
#define KV_STR_MAX 127 /* llama_model_kv_override.val_str holds 128 bytes */

typedef struct {
    const qz_params *p;
    qk_err *err;
    gguf_ctx *in;
    imx_file *imx;
    mx_model model;
    mx_tensor *mt;            /* input tensors in file order */
    const imx_entry **imat;   /* per input tensor: the weights to use, or NULL */
    uint8_t **imat_zero;      /* per input tensor with weights: per matrix, 1 when all its
                                 weights are 0 (that matrix is quantized unweighted) */
    mx_plan *plan;
    qz_report *r;
    int n_threads;
    gguf_writer *w;
    int use_split;            /* --keep-split of a split input */
    int64_t chunk_values;     /* piece size in values (see qz_params) */
    size_t tensor_index;      /* in output order, for progress */
    uint64_t bytes_done;      /* source bytes finished */
    /* one piece at a time (sizes grow to the largest piece, never to a tensor) */
    float *f32, *rowbuf;      /* the piece as f32; per-thread dequantized rows */
    void *qbuf;               /* the quantized piece */
    double *row_err;          /* [piece rows][2]: Σw(x−q)², Σw·x² */
    size_t f32_cap, row_cap, q_cap, err_cap;
    int mute;                 /* warnings of a preliminary plan are not reported */
    int *forced;              /* per input tensor: the size budget's type, or -1 */
    long *tg_of;              /* per input tensor: its entry in tg, or -1 */
    tg_result tg;
} job;

void qz_params_init(qz_params *p)
{
    memset(p, 0, sizeof *p);
    p->ftype = MX_FTYPE_Q4_K_M;
    mx_options_init(&p->mix);
}

void qz_report_free(qz_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->t[i].name);
    for (size_t i = 0; i < r->n_warnings; i++)
        free(r->warnings[i]);
    free(r->warnings);
    free(r->t);
    free(r);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Records a warning in the report and passes it to the caller's callback. */
static int warn(job *j, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static int warn(job *j, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (j->mute)
        return QK_OK;
    qz_report *r = j->r;
    char **nw = realloc(r->warnings, (r->n_warnings + 1) * sizeof *nw);
    char *copy = strdup(msg);
    if (!nw || !copy) {
        free(copy);
        if (nw)
            r->warnings = nw;
        return qk_err_set(j->err, QK_ENOMEM, "out of memory");
    }
    r->warnings = nw;
    r->warnings[r->n_warnings++] = copy;
    if (j->p->warn)
        j->p->warn(j->p->user, msg);
    return QK_OK;
}

/* Grows *buf to hold n bytes (contents not kept). */
static int reserve(job *j, void **buf, size_t *cap, size_t n)
{
    if (n <= *cap)
        return QK_OK;
    free(*buf);
    *buf = malloc(n);
    *cap = *buf ? n : 0;
    return *buf ? QK_OK : qk_err_set(j->err, QK_ENOMEM, "out of memory (%zu bytes)", n);
}

/* ---- model description -------------------------------------------------------------------- */

/* An integer key, or the first element of an integer array (per-layer head counts). */
static int kv_uint(const gguf_ctx *g, const char *key, uint32_t *out)
{
    int64_t i = gguf_find_key(g, key);
    if (i < 0)
        return GGUF_MISSING;
    const gguf_value *v = gguf_kv_value(g, (uint64_t)i);
    enum gguf_vtype t = v->type;
    const void *p = &v->u8;
    if (t == GGUF_TYPE_ARR) {
        if (v->arr.n == 0)
            return QK_EFORMAT;
        t = v->arr.type;
        p = v->arr.data;
    }
    int64_t x;
    switch (t) {
    case GGUF_TYPE_U8: x = *(const uint8_t *)p; break;
    case GGUF_TYPE_I8: x = *(const int8_t *)p; break;
    case GGUF_TYPE_U16: x = *(const uint16_t *)p; break;
    case GGUF_TYPE_I16: x = *(const int16_t *)p; break;
    case GGUF_TYPE_U32: x = *(const uint32_t *)p; break;
    case GGUF_TYPE_I32: x = *(const int32_t *)p; break;
    case GGUF_TYPE_U64: x = *(const uint64_t *)p > UINT32_MAX ? -1 : (int64_t)(*(const uint64_t *)p & UINT32_MAX); break;
    case GGUF_TYPE_I64: x = *(const int64_t *)p; break;
    default: return QK_EFORMAT;
    }
    if (x < 0 || x > UINT32_MAX)
        return QK_ERANGE;
    *out = (uint32_t)x;
    return QK_OK;
}

static int read_model(job *j)
{
    const char *path = j->p->in_path, *arch = NULL;
    if (gguf_get_str(j->in, "general.architecture", &arch) != QK_OK)
        return qk_err_set(j->err, QK_EFORMAT, "%s: general.architecture missing or not a string",
                          path);
    j->model.arch = arch;
    static const char *const SUFFIX[] = {"block_count", "attention.head_count",
                                         "attention.head_count_kv", "expert_count"};
    uint32_t *dst[] = {&j->model.n_layer, &j->model.n_head, &j->model.n_head_kv,
                       &j->model.n_expert};
    for (int k = 0; k < 4; k++) {
        char key[256];
        snprintf(key, sizeof key, "%s.%s", arch, SUFFIX[k]);
        int rc = kv_uint(j->in, key, dst[k]);
        if (rc == GGUF_MISSING && k == 0)
            return qk_err_set(j->err, QK_EFORMAT, "%s: %s missing", path, key);
        if (rc < 0)
            return qk_err_set(j->err, QK_EFORMAT, "%s: %s is not a non-negative integer", path,
                              key);
    }
    return QK_OK;
}

static int read_tensors(job *j)
{
    uint64_t n = gguf_n_tensors(j->in);
    j->mt = calloc(n ? n : 1, sizeof *j->mt);
    j->imat = calloc(n ? n : 1, sizeof *j->imat);
    j->imat_zero = calloc(n ? n : 1, sizeof *j->imat_zero);
    if (!j->mt || !j->imat || !j->imat_zero)
        return qk_err_set(j->err, QK_ENOMEM, "out of memory");
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor_info *t = gguf_tensor(j->in, i);
        j->mt[i] = (mx_tensor){t->name, t->n_dims, {t->ne[0], t->ne[1], t->ne[2], t->ne[3]},
                               t->type};
    }
    return QK_OK;
}

/* ---- checks before any output ------------------------------------------------------------- */

static int check_requantize(job *j)
{
    for (size_t k = 0; k < mx_plan_count(j->plan); k++) {
        size_t i = mx_plan_order(j->plan, k);
        const mx_decision *d = mx_plan_get(j->plan, i);
        const q_type_info_t *ti = q_type_info(j->mt[i].type);
        if (d->quantize && ti->is_quantized && !j->p->allow_requantize)
            return qk_err_set(j->err, QK_EUNSUPPORTED,
                              "%s: tensor '%s' is already quantized (%s): requantizing loses "
                              "quality; pass --allow-requantize to do it anyway",
                              j->p->in_path, j->mt[i].name, ti->name);
        if (d->quantize && !q_kernels_get(j->mt[i].type))
            return qk_err_set(j->err, QK_EUNSUPPORTED, "%s: tensor '%s': qkit cannot read type %s",
                              j->p->in_path, j->mt[i].name, ti->name);
    }
    return QK_OK;
}

/* Every entry must name a tensor of this model: anything else means another model's imatrix. */
static int check_imatrix_names(job *j)
{
    for (size_t k = 0; k < imx_count(j->imx); k++) {
        const imx_entry *e = imx_entry_at(j->imx, k);
        if (!gguf_find_tensor(j->in, e->name))
            return qk_err_set(j->err, QK_EFORMAT,
                              "%s: entry '%s' names no tensor of %s: the importance matrix is for "
                              "a different model",
                              j->p->imatrix_path, e->name, j->p->in_path);
    }
    return QK_OK;
}

/* The importance values are weights of squared errors: a negative or non-finite one makes the
 * quantizers' search meaningless (llama.cpp uses them as they are), so it is an error naming the
 * entry. A matrix whose values are all zero (no token reached it, or a broken file) would make
 * every candidate scale equally good and the result garbage (PPL 4.8 → 1e10 with an all-zero
 * imatrix): that matrix is quantized without weights, with a warning. Checked here, where the
 * values are consumed, whatever the file's layout. */
static int check_imatrix_values(job *j, size_t i, const imx_entry *e)
{
    int64_t n_zero = 0;
    for (int64_t m = 0; m < e->n_mat; m++) {
        const float *v = e->values + m * e->n_per_mat;
        int all_zero = 1;
        for (int64_t c = 0; c < e->n_per_mat; c++) {
            if (!(v[c] >= 0) || !isfinite(v[c]))
                return qk_err_set(j->err, QK_ERANGE,
                                  "%s: entry '%s': value %lld%s is %g: importance values must be "
                                  "finite and non-negative",
                                  j->p->imatrix_path, e->name, (long long)(m * e->n_per_mat + c),
                                  e->n_mat > 1 ? " (of an expert)" : "", (double)v[c]);
            all_zero &= v[c] == 0;
        }
        if (!all_zero)
            continue;
        if (!j->imat_zero[i] && !(j->imat_zero[i] = calloc((size_t)e->n_mat, 1)))
            return qk_err_set(j->err, QK_ENOMEM, "out of memory");
        j->imat_zero[i][m] = 1;
        n_zero++;
    }
    if (!n_zero)
        return QK_OK;
    if (n_zero == e->n_mat)
        return warn(j, "%s: importance matrix entry is all zeros: quantized without importance weights",
                    e->name);
    return warn(j, "%s: importance matrix entry has %lld of %lld expert matrices with all-zero values: "
                   "those are quantized without importance weights",
                e->name, (long long)n_zero, (long long)e->n_mat);
}

/* llama-quantize's lookup: the entry must hold ne[0]·ne[2] values; token_embd is exempt (the
 * mismatch there is expected and it is quantized without weights). */
static int match_imatrix(job *j, size_t i)
{
    const mx_tensor *t = &j->mt[i];
    const imx_entry *e = imx_find(j->imx, t->name);
    if (!e) {
        j->r->n_no_imatrix++;
        return warn(j, "%s: no importance matrix entry: quantized without importance weights",
                    t->name);
    }
    int64_t want = t->ne[0] * t->ne[2], have = e->n_per_mat * e->n_mat;
    if (have == want && t->ne[3] == 1) {
        j->imat[i] = e;
        int rc = check_imatrix_values(j, i, e);
        /* experts no calibration token was routed to (GGUF count 0) have weights 1 */
        if (!rc && e->n_unseen)
            rc = warn(j, "%s: %lld of %lld expert matrices saw no token during calibration: "
                         "quantized with uniform importance weights",
                      t->name, (long long)e->n_unseen, (long long)e->n_mat);
        return rc;
    }
    if (!strcmp(t->name, "token_embd.weight")) {
        j->r->n_no_imatrix++;
        return warn(j, "%s: importance matrix entry has %lld values, the tensor needs %lld: "
                       "quantized without importance weights",
                    t->name, (long long)have, (long long)want);
    }
    return qk_err_set(j->err, QK_EFORMAT,
                      "%s: entry '%s' has %lld values but the tensor in %s needs %lld (%lld per row "
                      "x %lld matrices): the importance matrix is for a different model",
                      j->p->imatrix_path, t->name, (long long)have, j->p->in_path, (long long)want,
                      (long long)t->ne[0], (long long)t->ne[2]);
}

/* --keep-split: the output parts hold the same tensors as the input parts (tensors keep file
 * order, and each input part boundary becomes an explicit part break in the writer). */
static int check_split(job *j)
{
    j->use_split = j->p->keep_split && gguf_n_parts(j->in) > 1;
    return QK_OK;
}

static int check_plan(job *j)
{
    int rc = check_split(j);
    if (!rc)
        rc = check_requantize(j);
    if (rc || !j->imx)
        return rc;
    if ((rc = check_imatrix_names(j)))
        return rc;
    for (size_t k = 0; k < mx_plan_count(j->plan) && !rc; k++) {
        size_t i = mx_plan_order(j->plan, k);
        if (mx_plan_get(j->plan, i)->quantize)
            rc = match_imatrix(j, i);
    }
    return rc;
}

/* ---- output setup ------------------------------------------------------------------------- */

/* Keys llama-quantize sets (ggml moves a re-set key to the end, so they are not copied). */
static int is_reset_key(const job *j, const char *key)
{
    if (!strcmp(key, KV_QUANT_VERSION) || !strcmp(key, KV_FILE_TYPE))
        return 1;
    return j->imx && !strncmp(key, "quantize.imatrix.", 17) &&
           (!strcmp(key, KV_IMAT_FILE) || !strcmp(key, KV_IMAT_DATASET) ||
            !strcmp(key, KV_IMAT_ENTRIES) || !strcmp(key, KV_IMAT_CHUNKS));
}

static void set_imatrix_keys(job *j)
{
    char s[KV_STR_MAX + 1];
    snprintf(s, sizeof s, "%s", j->p->imatrix_path);
    gguf_writer_set_str(j->w, KV_IMAT_FILE, s);
    const char *ds = imx_dataset(j->imx, 0);
    if (ds && *ds) {
        snprintf(s, sizeof s, "%s", ds);
        gguf_writer_set_str(j->w, KV_IMAT_DATASET, s);
    }
    gguf_writer_set_i32(j->w, KV_IMAT_ENTRIES, (int32_t)imx_count(j->imx));
    if (imx_chunk_count(j->imx) > 0)
        gguf_writer_set_i32(j->w, KV_IMAT_CHUNKS, (int32_t)imx_chunk_count(j->imx));
}

static void set_metadata(job *j)
{
    for (uint64_t i = 0; i < gguf_n_kv(j->in); i++) {
        const char *key = gguf_kv_key(j->in, i);
        if (!is_reset_key(j, key))
            gguf_writer_set_value(j->w, key, gguf_kv_value(j->in, i));
    }
    gguf_writer_set_u32(j->w, KV_QUANT_VERSION, QNT_VERSION);
    gguf_writer_set_u32(j->w, KV_FILE_TYPE, (uint32_t)j->p->ftype);
    if (j->imx)
        set_imatrix_keys(j);
}

/* The split the options ask for (NULL: one file, or --keep-split's explicit breaks). */
static const gguf_split_opts *split_of(const qz_params *p, gguf_split_opts *o)
{
    *o = (gguf_split_opts){.max_bytes = p->split_max_bytes, .max_tensors = p->split_max_tensors,
                           .n_parts = p->split_parts};
    if (!o->max_bytes && !o->max_tensors && !o->n_parts && p->shard_count && !p->keep_split)
        o->n_parts = p->shard_count;
    return o->max_bytes || o->max_tensors || o->n_parts ? o : NULL;
}

/* The input's fingerprint (every model part and the importance matrix), for split.id. */
static int source_id(job *j, uint64_t *id)
{
    qk_hash h;
    qk_hash_init(&h);
    int rc = QK_OK;
    for (uint32_t i = 0; i < gguf_n_parts(j->in) && !rc; i++)
        rc = qk_file_fingerprint(gguf_part_path(j->in, i), &h, j->err);
    if (!rc && j->p->imatrix_path)
        rc = qk_file_fingerprint(j->p->imatrix_path, &h, j->err);
    *id = qk_hash_final(&h);
    return rc;
}

static int open_output(job *j)
{
    gguf_split_opts so;
    uint64_t sid = 0;
    int rc = source_id(j, &sid);
    if (!rc)
        rc = gguf_writer_open(&j->w, j->p->out_path, split_of(j->p, &so), j->err);
    if (rc)
        return rc;
    gguf_writer_set_source_id(j->w, sid);
    if (j->p->shard_count)
        gguf_writer_set_shard(j->w, j->p->shard_index, j->p->shard_count);
    /* no output part may be an input part or the importance matrix */
    for (uint32_t i = 0; i < gguf_n_parts(j->in); i++)
        gguf_writer_protect(j->w, gguf_part_path(j->in, i));
    if (j->p->imatrix_path)
        gguf_writer_protect(j->w, j->p->imatrix_path);
    set_metadata(j);
    uint32_t part = 0;
    for (size_t k = 0; k < mx_plan_count(j->plan); k++) {
        size_t i = mx_plan_order(j->plan, k);
        const mx_tensor *t = &j->mt[i];
        if (j->use_split && gguf_tensor(j->in, i)->part != part) {
            part = gguf_tensor(j->in, i)->part;
            gguf_writer_next_part(j->w);
        }
        /* ggml writes ggml_n_dims(): trailing dimensions of 1 are dropped */
        gguf_writer_add_tensor(j->w, t->name, mx_plan_get(j->plan, i)->type, mx_ggml_n_dims(t->ne),
                               t->ne);
    }
    rc = gguf_writer_begin_data(j->w);
    if (rc) /* the writer's message names the path and the cause */
        qk_err_set(j->err, rc, "%s", gguf_writer_error(j->w));
    return rc;
}

/* ---- per-tensor work ---------------------------------------------------------------------- */

/* Tensors stream through in pieces of whole rows. A piece never spans two expert matrices (the
 * slices ne[0] x ne[1] of a 3-D tensor), since each has its own importance weights; besides the
 * mapped input, memory holds one piece as f32 and quantized, whatever the tensor's size. */

static int64_t n_rows_of(const mx_tensor *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

/* Rows per piece: chunk_values of them rounded down to whole rows, at least one. */
static int64_t rows_per_piece(const job *j, int64_t ne0)
{
    int64_t r = j->chunk_values / ne0;
    return r > 0 ? r : 1;
}

/* Rows in the piece that starts at row r0: at most step, and not past the end of the matrix of
 * ne1 rows holding r0. */
static int64_t piece_rows(int64_t r0, int64_t nrows, int64_t ne1, int64_t step)
{
    int64_t end = (r0 / ne1 + 1) * ne1;
    if (end > nrows)
        end = nrows;
    return end - r0 < step ? end - r0 : step;
}

/* A piece of src_bytes source bytes is done: drop its pages from the input mapping (gguf_open()
 * maps the file read-only, so they are only read again, from the file, if touched again) and
 * report progress inside a tensor of several pieces (done is the tensor's index). */
static void piece_done(job *j, const void *src, size_t src_bytes, int last)
{
    mapping_drop(src, src_bytes);
    j->bytes_done += src_bytes;
    if (j->p->progress && !last)
        j->p->progress(j->p->user, j->tensor_index, mx_plan_count(j->plan), j->bytes_done);
}

/* The first row holding a non-finite float of nrows rows of an f32/f16/bf16 tensor (raw bits),
 * or -1. */
static int64_t first_bad_row(int type, const void *data, int64_t nrows, int64_t ne0, int nt)
{
    int64_t bad = INT64_MAX;
#pragma omp parallel for schedule(static) num_threads(nt) reduction(min : bad)
    for (int64_t r = 0; r < nrows; r++) {
        for (int64_t c = 0; c < ne0 && r < bad; c++) {
            int64_t k = r * ne0 + c;
            uint32_t u32;
            uint16_t u16;
            int nonfinite;
            if (type == Q_TYPE_F32) {
                memcpy(&u32, (const char *)data + k * 4, 4);
                nonfinite = (u32 & 0x7f800000u) == 0x7f800000u;
            } else {
                memcpy(&u16, (const char *)data + k * 2, 2);
                nonfinite = type == Q_TYPE_F16 ? (u16 & 0x7c00u) == 0x7c00u
                                               : (u16 & 0x7f80u) == 0x7f80u;
            }
            if (nonfinite)
                bad = r < bad ? r : bad;
        }
    }
    return bad == INT64_MAX ? -1 : bad;
}

int64_t qz_first_nonfinite_row(int type, const void *data, int64_t ne0, int64_t nrows, int n_threads)
{
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    if (type == Q_TYPE_F32 || type == Q_TYPE_F16 || type == Q_TYPE_BF16)
        return first_bad_row(type, data, nrows, ne0, nt);
    const q_kernels *k = q_kernels_get(type);
    float *buf = k ? malloc((size_t)nt * (size_t)ne0 * sizeof *buf) : NULL;
    if (!buf)
        return -1;
    size_t rb = q_row_size(type, ne0);
    int64_t bad = INT64_MAX;
#pragma omp parallel for schedule(static) num_threads(nt) reduction(min : bad)
    for (int64_t r = 0; r < nrows; r++) {
        if (r >= bad)
            continue;
        float *y = buf + (size_t)omp_get_thread_num() * (size_t)ne0;
        k->dequantize((const char *)data + (size_t)r * rb, y, ne0);
        for (int64_t c = 0; c < ne0; c++)
            if (!isfinite(y[c])) {
                bad = r < bad ? r : bad;
                break;
            }
    }
    free(buf);
    return bad == INT64_MAX ? -1 : bad;
}

/* Rows [r0, r0 + nrows) of a float tensor, data pointing at row r0, hold only finite values. */
static int check_finite(job *j, const mx_tensor *t, const void *data, int64_t r0, int64_t nrows)
{
    if (t->type != Q_TYPE_F32 && t->type != Q_TYPE_F16 && t->type != Q_TYPE_BF16)
        return QK_OK;
    int64_t bad = first_bad_row(t->type, data, nrows, t->ne[0], j->n_threads);
    if (bad < 0)
        return QK_OK;
    return qk_err_set(j->err, QK_ERANGE,
                      "%s: tensor '%s': row %lld holds a non-finite value (NaN or Inf)",
                      j->p->in_path, t->name, (long long)(r0 + bad));
}

/* A tensor that keeps its type: checked for non-finite floats (quantized tensors are checked by
 * q_quantize_rows) and written piece by piece from the mapping. */
static int copy_tensor(job *j, size_t i, const gguf_tensor_info *ti)
{
    const mx_tensor *t = &j->mt[i];
    int64_t nrows = n_rows_of(t), step = rows_per_piece(j, t->ne[0]);
    size_t rb = q_row_size(t->type, t->ne[0]);
    int rc = gguf_writer_begin_tensor(j->w, t->name, (size_t)ti->nbytes);
    for (int64_t r0 = 0, n; r0 < nrows && !rc; r0 += n) {
        n = nrows - r0 < step ? nrows - r0 : step;
        const char *src = (const char *)ti->data + (size_t)r0 * rb;
        rc = check_finite(j, t, src, r0, n);
        if (!rc)
            rc = gguf_writer_write(j->w, src, (size_t)n * rb);
        if (!rc)
            piece_done(j, src, (size_t)n * rb, r0 + n == nrows);
    }
    return rc;
}

/* nrows source rows as f32 in j->f32 (or borrowed when they already are aligned f32). */
static int to_f32(job *j, const mx_tensor *t, const void *src, int64_t nrows, const float **out)
{
    int64_t ne0 = t->ne[0];
    if (t->type == Q_TYPE_F32 && ((uintptr_t)src & 3) == 0) {
        *out = src;
        return QK_OK;
    }
    int rc = reserve(j, (void **)&j->f32, &j->f32_cap, (size_t)(nrows * ne0) * sizeof(float));
    if (rc)
        return rc;
    const q_kernels *k = q_kernels_get(t->type);
    size_t rb = q_row_size(t->type, ne0);
#pragma omp parallel for schedule(static) num_threads(j->n_threads)
    for (int64_t r = 0; r < nrows; r++)
        k->dequantize((const char *)src + r * rb, j->f32 + r * ne0, ne0);
    *out = j->f32;
    return QK_OK;
}

/* Quantizes nrows rows x (tensor rows r0...) with the weights w of their matrix into j->qbuf. */
static int quantize_piece(job *j, const mx_tensor *t, int type, const float *x, int64_t r0,
                          int64_t nrows, const float *w)
{
    int64_t bad = -1;
    int rc = q_quantize_rows(type, x, j->qbuf, nrows, t->ne[0], w, j->n_threads, &bad, j->err);
    if (rc == QK_ERANGE && bad >= 0)
        return qk_err_set(j->err, rc, "%s: tensor '%s': row %lld holds a non-finite value "
                          "(NaN or Inf)", j->p->in_path, t->name, (long long)(r0 + bad));
    if (rc) {
        qk_err_prefix(j->err, t->name);
        qk_err_prefix(j->err, j->p->in_path);
    }
    return rc;
}

/* Adds the piece's error terms to *e and *s (Σw(x−q)², Σw·x², w the matrix's importance weights
 * or 1) for the relative RMSE of the tensor. Per-row sums are computed in parallel, then added
 * in row order: the same result for any thread count and any piece size. */
static int measure_piece(job *j, const mx_tensor *t, int type, const float *x, int64_t r0,
                         int64_t nrows, const float *w, double *e, double *s)
{
    int64_t ne0 = t->ne[0];
    int nt = j->n_threads;
    int rc = reserve(j, (void **)&j->rowbuf, &j->row_cap, (size_t)(nt * ne0) * sizeof(float));
    if (!rc)
        rc = reserve(j, (void **)&j->row_err, &j->err_cap, (size_t)nrows * 2 * sizeof(double));
    if (rc)
        return rc;
    const q_kernels *k = q_kernels_get(type);
    size_t rb = q_row_size(type, ne0);
    int64_t bad = INT64_MAX;
#pragma omp parallel for schedule(static) num_threads(nt) reduction(min : bad)
    for (int64_t r = 0; r < nrows; r++) {
        float *y = j->rowbuf + (size_t)omp_get_thread_num() * (size_t)ne0;
        const float *xr = x + r * ne0;
        k->dequantize((const char *)j->qbuf + r * rb, y, ne0);
        double er = 0, sr = 0;
        for (int64_t c = 0; c < ne0; c++) {
            double wc = w ? w[c] : 1.0, d = (double)xr[c] - (double)y[c];
            er += wc * d * d;
            sr += wc * (double)xr[c] * (double)xr[c];
        }
        if (!isfinite(er))
            bad = r < bad ? r : bad;
        j->row_err[2 * r] = er;
        j->row_err[2 * r + 1] = sr;
    }
    if (bad != INT64_MAX)
        return qk_err_set(j->err, QK_EINTERNAL, "tensor '%s': row %lld quantized to non-finite "
                          "values", t->name, (long long)(r0 + bad));
    for (int64_t r = 0; r < nrows; r++)
        *e += j->row_err[2 * r], *s += j->row_err[2 * r + 1];
    return QK_OK;
}

/* Dequantize → quantize → measure → write, piece by piece. */
static int quantize_tensor(job *j, size_t i, const gguf_tensor_info *ti, qz_tensor_report *tr)
{
    const mx_tensor *t = &j->mt[i];
    int64_t ne0 = t->ne[0], ne1 = t->ne[1], nrows = n_rows_of(t);
    int64_t step = rows_per_piece(j, ne0);
    size_t src_rb = q_row_size(t->type, ne0), rb = q_row_size(tr->type, ne0);
    const float *w = j->imat[i] ? j->imat[i]->values : NULL;
    double e = 0, s = 0;
    int rc = gguf_writer_begin_tensor(j->w, t->name, (size_t)tr->bytes);
    for (int64_t r0 = 0, n; r0 < nrows && !rc; r0 += n) {
        n = piece_rows(r0, nrows, ne1, step);
        const char *src = (const char *)ti->data + (size_t)r0 * src_rb;
        /* each matrix has its own weights; an all-zero one has none */
        const float *wm = w && !(j->imat_zero[i] && j->imat_zero[i][r0 / ne1]) ? w + (r0 / ne1) * ne0 : NULL;
        const float *x;
        rc = to_f32(j, t, src, n, &x);
        if (!rc)
            rc = reserve(j, &j->qbuf, &j->q_cap, (size_t)n * rb);
        if (!rc)
            rc = quantize_piece(j, t, tr->type, x, r0, n, wm);
        if (!rc)
            rc = measure_piece(j, t, tr->type, x, r0, n, wm, &e, &s);
        if (!rc)
            rc = gguf_writer_write(j->w, j->qbuf, (size_t)n * rb);
        if (!rc)
            piece_done(j, src, (size_t)n * src_rb, r0 + n == nrows);
    }
    tr->rel_rmse = s > 0 ? sqrt(e / s) : (e > 0 ? INFINITY : NAN);
    return rc;
}

static int process_tensor(job *j, size_t k)
{
    size_t i = mx_plan_order(j->plan, k);
    const mx_tensor *t = &j->mt[i];
    const gguf_tensor_info *ti = gguf_tensor(j->in, i);
    const mx_decision *d = mx_plan_get(j->plan, i);
    qz_tensor_report *tr = &j->r->t[k];
    *tr = (qz_tensor_report){.n_dims = t->n_dims, .src_type = t->type, .type = d->type,
                             .src_bytes = ti->nbytes, .quantized = d->quantize,
                             .fallback = d->fallback, .imatrix = QZ_IMAT_NA};
    memcpy(tr->ne, t->ne, sizeof tr->ne);
    if (!(tr->name = strdup(t->name)))
        return qk_err_set(j->err, QK_ENOMEM, "out of memory");
    tr->bytes = q_row_size(d->type, t->ne[0]) * (uint64_t)n_rows_of(t);
    if (j->tg_of && j->tg_of[i] >= 0) {
        const tg_choice *c = &j->tg.t[j->tg_of[i]];
        tr->targeted = 1, tr->sens = c->sens, tr->pred_kld = c->pred;
    }
    if (d->quantize && j->imx)
        tr->imatrix = j->imat[i] ? QZ_IMAT_USED : QZ_IMAT_NONE;
    j->tensor_index = k;
    if (!gguf_writer_writes(j->w, t->name)) { /* another shard's part */
        tr->other_shard = 1;
        tr->rel_rmse = NAN;
        return QK_OK;
    }
    if (!d->quantize)
        return copy_tensor(j, i, ti);
    j->r->n_quantized++;
    return quantize_tensor(j, i, ti, tr);
}

static int write_all(job *j)
{
    size_t n = mx_plan_count(j->plan);
    for (size_t k = 0; k < n; k++) {
        int rc = process_tensor(j, k);
        if (rc) {
            const char *we = gguf_writer_error(j->w);
            if (*we)
                qk_err_set(j->err, rc, "%s", we);
            return rc;
        }
        if (j->p->progress)
            j->p->progress(j->p->user, k + 1, n, j->bytes_done);
    }
    return QK_OK;
}

/* ---- driver ------------------------------------------------------------------------------- */

static int load_inputs(job *j)
{
    const qz_params *p = j->p;
    int rc = gguf_open(&j->in, p->in_path, j->err);
    if (!rc)
        rc = read_model(j);
    if (!rc)
        rc = read_tensors(j);
    if (!rc && p->imatrix_path)
        rc = imx_load(&j->imx, p->imatrix_path, j->err);
    return rc;
}

/* Before any work or warning: no output path may be an input (a part of the model or the
 * importance matrix). The writer checks the final part paths again (gguf_writer_protect). */
static int check_output_paths(job *j)
{
    const qz_params *p = j->p;
    gguf_split_opts so;
    const gguf_split_opts *split = split_of(p, &so);
    uint32_t n_in = gguf_n_parts(j->in), n_out = p->keep_split && n_in > 1 ? n_in : 1;
    if (split && split->n_parts)
        n_out = split->n_parts; /* size limits: the writer checks the parts it lays out */
    size_t len = strlen(p->out_path);
    char *prefix = strndup(p->out_path, len > 5 && !strcmp(p->out_path + len - 5, ".gguf") ? len - 5 : len);
    char *out = malloc(len + 32);
    int rc = prefix && out ? QK_OK : qk_err_set(j->err, QK_ENOMEM, "out of memory");
    for (uint32_t o = 0; o < n_out && !rc; o++) {
        if (n_out == 1)
            snprintf(out, len + 32, "%s", p->out_path);
        else
            gguf_split_path(out, len + 32, prefix, o, n_out);
        for (uint32_t i = 0; i < n_in && !rc; i++)
            rc = qk_output_check(out, gguf_part_path(j->in, i), j->err);
        if (!rc && p->imatrix_path)
            rc = qk_output_check(out, p->imatrix_path, j->err);
    }
    free(prefix);
    free(out);
    return rc;
}

static int make_plan(job *j)
{
    const mx_mix *mix = mx_mix_from_ftype(j->p->ftype);
    if (!mix)
        return qk_err_set(j->err, QK_EUNSUPPORTED, "file type %d is not a mix qkit knows",
                          j->p->ftype);
    if (mix->needs_imatrix && !j->imx)
        return qk_err_set(j->err, QK_EFORMAT, "%s needs an importance matrix (--imatrix FILE): "
                          "without one the result is garbage", mix->name);
    mx_options o = j->p->mix;
    o.has_imatrix = j->imx != NULL;
    o.keep_order = j->p->keep_split;
    o.forced_types = j->forced;
    int rc = mx_plan_create(&j->plan, &j->model, j->p->ftype, &o, j->mt, gguf_n_tensors(j->in),
                            j->err);
    if (rc)
        return rc;
    for (size_t k = 0; k < mx_plan_count(j->plan) && !rc; k++) {
        const mx_decision *d = mx_plan_get(j->plan, mx_plan_order(j->plan, k));
        if (d->warning[0])
            rc = warn(j, "%s", d->warning);
    }
    return rc;
}

static int report_alloc(job *j)
{
    qz_report *r = j->r = calloc(1, sizeof *r);
    size_t n = gguf_n_tensors(j->in);
    if (!r || !(r->t = calloc(n ? n : 1, sizeof *r->t)))
        return qk_err_set(j->err, QK_ENOMEM, "out of memory");
    r->n = n;
    const mx_mix *mix = mx_mix_from_ftype(j->p->ftype);
    r->mix_name = mix ? mix->name : "?";
    r->ftype = j->p->ftype;
    r->n_threads = j->n_threads;
    r->n_parts_in = gguf_n_parts(j->in);
    return QK_OK;
}

static void report_totals(job *j, double t0)
{
    qz_report *r = j->r;
    for (size_t k = 0; k < r->n; k++) {
        const qz_tensor_report *t = &r->t[k];
        r->n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        r->src_bytes += t->src_bytes;
        r->out_bytes += t->bytes;
    }
    r->bpw = r->n_params ? (double)r->out_bytes * 8.0 / (double)r->n_params : 0;
    r->seconds = now_seconds() - t0;
    r->mb_per_s = r->seconds > 0 ? (double)r->src_bytes / 1e6 / r->seconds : 0;
    r->n_fallback = mx_plan_n_fallback(j->plan);
    r->n_checked = mx_plan_n_checked(j->plan);
    if (j->imx) {
        r->imatrix_format = imx_format_of(j->imx);
        r->imatrix_entries = imx_count(j->imx);
        r->imatrix_chunks = imx_chunk_count(j->imx);
    }
}

/* ---- size budget ---------------------------------------------------------------------------- */

static uint64_t padded(uint64_t n, uint32_t a) { return (n + a - 1) / a * a; }

/* The bytes before the tensor data, from the output's own declarations (types do not matter). */
static int header_bytes(job *j, uint64_t *out)
{
    int rc = gguf_writer_open(&j->w, j->p->out_path, NULL, j->err);
    if (rc)
        return rc;
    set_metadata(j);
    for (size_t k = 0; k < mx_plan_count(j->plan); k++) {
        size_t i = mx_plan_order(j->plan, k);
        gguf_writer_add_tensor(j->w, j->mt[i].name, mx_plan_get(j->plan, i)->type,
                               mx_ggml_n_dims(j->mt[i].ne), j->mt[i].ne);
    }
    *out = gguf_writer_header_size(j->w);
    if (!*out)
        rc = qk_err_set(j->err, QK_EINTERNAL, "%s: cannot size the header: %s", j->p->out_path,
                        gguf_writer_error(j->w));
    gguf_writer_abort(j->w);
    j->w = NULL;
    return rc;
}

/* llama.cpp's file type naming the type that holds most weights. */
static int dominant_ftype(const job *j, const tg_result *r, int fallback)
{
    static const struct { int type, ftype; } MAP[] = {
        {Q_TYPE_Q2_K, MX_FTYPE_Q2_K}, {Q_TYPE_Q3_K, MX_FTYPE_Q3_K_M}, {Q_TYPE_Q4_K, MX_FTYPE_Q4_K_M},
        {Q_TYPE_Q5_K, MX_FTYPE_Q5_K_M}, {Q_TYPE_Q6_K, MX_FTYPE_Q6_K}, {Q_TYPE_Q8_0, MX_FTYPE_Q8_0},
        {Q_TYPE_IQ4_XS, MX_FTYPE_IQ4_XS}, {Q_TYPE_IQ4_NL, MX_FTYPE_IQ4_NL},
        {Q_TYPE_Q5_0, MX_FTYPE_Q5_0}, {Q_TYPE_Q4_0, MX_FTYPE_Q4_0}, {Q_TYPE_F16, MX_FTYPE_F16},
    };
    double w[sizeof MAP / sizeof MAP[0]] = {0};
    for (size_t k = 0; k < r->n; k++) {
        const mx_tensor *t = &j->mt[r->t[k].index];
        for (size_t m = 0; m < sizeof MAP / sizeof MAP[0]; m++)
            if (MAP[m].type == r->t[k].type)
                w[m] += (double)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
    }
    size_t best = 0;
    for (size_t m = 1; m < sizeof MAP / sizeof MAP[0]; m++)
        if (w[m] > w[best])
            best = m;
    return w[best] > 0 ? MAP[best].ftype : fallback;
}

static void tg_progress(void *user, const char *stage, size_t done, size_t total)
{
    job *j = user;
    (void)stage;
    if (j->p->progress)
        j->p->progress(j->p->user, done, total, 0);
}

/* Chooses every quantizable tensor's type for the budget and plans again with those types. */
static int apply_target(job *j, qz_params *eff)
{
    const qz_params *p = j->p;
    size_t n = gguf_n_tensors(j->in), m = 0;
    tg_tensor *tt = calloc(n ? n : 1, sizeof *tt);
    j->forced = malloc((n ? n : 1) * sizeof *j->forced);
    if (!tt || !j->forced) {
        free(tt);
        return qk_err_set(j->err, QK_ENOMEM, "out of memory");
    }
    mx_options o = p->mix;
    o.has_imatrix = j->imx != NULL;
    const uint32_t align = gguf_alignment(j->in);
    uint64_t fixed = 0, n_params = 0;
    for (size_t i = 0; i < n; i++) {
        const mx_tensor *t = &j->mt[i];
        j->forced[i] = -1;
        n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        if (!mx_is_quantizable(t, &o)) {
            fixed += padded(gguf_tensor(j->in, i)->nbytes, align);
            continue;
        }
        tt[m++] = (tg_tensor){i, t->name, {t->ne[0], t->ne[1], t->ne[2], t->ne[3]}, t->type,
                              gguf_tensor(j->in, i)->data, j->imat[i] ? j->imat[i]->values : NULL};
    }
    uint64_t header = 0, limit;
    int rc = header_bytes(j, &header);
    if (p->target_bytes)
        limit = p->target_bytes;
    else
        limit = (uint64_t)(p->target_bpw * (double)n_params / 8.0) + header; /* data bits */
    const uint64_t over = header + fixed;
    int types[TG_MAX_TYPES];
    size_t nt = p->target_types ? p->n_target_types : tg_default_types(types);
    tg_params tp = {.budget = limit > over ? limit - over : 0, .alignment = align,
                    .types = p->target_types ? p->target_types : types, .n_types = nt,
                    .model_path = p->in_path, .calib_path = p->calib_path,
                    .n_ctx = p->calib_ctx > 0 ? p->calib_ctx : 256,
                    .n_chunks = p->calib_chunks > 0 ? p->calib_chunks : 8, .probe_type = -1,
                    .cache_path = p->sens_cache, .imatrix_path = p->imatrix_path,
                    .n_threads = j->n_threads, .progress = tg_progress, .user = j};
    if (!rc)
        rc = tg_allocate(&tp, tt, m, &j->tg, j->err);
    if (rc == QK_ERANGE && j->tg.min_bytes)
        rc = qk_err_set(j->err, QK_ERANGE, "%s: the budget of %llu bytes is below the smallest "
                        "possible file: %llu bytes (%.3f MiB; metadata %llu, unquantized tensors "
                        "%llu, the rest at its smallest types %llu)", p->in_path,
                        (unsigned long long)limit, (unsigned long long)(over + j->tg.min_bytes),
                        (double)(over + j->tg.min_bytes) / 1048576.0, (unsigned long long)header,
                        (unsigned long long)fixed, (unsigned long long)j->tg.min_bytes);
    free(tt);
    if (rc)
        return rc;
    if (!(j->tg_of = malloc((n ? n : 1) * sizeof *j->tg_of)))
        return qk_err_set(j->err, QK_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        j->tg_of[i] = -1;
    for (size_t k = 0; k < j->tg.n; k++) {
        j->forced[j->tg.t[k].index] = j->tg.t[k].type;
        j->tg_of[j->tg.t[k].index] = (long)k;
    }
    eff->ftype = dominant_ftype(j, &j->tg, p->ftype);
    j->r->target = 1;
    j->r->ftype = eff->ftype;
    j->r->mix_name = "size budget";
    j->r->target_limit = p->target_bytes ? limit : limit - header;
    j->r->pred_kld = j->tg.pred_kld;
    j->r->engine_passes = j->tg.engine_passes;
    j->r->cache_hit = j->tg.cache_hit;
    j->r->seconds_sens = j->tg.seconds_sens;
    j->r->seconds_errors = j->tg.seconds_errors;
    /* plan again, now with the allocation */
    mx_plan_free(j->plan);
    j->plan = NULL;
    return QK_OK;
}

static void job_free(job *j)
{
    gguf_writer_abort(j->w);
    mx_plan_free(j->plan);
    imx_free(j->imx);
    for (uint64_t i = 0; j->imat_zero && i < gguf_n_tensors(j->in); i++)
        free(j->imat_zero[i]);
    free(j->imat_zero);
    gguf_close(j->in);
    free(j->mt);
    free(j->imat);
    free(j->f32);
    free(j->rowbuf);
    free(j->qbuf);
    free(j->row_err);
    free(j->forced);
    free(j->tg_of);
    tg_result_free(&j->tg);
    qz_report_free(j->r);
}

int qz_plan_types(const char *in_path, int ftype, int has_imatrix, char ***names, int **types,
                  size_t *n, qk_err *err)
{
    qz_params p;
    qz_params_init(&p);
    p.in_path = in_path;
    p.out_path = "";
    p.ftype = ftype;
    p.mix.has_imatrix = has_imatrix;
    job j = {.p = &p, .err = err, .n_threads = 1, .mute = 1};
    *names = NULL;
    *types = NULL;
    *n = 0;
    int rc = gguf_open(&j.in, in_path, err);
    if (!rc)
        rc = read_model(&j);
    if (!rc)
        rc = read_tensors(&j);
    if (!rc)
        rc = report_alloc(&j);
    if (!rc) {
        const mx_mix *mix = mx_mix_from_ftype(ftype);
        mx_options o = p.mix;
        rc = mix ? mx_plan_create(&j.plan, &j.model, ftype, &o, j.mt, gguf_n_tensors(j.in), err)
                 : qk_err_set(err, QK_EUNSUPPORTED, "file type %d is not a mix qkit knows", ftype);
    }
    size_t cnt = rc ? 0 : mx_plan_count(j.plan);
    if (!rc && (!(*names = calloc(cnt ? cnt : 1, sizeof **names)) ||
                !(*types = calloc(cnt ? cnt : 1, sizeof **types))))
        rc = qk_err_set(err, QK_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < cnt; i++) {
        const mx_decision *d = mx_plan_get(j.plan, i);
        (*types)[i] = d->quantize ? d->type : -1;
        if (!((*names)[i] = strdup(j.mt[i].name)))
            rc = qk_err_set(err, QK_ENOMEM, "out of memory");
        *n = i + 1;
    }
    job_free(&j);
    return rc;
}

int qz_quantize(const qz_params *p, qz_report **report, int *output_failed, qk_err *err)
{
    double t0 = now_seconds();
    job j = {.p = p, .err = err, .n_threads = p->n_threads > 0 ? p->n_threads : omp_get_max_threads(),
             .chunk_values = p->chunk_values > 0 ? p->chunk_values : QZ_CHUNK_VALUES};
    int out_failed = 0;
    if (report)
        *report = NULL;
    int rc = load_inputs(&j);
    if (!rc)
        rc = check_output_paths(&j);
    if (!rc)
        rc = report_alloc(&j);
    qz_params eff = *p; /* a target may change the file type written */
    const int target = p->target_bytes > 0 || p->target_bpw > 0;
    if (target)
        j.p = &eff, j.mute = 1; /* the preliminary plan only finds the imatrix entries */
    if (!rc)
        rc = make_plan(&j);
    if (!rc)
        rc = check_plan(&j);
    if (!rc && target) {
        j.r->n_no_imatrix = 0;
        rc = apply_target(&j, &eff);
        j.mute = 0;
        if (!rc)
            rc = make_plan(&j);
        if (!rc)
            rc = check_plan(&j);
    }
    if (!rc) {
        rc = open_output(&j);
        /* an output naming an input, or a shard the split does not have, is bad usage */
        out_failed = rc != QK_OK && rc != QK_EALIAS && rc != QK_ERANGE;
    }
    if (!rc)
        rc = write_all(&j);
    if (!rc) {
        j.r->n_parts_out = gguf_writer_n_parts(j.w);
        j.r->shard_index = p->shard_index;
        j.r->shard_count = p->shard_count;
        for (uint32_t k = 0; k < j.r->n_parts_out; k++)
            j.r->n_parts_written += gguf_writer_writes_part(j.w, k);
        const char *sid = gguf_writer_split_id(j.w);
        snprintf(j.r->split_id, sizeof j.r->split_id, "%s", sid ? sid : "");
        gguf_writer *w = j.w;
        j.w = NULL;
        rc = gguf_writer_commit(w, err);
        out_failed = rc != QK_OK;
    } else if (j.w && *gguf_writer_error(j.w) && rc != QK_EALIAS && rc != QK_ERANGE) {
        out_failed = 1;
    }
    if (!rc) {
        report_totals(&j, t0);
        if (report)
            *report = j.r, j.r = NULL;
    }
    if (output_failed)
        *output_failed = rc ? out_failed : 0;
    job_free(&j);
    return rc;
}
