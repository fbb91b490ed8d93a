/* test_gemm.c — the tiled matrix products (q_kernels.gemm) against the scalar vec_dot, for every
 * type with a dot product and every ISA this machine runs (the others are skipped, visibly).
 *
 * Each element must equal the scalar reference's dot bit for bit (the canonical summation order
 * of quant/quant.h), and be within
 *     |a - b| <= GEMM_RTOL * Σ|w_i·x_i| + GEMM_ATOL
 * of the double product of the dequantized w and x (for the types whose dot is that product). Sizes are not multiples of any tile (13 rows × 11 tokens), rows
 * are padded (strides larger than a row) and the float types have a ragged tail (n = 100).
 * The engine relies on each element depending only on its two rows: a product over a sub-range
 * must give the same bits as the whole, and nothing outside the output rectangle is written. */
#include "tu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/quant.h"

#define GEMM_RTOL 1e-5
#define GEMM_ATOL 1e-30
#define NROWS 13
#define NTOK 11
#define PAD 24       /* bytes after each weight and activation row */
#define Y_STRIDE 17  /* floats per output row, > NROWS */
#define SENTINEL -12345.0f

static const struct {
    const char *name;
    int type, n;
} TYPES[] = {
    {"f32", Q_TYPE_F32, 100},     {"f16", Q_TYPE_F16, 100},       {"bf16", Q_TYPE_BF16, 100},
    {"q4_0", Q_TYPE_Q4_0, 160},   {"q4_1", Q_TYPE_Q4_1, 160},     {"q5_0", Q_TYPE_Q5_0, 160},
    {"q5_1", Q_TYPE_Q5_1, 160},   {"q8_0", Q_TYPE_Q8_0, 160},     {"q2_K", Q_TYPE_Q2_K, 512},
    {"q3_K", Q_TYPE_Q3_K, 512},   {"q4_K", Q_TYPE_Q4_K, 512},     {"q5_K", Q_TYPE_Q5_K, 512},
    {"q6_K", Q_TYPE_Q6_K, 512},   {"iq4_nl", Q_TYPE_IQ4_NL, 160}, {"iq4_xs", Q_TYPE_IQ4_XS, 512},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static const q_isa ISAS[] = {Q_ISA_SCALAR, Q_ISA_AVX2, Q_ISA_AVX512};

typedef struct {
    int n;
    size_t ws, xs;        /* strides in bytes */
    unsigned char *w, *x; /* [NROWS][ws], [NTOK][xs] */
    float *wf, *xf;       /* dequantized [NROWS][n], [NTOK][n] */
} operands;

static void *xcalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    assert_non_null(p);
    return p;
}

/* Random weights quantized to type, random activations in its vec_dot_type, both padded. */
static void operands_make(operands *o, int type, int n, uint64_t seed)
{
    const q_kernels *k = q_kernels_get_isa(type, Q_ISA_SCALAR);
    const q_kernels *kx = q_kernels_get_isa(k->vec_dot_type, Q_ISA_SCALAR);
    uint64_t s = seed;
    o->n = n;
    o->ws = q_row_size(type, n) + PAD;
    o->xs = q_row_size(k->vec_dot_type, n) + PAD;
    o->w = xcalloc(NROWS * o->ws);
    o->x = xcalloc(NTOK * o->xs);
    o->wf = xcalloc(sizeof(float) * NROWS * n);
    o->xf = xcalloc(sizeof(float) * NTOK * n);
    float *src = xcalloc(sizeof(float) * n);
    for (int r = 0; r < NROWS; r++) {
        for (int i = 0; i < n; i++)
            src[i] = tu_randf(&s) * (1.0f + (float)(i % 7));
        k->quantize(src, o->w + r * o->ws, 1, n, NULL);
        k->dequantize(o->w + r * o->ws, o->wf + (size_t)r * n, n);
    }
    for (int t = 0; t < NTOK; t++) {
        for (int i = 0; i < n; i++)
            src[i] = tu_randf(&s) * 3.0f;
        kx->from_float(src, o->x + t * o->xs, n);
        kx->dequantize(o->x + t * o->xs, o->xf + (size_t)t * n, n);
    }
    free(src);
}

static void operands_free(operands *o)
{
    free(o->w);
    free(o->x);
    free(o->wf);
    free(o->xf);
}

static q_isa isa_or_skip(void **state)
{
    const q_isa isa = *(const q_isa *)*state;
    if (isa != Q_ISA_SCALAR && (q_isa_best() == Q_ISA_NEON || q_isa_best() < isa)) {
        print_message("%s not supported by this CPU (test skipped)\n", q_isa_name(isa));
        skip();
    }
    return isa;
}

