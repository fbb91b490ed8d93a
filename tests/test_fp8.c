/* test_fp8.c — e4m3fn and e5m2 decoding, the e4m3fn encoder (PyTorch's CPU cast), block-scaled
 * dequantization. References are written here from the format definitions (ldexp of the fields,
 * rounding in double with nearbyint), independently of quant/fp8.c's bit manipulations; every
 * comparison is on float bits. Then FP8 checkpoints end to end: `synth --dtype fp8` folders
 * converted to GGUF (every value checked against the safetensors bytes decoded here), bad FP8
 * inputs, and the engine reading an FP8 folder directly. */
#include "tu.h"

#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../calib/model.h"
#include "../convert/convert.h"
#include "../convert/hf_engine.h"
#include "../convert/synth.h"
#include "../formats/gguf.h"
#include "../formats/safetensors.h"
#include "../quant/fp16.h"
#include "../quant/fp8.h"
#include "../quant/types.h"

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* ---- references from the format definitions ------------------------------------------------ */

/* e4m3fn: s eeee mmm, bias 7, subnormals at e = 0, NaN at e = 15 m = 7, no infinities. */
static double ref_e4m3(uint8_t c)
{
    const int e = (c >> 3) & 15, m = c & 7;
    const double s = (c & 0x80) ? -1.0 : 1.0;
    if (e == 15 && m == 7)
        return NAN;
    return s * (e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10));
}

/* e5m2: s eeeee mm, bias 15, subnormals at e = 0, Inf at e = 31 m = 0, NaN at e = 31 m != 0. */
static double ref_e5m2(uint8_t c)
{
    const int e = (c >> 2) & 31, m = c & 3;
    const double s = (c & 0x80) ? -1.0 : 1.0;
    if (e == 31)
        return m == 0 ? s * INFINITY : NAN;
    return s * (e == 0 ? ldexp(m, -16) : ldexp(4 + m, e - 17));
}

/* Bits equal, or both NaN. */
static int same_float(float a, float b) { return (isnan(a) && isnan(b)) || q_f32_bits(a) == q_f32_bits(b); }

static void assert_bits(float got, float want, const char *what, int code)
{
    if (q_f32_bits(got) != q_f32_bits(want))
        fail_msg("%s 0x%02x: got %a (0x%08x), want %a (0x%08x)", what, code, (double)got, q_f32_bits(got),
                 (double)want, q_f32_bits(want));
}

/* PyTorch's float → float8_e4m3fn on the CPU, from its definition: round |x| to a multiple of the
 * e4m3 step of its binade (2^-9 below 2^-6, 2^(E-4) in [2^(E-1), 2^E)), ties to even (nearbyint in
 * the default rounding mode); a result above 448 is NaN. Returns the value (±0 kept), or NaN. */
static float ref_encode_value(float x)
{
    if (isnan(x) || isinf(x))
        return NAN;
    const double ax = fabs((double)x);
    double q = 0x1p-9;
    if (ax >= 0x1p-6) {
        int E;
        frexp(ax, &E); /* ax in [2^(E-1), 2^E) */
        q = ldexp(1.0, E - 4);
    }
    const double v = nearbyint(ax / q) * q; /* ax / q is exact: q is a power of two */
    if (v > 448)
        return NAN;
    return signbit(x) ? -(float)v : (float)v;
}

/* Checks q_fp32_to_fp8_e4m3(x) against the reference: by value (decoding is injective on the
 * non-NaN codes and is checked on its own), and NaN must be exactly 0x7F with x's sign. */
static int encode_ok(float x)
{
    const uint8_t c = q_fp32_to_fp8_e4m3(x);
    const float want = ref_encode_value(x);
    if (isnan(want))
        return c == ((signbit(x) ? 0x80 : 0) | 0x7F);
    return (c & 0x7F) != 0x7F && q_f32_bits(q_fp8_e4m3_to_fp32(c)) == q_f32_bits(want);
}

static void assert_encode(float x, uint8_t want)
{
    const uint8_t got = q_fp32_to_fp8_e4m3(x);
    if (got != want)
        fail_msg("encode %a (0x%08x): got 0x%02x, want 0x%02x", (double)x, q_f32_bits(x), got, want);
}

/* ---- decoding ------------------------------------------------------------------------------ */

static void test_e4m3_decode_all_codes(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        const float got = q_fp8_e4m3_to_fp32((uint8_t)c);
        const double want = ref_e4m3((uint8_t)c);
        if ((c & 0x7F) == 0x7F) {
            assert_true(isnan(got));
            /* PyTorch's decoder: exponent all ones, mantissa 111 at bit 20, sign kept. */
            assert_int_equal(q_f32_bits(got), (c & 0x80) ? 0xFFF00000u : 0x7FF00000u);
            continue;
        }
        assert_true(isfinite(got));
        assert_true(fabs(want) <= 448);
        assert_bits(got, (float)want, "e4m3", c); /* (float)want is exact: ≤ 4 significant bits */
    }
}

static void test_e5m2_decode_all_codes(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        const float got = q_fp8_e5m2_to_fp32((uint8_t)c);
        const double want = ref_e5m2((uint8_t)c);
        if (isnan(want)) {
            assert_true(isnan(got));
            /* The binary16 NaN widened with the quiet bit set, sign kept. */
            const uint32_t bits = ((uint32_t)(c & 0x80) << 24) | 0x7FC00000u | ((uint32_t)(c & 3) << 21);
            assert_int_equal(q_f32_bits(got), bits);
            continue;
        }
        assert_bits(got, (float)want, "e5m2", c);
        /* e5m2 is the high byte of a binary16. */
        assert_bits(got, q_fp16_to_fp32((uint16_t)(c << 8)), "e5m2 as f16", c);
    }
}

