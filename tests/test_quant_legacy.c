/* test_quant_legacy.c — q4_0 q4_1 q5_0 q5_1 q8_0 q8_1 iq4_nl iq4_xs f16 bf16 reference kernels:
 * golden bytes and floats from ggml (exact), error bounds derived from each format, dot products
 * against double-precision dots of the dequantized operands, IEEE conversions worked out by hand. */
#include "tu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/blocks.h"
#include "../quant/floats.h"
#include "../quant/fp16.h"
#include "../quant/legacy.h"

typedef size_t (*quantize_fn)(const float *, void *, int64_t, int64_t, const float *);
typedef void (*dequantize_fn)(const void *, float *, int64_t);
typedef void (*ref_fn)(const float *, void *, int64_t);
typedef void (*dot_fn)(int, float *, const void *, const void *);

typedef struct {
    const char *name;
    int64_t blck;    /* values per block */
    size_t bsize;    /* bytes per block */
    quantize_fn quantize;
    dequantize_fn dequantize;
    ref_fn ref;
    int has_imat;    /* golden has CASE.TYPE.imat.* */
} ktype;

static const ktype TYPES[] = {
    {"q4_0", 32, sizeof(block_q4_0), q_quantize_q4_0, q_dequantize_row_q4_0, q_quantize_row_q4_0_ref, 1},
    {"q4_1", 32, sizeof(block_q4_1), q_quantize_q4_1, q_dequantize_row_q4_1, q_quantize_row_q4_1_ref, 1},
    {"q5_0", 32, sizeof(block_q5_0), q_quantize_q5_0, q_dequantize_row_q5_0, q_quantize_row_q5_0_ref, 1},
    {"q5_1", 32, sizeof(block_q5_1), q_quantize_q5_1, q_dequantize_row_q5_1, q_quantize_row_q5_1_ref, 1},
    {"q8_0", 32, sizeof(block_q8_0), q_quantize_q8_0, q_dequantize_row_q8_0, q_quantize_row_q8_0_ref, 0},
    {"iq4_nl", 32, sizeof(block_iq4_nl), q_quantize_iq4_nl, q_dequantize_row_iq4_nl, q_quantize_row_iq4_nl_ref, 1},
    {"iq4_xs", 256, sizeof(block_iq4_xs), q_quantize_iq4_xs, q_dequantize_row_iq4_xs, q_quantize_row_iq4_xs_ref, 1},
    {"f16", 1, 2, q_quantize_f16, q_dequantize_row_f16, q_from_float_f16, 0},
    {"bf16", 1, 2, q_quantize_bf16, q_dequantize_row_bf16, q_from_float_bf16, 0},
    /* no golden files: */
    {"q8_1", 32, sizeof(block_q8_1), q_quantize_q8_1, q_dequantize_row_q8_1, q_quantize_row_q8_1_ref, 0},
    {"f32", 1, 4, q_quantize_f32, q_dequantize_row_f32, q_from_float_f32, 0},
};

static const ktype *ktype_get(const char *name)
{
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (strcmp(TYPES[i].name, name) == 0)
            return &TYPES[i];
    fail_msg("no type %s", name);
    return NULL;
}

static size_t row_bytes(const ktype *t, int64_t n) { return (size_t)(n / t->blck) * t->bsize; }

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* ---- golden data --------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int64_t rows, n;
} gcase;

static const gcase CASES[] = {{"gauss", 32, 512}, {"edge", 16, 256}, {"real", 64, 256}};

/* Reads golden/quant/CASE.SUFFIX and checks its size. */
static void *golden_read(const char *cs, const char *suffix, size_t want)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/quant/%s.%s", cs, suffix);
    const char *path = tu_shared(rel);
    if (!path)
        fail_msg("missing %s", rel);
    size_t size;
    void *p = tu_read(path, &size);
    if (size != want)
        fail_msg("%s: %zu bytes, expected %zu", rel, size, want);
    return p;
}

static void expect_same_bytes(const char *what, const uint8_t *got, const uint8_t *want, size_t size,
                              size_t row_size, size_t bsize)
{
    for (size_t i = 0; i < size; i++) {
        if (got[i] != want[i])
            fail_msg("%s: byte %zu (row %zu, block %zu, offset %zu) is 0x%02x, golden 0x%02x", what, i,
                     i / row_size, (i % row_size) / bsize, i % bsize, got[i], want[i]);
    }
}

/* Bit-exact float comparison: -0.0 vs 0.0 and NaN payloads count. */
static void expect_same_floats(const char *what, const float *got, const float *want, size_t n, int64_t n_per_row)
{
    for (size_t i = 0; i < n; i++) {
        if (q_f32_bits(got[i]) != q_f32_bits(want[i]))
            fail_msg("%s: value %zu (row %lld, col %lld) is %a, golden %a", what, i,
                     (long long)(i / (size_t)n_per_row), (long long)(i % (size_t)n_per_row),
                     (double)got[i], (double)want[i]);
    }
}

/* One case, one variant: quantized bytes, our dequantization of the golden bytes, and (without
 * weights) the row-wise _ref function, all exactly as ggml's. */
static void golden_variant(const ktype *t, const gcase *c, int weighted)
{
    const size_t nval = (size_t)(c->rows * c->n), rsz = row_bytes(t, c->n), qsize = rsz * (size_t)c->rows;
    char suffix[64], what[96];
    float *x = golden_read(c->name, "input.f32", nval * sizeof(float));
    float *imat = weighted ? golden_read(c->name, "imatrix.f32", (size_t)c->n * sizeof(float)) : NULL;
    snprintf(suffix, sizeof suffix, "%s%s.bin", t->name, weighted ? ".imat" : "");
    uint8_t *want = golden_read(c->name, suffix, qsize);
    snprintf(suffix, sizeof suffix, "%s%s.deq.f32", t->name, weighted ? ".imat" : "");
    float *want_deq = golden_read(c->name, suffix, nval * sizeof(float));
    uint8_t *got = xmalloc(qsize);
    float *deq = xmalloc(nval * sizeof(float));

    memset(got, 0xA5, qsize); /* no byte may be left unwritten */
    assert_int_equal(t->quantize(x, got, c->rows, c->n, imat), qsize);
    snprintf(what, sizeof what, "%s %s%s", t->name, c->name, weighted ? " imat" : "");
    expect_same_bytes(what, got, want, qsize, rsz, t->bsize);

    t->dequantize(want, deq, (int64_t)nval);
    snprintf(what, sizeof what, "%s %s%s dequantized", t->name, c->name, weighted ? " imat" : "");
    expect_same_floats(what, deq, want_deq, nval, c->n);

    if (!weighted) {
        memset(got, 0x5A, qsize);
        for (int64_t r = 0; r < c->rows; r++)
            t->ref(x + r * c->n, got + (size_t)r * rsz, c->n);
        snprintf(what, sizeof what, "%s %s row-wise _ref", t->name, c->name);
        expect_same_bytes(what, got, want, qsize, rsz, t->bsize);
    }
    free(x);
    free(imat);
    free(want);
    free(want_deq);
    free(got);
    free(deq);
}

