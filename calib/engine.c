/* engine.c — the forward pass. Follows llama.cpp's graph for the llama/qwen2/qwen3 architectures,
 * their mixtures of experts (Mixtral, qwen3moe) and Llama 4's attention (llama-iswa: NoPE blocks
 * with q temperature, per-head RMSNorm after RoPE, chunked attention) operation by operation
 * (RMSNorm with a double sum, RoPE cache with float theta accumulation, softmax with a double
 * sum, build_moe_ffn's routing) so perplexities agree to the fourth digit. */
#include "engine.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/quant.h"
#include "detmath.h"

/* Queries per attention task. */
#define ENG_ATT_BLOCK 32

struct eng_ctx {
    const eng_model *m;
    int n_ctx;
    float *x, *xb, *q, *k, *v, *att_out, *hb, *hb2, *rope; /* activations, [n][width] */
    float *scores;                                         /* [threads][ENG_ATT_BLOCK][n_ctx] */
    float *vt;                                             /* [n_head_kv][head_dim][n_ctx] */
    void *xq;                                              /* activations quantized for a dot */
    size_t xq_bytes;
    int n_threads;
    /* mixture of experts (NULL for dense models) */
    float *router;   /* [n][n_expert] router logits */
    int *sel;        /* [n][k] each token's experts in top-k order (k = n_expert_used) */
    float *sel_w;    /* [n][k] their weights */
    int *exp_start;  /* [n_expert + 1] where each expert's entries start in exp_slots */
    int *exp_slots;  /* [n·k] slots (token·k + j) grouped by expert, tokens ascending */
    float *xg;       /* [n][n_embd] one expert's gathered inputs, then outputs; shared expert out */
    float *moe_out;  /* [n][k][n_embd] weighted expert output per token and slot */
    eng_matmul_observer observe; /* NULL: none */
    void *observe_user;
};

static int check_mat(const eng_tensor *t, const int64_t ne[GGUF_MAX_DIMS], qk_err *err)
{
    if (!t->data)
        return qk_err_set(err, QK_EFORMAT, "tensor '%s' is missing", t->name ? t->name : "?");
    if (t->ne0 != ne[0] || t->ne1 != ne[1] || t->ne2 != ne[2])
        return qk_err_set(err, QK_EFORMAT,
                          "tensor '%s': shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]", t->name,
                          (long long)t->ne0, (long long)t->ne1, (long long)t->ne2, (long long)ne[0],
                          (long long)ne[1], (long long)ne[2]);
    const q_kernels *k = q_kernels_get(t->type);
    const q_type_info_t *ti = q_type_info(t->type);
    if (!k || !k->vec_dot || !k->dequantize || !q_kernels_get(k->vec_dot_type) ||
        !q_kernels_get(k->vec_dot_type)->from_float)
        return qk_err_set(err, QK_EUNSUPPORTED, "tensor '%s': type %s is not supported by the engine",
                          t->name, ti ? ti->name : "unknown");
    if (ne[0] % ti->blck_size)
        return qk_err_set(err, QK_EFORMAT, "tensor '%s': row of %lld is not a multiple of %s blocks",
                          t->name, (long long)ne[0], ti->name);
    return QK_OK;
}

static int check_kind(const eng_model *m, const eng_tensor *t, ga_kind k, qk_err *err)
{
    uint32_t nd;
    int64_t ne[GGUF_MAX_DIMS];
    ga_shape(k, &m->hp, &nd, ne);
    return check_mat(t, ne, err);
}

static bool has_kind(const eng_layer *L, ga_kind k)
{
    return ga_kind_get(k)->vector ? L->v[k] != NULL : L->w[k].data != NULL;
}

/* The kinds block l's forward pass reads are present: attention, and a dense feed-forward or a
 * router with its experts (a shared expert whole or not at all). */
static int check_block_kinds(const eng_model *m, int l, qk_err *err)
{
    static const ga_kind all[] = {GA_T_ATTN_NORM, GA_T_ATTN_Q, GA_T_ATTN_K, GA_T_ATTN_V, GA_T_ATTN_OUT,
                                  GA_T_FFN_NORM};
    static const ga_kind dense[] = {GA_T_FFN_GATE, GA_T_FFN_UP, GA_T_FFN_DOWN};
    static const ga_kind moe[] = {GA_T_FFN_GATE_INP, GA_T_FFN_GATE_EXPS, GA_T_FFN_UP_EXPS,
                                  GA_T_FFN_DOWN_EXPS};
    static const ga_kind shexp[] = {GA_T_FFN_GATE_SHEXP, GA_T_FFN_UP_SHEXP, GA_T_FFN_DOWN_SHEXP};
    const eng_layer *L = &m->layers[l];
    const ga_kind *lists[] = {all, L->moe ? moe : dense};
    const size_t lens[] = {sizeof all / sizeof all[0], L->moe ? 4 : 3};
    char name[GGUF_MAX_NAME];
    if (L->moe && m->n_expert <= 0)
        return qk_err_set(err, QK_EFORMAT, "block %d has experts but the model's expert count is 0", l);
    for (int i = 0; i < 2; i++)
        for (size_t j = 0; j < lens[i]; j++)
            if (!has_kind(L, lists[i][j])) {
                ga_tensor_name(lists[i][j], l, name, sizeof name);
                return qk_err_set(err, QK_EFORMAT, "tensor '%s' is missing", name);
            }
    const int n_sh = has_kind(L, shexp[0]) + has_kind(L, shexp[1]) + has_kind(L, shexp[2]);
    if (L->moe && n_sh % 3)
        return qk_err_set(err, QK_EFORMAT,
                          "block %d: the shared expert needs ffn_gate_shexp, ffn_up_shexp and ffn_down_shexp "
                          "(%d of 3 present)", l, n_sh);
    return QK_OK;
}

