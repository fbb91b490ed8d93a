/* arch.c — config.json and tensor names of Llama, Mistral, Qwen2 and Qwen3 checkpoints to GGUF. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../formats/hf_tokenizer.h"
#include "arch.h"

/* ================================================================ config.json */

static const struct {
    const char *hf;
    ca_arch arch;
} ARCHS[] = {
    {"LlamaForCausalLM", CA_ARCH_LLAMA},
    {"MistralForCausalLM", CA_ARCH_LLAMA},
    {"Qwen2ForCausalLM", CA_ARCH_QWEN2},
    {"Qwen3ForCausalLM", CA_ARCH_QWEN3},
};

static const char *const GGUF_ARCH[CA_ARCH_COUNT] = {"llama", "qwen2", "qwen3"};

const char *ca_supported(void)
{
    return "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM";
}

typedef struct {
    const cJSON *root;
    const char *name;
    qk_err *err;
} cfg_ctx;

/* An integer in [lo, hi]. Absent: *out keeps its default unless required. */
static int get_int(const cfg_ctx *c, const cJSON *obj, const char *key, int64_t lo, int64_t hi,
                   bool required, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return qk_err_set(c->err, QK_EFORMAT, "%s: '%s' is missing", c->name, key);
        return QK_OK;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d))
        return qk_err_set(c->err, QK_EFORMAT, "%s: '%s' must be an integer in [%lld, %lld]", c->name,
                          key, (long long)lo, (long long)hi);
    *out = (int64_t)d;
    return QK_OK;
}

/* A finite number; *has tells whether it was present. */
static int get_num(const cfg_ctx *c, const cJSON *obj, const char *key, bool *has, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *has = false;
    if (!v || cJSON_IsNull(v))
        return QK_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return qk_err_set(c->err, QK_EFORMAT, "%s: '%s' must be a finite number", c->name, key);
    *has = true;
    *out = v->valuedouble;
    return QK_OK;
}

static bool get_bool(const cJSON *obj, const char *key, bool dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static void get_str(const cJSON *obj, const char *key, char *buf, size_t size)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    buf[0] = '\0';
    if (cJSON_IsString(v) && strlen(v->valuestring) < size)
        memcpy(buf, v->valuestring, strlen(v->valuestring) + 1);
}

static int parse_arch(const cfg_ctx *c, ca_config *o)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(c->root, "architectures");
    const cJSON *first = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
    if (!cJSON_IsString(first))
        return qk_err_set(c->err, QK_EFORMAT,
                          "%s: 'architectures' must be a non-empty list of names (supported: %s)",
                          c->name, ca_supported());
    snprintf(o->hf_arch, sizeof o->hf_arch, "%s", first->valuestring);
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++) {
        if (!strcmp(first->valuestring, ARCHS[i].hf)) {
            o->arch = ARCHS[i].arch;
            o->gguf_arch = GGUF_ARCH[o->arch];
            return QK_OK;
        }
    }
    return qk_err_set(c->err, QK_EUNSUPPORTED, "%s: architecture '%s' is not supported (supported: %s)",
                      c->name, o->hf_arch, ca_supported());
}

/* The sizes every supported architecture needs, with bounds far above real models. */
static int parse_sizes(const cfg_ctx *c, ca_config *o)
{
    const cJSON *r = c->root;
    int rc;
    if ((rc = get_int(c, r, "num_hidden_layers", 1, 4096, true, &o->n_layer)) ||
        (rc = get_int(c, r, "hidden_size", 1, 1 << 20, true, &o->n_embd)) ||
        (rc = get_int(c, r, "intermediate_size", 1, 1 << 22, true, &o->n_ff)) ||
        (rc = get_int(c, r, "num_attention_heads", 1, 4096, true, &o->n_head)) ||
        (rc = get_int(c, r, "vocab_size", 1, (int64_t)HF_MAX_TOKEN_ID + 1, true, &o->n_vocab)) ||
        (rc = get_int(c, r, "max_position_embeddings", 1, UINT32_MAX, true, &o->n_ctx)))
        return rc;
    o->n_head_kv = o->n_head;
    o->has_head_kv = cJSON_GetObjectItemCaseSensitive(r, "num_key_value_heads") &&
                     !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r, "num_key_value_heads"));
    if ((rc = get_int(c, r, "num_key_value_heads", 1, o->n_head, false, &o->n_head_kv)))
        return rc;
    if (o->n_head % o->n_head_kv)
        return qk_err_set(c->err, QK_EFORMAT,
                          "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                          c->name, (long long)o->n_head, (long long)o->n_head_kv);
    o->head_dim = 0;
    if ((rc = get_int(c, r, "head_dim", 1, 1 << 16, false, &o->head_dim)))
        return rc;
    o->has_head_dim = o->head_dim > 0;
    if (!o->has_head_dim) {
        if (o->n_embd % o->n_head)
            return qk_err_set(c->err, QK_EFORMAT,
                              "%s: hidden_size %lld is not a multiple of num_attention_heads %lld "
                              "(and no head_dim)",
                              c->name, (long long)o->n_embd, (long long)o->n_head);
        o->head_dim = o->n_embd / o->n_head;
    }
    bool has;
    if ((rc = get_num(c, r, "rms_norm_eps", &has, &o->rms_eps)))
        return rc;
    if (!has || !(o->rms_eps > 0))
        return qk_err_set(c->err, QK_EFORMAT, "%s: 'rms_norm_eps' must be a positive number", c->name);
    return QK_OK;
}

