#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/quant.h"

typedef struct {
    const gguf_ctx *g;
    const char *arch;
    qk_err *err;
} loader;

/* Integer hyper-parameters are u32 in llama.cpp's files, but any integer type is accepted. */
static int get_int(const loader *ld, const char *suffix, int64_t *out, int required)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", ld->arch, suffix);
    int64_t i = gguf_find_key(ld->g, key);
    if (i < 0)
        return required ? qk_err_set(ld->err, QK_EFORMAT, "metadata key '%s' is missing", key) : GGUF_MISSING;
    const gguf_value *v = gguf_kv_value(ld->g, (uint64_t)i);
    switch (v->type) {
    case GGUF_TYPE_U8: *out = v->u8; break;
    case GGUF_TYPE_I8: *out = v->i8; break;
    case GGUF_TYPE_U16: *out = v->u16; break;
    case GGUF_TYPE_I16: *out = v->i16; break;
    case GGUF_TYPE_U32: *out = v->u32; break;
    case GGUF_TYPE_I32: *out = v->i32; break;
    case GGUF_TYPE_U64: *out = (int64_t)(v->u64 > INT32_MAX ? INT32_MAX : v->u64); break;
    case GGUF_TYPE_I64: *out = v->i64; break;
    default:
        return qk_err_set(ld->err, QK_EFORMAT, "metadata key '%s' is a %s, expected an integer", key,
                          gguf_type_name(v->type));
    }
    if (*out <= 0 || *out > (1 << 24))
        return qk_err_set(ld->err, QK_EFORMAT, "metadata key '%s' = %lld is out of range", key, (long long)*out);
    return QK_OK;
}

static int get_float(const loader *ld, const char *suffix, float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", ld->arch, suffix);
    int rc = gguf_get_f32(ld->g, key, out);
    if (rc == QK_EFORMAT)
        return qk_err_set(ld->err, QK_EFORMAT, "metadata key '%s' is not an f32", key);
    return rc == GGUF_MISSING ? QK_OK : rc;
}

static const gguf_tensor_info *find(const loader *ld, const char *name, int required, int *rc)
{
    const gguf_tensor_info *t = gguf_find_tensor(ld->g, name);
    if (!t && required)
        *rc = qk_err_set(ld->err, QK_EFORMAT, "tensor '%s' is missing", name);
    return t;
}

static int load_mat(const loader *ld, eng_tensor *dst, const char *name, int required)
{
    int rc = QK_OK;
    const gguf_tensor_info *t = find(ld, name, required, &rc);
    if (!t)
        return rc;
    if (t->n_dims > 2)
        return qk_err_set(ld->err, QK_EFORMAT, "tensor '%s' has %u dimensions, expected 2", name, t->n_dims);
    *dst = (eng_tensor){t->name, t->type, t->ne[0], t->ne[1], t->data};
    return QK_OK;
}

/* 1-D vectors become owned F32 copies (they are tiny and read on every token). */
static int load_vec(const loader *ld, float **dst, const char *name, int64_t n, int required)
{
    int rc = QK_OK;
    const gguf_tensor_info *t = find(ld, name, required, &rc);
    if (!t)
        return rc;
    if (t->ne[0] != n || t->ne[1] * t->ne[2] * t->ne[3] != 1)
        return qk_err_set(ld->err, QK_EFORMAT, "tensor '%s': %lld values, expected %lld", name,
                          (long long)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]), (long long)n);
    if (!(*dst = malloc((size_t)n * sizeof(float))))
        return qk_err_set(ld->err, QK_ENOMEM, "out of memory for tensor '%s'", name);
    rc = q_dequantize_rows(t->type, t->data, *dst, 1, n, ld->err);
    if (rc)
        qk_err_prefix(ld->err, name);
    return rc;
}

static int load_layer(const loader *ld, eng_model *m, int l)
{
    eng_layer *L = &m->layers[l];
    char name[96];
    const int64_t qd = (int64_t)m->n_head * m->head_dim, kvd = (int64_t)m->n_head_kv * m->head_dim;
    const int qwen2 = m->arch == ENG_ARCH_QWEN2, qwen3 = m->arch == ENG_ARCH_QWEN3;
    struct { eng_tensor *t; const char *suffix; } mats[] = {
        {&L->wq, "attn_q"}, {&L->wk, "attn_k"}, {&L->wv, "attn_v"}, {&L->wo, "attn_output"},
        {&L->ffn_gate, "ffn_gate"}, {&L->ffn_up, "ffn_up"}, {&L->ffn_down, "ffn_down"},
    };
    struct { float **v; const char *suffix; int64_t n; int required; } vecs[] = {
        {&L->attn_norm, "attn_norm.weight", m->n_embd, 1}, {&L->ffn_norm, "ffn_norm.weight", m->n_embd, 1},
        {&L->bq, "attn_q.bias", qd, qwen2}, {&L->bk, "attn_k.bias", kvd, qwen2},
        {&L->bv, "attn_v.bias", kvd, qwen2}, {&L->q_norm, "attn_q_norm.weight", m->head_dim, qwen3},
        {&L->k_norm, "attn_k_norm.weight", m->head_dim, qwen3},
    };
    int rc;
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
        snprintf(name, sizeof name, "blk.%d.%s.weight", l, mats[i].suffix);
        if ((rc = load_mat(ld, mats[i].t, name, 1)))
            return rc;
    }
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
        snprintf(name, sizeof name, "blk.%d.%s", l, vecs[i].suffix);
        if ((rc = load_vec(ld, vecs[i].v, name, vecs[i].n, vecs[i].required)))
            return rc;
    }
    return QK_OK;
}

