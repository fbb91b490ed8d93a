/* spm_model.c — a hand-written protobuf decoder and encoder for just the ModelProto fields we
 * need.
 *
 * Wire format: each field is a varint key (field_number << 3 | wire_type) followed by a varint
 * (type 0), 8 bytes (1), a varint length and that many bytes (2) or 4 bytes (5). Groups (3, 4)
 * are obsolete and never appear in sentencepiece models, so they are rejected. Unknown fields are
 * skipped, as protobuf requires, but still bounds-checked. */
#include "spm_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/buf.h"
#include "file.h"
#include "outfile.h"

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* A window [p, end) of the file; `base` is the start of the whole file, for offsets in errors. */
typedef struct {
    const uint8_t *base, *p, *end;
    const char *name;
} pb_reader;

typedef struct {
    uint32_t number;
    int wire;
    uint64_t v;          /* WT_VARINT value, or WT_I32/WT_I64 raw bits */
    const uint8_t *data; /* WT_LEN payload */
    size_t len;
    size_t offset; /* of the key, from the start of the file */
} pb_field;

static size_t pb_off(const pb_reader *r, const uint8_t *p) { return (size_t)(p - r->base); }

static int pb_varint(pb_reader *r, uint64_t *out, qk_err *err)
{
    const uint8_t *start = r->p;
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return qk_err_set(err, QK_EFORMAT, "%s: truncated varint at byte %zu", r->name,
                              pb_off(r, start));
        uint8_t b = *r->p++;
        /* The 10th byte may only carry the top bit of a 64-bit value. */
        if (shift == 63 && b > 1)
            return qk_err_set(err, QK_EFORMAT, "%s: varint at byte %zu overflows 64 bits", r->name,
                              pb_off(r, start));
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return QK_OK;
        }
    }
    return qk_err_set(err, QK_EFORMAT, "%s: varint at byte %zu is longer than 10 bytes", r->name,
                      pb_off(r, start));
}

static int pb_fixed(pb_reader *r, size_t n, uint64_t *out, qk_err *err)
{
    if ((size_t)(r->end - r->p) < n)
        return qk_err_set(err, QK_EFORMAT, "%s: %zu-byte field at byte %zu runs past the end (%zu)",
                          r->name, n, pb_off(r, r->p), pb_off(r, r->end));
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += n;
    *out = v;
    return QK_OK;
}

/* Reads the next field; returns 1 with *f filled, 0 at the end of the window, or an error. */
static int pb_next(pb_reader *r, pb_field *f, qk_err *err)
{
    if (r->p >= r->end)
        return 0;
    f->offset = pb_off(r, r->p);
    uint64_t key;
    int rc = pb_varint(r, &key, err);
    if (rc)
        return rc;
    f->number = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    if ((key >> 3) == 0 || (key >> 3) > 0x1fffffff)
        return qk_err_set(err, QK_EFORMAT, "%s: invalid field number %llu at byte %zu", r->name,
                          (unsigned long long)(key >> 3), f->offset);
    f->data = NULL;
    f->len = 0;
    switch (f->wire) {
    case WT_VARINT: rc = pb_varint(r, &f->v, err); break;
    case WT_I64: rc = pb_fixed(r, 8, &f->v, err); break;
    case WT_I32: rc = pb_fixed(r, 4, &f->v, err); break;
    case WT_LEN: {
        uint64_t len;
        rc = pb_varint(r, &len, err);
        if (rc)
            return rc;
        if (len > (uint64_t)(r->end - r->p))
            return qk_err_set(err, QK_EFORMAT,
                              "%s: field %u at byte %zu has length %llu but only %zu bytes remain",
                              r->name, f->number, f->offset, (unsigned long long)len,
                              (size_t)(r->end - r->p));
        f->data = r->p;
        f->len = (size_t)len;
        r->p += len;
        break;
    }
    default:
        return qk_err_set(err, QK_EFORMAT, "%s: field %u at byte %zu has unsupported wire type %d",
                          r->name, f->number, f->offset, f->wire);
    }
    return rc ? rc : 1;
}