/* transformers 5 writes rope_parameters; older configs rope_theta and rope_scaling. */
static const cJSON *rope_params(const cJSON *root)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    if (!cJSON_IsObject(p))
        p = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    return cJSON_IsObject(p) ? p : NULL;
}

static const char *rope_type(const cJSON *p)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "rope_type");
    if (!cJSON_IsString(t))
        t = cJSON_GetObjectItemCaseSensitive(p, "type");
    return cJSON_IsString(t) ? t->valuestring : "default";
}

static int parse_llama3(const cfg_ctx *c, const cJSON *p, ca_config *o)
{
    bool has;
    int rc;
    o->rope_factor = 8.0;
    o->rope_low_freq = 1.0;
    o->rope_high_freq = 4.0;
    o->rope_orig_ctx = 8192;
    if ((rc = get_num(c, p, "factor", &has, &o->rope_factor)) ||
        (rc = get_num(c, p, "low_freq_factor", &has, &o->rope_low_freq)) ||
        (rc = get_num(c, p, "high_freq_factor", &has, &o->rope_high_freq)) ||
        (rc = get_int(c, c->root, "original_max_position_embeddings", 1, UINT32_MAX, false, &o->rope_orig_ctx)))
        return rc;
    if (o->arch != CA_ARCH_LLAMA)
        return qk_err_set(c->err, QK_EUNSUPPORTED, "%s: llama3 rope scaling on %s is not supported",
                          c->name, o->hf_arch);
    if (!(o->rope_factor > 0) || !(o->rope_low_freq > 0) || !(o->rope_high_freq > 0) ||
        o->rope_low_freq == o->rope_high_freq)
        return qk_err_set(c->err, QK_EFORMAT,
                          "%s: llama3 rope scaling needs positive factors with "
                          "low_freq_factor != high_freq_factor",
                          c->name);
    o->rope_kind = CA_ROPE_LLAMA3;
    return QK_OK;
}

static int parse_rope(const cfg_ctx *c, ca_config *o)
{
    const cJSON *p = rope_params(c->root);
    int rc = get_num(c, c->root, "rope_theta", &o->has_rope_theta, &o->rope_theta);
    if (!rc && !o->has_rope_theta && p)
        rc = get_num(c, p, "rope_theta", &o->has_rope_theta, &o->rope_theta);
    if (rc)
        return rc;
    if (o->has_rope_theta && !(o->rope_theta > 0))
        return qk_err_set(c->err, QK_EFORMAT, "%s: 'rope_theta' must be positive", c->name);
    o->rope_kind = CA_ROPE_NONE;
    if (!p)
        return QK_OK;
    const char *type = rope_type(p);
    bool has_factor;
    if ((rc = get_num(c, p, "factor", &has_factor, &o->rope_factor)))
        return rc;
    if (!strcmp(type, "default"))
        return QK_OK;
    if (!strcmp(type, "linear")) {
        o->rope_kind = has_factor ? CA_ROPE_LINEAR : CA_ROPE_NONE;
        return QK_OK;
    }
    if (!strcmp(type, "yarn")) {
        o->rope_kind = has_factor ? CA_ROPE_YARN : CA_ROPE_NONE;
        if (!has_factor)
            return QK_OK;
        return get_int(c, p, "original_max_position_embeddings", 1, UINT32_MAX, true, &o->rope_orig_ctx);
    }
    if (!strcasecmp(type, "llama3"))
        return parse_llama3(c, p, o);
    return qk_err_set(c->err, QK_EUNSUPPORTED,
                      "%s: rope scaling type '%s' is not supported (default, linear, yarn, llama3)",
                      c->name, type);
}

int ca_config_parse(const char *json, size_t len, const char *name, ca_config *out, qk_err *err)
{
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return qk_err_set(err, QK_EFORMAT, "%s: not a JSON object", name);
    }
    cfg_ctx c = {root, name, err};
    int rc = parse_arch(&c, out);
    if (!rc)
        rc = parse_sizes(&c, out);
    if (!rc)
        rc = parse_rope(&c, out);
    if (!rc) {
        out->tie_embeddings = get_bool(root, "tie_word_embeddings", false);
        out->attention_bias = get_bool(root, "attention_bias", false);
        out->mlp_bias = get_bool(root, "mlp_bias", false);
        get_str(root, "torch_dtype", out->dtype, sizeof out->dtype);
        if (!out->dtype[0])
            get_str(root, "dtype", out->dtype, sizeof out->dtype);
        get_str(root, "_name_or_path", out->name_or_path, sizeof out->name_or_path);
    }
    cJSON_Delete(root);
    return rc;
}

