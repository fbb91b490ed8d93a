/* kquants.c — scalar reference kernels of the k-quants (see kquants.h for the contract).
 *
 * A 256-value super-block is quantized in three steps, shared across the types as far as ggml's
 * formats allow: (1) a scale search per sub-block (kquants_search.c), (2) the sub-block scales are
 * themselves quantized to 4, 6 or 8 bits under a half-precision super-block scale, (3) every value
 * is re-rounded against the scales as the decoder will see them (fp16 round trip included), then
 * bit-packed. Types differ in steps (1)-(2) with and without importance weights exactly as ggml's
 * quantize_row_<t>_ref and quantize_row_<t>_impl do. Steps (2)-(3) are also what the SIMD
 * quantizers run after their own searches, so they are published in kquants_impl.h. */
#include "kquants.h"

#include <math.h>
#include <string.h>

#include "blocks.h"
#include "fp16.h"
#include "kquants_impl.h"
#include "kquants_search.h"
#include "legacy.h"

#define QK Q_QK_K

/* A super-block quantizer: qw is NULL (unweighted) or the block's 256 importance weights. */
typedef void (*kq_block_fn)(const float *x, const float *qw, void *y);

const q_qkx_params q_kq_search_q2_ref = {-0.5f, 0.1f, 15, 1};
const q_qkx_params q_kq_search_q4_ref = {-1.f, 0.1f, 20, 0};
const q_qkx_params q_kq_search_q5_ref = {-0.5f, 0.1f, 15, 0};
const q_qkx_params q_kq_search_imat = {-0.9f, 0.05f, 36, 0};

/* ---- shared steps ---- */

static float sum_squares(const float *x, int n)
{
    float s = 0;
    for (int i = 0; i < n; ++i)
        s += x[i] * x[i];
    return s;
}

/* ggml's importance weights for a sub-block: qw * sqrt(sigma2 + x^2), so large values count more
 * even where the imatrix is flat. Returns their sum. */
static float imat_weights(const float *x, const float *qw, int n, float sigma2, float *w)
{
    float sum = 0;
    for (int i = 0; i < n; ++i)
        w[i] = qw[i] * sqrtf(sigma2 + x[i] * x[i]);
    for (int i = 0; i < n; ++i)
        sum += w[i];
    return sum;
}

/* Step (3) for types with a min: x ≈ d*l - m, l in [0, nmax]. */
static void requant_affine(const float *x, int n, float d, float m, int nmax, uint8_t *L)
{
    for (int i = 0; i < n; ++i)
        L[i] = (uint8_t)q_clampi(q_nearest_int((x[i] + m) / d), 0, nmax);
}

/* Step (3) for symmetric types: x ≈ d*l, l in [lo, hi], stored as l - lo. */
static void requant_sym(const float *x, int n, float d, int lo, int hi, uint8_t *L)
{
    for (int i = 0; i < n; ++i)
        L[i] = (uint8_t)(q_clampi(q_nearest_int(x[i] / d), lo, hi) - lo);
}

/* q2_K and q3_K: byte l of each 32-byte run holds values l, l+32, l+64, l+96 of a 128-value half,
 * two bits each, lowest first. */
static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < QK; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
}

static void quantize_blocks(kq_block_fn fn, size_t bsize, const float *x, const float *qw,
                            void *y, int64_t nblocks)
{
    for (int64_t i = 0; i < nblocks; ++i)
        fn(x + i * QK, qw ? qw + i * QK : NULL, (char *)y + (size_t)i * bsize);
}

/* ggml quantizes an unweighted matrix as one long row; the blocks are independent, so row by row
 * gives the same bytes. The importance weights repeat for every row. */
static size_t quantize_matrix(kq_block_fn fn, size_t bsize, const float *src, void *dst,
                              int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    const int64_t nb = n_per_row / QK;
    const size_t row_size = (size_t)nb * bsize;
    for (int64_t r = 0; r < nrows; ++r)
        quantize_blocks(fn, bsize, src + r * n_per_row, imatrix, (char *)dst + (size_t)r * row_size,
                        nb);
    return (size_t)nrows * row_size;
}

/* ---- q2_K: 16 sub-blocks of 16, 2-bit levels, 4-bit scale and min each ---- */

