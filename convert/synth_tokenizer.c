/* synth_tokenizer.c — the generated tokenizer of `qkit synth --tokenizer-gen`
 * (sy_tokenizer_write, declared in synth.h): which pieces, in which order, with which scores.
 * The protobuf encoding belongs to formats/spm_model.c. */
#include "synth.h"
#include "synth_impl.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/spm_model.h"
#include "../quant/buf.h"

/* A SentencePiece BPE model with byte fallback laid out like Llama 2's: <unk>, <s>, </s>, the
 * 256 <0xXX> byte pieces, then NORMAL pieces scored 0, -1, -2 ... in the order generated here.
 * Every piece is added after all of its prefixes ("▁t" before "▁th" before "▁the"). The SPM
 * encoder merges two neighbours only when their joined text is a piece; with every prefix of a
 * word present, the symbol that starts the word can always absorb its right neighbour, so a
 * listed word ends as one token whatever order the merges run in. */

#define GEN_N_SPECIAL 3
#define GEN_FIRST_NORMAL (GEN_N_SPECIAL + 256)
#define GEN_SPACE "\xE2\x96\x81" /* U+2581, SentencePiece's visible space */
#define GEN_MAX_LETTERS 8        /* filler pieces never get this long below SY_GEN_MAX_VOCAB */

/* The 94 printable ASCII characters, most frequent first, so a vocabulary cut short keeps the
 * useful ones. */
static const char GEN_CHARS[] = "etaoinshrdlcumwfgypbvkjxqz"
                                "TAISHWOBMCFDPLNERGYJUKVQXZ"
                                "0123456789"
                                ".,'\"-?!:;()/&*#@%$+=<>[]{}_|\\^`~";

/* Frequent English words (a leading space stands for "▁": the word starts after a space) and
 * letter groups, roughly in the order a BPE trainer would merge them. */
static const char *const GEN_ENGLISH[] = {
    " the", "th", "he", "in", "er", "an", " a", " and", " to", " of", "re", "on", " in", "at",
    "en", "ing", "ed", " is", " it", "or", "es", " that", " was", "nd", "ou", " for", " The",
    " he", " on", "st", "ar", "al", " you", " with", " as", " I", " she", " be", "le", "ly",
    " his", " they", " at", " are", " this", " have", " from", " not", " by", " or", " had",
    " but", "ion", "it", "is", "as", "ve", "ll", "om", "ic", "ch", "ent", "ter", "tion", " we",
    " her", " all", " can", " one", " there", " were", " what", " so", " when", " if", " an",
    " will", " do", " would", " up", " which", " their", " out", " about", " said", " them",
    " then", " It", " He", " She", " In", " A", " This", " We", " They", " But", " some",
    " other", " time", " how", " each", " like", " into", " more", " no", " my", " me", " him",
    " two", " has", " see", " could", " go", " come", " did", " been", " now", " who", " its",
    " than", " first", " way", " may", " day", " over", " just", " new", " after", " also",
    " only", " any", " most", " people", " know", " get", " make", " made", " back", " little",
    " good", " very", " through", " where", " much", " before", " right", " too", " does",
    " old", " same", " three", " want", " well", " because", " these", " those", " many",
    " long", " look", " work", " use", " used", " find", " give", " take", " here", " must",
    " should", " still", " while", " between", " never", " under", " always", " again",
    " world", " home", " life", " year", " years", " place", " thing", " things", " why",
    " our", " your", " us", " even", " every", " own", " big", " small", " great", " high",
    " end", " part", " number", " name", " such", " both", " off", " down", " went", " came",
    " saw", " found", " got", " put", " let", " say", " says", " think", " thought", " help",
    " play", " run", " happy", " friend", " friends", " mother", " father", " house", " water",
    " light", " night", " school", " story", " wanted", " next", " last", " file", " files",
    " data", " model", " value", " values", " size", " line", " test", " tests", " return",
    " error", " type", " list", " text", " code", " set", " read", " write", " output", " input",
    " For", " If", " When", " There", " What", " You", " And", " One", " Once", " upon",
    "ers", "ies", "est", "ity", "ment", "ness", "able", "ally", "ous", "ive", "ful", "ate",
    "ted", "ure", "ver", "per", "pro", "con", "com", "ight", "ould", "ook", "ame", "ake",
    "ound", "ong", "ance", "ence", "ction", "ated", "ting", "ning", "ring", "ling",
};
#define GEN_N_ENGLISH (sizeof GEN_ENGLISH / sizeof GEN_ENGLISH[0])

/* The pieces in id order, with a hash set for uniqueness. Adding stops silently at max. */
typedef struct {
    qk_buf text;    /* the pieces' bytes back to back */
    size_t *start;  /* [max + 1] offset of piece i; start[n] is the end */
    uint32_t n, max;
    uint32_t *slot; /* open addressing: piece id + 1, 0 when empty */
    uint32_t mask;
    int oom;        /* sticky */
} piece_set;