static pb_reader pb_sub(const pb_reader *r, const pb_field *f)
{
    pb_reader s = {r->base, f->data, f->data + f->len, r->name};
    return s;
}

static int pb_expect(const pb_reader *r, const pb_field *f, int wire, const char *what, qk_err *err)
{
    if (f->wire == wire)
        return QK_OK;
    return qk_err_set(err, QK_EFORMAT,
                      "%s: %s (field %u) at byte %zu has wire type %d, expected %d", r->name, what,
                      f->number, f->offset, f->wire, wire);
}

/* int32 fields are sign-extended to 64 bits on the wire; anything else is out of range. */
static int pb_int32(const pb_reader *r, const pb_field *f, const char *what, int32_t *out,
                    qk_err *err)
{
    int rc = pb_expect(r, f, WT_VARINT, what, err);
    if (rc)
        return rc;
    int64_t s = (int64_t)f->v;
    if (s < INT32_MIN || s > INT32_MAX)
        return qk_err_set(err, QK_EFORMAT, "%s: %s at byte %zu = %lld does not fit in int32",
                          r->name, what, f->offset, (long long)s);
    *out = (int32_t)s;
    return QK_OK;
}

static int pb_bool(const pb_reader *r, const pb_field *f, const char *what, bool *out, qk_err *err)
{
    int rc = pb_expect(r, f, WT_VARINT, what, err);
    if (!rc)
        *out = f->v != 0;
    return rc;
}

static int parse_piece(const pb_reader *r, const pb_field *pf, uint32_t index, spm_piece *out,
                       char **pool, qk_err *err)
{
    pb_reader s = pb_sub(r, pf);
    pb_field f;
    int rc;
    bool have_text = false;
    out->score = 0.0f;
    out->type = SPM_PIECE_NORMAL;
    while ((rc = pb_next(&s, &f, err)) == 1) {
        if (f.number == 1) {
            if ((rc = pb_expect(&s, &f, WT_LEN, "piece text", err)))
                return rc;
            /* The pool was sized from the enclosing message, so the text always fits. */
            memcpy(*pool, f.data, f.len);
            (*pool)[f.len] = '\0';
            out->text = *pool;
            out->len = (uint32_t)f.len;
            *pool += f.len + 1;
            have_text = true;
        } else if (f.number == 2) {
            if ((rc = pb_expect(&s, &f, WT_I32, "piece score", err)))
                return rc;
            uint32_t bits = (uint32_t)f.v;
            memcpy(&out->score, &bits, sizeof bits);
        } else if (f.number == 3) {
            if ((rc = pb_expect(&s, &f, WT_VARINT, "piece type", err)))
                return rc;
            if (f.v < SPM_PIECE_NORMAL || f.v > SPM_PIECE_BYTE)
                return qk_err_set(err, QK_EFORMAT, "%s: piece %u at byte %zu has unknown type %llu",
                                  r->name, index, f.offset, (unsigned long long)f.v);
            out->type = (int)f.v;
        }
    }
    if (rc < 0)
        return rc;
    if (!have_text || out->len == 0)
        return qk_err_set(err, QK_EFORMAT, "%s: piece %u at byte %zu has no text", r->name, index,
                          pf->offset);
    if (isnan(out->score))
        return qk_err_set(err, QK_EFORMAT, "%s: piece %u ('%s') has a NaN score", r->name, index,
                          out->text);
    return QK_OK;
}

