#include "synth.h"
#include "synth_impl.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../formats/bgwrite.h"
#include "../formats/file.h"
#include "../formats/outfile.h"
#include "../quant/fp16.h"
#include "../quant/fp8.h"
#include "arch.h"

#define MAX_DIM (1 << 24)     /* per hyper-parameter; products are checked by st_spec_nbytes */
#define MAX_LAYERS (1 << 16)
#define MAX_CONFIG (16u << 20) /* a config.json is a few hundred bytes */
/* Bytes per piece; two pieces are in memory. Pieces are large because each one ends in an
 * OpenMP join, and idle OpenMP threads spin for milliseconds before sleeping: on a busy machine
 * thousands of small pieces would burn seconds of CPU the writer needs. */
#define PIECE_BYTES ((size_t)8 << 20)
#define SINGLE_NAME "model.safetensors"
#define INDEX_NAME "model.safetensors.index.json"
#define DEFAULT_STD 0.02f

/* Copied when present; the set llama.cpp's converter and transformers look for. */
static const char *const TOKENIZER_FILES[] = {
    "tokenizer.json",   "tokenizer.model",         "tokenizer_config.json",
    "vocab.json",       "merges.txt",              "added_tokens.json",
    "special_tokens_map.json", "chat_template.jinja", "generation_config.json",
};
#define N_TOKENIZER_FILES (sizeof TOKENIZER_FILES / sizeof TOKENIZER_FILES[0])

/* ---- architectures ------------------------------------------------------------------------ */

/* The architectures and their tensors come from the converter's description (arch.h): synth
 * writes exactly the tensors a checkpoint of the config must hold, with their HF names and shapes
 * (stacked experts as one 2-D tensor per expert), so every architecture the converter reads can
 * be synthesized. The converter is checked against llama.cpp's outputs and real checkpoints, not
 * against synth. */

const char *sy_supported_archs(void) { return ca_supported(); }

/* A present, non-null member; NULL when absent or null (transformers writes null for unset). */
static const cJSON *member(const cJSON *cfg, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* An integer field in [lo, hi]; def < 0 makes it required. */
static int get_int(const cJSON *cfg, const char *key, int64_t lo, int64_t hi, int64_t def,
                   int64_t *out, const char *path, qk_err *err)
{
    const cJSON *v = member(cfg, key);
    if (!v) {
        if (def < 0)
            return qk_err_set(err, QK_EFORMAT, "%s: missing '%s'", path, key);
        *out = def;
        return QK_OK;
    }
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v))
        return qk_err_set(err, QK_EFORMAT, "%s: '%s' must be an integer", path, key);
    if (!(d >= (double)lo && d <= (double)hi))
        return qk_err_set(err, QK_ERANGE, "%s: '%s' is %.6g, outside [%" PRId64 ", %" PRId64 "]",
                          path, key, d, lo, hi);
    if (d != (double)(int64_t)d)
        return qk_err_set(err, QK_EFORMAT, "%s: '%s' must be an integer, not %.6g", path, key, d);
    *out = (int64_t)d;
    return QK_OK;
}

static int get_bool(const cJSON *cfg, const char *key, int *out, const char *path, qk_err *err)
{
    const cJSON *v = member(cfg, key);
    if (!v) {
        *out = 0; /* false for every supported architecture, tie_word_embeddings included */
        return QK_OK;
    }
    if (!cJSON_IsBool(v))
        return qk_err_set(err, QK_EFORMAT, "%s: '%s' must be true or false", path, key);
    *out = cJSON_IsTrue(v);
    return QK_OK;
}

static int find_arch(const cJSON *cfg, const ca_arch **out, const char *path, qk_err *err)
{
    const cJSON *a = member(cfg, "architectures");
    const cJSON *first = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
    if (!cJSON_IsString(first))
        return qk_err_set(err, QK_EFORMAT,
                          "%s: missing 'architectures' (a list naming one of: %s)", path,
                          sy_supported_archs());
    if ((*out = ca_arch_find(first->valuestring)))
        return QK_OK;
    return qk_err_set(err, QK_EUNSUPPORTED, "%s: architecture '%.100s' is not supported (supported: %s)",
                      path, first->valuestring, sy_supported_archs());
}

/* head_dim: explicit, or hidden_size / num_attention_heads as transformers derives it. */
static int get_head_dim(const cJSON *cfg, sy_arch *a, int need, const char *path, qk_err *err)
{
    if (member(cfg, "head_dim"))
        return get_int(cfg, "head_dim", 1, MAX_DIM, -1, &a->head_dim, path, err);
    if (need)
        return qk_err_set(err, QK_EFORMAT, "%s: %s needs an explicit 'head_dim'", path, a->arch);
    if (a->hidden % a->n_heads)
        return qk_err_set(err, QK_ERANGE,
                          "%s: hidden_size %" PRId64 " is not divisible by num_attention_heads %"
                          PRId64 " and there is no head_dim",
                          path, a->hidden, a->n_heads);
    a->head_dim = a->hidden / a->n_heads;
    return QK_OK;
}

static int get_init_std(const cJSON *cfg, float *out, const char *path, qk_err *err)
{
    const cJSON *v = member(cfg, "initializer_range");
    *out = DEFAULT_STD;
    if (!v)
        return QK_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0 && v->valuedouble <= 1))
        return qk_err_set(err, QK_ERANGE, "%s: 'initializer_range' must be a number in (0, 1]",
                          path);
    *out = (float)v->valuedouble;
    return QK_OK;
}

/* The converter's view of the config. Synth needs only the shapes, so the keys a checkpoint must
 * have but weights do not depend on get harmless defaults when absent. */
static int describe(const cJSON *cfg, sy_arch *a, const char *path, qk_err *err)
{
    cJSON *c = cJSON_Duplicate(cfg, 1);
    if (!c)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    if (!member(c, "max_position_embeddings"))
        cJSON_AddNumberToObject(c, "max_position_embeddings", 4096);
    if (!member(c, "rms_norm_eps"))
        cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-6);
    cJSON_DeleteItemFromObjectCaseSensitive(c, "quantization_config"); /* synth decides that */
    /* special ids shape no weight, and --tokenizer-gen replaces them */
    for (cJSON *o = c; o; o = o == c ? cJSON_GetObjectItemCaseSensitive(c, "text_config") : NULL) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, "bos_token_id");
        cJSON_DeleteItemFromObjectCaseSensitive(o, "eos_token_id");
    }
    int rc = ca_config_from_json(c, path, &a->cfg, err);
    cJSON_Delete(c);
    return rc;
}

