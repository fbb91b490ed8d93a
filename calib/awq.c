/* awq.c — activation-aware weight quantization on the engine; see awq.h. */
#include "awq.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/fp16.h"
#include "../quant/quant.h"
#include "../quant/types.h"
#include "detmath.h"
#include "metrics.h"

/* ---- the AutoAWQ quantizer ------------------------------------------------------------------ */

void awq_quantize_row(const float *w, int64_t n, int group, int bits, uint8_t *q, float *scales,
                      uint8_t *zeros, float *deq)
{
    const float qmax = (float)((1 << bits) - 1);
    for (int64_t g0 = 0; g0 < n; g0 += group) {
        float mn = w[g0], mx = w[g0];
        for (int64_t j = g0; j < g0 + group; j++) {
            mn = w[j] < mn ? w[j] : mn;
            mx = w[j] > mx ? w[j] : mx;
        }
        float sc = (mx - mn) > 1e-5f ? (mx - mn) / qmax : 1e-5f / qmax;
        sc = q_fp16_to_fp32(q_fp32_to_fp16(sc)); /* the checkpoint's f16 scale */
        if (!(sc > 0))
            sc = 6.1035156e-05f; /* f16 underflow: the smallest normal */
        float z = -nearbyintf(mn / sc);
        z = z < 0 ? 0 : z > qmax ? qmax : z;
        for (int64_t j = g0; j < g0 + group; j++) {
            float v = nearbyintf(w[j] / sc) + z;
            v = v < 0 ? 0 : v > qmax ? qmax : v;
            if (q)
                q[j] = (uint8_t)v;
            if (deq)
                deq[j] = (v - z) * sc;
        }
        if (scales)
            scales[g0 / group] = sc;
        if (zeros)
            zeros[g0 / group] = (uint8_t)z;
    }
}

/* ---- state ---------------------------------------------------------------------------------- */

typedef struct {
    char name[64];
    float *w;          /* processed f32 [ne1][ne0] */
    int64_t ne0, ne1;  /* a 3-D expert tensor: ne1 counts all experts' rows */
    int64_t ne2;       /* matrices (experts) in those rows: 1 for a plain matrix */
    int dense;         /* folded only, never quantized (a mixture-of-experts router) */
    void *run;         /* what the engine runs after the block is done (fake-quantized) */
    eng_tensor *t;     /* the engine's tensor (data points to w, or run once the block is done) */
    float *in_scale;   /* [ne2][ne0] the scale its input columns were multiplied by (NULL: none) */
    /* GPTQ's result in AutoAWQ's format (NULL: none; w then holds the dequantized values) */
    uint8_t *codes;    /* [ne1][ne0] */
    uint8_t *zeros;    /* [ne1][ne0 / group] */
    float *scales;     /* [ne1][ne0 / group] */
} owned_w;

/* One capture point: the input of a group of linears. */
typedef struct {
    int64_t n_in;
    double *abs_sum, *sq_sum;
    int64_t count;
    float *rows;       /* [cap][n_in] sampled rows */
    int n_rows, cap;
    int64_t stride;    /* > 0: keep every stride-th row this capture sees (an expert's routed
                          tokens); 0: the run's token stride over the sequences' positions */
} capture;

struct awq_run {
    eng_model *m;
    awq_opts o;
    owned_w **w;      /* each allocated alone: pointers to them stay valid */
    size_t n_w, cap_w;
    awq_group_report *g;
    size_t n_g, cap_g;
    /* capture of the current block */
    const eng_tensor *point[4]; /* the first linear of each group */
    capture cap[4];
    /* a mixture's 3-D gate (E_IN) and down (E_DOWN) tensors: expert e's inputs (its routed
     * tokens) go to ecap[k][e], e < n_ecap */
    const eng_tensor *exp_point[2];
    capture *ecap[2];
    int n_ecap;
    int64_t tok_base, stride;
    int seq_len;
    qk_err *err;
    /* the loss of a candidate: the block's output on a few sequences */
    eng_ctx *ctx;
    int block, n_eval;
    const float *x_in; /* [n_eval][seq_len][n_embd] the block's inputs */
    float *ref, *work; /* [n_eval][seq_len][n_embd]; output loss: log-probabilities / logits
                          [n_eval][seq_len][n_vocab] */
};

enum { G_QKV, G_O, G_GATEUP, G_DOWN };
enum { E_IN, E_DOWN };

static void free_expert_captures(awq_run *r)
{
    for (int k = 0; k < 2; k++) {
        for (int e = 0; r->ecap[k] && e < r->n_ecap; e++) {
            free(r->ecap[k][e].abs_sum);
            free(r->ecap[k][e].sq_sum);
            free(r->ecap[k][e].rows);
        }
        free(r->ecap[k]);
        r->ecap[k] = NULL;
        r->exp_point[k] = NULL;
    }
    r->n_ecap = 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

void awq_run_free(awq_run *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_w; i++) {
        free(r->w[i]->w);
        free(r->w[i]->run);
        free(r->w[i]->in_scale);
        free(r->w[i]->codes);
        free(r->w[i]->zeros);
        free(r->w[i]->scales);
        free(r->w[i]);
    }
    for (int k = 0; k < 4; k++) {
        free(r->cap[k].abs_sum);
        free(r->cap[k].sq_sum);
        free(r->cap[k].rows);
    }
    free_expert_captures(r);
    free(r->w);
    free(r->g);
    free(r->ref);
    free(r->work);
    free(r);
}

const float *awq_weight(const awq_run *r, const char *name, int64_t *ne0, int64_t *ne1)
{
    for (size_t i = 0; i < r->n_w; i++)
        if (!strcmp(r->w[i]->name, name)) {
            *ne0 = r->w[i]->ne0;
            *ne1 = r->w[i]->ne1;
            return r->w[i]->w;
        }
    return NULL;
}

int awq_weight_dense(const awq_run *r, const char *name)
{
    for (size_t i = 0; i < r->n_w; i++)
        if (!strcmp(r->w[i]->name, name))
            return r->w[i]->dense;
    return 0;
}

const float *awq_input_scale(const awq_run *r, const char *name, int64_t *n_mat)
{
    for (size_t i = 0; i < r->n_w; i++)
        if (!strcmp(r->w[i]->name, name)) {
            if (n_mat)
                *n_mat = r->w[i]->ne2;
            return r->w[i]->in_scale;
        }
    return NULL;
}

int awq_codes(const awq_run *r, const char *name, const uint8_t **codes, const float **scales,
              const uint8_t **zeros)
{
    for (size_t i = 0; i < r->n_w; i++)
        if (!strcmp(r->w[i]->name, name) && r->w[i]->codes) {
            *codes = r->w[i]->codes;
            *scales = r->w[i]->scales;
            *zeros = r->w[i]->zeros;
            return 1;
        }
    return 0;
}

size_t awq_n_groups(const awq_run *r) { return r->n_g; }
const awq_group_report *awq_group(const awq_run *r, size_t i) { return i < r->n_g ? &r->g[i] : NULL; }

/* An owned f32 copy of a linear (of every expert of a 3-D tensor: expert e's matrix stays at
 * e · rows, where the engine looks for it), which the engine then runs. */
