/* test_gemm.c — the tiled matrix products (q_kernels.gemm) against the scalar vec_dot, for every
 * type with a dot product and every ISA this machine runs (the others are skipped, visibly).
 *
 * Each element must equal the scalar reference's dot bit for bit (the canonical summation order
 * of quant/quant.h), and be within
 *     |a - b| <= GEMM_RTOL * Σ|w_i·x_i| + GEMM_ATOL
 * of the double product of the dequantized w and x (for the types whose dot is that product). Sizes are not multiples of any tile (13 rows × 11 tokens), rows
 * are padded (strides larger than a row) and the float types have a ragged tail (n = 100).
 * The engine relies on each element depending only on its two rows: a product over a sub-range
 * must give the same bits as the whole, and nothing outside the output rectangle is written.
 * The quantized types are also swept over shapes (every token count to 40, row counts around the
 * tiles' 16 and 32, rows longer than a repacking chunk) and run on extreme operands (every code,
 * extreme and non-finite scales, levels at ±127). */
#include "tu.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/blocks.h"
#include "../quant/fp16.h"
#include "../quant/quant.h"

#define GEMM_RTOL 1e-5
#define GEMM_ATOL 1e-30
#define NROWS 13
#define NTOK 11
#define PAD 24       /* bytes after each weight and activation row */
#define Y_STRIDE 17  /* floats per output row, > NROWS */
#define SENTINEL -12345.0f

static const struct {
    const char *name;
    int type, n;
} TYPES[] = {
    {"f32", Q_TYPE_F32, 100},     {"f16", Q_TYPE_F16, 100},       {"bf16", Q_TYPE_BF16, 100},
    {"q4_0", Q_TYPE_Q4_0, 160},   {"q4_1", Q_TYPE_Q4_1, 160},     {"q5_0", Q_TYPE_Q5_0, 160},
    {"q5_1", Q_TYPE_Q5_1, 160},   {"q8_0", Q_TYPE_Q8_0, 160},     {"q2_K", Q_TYPE_Q2_K, 512},
    {"q3_K", Q_TYPE_Q3_K, 512},   {"q4_K", Q_TYPE_Q4_K, 512},     {"q5_K", Q_TYPE_Q5_K, 512},
    {"q6_K", Q_TYPE_Q6_K, 512},   {"iq4_nl", Q_TYPE_IQ4_NL, 160}, {"iq4_xs", Q_TYPE_IQ4_XS, 512},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static const q_isa ISAS[] = {Q_ISA_SCALAR, Q_ISA_AVX2, Q_ISA_AVX512};

typedef struct {
    int n, nrows, ntok;
    size_t ws, xs;        /* strides in bytes */
    unsigned char *w, *x; /* [nrows][ws], [ntok][xs] */
    float *wf, *xf;       /* dequantized [nrows][n], [ntok][n] */
} operands;

static void *xcalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    assert_non_null(p);
    return p;
}

/* Random weights quantized to type, random activations in its vec_dot_type, both padded. */
static void operands_make(operands *o, int type, int n, int nrows, int ntok, uint64_t seed)
{
    const q_kernels *k = q_kernels_get_isa(type, Q_ISA_SCALAR);
    const q_kernels *kx = q_kernels_get_isa(k->vec_dot_type, Q_ISA_SCALAR);
    uint64_t s = seed;
    o->n = n, o->nrows = nrows, o->ntok = ntok;
    o->ws = q_row_size(type, n) + PAD;
    o->xs = q_row_size(k->vec_dot_type, n) + PAD;
    o->w = xcalloc(nrows * o->ws);
    o->x = xcalloc(ntok * o->xs);
    o->wf = xcalloc(sizeof(float) * nrows * n);
    o->xf = xcalloc(sizeof(float) * ntok * n);
    float *src = xcalloc(sizeof(float) * n);
    for (int r = 0; r < nrows; r++) {
        for (int i = 0; i < n; i++)
            src[i] = tu_randf(&s) * (1.0f + (float)(i % 7));
        k->quantize(src, o->w + r * o->ws, 1, n, NULL);
        k->dequantize(o->w + r * o->ws, o->wf + (size_t)r * n, n);
    }
    for (int t = 0; t < ntok; t++) {
        for (int i = 0; i < n; i++)
            src[i] = tu_randf(&s) * 3.0f;
        kx->from_float(src, o->x + t * o->xs, n);
        kx->dequantize(o->x + t * o->xs, o->xf + (size_t)t * n, n);
    }
    free(src);
}

