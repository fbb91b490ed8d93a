/* test_convert.c — qkit convert against llama.cpp's converter (golden stories3M, the published
 * stories260K GGUF), small synthetic checkpoints of every supported architecture checked against
 * values computed here, the general.* heuristics, bad inputs, and qkit tokenize against the
 * golden token ids (through the CLI named by $QKIT). */
#include "tu.h"

#include <cJSON.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../calib/tokenizer.h"
#include "../calib/tokenizer_gguf.h"
#include "../convert/arch.h"
#include "../convert/convert.h"
#include "../formats/gguf.h"
#include "../formats/safetensors.h"
#include "../quant/buf.h"
#include "../quant/fp16.h"
#include "../quant/quant.h"
#include "../quant/types.h"

/* ================================================================ helpers */

static void sha256_hex(const void *data, size_t n, char hex[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    assert_int_equal(EVP_Digest(data, n, md, &len, EVP_sha256(), NULL), 1);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void write_text(const char *path, const char *text) { tu_write(path, text, strlen(text)); }

static gguf_ctx *open_gguf(const char *path)
{
    gguf_ctx *g = NULL;
    qk_err err = {{0}};
    if (gguf_open(&g, path, &err))
        fail_msg("%s", err.msg);
    return g;
}

static void convert_ok(const char *dir, const char *out, const char *outtype)
{
    cv_options o;
    cv_options_init(&o);
    o.outtype = outtype;
    qk_err err = {{0}};
    if (cv_convert(dir, out, &o, NULL, &err))
        fail_msg("%s", err.msg);
}

static uint32_t get_u32(const gguf_ctx *g, const char *key)
{
    uint32_t v = 0;
    if (gguf_get_u32(g, key, &v))
        fail_msg("key %s missing or not u32", key);
    return v;
}

static const char *get_str(const gguf_ctx *g, const char *key)
{
    const char *s = NULL;
    if (gguf_get_str(g, key, &s))
        fail_msg("key %s missing or not a string", key);
    return s;
}

static float get_f32(const gguf_ctx *g, const char *key)
{
    float v = 0;
    if (gguf_get_f32(g, key, &v))
        fail_msg("key %s missing or not f32", key);
    return v;
}

/* ================================================================ golden: Python's json.dumps */

/* The golden files give arrays as sha256(json.dumps(list)): ", " separators, ASCII escapes,
 * floats in repr() form. */
typedef qk_buf sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) { assert_int_equal(qk_buf_append(b, s, n), QK_OK); }

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)n);
}

static void py_json_string(sbuf *b, const char *s, size_t n)
{
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        uint32_t cp = c;
        size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (len > 1) {
            cp = c & (0x7F >> len);
            for (size_t k = 1; k < len; k++)
                cp = cp << 6 | ((unsigned char)s[i + k] & 0x3F);
        }
        i += len;
        const char *esc = cp == '"' ? "\\\"" : cp == '\\' ? "\\\\" : cp == '\n' ? "\\n" : cp == '\r' ? "\\r"
                        : cp == '\t' ? "\\t" : cp == '\b' ? "\\b" : cp == '\f' ? "\\f" : NULL;
        if (esc)
            sb_put(b, esc, strlen(esc));
        else if (cp >= 0x20 && cp < 0x7F)
            sb_put(b, (const char *)&c, 1);
        else if (cp > 0xFFFF)
            sb_printf(b, "\\u%04x\\u%04x", 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF));
        else
            sb_printf(b, "\\u%04x", cp);
    }
    sb_put(b, "\"", 1);
}

/* repr(float): the shortest digits that round-trip, fixed notation for exponents -4..15. */
static void py_float(sbuf *b, double v)
{
    if (v == 0) {
        sb_put(b, signbit(v) ? "-0.0" : "0.0", signbit(v) ? 4 : 3);
        return;
    }
    char e[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, v);
        if (strtod(e, NULL) == v)
            break;
    }
    char digits[24];
    size_t nd = 0;
    const char *p = e;
    bool neg = *p == '-';
    p += neg;
    for (; *p != 'e'; p++)
        if (*p != '.')
            digits[nd++] = *p;
    digits[nd] = '\0';
    int exp = atoi(p + 1);
    char out[64];
    size_t k = 0;
    if (neg)
        out[k++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            k += (size_t)sprintf(out + k, "0.");
            for (int z = 0; z < -exp - 1; z++)
                out[k++] = '0';
            k += (size_t)sprintf(out + k, "%s", digits);
        } else {
            for (int d = 0; d <= exp; d++)
                out[k++] = d < (int)nd ? digits[d] : '0';
            out[k++] = '.';
            if ((int)nd > exp + 1)
                k += (size_t)sprintf(out + k, "%s", digits + exp + 1);
            else
                out[k++] = '0';
        }
    } else {
        out[k++] = digits[0];
        if (nd > 1)
            k += (size_t)sprintf(out + k, ".%s", digits + 1);
        k += (size_t)sprintf(out + k, "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
    }
    sb_put(b, out, k);
}

static void py_json_array_sha(const gguf_value *v, char hex[65])
{
    sbuf b = {0};
    sb_put(&b, "[", 1);
    for (uint64_t i = 0; i < v->arr.n; i++) {
        if (i)
            sb_put(&b, ", ", 2);
        if (v->arr.type == GGUF_TYPE_STR) {
            const gguf_str *s = (const gguf_str *)v->arr.data + i;
            py_json_string(&b, s->ptr, s->len);
        } else if (v->arr.type == GGUF_TYPE_F32) {
            py_float(&b, ((const float *)v->arr.data)[i]);
        } else if (v->arr.type == GGUF_TYPE_I32) {
            sb_printf(&b, "%d", ((const int32_t *)v->arr.data)[i]);
        } else {
            fail_msg("array type %d not handled", (int)v->arr.type);
        }
    }
    sb_put(&b, "]", 1);
    sha256_hex(b.p, b.n, hex);
    free(b.p);
}

static void test_py_float_repr(void **state)
{
    (void)state;
    /* repr() of these doubles, as Python prints them */
    static const struct {
        double v;
        const char *repr;
    } cases[] = {{-1000.0, "-1000.0"}, {0.5, "0.5"}, {1e-05, "1e-05"}, {1e16, "1e+16"},
                 {123.25, "123.25"},   {-2.5999999046325684, "-2.5999999046325684"},
                 {0.0001, "0.0001"},   {1.5e-07, "1.5e-07"}, {1e15, "1000000000000000.0"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sbuf b = {0};
        py_float(&b, cases[i].v);
        assert_string_equal(b.p, cases[i].repr);
        free(b.p);
    }
}

/* ================================================================ golden: comparisons */

static void check_tensors_golden(const gguf_ctx *g, const cJSON *tensors)
{
    assert_int_equal(gguf_n_tensors(g), cJSON_GetArraySize(tensors));
    const cJSON *t;
    cJSON_ArrayForEach(t, tensors)
    {
        const gguf_tensor_info *ti = gguf_find_tensor(g, t->string);
        if (!ti)
            fail_msg("tensor %s missing", t->string);
        assert_string_equal(q_type_info(ti->type)->name, cJSON_GetObjectItem(t, "type")->valuestring);
        const cJSON *shape = cJSON_GetObjectItem(t, "shape");
        assert_int_equal(ti->n_dims, cJSON_GetArraySize(shape));
        for (uint32_t d = 0; d < ti->n_dims; d++)
            assert_int_equal(ti->ne[d], (int64_t)cJSON_GetArrayItem(shape, (int)d)->valuedouble);
        assert_int_equal(ti->nbytes, (uint64_t)cJSON_GetObjectItem(t, "bytes")->valuedouble);
        char hex[65];
        sha256_hex(ti->data, ti->nbytes, hex);
        if (strcmp(hex, cJSON_GetObjectItem(t, "sha256")->valuestring))
            fail_msg("tensor %s: data differs from llama.cpp's", t->string);
    }
}

static void check_kv_value(const gguf_value *v, const cJSON *want, const char *key)
{
    char hex[65];
    switch (v->type) {
    case GGUF_TYPE_STR: assert_string_equal(v->str.ptr, want->valuestring); break;
    case GGUF_TYPE_U32: assert_true(cJSON_IsNumber(want) && v->u32 == want->valuedouble); break;
    case GGUF_TYPE_F32: assert_true(cJSON_IsNumber(want) && (double)v->f32 == want->valuedouble); break;
    case GGUF_TYPE_BOOL: assert_int_equal(v->b, cJSON_IsTrue(want)); break;
    case GGUF_TYPE_ARR:
        assert_int_equal(v->arr.n, (uint64_t)cJSON_GetObjectItem(want, "len")->valuedouble);
        py_json_array_sha(v, hex);
        if (strcmp(hex, cJSON_GetObjectItem(want, "sha256")->valuestring))
            fail_msg("key %s: array differs from llama.cpp's", key);
        break;
    default: fail_msg("key %s: unexpected type %s", key, gguf_type_name(v->type));
    }
}

/* Every key llama.cpp wrote, with its value, and no other key. */
static void check_kv_golden(const gguf_ctx *g, const cJSON *kv)
{
    assert_int_equal(gguf_n_kv(g), cJSON_GetArraySize(kv));
    const cJSON *e;
    cJSON_ArrayForEach(e, kv)
    {
        int64_t i = gguf_find_key(g, e->string);
        if (i < 0)
            fail_msg("key %s missing", e->string);
        check_kv_value(gguf_kv_value(g, (uint64_t)i), e, e->string);
    }
}

/* models/NAME converted with outtype equals golden/NAME/GOLDEN tensor for tensor (and key for key). */
static void model_matches(const char *name, const char *outtype, const char *golden, bool with_kv)
{
    char rel[128];
    snprintf(rel, sizeof rel, "models/%s", name);
    TU_SHARED(model, rel);
    snprintf(rel, sizeof rel, "golden/%s/%s", name, golden);
    TU_SHARED(gpath, rel);
    cJSON *gold = tu_read_json(gpath);
    const char *out = tu_tmp("golden-check.gguf");
    convert_ok(model, out, outtype);
    gguf_ctx *g = open_gguf(out);
    check_tensors_golden(g, cJSON_GetObjectItem(gold, "tensors"));
    if (with_kv)
        check_kv_golden(g, cJSON_GetObjectItem(gold, "kv"));
    gguf_close(g);
    cJSON_Delete(gold);
    remove(out);
}

static void stories3M_matches(const char *outtype, const char *golden, bool with_kv)
{
    model_matches("stories3M", outtype, golden, with_kv);
}

static void test_stories3M_f32(void **state)
{
    (void)state;
    stories3M_matches("f32", "convert-f32.json", true);
}

static void test_stories3M_f16(void **state)
{
    (void)state;
    stories3M_matches("f16", "convert-f16.json", true);
}

static void test_stories3M_bf16(void **state)
{
    (void)state;
    stories3M_matches("bf16", "convert-bf16.json", true);
}

/* a BF16 checkpoint stays bf16 */
static void test_stories3M_auto_is_bf16(void **state)
{
    (void)state;
    stories3M_matches("auto", "convert-bf16.json", true);
}

/* --outtype MIX == convert --outtype f32, then llama-quantize MIX (no imatrix). */
static void test_stories3M_mixes(void **state)
{
    (void)state;
    /* one of each family; convert/mix.h's own tests cover every mix */
    static const char *const mixes[] = {"Q8_0", "Q6_K", "Q4_K_M", "Q3_K_S", "IQ4_XS"};
    for (size_t i = 0; i < sizeof mixes / sizeof mixes[0]; i++) {
        char golden[64];
        snprintf(golden, sizeof golden, "mix-%s-none.json", mixes[i]);
        stories3M_matches(mixes[i], golden, false);
    }
}

/* The HF folder was made from the published GGUF: converting must undo the permutation exactly. */
static void test_stories260K_matches_published_gguf(void **state)
{
    (void)state;
    TU_SHARED(model, "models/stories260K");
    TU_SHARED(ref_path, "models/stories260K.gguf");
    const char *out = tu_tmp("stories260K.gguf");
    convert_ok(model, out, "f32");
    gguf_ctx *g = open_gguf(out), *ref = open_gguf(ref_path);
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor_info *t = gguf_tensor(g, i), *r = gguf_find_tensor(ref, t->name);
        if (!r)
            fail_msg("tensor %s not in the published file", t->name);
        assert_int_equal(t->type, r->type);
        assert_memory_equal(t->ne, r->ne, sizeof t->ne);
        assert_int_equal(t->nbytes, r->nbytes);
        if (memcmp(t->data, r->data, t->nbytes))
            fail_msg("tensor %s differs from the published file", t->name);
    }
    /* tied embeddings: llama.cpp writes no output.weight (the published file's is a copy) */
    assert_null(gguf_find_tensor(g, "output.weight"));
    const gguf_tensor_info *ro = gguf_find_tensor(ref, "output.weight");
    const gguf_tensor_info *re = gguf_find_tensor(ref, "token_embd.weight");
    assert_memory_equal(ro->data, re->data, re->nbytes);
    assert_int_equal(gguf_n_tensors(g) + 1, gguf_n_tensors(ref));
    static const char *const arrays[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                         "tokenizer.ggml.token_type"};
    for (size_t k = 0; k < 3; k++) {
        char a[65], b[65];
        py_json_array_sha(gguf_kv_value(g, (uint64_t)gguf_find_key(g, arrays[k])), a);
        py_json_array_sha(gguf_kv_value(ref, (uint64_t)gguf_find_key(ref, arrays[k])), b);
        assert_string_equal(a, b);
    }
    assert_string_equal(get_str(g, "general.name"), "stories260K");
    assert_string_equal(get_str(g, "general.size_label"), "260K");
    assert_int_equal(get_u32(g, "llama.attention.key_length"), 8); /* head_dim is in config.json */
    gguf_close(g);
    gguf_close(ref);
}