static uint32_t piece_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* max <= SY_GEN_MAX_VOCAB, so the table size cannot overflow. A failed allocation sets oom. */
static void piece_set_init(piece_set *ps, uint32_t max)
{
    memset(ps, 0, sizeof *ps);
    uint32_t size = 1;
    while (size < 2 * max)
        size *= 2;
    ps->max = max;
    ps->mask = size - 1;
    ps->start = calloc((size_t)max + 1, sizeof *ps->start);
    ps->slot = calloc(size, sizeof *ps->slot);
    /* pieces average fewer than 8 bytes: no growth in practice */
    ps->oom = !ps->start || !ps->slot || qk_buf_reserve(&ps->text, (size_t)max * 8);
}

static void piece_set_free(piece_set *ps)
{
    qk_buf_free(&ps->text);
    free(ps->start);
    free(ps->slot);
}

static void piece_add(piece_set *ps, const char *s, size_t n)
{
    if (ps->oom || ps->n == ps->max)
        return;
    uint32_t i = piece_hash(s, n) & ps->mask;
    for (; ps->slot[i]; i = (i + 1) & ps->mask) {
        uint32_t id = ps->slot[i] - 1;
        size_t len = ps->start[id + 1] - ps->start[id];
        if (len == n && !memcmp(ps->text.p + ps->start[id], s, n))
            return;
    }
    if (qk_buf_append(&ps->text, s, n)) {
        ps->oom = 1;
        return;
    }
    ps->slot[i] = ++ps->n;
    ps->start[ps->n] = ps->text.n;
}

/* An English entry and, before it, each of its prefixes that is missing. Entries are ASCII,
 * so every byte ends a character. */
static void piece_add_with_prefixes(piece_set *ps, const char *entry)
{
    char buf[64];
    size_t head = 0, n = strlen(entry);
    assert(n < sizeof buf - 3);
    if (entry[0] == ' ') {
        memcpy(buf, GEN_SPACE, 3);
        head = 3;
        entry++;
        n--;
    }
    memcpy(buf + head, entry, n);
    for (size_t k = 1; k <= n; k++)
        piece_add(ps, buf, head + k);
}

/* The next string of m lowercase letters ("az" -> "ba"); 0 after "zz...z". */
static int next_letters(char *w, size_t m)
{
    for (size_t d = m; d > 0; d--) {
        if (w[d - 1] != 'z') {
            w[d - 1]++;
            return 1;
        }
        w[d - 1] = 'a';
    }
    return 0;
}

/* Past the built-in list, larger vocabularies get letter strings, shortest first: "▁" + k
 * letters and k + 1 letters at level k, lexicographic. Each one's prefixes come at an earlier
 * level, so the prefix order holds here too. */
static void piece_add_letters(piece_set *ps)
{
    for (size_t level = 1; level < GEN_MAX_LETTERS && ps->n < ps->max; level++) {
        for (int spaced = 1; spaced >= 0; spaced--) {
            char buf[3 + GEN_MAX_LETTERS];
            size_t head = spaced ? 3 : 0, m = spaced ? level : level + 1;
            memcpy(buf, GEN_SPACE, head);
            memset(buf + head, 'a', m);
            do
                piece_add(ps, buf, head + m);
            while (ps->n < ps->max && !ps->oom && next_letters(buf + head, m));
        }
    }
}

static void piece_add_all(piece_set *ps)
{
    piece_add(ps, "<unk>", 5);
    piece_add(ps, "<s>", 3);
    piece_add(ps, "</s>", 4);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        piece_add(ps, name, 6);
    }
    piece_add(ps, GEN_SPACE, 3);
    for (const char *c = GEN_CHARS; *c; c++)
        piece_add(ps, c, 1);
    for (size_t i = 0; i < GEN_N_ENGLISH; i++)
        piece_add_with_prefixes(ps, GEN_ENGLISH[i]);
    piece_add_letters(ps);
}

static int gen_piece_type(uint32_t i)
{
    return i == 0 ? SPM_PIECE_UNKNOWN : i < GEN_N_SPECIAL ? SPM_PIECE_CONTROL
         : i < GEN_FIRST_NORMAL ? SPM_PIECE_BYTE : SPM_PIECE_NORMAL;
}

/* The pieces as spm_model_write takes them: texts borrowed from ps, so ps must outlive them.
 * NULL when out of memory. */