static owned_w *own(awq_run *r, eng_tensor *t)
{
    if (grow((void **)&r->w, &r->cap_w, r->n_w + 1, sizeof *r->w))
        return NULL;
    owned_w *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    snprintf(o->name, sizeof o->name, "%s", t->name);
    o->ne0 = t->ne0;
    o->ne2 = t->ne2 > 1 ? t->ne2 : 1;
    o->ne1 = t->ne1 * o->ne2;
    if (!(o->w = malloc((size_t)(o->ne0 * o->ne1) * sizeof(float))) ||
        q_dequantize_rows(t->type, t->data, o->w, o->ne1, o->ne0, r->err)) {
        free(o->w);
        free(o);
        return NULL;
    }
    r->w[r->n_w++] = o;
    o->t = t;
    t->type = Q_TYPE_F32;
    t->data = o->w;
    return o;
}

static owned_w *find_owned(awq_run *r, const char *name)
{
    for (size_t i = 0; i < r->n_w; i++)
        if (!strcmp(r->w[i]->name, name))
            return r->w[i];
    return NULL;
}

/* ---- capture ---------------------------------------------------------------------------------- */

/* Adds rows x [n][c->n_in] to capture c: their statistics, and every stride-th row sampled. */
static void take(const awq_run *r, capture *c, const float *x, int n)
{
    for (int t = 0; t < n; t++) {
        const float *row = x + (size_t)t * (size_t)c->n_in;
        for (int64_t j = 0; j < c->n_in; j++) {
            c->abs_sum[j] += fabsf(row[j]);
            c->sq_sum[j] += (double)row[j] * row[j];
        }
        const int64_t g = c->stride ? c->count + t : r->tok_base + t;
        if (g % (c->stride ? c->stride : r->stride) == 0 && c->n_rows < c->cap)
            memcpy(c->rows + (size_t)c->n_rows++ * (size_t)c->n_in, row, (size_t)c->n_in * sizeof(float));
    }
    c->count += n;
}

static void observe(void *user, const eng_tensor *w, int expert, const float *x, int n)
{
    awq_run *r = user;
    /* by name: the engine may pass a copy of the tensor (a feed-forward's weights travel by
     * value, an expert is a slice of its 3-D tensor), so its address says nothing */
    if (expert >= 0) {
        for (int k = 0; k < 2; k++)
            if (r->exp_point[k] && expert < r->n_ecap && !strcmp(w->name, r->exp_point[k]->name))
                take(r, &r->ecap[k][expert], x, n);
        return;
    }
    for (int k = 0; k < 4; k++)
        if (r->point[k] && !strcmp(w->name, r->point[k]->name))
            take(r, &r->cap[k], x, n);
}

static int capture_init(capture *c, int64_t n_in, int cap)
{
    free(c->abs_sum);
    free(c->sq_sum);
    free(c->rows);
    memset(c, 0, sizeof *c);
    c->n_in = n_in;
    c->cap = cap;
    c->abs_sum = calloc((size_t)n_in, sizeof(double));
    c->sq_sum = calloc((size_t)n_in, sizeof(double));
    c->rows = malloc((size_t)cap * (size_t)n_in * sizeof(float));
    return c->abs_sum && c->sq_sum && c->rows ? 0 : -1;
}

/* ---- fake quantization ------------------------------------------------------------------------ */

/* deq [n] = Q(w [n]) with the linear's quantizer; imat the importance weights or NULL. */
static void fake_row(const awq_run *r, int type, const float *w, int64_t n, const float *imat,
                     float *deq, void *scratch)
{
    if (type < 0) {
        awq_quantize_row(w, n, r->o.group, r->o.bits, NULL, NULL, NULL, deq);
        return;
    }
    qk_err e;
    if (q_quantize_rows(type, w, scratch, 1, n, imat, 1, NULL, &e) ||
        q_dequantize_rows(type, scratch, deq, 1, n, &e))
        memcpy(deq, w, (size_t)n * sizeof *deq); /* non-finite: the caller checks the model */
}

static int type_of(const awq_run *r, const char *name)
{
    return r->o.type_of ? r->o.type_of(r->o.user, name) : -1;
}

/* Fake-quantizes rows [ne1][ne0] of w into out, each row with imat (or NULL). */
static void fake_matrix(const awq_run *r, int type, const float *w, int64_t ne0, int64_t ne1,
                        const float *imat, float *out)
{
#pragma omp parallel
    {
        void *scratch = malloc((size_t)ne0 * 4 + 256);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < ne1; i++)
            fake_row(r, type, w + i * ne0, ne0, imat, out + i * ne0, scratch);
        free(scratch);
    }
}

/* ---- the scale search -------------------------------------------------------------------------- */

#define MAX_LIN 4    /* a mixture's gate, up and its shared expert's gate, up */

typedef struct {
    owned_w *lin[MAX_LIN];
    int n_lin;
    int skip_clip;   /* q and k */
    owned_w *router; /* reads the group's input but stays unquantized: its columns are only
                        folded (a mixture's router, with its experts' gate and up) */
    int linear_loss; /* score candidates by the output error of lin[0] alone on the captured rows
                        (one expert's down: lin[0] is then a view of its slice, not run by the
                        engine on its own) */
} group;

static double sq_err(const float *a, const float *b, size_t n)
{
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)a[i] - b[i];
        e += d * d;
    }
    return e;
}

static size_t eval_width(const awq_run *r)
{
    return (size_t)(r->o.output_loss ? r->m->n_vocab : r->m->n_embd);
}

/* The block's output on the evaluation sequences into out, or with output_loss the model's
 * logits from there on (later blocks and the head). */
static int block_out(awq_run *r, float *out)
{
    const size_t d = (size_t)r->m->n_embd, per = (size_t)r->seq_len * d;
    const size_t pw = (size_t)r->seq_len * eval_width(r);
    float *x = r->o.output_loss ? malloc(per * sizeof *x) : NULL;
    if (r->o.output_loss && !x)
        return qk_err_set(r->err, QK_ENOMEM, "out of memory");
    int rc = QK_OK;
    for (int k = 0; k < r->n_eval && !rc; k++) {
        float *h = r->o.output_loss ? x : out + k * per;
        memcpy(h, r->x_in + k * per, per * sizeof *h);
        rc = eng_blocks(r->ctx, h, r->seq_len, r->block, r->o.output_loss ? r->m->n_layer : r->block + 1,
                        r->err);
        if (!rc && r->o.output_loss)
            rc = eng_head(r->ctx, h, r->seq_len, out + k * pw, r->err);
    }
    free(x);
    return rc;
}

/* Loss of a candidate's output against the reference: mean squared error of the block output,
 * or the mean KL divergence of the next-token distributions (ref holds log-probabilities). */
static double eval_loss(const awq_run *r, float *cand)
{
    const size_t W = eval_width(r), rows = (size_t)r->n_eval * r->seq_len;
    if (!r->o.output_loss)
        return sq_err(cand, r->ref, rows * W) / (double)(rows * W);
    double kl = 0;
#pragma omp parallel for schedule(static) reduction(+ : kl)
    for (size_t t = 0; t < rows; t++) {
        float *lc = cand + t * W;
        eng_log_softmax(lc, (int)W, 0, lc);
        const float *lr = r->ref + t * W;
        double s = 0;
        for (size_t v = 0; v < W; v++)
            s += qk_exp((double)lr[v]) * ((double)lr[v] - lc[v]);
        kl += s;
    }
    return kl / (double)rows;
}

/* Searches the input-channel scales of group gr on capture c (nothing is folded yet): candidates
 * are s = 1, AutoAWQ's duo-scaled grid (x^α / (w^(1−α) + 1e-4)) and, with duo, the plain grid x^α,
 * each normalized by sqrt(max · min); the loss of a candidate is the squared error of the whole
 * block's output (every other linear as it is) with the group's linears fake-quantized as
 * Q(W·s)/s — or, with gr->linear_loss, of lin[0]'s output on the captured rows. The best scales
 * go to s [n_in]. */
