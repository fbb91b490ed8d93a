/* hf_tokenizer.c — Hugging Face tokenizer files into plain arrays (see hf_tokenizer.h). */
#include "hf_tokenizer.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "file.h"

static const char *const SPECIAL_NAMES[HF_N_SPECIAL] = {"bos", "eos", "unk", "sep",
                                                         "pad", "cls", "mask"};

const char *hf_special_name(int kind)
{
    return kind >= 0 && kind < HF_N_SPECIAL ? SPECIAL_NAMES[kind] : "?";
}

/* ---------------------------------------------------------------- files */

static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (p)
        snprintf(p, a + b + 2, "%s/%s", dir, name);
    return p;
}

static bool file_exists(const char *dir, const char *name)
{
    char *p = path_join(dir, name);
    struct stat st;
    bool ok = p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
    free(p);
    return ok;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char *dup_s(const char *s) { return dup_n(s, strlen(s)); }

/* ---------------------------------------------------------------- JSON helpers */

static int json_parse(const char *text, size_t len, const char *name, cJSON **out, qk_err *err)
{
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (*out)
        return QK_OK;
    size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
    return qk_err_set(err, QK_EFORMAT, "%s: invalid JSON near byte %zu", name, at);
}

static int json_file(const char *dir, const char *file, cJSON **out, qk_err *err)
{
    char *path = path_join(dir, file), *text = NULL;
    size_t len;
    *out = NULL;
    if (!path)
        return qk_err_set(err, QK_ENOMEM, "%s/%s: out of memory", dir, file);
    int rc = qk_file_read(path, QK_FILE_NO_LIMIT, &text, &len, err);
    if (!rc)
        rc = json_parse(text, len, path, out, err);
    if (!rc && !cJSON_IsObject(*out)) {
        rc = qk_err_set(err, QK_EFORMAT, "%s: top level is not a JSON object", path);
        cJSON_Delete(*out);
        *out = NULL;
    }
    free(text);
    free(path);
    return rc;
}

/* An integral JSON number in [lo, hi]. */
static bool json_int(const cJSON *j, int64_t lo, int64_t hi, int64_t *v)
{
    if (!cJSON_IsNumber(j))
        return false;
    double d = j->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d))
        return false;
    *v = (int64_t)d;
    return true;
}

static bool json_token_id(const cJSON *j, int32_t *id)
{
    int64_t v;
    if (!json_int(j, 0, HF_MAX_TOKEN_ID, &v))
        return false;
    *id = (int32_t)v;
    return true;
}

static bool json_bool(const cJSON *obj, const char *key, bool dflt)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsBool(j) ? cJSON_IsTrue(j) : dflt;
}

static const char *json_str(const cJSON *obj, const char *key)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

