/* test_quant_kquants.c — the k-quant reference kernels against ggml's golden bytes and floats,
 * plus properties the golden data cannot show: round-trip error, dot products against a double
 * computation, q8_K's fields, finite output on degenerate rows. */
#include "tu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/blocks.h"
#include "../quant/fp16.h"
#include "../quant/kquants.h"
#include "../quant/kquants_search.h"
#include "../quant/types.h"

typedef struct {
    const char *name;
    int type;
    void (*quant_ref)(const float *x, void *y, int64_t k);
    size_t (*quant)(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
    void (*deq)(const void *x, float *y, int64_t k);
    void (*dot)(int n, float *s, const void *x, const void *y);
    int nan_row_imat; /* edge row 5 is NaN in ggml's weighted output (the documented defect) */
    double rms_bound; /* round-trip RMS error / RMS value on Gaussian data */
} kq_type;

/* Bounds on the relative RMS round-trip error for N(0,1) data: an ideal uniform b-bit quantizer
 * over about +-3 sigma gives 6/(2^b - 1)/sqrt(12) (0.58, 0.25, 0.115, 0.056, 0.027 for b = 2..6);
 * the k-quants do better through per-16/32 scales, and the bounds keep some margin. */
static const kq_type TYPES[] = {
    {"q2_K", Q_TYPE_Q2_K, q_quantize_row_q2_K_ref, q_quantize_q2_K, q_dequantize_row_q2_K, q_vec_dot_q2_K_q8_K, 1, 0.58},
    {"q3_K", Q_TYPE_Q3_K, q_quantize_row_q3_K_ref, q_quantize_q3_K, q_dequantize_row_q3_K, q_vec_dot_q3_K_q8_K, 0, 0.25},
    {"q4_K", Q_TYPE_Q4_K, q_quantize_row_q4_K_ref, q_quantize_q4_K, q_dequantize_row_q4_K, q_vec_dot_q4_K_q8_K, 1, 0.115},
    {"q5_K", Q_TYPE_Q5_K, q_quantize_row_q5_K_ref, q_quantize_q5_K, q_dequantize_row_q5_K, q_vec_dot_q5_K_q8_K, 1, 0.056},
    {"q6_K", Q_TYPE_Q6_K, q_quantize_row_q6_K_ref, q_quantize_q6_K, q_dequantize_row_q6_K, q_vec_dot_q6_K_q8_K, 0, 0.027},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

#define EDGE_NAN_ROW 5

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    assert_non_null(p);
    return p;
}

static int all_finite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; ++i)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

static float max_abs(const float *x, int64_t n)
{
    float m = 0;
    for (int64_t i = 0; i < n; ++i)
        m = fmaxf(m, fabsf(x[i]));
    return m;
}

/* ---- golden data ---- */

typedef struct {
    const kq_type *t;
    const char *gcase;
    int64_t nrows, n_per_row;
} golden_case;

static float *read_f32(const char *rel, size_t expect_floats)
{
    TU_SHARED(path, rel);
    size_t size;
    float *p = tu_read(path, &size);
    assert_int_equal(size, expect_floats * sizeof(float));
    return p;
}

static void *read_bytes(const char *rel, size_t expect)
{
    TU_SHARED(path, rel);
    size_t size;
    void *p = tu_read(path, &size);
    assert_int_equal(size, expect);
    return p;
}

static int is_exception_row(const golden_case *gc, int imat, int64_t row)
{
    return imat && gc->t->nan_row_imat && strcmp(gc->gcase, "edge") == 0 && row == EDGE_NAN_ROW;
}

/* The documented exception: ggml's row is NaN; qkit's must be finite and no further from the input
 * than the input's own largest magnitude. */
static void check_exception_row(const golden_case *gc, const uint8_t *want, const uint8_t *got,
                                const float *x, size_t row_size)
{
    const int64_t n = gc->n_per_row;
    float *deq = xmalloc((size_t)n * sizeof(float));
    gc->t->deq(want, deq, n);
    assert_false(all_finite(deq, n)); /* the exception is real, not a skipped good row */
    gc->t->deq(got, deq, n);
    assert_true(all_finite(deq, n));
    const float bound = max_abs(x, n);
    assert_true(bound > 0 && bound < 1e-29f);
    for (int64_t i = 0; i < n; ++i)
        assert_true(fabsf(deq[i] - x[i]) <= bound);
    assert_memory_not_equal(want, got, row_size);
    free(deq);
}

