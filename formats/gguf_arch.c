/* gguf_arch.c — GGUF tensor kinds, names, shapes, keys and architectures. */
#include "gguf_arch.h"

#include <stdio.h>
#include <string.h>

/* ================================================================ kinds */

#define D(a, b, c) {GA_D_##a, GA_D_##b, GA_D_##c}

static const ga_kind_info KINDS[GA_T_COUNT] = {
    [GA_T_TOKEN_EMBD] = {"token_embd", false, GA_IN_MODEL, D(EMBD, VOCAB, NONE), false, false, false},
    [GA_T_OUTPUT_NORM] = {"output_norm", false, GA_IN_MODEL, D(EMBD, NONE, NONE), true, true, false},
    [GA_T_OUTPUT] = {"output", false, GA_IN_MODEL, D(EMBD, VOCAB, NONE), false, false, true},
    [GA_T_ROPE_FREQS] = {"rope_freqs", false, GA_IN_MODEL, D(ROT_HALF, NONE, NONE), true, true, true},
    [GA_T_ATTN_NORM] = {"attn_norm", false, GA_IN_BLOCK, D(EMBD, NONE, NONE), true, true, false},
    [GA_T_ATTN_Q] = {"attn_q", false, GA_IN_BLOCK, D(EMBD, Q, NONE), false, false, false},
    [GA_T_ATTN_K] = {"attn_k", false, GA_IN_BLOCK, D(EMBD, KV, NONE), false, false, false},
    [GA_T_ATTN_V] = {"attn_v", false, GA_IN_BLOCK, D(EMBD, KV, NONE), false, false, false},
    [GA_T_ATTN_OUT] = {"attn_output", false, GA_IN_BLOCK, D(Q, EMBD, NONE), false, false, false},
    [GA_T_ATTN_Q_B] = {"attn_q", true, GA_IN_BLOCK, D(Q, NONE, NONE), true, true, true},
    [GA_T_ATTN_K_B] = {"attn_k", true, GA_IN_BLOCK, D(KV, NONE, NONE), true, true, true},
    [GA_T_ATTN_V_B] = {"attn_v", true, GA_IN_BLOCK, D(KV, NONE, NONE), true, true, true},
    [GA_T_ATTN_OUT_B] = {"attn_output", true, GA_IN_BLOCK, D(EMBD, NONE, NONE), true, true, true},
    [GA_T_ATTN_Q_NORM] = {"attn_q_norm", false, GA_IN_BLOCK, D(HEAD, NONE, NONE), true, true, false},
    [GA_T_ATTN_K_NORM] = {"attn_k_norm", false, GA_IN_BLOCK, D(HEAD, NONE, NONE), true, true, false},
    [GA_T_FFN_NORM] = {"ffn_norm", false, GA_IN_BLOCK, D(EMBD, NONE, NONE), true, true, false},
    [GA_T_FFN_GATE] = {"ffn_gate", false, GA_IN_DENSE, D(EMBD, FF, NONE), false, false, false},
    [GA_T_FFN_UP] = {"ffn_up", false, GA_IN_DENSE, D(EMBD, FF, NONE), false, false, false},
    [GA_T_FFN_DOWN] = {"ffn_down", false, GA_IN_DENSE, D(FF, EMBD, NONE), false, false, false},
    [GA_T_FFN_GATE_B] = {"ffn_gate", true, GA_IN_DENSE, D(FF, NONE, NONE), true, true, true},
    [GA_T_FFN_UP_B] = {"ffn_up", true, GA_IN_DENSE, D(FF, NONE, NONE), true, true, true},
    [GA_T_FFN_DOWN_B] = {"ffn_down", true, GA_IN_DENSE, D(EMBD, NONE, NONE), true, true, true},
    [GA_T_FFN_GATE_INP] = {"ffn_gate_inp", false, GA_IN_MOE, D(EMBD, EXPERT, NONE), true, false, false},
    [GA_T_FFN_GATE_EXPS] = {"ffn_gate_exps", false, GA_IN_MOE, D(EMBD, FF_EXP, EXPERT), false, false, false},
    [GA_T_FFN_UP_EXPS] = {"ffn_up_exps", false, GA_IN_MOE, D(EMBD, FF_EXP, EXPERT), false, false, false},
    [GA_T_FFN_DOWN_EXPS] = {"ffn_down_exps", false, GA_IN_MOE, D(FF_EXP, EMBD, EXPERT), false, false, false},
    [GA_T_FFN_GATE_SHEXP] = {"ffn_gate_shexp", false, GA_IN_MOE, D(EMBD, FF_SHEXP, NONE), false, false, true},
    [GA_T_FFN_UP_SHEXP] = {"ffn_up_shexp", false, GA_IN_MOE, D(EMBD, FF_SHEXP, NONE), false, false, true},
    [GA_T_FFN_DOWN_SHEXP] = {"ffn_down_shexp", false, GA_IN_MOE, D(FF_SHEXP, EMBD, NONE), false, false, true},
};