/* A special token given as "text" or as {"content": "text", ...}. */
static const char *json_token_content(const cJSON *j)
{
    if (cJSON_IsString(j))
        return j->valuestring;
    return cJSON_IsObject(j) ? json_str(j, "content") : NULL;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* ---------------------------------------------------------------- vocab and merges */

static int oom(const char *name, qk_err *err)
{
    return qk_err_set(err, QK_ENOMEM, "%s: out of memory", name);
}

/* A {"token": id, ...} object, as in tokenizer.json model.vocab and vocab.json. */
static int parse_vocab_object(hf_tokenizer *t, const cJSON *obj, const char *name, qk_err *err)
{
    int n = cJSON_GetArraySize(obj);
    if (n <= 0)
        return qk_err_set(err, QK_EFORMAT, "%s: the vocabulary is empty", name);
    t->vocab = calloc((size_t)n, sizeof *t->vocab);
    if (!t->vocab)
        return oom(name, err);
    for (const cJSON *e = obj->child; e; e = e->next) {
        hf_vocab_entry *v = &t->vocab[t->n_vocab];
        if (!json_token_id(e, &v->id))
            return qk_err_set(err, QK_EFORMAT, "%s: vocab entry '%s' has no valid id (0..%d)", name,
                              qk_show(e->string).s, HF_MAX_TOKEN_ID);
        v->len = (uint32_t)strlen(e->string);
        if (!(v->text = dup_n(e->string, v->len)))
            return oom(name, err);
        t->n_vocab++;
    }
    return QK_OK;
}

/* ["a b", ...] or, since transformers 4.45, [["a", "b"], ...]. Both become the GGUF form "a b";
 * a space inside a pair element is written as U+0120, exactly as llama.cpp's converter does. */
static char *merge_from_pair(const cJSON *pair)
{
    const char *parts[2] = {pair->child->valuestring, pair->child->next->valuestring};
    size_t len = 2;
    for (int k = 0; k < 2; k++)
        for (const char *c = parts[k]; *c; c++)
            len += *c == ' ' ? 2 : 1;
    char *out = malloc(len), *o = out;
    if (!out)
        return NULL;
    for (int k = 0; k < 2; k++) {
        if (k)
            *o++ = ' ';
        for (const char *c = parts[k]; *c; c++) {
            if (*c == ' ') {
                *o++ = (char)0xC4;
                *o++ = (char)0xA0;
            } else {
                *o++ = *c;
            }
        }
    }
    *o = '\0';
    return out;
}

static int parse_merges_array(hf_tokenizer *t, const cJSON *arr, const char *name, qk_err *err)
{
    int n = cJSON_GetArraySize(arr);
    if (n == 0)
        return QK_OK;
    t->merges = calloc((size_t)n, sizeof *t->merges);
    if (!t->merges)
        return oom(name, err);
    for (const cJSON *e = arr->child; e; e = e->next) {
        char *m;
        if (cJSON_IsString(e)) {
            m = dup_s(e->valuestring);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            m = merge_from_pair(e);
        } else {
            return qk_err_set(err, QK_EFORMAT,
                              "%s: merge %u is neither a string nor a [\"a\", \"b\"] pair", name,
                              t->n_merges);
        }
        if (!m)
            return oom(name, err);
        t->merges[t->n_merges++] = m;
    }
    return QK_OK;
}

static int parse_merges_txt(hf_tokenizer *t, char *text, size_t len, const char *name, qk_err *err)
{
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    t->merges = calloc(lines, sizeof *t->merges);
    if (!t->merges)
        return oom(name, err);
    char *p = text, *end = text + len;
    for (size_t line = 1; p < end; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        char *s = p;
        p = nl ? nl + 1 : end;
        while (s < e && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            e--;
        /* The converter skips a first line that starts with '#' ("#version: 0.2"). */
        if (e == s || (line == 1 && *s == '#'))
            continue;
        char *sp = s;
        while (sp < e && *sp != ' ' && *sp != '\t')
            sp++;
        char *b = sp;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        char *bend = b;
        while (bend < e && *bend != ' ' && *bend != '\t')
            bend++;
        if (sp == e || bend != e)
            return qk_err_set(err, QK_EFORMAT,
                              "%s: line %zu: expected two tokens separated by a space", name, line);
        size_t la = (size_t)(sp - s), lb = (size_t)(e - b);
        char *m = malloc(la + lb + 2);
        if (!m)
            return oom(name, err);
        memcpy(m, s, la);
        m[la] = ' ';
        memcpy(m + la + 1, b, lb);
        m[la + 1 + lb] = '\0';
        t->merges[t->n_merges++] = m;
    }
    return QK_OK;
}

/* ---------------------------------------------------------------- added tokens */

static int push_added(hf_added_token **arr, uint32_t *n, const char *content, int32_t id,
                      bool special, const char *name, qk_err *err)
{
    hf_added_token *a = realloc(*arr, (*n + 1) * sizeof **arr);
    if (!a)
        return oom(name, err);
    *arr = a;
    a[*n].len = (uint32_t)strlen(content);
    a[*n].content = dup_n(content, a[*n].len);
    a[*n].id = id;
    a[*n].special = special;
    if (!a[*n].content)
        return oom(name, err);
    (*n)++;
    return QK_OK;
}

/* tokenizer.json: [{"id": 1, "content": "<s>", "special": true, ...}, ...] */
static int parse_added_array(hf_tokenizer *t, const cJSON *arr, const char *name, qk_err *err)
{
    uint32_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        const char *content = json_str(e, "content");
        int32_t id;
        if (!content || !json_token_id(cJSON_GetObjectItemCaseSensitive(e, "id"), &id))
            return qk_err_set(err, QK_EFORMAT,
                              "%s: added_tokens[%u] needs an \"id\" and a \"content\"", name, i);
        int rc = push_added(&t->added, &t->n_added, content, id, json_bool(e, "special", false),
                            name, err);
        if (rc)
            return rc;
    }
    return QK_OK;
}

/* added_tokens.json {"text": id} and tokenizer_config.json added_tokens_decoder {"id": {...}}. */
static int parse_added_object(hf_added_token **arr, uint32_t *n, const cJSON *obj, bool by_id,
                              const char *name, qk_err *err)
{
    for (const cJSON *e = obj->child; e; e = e->next) {
        const char *content = by_id ? json_str(e, "content") : e->string;
        int32_t id = -1;
        if (by_id) {
            char *endp;
            long v = strtol(e->string, &endp, 10);
            if (*e->string && !*endp && v >= 0 && v <= HF_MAX_TOKEN_ID)
                id = (int32_t)v;
        } else if (!json_token_id(e, &id)) {
            id = -1;
        }
        if (!content || id < 0)
            return qk_err_set(err, QK_EFORMAT, "%s: added token '%s' has no valid id and content",
                              name, qk_show(e->string).s);
        int rc =
            push_added(arr, n, content, id, by_id && json_bool(e, "special", false), name, err);
        if (rc)
            return rc;
    }
    return QK_OK;
}

/* ------------------------------------------------ pre_tokenizer and post_processor */

static int push_pre(hf_tokenizer *t, hf_pre_step step, const char *name, qk_err *err)
{
    hf_pre_step *p = realloc(t->pre, (t->n_pre + 1) * sizeof *p);
    if (!p) {
        free(step.pattern);
        return oom(name, err);
    }
    t->pre = p;
    t->pre[t->n_pre++] = step;
    return QK_OK;
}

/* A Split pattern given as {"String": "..."} matches literally: quote it for PCRE2. */
static char *literal_pattern(const char *s)
{
    size_t n = strlen(s);
    char *p = malloc(2 * n + 1), *o = p;
    if (!p)
        return NULL;
    for (; *s; s++) {
        if (strchr("\\^$.|?*+()[]{}", *s))
            *o++ = '\\';
        *o++ = *s;
    }
    *o = '\0';
    return p;
}

static void note_unsupported(hf_tokenizer *t, const char *what)
{
    if (!t->pre_unsupported[0])
        copy_str(t->pre_unsupported, sizeof t->pre_unsupported, what);
}

static int parse_pre_split(hf_tokenizer *t, const cJSON *j, const char *name, qk_err *err)
{
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
    const char *re = json_str(pat, "Regex"), *lit = json_str(pat, "String");
    const char *behavior = json_str(j, "behavior");
    if ((!re && !lit) || json_bool(j, "invert", false) ||
        (behavior && strcmp(behavior, "Isolated") != 0)) {
        note_unsupported(t, behavior ? behavior : "Split");
        return QK_OK;
    }
    hf_pre_step s = {.kind = HF_PRE_SPLIT};
    s.pattern = re ? dup_s(re) : literal_pattern(lit);
    if (!s.pattern)
        return oom(name, err);
    return push_pre(t, s, name, err);
}

static int parse_pre(hf_tokenizer *t, const cJSON *j, int depth, const char *name, qk_err *err)
{
    if (cJSON_IsNull(j) || !j)
        return QK_OK;
    const char *type = json_str(j, "type");
    if (!type || depth > 8)
        return qk_err_set(err, QK_EFORMAT, "%s: pre_tokenizer without a \"type\"", name);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
        if (!cJSON_IsArray(list))
            return qk_err_set(err, QK_EFORMAT, "%s: Sequence pre_tokenizer without a list", name);
        for (const cJSON *e = list->child; e; e = e->next) {
            int rc = parse_pre(t, e, depth + 1, name, err);
            if (rc)
                return rc;
        }
        return QK_OK;
    }
    if (!strcmp(type, "Split"))
        return parse_pre_split(t, j, name, err);
    if (!strcmp(type, "ByteLevel")) {
        hf_pre_step s = {.kind = HF_PRE_BYTE_LEVEL,
                         .use_regex = json_bool(j, "use_regex", true),
                         .add_prefix_space = json_bool(j, "add_prefix_space", true)};
        return push_pre(t, s, name, err);
    }
    if (!strcmp(type, "Digits")) {
        hf_pre_step s = {.kind = HF_PRE_DIGITS,
                         .individual_digits = json_bool(j, "individual_digits", false)};
        return push_pre(t, s, name, err);
    }
    note_unsupported(t, type);
    return QK_OK;
}