static int arch_from_flat(sy_arch *out, const cJSON *cfg, const char *path, qk_err *err);

/* Multimodal configs (Llama 4) keep the text model's keys in text_config: read them flat. */
int sy_arch_from_config(sy_arch *out, const cJSON *cfg, const char *path, qk_err *err)
{
    memset(out, 0, sizeof *out);
    if (!cJSON_IsObject(cfg))
        return qk_err_set(err, QK_EFORMAT, "%s: not a JSON object", path);
    cJSON *flat = ca_config_flat(cfg);
    if (!flat)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    int rc = arch_from_flat(out, flat, path, err);
    cJSON_Delete(flat);
    return rc;
}

static int arch_from_flat(sy_arch *out, const cJSON *cfg, const char *path, qk_err *err)
{
    const ca_arch *ca = NULL;
    int rc = find_arch(cfg, &ca, path, err);
    sy_arch a = {.arch = ca ? ca->hf_class : NULL};
    if (rc == QK_OK)
        rc = get_int(cfg, "hidden_size", 1, MAX_DIM, -1, &a.hidden, path, err);
    if (rc == QK_OK)
        rc = get_int(cfg, "intermediate_size", 1, MAX_DIM, -1, &a.intermediate, path, err);
    if (rc == QK_OK)
        rc = get_int(cfg, "num_hidden_layers", 1, MAX_LAYERS, -1, &a.n_layers, path, err);
    if (rc == QK_OK)
        rc = get_int(cfg, "num_attention_heads", 1, MAX_DIM, -1, &a.n_heads, path, err);
    if (rc == QK_OK)
        rc = get_int(cfg, "num_key_value_heads", 1, MAX_DIM, a.n_heads, &a.n_kv_heads, path, err);
    if (rc == QK_OK)
        rc = get_int(cfg, "vocab_size", 1, MAX_DIM, -1, &a.vocab, path, err);
    if (rc == QK_OK && a.n_heads % a.n_kv_heads)
        rc = qk_err_set(err, QK_ERANGE,
                        "%s: num_attention_heads %" PRId64 " is not a multiple of "
                        "num_key_value_heads %" PRId64, path, a.n_heads, a.n_kv_heads);
    if (rc == QK_OK)
        rc = get_head_dim(cfg, &a, ca->need_head_dim, path, err);
    if (rc == QK_OK && a.head_dim % 2)
        rc = qk_err_set(err, QK_ERANGE, "%s: head_dim %" PRId64 " is odd (rotary embeddings "
                        "rotate pairs)", path, a.head_dim);
    if (rc == QK_OK)
        rc = get_bool(cfg, "tie_word_embeddings", &a.tied, path, err);
    if (rc == QK_OK)
        rc = get_init_std(cfg, &a.init_std, path, err);
    if (rc == QK_OK)
        rc = describe(cfg, &a, path, err);
    if (rc == QK_OK) {
        a.n_experts = a.cfg.hp.n_expert;
        *out = a;
    }
    return rc;
}

/* ---- tensor table ------------------------------------------------------------------------- */

/* Norms start near one (transformers initialises them to ones); everything else near zero. */
static void set_tensor(sy_tensor *t, const sy_arch *a, const ca_output *o, int k)
{
    ca_output_src_name(o, k, t->name, sizeof t->name);
    int64_t shape[4];
    ca_output_src_shape(o, &t->n_dims, shape);
    for (int d = 0; d < 3; d++)
        t->shape[d] = d < t->n_dims ? shape[d] : 0;
    const ga_kind_info *ki = ga_kind_get(o->kind);
    t->mean = ki->vector && !ki->bias ? 1.0f : 0.0f;
    t->std = a->init_std;
    t->linear = t->n_dims == 2 && o->kind != GA_T_TOKEN_EMBD && o->kind != GA_T_OUTPUT &&
                o->kind != GA_T_FFN_GATE_INP;
}

/* Model order, as save_pretrained shards: the embeddings, the blocks, then the other model-wide
 * tensors (final norm, head). */
int sy_arch_tensors(const sy_arch *a, sy_tensor **out, size_t *n, qk_err *err)
{
    *out = NULL;
    *n = 0;
    if (a->n_layers < 1 || a->n_layers > MAX_LAYERS)
        return qk_err_set(err, QK_ERANGE, "%" PRId64 " layers: outside [1, %d]", a->n_layers,
                          MAX_LAYERS);
    size_t cap = 0;
    ca_output o;
    for (size_t i = 0; ca_output_at(&a->cfg, i, &o); i++)
        cap += (size_t)o.n_src;
    sy_tensor *t = calloc(cap ? cap : 1, sizeof *t);
    if (!t)
        return qk_err_set(err, QK_ENOMEM, "out of memory for %zu tensor descriptions", cap);
    size_t k = 0;
    for (int pass = 0; pass < 3; pass++) {
        for (size_t i = 0; ca_output_at(&a->cfg, i, &o); i++) {
            if (o.xform == CA_X_SPLIT1_T)
                continue; /* its fused source was written with the first half */
            int p = o.kind == GA_T_TOKEN_EMBD ? 0 : o.layer >= 0 ? 1 : 2;
            for (int e = 0; p == pass && e < o.n_src; e++)
                set_tensor(&t[k++], a, &o, e);
        }
    }
    *out = t;
    *n = k;
    return QK_OK;
}

/* ---- generator ---------------------------------------------------------------------------- */

#define GAMMA 0x9e3779b97f4a7c15ull
/* The centred sum of four uniform 16-bit integers has variance (65536^2 - 1) / 3; this scales
 * it to one. Computed in double, rounded once: the same float everywhere. */
#define Z_SCALE (1.7320508075688772 / 65536.0)

/* splitmix64's finaliser: a bijection whose outputs on a counter pass BigCrush. */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t sy_tensor_key(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a: a stable hash of the name */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return mix64(h ^ mix64(seed + GAMMA));
}

/* Element j is a pure function of (key, j), so any split of the work gives the same bytes. The
 * sum is exact in integers and converts to float exactly (|s| < 2^18); the only rounding steps
 * are one IEEE multiply and one add, identical on every conforming machine. */