static void test_decode_known_values(void **state)
{
    (void)state;
    assert_bits(q_fp8_e4m3_to_fp32(0x7E), 448.0f, "e4m3", 0x7E);
    assert_bits(q_fp8_e4m3_to_fp32(0xFE), -448.0f, "e4m3", 0xFE);
    assert_bits(q_fp8_e4m3_to_fp32(0x01), 0x1p-9f, "e4m3", 0x01);
    assert_bits(q_fp8_e4m3_to_fp32(0x07), 7 * 0x1p-9f, "e4m3", 0x07);
    assert_bits(q_fp8_e4m3_to_fp32(0x08), 0x1p-6f, "e4m3", 0x08);
    assert_bits(q_fp8_e4m3_to_fp32(0x38), 1.0f, "e4m3", 0x38);
    assert_bits(q_fp8_e4m3_to_fp32(0xB8), -1.0f, "e4m3", 0xB8);
    assert_bits(q_fp8_e4m3_to_fp32(0x39), 1.125f, "e4m3", 0x39);
    assert_bits(q_fp8_e4m3_to_fp32(0x00), 0.0f, "e4m3", 0x00);
    assert_bits(q_fp8_e4m3_to_fp32(0x80), -0.0f, "e4m3", 0x80);
    assert_true(isnan(q_fp8_e4m3_to_fp32(0x7F)));
    assert_true(isnan(q_fp8_e4m3_to_fp32(0xFF)));
    assert_bits(q_fp8_e4m3_to_fp32(0x78), 256.0f, "e4m3", 0x78); /* 1 1111 000: not Inf in e4m3fn */

    assert_bits(q_fp8_e5m2_to_fp32(0x7B), 57344.0f, "e5m2", 0x7B);
    assert_bits(q_fp8_e5m2_to_fp32(0x7C), INFINITY, "e5m2", 0x7C);
    assert_bits(q_fp8_e5m2_to_fp32(0xFC), -INFINITY, "e5m2", 0xFC);
    assert_bits(q_fp8_e5m2_to_fp32(0x3C), 1.0f, "e5m2", 0x3C);
    assert_bits(q_fp8_e5m2_to_fp32(0xBC), -1.0f, "e5m2", 0xBC);
    assert_bits(q_fp8_e5m2_to_fp32(0x01), 0x1p-16f, "e5m2", 0x01);
    assert_bits(q_fp8_e5m2_to_fp32(0x03), 3 * 0x1p-16f, "e5m2", 0x03);
    assert_bits(q_fp8_e5m2_to_fp32(0x04), 0x1p-14f, "e5m2", 0x04);
    assert_true(isnan(q_fp8_e5m2_to_fp32(0x7D)));
    assert_true(isnan(q_fp8_e5m2_to_fp32(0x7E)));
    assert_true(isnan(q_fp8_e5m2_to_fp32(0x7F)));
    assert_true(isnan(q_fp8_e5m2_to_fp32(0xFF)));
}

static void test_decode_rows(void **state)
{
    (void)state;
    enum { N = 256 + 37 };
    uint8_t src[N];
    float dst[N + 1];
    for (int i = 0; i < N; i++)
        src[i] = (uint8_t)(i * 7 + 3);
    for (int kind = 0; kind < 2; kind++) {
        float (*one)(uint8_t) = kind ? q_fp8_e5m2_to_fp32 : q_fp8_e4m3_to_fp32;
        void (*row)(const uint8_t *, float *, int64_t) = kind ? q_fp8_e5m2_to_fp32_row : q_fp8_e4m3_to_fp32_row;
        for (int n = 0; n <= N; n += (n < 20 ? 1 : 91)) {
            for (int i = 0; i <= N; i++)
                dst[i] = 12345.0f;
            row(src, dst, n);
            for (int i = 0; i < n; i++)
                assert_int_equal(q_f32_bits(dst[i]), q_f32_bits(one(src[i])));
            for (int i = n; i <= N; i++)
                assert_true(dst[i] == 12345.0f); /* nothing written past n */
        }
    }
}

/* ---- encoding ------------------------------------------------------------------------------ */

static void test_e4m3_encode_roundtrip(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        if ((c & 0x7F) == 0x7F)
            continue;
        const float v = q_fp8_e4m3_to_fp32((uint8_t)c);
        const uint8_t e = q_fp32_to_fp8_e4m3(v);
        assert_int_equal(e, c); /* every finite code, -0 (0x80) included, is its own encoding */
        assert_int_equal(q_f32_bits(q_fp8_e4m3_to_fp32(e)), q_f32_bits(v));
    }
    /* e5m2 values inside the e4m3 range go through the encoder exactly when e4m3 holds them:
     * e4m3 has more mantissa bits, so normals from 2^-6 to 448 are exact. */
    for (int c = 0; c < 256; c++) {
        const float v = q_fp8_e5m2_to_fp32((uint8_t)c);
        if (!(fabsf(v) >= 0x1p-6f && fabsf(v) <= 448.0f))
            continue;
        assert_int_equal(q_f32_bits(q_fp8_e4m3_to_fp32(q_fp32_to_fp8_e4m3(v))), q_f32_bits(v));
    }
}

/* The midpoint between each pair of adjacent finite codes goes to the code with the even
 * mantissa (the even code); one float ulp either side goes to the nearer code. */
static void test_e4m3_encode_ties_to_even(void **state)
{
    (void)state;
    for (int sgn = 0; sgn < 2; sgn++) {
        const uint8_t s = sgn ? 0x80 : 0;
        for (int k = 0; k < 0x7E; k++) {
            const double lo = ref_e4m3((uint8_t)k), hi = ref_e4m3((uint8_t)(k + 1));
            const float mid = (float)((lo + hi) / 2); /* ≤ 5 significant bits: exact */
            assert_true((double)mid * 2 == lo + hi);
            const float m = sgn ? -mid : mid;
            const uint8_t even = (uint8_t)((k & 1) ? k + 1 : k);
            assert_encode(m, s | even);
            assert_encode(nextafterf(m, 0.0f), (uint8_t)(s | k));
            assert_encode(nextafterf(m, sgn ? -INFINITY : INFINITY), (uint8_t)(s | (k + 1)));
        }
    }
    /* By hand: 1 + 1/16 lies between 1 (0x38, m = 000) and 1.125 (0x39): to 0x38;
     * 1 + 3/16 between 0x39 and 1.25 (0x3A, m = 010): to 0x3A; 7.5·2^-9 between 0x07 and 0x08. */
    assert_encode(1.0625f, 0x38);
    assert_encode(1.1875f, 0x3A);
    assert_encode(-1.1875f, 0xBA);
    assert_encode(248.0f, 0x78);  /* between 240 (0x77, m = 111) and 256 (0x78, m = 000) */
    assert_encode(232.0f, 0x76);  /* between 224 (0x76, m = 110) and 240 (0x77) */
    assert_encode(240.0f, 0x77);  /* exact */
    assert_encode(7.5f * 0x1p-9f, 0x08);
}

