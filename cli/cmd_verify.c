/* cmd_verify.c — `qkit verify --ref REF MODEL… -f TEXT …`: one pass over the text, the reference
 * and every candidate on the same tokens; a CI gate on KL divergence, PPL ratio and top-1. */
#include <cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../calib/perplexity.h"
#include "../convert/eval_model.h"
#include "../formats/file.h"
#include "../quant/cpu.h"
#include "cli.h"

#define MAX_CANDS 64

static const char USAGE[] =
    "usage: qkit verify --ref REF.gguf MODEL.gguf... -f TEXT [--ctx N] [--chunks K] [--threads N]\n"
    "                   [--max-kld X] [--max-ppl-ratio R] [--min-top1 P] [--save-logits FILE]\n"
    "                   [--ref-logits FILE] [--json] [-q]";

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

static int summary_finite(const eng_kld_summary *s)
{
    const double v[] = {s->ppl, s->ppl_stderr, s->ppl_ratio, s->kld_mean, s->kld_mean_stderr, s->kld_median,
                        s->kld_p99, s->kld_max, s->top1, s->top1_stderr, s->rms_dp};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

/* Every figure exactly as computed (cJSON writes doubles that read back bit for bit), non-finite
 * ones as null with "invalid" saying why. */
static int print_json(const verify_args *a, const eng_ppl_acc *ref, const eng_kld_summary *s,
                      const int *failed, const char *ref_invalid, char (*invalid)[QK_ERR_MSG_MAX])
{
    cJSON *d = cJSON_CreateObject();
    /* the figures are the same bits for any thread count and instruction set (README:
     * Reliability); the kernels used are named for the record */
    cJSON_AddStringToObject(d, "kernels", q_isa_name(q_isa_active()));
    cJSON *r = cJSON_AddObjectToObject(d, "reference");
    cJSON_AddStringToObject(r, "model", a->ref ? a->ref : a->ref_logits);
    cli_json_number(r, "ppl", ref_invalid ? NAN : eng_ppl_value(ref));
    cli_json_number(r, "ppl_stderr", ref_invalid ? NAN : eng_ppl_stderr(ref));
    if (ref_invalid)
        cJSON_AddStringToObject(r, "invalid", ref_invalid);
    cJSON *cs = cJSON_AddArrayToObject(d, "candidates");
    for (int i = 0; i < a->n_cands; i++) {
        cJSON *c = cJSON_CreateObject();
        const eng_kld_summary *x = &s[i];
        cJSON_AddStringToObject(c, "model", a->cands[i]);
        const struct { const char *k; double v; } f[] = {
            {"ppl", x->ppl}, {"ppl_stderr", x->ppl_stderr}, {"ppl_ratio", x->ppl_ratio},
            {"kld_mean", x->kld_mean}, {"kld_mean_stderr", x->kld_mean_stderr},
            {"kld_median", x->kld_median}, {"kld_p99", x->kld_p99}, {"kld_max", x->kld_max},
            {"top1", x->top1}, {"top1_stderr", x->top1_stderr}, {"rms_dp", x->rms_dp}};
        for (size_t k = 0; k < sizeof f / sizeof f[0]; k++)
            cli_json_number(c, f[k].k, invalid[i][0] || ref_invalid ? NAN : f[k].v);
        cJSON_AddNumberToObject(c, "tokens", (double)x->count);
        cJSON_AddBoolToObject(c, "pass", !failed[i]);
        if (invalid[i][0] || ref_invalid)
            cJSON_AddStringToObject(c, "invalid", invalid[i][0] ? invalid[i] : ref_invalid);
        cJSON_AddItemToArray(cs, c);
    }
    return cli_json_print(d, 0);
}

/* A figure for the table: %.*f, never "-0.000…" (a tiny negative KLD from rounding is 0), or
 * "invalid" when it is not finite. */
static const char *fig(char *buf, size_t n, double v, int decimals)
{
    if (!isfinite(v))
        return snprintf(buf, n, "invalid"), buf;
    if (fabs(v) < 0.5 * pow(10, -decimals))
        v = 0;
    snprintf(buf, n, "%.*f", decimals, v);
    return buf;
}

static void print_table(const verify_args *a, const eng_ppl_acc *ref, const eng_kld_summary *s,
                        int ref_invalid, char (*invalid)[QK_ERR_MSG_MAX])
{
    const char *ref_name = a->ref ? a->ref : a->ref_logits;
    int w = (int)strlen(ref_name);
    char b[9][32];
    for (int i = 0; i < a->n_cands; i++)
        w = (int)strlen(a->cands[i]) > w ? (int)strlen(a->cands[i]) : w;
    printf("\n%-*s %20s %9s %9s %9s %9s %9s %8s %7s\n", w, "model", "PPL", "ratio", "KLD mean", "median",
           "p99", "max", "top1 %", "RMS dp%");
    printf("%-*s %10s ± %7s %9s\n", w, ref_name, fig(b[0], 32, ref_invalid ? NAN : eng_ppl_value(ref), 4),
           fig(b[1], 32, ref_invalid ? NAN : eng_ppl_stderr(ref), 4), "(ref)");
    for (int i = 0; i < a->n_cands; i++) {
        eng_kld_summary x = s[i];
        if (ref_invalid || invalid[i][0]) /* no figure of it means anything */
            x.ppl = x.ppl_stderr = x.ppl_ratio = x.kld_mean = x.kld_median = x.kld_p99 = x.kld_max =
                x.top1 = x.rms_dp = NAN;
        printf("%-*s %10s ± %7s %9s %9s %9s %9s %9s %8s %7s\n", w, a->cands[i], fig(b[0], 32, x.ppl, 4),
               fig(b[1], 32, x.ppl_stderr, 4), fig(b[2], 32, x.ppl_ratio, 5),
               fig(b[3], 32, x.kld_mean, 6), fig(b[4], 32, x.kld_median, 6),
               fig(b[5], 32, x.kld_p99, 6), fig(b[6], 32, x.kld_max, 6), fig(b[7], 32, x.top1, 3),
               fig(b[8], 32, x.rms_dp, 3));
    }
}

static void on_chunk(void *user, int chunk, int n_chunks)
{
    cli_progress_update(user, chunk + 1, 0);
    (void)n_chunks;
}

typedef struct {
    cv_eval_model ref, cands[MAX_CANDS];
    int n_open;
    lg_reader *rl;
    lg_writer *save;
    tok_ids ids;
    eng_kld_acc accs[MAX_CANDS];
} verify_run;

static int open_all(const verify_args *a, verify_run *r, qk_err *err)
{
    int rc = a->ref ? cv_eval_open(&r->ref, a->ref, err) : QK_OK;
    for (; !rc && r->n_open < a->n_cands; r->n_open++)
        rc = cv_eval_open(&r->cands[r->n_open], a->cands[r->n_open], err);
    if (rc)
        return rc;
    const tok_vocab *v = a->ref ? r->ref.vocab : r->cands[0].vocab;
    return eng_tokenize_text_file(v, a->ev.text, &r->ids, err);
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
        cv_eval_close(&r->cands[i]);
    for (int i = 0; i < a->n_cands; i++)
        eng_kld_free(&r->accs[i]);
    if (a->ref)
        cv_eval_close(&r->ref);
    lg_reader_close(r->rl);
    lg_writer_abort(r->save);
    tok_ids_free(&r->ids);
}

/* --save-logits must not replace an input: the text, the reference or a candidate (a folder's
 * files, every part of a split GGUF). */
static int check_save_path(const verify_args *a, const verify_run *r, qk_err *err)
{
    if (!a->save)
        return QK_OK;
    int rc = qk_output_check(a->save, a->ev.text, err);
    for (int i = -1; i < a->n_cands && !rc; i++) {
        const cv_eval_model *m = i < 0 ? &r->ref : &r->cands[i];
        rc = qk_output_check(a->save, i < 0 ? a->ref : a->cands[i], err);
        for (uint32_t p = 0; !rc && m->g && p < gguf_n_parts(m->g); p++)
            rc = qk_output_check(a->save, gguf_part_path(m->g, p), err);
    }
    return rc;
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
        cli_threads(a.ev.threads);
    qk_err err = {{0}};
    verify_run *r = calloc(1, sizeof *r);
    if (!r)
        return cli_fail(QK_ENOMEM, NULL);
    int rc = open_all(&a, r, &err), n_chunks = 0;
    if (!rc)
        rc = check_save_path(&a, r, &err);
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
    cli_progress_start(&prog, "verify", n_chunks, a.ev.quiet);
    if (!rc) {
        eng_verify_models vm = {a.ref ? &r->ref.m : NULL, r->rl, r->save, cands, a.n_cands};
        rc = eng_verify(&vm, r->ids.ids, r->ids.n, &po, &ref_acc, r->accs, on_chunk, &prog, &err);
    }
    cli_progress_end(&prog);
    /* NaN weights make NaN figures: such a figure is invalid (null in JSON, "invalid" in the
     * table), the run fails as bad input (exit 2) naming the model and the tensor, and a
     * reference that is not finite is not saved */
    static char invalid[MAX_CANDS][QK_ERR_MSG_MAX];
    char ref_invalid[QK_ERR_MSG_MAX] = "";
    int any_invalid = 0;
    if (!rc && !(isfinite(eng_ppl_value(&ref_acc)) && isfinite(eng_ppl_stderr(&ref_acc)))) {
        qk_err e;
        if (a.ref)
            cli_explain_nonfinite(&r->ref, "reference perplexity", &e);
        else
            snprintf(e.msg, sizeof e.msg, "%s: the saved reference log-probabilities are not finite",
                     a.ref_logits);
        snprintf(ref_invalid, sizeof ref_invalid, "%s", e.msg);
        cli_error_line("qkit verify: ", ref_invalid);
        any_invalid = 1;
    }
    if (!rc && r->save && !any_invalid) {
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
            invalid[i][0] = 0;
            if (!ref_invalid[0] && !summary_finite(&s[i])) {
                qk_err e;
                cli_explain_nonfinite(&r->cands[i], "KL divergence", &e);
                snprintf(invalid[i], sizeof invalid[i], "%s", e.msg);
                cli_error_line("qkit verify: ", invalid[i]);
                any_invalid = 1;
            }
            int bad = invalid[i][0] || ref_invalid[0];
            failed[i] = bad || failed_bound(&a, &s[i], why, sizeof why) != NULL;
            if (!bad && failed[i]) {
                char line[QK_ERR_MSG_MAX + 200];
                snprintf(line, sizeof line, "%s: %s", a.cands[i], why);
                cli_error_line("qkit verify: ", line);
                exit_code = CLI_BOUND;
            }
        }
        int out = a.ev.json ? print_json(&a, &ref_acc, s, failed, ref_invalid[0] ? ref_invalid : NULL, invalid)
                            : (print_table(&a, &ref_acc, s, ref_invalid[0] != 0, invalid), CLI_OK);
        if (any_invalid)
            exit_code = CLI_USAGE;
        else if (out != CLI_OK)
            exit_code = out;
    }
    close_all(r, &a);
    free(r);
    return exit_code;
}
