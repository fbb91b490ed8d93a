/* gemm_x86.h — tiled matrix products shared by gemm_avx2.c and gemm_avx512.c.
 *
 * Internal: include only from those two files, after defining QX_SUFFIX and the tile shapes
 * QG_{F,B,K}_{RM,RN} (rows × tokens per tile for float weights, 32-value blocks, k-quants). It
 * reuses dot_x86.h's primitives (block decoding, int8 multiply-adds).
 *
 * Why tiles: a vec_dot per (row, token) loads and decodes every weight block once per token. A
 * tile decodes RM rows' blocks once, loads RN tokens' activations once, and forms the RM·RN
 * products from registers, so each load is reused RN (or RM) times.
 *
 * Determinism: every output element follows the canonical order of quant.h whatever tile it
 * falls in (edge tiles are the same code with RM or RN set to 1): 16 float lanes and a fixed tree
 * for float weights; per block the exact integer total and one FMA chain for quantized weights.
 * So an element depends only on its weight row and activation row, never on nrows, ntok, where a
 * caller splits the work or the instruction set: the scalar reference, AVX2, AVX-512 and NEON
 * give the same bits, and vec_dot is the 1 × 1 product. */
#ifndef QKIT_QUANT_GEMM_X86_H
#define QKIT_QUANT_GEMM_X86_H

#include "dot_x86.h"

#define QG_INLINE static inline __attribute__((always_inline))
/* Tile loops have constant trip counts once inlined; unrolled, their arrays live in registers. */
#define QG_UNROLL _Pragma("GCC unroll 8")
/* Tokens per pass over a row block: keeps that many activation rows hot in L2. */
#define QG_TOK_BLOCK 64

/* ---- float vectors: the canonical 16 lanes, one register with AVX-512, two with AVX2 ------------ */

enum { QG_F32, QG_F16, QG_BF16 };

