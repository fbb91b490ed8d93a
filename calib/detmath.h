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

float qk_expf(float x);
double qk_exp(double x);
double qk_log(double x);        /* x <= 0: -inf for 0, NaN below */
float qk_powf(float b, float e); /* b > 0 */
double qk_pow(double b, double e); /* b >= 0: 1 for e = 0, 0 for b = 0 < e */
float qk_sinf(float x);
float qk_cosf(float x);

#endif
