/* bench_convert.c — `qkit convert` on full-size synthetic checkpoints (BF16, written by
 * `qkit synth` into a temporary folder): TinyLlama-1.1B, and two blocks of Qwen3-30B-A3B, of
 * Mixtral-8x7B and of Llama 4 Scout at full width (mixtures of experts: 128 experts of 768, 8
 * experts of 14336, 16 fused and transposed experts of 8192 with a shared expert).
 * Throughput and the peak resident memory of the qkit process, converting to f16 and q8_0 and,
 * for the MoE models, `qkit quantize` of the f16 file to Q4_K_M. The peak must stay under the
 * largest 2-D slice of any output tensor (one expert's matrix, not the stacked 3-D tensor) plus
 * 64 MiB (the streaming contract); the bench fails otherwise. Everything it writes is removed.
 *
 * The qkit binary is $QKIT, else ../qkit next to this program's folder (build/bench/..). */
#define _GNU_SOURCE
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../formats/gguf.h"

#define BUDGET_SLACK (64.0 * 1024 * 1024)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs argv as a child; its wall time and peak RSS (bytes). Returns its exit status or -1. */
static int run(char *const argv[], double *seconds, double *peak_rss)
{
    double t0 = now();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout)) /* reports and summaries: the bench prints its own */
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid)
        return -1;
    *seconds = now() - t0;
    *peak_rss = (double)ru.ru_maxrss * 1024.0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The largest 2-D slice (bytes) of any tensor of a GGUF file. */
static uint64_t largest_slice(const char *path)
{
    gguf_ctx *g;
    qk_err err;
    uint64_t max = 0;
    if (gguf_open(&g, path, &err))
        return 0;
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor_info *t = gguf_tensor(g, i);
        uint64_t slice = t->nbytes / (uint64_t)(t->ne[2] * t->ne[3]);
        max = slice > max ? slice : max;
    }
    gguf_close(g);
    return max;
}

static void remove_tree(const char *dir)
{
    char *argv[] = {"/bin/rm", "-rf", (char *)dir, NULL};
    double s, r;
    run(argv, &s, &r);
}

/* One run of argv writing `out` from `in_bytes` of input; 0 when the memory bound held. The
 * bound is the largest slice of `bound_of` (the output, or the input of a quantization, whose
 * f32 slice is what quantize holds). */
static int bench_run(char *const argv[], const char *what, const char *out, const char *bound_of,
                     double slice_factor, double in_bytes)
{
    double seconds, rss;
    int rc = run(argv, &seconds, &rss);
    if (rc != 0) {
        fprintf(stderr, "bench_convert: %s failed (exit %d)\n", what, rc);
        return 1;
    }
    struct stat st;
    double out_bytes = stat(out, &st) == 0 ? (double)st.st_size : 0;
    double budget = (double)largest_slice(bound_of) * slice_factor + BUDGET_SLACK;
    printf("%-44s %6.2f GB in, %6.2f GB out, %6.2f s, %5.2f GB/s in, peak RSS %6.1f MiB "
           "(bound %.1f MiB)\n",
           what, in_bytes / 1e9, out_bytes / 1e9, seconds, in_bytes / seconds / 1e9, rss / 1048576.0,
           budget / 1048576.0);
    if (rss > budget) {
        fprintf(stderr, "bench_convert: peak RSS above the bound\n");
        return 1;
    }
    return 0;
}

static int bench_convert(const char *qkit, const char *name, const char *model, const char *dir,
                         const char *outtype, double in_bytes, int keep)
{
    char out[4096], what[128];
    snprintf(out, sizeof out, "%s/out-%s.gguf", dir, outtype);
    snprintf(what, sizeof what, "convert %s bf16 -> %s", name, outtype);
    char *argv[] = {(char *)qkit, "convert", (char *)model, "-o", out, "--outtype", (char *)outtype,
                    "--quiet", NULL};
    int rc = bench_run(argv, what, out, out, 1.0, in_bytes);
    if (!keep)
        unlink(out);
    return rc;
}

/* convert to f16 against `dd conv=fsync` of the checkpoint's bytes (the disk's own speed: read
 * from the page cache, write, fsync): best of three each, alternating, and their ratio. */
static int bench_vs_dd(const char *qkit, const char *name, const char *model, const char *weights,
                       const char *dir)
{
    char out[4200], of[4200], in[8400];
    snprintf(out, sizeof out, "%s/out-dd-f16.gguf", dir);
    snprintf(of, sizeof of, "of=%s/dd.out", dir);
    snprintf(in, sizeof in, "if=%s", weights);
    char *conv[] = {(char *)qkit, "convert", (char *)model, "-o", out, "--outtype", "f16", "--quiet", NULL};
    char *dd[] = {"/bin/dd", in, of, "bs=4M", "conv=fsync", "status=none", NULL};
    double best_c = 1e30, best_d = 1e30, sec, rss;
    for (int i = 0; i < 3; i++) {
        if (run(dd, &sec, &rss))
            return 1;
        best_d = sec < best_d ? sec : best_d;
        if (run(conv, &sec, &rss))
            return 1;
        best_c = sec < best_c ? sec : best_c;
        unlink(out);
        unlink(of + 3);
    }
    printf("%-44s %6.2f s, dd conv=fsync of the same bytes %6.2f s: %.2fx (goal <= 1.25x)\n", name, best_c,
           best_d, best_c / best_d);
    return 0;
}