static inline float element(uint64_t key, uint64_t j, float mean, float k)
{
    uint64_t r = mix64(key + (j + 1) * GAMMA);
    int32_t s = (int32_t)((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48));
    return mean + k * (float)(s - 131070);
}

/* The factor element() applies to the centred sum for a standard deviation std. */
static inline float std_factor(float std) { return (float)((double)std * Z_SCALE); }

void sy_fill(uint64_t key, uint64_t first, size_t n, float mean, float std, st_dtype dtype,
             void *out /* [n] elements of dtype */)
{
    const float k = std_factor(std);
    const int64_t m = (int64_t)n;
    if (dtype == ST_F32) {
        float *o = out;
#pragma omp parallel for schedule(static) if (m >= 65536)
        for (int64_t i = 0; i < m; i++)
            o[i] = element(key, first + (uint64_t)i, mean, k);
    } else if (dtype == ST_F16) {
        uint16_t *o = out;
#pragma omp parallel for schedule(static) if (m >= 65536)
        for (int64_t i = 0; i < m; i++)
            o[i] = q_fp32_to_fp16(element(key, first + (uint64_t)i, mean, k));
    } else {
        uint16_t *o = out;
#pragma omp parallel for schedule(static) if (m >= 65536)
        for (int64_t i = 0; i < m; i++)
            o[i] = q_fp32_to_bf16(element(key, first + (uint64_t)i, mean, k));
    }
}

/* ---- FP8 linear weights ------------------------------------------------------------------- */

#define FP8_MAX 448.0f /* the largest finite e4m3fn value */

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Rows [row0, row0 + nr) of the linear weight t (row0 a multiple of SY_FP8_BLOCK) as block-scaled
 * e4m3: scale [ceil(nr/B)][ceil(cols/B)] gets max|x| / 448 of each B x B block (1 for an all-zero
 * block; blocks on the last row and column of the grid are partial), and codes [nr][cols], unless
 * NULL, gets q_fp32_to_fp8_e4m3(x / scale) of each element. x is the float32 value sy_fill(ST_F32)
 * gives. A block is a task with its values in a 64 KiB scratch of its thread; blocks are
 * independent, so the bytes do not depend on the thread count. */
static void fp8_rows(uint64_t key, const sy_tensor *t, int64_t row0, int64_t nr,
                     float *scale /* [ceil(nr/B)][ceil(cols/B)] */,
                     uint8_t *codes /* [nr][cols] or NULL */)
{
    enum { B = SY_FP8_BLOCK };
    const int64_t cols = t->shape[1];
    const int64_t gc = (cols + B - 1) / B, n_tasks = (nr + B - 1) / B * gc;
    const float k = std_factor(t->std), mean = t->mean;
#pragma omp parallel if (nr * cols >= 65536)
    {
        float x[B * B]; /* [r1 - r0][c1 - c0] */
#pragma omp for schedule(static)
        for (int64_t task = 0; task < n_tasks; task++) {
            const int64_t r0 = row0 + task / gc * B, c0 = task % gc * B;
            const int64_t r1 = min64(r0 + B, row0 + nr), c1 = min64(c0 + B, cols), w = c1 - c0;
            float amax = 0;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++) {
                    const float v = element(key, (uint64_t)(r * cols + c), mean, k);
                    const float a = v < 0 ? -v : v;
                    x[(r - r0) * w + c - c0] = v;
                    amax = a > amax ? a : amax;
                }
            const float s = amax > 0 ? amax / FP8_MAX : 1.0f;
            scale[task] = s;
            for (int64_t r = r0; codes && r < r1; r++)
                for (int64_t c = c0; c < c1; c++)
                    codes[(r - row0) * cols + c] = q_fp32_to_fp8_e4m3(x[(r - r0) * w + c - c0] / s);
        }
    }
}

/* ---- cleanup of an interrupted run (async-signal-safe) ------------------------------------ */

/* The folder being written and how many shards it will hold: enough for a signal handler to
 * name every file a run can create, without allocating or walking the folder. */
static char sig_dir[SY_PATH_MAX];
static volatile sig_atomic_t sig_active;
static volatile sig_atomic_t sig_n_files;

static void sig_unlink(const char *dir, size_t dlen, const char *name)
{
    char p[SY_PATH_MAX + 64];
    size_t nlen = strlen(name);
    if (dlen + 1 + nlen >= sizeof p)
        return;
    memcpy(p, dir, dlen);
    p[dlen] = '/';
    memcpy(p + dlen + 1, name, nlen + 1);
    unlink(p);
}

/* "model-00001-of-00002.safetensors" without snprintf, which is not async-signal-safe. */
static void shard_name_raw(char out[40], long i, long n)
{
    static const char head[] = "model-", mid[] = "-of-", tail[] = ".safetensors";
    char *p = out;
    memcpy(p, head, 6);
    p += 6;
    for (int d = 4; d >= 0; d--, i /= 10)
        p[d] = (char)('0' + i % 10);
    p += 5;
    memcpy(p, mid, 4);
    p += 4;
    for (int d = 4; d >= 0; d--, n /= 10)
        p[d] = (char)('0' + n % 10);
    p += 5;
    memcpy(p, tail, sizeof tail);
}

void sy_remove_temporaries(void)
{
    if (!sig_active)
        return;
    size_t dlen = strlen(sig_dir);
    for (size_t i = 0; i < N_TOKENIZER_FILES; i++)
        sig_unlink(sig_dir, dlen, TOKENIZER_FILES[i]);
    sig_unlink(sig_dir, dlen, "config.json");
    sig_unlink(sig_dir, dlen, SINGLE_NAME);
    sig_unlink(sig_dir, dlen, INDEX_NAME);
    long n = sig_n_files;
    for (long i = 1; n > 1 && i <= n; i++) {
        char name[40];
        shard_name_raw(name, i, n);
        sig_unlink(sig_dir, dlen, name);
    }
    rmdir(sig_dir);
}

/* ---- small file helpers (synth_impl.h shares them with synth_tokenizer.c) ------------------ */

int sy_path_join(char *out, const char *dir, const char *name, qk_err *err)
{
    int len = snprintf(out, SY_PATH_MAX, "%s/%s", dir, name);
    if (len < 0 || len >= SY_PATH_MAX)
        return qk_err_set(err, QK_ERANGE, "%s/%s: path too long", dir, name);
    return QK_OK;
}