static void golden_type(const char *name)
{
    const ktype *t = ktype_get(name);
    TU_SHARED(dir, "golden/quant");
    (void)dir;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        golden_variant(t, &CASES[i], 0);
        if (t->has_imat)
            golden_variant(t, &CASES[i], 1);
    }
}

static void test_golden_q4_0(void **state) { (void)state; golden_type("q4_0"); }
static void test_golden_q4_1(void **state) { (void)state; golden_type("q4_1"); }
static void test_golden_q5_0(void **state) { (void)state; golden_type("q5_0"); }
static void test_golden_q5_1(void **state) { (void)state; golden_type("q5_1"); }
static void test_golden_q8_0(void **state) { (void)state; golden_type("q8_0"); }
static void test_golden_iq4_nl(void **state) { (void)state; golden_type("iq4_nl"); }
static void test_golden_iq4_xs(void **state) { (void)state; golden_type("iq4_xs"); }
static void test_golden_f16(void **state) { (void)state; golden_type("f16"); }
static void test_golden_bf16(void **state) { (void)state; golden_type("bf16"); }

/* ---- random data --------------------------------------------------------------------------- */

/* Roughly Gaussian values (sum of four uniforms, unit variance) times scale. */
static void gauss_fill(float *x, int64_t n, float scale, uint64_t *st)
{
    for (int64_t j = 0; j < n; j++)
        x[j] = (tu_randf(st) + tu_randf(st) + tu_randf(st) + tu_randf(st)) * 0.866f * scale;
}

/* Rows scaled from 1e-3 to 1e3, so that the half scales d cover normal and subnormal halves. */
static float *random_matrix(int64_t rows, int64_t n, uint64_t seed)
{
    float *x = xmalloc((size_t)(rows * n) * sizeof(float));
    uint64_t st = seed;
    for (int64_t r = 0; r < rows; r++)
        gauss_fill(x + r * n, n, powf(10.0f, -3.0f + 6.0f * (float)r / (float)(rows > 1 ? rows - 1 : 1)), &st);
    return x;
}

static float *random_imatrix(int64_t n, uint64_t seed)
{
    float *w = xmalloc((size_t)n * sizeof(float));
    uint64_t st = seed;
    for (int64_t j = 0; j < n; j++)
        w[j] = 0.05f + 2.0f * (tu_randf(&st) + 1.0f);
    return w;
}

/* Largest error of rounding v to half: half an ulp, relative 2^-11 for normal halves and 2^-25
 * absolute in the subnormal range. */
static double half_err(double v) { return fmax(fabs(v) * 0x1p-11, 0x1p-25); }

static void block_minmax(const float *x, int n, float *mn, float *mx, float *amax)
{
    *mn = *mx = x[0];
    *amax = 0;
    for (int j = 0; j < n; j++) {
        *mn = fminf(*mn, x[j]);
        *mx = fmaxf(*mx, x[j]);
        *amax = fmaxf(*amax, fabsf(x[j]));
    }
}

/* Worst-case error of the unweighted quantizers, from the format: half a step, except where a
 * symmetric format's extreme value must be clamped (a whole step), plus the rounding of d (and
 * m) to half, times the largest code. 1e-5 of the range covers float rounding of the codes. */
static double linear_bound(const char *type, const float *xb)
{
    float mn, mx, amax;
    block_minmax(xb, 32, &mn, &mx, &amax);
    const double range = (double)mx - mn, slack = 1e-5 * amax;
    if (!strcmp(type, "q4_0"))
        return amax / 8.0 + 8 * half_err(amax / 8.0) + slack;
    if (!strcmp(type, "q5_0"))
        return amax / 16.0 + 16 * half_err(amax / 16.0) + slack;
    if (!strcmp(type, "q8_0") || !strcmp(type, "q8_1"))
        return amax / 254.0 + 127 * half_err(amax / 127.0) + slack;
    if (!strcmp(type, "q4_1"))
        return range / 30 + 15 * half_err(range / 15) + half_err(mn) + slack;
    if (!strcmp(type, "q5_1"))
        return range / 62 + 31 * half_err(range / 31) + half_err(mn) + slack;
    fail_msg("no bound for %s", type);
    return 0;
}

static void check_linear_roundtrip(const char *type, quantize_fn quantize, dequantize_fn dequantize,
                                   size_t bsize)
{
    const int64_t rows = 24, n = 512;
    float *x = random_matrix(rows, n, 0x1234 + bsize);
    uint8_t *q = xmalloc((size_t)(rows * n / 32) * bsize);
    float *y = xmalloc((size_t)(rows * n) * sizeof(float));
    quantize(x, q, rows, n, NULL);
    dequantize(q, y, rows * n);
    for (int64_t b = 0; b < rows * n / 32; b++) {
        const double bound = linear_bound(type, x + 32 * b);
        for (int j = 0; j < 32; j++) {
            const double err = fabs((double)x[32 * b + j] - y[32 * b + j]);
            if (!(err <= bound))
                fail_msg("%s block %lld value %d: %g -> %g, error %g > bound %g", type, (long long)b, j,
                         (double)x[32 * b + j], (double)y[32 * b + j], err, bound);
        }
    }
    free(x);
    free(q);
    free(y);
}

