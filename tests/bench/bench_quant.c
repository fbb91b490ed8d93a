/* bench_quant.c — quantizer, dequantizer and dot-product speed per type and per ISA, one thread,
 * in the units of ggml's test-quantize-perf: MB/s of 4-byte floats (read by quantize, written by
 * dequantize, dotted by the dot product) and cycles per 32 values. Cycles are rdtsc ticks: the
 * constant-rate time-stamp counter (nominal clock), not core cycles at boost clock.
 * Like test-quantize-perf, each call handles one 4096-value row (16 KiB of floats, L1-sized);
 * unlike it, a pass walks through ROWS different rows: fed the same row over and over, the scalar
 * searches' data-dependent branches are learnt by the predictor and run up to 2x faster than on
 * fresh weights, which is not what quantizing a model looks like. The figure is the best pass
 * of several, the ISAs taking turns, so that a busy machine disturbs all of them alike.
 * "x" is the speed-up over the scalar reference for quantize without and with an imatrix.
 * rmse/rmse-w and bpw: round-trip error on ../shared/golden/quant/real.input.f32 without and with
 * real.imatrix.f32 (the same for every ISA, whose bytes are identical), and bits per weight. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
static uint64_t ticks(void) { return __rdtsc(); }
#else
static uint64_t ticks(void) { return 0; }
#endif

#include "../../formats/file.h"
#include "../../quant/quant.h"
#include "../../quant/types.h"

#define N 4096           /* values per call: 16 KiB of floats, test-quantize-perf's L1 size */
#define ROWS 16          /* different rows per pass */
#define MIN_SECONDS 0.02 /* per measurement and round, after one warm-up pass */
#define MIN_PASSES 2
#define ROUNDS 3         /* every ISA measured this many times, in turn; the best counts */

static const int TYPES[] = {Q_TYPE_Q4_0, Q_TYPE_Q4_1, Q_TYPE_Q5_0, Q_TYPE_Q5_1,  Q_TYPE_Q8_0,
                            Q_TYPE_Q8_1, Q_TYPE_Q2_K, Q_TYPE_Q3_K, Q_TYPE_Q4_K,  Q_TYPE_Q5_K,
                            Q_TYPE_Q6_K, Q_TYPE_Q8_K, Q_TYPE_IQ4_NL, Q_TYPE_IQ4_XS, Q_TYPE_F16,
                            Q_TYPE_BF16};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef enum { OP_QUANT, OP_QUANT_W, OP_DEQUANT, OP_DOT, OP_COUNT } op_kind;

typedef struct {
    const q_kernels *k;
    const float *x, *imat; /* [ROWS][N], [N] */
    uint8_t *q;            /* x quantized, row_size bytes per row */
    const uint8_t *act;    /* x in the dot partner's type, act_size bytes per row */
    size_t row_size, act_size;
    float *out;            /* [N] */
    float sink;
} bench_ctx;

static void run_op(bench_ctx *c, op_kind op)
{
    for (int r = 0; r < ROWS; ++r) {
        const float *x = c->x + (size_t)r * N;
        uint8_t *q = c->q + (size_t)r * c->row_size;
        switch (op) {
        case OP_QUANT: c->k->quantize(x, q, 1, N, NULL); break;
        case OP_QUANT_W: c->k->quantize(x, q, 1, N, c->imat); break;
        case OP_DEQUANT: c->k->dequantize(q, c->out, N); break;
        default: c->k->vec_dot(N, &c->sink, q, c->act + (size_t)r * c->act_size); break;
        }
    }
}

typedef struct {
    double mbps, cyc32;
} speed;

static speed measure(bench_ctx *c, op_kind op)
{
    run_op(c, op);
    uint64_t best = UINT64_MAX;
    double best_s = 1e30, t_end = now() + MIN_SECONDS;
    for (int pass = 0; pass < MIN_PASSES || now() < t_end; ++pass) {
        const double t0 = now();
        const uint64_t c0 = ticks();
        run_op(c, op);
        const uint64_t dc = ticks() - c0;
        const double dt = now() - t0;
        best = dc < best ? dc : best;
        best_s = dt < best_s ? dt : best_s;
    }
    return (speed){4.0 * N * ROWS / best_s / 1e6, 32.0 * (double)best / N / ROWS};
}

