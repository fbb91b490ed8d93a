/* convert.c — plan a Hugging Face checkpoint's GGUF, then stream its tensors into it. */
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../calib/tokenizer.h"
#include "../formats/safetensors.h"
#include "../quant/floats.h"
#include "../quant/fp16.h"
#include "../quant/quant.h"
#include "../quant/types.h"
#include "convert.h"
#include "mix.h"
#include "tokenizer_export.h"

/* Rows are converted in pieces of about this many values: 16 MiB of float32 scratch, plus the
 * converted piece, keeps memory flat whatever the tensor size. */
#define CHUNK_VALUES ((int64_t)4 << 20)

typedef struct {
    cv_tensor info;
    const void *data; /* source bytes: inside the mapping, or the plan's rope_freqs */
    size_t src_index; /* into st_model, or SIZE_MAX for generated data */
} plan_tensor;

struct cv_plan {
    ca_config cfg;
    st_model *st;
    tok_vocab *vocab;
    te_extra extra;
    ca_general general;
    plan_tensor *t;
    size_t n;
    float *rope_freqs;
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

typedef struct {
    uint32_t file;
    const char *name;
    size_t index;
} src_key;

/* safe_open(...).keys() order: file by file, names sorted within a file. */
static int by_file_then_name(const void *pa, const void *pb)
{
    const src_key *a = pa, *b = pb;
    if (a->file != b->file)
        return a->file < b->file ? -1 : 1;
    return strcmp(a->name, b->name);
}

static void hf_shape_str(const st_tensor *s, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int d = 0; d < s->n_dims && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", d ? ", " : "", (long long)s->shape[d]);
}

/* Expected shape, printed in the checkpoint's order (outermost first). */
static void ne_shape_str(const ca_tensor *t, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int d = (int)t->n_dims - 1; d >= 0 && n < size; d--)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", d + 1 < (int)t->n_dims ? ", " : "",
                              (long long)t->ne[d]);
}

static int check_source(const ca_tensor *m, const st_tensor *s, qk_err *err)
{
    if (type_of_dtype(s->dtype) < 0)
        return qk_err_set(err, QK_EUNSUPPORTED,
                          "%s: tensor '%s' has dtype %s; only F32, F16 and BF16 weights are supported",
                          s->path, s->name, st_dtype_name(s->dtype));
    bool same = (uint32_t)s->n_dims == m->n_dims;
    for (uint32_t d = 0; same && d < m->n_dims; d++)
        same = s->shape[m->n_dims - 1 - d] == m->ne[d];
    if (!same) {
        char got[96], want[96];
        hf_shape_str(s, got, sizeof got);
        ne_shape_str(m, want, sizeof want);
        return qk_err_set(err, QK_EFORMAT, "%s: tensor '%s' has shape [%s] but config.json implies [%s]",
                          s->path, s->name, got, want);
    }
    if (m->perm_heads > 0 && m->ne[m->n_dims - 1] % (2 * m->perm_heads))
        return qk_err_set(err, QK_EFORMAT,
                          "%s: tensor '%s': %lld rows cannot be permuted over %lld heads (odd head size)",
                          s->path, s->name, (long long)m->ne[m->n_dims - 1], (long long)m->perm_heads);
    return QK_OK;
}

static void set_info(plan_tensor *pt, const ca_tensor *m, int src_type, const void *data, size_t index)
{
    memset(pt, 0, sizeof *pt);
    snprintf(pt->info.name, sizeof pt->info.name, "%s", m->name);
    snprintf(pt->info.src_name, sizeof pt->info.src_name, "%s", m->hf_name);
    pt->info.src_type = src_type;
    pt->info.type = src_type;
    pt->info.n_dims = m->n_dims;
    memcpy(pt->info.ne, m->ne, sizeof pt->info.ne);
    pt->info.perm_heads = m->perm_heads;
    pt->info.in_bytes = bytes_as(src_type, &pt->info);
    pt->data = data;
    pt->src_index = index;
}