static void test_roundtrip_linear(void **state)
{
    (void)state;
    static const char *names[] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const ktype *t = ktype_get(names[i]);
        check_linear_roundtrip(t->name, t->quantize, t->dequantize, t->bsize);
    }
    check_linear_roundtrip("q8_1", q_quantize_q8_1, q_dequantize_row_q8_1, sizeof(block_q8_1));
}

/* Relative RMSE of dequantize(quantize(x)) over unit-variance rows. 0.0975 is the error of the
 * optimal 16-level scalar quantizer of a Gaussian (Lloyd-Max): any 4-bit format with a scale per
 * block must not be worse. */
static double rel_rmse(const ktype *t, const float *x, int64_t rows, int64_t n, const float *imat)
{
    uint8_t *q = xmalloc(row_bytes(t, n) * (size_t)rows);
    float *y = xmalloc((size_t)(rows * n) * sizeof(float));
    assert_int_equal(t->quantize(x, q, rows, n, imat), row_bytes(t, n) * (size_t)rows);
    t->dequantize(q, y, rows * n);
    double se = 0, sx = 0;
    for (int64_t i = 0; i < rows * n; i++) {
        se += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        sx += (double)x[i] * x[i];
    }
    free(q);
    free(y);
    return sqrt(se / sx);
}

static void test_roundtrip_4bit_rmse(void **state)
{
    (void)state;
    const int64_t rows = 32, n = 512;
    float *x = xmalloc((size_t)(rows * n) * sizeof(float));
    uint64_t st = 99;
    gauss_fill(x, rows * n, 1.0f, &st);
    float *imat = random_imatrix(n, 7);
    static const char *names[] = {"q4_0", "q4_1", "iq4_nl", "iq4_xs"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const ktype *t = ktype_get(names[i]);
        for (int w = 0; w < 2; w++) {
            const double e = rel_rmse(t, x, rows, n, w ? imat : NULL);
            if (!(e < 0.0975))
                fail_msg("%s%s: relative RMSE %g", t->name, w ? " weighted" : "", e);
        }
    }
    free(x);
    free(imat);
}

/* The weighted searches start from the plain quantizer's grid and only accept improvements, so
 * in their own metric (Σ w·err², w = imatrix·sqrt(σ² + x²)) they are never worse than it, up to
 * the rounding of d and m to half. */
static void test_weighted_not_worse(void **state)
{
    (void)state;
    const int64_t rows = 24, n = 256;
    float *x = random_matrix(rows, n, 4242);
    float *imat = random_imatrix(n, 17);
    static const char *names[] = {"q4_0", "q4_1", "q5_0", "q5_1"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const ktype *t = ktype_get(names[i]);
        const size_t qsize = row_bytes(t, n) * (size_t)rows;
        uint8_t *q = xmalloc(qsize);
        float *yw = xmalloc((size_t)(rows * n) * sizeof(float)), *yp = xmalloc((size_t)(rows * n) * sizeof(float));
        t->quantize(x, q, rows, n, imat);
        t->dequantize(q, yw, rows * n);
        t->quantize(x, q, rows, n, NULL);
        t->dequantize(q, yp, rows * n);
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * n;
            double s2 = 0;
            for (int64_t j = 0; j < n; j++)
                s2 += (double)xr[j] * xr[j];
            s2 /= (double)n;
            for (int64_t b = 0; b < n / 32; b++) {
                double ew = 0, ep = 0;
                for (int64_t j = 32 * b; j < 32 * b + 32; j++) {
                    const double w = imat[j] * sqrt(s2 + (double)xr[j] * xr[j]);
                    ew += w * ((double)xr[j] - yw[r * n + j]) * ((double)xr[j] - yw[r * n + j]);
                    ep += w * ((double)xr[j] - yp[r * n + j]) * ((double)xr[j] - yp[r * n + j]);
                }
                if (!(ew <= ep * 1.002))
                    fail_msg("%s row %lld block %lld: weighted error %g > plain %g", t->name, (long long)r,
                             (long long)b, ew, ep);
            }
        }
        free(q);
        free(yw);
        free(yp);
    }
    free(x);
    free(imat);
}

/* Rows quantize independently: all rows at once equals row by row (weighted: σ² is per row). */
static void test_rows_independent(void **state)
{
    (void)state;
    const int64_t rows = 5, n = 512;
    float *x = random_matrix(rows, n, 31337);
    float *imat = random_imatrix(n, 5);
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++) {
        const ktype *t = &TYPES[i];
        const size_t rsz = row_bytes(t, n);
        uint8_t *all = xmalloc(rsz * rows), *one = xmalloc(rsz * rows);
        for (int w = 0; w < 2; w++) {
            assert_int_equal(t->quantize(x, all, rows, n, w ? imat : NULL), rsz * rows);
            for (int64_t r = 0; r < rows; r++)
                assert_int_equal(t->quantize(x + r * n, one + r * rsz, 1, n, w ? imat : NULL), rsz);
            if (memcmp(all, one, rsz * rows) != 0)
                fail_msg("%s%s: rows depend on each other", t->name, w ? " weighted" : "");
        }
        free(all);
        free(one);
    }
    free(x);
    free(imat);
}

/* ---- special rows -------------------------------------------------------------------------- */

enum { SPECIAL_ROWS = 7, SPECIAL_N = 256 };

/* zeros, tiny (1e-30), subnormal, ±60000, constant, one spike, a ramp through zero. */
static float *special_rows(void)
{
    float *x = xmalloc(SPECIAL_ROWS * SPECIAL_N * sizeof(float));
    for (int j = 0; j < SPECIAL_N; j++) {
        x[0 * SPECIAL_N + j] = 0.0f;
        x[1 * SPECIAL_N + j] = (float)(j % 7 - 3) * 1e-30f;
        x[2 * SPECIAL_N + j] = (float)(j % 5) * 0x1p-140f;
        x[3 * SPECIAL_N + j] = (j % 3 == 0) ? -60000.0f : (j % 3 == 1) ? 60000.0f : 0.0f;
        x[4 * SPECIAL_N + j] = -0.75f;
        x[5 * SPECIAL_N + j] = (j == 77) ? 50.0f : 0.0f;
        x[6 * SPECIAL_N + j] = (float)(j - 128) / 64.0f;
    }
    return x;
}

