/* target.c — per-tensor types for a size budget; see target.h. */
#include "target.h"

#include <cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../calib/perplexity.h"
#include "../formats/file.h"
#include "../formats/hash.h"
#include "../formats/outfile.h"
#include "../quant/quant.h"
#include "../quant/types.h"
#include "eval_model.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t tg_default_types(int *types)
{
    static const int DEF[] = {Q_TYPE_Q2_K, Q_TYPE_Q3_K, Q_TYPE_Q4_K, Q_TYPE_Q5_K, Q_TYPE_Q6_K,
                              Q_TYPE_IQ4_XS, Q_TYPE_IQ4_NL, Q_TYPE_Q5_0, Q_TYPE_Q8_0, Q_TYPE_F16};
    memcpy(types, DEF, sizeof DEF);
    return sizeof DEF / sizeof DEF[0];
}

static uint64_t pad(uint64_t n, uint32_t a) { return (n + a - 1) / a * a; }
static int64_t n_rows(const tg_tensor *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

/* type can hold rows of ne0 values and qkit quantizes to it */
static int fits(int type, int64_t ne0)
{
    const q_type_info_t *ti = q_type_info(type);
    const q_kernels *k = q_kernels_get(type);
    return ti && k && k->quantize && ne0 % ti->blck_size == 0;
}

typedef struct {
    const tg_params *p;
    const tg_tensor *t;
    size_t n;
    int n_types;
    double *err;      /* [n][n_types], NAN: the type does not fit */
    double *probe;    /* [n] probe KLD, NAN: not measured */
    int *probe_type;  /* [n] */
    qk_err *err_out;
} state;

static double *err_at(state *s, size_t i, int k) { return &s->err[i * (size_t)s->n_types + (size_t)k]; }

/* ---- quantization errors (no engine) ------------------------------------------------------- */

/* Quantizes rows x [nrows][ne0] (all of matrix m's weights w or NULL) to type and adds
 * Σw(x−q)² and Σw·x² to e and s. */
static int measure(int type, const float *x, int64_t nrows, int64_t ne0, const float *w, int nt,
                   void *qbuf, float *deq, double *e, double *s, qk_err *err)
{
    int rc = q_quantize_rows(type, x, qbuf, nrows, ne0, w, nt, NULL, err);
    if (!rc)
        rc = q_dequantize_rows(type, qbuf, deq, nrows, ne0, err);
    for (int64_t r = 0; !rc && r < nrows; r++)
        for (int64_t c = 0; c < ne0; c++) {
            const double wc = w ? w[c] : 1.0, xv = x[r * ne0 + c], d = xv - deq[r * ne0 + c];
            *e += wc * d * d;
            *s += wc * xv * xv;
        }
    return rc;
}

/* The sampled rows of tensor t as f32 into x, with the matrix each belongs to. */
static int64_t sample_rows(const tg_tensor *t, float *x, int64_t *mat, qk_err *err, int *rc)
{
    const int64_t nr = n_rows(t), ne0 = t->ne[0];
    const int64_t ns = nr < TG_SAMPLE_ROWS ? nr : TG_SAMPLE_ROWS;
    const size_t rb = q_row_size(t->src_type, ne0);
    *rc = QK_OK;
    for (int64_t k = 0; k < ns && !*rc; k++) {
        const int64_t r = k * nr / ns;
        mat[k] = r / t->ne[1];
        *rc = q_dequantize_rows(t->src_type, (const char *)t->data + (size_t)r * rb, x + k * ne0, 1,
                                ne0, err);
    }
    return ns;
}

static int tensor_errors(state *s, size_t i)
{
    const tg_tensor *t = &s->t[i];
    const int64_t ne0 = t->ne[0];
    float *x = malloc((size_t)TG_SAMPLE_ROWS * (size_t)ne0 * sizeof *x);
    float *deq = malloc((size_t)TG_SAMPLE_ROWS * (size_t)ne0 * sizeof *deq);
    void *q = malloc((size_t)TG_SAMPLE_ROWS * (size_t)ne0 * 4 + 1024);
    int64_t mat[TG_SAMPLE_ROWS];
    int rc = x && deq && q ? QK_OK : qk_err_set(s->err_out, QK_ENOMEM, "out of memory");
    int64_t ns = rc ? 0 : sample_rows(t, x, mat, s->err_out, &rc);
    for (int k = 0; k < s->n_types && !rc; k++) {
        const int type = s->p->types[k];
        if (!isnan(*err_at(s, i, k)) || !fits(type, ne0))
            continue;
        double e = 0, sum = 0;
        for (int64_t a = 0, b; a < ns && !rc; a = b) { /* runs of rows of one matrix */
            for (b = a + 1; b < ns && mat[b] == mat[a]; b++)
                ;
            const float *w = t->imat ? t->imat + mat[a] * ne0 : NULL;
            rc = measure(type, x + a * ne0, b - a, ne0, w, s->p->n_threads, q, deq, &e, &sum,
                         s->err_out);
        }
        *err_at(s, i, k) = sum > 0 ? e / sum : 0.0;
    }
    if (rc)
        qk_err_prefix(s->err_out, t->name);
    free(x);
    free(deq);
    free(q);
    return rc;
}

/* ---- sensitivities (engine) ---------------------------------------------------------------- */

static int pick_probe(const state *s, const tg_tensor *t)
{
    if (s->p->probe_type >= 0 && fits(s->p->probe_type, t->ne[0]))
        return s->p->probe_type;
    if (fits(Q_TYPE_Q3_K, t->ne[0]))
        return Q_TYPE_Q3_K;
    int best = -1;
    for (int k = 0; k < s->n_types; k++) {
        const int type = s->p->types[k];
        if (fits(type, t->ne[0]) &&
            (best < 0 || q_row_size(type, t->ne[0]) < q_row_size(best, t->ne[0])))
            best = type;
    }
    return best;
}

static int type_slot(const state *s, int type)
{
    for (int k = 0; k < s->n_types; k++)
        if (s->p->types[k] == type)
            return k;
    return -1;
}

/* The whole tensor quantized to type, each matrix with its own weights. */
static int quantize_whole(const tg_tensor *t, int type, int nt, void **out, qk_err *err)
{
    const int64_t ne0 = t->ne[0], ne1 = t->ne[1], n_mat = t->ne[2] * t->ne[3];
    const size_t rb = q_row_size(type, ne0), srb = q_row_size(t->src_type, ne0);
    char *q = malloc((size_t)(ne1 * n_mat) * rb);
    float *x = malloc((size_t)(ne1 * ne0) * sizeof *x);
    int rc = q && x ? QK_OK : qk_err_set(err, QK_ENOMEM, "out of memory quantizing '%s'", t->name);
    for (int64_t m = 0; m < n_mat && !rc; m++) {
        rc = q_dequantize_rows(t->src_type, (const char *)t->data + (size_t)(m * ne1) * srb, x, ne1,
                               ne0, err);
        if (!rc)
            rc = q_quantize_rows(type, x, q + (size_t)(m * ne1) * rb, ne1, ne0,
                                 t->imat ? t->imat + m * ne0 : NULL, nt, NULL, err);
    }
    free(x);
    if (rc) {
        free(q);
        q = NULL;
    }
    *out = q;
    return rc;
}

static int tokenize_calib(cv_eval_model *em, const tg_params *p, tok_ids *ids, eng_ppl_opts *o,
                          qk_err *err)
{
    *o = (eng_ppl_opts){p->n_ctx, p->n_chunks,
                        tok_vocab_add_bos(em->vocab) ? em->vocab->special[TOK_BOS] : -1};
    return eng_tokenize_text_file(em->vocab, p->calib_path, ids, err);
}

/* A measured KLD to 3 significant digits: the engine's figures agree across instruction sets
 * to about 1e-4 relative, so the rounded value (and the allocation) does not depend on the ISA
 * except at a rounding boundary; the cache keeps it exactly. */
static double round_sig(double v)
{
    if (!(v > 0) || !isfinite(v))
        return v > 0 ? v : 0.0;
    const double e = floor(log10(v)) - 2;
    return round(v / pow(10, e)) * pow(10, e);
}

/* The first block a tensor's change affects: blk.N → N, output.weight → the head only, anything
 * else (the token embeddings) → everything. */
static int first_block(const char *name, int n_layer)
{
    int l;
    if (sscanf(name, "blk.%d.", &l) == 1 && l >= 0 && l < n_layer)
        return l;
    return !strcmp(name, "output.weight") ? n_layer : -1;
}

static int sensitivities(state *s, cv_eval_model *em, int *passes)
{
    tok_ids ids = {0};
    eng_ppl_opts o;
    eng_kld_probe *pr = NULL;
    int rc = tokenize_calib(em, s->p, &ids, &o, s->err_out);
    if (!rc && (rc = eng_kld_probe_create(&pr, &em->m, ids.ids, ids.n, &o, s->err_out)))
        qk_err_prefix(s->err_out, s->p->calib_path);
    *passes = rc ? 0 : 1;
    for (size_t i = 0; i < s->n && !rc; i++) {
        const tg_tensor *t = &s->t[i];
        if (!isnan(s->probe[i]))
            continue;
        eng_tensor *et[2];
        size_t ne = eng_model_tensors_named(&em->m, t->name, et);
        if (ne == 0) { /* a tensor the engine does not use: no effect on the output */
            s->probe[i] = 0.0;
            s->probe_type[i] = pick_probe(s, t);
            continue;
        }
        const int pt = pick_probe(s, t);
        void *q = NULL;
        rc = quantize_whole(t, pt, s->p->n_threads, &q, s->err_out);
        eng_tensor saved[2];
        for (size_t k = 0; k < ne && !rc; k++) {
            saved[k] = *et[k];
            et[k]->type = pt;
            et[k]->data = q;
        }
        double kld = 0;
        if (!rc)
            rc = eng_kld_probe_run_from(pr, first_block(t->name, em->m.n_layer), &kld, s->err_out);
        for (size_t k = 0; k < ne && q; k++)
            *et[k] = saved[k];
        free(q);
        s->probe[i] = round_sig(kld);
        s->probe_type[i] = pt;
        ++*passes;
        if (s->p->progress)
            s->p->progress(s->p->user, "sensitivity", i + 1, s->n);
    }
    eng_kld_probe_free(pr);
    tok_ids_free(&ids);
    return rc;
}

/* ---- cache ---------------------------------------------------------------------------------- */

typedef struct {
    char model[17], imatrix[17], text[17];
} keys;

static int file_key(const char *path, char out[17], qk_err *err)
{
    if (!path) {
        strcpy(out, "none");
        return QK_OK;
    }
    qk_hash h;
    qk_hash_init(&h);
    int rc = qk_file_fingerprint(path, &h, err);
    snprintf(out, 17, "%016llx", (unsigned long long)qk_hash_final(&h));
    return rc;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Fills probe/probe_type/err from a matching cache. 1: used, 0: absent; errors for a cache that
 * is unreadable or of another model, matrix or text. */
static int cache_read(state *s, const keys *k, qk_err *err)
{
    const char *path = s->p->cache_path;
    char *buf = NULL;
    size_t len;
    int rc = qk_file_read(path, (size_t)64 << 20, &buf, &len, err);
    if (rc == QK_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    cJSON *doc = cJSON_ParseWithLength(buf, len);
    free(buf);
    const cJSON *ts = doc ? cJSON_GetObjectItemCaseSensitive(doc, "tensors") : NULL;
    const char *kind = doc ? jstr(doc, "qkit") : NULL;
    if (!doc || !kind || strcmp(kind, "target-sensitivity") || !cJSON_IsArray(ts)) {
        cJSON_Delete(doc);
        return qk_err_set(err, QK_EFORMAT, "%s: not a qkit sensitivity cache (JSON with \"qkit\": "
                          "\"target-sensitivity\" and a tensor list)", path);
    }
    static const char *const NAMES[] = {"model", "imatrix", "text"};
    const char *const want[] = {k->model, k->imatrix, k->text};
    static const char *const WHAT[] = {"another model", "another importance matrix", "another text"};
    for (int q = 0; q < 3; q++) {
        const char *v = jstr(doc, NAMES[q]);
        if (!v || strcmp(v, want[q])) {
            rc = qk_err_set(err, QK_EFORMAT, "%s: a sensitivity cache of %s (%s %s, this run's %s): "
                            "delete it or give another --sens-cache", path, WHAT[q], NAMES[q],
                            v ? v : "missing", want[q]);
            cJSON_Delete(doc);
            return rc;
        }
    }
    const cJSON *nc = cJSON_GetObjectItemCaseSensitive(doc, "n_ctx");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(doc, "chunks");
    if (!cJSON_IsNumber(nc) || !cJSON_IsNumber(ch) || nc->valuedouble != s->p->n_ctx ||
        ch->valuedouble != s->p->n_chunks) {
        cJSON_Delete(doc);
        return qk_err_set(err, QK_EFORMAT, "%s: a sensitivity cache of other calibration settings "
                          "(n_ctx, chunks): delete it or give another --sens-cache", path);
    }
    size_t found = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, ts) {
        const char *name = jstr(e, "name"), *probe = jstr(e, "probe");
        const cJSON *kl = cJSON_GetObjectItemCaseSensitive(e, "probe_kld");
        const cJSON *errs = cJSON_GetObjectItemCaseSensitive(e, "errors");
        size_t i = 0;
        while (name && i < s->n && strcmp(s->t[i].name, name))
            i++;
        if (!name || i == s->n || !probe || q_type_from_name(probe) < 0 || !cJSON_IsNumber(kl) ||
            !(kl->valuedouble >= 0) || !cJSON_IsObject(errs)) {
            cJSON_Delete(doc);
            return qk_err_set(err, QK_EFORMAT, "%s: tensor entry '%s' is malformed or names no "
                              "tensor of the model", path, name ? name : "?");
        }
        s->probe[i] = kl->valuedouble;
        s->probe_type[i] = q_type_from_name(probe);
        found++;
        for (int k2 = 0; k2 < s->n_types; k2++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(errs, q_type_info(s->p->types[k2])->name);
            if (cJSON_IsNumber(v) && v->valuedouble >= 0)
                *err_at(s, i, k2) = v->valuedouble;
        }
        /* the probe type's error is needed for the sensitivity even if not a candidate */
    }
    cJSON_Delete(doc);
    if (found != s->n)
        return qk_err_set(err, QK_EFORMAT, "%s: holds %zu of the model's %zu quantizable tensors",
                          path, found, s->n);
    return 1;
}

static int cache_write(const state *s, const keys *k, const double *probe_err, qk_err *err)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "qkit", "target-sensitivity");
    cJSON_AddNumberToObject(doc, "version", 1);
    cJSON_AddStringToObject(doc, "model", k->model);
    cJSON_AddStringToObject(doc, "imatrix", k->imatrix);
    cJSON_AddStringToObject(doc, "text", k->text);
    cJSON_AddNumberToObject(doc, "n_ctx", s->p->n_ctx);
    cJSON_AddNumberToObject(doc, "chunks", s->p->n_chunks);
    cJSON *ts = cJSON_AddArrayToObject(doc, "tensors");
    for (size_t i = 0; i < s->n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", s->t[i].name);
        cJSON_AddStringToObject(e, "probe", q_type_info(s->probe_type[i])->name);
        cJSON_AddNumberToObject(e, "probe_kld", s->probe[i]);
        cJSON *errs = cJSON_AddObjectToObject(e, "errors");
        for (int q = 0; q < s->n_types; q++)
            if (!isnan(s->err[i * (size_t)s->n_types + (size_t)q]))
                cJSON_AddNumberToObject(errs, q_type_info(s->p->types[q])->name,
                                        s->err[i * (size_t)s->n_types + (size_t)q]);
        if (type_slot(s, s->probe_type[i]) < 0)
            cJSON_AddNumberToObject(errs, q_type_info(s->probe_type[i])->name, probe_err[i]);
        cJSON_AddItemToArray(ts, e);
    }
    char *text = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (!text)
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    int rc = of_write_all(s->p->cache_path, text, strlen(text), err);
    free(text);
    return rc;
}