int eng_model_validate(const eng_model *m, qk_err *err)
{
    if (m->n_embd <= 0 || m->n_head <= 0 || m->n_head_kv <= 0 || m->n_head % m->n_head_kv ||
        m->head_dim <= 0 || m->n_layer <= 0 || m->n_ff <= 0 || m->n_vocab <= 0 ||
        m->n_rot <= 0 || m->n_rot > m->head_dim || m->n_rot % 2 ||
        (m->n_expert > 0 && (m->n_expert_used <= 0 || m->n_expert_used > m->n_expert || m->n_ff_exp <= 0)))
        return qk_err_set(err, QK_EFORMAT,
                          "inconsistent hyper-parameters (embd %d, heads %d/%d, head_dim %d, rot %d, "
                          "experts %d/%d)",
                          m->n_embd, m->n_head, m->n_head_kv, m->head_dim, m->n_rot, m->n_expert_used,
                          m->n_expert);
    if (m->attn_chunk < 0 || !(m->attn_temp_scale >= 0.0f) || !isfinite(m->attn_temp_scale) ||
        (m->attn_temp_scale > 0.0f && m->attn_temp_floor <= 0))
        return qk_err_set(err, QK_EFORMAT,
                          "inconsistent attention hyper-parameters (chunk %d, temperature scale %g, "
                          "floor %d)",
                          m->attn_chunk, (double)m->attn_temp_scale, m->attn_temp_floor);
    int rc;
    if ((rc = check_kind(m, &m->tok_embd, GA_T_TOKEN_EMBD, err)) ||
        (rc = check_kind(m, &m->output, GA_T_OUTPUT, err)))
        return rc;
    for (int l = 0; l < m->n_layer; l++) {
        const eng_layer *L = &m->layers[l];
        if ((rc = check_block_kinds(m, l, err)))
            return rc;
        for (int k = 0; k < GA_T_COUNT; k++) {
            const ga_kind_info *ki = ga_kind_get((ga_kind)k);
            if (ki->where == GA_IN_MODEL || ki->vector || !L->w[k].data)
                continue;
            if ((rc = check_kind(m, &L->w[k], (ga_kind)k, err)))
                return rc;
        }
    }
    return QK_OK;
}

size_t eng_model_tensors_named(eng_model *m, const char *name, eng_tensor *out[2])
{
    size_t n = 0;
    if (m->tok_embd.name && !strcmp(m->tok_embd.name, name))
        out[n++] = &m->tok_embd;
    if (m->output.name && !strcmp(m->output.name, name))
        out[n++] = &m->output;
    for (int l = 0; n == 0 && l < m->n_layer; l++)
        for (int k = 0; k < GA_T_COUNT && n == 0; k++)
            if (m->layers[l].w[k].data && m->layers[l].w[k].name && !strcmp(m->layers[l].w[k].name, name))
                out[n++] = &m->layers[l].w[k];
    return n;
}

void eng_model_free_owned(eng_model *m)
{
    if (!m)
        return;
    for (int l = 0; m->layers && l < m->n_layer; l++)
        for (int k = 0; k < GA_T_COUNT; k++)
            free(m->layers[l].v[k]);
    for (size_t i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->output_norm);
    free(m->rope_freqs);
    m->layers = NULL;
    m->owned = NULL;
    m->n_owned = 0;
    m->output_norm = m->rope_freqs = NULL;
}

