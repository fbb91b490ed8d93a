/* awq.c — see awq.h. */
#include "awq.h"

#include <string.h>

static const int ORDER[8] = {0, 2, 4, 6, 1, 3, 5, 7};
static const int REV[8] = {0, 4, 1, 5, 2, 6, 3, 7};

static uint32_t rd32(const void *p, int64_t i)
{
    const uint8_t *b = (const uint8_t *)p + 4 * i;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static int32_t as_i32(uint32_t u)
{
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

void awq_gemm_pack(const uint8_t *q, const uint8_t *z, int64_t out, int64_t in, int64_t g,
                   int32_t *qweight, int32_t *qzeros)
{
    const int64_t ow = out / 8, ng = in / g;
    for (int64_t i = 0; i < in; i++)
        for (int64_t j = 0; j < ow; j++) {
            uint32_t word = 0;
            for (int k = 0; k < 8; k++)
                word |= (uint32_t)(q[(8 * j + ORDER[k]) * in + i] & 15) << (4 * k);
            qweight[i * ow + j] = as_i32(word);
        }
    for (int64_t gi = 0; gi < ng; gi++)
        for (int64_t j = 0; j < ow; j++) {
            uint32_t word = 0;
            for (int k = 0; k < 8; k++)
                word |= (uint32_t)(z[(8 * j + ORDER[k]) * ng + gi] & 15) << (4 * k);
            qzeros[gi * ow + j] = as_i32(word);
        }
}

void awq_gemm_row(const void *qweight, const void *qzeros, const float *scales, int64_t out,
                  int64_t in, int64_t g, int64_t o, float *w)
{
    const int64_t ow = out / 8, j = o / 8, sh = 4 * REV[o % 8];
    for (int64_t i = 0; i < in; i++) {
        const int64_t gi = i / g;
        const int q = (int)(rd32(qweight, i * ow + j) >> sh & 15);
        const int z = (int)(rd32(qzeros, gi * ow + j) >> sh & 15);
        w[i] = (float)(q - z) * scales[gi * out + o];
    }
}

void ct_pack(const uint8_t *q, const uint8_t *z, int64_t out, int64_t in, int64_t g,
             int32_t *packed, int32_t *zero_point)
{
    const int64_t iw = (in + 7) / 8, ng = in / g, orows = (out + 7) / 8;
    for (int64_t o = 0; o < out; o++)
        for (int64_t j = 0; j < iw; j++) {
            uint32_t word = 0;
            for (int k = 0; k < 8 && 8 * j + k < in; k++) /* q − 8 stored + 8 */
                word |= (uint32_t)(q[o * in + 8 * j + k] & 15) << (4 * k);
            packed[o * iw + j] = as_i32(word);
        }
    for (int64_t r = 0; r < orows; r++)
        for (int64_t gi = 0; gi < ng; gi++) {
            uint32_t word = 0;
            for (int k = 0; k < 8 && 8 * r + k < out; k++)
                word |= (uint32_t)(z[(8 * r + k) * ng + gi] & 15) << (4 * k);
            zero_point[r * ng + gi] = as_i32(word);
        }
}

void ct_row(const void *packed, const void *zero_point, const float *scales, int64_t out, int64_t in,
            int64_t g, int64_t o, float *w)
{
    const int64_t iw = (in + 7) / 8, ng = in / g;
    (void)out;
    for (int64_t i = 0; i < in; i++) {
        const int64_t gi = i / g;
        const int q = (int)(rd32(packed, o * iw + i / 8) >> (4 * (i % 8)) & 15) - 8;
        const int zp = zero_point ? (int)(rd32(zero_point, (o / 8) * ng + gi) >> (4 * (o % 8)) & 15) - 8 : 0;
        w[i] = (float)(q - zp) * scales[o * ng + gi];
    }
}