/* A missing input is bad input (exit 2), any other refusal an I/O failure. */
static int open_errno(int e) { return e == ENOENT || e == ENOTDIR ? QK_EFORMAT : QK_EIO; }

/* A missing config is bad input (exit 2), any other refusal an I/O failure. */
static int read_config(const char *path, cJSON **out, qk_err *err)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return qk_err_set(err, QK_EFORMAT, "%s: is a folder, not a config.json file", path);
    char *buf = NULL;
    size_t n = 0;
    int rc = qk_file_read(path, MAX_CONFIG, &buf, &n, err);
    if (rc == QK_ENOTFOUND)
        rc = QK_EFORMAT; /* the message (PATH: cannot open: …) stays */
    else if (rc == QK_ERANGE)
        rc = qk_err_set(err, QK_ERANGE, "%s: larger than %u MiB, not a config.json", path, MAX_CONFIG >> 20);
    if (!rc && !(*out = cJSON_ParseWithLength(buf, n)))
        rc = qk_err_set(err, QK_EFORMAT, "%s: not valid JSON (near byte %td)", path,
                        cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - buf : (ptrdiff_t)0);
    free(buf);
    return rc;
}

/* cJSON indents with tabs and writes "key":<tab>value; transformers writes two spaces and
 * "key": value, and ends the file with a newline. A raw tab is always layout, since cJSON
 * escapes tabs inside strings. Returns a malloc'd copy, NULL when out of memory. */
static char *retab(const char *text)
{
    char *out = malloc(2 * strlen(text) + 2), *w = out;
    for (const char *r = text; out && *r; r++) {
        if (*r != '\t')
            *w++ = *r;
        else if (r > text && r[-1] == ':')
            *w++ = ' ';
        else
            *w++ = ' ', *w++ = ' ';
    }
    if (out) {
        *w++ = '\n';
        *w = 0;
    }
    return out;
}

int sy_write_json(const char *path, const cJSON *json, qk_err *err)
{
    char *raw = cJSON_Print(json), *text = raw ? retab(raw) : NULL;
    int rc = text ? of_write_all(path, text, strlen(text), err)
                  : qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    cJSON_free(raw);
    free(text);
    return rc;
}

/* Copies src to dst when src is a regular file; *copied says whether it was there. */
static int copy_if_present(const char *src, const char *dst, int *copied, qk_err *err)
{
    *copied = 0;
    struct stat st;
    if (stat(src, &st) != 0 || !S_ISREG(st.st_mode))
        return QK_OK;
    FILE *in = fopen(src, "rb");
    if (!in)
        return qk_err_set(err, QK_EIO, "%s: cannot open: %s", src, strerror(errno));
    of_file *out;
    int rc = of_open(&out, dst, err);
    char buf[1 << 16];
    size_t n;
    while (rc == QK_OK && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, of_stream(out)) != n)
            rc = qk_err_set(err, QK_EIO, "%s: write failed: %s", dst, strerror(errno));
    if (rc == QK_OK && ferror(in))
        rc = qk_err_set(err, QK_EIO, "%s: read failed", src);
    fclose(in);
    if (rc == QK_OK) {
        rc = of_commit(out, err);
        *copied = rc == QK_OK;
    } else if (out) {
        of_abort(out);
    }
    return rc;
}

/* st_writer_write as a background writer's sink. */
static int st_write_sink(void *w, const void *data, size_t n, qk_err *err)
{
    return st_writer_write(w, data, n, err);
}

/* ---- a run -------------------------------------------------------------------------------- */

/* What a file entry holds: a tensor's values in a float dtype, a linear weight as FP8 codes, or
 * that weight's scale grid (`<name>_scale_inv`). */
typedef enum { E_VALUES, E_FP8, E_SCALE } entry_kind;

/* One tensor of the checkpoint as stored: a sy_tensor, and with --dtype fp8 also the scale grid
 * of each linear weight, right after it in model order. */
typedef struct {
    char name[SY_NAME_MAX + 16];
    const sy_tensor *t; /* the tensor whose values it holds or scales */
    entry_kind kind;
    st_dtype dtype;
    int n_dims;
    int64_t shape[3];
} entry;

typedef struct {
    const sy_options *o;
    sy_tensor *t;
    size_t n_t;
    entry *e;          /* [n] in model order */
    size_t n;
    uint64_t *nbytes;  /* [n] */
    int64_t *shard;    /* [n] file index of each entry (0-based) */
    int64_t n_files;
    uint64_t total, done;
    char out[SY_PATH_MAX]; /* out_dir without trailing slashes */
    char tmp[SY_PATH_MAX + 16];
    void *buf[2];      /* buf_bytes each: one is generated while the other is written */
    size_t buf_bytes;  /* PIECE_BYTES, or one band of SY_FP8_BLOCK rows of FP8 codes if larger */
    int cur;
    bg_writer bg;
} job;

static int is_fp8_run(const sy_options *o) { return o->dtype == ST_F8_E4M3; }

static const char *dtype_torch_name(st_dtype d)
{
    return d == ST_F32 ? "float32" : d == ST_F16 ? "float16" : "bfloat16"; /* fp8: bfloat16 */
}

static int check_options(const sy_options *o, qk_err *err)
{
    if (!o->config_path || !o->out_dir)
        return qk_err_set(err, QK_EFORMAT, "synth: a config and an output folder are required");
    if (o->dtype != ST_F32 && o->dtype != ST_F16 && o->dtype != ST_BF16 && !is_fp8_run(o))
        return qk_err_set(err, QK_EUNSUPPORTED, "synth: dtype %s is not one of F32, F16, BF16, "
                          "F8_E4M3", st_dtype_name(o->dtype));
    if (o->shards && o->max_shard_size)
        return qk_err_set(err, QK_EFORMAT, "synth: give a shard count or a maximum shard size, "
                          "not both");
    if (o->tokenizer_gen && o->tokenizer_dir)
        return qk_err_set(err, QK_EFORMAT, "synth: generate the tokenizer or copy it from %s, "
                          "not both", o->tokenizer_dir);
    if (o->shards < 0 || o->shards > SY_MAX_SHARDS)
        return qk_err_set(err, QK_ERANGE, "synth: %" PRId64 " shards: outside [1, %d]", o->shards,
                          SY_MAX_SHARDS);
    if (o->layers < 0 || o->layers > MAX_LAYERS)
        return qk_err_set(err, QK_ERANGE, "synth: %" PRId64 " layers: outside [1, %d]", o->layers,
                          MAX_LAYERS);
    return QK_OK;
}

