/* mix.c — llama-quantize's per-tensor type choice (llama.cpp c392e50, src/llama-quant.cpp).
 *
 * The rules below mirror llama_tensor_get_type branch for branch, including the quirks that
 * decide bytes: substring matches on names, counters that advance in loader order, integer
 * divisions such as n_layer/8, and "use_more_bits". Where llama-quantize would crash or throw
 * (an override or --pure type that does not fit a row), qkit applies the fallback rule and says
 * so in the decision's warning instead. */
#include "mix.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../quant/types.h"

/* ---- the mix table ------------------------------------------------------------------------ */

static const mx_mix MIXES[] = {
    {"Q4_0", MX_FTYPE_Q4_0, Q_TYPE_Q4_0, 0, " 4.34G, +0.4685 ppl @ Llama-3-8B"},
    {"Q4_1", MX_FTYPE_Q4_1, Q_TYPE_Q4_1, 0, " 4.78G, +0.4511 ppl @ Llama-3-8B"},
    {"Q5_0", MX_FTYPE_Q5_0, Q_TYPE_Q5_0, 0, " 5.21G, +0.1316 ppl @ Llama-3-8B"},
    {"Q5_1", MX_FTYPE_Q5_1, Q_TYPE_Q5_1, 0, " 5.65G, +0.1062 ppl @ Llama-3-8B"},
    {"Q2_K", MX_FTYPE_Q2_K, Q_TYPE_Q2_K, 0, " 2.96G, +3.5199 ppl @ Llama-3-8B"},
    {"Q2_K_S", MX_FTYPE_Q2_K_S, Q_TYPE_Q2_K, 1, " 2.96G, +3.1836 ppl @ Llama-3-8B"},
    {"Q3_K_S", MX_FTYPE_Q3_K_S, Q_TYPE_Q3_K, 0, " 3.41G, +1.6321 ppl @ Llama-3-8B"},
    {"Q3_K_M", MX_FTYPE_Q3_K_M, Q_TYPE_Q3_K, 0, " 3.74G, +0.6569 ppl @ Llama-3-8B"},
    {"Q3_K_L", MX_FTYPE_Q3_K_L, Q_TYPE_Q3_K, 0, " 4.03G, +0.5562 ppl @ Llama-3-8B"},
    {"IQ4_NL", MX_FTYPE_IQ4_NL, Q_TYPE_IQ4_NL, 0, " 4.50 bpw non-linear quantization"},
    {"IQ4_XS", MX_FTYPE_IQ4_XS, Q_TYPE_IQ4_XS, 0, " 4.25 bpw non-linear quantization"},
    {"Q4_K_S", MX_FTYPE_Q4_K_S, Q_TYPE_Q4_K, 0, " 4.37G, +0.2689 ppl @ Llama-3-8B"},
    {"Q4_K_M", MX_FTYPE_Q4_K_M, Q_TYPE_Q4_K, 0, " 4.58G, +0.1754 ppl @ Llama-3-8B"},
    {"Q5_K_S", MX_FTYPE_Q5_K_S, Q_TYPE_Q5_K, 0, " 5.21G, +0.1049 ppl @ Llama-3-8B"},
    {"Q5_K_M", MX_FTYPE_Q5_K_M, Q_TYPE_Q5_K, 0, " 5.33G, +0.0569 ppl @ Llama-3-8B"},
    {"Q6_K", MX_FTYPE_Q6_K, Q_TYPE_Q6_K, 0, " 6.14G, +0.0217 ppl @ Llama-3-8B"},
    {"Q8_0", MX_FTYPE_Q8_0, Q_TYPE_Q8_0, 0, " 7.96G, +0.0026 ppl @ Llama-3-8B"},
    {"F16", MX_FTYPE_F16, Q_TYPE_F16, 0, "14.00G, +0.0020 ppl @ Mistral-7B"},
    {"BF16", MX_FTYPE_BF16, Q_TYPE_BF16, 0, "14.00G, -0.0050 ppl @ Mistral-7B"},
    {"F32", MX_FTYPE_ALL_F32, Q_TYPE_F32, 0, "26.00G              @ 7B"},
};
#define N_MIXES (sizeof MIXES / sizeof MIXES[0])

static const struct {
    const char *alias;
    int ftype;
} ALIASES[] = {{"Q3_K", MX_FTYPE_Q3_K_M}, {"Q4_K", MX_FTYPE_Q4_K_M}, {"Q5_K", MX_FTYPE_Q5_K_M}};

const mx_mix *mx_mix_list(size_t *n)
{
    *n = N_MIXES;
    return MIXES;
}