int ca_config_load(const char *dir, ca_config *out, qk_err *err)
{
    size_t plen = strlen(dir) + sizeof "/config.json";
    char *path = malloc(plen), *json = NULL;
    size_t len = 0;
    if (!path)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", dir);
    snprintf(path, plen, "%s/config.json", dir);
    qk_err read_err;
    int rc = hf_file_read(path, &json, &len, &read_err);
    /* a folder without config.json is bad input, not an I/O failure */
    if (rc == QK_EIO && strstr(read_err.msg, "not found"))
        rc = qk_err_set(err, QK_EFORMAT, "%s: not found (not a Hugging Face model folder?)", path);
    else if (rc)
        qk_err_set(err, rc, "%s", read_err.msg);
    if (!rc)
        rc = ca_config_parse(json, len, path, out, err);
    free(json);
    free(path);
    return rc;
}

/* ================================================================ tensors */

typedef struct {
    const char *hf;     /* suffix after "model.layers.N." (layer tensors) or the full name */
    ca_kind kind;
    bool layer;
    bool has_bias;      /* a ".bias" variant exists */
    const char *gguf;   /* GGUF base name ("blk.%d." is prepended for layer tensors) */
} name_entry;

static const name_entry NAMES[] = {
    {"model.embed_tokens", CA_T_TOKEN_EMBD, false, false, "token_embd"},
    {"model.norm", CA_T_OUTPUT_NORM, false, false, "output_norm"},
    {"lm_head", CA_T_OUTPUT, false, false, "output"},
    {"input_layernorm", CA_T_ATTN_NORM, true, false, "attn_norm"},
    {"self_attn.q_proj", CA_T_ATTN_Q, true, true, "attn_q"},
    {"self_attn.k_proj", CA_T_ATTN_K, true, true, "attn_k"},
    {"self_attn.v_proj", CA_T_ATTN_V, true, true, "attn_v"},
    {"self_attn.o_proj", CA_T_ATTN_OUT, true, true, "attn_output"},
    {"self_attn.q_norm", CA_T_ATTN_Q_NORM, true, false, "attn_q_norm"},
    {"self_attn.k_norm", CA_T_ATTN_K_NORM, true, false, "attn_k_norm"},
    {"post_attention_layernorm", CA_T_FFN_NORM, true, false, "ffn_norm"},
    {"mlp.gate_proj", CA_T_FFN_GATE, true, true, "ffn_gate"},
    {"mlp.up_proj", CA_T_FFN_UP, true, true, "ffn_up"},
    {"mlp.down_proj", CA_T_FFN_DOWN, true, true, "ffn_down"},
};

static const name_entry *entry_of(ca_kind kind)
{
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (NAMES[i].kind == kind)
            return &NAMES[i];
    return NULL;
}

static bool kind_in_arch(const ca_config *c, ca_kind k)
{
    if (k == CA_T_ATTN_Q_NORM || k == CA_T_ATTN_K_NORM)
        return c->arch == CA_ARCH_QWEN3;
    return k != CA_T_ROPE_FREQS || c->arch == CA_ARCH_LLAMA;
}

static void set_shape(ca_tensor *t, int64_t ne0, int64_t ne1)
{
    t->n_dims = ne1 ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = ne1 ? ne1 : 1;
    t->ne[2] = t->ne[3] = 1;
}

/* Expected GGUF shape: weights are [in, out] in ne order, biases [out]. */
static void expected_shape(const ca_config *c, ca_tensor *t)
{
    int64_t q = c->n_head * c->head_dim, kv = c->n_head_kv * c->head_dim, e = c->n_embd;
    int64_t in = e, out = e;
    switch (t->kind) {
    case CA_T_TOKEN_EMBD: case CA_T_OUTPUT: out = c->n_vocab; break;
    case CA_T_ATTN_Q: out = q; break;
    case CA_T_ATTN_K: case CA_T_ATTN_V: out = kv; break;
    case CA_T_ATTN_OUT: in = q; break;
    case CA_T_FFN_GATE: case CA_T_FFN_UP: out = c->n_ff; break;
    case CA_T_FFN_DOWN: in = c->n_ff; break;
    case CA_T_ATTN_Q_NORM: case CA_T_ATTN_K_NORM: set_shape(t, c->head_dim, 0); return;
    case CA_T_ROPE_FREQS: set_shape(t, c->head_dim / 2, 0); return;
    default: set_shape(t, e, 0); return; /* the RMS norms */
    }
    if (t->bias)
        set_shape(t, out, 0);
    else
        set_shape(t, in, out);
}