static int parse_trainer(const pb_reader *r, const pb_field *tf, spm_model *m, qk_err *err)
{
    pb_reader s = pb_sub(r, tf);
    pb_field f;
    int rc;
    while ((rc = pb_next(&s, &f, err)) == 1) {
        int32_t v;
        rc = QK_OK;
        switch (f.number) {
        case 3:
            if ((rc = pb_int32(&s, &f, "trainer_spec.model_type", &v, err)))
                return rc;
            m->model_type = v;
            break;
        case 4: rc = pb_int32(&s, &f, "trainer_spec.vocab_size", &m->vocab_size, err); break;
        case 24:
            rc = pb_bool(&s, &f, "trainer_spec.treat_whitespace_as_suffix",
                         &m->treat_whitespace_as_suffix, err);
            break;
        case 35: rc = pb_bool(&s, &f, "trainer_spec.byte_fallback", &m->byte_fallback, err); break;
        case 40: rc = pb_int32(&s, &f, "trainer_spec.unk_id", &m->unk_id, err); break;
        case 41: rc = pb_int32(&s, &f, "trainer_spec.bos_id", &m->bos_id, err); break;
        case 42: rc = pb_int32(&s, &f, "trainer_spec.eos_id", &m->eos_id, err); break;
        case 43: rc = pb_int32(&s, &f, "trainer_spec.pad_id", &m->pad_id, err); break;
        default: break;
        }
        if (rc)
            return rc;
    }
    return rc;
}

static int parse_normalizer(const pb_reader *r, const pb_field *nf, spm_model *m, qk_err *err)
{
    pb_reader s = pb_sub(r, nf);
    pb_field f;
    int rc;
    while ((rc = pb_next(&s, &f, err)) == 1) {
        rc = QK_OK;
        switch (f.number) {
        case 1: {
            if ((rc = pb_expect(&s, &f, WT_LEN, "normalizer_spec.name", err)))
                return rc;
            size_t n =
                f.len < sizeof m->normalizer_name - 1 ? f.len : sizeof m->normalizer_name - 1;
            memcpy(m->normalizer_name, f.data, n);
            m->normalizer_name[n] = '\0';
            break;
        }
        case 2:
            rc = pb_expect(&s, &f, WT_LEN, "normalizer_spec.precompiled_charsmap", err);
            m->precompiled_charsmap_size = f.len;
            break;
        case 3:
            rc = pb_bool(&s, &f, "normalizer_spec.add_dummy_prefix", &m->add_dummy_prefix, err);
            break;
        case 4:
            rc = pb_bool(&s, &f, "normalizer_spec.remove_extra_whitespaces",
                         &m->remove_extra_whitespaces, err);
            break;
        case 5:
            rc = pb_bool(&s, &f, "normalizer_spec.escape_whitespaces", &m->escape_whitespaces, err);
            break;
        default: break;
        }
        if (rc)
            return rc;
    }
    return rc;
}

/* First pass: count the pieces and size the text pool, so the second pass never reallocates. */
static int count_pieces(pb_reader r, uint32_t *n, size_t *pool, qk_err *err)
{
    pb_field f;
    int rc;
    *n = 0;
    *pool = 0;
    while ((rc = pb_next(&r, &f, err)) == 1) {
        if (f.number != 1)
            continue;
        if ((rc = pb_expect(&r, &f, WT_LEN, "pieces", err)))
            return rc;
        if (*n == INT32_MAX)
            return qk_err_set(err, QK_EFORMAT, "%s: more than %d pieces", r.name, INT32_MAX);
        (*n)++;
        *pool += f.len + 1; /* the text is a part of the message, plus its NUL */
    }
    return rc;
}

static void set_defaults(spm_model *m)
{
    m->model_type = 1;
    m->vocab_size = 8000;
    m->unk_id = 0;
    m->bos_id = 1;
    m->eos_id = 2;
    m->pad_id = -1;
    m->add_dummy_prefix = true;
    m->remove_extra_whitespaces = true;
    m->escape_whitespaces = true;
}