static int push_id(int32_t **arr, uint32_t *n, const cJSON *j, const char *name, qk_err *err)
{
    int32_t id;
    if (!json_token_id(j, &id))
        return qk_err_set(err, QK_EFORMAT, "%s: post_processor has an invalid token id", name);
    int32_t *a = realloc(*arr, (*n + 1) * sizeof *a);
    if (!a)
        return oom(name, err);
    *arr = a;
    a[(*n)++] = id;
    return QK_OK;
}

static int push_ids(int32_t **arr, uint32_t *n, const cJSON *ids, const char *name, qk_err *err)
{
    for (const cJSON *e = ids->child; e; e = e->next) {
        int rc = push_id(arr, n, e, name, err);
        if (rc)
            return rc;
    }
    return QK_OK;
}

static int parse_template(hf_tokenizer *t, const cJSON *j, const char *name, qk_err *err)
{
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    bool after = false;
    for (const cJSON *e = cJSON_IsArray(single) ? single->child : NULL; e; e = e->next) {
        if (cJSON_GetObjectItemCaseSensitive(e, "Sequence")) {
            after = true;
            continue;
        }
        const char *key = json_str(cJSON_GetObjectItemCaseSensitive(e, "SpecialToken"), "id");
        const cJSON *sp = key ? cJSON_GetObjectItemCaseSensitive(specials, key) : NULL;
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(sp, "ids");
        if (!cJSON_IsArray(ids))
            return qk_err_set(err, QK_EFORMAT,
                              "%s: post_processor template names special token '%s' with no ids",
                              name, key ? key : "?");
        int rc = after ? push_ids(&t->post_suffix, &t->n_post_suffix, ids, name, err)
                       : push_ids(&t->post_prefix, &t->n_post_prefix, ids, name, err);
        if (rc)
            return rc;
    }
    return QK_OK;
}

