/* dot_x86.h — x86 dequantizers and dot products shared by dot_avx2.c and dot_avx512.c.
 *
 * Internal: include only from those two files, after defining QX_SUFFIX (avx2 or avx512), which
 * names the functions (q_vec_dot_q4_K_q8_K_avx2 …) so profiles tell the two builds apart. Each
 * file is compiled with its own ISA flags, so everything here is compiled twice; under AVX-512
 * the VNNI instructions replace two or three AVX2 ones in the integer multiply-adds (qx_dpbusd,
 * qx_dpwssd) and a mask register reads the q5 high bits. dot_avx512.c adds 512-bit f16/bf16
 * dots. Kernels are `QX_KERNEL` (static, possibly unused); helpers are static inline.
 *
 * Exactness. Dequantizers return the scalar reference's floats bit for bit: the integer levels
 * convert to float exactly, and the float steps are the reference's (quant/legacy.c, iq4.c,
 * kquants.c) in its order, never fused (the build uses -ffp-contract=off; only the explicit
 * _fmadd_ intrinsics below fuse, and only in dot products). F16C's vcvtph2ps equals
 * q_fp16_to_fp32 for all 65536 halves, NaN payloads included.
 * Dot products form each block's integer sum exactly, as the reference does, and then follow the
 * canonical float order of quant.h: they equal the reference bit for bit.
 *
 * Operand ranges. Activations (q8_0, q8_1, q8_K) come from qkit's quantizers, whose levels lie in
 * [-127, 127]; weights may hold any byte. maddubs adds two u8*s8 products into a saturating
 * int16, so every unsigned operand here is at most 128 (a weight's |level|, or a code of at most
 * 6 bits), which keeps 2 * 128 * 127 below 32767. The sign trick (|w| times y with w's sign)
 * needs y != -128, which the activation range guarantees. */
#ifndef QKIT_QUANT_DOT_X86_H
#define QKIT_QUANT_DOT_X86_H

#ifndef QX_SUFFIX
#error "define QX_SUFFIX before including dot_x86.h"
#endif

#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "blocks.h"
#include "fp16.h"
#include "legacy.h"
#include "quant.h"

#define QX_CAT2(a, b) a##_##b
#define QX_CAT(a, b) QX_CAT2(a, b)
#define QX(name) QX_CAT(name, QX_SUFFIX)
/* Kernels are reached through the tables; dot_avx512.c replaces some, leaving them unused. */
#define QX_KERNEL static __attribute__((unused))

/* ---- primitives ------------------------------------------------------------------------------ */

static inline float qx_h2f(uint16_t h) { return _cvtsh_ss(h); }

static inline float qx_hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* acc + sums of 4 adjacent u8*s8 products, per int32 lane (u <= 128, see the header comment). */
static inline __m256i qx_dpbusd(__m256i acc, __m256i u, __m256i s)
{
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    const __m256i p16 = _mm256_maddubs_epi16(u, s);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
#endif
}

/* acc + sums of 2 adjacent int16 products, per int32 lane. */
static inline __m256i qx_dpwssd(__m256i acc, __m256i a, __m256i b)
{
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpwssd_epi32(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

/* Sums of 4 adjacent s8*s8 products (w any byte, y in [-127, 127]): |w| times y signed as w. */
static inline __m256i qx_dot_s8(__m256i w, __m256i y)
{
    return qx_dpbusd(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(y, w));
}

/* 16 bytes of packed 4-bit codes to 32 bytes: code j (low nibble of byte j) at j, code j+16
 * (its high nibble) at j+16 — the layout of q4_0, q4_1, q5_*, iq4_nl and each iq4_xs group. */
static inline __m256i qx_nibbles32(const uint8_t *p)
{
    const __m128i t = _mm_loadu_si128((const __m128i *)p);
    const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* Bit j of the little-endian 32-bit word at p to byte j: 0xFF when set, 0 when clear. */
static inline __m256i qx_bits32(const uint8_t *p)
{
    uint32_t w;
    memcpy(&w, p, sizeof w);
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)w),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
    const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

/* 8 bytes (zero-extended or sign-extended bytes) to 8 floats, exactly. */
static inline __m256 qx_u8_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
static inline __m256 qx_s8_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

/* 32 levels (bytes) times d, written as 32 floats: y = (float)q * d, the reference's product. */
static inline void qx_store_s8_scaled(__m256i q, __m256 d, float *y)
{
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y, _mm256_mul_ps(qx_s8_ps(lo), d));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(qx_s8_ps(_mm_srli_si128(lo, 8)), d));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(qx_s8_ps(hi), d));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(qx_s8_ps(_mm_srli_si128(hi, 8)), d));
}