static void golden_one(const golden_case *gc, int imat)
{
    char rel[256];
    const int64_t n = gc->nrows * gc->n_per_row;
    const size_t row_size = q_row_size(gc->t->type, gc->n_per_row);
    const size_t bytes = row_size * (size_t)gc->nrows;
    assert_true(row_size > 0);

    snprintf(rel, sizeof rel, "golden/quant/%s.input.f32", gc->gcase);
    float *x = read_f32(rel, (size_t)n);
    snprintf(rel, sizeof rel, "golden/quant/%s.imatrix.f32", gc->gcase);
    float *w = read_f32(rel, (size_t)gc->n_per_row);
    snprintf(rel, sizeof rel, "golden/quant/%s.%s%s.bin", gc->gcase, gc->t->name, imat ? ".imat" : "");
    uint8_t *want = read_bytes(rel, bytes);
    snprintf(rel, sizeof rel, "golden/quant/%s.%s%s.deq.f32", gc->gcase, gc->t->name, imat ? ".imat" : "");
    float *want_deq = read_f32(rel, (size_t)n);

    uint8_t *got = xmalloc(bytes);
    memset(got, 0xA5, bytes);
    assert_int_equal(gc->t->quant(x, got, gc->nrows, gc->n_per_row, imat ? w : NULL), bytes);
    for (int64_t r = 0; r < gc->nrows; ++r) {
        const uint8_t *wr = want + (size_t)r * row_size, *gr = got + (size_t)r * row_size;
        if (is_exception_row(gc, imat, r)) {
            check_exception_row(gc, wr, gr, x + r * gc->n_per_row, row_size);
            continue;
        }
        if (memcmp(wr, gr, row_size) != 0)
            fail_msg("%s %s%s: row %lld differs from ggml's bytes", gc->gcase, gc->t->name,
                     imat ? " imat" : "", (long long)r);
    }

    /* ggml's quantize_row_<t>_ref over the whole matrix as one row gives the unweighted bytes. */
    if (!imat) {
        memset(got, 0x5A, bytes);
        gc->t->quant_ref(x, got, n);
        assert_memory_equal(want, got, bytes);
    }

    /* Dequantizing ggml's bytes gives ggml's floats, bit for bit (the NaN row included). */
    float *deq = xmalloc((size_t)n * sizeof(float));
    gc->t->deq(want, deq, n);
    for (int64_t r = 0; r < gc->nrows; ++r)
        if (memcmp(deq + r * gc->n_per_row, want_deq + r * gc->n_per_row,
                   (size_t)gc->n_per_row * sizeof(float)) != 0)
            fail_msg("%s %s%s: dequantized row %lld differs from ggml's", gc->gcase, gc->t->name,
                     imat ? " imat" : "", (long long)r);

    free(deq);
    free(got);
    free(want_deq);
    free(want);
    free(w);
    free(x);
}

static void test_golden(void **state)
{
    const golden_case *gc = *state;
    golden_one(gc, 0);
    golden_one(gc, 1);
}

/* ---- round trip on random data ---- */

static float gauss(uint64_t *rng)
{
    /* Box-Muller on two uniforms in (0, 1]. */
    const double u1 = ((tu_rand(rng) >> 11) + 1) * (1.0 / 9007199254740992.0);
    const double u2 = ((tu_rand(rng) >> 11) + 1) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

static void fill_gauss(float *x, int64_t n, float scale, uint64_t *rng)
{
    for (int64_t i = 0; i < n; ++i)
        x[i] = scale * gauss(rng);
}

static double rel_rms_error(const float *x, const float *y, int64_t n)
{
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; ++i) {
        e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        s += (double)x[i] * x[i];
    }
    return sqrt(e / s);
}

