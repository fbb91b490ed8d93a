/* test_quantize.c — the mix planner (convert/mix), importance matrix files (formats/imatrix) and
 * the llama-quantize pipeline (convert/quantize) against llama.cpp's own outputs:
 * - golden/stories260K-Q4_K_M.gguf must come out byte for byte, with 1, 2 and 3 threads;
 * - golden/stories3M/{pure,mix}-*.json list type, shape, bytes and sha256 of every tensor
 *   llama-quantize wrote for stories3M (F32 input, with and without imatrix-calib.dat).
 * The stories3M input GGUF is built here from the safetensors checkpoint (a llama conversion is
 * a rename plus the Q/K row permutation) and checked against golden/stories3M/convert-*.json
 * before it is used. */
#include <cJSON.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tu.h"

#include "../convert/mix.h"
#include "../convert/quantize.h"
#include "../formats/gguf.h"
#include "../formats/imatrix.h"
#include "../formats/safetensors.h"
#include "../quant/fp16.h"
#include "../quant/quant.h"
#include "../quant/types.h"

/* ==== helpers =============================================================================== */

static void sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    assert_int_equal(EVP_Digest(data, n, md, &len, EVP_sha256(), NULL), 1);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

static mx_tensor T2(const char *name, int64_t ne0, int64_t ne1)
{
    return (mx_tensor){name, 2, {ne0, ne1, 1, 1}, Q_TYPE_F16};
}

static mx_tensor T1(const char *name, int64_t ne0)
{
    return (mx_tensor){name, 1, {ne0, 1, 1, 1}, Q_TYPE_F32};
}

/* A dense llama: token_embd, output_norm, output, and per layer the 9 usual tensors. Names live
 * in a static pool. */
#define MAXT 1200
static char g_names[MAXT][64];
static mx_tensor g_t[MAXT];

static size_t llama_tensors(int n_layer, int64_t dim, int64_t kv_dim, int64_t ff, int64_t vocab,
                            int with_output)
{
    size_t n = 0;
    g_t[n++] = T2("token_embd.weight", dim, vocab);
    g_t[n++] = T1("output_norm.weight", dim);
    if (with_output)
        g_t[n++] = T2("output.weight", dim, vocab);
    static const char *const parts[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                        "ffn_norm",  "ffn_gate", "ffn_up", "ffn_down"};
    for (int l = 0; l < n_layer; l++) {
        for (int p = 0; p < 9; p++) {
            snprintf(g_names[n], sizeof g_names[n], "blk.%d.%s.weight", l, parts[p]);
            int64_t ne0 = !strcmp(parts[p], "ffn_down") ? ff : dim;
            int64_t ne1 = !strcmp(parts[p], "attn_k") || !strcmp(parts[p], "attn_v") ? kv_dim
                        : !strncmp(parts[p], "ffn_", 4) && strcmp(parts[p], "ffn_down") ? ff
                                                                                        : dim;
            g_t[n] = strstr(parts[p], "norm") ? T1(g_names[n], dim) : T2(g_names[n], ne0, ne1);
            n++;
        }
    }
    return n;
}

static size_t find_t(size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(g_t[i].name, name))
            return i;
    fail_msg("no tensor %s", name);
    return 0;
}

static int type_of(const mx_plan *p, size_t n, const char *name)
{
    return mx_plan_get(p, find_t(n, name))->type;
}

static int layer_type(const mx_plan *p, size_t n, int l, const char *part)
{
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s.weight", l, part);
    return type_of(p, n, name);
}

/* llama.cpp's use_more_bits, restated from the reference as the test's expectation. */
static int more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static mx_model llama_model(uint32_t n_layer, uint32_t n_head, uint32_t n_head_kv)
{
    return (mx_model){"llama", n_layer, n_head, n_head_kv, 0};
}

static mx_options options_default(void)
{
    mx_options o;
    mx_options_init(&o);
    return o;
}

static mx_plan *plan_ok(const mx_model *m, int ftype, const mx_options *o, size_t n)
{
    mx_plan *p = NULL;
    qk_err err = {{0}};
    int rc = mx_plan_create(&p, m, ftype, o, g_t, n, &err);
    if (rc)
        fail_msg("mx_plan_create: %s", err.msg);
    return p;
}

/* ==== mix table ============================================================================== */

static void test_mix_names(void **state)
{
    (void)state;
    assert_int_equal(mx_mix_from_name("q4_k_m")->ftype, 15);
    assert_int_equal(mx_mix_from_name("Q4_K_M")->base_type, Q_TYPE_Q4_K);
    assert_int_equal(mx_mix_from_name("Q4_K")->ftype, MX_FTYPE_Q4_K_M);
    assert_int_equal(mx_mix_from_name("q3_k")->ftype, MX_FTYPE_Q3_K_M);
    assert_int_equal(mx_mix_from_name("Q5_K")->ftype, MX_FTYPE_Q5_K_M);
    assert_int_equal(mx_mix_from_name("iq4_xs")->base_type, Q_TYPE_IQ4_XS);
    assert_int_equal(mx_mix_from_name("bf16")->ftype, 32);
    assert_int_equal(mx_mix_from_name("F32")->ftype, 0);
    assert_int_equal(mx_mix_from_name("7")->base_type, Q_TYPE_Q8_0);
    assert_int_equal(mx_mix_from_name("Q2_K_S")->needs_imatrix, 1);
    assert_null(mx_mix_from_name("Q4_K_X"));
    assert_null(mx_mix_from_name("IQ2_XXS")); /* llama.cpp has it; qkit cannot quantize it */
    assert_null(mx_mix_from_name("19"));
    assert_null(mx_mix_from_name(""));
    assert_null(mx_mix_from_name("15x"));
    size_t n;
    const mx_mix *all = mx_mix_list(&n);
    assert_int_equal(n, 20);
    for (size_t i = 0; i < n; i++)
        assert_ptr_equal(mx_mix_from_name(all[i].name), &all[i]);
}

static void test_name_order(void **state)
{
    (void)state;
    assert_true(mx_name_cmp("output.weight", "blk.0.attn_k.weight") < 0);
    assert_true(mx_name_cmp("token_embd.weight", "output.weight") > 0);
    assert_true(mx_name_cmp("blk.9.ffn_up.weight", "blk.10.attn_k.weight") < 0);
    assert_true(mx_name_cmp("blk.2.attn_v.weight", "blk.2.attn_q.weight") > 0);
    assert_int_equal(mx_name_cmp("blk.2.attn_v.weight", "blk.2.attn_v.weight"), 0);
}

/* ==== planner rules ========================================================================== */

/* 32 layers, GQA 4 (Llama-3-8B's shape): the use_more_bits pattern on attn_v and ffn_down. */
static void test_plan_q4_k_m_llama8b(void **state)
{
    (void)state;
    size_t n = llama_tensors(32, 4096, 1024, 14336, 128256, 1);
    mx_model m = llama_model(32, 32, 8);
    mx_options o = options_default();
    mx_plan *p = plan_ok(&m, MX_FTYPE_Q4_K_M, &o, n);
    assert_int_equal(type_of(p, n, "output.weight"), Q_TYPE_Q6_K);
    assert_int_equal(type_of(p, n, "token_embd.weight"), Q_TYPE_Q4_K);
    assert_false(mx_plan_get(p, find_t(n, "output_norm.weight"))->quantize);
    for (int l = 0; l < 32; l++) {
        int more = more_bits(l, 32);
        assert_int_equal(layer_type(p, n, l, "attn_v"), more ? Q_TYPE_Q6_K : Q_TYPE_Q4_K);
        assert_int_equal(layer_type(p, n, l, "ffn_down"), more ? Q_TYPE_Q6_K : Q_TYPE_Q4_K);
        assert_int_equal(layer_type(p, n, l, "attn_q"), Q_TYPE_Q4_K);
        assert_int_equal(layer_type(p, n, l, "ffn_up"), Q_TYPE_Q4_K);
        assert_int_equal(layer_type(p, n, l, "attn_norm"), Q_TYPE_F32);
    }
    assert_int_equal(mx_plan_n_fallback(p), 0);
    mx_plan_free(p);
}

static void test_plan_q3_k_m_and_q2_k(void **state)
{
    (void)state;
    size_t n = llama_tensors(32, 4096, 1024, 14336, 32000, 1);
    mx_model m = llama_model(32, 32, 8);
    mx_options o = options_default();
    mx_plan *p = plan_ok(&m, MX_FTYPE_Q3_K_M, &o, n);
    for (int l = 0; l < 32; l++) {
        assert_int_equal(layer_type(p, n, l, "attn_v"), l < 2 ? Q_TYPE_Q5_K : Q_TYPE_Q4_K);
        assert_int_equal(layer_type(p, n, l, "ffn_down"), l < 2 ? Q_TYPE_Q5_K : Q_TYPE_Q4_K);
        assert_int_equal(layer_type(p, n, l, "attn_output"), Q_TYPE_Q4_K);
        assert_int_equal(layer_type(p, n, l, "ffn_gate"), Q_TYPE_Q3_K);
    }
    mx_plan_free(p);
    p = plan_ok(&m, MX_FTYPE_Q2_K, &o, n);
    assert_int_equal(layer_type(p, n, 5, "attn_v"), Q_TYPE_Q4_K); /* GQA >= 4 */
    assert_int_equal(layer_type(p, n, 5, "ffn_down"), Q_TYPE_Q3_K);
    assert_int_equal(layer_type(p, n, 5, "attn_output"), Q_TYPE_Q3_K);
    assert_int_equal(layer_type(p, n, 5, "attn_q"), Q_TYPE_Q2_K);
    assert_int_equal(type_of(p, n, "output.weight"), Q_TYPE_Q6_K);
    mx_plan_free(p);
    m.n_head_kv = 32; /* no GQA */
    p = plan_ok(&m, MX_FTYPE_Q2_K, &o, n);
    assert_int_equal(layer_type(p, n, 5, "attn_v"), Q_TYPE_Q3_K);
    mx_plan_free(p);
}

static void test_plan_q4_k_s_q5_k_m_iq4(void **state)
{
    (void)state;
    size_t n = llama_tensors(16, 2048, 512, 8192, 32000, 1);
    mx_model m = llama_model(16, 32, 8);
    mx_options o = options_default();
    mx_plan *p = plan_ok(&m, MX_FTYPE_Q4_K_S, &o, n);
    for (int l = 0; l < 16; l++) {
        assert_int_equal(layer_type(p, n, l, "attn_v"), l < 4 ? Q_TYPE_Q5_K : Q_TYPE_Q4_K);
        assert_int_equal(layer_type(p, n, l, "ffn_down"), l < 2 ? Q_TYPE_Q5_K : Q_TYPE_Q4_K);
    }
    mx_plan_free(p);
    p = plan_ok(&m, MX_FTYPE_Q5_K_M, &o, n);
    for (int l = 0; l < 16; l++)
        assert_int_equal(layer_type(p, n, l, "ffn_down"), more_bits(l, 16) ? Q_TYPE_Q6_K : Q_TYPE_Q5_K);
    mx_plan_free(p);
    p = plan_ok(&m, MX_FTYPE_IQ4_XS, &o, n);
    assert_int_equal(layer_type(p, n, 0, "attn_v"), Q_TYPE_Q5_K);   /* GQA 4 */
    assert_int_equal(layer_type(p, n, 1, "ffn_down"), Q_TYPE_Q5_K); /* first eighth, no imatrix */
    assert_int_equal(layer_type(p, n, 2, "ffn_down"), Q_TYPE_IQ4_XS);
    assert_int_equal(layer_type(p, n, 2, "attn_q"), Q_TYPE_IQ4_XS);
    mx_plan_free(p);
    o.has_imatrix = 1;
    p = plan_ok(&m, MX_FTYPE_IQ4_XS, &o, n);
    assert_int_equal(layer_type(p, n, 1, "ffn_down"), Q_TYPE_IQ4_XS);
    mx_plan_free(p);
    p = plan_ok(&m, MX_FTYPE_Q4_0, &o, n); /* with an imatrix: ffn_down of the first eighth */
    assert_int_equal(layer_type(p, n, 1, "ffn_down"), Q_TYPE_Q4_1);
    assert_int_equal(layer_type(p, n, 2, "ffn_down"), Q_TYPE_Q4_0);
    assert_int_equal(type_of(p, n, "output.weight"), Q_TYPE_Q6_K);
    mx_plan_free(p);
}

