/* hf_tokenizer.h — read the tokenizer files of a Hugging Face model folder.
 *
 * Bytes only: this parses `tokenizer.json` (model BPE: vocab, merges as "a b" strings or
 * ["a","b"] pairs, added_tokens, pre_tokenizer, post_processor), the slow-tokenizer fallback
 * `vocab.json` + `merges.txt` + `added_tokens.json`, `tokenizer_config.json` (special tokens as a
 * string or {content: ...}, add_bos_token/add_eos_token, added_tokens_decoder, chat_template),
 * `chat_template.jinja` and the token ids of `config.json` into plain arrays. Like llama.cpp's
 * converter, special_tokens_map.json is not consulted. Turning the arrays into a vocabulary
 * (token types, padding, special ids) is calib/tokenizer's job. Every file is untrusted: wrong
 * JSON types, bad ids and malformed lines are QK_EFORMAT. */
#ifndef QKIT_HF_TOKENIZER_H
#define QKIT_HF_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"

/* Largest token id accepted from any file: far above real vocabularies (~262k), low enough that
 * an id-indexed array can never be an absurd allocation. */
#define HF_MAX_TOKEN_ID ((1 << 24) - 1)

/* The special-token kinds gguf-py's SpecialVocab looks for, in its order. */
enum { HF_BOS, HF_EOS, HF_UNK, HF_SEP, HF_PAD, HF_CLS, HF_MASK, HF_N_SPECIAL };
const char *hf_special_name(int kind); /* "bos", "eos", ... */

typedef struct {
    char *text; /* NUL-terminated UTF-8 */
    uint32_t len;
    int32_t id;
} hf_vocab_entry;

typedef struct {
    char *content; /* NUL-terminated UTF-8 */
    uint32_t len;
    int32_t id;
    bool special;
} hf_added_token;

typedef enum {
    HF_PRE_SPLIT = 1,  /* Split with a Regex pattern (behavior Isolated) */
    HF_PRE_BYTE_LEVEL, /* ByteLevel; with use_regex it splits with the GPT-2 pattern */
    HF_PRE_DIGITS,     /* Digits (individual_digits) */
} hf_pre_kind;

typedef struct {
    hf_pre_kind kind;
    char *pattern; /* HF_PRE_SPLIT */
    bool use_regex, add_prefix_space; /* HF_PRE_BYTE_LEVEL */
    bool individual_digits;           /* HF_PRE_DIGITS */
} hf_pre_step;

typedef enum {
    HF_SRC_NONE = 0,
    HF_SRC_TOKENIZER_JSON, /* vocab/merges came from tokenizer.json */
    HF_SRC_VOCAB_JSON,     /* from vocab.json + merges.txt (+ added_tokens.json) */
} hf_source;

typedef struct {
    char *dir;
    hf_source source;
    bool has_tokenizer_model; /* a SentencePiece tokenizer.model sits in the folder */

    /* model */
    char model_type[16];   /* "BPE", "WordPiece", "Unigram" ... ("" when unknown) */
    char decoder_type[32]; /* tokenizer.json decoder.type ("" when absent) */
    bool byte_fallback, ignore_merges;
    hf_vocab_entry *vocab; /* [n_vocab], file order */
    uint32_t n_vocab;
    char **merges; /* [n_merges] "left right" as GGUF stores them; rank = index */
    uint32_t n_merges;
    hf_added_token *added; /* tokenizer.json added_tokens */
    uint32_t n_added;
    hf_added_token *added_file; /* added_tokens.json */
    uint32_t n_added_file;

    /* tokenizer.json pre_tokenizer, flattened; pre_unsupported names a step we cannot run */
    hf_pre_step *pre;
    uint32_t n_pre;
    char pre_unsupported[48];
    bool normalizer_present;

    /* ids the post-processor puts around one sequence (TemplateProcessing, RobertaProcessing) */
    int32_t *post_prefix, *post_suffix;
    uint32_t n_post_prefix, n_post_suffix;

    /* tokenizer_config.json */
    char *special[HF_N_SPECIAL];   /* token contents, NULL when absent */
    int8_t add_special[HF_N_SPECIAL]; /* add_bos_token ...: 1, 0, or -1 when absent */
    char *chat_template;           /* or chat_template.jinja; NULL when neither */
    char *tokenizer_class;         /* NULL when absent */
    hf_added_token *config_added;  /* added_tokens_decoder */
    uint32_t n_config_added;
    char **extra_special; /* additional_special_tokens */
    uint32_t n_extra_special;

    /* config.json */
    int64_t vocab_size;                 /* 0 when absent */
    int64_t special_id[HF_N_SPECIAL];   /* bos_token_id ...; -1 when absent or not an integer */
} hf_tokenizer;

/* Reads every tokenizer file present in `dir`. At least one of tokenizer.json, vocab.json or
 * tokenizer.model must exist; vocab.json needs merges.txt. */
int hf_tokenizer_load(const char *dir, hf_tokenizer **out, qk_err *err);
void hf_tokenizer_free(hf_tokenizer *t);

/* Parses a tokenizer.json held in memory (no other files); `name` prefixes messages. */
int hf_tokenizer_parse_json(const char *json, size_t len, const char *name, hf_tokenizer **out,
                            qk_err *err);

#endif
