/* engine.c — the forward pass. Follows llama.cpp's graph for the llama/qwen2/qwen3 architectures
 * operation by operation (RMSNorm with a double sum, RoPE cache with float theta accumulation,
 * softmax with a double sum) so perplexities agree to the fourth digit. */
#include "engine.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/quant.h"

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
};

static const eng_tensor *layer_mats(const eng_layer *l, int i)
{
    const eng_tensor *t[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->ffn_gate, &l->ffn_up, &l->ffn_down};
    return t[i];
}

static int check_mat(const eng_tensor *t, int64_t ne0, int64_t ne1, qk_err *err)
{
    if (!t->data)
        return qk_err_set(err, QK_EFORMAT, "tensor '%s' is missing", t->name ? t->name : "?");
    if (t->ne0 != ne0 || t->ne1 != ne1)
        return qk_err_set(err, QK_EFORMAT,
                          "tensor '%s': shape [%lld, %lld], expected [%lld, %lld]", t->name,
                          (long long)t->ne0, (long long)t->ne1, (long long)ne0, (long long)ne1);
    const q_kernels *k = q_kernels_get(t->type);
    const q_type_info_t *ti = q_type_info(t->type);
    if (!k || !k->vec_dot || !k->dequantize || !q_kernels_get(k->vec_dot_type) ||
        !q_kernels_get(k->vec_dot_type)->from_float)
        return qk_err_set(err, QK_EUNSUPPORTED, "tensor '%s': type %s is not supported by the engine",
                          t->name, ti ? ti->name : "unknown");
    if (ne0 % ti->blck_size)
        return qk_err_set(err, QK_EFORMAT, "tensor '%s': row of %lld is not a multiple of %s blocks",
                          t->name, (long long)ne0, ti->name);
    return QK_OK;
}

int eng_model_validate(const eng_model *m, qk_err *err)
{
    if (m->n_embd <= 0 || m->n_head <= 0 || m->n_head_kv <= 0 || m->n_head % m->n_head_kv ||
        m->head_dim <= 0 || m->n_layer <= 0 || m->n_ff <= 0 || m->n_vocab <= 0 ||
        m->n_rot <= 0 || m->n_rot > m->head_dim || m->n_rot % 2)
        return qk_err_set(err, QK_EFORMAT,
                          "inconsistent hyper-parameters (embd %d, heads %d/%d, head_dim %d, rot %d)",
                          m->n_embd, m->n_head, m->n_head_kv, m->head_dim, m->n_rot);
    int rc;
    if ((rc = check_mat(&m->tok_embd, m->n_embd, m->n_vocab, err)) ||
        (rc = check_mat(&m->output, m->n_embd, m->n_vocab, err)))
        return rc;
    const int64_t qd = (int64_t)m->n_head * m->head_dim, kvd = (int64_t)m->n_head_kv * m->head_dim;
    const int64_t shapes[7][2] = {{m->n_embd, qd},   {m->n_embd, kvd}, {m->n_embd, kvd},
                                  {qd, m->n_embd},   {m->n_embd, m->n_ff}, {m->n_embd, m->n_ff},
                                  {m->n_ff, m->n_embd}};
    for (int l = 0; l < m->n_layer; l++)
        for (int i = 0; i < 7; i++)
            if ((rc = check_mat(layer_mats(&m->layers[l], i), shapes[i][0], shapes[i][1], err)))
                return rc;
    return QK_OK;
}

void eng_model_free_owned(eng_model *m)
{
    if (!m)
        return;
    for (int l = 0; m->layers && l < m->n_layer; l++) {
        eng_layer *L = &m->layers[l];
        float *owned[] = {L->attn_norm, L->ffn_norm, L->bq, L->bk, L->bv, L->q_norm, L->k_norm};
        for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
            free(owned[i]);
    }
    free(m->layers);
    free(m->output_norm);
    free(m->rope_freqs);
    m->layers = NULL;
    m->output_norm = m->rope_freqs = NULL;
}

void eng_ctx_free(eng_ctx *c)
{
    if (!c)
        return;
    float *bufs[] = {c->x, c->xb, c->q, c->k, c->v, c->att_out, c->hb, c->hb2, c->rope, c->scores, c->vt};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(c->xq);
    free(c);
}

