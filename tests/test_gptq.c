/* test_gptq.c — GPTQ rounding in `qkit awq` (calib/awq.c) on a real trained model (stories3M):
 * its codes are AutoAWQ's grid (each value exactly (code − zero) · scale with an f16 scale, codes
 * within 4 bits), the same bits for 1 and 2 threads, and the model it yields is closer to the
 * unquantized one than round-to-nearest's on the same tokens (GPTQ minimizes exactly that kind of
 * output error; an error in the Hessian's factorization would lose to plain rounding). */
#include "tu.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../calib/awq.h"
#include "../convert/eval_model.h"
#include "../quant/fp16.h"
#include "../quant/types.h"

enum { N_SEQ = 4, L = 128 };

static const char *const LINEARS[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

/* Tokens from the calibration text's byte values folded into the vocabulary: real enough to give
 * the activations structure, independent of the tokenizer. */
static void tokens(const eng_model *m, int32_t *tok)
{
    uint64_t seed = 17;
    for (int i = 0; i < N_SEQ * L; i++)
        tok[i] = i % L == 0 && m->bos_id >= 0 ? m->bos_id : 3 + (int32_t)(tu_rand(&seed) % 200);
}

/* Mean squared logit error against ref, on tok, of the model with the run's weights as the
 * checkpoint holds them: GPTQ's values, or the others rounded to nearest as the writer does. */
static double logit_mse(eng_model *m, const awq_run *run, const int32_t *tok, const float *ref)
{
    int64_t ne0, ne1;
    float *deq[64] = {NULL};
    int n_deq = 0;
    for (int l = 0; l < m->n_layer; l++)
        for (int k = 0; k < GA_T_COUNT; k++) {
            eng_tensor *t = &m->layers[l].w[k];
            const float *w = t->data ? awq_weight(run, t->name, &ne0, &ne1) : NULL;
            const uint8_t *q, *z;
            const float *sc;
            if (w && !awq_codes(run, t->name, &q, &sc, &z) && n_deq < 64) {
                float *d = deq[n_deq++] = malloc((size_t)(ne0 * ne1) * sizeof *d);
                for (int64_t o = 0; o < ne1; o++)
                    awq_quantize_row(w + o * ne0, ne0, 128, 4, NULL, NULL, NULL, d + o * ne0);
                w = d;
            }
            if (w) {
                t->type = Q_TYPE_F32;
                t->data = w;
            }
        }
    const size_t nl = (size_t)L * (size_t)m->n_vocab;
    float *got = malloc(nl * sizeof *got);
    eng_ctx *ctx = NULL;
    qk_err err = {{0}};
    assert_int_equal(eng_ctx_create(&ctx, m, L, &err), QK_OK);
    double e = 0;
    for (int s = 0; s < N_SEQ; s++) {
        assert_int_equal(eng_forward(ctx, tok + s * L, L, got, &err), QK_OK);
        for (size_t i = 0; i < nl; i++)
            e += ((double)got[i] - ref[s * nl + i]) * ((double)got[i] - ref[s * nl + i]);
    }
    eng_ctx_free(ctx);
    free(got);
    for (int i = 0; i < n_deq; i++)
        free(deq[i]);
    return e / (double)(nl * N_SEQ);
}

/* awq_run_model on a fresh copy of stories3M; *mse the logit error of its result. */
static awq_run *run_awq(const char *dir, int gptq, int rtn, int threads, double *mse)
{
    cv_eval_model em = {0};
    qk_err err = {{0}};
    assert_int_equal(cv_eval_open(&em, dir, &err), QK_OK);
    eng_model *m = &em.m;
    int32_t tok[N_SEQ * L];
    tokens(m, tok);
    const size_t nl = (size_t)L * (size_t)m->n_vocab;
    float *ref = malloc(nl * N_SEQ * sizeof *ref);
    eng_ctx *ctx = NULL;
    assert_int_equal(eng_ctx_create(&ctx, m, L, &err), QK_OK);
    for (int s = 0; s < N_SEQ; s++)
        assert_int_equal(eng_forward(ctx, tok + s * L, L, ref + s * nl, &err), QK_OK);
    eng_ctx_free(ctx);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    awq_opts o = {.bits = 4, .group = 128, .grid = 4, .clip = 1, .duo = 1, .gptq = gptq, .rtn = rtn};
    awq_run *run = NULL;
    assert_int_equal(awq_run_model(&run, m, tok, N_SEQ, L, &o, &err), QK_OK);
    omp_set_num_threads(saved);
    if (mse)
        *mse = logit_mse(m, run, tok, ref);
    free(ref);
    cv_eval_close(&em); /* the run keeps its own copies of every weight it hands out */
    return run;
}

static void test_gptq_grid_threads_quality(void **state)
{
    (void)state;
    TU_SHARED(dir, "models/stories3M");
    double e_gptq = 0, e_rtn = 0;
    awq_run *a = run_awq(dir, 1, 0, 2, &e_gptq), *b = run_awq(dir, 1, 0, 1, NULL);
    awq_run *rtn = run_awq(dir, 0, 1, 2, &e_rtn);
    int checked = 0;
    for (int l = 0; l < 4; l++)
        for (size_t k = 0; k < sizeof LINEARS / sizeof LINEARS[0]; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, LINEARS[k]);
            const uint8_t *q, *z, *q1, *z1;
            const float *sc, *sc1;
            int64_t ne0, ne1, ne0b, ne1b;
            assert_true(awq_codes(a, name, &q, &sc, &z));
            assert_true(awq_codes(b, name, &q1, &sc1, &z1));
            const float *w = awq_weight(a, name, &ne0, &ne1), *w1 = awq_weight(b, name, &ne0b, &ne1b);
            assert_non_null(w);
            assert_int_equal(ne0, ne0b);
            const int64_t ng = ne0 / 128;
            assert_memory_equal(w, w1, (size_t)(ne0 * ne1) * sizeof *w);
            assert_memory_equal(q, q1, (size_t)(ne0 * ne1));
            assert_memory_equal(sc, sc1, (size_t)(ne1 * ng) * sizeof *sc);
            assert_memory_equal(z, z1, (size_t)(ne1 * ng));
            for (int64_t o = 0; o < ne1; o++)
                for (int64_t i = 0; i < ne0; i++) {
                    const float s = sc[o * ng + i / 128];
                    assert_true(q[o * ne0 + i] <= 15 && z[o * ng + i / 128] <= 15);
                    assert_true(q_fp16_to_fp32(q_fp32_to_fp16(s)) == s && s > 0);
                    assert_true(w[o * ne0 + i] == (float)(q[o * ne0 + i] - z[o * ng + i / 128]) * s);
                }
            checked++;
        }
    assert_int_equal(checked, 28);
    /* round-to-nearest has no codes of its own */
    const uint8_t *q;
    const float *sc;
    const uint8_t *z;
    assert_false(awq_codes(rtn, "blk.0.ffn_down.weight", &q, &sc, &z));
    print_message("logit MSE: GPTQ %.6g, round-to-nearest %.6g\n", e_gptq, e_rtn);
    assert_true(e_gptq < 0.8 * e_rtn);
    awq_run_free(a), awq_run_free(b), awq_run_free(rtn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gptq_grid_threads_quality),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
