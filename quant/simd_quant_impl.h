/* simd_quant_impl.h — the SIMD quantizers, written once for every vector width.
 *
 * Include only from an ISA file (quant_avx2.c, quant_avx512.c) after it has defined VL, the types
 * vf/vi/vm with their operations, iq4_index_nonan/iq4_value_nonan and QS_ISA(name). Everything
 * here is static; the ISA file publishes QS_TABLE as its kernel table.
 *
 * Contract: every function produces exactly the bytes of the scalar reference it replaces
 * (kquants.c, legacy.c, iq4.c, floats.c) for every finite input, with and without importance
 * weights. How, in three rules:
 * 1. Lanes are independent groups (sub-blocks, blocks), never parts of one sum. Each lane runs
 *    the reference's sequential loops in the reference's order with the reference's float
 *    operations, so each lane rounds exactly as the scalar code does. A group of the reference is
 *    a lane here: the data is transposed so that row i of a tile holds value i of VL groups.
 * 2. No fused multiply-add (only mul then add, and the build has -ffp-contract=off); division
 *    and square root are IEEE-exact in vector form too; min/max use the operand order of the
 *    reference's `if (a < b)`.
 * 3. Rounding uses ggml's 1.5*2^23 trick bit for bit (v_nearest) rather than cvtps2dq: the two
 *    agree only below 2^22, and out-of-range values do occur (a subnormal group range makes an
 *    infinite inverse scale); this way they give the reference's garbage, which its clamps then
 *    turn into the same levels.
 * Where the reference takes early exits (a zero group, a degenerate fit, a candidate that does
 * not improve), lanes compute anyway and a mask decides what is kept. The reference's scalar
 * steps after the searches (scale quantization, fp16 round trips, make_qp_quants on 8 or 16
 * values) are its own code, called through kquants_impl.h; the per-value loops around them
 * (requantization, bit packing) are vectorized across values, which changes no rounding.
 * Byte packing and transposes use AVX2 instructions directly: both ISA files are built with them. */
#ifndef QKIT_QUANT_SIMD_QUANT_IMPL_H
#define QKIT_QUANT_SIMD_QUANT_IMPL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "blocks.h"
#include "floats.h"
#include "fp16.h"
#include "kquants.h"
#include "kquants_impl.h"
#include "kquants_search.h"
#include "legacy.h"
#include "simd_quant.h"

#define QS_MAX_N 32   /* values per group */
#define QS_MAX_SUB 16 /* groups per item */

/* ---- exact rounding ------------------------------------------------------------------------- */

/* q_nearest_int per lane, bit for bit for every input (the same float add, the same mask). */
static inline vi v_nearest(vf f)
{
    const vi bits = vf_as_vi(vf_add(f, vf_set(12582912.f)));
    return vi_sub(vi_and(bits, vi_set(0x007fffff)), vi_set(0x00400000));
}

static inline vi v_clamp(vi v, int lo, int hi) { return vi_min(vi_max(v, vi_set(lo)), vi_set(hi)); }

/* ---- wide vectors ------------------------------------------------------------------------------
 * The searches are chains of dependent operations: sums in element order, and (in ggml's qkx
 * search) candidates that start from the previous winner's min. With one vector per chain the
 * core mostly waits for latencies. A wide vector is QS_K native vectors that always undergo the
 * same operation: QS_K independent chains for the core to interleave, LW lanes in all. */
#define QS_K 2
#define LW (QS_K * VL)
/* The per-part loops must vanish, or the parts live in memory instead of registers. */
#define QS_UNROLL _Pragma("GCC unroll 8")

typedef struct { vf v[QS_K]; } wf;
typedef struct { vi v[QS_K]; } wi;
typedef struct { vm v[QS_K]; } wm;

#define QS_W1(R, name, A, op)                                                                      \
    static inline R name(A a)                                                                      \
    {                                                                                              \
        R r;                                                                                       \
        QS_UNROLL for (int k = 0; k < QS_K; ++k)                                                             \
            r.v[k] = op(a.v[k]);                                                                   \
        return r;                                                                                  \
    }
#define QS_W2(R, name, A, B, op)                                                                   \
    static inline R name(A a, B b)                                                                 \
    {                                                                                              \
        R r;                                                                                       \
        QS_UNROLL for (int k = 0; k < QS_K; ++k)                                                             \
            r.v[k] = op(a.v[k], b.v[k]);                                                           \
        return r;                                                                                  \
    }

QS_W2(wf, wf_add, wf, wf, vf_add)
QS_W2(wf, wf_sub, wf, wf, vf_sub)
QS_W2(wf, wf_mul, wf, wf, vf_mul)
QS_W2(wf, wf_div, wf, wf, vf_div)
QS_W2(wf, wf_min, wf, wf, vf_min)
QS_W2(wf, wf_max, wf, wf, vf_max)
QS_W1(wf, wf_sqrt, wf, vf_sqrt)
QS_W1(wf, wf_abs, wf, vf_abs)
QS_W1(wf, wf_neg, wf, vf_neg)
QS_W1(wf, wi_to_wf, wi, vi_to_vf)
QS_W1(wi, wf_trunc_wi, wf, vf_trunc_vi)
QS_W1(wi, w_nearest, wf, v_nearest)
QS_W1(wf, w_iq4_value, wf, iq4_value_nonan)
QS_W2(wi, wi_add, wi, wi, vi_add)
QS_W2(wm, wf_gt, wf, wf, vf_gt)
QS_W2(wm, wf_lt, wf, wf, vf_lt)
QS_W2(wm, wf_eq, wf, wf, vf_eq)
QS_W2(wm, wf_ne, wf, wf, vf_ne)
QS_W2(wm, wm_and, wm, wm, vm_and)
QS_W2(wm, wm_or, wm, wm, vm_or)
QS_W2(wm, wm_andnot, wm, wm, vm_andnot)

static inline wf wf_set(float a)
{
    wf r;
    QS_UNROLL for (int k = 0; k < QS_K; ++k)
        r.v[k] = vf_set(a);
    return r;
}

static inline wi wi_set(int a)
{
    wi r;
    QS_UNROLL for (int k = 0; k < QS_K; ++k)
        r.v[k] = vi_set(a);
    return r;
}

static inline wf wf_load(const float *p)
{
    wf r;
    QS_UNROLL for (int k = 0; k < QS_K; ++k)
        r.v[k] = vf_load(p + k * VL);
    return r;
}

static inline void wf_store(float *p, wf a)
{
    QS_UNROLL for (int k = 0; k < QS_K; ++k)
        vf_store(p + k * VL, a.v[k]);
}

static inline wi wi_load(const int32_t *p)
{
    wi r;
    QS_UNROLL for (int k = 0; k < QS_K; ++k)
        r.v[k] = vi_load(p + k * VL);
    return r;
}

static inline void wi_store(int32_t *p, wi a)
{
    QS_UNROLL for (int k = 0; k < QS_K; ++k)
        vi_store(p + k * VL, a.v[k]);
}

static inline wf wf_sel(wm m, wf t, wf f)
{
    wf r;
    QS_UNROLL for (int k = 0; k < QS_K; ++k)
        r.v[k] = vf_sel(m.v[k], t.v[k], f.v[k]);
    return r;
}

static inline wi wi_sel(wm m, wi t, wi f)
{
    wi r;
    QS_UNROLL for (int k = 0; k < QS_K; ++k)
        r.v[k] = vi_sel(m.v[k], t.v[k], f.v[k]);
    return r;
}

static inline wm wm_none(void)
{
    wm r;
    QS_UNROLL for (int k = 0; k < QS_K; ++k)
        r.v[k] = vm_none();
    return r;
}

static inline int wm_any(wm m)
{
    unsigned bits = 0;
    QS_UNROLL for (int k = 0; k < QS_K; ++k)
        bits |= vm_bits(m.v[k]);
    return bits != 0;
}

static inline wi w_clamp(wi v, int lo, int hi)
{
    wi r;
    QS_UNROLL for (int k = 0; k < QS_K; ++k)
        r.v[k] = v_clamp(v.v[k], lo, hi);
    return r;
}

/* q_clampi(q_nearest_int(f), lo, hi) as a float. */
static inline wf w_level(wf f, int lo, int hi) { return wi_to_wf(w_clamp(w_nearest(f), lo, hi)); }

/* ---- the scale searches, one group per lane ---------------------------------------------------
 * Tiles are float[n * LW]: element i of the group in lane l at [i * LW + l]. */

#define TILE(t, i) wf_load((t) + (size_t)(i) * LW)