/* 70B (llama, 80 layers, GQA): attn_v q3_K/q4_K are bumped to q5_K. */
static void test_plan_70b(void **state)
{
    (void)state;
    size_t n = llama_tensors(80, 1024, 128, 2048, 1000, 1); /* shapes scaled down */
    mx_model m = llama_model(80, 64, 8);
    mx_options o = options_default();
    mx_plan *p = plan_ok(&m, MX_FTYPE_Q3_K_S, &o, n);
    assert_int_equal(layer_type(p, n, 40, "attn_v"), Q_TYPE_Q5_K);
    assert_int_equal(layer_type(p, n, 40, "attn_q"), Q_TYPE_Q3_K);
    mx_plan_free(p);
    m.n_head_kv = 64; /* 65B: no bump */
    p = plan_ok(&m, MX_FTYPE_Q3_K_S, &o, n);
    assert_int_equal(layer_type(p, n, 40, "attn_v"), Q_TYPE_Q3_K);
    mx_plan_free(p);
}

/* Mixtral-like: 8 experts; ffn_*_exps layers come from the names. */
static void test_plan_moe(void **state)
{
    (void)state;
    size_t n = 0;
    for (int l = 3; l >= 0; l--) { /* reverse file order: the planner sorts */
        static const char *const parts[] = {"attn_v", "attn_k", "attn_output", "ffn_down_exps",
                                            "ffn_gate_inp"};
        for (int q = 0; q < 5; q++) {
            snprintf(g_names[n], sizeof g_names[n], "blk.%d.%s.weight", l, parts[q]);
            g_t[n] = (mx_tensor){g_names[n], 3, {512, 256, q == 3 ? 8 : 1, 1}, Q_TYPE_F16};
            if (q == 4)
                g_t[n].ne[1] = 8, g_t[n].n_dims = 2;
            n++;
        }
    }
    mx_model m = {"llama", 4, 32, 8, 8};
    mx_options o = options_default();
    mx_plan *p = plan_ok(&m, MX_FTYPE_Q4_K_M, &o, n);
    for (int l = 0; l < 4; l++) {
        assert_int_equal(layer_type(p, n, l, "attn_v"), Q_TYPE_Q8_0);
        assert_int_equal(layer_type(p, n, l, "attn_k"), Q_TYPE_Q8_0);
        assert_int_equal(layer_type(p, n, l, "attn_output"), Q_TYPE_Q5_K);
        assert_int_equal(layer_type(p, n, l, "ffn_down_exps"), more_bits(l, 4) ? Q_TYPE_Q6_K : Q_TYPE_Q4_K);
        assert_false(mx_plan_get(p, find_t(n, g_names[4 + 5 * (3 - l)]))->quantize);
    }
    /* loader order: blk.0.attn_k first */
    assert_string_equal(g_t[mx_plan_order(p, 0)].name, "blk.0.attn_k.weight");
    mx_plan_free(p);
}

static void test_plan_moe_bad_layer(void **state)
{
    (void)state;
    g_t[0] = (mx_tensor){"blk.9.ffn_down_exps.weight", 3, {512, 256, 8, 1}, Q_TYPE_F16};
    mx_model m = {"llama", 4, 32, 8, 8};
    mx_options o = options_default();
    mx_plan *p = NULL;
    qk_err err = {{0}};
    assert_int_equal(mx_plan_create(&p, &m, MX_FTYPE_Q4_K_M, &o, g_t, 1, &err), QK_EFORMAT);
    assert_non_null(strstr(err.msg, "layer 9 is outside [0, 4)"));
    assert_null(p);
    g_t[0].name = "experts.ffn_down_exps.weight";
    assert_int_equal(mx_plan_create(&p, &m, MX_FTYPE_Q4_K_M, &o, g_t, 1, &err), QK_EFORMAT);
    assert_non_null(strstr(err.msg, "cannot determine its layer"));
}

static void test_plan_fallbacks(void **state)
{
    (void)state;
    g_t[0] = T2("blk.0.attn_q.weight", 64, 64);   /* q4_K → q5_0 */
    g_t[1] = T2("blk.0.ffn_down.weight", 48, 64); /* q4_K → q5_0 → f16 */
    g_t[2] = T2("blk.0.attn_v.weight", 64, 64);   /* q6_K (layer 0 of 1) → q8_0 */
    g_t[3] = T2("output.weight", 64, 100);        /* 64 % 256: q8_0 directly, no fallback */
    mx_model m = llama_model(1, 4, 4);
    mx_options o = options_default();
    mx_plan *p = plan_ok(&m, MX_FTYPE_Q4_K_M, &o, 4);
    const mx_decision *d = mx_plan_get(p, 0);
    assert_int_equal(d->type, Q_TYPE_Q5_0);
    assert_true(d->fallback);
    assert_string_equal(d->warning, "blk.0.attn_q.weight: rows of 64 are not a multiple of 256 "
                                     "(q4_K): using fallback q5_0");
    assert_int_equal(mx_plan_get(p, 1)->type, Q_TYPE_F16);
    assert_non_null(strstr(mx_plan_get(p, 1)->warning, "using fallback f16"));
    assert_int_equal(mx_plan_get(p, 2)->type, Q_TYPE_Q8_0);
    assert_int_equal(mx_plan_get(p, 3)->type, Q_TYPE_Q8_0);
    assert_false(mx_plan_get(p, 3)->fallback);
    assert_string_equal(mx_plan_get(p, 3)->warning, "");
    assert_int_equal(mx_plan_n_fallback(p), 3);
    assert_int_equal(mx_plan_n_checked(p), 4);
    mx_plan_free(p);
}

static void test_plan_no_fallback_error(void **state)
{
    (void)state;
    g_t[0] = T2("blk.0.attn_q.weight", 48, 64); /* q8_0 needs multiples of 32 and has no fallback */
    mx_model m = llama_model(1, 4, 4);
    mx_options o = options_default();
    mx_plan *p = NULL;
    qk_err err = {{0}};
    assert_int_equal(mx_plan_create(&p, &m, MX_FTYPE_Q8_0, &o, g_t, 1, &err), QK_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "'blk.0.attn_q.weight': rows of 48"));
    assert_non_null(strstr(err.msg, "no fallback type"));
}

static void test_plan_not_quantized(void **state)
{
    (void)state;
    size_t n = 0;
    g_t[n++] = T1("blk.0.attn_norm.weight", 4096);
    g_t[n++] = (mx_tensor){"blk.0.ffn_gate_inp.weight", 2, {4096, 8, 1, 1}, Q_TYPE_F32};
    g_t[n++] = (mx_tensor){"blk.0.attn_k_norm.weight", 2, {4096, 2, 1, 1}, Q_TYPE_F32};
    g_t[n++] = (mx_tensor){"blk.0.attn_q.bias", 2, {4096, 2, 1, 1}, Q_TYPE_F32};
    g_t[n++] = (mx_tensor){"blk.0.col.weight", 2, {4096, 1, 1, 1}, Q_TYPE_F32}; /* ggml 1-D */
    g_t[n++] = T2("position_embd.weight", 4096, 512);
    g_t[n++] = T2("blk.0.ssm_conv1d.weight", 4096, 4);
    g_t[n++] = T2("blk.0.attn_q.weight", 4096, 4096);
    mx_model m = llama_model(1, 32, 32);
    mx_options o = options_default();
    mx_plan *p = plan_ok(&m, MX_FTYPE_Q4_0, &o, n);
    for (size_t i = 0; i + 1 < n; i++) {
        assert_false(mx_plan_get(p, i)->quantize);
        assert_int_equal(mx_plan_get(p, i)->type, g_t[i].type);
    }
    assert_true(mx_plan_get(p, n - 1)->quantize);
    assert_int_equal(mx_plan_get(p, n - 1)->type, Q_TYPE_Q4_0);
    mx_plan_free(p);
    /* F16 "quantized" to F16 is a copy */
    p = plan_ok(&m, MX_FTYPE_F16, &o, n);
    assert_false(mx_plan_get(p, n - 1)->quantize);
    mx_plan_free(p);
    p = plan_ok(&m, MX_FTYPE_ALL_F32, &o, n);
    assert_true(mx_plan_get(p, n - 1)->quantize);
    assert_int_equal(mx_plan_get(p, n - 1)->type, Q_TYPE_F32);
    mx_plan_free(p);
}

/* Without output.weight the token embeddings are the output: they get its type. */
static void test_plan_tied_embeddings(void **state)
{
    (void)state;
    size_t n = llama_tensors(4, 2048, 512, 5632, 32000, 0);
    mx_model m = llama_model(4, 32, 8);
    mx_options o = options_default();
    mx_plan *p = plan_ok(&m, MX_FTYPE_Q4_K_M, &o, n);
    assert_int_equal(type_of(p, n, "token_embd.weight"), Q_TYPE_Q6_K);
    mx_plan_free(p);
    o.output_type = Q_TYPE_Q8_0;
    p = plan_ok(&m, MX_FTYPE_Q4_K_M, &o, n);
    assert_int_equal(type_of(p, n, "token_embd.weight"), Q_TYPE_Q8_0);
    mx_plan_free(p);
}

static void test_plan_options(void **state)
{
    (void)state;
    size_t n = llama_tensors(8, 2048, 512, 5632, 32000, 1);
    mx_model m = llama_model(8, 32, 8);
    mx_options o = options_default();
    o.pure = 1;
    mx_plan *p = plan_ok(&m, MX_FTYPE_Q4_K_M, &o, n);
    assert_int_equal(type_of(p, n, "output.weight"), Q_TYPE_Q4_K);
    assert_int_equal(layer_type(p, n, 0, "attn_v"), Q_TYPE_Q4_K);
    mx_plan_free(p);
    mx_options_init(&o);
    o.output_type = Q_TYPE_F16;
    o.token_embd_type = Q_TYPE_Q8_0;
    p = plan_ok(&m, MX_FTYPE_Q4_K_M, &o, n);
    assert_int_equal(type_of(p, n, "output.weight"), Q_TYPE_F16);
    assert_int_equal(type_of(p, n, "token_embd.weight"), Q_TYPE_Q8_0);
    assert_true(mx_plan_get(p, find_t(n, "output.weight"))->overridden);
    mx_plan_free(p);
    mx_options_init(&o);
    o.leave_output = 1;
    p = plan_ok(&m, MX_FTYPE_Q4_K_M, &o, n);
    assert_false(mx_plan_get(p, find_t(n, "output.weight"))->quantize);
    assert_int_equal(type_of(p, n, "output.weight"), Q_TYPE_F16);
    mx_plan_free(p);
}

static void test_plan_tensor_types(void **state)
{
    (void)state;
    size_t n = llama_tensors(8, 2048, 512, 5632, 32000, 1);
    mx_model m = llama_model(8, 32, 8);
    mx_options o = options_default();
    const char *tt[] = {"blk\\.[0-3]\\.attn_v=q8_0", "ATTN_V=bf16", "ffn_(up|gate)=Q5_K",
                        "output=q4_0"};
    o.tensor_types = tt;
    o.n_tensor_types = 4;
    o.output_type = Q_TYPE_Q8_0; /* takes precedence over the pattern */
    mx_plan *p = plan_ok(&m, MX_FTYPE_Q4_K_M, &o, n);
    for (int l = 0; l < 8; l++) {
        assert_int_equal(layer_type(p, n, l, "attn_v"), l < 4 ? Q_TYPE_Q8_0 : Q_TYPE_BF16);
        assert_int_equal(layer_type(p, n, l, "ffn_up"), Q_TYPE_Q5_K);
        assert_int_equal(layer_type(p, n, l, "ffn_gate"), Q_TYPE_Q5_K);
        /* the override does not shift the mix's counters for other tensors */
        assert_int_equal(layer_type(p, n, l, "ffn_down"), more_bits(l, 8) ? Q_TYPE_Q6_K : Q_TYPE_Q4_K);
    }
    assert_int_equal(type_of(p, n, "output.weight"), Q_TYPE_Q8_0);
    assert_int_equal(type_of(p, n, "output_norm.weight"), Q_TYPE_F32); /* never quantized */
    assert_int_equal(type_of(p, n, "token_embd.weight"), Q_TYPE_Q4_K);
    mx_plan_free(p);
}