static float *output_alloc(void)
{
    float *y = xcalloc(sizeof(float) * NTOK * Y_STRIDE);
    for (int i = 0; i < NTOK * Y_STRIDE; i++)
        y[i] = SENTINEL;
    return y;
}

static void check_type(q_isa isa, int ti)
{
    const int type = TYPES[ti].type, n = TYPES[ti].n;
    const q_kernels *k = q_kernels_get_isa(type, isa);
    const q_kernels *ref = q_kernels_get_isa(type, Q_ISA_SCALAR);
    assert_non_null(k->gemm);
    operands o;
    operands_make(&o, type, n, 0x9E3779B97F4A7C15ULL + (uint64_t)ti);
    float *y = output_alloc();
    k->gemm(n, NROWS, NTOK, o.w, o.ws, o.x, o.xs, y, Y_STRIDE);
    for (int t = 0; t < NTOK; t++) {
        for (int r = 0; r < NROWS; r++) {
            float want;
            ref->vec_dot(n, &want, o.w + r * o.ws, o.x + t * o.xs);
            double mag = 0, exact = 0;
            for (int i = 0; i < n; i++) {
                mag += fabs((double)o.wf[(size_t)r * n + i] * o.xf[(size_t)t * n + i]);
                exact += (double)o.wf[(size_t)r * n + i] * o.xf[(size_t)t * n + i];
            }
            const float got = y[t * Y_STRIDE + r];
            if (memcmp(&got, &want, sizeof got))
                fail_msg("%s %s row %d token %d: %a, the scalar reference %a (must be the same bits)",
                         q_isa_name(isa), TYPES[ti].name, r, t, (double)got, (double)want);
            if (q_kernels_get_isa(type, Q_ISA_SCALAR)->vec_dot_type != Q_TYPE_Q8_1)
                tu_assert_near(got, exact, GEMM_RTOL * mag + GEMM_ATOL);
        }
        for (int r = NROWS; r < Y_STRIDE; r++)
            assert_true(y[t * Y_STRIDE + r] == SENTINEL);
    }
    /* Rows 1..11 and tokens 2..10 (other tile positions and edges): the same bits. */
    float *sub = output_alloc();
    k->gemm(n, NROWS - 2, NTOK - 3, o.w + o.ws, o.ws, o.x + 2 * o.xs, o.xs, sub, Y_STRIDE);
    for (int t = 0; t < NTOK - 3; t++)
        for (int r = 0; r < NROWS - 2; r++)
            assert_memory_equal(&sub[t * Y_STRIDE + r], &y[(t + 2) * Y_STRIDE + r + 1], sizeof(float));
    free(sub);
    free(y);
    operands_free(&o);
}

static void test_gemm_matches_vec_dot(void **state)
{
    const q_isa isa = isa_or_skip(state);
    for (size_t ti = 0; ti < N_TYPES; ti++)
        check_type(isa, (int)ti);
}

/* Zero rows or tokens write nothing. */
static void test_gemm_empty(void **state)
{
    const q_isa isa = isa_or_skip(state);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const q_kernels *k = q_kernels_get_isa(TYPES[ti].type, isa);
        operands o;
        operands_make(&o, TYPES[ti].type, TYPES[ti].n, 7);
        float *y = output_alloc();
        k->gemm(o.n, 0, NTOK, o.w, o.ws, o.x, o.xs, y, Y_STRIDE);
        k->gemm(o.n, NROWS, 0, o.w, o.ws, o.x, o.xs, y, Y_STRIDE);
        for (int i = 0; i < NTOK * Y_STRIDE; i++)
            assert_true(y[i] == SENTINEL);
        free(y);
        operands_free(&o);
    }
}

/* Activation-only types have no dot, hence no gemm; every other type has one on every ISA. */
static void test_gemm_present(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof ISAS / sizeof ISAS[0]; i++) {
        assert_null(q_kernels_get_isa(Q_TYPE_Q8_K, ISAS[i])->gemm);
        assert_null(q_kernels_get_isa(Q_TYPE_Q8_1, ISAS[i])->gemm);
        for (size_t ti = 0; ti < N_TYPES; ti++)
            assert_non_null(q_kernels_get_isa(TYPES[ti].type, ISAS[i])->gemm);
    }
}

#define PER_ISA(fn)                                                                            \
    cmocka_unit_test_prestate(fn, (void *)&ISAS[0]), cmocka_unit_test_prestate(fn, (void *)&ISAS[1]), \
        cmocka_unit_test_prestate(fn, (void *)&ISAS[2])

int main(void)
{
    const struct CMUnitTest tests[] = {
        PER_ISA(test_gemm_matches_vec_dot),
        PER_ISA(test_gemm_empty),
        cmocka_unit_test(test_gemm_present),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