static void operands_free(operands *o)
{
    free(o->w);
    free(o->x);
    free(o->wf);
    free(o->xf);
}

static q_isa isa_or_skip(void **state)
{
    const q_isa isa = *(const q_isa *)*state;
    if (isa != Q_ISA_SCALAR && (q_isa_best() == Q_ISA_NEON || q_isa_best() < isa)) {
        print_message("%s not supported by this CPU (test skipped)\n", q_isa_name(isa));
        skip();
    }
    return isa;
}

static float *output_alloc(void)
{
    float *y = xcalloc(sizeof(float) * NTOK * Y_STRIDE);
    for (int i = 0; i < NTOK * Y_STRIDE; i++)
        y[i] = SENTINEL;
    return y;
}

static void check_type(q_isa isa, int ti)
{
    const int type = TYPES[ti].type, n = TYPES[ti].n;
    const q_kernels *k = q_kernels_get_isa(type, isa);
    const q_kernels *ref = q_kernels_get_isa(type, Q_ISA_SCALAR);
    assert_non_null(k->gemm);
    operands o;
    operands_make(&o, type, n, NROWS, NTOK, 0x9E3779B97F4A7C15ULL + (uint64_t)ti);
    float *y = output_alloc();
    k->gemm(n, NROWS, NTOK, o.w, o.ws, o.x, o.xs, y, Y_STRIDE);
    for (int t = 0; t < NTOK; t++) {
        for (int r = 0; r < NROWS; r++) {
            float want;
            ref->vec_dot(n, &want, o.w + r * o.ws, o.x + t * o.xs);
            double mag = 0, exact = 0;
            for (int i = 0; i < n; i++) {
                mag += fabs((double)o.wf[(size_t)r * n + i] * o.xf[(size_t)t * n + i]);
                exact += (double)o.wf[(size_t)r * n + i] * o.xf[(size_t)t * n + i];
            }
            const float got = y[t * Y_STRIDE + r];
            if (memcmp(&got, &want, sizeof got))
                fail_msg("%s %s row %d token %d: %a, the scalar reference %a (must be the same bits)",
                         q_isa_name(isa), TYPES[ti].name, r, t, (double)got, (double)want);
            if (q_kernels_get_isa(type, Q_ISA_SCALAR)->vec_dot_type != Q_TYPE_Q8_1)
                tu_assert_near(got, exact, GEMM_RTOL * mag + GEMM_ATOL);
        }
        for (int r = NROWS; r < Y_STRIDE; r++)
            assert_true(y[t * Y_STRIDE + r] == SENTINEL);
    }
    /* Rows 1..11 and tokens 2..10 (other tile positions and edges): the same bits. */
    float *sub = output_alloc();
    k->gemm(n, NROWS - 2, NTOK - 3, o.w + o.ws, o.ws, o.x + 2 * o.xs, o.xs, sub, Y_STRIDE);
    for (int t = 0; t < NTOK - 3; t++)
        for (int r = 0; r < NROWS - 2; r++)
            assert_memory_equal(&sub[t * Y_STRIDE + r], &y[(t + 2) * Y_STRIDE + r + 1], sizeof(float));
    free(sub);
    free(y);
    operands_free(&o);
}

static void test_gemm_matches_vec_dot(void **state)
{
    const q_isa isa = isa_or_skip(state);
    for (size_t ti = 0; ti < N_TYPES; ti++)
        check_type(isa, (int)ti);
}

