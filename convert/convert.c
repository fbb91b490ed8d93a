/* convert.c — plan a Hugging Face checkpoint's GGUF, then stream its tensors into it. */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../calib/tokenizer.h"
#include "../formats/awq.h"
#include "../formats/bgwrite.h"
#include "../formats/hash.h"
#include "../formats/mapping.h"
#include "../formats/safetensors.h"
#include "../quant/floats.h"
#include "../quant/fp8.h"
#include "../quant/fp16.h"
#include "../quant/quant.h"
#include "../quant/types.h"
#include "convert.h"
#include "mix.h"
#include "tokenizer_export.h"

/* Rows are converted in pieces of about this many values: 16 MiB of float32 scratch, plus the
 * converted piece, keeps memory flat whatever the tensor size. */
#define CHUNK_VALUES ((int64_t)4 << 20)

/* A checkpoint tensor read as a matrix of rows × cols (cols the innermost dimension; a vector is
 * rows × 1), with its FP8 block scales when it has them. */
typedef struct {
    const st_tensor *t;
    int type;           /* enum q_type of its values (F32, F16, BF16), -1: FP8, -2: 4-bit groups */
    int64_t rows, cols;
    float *scale;       /* FP8: [ceil(rows/br)][ceil(cols/bc)] float32, owned by the plan;
                           4-bit: the scales as f32 in the checkpoint's layout */
    int64_t br, bc;
    const st_tensor *zeros; /* 4-bit: qzeros / weight_zero_point (NULL: symmetric) */
    int64_t group;      /* 4-bit: input columns per group */
    int w4;             /* 4-bit: CA_W4_AWQ or CA_W4_CT */
} src_ref;

#define SRC_W4 (-2)

typedef struct {
    cv_tensor info;
    ca_output out;      /* the description's view: transform, group, source names */
    src_ref *src;       /* out.n_src of them (NULL for generated tensors) */
    const void *data;   /* generated tensors (rope_freqs) */
    const st_tensor *last; /* the source read last in the checkpoint's order (write order) */
} plan_tensor;

struct cv_plan {
    char *dir;          /* the checkpoint folder: no output may be it or a file in it */
    ca_config cfg;
    st_model *st;
    tok_vocab *vocab;
    te_extra extra;
    ca_general general;
    plan_tensor *t;
    size_t n;
    src_ref *srcs;      /* every output's sources, one pool */
    size_t n_srcs;
    float *rope_freqs;
    int hf_layout;
    char outtype[16];
    uint32_t file_type;
    uint64_t n_params, in_bytes, out_bytes;
    size_t n_fallback;
};

void cv_options_init(cv_options *o) { memset(o, 0, sizeof *o); }

static int oom(qk_err *err) { return qk_err_set(err, QK_ENOMEM, "convert: out of memory"); }

static int type_of_dtype(st_dtype d)
{
    switch (d) {
    case ST_F32: return Q_TYPE_F32;
    case ST_F16: return Q_TYPE_F16;
    case ST_BF16: return Q_TYPE_BF16;
    default: return -1;
    }
}

static bool is_fp8(st_dtype d) { return d == ST_F8_E4M3 || d == ST_F8_E5M2; }

static uint64_t n_elements(const cv_tensor *t)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++)
        n *= (uint64_t)t->ne[d];
    return n;
}

static uint64_t bytes_as(int type, const cv_tensor *t)
{
    return (uint64_t)q_row_size(type, t->ne[0]) * (n_elements(t) / (uint64_t)t->ne[0]);
}

/* ================================================================ planning: tensors */

/* safe_open(...).keys() order: file by file, names sorted within a file. */
static int src_cmp(const st_tensor *a, const st_tensor *b)
{
    if (a->file != b->file)
        return a->file < b->file ? -1 : 1;
    return strcmp(a->name, b->name);
}

static void hf_shape_str(const int64_t *shape, int n_dims, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int d = 0; d < n_dims && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", d ? ", " : "", (long long)shape[d]);
}

/* The FP8 scale grid of s (FP8 block scales: weight_scale_inv beside the weight). */
static int load_scale(cv_plan *p, const st_tensor *w, src_ref *r, qk_err *err)
{
    char name[160];
    snprintf(name, sizeof name, "%s_scale_inv", w->name);
    const st_tensor *s = st_model_find(p->st, name);
    if (!s)
        return qk_err_set(err, QK_EFORMAT, "%s: FP8 tensor '%s' has no scale tensor '%s'", w->path, w->name, name);
    int64_t br = p->cfg.fp8_block[0] ? p->cfg.fp8_block[0] : r->rows;
    int64_t bc = p->cfg.fp8_block[1] ? p->cfg.fp8_block[1] : r->cols;
    int64_t gr = (r->rows + br - 1) / br, gc = (r->cols + bc - 1) / bc;
    int type = type_of_dtype(s->dtype);
    bool grid = s->n_dims == 2 && s->shape[0] == gr && s->shape[1] == gc;
    bool scalar = gr * gc == 1 && s->n_elements == 1;
    if (type < 0 || !(grid || scalar))
        return qk_err_set(err, QK_EFORMAT,
                          "%s: scale tensor '%s' must be F32, BF16 or F16 of shape [%lld, %lld] for the "
                          "%lld x %lld blocks of '%s'",
                          s->path, s->name, (long long)gr, (long long)gc, (long long)br, (long long)bc, w->name);
    if (!(r->scale = malloc((size_t)(gr * gc) * sizeof(float))))
        return oom(err);
    int rc = q_dequantize_rows(type, s->data, r->scale, 1, gr * gc, err);
    for (int64_t i = 0; !rc && i < gr * gc; i++)
        if (!isfinite(r->scale[i]))
            rc = qk_err_set(err, QK_ERANGE, "%s: scale tensor '%s': value %lld is not finite", s->path,
                            s->name, (long long)i);
    r->br = br, r->bc = bc;
    return rc;
}

/* The packed tensors of a 4-bit linear `base` (its name without ".weight"), suffixes in order:
 * weights, zeros, scales (and CT's weight_shape). */
static const char *const W4_AWQ[] = {".qweight", ".qzeros", ".scales"};
static const char *const W4_CT[] = {".weight_packed", ".weight_zero_point", ".weight_scale", ".weight_shape"};

static int w4_bad(const st_tensor *t, const char *what, qk_err *err)
{
    char got[96];
    hf_shape_str(t->shape, t->n_dims, got, sizeof got);
    return qk_err_set(err, QK_EFORMAT, "%s: tensor '%s' (%s [%s]): %s", t->path, t->name,
                      st_dtype_name(t->dtype), got, what);
}