static void check_tt_error(const char *arg, int code, const char *fragment)
{
    qk_err err = {{0}};
    assert_int_equal(mx_tensor_type_check(arg, &err), code);
    if (!strstr(err.msg, fragment))
        fail_msg("'%s': message '%s' lacks '%s'", arg, err.msg, fragment);
    mx_options o = options_default();
    o.tensor_types = &arg;
    o.n_tensor_types = 1;
    size_t n = llama_tensors(1, 256, 256, 256, 10, 1);
    mx_model m = llama_model(1, 4, 4);
    mx_plan *p = (mx_plan *)1;
    assert_int_equal(mx_plan_create(&p, &m, MX_FTYPE_Q4_K_M, &o, g_t, n, &err), code);
    assert_null(p);
}

static void test_tensor_type_no_equals(void **s) { (void)s; check_tt_error("attn_v", QK_EFORMAT, "expected REGEX=TYPE"); }
static void test_tensor_type_no_name(void **s) { (void)s; check_tt_error("=q8_0", QK_EFORMAT, "missing tensor name"); }
static void test_tensor_type_bad_type(void **s) { (void)s; check_tt_error("attn_v=q9_9", QK_EFORMAT, "unknown type 'q9_9'"); }
static void test_tensor_type_bad_regex(void **s) { (void)s; check_tt_error("attn_(v=q8_0", QK_EFORMAT, "bad pattern"); }
static void test_tensor_type_unsupported(void **s) { (void)s; check_tt_error("attn_v=iq2_xxs", QK_EUNSUPPORTED, "cannot quantize to iq2_xxs"); }

static void test_plan_keep_order(void **state)
{
    (void)state;
    /* File order with layer 1 first: with keep_order the counters follow it (Q3_K_M gives the
     * first two attn_v seen q5_K). */
    g_t[0] = T2("blk.1.attn_v.weight", 256, 256);
    g_t[1] = T2("blk.2.attn_v.weight", 256, 256);
    g_t[2] = T2("blk.0.attn_v.weight", 256, 256);
    mx_model m = llama_model(3, 4, 4);
    mx_options o = options_default();
    mx_plan *p = plan_ok(&m, MX_FTYPE_Q3_K_M, &o, 3);
    assert_int_equal(mx_plan_order(p, 0), 2);
    assert_int_equal(mx_plan_get(p, 2)->type, Q_TYPE_Q5_K);
    assert_int_equal(mx_plan_get(p, 0)->type, Q_TYPE_Q5_K);
    assert_int_equal(mx_plan_get(p, 1)->type, Q_TYPE_Q4_K);
    mx_plan_free(p);
    o.keep_order = 1;
    p = plan_ok(&m, MX_FTYPE_Q3_K_M, &o, 3);
    assert_int_equal(mx_plan_order(p, 0), 0);
    assert_int_equal(mx_plan_get(p, 2)->type, Q_TYPE_Q4_K);
    assert_int_equal(mx_plan_get(p, 1)->type, Q_TYPE_Q5_K);
    mx_plan_free(p);
}

static void test_plan_bad_input(void **state)
{
    (void)state;
    mx_model m = llama_model(1, 4, 4);
    mx_options o = options_default();
    mx_plan *p = NULL;
    qk_err err = {{0}};
    g_t[0] = T2("blk.0.attn_q.weight", 256, 256);
    assert_int_equal(mx_plan_create(&p, &m, MX_FTYPE_IQ2_XXS, &o, g_t, 1, &err), QK_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "file type 19"));
    g_t[0].ne[1] = 0;
    assert_int_equal(mx_plan_create(&p, &m, MX_FTYPE_Q4_0, &o, g_t, 1, &err), QK_EFORMAT);
    assert_non_null(strstr(err.msg, "dimension 1 is 0"));
    g_t[0].ne[1] = 4;
    o.output_type = Q_TYPE_IQ1_S;
    assert_int_equal(mx_plan_create(&p, &m, MX_FTYPE_Q4_0, &o, g_t, 1, &err), QK_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "--output-tensor-type"));
}

/* ==== imatrix files ========================================================================== */

typedef struct {
    uint8_t b[4096];
    size_t n;
} buf;

static void put_i32(buf *b, int32_t v) { memcpy(b->b + b->n, &v, 4), b->n += 4; }
static void put_f32(buf *b, float v) { memcpy(b->b + b->n, &v, 4), b->n += 4; }
static void put_bytes(buf *b, const char *s, size_t n) { memcpy(b->b + b->n, s, n), b->n += n; }

/* One legacy entry: name, ncall, nval values v0, v0+1 ... */
static void put_entry(buf *b, const char *name, int32_t ncall, int32_t nval, float v0)
{
    put_i32(b, (int32_t)strlen(name));
    put_bytes(b, name, strlen(name));
    put_i32(b, ncall);
    put_i32(b, nval);
    for (int i = 0; i < nval; i++)
        put_f32(b, v0 + (float)i);
}

static buf legacy_ok(void)
{
    buf b = {.n = 0};
    put_i32(&b, 2);
    put_entry(&b, "blk.1.attn_q.weight", 3, 4, 1.0f);
    put_entry(&b, "blk.0.attn_q.weight", 0, 2, 10.0f);
    put_i32(&b, 17);
    put_i32(&b, 8);
    put_bytes(&b, "calib.tx", 8);
    return b;
}

static void test_imatrix_legacy(void **state)
{
    (void)state;
    buf b = legacy_ok();
    imx_file *f = NULL;
    qk_err err = {{0}};
    assert_int_equal(imx_load_mem(&f, b.b, b.n, "m.dat", &err), QK_OK);
    assert_int_equal(imx_format_of(f), IMX_LEGACY);
    assert_int_equal(imx_count(f), 2);
    assert_int_equal(imx_chunk_count(f), 17);
    assert_string_equal(imx_dataset(f, 0), "calib.tx");
    const imx_entry *e = imx_find(f, "blk.1.attn_q.weight");
    assert_non_null(e);
    assert_int_equal(e->n_per_mat, 4);
    assert_int_equal(e->n_mat, 1);
    for (int i = 0; i < 4; i++) /* divided by ncall = 3, in float */
        assert_true(e->values[i] == (1.0f + (float)i) / 3.0f);
    e = imx_find(f, "blk.0.attn_q.weight"); /* ncall 0: kept as stored */
    assert_true(e->values[0] == 10.0f && e->values[1] == 11.0f);
    assert_null(imx_find(f, "blk.2.attn_q.weight"));
    imx_free(f);
    /* without the trailer */
    b.n -= 16;
    assert_int_equal(imx_load_mem(&f, b.b, b.n, "m.dat", &err), QK_OK);
    assert_int_equal(imx_chunk_count(f), 0);
    assert_int_equal(imx_n_datasets(f), 0);
    imx_free(f);
}

static void legacy_bad(const buf *b, int code, const char *fragment)
{
    imx_file *f = (imx_file *)1;
    qk_err err = {{0}};
    assert_int_equal(imx_load_mem(&f, b->b, b->n, "m.dat", &err), code);
    assert_null(f);
    if (!strstr(err.msg, fragment))
        fail_msg("message '%s' lacks '%s'", err.msg, fragment);
    assert_non_null(strstr(err.msg, "m.dat"));
}

static void test_imatrix_legacy_empty(void **s)
{
    (void)s;
    buf b = {.n = 0};
    legacy_bad(&b, QK_EFORMAT, "entry count missing");
}

static void test_imatrix_legacy_zero_entries(void **s)
{
    (void)s;
    buf b = {.n = 0};
    put_i32(&b, 0);
    legacy_bad(&b, QK_EFORMAT, "entry count 0");
}

static void test_imatrix_legacy_bad_name_len(void **s)
{
    (void)s;
    buf b = {.n = 0};
    put_i32(&b, 1);
    put_i32(&b, -5);
    legacy_bad(&b, QK_EFORMAT, "name length -5");
    b.n = 4;
    put_i32(&b, 1000);
    put_bytes(&b, "abc", 3);
    legacy_bad(&b, QK_EFORMAT, "name length 1000 but 3 bytes remain");
    b.n = 4;
    put_i32(&b, 0);
    legacy_bad(&b, QK_EFORMAT, "empty name");
}

static void test_imatrix_legacy_bad_nval(void **s)
{
    (void)s;
    buf b = {.n = 0};
    put_i32(&b, 1);
    put_entry(&b, "w", 1, 0, 0);
    legacy_bad(&b, QK_EFORMAT, "entry 'w': 0 values");
}

static void test_imatrix_legacy_truncated_values(void **s)
{
    (void)s;
    buf b = {.n = 0};
    put_i32(&b, 1);
    put_entry(&b, "w", 1, 4, 1.0f);
    b.n -= 3;
    legacy_bad(&b, QK_EFORMAT, "4 values need 16 bytes, 13 remain");
}

static void test_imatrix_legacy_truncated_header(void **s)
{
    (void)s;
    buf b = {.n = 0};
    put_i32(&b, 2);
    put_entry(&b, "w", 1, 1, 1.0f);
    put_i32(&b, 1);
    put_bytes(&b, "v", 1);
    legacy_bad(&b, QK_EFORMAT, "entry 1: truncated: call count missing");
}

static void test_imatrix_legacy_nan(void **s)
{
    (void)s;
    buf b = {.n = 0};
    put_i32(&b, 1);
    put_entry(&b, "w", 1, 3, 1.0f);
    float nan = NAN;
    memcpy(b.b + b.n - 4, &nan, 4);
    legacy_bad(&b, QK_ERANGE, "entry 'w': value 2 is not finite");
}

static void test_imatrix_legacy_duplicate(void **s)
{
    (void)s;
    buf b = {.n = 0};
    put_i32(&b, 2);
    put_entry(&b, "w", 1, 1, 1.0f);
    put_entry(&b, "w", 1, 1, 1.0f);
    legacy_bad(&b, QK_EFORMAT, "entry 'w' appears twice");
}

static void test_imatrix_legacy_bad_trailer(void **s)
{
    (void)s;
    buf b = legacy_ok();
    b.n -= 10; /* the chunk count and half the length remain */
    legacy_bad(&b, QK_EFORMAT, "dataset name length of the trailer missing");
    b = legacy_ok();
    memcpy(b.b + b.n - 12, &(int32_t){99}, 4);
    legacy_bad(&b, QK_EFORMAT, "dataset name length 99 but 8 bytes remain");
    b = legacy_ok();
    put_bytes(&b, "xx", 2);
    legacy_bad(&b, QK_EFORMAT, "2 unexpected bytes after the trailer");
}

/* GGUF imatrix files are written with qkit's GGUF writer. */
typedef struct {
    const char *name;
    int type;
    int64_t ne0, ne1;
    const float *data;
} gt;

static void write_gguf_imatrix(const char *path, int keys, const gt *t, size_t n)
{
    gguf_writer *w;
    qk_err err = {{0}};
    assert_int_equal(gguf_writer_open(&w, path, NULL, &err), QK_OK);
    gguf_writer_set_str(w, "general.type", "imatrix");
    const char *ds[] = {"a.txt", "b.txt"};
    if (keys & 1)
        gguf_writer_set_arr_str(w, "imatrix.datasets", ds, 2);
    if (keys & 2)
        gguf_writer_set_u32(w, "imatrix.chunk_count", 42);
    else if (keys & 8)
        gguf_writer_set_i32(w, "imatrix.chunk_count", 42);
    if (keys & 4)
        gguf_writer_set_u32(w, "imatrix.chunk_size", 512);
    for (size_t i = 0; i < n; i++)
        gguf_writer_add_tensor(w, t[i].name, t[i].type, 2, (int64_t[]){t[i].ne0, t[i].ne1});
    gguf_writer_begin_data(w);
    for (size_t i = 0; i < n; i++) {
        size_t bytes = q_row_size(t[i].type, t[i].ne0) * (size_t)t[i].ne1;
        gguf_writer_write_tensor(w, t[i].name, t[i].data, bytes);
    }
    assert_int_equal(gguf_writer_commit(w, &err), QK_OK);
}

