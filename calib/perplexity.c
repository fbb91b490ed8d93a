#include "perplexity.h"

#include <stdlib.h>
#include <string.h>

#include "../formats/file.h"

int eng_tokenize_text_file(const tok_vocab *v, const char *path, tok_ids *ids, qk_err *err)
{
    char *text;
    size_t len;
    int rc = qk_file_read(path, QK_FILE_NO_LIMIT, &text, &len, err);
    if (!rc && len == 0)
        rc = qk_err_set(err, QK_EFORMAT, "%s: the text is empty", path);
    if (!rc && (rc = tok_encode(v, text, len, TOK_ADD_SPECIAL, ids, err)))
        qk_err_prefix(err, path);
    free(text);
    return rc;
}

int eng_ppl_plan(const eng_model *m, size_t n_tokens, const eng_ppl_opts *o, int *n_chunks, qk_err *err)
{
    if (o->n_ctx < 4)
        return qk_err_set(err, QK_ERANGE, "context of %d tokens is too small (at least 4)", o->n_ctx);
    if (m && o->n_ctx > m->n_ctx_train)
        return qk_err_set(err, QK_ERANGE, "context of %d tokens exceeds the model's %d", o->n_ctx,
                          m->n_ctx_train);
    if (n_tokens < 2 * (size_t)o->n_ctx)
        return qk_err_set(err, QK_ERANGE,
                          "the text has %zu tokens; at least 2 x n_ctx = %d are needed", n_tokens,
                          2 * o->n_ctx);
    size_t n = n_tokens / (size_t)o->n_ctx;
    if (o->max_chunks > 0 && (size_t)o->max_chunks < n)
        n = (size_t)o->max_chunks;
    *n_chunks = (int)n;
    return QK_OK;
}

static void chunk_tokens(const int32_t *tokens, int chunk, const eng_ppl_opts *o, int32_t *dst)
{
    memcpy(dst, tokens + (size_t)chunk * o->n_ctx, (size_t)o->n_ctx * sizeof *dst);
    if (o->bos >= 0)
        dst[0] = o->bos;
}

int eng_perplexity(const eng_model *m, const int32_t *tokens, size_t n_tokens, const eng_ppl_opts *o,
                   eng_ppl_acc *acc, eng_chunk_cb cb, void *user, qk_err *err)
{
    int n_chunks, rc = eng_ppl_plan(m, n_tokens, o, &n_chunks, err);
    if (rc)
        return rc;
    eng_ctx *c = NULL;
    float *logits = malloc((size_t)o->n_ctx * m->n_vocab * sizeof(float));
    int32_t *tok = malloc((size_t)o->n_ctx * sizeof *tok);
    if (!logits || !tok)
        rc = qk_err_set(err, QK_ENOMEM, "out of memory for %d x %d logits", o->n_ctx, m->n_vocab);
    if (!rc)
        rc = eng_ctx_create(&c, m, o->n_ctx, err);
    const int first = o->n_ctx / 2;
    double *nll = malloc((size_t)o->n_ctx * sizeof *nll);
    if (!rc && !nll)
        rc = qk_err_set(err, QK_ENOMEM, "out of memory");
    for (int ch = 0; !rc && ch < n_chunks; ch++) {
        chunk_tokens(tokens, ch, o, tok);
        rc = eng_forward(c, tok, o->n_ctx, logits, err);
        /* the positions' log-softmaxes on the threads, added up in order */
#pragma omp parallel for schedule(static) if (!rc)
        for (int j = first; j < o->n_ctx - 1; j++)
            nll[j] = eng_log_softmax(logits + (size_t)j * m->n_vocab, m->n_vocab,
                                     tokens[(size_t)ch * o->n_ctx + j + 1], NULL);
        for (int j = first; !rc && j < o->n_ctx - 1; j++)
            eng_ppl_add(acc, nll[j]);
        if (!rc && cb)
            cb(user, ch, n_chunks);
    }
    eng_ctx_free(c);
    free(logits);
    free(tok);
    free(nll);
    return rc;
}