/* Every type, with and without weights (also weights that are zero): the output is finite, an
 * all-zero row stays exactly zero, and no value is off by more than its row's largest |x|. */
static void test_special_rows_finite(void **state)
{
    (void)state;
    float *x = special_rows();
    float *imat = random_imatrix(SPECIAL_N, 3);
    float *zero_imat = xmalloc(SPECIAL_N * sizeof(float));
    memset(zero_imat, 0, SPECIAL_N * sizeof(float));
    const float *imats[] = {NULL, imat, zero_imat};
    float *y = xmalloc(SPECIAL_ROWS * SPECIAL_N * sizeof(float));
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++) {
        const ktype *t = &TYPES[i];
        uint8_t *q = xmalloc(row_bytes(t, SPECIAL_N) * SPECIAL_ROWS);
        for (int v = 0; v < 3; v++) {
            t->quantize(x, q, SPECIAL_ROWS, SPECIAL_N, imats[v]);
            t->dequantize(q, y, SPECIAL_ROWS * SPECIAL_N);
            for (int r = 0; r < SPECIAL_ROWS; r++) {
                float amax = 0;
                for (int j = 0; j < SPECIAL_N; j++)
                    amax = fmaxf(amax, fabsf(x[r * SPECIAL_N + j]));
                for (int j = 0; j < SPECIAL_N; j++) {
                    const float a = x[r * SPECIAL_N + j], b = y[r * SPECIAL_N + j];
                    if (!isfinite(b) || !(fabsf(a - b) <= amax))
                        fail_msg("%s (weights %d) row %d col %d: %g -> %g", t->name, v, r, j, (double)a, (double)b);
                    if (r == 0 && b != 0.0f)
                        fail_msg("%s (weights %d): zero row gives %g", t->name, v, (double)b);
                }
            }
        }
        free(q);
    }
    free(x);
    free(imat);
    free(zero_imat);
    free(y);
}

/* Where every weight of a block is zero, ggml's iq4 search computes 0/0 and iq4_nl stores a NaN
 * scale; qkit stores 0 (the block reads back as zeros) and leaves the other blocks as they were. */
static void test_iq4_zero_weight_block(void **state)
{
    (void)state;
    const int64_t n = 256;
    float *x = xmalloc((size_t)n * sizeof(float));
    uint64_t st = 8;
    gauss_fill(x, n, 1.0f, &st);
    float *imat = random_imatrix(n, 9);
    float *imat0 = xmalloc((size_t)n * sizeof(float));
    memcpy(imat0, imat, (size_t)n * sizeof(float));
    memset(imat0 + 64, 0, 32 * sizeof(float)); /* block 2 */
    block_iq4_nl a[8], b[8];
    float y[256];
    q_quantize_iq4_nl(x, a, 1, n, imat);
    q_quantize_iq4_nl(x, b, 1, n, imat0);
    assert_int_equal(b[2].d, 0);
    assert_int_not_equal(a[2].d, 0);
    assert_memory_equal(a, b, 2 * sizeof a[0]);
    assert_memory_equal(a + 3, b + 3, 5 * sizeof a[0]);
    q_dequantize_row_iq4_nl(b, y, n);
    for (int j = 64; j < 96; j++)
        assert_true(y[j] == 0.0f);

    block_iq4_xs c;
    q_quantize_iq4_xs(x, &c, 1, n, imat0);
    q_dequantize_row_iq4_xs(&c, y, n);
    for (int j = 0; j < n; j++) {
        assert_true(isfinite(y[j]));
        if (j >= 64 && j < 96)
            assert_true(y[j] == 0.0f);
        else
            assert_true(y[j] != 0.0f); /* the levels have no zero */
    }
    free(x);
    free(imat);
    free(imat0);
}

/* Nearest iq4 level: exact levels map to themselves, midpoints to the upper level, a hair below a
 * midpoint to the lower one; the ends clamp; otherwise an independent linear scan agrees. */
static void test_iq4_nearest_level(void **state)
{
    (void)state;
    const int8_t *lv = q_iq4_levels;
    for (int k = 0; k < 16; k++)
        assert_int_equal(q_iq4_nearest_level((float)lv[k]), k);
    for (int k = 0; k < 15; k++) {
        const float mid = ((float)lv[k] + (float)lv[k + 1]) / 2; /* exact: integers / 2 */
        assert_int_equal(q_iq4_nearest_level(mid), k + 1);
        assert_int_equal(q_iq4_nearest_level(nextafterf(mid, -INFINITY)), k);
    }
    assert_int_equal(q_iq4_nearest_level(-1000.0f), 0);
    assert_int_equal(q_iq4_nearest_level(1000.0f), 15);
    assert_int_equal(q_iq4_nearest_level(-INFINITY), 0);
    assert_int_equal(q_iq4_nearest_level(NAN), 15);
    uint64_t st = 21;
    for (int i = 0; i < 20000; i++) {
        const float v = tu_randf(&st) * 140.0f;
        int best = 0;
        for (int k = 1; k < 16; k++)
            if (fabsf(v - (float)lv[k]) <= fabsf(v - (float)lv[best]))
                best = k;
        if (q_iq4_nearest_level(v) != best)
            fail_msg("nearest level of %a: %d, expected %d", (double)v, q_iq4_nearest_level(v), best);
    }
}

/* ---- hand-made blocks ---------------------------------------------------------------------- */

/* x_j = (j%16 - 8)/2: the first value of largest magnitude is -4, so d = -4/-8 = 0.5 (half 0x3800)
 * and value j gets code j%16: byte j holds codes j and j+16, i.e. j | j<<4. */
static void test_q4_0_by_hand(void **state)
{
    (void)state;
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j % 16 - 8) * 0.5f;
    block_q4_0 b;
    q_quantize_row_q4_0_ref(x, &b, 32);
    assert_int_equal(b.d, 0x3800);
    for (int j = 0; j < 16; j++)
        assert_int_equal(b.qs[j], j | j << 4);
}

/* x_j = (j-16)/4: d = -4/-16 = 0.25 (0x3400), code j; bit 4 is set for j >= 16, so qh holds
 * 0xFFFF0000 little-endian. */