static void fill_tensor(const ca_config *c, const name_entry *e, int layer, bool bias, ca_tensor *t)
{
    memset(t, 0, sizeof *t);
    t->kind = e ? e->kind : CA_T_ROPE_FREQS;
    t->layer = layer;
    t->bias = bias;
    const char *suffix = bias ? "bias" : "weight";
    if (!e) {
        snprintf(t->name, sizeof t->name, "rope_freqs.weight");
    } else if (layer >= 0) {
        snprintf(t->name, sizeof t->name, "blk.%d.%s.%s", layer, e->gguf, suffix);
        snprintf(t->hf_name, sizeof t->hf_name, "model.layers.%d.%s.%s", layer, e->hf, suffix);
    } else {
        snprintf(t->name, sizeof t->name, "%s.%s", e->gguf, suffix);
        snprintf(t->hf_name, sizeof t->hf_name, "%s.%s", e->hf, suffix);
    }
    expected_shape(c, t);
    /* LlamaModel.permute(q, n_head, n_head) and permute(k, n_head, n_head_kv) */
    if (c->arch == CA_ARCH_LLAMA && t->kind == CA_T_ATTN_Q)
        t->perm_heads = c->n_head;
    if (c->arch == CA_ARCH_LLAMA && t->kind == CA_T_ATTN_K)
        t->perm_heads = c->n_head_kv;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

/* "model.layers.N.rest" → N and rest; false for other names. */
static bool split_layer(const char *name, int64_t *layer, const char **rest)
{
    static const char prefix[] = "model.layers.";
    if (strncmp(name, prefix, sizeof prefix - 1))
        return false;
    const char *p = name + sizeof prefix - 1;
    int64_t n = 0;
    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9' && n < 1000000)
        n = n * 10 + (*p++ - '0');
    if (*p != '.')
        return false;
    *layer = n;
    *rest = p + 1;
    return true;
}

/* base (without ".weight"/".bias") matched against the table. */
static const name_entry *match_entry(const char *base, size_t len, bool layer)
{
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (NAMES[i].layer == layer && strlen(NAMES[i].hf) == len && !memcmp(NAMES[i].hf, base, len))
            return &NAMES[i];
    return NULL;
}

int ca_map_tensor(const ca_config *c, const char *hf_name, ca_tensor *out, qk_err *err)
{
    if (ends_with(hf_name, ".attention.masked_bias") || ends_with(hf_name, ".attention.bias") ||
        ends_with(hf_name, ".rotary_emb.inv_freq"))
        return CA_SKIP;
    int64_t layer = -1;
    const char *rest = hf_name;
    bool in_layer = split_layer(hf_name, &layer, &rest);
    bool bias = ends_with(rest, ".bias");
    const name_entry *e = NULL;
    if (bias || ends_with(rest, ".weight"))
        e = match_entry(rest, strlen(rest) - (bias ? 5 : 7), in_layer);
    if (!e || (bias && !e->has_bias) || !kind_in_arch(c, e->kind) || (in_layer && layer >= c->n_layer))
        return qk_err_set(err, QK_EFORMAT, "unexpected tensor '%s' for %s with %lld layers", hf_name,
                          c->hf_arch, (long long)c->n_layer);
    fill_tensor(c, e, (int)layer, bias, out);
    return CA_MAPPED;
}

/* Per-layer tensors in checkpoint order; biases by architecture and config flags. */
static const struct {
    ca_kind kind;
    bool bias;
} LAYER_REQ[] = {
    {CA_T_ATTN_NORM, false}, {CA_T_ATTN_Q, false},   {CA_T_ATTN_Q, true},     {CA_T_ATTN_K, false},
    {CA_T_ATTN_K, true},     {CA_T_ATTN_V, false},   {CA_T_ATTN_V, true},     {CA_T_ATTN_OUT, false},
    {CA_T_ATTN_OUT, true},   {CA_T_ATTN_Q_NORM, false}, {CA_T_ATTN_K_NORM, false},
    {CA_T_FFN_NORM, false},  {CA_T_FFN_GATE, false}, {CA_T_FFN_GATE, true},   {CA_T_FFN_UP, false},
    {CA_T_FFN_UP, true},     {CA_T_FFN_DOWN, false}, {CA_T_FFN_DOWN, true},
};
#define N_LAYER_REQ (sizeof LAYER_REQ / sizeof LAYER_REQ[0])

static bool layer_needs(const ca_config *c, ca_kind k, bool bias)
{
    if (!kind_in_arch(c, k))
        return false;
    if (!bias)
        return true;
    bool ffn = k == CA_T_FFN_GATE || k == CA_T_FFN_UP || k == CA_T_FFN_DOWN;
    if (c->arch == CA_ARCH_QWEN2)
        return k == CA_T_ATTN_Q || k == CA_T_ATTN_K || k == CA_T_ATTN_V;
    return ffn ? c->mlp_bias : c->attention_bias;
}

bool ca_required(const ca_config *c, size_t i, ca_tensor *out)
{
    static const ca_kind global[] = {CA_T_TOKEN_EMBD, CA_T_OUTPUT_NORM, CA_T_OUTPUT};
    size_t n_global = c->tie_embeddings ? 2 : 3;
    if (i < n_global) {
        fill_tensor(c, entry_of(global[i]), -1, false, out);
        return true;
    }
    i -= n_global;
    for (int64_t l = 0; l < c->n_layer; l++) {
        for (size_t k = 0; k < N_LAYER_REQ; k++) {
            if (!layer_needs(c, LAYER_REQ[k].kind, LAYER_REQ[k].bias))
                continue;
            if (i-- == 0) {
                fill_tensor(c, entry_of(LAYER_REQ[k].kind), (int)l, LAYER_REQ[k].bias, out);
                return true;
            }
        }
    }
    return false;
}

int64_t ca_permute_row(int64_t row, int64_t n_rows, int64_t heads)
{
    /* reshape(heads, 2, D/2).swapaxes(1, 2): output (h, i, j) holds input (h, j, i) */
    int64_t d = n_rows / heads, half = d / 2;
    int64_t h = row / d, r = row % d;
    return h * d + (r % 2) * half + r / 2;
}

/* ================================================================ rope_freqs */

void ca_rope_freqs(const ca_config *c, float *out)
{
    /* torch: freqs = 1 / base ** (arange(0, dim, 2) / dim) in float32; a Python scalar meets a
     * float32 tensor as a float32, and `scalar / t` is t.reciprocal() * scalar. */
    const float base = (float)(c->has_rope_theta ? c->rope_theta : 10000.0);
    const int64_t dim = c->head_dim;
    const float factor = (float)c->rope_factor, low = (float)c->rope_low_freq;
    const float lo_wavelen = (float)((double)c->rope_orig_ctx / c->rope_low_freq);
    const float hi_wavelen = (float)((double)c->rope_orig_ctx / c->rope_high_freq);
    const float span = (float)(c->rope_high_freq - c->rope_low_freq);
    const float two_pi = (float)(2.0 * 3.14159265358979323846), orig = (float)c->rope_orig_ctx;
    for (int64_t i = 0; i < dim / 2; i++) {
        float e = (float)(2 * i) / (float)dim;
        float p = (float)pow((double)base, (double)e); /* correctly rounded in practice */
        float freq = 1.0f / p;
        float wavelen = (1.0f / freq) * two_pi;
        if (wavelen < hi_wavelen) {
            out[i] = 1.0f;
        } else if (wavelen > lo_wavelen) {
            out[i] = factor;
        } else {
            float smooth = ((1.0f / wavelen) * orig - low) / span;
            out[i] = 1.0f / ((1.0f - smooth) / factor + smooth);
        }
    }
}

/* ================================================================ hyper-parameters */

static int set_u32(gguf_writer *w, const ca_config *c, const char *key, int64_t v)
{
    char k[96];
    snprintf(k, sizeof k, "%s.%s", c->gguf_arch, key);
    return gguf_writer_set_u32(w, k, (uint32_t)v);
}

static int set_f32(gguf_writer *w, const ca_config *c, const char *key, double v)
{
    char k[96];
    snprintf(k, sizeof k, "%s.%s", c->gguf_arch, key);
    return gguf_writer_set_f32(w, k, (float)v);
}

static int write_rope_scaling(gguf_writer *w, const ca_config *c)
{
    if (c->rope_kind != CA_ROPE_LINEAR && c->rope_kind != CA_ROPE_YARN)
        return QK_OK;
    char k[96];
    snprintf(k, sizeof k, "%s.rope.scaling.type", c->gguf_arch);
    int rc = gguf_writer_set_str(w, k, c->rope_kind == CA_ROPE_LINEAR ? "linear" : "yarn");
    if (!rc)
        rc = set_f32(w, c, "rope.scaling.factor", c->rope_factor);
    if (!rc && c->rope_kind == CA_ROPE_YARN)
        rc = set_u32(w, c, "rope.scaling.original_context_length", c->rope_orig_ctx);
    return rc;
}

int ca_write_hparams(gguf_writer *w, const ca_config *c, uint32_t file_type)
{
    int rc = set_u32(w, c, "block_count", c->n_layer);
    if (!rc) rc = set_u32(w, c, "context_length", c->n_ctx);
    if (!rc) rc = set_u32(w, c, "embedding_length", c->n_embd);
    if (!rc) rc = set_u32(w, c, "feed_forward_length", c->n_ff);
    if (!rc) rc = set_u32(w, c, "attention.head_count", c->n_head);
    if (!rc && c->has_head_kv) rc = set_u32(w, c, "attention.head_count_kv", c->n_head_kv);
    if (!rc && c->has_rope_theta) rc = set_f32(w, c, "rope.freq_base", c->rope_theta);
    if (!rc) rc = set_f32(w, c, "attention.layer_norm_rms_epsilon", c->rms_eps);
    if (!rc && c->has_head_dim) rc = set_u32(w, c, "attention.key_length", c->head_dim);
    if (!rc && c->has_head_dim) rc = set_u32(w, c, "attention.value_length", c->head_dim);
    if (!rc) rc = gguf_writer_set_u32(w, "general.file_type", file_type);
    if (!rc && c->arch == CA_ARCH_LLAMA) rc = set_u32(w, c, "vocab_size", c->n_vocab);
    if (!rc && c->arch == CA_ARCH_LLAMA) rc = set_u32(w, c, "rope.dimension_count", c->head_dim);
    if (!rc) rc = write_rope_scaling(w, c);
    return rc;
}

/* ================================================================ general.* heuristics */

/* gguf-py get_model_id_components annotations */
enum { T_BASENAME = 1, T_SIZE = 2, T_FINETUNE = 4, T_VERSION = 8, T_TYPE = 16 };

#define MAX_PARTS 32

typedef struct {
    char part[MAX_PARTS][64];
    unsigned type[MAX_PARTS];
    int n;
} id_parts;

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }
static bool is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (unsigned char)ch >= 0x80;
}
static char lower(char ch) { return ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch; }
static char upper(char ch) { return ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch; }

