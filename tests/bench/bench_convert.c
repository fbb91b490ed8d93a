/* bench_convert.c — `qkit convert` on a full-size synthetic TinyLlama-1.1B checkpoint (BF16,
 * written by `qkit synth` into a temporary folder): throughput and the peak resident memory of
 * the qkit process, to f16 and to q8_0. The peak must stay under the largest output tensor plus
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

static uint64_t largest_tensor(const char *path)
{
    gguf_ctx *g;
    qk_err err;
    uint64_t max = 0;
    if (gguf_open(&g, path, &err))
        return 0;
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++)
        if (gguf_tensor(g, i)->nbytes > max)
            max = gguf_tensor(g, i)->nbytes;
    gguf_close(g);
    return max;
}

static void remove_tree(const char *dir)
{
    char *argv[] = {"/bin/rm", "-rf", (char *)dir, NULL};
    double s, r;
    run(argv, &s, &r);
}

/* One conversion; 0 when the memory bound held. */
static int bench_one(const char *qkit, const char *model, const char *dir, const char *outtype,
                     double in_bytes)
{
    char out[4096];
    snprintf(out, sizeof out, "%s/out-%s.gguf", dir, outtype);
    char *argv[] = {(char *)qkit, "convert", (char *)model, "-o", out, "--outtype", (char *)outtype,
                    "--quiet", NULL};
    double seconds, rss;
    int rc = run(argv, &seconds, &rss);
    if (rc != 0) {
        fprintf(stderr, "bench_convert: qkit convert --outtype %s failed (exit %d)\n", outtype, rc);
        return 1;
    }
    struct stat st;
    double out_bytes = stat(out, &st) == 0 ? (double)st.st_size : 0;
    double budget = (double)largest_tensor(out) + BUDGET_SLACK;
    printf("convert TinyLlama-1.1B bf16 -> %-5s %6.2f GB in, %6.2f GB out, %6.2f s, %5.2f GB/s in, "
           "peak RSS %6.1f MiB (bound %.1f MiB)\n",
           outtype, in_bytes / 1e9, out_bytes / 1e9, seconds, in_bytes / seconds / 1e9,
           rss / 1048576.0, budget / 1048576.0);
    unlink(out);
    if (rss > budget) {
        fprintf(stderr, "bench_convert: peak RSS above the bound\n");
        return 1;
    }
    return 0;
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

int main(int argc, char **argv)
{
    (void)argc;
    char qkit[4096], config[4096];
    qkit_path(argv[0], qkit, sizeof qkit);
    const char *shared = getenv("QKIT_SHARED") ? getenv("QKIT_SHARED") : "../shared";
    snprintf(config, sizeof config, "%s/hf-configs/TinyLlama-1.1B-Chat-v1.0/config.json", shared);
    struct statvfs vfs;
    if (access(config, R_OK) || access(qkit, X_OK)) {
        printf("bench_convert: skipped (needs %s and %s)\n", config, qkit);
        return 0;
    }
    if (statvfs("/tmp", &vfs) == 0 && (double)vfs.f_bavail * (double)vfs.f_frsize < 7e9) {
        printf("bench_convert: skipped (needs 7 GB free in /tmp)\n");
        return 0;
    }
    char dir[] = "/tmp/qkit-bench-convert-XXXXXX", model[4096];
    if (!mkdtemp(dir))
        return 1;
    snprintf(model, sizeof model, "%s/tinyllama", dir);
    char *synth[] = {qkit, "synth", "--config", config, "-o", model, "--dtype", "bf16", "--quiet", NULL};
    double seconds, rss;
    int rc = run(synth, &seconds, &rss);
    struct stat st;
    char weights[4200];
    snprintf(weights, sizeof weights, "%s/model.safetensors", model);
    if (rc != 0 || stat(weights, &st) != 0) {
        fprintf(stderr, "bench_convert: qkit synth failed (exit %d)\n", rc);
        remove_tree(dir);
        return 1;
    }
    printf("synth TinyLlama-1.1B bf16: %.2f GB in %.1f s\n", (double)st.st_size / 1e9, seconds);
    rc = bench_one(qkit, model, dir, "f16", (double)st.st_size);
    rc |= bench_one(qkit, model, dir, "q8_0", (double)st.st_size);
    remove_tree(dir);
    return rc;
}
