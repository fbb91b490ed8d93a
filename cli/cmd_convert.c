/* cmd_convert.c — `qkit convert MODEL_DIR -o OUT.gguf [--outtype T] [--split-max-size SIZE]
 * [--threads N] [--json] [--quiet]`: a Hugging Face folder to GGUF in one streaming pass. */
#include <cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "../convert/convert.h"
#include "cli.h"

static const char USAGE[] =
    "usage: qkit convert MODEL_DIR -o OUT.gguf [--outtype TYPE] [--split-max-size SIZE |\n"
    "                    --split-max-tensors N | --split-parts N] [--shard I/N] [--threads N]\n"
    "                    [--json] [--quiet]\n"
    "\n"
    "Converts a Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer files) of a\n"
    "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM or Qwen3ForCausalLM model to GGUF,\n"
    "as llama.cpp's convert_hf_to_gguf.py does.\n"
    "  --outtype TYPE        auto (default: keeps bf16 or f16, F32 checkpoints become f16), f32,\n"
    "                        f16, bf16, or a quantization such as q8_0, q4_k_m, q6_k (as if\n"
    "                        converted to f32 and then run through llama-quantize)\n"
    CLI_SPLIT_USAGE
    "  --threads N           quantization threads (default: all)\n"
    "  --json                print one JSON object instead of the summary line\n"
    "  -q, --quiet           print nothing on success\n";

typedef struct {
    const char *dir, *out;
    cv_options o;
    int json, quiet;
    cli_split split;
} args;

static bool is_valued(const char *opt)
{
    static const char *const names[] = {"-o", "--output", "--outtype", "--threads", "-t"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(opt, names[i]))
            return true;
    return false;
}

/* opt is one of is_valued()'s names; v its value (NULL when missing). */
static int parse_valued(args *a, const char *opt, const char *v)
{
    long n;
    if (!v)
        return cli_usage_error("convert", "%s needs a value", opt);
    if (!strcmp(opt, "-o") || !strcmp(opt, "--output")) {
        a->out = v;
    } else if (!strcmp(opt, "--outtype")) {
        a->o.outtype = v;
    } else if (!strcmp(opt, "--threads") || !strcmp(opt, "-t")) {
        if (cli_parse_int(v, 1, 1024, &n))
            return cli_usage_error("convert", "%s needs an integer in [1, 1024]", opt);
        a->o.n_threads = cli_threads((int)n);
    }
    return CLI_OK;
}

/* CLI_OK, or the exit code after printing why; *help set for --help. */
static int parse_args(int argc, char **argv, args *a, int *help)
{
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            *help = 1;
            return CLI_OK;
        }
        if (!strcmp(s, "--json") || !strcmp(s, "--quiet") || !strcmp(s, "-q")) {
            *(!strcmp(s, "--json") ? &a->json : &a->quiet) = 1;
            continue;
        }
        int sr = cli_parse_split("convert", argc, argv, &i, &a->split, 0);
        if (sr < 0)
            return CLI_USAGE;
        if (sr > 0)
            continue;
        if (s[0] == '-' && s[1]) {
            if (!is_valued(s))
                return cli_usage_error("convert", "unknown option '%s' (see qkit convert --help)", s);
            int rc = parse_valued(a, s, i + 1 < argc ? argv[i + 1] : NULL);
            if (rc)
                return rc;
            i++;
            continue;
        }
        if (a->dir)
            return cli_usage_error("convert", "unexpected argument '%s' (see qkit convert --help)", s);
        a->dir = s;
    }
    if (!a->dir || !a->out)
        return cli_usage_error("convert", "%s (see qkit convert --help)",
                               a->dir ? "-o OUT.gguf is required" : "MODEL_DIR is required");
    a->o.split_max_bytes = a->split.max_bytes;
    a->o.split_max_tensors = a->split.max_tensors;
    a->o.split_parts = a->split.parts;
    a->o.shard_index = a->split.shard_index;
    a->o.shard_count = a->split.shard_count;
    return CLI_OK;
}

typedef struct {
    cli_progress bar;
} ui;