const ga_kind_info *ga_kind_get(ga_kind k) { return (unsigned)k < GA_T_COUNT ? &KINDS[k] : NULL; }

bool ga_tensor_name(ga_kind k, int layer, char *buf, size_t size)
{
    const ga_kind_info *ki = ga_kind_get(k);
    if (!ki)
        return false;
    const char *suffix = ki->bias ? "bias" : "weight";
    int n = ki->where == GA_IN_MODEL ? snprintf(buf, size, "%s.%s", ki->base, suffix)
                                     : snprintf(buf, size, "blk.%d.%s.%s", layer, ki->base, suffix);
    return n > 0 && (size_t)n < size;
}

int64_t ga_dim_size(const ga_hparams *hp, ga_dim d)
{
    switch (d) {
    case GA_D_EMBD: return hp->n_embd;
    case GA_D_VOCAB: return hp->n_vocab;
    case GA_D_Q: return hp->n_head * hp->head_dim;
    case GA_D_KV: return hp->n_head_kv * hp->head_dim;
    case GA_D_HEAD: return hp->head_dim;
    case GA_D_ROT_HALF: return hp->n_rot / 2;
    case GA_D_FF: return hp->n_ff;
    case GA_D_FF_EXP: return hp->n_ff_exp;
    case GA_D_FF_SHEXP: return hp->n_ff_shexp;
    case GA_D_EXPERT: return hp->n_expert;
    default: return 1;
    }
}

void ga_shape(ga_kind k, const ga_hparams *hp, uint32_t *n_dims, int64_t ne[GGUF_MAX_DIMS])
{
    const ga_kind_info *ki = ga_kind_get(k);
    *n_dims = 0;
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        ne[d] = 1;
    for (int d = 0; ki && d < 3 && ki->dims[d] != GA_D_NONE; d++) {
        ne[d] = ga_dim_size(hp, (ga_dim)ki->dims[d]);
        *n_dims = (uint32_t)d + 1;
    }
}

/* ================================================================ keys */

