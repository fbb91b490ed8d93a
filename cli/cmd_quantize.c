/* cmd_quantize.c — `qkit quantize IN OUT TYPE [THREADS]`: llama-quantize's arguments, a
 * per-tensor report on stdout (table or --json), warnings and progress on stderr. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../convert/quantize.h"
#include "../formats/imatrix.h"
#include "../quant/types.h"
#include "cli.h"

#define MAX_TENSOR_TYPES 256

static const char USAGE[] =
    "usage: qkit quantize [options] IN.gguf OUT.gguf TYPE [THREADS]\n"
    "  --imatrix FILE                importance matrix (llama-imatrix .dat or GGUF)\n"
    "  --pure                        every quantizable tensor gets TYPE's base type\n"
    "  --output-tensor-type T        ggml type for output.weight (q8_0, q6_K, f16 ...)\n"
    "  --token-embedding-type T      ggml type for token_embd.weight\n"
    "  --tensor-type REGEX=T         type for tensors whose name matches (repeatable, first wins)\n"
    "  --leave-output-tensor         copy output.weight unchanged\n"
    "  --allow-requantize            accept already quantized input tensors\n"
    "  --keep-split                  write the same split parts as the input\n"
    CLI_SPLIT_USAGE
    "  --json                        print the report as JSON\n"
    "  -q, --quiet                   no report, warnings or progress (errors only; --json still prints)\n";

typedef struct {
    qz_params q;
    const char *tensor_types[MAX_TENSOR_TYPES];
    const char *pos[4];
    int n_pos, json, quiet;
    cli_split split;
} quantize_args;

static void print_types(FILE *f)
{
    size_t n;
    const mx_mix *m = mx_mix_list(&n);
    fprintf(f, "\nTYPE (case-insensitive; Q3_K, Q4_K, Q5_K are aliases of the _M mixes):\n");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "  %2d  or  %-7s : %s\n", m[i].ftype, m[i].name, m[i].desc);
}

static int ggml_type_arg(const char *flag, const char *v, int *out)
{
    int t = q_type_from_name(v);
    if (t < 0)
        return cli_usage_error("quantize", "%s: unknown ggml type '%s'", flag, v);
    *out = t;
    return 0;
}

/* 1: consumed (with its value), 0: not an option, -1: usage error printed. */
static int parse_option(int argc, char **argv, int *i, quantize_args *a)
{
    const char *f = argv[*i];
    mx_options *o = &a->q.mix;
    int *flag = !strcmp(f, "--pure") ? &o->pure : !strcmp(f, "--leave-output-tensor") ? &o->leave_output
              : !strcmp(f, "--allow-requantize") ? &a->q.allow_requantize
              : !strcmp(f, "--keep-split") ? &a->q.keep_split : !strcmp(f, "--json") ? &a->json
              : !strcmp(f, "-q") || !strcmp(f, "--quiet") ? &a->quiet : NULL;
    if (flag)
        return *flag = 1;
    int sr = cli_parse_split("quantize", argc, argv, i, &a->split, 0);
    if (sr)
        return sr;
    int valued = !strcmp(f, "--imatrix") || !strcmp(f, "--output-tensor-type") ||
                 !strcmp(f, "--token-embedding-type") || !strcmp(f, "--tensor-type");
    if (!valued)
        return 0;
    if (*i + 1 >= argc)
        return cli_usage_error("quantize", "%s needs a value", f), -1;
    const char *v = argv[++*i];
    if (!strcmp(f, "--imatrix"))
        a->q.imatrix_path = v;
    else if (!strcmp(f, "--output-tensor-type"))
        return ggml_type_arg(f, v, &o->output_type) ? -1 : 1;
    else if (!strcmp(f, "--token-embedding-type"))
        return ggml_type_arg(f, v, &o->token_embd_type) ? -1 : 1;
    else {
        qk_err err = {{0}};
        if (mx_tensor_type_check(v, &err))
            return cli_usage_error("quantize", "%s", err.msg), -1;
        if (o->n_tensor_types == MAX_TENSOR_TYPES)
            return cli_usage_error("quantize", "more than %d --tensor-type options", MAX_TENSOR_TYPES), -1;
        a->tensor_types[o->n_tensor_types++] = v;
    }
    return 1;
}

