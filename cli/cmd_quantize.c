/* cmd_quantize.c — `qkit quantize IN OUT TYPE [THREADS]`: llama-quantize's arguments, a
 * per-tensor report on stdout (table or --json), warnings and progress on stderr. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../convert/eval_model.h"
#include "../convert/quantize.h"
#include "../formats/imatrix.h"
#include "../quant/types.h"
#include "cli.h"

#define MAX_TENSOR_TYPES 256

static const char USAGE[] =
    "usage: qkit quantize [options] IN.gguf OUT.gguf TYPE [THREADS]\n"
    "       qkit quantize [options] IN.gguf OUT.gguf --target-size SIZE|--target-bpw B --calib TEXT\n"
    "  --imatrix FILE                importance matrix (llama-imatrix .dat or GGUF)\n"
    "  --pure                        every quantizable tensor gets TYPE's base type\n"
    "  --output-tensor-type T        ggml type for output.weight (q8_0, q6_K, f16 ...)\n"
    "  --token-embedding-type T      ggml type for token_embd.weight\n"
    "  --tensor-type REGEX=T         type for tensors whose name matches (repeatable, first wins)\n"
    "  --leave-output-tensor         copy output.weight unchanged\n"
    "  --allow-requantize            accept already quantized input tensors\n"
    "  --keep-split                  write the same split parts as the input\n"
    CLI_SPLIT_USAGE
    "  --target-size SIZE            choose each tensor's type so the file is at most SIZE bytes\n"
    "                                (500M, 1.2G; powers of 1000) with the least predicted loss\n"
    "  --target-bpw B                the same for B bits per weight of tensor data\n"
    "  --calib TEXT                  text the sensitivities are measured on (with a target)\n"
    "  --calib-ctx N, --calib-chunks K  its chunks (default 256 tokens, 8 chunks)\n"
    "  --types LIST                  candidate types, comma-separated (default q2_K,q3_K,q4_K,\n"
    "                                q5_K,q6_K,iq4_xs,iq4_nl,q5_0,q8_0,f16)\n"
    "  --sens-cache FILE             keep the measured sensitivities in FILE (JSON); a later run\n"
    "                                with another budget reuses them without an engine pass\n"
    "  --verify TEXT                 afterwards, measure KLD of OUT against IN on TEXT\n"
    "  --json                        print the report as JSON\n"
    "  -q, --quiet                   no report, warnings or progress (errors only; --json still prints)\n";

typedef struct {
    qz_params q;
    const char *tensor_types[MAX_TENSOR_TYPES];
    const char *pos[4];
    int n_pos, json, quiet;
    cli_split split;
    int types[16];
    const char *verify_text;
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

/* --types q4_K,q6_K,...: candidates for a size budget. */
static int parse_types(const char *v, quantize_args *a)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", v);
    size_t n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int t = q_type_from_name(tok);
        const q_type_info_t *ti = q_type_info(t);
        if (t < 0 || !ti || (!ti->is_quantized && t != Q_TYPE_F16 && t != Q_TYPE_BF16 && t != Q_TYPE_F32))
            return cli_usage_error("quantize", "--types: '%s' is not a ggml type qkit quantizes to", tok);
        if (n == sizeof a->types / sizeof a->types[0])
            return cli_usage_error("quantize", "--types: at most %zu types", n);
        a->types[n++] = t;
    }
    if (!n)
        return cli_usage_error("quantize", "--types needs a comma-separated list such as q4_K,q6_K");
    a->q.target_types = a->types;
    a->q.n_target_types = n;
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
                 !strcmp(f, "--token-embedding-type") || !strcmp(f, "--tensor-type") ||
                 !strcmp(f, "--target-size") || !strcmp(f, "--target-bpw") ||
                 !strcmp(f, "--calib") || !strcmp(f, "--calib-ctx") || !strcmp(f, "--calib-chunks") ||
                 !strcmp(f, "--types") || !strcmp(f, "--sens-cache") || !strcmp(f, "--verify");
    if (!valued)
        return 0;
    if (*i + 1 >= argc)
        return cli_usage_error("quantize", "%s needs a value", f), -1;
    const char *v = argv[++*i];
    long n;
    if (!strcmp(f, "--imatrix"))
        a->q.imatrix_path = v;
    else if (!strcmp(f, "--target-size")) {
        int64_t size = cli_parse_size(v);
        if (size <= 0)
            return cli_usage_error("quantize", "--target-size needs a positive size such as 800M"), -1;
        a->q.target_bytes = (uint64_t)size;
    } else if (!strcmp(f, "--target-bpw")) {
        char *end;
        double b = strtod(v, &end);
        if (*end || !(b > 0 && b <= 32))
            return cli_usage_error("quantize", "--target-bpw needs bits per weight in (0, 32], got '%s'", v), -1;
        a->q.target_bpw = b;
    } else if (!strcmp(f, "--calib"))
        a->q.calib_path = v;
    else if (!strcmp(f, "--sens-cache"))
        a->q.sens_cache = v;
    else if (!strcmp(f, "--verify"))
        a->verify_text = v;
    else if (!strcmp(f, "--calib-ctx") || !strcmp(f, "--calib-chunks")) {
        if (cli_parse_int(v, !strcmp(f, "--calib-ctx") ? 8 : 1, 1 << 20, &n))
            return cli_usage_error("quantize", "%s needs a positive whole number, got '%s'", f, v), -1;
        *(!strcmp(f, "--calib-ctx") ? &a->q.calib_ctx : &a->q.calib_chunks) = (int)n;
    } else if (!strcmp(f, "--types"))
        return parse_types(v, a) ? -1 : 1;
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
    const int target = a->q.target_bytes || a->q.target_bpw > 0;
    if (a->q.target_bytes && a->q.target_bpw > 0)
        return cli_usage_error("quantize", "give --target-size or --target-bpw, not both");
    if (target && !a->q.calib_path)
        return cli_usage_error("quantize", "a size target needs --calib TEXT (the sensitivities are "
                               "measured on it)");
    if (!target && (a->q.calib_path || a->q.sens_cache || a->q.target_types))
        return cli_usage_error("quantize", "--calib, --types and --sens-cache go with --target-size "
                               "or --target-bpw");
    if (target && a->n_pos == 2)
        a->pos[a->n_pos++] = "Q4_K_M"; /* names nothing but the preliminary plan */
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
        char pred[48] = "";
        if (t->targeted)
            snprintf(pred, sizeof pred, "kld+%.2e ", t->pred_kld);
        const char *note = t->other_shard ? "other shard" : t->fallback ? "fallback"
                         : t->imatrix == QZ_IMAT_USED ? "imatrix"
                         : t->imatrix == QZ_IMAT_NONE ? "no imatrix" : "";
        printf("%-36s %-18s %-6s -> %-6s %10.3f %10.3f %9s %s%s\n", t->name, shape,
               tname(t->src_type), t->quantized ? tname(t->type) : "(copy)",
               (double)t->src_bytes / 1048576.0, (double)t->bytes / 1048576.0, err, pred, note);
    }
    printf("\n%s: %zu tensors (%zu quantized, %zu fallbacks of %zu, %zu without imatrix), "
           "%llu parameters\n", r->mix_name, r->n, r->n_quantized, r->n_fallback, r->n_checked,
           r->n_no_imatrix, (unsigned long long)r->n_params);
    printf("size: %.2f MiB -> %.2f MiB, %.3f bits per weight\n", (double)r->src_bytes / 1048576.0,
           (double)r->out_bytes / 1048576.0, r->bpw);
    printf("time: %.2f s, %.1f MB/s, %d threads, %u part(s) written\n", r->seconds, r->mb_per_s,
           r->n_threads, r->n_parts_written);
    if (r->target)
        printf("size budget: %llu bytes allowed, predicted mean KLD %.6f; %d engine passes%s "
               "(sensitivities %.2f s, errors %.2f s)\n", (unsigned long long)r->target_limit,
               r->pred_kld, r->engine_passes, r->cache_hit ? " (sensitivity cache)" : "",
               r->seconds_sens, r->seconds_errors);
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
    if (t->targeted) {
        cli_json_number(o, "sensitivity", t->sens);
        cli_json_number(o, "predicted_kld", t->pred_kld);
    }
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

