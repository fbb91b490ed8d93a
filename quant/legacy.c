/* legacy.c — q4_0 q4_1 q5_0 q5_1 q8_0 q8_1: the block-32 formats, as ggml's scalar C defines them.
 *
 * Bit-exactness notes (read before "simplifying" an expression):
 * - Every float expression keeps ggml's operation order and types: `w*x*l` is (w*x)*l with l
 *   converted to float, d is computed in float and rounded to half only when stored, the
 *   codes are computed from the unrounded d.
 * - ggml turns floats into small ints with C casts. See cast_u8() for what that means on x86-64.
 * - Without importance weights, ggml uses the simple min/max quantizers; with them, a search. */
#include "legacy.h"

#include <math.h>
#include <string.h>

#include "blocks.h"
#include "fp16.h"
#include "kquants_impl.h"
#include "kquants_search.h"

/* ---- float -> small int as ggml's casts compile on x86-64 ---------------------------------- */

/* ggml writes (int8_t)f and (uint8_t)f. On x86-64 the compiler converts to a 32-bit int
 * (cvttss2si, truncation) and keeps the low byte; NaN and out-of-range values give 0x80000000,
 * whose low byte is 0. That case is real: a block of subnormals has d subnormal and 1/d = inf, so
 * x*id is ±inf or NaN. C leaves such casts undefined, so spell the hardware result out. */
static uint8_t cast_u8(float v)
{
    const int32_t i = (v >= -2147483648.0f && v < 2147483648.0f) ? (int32_t)v : INT32_MIN;
    return (uint8_t)((uint32_t)i & 0xFFu);
}

static int cast_i8(float v)
{
    const int u = cast_u8(v);
    return u < 128 ? u : u - 256;
}

/* ---- packing ------------------------------------------------------------------------------- */

/* 5-bit codes: low nibbles as q4, bit 4 of code j into bit j of a little-endian uint32. */
static void pack_q5(const uint8_t *L, uint8_t *qs, uint8_t *qh)
{
    uint32_t h = 0;
    for (int j = 0; j < 32; j++)
        h |= (uint32_t)((L[j] >> 4) & 1) << j;
    q_lg_pack_nibbles(L, qs);
    memcpy(qh, &h, sizeof h);
}

static void unpack_q4(const uint8_t *qs, uint8_t *L)
{
    for (int j = 0; j < 16; j++) {
        L[j] = qs[j] & 0x0F;
        L[j + 16] = qs[j] >> 4;
    }
}

static void unpack_q5(const uint8_t *qs, const uint8_t *qh, uint8_t *L)
{
    uint32_t h;
    memcpy(&h, qh, sizeof h);
    unpack_q4(qs, L);
    for (int j = 0; j < 32; j++)
        L[j] |= (uint8_t)(((h >> j) & 1) << 4);
}

static void store_q4_0(void *blk, float d, const uint8_t *L)
{
    block_q4_0 *b = blk;
    b->d = q_fp32_to_fp16(d);
    q_lg_pack_nibbles(L, b->qs);
}

static void store_q4_1(void *blk, float d, float m, const uint8_t *L)
{
    block_q4_1 *b = blk;
    b->d = q_fp32_to_fp16(d);
    b->m = q_fp32_to_fp16(m);
    q_lg_pack_nibbles(L, b->qs);
}

static void store_q5_0(void *blk, float d, const uint8_t *L)
{
    block_q5_0 *b = blk;
    b->d = q_fp32_to_fp16(d);
    pack_q5(L, b->qs, b->qh);
}

static void store_q5_1(void *blk, float d, float m, const uint8_t *L)
{
    block_q5_1 *b = blk;
    b->d = q_fp32_to_fp16(d);
    b->m = q_fp32_to_fp16(m);
    pack_q5(L, b->qs, b->qh);
}

/* ---- unweighted block quantizers (ggml's quantize_row_*_ref) ------------------------------- */

/* Symmetric, 2*nmax levels: the value of largest magnitude maps to code 0 (level -nmax), so
 * d = max / -nmax; x*id + nmax + 0.5 truncated is round-to-nearest of the level. The clamp
 * catches the opposite extreme, which would land on level +nmax. */
static float codes_sym_ref(const float *x, int nmax, uint8_t *L)
{
    const float max = q_lg_signed_absmax(x, 32);
    const float d = max / (float)-nmax;
    const float id = d ? 1.0f / d : 0.0f;
    const float bias = (float)nmax + 0.5f;
    for (int j = 0; j < 32; j++) {
        const int q = cast_i8(x[j] * id + bias);
        L[j] = (uint8_t)(q < 2 * nmax - 1 ? q : 2 * nmax - 1);
    }
    return d;
}