static int search(awq_run *r, const group *gr, const capture *c, float *s, awq_group_report *rep)
{
    const int64_t n_in = c->n_in;
    float *xm = malloc((size_t)n_in * sizeof *xm), *wm = calloc((size_t)n_in, sizeof *wm);
    float *imat = malloc((size_t)n_in * sizeof *imat), *cand = malloc((size_t)n_in * sizeof *cand);
    float *buf[MAX_LIN] = {NULL};
    int ok = xm && wm && imat && cand;
    for (int k = 0; k < gr->n_lin && ok; k++)
        ok = (buf[k] = malloc((size_t)(gr->lin[k]->ne0 * gr->lin[k]->ne1) * sizeof(float))) != NULL;
    /* linear loss: lin[0]'s outputs [T][n_out] on T captured rows, as it is and per candidate */
    const int T = gr->linear_loss ? (c->n_rows < r->o.search_tokens ? c->n_rows : r->o.search_tokens) : 0;
    const int64_t n_out = gr->lin[0]->ne1;
    float *yref = NULL, *ycur = NULL;
    if (ok && T > 0) {
        ok = (yref = malloc((size_t)T * (size_t)n_out * sizeof *yref)) &&
             (ycur = malloc((size_t)T * (size_t)n_out * sizeof *ycur));
        if (ok)
            eng_gemm_f32(gr->lin[0]->w, n_out, n_in, c->rows, T, yref);
    }
    int rc = !ok ? qk_err_set(r->err, QK_ENOMEM, "out of memory in the AWQ search")
             : gr->linear_loss ? QK_OK : block_out(r, r->ref);
    const size_t W = eval_width(r);
    for (size_t t = 0; !rc && !gr->linear_loss && r->o.output_loss && t < (size_t)r->n_eval * r->seq_len; t++)
        eng_log_softmax(r->ref + t * W, (int)W, 0, r->ref + t * W);
    for (int64_t j = 0; j < n_in; j++)
        s[j] = 1.0f;
    if (rc || r->o.rtn || c->count == 0 || (gr->linear_loss && T == 0)) {
        for (int k = 0; k < MAX_LIN; k++)
            free(buf[k]);
        free(xm), free(wm), free(imat), free(cand), free(yref), free(ycur);
        return rc;
    }
    for (int64_t j = 0; j < n_in; j++)
        xm[j] = (float)(c->abs_sum[j] / (double)c->count);
    int64_t out_tot = 0;
    const int gs = r->o.group > 0 && n_in % r->o.group == 0 ? r->o.group : (int)n_in;
    for (int k = 0; k < gr->n_lin; k++) {
        const owned_w *L = gr->lin[k];
        out_tot += L->ne1;
        for (int64_t i = 0; i < L->ne1; i++)
            for (int64_t g0 = 0; g0 < n_in; g0 += gs) {
                const float *row = L->w + i * n_in + g0;
                float mx = 0;
                for (int j = 0; j < gs; j++)
                    mx = fabsf(row[j]) > mx ? fabsf(row[j]) : mx;
                for (int j = 0; j < gs; j++)
                    wm[g0 + j] += fabsf(row[j]) / (mx + 1e-6f);
            }
    }
    for (int64_t j = 0; j < n_in; j++)
        wm[j] /= (float)out_tot;
    const int n_cand = 1 + r->o.grid * (r->o.duo ? 2 : 1);
    double best = INFINITY;
    for (int ci = 0; ci < n_cand && !rc; ci++) {
        /* 0: identity; 1..grid: duo (or plain) α = (ci − 1)/grid; then plain */
        const int duo = r->o.duo && ci >= 1 && ci <= r->o.grid;
        const double alpha = ci == 0 ? -1 : (double)((ci - 1) % r->o.grid) / r->o.grid;
        double smax = 0, smin = INFINITY;
        for (int64_t j = 0; j < n_in; j++) {
            double v = ci == 0 ? 1.0 : duo ? qk_pow(xm[j], alpha) / (qk_pow(wm[j], 1 - alpha) + 1e-4)
                                           : qk_pow(xm[j], alpha);
            v = v < 1e-4 ? 1e-4 : v;
            if (!isfinite(v))
                v = 1;
            cand[j] = (float)v;
            smax = v > smax ? v : smax;
            smin = v < smin ? v : smin;
        }
        const float norm = (float)sqrt(smax * smin);
        for (int64_t j = 0; j < n_in; j++) {
            cand[j] /= norm;
            imat[j] = (float)(c->sq_sum[j] / (double)c->count / ((double)cand[j] * cand[j]));
        }
        for (int k = 0; k < gr->n_lin; k++) {
            owned_w *L = gr->lin[k];
            for (int64_t i = 0; i < L->ne1; i++)
                for (int64_t j = 0; j < n_in; j++)
                    buf[k][i * n_in + j] = L->w[i * n_in + j] * cand[j];
            fake_matrix(r, type_of(r, L->name), buf[k], n_in, L->ne1, r->o.use_imatrix ? imat : NULL, buf[k]);
            for (int64_t i = 0; i < L->ne1; i++)
                for (int64_t j = 0; j < n_in; j++)
                    buf[k][i * n_in + j] /= cand[j];
            if (!gr->linear_loss)
                L->t->data = buf[k];
        }
        double loss;
        if (gr->linear_loss) {
            eng_gemm_f32(buf[0], n_out, n_in, c->rows, T, ycur);
            loss = sq_err(ycur, yref, (size_t)T * (size_t)n_out) / (double)((size_t)T * (size_t)n_out);
        } else {
            rc = block_out(r, r->work);
            for (int k = 0; k < gr->n_lin; k++)
                gr->lin[k]->t->data = gr->lin[k]->w;
            loss = rc ? INFINITY : eval_loss(r, r->work);
        }
        if (ci == 0)
            rep->loss0 = loss;
        if (loss < best) {
            best = loss;
            rep->alpha = ci == 0 ? 0 : alpha + (duo ? 0 : 1); /* ≥ 1: the plain grid */
            memcpy(s, cand, (size_t)n_in * sizeof *s);
        }
    }
    rep->loss = best;
    for (int k = 0; k < MAX_LIN; k++)
        free(buf[k]);
    free(xm), free(wm), free(imat), free(cand), free(yref), free(ycur);
    return rc;
}

/* ---- clipping ---------------------------------------------------------------------------------- */

static int clip_group_size(const awq_run *r, int type, int64_t n_in)
{
    if (type < 0)
        return r->o.group;
    const q_type_info_t *ti = q_type_info(type);
    const int g = ti && ti->blck_size >= 256 ? 256 : 128;
    return n_in % g == 0 ? g : (int)n_in;
}

/* Clamps each (row, group) of L to the shrunk range with the least partial-output error on the
 * (scaled) inputs x [T][n_in]. */
/* The linears GPTQ rounds, with the capture that holds their inputs (-1: an expert tensor, whose
 * experts each have their own, E_IN or E_DOWN). */