static void test_round_trip(void **state)
{
    const kq_type *t = *state;
    const int64_t nrows = 8, n_per_row = 1024, n = nrows * n_per_row;
    uint64_t rng = 0x1234567 + (uint64_t)t->type;
    float *x = xmalloc((size_t)n * sizeof(float)), *y = xmalloc((size_t)n * sizeof(float));
    float *w = xmalloc((size_t)n_per_row * sizeof(float));
    void *q = xmalloc(q_row_size(t->type, n_per_row) * (size_t)nrows);
    fill_gauss(x, n, 0.02f, &rng);
    for (int64_t i = 0; i < n_per_row; ++i)
        w[i] = 0.1f + (float)(tu_rand(&rng) % 1000) / 100.f;
    for (int imat = 0; imat < 2; ++imat) {
        assert_int_equal(t->quant(x, q, nrows, n_per_row, imat ? w : NULL),
                         q_row_size(t->type, n_per_row) * (size_t)nrows);
        t->deq(q, y, n);
        const double err = rel_rms_error(x, y, n);
        print_message("%s%s: relative RMS error %.4f (bound %.3f)\n", t->name, imat ? " imat" : "",
                      err, t->rms_bound);
        assert_true(err < t->rms_bound);
        assert_true(err > t->rms_bound / 20); /* a lossy format: an exact result means a bug here */
    }
    free(q);
    free(w);
    free(y);
    free(x);
}

/* ---- dot products ---- */

static void test_vec_dot(void **state)
{
    const kq_type *t = *state;
    uint64_t rng = 0xD07 + (uint64_t)t->type;
    for (int nb = 1; nb <= 16; nb *= 4) {
        const int n = nb * Q_QK_K;
        float *x = xmalloc((size_t)n * sizeof(float)), *a = xmalloc((size_t)n * sizeof(float));
        float *xd = xmalloc((size_t)n * sizeof(float)), *ad = xmalloc((size_t)n * sizeof(float));
        void *qx = xmalloc(q_row_size(t->type, n));
        block_q8_K *qa = xmalloc((size_t)nb * sizeof(block_q8_K));
        fill_gauss(x, n, 0.05f, &rng);
        for (int i = 0; i < n; ++i) /* activations with an offset, so the min terms matter */
            a[i] = 0.5f + 2.0f * gauss(&rng);
        t->quant_ref(x, qx, n);
        q_quantize_row_q8_K_ref(a, qa, n);
        t->deq(qx, xd, n);
        q_dequantize_row_q8_K(qa, ad, n);
        double exact = 0, mag = 0;
        for (int i = 0; i < n; ++i) {
            exact += (double)xd[i] * ad[i];
            mag += fabs((double)xd[i] * ad[i]);
        }
        float s = NAN;
        t->dot(n, &s, qx, qa);
        tu_assert_near(s, exact, 1e-5 * mag);
        free(qa);
        free(qx);
        free(ad);
        free(xd);
        free(a);
        free(x);
    }
}

/* ---- q8_K ---- */

static void check_q8_K_block(const float *x, const block_q8_K *b)
{
    const float amax = max_abs(x, Q_QK_K);
    int imax = 0;
    while (fabsf(x[imax]) != amax)
        ++imax;
    /* d = -(signed max)/127, so the largest magnitude lands on level -127. */
    tu_assert_near(b->d, -x[imax] / 127.0, fabs(x[imax]) * 1e-6);
    assert_int_equal(b->qs[imax], -127);
    for (int g = 0; g < Q_QK_K / 16; ++g) {
        int sum = 0;
        for (int l = 0; l < 16; ++l) {
            const int j = 16 * g + l;
            assert_true(b->qs[j] >= -127 && b->qs[j] <= 127);
            tu_assert_near(b->qs[j], x[j] / b->d, 0.5 + 1e-3);
            sum += b->qs[j];
        }
        assert_int_equal(b->bsums[g], sum);
    }
}

