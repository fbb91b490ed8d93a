/* tokenizer.c — vocabulary construction, the SPM and BPE encoders, decoding and pre-tokenizer
 * detection. Behaviour follows llama.cpp at c392e50 (src/llama-vocab.cpp, src/unicode.cpp) and
 * its converter (convert_hf_to_gguf.py, gguf-py/gguf/vocab.py); see tokenizer.h. */
#include "tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <openssl/sha.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/hf_tokenizer.h"
#include "../quant/buf.h"

_Static_assert((int)TOK_BOS == (int)HF_BOS && (int)TOK_EOS == (int)HF_EOS &&
                   (int)TOK_UNK == (int)HF_UNK && (int)TOK_SEP == (int)HF_SEP &&
                   (int)TOK_PAD == (int)HF_PAD && (int)TOK_CLS == (int)HF_CLS &&
                   (int)TOK_MASK == (int)HF_MASK,
               "special slots are shared with hf_tokenizer");

#define MAX_PATTERNS 8

struct tok_impl {
    /* token text -> id: open addressing over ids, -1 = empty */
    int32_t *tok_slot;
    uint32_t tok_mask;
    /* (left id, right id) -> rank and merged id */
    uint64_t *mg_key; /* UINT64_MAX = empty */
    int32_t *mg_rank, *mg_result;
    uint32_t mg_mask;
    int32_t *attr;           /* token types after llama.cpp's load-time overrides */
    int32_t *partition;      /* ids split out of the text before encoding, longest first */
    uint32_t n_partition;
    int32_t byte_token[256]; /* SPM: <0xXX> (or the raw byte) for byte fallback */
    uint8_t spm_pair[8192];  /* SPM: bit a·256+b set when some token's text holds bytes a, b in turn */
    pcre2_code *re[MAX_PATTERNS];
    uint32_t n_re;
    pcre2_code *re_space;    /* \s, to find non-ASCII whitespace */
    bool ignore_merges, clean_spaces, pre_add_bos;
    uint16_t byte_cpt[256];  /* GPT-2 bytes_to_unicode */
    int16_t cpt_byte[512];   /* its inverse, -1 where undefined */
};

/* ================================================================ pre-tokenizer table */

/* The regexes llama.cpp's llm_tokenizer_bpe uses per pre-tokenizer. llama.cpp runs the GPT-2 and
 * Llama-3 patterns through hand-written splitters and the rest through std::regex on a
 * "collapsed" text; all three agree with these patterns under PCRE2 once whitespace is mapped the
 * way llama.cpp maps it (see make_subject). */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3                                                                                 \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"    \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"    \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* llama.cpp's LLAMA_VOCAB_PRE_TYPE_GPT4O ("gpt-4o", "llama4"): tokenizer.json's o200k pattern
 * as llama.cpp rewrote it for std::regex, without \p{Lu}/\p{Ll}/\p{M} and (?i:): an upper-case
 * run is letters other than a-z and a lower-case run letters other than A-Z, so a non-ASCII letter
 * counts as either. Taken from a llama.cpp later than c392e50 (Llama 4 support, April 2025). */
#define RE_GPT4O                                                                                  \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+"                        \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"                                 \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*"                        \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"                                 \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_PORO " ?[^(\\s|.,!?\u2026\u3002\uFF0C\u3001\u0964\u06D4\u060C)]+"

static const char *const PAT_DEFAULT[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+",
                                          "[0-9][0-9][0-9]", NULL};
static const char *const PAT_LLAMA3[] = {RE_LLAMA3, NULL};
static const char *const PAT_QWEN2[] = {RE_QWEN2, NULL};
static const char *const PAT_GPT2[] = {RE_GPT2, NULL};
static const char *const PAT_STARCODER[] = {"\\p{N}", RE_GPT2, NULL};
static const char *const PAT_FALCON[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "[0-9][0-9][0-9]", NULL};
/* Non-ASCII characters are written as universal character names: a UTF-8 source could be
 * NFC-normalised by an editor, and several of these (U+1F7D, U+1FBE, U+2126 ...) would change. */
static const char *const PAT_DEEPSEEK_LLM[] = {
    "[\r\n]",
    "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF"
    "\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5"
    "\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA"
    "\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45"
    "\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE"
    "\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC"
    "\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139"
    "\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3"
    "\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06"
    "\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3"
    "\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2\U000118A0-\U000118DF"
    "\U0001E900-\U0001E943]+",
    "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+",
    "\\s+$",
    "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+",
    "\\p{N}+",
    NULL};
/* llama.cpp's collapsed \p{S} misses '~' (its ASCII table for symbols is "$+<=>^`|"), so here '~'
 * is moved from the symbol class to its complement to keep the same splits. */
static const char *const PAT_DEEPSEEK3[] = {
    "\\p{N}{1,3}", "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+",
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|(?:~|[^\r\n\\p{L}\\p{P}\\p{S}])?[\\p{L}\\p{M}]+|"
    " ?(?:(?!~)[\\p{P}\\p{S}])+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const PAT_DEEPSEEK_CODER[] = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
                                                 "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+",
                                                 "\\p{N}", NULL};
static const char *const PAT_PORO[] = {RE_PORO, NULL};
static const char *const PAT_GPT4O[] = {RE_GPT4O, NULL};
static const char *const PAT_VIKING[] = {RE_PORO, "\\p{N}", NULL};
static const char *const PAT_TEKKEN[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?"
    "=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const PAT_CHAMELEON[] = {
    "<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2, NULL};

enum { PRE_CLEAN = 1, PRE_IGNORE_MERGES = 2, PRE_ADD_BOS = 4 };

static const struct {
    const char *name;
    const char *const *patterns;
    unsigned flags;
} PRE_TABLE[] = {
    {"default", PAT_DEFAULT, PRE_CLEAN},
    {"llama3", PAT_LLAMA3, PRE_CLEAN | PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"llama-v3", PAT_LLAMA3, PRE_CLEAN | PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"llama-bpe", PAT_LLAMA3, PRE_CLEAN | PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"falcon3", PAT_LLAMA3, PRE_CLEAN | PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"deepseek-llm", PAT_DEEPSEEK_LLM, 0},
    {"deepseek-coder", PAT_DEEPSEEK_CODER, 0},
    {"deepseek-v3", PAT_DEEPSEEK3, 0},
    {"falcon", PAT_FALCON, PRE_CLEAN},
    {"mpt", PAT_GPT2, PRE_CLEAN},
    {"starcoder", PAT_STARCODER, PRE_CLEAN},
    {"gpt-2", PAT_GPT2, PRE_CLEAN},
    {"phi-2", PAT_GPT2, PRE_CLEAN},
    {"jina-es", PAT_GPT2, PRE_CLEAN},
    {"jina-de", PAT_GPT2, PRE_CLEAN},
    {"gigachat", PAT_GPT2, PRE_CLEAN},
    {"jina-v1-en", PAT_GPT2, PRE_CLEAN},
    {"jina-v2-es", PAT_GPT2, PRE_CLEAN},
    {"jina-v2-de", PAT_GPT2, PRE_CLEAN},
    {"jina-v2-code", PAT_GPT2, PRE_CLEAN},
    {"roberta-bpe", PAT_GPT2, PRE_CLEAN},
    {"refact", PAT_STARCODER, PRE_CLEAN},
    {"command-r", PAT_STARCODER, 0},
    {"qwen2", PAT_QWEN2, 0},
    {"deepseek-r1-qwen", PAT_QWEN2, 0},
    {"stablelm2", PAT_QWEN2, PRE_CLEAN},
    {"olmo", PAT_GPT2, PRE_CLEAN},
    {"dbrx", PAT_LLAMA3, PRE_CLEAN},
    {"smaug-bpe", PAT_LLAMA3, PRE_CLEAN},
    {"poro-chat", PAT_PORO, 0},
    {"chatglm-bpe", PAT_LLAMA3, PRE_CLEAN},
    {"viking", PAT_VIKING, 0},
    {"jais", PAT_GPT2, PRE_CLEAN},
    {"tekken", PAT_TEKKEN, PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"smollm", PAT_STARCODER, 0},
    {"codeshell", PAT_STARCODER, PRE_CLEAN},
    {"bloom", PAT_PORO, PRE_CLEAN},
    {"gpt3-finnish", PAT_PORO, PRE_CLEAN},
    {"exaone", PAT_STARCODER, PRE_CLEAN},
    {"chameleon", PAT_CHAMELEON, PRE_ADD_BOS},
    {"minerva-7b", PAT_STARCODER, PRE_CLEAN},
    {"megrez", PAT_QWEN2, PRE_CLEAN},
    {"gpt-4o", PAT_GPT4O, 0},
    {"llama4", PAT_GPT4O, 0},
};

static int pre_find(const char *name)
{
    for (size_t i = 0; i < sizeof PRE_TABLE / sizeof PRE_TABLE[0]; i++)
        if (!strcmp(PRE_TABLE[i].name, name))
            return (int)i;
    return -1;
}

/* ================================================================ hashing */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static uint32_t table_size(uint32_t n)
{
    uint32_t cap = 16;
    while (cap < 2u * n && cap < (1u << 31))
        cap <<= 1;
    return cap;
}

/* Id of the token whose text is s[0..n), or -1. */
static int32_t token_find(const tok_vocab *v, const char *s, size_t n)
{
    const tok_impl *im = v->impl;
    for (uint32_t i = (uint32_t)hash_bytes(s, n) & im->tok_mask;; i = (i + 1) & im->tok_mask) {
        int32_t id = im->tok_slot[i];
        if (id < 0)
            return -1;
        if (v->token_len[id] == n && !memcmp(v->tokens[id], s, n))
            return id;
    }
}

/* Inserts id; returns -1, or the id already holding the same text. */
static int32_t token_insert(tok_vocab *v, int32_t id)
{
    tok_impl *im = v->impl;
    const char *s = v->tokens[id];
    size_t n = v->token_len[id];
    for (uint32_t i = (uint32_t)hash_bytes(s, n) & im->tok_mask;; i = (i + 1) & im->tok_mask) {
        int32_t o = im->tok_slot[i];
        if (o < 0) {
            im->tok_slot[i] = id;
            return -1;
        }
        if (v->token_len[o] == n && !memcmp(v->tokens[o], s, n))
            return o;
    }
}

static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

/* Rank of merging tokens a and b (and the merged token in *result), or -1. */
static int32_t merge_find(const tok_impl *im, int32_t a, int32_t b, int32_t *result)
{
    if (!im->mg_key || a < 0 || b < 0)
        return -1;
    uint64_t k = pair_key(a, b);
    for (uint32_t i = (uint32_t)hash_u64(k) & im->mg_mask;; i = (i + 1) & im->mg_mask) {
        if (im->mg_key[i] == UINT64_MAX)
            return -1;
        if (im->mg_key[i] == k) {
            *result = im->mg_result[i];
            return im->mg_rank[i];
        }
    }
}

/* ======================================================= UTF-8 the way llama.cpp reads it */

/* Bytes of the character starting with lead byte c (unicode_len_utf8): a stray continuation
 * byte counts as one character. */
static size_t utf8_len(uint8_t c)
{
    static const uint8_t lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lut[c >> 4];
}

/* unicode_cpt_from_utf8 + unicode_cpts_from_utf8: invalid sequences become U+FFFD and consume one
 * byte; overlong forms and surrogates are accepted as llama.cpp accepts them. Values above
 * U+10FFFF (F5..F7 leads) make llama.cpp throw later; they become U+FFFD here. */
static uint32_t utf8_next(const uint8_t *s, size_t n, size_t *i)
{
    uint8_t c = s[*i];
    size_t need = !(c & 0x80)   ? 1
                  : !(c & 0x40) ? 0
                  : !(c & 0x20) ? 2
                  : !(c & 0x10) ? 3
                  : !(c & 0x08) ? 4
                                : 0;
    if (need == 0 || *i + need > n) {
        (*i)++;
        return 0xFFFD;
    }
    for (size_t k = 1; k < need; k++) {
        if ((s[*i + k] & 0xC0) != 0x80) {
            (*i)++;
            return 0xFFFD;
        }
    }
    static const uint8_t lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    uint32_t cpt = c & lead_mask[need];
    for (size_t k = 1; k < need; k++)
        cpt = cpt << 6 | (s[*i + k] & 0x3F);
    *i += need;
    return cpt > 0x10FFFF ? 0xFFFD : cpt;
}

/* unicode_cpt_to_utf8 (surrogates are encoded like any other value). */
static size_t utf8_put(uint32_t c, char *o)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | c >> 6);
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | c >> 12);
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | c >> 18);
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to U+0100 on. */
static void init_byte_map(tok_impl *im)
{
    for (int i = 0; i < 512; i++)
        im->cpt_byte[i] = -1;
    int next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        im->byte_cpt[b] = (uint16_t)(printable ? b : next++);
        im->cpt_byte[im->byte_cpt[b]] = (int16_t)b;
    }
}

