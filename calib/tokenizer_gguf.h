/* tokenizer_gguf.h — a tok_vocab from the tokenizer.ggml.* metadata of a GGUF file.
 *
 * Contract: the vocabulary copies what it needs; the gguf_ctx may be closed afterwards. */
#ifndef QKIT_CALIB_TOKENIZER_GGUF_H
#define QKIT_CALIB_TOKENIZER_GGUF_H

#include "../formats/gguf.h"
#include "tokenizer.h"

int tok_vocab_load_gguf(const gguf_ctx *g, tok_vocab **out, qk_err *err);

#endif
