/* detmath.h — exp, log, sin and cos computed with IEEE additions, multiplications and divisions
 * only, so that every machine gives the same bits.
 *
 * Why: the C library's exp/log/sin/cos are not correctly rounded, and glibc picks a different
 * implementation per CPU (an FMA variant on x86-64 with FMA, the generic one elsewhere and on
 * AArch64): rarely, but over the 10^8 softmax terms of a perplexity run certainly, the last bit
 * differs, and a CI gate near its bound could pass on one machine and fail on another. These
 * functions use no library call, no FMA (the build has -ffp-contract=off) and round-to-nearest
 * arithmetic only: the same result on every ISA, compiler and C library.
 *
 * Accuracy: the float functions are computed in double and rounded once (error well below 0.01
 * ULP before the rounding, so they almost always return the correctly rounded value); the double
 * functions are within a few ULP. Range reduction of sin/cos is exact for |x| < 1.6e6 (positions
 * times frequencies of RoPE stay far below). */
#ifndef QKIT_CALIB_DETMATH_H
#define QKIT_CALIB_DETMATH_H

#include <math.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* 2^(j/32), j < 32, correctly rounded. */
extern const double qk_exp2_32[32];

/* e^x in float: x = (k/32)·ln2 + r with |r| <= ln2/64, e^r by its Taylor polynomial to degree 5
 * (remainder < 3e-15), times 2^(k/32) from the table. Inline: the softmax, SiLU and log-softmax
 * loops call it 10^7 times per chunk. */
static inline float qk_expf(float x)
{
    if (!(x < 88.73f))
        return x != x ? x : INFINITY;
    if (x < -104.0f)
        return 0.0f;
    const double magic = 6755399441055744.0; /* 1.5·2^52: adding and removing it rounds to an integer */
    const double kd = ((double)x * 0x1.71547652b82fep+5 + magic) - magic;
    const int64_t k = (int64_t)kd, j = k & 31;
    const double r = (double)x - kd * 0x1.62e42fefa39efp-6;
    const double p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0)))));
    uint64_t bits;
    memcpy(&bits, &qk_exp2_32[j], sizeof bits);
    bits += (uint64_t)((k - j) / 32) << 52; /* the exponent of a double in [1, 2) plus (k - j)/32 */
    double s;
    memcpy(&s, &bits, sizeof s);
    return (float)(s * p);
}
/* y[i] = qk_expf(x[i]) for i < n, the same bits; 8 lanes at a time with AVX-512 (y may be x). */
void qk_expf_array(float *y, const float *x, size_t n);
double qk_exp(double x);
double qk_log(double x);        /* x <= 0: -inf for 0, NaN below */
float qk_powf(float b, float e); /* b > 0 */
double qk_pow(double b, double e); /* b >= 0: 1 for e = 0, 0 for b = 0 < e */
float qk_sinf(float x);
float qk_cosf(float x);

#endif
