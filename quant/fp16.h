/* fp16.h — IEEE binary16 and bfloat16 conversions, bit-exact with ggml's scalar ones.
 *
 * Contract: float→half rounds to nearest even, overflows to ±Inf, keeps NaN a NaN; float→bf16
 * rounds to nearest even and makes NaN quiet (ggml's `| 64`); subnormals are kept. */
#ifndef QKIT_QUANT_FP16_H
#define QKIT_QUANT_FP16_H

#include <stdint.h>
#include <string.h>

static inline uint32_t q_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float q_f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* The branch-free algorithm of the FP16 library (Maratyszcza), which ggml uses without F16C. */
static inline float q_fp16_to_fp32(uint16_t h)
{
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const uint32_t exp_offset = 0xE0u << 23;
    const float exp_scale = 0x1.0p-112f;
    const float normalized = q_f32_from_bits((two_w >> 4) + exp_offset) * exp_scale;
    const uint32_t magic_mask = 126u << 23;
    const float magic_bias = 0.5f;
    const float denormalized = q_f32_from_bits((two_w >> 17) | magic_mask) - magic_bias;
    const uint32_t denormalized_cutoff = 1u << 27;
    const uint32_t result = sign | (two_w < denormalized_cutoff ? q_f32_bits(denormalized)
                                                                : q_f32_bits(normalized));
    return q_f32_from_bits(result);
}

static inline uint16_t q_fp32_to_fp16(float f)
{
    const float scale_to_inf = 0x1.0p+112f;
    const float scale_to_zero = 0x1.0p-110f;
    float base = (f < 0 ? -f : f) * scale_to_inf;
    base *= scale_to_zero;
    const uint32_t w = q_f32_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u)
        bias = 0x71000000u;
    base = q_f32_from_bits((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = q_f32_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

static inline float q_bf16_to_fp32(uint16_t h) { return q_f32_from_bits((uint32_t)h << 16); }

static inline uint16_t q_fp32_to_bf16(float f)
{
    const uint32_t u = q_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

#endif
