/* model.h — builds an eng_model from an open GGUF (llama, qwen2, qwen3 architectures).
 *
 * Contract: the model borrows the GGUF's mapped tensor data, so the gguf_ctx must outlive it;
 * free with eng_model_free_owned(). Missing tensors, unknown architectures and shapes that
 * contradict the hyper-parameters are errors naming the key or tensor. */
#ifndef QKIT_CALIB_MODEL_H
#define QKIT_CALIB_MODEL_H

#include "../formats/gguf.h"
#include "engine.h"

int eng_model_load_gguf(eng_model *m, const gguf_ctx *g, qk_err *err);

#endif
