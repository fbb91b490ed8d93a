/* iq4.c — iq4_nl and iq4_xs: 4-bit codes indexing 16 non-uniform levels (denser near zero, where
 * trained weights are), scaled per block of 32. iq4_nl stores a half scale per 32; iq4_xs stores
 * per 256 one half scale d plus a 6-bit signed multiplier per 32, so the 32-scales are d·(l-32).
 *
 * Bit-exactness: ggml's quantize_row_iq4_nl_impl (ntry 7, what quantize_iq4_* run with and without
 * weights) in its operation order; see legacy.c's header for the conventions. One deviation:
 * when a block's weights are all zero, ggml's first least-squares scale is 0/0 = NaN (stored as a
 * NaN half for iq4_nl); qkit takes 0, so the block is stored as zeros. */
#include <math.h>
#include <string.h>

#include "blocks.h"
#include "fp16.h"
#include "kquants_impl.h"
#include "kquants_search.h"
#include "legacy.h"

#define IQ4_EPS 1e-15f /* blocks with max |x| below this are zeros (ggml's GROUP_MAX_EPS) */
#define IQ4_NTRY 7     /* scale candidates tried on each side of the first guess */

const int8_t q_iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                 1,    13,   25,  38,  53,  69,  89,  113};

/* Bisection as ggml does it, so that even a NaN v lands where ggml's lands (the top level). */
int q_iq4_nearest_level(float v)
{
    const int8_t *lv = q_iq4_levels;
    if (v <= lv[0])
        return 0;
    if (v >= lv[15])
        return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (v < lv[mid])
            hi = mid;
        else
            lo = mid;
    }
    return v - lv[hi - 1] < lv[hi] - v ? hi - 1 : hi;
}

/* For the inverse scale id: the codes' weighted fit Σ w·q·x and Σ w·q² (q the chosen level). */
static void level_sums(const float *x, const float *w, float id, float *sumqx, float *sumq2)
{
    float sqx = 0, sq2 = 0;
    for (int j = 0; j < 32; j++) {
        const float q = q_iq4_levels[q_iq4_nearest_level(id * x[j])];
        sqx += w[j] * q * x[j];
        sq2 += w[j] * q * q;
    }
    *sumqx = sqx;
    *sumq2 = sq2;
}

/* Best scale of one block of 32: start with the extreme value on the extreme level, then try the
 * inverse scales (-127 + t)/max for t in [-7, 7], each refit by least squares, and keep the one
 * with the largest (Σwqx)²/Σwq², i.e. the smallest weighted squared error. */