/* ================================================================ growable arrays */

static bool ids_push(tok_ids *o, int32_t id)
{
    int32_t *p = qk_grow(o->ids, &o->cap, o->n + 1, sizeof *p);
    if (!p)
        return false;
    o->ids = p;
    o->ids[o->n++] = id;
    return true;
}

void tok_ids_free(tok_ids *ids)
{
    if (!ids)
        return;
    free(ids->ids);
    ids->ids = NULL;
    ids->n = ids->cap = 0;
}

static int oom(qk_err *err) { return qk_err_set(err, QK_ENOMEM, "tokenizer: out of memory"); }

/* ================================================================ the merge loop (SPM and BPE) */

/* Symbols are a doubly linked list over text[off, off + n); merging moves the right symbol's
 * bytes into the left one. A bigram is valid while both symbols still have the sizes it saw. */
typedef struct {
    int32_t prev, next;
    uint32_t off, n;
    int32_t id; /* BPE: token of this symbol's text, -1 if none */
} sym;

typedef struct {
    double key; /* SPM: score; BPE: -rank. Larger first, then smaller left. */
    int32_t left, right;
    uint32_t size;
    int32_t result; /* BPE: the merged token */
} bigram;

typedef struct {
    bigram *b;
    size_t n, cap;
} bheap;

static bool bigram_before(const bigram *a, const bigram *b)
{
    return a->key > b->key || (a->key == b->key && a->left < b->left);
}