/* Binds a 4-bit group-quantized linear of out x in (AutoAWQ GEMM or compressed-tensors
 * pack-quantized; formats/awq.h) to r, its scales read as f32. */
static int bind_w4(cv_plan *p, const char *wname, int64_t out, int64_t in, src_ref *r, qk_err *err)
{
    char base[160], n[200];
    snprintf(base, sizeof base, "%.*s", (int)(strlen(wname) - 7), wname);
    const int awq = p->cfg.w4 == CA_W4_AWQ;
    const char *const *sfx = awq ? W4_AWQ : W4_CT;
    const st_tensor *t[4] = {NULL};
    for (int i = 0; i < (awq ? 3 : 4); i++) {
        snprintf(n, sizeof n, "%s%s", base, sfx[i]);
        t[i] = st_model_find(p->st, n);
        if (!t[i] && !(i == 1 && !awq && p->cfg.w4_sym) && !(i == 3))
            return qk_err_set(err, QK_EFORMAT, "%s: missing tensor '%s' (%s linear of %lld x %lld)",
                              t[0] ? t[0]->path : p->dir, n, awq ? "an AWQ" : "a compressed-tensors",
                              (long long)out, (long long)in);
    }
    const int64_t g = p->cfg.w4_group ? p->cfg.w4_group : in;
    if (in % g)
        return qk_err_set(err, QK_EFORMAT, "%s: tensor '%s': %lld input columns are not a multiple of "
                          "the group size %lld", t[0]->path, t[0]->name, (long long)in, (long long)g);
    const int64_t ng = in / g;
#define SHAPE2(tt, a, b) ((tt)->n_dims == 2 && (tt)->shape[0] == (a) && (tt)->shape[1] == (b))
    if (awq) {
        if (out % 8)
            return qk_err_set(err, QK_EFORMAT, "%s: '%s': %lld output rows are not a multiple of 8",
                              t[0]->path, t[0]->name, (long long)out);
        if (t[0]->dtype != ST_I32 || !SHAPE2(t[0], in, out / 8))
            return w4_bad(t[0], "expected I32 [in, out/8]", err);
        if (t[1]->dtype != ST_I32 || !SHAPE2(t[1], ng, out / 8))
            return w4_bad(t[1], "expected I32 [in/group, out/8]", err);
        if (type_of_dtype(t[2]->dtype) < 0 || !SHAPE2(t[2], ng, out))
            return w4_bad(t[2], "expected F16/BF16/F32 [in/group, out]", err);
    } else {
        if (t[0]->dtype != ST_I32 || !SHAPE2(t[0], out, (in + 7) / 8))
            return w4_bad(t[0], "expected I32 [out, ceil(in/8)]", err);
        if (t[1] && (t[1]->dtype != ST_I32 || !SHAPE2(t[1], (out + 7) / 8, ng)))
            return w4_bad(t[1], "expected I32 [ceil(out/8), in/group]", err);
        if (type_of_dtype(t[2]->dtype) < 0 || !SHAPE2(t[2], out, ng))
            return w4_bad(t[2], "expected F16/BF16/F32 [out, in/group]", err);
        if (t[3]) {
            int64_t sh[2] = {0, 0};
            const int ok = (t[3]->dtype == ST_I64 || t[3]->dtype == ST_I32) && t[3]->n_elements == 2;
            for (int i = 0; ok && i < 2; i++) {
                if (t[3]->dtype == ST_I64)
                    memcpy(&sh[i], (const char *)t[3]->data + 8 * i, 8);
                else {
                    int32_t v;
                    memcpy(&v, (const char *)t[3]->data + 4 * i, 4);
                    sh[i] = v;
                }
            }
            if (!ok || sh[0] != out || sh[1] != in)
                return w4_bad(t[3], "weight_shape must hold [out, in] of the linear", err);
        }
    }
#undef SHAPE2
    *r = (src_ref){.t = t[0], .type = SRC_W4, .rows = out, .cols = in, .zeros = t[1], .group = g,
                   .w4 = p->cfg.w4};
    const int64_t ns = ng * out;
    if (!(r->scale = malloc((size_t)ns * sizeof(float))))
        return oom(err);
    int rc = q_dequantize_rows(type_of_dtype(t[2]->dtype), t[2]->data, r->scale, 1, ns, err);
    for (int64_t i = 0; !rc && i < ns; i++)
        if (!isfinite(r->scale[i]))
            rc = qk_err_set(err, QK_ERANGE, "%s: scale tensor '%s': value %lld is not finite", t[2]->path,
                            t[2]->name, (long long)i);
    return rc;
}

static int bind_source(cv_plan *p, const ca_output *o, int k, src_ref *r, qk_err *err)
{
    char name[160];
    ca_output_src_name(o, k, name, sizeof name);
    const st_tensor *t = st_model_find(p->st, name);
    if (p->cfg.w4) {
        int nd;
        int64_t want[4];
        ca_output_src_shape(o, &nd, want);
        size_t len = strlen(name);
        if (nd == 2 && len > 7 && !strcmp(name + len - 7, ".weight")) {
            char probe[200];
            snprintf(probe, sizeof probe, "%.*s%s", (int)(len - 7), name,
                     p->cfg.w4 == CA_W4_AWQ ? W4_AWQ[0] : W4_CT[0]);
            const st_tensor *packed = st_model_find(p->st, probe);
            if (packed && t)
                return qk_err_set(err, QK_EFORMAT, "%s: '%s' is stored twice, as '%s' and packed as '%s'",
                                  t->path, name, name, probe);
            if (packed)
                return bind_w4(p, name, want[0], want[1], r, err);
        }
    }
    if (!t)
        return qk_err_set(err, QK_EFORMAT, "missing tensor '%s' (%s with %lld layers%s%s)", name,
                          p->cfg.hf_arch, (long long)p->cfg.hp.n_layer,
                          p->cfg.hp.n_expert ? ", experts" : "",
                          o->kind == GA_T_OUTPUT ? ", untied embeddings" : "");
    int nd;
    int64_t want[4];
    ca_output_src_shape(o, &nd, want);
    bool same = t->n_dims == nd;
    for (int d = 0; same && d < nd; d++)
        same = t->shape[d] == want[d];
    if (!same) {
        char got[96], exp[96];
        hf_shape_str(t->shape, t->n_dims, got, sizeof got);
        hf_shape_str(want, nd, exp, sizeof exp);
        return qk_err_set(err, QK_EFORMAT, "%s: tensor '%s' has shape [%s] but config.json implies [%s]",
                          t->path, t->name, got, exp);
    }
    *r = (src_ref){.t = t, .type = type_of_dtype(t->dtype), .rows = nd == 3 ? want[0] * want[1] : want[0],
                   .cols = nd >= 2 ? want[nd - 1] : 1};
    if (is_fp8(t->dtype) && nd == 3)
        return qk_err_set(err, QK_EUNSUPPORTED, "%s: tensor '%s': FP8 fused expert tensors are not supported",
                          t->path, t->name);
    if (is_fp8(t->dtype))
        return load_scale(p, t, r, err);
    if (r->type < 0)
        return qk_err_set(err, QK_EUNSUPPORTED,
                          "%s: tensor '%s' has dtype %s; only F32, F16, BF16 and FP8 (F8_E4M3, F8_E5M2 "
                          "with block scales) weights are supported",
                          t->path, t->name, st_dtype_name(t->dtype));
    return QK_OK;
}