static float block_scale(const float *x, const float *w)
{
    const float max = q_lg_signed_absmax(x, 32);
    if (fabsf(max) < IQ4_EPS)
        return 0.0f;
    float sumqx, sumq2;
    level_sums(x, w, 1 / (-max / q_iq4_levels[0]), &sumqx, &sumq2);
    float d = sumq2 > 0 ? sumqx / sumq2 : 0.0f; /* ggml: 0/0 = NaN when all weights are 0 */
    float best = d * sumqx;
    for (int t = -IQ4_NTRY; t <= IQ4_NTRY; ++t) {
        level_sums(x, w, (float)(t + q_iq4_levels[0]) / max, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* Without importance weights ggml weighs by x² (big values matter most); with them, by
 * imatrix · sqrt(σ² + x²), σ² being twice the mean square over the super-block. */
static void block_weights(const float *x, const float *qw, float sigma2, float *w)
{
    for (int j = 0; j < 32; j++)
        w[j] = qw ? qw[j] * sqrtf(sigma2 + x[j] * x[j]) : x[j] * x[j];
}

static float superblock_sigma2(const float *x, int n)
{
    float s = 0;
    for (int j = 0; j < n; j++)
        s += x[j] * x[j];
    return s * (2.f / (float)n);
}

static void codes_for_scale(const float *x, float d, uint8_t *L)
{
    const float id = d ? 1 / d : 0.0f;
    for (int j = 0; j < 32; j++)
        L[j] = (uint8_t)q_iq4_nearest_level(id * x[j]);
}

static void quantize_block_nl(const float *x, const float *qw, block_iq4_nl *y)
{
    float w[32];
    uint8_t L[32];
    block_weights(x, qw, superblock_sigma2(x, 32), w);
    const float d = block_scale(x, w);
    y->d = q_fp32_to_fp16(d);
    codes_for_scale(x, d, L);
    q_lg_pack_nibbles(L, y->qs);
}

/* The eight 32-scales are rounded to multiples of d = -max_scale/32 (so the largest becomes
 * l = -32 exactly, using the full signed 6-bit range), and the codes are then recomputed for the
 * rounded scale. Note d is negative for a positive max_scale, and -0.0 for an all-zero block. */
float q_kq_iq4_xs_scales(const float *scales, block_iq4_xs *y, int *l)
{
    const float max_scale = q_lg_signed_absmax(scales, Q_QK_K / 32);
    const float d = -max_scale / 32;
    const float id = d ? 1 / d : 0.0f;
    y->d = q_fp32_to_fp16(d);
    y->scales_h = 0;
    memset(y->scales_l, 0, sizeof y->scales_l);
    for (int ib = 0; ib < Q_QK_K / 32; ib++) {
        l[ib] = q_clampi(q_nearest_int(id * scales[ib]), -32, 31);
        const unsigned u = (unsigned)(l[ib] + 32);
        y->scales_l[ib / 2] |= (uint8_t)((u & 0x0F) << 4 * (ib % 2));
        y->scales_h |= (uint16_t)((u >> 4) << 2 * ib);
    }
    return d;
}

static void quantize_superblock_xs(const float *x, const float *qw, block_iq4_xs *y)
{
    const float sigma2 = superblock_sigma2(x, Q_QK_K);
    float scales[Q_QK_K / 32];
    int l[Q_QK_K / 32];
    for (int ib = 0; ib < Q_QK_K / 32; ib++) {
        float w[32];
        block_weights(x + 32 * ib, qw ? qw + 32 * ib : NULL, sigma2, w);
        scales[ib] = block_scale(x + 32 * ib, w);
    }
    const float d = q_kq_iq4_xs_scales(scales, y, l);
    for (int ib = 0; ib < Q_QK_K / 32; ib++) {
        uint8_t L[32];
        codes_for_scale(x + 32 * ib, d * (float)l[ib], L);
        q_lg_pack_nibbles(L, y->qs + 16 * ib);
    }
}

size_t q_quantize_iq4_nl(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    block_iq4_nl *y = dst;
    const int64_t nb = n_per_row / 32;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t ib = 0; ib < nb; ib++)
            quantize_block_nl(src + r * n_per_row + 32 * ib, imatrix ? imatrix + 32 * ib : NULL,
                              &y[r * nb + ib]);
    return (size_t)(nrows * nb) * sizeof(block_iq4_nl);
}

size_t q_quantize_iq4_xs(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    block_iq4_xs *y = dst;
    const int64_t nb = n_per_row / Q_QK_K;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t ib = 0; ib < nb; ib++)
            quantize_superblock_xs(src + r * n_per_row + Q_QK_K * ib,
                                   imatrix ? imatrix + Q_QK_K * ib : NULL, &y[r * nb + ib]);
    return (size_t)(nrows * nb) * sizeof(block_iq4_xs);
}

void q_quantize_row_iq4_nl_ref(const float *x, void *y, int64_t k)
{
    q_quantize_iq4_nl(x, y, 1, k, NULL);
}

void q_quantize_row_iq4_xs_ref(const float *x, void *y, int64_t k)
{
    q_quantize_iq4_xs(x, y, 1, k, NULL);
}

/* The 6-bit multiplier of 32-group ib: low 4 bits in scales_l, high 2 in scales_h; stored +32. */
static int xs_group_scale(const block_iq4_xs *b, int ib)
{
    const int lo = (b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0x0F;
    const int hi = (b->scales_h >> 2 * ib) & 3;
    return (lo | hi << 4) - 32;
}

static void dequant_group(const uint8_t *qs, float d, float *y)
{
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)q_iq4_levels[qs[j] & 0x0F];
        y[j + 16] = d * (float)q_iq4_levels[qs[j] >> 4];
    }
}

void q_dequantize_row_iq4_nl(const void *vx, float *y, int64_t k)
{
    const block_iq4_nl *x = vx;
    for (int64_t i = 0; i < k / 32; i++)
        dequant_group(x[i].qs, q_fp16_to_fp32(x[i].d), y + 32 * i);
}

void q_dequantize_row_iq4_xs(const void *vx, float *y, int64_t k)
{
    const block_iq4_xs *x = vx;
    for (int64_t i = 0; i < k / Q_QK_K; i++) {
        const float d = q_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < Q_QK_K / 32; ib++)
            dequant_group(x[i].qs + 16 * ib, d * (float)xs_group_scale(&x[i], ib),
                          y + Q_QK_K * i + 32 * ib);
    }
}

/* Σ level(code)·q over one group of 32 (codes j and j+16 share byte j). */
static int dot_group(const uint8_t *qs, const int8_t *q)
{
    int sum = 0;
    for (int j = 0; j < 16; j++)
        sum += q[j] * q_iq4_levels[qs[j] & 0x0F] + q[j + 16] * q_iq4_levels[qs[j] >> 4];
    return sum;
}

void q_vec_dot_iq4_nl_q8_0(int n, float *s, const void *vx, const void *vy)
{
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int i = 0; i < n / 32; i++) {
        const float d = q_fp16_to_fp32(x[i].d) * q_fp16_to_fp32(y[i].d);
        sum = fmaf(d, (float)dot_group(x[i].qs, y[i].qs), sum);
    }
    *s = sum;
}

void q_vec_dot_iq4_xs_q8_K(int n, float *s, const void *vx, const void *vy)
{
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    for (int i = 0; i < n / Q_QK_K; i++) {
        int isum = 0;
        for (int ib = 0; ib < Q_QK_K / 32; ib++)
            isum += xs_group_scale(&x[i], ib) * dot_group(x[i].qs + 16 * ib, y[i].qs + 32 * ib);
        sum = fmaf(q_fp16_to_fp32(x[i].d) * y[i].d, (float)isum, sum);
    }
    *s = sum;
}
