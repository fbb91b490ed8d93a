/* gemm_vnni.h — AVX-512 VNNI matrix products of the quantized weight types (q8_0, q4_0, the
 * k-quants, iq4_xs) with 16 weight rows in the 16 int32 lanes of a register.
 *
 * Internal: include only from gemm_avx512.c. Products of few tokens go to gemm_x86.h's tiles,
 * which give the same bits (and vec_dot stays their 1 × 1 product).
 *
 * Why rows in lanes. gemm_x86.h's tiles form a (row, token) block total in the lanes of a 256-bit
 * register and reduce it horizontally, block after block; the reduction costs more than the
 * multiply-adds. Here lane l of every register belongs to row l of a group of 16: the group's
 * weights are repacked so that one register holds four consecutive codes of each row, and one
 * vpdpbusd with four activation bytes of a token broadcast to every lane adds to all 16 rows'
 * totals. A block's exact totals for 16 rows come out of (block size / 4) vpdpbusd with no
 * reduction, and lane l then runs the scalar float chain of element (row l, token). Repacking
 * costs about as much as reading the weights once; the engine multiplies 32 rows by every token of
 * a chunk per call (calib/engine.c), so it is paid back over hundreds of tokens, and the
 * activations are read where the caller quantized them. Putting tokens in the lanes instead
 * would repack the activations once per 32 rows. The broadcast is the costly part (on Zen 5 it
 * takes a vector slot as a multiply-add does), so a tile runs two lane groups, 32 rows, on each.
 *
 * Exact block totals. vpdpbusd multiplies unsigned by signed bytes and adds groups of four into
 * int32 lanes without saturation, so codes go in unsigned and activations (levels in
 * [-127, 127]) signed, and every offset is taken out in integers:
 *  - q8_0: w + 128 (w with its sign bit flipped); total = Σ (w + 128)·y − 128·Σ y;
 *  - q4_0: code = level + 8; total = Σ code·y − 8·Σ y. q8_0 activations carry no sums: −off·Σ y
 *    is tabulated per token and block once per tile of rows;
 *  - k-quants: per group of 16 or 32 values the int32 total of code·y times the group's multiplier
 *    (vpmulld), summed over the groups; q3_K/q6_K's offset (code = level + 4 or + 32) and the
 *    mins of q2_K/q4_K/q5_K through q8_K's bsums, int16 pairs times int16 pairs (vpdpwssd):
 *    isum = Σ_g sc_g·Σ code·y − off·Σ_g sc_g·bsum_g, msum = Σ_g mn_g·bsum_g — the reference's
 *    isum and msum, since bsum_g = Σ y over group g (quant.h's precondition);
 *  - iq4_xs: level + 128 (the table's levels flipped to unsigned), and
 *    isum = Σ_g (ls_g − 32)·Σ (level + 128)·y − 128·Σ_g (ls_g − 32)·(bsum_2g + bsum_2g+1).
 * Every partial sum is bounded by the sum of the magnitudes of its terms, which stays below 2^31
 * (q8_0: 32·255·128; iq4_xs, the largest: 8·32·32·241·128 + 8·4096·4096). Then the canonical
 * float steps of quant.h per lane: vcvtdq2ps rounds as the scalar (float) cast, the scale
 * products are the same two floats multiplied once, and one FMA per step.
 *
 * Order of work. Rows in tiles of 32; per tile, the blocks of a row in chunks of up to QV_CHUNK
 * values, repacked into a buffer allocated per call (kept in L2 while every token passes); per
 * chunk, tokens in tiles of QV_B_RN or QV_K_RN. A chunk continues each element's float chain
 * where the previous one stored it in y (a float stored and loaded is unchanged), so every element
 * still sees its blocks in order, and depends only on its two rows. */
#ifndef QKIT_QUANT_GEMM_VNNI_H
#define QKIT_QUANT_GEMM_VNNI_H

#include <limits.h>
#include <stdlib.h>

#include "gemm_x86.h"

#define QV_LANES 16
/* Rows per tile: two lane groups, which share every activation broadcast (a broadcast costs about
 * as much as a multiply-add here, so each should feed as many as the registers allow). */
