/* dot_neon.c — AArch64 NEON dequantizers and dot products.
 *
 * Same contract as the x86 kernels: dequantizers give the scalar reference's floats bit for bit
 * (levels convert exactly; d*q, d*q + m, dl*q - ml in the reference's order, never fused: the
 * build uses -ffp-contract=off), and dot products compute the canonical summation order of
 * quant.h bit for bit: the float dots keep the 16 partial sums as four float32x4 FMA accumulators
 * (lanes 0-3, 4-7, 8-11, 12-15) and reduce them in the canonical tree (never vaddvq_f32, whose
 * pairing differs); the quantized dots form each block's exact integer sum in vector lanes
 * (integer reductions are exact in any order) and feed one scalar fmaf chain, block by block.
 * Baseline ARMv8.0 NEON (widening multiplies); a build for ARMv8.2+dotprod uses SDOT instead.
 * NEON's s8*s8 products are exact for every byte, so unlike x86 there is no operand range to mind:
 * the k-quant dots multiply signed levels directly and need q8_K's bsums only for the mins.
 *
 * The Makefile compiles every file of quant/ on every architecture: elsewhere the table is empty. The
 * table is data only, like the x86 ones. */
#include "quant.h"

#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "blocks.h"
#include "fp16.h"
#include "legacy.h"

/* ---- primitives -------------------------------------------------------------------------------- */

/* Hardware half to float: the reference's value for every half (NaNs are quieted by both). */
static inline float qn_h2f(uint16_t h)
{
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/* acc + sums of 4 adjacent s8*s8 products per int32 lane. */
static inline int32x4_t qn_dot16(int32x4_t acc, int8x16_t a, int8x16_t b)
{
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    const int16x8_t p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    const int16x8_t p1 = vmull_high_s8(a, b);
    return vpadalq_s16(vpadalq_s16(acc, p0), p1);
#endif
}

/* Σ of 32 products: two halves of 16. */
static inline int32x4_t qn_dot32(int8x16x2_t a, const int8_t *b)
{
    const int32x4_t z = vdupq_n_s32(0);
    return qn_dot16(qn_dot16(z, a.val[0], vld1q_s8(b)), a.val[1], vld1q_s8(b + 16));
}

/* 16 packed bytes of 4-bit codes: code j (low nibble of byte j) and code j+16 (high nibble). */
static inline uint8x16x2_t qn_nibbles32(const uint8_t *p)
{
    const uint8x16_t v = vld1q_u8(p);
    uint8x16x2_t r;
    r.val[0] = vandq_u8(v, vdupq_n_u8(0x0F));
    r.val[1] = vshrq_n_u8(v, 4);
    return r;
}

/* Bit j of the little-endian 32-bit word at p, as bit 4 of byte j (the q5 high bit). */
static inline uint8x16x2_t qn_q5_high(const uint8_t *p)
{
    static const uint8_t spread[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                       2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint32_t w;
    memcpy(&w, p, sizeof w);
    const uint8x16_t b = vreinterpretq_u8_u32(vdupq_n_u32(w)), m = vld1q_u8(bit);
    const uint8x16_t sixteen = vdupq_n_u8(0x10);
    uint8x16x2_t r;
    r.val[0] = vandq_u8(vtstq_u8(vqtbl1q_u8(b, vld1q_u8(spread)), m), sixteen);
    r.val[1] = vandq_u8(vtstq_u8(vqtbl1q_u8(b, vld1q_u8(spread + 16)), m), sixteen);
    return r;
}

static inline uint8x16x2_t qn_q5_codes(const uint8_t *qs, const uint8_t *qh)
{
    uint8x16x2_t c = qn_nibbles32(qs);
    const uint8x16x2_t h = qn_q5_high(qh);
    c.val[0] = vorrq_u8(c.val[0], h.val[0]);
    c.val[1] = vorrq_u8(c.val[1], h.val[1]);
    return c;
}

/* Unsigned codes minus an offset, as signed levels. */
static inline int8x16x2_t qn_levels(uint8x16x2_t c, int off)
{
    int8x16x2_t r;
    r.val[0] = vsubq_s8(vreinterpretq_s8_u8(c.val[0]), vdupq_n_s8((int8_t)off));
    r.val[1] = vsubq_s8(vreinterpretq_s8_u8(c.val[1]), vdupq_n_s8((int8_t)off));
    return r;
}

static inline int8x16x2_t qn_iq4_levels(const uint8_t *qs)
{
    const int8x16_t table = vld1q_s8(q_iq4_levels);
    const uint8x16x2_t c = qn_nibbles32(qs);
    int8x16x2_t r;
    r.val[0] = vqtbl1q_s8(table, c.val[0]);
    r.val[1] = vqtbl1q_s8(table, c.val[1]);
    return r;
}

/* ---- exact float stores ------------------------------------------------------------------------ */

/* 16 levels as float(q) * d. */
static inline void qn_store16_scaled(int8x16_t q, float d, float *y)
{
    const int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
    vst1q_f32(y, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), d));
    vst1q_f32(y + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(lo)), d));
    vst1q_f32(y + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), d));
    vst1q_f32(y + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(hi)), d));
}

