/* arch.c — config.json and tensor names of Llama, Mistral, Qwen2 and Qwen3 checkpoints to GGUF. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../formats/file.h"
#include "../formats/hf_tokenizer.h" /* HF_MAX_TOKEN_ID */
#include "arch.h"

/* ================================================================ descriptions */

#define END {GA_T_COUNT, NULL, CA_X_COPY, CA_C_ALWAYS, 0}

/* Model-wide tensors of every Llama-family checkpoint. */
static const ca_hf_tensor GLOBAL[] = {
    {GA_T_ROPE_FREQS, NULL, CA_X_ROPE_FREQS, CA_C_LLAMA3, 0},
    {GA_T_TOKEN_EMBD, "model.embed_tokens.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_OUTPUT_NORM, "model.norm.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_OUTPUT, "lm_head.weight", CA_X_COPY, CA_C_UNTIED, 0},
    END,
};

/* Blocks, in transformers' module order (synth writes shards in this order). */
static const ca_hf_tensor ATTN_LLAMA[] = {
    {GA_T_ATTN_Q, "self_attn.q_proj.weight", CA_X_PERMUTE_Q, CA_C_ALWAYS, 0},
    {GA_T_ATTN_Q_B, "self_attn.q_proj.bias", CA_X_PERMUTE_Q, CA_C_ATTN_BIAS, 0},
    {GA_T_ATTN_K, "self_attn.k_proj.weight", CA_X_PERMUTE_K, CA_C_ALWAYS, 0},
    {GA_T_ATTN_K_B, "self_attn.k_proj.bias", CA_X_PERMUTE_K, CA_C_ATTN_BIAS, 0},
    {GA_T_ATTN_V, "self_attn.v_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_V_B, "self_attn.v_proj.bias", CA_X_COPY, CA_C_ATTN_BIAS, 0},
    {GA_T_ATTN_OUT, "self_attn.o_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_OUT_B, "self_attn.o_proj.bias", CA_X_COPY, CA_C_ATTN_BIAS, 0},
    END,
};

/* Qwen2: q/k/v always carry biases, o never; no permutation (RoPE on halves). */
static const ca_hf_tensor ATTN_QWEN2[] = {
    {GA_T_ATTN_Q, "self_attn.q_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_Q_B, "self_attn.q_proj.bias", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_K, "self_attn.k_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_K_B, "self_attn.k_proj.bias", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_V, "self_attn.v_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_V_B, "self_attn.v_proj.bias", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_OUT, "self_attn.o_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    END,
};

/* Qwen3: attention_bias adds all four biases; per-head q/k RMS norms. */
static const ca_hf_tensor ATTN_QWEN3[] = {
    {GA_T_ATTN_Q, "self_attn.q_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_Q_B, "self_attn.q_proj.bias", CA_X_COPY, CA_C_ATTN_BIAS, 0},
    {GA_T_ATTN_K, "self_attn.k_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_K_B, "self_attn.k_proj.bias", CA_X_COPY, CA_C_ATTN_BIAS, 0},
    {GA_T_ATTN_V, "self_attn.v_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_V_B, "self_attn.v_proj.bias", CA_X_COPY, CA_C_ATTN_BIAS, 0},
    {GA_T_ATTN_OUT, "self_attn.o_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_OUT_B, "self_attn.o_proj.bias", CA_X_COPY, CA_C_ATTN_BIAS, 0},
    {GA_T_ATTN_Q_NORM, "self_attn.q_norm.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_K_NORM, "self_attn.k_norm.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    END,
};

static const ca_hf_tensor MLP[] = {
    {GA_T_FFN_GATE, "mlp.gate_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_FFN_GATE_B, "mlp.gate_proj.bias", CA_X_COPY, CA_C_MLP_BIAS, 0},
    {GA_T_FFN_UP, "mlp.up_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_FFN_UP_B, "mlp.up_proj.bias", CA_X_COPY, CA_C_MLP_BIAS, 0},
    {GA_T_FFN_DOWN, "mlp.down_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_FFN_DOWN_B, "mlp.down_proj.bias", CA_X_COPY, CA_C_MLP_BIAS, 0},
    END,
};

/* Mixtral: experts w1 (gate), w2 (down), w3 (up), stacked in that order once all are read. */
static const ca_hf_tensor MOE_MIXTRAL[] = {
    {GA_T_FFN_GATE_INP, "block_sparse_moe.gate.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_FFN_GATE_EXPS, "block_sparse_moe.experts.%d.w1.weight", CA_X_STACK, CA_C_ALWAYS, 1},
    {GA_T_FFN_DOWN_EXPS, "block_sparse_moe.experts.%d.w2.weight", CA_X_STACK, CA_C_ALWAYS, 1},
    {GA_T_FFN_UP_EXPS, "block_sparse_moe.experts.%d.w3.weight", CA_X_STACK, CA_C_ALWAYS, 1},
    END,
};

/* Qwen MoE: stacked down, gate, up (Qwen2MoeModel.modify_tensors). */
static const ca_hf_tensor MOE_QWEN[] = {
    {GA_T_FFN_GATE_INP, "mlp.gate.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_FFN_DOWN_EXPS, "mlp.experts.%d.down_proj.weight", CA_X_STACK, CA_C_ALWAYS, 1},
    {GA_T_FFN_GATE_EXPS, "mlp.experts.%d.gate_proj.weight", CA_X_STACK, CA_C_ALWAYS, 1},
    {GA_T_FFN_UP_EXPS, "mlp.experts.%d.up_proj.weight", CA_X_STACK, CA_C_ALWAYS, 1},
    END,
};

/* Llama 4: fused experts stored transposed relative to a Linear, a shared expert, a router;
 * dense blocks in between (interleave_moe_layer_step). */
static const ca_hf_tensor ATTN_LLAMA4[] = {
    {GA_T_ATTN_Q, "self_attn.q_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_K, "self_attn.k_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_V, "self_attn.v_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_ATTN_OUT, "self_attn.o_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    END,
};

static const ca_hf_tensor FFN_LLAMA4[] = {
    {GA_T_FFN_GATE, "feed_forward.gate_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_FFN_UP, "feed_forward.up_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_FFN_DOWN, "feed_forward.down_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_FFN_GATE_INP, "feed_forward.router.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_FFN_GATE_EXPS, "feed_forward.experts.gate_up_proj", CA_X_SPLIT0_T, CA_C_ALWAYS, 1},
    {GA_T_FFN_UP_EXPS, "feed_forward.experts.gate_up_proj", CA_X_SPLIT1_T, CA_C_ALWAYS, 1},
    {GA_T_FFN_DOWN_EXPS, "feed_forward.experts.down_proj", CA_X_T, CA_C_ALWAYS, 0},
    {GA_T_FFN_GATE_SHEXP, "feed_forward.shared_expert.gate_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_FFN_UP_SHEXP, "feed_forward.shared_expert.up_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_FFN_DOWN_SHEXP, "feed_forward.shared_expert.down_proj.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    END,
};

static const ca_hf_tensor NORMS[] = {
    {GA_T_ATTN_NORM, "input_layernorm.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    {GA_T_FFN_NORM, "post_attention_layernorm.weight", CA_X_COPY, CA_C_ALWAYS, 0},
    END,
};

static const ca_hf_tensor *const T_LLAMA[] = {GLOBAL, ATTN_LLAMA, MLP, NORMS, NULL};
static const ca_hf_tensor *const T_MIXTRAL[] = {GLOBAL, ATTN_LLAMA, MOE_MIXTRAL, NORMS, NULL};
static const ca_hf_tensor *const T_QWEN2[] = {GLOBAL, ATTN_QWEN2, MLP, NORMS, NULL};
static const ca_hf_tensor *const T_QWEN3[] = {GLOBAL, ATTN_QWEN3, MLP, NORMS, NULL};
static const ca_hf_tensor *const T_QWEN3MOE[] = {GLOBAL, ATTN_QWEN3, MLP, MOE_QWEN, NORMS, NULL};
static const ca_hf_tensor *const T_LLAMA4[] = {GLOBAL, ATTN_LLAMA4, FFN_LLAMA4, NORMS, NULL};

#define K_BASE GA_K_BLOCK_COUNT, GA_K_CONTEXT_LENGTH, GA_K_EMBEDDING_LENGTH, GA_K_FEED_FORWARD_LENGTH, \
               GA_K_HEAD_COUNT, GA_K_HEAD_COUNT_KV

/* convert_hf_to_gguf.py at c392e50: Model.set_gguf_parameters, then LlamaModel's additions. */
static const ga_key K_LLAMA[] = {K_BASE, GA_K_ROPE_FREQ_BASE, GA_K_RMS_EPS, GA_K_EXPERT_COUNT,
                                 GA_K_EXPERT_USED_COUNT, GA_K_KEY_LENGTH, GA_K_VALUE_LENGTH,
                                 GA_K_FILE_TYPE, GA_K_VOCAB_SIZE, GA_K_ROPE_DIMENSION_COUNT,
                                 GA_K_ROPE_SCALING, GA_K_COUNT};
static const ga_key K_QWEN[] = {K_BASE, GA_K_ROPE_FREQ_BASE, GA_K_RMS_EPS, GA_K_EXPERT_COUNT,
                                GA_K_EXPERT_USED_COUNT, GA_K_KEY_LENGTH, GA_K_VALUE_LENGTH,
                                GA_K_FILE_TYPE, GA_K_ROPE_SCALING, GA_K_COUNT};
/* Current llama.cpp (the reference commit predates Qwen3-MoE): TextModel.set_gguf_parameters
 * (rope scaling before the base), then Qwen2MoeModel's expert widths. qkit adds
 * expert_weights_norm only for norm_topk_prob false, which llama.cpp would ignore. */
static const ga_key K_QWEN3MOE[] = {K_BASE, GA_K_ROPE_SCALING, GA_K_ROPE_FREQ_BASE, GA_K_RMS_EPS,
                                    GA_K_EXPERT_COUNT, GA_K_EXPERT_USED_COUNT, GA_K_KEY_LENGTH,
                                    GA_K_VALUE_LENGTH, GA_K_FILE_TYPE,
                                    GA_K_EXPERT_FEED_FORWARD_LENGTH,
                                    GA_K_EXPERT_SHARED_FEED_FORWARD_LENGTH,
                                    GA_K_EXPERT_WEIGHTS_NORM, GA_K_COUNT};

/* Llama4Model (current llama.cpp): LlamaModel's keys, the MoE step and expert width; then qkit's
 * keys for what llama.cpp hard-codes (chunk size, temperature tuning, q/k norm, NoPE blocks). */
static const ga_key K_LLAMA4[] = {K_BASE, GA_K_ROPE_FREQ_BASE, GA_K_RMS_EPS, GA_K_EXPERT_COUNT,
                                  GA_K_EXPERT_USED_COUNT, GA_K_KEY_LENGTH, GA_K_VALUE_LENGTH,
                                  GA_K_FILE_TYPE, GA_K_VOCAB_SIZE, GA_K_ROPE_DIMENSION_COUNT,
                                  GA_K_INTERLEAVE_MOE_LAYER_STEP, GA_K_EXPERT_FEED_FORWARD_LENGTH,
                                  GA_K_ATTN_CHUNK_SIZE, GA_K_ATTN_TEMPERATURE_LENGTH,
                                  GA_K_ATTN_TEMPERATURE_SCALE, GA_K_ATTN_USE_QK_NORM,
                                  GA_K_NO_ROPE_LAYERS, GA_K_COUNT};

static const char *const SKIP_VISION[] = {"vision_model.", "multi_modal_projector.", NULL};

static const ca_arch ARCHS[] = {
    {.hf_class = "LlamaForCausalLM", .gguf_arch = "llama", .root = "", .tables = T_LLAMA,
     .keys = K_LLAMA, .llama_vocab = true},
    {.hf_class = "MistralForCausalLM", .gguf_arch = "llama", .root = "", .tables = T_LLAMA,
     .keys = K_LLAMA, .llama_vocab = true},
    {.hf_class = "MixtralForCausalLM", .gguf_arch = "llama", .root = "", .tables = T_MIXTRAL,
     .moe = CA_MOE_EVERY, .n_expert_key = "num_local_experts", .keys = K_LLAMA, .llama_vocab = true},
    {.hf_class = "Qwen2ForCausalLM", .gguf_arch = "qwen2", .root = "", .tables = T_QWEN2, .keys = K_QWEN},
    {.hf_class = "Qwen3ForCausalLM", .gguf_arch = "qwen3", .root = "", .tables = T_QWEN3, .keys = K_QWEN,
     .need_head_dim = true},
    {.hf_class = "Qwen3MoeForCausalLM", .gguf_arch = "qwen3moe", .root = "", .tables = T_QWEN3MOE,
     .moe = CA_MOE_STEP, .n_expert_key = "num_experts", .moe_step_key = "decoder_sparse_step",
     .ff_exp_key = "moe_intermediate_size", .norm_key = "norm_topk_prob", .keys = K_QWEN3MOE,
     .need_head_dim = true},
    {.hf_class = "Llama4ForConditionalGeneration", .gguf_arch = "llama4", .root = "language_model.",
     .sub_config = "text_config", .skip = SKIP_VISION, .tables = T_LLAMA4, .moe = CA_MOE_STEP,
     .n_expert_key = "num_local_experts", .moe_step_key = "interleave_moe_layer_step",
     .ff_key = "intermediate_size_mlp", .ff_exp_key = "intermediate_size", .keys = K_LLAMA4,
     .need_head_dim = true, .hf_rope_pairs = true},
    {.hf_class = "Llama4ForCausalLM", .gguf_arch = "llama4", .root = "", .sub_config = "text_config",
     .tables = T_LLAMA4, .moe = CA_MOE_STEP, .n_expert_key = "num_local_experts",
     .moe_step_key = "interleave_moe_layer_step", .ff_key = "intermediate_size_mlp",
     .ff_exp_key = "intermediate_size", .keys = K_LLAMA4, .need_head_dim = true, .hf_rope_pairs = true},
};
#define N_ARCHS (sizeof ARCHS / sizeof ARCHS[0])

const char *ca_supported(void)
{
    return "LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM, "
           "Qwen3ForCausalLM, Qwen3MoeForCausalLM, Llama4ForConditionalGeneration, Llama4ForCausalLM";
}

const ca_arch *ca_arch_find(const char *hf_class)
{
    for (size_t i = 0; hf_class && i < N_ARCHS; i++)
        if (!strcmp(hf_class, ARCHS[i].hf_class))
            return &ARCHS[i];
    return NULL;
}

/* ================================================================ config.json */

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

static bool present(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v);
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

/* true or false; absent or null: dflt. Anything else ("yes", 1) is an error: reading it as false
 * would silently change the model. */
static int get_bool(const cfg_ctx *c, const cJSON *obj, const char *key, bool dflt, bool *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return QK_OK;
    }
    if (!cJSON_IsBool(v))
        return qk_err_set(c->err, QK_EFORMAT, "%s: '%s' must be true or false", c->name, key);
    *out = cJSON_IsTrue(v);
    return QK_OK;
}

/* A special token id (bos_token_id, eos_token_id): absent, null, an id below vocab_size, or a
 * list of them (Llama 3.1 lists several eos ids). An id past the vocabulary would be dropped
 * silently by the converter, so it is an error naming the key. */
static int check_token_id(const cfg_ctx *c, const cJSON *obj, const char *key, int64_t n_vocab)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key), *e;
    if (!v || cJSON_IsNull(v))
        return QK_OK;
    int ok = cJSON_IsNumber(v) || (cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0);
    if (cJSON_IsNumber(v))
        ok = v->valuedouble >= 0 && v->valuedouble < (double)n_vocab && v->valuedouble == floor(v->valuedouble);
    else if (ok)
        cJSON_ArrayForEach(e, v)
            ok &= cJSON_IsNumber(e) && e->valuedouble >= 0 && e->valuedouble < (double)n_vocab &&
                  e->valuedouble == floor(e->valuedouble);
    if (!ok)
        return qk_err_set(c->err, QK_EFORMAT, "%s: '%s' must be a token id below vocab_size %lld (or a list of them)",
                          c->name, key, (long long)n_vocab);
    return QK_OK;
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
    if (!(o->arch = ca_arch_find(first->valuestring)))
        return qk_err_set(c->err, QK_EUNSUPPORTED, "%s: architecture '%s' is not supported (supported: %s)",
                          c->name, qk_show(o->hf_arch).s, ca_supported());
    o->gguf_arch = o->arch->gguf_arch;
    return QK_OK;
}

/* The sizes every supported architecture needs, with bounds far above real models. */
static int parse_sizes(const cfg_ctx *c, ca_config *o)
{
    const cJSON *r = c->root;
    ga_hparams *hp = &o->hp;
    int rc;
    if ((rc = get_int(c, r, "num_hidden_layers", 1, GA_MAX_LAYERS, true, &hp->n_layer)) ||
        (rc = get_int(c, r, "hidden_size", 1, 1 << 20, true, &hp->n_embd)) ||
        (rc = get_int(c, r, o->arch->ff_key ? o->arch->ff_key : "intermediate_size", 1, 1 << 22, true,
                      &hp->n_ff)) ||
        (rc = get_int(c, r, "num_attention_heads", 1, 4096, true, &hp->n_head)) ||
        (rc = get_int(c, r, "vocab_size", 1, (int64_t)HF_MAX_TOKEN_ID + 1, true, &hp->n_vocab)) ||
        (rc = get_int(c, r, "max_position_embeddings", 1, UINT32_MAX, true, &hp->n_ctx)))
        return rc;
    hp->n_head_kv = hp->n_head;
    hp->has_head_kv = present(r, "num_key_value_heads");
    if ((rc = get_int(c, r, "num_key_value_heads", 1, hp->n_head, false, &hp->n_head_kv)))
        return rc;
    if (hp->n_head % hp->n_head_kv)
        return qk_err_set(c->err, QK_EFORMAT,
                          "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                          c->name, (long long)hp->n_head, (long long)hp->n_head_kv);
    hp->head_dim = 0;
    if ((rc = get_int(c, r, "head_dim", 1, 1 << 16, false, &hp->head_dim)))
        return rc;
    hp->has_head_dim = hp->head_dim > 0;
    if (!hp->has_head_dim) {
        if (hp->n_embd % hp->n_head)
            return qk_err_set(c->err, QK_EFORMAT,
                              "%s: hidden_size %lld is not a multiple of num_attention_heads %lld "
                              "(and no head_dim)",
                              c->name, (long long)hp->n_embd, (long long)hp->n_head);
        hp->head_dim = hp->n_embd / hp->n_head;
    }
    hp->n_rot = hp->head_dim;
    bool has;
    if ((rc = get_num(c, r, "rms_norm_eps", &has, &hp->rms_eps)))
        return rc;
    if (!has || !(hp->rms_eps > 0))
        return qk_err_set(c->err, QK_EFORMAT, "%s: 'rms_norm_eps' must be a positive number", c->name);
    return QK_OK;
}

/* mlp_only_layers: a list of block indices. */
static int parse_dense_list(const cfg_ctx *c, ca_config *o)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->root, "mlp_only_layers");
    if (!v || cJSON_IsNull(v))
        return QK_OK;
    if (!cJSON_IsArray(v))
        return qk_err_set(c->err, QK_EFORMAT, "%s: 'mlp_only_layers' must be a list of layer numbers", c->name);
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        double d = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!(d >= 0 && d < (double)o->hp.n_layer) || d != floor(d))
            return qk_err_set(c->err, QK_EFORMAT,
                              "%s: 'mlp_only_layers' holds %s, not a layer number below %lld", c->name,
                              cJSON_IsNumber(e) ? "an out-of-range number" : "a non-number",
                              (long long)o->hp.n_layer);
        o->hp.layer_moe[(int64_t)d] = 0;
    }
    return QK_OK;
}

static int parse_moe(const cfg_ctx *c, ca_config *o)
{
    const ca_arch *a = o->arch;
    const cJSON *r = c->root;
    ga_hparams *hp = &o->hp;
    int rc;
    o->has_expert_used = present(r, "num_experts_per_tok");
    if (a->moe == CA_MOE_NONE) {
        /* llama.cpp writes expert_used_count whenever the key is there */
        return get_int(c, r, "num_experts_per_tok", 0, 1 << 16, false, &hp->n_expert_used);
    }
    if ((rc = get_int(c, r, a->n_expert_key, 1, 1 << 16, true, &hp->n_expert)) ||
        (rc = get_int(c, r, "num_experts_per_tok", 1, 1 << 16, true, &hp->n_expert_used)))
        return rc;
    if (hp->n_expert_used > hp->n_expert)
        return qk_err_set(c->err, QK_EFORMAT, "%s: num_experts_per_tok %lld exceeds %s %lld", c->name,
                          (long long)hp->n_expert_used, a->n_expert_key, (long long)hp->n_expert);
    hp->n_ff_exp = hp->n_ff;
    if (a->ff_exp_key) {
        if ((rc = get_int(c, r, a->ff_exp_key, 1, 1 << 22, true, &hp->n_ff_exp)))
            return rc;
        hp->has_ff_exp = true;
    }
    const ga_arch *ga = ga_arch_find(a->gguf_arch);
    /* an architecture that always has a shared expert sizes it like the others (Llama 4) */
    if (ga_arch_requires(ga, GA_T_FFN_GATE_SHEXP))
        hp->n_ff_shexp = hp->n_ff_exp;
    hp->expert_weights_norm = ga->expert_weights_norm;
    if (a->norm_key && (rc = get_bool(c, r, a->norm_key, false, &hp->expert_weights_norm)))
        return rc;
    hp->moe_step = 1;
    if (a->moe == CA_MOE_STEP &&
        (rc = get_int(c, r, a->moe_step_key, 1, GA_MAX_LAYERS, false, &hp->moe_step)))
        return rc;
    for (int64_t l = 0; l < hp->n_layer; l++)
        hp->layer_moe[l] = (uint8_t)((l + 1) % hp->moe_step == 0);
    return parse_dense_list(c, o);
}

static double num_or(const cJSON *o, const char *k, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* AutoAWQ GEMM and compressed-tensors pack-quantized W4 (asymmetric or symmetric) checkpoints:
 * read as models, their linears dequantized on load. Anything else is refused by name. */
static int parse_w4(const cfg_ctx *c, const cJSON *q, int awq, ca_config *o)
{
    char s[64];
    if (awq) {
        const int bits = (int)num_or(q, "bits", num_or(q, "w_bit", 0));
        const int g = (int)num_or(q, "group_size", num_or(q, "q_group_size", 0));
        const cJSON *zp = cJSON_GetObjectItemCaseSensitive(q, "zero_point");
        get_str(q, "version", s, sizeof s);
        if (bits != 4 || !(g == -1 || g >= 8) || !cJSON_IsTrue(zp) || (s[0] && strcasecmp(s, "gemm")))
            return qk_err_set(c->err, QK_EUNSUPPORTED, "%s: quantization_config: only AWQ bits 4, "
                              "zero_point true, version gemm with a group_size (or -1) is read (bits %d, "
                              "group_size %d, version '%s')", c->name, bits, g, qk_show(s).s);
        o->w4 = CA_W4_AWQ;
        o->w4_group = g > 0 ? g : 0;
        return QK_OK;
    }
    get_str(q, "format", s, sizeof s);
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(q, "config_groups");
    const cJSON *g0 = cJSON_IsObject(groups) && cJSON_GetArraySize(groups) == 1 ? groups->child : NULL;
    const cJSON *w = g0 ? cJSON_GetObjectItemCaseSensitive(g0, "weights") : NULL;
    const cJSON *ia = g0 ? cJSON_GetObjectItemCaseSensitive(g0, "input_activations") : NULL;
    char gf[64] = "", type[16] = "", strat[16] = "";
    if (g0)
        get_str(g0, "format", gf, sizeof gf);
    if (w) {
        get_str(w, "type", type, sizeof type);
        get_str(w, "strategy", strat, sizeof strat);
    }
    const int bits = w ? (int)num_or(w, "num_bits", 0) : 0, gsize = w ? (int)num_or(w, "group_size", 0) : 0;
    const int packed = !strcmp(s, "pack-quantized") || !strcmp(gf, "pack-quantized");
    if (!packed || !w || bits != 4 || strcmp(type, "int") || (ia && !cJSON_IsNull(ia)) ||
        !(!strcmp(strat, "group") || !strcmp(strat, "channel")) || (!strcmp(strat, "group") && gsize < 8))
        return qk_err_set(c->err, QK_EUNSUPPORTED, "%s: quantization_config: only compressed-tensors "
                          "pack-quantized W4A16 (one config group, int 4-bit weights by group or channel, "
                          "no activation quantization) is read", c->name);
    o->w4 = CA_W4_CT;
    o->w4_group = !strcmp(strat, "group") ? gsize : 0;
    o->w4_sym = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(w, "symmetric"));
    return QK_OK;
}

/* quantization_config of FP8 checkpoints (DeepSeek-V3, Qwen3-FP8). */
static int parse_quant(const cfg_ctx *c, ca_config *o)
{
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(c->root, "quantization_config");
    if (!q || cJSON_IsNull(q))
        return QK_OK;
    char method[32];
    get_str(q, "quant_method", method, sizeof method);
    if (!strcmp(method, "awq") || !strcmp(method, "compressed-tensors"))
        return parse_w4(c, q, !strcmp(method, "awq"), o);
    if (strcmp(method, "fp8"))
        return qk_err_set(c->err, QK_EUNSUPPORTED,
                          "%s: quantization_config quant_method '%s' is not supported (fp8, awq, "
                          "compressed-tensors)", c->name, qk_show(method).s);
    o->fp8 = true;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(q, "weight_block_size");
    if (!b || cJSON_IsNull(b))
        return QK_OK;
    if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) != 2)
        return qk_err_set(c->err, QK_EFORMAT, "%s: 'weight_block_size' must be two positive integers", c->name);
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_GetArrayItem(b, i);
        double d = cJSON_IsNumber(e) ? e->valuedouble : 0;
        if (!(d >= 1 && d <= (1 << 20)) || d != floor(d))
            return qk_err_set(c->err, QK_EFORMAT, "%s: 'weight_block_size' must be two positive integers", c->name);
        o->fp8_block[i] = (int64_t)d;
    }
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
    ga_hparams *hp = &o->hp;
    bool has;
    int rc;
    hp->rope_factor = 8.0;
    hp->rope_low_freq = 1.0;
    hp->rope_high_freq = 4.0;
    hp->rope_orig_ctx = 8192;
    if ((rc = get_num(c, p, "factor", &has, &hp->rope_factor)) ||
        (rc = get_num(c, p, "low_freq_factor", &has, &hp->rope_low_freq)) ||
        (rc = get_num(c, p, "high_freq_factor", &has, &hp->rope_high_freq)) ||
        (rc = get_int(c, c->root, "original_max_position_embeddings", 1, UINT32_MAX, false, &hp->rope_orig_ctx)))
        return rc;
    if (!ga_arch_has_kind(ga_arch_find(o->gguf_arch), GA_T_ROPE_FREQS))
        return qk_err_set(c->err, QK_EUNSUPPORTED, "%s: llama3 rope scaling on %s is not supported",
                          c->name, o->hf_arch);
    /* low == high is valid (Llama 4): the smoothing band between the two wavelengths is empty */
    if (!(hp->rope_factor > 0) || !(hp->rope_low_freq > 0) || !(hp->rope_high_freq > 0) ||
        hp->rope_low_freq > hp->rope_high_freq)
        return qk_err_set(c->err, QK_EFORMAT,
                          "%s: llama3 rope scaling needs positive factors with "
                          "low_freq_factor <= high_freq_factor",
                          c->name);
    hp->rope_scaling = GA_ROPE_LLAMA3;
    return QK_OK;
}

static int parse_rope(const cfg_ctx *c, ca_config *o)
{
    ga_hparams *hp = &o->hp;
    const cJSON *p = rope_params(c->root);
    int rc = get_num(c, c->root, "rope_theta", &hp->has_rope_theta, &hp->rope_theta);
    if (!rc && !hp->has_rope_theta && p)
        rc = get_num(c, p, "rope_theta", &hp->has_rope_theta, &hp->rope_theta);
    if (rc)
        return rc;
    if (hp->has_rope_theta && !(hp->rope_theta > 0))
        return qk_err_set(c->err, QK_EFORMAT, "%s: 'rope_theta' must be positive", c->name);
    hp->rope_scaling = GA_ROPE_NONE;
    if (!p)
        return QK_OK;
    const char *type = rope_type(p);
    bool has_factor;
    if ((rc = get_num(c, p, "factor", &has_factor, &hp->rope_factor)))
        return rc;
    if (!strcmp(type, "default"))
        return QK_OK;
    /* positions are divided by the factor: 0 or negative makes no model */
    if ((!strcmp(type, "linear") || !strcmp(type, "yarn")) && has_factor && !(hp->rope_factor > 0))
        return qk_err_set(c->err, QK_EFORMAT, "%s: %s rope scaling 'factor' must be positive, got %g",
                          c->name, qk_show(type).s, hp->rope_factor);
    if (!strcmp(type, "linear")) {
        hp->rope_scaling = has_factor ? GA_ROPE_LINEAR : GA_ROPE_NONE;
        return QK_OK;
    }
    if (!strcmp(type, "yarn")) {
        hp->rope_scaling = has_factor ? GA_ROPE_YARN : GA_ROPE_NONE;
        if (!has_factor)
            return QK_OK;
        return get_int(c, p, "original_max_position_embeddings", 1, UINT32_MAX, true, &hp->rope_orig_ctx);
    }
    if (!strcasecmp(type, "llama3"))
        return parse_llama3(c, p, o);
    return qk_err_set(c->err, QK_EUNSUPPORTED,
                      "%s: rope scaling type '%s' is not supported (default, linear, yarn, llama3)",
                      c->name, qk_show(type).s);
}

int ca_config_parse(const char *json, size_t len, const char *name, ca_config *out, qk_err *err)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    int rc = ca_config_from_json(root, name, out, err);
    cJSON_Delete(root);
    return rc;
}

static int parse_config(const cfg_ctx *c, ca_config *out);

/* Llama 4's attention, with transformers' defaults. */
static int parse_chunked_nope(const cfg_ctx *c, ca_config *o)
{
    const cJSON *r = c->root;
    ga_hparams *hp = &o->hp;
    int64_t interval = 4;
    bool has;
    int rc;
    hp->attn_chunk = 8192;
    hp->attn_temp_floor = 8192;
    hp->attn_temp_scale = 0.1;
    if ((rc = get_int(c, r, "attention_chunk_size", 1, INT32_MAX, false, &hp->attn_chunk)) ||
        (rc = get_int(c, r, "floor_scale", 1, INT32_MAX, false, &hp->attn_temp_floor)) ||
        (rc = get_num(c, r, "attn_scale", &has, &hp->attn_temp_scale)) ||
        (rc = get_int(c, r, "no_rope_layer_interval", 1, GA_MAX_LAYERS, false, &interval)))
        return rc;
    bool tuning, qk_norm;
    if ((rc = get_bool(c, r, "attn_temperature_tuning", true, &tuning)) ||
        (rc = get_bool(c, r, "use_qk_norm", true, &qk_norm)))
        return rc;
    if (!tuning)
        hp->attn_temp_scale = 0;
    hp->qk_rms_norm = qk_norm;
    for (int64_t l = 0; l < hp->n_layer; l++)
        hp->layer_nope[l] = (uint8_t)((l + 1) % interval == 0);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, "no_rope_layers");
    if (!v || cJSON_IsNull(v) || (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
        return QK_OK;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != hp->n_layer)
        return qk_err_set(c->err, QK_EFORMAT, "%s: 'no_rope_layers' must list %lld entries of 0 or 1 (one per layer)",
                          c->name, (long long)hp->n_layer);
    int64_t l = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsNumber(e) || (e->valuedouble != 0 && e->valuedouble != 1))
            return qk_err_set(c->err, QK_EFORMAT, "%s: 'no_rope_layers' entry %lld must be 0 or 1", c->name,
                              (long long)l);
        hp->layer_nope[l++] = e->valuedouble == 0; /* 1 means the layer uses RoPE */
    }
    return QK_OK;
}

/* A copy of root with the sub-config's keys laid over it (Llama 4's text_config). */
static cJSON *merged_config(const cJSON *root, const char *sub)
{
    cJSON *m = cJSON_Duplicate(root, 1);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, sub), *e;
    if (!m || !cJSON_IsObject(t))
        return m;
    cJSON_ArrayForEach(e, t) {
        cJSON *dup = cJSON_Duplicate(e, 1);
        if (!dup)
            continue;
        if (cJSON_GetObjectItemCaseSensitive(m, e->string))
            cJSON_ReplaceItemInObjectCaseSensitive(m, e->string, dup);
        else
            cJSON_AddItemToObject(m, e->string, dup);
    }
    return m;
}

cJSON *ca_config_flat(const cJSON *root)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *first = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
    const ca_arch *arch = cJSON_IsString(first) ? ca_arch_find(first->valuestring) : NULL;
    return arch && arch->sub_config ? merged_config(root, arch->sub_config) : cJSON_Duplicate(root, 1);
}

int ca_config_from_json(const cJSON *root, const char *name, ca_config *out, qk_err *err)
{
    memset(out, 0, sizeof *out);
    if (!root || !cJSON_IsObject(root))
        return qk_err_set(err, QK_EFORMAT, "%s: not a JSON object", name);
    cfg_ctx c = {root, name, err};
    int rc = parse_arch(&c, out);
    if (rc || !out->arch->sub_config)
        return rc ? rc : parse_config(&c, out);
    /* text_config: its keys win; messages name it. Text-only checkpoints are flat. */
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(root, out->arch->sub_config);
    if (!sub || cJSON_IsNull(sub))
        return parse_config(&c, out);
    if (!cJSON_IsObject(sub))
        return qk_err_set(err, QK_EFORMAT, "%s: '%s' must be an object", name, out->arch->sub_config);
    cJSON *merged = merged_config(root, out->arch->sub_config);
    if (!merged)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", name);
    char sub_name[600];
    snprintf(sub_name, sizeof sub_name, "%s (%s)", name, out->arch->sub_config);
    cfg_ctx cs = {merged, sub_name, err};
    rc = parse_config(&cs, out);
    cJSON_Delete(merged);
    return rc;
}

/* Everything past the architecture, from c->root. */
static int parse_config(const cfg_ctx *c, ca_config *out)
{
    const cJSON *root = c->root;
    int rc = parse_sizes(c, out);
    if (!rc)
        rc = parse_moe(c, out);
    if (!rc)
        rc = parse_rope(c, out);
    if (!rc)
        rc = parse_quant(c, out);
    if (!rc && ga_arch_find(out->gguf_arch)->chunked_nope)
        rc = parse_chunked_nope(c, out);
    if (!rc)
        rc = get_bool(c, root, "tie_word_embeddings", false, &out->tie_embeddings);
    if (!rc)
        rc = get_bool(c, root, "attention_bias", false, &out->attention_bias);
    if (!rc)
        rc = get_bool(c, root, "mlp_bias", false, &out->mlp_bias);
    if (!rc)
        rc = check_token_id(c, root, "bos_token_id", out->hp.n_vocab);
    if (!rc)
        rc = check_token_id(c, root, "eos_token_id", out->hp.n_vocab);
    if (!rc) {
        get_str(root, "torch_dtype", out->dtype, sizeof out->dtype);
        if (!out->dtype[0])
            get_str(root, "dtype", out->dtype, sizeof out->dtype);
        get_str(root, "_name_or_path", out->name_or_path, sizeof out->name_or_path);
    }
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
    int rc = qk_file_read(path, QK_FILE_NO_LIMIT, &json, &len, &read_err);
    /* a folder without config.json is bad input, not an I/O failure */
    if (rc == QK_ENOTFOUND)
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

static bool cond_holds(const ca_config *c, ca_cond cond)
{
    switch (cond) {
    case CA_C_ATTN_BIAS: return c->attention_bias;
    case CA_C_MLP_BIAS: return c->mlp_bias;
    case CA_C_UNTIED: return !c->tie_embeddings;
    case CA_C_LLAMA3: return c->hp.rope_scaling == GA_ROPE_LLAMA3;
    default: return true;
    }
}

static void fill_output(const ca_config *c, const ca_hf_tensor *e, int layer, size_t order, ca_output *o)
{
    memset(o, 0, sizeof *o);
    o->kind = e->kind;
    o->layer = layer;
    o->xform = e->xform;
    o->group = e->group;
    o->order = order;
    ga_tensor_name(e->kind, layer, o->name, sizeof o->name);
    ga_shape(e->kind, &c->hp, &o->n_dims, o->ne);
    if (e->xform == CA_X_PERMUTE_Q)
        o->perm_heads = c->hp.n_head;
    if (e->xform == CA_X_PERMUTE_K)
        o->perm_heads = c->hp.n_head_kv;
    o->n_src = e->xform == CA_X_ROPE_FREQS ? 0 : e->xform == CA_X_STACK ? (int)c->hp.n_expert : 1;
    o->src_split = e->xform == CA_X_SPLIT0_T || e->xform == CA_X_SPLIT1_T;
    if (!e->hf)
        return;
    if (layer < 0)
        snprintf(o->src, sizeof o->src, "%s%s", c->arch->root, e->hf);
    else
        snprintf(o->src, sizeof o->src, "%smodel.layers.%d.%s", c->arch->root, layer, e->hf);
}

bool ca_output_at(const ca_config *c, size_t i, ca_output *out)
{
    const ga_arch *ga = ga_arch_find(c->gguf_arch);
    size_t k = 0;
    /* model-wide tensors, then block by block */
    for (int l = -1; l < (int)c->hp.n_layer; l++) {
        for (const ca_hf_tensor *const *t = c->arch->tables; *t; t++) {
            for (const ca_hf_tensor *e = *t; e->kind != GA_T_COUNT; e++) {
                if (!cond_holds(c, e->cond) || !ga_block_has(ga, &c->hp, e->kind, l))
                    continue;
                if (k++ == i) {
                    fill_output(c, e, l, i, out);
                    return true;
                }
            }
        }
    }
    return false;
}

void ca_output_src_name(const ca_output *o, int k, char *buf, size_t size)
{
    if (o->xform == CA_X_STACK)
        snprintf(buf, size, o->src, k); /* the pattern comes from the static tables */
    else
        snprintf(buf, size, "%s", o->src);
}

void ca_output_src_shape(const ca_output *o, int *n_dims, int64_t shape[4])
{
    if (o->xform == CA_X_T || o->src_split) { /* [n_expert, ne0, (2·)ne1]: transposed experts */
        *n_dims = 3;
        shape[0] = o->ne[2], shape[1] = o->ne[0], shape[2] = o->ne[1] * (o->src_split ? 2 : 1), shape[3] = 0;
        return;
    }
    int nd = o->xform == CA_X_STACK ? 2 : (int)o->n_dims;
    *n_dims = nd;
    for (int d = 0; d < 4; d++)
        shape[d] = d < nd ? o->ne[nd - 1 - d] : 0;
}

bool ca_skipped(const ca_config *c, const char *hf_name)
{
    for (const char *const *p = c->arch->skip; p && *p; p++)
        if (!strncmp(hf_name, *p, strlen(*p)))
            return true;
    return false;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

bool ca_ignored(const char *hf_name)
{
    return ends_with(hf_name, ".attention.masked_bias") || ends_with(hf_name, ".attention.bias") ||
           ends_with(hf_name, ".rotary_emb.inv_freq");
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
    const ga_hparams *hp = &c->hp;
    const float base = (float)(hp->has_rope_theta ? hp->rope_theta : 10000.0);
    const int64_t dim = hp->head_dim;
    const float factor = (float)hp->rope_factor, low = (float)hp->rope_low_freq;
    const float lo_wavelen = (float)((double)hp->rope_orig_ctx / hp->rope_low_freq);
    const float hi_wavelen = (float)((double)hp->rope_orig_ctx / hp->rope_high_freq);
    const float span = (float)(hp->rope_high_freq - hp->rope_low_freq);
    const float two_pi = (float)(2.0 * 3.14159265358979323846), orig = (float)hp->rope_orig_ctx;
    for (int64_t i = 0; i < dim / 2; i++) {
        float e = (float)(2 * i) / (float)dim;
        float p = (float)pow((double)base, (double)e); /* correctly rounded in practice */
        float freq = 1.0f / p;
        float wavelen = (1.0f / freq) * two_pi;
        if (wavelen < hi_wavelen) {
            out[i] = 1.0f;
        } else if (wavelen > lo_wavelen) {
            out[i] = factor;
        } else if (span == 0.0f) {
            out[i] = 1.0f; /* wavelength exactly at the empty band (low == high): unscaled */
        } else {
            float smooth = ((1.0f / wavelen) * orig - low) / span;
            out[i] = 1.0f / ((1.0f - smooth) / factor + smooth);
        }
    }
}

/* ================================================================ hyper-parameters */

static int set_u32(gguf_writer *w, const ca_config *c, ga_key k, int64_t v)
{
    char key[96];
    ga_key_name(k, c->gguf_arch, key, sizeof key);
    return gguf_writer_set_u32(w, key, (uint32_t)v);
}

static int set_f32(gguf_writer *w, const ca_config *c, ga_key k, double v)
{
    char key[96];
    ga_key_name(k, c->gguf_arch, key, sizeof key);
    return gguf_writer_set_f32(w, key, (float)v);
}

static int write_rope_scaling(gguf_writer *w, const ca_config *c)
{
    const ga_hparams *hp = &c->hp;
    if (hp->rope_scaling != GA_ROPE_LINEAR && hp->rope_scaling != GA_ROPE_YARN)
        return QK_OK;
    char base[96], k[128];
    ga_key_name(GA_K_ROPE_SCALING, c->gguf_arch, base, sizeof base);
    snprintf(k, sizeof k, "%s.type", base);
    int rc = gguf_writer_set_str(w, k, hp->rope_scaling == GA_ROPE_LINEAR ? "linear" : "yarn");
    snprintf(k, sizeof k, "%s.factor", base);
    if (!rc)
        rc = gguf_writer_set_f32(w, k, (float)hp->rope_factor);
    snprintf(k, sizeof k, "%s.original_context_length", base);
    if (!rc && hp->rope_scaling == GA_ROPE_YARN)
        rc = gguf_writer_set_u32(w, k, (uint32_t)hp->rope_orig_ctx);
    return rc;
}

static int write_key(gguf_writer *w, const ca_config *c, ga_key k, uint32_t file_type)
{
    const ga_hparams *hp = &c->hp;
    char key[96];
    switch (k) {
    case GA_K_BLOCK_COUNT: return set_u32(w, c, k, hp->n_layer);
    case GA_K_CONTEXT_LENGTH: return set_u32(w, c, k, hp->n_ctx);
    case GA_K_EMBEDDING_LENGTH: return set_u32(w, c, k, hp->n_embd);
    case GA_K_FEED_FORWARD_LENGTH: return set_u32(w, c, k, hp->n_ff);
    case GA_K_HEAD_COUNT: return set_u32(w, c, k, hp->n_head);
    case GA_K_HEAD_COUNT_KV: return hp->has_head_kv ? set_u32(w, c, k, hp->n_head_kv) : QK_OK;
    case GA_K_ROPE_FREQ_BASE: return hp->has_rope_theta ? set_f32(w, c, k, hp->rope_theta) : QK_OK;
    case GA_K_RMS_EPS: return set_f32(w, c, k, hp->rms_eps);
    case GA_K_EXPERT_COUNT: return hp->n_expert ? set_u32(w, c, k, hp->n_expert) : QK_OK;
    case GA_K_EXPERT_USED_COUNT: return c->has_expert_used ? set_u32(w, c, k, hp->n_expert_used) : QK_OK;
    case GA_K_KEY_LENGTH:
    case GA_K_VALUE_LENGTH: return hp->has_head_dim ? set_u32(w, c, k, hp->head_dim) : QK_OK;
    case GA_K_FILE_TYPE: return gguf_writer_set_u32(w, "general.file_type", file_type);
    case GA_K_VOCAB_SIZE: return set_u32(w, c, k, hp->n_vocab);
    case GA_K_ROPE_DIMENSION_COUNT: return set_u32(w, c, k, hp->head_dim);
    case GA_K_ROPE_SCALING: return write_rope_scaling(w, c);
    case GA_K_EXPERT_FEED_FORWARD_LENGTH: return hp->has_ff_exp ? set_u32(w, c, k, hp->n_ff_exp) : QK_OK;
    case GA_K_EXPERT_SHARED_FEED_FORWARD_LENGTH:
        return hp->n_ff_shexp ? set_u32(w, c, k, hp->n_ff_shexp) : QK_OK;
    case GA_K_INTERLEAVE_MOE_LAYER_STEP: return set_u32(w, c, k, hp->moe_step);
    case GA_K_ATTN_CHUNK_SIZE: return set_u32(w, c, k, hp->attn_chunk);
    case GA_K_ATTN_TEMPERATURE_LENGTH: return set_u32(w, c, k, hp->attn_temp_floor);
    case GA_K_ATTN_TEMPERATURE_SCALE: return set_f32(w, c, k, hp->attn_temp_scale);
    case GA_K_ATTN_USE_QK_NORM:
        ga_key_name(k, c->gguf_arch, key, sizeof key);
        return gguf_writer_set_bool(w, key, hp->qk_rms_norm);
    case GA_K_NO_ROPE_LAYERS: {
        int32_t v[GA_MAX_LAYERS];
        for (int64_t l = 0; l < hp->n_layer; l++)
            v[l] = !hp->layer_nope[l]; /* transformers' no_rope_layers: 1 = uses RoPE */
        ga_key_name(k, c->gguf_arch, key, sizeof key);
        return gguf_writer_set_arr(w, key, GGUF_TYPE_I32, v, (uint64_t)hp->n_layer);
    }
    case GA_K_EXPERT_WEIGHTS_NORM:
        /* only when it departs from the architecture's behaviour (llama.cpp writes none) */
        if (!hp->n_expert || hp->expert_weights_norm == ga_arch_find(c->gguf_arch)->expert_weights_norm)
            return QK_OK;
        ga_key_name(k, c->gguf_arch, key, sizeof key);
        return gguf_writer_set_bool(w, key, hp->expert_weights_norm);
    default: return QK_EINTERNAL;
    }
}

int ca_write_hparams(gguf_writer *w, const ca_config *c, uint32_t file_type)
{
    int rc = QK_OK;
    for (const ga_key *k = c->arch->keys; *k != GA_K_COUNT && !rc; k++)
        rc = write_key(w, c, *k, file_type);
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
                     int64_t expert_count, int64_t label_params, ca_general *out)
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
    if (!out->size_label[0] && total_params > 0 && expert_count > 0) {
        char one[12];
        ca_size_label(label_params, one, sizeof one);
        snprintf(out->size_label, sizeof out->size_label, "%lldx%.11s", (long long)(expert_count % 100000), one);
    } else if (!out->size_label[0] && total_params > 0) {
        ca_size_label(total_params, out->size_label, sizeof out->size_label);
    }
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
