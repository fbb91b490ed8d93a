/* float.c — f32/f16/bf16 rows and float dot products; see float.h for the accumulation order. */
#include "floats.h"

#include <math.h>
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

/* Halves are read with memcpy: safetensors data may start at any byte (an odd offset is legal). */
static uint16_t half_at(const void *p, int64_t i)
{
    uint16_t h;
    memcpy(&h, (const uint8_t *)p + 2 * i, sizeof h);
    return h;
}

void q_dequantize_row_f16(const void *vx, float *y, int64_t k)
{
    for (int64_t i = 0; i < k; i++)
        y[i] = q_fp16_to_fp32(half_at(vx, i));
}

void q_dequantize_row_bf16(const void *vx, float *y, int64_t k)
{
    for (int64_t i = 0; i < k; i++)
        y[i] = q_bf16_to_fp32(half_at(vx, i));
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

/* The canonical order (quant.h): 16 partial sums, FMA per lane, zero-padded tail, a fixed tree. */
static float canon_sum16(const float p[16])
{
    float a[8], b[4], c[2];
    for (int l = 0; l < 8; l++)
        a[l] = p[l] + p[l + 8];
    for (int l = 0; l < 4; l++)
        b[l] = a[l] + a[l + 4];
    for (int l = 0; l < 2; l++)
        c[l] = b[l] + b[l + 2];
    return c[0] + c[1];
}

#define FLOAT_DOT(NAME, XT, CONV)                                                                  \
    void NAME(int n, float *s, const void *vx, const void *vy)                                     \
    {                                                                                              \
        const XT *x = vx;                                                                          \
        const float *y = vy;                                                                       \
        float p[16] = {0};                                                                         \
        for (int i0 = 0; i0 < n; i0 += 16)                                                         \
            for (int l = 0; l < 16; l++) {                                                         \
                const int i = i0 + l;                                                              \
                p[l] = fmaf(i < n ? CONV(x[i]) : 0.0f, i < n ? y[i] : 0.0f, p[l]);                 \
            }                                                                                      \
        *s = canon_sum16(p);                                                                       \
    }

static inline float conv_f32(float f) { return f; }

FLOAT_DOT(q_vec_dot_f32_f32, float, conv_f32)
FLOAT_DOT(q_vec_dot_f16_f32, uint16_t, q_fp16_to_fp32)
FLOAT_DOT(q_vec_dot_bf16_f32, uint16_t, q_bf16_to_fp32)