static const float SUMS[8] = {2, 4, 6, 8, 10, 20, 30, 40};

static void test_imatrix_gguf(void **state)
{
    (void)state;
    const float counts2[2] = {2, 0}, counts1[1] = {4};
    gt t[] = {{"blk.0.ffn_down_exps.weight.in_sum2", Q_TYPE_F32, 4, 2, SUMS},
              {"blk.0.ffn_down_exps.weight.counts", Q_TYPE_F32, 1, 2, counts2},
              {"blk.0.attn_q.weight.counts", Q_TYPE_F32, 1, 1, counts1},
              {"blk.0.attn_q.weight.in_sum2", Q_TYPE_F32, 8, 1, SUMS},
              {"other", Q_TYPE_F32, 1, 1, counts1}};
    const char *path = tu_tmp("im.gguf");
    write_gguf_imatrix(path, 7, t, 5);
    imx_file *f = NULL;
    qk_err err = {{0}};
    assert_int_equal(imx_load(&f, path, &err), QK_OK);
    assert_int_equal(imx_format_of(f), IMX_GGUF);
    assert_int_equal(imx_count(f), 2);
    assert_int_equal(imx_chunk_count(f), 42);
    assert_int_equal(imx_n_datasets(f), 2);
    assert_string_equal(imx_dataset(f, 1), "b.txt");
    const imx_entry *e = imx_find(f, "blk.0.ffn_down_exps.weight");
    assert_int_equal(e->n_per_mat, 4);
    assert_int_equal(e->n_mat, 2);
    for (int i = 0; i < 4; i++) {
        assert_true(e->values[i] == SUMS[i] / 2.0f);
        assert_true(e->values[4 + i] == 1.0f); /* a matrix that saw no token */
    }
    e = imx_find(f, "blk.0.attn_q.weight");
    assert_int_equal(e->n_per_mat, 8);
    assert_true(e->values[7] == 10.0f);
    assert_int_equal(e->ncall, 4);
    imx_free(f);
}

static void gguf_bad(int keys, const gt *t, size_t n, int code, const char *fragment)
{
    const char *path = tu_tmp("bad.gguf");
    write_gguf_imatrix(path, keys, t, n);
    imx_file *f = (imx_file *)1;
    qk_err err = {{0}};
    assert_int_equal(imx_load(&f, path, &err), code);
    assert_null(f);
    if (!strstr(err.msg, fragment))
        fail_msg("message '%s' lacks '%s'", err.msg, fragment);
}

static const float ONE[1] = {1};

static void test_imatrix_gguf_missing_key(void **s)
{
    (void)s;
    gt t[] = {{"w.in_sum2", Q_TYPE_F32, 8, 1, SUMS}, {"w.counts", Q_TYPE_F32, 1, 1, ONE}};
    gguf_bad(1 | 4, t, 2, QK_EFORMAT, "imatrix.chunk_count missing");
    gguf_bad(2 | 4, t, 2, QK_EFORMAT, "imatrix.datasets missing");
}

static void test_imatrix_gguf_key_type(void **s)
{
    (void)s;
    gt t[] = {{"w.in_sum2", Q_TYPE_F32, 8, 1, SUMS}, {"w.counts", Q_TYPE_F32, 1, 1, ONE}};
    gguf_bad(1 | 4 | 8, t, 2, QK_EFORMAT, "imatrix.chunk_count has the wrong type");
}

static void test_imatrix_gguf_unpaired(void **s)
{
    (void)s;
    gt t1[] = {{"w.in_sum2", Q_TYPE_F32, 8, 1, SUMS}};
    gguf_bad(7, t1, 1, QK_EFORMAT, "'w.in_sum2' has no matching 'w.counts'");
    gt t2[] = {{"v.counts", Q_TYPE_F32, 1, 1, ONE}};
    gguf_bad(7, t2, 1, QK_EFORMAT, "'v.counts' has no matching 'v.in_sum2'");
}

static void test_imatrix_gguf_bad_counts(void **s)
{
    (void)s;
    gt t[] = {{"w.in_sum2", Q_TYPE_F32, 4, 2, SUMS}, {"w.counts", Q_TYPE_F32, 1, 1, ONE}};
    gguf_bad(7, t, 2, QK_EFORMAT, "1 counts for 2 matrices");
}

static void test_imatrix_gguf_bad_type(void **s)
{
    (void)s;
    const uint16_t h[8] = {0};
    gt t[] = {{"w.in_sum2", Q_TYPE_F16, 8, 1, (const float *)h}, {"w.counts", Q_TYPE_F32, 1, 1, ONE}};
    gguf_bad(7, t, 2, QK_EFORMAT, "must be f32, not f16");
}

static void test_imatrix_gguf_nan(void **s)
{
    (void)s;
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    v[5] = INFINITY;
    gt t[] = {{"w.in_sum2", Q_TYPE_F32, 8, 1, v}, {"w.counts", Q_TYPE_F32, 1, 1, ONE}};
    gguf_bad(7, t, 2, QK_ERANGE, "entry 'w': value 5 is not finite");
}

static void test_imatrix_gguf_no_entries(void **s)
{
    (void)s;
    gt t[] = {{"other", Q_TYPE_F32, 1, 1, ONE}};
    gguf_bad(7, t, 1, QK_EFORMAT, "no importance matrix entries");
}

static void test_imatrix_unreadable(void **s)
{
    (void)s;
    imx_file *f = NULL;
    qk_err err = {{0}};
    assert_int_equal(imx_load(&f, "/nonexistent/x.dat", &err), QK_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/x.dat: cannot open"));
}

/* The golden calibration file: 28 entries (7 matrices x 4 layers), 639 chunks. */
static void test_imatrix_golden_file(void **state)
{
    (void)state;
    TU_SHARED(path, "golden/stories3M/imatrix-calib.dat");
    imx_file *f = NULL;
    qk_err err = {{0}};
    assert_int_equal(imx_load(&f, path, &err), QK_OK);
    assert_int_equal(imx_count(f), 28);
    assert_int_equal(imx_chunk_count(f), 639);
    assert_string_equal(imx_dataset(f, 0), "text/tinystories-calib.txt");
    const imx_entry *e = imx_find(f, "blk.3.ffn_down.weight");
    assert_non_null(e);
    assert_int_equal(e->n_per_mat, 768);
    assert_non_null(imx_find(f, "blk.0.attn_v.weight"));
    imx_free(f);
}

/* ==== pipeline ================================================================================ */

static int run_qz(const char *in, const char *out, int ftype, int threads, const char *imatrix,
                  int pure, qz_report **r, qk_err *err)
{
    qz_params p;
    qz_params_init(&p);
    p.in_path = in;
    p.out_path = out;
    p.ftype = ftype;
    p.n_threads = threads;
    p.imatrix_path = imatrix;
    p.mix.pure = pure;
    return qz_quantize(&p, r, NULL, err);
}

static void test_stories260k_byte_identical(void **state)
{
    (void)state;
    TU_SHARED(in, "models/stories260K.gguf");
    TU_SHARED(golden, "golden/stories260K-Q4_K_M.gguf");
    size_t gn, on;
    uint8_t *g = tu_read(golden, &gn);
    for (int th = 1; th <= 3; th++) {
        const char *out = tu_tmp("s260k-q4km.gguf");
        qz_report *r = NULL;
        qk_err err = {{0}};
        assert_int_equal(run_qz(in, out, MX_FTYPE_Q4_K_M, th, NULL, 0, &r, &err), QK_OK);
        uint8_t *o = tu_read(out, &on);
        assert_int_equal(on, gn);
        assert_memory_equal(o, g, gn);
        free(o);
        /* rows of 64 and 172 fall back: everything quantized but output (64 % 256 → q8_0 by
         * the output rule, not by fallback) */
        assert_int_equal(r->n, 48);
        assert_int_equal(r->n_quantized, 37);
        assert_int_equal(r->n_fallback, 36);
        assert_int_equal(r->out_bytes, 289696 - 0); /* as `qkit inspect` of the golden file */
        qz_report_free(r);
        unlink(out);
    }
    free(g);
}

/* The report's error estimate, recomputed here from the written bytes. */
static void test_report_rmse(void **state)
{
    (void)state;
    TU_SHARED(in, "models/stories260K.gguf");
    const char *out = tu_tmp("s260k-q4.gguf");
    qz_report *r = NULL;
    qk_err err = {{0}};
    assert_int_equal(run_qz(in, out, MX_FTYPE_Q4_K_M, 2, NULL, 0, &r, &err), QK_OK);
    gguf_ctx *gi, *go;
    assert_int_equal(gguf_open(&gi, in, &err), QK_OK);
    assert_int_equal(gguf_open(&go, out, &err), QK_OK);
    int checked = 0;
    for (size_t k = 0; k < r->n; k++) {
        const qz_tensor_report *t = &r->t[k];
        const gguf_tensor_info *a = gguf_find_tensor(gi, t->name), *b = gguf_find_tensor(go, t->name);
        assert_int_equal(b->type, t->type);
        assert_int_equal(b->nbytes, t->bytes);
        if (!t->quantized) {
            assert_int_equal(a->nbytes, b->nbytes);
            assert_memory_equal(a->data, b->data, a->nbytes);
            continue;
        }
        int64_t n = a->ne[0] * a->ne[1];
        float *y = malloc((size_t)n * sizeof *y);
        assert_int_equal(q_dequantize_rows(b->type, b->data, y, a->ne[1], a->ne[0], &err), QK_OK);
        const float *x = a->data;
        double e = 0, s = 0;
        for (int64_t i = 0; i < n; i++)
            e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]), s += (double)x[i] * x[i];
        tu_assert_near(t->rel_rmse, sqrt(e / s), 1e-12);
        assert_true(t->rel_rmse > 0 && t->rel_rmse < 0.06);
        free(y);
        checked++;
    }
    assert_true(checked >= 30);
    assert_true(r->bpw > 7.9 && r->bpw < 7.92); /* 289696 * 8 / 292800 */
    assert_int_equal(r->n_params, 292800);
    gguf_close(gi);
    gguf_close(go);
    qz_report_free(r);
}

/* ---- stories3M: build the converted input, then compare with llama-quantize's tensors ---- */

/* HF llama name → GGUF name; 0 when not a weight we convert. */
static int hf_to_gguf(const char *hf, char *out, size_t n)
{
    static const char *const MAP[][2] = {
        {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
        {"self_attn.v_proj", "attn_v"},   {"self_attn.o_proj", "attn_output"},
        {"mlp.gate_proj", "ffn_gate"},    {"mlp.up_proj", "ffn_up"},
        {"mlp.down_proj", "ffn_down"},    {"input_layernorm", "attn_norm"},
        {"post_attention_layernorm", "ffn_norm"}};
    if (!strcmp(hf, "model.embed_tokens.weight"))
        return snprintf(out, n, "token_embd.weight"), 1;
    if (!strcmp(hf, "model.norm.weight"))
        return snprintf(out, n, "output_norm.weight"), 1;
    if (!strcmp(hf, "lm_head.weight"))
        return snprintf(out, n, "output.weight"), 1;
    int layer, used = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &used) != 1 || !used)
        return 0;
    for (size_t i = 0; i < sizeof MAP / sizeof MAP[0]; i++) {
        size_t l = strlen(MAP[i][0]);
        if (!strncmp(hf + used, MAP[i][0], l) && !strcmp(hf + used + l, ".weight"))
            return snprintf(out, n, "blk.%d.%s.weight", layer, MAP[i][1]), 1;
    }
    return 0;
}