#if defined(__AVX512F__)
typedef __m512 qg_vf;
enum { QG_VL = 16 };
QG_INLINE qg_vf qg_zero(void) { return _mm512_setzero_ps(); }
QG_INLINE qg_vf qg_fma(qg_vf a, qg_vf b, qg_vf c) { return _mm512_fmadd_ps(a, b, c); }
/* The canonical tree: lanes l + l+8, then (qx_hsum_ps) l + l+4, l + l+2, 0 + 1. */
QG_INLINE float qg_hsum(qg_vf v)
{
    return qx_hsum_ps(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}
/* min(m, 16) values from p, the rest 0 (masked lanes are not read). */
QG_INLINE qg_vf qg_load(int kind, const void *p, int m)
{
    const __mmask16 k = m >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << m) - 1);
    switch (kind) {
    case QG_F32:
        return _mm512_maskz_loadu_ps(k, p);
    case QG_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p));
    default:
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p)), 16));
    }
}
#else
/* The canonical 16 lanes (quant.h) as two 8-lane halves: lanes 0..7 and 8..15. */
typedef struct {
    __m256 lo, hi;
} qg_vf;
enum { QG_VL = 16 };
QG_INLINE qg_vf qg_zero(void) { return (qg_vf){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
QG_INLINE qg_vf qg_fma(qg_vf a, qg_vf b, qg_vf c)
{
    return (qg_vf){_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}
QG_INLINE float qg_hsum(qg_vf v) { return qx_hsum_ps(_mm256_add_ps(v.lo, v.hi)); }
QG_INLINE __m256 qg_load8_full(int kind, const void *p)
{
    switch (kind) {
    case QG_F32:
        return _mm256_loadu_ps(p);
    case QG_F16:
        return qx_load8_f16(p);
    default:
        return qx_load8_bf16(p);
    }
}
/* min(m, 8) values from p, the rest 0 (m <= 0: all 0); a short tail goes through a zeroed copy
 * so that nothing past the row is read. */
QG_INLINE __m256 qg_load8(int kind, const void *p, int m)
{
    if (m >= 8)
        return qg_load8_full(kind, p);
    if (m <= 0)
        return _mm256_setzero_ps();
    const size_t esize = kind == QG_F32 ? 4 : 2;
    _Alignas(32) uint8_t tmp[32] = {0};
    memcpy(tmp, p, (size_t)m * esize);
    return qg_load8_full(kind, tmp);
}
/* min(m, 16) values from p, the rest 0. */
QG_INLINE qg_vf qg_load(int kind, const void *p, int m)
{
    const size_t esize = kind == QG_F32 ? 4 : 2;
    return (qg_vf){qg_load8(kind, p, m), qg_load8(kind, (const char *)p + 8 * esize, m - 8)};
}
#endif

/* ---- float weights (f32, f16, bf16) times f32 activations ------------------------------------- */
/* The accumulators of a tile are the canonical lanes, so a tile may stop after any multiple of 16
 * values, store them and go on later: a float stored and loaded is unchanged. That lets the
 * products run in chunks of QG_F_KC values. Per chunk and tile of RN tokens, the first row tile
 * reads the tokens' rows and leaves a packed copy (16 values of each token in turn, one
 * contiguous stream) that every other row tile of the call reads from L1. Reading the rows
 * directly costs more: the engine's activation rows are 8 or 22 KB apart, so six of them and the
 * weight rows compete for the same L1 sets; and a separate copying pass stalls on the reads
 * while the multipliers wait. Measured on the 2-core Zen 5 (AVX-512, 2 threads, calls of 32 rows
 * by 512 tokens as the engine makes them, peak 445 GFLOP/s), before -> after, GFLOP/s:
 * n = 2048: f32 211 -> 307, f16 286 -> 347, bf16 281 -> 350; n = 5632: f32 178 -> 264, f16
 * 241 -> 320, bf16 233 -> 315. Other orders measured slower: 6 x 4, 8 x 3, 3 x 8 and 5 x 5
 * tiles, chunks of 512 or 2048, software prefetching of the next chunk's tokens. */
#define QG_F_KC 1024
/* Rows whose partial sums wait between chunks, and which share each packed chunk of the tokens
 * (q_gemm_rows: the engine's calls of float weights have 128): the pack is made once per 128
 * rows, so the activations (4 MB for 512 tokens of 2048 values, 11 MB of 5632) stream from L3 a
 * quarter as often as with 32, while the group's weights (512 KB of f16 at n = 2048) stay in L2. The partial sums
 * (48 KB with 4 x 6 tiles) are touched once per chunk and row tile. 2 threads, f16, calls of 128
 * against 32 rows, GFLOP/s: 5632 rows x 2048 inputs 322 -> 338, 2048 x 5632 245 -> 294; 256 rows
 * measured no better (n = 5632: its weights leave L2). */
#define QG_F_RG Q_GEMM_FLOAT_ROWS

/* Where a tile's activations come from: their rows, their rows while packing them, the pack. */
enum { QG_X_ROWS, QG_X_ROWS_PACK, QG_X_PACK };

#if defined(__AVX512F__)
QG_INLINE qg_vf qg_load_packed(const float *p) { return _mm512_load_ps(p); }
QG_INLINE void qg_store_packed(float *p, qg_vf v) { _mm512_store_ps(p, v); }

/* qg_hsum of a[r][t] for 4 rows and 4 tokens at once, into y[t * ys + r] for t < nt: the same
 * additions of the same lanes (l + 8, l + 4, l + 2, l + 1), so the same bits, but four results
 * share each instruction. Tokens pair up across 128-bit blocks first, so that block t ends with
 * token t's four rows, next to each other as y holds them. */
QG_INLINE void qg_hsum4x4(const qg_vf a[4][4], int nt, float *y, size_t ys)
{
    __m512 b[4], c[2];
    QG_UNROLL
    for (int r = 0; r < 4; r++) {
        /* blocks: token 0's lanes 0-3, 4-7, token 1's lanes 0-3, 4-7 (plus their l + 8) */
        const __m512 h01 = _mm512_add_ps(_mm512_shuffle_f32x4(a[r][0], a[r][1], 0x44),
                                         _mm512_shuffle_f32x4(a[r][0], a[r][1], 0xEE));
        const __m512 h23 = _mm512_add_ps(_mm512_shuffle_f32x4(a[r][2], a[r][3], 0x44),
                                         _mm512_shuffle_f32x4(a[r][2], a[r][3], 0xEE));
        /* block t: token t's lanes l + l+4, l < 4 */
        b[r] = _mm512_add_ps(_mm512_shuffle_f32x4(h01, h23, 0x88), _mm512_shuffle_f32x4(h01, h23, 0xDD));
    }
    /* per block: rows 2j and 2j+1, lanes l + l+2 (l < 2) */
    QG_UNROLL
    for (int j = 0; j < 2; j++)
        c[j] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * j], b[2 * j + 1], 0x44),
                             _mm512_shuffle_ps(b[2 * j], b[2 * j + 1], 0xEE));
    /* per block: rows 0..3, lanes 0 + 1 */
    const __m512 d = _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], 0x88), _mm512_shuffle_ps(c[0], c[1], 0xDD));
    _mm_storeu_ps(y, _mm512_castps512_ps128(d));
    if (nt > 1)
        _mm_storeu_ps(y + ys, _mm512_extractf32x4_ps(d, 1));
    if (nt > 2)
        _mm_storeu_ps(y + 2 * ys, _mm512_extractf32x4_ps(d, 2));
    if (nt > 3)
        _mm_storeu_ps(y + 3 * ys, _mm512_extractf32x4_ps(d, 3));
}
#else
QG_INLINE qg_vf qg_load_packed(const float *p) { return (qg_vf){_mm256_load_ps(p), _mm256_load_ps(p + 8)}; }
QG_INLINE void qg_store_packed(float *p, qg_vf v)
{
    _mm256_store_ps(p, v.lo);
    _mm256_store_ps(p + 8, v.hi);
}
#endif