static void add_entry(job *j, const sy_tensor *t, entry_kind kind, st_dtype dtype)
{
    entry *e = &j->e[j->n++];
    const int64_t B = SY_FP8_BLOCK;
    *e = (entry){.t = t, .kind = kind, .dtype = dtype, .n_dims = t->n_dims,
                 .shape = {t->shape[0], t->shape[1], t->shape[2]}};
    snprintf(e->name, sizeof e->name, "%s%s", t->name, kind == E_SCALE ? "_scale_inv" : "");
    if (kind == E_SCALE) {
        e->shape[0] = (t->shape[0] + B - 1) / B;
        e->shape[1] = (t->shape[1] + B - 1) / B;
    }
}

/* The stored tensors, each with its own dtype and size: the run's dtype, or with fp8 the linear
 * weights as F8_E4M3 followed by their F32 scale grids and everything else as BF16. */
static int size_tensors(job *j, qk_err *err)
{
    const int fp8 = is_fp8_run(j->o);
    size_t cap = j->n_t;
    for (size_t i = 0; fp8 && i < j->n_t; i++)
        cap += j->t[i].linear != 0;
    j->e = calloc(cap ? cap : 1, sizeof *j->e);
    j->nbytes = calloc(cap ? cap : 1, sizeof *j->nbytes);
    j->shard = calloc(cap ? cap : 1, sizeof *j->shard);
    if (!j->e || !j->nbytes || !j->shard)
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    j->buf_bytes = PIECE_BYTES;
    for (size_t i = 0; i < j->n_t; i++) {
        const sy_tensor *t = &j->t[i];
        if (!fp8) {
            add_entry(j, t, E_VALUES, j->o->dtype);
        } else if (!t->linear) {
            add_entry(j, t, E_VALUES, ST_BF16);
        } else {
            add_entry(j, t, E_FP8, ST_F8_E4M3);
            add_entry(j, t, E_SCALE, ST_F32);
            /* one band of codes (at most 2^31 bytes: cols <= MAX_DIM) */
            size_t band = (size_t)SY_FP8_BLOCK * (size_t)t->shape[1];
            j->buf_bytes = band > j->buf_bytes ? band : j->buf_bytes;
        }
    }
    for (size_t i = 0; i < j->n; i++) {
        const entry *e = &j->e[i];
        st_tensor_spec s = {.name = e->name, .dtype = e->dtype, .n_dims = e->n_dims,
                            .shape = {e->shape[0], e->shape[1], e->shape[2]}};
        if (st_spec_nbytes(&s, &j->nbytes[i]) != QK_OK ||
            __builtin_add_overflow(j->total, j->nbytes[i], &j->total))
            return qk_err_set(err, QK_ERANGE, "%s: tensor '%s' makes the model size overflow",
                              j->o->config_path, e->name);
    }
    return QK_OK;
}

/* Exactly N files, in model order: a file ends once the bytes so far reach its share of the
 * total, or when the tensors left are just enough to give each remaining file one. */
static int plan_by_count(job *j, int64_t n_files, qk_err *err)
{
    if ((uint64_t)n_files > j->n)
        return qk_err_set(err, QK_ERANGE, "%s: %" PRId64 " shards asked but the model has only "
                          "%zu tensors", j->o->config_path, n_files, j->n);
    int64_t k = 0;
    uint64_t acc = 0, n = (uint64_t)n_files;
    for (size_t i = 0; i < j->n; i++) {
        j->shard[i] = k;
        acc += j->nbytes[i];
        uint64_t m = (uint64_t)k + 1; /* floor(total·m/n) without overflow */
        uint64_t share = j->total / n * m + j->total % n * m / n;
        if (k < n_files - 1 && (acc >= share || j->n - 1 - i == (size_t)(n_files - 1 - k)))
            k++;
    }
    j->n_files = n_files;
    return QK_OK;
}

/* transformers' rule: start a new file when the next tensor would push this one past the
 * limit; a tensor larger than the limit gets a file of its own. */
static int plan_by_size(job *j, uint64_t max, qk_err *err)
{
    int64_t k = 0;
    uint64_t cur = 0;
    for (size_t i = 0; i < j->n; i++) {
        if (cur > 0 && j->nbytes[i] > max - (cur < max ? cur : max)) {
            k++;
            cur = 0;
        }
        j->shard[i] = k;
        cur += j->nbytes[i];
    }
    if (k + 1 > SY_MAX_SHARDS)
        return qk_err_set(err, QK_ERANGE, "%s: a maximum shard size of %" PRIu64 " bytes makes "
                          "%" PRId64 " shards (at most %d)", j->o->config_path, max, k + 1,
                          SY_MAX_SHARDS);
    j->n_files = k + 1;
    return QK_OK;
}

static void file_name(const job *j, int64_t k, char out[40])
{
    if (j->n_files == 1)
        snprintf(out, 40, "%s", SINGLE_NAME);
    else
        shard_name_raw(out, (long)k + 1, (long)j->n_files);
}

/* Strips trailing slashes; the temporary goes beside OUT so the final rename stays on one
 * file system. */
static int make_tmp_dir(job *j, qk_err *err)
{
    size_t len = strlen(j->o->out_dir);
    while (len > 1 && j->o->out_dir[len - 1] == '/')
        len--;
    if (len + 16 >= SY_PATH_MAX)
        return qk_err_set(err, QK_ERANGE, "%s: output path too long", j->o->out_dir);
    memcpy(j->out, j->o->out_dir, len);
    j->out[len] = 0;
    if (!strcmp(j->out, "/") || !strcmp(j->out, ".") || !strcmp(j->out, ".."))
        return qk_err_set(err, QK_EFORMAT, "%s: not usable as an output folder", j->out);
    int rc = of_dir_check(j->out, j->o->force, err);
    if (rc != QK_OK)
        return rc;
    snprintf(j->tmp, sizeof j->tmp, "%s.tmp-XXXXXX", j->out);
    if (!mkdtemp(j->tmp)) {
        j->tmp[0] = 0;
        return qk_err_set(err, open_errno(errno), "%s: cannot create a temporary folder beside "
                          "it: %s", j->out, strerror(errno));
    }
    mode_t mask = umask(0); /* mkdtemp makes 0700; the result should look like mkdir's */
    umask(mask);
    chmod(j->tmp, 0777 & ~mask);
    memcpy(sig_dir, j->tmp, strlen(j->tmp) + 1);
    sig_n_files = (sig_atomic_t)j->n_files;
    sig_active = 1;
    return QK_OK;
}

