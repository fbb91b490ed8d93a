/* fuzz_safetensors.c — parses arbitrary bytes as a safetensors file (in memory) and, when they are
 * accepted, reads every byte of every tensor, so ASan catches any range the validator let through
 * that leaves the input. Rejections must come with a one-line message. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../formats/safetensors.h"

static void check_accepted(const st_file *f, const uint8_t *data, size_t size)
{
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < st_file_n_tensors(f); i++) {
        const st_tensor *t = st_file_tensor(f, i);
        const uint8_t *p = t->data;
        if (p < data || t->nbytes > size || (size_t)(p - data) > size - t->nbytes ||
            t->nbytes != t->n_elements * st_dtype_size(t->dtype) || st_file_find(f, t->name) != t)
            __builtin_trap();
        for (uint64_t j = 0; j < t->nbytes; j++)
            sink ^= p[j];
    }
    for (size_t i = 0; i < st_file_n_meta(f); i++)
        sink ^= (uint8_t)(strlen(st_file_meta_key(f, i)) + strlen(st_file_meta_value(f, i)));
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_file *f;
    qk_err err = {{0}};
    if (st_file_open_mem(&f, data, size, "fuzz.safetensors", &err) != QK_OK) {
        if (f || !err.msg[0] || strchr(err.msg, '\n'))
            __builtin_trap();
        return 0;
    }
    check_accepted(f, data, size);
    st_file_close(f);
    return 0;
}
