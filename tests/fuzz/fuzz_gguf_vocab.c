/* fuzz_gguf_vocab.c — a GGUF file's tokenizer keys turned into a vocabulary (llama.cpp's loader
 * rules: tokens, scores, types, merges, special ids, pre-tokenizer name), then the encoder and
 * decoder on a fixed text: refuse with a message, or encode to ids inside the vocabulary
 * and decode them again. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../calib/tokenizer.h"
#include "../../calib/tokenizer_gguf.h"
#include "../../formats/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char TEXT[] = "Hello world! 123 <s> \xc3\xa9t\xc3\xa9 \xe2\x96\x81x\n\t  a\xff";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_ctx *g;
    qk_err err = {{0}};
    if (gguf_open_mem(&g, data, size, "fuzz.gguf", &err) != QK_OK)
        return 0; /* the GGUF reader has its own target */
    tok_vocab *v = NULL;
    if (tok_vocab_load_gguf(g, &v, &err) != QK_OK) {
        /* a message may quote a token's text, control bytes included: the CLI prints it as one
         * line (cli_error_line), so only its presence is checked here */
        if (v || !err.msg[0])
            __builtin_trap();
        gguf_close(g);
        return 0;
    }
    for (unsigned flags = 0; flags < 4; flags++) {
        tok_ids ids = {0};
        if (tok_encode(v, TEXT, sizeof TEXT - 1, flags, &ids, &err) == QK_OK) {
            for (size_t i = 0; i < ids.n; i++)
                if (ids.ids[i] < 0 || (uint32_t)ids.ids[i] >= v->n_tokens)
                    __builtin_trap();
            char *text = NULL;
            size_t len = 0;
            if (tok_decode(v, ids.ids, ids.n, 0, &text, &len, &err) == QK_OK)
                free(text);
        }
        tok_ids_free(&ids);
    }
    tok_vocab_free(v);
    gguf_close(g);
    return 0;
}