/* Zero rows or tokens write nothing. */
static void test_gemm_empty(void **state)
{
    const q_isa isa = isa_or_skip(state);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const q_kernels *k = q_kernels_get_isa(TYPES[ti].type, isa);
        operands o;
        operands_make(&o, TYPES[ti].type, TYPES[ti].n, NROWS, NTOK, 7);
        float *y = output_alloc();
        k->gemm(o.n, 0, NTOK, o.w, o.ws, o.x, o.xs, y, Y_STRIDE);
        k->gemm(o.n, NROWS, 0, o.w, o.ws, o.x, o.xs, y, Y_STRIDE);
        for (int i = 0; i < NTOK * Y_STRIDE; i++)
            assert_true(y[i] == SENTINEL);
        free(y);
        operands_free(&o);
    }
}

/* ---- shapes ------------------------------------------------------------------------------------ */
/* The AVX-512 products of the quantized types take rows in lane groups of 16 (tiles of 32),
 * tokens in small tiles, values in chunks of up to 4096 per repacking, and leave few tokens to
 * gemm_x86.h's tiles. Every token count from 1 to SW_TOK, row counts on both sides of 16 and 32,
 * one block, several, and more than a chunk, each from a shifted origin: the reference's bits,
 * and nothing written outside the product. */
#define SW_ROWS 133 /* past the float tiles' row group of 128 */
#define SW_TOK 40
#define SW_STRIDE (SW_ROWS + 3)

static void sweep_check(q_isa isa, int ti, const operands *o, const float *ref /* [SW_TOK][SW_ROWS] */, int r0,
                        int nr, int t0, int nt, float *y /* [SW_TOK][SW_STRIDE] */)
{
    for (int i = 0; i < SW_TOK * SW_STRIDE; i++)
        y[i] = SENTINEL;
    q_kernels_get_isa(TYPES[ti].type, isa)
        ->gemm(o->n, nr, nt, o->w + (size_t)r0 * o->ws, o->ws, o->x + (size_t)t0 * o->xs, o->xs, y, SW_STRIDE);
    for (int t = 0; t < SW_TOK; t++)
        for (int r = 0; r < SW_STRIDE; r++) {
            const float got = y[t * SW_STRIDE + r];
            if (t >= nt || r >= nr) {
                if (got != SENTINEL)
                    fail_msg("%s %s n=%d, %d rows x %d tokens: wrote row %d token %d", q_isa_name(isa),
                             TYPES[ti].name, o->n, nr, nt, r, t);
                continue;
            }
            const float want = ref[(t0 + t) * SW_ROWS + r0 + r];
            if (memcmp(&got, &want, sizeof got))
                fail_msg("%s %s n=%d, %d rows x %d tokens from row %d token %d: element (%d, %d) is %a, the "
                         "scalar reference %a", q_isa_name(isa), TYPES[ti].name, o->n, nr, nt, r0, t0, r, t,
                         (double)got, (double)want);
        }
}

static void test_gemm_shapes(void **state)
{
    const q_isa isa = isa_or_skip(state);
    static const int ROWS[] = {1, 2, 15, 16, 17, 31, 32, 33, 36};
    static const int TOKS[] = {3, 8, 17, 39};
    float *ref = xcalloc(sizeof(float) * SW_TOK * SW_ROWS), *y = xcalloc(sizeof(float) * SW_TOK * SW_STRIDE);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const int type = TYPES[ti].type, bs = (int)q_type_info(type)->blck_size;
        if (bs == 1)
            continue;
        const int blocks[] = {1, 5, 4096 / bs + 2};
        for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++) {
            operands o;
            operands_make(&o, type, blocks[bi] * bs, SW_ROWS, SW_TOK, 0xC0FFEE + 31 * ti + bi);
            for (int t = 0; t < SW_TOK; t++)
                for (int r = 0; r < SW_ROWS; r++)
                    q_kernels_get_isa(type, Q_ISA_SCALAR)->vec_dot(o.n, &ref[t * SW_ROWS + r], o.w + r * o.ws,
                                                                    o.x + t * o.xs);
            /* Every token count on all rows (the long rows: a few around the tile edges). */
            for (int nt = 1; nt <= SW_TOK; nt++)
                if (bi < 2 || nt <= 2 || nt % 8 <= 1)
                    sweep_check(isa, (int)ti, &o, ref, 0, SW_ROWS, 0, nt, y);
            for (size_t ri = 0; ri < sizeof ROWS / sizeof ROWS[0]; ri++)
                for (size_t k = 0; k < sizeof TOKS / sizeof TOKS[0]; k++)
                    sweep_check(isa, (int)ti, &o, ref, SW_ROWS - ROWS[ri], ROWS[ri], SW_TOK - TOKS[k], TOKS[k],
                                y);
            operands_free(&o);
        }
    }
    free(ref);
    free(y);
}