/* Asymmetric, codes 0..nmax over [min, max]: x ≈ d*L + min. ggml clamps the q4_1 codes to 15
 * and not the q5_1 ones; (max-min)*id never exceeds nmax by more than rounding, so the clamp is
 * inert for both and one routine serves them. */
static float codes_asym_ref(const float *x, int nmax, uint8_t *L, float *min_out)
{
    float min = x[0], max = x[0]; /* ggml starts from ±FLT_MAX: the same for finite x */
    for (int j = 1; j < 32; j++) {
        if (x[j] < min)
            min = x[j];
        if (x[j] > max)
            max = x[j];
    }
    const float d = (max - min) / (float)nmax;
    const float id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++) {
        const int q = cast_i8((x[j] - min) * id + 0.5f);
        L[j] = (uint8_t)(q < nmax ? q : nmax);
    }
    *min_out = min;
    return d;
}

/* q8: d = amax/127, codes roundf(x/d) (ties away from zero, unlike the k-quants' nearest_int).
 * Returns d; the codes are signed. */
static float codes_q8(const float *x, int8_t *qs)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
    const float d = amax / 127.0f;
    const float id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++)
        qs[j] = (int8_t)cast_i8(roundf(x[j] * id));
    return d;
}

static void enc_q8_0(const float *x, const float *w, void *blk)
{
    (void)w;
    block_q8_0 *b = blk;
    b->d = q_fp32_to_fp16(codes_q8(x, b->qs));
}

/* s caches d * sum(q) so that the q4_1/q5_1 dot products can add the offset term per block. */
static void enc_q8_1(const float *x, const float *w, void *blk)
{
    (void)w;
    block_q8_1 *b = blk;
    const float d = codes_q8(x, b->qs);
    int sum = 0;
    for (int j = 0; j < 32; j++)
        sum += b->qs[j];
    b->d = q_fp32_to_fp16(d);
    b->s = q_fp32_to_fp16((float)sum * d);
}

/* ---- importance-weighted searches ---------------------------------------------------------- */

/* ggml runs the k-quants' searches for these types too: make_qx_quants (rmse_type 1) for the
 * symmetric ones, make_qkx3_quants with squared error for those with a min. qkit shares those
 * definitions (kquants_search.h) and the weighted candidate set (kquants_impl.h), so the two
 * families cannot drift apart. */

/* Codes 0..2*nmax-1 (level + nmax) for weights w; returns d. */
static float search_sym(const float *x, const float *w, int nmax, uint8_t *L)
{
    int8_t Ls[32];
    const float d = q_make_qx_quants(32, nmax, x, Ls, w);
    memcpy(L, Ls, sizeof Ls);
    return d;
}

/* Codes 0..nmax with x ≈ d*L + m, m <= 0; returns d. */
static float search_asym(const float *x, const float *w, int nmax, uint8_t *L, float *min_out)
{
    float neg_min;
    const float d = q_make_qkx_quants(32, nmax, x, w, L, &neg_min, &q_kq_search_imat);
    *min_out = -neg_min; /* exact: the search negated its min */
    return d;
}

/* ---- block encoders -------------------------------------------------------------------------- */

/* A block's codes: ggml's plain rounding without weights (w NULL), the weighted search with them. */
static float codes_sym(const float *x, const float *w, int nmax, uint8_t *L)
{
    return w ? search_sym(x, w, nmax, L) : codes_sym_ref(x, nmax, L);
}

static float codes_asym(const float *x, const float *w, int nmax, uint8_t *L, float *min_out)
{
    return w ? search_asym(x, w, nmax, L, min_out) : codes_asym_ref(x, nmax, L, min_out);
}

static void enc_q4_0(const float *x, const float *w, void *blk)
{
    uint8_t L[32];
    const float d = codes_sym(x, w, 8, L);
    store_q4_0(blk, d, L);
}

static void enc_q5_0(const float *x, const float *w, void *blk)
{
    uint8_t L[32];
    const float d = codes_sym(x, w, 16, L);
    store_q5_0(blk, d, L);
}

static void enc_q4_1(const float *x, const float *w, void *blk)
{
    uint8_t L[32];
    float min;
    const float d = codes_asym(x, w, 15, L, &min);
    store_q4_1(blk, d, min, L);
}

static void enc_q5_1(const float *x, const float *w, void *blk)
{
    uint8_t L[32];
    float min;
    const float d = codes_asym(x, w, 31, L, &min);
    store_q5_1(blk, d, min, L);
}

/* Encodes one block of 32; w is the block's weights, or NULL for the unweighted quantizer. */
typedef void (*enc_fn)(const float *x, const float *w, void *blk);

