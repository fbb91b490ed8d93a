/* dot_avx512.c — AVX-512 (F, BW, VL, DQ, VNNI) dequantizers and dot products.
 *
 * The kernels of dot_x86.h compiled with these flags use VNNI for their integer multiply-adds
 * (one instruction for maddubs + madd + add) and a mask register for the q5 high bits. Full
 * 512-bit registers are used only where they measured faster on the development machine (an
 * AMD Zen 4, which splits 512-bit operations in two halves): the f16 and bf16 dots. The f32 dot
 * stays 256 bits wide (it is bound by cache bandwidth, and was slower with 512-bit loads), and
 * two-blocks-per-register versions of the block-32 dots were no faster than the VNNI 256-bit ones.
 * The table is data only, so nothing here runs before the CPU check; NULL entries fall back to
 * the scalar reference. Off x86 the file compiles to an empty table. */
#if defined(__x86_64__) || defined(__i386__)

#define QX_SUFFIX avx512
#include "dot_x86.h"

/* ---- the table ---------------------------------------------------------------------------------- */

/* f16, bf16 and f32 dots are the tiled products' (gemm_x86.h, 16-lane registers). */
const q_kernels q_kernels_avx512_dot[Q_TYPE_COUNT] =
    QX_TABLE(QX_DEQ(f16), QX_DEQ(bf16));

#else

#include "quant.h"

const q_kernels q_kernels_avx512_dot[Q_TYPE_COUNT] = {{0}};

#endif