/* ---- float chunks ------------------------------------------------------------------------------ */
/* The float products run in chunks of 1024 values, with the partial sums of up to 128 rows waiting
 * between chunks, and tokens in tiles whose first row tile packs the activations for the others
 * (gemm_x86.h). Lengths on both sides of a chunk, row counts on both sides of a tile and of 128,
 * every token count up to 13 and all 40, from shifted origins: the reference's bits, and nothing
 * written outside the product. */
static void test_gemm_float_chunks(void **state)
{
    const q_isa isa = isa_or_skip(state);
    static const int NS[] = {1, 15, 1024, 1039, 3079};
    static const int ROWS[] = {1, 3, 4, 5, 31, 32, 33, 37, 127, 128, 129, 133};
    float *ref = xcalloc(sizeof(float) * SW_TOK * SW_ROWS), *y = xcalloc(sizeof(float) * SW_TOK * SW_STRIDE);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const int type = TYPES[ti].type;
        if (q_type_info(type)->blck_size != 1)
            continue;
        for (size_t ni = 0; ni < sizeof NS / sizeof NS[0]; ni++) {
            operands o;
            operands_make(&o, type, NS[ni], SW_ROWS, SW_TOK, 0xF10A7 + 17 * ti + ni);
            for (int t = 0; t < SW_TOK; t++)
                for (int r = 0; r < SW_ROWS; r++)
                    q_kernels_get_isa(type, Q_ISA_SCALAR)->vec_dot(o.n, &ref[t * SW_ROWS + r], o.w + r * o.ws,
                                                                    o.x + t * o.xs);
            for (int nt = 1; nt <= 13; nt++)
                sweep_check(isa, (int)ti, &o, ref, 0, SW_ROWS, 0, nt, y);
            sweep_check(isa, (int)ti, &o, ref, 0, SW_ROWS, 0, SW_TOK, y);
            for (size_t ri = 0; ri < sizeof ROWS / sizeof ROWS[0]; ri++)
                sweep_check(isa, (int)ti, &o, ref, SW_ROWS - ROWS[ri], ROWS[ri], 5, SW_TOK - 5, y);
            operands_free(&o);
        }
    }
    free(ref);
    free(y);
}

/* ---- extreme operands -------------------------------------------------------------------------- */
/* Weights of random bytes (every code) whose half-precision scales include the extremes, times
 * activations at the ends of their range ([-127, 127], what the quantizers make) with extreme
 * scales. Each element is the reference's bits, or NaN where the reference gives NaN (the payload
 * of a NaN is the CPU's). */
#define EX_ROWS 35
#define EX_TOK 21
#define EX_BLOCKS 3

static const uint16_t EX_HALVES[] = {
    0x7BFF, 0xFBFF, /* ±65504 */
    0x0001, 0x83FF, /* the smallest subnormal, a negative subnormal */
    0x0000, 0x8000, /* ±0 */
    0x7C00, 0xFC00, /* ±inf */
    0x7E00,         /* NaN */
};
#define N_EX_HALVES (sizeof EX_HALVES / sizeof EX_HALVES[0])
static const float EX_FLOATS[] = {FLT_MAX, -FLT_MAX, 1e-45f, -1e-40f, 0.0f, -0.0f, INFINITY, -INFINITY, NAN};
#define N_EX_FLOATS (sizeof EX_FLOATS / sizeof EX_FLOATS[0])

