/* test_simd_dot.c — the AVX2 and AVX-512 dequantizers and dot products against the scalar
 * reference, for every type they cover and every ISA this machine runs (the others are skipped,
 * visibly).
 *
 * Dequantizers must give the reference's floats bit for bit: on ggml's golden blocks, on random
 * bytes (any code, any scale — NaN and Inf halves included) and, for f16/bf16, on every half.
 * Dot products must equal the reference bit for bit: every ISA follows the canonical summation
 * order of quant/quant.h (exact integer block sums, then one FMA chain; 16 float lanes and a fixed
 * tree for float weights). Accuracy is checked separately, against a double product of the
 * dequantized operands within
 *     |a - b| <= DOT_RTOL * Σ|x_i·y_i| + DOT_ATOL. */
#include "tu.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/blocks.h"
#include "../quant/fp16.h"
#include "../quant/quant.h"

#define DOT_RTOL 1e-5
#define DOT_ATOL 1e-30

typedef struct {
    const char *name;
    int type;
    int golden; /* 0: none, 1: unweighted only, 2: unweighted and .imat */
    /* Offsets of the half-precision scale fields in a block (-1: none), kept finite in the
     * random-code dot tests so that every code, not the scale, is what varies. */
    int d_off, m_off;
} simd_type;

#define OFF(t, f) (int)offsetof(block_##t, f)

