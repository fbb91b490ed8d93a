/* cmd_synth.c — `qkit synth`: a random-weight HuggingFace checkpoint shaped like a real config. */
#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../convert/synth.h"
#include "../formats/outfile.h"
#include "cli.h"

static const char USAGE[] =
    "usage: qkit synth --config CONFIG.json -o DIR [--tokenizer-from DIR | --tokenizer-gen]\n"
    "                  [--layers N] [--dtype f32|f16|bf16|fp8] [--seed S]\n"
    "                  [--shards N | --max-shard-size SIZE] [--threads N] [--force] [--json] [-q]\n"
    "\n"
    "Writes a HuggingFace folder with the config's architecture and random weights (the same\n"
    "arguments give the same bytes on any machine): config.json, model.safetensors or shards and\n"
    "their index, and the tokenizer files found beside the config or in --tokenizer-from.\n"
    "--tokenizer-gen writes a generated SentencePiece tokenizer instead (tokenizer.model with\n"
    "the config's vocab_size pieces, at least 259: specials, 256 bytes, common English pieces;\n"
    "tokenizer_config.json, special_tokens_map.json) and sets bos/eos_token_id to 1/2.\n"
    "--dtype fp8 writes an FP8 checkpoint as DeepSeek-V3 and Qwen3-FP8 ship them: the blocks'\n"
    "linear weights (attention, MLP, experts) as F8_E4M3, each with a '<name>_scale_inv' F32\n"
    "grid of 128x128 block scales (scale = max|x|/448 of the f32 values), everything else\n"
    "(embeddings, lm_head, norms, biases, routers) bf16; config.json gets quantization_config\n"
    "{quant_method fp8, weight_block_size [128, 128]} and torch_dtype bfloat16.\n"
    "Default dtype bf16, seed 0, one file. SIZE takes K/M/G suffixes (powers of 1000).\n"
    "--json prints the summary as one JSON object; -q prints nothing on success.\n";

/* The temporary folder must not outlive an interrupted run. */
static void on_signal(int sig)
{
    if (of_defer_signal(sig)) /* a split set is being renamed: raised again when it is whole */
        return;
    of_remove_all_temporaries();
    sy_remove_temporaries();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_progress(void *ud, uint64_t done, uint64_t total)
{
    cli_progress *p = ud;
    p->total = (int64_t)total;
    cli_progress_update(p, (int64_t)done, (double)done);
}

static int parse_dtype(const char *s, st_dtype *out)
{
    if (!strcmp(s, "f32") || !strcmp(s, "float32"))
        *out = ST_F32;
    else if (!strcmp(s, "f16") || !strcmp(s, "float16"))
        *out = ST_F16;
    else if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16"))
        *out = ST_BF16;
    else if (!strcmp(s, "fp8") || !strcmp(s, "f8_e4m3"))
        *out = ST_F8_E4M3;
    else
        return -1;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || *s == '-')
        return -1;
    *out = v;
    return 0;
}

typedef struct {
    sy_options o;
    long threads;
    int quiet, json;
} args;

/* One option with its value; returns CLI_OK, or the usage exit code after printing why. */
static int parse_valued(args *a, const char *opt, const char *v)
{
    long n;
    int64_t size;
    if (!strcmp(opt, "--config"))
        a->o.config_path = v;
    else if (!strcmp(opt, "-o") || !strcmp(opt, "--output"))
        a->o.out_dir = v;
    else if (!strcmp(opt, "--tokenizer-from"))
        a->o.tokenizer_dir = v;
    else if (!strcmp(opt, "--layers") && cli_parse_int(v, 1, 65536, &n) == 0)
        a->o.layers = n;
    else if (!strcmp(opt, "--shards") && cli_parse_int(v, 1, SY_MAX_SHARDS, &n) == 0)
        a->o.shards = n;
    else if (!strcmp(opt, "--threads") && cli_parse_int(v, 1, 4096, &n) == 0)
        a->threads = n;
    else if (!strcmp(opt, "--max-shard-size") && (size = cli_parse_size(v)) > 0)
        a->o.max_shard_size = (uint64_t)size;
    else if (!strcmp(opt, "--dtype") && parse_dtype(v, &a->o.dtype) == 0)
        ;
    else if (!strcmp(opt, "--seed") && parse_u64(v, &a->o.seed) == 0)
        ;
    else
        return cli_usage_error("synth", "bad value '%s' for %s", v, opt);
    return CLI_OK;
}