/* Byte offsets of a weight block's half-precision scales (-1: none). */
static void scale_offsets(int type, int *d, int *m)
{
    *d = *m = -1;
    switch (type) {
    case Q_TYPE_Q4_0: *d = offsetof(block_q4_0, d); break;
    case Q_TYPE_Q4_1: *d = offsetof(block_q4_1, d), *m = offsetof(block_q4_1, m); break;
    case Q_TYPE_Q5_0: *d = offsetof(block_q5_0, d); break;
    case Q_TYPE_Q5_1: *d = offsetof(block_q5_1, d), *m = offsetof(block_q5_1, m); break;
    case Q_TYPE_Q8_0: *d = offsetof(block_q8_0, d); break;
    case Q_TYPE_Q2_K: *d = offsetof(block_q2_K, d), *m = offsetof(block_q2_K, dmin); break;
    case Q_TYPE_Q3_K: *d = offsetof(block_q3_K, d); break;
    case Q_TYPE_Q4_K: *d = offsetof(block_q4_K, d), *m = offsetof(block_q4_K, dmin); break;
    case Q_TYPE_Q5_K: *d = offsetof(block_q5_K, d), *m = offsetof(block_q5_K, dmin); break;
    case Q_TYPE_Q6_K: *d = offsetof(block_q6_K, d); break;
    case Q_TYPE_IQ4_NL: *d = offsetof(block_iq4_nl, d); break;
    case Q_TYPE_IQ4_XS: *d = offsetof(block_iq4_xs, d); break;
    default: fail_msg("no scale offsets for type %d", type);
    }
}

/* A half in ±[2^-6, 2^2): an ordinary scale. */
static uint16_t ordinary_half(uint64_t *s)
{
    return q_fp32_to_fp16(ldexpf(1.0f + 0.5f * tu_randf(s), (int)(tu_rand(s) % 8) - 6));
}

static void put_half(unsigned char *p, uint16_t h) { memcpy(p, &h, sizeof h); }

/* Level j of token t's block: all +127, all -127, alternating, or random in [-127, 127]. */
static int8_t extreme_level(int t, int j, uint64_t *s)
{
    switch (t % 4) {
    case 0: return 127;
    case 1: return -127;
    case 2: return j % 2 ? 127 : -127;
    default: return (int8_t)((int)(tu_rand(s) % 255) - 127);
    }
}

/* Row r's weights: random bytes, ordinary scales, and from row 2 on one block with an extreme d
 * (and another with an extreme min scale). */
static void extreme_weights(int type, unsigned char *w, size_t ws, uint64_t *s)
{
    const size_t bsize = q_type_info(type)->type_size;
    int doff, moff;
    scale_offsets(type, &doff, &moff);
    for (int r = 0; r < EX_ROWS; r++) {
        unsigned char *row = w + (size_t)r * ws;
        for (size_t i = 0; i < EX_BLOCKS * bsize; i++)
            row[i] = (unsigned char)(tu_rand(s) >> 56);
        for (int b = 0; b < EX_BLOCKS; b++) {
            put_half(row + b * bsize + doff, ordinary_half(s));
            if (moff >= 0)
                put_half(row + b * bsize + moff, ordinary_half(s));
        }
        if (r >= 2) {
            put_half(row + (r % EX_BLOCKS) * bsize + doff, EX_HALVES[r % N_EX_HALVES]);
            if (moff >= 0)
                put_half(row + ((r + 1) % EX_BLOCKS) * bsize + moff, EX_HALVES[(r / 3) % N_EX_HALVES]);
        }
    }
}

/* Token t's activations in vdt (q8_0, q8_1 or q8_K): levels at the ends of the range, ordinary
 * scales, and from token 4 on one block with an extreme scale. q8_K's bsums are the sums of their
 * groups (quant.h's precondition). */
