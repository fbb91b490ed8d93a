/* eval_model.c — a GGUF file or an HF folder opened for the engine; see eval_model.h. */
#include "eval_model.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../calib/model.h"
#include "../calib/tokenizer_gguf.h"
#include "../formats/hash.h"
#include "hf_engine.h"

int cv_eval_open(cv_eval_model *em, const char *path, qk_err *err)
{
    memset(em, 0, sizeof *em);
    em->path = path;
    struct stat st;
    int rc;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        rc = cv_engine_open_hf(path, &em->m, &em->plan, &em->vocab, err);
    else if (!(rc = gguf_open(&em->g, path, err)) && (rc = eng_model_load_gguf(&em->m, em->g, err)))
        qk_err_prefix(err, path);
    if (!rc && em->g && (rc = tok_vocab_load_gguf(em->g, &em->vocab, err)))
        qk_err_prefix(err, path);
    if (!rc && em->vocab->n_tokens != (uint32_t)em->m.n_vocab)
        rc = qk_err_set(err, QK_EFORMAT, "%s: the tokenizer has %u tokens but the model's vocabulary is %d",
                        path, em->vocab->n_tokens, em->m.n_vocab);
    if (rc)
        cv_eval_close(em);
    return rc;
}

void cv_eval_close(cv_eval_model *em)
{
    eng_model_free_owned(&em->m);
    tok_vocab_free(em->vocab);
    gguf_close(em->g);
    cv_plan_free(em->plan);
    memset(em, 0, sizeof *em);
}

int cv_eval_fingerprint(const cv_eval_model *em, uint64_t *id, qk_err *err)
{
    if (em->plan)
        return cv_plan_fingerprint(em->plan, id, err);
    qk_hash h;
    qk_hash_init(&h);
    int rc = QK_OK;
    for (uint32_t i = 0; em->g && i < gguf_n_parts(em->g) && !rc; i++)
        rc = qk_file_fingerprint(gguf_part_path(em->g, i), &h, err);
    *id = qk_hash_final(&h);
    return rc;
}

int cv_verify_models(const char *ref, const char *const *cands, int n_cands, const char *text,
                     int n_ctx, int max_chunks, eng_kld_summary *out, eng_chunk_cb cb, void *user,
                     qk_err *err)
{
    cv_eval_model r = {0};
    cv_eval_model *c = calloc((size_t)n_cands, sizeof *c);
    eng_kld_acc *acc = calloc((size_t)n_cands, sizeof *acc);
    const eng_model **cm = calloc((size_t)n_cands, sizeof *cm);
    tok_ids ids = {0};
    int rc = c && acc && cm ? cv_eval_open(&r, ref, err) : qk_err_set(err, QK_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < n_cands; i++) {
        rc = cv_eval_open(&c[i], cands[i], err);
        cm[i] = &c[i].m;
    }
    if (!rc)
        rc = eng_tokenize_text_file(r.vocab, text, &ids, err);
    eng_ppl_opts po = {n_ctx, max_chunks, -1};
    if (!rc) {
        po.bos = tok_vocab_add_bos(r.vocab) ? r.vocab->special[TOK_BOS] : -1;
        eng_ppl_acc ref_acc = {0};
        eng_verify_models vm = {&r.m, NULL, NULL, cm, n_cands};
        rc = eng_verify(&vm, ids.ids, ids.n, &po, &ref_acc, acc, cb, user, err);
    }
    for (int i = 0; !rc && i < n_cands; i++)
        eng_kld_summarize(&acc[i], &out[i]);
    for (int i = 0; acc && i < n_cands; i++)
        eng_kld_free(&acc[i]);
    for (int i = 0; c && i < n_cands; i++)
        cv_eval_close(&c[i]);
    cv_eval_close(&r);
    tok_ids_free(&ids);
    free(c);
    free(acc);
    free(cm);
    return rc;
}
