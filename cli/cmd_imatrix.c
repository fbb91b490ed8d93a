/* cmd_imatrix.c — `qkit imatrix MODEL -f TEXT -o OUT …`: llama-imatrix's importance matrix from
 * qkit's engine, merged exactly with partial files (--in-file), with a summary of which matrices
 * see how much activation energy. */
#include <cJSON.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../calib/imatrix.h"
#include "../convert/eval_model.h"
#include "../formats/file.h"
#include "cli.h"

#define MAX_IN_FILES 256

static const char USAGE[] =
    "usage: qkit imatrix MODEL -f TEXT -o OUT [--ctx N] [--chunks K] [--chunk-range FIRST:LAST]\n"
    "                    [--threads N] [--output-format gguf|dat] [--in-file F]... [--process-output]\n"
    "                    [--shard I/N] [--json] [-q]\n"
    "  MODEL is a GGUF file or a Hugging Face folder; chunks are numbered from 0; --in-file adds\n"
    "  partial importance matrices (without -f, the files are only merged). --shard I/N collects\n"
    "  the I-th (0-based) of N equal slices of the chunks (GGUF output); merging the N files with\n"
    "  --in-file gives, byte for byte, the file of one run over all chunks.";

typedef struct {
    cli_eval_opts ev;
    const char *model, *out;
    const char *in[MAX_IN_FILES];
    int n_in;
    int first, last; /* --chunk-range; last -1: through the end */
    int ctx_given, process_output;
    enum imx_format format;
    int format_given;
    cli_split shard;
} imatrix_args;

/* FIRST:LAST or FIRST: (to the end). */
static int parse_range(const char *s, imatrix_args *a)
{
    const char *colon = strchr(s, ':');
    char first[32];
    long f, l = -1;
    if (!colon || (size_t)(colon - s) >= sizeof first)
        return -1;
    memcpy(first, s, (size_t)(colon - s));
    first[colon - s] = 0;
    if (cli_parse_int(first, 0, 1L << 30, &f) || (colon[1] && cli_parse_int(colon + 1, 0, 1L << 30, &l)) ||
        (l >= 0 && l < f))
        return -1;
    a->first = (int)f;
    a->last = (int)l;
    return 0;
}

static int parse_args(int argc, char **argv, imatrix_args *a)
{
    *a = (imatrix_args){.ev = {.n_ctx = 512}, .last = -1, .format = IMX_GGUF};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--ctx") || !strcmp(f, "-c"))
            a->ctx_given = 1;
        int r = cli_parse_eval_opts("imatrix", argc, argv, &i, &a->ev);
        if (r < 0)
            return CLI_USAGE;
        if (r > 0)
            continue;
        r = cli_parse_split("imatrix", argc, argv, &i, &a->shard, 1);
        if (r < 0)
            return CLI_USAGE;
        if (r > 0)
            continue;
        const int has_val = i + 1 < argc;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            puts(USAGE);
            return -1;
        } else if (!strcmp(f, "--process-output")) {
            a->process_output = 1;
        } else if (!strcmp(f, "-o") || !strcmp(f, "--output")) {
            if (!has_val)
                return cli_usage_error("imatrix", "%s needs a path", f);
            a->out = argv[++i];
        } else if (!strcmp(f, "--in-file")) {
            if (!has_val)
                return cli_usage_error("imatrix", "--in-file needs a path");
            if (a->n_in == MAX_IN_FILES)
                return cli_usage_error("imatrix", "at most %d --in-file", MAX_IN_FILES);
            a->in[a->n_in++] = argv[++i];
        } else if (!strcmp(f, "--chunk-range")) {
            if (!has_val || parse_range(argv[i + 1], a))
                return cli_usage_error("imatrix", "--chunk-range needs FIRST:LAST or FIRST: (0-based, "
                                       "LAST included, FIRST <= LAST)");
            i++;
        } else if (!strcmp(f, "--output-format")) {
            const char *v = has_val ? argv[++i] : "";
            if (strcmp(v, "gguf") && strcmp(v, "dat"))
                return cli_usage_error("imatrix", "--output-format needs gguf or dat");
            a->format = !strcmp(v, "dat") ? IMX_LEGACY : IMX_GGUF;
            a->format_given = 1;
        } else if (f[0] == '-') {
            return cli_usage_error("imatrix", "unknown option '%s'\n%s", f, USAGE);
        } else if (a->model) {
            return cli_usage_error("imatrix", "unexpected argument '%s'\n%s", f, USAGE);
        } else {
            a->model = f;
        }
    }
    if (!a->model || !a->out)
        return cli_usage_error("imatrix", "%s", USAGE);
    if (!a->ev.text && a->n_in == 0)
        return cli_usage_error("imatrix", "give a text (-f) or importance matrices to merge (--in-file)");
    if (!a->ev.text && (a->first || a->last >= 0 || a->ev.chunks || a->shard.shard_count))
        return cli_usage_error("imatrix", "--chunks, --chunk-range and --shard need a text (-f)");
    if (a->shard.shard_count && (a->n_in || a->format == IMX_LEGACY))
        return cli_usage_error("imatrix", "a --shard part is written alone and in GGUF (no --in-file, "
                               "no --output-format dat): merge the parts afterwards");
    return 0;
}