static int print_json(const qz_params *q, const qz_report *r, const eng_kld_summary *v,
                      const char *vtext)
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
    if (r->target) {
        cJSON *tg = cJSON_AddObjectToObject(o, "target");
        cJSON_AddNumberToObject(tg, "limit_bytes", (double)r->target_limit);
        cli_json_number(tg, "predicted_kld", r->pred_kld);
        cJSON_AddNumberToObject(tg, "engine_passes", r->engine_passes);
        cJSON_AddBoolToObject(tg, "cache_hit", r->cache_hit);
        cli_json_number(tg, "seconds_sensitivity", r->seconds_sens);
        cli_json_number(tg, "seconds_errors", r->seconds_errors);
    } else {
        cJSON_AddNullToObject(o, "target");
    }
    if (v) {
        cJSON *vo = cJSON_AddObjectToObject(o, "verify");
        cJSON_AddStringToObject(vo, "text", vtext);
        cli_json_number(vo, "kld_mean", v->kld_mean);
        cli_json_number(vo, "kld_p99", v->kld_p99);
        cli_json_number(vo, "top1", v->top1);
        cli_json_number(vo, "ppl_ratio", v->ppl_ratio);
    }
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
    eng_kld_summary vs;
    if (a.verify_text) {
        const char *cand = a.q.out_path;
        char first[4096];
        if (r->n_parts_out > 1) { /* a split output is opened by its first part */
            size_t len = strlen(cand);
            snprintf(first, sizeof first, "%.*s", (int)(len > 5 && !strcmp(cand + len - 5, ".gguf") ? len - 5 : len), cand);
            char *pfx = strdup(first);
            gguf_split_path(first, sizeof first, pfx ? pfx : "", 0, r->n_parts_out);
            free(pfx);
            cand = first;
        }
        rc = cv_verify_models(a.q.in_path, &cand, 1, a.verify_text, a.q.calib_ctx > 0 ? a.q.calib_ctx : 256,
                              0, &vs, NULL, NULL, &err);
        if (rc) {
            qz_report_free(r);
            return cli_fail(rc, &err);
        }
    }
    rc = a.json ? print_json(&a.q, r, a.verify_text ? &vs : NULL, a.verify_text)
       : a.quiet ? CLI_OK : (print_table(r), CLI_OK);
    if (a.verify_text && !a.json && !a.quiet)
        printf("verify on %s: mean KLD %.6f (p99 %.6f), same top token %.2f %%, PPL ratio %.4f\n",
               a.verify_text, vs.kld_mean, vs.kld_p99, vs.top1, vs.ppl_ratio);
    qz_report_free(r);
    return rc;
}