/* Values [k0, k1) of RM weight rows times RN tokens. The lanes start at 0 when k0 = 0, else from
 * part[r * RN + t]; they end in part when k1 < n, else reduced into y. xp: the chunk's packed
 * tokens, [(k1 - k0) / 16][RN][16] floats (unused with QG_X_ROWS). */
QG_INLINE void qg_float_tile(int kind, int RM, int RN, int src, int n, int k0, int k1, const char *w, size_t ws,
                             const char *x, size_t xs, float *xp, qg_vf *part, float *y, size_t ys)
{
    const size_t esize = kind == QG_F32 ? 4 : 2;
    qg_vf acc[QG_F_RM][QG_F_RN];
    QG_UNROLL
    for (int r = 0; r < RM; r++)
        QG_UNROLL
        for (int t = 0; t < RN; t++)
            acc[r][t] = k0 > 0 ? part[r * RN + t] : qg_zero();
    for (int i = k0; i < k1; i += QG_VL, xp += RN * QG_VL) {
        const int m = n - i;
        qg_vf xv[QG_F_RN];
        QG_UNROLL
        for (int t = 0; t < RN; t++) {
            if (src == QG_X_PACK) {
                xv[t] = qg_load_packed(xp + t * QG_VL);
            } else {
                xv[t] = qg_load(QG_F32, x + (size_t)t * xs + (size_t)i * 4, m);
                if (src == QG_X_ROWS_PACK)
                    qg_store_packed(xp + t * QG_VL, xv[t]);
            }
        }
        QG_UNROLL
        for (int r = 0; r < RM; r++) {
            const qg_vf wv = qg_load(kind, w + (size_t)r * ws + (size_t)i * esize, m);
            QG_UNROLL
            for (int t = 0; t < RN; t++)
                acc[r][t] = qg_fma(wv, xv[t], acc[r][t]);
        }
    }
    if (k1 < n) {
        QG_UNROLL
        for (int r = 0; r < RM; r++)
            QG_UNROLL
            for (int t = 0; t < RN; t++)
                part[r * RN + t] = acc[r][t];
        return;
    }
#if defined(__AVX512F__)
    if (RM == 4) {
        /* tokens in fours; a short last four repeats tokens, whose results are not stored */
        QG_UNROLL
        for (int t0 = 0; t0 < RN; t0 += 4) {
            const qg_vf a[4][4] = {
                {acc[0][t0], acc[0][(t0 + 1) % RN], acc[0][(t0 + 2) % RN], acc[0][(t0 + 3) % RN]},
                {acc[1][t0], acc[1][(t0 + 1) % RN], acc[1][(t0 + 2) % RN], acc[1][(t0 + 3) % RN]},
                {acc[2][t0], acc[2][(t0 + 1) % RN], acc[2][(t0 + 2) % RN], acc[2][(t0 + 3) % RN]},
                {acc[3][t0], acc[3][(t0 + 1) % RN], acc[3][(t0 + 2) % RN], acc[3][(t0 + 3) % RN]},
            };
            qg_hsum4x4(a, RN - t0 < 4 ? RN - t0 : 4, y + (size_t)t0 * ys, ys);
        }
        return;
    }
#endif
    QG_UNROLL
    for (int r = 0; r < RM; r++)
        QG_UNROLL
        for (int t = 0; t < RN; t++)
            y[(size_t)t * ys + r] = qg_hsum(acc[r][t]);
}