static spm_piece *gen_pieces(const piece_set *ps)
{
    spm_piece *p = malloc((size_t)ps->n * sizeof *p);
    for (uint32_t i = 0; p && i < ps->n; i++) {
        p[i].text = ps->text.p + ps->start[i];
        p[i].len = (uint32_t)(ps->start[i + 1] - ps->start[i]);
        /* 0, -1, -2 ...: (float) of a negative integer, never -0.0f */
        p[i].score = i < GEN_FIRST_NORMAL ? 0.0f : (float)(GEN_FIRST_NORMAL - (int64_t)i);
        p[i].type = gen_piece_type(i);
    }
    return p;
}

static const spm_write_opts GEN_SPM_OPTS = {
    .model_type = 2, /* BPE */
    .byte_fallback = true,
    .unk_id = 0,
    .bos_id = 1,
    .eos_id = 2,
    .pad_id = -1, /* no padding piece */
    .normalizer_name = "identity",
    .add_dummy_prefix = true,
    .remove_extra_whitespaces = false, /* keep runs of spaces: text round-trips exactly */
    .escape_whitespaces = true,
};

static int write_spm_model(const char *dir, uint32_t vocab, qk_err *err)
{
    char path[SY_PATH_MAX];
    int rc = sy_path_join(path, dir, "tokenizer.model", err);
    if (rc != QK_OK)
        return rc;
    piece_set ps;
    piece_set_init(&ps, vocab);
    piece_add_all(&ps);
    spm_piece *pieces = ps.oom ? NULL : gen_pieces(&ps);
    spm_write_opts opts = GEN_SPM_OPTS;
    opts.vocab_size = (int32_t)vocab;
    if (!pieces)
        rc = qk_err_set(err, QK_ENOMEM, "%s: out of memory for %u pieces", path, vocab);
    else if (ps.n != vocab)
        rc = qk_err_set(err, QK_EINTERNAL, "%s: generated %u pieces instead of %u", path, ps.n,
                        vocab);
    else
        rc = spm_model_write(path, pieces, ps.n, &opts, err);
    free(pieces);
    piece_set_free(&ps);
    return rc;
}

/* tokenizer_config.json as a LlamaTokenizer saves it, and special_tokens_map.json. */
static int write_hf_tokenizer_json(const char *dir, qk_err *err)
{
    char cfg_path[SY_PATH_MAX], map_path[SY_PATH_MAX];
    int rc = sy_path_join(cfg_path, dir, "tokenizer_config.json", err);
    if (rc == QK_OK)
        rc = sy_path_join(map_path, dir, "special_tokens_map.json", err);
    if (rc != QK_OK)
        return rc;
    cJSON *cfg = cJSON_CreateObject(), *map = cJSON_CreateObject();
    int ok = cfg && map && cJSON_AddTrueToObject(cfg, "add_bos_token") &&
             cJSON_AddFalseToObject(cfg, "add_eos_token");
    static const char *const special[][2] = {
        {"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}};
    for (size_t i = 0; ok && i < 3; i++)
        ok = cJSON_AddStringToObject(cfg, special[i][0], special[i][1]) &&
             cJSON_AddStringToObject(map, special[i][0], special[i][1]);
    ok = ok && cJSON_AddFalseToObject(cfg, "clean_up_tokenization_spaces") &&
         cJSON_AddTrueToObject(cfg, "legacy") && cJSON_AddNullToObject(cfg, "pad_token") &&
         cJSON_AddStringToObject(cfg, "tokenizer_class", "LlamaTokenizer");
    rc = ok ? sy_write_json(cfg_path, cfg, err)
            : qk_err_set(err, QK_ENOMEM, "%s: out of memory", cfg_path);
    if (rc == QK_OK)
        rc = sy_write_json(map_path, map, err);
    cJSON_Delete(cfg);
    cJSON_Delete(map);
    return rc;
}

int sy_gen_vocab_check(int64_t vocab, const char *what, qk_err *err)
{
    if (vocab < SY_GEN_MIN_VOCAB)
        return qk_err_set(err, QK_ERANGE, "%s: vocab_size %" PRId64 " is below %d, the smallest "
                          "vocabulary a generated tokenizer can have (<unk>, <s>, </s> and the "
                          "256 byte pieces)", what, vocab, SY_GEN_MIN_VOCAB);
    if (vocab > SY_GEN_MAX_VOCAB)
        return qk_err_set(err, QK_ERANGE, "%s: vocab_size %" PRId64 " is above %d, the largest "
                          "vocabulary a generated tokenizer can have", what, vocab,
                          SY_GEN_MAX_VOCAB);
    return QK_OK;
}

int sy_tokenizer_write(const char *dir, int64_t vocab_size, qk_err *err)
{
    int rc = sy_gen_vocab_check(vocab_size, dir, err);
    if (rc == QK_OK)
        rc = write_spm_model(dir, (uint32_t)vocab_size, err);
    if (rc == QK_OK)
        rc = write_hf_tokenizer_json(dir, err);
    return rc;
}
