/* cmd_awq.c — `qkit awq MODEL -f CALIB -o OUT --format awq|ct|gguf:TYPE …`: activation-aware
 * weight quantization on CPU (convert/awq_export.h). */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../convert/awq_export.h"
#include "../convert/mix.h"
#include "cli.h"

static const char USAGE[] =
    "usage: qkit awq MODEL -f CALIB_TEXT -o OUT --format awq|ct|gguf:TYPE [--bits 4]\n"
    "                [--group-size 128] [--samples N] [--seq-len L] [--grid 20] [--no-clip]\n"
    "                [--no-duo] [--no-gptq] [--rtn] [--loss block|output] [--imatrix F]\n"
    "                [--threads N] [--json] [-q]\n"
    "  MODEL: a Hugging Face folder, or (gguf:TYPE only) a GGUF F32/F16/BF16. awq: AutoAWQ's GEMM\n"
    "  folder; ct: compressed-tensors pack-quantized (W4A16 asymmetric); gguf:TYPE: any quantize\n"
    "  type or mix (Q4_K_M, Q4_0 ...), searched with that type's own quantizer. --rtn writes plain\n"
    "  round-to-nearest (no scales, no clipping): the baseline. awq and ct round with GPTQ's error\n"
    "  feedback after the scales and clipping; --no-gptq rounds to nearest as AutoAWQ does.\n";

typedef struct {
    aw_params p;
    int json, quiet;
} awq_args;

static int parse_int_opt(const char *f, const char *v, long lo, long hi, int *out)
{
    long n;
    if (cli_parse_int(v, lo, hi, &n))
        return cli_usage_error("awq", "%s needs a whole number in [%ld, %ld], got '%s'", f, lo, hi, v);
    *out = (int)n;
    return 0;
}

static int parse_args(int argc, char **argv, awq_args *a)
{
    memset(a, 0, sizeof *a);
    a->p.bits = 4;
    a->p.group = 128;
    a->p.grid = 20;
    a->p.clip = 1;
    a->p.duo = 1;
    a->p.gptq = 1;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(USAGE, stdout);
            return -1;
        }
        if (!strcmp(f, "--json") || !strcmp(f, "-q") || !strcmp(f, "--quiet") || !strcmp(f, "--no-clip") ||
            !strcmp(f, "--no-duo") || !strcmp(f, "--no-gptq") || !strcmp(f, "--rtn")) {
            if (!strcmp(f, "--json")) a->json = 1;
            else if (!strcmp(f, "--no-clip")) a->p.clip = 0;
            else if (!strcmp(f, "--no-duo")) a->p.duo = 0;
            else if (!strcmp(f, "--no-gptq")) a->p.gptq = 0;
            else if (!strcmp(f, "--rtn")) a->p.rtn = 1;
            else a->quiet = 1;
            continue;
        }
        const int valued = f[0] == '-' && f[1];
        if (valued && i + 1 >= argc)
            return cli_usage_error("awq", "%s needs a value", f);
        const char *v = valued ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(f, "-f") || !strcmp(f, "--file")) a->p.calib = v;
        else if (!strcmp(f, "-o") || !strcmp(f, "--output")) a->p.out = v;
        else if (!strcmp(f, "--imatrix")) a->p.imatrix = v;
        else if (!strcmp(f, "--bits")) rc = parse_int_opt(f, v, 4, 4, &a->p.bits);
        else if (!strcmp(f, "--group-size")) rc = parse_int_opt(f, v, 8, 1 << 16, &a->p.group);
        else if (!strcmp(f, "--samples")) rc = parse_int_opt(f, v, 1, 1 << 20, &a->p.samples);
        else if (!strcmp(f, "--seq-len")) rc = parse_int_opt(f, v, 8, 1 << 20, &a->p.seq_len);
        else if (!strcmp(f, "--grid")) rc = parse_int_opt(f, v, 1, 1000, &a->p.grid);
        else if (!strcmp(f, "--threads") || !strcmp(f, "-t")) rc = parse_int_opt(f, v, 1, 1024, &a->p.n_threads);
        else if (!strcmp(f, "--loss")) {
            if (strcmp(v, "block") && strcmp(v, "output"))
                return cli_usage_error("awq", "--loss needs block or output, got '%s'", v);
            a->p.output_loss = !strcmp(v, "output");
        }
        else if (!strcmp(f, "--format")) {
            if (!strcmp(v, "awq"))
                a->p.format = AW_AWQ;
            else if (!strcmp(v, "ct"))
                a->p.format = AW_CT;
            else if (!strncasecmp(v, "gguf:", 5) && mx_mix_from_name(v + 5)) {
                a->p.format = AW_GGUF;
                a->p.ftype = mx_mix_from_name(v + 5)->ftype;
            } else
                return cli_usage_error("awq", "--format needs awq, ct or gguf:TYPE with a quantize type "
                                       "(gguf:Q4_K_M), got '%s'", v);
        } else if (valued)
            return cli_usage_error("awq", "unknown option '%s'\n%s", f, USAGE);
        else if (a->p.model)
            return cli_usage_error("awq", "unexpected argument '%s'", f);
        else
            a->p.model = f;
        if (rc)
            return rc;
        if (valued)
            i++;
    }
    if (!a->p.model || !a->p.calib || !a->p.out || !a->p.format)
        return cli_usage_error("awq", "MODEL, -f CALIB_TEXT, -o OUT and --format are required\n%s", USAGE);
    if (a->p.imatrix && a->p.format != AW_GGUF)
        return cli_usage_error("awq", "--imatrix goes with --format gguf:TYPE");
    return 0;
}

static void on_block(void *user, int block, int n)
{
    cli_progress *p = user;
    p->total = n;
    cli_progress_update(p, block, 0);
}

int cmd_awq(int argc, char **argv)
{
    awq_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    a.p.n_threads = cli_threads(a.p.n_threads);
    cli_progress prog;
    cli_progress_start(&prog, "awq blocks", 1, a.json || a.quiet);
    a.p.progress = on_block;
    a.p.user = &prog;
    aw_result r;
    qk_err err = {{0}};
    rc = aw_run(&a.p, &r, &err);
    cli_progress_end(&prog);
    if (rc)
        return cli_fail(rc, &err);
    if (a.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", a.p.model);
        cJSON_AddStringToObject(o, "output", a.p.out);
        cJSON_AddNumberToObject(o, "samples", r.samples);
        cJSON_AddNumberToObject(o, "seq_len", r.seq_len);
        cJSON_AddNumberToObject(o, "blocks", r.n_blocks);
        cJSON_AddNumberToObject(o, "groups", (double)r.n_groups);
        cli_json_number(o, "mean_alpha", r.mean_alpha);
        cli_json_number(o, "seconds_search", r.seconds_search);
        cli_json_number(o, "seconds", r.seconds_total);
        cJSON_AddNumberToObject(o, "bytes", (double)r.out_bytes);
        return cli_json_print(o, 1);
    }
    if (!a.quiet)
        printf("awq: %d sequences of %d tokens, %d blocks, %zu groups (mean alpha %.2f), search %.1f s, "
               "total %.1f s -> %s\n", r.samples, r.seq_len, r.n_blocks, r.n_groups, r.mean_alpha,
               r.seconds_search, r.seconds_total, a.p.out);
    return CLI_OK;
}
