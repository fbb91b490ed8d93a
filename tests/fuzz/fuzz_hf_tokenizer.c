/* fuzz_hf_tokenizer.c — the tokenizer files of a Hugging Face folder, vocabulary building and the
 * BPE encoder. The first input byte picks which file of a small valid folder the rest of the
 * input replaces (tokenizer.json, vocab.json, merges.txt, added_tokens.json,
 * tokenizer_config.json, config.json, chat_template.jinja); the folder is then read as the
 * converter reads it (hf_tokenizer_load, tok_vocab_load_hf with the "default" pre-tokenizer) and a
 * fixed text is encoded. Refusals must be one-line messages; encoded ids must be in the
 * vocabulary. The files live in a private temporary folder, removed at exit. */
#include <cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../calib/tokenizer.h"
#include "../../formats/hf_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const FILES[] = {"tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json",
                                    "tokenizer_config.json", "config.json", "chat_template.jinja"};
enum { N_FILES = sizeof FILES / sizeof FILES[0] };

/* The valid folder: byte-level BPE over a handful of tokens. */
static const char *const BASE[N_FILES] = {
    NULL,
    "{\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3, \"\\u0120a\": 4, \"<s>\": 5, \"</s>\": 6, \"c\": 7}",
    "#version: 0.2\na b\n\xc4\xa0 a\n",
    "{\"<extra>\": 8}",
    "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\"}, \"add_bos_token\": true, "
    "\"chat_template\": \"{{ x }}\"}",
    "{\"vocab_size\": 10, \"bos_token_id\": 5, \"eos_token_id\": 6}",
    "{% for m in messages %}{{ m }}{% endfor %}",
};

static char dir[64];

static void cleanup(void)
{
    char p[128];
    for (int i = 0; i < N_FILES; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, FILES[i]);
        unlink(p);
    }
    rmdir(dir);
}

static int put(const char *name, const void *bytes, size_t n)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f)
        return -1;
    int ok = fwrite(bytes, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* config.json's vocab_size pads the vocabulary with "[PAD{i}]" tokens, as the converter does: up
 * to HF_MAX_TOKEN_ID of them, which takes seconds and is no finding. Such inputs are skipped. */
static int too_many_pads(const uint8_t *data, size_t size)
{
    cJSON *c = cJSON_ParseWithLength((const char *)data, size);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, "vocab_size");
    int many = cJSON_IsNumber(v) && v->valuedouble > 65536;
    cJSON_Delete(c);
    return many;
}

static const char TEXT[] = "ab a b c  <s>x\xe2\x82\xac\xff<extra>";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/qkit-fuzz-hf-XXXXXX");
        if (!mkdtemp(dir))
            abort();
        atexit(cleanup);
    }
    if (size < 1)
        return 0;
    int pick = data[0] % N_FILES;
    if (pick == 5 && too_many_pads(data + 1, size - 1))
        return 0;
    char p[128];
    for (int i = 0; i < N_FILES; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, FILES[i]);
        unlink(p);
        if (i == pick) {
            if (put(FILES[i], data + 1, size - 1))
                abort();
        } else if (BASE[i] && !(pick == 0 && (i == 1 || i == 2)) && put(FILES[i], BASE[i], strlen(BASE[i]))) {
            abort();
        }
    }
    qk_err err = {{0}};
    hf_tokenizer *t = NULL;
    int rc = hf_tokenizer_load(dir, &t, &err);
    if (rc && (t || !err.msg[0] || strchr(err.msg, '\n')))
        __builtin_trap();
    hf_tokenizer_free(t);
    tok_vocab *v = NULL;
    if (tok_vocab_load_hf(dir, "default", &v, &err) != QK_OK) {
        if (v || !err.msg[0]) /* may quote token texts: printed as one line by the CLI */
            __builtin_trap();
        return 0;
    }
    tok_ids ids = {0};
    if (tok_encode(v, TEXT, sizeof TEXT - 1, TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL, &ids, &err) == QK_OK)
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] < 0 || (uint32_t)ids.ids[i] >= v->n_tokens)
                __builtin_trap();
    tok_ids_free(&ids);
    tok_vocab_free(v);
    return 0;
}