typedef struct {
    cli_progress prog;
} run_view;

static void on_chunk(void *user, int chunk, int n_chunks)
{
    run_view *v = user;
    cli_progress_update(&v->prog, chunk + 1, 0);
    (void)n_chunks;
}

typedef struct {
    int chunks;         /* evaluated in this run */
    double seconds;
    eng_ppl_acc ppl;
    size_t skipped;     /* legacy output: entries without data */
    int64_t unrouted, experts;
} run_result;

static int collect(const imatrix_args *a, cv_eval_model *em, eng_imatrix *im, run_result *r, qk_err *err)
{
    tok_ids ids = {0};
    int rc = eng_tokenize_text_file(em->vocab, a->ev.text, &ids, err);
    const eng_imatrix_run_opts ro = {a->ev.n_ctx, a->first, a->last, a->ev.chunks,
                                     tok_vocab_add_bos(em->vocab) ? em->vocab->special[TOK_BOS] : -1};
    int first;
    eng_imatrix_run_opts run = ro;
    if (!rc)
        rc = eng_imatrix_plan(&em->m, ids.n, &ro, &first, &r->chunks, err);
    const cli_split *sh = &a->shard;
    if (!rc && sh->shard_count && (uint32_t)r->chunks < sh->shard_count)
        rc = qk_err_set(err, QK_ERANGE, "%s: --shard %u/%u: the text gives only %d chunk%s of %d "
                        "tokens; use at most %d shards", a->ev.text, sh->shard_index, sh->shard_count,
                        r->chunks, r->chunks == 1 ? "" : "s", a->ev.n_ctx, r->chunks);
    if (!rc && sh->shard_count) {
        int sf, sn;
        eng_imatrix_shard_range(first, r->chunks, sh->shard_index, sh->shard_count, &sf, &sn);
        eng_imatrix_set_shard(im, (imx_shard){sh->shard_index, sh->shard_count, (uint32_t)first,
                                              (uint32_t)r->chunks});
        run.first = sf;
        run.last = sf + sn - 1;
        run.max_chunks = 0;
        r->chunks = sn;
    }
    if (!rc) {
        run_view v;
        cli_progress_start(&v.prog, "imatrix", r->chunks, a->ev.quiet || a->ev.json);
        const double t0 = cli_now();
        rc = eng_imatrix_run(im, ids.ids, ids.n, &run, &r->ppl, on_chunk, &v, err);
        r->seconds = cli_now() - t0;
        cli_progress_end(&v.prog);
    }
    if (!rc)
        rc = eng_imatrix_add_dataset(im, a->ev.text, err);
    tok_ids_free(&ids);
    return rc;
}

static int merge_files(const imatrix_args *a, eng_imatrix *im, qk_err *err)
{
    imx_file *f[MAX_IN_FILES] = {0};
    int rc = QK_OK;
    for (int i = 0; !rc && i < a->n_in; i++)
        rc = imx_load(&f[i], a->in[i], err);
    if (!rc)
        rc = eng_imatrix_check_shards((const imx_file *const *)f, a->in, (size_t)a->n_in, err);
    for (int i = 0; !rc && i < a->n_in; i++) {
        /* legacy files do not record their chunk size: llama-imatrix's default context */
        if (imx_format_of(f[i]) == IMX_LEGACY && !eng_imatrix_chunk_size(im))
            rc = eng_imatrix_set_chunk_size(im, (uint32_t)a->ev.n_ctx, err);
        if (!rc)
            rc = eng_imatrix_add_file(im, f[i], a->in[i], err);
    }
    for (int i = 0; i < a->n_in; i++)
        imx_free(f[i]);
    return rc;
}

