/* quant.c — kernel tables and the validated, row-parallel entry points. */
#include "quant.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "floats.h"
#include "kquants.h"
#include "legacy.h"

/* Designated initializers: gemm is filled in by build_tables. */
#define REF(t, vdt, vdt_id)                                                                    \
    {.quantize = q_quantize_##t, .dequantize = q_dequantize_row_##t,                           \
     .from_float = q_quantize_row_##t##_ref, .vec_dot = q_vec_dot_##t##_##vdt,                 \
     .vec_dot_type = vdt_id}

/* Activation-only types have no dot of their own. */
#define ACT(t)                                                                                 \
    {.quantize = q_quantize_##t, .dequantize = q_dequantize_row_##t,                           \
     .from_float = q_quantize_row_##t##_ref, .vec_dot_type = -1}

#define FLT(t)                                                                                 \
    {.quantize = q_quantize_##t, .dequantize = q_dequantize_row_##t,                           \
     .from_float = q_from_float_##t, .vec_dot = q_vec_dot_##t##_f32, .vec_dot_type = Q_TYPE_F32}


static const q_kernels REF_TABLE[Q_TYPE_COUNT] = {
    [Q_TYPE_F32] = FLT(f32),
    [Q_TYPE_F16] = FLT(f16),
    [Q_TYPE_BF16] = FLT(bf16),
    [Q_TYPE_Q4_0] = REF(q4_0, q8_0, Q_TYPE_Q8_0),
    [Q_TYPE_Q4_1] = REF(q4_1, q8_1, Q_TYPE_Q8_1),
    [Q_TYPE_Q5_0] = REF(q5_0, q8_0, Q_TYPE_Q8_0),
    [Q_TYPE_Q5_1] = REF(q5_1, q8_1, Q_TYPE_Q8_1),
    [Q_TYPE_Q8_0] = REF(q8_0, q8_0, Q_TYPE_Q8_0),
    [Q_TYPE_Q8_1] = ACT(q8_1),
    [Q_TYPE_Q2_K] = REF(q2_K, q8_K, Q_TYPE_Q8_K),
    [Q_TYPE_Q3_K] = REF(q3_K, q8_K, Q_TYPE_Q8_K),
    [Q_TYPE_Q4_K] = REF(q4_K, q8_K, Q_TYPE_Q8_K),
    [Q_TYPE_Q5_K] = REF(q5_K, q8_K, Q_TYPE_Q8_K),
    [Q_TYPE_Q6_K] = REF(q6_K, q8_K, Q_TYPE_Q8_K),
    [Q_TYPE_Q8_K] = ACT(q8_K),
    [Q_TYPE_IQ4_NL] = REF(iq4_nl, q8_0, Q_TYPE_Q8_0),
    [Q_TYPE_IQ4_XS] = REF(iq4_xs, q8_K, Q_TYPE_Q8_K),
};

/* Entry by entry: an ISA table overrides only what it defines. */
enum { LV_SCALAR, LV_AVX2, LV_AVX512, LV_NEON, LV_COUNT };
static q_kernels merged[LV_COUNT][Q_TYPE_COUNT];
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
    if (src->gemm)
        dst->gemm = src->gemm;
}

/* The gemm of types without a tiled kernel: the level's own vec_dot per (row, token), over
 * blocks of rows so that a slice of w stays in cache while every token passes. */
static void gemm_loop(q_vec_dot_fn dot, int n, int64_t nrows, int ntok, const void *w, size_t ws,
                      const void *x, size_t xs, float *y, size_t ys)
{
    for (int64_t r0 = 0; r0 < nrows; r0 += 16) {
        const int64_t r1 = nrows - r0 < 16 ? nrows : r0 + 16;
        for (int t = 0; t < ntok; t++)
            for (int64_t r = r0; r < r1; r++)
                dot(n, &y[(size_t)t * ys + r], (const char *)w + r * ws, (const char *)x + (size_t)t * xs);
    }
}

/* One wrapper per (level, type) since a q_gemm_fn carries no context. */
#define GEMM_LOOP(L, T)                                                                        \
    static void gemm_loop_##L##_##T(int n, int64_t nrows, int ntok, const void *w, size_t ws,  \
                                    const void *x, size_t xs, float *y, size_t ys)             \
    {                                                                                          \
        gemm_loop(merged[L][Q_TYPE_##T].vec_dot, n, nrows, ntok, w, ws, x, xs, y, ys);         \
    }
#define DOT_TYPES(X, L)                                                                        \
    X(L, F32) X(L, F16) X(L, BF16) X(L, Q4_0) X(L, Q4_1) X(L, Q5_0) X(L, Q5_1) X(L, Q8_0)      \
    X(L, Q2_K) X(L, Q3_K) X(L, Q4_K) X(L, Q5_K) X(L, Q6_K) X(L, IQ4_NL) X(L, IQ4_XS)
#define GEMM_LOOP_ENTRY(L, T) [Q_TYPE_##T] = gemm_loop_##L##_##T,
DOT_TYPES(GEMM_LOOP, LV_SCALAR)
DOT_TYPES(GEMM_LOOP, LV_AVX2)
DOT_TYPES(GEMM_LOOP, LV_AVX512)
DOT_TYPES(GEMM_LOOP, LV_NEON)
static const q_gemm_fn GEMM_LOOPS[LV_COUNT][Q_TYPE_COUNT] = {
    [LV_SCALAR] = {DOT_TYPES(GEMM_LOOP_ENTRY, LV_SCALAR)},
    [LV_AVX2] = {DOT_TYPES(GEMM_LOOP_ENTRY, LV_AVX2)},
    [LV_AVX512] = {DOT_TYPES(GEMM_LOOP_ENTRY, LV_AVX512)},
    [LV_NEON] = {DOT_TYPES(GEMM_LOOP_ENTRY, LV_NEON)},
};

/* vec_dot, then the level's gemm tables over the vec_dot loop. */
static void add_gemm(int lv, const q_kernels *tiled1, const q_kernels *tiled2)
{
    for (int t = 0; t < Q_TYPE_COUNT; t++) {
        q_kernels *k = &merged[lv][t];
        if (!k->vec_dot)
            continue;
        k->gemm = GEMM_LOOPS[lv][t];
        if (tiled1)
            overlay(k, &tiled1[t]);
        if (tiled2)
            overlay(k, &tiled2[t]);
    }
}

static void build_tables(void)
{
#pragma omp critical(q_tables)
    if (!merged_ready) {
        for (int t = 0; t < Q_TYPE_COUNT; t++) {
            merged[LV_SCALAR][t] = REF_TABLE[t];
            merged[LV_AVX2][t] = REF_TABLE[t];
            overlay(&merged[LV_AVX2][t], &q_kernels_avx2_quant[t]);
            overlay(&merged[LV_AVX2][t], &q_kernels_avx2_dot[t]);
            merged[LV_AVX512][t] = merged[LV_AVX2][t];
            overlay(&merged[LV_AVX512][t], &q_kernels_avx512_quant[t]);
            overlay(&merged[LV_AVX512][t], &q_kernels_avx512_dot[t]);
            merged[LV_NEON][t] = REF_TABLE[t];
            overlay(&merged[LV_NEON][t], &q_kernels_neon_dot[t]);
        }
        add_gemm(LV_SCALAR, NULL, NULL);
        add_gemm(LV_AVX2, q_kernels_avx2_gemm, NULL);
        add_gemm(LV_AVX512, q_kernels_avx2_gemm, q_kernels_avx512_gemm);
        add_gemm(LV_NEON, NULL, NULL);
        merged_ready = 1;
    }
}

const q_kernels *q_kernels_get_isa(int type, q_isa isa)
{
    if (type < 0 || type >= Q_TYPE_COUNT || !REF_TABLE[type].quantize)
        return NULL;
    build_tables();
    const int level = isa == Q_ISA_AVX512 ? LV_AVX512
                      : isa == Q_ISA_AVX2 ? LV_AVX2
                      : isa == Q_ISA_NEON ? LV_NEON
                                          : LV_SCALAR;
    return &merged[level][type];
}

const q_kernels *q_kernels_get(int type) { return q_kernels_get_isa(type, q_isa_active()); }

int q_gemm_rows(int type)
{
    return type == Q_TYPE_F32 || type == Q_TYPE_F16 || type == Q_TYPE_BF16 ? Q_GEMM_FLOAT_ROWS : 32;
}

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