/* Row groups, then tiles of RN tokens, then chunks, then row tiles (the first one packs); the
 * tokens left over (ntok mod RN) one at a time over whole rows. n = 0 still writes zeros. */
QG_INLINE void qg_float_gemm(int kind, int n, int64_t nrows, int ntok, const char *w, size_t ws, const char *x,
                             size_t xs, float *y, size_t ys)
{
    enum { RM = QG_F_RM, RN = QG_F_RN };
    _Alignas(64) float xp[RN * QG_F_KC];
    qg_vf part[QG_F_RG * RN];
    const int tfull = ntok - ntok % RN;
    /* One chunk leaves no partial sums, so then all rows share each pack. */
    const int64_t rg = n <= QG_F_KC ? nrows : QG_F_RG;
    for (int64_t g0 = 0; g0 < nrows && tfull > 0; g0 += rg) {
        const int64_t g1 = nrows - g0 < rg ? nrows : g0 + rg;
        for (int t = 0; t < tfull; t += RN) {
            const char *xt = x + (size_t)t * xs;
            for (int k0 = 0; k0 == 0 || k0 < n; k0 += QG_F_KC) {
                const int k1 = n - k0 < QG_F_KC ? n : k0 + QG_F_KC;
                int64_t r = g0;
                qg_vf *p = part;
                for (; r + RM <= g1; r += RM, p += RM * RN) {
                    const char *wr = w + (size_t)r * ws;
                    float *yr = y + (size_t)t * ys + r;
                    if (r == g0)
                        qg_float_tile(kind, RM, RN, QG_X_ROWS_PACK, n, k0, k1, wr, ws, xt, xs, xp, p, yr, ys);
                    else
                        qg_float_tile(kind, RM, RN, QG_X_PACK, n, k0, k1, wr, ws, xt, xs, xp, p, yr, ys);
                }
                for (; r < g1; r++, p += RN) {
                    const char *wr = w + (size_t)r * ws;
                    float *yr = y + (size_t)t * ys + r;
                    if (r == g0)
                        qg_float_tile(kind, 1, RN, QG_X_ROWS_PACK, n, k0, k1, wr, ws, xt, xs, xp, p, yr, ys);
                    else
                        qg_float_tile(kind, 1, RN, QG_X_PACK, n, k0, k1, wr, ws, xt, xs, xp, p, yr, ys);
                }
            }
        }
    }
    for (int t = tfull; t < ntok; t++) {
        const char *xt = x + (size_t)t * xs;
        int64_t r = 0;
        for (; r + RM <= nrows; r += RM)
            qg_float_tile(kind, RM, 1, QG_X_ROWS, n, 0, n, w + (size_t)r * ws, ws, xt, xs, NULL, NULL,
                          y + (size_t)t * ys + r, ys);
        for (; r < nrows; r++)
            qg_float_tile(kind, 1, 1, QG_X_ROWS, n, 0, n, w + (size_t)r * ws, ws, xt, xs, NULL, NULL,
                          y + (size_t)t * ys + r, ys);
    }
}

#define QG_FLOAT_GEMM(T, KIND)                                                                             \
    static void QX(q_gemm_##T)(int n, int64_t nrows, int ntok, const void *w, size_t ws, const void *x,      \
                               size_t xs, float *y, size_t ys)                                            \
    {                                                                                                     \
        qg_float_gemm(KIND, n, nrows, ntok, w, ws, x, xs, y, ys);                                          \
    }