const mx_mix *mx_mix_from_ftype(int ftype)
{
    for (size_t i = 0; i < N_MIXES; i++)
        if (MIXES[i].ftype == ftype)
            return &MIXES[i];
    return NULL;
}

const mx_mix *mx_mix_from_name(const char *name)
{
    if (!name || !*name)
        return NULL;
    for (size_t i = 0; i < N_MIXES; i++)
        if (!strcasecmp(MIXES[i].name, name))
            return &MIXES[i];
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++)
        if (!strcasecmp(ALIASES[i].alias, name))
            return mx_mix_from_ftype(ALIASES[i].ftype);
    /* llama-quantize also takes the ftype number ("15" for Q4_K_M). */
    char *end;
    long v = strtol(name, &end, 10);
    if (*end || end == name || v < 0 || v > INT_MAX)
        return NULL;
    return mx_mix_from_ftype((int)v);
}

void mx_options_init(mx_options *o)
{
    memset(o, 0, sizeof *o);
    o->output_type = -1;
    o->token_embd_type = -1;
}

/* ---- tensor order ------------------------------------------------------------------------- */

/* sscanf(name, "blk.%d.", &layer) as the loader's comparator uses it: -1 when there is no
 * number (the trailing "." is not checked by sscanf's return value). Saturates instead of the
 * undefined overflow of %d. */
static long name_layer(const char *name)
{
    if (strncmp(name, "blk.", 4))
        return -1;
    const char *s = name + 4;
    while (isspace((unsigned char)*s))
        s++;
    int neg = *s == '-';
    if (*s == '-' || *s == '+')
        s++;
    if (!isdigit((unsigned char)*s))
        return -1;
    long v = 0;
    for (; isdigit((unsigned char)*s); s++)
        v = v > (LONG_MAX - 9) / 10 ? LONG_MAX : v * 10 + (*s - '0');
    return neg ? -v : v;
}

int mx_name_cmp(const char *a, const char *b)
{
    long la = name_layer(a), lb = name_layer(b);
    if (la != lb)
        return la < lb ? -1 : 1;
    return strcmp(a, b);
}

/* ---- the planner state -------------------------------------------------------------------- */

typedef struct {
    pcre2_code *re;
    int type;
} tt_rule;

struct mx_plan {
    size_t n;
    size_t *order;
    mx_decision *dec;
    size_t n_fallback, n_checked;
};

/* quantize_state_impl: the counters llama_tensor_get_type advances. */
typedef struct {
    const mx_model *m;
    int ftype;
    int has_imatrix, has_output, is_70b, is_falcon;
    int n_gqa, n_expert;
    int n_attention_wv, i_attention_wv;
    int n_ffn_down, i_ffn_down, n_ffn_gate, i_ffn_gate, n_ffn_up, i_ffn_up;
    qk_err *err;
} mix_state;

static int has(const char *name, const char *part) { return strstr(name, part) != NULL; }

static int use_more_bits(int i_layer, int n_layers)
{
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

static int ftype_in(int ftype, const int *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == ftype)
            return 1;
    return 0;
}
#define FTYPE_IN(ft, ...) \
    ftype_in((ft), (const int[]){__VA_ARGS__}, sizeof((const int[]){__VA_ARGS__}) / sizeof(int))

/* llama_model::type == LLM_TYPE_70B, which load_hparams sets for these architectures only. */
static int model_is_70b(const mx_model *m)
{
    if (m->n_layer != 80)
        return 0;
    if (!strcmp(m->arch, "llama"))
        return m->n_expert != 8 && m->n_head != (m->n_head_kv ? m->n_head_kv : m->n_head);
    return !strcmp(m->arch, "deci") || !strcmp(m->arch, "qwen2") || !strcmp(m->arch, "qwen2vl") ||
           !strcmp(m->arch, "olmo");
}

/* The layer a counted tensor belongs to: the counter for dense models, the name for MoE models
 * (whose expert tensors are not in layer order). */
static int layer_of(mix_state *s, const char *name, int counter, int *i_layer)
{
    if (s->n_expert <= 1) {
        *i_layer = counter;
        return QK_OK;
    }
    long l = name_layer(name);
    if (strncmp(name, "blk.", 4) || l == -1)
        return qk_err_set(s->err, QK_EFORMAT, "tensor '%s': cannot determine its layer", name);
    if (l < 0 || l >= (long)s->m->n_layer)
        return qk_err_set(s->err, QK_EFORMAT, "tensor '%s': layer %ld is outside [0, %u)", name, l,
                          s->m->n_layer);
    *i_layer = (int)l;
    return QK_OK;
}