/* The largest |x| with its sign, the first of equals (signed_absmax in the reference). */
static inline wf signed_absmax_lanes(int n, const float *xt)
{
    wf amax = wf_set(0.f), max = wf_set(0.f);
    for (int i = 0; i < n; ++i) {
        const wf x = TILE(xt, i), ax = wf_abs(x);
        const wm m = wf_gt(ax, amax);
        amax = wf_sel(m, ax, amax);
        max = wf_sel(m, x, max);
    }
    return max;
}

/* q_make_qkx_quants per lane. Levels go to L[i] (0..nmax), scales and mins to the outputs.
 * As in ggml, a candidate that wins replaces min, and later candidates grid from the new min
 * (their inverse scale and x - min use it): the lanes carry that state. */
static void qkx_lanes(int n, int nmax, const float *xt, const float *wt, const q_qkx_params *p,
                      wf *scale_out, wf *the_min_out, wi *L)
{
    const wf zero = wf_set(0.f);
    wf min = TILE(xt, 0), max = min, sum_w = TILE(wt, 0), sum_x = wf_mul(sum_w, min);
    for (int i = 1; i < n; ++i) {
        const wf x = TILE(xt, i), w = TILE(wt, i);
        min = wf_min(x, min);
        max = wf_max(x, max);
        sum_w = wf_add(sum_w, w);
        sum_x = wf_add(sum_x, wf_mul(w, x));
    }
    min = wf_sel(wf_gt(min, zero), zero, min);
    const wm flat = wf_eq(max, min);
    const wf flat_min = min;
    wf lf[QS_MAX_N];

    /* The starting point: the min/max grid, judged with its own scale and min. */
    wf iscale = wf_div(wf_set((float)nmax), wf_sub(max, min));
    wf scale = wf_div(wf_set(1.f), iscale);
    wf best = zero;
    for (int i = 0; i < n; ++i) {
        const wf x = TILE(xt, i);
        const wf l = w_level(wf_mul(iscale, wf_sub(x, min)), 0, nmax);
        wf diff = wf_sub(wf_add(wf_mul(scale, l), min), x);
        diff = p->use_mad ? wf_abs(diff) : wf_mul(diff, diff);
        best = wf_add(best, wf_mul(TILE(wt, i), diff));
    }
    /* The winner's levels are recomputed at the end from the inverse scale and min they were
     * made with (which gives the same values as the reference's copy of them). */
    wf level_iscale = iscale, level_min = min;
    for (int is = 0; is <= p->nstep; ++is) {
        iscale = wf_div(wf_set(p->rmin + p->rdelta * is + nmax), wf_sub(max, min));
        wf sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < n; ++i) {
            const wf x = TILE(xt, i);
            const wf l = lf[i] = w_level(wf_mul(iscale, wf_sub(x, min)), 0, nmax);
            const wf wl = wf_mul(TILE(wt, i), l);
            sum_l = wf_add(sum_l, wl);
            sum_l2 = wf_add(sum_l2, wf_mul(wl, l));
            sum_xl = wf_add(sum_xl, wf_mul(wl, x));
        }
        const wf D = wf_sub(wf_mul(sum_w, sum_l2), wf_mul(sum_l, sum_l));
        const wm fit = wf_gt(D, zero);
        wf this_scale = wf_div(wf_sub(wf_mul(sum_w, sum_xl), wf_mul(sum_x, sum_l)), D);
        wf this_min = wf_div(wf_sub(wf_mul(sum_l2, sum_x), wf_mul(sum_l, sum_xl)), D);
        const wm positive = wf_gt(this_min, zero);
        this_min = wf_sel(positive, zero, this_min);
        this_scale = wf_sel(positive, wf_div(sum_xl, sum_l2), this_scale);
        wf err = zero;
        for (int i = 0; i < n; ++i) {
            wf diff = wf_sub(wf_add(wf_mul(this_scale, lf[i]), this_min), TILE(xt, i));
            diff = p->use_mad ? wf_abs(diff) : wf_mul(diff, diff);
            err = wf_add(err, wf_mul(TILE(wt, i), diff));
        }
        const wm take = wm_and(fit, wf_lt(err, best));
        level_iscale = wf_sel(take, iscale, level_iscale);
        level_min = wf_sel(take, min, level_min);
        best = wf_sel(take, err, best);
        scale = wf_sel(take, this_scale, scale);
        min = wf_sel(take, this_min, min);
    }
    for (int i = 0; i < n; ++i) {
        const wf v = wf_mul(level_iscale, wf_sub(TILE(xt, i), level_min));
        L[i] = wi_sel(flat, wi_set(0), w_clamp(w_nearest(v), 0, nmax));
    }
    /* A flat group (the reference returns early): zero levels and scale, its clamped min. */
    *scale_out = wf_sel(flat, zero, scale);
    *the_min_out = wf_neg(wf_sel(flat, flat_min, min));
}

/* q_make_qx_quants per lane with weights wt. L[i] gets level + nmax (0 for a zero group). */
static void qx_lanes(int n, int nmax, const float *xt, const float *wt, wf *scale_out, wi *L)
{
    const wf zero = wf_set(0.f);
    const wf max = signed_absmax_lanes(n, xt);
    const wm zero_group = wf_lt(wf_abs(max), wf_set(Q_GROUP_MAX_EPS));
    wf wx[QS_MAX_N];
    for (int i = 0; i < n; ++i)
        wx[i] = wf_mul(TILE(wt, i), TILE(xt, i));
    wf scale = zero, best = zero, best_iscale = zero;
    for (int is = 0; is <= 18; ++is) {
        /* is = 0 is the starting point (-nmax/max), then the reference's -9..-1, 1..9. */
        const int step = is <= 9 ? is - 10 : is - 9;
        const float num = is == 0 ? (float)-nmax : -(nmax + 0.1f * step);
        const wf iscale = wf_div(wf_set(num), max);
        wf sumlx = zero, suml2 = zero;
        for (int i = 0; i < n; ++i) {
            const wf l = w_level(wf_mul(iscale, TILE(xt, i)), -nmax, nmax - 1);
            sumlx = wf_add(sumlx, wf_mul(wx[i], l));
            suml2 = wf_add(suml2, wf_mul(wf_mul(TILE(wt, i), l), l));
        }
        if (is == 0) {
            scale = wf_sel(wf_ne(suml2, zero), wf_div(sumlx, suml2), zero);
            best = wf_mul(scale, sumlx);
            best_iscale = iscale;
            continue;
        }
        const wm take = wm_and(wf_gt(suml2, zero), wf_gt(wf_mul(sumlx, sumlx), wf_mul(best, suml2)));
        const wf new_scale = wf_div(sumlx, suml2);
        scale = wf_sel(take, new_scale, scale);
        best = wf_sel(take, wf_mul(new_scale, sumlx), best);
        best_iscale = wf_sel(take, iscale, best_iscale);
    }
    for (int i = 0; i < n; ++i) {
        const wi l = w_clamp(w_nearest(wf_mul(best_iscale, TILE(xt, i))), -nmax, nmax - 1);
        L[i] = wi_sel(zero_group, wi_set(0), wi_add(l, wi_set(nmax)));
    }
    *scale_out = wf_sel(zero_group, zero, scale);
}

/* make_q3_quants per lane (weights x^2), in two parts. q3_start: the levels of -nmax/max and
 * their sums; zero groups (max below Q_GROUP_MAX_EPS) are flagged. q3_pass: one pass of the
 * coordinate descent (q3_refine in kquants_search.c), returning the lanes it changed. The
 * reference makes up to 5 passes and stops after one without changes; most groups stop after the
 * first, so search_unit makes that one for every group and the later ones only for the groups
 * that changed something, gathered into fresh tiles, so that lanes are not spent waiting for
 * the slowest group of a tile. */
static void q3_start(int n, int nmax, const float *xt, wf *lf, wf *sumlx, wf *suml2, wm *zero_group)
{
    const wf zero = wf_set(0.f);
    const wf max = signed_absmax_lanes(n, xt);
    *zero_group = wf_lt(wf_abs(max), wf_set(Q_GROUP_MAX_EPS));
    const wf iscale = wf_div(wf_set((float)-nmax), max);
    wf slx = zero, sl2 = zero;
    for (int i = 0; i < n; ++i) {
        const wf x = TILE(xt, i), w = wf_mul(x, x);
        lf[i] = w_level(wf_mul(iscale, x), -nmax, nmax - 1);
        slx = wf_add(slx, wf_mul(wf_mul(w, x), lf[i]));
        sl2 = wf_add(sl2, wf_mul(wf_mul(w, lf[i]), lf[i]));
    }
    *sumlx = slx;
    *suml2 = sl2;
}