static void set_info(plan_tensor *pt, const cv_plan *p)
{
    cv_tensor *i = &pt->info;
    const ca_output *o = &pt->out;
    snprintf(i->name, sizeof i->name, "%s", o->name);
    if (o->xform == CA_X_STACK)
        snprintf(i->src_name, sizeof i->src_name, "%.*s*%s", (int)(strstr(o->src, "%d") - o->src), o->src,
                 strstr(o->src, "%d") + 2);
    else
        snprintf(i->src_name, sizeof i->src_name, "%s", o->src);
    i->n_dims = o->n_dims;
    memcpy(i->ne, o->ne, sizeof i->ne);
    i->perm_heads = p->hf_layout ? 0 : o->perm_heads;
    i->src_type = Q_TYPE_F32;
    if (o->n_src > 0)
        i->src_type = pt->src[0].type >= 0 ? pt->src[0].type : Q_TYPE_F32;
    i->fp8 = o->n_src > 0 && pt->src[0].type < 0;
    i->type = i->src_type;
    i->in_bytes = 0;
    for (int k = 0; k < o->n_src; k++)
        i->in_bytes += pt->src[k].t->nbytes / (o->src_split ? 2 : 1); /* each half reads half */
}

/* Every output the description names, bound to its sources. */
static int bind_outputs(cv_plan *p, qk_err *err)
{
    ca_output o;
    size_t n_out = 0, n_src = 0;
    for (; ca_output_at(&p->cfg, n_out, &o); n_out++)
        n_src += (size_t)o.n_src;
    p->t = calloc(n_out ? n_out : 1, sizeof *p->t);
    p->srcs = calloc(n_src ? n_src : 1, sizeof *p->srcs);
    if (!p->t || !p->srcs)
        return oom(err);
    for (size_t i = 0; i < n_out; i++) {
        plan_tensor *pt = &p->t[p->n++];
        ca_output_at(&p->cfg, i, &pt->out);
        pt->src = pt->out.n_src ? p->srcs + p->n_srcs : NULL;
        for (int k = 0; k < pt->out.n_src; k++) {
            int rc = bind_source(p, &pt->out, k, &pt->src[k], err);
            p->n_srcs++;
            if (rc)
                return rc;
            if (!pt->last || src_cmp(pt->src[k].t, pt->last) > 0)
                pt->last = pt->src[k].t;
        }
        if (pt->out.xform == CA_X_ROPE_FREQS) {
            if (!(p->rope_freqs = malloc((size_t)pt->out.ne[0] * sizeof *p->rope_freqs)))
                return oom(err);
            ca_rope_freqs(&p->cfg, p->rope_freqs);
            pt->data = p->rope_freqs;
        }
        set_info(pt, p);
        if (pt->info.perm_heads > 0 && pt->out.ne[pt->out.n_dims - 1] % (2 * pt->info.perm_heads))
            return qk_err_set(err, QK_EFORMAT,
                              "%s: tensor '%s': %lld rows cannot be permuted over %lld heads (odd head size)",
                              pt->src[0].t->path, pt->src[0].t->name,
                              (long long)pt->out.ne[pt->out.n_dims - 1], (long long)pt->info.perm_heads);
    }
    return QK_OK;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A 4-bit linear's packed tensor whose "<base>.weight" the description expects. */
static bool w4_part_of_expected(const cv_plan *p, const char *name, char **names, size_t n_names)
{
    const char *const *sfx = p->cfg.w4 == CA_W4_AWQ ? W4_AWQ : W4_CT;
    const int ns = p->cfg.w4 == CA_W4_AWQ ? 3 : 4;
    const size_t n = strlen(name);
    for (int i = 0; i < ns; i++) {
        const size_t m = strlen(sfx[i]);
        if (n <= m || strcmp(name + n - m, sfx[i]))
            continue;
        char w[200];
        snprintf(w, sizeof w, "%.*s.weight", (int)(n - m), name);
        const char *key = w;
        return bsearch(&key, names, n_names, sizeof *names, str_cmp) != NULL;
    }
    return false;
}

/* Every checkpoint tensor must be one the description names (or one llama.cpp drops, or an FP8
 * scale). Checked before anything is bound, so a misnamed tensor is reported as unexpected. */
static int check_unused(const cv_plan *p, const cv_options *opt, qk_err *err)
{
    size_t n_skipped = 0;
    ca_output o;
    size_t n_names = 0;
    for (size_t i = 0; ca_output_at(&p->cfg, i, &o); i++)
        n_names += (size_t)o.n_src;
    char **names = calloc(n_names ? n_names : 1, sizeof *names);
    int rc = names ? QK_OK : oom(err);
    size_t k = 0;
    for (size_t i = 0; !rc && ca_output_at(&p->cfg, i, &o); i++) {
        for (int e = 0; !rc && e < o.n_src; e++) {
            char name[160];
            ca_output_src_name(&o, e, name, sizeof name);
            if (!(names[k++] = strdup(name)))
                rc = oom(err);
        }
    }
    if (!rc)
        qsort(names, n_names, sizeof *names, str_cmp);
    for (size_t i = 0; i < st_model_n_tensors(p->st) && !rc; i++) {
        const st_tensor *t = st_model_tensor(p->st, i);
        size_t n = strlen(t->name);
        if (ca_ignored(t->name) || bsearch(&t->name, names, n_names, sizeof *names, str_cmp))
            continue;
        if (ca_skipped(&p->cfg, t->name)) {
            n_skipped++;
            continue;
        }
        if (p->cfg.w4 && w4_part_of_expected(p, t->name, names, n_names))
            continue;
        if (n > 10 && !strcmp(t->name + n - 10, "_scale_inv")) {
            char w[160];
            snprintf(w, sizeof w, "%.*s", (int)(n - 10), t->name);
            const st_tensor *wt = st_model_find(p->st, w);
            if (wt && is_fp8(wt->dtype))
                continue;
            rc = qk_err_set(err, QK_EFORMAT, "%s: scale tensor '%s' belongs to no FP8 weight", t->path,
                            qk_show(t->name).s);
            break;
        }
        rc = qk_err_set(err, QK_EFORMAT, "%s: unexpected tensor '%s' for %s with %lld layers", t->path,
                        qk_show(t->name).s, p->cfg.hf_arch, (long long)p->cfg.hp.n_layer);
    }
    for (size_t i = 0; names && i < n_names; i++)
        free(names[i]);
    free(names);
    if (!rc && n_skipped && opt && opt->warn) {
        char msg[160];
        snprintf(msg, sizeof msg, "skipped %zu tensors the text model does not use (vision tower, "
                 "projector): the GGUF is text-only", n_skipped);
        opt->warn(opt->user, msg);
    }
    return rc;
}

/* convert_hf_to_gguf.py writes a tensor when its (last) source is read, generated tensors first,
 * and a group (a block's stacked experts) when its last source is read, in table order. */
static int by_write_order(const void *pa, const void *pb)
{
    const plan_tensor *a = pa, *b = pb;
    if (!a->last || !b->last)
        return a->last ? 1 : b->last ? -1 : (a->out.order > b->out.order) - (a->out.order < b->out.order);
    int c = src_cmp(a->last, b->last);
    return c ? c : (a->out.order > b->out.order) - (a->out.order < b->out.order);
}

static void order_outputs(cv_plan *p)
{
    /* a group's members share the group's last source */
    for (size_t i = 0; i < p->n; i++)
        for (size_t j = 0; j < p->n; j++)
            if (p->t[i].out.group && p->t[i].out.group == p->t[j].out.group &&
                p->t[i].out.layer == p->t[j].out.layer && p->t[j].last &&
                src_cmp(p->t[j].last, p->t[i].last) > 0)
                p->t[i].last = p->t[j].last;
    qsort(p->t, p->n, sizeof *p->t, by_write_order);
}

static int plan_tensors(cv_plan *p, const cv_options *o, qk_err *err)
{
    int rc = check_unused(p, o, err);
    if (!rc)
        rc = bind_outputs(p, err);
    if (!rc)
        order_outputs(p);
    return rc;
}

/* ================================================================ planning: types */

static int float_outtype(const char *s)
{
    if (!strcasecmp(s, "f32"))
        return Q_TYPE_F32;
    if (!strcasecmp(s, "f16"))
        return Q_TYPE_F16;
    if (!strcasecmp(s, "bf16"))
        return Q_TYPE_BF16;
    return -1;
}

/* The first tensor with two or more dimensions decides (convert_hf_to_gguf.py's heuristic). */
static int auto_outtype(const cv_plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->t[i].info.n_dims >= 2)
            return p->t[i].info.src_type == Q_TYPE_BF16 ? Q_TYPE_BF16 : Q_TYPE_F16;
    return Q_TYPE_F16;
}