/* The given config with the layer count and dtype this run used. layer_types (one entry per
 * layer in recent transformers) is cut or repeated cyclically to match. */
static int cut_list(cJSON *c, const char *key, int64_t layers);

static int set_layers_in(cJSON *c, int64_t layers)
{
    if (!cJSON_ReplaceItemInObjectCaseSensitive(c, "num_hidden_layers",
                                                cJSON_CreateNumber((double)layers)))
        return 0;
    return cut_list(c, "layer_types", layers) && cut_list(c, "no_rope_layers", layers);
}

/* A per-layer list cut or repeated cyclically to `layers` entries (absent or empty: unchanged). */
static int cut_list(cJSON *c, const char *key, int64_t layers)
{
    cJSON *lt = cJSON_GetObjectItemCaseSensitive(c, key);
    int len = cJSON_IsArray(lt) ? cJSON_GetArraySize(lt) : 0;
    if (!len)
        return 1;
    cJSON *nl = cJSON_CreateArray();
    int ok = nl != NULL;
    for (int64_t i = 0; ok && i < layers; i++)
        ok = cJSON_AddItemToArray(nl, cJSON_Duplicate(cJSON_GetArrayItem(lt, (int)(i % len)), 1));
    if (ok && cJSON_ReplaceItemInObjectCaseSensitive(c, key, nl))
        return 1;
    cJSON_Delete(nl);
    return 0;
}

/* The layer count in the config and, for multimodal configs, in its text_config. */
static int set_layers(cJSON *c, int64_t layers)
{
    cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "text_config");
    if (cJSON_IsObject(t) && cJSON_GetObjectItemCaseSensitive(t, "num_hidden_layers") && !set_layers_in(t, layers))
        return 0;
    return !cJSON_GetObjectItemCaseSensitive(c, "num_hidden_layers") && cJSON_IsObject(t) ? 1 : set_layers_in(c, layers);
}

/* key = v, replacing any value the config had. */
static int set_number(cJSON *c, const char *key, double v)
{
    cJSON *n = cJSON_CreateNumber(v);
    int ok = n && (cJSON_GetObjectItemCaseSensitive(c, key)
                       ? cJSON_ReplaceItemInObjectCaseSensitive(c, key, n)
                       : cJSON_AddItemToObject(c, key, n));
    if (!ok)
        cJSON_Delete(n);
    return ok;
}

/* The special ids of the generated tokenizer, which gguf-py's SpecialVocab takes from
 * config.json when tokenizer.json is absent. It has no padding piece. */
static int set_gen_special_ids(cJSON *c)
{
    cJSON_DeleteItemFromObjectCaseSensitive(c, "pad_token_id");
    return set_number(c, "bos_token_id", 1) && set_number(c, "eos_token_id", 2);
}

/* quantization_config of an FP8 checkpoint, keys sorted as transformers writes them (DeepSeek-V3's
 * spelling); any other quantization_config goes: the weights are what this run wrote. */
static int set_quantization(cJSON *c, int fp8)
{
    cJSON_DeleteItemFromObjectCaseSensitive(c, "quantization_config");
    if (!fp8)
        return 1;
    cJSON *q = cJSON_AddObjectToObject(c, "quantization_config");
    const int block[2] = {SY_FP8_BLOCK, SY_FP8_BLOCK};
    if (!q || !cJSON_AddStringToObject(q, "activation_scheme", "dynamic") ||
        !cJSON_AddStringToObject(q, "fmt", "e4m3") ||
        !cJSON_AddStringToObject(q, "quant_method", "fp8"))
        return 0;
    cJSON *b = cJSON_CreateIntArray(block, 2);
    if (b && cJSON_AddItemToObject(q, "weight_block_size", b))
        return 1;
    cJSON_Delete(b);
    return 0;
}

static int write_config(const job *j, const cJSON *cfg, qk_err *err)
{
    char path[SY_PATH_MAX];
    int rc = sy_path_join(path, j->tmp, "config.json", err);
    if (rc != QK_OK)
        return rc;
    cJSON *c = cJSON_Duplicate(cfg, 1);
    const char *dt = dtype_torch_name(j->o->dtype);
    int ok = c && (!j->o->layers || set_layers(c, j->o->layers));
    int has_dtype = cJSON_HasObjectItem(c, "dtype");
    if (ok && has_dtype)
        ok = cJSON_ReplaceItemInObjectCaseSensitive(c, "dtype", cJSON_CreateString(dt));
    if (ok && cJSON_HasObjectItem(c, "torch_dtype"))
        ok = cJSON_ReplaceItemInObjectCaseSensitive(c, "torch_dtype", cJSON_CreateString(dt));
    else if (ok && !has_dtype)
        ok = cJSON_AddStringToObject(c, "torch_dtype", dt) != NULL;
    if (ok && j->o->tokenizer_gen)
        ok = set_gen_special_ids(c);
    if (ok && (is_fp8_run(j->o) || cJSON_HasObjectItem(c, "quantization_config")))
        ok = set_quantization(c, is_fp8_run(j->o));
    rc = ok ? sy_write_json(path, c, err)
            : qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    cJSON_Delete(c);
    return rc;
}

static int copy_tokenizer(const job *j, const char *src_dir, int explicit_dir, int *copied,
                          qk_err *err)
{
    *copied = 0;
    for (size_t i = 0; i < N_TOKENIZER_FILES; i++) {
        char src[SY_PATH_MAX], dst[SY_PATH_MAX];
        int got = 0;
        int rc = sy_path_join(src, src_dir, TOKENIZER_FILES[i], err);
        if (rc == QK_OK)
            rc = sy_path_join(dst, j->tmp, TOKENIZER_FILES[i], err);
        if (rc == QK_OK)
            rc = copy_if_present(src, dst, &got, err);
        if (rc != QK_OK)
            return rc;
        *copied += got;
    }
    if (explicit_dir && !*copied)
        return qk_err_set(err, QK_EFORMAT, "%s: no tokenizer files (tokenizer.json, "
                          "tokenizer.model, vocab.json + merges.txt ...)", src_dir);
    return QK_OK;
}

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp((*(const entry *const *)a)->name, (*(const entry *const *)b)->name);
}

