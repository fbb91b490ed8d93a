/* tokenizer.h — the vocabulary and the encoders: SentencePiece ("llama") and byte-level BPE
 * ("gpt2"), token for token identical to llama.cpp (src/llama-vocab.cpp at c392e50).
 *
 * A tok_vocab holds exactly what GGUF stores under tokenizer.ggml.*: token texts, scores, types,
 * merges, special ids, add_bos/add_eos, the pre-tokenizer name and the chat template. It is built
 * from a SentencePiece model, from a Hugging Face folder (arrays produced the way llama.cpp's
 * convert_hf_to_gguf.py produces them) or from plain arrays (a GGUF reader). Once built it is
 * read-only: encoding and decoding may run concurrently on one vocabulary. */
#ifndef QKIT_TOKENIZER_H
#define QKIT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../formats/spm_model.h"
#include "../quant/status.h"

typedef enum {
    TOK_KIND_SPM = 1, /* GGUF tokenizer.ggml.model "llama" */
    TOK_KIND_BPE = 2, /* "gpt2" */
} tok_kind;

/* llama.cpp's token types (tokenizer.ggml.token_type). */
enum {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
};

/* Special token slots; the first seven follow gguf-py's SpecialVocab (and hf_tokenizer.h). */
enum { TOK_BOS, TOK_EOS, TOK_UNK, TOK_SEP, TOK_PAD, TOK_CLS, TOK_MASK, TOK_EOT, TOK_N_SPECIAL };

typedef struct tok_impl tok_impl;

/* Every field is owned by the vocabulary and read-only for callers. */
typedef struct {
    tok_kind kind;
    uint32_t n_tokens;
    char **tokens;       /* [n_tokens] NUL-terminated (may hold NUL bytes: use token_len) */
    uint32_t *token_len; /* [n_tokens] */
    float *scores;       /* [n_tokens]; NULL when the source has none (HF BPE) */
    int32_t *types;      /* [n_tokens] TOK_TYPE_*, as exported */
    uint32_t n_merges;
    char **merges;       /* [n_merges] "left right", rank = index (BPE) */
    int32_t special[TOK_N_SPECIAL]; /* token ids, -1 when none */
    int add_bos, add_eos;  /* 1/0 as the source says, -1 when silent (see tok_vocab_add_bos) */
    bool add_space_prefix; /* SPM: prepend a space to text that follows BOS, a special token or
                              nothing (sentencepiece's add_dummy_prefix) */
    bool remove_extra_whitespaces; /* exported; llama.cpp's SPM encoder does not apply it */
    char pre[32];          /* tokenizer.ggml.pre ("default" for SPM) */
    char *chat_template;   /* NULL when none */
    tok_impl *impl;
} tok_vocab;

/* Arrays for tok_vocab_create, e.g. straight from a GGUF file. Call tok_vocab_desc_init first:
 * it sets every special id to -1 and the tri-states to -1. */
typedef struct {
    tok_kind kind;
    uint32_t n_tokens;
    const char *const *tokens;
    const uint32_t *token_len; /* NULL: strlen */
    const float *scores;       /* NULL: none */
    const int32_t *types;      /* NULL: all NORMAL */
    uint32_t n_merges;
    const char *const *merges; /* "left right" */
    int32_t special[TOK_N_SPECIAL]; /* -1: none; TOK_EOT -1 is detected from the texts as
                                       llama.cpp does ("<|eot_id|>", "<|im_end|>", ...) */
    int add_bos, add_eos;      /* -1: unspecified */
    int add_space_prefix;      /* -1: llama.cpp's default (SPM yes, BPE no) */
    bool remove_extra_whitespaces;
    const char *pre;           /* NULL: "default"; must be a name llama.cpp knows (BPE) */
    const char *const *patterns; /* optional pre-tokenizer regexes used instead of pre's */
    uint32_t n_patterns;
    const char *chat_template;
} tok_vocab_desc;

void tok_vocab_desc_init(tok_vocab_desc *d, tok_kind kind);

/* llama.cpp's id for a special token (TOK_BOS, TOK_EOS, TOK_UNK) a file does not name: SPM 1, 2,
 * 0; BPE 11, 11, none. -1 when there is none or it is past n_tokens. */
int32_t tok_default_special(tok_kind kind, int slot, uint32_t n_tokens);

/* Validates and copies the arrays: tokens must be non-empty and unique, types 0..6, scores not
 * NaN, special ids in range, and every merge "a b" must name tokens a, b and ab. */
int tok_vocab_create(const tok_vocab_desc *d, tok_vocab **out, qk_err *err);