/* 32 unsigned codes as (float)q * d + m: multiply, round, add, round, as the reference. */
static inline void qx_store_u8_affine(__m256i q, __m256 d, __m256 m, float *y)
{
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y, _mm256_add_ps(_mm256_mul_ps(qx_u8_ps(lo), d), m));
    _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_mul_ps(qx_u8_ps(_mm_srli_si128(lo, 8)), d), m));
    _mm256_storeu_ps(y + 16, _mm256_add_ps(_mm256_mul_ps(qx_u8_ps(hi), d), m));
    _mm256_storeu_ps(y + 24, _mm256_add_ps(_mm256_mul_ps(qx_u8_ps(_mm_srli_si128(hi, 8)), d), m));
}

/* 16 signed levels as d * q - m (the k-quant dequantization; m is +0 for the symmetric types,
 * and x - (+0) is x for every x, so they pass a zero vector). */
static inline void qx_store16_kq(__m128i q, __m256 d, __m256 m, float *y)
{
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(d, qx_s8_ps(q)), m));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(d, qx_s8_ps(_mm_srli_si128(q, 8))), m));
}

/* pshufb index vector picking int16 number a of each 128-bit lane (which holds 8 int16) into
 * every int16 of that lane. */
#define QX_SEL16(a) _mm256_set1_epi16((short)((2 * (a)) | ((2 * (a) + 1) << 8)))

/* ---- f32, f16, bf16 ---------------------------------------------------------------------------- */

static inline __m256 qx_load8_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 qx_load8_bf16(const uint16_t *p)
{
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

QX_KERNEL void QX(q_dequantize_row_f16)(const void *vx, float *y, int64_t k)
{
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
        _mm256_storeu_ps(y + i, qx_load8_f16(x + i));
    for (; i < k; i++) { /* memcpy: the data may start at an odd byte */
        uint16_t h;
        memcpy(&h, (const uint8_t *)vx + 2 * i, sizeof h);
        y[i] = qx_h2f(h);
    }
}

QX_KERNEL void QX(q_dequantize_row_bf16)(const void *vx, float *y, int64_t k)
{
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
        _mm256_storeu_ps(y + i, qx_load8_bf16(x + i));
    for (; i < k; i++) {
        uint16_t h;
        memcpy(&h, (const uint8_t *)vx + 2 * i, sizeof h);
        y[i] = q_bf16_to_fp32(h);
    }
}

/* ---- block-32 types: dequantization ---------------------------------------------------------- */

/* q5 codes: the nibbles with bit j of qh as bit 4 of code j. AVX-512 reads qh as a byte mask. */
static inline __m256i qx_q5_codes(const uint8_t *qs, const uint8_t *qh)
{
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    uint32_t bits;
    memcpy(&bits, qh, sizeof bits);
    const __m256i c = qx_nibbles32(qs);
    return _mm256_mask_add_epi8(c, (__mmask32)bits, c, _mm256_set1_epi8(0x10));
#else
    const __m256i hi = _mm256_and_si256(qx_bits32(qh), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(qx_nibbles32(qs), hi);
#endif
}

QX_KERNEL void QX(q_dequantize_row_q4_0)(const void *vx, float *y, int64_t k)
{
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < k / 32; i++) {
        const __m256i q = _mm256_sub_epi8(qx_nibbles32(x[i].qs), _mm256_set1_epi8(8));
        qx_store_s8_scaled(q, _mm256_set1_ps(qx_h2f(x[i].d)), y + 32 * i);
    }
}

QX_KERNEL void QX(q_dequantize_row_q4_1)(const void *vx, float *y, int64_t k)
{
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < k / 32; i++)
        qx_store_u8_affine(qx_nibbles32(x[i].qs), _mm256_set1_ps(qx_h2f(x[i].d)),
                           _mm256_set1_ps(qx_h2f(x[i].m)), y + 32 * i);
}

