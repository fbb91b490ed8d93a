/* model.c — an eng_model from the architecture description and a tensor source. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/mapping.h"
#include "../quant/quant.h"

int eng_model_own(eng_model *m, void *p, qk_err *err)
{
    void **grown = realloc(m->owned, (m->n_owned + 1) * sizeof *grown);
    if (!grown) {
        free(p);
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    }
    m->owned = grown;
    m->owned[m->n_owned++] = p;
    return QK_OK;
}

typedef struct {
    eng_model *m;
    const eng_source *src;
    qk_err *err;
} loader;

/* GGUF_MISSING, QK_OK, or an error; *t filled when found. */
static int find(const loader *ld, ga_kind k, int layer, eng_tensor *t, char *name, size_t size)
{
    if (!ga_tensor_name(k, layer, name, size))
        return qk_err_set(ld->err, QK_EINTERNAL, "tensor name too long");
    memset(t, 0, sizeof *t);
    return ld->src->find(ld->src->user, name, t, ld->err);
}

/* 1-D tensors become owned F32 copies (they are tiny and read on every token). */
static int load_vec(const loader *ld, ga_kind k, int layer, float **dst)
{
    char name[GGUF_MAX_NAME];
    eng_tensor t;
    int rc = find(ld, k, layer, &t, name, sizeof name);
    if (rc == GGUF_MISSING)
        return !ga_arch_requires(ld->m->arch, k) ? QK_OK : qk_err_set(ld->err, QK_EFORMAT, "tensor '%s' is missing", name);
    if (rc)
        return rc;
    uint32_t nd;
    int64_t ne[GGUF_MAX_DIMS];
    ga_shape(k, &ld->m->hp, &nd, ne);
    if (t.ne0 != ne[0] || t.ne1 * t.ne2 != 1)
        return qk_err_set(ld->err, QK_EFORMAT, "tensor '%s': %lld values, expected %lld", name,
                          (long long)(t.ne0 * t.ne1 * t.ne2), (long long)ne[0]);
    if (!(*dst = malloc((size_t)ne[0] * sizeof(float))))
        return qk_err_set(ld->err, QK_ENOMEM, "out of memory for tensor '%s'", name);
    rc = q_dequantize_rows(t.type, t.data, *dst, 1, ne[0], ld->err);
    if (rc)
        qk_err_prefix(ld->err, name);
    return rc;
}

static int load_mat(const loader *ld, ga_kind k, int layer, eng_tensor *dst)
{
    char name[GGUF_MAX_NAME];
    int rc = find(ld, k, layer, dst, name, sizeof name);
    if (rc == GGUF_MISSING)
        return !ga_arch_requires(ld->m->arch, k) ? QK_OK : qk_err_set(ld->err, QK_EFORMAT, "tensor '%s' is missing", name);
    return rc;
}

static int load_layer(const loader *ld, int l)
{
    eng_model *m = ld->m;
    eng_layer *L = &m->layers[l];
    int rc;
    /* a block with a router is a mixture of experts */
    if (m->n_expert > 0 && ga_arch_has_kind(m->arch, GA_T_FFN_GATE_INP)) {
        char name[GGUF_MAX_NAME];
        eng_tensor t;
        rc = find(ld, GA_T_FFN_GATE_INP, l, &t, name, sizeof name);
        if (rc < 0)
            return rc;
        L->moe = rc == QK_OK;
    }
    m->hp.layer_moe[l] = (uint8_t)L->moe;
    L->nope = m->hp.layer_nope[l];
    for (const ga_kind *k = m->arch->kinds; *k != GA_T_COUNT; k++) {
        if (ga_kind_get(*k)->where == GA_IN_MODEL || !ga_block_has(m->arch, &m->hp, *k, l))
            continue;
        rc = ga_kind_get(*k)->vector ? load_vec(ld, *k, l, &L->v[*k]) : load_mat(ld, *k, l, &L->w[*k]);
        if (rc)
            return rc;
    }
    return QK_OK;
}

static void set_sizes(eng_model *m, const ga_hparams *hp)
{
    m->hp = *hp;
    m->n_embd = (int)hp->n_embd, m->n_layer = (int)hp->n_layer, m->n_head = (int)hp->n_head;
    m->n_head_kv = (int)hp->n_head_kv, m->n_ff = (int)hp->n_ff, m->head_dim = (int)hp->head_dim;
    m->n_rot = (int)hp->n_rot, m->n_ctx_train = (int)hp->n_ctx, m->n_vocab = (int)hp->n_vocab;
    m->n_expert = (int)hp->n_expert, m->n_expert_used = (int)hp->n_expert_used;
    m->n_ff_exp = (int)hp->n_ff_exp;
    m->expert_weights_norm = hp->expert_weights_norm;
    m->gating = m->arch->gating;
    m->moe_weight_input = m->arch->moe_weight_input;
    if (m->arch->chunked_nope) {
        m->attn_chunk = (int)hp->attn_chunk;
        m->qk_rms_norm = hp->qk_rms_norm;
        m->attn_temp_scale = (float)hp->attn_temp_scale;
        m->attn_temp_floor = (int)hp->attn_temp_floor;
    }
    m->rms_eps = (float)hp->rms_eps;
    m->rope_base = (float)(hp->has_rope_theta ? hp->rope_theta : 10000.0);
}