static bool heap_push(bheap *h, bigram g)
{
    bigram *p = qk_grow(h->b, &h->cap, h->n + 1, sizeof *p);
    if (!p)
        return false;
    h->b = p;
    size_t i = h->n++;
    while (i > 0 && bigram_before(&g, &h->b[(i - 1) / 2])) {
        h->b[i] = h->b[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->b[i] = g;
    return true;
}

static bigram heap_pop(bheap *h)
{
    bigram top = h->b[0], last = h->b[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && bigram_before(&h->b[c + 1], &h->b[c]))
            c++;
        if (!bigram_before(&h->b[c], &last))
            break;
        h->b[i] = h->b[c];
        i = c;
    }
    if (h->n)
        h->b[i] = last;
    return top;
}

typedef struct {
    sym *s;
    size_t n, cap;
    bheap heap;
} merge_work;

static void work_free(merge_work *w)
{
    free(w->s);
    free(w->heap.b);
}

/* One symbol per UTF-8 character of text[0..len) (cut short at the end, as llama.cpp does). */
static bool split_chars(merge_work *w, const char *text, size_t len)
{
    w->n = 0;
    w->heap.n = 0;
    sym *grown = qk_grow(w->s, &w->cap, len, sizeof *grown);
    if (!grown)
        return false;
    w->s = grown;
    for (size_t off = 0; off < len;) {
        size_t n = utf8_len((uint8_t)text[off]);
        if (n > len - off)
            n = len - off;
        sym *s = &w->s[w->n];
        s->prev = (int32_t)w->n - 1;
        s->off = (uint32_t)off;
        s->n = (uint32_t)n;
        s->id = -1;
        off += n;
        s->next = off == len ? -1 : (int32_t)w->n + 1;
        w->n++;
    }
    return true;
}

static void merge_apply(merge_work *w, const bigram *g)
{
    sym *l = &w->s[g->left], *r = &w->s[g->right];
    l->n += r->n;
    r->n = 0;
    l->id = g->result;
    l->next = r->next;
    if (r->next >= 0)
        w->s[r->next].prev = g->left;
}

static bool bigram_stale(const merge_work *w, const bigram *g)
{
    const sym *l = &w->s[g->left], *r = &w->s[g->right];
    return l->n == 0 || r->n == 0 || l->n + r->n != g->size;
}

/* Queues the bigram of symbols left and right if it may merge; false only when out of memory. */
typedef bool (*bigram_try_fn)(const tok_vocab *v, merge_work *w, const char *text, int32_t left,
                              int32_t right);
/* Writes one symbol left after merging as token ids. */
typedef int (*symbol_emit_fn)(const tok_vocab *v, const char *text, const sym *s, tok_ids *out,
                              qk_err *err);

/* The merge loop SPM and BPE share once split_chars has run: queue every neighbouring pair, apply
 * the best live bigram and queue the two new pairs around it until none is left, then emit the
 * surviving symbols in order. The two differ only in how they rank a pair and what a leftover
 * symbol becomes. */
static int merge_encode(const tok_vocab *v, const char *text, merge_work *w,
                        bigram_try_fn try_bigram, symbol_emit_fn emit_symbol, tok_ids *out,
                        qk_err *err)
{
    for (size_t i = 1; i < w->n; i++)
        if (!try_bigram(v, w, text, (int32_t)i - 1, (int32_t)i))
            return oom(err);
    while (w->heap.n) {
        bigram g = heap_pop(&w->heap);
        if (bigram_stale(w, &g))
            continue;
        merge_apply(w, &g);
        const sym *l = &w->s[g.left];
        if (!try_bigram(v, w, text, l->prev, g.left) || !try_bigram(v, w, text, g.left, l->next))
            return oom(err);
    }
    for (int32_t i = w->n ? 0 : -1; i != -1; i = w->s[i].next) {
        int rc = emit_symbol(v, text, &w->s[i], out, err);
        if (rc)
            return rc;
    }
    return QK_OK;
}

/* ================================================================ SPM (llm_tokenizer_spm) */

static bool spm_try_bigram(const tok_vocab *v, merge_work *w, const char *text, int32_t left,
                           int32_t right)
{
    if (left < 0 || right < 0)
        return true;
    const sym *l = &w->s[left], *r = &w->s[right];
    int32_t id = token_find(v, text + l->off, l->n + r->n);
    if (id < 0)
        return true;
    bigram g = {v->scores ? v->scores[id] : 0.0, left, right, l->n + r->n, id};
    return heap_push(&w->heap, g);
}

static int emit(tok_ids *out, int32_t id, qk_err *err)
{
    return ids_push(out, id) ? QK_OK : oom(err);
}

/* A symbol that is not a token is written as byte tokens. Merged symbols are always tokens (a
 * bigram only enters the queue when its text is one), so llama.cpp's recursive resegment over
 * rev_merge can only ever reach this byte fallback; it is done directly here. */
static int spm_emit_symbol(const tok_vocab *v, const char *text, const sym *s, tok_ids *out,
                           qk_err *err)
{
    int32_t id = token_find(v, text + s->off, s->n);
    if (id >= 0)
        return emit(out, id, err);
    for (uint32_t k = 0; k < s->n; k++) {
        uint8_t b = (uint8_t)text[s->off + k];
        int32_t bt = v->impl->byte_token[b] >= 0 ? v->impl->byte_token[b] : v->special[TOK_UNK];
        if (bt < 0)
            return qk_err_set(
                err, QK_EFORMAT,
                "tokenizer: byte 0x%02X has no <0x%02X> token and there is no unk token", b, b);
        if (!ids_push(out, bt))
            return oom(err);
    }
    return QK_OK;
}

/* A merge joins two neighbours only when their text together is a token, so no merge ever
 * crosses a character boundary whose two bytes no token holds in turn: the text is encoded piece
 * by piece between such boundaries. Each piece's merges are those of the whole text in the same
 * order (the queue ranks by score, then position), so the ids are the same, but the queue stays
 * as small as a piece instead of the whole text (a 338 KB text: 3x faster). */
static int spm_encode(const tok_vocab *v, const char *text, size_t len, merge_work *w,
                      tok_ids *out, qk_err *err)
{
    const uint8_t *pair = v->impl->spm_pair;
    for (size_t start = 0, off = 0; start < len;) {
        /* the character starts as split_chars walks them; a cut is made before one that no token
         * can join to the character before it */
        off += utf8_len((uint8_t)text[off]);
        if (off < len) {
            unsigned pr = (uint8_t)text[off - 1] << 8 | (uint8_t)text[off];
            if (pair[pr >> 3] >> (pr & 7) & 1)
                continue;
        }
        size_t end = off < len ? off : len;
        if (!split_chars(w, text + start, end - start))
            return oom(err);
        int rc = merge_encode(v, text + start, w, spm_try_bigram, spm_emit_symbol, out, err);
        if (rc)
            return rc;
        start = off = end;
    }
    return QK_OK;
}

/* SPM text: an optional leading space, then every ' ' becomes U+2581. */
static int spm_fragment(const tok_vocab *v, const char *text, size_t len, bool prefix,
                        merge_work *w, qk_buf *tmp, tok_ids *out, qk_err *err)
{
    tmp->n = 0;
    if (qk_buf_reserve(tmp, 3 * (len + 1) + 1))
        return oom(err);
    char *o = tmp->p;
    for (size_t i = 0; i < len + prefix; i++) {
        char c = !prefix ? text[i] : i == 0 ? ' ' : text[i - 1];
        if (c == ' ') {
            memcpy(o, "\xE2\x96\x81", 3);
            o += 3;
        } else {
            *o++ = c;
        }
    }
    tmp->n = (size_t)(o - tmp->p);
    return spm_encode(v, tmp->p, tmp->n, w, out, err);
}

/* ================================================================ BPE pre-tokenization */

/* The text as PCRE2 sees it, one codepoint per codepoint of the original. */
typedef struct {
    uint32_t *cpt;    /* [n] codepoints as llama.cpp decodes them */
    size_t n;
    qk_buf subj;      /* UTF-8 of the regex view */
    uint32_t *boff;   /* [n + 1] byte offset of codepoint i in subj */
    uint32_t *at;     /* [subj.n + 1] codepoint index of the character starting at a byte */
    uint32_t *piece;  /* piece lengths in codepoints */
    size_t n_piece, cap_piece;
    uint32_t *piece2; /* scratch for the next stage */
    size_t cap_piece2;
    pcre2_match_data *md;
} pretok;

static void pretok_free(pretok *p)
{
    free(p->cpt);
    qk_buf_free(&p->subj);
    free(p->boff);
    free(p->at);
    free(p->piece);
    free(p->piece2);
    if (p->md)
        pcre2_match_data_free(p->md);
}

static bool is_space_cpt(const tok_impl *im, pcre2_match_data *md, uint32_t c)
{
    char u[4];
    size_t n = utf8_put(c, u);
    return pcre2_match(im->re_space, (PCRE2_SPTR)u, n, 0, PCRE2_NO_UTF_CHECK, md, NULL) >= 0;
}

/* The codepoint PCRE2 matches in place of c. llama.cpp maps every non-ASCII whitespace to U+000B
 * before its regexes run (and its splitters test the same set), so do we. Its whitespace set is
 * Unicode White_Space; PCRE2's \s additionally holds U+180E (a space in old Unicode, now Cf), which
 * llama.cpp classifies as "other": it, and surrogates (which PCRE2 cannot take), become U+200B, a
 * Cf character no pattern names.
 * Letters and digits are PCRE2's: its Unicode tables (14.0 in Debian 12) know nothing of the ~5k
 * characters added in Unicode 15.0/15.1 (CJK extension H, Kawi ...), which llama.cpp's 15.1 data
 * classifies; text in those scripts may split differently. */
static uint32_t regex_view(const tok_impl *im, pcre2_match_data *md, uint32_t c)
{
    if (c < 0x80)
        return c;
    if (c == 0x180E || (c >= 0xD800 && c < 0xE000))
        return 0x200B;
    return is_space_cpt(im, md, c) ? 0x0B : c;
}

static int make_subject(const tok_impl *im, const char *text, size_t len, pretok *p, qk_err *err)
{
    p->n = 0;
    p->subj.n = 0;
    free(p->cpt);
    free(p->boff);
    p->cpt = malloc((len + 1) * sizeof *p->cpt);
    p->boff = malloc((len + 1) * sizeof *p->boff);
    if (!p->cpt || !p->boff || qk_buf_reserve(&p->subj, 4 * len + 1))
        return oom(err);
    for (size_t i = 0; i < len;) {
        uint32_t c = utf8_next((const uint8_t *)text, len, &i);
        p->cpt[p->n] = c;
        p->boff[p->n++] = (uint32_t)p->subj.n;
        p->subj.n += utf8_put(regex_view(im, p->md, c), p->subj.p + p->subj.n);
    }
    p->boff[p->n] = (uint32_t)p->subj.n;
    free(p->at);
    p->at = malloc((p->subj.n + 1) * sizeof *p->at);
    if (!p->at)
        return oom(err);
    for (size_t i = 0; i <= p->n; i++)
        p->at[p->boff[i]] = (uint32_t)i;
    return QK_OK;
}

static bool piece_push(uint32_t **arr, size_t *n, size_t *cap, uint32_t len)
{
    uint32_t *a = qk_grow(*arr, cap, *n + 1, sizeof *a);
    if (!a)
        return false;
    *arr = a;
    (*arr)[(*n)++] = len;
    return true;
}

/* Splits the piece [first, first + count) with one regex: every match is a piece, and so is every
 * stretch between matches (std::regex_iterator's use in unicode_regex_split_stl). The subject
 * ends where the piece ends, so lookaheads cannot see past it. */
static int split_piece(pcre2_code *re, pretok *p, uint32_t first,
                       uint32_t count, size_t *n2, qk_err *err)
{
    const char *sub = p->subj.p + p->boff[first];
    size_t blen = p->boff[first + count] - p->boff[first], pos = 0, last = 0;
    uint32_t base = p->boff[first];
    while (pos < blen) {
        int rc = pcre2_match(re, (PCRE2_SPTR)sub, blen, pos, PCRE2_NO_UTF_CHECK, p->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return qk_err_set(err, QK_EINTERNAL, "tokenizer: regex match failed: %s", (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* no pattern here matches empty; step over a character to be safe */
            if (me >= blen)
                break;
            pos = me + utf8_len((uint8_t)sub[me]);
            continue;
        }
        if ((ms > last && !piece_push(&p->piece2, n2, &p->cap_piece2,
                                      p->at[base + ms] - p->at[base + last])) ||
            !piece_push(&p->piece2, n2, &p->cap_piece2, p->at[base + me] - p->at[base + ms]))
            return oom(err);
        last = pos = me;
    }
    if (last < blen && !piece_push(&p->piece2, n2, &p->cap_piece2,
                                   p->at[base + blen] - p->at[base + last]))
        return oom(err);
    return QK_OK;
}

static int pretokenize(const tok_impl *im, const char *text, size_t len, pretok *p, qk_err *err)
{
    int rc = make_subject(im, text, len, p, err);
    if (rc)
        return rc;
    p->n_piece = 0;
    if (p->n && !piece_push(&p->piece, &p->n_piece, &p->cap_piece, (uint32_t)p->n))
        return oom(err);
    for (uint32_t r = 0; r < im->n_re; r++) {
        size_t n2 = 0;
        uint32_t first = 0;
        for (size_t k = 0; k < p->n_piece; k++) {
            if ((rc = split_piece(im->re[r], p, first, p->piece[k], &n2, err)))
                return rc;
            first += p->piece[k];
        }
        uint32_t *t = p->piece;
        size_t tc = p->cap_piece;
        p->piece = p->piece2;
        p->cap_piece = p->cap_piece2;
        p->piece2 = t;
        p->cap_piece2 = tc;
        p->n_piece = n2;
    }
    return QK_OK;
}

/* ================================================================ BPE (llm_tokenizer_bpe) */

/* Ranks by merge order; text is unused (the symbols already carry their token ids). */
static bool bpe_try_bigram(const tok_vocab *v, merge_work *w, const char *text, int32_t left,
                           int32_t right)
{
    (void)text;
    if (left < 0 || right < 0)
        return true;
    int32_t result;
    int32_t rank = merge_find(v->impl, w->s[left].id, w->s[right].id, &result);
    if (rank < 0)
        return true;
    bigram g = {-(double)rank, left, right, w->s[left].n + w->s[right].n, result};
    return heap_push(&w->heap, g);
}

/* A leftover symbol that is not a token: llama.cpp looks up each of its bytes as a one-byte
 * token and silently drops those that are not. */
static int bpe_emit_symbol(const tok_vocab *v, const char *word, const sym *s, tok_ids *out,
                           qk_err *err)
{
    if (s->id >= 0)
        return emit(out, s->id, err);
    for (uint32_t k = 0; k < s->n; k++) {
        int32_t id = token_find(v, word + s->off + k, 1);
        if (id >= 0 && !ids_push(out, id))
            return oom(err);
    }
    return QK_OK;
}

static int bpe_word(const tok_vocab *v, const char *word, size_t len, merge_work *w, tok_ids *out,
                    qk_err *err)
{
    if (v->impl->ignore_merges) {
        int32_t id = token_find(v, word, len);
        if (id >= 0)
            return emit(out, id, err);
    }
    if (!split_chars(w, word, len))
        return oom(err);
    for (size_t i = 0; i < w->n; i++)
        w->s[i].id = token_find(v, word + w->s[i].off, w->s[i].n);
    return merge_encode(v, word, w, bpe_try_bigram, bpe_emit_symbol, out, err);
}

/* Codepoints [first, first + count) as UTF-8, each byte then written as its bytes_to_unicode
 * character (unicode_byte_encoding_process). */
static bool byte_encode(const tok_impl *im, const pretok *p, uint32_t first, uint32_t count,
                        qk_buf *word)
{
    word->n = 0;
    if (qk_buf_reserve(word, (size_t)count * 8 + 1))
        return false;
    for (uint32_t i = first; i < first + count; i++) {
        char u[4];
        size_t n = utf8_put(p->cpt[i], u);
        for (size_t k = 0; k < n; k++)
            word->n += utf8_put(im->byte_cpt[(uint8_t)u[k]], word->p + word->n);
    }
    return true;
}

static int bpe_fragment(const tok_vocab *v, const char *text, size_t len, pretok *p,
                        merge_work *w, qk_buf *word, tok_ids *out, qk_err *err)
{
    int rc = pretokenize(v->impl, text, len, p, err);
    uint32_t first = 0;
    for (size_t k = 0; !rc && k < p->n_piece; k++) {
        if (!byte_encode(v->impl, p, first, p->piece[k], word))
            return oom(err);
        rc = bpe_word(v, word->p, word->n, w, out, err);
        first += p->piece[k];
    }
    return rc;
}

/* ================================================================ special-token partition */

typedef struct {
    int32_t token; /* >= 0: this token; -1: raw text [off, off + len) */
    size_t off, len;
} frag;

typedef struct {
    frag *f;
    size_t n, cap;
} frag_list;

static bool frag_push(frag_list *l, frag f)
{
    frag *p = qk_grow(l->f, &l->cap, l->n + 1, sizeof *p);
    if (!p)
        return false;
    l->f = p;
    l->f[l->n++] = f;
    return true;
}

static const char *find_bytes(const char *h, size_t hn, const char *n, size_t nn)
{
    for (const char *end = h + hn; (size_t)(end - h) >= nn;) {
        const char *c = memchr(h, n[0], (size_t)(end - h) - nn + 1);
        if (!c)
            return NULL;
        if (!memcmp(c, n, nn))
            return c;
        h = c + 1;
    }
    return NULL;
}

/* tokenizer_st_partition: for each special token (longest first), cut it out of every raw
 * fragment, left to right. Control and unknown tokens only count with parse_special. */
static int partition(const tok_vocab *v, const char *text, size_t len, bool parse_special,
                     frag_list *a, frag_list *b, qk_err *err)
{
    a->n = 0;
    if (len && !frag_push(a, (frag){-1, 0, len}))
        return oom(err);
    for (uint32_t k = 0; k < v->impl->n_partition; k++) {
        int32_t id = v->impl->partition[k];
        int32_t at = v->impl->attr[id];
        if (!parse_special && (at == TOK_TYPE_CONTROL || at == TOK_TYPE_UNKNOWN))
            continue;
        const char *t = v->tokens[id];
        size_t tl = v->token_len[id];
        b->n = 0;
        for (size_t i = 0; i < a->n; i++) {
            frag f = a->f[i];
            const char *m;
            while (f.token < 0 && (m = find_bytes(text + f.off, f.len, t, tl))) {
                size_t left = (size_t)(m - (text + f.off));
                if ((left && !frag_push(b, (frag){-1, f.off, left})) ||
                    !frag_push(b, (frag){id, 0, 0}))
                    return oom(err);
                f.off += left + tl;
                f.len -= left + tl;
            }
            if ((f.token >= 0 || f.len) && !frag_push(b, f))
                return oom(err);
        }
        frag_list t2 = *a;
        *a = *b;
        *b = t2;
    }
    return QK_OK;
}

/* ================================================================ encode */

bool tok_vocab_add_bos(const tok_vocab *v)
{
    if (v->add_bos >= 0)
        return v->add_bos;
    return v->kind == TOK_KIND_SPM || v->impl->pre_add_bos;
}

bool tok_vocab_add_eos(const tok_vocab *v) { return v->add_eos > 0; }

typedef struct {
    frag_list a, b;
    merge_work w;
    pretok p;
    qk_buf tmp;
} enc_state;

static void enc_free(enc_state *s)
{
    free(s->a.f);
    free(s->b.f);
    work_free(&s->w);
    pretok_free(&s->p);
    qk_buf_free(&s->tmp);
}

static int encode_fragments(const tok_vocab *v, const char *text, enc_state *s, tok_ids *out,
                            qk_err *err)
{
    bool prev_special = true; /* SPM: the first text gets the dummy prefix */
    for (size_t i = 0; i < s->a.n; i++) {
        const frag *f = &s->a.f[i];
        int rc;
        if (f->token >= 0) {
            rc = emit(out, f->token, err);
            prev_special = true;
        } else if (v->kind == TOK_KIND_SPM) {
            rc = spm_fragment(v, text + f->off, f->len, v->add_space_prefix && prev_special, &s->w,
                              &s->tmp, out, err);
            prev_special = false;
        } else {
            rc = bpe_fragment(v, text + f->off, f->len, &s->p, &s->w, &s->tmp, out, err);
        }
        if (rc)
            return rc;
    }
    return QK_OK;
}

/* Offsets inside the encoders are 32-bit and the regex view of a byte takes up to 4 bytes. */
#define MAX_TEXT ((size_t)1 << 30)

int tok_encode(const tok_vocab *v, const char *text, size_t len, unsigned flags, tok_ids *out,
               qk_err *err)
{
    enc_state s = {0};
    int rc = QK_OK;
    bool add = flags & TOK_ADD_SPECIAL;
    if (len > MAX_TEXT)
        return qk_err_set(err, QK_ERANGE, "tokenizer: %zu bytes of text exceed the %zu-byte limit",
                          len, MAX_TEXT);
    if (v->kind == TOK_KIND_BPE &&
        !(s.p.md = pcre2_match_data_create(8, NULL))) {
        rc = oom(err);
        goto done;
    }
    if (add && tok_vocab_add_bos(v)) {
        if (v->special[TOK_BOS] < 0) {
            rc = qk_err_set(err, QK_EFORMAT, "tokenizer: add_bos is set but there is no BOS token");
            goto done;
        }
        if ((rc = emit(out, v->special[TOK_BOS], err)))
            goto done;
    }
    if ((rc = partition(v, text, len, flags & TOK_PARSE_SPECIAL, &s.a, &s.b, err)))
        goto done;
    if ((rc = encode_fragments(v, text, &s, out, err)))
        goto done;
    if (add && tok_vocab_add_eos(v)) {
        if (v->special[TOK_EOS] < 0)
            rc = qk_err_set(err, QK_EFORMAT, "tokenizer: add_eos is set but there is no EOS token");
        else
            rc = emit(out, v->special[TOK_EOS], err);
    }
done:
    enc_free(&s);
    return rc;
}

int tok_pretokenize(const tok_vocab *v, const char *text, size_t len, size_t **ends, size_t *n,
                    qk_err *err)
{
    pretok p = {0};
    int rc = QK_OK;
    *ends = NULL;
    *n = 0;
    if (len > MAX_TEXT)
        return qk_err_set(err, QK_ERANGE, "tokenizer: %zu bytes of text exceed the %zu-byte limit",
                          len, MAX_TEXT);
    if (!len)
        return QK_OK;
    if (!(p.md = pcre2_match_data_create(8, NULL))) {
        rc = oom(err);
        goto done;
    }
    if (v->impl->n_re == 0) { /* SPM: no regexes, one piece */
        if (!(*ends = malloc(sizeof **ends))) {
            rc = oom(err);
            goto done;
        }
        (*ends)[0] = len;
        *n = 1;
        goto done;
    }
    if ((rc = pretokenize(v->impl, text, len, &p, err)))
        goto done;
    if (!(*ends = malloc(p.n_piece * sizeof **ends))) {
        rc = oom(err);
        goto done;
    }
    /* pieces count codepoints as utf8_next reads them; walk the text again for byte offsets */
    size_t at = 0;
    for (size_t k = 0; k < p.n_piece; k++) {
        for (uint32_t c = 0; c < p.piece[k]; c++)
            (void)utf8_next((const uint8_t *)text, len, &at);
        (*ends)[k] = at;
    }
    *n = p.n_piece;
done:
    pretok_free(&p);
    return rc;
}

/* ================================================================ decode */

static bool put_unescaped(qk_buf *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && !memcmp(s + i, "\xE2\x96\x81", 3)) {
            if (qk_buf_append(o, " ", 1))
                return false;
            i += 3;
        } else {
            size_t j = i + 1;
            while (j < n && !(j + 3 <= n && !memcmp(s + j, "\xE2\x96\x81", 3)))
                j++;
            if (qk_buf_append(o, s + i, j - i))
                return false;
            i = j;
        }
    }
    return true;
}

/* llama_decode_text: every character of a byte-level token stands for one byte. */
static bool put_byte_decoded(const tok_impl *im, qk_buf *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t c = utf8_next((const uint8_t *)s, n, &i);
        int b = c < 512 ? im->cpt_byte[c] : -1;
        if (b >= 0) {
            char ch = (char)b;
            if (qk_buf_append(o, &ch, 1))
                return false;
            continue;
        }
        char hex[16];
        if (qk_buf_append(o, "[UNK_BYTE_0x", 12))
            return false;
        char u[4];
        size_t un = utf8_put(c, u);
        for (size_t k = 0; k < un; k++) {
            snprintf(hex, sizeof hex, "%02x", (uint8_t)u[k]);
            if (qk_buf_append(o, hex, 2))
                return false;
        }
        if (qk_buf_append(o, s, n) || qk_buf_append(o, "]", 1))
            return false;
    }
    return true;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

/* "<0xAB>" → 0xAB, or -1. */
static int byte_of_token(const char *t, size_t n)
{
    if (n != 6 || memcmp(t, "<0x", 3) != 0 || t[5] != '>' || hexval(t[3]) < 0 || hexval(t[4]) < 0)
        return -1;
    return hexval(t[3]) * 16 + hexval(t[4]);
}

/* token_to_piece: appends the piece of one token, minus up to `lstrip` leading spaces. */
static bool put_piece(const tok_vocab *v, int32_t id, bool special, int lstrip, qk_buf *o)
{
    int32_t at = v->impl->attr[id];
    const char *t = v->tokens[id];
    size_t n = v->token_len[id], start = o->n;
    bool ok = true;
    if (at == TOK_TYPE_CONTROL || at == TOK_TYPE_UNKNOWN || at == TOK_TYPE_USER_DEFINED) {
        if (at != TOK_TYPE_USER_DEFINED && !special)
            return true;
        ok = !qk_buf_append(o, t, n);
    } else if (at == TOK_TYPE_NORMAL) {
        ok = v->kind == TOK_KIND_SPM ? put_unescaped(o, t, n) : put_byte_decoded(v->impl, o, t, n);
    } else if (at == TOK_TYPE_BYTE && v->kind == TOK_KIND_SPM) {
        int b = byte_of_token(t, n);
        char ch = (char)b;
        ok = b < 0 || !qk_buf_append(o, &ch, 1);
    }
    size_t skip = 0;
    while (skip < (size_t)lstrip && start + skip < o->n && o->p[start + skip] == ' ')
        skip++;
    if (skip) {
        memmove(o->p + start, o->p + start + skip, o->n - start - skip);
        o->n -= skip;
    }
    return ok;
}

int tok_token_to_piece(const tok_vocab *v, int32_t id, unsigned flags, char *buf, size_t cap,
                       size_t *len, qk_err *err)
{
    *len = 0;
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return qk_err_set(err, QK_ERANGE, "tokenizer: id %d is not in 0..%u", id, v->n_tokens - 1);
    qk_buf o = {0};
    if (!put_piece(v, id, flags & TOK_DECODE_SPECIAL, 0, &o)) {
        qk_buf_free(&o);
        return oom(err);
    }
    *len = o.n;
    if (o.n && buf && cap) /* a NULL buffer asks for the length only */
        memcpy(buf, o.p, o.n < cap ? o.n : cap);
    qk_buf_free(&o);
    return QK_OK;
}

/* llama.cpp's clean_up_tokenization_spaces, three in-place passes with its exact index rules. */
static size_t clean_spaces(char *t, size_t total)
{
    size_t n1 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < n1; i++) {
        char x = t[i];
        if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','))
            total--;
        t[total++] = x;
    }
    size_t n2 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < n2; i++) {
        char x = t[i];
        if (x == '\'' && i + 1 < n2 && t[i - 1] == ' ' && t[i + 1] == ' ') {
            total--;
            t[++i] = '\0';
        }
        t[total++] = x;
    }
    size_t n3 = total;
    total = total ? 1 : 0;
    for (size_t i = 1; i < n3; i++) {
        char x = t[i];
        if (t[i - 1] == ' ' && x == '\'' && i + 1 < n3) {
            char x1 = t[i + 1];
            if (x1 == 's' || x1 == 'm')
                total--;
            else if (i + 2 < n3 &&
                     ((x1 == 'r' && t[i + 2] == 'e') || (x1 == 'v' && t[i + 2] == 'e')))
                total--;
        }
        t[total++] = x;
    }
    return total;
}

int tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, unsigned flags, char **text,
               size_t *len, qk_err *err)
{
    *text = NULL;
    *len = 0;
    qk_buf o = {0};
    bool remove_space = v->add_space_prefix;
    if ((flags & TOK_DECODE_REMOVE_SPECIAL) && tok_vocab_add_bos(v) && n &&
        ids[0] == v->special[TOK_BOS]) {
        remove_space = false;
        ids++;
        n--;
    }
    if ((flags & TOK_DECODE_REMOVE_SPECIAL) && tok_vocab_add_eos(v) && n &&
        ids[n - 1] == v->special[TOK_EOS])
        n--;
    if (qk_buf_reserve(&o, n + 1))
        return oom(err);
    o.p[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= v->n_tokens) {
            qk_buf_free(&o);
            return qk_err_set(err, QK_ERANGE, "tokenizer: id %d at position %zu is not in 0..%u",
                              ids[i], i, v->n_tokens - 1);
        }
        if (!put_piece(v, ids[i], flags & TOK_DECODE_SPECIAL, remove_space, &o)) {
            qk_buf_free(&o);
            return oom(err);
        }
        remove_space = false;
    }
    if (v->impl->clean_spaces)
        o.n = clean_spaces(o.p, o.n);
    o.p[o.n] = '\0';
    *text = o.p;
    *len = o.n;
    return QK_OK;
}