static void test_e4m3_encode_subnormals(void **state)
{
    (void)state;
    assert_encode(0.0f, 0x00);
    assert_encode(-0.0f, 0x80);
    assert_encode(FLT_TRUE_MIN, 0x00);
    assert_encode(-FLT_TRUE_MIN, 0x80);
    assert_encode(FLT_MIN, 0x00);            /* fp32 normals far below e4m3's range */
    assert_encode(0x1p-11f, 0x00);
    assert_encode(0x1p-10f, 0x00);           /* half of 2^-9: tie to the even 0 */
    assert_encode(nextafterf(0x1p-10f, 1.0f), 0x01);
    assert_encode(-nextafterf(0x1p-10f, 1.0f), 0x81);
    assert_encode(0x1p-9f, 0x01);
    assert_encode(3 * 0x1p-10f, 0x02);       /* 1.5 steps: tie between 1 and 2, to 2 */
    assert_encode(5 * 0x1p-10f, 0x02);       /* 2.5 steps: to 2 */
    assert_encode(7 * 0x1p-10f, 0x04);       /* 3.5 steps: to 4 */
    assert_encode(nextafterf(7 * 0x1p-10f, 0.0f), 0x03);
    assert_encode(7 * 0x1p-9f, 0x07);        /* largest subnormal */
    assert_encode(15 * 0x1p-10f, 0x08);      /* 7.5 steps: to 8, which is 2^-6, the first normal */
    assert_encode(nextafterf(0x1p-6f, 0.0f), 0x08);
    assert_encode(0x1p-6f, 0x08);
    assert_encode(0x1p-6f + 0x1p-10f, 0x08); /* half a step above 2^-6: tie to 0x08 */
    assert_encode(0x1p-6f + 3 * 0x1p-10f, 0x0A);
    /* Every fp32 subnormal rounds to ±0. */
    for (uint32_t u = 1; u < 0x800000u; u += 4099) {
        assert_encode(q_f32_from_bits(u), 0x00);
        assert_encode(q_f32_from_bits(u | 0x80000000u), 0x80);
    }
}

static void test_e4m3_encode_overflow_is_nan(void **state)
{
    (void)state;
    assert_encode(448.0f, 0x7E);
    assert_encode(-448.0f, 0xFE);
    assert_encode(460.0f, 0x7E);
    assert_encode(464.0f, 0x7E);                            /* midpoint 448/480: tie to even 448 */
    assert_encode(-464.0f, 0xFE);
    assert_encode(nextafterf(464.0f, INFINITY), 0x7F);      /* rounds to 480: not representable */
    assert_encode(-nextafterf(464.0f, INFINITY), 0xFF);
    assert_encode(nextafterf(480.0f, 0.0f), 0x7F);
    assert_encode(480.0f, 0x7F);
    assert_encode(1e4f, 0x7F);
    assert_encode(-1e4f, 0xFF);
    assert_encode(FLT_MAX, 0x7F);
    assert_encode(-FLT_MAX, 0xFF);
    assert_encode(INFINITY, 0x7F);
    assert_encode(-INFINITY, 0xFF);
    assert_encode(NAN, 0x7F);
    assert_encode(-NAN, 0xFF);
    assert_encode(q_f32_from_bits(0x7F800001u), 0x7F);      /* signalling NaN */
    assert_encode(q_f32_from_bits(0xFFFFFFFFu), 0xFF);
}

/* Every float when QKIT_LONG is set, else every 251st bit pattern (a prime stride walks through all
 * mantissa patterns), plus a window of floats around every code and every midpoint. */
static void test_e4m3_encode_sweep(void **state)
{
    (void)state;
    const int full = getenv("QKIT_LONG") != NULL;
    const uint64_t stride = full ? 1 : 251;
    for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += stride) {
        const float x = q_f32_from_bits((uint32_t)u);
        if (!encode_ok(x))
            fail_msg("encode 0x%08x (%a): got 0x%02x", (uint32_t)u, (double)x, q_fp32_to_fp8_e4m3(x));
    }
    for (int k = 0; k <= 0x7E; k++) {
        const double v = ref_e4m3((uint8_t)k);
        const double next = k < 0x7E ? ref_e4m3((uint8_t)(k + 1)) : 480.0;
        const float pts[2] = {(float)v, (float)((v + next) / 2)};
        for (int p = 0; p < 2; p++) {
            const uint32_t b = q_f32_bits(pts[p]);
            for (int32_t off = -300; off <= 300; off++) {
                const uint32_t ub = b + (uint32_t)off;
                if (b == 0 && off < 0)
                    continue;
                const float xs[2] = {q_f32_from_bits(ub), q_f32_from_bits(ub | 0x80000000u)};
                for (int i = 0; i < 2; i++)
                    if (!encode_ok(xs[i]))
                        fail_msg("encode 0x%08x (%a): got 0x%02x", q_f32_bits(xs[i]), (double)xs[i],
                                 q_fp32_to_fp8_e4m3(xs[i]));
            }
        }
    }
    if (!full)
        print_message("e4m3 encoder: sampled every 251st float (QKIT_LONG=1 checks all 2^32)\n");
}

/* ---- block-scaled dequantization ----------------------------------------------------------- */

/* out[r][c] = fp8(w[r][c]) * s[r/br][c/bc] with the reference decoders, one float product. */
static float naive_at(int kind, const uint8_t *w, const float *s, int64_t n_rows, int64_t n_cols,
                      int64_t br, int64_t bc, int64_t r, int64_t c)
{
    const int64_t gr = (n_rows + br - 1) / br, gc = (n_cols + bc - 1) / bc;
    assert_true(r / br < gr && c / bc < gc);
    const uint8_t code = w[r * n_cols + c];
    const float v = (float)(kind == Q_FP8_E5M2 ? ref_e5m2(code) : ref_e4m3(code));
    const float sc = s[(r / br) * gc + c / bc];
    return v * sc;
}

