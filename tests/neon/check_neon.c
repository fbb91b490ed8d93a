/* check_neon.c — the NEON dequantizers and dot products (quant/dot_neon.c) against the scalar
 * reference, as a standalone program for the AArch64 cross build (no cJSON, no cmocka): it
 * needs only the sources of quant/ and runs under qemu-user. Prints "check_neon: N passed,
 * M failed" and exits 1 on any failure.
 *
 * Dequantizers bit for bit against the scalar reference (random bytes, every half, and ggml's
 * golden blocks when ../shared or $QKIT_SHARED is there). Dot products bit for bit against the
 * canonical summation order of quant.h, written out below (canon_dot_*) as plain loops straight
 * from that definition: the formats decoded again from ggml's layouts, halves converted by hand,
 * nothing shared with the kernels. The NEON dots must equal it; the scalar reference must equal it
 * too (the same definition), which is checked and reported separately. Inputs: random codes and
 * scales with mixed signs and magnitudes (subnormal halves included), floats spanning 2^±40, and
 * the reference quantizers' output; every float length 0..200 and a few long ones (n % 16 != 0
 * included), 0..40 blocks of 32 and 0..12 super-blocks plus longer rows. NaN and Inf stay out of
 * the dot inputs (their bits are not part of the definition). */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../quant/blocks.h"
#include "../../quant/floats.h"
#include "../../quant/fp16.h"
#include "../../quant/kquants.h"
#include "../../quant/legacy.h"
#include "../../quant/quant.h"

typedef void (*deq_fn)(const void *x, float *y, int64_t k);
typedef void (*dot_fn)(int n, float *s, const void *x, const void *y);
typedef size_t (*quant_fn)(const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                           const float *imatrix);
typedef void (*row_fn)(const float *x, void *y, int64_t k);

typedef struct {
    const char *name;
    int type;
    deq_fn deq;
    dot_fn dot;
    quant_fn quant;
    row_fn act_from_float; /* the activation type's quantizer */
    int golden;   /* 0 none, 1 unweighted, 2 unweighted and .imat */
    int d_off, m_off;
    int vdt;      /* the activation type */
    dot_fn canon; /* the canonical order, below */
} type_ref;

/* ---- the canonical summation order (quant.h), from its definition ------------------------------ */

/* binary16 to float, exact for every finite half. */
static float half(uint16_t h)
{
    const int e = (h >> 10) & 31, m = h & 1023;
    const float v = e == 0 ? ldexpf((float)m, -24)
        : e == 31          ? (m ? NAN : INFINITY)
                           : ldexpf((float)(m | 1024), e - 25);
    return h & 0x8000 ? -v : v;
}

