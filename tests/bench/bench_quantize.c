/* bench_quantize.c — `qkit quantize` F16 → Q4_K_M wall time and throughput on a synthetic
 * TinyLlama-1.1B (qkit synth with its config.json, then qkit convert --outtype f16), with 1 and
 * 2 threads; the two outputs must be byte-identical. Source MB/s counts the F16 input bytes.
 * QKIT_BENCH_LAYERS=N builds only N of the 22 layers (a quick smoke run).
 *
 * First, the streaming contract on a mixture-of-experts tensor: a GGUF holding one f32
 * blk.0.ffn_up_exps.weight of [2048, 768, E] (E = 16 experts, 100 MB; QKIT_BENCH_EXPERTS=E for
 * more) quantized to Q4_K_M in a child process: wall time, MB/s and the child's peak RSS, which
 * must stay under MOE_RSS_BOUND whatever E is (the bench fails otherwise).
 *
 * Files live in a temporary folder that is removed at the end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../convert/convert.h"
#include "../../convert/quantize.h"
#include "../../convert/synth.h"
#include "../../formats/gguf.h"
#include "../../quant/types.h"

#define MOE_NE0 2048
#define MOE_NE1 768
/* One piece (QZ_CHUNK_VALUES floats, 16 MiB, and its quantized bytes) plus the program, its
 * libraries and thread stacks: far below the 100 MB tensor of the default run. */
#define MOE_RSS_BOUND (64.0 * 1048576)

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

/* ---- mixture of experts: peak RSS ---------------------------------------------------------- */

/* A one-layer llama GGUF with one f32 expert tensor [MOE_NE0, MOE_NE1, n_expert] of values in
 * [-1, 1), written one expert at a time (this process never holds the tensor). */
static int build_moe(const char *path, int64_t n_expert)
{
    gguf_writer *w;
    qk_err err = {{0}};
    if (gguf_writer_open(&w, path, NULL, &err)) {
        fprintf(stderr, "bench_quantize: %s\n", err.msg);
        return -1;
    }
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.block_count", 1);
    gguf_writer_set_u32(w, "llama.attention.head_count", 16);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", 16);
    gguf_writer_set_u32(w, "llama.expert_count", (uint32_t)n_expert);
    const char *name = "blk.0.ffn_up_exps.weight";
    int64_t ne[3] = {MOE_NE0, MOE_NE1, n_expert};
    size_t slice = (size_t)MOE_NE0 * MOE_NE1;
    gguf_writer_add_tensor(w, name, Q_TYPE_F32, 3, ne);
    gguf_writer_begin_data(w);
    gguf_writer_begin_tensor(w, name, slice * sizeof(float) * (size_t)n_expert);
    float *x = malloc(slice * sizeof *x);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int64_t m = 0; x && m < n_expert; m++) {
        for (size_t k = 0; k < slice; k++) {
            s ^= s >> 12, s ^= s << 25, s ^= s >> 27; /* xorshift64* */
            x[k] = (float)((s * 0x2545f4914f6cdd1dull) >> 40) / (float)(1 << 23) - 1.0f;
        }
        gguf_writer_write(w, x, slice * sizeof *x);
    }
    free(x);
    if (!x || gguf_writer_commit(w, &err)) {
        fprintf(stderr, "bench_quantize: %s\n", x ? err.msg : "out of memory");
        return -1;
    }
    return 0;
}

/* Quantizes in a child process so that its peak RSS is the pipeline's alone. */
static int run_moe(const char *in, const char *out, int threads, int64_t n_expert)
{
    fflush(stdout);
    double t0 = now();
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench_quantize: fork");
        return -1;
    }
    if (pid == 0) {
        qz_params p;
        qz_params_init(&p);
        p.in_path = in;
        p.out_path = out;
        p.ftype = MX_FTYPE_Q4_K_M;
        p.n_threads = threads;
        qk_err err = {{0}};
        int rc = qz_quantize(&p, NULL, NULL, &err);
        if (rc)
            fprintf(stderr, "bench_quantize: %s\n", err.msg);
        _exit(rc ? 1 : 0);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
        return -1;
    double dt = now() - t0, in_bytes = 4.0 * MOE_NE0 * MOE_NE1 * (double)n_expert;
    double rss = (double)ru.ru_maxrss * 1024.0;
    printf("quantize MoE f32 [%d, %d, %lld] -> Q4_K_M  %d thread%s: %6.2f s  %7.1f MB/s  "
           "(%.0f MB in)  peak RSS %6.1f MiB (bound %.0f MiB; counts program, buffers and the "
           "mapped input pages not yet dropped: each piece's are dropped once it is written)\n",
           MOE_NE0, MOE_NE1, (long long)n_expert, threads, threads > 1 ? "s" : " ", dt,
           in_bytes / 1e6 / dt, in_bytes / 1e6, rss / 1048576.0, MOE_RSS_BOUND / 1048576.0);
    if (rss > MOE_RSS_BOUND) {
        fprintf(stderr, "bench_quantize: peak RSS above the bound\n");
        return -1;
    }
    return 0;
}

/* Runs before anything else uses OpenMP: a child forked from a process with an OpenMP thread
 * pool may not start its own. */
static int bench_moe(void)
{
    const char *env = getenv("QKIT_BENCH_EXPERTS");
    int64_t n_expert = env ? strtoll(env, NULL, 10) : 16;
    if (n_expert < 1)
        n_expert = 1;
    char dir[] = "/tmp/qkit-bench-quantize-moe-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("bench_quantize: mkdtemp");
        return 1;
    }
    char in[600], out[600], cmd[700];
    snprintf(in, sizeof in, "%s/moe-f32.gguf", dir);
    snprintf(out, sizeof out, "%s/moe-q4km.gguf", dir);
    double t0 = now();
    int rc = build_moe(in, n_expert);
    if (!rc)
        printf("bench_quantize: MoE input ready (%.1f s)\n", now() - t0);
    for (int threads = 1; threads <= 2 && !rc; threads++)
        rc = run_moe(in, out, threads, n_expert);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_quantize: could not remove %s\n", dir);
    return rc ? 1 : 0;
}

int main(void)
{
    if (bench_moe())
        return 1;
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