static int low_iq_ftype(int ft)
{
    return FTYPE_IN(ft, MX_FTYPE_IQ2_XXS, MX_FTYPE_IQ2_XS, MX_FTYPE_IQ1_S, MX_FTYPE_IQ2_S,
                    MX_FTYPE_IQ2_M, MX_FTYPE_IQ1_M);
}

static int rule_output(const mix_state *s, int type, const mx_tensor *t, const mx_options *o)
{
    if (o->output_type >= 0)
        return o->output_type;
    if (s->is_falcon || t->ne[0] % q_type_info(type)->blck_size != 0)
        return Q_TYPE_Q8_0;
    if (FTYPE_IN(s->ftype, MX_FTYPE_IQ2_XXS, MX_FTYPE_IQ2_XS, MX_FTYPE_IQ3_XXS, MX_FTYPE_IQ1_S,
                 MX_FTYPE_IQ2_S, MX_FTYPE_IQ2_M, MX_FTYPE_IQ1_M))
        return Q_TYPE_Q5_K;
    return type != Q_TYPE_Q8_0 ? Q_TYPE_Q6_K : type;
}

static int rule_token_embd(const mix_state *s, int type, const mx_options *o)
{
    int ft = s->ftype;
    if (o->token_embd_type >= 0)
        return o->token_embd_type;
    if (FTYPE_IN(ft, MX_FTYPE_IQ2_XXS, MX_FTYPE_IQ2_XS, MX_FTYPE_IQ1_S, MX_FTYPE_IQ1_M))
        return Q_TYPE_Q2_K;
    if (FTYPE_IN(ft, MX_FTYPE_IQ2_S, MX_FTYPE_IQ2_M, MX_FTYPE_IQ3_XXS))
        return Q_TYPE_IQ3_S;
    return type;
}

/* The IQ1/IQ2 mixes have their own small rule set (qkit cannot quantize those types yet, but
 * the rules are kept whole so the table can grow without touching the planner). */
static int rule_low_iq(mix_state *s, int type, const char *name)
{
    int ft = s->ftype, iq2sm = ft == MX_FTYPE_IQ2_S || ft == MX_FTYPE_IQ2_M;
    if (has(name, "attn_v.weight")) {
        if (s->n_gqa >= 4 || s->n_expert >= 4)
            type = Q_TYPE_Q4_K;
        else
            type = iq2sm ? Q_TYPE_IQ3_S : Q_TYPE_Q2_K;
        ++s->i_attention_wv;
    } else if (s->n_expert == 8 && has(name, "attn_k.weight")) {
        type = Q_TYPE_Q4_K;
    } else if (has(name, "ffn_down")) {
        if (s->i_ffn_down < s->n_ffn_down / 8)
            type = iq2sm ? Q_TYPE_IQ3_S : Q_TYPE_Q2_K;
        ++s->i_ffn_down;
    } else if (has(name, "attn_output.weight")) {
        if (s->n_expert == 8)
            type = Q_TYPE_Q5_K;
        else if (ft == MX_FTYPE_IQ1_S || ft == MX_FTYPE_IQ1_M)
            type = Q_TYPE_IQ2_XXS;
        else if (iq2sm)
            type = Q_TYPE_IQ3_S;
    }
    return type;
}

static int rule_attn_v(mix_state *s, int type)
{
    int ft = s->ftype, gqa4 = s->n_gqa >= 4;
    if (ft == MX_FTYPE_Q2_K)
        type = gqa4 ? Q_TYPE_Q4_K : Q_TYPE_Q3_K;
    else if (ft == MX_FTYPE_Q2_K_S && gqa4)
        type = Q_TYPE_Q4_K;
    else if (ft == MX_FTYPE_IQ3_XXS)
        type = gqa4 ? Q_TYPE_Q4_K : !s->has_imatrix ? Q_TYPE_IQ3_S : Q_TYPE_IQ3_XXS;
    else if ((ft == MX_FTYPE_IQ3_XS || ft == MX_FTYPE_IQ3_S) && gqa4)
        type = Q_TYPE_Q4_K;
    else if (ft == MX_FTYPE_IQ3_M)
        type = Q_TYPE_Q4_K;
    else if (ft == MX_FTYPE_Q3_K_M)
        type = s->i_attention_wv < 2 ? Q_TYPE_Q5_K : Q_TYPE_Q4_K;
    else if (ft == MX_FTYPE_Q3_K_L)
        type = Q_TYPE_Q5_K;
    else if ((ft == MX_FTYPE_IQ4_NL || ft == MX_FTYPE_IQ4_XS) && gqa4)
        type = Q_TYPE_Q5_K;
    else if ((ft == MX_FTYPE_Q4_K_M || ft == MX_FTYPE_Q5_K_M) &&
             use_more_bits(s->i_attention_wv, s->n_attention_wv))
        type = Q_TYPE_Q6_K;
    else if (ft == MX_FTYPE_Q4_K_S && s->i_attention_wv < 4)
        type = Q_TYPE_Q5_K;
    /* 70B models share each attn_v among 8 heads: a few more bits there cost almost nothing. */
    if (s->is_70b && (type == Q_TYPE_Q3_K || type == Q_TYPE_Q4_K))
        type = Q_TYPE_Q5_K;
    if (s->n_expert == 8)
        type = Q_TYPE_Q8_0;
    ++s->i_attention_wv;
    return type;
}