/* convert_hf_to_gguf's LlamaModel.permute: rows regrouped per head from [half0 | half1] to
 * interleaved pairs. Works on rows of row_bytes. */
static void permute_rows(uint8_t *dst, const uint8_t *src, int64_t rows, size_t row_bytes,
                         int64_t n_head)
{
    int64_t hd = rows / n_head, half = hd / 2;
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < half; i++)
            for (int64_t j = 0; j < 2; j++)
                memcpy(dst + (size_t)(h * hd + i * 2 + j) * row_bytes,
                       src + (size_t)(h * hd + j * half + i) * row_bytes, row_bytes);
}

/* stories3M as convert_hf_to_gguf --outtype f32 (bf16: 2-D tensors bf16, the rest f32). */
static void build_stories3m(const char *st_path, const char *out, int bf16)
{
    st_file *sf;
    gguf_writer *w;
    qk_err err = {{0}};
    assert_int_equal(st_file_open(&sf, st_path, &err), QK_OK);
    assert_int_equal(gguf_writer_open(&w, out, NULL, &err), QK_OK);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.block_count", 4);
    gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", 2);
    gguf_writer_set_u32(w, "general.file_type", bf16 ? 32 : 0);
    size_t n = st_file_n_tensors(sf);
    char names[64][64];
    const st_tensor *src[64];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_file_tensor(sf, i);
        if (!hf_to_gguf(t->name, names[m], sizeof names[m]))
            continue;
        assert_int_equal(t->dtype, ST_BF16);
        src[m] = t;
        int64_t ne[2] = {t->shape[t->n_dims - 1], t->n_dims == 2 ? t->shape[0] : 1};
        int type = bf16 && t->n_dims == 2 ? Q_TYPE_BF16 : Q_TYPE_F32;
        gguf_writer_add_tensor(w, names[m], type, (uint32_t)t->n_dims, ne);
        m++;
    }
    assert_int_equal(gguf_writer_begin_data(w), QK_OK);
    for (size_t i = 0; i < m; i++) {
        const st_tensor *t = src[i];
        size_t ne = (size_t)t->n_elements;
        uint8_t *tmp = malloc(ne * 4), *perm = malloc(ne * 4);
        int as_bf16 = bf16 && t->n_dims == 2;
        size_t esz = as_bf16 ? 2 : 4;
        const uint16_t *h = t->data;
        for (size_t k = 0; k < ne; k++) {
            uint16_t hv;
            memcpy(&hv, h + k, 2);
            if (as_bf16)
                memcpy(tmp + 2 * k, &hv, 2);
            else {
                float f = q_bf16_to_fp32(hv);
                memcpy(tmp + 4 * k, &f, 4);
            }
        }
        int64_t heads = strstr(names[i], "attn_q.") ? 4 : strstr(names[i], "attn_k.") ? 2 : 0;
        if (heads)
            permute_rows(perm, tmp, t->shape[0], (size_t)t->shape[1] * esz, heads);
        gguf_writer_write_tensor(w, names[i], heads ? perm : tmp, ne * esz);
        free(tmp);
        free(perm);
    }
    assert_int_equal(gguf_writer_commit(w, &err), QK_OK);
    st_file_close(sf);
}

/* Every tensor of the GGUF at path matches golden JSON json_rel (type, shape, bytes, sha256). */
static void check_golden(const char *path, const char *json_path)
{
    size_t jn;
    char *js = tu_read(json_path, &jn);
    char *z = realloc(js, jn + 1);
    z[jn] = 0;
    cJSON *root = cJSON_Parse(z);
    free(z);
    assert_non_null(root);
    cJSON *tensors = cJSON_GetObjectItem(root, "tensors");
    gguf_ctx *g;
    qk_err err = {{0}};
    assert_int_equal(gguf_open(&g, path, &err), QK_OK);
    assert_int_equal((size_t)cJSON_GetArraySize(tensors), gguf_n_tensors(g));
    cJSON *it;
    cJSON_ArrayForEach(it, tensors)
    {
        const gguf_tensor_info *t = gguf_find_tensor(g, it->string);
        if (!t)
            fail_msg("%s: tensor %s missing", json_path, it->string);
        const char *want = cJSON_GetObjectItem(it, "type")->valuestring;
        if (strcmp(q_type_info(t->type)->name, want))
            fail_msg("%s: %s is %s, llama-quantize wrote %s", json_path, it->string,
                     q_type_info(t->type)->name, want);
        cJSON *shape = cJSON_GetObjectItem(it, "shape");
        assert_int_equal((uint32_t)cJSON_GetArraySize(shape), t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            assert_int_equal((int64_t)cJSON_GetArrayItem(shape, (int)d)->valuedouble, t->ne[d]);
        assert_int_equal((uint64_t)cJSON_GetObjectItem(it, "bytes")->valuedouble, t->nbytes);
        char hex[65];
        sha256_hex(t->data, t->nbytes, hex);
        if (strcmp(hex, cJSON_GetObjectItem(it, "sha256")->valuestring))
            fail_msg("%s: %s (%s) bytes differ from llama-quantize's", json_path, it->string, want);
    }
    gguf_close(g);
    cJSON_Delete(root);
}

static const char *g_s3m_f32, *g_s3m_bf16;

static int s3m_setup(void)
{
    if (g_s3m_f32)
        return 1;
    const char *st = tu_shared("models/stories3M/model.safetensors");
    if (!st || !tu_shared("golden/stories3M/convert-f32.json"))
        return 0;
    static char f32[512], b16[512];
    snprintf(f32, sizeof f32, "%s", tu_tmp("s3m-f32.gguf"));
    snprintf(b16, sizeof b16, "%s", tu_tmp("s3m-bf16.gguf"));
    build_stories3m(st, f32, 0);
    build_stories3m(st, b16, 1);
    g_s3m_f32 = f32;
    g_s3m_bf16 = b16;
    return 1;
}

static void test_stories3m_inputs(void **state)
{
    (void)state;
    if (!s3m_setup()) {
        print_message("shared data missing: models/stories3M (test skipped)\n");
        skip();
    }
    char j[512];
    snprintf(j, sizeof j, "%s", tu_shared("golden/stories3M/convert-f32.json"));
    check_golden(g_s3m_f32, j);
    snprintf(j, sizeof j, "%s", tu_shared("golden/stories3M/convert-bf16.json"));
    check_golden(g_s3m_bf16, j);
}

static void golden_run(const char *kind, const char *mix, int bf16_input)
{
    if (!s3m_setup()) {
        print_message("shared data missing: models/stories3M (test skipped)\n");
        skip();
    }
    char rel[128], json[512], imat[512] = "";
    if (!strcmp(kind, "pure"))
        snprintf(rel, sizeof rel, "golden/stories3M/pure-%s.json", mix);
    else
        snprintf(rel, sizeof rel, "golden/stories3M/mix-%s-%s.json", mix, kind);
    const char *jp = tu_shared(rel);
    assert_non_null(jp);
    snprintf(json, sizeof json, "%s", jp);
    if (!strcmp(kind, "calib"))
        snprintf(imat, sizeof imat, "%s", tu_shared("golden/stories3M/imatrix-calib.dat"));
    const char *out = tu_tmp("s3m-q.gguf");
    qz_report *r = NULL;
    qk_err err = {{0}};
    /* one thread: thread-count independence is tested on the BF16 runs and on stories260K */
    int rc = run_qz(bf16_input ? g_s3m_bf16 : g_s3m_f32, out, mx_mix_from_name(mix)->ftype,
                    bf16_input ? 2 : 1,
                    imat[0] ? imat : NULL, !strcmp(kind, "pure"), &r, &err);
    if (rc)
        fail_msg("%s %s: %s", kind, mix, err.msg);
    check_golden(out, json);
    qz_report_free(r);
    unlink(out);
}

static const char *const PURE[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K",
                                   "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"};
static const char *const MIXES[] = {"Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
                                    "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "IQ4_XS"};

static void test_stories3m_pure(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof PURE / sizeof PURE[0]; i++)
        golden_run("pure", PURE[i], 0);
}

static void test_stories3m_mix_none(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof MIXES / sizeof MIXES[0]; i++)
        golden_run("none", MIXES[i], 0);
}

static void test_stories3m_mix_calib(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof MIXES / sizeof MIXES[0]; i++)
        golden_run("calib", MIXES[i], 0);
}

/* bf16 weights widen exactly to f32, so a BF16 input quantizes to the same tensors as F32;
 * only the (f32) norms are copied in both. */
static void test_stories3m_bf16_input(void **state)
{
    (void)state;
    golden_run("none", "Q4_K_M", 1);
    golden_run("calib", "Q3_K_M", 1);
    golden_run("pure", "Q8_0", 1);
}

/* ---- pipeline errors ------------------------------------------------------------------------ */

static void expect_fail(int rc, int code, const qk_err *err, const char *fragment, const char *out)
{
    assert_int_equal(rc, code);
    if (!strstr(err->msg, fragment))
        fail_msg("message '%s' lacks '%s'", err->msg, fragment);
    assert_false(tu_exists(out));
}

static void test_qz_unknown_type(void **state)
{
    (void)state;
    TU_SHARED(in, "models/stories260K.gguf");
    const char *out = tu_tmp("x.gguf");
    qk_err err = {{0}};
    int rc = run_qz(in, out, MX_FTYPE_IQ2_XXS, 1, NULL, 0, NULL, &err);
    expect_fail(rc, QK_EUNSUPPORTED, &err, "file type 19", out);
}

static void test_qz_requantize(void **state)
{
    (void)state;
    TU_SHARED(in, "golden/stories260K-Q4_K_M.gguf");
    const char *out = tu_tmp("rq.gguf");
    qk_err err = {{0}};
    int rc = run_qz(in, out, MX_FTYPE_F16, 1, NULL, 0, NULL, &err);
    expect_fail(rc, QK_EUNSUPPORTED, &err, "tensor 'output.weight' is already quantized (q8_0)", out);
    assert_non_null(strstr(err.msg, "--allow-requantize"));
    qz_params p;
    qz_params_init(&p);
    p.in_path = in;
    p.out_path = out;
    p.ftype = MX_FTYPE_F16;
    p.allow_requantize = 1;
    qz_report *r = NULL;
    assert_int_equal(qz_quantize(&p, &r, NULL, &err), QK_OK);
    assert_true(tu_exists(out));
    /* every matrix is f16 now; the ffn_down tensors already were and are copied */
    for (size_t k = 0; k < r->n; k++)
        if (r->t[k].ne[1] > 1) {
            assert_int_equal(r->t[k].type, Q_TYPE_F16);
            assert_int_equal(r->t[k].quantized, r->t[k].src_type != Q_TYPE_F16);
        }
    qz_report_free(r);
}

static void test_qz_unreadable_input(void **state)
{
    (void)state;
    const char *out = tu_tmp("u.gguf");
    qk_err err = {{0}};
    int failed_out = -1;
    qz_params p;
    qz_params_init(&p);
    p.in_path = "/nonexistent/model.gguf";
    p.out_path = out;
    int rc = qz_quantize(&p, NULL, &failed_out, &err);
    expect_fail(rc, QK_EIO, &err, "/nonexistent/model.gguf", out);
    assert_int_equal(failed_out, 0);
}

static void test_qz_imatrix_wrong_sizes(void **state)
{
    (void)state;
    TU_SHARED(in, "models/stories260K.gguf");
    TU_SHARED(imat, "golden/stories3M/imatrix-calib.dat");
    const char *out = tu_tmp("w.gguf");
    qk_err err = {{0}};
    int rc = run_qz(in, out, MX_FTYPE_Q4_K_M, 1, imat, 0, NULL, &err);
    expect_fail(rc, QK_EFORMAT, &err, "different model", out);
    assert_non_null(strstr(err.msg, "has 256 values but the tensor"));
    assert_non_null(strstr(err.msg, "needs 64"));
}

