/* common.c — error reporting, number parsing, JSON output and the progress bar shared by all
 * subcommands. */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../convert/eval_model.h"
#include "../convert/quantize.h"
#include "cli.h"

int cli_exit_code(int status)
{
    if (status == QK_OK)
        return CLI_OK;
    /* A missing file exits 3 like any other refusal to open, unless the caller has judged it
     * bad input (a folder without config.json, tokenize --file) and passed QK_EFORMAT. Memory
     * exhaustion is the machine's failure, not the input's: 3 as well. */
    return status == QK_EIO || status == QK_ENOTFOUND || status == QK_ENOMEM ? CLI_IO : CLI_USAGE;
}

/* msg on stderr as one line: control bytes a file or an argument smuggled into it (a token text,
 * a name with a newline) are written as \n, \t or \xHH. */
void cli_error_line(const char *prefix, const char *msg)
{
    fputs(prefix, stderr);
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p == '\n')
            fputs("\\n", stderr);
        else if (*p == '\t')
            fputs("\\t", stderr);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(stderr, "\\x%02x", *p);
        else
            fputc(*p, stderr);
    }
    fputc('\n', stderr);
}

int cli_fail(int status, const qk_err *err)
{
    cli_error_line("qkit: ", err && err->msg[0] ? err->msg : qk_status_str(status));
    return cli_exit_code(status);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    char msg[2048], prefix[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(prefix, sizeof prefix, "qkit %s: ", cmd);
    /* usage texts are several lines on purpose: only the first line is the error */
    char *nl = strchr(msg, '\n');
    if (nl)
        *nl = 0;
    cli_error_line(prefix, msg);
    if (nl)
        fprintf(stderr, "%s\n", nl + 1);
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

static int parse_shard(const char *cmd, const char *v, cli_split *s)
{
    const char *slash = strchr(v, '/');
    char first[32];
    long i, n;
    if (!slash || (size_t)(slash - v) >= sizeof first)
        return cli_usage_error(cmd, "--shard needs I/N (job I of N, I counting from 0), got '%s'", v), -1;
    memcpy(first, v, (size_t)(slash - v));
    first[slash - v] = '\0';
    if (cli_parse_int(first, 0, 65535, &i) || cli_parse_int(slash + 1, 0, 65535, &n))
        return cli_usage_error(cmd, "--shard needs I/N with whole numbers, got '%s'", v), -1;
    if (n < 1)
        return cli_usage_error(cmd, "--shard %s: N must be at least 1", v), -1;
    if (i >= n)
        return cli_usage_error(cmd, "--shard %s: I counts from 0, so it must be below N (0 to %ld)",
                               v, n - 1), -1;
    s->shard_index = (uint32_t)i;
    s->shard_count = (uint32_t)n;
    return 1;
}

int cli_parse_split(const char *cmd, int argc, char **argv, int *i, cli_split *s, int only_shard)
{
    const char *f = argv[*i];
    int shard = !strcmp(f, "--shard");
    if (!shard && (only_shard || (strcmp(f, "--split-max-size") && strcmp(f, "--split-max-tensors") &&
                                  strcmp(f, "--split-parts"))))
        return 0;
    if (*i + 1 >= argc)
        return cli_usage_error(cmd, "%s needs a value", f), -1;
    const char *v = argv[++*i];
    long n;
    int64_t size;
    if (shard)
        return parse_shard(cmd, v, s);
    if (!strcmp(f, "--split-max-size")) {
        if ((size = cli_parse_size(v)) <= 0)
            return cli_usage_error(cmd, "--split-max-size needs a positive size such as 500M or 2G"), -1;
        s->max_bytes = (uint64_t)size;
    } else if (cli_parse_int(v, 1, !strcmp(f, "--split-parts") ? 65535 : INT32_MAX, &n)) {
        return cli_usage_error(cmd, "%s needs a positive whole number%s, got '%s'", f,
                               !strcmp(f, "--split-parts") ? " up to 65535" : "", v), -1;
    } else if (!strcmp(f, "--split-parts")) {
        s->parts = (uint32_t)n;
    } else {
        s->max_tensors = (uint64_t)n;
    }
    if (s->parts && (s->max_bytes || s->max_tensors))
        return cli_usage_error(cmd, "--split-parts cannot be combined with --split-max-size or "
                               "--split-max-tensors"), -1;
    return 1;
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
    if (!strcmp(a, "--json") || !strcmp(a, "-q") || !strcmp(a, "--quiet")) {
        *(!strcmp(a, "--json") ? &o->json : &o->quiet) = 1;
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

/* ---- machine output ------------------------------------------------------------------------ */

int cli_json_number(cJSON *o, const char *key, double v)
{
    if (!isfinite(v)) {
        cJSON_AddNullToObject(o, key);
        return 0;
    }
    cJSON_AddNumberToObject(o, key, v == 0 ? 0.0 : v); /* -0 → 0 */
    return 1;
}

/* Length of the well-formed UTF-8 sequence at s (at most n bytes), 0 when there is none:
 * no overlong forms, no surrogates, nothing above U+10FFFF (RFC 3629). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!len || len > n)
        return 0;
    unsigned lo = 0x80, hi = 0xbf; /* the second byte's range */
    if (c == 0xe0) lo = 0xa0;
    else if (c == 0xed) hi = 0x9f;
    else if (c == 0xf0) lo = 0x90;
    else if (c == 0xf4) hi = 0x8f;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

size_t cli_utf8_valid_prefix(const char *s, size_t n)
{
    size_t i = 0, k;
    while (i < n && (k = utf8_seq((const unsigned char *)s + i, n - i)))
        i += k;
    return i;
}

/* A valid UTF-8 copy of s (cJSON_malloc'd), or NULL when s is valid already or memory fails
 * (*oom set). */
static char *utf8_fixed(const char *s, int *oom)
{
    size_t n = strlen(s);
    if (cli_utf8_valid_prefix(s, n) == n)
        return NULL;
    char *out = cJSON_malloc(3 * n + 1), *o = out;
    if (!out) {
        *oom = 1;
        return NULL;
    }
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k) {
            memcpy(o, s + i, k);
            o += k;
            i += k;
        } else { /* U+FFFD REPLACEMENT CHARACTER */
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    *o = 0;
    return out;
}

static size_t sanitize(cJSON *item, int *oom)
{
    size_t changed = 0;
    for (; item; item = item->next) {
        char *fixed;
        if (item->string && (fixed = utf8_fixed(item->string, oom))) {
            if (!(item->type & cJSON_StringIsConst))
                cJSON_free(item->string);
            item->string = fixed;
            item->type &= ~cJSON_StringIsConst;
            changed++;
        }
        if (cJSON_IsString(item) && item->valuestring && (fixed = utf8_fixed(item->valuestring, oom))) {
            cJSON_free(item->valuestring);
            item->valuestring = fixed;
            changed++;
        }
        changed += sanitize(item->child, oom);
    }
    return changed;
}

int cli_json_print(cJSON *doc, int pretty)
{
    int oom = !doc;
    size_t changed = doc ? sanitize(doc, &oom) : 0;
    if (changed && cJSON_IsObject(doc))
        cJSON_AddNumberToObject(doc, "invalid_utf8_replaced", (double)changed);
    char *s = oom ? NULL : pretty ? cJSON_Print(doc) : cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (!s) {
        fprintf(stderr, "qkit: out of memory printing the JSON output\n");
        return CLI_IO;
    }
    int bad = puts(s) == EOF || fflush(stdout) != 0;
    cJSON_free(s);
    if (bad)
        fprintf(stderr, "qkit: cannot write to stdout: %s\n", strerror(errno));
    return bad ? CLI_IO : CLI_OK;
}

/* ---- non-finite figures -------------------------------------------------------------------- */

int cli_explain_nonfinite(const void *model, const char *figure, qk_err *err)
{
    const cv_eval_model *em = model;
    for (uint64_t i = 0; em->g && i < gguf_n_tensors(em->g); i++) {
        const gguf_tensor_info *t = gguf_tensor(em->g, i);
        int64_t row = qz_first_nonfinite_row(t->type, t->data, t->ne[0], t->ne[1] * t->ne[2] * t->ne[3], 0);
        if (row >= 0)
            return qk_err_set(err, QK_ERANGE, "%s: tensor '%s': row %lld holds a non-finite value "
                              "(NaN or Inf), so the %s is not finite", em->path, t->name,
                              (long long)row, figure);
    }
    for (size_t i = 0; em->plan && i < cv_plan_n_tensors(em->plan); i++) {
        const cv_tensor *t = cv_plan_tensor(em->plan, i);
        int type;
        const void *data;
        int64_t row = cv_plan_in_place(em->plan, i, &type, &data)
                          ? qz_first_nonfinite_row(type, data, t->ne[0], t->ne[1] * t->ne[2] * t->ne[3], 0)
                          : -1;
        if (row >= 0)
            return qk_err_set(err, QK_ERANGE, "%s: tensor '%s' (%s): row %lld holds a non-finite "
                              "value (NaN or Inf), so the %s is not finite", em->path, t->name,
                              t->src_name, (long long)row, figure);
    }
    return qk_err_set(err, QK_ERANGE, "%s: the %s is not finite (NaN or Inf): the model's "
                      "log-probabilities overflow", em->path, figure);
}

/* ---- threads ------------------------------------------------------------------------------- */

static void *idle(void *arg) { return arg; }

int cli_threads(int requested)
{
    enum { MAX_THREADS = 4096 };
    int want = requested > 0 ? requested : omp_get_max_threads(), made = 0;
    if (want > MAX_THREADS)
        want = MAX_THREADS;
    pthread_t *th = want > 1 ? malloc((size_t)(want - 1) * sizeof *th) : NULL;
    /* all alive at once, with the default stack libgomp uses too; glibc keeps the stacks cached
     * after the joins, so the pool below reuses them */
    while (th && made < want - 1 && pthread_create(&th[made], NULL, idle, NULL) == 0)
        made++;
    for (int i = 0; i < made; i++)
        pthread_join(th[i], NULL);
    free(th);
    int n = made + 1;
    if (n < want)
        fprintf(stderr, "qkit: warning: only %d of %d threads could be started (memory limit?): "
                        "using %d\n", n, want, n);
    omp_set_num_threads(n);
#pragma omp parallel num_threads(n)
    {
        (void)0; /* starts the pool */
    }
    return n;
}