void eng_ctx_free(eng_ctx *c)
{
    if (!c)
        return;
    float *bufs[] = {c->x,      c->xb,     c->q,      c->k,     c->v,  c->att_out, c->hb,
                     c->hb2,    c->rope,   c->scores, c->vt,    c->router, c->sel_w, c->xg,
                     c->moe_out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(c->sel);
    free(c->exp_start);
    free(c->exp_slots);
    free(c->xq);
    free(c);
}

/* Widest feed-forward: dense, one expert, or the shared expert. */
static int64_t max_ff(const eng_model *m)
{
    int64_t ff = m->n_ff;
    if (m->n_expert > 0) {
        ff = m->n_ff_exp > ff ? m->n_ff_exp : ff;
        ff = m->hp.n_ff_shexp > ff ? m->hp.n_ff_shexp : ff;
    }
    return ff;
}

static size_t max_dot_row_bytes(const eng_model *m)
{
    size_t best = 0;
    const int64_t widths[] = {m->n_embd, (int64_t)m->n_head * m->head_dim, max_ff(m)};
    for (size_t w = 0; w < 3; w++)
        for (int t = 0; t < Q_TYPE_COUNT; t++) {
            size_t b = q_row_size(t, widths[w]);
            if (b > best && q_kernels_get(t))
                best = b;
        }
    return best;
}

/* The mixture-of-experts scratch: router logits, routes, per-expert slot lists, one expert's
 * gathered batch and the per-slot outputs; all proportional to n (never n_expert · n · n_ff). */
static int moe_scratch(eng_ctx *c, const eng_model *m, size_t n)
{
    if (m->n_expert <= 0)
        return 1;
    const size_t ne = (size_t)m->n_expert, k = (size_t)m->n_expert_used, d = (size_t)m->n_embd;
    c->router = malloc(n * ne * sizeof(float));
    c->sel = malloc(n * k * sizeof(int));
    c->sel_w = malloc(n * k * sizeof(float));
    c->exp_start = malloc((ne + 1) * sizeof(int));
    c->exp_slots = malloc(n * k * sizeof(int));
    c->xg = malloc(n * d * sizeof(float));
    c->moe_out = malloc(n * k * d * sizeof(float));
    return c->router && c->sel && c->sel_w && c->exp_start && c->exp_slots && c->xg && c->moe_out;
}

int eng_ctx_create(eng_ctx **out, const eng_model *m, int n_ctx, qk_err *err)
{
    *out = NULL;
    if (n_ctx <= 0)
        return qk_err_set(err, QK_ERANGE, "context of %d tokens", n_ctx);
    eng_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return qk_err_set(err, QK_ENOMEM, "out of memory for the engine context");
    c->m = m;
    c->n_ctx = n_ctx;
    c->n_threads = omp_get_max_threads();
    const size_t n = (size_t)n_ctx, qd = (size_t)m->n_head * m->head_dim,
                 kvd = (size_t)m->n_head_kv * m->head_dim, ff = (size_t)max_ff(m);
    const size_t wide = qd > (size_t)m->n_embd ? qd : (size_t)m->n_embd;
    c->x = malloc(n * m->n_embd * sizeof(float));
    c->xb = malloc(n * wide * sizeof(float));
    c->q = malloc(n * qd * sizeof(float));
    c->k = malloc(n * kvd * sizeof(float));
    c->v = malloc(n * kvd * sizeof(float));
    c->att_out = malloc(n * qd * sizeof(float));
    c->hb = malloc(n * ff * sizeof(float));
    c->hb2 = malloc(n * ff * sizeof(float));
    c->rope = malloc(n * m->n_rot * sizeof(float));
    c->scores = malloc((size_t)c->n_threads * ENG_ATT_BLOCK * n * sizeof(float));
    c->vt = malloc(n * kvd * sizeof(float));
    c->xq_bytes = max_dot_row_bytes(m);
    c->xq = malloc(n * (c->xq_bytes ? c->xq_bytes : 1));
    if (!c->x || !c->xb || !c->q || !c->k || !c->v || !c->att_out || !c->hb || !c->hb2 ||
        !c->rope || !c->scores || !c->vt || !c->xq || !moe_scratch(c, m, n)) {
        eng_ctx_free(c);
        return qk_err_set(err, QK_ENOMEM, "out of memory for a %d-token context", n_ctx);
    }
    *out = c;
    return QK_OK;
}

void eng_ctx_set_observer(eng_ctx *c, eng_matmul_observer fn, void *user)
{
    c->observe = fn;
    c->observe_user = user;
}

/* Y[t][r] = W[r] · X[t] for t < n. Activations are quantized once to the dot partner type; the
 * observer sees them before that, as float. expert: W's index in its 3-D tensor, or -1. */
static void matmul(eng_ctx *c, const eng_tensor *W, int expert, const float *X, int n, float *Y)
{
    if (c->observe)
        c->observe(c->observe_user, W, expert, X, n);
    const q_kernels *k = q_kernels_get(W->type);
    const q_kernels *kv = q_kernels_get(k->vec_dot_type);
    const int64_t ne0 = W->ne0, ne1 = W->ne1;
    const size_t xrow = q_row_size(k->vec_dot_type, ne0), wrow = q_row_size(W->type, ne0);
    const char *xq = (const char *)X;
    if (k->vec_dot_type != Q_TYPE_F32) {
#pragma omp parallel for schedule(static) if (n >= 64)
        for (int t = 0; t < n; t++)
            kv->from_float(X + (size_t)t * ne0, (char *)c->xq + (size_t)t * xrow, ne0);
        xq = c->xq;
    }
    const char *w = W->data;
    /* Threads only pay off above ~1M multiply-adds; below that waking them costs more. */
    const int par = (double)ne0 * (double)ne1 * n > 1e6;
    /* Fixed blocks of rows × every token: each element's value depends only on its rows (the gemm
     * contract), so the split, and the thread count, never changes a bit. */
    const int64_t rb = q_gemm_rows(W->type);
#pragma omp parallel for schedule(static) if (par)
    for (int64_t r0 = 0; r0 < ne1; r0 += rb) {
        const int64_t nr = ne1 - r0 < rb ? ne1 - r0 : rb;
        k->gemm((int)ne0, nr, n, w + r0 * wrow, wrow, xq, xrow, Y + r0, (size_t)ne1);
    }
}

void eng_gemm_f32(const float *w, int64_t n_out, int64_t n_in, const float *x, int n, float *y)
{
    const q_kernels *k = q_kernels_get(Q_TYPE_F32);
    const size_t row = (size_t)n_in * sizeof(float);
    const int par = (double)n_in * (double)n_out * n > 1e6;
    const int64_t rb = q_gemm_rows(Q_TYPE_F32);
#pragma omp parallel for schedule(static) if (par)
    for (int64_t r0 = 0; r0 < n_out; r0 += rb) {
        const int64_t nr = n_out - r0 < rb ? n_out - r0 : rb;
        k->gemm((int)n_in, nr, n, (const char *)w + (size_t)r0 * row, row, x, row, y + r0, (size_t)n_out);
    }
}

/* y = x / sqrt(mean(x²) + eps) ⊙ weight, as ggml_rms_norm then ggml_mul; a NULL weight is all
 * ones (ggml_rms_norm alone: Llama 4's qk norm). y may be x. */
static void rmsnorm(float *y, const float *x, const float *weight /* [d] or NULL */, int d, float eps)
{
    double sum = 0.0;
    for (int i = 0; i < d; i++)
        sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / d);
    const float scale = 1.0f / sqrtf(mean + eps);
    if (weight)
        for (int i = 0; i < d; i++)
            y[i] = x[i] * scale * weight[i];
    else
        for (int i = 0; i < d; i++)
            y[i] = x[i] * scale;
}