/* digits at *p (at least one) */
static bool eat_digits(const char **p)
{
    const char *s = *p;
    while (is_digit(**p))
        ++*p;
    return *p > s;
}

/* (v|iter)?\d+([.]\d+)* */
static bool re_version(const char *s)
{
    if (lower(s[0]) == 'v')
        s++;
    else if (!strncasecmp(s, "iter", 4))
        s += 4;
    if (!eat_digits(&s))
        return false;
    while (*s == '.') {
        s++;
        if (!eat_digits(&s))
            return false;
    }
    return !*s;
}

/* i?q\d(_\w)*|b?fp?(16|32) */
static bool re_quant_type(const char *s)
{
    const char *p = s;
    if (lower(*p) == 'i')
        p++;
    if (lower(*p) == 'q' && is_digit(p[1])) {
        for (p += 2; *p == '_' && p[1] && (is_alpha(p[1]) || is_digit(p[1]) || p[1] == '_'); p += 2)
            ;
        if (!*p)
            return true;
    }
    p = s;
    if (lower(*p) == 'b')
        p++;
    if (lower(*p) != 'f')
        return false;
    p++;
    if (lower(*p) == 'p')
        p++;
    return !strcmp(p, "16") || !strcmp(p, "32");
}

/* \d+([._]\d+)?[KMBT]\d? */
static bool re_size_tail(const char *p)
{
    if (!eat_digits(&p))
        return false;
    if ((*p == '.' || *p == '_') && is_digit(p[1])) {
        p++;
        eat_digits(&p);
    }
    if (!strchr("KMBT", upper(*p)) || !*p)
        return false;
    p++;
    if (is_digit(*p))
        p++;
    return !*p;
}