/* A random matrix (every code, NaN and Inf included, mostly ordinary ones) and scale grid. */
static void make_case(uint64_t seed, int64_t n_rows, int64_t n_cols, int64_t br, int64_t bc,
                      uint8_t **w, float **s)
{
    const int64_t gr = (n_rows + br - 1) / br, gc = (n_cols + bc - 1) / bc;
    *w = xmalloc((size_t)(n_rows * n_cols));
    *s = xmalloc((size_t)(gr * gc) * sizeof(float));
    uint64_t st = seed;
    for (int64_t i = 0; i < n_rows * n_cols; i++)
        (*w)[i] = (uint8_t)(tu_rand(&st) >> 56);
    for (int64_t i = 0; i < gr * gc; i++) {
        /* Scales like DeepSeek's (amax / 448, about 1e-5 .. 1e-2) with full mantissas, a power of
         * two, and one that makes the largest products overflow or go subnormal. */
        const float f = 1.0f + 0.5f * tu_randf(&st);
        (*s)[i] = i % 5 == 3 ? 0x1p-7f : i % 7 == 6 ? (i % 2 ? 1e36f : 1e-40f) : f * 1e-4f * (float)(1 + i % 97);
    }
}

static void check_rows(int kind, const uint8_t *w, const float *s, int64_t n_rows, int64_t n_cols,
                       int64_t br, int64_t bc, int64_t row0, int64_t nr)
{
    float *out = xmalloc((size_t)((nr + 1) * n_cols) * sizeof(float));
    for (int64_t i = 0; i < (nr + 1) * n_cols; i++)
        out[i] = -12345.0f;
    q_fp8_dequant_rows((q_fp8_kind)kind, w, s, n_cols, br, bc, row0, nr, out);
    for (int64_t i = 0; i < nr; i++)
        for (int64_t c = 0; c < n_cols; c++) {
            const int64_t r = row0 + i;
            const float want = naive_at(kind, w, s, n_rows, n_cols, br, bc, r, c);
            const float got = out[i * n_cols + c];
            if (!same_float(got, want))
                fail_msg("kind %d %lldx%lld blocks %lldx%lld: (%lld, %lld) got %a want %a", kind,
                         (long long)n_rows, (long long)n_cols, (long long)br, (long long)bc, (long long)r,
                         (long long)c, (double)got, (double)want);
            const float at = q_fp8_dequant_at((q_fp8_kind)kind, w, s, n_cols, br, bc, r, c);
            assert_int_equal(q_f32_bits(at), q_f32_bits(got)); /* same expression: same bits, NaN too */
        }
    for (int64_t i = nr * n_cols; i < (nr + 1) * n_cols; i++)
        assert_true(out[i] == -12345.0f); /* nothing written past nr rows */
    free(out);
}

/* 130 × 200 with 128 × 128 blocks: a 2 × 2 grid whose last row holds 2 rows and whose last column
 * holds 72 columns. Windows of rows across the block boundary, at the edges, and empty. */
static void test_dequant_partial_blocks(void **state)
{
    (void)state;
    const int64_t R = 130, C = 200, B = 128;
    uint8_t *w;
    float *s;
    make_case(0x5EED, R, C, B, B, &w, &s);
    static const int64_t windows[][2] = {{0, 130}, {0, 1}, {127, 3}, {128, 2}, {129, 1}, {64, 0}, {100, 30}};
    for (int kind = 0; kind < 2; kind++)
        for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++)
            check_rows(kind, w, s, R, C, B, B, windows[i][0], windows[i][1]);
    free(w);
    free(s);
}

/* Rectangular and tiny blocks, a matrix narrower than one block, and exact multiples. */
static void test_dequant_block_shapes(void **state)
{
    (void)state;
    static const int64_t shapes[][4] = {
        {7, 11, 3, 4}, {7, 11, 1, 1}, {5, 5, 128, 128}, {256, 256, 128, 128},
        {33, 300, 16, 128}, {129, 1, 128, 128}, {1, 129, 128, 64}, {12, 0, 4, 4},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int64_t R = shapes[i][0], C = shapes[i][1], br = shapes[i][2], bc = shapes[i][3];
        uint8_t *w;
        float *s;
        make_case(0xF8 + i, R, C, br, bc, &w, &s);
        for (int kind = 0; kind < 2; kind++) {
            check_rows(kind, w, s, R, C, br, bc, 0, R);
            check_rows(kind, w, s, R, C, br, bc, R / 2, R - R / 2);
        }
        free(w);
        free(s);
    }
}

/* A transposed gather through q_fp8_dequant_at equals the transpose of the rows. */
static void test_dequant_at_transposed(void **state)
{
    (void)state;
    const int64_t R = 130, C = 200, B = 128;
    uint8_t *w;
    float *s;
    make_case(0xA7, R, C, B, B, &w, &s);
    float *rows = xmalloc((size_t)(R * C) * sizeof(float));
    float *cols = xmalloc((size_t)(R * C) * sizeof(float));
    q_fp8_dequant_rows(Q_FP8_E4M3, w, s, C, B, B, 0, R, rows);
    for (int64_t c = 0; c < C; c++)
        for (int64_t r = 0; r < R; r++)
            cols[c * R + r] = q_fp8_dequant_at(Q_FP8_E4M3, w, s, C, B, B, r, c);
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++)
            assert_int_equal(q_f32_bits(cols[c * R + r]), q_f32_bits(rows[r * C + c]));
    /* By hand: code 0x38 (1.0) times its block's scale, in each of the four blocks. */
    static const int64_t at[4][2] = {{0, 0}, {5, 150}, {128, 3}, {129, 199}};
    for (int i = 0; i < 4; i++) {
        w[at[i][0] * C + at[i][1]] = 0x38;
        assert_int_equal(q_f32_bits(q_fp8_dequant_at(Q_FP8_E4M3, w, s, C, B, B, at[i][0], at[i][1])),
                         q_f32_bits(s[i]));
    }
    free(rows);
    free(cols);
    free(w);
    free(s);
}

/* ---- FP8 checkpoints end to end: synth --dtype fp8, convert, the engine --------------------- */

/* Small checkpoints whose scale grids have partial blocks: hidden 192 (128 + 64), feed-forward
 * widths 160 (128 + 32), q 192 rows, k/v 96. Llama permutes q/k; the MoE model has a dense block
 * (mlp_only_layers) between two MoE blocks. */
