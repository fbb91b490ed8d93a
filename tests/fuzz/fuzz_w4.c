/* fuzz_w4.c — the readers of 4-bit packed checkpoints (formats/awq.h): AutoAWQ GEMM folders
 * (qweight, qzeros, scales) and compressed-tensors pack-quantized ones (weight_packed,
 * weight_zero_point, weight_scale, weight_shape). The first input byte picks one of four fixed
 * folders (modulo 4: AWQ groups of 32, compressed-tensors asymmetric groups of 32, AWQ one group
 * per row, compressed-tensors symmetric per channel), each a tiny Llama (hidden 64, 1 layer) with
 * its config.json and a SentencePiece tokenizer.model; the rest of the input is written as that
 * folder's model.safetensors. cv_plan_create must refuse it with a one-line message, or
 * plan a model whose every tensor reads back (cv_plan_read_f32) into a buffer of the planned
 * size. The folders live in a private temporary directory, removed at exit. */
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../convert/convert.h"
#include "../../formats/spm_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Far above the fixed configs' largest plan (a few tens of thousands of values): a plan this big
 * read shapes from somewhere else than config.json. */
#define MAX_VALUES ((uint64_t)1 << 22)

#define LLAMA                                                                                      \
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 64, "  \
    "\"intermediate_size\": 40, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, "            \
    "\"num_key_value_heads\": 2, \"vocab_size\": 8, \"max_position_embeddings\": 128, "            \
    "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000, \"tie_word_embeddings\": false, "             \
    "\"bos_token_id\": 1, \"eos_token_id\": 2, \"hidden_act\": \"silu\", \"torch_dtype\": \"float16\", "
#define AWQ(group)                                                                                 \
    LLAMA "\"quantization_config\": {\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": " group \
    ", \"zero_point\": true, \"version\": \"gemm\", \"modules_to_not_convert\": null}}\n"
#define CT(weights)                                                                                \
    LLAMA "\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": "        \
    "\"pack-quantized\", \"ignore\": [\"lm_head\"], \"quantization_status\": \"compressed\", "      \
    "\"config_groups\": {\"group_0\": {\"format\": \"pack-quantized\", \"targets\": [\"Linear\"], " \
    "\"input_activations\": null, \"output_activations\": null, \"weights\": {\"num_bits\": 4, "    \
    "\"type\": \"int\", " weights ", \"dynamic\": false, \"actorder\": null}}}}}\n"

/* The input's first byte modulo 4 picks the folder. Every linear has in = 64 except down_proj
 * (in = 40, not a multiple of 32): with groups of 32 it can only be stored unquantized. */
enum { N_FOLDERS = 4 };
static const char *const CONFIGS[N_FOLDERS] = {
    AWQ("32"),
    CT("\"strategy\": \"group\", \"group_size\": 32, \"symmetric\": false"),
    AWQ("-1"), /* one group per row */
    CT("\"strategy\": \"channel\", \"group_size\": null, \"symmetric\": true"), /* no zero points */
};
static const char *const SUB[N_FOLDERS] = {"awq", "ct", "awq-channel", "ct-sym"};
static const char *const FILES[] = {"config.json", "tokenizer.model", "model.safetensors"};

static char dir[64];

static void cleanup(void)
{
    char p[128];
    for (int s = 0; s < N_FOLDERS; s++) {
        for (size_t i = 0; i < sizeof FILES / sizeof *FILES; i++) {
            snprintf(p, sizeof p, "%s/%s/%s", dir, SUB[s], FILES[i]);
            unlink(p);
        }
        snprintf(p, sizeof p, "%s/%s", dir, SUB[s]);
        rmdir(p);
    }
    rmdir(dir);
}

static void write_file(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(bytes, 1, n, f) != n || fclose(f))
        abort();
}

/* Every folder: config.json and an 8-piece tokenizer.model (vocab_size 8). */
static void setup(void)
{
    static const spm_piece pieces[8] = {
        {"<unk>", 5, 0.0f, SPM_PIECE_UNKNOWN}, {"<s>", 3, 0.0f, SPM_PIECE_CONTROL},
        {"</s>", 4, 0.0f, SPM_PIECE_CONTROL},  {"\xe2\x96\x81", 3, -1.0f, SPM_PIECE_NORMAL},
        {"a", 1, -2.0f, SPM_PIECE_NORMAL},     {"b", 1, -3.0f, SPM_PIECE_NORMAL},
        {"c", 1, -4.0f, SPM_PIECE_NORMAL},     {"\xe2\x96\x81" "a", 4, -2.5f, SPM_PIECE_NORMAL},
    };
    const spm_write_opts so = {.model_type = 1, .vocab_size = 8, .unk_id = 0, .bos_id = 1, .eos_id = 2,
                               .pad_id = -1, .add_dummy_prefix = true, .remove_extra_whitespaces = true,
                               .escape_whitespaces = true};
    char p[128];
    /* the scale conversion's parallel loop takes the default team: one thread keeps an execution
     * at a few milliseconds instead of waking (and spinning) a team per tensor */
    omp_set_num_threads(1);
    snprintf(dir, sizeof dir, "/tmp/qkit-fuzz-w4-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    atexit(cleanup);
    for (int s = 0; s < N_FOLDERS; s++) {
        snprintf(p, sizeof p, "%s/%s", dir, SUB[s]);
        if (mkdir(p, 0700))
            abort();
        snprintf(p, sizeof p, "%s/%s/config.json", dir, SUB[s]);
        write_file(p, CONFIGS[s], strlen(CONFIGS[s]));
        snprintf(p, sizeof p, "%s/%s/tokenizer.model", dir, SUB[s]);
        qk_err err = {{0}};
        if (spm_model_write(p, pieces, 8, &so, &err) != QK_OK)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!dir[0])
        setup();
    const int s = data[0] % N_FOLDERS;
    char folder[96], p[128];
    snprintf(folder, sizeof folder, "%s/%s", dir, SUB[s]);
    snprintf(p, sizeof p, "%s/model.safetensors", folder);
    write_file(p, data + 1, size - 1);

    cv_plan *plan;
    qk_err err = {{0}};
    if (cv_plan_create(folder, NULL, &plan, &err) != QK_OK) {
        if (plan || !err.msg[0] || strchr(err.msg, '\n'))
            __builtin_trap();
        return 0;
    }
    /* Every planned shape comes from config.json: sizes beyond the fixed model are a bug. */
    const size_t n = cv_plan_n_tensors(plan);
    uint64_t total = 0, largest = 0;
    for (size_t i = 0; i < n; i++) {
        const cv_tensor *t = cv_plan_tensor(plan, i);
        if (!t || t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            __builtin_trap();
        uint64_t ne = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (t->ne[d] < 1 || (uint64_t)t->ne[d] > MAX_VALUES)
                __builtin_trap();
            ne *= (uint64_t)t->ne[d];
            if (ne > MAX_VALUES)
                __builtin_trap();
        }
        total += ne;
        largest = ne > largest ? ne : largest;
    }
    if (total > MAX_VALUES)
        __builtin_trap();
    float *buf = malloc((size_t)(largest ? largest : 1) * sizeof *buf);
    if (!buf)
        abort();
    volatile float sink = 0;
    for (size_t i = 0; i < n; i++) {
        const cv_tensor *t = cv_plan_tensor(plan, i);
        uint64_t ne = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            ne *= (uint64_t)t->ne[d];
        cv_plan_read_f32(plan, i, buf, 1);
        for (uint64_t k = 0; k < ne; k++)
            sink += buf[k];
    }
    (void)sink;
    free(buf);
    cv_plan_free(plan);
    return 0;
}