static const struct {
    ga_kind kind;
    int cap, ecap;
} GPTQ_LIN[] = {{GA_T_ATTN_Q, G_QKV, 0},       {GA_T_ATTN_K, G_QKV, 0},      {GA_T_ATTN_V, G_QKV, 0},
                {GA_T_ATTN_OUT, G_O, 0},       {GA_T_FFN_GATE, G_GATEUP, 0}, {GA_T_FFN_UP, G_GATEUP, 0},
                {GA_T_FFN_DOWN, G_DOWN, 0},    {GA_T_FFN_GATE_EXPS, -1, 0},  {GA_T_FFN_UP_EXPS, -1, 0},
                {GA_T_FFN_DOWN_EXPS, -1, 1}};

/* Whether GPTQ will round the linear named name of the current block (AutoAWQ's quantizer only). */
static int gptq_applies(const awq_run *r, const char *name)
{
    if (!r->o.gptq || r->o.rtn || type_of(r, name) >= 0)
        return 0;
    char buf[GGUF_MAX_NAME];
    for (size_t k = 0; k < sizeof GPTQ_LIN / sizeof GPTQ_LIN[0]; k++)
        if (ga_tensor_name(GPTQ_LIN[k].kind, r->block, buf, sizeof buf) && !strcmp(buf, name))
            return 1;
    return 0;
}

static void clip_linear(awq_run *r, owned_w *L, const float *x, int T, const float *imat)
{
    const int64_t n_in = L->ne0;
    const int type = type_of(r, L->name);
    /* GPTQ picks each group's range itself: ranges tuned for rounding to nearest made it worse */
    if (type == Q_TYPE_F32 || type == Q_TYPE_F16 || type == Q_TYPE_BF16 || gptq_applies(r, L->name))
        return;
    const int gs = clip_group_size(r, type, n_in);
    const int n_shrink = r->o.grid / 2;
#pragma omp parallel
    {
        float *cur = malloc((size_t)gs * sizeof *cur), *deq = malloc((size_t)gs * sizeof *deq);
        void *scratch = malloc((size_t)gs * 4 + 256);
        double *orig = malloc((size_t)T * sizeof *orig);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < L->ne1; i++) {
            for (int64_t g0 = 0; g0 < n_in; g0 += gs) {
                float *w = L->w + i * n_in + g0;
                float mx = 0, lo = w[0], hi = w[0];
                for (int j = 0; j < gs; j++) {
                    mx = fabsf(w[j]) > mx ? fabsf(w[j]) : mx;
                    lo = w[j] < lo ? w[j] : lo;
                    hi = w[j] > hi ? w[j] : hi;
                }
                if (!(mx > 0))
                    continue;
                for (int t = 0; t < T; t++) {
                    double acc = 0;
                    for (int j = 0; j < gs; j++)
                        acc += (double)x[(size_t)t * n_in + g0 + j] * w[j];
                    orig[t] = acc;
                }
                /* the range [lo·(1 − a/grid), hi·(1 − b/grid)]: AutoAWQ shrinks max|w| on both
                 * sides alike (a = b); shrinking one end alone also fits skewed groups */
                double best = INFINITY;
                float best_lo = lo, best_hi = hi;
                for (int a = 0; a < n_shrink; a++)
                    for (int b = 0; b < n_shrink; b++) {
                        /* symmetric shrinks, and one end shrunk with the other kept */
                        if (a != b && (!r->o.asym_clip || (a && b)))
                            continue;
                        const float l0 = r->o.asym_clip ? lo * (1.0f - (float)a / (float)r->o.grid)
                                                        : -mx * (1.0f - (float)a / (float)r->o.grid);
                        const float h0 = r->o.asym_clip ? hi * (1.0f - (float)b / (float)r->o.grid)
                                                        : mx * (1.0f - (float)b / (float)r->o.grid);
                        for (int j = 0; j < gs; j++)
                            cur[j] = w[j] > h0 ? h0 : w[j] < l0 ? l0 : w[j];
                        fake_row(r, type, cur, gs, imat ? imat + g0 : NULL, deq, scratch);
                        double e = 0;
                        for (int t = 0; t < T; t++) {
                            double acc = 0;
                            for (int j = 0; j < gs; j++)
                                acc += (double)x[(size_t)t * n_in + g0 + j] * deq[j];
                            e += (acc - orig[t]) * (acc - orig[t]);
                        }
                        if (e < best)
                            best = e, best_lo = l0, best_hi = h0;
                    }
                for (int j = 0; j < gs; j++)
                    w[j] = w[j] > best_hi ? best_hi : w[j] < best_lo ? best_lo : w[j];
            }
        }
        free(cur), free(deq), free(scratch), free(orig);
    }
}

/* ---- GPTQ rounding ------------------------------------------------------------------------------ */
/* Round-to-nearest treats every weight alone. GPTQ (Frantar et al., 2022) quantizes a row's columns
 * in order and spreads each rounding error over the columns not yet quantized, weighted by the
 * inverse Hessian of the layer's squared output error, H = Σ x xᵀ over the captured inputs (as the
 * folded model sees them). The grid stays AutoAWQ's: asymmetric `bits` bits per group of `group`
 * columns, its scale and zero taken from the row's current (error-updated) values when the group
 * starts, as AutoGPTQ does. Rows are independent, so each thread takes whole rows: the result does
 * not depend on the thread count. */

/* A = L Lᵀ: the lower Cholesky factor into the lower triangle of a [n][n] (read from it), rows of
 * L in parallel. -1 when A is not positive definite. */
static int chol_lower(double *a, int64_t n)
{
    for (int64_t j = 0; j < n; j++) {
        double d = a[j * n + j];
        for (int64_t k = 0; k < j; k++)
            d -= a[j * n + k] * a[j * n + k];
        if (!(d > 0))
            return -1;
        d = sqrt(d);
        a[j * n + j] = d;
#pragma omp parallel for schedule(static) if (n - j > 256)
        for (int64_t i = j + 1; i < n; i++) {
            double v = a[i * n + j];
            for (int64_t k = 0; k < j; k++)
                v -= a[i * n + k] * a[j * n + k];
            a[i * n + j] = v / d;
        }
    }
    return 0;
}

/* The upper Cholesky factor U of H⁻¹ (H⁻¹ = Uᵀ U) in the upper triangle of h [n][n] (symmetric,
 * damped). -1 when H is not positive definite, -2 out of memory. */
static int chol_inverse_upper(double *h, int64_t n)
{
    if (chol_lower(h, n))
        return -1;
    /* L⁻¹ transposed into mt (mt[j][i] = (L⁻¹)[i][j]): columns are independent, each one thread's */
    double *mt = calloc((size_t)(n * n), sizeof *mt);
    if (!mt)
        return -2;
#pragma omp parallel for schedule(dynamic, 8)
    for (int64_t j = 0; j < n; j++) {
        double *c = mt + j * n;
        c[j] = 1.0 / h[j * n + j];
        for (int64_t i = j + 1; i < n; i++) {
            double v = 0;
            for (int64_t k = j; k < i; k++)
                v -= h[i * n + k] * c[k];
            c[i] = v / h[i * n + i];
        }
    }
    /* H⁻¹ = L⁻ᵀ L⁻¹, whole: (i, j) = Σ_{k ≥ max(i, j)} (L⁻¹)[k][i] (L⁻¹)[k][j] */
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++) {
            double v = 0;
            for (int64_t k = j; k < n; k++)
                v += mt[i * n + k] * mt[j * n + k];
            h[i * n + j] = h[j * n + i] = v;
        }
    free(mt);
    /* H⁻¹ = Uᵀ U with U = Lᵀ of H⁻¹'s lower factor */
    if (chol_lower(h, n))
        return -1;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++)
            h[i * n + j] = h[j * n + i];
    return 0;
}

