/* cmd_inspect.c — `qkit inspect PATH [--json] [--tensors]` for .gguf (split parts too),
 * .safetensors, a shard index, or a HuggingFace folder. Both views are built as one cJSON
 * document, so the text and JSON outputs cannot disagree. */
#include <cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../convert/arch.h"
#include "../formats/gguf.h"
#include "../formats/file.h"
#include "../formats/safetensors.h"
#include "../quant/types.h"
#include "cli.h"

#define ARRAY_PREVIEW 8

static const char USAGE[] = "usage: qkit inspect PATH [--json] [--tensors] [-q]";

static cJSON *gguf_scalar(enum gguf_vtype t, const void *p)
{
    switch (t) {
    case GGUF_TYPE_U8: return cJSON_CreateNumber(*(const uint8_t *)p);
    case GGUF_TYPE_I8: return cJSON_CreateNumber(*(const int8_t *)p);
    case GGUF_TYPE_U16: return cJSON_CreateNumber(*(const uint16_t *)p);
    case GGUF_TYPE_I16: return cJSON_CreateNumber(*(const int16_t *)p);
    case GGUF_TYPE_U32: return cJSON_CreateNumber(*(const uint32_t *)p);
    case GGUF_TYPE_I32: return cJSON_CreateNumber(*(const int32_t *)p);
    case GGUF_TYPE_F32: return cJSON_CreateNumber(*(const float *)p);
    case GGUF_TYPE_BOOL: return cJSON_CreateBool(*(const bool *)p);
    case GGUF_TYPE_U64: return cJSON_CreateNumber((double)*(const uint64_t *)p);
    case GGUF_TYPE_I64: return cJSON_CreateNumber((double)*(const int64_t *)p);
    case GGUF_TYPE_F64: return cJSON_CreateNumber(*(const double *)p);
    case GGUF_TYPE_STR: return cJSON_CreateString(((const gguf_str *)p)->ptr);
    default: return cJSON_CreateNull();
    }
}

static size_t elem_size(enum gguf_vtype t)
{
    static const size_t sz[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, sizeof(bool), sizeof(gguf_str),
                                               sizeof(gguf_value), 8, 8, 8};
    return (unsigned)t < GGUF_TYPE_COUNT ? sz[t] : 0;
}

/* Arrays longer than the preview become {type, len, first: [...]}. */
static cJSON *gguf_to_json(const gguf_value *v)
{
    if (v->type != GGUF_TYPE_ARR)
        return gguf_scalar(v->type, &v->u8);
    const int summarize = v->arr.n > ARRAY_PREVIEW;
    const uint64_t shown = summarize ? ARRAY_PREVIEW : v->arr.n;
    cJSON *items = cJSON_CreateArray();
    const char *p = v->arr.data;
    for (uint64_t i = 0; i < shown; i++, p += elem_size(v->arr.type))
        cJSON_AddItemToArray(items, v->arr.type == GGUF_TYPE_ARR ? gguf_to_json((const gguf_value *)p)
                                                                 : gguf_scalar(v->arr.type, p));
    if (!summarize)
        return items;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", gguf_type_name(v->arr.type));
    cJSON_AddNumberToObject(o, "len", (double)v->arr.n);
    cJSON_AddItemToObject(o, "first", items);
    return o;
}

static void add_totals(cJSON *doc, uint64_t n_tensors, uint64_t params, uint64_t bytes)
{
    cJSON *t = cJSON_AddObjectToObject(doc, "totals");
    cJSON_AddNumberToObject(t, "tensors", (double)n_tensors);
    cJSON_AddNumberToObject(t, "parameters", (double)params);
    cJSON_AddNumberToObject(t, "bytes", (double)bytes);
    cJSON_AddNumberToObject(t, "bits_per_weight", params ? 8.0 * (double)bytes / (double)params : 0.0);
}

static cJSON *tensor_json(const char *name, const char *type, const int64_t *shape, int n_dims,
                          uint64_t bytes, uint64_t offset, const char *file)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "type", type);
    cJSON *s = cJSON_AddArrayToObject(o, "shape");
    for (int d = 0; d < n_dims; d++)
        cJSON_AddItemToArray(s, cJSON_CreateNumber((double)shape[d]));
    cJSON_AddNumberToObject(o, "bytes", (double)bytes);
    cJSON_AddNumberToObject(o, "offset", (double)offset);
    if (file)
        cJSON_AddStringToObject(o, "file", file);
    return o;
}