static void test_q5_0_by_hand(void **state)
{
    (void)state;
    float x[32], y[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16) * 0.25f;
    block_q5_0 b;
    q_quantize_row_q5_0_ref(x, &b, 32);
    assert_int_equal(b.d, 0x3400);
    const uint8_t qh[4] = {0x00, 0x00, 0xFF, 0xFF};
    assert_memory_equal(b.qh, qh, 4);
    for (int j = 0; j < 16; j++)
        assert_int_equal(b.qs[j], j | j << 4);
    q_dequantize_row_q5_0(&b, y, 32);
    assert_memory_equal(x, y, sizeof x); /* all values on the grid */
}

/* q4_1: x in [-1, 2] by steps of 0.2: d = 3/15 = 0.2, m = -1, code j for x_j = -1 + 0.2 j. */
static void test_q4_1_by_hand(void **state)
{
    (void)state;
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = -1.0f + 0.2f * (float)(j % 16);
    block_q4_1 b;
    q_quantize_row_q4_1_ref(x, &b, 32);
    assert_int_equal(b.m, 0xBC00); /* -1 */
    assert_int_equal(b.d, q_fp32_to_fp16((x[15] - x[0]) / 15.0f));
    for (int j = 0; j < 16; j++)
        assert_int_equal(b.qs[j], j | j << 4);
}

/* amax 127 gives d = 1 exactly; codes round half away from zero (roundf), not to even. */
static void test_q8_rounding_by_hand(void **state)
{
    (void)state;
    float x[32] = {127.0f, 2.5f, -2.5f, 0.5f, -0.5f, 1.5f, 126.5f, -127.0f, 3.49f};
    const int8_t want[32] = {127, 3, -3, 1, -1, 2, 127, -127, 3};
    block_q8_0 a;
    block_q8_1 b;
    q_quantize_row_q8_0_ref(x, &a, 32);
    q_quantize_row_q8_1_ref(x, &b, 32);
    assert_int_equal(a.d, 0x3C00);
    assert_int_equal(b.d, 0x3C00);
    assert_memory_equal(a.qs, want, 32);
    assert_memory_equal(b.qs, want, 32);
    assert_int_equal(b.s, q_fp32_to_fp16(132.0f)); /* 127+3-3+1-1+2+127-127+3 */
}

/* The activation quantizers on random blocks: d = fp16(amax/127), the largest |x| gets ±127,
 * codes within ±127, q8_1 equal to q8_0 plus s = fp16(Σq · amax/127). */
static void test_q8_activation_fields(void **state)
{
    (void)state;
    enum { NB = 64 };
    float *x = random_matrix(NB, 32, 77);
    block_q8_0 a[NB];
    block_q8_1 b[NB];
    q_quantize_row_q8_0_ref(x, a, NB * 32);
    q_quantize_row_q8_1_ref(x, b, NB * 32);
    for (int i = 0; i < NB; i++) {
        const float *xb = x + 32 * i;
        float mn, mx, amax;
        block_minmax(xb, 32, &mn, &mx, &amax);
        const float d = amax / 127.0f;
        int sum = 0;
        assert_int_equal(a[i].d, q_fp32_to_fp16(d));
        assert_int_equal(b[i].d, a[i].d);
        assert_memory_equal(a[i].qs, b[i].qs, 32);
        for (int j = 0; j < 32; j++) {
            assert_true(a[i].qs[j] >= -127 && a[i].qs[j] <= 127);
            if (fabsf(xb[j]) == amax)
                assert_int_equal(a[i].qs[j], xb[j] > 0 ? 127 : -127);
            sum += a[i].qs[j];
        }
        assert_int_equal(b[i].s, q_fp32_to_fp16((float)sum * d));
    }
    free(x);
}

/* ---- dot products -------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *wtype;  /* weight type (in TYPES) */
    int act;            /* 0: q8_0, 1: q8_1, 2: q8_K */
    dot_fn dot;
} dotpair;

static const dotpair DOTS[] = {
    {"q4_0·q8_0", "q4_0", 0, q_vec_dot_q4_0_q8_0},     {"q4_1·q8_1", "q4_1", 1, q_vec_dot_q4_1_q8_1},
    {"q5_0·q8_0", "q5_0", 0, q_vec_dot_q5_0_q8_0},     {"q5_1·q8_1", "q5_1", 1, q_vec_dot_q5_1_q8_1},
    {"q8_0·q8_0", "q8_0", 0, q_vec_dot_q8_0_q8_0},     {"iq4_nl·q8_0", "iq4_nl", 0, q_vec_dot_iq4_nl_q8_0},
    {"iq4_xs·q8_K", "iq4_xs", 2, q_vec_dot_iq4_xs_q8_K},
};

/* q8_K as the k-quants' activations (built here: this file links no k-quant code). */
static void make_q8_K(const float *x, block_q8_K *y, int n)
{
    for (int i = 0; i < n / 256; i++, x += 256) {
        float amax = 0;
        for (int j = 0; j < 256; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        y[i].d = amax / 127.0f;
        for (int j = 0; j < 256; j++)
            y[i].qs[j] = (int8_t)lrintf(amax ? x[j] * 127.0f / amax : 0.0f);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++)
                s += y[i].qs[16 * g + j];
            y[i].bsums[g] = (int16_t)s;
        }
    }
}

static void act_dequantize(int act, const void *q, float *y, int n)
{
    if (act == 0)
        q_dequantize_row_q8_0(q, y, n);
    else if (act == 1)
        q_dequantize_row_q8_1(q, y, n);
    else
        for (int i = 0; i < n; i++)
            y[i] = ((const block_q8_K *)q)[i / 256].d * ((const block_q8_K *)q)[i / 256].qs[i % 256];
}

/* The q4_1/q5_1 dots add m·s per block, where q8_1's s is d·Σq computed from the unrounded d and
 * rounded to half, while the dequantized activations sum to fp16(d)·Σq. The difference is part
 * of the format; it is exactly Σ |m·(s - fp16(d)·Σq)| at most. */
static double offset_slack(const dotpair *p, const void *x, const void *y, int n)
{
    double slack = 0;
    for (int i = 0; p->act == 1 && i < n / 32; i++) {
        const block_q8_1 *b = (const block_q8_1 *)y + i;
        const uint16_t m = !strcmp(p->wtype, "q4_1") ? ((const block_q4_1 *)x)[i].m : ((const block_q5_1 *)x)[i].m;
        int sum = 0;
        for (int j = 0; j < 32; j++)
            sum += b->qs[j];
        slack += fabs((double)q_fp16_to_fp32(m) *
                      ((double)q_fp16_to_fp32(b->s) - (double)q_fp16_to_fp32(b->d) * sum));
    }
    return slack;
}