/* An F32 checkpoint converts to f16 under auto; 1-D tensors stay F32. */
static void test_stories260K_auto_is_f16(void **state)
{
    (void)state;
    TU_SHARED(model, "models/stories260K");
    cv_plan *p;
    qk_err err = {{0}};
    assert_int_equal(cv_plan_create(model, NULL, &p, &err), QK_OK);
    assert_string_equal(cv_plan_outtype(p), "f16");
    assert_int_equal(cv_plan_file_type(p), 1);
    for (size_t i = 0; i < cv_plan_n_tensors(p); i++) {
        const cv_tensor *t = cv_plan_tensor(p, i);
        assert_int_equal(t->type, t->n_dims == 1 ? Q_TYPE_F32 : Q_TYPE_F16);
    }
    cv_plan_free(p);
}

/* ================================================================ synthetic checkpoints */

typedef struct {
    const char *arch;
    int layers, embd, ff, heads, kv, head_dim; /* head_dim 0: derived, not in config.json */
    int tied, qkv_bias, qk_norm;
    st_dtype dtype;
    const char *extra; /* more config.json members, starting with a comma */
    int vocab;         /* 0: TOY_VOCAB (the stories260K tokenizer's) */
} toy;

#define TOY_VOCAB 512

typedef struct {
    char name[96];
    int n_dims;
    int64_t shape[2];
} hf_spec;

static int toy_hd(const toy *t) { return t->head_dim ? t->head_dim : t->embd / t->heads; }
static int toy_vocab(const toy *t) { return t->vocab ? t->vocab : TOY_VOCAB; }

static void spec(hf_spec *s, size_t *n, const char *name, int64_t d0, int64_t d1)
{
    snprintf(s[*n].name, sizeof s[*n].name, "%s", name);
    s[*n].n_dims = d1 ? 2 : 1;
    s[*n].shape[0] = d0;
    s[*n].shape[1] = d1;
    ++*n;
}

static size_t toy_specs(const toy *t, hf_spec *s)
{
    size_t n = 0;
    int hd = toy_hd(t), q = t->heads * hd, kv = t->kv * hd;
    char name[96];
    spec(s, &n, "model.embed_tokens.weight", toy_vocab(t), t->embd);
    spec(s, &n, "model.norm.weight", t->embd, 0);
    if (!t->tied)
        spec(s, &n, "lm_head.weight", toy_vocab(t), t->embd);
    for (int l = 0; l < t->layers; l++) {
#define L(fmt, d0, d1) (snprintf(name, sizeof name, "model.layers.%d." fmt, l), spec(s, &n, name, d0, d1))
        L("input_layernorm.weight", t->embd, 0);
        L("post_attention_layernorm.weight", t->embd, 0);
        L("self_attn.q_proj.weight", q, t->embd);
        L("self_attn.k_proj.weight", kv, t->embd);
        L("self_attn.v_proj.weight", kv, t->embd);
        L("self_attn.o_proj.weight", t->embd, q);
        if (t->qkv_bias) {
            L("self_attn.q_proj.bias", q, 0);
            L("self_attn.k_proj.bias", kv, 0);
            L("self_attn.v_proj.bias", kv, 0);
        }
        if (t->qk_norm) {
            L("self_attn.q_norm.weight", hd, 0);
            L("self_attn.k_norm.weight", hd, 0);
        }
        L("mlp.gate_proj.weight", t->ff, t->embd);
        L("mlp.up_proj.weight", t->ff, t->embd);
        L("mlp.down_proj.weight", t->embd, t->ff);
#undef L
    }
    return n;
}

static void toy_config(const toy *t, const char *dir)
{
    char json[2048], hd[48] = "";
    if (t->head_dim)
        snprintf(hd, sizeof hd, ", \"head_dim\": %d", t->head_dim);
    snprintf(json, sizeof json,
             "{\"architectures\": [\"%s\"], \"hidden_size\": %d, \"intermediate_size\": %d, "
             "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
             "\"vocab_size\": %d, \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-05, "
             "\"tie_word_embeddings\": %s%s%s}",
             t->arch, t->embd, t->ff, t->layers, t->heads, t->kv, toy_vocab(t), t->tied ? "true" : "false", hd,
             t->extra ? t->extra : "");
    write_text((char *)tu_join(dir, "config.json"), json);
}

static void toy_tokenizer(const char *dir)
{
    TU_SHARED(tok, "models/stories260K/tokenizer.model");
    TU_SHARED(cfg, "models/stories260K/tokenizer_config.json");
    tu_copy(tok, (char *)tu_join(dir, "tokenizer.model"));
    tu_copy(cfg, (char *)tu_join(dir, "tokenizer_config.json"));
}

static size_t dtype_size(st_dtype d) { return d == ST_F32 ? 4 : 2; }

/* Deterministic values in dtype; the seed differs per tensor so no two tensors are alike. */
static void *toy_data(const hf_spec *s, st_dtype dtype, uint64_t seed)
{
    int64_t n = s->shape[0] * (s->n_dims == 2 ? s->shape[1] : 1);
    uint8_t *p = malloc((size_t)n * dtype_size(dtype));
    assert_non_null(p);
    uint64_t st = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        float v = tu_randf(&st);
        if (dtype == ST_F32) {
            memcpy(p + 4 * i, &v, 4);
        } else {
            uint16_t h = dtype == ST_F16 ? q_fp32_to_fp16(v) : q_fp32_to_bf16(v);
            memcpy(p + 2 * i, &h, 2);
        }
    }
    return p;
}

typedef struct {
    hf_spec s[128];
    st_tensor_spec st[128];
    void *data[128];
    size_t n;
} toy_tensors;

static void toy_build(const toy *t, toy_tensors *tt)
{
    tt->n = toy_specs(t, tt->s);
    for (size_t i = 0; i < tt->n; i++) {
        tt->st[i] = (st_tensor_spec){.name = tt->s[i].name, .dtype = t->dtype, .n_dims = tt->s[i].n_dims,
                                     .shape = {tt->s[i].shape[0], tt->s[i].shape[1]}};
        tt->data[i] = toy_data(&tt->s[i], t->dtype, i + 1);
    }
}

static void toy_free(toy_tensors *tt)
{
    for (size_t i = 0; i < tt->n; i++)
        free(tt->data[i]);
}

static void write_st(const char *path, const st_tensor_spec *specs, void *const *data, size_t n)
{
    qk_err err = {{0}};
    if (st_write_file(path, specs, (const void *const *)data, n, NULL, NULL, 0, &err))
        fail_msg("%s", err.msg);
}

/* The tokenizer files of a shared folder that exist, copied into dir. */
static void copy_tokenizer(const char *shared_dir, const char *dir)
{
    static const char *const files[] = {"tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                                        "vocab.json", "merges.txt", "added_tokens.json",
                                        "special_tokens_map.json", "chat_template.jinja"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char from[4096];
        snprintf(from, sizeof from, "%s/%s", shared_dir, files[i]);
        if (tu_exists(from))
            tu_copy(from, (char *)tu_join(dir, files[i]));
    }
}

/* A complete folder: config.json, model.safetensors and a tokenizer (the stories260K one when
 * tok_dir is NULL). */
static const char *toy_dir_tok(const toy *t, const char *name, const char *tok_dir)
{
    const char *dir = tu_tmp(name);
    assert_int_equal(mkdir(dir, 0755), 0);
    toy_config(t, dir);
    if (tok_dir)
        copy_tokenizer(tok_dir, dir);
    else
        toy_tokenizer(dir);
    toy_tensors tt;
    toy_build(t, &tt);
    write_st((char *)tu_join(dir, "model.safetensors"), tt.st, tt.data, tt.n);
    toy_free(&tt);
    return dir;
}

static const char *toy_dir(const toy *t, const char *name) { return toy_dir_tok(t, name, NULL); }

/* ---- the expected GGUF bytes, computed here from the checkpoint -------------------------- */

static const struct {
    const char *gguf, *hf;
} NAME_MAP[] = {
    {"token_embd", "model.embed_tokens"}, {"output_norm", "model.norm"}, {"output", "lm_head"},
    {"attn_norm", "input_layernorm"},    {"ffn_norm", "post_attention_layernorm"},
    {"attn_q", "self_attn.q_proj"},      {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},      {"attn_output", "self_attn.o_proj"},
    {"attn_q_norm", "self_attn.q_norm"}, {"attn_k_norm", "self_attn.k_norm"},
    {"ffn_gate", "mlp.gate_proj"},       {"ffn_up", "mlp.up_proj"}, {"ffn_down", "mlp.down_proj"},
};