/* U of the damped Hessian of inputs x [T][n] (see chol_inverse_upper) into *u, and which inputs
 * are dead (never nonzero: their weights are free) into dead [n]; *u NULL when H cannot be
 * factored (the linears then keep round-to-nearest). */
static int gptq_hessian(awq_run *r, const float *x, int T, int64_t n, double **u, uint8_t *dead)
{
    *u = NULL;
    double *h = calloc((size_t)(n * n), sizeof *h);
    if (!h)
        return qk_err_set(r->err, QK_ENOMEM, "out of memory for GPTQ's %lld x %lld Hessian", (long long)n,
                          (long long)n);
    /* H = Σ x xᵀ as one matrix product of xᵀ with itself: SIMD, canonical order (so exactly
     * symmetric and the same for any thread count) */
    float *xt = calloc((size_t)n * (size_t)T, sizeof *xt), *hf = malloc((size_t)(n * n) * sizeof *hf);
    if (!xt || !hf) {
        free(xt), free(hf), free(h);
        return qk_err_set(r->err, QK_ENOMEM, "out of memory for GPTQ's Hessian");
    }
    for (int t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++)
            xt[(size_t)i * T + t] = x[(size_t)t * n + i];
    eng_gemm_f32(xt, n, T, xt, (int)n, hf);
    for (int64_t i = 0; i < n * n; i++)
        h[i] = hf[i];
    free(xt), free(hf);
    /* dead inputs: nothing to preserve; 1 % of the mean diagonal as damping (AutoGPTQ's) */
    double mean = 0;
    for (int64_t i = 0; i < n; i++)
        mean += h[i * n + i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) {
        dead[i] = h[i * n + i] == 0;
        if (dead[i])
            h[i * n + i] = 1;
        h[i * n + i] += 0.01 * (mean > 0 ? mean : 1);
    }
    const int c = chol_inverse_upper(h, n);
    if (c)
        free(h);
    else
        *u = h;
    return c == -2 ? qk_err_set(r->err, QK_ENOMEM, "out of memory for GPTQ's inverse Hessian") : QK_OK;
}

/* GPTQ on the rows w [rows][n] with U from gptq_hessian (NULL: round to nearest): w gets the
 * dequantized values, codes [rows][n], scales and zeros [rows][n / group] the checkpoint's. */
static void gptq_rows(const awq_run *r, float *w_all, int64_t rows, int64_t n, const double *h,
                      const uint8_t *dead, uint8_t *codes, float *scales, uint8_t *zeros)
{
    const int64_t g = r->o.group, ng = n / g;
    const float qmax = (float)((1 << r->o.bits) - 1);
    if (!h) {
        for (int64_t o = 0; o < rows; o++)
            awq_quantize_row(w_all + o * n, n, (int)g, r->o.bits, codes + o * n, scales + o * ng,
                             zeros + o * ng, w_all + o * n);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; dead[i] && o < rows; o++)
            w_all[o * n + i] = 0;
#pragma omp parallel
    {
        double *row = malloc((size_t)n * sizeof *row);
        float *grp = malloc((size_t)g * sizeof *grp);
#pragma omp for schedule(static)
        for (int64_t o = 0; o < rows; o++) {
            if (!row || !grp)
                continue;
            float *w = w_all + o * n, *sc = scales + o * ng;
            uint8_t *zr = zeros + o * ng;
            for (int64_t i = 0; i < n; i++)
                row[i] = w[i];
            for (int64_t i = 0; i < n; i++) {
                const int64_t gi = i / g;
                if (i % g == 0) { /* the group's grid from its current values */
                    for (int64_t j = 0; j < g; j++)
                        grp[j] = (float)row[i + j];
                    awq_quantize_row(grp, g, (int)g, r->o.bits, NULL, sc + gi, zr + gi, NULL);
                }
                const float z = zr[gi];
                float v = nearbyintf((float)row[i] / sc[gi]) + z;
                v = v < 0 ? 0 : v > qmax ? qmax : v;
                codes[o * n + i] = (uint8_t)v;
                const float dq = (v - z) * sc[gi];
                w[i] = dq;
                const double e = (row[i] - dq) / h[i * n + i];
                for (int64_t j = i + 1; j < n; j++)
                    row[j] -= e * h[i * n + j];
            }
        }
        free(row);
        free(grp);
    }
}

/* Room for a linear's codes, scales and zeros. */
static int gptq_alloc(awq_run *r, owned_w *L)
{
    const int64_t ng = L->ne0 / r->o.group;
    L->codes = malloc((size_t)(L->ne0 * L->ne1));
    L->zeros = malloc((size_t)(ng * L->ne1));
    L->scales = malloc((size_t)(ng * L->ne1) * sizeof *L->scales);
    return L->codes && L->zeros && L->scales ? QK_OK : qk_err_set(r->err, QK_ENOMEM, "out of memory");
}

/* ---- one block ---------------------------------------------------------------------------------- */

static int fold_and_clip(awq_run *r, int l, const group *gr, capture *c, float *prev_vec,
                         owned_w *prev_lin, float *prev_bias)
{
    const int64_t n_in = c->n_in;
    float *s = malloc((size_t)n_in * sizeof *s);
    if (!s)
        return qk_err_set(r->err, QK_ENOMEM, "out of memory");
    if (grow((void **)&r->g, &r->cap_g, r->n_g + 1, sizeof *r->g)) {
        free(s);
        return qk_err_set(r->err, QK_ENOMEM, "out of memory");
    }
    awq_group_report *rep = &r->g[r->n_g++];
    memset(rep, 0, sizeof *rep);
    snprintf(rep->name, sizeof rep->name, "%s", gr->lin[0]->name);
    rep->block = l;
    rep->expert = -1; /* the caller names the expert of a slice */
    int rc = search(r, gr, c, s, rep);
    if (rc) {
        free(s);
        return rc;
    }
    /* fold: the producer of the input divided by s, the consumers' columns multiplied */
    for (int64_t j = 0; j < n_in; j++) {
        if (prev_vec)
            prev_vec[j] /= s[j];
        if (prev_lin)
            for (int64_t i = 0; i < prev_lin->ne0; i++)
                prev_lin->w[j * prev_lin->ne0 + i] /= s[j];
        if (prev_bias)
            prev_bias[j] /= s[j];
    }
    for (int k = 0; k < gr->n_lin; k++) {
        owned_w *L = gr->lin[k];
        for (int64_t i = 0; i < L->ne1; i++)
            for (int64_t j = 0; j < n_in; j++)
                L->w[i * n_in + j] *= s[j];
        const int64_t ns = L->ne2 * n_in; /* a 3-D tensor: the same s for every expert */
        if (!L->in_scale && (L->in_scale = malloc((size_t)ns * sizeof(float))))
            for (int64_t j = 0; j < ns; j++)
                L->in_scale[j] = 1.0f;
        for (int64_t j = 0; L->in_scale && j < ns; j++)
            L->in_scale[j] *= s[j % n_in];
    }
    if (gr->router) { /* the same function: router · x = (router · s) · (x / s) */
        owned_w *R = gr->router;
        for (int64_t i = 0; i < R->ne1; i++)
            for (int64_t j = 0; j < n_in; j++)
                R->w[i * n_in + j] *= s[j];
        if (!R->in_scale && (R->in_scale = malloc((size_t)n_in * sizeof(float))))
            for (int64_t j = 0; j < n_in; j++)
                R->in_scale[j] = 1.0f;
        for (int64_t j = 0; R->in_scale && j < n_in; j++)
            R->in_scale[j] *= s[j];
    }
    /* the captured input as the folded model sees it */
    for (int t = 0; t < c->n_rows; t++)
        for (int64_t j = 0; j < n_in; j++)
            c->rows[(size_t)t * n_in + j] /= s[j];
    float *imat = malloc((size_t)n_in * sizeof *imat);
    for (int64_t j = 0; imat && j < n_in; j++)
        imat[j] = (float)(c->sq_sum[j] / (double)(c->count ? c->count : 1) / ((double)s[j] * s[j]));
    if (r->o.clip && !r->o.rtn && !gr->skip_clip) {
        const int T = c->n_rows < r->o.clip_tokens ? c->n_rows : r->o.clip_tokens;
        /* evenly spaced among the sampled rows */
        float *xc = malloc((size_t)T * (size_t)n_in * sizeof *xc);
        if (!xc) {
            free(s), free(imat);
            return qk_err_set(r->err, QK_ENOMEM, "out of memory");
        }
        for (int t = 0; t < T; t++)
            memcpy(xc + (size_t)t * n_in, c->rows + (size_t)((int64_t)t * c->n_rows / T) * n_in,
                   (size_t)n_in * sizeof *xc);
        for (int k = 0; k < gr->n_lin; k++)
            if (gr->lin[k]->ne2 == 1) /* experts: on their own routed rows (clip_captured) */
                clip_linear(r, gr->lin[k], xc, T, r->o.use_imatrix ? imat : NULL);
        free(xc);
    }
    free(s);
    free(imat);
    return QK_OK;
}