/* Whole file, or NULL (size 0) when it cannot be read. */
static void *read_file(const char *path, size_t *size)
{
    char *buf;
    return qk_file_read(path, QK_FILE_NO_LIMIT, &buf, size, NULL) ? NULL : buf;
}

/* The golden "real" case: 64 rows of 256 trained weights and its importance weights. */
typedef struct {
    float *x, *imat;
    int64_t rows, n;
} real_data;

static int load_real(real_data *r)
{
    const char *root = getenv("QKIT_SHARED");
    char path[1024];
    size_t sx = 0, sw = 0;
    snprintf(path, sizeof path, "%s/golden/quant/real.input.f32", root ? root : "../shared");
    r->x = read_file(path, &sx);
    snprintf(path, sizeof path, "%s/golden/quant/real.imatrix.f32", root ? root : "../shared");
    r->imat = read_file(path, &sw);
    r->n = 256;
    r->rows = (int64_t)(sx / sizeof(float)) / r->n;
    if (!r->x || !r->imat || sw != (size_t)r->n * sizeof(float) || r->rows <= 0 ||
        sx != (size_t)(r->rows * r->n) * sizeof(float)) {
        free(r->x);
        free(r->imat);
        r->x = r->imat = NULL;
        return -1;
    }
    return 0;
}

/* Root-mean-square round-trip error on the real data, -1 when it cannot be computed. */
static double real_rmse(const real_data *r, int type, const float *imat)
{
    const size_t bytes = q_row_size(type, r->n) * (size_t)r->rows;
    const int64_t total = r->rows * r->n;
    void *q = malloc(bytes);
    float *y = malloc((size_t)total * sizeof(float));
    qk_err err = {0};
    double sum = -1;
    if (q && y && q_quantize_rows(type, r->x, q, r->rows, r->n, imat, 1, NULL, &err) == QK_OK &&
        q_dequantize_rows(type, q, y, r->rows, r->n, &err) == QK_OK) {
        sum = 0;
        for (int64_t i = 0; i < total; ++i)
            sum += ((double)y[i] - r->x[i]) * ((double)y[i] - r->x[i]);
        sum = sqrt(sum / (double)total);
    }
    free(q);
    free(y);
    return sum;
}

static void print_speed(speed s, int ok)
{
    if (ok)
        printf(" %8.1f %8.1f", s.mbps, s.cyc32);
    else
        printf(" %8s %8s", "-", "-");
}

static int isa_runs(q_isa isa)
{
    const q_isa best = q_isa_best();
    return isa == Q_ISA_SCALAR || (best != Q_ISA_NEON && isa <= best);
}

/* Every ISA's speeds for one type; [isa][op], cycles the lowest seen over the rounds. */
static void bench_type(int type, bench_ctx *c, speed sp[3][OP_COUNT])
{
    for (int isa = 0; isa < 3; ++isa)
        for (int op = 0; op < OP_COUNT; ++op)
            sp[isa][op] = (speed){0, 1e300};
    for (int round = 0; round < ROUNDS; ++round) {
        for (int isa = Q_ISA_SCALAR; isa <= Q_ISA_AVX512; ++isa) {
            if (!isa_runs((q_isa)isa))
                continue;
            c->k = q_kernels_get_isa(type, (q_isa)isa);
            for (int op = 0; op < OP_COUNT; ++op) {
                if (op == OP_DOT && !c->k->vec_dot)
                    continue;
                const speed s = measure(c, (op_kind)op);
                if (s.cyc32 < sp[isa][op].cyc32)
                    sp[isa][op].cyc32 = s.cyc32;
                if (s.mbps > sp[isa][op].mbps)
                    sp[isa][op].mbps = s.mbps;
            }
        }
    }
}