static void hf_name_of(const char *gguf_name, char *out, size_t size)
{
    int layer = -1, used = 0;
    char base[64], suffix[16];
    if (sscanf(gguf_name, "blk.%d.%n", &layer, &used) == 1)
        gguf_name += used;
    const char *dot = strrchr(gguf_name, '.');
    snprintf(base, sizeof base, "%.*s", (int)(dot - gguf_name), gguf_name);
    snprintf(suffix, sizeof suffix, "%s", dot + 1);
    for (size_t i = 0; i < sizeof NAME_MAP / sizeof NAME_MAP[0]; i++) {
        if (strcmp(NAME_MAP[i].gguf, base))
            continue;
        if (layer >= 0)
            snprintf(out, size, "model.layers.%d.%s.%s", layer, NAME_MAP[i].hf, suffix);
        else
            snprintf(out, size, "%s.%s", NAME_MAP[i].hf, suffix);
        return;
    }
    fail_msg("no checkpoint name for %s", gguf_name);
}

static float value_at(const st_tensor *s, int64_t i)
{
    const uint8_t *p = s->data;
    uint16_t h;
    float f;
    if (s->dtype == ST_F32) {
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    memcpy(&h, p + 2 * i, 2);
    return s->dtype == ST_F16 ? q_fp16_to_fp32(h) : q_bf16_to_fp32(h);
}

/* LlamaModel.permute as llama.cpp describes it: within each head the first half of the rows
 * goes to the even rows and the second half to the odd ones. */
static int64_t permuted_source_row(int64_t r, int64_t rows, int64_t heads)
{
    int64_t d = rows / heads, h = r / d, k = r % d;
    return h * d + (k % 2 == 0 ? k / 2 : d / 2 + k / 2);
}

static int64_t perm_heads_of(const char *gguf_name, const toy *t, bool llama)
{
    if (!llama)
        return 0;
    if (strstr(gguf_name, ".attn_q."))
        return t->heads;
    if (strstr(gguf_name, ".attn_k."))
        return t->kv;
    return 0;
}

/* GGUF tensor t equals the checkpoint's tensor, permuted for llama Q/K, converted to t's type
 * (float types; quantized tensors are compared to q_quantize_rows of the permuted rows). */
static void check_tensor_from_source(const gguf_tensor_info *t, const st_tensor *s, int64_t heads)
{
    int64_t n_per_row = s->n_dims == 2 ? s->shape[1] : 1, rows = s->shape[0];
    assert_int_equal(t->ne[0], s->n_dims == 2 ? n_per_row : rows);
    float *x = malloc((size_t)(rows * n_per_row) * sizeof *x);
    assert_non_null(x);
    for (int64_t r = 0; r < rows; r++) {
        int64_t src = heads ? permuted_source_row(r, rows, heads) : r;
        for (int64_t c = 0; c < n_per_row; c++)
            x[r * n_per_row + c] = value_at(s, src * n_per_row + c);
    }
    uint8_t *want = malloc(t->nbytes);
    assert_non_null(want);
    int64_t n = rows * n_per_row;
    for (int64_t i = 0; i < n && !q_type_info(t->type)->is_quantized; i++) {
        uint16_t h;
        if (t->type == Q_TYPE_F32)
            memcpy(want + 4 * i, &x[i], 4);
        if (t->type == Q_TYPE_F16 && (h = q_fp32_to_fp16(x[i]), 1))
            memcpy(want + 2 * i, &h, 2);
        if (t->type == Q_TYPE_BF16 && (h = q_fp32_to_bf16(x[i]), 1))
            memcpy(want + 2 * i, &h, 2);
    }
    if (q_type_info(t->type)->is_quantized) {
        qk_err err = {{0}};
        assert_int_equal(q_quantize_rows(t->type, x, want, rows, n_per_row, NULL, 1, NULL, &err), QK_OK);
    }
    if (memcmp(want, t->data, t->nbytes))
        fail_msg("tensor %s does not match %s", t->name, s->name);
    free(want);
    free(x);
}

/* Every GGUF tensor but rope_freqs comes from the checkpoint in dir; every checkpoint tensor
 * lands in the GGUF. */
static void check_against_checkpoint(const char *dir, const char *gguf_path, const toy *t)
{
    st_model *m;
    qk_err err = {{0}};
    assert_int_equal(st_model_open(&m, dir, &err), QK_OK);
    gguf_ctx *g = open_gguf(gguf_path);
    const char *arch = get_str(g, "general.architecture");
    size_t matched = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor_info *ti = gguf_tensor(g, i);
        if (!strcmp(ti->name, "rope_freqs.weight"))
            continue;
        char hf[128];
        hf_name_of(ti->name, hf, sizeof hf);
        const st_tensor *s = st_model_find(m, hf);
        if (!s)
            fail_msg("%s has no source %s", ti->name, hf);
        bool keep_f32 = ti->n_dims == 1;
        if (keep_f32)
            assert_int_equal(ti->type, Q_TYPE_F32);
        check_tensor_from_source(ti, s, perm_heads_of(ti->name, t, !strcmp(arch, "llama")));
        matched++;
    }
    assert_int_equal(matched, st_model_n_tensors(m));
    gguf_close(g);
    st_model_close(m);
}

static const toy LLAMA = {.arch = "LlamaForCausalLM", .layers = 2, .embd = 32, .ff = 64, .heads = 4,
        .kv = 2, .dtype = ST_F32};

static void test_llama_f32_permutation(void **state)
{
    (void)state;
    const char *dir = toy_dir(&LLAMA, "llama"), *out = tu_tmp("llama.gguf");
    convert_ok(dir, out, "f32");
    check_against_checkpoint(dir, out, &LLAMA);
    gguf_ctx *g = open_gguf(out);
    assert_string_equal(get_str(g, "general.architecture"), "llama");
    assert_int_equal(get_u32(g, "general.file_type"), 0);
    assert_int_equal(get_u32(g, "llama.attention.head_count"), 4);
    assert_int_equal(get_u32(g, "llama.attention.head_count_kv"), 2);
    assert_int_equal(get_u32(g, "llama.rope.dimension_count"), 8);
    assert_int_equal(get_u32(g, "llama.vocab_size"), TOY_VOCAB);
    assert_int_equal(get_u32(g, "llama.context_length"), 256);
    assert_true(gguf_find_key(g, "llama.attention.key_length") < 0); /* no head_dim in config.json */
    assert_true(gguf_find_key(g, "llama.rope.freq_base") < 0);       /* no rope_theta either */
    assert_non_null(gguf_find_tensor(g, "output.weight"));
    gguf_close(g);
}

static void test_mistral_bf16_tied_to_f16(void **state)
{
    (void)state;
    toy t = {.arch = "MistralForCausalLM", .layers = 1, .embd = 32, .ff = 64, .heads = 4, .kv = 1,
            .tied = 1, .dtype = ST_BF16, .extra = ", \"rope_theta\": 1000000.0"};
    const char *dir = toy_dir(&t, "mistral"), *out = tu_tmp("mistral.gguf");
    convert_ok(dir, out, "f16");
    check_against_checkpoint(dir, out, &t);
    gguf_ctx *g = open_gguf(out);
    assert_string_equal(get_str(g, "general.architecture"), "llama");
    assert_null(gguf_find_tensor(g, "output.weight"));
    assert_int_equal(gguf_find_tensor(g, "blk.0.attn_q.weight")->type, Q_TYPE_F16);
    assert_true(get_f32(g, "llama.rope.freq_base") == 1000000.0f);
    assert_int_equal(get_u32(g, "general.file_type"), 1);
    gguf_close(g);
}

static void test_qwen2_biases_not_permuted(void **state)
{
    (void)state;
    toy t = {.arch = "Qwen2ForCausalLM", .layers = 2, .embd = 32, .ff = 48, .heads = 4, .kv = 2,
            .tied = 1, .qkv_bias = 1, .dtype = ST_F16, .extra = ", \"rope_theta\": 1000000.0"};
    const char *dir = toy_dir(&t, "qwen2"), *out = tu_tmp("qwen2.gguf");
    convert_ok(dir, out, "auto");
    check_against_checkpoint(dir, out, &t);
    gguf_ctx *g = open_gguf(out);
    assert_string_equal(get_str(g, "general.architecture"), "qwen2");
    assert_int_equal(get_u32(g, "general.file_type"), 1); /* auto: an F16 checkpoint stays f16 */
    assert_int_equal(gguf_find_tensor(g, "blk.1.attn_k.bias")->type, Q_TYPE_F32);
    assert_int_equal(get_u32(g, "qwen2.block_count"), 2);
    assert_true(gguf_find_key(g, "qwen2.vocab_size") < 0);        /* LlamaModel-only keys */
    assert_true(gguf_find_key(g, "qwen2.rope.dimension_count") < 0);
    gguf_close(g);
}

static void test_qwen3_head_dim_and_qk_norm(void **state)
{
    (void)state;
    /* head_dim 16 while hidden/heads is 8: q_proj is 32 → 64 */
    toy t = {.arch = "Qwen3ForCausalLM", .layers = 1, .embd = 32, .ff = 48, .heads = 4, .kv = 2,
            .head_dim = 16, .tied = 1, .qk_norm = 1, .dtype = ST_F32,
            .extra = ", \"rope_theta\": 1000000"};
    const char *dir = toy_dir(&t, "qwen3"), *out = tu_tmp("qwen3.gguf");
    convert_ok(dir, out, "bf16");
    check_against_checkpoint(dir, out, &t);
    gguf_ctx *g = open_gguf(out);
    assert_string_equal(get_str(g, "general.architecture"), "qwen3");
    assert_int_equal(get_u32(g, "qwen3.attention.key_length"), 16);
    assert_int_equal(get_u32(g, "qwen3.attention.value_length"), 16);
    const gguf_tensor_info *qn = gguf_find_tensor(g, "blk.0.attn_q_norm.weight");
    assert_non_null(qn);
    assert_int_equal(qn->ne[0], 16);
    assert_int_equal(gguf_find_tensor(g, "blk.0.attn_q.weight")->ne[1], 64);
    assert_int_equal(get_u32(g, "general.file_type"), 32);
    gguf_close(g);
}

/* Llama 3 scaling: the expected factors evaluated here in double precision; the bands (1 and
 * factor) are exact, the smooth middle agrees to float rounding. */
static void test_llama3_rope_freqs(void **state)
{
    (void)state;
    toy t = {.arch = "LlamaForCausalLM", .layers = 1, .embd = 256, .ff = 64, .heads = 4, .kv = 4,
            .tied = 1, .dtype = ST_BF16,
            .extra = ", \"rope_theta\": 500000.0, \"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, "
                "\"low_freq_factor\": 1.0, \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}"};
    const char *dir = toy_dir(&t, "llama3"), *out = tu_tmp("llama3.gguf");
    convert_ok(dir, out, "auto");
    check_against_checkpoint(dir, out, &t);
    gguf_ctx *g = open_gguf(out);
    const gguf_tensor_info *rf = gguf_tensor(g, 0);
    assert_string_equal(rf->name, "rope_freqs.weight"); /* generated tensors come first */
    assert_int_equal(rf->type, Q_TYPE_F32);
    assert_int_equal(rf->ne[0], 32);
    const float *f = rf->data;
    int n_one = 0, n_factor = 0;
    for (int i = 0; i < 32; i++) {
        double freq = 1.0 / pow(500000.0, 2.0 * i / 64.0), wavelen = 2 * M_PI / freq, want;
        if (wavelen < 8192.0 / 4.0)
            want = 1.0, n_one++;
        else if (wavelen > 8192.0)
            want = 32.0, n_factor++;
        else {
            double smooth = (8192.0 / wavelen - 1.0) / 3.0;
            want = 1.0 / ((1 - smooth) / 32.0 + smooth);
        }
        tu_assert_near(f[i], want, want * 1e-5);
        if (want == 1.0 || want == 32.0)
            assert_true(f[i] == (float)want);
    }
    assert_true(n_one > 0 && n_factor > 0 && n_one + n_factor < 32);
    assert_true(gguf_find_key(g, "llama.rope.scaling.type") < 0); /* llama3 scaling is the tensor */
    gguf_close(g);
}