static int parse_positionals(quantize_args *a)
{
    if (a->n_pos < 3)
        return cli_usage_error("quantize", "expected IN OUT TYPE [THREADS]\n%s", USAGE);
    const mx_mix *mix = mx_mix_from_name(a->pos[2]);
    if (!mix) {
        cli_usage_error("quantize", "unknown quantization type '%s'", a->pos[2]);
        print_types(stderr);
        return CLI_USAGE;
    }
    const cli_split *sp = &a->split;
    if (a->q.keep_split && (sp->max_bytes || sp->max_tensors || sp->parts))
        return cli_usage_error("quantize", "--keep-split takes the input's parts; it cannot be "
                               "combined with --split-max-size, --split-max-tensors or --split-parts");
    a->q.split_max_bytes = sp->max_bytes;
    a->q.split_max_tensors = sp->max_tensors;
    a->q.split_parts = sp->parts;
    a->q.shard_index = sp->shard_index;
    a->q.shard_count = sp->shard_count;
    a->q.in_path = a->pos[0];
    a->q.out_path = a->pos[1];
    a->q.ftype = mix->ftype;
    long th = 0;
    if (a->n_pos == 4 && cli_parse_int(a->pos[3], 1, 4096, &th))
        return cli_usage_error("quantize", "THREADS must be a number from 1 to 4096, got '%s'",
                               a->pos[3]);
    a->q.n_threads = th ? cli_threads((int)th) : 0; /* OUT naming IN is refused by qz_quantize */
    return 0;
}

static int parse_args(int argc, char **argv, quantize_args *a)
{
    qz_params_init(&a->q);
    a->q.mix.tensor_types = a->tensor_types;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(USAGE, stdout);
            print_types(stdout);
            exit(CLI_OK);
        }
        int r = parse_option(argc, argv, &i, a);
        if (r < 0)
            return CLI_USAGE;
        if (r > 0)
            continue;
        if (argv[i][0] == '-' && argv[i][1])
            return cli_usage_error("quantize", "unknown option '%s'\n%s", argv[i], USAGE);
        if (a->n_pos == 4)
            return cli_usage_error("quantize", "too many arguments ('%s')\n%s", argv[i], USAGE);
        a->pos[a->n_pos++] = argv[i];
    }
    return parse_positionals(a);
}

/* ---- output ------------------------------------------------------------------------------- */

static void on_warning(void *user, const char *msg)
{
    (void)user;
    cli_error_line("qkit quantize: warning: ", msg);
}

static void on_progress(void *user, size_t done, size_t total, uint64_t bytes)
{
    cli_progress *p = user;
    p->total = total ? (int64_t)total : 1;
    cli_progress_update(p, (int64_t)done, (double)bytes);
}

static const char *tname(int type)
{
    const q_type_info_t *ti = q_type_info(type);
    return ti ? ti->name : "?";
}

static void shape_str(const qz_tensor_report *t, char *buf, size_t n)
{
    int len = snprintf(buf, n, "%lld", (long long)t->ne[0]);
    for (uint32_t d = 1; d < t->n_dims && len > 0 && (size_t)len < n; d++)
        len += snprintf(buf + len, n - (size_t)len, " x %lld", (long long)t->ne[d]);
}

static void print_table(const qz_report *r)
{
    printf("%-36s %-18s %-6s    %-6s %10s %10s %9s %s\n", "tensor", "shape", "from", "to",
           "MiB in", "MiB out", "rel.RMSE", "note");
    for (size_t k = 0; k < r->n; k++) {
        const qz_tensor_report *t = &r->t[k];
        char shape[64], err[32] = "-";
        shape_str(t, shape, sizeof shape);
        if (t->quantized && !t->other_shard)
            snprintf(err, sizeof err, "%.5f", t->rel_rmse);
        const char *note = t->other_shard ? "other shard" : t->fallback ? "fallback"
                         : t->imatrix == QZ_IMAT_USED ? "imatrix"
                         : t->imatrix == QZ_IMAT_NONE ? "no imatrix" : "";
        printf("%-36s %-18s %-6s -> %-6s %10.3f %10.3f %9s %s\n", t->name, shape,
               tname(t->src_type), t->quantized ? tname(t->type) : "(copy)",
               (double)t->src_bytes / 1048576.0, (double)t->bytes / 1048576.0, err, note);
    }
    printf("\n%s: %zu tensors (%zu quantized, %zu fallbacks of %zu, %zu without imatrix), "
           "%llu parameters\n", r->mix_name, r->n, r->n_quantized, r->n_fallback, r->n_checked,
           r->n_no_imatrix, (unsigned long long)r->n_params);
    printf("size: %.2f MiB -> %.2f MiB, %.3f bits per weight\n", (double)r->src_bytes / 1048576.0,
           (double)r->out_bytes / 1048576.0, r->bpw);
    printf("time: %.2f s, %.1f MB/s, %d threads, %u part(s) written\n", r->seconds, r->mb_per_s,
           r->n_threads, r->n_parts_written);
    if (r->shard_count)
        printf("shard %u of %u: %u of the %u parts (split.id %s); the sizes and figures above are "
               "the whole model's, the errors only this shard's tensors'\n", r->shard_index,
               r->shard_count, r->n_parts_written, r->n_parts_out, r->split_id);
}

