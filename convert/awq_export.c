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
#include <cJSON.h>
#include <dirent.h>
#include <errno.h>

#include "../formats/awq.h"
#include "../formats/file.h"
#include "../formats/gguf.h"
#include "../formats/imatrix.h"
#include "../formats/gguf_arch.h"
#include "../formats/outfile.h"
#include "../formats/safetensors.h"
#include "../quant/floats.h"
#include "../quant/fp16.h"
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

/* Samples from the text, then the AWQ run on em's model; r gets the counts and timing. type_of
 * NULL: AutoAWQ's quantizer (--format awq/ct), else the mix's types (gguf:TYPE). */
static int search_model(const aw_params *p, cv_eval_model *em, int (*type_of)(void *, const char *),
                        void *types, awq_run **run, aw_result *r, qk_err *err)
{
    int32_t *tok = NULL;
    int n_seq = 0, L = 0;
    int rc = samples(em, p, &tok, &n_seq, &L, err);
    const double t0 = now_s();
    if (!rc) {
        awq_opts o = {.bits = p->bits, .group = p->group, .grid = p->grid, .clip = p->clip,
                      .asym_clip = 1, .rtn = p->rtn, .duo = p->duo, .gptq = p->gptq, .output_loss = p->output_loss,
                      .use_imatrix = type_of && p->imatrix != NULL, .type_of = type_of,
                      .user = types, .progress = p->progress, .progress_user = p->user};
        rc = awq_run_model(run, &em->m, tok, n_seq, L, &o, err);
    }
    free(tok);
    r->seconds_search = now_s() - t0;
    r->samples = n_seq;
    r->seq_len = L;
    r->n_blocks = em->m.n_layer;
    if (!rc) {
        r->n_groups = awq_n_groups(*run);
        for (size_t i = 0; i < r->n_groups; i++)
            r->mean_alpha += awq_group(*run, i)->alpha / (double)r->n_groups;
    }
    return rc;
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

/* ---- the importance matrix, rescaled ------------------------------------------------------------ */

/* The imatrix of the original model for the folded one: each scaled linear's Σx² divided by s²
 * (folding divided its inputs by s), written as GGUF to path. */
static int rescale_imatrix(const char *in, const awq_run *run, const char *path, qk_err *err)
{
    imx_file *f = NULL;
    int rc = imx_load(&f, in, err);
    if (rc)
        return rc;
    const size_t n = imx_count(f);
    imx_out_entry *e = calloc(n ? n : 1, sizeof *e);
    uint64_t **sums = calloc(n ? n : 1, sizeof *sums);
    int64_t **counts = calloc(n ? n : 1, sizeof *counts);
    rc = e && sums && counts ? QK_OK : qk_err_set(err, QK_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        const imx_entry *x = imx_entry_at(f, i);
        int64_t s_mat = 1, ne0 = 0, ne1 = 0;
        const float *s = awq_input_scale(run, x->name, &s_mat);
        if (s && (!awq_weight(run, x->name, &ne0, &ne1) || ne0 != x->n_per_mat || s_mat != x->n_mat)) {
            rc = qk_err_set(err, QK_EFORMAT, "%s: entry '%s' holds %lld x %lld values but the model's "
                            "tensor has %lld matrices of %lld columns", in, x->name, (long long)x->n_mat,
                            (long long)x->n_per_mat, (long long)s_mat, (long long)ne0);
            break;
        }
        const int64_t nv = x->n_per_mat * x->n_mat;
        sums[i] = malloc((size_t)nv * 2 * sizeof **sums);
        counts[i] = malloc((size_t)x->n_mat * sizeof **counts);
        if (!sums[i] || !counts[i]) {
            rc = qk_err_set(err, QK_ENOMEM, "out of memory");
            break;
        }
        for (int64_t m = 0; m < x->n_mat; m++) {
            const int64_t cnt = x->ncall > 0 ? x->ncall : 1;
            counts[i][m] = cnt;
            for (int64_t j = 0; j < x->n_per_mat && !rc; j++) {
                double v = (double)x->values[m * x->n_per_mat + j] * (double)cnt;
                if (s) /* an expert tensor's matrix m has its own scales */
                    v /= (double)s[m * x->n_per_mat + j] * (double)s[m * x->n_per_mat + j];
                if (imx_fx_from_double(v, sums[i] + 2 * (m * x->n_per_mat + j)))
                    rc = qk_err_set(err, QK_ERANGE, "%s: entry '%s' does not fit after rescaling", in, x->name);
            }
        }
        e[i] = (imx_out_entry){x->name, x->n_per_mat, x->n_mat, sums[i], counts[i]};
    }
    const char *ds[1] = {"awq-rescaled"};
    const size_t nds = imx_n_datasets(f);
    const char *const *dsp = ds;
    if (nds)
        ds[0] = imx_dataset(f, 0);
    if (!rc) {
        const imx_out o = {e, n, dsp, 1, imx_chunk_count(f) > 0 ? imx_chunk_count(f) : 1,
                           imx_chunk_size(f) ? imx_chunk_size(f) : 1, NULL, {0, 0, 0, 0}};
        rc = imx_write(&o, path, IMX_GGUF, NULL, err);
    }
    for (size_t i = 0; i < n; i++) {
        if (sums)
            free(sums[i]);
        if (counts)
            free(counts[i]);
    }
    free(sums);
    free(counts);
    free(e);
    imx_free(f);
    return rc;
}

/* ---- driver ------------------------------------------------------------------------------------- */

static int run_gguf(const aw_params *p, aw_result *r, qk_err *err)
{
    const size_t olen = strlen(p->out) + 32;
    char *src = malloc(olen), *folded = malloc(olen), *imx = malloc(olen);
    if (!src || !folded || !imx) {
        free(src), free(folded), free(imx);
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    }
    snprintf(src, olen, "%s.awq-src.tmp", p->out);
    snprintf(folded, olen, "%s.awq-folded.tmp", p->out);
    snprintf(imx, olen, "%s.awq-imatrix.tmp", p->out);
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
    awq_run *run = NULL;
    if (!rc)
        rc = search_model(p, &em, lookup_type, &tt, &run, r, err);
    if (!rc) {
        rc = write_folded(&em, run, folded, err);
    }
    if (!rc && p->imatrix)
        rc = rescale_imatrix(p->imatrix, run, imx, err);
    awq_run_free(run);
    cv_eval_close(&em);
    type_table_free(&tt);
    if (!rc) {
        qz_params q;
        qz_params_init(&q);
        q.in_path = folded;
        q.out_path = p->out;
        q.ftype = p->ftype;
        q.n_threads = p->n_threads;
        q.imatrix_path = p->imatrix ? imx : NULL;
        qz_report *qr = NULL;
        rc = qz_quantize(&q, &qr, NULL, err);
        if (!rc)
            r->out_bytes = qr->out_bytes;
        qz_report_free(qr);
    }
    unlink(folded);
    unlink(imx);
    if (model == src)
        unlink(src);
    free(src);
    free(folded);
    free(imx);
    return rc;
}

/* ---- Hugging Face folders: AutoAWQ GEMM and compressed-tensors ----------------------------------- */

static int copy_file(const char *from, const char *to, qk_err *err)
{
    char *buf = NULL;
    size_t n = 0;
    int rc = qk_file_read(from, (size_t)1 << 30, &buf, &n, err);
    if (!rc)
        rc = of_write_all(to, buf, n, err);
    free(buf);
    return rc;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* The mixture-of-experts routers, which stay unquantized: their module names (checkpoint names
 * without ".weight", "model.layers.3.mlp.gate") appended to mods. */
static void router_modules(const cv_eval_model *em, cJSON *mods)
{
    for (int l = 0; l < em->m.n_layer; l++) {
        char gname[GGUF_MAX_NAME], mod[192];
        long i;
        if (!em->m.layers[l].moe || !ga_tensor_name(GA_T_FFN_GATE_INP, l, gname, sizeof gname) ||
            (i = cv_plan_find(em->plan, gname)) < 0)
            continue;
        const char *src = cv_plan_tensor(em->plan, (size_t)i)->src_name;
        const size_t len = strlen(src) - (ends_with(src, ".weight") ? 7 : 0);
        snprintf(mod, sizeof mod, "%.*s", (int)len, src);
        cJSON_AddItemToArray(mods, cJSON_CreateString(mod));
    }
}

/* config.json with the quantization_config of the format, torch_dtype float16. The routers of a
 * mixture of experts stay f16, named module by module ("model.layers.3.mlp.gate") in AutoAWQ's
 * modules_to_not_convert and in compressed-tensors' ignore (then lm_head), as llm-compressor saves
 * it. Loaders match modules_to_not_convert as substrings of module names, so a name relative to
 * the block ("gate", "mlp.gate") would also leave the experts' or a dense block's gate_proj
 * unquantized; a whole router name is a substring of no other module. */
static int write_config(const aw_params *p, const cv_eval_model *em, const char *dir, qk_err *err)
{
    char path[4200], *text = NULL;
    size_t n;
    snprintf(path, sizeof path, "%.4000s/config.json", p->model);
    int rc = qk_file_read(path, (size_t)64 << 20, &text, &n, err);
    if (rc)
        return rc;
    cJSON *c = cJSON_ParseWithLength(text, n);
    free(text);
    if (!c || !cJSON_IsObject(c)) {
        cJSON_Delete(c);
        return qk_err_set(err, QK_EFORMAT, "%s: not a JSON object", path);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(c, "quantization_config");
    cJSON_DeleteItemFromObjectCaseSensitive(c, "torch_dtype");
    cJSON_DeleteItemFromObjectCaseSensitive(c, "dtype");
    cJSON_AddStringToObject(c, "torch_dtype", "float16");
    cJSON *q = cJSON_AddObjectToObject(c, "quantization_config");
    cJSON *routers = cJSON_CreateArray();
    router_modules(em, routers);
    if (p->format == AW_AWQ) {
        cJSON_AddStringToObject(q, "quant_method", "awq");
        cJSON_AddBoolToObject(q, "zero_point", 1);
        cJSON_AddNumberToObject(q, "group_size", p->group);
        cJSON_AddNumberToObject(q, "bits", p->bits);
        cJSON_AddStringToObject(q, "version", "gemm");
        if (cJSON_GetArraySize(routers) > 0) {
            cJSON_AddItemToObject(q, "modules_to_not_convert", routers);
            routers = NULL;
        } else
            cJSON_AddNullToObject(q, "modules_to_not_convert");
    } else {
        cJSON *g = cJSON_AddObjectToObject(cJSON_AddObjectToObject(q, "config_groups"), "group_0");
        cJSON_AddStringToObject(g, "format", "pack-quantized");
        cJSON_AddNullToObject(g, "input_activations");
        cJSON_AddNullToObject(g, "output_activations");
        cJSON_AddItemToObject(g, "targets", cJSON_CreateStringArray((const char *[]){"Linear"}, 1));
        cJSON *w = cJSON_AddObjectToObject(g, "weights");
        cJSON_AddNullToObject(w, "actorder");
        cJSON_AddNullToObject(w, "block_structure");
        cJSON_AddBoolToObject(w, "dynamic", 0);
        cJSON_AddNumberToObject(w, "group_size", p->group);
        cJSON_AddNumberToObject(w, "num_bits", p->bits);
        cJSON_AddStringToObject(w, "observer", "minmax");
        cJSON_AddItemToObject(w, "observer_kwargs", cJSON_CreateObject());
        cJSON_AddStringToObject(w, "strategy", "group");
        cJSON_AddBoolToObject(w, "symmetric", 0);
        cJSON_AddStringToObject(w, "type", "int");
        cJSON_AddStringToObject(q, "format", "pack-quantized");
        cJSON_AddNullToObject(q, "global_compression_ratio");
        cJSON_AddItemToArray(routers, cJSON_CreateString("lm_head"));
        cJSON_AddItemToObject(q, "ignore", routers);
        routers = NULL;
        cJSON_AddNullToObject(q, "kv_cache_scheme");
        cJSON_AddStringToObject(q, "quant_method", "compressed-tensors");
        cJSON_AddStringToObject(q, "quantization_status", "compressed");
        cJSON_AddItemToObject(q, "sparsity_config", cJSON_CreateObject());
        cJSON_AddItemToObject(q, "transform_config", cJSON_CreateObject());
        cJSON_AddStringToObject(q, "version", "0.12.2");
    }
    cJSON_Delete(routers);
    char *out = cJSON_Print(c);
    cJSON_Delete(c);
    if (!out)
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    snprintf(path, sizeof path, "%.4000s/config.json", dir);
    rc = of_write_all(path, out, strlen(out), err);
    free(out);
    return rc;
}

/* The tokenizer and generation files (everything but config.json and the weights). */
static int copy_side_files(const char *from, const char *to, qk_err *err)
{
    DIR *d = opendir(from);
    if (!d)
        return qk_err_set(err, QK_EIO, "%s: cannot open folder: %s", from, strerror(errno));
    int rc = QK_OK;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        char a[4400], b[4400];
        struct stat st;
        snprintf(a, sizeof a, "%.4000s/%.255s", from, e->d_name);
        if (e->d_name[0] == '.' || stat(a, &st) != 0 || !S_ISREG(st.st_mode) ||
            !strcmp(e->d_name, "config.json") || ends_with(e->d_name, ".safetensors") ||
            ends_with(e->d_name, ".safetensors.index.json") || ends_with(e->d_name, ".bin") ||
            ends_with(e->d_name, ".pt") || ends_with(e->d_name, ".pth"))
            continue;
        snprintf(b, sizeof b, "%.4000s/%.255s", to, e->d_name);
        rc = copy_file(a, b, err);
    }
    closedir(d);
    return rc;
}

typedef struct {
    const cv_plan *plan;
    const cv_eval_model *em;
    const awq_run *run;
    const aw_params *p;
} hf_out;

/* Whether tensor t is written as 4-bit linears (else as one f16 tensor: a router stays dense). */
static int packed(const hf_out *h, const cv_tensor *t)
{
    int64_t a, b;
    return awq_weight(h->run, t->name, &a, &b) && !awq_weight_dense(h->run, t->name);
}

/* The matrices of t written as linears of their own: the experts of a stacked 3-D tensor. */
static int64_t n_mats(const cv_tensor *t)
{
    return t->n_dims == 3 ? t->ne[2] : 1;
}

/* A quantized linear's tensors (for each expert of a 3-D tensor), or a dense tensor as f16. */
static int64_t n_parts_of(const hf_out *h, const cv_tensor *t)
{
    return packed(h, t) ? (h->p->format == AW_AWQ ? 3 : 4) * n_mats(t) : 1;
}

/* The checkpoint name of matrix e of t: a stacked expert tensor's "…experts.*.w1.weight" with
 * the '*' replaced by e (as AutoAWQ and llm-compressor write Mixtral's and Qwen3-MoE's experts),
 * else the source name itself. */
static void mat_name(const cv_tensor *t, int64_t e, char *out, size_t size)
{
    const char *star = strchr(t->src_name, '*');
    if (star)
        snprintf(out, size, "%.*s%lld%s", (int)(star - t->src_name), t->src_name, (long long)e, star + 1);
    else
        snprintf(out, size, "%s", t->src_name);
}

static void spec_of(const hf_out *h, const cv_tensor *t, int64_t part, st_tensor_spec *s, char *name, size_t nsz)
{
    int64_t in = t->ne[0], out = t->n_dims > 1 ? t->ne[1] : 1, g = h->p->group;
    const int64_t per = h->p->format == AW_AWQ ? 3 : 4; /* parts per matrix */
    char src[192];
    mat_name(t, packed(h, t) ? part / per : 0, src, sizeof src);
    part %= per;
    size_t base = strlen(src) > 7 && ends_with(src, ".weight") ? strlen(src) - 7 : strlen(src);
    memset(s, 0, sizeof *s);
    s->name = name;
    if (!packed(h, t)) {
        snprintf(name, nsz, "%s", t->src_name);
        s->dtype = ST_F16;
        s->n_dims = (int)t->n_dims;
        for (uint32_t d = 0; d < t->n_dims; d++)
            s->shape[d] = t->ne[t->n_dims - 1 - d];
        return;
    }
    static const char *const AWQ[] = {"qweight", "qzeros", "scales"};
    static const char *const CT[] = {"weight_packed", "weight_scale", "weight_zero_point", "weight_shape"};
    snprintf(name, nsz, "%.*s.%s", (int)base, src, h->p->format == AW_AWQ ? AWQ[part] : CT[part]);
    s->n_dims = 2;
    if (h->p->format == AW_AWQ) {
        const int64_t shapes[3][2] = {{in, out / 8}, {in / g, out / 8}, {in / g, out}};
        s->dtype = part == 2 ? ST_F16 : ST_I32;
        s->shape[0] = shapes[part][0], s->shape[1] = shapes[part][1];
    } else {
        const int64_t shapes[3][2] = {{out, (in + 7) / 8}, {out, in / g}, {(out + 7) / 8, in / g}};
        s->dtype = part == 1 ? ST_F16 : part == 3 ? ST_I64 : ST_I32;
        if (part == 3) {
            s->n_dims = 1;
            s->shape[0] = 2;
        } else {
            s->shape[0] = shapes[part][0], s->shape[1] = shapes[part][1];
        }
    }
}

/* Writes the packed tensors of one linear aw [ne1][ne0] to w: GPTQ's codes, scales and zeros when
 * cq is not NULL, else aw rounded to nearest. */
static int write_packed(const hf_out *h, const float *aw, const uint8_t *cq, const float *cs, const uint8_t *cz,
                        int64_t ne0, int64_t ne1, st_writer *w, qk_err *err)
{
    const int64_t g = h->p->group, ng = ne0 / g;
    /* rounded here only without GPTQ's codes */
    uint8_t *qr = cq ? NULL : malloc((size_t)(ne0 * ne1)), *zr = cq ? NULL : malloc((size_t)(ne1 * ng));
    float *sr = cq ? NULL : malloc((size_t)(ne1 * ng) * sizeof *sr);
    uint16_t *sh = malloc((size_t)(ne1 * ng) * sizeof *sh);
    int32_t *a = malloc((size_t)(ne0 * ne1) / 2 + 64), *b = malloc((size_t)(ne1 * ng) / 2 + 64 + (size_t)ng * 4);
    int rc = (cq || (qr && zr && sr)) && sh && a && b ? QK_OK : qk_err_set(err, QK_ENOMEM, "out of memory");
    for (int64_t o = 0; !rc && !cq && o < ne1; o++)
        awq_quantize_row(aw + o * ne0, ne0, (int)g, h->p->bits, qr + o * ne0, sr + o * ng, zr + o * ng, NULL);
    const uint8_t *q = cq ? cq : qr, *z = cq ? cz : zr;
    const float *sc = cq ? cs : sr;
    if (!rc && h->p->format == AW_AWQ) {
        awq_gemm_pack(q, z, ne1, ne0, g, a, b);
        for (int64_t gi = 0; gi < ng; gi++) /* scales [in/g][out] */
            for (int64_t o = 0; o < ne1; o++)
                sh[gi * ne1 + o] = q_fp32_to_fp16(sc[o * ng + gi]);
        rc = st_writer_write(w, a, (size_t)(ne0 * ne1 / 8) * 4, err);
        if (!rc)
            rc = st_writer_write(w, b, (size_t)(ng * ne1 / 8) * 4, err);
        if (!rc)
            rc = st_writer_write(w, sh, (size_t)(ng * ne1) * 2, err);
    } else if (!rc) {
        ct_pack(q, z, ne1, ne0, g, a, b);
        for (int64_t k = 0; k < ne1 * ng; k++)
            sh[k] = q_fp32_to_fp16(sc[k]);
        const int64_t shape[2] = {ne1, ne0};
        rc = st_writer_write(w, a, (size_t)(ne1 * ((ne0 + 7) / 8)) * 4, err);
        if (!rc)
            rc = st_writer_write(w, sh, (size_t)(ne1 * ng) * 2, err);
        if (!rc)
            rc = st_writer_write(w, b, (size_t)(((ne1 + 7) / 8) * ng) * 4, err);
        if (!rc)
            rc = st_writer_write(w, shape, sizeof shape, err);
    }
    free(qr), free(zr), free(sr), free(sh), free(a), free(b);
    return rc;
}

/* Writes the bytes of one output tensor (all its parts; a stacked expert tensor's experts one
 * after the other, as spec_of names them) to w. */
static int write_hf_tensor(const hf_out *h, size_t i, const cv_tensor *t, st_writer *w, qk_err *err)
{
    int64_t ne0, ne1;
    const float *aw = awq_weight(h->run, t->name, &ne0, &ne1);
    if (!packed(h, t)) { /* f16: as read, or as folded (norms, biases, a router) */
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            n *= (uint64_t)t->ne[d];
        float *f = malloc((size_t)n * sizeof *f);
        uint16_t *hb = malloc((size_t)n * sizeof *hb);
        int rc = f && hb ? QK_OK : qk_err_set(err, QK_ENOMEM, "out of memory");
        const float *v = aw ? aw : changed_vector(&h->em->m, t->name);
        if (!rc) {
            if (v)
                memcpy(f, v, (size_t)n * sizeof *f);
            else
                cv_plan_read_f32(h->plan, i, f, h->p->n_threads);
            q_from_float_f16(f, hb, (int64_t)n);
            rc = st_writer_write(w, hb, (size_t)n * 2, err);
        }
        free(f);
        free(hb);
        return rc;
    }
    const int64_t n_mat = n_mats(t), rows = ne1 / n_mat; /* expert e: rows e · rows .. */
    const uint8_t *cq = NULL, *cz = NULL;
    const float *cs = NULL;
    const int64_t ng = ne0 / h->p->group;
    const int gptq = awq_codes(h->run, t->name, &cq, &cs, &cz);
    int rc = QK_OK;
    for (int64_t e = 0; !rc && e < n_mat; e++)
        rc = write_packed(h, aw + e * rows * ne0, gptq ? cq + e * rows * ne0 : NULL,
                          gptq ? cs + e * rows * ng : NULL, gptq ? cz + e * rows * ng : NULL, ne0, rows, w, err);
    return rc;
}

static int write_weights(const hf_out *h, const char *dir, qk_err *err)
{
    const size_t n = cv_plan_n_tensors(h->plan);
    size_t ns = 0;
    for (size_t i = 0; i < n; i++)
        if (cv_plan_tensor(h->plan, i)->src_name[0])
            ns += (size_t)n_parts_of(h, cv_plan_tensor(h->plan, i));
    st_tensor_spec *specs = calloc(ns ? ns : 1, sizeof *specs);
    char (*names)[192] = calloc(ns ? ns : 1, sizeof *names);
    if (!specs || !names) {
        free(specs), free(names);
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const cv_tensor *t = cv_plan_tensor(h->plan, i);
        if (!t->src_name[0])
            continue;
        for (int64_t part = 0; part < n_parts_of(h, t); part++, k++)
            spec_of(h, t, part, &specs[k], names[k], sizeof names[k]);
    }
    char path[4200];
    snprintf(path, sizeof path, "%.4000s/model.safetensors", dir);
    static const char *const MK[] = {"format"}, *const MV[] = {"pt"};
    st_writer *w = NULL;
    int rc = st_writer_open(&w, path, specs, ns, MK, MV, 1, err);
    for (size_t i = 0; !rc && i < n; i++) {
        const cv_tensor *t = cv_plan_tensor(h->plan, i);
        if (t->src_name[0])
            rc = write_hf_tensor(h, i, t, w, err);
    }
    if (!rc)
        rc = st_writer_commit(w, err);
    else
        st_writer_abort(w);
    free(specs);
    free(names);
    return rc;
}

static int run_hf(const aw_params *p, aw_result *r, qk_err *err)
{
    if (!is_dir(p->model))
        return qk_err_set(err, QK_EFORMAT, "%s: --format awq and ct need the Hugging Face folder (its "
                          "config.json and tokenizer files are carried over); a GGUF takes --format gguf:TYPE",
                          p->model);
    int rc = of_dir_check(p->out, 0, err);
    if (rc)
        return rc;
    cv_eval_model em = {0};
    rc = cv_eval_open(&em, p->model, err);
    /* experts are written one linear each under their checkpoint names: stacked ones only */
    for (size_t i = 0; !rc && em.plan && i < cv_plan_n_tensors(em.plan); i++) {
        const cv_tensor *t = cv_plan_tensor(em.plan, i);
        if (t->n_dims == 3 && !strchr(t->src_name, '*'))
            rc = qk_err_set(err, QK_EUNSUPPORTED, "%s: tensor '%s' comes from the fused expert tensor '%s'; "
                            "--format awq and ct write experts stored one per linear (Mixtral, Qwen3-MoE): "
                            "use --format gguf:TYPE", p->model, t->name, t->src_name);
    }
    for (int l = 0; !rc && l < em.m.n_layer; l++) {
        static const ga_kind K[] = {GA_T_ATTN_Q, GA_T_ATTN_K, GA_T_ATTN_V, GA_T_ATTN_OUT, GA_T_FFN_GATE,
                                    GA_T_FFN_UP, GA_T_FFN_DOWN, GA_T_FFN_GATE_EXPS, GA_T_FFN_UP_EXPS,
                                    GA_T_FFN_DOWN_EXPS, GA_T_FFN_GATE_SHEXP, GA_T_FFN_UP_SHEXP,
                                    GA_T_FFN_DOWN_SHEXP};
        for (size_t k = 0; !rc && k < sizeof K / sizeof K[0]; k++) {
            const eng_tensor *t = &em.m.layers[l].w[K[k]];
            if (t->data && t->ne0 % p->group)
                rc = qk_err_set(err, QK_EFORMAT, "%s: tensor '%s': %lld input columns are not a multiple "
                                "of --group-size %d", p->model, t->name, (long long)t->ne0, p->group);
            else if (t->data && t->ne1 % 8) /* 8 output columns per packed int32 */
                rc = qk_err_set(err, QK_EFORMAT, "%s: tensor '%s': %lld output rows%s are not a multiple "
                                "of 8", p->model, t->name, (long long)t->ne1, t->ne2 > 1 ? " per expert" : "");
        }
    }
    awq_run *run = NULL;
    if (!rc)
        rc = search_model(p, &em, NULL, NULL, &run, r, err);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", p->out);
    int made = 0;
    if (!rc && !(made = mkdtemp(tmp) != NULL))
        rc = qk_err_set(err, QK_EIO, "%s: cannot create a temporary folder: %s", p->out, strerror(errno));
    if (made)
        chmod(tmp, 0755); /* mkdtemp's 0700 is not what a checkpoint folder should be */
    if (!rc) {
        const hf_out h = {em.plan, &em, run, p};
        rc = write_weights(&h, tmp, err);
    }
    if (!rc)
        rc = write_config(p, &em, tmp, err);
    if (!rc)
        rc = copy_side_files(p->model, tmp, err);
    if (!rc)
        rc = of_dir_install(tmp, p->out, 0, err);
    if (rc && made)
        of_dir_remove_flat(tmp, NULL);
    awq_run_free(run);
    cv_eval_close(&em);
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
        rc = run_hf(p, r, err);
    r->seconds_total = now_s() - t0;
    return rc;
}
