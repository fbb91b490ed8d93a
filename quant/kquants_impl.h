/* kquants_impl.h — the super-block steps that follow the scale searches (internal to quant/).
 *
 * kquants.c and iq4.c define the bytes; the SIMD quantizers (simd_quant_impl.h) run the searches
 * their own way but must then build exactly the same blocks. The steps after the search are
 * scalar and per super-block, so both take them from here instead of restating them:
 *   (2) the sub-block scales (and mins) quantized under the half-precision super-block scale(s),
 *   (3) every level re-rounded against the scales as the decoder sees them.
 * Step (3) takes the per-sub-block requantizer as a parameter: the reference's scalar loop, or
 * the ISA's vector one (which must round identically). Bit packing stays with each caller, where
 * it is a loop over values that the SIMD files vectorize. */
#ifndef QKIT_QUANT_KQUANTS_IMPL_H
#define QKIT_QUANT_KQUANTS_IMPL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "blocks.h"
#include "fp16.h"
#include "kquants_search.h"
#include "legacy.h"

/* ggml's candidate sets for q_make_qkx_quants: the unweighted q2_K, q4_K and q5_K searches, and
 * the one every weighted search with a min uses (q2_K, q4_K, q5_K, q4_1, q5_1). */
extern const q_qkx_params q_kq_search_q2_ref, q_kq_search_q4_ref, q_kq_search_q5_ref,
    q_kq_search_imat;

/* What the searches found for one super-block, per sub-block. */
typedef struct {
    const float *scale;
    const float *min; /* >= 0, x ≈ scale*l - min; NULL for the symmetric types */
    const float *sw;  /* sums of the importance weights, or NULL when quantizing without them */
} q_kq_found;

/* Levels of n values x for the decoder's scale d (and min m): L[i] = clamp(nearest((x[i] + m) / d),
 * 0, nmax), or for the symmetric types clamp(nearest(x[i] / d), lo, hi) - lo. */
typedef void (*q_kq_requant_affine_fn)(const float *x, int n, float d, float m, int nmax,
                                       uint8_t *L);
typedef void (*q_kq_requant_sym_fn)(const float *x, int n, float d, int lo, int hi, uint8_t *L);

/* The scale/min header q4_K and q5_K share. */
typedef struct {
    uint16_t *d, *dmin;
    uint8_t *scales; /* 12 bytes */
} q_kq_k45_head;

/* iq4_xs: rounds the eight 32-scales to multiples l[ib] in [-32, 31] of d = -max_scale/32 and
 * writes d and the l into y's header; returns d. The codes of group ib are then made for the
 * scale d * l[ib]. */
float q_kq_iq4_xs_scales(const float *scales, block_iq4_xs *y, int *l);

/* Header decoding, for the callers' requantization and the dequantizers. */

/* q3_K scale j (6 bits, stored +32): low nibbles in bytes 0..7, the two high bits in bytes 8..11.
 * The 12 bytes must be zero before the first set. */