/* (([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl) */
static bool re_size(const char *s)
{
    static const char *const words[] = {"small", "mini", "medium", "large", "xl", "xxl"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (!strcasecmp(s, words[i]))
            return true;
    if (re_size_tail(s))
        return true;
    if (lower(s[0]) == 'a' && re_size_tail(s + 1))
        return true;
    const char *p = s;
    return eat_digits(&p) && lower(*p) == 'x' && re_size_tail(p + 1);
}

static bool re_finetune(const char *s)
{
    return !strcasecmp(s, "chat") || !strcasecmp(s, "instruct") || !strcasecmp(s, "vision") ||
           !strcasecmp(s, "lora");
}

/* The size branch: normalize "7b1" and "7b", then keep it as a size unless the parameter count
 * says it is something else (a context length: then a lowercase finetune tag). */
static void annotate_size(id_parts *ip, int i, int64_t total)
{
    char *part = ip->part[i];
    size_t n = strlen(part);
    for (char *c = part; *c; c++)
        if (*c == '_')
            *c = '.';
    if (is_digit(part[n - 1]) && n >= 2) {
        char d = part[n - 1], unit = part[n - 2];
        if (n + 1 < sizeof ip->part[i]) {
            part[n - 2] = '.';
            part[n - 1] = d;
            part[n] = unit;
            part[++n] = '\0';
        }
    }
    if (n > 1 && is_digit(part[n - 2]) && strchr("kmbt", part[n - 1]))
        part[n - 1] = upper(part[n - 1]);
    if (total != 0) {
        char *end;
        char num[64];
        snprintf(num, sizeof num, "%.*s", (int)(n - 1), part);
        double v = strtod(num, &end);
        const char *units = " KMBT";
        const char *u = strchr(units, part[n - 1]);
        if (end != num && !*end && num[0] != ' ') {
            double label = v * pow(1000, u && part[n - 1] ? (double)(u - units) : -1.0);
            if (total > 0 && fabs(label - (double)total) > (double)(7 * total / 8)) {
                ip->type[i] |= T_FINETUNE;
                part[n - 1] = lower(part[n - 1]);
            }
        }
    }
    if (!ip->type[i])
        ip->type[i] |= T_SIZE;
}

static void annotate(id_parts *ip, int64_t total)
{
    for (int i = 0; i < ip->n; i++) {
        char *part = ip->part[i];
        if (re_version(part)) {
            ip->type[i] |= T_VERSION;
        } else if (re_quant_type(part)) {
            ip->type[i] |= T_TYPE;
            for (char *c = part; *c; c++)
                *c = upper(*c);
        } else if (i > 0 && re_size(part)) {
            annotate_size(ip, i, total);
        } else if (i > 0 && re_finetune(part)) {
            ip->type[i] |= T_FINETUNE;
        }
    }
}

static bool has_digit(const char *s)
{
    for (; *s; s++)
        if (is_digit(*s))
            return true;
    return false;
}

static bool all_alpha(const char *s)
{
    for (; *s; s++)
        if (!is_alpha(*s))
            return false;
    return true;
}

static void mark_basename(id_parts *ip)
{
    bool numeric_size = false;
    for (int i = 0; i < ip->n; i++)
        numeric_size |= (ip->type[i] & T_SIZE) && has_digit(ip->part[i]);
    for (int i = 0; i < ip->n && numeric_size; i++)
        if ((ip->type[i] & T_SIZE) && all_alpha(ip->part[i]))
            ip->type[i] &= ~(unsigned)T_SIZE;
    bool at_start = true;
    for (int i = 0; i < ip->n; i++) {
        if (at_start && ((!ip->type[i] && is_alpha(ip->part[i][0])) || (ip->type[i] & T_VERSION))) {
            ip->type[i] |= T_BASENAME;
        } else {
            at_start = false;
            if (!ip->type[i])
                ip->type[i] |= T_FINETUNE;
        }
    }
    for (int i = ip->n - 1; i >= 0; i--) {
        if (!(ip->type[i] & T_BASENAME) || ip->type[i] == T_BASENAME)
            break;
        ip->type[i] &= ~(unsigned)T_BASENAME;
    }
}

/* Joins the parts having `want` (and not `unless`) with '-'; dedup drops repeated texts. */
static void join(const id_parts *ip, unsigned want, unsigned unless, bool dedup, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < ip->n; i++) {
        if (!(ip->type[i] & want) || (ip->type[i] & unless))
            continue;
        bool seen = false;
        for (int j = 0; j < i && dedup; j++)
            seen |= (ip->type[j] & want) && !strcmp(ip->part[j], ip->part[i]);
        if (seen)
            continue;
        int w = snprintf(buf + n, size - n, "%s%s", n ? "-" : "", ip->part[i]);
        if (w < 0 || (size_t)w >= size - n)
            return;
        n += (size_t)w;
    }
}

