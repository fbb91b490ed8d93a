/* float.h — f32, f16 and bf16 rows: conversion from and to f32, and the float dot products.
 *
 * Contract: conversions are element-wise with quant/fp16.h (round to nearest even, overflow to
 * ±Inf, NaN stays NaN, subnormals kept), so q_quantize_f16/bf16 produce ggml's bytes exactly
 * (ggml_fp32_to_fp16_row / ggml_fp32_to_bf16_row_ref). Unlike the block kernels these accept any
 * float, NaN and Inf included. Pointers to half rows must be 2-byte aligned.
 * The f32 "conversions" are copies, so that f32 fits the same kernel table as the other types.
 *
 * Dot products define their own order (ggml's SIMD paths differ among themselves): each product
 * is formed exactly in double (24+24 significant bits fit in 53), products are added in index
 * order in double, and the sum is rounded once to float. So the result is the exact dot rounded
 * to float whenever the double sum does not lose bits, and SIMD variants are compared to it within
 * a relative tolerance. */
#ifndef QKIT_QUANT_FLOAT_H
#define QKIT_QUANT_FLOAT_H

#include <stddef.h>
#include <stdint.h>

/* k floats to k values of the type (y: float[k] or uint16_t[k]). */
void q_from_float_f32(const float *x, void *y, int64_t k);
void q_from_float_f16(const float *x, void *y, int64_t k);
void q_from_float_bf16(const float *x, void *y, int64_t k);

/* k values of the type back to floats (exact: every f16 and bf16 value is a float). */
void q_dequantize_row_f32(const void *x, float *y, int64_t k);
void q_dequantize_row_f16(const void *x, float *y, int64_t k);
void q_dequantize_row_bf16(const void *x, float *y, int64_t k);

/* nrows × n_per_row floats; imatrix is ignored (accepted for the common signature). Returns the
 * bytes written: 4 or 2 per value. */
size_t q_quantize_f32(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
size_t q_quantize_f16(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);
size_t q_quantize_bf16(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix);

/* *s = Σ x[i]·y[i], i < n; x is f32, f16 or bf16 (the weights), y is f32 (the activations). */
void q_vec_dot_f32_f32(int n, float *s, const void *x, const void *y);
void q_vec_dot_f16_f32(int n, float *s, const void *x, const void *y);
void q_vec_dot_bf16_f32(int n, float *s, const void *x, const void *y);

#endif
