/* fuzz_tensor_type.c — `quantize --tensor-type REGEX=TYPE` patterns (PCRE2 on user input) and
 * the mix planner: the first line of the input is the pattern, the next lines are tensor names
 * of a small llama-like model. A bad pattern is refused with a one-line message; a good one plans
 * every tensor to a known type. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../convert/mix.h"
#include "../../quant/types.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    char *line = strchr(text, '\n');
    if (line)
        *line++ = 0;
    qk_err err = {{0}};
    if (mx_tensor_type_check(text, &err) != QK_OK) {
        if (!err.msg[0] || strchr(err.msg, '\n'))
            __builtin_trap();
        free(text);
        return 0;
    }
    mx_tensor ts[40];
    size_t n = 0;
    static const char *const fixed[] = {"token_embd.weight", "output.weight", "blk.0.attn_v.weight",
                                        "blk.1.ffn_down.weight", "output_norm.weight"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        ts[n++] = (mx_tensor){fixed[i], 2, {256, 64, 1, 1}, Q_TYPE_F32};
    ts[n - 1].n_dims = 1;
    ts[n - 1].ne[1] = 1;
    while (line && *line && n < sizeof ts / sizeof ts[0]) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        int dup = 0;
        for (size_t i = 0; i < n; i++)
            dup |= !strcmp(ts[i].name, line);
        if (!dup)
            ts[n++] = (mx_tensor){line, 2, {256, 32, 1, 1}, Q_TYPE_F32};
        line = next;
    }
    const char *pats[1] = {text};
    mx_options o;
    mx_options_init(&o);
    o.tensor_types = pats;
    o.n_tensor_types = 1;
    mx_model m = {"llama", 2, 8, 8, 0};
    mx_plan *p;
    if (mx_plan_create(&p, &m, MX_FTYPE_Q4_K_M, &o, ts, n, &err) == QK_OK) {
        for (size_t k = 0; k < mx_plan_count(p); k++)
            if (!q_type_info(mx_plan_get(p, mx_plan_order(p, k))->type))
                __builtin_trap();
        mx_plan_free(p);
    } else if (!err.msg[0] || strchr(err.msg, '\n')) {
        __builtin_trap();
    }
    free(text);
    return 0;
}
