/* synth_impl.h — what synth.c shares with synth_tokenizer.c; not part of the convert/ API. */
#ifndef QKIT_CONVERT_SYNTH_IMPL_H
#define QKIT_CONVERT_SYNTH_IMPL_H

#include <cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"

#define SY_PATH_MAX 4096

/* dir/name into out[SY_PATH_MAX]; QK_ERANGE when it does not fit. */
int sy_path_join(char *out, const char *dir, const char *name, qk_err *err);

/* Writes json laid out as transformers saves it (two-space indent, final newline). */
int sy_write_json(const char *path, const cJSON *json, qk_err *err);

/* QK_ERANGE unless vocab is in [SY_GEN_MIN_VOCAB, SY_GEN_MAX_VOCAB]; what prefixes the message. */
int sy_gen_vocab_check(int64_t vocab, const char *what, qk_err *err);

#endif