/* After a block: its linears run fake-quantized while later blocks are processed. */
/* GPTQ for the dense linears of a block with AutoAWQ's quantizer, once every fold is done (a later
 * fold rescales earlier linears' rows, which would move them off their grid). */
/* GPTQ for expert tensor o: expert e on its own routed rows (gate/up rows captured before the
 * fold: divided by the scales here); an expert no token reached is rounded to nearest. */
static int gptq_experts(awq_run *r, owned_w *o, int which)
{
    const int64_t n = o->ne0, rows = o->ne1 / o->ne2, ng = n / r->o.group;
    int rc = gptq_alloc(r, o);
    float *x = NULL;
    uint8_t *dead = malloc((size_t)n);
    if (!rc && !dead)
        rc = qk_err_set(r->err, QK_ENOMEM, "out of memory");
    for (int64_t e = 0; !rc && e < o->ne2; e++) {
        const capture *c = e < r->n_ecap ? &r->ecap[which][e] : NULL;
        double *u = NULL;
        if (c && c->n_rows > 0 && c->n_in == n) {
            const float *xs = c->rows;
            if (which == E_IN && o->in_scale) {
                float *nx = realloc(x, (size_t)c->n_rows * (size_t)n * sizeof *x);
                if (!nx) {
                    rc = qk_err_set(r->err, QK_ENOMEM, "out of memory");
                    break;
                }
                x = nx;
                for (int t = 0; t < c->n_rows; t++)
                    for (int64_t j = 0; j < n; j++)
                        x[(size_t)t * n + j] = c->rows[(size_t)t * n + j] / o->in_scale[e * n + j];
                xs = x;
            }
            rc = gptq_hessian(r, xs, c->n_rows, n, &u, dead);
        }
        if (!rc)
            gptq_rows(r, o->w + e * rows * n, rows, n, u, dead, o->codes + e * rows * n, o->scales + e * rows * ng,
                      o->zeros + e * rows * ng);
        free(u);
    }
    free(x);
    free(dead);
    return rc;
}

/* GPTQ for the linears of a block with AutoAWQ's quantizer, once every fold is done (a later
 * fold rescales earlier linears' rows, which would move them off their grid). */
static int gptq_block(awq_run *r, eng_layer *L)
{
    if (!r->o.gptq || r->o.rtn)
        return QK_OK;
    double *u[4] = {NULL, NULL, NULL, NULL}; /* per capture, made when a linear first needs it */
    uint8_t *dead[4] = {NULL, NULL, NULL, NULL};
    int done[4] = {0, 0, 0, 0}, rc = QK_OK;
    for (size_t k = 0; k < sizeof GPTQ_LIN / sizeof GPTQ_LIN[0] && !rc; k++) {
        eng_tensor *t = &L->w[GPTQ_LIN[k].kind];
        owned_w *o = t->data ? find_owned(r, t->name) : NULL;
        const int ci = GPTQ_LIN[k].cap;
        if (!o || !gptq_applies(r, o->name) || o->ne0 % r->o.group)
            continue;
        if (ci < 0) {
            rc = gptq_experts(r, o, GPTQ_LIN[k].ecap ? E_DOWN : E_IN);
            continue;
        }
        const capture *c = &r->cap[ci];
        if (c->n_in != o->ne0 || c->n_rows == 0)
            continue;
        if (!done[ci]) {
            done[ci] = 1;
            if (!(dead[ci] = malloc((size_t)c->n_in)))
                rc = qk_err_set(r->err, QK_ENOMEM, "out of memory");
            else
                rc = gptq_hessian(r, c->rows, c->n_rows, c->n_in, &u[ci], dead[ci]);
        }
        if (!rc && u[ci] && !(rc = gptq_alloc(r, o)))
            gptq_rows(r, o->w, o->ne1, o->ne0, u[ci], dead[ci], o->codes, o->scales, o->zeros);
    }
    for (int k = 0; k < 4; k++)
        free(u[k]), free(dead[k]);
    return rc;
}

static int quantize_block_for_run(awq_run *r, eng_layer *L)
{
    int rc0 = gptq_block(r, L);
    if (rc0)
        return rc0;
    /* 3-D expert tensors as all their rows (expert e's at e · rows, where the engine reads it);
     * the router (GA_T_FFN_GATE_INP) runs folded but unquantized */
    static const ga_kind KINDS[] = {GA_T_ATTN_Q, GA_T_ATTN_K, GA_T_ATTN_V, GA_T_ATTN_OUT,
                                    GA_T_FFN_GATE, GA_T_FFN_UP, GA_T_FFN_DOWN,
                                    GA_T_FFN_GATE_EXPS, GA_T_FFN_UP_EXPS, GA_T_FFN_DOWN_EXPS,
                                    GA_T_FFN_GATE_SHEXP, GA_T_FFN_UP_SHEXP, GA_T_FFN_DOWN_SHEXP};
    for (size_t k = 0; k < sizeof KINDS / sizeof KINDS[0]; k++) {
        eng_tensor *t = &L->w[KINDS[k]];
        owned_w *o = t->data ? find_owned(r, t->name) : NULL;
        if (!o)
            continue;
        const int type = type_of(r, o->name);
        if (type >= 0 && q_kernels_get(type) && type != Q_TYPE_F32) {
            const size_t rb = q_row_size(type, o->ne0);
            if (!(o->run = malloc(rb * (size_t)o->ne1)))
                return qk_err_set(r->err, QK_ENOMEM, "out of memory");
            int rc = q_quantize_rows(type, o->w, o->run, o->ne1, o->ne0, NULL, 0, NULL, r->err);
            if (rc)
                return rc;
            t->type = type;
            t->data = o->run;
        } else {
            if (!(o->run = malloc((size_t)(o->ne0 * o->ne1) * sizeof(float))))
                return qk_err_set(r->err, QK_ENOMEM, "out of memory");
            if (o->codes) /* GPTQ's values are on their grid already */
                memcpy(o->run, o->w, (size_t)(o->ne0 * o->ne1) * sizeof(float));
            else
                fake_matrix(r, type, o->w, o->ne0, o->ne1, NULL, o->run);
            t->type = Q_TYPE_F32;
            t->data = o->run;
        }
    }
    return QK_OK;
}