typedef struct {
    char full[128], org[128], basename[128], finetune[128], version[64], size_label[32];
    bool ok;
} id_components;

static void split_parts(const char *name, id_parts *ip)
{
    ip->n = 0;
    const char *p = name;
    while (*p && ip->n < MAX_PARTS) {
        const char *dash = strchr(p, '-');
        size_t len = dash ? (size_t)(dash - p) : strlen(p);
        if (len > 0 && len < sizeof ip->part[0]) {
            memcpy(ip->part[ip->n], p, len);
            ip->part[ip->n][len] = '\0';
            ip->type[ip->n++] = 0;
        }
        if (!dash)
            break;
        p = dash + 1;
    }
}

static void model_id_components(const char *id, int64_t total, id_components *o)
{
    memset(o, 0, sizeof *o);
    if (!id || !*id)
        return;
    o->ok = true;
    if (strchr(id, ' ')) {
        snprintf(o->full, sizeof o->full, "%s", id);
        return;
    }
    const char *slash = strchr(id, '/'), *name = slash ? slash + 1 : id;
    if (slash && slash > id && id[0] != '.')
        snprintf(o->org, sizeof o->org, "%.*s", (int)(slash - id), id);
    snprintf(o->full, sizeof o->full, "%s", name);
    id_parts ip;
    split_parts(name, &ip);
    annotate(&ip, total);
    mark_basename(&ip);
    join(&ip, T_BASENAME, 0, false, o->basename, sizeof o->basename);
    join(&ip, T_SIZE, 0, true, o->size_label, sizeof o->size_label);
    join(&ip, T_FINETUNE, 0, false, o->finetune, sizeof o->finetune);
    join(&ip, T_VERSION, T_BASENAME, false, o->version, sizeof o->version);
    if (!o->size_label[0] && !o->finetune[0] && !o->version[0])
        o->basename[0] = '\0';
}

