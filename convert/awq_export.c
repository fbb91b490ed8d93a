/* awq_export.c — `qkit awq`: calibration samples, the AWQ run, and the outputs; see
 * awq_export.h. */
#include "awq_export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../calib/awq.h"
#include "../calib/perplexity.h"
#include "../formats/gguf.h"
#include "../formats/gguf_arch.h"
#include "../quant/types.h"
#include "convert.h"
#include "eval_model.h"
#include "mix.h"
#include "quantize.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- calibration samples ---------------------------------------------------------------------- */

/* n_seq sequences of seq_len consecutive tokens of the text, each starting with BOS (when the
 * model has one), as many as the text holds up to the request. */
static int samples(const cv_eval_model *em, const aw_params *p, int32_t **out, int *n_seq,
                   int *seq_len, qk_err *err)
{
    tok_ids ids = {0};
    int rc = eng_tokenize_text_file(em->vocab, p->calib, &ids, err);
    if (rc)
        return rc;
    int L = p->seq_len > 0 ? p->seq_len : 512;
    if (L > em->m.n_ctx_train)
        L = em->m.n_ctx_train;
    const int want = p->samples > 0 ? p->samples : 128;
    int have = (int)(ids.n / (size_t)L);
    if (have < 1) {
        tok_ids_free(&ids);
        return qk_err_set(err, QK_ERANGE, "%s: %zu tokens, at least %d (one sequence of --seq-len %d) "
                          "are needed", p->calib, ids.n, L, L);
    }
    const int n = have < want ? have : want;
    int32_t *t = malloc((size_t)n * L * sizeof *t);
    if (!t) {
        tok_ids_free(&ids);
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    }
    const int bos = tok_vocab_add_bos(em->vocab) ? em->vocab->special[TOK_BOS] : -1;
    for (int s = 0; s < n; s++) {
        memcpy(t + (size_t)s * L, ids.ids + (size_t)s * L, (size_t)L * sizeof *t);
        if (bos >= 0)
            t[(size_t)s * L] = bos;
    }
    tok_ids_free(&ids);
    *out = t;
    *n_seq = n;
    *seq_len = L;
    return QK_OK;
}

/* ---- types the search uses (AW_GGUF) ------------------------------------------------------------ */

typedef struct {
    char **names;
    int *types;
    size_t n;
} type_table;

static int lookup_type(void *user, const char *name)
{
    const type_table *t = user;
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->names[i], name))
            return t->types[i] >= 0 ? t->types[i] : Q_TYPE_F32;
    return Q_TYPE_F32;
}

static void type_table_free(type_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->names[i]);
    free(t->names);
    free(t->types);
}

/* ---- the folded model as an F32 GGUF ------------------------------------------------------------ */

/* The engine's f32 vector for tensor name when AWQ may have changed it (norms, v/up biases). */
static const float *changed_vector(const eng_model *m, const char *name)
{
    static const ga_kind KINDS[] = {GA_T_ATTN_NORM, GA_T_FFN_NORM, GA_T_ATTN_V_B, GA_T_FFN_UP_B};
    char buf[GGUF_MAX_NAME];
    for (int l = 0; l < m->n_layer; l++)
        for (size_t k = 0; k < sizeof KINDS / sizeof KINDS[0]; k++)
            if (m->layers[l].v[KINDS[k]] && ga_tensor_name(KINDS[k], l, buf, sizeof buf) &&
                !strcmp(buf, name))
                return m->layers[l].v[KINDS[k]];
    return NULL;
}