static void q2_block(const float *x, const float *qw, void *vy)
{
    float w[16], sw[16], scales[16], mins[16];
    uint8_t L[QK];
    const float sigma2 = qw ? sum_squares(x, QK) / QK : 0.f;
    for (int j = 0; j < 16; ++j) {
        if (qw) {
            sw[j] = imat_weights(x + 16 * j, qw + 16 * j, 16, sigma2, w);
        } else {
            for (int l = 0; l < 16; ++l)
                w[l] = fabsf(x[16 * j + l]);
        }
        scales[j] = q_make_qkx_quants(16, 3, x + 16 * j, w, L + 16 * j, &mins[j],
                                      qw ? &q_kq_search_imat : &q_kq_search_q2_ref);
    }
    block_q2_K *y = vy;
    q_kq_q2_levels(x, (q_kq_found){scales, mins, qw ? sw : NULL}, requant_affine, y, L);
    pack_2bit(L, y->qs);
}

/* ---- q3_K: 16 sub-blocks of 16, 3-bit levels (2 low bits + hmask), 6-bit signed scales ---- */

static void q3_block(const float *x, const float *qw, void *vy)
{
    float w[16], sw[16], scales[16];
    uint8_t L[QK];
    int8_t *Ls = (int8_t *)L; /* the searches store level + 4, never negative */
    const float sigma2 = qw ? 2 * sum_squares(x, QK) / QK : 0.f;
    for (int j = 0; j < 16; ++j) {
        if (qw) {
            sw[j] = imat_weights(x + 16 * j, qw + 16 * j, 16, sigma2, w);
            scales[j] = q_make_qx_quants(16, 4, x + 16 * j, Ls + 16 * j, w);
        } else {
            scales[j] = q_make_q3_quants(16, 4, x + 16 * j, Ls + 16 * j);
        }
    }
    block_q3_K *y = vy;
    q_kq_q3_levels(x, (q_kq_found){scales, NULL, qw ? sw : NULL}, requant_sym, y, L);
    /* The third bit of value j goes to bit j/32 of hmask[j%32]. */
    memset(y->hmask, 0, sizeof y->hmask);
    for (int j = 0; j < QK; ++j) {
        if (L[j] > 3) {
            y->hmask[j % 32] |= (uint8_t)(1u << (j / 32));
            L[j] = (uint8_t)(L[j] - 4);
        }
    }
    pack_2bit(L, y->qs);
}

/* ---- q4_K and q5_K: 8 sub-blocks of 32, 6-bit scale and min each ---- */

/* Levels 0..nmax of one q4_K/q5_K super-block, its header filled. */
static void k45_block_levels(const float *x, const float *qw, int nmax, q_kq_k45_head h,
                             uint8_t *L)
{
    float w[32], sw[8], scales[8], mins[8];
    const float sigma2 = qw ? 2 * sum_squares(x, QK) / QK : 0.f;
    const q_qkx_params *search = qw ? &q_kq_search_imat
                                 : nmax == 31 ? &q_kq_search_q5_ref
                                              : &q_kq_search_q4_ref;
    for (int j = 0; j < 8; ++j) {
        const float *xj = x + 32 * j;
        if (qw) {
            sw[j] = imat_weights(xj, qw + 32 * j, 32, sigma2, w);
        } else {
            const float av_x = sqrtf(sum_squares(xj, 32) / 32);
            for (int l = 0; l < 32; ++l)
                w[l] = av_x + fabsf(xj[l]);
        }
        scales[j] = q_make_qkx_quants(32, nmax, xj, w, L + 32 * j, &mins[j], search);
    }
    q_kq_k45_levels(x, (q_kq_found){scales, mins, qw ? sw : NULL}, nmax, requant_affine, h, L);
}

/* q4_K: each 32-byte run holds two sub-blocks, the even one in the low nibbles. */
static void q4_block(const float *x, const float *qw, void *vy)
{
    block_q4_K *y = vy;
    uint8_t L[QK];
    k45_block_levels(x, qw, 15, (q_kq_k45_head){&y->d, &y->dmin, y->scales}, L);
    for (int j = 0; j < QK / 64; ++j)
        for (int l = 0; l < 32; ++l)
            y->qs[32 * j + l] = (uint8_t)(L[64 * j + l] | (L[64 * j + l + 32] << 4));
}

