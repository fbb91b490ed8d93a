/* hf_engine.c — a Hugging Face folder as an engine model. */
#include "hf_engine.h"

#include <stdlib.h>
#include <string.h>

#include "../calib/model.h"
#include "../quant/quant.h"

typedef struct {
    const cv_plan *plan;
    eng_model *m;
} hf_source;

static int hf_find(void *user, const char *name, eng_tensor *out, qk_err *err)
{
    hf_source *hs = user;
    long i = cv_plan_find(hs->plan, name);
    if (i < 0)
        return GGUF_MISSING;
    const cv_tensor *t = cv_plan_tensor(hs->plan, (size_t)i);
    *out = (eng_tensor){t->name, Q_TYPE_F32, t->ne[0], t->ne[1], t->ne[2], NULL};
    if (cv_plan_in_place(hs->plan, (size_t)i, &out->type, &out->data))
        return QK_OK;
    size_t n = (size_t)(t->ne[0] * t->ne[1] * t->ne[2]);
    float *buf = malloc(n * sizeof *buf);
    if (!buf)
        return qk_err_set(err, QK_ENOMEM, "out of memory for tensor '%s'", t->name);
    cv_plan_read_f32(hs->plan, (size_t)i, buf, 0);
    out->data = buf;
    return eng_model_own(hs->m, buf, err);
}

int cv_engine_open_hf(const char *dir, eng_model *m, cv_plan **plan, tok_vocab **vocab, qk_err *err)
{
    memset(m, 0, sizeof *m);
    *plan = NULL;
    *vocab = NULL;
    cv_options o;
    cv_options_init(&o);
    o.hf_layout = 1;
    int rc = cv_plan_create(dir, &o, plan, err);
    if (!rc && !(rc = tok_vocab_load_hf(dir, NULL, vocab, err))) {
        const ca_config *c = cv_plan_config(*plan);
        hf_source hs = {*plan, m};
        eng_source src = {hf_find, &hs};
        rc = eng_model_build(m, ga_arch_find(c->gguf_arch), &c->hp, !c->arch->hf_rope_pairs, &src, err);
        if (rc)
            qk_err_prefix(err, dir);
        else
            m->bos_id = (*vocab)->special[TOK_BOS];
        /* what llama.cpp would use after conversion when the folder names no BOS id */
        if (!rc && m->bos_id < 0)
            m->bos_id = (*vocab)->special[TOK_BOS] =
                tok_default_special((*vocab)->kind, TOK_BOS, (*vocab)->n_tokens);
    }
    if (rc) {
        cv_plan_free(*plan);
        tok_vocab_free(*vocab);
        *plan = NULL;
        *vocab = NULL;
    }
    return rc;
}