static void test_qz_imatrix_wrong_names(void **state)
{
    (void)state;
    TU_SHARED(in, "models/stories260K.gguf");
    buf b = {.n = 0};
    put_i32(&b, 2);
    put_entry(&b, "blk.0.attn_q.weight", 1, 64, 1.0f);
    put_entry(&b, "blk.7.attn_q.weight", 1, 64, 1.0f);
    const char *imat = tu_tmp("names.dat");
    tu_write(imat, b.b, b.n);
    const char *out = tu_tmp("w.gguf");
    qk_err err = {{0}};
    int rc = run_qz(in, out, MX_FTYPE_Q4_K_M, 1, imat, 0, NULL, &err);
    expect_fail(rc, QK_EFORMAT, &err, "entry 'blk.7.attn_q.weight' names no tensor", out);
    assert_non_null(strstr(err.msg, "different model"));
}

/* A partial imatrix: missing entries are warnings and those tensors are quantized unweighted;
 * the others use their weights (a different result from no imatrix at all). */
static void test_qz_imatrix_partial(void **state)
{
    (void)state;
    TU_SHARED(in, "models/stories260K.gguf");
    buf b = {.n = 0};
    put_i32(&b, 1);
    put_entry(&b, "blk.0.attn_q.weight", 2, 64, 1.0f);
    const char *imat = tu_tmp("part.dat");
    tu_write(imat, b.b, b.n);
    const char *out = tu_tmp("p.gguf");
    qz_report *r = NULL;
    qk_err err = {{0}};
    assert_int_equal(run_qz(in, out, MX_FTYPE_Q4_K_M, 2, imat, 0, &r, &err), QK_OK);
    assert_int_equal(r->n_no_imatrix, 36);
    int used = 0;
    for (size_t k = 0; k < r->n; k++)
        if (r->t[k].imatrix == QZ_IMAT_USED) {
            assert_string_equal(r->t[k].name, "blk.0.attn_q.weight");
            used++;
        }
    assert_int_equal(used, 1);
    int warned = 0;
    for (size_t k = 0; k < r->n_warnings; k++)
        warned += strstr(r->warnings[k], "blk.1.ffn_up.weight: no importance matrix entry") != NULL;
    assert_int_equal(warned, 1);
    qz_report_free(r);
    /* the weighted tensor differs from the golden (unweighted) one; another tensor does not */
    gguf_ctx *a, *g;
    TU_SHARED(golden, "golden/stories260K-Q4_K_M.gguf");
    assert_int_equal(gguf_open(&a, out, &err), QK_OK);
    assert_int_equal(gguf_open(&g, golden, &err), QK_OK);
    const gguf_tensor_info *x = gguf_find_tensor(a, "blk.0.attn_q.weight"),
                           *y = gguf_find_tensor(g, "blk.0.attn_q.weight");
    assert_int_equal(x->nbytes, y->nbytes);
    assert_true(memcmp(x->data, y->data, x->nbytes) != 0);
    x = gguf_find_tensor(a, "blk.0.attn_k.weight");
    y = gguf_find_tensor(g, "blk.0.attn_k.weight");
    assert_memory_equal(x->data, y->data, x->nbytes);
    int64_t key = gguf_find_key(a, "quantize.imatrix.entries_count");
    assert_true(key >= 0);
    assert_int_equal(gguf_kv_value(a, (uint64_t)key)->i32, 1);
    gguf_close(a);
    gguf_close(g);
}

/* Copies stories260K with one value of tensor name replaced by v. */
static void write_poisoned(const char *in, const char *out, const char *name, int64_t index, float v)
{
    gguf_ctx *g;
    gguf_writer *w;
    qk_err err = {{0}};
    assert_int_equal(gguf_open(&g, in, &err), QK_OK);
    assert_int_equal(gguf_writer_open(&w, out, NULL, &err), QK_OK);
    for (uint64_t i = 0; i < gguf_n_kv(g); i++)
        gguf_writer_set_value(w, gguf_kv_key(g, i), gguf_kv_value(g, i));
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor_info *t = gguf_tensor(g, i);
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne);
    }
    assert_int_equal(gguf_writer_begin_data(w), QK_OK);
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor_info *t = gguf_tensor(g, i);
        float *copy = malloc(t->nbytes);
        memcpy(copy, t->data, t->nbytes);
        if (!strcmp(t->name, name))
            copy[index] = v;
        gguf_writer_write_tensor(w, t->name, copy, t->nbytes);
        free(copy);
    }
    assert_int_equal(gguf_writer_commit(w, &err), QK_OK);
    gguf_close(g);
}

static void test_qz_nan_weights(void **state)
{
    (void)state;
    TU_SHARED(in, "models/stories260K.gguf");
    const char *bad = tu_tmp("nan.gguf"), *out = tu_tmp("nan-q.gguf");
    write_poisoned(in, bad, "blk.1.attn_q.weight", 3 * 64 + 5, NAN);
    qk_err err = {{0}};
    int rc = run_qz(bad, out, MX_FTYPE_Q4_K_M, 2, NULL, 0, NULL, &err);
    expect_fail(rc, QK_ERANGE, &err, "tensor 'blk.1.attn_q.weight': row 3 holds a non-finite", out);
    /* also in a tensor that is only copied */
    write_poisoned(in, bad, "blk.2.ffn_norm.weight", 7, INFINITY);
    rc = run_qz(bad, out, MX_FTYPE_Q4_K_M, 2, NULL, 0, NULL, &err);
    expect_fail(rc, QK_ERANGE, &err, "tensor 'blk.2.ffn_norm.weight': row 0", out);
}

static void test_qz_needs_imatrix(void **state)
{
    (void)state;
    TU_SHARED(in, "models/stories260K.gguf");
    const char *out = tu_tmp("q2ks.gguf");
    qk_err err = {{0}};
    int rc = run_qz(in, out, MX_FTYPE_Q2_K_S, 1, NULL, 0, NULL, &err);
    expect_fail(rc, QK_EFORMAT, &err, "Q2_K_S needs an importance matrix", out);
}

static void test_qz_output_dir_missing(void **state)
{
    (void)state;
    TU_SHARED(in, "models/stories260K.gguf");
    qk_err err = {{0}};
    int failed_out = 0;
    qz_params p;
    qz_params_init(&p);
    p.in_path = in;
    p.out_path = "/nonexistent-dir/out.gguf";
    int rc = qz_quantize(&p, NULL, &failed_out, &err);
    assert_int_equal(rc, QK_EIO);
    assert_int_equal(failed_out, 1);
    /* the message names the path and the cause (it used to be a bare "I/O error") */
    tu_assert_msg(err.msg, "/nonexistent-dir/out.gguf: cannot create temporary file: No such file or directory");
}

/* An output that is the input, however spelled (the same path, ./, absolute, a symbolic or hard
 * link, the importance matrix, a part of --keep-split's output): QK_EALIAS before anything is
 * written, not an output failure, the input untouched. */
static void test_qz_output_is_input(void **state)
{
    (void)state;
    TU_SHARED(src, "models/stories260K.gguf");
    const char *dir = tu_mkdir("qz-alias");
    char in[4096], imat[4096], cwd[4096];
    snprintf(in, sizeof in, "%s", tu_join(dir, "m.gguf"));
    snprintf(imat, sizeof imat, "%s", tu_join(dir, "i.dat"));
    tu_copy(src, in);
    buf b = {.n = 0};
    put_i32(&b, 1);
    put_entry(&b, "blk.0.attn_q.weight", 1, 64, 1.0f);
    tu_write(imat, b.b, b.n);
    assert_int_equal(symlink("m.gguf", tu_join(dir, "link.gguf")), 0);
    assert_int_equal(link(in, tu_join(dir, "hard.gguf")), 0);
    size_t n0;
    uint8_t *before = tu_read(in, &n0);
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    static const struct {
        const char *in, *out, *imatrix;
        const char *msg;
    } cases[] = {
        {"m.gguf", "m.gguf", NULL, "m.gguf: is the input m.gguf (the same file)"},
        {"m.gguf", "./m.gguf", NULL, "./m.gguf: is the input m.gguf"},
        {"./m.gguf", "link.gguf", NULL, "link.gguf: is the input ./m.gguf"},
        {"link.gguf", "m.gguf", NULL, "m.gguf: is the input link.gguf"},
        {"m.gguf", "hard.gguf", NULL, "hard.gguf: is the input m.gguf"},
        {"m.gguf", "i.dat", "i.dat", "i.dat: is the input i.dat"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qz_params p;
        qz_params_init(&p);
        p.in_path = cases[i].in;
        p.out_path = cases[i].out;
        p.imatrix_path = cases[i].imatrix;
        qk_err err = {{0}};
        int failed_out = -1;
        int rc = qz_quantize(&p, NULL, &failed_out, &err);
        if (rc != QK_EALIAS)
            fail_msg("case %zu: %d (%s)", i, rc, err.msg);
        tu_assert_msg(err.msg, cases[i].msg);
        assert_int_equal(failed_out, 0);
    }
    /* the absolute spelling */
    qz_params p;
    qz_params_init(&p);
    p.in_path = "m.gguf";
    p.out_path = in;
    qk_err err = {{0}};
    assert_int_equal(qz_quantize(&p, NULL, NULL, &err), QK_EALIAS);
    assert_int_equal(chdir(cwd), 0);
    size_t n1;
    uint8_t *after = tu_read(in, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);
}

/* Importance values of zero make every candidate scale equally good: a matrix whose values are
 * all zero is quantized without weights (a warning), so an all-zero imatrix gives llama-quantize's
 * unweighted bytes instead of garbage (PPL 4.8 → 1e10 before). Negative values are an error
 * naming the entry. */
static void test_qz_imatrix_zero_and_negative(void **state)
{
    (void)state;
    TU_SHARED(in, "models/stories260K.gguf");
    TU_SHARED(golden, "golden/stories260K-Q4_K_M.gguf");
    gguf_ctx *g, *o;
    qk_err err = {{0}};
    assert_int_equal(gguf_open(&g, in, &err), QK_OK);
    for (int neg = 0; neg < 2; neg++) {
        size_t cap = 1 << 16, n = 0;
        uint8_t *dat = calloc(1, cap);
        int32_t count = 0;
        n = 4;
        for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
            const gguf_tensor_info *t = gguf_tensor(g, i);
            if (t->n_dims < 2 || !strcmp(t->name, "token_embd.weight"))
                continue;
            int32_t len = (int32_t)strlen(t->name), one = 1, nval = (int32_t)t->ne[0];
            memcpy(dat + n, &len, 4), n += 4;
            memcpy(dat + n, t->name, (size_t)len), n += (size_t)len;
            memcpy(dat + n, &one, 4), n += 4;
            memcpy(dat + n, &nval, 4), n += 4;
            float v = neg && count == 3 ? -0.5f : 0.0f;
            for (int32_t c = 0; c < nval; c++, n += 4)
                memcpy(dat + n, c == 7 ? &v : &(float){0.0f}, 4);
            count++;
        }
        memcpy(dat, &count, 4);
        const char *imat = tu_tmp(neg ? "neg.dat" : "zero.dat"), *out = tu_tmp(neg ? "n.gguf" : "z.gguf");
        tu_write(imat, dat, n);
        free(dat);
        qz_report *r = NULL;
        int rc = run_qz(in, out, MX_FTYPE_Q4_K_M, 2, imat, 0, &r, &err);
        if (neg) {
            /* refused where the file is read or where the values are used, naming the entry */
            assert_int_not_equal(rc, QK_OK);
            if (!strstr(err.msg, "blk.0.attn_v.weight") && !strstr(err.msg, "negative"))
                fail_msg("message '%s' names neither the entry nor the problem", err.msg);
            assert_false(tu_exists(out));
            continue;
        }
        assert_int_equal(rc, QK_OK);
        int warned = 0;
        for (size_t k = 0; k < r->n_warnings; k++)
            warned += strstr(r->warnings[k], "importance matrix entry is all zeros") != NULL;
        assert_int_equal(warned, count);
        qz_report_free(r);
        gguf_ctx *gold;
        assert_int_equal(gguf_open(&o, out, &err), QK_OK);
        assert_int_equal(gguf_open(&gold, golden, &err), QK_OK);
        for (uint64_t i = 0; i < gguf_n_tensors(gold); i++) {
            const gguf_tensor_info *x = gguf_tensor(gold, i), *y = gguf_find_tensor(o, x->name);
            assert_non_null(y);
            assert_int_equal(x->type, y->type);
            assert_int_equal(x->nbytes, y->nbytes);
            if (memcmp(x->data, y->data, x->nbytes))
                fail_msg("tensor '%s' differs from the unweighted quantization", x->name);
        }
        gguf_close(o);
        gguf_close(gold);
    }
    gguf_close(g);
}

