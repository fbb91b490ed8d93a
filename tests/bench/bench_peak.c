/* bench_peak.c — the machine's FP32 multiply-add peak, measured: every OpenMP thread runs
 * independent chains of fused multiply-adds on the widest vectors the CPU has (AVX-512, AVX2 or
 * scalar), enough of them to cover the FMA latency. Prints "bench_peak: N GFLOP/s" (2 flops per
 * lane and FMA) — the figure bench_speed.sh sets the engine's GFLOP/s against. A VM's
 * /proc/cpuinfo shows a nominal clock, not the one the cores run at: hence a measurement. */
#include <omp.h>
#include <stdio.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define CHAINS 12

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static float fma512(long iters)
{
    __m512 a[CHAINS];
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int k = 0; k < CHAINS; k++)
        a[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12 /* the chains must live in registers */
        for (int k = 0; k < CHAINS; k++)
            a[k] = _mm512_fmadd_ps(a[k], m, c);
    }
    float s = 0;
    for (int k = 0; k < CHAINS; k++)
        s += _mm512_reduce_add_ps(a[k]);
    return s;
}

__attribute__((target("avx2,fma"))) static float fma256(long iters)
{
    __m256 a[CHAINS];
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int k = 0; k < CHAINS; k++)
        a[k] = _mm256_set1_ps((float)k);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int k = 0; k < CHAINS; k++)
            a[k] = _mm256_fmadd_ps(a[k], m, c);
    }
    float f[8], s = 0;
    for (int k = 0; k < CHAINS; k++) {
        _mm256_storeu_ps(f, a[k]);
        for (int j = 0; j < 8; j++)
            s += f[j];
    }
    return s;
}
#endif

int main(void)
{
    int lanes = 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    lanes = __builtin_cpu_supports("avx512f") ? 16 : __builtin_cpu_supports("avx2") ? 8 : 0;
#endif
    if (lanes == 0 || lanes == 1) {
        printf("bench_peak: no AVX2 or AVX-512 here, skipped\n");
        return 0;
    }
    const long iters = 100000000;
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = now();
        int threads = 1;
#pragma omp parallel reduction(+ : sink)
        {
#pragma omp single
            threads = omp_get_num_threads();
#if defined(__x86_64__)
            sink += lanes == 16 ? fma512(iters) : fma256(iters);
#endif
        }
        const double gflops = 2.0 * lanes * CHAINS * (double)iters * threads / (now() - t0) / 1e9;
        best = gflops > best ? gflops : best;
    }
    printf("bench_peak: %.0f GFLOP/s FP32 FMA (%d-lane vectors, %d threads)\n", best, lanes,
           omp_get_max_threads());
    return 0;
}