static int load_hparams(const loader *ld, eng_model *m)
{
    int64_t embd, layers, heads, heads_kv, ff, hd, rot, ctx = 4096;
    int rc;
    if ((rc = get_int(ld, "embedding_length", &embd, 1)) || (rc = get_int(ld, "block_count", &layers, 1)) ||
        (rc = get_int(ld, "attention.head_count", &heads, 1)) ||
        (rc = get_int(ld, "feed_forward_length", &ff, 1)))
        return rc;
    if ((rc = get_int(ld, "attention.head_count_kv", &heads_kv, 0)) < 0)
        return rc;
    if (rc == GGUF_MISSING)
        heads_kv = heads;
    if ((rc = get_int(ld, "attention.key_length", &hd, 0)) < 0)
        return rc;
    if (rc == GGUF_MISSING)
        hd = embd / heads;
    if ((rc = get_int(ld, "rope.dimension_count", &rot, 0)) < 0)
        return rc;
    if (rc == GGUF_MISSING)
        rot = hd;
    if ((rc = get_int(ld, "context_length", &ctx, 0)) < 0)
        return rc;
    m->n_embd = (int)embd, m->n_layer = (int)layers, m->n_head = (int)heads;
    m->n_head_kv = (int)heads_kv, m->n_ff = (int)ff, m->head_dim = (int)hd, m->n_rot = (int)rot;
    m->n_ctx_train = (int)ctx;
    m->rms_eps = 1e-5f;
    m->rope_base = 10000.0f;
    if ((rc = get_float(ld, "attention.layer_norm_rms_epsilon", &m->rms_eps)) ||
        (rc = get_float(ld, "rope.freq_base", &m->rope_base)))
        return rc;
    uint32_t bos = 1;
    if (gguf_get_u32(ld->g, "tokenizer.ggml.bos_token_id", &bos) == QK_EFORMAT)
        return qk_err_set(ld->err, QK_EFORMAT, "metadata key 'tokenizer.ggml.bos_token_id' is not a u32");
    m->bos_id = (int)bos;
    return QK_OK;
}

static int load(const loader *ld, eng_model *m)
{
    int rc;
    if ((rc = load_hparams(ld, m)))
        return rc;
    m->rope_neox = m->arch != ENG_ARCH_LLAMA;
    if ((rc = load_mat(ld, &m->tok_embd, "token_embd.weight", 1)))
        return rc;
    m->n_vocab = (int)m->tok_embd.ne1;
    if ((rc = load_mat(ld, &m->output, "output.weight", 0)))
        return rc;
    if (!m->output.data)
        m->output = m->tok_embd; /* tied embeddings */
    if ((rc = load_vec(ld, &m->output_norm, "output_norm.weight", m->n_embd, 1)) ||
        (rc = load_vec(ld, &m->rope_freqs, "rope_freqs.weight", m->n_rot / 2, 0)))
        return rc;
    if (!(m->layers = calloc((size_t)m->n_layer, sizeof *m->layers)))
        return qk_err_set(ld->err, QK_ENOMEM, "out of memory for %d layers", m->n_layer);
    for (int l = 0; l < m->n_layer; l++)
        if ((rc = load_layer(ld, m, l)))
            return rc;
    return eng_model_validate(m, ld->err);
}

int eng_model_load_gguf(eng_model *m, const gguf_ctx *g, qk_err *err)
{
    memset(m, 0, sizeof *m);
    loader ld = {g, NULL, err};
    int rc = gguf_get_str(g, "general.architecture", &ld.arch);
    if (rc)
        return qk_err_set(err, QK_EFORMAT, "metadata key 'general.architecture' is %s",
                          rc == GGUF_MISSING ? "missing" : "not a string");
    if (!strcmp(ld.arch, "llama"))
        m->arch = ENG_ARCH_LLAMA;
    else if (!strcmp(ld.arch, "qwen2"))
        m->arch = ENG_ARCH_QWEN2;
    else if (!strcmp(ld.arch, "qwen3"))
        m->arch = ENG_ARCH_QWEN3;
    else
        return qk_err_set(err, QK_EUNSUPPORTED,
                          "architecture '%s' is not supported (supported: llama, qwen2, qwen3)", ld.arch);
    rc = load(&ld, m);
    if (rc)
        eng_model_free_owned(m);
    return rc;
}