static void each_block(const float *x, void *y, int64_t k, size_t blk_size, enc_fn enc)
{
    uint8_t *out = y;
    for (int64_t i = 0; i < k / 32; i++)
        enc(x + 32 * i, NULL, out + (size_t)i * blk_size);
}

void q_quantize_row_q4_0_ref(const float *x, void *y, int64_t k)
{
    each_block(x, y, k, sizeof(block_q4_0), enc_q4_0);
}

void q_quantize_row_q4_1_ref(const float *x, void *y, int64_t k)
{
    each_block(x, y, k, sizeof(block_q4_1), enc_q4_1);
}

void q_quantize_row_q5_0_ref(const float *x, void *y, int64_t k)
{
    each_block(x, y, k, sizeof(block_q5_0), enc_q5_0);
}

void q_quantize_row_q5_1_ref(const float *x, void *y, int64_t k)
{
    each_block(x, y, k, sizeof(block_q5_1), enc_q5_1);
}

void q_quantize_row_q8_0_ref(const float *x, void *y, int64_t k)
{
    each_block(x, y, k, sizeof(block_q8_0), enc_q8_0);
}

void q_quantize_row_q8_1_ref(const float *x, void *y, int64_t k)
{
    each_block(x, y, k, sizeof(block_q8_1), enc_q8_1);
}

/* ggml's quantize_<t> for the block-32 types: the plain quantizer without weights; with them,
 * per row, w = imatrix · sqrt(σ² + x²) where σ² is the row's mean square (so that small values
 * still count in proportion to the row's scale), then the search per block. */
static size_t quantize_rows(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                            const float *imatrix, size_t blk_size, enc_fn enc)
{
    const size_t row_size = (size_t)(n_per_row / 32) * blk_size;
    uint8_t *out = dst;
    if (!imatrix) {
        each_block(src, dst, nrows * n_per_row, blk_size, enc);
        return (size_t)nrows * row_size;
    }
    for (int64_t r = 0; r < nrows; r++) {
        const float *x = src + r * n_per_row;
        float sum_x2 = 0;
        for (int64_t j = 0; j < n_per_row; j++)
            sum_x2 += x[j] * x[j];
        const float sigma2 = sum_x2 / (float)n_per_row;
        for (int64_t ib = 0; ib < n_per_row / 32; ib++) {
            const float *xb = x + 32 * ib, *qw = imatrix + 32 * ib;
            float w[32];
            for (int j = 0; j < 32; j++)
                w[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
            enc(xb, w, out + (size_t)r * row_size + (size_t)ib * blk_size);
        }
    }
    return (size_t)nrows * row_size;
}

size_t q_quantize_q4_0(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    return quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(block_q4_0), enc_q4_0);
}

size_t q_quantize_q4_1(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    return quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(block_q4_1), enc_q4_1);
}

size_t q_quantize_q5_0(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    return quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(block_q5_0), enc_q5_0);
}

size_t q_quantize_q5_1(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    return quantize_rows(src, dst, nrows, n_per_row, imatrix, sizeof(block_q5_1), enc_q5_1);
}

/* q8_0 has no weighted variant in ggml: 8 bits leave nothing for a search to gain. */
size_t q_quantize_q8_0(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    (void)imatrix;
    return quantize_rows(src, dst, nrows, n_per_row, NULL, sizeof(block_q8_0), enc_q8_0);
}

size_t q_quantize_q8_1(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    (void)imatrix;
    return quantize_rows(src, dst, nrows, n_per_row, NULL, sizeof(block_q8_1), enc_q8_1);
}

/* ---- dequantization ------------------------------------------------------------------------ */

static void put_sym(const uint8_t *L, int offset, uint16_t d16, float *y)
{
    const float d = q_fp16_to_fp32(d16);
    for (int j = 0; j < 32; j++)
        y[j] = (float)(L[j] - offset) * d;
}

static void put_asym(const uint8_t *L, uint16_t d16, uint16_t m16, float *y)
{
    const float d = q_fp16_to_fp32(d16), m = q_fp16_to_fp32(m16);
    for (int j = 0; j < 32; j++)
        y[j] = (float)L[j] * d + m;
}

static void put_q8(const int8_t *qs, uint16_t d16, float *y)
{
    const float d = q_fp16_to_fp32(d16);
    for (int j = 0; j < 32; j++)
        y[j] = (float)qs[j] * d;
}

void q_dequantize_row_q4_0(const void *vx, float *y, int64_t k)
{
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < k / 32; i++) {
        uint8_t L[32];
        unpack_q4(x[i].qs, L);
        put_sym(L, 8, x[i].d, y + 32 * i);
    }
}

