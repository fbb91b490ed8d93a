/* test_awq.c — the 4-bit checkpoint layouts and AutoAWQ's quantizer against worked examples taken
 * from the formats' own sources (AutoAWQ awq/utils/packing_utils.py and gemm.py: AWQ_ORDER
 * [0,2,4,6,1,3,5,7]; compressed-tensors pack_quantized: q + 8 in little-endian nibbles), then
 * pack → row decode round trips on random data, including zero points packed along the output
 * dimension; and AWQ's folding on a mixture of experts (storiesMoE) keeping the model's function. */
#include "tu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../calib/awq.h"
#include "../convert/eval_model.h"
#include "../formats/awq.h"
#include "../quant/types.h"

/* One row of eight output columns: q = [0,3,5,6,8,12,15,8] packs to 0x8C63F850 (AutoAWQ order). */
static void test_awq_word(void **state)
{
    (void)state;
    const uint8_t qcol[8] = {0, 3, 5, 6, 8, 12, 15, 8};
    uint8_t q[8], z[8];
    for (int o = 0; o < 8; o++)
        q[o] = qcol[o], z[o] = 0; /* [out = 8][in = 1], one group of 1 */
    int32_t qw, qz;
    awq_gemm_pack(q, z, 8, 1, 1, &qw, &qz);
    assert_int_equal((uint32_t)qw, 0x8C63F850u);
    const uint8_t seq[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    awq_gemm_pack(seq, z, 8, 1, 1, &qw, &qz);
    assert_int_equal((uint32_t)qw, 0x86427531u);
}

/* compressed-tensors: signed q [-8,-7,-1,0,1,2,6,7] (stored + 8) packs to 0xFEA98710; zero points
 * [-8,-3,0,2,5,7,-1,1] of eight rows pack along the output dimension to 0x97FDA850. */
static void test_ct_words(void **state)
{
    (void)state;
    const int sq[8] = {-8, -7, -1, 0, 1, 2, 6, 7}, szp[8] = {-8, -3, 0, 2, 5, 7, -1, 1};
    uint8_t q[8 * 8], z[8];
    memset(q, 8, sizeof q);
    for (int i = 0; i < 8; i++)
        q[i] = (uint8_t)(sq[i] + 8); /* row 0, in = 8 */
    for (int o = 0; o < 8; o++)
        z[o] = (uint8_t)(szp[o] + 8); /* one group of 8 */
    int32_t packed[8], zp[1];
    ct_pack(q, z, 8, 8, 8, packed, zp);
    assert_int_equal((uint32_t)packed[0], 0xFEA98710u);
    assert_int_equal((uint32_t)zp[0], 0x97FDA850u);
}

/* AutoAWQ's pseudo_quantize_tensor on the documented group: s = f16(0.1), z = 5,
 * q = [0,3,5,6,8,12,15,8]. */
static void test_quantize_example(void **state)
{
    (void)state;
    const float x[8] = {-0.5f, -0.2f, 0.0f, 0.1f, 0.3f, 0.7f, 1.0f, 0.26f};
    uint8_t q[8], z;
    float s, deq[8];
    awq_quantize_row(x, 8, 8, 4, q, &s, &z, deq);
    const uint8_t want[8] = {0, 3, 5, 6, 8, 12, 15, 8};
    assert_memory_equal(q, want, 8);
    assert_int_equal(z, 5);
    assert_true(s == 0.0999755859375f); /* 0.1 rounded to f16 */
    for (int i = 0; i < 8; i++)
        assert_true(deq[i] == (float)(q[i] - 5) * s);
}

/* Random linears: both layouts decode, row by row, to (q − z) · s exactly. */
static void test_roundtrips(void **state)
{
    (void)state;
    const int64_t out = 24, in = 64, g = 16, ng = in / g;
    uint8_t *q = malloc((size_t)(out * in)), *z = malloc((size_t)(out * ng));
    float *s_og = malloc((size_t)(out * ng) * sizeof(float)), *s_go = malloc((size_t)(out * ng) * sizeof(float));
    int32_t *qw = malloc((size_t)(out * in / 8) * 4), *qz = malloc((size_t)(out * ng / 8) * 4);
    int32_t *wp = malloc((size_t)(out * in / 8) * 4), *zp = malloc((size_t)((out + 7) / 8 * ng) * 4);
    float row[64];
    uint64_t seed = 11;
    for (int64_t i = 0; i < out * in; i++)
        q[i] = (uint8_t)(tu_rand(&seed) >> 60);
    for (int64_t i = 0; i < out * ng; i++) {
        z[i] = (uint8_t)(tu_rand(&seed) >> 60);
        s_og[i] = (float)((tu_rand(&seed) >> 40) + 1) * 1e-7f;
    }
    for (int64_t o = 0; o < out; o++)
        for (int64_t gi = 0; gi < ng; gi++)
            s_go[gi * out + o] = s_og[o * ng + gi];
    awq_gemm_pack(q, z, out, in, g, qw, qz);
    ct_pack(q, z, out, in, g, wp, zp);
    for (int64_t o = 0; o < out; o++) {
        awq_gemm_row(qw, qz, s_go, out, in, g, o, row);
        for (int64_t i = 0; i < in; i++)
            assert_true(row[i] == (float)(q[o * in + i] - z[o * ng + i / g]) * s_og[o * ng + i / g]);
        ct_row(wp, zp, s_og, out, in, g, o, row);
        for (int64_t i = 0; i < in; i++)
            assert_true(row[i] == (float)(q[o * in + i] - z[o * ng + i / g]) * s_og[o * ng + i / g]);
    }
    free(q), free(z), free(s_og), free(s_go), free(qw), free(qz), free(wp), free(zp);
}

/* A mixture of experts: AWQ scales every expert's gate/up together (with a shared expert's; the
 * router's columns folded alongside) and each expert's down on its own; the folded, unclipped
 * weights put back unquantized compute the model's function, routing included. dir: the model's
 * folder, n_expert its experts. */
static void moe_fold_keeps_function(const char *dir, int n_expert)
{
    cv_eval_model em = {0};
    qk_err err = {{0}};
    assert_int_equal(cv_eval_open(&em, dir, &err), QK_OK);
    eng_model *m = &em.m;
    assert_int_equal(m->n_expert, n_expert);
    enum { N_SEQ = 4, L = 64 };
    int32_t tok[N_SEQ * L];
    uint64_t seed = 5;
    for (int i = 0; i < N_SEQ * L; i++)
        tok[i] = i % L == 0 && m->bos_id >= 0 ? m->bos_id : 3 + (int32_t)(tu_rand(&seed) % (uint64_t)(m->n_vocab - 3));
    const size_t nl = (size_t)L * (size_t)m->n_vocab;
    float *ref = malloc(nl * sizeof *ref), *got = malloc(nl * sizeof *got);
    eng_ctx *ctx = NULL;
    assert_int_equal(eng_ctx_create(&ctx, m, L, &err), QK_OK);
    assert_int_equal(eng_forward(ctx, tok, L, ref, &err), QK_OK);
    eng_ctx_free(ctx);

    awq_opts o = {.bits = 4, .group = 128, .grid = 10, .clip = 0, .duo = 1};
    awq_run *run = NULL;
    assert_int_equal(awq_run_model(&run, m, tok, N_SEQ, L, &o, &err), QK_OK);
    /* every expert's down has its own scales, gate/up one set for all, the router is folded only */
    int64_t n_mat = 0, ne0, ne1;
    const float *sd = awq_input_scale(run, "blk.1.ffn_down_exps.weight", &n_mat);
    assert_non_null(sd);
    assert_int_equal(n_mat, n_expert);
    assert_true(memcmp(sd, sd + m->n_ff_exp, (size_t)m->n_ff_exp * sizeof *sd) != 0);
    const float *sg = awq_input_scale(run, "blk.1.ffn_gate_exps.weight", &n_mat);
    assert_non_null(sg);
    assert_int_equal(n_mat, n_expert);
    assert_memory_equal(sg, sg + (n_expert - 1) * m->n_embd, (size_t)m->n_embd * sizeof *sg);
    if (m->layers[1].w[GA_T_FFN_GATE_SHEXP].data) { /* the shared expert reads the same input */
        const float *ss = awq_input_scale(run, "blk.1.ffn_up_shexp.weight", &n_mat);
        assert_non_null(ss);
        assert_int_equal(n_mat, 1);
        assert_memory_equal(ss, sg, (size_t)m->n_embd * sizeof *sg);
        assert_non_null(awq_input_scale(run, "blk.1.ffn_down_shexp.weight", NULL));
    }
    assert_non_null(awq_weight(run, "blk.1.ffn_gate_inp.weight", &ne0, &ne1));
    assert_true(awq_weight_dense(run, "blk.1.ffn_gate_inp.weight"));
    assert_false(awq_weight_dense(run, "blk.1.ffn_up_exps.weight"));
    assert_non_null(awq_weight(run, "blk.1.ffn_up_exps.weight", &ne0, &ne1));
    assert_int_equal(ne1, (int64_t)n_expert * m->n_ff_exp);
    int experts = 0, scaled = 0;
    for (size_t i = 0; i < awq_n_groups(run); i++) {
        experts += awq_group(run, i)->expert >= 0;
        scaled += awq_group(run, i)->alpha > 0;
    }
    assert_int_equal(experts, m->n_layer * n_expert); /* random tokens reach every expert */
    assert_true(scaled > experts / 2);

    /* the processed weights, unquantized, back into the engine */
    for (int l = 0; l < m->n_layer; l++)
        for (int k = 0; k < GA_T_COUNT; k++) {
            eng_tensor *t = &m->layers[l].w[k];
            const float *w = t->data ? awq_weight(run, t->name, &ne0, &ne1) : NULL;
            if (w) {
                t->type = Q_TYPE_F32;
                t->data = w;
            }
        }
    assert_int_equal(eng_ctx_create(&ctx, m, L, &err), QK_OK);
    assert_int_equal(eng_forward(ctx, tok, L, got, &err), QK_OK);
    eng_ctx_free(ctx);
    double worst = 0;
    for (size_t i = 0; i < nl; i++)
        worst = fabs((double)got[i] - ref[i]) > worst ? fabs((double)got[i] - ref[i]) : worst;
    print_message("%s folded: largest logit change %.3g\n", dir, worst);
    assert_true(worst < 1e-3);
    free(ref), free(got);
    awq_run_free(run);
    cv_eval_close(&em);
}

/* storiesMoE: a trained Qwen3-MoE, 8 experts, top-2 softmax routing. */
static void test_moe_fold_keeps_function(void **state)
{
    (void)state;
    TU_SHARED(dir, "models/storiesMoE");
    moe_fold_keeps_function(dir, 8);
}

/* llama4-tiny: 4 experts and a shared expert, sigmoid routing that weights the experts' input. */
static void test_moe_shared_fold_keeps_function(void **state)
{
    (void)state;
    TU_SHARED(dir, "models/llama4-tiny");
    moe_fold_keeps_function(dir, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_awq_word),
        cmocka_unit_test(test_ct_words),
        cmocka_unit_test(test_quantize_example),
        cmocka_unit_test(test_roundtrips),
        cmocka_unit_test(test_moe_fold_keeps_function),
        cmocka_unit_test(test_moe_shared_fold_keeps_function),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
