/* fuzz_spm_model.c — feeds arbitrary bytes to the SentencePiece model decoder; whatever decodes is
 * turned into a vocabulary and used to encode a fixed text and the input itself, then decode. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "../../calib/tokenizer.h"
#include "../../formats/spm_model.h"

static void exercise(const tok_vocab *v, const uint8_t *data, size_t size)
{
    static const char text[] = "Hello  world\n \xE2\x96\x81x\t\xFF\xC3<s></s><unk>";
    qk_err err;
    tok_ids ids = {0};
    tok_encode(v, text, sizeof text - 1, TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL, &ids, &err);
    tok_encode(v, (const char *)data, size < 512 ? size : 512, 0, &ids, &err);
    char *out;
    size_t len;
    if (tok_decode(v, ids.ids, ids.n, TOK_DECODE_SPECIAL, &out, &len, &err) == QK_OK)
        free(out);
    tok_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    spm_model *m;
    qk_err err;
    if (spm_model_parse(data, size, "fuzz", &m, &err) != QK_OK)
        return 0;
    tok_vocab *v;
    if (tok_vocab_from_spm(m, &v, &err) == QK_OK) {
        exercise(v, data, size);
        tok_vocab_free(v);
    }
    spm_model_free(m);
    return 0;
}