typedef struct {
    eng_ctx **ctx; /* [0] reference (if a model), [1..] candidates */
    float *logits, *ref_logp, *scratch;
    int32_t *tok, *saved_tok;
} verify_state;

static int verify_setup(const eng_verify_models *vm, const eng_ppl_opts *o, int n_vocab, int n_scored,
                        verify_state *s, qk_err *err)
{
    s->ctx = calloc((size_t)vm->n_cands + 1, sizeof *s->ctx);
    s->logits = malloc((size_t)o->n_ctx * n_vocab * sizeof(float));
    s->ref_logp = malloc((size_t)n_scored * n_vocab * sizeof(float));
    s->scratch = malloc((size_t)n_vocab * sizeof(float));
    s->tok = malloc((size_t)o->n_ctx * sizeof(int32_t));
    s->saved_tok = malloc((size_t)o->n_ctx * sizeof(int32_t));
    if (!s->ctx || !s->logits || !s->ref_logp || !s->scratch || !s->tok || !s->saved_tok)
        return qk_err_set(err, QK_ENOMEM, "out of memory for %d x %d logits", o->n_ctx, n_vocab);
    int rc = vm->ref ? eng_ctx_create(&s->ctx[0], vm->ref, o->n_ctx, err) : QK_OK;
    for (int i = 0; !rc && i < vm->n_cands; i++) {
        if (vm->cands[i]->n_vocab != n_vocab)
            return qk_err_set(err, QK_EFORMAT, "candidate %d has a vocabulary of %d, the reference %d",
                              i + 1, vm->cands[i]->n_vocab, n_vocab);
        rc = eng_ctx_create(&s->ctx[i + 1], vm->cands[i], o->n_ctx, err);
    }
    return rc;
}

static void verify_free(const eng_verify_models *vm, verify_state *s)
{
    for (int i = 0; s->ctx && i <= vm->n_cands; i++)
        eng_ctx_free(s->ctx[i]);
    free(s->ctx);
    free(s->logits);
    free(s->ref_logp);
    free(s->scratch);
    free(s->tok);
    free(s->saved_tok);
}

/* The reference's log-probabilities of the scored positions: computed, or read back. */
static int reference_chunk(const eng_verify_models *vm, verify_state *s, const eng_ppl_opts *o,
                           int n_vocab, int n_scored, int ch, qk_err *err)
{
    const int first = o->n_ctx / 2;
    if (vm->ref_logits) {
        int rc = lg_reader_chunk(vm->ref_logits, s->saved_tok, s->ref_logp, err);
        if (!rc && memcmp(s->saved_tok, s->tok, (size_t)o->n_ctx * sizeof(int32_t)))
            rc = qk_err_set(err, QK_EFORMAT,
                            "reference logits of chunk %d were computed on other tokens (different text or tokenizer)",
                            ch + 1);
        return rc;
    }
    int rc = eng_forward(s->ctx[0], s->tok, o->n_ctx, s->logits, err);
    for (int j = 0; !rc && j < n_scored; j++)
        eng_log_softmax(s->logits + (size_t)(first + j) * n_vocab, n_vocab, 0,
                        s->ref_logp + (size_t)j * n_vocab);
    if (!rc && vm->save)
        rc = lg_writer_chunk(vm->save, s->tok, s->ref_logp, err);
    return rc;
}