static uint32_t float_file_type(int type)
{
    return type == Q_TYPE_F32 ? MX_FTYPE_ALL_F32 : type == Q_TYPE_F16 ? MX_FTYPE_F16 : MX_FTYPE_BF16;
}


static void plan_float(cv_plan *p, int type)
{
    for (size_t i = 0; i < p->n; i++) {
        cv_tensor *t = &p->t[i].info;
        bool keep_f32 = t->n_dims <= 1 || ga_kind_get(p->t[i].out.kind)->keep_f32;
        t->type = keep_f32 ? Q_TYPE_F32 : type;
    }
    snprintf(p->outtype, sizeof p->outtype, "%s", q_type_info(type)->name);
    p->file_type = float_file_type(type);
}

static int reorder(cv_plan *p, const mx_plan *mp)
{
    plan_tensor *sorted = malloc(p->n * sizeof *sorted);
    if (!sorted)
        return QK_ENOMEM;
    for (size_t k = 0; k < p->n; k++)
        sorted[k] = p->t[mx_plan_order(mp, k)];
    free(p->t);
    p->t = sorted;
    return QK_OK;
}

/* Decisions of the mix for an F32 model, i.e. `convert --outtype f32 | llama-quantize TYPE`. */
static int apply_mix(cv_plan *p, const mx_plan *mp, const cv_options *o, qk_err *err)
{
    for (size_t i = 0; i < p->n; i++) {
        const mx_decision *d = mx_plan_get(mp, i);
        cv_tensor *t = &p->t[i].info;
        t->type = d->quantize ? d->type : Q_TYPE_F32;
        t->fallback = d->fallback;
        p->n_fallback += d->fallback != 0;
        if (d->warning[0] && o && o->warn)
            o->warn(o->user, d->warning);
        const q_type_info_t *ti = q_type_info(t->type);
        if (t->type != Q_TYPE_F32 && !q_kernels_get(t->type))
            return qk_err_set(err, QK_EUNSUPPORTED, "tensor '%s': qkit cannot quantize to %s", t->name,
                              ti ? ti->name : "this type");
    }
    return reorder(p, mp) ? oom(err) : QK_OK;
}

static int plan_mix(cv_plan *p, const mx_mix *mix, const cv_options *o, qk_err *err)
{
    if (mix->needs_imatrix)
        return qk_err_set(err, QK_EUNSUPPORTED,
                          "--outtype %s needs an importance matrix: convert to f16, then run "
                          "qkit quantize with --imatrix",
                          mix->name);
    mx_tensor *mt = calloc(p->n ? p->n : 1, sizeof *mt);
    if (!mt)
        return oom(err);
    for (size_t i = 0; i < p->n; i++) {
        const cv_tensor *t = &p->t[i].info;
        mt[i] = (mx_tensor){.name = t->name, .n_dims = t->n_dims, .type = Q_TYPE_F32};
        memcpy(mt[i].ne, t->ne, sizeof mt[i].ne);
    }
    mx_model m = {.arch = p->cfg.gguf_arch, .n_layer = (uint32_t)p->cfg.hp.n_layer,
                  .n_head = (uint32_t)p->cfg.hp.n_head, .n_head_kv = (uint32_t)p->cfg.hp.n_head_kv,
                  .n_expert = (uint32_t)p->cfg.hp.n_expert};
    mx_options mo;
    mx_options_init(&mo);
    mx_plan *mp = NULL;
    int rc = mx_plan_create(&mp, &m, mix->ftype, &mo, mt, p->n, err);
    if (!rc)
        rc = apply_mix(p, mp, o, err);
    mx_plan_free(mp);
    free(mt);
    snprintf(p->outtype, sizeof p->outtype, "%s", mix->name);
    p->file_type = (uint32_t)mix->ftype;
    return rc;
}