static int rule_attn_k_q(const mix_state *s, int type, int is_k)
{
    if (is_k && s->n_expert == 8)
        return Q_TYPE_Q8_0;
    if (s->ftype == MX_FTYPE_IQ3_XS)
        return Q_TYPE_IQ3_XXS;
    if (s->ftype == MX_FTYPE_IQ3_XXS)
        return Q_TYPE_IQ2_S;
    return type;
}

static int ffn_down_type(const mix_state *s, int type, int i, int n)
{
    int ft = s->ftype;
    if (ft == MX_FTYPE_Q2_K)
        return Q_TYPE_Q3_K;
    if (ft == MX_FTYPE_Q2_K_S)
        return i < n / 8 ? Q_TYPE_Q4_K : type;
    if (ft == MX_FTYPE_IQ3_XXS && !s->has_imatrix)
        return i < n / 8 ? Q_TYPE_Q4_K : Q_TYPE_Q3_K;
    if (ft == MX_FTYPE_Q3_K_M)
        return i < n / 16                                  ? Q_TYPE_Q5_K
               : !s->is_falcon || use_more_bits(i, n) ? Q_TYPE_Q4_K
                                                          : Q_TYPE_Q3_K;
    if (ft == MX_FTYPE_IQ3_M && (i < n / 8 || (s->n_expert == 8 && use_more_bits(i, n))))
        return Q_TYPE_Q4_K;
    if (ft == MX_FTYPE_Q3_K_L)
        return s->is_falcon ? Q_TYPE_Q4_K : Q_TYPE_Q5_K;
    if (ft == MX_FTYPE_Q4_K_M) {
        if (s->is_falcon)
            return i < n / 16 ? Q_TYPE_Q6_K : use_more_bits(i, n) ? Q_TYPE_Q5_K : Q_TYPE_Q4_K;
        return use_more_bits(i, n) ? Q_TYPE_Q6_K : type;
    }
    if (i < n / 8 && (ft == MX_FTYPE_IQ4_NL || ft == MX_FTYPE_IQ4_XS) && !s->has_imatrix)
        return Q_TYPE_Q5_K;
    if (ft == MX_FTYPE_Q5_K_M && use_more_bits(i, n))
        return Q_TYPE_Q6_K;
    if (ft == MX_FTYPE_Q4_K_S && !s->is_falcon && i < n / 8)
        return Q_TYPE_Q5_K;
    /* llama.cpp guards the first ffn_down layers of Q4_0/Q5_0, but only with an imatrix, so
     * that a run without one stays reproducible with older versions. */
    if ((ft == MX_FTYPE_Q4_0 || ft == MX_FTYPE_Q5_0) && s->has_imatrix && i < n / 8)
        return ft == MX_FTYPE_Q4_0 ? Q_TYPE_Q4_1 : Q_TYPE_Q5_1;
    return type;
}

static int rule_attn_output(const mix_state *s, int type)
{
    int ft = s->ftype;
    if (s->is_falcon)
        return ft == MX_FTYPE_Q3_K_L ? Q_TYPE_Q4_K : type;
    if (s->n_expert == 8)
        return FTYPE_IN(ft, MX_FTYPE_Q2_K, MX_FTYPE_IQ3_XS, MX_FTYPE_IQ3_XXS, MX_FTYPE_Q3_K_S,
                        MX_FTYPE_Q3_K_M, MX_FTYPE_IQ4_NL, MX_FTYPE_Q4_K_S, MX_FTYPE_Q4_K_M,
                        MX_FTYPE_IQ3_S, MX_FTYPE_IQ3_M, MX_FTYPE_IQ4_XS)
                   ? Q_TYPE_Q5_K
                   : type;
    switch (ft) {
    case MX_FTYPE_Q2_K: return Q_TYPE_Q3_K;
    case MX_FTYPE_IQ3_XXS: return Q_TYPE_IQ3_S;
    case MX_FTYPE_Q3_K_M: return Q_TYPE_Q4_K;
    case MX_FTYPE_Q3_K_L: return Q_TYPE_Q5_K;
    case MX_FTYPE_IQ3_M: return Q_TYPE_Q4_K;
    default: return type;
    }
}