QG_FLOAT_GEMM(f32, QG_F32)
QG_FLOAT_GEMM(f16, QG_F16)
QG_FLOAT_GEMM(bf16, QG_BF16)

/* ---- block totals ------------------------------------------------------------------------------ */
/* The canonical order (quant.h) needs each block's exact integer total per output element, then
 * one FMA chain per element. The quantized tiles are RM rows × RN tokens with RN = 4 (or 1 at the
 * edges): a row's four token totals reduce together (three horizontal adds and one add) into the
 * lanes of one 128-bit vector, and the float chain runs on those lanes — lane t is element
 * (row, token t), so every lane follows exactly the scalar chain. */

QG_INLINE __m128i qg_hsum4_epi32(__m256i a, __m256i b, __m256i c, __m256i d)
{
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* The totals of v[0..RN) in lanes 0..RN-1 (RN = 4 or 1), the other lanes 0. */
QG_INLINE __m128 qg_totals(const __m256i *v, int RN)
{
    if (RN == 1)
        return _mm_cvtepi32_ps(_mm_cvtsi32_si128(qx_hsum_epi32(v[0])));
    return _mm_cvtepi32_ps(qg_hsum4_epi32(v[0], v[1], v[2], v[3]));
}

/* Lanes t < RN of acc to y[t * ys]. */
QG_INLINE void qg_store_lanes(__m128 acc, int RN, float *y, size_t ys)
{
    _Alignas(16) float f[4];
    _mm_store_ps(f, acc);
    QG_UNROLL
    for (int t = 0; t < RN; t++)
        y[(size_t)t * ys] = f[t];
}

/* ---- 32-value blocks: q8_0 and q4_0 weights times q8_0 activations ----------------------------- */

enum { QG_Q8_0, QG_Q4_0 };

QG_INLINE void qg_b32_tile(int kind, int RM, int RN, int n, const char *w, size_t ws, const char *x,
                           size_t xs, float *y, size_t ys)
{
    const size_t wb = kind == QG_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    __m128 acc[QG_B_RM];
    QG_UNROLL
    for (int r = 0; r < RM; r++)
        acc[r] = _mm_setzero_ps();
    for (int b = 0; b < n / 32; b++) {
        __m256i yq[4], yoff[4], sums[4];
        _Alignas(16) float yd[4] = {0};
        QG_UNROLL
        for (int t = 0; t < RN; t++) {
            const block_q8_0 *yb = (const block_q8_0 *)(x + (size_t)t * xs) + b;
            yq[t] = qx_load_q8_0(yb->qs);
            yd[t] = qx_h2f(yb->d);
            /* q4_0 codes are level + 8: Σ code·q - 8·Σ q, the second term per token. */
            if (kind == QG_Q4_0)
                yoff[t] = qx_dpbusd(_mm256_setzero_si256(), _mm256_set1_epi8(8), yq[t]);
        }
        const __m128 ydv = _mm_load_ps(yd);
        QG_UNROLL
        for (int r = 0; r < RM; r++) {
            const uint8_t *blk = (const uint8_t *)(w + (size_t)r * ws) + (size_t)b * wb;
            uint16_t dh;
            memcpy(&dh, blk, sizeof dh);
            /* q8_0: |w| times y with w's sign; q4_0: unsigned codes times y. */
            const __m256i c = kind == QG_Q8_0 ? _mm256_loadu_si256((const __m256i *)(blk + 2))
                                              : qx_nibbles32(blk + 2);
            const __m256i u = kind == QG_Q8_0 ? _mm256_sign_epi8(c, c) : c;
            QG_UNROLL
            for (int t = 0; t < RN; t++)
                sums[t] = kind == QG_Q8_0
                              ? qx_dpbusd(_mm256_setzero_si256(), u, _mm256_sign_epi8(yq[t], c))
                              : _mm256_sub_epi32(qx_dpbusd(_mm256_setzero_si256(), u, yq[t]), yoff[t]);
            /* s = fma(d_w · d_y, (float)total, s) per lane */
            acc[r] = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(qx_h2f(dh)), ydv), qg_totals(sums, RN), acc[r]);
        }
    }
    QG_UNROLL
    for (int r = 0; r < RM; r++)
        qg_store_lanes(acc[r], RN, y + r, ys);
}

