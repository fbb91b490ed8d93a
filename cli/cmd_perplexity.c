/* cmd_perplexity.c — `qkit perplexity MODEL -f TEXT [--ctx N] [--chunks K] [--threads N] [--json]`:
 * llama-perplexity's figure, printed as it runs ([1]4.2248,[2]4.7464,...). */
#include <cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "../calib/perplexity.h"
#include "../convert/eval_model.h"
#include "../quant/cpu.h"
#include "cli.h"

typedef struct {
    int json, quiet;
    double t0;
    const eng_ppl_acc *acc;
    cli_progress prog;
} ppl_print;

static void on_chunk(void *user, int chunk, int n_chunks)
{
    ppl_print *p = user;
    if (!p->json && !p->quiet) {
        printf("[%d]%.4f,", chunk + 1, eng_ppl_value(p->acc));
        fflush(stdout);
    }
    cli_progress_update(&p->prog, chunk + 1, 0);
    (void)n_chunks;
}

static const char USAGE[] =
    "usage: qkit perplexity MODEL.gguf -f TEXT [--ctx N] [--chunks K] [--threads N] [--json] [-q]\n"
    "  -q, --quiet   only the final estimate (no running values, no progress)";

/* One JSON object; a non-finite figure is null and "invalid" says why. */
static int print_json(const char *model, const eng_ppl_acc *acc, const cli_eval_opts *o, int n_chunks,
                      double secs, const char *invalid)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "model", model);
    cJSON_AddStringToObject(d, "kernels", q_isa_name(q_isa_active())); /* for the record: same figures on all */
    cli_json_number(d, "ppl", invalid ? NAN : eng_ppl_value(acc));
    cli_json_number(d, "ppl_stderr", invalid ? NAN : eng_ppl_stderr(acc));
    if (invalid)
        cJSON_AddStringToObject(d, "invalid", invalid);
    cJSON_AddNumberToObject(d, "n_ctx", o->n_ctx);
    cJSON_AddNumberToObject(d, "chunks", n_chunks);
    cJSON_AddNumberToObject(d, "tokens_scored", (double)acc->count);
    cli_json_number(d, "seconds", secs);
    cli_json_number(d, "tokens_per_second", secs > 0 ? (double)n_chunks * o->n_ctx / secs : 0);
    return cli_json_print(d, 0);
}

int cmd_perplexity(int argc, char **argv)
{
    cli_eval_opts o = {.n_ctx = 512};
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        int r = cli_parse_eval_opts("perplexity", argc, argv, &i, &o);
        if (r < 0)
            return CLI_USAGE;
        if (r > 0)
            continue;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts(USAGE);
            return CLI_OK;
        }
        if (argv[i][0] == '-' || model)
            return cli_usage_error("perplexity", "unexpected argument '%s'\n%s", argv[i], USAGE);
        model = argv[i];
    }
    if (!model || !o.text)
        return cli_usage_error("perplexity", "%s", USAGE);
    if (o.threads)
        cli_threads(o.threads);

    qk_err err = {{0}};
    cv_eval_model em;
    tok_ids ids = {0};
    int rc = cv_eval_open(&em, model, &err);
    if (rc)
        return cli_fail(rc, &err);
    rc = eng_tokenize_text_file(em.vocab, o.text, &ids, &err);
    eng_ppl_acc acc = {0};
    eng_ppl_opts po = {o.n_ctx, o.chunks, tok_vocab_add_bos(em.vocab) ? em.vocab->special[TOK_BOS] : -1};
    int n_chunks = 0;
    if (!rc)
        rc = eng_ppl_plan(&em.m, ids.n, &po, &n_chunks, &err);
    ppl_print pp = {o.json, o.quiet, cli_now(), &acc, {0}};
    if (!rc) {
        /* The running values are the progress in text mode; the bar is for --json runs. */
        cli_progress_start(&pp.prog, "perplexity", n_chunks, !o.json || o.quiet);
        if (!o.json && !o.quiet)
            fprintf(stderr, "perplexity: %zu tokens, %d chunks of %d, %d threads\n", ids.n, n_chunks,
                    o.n_ctx, omp_get_max_threads());
        rc = eng_perplexity(&em.m, ids.ids, ids.n, &po, &acc, on_chunk, &pp, &err);
        cli_progress_end(&pp.prog);
    }
    int out_rc = CLI_OK;
    if (!rc) {
        const double secs = cli_now() - pp.t0, tps = (double)n_chunks * o.n_ctx / secs;
        /* NaN weights make a NaN perplexity: the figure is invalid (null in JSON), the run fails
         * as bad input (exit 2) naming the tensor */
        const int finite = isfinite(eng_ppl_value(&acc)) && isfinite(eng_ppl_stderr(&acc));
        if (!finite)
            rc = cli_explain_nonfinite(&em, "perplexity", &err);
        if (o.json)
            out_rc = print_json(model, &acc, &o, n_chunks, secs, finite ? NULL : err.msg);
        else if (finite)
            printf("%sFinal estimate: PPL = %.4f +/- %.5f\n%.1f tokens/s (%.2f s)\n", o.quiet ? "" : "\n",
                   eng_ppl_value(&acc), eng_ppl_stderr(&acc), tps, secs);
        else
            printf("%sFinal estimate: PPL = invalid (not finite)\n", o.quiet ? "" : "\n");
    }
    tok_ids_free(&ids);
    cv_eval_close(&em);
    return rc ? cli_fail(rc, &err) : out_rc;
}