#define FP8_COMMON "\"hidden_size\": 192, \"intermediate_size\": 160, \"num_attention_heads\": 4, " \
                   "\"num_key_value_heads\": 2, \"vocab_size\": 300, \"rms_norm_eps\": 1e-05, "   \
                   "\"rope_theta\": 10000.0, \"max_position_embeddings\": 256"
static const char FP8_LLAMA[] = "{\"architectures\": [\"LlamaForCausalLM\"], " FP8_COMMON
                                ", \"num_hidden_layers\": 2, \"tie_word_embeddings\": false}";
static const char FP8_QWEN3[] = "{\"architectures\": [\"Qwen3ForCausalLM\"], " FP8_COMMON
                                ", \"num_hidden_layers\": 2, \"head_dim\": 48, \"tie_word_embeddings\": true}";
static const char FP8_MOE[] = "{\"architectures\": [\"Qwen3MoeForCausalLM\"], " FP8_COMMON
                              ", \"num_hidden_layers\": 3, \"head_dim\": 48, \"tie_word_embeddings\": false, "
                              "\"num_experts\": 4, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 160, "
                              "\"norm_topk_prob\": true, \"mlp_only_layers\": [1]}";

/* synth of config_json into a fresh folder: FP8 (or another dtype), generated tokenizer. */
static const char *synth_dir(const char *name, const char *config_json, st_dtype dtype, uint64_t seed)
{
    char cfg_dir[64], out[64];
    snprintf(cfg_dir, sizeof cfg_dir, "%s-config", name);
    const char *cfg = tu_join(tu_mkdir(cfg_dir), "config.json");
    tu_write(cfg, config_json, strlen(config_json));
    snprintf(out, sizeof out, "%s", name);
    sy_options o = {.config_path = cfg, .out_dir = tu_tmp(out), .tokenizer_gen = 1, .dtype = dtype, .seed = seed};
    sy_result r;
    qk_err err = {{0}};
    if (sy_synth(&o, &r, &err))
        fail_msg("sy_synth: %s", err.msg);
    return tu_tmp(out);
}

static void convert_ok(const char *dir, const char *out, const char *outtype)
{
    cv_options o;
    cv_options_init(&o);
    o.outtype = outtype;
    qk_err err = {{0}};
    if (cv_convert(dir, out, &o, NULL, &err))
        fail_msg("convert %s: %s", dir, err.msg);
}

static gguf_ctx *open_gguf(const char *path)
{
    gguf_ctx *g;
    qk_err err = {{0}};
    if (gguf_open(&g, path, &err))
        fail_msg("%s", err.msg);
    return g;
}