static const char *const KEYS[GA_K_COUNT] = {
    [GA_K_BLOCK_COUNT] = "block_count",
    [GA_K_CONTEXT_LENGTH] = "context_length",
    [GA_K_EMBEDDING_LENGTH] = "embedding_length",
    [GA_K_FEED_FORWARD_LENGTH] = "feed_forward_length",
    [GA_K_HEAD_COUNT] = "attention.head_count",
    [GA_K_HEAD_COUNT_KV] = "attention.head_count_kv",
    [GA_K_ROPE_FREQ_BASE] = "rope.freq_base",
    [GA_K_RMS_EPS] = "attention.layer_norm_rms_epsilon",
    [GA_K_EXPERT_COUNT] = "expert_count",
    [GA_K_EXPERT_USED_COUNT] = "expert_used_count",
    [GA_K_KEY_LENGTH] = "attention.key_length",
    [GA_K_VALUE_LENGTH] = "attention.value_length",
    [GA_K_FILE_TYPE] = "general.file_type",
    [GA_K_VOCAB_SIZE] = "vocab_size",
    [GA_K_ROPE_DIMENSION_COUNT] = "rope.dimension_count",
    [GA_K_ROPE_SCALING] = "rope.scaling", /* .type, .factor, .original_context_length */
    [GA_K_EXPERT_FEED_FORWARD_LENGTH] = "expert_feed_forward_length",
    [GA_K_EXPERT_SHARED_FEED_FORWARD_LENGTH] = "expert_shared_feed_forward_length",
    [GA_K_EXPERT_WEIGHTS_NORM] = "expert_weights_norm",
    [GA_K_INTERLEAVE_MOE_LAYER_STEP] = "interleave_moe_layer_step",
    [GA_K_ATTN_CHUNK_SIZE] = "attention.chunk_size",
    [GA_K_ATTN_TEMPERATURE_LENGTH] = "attention.temperature_length",
    [GA_K_ATTN_TEMPERATURE_SCALE] = "attention.temperature_scale",
    [GA_K_ATTN_USE_QK_NORM] = "attention.use_qk_norm",
    [GA_K_NO_ROPE_LAYERS] = "no_rope_layers",
};

void ga_key_name(ga_key k, const char *arch, char *buf, size_t size)
{
    if (k == GA_K_FILE_TYPE)
        snprintf(buf, size, "%s", KEYS[k]);
    else
        snprintf(buf, size, "%s.%s", arch, (unsigned)k < GA_K_COUNT ? KEYS[k] : "?");
}

/* ================================================================ architectures */

#define END GA_T_COUNT
#define GLOBAL GA_T_TOKEN_EMBD, GA_T_OUTPUT_NORM, GA_T_OUTPUT
#define ATTN GA_T_ATTN_NORM, GA_T_ATTN_Q, GA_T_ATTN_K, GA_T_ATTN_V, GA_T_ATTN_OUT
#define ATTN_BIAS GA_T_ATTN_Q_B, GA_T_ATTN_K_B, GA_T_ATTN_V_B, GA_T_ATTN_OUT_B
#define QK_NORM GA_T_ATTN_Q_NORM, GA_T_ATTN_K_NORM
#define FFN GA_T_FFN_NORM, GA_T_FFN_GATE, GA_T_FFN_UP, GA_T_FFN_DOWN
#define FFN_BIAS GA_T_FFN_GATE_B, GA_T_FFN_UP_B, GA_T_FFN_DOWN_B
#define MOE GA_T_FFN_GATE_INP, GA_T_FFN_GATE_EXPS, GA_T_FFN_UP_EXPS, GA_T_FFN_DOWN_EXPS
#define SHEXP GA_T_FFN_GATE_SHEXP, GA_T_FFN_UP_SHEXP, GA_T_FFN_DOWN_SHEXP

static const ga_kind K_LLAMA[] = {GLOBAL, GA_T_ROPE_FREQS, ATTN, ATTN_BIAS, FFN, FFN_BIAS, MOE, END};
static const ga_kind K_QWEN2[] = {GLOBAL, ATTN, GA_T_ATTN_Q_B, GA_T_ATTN_K_B, GA_T_ATTN_V_B, FFN, END};
static const ga_kind K_QWEN3[] = {GLOBAL, ATTN, QK_NORM, FFN, END};
static const ga_kind K_QWEN3MOE[] = {GLOBAL, ATTN, QK_NORM, FFN, MOE, END};
static const ga_kind K_LLAMA4[] = {GLOBAL, GA_T_ROPE_FREQS, ATTN, FFN, MOE, SHEXP, END};

