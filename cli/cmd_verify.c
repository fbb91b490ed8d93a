/* cmd_verify.c — `qkit verify --ref REF MODEL… -f TEXT …`: one pass over the text, the reference
 * and every candidate on the same tokens; a CI gate on KL divergence, PPL ratio and top-1. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../calib/perplexity.h"
#include "cli.h"
#include "engine_open.h"

#define MAX_CANDS 64

static const char USAGE[] =
    "usage: qkit verify --ref REF.gguf MODEL.gguf... -f TEXT [--ctx N] [--chunks K] [--threads N]\n"
    "                   [--max-kld X] [--max-ppl-ratio R] [--min-top1 P] [--save-logits FILE]\n"
    "                   [--ref-logits FILE] [--json]";

typedef struct {
    cli_eval_opts ev;
    const char *ref, *save, *ref_logits;
    const char *cands[MAX_CANDS];
    int n_cands;
    double max_kld, max_ratio, min_top1; /* NAN: no bound */
} verify_args;

static int parse_double(const char *flag, const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < 0)
        return cli_usage_error("verify", "%s needs a non-negative number, got '%s'", flag, s);
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, verify_args *a)
{
    *a = (verify_args){.ev = {.n_ctx = 512}, .max_kld = NAN, .max_ratio = NAN, .min_top1 = NAN};
    for (int i = 1; i < argc; i++) {
        int r = cli_parse_eval_opts("verify", argc, argv, &i, &a->ev);
        if (r < 0)
            return CLI_USAGE;
        if (r > 0)
            continue;
        const char *f = argv[i];
        const char **str = !strcmp(f, "--ref") ? &a->ref : !strcmp(f, "--save-logits") ? &a->save
                         : !strcmp(f, "--ref-logits") ? &a->ref_logits : NULL;
        double *num = !strcmp(f, "--max-kld") ? &a->max_kld : !strcmp(f, "--max-ppl-ratio") ? &a->max_ratio
                    : !strcmp(f, "--min-top1") ? &a->min_top1 : NULL;
        if ((str || num) && i + 1 >= argc)
            return cli_usage_error("verify", "%s needs a value", f);
        if (str)
            *str = argv[++i];
        else if (num) {
            if (parse_double(f, argv[++i], num))
                return CLI_USAGE;
        } else if (f[0] == '-')
            return cli_usage_error("verify", "unknown option '%s'\n%s", f, USAGE);
        else if (a->n_cands == MAX_CANDS)
            return cli_usage_error("verify", "at most %d candidates", MAX_CANDS);
        else
            a->cands[a->n_cands++] = f;
    }
    if (!a->ev.text || a->n_cands == 0 || (!a->ref && !a->ref_logits))
        return cli_usage_error("verify", "%s", USAGE);
    if (a->ref && a->ref_logits)
        return cli_usage_error("verify", "give --ref or --ref-logits, not both");
    if (a->save && !a->ref)
        return cli_usage_error("verify", "--save-logits needs --ref");
    return 0;
}

/* The first bound a candidate exceeds, or NULL. */
static const char *failed_bound(const verify_args *a, const eng_kld_summary *s, char *buf, size_t n)
{
    if (!isnan(a->max_kld) && !(s->kld_mean <= a->max_kld))
        snprintf(buf, n, "kld_mean %.6f exceeds --max-kld %g", s->kld_mean, a->max_kld);
    else if (!isnan(a->max_ratio) && !(s->ppl_ratio <= a->max_ratio))
        snprintf(buf, n, "ppl_ratio %.6f exceeds --max-ppl-ratio %g", s->ppl_ratio, a->max_ratio);
    else if (!isnan(a->min_top1) && !(s->top1 >= a->min_top1))
        snprintf(buf, n, "top1 %.3f%% is below --min-top1 %g", s->top1, a->min_top1);
    else
        return NULL;
    return buf;
}