/* Elementwise loops over n rows of d values go to the threads above this many values (waking them
 * costs more below); each value is computed alone, so the split never changes a bit. */
#define ENG_PAR_VALUES 65536

/* rmsnorm of each of n rows of d. */
static void rmsnorm_rows(float *y, const float *x, const float *weight, int n, int d, float eps)
{
#pragma omp parallel for schedule(static) if ((int64_t)n * d >= ENG_PAR_VALUES)
    for (int t = 0; t < n; t++)
        rmsnorm(y + (size_t)t * d, x + (size_t)t * d, weight, d, eps);
}

/* x += y over n values. */
static void add_rows(float *x, const float *y, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= ENG_PAR_VALUES)
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
}

/* cos/sin per position and pair, as ggml_rope_cache_init builds them. */
static void rope_cache(eng_ctx *c, int n)
{
    const eng_model *m = c->m;
    const float theta_scale = qk_powf(m->rope_base, -2.0f / (float)m->n_rot);
    for (int p = 0; p < n; p++) {
        float theta = (float)p, *cache = c->rope + (size_t)p * m->n_rot;
        for (int i0 = 0; i0 < m->n_rot; i0 += 2) {
            const float ff = m->rope_freqs ? m->rope_freqs[i0 / 2] : 1.0f;
            cache[i0] = qk_cosf(theta / ff);
            cache[i0 + 1] = qk_sinf(theta / ff);
            theta *= theta_scale;
        }
    }
}

static void rope_apply(const eng_ctx *c, float *vec, int p)
{
    const eng_model *m = c->m;
    const float *cache = c->rope + (size_t)p * m->n_rot;
    const int half = m->n_rot / 2;
    for (int i0 = 0; i0 < m->n_rot; i0 += 2) {
        const float cs = cache[i0], sn = cache[i0 + 1];
        float *a = m->rope_neox ? &vec[i0 / 2] : &vec[i0];
        float *b = m->rope_neox ? &vec[i0 / 2 + half] : &vec[i0 + 1];
        const float x0 = *a, x1 = *b;
        *a = x0 * cs - x1 * sn;
        *b = x0 * sn + x1 * cs;
    }
}

static void add_bias(float *y, const float *b, int n, int d)
{
    if (!b)
        return;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < d; i++)
            y[(size_t)t * d + i] += b[i];
}

/* Llama 4's temperature of the queries at position t in a NoPE block, as llama.cpp's
 * llm_graph_input_attn_temp::set_input computes it: the position and the floor division in float,
 * the log and the affine map in double (std::floor(float) + 1.0 promotes), rounded to float. */