QX_KERNEL void QX(q_dequantize_row_q5_0)(const void *vx, float *y, int64_t k)
{
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < k / 32; i++) {
        const __m256i q = _mm256_sub_epi8(qx_q5_codes(x[i].qs, x[i].qh), _mm256_set1_epi8(16));
        qx_store_s8_scaled(q, _mm256_set1_ps(qx_h2f(x[i].d)), y + 32 * i);
    }
}

QX_KERNEL void QX(q_dequantize_row_q5_1)(const void *vx, float *y, int64_t k)
{
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < k / 32; i++)
        qx_store_u8_affine(qx_q5_codes(x[i].qs, x[i].qh), _mm256_set1_ps(qx_h2f(x[i].d)),
                           _mm256_set1_ps(qx_h2f(x[i].m)), y + 32 * i);
}

QX_KERNEL void QX(q_dequantize_row_q8_0)(const void *vx, float *y, int64_t k)
{
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < k / 32; i++)
        qx_store_s8_scaled(_mm256_loadu_si256((const __m256i *)x[i].qs), _mm256_set1_ps(qx_h2f(x[i].d)),
                           y + 32 * i);
}

/* The iq4 levels in both 128-bit lanes, for a pshufb lookup. */
static inline __m256i qx_iq4_table(void)
{
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q_iq4_levels));
}

QX_KERNEL void QX(q_dequantize_row_iq4_nl)(const void *vx, float *y, int64_t k)
{
    const block_iq4_nl *x = vx;
    const __m256i table = qx_iq4_table();
    for (int64_t i = 0; i < k / 32; i++) {
        const __m256i q = _mm256_shuffle_epi8(table, qx_nibbles32(x[i].qs));
        qx_store_s8_scaled(q, _mm256_set1_ps(qx_h2f(x[i].d)), y + 32 * i);
    }
}

/* iq4_xs: the 8 group multipliers (6 bits, stored + 32) as int16: the low 4 bits are the nibbles
 * of scales_l (group 2k in the low nibble of byte k), the high 2 at bits 2ib of scales_h. */
static inline __m128i qx_iq4_xs_scales(const block_iq4_xs *b)
{
    uint32_t l;
    memcpy(&l, b->scales_l, sizeof l);
    const __m128i sl = _mm_cvtsi32_si128((int)l), m4 = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_cvtepu8_epi16(
        _mm_unpacklo_epi8(_mm_and_si128(sl, m4), _mm_and_si128(_mm_srli_epi16(sl, 4), m4)));
    /* Lane ib: scales_h << (14 - 2ib) puts bits 2ib, 2ib+1 on top; >> 10 moves them to bits 4, 5. */
    const __m128i up =
        _mm_mullo_epi16(_mm_set1_epi16((short)b->scales_h),
                        _mm_setr_epi16(1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(up, 10), _mm_set1_epi16(0x30));
    return _mm_sub_epi16(_mm_or_si128(lo, hi), _mm_set1_epi16(32));
}

QX_KERNEL void QX(q_dequantize_row_iq4_xs)(const void *vx, float *y, int64_t k)
{
    const block_iq4_xs *x = vx;
    const __m256i table = qx_iq4_table();
    for (int64_t i = 0; i < k / Q_QK_K; i++) {
        /* The reference's group scale: d * (float)multiplier, rounded once. */
        float dl[8];
        const __m256 ls = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(qx_iq4_xs_scales(&x[i])));
        _mm256_storeu_ps(dl, _mm256_mul_ps(_mm256_set1_ps(qx_h2f(x[i].d)), ls));
        for (int ib = 0; ib < 8; ib++) {
            const __m256i q = _mm256_shuffle_epi8(table, qx_nibbles32(x[i].qs + 16 * ib));
            qx_store_s8_scaled(q, _mm256_set1_ps(dl[ib]), y + Q_QK_K * i + 32 * ib);
        }
    }
}

