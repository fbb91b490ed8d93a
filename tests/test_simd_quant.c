/* test_simd_quant.c — the AVX2 and AVX-512 quantizers against the scalar reference: the same bytes
 * on ggml's golden inputs and on random inputs chosen to hit the rounding corners (ties, zeros of
 * both signs, subnormals, 1e-30, ±60000, huge values, zero and partly-zero importance weights),
 * the same bytes from q_quantize_rows for every ISA and thread count, and exhaustive checks of the
 * two helpers whose domain is small enough to enumerate (the iq4 level search and the float
 * conversions), over all 2^32 floats when QKIT_LONG is set, over a sample otherwise.
 * Every test runs for each ISA the machine has and says so when it skips one. */
#include "tu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/blocks.h"
#include "../quant/fp16.h"
#include "../quant/legacy.h"
#include "../quant/quant.h"
#include "../quant/simd_quant.h"
#include "../quant/types.h"

typedef struct {
    const char *name;
    int type;
    int golden;      /* golden/quant has CASE.TYPE.bin */
    int golden_imat; /* ... and CASE.TYPE.imat.bin */
} sq_type;

static const sq_type TYPES[] = {
    {"q4_0", Q_TYPE_Q4_0, 1, 1},     {"q4_1", Q_TYPE_Q4_1, 1, 1},     {"q5_0", Q_TYPE_Q5_0, 1, 1},
    {"q5_1", Q_TYPE_Q5_1, 1, 1},     {"q8_0", Q_TYPE_Q8_0, 1, 0},     {"q8_1", Q_TYPE_Q8_1, 0, 0},
    {"q2_K", Q_TYPE_Q2_K, 1, 1},     {"q3_K", Q_TYPE_Q3_K, 1, 1},     {"q4_K", Q_TYPE_Q4_K, 1, 1},
    {"q5_K", Q_TYPE_Q5_K, 1, 1},     {"q6_K", Q_TYPE_Q6_K, 1, 1},     {"q8_K", Q_TYPE_Q8_K, 0, 0},
    {"iq4_nl", Q_TYPE_IQ4_NL, 1, 1}, {"iq4_xs", Q_TYPE_IQ4_XS, 1, 1}, {"f16", Q_TYPE_F16, 1, 0},
    {"bf16", Q_TYPE_BF16, 1, 0},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static const q_isa ISAS[] = {Q_ISA_AVX2, Q_ISA_AVX512};
#define N_ISAS (sizeof ISAS / sizeof ISAS[0])

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static int isa_runs(q_isa isa)
{
    const q_isa best = q_isa_best();
    return best != Q_ISA_NEON && isa <= best;
}

/* The ISA variant of a type's quantizer; fails when the ISA table left it to the scalar code, so
 * a comparison below can never be a reference compared with itself. */
static const q_kernels *simd_kernels(const sq_type *t, q_isa isa)
{
    const q_kernels *ref = q_kernels_get_isa(t->type, Q_ISA_SCALAR);
    const q_kernels *k = q_kernels_get_isa(t->type, isa);
    assert_non_null(ref);
    assert_non_null(k);
    if (k->quantize == ref->quantize || k->from_float == ref->from_float)
        fail_msg("%s: %s has no quantizer of its own", t->name, q_isa_name(isa));
    return k;
}

/* First differing byte, reported with its row, or -1. */
static void assert_same_bytes(const uint8_t *want, const uint8_t *got, size_t n, size_t row_size,
                              const char *what)
{
    for (size_t i = 0; i < n; ++i) {
        if (want[i] != got[i])
            fail_msg("%s: byte %zu (row %zu, offset %zu) is 0x%02x, reference 0x%02x", what, i,
                     i / row_size, i % row_size, got[i], want[i]);
    }
}

/* Quantizes with the scalar reference and with the ISA variant (quantize with and without
 * weights, and from_float on the first row); every byte must agree. */
static void compare_one(const sq_type *t, q_isa isa, const float *x, int64_t nrows, int64_t n_per_row,
                        const float *imatrix, const char *what)
{
    const q_kernels *ref = q_kernels_get_isa(t->type, Q_ISA_SCALAR);
    const q_kernels *k = simd_kernels(t, isa);
    const size_t row_size = q_row_size(t->type, n_per_row), bytes = row_size * (size_t)nrows;
    uint8_t *want = xmalloc(bytes), *got = xmalloc(bytes);
    char msg[200];
    memset(want, 0x5A, bytes);
    memset(got, 0xA5, bytes);
    assert_int_equal(ref->quantize(x, want, nrows, n_per_row, imatrix), bytes);
    assert_int_equal(k->quantize(x, got, nrows, n_per_row, imatrix), bytes);
    snprintf(msg, sizeof msg, "%s %s %s%s", t->name, q_isa_name(isa), what, imatrix ? " imat" : "");
    assert_same_bytes(want, got, bytes, row_size, msg);
    if (!imatrix) {
        memset(got, 0xA5, bytes);
        k->from_float(x, got, n_per_row);
        snprintf(msg, sizeof msg, "%s %s %s from_float", t->name, q_isa_name(isa), what);
        assert_same_bytes(want, got, row_size, row_size, msg);
    }
    free(want);
    free(got);
}

/* ---- golden inputs -------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int64_t rows, n;
} gcase;

static const gcase CASES[] = {{"gauss", 32, 512}, {"edge", 16, 256}, {"real", 64, 256}};

static void *read_exact(const char *rel, size_t expect)
{
    TU_SHARED(path, rel);
    size_t size;
    void *p = tu_read(path, &size);
    assert_int_equal(size, expect);
    return p;
}

/* The reference's one documented defect: edge row 5 is NaN in ggml's weighted q2_K/q4_K/q5_K. */
static int golden_exception(const sq_type *t, const gcase *c, int imat, int64_t row)
{
    return imat && !strcmp(c->name, "edge") && row == 5 &&
           (t->type == Q_TYPE_Q2_K || t->type == Q_TYPE_Q4_K || t->type == Q_TYPE_Q5_K);
}

/* Besides the scalar reference, the ISA output is held against ggml's own bytes. */
static void golden_against_ggml(const sq_type *t, q_isa isa, const gcase *c, const float *x,
                                const float *imatrix)
{
    const int imat = imatrix != NULL;
    if (!(imat ? t->golden_imat : t->golden))
        return;
    char rel[200], msg[200];
    const size_t row_size = q_row_size(t->type, c->n), bytes = row_size * (size_t)c->rows;
    snprintf(rel, sizeof rel, "golden/quant/%s.%s%s.bin", c->name, t->name, imat ? ".imat" : "");
    uint8_t *want = read_exact(rel, bytes), *got = xmalloc(bytes);
    assert_int_equal(simd_kernels(t, isa)->quantize(x, got, c->rows, c->n, imatrix), bytes);
    for (int64_t r = 0; r < c->rows; ++r) {
        if (golden_exception(t, c, imat, r))
            continue; /* test_quant_kquants checks that row; here it equals the scalar's */
        snprintf(msg, sizeof msg, "%s %s %s%s vs ggml", t->name, q_isa_name(isa), c->name,
                 imat ? " imat" : "");
        assert_same_bytes(want + r * row_size, got + r * row_size, row_size, row_size, msg);
    }
    free(want);
    free(got);
}

static void golden_type(const sq_type *t)
{
    TU_SHARED(dir, "golden/quant");
    (void)dir;
    for (size_t i = 0; i < N_ISAS; ++i) {
        if (!isa_runs(ISAS[i])) {
            print_message("%s: this CPU lacks %s (skipped)\n", t->name, q_isa_name(ISAS[i]));
            continue;
        }
        for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; ++c) {
            const gcase *gc = &CASES[c];
            char rel[200];
            snprintf(rel, sizeof rel, "golden/quant/%s.input.f32", gc->name);
            float *x = read_exact(rel, (size_t)(gc->rows * gc->n) * sizeof(float));
            snprintf(rel, sizeof rel, "golden/quant/%s.imatrix.f32", gc->name);
            float *w = read_exact(rel, (size_t)gc->n * sizeof(float));
            compare_one(t, ISAS[i], x, gc->rows, gc->n, NULL, gc->name);
            compare_one(t, ISAS[i], x, gc->rows, gc->n, w, gc->name);
            golden_against_ggml(t, ISAS[i], gc, x, NULL);
            golden_against_ggml(t, ISAS[i], gc, x, w);
            free(x);
            free(w);
        }
    }
}