static wm q3_pass(int n, int nmax, const float *xt, wf *lf, wf *sumlx, wf *suml2)
{
    const wf zero = wf_set(0.f);
    wm changed = wm_none();
    for (int i = 0; i < n; ++i) {
        const wf x = TILE(xt, i), w = wf_mul(x, x), wx = wf_mul(w, x);
        wf slx = wf_sub(*sumlx, wf_mul(wx, lf[i]));
        wf sl2 = wf_sub(*suml2, wf_mul(wf_mul(w, lf[i]), lf[i]));
        const wf new_l = w_level(wf_div(wf_mul(x, sl2), slx), -nmax, nmax - 1);
        /* the reference skips the element unless slx > 0 and the level moves */
        wm act = wm_andnot(wf_eq(new_l, lf[i]), wf_gt(slx, zero));
        slx = wf_add(slx, wf_mul(wx, new_l));
        sl2 = wf_add(sl2, wf_mul(wf_mul(w, new_l), new_l));
        act = wm_and(act, wf_gt(sl2, zero));
        act = wm_and(act, wf_gt(wf_mul(wf_mul(slx, slx), *suml2), wf_mul(wf_mul(*sumlx, *sumlx), sl2)));
        lf[i] = wf_sel(act, new_l, lf[i]);
        *sumlx = wf_sel(act, slx, *sumlx);
        *suml2 = wf_sel(act, sl2, *suml2);
        changed = wm_or(changed, act);
    }
    return changed;
}

/* ---- iq4: the nearest of 16 non-uniform levels -------------------------------------------------
 * Why a count of midpoints equals q_iq4_nearest_level: between neighbours a < b the reference
 * picks a iff fl(v - a) < fl(b - v). Its callers only see v in [a, b], where near the midpoint
 * m = (a+b)/2 both differences are exact (every midpoint has |m| >= 4, so within 0.5 of it v is a
 * multiple of 2^-21 and the differences are at most 12, which 24 bits hold); away from m rounding
 * is monotone and cannot cross. So the index is #{k : v >= m_k}, with a tie going up. Values
 * beyond the end levels clamp to them in both. The ISA file tabulates the midpoints by bucket
 * (width w = 8 or 32): the bucket of v is floor(fl(fl(c/w) + 128/w)) for c = v clamped to
 * [-128, 127]. That is monotone in c and exact at bucket boundaries, so it is either the true
 * bucket or, within 2^-16 below a boundary, the next one, and no midpoint (all are multiples of
 * 0.5) lies in that sliver: the count comes out the same. A NaN, which the reference sends to the
 * top level, is patched where codes are made (iq4_index); in the searches v is a finite inverse
 * scale times a finite x, except in zero groups (max = 0 gives an infinite one, times x = 0), whose
 * results are discarded. tests/test_simd_quant.c checks every float in the long tier. */

static inline vi iq4_index(vf v)
{
    return vi_sel(vf_isnan(v), vi_set(15), iq4_index_nonan(v));
}

void QS_ISA(q_iq4_nearest_levels)(const float *v, uint8_t *idx, int64_t n)
{
    int64_t i = 0;
    for (; i + VL <= n; i += VL)
        vi_store_u8(idx + i, iq4_index(vf_load(v + i)));
    for (; i < n; ++i)
        idx[i] = (uint8_t)q_iq4_nearest_level(v[i]);
}

/* The reference's level_sums for inverse scale id. */
static inline void iq4_sums(int n, const float *xt, const float *wt, wf id, wf *sumqx, wf *sumq2)
{
    wf sqx = wf_set(0.f), sq2 = wf_set(0.f);
    for (int i = 0; i < n; ++i) {
        const wf x = TILE(xt, i);
        const wf q = w_iq4_value(wf_mul(id, x));
        const wf wq = wf_mul(TILE(wt, i), q);
        sqx = wf_add(sqx, wf_mul(wq, x));
        sq2 = wf_add(sq2, wf_mul(wq, q));
    }
    *sumqx = sqx;
    *sumq2 = sq2;
}

/* iq4.c's block_scale per lane: the scale only (codes are recomputed from it). */
static void iq4_lanes(int n, const float *xt, const float *wt, wf *d_out)
{
    const wf zero = wf_set(0.f);
    const wf max = signed_absmax_lanes(n, xt);
    const wm zero_group = wf_lt(wf_abs(max), wf_set(1e-15f));
    wf sumqx, sumq2;
    const float lv0 = q_iq4_levels[0];
    iq4_sums(n, xt, wt, wf_div(wf_set(1.f), wf_div(wf_neg(max), wf_set(lv0))), &sumqx, &sumq2);
    wf d = wf_sel(wf_gt(sumq2, zero), wf_div(sumqx, sumq2), zero);
    wf best = wf_mul(d, sumqx);
    for (int t = -7; t <= 7; ++t) {
        iq4_sums(n, xt, wt, wf_div(wf_set((float)(t + q_iq4_levels[0])), max), &sumqx, &sumq2);
        const wm take = wm_and(wf_gt(sumq2, zero), wf_gt(wf_mul(sumqx, sumqx), wf_mul(best, sumq2)));
        const wf new_d = wf_div(sumqx, sumq2);
        d = wf_sel(take, new_d, d);
        best = wf_sel(take, wf_mul(new_d, sumqx), best);
    }
    *d_out = wf_sel(zero_group, zero, d);
}

/* 32 codes for scale d (codes_for_scale) packed as nibbles into qs[16]. */
static inline void iq4_codes_packed(const float *x, float d, uint8_t *qs)
{
    const vf id = vf_set(d ? 1 / d : 0.0f);
    for (int j = 0; j < 16; j += VL) {
        const vi lo = iq4_index(vf_mul(id, vf_load(x + j)));
        const vi hi = iq4_index(vf_mul(id, vf_load(x + j + 16)));
        vi_store_u8(qs + j, vi_or(lo, vi_shl(hi, 4)));
    }
}

/* ---- the item driver -------------------------------------------------------------------------
 * An item is what the reference quantizes in one call: a super-block (nsub groups of n) or a
 * block of 32 (one group). Items are taken LW at a time; group g of such a unit is
 * item g / nsub, part g % nsub, and the unit's groups are searched LW at a time, one per lane.
 * The reference's per-item sums over more than one group (sigma2) are sequential over the item;
 * here they run one item per lane too. */

typedef enum {
    QS_W_ABS,     /* |x| */
    QS_W_RMS_ABS, /* sqrt(mean x^2 of the group) + |x| */
    QS_W_SQ,      /* x^2 */
    QS_W_IMAT,    /* qw * sqrt(sigma2 + x^2) */
    QS_W_RAW,     /* qw */
} qs_weights;

typedef enum { QS_S_QKX, QS_S_QX, QS_S_Q3, QS_S_IQ4 } qs_search;

/* sigma2 of an item from the sum of squares ss over its values (or over its row). */
typedef enum {
    QS_SIG_NONE,
    QS_SIG_K,   /* 2 * ss / 256 (q3_K, q4_K, q5_K) */
    QS_SIG_Q2,  /* ss / 256 (q2_K) */
    QS_SIG_IQ4, /* ss * (2 / item size) (iq4_nl, iq4_xs) */
    QS_SIG_ROW, /* row ss / n_per_row (the block-32 types) */
} qs_sigma;

typedef struct {
    int n, nsub, nmax;
    qs_weights weights;
    qs_search search;
    const q_qkx_params *qkx;
    qs_sigma sigma;
} qs_plan;

typedef struct {
    float scale[LW * QS_MAX_SUB], the_min[LW * QS_MAX_SUB], sw[LW * QS_MAX_SUB];
    uint8_t L[LW * Q_QK_K];
} qs_found;

typedef struct {
    const float *x;          /* count items back to back */
    int count;               /* 1..LW */
    const float *qw[LW];     /* per item, or NULL */
    int64_t row[LW];         /* per item, its row in the matrix */
    _Alignas(64) float sigma2[LW];
} qs_unit;

/* out[c] = sum of x[c*stride + j]^2 over j < len in index order, for c < count: one sequential
 * sum per item (or row), several at once. Gathers pay off only when most lanes are busy; a few
 * sums go through scalar accumulators, which the core overlaps just as well. */