static const simd_type TYPES[] = {
    {"f32", Q_TYPE_F32, 0, -1, -1},
    {"f16", Q_TYPE_F16, 1, -1, -1},
    {"bf16", Q_TYPE_BF16, 1, -1, -1},
    {"q4_0", Q_TYPE_Q4_0, 2, OFF(q4_0, d), -1},
    {"q4_1", Q_TYPE_Q4_1, 2, OFF(q4_1, d), OFF(q4_1, m)},
    {"q5_0", Q_TYPE_Q5_0, 2, OFF(q5_0, d), -1},
    {"q5_1", Q_TYPE_Q5_1, 2, OFF(q5_1, d), OFF(q5_1, m)},
    {"q8_0", Q_TYPE_Q8_0, 1, OFF(q8_0, d), -1},
    {"q2_K", Q_TYPE_Q2_K, 2, OFF(q2_K, d), OFF(q2_K, dmin)},
    {"q3_K", Q_TYPE_Q3_K, 2, OFF(q3_K, d), -1},
    {"q4_K", Q_TYPE_Q4_K, 2, OFF(q4_K, d), OFF(q4_K, dmin)},
    {"q5_K", Q_TYPE_Q5_K, 2, OFF(q5_K, d), OFF(q5_K, dmin)},
    {"q6_K", Q_TYPE_Q6_K, 2, OFF(q6_K, d), -1},
    {"iq4_nl", Q_TYPE_IQ4_NL, 2, OFF(iq4_nl, d), -1},
    {"iq4_xs", Q_TYPE_IQ4_XS, 2, OFF(iq4_xs, d), -1},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static const struct {
    const char *name;
    int64_t nrows, n_per_row;
} CASES[] = {{"gauss", 32, 512}, {"edge", 16, 256}, {"real", 64, 256}};

static const q_isa ISA_AVX2 = Q_ISA_AVX2, ISA_AVX512 = Q_ISA_AVX512;

/* ---- helpers ---- */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static q_isa isa_or_skip(void **state)
{
    const q_isa isa = *(const q_isa *)*state;
    if (q_isa_best() == Q_ISA_NEON || q_isa_best() < isa) {
        print_message("%s not supported by this CPU (test skipped)\n", q_isa_name(isa));
        skip();
    }
    return isa;
}

static const q_kernels *ref_k(int type) { return q_kernels_get_isa(type, Q_ISA_SCALAR); }

static const q_kernels *isa_table(q_isa isa)
{
    return isa == Q_ISA_AVX512 ? q_kernels_avx512_dot : q_kernels_avx2_dot;
}

static int64_t blck(int type) { return q_type_info(type)->blck_size; }

static void *read_shared(const char *rel, size_t expect)
{
    TU_SHARED(path, rel);
    size_t size;
    void *p = tu_read(path, &size);
    assert_int_equal(size, expect);
    return p;
}

static int same_float_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Dequantizes k values with the reference and with the ISA kernel; any differing bit fails. */
static void check_deq_exact(const simd_type *t, q_isa isa, const void *src, int64_t k, const char *what)
{
    float *want = xmalloc((size_t)k * sizeof(float)), *got = xmalloc((size_t)k * sizeof(float));
    memset(got, 0xA5, (size_t)k * sizeof(float));
    ref_k(t->type)->dequantize(src, want, k);
    isa_table(isa)[t->type].dequantize(src, got, k);
    for (int64_t i = 0; i < k; i++)
        if (!same_float_bits(want[i], got[i]))
            fail_msg("%s %s %s: value %lld is %a (0x%08x), the reference gives %a (0x%08x)",
                     q_isa_name(isa), t->name, what, (long long)i, got[i], q_f32_bits(got[i]), want[i],
                     q_f32_bits(want[i]));
    free(want);
    free(got);
}

/* Σ|x_i·y_i| over the dequantized operands, in double. */
/* Σ|x_i·y_i| over the dequantized operands; *exact = Σ x_i·y_i (both in double). */
static double abs_dot(const simd_type *t, const void *x, const void *y, int n, double *exact)
{
    const int vdt = ref_k(t->type)->vec_dot_type;
    float *xf = xmalloc((size_t)n * sizeof(float)), *yf = xmalloc((size_t)n * sizeof(float));
    ref_k(t->type)->dequantize(x, xf, n);
    ref_k(vdt)->dequantize(y, yf, n);
    double s = 0, e = 0;
    for (int i = 0; i < n; i++) {
        s += fabs((double)xf[i] * (double)yf[i]);
        e += (double)xf[i] * (double)yf[i];
    }
    free(xf);
    free(yf);
    *exact = e;
    return s;
}

/* One dot of n values: the ISA kernel equals the reference bit for bit (NaN where it gives NaN),
 * and the reference is within the stated tolerance of the double product of the dequantized
 * operands. */
static void check_dot(const simd_type *t, q_isa isa, const void *x, const void *y, int n, const char *what)
{
    float want = 0, got = 0;
    ref_k(t->type)->vec_dot(n, &want, x, y);
    q_kernels_get_isa(t->type, isa)->vec_dot(n, &got, x, y);
    if (isnan(want)) {
        if (!isnan(got))
            fail_msg("%s %s %s n=%d: %g where the reference gives NaN", q_isa_name(isa), t->name, what, n,
                     got);
        return;
    }
    if (memcmp(&got, &want, sizeof got))
        fail_msg("%s %s %s n=%d: %a, the reference gives %a (must be the same bits)", q_isa_name(isa),
                 t->name, what, n, (double)got, (double)want);
    /* q8_1 stores d_y·Σq rounded to a half: the min term is not the dequantized product. */
    if (ref_k(t->type)->vec_dot_type == Q_TYPE_Q8_1)
        return;
    double exact;
    const double tol = DOT_RTOL * abs_dot(t, x, y, n, &exact) + DOT_ATOL;
    if (isfinite(exact) && !(fabs((double)want - exact) <= tol))
        fail_msg("%s %s n=%d: the reference gives %.9g, the double product %.9g (tolerance %.3g)", t->name,
                 what, n, want, exact, tol);
}

/* Quantizes k floats into the activation type of t with the reference. */
static void *activations(const simd_type *t, const float *x, int64_t k)
{
    const int vdt = ref_k(t->type)->vec_dot_type;
    void *y = xmalloc(q_row_size(vdt, k));
    ref_k(vdt)->from_float(x, y, k);
    return y;
}

static float gauss(uint64_t *rng)
{
    const double u1 = ((tu_rand(rng) >> 11) + 1) * (1.0 / 9007199254740992.0);
    const double u2 = ((tu_rand(rng) >> 11) + 1) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

static void fill_random_bytes(uint8_t *p, size_t n, uint64_t *rng)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(tu_rand(rng) >> 56);
}

/* Random codes with finite scales: every byte random, then each scale field a half in
 * ±[2^-6, 2^2). f16/bf16 rows become random finite values instead. */
static void *random_weights(const simd_type *t, int64_t k, uint64_t *rng)
{
    const size_t bytes = q_row_size(t->type, k);
    uint8_t *w = xmalloc(bytes);
    if (t->d_off < 0) {
        float *x = xmalloc((size_t)k * sizeof(float));
        for (int64_t i = 0; i < k; i++)
            x[i] = gauss(rng);
        ref_k(t->type)->from_float(x, w, k);
        free(x);
        return w;
    }
    fill_random_bytes(w, bytes, rng);
    const size_t bs = q_type_info(t->type)->type_size;
    for (size_t off = 0; off < bytes; off += bs) {
        const int offs[2] = {t->d_off, t->m_off};
        for (int f = 0; f < 2; f++) {
            if (offs[f] < 0)
                continue;
            const float v = ldexpf(1.0f + 0.5f * tu_randf(rng), (int)(tu_rand(rng) % 8) - 6);
            const uint16_t h = q_fp32_to_fp16(v);
            memcpy(w + off + (size_t)offs[f], &h, sizeof h);
        }
    }
    return w;
}

/* ---- wiring ---- */

/* Every covered type has both kernels in the ISA's table, and the dispatch hands them out. */
static void test_table(void **state)
{
    const q_isa isa = *(const q_isa *)*state;
    for (size_t i = 0; i < N_TYPES; i++) {
        const simd_type *t = &TYPES[i];
        const q_kernels *e = &isa_table(isa)[t->type];
        /* The dot is the ISA's own: its dot table's, or its tiled product's 1 × 1 (quant.h). */
        const q_kernels *m = q_kernels_get_isa(t->type, isa);
        assert_non_null(m->vec_dot);
        assert_true(m->vec_dot != ref_k(t->type)->vec_dot);
        assert_true(!e->vec_dot || m->vec_dot == e->vec_dot);
        if (t->type == Q_TYPE_F32)
            continue; /* its dequantizer is a copy */
        assert_non_null(e->dequantize);
        assert_true(q_kernels_get_isa(t->type, isa)->dequantize == e->dequantize);
    }
}

/* ---- dequantization ---- */

static void test_deq_golden(void **state)
{
    const q_isa isa = isa_or_skip(state);
    char rel[256];
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        for (size_t i = 0; i < N_TYPES; i++) {
            const simd_type *t = &TYPES[i];
            for (int imat = 0; imat < t->golden; imat++) {
                const int64_t k = CASES[c].nrows * CASES[c].n_per_row;
                snprintf(rel, sizeof rel, "golden/quant/%s.%s%s.bin", CASES[c].name, t->name,
                         imat ? ".imat" : "");
                void *blocks = read_shared(rel, q_row_size(t->type, k));
                check_deq_exact(t, isa, blocks, k, rel);

                /* And ggml's own floats (its NaN row stays NaN). */
                snprintf(rel, sizeof rel, "golden/quant/%s.%s%s.deq.f32", CASES[c].name, t->name,
                         imat ? ".imat" : "");
                float *want = read_shared(rel, (size_t)k * sizeof(float));
                float *got = xmalloc((size_t)k * sizeof(float));
                isa_table(isa)[t->type].dequantize(blocks, got, k);
                for (int64_t j = 0; j < k; j++)
                    if (!same_float_bits(want[j], got[j]) && !(isnan(want[j]) && isnan(got[j])))
                        fail_msg("%s %s: value %lld is %a, ggml's is %a", q_isa_name(isa), rel,
                                 (long long)j, got[j], want[j]);
                free(got);
                free(want);
                free(blocks);
            }
        }
    }
}