static float attn_temp(int t, int floor_scale, float temp_scale)
{
    const float pos = (float)t;
    const float fl = floorf((pos + 1.0f) / (float)floor_scale);
    return (float)(qk_log((double)fl + 1.0) * (double)temp_scale + 1.0);
}

/* q and k in place, per head, in llama.cpp's order: the weighted per-head RMSNorm (Qwen3), then
 * in a RoPE block RoPE and the unweighted RMSNorm (Llama 4's qk norm), in a NoPE block the q
 * temperature (Llama 4). */
static void qk_prepare(eng_ctx *c, const eng_layer *L, int n)
{
    const eng_model *m = c->m;
    const int hd = m->head_dim, nh = m->n_head, nkv = m->n_head_kv;
    const int temp = L->nope && m->attn_temp_scale > 0.0f, qk_norm = !L->nope && m->qk_rms_norm;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < n; t++) {
        const float f = temp ? attn_temp(t, m->attn_temp_floor, m->attn_temp_scale) : 1.0f;
        for (int h = 0; h < nh + nkv; h++) {
            float *vec = h < nh ? c->q + ((size_t)t * nh + h) * hd
                                : c->k + ((size_t)t * nkv + (h - nh)) * hd;
            const float *w = L->v[h < nh ? GA_T_ATTN_Q_NORM : GA_T_ATTN_K_NORM];
            if (w)
                rmsnorm(vec, vec, w, hd, m->rms_eps);
            if (!L->nope) {
                rope_apply(c, vec, t);
                if (qk_norm)
                    rmsnorm(vec, vec, NULL, hd, m->rms_eps);
            } else if (temp && h < nh) {
                for (int i = 0; i < hd; i++)
                    vec[i] *= f;
            }
        }
    }
}

/* V per kv head transposed, [n_head_kv][head_dim][n_ctx], so that p·v is a product of rows. */
static void transpose_v(eng_ctx *c, int n)
{
    const eng_model *m = c->m;
    const int hd = m->head_dim, nkv = m->n_head_kv;
#pragma omp parallel for schedule(static) collapse(2) if ((int64_t)n * nkv * hd >= ENG_PAR_VALUES)
    for (int kh = 0; kh < nkv; kh++)
        for (int i = 0; i < hd; i++) {
            float *row = c->vt + ((size_t)kh * hd + i) * c->n_ctx;
            for (int j = 0; j < n; j++)
                row[j] = c->v[((size_t)j * nkv + kh) * hd + i];
        }
}

/* Softmax of the visible scores s[lo..hi] in place (the masked ones are -inf to llama.cpp: their
 * exp is 0 and they take no part in the max or the sum); the rest of s[0..nk) becomes 0 so that
 * the p·v product over nk keys adds nothing for them. */
static void softmax_range(float *s, int lo, int hi, int nk, float scale)
{
    float mx = -INFINITY;
    for (int j = lo; j <= hi; j++) {
        s[j] *= scale;
        mx = s[j] > mx ? s[j] : mx;
    }
    for (int j = lo; j <= hi; j++)
        s[j] -= mx;
    qk_expf_array(s + lo, s + lo, (size_t)(hi - lo + 1));
    double sum = 0.0;
    for (int j = lo; j <= hi; j++)
        sum += (double)s[j];
    const float inv = (float)(1.0 / sum);
    for (int j = lo; j <= hi; j++)
        s[j] *= inv;
    for (int j = 0; j < lo; j++)
        s[j] = 0.0f;
    for (int j = hi + 1; j < nk; j++)
        s[j] = 0.0f;
}

/* Per head and block of ENG_ATT_BLOCK queries: scores = K·q over the keys the block sees, then
 * out = Vᵀ·p, both as f32 matrix products. Causal; with chunk > 0 query t sees only keys
 * p >= (t / chunk) · chunk, and a block's keys start at its first query's chunk start. The blocks
 * are fixed, so each value depends only on its query's position, not on the thread count. */