/* 16 unsigned codes as float(q) * d + m (multiply, round, add, round). */
static inline void qn_store16_affine(uint8x16_t q, float d, float m, float *y)
{
    const uint16x8_t lo = vmovl_u8(vget_low_u8(q)), hi = vmovl_high_u8(q);
    const float32x4_t vm = vdupq_n_f32(m);
    vst1q_f32(y, vaddq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))), d), vm));
    vst1q_f32(y + 4, vaddq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(lo)), d), vm));
    vst1q_f32(y + 8, vaddq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))), d), vm));
    vst1q_f32(y + 12, vaddq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(hi)), d), vm));
}

/* One block of 32: the two halves as above. */
static inline void qn_store32_scaled(int8x16x2_t q, float d, float *y)
{
    qn_store16_scaled(q.val[0], d, y);
    qn_store16_scaled(q.val[1], d, y + 16);
}

static inline void qn_store32_affine(uint8x16x2_t c, float d, float m, float *y)
{
    qn_store16_affine(c.val[0], d, m, y);
    qn_store16_affine(c.val[1], d, m, y + 16);
}

static inline int8x16x2_t qn_load32_s8(const int8_t *qs)
{
    int8x16x2_t w;
    w.val[0] = vld1q_s8(qs);
    w.val[1] = vld1q_s8(qs + 16);
    return w;
}

/* 16 levels as dl * q - ml (the k-quant dequantization). */
static inline void qn_store16_kq(int8x16_t q, float dl, float ml, float *y)
{
    const int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
    const float32x4_t vml = vdupq_n_f32(ml);
    vst1q_f32(y, vsubq_f32(vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), dl), vml));
    vst1q_f32(y + 4, vsubq_f32(vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(lo)), dl), vml));
    vst1q_f32(y + 8, vsubq_f32(vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), dl), vml));
    vst1q_f32(y + 12, vsubq_f32(vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(hi)), dl), vml));
}

/* ---- f32, f16, bf16 ---------------------------------------------------------------------------- */

