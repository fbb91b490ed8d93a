/* hf_engine.h — a HuggingFace folder as an engine model, read through the converter's tables
 * without writing a GGUF (`qkit verify --ref HF_DIR …`).
 *
 * Contract: matrices are borrowed from the memory-mapped safetensors (F32, F16 or BF16), so the
 * st_model must outlive the eng_model. No Q/K permutation is needed: the checkpoint's rotate-half
 * layout is exactly what the engine's NeoX RoPE computes. */
#ifndef QKIT_CONVERT_HF_ENGINE_H
#define QKIT_CONVERT_HF_ENGINE_H

#include "../calib/engine.h"
#include "../calib/tokenizer.h"
#include "../formats/safetensors.h"

int cv_engine_open_hf(const char *dir, eng_model *m, st_model **st, tok_vocab **vocab, qk_err *err);

#endif
