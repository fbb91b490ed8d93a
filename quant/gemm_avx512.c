/* gemm_avx512.c — AVX-512 tiled matrix products (gemm_x86.h). Float tiles use 16-lane registers;
 * the integer tiles stay 256 bits wide (VNNI multiply-adds) but have 32 registers, so the tiles
 * are larger than AVX2's. The table is data only; off x86 it is empty. */
#if defined(__x86_64__) || defined(__i386__)

#define QX_SUFFIX avx512
#define QG_F_RM 4
#define QG_F_RN 6
#define QG_B_RM 4
#define QG_B_RN 4
#define QG_K_RM 2
#define QG_K_RN 4
#include "gemm_x86.h"

const q_kernels q_kernels_avx512_gemm[Q_TYPE_COUNT] = QG_TABLE;

#else

#include "quant.h"

const q_kernels q_kernels_avx512_gemm[Q_TYPE_COUNT] = {{0}};

#endif
