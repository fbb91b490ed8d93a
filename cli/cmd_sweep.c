/* cmd_sweep.c — `qkit sweep MODEL -f TEXT …`: several quantization schemes side by side (size,
 * bits per weight, PPL, KLD, top-1), as a table, JSON, and an SVG chart of KLD against bits per
 * weight with llama.cpp's mixes and qkit's size-budget points as two series. */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../convert/sweep.h"
#include "../formats/file.h"
#include "../formats/outfile.h"
#include "cli.h"

static const char USAGE[] =
    "usage: qkit sweep MODEL -f TEXT [--imatrix F] [--types Q2_K,Q3_K_M,...] [--calib TEXT]\n"
    "                  [--target-bpw 2.5,3,...] [-o DIR] [--ctx N] [--chunks K] [--threads N]\n"
    "                  [--json] [-q]\n"
    "  Quantizes MODEL (GGUF F32/F16/BF16 or a Hugging Face folder) to every llama.cpp mix in\n"
    "  --types (default Q2_K,Q3_K_M,Q4_K_M,Q5_K_M,Q6_K,Q8_0) and, with --calib, to every\n"
    "  --target-bpw point (default 2.5,3,3.5,4,4.5,5,6) chosen per tensor by measured\n"
    "  sensitivity; verifies all against MODEL in one pass over TEXT (default --ctx 256); writes\n"
    "  DIR/sweep.txt, DIR/sweep.json and DIR/sweep.svg (DIR default '.'). Temporary files go to\n"
    "  DIR and are deleted.\n";

typedef struct {
    cli_eval_opts ev;
    const char *model, *imatrix, *calib, *dir;
    const char *mixes[SW_MAX_SCHEMES];
    size_t n_mixes;
    double bpw[SW_MAX_SCHEMES];
    size_t n_bpw;
    int bpw_given;
    char types_buf[512];
} sweep_args;

static int parse_list(sweep_args *a, const char *flag, const char *v)
{
    if (!strcmp(flag, "--types")) {
        snprintf(a->types_buf, sizeof a->types_buf, "%s", v);
        a->n_mixes = 0;
        for (char *save = NULL, *t = strtok_r(a->types_buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (a->n_mixes == SW_MAX_SCHEMES / 2)
                return cli_usage_error("sweep", "--types: at most %d mixes", SW_MAX_SCHEMES / 2);
            a->mixes[a->n_mixes++] = t;
        }
        return a->n_mixes ? 0 : cli_usage_error("sweep", "--types needs a list such as Q4_K_M,Q6_K");
    }
    char buf[512];
    snprintf(buf, sizeof buf, "%s", v);
    a->n_bpw = 0;
    a->bpw_given = 1;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        double b = strtod(t, &end);
        if (*end || !(b > 0 && b <= 32))
            return cli_usage_error("sweep", "--target-bpw: '%s' is not bits per weight in (0, 32]", t);
        if (a->n_bpw == SW_MAX_SCHEMES / 2)
            return cli_usage_error("sweep", "--target-bpw: at most %d points", SW_MAX_SCHEMES / 2);
        a->bpw[a->n_bpw++] = b;
    }
    return a->n_bpw ? 0 : cli_usage_error("sweep", "--target-bpw needs a list such as 3,4,5");
}

static int parse_args(int argc, char **argv, sweep_args *a)
{
    static const char *const DEF_MIXES[] = {"Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"};
    static const double DEF_BPW[] = {2.5, 3, 3.5, 4, 4.5, 5, 6};
    memset(a, 0, sizeof *a);
    a->ev.n_ctx = 256;
    a->dir = ".";
    for (size_t i = 0; i < sizeof DEF_MIXES / sizeof DEF_MIXES[0]; i++)
        a->mixes[a->n_mixes++] = DEF_MIXES[i];
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        int r = cli_parse_eval_opts("sweep", argc, argv, &i, &a->ev);
        if (r < 0)
            return CLI_USAGE;
        if (r > 0)
            continue;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(USAGE, stdout);
            return -1;
        }
        const int valued = !strcmp(f, "--imatrix") || !strcmp(f, "--calib") || !strcmp(f, "-o") ||
                           !strcmp(f, "--output") || !strcmp(f, "--types") || !strcmp(f, "--target-bpw");
        if (valued && i + 1 >= argc)
            return cli_usage_error("sweep", "%s needs a value", f);
        if (!strcmp(f, "--imatrix"))
            a->imatrix = argv[++i];
        else if (!strcmp(f, "--calib"))
            a->calib = argv[++i];
        else if (!strcmp(f, "-o") || !strcmp(f, "--output"))
            a->dir = argv[++i];
        else if (valued) {
            if (parse_list(a, f, argv[++i]))
                return CLI_USAGE;
        } else if (f[0] == '-' && f[1])
            return cli_usage_error("sweep", "unknown option '%s'\n%s", f, USAGE);
        else if (a->model)
            return cli_usage_error("sweep", "unexpected argument '%s'", f);
        else
            a->model = f;
    }
    if (!a->model || !a->ev.text)
        return cli_usage_error("sweep", "MODEL and -f TEXT are required\n%s", USAGE);
    if (a->bpw_given && !a->calib)
        return cli_usage_error("sweep", "--target-bpw needs --calib TEXT (the sensitivities are "
                               "measured on it; use other text than -f)");
    if (a->calib && !a->bpw_given)
        for (size_t i = 0; i < sizeof DEF_BPW / sizeof DEF_BPW[0]; i++)
            a->bpw[a->n_bpw++] = DEF_BPW[i];
    return 0;
}

