/* fp8.h — the two 8-bit float formats of FP8 checkpoints (DeepSeek-V3, Qwen3-FP8: safetensors
 * dtypes F8_E4M3 and F8_E5M2) and their block-scaled dequantization.
 *
 * Formats (torch.float8_e4m3fn and torch.float8_e5m2, the OCP 8-bit float formats):
 *   e4m3fn  s eeee mmm, bias 7: normals (1 + m/8)·2^(e-7), subnormals m·2^-9 (e = 0), no
 *           infinities; s 1111 111 (0x7F, 0xFF) is NaN, so the largest finite is 0x7E = 448.
 *   e5m2    s eeeee mm, bias 15: the high byte of an IEEE binary16; subnormals m·2^-16, ±Inf at
 *           0x7C/0xFC, NaN for e = 31 with m != 0; the largest finite is 0x7B = 57344.
 *
 * Contract: decoding is exact (every value of both formats is a float) and defined by bits, not by
 * float arithmetic, so results do not depend on the ISA or the compiler. The NaN codes decode to
 * the bit patterns PyTorch's CPU conversion produces: e4m3 0x7F → 0x7FF00000 (0xFF → 0xFFF00000);
 * e5m2 s 11111 mm → sign | 0x7FC00000 | mm << 21 (the binary16 NaN, made quiet).
 * The tables are constant data built by the compiler: nothing to initialise, safe from any thread.
 *
 * q_fp32_to_fp8_e4m3 is PyTorch's float → float8_e4m3fn cast on the CPU
 * (c10::detail::fp8e4m3fn_from_fp32_value): round to nearest, ties to even, subnormals kept; it
 * does NOT saturate. A magnitude that rounds past 448 — anything above 464, the midpoint between
 * 448 and the would-be 480, and ±Inf — becomes NaN with its sign (0x7F or 0xFF); 464 itself ties
 * to 448 (even mantissa). NaN becomes 0x7F or 0xFF by the sign bit of the input. (PyTorch's CUDA
 * cast on sm_89+ built with CUDA >= 13 uses the hardware's saturating conversion instead, which
 * turns those values into ±448; the two agree for |x| <= 464.) Producers of checkpoints scale
 * each block so that |x| <= 448, where both agree and no NaN arises. */
#ifndef QKIT_QUANT_FP8_H
#define QKIT_QUANT_FP8_H

#include <stdint.h>

typedef enum {
    Q_FP8_E4M3 = 0, /* torch.float8_e4m3fn, safetensors F8_E4M3 */
    Q_FP8_E5M2 = 1, /* torch.float8_e5m2, safetensors F8_E5M2 */
} q_fp8_kind;

float q_fp8_e4m3_to_fp32(uint8_t c);
float q_fp8_e5m2_to_fp32(uint8_t c);

/* n codes to n floats. src [n], dst [n]; the buffers must not overlap. */
void q_fp8_e4m3_to_fp32_row(const uint8_t *src, float *dst, int64_t n);
void q_fp8_e5m2_to_fp32_row(const uint8_t *src, float *dst, int64_t n);

/* float → e4m3fn, bit-exact with PyTorch's CPU cast (see above: no saturation). */
uint8_t q_fp32_to_fp8_e4m3(float x);

/* Block-scaled FP8 weights as stored in HF checkpoints: `weight` [n_rows][n_cols] (row-major,
 * [out_features][in_features]) and `weight_scale_inv` [ceil(n_rows/br)][ceil(n_cols/bc)] float32,
 * the blocks on the last row and column of the grid being partial. The value of element (r, c) is
 *     fp8(w[r][c]) * scale_inv[r / br][c / bc]
 * with one float32 multiplication (round to nearest even), which is what llama.cpp's converter
 * computes (`weight.float() * scale.repeat_interleave(...)`). A scale grid stored as bf16 or f16 is
 * converted to float32 by the caller first (exact).
 *
 * Inputs are trusted: the caller has checked the shapes and that the grid holds
 * ceil(n_rows/br) × ceil(n_cols/bc) floats. Preconditions (asserted): kind is a q_fp8_kind,
 * n_cols >= 0, br >= 1, bc >= 1, row0 >= 0, nr >= 0, and rows [row0, row0 + nr) lie in the matrix.
 *
 * q_fp8_dequant_rows writes rows [row0, row0 + nr) to out [nr][n_cols]; w and scale_inv point at
 * the whole matrix and the whole grid (row 0), not at row0. Rows are independent, so callers may
 * split a matrix across threads by rows. */
void q_fp8_dequant_rows(q_fp8_kind kind, const uint8_t *w /* [n_rows][n_cols] */,
                        const float *scale_inv /* [ceil(n_rows/br)][ceil(n_cols/bc)] */,
                        int64_t n_cols, int64_t br, int64_t bc, int64_t row0, int64_t nr,
                        float *out /* [nr][n_cols] */);

/* Element (r, c) of the same matrix, equal to the value q_fp8_dequant_rows writes for it; for
 * gathers in any order (columns, transposes, slices). */
float q_fp8_dequant_at(q_fp8_kind kind, const uint8_t *w /* [n_rows][n_cols] */,
                       const float *scale_inv /* [ceil(n_rows/br)][ceil(n_cols/bc)] */,
                       int64_t n_cols, int64_t br, int64_t bc, int64_t r, int64_t c);

#endif
