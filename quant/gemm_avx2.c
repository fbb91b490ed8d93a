/* gemm_avx2.c — AVX2 (+FMA, F16C) tiled matrix products (gemm_x86.h). With 16 vector registers
 * the tiles keep their accumulators plus one row of operands in registers: 2 rows × 2 tokens of
 * floats (each element's 16 canonical lanes take two registers), 1 × 4 for the block types and
 * the k-quants (four tokens' block totals reduce together, gemm_x86.h). The table is data only; off x86 it is empty and every type uses the vec_dot loop. */
#if defined(__x86_64__) || defined(__i386__)

#define QX_SUFFIX avx2
#define QG_F_RM 2
#define QG_F_RN 2
#define QG_B_RM 1
#define QG_B_RN 4
#define QG_K_RM 1
#define QG_K_RN 4
#include "gemm_x86.h"

const q_kernels q_kernels_avx2_gemm[Q_TYPE_COUNT] = QG_TABLE;

#else

#include "quant.h"

const q_kernels q_kernels_avx2_gemm[Q_TYPE_COUNT] = {{0}};

#endif