static void extreme_activations(int vdt, unsigned char *x, size_t xs, uint64_t *s)
{
    for (int t = 0; t < EX_TOK; t++) {
        for (int b = 0; b < EX_BLOCKS; b++) {
            const int extreme = t >= 4 && b == t % EX_BLOCKS;
            if (vdt == Q_TYPE_Q8_K) {
                block_q8_K *yb = (block_q8_K *)(x + (size_t)t * xs) + b;
                for (int j = 0; j < Q_QK_K; j++)
                    yb->qs[j] = extreme_level(t, j, s);
                for (int g = 0; g < Q_QK_K / 16; g++) {
                    int sum = 0;
                    for (int j = 0; j < 16; j++)
                        sum += yb->qs[16 * g + j];
                    yb->bsums[g] = (int16_t)sum;
                }
                yb->d = extreme ? EX_FLOATS[t % N_EX_FLOATS] : q_fp16_to_fp32(ordinary_half(s));
            } else if (vdt == Q_TYPE_Q8_1) {
                block_q8_1 *yb = (block_q8_1 *)(x + (size_t)t * xs) + b;
                for (int j = 0; j < 32; j++)
                    yb->qs[j] = extreme_level(t, j, s);
                yb->d = extreme ? EX_HALVES[t % N_EX_HALVES] : ordinary_half(s);
                yb->s = extreme ? EX_HALVES[(t + 4) % N_EX_HALVES] : ordinary_half(s);
            } else {
                block_q8_0 *yb = (block_q8_0 *)(x + (size_t)t * xs) + b;
                for (int j = 0; j < 32; j++)
                    yb->qs[j] = extreme_level(t, j, s);
                yb->d = extreme ? EX_HALVES[t % N_EX_HALVES] : ordinary_half(s);
            }
        }
    }
}

static void test_gemm_extremes(void **state)
{
    const q_isa isa = isa_or_skip(state);
    uint64_t s = 0xE7E7E7E7ULL;
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const int type = TYPES[ti].type;
        if (q_type_info(type)->blck_size == 1)
            continue;
        const q_kernels *ref = q_kernels_get_isa(type, Q_ISA_SCALAR), *k = q_kernels_get_isa(type, isa);
        const int n = EX_BLOCKS * (int)q_type_info(type)->blck_size;
        const size_t ws = q_row_size(type, n) + PAD, xs = q_row_size(ref->vec_dot_type, n) + PAD;
        unsigned char *w = xcalloc(EX_ROWS * ws), *x = xcalloc(EX_TOK * xs);
        float *y = xcalloc(sizeof(float) * EX_TOK * EX_ROWS);
        extreme_weights(type, w, ws, &s);
        extreme_activations(ref->vec_dot_type, x, xs, &s);
        /* All tokens at once, and the first three alone (the few-token tiles). */
        for (int pass = 0; pass < 2; pass++) {
            const int nt = pass ? 3 : EX_TOK;
            k->gemm(n, EX_ROWS, nt, w, ws, x, xs, y, EX_ROWS);
            for (int t = 0; t < nt; t++)
                for (int r = 0; r < EX_ROWS; r++) {
                    float want;
                    ref->vec_dot(n, &want, w + r * ws, x + t * xs);
                    const float got = y[t * EX_ROWS + r];
                    if (isnan(want) ? !isnan(got) : memcmp(&got, &want, sizeof got) != 0)
                        fail_msg("%s %s row %d token %d (%d tokens): %a, the scalar reference %a",
                                 q_isa_name(isa), TYPES[ti].name, r, t, nt, (double)got, (double)want);
                }
        }
        free(w);
        free(x);
        free(y);
    }
}

/* Activation-only types have no dot, hence no gemm; every other type has one on every ISA. */
static void test_gemm_present(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof ISAS / sizeof ISAS[0]; i++) {
        assert_null(q_kernels_get_isa(Q_TYPE_Q8_K, ISAS[i])->gemm);
        assert_null(q_kernels_get_isa(Q_TYPE_Q8_1, ISAS[i])->gemm);
        for (size_t ti = 0; ti < N_TYPES; ti++)
            assert_non_null(q_kernels_get_isa(TYPES[ti].type, ISAS[i])->gemm);
    }
}

#define PER_ISA(fn)                                                                            \
    cmocka_unit_test_prestate(fn, (void *)&ISAS[0]), cmocka_unit_test_prestate(fn, (void *)&ISAS[1]), \
        cmocka_unit_test_prestate(fn, (void *)&ISAS[2])

int main(void)
{
    const struct CMUnitTest tests[] = {
        PER_ISA(test_gemm_matches_vec_dot),
        PER_ISA(test_gemm_empty),
        PER_ISA(test_gemm_shapes),
        PER_ISA(test_gemm_float_chunks),
        PER_ISA(test_gemm_extremes),
        cmocka_unit_test(test_gemm_present),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
