/* quant.c — kernel tables and the validated, row-parallel entry points. */
#include "quant.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "floats.h"
#include "kquants.h"
#include "legacy.h"

#define REF(t, vdt)                                                                            \
    {q_quantize_##t, q_dequantize_row_##t, q_quantize_row_##t##_ref, q_vec_dot_##t##_##vdt,    \
     Q_TYPE_##vdt##_ID}

/* Activation-only types have no dot of their own. */
#define ACT(t) {q_quantize_##t, q_dequantize_row_##t, q_quantize_row_##t##_ref, NULL, -1}

#define Q_TYPE_q8_0_ID Q_TYPE_Q8_0
#define Q_TYPE_q8_1_ID Q_TYPE_Q8_1
#define Q_TYPE_q8_K_ID Q_TYPE_Q8_K

static const q_kernels REF_TABLE[Q_TYPE_COUNT] = {
    [Q_TYPE_F32] = {q_quantize_f32, q_dequantize_row_f32, q_from_float_f32, q_vec_dot_f32_f32, Q_TYPE_F32},
    [Q_TYPE_F16] = {q_quantize_f16, q_dequantize_row_f16, q_from_float_f16, q_vec_dot_f16_f32, Q_TYPE_F32},
    [Q_TYPE_BF16] = {q_quantize_bf16, q_dequantize_row_bf16, q_from_float_bf16, q_vec_dot_bf16_f32, Q_TYPE_F32},
    [Q_TYPE_Q4_0] = REF(q4_0, q8_0),
    [Q_TYPE_Q4_1] = REF(q4_1, q8_1),
    [Q_TYPE_Q5_0] = REF(q5_0, q8_0),
    [Q_TYPE_Q5_1] = REF(q5_1, q8_1),
    [Q_TYPE_Q8_0] = REF(q8_0, q8_0),
    [Q_TYPE_Q8_1] = ACT(q8_1),
    [Q_TYPE_Q2_K] = REF(q2_K, q8_K),
    [Q_TYPE_Q3_K] = REF(q3_K, q8_K),
    [Q_TYPE_Q4_K] = REF(q4_K, q8_K),
    [Q_TYPE_Q5_K] = REF(q5_K, q8_K),
    [Q_TYPE_Q6_K] = REF(q6_K, q8_K),
    [Q_TYPE_Q8_K] = ACT(q8_K),
    [Q_TYPE_IQ4_NL] = REF(iq4_nl, q8_0),
    [Q_TYPE_IQ4_XS] = REF(iq4_xs, q8_K),
};

/* Entry by entry: an ISA table overrides only what it defines. */
static q_kernels merged[4][Q_TYPE_COUNT]; /* scalar, avx2, avx512, neon */
static int merged_ready;

static void overlay(q_kernels *dst, const q_kernels *src)
{
    if (src->quantize)
        dst->quantize = src->quantize;
    if (src->dequantize)
        dst->dequantize = src->dequantize;
    if (src->from_float)
        dst->from_float = src->from_float;
    if (src->vec_dot)
        dst->vec_dot = src->vec_dot;
}

static void build_tables(void)
{
#pragma omp critical(q_tables)
    if (!merged_ready) {
        for (int t = 0; t < Q_TYPE_COUNT; t++) {
            merged[0][t] = REF_TABLE[t];
            merged[1][t] = REF_TABLE[t];
            overlay(&merged[1][t], &q_kernels_avx2_quant[t]);
            overlay(&merged[1][t], &q_kernels_avx2_dot[t]);
            merged[2][t] = merged[1][t];
            overlay(&merged[2][t], &q_kernels_avx512_quant[t]);
            overlay(&merged[2][t], &q_kernels_avx512_dot[t]);
            merged[3][t] = REF_TABLE[t];
            overlay(&merged[3][t], &q_kernels_neon_dot[t]);
        }
        merged_ready = 1;
    }
}

const q_kernels *q_kernels_get_isa(int type, q_isa isa)
{
    if (type < 0 || type >= Q_TYPE_COUNT || !REF_TABLE[type].quantize)
        return NULL;
    build_tables();
    int level = isa == Q_ISA_AVX512 ? 2 : isa == Q_ISA_AVX2 ? 1 : isa == Q_ISA_NEON ? 3 : 0;
    return &merged[level][type];
}

const q_kernels *q_kernels_get(int type) { return q_kernels_get_isa(type, q_isa_active()); }

int64_t q_find_nonfinite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return -1;
}

static int check_shape(int type, int64_t nrows, int64_t n_per_row, qk_err *err)
{
    const q_type_info_t *ti = q_type_info(type);
    if (!ti || !q_kernels_get(type))
        return qk_err_set(err, QK_EUNSUPPORTED, "type %s has no kernels in qkit", ti ? ti->name : "unknown");
    if (nrows < 0 || n_per_row <= 0 || n_per_row % ti->blck_size)
        return qk_err_set(err, QK_EFORMAT, "rows of %lld values are not a multiple of the %s block size %lld",
                          (long long)n_per_row, ti->name, (long long)ti->blck_size);
    return QK_OK;
}

int q_quantize_rows(int type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                    const float *imatrix, int n_threads, int64_t *bad_row, qk_err *err)
{
    int rc = check_shape(type, nrows, n_per_row, err);
    if (rc)
        return rc;
    int64_t first_bad = -1;
    for (int64_t r = 0; r < nrows && first_bad < 0; r++)
        if (q_find_nonfinite(src + r * n_per_row, n_per_row) >= 0)
            first_bad = r;
    if (first_bad >= 0) {
        if (bad_row)
            *bad_row = first_bad;
        int64_t col = q_find_nonfinite(src + first_bad * n_per_row, n_per_row);
        return qk_err_set(err, QK_ERANGE, "row %lld holds a non-finite value (%g at column %lld)",
                          (long long)first_bad, src[first_bad * n_per_row + col], (long long)col);
    }
    if (imatrix && q_find_nonfinite(imatrix, n_per_row) >= 0)
        return qk_err_set(err, QK_ERANGE, "importance weights hold a non-finite value");
    const q_kernels *k = q_kernels_get(type);
    const size_t row_bytes = q_row_size(type, n_per_row);
    /* Chunks of whole rows; each row's bytes depend only on that row, so any split is exact. */
    const int64_t chunk = 16;
    if (n_threads <= 0)
        n_threads = omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
    for (int64_t r0 = 0; r0 < nrows; r0 += chunk) {
        const int64_t nr = nrows - r0 < chunk ? nrows - r0 : chunk;
        k->quantize(src + r0 * n_per_row, (char *)dst + r0 * row_bytes, nr, n_per_row, imatrix);
    }
    return QK_OK;
}

int q_dequantize_rows(int type, const void *src, float *dst, int64_t nrows, int64_t n_per_row,
                      qk_err *err)
{
    int rc = check_shape(type, nrows, n_per_row, err);
    if (rc)
        return rc;
    const q_kernels *k = q_kernels_get(type);
    const size_t row_bytes = q_row_size(type, n_per_row);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < nrows; r++)
        k->dequantize((const char *)src + r * row_bytes, dst + r * n_per_row, n_per_row);
    return QK_OK;
}