/* ---- block-32 types: dot products ------------------------------------------------------------ */
/* Per block, the exact integer sums land in 8 int32 lanes (qx_sums_<t>) and are reduced to the
 * block's total; the float steps are the canonical chain of quant.h. q8_0, q4_0, the k-quants
 * and iq4_xs use the tiled products of gemm_x86.h (same order) instead. */

/* Σ (c - off)·y = Σ c·y - off·Σ y, with c unsigned: two unsigned multiply-adds instead of the
 * sign trick's three steps. Without VNNI the difference is taken in int16 (|pair sums| <= 2·31·127)
 * so that one madd widens it. */
static inline __m256i qx_dot_offset(__m256i c, int off, __m256i y)
{
    const __m256i o = _mm256_set1_epi8((char)off);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    const __m256i z = _mm256_setzero_si256();
    return _mm256_sub_epi32(qx_dpbusd(z, c, y), qx_dpbusd(z, o, y));
#else
    const __m256i d16 = _mm256_sub_epi16(_mm256_maddubs_epi16(c, y), _mm256_maddubs_epi16(o, y));
    return _mm256_madd_epi16(d16, _mm256_set1_epi16(1));
#endif
}

static inline __m256i qx_load_q8_0(const int8_t *qs) { return _mm256_loadu_si256((const __m256i *)qs); }

static inline __m256i qx_sums_q5_0(const block_q5_0 *x, const block_q8_0 *y)
{
    return qx_dot_offset(qx_q5_codes(x->qs, x->qh), 16, qx_load_q8_0(y->qs));
}

static inline __m256i qx_sums_iq4_nl(const block_iq4_nl *x, const block_q8_0 *y)
{
    return qx_dot_s8(_mm256_shuffle_epi8(qx_iq4_table(), qx_nibbles32(x->qs)), qx_load_q8_0(y->qs));
}

static inline __m256i qx_sums_q4_1(const block_q4_1 *x, const block_q8_1 *y)
{
    return qx_dpbusd(_mm256_setzero_si256(), qx_nibbles32(x->qs), qx_load_q8_0(y->qs));
}

static inline __m256i qx_sums_q5_1(const block_q5_1 *x, const block_q8_1 *y)
{
    return qx_dpbusd(_mm256_setzero_si256(), qx_q5_codes(x->qs, x->qh), qx_load_q8_0(y->qs));
}

static inline int32_t qx_hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* With a min m: Σ (d·c + m)(d_y·q) = d·d_y·Σ c·q + m·(d_y·Σ q), and q8_1 stores d_y·Σ q as s. */
static inline float qx_min_q4_1(float acc, const block_q4_1 *x, const block_q8_1 *y)
{
    return fmaf(qx_h2f(x->m), qx_h2f(y->s), acc);
}

static inline float qx_min_q5_1(float acc, const block_q5_1 *x, const block_q8_1 *y)
{
    return fmaf(qx_h2f(x->m), qx_h2f(y->s), acc);
}

static inline float qx_min_none(float acc, const void *x, const void *y)
{
    (void)x, (void)y;
    return acc;
}

