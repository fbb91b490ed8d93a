/* logits.h — reference log-probabilities saved once and reused for many candidates
 * (`qkit verify --save-logits / --ref-logits`).
 *
 * Layout: one zstd frame whose decompressed bytes are, little-endian:
 *   header  "QKLOGIT1" (8 bytes), u32 version (1), u32 n_vocab, u32 n_ctx, u32 n_scored
 *           (scored positions per chunk), u32 n_chunks
 *   chunks  n_chunks times: i32 tokens[n_ctx] (as evaluated, BOS included), then
 *           f32 logp[n_scored][n_vocab] (natural-log softmax of the reference's logits for the
 *           scored positions n_ctx/2 … n_ctx-2)
 * The writer streams chunk by chunk (nothing but one chunk in memory) into a temporary renamed
 * into place on commit; the reader validates the header and every chunk's size. */
#ifndef QKIT_FORMATS_LOGITS_H
#define QKIT_FORMATS_LOGITS_H

#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"

typedef struct {
    uint32_t n_vocab, n_ctx, n_scored, n_chunks;
} lg_header;

typedef struct lg_writer lg_writer;
int lg_writer_open(lg_writer **out, const char *path, const lg_header *h, qk_err *err);
int lg_writer_chunk(lg_writer *w, const int32_t *tokens, const float *logp, qk_err *err);
int lg_writer_commit(lg_writer *w, qk_err *err); /* frees w */
void lg_writer_abort(lg_writer *w);              /* accepts NULL */

typedef struct lg_reader lg_reader;
int lg_reader_open(lg_reader **out, const char *path, lg_header *h, qk_err *err);
/* The same over size bytes in memory (borrowed until lg_reader_close); name is used in messages. */
int lg_reader_open_mem(lg_reader **out, const void *data, size_t size, const char *name, lg_header *h,
                       qk_err *err);
/* Reads the next chunk into tokens[n_ctx] and logp[n_scored][n_vocab]. */
int lg_reader_chunk(lg_reader *r, int32_t *tokens, float *logp, qk_err *err);
void lg_reader_close(lg_reader *r); /* accepts NULL */

#endif