/* Vocabulary of a SentencePiece model alone: types as llama.cpp's converter writes them
 * (USER_DEFINED pieces become NORMAL), special ids from the trainer spec. */
int tok_vocab_from_spm(const spm_model *m, tok_vocab **out, qk_err *err);
int tok_vocab_load_spm(const char *path, tok_vocab **out, qk_err *err);

/* Vocabulary of a Hugging Face folder, as convert_hf_to_gguf.py builds it: tokenizer.model if
 * present (plus added_tokens.json and added_tokens_decoder), else byte-level BPE from
 * tokenizer.json or vocab.json + merges.txt (+ added_tokens.json), padded to config.json's
 * vocab_size with "[PAD{i}]" tokens. Special ids follow gguf-py's SpecialVocab. For BPE, `pre`
 * names the pre-tokenizer; NULL detects it from the chkhsh of llama.cpp's test text (an unknown
 * hash is QK_EUNSUPPORTED, and the message names the hash). */
int tok_vocab_load_hf(const char *dir, const char *pre, tok_vocab **out, qk_err *err);

void tok_vocab_free(tok_vocab *v);

/* add_bos/add_eos with llama.cpp's defaults applied (SPM: BOS yes; BPE: only llama3-style,
 * tekken and chameleon pre-tokenizers, not llama4 / gpt-4o). */
bool tok_vocab_add_bos(const tok_vocab *v);
bool tok_vocab_add_eos(const tok_vocab *v);

/* Replaces the pre-tokenizer (and with it the regexes, ignore_merges and clean_spaces). */
int tok_vocab_set_pre(tok_vocab *v, const char *pre, qk_err *err);

/* ---------------------------------------------------------------- encode / decode */

typedef struct {
    int32_t *ids;
    size_t n, cap;
} tok_ids;

void tok_ids_free(tok_ids *ids);

enum {
    TOK_ADD_SPECIAL = 1u << 0,   /* BOS/EOS as tok_vocab_add_bos/eos say */
    TOK_PARSE_SPECIAL = 1u << 1, /* control tokens written in the text become those tokens;
                                    without it only USER_DEFINED tokens are (as in llama.cpp) */
};

/* Appends the ids of text[0..len) to out. Invalid UTF-8 is handled as llama.cpp does. */
int tok_encode(const tok_vocab *v, const char *text, size_t len, unsigned flags, tok_ids *out,
               qk_err *err);

enum {
    TOK_DECODE_SPECIAL = 1u << 0,        /* render control/unknown tokens as their text */
    TOK_DECODE_REMOVE_SPECIAL = 1u << 1, /* drop a leading BOS / trailing EOS the vocab adds */
};

/* ids → text (llama_detokenize): *text is malloc'd and NUL-terminated, *len excludes the NUL.
 * An id out of range is QK_ERANGE. */
int tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, unsigned flags, char **text,
               size_t *len, qk_err *err);

/* One token's text (llama_token_to_piece, no leading-space strip): byte-level and U+2581 spaces
 * undone, <0xXX> as its byte, control/unknown tokens only with TOK_DECODE_SPECIAL. Writes at most
 * `cap` bytes to buf (no NUL) and the full length to *len. An id out of range is QK_ERANGE. */
int tok_token_to_piece(const tok_vocab *v, int32_t id, unsigned flags, char *buf, size_t cap,
                       size_t *len, qk_err *err);

/* The pieces the vocabulary's pre-tokenizer regexes cut text[0..len) into before byte-level
 * encoding and merges (llama.cpp's unicode_regex_split); special tokens are not split out first.
 * *ends (malloc'd; free() it) receives, ascending, the byte offset in text where each piece ends,
 * the last one len; *n their count (0 for empty text). An SPM vocabulary has no regexes: one
 * piece. On failure *ends is NULL and *n 0. */
int tok_pretokenize(const tok_vocab *v, const char *text, size_t len, size_t **ends, size_t *n,
                    qk_err *err);

/* ---------------------------------------------------------------- pre-tokenizer detection */

/* llama.cpp's convert_hf_to_gguf.py test text ("chktxt"), NUL-terminated UTF-8. */
const char *tok_chktxt(void);

/* sha256 (hex) of Python's str() of [prefix..., encode(chktxt, parse_special)..., suffix...]. */
int tok_vocab_chkhsh(const tok_vocab *v, const int32_t *prefix, size_t n_prefix,
                     const int32_t *suffix, size_t n_suffix, char hex[65], qk_err *err);

/* The tokenizer.ggml.pre name convert_hf_to_gguf.py assigns to a chkhsh, or NULL. */
const char *tok_pre_from_chkhsh(const char *hex);

#endif