/* Random weights and activations: the dot equals the double-precision dot of the dequantized
 * operands within 1e-5 of Σ|x||y| (float accumulation over n/32 blocks) plus the q8_1 term. */
static void test_dot_random(void **state)
{
    (void)state;
    enum { N = 1024 };
    float *x = xmalloc(N * sizeof(float)), *a = xmalloc(N * sizeof(float));
    uint64_t st = 2024;
    gauss_fill(x, N, 1.0f, &st);
    gauss_fill(a, N, 3.0f, &st);
    float *xd = xmalloc(N * sizeof(float)), *ad = xmalloc(N * sizeof(float));
    void *qx = xmalloc(N * 2), *qa = xmalloc(sizeof(block_q8_K) * (N / 256));
    for (size_t i = 0; i < sizeof DOTS / sizeof DOTS[0]; i++) {
        const dotpair *p = &DOTS[i];
        const ktype *t = ktype_get(p->wtype);
        t->quantize(x, qx, 1, N, NULL);
        t->dequantize(qx, xd, N);
        if (p->act == 0)
            q_quantize_row_q8_0_ref(a, qa, N);
        else if (p->act == 1)
            q_quantize_row_q8_1_ref(a, qa, N);
        else
            make_q8_K(a, qa, N);
        act_dequantize(p->act, qa, ad, N);
        double ref = 0, mag = 0;
        for (int j = 0; j < N; j++) {
            ref += (double)xd[j] * ad[j];
            mag += fabs((double)xd[j] * ad[j]);
        }
        float s = NAN;
        p->dot(N, &s, qx, qa);
        const double tol = 1e-5 * mag + offset_slack(p, qx, qa, N);
        if (!(fabs(s - ref) <= tol))
            fail_msg("%s: %.9g, reference %.9g (tolerance %g)", p->name, (double)s, ref, tol);
    }
    free(x);
    free(a);
    free(xd);
    free(ad);
    free(qx);
    free(qa);
}

/* Random codes with scales 1 (offsets small integers): every float step is exact, so the dot must
 * equal the dequantized dot exactly. This pins the code layouts of the dots to the dequantizers. */
static void fill_exact_weights(const char *type, uint8_t *q, int n, uint64_t *st)
{
    const ktype *t = ktype_get(type);
    const size_t nb = (size_t)(n / t->blck);
    for (size_t i = 0; i < nb * t->bsize; i++)
        q[i] = (uint8_t)tu_rand(st);
    for (size_t i = 0; i < nb; i++) {
        uint8_t *b = q + i * t->bsize;
        const uint16_t one = 0x3C00, m = (uint16_t)(0xC000 | (tu_rand(st) & 0x0300)); /* -2, -2.5, -3, -3.5 */
        memcpy(b, &one, 2);
        if (!strcmp(type, "q4_1") || !strcmp(type, "q5_1"))
            memcpy(b + 2, &m, 2);
        if (!strcmp(type, "q8_0"))
            for (int j = 0; j < 32; j++)
                b[2 + j] = (uint8_t)(int8_t)((int)(tu_rand(st) % 121) - 60);
        if (!strcmp(type, "iq4_xs")) {
            block_iq4_xs *xs = (block_iq4_xs *)b;
            xs->scales_h = 0xAAAA; /* high bits 2 (+32): the multipliers are the low nibbles */
            for (int g = 0; g < 4; g++)
                xs->scales_l[g] = (uint8_t)(tu_rand(st) & 0x33); /* multipliers 0..3 */
        }
    }
}

static void test_dot_exact(void **state)
{
    (void)state;
    enum { N = 512 };
    uint64_t st = 555;
    uint8_t *qx = xmalloc(N * 2);
    float *xd = xmalloc(N * sizeof(float)), *ad = xmalloc(N * sizeof(float));
    block_q8_0 a0[N / 32];
    block_q8_1 a1[N / 32];
    block_q8_K ak[N / 256];
    for (int i = 0; i < N / 32; i++) {
        int sum = 0;
        a0[i].d = a1[i].d = 0x3C00;
        for (int j = 0; j < 32; j++) {
            a0[i].qs[j] = a1[i].qs[j] = (int8_t)((int)(tu_rand(&st) % 121) - 60);
            sum += a1[i].qs[j];
        }
        a1[i].s = q_fp32_to_fp16((float)sum); /* |sum| <= 1920: exact in half */
        assert_true(q_fp16_to_fp32(a1[i].s) == (float)sum);
    }
    for (int i = 0; i < N / 256; i++) {
        ak[i].d = 1.0f;
        for (int j = 0; j < 256; j++)
            ak[i].qs[j] = (int8_t)((int)(tu_rand(&st) % 17) - 8);
    }
    const void *acts[] = {a0, a1, ak};
    for (size_t i = 0; i < sizeof DOTS / sizeof DOTS[0]; i++) {
        const dotpair *p = &DOTS[i];
        fill_exact_weights(p->wtype, qx, N, &st);
        ktype_get(p->wtype)->dequantize(qx, xd, N);
        act_dequantize(p->act, acts[p->act], ad, N);
        double ref = 0;
        for (int j = 0; j < N; j++)
            ref += (double)xd[j] * ad[j];
        assert_true(fabs(ref) < 0x1p24);
        float s = NAN;
        p->dot(N, &s, qx, acts[p->act]);
        if ((double)s != ref)
            fail_msg("%s: %.9g, exact %.9g", p->name, (double)s, ref);
    }
    free(qx);
    free(xd);
    free(ad);
}

/* ---- f16 / bf16 -------------------------------------------------------------------------- */

typedef struct {
    uint32_t f32; /* input bits */
    uint16_t h;   /* expected half bits */
    const char *why;
} conv_case;