#define QX_BLOCK32_DOT(NAME, XT, YT, SUMS, MIN)                                                            \
    QX_KERNEL void QX(NAME)(int n, float *s, const void *vx, const void *vy)                               \
    {                                                                                                      \
        const XT *x = vx;                                                                                  \
        const YT *y = vy;                                                                                  \
        float acc = 0.0f;                                                                                  \
        for (int i = 0; i < n / 32; i++) {                                                                 \
            acc = fmaf(qx_h2f(x[i].d) * qx_h2f(y[i].d), (float)qx_hsum_epi32(SUMS(&x[i], &y[i])), acc);   \
            acc = MIN(acc, &x[i], &y[i]);                                                                  \
        }                                                                                                  \
        *s = acc;                                                                                          \
    }

QX_BLOCK32_DOT(q_vec_dot_q4_1_q8_1, block_q4_1, block_q8_1, qx_sums_q4_1, qx_min_q4_1)
QX_BLOCK32_DOT(q_vec_dot_q5_0_q8_0, block_q5_0, block_q8_0, qx_sums_q5_0, qx_min_none)
QX_BLOCK32_DOT(q_vec_dot_q5_1_q8_1, block_q5_1, block_q8_1, qx_sums_q5_1, qx_min_q5_1)
QX_BLOCK32_DOT(q_vec_dot_iq4_nl_q8_0, block_iq4_nl, block_q8_0, qx_sums_iq4_nl, qx_min_none)

/* ---- k-quants ---------------------------------------------------------------------------------- */
/* A super-block is 8 runs of 32 values; run c holds values 32c..32c+31, i.e. groups 2c and 2c+1
 * of 16. Every type is read through the same two steps: a header (per-group int16 multipliers and
 * mins, the float scales) and the runs' unsigned codes (level + offset). The kind is a
 * compile-time constant wherever these always-inline functions are used, so each kernel folds to
 * its own straight-line code. */

#define QX_INLINE static inline __attribute__((always_inline))

enum { QX_Q2K, QX_Q3K, QX_Q4K, QX_Q5K, QX_Q6K };

typedef struct {
    __m256i sc, mn; /* int16 multiplier and min of each group of 16 (mn 0 when symmetric) */
    float d, dmin;  /* dmin 0 when symmetric */
    int off;        /* code - level (0, or 4 for q3_K, 32 for q6_K) */
} qx_kq_head;

/* Bit `from` of each byte moved to bit `to` (other bits garbage); within 16-bit lanes no wanted
 * bit crosses into the neighbouring byte because |from - to| < 8 and the caller masks. */
QX_INLINE __m256i qx_move_bit(__m256i v, int from, int to)
{
    if (from < to)
        return _mm256_slli_epi16(v, to - from);
    if (from > to)
        return _mm256_srli_epi16(v, from - to);
    return v;
}

/* q4_K/q5_K: 8 scales and 8 mins of 6 bits in 12 bytes: groups 0..3 take the low 6 bits of bytes
 * 0..3 (scales) and 4..7 (mins); groups 4..7 the nibbles of bytes 8..11 (low: scale, high: min)
 * under the top 2 bits of bytes 0..3 (scales) and 4..7 (mins). s may be read 16 bytes far (the
 * quants follow). Returns the 8 scales in bytes 0..7 and the 8 mins in bytes 8..15. */
QX_INLINE __m128i qx_k45_scales_mins(const uint8_t *s)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)s);
    /* 32-bit lanes: [w0, w2, w1, w2 >> 4] masked to 6, 4, 6, 4 bits ... */
    const __m128i lo = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(v, 0x98), _mm_set_epi32(4, 0, 0, 0)),
                                     _mm_set_epi32(0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F));
    /* ... with the top 2 bits of w0 (scales 4..7) and w1 (mins 4..7) above the nibbles. */
    const __m128i hi = _mm_and_si128(_mm_srli_epi32(_mm_shuffle_epi32(v, 0x50), 2),
                                     _mm_set_epi32(0x30303030, 0, 0x30303030, 0));
    return _mm_or_si128(lo, hi);
}

/* q3_K: 16 scales of 6 bits, stored + 32: the low nibbles of bytes 0..7 (groups 0..7), their high
 * nibbles (groups 8..15), and the 2 high bits of group j at bits 2(j/4) of byte 8 + j%4. Reading
 * 16 bytes from the scales would pass the end of the block (only d follows), so the load starts 4
 * bytes earlier, inside the quants, and shifts down. */
