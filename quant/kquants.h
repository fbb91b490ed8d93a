/* kquants.h — scalar reference kernels of ggml's k-quants: q2_K q3_K q4_K q5_K q6_K (weights) and
 * q8_K (the activations their dot products take).
 *
 * Contract: these functions DEFINE the bytes. q_quantize_<t> equals ggml's quantize_<t> at commit
 * c392e50 compiled for baseline x86-64 without FMA (what ggml_quantize_chunk calls), byte for
 * byte, with and without importance weights; q_quantize_row_<t>_ref equals quantize_row_<t>_ref;
 * q_dequantize_row_<t> equals dequantize_row_<t> float for float.
 * The one deliberate difference: where ggml's weighted q2_K/q4_K/q5_K search divides 0 by 0 (a
 * super-block whose importance weights all come out 0, such as one of ~1e-30 values, whose
 * squares underflow) and stores a NaN scale, qkit stores the unweighted scale (see
 * q_make_qp_quants in kquants_search.h), which keeps the output finite.
 * Inputs are trusted: finite floats, k and n_per_row multiples of Q_QK_K (256), imatrix NULL or
 * n_per_row floats >= 0. Validation is the dispatch layer's job (quant.h).
 * Buffers: src [nrows][n_per_row] floats, dst nrows * q_row_size(type, n_per_row) bytes.
 * No global state: every function may run concurrently on disjoint outputs. */
#ifndef QKIT_QUANT_KQUANTS_H
#define QKIT_QUANT_KQUANTS_H

#include <stddef.h>
#include <stdint.h>

/* Unweighted quantization of x [k] into k / 256 blocks at y (ggml's quantize_row_<t>_ref). */
void q_quantize_row_q2_K_ref(const float *x, void *y, int64_t k);
void q_quantize_row_q3_K_ref(const float *x, void *y, int64_t k);
void q_quantize_row_q4_K_ref(const float *x, void *y, int64_t k);
void q_quantize_row_q5_K_ref(const float *x, void *y, int64_t k);
void q_quantize_row_q6_K_ref(const float *x, void *y, int64_t k);
/* q8_K: per 256 values d = max|x|/127 (sign of the largest), qs = round(x/d), and bsums, the sums
 * of each 16 qs. An all-zero block gets d = 0 and zero qs and bsums (ggml leaves its bsums
 * unwritten). */
void q_quantize_row_q8_K_ref(const float *x, void *y, int64_t k);

/* src [nrows][n_per_row] into dst [nrows][n_per_row / 256] blocks; imatrix [n_per_row] importance
 * weights or NULL. Returns the bytes written. q8_K ignores imatrix (ggml has no weighted q8_K). */
size_t q_quantize_q2_K(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
size_t q_quantize_q3_K(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
size_t q_quantize_q4_K(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
size_t q_quantize_q5_K(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
size_t q_quantize_q6_K(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
size_t q_quantize_q8_K(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);

/* y [k] out of k / 256 blocks at x. */
void q_dequantize_row_q2_K(const void *x, float *y, int64_t k);
void q_dequantize_row_q3_K(const void *x, float *y, int64_t k);
void q_dequantize_row_q4_K(const void *x, float *y, int64_t k);
void q_dequantize_row_q5_K(const void *x, float *y, int64_t k);
void q_dequantize_row_q6_K(const void *x, float *y, int64_t k);
void q_dequantize_row_q8_K(const void *x, float *y, int64_t k);

/* *s = dot of n values (a multiple of 256): x of the weight type, y q8_K. Integer sums per
 * super-block as ggml's generic C path, scaled in float once per super-block; q2_K's result is
 * ggml's bit for bit, the others round in another order than ggml's 8 float lanes and may differ
 * from it in the last bits. */
void q_vec_dot_q2_K_q8_K(int n, float *s, const void *x, const void *y);
void q_vec_dot_q3_K_q8_K(int n, float *s, const void *x, const void *y);
void q_vec_dot_q4_K_q8_K(int n, float *s, const void *x, const void *y);
void q_vec_dot_q5_K_q8_K(int n, float *s, const void *x, const void *y);
void q_vec_dot_q6_K_q8_K(int n, float *s, const void *x, const void *y);

#endif