static int parse_top(pb_reader r, spm_model *m, qk_err *err)
{
    pb_field f;
    int rc;
    char *pool = m->pool_;
    uint32_t i = 0;
    while ((rc = pb_next(&r, &f, err)) == 1) {
        rc = QK_OK;
        if (f.number == 1) {
            rc = parse_piece(&r, &f, i, &m->pieces[i], &pool, err);
            i++;
        } else if (f.number == 2) {
            rc = pb_expect(&r, &f, WT_LEN, "trainer_spec", err);
            if (!rc)
                rc = parse_trainer(&r, &f, m, err);
        } else if (f.number == 3) {
            rc = pb_expect(&r, &f, WT_LEN, "normalizer_spec", err);
            if (!rc)
                rc = parse_normalizer(&r, &f, m, err);
        }
        if (rc)
            return rc;
    }
    return rc;
}

int spm_model_parse(const void *data, size_t size, const char *name, spm_model **out, qk_err *err)
{
    *out = NULL;
    if (!name)
        name = "tokenizer.model";
    const uint8_t *b = data ? data : (const uint8_t *)"";
    pb_reader r = {b, b, b + size, name};
    uint32_t n;
    size_t pool;
    int rc = count_pieces(r, &n, &pool, err);
    if (rc)
        return rc;
    if (n == 0)
        return qk_err_set(err, QK_EFORMAT, "%s: no pieces (not a sentencepiece model?)", name);
    spm_model *m = calloc(1, sizeof *m);
    if (!m)
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", name);
    set_defaults(m);
    m->n_pieces = n;
    m->pieces = calloc(n, sizeof *m->pieces);
    m->pool_ = malloc(pool);
    if (!m->pieces || !m->pool_) {
        rc = qk_err_set(err, QK_ENOMEM, "%s: out of memory for %u pieces", name, n);
        goto fail;
    }
    rc = parse_top(r, m, err);
    if (rc)
        goto fail;
    *out = m;
    return QK_OK;
fail:
    spm_model_free(m);
    return rc;
}

int spm_model_load(const char *path, spm_model **out, qk_err *err)
{
    char *data;
    size_t size;
    *out = NULL;
    int rc = qk_file_read(path, QK_FILE_NO_LIMIT, &data, &size, err);
    if (rc)
        return rc;
    rc = spm_model_parse(data, size, path, out, err);
    free(data);
    return rc;
}

void spm_model_free(spm_model *m)
{
    if (!m)
        return;
    free(m->pieces);
    free(m->pool_);
    free(m);
}

/* ---- writer ---- */

/* The output grows in a qk_buf, whose sticky oom flag lets the encoder run to the end and the
 * failure be reported once. */