static void test_q8_K_fields(void **state)
{
    (void)state;
    enum { NB = 4 };
    uint64_t rng = 88;
    float x[NB * Q_QK_K], y[NB * Q_QK_K];
    block_q8_K q[NB];
    fill_gauss(x, NB * Q_QK_K, 3.0f, &rng);
    x[17] = 40.0f;          /* block 0: positive maximum */
    x[Q_QK_K + 200] = -50.f; /* block 1: negative maximum */
    assert_int_equal(q_quantize_q8_K(x, q, 1, NB * Q_QK_K, NULL), NB * sizeof(block_q8_K));
    for (int i = 0; i < NB; ++i)
        check_q8_K_block(x + i * Q_QK_K, &q[i]);
    q_dequantize_row_q8_K(q, y, NB * Q_QK_K);
    for (int i = 0; i < NB * Q_QK_K; ++i)
        assert_true(y[i] == q[i / Q_QK_K].d * q[i / Q_QK_K].qs[i % Q_QK_K]);
    for (int i = 0; i < NB * Q_QK_K; ++i)
        tu_assert_near(y[i], x[i], fabsf(q[i / Q_QK_K].d) * 0.5001);
}

static void test_q8_K_zero_block(void **state)
{
    (void)state;
    float x[Q_QK_K] = {0};
    block_q8_K q, zero;
    memset(&q, 0x7B, sizeof q);
    memset(&zero, 0, sizeof zero);
    q_quantize_row_q8_K_ref(x, &q, Q_QK_K);
    assert_memory_equal(&q, &zero, sizeof q);
}

/* ---- degenerate rows: finite output everywhere ---- */

enum { DEG_ROWS = 10 };

static void fill_degenerate(float *x, uint64_t *rng)
{
    const int64_t n = Q_QK_K;
    for (int r = 0; r < DEG_ROWS; ++r) {
        float *row = x + r * n;
        for (int64_t i = 0; i < n; ++i) {
            const float u = tu_randf(rng);
            switch (r) {
            case 0: row[i] = 0; break;
            case 1: row[i] = u * 1e-30f; break;                /* squares underflow */
            case 2: row[i] = u * 1e-40f; break;                /* subnormal */
            case 3: row[i] = u * 2e-15f; break;                /* around the all-zero threshold */
            case 4: row[i] = u < 0 ? -60000.f : 60000.f; break; /* near the fp16 limit */
            case 5: row[i] = u * 60000.f; break;
            case 6: row[i] = 3.25f; break;                     /* constant */
            case 7: row[i] = i == 77 ? -1e4f : u * 1e-3f; break; /* one spike */
            case 8: row[i] = i % 32 < 16 ? 0 : u; break;       /* zero sub-blocks */
            default: row[i] = i < 128 ? u * 1e-30f : u; break; /* tiny and normal halves */
            }
        }
    }
}

static void test_degenerate_rows(void **state)
{
    const kq_type *t = *state;
    const int64_t n = Q_QK_K;
    uint64_t rng = 4242;
    float x[DEG_ROWS * Q_QK_K], y[DEG_ROWS * Q_QK_K], w[Q_QK_K];
    uint8_t q[DEG_ROWS * sizeof(block_q6_K) * 2];
    assert_true(sizeof q >= q_row_size(t->type, n) * DEG_ROWS);
    fill_degenerate(x, &rng);
    /* unweighted; ordinary weights; weights that are zero on half the columns; all zero */
    for (int mode = 0; mode < 4; ++mode) {
        for (int64_t i = 0; i < n; ++i)
            w[i] = mode == 1 ? 1 + (float)(i % 7) : mode == 2 ? (float)(i % 2) : 0;
        t->quant(x, q, DEG_ROWS, n, mode ? w : NULL);
        t->deq(q, y, DEG_ROWS * n);
        for (int r = 0; r < DEG_ROWS; ++r) {
            const float *xr = x + r * n, *yr = y + r * n;
            if (!all_finite(yr, n))
                fail_msg("%s mode %d: row %d is not finite", t->name, mode, r);
            /* No value lands further from its input than twice the row's largest magnitude. */
            const float bound = 2 * max_abs(xr, n);
            for (int64_t i = 0; i < n; ++i)
                if (!(fabsf(yr[i] - xr[i]) <= bound))
                    fail_msg("%s mode %d: row %d value %lld: %g for %g", t->name, mode, r,
                             (long long)i, yr[i], xr[i]);
        }
        /* An all-zero row decodes to exact zeros. */
        for (int64_t i = 0; i < n; ++i)
            assert_true(y[i] == 0);
    }
}

