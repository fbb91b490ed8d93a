/* engine_open.h — opening a model for the engine from the command line: the GGUF, the
 * eng_model built on its mapped weights, and its tokenizer. */
#ifndef QKIT_CLI_ENGINE_OPEN_H
#define QKIT_CLI_ENGINE_OPEN_H

#include "../calib/engine.h"
#include "../calib/tokenizer.h"
#include "../formats/gguf.h"
#include "../convert/convert.h"

typedef struct {
    const char *path;
    gguf_ctx *g;       /* a GGUF file, or */
    cv_plan *plan;     /* a HuggingFace folder read through the converter's plan */
    eng_model m;
    tok_vocab *vocab;
} cli_engine_model;

/* path is a GGUF file or a HuggingFace folder. Returns a qk status; the message names the file. */
int cli_engine_open(cli_engine_model *em, const char *path, qk_err *err);
void cli_engine_close(cli_engine_model *em);

/* Reads a whole text file and tokenizes it as llama-perplexity does (BOS first when the
 * vocabulary adds one). Empty files are an error. */
int cli_tokenize_file(const tok_vocab *v, const char *path, tok_ids *ids, qk_err *err);

#endif
