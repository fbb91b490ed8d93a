/* file.h — the one whole-file reader of qkit (config.json, tokenizer files, safetensors indexes,
 * imatrix files, texts to tokenize).
 *
 * Large binary inputs (safetensors shards, GGUF) are mapped by their own readers, not read here. */
#ifndef QKIT_FORMATS_FILE_H
#define QKIT_FORMATS_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"

#define QK_FILE_NO_LIMIT SIZE_MAX /* max_bytes for "as large as memory allows" */

/* Reads the whole of path into a malloc'd buffer with a '\0' after the last byte (*len excludes
 * it; the caller frees *out). Regular files, pipes and devices are read to their end; a folder is
 * refused. A file of exactly max_bytes is accepted, one byte more is not.
 *
 * Returns QK_OK, or
 *   QK_ENOTFOUND  path, or a folder on it, does not exist (ENOENT, ENOTDIR): "PATH: cannot open: …"
 *   QK_EIO        any other refusal: permissions, a folder, a read error
 *   QK_ERANGE     the file holds more than max_bytes: "PATH: N bytes, over the limit of M"
 *   QK_ENOMEM
 * and then *out is NULL and *len 0. Every message starts with the path. */
int qk_file_read(const char *path, size_t max_bytes, char **out, size_t *len, qk_err *err);

#endif
