/* test_detmath.c — calib/detmath.c's exp, log, sin, cos against independent references.
 *
 * The float functions must return the correctly rounded value wherever the C library's double
 * function rounded to float is unambiguous (it is within 1 ULP of double, far below the float
 * rounding step, so the two agree except within ~1e-9 ULP of a float midpoint: none of the swept
 * points is); the double functions must be within 2 ULP of the C library's. Plus exact values
 * (exp 0 = 1, log 1 = 0, sin 0 = 0, cos 0 = 1, log of powers of two), special values (NaN, ±inf,
 * 0, overflow, underflow) and a textbook constant. */
#include "tu.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../calib/detmath.h"
#include "../quant/cpu.h"

static int64_t ulps(double a, double b)
{
    int64_t ia, ib;
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    if (ia < 0)
        ia = INT64_MIN - ia;
    if (ib < 0)
        ib = INT64_MIN - ib;
    return ia > ib ? ia - ib : ib - ia;
}

static void test_expf_correctly_rounded(void **state)
{
    (void)state;
    long n = 0;
    for (double x = -87.0; x < 88.7; x += 0.000913) {
        const float xf = (float)x, want = (float)exp((double)xf), got = qk_expf(xf);
        if (memcmp(&got, &want, sizeof got))
            fail_msg("qk_expf(%a) = %a, correctly rounded %a", (double)xf, (double)got, (double)want);
        n++;
    }
    assert_true(n > 190000);
}

static void test_sincos_correctly_rounded(void **state)
{
    (void)state;
    /* RoPE's arguments: positions up to 10^5 times frequencies <= 1. */
    for (double x = -1.0e5; x < 1.0e5; x += 0.3917) {
        const float xf = (float)x;
        const float s = qk_sinf(xf), c = qk_cosf(xf);
        const float ws = (float)sin((double)xf), wc = (float)cos((double)xf);
        if (memcmp(&s, &ws, sizeof s) || memcmp(&c, &wc, sizeof c))
            fail_msg("x = %a: sin %a cos %a, correctly rounded %a %a", (double)xf, (double)s, (double)c,
                     (double)ws, (double)wc);
    }
}

static void test_double_functions(void **state)
{
    (void)state;
    for (double x = -700.0; x < 709.0; x += 0.01731)
        if (ulps(qk_exp(x), exp(x)) > 2)
            fail_msg("qk_exp(%a) = %a, libm %a", x, qk_exp(x), exp(x));
    for (double x = 1e-300; x < 1e300; x *= 1.0173)
        if (ulps(qk_log(x), log(x)) > 2)
            fail_msg("qk_log(%a) = %a, libm %a", x, qk_log(x), log(x));
    for (double x = 0.25; x < 4.0; x += 1.3e-4)
        if (fabs(qk_log(x) - log(x)) > 2 * DBL_EPSILON)
            fail_msg("qk_log(%a) = %a, libm %a", x, qk_log(x), log(x));
    assert_true(ulps(qk_log(4.9e-324), log(4.9e-324)) <= 2); /* the smallest subnormal */
    assert_true(ulps(qk_exp(1.0), 2.718281828459045) <= 1);
    assert_true(ulps(qk_pow(10000.0, -0.5), 0.01) <= 16); /* exp(e·log b): log's error scaled by e·log b */
}

