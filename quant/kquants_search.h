/* kquants_search.h — the scale searches behind the k-quants (internal to quant/).
 *
 * Contract: each search is ggml's namesake in ggml-quants.c at c392e50 (make_qx_quants,
 * make_q3_quants, make_qkx2_quants/make_qkx3_quants, make_qp_quants) with the same float
 * operations in the same order, so the bytes built from its results are ggml's. A SIMD variant must
 * reproduce these results exactly, not approximately: one different rounding moves a level and the
 * block's bytes change. Inputs: finite floats, weights >= 0, n <= Q_SEARCH_MAX_N.
 * The one deliberate difference from ggml is in q_make_qp_quants (see there). */
#ifndef QKIT_QUANT_KQUANTS_SEARCH_H
#define QKIT_QUANT_KQUANTS_SEARCH_H

#include <stdint.h>
#include <string.h>

/* Below this magnitude a group counts as all zero (ggml's GROUP_MAX_EPS). */
#define Q_GROUP_MAX_EPS 1e-15f

/* Largest group the searches handle (the k-quant sub-blocks are 16 or 32 values). */
#define Q_SEARCH_MAX_N 32

/* ggml's nearest_int: round to nearest, ties to even, exact for |f| <= 2^22. Adding 1.5 * 2^23
 * pushes the fraction out of the mantissa, which then holds the rounded integer. Larger or
 * non-finite f give a wrong but defined int (ggml's release build behaves the same way, and the
 * callers clamp), so there is no assert here. */
static inline int q_nearest_int(float f)
{
    const float v = f + 12582912.f;
    int32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

static inline int q_clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Symmetric levels l in [-nmax, nmax-1] for x[0..n), stored as l + nmax in L, with the scale s
 * that minimises sum w (x - s*l)^2, where w = qw[i], or x[i]^2 when qw is NULL. Starts at the
 * scale that maps the largest |x| to -nmax and tries 18 nearby ones (ggml's make_qx_quants with
 * rmse_type 1, the only kind the k-quants use). Returns s; 0 for an all-zero group (L all 0). */
float q_make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw);

/* q3_K's unweighted search (ggml's make_q3_quants with do_rmse): the same start as
 * q_make_qx_quants with w = x^2, then up to 5 rounds of moving single levels while that raises
 * the least-squares fit. L gets l + nmax; returns the scale. */
float q_make_q3_quants(int n, int nmax, const float *x, int8_t *L);

/* The candidate inverse scales of q_make_qkx_quants: (nmax + rmin + rdelta*i) / (max - min) for
 * i = 0..nstep, judged by the weighted absolute (use_mad) or squared error. */
typedef struct {
    float rmin, rdelta;
    int nstep; /* >= 1 */
    int use_mad;
} q_qkx_params;

/* Asymmetric levels l in [0, nmax] with x ≈ scale*l - *the_min (*the_min >= 0): for each
 * candidate, the weighted least-squares scale and min of its levels, keeping the candidate with
 * the smallest weighted error. ggml's make_qkx2_quants and make_qkx3_quants in one: with non-NULL
 * weights they differ only in a test that is the same after min is clamped to <= 0.
 * weights [n] must not be NULL. Returns the scale (0 when all x are equal, L all 0). */
float q_make_qkx_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                        float *the_min, const q_qkx_params *p);

/* Levels 0..nmax for the non-negative sub-block scales (or mins) x[0..n) of a super-block,
 * weighted by qw (ggml's make_qp_quants). Returns their scale.
 * Deviation from ggml: when every level carries zero weight (sum w*l^2 == 0, e.g. a super-block
 * of ~1e-30 values, whose squares underflow, so every importance weight comes out 0), ggml returns
 * 0/0 = NaN and stores a NaN scale; this returns the unweighted scale the levels were built with.
 * Wherever ggml's result is finite the two agree. */
float q_make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw);

#endif