static bool word_is_lower(const char *w, size_t n)
{
    bool cased = false;
    for (size_t i = 0; i < n; i++) {
        if (w[i] >= 'A' && w[i] <= 'Z')
            return false;
        cased |= w[i] >= 'a' && w[i] <= 'z';
    }
    return cased;
}

/* ^(v\d+(?:\.\d+)*|\d.*)$ */
static bool word_is_versionish(const char *w, size_t n)
{
    if (n && is_digit(w[0]))
        return true;
    char tmp[64];
    if (n < 2 || w[0] != 'v' || n >= sizeof tmp)
        return false;
    memcpy(tmp, w, n);
    tmp[n] = '\0';
    return re_version(tmp) && strncasecmp(tmp, "iter", 4) && tmp[0] == 'v';
}

/* Metadata.id_to_title: '-' to ' ', then str.title() on all-lowercase words that are not
 * versions or numbers. */
static void id_to_title(const char *s, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    while (*s) {
        while (*s == ' ' || *s == '-' || *s == '\t')
            s++;
        size_t len = 0;
        while (s[len] && s[len] != ' ' && s[len] != '-' && s[len] != '\t')
            len++;
        if (!len)
            break;
        bool title = word_is_lower(s, len) && !word_is_versionish(s, len);
        if (n && n + 1 < size)
            buf[n++] = ' ';
        for (size_t i = 0; i < len && n + 1 < size; i++) {
            char prev = i > 0 ? lower(s[i - 1]) : ' ';
            bool prev_cased = prev >= 'a' && prev <= 'z';
            buf[n++] = title ? (prev_cased ? lower(s[i]) : upper(s[i])) : s[i];
        }
        buf[n] = '\0';
        s += len;
    }
}

static void take(char *dst, size_t size, const char *src)
{
    if (!dst[0] && src[0])
        snprintf(dst, size, "%s", src);
}

static void apply_components(const id_components *c, ca_general *g)
{
    char title[128];
    if (!c->ok)
        return;
    if (!g->name[0] && c->full[0]) {
        id_to_title(c->full, title, sizeof title);
        take(g->name, sizeof g->name, title);
    }
    if (!g->organization[0] && c->org[0]) {
        id_to_title(c->org, title, sizeof title);
        take(g->organization, sizeof g->organization, title);
    }
    take(g->basename, sizeof g->basename, c->basename);
    take(g->finetune, sizeof g->finetune, c->finetune);
    take(g->version, sizeof g->version, c->version);
    take(g->size_label, sizeof g->size_label, c->size_label);
}

void ca_size_label(int64_t n_params, char *buf, size_t size)
{
    double count = (double)(n_params < 0 ? -n_params : n_params), scaled;
    const char *suffix;
    if (count > 1e12) {
        scaled = count * 1e-12, suffix = "T";
    } else if (count > 1e9) {
        scaled = count * 1e-9, suffix = "B";
    } else if (count > 1e6) {
        scaled = count * 1e-6, suffix = "M";
    } else {
        scaled = count * 1e-3, suffix = "K";
    }
    /* fix = max(2 - len(str(round(scaled)).lstrip('0')), 0); Python's round is half-to-even */
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", nearbyint(scaled));
    const char *d = digits;
    while (*d == '0')
        d++;
    int fix = 2 - (int)strlen(d);
    snprintf(buf, size, "%.*f%s", fix > 0 ? fix : 0, scaled, suffix);
}

void ca_general_meta(const char *dir_name, const char *name_or_path, int64_t total_params,
                     ca_general *out)
{
    memset(out, 0, sizeof *out);
    id_components c;
    size_t slashes = 0;
    for (const char *p = name_or_path ? name_or_path : ""; *p; p++)
        slashes += *p == '/';
    if (name_or_path && *name_or_path && slashes <= 1) {
        model_id_components(name_or_path, total_params, &c);
        apply_components(&c, out);
    }
    model_id_components(dir_name, total_params, &c);
    apply_components(&c, out);
    if (!out->name[0])
        snprintf(out->name, sizeof out->name, "%s", dir_name && *dir_name ? dir_name : "model");
    if (!out->size_label[0] && total_params > 0)
        ca_size_label(total_params, out->size_label, sizeof out->size_label);
}

int ca_write_general(gguf_writer *w, const ca_general *g)
{
    const struct {
        const char *key, *val;
    } kv[] = {
        {"general.name", g->name},         {"general.version", g->version},
        {"general.organization", g->organization}, {"general.finetune", g->finetune},
        {"general.basename", g->basename}, {"general.size_label", g->size_label},
    };
    int rc = QK_OK;
    for (size_t i = 0; i < sizeof kv / sizeof kv[0] && !rc; i++)
        if (kv[i].val[0])
            rc = gguf_writer_set_str(w, kv[i].key, kv[i].val);
    return rc;
}