/* Worked out from IEEE 754 binary16 (1+5+10 bits, bias 15) with round to nearest even. */
static const conv_case F16_CASES[] = {
    {0x3F800000, 0x3C00, "1"},
    {0xC0000000, 0xC000, "-2"},
    {0x80000000, 0x8000, "-0 keeps its sign"},
    {0x3EAAAAAB, 0x3555, "1/3: mantissa 0101010101|0101... rounds down"},
    {0x477FE000, 0x7BFF, "65504, the largest half"},
    {0x477FEFFF, 0x7BFF, "just below 65520 rounds down"},
    {0x477FF000, 0x7C00, "65520 ties between 65504 (odd) and 65536: even is 2^16, overflow to Inf"},
    {0x7F7FFFFF, 0x7C00, "FLT_MAX overflows to Inf"},
    {0x7F800000, 0x7C00, "+Inf"},
    {0xFF800000, 0xFC00, "-Inf"},
    {0x38800000, 0x0400, "2^-14, the smallest normal half"},
    {0x387FC000, 0x03FF, "2^-14 - 2^-24, the largest subnormal half"},
    {0x33800000, 0x0001, "2^-24, the smallest subnormal half"},
    {0x33000000, 0x0000, "2^-25 ties between 0 (even) and 2^-24"},
    {0x33C00000, 0x0002, "1.5·2^-24 ties between 1 and 2 units: 2 is even"},
    {0x3F801000, 0x3C00, "1 + 2^-11 ties: 1 is even"},
    {0x3F803000, 0x3C02, "1 + 3·2^-11 ties between 0x3C01 and 0x3C02: even"},
    {0x3F801001, 0x3C01, "just above the tie rounds up"},
};

/* bfloat16 is the top half of a float, rounded to nearest even. */
static const conv_case BF16_CASES[] = {
    {0x3F800000, 0x3F80, "1"},
    {0x80000000, 0x8000, "-0"},
    {0x3F808000, 0x3F80, "1 + 2^-8 ties: 0x3F80 is even"},
    {0x3F818000, 0x3F82, "1 + 3·2^-8 ties between 0x3F81 and 0x3F82: even"},
    {0x3F808001, 0x3F81, "just above the tie rounds up"},
    {0x7F7FFFFF, 0x7F80, "FLT_MAX rounds up to Inf"},
    {0x7F800000, 0x7F80, "+Inf"},
    {0xFF800000, 0xFF80, "-Inf"},
    {0x00010000, 0x0001, "2^-133, a subnormal, is kept (not flushed)"},
    {0x00000001, 0x0000, "2^-149 rounds to 0"},
    {0x00008000, 0x0000, "2^-134 ties between 0 (even) and 2^-133"},
};

static int half_is_nan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0; }
static int bf16_is_nan(uint16_t h) { return (h & 0x7F80) == 0x7F80 && (h & 0x007F) != 0; }

/* mantissa_bits and min_exp (the smallest normal exponent) describe the 16-bit format. */
static void check_conv(const char *what, const conv_case *c, size_t n, ref_fn to, dequantize_fn from,
                       int mantissa_bits, int min_exp)
{
    for (size_t i = 0; i < n; i++) {
        const float x = q_f32_from_bits(c[i].f32);
        uint16_t h = 0;
        to(&x, &h, 1);
        if (h != c[i].h)
            fail_msg("%s of %a (%s): 0x%04x, expected 0x%04x", what, (double)x, c[i].why, h, c[i].h);
        /* Back: exact, and for finite non-overflowing halves the nearest value to x. */
        float back;
        from(&h, &back, 1);
        if (isfinite(back) && isfinite(x)) {
            const int e = back != 0.0f && ilogb(back) > min_exp ? ilogb(back) : min_exp;
            const double ulp = ldexp(1.0, e - mantissa_bits);
            if (!(fabs((double)back - x) <= ulp / 2))
                fail_msg("%s of %a (%s) reads back as %a", what, (double)x, c[i].why, (double)back);
        }
    }
}

static void test_f16_conversions(void **state)
{
    (void)state;
    check_conv("f16", F16_CASES, sizeof F16_CASES / sizeof F16_CASES[0], q_from_float_f16,
               q_dequantize_row_f16, 10, -14);
    /* half -> float by hand: subnormals are multiples of 2^-24. */
    const uint16_t h[] = {0x0001, 0x03FF, 0x3555, 0x8000, 0x7C00, 0xFC00, 0x7BFF};
    const float want[] = {0x1p-24f, 1023 * 0x1p-24f, 1365.0f / 4096.0f, -0.0f, INFINITY, -INFINITY, 65504.0f};
    float y[7];
    q_dequantize_row_f16(h, y, 7);
    for (int i = 0; i < 7; i++)
        if (q_f32_bits(y[i]) != q_f32_bits(want[i]))
            fail_msg("half 0x%04x -> %a, expected %a", h[i], (double)y[i], (double)want[i]);
    /* NaN stays NaN with its sign, quiet or signalling alike. */
    const float nans[] = {q_f32_from_bits(0x7FC00000), q_f32_from_bits(0xFFC00000), q_f32_from_bits(0x7F800001)};
    uint16_t hn[3];
    q_from_float_f16(nans, hn, 3);
    for (int i = 0; i < 3; i++) {
        assert_true(half_is_nan(hn[i]));
        assert_int_equal(hn[i] >> 15, q_f32_bits(nans[i]) >> 31);
    }
    float back[3];
    q_dequantize_row_f16(hn, back, 3);
    for (int i = 0; i < 3; i++)
        assert_true(isnan(back[i]));
}

static void test_bf16_conversions(void **state)
{
    (void)state;
    check_conv("bf16", BF16_CASES, sizeof BF16_CASES / sizeof BF16_CASES[0], q_from_float_bf16,
               q_dequantize_row_bf16, 7, -126);
    const uint16_t h[] = {0x0001, 0x3F80, 0xC2F7, 0xFF80};
    const float want[] = {0x1p-133f, 1.0f, -123.5f, -INFINITY};
    float y[4];
    q_dequantize_row_bf16(h, y, 4);
    for (int i = 0; i < 4; i++)
        if (q_f32_bits(y[i]) != q_f32_bits(want[i]))
            fail_msg("bf16 0x%04x -> %a, expected %a", h[i], (double)y[i], (double)want[i]);
    /* A signalling NaN whose payload sits in the low 16 bits would truncate to Inf: it must stay
     * a NaN (made quiet), as must any NaN. */
    const float nans[] = {q_f32_from_bits(0x7F800001), q_f32_from_bits(0xFFC00000), q_f32_from_bits(0x7FFFFFFF)};
    uint16_t hn[3];
    q_from_float_bf16(nans, hn, 3);
    for (int i = 0; i < 3; i++) {
        assert_true(bf16_is_nan(hn[i]));
        assert_int_equal(hn[i] >> 15, q_f32_bits(nans[i]) >> 31);
    }
}