/* transformers 5: rope_parameters instead of rope_theta, dtype instead of torch_dtype. */
static void test_rope_parameters(void **state)
{
    (void)state;
    toy t = {.arch = "LlamaForCausalLM", .layers = 1, .embd = 32, .ff = 48, .heads = 4, .kv = 4,
            .head_dim = 8, .tied = 1, .dtype = ST_BF16,
            .extra = ", \"dtype\": \"bfloat16\", \"rope_parameters\": {\"rope_theta\": 100000, \"rope_type\": \"default\"}"};
    const char *dir = toy_dir(&t, "tf5");
    cv_plan *p;
    qk_err err = {{0}};
    assert_int_equal(cv_plan_create(dir, NULL, &p, &err), QK_OK);
    const ca_config *c = cv_plan_config(p);
    assert_true(c->hp.has_rope_theta && c->hp.rope_theta == 100000.0);
    assert_string_equal(c->dtype, "bfloat16");
    assert_int_equal(c->hp.rope_scaling, GA_ROPE_NONE);
    assert_true(c->hp.has_head_dim && c->hp.head_dim == 8);
    cv_plan_free(p);
}

static void test_linear_and_yarn_scaling(void **state)
{
    (void)state;
    toy lin = {.arch = "LlamaForCausalLM", .layers = 1, .embd = 32, .ff = 48, .heads = 4, .kv = 4,
            .tied = 1, .dtype = ST_F32,
            .extra = ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}"};
    toy yarn = {.arch = "Qwen2ForCausalLM", .layers = 1, .embd = 32, .ff = 48, .heads = 4, .kv = 4,
            .tied = 1, .qkv_bias = 1, .dtype = ST_F32,
            .extra = ", \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 32768}"};
    const char *out = tu_tmp("scaled.gguf");
    convert_ok(toy_dir(&lin, "linear"), out, "f32");
    gguf_ctx *g = open_gguf(out);
    assert_string_equal(get_str(g, "llama.rope.scaling.type"), "linear");
    assert_true(get_f32(g, "llama.rope.scaling.factor") == 2.0f);
    gguf_close(g);
    convert_ok(toy_dir(&yarn, "yarn"), out, "f32");
    g = open_gguf(out);
    assert_string_equal(get_str(g, "qwen2.rope.scaling.type"), "yarn");
    assert_true(get_f32(g, "qwen2.rope.scaling.factor") == 4.0f);
    assert_int_equal(get_u32(g, "qwen2.rope.scaling.original_context_length"), 32768);
    gguf_close(g);
}

/* q8_0 through the mix: quantized rows are the permuted rows quantized. */
static void test_quantized_outtype(void **state)
{
    (void)state;
    const char *dir = toy_dir(&LLAMA, "llama-q8"), *out = tu_tmp("llama-q8.gguf");
    convert_ok(dir, out, "q8_0");
    check_against_checkpoint(dir, out, &LLAMA);
    gguf_ctx *g = open_gguf(out);
    assert_int_equal(gguf_find_tensor(g, "blk.0.attn_q.weight")->type, Q_TYPE_Q8_0);
    assert_int_equal(get_u32(g, "general.file_type"), 7);
    gguf_close(g);
}

static void test_threads_do_not_change_output(void **state)
{
    (void)state;
    toy t = LLAMA;
    t.embd = 256, t.ff = 512, t.heads = 4, t.kv = 4;
    const char *dir = toy_dir(&t, "llama-threads");
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s", tu_tmp("t1.gguf"));
    snprintf(b, sizeof b, "%s", tu_tmp("t2.gguf"));
    cv_options o;
    cv_options_init(&o);
    o.outtype = "q4_k_m";
    qk_err err = {{0}};
    o.n_threads = 1;
    assert_int_equal(cv_convert(dir, a, &o, NULL, &err), QK_OK);
    o.n_threads = 2;
    assert_int_equal(cv_convert(dir, b, &o, NULL, &err), QK_OK);
    size_t na, nb;
    void *da = tu_read(a, &na), *db = tu_read(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(da, db, na);
    free(da);
    free(db);
}

/* Two shards and an index convert to the same tensors as one file. */
static void test_sharded_checkpoint(void **state)
{
    (void)state;
    const char *single = toy_dir(&LLAMA, "single");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_tmp("sharded"));
    assert_int_equal(mkdir(dir, 0755), 0);
    toy_config(&LLAMA, dir);
    toy_tokenizer(dir);
    toy_tensors tt;
    toy_build(&LLAMA, &tt);
    size_t half = tt.n / 2;
    write_st((char *)tu_join(dir, "model-00001-of-00002.safetensors"), tt.st, tt.data, half);
    write_st((char *)tu_join(dir, "model-00002-of-00002.safetensors"), tt.st + half, tt.data + half, tt.n - half);
    sbuf idx = {0};
    const char *open = "{\"metadata\": {}, \"weight_map\": {";
    sb_put(&idx, open, strlen(open));
    for (size_t i = 0; i < tt.n; i++) {
        char e[192];
        snprintf(e, sizeof e, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", tt.s[i].name,
                 i < half ? 1 : 2);
        sb_put(&idx, e, strlen(e));
    }
    sb_put(&idx, "}}", 2);
    write_text((char *)tu_join(dir, "model.safetensors.index.json"), idx.p);
    free(idx.p);
    toy_free(&tt);
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s", tu_tmp("single.gguf"));
    snprintf(b, sizeof b, "%s", tu_tmp("sharded.gguf"));
    convert_ok(single, a, "f32");
    convert_ok(dir, b, "f32");
    gguf_ctx *ga = open_gguf(a), *gb = open_gguf(b);
    assert_int_equal(gguf_n_tensors(ga), gguf_n_tensors(gb));
    for (uint64_t i = 0; i < gguf_n_tensors(ga); i++) {
        const gguf_tensor_info *x = gguf_tensor(ga, i), *y = gguf_find_tensor(gb, x->name);
        assert_non_null(y);
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
    gguf_close(ga);
    gguf_close(gb);
}

/* --split-max-size: gguf-split parts holding the same tensors as the single file. */
static void test_split_output(void **state)
{
    (void)state;
    const char *dir = toy_dir(&LLAMA, "llama-split");
    char one[4096], prefix[4096], part1[4200];
    snprintf(one, sizeof one, "%s", tu_tmp("whole.gguf"));
    snprintf(prefix, sizeof prefix, "%s", tu_tmp("parts.gguf"));
    convert_ok(dir, one, "f32");
    cv_options o;
    cv_options_init(&o);
    o.outtype = "f32";
    o.split_max_bytes = 20000;
    cv_result r;
    qk_err err = {{0}};
    assert_int_equal(cv_convert(dir, prefix, &o, &r, &err), QK_OK);
    assert_true(r.n_parts > 2);
    snprintf(part1, sizeof part1, "%.*s-00001-of-%05u.gguf", (int)(strlen(prefix) - 5), prefix, r.n_parts);
    assert_true(tu_exists(part1));
    gguf_ctx *ga = open_gguf(one), *gb = open_gguf(part1);
    assert_int_equal(gguf_n_parts(gb), r.n_parts);
    assert_int_equal(gguf_n_tensors(ga), gguf_n_tensors(gb));
    for (uint64_t i = 0; i < gguf_n_tensors(ga); i++) {
        const gguf_tensor_info *x = gguf_tensor(ga, i), *y = gguf_tensor(gb, i);
        assert_string_equal(x->name, y->name);
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
    assert_int_equal(gguf_n_kv(ga), gguf_n_kv(gb));
    gguf_close(ga);
    gguf_close(gb);
}

/* ================================================================ exported tokenizers */

/* A converted model's tokenizer (read back from the GGUF) reproduces the golden ids of the
 * tokenizer it was converted from. */
static void check_gguf_tokenizer(const char *gguf_path, const char *golden_key)
{
    TU_SHARED(gpath, "golden/tokenizer/tokenizer-strings.json");
    cJSON *gold = tu_read_json(gpath);
    gguf_ctx *g = open_gguf(gguf_path);
    tok_vocab *v;
    qk_err err = {{0}};
    if (tok_vocab_load_gguf(g, &v, &err))
        fail_msg("%s", err.msg);
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(gold, golden_key))
    {
        const char *text = cJSON_GetObjectItem(e, "text")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(e, "ids");
        tok_ids ids = {0};
        assert_int_equal(tok_encode(v, text, strlen(text), 0, &ids, &err), QK_OK);
        assert_int_equal(ids.n, (size_t)cJSON_GetArraySize(want));
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] != (int32_t)cJSON_GetArrayItem(want, (int)i)->valuedouble)
                fail_msg("%s: '%s': id %zu differs", golden_key, text, i);
        tok_ids_free(&ids);
    }
    tok_vocab_free(v);
    gguf_close(g);
    cJSON_Delete(gold);
}

static void test_bpe_tokenizer_export(void **state)
{
    (void)state;
    TU_SHARED(qwen, "hf-configs/Qwen2.5-0.5B-Instruct");
    toy t = {.arch = "Qwen2ForCausalLM", .layers = 1, .embd = 32, .ff = 64, .heads = 4, .kv = 2,
            .tied = 1, .qkv_bias = 1, .dtype = ST_BF16,
            .extra = ", \"bos_token_id\": 151643, \"eos_token_id\": 151645", .vocab = 151936};
    const char *dir = toy_dir_tok(&t, "qwen-tok", qwen), *out = tu_tmp("qwen-tok.gguf");
    convert_ok(dir, out, "auto");
    gguf_ctx *g = open_gguf(out);
    assert_string_equal(get_str(g, "tokenizer.ggml.model"), "gpt2");
    assert_string_equal(get_str(g, "tokenizer.ggml.pre"), "qwen2");
    assert_int_equal(get_u32(g, "tokenizer.ggml.bos_token_id"), 151643);
    assert_int_equal(get_u32(g, "tokenizer.ggml.eos_token_id"), 151645); /* <|im_end|> */
    assert_int_equal(get_u32(g, "tokenizer.ggml.padding_token_id"), 151643);
    assert_true(gguf_find_key(g, "tokenizer.ggml.scores") < 0);
    assert_true(gguf_find_key(g, "tokenizer.ggml.eot_token_id") < 0); /* the converter writes none */
    bool add_bos = true;
    assert_int_equal(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos), QK_OK);
    assert_false(add_bos);
    const void *merges;
    uint64_t n_merges;
    assert_int_equal(gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_TYPE_STR, &merges, &n_merges), QK_OK);
    assert_int_equal(n_merges, 151387); /* merges.txt without its #version line */
    const void *types;
    uint64_t n_types;
    assert_int_equal(gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_TYPE_I32, &types, &n_types), QK_OK);
    assert_int_equal(n_types, 151936);
    assert_int_equal(((const int32_t *)types)[151644], 3);  /* <|im_start|>: CONTROL */
    assert_int_equal(((const int32_t *)types)[151935], 5);  /* padding: UNUSED */
    assert_non_null(strstr(get_str(g, "tokenizer.chat_template"), "<|im_start|>"));
    gguf_close(g);
    check_gguf_tokenizer(out, "qwen2.5");
}