static void print_json(const verify_args *a, const eng_ppl_acc *ref, const eng_kld_summary *s,
                       const int *failed)
{
    printf("{\"reference\": {\"model\": \"%s\", \"ppl\": %.6f, \"ppl_stderr\": %.6f},\n \"candidates\": [",
           a->ref ? a->ref : a->ref_logits, eng_ppl_value(ref), eng_ppl_stderr(ref));
    for (int i = 0; i < a->n_cands; i++)
        printf("%s\n  {\"model\": \"%s\", \"ppl\": %.6f, \"ppl_stderr\": %.6f, \"ppl_ratio\": %.6f, "
               "\"kld_mean\": %.6f, \"kld_mean_stderr\": %.6f, \"kld_median\": %.6f, \"kld_p99\": %.6f, "
               "\"kld_max\": %.6f, \"top1\": %.3f, \"top1_stderr\": %.3f, \"rms_dp\": %.3f, "
               "\"tokens\": %zu, \"pass\": %s}",
               i ? "," : "", a->cands[i], s[i].ppl, s[i].ppl_stderr, s[i].ppl_ratio, s[i].kld_mean,
               s[i].kld_mean_stderr, s[i].kld_median, s[i].kld_p99, s[i].kld_max, s[i].top1,
               s[i].top1_stderr, s[i].rms_dp, s[i].count, failed[i] ? "false" : "true");
    printf("]}\n");
}

static void print_table(const verify_args *a, const eng_ppl_acc *ref, const eng_kld_summary *s)
{
    const char *ref_name = a->ref ? a->ref : a->ref_logits;
    int w = (int)strlen(ref_name);
    for (int i = 0; i < a->n_cands; i++)
        w = (int)strlen(a->cands[i]) > w ? (int)strlen(a->cands[i]) : w;
    printf("\n%-*s %20s %9s %9s %9s %9s %9s %8s %7s\n", w, "model", "PPL", "ratio", "KLD mean", "median",
           "p99", "max", "top1 %", "RMS dp%");
    printf("%-*s %10.4f ± %7.4f %9s\n", w, ref_name, eng_ppl_value(ref), eng_ppl_stderr(ref), "(ref)");
    for (int i = 0; i < a->n_cands; i++)
        printf("%-*s %10.4f ± %7.4f %9.5f %9.6f %9.6f %9.6f %9.6f %8.3f %7.3f\n", w, a->cands[i], s[i].ppl,
               s[i].ppl_stderr, s[i].ppl_ratio, s[i].kld_mean, s[i].kld_median, s[i].kld_p99,
               s[i].kld_max, s[i].top1, s[i].rms_dp);
}

static void on_chunk(void *user, int chunk, int n_chunks)
{
    cli_progress_update(user, chunk + 1, 0);
    (void)n_chunks;
}

typedef struct {
    cli_engine_model ref, cands[MAX_CANDS];
    int n_open;
    lg_reader *rl;
    lg_writer *save;
    tok_ids ids;
    eng_kld_acc accs[MAX_CANDS];
} verify_run;

static int open_all(const verify_args *a, verify_run *r, qk_err *err)
{
    int rc = a->ref ? cli_engine_open(&r->ref, a->ref, err) : QK_OK;
    for (; !rc && r->n_open < a->n_cands; r->n_open++)
        rc = cli_engine_open(&r->cands[r->n_open], a->cands[r->n_open], err);
    if (rc)
        return rc;
    const tok_vocab *v = a->ref ? r->ref.vocab : r->cands[0].vocab;
    return cli_tokenize_file(v, a->ev.text, &r->ids, err);
}

