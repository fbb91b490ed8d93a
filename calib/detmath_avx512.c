/* detmath_avx512.c — qk_expf over arrays, 8 lanes at a time in double: the same IEEE operations
 * in the same order as detmath.h's qk_expf (no FMA: the build has -ffp-contract=off and every
 * product and sum is its own instruction), so the same bits. Off x86 this file is empty. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <stddef.h>

#include "detmath.h"

void qk_expf_array_avx512(float *y, const float *x, size_t n);

void qk_expf_array_avx512(float *y, const float *x, size_t n)
{
    const __m512d log2e32 = _mm512_set1_pd(0x1.71547652b82fep+5), magic = _mm512_set1_pd(6755399441055744.0);
    const __m512d ln2_32 = _mm512_set1_pd(0x1.62e42fefa39efp-6), one = _mm512_set1_pd(1.0);
    const __m512d c2 = _mm512_set1_pd(0.5), c3 = _mm512_set1_pd(1.0 / 6.0), c4 = _mm512_set1_pd(1.0 / 24.0),
                  c5 = _mm512_set1_pd(1.0 / 120.0);
    const __m512d t0 = _mm512_loadu_pd(qk_exp2_32), t1 = _mm512_loadu_pd(qk_exp2_32 + 8),
                  t2 = _mm512_loadu_pd(qk_exp2_32 + 16), t3 = _mm512_loadu_pd(qk_exp2_32 + 24);
    const __m256 big = _mm256_set1_ps(88.73f), small = _mm256_set1_ps(-104.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 xf = _mm256_loadu_ps(x + i);
        const __m512d xd = _mm512_cvtps_pd(xf);
        /* k = round(x · 32/ln 2): t = x·c + 1.5·2^52 holds k in its low mantissa bits */
        const __m512d t = _mm512_add_pd(_mm512_mul_pd(xd, log2e32), magic);
        const __m512d kd = _mm512_sub_pd(t, magic);
        const __m512i kb = _mm512_castpd_si512(t);
        const __m512d r = _mm512_sub_pd(xd, _mm512_mul_pd(kd, ln2_32));
        __m512d p = _mm512_mul_pd(r, c5);
        p = _mm512_mul_pd(r, _mm512_add_pd(c4, p));
        p = _mm512_mul_pd(r, _mm512_add_pd(c3, p));
        p = _mm512_mul_pd(r, _mm512_add_pd(c2, p));
        p = _mm512_mul_pd(r, _mm512_add_pd(one, p));
        p = _mm512_add_pd(one, p);
        /* 2^(j/32), j = k mod 32: bits 0-3 pick within a pair of registers, bit 4 the pair */
        const __m512d lo = _mm512_permutex2var_pd(t0, kb, t1), hi = _mm512_permutex2var_pd(t2, kb, t3);
        const __m512d tj = _mm512_mask_blend_pd(_mm512_test_epi64_mask(kb, _mm512_set1_epi64(16)), lo, hi);
        /* times 2^floor(k/32) in the exponent: the magic's own bits shift out past bit 63 */
        const __m512i sb = _mm512_add_epi64(_mm512_castpd_si512(tj), _mm512_slli_epi64(_mm512_srli_epi64(kb, 5), 52));
        __m256 e = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_castsi512_pd(sb), p));
        e = _mm256_mask_mov_ps(e, _mm256_cmp_ps_mask(xf, big, _CMP_NLT_UQ), _mm256_set1_ps(__builtin_inff()));
        e = _mm256_mask_mov_ps(e, _mm256_cmp_ps_mask(xf, xf, _CMP_UNORD_Q), xf);
        e = _mm256_mask_mov_ps(e, _mm256_cmp_ps_mask(xf, small, _CMP_LT_OQ), _mm256_setzero_ps());
        _mm256_storeu_ps(y + i, e);
    }
    for (; i < n; i++)
        y[i] = qk_expf(x[i]);
}

#else

typedef int qk_detmath_avx512_empty;

#endif