/* RobertaProcessing / BertProcessing: {"cls": ["<s>", 0], "sep": ["</s>", 2]} */
static int parse_cls_sep(hf_tokenizer *t, const cJSON *j, const char *name, qk_err *err)
{
    const cJSON *cls_id = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "cls"), 1);
    const cJSON *sep_id = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "sep"), 1);
    if (!cls_id || !sep_id)
        return qk_err_set(err, QK_EFORMAT, "%s: post_processor needs \"cls\" and \"sep\"", name);
    int rc = push_id(&t->post_prefix, &t->n_post_prefix, cls_id, name, err);
    return rc ? rc : push_id(&t->post_suffix, &t->n_post_suffix, sep_id, name, err);
}

static int parse_post(hf_tokenizer *t, const cJSON *j, int depth, const char *name, qk_err *err)
{
    const char *type = json_str(j, "type");
    if (!type || depth > 8)
        return QK_OK;
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "processors");
        for (const cJSON *e = cJSON_IsArray(list) ? list->child : NULL; e; e = e->next) {
            int rc = parse_post(t, e, depth + 1, name, err);
            if (rc)
                return rc;
        }
        return QK_OK;
    }
    if (!strcmp(type, "TemplateProcessing"))
        return parse_template(t, j, name, err);
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing"))
        return parse_cls_sep(t, j, name, err);
    return QK_OK; /* ByteLevel and others add no tokens */
}

