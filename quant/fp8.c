/* fp8.c — e4m3fn and e5m2 decoding tables, the e4m3fn encoder, block-scaled dequantization.
 * See fp8.h for the formats and the contract. */
#include "fp8.h"

#include <assert.h>
#include <string.h>

/* ---- decoding tables -------------------------------------------------------------------------
 * The float32 bit pattern of each code, as integer constant expressions: the compiler builds the
 * tables, and no float arithmetic (nor the rounding mode, nor x87 excess precision) is involved.
 * A union reads the bits back as floats (C11 6.5.2.3, footnote 95). */

/* e4m3fn magnitude c in [0, 127]: e = c >> 3, m = c & 7.
 *   e = 0: m·2^-9, normalised by hand: 1 → 2^-9, 2..3 → (1 + (m-2)/2)·2^-8, 4..7 → (1 + (m-4)/4)·2^-7
 *   e = 15, m = 7: NaN, the pattern PyTorch's decoder yields (exponent all ones, m << 20)
 *   otherwise (1 + m/8)·2^(e-7): float exponent e - 7 + 127 = e + 120, mantissa m at bit 20 */
#define E4M3_MAG(c)                                                                                 \
    ((c) == 0           ? 0u                                                                       \
     : (c) == 1         ? 118u << 23                                                               \
     : (c) <= 3         ? (119u << 23) | ((uint32_t)((c) - 2) << 22)                               \
     : (c) <= 7         ? (120u << 23) | ((uint32_t)((c) - 4) << 21)                               \
     : (c) == 0x7F      ? 0x7FF00000u                                                              \
                        : ((uint32_t)(((c) >> 3) + 120) << 23) | ((uint32_t)((c) & 7) << 20))

/* e5m2 magnitude c in [0, 127]: e = c >> 2, m = c & 3.
 *   e = 0: m·2^-16: 1 → 2^-16, 2 → 2^-15, 3 → 1.5·2^-15
 *   e = 31: m = 0 Inf, else NaN: the binary16 NaN widened, quiet bit set
 *   otherwise (1 + m/4)·2^(e-15): float exponent e + 112, mantissa m at bit 21 */
#define E5M2_MAG(c)                                                                                 \
    ((c) == 0           ? 0u                                                                       \
     : (c) == 1         ? 111u << 23                                                               \
     : (c) == 2         ? 112u << 23                                                               \
     : (c) == 3         ? (112u << 23) | (1u << 22)                                                \
     : (c) == 0x7C      ? 0x7F800000u                                                              \
     : (c) > 0x7C       ? 0x7FC00000u | ((uint32_t)((c) & 3) << 21)                                \
                        : ((uint32_t)(((c) >> 2) + 112) << 23) | ((uint32_t)((c) & 3) << 21))

#define E4M3_BITS(c) ((((uint32_t)(c) & 0x80u) << 24) | E4M3_MAG((c) & 0x7F))
#define E5M2_BITS(c) ((((uint32_t)(c) & 0x80u) << 24) | E5M2_MAG((c) & 0x7F))

#define T4(X, b) X(b), X((b) + 1), X((b) + 2), X((b) + 3)
#define T16(X, b) T4(X, b), T4(X, (b) + 4), T4(X, (b) + 8), T4(X, (b) + 12)
#define T64(X, b) T16(X, b), T16(X, (b) + 16), T16(X, (b) + 32), T16(X, (b) + 48)
#define T256(X) T64(X, 0), T64(X, 64), T64(X, 128), T64(X, 192)

typedef union {
    uint32_t u[256];
    float f[256];
} fp8_table;

static const fp8_table E4M3 = {.u = {T256(E4M3_BITS)}};
static const fp8_table E5M2 = {.u = {T256(E5M2_BITS)}};

_Static_assert(sizeof(fp8_table) == 256 * sizeof(float), "float is 32 bits");

float q_fp8_e4m3_to_fp32(uint8_t c) { return E4M3.f[c]; }

float q_fp8_e5m2_to_fp32(uint8_t c) { return E5M2.f[c]; }

