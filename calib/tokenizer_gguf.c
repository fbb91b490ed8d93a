#include "tokenizer_gguf.h"

#include <stdlib.h>
#include <string.h>

static const char *const SPECIAL_KEYS[TOK_N_SPECIAL] = {
    [TOK_BOS] = "tokenizer.ggml.bos_token_id",  [TOK_EOS] = "tokenizer.ggml.eos_token_id",
    [TOK_UNK] = "tokenizer.ggml.unknown_token_id", [TOK_SEP] = "tokenizer.ggml.seperator_token_id",
    [TOK_PAD] = "tokenizer.ggml.padding_token_id", [TOK_CLS] = "tokenizer.ggml.cls_token_id",
    [TOK_MASK] = "tokenizer.ggml.mask_token_id",  [TOK_EOT] = "tokenizer.ggml.eot_token_id",
};

/* A string array as pointer + length arrays (borrowed from the reader). */
static int str_array(const gguf_ctx *g, const char *key, const char ***strs, uint32_t **lens,
                     uint64_t *n, int required, qk_err *err)
{
    const void *data;
    int rc = gguf_get_arr(g, key, GGUF_TYPE_STR, &data, n);
    if (rc == GGUF_MISSING && !required) {
        *n = 0;
        return QK_OK;
    }
    if (rc)
        return qk_err_set(err, QK_EFORMAT, "metadata key '%s' is %s", key,
                          rc == GGUF_MISSING ? "missing" : "not an array of strings");
    if (*n > UINT32_MAX)
        return qk_err_set(err, QK_EFORMAT, "metadata key '%s' has %llu entries", key, (unsigned long long)*n);
    const gguf_str *s = data;
    *strs = malloc((*n ? *n : 1) * sizeof **strs);
    *lens = lens ? malloc((*n ? *n : 1) * sizeof **lens) : NULL;
    if (!*strs || (lens && !*lens))
        return qk_err_set(err, QK_ENOMEM, "out of memory for '%s'", key);
    for (uint64_t i = 0; i < *n; i++) {
        (*strs)[i] = s[i].ptr;
        if (lens)
            (*lens)[i] = (uint32_t)s[i].len;
    }
    return QK_OK;
}

static int typed_array(const gguf_ctx *g, const char *key, enum gguf_vtype type, uint64_t n_tokens,
                       const void **out, qk_err *err)
{
    uint64_t n;
    int rc = gguf_get_arr(g, key, type, out, &n);
    if (rc == GGUF_MISSING) {
        *out = NULL;
        return QK_OK;
    }
    if (rc || n != n_tokens)
        return qk_err_set(err, QK_EFORMAT, "metadata key '%s' must be an array of %llu %s values", key,
                          (unsigned long long)n_tokens, gguf_type_name(type));
    return QK_OK;
}

static void read_flags(const gguf_ctx *g, tok_vocab_desc *d)
{
    bool b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) == QK_OK)
        d->add_bos = b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b) == QK_OK)
        d->add_eos = b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b) == QK_OK)
        d->add_space_prefix = b;
    if (gguf_get_bool(g, "tokenizer.ggml.remove_extra_whitespaces", &b) == QK_OK)
        d->remove_extra_whitespaces = b;
    /* llama.cpp's defaults when a file names no special ids. */
    for (int s = 0; s < 3; s++)
        d->special[s] = tok_default_special(d->kind, s, d->n_tokens);
    for (int s = 0; s < TOK_N_SPECIAL; s++) {
        uint32_t id;
        if (gguf_get_u32(g, SPECIAL_KEYS[s], &id) == QK_OK)
            d->special[s] = id < d->n_tokens ? (int32_t)id : -1; /* llama.cpp writes -1 as u32 */
    }
    const char *str;
    if (gguf_get_str(g, "tokenizer.ggml.pre", &str) == QK_OK)
        d->pre = str;
    if (gguf_get_str(g, "tokenizer.chat_template", &str) == QK_OK)
        d->chat_template = str;
}

int tok_vocab_load_gguf(const gguf_ctx *g, tok_vocab **out, qk_err *err)
{
    *out = NULL;
    const char *model;
    int rc = gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (rc)
        return qk_err_set(err, QK_EFORMAT, "metadata key 'tokenizer.ggml.model' is %s",
                          rc == GGUF_MISSING ? "missing (the file has no tokenizer)" : "not a string");
    tok_kind kind;
    if (!strcmp(model, "llama"))
        kind = TOK_KIND_SPM;
    else if (!strcmp(model, "gpt2"))
        kind = TOK_KIND_BPE;
    else
        return qk_err_set(err, QK_EUNSUPPORTED, "tokenizer model '%s' is not supported (llama, gpt2)", model);
    tok_vocab_desc d;
    tok_vocab_desc_init(&d, kind);
    const char **tokens = NULL, **merges = NULL;
    uint32_t *lens = NULL, *mlens = NULL;
    uint64_t n = 0, n_merges = 0;
    const void *scores = NULL, *types = NULL;
    if (!(rc = str_array(g, "tokenizer.ggml.tokens", &tokens, &lens, &n, 1, err)) &&
        !(rc = str_array(g, "tokenizer.ggml.merges", &merges, &mlens, &n_merges, 0, err)) &&
        !(rc = typed_array(g, "tokenizer.ggml.scores", GGUF_TYPE_F32, n, &scores, err)) &&
        !(rc = typed_array(g, "tokenizer.ggml.token_type", GGUF_TYPE_I32, n, &types, err))) {
        d.n_tokens = (uint32_t)n;
        d.tokens = tokens;
        d.token_len = lens;
        d.scores = scores;
        d.types = types;
        d.n_merges = (uint32_t)n_merges;
        d.merges = merges;
        read_flags(g, &d);
        rc = tok_vocab_create(&d, out, err);
    }
    free(tokens);
    free(lens);
    free(merges);
    free(mlens);
    return rc;
}