/* q5_K: as q4_K, plus the fifth bit of value l of sub-block j in bit j of qh[l]. */
static void q5_block(const float *x, const float *qw, void *vy)
{
    block_q5_K *y = vy;
    uint8_t L[QK];
    k45_block_levels(x, qw, 31, (q_kq_k45_head){&y->d, &y->dmin, y->scales}, L);
    memset(y->qh, 0, sizeof y->qh);
    for (int j = 0; j < QK / 64; ++j) {
        for (int l = 0; l < 32; ++l) {
            const int lo = L[64 * j + l], hi = L[64 * j + l + 32];
            y->qh[l] |= (uint8_t)(((lo >> 4) << (2 * j)) | ((hi >> 4) << (2 * j + 1)));
            y->qs[32 * j + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
        }
    }
}

/* ---- q6_K: 16 sub-blocks of 16, 6-bit levels, 8-bit signed scales ---- */

static void q6_block(const float *x, const float *qw, void *vy)
{
    block_q6_K *y = vy;
    uint8_t L[QK];
    float scales[16];
    /* With weights, ggml passes the raw importance weights (no sigma2 term) to the search. */
    for (int j = 0; j < 16; ++j)
        scales[j] = q_make_qx_quants(16, 32, x + 16 * j, (int8_t *)L + 16 * j,
                                     qw ? qw + 16 * j : NULL);
    if (!q_kq_q6_levels(x, (q_kq_found){scales, NULL, NULL}, requant_sym, y, L))
        return;
    /* Per 128-value half: low nibbles of values l, l+32 | l+64, l+96 in ql[l], ql[l+32]; the two
     * high bits of all four in qh[l]. */
    for (int h = 0; h < 2; ++h) {
        const uint8_t *Lh = L + 128 * h;
        uint8_t *ql = y->ql + 64 * h, *qh = y->qh + 32 * h;
        for (int l = 0; l < 32; ++l) {
            ql[l] = (uint8_t)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
            qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                              ((Lh[l + 96] >> 4) << 6));
        }
    }
}

/* ---- q8_K ---- */

static void q8_K_block(const float *x, const float *qw, void *vy)
{
    (void)qw;
    block_q8_K *y = vy;
    float max = 0, amax = 0;
    for (int j = 0; j < QK; ++j) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    if (!amax) {
        memset(y, 0, sizeof *y);
        return;
    }
    /* -127 rather than -128 keeps every level in [-127, 127] (ggml changed it for iq2_xxs). */
    const float iscale = -127.f / max;
    for (int j = 0; j < QK; ++j) {
        const int v = q_nearest_int(iscale * x[j]);
        y->qs[j] = (int8_t)(v < 127 ? v : 127);
    }
    for (int g = 0; g < QK / 16; ++g) {
        int sum = 0;
        for (int l = 0; l < 16; ++l)
            sum += y->qs[16 * g + l];
        y->bsums[g] = (int16_t)sum;
    }
    y->d = 1 / iscale;
}

/* ---- public quantizers ---- */

void q_quantize_row_q2_K_ref(const float *x, void *y, int64_t k)
{
    quantize_blocks(q2_block, sizeof(block_q2_K), x, NULL, y, k / QK);
}

void q_quantize_row_q3_K_ref(const float *x, void *y, int64_t k)
{
    quantize_blocks(q3_block, sizeof(block_q3_K), x, NULL, y, k / QK);
}

void q_quantize_row_q4_K_ref(const float *x, void *y, int64_t k)
{
    quantize_blocks(q4_block, sizeof(block_q4_K), x, NULL, y, k / QK);
}

void q_quantize_row_q5_K_ref(const float *x, void *y, int64_t k)
{
    quantize_blocks(q5_block, sizeof(block_q5_K), x, NULL, y, k / QK);
}

void q_quantize_row_q6_K_ref(const float *x, void *y, int64_t k)
{
    quantize_blocks(q6_block, sizeof(block_q6_K), x, NULL, y, k / QK);
}

void q_quantize_row_q8_K_ref(const float *x, void *y, int64_t k)
{
    quantize_blocks(q8_K_block, sizeof(block_q8_K), x, NULL, y, k / QK);
}

size_t q_quantize_q2_K(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    return quantize_matrix(q2_block, sizeof(block_q2_K), src, dst, nrows, n_per_row, imatrix);
}

size_t q_quantize_q3_K(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    return quantize_matrix(q3_block, sizeof(block_q3_K), src, dst, nrows, n_per_row, imatrix);
}

size_t q_quantize_q4_K(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    return quantize_matrix(q4_block, sizeof(block_q4_K), src, dst, nrows, n_per_row, imatrix);
}

size_t q_quantize_q5_K(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    return quantize_matrix(q5_block, sizeof(block_q5_K), src, dst, nrows, n_per_row, imatrix);
}