QX_INLINE __m128i qx_q3_scales(const block_q3_K *b)
{
    const __m128i v = _mm_srli_si128(
        _mm_loadu_si128((const __m128i *)((const uint8_t *)b + offsetof(block_q3_K, scales) - 4)), 4);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_unpacklo_epi64(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
    const __m128i w = _mm_shuffle_epi32(v, 0xAA);
    const __m128i hi = _mm_and_si128(_mm_srlv_epi32(w, _mm_set_epi32(6, 4, 2, 0)), _mm_set1_epi8(3));
    return _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
}

/* One int16 per group of 32 (bytes), doubled into the 16 groups of 16. */
QX_INLINE __m256i qx_dup_pairs16(__m128i v8) { return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(v8, v8)); }

QX_INLINE qx_kq_head qx_kq_head_get(int kind, const void *blk)
{
    qx_kq_head h;
    switch (kind) {
    case QX_Q2K: {
        const block_q2_K *b = blk;
        const __m128i v = _mm_loadu_si128((const __m128i *)b->scales), m4 = _mm_set1_epi8(0x0F);
        h.sc = _mm256_cvtepu8_epi16(_mm_and_si128(v, m4));
        h.mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), m4));
        h.d = qx_h2f(b->d), h.dmin = qx_h2f(b->dmin), h.off = 0;
        break;
    }
    case QX_Q3K: {
        const block_q3_K *b = blk;
        h.sc = _mm256_cvtepi8_epi16(qx_q3_scales(b));
        h.mn = _mm256_setzero_si256();
        h.d = qx_h2f(b->d), h.dmin = 0, h.off = 4;
        break;
    }
    case QX_Q4K:
    case QX_Q5K: {
        /* q4_K and q5_K share the head (d, dmin, scales) at the same offsets. */
        const block_q4_K *b = blk;
        const __m128i sm = qx_k45_scales_mins(b->scales);
        h.sc = qx_dup_pairs16(sm);
        h.mn = qx_dup_pairs16(_mm_srli_si128(sm, 8));
        h.d = qx_h2f(b->d), h.dmin = qx_h2f(b->dmin), h.off = 0;
        break;
    }
    default: {
        const block_q6_K *b = blk;
        h.sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
        h.mn = _mm256_setzero_si256();
        h.d = qx_h2f(b->d), h.dmin = 0, h.off = 32;
        break;
    }
    }
    return h;
}

_Static_assert(offsetof(block_q4_K, scales) == offsetof(block_q5_K, scales) &&
                   offsetof(block_q4_K, dmin) == offsetof(block_q5_K, dmin),
               "q4_K and q5_K heads differ");