/* ================================================================ building the vocabulary */

int32_t tok_default_special(tok_kind kind, int slot, uint32_t n_tokens)
{
    const int spm = kind == TOK_KIND_SPM;
    const int32_t defaults[3] = {spm ? 1 : 11, spm ? 2 : 11, spm ? 0 : -1}; /* bos, eos, unk */
    int32_t id = slot >= 0 && slot < 3 ? defaults[slot] : -1;
    return id < (int32_t)n_tokens ? id : -1;
}

void tok_vocab_desc_init(tok_vocab_desc *d, tok_kind kind)
{
    memset(d, 0, sizeof *d);
    d->kind = kind;
    for (int k = 0; k < TOK_N_SPECIAL; k++)
        d->special[k] = -1;
    d->add_bos = d->add_eos = d->add_space_prefix = -1;
}

static void free_strings(char **s, uint32_t n)
{
    for (uint32_t i = 0; s && i < n; i++)
        free(s[i]);
    free(s);
}

static void impl_free_regex(tok_impl *im)
{
    for (uint32_t i = 0; i < im->n_re; i++)
        pcre2_code_free(im->re[i]);
    im->n_re = 0;
}

void tok_vocab_free(tok_vocab *v)
{
    if (!v)
        return;
    free_strings(v->tokens, v->n_tokens);
    free(v->token_len);
    free(v->scores);
    free(v->types);
    free_strings(v->merges, v->n_merges);
    free(v->chat_template);
    tok_impl *im = v->impl;
    if (im) {
        free(im->tok_slot);
        free(im->mg_key);
        free(im->mg_rank);
        free(im->mg_result);
        free(im->attr);
        free(im->partition);
        impl_free_regex(im);
        if (im->re_space)
            pcre2_code_free(im->re_space);
        free(im);
    }
    free(v);
}

static pcre2_code *compile(const char *pattern, qk_err *err)
{
    int ec;
    PCRE2_SIZE eo;
    /* DOLLAR_ENDONLY: '$' means the end of the piece, as in std::regex, not "before a final \n". */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(ec, msg, sizeof msg);
        qk_err_set(err, QK_EFORMAT, "tokenizer: pre-tokenizer regex /%.80s/ at offset %zu: %s",
                   pattern, (size_t)eo, (char *)msg);
        return NULL;
    }
    /* JIT is only a speed-up: when it is unavailable pcre2_match interprets */
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

static int set_patterns(tok_impl *im, const char *const *pat, uint32_t n, qk_err *err)
{
    impl_free_regex(im);
    if (n > MAX_PATTERNS)
        return qk_err_set(err, QK_EUNSUPPORTED, "tokenizer: %u pre-tokenizer regexes (at most %d)",
                          n, MAX_PATTERNS);
    for (uint32_t i = 0; i < n; i++) {
        if (!(im->re[i] = compile(pat[i], err)))
            return QK_EFORMAT;
        im->n_re = i + 1;
    }
    return QK_OK;
}

int tok_vocab_set_pre(tok_vocab *v, const char *pre, qk_err *err)
{
    int k = pre_find(pre);
    if (k < 0)
        return qk_err_set(err, QK_EUNSUPPORTED, "tokenizer: unknown pre-tokenizer '%s'", pre);
    uint32_t n = 0;
    while (PRE_TABLE[k].patterns[n])
        n++;
    int rc = set_patterns(v->impl, PRE_TABLE[k].patterns, n, err);
    if (rc)
        return rc;
    snprintf(v->pre, sizeof v->pre, "%s", pre);
    v->impl->ignore_merges = PRE_TABLE[k].flags & PRE_IGNORE_MERGES;
    v->impl->clean_spaces = PRE_TABLE[k].flags & PRE_CLEAN;
    v->impl->pre_add_bos = PRE_TABLE[k].flags & PRE_ADD_BOS;
    return QK_OK;
}

static int copy_tokens(tok_vocab *v, const tok_vocab_desc *d, qk_err *err)
{
    uint32_t n = d->n_tokens;
    v->tokens = calloc(n, sizeof *v->tokens);
    v->token_len = malloc(n * sizeof *v->token_len);
    v->types = malloc(n * sizeof *v->types);
    if (d->scores)
        v->scores = malloc(n * sizeof *v->scores);
    if (!v->tokens || !v->token_len || !v->types || (d->scores && !v->scores))
        return oom(err);
    for (uint32_t i = 0; i < n; i++) {
        const char *t = d->tokens[i];
        size_t len = !t ? 0 : d->token_len ? d->token_len[i] : strlen(t);
        if (!t || len == 0)
            return qk_err_set(err, QK_EFORMAT, "tokenizer: token %u is empty", i);
        if (!(v->tokens[i] = malloc(len + 1)))
            return oom(err);
        memcpy(v->tokens[i], t, len);
        v->tokens[i][len] = '\0';
        v->token_len[i] = (uint32_t)len;
        v->types[i] = d->types ? d->types[i] : TOK_TYPE_NORMAL;
        if (v->types[i] < TOK_TYPE_UNDEFINED || v->types[i] > TOK_TYPE_BYTE)
            return qk_err_set(err, QK_EFORMAT, "tokenizer: token %u ('%s') has type %d (not 0..6)",
                              i, v->tokens[i], v->types[i]);
        if (d->scores && isnan(d->scores[i]))
            return qk_err_set(err, QK_EFORMAT, "tokenizer: token %u ('%s') has a NaN score", i,
                              v->tokens[i]);
        if (d->scores)
            v->scores[i] = d->scores[i];
    }
    return QK_OK;
}

static int index_tokens(tok_vocab *v, qk_err *err)
{
    tok_impl *im = v->impl;
    uint32_t cap = table_size(v->n_tokens);
    im->tok_mask = cap - 1;
    im->tok_slot = malloc(cap * sizeof *im->tok_slot);
    if (!im->tok_slot)
        return oom(err);
    memset(im->tok_slot, 0xff, cap * sizeof *im->tok_slot);
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        int32_t dup = token_insert(v, (int32_t)i);
        if (dup >= 0)
            return qk_err_set(err, QK_EFORMAT, "tokenizer: token '%s' appears at ids %d and %u",
                              v->tokens[i], dup, i);
    }
    return QK_OK;
}

/* llama.cpp splits "a b" at the first space after the first byte. */
static int merge_index_one(tok_vocab *v, uint32_t rank, qk_err *err)
{
    tok_impl *im = v->impl;
    const char *m = v->merges[rank];
    const char *sp = m[0] ? strchr(m + 1, ' ') : NULL;
    if (!sp || !sp[1])
        return qk_err_set(err, QK_EFORMAT, "tokenizer: merge %u ('%s') is not \"left right\"", rank,
                          m);
    size_t la = (size_t)(sp - m), lb = strlen(sp + 1);
    int32_t a = token_find(v, m, la), b = token_find(v, sp + 1, lb);
    if (a < 0 || b < 0)
        return qk_err_set(err, QK_EFORMAT, "tokenizer: merge %u ('%s') names unknown token '%.*s'",
                          rank, m, (int)(a < 0 ? la : lb), a < 0 ? m : sp + 1);
    char *joined = malloc(la + lb + 1);
    if (!joined)
        return oom(err);
    memcpy(joined, m, la);
    memcpy(joined + la, sp + 1, lb);
    int32_t r = token_find(v, joined, la + lb);
    free(joined);
    if (r < 0)
        return qk_err_set(err, QK_EFORMAT,
                          "tokenizer: merge %u ('%s') makes a token that is not in the vocabulary",
                          rank, m);
    uint64_t k = pair_key(a, b);
    uint32_t i = (uint32_t)hash_u64(k) & im->mg_mask;
    while (im->mg_key[i] != UINT64_MAX && im->mg_key[i] != k)
        i = (i + 1) & im->mg_mask;
    if (im->mg_key[i] == UINT64_MAX) { /* a repeated pair keeps its first (best) rank */
        im->mg_key[i] = k;
        im->mg_rank[i] = (int32_t)rank;
        im->mg_result[i] = r;
    }
    return QK_OK;
}

static int index_merges(tok_vocab *v, const tok_vocab_desc *d, qk_err *err)
{
    tok_impl *im = v->impl;
    if (!d->n_merges)
        return QK_OK;
    if (d->n_merges > INT32_MAX)
        return qk_err_set(err, QK_ERANGE, "tokenizer: %u merges", d->n_merges);
    v->merges = calloc(d->n_merges, sizeof *v->merges);
    uint32_t cap = table_size(d->n_merges);
    im->mg_mask = cap - 1;
    im->mg_key = malloc(cap * sizeof *im->mg_key);
    im->mg_rank = malloc(cap * sizeof *im->mg_rank);
    im->mg_result = malloc(cap * sizeof *im->mg_result);
    if (!v->merges || !im->mg_key || !im->mg_rank || !im->mg_result)
        return oom(err);
    memset(im->mg_key, 0xff, cap * sizeof *im->mg_key);
    for (uint32_t i = 0; i < d->n_merges; i++) {
        const char *m = d->merges[i] ? d->merges[i] : "";
        if (!(v->merges[i] = strdup(m)))
            return oom(err);
        v->n_merges = i + 1;
        int rc = merge_index_one(v, i, err);
        if (rc)
            return rc;
    }
    return QK_OK;
}

/* Texts llama.cpp's loader treats as end-of-generation / FIM tokens: it forces them to CONTROL
 * whatever the file says, which decides how they are split out of text. */
static const char *const FORCED_CONTROL[] = {"<|eot_id|>",
                                             "<|im_end|>",
                                             "<|end|>",
                                             "<end_of_turn>",
                                             "<|endoftext|>",
                                             "<EOT>",
                                             "<\xEF\xBD\x9C"
                                             "end\xE2\x96\x81"
                                             "of\xE2\x96\x81"
                                             "sentence\xEF\xBD\x9C>",
                                             "<|eom_id|>",
                                             "<|fim_prefix|>",
                                             "<fim-prefix>",
                                             "<\xEF\xBD\x9C"
                                             "fim\xE2\x96\x81"
                                             "begin\xEF\xBD\x9C>",
                                             "<PRE>",
                                             "<|fim_suffix|>",
                                             "<fim-suffix>",
                                             "<\xEF\xBD\x9C"
                                             "fim\xE2\x96\x81"
                                             "hole\xEF\xBD\x9C>",
                                             "<SUF>",
                                             "<|fim_middle|>",
                                             "<fim-middle>",
                                             "<\xEF\xBD\x9C"
                                             "fim\xE2\x96\x81"
                                             "end\xEF\xBD\x9C>",
                                             "<MID>",
                                             "<|fim_pad|>",
                                             "<fim-pad>",
                                             "<PAD>",
                                             "<|fim_repo|>",
                                             "<|repo_name|>",
                                             "<fim-repo>",
                                             "<REPO>",
                                             "<|file_sep|>"};