static int write_folded(const cv_eval_model *em, const awq_run *run, const char *path, qk_err *err)
{
    const gguf_ctx *g = em->g;
    gguf_writer *w = NULL;
    int rc = gguf_writer_open(&w, path, NULL, err);
    for (uint64_t i = 0; !rc && i < gguf_n_kv(g); i++)
        rc = gguf_writer_set_value(w, gguf_kv_key(g, i), gguf_kv_value(g, i));
    for (uint64_t i = 0; !rc && i < gguf_n_tensors(g); i++) {
        const gguf_tensor_info *t = gguf_tensor(g, i);
        int64_t ne0, ne1;
        const int f32 = awq_weight(run, t->name, &ne0, &ne1) || changed_vector(&em->m, t->name);
        rc = gguf_writer_add_tensor(w, t->name, f32 ? Q_TYPE_F32 : t->type, t->n_dims, t->ne);
    }
    if (!rc)
        rc = gguf_writer_begin_data(w);
    for (uint64_t i = 0; !rc && i < gguf_n_tensors(g); i++) {
        const gguf_tensor_info *t = gguf_tensor(g, i);
        int64_t ne0, ne1;
        const float *aw = awq_weight(run, t->name, &ne0, &ne1), *v = changed_vector(&em->m, t->name);
        if (aw)
            rc = gguf_writer_write_tensor(w, t->name, aw, (size_t)(ne0 * ne1) * sizeof(float));
        else if (v)
            rc = gguf_writer_write_tensor(w, t->name, v, (size_t)t->ne[0] * sizeof(float));
        else
            rc = gguf_writer_write_tensor(w, t->name, t->data, (size_t)t->nbytes);
    }
    if (rc) {
        if (w && *gguf_writer_error(w))
            qk_err_set(err, rc, "%s", gguf_writer_error(w));
        gguf_writer_abort(w);
        return rc;
    }
    return gguf_writer_commit(w, err);
}

/* ---- driver ------------------------------------------------------------------------------------- */

static int run_gguf(const aw_params *p, aw_result *r, qk_err *err)
{
    const size_t olen = strlen(p->out) + 32;
    char *src = malloc(olen), *folded = malloc(olen);
    if (!src || !folded) {
        free(src), free(folded);
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    }
    snprintf(src, olen, "%s.awq-src.tmp", p->out);
    snprintf(folded, olen, "%s.awq-folded.tmp", p->out);
    const char *model = p->model;
    int rc = QK_OK;
    if (is_dir(p->model)) { /* an HF folder: the engine works on its F32 GGUF */
        cv_options o;
        cv_options_init(&o);
        o.outtype = "f32";
        o.n_threads = p->n_threads;
        rc = cv_convert(p->model, src, &o, NULL, err);
        model = src;
    }
    type_table tt = {0};
    if (!rc)
        rc = qz_plan_types(model, p->ftype, p->imatrix != NULL, &tt.names, &tt.types, &tt.n, err);
    cv_eval_model em = {0};
    if (!rc)
        rc = cv_eval_open(&em, model, err);
    int32_t *tok = NULL;
    int n_seq = 0, L = 0;
    if (!rc)
        rc = samples(&em, p, &tok, &n_seq, &L, err);
    awq_run *run = NULL;
    const double t0 = now_s();
    if (!rc) {
        awq_opts o = {.bits = 4, .group = 128, .grid = p->grid, .clip = p->clip, .rtn = p->rtn,
                      .use_imatrix = p->imatrix != NULL,
                      .duo = p->duo, .type_of = lookup_type, .user = &tt, .progress = p->progress,
                      .progress_user = p->user};
        rc = awq_run_model(&run, &em.m, tok, n_seq, L, &o, err);
    }
    r->seconds_search = now_s() - t0;
    r->samples = n_seq;
    r->seq_len = L;
    r->n_blocks = em.m.n_layer;
    if (!rc) {
        r->n_groups = awq_n_groups(run);
        for (size_t i = 0; i < r->n_groups; i++)
            r->mean_alpha += awq_group(run, i)->alpha / (double)r->n_groups;
        rc = write_folded(&em, run, folded, err);
    }
    awq_run_free(run);
    cv_eval_close(&em);
    free(tok);
    type_table_free(&tt);
    if (!rc) {
        qz_params q;
        qz_params_init(&q);
        q.in_path = folded;
        q.out_path = p->out;
        q.ftype = p->ftype;
        q.n_threads = p->n_threads;
        q.imatrix_path = p->imatrix;
        qz_report *qr = NULL;
        rc = qz_quantize(&q, &qr, NULL, err);
        if (!rc)
            r->out_bytes = qr->out_bytes;
        qz_report_free(qr);
    }
    unlink(folded);
    if (model == src)
        unlink(src);
    free(src);
    free(folded);
    return rc;
}

int aw_run(const aw_params *p, aw_result *r, qk_err *err)
{
    memset(r, 0, sizeof *r);
    const double t0 = now_s();
    int rc;
    if (p->format == AW_GGUF)
        rc = run_gguf(p, r, err);
    else
        rc = qk_err_set(err, QK_EUNSUPPORTED, "--format awq and ct are not written yet");
    r->seconds_total = now_s() - t0;
    return rc;
}