int eng_model_build(eng_model *m, const ga_arch *a, const ga_hparams *hp, int rope_neox,
                    const eng_source *src, qk_err *err)
{
    memset(m, 0, sizeof *m);
    m->arch = a;
    set_sizes(m, hp);
    m->rope_neox = rope_neox;
    loader ld = {m, src, err};
    int rc;
    if (hp->rope_scaling == GA_ROPE_LINEAR || hp->rope_scaling == GA_ROPE_YARN)
        return qk_err_set(err, QK_EUNSUPPORTED, "RoPE scaling of the %s kind is not supported by the engine",
                          hp->rope_scaling == GA_ROPE_LINEAR ? "linear" : "yarn");
    if ((rc = load_mat(&ld, GA_T_TOKEN_EMBD, -1, &m->tok_embd)))
        goto fail;
    m->n_vocab = (int)m->tok_embd.ne1;
    m->hp.n_vocab = m->n_vocab;
    if ((rc = load_mat(&ld, GA_T_OUTPUT, -1, &m->output)))
        goto fail;
    if (!m->output.data)
        m->output = m->tok_embd; /* tied embeddings */
    if ((rc = load_vec(&ld, GA_T_OUTPUT_NORM, -1, &m->output_norm)) ||
        (ga_arch_has_kind(a, GA_T_ROPE_FREQS) && (rc = load_vec(&ld, GA_T_ROPE_FREQS, -1, &m->rope_freqs))))
        goto fail;
    if (!(m->layers = calloc((size_t)m->n_layer, sizeof *m->layers))) {
        rc = qk_err_set(err, QK_ENOMEM, "out of memory for %d layers", m->n_layer);
        goto fail;
    }
    for (int l = 0; l < m->n_layer; l++)
        if ((rc = load_layer(&ld, l)))
            goto fail;
    if (!(rc = eng_model_validate(m, err)))
        return QK_OK;
fail:
    eng_model_free_owned(m);
    return rc;
}

/* ---- GGUF files --------------------------------------------------------------------------- */

static int gguf_find(void *user, const char *name, eng_tensor *out, qk_err *err)
{
    const gguf_tensor_info *t = gguf_find_tensor(user, name);
    if (!t)
        return GGUF_MISSING;
    if (t->n_dims > 3)
        return qk_err_set(err, QK_EFORMAT, "tensor '%s' has %u dimensions, expected at most 3", name, t->n_dims);
    *out = (eng_tensor){t->name, t->type, t->ne[0], t->ne[1], t->ne[2], t->data};
    return QK_OK;
}

int eng_model_load_gguf(eng_model *m, const gguf_ctx *g, qk_err *err)
{
    memset(m, 0, sizeof *m);
    const char *name = NULL;
    int rc = gguf_get_str(g, "general.architecture", &name);
    if (rc)
        return qk_err_set(err, QK_EFORMAT, "metadata key 'general.architecture' is %s",
                          rc == GGUF_MISSING ? "missing" : "not a string");
    const ga_arch *a = ga_arch_find(name);
    if (!a)
        return qk_err_set(err, QK_EUNSUPPORTED, "architecture '%s' is not supported (supported: %s)", name,
                          ga_arch_names());
    ga_hparams hp;
    if ((rc = ga_hparams_read(g, a, &hp, err)))
        return rc;
    uint32_t bos = 1;
    if (gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &bos) == QK_EFORMAT)
        return qk_err_set(err, QK_EFORMAT, "metadata key 'tokenizer.ggml.bos_token_id' is not a u32");
    eng_source src = {gguf_find, (void *)g};
    rc = eng_model_build(m, a, &hp, a->rope == GA_ROPE_HALVES, &src, err);
    if (rc)
        return rc;
    m->bos_id = (int)bos;
    /* Every pass reads every weight: map them in one call per tensor rather than a page fault per
     * 4 KB (~9 % of a perplexity run on a 1.1B model otherwise) */
    if (mapping_prefault_fits(gguf_data_bytes(g)))
        for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
            const gguf_tensor_info *t = gguf_tensor(g, i);
            mapping_prefault(t->data, (size_t)t->nbytes);
        }
    return QK_OK;
}