/* ---------------------------------------------------------------- tokenizer.json */

static int parse_model(hf_tokenizer *t, const cJSON *model, const char *name, qk_err *err)
{
    const char *type = json_str(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    /* Files written before tokenizers 0.13 omit the type; a BPE model is the one with merges. */
    copy_str(t->model_type, sizeof t->model_type, type ? type : (merges ? "BPE" : ""));
    t->byte_fallback = json_bool(model, "byte_fallback", false);
    t->ignore_merges = json_bool(model, "ignore_merges", false);
    if (strcmp(t->model_type, "BPE") != 0)
        return QK_OK; /* other models are reported by the vocabulary builder */
    if (!cJSON_IsObject(vocab))
        return qk_err_set(err, QK_EFORMAT, "%s: model has no \"vocab\" object", name);
    if (merges && !cJSON_IsArray(merges))
        return qk_err_set(err, QK_EFORMAT, "%s: model \"merges\" is not an array", name);
    int rc = parse_vocab_object(t, vocab, name, err);
    if (!rc && merges)
        rc = parse_merges_array(t, merges, name, err);
    return rc;
}

static int parse_json_into(hf_tokenizer *t, const char *json, size_t len, const char *name,
                           qk_err *err)
{
    cJSON *root;
    int rc = json_parse(json, len, name, &root, err);
    if (rc)
        return rc;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (!cJSON_IsObject(model)) {
        rc = qk_err_set(err, QK_EFORMAT, "%s: no \"model\" object", name);
        goto done;
    }
    t->source = HF_SRC_TOKENIZER_JSON;
    t->normalizer_present = norm && !cJSON_IsNull(norm);
    copy_str(t->decoder_type, sizeof t->decoder_type,
             json_str(cJSON_GetObjectItemCaseSensitive(root, "decoder"), "type"));
    rc = parse_model(t, model, name, err);
    if (!rc && cJSON_IsArray(added))
        rc = parse_added_array(t, added, name, err);
    if (!rc)
        rc = parse_pre(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), 0, name, err);
    if (!rc)
        rc = parse_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), 0, name, err);
done:
    cJSON_Delete(root);
    return rc;
}

/* ---------------------------------------------------------------- the other files */

static int load_text(const char *dir, const char *file, char **text, size_t *len, char **path,
                     qk_err *err)
{
    *text = NULL;
    *path = path_join(dir, file);
    if (!*path)
        return oom(file, err);
    return qk_file_read(*path, QK_FILE_NO_LIMIT, text, len, err);
}

static int load_tokenizer_json(hf_tokenizer *t, qk_err *err)
{
    char *text, *path;
    size_t len;
    int rc = load_text(t->dir, "tokenizer.json", &text, &len, &path, err);
    if (!rc)
        rc = parse_json_into(t, text, len, path, err);
    free(text);
    free(path);
    return rc;
}

static int load_slow_vocab(hf_tokenizer *t, qk_err *err)
{
    cJSON *vocab;
    char *text = NULL, *path = NULL;
    size_t len;
    int rc = json_file(t->dir, "vocab.json", &vocab, err);
    if (rc)
        return rc;
    t->source = HF_SRC_VOCAB_JSON;
    copy_str(t->model_type, sizeof t->model_type, "BPE");
    char *vpath = path_join(t->dir, "vocab.json");
    rc = vpath ? parse_vocab_object(t, vocab, vpath, err) : oom("vocab.json", err);
    free(vpath);
    cJSON_Delete(vocab);
    if (!rc && !file_exists(t->dir, "merges.txt"))
        rc = qk_err_set(err, QK_EFORMAT, "%s: vocab.json without merges.txt", t->dir);
    if (!rc)
        rc = load_text(t->dir, "merges.txt", &text, &len, &path, err);
    if (!rc)
        rc = parse_merges_txt(t, text, len, path, err);
    free(text);
    free(path);
    return rc;
}