/* Block b of RN (<= 4) q8_K activation rows x apart: their addresses in yb, their scales d_y in
 * the lanes of the result (the other lanes 0). */
QG_INLINE __m128 qg_q8K_tokens(const char *x, size_t xs, int b, int RN, const block_q8_K *yb[4])
{
    _Alignas(16) float yd[4] = {0};
    QG_UNROLL
    for (int t = 0; t < RN; t++) {
        yb[t] = (const block_q8_K *)(x + (size_t)t * xs) + b;
        yd[t] = yb[t]->d;
    }
    return _mm_load_ps(yd);
}

/* ---- k-quants times q8_K activations ------------------------------------------------------------ */
/* Per super-block, as qx_kq_isum: integer sums per group pair weighted by the int16 multipliers
 * and the offset correction through bsums, reduced to the block's total; then the canonical
 * float steps d_y·d·isum and, with mins, -(d_y·dmin)·msum. */

QG_INLINE void qg_kq_tile(int kind, size_t bsize, int RM, int RN, int n, const char *w, size_t ws,
                          const char *x, size_t xs, float *y, size_t ys)
{
    const int asym = kind == QX_Q2K || kind == QX_Q4K || kind == QX_Q5K;
    __m128 acc[QG_K_RM];
    QG_UNROLL
    for (int r = 0; r < RM; r++)
        acc[r] = _mm_setzero_ps();
    for (int b = 0; b < n / Q_QK_K; b++) {
        const void *blk[QG_K_RM];
        qx_kq_head h[QG_K_RM];
        __m256i lo[QG_K_RM], hi[QG_K_RM], isum[QG_K_RM][4], msum[4];
        const block_q8_K *yb[4];
        QG_UNROLL
        for (int r = 0; r < RM; r++) {
            blk[r] = w + (size_t)r * ws + (size_t)b * bsize;
            h[r] = qx_kq_head_get(kind, blk[r]);
            lo[r] = _mm256_permute2x128_si256(h[r].sc, h[r].sc, 0x00);
            hi[r] = _mm256_permute2x128_si256(h[r].sc, h[r].sc, 0x11);
            QG_UNROLL
            for (int t = 0; t < RN; t++)
                isum[r][t] = _mm256_setzero_si256();
        }
        const __m128 ydv = qg_q8K_tokens(x, xs, b, RN, yb);
        for (int c = 0; c < 8; c++) {
            __m256i yq[4];
            QG_UNROLL
            for (int t = 0; t < RN; t++)
                yq[t] = qx_load32((const uint8_t *)yb[t]->qs + 32 * c);
            QG_UNROLL
            for (int r = 0; r < RM; r++) {
                const __m256i codes = qx_kq_run(kind, blk[r], c), mult = qx_group_pair(lo[r], hi[r], c);
                QG_UNROLL
                for (int t = 0; t < RN; t++)
                    isum[r][t] = qx_dpwssd(isum[r][t], _mm256_maddubs_epi16(codes, yq[t]), mult);
            }
        }
        QG_UNROLL
        for (int r = 0; r < RM; r++) {
            QG_UNROLL
            for (int t = 0; t < RN; t++) {
                const __m256i bsums = _mm256_loadu_si256((const __m256i *)yb[t]->bsums);
                if (h[r].off)
                    isum[r][t] = _mm256_sub_epi32(isum[r][t], _mm256_mullo_epi32(_mm256_madd_epi16(h[r].sc, bsums),
                                                                                _mm256_set1_epi32(h[r].off)));
                if (asym)
                    msum[t] = _mm256_madd_epi16(h[r].mn, bsums);
            }
            /* s = fma(d_y · d, (float)isum, s); with mins s = fma(-(d_y · dmin), (float)msum, s) */
            acc[r] = _mm_fmadd_ps(_mm_mul_ps(ydv, _mm_set1_ps(h[r].d)), qg_totals(isum[r], RN), acc[r]);
            if (asym)
                acc[r] = _mm_fnmadd_ps(_mm_mul_ps(ydv, _mm_set1_ps(h[r].dmin)), qg_totals(msum, RN), acc[r]);
        }
    }
    QG_UNROLL
    for (int r = 0; r < RM; r++)
        qg_store_lanes(acc[r], RN, y + r, ys);
}