static float bf16(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static float el_f32(const void *w, int i) { return ((const float *)w)[i]; }
static float el_f16(const void *w, int i) { return half(((const uint16_t *)w)[i]); }
static float el_bf16(const void *w, int i) { return bf16(((const uint16_t *)w)[i]); }

/* 16 partial sums, one fma per value, zeros past n up to the next multiple of 16; then the tree. */
static float canon_float(float (*el)(const void *, int), int n, const void *w, const float *x)
{
    float p[16], a[8], b[4], c[2];
    for (int l = 0; l < 16; l++)
        p[l] = 0.0f;
    for (int i0 = 0; i0 < n; i0 += 16)
        for (int l = 0; l < 16; l++) {
            const int i = i0 + l;
            p[l] = fmaf(i < n ? el(w, i) : 0.0f, i < n ? x[i] : 0.0f, p[l]);
        }
    for (int l = 0; l < 8; l++)
        a[l] = p[l] + p[l + 8];
    for (int l = 0; l < 4; l++)
        b[l] = a[l] + a[l + 4];
    for (int l = 0; l < 2; l++)
        c[l] = b[l] + b[l + 2];
    return c[0] + c[1];
}

#define CANON_FLOAT(t)                                                                             \
    static void canon_dot_##t(int n, float *s, const void *w, const void *x)                       \
    {                                                                                              \
        *s = canon_float(el_##t, n, w, x);                                                         \
    }
CANON_FLOAT(f32)
CANON_FLOAT(f16)
CANON_FLOAT(bf16)

/* ggml's kvalues_iq4nl. */
static const int IQ4_LEVELS[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* Code j of 32 packed 4-bit codes (values 0-15 in the low nibbles, 16-31 in the high ones). */
static int nib32(const uint8_t *qs, int j) { return j < 16 ? qs[j] & 15 : qs[j - 16] >> 4; }
/* Bit j of a little-endian 32-bit field (the fifth bit of value j in q5_0/q5_1). */
static int bit32(const uint8_t *qh, int j) { return (qh[j / 8] >> (j % 8)) & 1; }

/* Block i of a row of a 32-value type: its 32 levels (codes for the types with a min), d and m;
 * returns 1 when the type has a min m (then the activations are q8_1, else q8_0). */
typedef int (*lv32_fn)(const void *row, int i, int L[32], uint16_t *d, uint16_t *m);

static int lv_q4_0(const void *row, int i, int L[32], uint16_t *d, uint16_t *m)
{
    const block_q4_0 *b = (const block_q4_0 *)row + i;
    for (int j = 0; j < 32; j++)
        L[j] = nib32(b->qs, j) - 8;
    *d = b->d, *m = 0;
    return 0;
}

static int lv_q4_1(const void *row, int i, int L[32], uint16_t *d, uint16_t *m)
{
    const block_q4_1 *b = (const block_q4_1 *)row + i;
    for (int j = 0; j < 32; j++)
        L[j] = nib32(b->qs, j);
    *d = b->d, *m = b->m;
    return 1;
}

static int lv_q5_0(const void *row, int i, int L[32], uint16_t *d, uint16_t *m)
{
    const block_q5_0 *b = (const block_q5_0 *)row + i;
    for (int j = 0; j < 32; j++)
        L[j] = (nib32(b->qs, j) | bit32(b->qh, j) << 4) - 16;
    *d = b->d, *m = 0;
    return 0;
}

static int lv_q5_1(const void *row, int i, int L[32], uint16_t *d, uint16_t *m)
{
    const block_q5_1 *b = (const block_q5_1 *)row + i;
    for (int j = 0; j < 32; j++)
        L[j] = nib32(b->qs, j) | bit32(b->qh, j) << 4;
    *d = b->d, *m = b->m;
    return 1;
}

static int lv_q8_0(const void *row, int i, int L[32], uint16_t *d, uint16_t *m)
{
    const block_q8_0 *b = (const block_q8_0 *)row + i;
    for (int j = 0; j < 32; j++)
        L[j] = b->qs[j];
    *d = b->d, *m = 0;
    return 0;
}

static int lv_iq4_nl(const void *row, int i, int L[32], uint16_t *d, uint16_t *m)
{
    const block_iq4_nl *b = (const block_iq4_nl *)row + i;
    for (int j = 0; j < 32; j++)
        L[j] = IQ4_LEVELS[nib32(b->qs, j)];
    *d = b->d, *m = 0;
    return 0;
}

/* s = fma(d_w·d_y, Σ L·q, s) per block, then s = fma(m_w, s_y, s) for the types with a min. */
static float canon_chain32(lv32_fn lv, int n, const void *x, const void *vy)
{
    float s = 0.0f;
    for (int i = 0; i < n / 32; i++) {
        int L[32];
        uint16_t d, m, dy, sy = 0;
        const int8_t *q;
        const int has_min = lv(x, i, L, &d, &m);
        if (has_min) {
            const block_q8_1 *y = (const block_q8_1 *)vy + i;
            q = y->qs, dy = y->d, sy = y->s;
        } else {
            const block_q8_0 *y = (const block_q8_0 *)vy + i;
            q = y->qs, dy = y->d;
        }
        int isum = 0;
        for (int j = 0; j < 32; j++)
            isum += L[j] * q[j];
        s = fmaf(half(d) * half(dy), (float)isum, s);
        if (has_min)
            s = fmaf(half(m), half(sy), s);
    }
    return s;
}

#define CANON32(t)                                                                                 \
    static void canon_dot_##t(int n, float *s, const void *x, const void *y)                       \
    {                                                                                              \
        *s = canon_chain32(lv_##t, n, x, y);                                                       \
    }
CANON32(q4_0)
CANON32(q4_1)
CANON32(q5_0)
CANON32(q5_1)
CANON32(q8_0)
CANON32(iq4_nl)

/* A k-quant super-block: 256 levels (value v in group v / 16), 16 multipliers and mins. */
typedef struct {
    int L[256], sc[16], mn[16];
    uint16_t d, dmin;
    int has_min;
} kq_block;

/* ggml's get_scale_min_k4: multiplier and min of sub-block j (32 values) of q4_K/q5_K. */
static void k4_scale_min(const uint8_t *q, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* q2_K and q3_K: value v = 128h + 32j + l holds bits 2j..2j+1 of qs[32h + l]. */
static int two_bits(const uint8_t *qs, int v)
{
    return (qs[32 * (v / 128) + v % 32] >> (2 * (v % 128 / 32))) & 3;
}

static void kq_q2_K(const void *row, int i, kq_block *k)
{
    const block_q2_K *b = (const block_q2_K *)row + i;
    for (int v = 0; v < 256; v++)
        k->L[v] = two_bits(b->qs, v);
    for (int g = 0; g < 16; g++)
        k->sc[g] = b->scales[g] & 15, k->mn[g] = b->scales[g] >> 4;
    k->d = b->d, k->dmin = b->dmin, k->has_min = 1;
}

/* A clear hmask bit 4h + j at byte l makes the level 4 lower. */
static void kq_q3_K(const void *row, int i, kq_block *k)
{
    const block_q3_K *b = (const block_q3_K *)row + i;
    for (int v = 0; v < 256; v++) {
        const int hbit = (b->hmask[v % 32] >> (4 * (v / 128) + v % 128 / 32)) & 1;
        k->L[v] = two_bits(b->qs, v) - (hbit ? 0 : 4);
    }
    for (int g = 0; g < 16; g++) {
        const int lo = g < 8 ? b->scales[g] & 15 : b->scales[g - 8] >> 4;
        const int hi = (b->scales[8 + g % 4] >> (2 * (g / 4))) & 3;
        k->sc[g] = (lo | hi << 4) - 32, k->mn[g] = 0;
    }
    k->d = b->d, k->dmin = 0, k->has_min = 0;
}

/* q4_K/q5_K: sub-block sb = v / 32 takes the low (even sb) or high (odd sb) nibbles of
 * qs[32(sb / 2) ..], and for q5_K bit sb of qh[v % 32] as the fifth bit. */
static void kq_k45(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, kq_block *k)
{
    for (int v = 0; v < 256; v++) {
        const int sb = v / 32, l = v % 32;
        k->L[v] = (qs[32 * (sb / 2) + l] >> (4 * (sb % 2))) & 15;
        if (qh)
            k->L[v] |= ((qh[l] >> sb) & 1) << 4;
    }
    for (int g = 0; g < 16; g++)
        k4_scale_min(scales, g / 2, &k->sc[g], &k->mn[g]);
    k->has_min = 1;
}

static void kq_q4_K(const void *row, int i, kq_block *k)
{
    const block_q4_K *b = (const block_q4_K *)row + i;
    kq_k45(b->scales, b->qs, NULL, k);
    k->d = b->d, k->dmin = b->dmin;
}

static void kq_q5_K(const void *row, int i, kq_block *k)
{
    const block_q5_K *b = (const block_q5_K *)row + i;
    kq_k45(b->scales, b->qs, b->qh, k);
    k->d = b->d, k->dmin = b->dmin;
}

/* q6_K: value v = 128h + 32k + l: a nibble of ql[64h + 32(k % 2) + l] (low for k < 2) and bits
 * 2k..2k+1 of qh[32h + l] above it, minus 32. */
static void kq_q6_K(const void *row, int i, kq_block *k)
{
    const block_q6_K *b = (const block_q6_K *)row + i;
    for (int v = 0; v < 256; v++) {
        const int h = v / 128, q = v % 128 / 32, l = v % 32;
        const int lo = (b->ql[64 * h + 32 * (q % 2) + l] >> (q < 2 ? 0 : 4)) & 15;
        const int hi = (b->qh[32 * h + l] >> (2 * q)) & 3;
        k->L[v] = (lo | hi << 4) - 32;
    }
    for (int g = 0; g < 16; g++)
        k->sc[g] = b->scales[g], k->mn[g] = 0;
    k->d = b->d, k->dmin = 0, k->has_min = 0;
}

/* s = fma(d_y·d, Σ_g sc_g·Σ L·q, s), then for the types with mins
 * s = fma(-(d_y·dmin), Σ_g mn_g·bsum_g, s). */
static float canon_kq(void (*dec)(const void *, int, kq_block *), int n, const void *x, const void *vy)
{
    const block_q8_K *y = vy;
    kq_block k;
    float s = 0.0f;
    for (int i = 0; i < n / 256; i++) {
        dec(x, i, &k);
        int isum = 0, msum = 0;
        for (int g = 0; g < 16; g++) {
            int gsum = 0;
            for (int l = 0; l < 16; l++)
                gsum += k.L[16 * g + l] * y[i].qs[16 * g + l];
            isum += k.sc[g] * gsum;
            msum += k.mn[g] * y[i].bsums[g];
        }
        s = fmaf(y[i].d * half(k.d), (float)isum, s);
        if (k.has_min)
            s = fmaf(-(y[i].d * half(k.dmin)), (float)msum, s);
    }
    return s;
}

#define CANONK(t)                                                                                  \
    static void canon_dot_##t(int n, float *s, const void *x, const void *y)                       \
    {                                                                                              \
        *s = canon_kq(kq_##t, n, x, y);                                                            \
    }
CANONK(q2_K)
CANONK(q3_K)
CANONK(q4_K)
CANONK(q5_K)
CANONK(q6_K)

/* iq4_xs: group ib of 32 has the multiplier ls - 32, ls = 4 bits of scales_l (low nibble for even
 * ib) and bits 2ib..2ib+1 of scales_h above them; s = fma(d·d_y, Σ_ib (ls - 32)·Σ level·q, s). */
static void canon_dot_iq4_xs(int n, float *s, const void *vx, const void *vy)
{
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    float acc = 0.0f;
    for (int i = 0; i < n / 256; i++) {
        int isum = 0;
        for (int ib = 0; ib < 8; ib++) {
            const int ls =
                ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | ((x[i].scales_h >> (2 * ib)) & 3) << 4;
            int gsum = 0;
            for (int j = 0; j < 32; j++)
                gsum += IQ4_LEVELS[nib32(x[i].qs + 16 * ib, j)] * y[i].qs[32 * ib + j];
            isum += (ls - 32) * gsum;
        }
        acc = fmaf(half(x[i].d) * y[i].d, (float)isum, acc);
    }
    *s = acc;
}

#define OFF(t, f) (int)offsetof(block_##t, f)

static const type_ref TYPES[] = {
    {"f32", Q_TYPE_F32, q_dequantize_row_f32, q_vec_dot_f32_f32, q_quantize_f32, q_from_float_f32,
     0, -1, -1, Q_TYPE_F32, canon_dot_f32},
    {"f16", Q_TYPE_F16, q_dequantize_row_f16, q_vec_dot_f16_f32, q_quantize_f16, q_from_float_f32,
     1, -1, -1, Q_TYPE_F32, canon_dot_f16},
    {"bf16", Q_TYPE_BF16, q_dequantize_row_bf16, q_vec_dot_bf16_f32, q_quantize_bf16, q_from_float_f32,
     1, -1, -1, Q_TYPE_F32, canon_dot_bf16},
    {"q4_0", Q_TYPE_Q4_0, q_dequantize_row_q4_0, q_vec_dot_q4_0_q8_0, q_quantize_q4_0,
     q_quantize_row_q8_0_ref, 2, OFF(q4_0, d), -1, Q_TYPE_Q8_0, canon_dot_q4_0},
    {"q4_1", Q_TYPE_Q4_1, q_dequantize_row_q4_1, q_vec_dot_q4_1_q8_1, q_quantize_q4_1,
     q_quantize_row_q8_1_ref, 2, OFF(q4_1, d), OFF(q4_1, m), Q_TYPE_Q8_1, canon_dot_q4_1},
    {"q5_0", Q_TYPE_Q5_0, q_dequantize_row_q5_0, q_vec_dot_q5_0_q8_0, q_quantize_q5_0,
     q_quantize_row_q8_0_ref, 2, OFF(q5_0, d), -1, Q_TYPE_Q8_0, canon_dot_q5_0},
    {"q5_1", Q_TYPE_Q5_1, q_dequantize_row_q5_1, q_vec_dot_q5_1_q8_1, q_quantize_q5_1,
     q_quantize_row_q8_1_ref, 2, OFF(q5_1, d), OFF(q5_1, m), Q_TYPE_Q8_1, canon_dot_q5_1},
    {"q8_0", Q_TYPE_Q8_0, q_dequantize_row_q8_0, q_vec_dot_q8_0_q8_0, q_quantize_q8_0,
     q_quantize_row_q8_0_ref, 1, OFF(q8_0, d), -1, Q_TYPE_Q8_0, canon_dot_q8_0},
    {"q2_K", Q_TYPE_Q2_K, q_dequantize_row_q2_K, q_vec_dot_q2_K_q8_K, q_quantize_q2_K,
     q_quantize_row_q8_K_ref, 2, OFF(q2_K, d), OFF(q2_K, dmin), Q_TYPE_Q8_K, canon_dot_q2_K},
    {"q3_K", Q_TYPE_Q3_K, q_dequantize_row_q3_K, q_vec_dot_q3_K_q8_K, q_quantize_q3_K,
     q_quantize_row_q8_K_ref, 2, OFF(q3_K, d), -1, Q_TYPE_Q8_K, canon_dot_q3_K},
    {"q4_K", Q_TYPE_Q4_K, q_dequantize_row_q4_K, q_vec_dot_q4_K_q8_K, q_quantize_q4_K,
     q_quantize_row_q8_K_ref, 2, OFF(q4_K, d), OFF(q4_K, dmin), Q_TYPE_Q8_K, canon_dot_q4_K},
    {"q5_K", Q_TYPE_Q5_K, q_dequantize_row_q5_K, q_vec_dot_q5_K_q8_K, q_quantize_q5_K,
     q_quantize_row_q8_K_ref, 2, OFF(q5_K, d), OFF(q5_K, dmin), Q_TYPE_Q8_K, canon_dot_q5_K},
    {"q6_K", Q_TYPE_Q6_K, q_dequantize_row_q6_K, q_vec_dot_q6_K_q8_K, q_quantize_q6_K,
     q_quantize_row_q8_K_ref, 2, OFF(q6_K, d), -1, Q_TYPE_Q8_K, canon_dot_q6_K},
    {"iq4_nl", Q_TYPE_IQ4_NL, q_dequantize_row_iq4_nl, q_vec_dot_iq4_nl_q8_0, q_quantize_iq4_nl,
     q_quantize_row_q8_0_ref, 2, OFF(iq4_nl, d), -1, Q_TYPE_Q8_0, canon_dot_iq4_nl},
    {"iq4_xs", Q_TYPE_IQ4_XS, q_dequantize_row_iq4_xs, q_vec_dot_iq4_xs_q8_K, q_quantize_iq4_xs,
     q_quantize_row_q8_K_ref, 2, OFF(iq4_xs, d), -1, Q_TYPE_Q8_K, canon_dot_iq4_xs},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static int passed, failed;

/* Counts one check; on failure prints the formatted reason when show is set. */
static void vcheck(int ok, int show, const char *fmt, va_list ap)
{
    if (ok) {
        passed++;
        return;
    }
    failed++;
    if (show) {
        printf("FAIL ");
        vprintf(fmt, ap);
        printf("\n");
    }
}

__attribute__((format(printf, 2, 3))) static void check(int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vcheck(ok, 1, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 3, 4))) static void check_shown(int ok, int show, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vcheck(ok, show, fmt, ap);
    va_end(ap);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "check_neon: out of memory\n");
        exit(2);
    }
    return p;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}
static float gauss(void)
{
    const double u1 = ((rnd() >> 11) + 1) * (1.0 / 9007199254740992.0);
    const double u2 = ((rnd() >> 11) + 1) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

static int64_t blck(const type_ref *t) { return q_type_info(t->type)->blck_size; }
static const q_kernels *neon(const type_ref *t) { return &q_kernels_neon_dot[t->type]; }

/* 1 when the NEON dequantizer gives the reference's bits for k values at src. */
static int deq_exact(const type_ref *t, const void *src, int64_t k, long long *at)
{
    float *want = xmalloc((size_t)k * sizeof(float)), *got = xmalloc((size_t)k * sizeof(float));
    t->deq(src, want, k);
    memset(got, 0xA5, (size_t)k * sizeof(float));
    neon(t)->dequantize(src, got, k);
    int ok = 1;
    for (int64_t i = 0; i < k && ok; i++)
        if (memcmp(&want[i], &got[i], sizeof(float)) != 0) {
            ok = 0;
            *at = (long long)i;
        }
    free(want);
    free(got);
    return ok;
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Dot cases of one type, and how many the NEON kernel and the scalar reference got wrong (the
 * first few of each are printed). */
typedef struct {
    int cases, neon_bad, ref_bad;
} dot_tally;

static int ref_cases, ref_bad; /* over every type: scalar reference against the canonical order */

/* The NEON dot and the scalar reference against the canonical order, bit for bit. */
static void dot_case(const type_ref *t, const void *w, const void *y, int n, const char *what, dot_tally *tl)
{
    float want, got, ref;
    t->canon(n, &want, w, y);
    memset(&got, 0xA5, sizeof got);
    memset(&ref, 0xA5, sizeof ref);
    neon(t)->vec_dot(n, &got, w, y);
    t->dot(n, &ref, w, y);
    tl->cases++;
    ref_cases++;
    const int neon_ok = same_bits(got, want), ref_ok = same_bits(ref, want);
    tl->neon_bad += !neon_ok;
    tl->ref_bad += !ref_ok;
    ref_bad += !ref_ok;
    check_shown(neon_ok, tl->neon_bad <= 3, "%s dot of %s, n=%d: neon %a, canonical %a", t->name, what, n,
                got, want);
    check_shown(ref_ok, tl->ref_bad <= 3, "%s dot of %s, n=%d: scalar reference %a, canonical %a", t->name,
                what, n, ref, want);
}

/* ±(1 + f)·2^e with e uniform in [emin, emax]. */
static float rnd_pow2(int emin, int emax)
{
    const float v = ldexpf(1.0f + (float)(rnd() >> 40) / (float)(1 << 24),
                           emin + (int)(rnd() % (uint64_t)(emax - emin + 1)));
    return rnd() & 1 ? v : -v;
}

/* A finite half near ±2^e, e in [emin, emax] (below -14 it is subnormal, below -25 zero). */
static uint16_t rnd_half(int emin, int emax) { return q_fp32_to_fp16(rnd_pow2(emin, emax)); }

/* Floats spanning 2^±40, one in 16 a signed zero: sums whose value depends on the order. */
static float rnd_wide(void)
{
    if (rnd() % 16 == 0)
        return rnd() & 1 ? -0.0f : 0.0f;
    return rnd_pow2(-40, 40);
}

/* Activations of t's vec_dot_type for k values: random (wide floats; random bytes with random
 * scales and q8_K's bsums to match), or the quantizer's output of Gaussian values. */
static void *activations(const type_ref *t, int64_t k, int random)
{
    void *y = xmalloc(q_row_size(t->vdt, k));
    if (random) {
        const int64_t nb = k / (t->vdt == Q_TYPE_Q8_K ? Q_QK_K : 32);
        switch (t->vdt) {
        case Q_TYPE_F32:
            for (int64_t i = 0; i < k; i++)
                ((float *)y)[i] = rnd_wide();
            break;
        case Q_TYPE_Q8_0:
            for (int64_t i = 0; i < nb; i++) {
                block_q8_0 *b = (block_q8_0 *)y + i;
                b->d = rnd_half(-20, 4);
                for (int j = 0; j < 32; j++)
                    b->qs[j] = (int8_t)(rnd() >> 56);
            }
            break;
        case Q_TYPE_Q8_1:
            for (int64_t i = 0; i < nb; i++) {
                block_q8_1 *b = (block_q8_1 *)y + i;
                b->d = rnd_half(-20, 4);
                b->s = rnd_half(-16, 10);
                for (int j = 0; j < 32; j++)
                    b->qs[j] = (int8_t)(rnd() >> 56);
            }
            break;
        default:
            for (int64_t i = 0; i < nb; i++) {
                block_q8_K *b = (block_q8_K *)y + i;
                b->d = rnd_pow2(-20, 4);
                for (int g = 0; g < 16; g++) {
                    int sum = 0;
                    for (int j = 0; j < 16; j++)
                        sum += b->qs[16 * g + j] = (int8_t)(rnd() >> 56);
                    b->bsums[g] = (int16_t)sum;
                }
            }
            break;
        }
        return y;
    }
    float *x = xmalloc((size_t)k * sizeof(float));
    for (int64_t i = 0; i < k; i++)
        x[i] = gauss() * (i % 61 == 0 ? 20.0f : 1.0f);
    t->act_from_float(x, y, k);
    free(x);
    return y;
}

/* Random weights: floats as for the activations (f16: random finite halves of every exponent),
 * codes as random bytes with the half scale fields set to finite values near ±2^-20 … 2^8. */
static void *random_weights(const type_ref *t, int64_t k)
{
    const size_t bytes = q_row_size(t->type, k), bs = q_type_info(t->type)->type_size;
    uint8_t *w = xmalloc(bytes);
    if (t->type == Q_TYPE_F32) {
        for (int64_t i = 0; i < k; i++)
            ((float *)w)[i] = rnd_wide();
        return w;
    }
    if (t->type == Q_TYPE_BF16) {
        for (int64_t i = 0; i < k; i++)
            ((uint16_t *)w)[i] = q_fp32_to_bf16(rnd_wide());
        return w;
    }
    for (size_t i = 0; i < bytes; i++)
        w[i] = (uint8_t)(rnd() >> 56);
    if (t->type == Q_TYPE_F16) {
        for (int64_t i = 0; i < k; i++)
            if ((((uint16_t *)w)[i] & 0x7C00) == 0x7C00)
                ((uint16_t *)w)[i] ^= 0x4000;
        return w;
    }
    const int offs[2] = {t->d_off, t->m_off};
    for (size_t off = 0; off < bytes; off += bs)
        for (int f = 0; f < 2; f++)
            if (offs[f] >= 0) {
                const uint16_t h = rnd_half(-20, 8);
                memcpy(w + off + offs[f], &h, sizeof h);
            }
    return w;
}

/* The reference quantizer's output for Gaussian values with outliers. */
static void *quantized_weights(const type_ref *t, int64_t k)
{
    float *x = xmalloc((size_t)k * sizeof(float));
    for (int64_t i = 0; i < k; i++)
        x[i] = gauss() * (rnd() % 97 == 0 ? 30.0f : 1.0f);
    void *w = xmalloc(q_row_size(t->type, k));
    t->quant(x, w, 1, k, NULL);
    free(x);
    return w;
}

/* Products that underflow to -0 in every lane: 16 or 32 values sum to -0; any other length adds
 * a padded step whose fma(0, 0, -0) makes some partial sums +0, so the result is +0. The
 * canonical code must say so, and the kernels must agree with it. */
static void check_zero_signs(const type_ref *t, dot_tally *tl)
{
    float x[48];
    union {
        float f[48];
        uint16_t h[48];
    } w;
    for (int i = 0; i < 48; i++) {
        x[i] = 0x1p-140f;
        if (t->type == Q_TYPE_F32)
            w.f[i] = -0x1p-100f;
        else if (t->type == Q_TYPE_F16)
            w.h[i] = 0x8001; /* -2^-24 */
        else
            w.h[i] = q_fp32_to_bf16(-0x1p-100f);
    }
    for (int n = 1; n <= 48; n++) {
        float want;
        t->canon(n, &want, &w, x);
        const float sign = n % 16 == 0 ? -0.0f : 0.0f;
        check(same_bits(want, sign), "%s canonical dot of underflowing products, n=%d: %a, want %a", t->name,
              n, want, sign);
        dot_case(t, &w, x, n, "underflowing products", tl);
    }
}

static void check_type(const type_ref *t)
{
    long long at = 0;
    /* Dequantization of random bytes: any code, any scale (NaN, Inf, subnormal halves too). */
    if (t->type != Q_TYPE_F32)
        for (int rep = 0; rep < 8; rep++) {
            const int64_t k = blck(t) == 1 ? 1 + rep * 37 : blck(t) * (1 + rep * 5);
            const size_t bytes = q_row_size(t->type, k);
            uint8_t *src = xmalloc(bytes);
            for (size_t i = 0; i < bytes; i++)
                src[i] = (uint8_t)(rnd() >> 56);
            check(deq_exact(t, src, k, &at), "%s dequantize random bytes: value %lld differs", t->name, at);
            free(src);
        }
    /* Dots, bit for bit: every length up to 200 values for the float types (tails of every size)
     * and a few long rows; 0..40 blocks of 32, 0..12 super-blocks, and longer rows. Random weights
     * with random activations, and the quantizers' output of Gaussian data. */
    static const int float_extra[] = {255, 256, 257, 1000, 4095, 4096, 4096 + 7, 5003};
    static const int b32_extra[] = {64, 100, 257};
    static const int kq_extra[] = {16, 33};
    const int bs = (int)blck(t);
#define N_OF(a) (int)(sizeof a / sizeof a[0])
    const int *extra = bs == 1 ? float_extra : bs == 32 ? b32_extra : kq_extra;
    const int n_extra = bs == 1 ? N_OF(float_extra) : bs == 32 ? N_OF(b32_extra) : N_OF(kq_extra);
#undef N_OF
    const int n_short = bs == 1 ? 200 : bs == 32 ? 40 : 12;
    dot_tally tl = {0, 0, 0};
    for (int c = 0; c <= n_short + n_extra; c++) {
        const int n = bs * (c <= n_short ? c : extra[c - n_short - 1]);
        void *w = random_weights(t, n), *y = activations(t, n, 1);
        dot_case(t, w, y, n, "random weights and activations", &tl);
        free(w);
        free(y);
        if (n > 0) {
            w = quantized_weights(t, n);
            y = activations(t, n, 0);
            dot_case(t, w, y, n, "quantized data", &tl);
            free(w);
            free(y);
        }
    }
    if (bs == 1)
        check_zero_signs(t, &tl);
    if (tl.neon_bad > 3)
        printf("     %s: neon differs from the canonical order in %d of %d dot cases\n", t->name, tl.neon_bad,
               tl.cases);
    if (tl.ref_bad > 3)
        printf("     %s: the scalar reference differs from the canonical order in %d of %d dot cases\n",
               t->name, tl.ref_bad, tl.cases);
}

/* Every half through the f16 dequantizer, at every tail length. */
static void check_all_halves(void)
{
    uint16_t *h = xmalloc(65536 * sizeof(uint16_t));
    for (uint32_t i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    long long at = 0;
    for (int ti = 1; ti <= 2; ti++) {
        check(deq_exact(&TYPES[ti], h, 65536, &at), "%s dequantize all halves: value %lld differs",
              TYPES[ti].name, at);
        for (int64_t k = 1; k <= 9; k++)
            check(deq_exact(&TYPES[ti], h + 4000 * k, k, &at), "%s short row of %lld: value %lld differs",
                  TYPES[ti].name, (long long)k, at);
    }
    free(h);
}

static void *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = xmalloc(n > 0 ? (size_t)n : 1);
    const int ok = n > 0 && fread(p, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    if (!ok) {
        free(p);
        return NULL;
    }
    *size = (size_t)n;
    return p;
}

/* The quantizers on this architecture give ggml's golden bytes (the same bytes as on x86-64),
 * row by row; edge row 5 of the weighted q2_K/q4_K/q5_K is ggml's NaN defect, which qkit
 * replaces with finite output on purpose, so it is left out. */
static void check_golden_quantize(const char *root, const char *cs, int64_t rows, int64_t cols,
                                  const type_ref *t, int imat, const void *want)
{
    char path[4096];
    size_t size;
    snprintf(path, sizeof path, "%s/golden/quant/%s.input.f32", root, cs);
    float *x = read_file(path, &size);
    snprintf(path, sizeof path, "%s/golden/quant/%s.imatrix.f32", root, cs);
    float *w = imat ? read_file(path, &size) : NULL;
    if (!x || (imat && !w)) {
        free(x);
        free(w);
        return;
    }
    const size_t row = q_row_size(t->type, cols);
    uint8_t *got = xmalloc(row * (size_t)rows);
    t->quant(x, got, rows, cols, w);
    const int nan_row = imat && !strcmp(cs, "edge") &&
                        (t->type == Q_TYPE_Q2_K || t->type == Q_TYPE_Q4_K || t->type == Q_TYPE_Q5_K);
    for (int64_t r = 0; r < rows; r++)
        if (!(nan_row && r == 5))
            check(!memcmp(got + r * row, (const uint8_t *)want + r * row, row),
                  "%s %s%s row %lld: quantized bytes differ from ggml's", cs, t->name,
                  imat ? " (imatrix)" : "", (long long)r);
    free(got);
    free(x);
    free(w);
}

/* ggml's golden blocks, when the shared data is reachable. */
static void check_golden(void)
{
    static const struct {
        const char *name;
        int64_t n;
        int64_t rows;
    } cases[] = {{"gauss", 32 * 512, 32}, {"edge", 16 * 256, 16}, {"real", 64 * 256, 64}};
    const char *root = getenv("QKIT_SHARED") ? getenv("QKIT_SHARED") : "../shared";
    char path[4096];
    int found = 0;
    for (size_t c = 0; c < 3; c++)
        for (size_t i = 0; i < N_TYPES; i++)
            for (int imat = 0; imat < TYPES[i].golden; imat++) {
                snprintf(path, sizeof path, "%s/golden/quant/%s.%s%s.bin", root, cases[c].name,
                         TYPES[i].name, imat ? ".imat" : "");
                size_t size;
                void *b = read_file(path, &size);
                if (!b)
                    continue;
                found++;
                long long at = 0;
                const int ok = size == q_row_size(TYPES[i].type, cases[c].n) &&
                    deq_exact(&TYPES[i], b, cases[c].n, &at);
                check(ok, "%s: value %lld differs", path, at);
                if (ok)
                    check_golden_quantize(root, cases[c].name, cases[c].rows, cases[c].n / cases[c].rows,
                                          &TYPES[i], imat, b);
                free(b);
            }
    if (!found)
        printf("golden data not found under %s (golden checks skipped)\n", root);
}

int main(void)
{
    int levels_ok = 1;
    for (int i = 0; i < 16; i++)
        levels_ok &= IQ4_LEVELS[i] == q_iq4_levels[i];
    check(levels_ok, "q_iq4_levels differs from ggml's kvalues_iq4nl");
    for (size_t i = 0; i < N_TYPES; i++) {
        const q_kernels *k = neon(&TYPES[i]);
        const int wired = k->vec_dot && (k->dequantize || TYPES[i].type == Q_TYPE_F32);
        check(wired, "%s has no NEON kernels", TYPES[i].name);
        if (wired)
            check_type(&TYPES[i]);
    }
    check_all_halves();
    check_golden();
    printf("scalar reference == canonical order: %s (%d of %d dot cases differ)\n", ref_bad ? "no" : "yes",
           ref_bad, ref_cases);
    printf("check_neon: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