static int add_rope_freqs(cv_plan *p)
{
    ca_tensor m = {.kind = CA_T_ROPE_FREQS, .layer = -1, .n_dims = 1,
                   .ne = {p->cfg.head_dim / 2, 1, 1, 1}};
    snprintf(m.name, sizeof m.name, "rope_freqs.weight");
    p->rope_freqs = malloc((size_t)m.ne[0] * sizeof *p->rope_freqs);
    if (!p->rope_freqs)
        return QK_ENOMEM;
    ca_rope_freqs(&p->cfg, p->rope_freqs);
    /* generated tensors come first, as generate_extra_tensors() runs before get_tensors() */
    set_info(&p->t[p->n++], &m, Q_TYPE_F32, p->rope_freqs, SIZE_MAX);
    return QK_OK;
}

static int map_sources(cv_plan *p, const src_key *order, size_t n_src, qk_err *err)
{
    for (size_t k = 0; k < n_src; k++) {
        const st_tensor *s = st_model_tensor(p->st, order[k].index);
        ca_tensor m;
        int rc = ca_map_tensor(&p->cfg, s->name, &m, err);
        if (rc == CA_SKIP)
            continue;
        if (rc < 0) {
            qk_err_prefix(err, s->path);
            return rc;
        }
        snprintf(m.hf_name, sizeof m.hf_name, "%s", s->name);
        if ((rc = check_source(&m, s, err)))
            return rc;
        set_info(&p->t[p->n++], &m, type_of_dtype(s->dtype), s->data, order[k].index);
    }
    return QK_OK;
}

static const plan_tensor *find_planned(const cv_plan *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->t[i].info.name, name))
            return &p->t[i];
    return NULL;
}

static int check_required(const cv_plan *p, const char *dir, qk_err *err)
{
    ca_tensor m;
    for (size_t i = 0; ca_required(&p->cfg, i, &m); i++)
        if (!find_planned(p, m.name))
            return qk_err_set(err, QK_EFORMAT, "%s: missing tensor '%s' (%s with %lld layers%s)", dir,
                              m.hf_name, p->cfg.hf_arch, (long long)p->cfg.n_layer,
                              m.kind == CA_T_OUTPUT ? ", untied embeddings" : "");
    return QK_OK;
}

