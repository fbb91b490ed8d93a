/* hf_engine.h — a Hugging Face folder as an engine model, read through the converter's plan
 * (the architecture description and its transforms) without writing a GGUF
 * (`qkit perplexity HF_DIR`, `qkit verify --ref HF_DIR …`).
 *
 * Contract: tensors the plan can use in place (one source, F32/F16/BF16, no transform) are
 * borrowed from the memory-mapped safetensors, so the plan must outlive the eng_model; stacked
 * experts, FP8 weights (dequantized with their block scales) and generated tensors are
 * materialized as F32 buffers the model owns. No Q/K permutation is applied: the checkpoint's
 * rotate-half layout is exactly what the engine's RoPE on halves computes. */
#ifndef QKIT_CONVERT_HF_ENGINE_H
#define QKIT_CONVERT_HF_ENGINE_H

#include "../calib/engine.h"
#include "../calib/tokenizer.h"
#include "convert.h"

/* *plan and *vocab are NULL on failure; free with cv_plan_free / tok_vocab_free after the model. */
int cv_engine_open_hf(const char *dir, eng_model *m, cv_plan **plan, tok_vocab **vocab, qk_err *err);

#endif