static int rule_attn_qkv(const mix_state *s, int type)
{
    int ft = s->ftype;
    if (ft == MX_FTYPE_Q3_K_M || ft == MX_FTYPE_Q3_K_L || ft == MX_FTYPE_IQ3_M)
        return Q_TYPE_Q4_K;
    if (ft == MX_FTYPE_Q4_K_M)
        return Q_TYPE_Q5_K;
    if (ft == MX_FTYPE_Q5_K_M)
        return Q_TYPE_Q6_K;
    return type;
}

/* ffn_down, ffn_gate and ffn_up: the layer comes from a counter (or the name for MoE). */
static int rule_ffn(mix_state *s, int *type, const char *name, int *counter, int n_total,
                    int is_down)
{
    int i_layer = 0;
    int rc = layer_of(s, name, *counter, &i_layer);
    if (rc)
        return rc;
    if (is_down)
        *type = ffn_down_type(s, *type, i_layer, n_total);
    else if (s->ftype == MX_FTYPE_IQ3_XS && i_layer >= n_total / 8 && i_layer < 7 * n_total / 8)
        *type = Q_TYPE_IQ3_XXS;
    ++*counter;
    return QK_OK;
}

/* llama_tensor_get_type without its final fallback step (applied by the caller). */
static int mix_rules(mix_state *s, const mx_tensor *t, const mx_options *o, int *type)
{
    const char *name = t->name;
    if (!strcmp(name, "output.weight") || (!s->has_output && !strcmp(name, "token_embd.weight")))
        *type = rule_output(s, *type, t, o);
    else if (!strcmp(name, "token_embd.weight"))
        *type = rule_token_embd(s, *type, o);
    else if (low_iq_ftype(s->ftype))
        *type = rule_low_iq(s, *type, name);
    else if (has(name, "attn_v.weight"))
        *type = rule_attn_v(s, *type);
    else if (has(name, "attn_k.weight"))
        *type = rule_attn_k_q(s, *type, 1);
    else if (has(name, "attn_q.weight"))
        *type = rule_attn_k_q(s, *type, 0);
    else if (has(name, "ffn_down"))
        return rule_ffn(s, type, name, &s->i_ffn_down, s->n_ffn_down, 1);
    else if (has(name, "attn_output.weight"))
        *type = rule_attn_output(s, *type);
    else if (has(name, "attn_qkv.weight"))
        *type = rule_attn_qkv(s, *type);
    else if (has(name, "ffn_gate"))
        return rule_ffn(s, type, name, &s->i_ffn_gate, s->n_ffn_gate, 0);
    else if (has(name, "ffn_up"))
        return rule_ffn(s, type, name, &s->i_ffn_up, s->n_ffn_up, 0);
    return QK_OK;
}

/* ---- which tensors are quantized at all --------------------------------------------------- */

uint32_t mx_ggml_n_dims(const int64_t ne[4])
{
    for (uint32_t i = 3; i >= 1; i--)
        if (ne[i] > 1)
            return i + 1;
    return 1;
}

static int ends_with_weight(const char *name)
{
    size_t n = strlen(name);
    /* llama.cpp tests name.rfind("weight") == name.size() - 6, which also holds for a 5-byte
     * name without "weight" (npos == size_t(-1)); reproduced so the same tensors qualify. */
    if (n == 5 && !strstr(name, "weight"))
        return 1;
    return n >= 6 && !strcmp(name + n - 6, "weight");
}

int mx_is_quantizable(const mx_tensor *t, const mx_options *o)
{
    static const char *const NEVER_PARTS[] = {
        "_norm.weight",        "ffn_gate_inp.weight",      "ssm_conv1d.weight",
        "time_mix_first.weight", "time_mix_w1.weight",     "time_mix_w2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
    };
    const char *name = t->name;
    if (!ends_with_weight(name) || mx_ggml_n_dims(t->ne) < 2)
        return 0;
    for (size_t i = 0; i < sizeof NEVER_PARTS / sizeof NEVER_PARTS[0]; i++)
        if (has(name, NEVER_PARTS[i]))
            return 0;
    if (o->leave_output && !strcmp(name, "output.weight"))
        return 0;
    return strcmp(name, "position_embd.weight") && strcmp(name, "token_types.weight");
}

/* ---- fallback ----------------------------------------------------------------------------- */

