/* common.c — error reporting, number parsing and the progress bar shared by all subcommands. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

int cli_exit_code(int status)
{
    if (status == QK_OK)
        return CLI_OK;
    /* A missing file exits 3 like any other refusal to open, unless the caller has judged it
     * bad input (a folder without config.json, tokenize --file) and passed QK_EFORMAT. */
    return status == QK_EIO || status == QK_ENOTFOUND ? CLI_IO : CLI_USAGE;
}

int cli_fail(int status, const qk_err *err)
{
    fprintf(stderr, "qkit: %s\n", err && err->msg[0] ? err->msg : qk_status_str(status));
    return cli_exit_code(status);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "qkit %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_USAGE;
}

int cli_parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int64_t cli_parse_size(const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -1;
    double mul = 1;
    switch (*end) {
    case 'K': case 'k': mul = 1e3; end++; break;
    case 'M': case 'm': mul = 1e6; end++; break;
    case 'G': case 'g': mul = 1e9; end++; break;
    case 'T': case 't': mul = 1e12; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || v * mul > 9e18)
        return -1;
    return (int64_t)(v * mul);
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_progress_start(cli_progress *p, const char *what, int64_t total, int quiet)
{
    p->enabled = !quiet && isatty(STDERR_FILENO) && !getenv("CI");
    p->total = total > 0 ? total : 1;
    p->t0 = cli_now();
    p->what = what;
}

void cli_progress_update(cli_progress *p, int64_t done, double bytes_done)
{
    if (!p->enabled)
        return;
    double el = cli_now() - p->t0, frac = (double)done / (double)p->total;
    int width = 30, fill = (int)(frac * width);
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    double eta = frac > 0 ? el / frac - el : 0;
    fprintf(stderr, "\r%s [%s] %lld/%lld  %.2f GB/s  ETA %.0fs ", p->what, bar, (long long)done,
            (long long)p->total, el > 0 ? bytes_done / el / 1e9 : 0.0, eta);
    fflush(stderr);
}

void cli_progress_end(cli_progress *p)
{
    if (p->enabled)
        fprintf(stderr, "\r\033[K");
}

int cli_parse_eval_opts(const char *cmd, int argc, char **argv, int *i, cli_eval_opts *o)
{
    const char *a = argv[*i];
    long v;
    const int has_val = *i + 1 < argc;
    if (!strcmp(a, "--json")) {
        o->json = 1;
        return 1;
    }
    if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
        if (!has_val)
            return -cli_usage_error(cmd, "%s needs a file", a);
        o->text = argv[++*i];
        return 1;
    }
    struct { const char *name; int *dst; long lo, hi; } ints[] = {
        {"--ctx", &o->n_ctx, 4, 1 << 20}, {"-c", &o->n_ctx, 4, 1 << 20},
        {"--chunks", &o->chunks, 1, 1L << 30}, {"--threads", &o->threads, 1, 1024},
        {"-t", &o->threads, 1, 1024},
    };
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        if (strcmp(a, ints[k].name))
            continue;
        if (!has_val || cli_parse_int(argv[*i + 1], ints[k].lo, ints[k].hi, &v))
            return -cli_usage_error(cmd, "%s needs an integer in [%ld, %ld]", a, ints[k].lo, ints[k].hi);
        *ints[k].dst = (int)v;
        ++*i;
        return 1;
    }
    return 0;
}
