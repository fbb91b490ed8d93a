/* eval_model.c — a GGUF file or an HF folder opened for the engine; see eval_model.h. */
#include "eval_model.h"

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
