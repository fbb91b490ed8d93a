/* cmd_perplexity.c — `qkit perplexity MODEL -f TEXT [--ctx N] [--chunks K] [--threads N] [--json]`:
 * llama-perplexity's figure, printed as it runs ([1]4.2248,[2]4.7464,...). */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "../calib/perplexity.h"
#include "cli.h"
#include "engine_open.h"

typedef struct {
    int json;
    double t0;
    const eng_ppl_acc *acc;
    cli_progress prog;
} ppl_print;

static void on_chunk(void *user, int chunk, int n_chunks)
{
    ppl_print *p = user;
    if (!p->json) {
        printf("[%d]%.4f,", chunk + 1, eng_ppl_value(p->acc));
        fflush(stdout);
    }
    cli_progress_update(&p->prog, chunk + 1, 0);
    (void)n_chunks;
}

static const char USAGE[] =
    "usage: qkit perplexity MODEL.gguf -f TEXT [--ctx N] [--chunks K] [--threads N] [--json]";

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
        omp_set_num_threads(o.threads);

    qk_err err = {{0}};
    cli_engine_model em;
    tok_ids ids = {0};
    int rc = cli_engine_open(&em, model, &err);
    if (rc)
        return cli_fail(rc, &err);
    rc = cli_tokenize_file(em.vocab, o.text, &ids, &err);
    eng_ppl_acc acc = {0};
    eng_ppl_opts po = {o.n_ctx, o.chunks, tok_vocab_add_bos(em.vocab) ? em.vocab->special[TOK_BOS] : -1};
    int n_chunks = 0;
    if (!rc)
        rc = eng_ppl_plan(&em.m, ids.n, &po, &n_chunks, &err);
    ppl_print pp = {o.json, cli_now(), &acc, {0}};
    if (!rc) {
        /* The running values are the progress in text mode; the bar is for --json runs. */
        cli_progress_start(&pp.prog, "perplexity", n_chunks, !o.json);
        if (!o.json)
            fprintf(stderr, "perplexity: %zu tokens, %d chunks of %d, %d threads\n", ids.n, n_chunks,
                    o.n_ctx, omp_get_max_threads());
        rc = eng_perplexity(&em.m, ids.ids, ids.n, &po, &acc, on_chunk, &pp, &err);
    }
    if (!rc) {
        const double secs = cli_now() - pp.t0, tps = (double)n_chunks * o.n_ctx / secs;
        if (o.json)
            printf("{\"model\": \"%s\", \"ppl\": %.6f, \"ppl_stderr\": %.6f, \"n_ctx\": %d, \"chunks\": %d, "
                   "\"tokens_scored\": %zu, \"seconds\": %.3f, \"tokens_per_second\": %.1f}\n",
                   model, eng_ppl_value(&acc), eng_ppl_stderr(&acc), o.n_ctx, n_chunks, acc.count, secs, tps);
        else
            printf("\nFinal estimate: PPL = %.4f +/- %.5f\n%.1f tokens/s (%.2f s)\n", eng_ppl_value(&acc),
                   eng_ppl_stderr(&acc), tps, secs);
    }
    tok_ids_free(&ids);
    cli_engine_close(&em);
    return rc ? cli_fail(rc, &err) : CLI_OK;
}
