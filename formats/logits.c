#include "logits.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "outfile.h"

#define LG_MAGIC "QKLOGIT1"
#define LG_VERSION 1
#define LG_HEADER_BYTES 28

struct lg_writer {
    of_file *f;
    ZSTD_CCtx *z;
    lg_header h;
    uint32_t written;
    void *out;
    size_t out_cap;
    char path[4096];
};

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int compress(lg_writer *w, const void *data, size_t n, ZSTD_EndDirective end, qk_err *err)
{
    ZSTD_inBuffer in = {data, n, 0};
    int done;
    do {
        ZSTD_outBuffer out = {w->out, w->out_cap, 0};
        size_t left = ZSTD_compressStream2(w->z, &out, &in, end);
        if (ZSTD_isError(left))
            return qk_err_set(err, QK_EINTERNAL, "%s: zstd: %s", w->path, ZSTD_getErrorName(left));
        if (fwrite(w->out, 1, out.pos, of_stream(w->f)) != out.pos)
            return qk_err_set(err, QK_EIO, "%s: write failed: %s", w->path, strerror(errno));
        done = end == ZSTD_e_end ? left == 0 : in.pos == in.size;
    } while (!done);
    return QK_OK;
}

static int sizes_ok(const lg_header *h)
{
    return h->n_vocab > 0 && h->n_ctx > 1 && h->n_scored > 0 && h->n_scored < h->n_ctx &&
           h->n_chunks > 0 && (uint64_t)h->n_scored * h->n_vocab < (1ull << 34);
}

int lg_writer_open(lg_writer **out, const char *path, const lg_header *h, qk_err *err)
{
    *out = NULL;
    if (!sizes_ok(h))
        return qk_err_set(err, QK_ERANGE, "%s: invalid logits header", path);
    lg_writer *w = calloc(1, sizeof *w);
    if (!w)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    snprintf(w->path, sizeof w->path, "%s", path);
    w->h = *h;
    w->out_cap = ZSTD_CStreamOutSize();
    w->out = malloc(w->out_cap);
    w->z = ZSTD_createCCtx();
    int rc = !w->out || !w->z ? qk_err_set(err, QK_ENOMEM, "%s: out of memory", path) : of_open(&w->f, path, err);
    if (!rc) {
        ZSTD_CCtx_setParameter(w->z, ZSTD_c_compressionLevel, 3);
        unsigned char hdr[LG_HEADER_BYTES];
        memcpy(hdr, LG_MAGIC, 8);
        const uint32_t v[5] = {LG_VERSION, h->n_vocab, h->n_ctx, h->n_scored, h->n_chunks};
        for (int i = 0; i < 5; i++)
            put_u32(hdr + 8 + 4 * i, v[i]);
        rc = compress(w, hdr, sizeof hdr, ZSTD_e_continue, err);
    }
    if (rc) {
        lg_writer_abort(w);
        return rc;
    }
    *out = w;
    return QK_OK;
}

int lg_writer_chunk(lg_writer *w, const int32_t *tokens, const float *logp, qk_err *err)
{
    if (w->written >= w->h.n_chunks)
        return qk_err_set(err, QK_EINTERNAL, "%s: more chunks than the header declares", w->path);
    int rc = compress(w, tokens, (size_t)w->h.n_ctx * sizeof(int32_t), ZSTD_e_continue, err);
    if (!rc)
        rc = compress(w, logp, (size_t)w->h.n_scored * w->h.n_vocab * sizeof(float), ZSTD_e_continue, err);
    w->written += rc == QK_OK;
    return rc;
}

static void writer_free(lg_writer *w)
{
    ZSTD_freeCCtx(w->z);
    free(w->out);
    free(w);
}

int lg_writer_commit(lg_writer *w, qk_err *err)
{
    int rc = w->written == w->h.n_chunks
                 ? compress(w, NULL, 0, ZSTD_e_end, err)
                 : qk_err_set(err, QK_EINTERNAL, "%s: %u of %u chunks written", w->path, w->written, w->h.n_chunks);
    if (rc)
        of_abort(w->f);
    else
        rc = of_commit(w->f, err);
    writer_free(w);
    return rc;
}

