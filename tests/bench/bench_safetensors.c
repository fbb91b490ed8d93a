/* bench_safetensors.c — time to open a sharded checkpoint through its index: every shard's header
 * parsed and validated, all names indexed. Builds 8 shards × 300 small tensors (names as in a
 * Llama checkpoint) in a temporary folder and prints the median of several opens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../formats/safetensors.h"

enum { SHARDS = 8, PER_SHARD = 300, RUNS = 15 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void shard_name(char *buf, size_t size, const char *dir, int k)
{
    snprintf(buf, size, "%s/model-%05d-of-%05d.safetensors", dir, k + 1, SHARDS);
}

/* Writes the shards and the index; returns 0 on success. */
static int build(const char *dir)
{
    static const char *parts[10] = {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",         "self_attn.o_proj",
        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",            "input_layernorm",
        "post_attention_layernorm",             "self_attn.rotary_emb"};
    static char names[SHARDS * PER_SHARD][80];
    static st_tensor_spec specs[PER_SHARD];
    static const void *data[PER_SHARD];
    static const float payload[64];
    char path[4096], index[4096];
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    FILE *ix = fopen(index, "w");
    if (!ix)
        return -1;
    fprintf(ix, "{\"metadata\": {\"total_size\": %d},\n \"weight_map\": {",
            SHARDS * PER_SHARD * (int)sizeof payload);
    for (int k = 0; k < SHARDS; k++) {
        for (int j = 0; j < PER_SHARD; j++) {
            int i = k * PER_SHARD + j;
            snprintf(names[i], sizeof names[i], "model.layers.%d.%s.weight", i / 10, parts[i % 10]);
            specs[j] = (st_tensor_spec){.name = names[i], .dtype = ST_F32, .n_dims = 2,
                                        .shape = {8, 8}};
            data[j] = payload;
            fprintf(ix, "%s\n  \"%s\": \"model-%05d-of-%05d.safetensors\"", i ? "," : "", names[i],
                    k + 1, SHARDS);
        }
        shard_name(path, sizeof path, dir, k);
        const char *key[1] = {"format"}, *val[1] = {"pt"};
        qk_err err;
        if (st_write_file(path, specs, data, PER_SHARD, key, val, 1, &err) != QK_OK) {
            fprintf(stderr, "bench_safetensors: %s\n", err.msg);
            fclose(ix);
            return -1;
        }
    }
    fprintf(ix, "}}\n");
    return fclose(ix) == 0 ? 0 : -1;
}

static void cleanup(const char *dir)
{
    char path[4096];
    for (int k = 0; k < SHARDS; k++) {
        shard_name(path, sizeof path, dir, k);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    char dir[] = "/tmp/qkit-bench-st-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("bench_safetensors: mkdtemp");
        return 1;
    }
    int rc = build(dir);
    double t[RUNS];
    size_t n_tensors = 0;
    for (int r = 0; r < RUNS && rc == 0; r++) {
        st_model *m;
        qk_err err;
        double t0 = now();
        if (st_model_open(&m, dir, &err) != QK_OK) {
            fprintf(stderr, "bench_safetensors: %s\n", err.msg);
            rc = -1;
            break;
        }
        t[r] = now() - t0;
        n_tensors = st_model_n_tensors(m);
        st_model_close(m);
    }
    cleanup(dir);
    if (rc != 0 || n_tensors != SHARDS * PER_SHARD) {
        fprintf(stderr, "bench_safetensors: failed (%zu tensors)\n", n_tensors);
        return 1;
    }
    qsort(t, RUNS, sizeof t[0], cmp_double);
    printf("safetensors: open %d-shard index, %zu tensors: %.2f ms median of %d (%.1f us/tensor)\n",
           SHARDS, n_tensors, 1e3 * t[RUNS / 2], RUNS, 1e6 * t[RUNS / 2] / (double)n_tensors);
    return 0;
}