/* ---- iq4_xs times q8_K activations ------------------------------------------------------------- */
/* Per super-block and group of 32: the levels (table lookup of the nibbles) times q with the sign
 * trick, weighted by the group's int16 multiplier (ls - 32); the block's total, then the
 * canonical step d·d_y·isum. The tile shapes are the k-quants'. */

QG_INLINE void qg_iq4xs_tile(int unused, int RM, int RN, int n, const char *w, size_t ws, const char *x,
                             size_t xs, float *y, size_t ys)
{
    (void)unused;
    const __m256i table = qx_iq4_table();
    __m128 acc[QG_K_RM];
    QG_UNROLL
    for (int r = 0; r < RM; r++)
        acc[r] = _mm_setzero_ps();
    for (int b = 0; b < n / Q_QK_K; b++) {
        const block_iq4_xs *blk[QG_K_RM];
        __m256i sc[QG_K_RM], isum[QG_K_RM][4];
        const block_q8_K *yb[4];
        QG_UNROLL
        for (int r = 0; r < RM; r++) {
            blk[r] = (const block_iq4_xs *)(w + (size_t)r * ws) + b;
            sc[r] = _mm256_broadcastsi128_si256(qx_iq4_xs_scales(blk[r]));
            QG_UNROLL
            for (int t = 0; t < RN; t++)
                isum[r][t] = _mm256_setzero_si256();
        }
        const __m128 ydv = qg_q8K_tokens(x, xs, b, RN, yb);
        for (int ib = 0; ib < 8; ib++) {
            __m256i yq[4];
            QG_UNROLL
            for (int t = 0; t < RN; t++)
                yq[t] = _mm256_loadu_si256((const __m256i *)(yb[t]->qs + 32 * ib));
            QG_UNROLL
            for (int r = 0; r < RM; r++) {
                const __m256i wl = _mm256_shuffle_epi8(table, qx_nibbles32(blk[r]->qs + 16 * ib));
                const __m256i u = _mm256_sign_epi8(wl, wl), mult = _mm256_shuffle_epi8(sc[r], QX_SEL16(ib));
                QG_UNROLL
                for (int t = 0; t < RN; t++)
                    isum[r][t] = qx_dpwssd(isum[r][t], _mm256_maddubs_epi16(u, _mm256_sign_epi8(yq[t], wl)), mult);
            }
        }
        /* s = fma(d · d_y, (float)isum, s) per lane */
        QG_UNROLL
        for (int r = 0; r < RM; r++)
            acc[r] = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(qx_h2f(blk[r]->d)), ydv), qg_totals(isum[r], RN), acc[r]);
    }
    QG_UNROLL
    for (int r = 0; r < RM; r++)
        qg_store_lanes(acc[r], RN, y + r, ys);
}

/* ---- drivers ------------------------------------------------------------------------------------ */
/* Token blocks outermost (their activations stay in L2), then row tiles (their weights stay in
 * L1 while the block's tokens pass), then token tiles; the edges use the 1-wide variants. */
#define QG_DRIVER(NAME, TILE, RM, RN, ...)                                                                   \
    static void NAME(int n, int64_t nrows, int ntok, const void *vw, size_t ws, const void *vx, size_t xs,  \
                     float *y, size_t ys)                                                                   \
    {                                                                                                       \
        const char *w = vw, *x = vx;                                                                        \
        for (int t0 = 0; t0 < ntok; t0 += QG_TOK_BLOCK) {                                                   \
            const int t1 = ntok - t0 < QG_TOK_BLOCK ? ntok : t0 + QG_TOK_BLOCK;                             \
            int64_t r = 0;                                                                                  \
            for (; r + (RM) <= nrows; r += (RM)) {                                                          \
                const char *wr = w + (size_t)r * ws;                                                        \
                int t = t0;                                                                                 \
                for (; t + (RN) <= t1; t += (RN))                                                           \
                    TILE(__VA_ARGS__, RM, RN, n, wr, ws, x + (size_t)t * xs, xs, y + (size_t)t * ys + r, ys); \
                for (; t < t1; t++)                                                                         \
                    TILE(__VA_ARGS__, RM, 1, n, wr, ws, x + (size_t)t * xs, xs, y + (size_t)t * ys + r, ys); \
            }                                                                                               \
            for (; r < nrows; r++) {                                                                        \
                const char *wr = w + (size_t)r * ws;                                                        \
                int t = t0;                                                                                 \
                for (; t + (RN) <= t1; t += (RN))                                                           \
                    TILE(__VA_ARGS__, 1, RN, n, wr, ws, x + (size_t)t * xs, xs, y + (size_t)t * ys + r, ys); \
                for (; t < t1; t++)                                                                         \
                    TILE(__VA_ARGS__, 1, 1, n, wr, ws, x + (size_t)t * xs, xs, y + (size_t)t * ys + r, ys); \
            }                                                                                               \
        }                                                                                                   \
    }