/* Writes stories260K as a split model with the given limits; returns part 1's path. */
static const char *write_split(const char *in, const gguf_split_opts *so, char *part1, size_t n)
{
    gguf_ctx *g;
    gguf_writer *w;
    qk_err err = {{0}};
    assert_int_equal(gguf_open(&g, in, &err), QK_OK);
    const char *sp = tu_tmp(so->max_bytes ? "splitb.gguf" : "split.gguf");
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(sp) - 5), sp);
    assert_int_equal(gguf_writer_open(&w, sp, so, &err), QK_OK);
    for (uint64_t i = 0; i < gguf_n_kv(g); i++)
        gguf_writer_set_value(w, gguf_kv_key(g, i), gguf_kv_value(g, i));
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor_info *t = gguf_tensor(g, i);
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne);
    }
    assert_int_equal(gguf_writer_begin_data(w), QK_OK);
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++)
        gguf_writer_write_tensor(w, gguf_tensor(g, i)->name, gguf_tensor(g, i)->data,
                                 gguf_tensor(g, i)->nbytes);
    uint32_t parts = gguf_writer_n_parts(w);
    assert_int_equal(gguf_writer_commit(w, &err), QK_OK);
    gguf_close(g);
    gguf_split_path(part1, n, prefix, 0, parts);
    return part1;
}

/* Split input (3 parts of 20 tensors): without --keep-split one file equal to the golden;
 * with it, three parts holding the same tensors. */
static void test_qz_split(void **state)
{
    (void)state;
    TU_SHARED(in, "models/stories260K.gguf");
    TU_SHARED(golden, "golden/stories260K-Q4_K_M.gguf");
    qk_err err = {{0}};
    char part1[600];
    write_split(in, &(gguf_split_opts){.max_tensors = 20}, part1, sizeof part1);
    const char *out = tu_tmp("split-q.gguf");
    assert_int_equal(run_qz(part1, out, MX_FTYPE_Q4_K_M, 2, NULL, 0, NULL, &err), QK_OK);
    size_t on, gn;
    uint8_t *o = tu_read(out, &on), *gb = tu_read(golden, &gn);
    assert_int_equal(on, gn);
    assert_memory_equal(o, gb, gn);
    free(o);
    free(gb);
    /* --keep-split */
    qz_params p;
    qz_params_init(&p);
    p.in_path = part1;
    p.out_path = tu_tmp("kept.gguf");
    p.keep_split = 1;
    qz_report *r = NULL;
    assert_int_equal(qz_quantize(&p, &r, NULL, &err), QK_OK);
    assert_int_equal(r->n_parts_in, 3);
    assert_int_equal(r->n_parts_out, 3);
    qz_report_free(r);
    char kp[600], kprefix[512];
    snprintf(kprefix, sizeof kprefix, "%.*s", (int)(strlen(p.out_path) - 5), p.out_path);
    gguf_split_path(kp, sizeof kp, kprefix, 1, 3);
    gguf_ctx *k, *ref;
    assert_int_equal(gguf_open(&k, kp, &err), QK_OK);
    assert_int_equal(gguf_open(&ref, golden, &err), QK_OK);
    assert_int_equal(gguf_n_parts(k), 3);
    assert_int_equal(gguf_n_tensors(k), 48);
    for (uint64_t i = 0; i < 48; i++) {
        const gguf_tensor_info *t = gguf_tensor(k, i), *u = gguf_find_tensor(ref, t->name);
        assert_int_equal(t->part, i / 20); /* file order kept, 20 per part */
        assert_int_equal(t->type, u->type);
        assert_memory_equal(t->data, u->data, t->nbytes);
    }
    gguf_close(k);
    gguf_close(ref);
}

/* Parts cut by size hold different tensor counts; --keep-split reproduces them exactly. */
static void test_qz_keep_split_by_size(void **state)
{
    (void)state;
    TU_SHARED(in, "models/stories260K.gguf");
    char part1[600];
    write_split(in, &(gguf_split_opts){.max_bytes = 300000}, part1, sizeof part1);
    qz_params p;
    qz_params_init(&p);
    p.in_path = part1;
    p.out_path = tu_tmp("kept2.gguf");
    p.keep_split = 1;
    qk_err err = {{0}};
    assert_int_equal(qz_quantize(&p, NULL, NULL, &err), QK_OK);
    gguf_ctx *src, *out;
    char kp[600], kprefix[512];
    assert_int_equal(gguf_open(&src, part1, &err), QK_OK);
    snprintf(kprefix, sizeof kprefix, "%.*s", (int)(strlen(p.out_path) - 5), p.out_path);
    gguf_split_path(kp, sizeof kp, kprefix, 0, gguf_n_parts(src));
    assert_int_equal(gguf_open(&out, kp, &err), QK_OK);
    assert_true(gguf_n_parts(src) > 2);
    assert_int_equal(gguf_n_parts(out), gguf_n_parts(src));
    assert_int_equal(gguf_n_tensors(out), gguf_n_tensors(src));
    for (uint64_t i = 0; i < gguf_n_tensors(src); i++) {
        const gguf_tensor_info *a = gguf_tensor(src, i), *b = gguf_tensor(out, i);
        assert_string_equal(a->name, b->name);
        assert_int_equal(a->part, b->part);
    }
    gguf_close(out);
    gguf_close(src);
}

/* ---- mixture of experts: 3-D tensors stream in pieces, each expert with its own weights ---- */

/* A one-layer MoE llama: blk.0.ffn_up_exps (f32) and blk.0.ffn_gate_exps (f16), both
 * [256, 64, 5], blk.0.ffn_norm [256] and output.weight [256, 16] (f32), and a GGUF imatrix with
 * different weights for every expert of both 3-D tensors. Expert m's values are scaled by m + 1.
 * The f32 values (the f16 tensor's after rounding) stay in g_moe for the expectations. */
#define MOE_NE0 256
#define MOE_NE1 64
#define MOE_NX 5
#define MOE_N (MOE_NE0 * MOE_NE1 * MOE_NX)

static struct {
    float up[MOE_N], gate[MOE_N];          /* [expert][row][col] */
    float w_up[MOE_NX * MOE_NE0], w_gate[MOE_NX * MOE_NE0]; /* [expert][col] */
    float norm[MOE_NE0], output[MOE_NE0 * 16];
    char model[512], imatrix[512];
} g_moe;

static const char MOE_UP[] = "blk.0.ffn_up_exps.weight", MOE_GATE[] = "blk.0.ffn_gate_exps.weight";

/* Writes the model and the imatrix (same values on every call); when poison_row >= 0, that row
 * of MOE_GATE (of output.weight when poison_output) holds a NaN. */
static void moe_build(int64_t poison_row, int poison_output)
{
    uint64_t rng = 0x5eed;
    for (int64_t k = 0; k < MOE_N; k++) {
        float scale = (float)(k / (MOE_NE0 * MOE_NE1) + 1);
        g_moe.up[k] = scale * tu_randf(&rng);
        g_moe.gate[k] = q_fp16_to_fp32(q_fp32_to_fp16(scale * tu_randf(&rng)));
    }
    for (int64_t k = 0; k < MOE_NX * MOE_NE0; k++) {
        g_moe.w_up[k] = 0.01f + 5.0f * (tu_randf(&rng) + 1.0f);
        g_moe.w_gate[k] = 0.01f + 5.0f * (tu_randf(&rng) + 1.0f);
    }
    for (int64_t k = 0; k < MOE_NE0; k++)
        g_moe.norm[k] = 1.0f + 0.1f * tu_randf(&rng);
    for (int64_t k = 0; k < MOE_NE0 * 16; k++)
        g_moe.output[k] = tu_randf(&rng);
    uint16_t *gate16 = malloc(MOE_N * sizeof *gate16);
    float *output = malloc(sizeof g_moe.output);
    for (int64_t k = 0; k < MOE_N; k++)
        gate16[k] = q_fp32_to_fp16(g_moe.gate[k]);
    memcpy(output, g_moe.output, sizeof g_moe.output);
    if (poison_row >= 0 && poison_output)
        output[poison_row * MOE_NE0 + 7] = NAN;
    else if (poison_row >= 0)
        gate16[poison_row * MOE_NE0 + 7] = 0x7e00; /* NaN */

    snprintf(g_moe.model, sizeof g_moe.model, "%s", tu_tmp("moe.gguf"));
    gguf_writer *w;
    qk_err err = {{0}};
    assert_int_equal(gguf_writer_open(&w, g_moe.model, NULL, &err), QK_OK);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.block_count", 1);
    gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", 4);
    gguf_writer_set_u32(w, "llama.expert_count", MOE_NX);
    const int64_t ne3[3] = {MOE_NE0, MOE_NE1, MOE_NX}, ne_out[2] = {MOE_NE0, 16};
    const int64_t ne_norm[1] = {MOE_NE0};
    gguf_writer_add_tensor(w, "output.weight", Q_TYPE_F32, 2, ne_out);
    gguf_writer_add_tensor(w, "blk.0.ffn_norm.weight", Q_TYPE_F32, 1, ne_norm);
    gguf_writer_add_tensor(w, MOE_UP, Q_TYPE_F32, 3, ne3);
    gguf_writer_add_tensor(w, MOE_GATE, Q_TYPE_F16, 3, ne3);
    assert_int_equal(gguf_writer_begin_data(w), QK_OK);
    gguf_writer_write_tensor(w, "output.weight", output, sizeof g_moe.output);
    gguf_writer_write_tensor(w, "blk.0.ffn_norm.weight", g_moe.norm, sizeof g_moe.norm);
    gguf_writer_write_tensor(w, MOE_UP, g_moe.up, sizeof g_moe.up);
    gguf_writer_write_tensor(w, MOE_GATE, gate16, MOE_N * sizeof *gate16);
    assert_int_equal(gguf_writer_commit(w, &err), QK_OK);
    free(gate16);
    free(output);

    /* counts of 1: the weights are the in_sum2 values exactly */
    static const float ones[MOE_NX] = {1, 1, 1, 1, 1};
    gt t[] = {{"blk.0.ffn_up_exps.weight.in_sum2", Q_TYPE_F32, MOE_NE0, MOE_NX, g_moe.w_up},
              {"blk.0.ffn_up_exps.weight.counts", Q_TYPE_F32, 1, MOE_NX, ones},
              {"blk.0.ffn_gate_exps.weight.in_sum2", Q_TYPE_F32, MOE_NE0, MOE_NX, g_moe.w_gate},
              {"blk.0.ffn_gate_exps.weight.counts", Q_TYPE_F32, 1, MOE_NX, ones}};
    snprintf(g_moe.imatrix, sizeof g_moe.imatrix, "%s", tu_tmp("moe-imatrix.gguf"));
    write_gguf_imatrix(g_moe.imatrix, 7, t, 4);
}

/* Progress calls seen: done never decreases, bytes grow. */
typedef struct {
    size_t calls, done, total;
    uint64_t bytes;
} moe_progress;

static void on_moe_progress(void *user, size_t done, size_t total, uint64_t bytes_done)
{
    moe_progress *mp = user;
    assert_true(done >= mp->done && done <= total);
    assert_true(bytes_done >= mp->bytes);
    *mp = (moe_progress){mp->calls + 1, done, total, bytes_done};
}

static moe_progress g_moe_progress;