static inline float32x4_t qn_load4_f32(const float *p) { return vld1q_f32(p); }
static inline float32x4_t qn_load4_f16(const uint16_t *p)
{
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}
static inline float32x4_t qn_load4_bf16(const uint16_t *p)
{
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

/* Four values at a time, the tail one by one with the scalar conversion. */
#define QN_HALF_DEQUANT(NAME, LOAD4, SCALAR)                                                               \
    static void NAME(const void *vx, float *y, int64_t k)                                                  \
    {                                                                                                      \
        const uint16_t *x = vx;                                                                            \
        int64_t i = 0;                                                                                     \
        for (; i + 4 <= k; i += 4)                                                                         \
            vst1q_f32(y + i, LOAD4(x + i));                                                                \
        for (; i < k; i++)                                                                                 \
            y[i] = SCALAR(x[i]);                                                                           \
    }

QN_HALF_DEQUANT(q_dequantize_row_f16_neon, qn_load4_f16, q_fp16_to_fp32)
QN_HALF_DEQUANT(q_dequantize_row_bf16_neon, qn_load4_bf16, q_bf16_to_fp32)

/* The canonical order: partial sum p[l] lives in lane l % 4 of accumulator l / 4, each step of 16
 * values is one fused multiply-add per lane, and a tail of n % 16 values is one more step over a
 * zero-padded copy (the padded lanes' fma(0, 0, p) turns a -0 partial sum into +0, as the
 * definition requires). Then a = P0+P2 | P1+P3, b = a_lo + a_hi, c = b_lo + b_hi, c0 + c1. */
#define QN_FLOAT_DOT(NAME, XT, LOAD4)                                                                      \
    static void NAME(int n, float *s, const void *vx, const void *vy)                                      \
    {                                                                                                      \
        const XT *x = vx;                                                                                  \
        const float *y = vy;                                                                               \
        float32x4_t p0 = vdupq_n_f32(0), p1 = p0, p2 = p0, p3 = p0;                                        \
        int i = 0;                                                                                         \
        for (; i + 16 <= n; i += 16) {                                                                     \
            p0 = vfmaq_f32(p0, LOAD4(x + i), vld1q_f32(y + i));                                            \
            p1 = vfmaq_f32(p1, LOAD4(x + i + 4), vld1q_f32(y + i + 4));                                    \
            p2 = vfmaq_f32(p2, LOAD4(x + i + 8), vld1q_f32(y + i + 8));                                    \
            p3 = vfmaq_f32(p3, LOAD4(x + i + 12), vld1q_f32(y + i + 12));                                  \
        }                                                                                                  \
        if (i < n) {                                                                                       \
            XT xt[16];                                                                                     \
            float yt[16];                                                                                  \
            memset(xt, 0, sizeof xt);                                                                      \
            memset(yt, 0, sizeof yt);                                                                      \
            memcpy(xt, x + i, (size_t)(n - i) * sizeof(XT));                                               \
            memcpy(yt, y + i, (size_t)(n - i) * sizeof(float));                                            \
            p0 = vfmaq_f32(p0, LOAD4(xt), vld1q_f32(yt));                                                  \
            p1 = vfmaq_f32(p1, LOAD4(xt + 4), vld1q_f32(yt + 4));                                          \
            p2 = vfmaq_f32(p2, LOAD4(xt + 8), vld1q_f32(yt + 8));                                          \
            p3 = vfmaq_f32(p3, LOAD4(xt + 12), vld1q_f32(yt + 12));                                        \
        }                                                                                                  \
        const float32x4_t b = vaddq_f32(vaddq_f32(p0, p2), vaddq_f32(p1, p3));                             \
        const float32x2_t c = vadd_f32(vget_low_f32(b), vget_high_f32(b));                                 \
        *s = vget_lane_f32(c, 0) + vget_lane_f32(c, 1);                                                    \
    }

QN_FLOAT_DOT(q_vec_dot_f32_f32_neon, float, qn_load4_f32)
QN_FLOAT_DOT(q_vec_dot_f16_f32_neon, uint16_t, qn_load4_f16)
QN_FLOAT_DOT(q_vec_dot_bf16_f32_neon, uint16_t, qn_load4_bf16)

/* ---- block-32 types ---------------------------------------------------------------------------- */

static void q_dequantize_row_q4_0_neon(const void *vx, float *y, int64_t k)
{
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < k / 32; i++, y += 32)
        qn_store32_scaled(qn_levels(qn_nibbles32(x[i].qs), 8), q_fp16_to_fp32(x[i].d), y);
}

static void q_dequantize_row_q4_1_neon(const void *vx, float *y, int64_t k)
{
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < k / 32; i++, y += 32)
        qn_store32_affine(qn_nibbles32(x[i].qs), q_fp16_to_fp32(x[i].d), q_fp16_to_fp32(x[i].m), y);
}

static void q_dequantize_row_q5_0_neon(const void *vx, float *y, int64_t k)
{
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < k / 32; i++, y += 32)
        qn_store32_scaled(qn_levels(qn_q5_codes(x[i].qs, x[i].qh), 16), q_fp16_to_fp32(x[i].d), y);
}

static void q_dequantize_row_q5_1_neon(const void *vx, float *y, int64_t k)
{
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < k / 32; i++, y += 32)
        qn_store32_affine(qn_q5_codes(x[i].qs, x[i].qh), q_fp16_to_fp32(x[i].d),
                          q_fp16_to_fp32(x[i].m), y);
}

static void q_dequantize_row_q8_0_neon(const void *vx, float *y, int64_t k)
{
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < k / 32; i++, y += 32)
        qn_store32_scaled(qn_load32_s8(x[i].qs), q_fp16_to_fp32(x[i].d), y);
}

