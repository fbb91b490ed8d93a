/* kquants_search.c — the k-quant scale searches. Every float expression keeps ggml's operand order
 * and float (never double) types, and the project builds with -ffp-contract=off: a fused
 * multiply-add or a reassociated sum would move levels and change bytes. */
#include "kquants_search.h"

#include <assert.h>
#include <math.h>

/* The element with the largest magnitude, the first of equals (its sign matters). */
static float signed_absmax(int n, const float *x)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    return max;
}

/* ---- symmetric levels (make_qx_quants) ---- */

static int qx_level(float iscale, float x, int nmax)
{
    return q_clampi(q_nearest_int(iscale * x), -nmax, nmax - 1);
}

static float qx_weight(const float *x, const float *qw, int i)
{
    return qw ? qw[i] : x[i] * x[i];
}

/* sum w*x*l and sum w*l*l for the levels that iscale gives. */
static void qx_sums(int n, int nmax, const float *x, const float *qw, float iscale, float *sumlx,
                    float *suml2)
{
    float slx = 0, sl2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = qx_level(iscale, x[i], nmax);
        const float w = qx_weight(x, qw, i);
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    *sumlx = slx;
    *suml2 = sl2;
}

static void qx_store(int n, int nmax, const float *x, float iscale, int8_t *L)
{
    for (int i = 0; i < n; ++i)
        L[i] = (int8_t)(nmax + qx_level(iscale, x[i], nmax));
}

float q_make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw)
{
    const float max = signed_absmax(n, x);
    if (fabsf(max) < Q_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)-nmax / max;
    float sumlx, suml2;
    qx_sums(n, nmax, x, qw, iscale, &sumlx, &suml2);
    qx_store(n, nmax, x, iscale, L);
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    /* Maximising sumlx^2/suml2 minimises the weighted error at the least-squares scale. */
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0)
            continue;
        iscale = -(nmax + 0.1f * is) / max;
        qx_sums(n, nmax, x, qw, iscale, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            qx_store(n, nmax, x, iscale, L);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* ---- q3_K's unweighted search (make_q3_quants) ---- */

/* Coordinate descent on the levels: moving level i to its best value for the current fit of the
 * others is kept when it raises sumlx^2/suml2. L holds signed levels here. */
static void q3_refine(int n, int nmax, const float *x, int8_t *L, float *sumlx, float *suml2)
{
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            float slx = *sumlx - w * x[i] * L[i];
            if (!(slx > 0))
                continue;
            float sl2 = *suml2 - w * L[i] * L[i];
            int new_l = q_nearest_int(x[i] * sl2 / slx);
            new_l = q_clampi(new_l, -nmax, nmax - 1);
            if (new_l == L[i])
                continue;
            slx += w * x[i] * new_l;
            sl2 += w * new_l * new_l;
            if (sl2 > 0 && slx * slx * *suml2 > *sumlx * *sumlx * sl2) {
                L[i] = (int8_t)new_l;
                *sumlx = slx;
                *suml2 = sl2;
                ++n_changed;
            }
        }
        if (!n_changed)
            break;
    }
}