static const ga_kind R_NONE[] = {END};
static const ga_kind R_QWEN2[] = {GA_T_ATTN_Q_B, GA_T_ATTN_K_B, GA_T_ATTN_V_B, END};

static const ga_kind R_LLAMA4[] = {SHEXP, END};

static const ga_arch ARCHS[] = {
    {"llama", GA_ROPE_PAIRS, true, true, GA_GATING_SOFTMAX, false, false, K_LLAMA, R_NONE},
    {"llama4", GA_ROPE_PAIRS, true, false, GA_GATING_SIGMOID, true, true, K_LLAMA4, R_LLAMA4},
    {"qwen2", GA_ROPE_HALVES, false, false, GA_GATING_SOFTMAX, false, false, K_QWEN2, R_QWEN2},
    {"qwen3", GA_ROPE_HALVES, false, false, GA_GATING_SOFTMAX, false, false, K_QWEN3, R_NONE},
    {"qwen3moe", GA_ROPE_HALVES, true, true, GA_GATING_SOFTMAX, false, false, K_QWEN3MOE, R_NONE},
};
#define N_ARCHS (sizeof ARCHS / sizeof ARCHS[0])

const ga_arch *ga_arch_find(const char *name)
{
    for (size_t i = 0; name && i < N_ARCHS; i++)
        if (!strcmp(ARCHS[i].name, name))
            return &ARCHS[i];
    return NULL;
}

const char *ga_arch_names(void) { return "llama, llama4, qwen2, qwen3, qwen3moe"; }

bool ga_arch_has_kind(const ga_arch *a, ga_kind k)
{
    for (const ga_kind *p = a->kinds; *p != GA_T_COUNT; p++)
        if (*p == k)
            return true;
    return false;
}

bool ga_arch_requires(const ga_arch *a, ga_kind k)
{
    if (!ga_kind_get(k)->optional)
        return true;
    for (const ga_kind *p = a->required; *p != GA_T_COUNT; p++)
        if (*p == k)
            return true;
    return false;
}

bool ga_block_has(const ga_arch *a, const ga_hparams *hp, ga_kind k, int layer)
{
    const ga_kind_info *ki = ga_kind_get(k);
    if (!ki || !ga_arch_has_kind(a, k))
        return false;
    if ((ki->where == GA_IN_MODEL) != (layer < 0))
        return false;
    if (layer >= GA_MAX_LAYERS)
        return false;
    switch (ki->where) {
    case GA_IN_DENSE: return !hp->layer_moe[layer];
    case GA_IN_MOE: /* a shared expert only where it has a width */
        return hp->layer_moe[layer] &&
               (hp->n_ff_shexp > 0 || (ki->dims[0] != GA_D_FF_SHEXP && ki->dims[1] != GA_D_FF_SHEXP));
    default: return true;
    }
}

/* ================================================================ reading hyper-parameters */

typedef struct {
    const gguf_ctx *g;
    const char *arch;
    qk_err *err;
} reader;