static int plan_tensors(cv_plan *p, const char *dir, qk_err *err)
{
    size_t n_src = st_model_n_tensors(p->st);
    src_key *order = malloc((n_src ? n_src : 1) * sizeof *order);
    p->t = calloc(n_src + 1, sizeof *p->t);
    if (!order || !p->t) {
        free(order);
        return oom(err);
    }
    for (size_t i = 0; i < n_src; i++) {
        const st_tensor *s = st_model_tensor(p->st, i);
        order[i] = (src_key){s->file, s->name, i};
    }
    qsort(order, n_src, sizeof *order, by_file_then_name);
    int rc = p->cfg.rope_kind == CA_ROPE_LLAMA3 ? add_rope_freqs(p) : QK_OK;
    if (rc)
        rc = oom(err);
    if (!rc)
        rc = map_sources(p, order, n_src, err);
    free(order);
    return rc ? rc : check_required(p, dir, err);
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

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

static void plan_float(cv_plan *p, int type)
{
    for (size_t i = 0; i < p->n; i++) {
        cv_tensor *t = &p->t[i].info;
        bool keep_f32 = t->n_dims <= 1 || ends_with(t->name, "_norm.weight") || !ends_with(t->name, ".weight");
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
    mx_model m = {.arch = p->cfg.gguf_arch, .n_layer = (uint32_t)p->cfg.n_layer,
                  .n_head = (uint32_t)p->cfg.n_head, .n_head_kv = (uint32_t)p->cfg.n_head_kv};
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

static void finish_sizes(cv_plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        cv_tensor *t = &p->t[i].info;
        t->out_bytes = bytes_as(t->type, t);
        p->n_params += n_elements(t);
        p->in_bytes += p->t[i].src_index == SIZE_MAX ? 0 : t->in_bytes;
        p->out_bytes += t->out_bytes;
    }
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
    if (!p)
        return oom(err);
    int rc = ca_config_load(dir, &p->cfg, err);
    if (!rc)
        rc = st_model_open(&p->st, dir, err);
    if (!rc)
        rc = plan_tensors(p, dir, err);
    if (!rc)
        rc = plan_types(p, o, err);
    if (!rc)
        rc = tok_vocab_load_hf(dir, NULL, &p->vocab, err);
    if (!rc && p->vocab->n_tokens != (uint32_t)p->cfg.n_vocab)
        rc = qk_err_set(err, QK_EFORMAT, "%s: the tokenizer has %u tokens but config.json says vocab_size %lld",
                        dir, p->vocab->n_tokens, (long long)p->cfg.n_vocab);
    if (!rc)
        rc = te_extra_from_hf(dir, &p->cfg, &p->extra, err);
    if (rc) {
        cv_plan_free(p);
        return rc;
    }
    finish_sizes(p);
    char folder[256];
    folder_name(dir, folder, sizeof folder);
    ca_general_meta(folder, p->cfg.name_or_path, (int64_t)p->n_params, &p->general);
    *out = p;
    return QK_OK;
}

void cv_plan_free(cv_plan *p)
{
    if (!p)
        return;
    st_model_close(p->st);
    tok_vocab_free(p->vocab);
    free(p->t);
    free(p->rope_freqs);
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
    int rc = gguf_writer_set_str(w, "general.architecture", p->cfg.gguf_arch);
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
    float *f32;   /* [chunk values] */
    uint8_t *out; /* [chunk values × 4] */
    int n_threads;
} scratch;

/* Units are what the permutation moves: rows of a matrix, elements of a vector. */
typedef struct {
    int64_t n_units, unit_values, group;
    size_t src_unit_bytes, out_unit_bytes;
} layout;

static layout layout_of(const cv_tensor *t)
{
    layout l;
    l.n_units = t->n_dims == 1 ? t->ne[0] : (int64_t)(n_elements(t) / (uint64_t)t->ne[0]);
    l.unit_values = t->n_dims == 1 ? 1 : t->ne[0];
    l.group = t->perm_heads > 0 ? l.n_units / t->perm_heads : 1;
    l.src_unit_bytes = (size_t)l.unit_values * q_type_info(t->src_type)->type_size;
    l.out_unit_bytes = t->n_dims == 1 ? q_type_info(t->type)->type_size : q_row_size(t->type, t->ne[0]);
    return l;
}

static int64_t units_per_chunk(const layout *l)
{
    int64_t u = CHUNK_VALUES / l->unit_values;
    u -= u % l->group;
    return u > l->group ? u : l->group;
}

static int64_t src_unit(const cv_tensor *t, const layout *l, int64_t u)
{
    return t->perm_heads > 0 ? ca_permute_row(u, l->n_units, t->perm_heads) : u;
}

/* Converting in place would be wasted: hand the writer the mapped bytes. */
static bool is_copy(const cv_tensor *t) { return t->type == t->src_type && t->perm_heads == 0; }

static void to_f32(const uint8_t *src, int type, float *dst, int64_t n)
{
    if (type == Q_TYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof *dst);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2); /* mapped tensors need not be 2-byte aligned */
        dst[i] = type == Q_TYPE_F16 ? q_fp16_to_fp32(h) : q_bf16_to_fp32(h);
    }
}

/* One unit as float32 (tmp) and, for a float output type, in that type (to). */
static void convert_unit(const cv_tensor *t, const uint8_t *from, float *tmp, uint8_t *to, int64_t n)
{
    to_f32(from, t->src_type, tmp, n);
    if (t->type == Q_TYPE_F32)
        memcpy(to, tmp, (size_t)n * sizeof *tmp);
    else if (t->type == Q_TYPE_F16)
        q_from_float_f16(tmp, to, n);
    else if (t->type == Q_TYPE_BF16)
        q_from_float_bf16(tmp, to, n);
}

/* Units [u0, u0+nu) in output order: raw bytes in s->out when the type is unchanged, else
 * float32 in s->f32 and, for float types, converted in s->out. One parallel region per piece:
 * on a busy machine every barrier costs a scheduler slice. */