static void q_dequantize_row_iq4_nl_neon(const void *vx, float *y, int64_t k)
{
    const block_iq4_nl *x = vx;
    for (int64_t i = 0; i < k / 32; i++, y += 32)
        qn_store32_scaled(qn_iq4_levels(x[i].qs), q_fp16_to_fp32(x[i].d), y);
}

/* Block sums: int32 lanes whose total is the block's exact integer dot. */
static inline int32x4_t qn_sums_q4_0(const block_q4_0 *x, const block_q8_0 *y)
{
    return qn_dot32(qn_levels(qn_nibbles32(x->qs), 8), y->qs);
}

static inline int32x4_t qn_sums_q5_0(const block_q5_0 *x, const block_q8_0 *y)
{
    return qn_dot32(qn_levels(qn_q5_codes(x->qs, x->qh), 16), y->qs);
}

static inline int32x4_t qn_sums_q8_0(const block_q8_0 *x, const block_q8_0 *y)
{
    return qn_dot32(qn_load32_s8(x->qs), y->qs);
}

static inline int32x4_t qn_sums_iq4_nl(const block_iq4_nl *x, const block_q8_0 *y)
{
    return qn_dot32(qn_iq4_levels(x->qs), y->qs);
}

static inline int32x4_t qn_sums_q4_1(const block_q4_1 *x, const block_q8_1 *y)
{
    return qn_dot32(qn_levels(qn_nibbles32(x->qs), 0), y->qs);
}

static inline int32x4_t qn_sums_q5_1(const block_q5_1 *x, const block_q8_1 *y)
{
    return qn_dot32(qn_levels(qn_q5_codes(x->qs, x->qh), 0), y->qs);
}

/* The second link of the offset types: s = fma(m_w, s_y, s) (q8_1's s_y = d_y·Σ q); none for the
 * others. */
static inline float qn_min_q4_1(const block_q4_1 *x, const block_q8_1 *y, float s)
{
    return fmaf(qn_h2f(x->m), qn_h2f(y->s), s);
}
static inline float qn_min_q5_1(const block_q5_1 *x, const block_q8_1 *y, float s)
{
    return fmaf(qn_h2f(x->m), qn_h2f(y->s), s);
}
static inline float qn_min_none(const void *x, const void *y, float s)
{
    (void)x, (void)y;
    return s;
}

/* One float chain in block order: s = fma(d_w·d_y, (float)Σ, s) (then the min link). The chain's
 * latency bounds the loop; the integer work of the next blocks overlaps it. */
#define QN_BLOCK32_DOT(NAME, XT, YT, SUMS, MIN)                                                            \
    static void NAME(int n, float *s, const void *vx, const void *vy)                                      \
    {                                                                                                      \
        const XT *x = vx;                                                                                  \
        const YT *y = vy;                                                                                  \
        float sum = 0;                                                                                     \
        for (int i = 0; i < n / 32; i++) {                                                                 \
            const float d = qn_h2f(x[i].d) * qn_h2f(y[i].d);                                               \
            sum = fmaf(d, (float)vaddvq_s32(SUMS(&x[i], &y[i])), sum);                                     \
            sum = MIN(&x[i], &y[i], sum);                                                                  \
        }                                                                                                  \
        *s = sum;                                                                                          \
    }

QN_BLOCK32_DOT(q_vec_dot_q4_0_q8_0_neon, block_q4_0, block_q8_0, qn_sums_q4_0, qn_min_none)
QN_BLOCK32_DOT(q_vec_dot_q4_1_q8_1_neon, block_q4_1, block_q8_1, qn_sums_q4_1, qn_min_q4_1)
QN_BLOCK32_DOT(q_vec_dot_q5_0_q8_0_neon, block_q5_0, block_q8_0, qn_sums_q5_0, qn_min_none)
QN_BLOCK32_DOT(q_vec_dot_q5_1_q8_1_neon, block_q5_1, block_q8_1, qn_sums_q5_1, qn_min_q5_1)
QN_BLOCK32_DOT(q_vec_dot_q8_0_q8_0_neon, block_q8_0, block_q8_0, qn_sums_q8_0, qn_min_none)
QN_BLOCK32_DOT(q_vec_dot_iq4_nl_q8_0_neon, block_iq4_nl, block_q8_0, qn_sums_iq4_nl, qn_min_none)

