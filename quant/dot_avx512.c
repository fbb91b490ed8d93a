/* dot_avx512.c — AVX-512 (F, BW, VL, DQ, VNNI) dequantizers and dot products.
 *
 * The kernels of dot_x86.h compiled with these flags use VNNI for their integer multiply-adds
 * (one instruction for maddubs + madd + add) and a mask register for the q5 high bits. Full
 * 512-bit registers are used only where they measured faster on the development machine (an
 * AMD Zen 4, which splits 512-bit operations in two halves): the f16 and bf16 dots. The f32 dot
 * stays 256 bits wide (it is bound by cache bandwidth, and was slower with 512-bit loads), and
 * two-blocks-per-register versions of the block-32 dots were no faster than the VNNI 256-bit ones.
 * The table is data only, so nothing here runs before the CPU check; NULL entries fall back to
 * the scalar reference. Off x86 the file compiles to an empty table. */
#if defined(__x86_64__) || defined(__i386__)

#define QX_SUFFIX avx512
#include "dot_x86.h"

static inline float qz_hsum_ps(__m512 v)
{
    return qx_hsum_ps(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}

/* ---- f32, f16, bf16 ---------------------------------------------------------------------------- */

static inline __m512 qz_load_f32(const float *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }

static inline __m512 qz_load_f16(const uint16_t *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

static inline __m512 qz_load_bf16(const uint16_t *p, __mmask16 m)
{
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

/* Four accumulators of 16 lanes; the tail goes through masked loads (masked-off lanes read as
 * 0, and 0 * 0 adds nothing), so no element is handled outside the vector loop. */
#define QZ_FLOAT_DOT(NAME, XT, LOAD)                                                                       \
    static void QX(NAME)(int n, float *s, const void *vx, const void *vy)                                  \
    {                                                                                                      \
        const XT *x = vx;                                                                                  \
        const float *y = vy;                                                                               \
        const __mmask16 all = 0xFFFF;                                                                      \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                        \
        int i = 0;                                                                                         \
        for (; i + 64 <= n; i += 64) {                                                                     \
            a0 = _mm512_fmadd_ps(LOAD(x + i, all), qz_load_f32(y + i, all), a0);                           \
            a1 = _mm512_fmadd_ps(LOAD(x + i + 16, all), qz_load_f32(y + i + 16, all), a1);                 \
            a2 = _mm512_fmadd_ps(LOAD(x + i + 32, all), qz_load_f32(y + i + 32, all), a2);                 \
            a3 = _mm512_fmadd_ps(LOAD(x + i + 48, all), qz_load_f32(y + i + 48, all), a3);                 \
        }                                                                                                  \
        for (; i < n; i += 16) {                                                                           \
            const __mmask16 m = n - i >= 16 ? all : (__mmask16)((1u << (n - i)) - 1);                      \
            a0 = _mm512_fmadd_ps(LOAD(x + i, m), qz_load_f32(y + i, m), a0);                               \
        }                                                                                                  \
        *s = qz_hsum_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));                      \
    }

QZ_FLOAT_DOT(q_vec_dot_f16_f32_zmm, uint16_t, qz_load_f16)
QZ_FLOAT_DOT(q_vec_dot_bf16_f32_zmm, uint16_t, qz_load_bf16)

/* ---- the table ---------------------------------------------------------------------------------- */

#define QZ_ENTRY(t, vdt) {.dequantize = QX(q_dequantize_row_##t), .vec_dot = QX(q_vec_dot_##t##_##vdt##_zmm)}

const q_kernels q_kernels_avx512_dot[Q_TYPE_COUNT] =
    QX_TABLE(QZ_ENTRY(f16, f32), QZ_ENTRY(bf16, f32));

#else

#include "quant.h"

const q_kernels q_kernels_avx512_dot[Q_TYPE_COUNT] = {{0}};

#endif