static void test_spm_tokenizer_export(void **state)
{
    (void)state;
    TU_SHARED(tiny, "hf-configs/TinyLlama-1.1B-Chat-v1.0");
    toy t = {.arch = "LlamaForCausalLM", .layers = 1, .embd = 32, .ff = 64, .heads = 4, .kv = 4,
            .tied = 1, .dtype = ST_BF16, .extra = ", \"bos_token_id\": 1, \"eos_token_id\": 2",
            .vocab = 32000};
    const char *dir = toy_dir_tok(&t, "tiny-tok", tiny), *out = tu_tmp("tiny-tok.gguf");
    convert_ok(dir, out, "auto");
    gguf_ctx *g = open_gguf(out);
    assert_string_equal(get_str(g, "tokenizer.ggml.model"), "llama");
    assert_string_equal(get_str(g, "tokenizer.ggml.pre"), "default");
    assert_int_equal(get_u32(g, "tokenizer.ggml.unknown_token_id"), 0);
    assert_int_equal(get_u32(g, "tokenizer.ggml.padding_token_id"), 2); /* pad_token </s> */
    /* "add_prefix_space": null is not written (the converter would write false) */
    assert_true(gguf_find_key(g, "tokenizer.ggml.add_space_prefix") < 0);
    assert_non_null(strstr(get_str(g, "tokenizer.chat_template"), "<|assistant|>")); /* chat_template.jinja */
    gguf_close(g);
    check_gguf_tokenizer(out, "tinyllama");
}

/* LlamaModel.set_vocab extras: add_prefix_space from tokenizer_config.json, and add_bos_token
 * false for 49152-token vocabularies (SmolLM, Granite small). */
static void test_llama_vocab_extras(void **state)
{
    (void)state;
    toy t = {.arch = "LlamaForCausalLM", .layers = 1, .embd = 32, .ff = 64, .heads = 4, .kv = 4,
             .tied = 1, .dtype = ST_BF16, .vocab = 49152};
    const char *dir = toy_dir(&t, "smol-extras"), *out = tu_tmp("smol-extras.gguf");
    write_text((char *)tu_join(dir, "tokenizer_config.json"),
               "{\"add_bos_token\": true, \"add_prefix_space\": false, \"bos_token\": \"<s>\"}");
    convert_ok(dir, out, "auto");
    gguf_ctx *g = open_gguf(out);
    bool b = true;
    assert_int_equal(gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b), QK_OK);
    assert_false(b);
    b = true;
    assert_int_equal(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b), QK_OK);
    assert_false(b);
    const void *tokens;
    uint64_t n;
    assert_int_equal(gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STR, &tokens, &n), QK_OK);
    assert_int_equal(n, 49152); /* padded as the converter pads: [PAD512] … */
    assert_string_equal(((const gguf_str *)tokens)[512].ptr, "[PAD512]");
    gguf_close(g);
}


/* ================================================================ mixtures of experts */

static void expect_convert_error(const char *dir, const char *outtype, int code, const char *fragment)
{
    const char *out = tu_tmp("bad.gguf");
    cv_options o;
    cv_options_init(&o);
    o.outtype = outtype;
    qk_err err = {{0}};
    assert_int_equal(cv_convert(dir, out, &o, NULL, &err), code);
    tu_assert_msg(err.msg, fragment);
    assert_false(tu_exists(out));
}


/* Mixtral through llama.cpp's converter (c392e50): the stacked 3-D expert tensors, the router
 * kept in F32, expert_count / expert_used_count, the "4x1.4M" size label. */
static void test_mixtral_f32_f16_bf16(void **state)
{
    (void)state;
    model_matches("mixtral-tiny", "f32", "convert-f32.json", true);
    model_matches("mixtral-tiny", "f16", "convert-f16.json", true);
    model_matches("mixtral-tiny", "bf16", "convert-bf16.json", true);
}

/* --outtype MIX equals llama-quantize MIX of the f32 file (the 3-D tensors quantized slice by
 * slice), byte for byte. */
static void test_mixtral_mixes(void **state)
{
    (void)state;
    static const char *const mixes[] = {"Q4_K_M", "Q2_K", "Q8_0"};
    for (size_t i = 0; i < sizeof mixes / sizeof mixes[0]; i++) {
        char golden[64];
        snprintf(golden, sizeof golden, "mix-%s-none.json", mixes[i]);
        model_matches("mixtral-tiny", mixes[i], golden, false);
    }
}

/* Converted with outtype: the router stays F32, the experts take exps_type. */
static void check_moe_outtype(const char *model, const char *out, const char *outtype, int exps_type)
{
    convert_ok(model, out, outtype);
    gguf_ctx *g = open_gguf(out);
    assert_int_equal(gguf_find_tensor(g, "blk.0.ffn_gate_inp.weight")->type, Q_TYPE_F32);
    assert_int_equal(gguf_find_tensor(g, "blk.0.ffn_up_exps.weight")->type, exps_type);
    gguf_close(g);
    remove(out);
}

/* storiesMoE (Qwen3-MoE): every expert slice of the stacked tensors is the checkpoint's expert
 * matrix (BF16 → F32 exactly), in the order down, gate, up per block; the metadata of current
 * llama.cpp's Qwen3MoeModel. */
static void test_qwen3moe_stacks_experts(void **state)
{
    (void)state;
    TU_SHARED(model, "models/storiesMoE");
    const char *out = tu_tmp("smoe.gguf");
    convert_ok(model, out, "f32");
    gguf_ctx *g = open_gguf(out);
    assert_string_equal(get_str(g, "general.architecture"), "qwen3moe");
    assert_int_equal(get_u32(g, "qwen3moe.expert_count"), 8);
    assert_int_equal(get_u32(g, "qwen3moe.expert_used_count"), 2);
    assert_int_equal(get_u32(g, "qwen3moe.expert_feed_forward_length"), 256);
    assert_int_equal(get_u32(g, "qwen3moe.feed_forward_length"), 768);
    assert_string_equal(get_str(g, "general.size_label"), "8x1.8M");
    assert_true(gguf_find_key(g, "qwen3moe.expert_weights_norm") < 0); /* norm_topk_prob true */
    st_model *st;
    qk_err err = {{0}};
    assert_int_equal(st_model_open(&st, model, &err), QK_OK);
    static const char *const proj[3][2] = {{"gate_proj", "ffn_gate_exps"}, {"up_proj", "ffn_up_exps"},
                                           {"down_proj", "ffn_down_exps"}};
    for (int l = 0; l < 4; l++) {
        for (int p = 0; p < 3; p++) {
            char name[128];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, proj[p][1]);
            const gguf_tensor_info *t = gguf_find_tensor(g, name);
            assert_non_null(t);
            assert_int_equal(t->n_dims, 3);
            assert_int_equal(t->ne[2], 8);
            assert_int_equal(t->type, Q_TYPE_F32);
            const float *v = t->data;
            for (int e = 0; e < 8; e++) {
                snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.%s.weight", l, e, proj[p][0]);
                const st_tensor *s = st_model_find(st, name);
                assert_non_null(s);
                assert_int_equal(s->shape[0], t->ne[1]);
                assert_int_equal(s->shape[1], t->ne[0]);
                const uint16_t *h = s->data;
                for (uint64_t i = 0; i < s->n_elements; i++)
                    if (v[(uint64_t)e * s->n_elements + i] != q_bf16_to_fp32(h[i]))
                        fail_msg("%s element %llu differs", name, (unsigned long long)i);
            }
        }
        char router[64];
        snprintf(router, sizeof router, "blk.%d.ffn_gate_inp.weight", l);
        assert_int_equal(gguf_find_tensor(g, router)->type, Q_TYPE_F32);
        assert_int_equal(gguf_find_tensor(g, router)->ne[1], 8);
    }
    st_model_close(st);
    gguf_close(g);
    /* f16: the router stays F32, the experts become f16 */
    check_moe_outtype(model, out, "f16", Q_TYPE_F16);
}


static void collect_warning(void *user, const char *msg)
{
    snprintf(user, 256, "%s", msg);
}

static const float *gguf_f32(const gguf_ctx *g, const char *name, int64_t ne0, int64_t ne1, int64_t ne2)
{
    const gguf_tensor_info *t = gguf_find_tensor(g, name);
    if (!t)
        fail_msg("tensor %s missing", name);
    assert_int_equal(t->type, Q_TYPE_F32);
    assert_int_equal(t->ne[0], ne0);
    assert_int_equal(t->ne[1], ne1);
    assert_int_equal(t->ne[2], ne2);
    return t->data;
}

/* Llama 4: text_config read, vision tensors skipped with one warning, the fused experts split
 * (gate first) and transposed, the shared expert and router kept, llama.cpp's keys plus qkit's
 * chunk / temperature / q-k norm / NoPE keys, rope_freqs with the empty smoothing band. Values
 * checked element by element against the checkpoint (BF16 → F32 exactly). */