static void attention(eng_ctx *c, int n, int chunk)
{
    const eng_model *m = c->m;
    const int hd = m->head_dim, nh = m->n_head, nkv = m->n_head_kv, group = nh / nkv;
    const float scale = 1.0f / sqrtf((float)hd);
    const q_gemm_fn gemm = q_kernels_get(Q_TYPE_F32)->gemm;
    const int nblk = (n + ENG_ATT_BLOCK - 1) / ENG_ATT_BLOCK;
    const size_t fs = sizeof(float);
    transpose_v(c, n);
#pragma omp parallel for schedule(dynamic, 1) collapse(2)
    for (int h = 0; h < nh; h++) {
        for (int b = 0; b < nblk; b++) {
            float *s = c->scores + (size_t)omp_get_thread_num() * ENG_ATT_BLOCK * c->n_ctx;
            const int kh = h / group, t0 = b * ENG_ATT_BLOCK;
            const int t1 = n - t0 < ENG_ATT_BLOCK ? n : t0 + ENG_ATT_BLOCK, nq = t1 - t0;
            const int k0 = chunk > 0 ? t0 / chunk * chunk : 0, nk = t1 - k0; /* keys k0 .. t1-1 */
            gemm(hd, nk, nq, c->k + ((size_t)k0 * nkv + kh) * hd, (size_t)nkv * hd * fs,
                 c->q + ((size_t)t0 * nh + h) * hd, (size_t)nh * hd * fs, s, (size_t)c->n_ctx);
            for (int i = 0; i < nq; i++) {
                const int t = t0 + i, lo = chunk > 0 ? t / chunk * chunk : 0;
                softmax_range(s + (size_t)i * c->n_ctx, lo - k0, t - k0, nk, scale);
            }
            gemm(nk, hd, nq, c->vt + (size_t)kh * hd * c->n_ctx + k0, (size_t)c->n_ctx * fs, s,
                 (size_t)c->n_ctx * fs, c->att_out + ((size_t)t0 * nh + h) * hd, (size_t)nh * hd);
        }
    }
}

/* A SwiGLU feed-forward's weights: a dense block's, one expert's, or the shared expert's. */
typedef struct {
    eng_tensor gate, up, down;
    const float *gate_b, *up_b, *down_b; /* NULL: none */
    int expert;                          /* slice of the 3-D expert tensors, or -1 */
} ffn_weights;

/* out[t] = down · (silu(gate · x[t]) ⊙ (up · x[t])) for t < n; out may be x. Clobbers hb, hb2. */
static void swiglu(eng_ctx *c, const ffn_weights *f, const float *x /* [n][n_embd] */, int n,
                   float *out /* [n][n_embd] */)
{
    const int ff = (int)f->gate.ne1;
    matmul(c, &f->gate, f->expert, x, n, c->hb);
    matmul(c, &f->up, f->expert, x, n, c->hb2);
    add_bias(c->hb, f->gate_b, n, ff);
    add_bias(c->hb2, f->up_b, n, ff);
    /* silu(g) · u = g / (1 + e^-g) · u, in pieces of 256 values (the exponentials 8 at a time) */
    enum { PIECE = 256 };
    const size_t total = (size_t)n * ff;
#pragma omp parallel for schedule(static) if (total >= ENG_PAR_VALUES)
    for (size_t i0 = 0; i0 < total; i0 += PIECE) {
        const size_t len = total - i0 < PIECE ? total - i0 : PIECE;
        float e[PIECE], *g = c->hb + i0;
        const float *u = c->hb2 + i0;
        for (size_t i = 0; i < len; i++)
            e[i] = -g[i];
        qk_expf_array(e, e, len);
        for (size_t i = 0; i < len; i++)
            g[i] = g[i] / (1.0f + e[i]) * u[i];
    }
    matmul(c, &f->down, f->expert, c->hb, n, out);
    add_bias(out, f->down_b, n, (int)f->down.ne1);
}

/* Matrix e of a 3-D expert tensor, as a plain 2-D tensor. */
static eng_tensor expert_slice(const eng_tensor *t, int e)
{
    eng_tensor s = *t;
    s.data = (const char *)t->data + (size_t)e * (size_t)t->ne1 * q_row_size(t->type, t->ne0);
    s.ne2 = 1;
    return s;
}

/* Counting sort of the slots (token·k + j) by expert: expert e's slots are
 * exp_slots[exp_start[e] .. exp_start[e+1]), tokens ascending. */
static void group_by_expert(eng_ctx *c, int n)
{
    const int ne = c->m->n_expert, nk = n * c->m->n_expert_used;
    int *start = c->exp_start;
    memset(start, 0, (size_t)(ne + 1) * sizeof(int));
    for (int i = 0; i < nk; i++)
        start[c->sel[i] + 1]++;
    for (int e = 0; e < ne; e++)
        start[e + 1] += start[e];
    for (int i = 0; i < nk; i++) /* start[e] as expert e's cursor ends at expert e+1's start */
        c->exp_slots[start[c->sel[i]]++] = i;
    for (int e = ne; e > 0; e--)
        start[e] = start[e - 1];
    start[0] = 0;
}