/* The type llama.cpp substitutes when rows do not fill whole blocks of type; -1 if none. */
static int fallback_type(int type)
{
    switch (type) {
    case Q_TYPE_TQ1_0:
    case Q_TYPE_TQ2_0: return Q_TYPE_Q4_0;
    case Q_TYPE_IQ2_XXS:
    case Q_TYPE_IQ2_XS:
    case Q_TYPE_IQ2_S:
    case Q_TYPE_IQ3_XXS:
    case Q_TYPE_IQ3_S:
    case Q_TYPE_IQ1_S:
    case Q_TYPE_IQ1_M:
    case Q_TYPE_Q2_K:
    case Q_TYPE_Q3_K:
    case Q_TYPE_IQ4_XS: return Q_TYPE_IQ4_NL;
    case Q_TYPE_Q4_K: return Q_TYPE_Q5_0;
    case Q_TYPE_Q5_K: return Q_TYPE_Q5_1;
    case Q_TYPE_Q6_K: return Q_TYPE_Q8_0;
    default: return -1;
    }
}

static int apply_fallback(const mx_tensor *t, mx_decision *d, size_t *n_fallback,
                          size_t *n_checked, qk_err *err)
{
    const q_type_info_t *ti = q_type_info(d->type);
    if (t->ne[0] % ti->blck_size == 0) {
        ++*n_checked;
        return QK_OK;
    }
    int fb = fallback_type(d->type);
    if (fb < 0)
        return qk_err_set(err, QK_EUNSUPPORTED,
                          "tensor '%s': rows of %lld are not a multiple of %lld (%s) and %s has "
                          "no fallback type",
                          t->name, (long long)t->ne[0], (long long)ti->blck_size, ti->name,
                          ti->name);
    if (t->ne[0] % q_type_info(fb)->blck_size != 0)
        fb = Q_TYPE_F16;
    snprintf(d->warning, sizeof d->warning,
             "%s: rows of %lld are not a multiple of %lld (%s): using fallback %s", t->name,
             (long long)t->ne[0], (long long)ti->blck_size, ti->name, q_type_info(fb)->name);
    d->type = fb;
    d->fallback = 1;
    ++*n_fallback;
    return QK_OK;
}

/* ---- --tensor-type ------------------------------------------------------------------------ */

/* Types a plan may choose: those qkit quantizes and ggml_quantize_chunk accepts. */
static int plannable_type(int type)
{
    static const int OK[] = {Q_TYPE_F32,  Q_TYPE_F16,    Q_TYPE_BF16,   Q_TYPE_Q4_0, Q_TYPE_Q4_1,
                             Q_TYPE_Q5_0, Q_TYPE_Q5_1,   Q_TYPE_Q8_0,   Q_TYPE_Q2_K, Q_TYPE_Q3_K,
                             Q_TYPE_Q4_K, Q_TYPE_Q5_K,   Q_TYPE_Q6_K,   Q_TYPE_IQ4_NL,
                             Q_TYPE_IQ4_XS};
    return ftype_in(type, OK, sizeof OK / sizeof OK[0]);
}

/* Splits "REGEX=TYPE" at the last '=' (a regex may contain '=' itself, a type name never). */
static int tt_parse(const char *arg, tt_rule *r, qk_err *err)
{
    const char *eq = strrchr(arg, '=');
    if (!eq)
        return qk_err_set(err, QK_EFORMAT, "--tensor-type '%s': expected REGEX=TYPE", arg);
    if (eq == arg)
        return qk_err_set(err, QK_EFORMAT, "--tensor-type '%s': missing tensor name pattern", arg);
    int type = q_type_from_name(eq + 1);
    if (type < 0)
        return qk_err_set(err, QK_EFORMAT, "--tensor-type '%s': unknown type '%s'", arg, eq + 1);
    if (!plannable_type(type))
        return qk_err_set(err, QK_EUNSUPPORTED, "--tensor-type '%s': qkit cannot quantize to %s",
                          arg, eq + 1);
    int code;
    PCRE2_SIZE off;
    /* Caseless, as llama-quantize lowercases the pattern (tensor names are lowercase). */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)arg, (PCRE2_SIZE)(eq - arg), PCRE2_CASELESS, &code,
                                   &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(code, msg, sizeof msg);
        return qk_err_set(err, QK_EFORMAT, "--tensor-type '%s': bad pattern at offset %zu: %s",
                          arg, (size_t)off, (const char *)msg);
    }
    r->re = re;
    r->type = type;
    return QK_OK;
}

int mx_tensor_type_check(const char *arg, qk_err *err)
{
    tt_rule r;
    int rc = tt_parse(arg, &r, err);
    if (!rc)
        pcre2_code_free(r.re);
    return rc;
}

/* The type of the first rule whose pattern occurs in name; -1 when none does (or on no memory,
 * reported through *rc). */