static void test_llama4_tiny_layout(void **state)
{
    (void)state;
    TU_SHARED(model, "models/llama4-tiny");
    const char *out = tu_tmp("l4.gguf");
    char warning[256] = "";
    cv_options o;
    cv_options_init(&o);
    o.outtype = "f32";
    o.warn = collect_warning;
    o.user = warning;
    qk_err err = {{0}};
    if (cv_convert(model, out, &o, NULL, &err))
        fail_msg("%s", err.msg);
    tu_assert_msg(warning, "skipped 2 tensors the text model does not use");
    gguf_ctx *g = open_gguf(out);
    assert_string_equal(get_str(g, "general.architecture"), "llama4");
    assert_int_equal(get_u32(g, "llama4.expert_count"), 4);
    assert_int_equal(get_u32(g, "llama4.expert_used_count"), 1);
    assert_int_equal(get_u32(g, "llama4.feed_forward_length"), 512);
    assert_int_equal(get_u32(g, "llama4.expert_feed_forward_length"), 256);
    assert_int_equal(get_u32(g, "llama4.interleave_moe_layer_step"), 1);
    assert_int_equal(get_u32(g, "llama4.attention.chunk_size"), 64);
    assert_int_equal(get_u32(g, "llama4.attention.temperature_length"), 8);
    assert_true(get_f32(g, "llama4.attention.temperature_scale") == 0.1f);
    bool b = false;
    assert_int_equal(gguf_get_bool(g, "llama4.attention.use_qk_norm", &b), QK_OK);
    assert_true(b);
    const void *arr;
    uint64_t n;
    assert_int_equal(gguf_get_arr(g, "llama4.no_rope_layers", GGUF_TYPE_I32, &arr, &n), QK_OK);
    assert_int_equal(n, 4);
    assert_int_equal(((const int32_t *)arr)[3], 0);
    assert_int_equal(((const int32_t *)arr)[2], 1);
    /* llama3 frequencies with low == high: 18 unscaled, then 14 divided by the factor 16 */
    const float *rf = gguf_f32(g, "rope_freqs.weight", 32, 1, 1);
    for (int i = 0; i < 32; i++)
        assert_true(rf[i] == (i < 18 ? 1.0f : 16.0f));
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++)
        assert_null(strstr(gguf_tensor(g, i)->name, "vision"));
    st_model *st;
    assert_int_equal(st_model_open(&st, model, &err), QK_OK);
    for (int l = 0; l < 4; l++) {
        char name[160];
        snprintf(name, sizeof name, "language_model.model.layers.%d.feed_forward.experts.gate_up_proj", l);
        const st_tensor *gu = st_model_find(st, name);
        snprintf(name, sizeof name, "language_model.model.layers.%d.feed_forward.experts.down_proj", l);
        const st_tensor *dn = st_model_find(st, name);
        assert_non_null(gu);
        assert_non_null(dn);
        const uint16_t *h = gu->data, *hd = dn->data;
        snprintf(name, sizeof name, "blk.%d.ffn_gate_exps.weight", l);
        const float *gate = gguf_f32(g, name, 256, 256, 4);
        snprintf(name, sizeof name, "blk.%d.ffn_up_exps.weight", l);
        const float *up = gguf_f32(g, name, 256, 256, 4);
        snprintf(name, sizeof name, "blk.%d.ffn_down_exps.weight", l);
        const float *down = gguf_f32(g, name, 256, 256, 4);
        /* HF gate_up [E][D][2F]: GGUF gate (e, r, i) = [e][i][r], up = [e][i][F + r];
         * HF down [E][F][D]: GGUF down (e, r, i) = [e][i][r] */
        for (int e = 0; e < 4; e++)
            for (int r = 0; r < 256; r++)
                for (int i = 0; i < 256; i++) {
                    size_t at = ((size_t)e * 256 + (size_t)r) * 256 + (size_t)i;
                    assert_true(gate[at] == q_bf16_to_fp32(h[((size_t)e * 256 + (size_t)i) * 512 + (size_t)r]));
                    assert_true(up[at] == q_bf16_to_fp32(h[((size_t)e * 256 + (size_t)i) * 512 + 256 + (size_t)r]));
                    assert_true(down[at] == q_bf16_to_fp32(hd[((size_t)e * 256 + (size_t)i) * 256 + (size_t)r]));
                }
        snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.weight", l);
        gguf_f32(g, name, 256, 4, 1);
        snprintf(name, sizeof name, "blk.%d.ffn_down_shexp.weight", l);
        gguf_f32(g, name, 256, 256, 1);
    }
    st_model_close(st);
    gguf_close(g);
    /* bf16 → bf16: the transposed halves are the checkpoint's bytes rearranged, unrounded */
    check_moe_outtype(model, out, "bf16", Q_TYPE_BF16);
}

/* A copy of a shared MoE model: tensor `drop` left out, tensor `shrink` one row short, and a
 * config.json key set to a JSON value (key NULL: unchanged). */
static const char *moe_variant(const char *model_rel, const char *name, const char *drop,
                               const char *shrink, const char *key, const char *value)
{
    TU_SHARED(model, model_rel);
    const char *dir = tu_tmp(name);
    assert_int_equal(mkdir(dir, 0755), 0);
    copy_tokenizer(model, dir);
    cJSON *cfg = tu_read_json(tu_join(model, "config.json"));
    if (key) { /* "text_config.K" sets K inside text_config; value is JSON text, NULL removes */
        cJSON *obj = cfg;
        const char *dot = strchr(key, '.');
        char head[64];
        if (dot) {
            snprintf(head, sizeof head, "%.*s", (int)(dot - key), key);
            obj = cJSON_GetObjectItem(cfg, head);
            key = dot + 1;
        }
        cJSON_DeleteItemFromObject(obj, key);
        if (value)
            cJSON_AddItemToObject(obj, key, cJSON_Parse(value));
    }
    char *text = cJSON_Print(cfg);
    write_text(tu_join(dir, "config.json"), text);
    cJSON_free(text);
    cJSON_Delete(cfg);
    st_model *st;
    qk_err err = {{0}};
    assert_int_equal(st_model_open(&st, model, &err), QK_OK);
    size_t n = st_model_n_tensors(st), k = 0;
    st_tensor_spec *specs = calloc(n, sizeof *specs);
    void **data = calloc(n, sizeof *data);
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_model_tensor(st, i);
        if (drop && !strcmp(t->name, drop))
            continue;
        specs[k] = (st_tensor_spec){.name = t->name, .dtype = t->dtype, .n_dims = t->n_dims};
        memcpy(specs[k].shape, t->shape, sizeof specs[k].shape);
        if (shrink && !strcmp(t->name, shrink))
            specs[k].shape[0]--;
        data[k++] = (void *)t->data;
    }
    write_st(tu_join(dir, "model.safetensors"), specs, data, k);
    free(specs);
    free(data);
    st_model_close(st);
    return dir;
}

static void test_bad_moe_checkpoints(void **state)
{
    (void)state;
    static const struct {
        const char *model, *name, *drop, *shrink, *key, *value;
        int code;
        const char *fragment;
    } cases[] = {
        {"models/mixtral-tiny", "mx-missing-expert", "model.layers.1.block_sparse_moe.experts.2.w3.weight",
         NULL, NULL, NULL, QK_EFORMAT, "missing tensor 'model.layers.1.block_sparse_moe.experts.2.w3.weight'"},
        {"models/mixtral-tiny", "mx-expert-shape", NULL, "model.layers.0.block_sparse_moe.experts.1.w2.weight",
         NULL, NULL, QK_EFORMAT,
         "tensor 'model.layers.0.block_sparse_moe.experts.1.w2.weight' has shape [255, 512] but "
         "config.json implies [256, 512]"},
        {"models/mixtral-tiny", "mx-missing-router", "model.layers.0.block_sparse_moe.gate.weight", NULL,
         NULL, NULL, QK_EFORMAT, "missing tensor 'model.layers.0.block_sparse_moe.gate.weight'"},
        {"models/mixtral-tiny", "mx-used-too-many", NULL, NULL, "num_experts_per_tok", "5", QK_EFORMAT,
         "num_experts_per_tok 5 exceeds num_local_experts 4"},
        {"models/mixtral-tiny", "mx-used-zero", NULL, NULL, "num_experts_per_tok", "0", QK_EFORMAT,
         "'num_experts_per_tok' must be an integer in [1, 65536]"},
        {"models/mixtral-tiny", "mx-no-experts", NULL, NULL, "num_local_experts", "0", QK_EFORMAT,
         "'num_local_experts' must be an integer in [1, 65536]"},
        {"models/storiesMoE", "q3-missing-expert", "model.layers.3.mlp.experts.7.down_proj.weight", NULL,
         NULL, NULL, QK_EFORMAT, "missing tensor 'model.layers.3.mlp.experts.7.down_proj.weight'"},
        {"models/storiesMoE", "q3-fewer-experts", NULL, NULL, "num_experts", "7", QK_EFORMAT,
         "unexpected tensor 'model.layers.0.mlp.experts.7.down_proj.weight'"},
        {"models/storiesMoE", "q3-more-experts", NULL, NULL, "num_experts", "9", QK_EFORMAT,
         "tensor 'model.layers.0.mlp.gate.weight' has shape [8, 256] but config.json implies [9, 256]"},
        {"models/storiesMoE", "q3-router-shape", NULL, "model.layers.2.mlp.gate.weight", NULL, NULL, QK_EFORMAT,
         "tensor 'model.layers.2.mlp.gate.weight' has shape [7, 256] but config.json implies [8, 256]"},
        /* Llama 4 */
        {"models/llama4-tiny", "l4-rope-type", NULL, NULL, "text_config.rope_scaling",
         "{\"rope_type\": \"longrope\", \"factor\": 2.0}", QK_EUNSUPPORTED,
         "rope scaling type 'longrope' is not supported"},
        {"models/llama4-tiny", "l4-no-rope-len", NULL, NULL, "text_config.no_rope_layers", "[1, 1, 0]",
         QK_EFORMAT, "'no_rope_layers' must list 4 entries of 0 or 1 (one per layer)"},
        {"models/llama4-tiny", "l4-no-rope-value", NULL, NULL, "text_config.no_rope_layers", "[1, 1, 2, 0]",
         QK_EFORMAT, "'no_rope_layers' entry 2 must be 0 or 1"},
        {"models/llama4-tiny", "l4-expert-shape", NULL, "language_model.model.layers.1.feed_forward.experts.down_proj",
         NULL, NULL, QK_EFORMAT,
         "tensor 'language_model.model.layers.1.feed_forward.experts.down_proj' has shape [3, 256, 256] but "
         "config.json implies [4, 256, 256]"},
        {"models/llama4-tiny", "l4-missing-key", NULL, NULL, "text_config.intermediate_size_mlp", NULL,
         QK_EFORMAT, "config.json (text_config): 'intermediate_size_mlp' is missing"},
        {"models/llama4-tiny", "l4-missing-shared", "language_model.model.layers.2.feed_forward.shared_expert.up_proj.weight",
         NULL, NULL, NULL, QK_EFORMAT,
         "missing tensor 'language_model.model.layers.2.feed_forward.shared_expert.up_proj.weight'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *dir = moe_variant(cases[i].model, cases[i].name, cases[i].drop, cases[i].shrink,
                                      cases[i].key, cases[i].value);
        expect_convert_error(dir, "f16", cases[i].code, cases[i].fragment);
        expect_convert_error(dir, "q4_k_m", cases[i].code, cases[i].fragment);
    }
}

/* ================================================================ general.* heuristics */

/* One call of ca_general_meta and the fields expected of it; NULL: that field is not checked. */
typedef struct {
    const char *folder, *name_or_path;
    int64_t params;
    const char *name, *basename, *size_label, *finetune, *version, *organization;
} general_case;

static void check_general(const general_case *c)
{
    ca_general g;
    ca_general_meta(c->folder, c->name_or_path, c->params, 0, 0, &g);
    const char *const got[] = {g.name, g.basename, g.size_label, g.finetune, g.version,
                               g.organization};
    const char *const want[] = {c->name,     c->basename, c->size_label,
                                c->finetune, c->version,  c->organization};
    for (size_t k = 0; k < sizeof got / sizeof got[0]; k++)
        if (want[k])
            assert_string_equal(got[k], want[k]);
}