int eng_verify(const eng_verify_models *vm, const int32_t *tokens, size_t n_tokens,
               const eng_ppl_opts *o, eng_ppl_acc *ref_acc, eng_kld_acc *accs, eng_chunk_cb cb,
               void *user, qk_err *err)
{
    const eng_model *shape = vm->ref ? vm->ref : vm->cands[0];
    int n_chunks, rc = eng_ppl_plan(shape, n_tokens, o, &n_chunks, err);
    if (rc)
        return rc;
    const int n_vocab = shape->n_vocab, first = o->n_ctx / 2, n_scored = o->n_ctx - 1 - first;
    verify_state s = {0};
    rc = verify_setup(vm, o, n_vocab, n_scored, &s, err);
    for (int ch = 0; !rc && ch < n_chunks; ch++) {
        chunk_tokens(tokens, ch, o, s.tok);
        const int32_t *next = tokens + (size_t)ch * o->n_ctx + first + 1;
        rc = reference_chunk(vm, &s, o, n_vocab, n_scored, ch, err);
        for (int j = 0; !rc && j < n_scored; j++)
            eng_ppl_add(ref_acc, -(double)s.ref_logp[(size_t)j * n_vocab + next[j]]);
        for (int i = 0; !rc && i < vm->n_cands; i++) {
            rc = eng_forward(s.ctx[i + 1], s.tok, o->n_ctx, s.logits, err);
            for (int j = 0; !rc && j < n_scored; j++)
                rc = eng_kld_add(&accs[i], s.ref_logp + (size_t)j * n_vocab,
                                 s.logits + (size_t)(first + j) * n_vocab, n_vocab, next[j], s.scratch, err);
        }
        if (!rc && cb)
            cb(user, ch, n_chunks);
    }
    verify_free(vm, &s);
    return rc;
}

/* ---- KL-divergence probes --------------------------------------------------------------------- */

struct eng_kld_probe {
    eng_model *m;
    eng_ppl_opts o;
    int n_chunks, n_scored;
    const int32_t *tokens;
    eng_ctx *ctx;
    float *ref_logp; /* [n_chunks][n_scored][n_vocab] */
    float *logits, *scratch;
    int32_t *tok;
    float *hidden;   /* [n_chunks][n_layer + 1][n_ctx][n_embd]: block inputs (and the last block's
                        output) of the reference, or NULL when they would take too much memory */
    float *x;        /* [n_ctx][n_embd] */
};

#define PROBE_HIDDEN_MAX ((size_t)1 << 30) /* bytes of cached hidden states at most */

void eng_kld_probe_free(eng_kld_probe *p)
{
    if (!p)
        return;
    eng_ctx_free(p->ctx);
    free(p->ref_logp);
    free(p->logits);
    free(p->scratch);
    free(p->tok);
    free(p->hidden);
    free(p->x);
    free(p);
}

static float *hidden_at(const eng_kld_probe *p, int ch, int layer)
{
    const size_t per = (size_t)p->o.n_ctx * (size_t)p->m->n_embd;
    return p->hidden + ((size_t)ch * (size_t)(p->m->n_layer + 1) + (size_t)layer) * per;
}