static void sumsq_lanes(const float *x, int64_t stride, int64_t len, int count, float *out)
{
    int c0 = 0;
    if (stride <= INT32_MAX / VL) { /* lane offsets must fit the 32-bit gather indices */
        _Alignas(64) int32_t off[VL];
        for (int l = 0; l < VL; ++l)
            off[l] = (int32_t)(l * stride);
        const vi offs = vi_load(off);
        for (; count - c0 > VL / 2; c0 += VL) {
            const int nc = count - c0 < VL ? count - c0 : VL;
            const vm m = vm_first(nc);
            const float *base = x + c0 * stride;
            vf s = vf_set(0.f);
            for (int64_t j = 0; j < len; ++j) {
                const vf v = vf_gather(base + j, offs, m);
                s = vf_add(s, vf_mul(v, v));
            }
            _Alignas(64) float tmp[VL];
            vf_store(tmp, s);
            memcpy(out + c0, tmp, (size_t)nc * sizeof(float));
        }
    }
    for (; c0 < count; c0 += 4) {
        const int nc = count - c0 < 4 ? count - c0 : 4;
        const float *r[4];
        for (int c = 0; c < 4; ++c)
            r[c] = x + (c0 + (c < nc ? c : 0)) * stride;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int64_t j = 0; j < len; ++j) {
            s0 += r[0][j] * r[0][j];
            s1 += r[1][j] * r[1][j];
            s2 += r[2][j] * r[2][j];
            s3 += r[3][j] * r[3][j];
        }
        const float s[4] = {s0, s1, s2, s3};
        memcpy(out + c0, s, (size_t)nc * sizeof(float));
    }
}

static float sigma2_of(qs_sigma kind, float ss, int item_size)
{
    switch (kind) {
    case QS_SIG_K: return 2 * ss / Q_QK_K;
    case QS_SIG_Q2: return ss / Q_QK_K;
    case QS_SIG_IQ4: return ss * (2.f / (float)item_size);
    default: return 0.f;
    }
}

/* ---- transposes between group-major memory and tiles (AVX2 shuffles: both ISAs have them) ---- */

static const float QS_ZEROS[QS_MAX_N]; /* the rows of the lanes past the last item */

