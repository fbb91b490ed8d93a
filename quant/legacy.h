/* legacy.h — scalar reference kernels of ggml's block-32 types (q4_0 q4_1 q5_0 q5_1 q8_0 q8_1) and
 * of the non-linear 4-bit types (iq4_nl, iq4_xs); the latter live in iq4.c.
 *
 * Contract: these functions DEFINE the bytes. q_quantize_<t> equals ggml's quantize_<t> at commit
 * c392e50 compiled for baseline x86-64 without FMA (what ggml_quantize_chunk calls), byte for byte,
 * with and without importance weights; q_dequantize_row_<t> equals ggml's dequantize_row_<t> float
 * for float. The only deliberate difference: where ggml's iq4 scale search divides 0 by 0 (a block
 * whose importance weights are all zero) and stores a NaN scale, qkit stores 0.
 * Inputs are trusted: finite floats, k and n_per_row multiples of the block size (32, or 256 for
 * iq4_xs), imatrix NULL or n_per_row floats >= 0. Validation is the dispatch layer's job (quant.h).
 * Buffers: src [nrows][n_per_row] floats, dst nrows * q_row_size(type, n_per_row) bytes.
 * Dot products follow ggml's pairing and its generic C path: integer sums per block, then scaled. */
#ifndef QKIT_QUANT_LEGACY_H
#define QKIT_QUANT_LEGACY_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* Unweighted quantization of k values (ggml's quantize_row_<t>_ref). For iq4_nl/iq4_xs this is
 * q_quantize_<t>(x, y, 1, k, NULL), which is what ggml's quantize_iq4_* does without weights. */
void q_quantize_row_q4_0_ref(const float *x, void *y, int64_t k);
void q_quantize_row_q4_1_ref(const float *x, void *y, int64_t k);
void q_quantize_row_q5_0_ref(const float *x, void *y, int64_t k);
void q_quantize_row_q5_1_ref(const float *x, void *y, int64_t k);
void q_quantize_row_q8_0_ref(const float *x, void *y, int64_t k);
void q_quantize_row_q8_1_ref(const float *x, void *y, int64_t k);
void q_quantize_row_iq4_nl_ref(const float *x, void *y, int64_t k);
void q_quantize_row_iq4_xs_ref(const float *x, void *y, int64_t k);

/* nrows rows of n_per_row values; imatrix [n_per_row] or NULL. Returns the bytes written.
 * q8_0 and q8_1 ignore imatrix (ggml has no weighted q8; q8_1 is an activation format). */
size_t q_quantize_q4_0(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
size_t q_quantize_q4_1(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
size_t q_quantize_q5_0(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
size_t q_quantize_q5_1(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
size_t q_quantize_q8_0(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
size_t q_quantize_q8_1(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
size_t q_quantize_iq4_nl(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
size_t q_quantize_iq4_xs(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);

/* k values out of k / block_size blocks. q8_1 has no dequantizer in ggml (it is an activation
 * format only); qkit's is d * q, which is what its dot product assumes. */
void q_dequantize_row_q4_0(const void *x, float *y, int64_t k);
void q_dequantize_row_q4_1(const void *x, float *y, int64_t k);
void q_dequantize_row_q5_0(const void *x, float *y, int64_t k);
void q_dequantize_row_q5_1(const void *x, float *y, int64_t k);
void q_dequantize_row_q8_0(const void *x, float *y, int64_t k);
void q_dequantize_row_q8_1(const void *x, float *y, int64_t k);
void q_dequantize_row_iq4_nl(const void *x, float *y, int64_t k);
void q_dequantize_row_iq4_xs(const void *x, float *y, int64_t k);

/* *s = dot of n values: x of the weight type, y of its activation type (ggml's vec_dot_type). */
void q_vec_dot_q4_0_q8_0(int n, float *s, const void *x, const void *y);
void q_vec_dot_q4_1_q8_1(int n, float *s, const void *x, const void *y);
void q_vec_dot_q5_0_q8_0(int n, float *s, const void *x, const void *y);
void q_vec_dot_q5_1_q8_1(int n, float *s, const void *x, const void *y);
void q_vec_dot_q8_0_q8_0(int n, float *s, const void *x, const void *y);
void q_vec_dot_iq4_nl_q8_0(int n, float *s, const void *x, const void *y);
void q_vec_dot_iq4_xs_q8_K(int n, float *s, const void *x, const void *y);

/* The 16 levels of iq4_nl/iq4_xs (ggml's kvalues_iq4nl), for SIMD variants' lookup tables. */
extern const int8_t q_iq4_levels[16];

/* Index of the level nearest to v; an exact midpoint goes to the upper level, values beyond the
 * ends to the end levels, NaN to 15 (all as ggml's best_index_int8). SIMD variants must agree. */
int q_iq4_nearest_level(float v);

/* ---- Helpers shared by legacy.c and iq4.c (not API; prefixed to stay out of other headers' way) */

/* The value of largest magnitude, with its sign; the first one wins a tie (ggml's scan order
 * decides the sign of d, hence the bytes). 0 for an all-zero block. */
static inline float q_lg_signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++) {
        if (amax < fabsf(x[i])) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    return max;
}

/* 32 codes of 4 bits into 16 bytes: code j in the low nibble of byte j, code j+16 in its high
 * nibble (the layout of q4_0, q4_1, iq4_nl and each 32-group of iq4_xs). */
static inline void q_lg_pack_nibbles(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
}

#endif
