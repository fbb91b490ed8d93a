/* quant.h — the quantization API the rest of qkit uses: one kernel table per type, picked for the
 * active ISA, and row-parallel entry points that validate their input.
 *
 * Contract: q_quantize_rows() produces exactly the bytes of the scalar reference (ggml's
 * ggml_quantize_chunk) whatever the ISA and the thread count; it rejects rows whose length is
 * not a multiple of the block size and rows holding NaN/Inf (naming the row) before any work.
 * Dot products pair a weight type with its activation type as ggml does (q4_K·q8_K, q4_0·q8_0 …). */
#ifndef QKIT_QUANT_QUANT_H
#define QKIT_QUANT_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "cpu.h"
#include "status.h"
#include "types.h"

/* ggml's quantize_<t>: nrows × n_per_row floats, optional importance weights [n_per_row]. */
typedef size_t (*q_quantize_fn)(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                                const float *imatrix);
typedef void (*q_dequantize_fn)(const void *x, float *y, int64_t k);
/* Canonical summation order. Every dot product and every gemm element is computed in one order,
 * on every ISA (scalar, AVX2, AVX-512, NEON), so results are identical bit for bit across
 * instruction sets and thread counts (FMA is a single rounding everywhere; the scalar code calls
 * fmaf):
 *  - f32, f16, bf16 weights times f32: 16 partial sums p[0..15] = +0; for i0 = 0, 16, 32 … < n,
 *    p[l] = fma(w[i0 + l], x[i0 + l], p[l]) for every l, with w = x = 0 past n; then the tree
 *    a[l] = p[l] + p[l + 8] (l < 8), b[l] = a[l] + a[l + 4] (l < 4), c[l] = b[l] + b[l + 2]
 *    (l < 2), result c[0] + c[1].
 *  - quantized weights: per block, in block order, the block's exact integer sum (any order: it
 *    is exact) enters one float chain s = +0:
 *      q4_0, q5_0, q8_0, iq4_nl:  s = fma(d_w · d_y, (float)Σ level·q, s)
 *      q4_1, q5_1:                s = fma(d_w · d_y, (float)Σ code·q, s); s = fma(m_w, s_y, s)
 *      q2_K … q6_K:               s = fma(d_y · d, (float)Σ_g sc_g·Σ level·q, s); and for
 *                                 q2_K, q4_K, q5_K: s = fma(-(d_y · dmin), (float)Σ_g mn_g·bsum_g, s)
 *      iq4_xs:                    s = fma(d · d_y, (float)Σ_g (ls_g − 32)·Σ level·q, s)
 *    (halves converted to float first; d_y of q8_K is a float; each product one rounding;
 *    (float) of a total above 2^24 rounds to nearest, the same everywhere).
 * vec_dot and gemm give the same bits. Preconditions: q8_K activations carry bsums equal to the
 * sums of their 16-value groups (as from_float writes them; the x86 k-quant kernels apply the
 * q3_K/q6_K offsets through them), and the FPU rounds to nearest without flushing subnormals (the
 * default). A NaN result is NaN everywhere, but its payload is the CPU's. */
/* s = dot(x, y) over n values; x of the weight type, y of its vec_dot_type. */
typedef void (*q_vec_dot_fn)(int n, float *s, const void *x, const void *y);
/* Unweighted row quantizer, used for activations (q8_0, q8_1, q8_K) and float conversions. */
typedef void (*q_from_float_fn)(const float *x, void *y, int64_t k);
/* Matrix product: y[t * y_stride + r] = dot(w row r, x row t) for r < nrows, t < ntok, rows of n
 * values; w rows of the weight type start w_stride bytes apart, x rows of its vec_dot_type
 * x_stride bytes apart. Each element depends only on its two rows (never on nrows, ntok or the
 * position), so callers may split the work any way and get the same bits; it equals vec_dot bit
 * for bit (the canonical order above). */
typedef void (*q_gemm_fn)(int n, int64_t nrows, int ntok, const void *w, size_t w_stride,
                          const void *x, size_t x_stride, float *y /* [ntok][y_stride] */,
                          size_t y_stride);

typedef struct {
    q_quantize_fn quantize;
    q_dequantize_fn dequantize;
    q_from_float_fn from_float;
    q_vec_dot_fn vec_dot;
    int vec_dot_type;
    q_gemm_fn gemm; /* tiled where an ISA has it, else a vec_dot loop; NULL iff vec_dot is */
} q_kernels;

/* Rows per gemm call the tiled products are built for (any split gives the same bits; this one is
 * the fast one): float weights (f32, f16, bf16) share each packed chunk of the activations over a
 * group of Q_GEMM_FLOAT_ROWS rows (quant/gemm_x86.h), so that 512 tokens' activations stream from
 * L3 once per 128 rows; quantized weights: 32. */
#define Q_GEMM_FLOAT_ROWS 128
int q_gemm_rows(int type);

/* The kernels for type on the active ISA (scalar where no variant exists); NULL when qkit has
 * no kernels for the type. Borrowed, static lifetime. */
const q_kernels *q_kernels_get(int type);
/* The same for a given ISA (tests compare ISAs); falls back to scalar entry by entry. */
const q_kernels *q_kernels_get_isa(int type, q_isa isa);

/* ISA tables: data only (no code runs before the CPU check). NULL entries fall back. Quantizers,
 * dots and matrix products live in separate files (quant_<isa>.c, dot_<isa>.c, gemm_<isa>.c),
 * each with its own table. */
extern const q_kernels q_kernels_avx2_quant[Q_TYPE_COUNT];
extern const q_kernels q_kernels_avx2_dot[Q_TYPE_COUNT];
extern const q_kernels q_kernels_avx512_quant[Q_TYPE_COUNT];
extern const q_kernels q_kernels_avx512_dot[Q_TYPE_COUNT];
extern const q_kernels q_kernels_neon_dot[Q_TYPE_COUNT];
extern const q_kernels q_kernels_avx2_gemm[Q_TYPE_COUNT];
extern const q_kernels q_kernels_avx512_gemm[Q_TYPE_COUNT];

/* Quantizes nrows rows with n_threads OpenMP threads (<= 0: the OpenMP default). On a bad row,
 * returns QK_ERANGE with *bad_row set (when non-NULL) and a message naming the row. */
int q_quantize_rows(int type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                    const float *imatrix, int n_threads, int64_t *bad_row, qk_err *err);

/* Any type with a dequantizer (f32, f16, bf16 and every quantized type qkit knows) to float. */
int q_dequantize_rows(int type, const void *src, float *dst, int64_t nrows, int64_t n_per_row,
                      qk_err *err);

/* Index of the first non-finite value in x[0..n), or -1. */
int64_t q_find_nonfinite(const float *x, int64_t n);

#endif