float q_make_q3_quants(int n, int nmax, const float *x, int8_t *L)
{
    const float max = signed_absmax(n, x);
    if (fabsf(max) < Q_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = qx_level(iscale, x[i], nmax);
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    q3_refine(n, nmax, x, L, &sumlx, &suml2);
    for (int i = 0; i < n; ++i)
        L[i] = (int8_t)(L[i] + nmax);
    /* suml2 > 0: the largest |x| (>= Q_GROUP_MAX_EPS, so w > 0) starts at level -nmax and only
     * moves while sl2 stays positive. */
    return sumlx / suml2;
}

/* ---- asymmetric levels (make_qkx2_quants / make_qkx3_quants) ---- */

static void qkx_levels(int n, int nmax, const float *x, float min, float iscale, uint8_t *L)
{
    for (int i = 0; i < n; ++i)
        L[i] = (uint8_t)q_clampi(q_nearest_int(iscale * (x[i] - min)), 0, nmax);
}

static float qkx_error(int n, const float *x, const float *w, const uint8_t *L, float scale,
                       float min, int use_mad)
{
    float err = 0;
    for (int i = 0; i < n; ++i) {
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        err += w[i] * diff;
    }
    return err;
}

/* Weighted least-squares scale and min (x ≈ scale*l + min, min <= 0) of the levels L; 0 when the
 * levels are degenerate (all equal: the normal equations are singular). */
static int qkx_fit(int n, const float *x, const float *w, const uint8_t *L, float sum_w,
                   float sum_x, float *scale, float *min)
{
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
        const int l = L[i];
        sum_l += w[i] * l;
        sum_l2 += w[i] * l * l;
        sum_xl += w[i] * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (!(D > 0))
        return 0;
    *scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    *min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (*min > 0) {
        *min = 0;
        *scale = sum_xl / sum_l2;
    }
    return 1;
}

float q_make_qkx_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                        float *the_min, const q_qkx_params *p)
{
    assert(n <= Q_SEARCH_MAX_N && p->nstep >= 1);
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    qkx_levels(n, nmax, x, min, iscale, L);
    float best = qkx_error(n, x, weights, L, scale, min, p->use_mad);
    uint8_t Laux[Q_SEARCH_MAX_N];
    for (int is = 0; is <= p->nstep; ++is) {
        iscale = (p->rmin + p->rdelta * is + nmax) / (max - min);
        qkx_levels(n, nmax, x, min, iscale, Laux);
        float this_scale, this_min;
        if (!qkx_fit(n, x, weights, Laux, sum_w, sum_x, &this_scale, &this_min))
            continue;
        const float err = qkx_error(n, x, weights, Laux, this_scale, this_min, p->use_mad);
        if (err < best) {
            memcpy(L, Laux, (size_t)n);
            best = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *the_min = -min;
    return scale;
}

/* ---- super-block scales (make_qp_quants) ---- */

/* Weighted squared error of levels min(nearest(iscale*x), nmax) at scale 1/iscale. */
static float qp_error(int n, int nmax, const float *x, const float *qw, float iscale)
{
    const float scale = 1 / iscale;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
        int l = q_nearest_int(iscale * x[i]);
        if (l > nmax)
            l = nmax;
        const float diff = x[i] - scale * l;
        mse += qw[i] * diff * diff;
    }
    return mse;
}

/* Like q3_refine with caller weights; ggml tests sl2 before the move here, after it there. */
static void qp_refine(int n, int nmax, const float *x, const float *qw, uint8_t *L, float *sumlx,
                      float *suml2)
{
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = qw[i];
            float slx = *sumlx - w * x[i] * L[i];
            float sl2 = *suml2 - w * L[i] * L[i];
            if (!(slx > 0 && sl2 > 0))
                continue;
            int new_l = q_nearest_int(x[i] * sl2 / slx);
            if (new_l > nmax)
                new_l = nmax;
            if (new_l == L[i])
                continue;
            slx += w * x[i] * new_l;
            sl2 += w * new_l * new_l;
            if (slx * slx * *suml2 > *sumlx * *sumlx * sl2) {
                L[i] = (uint8_t)new_l;
                *sumlx = slx;
                *suml2 = sl2;
                ++n_changed;
            }
        }
        if (!n_changed)
            break;
    }
}

float q_make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw)
{
    float max = 0;
    for (int i = 0; i < n; ++i)
        max = max > x[i] ? max : x[i];
    if (max == 0) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    /* The starting error uses the levels as stored in L (uint8_t, as ggml's): a negative level,
     * impossible for non-negative x, would wrap there but not in the candidates. */
    float iscale = nmax / max;
    const float scale0 = 1 / iscale;
    for (int i = 0; i < n; ++i)
        L[i] = (uint8_t)q_nearest_int(iscale * x[i]);
    float best_mse = 0;
    for (int i = 0; i < n; ++i) {
        const float diff = x[i] - scale0 * L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0)
            continue;
        const float iscale_is = (0.1f * is + nmax) / max;
        const float mse = qp_error(n, nmax, x, qw, iscale_is);
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = q_nearest_int(iscale * x[i]);
        if (l > nmax)
            l = nmax;
        L[i] = (uint8_t)l;
        sumlx += qw[i] * x[i] * l;
        suml2 += qw[i] * l * l;
    }
    qp_refine(n, nmax, x, qw, L, &sumlx, &suml2);
    if (!(suml2 > 0))
        return 1 / iscale; /* all weights zero: ggml's 0/0, see the header */
    return sumlx / suml2;
}