/* ---- iq4_xs ------------------------------------------------------------------------------------ */

/* The 8 group multipliers: 4 low bits from scales_l (group 2k in the low nibble of byte k), 2 high
 * bits at bits 2ib of scales_h, stored + 32. */
static inline void qn_iq4_xs_scales(const block_iq4_xs *b, int ls[8])
{
    for (int ib = 0; ib < 8; ib++)
        ls[ib] = (((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0x0F) | ((b->scales_h >> 2 * ib) & 3) << 4) - 32;
}

static void q_dequantize_row_iq4_xs_neon(const void *vx, float *y, int64_t k)
{
    const block_iq4_xs *x = vx;
    for (int64_t i = 0; i < k / Q_QK_K; i++) {
        const float d = q_fp16_to_fp32(x[i].d);
        int ls[8];
        qn_iq4_xs_scales(&x[i], ls);
        for (int ib = 0; ib < 8; ib++, y += 32)
            qn_store32_scaled(qn_iq4_levels(x[i].qs + 16 * ib), d * (float)ls[ib], y);
    }
}

static void q_vec_dot_iq4_xs_q8_K_neon(int n, float *s, const void *vx, const void *vy)
{
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int i = 0; i < n / Q_QK_K; i++) {
        int ls[8];
        qn_iq4_xs_scales(&x[i], ls);
        int32x4_t isum = vdupq_n_s32(0);
        for (int ib = 0; ib < 8; ib++)
            isum = vmlaq_n_s32(isum, qn_dot32(qn_iq4_levels(x[i].qs + 16 * ib), y[i].qs + 32 * ib), ls[ib]);
        sum = fmaf(qn_h2f(x[i].d) * y[i].d, (float)vaddvq_s32(isum), sum);
    }
    *s = sum;
}

/* ---- k-quants ---------------------------------------------------------------------------------- */
/* As on x86 (dot_x86.h): a header of per-group (16 values) multipliers and mins, then 8 runs of 32
 * unsigned codes (level + off); subtracting off gives the signed levels, and the mins go through
 * q8_K's bsums. */

enum { QN_Q2K, QN_Q3K, QN_Q4K, QN_Q5K, QN_Q6K };

typedef struct {
    int16_t sc[16], mn[16];
    float d, dmin;
    int off;
} qn_kq_head;