/* ---- allocation ------------------------------------------------------------------------------ */

typedef struct {
    int n;
    int type[TG_MAX_TYPES + 1];
    uint64_t bytes[TG_MAX_TYPES + 1];
    double cost[TG_MAX_TYPES + 1];
} options;

static int allocate(const options *opt, size_t n, uint64_t budget, int *pick, qk_err *err)
{
    const uint64_t unit = budget / TG_DP_UNITS + 1;
    const size_t C = (size_t)(budget / unit);
    double *prev = malloc((C + 1) * sizeof *prev), *cur = malloc((C + 1) * sizeof *cur);
    uint8_t *choice = malloc((n ? n : 1) * (C + 1));
    if (!prev || !cur || !choice) {
        free(prev);
        free(cur);
        free(choice);
        return qk_err_set(err, QK_ENOMEM, "out of memory for the allocation table");
    }
    for (size_t c = 0; c <= C; c++)
        prev[c] = 0.0;
    for (size_t i = 0; i < n; i++) {
        for (size_t c = 0; c <= C; c++) {
            double best = INFINITY;
            uint8_t bk = 0;
            for (int k = 0; k < opt[i].n; k++) {
                const uint64_t w = (opt[i].bytes[k] + unit - 1) / unit;
                if (w > c || isinf(prev[c - w]))
                    continue;
                const double v = prev[c - w] + opt[i].cost[k];
                if (v < best)
                    best = v, bk = (uint8_t)k;
            }
            cur[c] = best;
            choice[i * (C + 1) + c] = bk;
        }
        double *tmp = prev;
        prev = cur;
        cur = tmp;
    }
    int rc = isinf(prev[C]) ? QK_ERANGE : QK_OK;
    size_t c = C;
    for (size_t i = n; i-- > 0 && !rc;) {
        const int k = choice[i * (C + 1) + c];
        pick[i] = k;
        c -= (size_t)((opt[i].bytes[k] + unit - 1) / unit);
    }
    free(prev);
    free(cur);
    free(choice);
    if (rc)
        return qk_err_set(err, QK_ERANGE, "no allocation fits the budget");
    /* greedy fill of what the rounding left */
    uint64_t used = 0;
    for (size_t i = 0; i < n; i++)
        used += opt[i].bytes[pick[i]];
    for (;;) {
        double best = 0;
        size_t bi = 0;
        int bk = -1;
        for (size_t i = 0; i < n; i++)
            for (int k = 0; k < opt[i].n; k++) {
                const uint64_t b0 = opt[i].bytes[pick[i]], b1 = opt[i].bytes[k];
                const double gain = opt[i].cost[pick[i]] - opt[i].cost[k];
                if (b1 <= b0 || gain <= 0 || b1 - b0 > budget - used)
                    continue;
                if (gain / (double)(b1 - b0) > best)
                    best = gain / (double)(b1 - b0), bi = i, bk = k;
            }
        if (bk < 0)
            break;
        used += opt[bi].bytes[bk] - opt[bi].bytes[pick[bi]];
        pick[bi] = bk;
    }
    return QK_OK;
}

