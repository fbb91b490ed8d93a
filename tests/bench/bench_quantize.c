/* bench_quantize.c — `qkit quantize` F16 → Q4_K_M wall time and throughput on a synthetic
 * TinyLlama-1.1B (qkit synth with its config.json, then qkit convert --outtype f16), with 1 and
 * 2 threads; the two outputs must be byte-identical. Source MB/s counts the F16 input bytes.
 * QKIT_BENCH_LAYERS=N builds only N of the 22 layers (a quick smoke run). Files live in a
 * temporary folder that is removed at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../convert/convert.h"
#include "../../convert/quantize.h"
#include "../../convert/synth.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *config_path(char *buf, size_t n)
{
    const char *shared = getenv("QKIT_SHARED");
    snprintf(buf, n, "%s/hf-configs/TinyLlama-1.1B-Chat-v1.0/config.json",
             shared ? shared : "../shared");
    return access(buf, R_OK) == 0 ? buf : NULL;
}

static int files_equal(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int eq = fa && fb;
    static char x[1 << 16], y[1 << 16];
    while (eq) {
        size_t na = fread(x, 1, sizeof x, fa), nb = fread(y, 1, sizeof y, fb);
        eq = na == nb && !memcmp(x, y, na);
        if (na < sizeof x)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return eq;
}

/* The synthetic checkpoint converted to F16 GGUF at gguf_path. */
static int build_input(const char *cfg, const char *dir, const char *gguf_path, long layers)
{
    char hf[600];
    snprintf(hf, sizeof hf, "%s/hf", dir);
    sy_options so = {.config_path = cfg, .out_dir = hf, .layers = layers, .dtype = ST_F16};
    sy_result sr;
    qk_err err = {{0}};
    double t0 = now();
    if (sy_synth(&so, &sr, &err)) {
        fprintf(stderr, "bench_quantize: synth: %s\n", err.msg);
        return -1;
    }
    cv_options co;
    cv_options_init(&co);
    co.outtype = "f16";
    if (cv_convert(hf, gguf_path, &co, NULL, &err)) {
        fprintf(stderr, "bench_quantize: convert: %s\n", err.msg);
        return -1;
    }
    printf("bench_quantize: input ready (synth + convert %.1f s)\n", now() - t0);
    return 0;
}

static int run(const char *in, const char *out, int threads)
{
    qz_params p;
    qz_params_init(&p);
    p.in_path = in;
    p.out_path = out;
    p.ftype = MX_FTYPE_Q4_K_M;
    p.n_threads = threads;
    qz_report *r = NULL;
    qk_err err = {{0}};
    double t0 = now();
    if (qz_quantize(&p, &r, NULL, &err)) {
        fprintf(stderr, "bench_quantize: %s\n", err.msg);
        return -1;
    }
    double dt = now() - t0;
    printf("quantize F16 -> Q4_K_M  %d thread%s: %8.2f s  %8.1f MB/s  (%.2f GB in, %.2f GB out, "
           "%.3f bpw, %llu params)\n",
           threads, threads > 1 ? "s" : " ", dt, (double)r->src_bytes / 1e6 / dt,
           (double)r->src_bytes / 1e9, (double)r->out_bytes / 1e9, r->bpw,
           (unsigned long long)r->n_params);
    qz_report_free(r);
    return 0;
}

int main(void)
{
    char cfg[512];
    if (!config_path(cfg, sizeof cfg)) {
        printf("bench_quantize: ../shared/hf-configs/TinyLlama-1.1B-Chat-v1.0 missing (skipped)\n");
        return 0;
    }
    const char *env = getenv("QKIT_BENCH_LAYERS");
    long layers = env ? strtol(env, NULL, 10) : 0;
    char dir[] = "/tmp/qkit-bench-quantize-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("bench_quantize: mkdtemp");
        return 1;
    }
    char in[600], o1[600], o2[600], cmd[700];
    snprintf(in, sizeof in, "%s/tinyllama-f16.gguf", dir);
    snprintf(o1, sizeof o1, "%s/q4km-1.gguf", dir);
    snprintf(o2, sizeof o2, "%s/q4km-2.gguf", dir);
    int rc = build_input(cfg, dir, in, layers) || run(in, o1, 1) || run(in, o2, 2);
    if (!rc && !files_equal(o1, o2)) {
        fprintf(stderr, "bench_quantize: 1- and 2-thread outputs differ\n");
        rc = 1;
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_quantize: could not remove %s\n", dir);
    return rc ? 1 : 0;
}