static int inspect_gguf(const char *path, cJSON *doc, int with_tensors, qk_err *err)
{
    gguf_ctx *g;
    int rc = gguf_open(&g, path, err);
    if (rc)
        return rc;
    cJSON_AddStringToObject(doc, "format", "gguf");
    cJSON_AddNumberToObject(doc, "version", gguf_version(g));
    cJSON_AddNumberToObject(doc, "alignment", gguf_alignment(g));
    cJSON *parts = cJSON_AddArrayToObject(doc, "parts");
    for (uint32_t i = 0; i < gguf_n_parts(g); i++)
        cJSON_AddItemToArray(parts, cJSON_CreateString(gguf_part_path(g, i)));
    cJSON *meta = cJSON_AddObjectToObject(doc, "metadata");
    for (uint64_t i = 0; i < gguf_n_kv(g); i++)
        cJSON_AddItemToObject(meta, gguf_kv_key(g, i), gguf_to_json(gguf_kv_value(g, i)));
    cJSON *tensors = with_tensors ? cJSON_AddArrayToObject(doc, "tensors") : NULL;
    uint64_t params = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor_info *t = gguf_tensor(g, i);
        params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        if (tensors)
            cJSON_AddItemToArray(tensors, tensor_json(t->name, q_type_info(t->type)->name, t->ne,
                                                      (int)t->n_dims, t->nbytes, t->offset,
                                                      gguf_n_parts(g) > 1 ? gguf_part_path(g, t->part) : NULL));
    }
    add_totals(doc, gguf_n_tensors(g), params, gguf_data_bytes(g));
    gguf_close(g);
    return QK_OK;
}

/* What the converter's architecture description makes of the config: the GGUF architecture,
 * experts, FP8 blocks, the number of GGUF tensors; or why it cannot convert it. */
static void add_description(cJSON *sum, const cJSON *cfg, const char *path)
{
    ca_config c;
    qk_err err = {{0}};
    if (ca_config_from_json(cfg, path, &c, &err)) {
        cJSON_AddStringToObject(sum, "convertible", err.msg);
        return;
    }
    cJSON_AddStringToObject(sum, "gguf_architecture", c.gguf_arch);
    if (c.hp.n_expert) {
        int64_t moe = 0;
        for (int64_t l = 0; l < c.hp.n_layer; l++)
            moe += c.hp.layer_moe[l];
        cJSON_AddNumberToObject(sum, "experts", (double)c.hp.n_expert);
        cJSON_AddNumberToObject(sum, "experts_used", (double)c.hp.n_expert_used);
        cJSON_AddNumberToObject(sum, "expert_feed_forward_length", (double)c.hp.n_ff_exp);
        cJSON_AddNumberToObject(sum, "moe_layers", (double)moe);
        cJSON_AddBoolToObject(sum, "expert_weights_norm", c.hp.expert_weights_norm);
    }
    if (c.fp8) {
        cJSON *b = cJSON_AddArrayToObject(sum, "fp8_weight_block_size");
        for (int i = 0; i < 2 && c.fp8_block[0]; i++)
            cJSON_AddItemToArray(b, cJSON_CreateNumber((double)c.fp8_block[i]));
    }
    ca_output o;
    size_t n = 0;
    while (ca_output_at(&c, n, &o))
        n++;
    cJSON_AddNumberToObject(sum, "gguf_tensors", (double)n);
}

/* A summary of config.json's architecture keys, when the folder has one. */
static void add_config(cJSON *doc, const char *dir)
{
    char p[4096], *text;
    size_t n;
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (qk_file_read(p, QK_FILE_NO_LIMIT, &text, &n, NULL))
        return;
    cJSON *cfg = cJSON_ParseWithLength(text, n);
    free(text);
    if (!cfg)
        return;
    static const char *const keys[] = {"architectures", "model_type", "hidden_size", "num_hidden_layers",
                                       "num_attention_heads", "num_key_value_heads", "head_dim",
                                       "intermediate_size", "vocab_size", "max_position_embeddings",
                                       "rope_theta", "tie_word_embeddings", "torch_dtype", "dtype"};
    cJSON *sum = cJSON_AddObjectToObject(doc, "config");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, keys[i]);
        if (v)
            cJSON_AddItemToObject(sum, keys[i], cJSON_Duplicate(v, 1));
    }
    add_description(sum, cfg, p);
    cJSON_Delete(cfg);
}

static int inspect_safetensors(const char *path, cJSON *doc, int with_tensors, qk_err *err)
{
    st_model *m;
    int rc = st_model_open(&m, path, err);
    if (rc)
        return rc;
    struct stat st;
    cJSON_AddStringToObject(doc, "format", "safetensors");
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        add_config(doc, path);
    cJSON *files = cJSON_AddArrayToObject(doc, "parts");
    for (size_t i = 0; i < st_model_n_files(m); i++)
        cJSON_AddItemToArray(files, cJSON_CreateString(st_model_file_path(m, i)));
    cJSON *meta = cJSON_AddObjectToObject(doc, "metadata");
    for (size_t i = 0; i < st_model_n_meta(m); i++)
        cJSON_AddStringToObject(meta, st_model_meta_key(m, i), st_model_meta_value(m, i));
    cJSON *tensors = with_tensors ? cJSON_AddArrayToObject(doc, "tensors") : NULL;
    uint64_t params = 0;
    for (size_t i = 0; i < st_model_n_tensors(m); i++) {
        const st_tensor *t = st_model_tensor(m, i);
        size_t len = strlen(t->name);
        if (len < 10 || strcmp(t->name + len - 10, "_scale_inv")) /* FP8 block scales are not weights */
            params += t->n_elements;
        if (tensors)
            cJSON_AddItemToArray(tensors, tensor_json(t->name, st_dtype_name(t->dtype), t->shape, t->n_dims,
                                                      t->nbytes, t->offset,
                                                      st_model_n_files(m) > 1 ? t->path : NULL));
    }
    add_totals(doc, st_model_n_tensors(m), params, st_model_data_bytes(m));
    st_model_close(m);
    return QK_OK;
}