static inline void q_kq_q3_set_scale(uint8_t *s, int j, int l)
{
    if (j < 8)
        s[j] = (uint8_t)(l & 0xF);
    else
        s[j - 8] |= (uint8_t)((l & 0xF) << 4);
    s[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
}

static inline int q_kq_q3_get_scale(const uint8_t *s, int j)
{
    const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    return (lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

/* q4_K/q5_K: scales and mins 0..3 fill the low 6 bits of bytes 0..3 and 4..7; 4..7 put their low
 * nibbles in bytes 8..11 and their top two bits in the spare high bits of bytes 0..7. Written in
 * order j = 0..7, like ggml (an oversized ls for j < 4 spills into those high bits exactly as
 * there). */
static inline void q_kq_k45_set_scale_min(uint8_t *s, int j, uint8_t ls, uint8_t lm)
{
    if (j < 4) {
        s[j] = ls;
        s[j + 4] = lm;
    } else {
        s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        s[j - 4] |= (uint8_t)((ls >> 4) << 6);
        s[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

static inline void q_kq_k45_get_scale_min(const uint8_t *s, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* ---- steps (2) and (3) for one super-block x [256] ----
 * L [256] holds the search's levels on entry; the sub-blocks whose decoded scale is nonzero get
 * requantized levels (ggml keeps the search's for the others). The header fields of y are
 * written; its level bytes are left to the caller. Forced inline, so that each caller's
 * requantizer is inlined too: called through a pointer, the per-sub-block calls cost the SIMD
 * quantizers 3-5%, and GCC keeps the q4_K/q5_K one out of line (2% slower) unless told. */
#if defined(__GNUC__)
#define Q_KQ_STEP static inline __attribute__((always_inline))
#else
#define Q_KQ_STEP static inline
#endif

/* The largest of v[0..n) and 0 (the scales and mins of the types with a min are >= 0). */
static inline float q_kq_max_nonneg(const float *v, int n)
{
    float m = 0;
    for (int i = 0; i < n; ++i)
        if (v[i] > m)
            m = v[i];
    return m;
}

/* Without weights: 4-bit levels of scales and mins, each under max/15. */
static inline void q_kq_q2_scales_ref(const float *scales, const float *mins, block_q2_K *y)
{
    const float max_scale = q_kq_max_nonneg(scales, 16), max_min = q_kq_max_nonneg(mins, 16);
    if (max_scale > 0) {
        const float iscale = 15.f / max_scale;
        for (int j = 0; j < 16; ++j)
            y->scales[j] = (uint8_t)q_nearest_int(iscale * scales[j]);
        y->d = q_fp32_to_fp16(max_scale / 15.f);
    } else {
        memset(y->scales, 0, sizeof y->scales);
        y->d = q_fp32_to_fp16(0.f);
    }
    if (max_min > 0) {
        const float iscale = 15.f / max_min;
        for (int j = 0; j < 16; ++j)
            y->scales[j] |= (uint8_t)((unsigned)q_nearest_int(iscale * mins[j]) << 4);
        y->dmin = q_fp32_to_fp16(max_min / 15.f);
    } else {
        y->dmin = q_fp32_to_fp16(0.f);
    }
}

static inline void q_kq_q2_scales_imat(const float *scales, const float *mins, const float *sw,
                                       block_q2_K *y)
{
    uint8_t Ls[16], Lm[16];
    y->d = q_fp32_to_fp16(q_make_qp_quants(16, 15, scales, Ls, sw));
    y->dmin = q_fp32_to_fp16(q_make_qp_quants(16, 15, mins, Lm, sw));
    for (int j = 0; j < 16; ++j)
        y->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
}

Q_KQ_STEP void q_kq_q2_levels(const float *x, q_kq_found f, q_kq_requant_affine_fn rq,
                              block_q2_K *y, uint8_t *L)
{
    if (f.sw)
        q_kq_q2_scales_imat(f.scale, f.min, f.sw, y);
    else
        q_kq_q2_scales_ref(f.scale, f.min, y);
    const float d = q_fp16_to_fp32(y->d), dmin = q_fp16_to_fp32(y->dmin);
    for (int j = 0; j < 16; ++j) {
        const float dl = d * (y->scales[j] & 0xF);
        if (!dl)
            continue; /* the search's levels stay, as in ggml */
        rq(x + 16 * j, 16, dl, dmin * (y->scales[j] >> 4), 3, L + 16 * j);
    }
}

/* Without weights: -32 for the largest scale, those of the other sign get up to +31 (clamped). */
static inline void q_kq_q3_scales_ref(const float *scales, block_q3_K *y)
{
    const float max_scale = q_lg_signed_absmax(scales, 16);
    if (!max_scale) {
        y->d = q_fp32_to_fp16(0.f);
        return;
    }
    const float iscale = -32.f / max_scale;
    for (int j = 0; j < 16; ++j) {
        const int8_t l = (int8_t)q_nearest_int(iscale * scales[j]);
        q_kq_q3_set_scale(y->scales, j, q_clampi(l, -32, 31) + 32);
    }
    y->d = q_fp32_to_fp16(1 / iscale);
}

static inline void q_kq_q3_scales_imat(const float *scales, const float *sw, block_q3_K *y)
{
    int8_t Ls[16];
    const float d_block = q_make_qx_quants(16, 32, scales, Ls, sw);
    for (int j = 0; j < 16; ++j)
        q_kq_q3_set_scale(y->scales, j, Ls[j]);
    y->d = q_fp32_to_fp16(d_block);
}

Q_KQ_STEP void q_kq_q3_levels(const float *x, q_kq_found f, q_kq_requant_sym_fn rq,
                              block_q3_K *y, uint8_t *L)
{
    memset(y->scales, 0, sizeof y->scales);
    if (f.sw)
        q_kq_q3_scales_imat(f.scale, f.sw, y);
    else
        q_kq_q3_scales_ref(f.scale, y);
    const float d = q_fp16_to_fp32(y->d);
    for (int j = 0; j < 16; ++j) {
        const float dl = d * q_kq_q3_get_scale(y->scales, j);
        if (dl)
            rq(x + 16 * j, 16, dl, -4, 3, L + 16 * j);
    }
}

static inline void q_kq_k45_scales_ref(const float *scales, const float *mins, q_kq_k45_head h)
{
    const float max_scale = q_kq_max_nonneg(scales, 8), max_min = q_kq_max_nonneg(mins, 8);
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; ++j) {
        /* Through uint8_t first, as ggml: a negative level wraps, then clamps to 63. */
        const uint8_t ls = (uint8_t)q_nearest_int(inv_scale * scales[j]);
        const uint8_t lm = (uint8_t)q_nearest_int(inv_min * mins[j]);
        q_kq_k45_set_scale_min(h.scales, j, ls < 63 ? ls : 63, lm < 63 ? lm : 63);
    }
    *h.d = q_fp32_to_fp16(max_scale / 63.f);
    *h.dmin = q_fp32_to_fp16(max_min / 63.f);
}

/* clamp63: ggml's q5_K clamps the levels from make_qp_quants to 63, its q4_K does not. They only
 * exceed 63 for a negative sub-block scale, which the search does not normally produce. */
static inline void q_kq_k45_scales_imat(const float *scales, const float *mins, const float *sw,
                                        int clamp63, q_kq_k45_head h)
{
    uint8_t Ls[8], Lm[8];
    const float d_block = q_make_qp_quants(8, 63, scales, Ls, sw);
    const float m_block = q_make_qp_quants(8, 63, mins, Lm, sw);
    for (int j = 0; j < 8; ++j) {
        uint8_t ls = Ls[j], lm = Lm[j];
        if (clamp63) {
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
        }
        q_kq_k45_set_scale_min(h.scales, j, ls, lm);
    }
    *h.d = q_fp32_to_fp16(d_block);
    *h.dmin = q_fp32_to_fp16(m_block);
}

Q_KQ_STEP void q_kq_k45_levels(const float *x, q_kq_found f, int nmax,
                               q_kq_requant_affine_fn rq, q_kq_k45_head h, uint8_t *L)
{
    if (f.sw)
        q_kq_k45_scales_imat(f.scale, f.min, f.sw, nmax == 31, h);
    else
        q_kq_k45_scales_ref(f.scale, f.min, h);
    const float d = q_fp16_to_fp32(*h.d), dmin = q_fp16_to_fp32(*h.dmin);
    for (int j = 0; j < 8; ++j) {
        int sc, m;
        q_kq_k45_get_scale_min(h.scales, j, &sc, &m);
        const float dl = d * sc;
        if (dl)
            rq(x + 32 * j, 32, dl, dmin * m, nmax, L + 32 * j);
    }
}

/* Returns 0 for a block whose scales are all (nearly) zero: then y is all zeros and done. */
Q_KQ_STEP int q_kq_q6_levels(const float *x, q_kq_found f, q_kq_requant_sym_fn rq,
                             block_q6_K *y, uint8_t *L)
{
    const float max_scale = q_lg_signed_absmax(f.scale, 16);
    if (fabsf(max_scale) < Q_GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        y->d = q_fp32_to_fp16(0.f);
        return 0;
    }
    const float iscale = -128.f / max_scale;
    y->d = q_fp32_to_fp16(1 / iscale);
    for (int j = 0; j < 16; ++j) {
        const int l = q_nearest_int(iscale * f.scale[j]);
        y->scales[j] = (int8_t)(l < 127 ? l : 127);
    }
    const float d = q_fp16_to_fp32(y->d);
    for (int j = 0; j < 16; ++j) {
        const float dl = d * y->scales[j];
        if (dl)
            rq(x + 16 * j, 16, dl, -32, 31, L + 16 * j);
    }
    return 1;
}

#endif