/* ---- driver ---------------------------------------------------------------------------------- */

void tg_result_free(tg_result *r)
{
    if (r) {
        free(r->t);
        r->t = NULL;
    }
}

static int measure_all_errors(state *s, double *probe_err)
{
    for (size_t i = 0; i < s->n; i++) {
        int rc = tensor_errors(s, i);
        if (rc)
            return rc;
        if (s->p->progress)
            s->p->progress(s->p->user, "errors", i + 1, s->n);
    }
    /* the probe type's error where it is not a candidate */
    for (size_t i = 0; i < s->n; i++) {
        const int slot = type_slot(s, s->probe_type[i]);
        if (slot >= 0) {
            probe_err[i] = *err_at(s, i, slot);
            continue;
        }
        if (!isnan(probe_err[i]))
            continue;
        const tg_params *saved = s->p;
        tg_params one = *saved;
        one.types = &s->probe_type[i];
        one.n_types = 1;
        state s1 = *s;
        s1.p = &one;
        s1.n_types = 1;
        double e = NAN;
        s1.err = &e;
        s1.t = &s->t[i];
        s1.n = 1;
        int rc = tensor_errors(&s1, 0);
        if (rc)
            return rc;
        probe_err[i] = e;
    }
    return QK_OK;
}

int tg_allocate(const tg_params *p, const tg_tensor *t, size_t n, tg_result *r, qk_err *err)
{
    memset(r, 0, sizeof *r);
    if (p->n_types == 0 || p->n_types > TG_MAX_TYPES)
        return qk_err_set(err, QK_ERANGE, "between 1 and %d candidate types are needed", TG_MAX_TYPES);
    state s = {p, t, n, (int)p->n_types, NULL, NULL, NULL, err};
    s.err = malloc((n ? n : 1) * p->n_types * sizeof *s.err);
    s.probe = malloc((n ? n : 1) * sizeof *s.probe);
    s.probe_type = malloc((n ? n : 1) * sizeof *s.probe_type);
    double *probe_err = malloc((n ? n : 1) * sizeof *probe_err);
    options *opt = calloc(n ? n : 1, sizeof *opt);
    int *pick = calloc(n ? n : 1, sizeof *pick);
    r->t = calloc(n ? n : 1, sizeof *r->t);
    r->n = n;
    cv_eval_model em = {0};
    keys k;
    memset(&k, 0, sizeof k);
    int rc = s.err && s.probe && s.probe_type && probe_err && opt && pick && r->t
                 ? QK_OK : qk_err_set(err, QK_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n * p->n_types; i++)
        s.err[i] = NAN;
    for (size_t i = 0; !rc && i < n; i++) {
        s.probe[i] = probe_err[i] = NAN;
        s.probe_type[i] = -1;
        int any = 0;
        for (size_t q = 0; q < p->n_types; q++)
            any |= fits(p->types[q], t[i].ne[0]);
        if (!any)
            rc = qk_err_set(err, QK_EFORMAT, "%s: tensor '%s': rows of %lld values fit none of the "
                            "candidate types", p->model_path, t[i].name, (long long)t[i].ne[0]);
    }
    /* the smallest possible size, before any measuring */
    for (size_t i = 0; !rc && i < n; i++) {
        uint64_t smallest = UINT64_MAX;
        for (size_t q = 0; q < p->n_types; q++)
            if (fits(p->types[q], t[i].ne[0])) {
                const uint64_t b = pad(q_row_size(p->types[q], t[i].ne[0]) * (uint64_t)n_rows(&t[i]),
                                       p->alignment ? p->alignment : 32);
                smallest = b < smallest ? b : smallest;
            }
        r->min_bytes += smallest;
    }
    if (!rc && r->min_bytes > p->budget)
        rc = qk_err_set(err, QK_ERANGE, "the budget leaves %llu bytes for the quantized tensors; "
                        "the smallest possible is %llu bytes (every tensor at its smallest type)",
                        (unsigned long long)p->budget, (unsigned long long)r->min_bytes);
    /* the cache */
    if (!rc)
        rc = cv_eval_open(&em, p->model_path, err);
    uint64_t mid = 0;
    if (!rc)
        rc = cv_eval_fingerprint(&em, &mid, err);
    snprintf(k.model, sizeof k.model, "%016llx", (unsigned long long)mid);
    if (!rc)
        rc = file_key(p->imatrix_path, k.imatrix, err);
    if (!rc)
        rc = file_key(p->calib_path, k.text, err);
    int hit = 0;
    if (!rc && p->cache_path) {
        hit = cache_read(&s, &k, err);
        rc = hit < 0 ? hit : QK_OK;
        hit = hit > 0;
    }
    r->cache_hit = hit;
    double t0 = now_s();
    for (size_t i = 0; !rc && i < n && !hit; i++)
        s.probe_type[i] = pick_probe(&s, &t[i]);
    if (!rc)
        rc = measure_all_errors(&s, probe_err);
    double t1 = now_s();
    r->seconds_errors = t1 - t0;
    if (!rc && !hit)
        rc = sensitivities(&s, &em, &r->engine_passes);
    r->seconds_sens = now_s() - t1;
    if (!rc && p->cache_path && !hit)
        rc = cache_write(&s, &k, probe_err, err);
    cv_eval_close(&em);
    t1 = now_s();
    /* the options: every fitting candidate, cost s · e */
    for (size_t i = 0; !rc && i < n; i++) {
        const double sens = probe_err[i] > 0 ? s.probe[i] / probe_err[i] : 0.0;
        for (size_t q = 0; q < p->n_types; q++) {
            if (!fits(p->types[q], t[i].ne[0]))
                continue;
            const uint64_t b = pad(q_row_size(p->types[q], t[i].ne[0]) * (uint64_t)n_rows(&t[i]),
                                   p->alignment ? p->alignment : 32);
            options *o = &opt[i];
            o->type[o->n] = p->types[q];
            o->bytes[o->n] = b;
            o->cost[o->n] = sens * *err_at(&s, i, (int)q);
            o->n++;
        }
        r->t[i] = (tg_choice){.index = t[i].index, .sens = sens, .probe_kld = s.probe[i],
                              .probe_type = s.probe_type[i]};
    }
    if (!rc)
        rc = allocate(opt, n, p->budget, pick, err);
    for (size_t i = 0; !rc && i < n; i++) {
        const options *o = &opt[i];
        tg_choice *c = &r->t[i];
        c->type = o->type[pick[i]];
        c->bytes = o->bytes[pick[i]];
        c->pred = o->cost[pick[i]];
        c->err = c->sens > 0 ? c->pred / c->sens : *err_at(&s, i, type_slot(&s, c->type));
        r->pred_kld += c->pred;
        r->bytes += c->bytes;
    }
    r->seconds_alloc = now_s() - t1;
    free(s.err);
    free(s.probe);
    free(s.probe_type);
    free(probe_err);
    free(opt);
    free(pick);
    if (rc)
        tg_result_free(r);
    return rc;
}