/* GGUF base name → HF name below model.layers.N. (or below the root); %d: the expert. */
static const struct {
    const char *gguf, *hf;
} FP8_NAMES[] = {
    {"token_embd", "model.embed_tokens"}, {"output_norm", "model.norm"}, {"output", "lm_head"},
    {"attn_norm", "input_layernorm"}, {"ffn_norm", "post_attention_layernorm"},
    {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"}, {"attn_q_norm", "self_attn.q_norm"},
    {"attn_k_norm", "self_attn.k_norm"}, {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"}, {"ffn_gate_inp", "mlp.gate"},
    {"ffn_gate_exps", "mlp.experts.%d.gate_proj"}, {"ffn_up_exps", "mlp.experts.%d.up_proj"},
    {"ffn_down_exps", "mlp.experts.%d.down_proj"},
};

/* The HF name of expert e's part (e ignored for plain tensors) of a GGUF tensor. */
static void hf_name(const char *gguf_name, int e, char *out, size_t size)
{
    int layer = -1, used = 0;
    if (sscanf(gguf_name, "blk.%d.%n", &layer, &used) == 1)
        gguf_name += used;
    const char *dot = strrchr(gguf_name, '.');
    for (size_t i = 0; i < sizeof FP8_NAMES / sizeof FP8_NAMES[0]; i++) {
        if (strlen(FP8_NAMES[i].gguf) != (size_t)(dot - gguf_name) ||
            strncmp(FP8_NAMES[i].gguf, gguf_name, (size_t)(dot - gguf_name)))
            continue;
        char base[96];
        snprintf(base, sizeof base, FP8_NAMES[i].hf, e);
        if (layer >= 0)
            snprintf(out, size, "model.layers.%d.%s%s", layer, base, dot);
        else
            snprintf(out, size, "%s%s", base, dot);
        return;
    }
    fail_msg("no checkpoint name for %s", gguf_name);
}

/* LlamaModel.permute: in each head of d rows, output row k takes source row k/2 (k even) or
 * d/2 + k/2 (k odd). */
static int64_t unpermuted_row(int64_t r, int64_t rows, int64_t heads)
{
    const int64_t d = rows / heads, k = r % d;
    return r - k + (k % 2 ? d / 2 + k / 2 : k / 2);
}

static float st_float(const st_tensor *s, int64_t i)
{
    const uint8_t *p = (const uint8_t *)s->data;
    uint16_t h;
    float f;
    switch (s->dtype) {
    case ST_F32: memcpy(&f, p + 4 * i, 4); return f;
    case ST_F16: memcpy(&h, p + 2 * i, 2); return q_fp16_to_fp32(h);
    case ST_BF16: memcpy(&h, p + 2 * i, 2); return q_bf16_to_fp32(h);
    default: fail_msg("%s: unexpected dtype %s", s->name, st_dtype_name(s->dtype)); return 0;
    }
}

/* Element (r, c) of a checkpoint tensor [rows][cols] as float32: FP8 code × its block's scale in
 * one float32 product, or the BF16/F32 value. */
static float hf_value(const st_model *m, const st_tensor *s, int64_t r, int64_t c, int64_t cols)
{
    if (s->dtype != ST_F8_E4M3)
        return st_float(s, r * cols + c);
    char name[160];
    snprintf(name, sizeof name, "%s_scale_inv", s->name);
    const st_tensor *sc = st_model_find(m, name);
    assert_non_null(sc);
    const int64_t gc = (cols + 127) / 128;
    const float code = q_fp8_e4m3_to_fp32(((const uint8_t *)s->data)[r * cols + c]);
    const float scale = st_float(sc, (r / 128) * gc + c / 128);
    return code * scale;
}

/* Every tensor of the f32 GGUF equals the checkpoint's values, FP8 ones dequantized here,
 * permuted (llama q/k) and stacked (experts, expert e after expert e - 1) as the GGUF lays them
 * out; every checkpoint tensor is used. Returns how many FP8 weights were compared. */
static size_t check_f32_gguf(const char *dir, const char *path, int64_t n_head, int64_t n_head_kv)
{
    st_model *m;
    qk_err err = {{0}};
    if (st_model_open(&m, dir, &err))
        fail_msg("%s", err.msg);
    gguf_ctx *g = open_gguf(path);
    const char *arch;
    assert_int_equal(gguf_get_str(g, "general.architecture", &arch), QK_OK);
    const bool llama = !strcmp(arch, "llama");
    size_t n_fp8 = 0, n_src = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor_info *t = gguf_tensor(g, i);
        assert_int_equal(t->type, Q_TYPE_F32);
        const int64_t cols = t->ne[0], rows = t->n_dims >= 2 ? t->ne[1] : 1;
        const int64_t n_exp = t->n_dims == 3 ? t->ne[2] : 1;
        int64_t heads = 0;
        if (llama && strstr(t->name, ".attn_q."))
            heads = n_head;
        if (llama && strstr(t->name, ".attn_k."))
            heads = n_head_kv;
        const float *got = t->data;
        for (int e = 0; e < n_exp; e++) {
            char name[160];
            hf_name(t->name, e, name, sizeof name);
            const st_tensor *s = st_model_find(m, name);
            if (!s)
                fail_msg("%s: no checkpoint tensor %s", t->name, name);
            assert_int_equal(s->n_elements, (uint64_t)(rows * cols));
            n_src += 1 + (s->dtype == ST_F8_E4M3);
            n_fp8 += s->dtype == ST_F8_E4M3;
            for (int64_t r = 0; r < rows; r++) {
                const int64_t src = heads ? unpermuted_row(r, rows, heads) : r;
                for (int64_t c = 0; c < cols; c++) {
                    const float want = hf_value(m, s, src, c, cols);
                    const float have = got[(e * rows + r) * cols + c];
                    if (q_f32_bits(have) != q_f32_bits(want))
                        fail_msg("%s expert %d (%lld, %lld): %a, want %a (from %s row %lld)", t->name, e,
                                 (long long)r, (long long)c, (double)have, (double)want, name, (long long)src);
                }
            }
        }
    }
    assert_int_equal(n_src, st_model_n_tensors(m));
    gguf_close(g);
    st_model_close(m);
    return n_fp8;
}

/* The f16 GGUF is the f32 one rounded to f16, except 1-D tensors and the router, kept in F32. */
static void check_f16_gguf(const char *f16_path, const char *f32_path)
{
    gguf_ctx *h = open_gguf(f16_path), *f = open_gguf(f32_path);
    assert_int_equal(gguf_n_tensors(h), gguf_n_tensors(f));
    for (uint64_t i = 0; i < gguf_n_tensors(h); i++) {
        const gguf_tensor_info *th = gguf_tensor(h, i), *tf = gguf_find_tensor(f, th->name);
        assert_non_null(tf);
        assert_int_equal(th->n_dims, tf->n_dims);
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
            assert_int_equal(th->ne[d], tf->ne[d]);
        const bool keep = th->n_dims == 1 || strstr(th->name, ".ffn_gate_inp.");
        assert_int_equal(th->type, keep ? Q_TYPE_F32 : Q_TYPE_F16);
        if (keep) {
            assert_memory_equal(th->data, tf->data, tf->nbytes);
            continue;
        }
        const float *x = tf->data;
        const uint16_t *y = th->data;
        for (uint64_t k = 0; k < tf->nbytes / 4; k++)
            if (y[k] != q_fp32_to_fp16(x[k]))
                fail_msg("%s[%llu]: f16 %04x, want %04x", th->name, (unsigned long long)k, y[k],
                         q_fp32_to_fp16(x[k]));
    }
    gguf_close(h);
    gguf_close(f);
}

static void convert_and_check(const char *name, const char *config_json, int64_t n_head, int64_t n_head_kv,
                              size_t want_fp8)
{
    const char *dir = synth_dir(name, config_json, ST_F8_E4M3, 21);
    char f32[64], f16[64];
    snprintf(f32, sizeof f32, "%s-f32.gguf", name);
    snprintf(f16, sizeof f16, "%s-f16.gguf", name);
    char p32[4096], p16[4096];
    snprintf(p32, sizeof p32, "%s", tu_tmp(f32));
    snprintf(p16, sizeof p16, "%s", tu_tmp(f16));
    convert_ok(dir, p32, "f32");
    assert_int_equal(check_f32_gguf(dir, p32, n_head, n_head_kv), want_fp8);
    convert_ok(dir, p16, "f16");
    check_f16_gguf(p16, p32);
}

static void test_fp8_checkpoint_llama_converts_exactly(void **state)
{
    (void)state;
    convert_and_check("fp8-llama", FP8_LLAMA, 4, 2, 2 * 7);
}

/* Experts stacked in order; the router and norms come from BF16, the dense block's MLP is FP8. */
static void test_fp8_checkpoint_qwen3_moe_converts_exactly(void **state)
{
    (void)state;
    convert_and_check("fp8-moe", FP8_MOE, 4, 2, 3 * 4 + 2 * 4 * 3 + 3);
}

/* ---- bad FP8 inputs: one-line errors, status 2-class, no output ---------------------------- */

typedef enum { B_DROP, B_RESHAPE, B_POKE, B_ADD } bad_op;

typedef struct {
    const char *name;
    bad_op op;
    const char *tensor;
    st_dtype dtype; /* B_RESHAPE, B_ADD: the new tensor's dtype and shape (data: ones) */
    int n_dims;
    int64_t shape[2];
    float value;    /* B_POKE: written as element 1 */
    int code;
    const char *fragment;
} bad_case;

#define L0 "model.layers.0."
static const bad_case BAD_FP8[] = {
    {"no-scale", B_DROP, L0 "self_attn.k_proj.weight_scale_inv", 0, 0, {0}, 0, QK_EFORMAT,
     "FP8 tensor '" L0 "self_attn.k_proj.weight' has no scale tensor '" L0 "self_attn.k_proj.weight_scale_inv'"},
    {"scale-transposed", B_RESHAPE, L0 "self_attn.k_proj.weight_scale_inv", ST_F32, 2, {2, 1}, 0, QK_EFORMAT,
     "scale tensor '" L0 "self_attn.k_proj.weight_scale_inv' must be F32, BF16 or F16 of shape [1, 2]"},
    {"scale-1d", B_RESHAPE, L0 "mlp.down_proj.weight_scale_inv", ST_F32, 1, {4}, 0, QK_EFORMAT,
     "scale tensor '" L0 "mlp.down_proj.weight_scale_inv' must be F32, BF16 or F16 of shape [2, 2]"},
    {"scale-too-small", B_RESHAPE, L0 "mlp.gate_proj.weight_scale_inv", ST_F32, 2, {1, 1}, 0, QK_EFORMAT,
     "of shape [2, 2] for the 128 x 128 blocks of '" L0 "mlp.gate_proj.weight'"},
    {"scale-dtype", B_RESHAPE, L0 "self_attn.q_proj.weight_scale_inv", ST_I32, 2, {2, 2}, 0, QK_EFORMAT,
     "scale tensor '" L0 "self_attn.q_proj.weight_scale_inv' must be F32, BF16 or F16"},
    {"scale-nan", B_POKE, L0 "self_attn.o_proj.weight_scale_inv", 0, 0, {0}, NAN, QK_ERANGE,
     "scale tensor '" L0 "self_attn.o_proj.weight_scale_inv': value 1 is not finite"},
    {"scale-inf", B_POKE, L0 "mlp.up_proj.weight_scale_inv", 0, 0, {0}, -INFINITY, QK_ERANGE,
     "scale tensor '" L0 "mlp.up_proj.weight_scale_inv': value 1 is not finite"},
    {"scale-of-bf16", B_ADD, "model.embed_tokens.weight_scale_inv", ST_F32, 2, {3, 2}, 0, QK_EFORMAT,
     "scale tensor 'model.embed_tokens.weight_scale_inv' belongs to no FP8 weight"},
    {"scale-of-nothing", B_ADD, L0 "mlp.extra.weight_scale_inv", ST_F32, 2, {1, 1}, 0, QK_EFORMAT,
     "scale tensor '" L0 "mlp.extra.weight_scale_inv' belongs to no FP8 weight"},
};

/* A buffer of ones in dtype (F32, BF16, F16, I32). */
static void *ones(st_dtype dtype, uint64_t n)
{
    uint8_t *p = xmalloc((size_t)n * 4);
    for (uint64_t i = 0; i < n; i++) {
        const float f = 1.0f;
        const int32_t one = 1;
        const uint16_t h = dtype == ST_F16 ? q_fp32_to_fp16(1.0f) : q_fp32_to_bf16(1.0f);
        if (dtype == ST_F32)
            memcpy(p + 4 * i, &f, 4);
        else if (dtype == ST_I32)
            memcpy(p + 4 * i, &one, 4);
        else
            memcpy(p + 2 * i, &h, 2);
    }
    return p;
}

/* A copy of the FP8 checkpoint base (one model.safetensors) with one change. */
static const char *bad_dir(const char *base, const bad_case *bc)
{
    const char *dir = tu_mkdir(bc->name);
    static const char *const files[] = {"config.json", "tokenizer.model", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char from[4096];
        snprintf(from, sizeof from, "%s", tu_join(base, files[i]));
        tu_copy(from, tu_join(dir, files[i]));
    }
    st_model *m;
    qk_err err = {{0}};
    if (st_model_open(&m, tu_join(base, "model.safetensors"), &err))
        fail_msg("%s", err.msg);
    const size_t n = st_model_n_tensors(m);
    st_tensor_spec *specs = xmalloc((n + 1) * sizeof *specs);
    const void **data = xmalloc((n + 1) * sizeof *data);
    void *owned = NULL;
    size_t k = 0;
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_model_tensor(m, i);
        st_tensor_spec s = {.name = t->name, .dtype = t->dtype, .n_dims = t->n_dims};
        memcpy(s.shape, t->shape, sizeof s.shape);
        const void *d = t->data;
        if (!strcmp(t->name, bc->tensor)) {
            found = true;
            if (bc->op == B_DROP)
                continue;
            if (bc->op == B_RESHAPE) {
                s.dtype = bc->dtype, s.n_dims = bc->n_dims;
                memset(s.shape, 0, sizeof s.shape);
                memcpy(s.shape, bc->shape, sizeof bc->shape);
                d = owned = ones(bc->dtype, (uint64_t)(bc->shape[0] * (bc->n_dims == 2 ? bc->shape[1] : 1)));
            } else if (bc->op == B_POKE) {
                assert_int_equal(t->dtype, ST_F32);
                owned = xmalloc(t->nbytes);
                memcpy(owned, t->data, t->nbytes);
                memcpy((uint8_t *)owned + 4, &bc->value, 4);
                d = owned;
            }
        }
        specs[k] = s;
        data[k++] = d;
    }
    if (bc->op == B_ADD) {
        assert_false(found);
        found = true;
        specs[k] = (st_tensor_spec){.name = bc->tensor, .dtype = bc->dtype, .n_dims = bc->n_dims,
                                    .shape = {bc->shape[0], bc->shape[1]}};
        data[k++] = owned = ones(bc->dtype, (uint64_t)(bc->shape[0] * bc->shape[1]));
    }
    assert_true(found);
    if (st_write_file(tu_join(dir, "model.safetensors"), specs, data, k, NULL, NULL, 0, &err))
        fail_msg("%s", err.msg);
    free(owned);
    free(specs);
    free(data);
    st_model_close(m);
    return dir;
}