void eng_moe_route(const float *logits, int n_expert, int k, int norm, ga_gating gating, int *idx,
                   float *w)
{
    /* softmax as ggml_soft_max: max subtracted, double sum, one float reciprocal */
    float mx = -INFINITY, inv = 1.0f;
    if (gating == GA_GATING_SOFTMAX) {
        double sum = 0.0;
        for (int e = 0; e < n_expert; e++)
            mx = logits[e] > mx ? logits[e] : mx;
        for (int e = 0; e < n_expert; e++)
            sum += (double)qk_expf(logits[e] - mx);
        inv = (float)(1.0 / sum);
    }
    /* top k by insertion, descending; a later expert passes only a strictly smaller weight, so
     * ties go to the lower index */
    int filled = 0;
    for (int e = 0; e < n_expert; e++) {
        const float p = gating == GA_GATING_SOFTMAX ? qk_expf(logits[e] - mx) * inv
                                                    : 1.0f / (1.0f + qk_expf(-logits[e]));
        int pos = filled;
        while (pos > 0 && p > w[pos - 1])
            pos--;
        if (pos >= k)
            continue;
        for (int j = (filled < k ? filled : k - 1); j > pos; j--) {
            idx[j] = idx[j - 1];
            w[j] = w[j - 1];
        }
        idx[pos] = e;
        w[pos] = p;
        filled += filled < k;
    }
    if (norm) {
        /* ggml_sum_rows (a double sum), clamped like llama.cpp's build_moe_ffn, then ggml_div */
        double sum = 0.0;
        for (int j = 0; j < k; j++)
            sum += (double)w[j];
        float s = (float)sum;
        s = s < 6.103515625e-5f ? 6.103515625e-5f : s;
        for (int j = 0; j < k; j++)
            w[j] /= s;
    }
}

/* xb[t] ← the dense feed-forward of xb[t]. */
static void ffn_dense(eng_ctx *c, const eng_layer *L, int n)
{
    const ffn_weights f = {L->w[GA_T_FFN_GATE], L->w[GA_T_FFN_UP], L->w[GA_T_FFN_DOWN],
                           L->v[GA_T_FFN_GATE_B], L->v[GA_T_FFN_UP_B], L->v[GA_T_FFN_DOWN_B], -1};
    swiglu(c, &f, c->xb, n, c->xb);
}

/* Expert e on the slots routed to it: their tokens' rows of xb gathered into one batch (scaled
 * by the weight when it applies to the input), the SwiGLU of slice e of the expert tensors, and
 * each output, weighted, into its (token, slot) row of moe_out. Clobbers xg, hb, hb2. */
static void expert_forward(eng_ctx *c, const eng_layer *L, int e)
{
    const eng_model *m = c->m;
    const int d = m->n_embd, k = m->n_expert_used, w_in = m->moe_weight_input;
    const int *slots = c->exp_slots + c->exp_start[e];
    const int cnt = c->exp_start[e + 1] - c->exp_start[e];
    if (!cnt)
        return;
    for (int i = 0; i < cnt; i++) {
        const float *src = c->xb + (size_t)(slots[i] / k) * d, wt = c->sel_w[slots[i]];
        float *dst = c->xg + (size_t)i * d;
        for (int j = 0; j < d; j++)
            dst[j] = w_in ? src[j] * wt : src[j];
    }
    const ffn_weights f = {expert_slice(&L->w[GA_T_FFN_GATE_EXPS], e),
                           expert_slice(&L->w[GA_T_FFN_UP_EXPS], e),
                           expert_slice(&L->w[GA_T_FFN_DOWN_EXPS], e), NULL, NULL, NULL, e};
    swiglu(c, &f, c->xg, cnt, c->xg);
    for (int i = 0; i < cnt; i++) {
        const float *src = c->xg + (size_t)i * d, wt = c->sel_w[slots[i]];
        float *dst = c->moe_out + (size_t)slots[i] * d;
        for (int j = 0; j < d; j++)
            dst[j] = w_in ? src[j] : src[j] * wt;
    }
}

/* xb[t] ← Σ_j w[t][j] · expert_{sel[t][j]}(xb[t]) (+ the shared expert), as llama.cpp's
 * build_moe_ffn. Experts run one at a time on the tokens routed to them, their outputs land in
 * per-(token, slot) rows, and the slots are summed in top-k order: no value depends on the order
 * of the experts or on the thread count. */
static void ffn_moe(eng_ctx *c, const eng_layer *L, int n)
{
    const eng_model *m = c->m;
    const int d = m->n_embd, ne = m->n_expert, k = m->n_expert_used;
    matmul(c, &L->w[GA_T_FFN_GATE_INP], -1, c->xb, n, c->router);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < n; t++)
        eng_moe_route(c->router + (size_t)t * ne, ne, k, m->expert_weights_norm, m->gating,
                      c->sel + (size_t)t * k, c->sel_w + (size_t)t * k);
    group_by_expert(c, n);
    for (int e = 0; e < ne; e++)
        expert_forward(c, L, e);
    const int shared = L->w[GA_T_FFN_GATE_SHEXP].data != NULL;
    if (shared) {
        const ffn_weights f = {L->w[GA_T_FFN_GATE_SHEXP], L->w[GA_T_FFN_UP_SHEXP],
                               L->w[GA_T_FFN_DOWN_SHEXP], NULL, NULL, NULL, -1};
        swiglu(c, &f, c->xb, n, c->xg);
    }
