/* fuzz_config.c — config.json through the architecture description: arbitrary bytes as a
 * config must be refused with a one-line message or give a description whose every output
 * tensor (name, source names, shapes) can be listed. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../convert/arch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ca_config c;
    qk_err err = {{0}};
    if (ca_config_parse((const char *)data, size, "fuzz/config.json", &c, &err) != QK_OK) {
        if (!err.msg[0] || strchr(err.msg, '\n'))
            __builtin_trap();
        return 0;
    }
    ca_output o;
    volatile size_t sink = 0;
    for (size_t i = 0; i < 100000 && ca_output_at(&c, i, &o); i++) {
        char name[256];
        int n_dims;
        int64_t shape[4];
        for (int k = 0; k < 2; k++) {
            ca_output_src_name(&o, k, name, sizeof name);
            sink += strlen(name);
        }
        ca_output_src_shape(&o, &n_dims, shape);
        if (n_dims < 0 || n_dims > 4)
            __builtin_trap();
    }
    (void)sink;
    return 0;
}
