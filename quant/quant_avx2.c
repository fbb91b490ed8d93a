/* quant_avx2.c — avx2 quantizers (bit-exact with the scalar reference).
 * Compiled with avx2 flags; the table below is data only, so nothing here runs before the CPU
 * check. NULL entries fall back to the scalar reference. */
#include "quant.h"

const q_kernels q_kernels_avx2_quant[Q_TYPE_COUNT] = {{0}};