static void pw_varint(qk_buf *o, uint64_t v)
{
    uint8_t b[10];
    size_t k = 0;
    do {
        b[k++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    qk_buf_append(o, b, k);
}

static void pw_key(qk_buf *o, unsigned field, unsigned wire)
{
    pw_varint(o, (uint64_t)field << 3 | wire);
}

/* int32, bool and enum fields: a negative value is sign-extended to ten bytes, as protobuf
 * does (and as pb_int32 expects). */
static void pw_int(qk_buf *o, unsigned field, int64_t v)
{
    pw_key(o, field, WT_VARINT);
    pw_varint(o, (uint64_t)v);
}

static void pw_bytes(qk_buf *o, unsigned field, const void *data, size_t n)
{
    pw_key(o, field, WT_LEN);
    pw_varint(o, n);
    qk_buf_append(o, data, n);
}

static void pw_float(qk_buf *o, unsigned field, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    pw_key(o, field, WT_I32);
    qk_buf_append(o, b, sizeof b);
}

/* A finished sub-message as a length-delimited field of o; sub is emptied for reuse. */
static void pw_message(qk_buf *o, unsigned field, qk_buf *sub)
{
    o->oom |= sub->oom;
    pw_bytes(o, field, sub->p, sub->n);
    sub->n = 0;
}

static int check_pieces(const spm_piece *pieces, size_t n, const char *name, qk_err *err)
{
    if (n == 0 || n > INT32_MAX)
        return qk_err_set(err, QK_ERANGE, "%s: %zu pieces; a model holds 1 to %d", name, n,
                          INT32_MAX);
    for (size_t i = 0; i < n; i++) {
        const spm_piece *p = &pieces[i];
        if (p->len == 0)
            return qk_err_set(err, QK_ERANGE, "%s: piece %zu has no text", name, i);
        if (isnan(p->score))
            return qk_err_set(err, QK_ERANGE, "%s: piece %zu has a NaN score", name, i);
        if (p->type < SPM_PIECE_NORMAL || p->type > SPM_PIECE_BYTE)
            return qk_err_set(err, QK_ERANGE, "%s: piece %zu has unknown type %d", name, i,
                              p->type);
    }
    return QK_OK;
}

/* ModelProto (sentencepiece_model.proto), the fields parse_piece/trainer/normalizer read:
 * pieces = 1 {piece = 1, score = 2, type = 3}, trainer_spec = 2 {model_type = 3, vocab_size = 4,
 * treat_whitespace_as_suffix = 24, byte_fallback = 35, unk/bos/eos/pad_id = 40..43},
 * normalizer_spec = 3 {name = 1, add_dummy_prefix = 3, remove_extra_whitespaces = 4,
 * escape_whitespaces = 5}. */
static void encode(const spm_piece *pieces, size_t n, const spm_write_opts *w, qk_buf *o,
                   qk_buf *sub)
{
    for (size_t i = 0; i < n; i++) {
        pw_bytes(sub, 1, pieces[i].text, pieces[i].len);
        pw_float(sub, 2, pieces[i].score);
        if (pieces[i].type != SPM_PIECE_NORMAL) /* the default: sentencepiece omits it */
            pw_int(sub, 3, pieces[i].type);
        pw_message(o, 1, sub);
    }
    pw_int(sub, 3, w->model_type);
    pw_int(sub, 4, w->vocab_size);
    if (w->treat_whitespace_as_suffix)
        pw_int(sub, 24, 1);
    pw_int(sub, 35, w->byte_fallback);
    pw_int(sub, 40, w->unk_id);
    pw_int(sub, 41, w->bos_id);
    pw_int(sub, 42, w->eos_id);
    pw_int(sub, 43, w->pad_id);
    pw_message(o, 2, sub);
    if (w->normalizer_name)
        pw_bytes(sub, 1, w->normalizer_name, strlen(w->normalizer_name));
    pw_int(sub, 3, w->add_dummy_prefix);
    pw_int(sub, 4, w->remove_extra_whitespaces);
    pw_int(sub, 5, w->escape_whitespaces);
    pw_message(o, 3, sub);
}

int spm_model_serialize(const spm_piece *pieces, size_t n, const spm_write_opts *opts,
                        const char *name, uint8_t **out, size_t *size, qk_err *err)
{
    *out = NULL;
    *size = 0;
    if (!name)
        name = "tokenizer.model";
    int rc = check_pieces(pieces, n, name, err);
    if (rc)
        return rc;
    qk_buf o = {0}, sub = {0};
    encode(pieces, n, opts, &o, &sub);
    qk_buf_free(&sub);
    if (o.oom) {
        qk_buf_free(&o);
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory encoding %zu pieces", name, n);
    }
    *out = (uint8_t *)o.p;
    *size = o.n;
    return QK_OK;
}

int spm_model_write(const char *path, const spm_piece *pieces, size_t n,
                    const spm_write_opts *opts, qk_err *err)
{
    uint8_t *data;
    size_t size;
    int rc = spm_model_serialize(pieces, n, opts, path, &data, &size, err);
    if (rc)
        return rc;
    rc = of_write_all(path, data, size, err);
    free(data);
    return rc;
}