static int plan_types(cv_plan *p, const cv_options *o, qk_err *err)
{
    const char *ot = o && o->outtype ? o->outtype : "auto";
    if (!strcasecmp(ot, "auto")) {
        plan_float(p, auto_outtype(p));
        return QK_OK;
    }
    if (float_outtype(ot) >= 0) {
        plan_float(p, float_outtype(ot));
        return QK_OK;
    }
    const mx_mix *mix = mx_mix_from_name(ot);
    if (!mix)
        return qk_err_set(err, QK_EFORMAT,
                          "unknown --outtype '%s' (auto, f32, f16, bf16, or a quantization type "
                          "such as q8_0, q4_k_m)",
                          ot);
    return plan_mix(p, mix, o, err);
}

/* ================================================================ planning: metadata */

/* Sizes, and the parameter count gguf-py's size label uses for experts: the shared tensors plus
 * one expert's share of each stacked tensor. */
static int64_t finish_sizes(cv_plan *p)
{
    uint64_t label = 0;
    for (size_t i = 0; i < p->n; i++) {
        cv_tensor *t = &p->t[i].info;
        t->out_bytes = bytes_as(t->type, t);
        p->n_params += n_elements(t);
        label += t->n_dims == 3 ? n_elements(t) / (uint64_t)t->ne[2] : n_elements(t); /* "_exps" */
        p->in_bytes += t->in_bytes;
        p->out_bytes += t->out_bytes;
    }
    return (int64_t)label;
}

/* general.name comes from the folder's own name, so resolve "." and trailing slashes. */
static void folder_name(const char *dir, char *buf, size_t size)
{
    char *real = realpath(dir, NULL);
    const char *path = real ? real : dir;
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/')
        start--;
    snprintf(buf, size, "%.*s", (int)(len - start), path + start);
    free(real);
}

int cv_plan_create(const char *dir, const cv_options *o, cv_plan **out, qk_err *err)
{
    *out = NULL;
    cv_plan *p = calloc(1, sizeof *p);
    if (!p || !(p->dir = strdup(dir))) {
        free(p);
        return oom(err);
    }
    int rc = ca_config_load(dir, &p->cfg, err);
    if (!rc)
        rc = st_model_open(&p->st, dir, err);
    p->hf_layout = o && o->hf_layout;
    if (!rc)
        rc = plan_tensors(p, o, err);
    if (!rc)
        rc = plan_types(p, o, err);
    if (!rc)
        rc = tok_vocab_load_hf(dir, NULL, &p->vocab, err);
    if (!rc && p->vocab->n_tokens != (uint32_t)p->cfg.hp.n_vocab)
        rc = qk_err_set(err, QK_EFORMAT, "%s: the tokenizer has %u tokens but config.json says vocab_size %lld",
                        dir, p->vocab->n_tokens, (long long)p->cfg.hp.n_vocab);
    if (!rc)
        rc = te_extra_from_hf(dir, &p->cfg, &p->extra, err);
    if (rc) {
        cv_plan_free(p);
        return rc;
    }
    int64_t label = finish_sizes(p);
    char folder[256];
    folder_name(dir, folder, sizeof folder);
    ca_general_meta(folder, p->cfg.name_or_path, (int64_t)p->n_params, p->cfg.hp.n_expert, label,
                    &p->general);
    *out = p;
    return QK_OK;
}

void cv_plan_free(cv_plan *p)
{
    if (!p)
        return;
    st_model_close(p->st);
    tok_vocab_free(p->vocab);
    for (size_t i = 0; i < p->n_srcs; i++)
        free(p->srcs[i].scale);
    free(p->srcs);
    free(p->t);
    free(p->rope_freqs);
    free(p->dir);
    free(p);
}

size_t cv_plan_n_tensors(const cv_plan *p) { return p->n; }
const cv_tensor *cv_plan_tensor(const cv_plan *p, size_t i) { return i < p->n ? &p->t[i].info : NULL; }
const ca_config *cv_plan_config(const cv_plan *p) { return &p->cfg; }
const char *cv_plan_outtype(const cv_plan *p) { return p->outtype; }
uint32_t cv_plan_file_type(const cv_plan *p) { return p->file_type; }
uint64_t cv_plan_n_params(const cv_plan *p) { return p->n_params; }
uint64_t cv_plan_in_bytes(const cv_plan *p) { return p->in_bytes; }
uint64_t cv_plan_out_bytes(const cv_plan *p) { return p->out_bytes; }
size_t cv_plan_n_fallback(const cv_plan *p) { return p->n_fallback; }

/* ================================================================ writing: metadata */

static int write_metadata(const cv_plan *p, gguf_writer *w, qk_err *err)
{
    /* the folder (config.json, tokenizer files, shards in it) and every shard (an index may
     * point outside the folder) */
    int rc = gguf_writer_protect(w, p->dir);
    for (size_t i = 0; i < st_model_n_files(p->st) && !rc; i++)
        rc = gguf_writer_protect(w, st_model_file_path(p->st, i));
    if (!rc)
        rc = gguf_writer_set_str(w, "general.architecture", p->cfg.gguf_arch);
    if (!rc)
        rc = gguf_writer_set_str(w, "general.type", "model");
    if (!rc)
        rc = ca_write_general(w, &p->general);
    if (!rc)
        rc = ca_write_hparams(w, &p->cfg, p->file_type);
    if (!rc)
        rc = te_export(w, p->vocab, &p->extra, err);
    if (!rc)
        rc = gguf_writer_set_u32(w, "general.quantization_version", 2);
    for (size_t i = 0; i < p->n && !rc; i++)
        rc = gguf_writer_add_tensor(w, p->t[i].info.name, p->t[i].info.type, p->t[i].info.n_dims,
                                    p->t[i].info.ne);
    if (!rc)
        rc = gguf_writer_begin_data(w);
    if (rc && gguf_writer_error(w)[0])
        qk_err_set(err, rc, "%s", gguf_writer_error(w));
    return rc;
}