static const char *fmt_name(enum imx_format f) { return f == IMX_LEGACY ? "dat" : "gguf"; }

static void print_text(const imatrix_args *a, const eng_imatrix *im, const run_result *r,
                       const eng_imatrix_summary *s, size_t n)
{
    if (a->ev.text) {
        const double tokens = (double)r->chunks * a->ev.n_ctx;
        printf("imatrix: %d chunks of %d tokens (%.0f tokens) in %.2f s, %.1f tokens/s (collecting "
               "%.1f %% of it), PPL %.4f\n", r->chunks, a->ev.n_ctx, tokens, r->seconds,
               r->seconds > 0 ? tokens / r->seconds : 0.0,
               r->seconds > 0 ? 100.0 * eng_imatrix_observer_seconds(im) / r->seconds : 0.0,
               eng_ppl_value(&r->ppl));
    }
    printf("wrote %s (%s): %zu entries, %lld chunks of %u tokens\n", a->out, fmt_name(a->format),
           n - r->skipped, (long long)eng_imatrix_chunk_count(im), eng_imatrix_chunk_size(im));
    if (a->shard.shard_count)
        printf("shard %u of %u: merge all %u parts with --in-file\n", a->shard.shard_index,
               a->shard.shard_count, a->shard.shard_count);
    if (r->experts)
        printf("experts never routed: %lld of %lld (block x expert)\n", (long long)r->unrouted,
               (long long)r->experts);
    printf("\n%-36s %12s %10s %12s %12s %8s\n", "tensor", "cols x mats", "tokens", "mean x^2", "max x^2",
           "50% in");
    for (size_t i = 0; i < n; i++) {
        char shape[32];
        snprintf(shape, sizeof shape, "%lld x %lld", (long long)s[i].n_per_mat, (long long)s[i].n_mat);
        printf("%-36s %12s %10lld %12.5g %12.5g %7.1f%%", s[i].name, shape, (long long)s[i].tokens,
               s[i].mean, s[i].max, 100.0 * s[i].frac50);
        if (s[i].n_unseen)
            printf("  (%lld unseen)", (long long)s[i].n_unseen);
        putchar('\n');
    }
    printf("(mean/max x^2: per column, sum of x^2 / tokens; 50%% in: the fewest columns holding half "
           "of it)\n");
}

static int print_json(const imatrix_args *a, const eng_imatrix *im, const run_result *r,
                      const eng_imatrix_summary *s, size_t n)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", a->model);
    cJSON_AddStringToObject(o, "output", a->out);
    cJSON_AddStringToObject(o, "format", fmt_name(a->format));
    if (a->ev.text)
        cJSON_AddStringToObject(o, "text", a->ev.text);
    else
        cJSON_AddNullToObject(o, "text");
    cJSON *in = cJSON_AddArrayToObject(o, "in_files");
    for (int i = 0; i < a->n_in; i++)
        cJSON_AddItemToArray(in, cJSON_CreateString(a->in[i]));
    const double tokens = (double)r->chunks * a->ev.n_ctx;
    cJSON_AddNumberToObject(o, "n_ctx", eng_imatrix_chunk_size(im));
    cJSON_AddNumberToObject(o, "chunks", r->chunks);
    cJSON_AddNumberToObject(o, "tokens", a->ev.text ? tokens : 0);
    cli_json_number(o, "seconds", r->seconds);
    cli_json_number(o, "tokens_per_second", r->seconds > 0 ? tokens / r->seconds : 0.0);
    cli_json_number(o, "collect_seconds", eng_imatrix_observer_seconds(im));
    if (a->ev.text)
        cli_json_number(o, "ppl", eng_ppl_value(&r->ppl));
    else
        cJSON_AddNullToObject(o, "ppl");
    cJSON_AddNumberToObject(o, "chunk_count", (double)eng_imatrix_chunk_count(im));
    if (a->shard.shard_count) {
        cJSON *sh = cJSON_AddObjectToObject(o, "shard");
        cJSON_AddNumberToObject(sh, "index", a->shard.shard_index);
        cJSON_AddNumberToObject(sh, "count", a->shard.shard_count);
    }
    cJSON_AddNumberToObject(o, "entries", (double)(n - r->skipped));
    cJSON_AddNumberToObject(o, "entries_skipped", (double)r->skipped);
    if (r->experts) {
        cJSON *e = cJSON_AddObjectToObject(o, "experts");
        cJSON_AddNumberToObject(e, "unrouted", (double)r->unrouted);
        cJSON_AddNumberToObject(e, "total", (double)r->experts);
    } else {
        cJSON_AddNullToObject(o, "experts");
    }
    cJSON *ts = cJSON_AddArrayToObject(o, "tensors");
    for (size_t i = 0; i < n; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "name", s[i].name);
        cJSON_AddNumberToObject(t, "n_per_mat", (double)s[i].n_per_mat);
        cJSON_AddNumberToObject(t, "n_mat", (double)s[i].n_mat);
        cJSON_AddNumberToObject(t, "tokens", (double)s[i].tokens);
        cJSON_AddNumberToObject(t, "unseen", (double)s[i].n_unseen);
        cli_json_number(t, "mean", s[i].mean);
        cli_json_number(t, "max", s[i].max);
        cli_json_number(t, "frac50", s[i].frac50);
        cJSON_AddItemToArray(ts, t);
    }
    return cli_json_print(o, 1);
}