static void table_row(const float *t, const uint8_t *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = t[src[i]];
}

void q_fp8_e4m3_to_fp32_row(const uint8_t *src, float *dst, int64_t n) { table_row(E4M3.f, src, dst, n); }

void q_fp8_e5m2_to_fp32_row(const uint8_t *src, float *dst, int64_t n) { table_row(E5M2.f, src, dst, n); }

/* ---- encoding --------------------------------------------------------------------------------
 * On the bits, in integers only, so the result cannot depend on the float environment. */

uint8_t q_fp32_to_fp8_e4m3(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    const uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    const uint32_t a = u & 0x7FFFFFFFu;

    /* NaN, Inf and every magnitude >= 480 (0x43F00000, the first value past 448's binade step):
     * NaN. The normal branch below maps (464, 480) to 0x7F as well, by rounding. */
    if (a >= 0x43F00000u)
        return sign | 0x7F;

    uint32_t code, rem, half;
    if (a < 0x3C800000u) {
        /* Below 2^-6, the smallest normal: code = round(|x|·2^9) in [0, 8] (8 is 2^-6, code 0x08).
         * |x| = M·2^(E-150) with M the 24-bit significand, so |x|·2^9 = M·2^-(141-E), and the
         * shift is at least 21 (E <= 120). */
        const uint32_t e = a >> 23;
        const uint32_t m = e ? (a & 0x7FFFFFu) | 0x800000u : a;
        const uint32_t shift = 141 - (e ? e : 1);
        if (shift > 24) /* |x| < 2^-10 (M < 2^24 <= 2^(shift-1)): below half the smallest step */
            return sign;
        code = m >> shift;
        rem = m & ((1u << shift) - 1);
        half = 1u << (shift - 1);
    } else {
        /* Normal: rebias the exponent (127 → 7) and keep 3 of the 23 mantissa bits; a carry out of
         * the mantissa moves to the next binade, and out of 448's binade to 0x7F (NaN). */
        const uint32_t r = a - (120u << 23);
        code = r >> 20;
        rem = r & 0xFFFFFu;
        half = 0x80000u;
    }
    if (rem > half || (rem == half && (code & 1)))
        code++;
    return sign | (uint8_t)code;
}

/* ---- block-scaled dequantization ------------------------------------------------------------ */

static const float *kind_table(q_fp8_kind kind)
{
    assert(kind == Q_FP8_E4M3 || kind == Q_FP8_E5M2);
    return kind == Q_FP8_E5M2 ? E5M2.f : E4M3.f;
}

void q_fp8_dequant_rows(q_fp8_kind kind, const uint8_t *w, const float *scale_inv, int64_t n_cols,
                        int64_t br, int64_t bc, int64_t row0, int64_t nr, float *out)
{
    assert(n_cols >= 0 && br >= 1 && bc >= 1 && row0 >= 0 && nr >= 0);
    const float *t = kind_table(kind);
    const int64_t n_bc = n_cols / bc + (n_cols % bc != 0); /* scale grid columns */
    for (int64_t i = 0; i < nr; i++) {
        const int64_t r = row0 + i;
        const uint8_t *wr = w + r * n_cols;
        const float *sr = scale_inv + (r / br) * n_bc;
        float *o = out + i * n_cols;
        for (int64_t b = 0; b < n_bc; b++) {
            const float s = sr[b];
            const int64_t c1 = b * bc + bc < n_cols ? b * bc + bc : n_cols;
            for (int64_t c = b * bc; c < c1; c++)
                o[c] = t[wr[c]] * s;
        }
    }
}

float q_fp8_dequant_at(q_fp8_kind kind, const uint8_t *w, const float *scale_inv, int64_t n_cols,
                       int64_t br, int64_t bc, int64_t r, int64_t c)
{
    assert(n_cols >= 0 && br >= 1 && bc >= 1 && r >= 0 && c >= 0 && c < n_cols);
    const int64_t n_bc = n_cols / bc + (n_cols % bc != 0);
    return kind_table(kind)[w[r * n_cols + c]] * scale_inv[(r / br) * n_bc + c / bc];
}
