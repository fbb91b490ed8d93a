/* bench_gguf.c — streaming writer throughput: 64 tensors of 8 MiB written through the GGUF
 * writer (in 1 MiB pieces, committed with fsync) next to the same bytes written with plain
 * fwrite + fsync. One line per figure; the files are removed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../formats/gguf.h"
#include "../../quant/types.h"

#define N_TENSORS 64
#define TENSOR_BYTES (8u << 20)
#define PIECE (1u << 20)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int write_gguf(const char *path, const uint8_t *buf, qk_err *err)
{
    gguf_writer *w;
    int rc = gguf_writer_open(&w, path, NULL, err);
    if (rc)
        return rc;
    gguf_writer_set_str(w, "general.architecture", "bench");
    for (int i = 0; i < N_TENSORS; i++) {
        char name[32];
        snprintf(name, sizeof name, "blk.%d.weight", i);
        gguf_writer_add_tensor(w, name, Q_TYPE_F32, 2, (const int64_t[]){1024, TENSOR_BYTES / 4096});
    }
    gguf_writer_begin_data(w);
    for (int i = 0; i < N_TENSORS; i++)
        for (size_t off = 0; off < TENSOR_BYTES; off += PIECE)
            gguf_writer_write(w, buf + off, PIECE);
    return gguf_writer_commit(w, err);
}

static int write_plain(const char *path, const uint8_t *buf)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = 1;
    for (int i = 0; i < N_TENSORS && ok; i++)
        for (size_t off = 0; off < TENSOR_BYTES && ok; off += PIECE)
            ok = fwrite(buf + off, 1, PIECE, f) == PIECE;
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* Best of ROUNDS, the order swapped every round: whichever file goes second pays for freeing
 * the first one's blocks, which would otherwise bias the comparison. */
#define ROUNDS 4

static double timed(int gguf, const char *path, const uint8_t *buf, qk_err *err, int *rc)
{
    double t0 = now();
    *rc = gguf ? write_gguf(path, buf, err) : write_plain(path, buf);
    double t = now() - t0;
    if (!gguf && *rc)
        snprintf(err->msg, sizeof err->msg, "plain write failed");
    unlink(path);
    return t;
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/qkit-bench-XXXXXX", tmp ? tmp : "/tmp");
    uint8_t *buf = malloc(TENSOR_BYTES);
    if (!buf || !mkdtemp(dir)) {
        fprintf(stderr, "bench_gguf: setup failed\n");
        free(buf);
        return 1;
    }
    for (size_t i = 0; i < TENSOR_BYTES; i++)
        buf[i] = (uint8_t)(i * 2654435761u >> 24);
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    double best_gguf = 1e30, best_plain = 1e30;
    qk_err err = {{0}};
    int rc = 0;
    for (int k = 0; k < 2 * ROUNDS && !rc; k++) {
        int gguf = (k ^ (k >> 1)) & 1; /* plain, gguf, gguf, plain, plain, gguf ... */
        double t = timed(gguf, path, buf, &err, &rc);
        double *best = gguf ? &best_gguf : &best_plain;
        *best = t < *best ? t : *best;
    }
    rmdir(dir);
    free(buf);
    if (rc) {
        fprintf(stderr, "bench_gguf: %s\n", err.msg);
        return 1;
    }
    double mb = (double)N_TENSORS * TENSOR_BYTES / 1e6;
    printf("gguf writer (fsync): %.0f MB in %.2f s = %.0f MB/s\n", mb, best_gguf, mb / best_gguf);
    printf("plain fwrite (fsync): %.0f MB in %.2f s = %.0f MB/s\n", mb, best_plain, mb / best_plain);
    return 0;
}