static void print_value(const cJSON *v)
{
    if (cJSON_IsObject(v) && cJSON_GetObjectItem(v, "len")) {
        char *first = cJSON_PrintUnformatted(cJSON_GetObjectItem(v, "first"));
        printf("[%s × %.0f] %.*s…", cJSON_GetObjectItem(v, "type")->valuestring,
               cJSON_GetObjectItem(v, "len")->valuedouble, first ? (int)strlen(first) - 1 : 0, first ? first : "");
        free(first);
        return;
    }
    char *s = cJSON_PrintUnformatted(v);
    printf("%.200s%s", s ? s : "?", s && strlen(s) > 200 ? "…" : "");
    free(s);
}

static void print_text(const cJSON *doc)
{
    const cJSON *parts = cJSON_GetObjectItem(doc, "parts"), *it;
    printf("%s", cJSON_GetObjectItem(doc, "format")->valuestring);
    if (cJSON_GetObjectItem(doc, "version"))
        printf(" v%.0f, alignment %.0f", cJSON_GetObjectItem(doc, "version")->valuedouble,
               cJSON_GetObjectItem(doc, "alignment")->valuedouble);
    printf(", %d file(s)\n", cJSON_GetArraySize(parts));
    const char *sections[] = {"config", "metadata"};
    for (int s = 0; s < 2; s++) {
        const cJSON *sec = cJSON_GetObjectItem(doc, sections[s]);
        if (!sec || !sec->child)
            continue;
        printf("\n%s:\n", sections[s]);
        cJSON_ArrayForEach(it, sec) {
            printf("  %-44s ", it->string);
            print_value(it);
            putchar('\n');
        }
    }
    const cJSON *tensors = cJSON_GetObjectItem(doc, "tensors");
    if (tensors) {
        printf("\n%-48s %-7s %-22s %12s %12s\n", "tensor", "type", "shape", "bytes", "offset");
        cJSON_ArrayForEach(it, tensors) {
            char shape[64] = "", *p = shape;
            const cJSON *d;
            cJSON_ArrayForEach(d, cJSON_GetObjectItem(it, "shape"))
                p += snprintf(p, sizeof shape - (size_t)(p - shape), "%s%.0f", p == shape ? "" : " x ", d->valuedouble);
            printf("%-48s %-7s %-22s %12.0f %12.0f\n", cJSON_GetObjectItem(it, "name")->valuestring,
                   cJSON_GetObjectItem(it, "type")->valuestring, shape,
                   cJSON_GetObjectItem(it, "bytes")->valuedouble, cJSON_GetObjectItem(it, "offset")->valuedouble);
        }
    }
    const cJSON *t = cJSON_GetObjectItem(doc, "totals");
    printf("\n%.0f tensors, %.0f parameters, %.0f bytes (%.2f MiB), %.3f bits per weight\n",
           cJSON_GetObjectItem(t, "tensors")->valuedouble, cJSON_GetObjectItem(t, "parameters")->valuedouble,
           cJSON_GetObjectItem(t, "bytes")->valuedouble, cJSON_GetObjectItem(t, "bytes")->valuedouble / 1048576.0,
           cJSON_GetObjectItem(t, "bits_per_weight")->valuedouble);
}

static int is_gguf(const char *path)
{
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".gguf"))
        return 1;
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    int yes = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    if (f)
        fclose(f);
    return yes;
}

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0, tensors = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--tensors"))
            tensors = 1;
        else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet"))
            ; /* nothing to silence: the listing is the result */
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts(USAGE);
            return CLI_OK;
        } else if (argv[i][0] == '-' || path)
            return cli_usage_error("inspect", "unexpected argument '%s'\n%s", argv[i], USAGE);
        else
            path = argv[i];
    }
    if (!path)
        return cli_usage_error("inspect", "%s", USAGE);
    cJSON *doc = cJSON_CreateObject();
    if (!doc)
        return cli_fail(QK_ENOMEM, NULL);
    cJSON_AddStringToObject(doc, "path", path);
    qk_err err = {{0}};
    int rc = is_gguf(path) ? inspect_gguf(path, doc, tensors, &err)
                           : inspect_safetensors(path, doc, tensors, &err);
    if (!rc && json)
        return cli_json_print(doc, 1);
    if (!rc)
        print_text(doc);
    cJSON_Delete(doc);
    return rc ? cli_fail(rc, &err) : CLI_OK;
}