/* The buffer to fill next (the other one may still be in the writer's hands). */
static void *next_buf(job *j)
{
    void *buf = j->buf[j->cur];
    j->cur ^= 1;
    return buf;
}

/* Hands a filled buffer to the writer and reports progress. */
static int submit(job *j, st_writer *w, const void *buf, size_t n, qk_err *err)
{
    int rc = bg_submit(&j->bg, st_write_sink, w, buf, n, err);
    if (rc != QK_OK)
        return rc;
    j->done += n;
    if (j->o->progress)
        j->o->progress(j->o->progress_ud, j->done, j->total);
    return QK_OK;
}

/* Streams a linear weight's FP8 codes or its scale grid in bands of SY_FP8_BLOCK rows, as many
 * bands per piece as make about PIECE_BYTES of codes (at least one). The scale grid is
 * recomputed from the regenerated values rather than kept from the codes' pass: the two may
 * even be in different files. */
static int write_fp8(job *j, st_writer *w, const entry *e, uint64_t key, qk_err *err)
{
    const sy_tensor *t = e->t;
    const int64_t rows = t->shape[0], cols = t->shape[1], B = SY_FP8_BLOCK;
    const int64_t gc = (cols + B - 1) / B, band = B * cols;
    const int64_t piece = (int64_t)PIECE_BYTES;
    const int64_t per = (band < piece ? piece / band : 1) * B; /* rows per piece */
    float *scale = e->kind == E_FP8 ? malloc((size_t)(per / B * gc) * sizeof *scale) : NULL;
    if (e->kind == E_FP8 && !scale)
        return qk_err_set(err, QK_ENOMEM, "out of memory");
    int rc = QK_OK;
    for (int64_t r0 = 0; rc == QK_OK && r0 < rows; r0 += per) {
        const int64_t nr = min64(per, rows - r0);
        void *buf = next_buf(j);
        size_t n;
        if (e->kind == E_FP8) {
            fp8_rows(key, t, r0, nr, scale, buf);
            n = (size_t)(nr * cols);
        } else {
            fp8_rows(key, t, r0, nr, buf, NULL);
            n = (size_t)((nr + B - 1) / B * gc) * sizeof(float);
        }
        rc = submit(j, w, buf, n, err);
    }
    free(scale);
    return rc;
}

/* Streams one entry through the writer in pieces. */
static int write_tensor(job *j, st_writer *w, const entry *e, qk_err *err)
{
    const sy_tensor *t = e->t;
    uint64_t key = sy_tensor_key(j->o->seed, t->name);
    if (e->kind != E_VALUES)
        return write_fp8(j, w, e, key, err);
    uint64_t n = (uint64_t)t->shape[0];
    for (int d = 1; d < t->n_dims; d++)
        n *= (uint64_t)t->shape[d];
    size_t esz = st_dtype_size(e->dtype);
    const size_t piece = PIECE_BYTES / esz;
    for (uint64_t first = 0; first < n; first += piece) {
        size_t m = n - first < piece ? (size_t)(n - first) : piece;
        void *buf = next_buf(j);
        sy_fill(key, first, m, t->mean, t->std, e->dtype, buf);
        int rc = submit(j, w, buf, m * esz, err);
        if (rc != QK_OK)
            return rc;
    }
    return QK_OK;
}

static int write_shard(job *j, int64_t k, const entry **list, st_tensor_spec *specs,
                       qk_err *err)
{
    size_t m = 0;
    for (size_t i = 0; i < j->n; i++)
        if (j->shard[i] == k)
            list[m++] = &j->e[i];
    qsort(list, m, sizeof *list, cmp_by_name);
    for (size_t i = 0; i < m; i++)
        specs[i] = (st_tensor_spec){.name = list[i]->name, .dtype = list[i]->dtype,
                                    .n_dims = list[i]->n_dims,
                                    .shape = {list[i]->shape[0], list[i]->shape[1], list[i]->shape[2]}};
    char name[40], path[SY_PATH_MAX];
    file_name(j, k, name);
    int rc = sy_path_join(path, j->tmp, name, err);
    static const char *const keys[] = {"format"}, *const vals[] = {"pt"};
    st_writer *w = NULL;
    if (rc == QK_OK)
        rc = st_writer_open(&w, path, specs, m, keys, vals, 1, err);
    for (size_t i = 0; rc == QK_OK && i < m; i++)
        rc = write_tensor(j, w, list[i], err);
    int bg_rc = bg_wait(&j->bg, rc == QK_OK ? err : NULL); /* the writer is idle past here */
    rc = rc != QK_OK ? rc : bg_rc;
    if (rc != QK_OK) {
        st_writer_abort(w);
        return rc;
    }
    return st_writer_commit(w, err);
}

static int write_shards(job *j, qk_err *err)
{
    const entry **list = malloc(j->n * sizeof *list);
    st_tensor_spec *specs = malloc(j->n * sizeof *specs);
    j->buf[0] = malloc(j->buf_bytes);
    j->buf[1] = malloc(j->buf_bytes);
    int rc = list && specs && j->buf[0] && j->buf[1] ? QK_OK
                                                     : qk_err_set(err, QK_ENOMEM, "out of memory");
    if (rc == QK_OK)
        bg_start(&j->bg);
    for (int64_t k = 0; rc == QK_OK && k < j->n_files; k++)
        rc = write_shard(j, k, list, specs, err);
    bg_stop(&j->bg);
    free(list);
    free(specs);
    return rc;
}

/* model.safetensors.index.json as save_pretrained writes it: metadata, then the weight map
 * with names sorted. */