static int dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n == 0;
}

/* Through the library (status and message) and, with $QKIT, through `qkit convert` (exit code 2,
 * one line on stderr); nothing is left in the output folder either way. */
static void test_fp8_bad_inputs(void **state)
{
    (void)state;
    char base[4096];
    snprintf(base, sizeof base, "%s", synth_dir("fp8-bad-base", FP8_LLAMA, ST_F8_E4M3, 4));
    const char *qkit = getenv("QKIT");
    if (!qkit || !tu_exists(qkit)) {
        print_message("$QKIT is not set: the command-line half of the bad-input cases is skipped\n");
        qkit = NULL;
    }
    for (size_t i = 0; i < sizeof BAD_FP8 / sizeof BAD_FP8[0]; i++) {
        const bad_case *bc = &BAD_FP8[i];
        char dir[4096], out_dir[4096], out[4096], name[96];
        snprintf(dir, sizeof dir, "%s", bad_dir(base, bc));
        snprintf(name, sizeof name, "%s-out", bc->name);
        snprintf(out_dir, sizeof out_dir, "%s", tu_mkdir(name));
        snprintf(out, sizeof out, "%s", tu_join(out_dir, "model.gguf"));
        cv_options o;
        cv_options_init(&o);
        o.outtype = "f32";
        qk_err err = {{0}};
        const int rc = cv_convert(dir, out, &o, NULL, &err);
        if (rc != bc->code || !strstr(err.msg, bc->fragment))
            fail_msg("%s: expected %d with \"%s\", got %d: %s", bc->name, bc->code, bc->fragment, rc, err.msg);
        tu_assert_msg(err.msg, bc->fragment);
        assert_true(dir_is_empty(out_dir));
        if (!qkit)
            continue;
        char cmd[16384], errf[4096];
        snprintf(name, sizeof name, "%s.stderr", bc->name);
        snprintf(errf, sizeof errf, "%s", tu_tmp(name));
        snprintf(cmd, sizeof cmd, "'%s' convert '%s' -o '%s' --outtype f32 >/dev/null 2>'%s'", qkit, dir, out, errf);
        const int st = system(cmd);
        assert_true(WIFEXITED(st));
        if (WEXITSTATUS(st) != 2)
            fail_msg("%s: qkit convert exited %d", bc->name, WEXITSTATUS(st));
        size_t len;
        char *text = tu_read(errf, &len);
        text = realloc(text, len + 1);
        text[len] = 0;
        assert_true(len > 0 && text[len - 1] == '\n' && strchr(text, '\n') == text + len - 1);
        if (!strstr(text, bc->fragment))
            fail_msg("%s: stderr '%s' lacks '%s'", bc->name, text, bc->fragment);
        free(text);
        assert_true(dir_is_empty(out_dir));
    }
}