void lg_writer_abort(lg_writer *w)
{
    if (!w)
        return;
    of_abort(w->f);
    writer_free(w);
}

struct lg_reader {
    FILE *fp;
    ZSTD_DCtx *z;
    lg_header h;
    void *in;
    size_t in_cap;
    ZSTD_inBuffer inb;
    char path[4096];
};

/* Fills exactly n decompressed bytes; a short stream is a truncated file. */
static int read_exact(lg_reader *r, void *dst, size_t n, qk_err *err)
{
    ZSTD_outBuffer out = {dst, n, 0};
    while (out.pos < out.size) {
        if (r->inb.pos == r->inb.size) {
            size_t got = fread(r->in, 1, r->in_cap, r->fp);
            if (got == 0)
                return qk_err_set(err, QK_EFORMAT, "%s: file is truncated", r->path);
            r->inb = (ZSTD_inBuffer){r->in, got, 0};
        }
        size_t rc = ZSTD_decompressStream(r->z, &out, &r->inb);
        if (ZSTD_isError(rc))
            return qk_err_set(err, QK_EFORMAT, "%s: not a valid zstd stream: %s", r->path, ZSTD_getErrorName(rc));
    }
    return QK_OK;
}

/* The reader over fp (taken over: closed by lg_reader_close, also on failure); name in messages. */
static int reader_open(lg_reader **out, FILE *fp, int open_errno, const char *name, lg_header *h,
                       qk_err *err)
{
    *out = NULL;
    lg_reader *r = calloc(1, sizeof *r);
    if (!r) {
        if (fp)
            fclose(fp);
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", name);
    }
    snprintf(r->path, sizeof r->path, "%s", name);
    r->fp = fp;
    r->in_cap = ZSTD_DStreamInSize();
    r->in = malloc(r->in_cap);
    r->z = ZSTD_createDCtx();
    int rc = QK_OK;
    if (!r->fp)
        rc = qk_err_set(err, QK_EIO, "%s: cannot open: %s", name, strerror(open_errno));
    else if (!r->in || !r->z)
        rc = qk_err_set(err, QK_ENOMEM, "%s: out of memory", name);
    unsigned char hdr[LG_HEADER_BYTES];
    if (!rc && !(rc = read_exact(r, hdr, sizeof hdr, err))) {
        *h = (lg_header){get_u32(hdr + 12), get_u32(hdr + 16), get_u32(hdr + 20), get_u32(hdr + 24)};
        if (memcmp(hdr, LG_MAGIC, 8) || get_u32(hdr + 8) != LG_VERSION)
            rc = qk_err_set(err, QK_EFORMAT, "%s: not a qkit logits file (bad magic or version)", name);
        else if (!sizes_ok(h))
            rc = qk_err_set(err, QK_EFORMAT, "%s: invalid sizes in the header", name);
    }
    if (rc) {
        lg_reader_close(r);
        return rc;
    }
    r->h = *h;
    *out = r;
    return QK_OK;
}

int lg_reader_open(lg_reader **out, const char *path, lg_header *h, qk_err *err)
{
    FILE *fp = fopen(path, "rb");
    return reader_open(out, fp, errno, path, h, err);
}

int lg_reader_open_mem(lg_reader **out, const void *data, size_t size, const char *name, lg_header *h,
                       qk_err *err)
{
    FILE *fp = size ? fmemopen((void *)data, size, "rb") : fopen("/dev/null", "rb");
    return reader_open(out, fp, errno, name, h, err);
}

int lg_reader_chunk(lg_reader *r, int32_t *tokens, float *logp, qk_err *err)
{
    int rc = read_exact(r, tokens, (size_t)r->h.n_ctx * sizeof(int32_t), err);
    return rc ? rc : read_exact(r, logp, (size_t)r->h.n_scored * r->h.n_vocab * sizeof(float), err);
}

void lg_reader_close(lg_reader *r)
{
    if (!r)
        return;
    if (r->fp)
        fclose(r->fp);
    ZSTD_freeDCtx(r->z);
    free(r->in);
    free(r);
}
