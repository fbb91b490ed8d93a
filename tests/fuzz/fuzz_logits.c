/* fuzz_logits.c — a `verify --ref-logits` file: arbitrary bytes must be refused with a one-line
 * message or give a header whose chunks can be read (or refused) without touching memory outside
 * the buffers its sizes ask for. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../formats/logits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lg_reader *r;
    lg_header h;
    qk_err err = {{0}};
    if (lg_reader_open_mem(&r, data, size, "fuzz.logits", &h, &err) != QK_OK) {
        if (r || !err.msg[0] || strchr(err.msg, '\n'))
            __builtin_trap();
        return 0;
    }
    /* verify allocates what the run needs, never what a file says; stay small here */
    uint64_t n_logp = (uint64_t)h.n_scored * h.n_vocab;
    if (h.n_ctx <= (1u << 16) && n_logp <= (1u << 20)) {
        int32_t *tok = malloc((size_t)h.n_ctx * sizeof *tok);
        float *logp = malloc((size_t)n_logp * sizeof *logp);
        for (uint32_t c = 0; tok && logp && c < h.n_chunks && c < 64; c++)
            if (lg_reader_chunk(r, tok, logp, &err) != QK_OK)
                break;
        free(tok);
        free(logp);
    }
    lg_reader_close(r);
    return 0;
}
