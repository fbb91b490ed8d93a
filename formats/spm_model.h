/* spm_model.h — decode and encode a SentencePiece `tokenizer.model` (a protobuf ModelProto).
 *
 * Only the fields a tokenizer needs are kept: the pieces (text, score, type), the trainer's
 * model type, byte_fallback and special ids, and the normalizer flags. The file is untrusted:
 * every varint, length and field type is checked against the buffer, and a bad file yields
 * QK_EFORMAT with a message naming the file, the byte offset and the field. The writer emits
 * the same fields, so what it writes reads back unchanged. */
#ifndef QKIT_SPM_MODEL_H
#define QKIT_SPM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"

/* ModelProto.SentencePiece.Type (the same numbers as llama.cpp's token types). */
typedef enum {
    SPM_PIECE_NORMAL = 1,
    SPM_PIECE_UNKNOWN = 2,
    SPM_PIECE_CONTROL = 3,
    SPM_PIECE_USER_DEFINED = 4,
    SPM_PIECE_UNUSED = 5,
    SPM_PIECE_BYTE = 6,
} spm_piece_type;

typedef struct {
    const char *text; /* NUL-terminated, never empty; lives as long as the model */
    uint32_t len;     /* bytes, without the NUL (the text may contain NUL bytes) */
    float score;      /* never NaN */
    int type;         /* spm_piece_type */
} spm_piece;

typedef struct {
    spm_piece *pieces; /* [n_pieces] */
    uint32_t n_pieces; /* 1 ..= INT32_MAX */

    /* TrainerSpec (defaults from sentencepiece_model.proto when a field is absent) */
    int model_type;    /* 1 unigram (default), 2 bpe, 3 word, 4 char */
    int32_t vocab_size; /* as trained (8000 when absent); n_pieces is what the file holds */
    bool byte_fallback; /* false */
    bool treat_whitespace_as_suffix; /* false */
    int32_t unk_id, bos_id, eos_id, pad_id; /* 0, 1, 2, -1 */

    /* NormalizerSpec */
    bool add_dummy_prefix;         /* true */
    bool remove_extra_whitespaces; /* true */
    bool escape_whitespaces;       /* true */
    char normalizer_name[32];      /* "" when absent; truncated if longer */
    size_t precompiled_charsmap_size; /* bytes of the (ignored) normalization map */

    char *pool_; /* private: storage of the piece texts */
} spm_model;

/* Decodes a ModelProto held in memory. `name` (e.g. the file path) prefixes error messages.
 * On success *out owns a model to release with spm_model_free. */
int spm_model_parse(const void *data, size_t size, const char *name, spm_model **out, qk_err *err);

/* Reads and decodes a file. */
int spm_model_load(const char *path, spm_model **out, qk_err *err);

void spm_model_free(spm_model *m);

/* ---- writing ---- */

/* The TrainerSpec and NormalizerSpec fields a written model carries; every one is written
 * (treat_whitespace_as_suffix only when true, as sentencepiece leaves it out by default), so a
 * reader never falls back to a proto default the caller did not choose. */
typedef struct {
    int model_type;                  /* 1 unigram, 2 bpe, 3 word, 4 char */
    int32_t vocab_size;              /* usually the number of pieces */
    bool byte_fallback;
    bool treat_whitespace_as_suffix;
    int32_t unk_id, bos_id, eos_id, pad_id; /* -1: none */
    const char *normalizer_name;     /* NULL: left out */
    bool add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
} spm_write_opts;

/* Encodes a ModelProto: pieces (text, score, type; the type is left out for NORMAL, as
 * sentencepiece does), then trainer_spec, then normalizer_spec, each field in number order.
 * Only text[0, len) is read. *out is malloc'd (the caller frees it) and holds *size bytes.
 * `name` (e.g. the path) prefixes error messages. QK_ERANGE for what the reader would refuse:
 * no pieces, more than INT32_MAX, an empty text, a NaN score or an unknown type; QK_ENOMEM. */
int spm_model_serialize(const spm_piece *pieces, size_t n, const spm_write_opts *opts,
                        const char *name, uint8_t **out, size_t *size, qk_err *err);

/* spm_model_serialize, then writes path atomically (formats/outfile.h). */
int spm_model_write(const char *path, const spm_piece *pieces, size_t n,
                    const spm_write_opts *opts, qk_err *err);

#endif