static int write_index(const job *j, uint64_t n_params, qk_err *err)
{
    char path[SY_PATH_MAX];
    int rc = sy_path_join(path, j->tmp, INDEX_NAME, err);
    if (rc != QK_OK)
        return rc;
    const entry **list = malloc(j->n * sizeof *list);
    cJSON *root = cJSON_CreateObject(), *md = cJSON_AddObjectToObject(root, "metadata");
    cJSON *wm = cJSON_AddObjectToObject(root, "weight_map");
    int ok = list && md && wm && cJSON_AddNumberToObject(md, "total_parameters", (double)n_params) &&
             cJSON_AddNumberToObject(md, "total_size", (double)j->total);
    for (size_t i = 0; ok && i < j->n; i++)
        list[i] = &j->e[i];
    if (ok)
        qsort(list, j->n, sizeof *list, cmp_by_name);
    for (size_t i = 0; ok && i < j->n; i++) {
        char name[40];
        file_name(j, j->shard[list[i] - j->e], name);
        ok = cJSON_AddStringToObject(wm, list[i]->name, name) != NULL;
    }
    rc = ok ? sy_write_json(path, root, err)
            : qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    cJSON_Delete(root);
    free(list);
    return rc;
}

/* The folder of the config file: where a downloaded model keeps its tokenizer. */
static int config_dir(const char *config_path, char out[SY_PATH_MAX], qk_err *err)
{
    const char *slash = strrchr(config_path, '/');
    size_t len = slash ? (size_t)(slash - config_path) : 0;
    if (len >= SY_PATH_MAX)
        return qk_err_set(err, QK_ERANGE, "%s: path too long", config_path);
    if (!slash)
        snprintf(out, SY_PATH_MAX, ".");
    else if (len == 0)
        snprintf(out, SY_PATH_MAX, "/");
    else
        snprintf(out, SY_PATH_MAX, "%.*s", (int)len, config_path);
    return QK_OK;
}

static int plan(job *j, cJSON *cfg, sy_result *res, qk_err *err)
{
    /* --layers: the config as written, so the description sees the layer count too */
    int rc = j->o->layers && !set_layers(cfg, j->o->layers) ? qk_err_set(err, QK_ENOMEM, "out of memory")
                                                             : QK_OK;
    if (rc == QK_OK)
        rc = sy_arch_from_config(&res->arch, cfg, j->o->config_path, err);
    if (rc == QK_OK && j->o->tokenizer_gen)
        rc = sy_gen_vocab_check(res->arch.vocab, j->o->config_path, err);
    if (rc == QK_OK)
        rc = sy_arch_tensors(&res->arch, &j->t, &j->n_t, err);
    if (rc == QK_OK)
        rc = size_tensors(j, err);
    if (rc == QK_OK && j->o->max_shard_size)
        rc = plan_by_size(j, j->o->max_shard_size, err);
    else if (rc == QK_OK)
        rc = plan_by_count(j, j->o->shards ? j->o->shards : 1, err);
    for (size_t i = 0; rc == QK_OK && i < j->n; i++) /* weights, not their scale grids */
        res->n_params += j->e[i].kind == E_SCALE ? 0 : j->nbytes[i] / st_dtype_size(j->e[i].dtype);
    res->n_tensors = j->n;
    res->n_bytes = j->total;
    res->n_files = j->n_files;
    return rc;
}

/* Generated, or copied from tokenizer_dir or else the config's folder. */
static int write_tokenizer(const job *j, int64_t vocab, int *n_files, qk_err *err)
{
    if (j->o->tokenizer_gen) {
        int rc = sy_tokenizer_write(j->tmp, vocab, err);
        *n_files = rc == QK_OK ? 3 : 0;
        return rc;
    }
    char dir[SY_PATH_MAX];
    int rc = QK_OK;
    if (j->o->tokenizer_dir)
        snprintf(dir, sizeof dir, "%s", j->o->tokenizer_dir);
    else
        rc = config_dir(j->o->config_path, dir, err);
    if (rc == QK_OK)
        rc = copy_tokenizer(j, dir, j->o->tokenizer_dir != NULL, n_files, err);
    return rc;
}

static int write_all(job *j, const cJSON *cfg, sy_result *res, qk_err *err)
{
    int rc = write_config(j, cfg, err);
    if (rc == QK_OK)
        rc = write_tokenizer(j, res->arch.vocab, &res->n_tokenizer_files, err);
    if (rc == QK_OK)
        rc = write_shards(j, err);
    if (rc == QK_OK && j->n_files > 1)
        rc = write_index(j, res->n_params, err);
    return rc;
}

/* The output folder replaces what is at OUT: it must not be the folder holding the config or
 * the tokenizer files it copies (nor the config itself). */
static int check_inputs_kept(const sy_options *o, qk_err *err)
{
    char dir[SY_PATH_MAX];
    const char *slash = strrchr(o->config_path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash == o->config_path ? 1 : slash - o->config_path) : 1,
             slash ? o->config_path : ".");
    int rc = qk_output_check(o->out_dir, o->config_path, err);
    if (rc == QK_OK)
        rc = qk_output_check(o->out_dir, dir, err);
    if (rc == QK_OK && o->tokenizer_dir)
        rc = qk_output_check(o->out_dir, o->tokenizer_dir, err);
    return rc;
}

int sy_synth(const sy_options *o, sy_result *res, qk_err *err)
{
    memset(res, 0, sizeof *res);
    job j = {.o = o};
    cJSON *cfg = NULL;
    int rc = check_options(o, err);
    if (rc == QK_OK)
        rc = read_config(o->config_path, &cfg, err);
    if (rc == QK_OK)
        rc = plan(&j, cfg, res, err);
    if (rc == QK_OK && o->tokenizer_dir) {
        struct stat st;
        if (stat(o->tokenizer_dir, &st) != 0 || !S_ISDIR(st.st_mode))
            rc = qk_err_set(err, QK_EFORMAT, "%s: not a folder", o->tokenizer_dir);
    }
    if (rc == QK_OK)
        rc = check_inputs_kept(o, err);
    if (rc == QK_OK)
        rc = make_tmp_dir(&j, err);
    if (rc == QK_OK)
        rc = write_all(&j, cfg, res, err);
    if (rc == QK_OK)
        rc = of_dir_install(j.tmp, j.out, o->force, err);
    if (rc != QK_OK && j.tmp[0])
        of_dir_remove_flat(j.tmp, NULL);
    sig_active = 0;
    cJSON_Delete(cfg);
    free(j.t);
    free(j.e);
    free(j.nbytes);
    free(j.shard);
    free(j.buf[0]);
    free(j.buf[1]);
    return rc;
}