/* The saved reference must describe exactly this run. */
static int open_logits(const verify_args *a, verify_run *r, const eng_ppl_opts *po, int n_chunks,
                       int n_vocab, qk_err *err)
{
    lg_header h = {(uint32_t)n_vocab, (uint32_t)po->n_ctx, (uint32_t)(po->n_ctx - 1 - po->n_ctx / 2),
                   (uint32_t)n_chunks};
    if (a->save)
        return lg_writer_open(&r->save, a->save, &h, err);
    if (!a->ref_logits)
        return QK_OK;
    lg_header got;
    int rc = lg_reader_open(&r->rl, a->ref_logits, &got, err);
    if (!rc && (got.n_vocab != h.n_vocab || got.n_ctx != h.n_ctx || got.n_chunks < h.n_chunks))
        rc = qk_err_set(err, QK_EFORMAT,
                        "%s: saved for vocabulary %u, n_ctx %u, %u chunks; this run needs %u, %u, %u",
                        a->ref_logits, got.n_vocab, got.n_ctx, got.n_chunks, h.n_vocab, h.n_ctx, h.n_chunks);
    return rc;
}

static void close_all(verify_run *r, const verify_args *a)
{
    for (int i = 0; i < r->n_open; i++)
        cli_engine_close(&r->cands[i]);
    for (int i = 0; i < a->n_cands; i++)
        eng_kld_free(&r->accs[i]);
    if (a->ref)
        cli_engine_close(&r->ref);
    lg_reader_close(r->rl);
    lg_writer_abort(r->save);
    tok_ids_free(&r->ids);
}

int cmd_verify(int argc, char **argv)
{
    verify_args a;
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        puts(USAGE);
        return CLI_OK;
    }
    if (parse_args(argc, argv, &a))
        return CLI_USAGE;
    if (a.ev.threads)
        omp_set_num_threads(a.ev.threads);
    qk_err err = {{0}};
    verify_run *r = calloc(1, sizeof *r);
    if (!r)
        return cli_fail(QK_ENOMEM, NULL);
    int rc = open_all(&a, r, &err), n_chunks = 0;
    const eng_model *shape = a.ref ? &r->ref.m : &r->cands[0].m;
    const tok_vocab *v = a.ref ? r->ref.vocab : r->cands[0].vocab;
    eng_ppl_opts po = {a.ev.n_ctx, a.ev.chunks, 0};
    if (!rc) {
        po.bos = tok_vocab_add_bos(v) ? v->special[TOK_BOS] : -1;
        rc = eng_ppl_plan(shape, r->ids.n, &po, &n_chunks, &err);
    }
    if (!rc)
        rc = open_logits(&a, r, &po, n_chunks, shape->n_vocab, &err);
    eng_ppl_acc ref_acc = {0};
    const eng_model *cands[MAX_CANDS];
    for (int i = 0; i < a.n_cands; i++)
        cands[i] = &r->cands[i].m;
    cli_progress prog;
    cli_progress_start(&prog, "verify", n_chunks, 0);
    if (!rc) {
        eng_verify_models vm = {a.ref ? &r->ref.m : NULL, r->rl, r->save, cands, a.n_cands};
        rc = eng_verify(&vm, r->ids.ids, r->ids.n, &po, &ref_acc, r->accs, on_chunk, &prog, &err);
    }
    cli_progress_end(&prog);
    if (!rc && r->save) {
        lg_writer *w = r->save;
        r->save = NULL;
        rc = lg_writer_commit(w, &err);
    }
    int exit_code = rc ? cli_fail(rc, &err) : CLI_OK;
    if (!rc) {
        eng_kld_summary s[MAX_CANDS];
        int failed[MAX_CANDS] = {0};
        char why[160];
        for (int i = 0; i < a.n_cands; i++) {
            eng_kld_summarize(&r->accs[i], &s[i]);
            failed[i] = failed_bound(&a, &s[i], why, sizeof why) != NULL;
            if (failed[i]) {
                fprintf(stderr, "qkit verify: %s: %s\n", a.cands[i], why);
                exit_code = CLI_BOUND;
            }
        }
        if (a.ev.json)
            print_json(&a, &ref_acc, s, failed);
        else
            print_table(&a, &ref_acc, s);
    }
    close_all(r, &a);
    free(r);
    return exit_code;
}