/* f16 → Q4_K_M: quantize holds one slice as f32 (twice the f16 bytes) at most. */
static int bench_quantize(const char *qkit, const char *name, const char *dir)
{
    char in[4096], out[4096], what[128];
    snprintf(in, sizeof in, "%s/out-f16.gguf", dir);
    snprintf(out, sizeof out, "%s/out-q4_k_m.gguf", dir);
    snprintf(what, sizeof what, "quantize %s f16 -> Q4_K_M", name);
    struct stat st;
    double in_bytes = stat(in, &st) == 0 ? (double)st.st_size : 0;
    char *argv[] = {(char *)qkit, "quantize", in, out, "Q4_K_M", NULL};
    int rc = bench_run(argv, what, out, in, 2.0, in_bytes);
    unlink(in);
    unlink(out);
    return rc;
}

static void qkit_path(const char *argv0, char *buf, size_t size)
{
    const char *env = getenv("QKIT");
    if (env) {
        snprintf(buf, size, "%s", env);
        return;
    }
    char *copy = strdup(argv0);
    snprintf(buf, size, "%s/../qkit", copy ? dirname(copy) : ".");
    free(copy);
}

static const struct {
    const char *name, *config, *layers;
    double need; /* bytes free in /tmp */
    int moe;
} CASES[] = {
    {"TinyLlama-1.1B", "TinyLlama-1.1B-Chat-v1.0", NULL, 7e9, 0},
    {"Qwen3-30B-A3B x2", "Qwen3-30B-A3B", "2", 12e9, 1},
    {"Mixtral-8x7B x2", "Mixtral-8x7B-v0.1", "2", 20e9, 1},
    {"Llama-4-Scout x2", "Llama-4-Scout-17B-16E-Instruct", "2", 40e9, 1},
};

static int bench_case(const char *qkit, const char *shared, size_t c)
{
    char config[4096], dir[] = "/tmp/qkit-bench-convert-XXXXXX", model[4096], weights[4200];
    snprintf(config, sizeof config, "%s/hf-configs/%s/config.json", shared, CASES[c].config);
    struct statvfs vfs;
    if (access(config, R_OK)) {
        printf("bench_convert: %s skipped (needs %s)\n", CASES[c].name, config);
        return 0;
    }
    if (statvfs("/tmp", &vfs) == 0 && (double)vfs.f_bavail * (double)vfs.f_frsize < CASES[c].need) {
        printf("bench_convert: %s skipped (needs %.0f GB free in /tmp)\n", CASES[c].name, CASES[c].need / 1e9);
        return 0;
    }
    if (!mkdtemp(dir))
        return 1;
    snprintf(model, sizeof model, "%s/model", dir);
    /* the MoE configs come without tokenizer files: generate one of their vocab_size */
    char *synth[] = {(char *)qkit, "synth", "--config", config, "-o", model, "--dtype", "bf16", "--quiet",
                     CASES[c].layers ? "--tokenizer-gen" : NULL, "--layers", (char *)CASES[c].layers, NULL};
    double seconds, rss;
    int rc = run(synth, &seconds, &rss);
    struct stat st;
    snprintf(weights, sizeof weights, "%s/model.safetensors", model);
    if (rc != 0 || stat(weights, &st) != 0) {
        fprintf(stderr, "bench_convert: qkit synth %s failed (exit %d)\n", CASES[c].name, rc);
        remove_tree(dir);
        return 1;
    }
    printf("synth %s bf16: %.2f GB in %.1f s\n", CASES[c].name, (double)st.st_size / 1e9, seconds);
    if (c == 0)
        rc |= bench_vs_dd(qkit, "convert TinyLlama-1.1B bf16 -> f16 vs dd", model, weights, dir);
    rc |= bench_convert(qkit, CASES[c].name, model, dir, "f16", (double)st.st_size, CASES[c].moe);
    rc |= bench_convert(qkit, CASES[c].name, model, dir, "q8_0", (double)st.st_size, 0);
    if (CASES[c].moe)
        rc |= bench_quantize(qkit, CASES[c].name, dir);
    remove_tree(dir);
    return rc;
}

int main(int argc, char **argv)
{
    (void)argc;
    char qkit[4096];
    qkit_path(argv[0], qkit, sizeof qkit);
    const char *shared = getenv("QKIT_SHARED") ? getenv("QKIT_SHARED") : "../shared";
    if (access(qkit, X_OK)) {
        printf("bench_convert: skipped (needs %s)\n", qkit);
        return 0;
    }
    int rc = 0;
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++)
        rc |= bench_case(qkit, shared, c);
    return rc;
}