#pragma omp parallel for schedule(static)
    for (int t = 0; t < n; t++) {
        const float *o = c->moe_out + (size_t)t * k * d;
        float *y = c->xb + (size_t)t * d;
        for (int j = 0; j < d; j++) {
            float acc = o[j];
            for (int s = 1; s < k; s++)
                acc += o[(size_t)s * d + j];
            y[j] = shared ? acc + c->xg[(size_t)t * d + j] : acc;
        }
    }
}

static void layer_forward(eng_ctx *c, const eng_layer *L, int n)
{
    const eng_model *m = c->m;
    const int d = m->n_embd, qd = m->n_head * m->head_dim, kvd = m->n_head_kv * m->head_dim;
    rmsnorm_rows(c->xb, c->x, L->v[GA_T_ATTN_NORM], n, d, m->rms_eps);
    matmul(c, &L->w[GA_T_ATTN_Q], -1, c->xb, n, c->q);
    matmul(c, &L->w[GA_T_ATTN_K], -1, c->xb, n, c->k);
    matmul(c, &L->w[GA_T_ATTN_V], -1, c->xb, n, c->v);
    add_bias(c->q, L->v[GA_T_ATTN_Q_B], n, qd);
    add_bias(c->k, L->v[GA_T_ATTN_K_B], n, kvd);
    add_bias(c->v, L->v[GA_T_ATTN_V_B], n, kvd);
    qk_prepare(c, L, n);
    attention(c, n, L->nope ? 0 : m->attn_chunk); /* Llama 4: NoPE blocks attend to everything */
    matmul(c, &L->w[GA_T_ATTN_OUT], -1, c->att_out, n, c->xb);
    add_bias(c->xb, L->v[GA_T_ATTN_OUT_B], n, d);
    add_rows(c->x, c->xb, (size_t)n * d);

    rmsnorm_rows(c->xb, c->x, L->v[GA_T_FFN_NORM], n, d, m->rms_eps);
    if (L->moe)
        ffn_moe(c, L, n);
    else
        ffn_dense(c, L, n);
    add_rows(c->x, c->xb, (size_t)n * d);
}

int eng_embed(eng_ctx *c, const int32_t *tokens, int n, float *x, qk_err *err)
{
    const eng_model *m = c->m;
    if (n <= 0 || n > c->n_ctx)
        return qk_err_set(err, QK_ERANGE, "sequence of %d tokens for a context of %d", n, c->n_ctx);
    const q_kernels *ke = q_kernels_get(m->tok_embd.type);
    const size_t erow = q_row_size(m->tok_embd.type, m->n_embd);
    for (int t = 0; t < n; t++) {
        if (tokens[t] < 0 || tokens[t] >= m->n_vocab)
            return qk_err_set(err, QK_ERANGE, "token id %d at position %d is outside the vocabulary of %d",
                              tokens[t], t, m->n_vocab);
        ke->dequantize((const char *)m->tok_embd.data + (size_t)tokens[t] * erow,
                       x + (size_t)t * m->n_embd, m->n_embd);
    }
    return QK_OK;
}

int eng_blocks(eng_ctx *c, float *x, int n, int l0, int l1, qk_err *err)
{
    const eng_model *m = c->m;
    if (n <= 0 || n > c->n_ctx)
        return qk_err_set(err, QK_ERANGE, "sequence of %d tokens for a context of %d", n, c->n_ctx);
    if (l0 < 0 || l1 > m->n_layer || l0 > l1)
        return qk_err_set(err, QK_ERANGE, "blocks [%d, %d) of a model of %d", l0, l1, m->n_layer);
    memcpy(c->x, x, (size_t)n * m->n_embd * sizeof *x);
    rope_cache(c, n);
    for (int l = l0; l < l1; l++)
        layer_forward(c, &m->layers[l], n);
    memcpy(x, c->x, (size_t)n * m->n_embd * sizeof *x);
    return QK_OK;
}

int eng_head(eng_ctx *c, const float *x, int n, float *logits, qk_err *err)
{
    const eng_model *m = c->m;
    if (n <= 0 || n > c->n_ctx)
        return qk_err_set(err, QK_ERANGE, "sequence of %d tokens for a context of %d", n, c->n_ctx);
    rmsnorm_rows(c->xb, x, m->output_norm, n, m->n_embd, m->rms_eps);
    matmul(c, &m->output, -1, c->xb, n, logits);
    return QK_OK;
}

int eng_forward(eng_ctx *c, const int32_t *tokens, int n, float *logits, qk_err *err)
{
    const eng_model *m = c->m;
    int rc = eng_embed(c, tokens, n, c->x, err);
    if (rc)
        return rc;
    rope_cache(c, n);
    for (int l = 0; l < m->n_layer; l++)
        layer_forward(c, &m->layers[l], n);
    return eng_head(c, c->x, n, logits, err);
}