static cJSON *tensor_json(const qz_tensor_report *t)
{
    cJSON *o = cJSON_CreateObject(), *shape = cJSON_AddArrayToObject(o, "shape");
    cJSON_AddStringToObject(o, "name", t->name);
    for (uint32_t d = 0; d < t->n_dims; d++)
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->ne[d]));
    cJSON_AddStringToObject(o, "src_type", tname(t->src_type));
    cJSON_AddStringToObject(o, "type", tname(t->type));
    cJSON_AddNumberToObject(o, "src_bytes", (double)t->src_bytes);
    cJSON_AddNumberToObject(o, "bytes", (double)t->bytes);
    cJSON_AddBoolToObject(o, "quantized", t->quantized);
    cJSON_AddBoolToObject(o, "fallback", t->fallback);
    if (t->other_shard)
        cJSON_AddBoolToObject(o, "other_shard", 1);
    if (t->imatrix == QZ_IMAT_NA)
        cJSON_AddNullToObject(o, "imatrix");
    else
        cJSON_AddStringToObject(o, "imatrix", t->imatrix == QZ_IMAT_USED ? "used" : "missing");
    if (t->quantized && isfinite(t->rel_rmse))
        cJSON_AddNumberToObject(o, "rel_rmse", t->rel_rmse);
    else
        cJSON_AddNullToObject(o, "rel_rmse");
    return o;
}

static cJSON *totals_json(const qz_report *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "tensors", (double)r->n);
    cJSON_AddNumberToObject(o, "quantized", (double)r->n_quantized);
    cJSON_AddNumberToObject(o, "fallbacks", (double)r->n_fallback);
    cJSON_AddNumberToObject(o, "checked", (double)r->n_checked);
    cJSON_AddNumberToObject(o, "without_imatrix", (double)r->n_no_imatrix);
    cJSON_AddNumberToObject(o, "params", (double)r->n_params);
    cJSON_AddNumberToObject(o, "src_bytes", (double)r->src_bytes);
    cJSON_AddNumberToObject(o, "bytes", (double)r->out_bytes);
    cJSON_AddNumberToObject(o, "bpw", r->bpw);
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    cJSON_AddNumberToObject(o, "mb_per_s", r->mb_per_s);
    cJSON_AddNumberToObject(o, "parts_in", r->n_parts_in);
    cJSON_AddNumberToObject(o, "parts_out", r->n_parts_out);
    cJSON_AddNumberToObject(o, "parts_written", r->n_parts_written);
    if (r->split_id[0])
        cJSON_AddStringToObject(o, "split_id", r->split_id);
    if (r->shard_count) {
        cJSON *sh = cJSON_AddObjectToObject(o, "shard");
        cJSON_AddNumberToObject(sh, "index", r->shard_index);
        cJSON_AddNumberToObject(sh, "count", r->shard_count);
    }
    return o;
}

static int print_json(const qz_params *q, const qz_report *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "input", q->in_path);
    cJSON_AddStringToObject(o, "output", q->out_path);
    cJSON_AddStringToObject(o, "type", r->mix_name);
    cJSON_AddNumberToObject(o, "ftype", r->ftype);
    cJSON_AddNumberToObject(o, "threads", r->n_threads);
    if (r->imatrix_format) {
        cJSON *im = cJSON_AddObjectToObject(o, "imatrix");
        cJSON_AddStringToObject(im, "path", q->imatrix_path);
        cJSON_AddStringToObject(im, "format", r->imatrix_format == IMX_GGUF ? "gguf" : "legacy");
        cJSON_AddNumberToObject(im, "entries", (double)r->imatrix_entries);
        cJSON_AddNumberToObject(im, "chunks", (double)r->imatrix_chunks);
    } else {
        cJSON_AddNullToObject(o, "imatrix");
    }
    cJSON *ts = cJSON_AddArrayToObject(o, "tensors");
    for (size_t k = 0; k < r->n; k++)
        cJSON_AddItemToArray(ts, tensor_json(&r->t[k]));
    cJSON_AddItemToObject(o, "totals", totals_json(r));
    cJSON *ws = cJSON_AddArrayToObject(o, "warnings");
    for (size_t k = 0; k < r->n_warnings; k++)
        cJSON_AddItemToArray(ws, cJSON_CreateString(r->warnings[k]));
    return cli_json_print(o, 1);
}

int cmd_quantize(int argc, char **argv)
{
    quantize_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc;
    cli_progress prog;
    cli_progress_start(&prog, "quantize", 1, a.json || a.quiet);
    a.q.warn = a.quiet ? NULL : on_warning; /* they stay in the report */
    a.q.progress = on_progress;
    a.q.user = &prog;
    qz_report *r = NULL;
    qk_err err = {{0}};
    int out_failed = 0;
    rc = qz_quantize(&a.q, &r, &out_failed, &err);
    cli_progress_end(&prog);
    if (rc) {
        cli_fail(rc, &err);
        /* Anything wrong with the inputs is a usage problem (2); output failures and memory
         * exhaustion are I/O (3). */
        return out_failed || rc == QK_ENOMEM ? CLI_IO : CLI_USAGE;
    }
    rc = a.json ? print_json(&a.q, r) : a.quiet ? CLI_OK : (print_table(r), CLI_OK);
    qz_report_free(r);
    return rc;
}