static size_t max_dot_row_bytes(const eng_model *m)
{
    size_t best = 0;
    const int64_t widths[] = {m->n_embd, (int64_t)m->n_head * m->head_dim, m->n_ff};
    for (size_t w = 0; w < 3; w++)
        for (int t = 0; t < Q_TYPE_COUNT; t++) {
            size_t b = q_row_size(t, widths[w]);
            if (b > best && q_kernels_get(t))
                best = b;
        }
    return best;
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
                 kvd = (size_t)m->n_head_kv * m->head_dim;
    const size_t wide = qd > (size_t)m->n_embd ? qd : (size_t)m->n_embd;
    c->x = malloc(n * m->n_embd * sizeof(float));
    c->xb = malloc(n * wide * sizeof(float));
    c->q = malloc(n * qd * sizeof(float));
    c->k = malloc(n * kvd * sizeof(float));
    c->v = malloc(n * kvd * sizeof(float));
    c->att_out = malloc(n * qd * sizeof(float));
    c->hb = malloc(n * m->n_ff * sizeof(float));
    c->hb2 = malloc(n * m->n_ff * sizeof(float));
    c->rope = malloc(n * m->n_rot * sizeof(float));
    c->scores = malloc((size_t)c->n_threads * ENG_ATT_BLOCK * n * sizeof(float));
    c->vt = malloc(n * kvd * sizeof(float));
    c->xq_bytes = max_dot_row_bytes(m);
    c->xq = malloc(n * (c->xq_bytes ? c->xq_bytes : 1));
    if (!c->x || !c->xb || !c->q || !c->k || !c->v || !c->att_out || !c->hb || !c->hb2 ||
        !c->rope || !c->scores || !c->vt || !c->xq) {
        eng_ctx_free(c);
        return qk_err_set(err, QK_ENOMEM, "out of memory for a %d-token context", n_ctx);
    }
    *out = c;
    return QK_OK;
}

/* Y[t][r] = W[r] · X[t] for t < n. Activations are quantized once to the dot partner type. */
static void matmul(eng_ctx *c, const eng_tensor *W, const float *X, int n, float *Y)
{
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
    const int64_t rb = 32;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t r0 = 0; r0 < ne1; r0 += rb) {
        const int64_t nr = ne1 - r0 < rb ? ne1 - r0 : rb;
        k->gemm((int)ne0, nr, n, w + r0 * wrow, wrow, xq, xrow, Y + r0, (size_t)ne1);
    }
}

static void rmsnorm(float *y, const float *x, const float *weight, int d, float eps)
{
    double sum = 0.0;
    for (int i = 0; i < d; i++)
        sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / d);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < d; i++)
        y[i] = x[i] * scale * weight[i];
}