static void on_progress(void *user, size_t done, size_t total, uint64_t bytes_in, uint64_t bytes_out)
{
    ui *u = user;
    (void)total;
    (void)bytes_out;
    cli_progress_update(&u->bar, (int64_t)done, (double)bytes_in);
}

static void on_warn(void *user, const char *msg)
{
    (void)user;
    cli_error_line("qkit convert: warning: ", msg);
}

static int print_json(const args *a, const cv_plan *p, const cv_result *r, double seconds)
{
    const ca_config *c = cv_plan_config(p);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "output", a->out);
    cJSON_AddNumberToObject(o, "parts", r->n_parts);
    cJSON_AddNumberToObject(o, "parts_written", r->n_parts_written);
    if (r->split_id[0])
        cJSON_AddStringToObject(o, "split_id", r->split_id);
    if (a->split.shard_count) {
        cJSON *sh = cJSON_AddObjectToObject(o, "shard");
        cJSON_AddNumberToObject(sh, "index", a->split.shard_index);
        cJSON_AddNumberToObject(sh, "count", a->split.shard_count);
    }
    cJSON_AddStringToObject(o, "hf_architecture", c->hf_arch);
    cJSON_AddStringToObject(o, "architecture", c->gguf_arch);
    cJSON_AddStringToObject(o, "outtype", cv_plan_outtype(p));
    cJSON_AddNumberToObject(o, "file_type", cv_plan_file_type(p));
    cJSON_AddNumberToObject(o, "tensors", (double)r->n_tensors);
    cJSON_AddNumberToObject(o, "params", (double)cv_plan_n_params(p));
    cJSON_AddNumberToObject(o, "bytes_in", (double)r->in_bytes);
    cJSON_AddNumberToObject(o, "bytes_out", (double)r->out_bytes);
    cJSON_AddNumberToObject(o, "fallbacks", (double)cv_plan_n_fallback(p));
    cJSON_AddNumberToObject(o, "seconds", seconds);
    cJSON_AddNumberToObject(o, "gb_per_s", seconds > 0 ? (double)r->in_bytes / seconds / 1e9 : 0);
    return cli_json_print(o, 0);
}

static void print_summary(const args *a, const cv_plan *p, const cv_result *r, double seconds)
{
    printf("%s: %zu tensors, %s, %.3f GB read, %.3f GB written in %.2f s (%.2f GB/s)%s\n", a->out,
           r->n_tensors, cv_plan_outtype(p), (double)r->in_bytes / 1e9, (double)r->out_bytes / 1e9,
           seconds, seconds > 0 ? (double)r->in_bytes / seconds / 1e9 : 0.0,
           r->n_parts > 1 ? " (split)" : "");
    if (a->split.shard_count)
        printf("shard %u of %u: wrote %u of the %u parts (split.id %s); sizes and times are the "
               "whole model's\n", a->split.shard_index, a->split.shard_count, r->n_parts_written,
               r->n_parts, r->split_id);
}

int cmd_convert(int argc, char **argv)
{
    args a = {0};
    int help = 0;
    cv_options_init(&a.o);
    int rc = parse_args(argc, argv, &a, &help);
    if (rc || help) {
        if (help)
            fputs(USAGE, stdout);
        return rc;
    }
    ui u;
    a.o.progress = on_progress;
    a.o.warn = on_warn;
    a.o.user = &u;
    qk_err err = {{0}};
    double t0 = cli_now();
    cv_plan *p;
    if ((rc = cv_plan_create(a.dir, &a.o, &p, &err)))
        return cli_fail(rc, &err);
    cli_progress_start(&u.bar, "convert", (int64_t)cv_plan_n_tensors(p), a.quiet || a.json);
    cv_result r;
    rc = cv_plan_write(p, a.out, &a.o, &r, &err);
    cli_progress_end(&u.bar);
    int out = CLI_OK;
    if (!rc && a.json)
        out = print_json(&a, p, &r, cli_now() - t0);
    else if (!rc && !a.quiet)
        print_summary(&a, p, &r, cli_now() - t0);
    cv_plan_free(p);
    return rc ? cli_fail(rc, &err) : out;
}