/* Expert e's matrix of a 3-D owned tensor as a plain one: w, in_scale point into W's arrays.
 * A view lives on the caller's stack and owns nothing: whatever is done to it must land in W's
 * arrays (rows e · rows.., scales e · ne0..), never in new allocations hung on the view. */
static owned_w expert_view(const owned_w *W, int64_t e)
{
    owned_w v = *W;
    const int64_t rows = W->ne1 / W->ne2;
    v.w = W->w + e * rows * W->ne0;
    v.ne1 = rows;
    v.ne2 = 1;
    v.in_scale = W->in_scale ? W->in_scale + e * W->ne0 : NULL;
    v.run = NULL;
    return v;
}

/* Clips L on capture c's sampled rows (at most clip_tokens, evenly spaced), each divided by
 * s [n_in] (the rows were captured before the group was folded); a ggml quantizer's importance
 * weights are c's mean x² / s². */
static int clip_captured(awq_run *r, owned_w *L, const capture *c, const float *s)
{
    const int64_t n_in = c->n_in;
    const int T = c->n_rows < r->o.clip_tokens ? c->n_rows : r->o.clip_tokens;
    if (!r->o.clip || r->o.rtn || T <= 0)
        return QK_OK;
    float *xc = malloc((size_t)T * (size_t)n_in * sizeof *xc), *imat = malloc((size_t)n_in * sizeof *imat);
    if (!xc || !imat) {
        free(xc), free(imat);
        return qk_err_set(r->err, QK_ENOMEM, "out of memory");
    }
    for (int t = 0; t < T; t++) {
        const float *row = c->rows + (size_t)((int64_t)t * c->n_rows / T) * n_in;
        for (int64_t j = 0; j < n_in; j++)
            xc[(size_t)t * n_in + j] = s ? row[j] / s[j] : row[j];
    }
    for (int64_t j = 0; j < n_in; j++)
        imat[j] = (float)(c->sq_sum[j] / (double)(c->count ? c->count : 1) / (s ? (double)s[j] * s[j] : 1.0));
    clip_linear(r, L, xc, T, r->o.use_imatrix ? imat : NULL);
    free(xc), free(imat);
    return QK_OK;
}

/* A mixture of experts' feed-forward, once attention is done and its inputs are captured: the
 * gate/up group over all experts (and the shared expert) with the router folded alongside, each
 * expert's gate and up clipped on its routed rows, then each expert's down ← its up. */
static int process_moe(awq_run *r, int l, eng_layer *L, owned_w *gate, owned_w *up, owned_w *down,
                       owned_w *router, owned_w *sh_gate, owned_w *sh_up, owned_w *sh_down)
{
    const int shared = sh_gate != NULL;
    const group g_gu = {{gate, up, sh_gate, sh_up}, shared ? 4 : 2, 0, router, 0};
    int rc = fold_and_clip(r, l, &g_gu, &r->cap[G_GATEUP], L->v[GA_T_FFN_NORM], NULL, NULL);
    if (!rc && shared) {
        const group g_d = {{sh_down}, 1, 0, NULL, 0};
        rc = fold_and_clip(r, l, &g_d, &r->cap[G_DOWN], NULL, sh_up, NULL);
    }
    for (int64_t e = 0; !rc && e < gate->ne2; e++) {
        /* gate's scales (s of the group just folded: 1 before it) are up's */
        owned_w vg = expert_view(gate, e), vu = expert_view(up, e);
        rc = clip_captured(r, &vg, &r->ecap[E_IN][e], vg.in_scale);
        if (!rc)
            rc = clip_captured(r, &vu, &r->ecap[E_IN][e], vg.in_scale);
    }
    for (int64_t e = 0; !rc && e < down->ne2; e++) {
        if (r->ecap[E_DOWN][e].count == 0)
            continue; /* no routed token: s = 1, not clipped */
        owned_w vd = expert_view(down, e), vu = expert_view(up, e);
        const group g_d = {{&vd}, 1, 0, NULL, 1};
        rc = fold_and_clip(r, l, &g_d, &r->ecap[E_DOWN][e], NULL, &vu, NULL);
        if (!rc)
            r->g[r->n_g - 1].expert = (int)e;
    }
    return rc;
}

