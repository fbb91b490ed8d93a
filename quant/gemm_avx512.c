/* gemm_avx512.c — AVX-512 matrix products. Float weights use gemm_x86.h's tiles with 16-lane
 * registers; the quantized types gemm_vnni.h's products with 16 weight rows per register, which
 * fall back to gemm_x86.h's integer tiles (256 bits wide, VNNI multiply-adds, larger tiles than
 * AVX2's with 32 registers) for few tokens. The table is data only; off x86 it is empty. */
#if defined(__x86_64__) || defined(__i386__)

#define QX_SUFFIX avx512
#define QG_F_RM 4
#define QG_F_RN 6
#define QG_B_RM 4
#define QG_B_RN 4
#define QG_K_RM 2
#define QG_K_RN 4
#include "gemm_vnni.h"

const q_kernels q_kernels_avx512_gemm[Q_TYPE_COUNT] = {
    [Q_TYPE_F32] = QG_ENTRY(f32),   [Q_TYPE_F16] = QG_ENTRY(f16),   [Q_TYPE_BF16] = QG_ENTRY(bf16),
    [Q_TYPE_Q8_0] = QV_ENTRY(q8_0), [Q_TYPE_Q4_0] = QV_ENTRY(q4_0), [Q_TYPE_Q2_K] = QV_ENTRY(q2_K),
    [Q_TYPE_Q3_K] = QV_ENTRY(q3_K), [Q_TYPE_Q4_K] = QV_ENTRY(q4_K), [Q_TYPE_Q5_K] = QV_ENTRY(q5_K),
    [Q_TYPE_Q6_K] = QV_ENTRY(q6_K), [Q_TYPE_IQ4_XS] = QV_ENTRY(iq4_xs),
};

#else

#include "quant.h"

const q_kernels q_kernels_avx512_gemm[Q_TYPE_COUNT] = {{0}};

#endif
