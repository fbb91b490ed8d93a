/* awq.h — the byte layouts of 4-bit group-quantized linears in Hugging Face checkpoints: AutoAWQ's
 * GEMM format and compressed-tensors' pack-quantized format (what vLLM loads). Bytes only: the
 * quantization itself is calib/awq.h's.
 *
 * AutoAWQ GEMM (casper-hansen/AutoAWQ awq/modules/linear/gemm.py, awq/utils/packing_utils.py), for
 * W [out][in] with groups of g input columns, q in [0, 15], zero z in [0, 15]:
 *   qweight int32 [in][out/8]: nibble k (bits 4k..4k+3) of qweight[i][j] holds q[8j + ORDER[k]][i],
 *                              ORDER = {0, 2, 4, 6, 1, 3, 5, 7};
 *   qzeros  int32 [in/g][out/8]: the same packing of z[o][i/g];
 *   scales  f16   [in/g][out];  W[o][i] = (q − z) · scale.
 * compressed-tensors pack-quantized (compressors/pack_quantized), signed int4 stored + 8:
 *   weight_packed     int32 [out][ceil(in/8)]: nibble k of word j = q[o][8j + k] + 8;
 *   weight_zero_point int32 [ceil(out/8)][in/g]: nibble k of word [r][gi] = zp[8r + k][gi] + 8;
 *   weight_scale      f16/bf16 [out][in/g]; weight_shape int64 [2] = {out, in};
 *   W[o][i] = (q − zp) · scale.  (q_ct = q_awq − 8 and zp_ct = z_awq − 8: one quantization, two
 *   layouts.) */
#ifndef QKIT_FORMATS_AWQ_H
#define QKIT_FORMATS_AWQ_H

#include <stdint.h>

/* q [out][in], z [out][in/g] (values 0..15) → qweight [in][out/8], qzeros [in/g][out/8]. out % 8 == 0. */
void awq_gemm_pack(const uint8_t *q, const uint8_t *z, int64_t out, int64_t in, int64_t g,
                   int32_t *qweight, int32_t *qzeros);
/* Row o of W from the GEMM layout: w [in]. scales as f32 [in/g][out]. qweight/qzeros are raw
 * little-endian int32 bytes (possibly unaligned). */
void awq_gemm_row(const void *qweight, const void *qzeros, const float *scales, int64_t out,
                  int64_t in, int64_t g, int64_t o, float *w);

/* q [out][in], z [out][in/g] (values 0..15, the AutoAWQ convention) → weight_packed
 * [out][ceil(in/8)], weight_zero_point [ceil(out/8)][in/g] (stored + 8, i.e. q itself). */
void ct_pack(const uint8_t *q, const uint8_t *z, int64_t out, int64_t in, int64_t g,
             int32_t *packed, int32_t *zero_point);
/* Row o of W from the pack-quantized layout: scales f32 [out][in/g]; zero_point may be NULL
 * (symmetric: zp 0). */
void ct_row(const void *packed, const void *zero_point, const float *scales, int64_t out, int64_t in,
            int64_t g, int64_t o, float *w);

#endif