static int process_block(awq_run *r, int l, eng_ctx *ctx, float *X, int n_seq)
{
    eng_model *m = r->m;
    eng_layer *L = &m->layers[l];
    const int d = m->n_embd;
    owned_w *q = own(r, &L->w[GA_T_ATTN_Q]), *k = own(r, &L->w[GA_T_ATTN_K]);
    owned_w *v = own(r, &L->w[GA_T_ATTN_V]), *o = own(r, &L->w[GA_T_ATTN_OUT]);
    owned_w *gate = NULL, *up = NULL, *down = NULL;
    owned_w *router = NULL, *sh_gate = NULL, *sh_up = NULL, *sh_down = NULL; /* experts */
    const int shared = L->moe && L->w[GA_T_FFN_GATE_SHEXP].data;
    gate = own(r, &L->w[L->moe ? GA_T_FFN_GATE_EXPS : GA_T_FFN_GATE]);
    up = own(r, &L->w[L->moe ? GA_T_FFN_UP_EXPS : GA_T_FFN_UP]);
    down = own(r, &L->w[L->moe ? GA_T_FFN_DOWN_EXPS : GA_T_FFN_DOWN]);
    if (L->moe && (router = own(r, &L->w[GA_T_FFN_GATE_INP])))
        router->dense = 1;
    if (shared) {
        sh_gate = own(r, &L->w[GA_T_FFN_GATE_SHEXP]);
        sh_up = own(r, &L->w[GA_T_FFN_UP_SHEXP]);
        sh_down = own(r, &L->w[GA_T_FFN_DOWN_SHEXP]);
    }
    if (!q || !k || !v || !o || !gate || !up || !down || (L->moe && !router) ||
        (shared && (!sh_gate || !sh_up || !sh_down)))
        return qk_err_set(r->err, QK_ENOMEM, "block %d: out of memory (or an unreadable weight type)", l);
    /* each expert's down scales (1 until its own search) */
    if (L->moe && !(down->in_scale = malloc((size_t)(down->ne2 * down->ne0) * sizeof(float))))
        return qk_err_set(r->err, QK_ENOMEM, "out of memory");
    for (int64_t j = 0; L->moe && j < down->ne2 * down->ne0; j++)
        down->in_scale[j] = 1.0f;
    const int total = n_seq * r->seq_len;
    /* GPTQ's Hessian wants more rows than the losses */
    const int gptq = r->o.gptq && !r->o.rtn && !r->o.type_of; /* GPTQ rounds AutoAWQ's grid only */
    const int want = gptq && r->o.search_tokens < AWQ_GPTQ_ROWS ? AWQ_GPTQ_ROWS : r->o.search_tokens;
    r->stride = total > want ? total / want : 1;
    const int cap = (int)((total + r->stride - 1) / r->stride);
    r->point[G_QKV] = &L->w[GA_T_ATTN_Q];
    r->point[G_O] = &L->w[GA_T_ATTN_OUT];
    /* a mixture's gate/up input: at the router (every token; the experts see their share) */
    r->point[G_GATEUP] = &L->w[L->moe ? GA_T_FFN_GATE_INP : GA_T_FFN_GATE];
    r->point[G_DOWN] = L->moe ? (shared ? &L->w[GA_T_FFN_DOWN_SHEXP] : NULL) : &L->w[GA_T_FFN_DOWN];
    const int64_t n_in[4] = {d, o->ne0, d, L->moe ? (shared ? sh_down->ne0 : 1) : down->ne0};
    for (int g = 0; g < 4; g++)
        if (capture_init(&r->cap[g], n_in[g], cap))
            return qk_err_set(r->err, QK_ENOMEM, "out of memory for the AWQ capture");
    free_expert_captures(r);
    if (L->moe) {
        /* each expert's routed rows: about clip_tokens of them (at least search_tokens spread
         * over the experts), sampled evenly from what an expert gets when routing is even */
        const int64_t n_exp = down->ne2, per = (int64_t)total * m->n_expert_used / n_exp;
        int64_t cap_e = (int64_t)r->o.search_tokens * m->n_expert_used / n_exp;
        cap_e = cap_e < r->o.clip_tokens ? r->o.clip_tokens : cap_e;
        cap_e = cap_e > per ? (per > 0 ? per : 1) : cap_e;
        r->ecap[E_IN] = calloc((size_t)n_exp, sizeof(capture));
        r->ecap[E_DOWN] = calloc((size_t)n_exp, sizeof(capture));
        if (!r->ecap[E_IN] || !r->ecap[E_DOWN])
            return qk_err_set(r->err, QK_ENOMEM, "out of memory for the AWQ capture");
        r->n_ecap = (int)n_exp;
        for (int64_t e = 0; e < n_exp; e++) {
            if (capture_init(&r->ecap[E_IN][e], gate->ne0, (int)cap_e) ||
                capture_init(&r->ecap[E_DOWN][e], down->ne0, (int)cap_e))
                return qk_err_set(r->err, QK_ENOMEM, "out of memory for the AWQ expert captures");
            r->ecap[E_IN][e].stride = r->ecap[E_DOWN][e].stride = per / cap_e > 1 ? per / cap_e : 1;
        }
        r->exp_point[E_IN] = &L->w[GA_T_FFN_GATE_EXPS];
        r->exp_point[E_DOWN] = &L->w[GA_T_FFN_DOWN_EXPS];
    }
    float *x = malloc((size_t)r->seq_len * d * sizeof *x);
    if (!x)
        return qk_err_set(r->err, QK_ENOMEM, "out of memory");
    eng_ctx_set_observer(ctx, observe, r);
    int rc = QK_OK;
    for (int s = 0; s < n_seq && !rc; s++) {
        memcpy(x, X + (size_t)s * r->seq_len * d, (size_t)r->seq_len * d * sizeof *x);
        r->tok_base = (int64_t)s * r->seq_len;
        rc = eng_blocks(ctx, x, r->seq_len, l, l + 1, r->err);
    }
    eng_ctx_set_observer(ctx, NULL, NULL);
    free(x);
    if (rc)
        return rc;
    /* the evaluation sequences: evenly spaced, about search_tokens tokens */
    const size_t per = (size_t)r->seq_len * d;
    int ne = r->o.search_tokens / r->seq_len;
    ne = ne < 1 ? 1 : ne > n_seq ? n_seq : ne;
    float *xin = malloc((size_t)ne * per * sizeof *xin);
    free(r->ref);
    free(r->work);
    const size_t pw = (size_t)r->seq_len * eval_width(r);
    r->ref = malloc((size_t)ne * pw * sizeof *r->ref);
    r->work = malloc((size_t)ne * pw * sizeof *r->work);
    if (!xin || !r->ref || !r->work) {
        free(xin);
        return qk_err_set(r->err, QK_ENOMEM, "out of memory for the AWQ evaluation sequences");
    }
    for (int e = 0; e < ne; e++)
        memcpy(xin + e * per, X + (size_t)((int64_t)e * n_seq / ne) * per, per * sizeof *xin);
    r->ctx = ctx;
    r->block = l;
    r->n_eval = ne;
    r->x_in = xin;
    const group g_qkv = {{q, k, v}, 3, 1, NULL, 0};
    rc = fold_and_clip(r, l, &g_qkv, &r->cap[G_QKV], L->v[GA_T_ATTN_NORM], NULL, NULL);
    if (!rc && v->ne1 == o->ne0) { /* o ← v only without grouped-query attention */
        const group g_o = {{o}, 1, 0, NULL, 0};
        rc = fold_and_clip(r, l, &g_o, &r->cap[G_O], NULL, v, L->v[GA_T_ATTN_V_B]);
    } else if (!rc && r->o.clip && !r->o.rtn) { /* not scaled, still clipped */
        capture *c = &r->cap[G_O];
        const int T = c->n_rows < r->o.clip_tokens ? c->n_rows : r->o.clip_tokens;
        clip_linear(r, o, c->rows, T, NULL);
    }
    if (!rc && !L->moe) {
        const group g_gu = {{gate, up}, 2, 0, NULL, 0};
        rc = fold_and_clip(r, l, &g_gu, &r->cap[G_GATEUP], L->v[GA_T_FFN_NORM], NULL, NULL);
    }
    if (!rc && !L->moe) {
        const group g_d = {{down}, 1, 0, NULL, 0};
        rc = fold_and_clip(r, l, &g_d, &r->cap[G_DOWN], NULL, up, L->v[GA_T_FFN_UP_B]);
    }
    if (!rc && L->moe)
        rc = process_moe(r, l, L, gate, up, down, router, sh_gate, sh_up, sh_down);
    free(xin);
    r->x_in = NULL;
    /* the next block's inputs, from this block as quantized */
    if (!rc)
        rc = quantize_block_for_run(r, L);
    for (int s = 0; s < n_seq && !rc; s++)
        rc = eng_blocks(ctx, X + (size_t)s * r->seq_len * d, r->seq_len, l, l + 1, r->err);
    return rc;
}

int awq_run_model(awq_run **out, eng_model *m, const int32_t *tokens, int n_seq, int seq_len,
                  const awq_opts *o, qk_err *err)
{
    *out = NULL;
    awq_run *r = calloc(1, sizeof *r);
    if (!r)
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    r->m = m;
    r->o = *o;
    r->err = err;
    r->seq_len = seq_len;
    if (r->o.grid <= 0)
        r->o.grid = 20;
    if (r->o.search_tokens <= 0)
        r->o.search_tokens = 2048;
    if (r->o.clip_tokens <= 0)
        r->o.clip_tokens = 512;
    eng_ctx *ctx = NULL;
    float *X = malloc((size_t)n_seq * seq_len * m->n_embd * sizeof *X);
    int rc = X ? eng_ctx_create(&ctx, m, seq_len, err)
               : qk_err_set(err, QK_ENOMEM, "out of memory for %d x %d hidden states", n_seq, seq_len);
    for (int s = 0; s < n_seq && !rc; s++)
        rc = eng_embed(ctx, tokens + (size_t)s * seq_len, seq_len, X + (size_t)s * seq_len * m->n_embd, err);
    for (int l = 0; l < m->n_layer && !rc; l++) {
        rc = process_block(r, l, ctx, X, n_seq);
        if (!rc && o->progress)
            o->progress(o->progress_user, l + 1, m->n_layer);
    }
    eng_ctx_free(ctx);
    free(X);
    if (rc) {
        awq_run_free(r);
        return rc;
    }
    *out = r;
    return QK_OK;
}
