/* blocks.h — block structs that mirror ggml's on-disk bytes, one per quantized type.
 *
 * Contract: sizeof(block) equals the type table's type_size (quant/types.c); the _Static_asserts
 * below fail the build otherwise. Half-precision fields are raw IEEE binary16 bits (uint16_t),
 * converted with quant/fp16.h. Little-endian hosts only (as ggml). */
#ifndef QKIT_QUANT_BLOCKS_H
#define QKIT_QUANT_BLOCKS_H

#include <stdint.h>

#include "types.h"

#define Q_QK4_0 32
#define Q_QK4_1 32
#define Q_QK5_0 32
#define Q_QK5_1 32
#define Q_QK8_0 32
#define Q_QK8_1 32
#define Q_QK4_NL 32
#define Q_K_SCALE_SIZE 12

typedef struct { uint16_t d; uint8_t qs[Q_QK4_0 / 2]; } block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[Q_QK4_1 / 2]; } block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[Q_QK5_0 / 2]; } block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[Q_QK5_1 / 2]; } block_q5_1;
typedef struct { uint16_t d; int8_t qs[Q_QK8_0]; } block_q8_0;
typedef struct { uint16_t d, s; int8_t qs[Q_QK8_1]; } block_q8_1; /* s = d * sum(qs) */
typedef struct { uint16_t d; uint8_t qs[Q_QK4_NL / 2]; } block_iq4_nl;

typedef struct {
    uint8_t scales[Q_QK_K / 16]; /* 4-bit scales (low) and mins (high) */
    uint8_t qs[Q_QK_K / 4];
    uint16_t d, dmin;
} block_q2_K;

typedef struct {
    uint8_t hmask[Q_QK_K / 8];
    uint8_t qs[Q_QK_K / 4];
    uint8_t scales[12]; /* 16 scales of 6 bits */
    uint16_t d;
} block_q3_K;

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[Q_K_SCALE_SIZE]; /* 8 scales and 8 mins of 6 bits */
    uint8_t qs[Q_QK_K / 2];
} block_q4_K;

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[Q_K_SCALE_SIZE];
    uint8_t qh[Q_QK_K / 8];
    uint8_t qs[Q_QK_K / 2];
} block_q5_K;

typedef struct {
    uint8_t ql[Q_QK_K / 2];
    uint8_t qh[Q_QK_K / 4];
    int8_t scales[Q_QK_K / 16];
    uint16_t d;
} block_q6_K;

typedef struct {
    float d;
    int8_t qs[Q_QK_K];
    int16_t bsums[Q_QK_K / 16]; /* sums of groups of 16 qs, for the k-quant dot products */
} block_q8_K;

typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[Q_QK_K / 64];
    uint8_t qs[Q_QK_K / 2];
} block_iq4_xs;

_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");
_Static_assert(sizeof(block_q8_1) == 36, "block_q8_1 size");
_Static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl size");
_Static_assert(sizeof(block_q2_K) == 84, "block_q2_K size");
_Static_assert(sizeof(block_q3_K) == 110, "block_q3_K size");
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K size");
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");
_Static_assert(sizeof(block_iq4_xs) == 136, "block_iq4_xs size");

#endif
