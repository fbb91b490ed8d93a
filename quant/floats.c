/* float.c — f32/f16/bf16 rows and float dot products; see float.h for the accumulation order. */
#include "floats.h"

#include <string.h>

#include "fp16.h"

void q_from_float_f32(const float *x, void *y, int64_t k)
{
    memmove(y, x, (size_t)k * sizeof(float));
}

void q_from_float_f16(const float *x, void *vy, int64_t k)
{
    uint16_t *y = vy;
    for (int64_t i = 0; i < k; i++)
        y[i] = q_fp32_to_fp16(x[i]);
}

void q_from_float_bf16(const float *x, void *vy, int64_t k)
{
    uint16_t *y = vy;
    for (int64_t i = 0; i < k; i++)
        y[i] = q_fp32_to_bf16(x[i]);
}

void q_dequantize_row_f32(const void *x, float *y, int64_t k)
{
    memmove(y, x, (size_t)k * sizeof(float));
}

void q_dequantize_row_f16(const void *vx, float *y, int64_t k)
{
    const uint16_t *x = vx;
    for (int64_t i = 0; i < k; i++)
        y[i] = q_fp16_to_fp32(x[i]);
}

void q_dequantize_row_bf16(const void *vx, float *y, int64_t k)
{
    const uint16_t *x = vx;
    for (int64_t i = 0; i < k; i++)
        y[i] = q_bf16_to_fp32(x[i]);
}

size_t q_quantize_f32(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    (void)imatrix;
    q_from_float_f32(src, dst, nrows * n_per_row);
    return (size_t)(nrows * n_per_row) * sizeof(float);
}

size_t q_quantize_f16(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    (void)imatrix;
    q_from_float_f16(src, dst, nrows * n_per_row);
    return (size_t)(nrows * n_per_row) * sizeof(uint16_t);
}

size_t q_quantize_bf16(const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *imatrix)
{
    (void)imatrix;
    q_from_float_bf16(src, dst, nrows * n_per_row);
    return (size_t)(nrows * n_per_row) * sizeof(uint16_t);
}

void q_vec_dot_f32_f32(int n, float *s, const void *vx, const void *vy)
{
    const float *x = vx, *y = vy;
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += (double)x[i] * (double)y[i];
    *s = (float)sum;
}

void q_vec_dot_f16_f32(int n, float *s, const void *vx, const void *vy)
{
    const uint16_t *x = vx;
    const float *y = vy;
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += (double)q_fp16_to_fp32(x[i]) * (double)y[i];
    *s = (float)sum;
}

void q_vec_dot_bf16_f32(int n, float *s, const void *vx, const void *vy)
{
    const uint16_t *x = vx;
    const float *y = vy;
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += (double)q_bf16_to_fp32(x[i]) * (double)y[i];
    *s = (float)sum;
}