static inline __m256i qx_load32(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* The unsigned codes of run c. Layouts (value v = 32c + l, l < 32):
 * 2-bit (q2_K, q3_K): bits 2(c%4) of qs[32(c/4) + l]; q3_K adds bit c of hmask[l] as 4.
 * 4-bit (q4_K, q5_K): qs[32(c/2) + l], low nibble for even c; q5_K adds bit c of qh[l] as 16.
 * q6_K: in half h = c/4 with k = c%4, the nibble of ql[64h + 32(k%2) + l] (low for k < 2) and
 * bits 2k of qh[32h + l] as 16 and 32. */
QX_INLINE __m256i qx_kq_run(int kind, const void *blk, int c)
{
    const __m256i m2 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(0x0F);
    switch (kind) {
    case QX_Q2K:
        return _mm256_and_si256(
            _mm256_srli_epi16(qx_load32(((const block_q2_K *)blk)->qs + 32 * (c / 4)), 2 * (c % 4)), m2);
    case QX_Q3K: {
        const block_q3_K *b = blk;
        const __m256i lo =
            _mm256_and_si256(_mm256_srli_epi16(qx_load32(b->qs + 32 * (c / 4)), 2 * (c % 4)), m2);
        const __m256i hi = _mm256_and_si256(qx_move_bit(qx_load32(b->hmask), c, 2), _mm256_set1_epi8(4));
        return _mm256_or_si256(lo, hi);
    }
    case QX_Q4K:
    case QX_Q5K: {
        const uint8_t *qs = kind == QX_Q4K ? ((const block_q4_K *)blk)->qs : ((const block_q5_K *)blk)->qs;
        const __m256i q = qx_load32(qs + 32 * (c / 2));
        const __m256i lo = _mm256_and_si256(c % 2 ? _mm256_srli_epi16(q, 4) : q, m4);
        if (kind == QX_Q4K)
            return lo;
        const __m256i qh = qx_load32(((const block_q5_K *)blk)->qh);
        return _mm256_or_si256(lo, _mm256_and_si256(qx_move_bit(qh, c, 4), _mm256_set1_epi8(0x10)));
    }
    default: {
        const block_q6_K *b = blk;
        const int h = c / 4, k = c % 4;
        const __m256i l = qx_load32(b->ql + 64 * h + 32 * (k % 2));
        const __m256i lo = _mm256_and_si256(k < 2 ? l : _mm256_srli_epi16(l, 4), m4);
        const __m256i hi =
            _mm256_and_si256(qx_move_bit(qx_load32(b->qh + 32 * h), 2 * k, 4), _mm256_set1_epi8(0x30));
        return _mm256_or_si256(lo, hi);
    }
    }
}

/* ---- k-quants: dequantization ---------------------------------------------------------------- */
/* The reference forms dl = d * sc and ml = dmin * mn in float per group, then dl * level - ml. */

QX_INLINE void qx_kq_dequantize(int kind, size_t bsize, const void *vx, float *y, int64_t k)
{
    for (int64_t i = 0; i < k / Q_QK_K; i++, y += Q_QK_K) {
        const void *blk = (const char *)vx + (size_t)i * bsize;
        const qx_kq_head h = qx_kq_head_get(kind, blk);
        float dl[16], ml[16];
        const __m256 vd = _mm256_set1_ps(h.d), vm = _mm256_set1_ps(h.dmin);
        for (int half = 0; half < 2; half++) {
            const __m128i s = half ? _mm256_extracti128_si256(h.sc, 1) : _mm256_castsi256_si128(h.sc);
            const __m128i m = half ? _mm256_extracti128_si256(h.mn, 1) : _mm256_castsi256_si128(h.mn);
            _mm256_storeu_ps(dl + 8 * half,
                             _mm256_mul_ps(vd, _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(s))));
            _mm256_storeu_ps(ml + 8 * half,
                             _mm256_mul_ps(vm, _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(m))));
        }
        for (int c = 0; c < 8; c++) {
            const __m256i q = _mm256_sub_epi8(qx_kq_run(kind, blk, c), _mm256_set1_epi8((char)h.off));
            qx_store16_kq(_mm256_castsi256_si128(q), _mm256_set1_ps(dl[2 * c]), _mm256_set1_ps(ml[2 * c]),
                          y + 32 * c);
            qx_store16_kq(_mm256_extracti128_si256(q, 1), _mm256_set1_ps(dl[2 * c + 1]),
                          _mm256_set1_ps(ml[2 * c + 1]), y + 32 * c + 16);
        }
    }
}

QX_KERNEL void QX(q_dequantize_row_q2_K)(const void *x, float *y, int64_t k)
{
    qx_kq_dequantize(QX_Q2K, sizeof(block_q2_K), x, y, k);
}

QX_KERNEL void QX(q_dequantize_row_q3_K)(const void *x, float *y, int64_t k)
{
    qx_kq_dequantize(QX_Q3K, sizeof(block_q3_K), x, y, k);
}

QX_KERNEL void QX(q_dequantize_row_q4_K)(const void *x, float *y, int64_t k)
{
    qx_kq_dequantize(QX_Q4K, sizeof(block_q4_K), x, y, k);
}