/* f32 rows are copies, bit for bit, NaN payloads included. */
static void test_f32_copy(void **state)
{
    (void)state;
    const uint32_t bits[8] = {0x3F800000, 0x80000000, 0x7F800001, 0xFFC01234, 0x00000001, 0x7F7FFFFF, 0xFF800000, 0x12345678};
    float x[8], y[8];
    uint8_t q[32];
    memcpy(x, bits, sizeof x);
    assert_int_equal(q_quantize_f32(x, q, 2, 4, NULL), sizeof x);
    assert_memory_equal(q, bits, sizeof bits);
    q_dequantize_row_f32(q, y, 8);
    assert_memory_equal(y, bits, sizeof bits);
}

/* ---- float dots ---------------------------------------------------------------------------- */

static void test_float_dot_exact(void **state)
{
    (void)state;
    enum { N = 300 };
    float x[N], y[N];
    uint16_t xh[N], xb[N];
    int64_t want = 0;
    uint64_t st = 11;
    for (int i = 0; i < N; i++) {
        const int a = (int)(tu_rand(&st) % 201) - 100, b = (int)(tu_rand(&st) % 201) - 100;
        x[i] = (float)a; /* |a| <= 100: exact in half and bf16 too */
        y[i] = (float)b;
        want += a * b;
    }
    q_from_float_f16(x, xh, N);
    q_from_float_bf16(x, xb, N);
    float s;
    q_vec_dot_f32_f32(N, &s, x, y);
    assert_true((double)s == (double)want);
    q_vec_dot_f16_f32(N, &s, xh, y);
    assert_true((double)s == (double)want);
    q_vec_dot_bf16_f32(N, &s, xb, y);
    assert_true((double)s == (double)want);
    q_vec_dot_f32_f32(0, &s, x, y);
    assert_true(s == 0.0f);
}

/* Random values: the exact dot (long double, products exact) rounded to float, within one float
 * rounding of the result and double-rounding noise; the half dots equal the f32 dot of the
 * converted values bit for bit, since they accumulate in the same order. */
static void test_float_dot_random(void **state)
{
    (void)state;
    enum { N = 4099 };
    float *x = xmalloc(N * sizeof(float)), *y = xmalloc(N * sizeof(float)), *xd = xmalloc(N * sizeof(float));
    uint16_t *xh = xmalloc(N * 2);
    uint64_t st = 12;
    gauss_fill(x, N, 3.0f, &st);
    gauss_fill(y, N, 0.01f, &st);
    long double ref = 0, mag = 0;
    for (int i = 0; i < N; i++) {
        ref += (long double)x[i] * y[i];
        mag += fabsl((long double)x[i] * y[i]);
    }
    float s, s2;
    q_vec_dot_f32_f32(N, &s, x, y);
    /* 16 chains of ceil(N/16) FMAs and a 4-level tree: each step one rounding. */
    tu_assert_near((double)s, (double)ref, (double)mag * ((N + 15) / 16 + 4) * 0x1p-24);
    /* The canonical order of quant.h, written out: lanes i mod 16, zero padding, the tree. */
    float p[16] = {0};
    for (int i0 = 0; i0 < N; i0 += 16)
        for (int l = 0; l < 16; l++)
            p[l] = fmaf(i0 + l < N ? x[i0 + l] : 0.0f, i0 + l < N ? y[i0 + l] : 0.0f, p[l]);
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            p[l] = p[l] + p[l + w];
    assert_true(q_f32_bits(s) == q_f32_bits(p[0]));

    q_from_float_f16(x, xh, N);
    q_dequantize_row_f16(xh, xd, N);
    q_vec_dot_f16_f32(N, &s, xh, y);
    q_vec_dot_f32_f32(N, &s2, xd, y);
    assert_true(q_f32_bits(s) == q_f32_bits(s2));

    q_from_float_bf16(x, xh, N);
    q_dequantize_row_bf16(xh, xd, N);
    q_vec_dot_bf16_f32(N, &s, xh, y);
    q_vec_dot_f32_f32(N, &s2, xd, y);
    assert_true(q_f32_bits(s) == q_f32_bits(s2));
    free(x);
    free(y);
    free(xd);
    free(xh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_q4_0),
        cmocka_unit_test(test_golden_q4_1),
        cmocka_unit_test(test_golden_q5_0),
        cmocka_unit_test(test_golden_q5_1),
        cmocka_unit_test(test_golden_q8_0),
        cmocka_unit_test(test_golden_iq4_nl),
        cmocka_unit_test(test_golden_iq4_xs),
        cmocka_unit_test(test_golden_f16),
        cmocka_unit_test(test_golden_bf16),
        cmocka_unit_test(test_roundtrip_linear),
        cmocka_unit_test(test_roundtrip_4bit_rmse),
        cmocka_unit_test(test_weighted_not_worse),
        cmocka_unit_test(test_rows_independent),
        cmocka_unit_test(test_special_rows_finite),
        cmocka_unit_test(test_iq4_zero_weight_block),
        cmocka_unit_test(test_iq4_nearest_level),
        cmocka_unit_test(test_q4_0_by_hand),
        cmocka_unit_test(test_q5_0_by_hand),
        cmocka_unit_test(test_q4_1_by_hand),
        cmocka_unit_test(test_q8_rounding_by_hand),
        cmocka_unit_test(test_q8_activation_fields),
        cmocka_unit_test(test_dot_random),
        cmocka_unit_test(test_dot_exact),
        cmocka_unit_test(test_f16_conversions),
        cmocka_unit_test(test_bf16_conversions),
        cmocka_unit_test(test_f32_copy),
        cmocka_unit_test(test_float_dot_exact),
        cmocka_unit_test(test_float_dot_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