QG_DRIVER(QX(q_gemm_q8_0), qg_b32_tile, QG_B_RM, QG_B_RN, QG_Q8_0)
QG_DRIVER(QX(q_gemm_q4_0), qg_b32_tile, QG_B_RM, QG_B_RN, QG_Q4_0)
QG_DRIVER(QX(q_gemm_q2_K), qg_kq_tile, QG_K_RM, QG_K_RN, QX_Q2K, sizeof(block_q2_K))
QG_DRIVER(QX(q_gemm_q3_K), qg_kq_tile, QG_K_RM, QG_K_RN, QX_Q3K, sizeof(block_q3_K))
QG_DRIVER(QX(q_gemm_q4_K), qg_kq_tile, QG_K_RM, QG_K_RN, QX_Q4K, sizeof(block_q4_K))
QG_DRIVER(QX(q_gemm_q5_K), qg_kq_tile, QG_K_RM, QG_K_RN, QX_Q5K, sizeof(block_q5_K))
QG_DRIVER(QX(q_gemm_q6_K), qg_kq_tile, QG_K_RM, QG_K_RN, QX_Q6K, sizeof(block_q6_K))
QG_DRIVER(QX(q_gemm_iq4_xs), qg_iq4xs_tile, QG_K_RM, QG_K_RN, 0)

/* vec_dot is the 1 × 1 product: the same instructions, so the same bits as any gemm element. */
#define QG_DOT(T)                                                                                   \
    static void QX(q_vec_dot_gemm_##T)(int n, float *s, const void *x, const void *y)                \
    {                                                                                               \
        QX(q_gemm_##T)(n, 1, 1, x, 0, y, 0, s, 1);                                                  \
    }
QG_DOT(f32)
QG_DOT(f16)
QG_DOT(bf16)
QG_DOT(q8_0)
QG_DOT(q4_0)
QG_DOT(q2_K)
QG_DOT(q3_K)
QG_DOT(q4_K)
QG_DOT(q5_K)
QG_DOT(q6_K)
QG_DOT(iq4_xs)

#define QG_ENTRY(T) {.gemm = QX(q_gemm_##T), .vec_dot = QX(q_vec_dot_gemm_##T)}
/* Designated initializers: the table sets gemm and vec_dot; everything else falls back. */
#define QG_TABLE                                                                                    \
    {                                                                                               \
        [Q_TYPE_F32] = QG_ENTRY(f32), [Q_TYPE_F16] = QG_ENTRY(f16), [Q_TYPE_BF16] = QG_ENTRY(bf16),  \
        [Q_TYPE_Q8_0] = QG_ENTRY(q8_0), [Q_TYPE_Q4_0] = QG_ENTRY(q4_0),                             \
        [Q_TYPE_Q2_K] = QG_ENTRY(q2_K), [Q_TYPE_Q3_K] = QG_ENTRY(q3_K),                             \
        [Q_TYPE_Q4_K] = QG_ENTRY(q4_K), [Q_TYPE_Q5_K] = QG_ENTRY(q5_K),                             \
        [Q_TYPE_Q6_K] = QG_ENTRY(q6_K), [Q_TYPE_IQ4_XS] = QG_ENTRY(iq4_xs),                          \
    }

#endif