/* dst[(c * dst_stride) + r] = rows[r][c] for an 8x8 block. */
static inline void transpose8_f32(const float *const rows[8], float *dst, size_t dst_stride)
{
    __m256 r[8], t[8], q[8];
    QS_UNROLL for (int k = 0; k < 8; ++k)
        r[k] = _mm256_loadu_ps(rows[k]);
    QS_UNROLL for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    QS_UNROLL for (int k = 0; k < 8; k += 4) {
        q[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
        q[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
        q[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        q[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
    QS_UNROLL for (int k = 0; k < 4; ++k) {
        _mm256_storeu_ps(dst + k * dst_stride, _mm256_permute2f128_ps(q[k], q[k + 4], 0x20));
        _mm256_storeu_ps(dst + (k + 4) * dst_stride, _mm256_permute2f128_ps(q[k], q[k + 4], 0x31));
    }
}

/* The same for bytes: dst[c][r] = src[r][c], 8 bytes from each src[r], to each dst[c]. */
static inline void transpose8_u8(const uint8_t *const src[8], uint8_t *const dst[8])
{
    __m128i r[8];
    QS_UNROLL for (int k = 0; k < 8; ++k)
        r[k] = _mm_loadl_epi64((const __m128i *)src[k]);
    const __m128i t0 = _mm_unpacklo_epi8(r[0], r[1]), t1 = _mm_unpacklo_epi8(r[2], r[3]);
    const __m128i t2 = _mm_unpacklo_epi8(r[4], r[5]), t3 = _mm_unpacklo_epi8(r[6], r[7]);
    const __m128i u0 = _mm_unpacklo_epi16(t0, t1), u1 = _mm_unpackhi_epi16(t0, t1);
    const __m128i u2 = _mm_unpacklo_epi16(t2, t3), u3 = _mm_unpackhi_epi16(t2, t3);
    const __m128i v[4] = {_mm_unpacklo_epi32(u0, u2), _mm_unpackhi_epi32(u0, u2),
                          _mm_unpacklo_epi32(u1, u3), _mm_unpackhi_epi32(u1, u3)};
    QS_UNROLL for (int k = 0; k < 4; ++k) {
        _mm_storel_epi64((__m128i *)dst[2 * k], v[k]);
        _mm_storel_epi64((__m128i *)dst[2 * k + 1], _mm_unpackhi_epi64(v[k], v[k]));
    }
}

/* Levels of a tile (L[i] lane l) to bytes rows[l][i], i < n (a multiple of 8). */
static inline void tile_levels_to_rows(const wi *L, int n, uint8_t *const rows[LW])
{
    _Alignas(64) uint8_t lt[QS_MAX_N][LW];
    for (int i = 0; i < n; ++i)
        for (int k = 0; k < QS_K; ++k)
            vi_store_u8(lt[i] + k * VL, L[i].v[k]);
    for (int l0 = 0; l0 < LW; l0 += 8) {
        for (int i0 = 0; i0 < n; i0 += 8) {
            const uint8_t *src[8];
            uint8_t *dst[8];
            for (int k = 0; k < 8; ++k) {
                src[k] = lt[i0 + k] + l0;
                dst[k] = rows[l0 + k] + i0;
            }
            transpose8_u8(src, dst);
        }
    }
}

/* And back: lf[i] lane l = rows[l][i] - offset, as floats. */
static inline void tile_levels_from_rows(const uint8_t *const rows[LW], int n, int offset, wf *lf)
{
    _Alignas(64) uint8_t lt[QS_MAX_N][LW];
    for (int l0 = 0; l0 < LW; l0 += 8) {
        for (int i0 = 0; i0 < n; i0 += 8) {
            const uint8_t *src[8];
            uint8_t *dst[8];
            for (int k = 0; k < 8; ++k) {
                src[k] = rows[l0 + k] + i0;
                dst[k] = lt[i0 + k] + l0;
            }
            transpose8_u8(src, dst);
        }
    }
    for (int i = 0; i < n; ++i)
        for (int k = 0; k < QS_K; ++k)
            lf[i].v[k] = vi_to_vf(vi_sub(vi_load_u8(lt[i] + k * VL), vi_set(offset)));
}

/* Tile t[i * LW + l] = rows[l][i] for i < n (a multiple of 8). */
static inline void tile_from_rows(const float *const rows[LW], int n, float *t)
{
    for (int l0 = 0; l0 < LW; l0 += 8) {
        for (int i0 = 0; i0 < n; i0 += 8) {
            const float *r[8];
            for (int k = 0; k < 8; ++k)
                r[k] = rows[l0 + k] + i0;
            transpose8_f32(r, t + (size_t)i0 * LW + l0, LW);
        }
    }
}

/* Transposes batch b of the unit into xt (and the importance weights into wt when weighted);
 * returns the lanes' sigma2. */
static wf load_batch(const qs_plan *p, const qs_unit *u, int b, int weighted, float *xt, float *wt)
{
    const int n = p->n;
    const float *xr[LW], *wr[LW];
    _Alignas(64) float sig[LW];
    int item = b * LW / p->nsub, part = b * LW % p->nsub; /* of lane 0, then stepped */
    for (int l = 0; l < LW; ++l) {
        const int valid = item < u->count;
        xr[l] = valid ? u->x + (size_t)(b * LW + l) * n : QS_ZEROS;
        wr[l] = valid && weighted ? u->qw[item] + part * n : QS_ZEROS;
        sig[l] = valid ? u->sigma2[item] : 0.f;
        if (++part == p->nsub) {
            part = 0;
            ++item;
        }
    }
    tile_from_rows(xr, n, xt);
    if (weighted)
        tile_from_rows(wr, n, wt);
    return wf_load(sig);
}

static void compute_weights(qs_weights kind, int n, const float *xt, float *wt, wf sigma2)
{
    wf av = wf_set(0.f);
    if (kind == QS_W_RMS_ABS) {
        wf ss = wf_set(0.f);
        for (int i = 0; i < n; ++i)
            ss = wf_add(ss, wf_mul(TILE(xt, i), TILE(xt, i)));
        av = wf_sqrt(wf_div(ss, wf_set((float)n)));
    }
    for (int i = 0; i < n; ++i) {
        const wf x = TILE(xt, i);
        wf w;
        switch (kind) {
        case QS_W_ABS: w = wf_abs(x); break;
        case QS_W_RMS_ABS: w = wf_add(av, wf_abs(x)); break;
        case QS_W_SQ: w = wf_mul(x, x); break;
        case QS_W_IMAT: w = wf_mul(TILE(wt, i), wf_sqrt(wf_add(sigma2, wf_mul(x, x)))); break;
        default: w = TILE(wt, i); break;
        }
        wf_store(wt + (size_t)i * LW, w);
    }
}

/* Lane results of batch b into the unit's per-group arrays (levels as bytes, group-major). */
static void store_batch(const qs_plan *p, const qs_unit *u, int b, wf scale, wf the_min, wf sw,
                        const wi *L, qs_found *f)
{
    const int n = p->n, g0 = b * LW;
    const int ng = (u->count * p->nsub - g0) < LW ? u->count * p->nsub - g0 : LW;
    _Alignas(64) float s[LW], m[LW], w[LW];
    wf_store(s, scale);
    wf_store(m, the_min);
    wf_store(w, sw);
    memcpy(f->scale + g0, s, (size_t)ng * sizeof(float));
    memcpy(f->the_min + g0, m, (size_t)ng * sizeof(float));
    memcpy(f->sw + g0, w, (size_t)ng * sizeof(float));
    /* f->L has room for LW whole items, so the lanes past the last one may be written too. */
    uint8_t *rows[LW];
    for (int l = 0; l < LW; ++l)
        rows[l] = f->L + (size_t)(g0 + l) * n;
    tile_levels_to_rows(L, n, rows);
}

/* make_q3_quants for the groups of the unit: the first descent pass in the unit's own tiles, the
 * rest for the groups that changed, gathered LW at a time. Levels (+nmax) and scales go to f. */
static void q3_unit(const qs_plan *p, const qs_unit *u, qs_found *f)
{
    const int n = p->n, nmax = p->nmax, ngroups = u->count * p->nsub;
    _Alignas(64) float xt[QS_MAX_N * LW], sx[LW], s2[LW], chg[LW];
    float slx_g[LW * QS_MAX_SUB], sl2_g[LW * QS_MAX_SUB];
    int pending[LW * QS_MAX_SUB], np = 0;
    wf lf[QS_MAX_N];
    wi L[QS_MAX_N];
    for (int b = 0; b * LW < ngroups; ++b) {
        wf sumlx, suml2;
        wm zero_group;
        load_batch(p, u, b, 0, xt, NULL);
        q3_start(n, nmax, xt, lf, &sumlx, &suml2, &zero_group);
        const wm changed = wm_andnot(zero_group, q3_pass(n, nmax, xt, lf, &sumlx, &suml2));
        for (int i = 0; i < n; ++i)
            L[i] = wi_sel(zero_group, wi_set(0), wi_add(wf_trunc_wi(lf[i]), wi_set(nmax)));
        const wf scale = wf_sel(zero_group, wf_set(0.f), wf_div(sumlx, suml2));
        store_batch(p, u, b, scale, scale, scale, L, f);
        wf_store(sx, sumlx);
        wf_store(s2, suml2);
        wf_store(chg, wf_sel(changed, wf_set(1.f), wf_set(0.f)));
        for (int l = 0; l < LW && b * LW + l < ngroups; ++l) {
            slx_g[b * LW + l] = sx[l];
            sl2_g[b * LW + l] = s2[l];
            if (chg[l])
                pending[np++] = b * LW + l;
        }
    }
    uint8_t scratch[QS_MAX_N];
    for (int c0 = 0; c0 < np; c0 += LW) {
        const float *xr[LW];
        uint8_t *lr[LW];
        for (int l = 0; l < LW; ++l) {
            const int g = c0 + l < np ? pending[c0 + l] : -1;
            xr[l] = g >= 0 ? u->x + (size_t)g * n : QS_ZEROS;
            lr[l] = g >= 0 ? f->L + (size_t)g * n : scratch;
            sx[l] = g >= 0 ? slx_g[g] : 0.f;
            s2[l] = g >= 0 ? sl2_g[g] : 0.f;
        }
        memset(scratch, nmax, sizeof scratch);
        tile_from_rows(xr, n, xt);
        tile_levels_from_rows((const uint8_t *const *)lr, n, nmax, lf);
        wf sumlx = wf_load(sx), suml2 = wf_load(s2);
        for (int itry = 1; itry < 5; ++itry)
            if (!wm_any(q3_pass(n, nmax, xt, lf, &sumlx, &suml2)))
                break;
        for (int i = 0; i < n; ++i)
            L[i] = wi_add(wf_trunc_wi(lf[i]), wi_set(nmax));
        tile_levels_to_rows(L, n, lr);
        wf_store(sx, wf_div(sumlx, suml2));
        for (int l = 0; l < LW && c0 + l < np; ++l)
            f->scale[pending[c0 + l]] = sx[l];
    }
}

static void search_unit(const qs_plan *p, const qs_unit *u, int weighted, qs_found *f)
{
    if (p->search == QS_S_Q3) {
        q3_unit(p, u, f);
        return;
    }
    _Alignas(64) float xt[QS_MAX_N * LW], wt[QS_MAX_N * LW];
    const int ngroups = u->count * p->nsub;
    for (int b = 0; b * LW < ngroups; ++b) {
        wf scale = wf_set(0.f), the_min = wf_set(0.f), sw = wf_set(0.f);
        wi L[QS_MAX_N];
        const wf sigma2 = load_batch(p, u, b, weighted, xt, wt);
        compute_weights(p->weights, p->n, xt, wt, sigma2);
        if (weighted) /* the super-block scale searches weigh sub-blocks by their weight sums */
            for (int i = 0; i < p->n; ++i)
                sw = wf_add(sw, TILE(wt, i));
        switch (p->search) {
        case QS_S_QKX: qkx_lanes(p->n, p->nmax, xt, wt, p->qkx, &scale, &the_min, L); break;
        case QS_S_QX: qx_lanes(p->n, p->nmax, xt, wt, &scale, L); break;
        default:
            iq4_lanes(p->n, xt, wt, &scale);
            for (int i = 0; i < p->n; ++i)
                L[i] = wi_set(0);
            break;
        }
        store_batch(p, u, b, scale, the_min, sw, L, f);
    }
}

/* Per item, after the searches: the reference's remaining steps into one output block. */
typedef void (*qs_finish_fn)(const float *x, const float *qw, qs_found *f, int k, void *blk);

typedef struct {
    qs_plan plan;          /* with importance weights */
    qs_plan plan_unweighted;
    size_t block_size;
    qs_finish_fn finish;
} qs_type;

static size_t quantize_items(const qs_type *t, const float *src, void *dst, int64_t nrows,
                             int64_t n_per_row, const float *imatrix)
{
    const qs_plan *p = imatrix ? &t->plan : &t->plan_unweighted;
    const int item_size = p->n * p->nsub;
    const int64_t nb = n_per_row / item_size, nitems = nrows * nb;
    int64_t row0 = -1;
    _Alignas(64) float row_sigma2[LW];
    qs_found f;
    qs_unit u;
    memset(u.sigma2, 0, sizeof u.sigma2); /* unweighted: never read, but loaded */
    for (int64_t i0 = 0; i0 < nitems; i0 += LW) {
        u.x = src + i0 * item_size;
        u.count = (int)(nitems - i0 < LW ? nitems - i0 : LW);
        int64_t col = i0 % nb, row = i0 / nb; /* of item i0, then stepped */
        for (int k = 0; k < u.count; ++k) {
            u.qw[k] = imatrix ? imatrix + col * item_size : NULL;
            u.row[k] = row;
            if (++col == nb) {
                col = 0;
                ++row;
            }
        }
        if (imatrix && p->sigma == QS_SIG_ROW) {
            for (int k = 0; k < u.count; ++k) {
                const int64_t rk = u.row[k];
                if (row0 < 0 || rk >= row0 + LW) {
                    row0 = rk;
                    const int nr = (int)(nrows - row0 < LW ? nrows - row0 : LW);
                    sumsq_lanes(src + row0 * n_per_row, n_per_row, n_per_row, nr, row_sigma2);
                    for (int r = 0; r < nr; ++r)
                        row_sigma2[r] = row_sigma2[r] / (float)n_per_row;
                }
                u.sigma2[k] = row_sigma2[rk - row0];
            }
        } else if (imatrix && p->sigma != QS_SIG_NONE) {
            sumsq_lanes(u.x, item_size, item_size, u.count, u.sigma2);
            for (int k = 0; k < u.count; ++k)
                u.sigma2[k] = sigma2_of(p->sigma, u.sigma2[k], item_size);
        }
        search_unit(p, &u, imatrix != NULL, &f);
        for (int k = 0; k < u.count; ++k)
            t->finish(u.x + (size_t)k * item_size, u.qw[k], &f, k,
                      (char *)dst + (size_t)(i0 + k) * t->block_size);
    }
    return (size_t)nitems * t->block_size;
}

/* ---- shared post-search steps ----------------------------------------------------------------- */

/* L[i] = clamp(nearest((x[i] + m) / d), 0, nmax) for n a multiple of 8. */
static inline void requant_affine_v(const float *x, int n, float d, float m, int nmax, uint8_t *L)
{
    const vf vd = vf_set(d), vm_ = vf_set(m);
    int i = 0;
    for (; i + VL <= n; i += VL)
        vi_store_u8(L + i, v_clamp(v_nearest(vf_div(vf_add(vf_load(x + i), vm_), vd)), 0, nmax));
    for (; i < n; ++i)
        L[i] = (uint8_t)q_clampi(q_nearest_int((x[i] + m) / d), 0, nmax);
}

/* L[i] = clamp(nearest(x[i] / d), lo, hi) - lo. */
static inline void requant_sym_v(const float *x, int n, float d, int lo, int hi, uint8_t *L)
{
    const vf vd = vf_set(d);
    int i = 0;
    for (; i + VL <= n; i += VL)
        vi_store_u8(L + i, vi_sub(v_clamp(v_nearest(vf_div(vf_load(x + i), vd)), lo, hi), vi_set(lo)));
    for (; i < n; ++i)
        L[i] = (uint8_t)(q_clampi(q_nearest_int(x[i] / d), lo, hi) - lo);
}

/* ---- bytes, 32 at a time (AVX2, which both ISA files have) ----
 * Shifts work on 16-bit lanes: a left shift stays inside each byte when the values are small
 * enough, a right shift is masked afterwards. */
typedef __m256i b32;
static inline b32 b32_load(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline void b32_store(uint8_t *p, b32 v) { _mm256_storeu_si256((__m256i *)p, v); }
static inline b32 b32_set(int v) { return _mm256_set1_epi8((char)v); }
static inline b32 b32_or(b32 a, b32 b) { return _mm256_or_si256(a, b); }
static inline b32 b32_and(b32 a, b32 b) { return _mm256_and_si256(a, b); }
static inline b32 b32_shl(b32 a, int n) { return _mm256_slli_epi16(a, n); } /* a < 2^(8-n) */
static inline b32 b32_shr(b32 a, int n) { return b32_and(_mm256_srli_epi16(a, n), b32_set(0xFF >> n)); }

/* q2_K and q3_K: byte l of each 32-byte run holds values l, l+32, l+64, l+96 of a 128-value half,
 * two bits each (levels 0..3). */
static inline void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int h = 0; h < Q_QK_K; h += 128) {
        const uint8_t *s = L + h;
        b32_store(qs + h / 4, b32_or(b32_or(b32_load(s), b32_shl(b32_load(s + 32), 2)),
                                     b32_or(b32_shl(b32_load(s + 64), 4), b32_shl(b32_load(s + 96), 6))));
    }
}

/* 32 codes of 4 bits: code j low nibble of byte j, code j+16 high nibble. */
static inline void pack_nibbles(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < 16; j += VL) {
        const vi lo = vi_and(vi_load_u8(L + j), vi_set(0x0F));
        const vi hi = vi_and(vi_load_u8(L + j + 16), vi_set(0x0F));
        vi_store_u8(qs + j, vi_or(lo, vi_shl(hi, 4)));
    }
}

/* ---- the k-quants: kquants.c's steps (2)-(3) with the vector requantizers, then packing ---- */

/* What the searches found for item k (the search's levels, requantized in place, are f->L). */
static inline q_kq_found found_item(const qs_found *f, const float *qw, int k, int nsub)
{
    return (q_kq_found){f->scale + nsub * k, f->the_min + nsub * k, qw ? f->sw + nsub * k : NULL};
}

static void finish_q2_K(const float *x, const float *qw, qs_found *f, int k, void *blk)
{
    block_q2_K *y = blk;
    uint8_t *L = f->L + (size_t)k * Q_QK_K;
    q_kq_q2_levels(x, found_item(f, qw, k, 16), requant_affine_v, y, L);
    pack_2bit(L, y->qs);
}

static void finish_q3_K(const float *x, const float *qw, qs_found *f, int k, void *blk)
{
    block_q3_K *y = blk;
    uint8_t *L = f->L + (size_t)k * Q_QK_K;
    q_kq_q3_levels(x, found_item(f, qw, k, 16), requant_sym_v, y, L);
    /* The third bit of value j goes to bit j/32 of hmask[j%32]. */
    b32 h = b32_set(0);
    for (int b = 0; b < 8; ++b) {
        const b32 v = b32_load(L + 32 * b);
        h = b32_or(h, b32_shl(b32_shr(v, 2), b)); /* 1 for levels 4..7 */
        b32_store(L + 32 * b, b32_and(v, b32_set(3)));
    }
    b32_store(y->hmask, h);
    pack_2bit(L, y->qs);
}

static void finish_q4_K(const float *x, const float *qw, qs_found *f, int k, void *blk)
{
    block_q4_K *y = blk;
    uint8_t *L = f->L + (size_t)k * Q_QK_K;
    q_kq_k45_levels(x, found_item(f, qw, k, 8), 15, requant_affine_v,
                    (q_kq_k45_head){&y->d, &y->dmin, y->scales}, L);
    for (int j = 0; j < Q_QK_K / 64; ++j)
        b32_store(y->qs + 32 * j, b32_or(b32_load(L + 64 * j), b32_shl(b32_load(L + 64 * j + 32), 4)));
}

static void finish_q5_K(const float *x, const float *qw, qs_found *f, int k, void *blk)
{
    block_q5_K *y = blk;
    uint8_t *L = f->L + (size_t)k * Q_QK_K;
    q_kq_k45_levels(x, found_item(f, qw, k, 8), 31, requant_affine_v,
                    (q_kq_k45_head){&y->d, &y->dmin, y->scales}, L);
    const b32 lo4 = b32_set(0xF);
    b32 qh = b32_set(0);
    for (int j = 0; j < Q_QK_K / 64; ++j) {
        const b32 lo = b32_load(L + 64 * j), hi = b32_load(L + 64 * j + 32);
        qh = b32_or(qh, b32_or(b32_shl(b32_shr(lo, 4), 2 * j), b32_shl(b32_shr(hi, 4), 2 * j + 1)));
        b32_store(y->qs + 32 * j, b32_or(b32_and(lo, lo4), b32_shl(b32_and(hi, lo4), 4)));
    }
    b32_store(y->qh, qh);
}

/* q6_K's search weighs with the raw importance weights, so its step (2) does not look at sw. */
static void finish_q6_K(const float *x, const float *qw, qs_found *f, int k, void *blk)
{
    (void)qw;
    block_q6_K *y = blk;
    uint8_t *L = f->L + (size_t)k * Q_QK_K;
    if (!q_kq_q6_levels(x, found_item(f, NULL, k, 16), requant_sym_v, y, L))
        return;
    for (int h = 0; h < 2; ++h) {
        const uint8_t *Lh = L + 128 * h;
        const b32 a = b32_load(Lh), b = b32_load(Lh + 32), c = b32_load(Lh + 64), e = b32_load(Lh + 96);
        const b32 lo4 = b32_set(0xF);
        b32_store(y->ql + 64 * h, b32_or(b32_and(a, lo4), b32_shl(b32_and(c, lo4), 4)));
        b32_store(y->ql + 64 * h + 32, b32_or(b32_and(b, lo4), b32_shl(b32_and(e, lo4), 4)));
        b32_store(y->qh + 32 * h, b32_or(b32_or(b32_shr(a, 4), b32_shl(b32_shr(b, 4), 2)),
                                         b32_or(b32_shl(b32_shr(c, 4), 4), b32_shl(b32_shr(e, 4), 6))));
    }
}

/* ---- iq4_nl and iq4_xs ---- */

static void finish_iq4_nl(const float *x, const float *qw, qs_found *f, int k, void *blk)
{
    (void)qw;
    block_iq4_nl *y = blk;
    const float d = f->scale[k];
    y->d = q_fp32_to_fp16(d);
    iq4_codes_packed(x, d, y->qs);
}

static void finish_iq4_xs(const float *x, const float *qw, qs_found *f, int k, void *blk)
{
    (void)qw;
    block_iq4_xs *y = blk;
    int l[8];
    const float d = q_kq_iq4_xs_scales(f->scale + 8 * k, y, l);
    for (int ib = 0; ib < 8; ++ib)
        iq4_codes_packed(x + 32 * ib, d * (float)l[ib], y->qs + 16 * ib);
}

/* ---- the block-32 types with importance weights ---- */

static void store_sym(void *blk, int nmax, float d, const uint8_t *L)
{
    if (nmax == 8) {
        block_q4_0 *b = blk;
        b->d = q_fp32_to_fp16(d);
        pack_nibbles(L, b->qs);
    } else {
        block_q5_0 *b = blk;
        uint32_t h = 0;
        for (int j = 0; j < 32; j += VL)
            h |= (uint32_t)vm_bits(vi_gt(vi_load_u8(L + j), vi_set(15))) << j;
        b->d = q_fp32_to_fp16(d);
        memcpy(b->qh, &h, sizeof h);
        pack_nibbles(L, b->qs);
    }
}

static void store_asym(void *blk, int nmax, float d, float m, const uint8_t *L)
{
    if (nmax == 15) {
        block_q4_1 *b = blk;
        b->d = q_fp32_to_fp16(d);
        b->m = q_fp32_to_fp16(m);
        pack_nibbles(L, b->qs);
    } else {
        block_q5_1 *b = blk;
        uint32_t h = 0;
        for (int j = 0; j < 32; j += VL)
            h |= (uint32_t)vm_bits(vi_gt(vi_load_u8(L + j), vi_set(15))) << j;
        b->d = q_fp32_to_fp16(d);
        b->m = q_fp32_to_fp16(m);
        memcpy(b->qh, &h, sizeof h);
        pack_nibbles(L, b->qs);
    }
}

static void finish_q4_0(const float *x, const float *qw, qs_found *f, int k, void *blk)
{
    (void)x, (void)qw;
    store_sym(blk, 8, f->scale[k], f->L + 32 * k);
}

static void finish_q5_0(const float *x, const float *qw, qs_found *f, int k, void *blk)
{
    (void)x, (void)qw;
    store_sym(blk, 16, f->scale[k], f->L + 32 * k);
}

/* The search returns -min (exactly), the format stores min. */
static void finish_q4_1(const float *x, const float *qw, qs_found *f, int k, void *blk)
{
    (void)x, (void)qw;
    store_asym(blk, 15, f->scale[k], -f->the_min[k], f->L + 32 * k);
}

static void finish_q5_1(const float *x, const float *qw, qs_found *f, int k, void *blk)
{
    (void)x, (void)qw;
    store_asym(blk, 31, f->scale[k], -f->the_min[k], f->L + 32 * k);
}

/* ---- the block-32 types without weights: one block at a time, vectors across its values ----- */

/* The first value in x[0..32) equal to v (v is one of them): the reference's strict-compare
 * scans keep the first of equal values, which matters only for the sign of a zero. */
static inline float first_equal(const float *x, float v)
{
    const vf t = vf_set(v);
    for (int j = 0; j < 32; j += VL) {
        const unsigned bits = vm_bits(vf_eq(vf_load(x + j), t));
        if (bits)
            return x[j + __builtin_ctz(bits)];
    }
    return v;
}

static inline float absmax32(const float *x)
{
    vf a = vf_set(0.f);
    for (int j = 0; j < 32; j += VL)
        a = vf_max(vf_abs(vf_load(x + j)), a);
    return vf_hmax(a);
}

/* q_lg_signed_absmax: the first value of largest magnitude, +0 for an all-zero block. */
static inline float signed_absmax32(const float *x)
{
    const float amax = absmax32(x);
    if (amax == 0)
        return 0.0f;
    const vf t = vf_set(amax);
    for (int j = 0; j < 32; j += VL) {
        const unsigned bits = vm_bits(vf_eq(vf_abs(vf_load(x + j)), t));
        if (bits)
            return x[j + __builtin_ctz(bits)];
    }
    return amax;
}

/* legacy.c's codes_sym_ref. */
static inline float codes_sym(const float *x, int nmax, uint8_t *L)
{
    const float max = signed_absmax32(x);
    const float d = max / (float)-nmax;
    const float id = d ? 1.0f / d : 0.0f;
    const vf vid = vf_set(id), bias = vf_set((float)nmax + 0.5f);
    for (int j = 0; j < 32; j += VL) {
        const vi q = vi_sext8(vf_trunc_vi(vf_add(vf_mul(vf_load(x + j), vid), bias)));
        vi_store_u8(L + j, vi_min(q, vi_set(2 * nmax - 1)));
    }
    return d;
}

/* legacy.c's codes_asym_ref. */
static inline float codes_asym(const float *x, int nmax, uint8_t *L, float *min_out)
{
    vf vmin = vf_load(x), vmax = vmin;
    for (int j = VL; j < 32; j += VL) {
        vmin = vf_min(vf_load(x + j), vmin);
        vmax = vf_max(vf_load(x + j), vmax);
    }
    const float min = first_equal(x, vf_hmin(vmin)), max = first_equal(x, vf_hmax(vmax));
    const float d = (max - min) / (float)nmax;
    const float id = d ? 1.0f / d : 0.0f;
    const vf vid = vf_set(id), vmn = vf_set(min), half = vf_set(0.5f);
    for (int j = 0; j < 32; j += VL) {
        const vf v = vf_add(vf_mul(vf_sub(vf_load(x + j), vmn), vid), half);
        vi_store_u8(L + j, vi_min(vi_sext8(vf_trunc_vi(v)), vi_set(nmax)));
    }
    *min_out = min;
    return d;
}

static void blocks_sym(const float *x, void *y, int64_t nblk, size_t bsize, int nmax)
{
    for (int64_t i = 0; i < nblk; ++i) {
        uint8_t L[32];
        const float d = codes_sym(x + 32 * i, nmax, L);
        store_sym((char *)y + (size_t)i * bsize, nmax, d, L);
    }
}

static void blocks_asym(const float *x, void *y, int64_t nblk, size_t bsize, int nmax)
{
    for (int64_t i = 0; i < nblk; ++i) {
        uint8_t L[32];
        float min;
        const float d = codes_asym(x + 32 * i, nmax, L, &min);
        store_asym((char *)y + (size_t)i * bsize, nmax, d, min, L);
    }
}

/* ---- q8_0, q8_1, q8_K ---- */

/* roundf (ties away from zero) per lane: trunc, then one step away from zero when the dropped
 * fraction is at least 0.5. v - trunc(v) is exact (the fraction of a float below 2^23 fits its
 * bits; above, v is an integer and the fraction 0); inf and NaN pass through as roundf's do. */
static inline vf v_roundf(vf v)
{
    const vf t = vf_trunc(v);
    const vf frac = vf_abs(vf_sub(v, t));
    const vf one = vi_as_vf(vi_or(vi_and(vf_as_vi(v), vi_set((int)0x80000000u)), vf_as_vi(vf_set(1.f))));
    return vf_add(t, vf_sel(vf_ge(frac, vf_set(0.5f)), one, vf_set(0.f)));
}

/* legacy.c's codes_q8: qs = (int8_t)roundf(x / d); returns d and the sum of qs. */
static inline float codes_q8(const float *x, int8_t *qs, int *sum)
{
    const float amax = absmax32(x);
    const float d = amax / 127.0f;
    const vf id = vf_set(d ? 1.0f / d : 0.0f);
    vi s = vi_set(0);
    for (int j = 0; j < 32; j += VL) {
        const vi q = vi_sext8(vf_trunc_vi(v_roundf(vf_mul(vf_load(x + j), id))));
        vi_store_u8((uint8_t *)qs + j, q);
        s = vi_add(s, q);
    }
    *sum = vi_hsum(s);
    return d;
}

static void QS_ISA(q_quantize_row_q8_0)(const float *x, void *vy, int64_t k)
{
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < k / 32; ++i) {
        int sum;
        y[i].d = q_fp32_to_fp16(codes_q8(x + 32 * i, y[i].qs, &sum));
    }
}

static void QS_ISA(q_quantize_row_q8_1)(const float *x, void *vy, int64_t k)
{
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < k / 32; ++i) {
        int sum;
        const float d = codes_q8(x + 32 * i, y[i].qs, &sum);
        y[i].d = q_fp32_to_fp16(d);
        y[i].s = q_fp32_to_fp16((float)sum * d);
    }
}

static void QS_ISA(q_quantize_row_q8_K)(const float *x, void *vy, int64_t k)
{
    block_q8_K *y = vy;
    for (int64_t i = 0; i < k / Q_QK_K; ++i, x += Q_QK_K) {
        vf a = vf_set(0.f);
        for (int j = 0; j < Q_QK_K; j += VL)
            a = vf_max(vf_abs(vf_load(x + j)), a);
        const float amax = vf_hmax(a);
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = amax;
        for (int j = 0; j < Q_QK_K; j += VL) { /* the first of largest magnitude sets the sign */
            const unsigned bits = vm_bits(vf_eq(vf_abs(vf_load(x + j)), vf_set(amax)));
            if (bits) {
                max = x[j + __builtin_ctz(bits)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const vf vis = vf_set(iscale);
        for (int g = 0; g < Q_QK_K / 16; ++g) {
            vi s = vi_set(0);
            for (int j = 16 * g; j < 16 * g + 16; j += VL) {
                const vi q = vi_min(v_nearest(vf_mul(vis, vf_load(x + j))), vi_set(127));
                vi_store_u8((uint8_t *)y[i].qs + j, q);
                s = vi_add(s, vi_sext8(q));
            }
            y[i].bsums[g] = (int16_t)vi_hsum(s);
        }
        y[i].d = 1 / iscale;
    }
}

/* ---- f16 and bf16 ---- */

static void QS_ISA(q_from_float_f16)(const float *x, void *vy, int64_t k)
{
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + VL <= k; i += VL) {
        const vf v = vf_load(x + i);
        vf_store_f16(y + i, v);
        unsigned nan = vm_bits(vf_isnan(v));
        while (nan) { /* the reference drops NaN payloads (0x7E00 | sign), F16C keeps some */
            const int l = __builtin_ctz(nan);
            y[i + l] = q_fp32_to_fp16(x[i + l]);
            nan &= nan - 1;
        }
    }
    for (; i < k; ++i)
        y[i] = q_fp32_to_fp16(x[i]);
}

static void QS_ISA(q_from_float_bf16)(const float *x, void *vy, int64_t k)
{
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + VL <= k; i += VL) {
        const vi u = vf_as_vi(vf_load(x + i));
        const vm nan = vi_gt(vi_and(u, vi_set(0x7fffffff)), vi_set(0x7f800000));
        const vi rounded = vi_shr(vi_add(u, vi_add(vi_set(0x7fff), vi_and(vi_shr(u, 16), vi_set(1)))), 16);
        vi_store_u16(y + i, vi_sel(nan, vi_or(vi_shr(u, 16), vi_set(64)), rounded));
    }
    for (; i < k; ++i)
        y[i] = q_fp32_to_bf16(x[i]);
}

/* ---- the public entry points (static; reached through the ISA's table) ----------------------- */

/* A type searched item by item: its plans with and without importance weights, and the steps
 * after the search. */
#define QS_ITEMS(t, N, NSUB, NMAX, W, S, QKX, SIG, WU, SU, QKXU, BLK)                              \
    static const qs_type QS_TYPE_##t = {{N, NSUB, NMAX, W, S, QKX, SIG},                          \
                                        {N, NSUB, NMAX, WU, SU, QKXU, QS_SIG_NONE},               \
                                        sizeof(BLK), finish_##t}

QS_ITEMS(q2_K, 16, 16, 3, QS_W_IMAT, QS_S_QKX, &q_kq_search_imat, QS_SIG_Q2, QS_W_ABS, QS_S_QKX, &q_kq_search_q2_ref, block_q2_K);
QS_ITEMS(q3_K, 16, 16, 4, QS_W_IMAT, QS_S_QX, NULL, QS_SIG_K, QS_W_SQ, QS_S_Q3, NULL, block_q3_K);
QS_ITEMS(q4_K, 32, 8, 15, QS_W_IMAT, QS_S_QKX, &q_kq_search_imat, QS_SIG_K, QS_W_RMS_ABS, QS_S_QKX, &q_kq_search_q4_ref, block_q4_K);
QS_ITEMS(q5_K, 32, 8, 31, QS_W_IMAT, QS_S_QKX, &q_kq_search_imat, QS_SIG_K, QS_W_RMS_ABS, QS_S_QKX, &q_kq_search_q5_ref, block_q5_K);
QS_ITEMS(q6_K, 16, 16, 32, QS_W_RAW, QS_S_QX, NULL, QS_SIG_NONE, QS_W_SQ, QS_S_QX, NULL, block_q6_K);
QS_ITEMS(iq4_nl, 32, 1, 0, QS_W_IMAT, QS_S_IQ4, NULL, QS_SIG_IQ4, QS_W_SQ, QS_S_IQ4, NULL, block_iq4_nl);
QS_ITEMS(iq4_xs, 32, 8, 0, QS_W_IMAT, QS_S_IQ4, NULL, QS_SIG_IQ4, QS_W_SQ, QS_S_IQ4, NULL, block_iq4_xs);
/* The block-32 types search only with weights; without, they take legacy.c's min/max path. */
QS_ITEMS(q4_0, 32, 1, 8, QS_W_IMAT, QS_S_QX, NULL, QS_SIG_ROW, QS_W_SQ, QS_S_QX, NULL, block_q4_0);
QS_ITEMS(q5_0, 32, 1, 16, QS_W_IMAT, QS_S_QX, NULL, QS_SIG_ROW, QS_W_SQ, QS_S_QX, NULL, block_q5_0);
QS_ITEMS(q4_1, 32, 1, 15, QS_W_IMAT, QS_S_QKX, &q_kq_search_imat, QS_SIG_ROW, QS_W_SQ, QS_S_QKX, &q_kq_search_imat, block_q4_1);
QS_ITEMS(q5_1, 32, 1, 31, QS_W_IMAT, QS_S_QKX, &q_kq_search_imat, QS_SIG_ROW, QS_W_SQ, QS_S_QKX, &q_kq_search_imat, block_q5_1);

/* q_quantize_<t>. */
#define QS_QUANTIZE(t, body)                                                                       \
    static size_t QS_ISA(q_quantize_##t)(const float *src, void *dst, int64_t nrows,               \
                                         int64_t n_per_row, const float *imatrix)                  \
    {                                                                                              \
        body                                                                                       \
    }

/* The row interface of a weight type: one unweighted row. */
#define QS_FROM_FLOAT(t)                                                                           \
    static void QS_ISA(q_from_float_##t)(const float *x, void *y, int64_t k)                       \
    {                                                                                              \
        QS_ISA(q_quantize_##t)(x, y, 1, k, NULL);                                                  \
    }

#define QS_SEARCHED(t)                                                                             \
    QS_QUANTIZE(t, return quantize_items(&QS_TYPE_##t, src, dst, nrows, n_per_row, imatrix);)     \
    QS_FROM_FLOAT(t)

/* Block-32 types: unweighted blocks go through fn (blocks_sym/blocks_asym with nmax). */
#define QS_BLOCK32(t, fn, NMAX, BLK)                                                               \
    QS_QUANTIZE(t, if (imatrix) return quantize_items(&QS_TYPE_##t, src, dst, nrows, n_per_row,   \
                                                      imatrix);                                    \
                const int64_t nblk = nrows * (n_per_row / 32);                                     \
                fn(src, dst, nblk, sizeof(BLK), NMAX);                                             \
                return (size_t)nblk * sizeof(BLK);)                                                \
    QS_FROM_FLOAT(t)

/* Activation and float types ignore imatrix; their row function is also their from_float. */
#define QS_ROWWISE(t, ROW, BLK_BYTES, BLK_VALUES)                                                  \
    QS_QUANTIZE(t, (void)imatrix; ROW(src, dst, nrows * n_per_row);                               \
                return (size_t)(nrows * n_per_row / (BLK_VALUES)) * (BLK_BYTES);)

QS_SEARCHED(q2_K)
QS_SEARCHED(q3_K)
QS_SEARCHED(q4_K)
QS_SEARCHED(q5_K)
QS_SEARCHED(q6_K)
QS_SEARCHED(iq4_nl)
QS_SEARCHED(iq4_xs)
QS_BLOCK32(q4_0, blocks_sym, 8, block_q4_0)
QS_BLOCK32(q5_0, blocks_sym, 16, block_q5_0)
QS_BLOCK32(q4_1, blocks_asym, 15, block_q4_1)
QS_BLOCK32(q5_1, blocks_asym, 31, block_q5_1)
QS_ROWWISE(q8_0, QS_ISA(q_quantize_row_q8_0), sizeof(block_q8_0), 32)
QS_ROWWISE(q8_1, QS_ISA(q_quantize_row_q8_1), sizeof(block_q8_1), 32)
QS_ROWWISE(q8_K, QS_ISA(q_quantize_row_q8_K), sizeof(block_q8_K), Q_QK_K)
QS_ROWWISE(f16, QS_ISA(q_from_float_f16), 2, 1)
QS_ROWWISE(bf16, QS_ISA(q_from_float_bf16), 2, 1)

#define QS_TK(T, t) [Q_TYPE_##T] = {.quantize = QS_ISA(q_quantize_##t), .from_float = QS_ISA(q_from_float_##t)}
#define QS_TR(T, t, ROW) [Q_TYPE_##T] = {.quantize = QS_ISA(q_quantize_##t), .from_float = ROW}

#define QS_TABLE                                                                                   \
    {                                                                                              \
        QS_TK(Q4_0, q4_0), QS_TK(Q4_1, q4_1), QS_TK(Q5_0, q5_0), QS_TK(Q5_1, q5_1),                    \
        QS_TK(Q2_K, q2_K), QS_TK(Q3_K, q3_K), QS_TK(Q4_K, q4_K), QS_TK(Q5_K, q5_K),                    \
        QS_TK(Q6_K, q6_K), QS_TK(IQ4_NL, iq4_nl), QS_TK(IQ4_XS, iq4_xs),                              \
        QS_TR(Q8_0, q8_0, QS_ISA(q_quantize_row_q8_0)), QS_TR(Q8_1, q8_1, QS_ISA(q_quantize_row_q8_1)), \
        QS_TR(Q8_K, q8_K, QS_ISA(q_quantize_row_q8_K)), QS_TR(F16, f16, QS_ISA(q_from_float_f16)), \
        QS_TR(BF16, bf16, QS_ISA(q_from_float_bf16)),                                              \
    }

#endif