static int tt_match(const tt_rule *rules, size_t n, const char *name, int *rc, qk_err *err)
{
    for (size_t i = 0; i < n; i++) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(rules[i].re, NULL);
        if (!md) {
            *rc = qk_err_set(err, QK_ENOMEM, "out of memory matching --tensor-type patterns");
            return -1;
        }
        int m = pcre2_match(rules[i].re, (PCRE2_SPTR)name, strlen(name), 0, 0, md, NULL);
        pcre2_match_data_free(md);
        if (m >= 0)
            return rules[i].type;
    }
    return -1;
}

/* ---- planning ----------------------------------------------------------------------------- */

static int check_tensor(const mx_tensor *t, qk_err *err)
{
    if (!t->name)
        return qk_err_set(err, QK_EFORMAT, "tensor without a name");
    if (t->n_dims < 1 || t->n_dims > 4)
        return qk_err_set(err, QK_EFORMAT, "tensor '%s': %u dimensions", t->name, t->n_dims);
    for (int i = 0; i < 4; i++)
        if (t->ne[i] < 1)
            return qk_err_set(err, QK_EFORMAT, "tensor '%s': dimension %d is %lld", t->name, i,
                              (long long)t->ne[i]);
    if (!q_type_info(t->type))
        return qk_err_set(err, QK_EFORMAT, "tensor '%s': unknown source type %d", t->name,
                          t->type);
    return QK_OK;
}

static void state_init(mix_state *s, const mx_model *m, int ftype, const mx_options *o,
                       const mx_tensor *t, size_t n, qk_err *err)
{
    memset(s, 0, sizeof *s);
    s->m = m;
    s->ftype = ftype;
    s->err = err;
    s->has_imatrix = o->has_imatrix;
    s->is_70b = model_is_70b(m);
    s->is_falcon = !strcmp(m->arch, "falcon");
    uint32_t kv = m->n_head_kv ? m->n_head_kv : m->n_head;
    s->n_gqa = kv ? (int)(m->n_head / kv) : 0;
    s->n_expert = (int)(m->n_expert > INT_MAX ? INT_MAX : m->n_expert);
    s->n_ffn_down = s->n_ffn_gate = s->n_ffn_up = (int)(m->n_layer > INT_MAX ? INT_MAX : m->n_layer);
    for (size_t i = 0; i < n; i++) {
        const char *name = t[i].name;
        if (has(name, "attn_v.weight") || has(name, "attn_qkv.weight") ||
            has(name, "attn_kv_b.weight"))
            ++s->n_attention_wv;
        else if (!strcmp(name, "output.weight"))
            s->has_output = 1;
    }
}

/* The type the mix, the overrides and the fallback give one quantizable tensor. */
static int decide(mix_state *s, const mx_mix *mix, const mx_options *o, const tt_rule *rules,
                  size_t n_rules, const mx_tensor *t, size_t index, mx_decision *d, mx_plan *p)
{
    int type = mix->base_type, rc = QK_OK;
    const q_type_info_t *base = q_type_info(type);
    if (!o->pure && base->is_quantized && (rc = mix_rules(s, t, o, &type)))
        return rc;
    int tt = tt_match(rules, n_rules, t->name, &rc, s->err);
    if (rc)
        return rc;
    if (tt >= 0)
        type = tt, d->overridden = 1;
    if (o->token_embd_type >= 0 && !strcmp(t->name, "token_embd.weight"))
        type = o->token_embd_type, d->overridden = 1;
    if (o->output_type >= 0 && !strcmp(t->name, "output.weight"))
        type = o->output_type, d->overridden = 1;
    if (o->forced_types && o->forced_types[index] >= 0)
        type = o->forced_types[index], d->overridden = 1;
    d->type = type;
    if (q_type_info(type)->is_quantized)
        rc = apply_fallback(t, d, &p->n_fallback, &p->n_checked, s->err);
    d->quantize = d->type != t->type;
    if (!d->quantize)
        d->type = t->type;
    return rc;
}

static int check_options(const mx_options *o, qk_err *err)
{
    if (o->output_type >= 0 && !plannable_type(o->output_type))
        return qk_err_set(err, QK_EUNSUPPORTED, "--output-tensor-type: qkit cannot quantize to %s",
                          q_type_info(o->output_type) ? q_type_info(o->output_type)->name : "?");
    if (o->token_embd_type >= 0 && !plannable_type(o->token_embd_type))
        return qk_err_set(err, QK_EUNSUPPORTED,
                          "--token-embedding-type: qkit cannot quantize to %s",
                          q_type_info(o->token_embd_type) ? q_type_info(o->token_embd_type)->name
                                                          : "?");
    return QK_OK;
}