QX_KERNEL void QX(q_dequantize_row_q5_K)(const void *x, float *y, int64_t k)
{
    qx_kq_dequantize(QX_Q5K, sizeof(block_q5_K), x, y, k);
}

QX_KERNEL void QX(q_dequantize_row_q6_K)(const void *x, float *y, int64_t k)
{
    qx_kq_dequantize(QX_Q6K, sizeof(block_q6_K), x, y, k);
}

/* ---- k-quants: dot products ------------------------------------------------------------------ */
/* The building blocks of gemm_x86.h's k-quant tiles (vec_dot is their 1 × 1 product). Per
 * super-block: isum = Σ_c Σ_groups mult·Σ code·q (maddubs of codes and q8, then a multiply-add
 * with the group's int16 multiplier), minus off·Σ_g mult_g·bsums_g for the offset codes;
 * msum = Σ_g mn_g·bsums_g (q8_K's bsums are the sums of each 16 q). All integer sums fit int32
 * with room to spare (q6_K's largest: 16 groups · 16 · 63 · 127 · 128). */

/* int16 multiplier of groups 2c (low 128-bit lane) and 2c+1 (high lane), from the 16 in sc
 * (lo/hi: groups 0..7 / 8..15 in both lanes). */
QX_INLINE __m256i qx_group_pair(__m256i lo, __m256i hi, int c)
{
    const int a = 2 * (c % 4), b = a + 1;
    const __m256i sel = _mm256_set_m128i(_mm_set1_epi16((short)((2 * b) | ((2 * b + 1) << 8))),
                                         _mm_set1_epi16((short)((2 * a) | ((2 * a + 1) << 8))));
    return _mm256_shuffle_epi8(c < 4 ? lo : hi, sel);
}

/* ---- table entries ---------------------------------------------------------------------------- */

/* Only the dequantizer and the dot product: quantizers and from_float live in quant_<isa>.c. The
 * vec_dot_type field is the reference table's; overlays ignore it here. */
#define QX_ENTRY(t, vdt) {.dequantize = QX(q_dequantize_row_##t), .vec_dot = QX(q_vec_dot_##t##_##vdt)}
/* Types whose vec_dot is the tiled product's (gemm_x86.h). */
#define QX_DEQ(t) {.dequantize = QX(q_dequantize_row_##t)}

/* The whole table, with the f16 and bf16 entries each ISA file chooses for itself. */
#define QX_TABLE(F16_ENTRY, BF16_ENTRY)                                                            \
    {                                                                                              \
        [Q_TYPE_F16] = F16_ENTRY,                                                                  \
        [Q_TYPE_BF16] = BF16_ENTRY,                                                                \
        [Q_TYPE_Q4_0] = QX_DEQ(q4_0),                                                                  \
        [Q_TYPE_Q4_1] = QX_ENTRY(q4_1, q8_1),                                                      \
        [Q_TYPE_Q5_0] = QX_ENTRY(q5_0, q8_0),                                                      \
        [Q_TYPE_Q5_1] = QX_ENTRY(q5_1, q8_1),                                                      \
        [Q_TYPE_Q8_0] = QX_DEQ(q8_0),                                                                  \
        [Q_TYPE_Q2_K] = QX_DEQ(q2_K),                                                                  \
        [Q_TYPE_Q3_K] = QX_DEQ(q3_K),                                                                  \
        [Q_TYPE_Q4_K] = QX_DEQ(q4_K),                                                                  \
        [Q_TYPE_Q5_K] = QX_DEQ(q5_K),                                                                  \
        [Q_TYPE_Q6_K] = QX_DEQ(q6_K),                                                                  \
        [Q_TYPE_IQ4_NL] = QX_ENTRY(iq4_nl, q8_0),                                                  \
        [Q_TYPE_IQ4_XS] = QX_DEQ(iq4_xs),                                                           \
    }

#endif
