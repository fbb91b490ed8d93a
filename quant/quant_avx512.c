/* quant_avx512.c — AVX-512 quantizers, byte-identical to the scalar reference.
 *
 * The 16-lane vector vocabulary for simd_quant_impl.h, which holds the kernels shared with
 * quant_avx2.c. Masks are the opmask registers; the iq4 level lookup uses 32-entry two-register
 * permutes, which AVX2 lacks. Compiled with the AVX-512 F/BW/VL/DQ/VNNI flags; the table at the end
 * is data only, so nothing here runs before the CPU check (quant/cpu.h). No FMA intrinsic is used:
 * the reference multiplies, rounds, then adds. */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quant.h"

#define VL 16

typedef __m512 vf;    /* 16 floats */
typedef __m512i vi;   /* 16 int32 */
typedef __mmask16 vm; /* one bit per lane */

static inline vf vf_set(float a) { return _mm512_set1_ps(a); }
static inline vf vf_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void vf_store(float *p, vf v) { _mm512_storeu_ps(p, v); }
static inline vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vf_div(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf vf_sqrt(vf a) { return _mm512_sqrt_ps(a); }
/* a < b ? a : b and a > b ? a : b, exactly as `if (a < b)` in C (vminps/vmaxps return b on ties,
 * ±0 included, and on NaN). */
static inline vf vf_min(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf vf_max(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vf_abs(vf a) { return _mm512_abs_ps(a); }
static inline vf vf_neg(vf a) { return _mm512_xor_ps(_mm512_set1_ps(-0.0f), a); }

static inline vi vi_set(int a) { return _mm512_set1_epi32(a); }
static inline vi vi_load(const int32_t *p) { return _mm512_loadu_si512(p); }
static inline void vi_store(int32_t *p, vi v) { _mm512_storeu_si512(p, v); }
static inline vi vi_add(vi a, vi b) { return _mm512_add_epi32(a, b); }
static inline vi vi_sub(vi a, vi b) { return _mm512_sub_epi32(a, b); }
static inline vi vi_and(vi a, vi b) { return _mm512_and_si512(a, b); }
static inline vi vi_or(vi a, vi b) { return _mm512_or_si512(a, b); }
static inline vi vi_shl(vi a, int n) { return _mm512_slli_epi32(a, (unsigned)n); }
static inline vi vi_shr(vi a, int n) { return _mm512_srli_epi32(a, (unsigned)n); }
static inline vi vi_min(vi a, vi b) { return _mm512_min_epi32(a, b); }
static inline vi vi_max(vi a, vi b) { return _mm512_max_epi32(a, b); }
static inline vf vi_to_vf(vi a) { return _mm512_cvtepi32_ps(a); }
static inline vi vf_as_vi(vf a) { return _mm512_castps_si512(a); }
static inline vf vi_as_vf(vi a) { return _mm512_castsi512_ps(a); }
/* Round toward zero, as a float. */
static inline vf vf_trunc(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC); }
/* C's (int32_t)f on x86-64: truncation, 0x80000000 for NaN and out of range. */
static inline vi vf_trunc_vi(vf a) { return _mm512_cvttps_epi32(a); }
/* Sign-extends the low byte of each lane: the int8_t the C casts keep. */
static inline vi vi_sext8(vi a) { return _mm512_srai_epi32(_mm512_slli_epi32(a, 24), 24); }

static inline vm vf_gt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
static inline vm vf_lt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
static inline vm vf_ge(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
static inline vm vf_eq(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
/* C's a != b: true when unordered. */
static inline vm vf_ne(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ); }
static inline vm vf_isnan(vf a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
static inline vm vi_gt(vi a, vi b) { return _mm512_cmpgt_epi32_mask(a, b); }
static inline vm vm_and(vm a, vm b) { return (vm)(a & b); }
static inline vm vm_or(vm a, vm b) { return (vm)(a | b); }
static inline vm vm_andnot(vm a, vm b) { return (vm)(~a & b); } /* ~a & b */
static inline vm vm_none(void) { return 0; }
static inline unsigned vm_bits(vm a) { return a; }
/* m ? t : f per lane. */
static inline vf vf_sel(vm m, vf t, vf f) { return _mm512_mask_blend_ps(m, f, t); }
static inline vi vi_sel(vm m, vi t, vi f) { return _mm512_mask_blend_epi32(m, f, t); }
/* Mask of the lanes below n (0 <= n <= VL). */
static inline vm vm_first(int n) { return (vm)((1u << n) - 1u); }

/* Lane l = base[idx[l]] where m is set, 0 elsewhere. */
static inline vf vf_gather(const float *base, vi idx, vm m)
{
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, base, 4);
}

static inline float vf_hmax(vf a) { return _mm512_reduce_max_ps(a); } /* ±0 unspecified */
static inline float vf_hmin(vf a) { return _mm512_reduce_min_ps(a); }
static inline int vi_hsum(vi a) { return _mm512_reduce_add_epi32(a); }

/* The low byte of each lane to dst[0..VL). */
static inline void vi_store_u8(uint8_t *dst, vi a)
{
    _mm_storeu_si128((__m128i *)dst, _mm512_cvtepi32_epi8(a));
}

/* VL bytes, zero-extended into int32 lanes. */
static inline vi vi_load_u8(const uint8_t *p)
{
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}

/* Half precision: vcvtps2ph rounds to nearest even like q_fp32_to_fp16 and differs from it only in
 * the payload of NaNs, which simd_quant_impl.h patches. */
static inline void vf_store_f16(uint16_t *dst, vf a)
{
    _mm256_storeu_si256((__m256i *)dst, _mm512_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
}

/* The low 16 bits of each lane to dst[0..VL). */
static inline void vi_store_u16(uint16_t *dst, vi a)
{
    _mm256_storeu_si256((__m256i *)dst, _mm512_cvtepi32_epi16(a));
}

/* ---- iq4 level lookup -----------------------------------------------------------------------
 * Thirty-two buckets of width 8 over [-128, 128) hold at most one midpoint each (the midpoints
 * are at least 11.5 apart), so one two-register permute gives the count of midpoints below the
 * bucket and one compare decides the bucket's own. See simd_quant_impl.h for why this equals
 * q_iq4_nearest_level. BUCKET_MID is +inf where a bucket holds no midpoint. */
static const int32_t IQ4_BUCKET_BASE[32] = {0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7,
                                            8, 9, 9, 10, 11, 11, 12, 12, 13, 13, 14, 14, 14, 15, 15, 15};
static const float IQ4_BUCKET_MID[32] = {
    INFINITY, -115.5f, INFINITY, INFINITY, -93.5f, INFINITY, -74.f,    INFINITY,
    -57.f,    INFINITY, -42.f,   INFINITY, -28.5f, INFINITY, -16.f,    -4.5f,
    7.f,      INFINITY, 19.f,    31.5f,    INFINITY, 45.5f,  INFINITY, 61.f,
    INFINITY, 79.f,     INFINITY, INFINITY, 101.f, INFINITY, INFINITY, INFINITY};
/* The level at BUCKET_BASE and the one above it (capped at 15). */
static const float IQ4_BUCKET_LO[32] = {-127, -127, -104, -104, -104, -83, -83, -65, -65, -49, -49,
                                        -35,  -35,  -22,  -22,  -10,  1,   13,  13,  25,  38,  38,
                                        53,   53,   69,   69,   89,   89,  89,  113, 113, 113};
static const float IQ4_BUCKET_HI[32] = {-104, -104, -83, -83, -83, -65, -65, -49, -49, -35, -35,
                                        -22,  -22,  -10, -10, 1,   13,  25,  25,  38,  53,  53,
                                        69,   69,   89,  89,  113, 113, 113, 113, 113, 113};

static inline vf perm32(const float *table, vi b)
{
    return _mm512_permutex2var_ps(vf_load(table), b, vf_load(table + 16));
}

/* Bucket 0..31 of v (clamped to [-128, 127]) and, in *upper, whether v reaches its midpoint. */
static inline vi iq4_bucket(vf v, vm *upper)
{
    const vf c = vf_min(vf_max(v, vf_set(-128.f)), vf_set(127.f));
    const vi b = vf_trunc_vi(vf_add(vf_mul(c, vf_set(0.125f)), vf_set(16.f)));
    *upper = vf_ge(c, perm32(IQ4_BUCKET_MID, b));
    return b;
}

/* Index 0..15 of the nearest level; v must not be NaN (callers patch NaN lanes). */
static inline vi iq4_index_nonan(vf v)
{
    vm up;
    const vi b = iq4_bucket(v, &up);
    const vi base = _mm512_permutex2var_epi32(vi_load(IQ4_BUCKET_BASE), b, vi_load(IQ4_BUCKET_BASE + 16));
    return _mm512_mask_add_epi32(base, up, base, vi_set(1));
}

/* The nearest level's value as a float; v must not be NaN. */
static inline vf iq4_value_nonan(vf v)
{
    vm up;
    const vi b = iq4_bucket(v, &up);
    return vf_sel(up, perm32(IQ4_BUCKET_HI, b), perm32(IQ4_BUCKET_LO, b));
}

#define QS_ISA(name) name##_avx512
#include "simd_quant_impl.h"

const q_kernels q_kernels_avx512_quant[Q_TYPE_COUNT] = QS_TABLE;

#else /* other machines: an empty table, so the library builds there */
#include "quant.h"
const q_kernels q_kernels_avx512_quant[Q_TYPE_COUNT] = {{0}};
#endif