/* ================================================================ writing: tensor data */

typedef struct {
    float *f32;      /* [chunk values] */
    uint8_t *out;    /* [chunk values × 4]: the piece being converted (one of outs) */
    uint8_t *outs[2]; /* two, so that one is written while the other is filled */
    int n_threads;
} scratch;

/* Units are what the permutation moves: rows of a matrix (of every expert, expert after expert),
 * elements of a vector. Sources are read as rows × cols, a vector as elements × 1. */
typedef struct {
    int64_t n_units, unit_values, group, src_rows;
    size_t out_unit_bytes;
} layout;

static layout layout_of(const plan_tensor *pt)
{
    const cv_tensor *t = &pt->info;
    layout l;
    l.n_units = t->n_dims == 1 ? t->ne[0] : (int64_t)(n_elements(t) / (uint64_t)t->ne[0]);
    l.unit_values = t->n_dims == 1 ? 1 : t->ne[0];
    l.src_rows = pt->out.n_src > 1 ? l.n_units / pt->out.n_src : l.n_units;
    l.group = t->perm_heads > 0 ? l.n_units / t->perm_heads : 1;
    l.out_unit_bytes = t->n_dims == 1 ? q_type_info(t->type)->type_size : q_row_size(t->type, t->ne[0]);
    return l;
}

static int64_t units_per_chunk(const layout *l)
{
    int64_t u = CHUNK_VALUES / l->unit_values;
    u -= u % l->group;
    return u > l->group ? u : l->group;
}

/* Output unit u comes from row *row of source *k. */
static void locate(const plan_tensor *pt, const layout *l, int64_t u, int *k, int64_t *row)
{
    *k = (int)(u / l->src_rows);
    int64_t r = u % l->src_rows;
    *row = pt->info.perm_heads > 0 ? ca_permute_row(r, l->src_rows, pt->info.perm_heads) : r;
}

static size_t src_row_bytes(const src_ref *s)
{
    return (size_t)s->cols * (s->type < 0 ? 1 : q_type_info(s->type)->type_size);
}

static void w4_row(const src_ref *s, int64_t row, float *dst)
{
    if (s->w4 == CA_W4_AWQ)
        awq_gemm_row(s->t->data, s->zeros->data, s->scale, s->rows, s->cols, s->group, row, dst);
    else
        ct_row(s->t->data, s->zeros ? s->zeros->data : NULL, s->scale, s->rows, s->cols, s->group, row, dst);
}

static const uint8_t *src_row(const src_ref *s, int64_t row)
{
    return (const uint8_t *)s->t->data + (size_t)row * src_row_bytes(s);
}

/* Row `row` of a source as float32. */
static void src_row_f32(const src_ref *s, int64_t row, float *dst)
{
    const uint8_t *from = src_row(s, row);
    if (s->type == SRC_W4) {
        w4_row(s, row, dst);
    } else if (s->type < 0) {
        q_fp8_dequant_rows(s->t->dtype == ST_F8_E5M2 ? Q_FP8_E5M2 : Q_FP8_E4M3, s->t->data, s->scale,
                           s->cols, s->br, s->bc, row, 1, dst);
    } else if (s->type == Q_TYPE_F32) {
        memcpy(dst, from, (size_t)s->cols * sizeof *dst);
    } else {
        /* the active ISA's dequantizer: exact, and mapped tensors need not be 2-byte aligned */
        q_kernels_get(s->type)->dequantize(from, dst, s->cols);
    }
}

/* Float32 (tmp) to a float output type (to). */
static void from_f32(int type, const float *tmp, uint8_t *to, int64_t n)
{
    if (type == Q_TYPE_F32)
        memcpy(to, tmp, (size_t)n * sizeof *tmp);
    else if (type == Q_TYPE_F16 || type == Q_TYPE_BF16)
        q_kernels_get(type)->from_float(tmp, to, n); /* SIMD where the ISA has it: the same bytes */
}

/* Transposed expert tensors (Llama 4): one 3-D source [n_expert][ne0][W]; output unit u is
 * expert u / ne1, row r = u % ne1, and its element i is source element (e·ne0 + i)·W + base + r
 * (W = ne1, or 2·ne1 with base 0 or ne1 for the halves of a fused gate/up). */
static bool is_strided(const plan_tensor *pt) { return pt->out.xform == CA_X_T || pt->out.src_split; }

static float src_value(const src_ref *s, size_t i)
{
    const uint8_t *p = (const uint8_t *)s->t->data;
    if (s->type == Q_TYPE_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return s->type == Q_TYPE_F16 ? q_fp16_to_fp32(h) : q_bf16_to_fp32(h);
}

/* Units [u0, u0+nu) as float32 rows in dst, in tiles of 32 units × 256 elements so that both the
 * source reads (consecutive r) and the writes stay in cache. */
static void gather_strided(const plan_tensor *pt, int64_t u0, int64_t nu, float *dst, int n_threads)
{
    const int64_t ne0 = pt->info.ne[0], ne1 = pt->info.ne[1];
    const int64_t w = pt->out.src_split ? 2 * ne1 : ne1, base = pt->out.xform == CA_X_SPLIT1_T ? ne1 : 0;
    const src_ref *s = &pt->src[0];
    const int64_t tu = 32, ti = 256, n_tiles = (nu + tu - 1) / tu;
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t tile = 0; tile < n_tiles; tile++) {
        const int64_t a = tile * tu, b = a + tu < nu ? a + tu : nu;
        for (int64_t i0 = 0; i0 < ne0; i0 += ti) {
            const int64_t i1 = i0 + ti < ne0 ? i0 + ti : ne0;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t k = a; k < b; k++) {
                    const int64_t u = u0 + k, e = u / ne1, r = u % ne1;
                    dst[k * ne0 + i] = src_value(s, (size_t)((e * ne0 + i) * w + base + r));
                }
        }
    }
}

/* Units [u0, u0+nu) in output order: raw bytes in s->out when the type is unchanged, else
 * float32 in s->f32 and, for float types, converted in s->out. One parallel region per piece:
 * on a busy machine every barrier costs a scheduler slice. */