/* Random bytes: every code, and scales that include NaN, Inf, subnormals and zeros. */
static void test_deq_random(void **state)
{
    const q_isa isa = isa_or_skip(state);
    uint64_t rng = 0x5EED0001;
    for (size_t i = 0; i < N_TYPES; i++) {
        const simd_type *t = &TYPES[i];
        if (t->type == Q_TYPE_F32)
            continue;
        for (int rep = 0; rep < 8; rep++) {
            const int64_t k = blck(t->type) * (1 + rep * 7);
            const size_t bytes = q_row_size(t->type, k);
            uint8_t *src = xmalloc(bytes);
            fill_random_bytes(src, bytes, &rng);
            check_deq_exact(t, isa, src, k, "random bytes");
            free(src);
        }
    }
}

/* Every half, in rows whose lengths leave every possible tail after the 8-wide loop. */
static void test_deq_all_halves(void **state)
{
    const q_isa isa = isa_or_skip(state);
    uint16_t *h = xmalloc(65536 * sizeof(uint16_t));
    for (uint32_t i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    for (int ti = 1; ti <= 2; ti++) {
        const simd_type *t = &TYPES[ti];
        check_deq_exact(t, isa, h, 65536, "all halves");
        for (int64_t k = 1; k <= 17; k++)
            check_deq_exact(t, isa, h + 1000 * k, k, "short row");
    }
    free(h);
}

/* ---- dot products ---- */

/* ggml's golden blocks against real activations (another row of the same input), over every
 * prefix of whole blocks. */
static void test_dot_golden(void **state)
{
    const q_isa isa = isa_or_skip(state);
    char rel[256];
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        const int64_t nr = CASES[c].nrows, np = CASES[c].n_per_row;
        snprintf(rel, sizeof rel, "golden/quant/%s.input.f32", CASES[c].name);
        float *input = read_shared(rel, (size_t)(nr * np) * sizeof(float));
        for (size_t i = 0; i < N_TYPES; i++) {
            const simd_type *t = &TYPES[i];
            for (int imat = 0; imat < t->golden; imat++) {
                const size_t row = q_row_size(t->type, np);
                snprintf(rel, sizeof rel, "golden/quant/%s.%s%s.bin", CASES[c].name, t->name,
                         imat ? ".imat" : "");
                uint8_t *w = read_shared(rel, row * (size_t)nr);
                for (int64_t r = 0; r < nr; r++) {
                    void *y = activations(t, input + ((r + 1) % nr) * np, np);
                    for (int64_t n = blck(t->type); n <= np; n += blck(t->type))
                        check_dot(t, isa, w + (size_t)r * row, y, (int)n, rel);
                    free(y);
                }
                free(w);
            }
        }
        free(input);
    }
}

