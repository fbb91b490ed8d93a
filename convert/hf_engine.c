#include "hf_engine.h"

#include <stdlib.h>
#include <string.h>

#include "../quant/quant.h"
#include "arch.h"

static int qtype_of(const st_tensor *t, qk_err *err)
{
    switch (t->dtype) {
    case ST_F32: return Q_TYPE_F32;
    case ST_F16: return Q_TYPE_F16;
    case ST_BF16: return Q_TYPE_BF16;
    default:
        return qk_err_set(err, QK_EUNSUPPORTED, "%s: tensor '%s': dtype %s is not supported (F32, F16, BF16)",
                          t->path, t->name, st_dtype_name(t->dtype));
    }
}

static eng_tensor *matrix_slot(eng_model *m, const ca_tensor *ct)
{
    eng_layer *L = ct->layer >= 0 ? &m->layers[ct->layer] : NULL;
    switch (ct->kind) {
    case CA_T_TOKEN_EMBD: return &m->tok_embd;
    case CA_T_OUTPUT: return &m->output;
    case CA_T_ATTN_Q: return &L->wq;
    case CA_T_ATTN_K: return &L->wk;
    case CA_T_ATTN_V: return &L->wv;
    case CA_T_ATTN_OUT: return &L->wo;
    case CA_T_FFN_GATE: return &L->ffn_gate;
    case CA_T_FFN_UP: return &L->ffn_up;
    case CA_T_FFN_DOWN: return &L->ffn_down;
    default: return NULL;
    }
}

static float **vector_slot(eng_model *m, const ca_tensor *ct)
{
    eng_layer *L = ct->layer >= 0 ? &m->layers[ct->layer] : NULL;
    switch (ct->kind) {
    case CA_T_OUTPUT_NORM: return &m->output_norm;
    case CA_T_ATTN_NORM: return &L->attn_norm;
    case CA_T_FFN_NORM: return &L->ffn_norm;
    case CA_T_ATTN_Q_NORM: return &L->q_norm;
    case CA_T_ATTN_K_NORM: return &L->k_norm;
    case CA_T_ATTN_Q: return ct->bias ? &L->bq : NULL;
    case CA_T_ATTN_K: return ct->bias ? &L->bk : NULL;
    case CA_T_ATTN_V: return ct->bias ? &L->bv : NULL;
    default: return NULL;
    }
}

static int place(eng_model *m, const st_tensor *t, const ca_tensor *ct, qk_err *err)
{
    int type = qtype_of(t, err);
    if (type < 0)
        return type;
    const int64_t ne0 = t->n_dims ? t->shape[t->n_dims - 1] : 1, ne1 = t->n_dims == 2 ? t->shape[0] : 1;
    if (t->n_dims > 2 || ne0 != ct->ne[0] || ne1 != ct->ne[1])
        return qk_err_set(err, QK_EFORMAT, "%s: tensor '%s': shape does not match config.json (expected [%lld, %lld])",
                          t->path, t->name, (long long)ct->ne[1], (long long)ct->ne[0]);
    float **vec = vector_slot(m, ct);
    if (vec) {
        if (!(*vec = malloc((size_t)ne0 * sizeof(float))))
            return qk_err_set(err, QK_ENOMEM, "out of memory for tensor '%s'", t->name);
        return q_dequantize_rows(type, t->data, *vec, 1, ne0, err);
    }
    eng_tensor *mat = matrix_slot(m, ct);
    if (!mat)
        return qk_err_set(err, QK_EUNSUPPORTED, "%s: tensor '%s' has no place in the engine", t->path, t->name);
    *mat = (eng_tensor){t->name, type, ne0, ne1, t->data};
    return QK_OK;
}

static int build(const char *dir, const ca_config *c, eng_model *m, const st_model *st, qk_err *err)
{
    if (c->rope_kind == CA_ROPE_LINEAR || c->rope_kind == CA_ROPE_YARN)
        return qk_err_set(err, QK_EUNSUPPORTED, "%s: RoPE scaling of this kind is not supported by the engine", dir);
    m->arch = c->arch == CA_ARCH_QWEN2 ? ENG_ARCH_QWEN2 : c->arch == CA_ARCH_QWEN3 ? ENG_ARCH_QWEN3 : ENG_ARCH_LLAMA;
    m->n_vocab = (int)c->n_vocab, m->n_embd = (int)c->n_embd, m->n_layer = (int)c->n_layer;
    m->n_head = (int)c->n_head, m->n_head_kv = (int)c->n_head_kv, m->head_dim = (int)c->head_dim;
    m->n_ff = (int)c->n_ff, m->n_ctx_train = (int)c->n_ctx, m->n_rot = (int)c->head_dim;
    m->rms_eps = (float)c->rms_eps, m->rope_base = (float)c->rope_theta;
    m->rope_neox = 1;
    if (!(m->layers = calloc((size_t)m->n_layer, sizeof *m->layers)))
        return qk_err_set(err, QK_ENOMEM, "out of memory for %d layers", m->n_layer);
    if (c->rope_kind == CA_ROPE_LLAMA3) {
        if (!(m->rope_freqs = malloc((size_t)c->head_dim / 2 * sizeof(float))))
            return qk_err_set(err, QK_ENOMEM, "out of memory");
        ca_rope_freqs(c, m->rope_freqs);
    }
    for (size_t i = 0; i < st_model_n_tensors(st); i++) {
        const st_tensor *t = st_model_tensor(st, i);
        ca_tensor ct;
        int rc = ca_map_tensor(c, t->name, &ct, err);
        if (rc == CA_SKIP)
            continue;
        if (rc || (rc = place(m, t, &ct, err)))
            return rc;
    }
    if (!m->output.data)
        m->output = m->tok_embd;
    int rc = eng_model_validate(m, err);
    if (rc)
        qk_err_prefix(err, dir);
    return rc;
}

int cv_engine_open_hf(const char *dir, eng_model *m, st_model **st, tok_vocab **vocab, qk_err *err)
{
    memset(m, 0, sizeof *m);
    *st = NULL;
    *vocab = NULL;
    ca_config c;
    int rc = ca_config_load(dir, &c, err);
    if (!rc)
        rc = st_model_open(st, dir, err);
    if (!rc)
        rc = build(dir, &c, m, *st, err);
    if (!rc && !(rc = tok_vocab_load_hf(dir, NULL, vocab, err)))
        m->bos_id = (*vocab)->special[TOK_BOS];
    if (rc) {
        eng_model_free_owned(m);
        st_model_close(*st);
        tok_vocab_free(*vocab);
        *st = NULL;
        *vocab = NULL;
    }
    return rc;
}