size_t q_quantize_q6_K(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    return quantize_matrix(q6_block, sizeof(block_q6_K), src, dst, nrows, n_per_row, imatrix);
}

size_t q_quantize_q8_K(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    (void)imatrix;
    return quantize_matrix(q8_K_block, sizeof(block_q8_K), src, dst, nrows, n_per_row, NULL);
}

/* ---- decoding: every weight type unpacks to integer levels with a scale (and min) per 16 values,
 * which both the dequantizers and the dot products consume ---- */

typedef struct {
    float d, dmin;        /* super-block scales; dmin is 0 for the symmetric types */
    int sc[16], mn[16];   /* per 16 values: scale and min multipliers (mn 0 when symmetric) */
    int8_t q[QK];         /* levels, offsets removed: value = d*sc*q - dmin*mn */
} kq_unpacked;

typedef void (*kq_unpack_fn)(const void *block, kq_unpacked *u);

/* Value v = 128h + 32j + l sits in bits 2j of qs[32h + l]. */
static void unpack_2bit(const uint8_t *qs, int8_t *q)
{
    for (int h = 0; h < 2; ++h)
        for (int j = 0; j < 4; ++j)
            for (int l = 0; l < 32; ++l)
                q[128 * h + 32 * j + l] = (int8_t)((qs[32 * h + l] >> (2 * j)) & 3);
}

static void unpack_q2_K(const void *vb, kq_unpacked *u)
{
    const block_q2_K *b = vb;
    u->d = q_fp16_to_fp32(b->d);
    u->dmin = q_fp16_to_fp32(b->dmin);
    for (int g = 0; g < 16; ++g) {
        u->sc[g] = b->scales[g] & 0xF;
        u->mn[g] = b->scales[g] >> 4;
    }
    unpack_2bit(b->qs, u->q);
}

static void unpack_q3_K(const void *vb, kq_unpacked *u)
{
    const block_q3_K *b = vb;
    u->d = q_fp16_to_fp32(b->d);
    u->dmin = 0;
    for (int g = 0; g < 16; ++g) {
        u->sc[g] = q_kq_q3_get_scale(b->scales, g);
        u->mn[g] = 0;
    }
    unpack_2bit(b->qs, u->q);
    for (int v = 0; v < QK; ++v) /* a clear high bit means the level is 4 lower */
        if (!(b->hmask[v % 32] & (1u << (v / 32))))
            u->q[v] = (int8_t)(u->q[v] - 4);
}

static void unpack_k45_head(const uint8_t *scales, uint16_t d, uint16_t dmin, kq_unpacked *u)
{
    u->d = q_fp16_to_fp32(d);
    u->dmin = q_fp16_to_fp32(dmin);
    for (int j = 0; j < 8; ++j) {
        int sc, m;
        q_kq_k45_get_scale_min(scales, j, &sc, &m);
        u->sc[2 * j] = u->sc[2 * j + 1] = sc;
        u->mn[2 * j] = u->mn[2 * j + 1] = m;
    }
}

static void unpack_q4_K(const void *vb, kq_unpacked *u)
{
    const block_q4_K *b = vb;
    unpack_k45_head(b->scales, b->d, b->dmin, u);
    for (int j = 0; j < QK / 64; ++j) {
        for (int l = 0; l < 32; ++l) {
            u->q[64 * j + l] = (int8_t)(b->qs[32 * j + l] & 0xF);
            u->q[64 * j + 32 + l] = (int8_t)(b->qs[32 * j + l] >> 4);
        }
    }
}

static void unpack_q5_K(const void *vb, kq_unpacked *u)
{
    const block_q5_K *b = vb;
    unpack_k45_head(b->scales, b->d, b->dmin, u);
    for (int j = 0; j < QK / 64; ++j) {
        for (int l = 0; l < 32; ++l) {
            const int lo = b->qs[32 * j + l] & 0xF, hi = b->qs[32 * j + l] >> 4;
            u->q[64 * j + l] = (int8_t)(lo | (((b->qh[l] >> (2 * j)) & 1) << 4));
            u->q[64 * j + 32 + l] = (int8_t)(hi | (((b->qh[l] >> (2 * j + 1)) & 1) << 4));
        }
    }
}