/* Random codes (any byte, finite scales) against Gaussian activations of varying size. */
static void test_dot_random(void **state)
{
    const q_isa isa = isa_or_skip(state);
    uint64_t rng = 0x5EED0002;
    for (size_t i = 0; i < N_TYPES; i++) {
        const simd_type *t = &TYPES[i];
        const int64_t bs = blck(t->type) == 1 ? 32 : blck(t->type);
        const int max_blocks = bs == 256 ? 16 : 48;
        for (int nbk = 1; nbk <= max_blocks; nbk += (nbk < 8 ? 1 : 7)) {
            const int64_t k = bs * nbk;
            float *x = xmalloc((size_t)k * sizeof(float));
            const float scale = ldexpf(1.0f, (int)(tu_rand(&rng) % 20) - 10);
            for (int64_t j = 0; j < k; j++)
                x[j] = scale * gauss(&rng);
            void *w = random_weights(t, k, &rng);
            void *y = activations(t, x, k);
            check_dot(t, isa, w, y, (int)k, "random codes");
            free(y);
            free(w);
            free(x);
        }
    }
}

/* Weights the reference quantizer made from Gaussian data, with and without outliers, and
 * constant or all-zero rows. */
static void test_dot_quantized(void **state)
{
    const q_isa isa = isa_or_skip(state);
    uint64_t rng = 0x5EED0003;
    const int64_t k = 1024;
    float *xw = xmalloc(k * sizeof(float)), *xa = xmalloc(k * sizeof(float));
    for (size_t i = 0; i < N_TYPES; i++) {
        const simd_type *t = &TYPES[i];
        for (int shape = 0; shape < 4; shape++) {
            for (int64_t j = 0; j < k; j++) {
                xw[j] = shape == 0 ? gauss(&rng)
                    : shape == 1   ? (tu_rand(&rng) % 97 == 0 ? 30.0f : 0.1f) * gauss(&rng)
                    : shape == 2   ? 0.75f
                                   : 0.0f;
                xa[j] = gauss(&rng) * (j % 61 == 0 ? 20.0f : 1.0f);
            }
            void *w = xmalloc(q_row_size(t->type, k));
            ref_k(t->type)->quantize(xw, w, 1, k, NULL);
            void *y = activations(t, xa, k);
            for (int64_t nb = 1; nb * blck(t->type) < k; nb = 2 * nb + 1)
                check_dot(t, isa, w, y, (int)(nb * blck(t->type)), "quantized prefix");
            check_dot(t, isa, w, y, (int)k, "quantized");
            free(y);
            free(w);
        }
    }
    free(xw);
    free(xa);
}

/* The float dots: every length from 1 to 100 (all tails), then long rows. */
static void test_dot_float_lengths(void **state)
{
    const q_isa isa = isa_or_skip(state);
    uint64_t rng = 0x5EED0004;
    for (int ti = 0; ti <= 2; ti++) {
        const simd_type *t = &TYPES[ti];
        for (int n = 1; n <= 4096; n = n < 100 ? n + 1 : n * 2 + 13) {
            float *x = xmalloc((size_t)n * sizeof(float)), *a = xmalloc((size_t)n * sizeof(float));
            for (int j = 0; j < n; j++) {
                x[j] = gauss(&rng);
                a[j] = gauss(&rng);
            }
            void *w = xmalloc(q_row_size(t->type, n));
            ref_k(t->type)->from_float(x, w, n);
            check_dot(t, isa, w, a, n, "lengths");
            free(w);
            free(a);
            free(x);
        }
    }
}

