/* detmath.c — see detmath.h. Range reduction (Cody–Waite) then a Taylor polynomial in Horner form;
 * every step is an IEEE operation in double, rounded to nearest. */
#include "detmath.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../quant/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
void qk_expf_array_avx512(float *y, const float *x, size_t n);
#endif

void qk_expf_array(float *y, const float *x, size_t n)
{
#if defined(__x86_64__) || defined(__i386__)
    if (q_isa_active() == Q_ISA_AVX512) {
        qk_expf_array_avx512(y, x, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        y[i] = qk_expf(x[i]);
}

/* ln 2 split so that k · LN2_HI is exact for |k| < 2^20 (LN2_HI has 32 trailing zero bits). */
static const double LN2_HI = 6.93147180369123816490e-01, LN2_LO = 1.90821492927058770002e-10;
static const double LOG2E = 1.44269504088896338700e+00;
/* π/2 in three parts of 33 bits (fdlibm's pio2_1, pio2_2, pio2_3): k · part is exact for k < 2^20. */
static const double PIO2_1 = 1.57079632673412561417e+00, PIO2_2 = 6.07710050630396597660e-11,
                    PIO2_3 = 2.02226624871116645580e-21;
static const double TWO_OVER_PI = 6.36619772367581382433e-01;

/* Round to the nearest integer, ties to even, for |t| < 2^51: adding and removing 1.5·2^52 leaves
 * the integer part (IEEE rounding, no library call). */
static double round_int(double t)
{
    const double magic = 6755399441055744.0;
    return (t + magic) - magic;
}

/* 2^k for -1022 <= k <= 1023, exactly. */
static double pow2i(int k)
{
    const uint64_t bits = (uint64_t)(k + 1023) << 52;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* e^r for |r| <= ln2/2 + tiny: Taylor to degree 13 (remainder < 3e-20 relative). */
static double exp_poly(double r)
{
    static const double c[] = {
        1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
        1.0 / 40320.0,      1.0 / 5040.0,      1.0 / 720.0,      1.0 / 120.0,     1.0 / 24.0,
        1.0 / 6.0,          0.5,               1.0,              1.0};
    double p = c[0];
    for (size_t i = 1; i < sizeof c / sizeof c[0]; i++)
        p = p * r + c[i];
    return p;
}

double qk_exp(double x)
{
    if (x != x)
        return x;
    if (x > 709.78)
        return INFINITY;
    if (x < -745.2)
        return 0.0;
    const double k = round_int(x * LOG2E);
    const double r = (x - k * LN2_HI) - k * LN2_LO;
    const int ki = (int)k;
    /* Split the scale so both factors stay normal near the ends of the range. */
    if (ki < -1000)
        return exp_poly(r) * pow2i(ki + 200) * pow2i(-200);
    if (ki > 1000)
        return exp_poly(r) * pow2i(ki - 200) * pow2i(200);
    return exp_poly(r) * pow2i(ki);
}

const double qk_exp2_32[32] = {
    0x1.0000000000000p+0, 0x1.059b0d3158574p+0, 0x1.0b5586cf9890fp+0, 0x1.11301d0125b51p+0,
    0x1.172b83c7d517bp+0, 0x1.1d4873168b9aap+0, 0x1.2387a6e756238p+0, 0x1.29e9df51fdee1p+0,
    0x1.306fe0a31b715p+0, 0x1.371a7373aa9cbp+0, 0x1.3dea64c123422p+0, 0x1.44e086061892dp+0,
    0x1.4bfdad5362a27p+0, 0x1.5342b569d4f82p+0, 0x1.5ab07dd485429p+0, 0x1.6247eb03a5585p+0,
    0x1.6a09e667f3bcdp+0, 0x1.71f75e8ec5f74p+0, 0x1.7a11473eb0187p+0, 0x1.82589994cce13p+0,
    0x1.8ace5422aa0dbp+0, 0x1.93737b0cdc5e5p+0, 0x1.9c49182a3f090p+0, 0x1.a5503b23e255dp+0,
    0x1.ae89f995ad3adp+0, 0x1.b7f76f2fb5e47p+0, 0x1.c199bdd85529cp+0, 0x1.cb720dcef9069p+0,
    0x1.d5818dcfba487p+0, 0x1.dfc97337b9b5fp+0, 0x1.ea4afa2a490dap+0, 0x1.f50765b6e4540p+0};

double qk_log(double x)
{
    if (x != x || x == INFINITY)
        return x;
    if (x == 0.0)
        return -INFINITY;
    if (x < 0.0)
        return NAN;
    /* x = m · 2^e with m in [sqrt(1/2), sqrt(2)), read from the bits (subnormals scaled first). */
    int e = 0;
    if (x < 2.2250738585072014e-308) {
        x *= 18014398509481984.0; /* 2^54 */
        e = -54;
    }
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    e += (int)((bits >> 52) & 0x7FF) - 1023;
    bits = (bits & 0x000FFFFFFFFFFFFFULL) | 0x3FF0000000000000ULL;
    double m;
    memcpy(&m, &bits, sizeof m);
    if (m > 1.4142135623730951) {
        m *= 0.5;
        e += 1;
    }
    /* log m = 2 atanh(f), f = (m - 1)/(m + 1), |f| <= 0.1716: odd series to f^31. */
    const double f = (m - 1.0) / (m + 1.0), f2 = f * f;
    double p = 1.0 / 31.0;
    for (int n = 29; n >= 1; n -= 2)
        p = p * f2 + 1.0 / (double)n;
    const double lm = 2.0 * f * p;
    return ((double)e * LN2_HI + lm) + (double)e * LN2_LO;
}

float qk_powf(float b, float e) { return (float)qk_exp((double)e * qk_log((double)b)); }

double qk_pow(double b, double e)
{
    if (e == 0.0)
        return 1.0;
    if (b == 0.0)
        return e > 0.0 ? 0.0 : INFINITY;
    return qk_exp(e * qk_log(b));
}

/* sin r and cos r for |r| <= π/4 + tiny: Taylor to degree 17/18 (remainder < 1e-19). */
static double sin_poly(double r)
{
    const double r2 = r * r;
    /* r - r³/3! + r⁵/5! - …: coefficients of r^(2i+1) from 1/17! down to -1/3!. */
    static const double c[] = {1.0 / 355687428096000.0, -1.0 / 1307674368000.0, 1.0 / 6227020800.0,
                               -1.0 / 39916800.0,       1.0 / 362880.0,         -1.0 / 5040.0,
                               1.0 / 120.0,             -1.0 / 6.0};
    double p = c[0];
    for (size_t i = 1; i < sizeof c / sizeof c[0]; i++)
        p = p * r2 + c[i];
    return r + r * r2 * p;
}

static double cos_poly(double r)
{
    const double r2 = r * r;
    /* 1 - r²/2 + r⁴/4! - …, coefficients of r^(2i) from 1/18! down to 1/4!. */
    static const double c[] = {-1.0 / 6402373705728000.0, 1.0 / 20922789888000.0, -1.0 / 87178291200.0,
                               1.0 / 479001600.0,         -1.0 / 3628800.0,       1.0 / 40320.0,
                               -1.0 / 720.0,              1.0 / 24.0};
    double p = c[0];
    for (size_t i = 1; i < sizeof c / sizeof c[0]; i++)
        p = p * r2 + c[i];
    return 1.0 - 0.5 * r2 + r2 * r2 * p;
}

/* sin (which 0) or cos (which 1) of x. */
static double sincos1(double x, int which)
{
    if (x != x || x == INFINITY || x == -INFINITY)
        return NAN;
    const double k = round_int(x * TWO_OVER_PI);
    const double r = ((x - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
    const int q = ((int)((int64_t)k & 3) + which) & 3;
    switch (q) {
    case 0:
        return sin_poly(r);
    case 1:
        return cos_poly(r);
    case 2:
        return -sin_poly(r);
    default:
        return -cos_poly(r);
    }
}

float qk_sinf(float x) { return (float)sincos1((double)x, 0); }
float qk_cosf(float x) { return (float)sincos1((double)x, 1); }