static inline void qn_k45_scales(const uint8_t *s, qn_kq_head *h)
{
    for (int j = 0; j < 8; j++) {
        int sc, m;
        if (j < 4) {
            sc = s[j] & 63;
            m = s[j + 4] & 63;
        } else {
            sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
            m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
        h->sc[2 * j] = h->sc[2 * j + 1] = (int16_t)sc;
        h->mn[2 * j] = h->mn[2 * j + 1] = (int16_t)m;
    }
}

static inline void qn_kq_head_get(int kind, const void *blk, qn_kq_head *h)
{
    memset(h->mn, 0, sizeof h->mn);
    h->dmin = 0;
    h->off = 0;
    switch (kind) {
    case QN_Q2K: {
        const block_q2_K *b = blk;
        for (int g = 0; g < 16; g++) {
            h->sc[g] = b->scales[g] & 0xF;
            h->mn[g] = b->scales[g] >> 4;
        }
        h->d = q_fp16_to_fp32(b->d), h->dmin = q_fp16_to_fp32(b->dmin);
        break;
    }
    case QN_Q3K: {
        const block_q3_K *b = blk;
        for (int g = 0; g < 16; g++) {
            const int lo = g < 8 ? b->scales[g] & 0xF : b->scales[g - 8] >> 4;
            h->sc[g] = (int16_t)((lo | ((b->scales[8 + g % 4] >> (2 * (g / 4))) & 3) << 4) - 32);
        }
        h->d = q_fp16_to_fp32(b->d), h->off = 4;
        break;
    }
    case QN_Q4K: {
        const block_q4_K *b = blk;
        qn_k45_scales(b->scales, h);
        h->d = q_fp16_to_fp32(b->d), h->dmin = q_fp16_to_fp32(b->dmin);
        break;
    }
    case QN_Q5K: {
        const block_q5_K *b = blk;
        qn_k45_scales(b->scales, h);
        h->d = q_fp16_to_fp32(b->d), h->dmin = q_fp16_to_fp32(b->dmin);
        break;
    }
    default: {
        const block_q6_K *b = blk;
        for (int g = 0; g < 16; g++)
            h->sc[g] = b->scales[g];
        h->d = q_fp16_to_fp32(b->d), h->off = 32;
        break;
    }
    }
}

/* Per-byte shift: left for n > 0, right for n < 0. */
static inline uint8x16_t qn_shift(uint8x16_t v, int n) { return vshlq_u8(v, vdupq_n_s8((int8_t)n)); }

/* The unsigned codes of run c (values 32c..32c+31); layouts as in dot_x86.h's qx_kq_run. */
static inline uint8x16x2_t qn_kq_run(int kind, const void *blk, int c)
{
    uint8x16x2_t r;
    for (int half = 0; half < 2; half++) {
        const int l = 16 * half;
        uint8x16_t v;
        switch (kind) {
        case QN_Q2K:
            v = vandq_u8(qn_shift(vld1q_u8(((const block_q2_K *)blk)->qs + 32 * (c / 4) + l), -2 * (c % 4)),
                         vdupq_n_u8(3));
            break;
        case QN_Q3K: {
            const block_q3_K *b = blk;
            const uint8x16_t lo =
                vandq_u8(qn_shift(vld1q_u8(b->qs + 32 * (c / 4) + l), -2 * (c % 4)), vdupq_n_u8(3));
            v = vorrq_u8(lo, vandq_u8(qn_shift(vld1q_u8(b->hmask + l), 2 - c), vdupq_n_u8(4)));
            break;
        }
        case QN_Q4K:
        case QN_Q5K: {
            const uint8_t *qs =
                kind == QN_Q4K ? ((const block_q4_K *)blk)->qs : ((const block_q5_K *)blk)->qs;
            const uint8x16_t q = vld1q_u8(qs + 32 * (c / 2) + l);
            v = c % 2 ? vshrq_n_u8(q, 4) : vandq_u8(q, vdupq_n_u8(0x0F));
            if (kind == QN_Q5K) {
                const uint8x16_t qh = vld1q_u8(((const block_q5_K *)blk)->qh + l);
                v = vorrq_u8(v, vandq_u8(qn_shift(qh, 4 - c), vdupq_n_u8(0x10)));
            }
            break;
        }
        default: {
            const block_q6_K *b = blk;
            const int h = c / 4, k = c % 4;
            const uint8x16_t q = vld1q_u8(b->ql + 64 * h + 32 * (k % 2) + l);
            const uint8x16_t lo = k < 2 ? vandq_u8(q, vdupq_n_u8(0x0F)) : vshrq_n_u8(q, 4);
            const uint8x16_t hi =
                vandq_u8(qn_shift(vld1q_u8(b->qh + 32 * h + l), 4 - 2 * k), vdupq_n_u8(0x30));
            v = vorrq_u8(lo, hi);
            break;
        }
        }
        r.val[half] = v;
    }
    return r;
}

static inline void qn_kq_dequantize(int kind, size_t bsize, const void *vx, float *y, int64_t k)
{
    for (int64_t i = 0; i < k / Q_QK_K; i++) {
        const void *blk = (const char *)vx + (size_t)i * bsize;
        qn_kq_head h;
        qn_kq_head_get(kind, blk, &h);
        for (int c = 0; c < 8; c++, y += 32) {
            const int8x16x2_t q = qn_levels(qn_kq_run(kind, blk, c), h.off);
            for (int half = 0; half < 2; half++) {
                const int g = 2 * c + half;
                qn_store16_kq(q.val[half], h.d * h.sc[g], h.dmin * h.mn[g], y + 16 * half);
            }
        }
    }
}

/* Σ_g a_g·b_g over 16 int16 pairs. */
static inline int32_t qn_dot_i16x16(const int16_t *a, const int16_t *b)
{
    int32x4_t s = vmull_s16(vld1_s16(a), vld1_s16(b));
    s = vmlal_s16(s, vld1_s16(a + 4), vld1_s16(b + 4));
    s = vmlal_s16(s, vld1_s16(a + 8), vld1_s16(b + 8));
    s = vmlal_s16(s, vld1_s16(a + 12), vld1_s16(b + 12));
    return vaddvq_s32(s);
}

/* Per block the exact isum = Σ_g sc_g·Σ level·q over signed levels (codes minus the offset fit
 * int8, and s8·s8 products are exact), then the chain s = fma(d_y·d, isum, s) and, for the types
 * with mins, s = fma(-(d_y·dmin), Σ_g mn_g·bsum_g, s). */
static inline void qn_kq_dot(int kind, size_t bsize, int n, float *s, const void *vx, const void *vy)
{
    const block_q8_K *y = vy;
    const int has_min = kind == QN_Q2K || kind == QN_Q4K || kind == QN_Q5K;
    float sum = 0;
    for (int i = 0; i < n / Q_QK_K; i++) {
        const void *blk = (const char *)vx + (size_t)i * bsize;
        qn_kq_head h;
        qn_kq_head_get(kind, blk, &h);
        int32x4_t acc = vdupq_n_s32(0);
        for (int c = 0; c < 8; c++) {
            const int8x16x2_t q = qn_levels(qn_kq_run(kind, blk, c), h.off);
            const int32x4_t z = vdupq_n_s32(0);
            const int8_t *q8 = y[i].qs + 32 * c;
            acc = vmlaq_n_s32(acc, qn_dot16(z, q.val[0], vld1q_s8(q8)), h.sc[2 * c]);
            acc = vmlaq_n_s32(acc, qn_dot16(z, q.val[1], vld1q_s8(q8 + 16)), h.sc[2 * c + 1]);
        }
        sum = fmaf(y[i].d * h.d, (float)vaddvq_s32(acc), sum);
        if (has_min)
            sum = fmaf(-(y[i].d * h.dmin), (float)qn_dot_i16x16(h.mn, y[i].bsums), sum);
    }
    *s = sum;
}

#define QN_KQ(t, KIND)                                                                                     \
    static void q_dequantize_row_##t##_neon(const void *x, float *y, int64_t k)                            \
    {                                                                                                      \
        qn_kq_dequantize(KIND, sizeof(block_##t), x, y, k);                                                \
    }                                                                                                      \
    static void q_vec_dot_##t##_q8_K_neon(int n, float *s, const void *x, const void *y)                   \
    {                                                                                                      \
        qn_kq_dot(KIND, sizeof(block_##t), n, s, x, y);                                                    \
    }

QN_KQ(q2_K, QN_Q2K)
QN_KQ(q3_K, QN_Q3K)
QN_KQ(q4_K, QN_Q4K)
QN_KQ(q5_K, QN_Q5K)
QN_KQ(q6_K, QN_Q6K)

/* ---- the table --------------------------------------------------------------------------------- */

#define QN_ENTRY(t, vdt) {.dequantize = q_dequantize_row_##t##_neon, .vec_dot = q_vec_dot_##t##_##vdt##_neon}

const q_kernels q_kernels_neon_dot[Q_TYPE_COUNT] = {
    [Q_TYPE_F32] = {.vec_dot = q_vec_dot_f32_f32_neon},
    [Q_TYPE_F16] = QN_ENTRY(f16, f32),
    [Q_TYPE_BF16] = QN_ENTRY(bf16, f32),
    [Q_TYPE_Q4_0] = QN_ENTRY(q4_0, q8_0),
    [Q_TYPE_Q4_1] = QN_ENTRY(q4_1, q8_1),
    [Q_TYPE_Q5_0] = QN_ENTRY(q5_0, q8_0),
    [Q_TYPE_Q5_1] = QN_ENTRY(q5_1, q8_1),
    [Q_TYPE_Q8_0] = QN_ENTRY(q8_0, q8_0),
    [Q_TYPE_Q2_K] = QN_ENTRY(q2_K, q8_K),
    [Q_TYPE_Q3_K] = QN_ENTRY(q3_K, q8_K),
    [Q_TYPE_Q4_K] = QN_ENTRY(q4_K, q8_K),
    [Q_TYPE_Q5_K] = QN_ENTRY(q5_K, q8_K),
    [Q_TYPE_Q6_K] = QN_ENTRY(q6_K, q8_K),
    [Q_TYPE_IQ4_NL] = QN_ENTRY(iq4_nl, q8_0),
    [Q_TYPE_IQ4_XS] = QN_ENTRY(iq4_xs, q8_K),
};

#else

const q_kernels q_kernels_neon_dot[Q_TYPE_COUNT] = {{0}};

#endif