int eng_kld_probe_create(eng_kld_probe **out, eng_model *m, const int32_t *tokens, size_t n_tokens,
                         const eng_ppl_opts *o, qk_err *err)
{
    *out = NULL;
    eng_kld_probe *p = calloc(1, sizeof *p);
    if (!p)
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    p->m = m;
    p->o = *o;
    p->tokens = tokens;
    int rc = eng_ppl_plan(m, n_tokens, o, &p->n_chunks, err);
    const size_t V = (size_t)m->n_vocab;
    p->n_scored = o->n_ctx - 1 - o->n_ctx / 2;
    if (!rc) {
        p->ref_logp = malloc((size_t)p->n_chunks * (size_t)p->n_scored * V * sizeof(float));
        p->logits = malloc((size_t)o->n_ctx * V * sizeof(float));
        p->scratch = malloc(V * sizeof(float));
        p->tok = malloc((size_t)o->n_ctx * sizeof(int32_t));
        if (!p->ref_logp || !p->logits || !p->scratch || !p->tok)
            rc = qk_err_set(err, QK_ENOMEM, "out of memory for the reference log-probabilities of "
                            "%d chunks (%d x %zu floats each)", p->n_chunks, p->n_scored, V);
    }
    if (!rc)
        rc = eng_ctx_create(&p->ctx, m, o->n_ctx, err);
    const size_t per = (size_t)o->n_ctx * (size_t)m->n_embd;
    const double hb = (double)p->n_chunks * (m->n_layer + 1) * (double)per * sizeof(float);
    if (!rc && hb <= (double)PROBE_HIDDEN_MAX)
        p->hidden = malloc((size_t)hb); /* optional: NULL means full passes */
    if (!rc && !(p->x = malloc(per * sizeof(float))))
        rc = qk_err_set(err, QK_ENOMEM, "out of memory");
    const int first = o->n_ctx / 2;
    for (int ch = 0; !rc && ch < p->n_chunks; ch++) {
        chunk_tokens(tokens, ch, o, p->tok);
        if (p->hidden) { /* block by block, keeping every block's input: the same arithmetic */
            rc = eng_embed(p->ctx, p->tok, o->n_ctx, hidden_at(p, ch, 0), err);
            for (int l = 0; !rc && l < m->n_layer; l++) {
                memcpy(hidden_at(p, ch, l + 1), hidden_at(p, ch, l), per * sizeof(float));
                rc = eng_blocks(p->ctx, hidden_at(p, ch, l + 1), o->n_ctx, l, l + 1, err);
            }
            if (!rc)
                rc = eng_head(p->ctx, hidden_at(p, ch, m->n_layer), o->n_ctx, p->logits, err);
        } else {
            rc = eng_forward(p->ctx, p->tok, o->n_ctx, p->logits, err);
        }
        float *dst = p->ref_logp + (size_t)ch * (size_t)p->n_scored * V;
        for (int j = 0; !rc && j < p->n_scored; j++)
            eng_log_softmax(p->logits + (size_t)(first + j) * V, (int)V, 0, dst + (size_t)j * V);
    }
    if (rc) {
        eng_kld_probe_free(p);
        return rc;
    }
    *out = p;
    return QK_OK;
}

int eng_kld_probe_chunks(const eng_kld_probe *p) { return p->n_chunks; }

int eng_kld_probe_run(eng_kld_probe *p, double *mean_kld, qk_err *err)
{
    return eng_kld_probe_run_from(p, 0, mean_kld, err);
}

int eng_kld_probe_run_from(eng_kld_probe *p, int layer, double *mean_kld, qk_err *err)
{
    const size_t V = (size_t)p->m->n_vocab;
    const size_t per = (size_t)p->o.n_ctx * (size_t)p->m->n_embd;
    const int first = p->o.n_ctx / 2;
    eng_kld_acc acc = {0};
    int rc = QK_OK;
    for (int ch = 0; !rc && ch < p->n_chunks; ch++) {
        chunk_tokens(p->tokens, ch, &p->o, p->tok);
        if (p->hidden && layer >= 0 && layer <= p->m->n_layer) {
            memcpy(p->x, hidden_at(p, ch, layer), per * sizeof(float));
            rc = eng_blocks(p->ctx, p->x, p->o.n_ctx, layer, p->m->n_layer, err);
            if (!rc)
                rc = eng_head(p->ctx, p->x, p->o.n_ctx, p->logits, err);
        } else {
            rc = eng_forward(p->ctx, p->tok, p->o.n_ctx, p->logits, err);
        }
        const float *ref = p->ref_logp + (size_t)ch * (size_t)p->n_scored * V;
        const int32_t *next = p->tokens + (size_t)ch * p->o.n_ctx + first + 1;
        for (int j = 0; !rc && j < p->n_scored; j++)
            rc = eng_kld_add(&acc, ref + (size_t)j * V, p->logits + (size_t)(first + j) * V, (int)V,
                             next[j], p->scratch, err);
    }
    *mean_kld = !rc && acc.count ? acc.sum_kld / (double)acc.count : 0.0;
    eng_kld_free(&acc);
    return rc;
}
