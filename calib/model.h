/* model.h — builds an eng_model from the architecture description (formats/gguf_arch.h) and a
 * source of GGUF-named tensors: a GGUF file, or anything else that can name its tensors the GGUF
 * way (convert/hf_engine.c reads Hugging Face folders through the converter's plan).
 *
 * Contract: matrices are borrowed from the source (a GGUF's mapping; the source must outlive the
 * model) unless the source hands over ownership; 1-D tensors become owned F32 copies. Free with
 * eng_model_free_owned(). Which blocks are mixtures of experts is read off the tensors present
 * (a block with a router, ffn_gate_inp, is one). Missing tensors, unknown architectures and shapes
 * that contradict the hyper-parameters are errors naming the key or tensor. */
#ifndef QKIT_CALIB_MODEL_H
#define QKIT_CALIB_MODEL_H

#include "../formats/gguf.h"
#include "../formats/gguf_arch.h"
#include "engine.h"

typedef struct {
    /* The tensor GGUF-named `name`: QK_OK and *out filled (out->data stays valid as long as the
     * source, or is a buffer the source registered with eng_model_own()), GGUF_MISSING when the
     * source has no such tensor, < 0 with a message on error. */
    int (*find)(void *user, const char *name, eng_tensor *out, qk_err *err);
    void *user;
} eng_source;

/* hp: the hyper-parameters (layer_moe is recomputed from the tensors present). rope_neox: 1 when
 * q/k are laid out for RoPE on halves, 0 for adjacent pairs. bos_id is left to the caller. */
int eng_model_build(eng_model *m, const ga_arch *a, const ga_hparams *hp, int rope_neox,
                    const eng_source *src, qk_err *err);

/* Hands a malloc'd buffer to the model: freed by eng_model_free_owned(). On failure p is freed. */
int eng_model_own(eng_model *m, void *p, qk_err *err);

int eng_model_load_gguf(eng_model *m, const gguf_ctx *g, qk_err *err);

#endif
