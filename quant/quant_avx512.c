/* quant_avx512.c — avx512 quantizers (bit-exact with the scalar reference).
 * Compiled with avx512 flags; the table below is data only, so nothing here runs before the CPU
 * check. NULL entries fall back to the scalar reference. */
#include "quant.h"

const q_kernels q_kernels_avx512_quant[Q_TYPE_COUNT] = {{0}};