static void on_stage(void *user, const char *what, size_t done, size_t total)
{
    cli_progress *p = user;
    p->what = what;
    p->total = (int64_t)total;
    cli_progress_update(p, (int64_t)done, 0);
}

static char *table_text(const sw_result *r)
{
    size_t cap = 256 + r->n * 480;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    size_t n = (size_t)snprintf(s, cap, "%-12s %12s %7s %9s %10s %10s %8s %10s\n", "scheme", "bytes",
                                "bpw", "PPL", "KLD mean", "KLD p99", "top-1 %", "predicted");
    for (size_t i = 0; i < r->n && n < cap; i++) {
        const sw_row *w = &r->rows[i];
        if (w->skipped) {
            n += (size_t)snprintf(s + n, cap - n, "%-12s skipped: %s\n", w->name, w->note);
            continue;
        }
        char pred[32] = "-";
        if (w->is_target)
            snprintf(pred, sizeof pred, "%.6f", w->pred_kld);
        n += (size_t)snprintf(s + n, cap - n, "%-12s %12llu %7.3f %9.4f %10.6f %10.6f %8.2f %10s\n",
                              w->name, (unsigned long long)w->bytes, w->bpw, w->ppl, w->kld_mean,
                              w->kld_p99, w->top1, pred);
    }
    if (n < cap)
        snprintf(s + n, cap - n, "reference PPL %.4f\n", r->ref_ppl);
    return s;
}

static cJSON *result_json(const sweep_args *a, const sw_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", a->model);
    cJSON_AddStringToObject(o, "text", a->ev.text);
    if (a->imatrix)
        cJSON_AddStringToObject(o, "imatrix", a->imatrix);
    else
        cJSON_AddNullToObject(o, "imatrix");
    cJSON_AddNumberToObject(o, "n_ctx", a->ev.n_ctx);
    cli_json_number(o, "ref_ppl", r->ref_ppl);
    cJSON *rows = cJSON_AddArrayToObject(o, "schemes");
    for (size_t i = 0; i < r->n; i++) {
        const sw_row *w = &r->rows[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", w->name);
        cJSON_AddStringToObject(e, "kind", w->is_target ? "target-bpw" : "llama.cpp mix");
        cJSON_AddNumberToObject(e, "bytes", (double)w->bytes);
        cli_json_number(e, "bpw", w->bpw);
        cli_json_number(e, "ppl", w->ppl);
        cli_json_number(e, "kld_mean", w->kld_mean);
        cli_json_number(e, "kld_p99", w->kld_p99);
        cli_json_number(e, "top1", w->top1);
        if (w->is_target)
            cli_json_number(e, "predicted_kld", w->pred_kld);
        cli_json_number(e, "seconds", w->seconds);
        if (w->skipped)
            cJSON_AddStringToObject(e, "skipped", w->note);
        cJSON_AddItemToArray(rows, e);
    }
    cli_json_number(o, "seconds_verify", r->seconds_verify);
    return o;
}

static int write_outputs(const sweep_args *a, const sw_result *r, const char *table, qk_err *err)
{
    char path[4096];
    cJSON *doc = result_json(a, r);
    char *json = cJSON_Print(doc);
    cJSON_Delete(doc);
    char title[600];
    snprintf(title, sizeof title, "%s: KL divergence vs size", a->model);
    char *svg = sw_svg(r, title);
    int rc = json && svg ? QK_OK : qk_err_set(err, QK_ENOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/sweep.txt", a->dir);
    if (!rc)
        rc = of_write_all(path, table, strlen(table), err);
    snprintf(path, sizeof path, "%s/sweep.json", a->dir);
    if (!rc)
        rc = of_write_all(path, json, strlen(json), err);
    snprintf(path, sizeof path, "%s/sweep.svg", a->dir);
    if (!rc)
        rc = of_write_all(path, svg, strlen(svg), err);
    free(json);
    free(svg);
    return rc;
}

int cmd_sweep(int argc, char **argv)
{
    sweep_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    struct stat st;
    if (stat(a.dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return cli_usage_error("sweep", "-o %s: not a folder", a.dir);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/.qkit-sweep-XXXXXX", a.dir);
    if (!mkdtemp(tmp)) {
        qk_err e;
        qk_err_set(&e, QK_EIO, "%s: cannot create a temporary folder: %s", a.dir, strerror(errno));
        return cli_fail(QK_EIO, &e);
    }
    cli_progress prog;
    cli_progress_start(&prog, "sweep", 1, a.ev.quiet || a.ev.json);
    sw_params p = {a.model, a.ev.text, a.imatrix, a.calib, a.mixes, a.n_mixes, a.bpw, a.n_bpw, tmp,
                   a.ev.n_ctx, a.ev.chunks, cli_threads(a.ev.threads), on_stage, &prog};
    sw_result r;
    qk_err err = {{0}};
    rc = sw_run(&p, &r, &err);
    cli_progress_end(&prog);
    rmdir(tmp);
    char *table = rc ? NULL : table_text(&r);
    if (!rc && !table)
        rc = qk_err_set(&err, QK_ENOMEM, "out of memory");
    if (!rc)
        rc = write_outputs(&a, &r, table, &err);
    if (rc) {
        free(table);
        return cli_fail(rc, &err);
    }
    if (a.ev.json)
        rc = cli_json_print(result_json(&a, &r), 1);
    else if (!a.ev.quiet)
        fputs(table, stdout);
    free(table);
    return rc;
}
