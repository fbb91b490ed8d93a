/* fuzz_st_index.c — a model.safetensors.index.json (weight_map, metadata) next to two small valid
 * shards: arbitrary index bytes must be refused with a one-line message, or open a model whose
 * every tensor lies inside its shard and is found by name. The files live in a private temporary
 * folder, removed at exit. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static void cleanup(void)
{
    static const char *const names[] = {"a.safetensors", "b.safetensors", "model.safetensors.index.json"};
    char p[128];
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* A shard with one F32 tensor of 2 values named name. */
static void shard(const char *file, const char *name)
{
    char hdr[128], p[128];
    int n = snprintf(hdr, sizeof hdr, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", name);
    while (n % 8)
        hdr[n++] = ' ';
    uint64_t len = (uint64_t)n;
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(len >> (8 * i));
    static const float vals[2] = {1.0f, -2.0f};
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(le, 1, 8, f) != 8 || fwrite(hdr, 1, (size_t)n, f) != (size_t)n ||
        fwrite(vals, 4, 2, f) != 2 || fclose(f))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char p[128];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/qkit-fuzz-index-XXXXXX");
        if (!mkdtemp(dir))
            abort();
        atexit(cleanup);
        shard("a.safetensors", "x.weight");
        shard("b.safetensors", "y.weight");
    }
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f))
        abort();
    st_model *m;
    qk_err err = {{0}};
    if (st_model_open(&m, p, &err) != QK_OK) {
        if (!err.msg[0] || strchr(err.msg, '\n'))
            __builtin_trap();
        return 0;
    }
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < st_model_n_tensors(m); i++) {
        const st_tensor *t = st_model_tensor(m, i);
        const uint8_t *b = t->data;
        for (uint64_t k = 0; k < t->nbytes; k++)
            sink ^= b[k];
        if (st_model_find(m, t->name) != t)
            __builtin_trap();
    }
    for (size_t i = 0; i < st_model_n_index_meta(m); i++)
        sink ^= (uint8_t)strlen(st_model_index_meta_key(m, i));
    (void)sink;
    st_model_close(m);
    return 0;
}