int main(void)
{
    float *x = malloc((size_t)ROWS * N * sizeof(float)), *imat = malloc(N * sizeof(float));
    float *out = malloc(N * sizeof(float));
    uint8_t *q = malloc((size_t)ROWS * N * 4), *act = malloc((size_t)ROWS * N * 4);
    if (!x || !imat || !out || !q || !act) {
        fprintf(stderr, "bench_quant: out of memory\n");
        return 1;
    }
    uint64_t st = 0x2545F4914F6CDD1Dull;
    for (int i = 0; i < ROWS * N; ++i) { /* roughly Gaussian, as trained weights */
        float s = 0;
        for (int k = 0; k < 4; ++k) {
            st ^= st >> 12, st ^= st << 25, st ^= st >> 27;
            s += (float)((st * 0x2545F4914F6CDD1Dull) >> 40) / (float)(1 << 24) - 0.5f;
        }
        x[i] = s * 1.7f;
        if (i < N)
            imat[i] = 0.1f + s * s;
    }
    real_data real;
    const int have_real = load_real(&real) == 0;

    printf("bench_quant: one thread, %d rows of %d values per pass, best of %d rounds; MB/s of floats, "
           "cyc = rdtsc ticks per 32 values\n", ROWS, N, ROUNDS);
    if (!isa_runs(Q_ISA_AVX512))
        printf("(this CPU lacks %s: those lines are left out)\n", isa_runs(Q_ISA_AVX2) ? "avx512" : "avx2 and avx512");
    if (!have_real)
        printf("(../shared/golden/quant missing: no rmse columns)\n");
    printf("%-7s %-6s %17s %17s %17s %17s %11s %9s %9s %5s\n", "type", "isa", "quantize MB/s cyc",
           "quant+imat MB/s cyc", "dequant MB/s cyc", "dot MB/s cyc", "x q / q+w", "rmse",
           "rmse-w", "bpw");
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ++ti) {
        const int type = TYPES[ti];
        const q_type_info_t *info = q_type_info(type);
        const q_kernels *ref = q_kernels_get_isa(type, Q_ISA_SCALAR);
        bench_ctx c = {.x = x, .imat = imat, .q = q, .act = act, .out = out,
                       .row_size = q_row_size(type, N)};
        if (ref->vec_dot) { /* the activations, the same bytes on every ISA */
            c.act_size = q_row_size(ref->vec_dot_type, N);
            for (int r = 0; r < ROWS; ++r)
                q_kernels_get_isa(ref->vec_dot_type, Q_ISA_SCALAR)
                    ->from_float(x + (size_t)r * N, act + (size_t)r * c.act_size, N);
        }
        speed sp[3][OP_COUNT];
        bench_type(type, &c, sp);
        for (int isa = Q_ISA_SCALAR; isa <= Q_ISA_AVX512; ++isa) {
            if (!isa_runs((q_isa)isa))
                continue;
            printf("%-7s %-6s", info->name, q_isa_name((q_isa)isa));
            for (int op = 0; op < OP_COUNT; ++op)
                print_speed(sp[isa][op], op != OP_DOT || ref->vec_dot);
            printf(" %5.1f %5.1f", sp[0][OP_QUANT].cyc32 / sp[isa][OP_QUANT].cyc32,
                   sp[0][OP_QUANT_W].cyc32 / sp[isa][OP_QUANT_W].cyc32);
            const double bpw = 8.0 * (double)info->type_size / (double)info->blck_size;
            if (isa == Q_ISA_SCALAR && have_real)
                printf(" %9.3g %9.3g %5.2f", real_rmse(&real, type, NULL),
                       real_rmse(&real, type, real.imat), bpw);
            else if (isa == Q_ISA_SCALAR)
                printf(" %9s %9s %5.2f", "-", "-", bpw);
            printf("\n");
        }
    }
    free(x);
    free(imat);
    free(out);
    free(q);
    free(act);
    free(real.x);
    free(real.imat);
    return 0;
}