/* Expected values worked out by hand from gguf-py's Metadata.get_model_id_components. */
static void test_general_from_folder_name(void **state)
{
    (void)state;
    static const general_case cases[] = {
        {.folder = "TinyLlama-1.1B-Chat-v1.0", .name_or_path = "", .params = 1100048384,
         .name = "TinyLlama 1.1B Chat v1.0", .basename = "TinyLlama", .size_label = "1.1B",
         .finetune = "Chat", .version = "v1.0", .organization = ""},
        {.folder = "stories3M", .name_or_path = "", .params = 3409664, .name = "stories3M",
         .basename = "", .size_label = "3.4M"},
        /* no size, finetune or version: too ambiguous for a basename */
        {.folder = "my-model", .name_or_path = "", .params = 1000, .name = "My Model",
         .basename = "", .finetune = "", .size_label = "1.0K"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_general(&cases[i]);
}

static void test_general_from_name_or_path(void **state)
{
    (void)state;
    static const general_case cases[] = {
        {.folder = "local-copy", .name_or_path = "meta-llama/Llama-3.2-1B", .params = 1235814400,
         .name = "Llama 3.2 1B", .organization = "Meta Llama", .basename = "Llama-3.2",
         .size_label = "1B", .version = ""},
        /* a size label far from the parameter count is taken for a context length */
        {.folder = "x", .name_or_path = "Qwen/Qwen2.5-0.5B-Instruct", .params = 100000000,
         .name = "Qwen2.5 0.5B Instruct", .finetune = "0.5b-Instruct", .size_label = "100M"},
        /* a path with several '/' is not a model id: the folder decides */
        {.folder = "Mistral-7B-v0.1", .name_or_path = "/home/u/models/x", .params = 7241732096,
         .name = "Mistral 7B v0.1", .basename = "Mistral", .size_label = "7B", .version = "v0.1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_general(&cases[i]);
}

static void test_size_label(void **state)
{
    (void)state;
    static const struct {
        int64_t n;
        const char *label;
    } cases[] = {{260032, "260K"}, {3409664, "3.4M"}, {999, "1.0K"}, {1100048384, "1.1B"},
                 {494032768, "494M"}, {46702792704, "47B"}, {7241732096, "7.2B"}, {2500000, "2.5M"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        ca_size_label(cases[i].n, buf, sizeof buf);
        assert_string_equal(buf, cases[i].label);
    }
}

/* ================================================================ bad input */

/* cv_convert fails with code and a one-line message holding fragment, and writes nothing. */

static void test_bad_missing_config(void **state)
{
    (void)state;
    const char *dir = toy_dir(&LLAMA, "no-config");
    assert_int_equal(remove((char *)tu_join(dir, "config.json")), 0);
    expect_convert_error(dir, "f16", QK_EFORMAT, "config.json: not found");
}

static void test_bad_missing_weights(void **state)
{
    (void)state;
    const char *dir = toy_dir(&LLAMA, "no-weights");
    assert_int_equal(remove((char *)tu_join(dir, "model.safetensors")), 0);
    expect_convert_error(dir, "f16", QK_EFORMAT, "model.safetensors");
}

static void test_bad_missing_tokenizer(void **state)
{
    (void)state;
    const char *dir = toy_dir(&LLAMA, "no-tokenizer");
    assert_int_equal(remove((char *)tu_join(dir, "tokenizer.model")), 0);
    expect_convert_error(dir, "f16", QK_EFORMAT, "tokenizer.model");
}

static void test_bad_unsupported_architecture(void **state)
{
    (void)state;
    toy t = LLAMA;
    t.arch = "GPT2LMHeadModel";
    const char *dir = toy_dir(&t, "gpt2");
    expect_convert_error(dir, "f16", QK_EUNSUPPORTED, "architecture 'GPT2LMHeadModel' is not supported");
    expect_convert_error(dir, "f16", QK_EUNSUPPORTED,
                         "LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM, "
                         "Qwen3ForCausalLM, Qwen3MoeForCausalLM, Llama4ForConditionalGeneration, "
                         "Llama4ForCausalLM");
}

/* The toy's tensors with one changed by edit(), written as the folder's checkpoint. */
static const char *toy_dir_edited(const toy *t, const char *name, void (*edit)(toy_tensors *))
{
    const char *dir = toy_dir(t, name);
    toy_tensors tt;
    toy_build(t, &tt);
    edit(&tt);
    write_st((char *)tu_join(dir, "model.safetensors"), tt.st, tt.data, tt.n);
    toy_free(&tt);
    return dir;
}

static size_t find_spec(const toy_tensors *tt, const char *name)
{
    for (size_t i = 0; i < tt->n; i++)
        if (!strcmp(tt->s[i].name, name))
            return i;
    fail_msg("no %s", name);
    return 0;
}

static void drop_up_proj(toy_tensors *tt)
{
    size_t i = find_spec(tt, "model.layers.1.mlp.up_proj.weight");
    free(tt->data[i]);
    memmove(&tt->st[i], &tt->st[i + 1], (tt->n - i - 1) * sizeof tt->st[0]);
    memmove(&tt->s[i], &tt->s[i + 1], (tt->n - i - 1) * sizeof tt->s[0]);
    memmove(&tt->data[i], &tt->data[i + 1], (tt->n - i - 1) * sizeof tt->data[0]);
    tt->n--;
    for (size_t k = 0; k < tt->n; k++)
        tt->st[k].name = tt->s[k].name;
}

static void test_bad_missing_tensor(void **state)
{
    (void)state;
    const char *dir = toy_dir_edited(&LLAMA, "missing-tensor", drop_up_proj);
    expect_convert_error(dir, "f16", QK_EFORMAT, "missing tensor 'model.layers.1.mlp.up_proj.weight'");
}

static void rename_to_extra(toy_tensors *tt)
{
    size_t i = find_spec(tt, "model.layers.0.post_attention_layernorm.weight");
    snprintf(tt->s[i].name, sizeof tt->s[i].name, "model.layers.0.mlp.extra.weight");
}

static void test_bad_unexpected_tensor(void **state)
{
    (void)state;
    const char *dir = toy_dir_edited(&LLAMA, "extra-tensor", rename_to_extra);
    expect_convert_error(dir, "f16", QK_EFORMAT, "unexpected tensor 'model.layers.0.mlp.extra.weight'");
}

static void rename_to_layer_9(toy_tensors *tt)
{
    size_t i = find_spec(tt, "model.layers.1.input_layernorm.weight");
    snprintf(tt->s[i].name, sizeof tt->s[i].name, "model.layers.9.input_layernorm.weight");
}

static void test_bad_layer_out_of_range(void **state)
{
    (void)state;
    const char *dir = toy_dir_edited(&LLAMA, "layer9", rename_to_layer_9);
    expect_convert_error(dir, "f16", QK_EFORMAT, "unexpected tensor 'model.layers.9.input_layernorm.weight'");
}

static void shrink_q_proj(toy_tensors *tt)
{
    size_t i = find_spec(tt, "model.layers.0.self_attn.q_proj.weight");
    tt->st[i].shape[0] = 24;
}

static void test_bad_shape_contradicts_config(void **state)
{
    (void)state;
    const char *dir = toy_dir_edited(&LLAMA, "bad-shape", shrink_q_proj);
    expect_convert_error(dir, "f16", QK_EFORMAT,
                         "tensor 'model.layers.0.self_attn.q_proj.weight' has shape [24, 32] "
                         "but config.json implies [32, 32]");
}

static void embed_as_i32(toy_tensors *tt) { tt->st[find_spec(tt, "model.embed_tokens.weight")].dtype = ST_I32; }
static void embed_as_f8(toy_tensors *tt)
{
    size_t i = find_spec(tt, "model.embed_tokens.weight");
    tt->st[i].dtype = ST_F8_E4M3; /* the first quarter of the F32 bytes, without a scale */
}

static void test_bad_dtype_i32(void **state)
{
    (void)state;
    const char *dir = toy_dir_edited(&LLAMA, "i32", embed_as_i32);
    expect_convert_error(dir, "f16", QK_EUNSUPPORTED, "tensor 'model.embed_tokens.weight' has dtype I32");
}

static void test_bad_dtype_f8(void **state)
{
    (void)state;
    const char *dir = toy_dir_edited(&LLAMA, "f8", embed_as_f8);
    expect_convert_error(dir, "f16", QK_EFORMAT,
                         "FP8 tensor 'model.embed_tokens.weight' has no scale tensor "
                         "'model.embed_tokens.weight_scale_inv'");
}

/* The index names a shard that does not hold the tensor. */
static void test_bad_inconsistent_index(void **state)
{
    (void)state;
    const char *dir = toy_dir(&LLAMA, "bad-index");
    const char *shard = (char *)tu_join(dir, "model-00001-of-00001.safetensors");
    assert_int_equal(rename((char *)tu_join(dir, "model.safetensors"), shard), 0);
    write_text((char *)tu_join(dir, "model.safetensors.index.json"),
               "{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00001.safetensors\", "
               "\"model.layers.7.mlp.up_proj.weight\": \"model-00001-of-00001.safetensors\"}}");
    expect_convert_error(dir, "f16", QK_EFORMAT, "model.layers.7.mlp.up_proj.weight");
}

static void nan_in_up_proj(toy_tensors *tt)
{
    size_t i = find_spec(tt, "model.layers.1.mlp.up_proj.weight");
    float nan = NAN;
    memcpy((float *)tt->data[i] + 3 * tt->s[i].shape[1] + 5, &nan, 4);
}

static void test_bad_nan_when_quantizing(void **state)
{
    (void)state;
    const char *dir = toy_dir_edited(&LLAMA, "nan", nan_in_up_proj);
    expect_convert_error(dir, "q8_0", QK_ERANGE,
                         "tensor 'model.layers.1.mlp.up_proj.weight': row 3 holds NaN or Inf");
    /* float outputs carry NaN through, as llama.cpp's converter does */
    convert_ok(dir, tu_tmp("nan-f16.gguf"), "f16");
}

static void test_bad_outtype(void **state)
{
    (void)state;
    const char *dir = toy_dir(&LLAMA, "outtype");
    expect_convert_error(dir, "q9_9", QK_EFORMAT, "unknown --outtype 'q9_9'");
}

static void test_bad_config_values(void **state)
{
    (void)state;
    qk_err err = {{0}};
    ca_config c;
    static const char heads0[] = "{\"architectures\": [\"LlamaForCausalLM\"], \"num_hidden_layers\": 2, "
                                 "\"hidden_size\": 32, \"intermediate_size\": 48, \"num_attention_heads\": 0, "
                                 "\"vocab_size\": 512, \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-5}";
    assert_int_equal(ca_config_parse(heads0, strlen(heads0), "config.json", &c, &err), QK_EFORMAT);
    tu_assert_msg(err.msg, "config.json: 'num_attention_heads' must be an integer in [1, 4096]");
    static const char dynamic[] = "{\"architectures\": [\"LlamaForCausalLM\"], \"num_hidden_layers\": 2, "
                                  "\"hidden_size\": 32, \"intermediate_size\": 48, \"num_attention_heads\": 4, "
                                  "\"vocab_size\": 512, \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-5, "
                                  "\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}}";
    assert_int_equal(ca_config_parse(dynamic, strlen(dynamic), "config.json", &c, &err), QK_EUNSUPPORTED);
    tu_assert_msg(err.msg, "rope scaling type 'dynamic' is not supported");
    static const char kv3[] = "{\"architectures\": [\"LlamaForCausalLM\"], \"num_hidden_layers\": 2, "
                              "\"hidden_size\": 32, \"intermediate_size\": 48, \"num_attention_heads\": 4, "
                              "\"num_key_value_heads\": 3, \"vocab_size\": 512, \"max_position_embeddings\": 64, "
                              "\"rms_norm_eps\": 1e-5}";
    assert_int_equal(ca_config_parse(kv3, strlen(kv3), "config.json", &c, &err), QK_EFORMAT);
    tu_assert_msg(err.msg, "num_attention_heads 4 is not a multiple of num_key_value_heads 3");
    assert_int_equal(ca_config_parse("[1]", 3, "config.json", &c, &err), QK_EFORMAT);
    tu_assert_msg(err.msg, "config.json: not a JSON object");
}

/* Values config.json used to get away with: a non-bool flag read as false, a linear/yarn rope
 * factor of 0 or below written as is, special ids past the vocabulary dropped silently. Each is a
 * one-line error naming the key; the rows with want 0 must still parse. */
static void test_config_loose_values(void **state)
{
    (void)state;
    static const char base[] = "{\"architectures\": [\"LlamaForCausalLM\"], \"num_hidden_layers\": 2, "
                               "\"hidden_size\": 32, \"intermediate_size\": 48, \"num_attention_heads\": 4, "
                               "\"vocab_size\": 512, \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-5";
    static const struct {
        const char *extra;
        int want;
        const char *msg;
    } cases[] = {
        {"\"tie_word_embeddings\": \"yes\"", QK_EFORMAT, "config.json: 'tie_word_embeddings' must be true or false"},
        {"\"tie_word_embeddings\": 1", QK_EFORMAT, "'tie_word_embeddings' must be true or false"},
        {"\"attention_bias\": \"false\"", QK_EFORMAT, "'attention_bias' must be true or false"},
        {"\"mlp_bias\": []", QK_EFORMAT, "'mlp_bias' must be true or false"},
        {"\"rope_scaling\": {\"type\": \"linear\", \"factor\": 0}", QK_EFORMAT,
         "linear rope scaling 'factor' must be positive, got 0"},
        {"\"rope_scaling\": {\"type\": \"linear\", \"factor\": -3}", QK_EFORMAT,
         "linear rope scaling 'factor' must be positive, got -3"},
        {"\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 0, \"original_max_position_embeddings\": 32}",
         QK_EFORMAT, "yarn rope scaling 'factor' must be positive"},
        {"\"bos_token_id\": 512", QK_EFORMAT, "'bos_token_id' must be a token id below vocab_size 512"},
        {"\"bos_token_id\": -1", QK_EFORMAT, "'bos_token_id' must be a token id below vocab_size 512"},
        {"\"bos_token_id\": \"1\"", QK_EFORMAT, "'bos_token_id' must be a token id below vocab_size 512"},
        {"\"eos_token_id\": 1.5", QK_EFORMAT, "'eos_token_id' must be a token id below vocab_size 512"},
        {"\"eos_token_id\": [2, 100000]", QK_EFORMAT, "'eos_token_id' must be a token id below vocab_size 512"},
        {"\"eos_token_id\": []", QK_EFORMAT, "'eos_token_id' must be a token id below vocab_size 512"},
        /* still fine */
        {"\"tie_word_embeddings\": true, \"bos_token_id\": 1, \"eos_token_id\": [2, 511]", 0, NULL},
        {"\"tie_word_embeddings\": null, \"bos_token_id\": null", 0, NULL},
        {"\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.5}", 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[1024];
        snprintf(json, sizeof json, "%s, %s}", base, cases[i].extra);
        qk_err err = {{0}};
        ca_config c;
        int rc = ca_config_parse(json, strlen(json), "config.json", &c, &err);
        if (rc != cases[i].want)
            fail_msg("case %zu (%s): status %d, expected %d: %s", i, cases[i].extra, rc, cases[i].want, err.msg);
        if (cases[i].msg)
            tu_assert_msg(err.msg, cases[i].msg);
    }
}

/* ================================================================ qkit tokenize (CLI) */

/* `$QKIT tokenize DIR -f FILE --ids --no-bos` parsed back into ids; skips when $QKIT is unset. */
static int32_t *cli_tokenize(const char *qkit, const char *dir, const char *file, size_t *n)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' tokenize '%s' -f '%s' --ids --no-bos", qkit, dir, file);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    sbuf out = {0};
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, p)) > 0)
        sb_put(&out, buf, got);
    assert_int_equal(pclose(p), 0);
    cJSON *arr = cJSON_Parse(out.p ? out.p : "");
    free(out.p);
    assert_true(cJSON_IsArray(arr));
    *n = (size_t)cJSON_GetArraySize(arr);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    assert_non_null(ids);
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) ids[i++] = (int32_t)e->valuedouble;
    cJSON_Delete(arr);
    return ids;
}

static const char *golden_tokenizer_dir(const char *key)
{
    if (!strcmp(key, "stories260K"))
        return tu_shared("models/stories260K");
    if (!strcmp(key, "tinyllama"))
        return tu_shared("hf-configs/TinyLlama-1.1B-Chat-v1.0");
    if (!strcmp(key, "qwen2.5"))
        return tu_shared("hf-configs/Qwen2.5-0.5B-Instruct");
    fail_msg("unknown tokenizer %s", key);
    return NULL;
}

static const char *qkit_or_skip(void)
{
    const char *qkit = getenv("QKIT");
    if (!qkit || !tu_exists(qkit)) {
        print_message("$QKIT is not set to the qkit binary (test skipped)\n");
        skip();
    }
    return qkit;
}

static void test_tokenize_cli_golden_strings(void **state)
{
    (void)state;
    const char *qkit = qkit_or_skip();
    TU_SHARED(gpath, "golden/tokenizer/tokenizer-strings.json");
    cJSON *gold = tu_read_json(gpath);
    const cJSON *tok;
    size_t checked = 0;
    cJSON_ArrayForEach(tok, gold)
    {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", golden_tokenizer_dir(tok->string));
        const cJSON *e;
        cJSON_ArrayForEach(e, tok)
        {
            const char *text = cJSON_GetObjectItem(e, "text")->valuestring;
            const cJSON *want = cJSON_GetObjectItem(e, "ids");
            const char *file = tu_tmp("text.txt");
            write_text(file, text);
            size_t n;
            int32_t *ids = cli_tokenize(qkit, dir, file, &n);
            if (n != (size_t)cJSON_GetArraySize(want))
                fail_msg("%s: '%s': %zu ids, want %d", tok->string, text, n, cJSON_GetArraySize(want));
            for (size_t i = 0; i < n; i++)
                if (ids[i] != (int32_t)cJSON_GetArrayItem(want, (int)i)->valuedouble)
                    fail_msg("%s: '%s': id %zu differs", tok->string, text, i);
            free(ids);
            checked++;
        }
    }
    assert_true(checked >= 100);
    cJSON_Delete(gold);
}

/* Whole files: count, first 64, last 16 and sha256 of the comma-joined ids. */
static void test_tokenize_cli_golden_files(void **state)
{
    (void)state;
    const char *qkit = qkit_or_skip();
    TU_SHARED(gpath, "golden/tokenizer/tokenizer-files.json");
    TU_SHARED(eval, "text/tinystories-eval.txt");
    TU_SHARED(wiki, "text/wiki.test.raw");
    cJSON *gold = tu_read_json(gpath);
    /* the first 200 lines of wiki.test.raw, newlines kept */
    size_t n_wiki;
    char *w = tu_read(wiki, &n_wiki), *p = w;
    for (int line = 0; line < 200 && p; line++)
        p = memchr(p, '\n', n_wiki - (size_t)(p - w)), p = p ? p + 1 : NULL;
    const char *head = tu_tmp("wiki200.txt");
    tu_write(head, w, p ? (size_t)(p - w) : n_wiki);
    free(w);
    const cJSON *tok;
    cJSON_ArrayForEach(tok, gold)
    {
        const char *file = strstr(cJSON_GetObjectItem(tok, "file")->valuestring, "first 200") ? head : eval;
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", golden_tokenizer_dir(tok->string));
        size_t n;
        int32_t *ids = cli_tokenize(qkit, dir, file, &n);
        assert_int_equal(n, (size_t)cJSON_GetObjectItem(tok, "n_tokens")->valuedouble);
        const cJSON *first = cJSON_GetObjectItem(tok, "first_64"), *last = cJSON_GetObjectItem(tok, "last_16");
        for (int i = 0; i < 64; i++)
            assert_int_equal(ids[i], (int32_t)cJSON_GetArrayItem(first, i)->valuedouble);
        for (int i = 0; i < 16; i++)
            assert_int_equal(ids[n - 16 + (size_t)i], (int32_t)cJSON_GetArrayItem(last, i)->valuedouble);
        sbuf joined = {0};
        for (size_t i = 0; i < n; i++)
            sb_printf(&joined, i ? ",%d" : "%d", ids[i]);
        char hex[65];
        sha256_hex(joined.p, joined.n, hex);
        assert_string_equal(hex, cJSON_GetObjectItem(tok, "sha256_ids_comma_joined")->valuestring);
        free(joined.p);
        free(ids);
    }
    cJSON_Delete(gold);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_py_float_repr),
        cmocka_unit_test(test_stories3M_f32),
        cmocka_unit_test(test_stories3M_f16),
        cmocka_unit_test(test_stories3M_bf16),
        cmocka_unit_test(test_stories3M_auto_is_bf16),
        cmocka_unit_test(test_stories3M_mixes),
        cmocka_unit_test(test_mixtral_f32_f16_bf16),
        cmocka_unit_test(test_mixtral_mixes),
        cmocka_unit_test(test_qwen3moe_stacks_experts),
        cmocka_unit_test(test_bad_moe_checkpoints),
        cmocka_unit_test(test_llama4_tiny_layout),
        cmocka_unit_test(test_stories260K_matches_published_gguf),
        cmocka_unit_test(test_stories260K_auto_is_f16),
        cmocka_unit_test(test_llama_f32_permutation),
        cmocka_unit_test(test_mistral_bf16_tied_to_f16),
        cmocka_unit_test(test_qwen2_biases_not_permuted),
        cmocka_unit_test(test_qwen3_head_dim_and_qk_norm),
        cmocka_unit_test(test_llama3_rope_freqs),
        cmocka_unit_test(test_rope_parameters),
        cmocka_unit_test(test_linear_and_yarn_scaling),
        cmocka_unit_test(test_quantized_outtype),
        cmocka_unit_test(test_threads_do_not_change_output),
        cmocka_unit_test(test_sharded_checkpoint),
        cmocka_unit_test(test_split_output),
        cmocka_unit_test(test_bpe_tokenizer_export),
        cmocka_unit_test(test_spm_tokenizer_export),
        cmocka_unit_test(test_llama_vocab_extras),
        cmocka_unit_test(test_general_from_folder_name),
        cmocka_unit_test(test_general_from_name_or_path),
        cmocka_unit_test(test_size_label),
        cmocka_unit_test(test_bad_missing_config),
        cmocka_unit_test(test_bad_missing_weights),
        cmocka_unit_test(test_bad_missing_tokenizer),
        cmocka_unit_test(test_bad_unsupported_architecture),
        cmocka_unit_test(test_bad_missing_tensor),
        cmocka_unit_test(test_bad_unexpected_tensor),
        cmocka_unit_test(test_bad_layer_out_of_range),
        cmocka_unit_test(test_bad_shape_contradicts_config),
        cmocka_unit_test(test_bad_dtype_i32),
        cmocka_unit_test(test_bad_dtype_f8),
        cmocka_unit_test(test_bad_inconsistent_index),
        cmocka_unit_test(test_bad_nan_when_quantizing),
        cmocka_unit_test(test_bad_outtype),
        cmocka_unit_test(test_bad_config_values),
        cmocka_unit_test(test_config_loose_values),
        cmocka_unit_test(test_tokenize_cli_golden_strings),
        cmocka_unit_test(test_tokenize_cli_golden_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