static void gather(const plan_tensor *pt, const layout *l, int64_t u0, int64_t nu, const scratch *s)
{
    const cv_tensor *t = &pt->info;
    if (is_strided(pt)) {
        gather_strided(pt, u0, nu, s->f32, s->n_threads);
#pragma omp parallel for num_threads(s->n_threads) schedule(static)
        for (int64_t i = 0; i < nu; i++)
            from_f32(t->type, s->f32 + (size_t)i * (size_t)l->unit_values, s->out + (size_t)i * l->out_unit_bytes,
                     l->unit_values);
        return;
    }
    bool raw = t->type == t->src_type && !t->fp8;
#pragma omp parallel for num_threads(s->n_threads) schedule(static)
    for (int64_t i = 0; i < nu; i++) {
        int k;
        int64_t row;
        locate(pt, l, u0 + i, &k, &row);
        const src_ref *sr = &pt->src[k];
        float *tmp = s->f32 + (size_t)i * (size_t)l->unit_values;
        if (raw) {
            memcpy(s->out + (size_t)i * src_row_bytes(sr), src_row(sr, row), src_row_bytes(sr));
        } else {
            src_row_f32(sr, row, tmp);
            from_f32(t->type, tmp, s->out + (size_t)i * l->out_unit_bytes, l->unit_values);
        }
    }
}

/* The converted bytes of units [u0, u0+nu) in s->out. */
static int convert_chunk(const plan_tensor *pt, const layout *l, int64_t u0, int64_t nu,
                         const scratch *s, qk_err *err)
{
    const cv_tensor *t = &pt->info;
    gather(pt, l, u0, nu, s);
    if (!q_type_info(t->type)->is_quantized)
        return QK_OK;
    int64_t bad = -1;
    int rc = q_quantize_rows(t->type, s->f32, s->out, nu, l->unit_values, NULL, s->n_threads, &bad, err);
    if (rc == QK_ERANGE && bad >= 0 && is_strided(pt))
        return qk_err_set(err, rc, "tensor '%s': expert %lld holds NaN or Inf, which %s cannot encode",
                          pt->src[0].t->name, (long long)((u0 + bad) / t->ne[1]), q_type_info(t->type)->name);
    if (rc == QK_ERANGE && bad >= 0) {
        int k;
        int64_t row;
        locate(pt, l, u0 + bad, &k, &row);
        return qk_err_set(err, rc, "tensor '%s': row %lld holds NaN or Inf, which %s cannot encode",
                          pt->src[k].t->name, (long long)row, q_type_info(t->type)->name);
    }
    if (rc)
        qk_err_prefix(err, t->src_name);
    return rc;
}

/* The mapped rows a finished piece read are not needed again: resident memory stays flat. A
 * transposed tensor reads all of an expert's source for any of its rows: its experts are dropped
 * once finished. */
static void drop_sources(const plan_tensor *pt, const layout *l, int64_t u0, int64_t nu)
{
    if (is_strided(pt)) {
        const int64_t ne1 = pt->info.ne[1], e0 = u0 / ne1, e1 = (u0 + nu) / ne1; /* finished: [e0, e1) */
        const src_ref *sr = &pt->src[0];
        const size_t block = (size_t)(sr->rows / pt->info.ne[2]) * src_row_bytes(sr);
        if (e1 > e0)
            mapping_drop((const uint8_t *)sr->t->data + (size_t)e0 * block, (size_t)(e1 - e0) * block);
        return;
    }
    int k0, k1;
    int64_t r;
    locate(pt, l, u0, &k0, &r);
    locate(pt, l, u0 + nu - 1, &k1, &r);
    for (int k = k0; k <= k1; k++) {
        int64_t lo = k == k0 ? u0 % l->src_rows : 0;
        int64_t hi = k == k1 ? (u0 + nu - 1) % l->src_rows + 1 : l->src_rows;
        const src_ref *sr = &pt->src[k];
        if (sr->type != SRC_W4) /* packed rows are not contiguous */
            mapping_drop(src_row(sr, lo), (size_t)(hi - lo) * src_row_bytes(sr));
    }
}

typedef struct {
    const cv_options *o;
    size_t index, total;
    uint64_t in_done, out_done;
} progress_state;

static void report(progress_state *ps, size_t done)
{
    if (ps->o && ps->o->progress)
        ps->o->progress(ps->o->user, done, ps->total, ps->in_done, ps->out_done);
}

/* Converting would be wasted: hand the writer the mapped bytes. */
static bool is_copy(const plan_tensor *pt)
{
    const cv_tensor *t = &pt->info;
    return pt->out.n_src <= 1 && t->type == t->src_type && t->perm_heads == 0 && !t->fp8 && !is_strided(pt);
}

static const uint8_t *copy_bytes(const plan_tensor *pt)
{
    return pt->out.n_src ? pt->src[0].t->data : pt->data;
}

/* gguf_writer_write as a background writer's sink. */
static int gguf_write_sink(void *w, const void *data, size_t n, qk_err *err)
{
    if (gguf_writer_write(w, data, n))
        return qk_err_set(err, QK_EIO, "%s", gguf_writer_error(w));
    return QK_OK;
}

/* Converts piece after piece into the two scratch buffers in turn while the background writer
 * writes the previous piece (formats/bgwrite.h): conversion and disk work at once. Copied pieces
 * are the mapped source itself, whose pages are dropped only once written. */
static int write_tensor(const plan_tensor *pt, gguf_writer *w, bg_writer *bg, scratch *s, int *turn,
                        progress_state *ps, qk_err *err)
{
    layout l = layout_of(pt);
    int64_t step = units_per_chunk(&l);
    bool copy = is_copy(pt);
    for (int64_t u0 = 0; u0 < l.n_units; u0 += step) {
        int64_t nu = l.n_units - u0 < step ? l.n_units - u0 : step;
        scratch one = *s;
        one.out = s->outs[*turn];
        const void *bytes = copy ? copy_bytes(pt) + (size_t)u0 * l.out_unit_bytes : one.out;
        int rc = copy ? QK_OK : convert_chunk(pt, &l, u0, nu, &one, err);
        if (!rc)
            rc = bg_submit(bg, gguf_write_sink, w, bytes, (size_t)nu * l.out_unit_bytes, err);
        if (!rc && copy)
            rc = bg_wait(bg, err); /* the mapped pages are dropped next */
        if (rc)
            return rc;
        *turn ^= !copy;
        if (pt->out.n_src)
            drop_sources(pt, &l, u0, nu);
        ps->in_done += pt->info.in_bytes * (uint64_t)nu / (uint64_t)l.n_units;
        ps->out_done += (uint64_t)nu * l.out_unit_bytes;
        report(ps, ps->index);
    }
    return QK_OK;
}

long cv_plan_find(const cv_plan *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->t[i].info.name, name))
            return (long)i;
    return -1;
}