static int load_added_tokens_json(hf_tokenizer *t, qk_err *err)
{
    cJSON *added;
    int rc = json_file(t->dir, "added_tokens.json", &added, err);
    if (rc)
        return rc;
    rc = parse_added_object(&t->added_file, &t->n_added_file, added, false, "added_tokens.json",
                            err);
    cJSON_Delete(added);
    return rc;
}

static int parse_chat_template(hf_tokenizer *t, const cJSON *ct, qk_err *err)
{
    const char *s = cJSON_IsString(ct) ? ct->valuestring : NULL;
    /* A list of {"name", "template"}: the one named "default" is the chat template. */
    for (const cJSON *e = cJSON_IsArray(ct) ? ct->child : NULL; e && !s; e = e->next) {
        const char *n = json_str(e, "name");
        if (n && !strcmp(n, "default"))
            s = json_str(e, "template");
    }
    if (s && !(t->chat_template = dup_s(s)))
        return oom("tokenizer_config.json", err);
    return QK_OK;
}

static int parse_extra_special(hf_tokenizer *t, const cJSON *arr, qk_err *err)
{
    int n = cJSON_GetArraySize(arr);
    if (!cJSON_IsArray(arr) || n <= 0)
        return QK_OK;
    t->extra_special = calloc((size_t)n, sizeof *t->extra_special);
    if (!t->extra_special)
        return oom("tokenizer_config.json", err);
    for (const cJSON *e = arr->child; e; e = e->next) {
        const char *c = json_token_content(e);
        if (!c)
            continue;
        if (!(t->extra_special[t->n_extra_special] = dup_s(c)))
            return oom("tokenizer_config.json", err);
        t->n_extra_special++;
    }
    return QK_OK;
}

static int load_tokenizer_config(hf_tokenizer *t, qk_err *err)
{
    cJSON *cfg;
    int rc = json_file(t->dir, "tokenizer_config.json", &cfg, err);
    if (rc)
        return rc;
    for (int k = 0; k < HF_N_SPECIAL && !rc; k++) {
        char key[32];
        snprintf(key, sizeof key, "add_%s_token", SPECIAL_NAMES[k]);
        const cJSON *add = cJSON_GetObjectItemCaseSensitive(cfg, key);
        if (cJSON_IsBool(add))
            t->add_special[k] = cJSON_IsTrue(add) ? 1 : 0;
        snprintf(key, sizeof key, "%s_token", SPECIAL_NAMES[k]);
        const char *c = json_token_content(cJSON_GetObjectItemCaseSensitive(cfg, key));
        if (c && !(t->special[k] = dup_s(c)))
            rc = oom("tokenizer_config.json", err);
    }
    const char *cls = json_str(cfg, "tokenizer_class");
    if (!rc && cls && !(t->tokenizer_class = dup_s(cls)))
        rc = oom("tokenizer_config.json", err);
    if (!rc)
        rc = parse_chat_template(t, cJSON_GetObjectItemCaseSensitive(cfg, "chat_template"), err);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder");
    if (!rc && cJSON_IsObject(dec))
        rc = parse_added_object(&t->config_added, &t->n_config_added, dec, true,
                                "tokenizer_config.json", err);
    if (!rc)
        rc = parse_extra_special(
            t, cJSON_GetObjectItemCaseSensitive(cfg, "additional_special_tokens"), err);
    cJSON_Delete(cfg);
    return rc;
}

static int load_chat_template_file(hf_tokenizer *t, qk_err *err)
{
    char *text, *path;
    size_t len;
    int rc = load_text(t->dir, "chat_template.jinja", &text, &len, &path, err);
    if (!rc)
        t->chat_template = text;
    else
        free(text);
    free(path);
    return rc;
}