static void gather(const plan_tensor *pt, const layout *l, int64_t u0, int64_t nu, const scratch *s)
{
    const cv_tensor *t = &pt->info;
    const uint8_t *src = pt->data;
    bool raw = t->type == t->src_type;
#pragma omp parallel for num_threads(s->n_threads) schedule(static)
    for (int64_t i = 0; i < nu; i++) {
        const uint8_t *from = src + (size_t)src_unit(t, l, u0 + i) * l->src_unit_bytes;
        if (raw)
            memcpy(s->out + (size_t)i * l->src_unit_bytes, from, l->src_unit_bytes);
        else
            convert_unit(t, from, s->f32 + (size_t)i * (size_t)l->unit_values,
                         s->out + (size_t)i * l->out_unit_bytes, l->unit_values);
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
    if (rc == QK_ERANGE && bad >= 0)
        return qk_err_set(err, rc, "tensor '%s': row %lld holds NaN or Inf, which %s cannot encode",
                          t->src_name, (long long)src_unit(t, l, u0 + bad), q_type_info(t->type)->name);
    if (rc)
        qk_err_prefix(err, t->src_name);
    return rc;
}

/* The mapping's pages of a finished piece are not needed again: drop them so resident memory
 * stays flat (a read-only file mapping refaults from the file if touched again). */
static void drop_pages(const void *p, size_t n)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p, lo = (a + page - 1) & ~(page - 1), hi = (a + n) & ~(page - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED); /* advisory: failure only costs memory */
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

static int write_tensor(const plan_tensor *pt, gguf_writer *w, const scratch *s, progress_state *ps,
                        qk_err *err)
{
    const cv_tensor *t = &pt->info;
    layout l = layout_of(t);
    int64_t step = units_per_chunk(&l);
    bool mapped = pt->src_index != SIZE_MAX;
    for (int64_t u0 = 0; u0 < l.n_units; u0 += step) {
        int64_t nu = l.n_units - u0 < step ? l.n_units - u0 : step;
        const void *bytes = is_copy(t) ? (const uint8_t *)pt->data + (size_t)u0 * l.src_unit_bytes : s->out;
        int rc = is_copy(t) ? QK_OK : convert_chunk(pt, &l, u0, nu, s, err);
        if (!rc && gguf_writer_write(w, bytes, (size_t)nu * l.out_unit_bytes))
            rc = qk_err_set(err, QK_EIO, "%s", gguf_writer_error(w));
        if (rc)
            return rc;
        if (mapped)
            drop_pages((const uint8_t *)pt->data + (size_t)u0 * l.src_unit_bytes,
                       (size_t)nu * l.src_unit_bytes);
        ps->in_done += mapped ? (uint64_t)nu * l.src_unit_bytes : 0;
        ps->out_done += (uint64_t)nu * l.out_unit_bytes;
        report(ps, ps->index);
    }
    return QK_OK;
}

static int alloc_scratch(const cv_plan *p, const cv_options *o, scratch *s, qk_err *err)
{
    int64_t values = 1;
    for (size_t i = 0; i < p->n; i++) {
        layout l = layout_of(&p->t[i].info);
        int64_t v = units_per_chunk(&l) * l.unit_values;
        int64_t all = l.n_units * l.unit_values;
        v = v < all ? v : all;
        values = v > values ? v : values;
    }
    s->f32 = malloc((size_t)values * sizeof(float));
    s->out = malloc((size_t)values * sizeof(float));
    s->n_threads = o && o->n_threads > 0 ? o->n_threads : omp_get_max_threads();
    if (!s->f32 || !s->out) {
        free(s->f32);
        free(s->out);
        return oom(err);
    }
    return QK_OK;
}

int cv_plan_write(const cv_plan *p, const char *out_path, const cv_options *o, cv_result *res,
                  qk_err *err)
{
    gguf_split_opts split = {.max_bytes = o ? o->split_max_bytes : 0};
    gguf_writer *w = NULL;
    scratch s = {0};
    int rc = alloc_scratch(p, o, &s, err);
    if (!rc)
        rc = gguf_writer_open(&w, out_path, split.max_bytes ? &split : NULL, err);
    if (!rc)
        rc = write_metadata(p, w, err);
    progress_state ps = {o, 0, p->n, 0, 0};
    for (size_t i = 0; i < p->n && !rc; i++) {
        ps.index = i;
        rc = write_tensor(&p->t[i], w, &s, &ps, err);
        report(&ps, i + 1);
    }
    uint32_t parts = w ? gguf_writer_n_parts(w) : 0;
    if (!rc) {
        rc = gguf_writer_commit(w, err);
    } else {
        gguf_writer_abort(w);
    }
    free(s.f32);
    free(s.out);
    if (!rc && res)
        *res = (cv_result){p->n, p->in_bytes, p->out_bytes, parts};
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