/* Integer hyper-parameters are u32 in llama.cpp's files, but any integer type is accepted. */
static int get_int(const reader *r, ga_key k, int64_t lo, int64_t hi, bool required, int64_t *out)
{
    char key[128];
    ga_key_name(k, r->arch, key, sizeof key);
    int64_t i = gguf_find_key(r->g, key);
    if (i < 0)
        return required ? qk_err_set(r->err, QK_EFORMAT, "metadata key '%s' is missing", key) : GGUF_MISSING;
    const gguf_value *v = gguf_kv_value(r->g, (uint64_t)i);
    int64_t x;
    switch (v->type) {
    case GGUF_TYPE_U8: x = v->u8; break;
    case GGUF_TYPE_I8: x = v->i8; break;
    case GGUF_TYPE_U16: x = v->u16; break;
    case GGUF_TYPE_I16: x = v->i16; break;
    case GGUF_TYPE_U32: x = v->u32; break;
    case GGUF_TYPE_I32: x = v->i32; break;
    case GGUF_TYPE_U64: x = v->u64 > INT64_MAX ? INT64_MAX : (int64_t)v->u64; break;
    case GGUF_TYPE_I64: x = v->i64; break;
    default:
        return qk_err_set(r->err, QK_EFORMAT, "metadata key '%s' is a %s, expected an integer", key,
                          gguf_type_name(v->type));
    }
    if (x < lo || x > hi)
        return qk_err_set(r->err, QK_EFORMAT, "metadata key '%s' = %lld is out of range [%lld, %lld]", key,
                          (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return QK_OK;
}

static int get_f32(const reader *r, ga_key k, double *out, bool *has)
{
    char key[128];
    float f;
    ga_key_name(k, r->arch, key, sizeof key);
    int rc = gguf_get_f32(r->g, key, &f);
    if (rc == QK_EFORMAT)
        return qk_err_set(r->err, QK_EFORMAT, "metadata key '%s' is not an f32", key);
    if (has)
        *has = rc == QK_OK;
    if (rc == QK_OK)
        *out = f;
    return QK_OK;
}

#define BIG (1 << 24)

static int read_moe(const reader *r, const ga_arch *a, ga_hparams *hp)
{
    int rc = get_int(r, GA_K_EXPERT_COUNT, 0, 1 << 16, false, &hp->n_expert);
    if (rc < 0)
        return rc;
    if (rc == GGUF_MISSING || hp->n_expert == 0) {
        hp->n_expert = 0;
        return QK_OK;
    }
    if (!a->moe)
        return qk_err_set(r->err, QK_EUNSUPPORTED, "architecture '%s' with experts is not supported", a->name);
    if ((rc = get_int(r, GA_K_EXPERT_USED_COUNT, 1, hp->n_expert, true, &hp->n_expert_used)) < 0)
        return rc;
    hp->n_ff_exp = hp->n_ff;
    if ((rc = get_int(r, GA_K_EXPERT_FEED_FORWARD_LENGTH, 1, BIG, false, &hp->n_ff_exp)) < 0)
        return rc;
    hp->has_ff_exp = rc == QK_OK;
    if ((rc = get_int(r, GA_K_EXPERT_SHARED_FEED_FORWARD_LENGTH, 1, BIG, false, &hp->n_ff_shexp)) < 0)
        return rc;
    /* an architecture that always has a shared expert sizes it like the others (Llama 4) */
    if (!hp->n_ff_shexp && ga_arch_requires(a, GA_T_FFN_GATE_SHEXP))
        hp->n_ff_shexp = hp->n_ff_exp;
    char key[128];
    bool norm = a->expert_weights_norm;
    ga_key_name(GA_K_EXPERT_WEIGHTS_NORM, a->name, key, sizeof key);
    if (gguf_get_bool(r->g, key, &norm) == QK_EFORMAT)
        return qk_err_set(r->err, QK_EFORMAT, "metadata key '%s' is not a bool", key);
    hp->expert_weights_norm = norm;
    return QK_OK;
}

/* Llama 4's attention: qkit's keys, else llama.cpp's hard-coded values. */
static int read_chunked_nope(const reader *r, ga_hparams *hp)
{
    int rc;
    hp->attn_chunk = 8192;
    hp->attn_temp_floor = 8192;
    hp->attn_temp_scale = 0.1;
    hp->qk_rms_norm = hp->n_expert != 128;
    if ((rc = get_int(r, GA_K_ATTN_CHUNK_SIZE, 1, INT32_MAX, false, &hp->attn_chunk)) < 0 ||
        (rc = get_int(r, GA_K_ATTN_TEMPERATURE_LENGTH, 1, INT32_MAX, false, &hp->attn_temp_floor)) < 0 ||
        (rc = get_f32(r, GA_K_ATTN_TEMPERATURE_SCALE, &hp->attn_temp_scale, NULL)) < 0)
        return rc;
    char key[128];
    ga_key_name(GA_K_ATTN_USE_QK_NORM, r->arch, key, sizeof key);
    if (gguf_get_bool(r->g, key, &hp->qk_rms_norm) == QK_EFORMAT)
        return qk_err_set(r->err, QK_EFORMAT, "metadata key '%s' is not a bool", key);
    for (int64_t l = 0; l < hp->n_layer; l++)
        hp->layer_nope[l] = (uint8_t)((l + 1) % 4 == 0);
    ga_key_name(GA_K_NO_ROPE_LAYERS, r->arch, key, sizeof key);
    const void *data;
    uint64_t n;
    rc = gguf_get_arr(r->g, key, GGUF_TYPE_I32, &data, &n);
    if (rc == GGUF_MISSING)
        return QK_OK;
    if (rc || n != (uint64_t)hp->n_layer)
        return qk_err_set(r->err, QK_EFORMAT, "metadata key '%s' must be an i32 array of %lld entries", key,
                          (long long)hp->n_layer);
    for (int64_t l = 0; l < hp->n_layer; l++) {
        int32_t v;
        memcpy(&v, (const char *)data + 4 * l, 4);
        hp->layer_nope[l] = v == 0;
    }
    return QK_OK;
}

int ga_hparams_read(const gguf_ctx *g, const ga_arch *a, ga_hparams *hp, qk_err *err)
{
    memset(hp, 0, sizeof *hp);
    reader r = {g, a->name, err};
    int rc;
    if ((rc = get_int(&r, GA_K_EMBEDDING_LENGTH, 1, BIG, true, &hp->n_embd)) ||
        (rc = get_int(&r, GA_K_BLOCK_COUNT, 1, GA_MAX_LAYERS, true, &hp->n_layer)) ||
        (rc = get_int(&r, GA_K_HEAD_COUNT, 1, BIG, true, &hp->n_head)) ||
        (rc = get_int(&r, GA_K_FEED_FORWARD_LENGTH, 1, BIG, true, &hp->n_ff)))
        return rc;
    hp->n_head_kv = hp->n_head;
    hp->head_dim = hp->n_embd / hp->n_head;
    hp->n_ctx = 4096;
    if ((rc = get_int(&r, GA_K_HEAD_COUNT_KV, 1, BIG, false, &hp->n_head_kv)) < 0)
        return rc;
    hp->has_head_kv = rc == QK_OK;
    if ((rc = get_int(&r, GA_K_KEY_LENGTH, 1, BIG, false, &hp->head_dim)) < 0)
        return rc;
    hp->has_head_dim = rc == QK_OK;
    hp->n_rot = hp->head_dim;
    if ((rc = get_int(&r, GA_K_ROPE_DIMENSION_COUNT, 1, BIG, false, &hp->n_rot)) < 0 ||
        (rc = get_int(&r, GA_K_CONTEXT_LENGTH, 1, INT32_MAX, false, &hp->n_ctx)) < 0)
        return rc;
    hp->rms_eps = 1e-5;
    hp->rope_theta = 10000.0;
    if ((rc = get_f32(&r, GA_K_RMS_EPS, &hp->rms_eps, NULL)) ||
        (rc = get_f32(&r, GA_K_ROPE_FREQ_BASE, &hp->rope_theta, &hp->has_rope_theta)))
        return rc;
    char key[160];
    const char *scaling = NULL;
    snprintf(key, sizeof key, "%s.rope.scaling.type", a->name);
    if (gguf_get_str(g, key, &scaling) == QK_OK && scaling && strcmp(scaling, "none"))
        hp->rope_scaling = !strcmp(scaling, "linear") ? GA_ROPE_LINEAR : GA_ROPE_YARN;
    hp->expert_weights_norm = a->expert_weights_norm;
    if ((rc = read_moe(&r, a, hp)))
        return rc;
    return a->chunked_nope ? read_chunked_nope(&r, hp) : QK_OK;
}