static void test_exact_and_special_values(void **state)
{
    (void)state;
    assert_true(qk_expf(0.0f) == 1.0f && qk_exp(0.0) == 1.0);
    assert_true(qk_log(1.0) == 0.0);
    for (int k = -1074; k <= 1023; k += 7)
        assert_true(qk_log(ldexp(1.0, k)) == (double)k * 0.6931471805599453 ||
                    ulps(qk_log(ldexp(1.0, k)), (double)k * 0.6931471805599453) <= 1);
    assert_true(qk_sinf(0.0f) == 0.0f && qk_cosf(0.0f) == 1.0f);
    assert_true(qk_expf(-INFINITY) == 0.0f && qk_expf(INFINITY) == INFINITY && isnan(qk_expf(NAN)));
    assert_true(qk_expf(89.0f) == INFINITY && qk_expf(-200.0f) == 0.0f);
    assert_true(qk_expf(-103.5f) > 0.0f); /* subnormal, not flushed */
    assert_true(qk_exp(710.0) == INFINITY && qk_exp(-746.0) == 0.0 && qk_exp(-740.0) > 0.0);
    assert_true(qk_log(0.0) == -INFINITY && isnan(qk_log(-1.0)) && qk_log(INFINITY) == INFINITY);
    assert_true(isnan(qk_sinf(INFINITY)) && isnan(qk_cosf(NAN)));
    assert_true(qk_pow(0.0, 0.0) == 1.0 && qk_pow(0.0, 0.5) == 0.0 && qk_pow(3.0, 0.0) == 1.0);
    assert_true(qk_powf(10000.0f, -2.0f / 64.0f) == (float)pow(10000.0, -2.0 / 64.0));
}

/* qk_expf_array gives qk_expf's bits on every ISA the machine runs: a sweep over the whole float
 * range the function distinguishes, the thresholds and their neighbours, every table index, and
 * the specials; lengths that leave tails. */
static void test_expf_array_same_bits(void **state)
{
    (void)state;
    enum { N = 400003 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    size_t n = 0;
    const float special[] = {0.0f, -0.0f, 88.73f, nextafterf(88.73f, 0), nextafterf(88.73f, 100), -104.0f,
                             nextafterf(-104.0f, 0), nextafterf(-104.0f, -200), 1e-30f, -1e-30f, 1e-45f,
                             FLT_MAX, -FLT_MAX, INFINITY, -INFINITY, NAN, -NAN, 87.0f, -87.5f, -103.9f};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++)
        x[n++] = special[i];
    uint32_t b = 0x9E3779B9u;
    while (n < N / 2) { /* -120 .. 100, uniformly */
        b = b * 1664525u + 1013904223u;
        x[n++] = -120.0f + 220.0f * (float)(b >> 8) / 16777216.0f;
    }
    while (n < N) { /* any bit pattern */
        b = b * 1664525u + 1013904223u;
        memcpy(&x[n++], &b, sizeof b);
    }
    const q_isa isas[] = {Q_ISA_SCALAR, Q_ISA_AVX2, Q_ISA_AVX512, Q_ISA_NEON};
    const q_isa keep = q_isa_active();
    for (size_t k = 0; k < sizeof isas / sizeof *isas; k++) {
        if (q_isa_set(isas[k]) != 0)
            continue;
        const size_t lens[] = {N, N - 1, 7, 9, 0};
        for (size_t l = 0; l < sizeof lens / sizeof *lens; l++) {
            memset(y, 0xA5, N * sizeof *y);
            qk_expf_array(y, x, lens[l]);
            for (size_t i = 0; i < lens[l]; i++) {
                const float want = qk_expf(x[i]);
                if (memcmp(&y[i], &want, sizeof want))
                    fail_msg("%s: qk_expf_array(%a) = %a, qk_expf %a", q_isa_name(isas[k]), (double)x[i],
                             (double)y[i], (double)want);
            }
            if (lens[l] < N)
                assert_int_equal(((uint32_t *)y)[lens[l]], 0xA5A5A5A5u); /* nothing past n */
        }
        /* in place */
        memcpy(y, x, N * sizeof *y);
        qk_expf_array(y, y, N);
        for (size_t i = 0; i < N; i++) {
            const float want = qk_expf(x[i]);
            assert_memory_equal(&y[i], &want, sizeof want);
        }
    }
    q_isa_set(keep);
    free(x);
    free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expf_correctly_rounded),
        cmocka_unit_test(test_sincos_correctly_rounded),
        cmocka_unit_test(test_double_functions),
        cmocka_unit_test(test_exact_and_special_values),
        cmocka_unit_test(test_expf_array_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
