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

/* ---- outputs that would destroy an input ------------------------------------------------------
 *
 * Every command that writes checks its output paths against its inputs before it creates
 * anything. Paths are compared by identity, not spelling: st_dev and st_ino of what they name,
 * links followed, so "./a.gguf", "/abs/a.gguf", a symbolic link and a hard link to a.gguf all are
 * a.gguf. An output that does not exist yet is compared as its resolved parent folder plus its
 * name with each resolved input path. */

/* QK_OK when writing out (a new file renamed over it) leaves in intact; QK_EALIAS ("OUT: is the
 * input IN (the same file): writing it would destroy the input; choose another output path")
 * when they are one file. When in is a folder (a Hugging Face checkpoint), out is compared with
 * the folder and with every file in it (config.json, shards, tokenizer files, links into a
 * cache; sub-folders are not inputs). An input that does not exist never matches. */
int qk_output_check(const char *out, const char *in, qk_err *err);

#endif
