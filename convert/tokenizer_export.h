/* tokenizer_export.h — a tok_vocab to the tokenizer.* metadata llama.cpp's converter writes.
 *
 * Contract: te_export() writes, in convert_hf_to_gguf.py's order, tokenizer.ggml.model ("llama"
 * for SentencePiece, "gpt2" for byte-level BPE), .pre, .tokens, .scores (SentencePiece only),
 * .token_type, .merges (BPE), the special ids gguf-py's SpecialVocab has handlers for (bos, eos,
 * unknown, seperator [sic], padding, mask; never cls, and eot only when the extras name it),
 * add_bos_token/add_eos_token when the source states them, tokenizer.chat_template, then the
 * LlamaModel extras (add_space_prefix, CodeLlama's prefix/suffix/middle/eot ids). Token texts
 * keep their exact bytes (NUL included). The vocabulary is only read. */
#ifndef QKIT_CONVERT_TOKENIZER_EXPORT_H
#define QKIT_CONVERT_TOKENIZER_EXPORT_H

#include <stdint.h>

#include "../calib/tokenizer.h"
#include "../formats/gguf.h"
#include "arch.h"

typedef struct {
    int add_space_prefix; /* -1: not written; else tokenizer.ggml.add_space_prefix */
    int add_bos;          /* -1: as the vocabulary says; 0/1 replaces add_bos_token */
    int32_t prefix_id, suffix_id, middle_id, eot_id; /* -1: none */
} te_extra;

void te_extra_init(te_extra *x);

/* The extras LlamaModel.set_vocab adds for the folder: add_prefix_space from
 * tokenizer_config.json (a JSON null counts as absent, where the converter would write false),
 * add_bos_token false for 49152-token vocabularies (SmolLM / Granite small), CodeLlama's FIM ids
 * for 32016. Other architectures get none. A missing tokenizer_config.json is fine. */
int te_extra_from_hf(const char *dir, const ca_config *c, te_extra *x, qk_err *err);

/* x may be NULL (no extras). */
int te_export(gguf_writer *w, const tok_vocab *v, const te_extra *x, qk_err *err);

#endif