int cmd_imatrix(int argc, char **argv)
{
    imatrix_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    if (a.ev.threads)
        omp_set_num_threads(a.ev.threads);
    if (!a.format_given && strlen(a.out) > 4 && !strcmp(a.out + strlen(a.out) - 4, ".dat"))
        fprintf(stderr, "qkit imatrix: warning: writing the GGUF layout to %s (--output-format dat "
                        "writes the legacy one)\n", a.out);
    qk_err err = {{0}};
    /* no input may be the output: the model, the text, a file to merge */
    rc = qk_output_check(a.out, a.model, &err);
    if (!rc && a.ev.text)
        rc = qk_output_check(a.out, a.ev.text, &err);
    for (int i = 0; !rc && i < a.n_in; i++)
        rc = qk_output_check(a.out, a.in[i], &err);
    if (rc)
        return cli_fail(rc, &err);
    cv_eval_model em;
    eng_imatrix *im = NULL;
    eng_imatrix_summary *s = NULL;
    size_t n = 0;
    run_result r = {0};
    if ((rc = cv_eval_open(&em, a.model, &err)))
        return cli_fail(rc, &err);
    const eng_imatrix_opts io = {a.process_output, a.model};
    rc = eng_imatrix_create(&im, &em.m, &io, &err);
    uint64_t mid = 0;
    if (!rc)
        rc = cv_eval_fingerprint(&em, &mid, &err);
    if (!rc) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)mid);
        eng_imatrix_set_model_id(im, hex);
    }
    /* a run fixes the chunk size before the files are checked against it */
    if (!rc && (a.ev.text || a.ctx_given))
        rc = eng_imatrix_set_chunk_size(im, (uint32_t)a.ev.n_ctx, &err);
    if (!rc)
        rc = merge_files(&a, im, &err);
    if (!rc && a.ev.text)
        rc = collect(&a, &em, im, &r, &err);
    if (!rc)
        rc = eng_imatrix_write(im, a.out, a.format, &r.skipped, &err);
    if (!rc)
        rc = eng_imatrix_summarize(im, &s, &n, &err);
    if (!rc) {
        eng_imatrix_unrouted(im, &r.unrouted, &r.experts);
        if (r.unrouted)
            fprintf(stderr, "qkit imatrix: warning: %lld of %lld experts (block x expert) were never "
                            "routed a token: recorded with count 0; quantize gives them uniform "
                            "weights\n", (long long)r.unrouted, (long long)r.experts);
        rc = a.ev.json ? print_json(&a, im, &r, s, n)
           : a.ev.quiet ? CLI_OK : (print_text(&a, im, &r, s, n), CLI_OK);
    } else {
        rc = cli_fail(rc, &err);
    }
    free(s);
    eng_imatrix_free(im);
    cv_eval_close(&em);
    return rc;
}
