/* dot_avx2.c — AVX2 (+FMA, F16C) dequantizers and dot products: the 256-bit kernels of
 * dot_x86.h compiled for AVX2. The table is data only, so nothing here runs before the CPU check;
 * NULL entries fall back to the scalar reference. Off x86 the file compiles to an empty table. */
#if defined(__x86_64__) || defined(__i386__)

#define QX_SUFFIX avx2
#include "dot_x86.h"

const q_kernels q_kernels_avx2_dot[Q_TYPE_COUNT] = {
    [Q_TYPE_F32] = {NULL, NULL, NULL, q_vec_dot_f32_f32_avx2, -1},
    [Q_TYPE_F16] = QX_ENTRY(f16, f32),
    [Q_TYPE_BF16] = QX_ENTRY(bf16, f32),
    [Q_TYPE_Q4_0] = QX_ENTRY(q4_0, q8_0),
    [Q_TYPE_Q4_1] = QX_ENTRY(q4_1, q8_1),
    [Q_TYPE_Q5_0] = QX_ENTRY(q5_0, q8_0),
    [Q_TYPE_Q5_1] = QX_ENTRY(q5_1, q8_1),
    [Q_TYPE_Q8_0] = QX_ENTRY(q8_0, q8_0),
    [Q_TYPE_Q2_K] = QX_ENTRY(q2_K, q8_K),
    [Q_TYPE_Q3_K] = QX_ENTRY(q3_K, q8_K),
    [Q_TYPE_Q4_K] = QX_ENTRY(q4_K, q8_K),
    [Q_TYPE_Q5_K] = QX_ENTRY(q5_K, q8_K),
    [Q_TYPE_Q6_K] = QX_ENTRY(q6_K, q8_K),
    [Q_TYPE_IQ4_NL] = QX_ENTRY(iq4_nl, q8_0),
    [Q_TYPE_IQ4_XS] = QX_ENTRY(iq4_xs, q8_K),
};

#else

#include "quant.h"

const q_kernels q_kernels_avx2_dot[Q_TYPE_COUNT] = {{0}};

#endif
