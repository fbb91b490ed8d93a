/* check_neon.c — the NEON dequantizers and dot products (quant/dot_neon.c) against the scalar
 * reference, as a standalone program for the AArch64 cross build (no cJSON, no cmocka): it
 * needs only the sources of quant/ and runs under qemu-user. Prints "check_neon: N passed,
 * M failed" and exits 1 on any failure.
 *
 * Same rules as tests/test_simd_dot.c: dequantizers bit for bit (random bytes, every half, and
 * ggml's golden blocks when ../shared or $QKIT_SHARED is there), dot products within
 * |a - b| <= 1e-5·Σ|x_i·y_i| + 1e-30 over the dequantized operands. */
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

extern const q_kernels q_kernels_neon_dot[Q_TYPE_COUNT];

#define DOT_RTOL 1e-5
#define DOT_ATOL 1e-30

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
    deq_fn act_deq;
    int golden; /* 0 none, 1 unweighted, 2 unweighted and .imat */
    int d_off, m_off;
} type_ref;

#define OFF(t, f) (int)offsetof(block_##t, f)

static const type_ref TYPES[] = {
    {"f32", Q_TYPE_F32, q_dequantize_row_f32, q_vec_dot_f32_f32, q_quantize_f32, q_from_float_f32,
     q_dequantize_row_f32, 0, -1, -1},
    {"f16", Q_TYPE_F16, q_dequantize_row_f16, q_vec_dot_f16_f32, q_quantize_f16, q_from_float_f32,
     q_dequantize_row_f32, 1, -1, -1},
    {"bf16", Q_TYPE_BF16, q_dequantize_row_bf16, q_vec_dot_bf16_f32, q_quantize_bf16, q_from_float_f32,
     q_dequantize_row_f32, 1, -1, -1},
    {"q4_0", Q_TYPE_Q4_0, q_dequantize_row_q4_0, q_vec_dot_q4_0_q8_0, q_quantize_q4_0,
     q_quantize_row_q8_0_ref, q_dequantize_row_q8_0, 2, OFF(q4_0, d), -1},
    {"q4_1", Q_TYPE_Q4_1, q_dequantize_row_q4_1, q_vec_dot_q4_1_q8_1, q_quantize_q4_1,
     q_quantize_row_q8_1_ref, q_dequantize_row_q8_1, 2, OFF(q4_1, d), OFF(q4_1, m)},
    {"q5_0", Q_TYPE_Q5_0, q_dequantize_row_q5_0, q_vec_dot_q5_0_q8_0, q_quantize_q5_0,
     q_quantize_row_q8_0_ref, q_dequantize_row_q8_0, 2, OFF(q5_0, d), -1},
    {"q5_1", Q_TYPE_Q5_1, q_dequantize_row_q5_1, q_vec_dot_q5_1_q8_1, q_quantize_q5_1,
     q_quantize_row_q8_1_ref, q_dequantize_row_q8_1, 2, OFF(q5_1, d), OFF(q5_1, m)},
    {"q8_0", Q_TYPE_Q8_0, q_dequantize_row_q8_0, q_vec_dot_q8_0_q8_0, q_quantize_q8_0,
     q_quantize_row_q8_0_ref, q_dequantize_row_q8_0, 1, OFF(q8_0, d), -1},
    {"q2_K", Q_TYPE_Q2_K, q_dequantize_row_q2_K, q_vec_dot_q2_K_q8_K, q_quantize_q2_K,
     q_quantize_row_q8_K_ref, q_dequantize_row_q8_K, 2, OFF(q2_K, d), OFF(q2_K, dmin)},
    {"q3_K", Q_TYPE_Q3_K, q_dequantize_row_q3_K, q_vec_dot_q3_K_q8_K, q_quantize_q3_K,
     q_quantize_row_q8_K_ref, q_dequantize_row_q8_K, 2, OFF(q3_K, d), -1},
    {"q4_K", Q_TYPE_Q4_K, q_dequantize_row_q4_K, q_vec_dot_q4_K_q8_K, q_quantize_q4_K,
     q_quantize_row_q8_K_ref, q_dequantize_row_q8_K, 2, OFF(q4_K, d), OFF(q4_K, dmin)},
    {"q5_K", Q_TYPE_Q5_K, q_dequantize_row_q5_K, q_vec_dot_q5_K_q8_K, q_quantize_q5_K,
     q_quantize_row_q8_K_ref, q_dequantize_row_q8_K, 2, OFF(q5_K, d), OFF(q5_K, dmin)},
    {"q6_K", Q_TYPE_Q6_K, q_dequantize_row_q6_K, q_vec_dot_q6_K_q8_K, q_quantize_q6_K,
     q_quantize_row_q8_K_ref, q_dequantize_row_q8_K, 2, OFF(q6_K, d), -1},
    {"iq4_nl", Q_TYPE_IQ4_NL, q_dequantize_row_iq4_nl, q_vec_dot_iq4_nl_q8_0, q_quantize_iq4_nl,
     q_quantize_row_q8_0_ref, q_dequantize_row_q8_0, 2, OFF(iq4_nl, d), -1},
    {"iq4_xs", Q_TYPE_IQ4_XS, q_dequantize_row_iq4_xs, q_vec_dot_iq4_xs_q8_K, q_quantize_iq4_xs,
     q_quantize_row_q8_K_ref, q_dequantize_row_q8_K, 2, OFF(iq4_xs, d), -1},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static int passed, failed;

/* Counts one check; on failure prints the formatted reason. */
__attribute__((format(printf, 2, 3))) static void check(int ok, const char *fmt, ...)
{
    if (ok) {
        passed++;
        return;
    }
    failed++;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    printf("\n");
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

/* 1 when the NEON dot is within tolerance of the reference (NaN where the reference is NaN). */
static int dot_close(const type_ref *t, const void *x, const void *y, int n)
{
    float want, got;
    t->dot(n, &want, x, y);
    neon(t)->vec_dot(n, &got, x, y);
    if (isnan(want))
        return isnan(got);
    float *xf = xmalloc((size_t)n * sizeof(float)), *yf = xmalloc((size_t)n * sizeof(float));
    t->deq(x, xf, n);
    t->act_deq(y, yf, n);
    double mag = 0;
    for (int i = 0; i < n; i++)
        mag += fabs((double)xf[i] * yf[i]);
    free(xf);
    free(yf);
    const int ok = fabs((double)got - want) <= DOT_RTOL * mag + DOT_ATOL;
    if (!ok)
        printf("     %s n=%d: neon %.9g, scalar %.9g, tolerance %.3g\n", t->name, n, got, want,
               DOT_RTOL * mag);
    return ok;
}

static void *activations(const type_ref *t, int64_t k)
{
    const int vdt = t->type == Q_TYPE_F32 || t->type == Q_TYPE_F16 || t->type == Q_TYPE_BF16 ? Q_TYPE_F32
        : t->act_from_float == q_quantize_row_q8_K_ref                                       ? Q_TYPE_Q8_K
        : t->act_from_float == q_quantize_row_q8_1_ref                                       ? Q_TYPE_Q8_1
                                                                                             : Q_TYPE_Q8_0;
    float *x = xmalloc((size_t)k * sizeof(float));
    for (int64_t i = 0; i < k; i++)
        x[i] = gauss() * (i % 61 == 0 ? 20.0f : 1.0f);
    void *y = xmalloc(q_row_size(vdt, k));
    t->act_from_float(x, y, k);
    free(x);
    return y;
}

/* Random codes with finite scales (every byte random, then the half scale fields in ±[2^-6, 4)). */
static void *random_codes(const type_ref *t, int64_t k)
{
    const size_t bytes = q_row_size(t->type, k), bs = q_type_info(t->type)->type_size;
    uint8_t *w = xmalloc(bytes);
    for (size_t i = 0; i < bytes; i++)
        w[i] = (uint8_t)(rnd() >> 56);
    const int offs[2] = {t->d_off, t->m_off};
    for (size_t off = 0; off < bytes; off += bs)
        for (int f = 0; f < 2; f++)
            if (offs[f] >= 0) {
                const float v =
                    ldexpf(1.0f + (float)(rnd() >> 40) / (float)(1 << 24), (int)(rnd() % 8) - 6);
                const uint16_t h = q_fp32_to_fp16(rnd() & 1 ? v : -v);
                memcpy(w + off + offs[f], &h, sizeof h);
            }
    return w;
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
    /* Dots: random codes, then the reference quantizer's output, over many lengths. */
    const int64_t bs = blck(t) == 1 ? 1 : blck(t);
    const int64_t kmax = bs == 256 ? 16 * 256 : 1536;
    for (int64_t k = bs; k <= kmax; k = k * 2 + (bs == 1 ? 1 : 0) * 3) {
        const int64_t kk = k - k % bs;
        void *y = activations(t, kk);
        if (t->d_off >= 0) {
            void *w = random_codes(t, kk);
            check(dot_close(t, w, y, (int)kk), "%s dot of random codes, n=%lld", t->name, (long long)kk);
            free(w);
        }
        float *xw = xmalloc((size_t)kk * sizeof(float));
        for (int64_t i = 0; i < kk; i++)
            xw[i] = gauss() * (rnd() % 97 == 0 ? 30.0f : 1.0f);
        void *w = xmalloc(q_row_size(t->type, kk));
        t->quant(xw, w, 1, kk, NULL);
        check(dot_close(t, w, y, (int)kk), "%s dot of quantized data, n=%lld", t->name, (long long)kk);
        free(w);
        free(xw);
        free(y);
    }
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
    for (size_t i = 0; i < N_TYPES; i++) {
        const q_kernels *k = neon(&TYPES[i]);
        const int wired = k->vec_dot && (k->dequantize || TYPES[i].type == Q_TYPE_F32);
        check(wired, "%s has no NEON kernels", TYPES[i].name);
        if (wired)
            check_type(&TYPES[i]);
    }
    check_all_halves();
    check_golden();
    printf("check_neon: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