static int is_valued(const char *opt)
{
    static const char *const valued[] = {"--config", "-o", "--output", "--tokenizer-from",
                                         "--layers", "--shards", "--threads", "--max-shard-size",
                                         "--dtype", "--seed"};
    for (size_t i = 0; i < sizeof valued / sizeof valued[0]; i++)
        if (!strcmp(opt, valued[i]))
            return 1;
    return 0;
}

static int parse_args(int argc, char **argv, args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (!strcmp(opt, "--force"))
            a->o.force = 1;
        else if (!strcmp(opt, "--tokenizer-gen"))
            a->o.tokenizer_gen = 1;
        else if (!strcmp(opt, "--quiet") || !strcmp(opt, "-q"))
            a->quiet = 1;
        else if (!strcmp(opt, "--json"))
            a->json = 1;
        else if (!is_valued(opt))
            return cli_usage_error("synth", "unknown option '%s' (see qkit synth --help)", opt);
        else if (i + 1 >= argc)
            return cli_usage_error("synth", "%s needs a value", opt);
        else if (parse_valued(a, opt, argv[++i]) != CLI_OK)
            return CLI_USAGE;
    }
    if (!a->o.config_path || !a->o.out_dir)
        return cli_usage_error("synth", "--config and -o are required (see qkit synth --help)");
    if (a->o.shards && a->o.max_shard_size)
        return cli_usage_error("synth", "--shards and --max-shard-size exclude each other");
    if (a->o.tokenizer_gen && a->o.tokenizer_dir)
        return cli_usage_error("synth", "--tokenizer-gen and --tokenizer-from exclude each other");
    return CLI_OK;
}

int cmd_synth(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(USAGE, stdout);
        return CLI_OK;
    }
    args a = {.o = {.dtype = ST_BF16}};
    int rc = parse_args(argc, argv, &a);
    if (rc != CLI_OK)
        return rc;
    if (a.threads)
        cli_threads((int)a.threads);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    cli_progress prog;
    cli_progress_start(&prog, "synth", 1, a.quiet || a.json);
    a.o.progress = on_progress;
    a.o.progress_ud = &prog;
    qk_err err = {{0}};
    sy_result r;
    double t0 = cli_now();
    rc = sy_synth(&a.o, &r, &err);
    cli_progress_end(&prog);
    if (rc != QK_OK)
        return cli_fail(rc, &err);
    double s = cli_now() - t0;
    const char *dtype = a.o.dtype == ST_F8_E4M3 ? "F8_E4M3 + BF16" : st_dtype_name(a.o.dtype);
    if (!r.n_tokenizer_files && !a.quiet)
        fprintf(stderr, "qkit synth: note: no tokenizer files beside %s (use --tokenizer-from)\n",
                a.o.config_path);
    if (a.json) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "output", a.o.out_dir);
        cJSON_AddStringToObject(d, "architecture", r.arch.arch);
        cJSON_AddNumberToObject(d, "layers", (double)r.arch.n_layers);
        cJSON_AddNumberToObject(d, "tensors", (double)r.n_tensors);
        cJSON_AddNumberToObject(d, "params", (double)r.n_params);
        cJSON_AddStringToObject(d, "dtype", dtype);
        cJSON_AddNumberToObject(d, "files", (double)r.n_files);
        cJSON_AddNumberToObject(d, "bytes", (double)r.n_bytes);
        cJSON_AddNumberToObject(d, "tokenizer_files", r.n_tokenizer_files);
        cli_json_number(d, "seconds", s);
        return cli_json_print(d, 0);
    }
    if (a.quiet)
        return CLI_OK;
    printf("%s: %s, %" PRId64 " layers, %zu tensors, %" PRIu64 " parameters, %s, %" PRId64
           " file%s, %.2f GB, %d tokenizer file%s; %.1f s (%.2f GB/s)\n",
           a.o.out_dir, r.arch.arch, r.arch.n_layers, r.n_tensors, r.n_params, dtype, r.n_files,
           r.n_files == 1 ? "" : "s", (double)r.n_bytes / 1e9,
           r.n_tokenizer_files, r.n_tokenizer_files == 1 ? "" : "s", s,
           s > 0 ? (double)r.n_bytes / 1e9 / s : 0.0);
    return CLI_OK;
}
