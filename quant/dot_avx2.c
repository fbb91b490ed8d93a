/* dot_avx2.c — AVX2 (+FMA, F16C) dequantizers and dot products: the 256-bit kernels of
 * dot_x86.h compiled for AVX2. The table is data only, so nothing here runs before the CPU check;
 * NULL entries fall back to the scalar reference. Off x86 the file compiles to an empty table. */
#if defined(__x86_64__) || defined(__i386__)

#define QX_SUFFIX avx2
#include "dot_x86.h"

const q_kernels q_kernels_avx2_dot[Q_TYPE_COUNT] =
    QX_TABLE(QX_DEQ(f16), QX_DEQ(bf16));

#else

#include "quant.h"

const q_kernels q_kernels_avx2_dot[Q_TYPE_COUNT] = {{0}};

#endif