static int rules_compile(const mx_options *o, tt_rule **out, qk_err *err)
{
    *out = NULL;
    if (!o->n_tensor_types)
        return QK_OK;
    tt_rule *r = calloc(o->n_tensor_types, sizeof *r);
    if (!r)
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    *out = r;
    for (size_t i = 0; i < o->n_tensor_types; i++) {
        int rc = tt_parse(o->tensor_types[i], &r[i], err);
        if (rc)
            return rc;
    }
    return QK_OK;
}

static void rules_free(tt_rule *r, size_t n)
{
    for (size_t i = 0; r && i < n; i++)
        pcre2_code_free(r[i].re); /* NULL is fine */
    free(r);
}

/* qsort has no context pointer: sort indices paired with their names. */
typedef struct {
    const char *name;
    size_t index;
} order_item;

static int order_cmp(const void *a, const void *b)
{
    const order_item *x = a, *y = b;
    int c = mx_name_cmp(x->name, y->name);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

static int plan_order(mx_plan *p, const mx_tensor *t, int keep_order, qk_err *err)
{
    order_item *items = malloc((p->n ? p->n : 1) * sizeof *items);
    if (!items)
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    for (size_t i = 0; i < p->n; i++)
        items[i] = (order_item){t[i].name, i};
    if (!keep_order)
        qsort(items, p->n, sizeof *items, order_cmp);
    for (size_t i = 0; i < p->n; i++)
        p->order[i] = items[i].index;
    free(items);
    return QK_OK;
}

static int plan_alloc(mx_plan **out, size_t n, qk_err *err)
{
    mx_plan *p = calloc(1, sizeof *p);
    if (p) {
        p->n = n;
        p->order = calloc(n ? n : 1, sizeof *p->order);
        p->dec = calloc(n ? n : 1, sizeof *p->dec);
    }
    if (!p || !p->order || !p->dec) {
        mx_plan_free(p);
        return qk_err_set(err, QK_ENOMEM, "out of memory planning %zu tensors", n);
    }
    *out = p;
    return QK_OK;
}

static int plan_all(mx_plan *p, mix_state *s, const mx_mix *mix, const mx_options *o,
                    const tt_rule *rules, const mx_tensor *t)
{
    for (size_t k = 0; k < p->n; k++) {
        size_t i = p->order[k];
        mx_decision *d = &p->dec[i];
        d->type = t[i].type;
        if (!mx_is_quantizable(&t[i], o))
            continue;
        int rc = decide(s, mix, o, rules, o->n_tensor_types, &t[i], i, d, p);
        if (rc)
            return rc;
    }
    return QK_OK;
}

int mx_plan_create(mx_plan **out, const mx_model *model, int ftype, const mx_options *opts,
                   const mx_tensor *tensors, size_t n, qk_err *err)
{
    *out = NULL;
    const mx_mix *mix = mx_mix_from_ftype(ftype);
    if (!mix)
        return qk_err_set(err, QK_EUNSUPPORTED, "file type %d has no quantization mix in qkit",
                          ftype);
    if (!model || !model->arch)
        return qk_err_set(err, QK_EFORMAT, "model architecture unknown");
    for (size_t i = 0; i < n; i++) {
        int rc = check_tensor(&tensors[i], err);
        if (rc)
            return rc;
    }
    int rc = check_options(opts, err);
    if (rc)
        return rc;
    mx_plan *p = NULL;
    tt_rule *rules = NULL;
    mix_state s;
    state_init(&s, model, ftype, opts, tensors, n, err);
    if (!(rc = plan_alloc(&p, n, err)) && !(rc = rules_compile(opts, &rules, err)) &&
        !(rc = plan_order(p, tensors, opts->keep_order, err)))
        rc = plan_all(p, &s, mix, opts, rules, tensors);
    rules_free(rules, opts->n_tensor_types);
    if (rc) {
        mx_plan_free(p);
        return rc;
    }
    *out = p;
    return QK_OK;
}

void mx_plan_free(mx_plan *p)
{
    if (!p)
        return;
    free(p->order);
    free(p->dec);
    free(p);
}

size_t mx_plan_count(const mx_plan *p) { return p->n; }
size_t mx_plan_order(const mx_plan *p, size_t k) { return k < p->n ? p->order[k] : 0; }
const mx_decision *mx_plan_get(const mx_plan *p, size_t i) { return i < p->n ? &p->dec[i] : NULL; }
size_t mx_plan_n_fallback(const mx_plan *p) { return p->n_fallback; }
size_t mx_plan_n_checked(const mx_plan *p) { return p->n_checked + p->n_fallback; }