bool cv_plan_in_place(const cv_plan *p, size_t i, int *type, const void **data)
{
    const plan_tensor *pt = &p->t[i];
    if (pt->out.n_src != 1 || pt->info.fp8 || pt->info.perm_heads || is_strided(pt))
        return false;
    *type = pt->info.src_type;
    *data = pt->src[0].t->data;
    return true;
}

void cv_plan_read_f32(const cv_plan *p, size_t i, float *out, int n_threads)
{
    const plan_tensor *pt = &p->t[i];
    layout l = layout_of(pt);
    if (!pt->out.n_src) {
        memcpy(out, pt->data, (size_t)l.n_units * sizeof *out);
        return;
    }
    if (is_strided(pt)) {
        gather_strided(pt, 0, l.n_units, out, n_threads > 0 ? n_threads : omp_get_max_threads());
        return;
    }
#pragma omp parallel for num_threads(n_threads > 0 ? n_threads : omp_get_max_threads()) schedule(static)
    for (int64_t u = 0; u < l.n_units; u++) {
        int k;
        int64_t row;
        locate(pt, &l, u, &k, &row);
        src_row_f32(&pt->src[k], row, out + (size_t)u * (size_t)l.unit_values);
    }
}

static int alloc_scratch(const cv_plan *p, const cv_options *o, scratch *s, qk_err *err)
{
    int64_t values = 1;
    for (size_t i = 0; i < p->n; i++) {
        layout l = layout_of(&p->t[i]);
        int64_t v = units_per_chunk(&l) * l.unit_values;
        int64_t all = l.n_units * l.unit_values;
        v = v < all ? v : all;
        values = v > values ? v : values;
    }
    s->f32 = malloc((size_t)values * sizeof(float));
    s->outs[0] = malloc((size_t)values * sizeof(float));
    s->outs[1] = malloc((size_t)values * sizeof(float));
    /* One core is left to the background writer: converting floats outruns a disk on one
     * core, and idle OpenMP threads spinning next to the writer would slow it down. */
    s->n_threads = o && o->n_threads > 0 ? o->n_threads : omp_get_max_threads();
    s->n_threads = s->n_threads > 1 ? s->n_threads - 1 : 1;
    if (!s->f32 || !s->outs[0] || !s->outs[1]) { /* the caller frees them */
        return qk_err_set(err, QK_ENOMEM, "convert: out of memory for %lld bytes of scratch",
                          (long long)values * 12);
    }
    return QK_OK;
}

int cv_plan_fingerprint(const cv_plan *p, uint64_t *id, qk_err *err)
{
    qk_hash h;
    qk_hash_init(&h);
    int rc = QK_OK;
    for (size_t i = 0; i < st_model_n_files(p->st) && !rc; i++)
        rc = qk_file_fingerprint(st_model_file_path(p->st, i), &h, err);
    *id = qk_hash_final(&h);
    return rc;
}

static int open_writer(const cv_plan *p, const char *out_path, const cv_options *o, gguf_writer **w,
                       qk_err *err)
{
    gguf_split_opts split = {0};
    if (o)
        split = (gguf_split_opts){.max_bytes = o->split_max_bytes,
                                  .max_tensors = o->split_max_tensors, .n_parts = o->split_parts};
    if (o && o->shard_count && !split.max_bytes && !split.max_tensors && !split.n_parts)
        split.n_parts = o->shard_count;
    bool is_split = split.max_bytes || split.max_tensors || split.n_parts;
    /* split.id's source: the checkpoint's fingerprint (the rest is in the metadata) */
    uint64_t id = 0;
    int rc = is_split ? cv_plan_fingerprint(p, &id, err) : QK_OK;
    if (!rc)
        rc = gguf_writer_open(w, out_path, is_split ? &split : NULL, err);
    if (rc)
        return rc;
    gguf_writer_set_source_id(*w, id);
    if (o && o->shard_count && gguf_writer_set_shard(*w, o->shard_index, o->shard_count))
        return qk_err_set(err, QK_ERANGE, "%s", gguf_writer_error(*w));
    return QK_OK;
}

int cv_plan_write(const cv_plan *p, const char *out_path, const cv_options *o, cv_result *res,
                  qk_err *err)
{
    gguf_writer *w = NULL;
    scratch s = {0};
    int rc = alloc_scratch(p, o, &s, err);
    if (!rc)
        rc = open_writer(p, out_path, o, &w, err);
    if (!rc)
        rc = write_metadata(p, w, err);
    progress_state ps = {o, 0, p->n, 0, 0};
    /* Which tensors this job writes (else: another shard's part), asked before the writer thread
     * starts changing the writer's state. */
    bool *mine = rc ? NULL : malloc(p->n ? p->n : 1);
    if (!rc && !mine)
        rc = qk_err_set(err, QK_ENOMEM, "convert: out of memory");
    for (size_t i = 0; i < p->n && !rc; i++)
        mine[i] = gguf_writer_writes(w, p->t[i].info.name);
    bg_writer bg = {0};
    int turn = 0;
    if (!rc)
        bg_start(&bg);
    for (size_t i = 0; i < p->n && !rc; i++) {
        ps.index = i;
        if (mine[i])
            rc = write_tensor(&p->t[i], w, &bg, &s, &turn, &ps, err);
        report(&ps, i + 1);
    }
    const int bg_rc = bg_wait(&bg, rc ? NULL : err); /* the writer is idle past here */
    rc = rc ? rc : bg_rc;
    bg_stop(&bg);
    free(mine);
    cv_result r = {.n_tensors = p->n, .in_bytes = p->in_bytes, .out_bytes = p->out_bytes};
    if (w) {
        r.n_parts = gguf_writer_n_parts(w);
        for (uint32_t k = 0; k < r.n_parts; k++)
            r.n_parts_written += gguf_writer_writes_part(w, k);
        const char *sid = gguf_writer_split_id(w);
        snprintf(r.split_id, sizeof r.split_id, "%s", sid ? sid : "");
    }
    if (!rc) {
        rc = gguf_writer_commit(w, err);
    } else {
        gguf_writer_abort(w);
    }
    free(s.f32);
    free(s.outs[0]);
    free(s.outs[1]);
    if (!rc && res)
        *res = r;
    return rc;
}

int cv_convert(const char *dir, const char *out_path, const cv_options *o, cv_result *res,
               qk_err *err)
{
    cv_plan *p;
    int rc = cv_plan_create(dir, o, &p, err);
    if (rc)
        return rc;
    rc = cv_plan_write(p, out_path, o, res, err);
    cv_plan_free(p);
    return rc;
}
