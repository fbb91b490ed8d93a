/* sweep.c — quantize to several schemes, verify all in one pass, chart; see sweep.h. */
#include "sweep.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../quant/buf.h"
#include "convert.h"
#include "eval_model.h"
#include "mix.h"
#include "quantize.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void stage(const sw_params *p, const char *what, size_t done, size_t total)
{
    if (p->progress)
        p->progress(p->user, what, done, total);
}

static void file_size(const char *path, uint64_t *out)
{
    struct stat st;
    *out = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Quantizes one scheme to path; fills the row's size, bpw and timing. */
static int quantize_one(const sw_params *p, const char *model, const char *path, int ftype,
                        double bpw, const char *cache, sw_row *row, qk_err *err)
{
    qz_params q;
    qz_params_init(&q);
    q.in_path = model;
    q.out_path = path;
    q.ftype = ftype;
    q.n_threads = p->n_threads;
    q.imatrix_path = p->imatrix;
    if (bpw > 0) {
        q.target_bpw = bpw;
        q.calib_path = p->calib;
        q.sens_cache = cache;
    }
    qz_report *r = NULL;
    const double t0 = now_s();
    int rc = qz_quantize(&q, &r, NULL, err);
    row->seconds = now_s() - t0;
    if (!rc) {
        row->bpw = r->bpw;
        row->pred_kld = r->target ? r->pred_kld : NAN;
        file_size(path, &row->bytes);
    }
    qz_report_free(r);
    return rc;
}

int sw_run(const sw_params *p, sw_result *r, qk_err *err)
{
    memset(r, 0, sizeof *r);
    const size_t n = p->n_mixes + p->n_bpw;
    if (n == 0 || n > SW_MAX_SCHEMES)
        return qk_err_set(err, QK_ERANGE, "between 1 and %d schemes", SW_MAX_SCHEMES);
    if (p->n_bpw && !p->calib)
        return qk_err_set(err, QK_EFORMAT, "size-budget points need a calibration text");
    int ftypes[SW_MAX_SCHEMES];
    for (size_t i = 0; i < p->n_mixes; i++) {
        const mx_mix *m = mx_mix_from_name(p->mixes[i]);
        if (!m)
            return qk_err_set(err, QK_EFORMAT, "unknown quantization mix '%s'", p->mixes[i]);
        ftypes[i] = m->ftype;
    }
    char *paths[SW_MAX_SCHEMES + 2] = {0};
    const size_t plen = strlen(p->tmp_dir) + 64;
    int rc = QK_OK;
    for (size_t i = 0; i < n + 2 && !rc; i++) {
        if (!(paths[i] = malloc(plen)))
            rc = qk_err_set(err, QK_ENOMEM, "out of memory");
        else if (i < n)
            snprintf(paths[i], plen, "%s/scheme-%02zu.gguf", p->tmp_dir, i);
    }
    const char *model = p->model;
    char *f32 = paths[n], *cache = paths[n + 1];
    if (!rc) {
        snprintf(f32, plen, "%s/model-f32.gguf", p->tmp_dir);
        snprintf(cache, plen, "%s/sensitivities.json", p->tmp_dir);
    }
    struct stat st;
    if (!rc && stat(p->model, &st) == 0 && S_ISDIR(st.st_mode)) {
        cv_options o;
        cv_options_init(&o);
        o.outtype = "f32";
        o.n_threads = p->n_threads;
        stage(p, "convert", 0, 1);
        rc = cv_convert(p->model, f32, &o, NULL, err);
        model = f32;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        sw_row *row = &r->rows[i];
        const int is_target = i >= p->n_mixes;
        row->is_target = is_target;
        if (is_target)
            snprintf(row->name, sizeof row->name, "bpw %.2f", p->bpw[i - p->n_mixes]);
        else
            snprintf(row->name, sizeof row->name, "%s", mx_mix_from_name(p->mixes[i])->name);
        stage(p, row->name, i, n);
        rc = quantize_one(p, model, paths[i], is_target ? MX_FTYPE_Q4_K_M : ftypes[i],
                          is_target ? p->bpw[i - p->n_mixes] : 0, cache, row, err);
        if (rc == QK_ERANGE && is_target) { /* below the smallest possible size: say so, go on */
            row->skipped = 1;
            snprintf(row->note, sizeof row->note, "%s", err->msg);
            row->kld_mean = row->ppl = row->kld_p99 = row->top1 = row->bpw = NAN;
            rc = QK_OK;
        }
        if (rc)
            qk_err_prefix(err, row->name);
        r->n = i + 1;
    }
    eng_kld_summary s[SW_MAX_SCHEMES];
    const char *measured[SW_MAX_SCHEMES];
    int n_meas = 0;
    for (size_t i = 0; i < n && !rc; i++)
        if (!r->rows[i].skipped)
            measured[n_meas++] = paths[i];
    if (!rc && n_meas == 0)
        rc = qk_err_set(err, QK_ERANGE, "no scheme fits the model: %s", r->rows[0].note);
    if (!rc) {
        stage(p, "verify", n, n);
        const double t0 = now_s();
        rc = cv_verify_models(model, measured, n_meas, p->text, p->n_ctx, p->max_chunks, s, NULL,
                              NULL, err);
        r->seconds_verify = now_s() - t0;
    }
    for (size_t i = 0, m = 0; i < n && !rc; i++) {
        sw_row *row = &r->rows[i];
        if (row->skipped)
            continue;
        const size_t k = m++;
        row->ppl = s[k].ppl;
        row->kld_mean = s[k].kld_mean;
        row->kld_p99 = s[k].kld_p99;
        row->top1 = s[k].top1;
        r->ref_ppl = s[k].ppl_ratio > 0 ? s[k].ppl / s[k].ppl_ratio : NAN;
    }
    for (size_t i = 0; i < n + 2; i++) {
        if (paths[i])
            unlink(paths[i]);
        free(paths[i]);
    }
    return rc;
}

/* ---- SVG chart ------------------------------------------------------------------------------ */

typedef struct {
    qk_buf b;
    int failed;
} out;

static void put(out *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void put(out *o, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line || qk_buf_append(&o->b, line, (size_t)n))
        o->failed = 1;
}

static void put_escaped(out *o, const char *s)
{
    for (; *s; s++) {
        const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;"
                      : *s == '"' ? "&quot;" : NULL;
        char c[2] = {*s, 0};
        if ((unsigned char)*s < 0x20)
            c[0] = '?';
        put(o, "%s", e ? e : c);
    }
}

#define W 760
#define H 460
#define L 80
#define R 170
#define T 50
#define B 60

char *sw_svg(const sw_result *r, const char *title)
{
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (size_t i = 0; i < r->n; i++) {
        const sw_row *w = &r->rows[i];
        if (!(w->kld_mean > 0) || !isfinite(w->bpw))
            continue;
        x0 = fmin(x0, w->bpw), x1 = fmax(x1, w->bpw);
        y0 = fmin(y0, w->kld_mean), y1 = fmax(y1, w->kld_mean);
    }
    if (!isfinite(x0)) /* nothing to plot: an empty frame */
        x0 = 2, x1 = 8, y0 = 1e-3, y1 = 1;
    x0 = floor(x0 * 2 - 1) / 2, x1 = ceil(x1 * 2 + 1) / 2;
    const double ly0 = floor(log10(y0)), ly1 = fmax(ceil(log10(y1)), ly0 + 1);
    const double pw = W - L - R, ph = H - T - B;
#define PX(v) (L + ((v) - x0) / (x1 - x0) * pw)
#define PY(v) (T + ph - (log10(v) - ly0) / (ly1 - ly0) * ph)
    out o = {{0}, 0};
    put(&o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    put(&o, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n<text x=\"%d\" y=\"28\" "
            "font-size=\"15\">", W, H, L);
    put_escaped(&o, title);
    put(&o, "</text>\n");
    /* grid and axes */
    for (double x = x0; x <= x1 + 1e-9; x += 0.5)
        put(&o, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.1f</text>\n",
            PX(x), T, PX(x), T + ph, PX(x), T + ph + 18, x);
    for (double d = ly0; d <= ly1 + 1e-9; d++)
        for (int m = 1; m <= (d < ly1 ? 5 : 1); m += m == 1 ? 1 : 3) {
            const double v = (double)m * pow(10, d);
            put(&o, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>"
                    "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                L, PY(v), L + pw, PY(v), m == 1 ? "#ccc" : "#eee", L - 6, PY(v) + 4, v);
        }
    put(&o, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#333\"/>\n",
        L, T, pw, ph);
    put(&o, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">bits per weight</text>\n", L + pw / 2,
        H - 15);
    put(&o, "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">"
            "mean KL divergence (log)</text>\n", T + ph / 2, T + ph / 2);
    /* two series: mixes (circles), budget points (squares joined by a line) */
    static const char *const COLOR[2] = {"#d62728", "#1f77b4"};
    for (int series = 0; series < 2; series++) {
        int first = 1;
        put(&o, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", COLOR[series]);
        for (size_t i = 0; i < r->n; i++) {
            const sw_row *w = &r->rows[i];
            if (w->is_target != series || !(w->kld_mean > 0))
                continue;
            put(&o, "%s%.1f,%.1f", first ? "" : " ", PX(w->bpw), PY(w->kld_mean));
            first = 0;
        }
        put(&o, "\"/>\n");
        for (size_t i = 0; i < r->n; i++) {
            const sw_row *w = &r->rows[i];
            if (w->is_target != series || !(w->kld_mean > 0))
                continue;
            if (series == 0)
                put(&o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/>", PX(w->bpw),
                    PY(w->kld_mean), COLOR[0]);
            else
                put(&o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"9\" height=\"9\" fill=\"%s\"/>",
                    PX(w->bpw) - 4.5, PY(w->kld_mean) - 4.5, COLOR[1]);
            put(&o, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\" font-size=\"11\">", PX(w->bpw) + 7,
                PY(w->kld_mean) + (series ? 14 : -7), COLOR[series]);
            put_escaped(&o, w->name);
            put(&o, "</text>\n");
        }
    }
    put(&o, "<circle cx=\"%d\" cy=\"%d\" r=\"5\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">llama.cpp "
            "mixes</text>\n", W - R + 20, T + 20, COLOR[0], W - R + 32, T + 24);
    put(&o, "<rect x=\"%d\" y=\"%d\" width=\"9\" height=\"9\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">"
            "qkit --target-bpw</text>\n", W - R + 15, T + 40, COLOR[1], W - R + 32, T + 49);
    put(&o, "</svg>\n");
#undef PX
#undef PY
    if (o.failed || o.b.oom) {
        qk_buf_free(&o.b);
        return NULL;
    }
    return o.b.p;
}
