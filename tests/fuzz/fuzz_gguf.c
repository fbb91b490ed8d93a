/* fuzz_gguf.c — the GGUF reader on arbitrary bytes: it must refuse cleanly or hand out values and
 * tensor ranges that are safe to touch. What it accepts goes once more through the writer and
 * the reader and must come back with the same keys, values and tensor bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../formats/gguf.h"

static uint64_t mix(uint64_t h, const void *p, uint64_t n)
{
    const uint8_t *b = p;
    for (uint64_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static size_t scalar_size(enum gguf_vtype t)
{
    static const size_t sizes[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return (unsigned)t < GGUF_TYPE_COUNT ? sizes[t] : 0;
}

/* Reads every byte a value points to; strings must be NUL-terminated at their length. */
static uint64_t touch_value(uint64_t h, const gguf_value *v)
{
    h = mix(h, &v->type, sizeof v->type);
    if (v->type == GGUF_TYPE_STR) {
        if (v->str.ptr[v->str.len] != '\0')
            abort();
        return mix(h, v->str.ptr, v->str.len);
    }
    if (v->type != GGUF_TYPE_ARR)
        return mix(h, &v->u64, scalar_size(v->type));
    h = mix(h, &v->arr.n, sizeof v->arr.n);
    for (uint64_t i = 0; i < v->arr.n; i++) {
        if (v->arr.type == GGUF_TYPE_STR) {
            gguf_value s = {.type = GGUF_TYPE_STR, .str = ((const gguf_str *)v->arr.data)[i]};
            h = touch_value(h, &s);
        } else if (v->arr.type == GGUF_TYPE_ARR) {
            h = touch_value(h, &((const gguf_value *)v->arr.data)[i]);
        }
    }
    if (scalar_size(v->arr.type) && v->arr.n)
        h = mix(h, v->arr.data, v->arr.n * scalar_size(v->arr.type));
    return h;
}

static uint64_t touch_all(const gguf_ctx *ctx)
{
    uint64_t h = 14695981039346656037ull;
    for (uint64_t i = 0; i < gguf_n_kv(ctx); i++) {
        const char *k = gguf_kv_key(ctx, i);
        if (gguf_find_key(ctx, k) != (int64_t)i)
            abort();
        h = mix(h, k, strlen(k));
        h = touch_value(h, gguf_kv_value(ctx, i));
    }
    for (uint64_t i = 0; i < gguf_n_tensors(ctx); i++) {
        const gguf_tensor_info *t = gguf_tensor(ctx, i);
        if (gguf_find_tensor(ctx, t->name) != t || t->nbytes == 0)
            abort();
        h = mix(h, t->name, strlen(t->name));
        h = mix(h, t->ne, sizeof t->ne);
        h = mix(h, t->data, 1);
        h = mix(h, (const uint8_t *)t->data + t->nbytes - 1, 1);
    }
    return h;
}

static uint64_t data_hash(const gguf_ctx *ctx)
{
    uint64_t h = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(ctx); i++)
        h = mix(h, gguf_tensor(ctx, i)->data, gguf_tensor(ctx, i)->nbytes);
    return h;
}

/* Writer then reader again; returns 0 when the writer refuses (e.g. a name ggml would not take). */
static int rewrite(const gguf_ctx *ctx, const char *path)
{
    gguf_writer *w;
    if (gguf_writer_open(&w, path, NULL, NULL))
        return 0;
    for (uint64_t i = 0; i < gguf_n_kv(ctx); i++)
        gguf_writer_set_value(w, gguf_kv_key(ctx, i), gguf_kv_value(ctx, i));
    for (uint64_t i = 0; i < gguf_n_tensors(ctx); i++) {
        const gguf_tensor_info *t = gguf_tensor(ctx, i);
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne);
    }
    gguf_writer_begin_data(w);
    for (uint64_t i = 0; i < gguf_n_tensors(ctx); i++)
        gguf_writer_write(w, gguf_tensor(ctx, i)->data, gguf_tensor(ctx, i)->nbytes);
    return gguf_writer_commit(w, NULL) == QK_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_ctx *ctx = NULL;
    qk_err err = {{0}};
    if (gguf_open_mem(&ctx, data, size, "fuzz.gguf", &err) != QK_OK) {
        if (ctx || strncmp(err.msg, "fuzz.gguf: ", 11) != 0)
            abort();
        return 0;
    }
    uint64_t h = touch_all(ctx);
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_gguf-%ld.gguf", (long)getpid());
    if (gguf_data_bytes(ctx) < (1u << 24) && rewrite(ctx, path)) {
        gguf_ctx *again = NULL;
        if (gguf_open(&again, path, &err) != QK_OK || touch_all(again) != h ||
            data_hash(again) != data_hash(ctx) || gguf_alignment(again) != gguf_alignment(ctx))
            abort();
        gguf_close(again);
        unlink(path);
    }
    gguf_close(ctx);
    return 0;
}