/* The first seven name the EOT candidates, in the order qkit prefers them. */
#define N_EOT_NAMES 7

static int32_t find_text(const tok_vocab *v, const char *s) { return token_find(v, s, strlen(s)); }

static void detect_eot(tok_vocab *v)
{
    for (int i = 0; i < N_EOT_NAMES && v->special[TOK_EOT] < 0; i++)
        v->special[TOK_EOT] = find_text(v, FORCED_CONTROL[i]);
}

typedef struct {
    uint32_t len;
    int32_t id;
} len_id;

/* Longest first; ties by id, so the order is total (llama.cpp's std::sort leaves ties open). */
static int longest_first(const void *pa, const void *pb)
{
    const len_id *a = pa, *b = pb;
    if (a->len != b->len)
        return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Types as llama.cpp's loader leaves them, and the tokens cut out of the text before encoding:
 * CONTROL, USER_DEFINED and UNKNOWN, longest first. */
static int build_attrs(tok_vocab *v, qk_err *err)
{
    tok_impl *im = v->impl;
    im->attr = malloc(v->n_tokens * sizeof *im->attr);
    len_id *order = malloc(v->n_tokens * sizeof *order);
    if (!im->attr || !order) {
        free(order);
        return oom(err);
    }
    memcpy(im->attr, v->types, v->n_tokens * sizeof *im->attr);
    for (size_t i = 0; i < sizeof FORCED_CONTROL / sizeof FORCED_CONTROL[0]; i++) {
        int32_t id = find_text(v, FORCED_CONTROL[i]);
        if (id >= 0)
            im->attr[id] = TOK_TYPE_CONTROL;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        int32_t a = im->attr[i];
        if (a == TOK_TYPE_CONTROL || a == TOK_TYPE_USER_DEFINED || a == TOK_TYPE_UNKNOWN)
            order[n++] = (len_id){v->token_len[i], (int32_t)i};
    }
    qsort(order, n, sizeof *order, longest_first);
    im->partition = malloc((n ? n : 1) * sizeof *im->partition);
    if (!im->partition) {
        free(order);
        return oom(err);
    }
    for (uint32_t i = 0; i < n; i++)
        im->partition[i] = order[i].id;
    im->n_partition = n;
    free(order);
    return QK_OK;
}

/* byte_to_token for SPM: "<0xXX>", else the byte itself as a token. */
static void build_byte_tokens(tok_vocab *v)
{
    for (uint32_t id = 0; id < v->n_tokens; id++)
        for (size_t i = 1; i < v->token_len[id]; i++) {
            unsigned pair = (uint8_t)v->tokens[id][i - 1] << 8 | (uint8_t)v->tokens[id][i];
            v->impl->spm_pair[pair >> 3] |= (uint8_t)(1u << (pair & 7));
        }
    for (int b = 0; b < 256; b++) {
        char name[8], raw = (char)b;
        snprintf(name, sizeof name, "<0x%02X>", b);
        int32_t id = find_text(v, name);
        v->impl->byte_token[b] = id >= 0 ? id : token_find(v, &raw, 1);
    }
}

static int check_specials(tok_vocab *v, const tok_vocab_desc *d, qk_err *err)
{
    static const char *const names[TOK_N_SPECIAL] = {"bos", "eos", "unk", "sep",
                                                     "pad", "cls", "mask", "eot"};
    for (int k = 0; k < TOK_N_SPECIAL; k++) {
        int32_t id = d->special[k];
        if (id < -1 || id >= (int64_t)v->n_tokens)
            return qk_err_set(err, QK_ERANGE, "tokenizer: %s token id %d is not in 0..%u", names[k],
                              id, v->n_tokens - 1);
        v->special[k] = id;
    }
    return QK_OK;
}

static int configure(tok_vocab *v, const tok_vocab_desc *d, qk_err *err)
{
    tok_impl *im = v->impl;
    init_byte_map(im);
    v->add_bos = d->add_bos < 0 ? -1 : d->add_bos != 0;
    v->add_eos = d->add_eos < 0 ? -1 : d->add_eos != 0;
    v->add_space_prefix =
        d->add_space_prefix < 0 ? d->kind == TOK_KIND_SPM : d->add_space_prefix != 0;
    v->remove_extra_whitespaces = d->remove_extra_whitespaces;
    if (d->chat_template && !(v->chat_template = strdup(d->chat_template)))
        return oom(err);
    if (d->kind == TOK_KIND_SPM) {
        snprintf(v->pre, sizeof v->pre, "%s", "default");
        build_byte_tokens(v);
        return QK_OK;
    }
    int rc = tok_vocab_set_pre(v, d->pre ? d->pre : "default", err);
    if (!rc && d->patterns)
        rc = set_patterns(im, d->patterns, d->n_patterns, err);
    if (!rc && !(im->re_space = compile("\\s", err)))
        rc = QK_EINTERNAL;
    return rc;
}

int tok_vocab_create(const tok_vocab_desc *d, tok_vocab **out, qk_err *err)
{
    *out = NULL;
    if (d->kind != TOK_KIND_SPM && d->kind != TOK_KIND_BPE)
        return qk_err_set(err, QK_EFORMAT, "tokenizer: unknown vocabulary kind %d", (int)d->kind);
    if (d->n_tokens == 0 || d->n_tokens > INT32_MAX || !d->tokens)
        return qk_err_set(err, QK_EFORMAT, "tokenizer: %u tokens", d->n_tokens);
    tok_vocab *v = calloc(1, sizeof *v);
    if (!v || !(v->impl = calloc(1, sizeof *v->impl))) {
        free(v);
        return oom(err);
    }
    v->kind = d->kind;
    v->n_tokens = d->n_tokens;
    int rc = copy_tokens(v, d, err);
    if (!rc)
        rc = index_tokens(v, err);
    if (!rc && d->kind == TOK_KIND_BPE)
        rc = index_merges(v, d, err);
    if (!rc)
        rc = check_specials(v, d, err);
    if (!rc)
        rc = configure(v, d, err);
    if (!rc && v->special[TOK_EOT] < 0)
        detect_eot(v);
    if (!rc)
        rc = build_attrs(v, err);
    if (rc) {
        tok_vocab_free(v);
        return rc;
    }
    *out = v;
    return QK_OK;
}

/* ================================================================ from a SentencePiece model */

/* _create_vocab_sentencepiece: UNKNOWN, CONTROL, UNUSED and BYTE keep their type, anything else
 * (USER_DEFINED included) is written as NORMAL. */
static int32_t spm_type(int piece_type)
{
    switch (piece_type) {
    case SPM_PIECE_UNKNOWN: return TOK_TYPE_UNKNOWN;
    case SPM_PIECE_CONTROL: return TOK_TYPE_CONTROL;
    case SPM_PIECE_UNUSED: return TOK_TYPE_UNUSED;
    case SPM_PIECE_BYTE: return TOK_TYPE_BYTE;
    default: return TOK_TYPE_NORMAL;
    }
}

/* Owned arrays for a desc under construction. */
typedef struct {
    char **text;
    uint32_t *len;
    float *score;
    int32_t *type;
    uint32_t n;
} arrays;

static void arrays_free(arrays *a)
{
    free_strings(a->text, a->n);
    free(a->len);
    free(a->score);
    free(a->type);
}

static int arrays_alloc(arrays *a, uint32_t n, bool scores, qk_err *err)
{
    a->n = n;
    a->text = calloc(n, sizeof *a->text);
    a->len = calloc(n, sizeof *a->len);
    a->type = calloc(n, sizeof *a->type);
    a->score = scores ? calloc(n, sizeof *a->score) : NULL;
    return a->text && a->len && a->type && (!scores || a->score) ? QK_OK : oom(err);
}

static int arrays_set(arrays *a, uint32_t i, const char *s, size_t len, int32_t type, float score,
                      qk_err *err)
{
    char *t = malloc(len + 1);
    if (!t)
        return oom(err);
    memcpy(t, s, len);
    t[len] = '\0';
    free(a->text[i]);
    a->text[i] = t;
    a->len[i] = (uint32_t)len;
    a->type[i] = type;
    if (a->score)
        a->score[i] = score;
    return QK_OK;
}

static int arrays_pad(arrays *a, uint32_t i, float score, qk_err *err)
{
    char pad[32];
    int n = snprintf(pad, sizeof pad, "[PAD%u]", i);
    return arrays_set(a, i, pad, (size_t)n, TOK_TYPE_UNUSED, score, err);
}

static void desc_from_arrays(tok_vocab_desc *d, const arrays *a)
{
    d->n_tokens = a->n;
    d->tokens = (const char *const *)a->text;
    d->token_len = a->len;
    d->scores = a->score;
    d->types = a->type;
}

static int spm_fill(arrays *a, const spm_model *m, qk_err *err)
{
    for (uint32_t i = 0; i < a->n; i++) {
        int rc = i < m->n_pieces ? arrays_set(a, i, m->pieces[i].text, m->pieces[i].len,
                                              spm_type(m->pieces[i].type), m->pieces[i].score, err)
                                 : arrays_pad(a, i, -10000.0f, err);
        if (rc)
            return rc;
    }
    return QK_OK;
}

static int32_t spm_special(const spm_model *m, int32_t id)
{
    return id >= 0 && (uint32_t)id < m->n_pieces ? id : -1;
}

int tok_vocab_from_spm(const spm_model *m, tok_vocab **out, qk_err *err)
{
    arrays a = {0};
    tok_vocab_desc d;
    tok_vocab_desc_init(&d, TOK_KIND_SPM);
    int rc = arrays_alloc(&a, m->n_pieces, true, err);
    if (!rc)
        rc = spm_fill(&a, m, err);
    if (!rc) {
        desc_from_arrays(&d, &a);
        d.special[TOK_UNK] = spm_special(m, m->unk_id);
        d.special[TOK_BOS] = spm_special(m, m->bos_id);
        d.special[TOK_EOS] = spm_special(m, m->eos_id);
        d.special[TOK_PAD] = spm_special(m, m->pad_id);
        d.add_space_prefix = m->add_dummy_prefix;
        d.remove_extra_whitespaces = m->remove_extra_whitespaces;
        rc = tok_vocab_create(&d, out, err);
    }
    arrays_free(&a);
    return rc;
}

int tok_vocab_load_spm(const char *path, tok_vocab **out, qk_err *err)
{
    spm_model *m;
    *out = NULL;
    int rc = spm_model_load(path, &m, err);
    if (!rc)
        rc = tok_vocab_from_spm(m, out, err);
    spm_model_free(m);
    return rc;
}

/* ================================================================ from a Hugging Face folder */

static bool starts_with(const char *s, const char *pre) { return !strncmp(s, pre, strlen(pre)); }

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* does_token_look_special in convert_hf_to_gguf.py */
static bool looks_special(const char *t)
{
    static const char *const exact[] = {"<pad>", "<mask>", "<2mass>", "[@BOS@]"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (!strcmp(t, exact[i]))
            return true;
    return (starts_with(t, "<|") && ends_with(t, "|>")) ||
           (starts_with(t, "<\xEF\xBD\x9C") && ends_with(t, "\xEF\xBD\x9C>")) || /* <｜ ｜> */
           (starts_with(t, "<unused") && ends_with(t, ">"));
}

static bool hf_is_special(const hf_tokenizer *hf, const char *content, int32_t id, bool flag)
{
    if (flag)
        return true;
    for (uint32_t i = 0; i < hf->n_config_added; i++)
        if (hf->config_added[i].id == id && hf->config_added[i].special)
            return true;
    for (uint32_t i = 0; i < hf->n_extra_special; i++)
        if (!strcmp(hf->extra_special[i], content))
            return true;
    for (int k = 0; k < HF_N_SPECIAL; k++)
        if (hf->special[k] && !strcmp(hf->special[k], content))
            return true;
    return false;
}

/* An added token: CONTROL when special or special-looking; otherwise USER_DEFINED, with U+2581
 * written back as a space ("pre-normalize user-defined spaces"). */
static int set_added(arrays *a, uint32_t id, const char *content, bool special, float score,
                     qk_err *err)
{
    if (special || looks_special(content))
        return arrays_set(a, id, content, strlen(content), TOK_TYPE_CONTROL, score, err);
    qk_buf s = {0};
    if (qk_buf_reserve(&s, strlen(content) + 1) || !put_unescaped(&s, content, strlen(content))) {
        qk_buf_free(&s);
        return oom(err);
    }
    int rc = arrays_set(a, id, s.p ? s.p : "", s.n, TOK_TYPE_USER_DEFINED, score, err);
    qk_buf_free(&s);
    return rc;
}

static int32_t find_added(const hf_tokenizer *hf, const char *content)
{
    for (uint32_t i = 0; i < hf->n_added; i++)
        if (!strcmp(hf->added[i].content, content))
            return hf->added[i].id;
    for (uint32_t i = 0; i < hf->n_added_file; i++)
        if (!strcmp(hf->added_file[i].content, content))
            return hf->added_file[i].id;
    for (uint32_t i = 0; i < hf->n_config_added; i++)
        if (!strcmp(hf->config_added[i].content, content))
            return hf->config_added[i].id;
    return -1;
}

/* gguf-py SpecialVocab: the *_token contents of tokenizer_config.json looked up among the added
 * tokens, then config.json's *_token_id. Ids past the vocabulary are ignored, as llama.cpp's
 * loader ignores them. (The converter only searches tokenizer.json's added_tokens; qkit also
 * searches added_tokens.json and added_tokens_decoder, which hold the same tokens when a folder
 * ships without tokenizer.json.) */
static void hf_specials(const hf_tokenizer *hf, tok_vocab_desc *d)
{
    for (int k = 0; k < HF_N_SPECIAL; k++) {
        int64_t id = hf->special[k] ? find_added(hf, hf->special[k]) : -1;
        if (id < 0)
            id = hf->special_id[k];
        d->special[k] = id >= 0 && id < d->n_tokens ? (int32_t)id : -1;
    }
    d->add_bos = hf->add_special[HF_BOS];
    d->add_eos = hf->add_special[HF_EOS];
    d->chat_template = hf->chat_template;
}

static int hf_spm_added(arrays *a, const hf_tokenizer *hf, qk_err *err)
{
    for (uint32_t i = 0; i < hf->n_added_file; i++) {
        const hf_added_token *t = &hf->added_file[i];
        if ((uint32_t)t->id >= a->n)
            continue; /* the converter warns and skips these */
        int rc = arrays_set(a, (uint32_t)t->id, t->content, t->len, TOK_TYPE_USER_DEFINED, -1000.0f,
                            err);
        if (rc)
            return rc;
    }
    for (uint32_t i = 0; i < hf->n_config_added; i++) {
        const hf_added_token *t = &hf->config_added[i];
        if ((uint32_t)t->id >= a->n)
            return qk_err_set(
                err, QK_EFORMAT,
                "%s/tokenizer_config.json: added token '%s' has id %d past the vocabulary (%u)",
                hf->dir, t->content, t->id, a->n);
        int rc = set_added(a, (uint32_t)t->id, t->content, t->special, -1000.0f, err);
        if (rc)
            return rc;
    }
    return QK_OK;
}

static int hf_build_spm(const hf_tokenizer *hf, tok_vocab **out, qk_err *err)
{
    size_t plen = strlen(hf->dir) + sizeof "/tokenizer.model";
    char *path = malloc(plen);
    spm_model *m = NULL;
    arrays a = {0};
    if (!path)
        return oom(err);
    snprintf(path, plen, "%s/tokenizer.model", hf->dir);
    int rc = spm_model_load(path, &m, err);
    free(path);
    uint32_t n = rc ? 0 : hf->vocab_size > 0 ? (uint32_t)hf->vocab_size : m->n_pieces;
    if (!rc && n < m->n_pieces)
        rc = qk_err_set(
            err, QK_EFORMAT,
            "%s/config.json: vocab_size %u is smaller than the %u pieces of tokenizer.model",
            hf->dir, n, m->n_pieces);
    if (!rc)
        rc = arrays_alloc(&a, n, true, err);
    if (!rc)
        rc = spm_fill(&a, m, err);
    if (!rc)
        rc = hf_spm_added(&a, hf, err);
    if (!rc) {
        tok_vocab_desc d;
        tok_vocab_desc_init(&d, TOK_KIND_SPM);
        desc_from_arrays(&d, &a);
        hf_specials(hf, &d);
        d.add_space_prefix = m->add_dummy_prefix;
        d.remove_extra_whitespaces = m->remove_extra_whitespaces;
        rc = tok_vocab_create(&d, out, err);
    }
    arrays_free(&a);
    spm_model_free(m);
    return rc;
}

/* The added tokens of a BPE folder: tokenizer.json's, or added_tokens.json next to vocab.json. */
static const hf_added_token *bpe_added(const hf_tokenizer *hf, uint32_t *n)
{
    bool fast = hf->source == HF_SRC_TOKENIZER_JSON;
    *n = fast ? hf->n_added : hf->n_added_file;
    return fast ? hf->added : hf->added_file;
}

/* get_vocab_base: one text per id, added tokens flagged. */
static int hf_bpe_place(arrays *a, bool *is_added, bool *added_special, const hf_tokenizer *hf,
                        qk_err *err)
{
    uint32_t n_added;
    const hf_added_token *added = bpe_added(hf, &n_added);
    for (uint32_t i = 0; i < hf->n_vocab + n_added; i++) {
        const hf_added_token *at = i >= hf->n_vocab ? &added[i - hf->n_vocab] : NULL;
        const char *s = at ? at->content : hf->vocab[i].text;
        uint32_t len = at ? at->len : hf->vocab[i].len;
        int32_t id = at ? at->id : hf->vocab[i].id;
        if ((uint32_t)id >= a->n)
            return qk_err_set(err, QK_EFORMAT, "%s: token '%s' has id %d but vocab_size is %u",
                              hf->dir, s, id, a->n);
        if (a->text[id] && (a->len[id] != len || memcmp(a->text[id], s, len)))
            return qk_err_set(err, QK_EFORMAT, "%s: id %d is both '%s' and '%s'", hf->dir, id,
                              a->text[id], s);
        if (at) {
            is_added[id] = true;
            added_special[id] = hf_is_special(hf, s, id, at->special);
        }
        if (!a->text[id]) {
            int rc = arrays_set(a, (uint32_t)id, s, len, TOK_TYPE_NORMAL, 0.0f, err);
            if (rc)
                return rc;
        }
    }
    return QK_OK;
}

static int hf_bpe_types(arrays *a, const bool *is_added, const bool *added_special, qk_err *err)
{
    for (uint32_t i = 0; i < a->n; i++) {
        int rc = QK_OK;
        if (!a->text[i]) {
            rc = arrays_pad(a, i, 0.0f, err);
        } else if (is_added[i]) {
            char *content = strdup(a->text[i]);
            rc = content ? set_added(a, i, content, added_special[i], 0.0f, err) : oom(err);
            free(content);
        }
        if (rc)
            return rc;
    }
    return QK_OK;
}

/* Distinct ids among vocab and added tokens: len(tokenizer.vocab) when config.json is silent. */
static uint32_t hf_count_ids(const hf_tokenizer *hf, qk_err *err, int *rc)
{
    uint32_t n_added, n = 0;
    const hf_added_token *added = bpe_added(hf, &n_added);
    bool *seen = calloc((size_t)HF_MAX_TOKEN_ID + 1, 1);
    if (!seen) {
        *rc = oom(err);
        return 0;
    }
    for (uint32_t i = 0; i < hf->n_vocab + n_added; i++) {
        int32_t id = i < hf->n_vocab ? hf->vocab[i].id : added[i - hf->n_vocab].id;
        n += !seen[id];
        seen[id] = true;
    }
    free(seen);
    return n;
}

static int hf_bpe_arrays(const hf_tokenizer *hf, arrays *a, qk_err *err)
{
    int rc = QK_OK;
    uint32_t n = hf->vocab_size > 0 ? (uint32_t)hf->vocab_size : hf_count_ids(hf, err, &rc);
    if (rc)
        return rc;
    if ((rc = arrays_alloc(a, n, false, err)))
        return rc;
    bool *is_added = calloc(n, 1), *added_special = calloc(n, 1);
    if (!is_added || !added_special)
        rc = oom(err);
    if (!rc)
        rc = hf_bpe_place(a, is_added, added_special, hf, err);
    if (!rc)
        rc = hf_bpe_types(a, is_added, added_special, err);
    free(is_added);
    free(added_special);
    return rc;
}

/* The regexes Hugging Face itself would split with: the tokenizer.json pre_tokenizer, or for a
 * slow tokenizer the pattern transformers converts it with (Qwen2Tokenizer, else GPT-2). */
#define HF_RE_GPT2 RE_GPT2 "|\\s+"
#define HF_RE_QWEN2                                                                                \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "                          \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"                                                               \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static int hf_patterns(const hf_tokenizer *hf, const char **pat, uint32_t *n, qk_err *err)
{
    *n = 0;
    if (hf->source == HF_SRC_VOCAB_JSON) {
        bool qwen = hf->tokenizer_class && !strcmp(hf->tokenizer_class, "Qwen2Tokenizer");
        pat[(*n)++] = qwen ? HF_RE_QWEN2 : HF_RE_GPT2;
        return QK_OK;
    }
    if (hf->pre_unsupported[0])
        return qk_err_set(err, QK_EUNSUPPORTED,
                          "%s/tokenizer.json: pre_tokenizer '%s' is not supported; name the "
                          "pre-tokenizer explicitly",
                          hf->dir, hf->pre_unsupported);
    for (uint32_t i = 0; i < hf->n_pre && *n < MAX_PATTERNS; i++) {
        const hf_pre_step *s = &hf->pre[i];
        if (s->kind == HF_PRE_BYTE_LEVEL && s->add_prefix_space)
            return qk_err_set(err, QK_EUNSUPPORTED,
                              "%s/tokenizer.json: ByteLevel add_prefix_space is not supported; "
                              "name the pre-tokenizer explicitly",
                              hf->dir);
        if (s->kind == HF_PRE_SPLIT)
            pat[(*n)++] = s->pattern;
        else if (s->kind == HF_PRE_BYTE_LEVEL && s->use_regex)
            pat[(*n)++] = HF_RE_GPT2;
        else if (s->kind == HF_PRE_DIGITS)
            pat[(*n)++] = s->individual_digits ? "\\p{N}" : "\\p{N}+";
    }
    return QK_OK;
}

/* Tokens Hugging Face puts around a single sequence, for the chkhsh. */
static int hf_chkhsh(const hf_tokenizer *hf, const tok_vocab *v, char hex[65], qk_err *err)
{
    if (hf->source == HF_SRC_TOKENIZER_JSON)
        return tok_vocab_chkhsh(v, hf->post_prefix, hf->n_post_prefix, hf->post_suffix,
                                hf->n_post_suffix, hex, err);
    int32_t bos = v->special[TOK_BOS], eos = v->special[TOK_EOS];
    bool add_bos = hf->add_special[HF_BOS] == 1 && bos >= 0;
    bool add_eos = hf->add_special[HF_EOS] == 1 && eos >= 0;
    return tok_vocab_chkhsh(v, &bos, add_bos, &eos, add_eos, hex, err);
}

static int hf_detect_pre(const hf_tokenizer *hf, tok_vocab *v, qk_err *err)
{
    char hex[65];
    int rc = hf_chkhsh(hf, v, hex, err);
    if (rc)
        return rc;
    const char *name = tok_pre_from_chkhsh(hex);
    if (!name)
        return qk_err_set(err, QK_EUNSUPPORTED,
                          "%s: unknown BPE pre-tokenizer (chkhsh %s); name it explicitly", hf->dir,
                          hex);
    return tok_vocab_set_pre(v, name, err);
}

static int hf_build_bpe(const hf_tokenizer *hf, const char *pre, tok_vocab **out, qk_err *err)
{
    arrays a = {0};
    tok_vocab_desc d;
    tok_vocab_desc_init(&d, TOK_KIND_BPE);
    const char *pat[MAX_PATTERNS];
    uint32_t n_pat = 0;
    int rc = hf_bpe_arrays(hf, &a, err);
    if (!rc && !pre)
        rc = hf_patterns(hf, pat, &n_pat, err);
    if (!rc) {
        desc_from_arrays(&d, &a);
        d.n_merges = hf->n_merges;
        d.merges = (const char *const *)hf->merges;
        d.pre = pre;
        d.patterns = pre ? NULL : pat;
        d.n_patterns = n_pat;
        hf_specials(hf, &d);
        rc = tok_vocab_create(&d, out, err);
    }
    if (!rc && !pre) {
        (*out)->impl->ignore_merges = hf->ignore_merges;
        rc = hf_detect_pre(hf, *out, err);
        if (rc) {
            tok_vocab_free(*out);
            *out = NULL;
        }
    }
    arrays_free(&a);
    return rc;
}

int tok_vocab_load_hf(const char *dir, const char *pre, tok_vocab **out, qk_err *err)
{
    hf_tokenizer *hf;
    *out = NULL;
    int rc = hf_tokenizer_load(dir, &hf, err);
    if (rc)
        return rc;
    if (hf->has_tokenizer_model)
        rc = hf_build_spm(hf, out, err);
    else if (strcmp(hf->model_type, "BPE") != 0)
        rc = qk_err_set(err, QK_EUNSUPPORTED, "%s/tokenizer.json: model type '%s' is not supported",
                        dir, hf->model_type);
    else if (hf->byte_fallback)
        rc = qk_err_set(
            err, QK_EUNSUPPORTED,
            "%s/tokenizer.json: a byte_fallback (Llama-style) BPE needs tokenizer.model", dir);
    else
        rc = hf_build_bpe(hf, pre, out, err);
    hf_tokenizer_free(hf);
    return rc;
}

/* ================================================================ chkhsh */

static const char CHKTXT[] =
    "\n"
    " \n"
    "\n"
    " \n"
    "\n"
    "\n"
    " \t \t\t \t\n"
    "  \n"
    "   \n"
    "    \n"
    "     \n"
    "🚀 (normal) 😶\xE2\x80\x8D"
    "🌫\xEF\xB8\x8F"
    " (multiple emojis concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 "
    "33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= "
    "нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told "
    "he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? "
    "We'Ve a'lL";

const char *tok_chktxt(void) { return CHKTXT; }

static bool put_id_list(qk_buf *s, const int32_t *ids, size_t n, bool *first)
{
    char num[16];
    for (size_t i = 0; i < n; i++) {
        int k = snprintf(num, sizeof num, "%s%d", *first ? "" : ", ", ids[i]);
        *first = false;
        if (qk_buf_append(s, num, (size_t)k))
            return false;
    }
    return true;
}

int tok_vocab_chkhsh(const tok_vocab *v, const int32_t *prefix, size_t n_prefix,
                     const int32_t *suffix, size_t n_suffix, char hex[65], qk_err *err)
{
    tok_ids ids = {0};
    qk_buf s = {0};
    bool first = true;
    int rc = tok_encode(v, CHKTXT, sizeof CHKTXT - 1, TOK_PARSE_SPECIAL, &ids, err);
    if (!rc && !(!qk_buf_append(&s, "[", 1) && put_id_list(&s, prefix, n_prefix, &first) &&
                 put_id_list(&s, ids.ids, ids.n, &first) &&
                 put_id_list(&s, suffix, n_suffix, &first) && !qk_buf_append(&s, "]", 1)))
        rc = oom(err);
    if (!rc) {
        unsigned char md[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)s.p, s.n, md);
        for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    tok_ids_free(&ids);
    qk_buf_free(&s);
    return rc;
}

/* convert_hf_to_gguf.py get_vocab_base_pre, BPE entries (a later entry wins, as there). */
static const struct {
    const char *hash, *name;
} CHKHSH[] = {
    {"0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5", "llama-bpe"},
    {"049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754", "deepseek-llm"},
    {"347715f544604f9118bb75ed199f68779f423cabb20db6de6f31b908d04d7821", "deepseek-coder"},
    {"8aeee3860c56296a157a1fe2fad249ec40aa59b1bb5709f4ade11c4e6fe652ed", "falcon"},
    {"9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e", "falcon3"},
    {"35d91631860c815f952d711435f48d356ebac988362536bed955d43bfa436e34", "starcoder"},
    {"3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454", "gpt-2"},
    {"32d85c31273f8019248f2559fed492d929ea28b17e51d81d3bb36fff23ca72b3", "stablelm2"},
    {"6221ad2852e85ce96f791f476e0b390cf9b474c9e3d1362f53a24a06dc8220ff", "refact"},
    {"9c2227e4dd922002fb81bde4fc02b0483ca4f12911410dee2255e4987644e3f8", "command-r"},
    {"e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea", "qwen2"},
    {"b6dc8df998e1cfbdc4eac8243701a65afe638679230920b50d6f17d81c098166", "olmo"},
    {"a8594e3edff7c29c003940395316294b2c623e09894deebbc65f33f1515df79e", "dbrx"},
    {"c7699093ba4255a91e702aa38a596aa81669f3525dae06c2953267dde580f448", "jina-v1-en"},
    {"171aeeedd6fb548d418a7461d053f11b6f1f1fc9b387bd66640d28a4b9f5c643", "jina-v2-es"},
    {"27949a2493fc4a9f53f5b9b029c82689cfbe5d3a1929bb25e043089e28466de6", "jina-v2-de"},
    {"c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d", "smaug-bpe"},
    {"c7ea5862a53e4272c035c8238367063e2b270d51faa48c0f09e9d5b54746c360", "poro-chat"},
    {"7967bfa498ade6b757b064f31e964dddbb80f8f9a4d68d4ba7998fcf281c531a", "jina-v2-code"},
    {"b6e8e1518dc4305be2fe39c313ed643381c4da5db34a98f6a04c093f8afbe99b", "chatglm-bpe"},
    {"81d72c7348a9f0ebe86f23298d37debe0a5e71149e29bd283904c02262b27516", "chatglm-bpe"},
    {"7fc505bd3104ca1083b150b17d088b59534ede9bde81f0dd2090967d7fe52cee", "viking"},
    {"b53802fb28e26d645c3a310b34bfe07da813026ec7c7716883404d5e0f8b1901", "jais"},
    {"7b3e7548e4308f52a76e8229e4e6cc831195d0d1df43aed21ac6c93da05fec5f", "codeshell"},
    {"63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e", "tekken"},
    {"855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249", "smollm"},
    {"3c30d3ad1d6b64202cd222813e7736c2db6e1bd6d67197090fc1211fbc612ae7", "bloom"},
    {"bc01ce58980e1db43859146dc51b1758b3b88729b217a74792e9f8d43e479d21", "gpt3-finnish"},
    {"4e2b24cc4770243d65a2c9ec19770a72f08cffc161adbb73fcbb6b7dd45a0aae", "exaone"},
    {"fcace8b9cac38ce847670c970cd5892031a753a1ef381abd1d9af00f713da085", "phi-2"},
    {"60824e3c0d9401f89943cbb2fff727f0e2d4c545ba4df2d6e4f09a6db0f5b450", "chameleon"},
    {"1431a23e583c97432bc230bff598d103ddb5a1f89960c8f1d1051aaa944d0b35", "minerva-7b"},
    {"8b5a93ed704057481f240da0be7e7dca721d7f8f4755263b6807227a2cbeae65", "roberta-bpe"},
    {"ad851be1dba641f2e3711822f816db2c265f788b37c63b4e1aeacb9ee92de8eb", "gigachat"},
    {"d4c8f286ea6b520b3d495c4455483cfa2302c0cfcd4be05d781b6a8a0a7cdaf1", "megrez"},
    {"877081d19cf6996e2c4ff0e1236341e9b7bde288f5311a56a937f0afbbb3aeb5", "deepseek-v3"},
    {"b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5", "deepseek-r1-qwen"},
    {"ccc2ef013c104be7bae2965776d611e1d7a8a2a9c547dd93a682c9a9fc80352e", "gpt-4o"},
    {"d353350c764d8c3b39c763113960e4fb4919bea5fbf208a0e3b22e8469dc7406", "llama4"},
};

const char *tok_pre_from_chkhsh(const char *hex)
{
    for (size_t i = 0; i < sizeof CHKHSH / sizeof CHKHSH[0]; i++)
        if (!strcmp(CHKHSH[i].hash, hex))
            return CHKHSH[i].name;
    return NULL;
}