/* ---- matrix level ---- */

/* W (rows × n) times 3 activation rows as the engine does it: the ISA's from_float of the dot
 * type, then its vec_dot. Checked against the scalar pipeline bit for bit, and
 * against an independent double product of the dequantized W with the float activations, which
 * may differ by at most what quantizing the activations moved: Σ|w|·|x - x̂| (+ the tolerance). */
static void test_matrix(void **state)
{
    const q_isa isa = isa_or_skip(state);
    enum { ROWS = 24, T = 3, N = 768 };
    uint64_t rng = 0x5EED0005;
    float *W = xmalloc(ROWS * N * sizeof(float)), *X = xmalloc(T * N * sizeof(float));
    float *Wd = xmalloc(ROWS * N * sizeof(float)), *Xd = xmalloc(N * sizeof(float));
    for (size_t i = 0; i < N_TYPES; i++) {
        const simd_type *t = &TYPES[i];
        const int vdt = ref_k(t->type)->vec_dot_type;
        for (int j = 0; j < ROWS * N; j++)
            W[j] = gauss(&rng) * (1 + j / N);
        for (int j = 0; j < T * N; j++)
            X[j] = gauss(&rng);
        const size_t wrow = q_row_size(t->type, N), xrow = q_row_size(vdt, N);
        uint8_t *Wq = xmalloc(wrow * ROWS), *Xq = xmalloc(xrow * T), *Xr = xmalloc(xrow * T);
        ref_k(t->type)->quantize(W, Wq, ROWS, N, NULL);
        ref_k(t->type)->dequantize(Wq, Wd, ROWS * N);
        const q_kernels *k = q_kernels_get_isa(t->type, isa), *kv = q_kernels_get_isa(vdt, isa);
        for (int tt = 0; tt < T; tt++) {
            kv->from_float(X + tt * N, Xq + tt * xrow, N);
            ref_k(vdt)->from_float(X + tt * N, Xr + tt * xrow, N);
        }
        for (int tt = 0; tt < T; tt++) {
            ref_k(vdt)->dequantize(Xq + tt * xrow, Xd, N);
            for (int r = 0; r < ROWS; r++) {
                float got, want;
                k->vec_dot(N, &got, Wq + r * wrow, Xq + tt * xrow);
                ref_k(t->type)->vec_dot(N, &want, Wq + r * wrow, Xr + tt * xrow);
                double exact = 0, moved = 0, mag = 0;
                for (int j = 0; j < N; j++) {
                    const double wv = Wd[r * N + j], xv = X[tt * N + j];
                    exact += wv * xv;
                    moved += fabs(wv) * fabs(xv - Xd[j]);
                    mag += fabs(wv * Xd[j]);
                }
                const double tol = DOT_RTOL * mag + DOT_ATOL;
                if (memcmp(&got, &want, sizeof got))
                    fail_msg("%s %s row %d token %d: %a, scalar pipeline %a (must be the same bits)",
                             q_isa_name(isa), t->name, r, tt, (double)got, (double)want);
                if (!(fabs((double)got - exact) <= moved + tol))
                    fail_msg("%s %s row %d token %d: %.9g, exact %.9g (bound %.3g)", q_isa_name(isa),
                             t->name, r, tt, got, exact, moved + tol);
            }
        }
        free(Wq);
        free(Xq);
        free(Xr);
    }
    free(W);
    free(X);
    free(Wd);
    free(Xd);
}

#define ISA_TESTS(isa)                                                                                     \
    cmocka_unit_test_prestate(test_table, (void *)&isa),                                                   \
        cmocka_unit_test_prestate(test_deq_golden, (void *)&isa),                                          \
        cmocka_unit_test_prestate(test_deq_random, (void *)&isa),                                          \
        cmocka_unit_test_prestate(test_deq_all_halves, (void *)&isa),                                      \
        cmocka_unit_test_prestate(test_dot_golden, (void *)&isa),                                          \
        cmocka_unit_test_prestate(test_dot_random, (void *)&isa),                                          \
        cmocka_unit_test_prestate(test_dot_quantized, (void *)&isa),                                       \
        cmocka_unit_test_prestate(test_dot_float_lengths, (void *)&isa),                                   \
        cmocka_unit_test_prestate(test_matrix, (void *)&isa)

int main(void)
{
    const struct CMUnitTest tests[] = {ISA_TESTS(ISA_AVX2), ISA_TESTS(ISA_AVX512)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