static int load_config(hf_tokenizer *t, qk_err *err)
{
    cJSON *cfg;
    int rc = json_file(t->dir, "config.json", &cfg, err);
    if (rc)
        return rc;
    int64_t v;
    /* multimodal configs (Llama 4) keep the text model's vocab_size in text_config, which the
     * converter reads as if it were at the top level */
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(cfg, "text_config");
    if (json_int(cJSON_GetObjectItemCaseSensitive(cfg, "vocab_size"), 1, HF_MAX_TOKEN_ID + 1, &v) ||
        (cJSON_IsObject(text) &&
         json_int(cJSON_GetObjectItemCaseSensitive(text, "vocab_size"), 1, HF_MAX_TOKEN_ID + 1, &v)))
        t->vocab_size = v;
    /* Only plain integers count: Llama 3.1 lists several eos ids, which the converter skips. */
    for (int k = 0; k < HF_N_SPECIAL; k++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token_id", SPECIAL_NAMES[k]);
        if (json_int(cJSON_GetObjectItemCaseSensitive(cfg, key), 0, HF_MAX_TOKEN_ID, &v))
            t->special_id[k] = v;
    }
    cJSON_Delete(cfg);
    return QK_OK;
}

static hf_tokenizer *tok_new(const char *dir)
{
    hf_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    if (!(t->dir = dup_s(dir))) {
        free(t);
        return NULL;
    }
    for (int k = 0; k < HF_N_SPECIAL; k++) {
        t->add_special[k] = -1;
        t->special_id[k] = -1;
    }
    return t;
}

int hf_tokenizer_parse_json(const char *json, size_t len, const char *name, hf_tokenizer **out,
                            qk_err *err)
{
    *out = NULL;
    hf_tokenizer *t = tok_new(".");
    if (!t)
        return oom(name, err);
    int rc = parse_json_into(t, json, len, name, err);
    if (rc) {
        hf_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return QK_OK;
}

int hf_tokenizer_load(const char *dir, hf_tokenizer **out, qk_err *err)
{
    *out = NULL;
    hf_tokenizer *t = tok_new(dir);
    if (!t)
        return oom(dir, err);
    int rc = QK_OK;
    t->has_tokenizer_model = file_exists(dir, "tokenizer.model");
    if (file_exists(dir, "tokenizer.json"))
        rc = load_tokenizer_json(t, err);
    else if (file_exists(dir, "vocab.json"))
        rc = load_slow_vocab(t, err);
    else if (!t->has_tokenizer_model)
        rc = qk_err_set(err, QK_EFORMAT, "%s: no tokenizer.json, vocab.json or tokenizer.model",
                        dir);
    if (!rc && file_exists(dir, "added_tokens.json"))
        rc = load_added_tokens_json(t, err);
    if (!rc && file_exists(dir, "tokenizer_config.json"))
        rc = load_tokenizer_config(t, err);
    if (!rc && !t->chat_template && file_exists(dir, "chat_template.jinja"))
        rc = load_chat_template_file(t, err);
    if (!rc && file_exists(dir, "config.json"))
        rc = load_config(t, err);
    if (rc) {
        hf_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return QK_OK;
}

static void free_added(hf_added_token *a, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        free(a[i].content);
    free(a);
}

void hf_tokenizer_free(hf_tokenizer *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->n_vocab; i++)
        free(t->vocab[i].text);
    free(t->vocab);
    for (uint32_t i = 0; i < t->n_merges; i++)
        free(t->merges[i]);
    free(t->merges);
    free_added(t->added, t->n_added);
    free_added(t->added_file, t->n_added_file);
    free_added(t->config_added, t->n_config_added);
    for (uint32_t i = 0; i < t->n_pre; i++)
        free(t->pre[i].pattern);
    free(t->pre);
    free(t->post_prefix);
    free(t->post_suffix);
    for (int k = 0; k < HF_N_SPECIAL; k++)
        free(t->special[k]);
    for (uint32_t i = 0; i < t->n_extra_special; i++)
        free(t->extra_special[i]);
    free(t->extra_special);
    free(t->chat_template);
    free(t->tokenizer_class);
    free(t->dir);
    free(t);
}