static void unpack_q6_K(const void *vb, kq_unpacked *u)
{
    const block_q6_K *b = vb;
    u->d = q_fp16_to_fp32(b->d);
    u->dmin = 0;
    for (int g = 0; g < 16; ++g) {
        u->sc[g] = b->scales[g];
        u->mn[g] = 0;
    }
    for (int h = 0; h < 2; ++h) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int8_t *q = u->q + 128 * h;
        for (int l = 0; l < 32; ++l) {
            q[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
            q[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            q[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            q[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

/* ggml computes (d*sc)*q - dmin*mn per value; for the symmetric types it has no "- 0" term, which
 * changes nothing (x - (+0) == x for every x, -0 included), so one loop serves all five. */
static void dequantize_blocks(kq_unpack_fn unpack, size_t bsize, const void *x, float *y, int64_t k)
{
    kq_unpacked u;
    for (int64_t i = 0; i < k / QK; ++i) {
        unpack((const char *)x + (size_t)i * bsize, &u);
        for (int g = 0; g < 16; ++g) {
            const float dl = u.d * u.sc[g], ml = u.dmin * u.mn[g];
            for (int l = 0; l < 16; ++l)
                y[16 * g + l] = dl * u.q[16 * g + l] - ml;
        }
        y += QK;
    }
}

/* Per super-block: sum_g sc*<q, q8> minus sum_g mn*bsums, in 32-bit integers (at most
 * 16 * 127 * 16 * 32 * 128 for q6_K, well inside int32), then the canonical float chain
 * (quant.h): one FMA for the scales and, for the types with mins, one for the mins. */
static void vec_dot_blocks(kq_unpack_fn unpack, size_t bsize, int asym, int n, float *s,
                           const void *vx, const void *vy)
{
    const block_q8_K *y = vy;
    kq_unpacked u;
    float sumf = 0;
    for (int i = 0; i < n / QK; ++i) {
        unpack((const char *)vx + (size_t)i * bsize, &u);
        int32_t isum = 0, msum = 0;
        for (int g = 0; g < 16; ++g) {
            int32_t gsum = 0;
            for (int l = 0; l < 16; ++l)
                gsum += u.q[16 * g + l] * y[i].qs[16 * g + l];
            isum += u.sc[g] * gsum;
            msum += u.mn[g] * y[i].bsums[g];
        }
        sumf = fmaf(y[i].d * u.d, (float)isum, sumf);
        if (asym)
            sumf = fmaf(-(y[i].d * u.dmin), (float)msum, sumf);
    }
    *s = sumf;
}

void q_dequantize_row_q2_K(const void *x, float *y, int64_t k)
{
    dequantize_blocks(unpack_q2_K, sizeof(block_q2_K), x, y, k);
}

void q_dequantize_row_q3_K(const void *x, float *y, int64_t k)
{
    dequantize_blocks(unpack_q3_K, sizeof(block_q3_K), x, y, k);
}

void q_dequantize_row_q4_K(const void *x, float *y, int64_t k)
{
    dequantize_blocks(unpack_q4_K, sizeof(block_q4_K), x, y, k);
}

void q_dequantize_row_q5_K(const void *x, float *y, int64_t k)
{
    dequantize_blocks(unpack_q5_K, sizeof(block_q5_K), x, y, k);
}

void q_dequantize_row_q6_K(const void *x, float *y, int64_t k)
{
    dequantize_blocks(unpack_q6_K, sizeof(block_q6_K), x, y, k);
}

void q_dequantize_row_q8_K(const void *vx, float *y, int64_t k)
{
    const block_q8_K *x = vx;
    for (int64_t i = 0; i < k / QK; ++i)
        for (int j = 0; j < QK; ++j)
            *y++ = x[i].d * x[i].qs[j];
}

void q_vec_dot_q2_K_q8_K(int n, float *s, const void *x, const void *y)
{
    vec_dot_blocks(unpack_q2_K, sizeof(block_q2_K), 1, n, s, x, y);
}

void q_vec_dot_q3_K_q8_K(int n, float *s, const void *x, const void *y)
{
    vec_dot_blocks(unpack_q3_K, sizeof(block_q3_K), 0, n, s, x, y);
}

void q_vec_dot_q4_K_q8_K(int n, float *s, const void *x, const void *y)
{
    vec_dot_blocks(unpack_q4_K, sizeof(block_q4_K), 1, n, s, x, y);
}

void q_vec_dot_q5_K_q8_K(int n, float *s, const void *x, const void *y)
{
    vec_dot_blocks(unpack_q5_K, sizeof(block_q5_K), 1, n, s, x, y);
}

void q_vec_dot_q6_K_q8_K(int n, float *s, const void *x, const void *y)
{
    vec_dot_blocks(unpack_q6_K, sizeof(block_q6_K), 0, n, s, x, y);
}