#define GOLDEN_TEST(t)                                                                            \
    static void test_golden_##t(void **state)                                                     \
    {                                                                                             \
        (void)state;                                                                              \
        golden_type(type_by_name(#t));                                                            \
    }

static const sq_type *type_by_name(const char *name)
{
    for (size_t i = 0; i < N_TYPES; ++i)
        if (!strcmp(TYPES[i].name, name))
            return &TYPES[i];
    fail_msg("no type %s", name);
    return NULL;
}

GOLDEN_TEST(q4_0)
GOLDEN_TEST(q4_1)
GOLDEN_TEST(q5_0)
GOLDEN_TEST(q5_1)
GOLDEN_TEST(q8_0)
GOLDEN_TEST(q8_1)
GOLDEN_TEST(q2_K)
GOLDEN_TEST(q3_K)
GOLDEN_TEST(q4_K)
GOLDEN_TEST(q5_K)
GOLDEN_TEST(q6_K)
GOLDEN_TEST(q8_K)
GOLDEN_TEST(iq4_nl)
GOLDEN_TEST(iq4_xs)
GOLDEN_TEST(f16)
GOLDEN_TEST(bf16)

/* ---- random inputs -------------------------------------------------------------------------- */

typedef enum {
    D_GAUSS,   /* N(0,1) times a row scale from 1e-4 to 1e4 */
    D_OUTLIER, /* Gaussian with 2% of values 20x larger */
    D_TIES,    /* small integers and halves: many exact ties in the roundings */
    D_ZEROS,   /* mostly ±0, a few values, whole groups of zeros */
    D_TINY,    /* 1e-30 and subnormal magnitudes */
    D_BIG,     /* ±60000 mixed with ordinary values */
    D_HUGE,    /* up to ±3e38: sums overflow to inf inside the searches */
    D_CONST,   /* constant groups (the searches' degenerate branches) */
    D_COUNT
} dist;

static const char *const DIST_NAMES[D_COUNT] = {"gauss", "outlier", "ties", "zeros",
                                                "tiny",  "big",     "huge", "const"};

static float gauss(uint64_t *st)
{
    return (tu_randf(st) + tu_randf(st) + tu_randf(st) + tu_randf(st)) * 0.866f;
}

static void fill_row(float *x, int64_t n, dist d, int64_t row, uint64_t *st)
{
    const float scale = powf(10.f, -4.f + (float)(row % 9));
    for (int64_t j = 0; j < n; ++j) {
        const float u = tu_randf(st);
        switch (d) {
        case D_GAUSS: x[j] = gauss(st) * scale; break;
        case D_OUTLIER: x[j] = gauss(st) * (u > 0.96f ? 20.f : 1.f); break;
        case D_TIES: x[j] = (float)((int)(tu_randf(st) * 8.f)) * (u > 0 ? 0.5f : 1.f); break;
        case D_ZEROS: x[j] = u > 0.9f ? gauss(st) : (u > 0 ? 0.f : -0.f); break;
        case D_TINY: x[j] = gauss(st) * (row % 2 ? 1e-30f : 1e-41f); break;
        case D_BIG: x[j] = u > 0.5f ? (u > 0.75f ? 60000.f : -60000.f) : gauss(st); break;
        case D_HUGE: x[j] = gauss(st) * 9e37f; break; /* |gauss| <= 3.47: finite */
        default: x[j] = (float)(row % 5 - 2) * 0.75f; break;
        }
    }
    if (d == D_ZEROS) /* a whole super-block of zeros */
        for (int64_t j = 0; j < n && j < 256; ++j)
            x[j] = (row % 3) ? 0.f : -0.f;
}

typedef enum { W_NONE, W_RANDOM, W_ZERO, W_PARTLY_ZERO, W_TINY, W_COUNT } wdist;

static const char *const WDIST_NAMES[W_COUNT] = {"none", "random", "zero", "partly-zero", "tiny"};

static float *make_imatrix(int64_t n, wdist wd, uint64_t *st)
{
    if (wd == W_NONE)
        return NULL;
    float *w = xmalloc((size_t)n * sizeof(float));
    for (int64_t j = 0; j < n; ++j) {
        const float u = tu_randf(st) + 1.f; /* [0, 2) */
        switch (wd) {
        case W_RANDOM: w[j] = 0.01f + 5.f * u * u; break;
        case W_ZERO: w[j] = 0.f; break;
        case W_PARTLY_ZERO: w[j] = (j / 16) % 3 == 0 || u < 0.5f ? 0.f : u; break;
        default: w[j] = 1e-38f * u; break;
        }
    }
    return w;
}

static void random_type(const sq_type *t)
{
    static const int64_t SHAPES[][2] = {{1, 256}, {3, 512}, {17, 256}, {2, 768}};
    for (size_t i = 0; i < N_ISAS; ++i) {
        if (!isa_runs(ISAS[i])) {
            print_message("%s: this CPU lacks %s (skipped)\n", t->name, q_isa_name(ISAS[i]));
            continue;
        }
        uint64_t st = 0x9E3779B97F4A7C15ull ^ (uint64_t)t->type;
        for (int d = 0; d < D_COUNT; ++d) {
            for (int wd = 0; wd < W_COUNT; ++wd) {
                const int64_t *shape = SHAPES[(d + wd) % 4];
                const int64_t nrows = shape[0], n = shape[1];
                float *x = xmalloc((size_t)(nrows * n) * sizeof(float));
                for (int64_t r = 0; r < nrows; ++r)
                    fill_row(x + r * n, n, (dist)d, r, &st);
                float *w = make_imatrix(n, (wdist)wd, &st);
                char what[100];
                snprintf(what, sizeof what, "random %s, weights %s, %lldx%lld", DIST_NAMES[d],
                         WDIST_NAMES[wd], (long long)nrows, (long long)n);
                compare_one(t, ISAS[i], x, nrows, n, w, what);
                free(x);
                free(w);
            }
        }
    }
}

#define RANDOM_TEST(t)                                                                            \
    static void test_random_##t(void **state)                                                     \
    {                                                                                             \
        (void)state;                                                                              \
        random_type(type_by_name(#t));                                                            \
    }

RANDOM_TEST(q4_0)
RANDOM_TEST(q4_1)
RANDOM_TEST(q5_0)
RANDOM_TEST(q5_1)
RANDOM_TEST(q8_0)
RANDOM_TEST(q8_1)
RANDOM_TEST(q2_K)
RANDOM_TEST(q3_K)
RANDOM_TEST(q4_K)
RANDOM_TEST(q5_K)
RANDOM_TEST(q6_K)
RANDOM_TEST(q8_K)
RANDOM_TEST(iq4_nl)
RANDOM_TEST(iq4_xs)
RANDOM_TEST(f16)
RANDOM_TEST(bf16)

/* ---- q_quantize_rows: every ISA and thread count gives the scalar single-thread bytes --------- */

static void test_rows_threads_isas(void **state)
{
    (void)state;
    const int64_t nrows = 37, n = 512; /* more rows than one 16-row chunk per thread, and a tail */
    uint64_t st = 42;
    float *x = xmalloc((size_t)(nrows * n) * sizeof(float));
    for (int64_t r = 0; r < nrows; ++r)
        fill_row(x + r * n, n, (dist)(r % D_COUNT), r, &st);
    float *w = make_imatrix(n, W_RANDOM, &st);
    const q_isa saved = q_isa_active();
    for (size_t ti = 0; ti < N_TYPES; ++ti) {
        const sq_type *t = &TYPES[ti];
        const size_t bytes = q_row_size(t->type, n) * (size_t)nrows;
        uint8_t *want = xmalloc(bytes), *got = xmalloc(bytes);
        for (int weighted = 0; weighted < 2; ++weighted) {
            const float *imat = weighted ? w : NULL;
            qk_err err = {0};
            assert_int_equal(q_isa_set(Q_ISA_SCALAR), 0);
            assert_int_equal(q_quantize_rows(t->type, x, want, nrows, n, imat, 1, NULL, &err), QK_OK);
            const q_isa isas[] = {Q_ISA_SCALAR, Q_ISA_AVX2, Q_ISA_AVX512};
            for (size_t i = 0; i < 3; ++i) {
                if (!isa_runs(isas[i])) {
                    print_message("q_quantize_rows: this CPU lacks %s (skipped)\n", q_isa_name(isas[i]));
                    continue;
                }
                assert_int_equal(q_isa_set(isas[i]), 0);
                for (int threads = 1; threads <= 3; ++threads) {
                    char what[100];
                    memset(got, 0xA5, bytes);
                    assert_int_equal(q_quantize_rows(t->type, x, got, nrows, n, imat, threads, NULL, &err),
                                     QK_OK);
                    snprintf(what, sizeof what, "%s rows %s %d threads%s", t->name,
                             q_isa_name(isas[i]), threads, weighted ? " imat" : "");
                    assert_same_bytes(want, got, bytes, bytes / (size_t)nrows, what);
                }
            }
        }
        free(want);
        free(got);
    }
    assert_int_equal(q_isa_set(saved), 0);
    free(x);
    free(w);
}

/* ---- exhaustive and sampled checks over floats ---------------------------------------------- */

/* Every float bit pattern when QKIT_LONG is set; otherwise every 251st (a prime stride, so the
 * sample walks through all mantissa patterns) plus every float near each iq4 level and midpoint
 * and the special values. fn checks a batch and returns the index of a mismatch or -1. */
typedef int64_t (*float_check_fn)(const float *v, int64_t n, q_isa isa);

#define BATCH 65536

static void for_floats(float_check_fn fn, q_isa isa, const char *what)
{
    const int full = getenv("QKIT_LONG") != NULL;
    const uint64_t stride = full ? 1 : 251;
    float *v = xmalloc(BATCH * sizeof(float));
    int64_t n = 0;
    for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += stride) {
        v[n++] = q_f32_from_bits((uint32_t)u);
        if (n == BATCH || u + stride > 0xFFFFFFFFull) {
            const int64_t bad = fn(v, n, isa);
            if (bad >= 0)
                fail_msg("%s %s: wrong for 0x%08x (%g)", what, q_isa_name(isa), q_f32_bits(v[bad]),
                         (double)v[bad]);
            n = 0;
        }
    }
    /* Around every level and midpoint, and the specials, whatever the stride skipped. */
    n = 0;
    for (int k = 0; k < 31; ++k) {
        const float c = k % 2 == 0 ? q_iq4_levels[k / 2]
                                   : 0.5f * ((float)q_iq4_levels[k / 2] + (float)q_iq4_levels[k / 2 + 1]);
        const uint32_t b = q_f32_bits(c);
        for (int32_t off = -200; off <= 200; ++off)
            v[n++] = q_f32_from_bits(b + (uint32_t)off);
    }
    const uint32_t specials[] = {0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u,
                                 0x7fc02000u, 0xffffffffu, 0x00000001u, 0x80000001u, 0x477ff000u,
                                 0x477fefffu, 0x38800000u, 0x387fc000u, 0x33000000u, 0x33000001u};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; ++i)
        v[n++] = q_f32_from_bits(specials[i]);
    const int64_t bad = fn(v, n, isa);
    if (bad >= 0)
        fail_msg("%s %s: wrong for 0x%08x (%g)", what, q_isa_name(isa), q_f32_bits(v[bad]), (double)v[bad]);
    free(v);
    if (!full)
        print_message("%s: sampled every 251st float (QKIT_LONG=1 checks all 2^32)\n", what);
}

static int64_t check_iq4_levels(const float *v, int64_t n, q_isa isa)
{
    static uint8_t idx[BATCH + 16000];
    if (isa == Q_ISA_AVX2)
        q_iq4_nearest_levels_avx2(v, idx, n);
    else
        q_iq4_nearest_levels_avx512(v, idx, n);
    for (int64_t i = 0; i < n; ++i)
        if (idx[i] != q_iq4_nearest_level(v[i]))
            return i;
    return -1;
}

/* The conversions accept any float, NaN included: compare the ISA's from_float with fp16.h. */
static int64_t check_f16(const float *v, int64_t n, q_isa isa)
{
    static uint16_t h[BATCH + 16000];
    q_kernels_get_isa(Q_TYPE_F16, isa)->from_float(v, h, n);
    for (int64_t i = 0; i < n; ++i)
        if (h[i] != q_fp32_to_fp16(v[i]))
            return i;
    return -1;
}

static int64_t check_bf16(const float *v, int64_t n, q_isa isa)
{
    static uint16_t h[BATCH + 16000];
    q_kernels_get_isa(Q_TYPE_BF16, isa)->from_float(v, h, n);
    for (int64_t i = 0; i < n; ++i)
        if (h[i] != q_fp32_to_bf16(v[i]))
            return i;
    return -1;
}

static void every_isa(float_check_fn fn, const char *what)
{
    for (size_t i = 0; i < N_ISAS; ++i) {
        if (!isa_runs(ISAS[i])) {
            print_message("%s: this CPU lacks %s (skipped)\n", what, q_isa_name(ISAS[i]));
            continue;
        }
        for_floats(fn, ISAS[i], what);
    }
}

static void test_iq4_nearest_level_all_floats(void **state)
{
    (void)state;
    every_isa(check_iq4_levels, "iq4 nearest level");
}

static void test_f16_all_floats(void **state)
{
    (void)state;
    every_isa(check_f16, "f16 conversion");
}

static void test_bf16_all_floats(void **state)
{
    (void)state;
    every_isa(check_bf16, "bf16 conversion");
}

/* The checks above would pass vacuously if the ISA files installed nothing. */
static void test_tables_filled(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ISAS; ++i) {
        if (!isa_runs(ISAS[i])) {
            print_message("tables: this CPU lacks %s (skipped)\n", q_isa_name(ISAS[i]));
            continue;
        }
        for (size_t t = 0; t < N_TYPES; ++t)
            simd_kernels(&TYPES[t], ISAS[i]);
    }
}

#define T(name) cmocka_unit_test(name)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_tables_filled),
        T(test_golden_q4_0),   T(test_golden_q4_1),   T(test_golden_q5_0),   T(test_golden_q5_1),
        T(test_golden_q8_0),   T(test_golden_q8_1),   T(test_golden_q2_K),   T(test_golden_q3_K),
        T(test_golden_q4_K),   T(test_golden_q5_K),   T(test_golden_q6_K),   T(test_golden_q8_K),
        T(test_golden_iq4_nl), T(test_golden_iq4_xs), T(test_golden_f16),    T(test_golden_bf16),
        T(test_random_q4_0),   T(test_random_q4_1),   T(test_random_q5_0),   T(test_random_q5_1),
        T(test_random_q8_0),   T(test_random_q8_1),   T(test_random_q2_K),   T(test_random_q3_K),
        T(test_random_q4_K),   T(test_random_q5_K),   T(test_random_q6_K),   T(test_random_q8_K),
        T(test_random_iq4_nl), T(test_random_iq4_xs), T(test_random_f16),    T(test_random_bf16),
        T(test_rows_threads_isas),
        T(test_iq4_nearest_level_all_floats),
        T(test_f16_all_floats),
        T(test_bf16_all_floats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