/* cos/sin per position and pair, as ggml_rope_cache_init builds them. */
static void rope_cache(eng_ctx *c, int n)
{
    const eng_model *m = c->m;
    const float theta_scale = powf(m->rope_base, -2.0f / (float)m->n_rot);
    for (int p = 0; p < n; p++) {
        float theta = (float)p, *cache = c->rope + (size_t)p * m->n_rot;
        for (int i0 = 0; i0 < m->n_rot; i0 += 2) {
            const float ff = m->rope_freqs ? m->rope_freqs[i0 / 2] : 1.0f;
            cache[i0] = cosf(theta / ff);
            cache[i0 + 1] = sinf(theta / ff);
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

/* Per-head RMSNorm (Qwen3) and RoPE on q and k, in place. */
static void qk_prepare(eng_ctx *c, const eng_layer *L, int n)
{
    const eng_model *m = c->m;
    const int hd = m->head_dim, nh = m->n_head, nkv = m->n_head_kv;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < n; t++) {
        for (int h = 0; h < nh + nkv; h++) {
            float *vec = h < nh ? c->q + ((size_t)t * nh + h) * hd
                                : c->k + ((size_t)t * nkv + (h - nh)) * hd;
            const float *w = h < nh ? L->q_norm : L->k_norm;
            if (w)
                rmsnorm(vec, vec, w, hd, m->rms_eps);
            rope_apply(c, vec, t);
        }
    }
}

/* V per kv head transposed, [n_head_kv][head_dim][n_ctx], so that p·v is a product of rows. */
static void transpose_v(eng_ctx *c, int n)
{
    const eng_model *m = c->m;
    const int hd = m->head_dim, nkv = m->n_head_kv;
    for (int kh = 0; kh < nkv; kh++)
        for (int i = 0; i < hd; i++) {
            float *row = c->vt + ((size_t)kh * hd + i) * c->n_ctx;
            for (int j = 0; j < n; j++)
                row[j] = c->v[((size_t)j * nkv + kh) * hd + i];
        }
}

/* Softmax of row t's causal scores s[0..t] in place; s[t+1..nk) become 0 so that the p·v product
 * over nk keys adds nothing for them. */
static void softmax_causal(float *s, int t, int nk, float scale)
{
    float mx = -INFINITY;
    for (int j = 0; j <= t; j++) {
        s[j] *= scale;
        mx = s[j] > mx ? s[j] : mx;
    }
    double sum = 0.0;
    for (int j = 0; j <= t; j++)
        sum += (double)(s[j] = expf(s[j] - mx));
    const float inv = (float)(1.0 / sum);
    for (int j = 0; j <= t; j++)
        s[j] *= inv;
    for (int j = t + 1; j < nk; j++)
        s[j] = 0.0f;
}

/* Per head and block of ENG_ATT_BLOCK queries: scores = K·q over the keys the block sees, then
 * out = Vᵀ·p, both as f32 matrix products. The blocks are fixed, so each value depends only on
 * its query's position, not on the thread count. */
static void attention(eng_ctx *c, int n)
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
            const int nk = n - t0 < ENG_ATT_BLOCK ? n : t0 + ENG_ATT_BLOCK, nq = nk - t0;
            gemm(hd, nk, nq, c->k + (size_t)kh * hd, (size_t)nkv * hd * fs,
                 c->q + ((size_t)t0 * nh + h) * hd, (size_t)nh * hd * fs, s, (size_t)c->n_ctx);
            for (int i = 0; i < nq; i++)
                softmax_causal(s + (size_t)i * c->n_ctx, t0 + i, nk, scale);
            gemm(nk, hd, nq, c->vt + (size_t)kh * hd * c->n_ctx, (size_t)c->n_ctx * fs, s,
                 (size_t)c->n_ctx * fs, c->att_out + ((size_t)t0 * nh + h) * hd, (size_t)nh * hd);
        }
    }
}

static void layer_forward(eng_ctx *c, const eng_layer *L, int n)
{
    const eng_model *m = c->m;
    const int d = m->n_embd, qd = m->n_head * m->head_dim, kvd = m->n_head_kv * m->head_dim;
    for (int t = 0; t < n; t++)
        rmsnorm(c->xb + (size_t)t * d, c->x + (size_t)t * d, L->attn_norm, d, m->rms_eps);
    matmul(c, &L->wq, c->xb, n, c->q);
    matmul(c, &L->wk, c->xb, n, c->k);
    matmul(c, &L->wv, c->xb, n, c->v);
    add_bias(c->q, L->bq, n, qd);
    add_bias(c->k, L->bk, n, kvd);
    add_bias(c->v, L->bv, n, kvd);
    qk_prepare(c, L, n);
    attention(c, n);
    matmul(c, &L->wo, c->att_out, n, c->xb);
    for (size_t i = 0; i < (size_t)n * d; i++)
        c->x[i] += c->xb[i];

    for (int t = 0; t < n; t++)
        rmsnorm(c->xb + (size_t)t * d, c->x + (size_t)t * d, L->ffn_norm, d, m->rms_eps);
    matmul(c, &L->ffn_gate, c->xb, n, c->hb);
    matmul(c, &L->ffn_up, c->xb, n, c->hb2);
    for (size_t i = 0; i < (size_t)n * m->n_ff; i++) {
        const float g = c->hb[i];
        c->hb[i] = g / (1.0f + expf(-g)) * c->hb2[i];
    }
    matmul(c, &L->ffn_down, c->hb, n, c->xb);
    for (size_t i = 0; i < (size_t)n * d; i++)
        c->x[i] += c->xb[i];
}

int eng_forward(eng_ctx *c, const int32_t *tokens, int n, float *logits, qk_err *err)
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
                       c->x + (size_t)t * m->n_embd, m->n_embd);
    }
    rope_cache(c, n);
    for (int l = 0; l < m->n_layer; l++)
        layer_forward(c, &m->layers[l], n);
    for (int t = 0; t < n; t++)
        rmsnorm(c->xb + (size_t)t * m->n_embd, c->x + (size_t)t * m->n_embd, m->output_norm,
                m->n_embd, m->rms_eps);
    matmul(c, &m->output, c->xb, n, logits);
    return QK_OK;
}