void q_dequantize_row_q4_1(const void *vx, float *y, int64_t k)
{
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < k / 32; i++) {
        uint8_t L[32];
        unpack_q4(x[i].qs, L);
        put_asym(L, x[i].d, x[i].m, y + 32 * i);
    }
}

void q_dequantize_row_q5_0(const void *vx, float *y, int64_t k)
{
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < k / 32; i++) {
        uint8_t L[32];
        unpack_q5(x[i].qs, x[i].qh, L);
        put_sym(L, 16, x[i].d, y + 32 * i);
    }
}

void q_dequantize_row_q5_1(const void *vx, float *y, int64_t k)
{
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < k / 32; i++) {
        uint8_t L[32];
        unpack_q5(x[i].qs, x[i].qh, L);
        put_asym(L, x[i].d, x[i].m, y + 32 * i);
    }
}

void q_dequantize_row_q8_0(const void *vx, float *y, int64_t k)
{
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < k / 32; i++)
        put_q8(x[i].qs, x[i].d, y + 32 * i);
}

void q_dequantize_row_q8_1(const void *vx, float *y, int64_t k)
{
    const block_q8_1 *x = vx;
    for (int64_t i = 0; i < k / 32; i++)
        put_q8(x[i].qs, x[i].d, y + 32 * i);
}

/* ---- dot products -------------------------------------------------------------------------- */
/* The canonical order (quant.h): each block's exact integer sum (|Σ| <= 32·31·127), then one
 * float chain of FMAs, the same on every ISA. */

static int dot_codes(const uint8_t *L, int offset, const int8_t *q)
{
    int sum = 0;
    for (int j = 0; j < 32; j++)
        sum += (L[j] - offset) * q[j];
    return sum;
}

/* One block with an offset m: Σ (d_x·L + m)(d_y·q) = d_x·d_y·Σ L·q + m·(d_y·Σ q), and q8_1
 * caches d_y·Σ q in s. */
static float asym_block_dot(float acc, const uint8_t *L, uint16_t dx, uint16_t mx, const block_q8_1 *y)
{
    acc = fmaf(q_fp16_to_fp32(dx) * q_fp16_to_fp32(y->d), (float)dot_codes(L, 0, y->qs), acc);
    return fmaf(q_fp16_to_fp32(mx), q_fp16_to_fp32(y->s), acc);
}

static float sym_block_dot(float acc, uint16_t dx, uint16_t dy, int sumi)
{
    return fmaf(q_fp16_to_fp32(dx) * q_fp16_to_fp32(dy), (float)sumi, acc);
}

void q_vec_dot_q4_0_q8_0(int n, float *s, const void *vx, const void *vy)
{
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int i = 0; i < n / 32; i++) {
        uint8_t L[32];
        unpack_q4(x[i].qs, L);
        sum = sym_block_dot(sum, x[i].d, y[i].d, dot_codes(L, 8, y[i].qs));
    }
    *s = sum;
}

void q_vec_dot_q4_1_q8_1(int n, float *s, const void *vx, const void *vy)
{
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
    float sum = 0;
    for (int i = 0; i < n / 32; i++) {
        uint8_t L[32];
        unpack_q4(x[i].qs, L);
        sum = asym_block_dot(sum, L, x[i].d, x[i].m, &y[i]);
    }
    *s = sum;
}

void q_vec_dot_q5_1_q8_1(int n, float *s, const void *vx, const void *vy)
{
    const block_q5_1 *x = vx;
    const block_q8_1 *y = vy;
    float sum = 0;
    for (int i = 0; i < n / 32; i++) {
        uint8_t L[32];
        unpack_q5(x[i].qs, x[i].qh, L);
        sum = asym_block_dot(sum, L, x[i].d, x[i].m, &y[i]);
    }
    *s = sum;
}

void q_vec_dot_q5_0_q8_0(int n, float *s, const void *vx, const void *vy)
{
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int i = 0; i < n / 32; i++) {
        uint8_t L[32];
        unpack_q5(x[i].qs, x[i].qh, L);
        sum = sym_block_dot(sum, x[i].d, y[i].d, dot_codes(L, 16, y[i].qs));
    }
    *s = sum;
}

void q_vec_dot_q8_0_q8_0(int n, float *s, const void *vx, const void *vy)
{
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int i = 0; i < n / 32; i++) {
        int sumi = 0;
        for (int j = 0; j < 32; j++)
            sumi += x[i].qs[j] * y[i].qs[j];
        sum = sym_block_dot(sum, x[i].d, y[i].d, sumi);
    }
    *s = sum;
}