/* ---- the engine on an FP8 folder ------------------------------------------------------------ */

#define FP8_N_TOK 24

/* logits [FP8_N_TOK][n_vocab], malloc'd */
static float *fp8_logits(const eng_model *m)
{
    int32_t tok[FP8_N_TOK];
    for (int i = 0; i < FP8_N_TOK; i++)
        tok[i] = (i * 37 + 5) % m->n_vocab;
    float *logits = xmalloc(sizeof(float) * FP8_N_TOK * (size_t)m->n_vocab);
    eng_ctx *c;
    qk_err err = {{0}};
    if (eng_ctx_create(&c, m, FP8_N_TOK, &err) || eng_forward(c, tok, FP8_N_TOK, logits, &err))
        fail_msg("%s", err.msg);
    eng_ctx_free(c);
    return logits;
}

/* The HF folder read by the engine (FP8 weights dequantized in memory, no permutation) and the
 * f32 GGUF converted from it give the same logits, within 1e-5 of the largest. */
static void engine_matches_gguf(const char *name, const char *config_json)
{
    const char *dir = synth_dir(name, config_json, ST_F8_E4M3, 9);
    char gname[64], gpath[4096];
    snprintf(gname, sizeof gname, "%s.gguf", name);
    snprintf(gpath, sizeof gpath, "%s", tu_tmp(gname));
    convert_ok(dir, gpath, "f32");
    eng_model hm, gm;
    cv_plan *plan;
    tok_vocab *vocab;
    qk_err err = {{0}};
    if (cv_engine_open_hf(dir, &hm, &plan, &vocab, &err))
        fail_msg("%s", err.msg);
    gguf_ctx *g = open_gguf(gpath);
    if (eng_model_load_gguf(&gm, g, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(hm.n_vocab, gm.n_vocab);
    float *a = fp8_logits(&hm), *b = fp8_logits(&gm);
    double big = 0, diff = 0;
    for (size_t i = 0; i < (size_t)FP8_N_TOK * (size_t)gm.n_vocab; i++) {
        assert_true(isfinite(a[i]) && isfinite(b[i]));
        big = fmax(big, fabs(b[i]));
        diff = fmax(diff, fabs((double)a[i] - b[i]));
    }
    if (!(big > 0) || diff > 1e-5 * big)
        fail_msg("%s: logits differ by %g (largest %g)", name, diff, big);
    free(a);
    free(b);
    eng_model_free_owned(&gm);
    gguf_close(g);
    eng_model_free_owned(&hm);
    tok_vocab_free(vocab);
    cv_plan_free(plan);
}

static void test_fp8_engine_llama_qwen3(void **state)
{
    (void)state;
    engine_matches_gguf("fp8-eng-llama", FP8_LLAMA);
    engine_matches_gguf("fp8-eng-qwen3", FP8_QWEN3);
}

static void test_fp8_engine_qwen3_moe(void **state)
{
    (void)state;
    engine_matches_gguf("fp8-eng-moe", FP8_MOE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e4m3_decode_all_codes),
        cmocka_unit_test(test_e5m2_decode_all_codes),
        cmocka_unit_test(test_decode_known_values),
        cmocka_unit_test(test_decode_rows),
        cmocka_unit_test(test_e4m3_encode_roundtrip),
        cmocka_unit_test(test_e4m3_encode_ties_to_even),
        cmocka_unit_test(test_e4m3_encode_subnormals),
        cmocka_unit_test(test_e4m3_encode_overflow_is_nan),
        cmocka_unit_test(test_e4m3_encode_sweep),
        cmocka_unit_test(test_dequant_partial_blocks),
        cmocka_unit_test(test_dequant_block_shapes),
        cmocka_unit_test(test_dequant_at_transposed),
        cmocka_unit_test(test_fp8_checkpoint_llama_converts_exactly),
        cmocka_unit_test(test_fp8_checkpoint_qwen3_moe_converts_exactly),
        cmocka_unit_test(test_fp8_bad_inputs),
        cmocka_unit_test(test_fp8_engine_llama_qwen3),
        cmocka_unit_test(test_fp8_engine_qwen3_moe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