static int run_moe(const char *out, int threads, int64_t chunk_values, qz_report **r, qk_err *err)
{
    qz_params p;
    qz_params_init(&p);
    g_moe_progress = (moe_progress){0};
    p.progress = on_moe_progress;
    p.user = &g_moe_progress;
    p.in_path = g_moe.model;
    p.out_path = out;
    p.ftype = MX_FTYPE_Q4_K_M;
    p.n_threads = threads;
    p.imatrix_path = g_moe.imatrix;
    p.chunk_values = chunk_values;
    p.mix.leave_output = 1;
    return qz_quantize(&p, r, NULL, err);
}

static const qz_tensor_report *report_of(const qz_report *r, const char *name)
{
    for (size_t k = 0; k < r->n; k++)
        if (!strcmp(r->t[k].name, name))
            return &r->t[k];
    fail_msg("report lacks %s", name);
    return NULL;
}

/* Every expert slice equals q_quantize_rows on that slice with that expert's weights, and
 * rel_rmse is sqrt(Σw(x−q)² / Σw·x²) recomputed from the written bytes. */
static void check_moe_tensor(const gguf_ctx *g, const qz_report *r, const char *name,
                             const float *x, const float *w)
{
    const gguf_tensor_info *t = gguf_find_tensor(g, name);
    assert_non_null(t);
    assert_int_equal(t->type, Q_TYPE_Q4_K);
    assert_int_equal(t->n_dims, 3);
    assert_int_equal(t->ne[2], MOE_NX);
    size_t rb = q_row_size(Q_TYPE_Q4_K, MOE_NE0), slice = rb * MOE_NE1;
    assert_int_equal(t->nbytes, slice * MOE_NX);
    uint8_t *want = malloc(slice), *other = malloc(slice);
    qk_err err = {{0}};
    for (int m = 0; m < MOE_NX; m++) {
        const float *xm = x + (size_t)m * MOE_NE0 * MOE_NE1;
        assert_int_equal(q_quantize_rows(Q_TYPE_Q4_K, xm, want, MOE_NE1, MOE_NE0, w + m * MOE_NE0,
                                         1, NULL, &err), QK_OK);
        if (memcmp((const uint8_t *)t->data + m * slice, want, slice))
            fail_msg("%s: expert %d differs from q_quantize_rows with its own weights", name, m);
        /* the check has teeth: another expert's weights give other bytes */
        const float *wo = w + ((m + 1) % MOE_NX) * MOE_NE0;
        assert_int_equal(q_quantize_rows(Q_TYPE_Q4_K, xm, other, MOE_NE1, MOE_NE0, wo, 1, NULL,
                                         &err), QK_OK);
        assert_true(memcmp(want, other, slice) != 0);
    }
    float *y = malloc(MOE_N * sizeof *y);
    assert_int_equal(q_dequantize_rows(Q_TYPE_Q4_K, t->data, y, MOE_NE1 * MOE_NX, MOE_NE0, &err),
                     QK_OK);
    double e = 0, s = 0;
    for (int64_t k = 0; k < MOE_N; k++) {
        double wk = w[(k / (MOE_NE0 * MOE_NE1)) * MOE_NE0 + k % MOE_NE0], d = (double)x[k] - y[k];
        e += wk * d * d;
        s += wk * (double)x[k] * x[k];
    }
    const qz_tensor_report *tr = report_of(r, name);
    assert_int_equal(tr->imatrix, QZ_IMAT_USED);
    tu_assert_near(tr->rel_rmse, sqrt(e / s), 1e-12 * sqrt(e / s));
    free(y);
    free(want);
    free(other);
}

static void test_qz_moe_experts(void **state)
{
    (void)state;
    moe_build(-1, 0);
    const char *out = tu_tmp("moe-q4km.gguf");
    qz_report *r = NULL;
    qk_err err = {{0}};
    if (run_moe(out, 2, 0, &r, &err))
        fail_msg("qz_quantize: %s", err.msg);
    assert_int_equal(r->n_quantized, 2);
    assert_int_equal(r->n_no_imatrix, 0);
    gguf_ctx *g;
    assert_int_equal(gguf_open(&g, out, &err), QK_OK);
    check_moe_tensor(g, r, MOE_UP, g_moe.up, g_moe.w_up);
    check_moe_tensor(g, r, MOE_GATE, g_moe.gate, g_moe.w_gate);
    /* copies (--leave-output-tensor keeps output.weight) come through unchanged */
    const gguf_tensor_info *o = gguf_find_tensor(g, "output.weight"),
                           *n = gguf_find_tensor(g, "blk.0.ffn_norm.weight");
    assert_int_equal(o->type, Q_TYPE_F32);
    assert_memory_equal(o->data, g_moe.output, sizeof g_moe.output);
    assert_memory_equal(n->data, g_moe.norm, sizeof g_moe.norm);
    gguf_close(g);
    qz_report_free(r);
}

/* The same file and report for 1, 2 and 3 threads and pieces of 1, 2, 3 and 50 rows (50 cuts
 * at every 64-row expert boundary) as with the default piece size. */
static void test_qz_moe_chunking(void **state)
{
    (void)state;
    moe_build(-1, 0);
    const char *ref_path = tu_tmp("moe-ref.gguf");
    qz_report *ref = NULL;
    qk_err err = {{0}};
    assert_int_equal(run_moe(ref_path, 1, 0, &ref, &err), QK_OK);
    size_t rn;
    uint8_t *rb = tu_read(ref_path, &rn);
    static const struct {
        int threads;
        int64_t chunk_values;
    } runs[] = {{3, 0}, {1, 1}, {3, 1}, {2, 2 * MOE_NE0 + 7}, {3, 3 * MOE_NE0}, {2, 50 * MOE_NE0},
                {1, 3 * MOE_NE0 - 1}};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        const char *out = tu_tmp("moe-run.gguf");
        qz_report *r = NULL;
        assert_int_equal(run_moe(out, runs[i].threads, runs[i].chunk_values, &r, &err), QK_OK);
        size_t on;
        uint8_t *ob = tu_read(out, &on);
        assert_int_equal(on, rn);
        if (memcmp(ob, rb, rn))
            fail_msg("%d threads, pieces of %lld values: output differs", runs[i].threads,
                     (long long)runs[i].chunk_values);
        assert_int_equal(r->n, ref->n);
        /* progress after every tensor and after all but the last piece of a tensor: by
         * default the two 3-D tensors take a piece per expert, the others one piece */
        assert_int_equal(g_moe_progress.done, r->n);
        assert_int_equal(g_moe_progress.bytes, r->src_bytes);
        assert_true(runs[i].chunk_values == 0 ? g_moe_progress.calls == r->n + 2 * (MOE_NX - 1)
                                              : g_moe_progress.calls > r->n + 2 * (MOE_NX - 1));
        for (size_t k = 0; k < r->n; k++) {
            double a = r->t[k].rel_rmse, b = ref->t[k].rel_rmse;
            if (memcmp(&a, &b, sizeof a)) /* bit for bit */
                fail_msg("%s: rel_rmse %.17g, %.17g with one thread and default pieces",
                         r->t[k].name, a, b);
        }
        free(ob);
        qz_report_free(r);
        unlink(out);
    }
    free(rb);
    qz_report_free(ref);
}

/* A non-finite value is reported with its row in the whole tensor, whatever the piece size, in
 * quantized tensors (expert 3, row 10 → row 202) and copied ones alike. */
static void test_qz_moe_nonfinite_row(void **state)
{
    (void)state;
    const char *out = tu_tmp("moe-nan.gguf");
    qk_err err = {{0}};
    moe_build(3 * MOE_NE1 + 10, 0);
    for (int64_t cv = 0; cv <= 3 * MOE_NE0; cv += 3 * MOE_NE0) {
        int rc = run_moe(out, 3, cv, NULL, &err);
        expect_fail(rc, QK_ERANGE, &err, "tensor 'blk.0.ffn_gate_exps.weight': row 202 holds", out);
    }
    moe_build(5, 1);
    for (int64_t cv = 0; cv <= MOE_NE0; cv += MOE_NE0) {
        int rc = run_moe(out, 2, cv, NULL, &err);
        expect_fail(rc, QK_ERANGE, &err, "tensor 'output.weight': row 5 holds", out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mix_names),
        cmocka_unit_test(test_name_order),
        cmocka_unit_test(test_plan_q4_k_m_llama8b),
        cmocka_unit_test(test_plan_q3_k_m_and_q2_k),
        cmocka_unit_test(test_plan_q4_k_s_q5_k_m_iq4),
        cmocka_unit_test(test_plan_70b),
        cmocka_unit_test(test_plan_moe),
        cmocka_unit_test(test_plan_moe_bad_layer),
        cmocka_unit_test(test_plan_fallbacks),
        cmocka_unit_test(test_plan_no_fallback_error),
        cmocka_unit_test(test_plan_not_quantized),
        cmocka_unit_test(test_plan_tied_embeddings),
        cmocka_unit_test(test_plan_options),
        cmocka_unit_test(test_plan_tensor_types),
        cmocka_unit_test(test_tensor_type_no_equals),
        cmocka_unit_test(test_tensor_type_no_name),
        cmocka_unit_test(test_tensor_type_bad_type),
        cmocka_unit_test(test_tensor_type_bad_regex),
        cmocka_unit_test(test_tensor_type_unsupported),
        cmocka_unit_test(test_plan_keep_order),
        cmocka_unit_test(test_plan_bad_input),
        cmocka_unit_test(test_imatrix_legacy),
        cmocka_unit_test(test_imatrix_legacy_empty),
        cmocka_unit_test(test_imatrix_legacy_zero_entries),
        cmocka_unit_test(test_imatrix_legacy_bad_name_len),
        cmocka_unit_test(test_imatrix_legacy_bad_nval),
        cmocka_unit_test(test_imatrix_legacy_truncated_values),
        cmocka_unit_test(test_imatrix_legacy_truncated_header),
        cmocka_unit_test(test_imatrix_legacy_nan),
        cmocka_unit_test(test_imatrix_legacy_duplicate),
        cmocka_unit_test(test_imatrix_legacy_bad_trailer),
        cmocka_unit_test(test_imatrix_gguf),
        cmocka_unit_test(test_imatrix_gguf_missing_key),
        cmocka_unit_test(test_imatrix_gguf_key_type),
        cmocka_unit_test(test_imatrix_gguf_unpaired),
        cmocka_unit_test(test_imatrix_gguf_bad_counts),
        cmocka_unit_test(test_imatrix_gguf_bad_type),
        cmocka_unit_test(test_imatrix_gguf_nan),
        cmocka_unit_test(test_imatrix_gguf_no_entries),
        cmocka_unit_test(test_imatrix_unreadable),
        cmocka_unit_test(test_imatrix_golden_file),
        cmocka_unit_test(test_stories260k_byte_identical),
        cmocka_unit_test(test_report_rmse),
        cmocka_unit_test(test_stories3m_inputs),
        cmocka_unit_test(test_stories3m_pure),
        cmocka_unit_test(test_stories3m_mix_none),
        cmocka_unit_test(test_stories3m_mix_calib),
        cmocka_unit_test(test_stories3m_bf16_input),
        cmocka_unit_test(test_qz_unknown_type),
        cmocka_unit_test(test_qz_requantize),
        cmocka_unit_test(test_qz_unreadable_input),
        cmocka_unit_test(test_qz_imatrix_wrong_sizes),
        cmocka_unit_test(test_qz_imatrix_wrong_names),
        cmocka_unit_test(test_qz_imatrix_partial),
        cmocka_unit_test(test_qz_nan_weights),
        cmocka_unit_test(test_qz_needs_imatrix),
        cmocka_unit_test(test_qz_output_dir_missing),
        cmocka_unit_test(test_qz_output_is_input),
        cmocka_unit_test(test_qz_imatrix_zero_and_negative),
        cmocka_unit_test(test_qz_split),
        cmocka_unit_test(test_qz_keep_split_by_size),
        cmocka_unit_test(test_qz_moe_experts),
        cmocka_unit_test(test_qz_moe_chunking),
        cmocka_unit_test(test_qz_moe_nonfinite_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