/* ---- the search helpers ---- */

/* With all weights zero, ggml's make_qp_quants returns 0/0; qkit returns the unweighted scale,
 * i.e. the levels round(nmax * x / max) with scale max / nmax. */
static void test_qp_zero_weights(void **state)
{
    (void)state;
    const float x[8] = {0.5f, 1.0f, 0.25f, 0.0f, 0.75f, 2.0f, 1.5f, 0.1f};
    const float w[8] = {0};
    uint8_t L[8];
    const float s = q_make_qp_quants(8, 15, x, L, w);
    tu_assert_near(s, 2.0 / 15, 1e-7);
    for (int i = 0; i < 8; ++i)
        assert_int_equal(L[i], (int)lround(15 * x[i] / 2.0));
}

/* With weights, make_qp_quants ends on the least-squares scale of its levels. */
static void test_qp_least_squares(void **state)
{
    (void)state;
    const float x[8] = {0.5f, 1.0f, 0.25f, 0.0f, 0.75f, 2.0f, 1.5f, 0.1f};
    const float w[8] = {1, 2, 1, 1, 3, 1, 2, 1};
    uint8_t L[8];
    const float s = q_make_qp_quants(8, 15, x, L, w);
    double sxl = 0, sll = 0;
    for (int i = 0; i < 8; ++i) {
        assert_true(L[i] <= 15);
        sxl += (double)w[i] * x[i] * L[i];
        sll += (double)w[i] * L[i] * L[i];
    }
    tu_assert_near(s, sxl / sll, 1e-6);
}

static void test_nearest_int(void **state)
{
    (void)state;
    assert_int_equal(q_nearest_int(2.5f), 2); /* ties to even */
    assert_int_equal(q_nearest_int(3.5f), 4);
    assert_int_equal(q_nearest_int(-2.5f), -2);
    assert_int_equal(q_nearest_int(-0.4f), 0);
    assert_int_equal(q_nearest_int(-127.49f), -127);
    assert_int_equal(q_nearest_int(4194303.f), 4194303);
}

int main(void)
{
    static const char *const CASES[] = {"gauss", "edge", "real"};
    static const int64_t SHAPES[][2] = {{32, 512}, {16, 256}, {64, 256}};
    static golden_case gcs[N_TYPES * 3];
    static char names[N_TYPES * 8][64];
    struct CMUnitTest tests[N_TYPES * 8];
    size_t nt = 0, nn = 0;

    for (size_t t = 0; t < N_TYPES; ++t) {
        for (int c = 0; c < 3; ++c) {
            golden_case *gc = &gcs[t * 3 + (size_t)c];
            *gc = (golden_case){&TYPES[t], CASES[c], SHAPES[c][0], SHAPES[c][1]};
            snprintf(names[nn], sizeof names[nn], "golden_%s_%s", TYPES[t].name, CASES[c]);
            tests[nt++] = (struct CMUnitTest){names[nn++], test_golden, NULL, NULL, gc};
        }
        snprintf(names[nn], sizeof names[nn], "round_trip_%s", TYPES[t].name);
        tests[nt++] = (struct CMUnitTest){names[nn++], test_round_trip, NULL, NULL, (void *)&TYPES[t]};
        snprintf(names[nn], sizeof names[nn], "vec_dot_%s_q8_K", TYPES[t].name);
        tests[nt++] = (struct CMUnitTest){names[nn++], test_vec_dot, NULL, NULL, (void *)&TYPES[t]};
        snprintf(names[nn], sizeof names[nn], "degenerate_rows_%s", TYPES[t].name);
        tests[nt++] = (struct CMUnitTest){names[nn++], test_degenerate_rows, NULL, NULL, (void *)&TYPES[t]};
    }
    const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_q8_K_fields),
        cmocka_unit_test(test_q8_K_zero_block),
        cmocka_unit_test(test_qp_zero_weights),
        cmocka_unit_test(test_qp_least_squares),
        cmocka_unit_test(test_nearest_int),
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; ++i)
        tests[nt++] = fixed[i];
    return _cmocka_run_group_tests("quant_kquants", tests, nt, NULL, NULL);
}
