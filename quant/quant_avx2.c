/* quant_avx2.c — AVX2 quantizers, byte-identical to the scalar reference.
 *
 * This file only defines the 8-lane vector vocabulary (vf/vi/vm and their operations) that
 * simd_quant_impl.h is written in; the kernels themselves are shared with quant_avx512.c through
 * that header, so the two ISAs cannot drift apart. Compiled with -mavx2 -mfma -mf16c; the table at
 * the end is data only, so nothing here runs before the CPU check (quant/cpu.h).
 * No FMA intrinsic is used anywhere: the reference multiplies, rounds, then adds. */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quant.h"

#define VL 8

typedef __m256 vf;  /* 8 floats */
typedef __m256i vi; /* 8 int32 */
typedef __m256 vm;  /* lane mask: all ones or all zeros per lane */

static inline vf vf_set(float a) { return _mm256_set1_ps(a); }
static inline vf vf_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void vf_store(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vf_div(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf vf_sqrt(vf a) { return _mm256_sqrt_ps(a); }
/* a < b ? a : b and a > b ? a : b, exactly as `if (a < b)` in C (minps/maxps return b on ties,
 * ±0 included, and on NaN). */
static inline vf vf_min(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf vf_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vf_abs(vf a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static inline vf vf_neg(vf a) { return _mm256_xor_ps(_mm256_set1_ps(-0.0f), a); }

static inline vi vi_set(int a) { return _mm256_set1_epi32(a); }
static inline vi vi_load(const int32_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline void vi_store(int32_t *p, vi v) { _mm256_storeu_si256((__m256i *)p, v); }
static inline vi vi_add(vi a, vi b) { return _mm256_add_epi32(a, b); }
static inline vi vi_sub(vi a, vi b) { return _mm256_sub_epi32(a, b); }
static inline vi vi_and(vi a, vi b) { return _mm256_and_si256(a, b); }
static inline vi vi_or(vi a, vi b) { return _mm256_or_si256(a, b); }
static inline vi vi_shl(vi a, int n) { return _mm256_slli_epi32(a, n); }
static inline vi vi_shr(vi a, int n) { return _mm256_srli_epi32(a, n); }
static inline vi vi_min(vi a, vi b) { return _mm256_min_epi32(a, b); }
static inline vi vi_max(vi a, vi b) { return _mm256_max_epi32(a, b); }
static inline vf vi_to_vf(vi a) { return _mm256_cvtepi32_ps(a); }
static inline vi vf_as_vi(vf a) { return _mm256_castps_si256(a); }
static inline vf vi_as_vf(vi a) { return _mm256_castsi256_ps(a); }
/* Round toward zero, as a float. */
static inline vf vf_trunc(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC); }
/* C's (int32_t)f on x86-64: truncation, 0x80000000 for NaN and out of range. */
static inline vi vf_trunc_vi(vf a) { return _mm256_cvttps_epi32(a); }
/* Sign-extends the low byte of each lane: the int8_t the C casts keep. */
static inline vi vi_sext8(vi a) { return _mm256_srai_epi32(_mm256_slli_epi32(a, 24), 24); }

static inline vm vf_gt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
static inline vm vf_lt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
static inline vm vf_ge(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
static inline vm vf_eq(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
/* C's a != b: true when unordered. */
static inline vm vf_ne(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_NEQ_UQ); }
static inline vm vf_isnan(vf a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
static inline vm vi_gt(vi a, vi b) { return _mm256_castsi256_ps(_mm256_cmpgt_epi32(a, b)); }
static inline vm vm_and(vm a, vm b) { return _mm256_and_ps(a, b); }
static inline vm vm_or(vm a, vm b) { return _mm256_or_ps(a, b); }
static inline vm vm_andnot(vm a, vm b) { return _mm256_andnot_ps(a, b); } /* ~a & b */
static inline vm vm_none(void) { return _mm256_setzero_ps(); }
static inline unsigned vm_bits(vm a) { return (unsigned)_mm256_movemask_ps(a); }
/* m ? t : f per lane. */
static inline vf vf_sel(vm m, vf t, vf f) { return _mm256_blendv_ps(f, t, m); }
static inline vi vi_sel(vm m, vi t, vi f)
{
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(f), _mm256_castsi256_ps(t), m));
}
/* Mask of the lanes below n (0 <= n <= VL). */
static inline vm vm_first(int n)
{
    return vi_gt(vi_set(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Lane l = base[idx[l]] where m is set, 0 elsewhere. */
static inline vf vf_gather(const float *base, vi idx, vm m)
{
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base, idx, m, 4);
}

static inline float vf_hmax(vf a) /* plain max of 8 non-NaN lanes; ±0 unspecified */
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline float vf_hmin(vf a)
{
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline int vi_hsum(vi a)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* The low byte of each lane to dst[0..VL). */
static inline void vi_store_u8(uint8_t *dst, vi a)
{
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i s = _mm256_shuffle_epi8(a, pick);
    const int lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(s));
    const int hi = _mm_cvtsi128_si32(_mm256_extracti128_si256(s, 1));
    memcpy(dst, &lo, 4);
    memcpy(dst + 4, &hi, 4);
}

/* VL bytes, zero-extended (u8) or sign-extended (i8), into int32 lanes. */
static inline vi vi_load_u8(const uint8_t *p)
{
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

/* Half precision: the F16C instructions round to nearest even like q_fp32_to_fp16 and differ from
 * it only in the payload of NaNs, which simd_quant_impl.h patches. */
static inline void vf_store_f16(uint16_t *dst, vf a)
{
    _mm_storeu_si128((__m128i *)dst, _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
}

/* The low 16 bits of each lane to dst[0..VL). */
static inline void vi_store_u16(uint16_t *dst, vi a)
{
    const __m256i pick = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i s = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(a, pick), 0x08);
    _mm_storeu_si128((__m128i *)dst, _mm256_castsi256_si128(s));
}

/* ---- iq4 level lookup -----------------------------------------------------------------------
 * q_iq4_nearest_level(v) counts the midpoints m_k = (lv[k-1] + lv[k]) / 2 with v >= m_k (see the
 * proof in simd_quant_impl.h). Eight buckets of width 32 over [-128, 128) hold at most three
 * midpoints each, so an 8-entry permute gives the count below the bucket and three compares the
 * rest. Buckets and midpoints are tabulated here; the proof that the bucket arithmetic is exact
 * is in simd_quant_impl.h next to iq4_index(). */
#define IQ4_INF INFINITY
static const float IQ4_BUCKET_MID[3][8] = {
    {-115.5f, -93.5f, -57.f, -28.5f, 7.f, 45.5f, 79.f, 101.f},
    {IQ4_INF, -74.f, -42.f, -16.f, 19.f, 61.f, IQ4_INF, IQ4_INF},
    {IQ4_INF, IQ4_INF, IQ4_INF, -4.5f, 31.5f, IQ4_INF, IQ4_INF, IQ4_INF},
};
static const int32_t IQ4_BUCKET_BASE[8] = {0, 1, 3, 5, 8, 11, 13, 14};

/* Index 0..15 of the nearest level; v must not be NaN (callers patch NaN lanes). */
static inline vi iq4_index_nonan(vf v)
{
    const vf c = vf_min(vf_max(v, vf_set(-128.f)), vf_set(127.f));
    const vi b = vf_trunc_vi(vf_add(vf_mul(c, vf_set(0.03125f)), vf_set(4.f)));
    vi idx = _mm256_permutevar8x32_epi32(vi_load(IQ4_BUCKET_BASE), b);
    for (int k = 0; k < 3; k++) {
        const vf mid = _mm256_permutevar8x32_ps(vf_load(IQ4_BUCKET_MID[k]), b);
        idx = vi_sub(idx, vf_as_vi(vf_ge(c, mid))); /* a true lane is -1 */
    }
    return idx;
}

static const float IQ4_LEVELS_F[16] = {-127.f, -104.f, -83.f, -65.f, -49.f, -35.f, -22.f, -10.f,
                                       1.f,    13.f,   25.f,  38.f,  53.f,  69.f,  89.f,  113.f};

/* The level value (as a float) of index idx 0..15. */
static inline vf iq4_value_of(vi idx)
{
    const vf lo = _mm256_permutevar8x32_ps(vf_load(IQ4_LEVELS_F), idx);
    const vf hi = _mm256_permutevar8x32_ps(vf_load(IQ4_LEVELS_F + 8), idx);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(vi_shl(idx, 28)));
}

static inline vf iq4_value_nonan(vf v) { return iq4_value_of(iq4_index_nonan(v)); }

#define QS_ISA(name) name##_avx2
#include "simd_quant_impl.h"

const q_kernels q_kernels_avx2_quant[Q_TYPE_COUNT] = QS_TABLE;

#else /* other machines: an empty table, so the library builds there */
#include "quant.h"
const q_kernels q_kernels_avx2_quant[Q_TYPE_COUNT] = {{0}};
#endif