#define QV_NG 2
#define QV_TILE_ROWS (QV_NG * QV_LANES)
/* Fewer tokens than this: gemm_x86.h's tiles (repacking would not pay). */
#define QV_MIN_TOK 5
/* At most this many values of a row per chunk: the chunk's repacked weights (36 or 45 bytes per
 * value for a tile of 32 rows) stay in L2 while every token passes. One chunk spans the whole row
 * of most of a model's matrices, so that y is written once: storing and reloading the chains
 * between chunks cost 7 % with n = 2048 in chunks of 1024. */
#define QV_CHUNK 4096
/* Tokens per tile (32-value blocks, k-quants; more spill the registers), and tokens whose Σ y
 * are tabulated at once. */
#define QV_B_RN 4
#define QV_K_RN 4
#define QV_TOK_BLOCK 16

/* Lanes l < nr (nr <= 0: none). */
QG_INLINE __mmask16 qv_row_mask(int nr)
{
    return nr >= QV_LANES ? (__mmask16)0xFFFF : nr <= 0 ? (__mmask16)0 : (__mmask16)((1u << nr) - 1);
}

/* The 32-bit word at p in every lane. */
QG_INLINE __m512i qv_bcast32(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

/* Lane l = l * stride (bytes), for gathers across rows. */
QG_INLINE __m512i qv_lane_offsets(size_t stride)
{
    return _mm512_mullo_epi32(_mm512_set1_epi32((int)stride),
                              _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

/* v[i] lane j becomes v[j] lane i (32-bit lanes): unpacks pair the lanes of neighbouring rows,
 * then of rows two apart, and two rounds of 128-bit shuffles move the quarters across. */
QG_INLINE void qv_transpose16(__m512i v[16])
{
    __m512i a[16], b[16];
    QG_UNROLL
    for (int i = 0; i < 16; i += 2) {
        a[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        a[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
    QG_UNROLL
    for (int i = 0; i < 16; i += 4) {
        b[i] = _mm512_unpacklo_epi64(a[i], a[i + 2]);
        b[i + 1] = _mm512_unpackhi_epi64(a[i], a[i + 2]);
        b[i + 2] = _mm512_unpacklo_epi64(a[i + 1], a[i + 3]);
        b[i + 3] = _mm512_unpackhi_epi64(a[i + 1], a[i + 3]);
    }
    /* b[4q + r] holds, in 128-bit block c, lanes 4c + r of rows 4q..4q+3. */
    QG_UNROLL
    for (int i = 0; i < 4; i++) {
        a[i] = _mm512_shuffle_i32x4(b[i], b[i + 4], 0x88);
        a[i + 4] = _mm512_shuffle_i32x4(b[i], b[i + 4], 0xDD);
        a[i + 8] = _mm512_shuffle_i32x4(b[i + 8], b[i + 12], 0x88);
        a[i + 12] = _mm512_shuffle_i32x4(b[i + 8], b[i + 12], 0xDD);
    }
    QG_UNROLL
    for (int i = 0; i < 4; i++) {
        v[i] = _mm512_shuffle_i32x4(a[i], a[i + 8], 0x88);
        v[i + 8] = _mm512_shuffle_i32x4(a[i], a[i + 8], 0xDD);
        v[i + 4] = _mm512_shuffle_i32x4(a[i + 4], a[i + 12], 0x88);
        v[i + 12] = _mm512_shuffle_i32x4(a[i + 4], a[i + 12], 0xDD);
    }
}

/* The float chain per lane: the first chunk starts at +0, the others where the last one left y. */
QG_INLINE __m512 qv_chain_load(const float *y, __mmask16 m, int first)
{
    return first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, y);
}

QG_INLINE void qv_chain_store(float *y, __mmask16 m, __m512 s)
{
    if (m == 0xFFFF)
        _mm512_storeu_ps(y, s);
    else
        _mm512_mask_storeu_ps(y, m, s);
}

/* nt tokens' outputs for NG lane groups into the cache. */
QG_INLINE void qv_prefetch_out(int NG, int nt, const float *y, size_t ys)
{
    for (int t = 0; t < nt; t++)
        for (int g = 0; g < NG; g++)
            _mm_prefetch((const char *)(y + (size_t)t * ys + QV_LANES * g), _MM_HINT_T0);
}

/* ---- 32-value blocks: q8_0 and q4_0 weights times q8_0 activations ----------------------------- */

#define QV_B32_CHUNK (QV_CHUNK / 32)
_Static_assert(QV_B32_CHUNK % 8 == 0, "the Σ y table is written 8 blocks at a time");

typedef struct {
    __m512i code[8]; /* values 4k..4k+3 of row l in lane l, unsigned */
    __m512 d;        /* d_w of row l in lane l (0 past the last row) */
} qv_b32;

/* Block b of the nr (<= 16) rows at w, ws bytes apart, repacked. Gathers read only the rows that
 * exist (masked lanes read nothing and give 0). */
QG_INLINE void qv_b32_pack(int kind, const char *w, size_t ws, int nr, int b, qv_b32 *out)
{
    const size_t bsize = kind == QG_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    const __mmask16 m = qv_row_mask(nr);
    const __m512i idx = qv_lane_offsets(ws), z = _mm512_setzero_si512();
    const char *blk = w + (size_t)b * bsize;
    if (kind == QG_Q8_0) {
        QG_UNROLL
        for (int k = 0; k < 8; k++)
            out->code[k] = _mm512_xor_si512(_mm512_mask_i32gather_epi32(z, m, idx, blk + 2 + 4 * k, 1),
                                            _mm512_set1_epi8((char)0x80));
    } else {
        /* Byte j holds code j (low nibble) and code j + 16 (high nibble). */
        const __m512i m4 = _mm512_set1_epi8(0x0F);
        QG_UNROLL
        for (int k = 0; k < 4; k++) {
            const __m512i g = _mm512_mask_i32gather_epi32(z, m, idx, blk + 2 + 4 * k, 1);
            out->code[k] = _mm512_and_si512(g, m4);
            out->code[k + 4] = _mm512_and_si512(_mm512_srli_epi32(g, 4), m4);
        }
    }
    /* d is the block's first half; the gather's other two bytes are dropped. */
    const __m512i dh = _mm512_mask_i32gather_epi32(z, m, idx, blk, 1);
    out->d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dh));
}

/* off·Σ y of blocks yb[0..m) (m <= 8) in lanes 0..m-1, the other lanes 0. The eight blocks' partial
 * sums (8 lanes each) reduce together: two rounds of horizontal adds leave each 128-bit half with
 * one partial per block, and the halves add up. */
QG_INLINE __m256i qv_sums8(const block_q8_0 *yb, int m, __m256i off)
{
    __m256i p[8];
    QG_UNROLL
    for (int b = 0; b < 8; b++)
        p[b] = b < m ? _mm256_dpbusd_epi32(_mm256_setzero_si256(), off, qx_load_q8_0(yb[b].qs))
                     : _mm256_setzero_si256();
    const __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
    const __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
}

/* For tn tokens at x and blocks b0..b0+kb: -off·Σ y and d_y ([t][QV_B32_CHUNK]). */
QG_INLINE void qv_b32_sums(int kind, const char *x, size_t xs, int tn, int b0, int kb, int32_t *neg, float *dy)
{
    const __m256i off = _mm256_set1_epi8((char)(kind == QG_Q8_0 ? 128 : 8));
    const __m256i idx =
        _mm256_mullo_epi32(_mm256_set1_epi32(sizeof(block_q8_0)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int t = 0; t < tn; t++) {
        const block_q8_0 *yb = (const block_q8_0 *)(x + (size_t)t * xs) + b0;
        for (int b = 0; b < kb; b += 8) {
            const int m = kb - b;
            const __m256i s = qv_sums8(yb + b, m, off);
            _mm256_store_si256((__m256i *)(neg + t * QV_B32_CHUNK + b),
                               _mm256_sub_epi32(_mm256_setzero_si256(), s));
            /* The eight halves d (a gather of 32-bit words; their upper halves are dropped). */
            const __mmask8 mk = m >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << m) - 1);
            const __m256i dh = _mm256_mmask_i32gather_epi32(_mm256_setzero_si256(), mk, idx, &yb[b].d, 1);
            _mm256_store_ps(dy + t * QV_B32_CHUNK + b, _mm256_cvtph_ps(_mm256_cvtepi32_epi16(dh)));
        }
    }
}

/* RN tokens at x times NG lane groups' kb repacked blocks (from block b0); neg and dy are the
 * first token's rows of the tables, y the first token's output for the first lane group. */
QG_INLINE void qv_b32_tile(int NG, int RN, const qv_b32 (*wp)[QV_NG], int kb, const char *x, size_t xs, int b0,
                           const int32_t *neg, const float *dy, float *y, size_t ys, const __mmask16 *m,
                           int first)
{
    __m512 s[QV_NG][QV_B_RN];
    QG_UNROLL
    for (int g = 0; g < NG; g++)
        QG_UNROLL
        for (int t = 0; t < RN; t++)
            s[g][t] = qv_chain_load(y + (size_t)t * ys + QV_LANES * g, m[g], first);
    for (int b = 0; b < kb; b++) {
        __m512i c[QV_NG][8];
        QG_UNROLL
        for (int g = 0; g < NG; g++)
            QG_UNROLL
            for (int k = 0; k < 8; k++)
                c[g][k] = _mm512_load_si512(&wp[b][g].code[k]);
        QG_UNROLL
        for (int t = 0; t < RN; t++) {
            const int8_t *q = ((const block_q8_0 *)(x + (size_t)t * xs) + b0 + b)->qs;
            __m512i acc[QV_NG];
            QG_UNROLL
            for (int g = 0; g < NG; g++)
                acc[g] = _mm512_set1_epi32(neg[t * QV_B32_CHUNK + b]);
            QG_UNROLL
            for (int k = 0; k < 8; k++) {
                const __m512i yk = qv_bcast32(q + 4 * k);
                QG_UNROLL
                for (int g = 0; g < NG; g++)
                    acc[g] = _mm512_dpbusd_epi32(acc[g], c[g][k], yk);
            }
            /* s = fma(d_w · d_y, (float)total, s) per lane */
            const __m512 dyt = _mm512_set1_ps(dy[t * QV_B32_CHUNK + b]);
            QG_UNROLL
            for (int g = 0; g < NG; g++)
                s[g][t] = _mm512_fmadd_ps(_mm512_mul_ps(wp[b][g].d, dyt), _mm512_cvtepi32_ps(acc[g]), s[g][t]);
        }
    }
    QG_UNROLL
    for (int g = 0; g < NG; g++)
        QG_UNROLL
        for (int t = 0; t < RN; t++)
            qv_chain_store(y + (size_t)t * ys + QV_LANES * g, m[g], s[g][t]);
}

/* Every token tile of tn tokens at x through qv_b32_tile. Before a tile, the next one's output
 * lines are fetched: they are far apart in y (a row of y per token), which the
 * hardware prefetchers do not follow, and a store to a line that is not there holds up the ones
 * behind it. */
QG_INLINE void qv_b32_tokens(int NG, const qv_b32 (*wp)[QV_NG], int kb, const char *x, size_t xs, int tn,
                             int b0, const int32_t *neg, const float *dy, float *y, size_t ys,
                             const __mmask16 *m, int first)
{
    int t = 0;
    for (; t + QV_B_RN <= tn; t += QV_B_RN) {
        if (t + 2 * QV_B_RN <= tn)
            qv_prefetch_out(NG, QV_B_RN, y + (size_t)(t + QV_B_RN) * ys, ys);
        qv_b32_tile(NG, QV_B_RN, wp, kb, x + (size_t)t * xs, xs, b0, neg + t * QV_B32_CHUNK,
                    dy + t * QV_B32_CHUNK, y + (size_t)t * ys, ys, m, first);
    }
    for (; t < tn; t++)
        qv_b32_tile(NG, 1, wp, kb, x + (size_t)t * xs, xs, b0, neg + t * QV_B32_CHUNK, dy + t * QV_B32_CHUNK,
                    y + (size_t)t * ys, ys, m, first);
}

/* 0, or -1 when the repacking buffer cannot be had (nothing written then). */
QG_INLINE int qv_b32_gemm(int kind, int n, int64_t nrows, int ntok, const char *w, size_t ws, const char *x,
                          size_t xs, float *y, size_t ys)
{
    const int nb = n / 32, cb = nb < QV_B32_CHUNK ? nb : QV_B32_CHUNK;
    qv_b32(*pack)[QV_NG] = aligned_alloc(64, sizeof *pack * (size_t)cb);
    _Alignas(64) int32_t neg[QV_TOK_BLOCK * QV_B32_CHUNK];
    _Alignas(64) float dy[QV_TOK_BLOCK * QV_B32_CHUNK];
    if (!pack)
        return -1;
    for (int64_t r0 = 0; r0 < nrows; r0 += QV_TILE_ROWS) {
        const int nr = nrows - r0 < QV_TILE_ROWS ? (int)(nrows - r0) : QV_TILE_ROWS;
        const __mmask16 m[QV_NG] = {qv_row_mask(nr), qv_row_mask(nr - QV_LANES)};
        for (int b0 = 0; b0 < nb; b0 += cb) {
            const int kb = nb - b0 < cb ? nb - b0 : cb;
            for (int b = 0; b < kb; b++)
                for (int g = 0; g < QV_NG && QV_LANES * g < nr; g++)
                    qv_b32_pack(kind, w + (size_t)(r0 + QV_LANES * g) * ws, ws, nr - QV_LANES * g, b0 + b,
                                &pack[b][g]);
            for (int t0 = 0; t0 < ntok; t0 += QV_TOK_BLOCK) {
                const int tn = ntok - t0 < QV_TOK_BLOCK ? ntok - t0 : QV_TOK_BLOCK;
                const char *xt = x + (size_t)t0 * xs;
                float *yt = y + (size_t)t0 * ys + r0;
                qv_b32_sums(kind, xt, xs, tn, b0, kb, neg, dy);
                if (nr > QV_LANES)
                    qv_b32_tokens(2, pack, kb, xt, xs, tn, b0, neg, dy, yt, ys, m, b0 == 0);
                else
                    qv_b32_tokens(1, pack, kb, xt, xs, tn, b0, neg, dy, yt, ys, m, b0 == 0);
            }
        }
    }
    free(pack);
    return 0;
}

/* ---- k-quants and iq4_xs times q8_K activations --------------------------------------------------- */

enum { QV_IQ4XS = QX_Q6K + 1 };

/* Values sharing one multiplier: 32 for q4_K, q5_K and iq4_xs, 16 for the others. */
#define QV_GROUP(kind) ((kind) == QX_Q4K || (kind) == QX_Q5K || (kind) == QV_IQ4XS ? 32 : 16)
/* The bsums term: the mins' own FMA step (q2_K, q4_K, q5_K), or the offset, part of isum. */
#define QV_ASYM(kind) ((kind) == QX_Q2K || (kind) == QX_Q4K || (kind) == QX_Q5K)
#define QV_KQ_CHUNK (QV_CHUNK / Q_QK_K)

typedef struct {
    __m512i code[Q_QK_K / 4]; /* values 4k..4k+3 of row l in lane l, unsigned */
    __m512i mul[16];          /* int32 multiplier of group g (16 groups of 16 or 8 of 32 values) */
    __m512i pair[8];          /* int16 pair for bsums 2j, 2j+1: the mins, or -off times the multipliers */
    __m512 d, dmin;           /* 0 past the last row; dmin 0 without mins */
} qv_kq;

/* Super-block b of the nr (<= 16) rows at w, ws bytes apart, repacked: each row decoded with
 * dot_x86.h's helpers into a row of codes and int16 multipliers, then turned to lanes. */
QG_INLINE void qv_kq_pack(int kind, size_t bsize, const char *w, size_t ws, int nr, int b, qv_kq *out)
{
    _Alignas(64) uint8_t codes[QV_LANES][Q_QK_K];
    _Alignas(64) int16_t sc[QV_LANES][16], mn[QV_LANES][16];
    _Alignas(64) float d[QV_LANES], dmin[QV_LANES];
    _Alignas(64) int32_t mt[16][QV_LANES], pt[8][QV_LANES];
    /* code - level: what the bsums term takes out */
    const int off = kind == QX_Q3K ? 4 : kind == QX_Q6K ? 32 : kind == QV_IQ4XS ? 128 : 0;
    const int ng = Q_QK_K / QV_GROUP(kind);
    memset(sc, 0, sizeof sc);
    memset(mn, 0, sizeof mn);
    for (int l = 0; l < QV_LANES; l++) {
        d[l] = dmin[l] = 0;
        if (l >= nr) {
            memset(codes[l], 0, sizeof codes[l]);
            continue;
        }
        const char *blk = w + (size_t)l * ws + (size_t)b * bsize;
        if (kind == QV_IQ4XS) {
            const block_iq4_xs *x = (const block_iq4_xs *)blk;
            const __m256i table = qx_iq4_table();
            for (int ib = 0; ib < 8; ib++)
                _mm256_store_si256((__m256i *)(codes[l] + 32 * ib),
                                   _mm256_xor_si256(_mm256_shuffle_epi8(table, qx_nibbles32(x->qs + 16 * ib)),
                                                    _mm256_set1_epi8((char)0x80)));
            _mm_store_si128((__m128i *)sc[l], qx_iq4_xs_scales(x));
            d[l] = qx_h2f(x->d);
        } else {
            const qx_kq_head h = qx_kq_head_get(kind, blk);
            for (int c = 0; c < 8; c++)
                _mm256_store_si256((__m256i *)(codes[l] + 32 * c), qx_kq_run(kind, blk, c));
            _mm256_store_si256((__m256i *)sc[l], h.sc);
            _mm256_store_si256((__m256i *)mn[l], h.mn);
            d[l] = h.d, dmin[l] = h.dmin;
        }
    }
    for (int j = 0; j < Q_QK_K / 64; j++) {
        __m512i v[QV_LANES];
        for (int l = 0; l < QV_LANES; l++)
            v[l] = _mm512_load_si512(codes[l] + 64 * j);
        qv_transpose16(v);
        for (int i = 0; i < QV_LANES; i++)
            out->code[16 * j + i] = v[i];
    }
    for (int l = 0; l < QV_LANES; l++) {
        /* iq4_xs keeps its 8 multipliers in order; q4_K/q5_K's are doubled into 16 groups. */
        for (int g = 0; g < ng; g++)
            mt[g][l] = kind == QV_IQ4XS || ng == 16 ? sc[l][g] : sc[l][2 * g];
        for (int j = 0; j < 8; j++) {
            /* Groups 2j and 2j + 1: their mins, or -off times their multipliers (iq4_xs: group j's
             * multiplier covers both). */
            int lo, hi;
            if (QV_ASYM(kind))
                lo = mn[l][2 * j], hi = mn[l][2 * j + 1];
            else if (kind == QV_IQ4XS)
                lo = hi = -off * sc[l][j];
            else
                lo = -off * sc[l][2 * j], hi = -off * sc[l][2 * j + 1];
            pt[j][l] = (int32_t)((uint32_t)(uint16_t)lo | (uint32_t)(uint16_t)hi << 16);
        }
    }
    for (int g = 0; g < ng; g++)
        out->mul[g] = _mm512_load_si512(mt[g]);
    for (int j = 0; j < 8; j++)
        out->pair[j] = _mm512_load_si512(pt[j]);
    out->d = _mm512_load_ps(d);
    out->dmin = _mm512_load_ps(dmin);
}

/* Σ_j pair_j · (bsums 2j, 2j+1) of one token, added to acc. */
QG_INLINE __m512i qv_bsums_term(__m512i acc, const qv_kq *p, const block_q8_K *yb)
{
    QG_UNROLL
    for (int j = 0; j < 8; j++)
        acc = _mm512_dpwssd_epi32(acc, p->pair[j], qv_bcast32(yb->bsums + 2 * j));
    return acc;
}

/* RN tokens at x times NG lane groups' kb repacked super-blocks (from block b0). */
QG_INLINE void qv_kq_tile(int kind, int NG, int RN, const qv_kq (*wp)[QV_NG], int kb, const char *x, size_t xs,
                          int b0, float *y, size_t ys, const __mmask16 *m, int first)
{
    const int G = QV_GROUP(kind) / 4; /* vpdpbusd per group */
    __m512 s[QV_NG][QV_K_RN];
    QG_UNROLL
    for (int g = 0; g < NG; g++)
        QG_UNROLL
        for (int t = 0; t < RN; t++)
            s[g][t] = qv_chain_load(y + (size_t)t * ys + QV_LANES * g, m[g], first);
    for (int b = 0; b < kb; b++) {
        const block_q8_K *yb[QV_K_RN];
        __m512i isum[QV_NG][QV_K_RN];
        QG_UNROLL
        for (int t = 0; t < RN; t++) {
            yb[t] = (const block_q8_K *)(x + (size_t)t * xs) + b0 + b;
            QG_UNROLL
            for (int g = 0; g < NG; g++)
                isum[g][t] = QV_ASYM(kind) ? _mm512_setzero_si512()
                                           : qv_bsums_term(_mm512_setzero_si512(), &wp[b][g], yb[t]);
        }
        for (int j = 0; j < Q_QK_K / 4 / G; j++) {
            __m512i c[QV_NG][8];
            QG_UNROLL
            for (int g = 0; g < NG; g++)
                QG_UNROLL
                for (int k = 0; k < G; k++)
                    c[g][k] = _mm512_load_si512(&wp[b][g].code[G * j + k]);
            QG_UNROLL
            for (int t = 0; t < RN; t++) {
                __m512i a[QV_NG];
                QG_UNROLL
                for (int g = 0; g < NG; g++)
                    a[g] = _mm512_setzero_si512();
                QG_UNROLL
                for (int k = 0; k < G; k++) {
                    const __m512i yk = qv_bcast32(yb[t]->qs + 4 * (G * j + k));
                    QG_UNROLL
                    for (int g = 0; g < NG; g++)
                        a[g] = _mm512_dpbusd_epi32(a[g], c[g][k], yk);
                }
                QG_UNROLL
                for (int g = 0; g < NG; g++)
                    isum[g][t] = _mm512_add_epi32(isum[g][t], _mm512_mullo_epi32(a[g], wp[b][g].mul[j]));
            }
        }
        QG_UNROLL
        for (int t = 0; t < RN; t++) {
            const __m512 dy = _mm512_set1_ps(yb[t]->d);
            QG_UNROLL
            for (int g = 0; g < NG; g++) {
                /* s = fma(d_y · d, (float)isum, s); with mins s = fma(-(d_y · dmin), (float)msum, s) */
                s[g][t] =
                    _mm512_fmadd_ps(_mm512_mul_ps(dy, wp[b][g].d), _mm512_cvtepi32_ps(isum[g][t]), s[g][t]);
                if (QV_ASYM(kind))
                    s[g][t] = _mm512_fnmadd_ps(
                        _mm512_mul_ps(dy, wp[b][g].dmin),
                        _mm512_cvtepi32_ps(qv_bsums_term(_mm512_setzero_si512(), &wp[b][g], yb[t])), s[g][t]);
            }
        }
    }
    QG_UNROLL
    for (int g = 0; g < NG; g++)
        QG_UNROLL
        for (int t = 0; t < RN; t++)
            qv_chain_store(y + (size_t)t * ys + QV_LANES * g, m[g], s[g][t]);
}

/* Every token tile of tn tokens at x through qv_kq_tile (outputs fetched ahead as in qv_b32_tokens). */
QG_INLINE void qv_kq_tokens(int kind, int NG, const qv_kq (*wp)[QV_NG], int kb, const char *x, size_t xs,
                            int tn, int b0, float *y, size_t ys, const __mmask16 *m, int first)
{
    int t = 0;
    for (; t + QV_K_RN <= tn; t += QV_K_RN) {
        if (t + 2 * QV_K_RN <= tn)
            qv_prefetch_out(NG, QV_K_RN, y + (size_t)(t + QV_K_RN) * ys, ys);
        qv_kq_tile(kind, NG, QV_K_RN, wp, kb, x + (size_t)t * xs, xs, b0, y + (size_t)t * ys, ys, m, first);
    }
    for (; t < tn; t++)
        qv_kq_tile(kind, NG, 1, wp, kb, x + (size_t)t * xs, xs, b0, y + (size_t)t * ys, ys, m, first);
}

/* 0, or -1 when the repacking buffer cannot be had (nothing written then). */
QG_INLINE int qv_kq_gemm(int kind, size_t bsize, int n, int64_t nrows, int ntok, const char *w, size_t ws,
                         const char *x, size_t xs, float *y, size_t ys)
{
    const int nb = n / Q_QK_K, cb = nb < QV_KQ_CHUNK ? nb : QV_KQ_CHUNK;
    qv_kq(*pack)[QV_NG] = aligned_alloc(64, sizeof *pack * (size_t)cb);
    if (!pack)
        return -1;
    for (int64_t r0 = 0; r0 < nrows; r0 += QV_TILE_ROWS) {
        const int nr = nrows - r0 < QV_TILE_ROWS ? (int)(nrows - r0) : QV_TILE_ROWS;
        const __mmask16 m[QV_NG] = {qv_row_mask(nr), qv_row_mask(nr - QV_LANES)};
        for (int b0 = 0; b0 < nb; b0 += cb) {
            const int kb = nb - b0 < cb ? nb - b0 : cb;
            for (int b = 0; b < kb; b++)
                for (int g = 0; g < QV_NG && QV_LANES * g < nr; g++)
                    qv_kq_pack(kind, bsize, w + (size_t)(r0 + QV_LANES * g) * ws, ws, nr - QV_LANES * g, b0 + b,
                               &pack[b][g]);
            if (nr > QV_LANES)
                qv_kq_tokens(kind, 2, pack, kb, x, xs, ntok, b0, y + r0, ys, m, b0 == 0);
            else
                qv_kq_tokens(kind, 1, pack, kb, x, xs, ntok, b0, y + r0, ys, m, b0 == 0);
        }
    }
    free(pack);
    return 0;
}

/* ---- drivers ------------------------------------------------------------------------------------ */

/* Rows in lanes when enough tokens share the repacking and the gathers' int32 offsets (15 row
 * strides) fit; otherwise gemm_x86.h's tiles. */
#define QV_DRIVER(T, IMPL, ...)                                                                              \
    static void QX(q_gemm_vnni_##T)(int n, int64_t nrows, int ntok, const void *w, size_t ws, const void *x, \
                                    size_t xs, float *y, size_t ys)                                          \
    {                                                                                                        \
        if (ntok < QV_MIN_TOK || nrows <= 0 || n <= 0 || ws > (size_t)INT_MAX / QV_LANES ||                  \
            IMPL(__VA_ARGS__, n, nrows, ntok, w, ws, x, xs, y, ys))                                          \
            QX(q_gemm_##T)(n, nrows, ntok, w, ws, x, xs, y, ys);                                             \
    }

QV_DRIVER(q8_0, qv_b32_gemm, QG_Q8_0)
QV_DRIVER(q4_0, qv_b32_gemm, QG_Q4_0)
QV_DRIVER(q2_K, qv_kq_gemm, QX_Q2K, sizeof(block_q2_K))
QV_DRIVER(q3_K, qv_kq_gemm, QX_Q3K, sizeof(block_q3_K))
QV_DRIVER(q4_K, qv_kq_gemm, QX_Q4K, sizeof(block_q4_K))
QV_DRIVER(q5_K, qv_kq_gemm, QX_Q5K, sizeof(block_q5_K))
QV_DRIVER(q6_K, qv_kq_gemm, QX_Q6K, sizeof(block_q6_K))
QV_DRIVER(iq4_xs, qv_kq_gemm, QV_IQ4XS, sizeof(block_iq4_xs))

#define QV_ENTRY(T) {.gemm = QX(q_gemm_vnni_##T), .vec_dot = QX(q_vec_dot_gemm_##T)}

#endif
