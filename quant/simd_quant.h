/* simd_quant.h — internal to quant/ and its tests: hooks into the ISA quantizer files.
 *
 * The quantizers themselves are reached through the kernel tables (quant.h); these expose the one
 * helper whose correctness is best shown exhaustively rather than through quantized bytes.
 * Call a variant only when q_isa_best() says the machine runs it. */
#ifndef QKIT_QUANT_SIMD_QUANT_H
#define QKIT_QUANT_SIMD_QUANT_H

#include <stdint.h>

/* idx[i] = q_iq4_nearest_level(v[i]) for i < n, computed the way the ISA's iq4 kernels do. */
void q_iq4_nearest_levels_avx2(const float *v, uint8_t *idx, int64_t n);
void q_iq4_nearest_levels_avx512(const float *v, uint8_t *idx, int64_t n);

#endif
