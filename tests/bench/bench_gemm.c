/* bench_gemm.c — matrix-product speed per weight type on the active ISA (QKIT_ISA to force one):
 * q_kernels_get(type)->gemm on a TinyLlama-1.1B feed-forward shape, 5632 rows of 2048 inputs
 * times 512 tokens (one 512-token perplexity chunk through ffn_gate or ffn_up). The activations
 * are random floats through the type's from_float, as the engine quantizes them; the rows are
 * split over the OpenMP threads (OMP_NUM_THREADS) in blocks of q_gemm_rows (128 for float weights,
 * 32 for quantized ones), as calib/engine.c's matmul does. Prints GFLOP/s (2 per multiply-add) and
 * milliseconds per product, the best of ROUNDS rounds in which the types take turns, so that a busy
 * machine disturbs all of them alike.
 * Arguments, when given, name the types to run (default: all below). */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../quant/quant.h"
#include "../../quant/types.h"

#define N_IN 2048
#define N_ROWS 5632
#define N_TOK 512
#define ROUNDS 3
#define RUNS 2 /* products per type and round */

static const int TYPES[] = {Q_TYPE_F32,  Q_TYPE_F16,  Q_TYPE_BF16, Q_TYPE_Q8_0, Q_TYPE_Q4_0, Q_TYPE_Q2_K,
                            Q_TYPE_Q3_K, Q_TYPE_Q4_K, Q_TYPE_Q5_K, Q_TYPE_Q6_K, Q_TYPE_IQ4_XS};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

/* Roughly Gaussian (sum of four uniforms), as trained weights and activations. */
static float randn(void)
{
    float s = 0;
    for (int k = 0; k < 4; ++k) {
        rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
        s += (float)((rng_state * 0x2545F4914F6CDD1Dull) >> 40) / (float)(1 << 24) - 0.5f;
    }
    return s * 1.7f;
}

typedef struct {
    const q_kernels *k;
    void *w, *x; /* [N_ROWS][wrow], [N_TOK][xrow] */
    size_t wrow, xrow;
    int64_t rb; /* rows per call */
    double best; /* seconds per product */
} case_t;

static int case_make(case_t *c, int type, const float *wf, const float *xf)
{
    qk_err err = {0};
    c->k = q_kernels_get(type);
    const int vdt = c->k->vec_dot_type;
    c->wrow = q_row_size(type, N_IN);
    c->xrow = q_row_size(vdt, N_IN);
    c->w = malloc(c->wrow * N_ROWS);
    c->x = malloc(c->xrow * N_TOK);
    c->best = 1e30;
    c->rb = q_gemm_rows(type);
    if (!c->w || !c->x || !c->k->gemm)
        return -1;
    if (q_quantize_rows(type, wf, c->w, N_ROWS, N_IN, NULL, 0, NULL, &err) != QK_OK) {
        fprintf(stderr, "bench_gemm: %s\n", err.msg);
        return -1;
    }
    for (int t = 0; t < N_TOK; ++t)
        q_kernels_get(vdt)->from_float(xf + (size_t)t * N_IN, (char *)c->x + (size_t)t * c->xrow, N_IN);
    return 0;
}

static double run(const case_t *c, float *y)
{
    const double t0 = now();
#pragma omp parallel for schedule(static)
    for (int64_t r0 = 0; r0 < N_ROWS; r0 += c->rb) {
        const int64_t nr = N_ROWS - r0 < c->rb ? N_ROWS - r0 : c->rb;
        c->k->gemm(N_IN, nr, N_TOK, (const char *)c->w + (size_t)r0 * c->wrow, c->wrow, c->x, c->xrow,
                   y + r0, N_ROWS);
    }
    return now() - t0;
}

int main(int argc, char **argv)
{
    float *wf = malloc(sizeof(float) * N_ROWS * N_IN), *xf = malloc(sizeof(float) * N_TOK * N_IN);
    float *y = malloc(sizeof(float) * N_TOK * N_ROWS);
    case_t cases[N_TYPES] = {{0}};
    int use[N_TYPES];
    if (!wf || !xf || !y) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)N_ROWS * N_IN; ++i)
        wf[i] = 0.02f * randn();
    for (size_t i = 0; i < (size_t)N_TOK * N_IN; ++i)
        xf[i] = randn();
    for (size_t ti = 0; ti < N_TYPES; ++ti) {
        use[ti] = argc < 2;
        for (int a = 1; a < argc; ++a)
            use[ti] |= q_type_from_name(argv[a]) == TYPES[ti];
        if (use[ti] && case_make(&cases[ti], TYPES[ti], wf, xf)) {
            fprintf(stderr, "bench_gemm: cannot set up %s\n", q_type_info(TYPES[ti])->name);
            return 1;
        }
    }
    printf("bench_gemm: %s, %d threads, %d rows x %d inputs x %d tokens, best of %d rounds\n",
           q_isa_name(q_isa_active()), omp_get_max_threads(), N_ROWS, N_IN, N_TOK, ROUNDS);
    for (int round = 0; round < ROUNDS; ++round)
        for (size_t ti = 0; ti < N_TYPES; ++ti)
            for (int r = 0; use[ti] && r < RUNS; ++r) {
                const double dt = run(&cases[ti], y);
                cases[ti].best = dt < cases[ti].best ? dt : cases[ti].best;
            }
    printf("%-7s %9s %9s\n", "type", "GFLOP/s", "ms");
    for (size_t ti = 0; ti < N_TYPES; ++ti) {
        if (!use[ti])
            continue;
        const double flops = 2.0 * N_IN * N_ROWS * N_TOK;
        printf("%-7s %9.1f %9.2f\n", q_type_info(TYPES[ti])->name, flops / cases[ti].best / 1e9,
               1e3 * cases[ti].best);
        free(cases[ti].w);
        free(cases[ti].x);
    }
    free(wf);
    free(xf);
    free(y);
    return 0;
}
