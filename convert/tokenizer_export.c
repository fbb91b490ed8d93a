/* tokenizer_export.c — tokenizer.ggml.* keys from a tok_vocab, as convert_hf_to_gguf.py writes them. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/file.h"
#include "tokenizer_export.h"

void te_extra_init(te_extra *x)
{
    x->add_space_prefix = -1;
    x->add_bos = -1;
    x->prefix_id = x->suffix_id = x->middle_id = x->eot_id = -1;
}

/* tokenizer_config.json's add_prefix_space as 1/0, -1 when absent, null or no file. */
static int read_add_prefix_space(const char *dir, int *out, qk_err *err)
{
    size_t plen = strlen(dir) + sizeof "/tokenizer_config.json", len;
    char *path = malloc(plen), *json = NULL;
    *out = -1;
    if (!path)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", dir);
    snprintf(path, plen, "%s/tokenizer_config.json", dir);
    qk_err probe;
    int rc = qk_file_read(path, QK_FILE_NO_LIMIT, &json, &len, &probe);
    if (rc) {
        /* absent is fine (the tokenizer loader already judged the folder); unreadable is not */
        rc = rc == QK_ENOTFOUND ? QK_OK : qk_err_set(err, rc, "%s", probe.msg);
    } else {
        cJSON *root = cJSON_ParseWithLength(json, len);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "add_prefix_space");
        if (!root)
            rc = qk_err_set(err, QK_EFORMAT, "%s: not valid JSON", path);
        else if (cJSON_IsBool(v))
            *out = cJSON_IsTrue(v);
        cJSON_Delete(root);
    }
    free(json);
    free(path);
    return rc;
}

int te_extra_from_hf(const char *dir, const ca_config *c, te_extra *x, qk_err *err)
{
    te_extra_init(x);
    if (!c->arch->llama_vocab)
        return QK_OK;
    if (c->hp.n_vocab == 32016) { /* CodeLlama */
        x->prefix_id = 32007;
        x->suffix_id = 32008;
        x->middle_id = 32009;
        x->eot_id = 32010;
    }
    if (c->hp.n_vocab == 49152) /* "granite small models", which includes SmolLM */
        x->add_bos = 0;
    return read_add_prefix_space(dir, &x->add_space_prefix, err);
}

/* Strings with explicit lengths: token texts may hold NUL bytes. */
static int set_str_array(gguf_writer *w, const char *key, char *const *s, const uint32_t *len,
                         uint32_t n, qk_err *err)
{
    gguf_str *a = malloc((n ? n : 1) * sizeof *a);
    if (!a)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", key);
    for (uint32_t i = 0; i < n; i++)
        a[i] = (gguf_str){len ? len[i] : strlen(s[i]), s[i]};
    int rc = gguf_writer_set_arr(w, key, GGUF_TYPE_STR, a, n);
    free(a);
    return rc;
}

static int write_arrays(gguf_writer *w, const tok_vocab *v, qk_err *err)
{
    int rc = set_str_array(w, "tokenizer.ggml.tokens", v->tokens, v->token_len, v->n_tokens, err);
    if (!rc && v->scores)
        rc = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_F32, v->scores, v->n_tokens);
    if (!rc)
        rc = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_I32, v->types, v->n_tokens);
    if (!rc && v->n_merges)
        rc = set_str_array(w, "tokenizer.ggml.merges", v->merges, NULL, v->n_merges, err);
    return rc;
}

/* SpecialVocab's order and handlers; cls has none (gguf-py skips it with a warning). */
static int write_special_ids(gguf_writer *w, const tok_vocab *v)
{
    static const struct {
        int slot;
        const char *key;
    } ids[] = {
        {TOK_BOS, "tokenizer.ggml.bos_token_id"},       {TOK_EOS, "tokenizer.ggml.eos_token_id"},
        {TOK_UNK, "tokenizer.ggml.unknown_token_id"},   {TOK_SEP, "tokenizer.ggml.seperator_token_id"},
        {TOK_PAD, "tokenizer.ggml.padding_token_id"},   {TOK_MASK, "tokenizer.ggml.mask_token_id"},
    };
    int rc = QK_OK;
    for (size_t i = 0; i < sizeof ids / sizeof ids[0] && !rc; i++)
        if (v->special[ids[i].slot] >= 0)
            rc = gguf_writer_set_u32(w, ids[i].key, (uint32_t)v->special[ids[i].slot]);
    return rc;
}

static int write_extras(gguf_writer *w, const te_extra *x)
{
    const struct {
        int32_t id;
        const char *key;
    } fim[] = {
        {x->prefix_id, "tokenizer.ggml.prefix_token_id"}, {x->suffix_id, "tokenizer.ggml.suffix_token_id"},
        {x->middle_id, "tokenizer.ggml.middle_token_id"}, {x->eot_id, "tokenizer.ggml.eot_token_id"},
    };
    int rc = QK_OK;
    for (size_t i = 0; i < sizeof fim / sizeof fim[0] && !rc; i++)
        if (fim[i].id >= 0)
            rc = gguf_writer_set_u32(w, fim[i].key, (uint32_t)fim[i].id);
    if (!rc && x->add_space_prefix >= 0)
        rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", x->add_space_prefix != 0);
    if (!rc && x->add_bos >= 0)
        rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", x->add_bos != 0);
    return rc;
}

int te_export(gguf_writer *w, const tok_vocab *v, const te_extra *x, qk_err *err)
{
    int rc = gguf_writer_set_str(w, "tokenizer.ggml.model", v->kind == TOK_KIND_SPM ? "llama" : "gpt2");
    if (!rc)
        rc = gguf_writer_set_str(w, "tokenizer.ggml.pre", v->pre);
    if (!rc)
        rc = write_arrays(w, v, err);
    if (!rc)
        rc = write_special_ids(w, v);
    if (!rc && v->add_bos >= 0)
        rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos != 0);
    if (!rc && v->add_eos >= 0)
        rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", v->add_eos != 0);
    if (!rc && v->chat_template)
        rc = gguf_writer_set_str(w, "tokenizer.chat_template", v->chat_template);
    if (!rc && x)
        rc = write_extras(w, x);
    if (rc && gguf_writer_error(w)[0])
        qk_err_set(err, rc, "%s", gguf_writer_error(w));
    return rc;
}
