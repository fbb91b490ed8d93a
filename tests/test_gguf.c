/* test_gguf.c — GGUF reader and streaming writer: round trips of every value and tensor type,
 * byte layouts built by hand (independently of the writer), split models, the published
 * stories260K.gguf (values read off its header with a separate script), every malformed input
 * the reader must refuse, and the writer's refusals. */
#include "tu.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../formats/gguf.h"
#include "../quant/buf.h"
#include "../quant/types.h"

/* ---- a byte builder for hand-made files ---------------------------------------------------- */

typedef qk_buf bb;

static void bb_put(bb *b, const void *d, size_t n) { assert_int_equal(qk_buf_append(b, d, n), QK_OK); }

static void bb_le(bb *b, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        bb_put(b, &c, 1);
    }
}

static void bb_u16(bb *b, uint16_t v) { bb_le(b, v, 2); }
static void bb_u32(bb *b, uint32_t v) { bb_le(b, v, 4); }
static void bb_u64(bb *b, uint64_t v) { bb_le(b, v, 8); }

static void bb_str(bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}

static void bb_pad(bb *b, size_t a)
{
    while (b->n % a)
        bb_put(b, "", 1);
}

static void bb_hdr(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}

static void bb_kv_u32(bb *b, const char *key, uint32_t v)
{
    bb_str(b, key);
    bb_u32(b, GGUF_TYPE_U32);
    bb_u32(b, v);
}

static void bb_kv_u16(bb *b, const char *key, uint16_t v)
{
    bb_str(b, key);
    bb_u32(b, GGUF_TYPE_U16);
    bb_u16(b, v);
}

static void bb_kv_i32(bb *b, const char *key, int32_t v)
{
    bb_str(b, key);
    bb_u32(b, GGUF_TYPE_I32);
    bb_u32(b, (uint32_t)v);
}

typedef struct {
    const char *name;
    uint32_t n_dims;
    int64_t ne[5];
    uint32_t type;
    uint64_t offset;
} tspec;

static void bb_tinfo(bb *b, const tspec *t)
{
    bb_str(b, t->name);
    bb_u32(b, t->n_dims);
    for (uint32_t d = 0; d < t->n_dims; d++)
        bb_u64(b, (uint64_t)t->ne[d]);
    bb_u32(b, t->type);
    bb_u64(b, t->offset);
}

/* Pseudo-random data bytes so that misplaced data shows up. */
static void bb_data(bb *b, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)(tu_rand(&seed) >> 56);
        bb_put(b, &c, 1);
    }
}

/* A valid v3 file: key "a" = u32 7, the given tensors, padding to 32 and data_bytes of data. */
static void bb_file(bb *b, const tspec *ts, int n, size_t data_bytes)
{
    bb_hdr(b, 3, (uint64_t)n, 1);
    bb_kv_u32(b, "a", 7);
    for (int i = 0; i < n; i++)
        bb_tinfo(b, &ts[i]);
    bb_pad(b, 32);
    bb_data(b, data_bytes, 42);
}

static void bb_free(bb *b) { qk_buf_free(b); }

/* Both ways in: from memory and from a file. Each must refuse with code and fragment. */
static void expect_fail(const bb *b, int code, const char *fragment)
{
    gguf_ctx *ctx = (gguf_ctx *)b;
    qk_err err = {{0}};
    int rc = gguf_open_mem(&ctx, b->p, b->n, "bad.gguf", &err);
    if (rc != code || !strstr(err.msg, fragment) || strncmp(err.msg, "bad.gguf: ", 10) != 0)
        fail_msg("memory: got %d '%s', expected %d with '%s'", rc, err.msg, code, fragment);
    assert_null(ctx);
    const char *path = tu_tmp("bad.gguf");
    tu_write(path, b->p, b->n);
    memset(&err, 0, sizeof err);
    rc = gguf_open(&ctx, path, &err);
    if (rc != code || !strstr(err.msg, fragment) || !strstr(err.msg, "bad.gguf: "))
        fail_msg("file: got %d '%s', expected %d with '%s'", rc, err.msg, code, fragment);
    assert_null(ctx);
}

static gguf_ctx *open_ok(const char *path)
{
    gguf_ctx *ctx = NULL;
    qk_err err = {{0}};
    int rc = gguf_open(&ctx, path, &err);
    if (rc)
        fail_msg("open %s: %s", path, err.msg);
    return ctx;
}

static void commit_ok(gguf_writer *w)
{
    qk_err err = {{0}};
    int rc = gguf_writer_commit(w, &err);
    if (rc)
        fail_msg("commit: %s", err.msg);
}

static gguf_writer *writer_ok(const char *path, const gguf_split_opts *opts)
{
    gguf_writer *w = NULL;
    qk_err err = {{0}};
    assert_int_equal(gguf_writer_open(&w, path, opts, &err), QK_OK);
    return w;
}

/* ---- values -------------------------------------------------------------------------------- */

static size_t elem_size(enum gguf_vtype t)
{
    switch (t) {
    case GGUF_TYPE_U8: case GGUF_TYPE_I8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_U16: case GGUF_TYPE_I16: return 2;
    case GGUF_TYPE_U32: case GGUF_TYPE_I32: case GGUF_TYPE_F32: return 4;
    case GGUF_TYPE_U64: case GGUF_TYPE_I64: case GGUF_TYPE_F64: return 8;
    default: return 0;
    }
}

/* Bitwise equality (NaN payloads and -0.0 included). */
static int value_eq(const gguf_value *a, const gguf_value *b)
{
    if (a->type != b->type)
        return 0;
    if (a->type == GGUF_TYPE_STR)
        return a->str.len == b->str.len && memcmp(a->str.ptr, b->str.ptr, a->str.len) == 0 &&
               a->str.ptr[a->str.len] == '\0';
    if (a->type != GGUF_TYPE_ARR)
        return memcmp(&a->u64, &b->u64, elem_size(a->type)) == 0;
    if (a->arr.type != b->arr.type || a->arr.n != b->arr.n)
        return 0;
    for (uint64_t i = 0; i < a->arr.n; i++) {
        if (a->arr.type == GGUF_TYPE_STR) {
            gguf_value x = {.type = GGUF_TYPE_STR, .str = ((const gguf_str *)a->arr.data)[i]};
            gguf_value y = {.type = GGUF_TYPE_STR, .str = ((const gguf_str *)b->arr.data)[i]};
            if (!value_eq(&x, &y))
                return 0;
        } else if (a->arr.type == GGUF_TYPE_ARR) {
            if (!value_eq(&((const gguf_value *)a->arr.data)[i], &((const gguf_value *)b->arr.data)[i]))
                return 0;
        }
    }
    size_t es = elem_size(a->arr.type);
    return !es || !a->arr.n || memcmp(a->arr.data, b->arr.data, es * a->arr.n) == 0;
}

/* One key of every kind, including strings with a NUL inside and arrays three levels deep. */
typedef struct {
    const char *key;
    gguf_value v;
} kvcase;

static const uint8_t A_U8[] = {0, 1, 255};
static const int8_t A_I8[] = {-128, 0, 127};
static const uint16_t A_U16[] = {0, 65535, 258};
static const int16_t A_I16[] = {-32768, 32767};
static const uint32_t A_U32[] = {0, 4294967295u, 16909060};
static const int32_t A_I32[] = {INT32_MIN, -1, INT32_MAX};
static const float A_F32[] = {-0.0f, 1.5f, 3.4e38f, 1e-45f};
static const bool A_BOOL[] = {true, false, true};
static const uint64_t A_U64[] = {UINT64_MAX, 0, 0x0102030405060708ull};
static const int64_t A_I64[] = {INT64_MIN, INT64_MAX};
static const double A_F64[] = {-0.0, 2.5, 1e308, 5e-324};
static const gguf_str A_STR[] = {{0, ""}, {5, "hello"}, {3, "a\0b"}, {4, "\xe2\x96\x81x"}};
static const uint32_t A_IN0[] = {1, 2, 3};
static const gguf_str A_IN1[] = {{2, "xy"}};
static const gguf_value A_NEST[] = {
    {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_U32, 3, A_IN0}},
    {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_U32, 0, NULL}},
    {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_STR, 1, A_IN1}},
};
static const gguf_value A_DEEP1[] = {{.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_ARR, 3, A_NEST}}};
static const gguf_value A_DEEP2[] = {{.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_ARR, 1, A_DEEP1}},
                                     {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_ARR, 0, NULL}}};

static const kvcase KVS[] = {
    {"t.u8", {.type = GGUF_TYPE_U8, .u8 = 200}},
    {"t.i8", {.type = GGUF_TYPE_I8, .i8 = -100}},
    {"t.u16", {.type = GGUF_TYPE_U16, .u16 = 65000}},
    {"t.i16", {.type = GGUF_TYPE_I16, .i16 = -32000}},
    {"t.u32", {.type = GGUF_TYPE_U32, .u32 = 4000000000u}},
    {"t.i32", {.type = GGUF_TYPE_I32, .i32 = -2000000000}},
    {"t.f32", {.type = GGUF_TYPE_F32, .f32 = 9.99999974738e-06f}},
    {"t.bool", {.type = GGUF_TYPE_BOOL, .b = true}},
    {"t.bool0", {.type = GGUF_TYPE_BOOL, .b = false}},
    {"t.str", {.type = GGUF_TYPE_STR, .str = {5, "llama"}}},
    {"t.str_nul", {.type = GGUF_TYPE_STR, .str = {7, "ab\0cd\0e"}}},
    {"t.str_empty", {.type = GGUF_TYPE_STR, .str = {0, ""}}},
    {"t.u64", {.type = GGUF_TYPE_U64, .u64 = 18446744073709551615ull}},
    {"t.i64", {.type = GGUF_TYPE_I64, .i64 = INT64_MIN}},
    {"t.f64", {.type = GGUF_TYPE_F64, .f64 = -1.0 / 3.0}},
    {"a.u8", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_U8, 3, A_U8}}},
    {"a.i8", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_I8, 3, A_I8}}},
    {"a.u16", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_U16, 3, A_U16}}},
    {"a.i16", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_I16, 2, A_I16}}},
    {"a.u32", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_U32, 3, A_U32}}},
    {"a.i32", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_I32, 3, A_I32}}},
    {"a.f32", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_F32, 4, A_F32}}},
    {"a.bool", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_BOOL, 3, A_BOOL}}},
    {"a.str", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_STR, 4, A_STR}}},
    {"a.u64", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_U64, 3, A_U64}}},
    {"a.i64", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_I64, 2, A_I64}}},
    {"a.f64", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_F64, 4, A_F64}}},
    {"a.empty", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_F32, 0, NULL}}},
    {"a.nested", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_ARR, 3, A_NEST}}},
    {"a.deep", {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_ARR, 2, A_DEEP2}}},
};
#define N_KVS (sizeof KVS / sizeof KVS[0])

/* Every tensor type of the table, 1 to 4 dimensions, filled with random bytes. */
typedef struct {
    char name[32];
    int type;
    uint32_t n_dims;
    int64_t ne[4];
    size_t nbytes;
    uint8_t *data;
} ttensor;

static int make_all_types(ttensor *out, uint64_t seed)
{
    int n = 0;
    for (int t = 0; t < Q_TYPE_COUNT; t++) {
        const q_type_info_t *ti = q_type_info(t);
        if (!ti)
            continue;
        ttensor *x = &out[n];
        snprintf(x->name, sizeof x->name, "blk.%d.%s", n, ti->name);
        x->type = t;
        x->n_dims = 1 + (uint32_t)(n % 4);
        int64_t dims[4] = {ti->blck_size * (1 + n % 3), 3, 2, 2};
        size_t nb = ti->type_size * (size_t)(dims[0] / ti->blck_size);
        for (uint32_t d = 0; d < 4; d++) {
            x->ne[d] = d < x->n_dims ? dims[d] : 1;
            if (d > 0)
                nb *= (size_t)x->ne[d];
        }
        x->nbytes = nb;
        x->data = malloc(nb);
        assert_non_null(x->data);
        for (size_t i = 0; i < nb; i++)
            x->data[i] = (uint8_t)(tu_rand(&seed) >> 56);
        n++;
    }
    return n;
}

static void free_tensors(ttensor *t, int n)
{
    for (int i = 0; i < n; i++)
        free(t[i].data);
}

/* Writes KVS and the tensors, each tensor in random pieces. */
static uint64_t g_source_id; /* write_model's gguf_writer_set_source_id */

static void write_model(const char *path, const gguf_split_opts *opts, uint32_t alignment,
                        const ttensor *ts, int n)
{
    gguf_writer *w = writer_ok(path, opts);
    gguf_writer_set_source_id(w, g_source_id);
    if (alignment)
        assert_int_equal(gguf_writer_set_u32(w, "general.alignment", alignment), QK_OK);
    for (size_t i = 0; i < N_KVS; i++)
        assert_int_equal(gguf_writer_set_value(w, KVS[i].key, &KVS[i].v), QK_OK);
    for (int i = 0; i < n; i++)
        assert_int_equal(gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne), QK_OK);
    assert_int_equal(gguf_writer_begin_data(w), QK_OK);
    uint64_t seed = 7;
    for (int i = 0; i < n; i++) {
        size_t done = 0;
        while (done < ts[i].nbytes) {
            size_t piece = 1 + (size_t)(tu_rand(&seed) % ts[i].nbytes);
            if (piece > ts[i].nbytes - done)
                piece = ts[i].nbytes - done;
            assert_int_equal(gguf_writer_write(w, ts[i].data + done, piece), QK_OK);
            done += piece;
        }
    }
    commit_ok(w);
}

static void check_model(const gguf_ctx *ctx, const ttensor *ts, int n, uint32_t alignment)
{
    assert_int_equal(gguf_n_kv(ctx), N_KVS + (alignment ? 1 : 0));
    for (size_t i = 0; i < N_KVS; i++) {
        int64_t k = gguf_find_key(ctx, KVS[i].key);
        assert_true(k >= 0);
        assert_string_equal(gguf_kv_key(ctx, (uint64_t)k), KVS[i].key);
        if (!value_eq(gguf_kv_value(ctx, (uint64_t)k), &KVS[i].v))
            fail_msg("value of %s differs", KVS[i].key);
    }
    assert_int_equal(gguf_n_tensors(ctx), (uint64_t)n);
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        const gguf_tensor_info *t = gguf_tensor(ctx, (uint64_t)i);
        assert_non_null(t);
        assert_string_equal(t->name, ts[i].name);
        assert_ptr_equal(gguf_find_tensor(ctx, ts[i].name), t);
        assert_int_equal(t->type, ts[i].type);
        assert_int_equal(t->n_dims, ts[i].n_dims);
        for (int d = 0; d < 4; d++)
            assert_int_equal(t->ne[d], ts[i].ne[d]);
        assert_int_equal(t->nbytes, ts[i].nbytes);
        assert_int_equal(t->offset % (alignment ? alignment : 32), 0);
        assert_memory_equal(t->data, ts[i].data, ts[i].nbytes);
        total += ts[i].nbytes;
    }
    assert_int_equal(gguf_data_bytes(ctx), total);
    assert_null(gguf_tensor(ctx, (uint64_t)n));
    assert_null(gguf_find_tensor(ctx, "no.such.tensor"));
}

/* ---- round trips --------------------------------------------------------------------------- */

static void test_roundtrip_every_type(void **state)
{
    (void)state;
    ttensor ts[Q_TYPE_COUNT];
    int n = make_all_types(ts, 1);
    assert_true(n >= 30);
    const char *path = tu_tmp("rt.gguf");
    write_model(path, NULL, 0, ts, n);
    gguf_ctx *ctx = open_ok(path);
    assert_int_equal(gguf_version(ctx), 3);
    assert_int_equal(gguf_alignment(ctx), 32);
    assert_int_equal(gguf_n_parts(ctx), 1);
    assert_string_equal(gguf_part_path(ctx, 0), path);
    check_model(ctx, ts, n, 0);
    /* the reader's view of part data is 32-aligned from the file start too */
    const uint8_t *d0 = gguf_tensor(ctx, 0)->data;
    for (int i = 1; i < n; i++)
        assert_int_equal(((const uint8_t *)gguf_tensor(ctx, (uint64_t)i)->data - d0) % 32, 0);
    gguf_close(ctx);
    free_tensors(ts, n);
}

/* Reader → writer copy of everything must reproduce the file byte for byte. */
static void copy_file(const char *src, const char *dst)
{
    gguf_ctx *ctx = open_ok(src);
    gguf_writer *w = writer_ok(dst, NULL);
    for (uint64_t i = 0; i < gguf_n_kv(ctx); i++)
        assert_int_equal(gguf_writer_set_value(w, gguf_kv_key(ctx, i), gguf_kv_value(ctx, i)), QK_OK);
    for (uint64_t i = 0; i < gguf_n_tensors(ctx); i++) {
        const gguf_tensor_info *t = gguf_tensor(ctx, i);
        assert_int_equal(gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne), QK_OK);
    }
    assert_int_equal(gguf_writer_begin_data(w), QK_OK);
    for (uint64_t i = 0; i < gguf_n_tensors(ctx); i++) {
        const gguf_tensor_info *t = gguf_tensor(ctx, i);
        assert_int_equal(gguf_writer_write_tensor(w, t->name, t->data, t->nbytes), QK_OK);
    }
    commit_ok(w);
    gguf_close(ctx);
}

static void assert_same_file(const char *a, const char *b)
{
    size_t na, nb;
    uint8_t *pa = tu_read(a, &na), *pb = tu_read(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na);
    free(pa);
    free(pb);
}

static void test_roundtrip_byte_exact(void **state)
{
    (void)state;
    ttensor ts[Q_TYPE_COUNT];
    int n = make_all_types(ts, 2);
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s", tu_tmp("exact-a.gguf"));
    snprintf(b, sizeof b, "%s", tu_tmp("exact-b.gguf"));
    write_model(a, NULL, 0, ts, n);
    copy_file(a, b);
    assert_same_file(a, b);
    free_tensors(ts, n);
}

/* The writer's bytes against a layout written out by hand from the format description. */
static void test_writer_layout_by_hand(void **state)
{
    (void)state;
    bb want = {0};
    bb_hdr(&want, 3, 2, 3);
    bb_kv_u32(&want, "general.alignment", 64);
    bb_str(&want, "s");
    bb_u32(&want, GGUF_TYPE_STR);
    bb_str(&want, "hi");
    bb_str(&want, "arr");
    bb_u32(&want, GGUF_TYPE_ARR);
    bb_u32(&want, GGUF_TYPE_ARR);
    bb_u64(&want, 1);
    bb_u32(&want, GGUF_TYPE_I16);
    bb_u64(&want, 2);
    bb_u16(&want, 0xfffe);
    bb_u16(&want, 5);
    bb_tinfo(&want, &(tspec){"x", 2, {3, 1}, Q_TYPE_F32, 0});
    bb_tinfo(&want, &(tspec){"y", 1, {32}, Q_TYPE_Q8_0, 64});
    bb_pad(&want, 64);
    float x[3] = {1.0f, -2.0f, 0.5f};
    bb_u32(&want, 0x3f800000);
    bb_u32(&want, 0xc0000000);
    bb_u32(&want, 0x3f000000);
    bb_pad(&want, 64);
    uint8_t y[34];
    for (int i = 0; i < 34; i++)
        y[i] = (uint8_t)(i * 7);
    bb_put(&want, y, 34);
    bb_pad(&want, 64);

    const char *path = tu_tmp("hand.gguf");
    gguf_writer *w = writer_ok(path, NULL);
    int16_t inner[2] = {-2, 5};
    gguf_value in = {.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_I16, 2, inner}};
    gguf_writer_set_u32(w, "general.alignment", 64);
    gguf_writer_set_str(w, "s", "hi");
    gguf_writer_set_arr(w, "arr", GGUF_TYPE_ARR, &in, 1);
    gguf_writer_add_tensor(w, "x", Q_TYPE_F32, 2, (int64_t[]){3, 1});
    gguf_writer_add_tensor(w, "y", Q_TYPE_Q8_0, 1, (int64_t[]){32});
    gguf_writer_begin_data(w);
    gguf_writer_write(w, x, sizeof x);
    gguf_writer_write(w, y, 10);
    gguf_writer_write(w, y + 10, 24);
    commit_ok(w);
    size_t n;
    uint8_t *got = tu_read(path, &n);
    assert_int_equal(n, want.n);
    assert_memory_equal(got, want.p, n);
    free(got);
    bb_free(&want);
}

static void test_alignment_64(void **state)
{
    (void)state;
    ttensor ts[Q_TYPE_COUNT];
    int n = make_all_types(ts, 3);
    const char *path = tu_tmp("a64.gguf");
    write_model(path, NULL, 64, ts, n);
    gguf_ctx *ctx = open_ok(path);
    assert_int_equal(gguf_alignment(ctx), 64);
    uint32_t al = 0;
    assert_int_equal(gguf_get_u32(ctx, "general.alignment", &al), QK_OK);
    assert_int_equal(al, 64);
    check_model(ctx, ts, n, 64);
    /* the data section itself starts on a 64-byte boundary of the file */
    size_t size;
    uint8_t *file = tu_read(path, &size);
    const gguf_tensor_info *t0 = gguf_tensor(ctx, 0);
    for (size_t off = 0; off + t0->nbytes <= size; off += 64)
        if (memcmp(file + off, t0->data, t0->nbytes) == 0)
            goto found;
    fail_msg("first tensor not found at a 64-byte boundary");
found:
    free(file);
    gguf_close(ctx);
    free_tensors(ts, n);
}

static void test_v2_file_reads(void **state)
{
    (void)state;
    bb b = {0};
    bb_hdr(&b, 2, 1, 2);
    bb_kv_u32(&b, "k", 11);
    bb_str(&b, "name");
    bb_u32(&b, GGUF_TYPE_STR);
    bb_str(&b, "v2 model");
    bb_tinfo(&b, &(tspec){"w", 2, {4, 2}, Q_TYPE_F16, 0});
    bb_pad(&b, 32);
    bb_data(&b, 16, 9);
    const char *path = tu_tmp("v2.gguf");
    tu_write(path, b.p, b.n);
    gguf_ctx *ctx = open_ok(path);
    assert_int_equal(gguf_version(ctx), 2);
    uint32_t k = 0;
    const char *s = NULL;
    assert_int_equal(gguf_get_u32(ctx, "k", &k), QK_OK);
    assert_int_equal(k, 11);
    assert_int_equal(gguf_get_str(ctx, "name", &s), QK_OK);
    assert_string_equal(s, "v2 model");
    const gguf_tensor_info *t = gguf_find_tensor(ctx, "w");
    assert_non_null(t);
    assert_int_equal(t->nbytes, 16);
    assert_memory_equal(t->data, b.p + b.n - 16, 16);
    gguf_close(ctx);
    bb_free(&b);
}

static void test_getters(void **state)
{
    (void)state;
    const char *path = tu_tmp("get.gguf");
    write_model(path, NULL, 0, NULL, 0);
    gguf_ctx *ctx = open_ok(path);
    uint8_t u8 = 0;
    int8_t i8 = 0;
    uint16_t u16 = 0;
    int16_t i16 = 0;
    uint32_t u32 = 12345;
    int32_t i32 = 0;
    float f32 = 0;
    bool b = false;
    uint64_t u64 = 0;
    int64_t i64 = 0;
    double f64 = 0;
    const char *s = NULL;
    assert_int_equal(gguf_get_u8(ctx, "t.u8", &u8), QK_OK);
    assert_int_equal(u8, 200);
    assert_int_equal(gguf_get_i8(ctx, "t.i8", &i8), QK_OK);
    assert_int_equal(i8, -100);
    assert_int_equal(gguf_get_u16(ctx, "t.u16", &u16), QK_OK);
    assert_int_equal(u16, 65000);
    assert_int_equal(gguf_get_i16(ctx, "t.i16", &i16), QK_OK);
    assert_int_equal(i16, -32000);
    assert_int_equal(gguf_get_i32(ctx, "t.i32", &i32), QK_OK);
    assert_int_equal(i32, -2000000000);
    assert_int_equal(gguf_get_f32(ctx, "t.f32", &f32), QK_OK);
    assert_true(f32 == 9.99999974738e-06f);
    assert_int_equal(gguf_get_bool(ctx, "t.bool", &b), QK_OK);
    assert_true(b);
    assert_int_equal(gguf_get_u64(ctx, "t.u64", &u64), QK_OK);
    assert_true(u64 == UINT64_MAX);
    assert_int_equal(gguf_get_i64(ctx, "t.i64", &i64), QK_OK);
    assert_true(i64 == INT64_MIN);
    assert_int_equal(gguf_get_f64(ctx, "t.f64", &f64), QK_OK);
    assert_true(f64 == -1.0 / 3.0);
    assert_int_equal(gguf_get_str(ctx, "t.str", &s), QK_OK);
    assert_string_equal(s, "llama");
    /* missing keeps the default; a wrong type is an error and also keeps it */
    assert_int_equal(gguf_get_u32(ctx, "nope", &u32), GGUF_MISSING);
    assert_int_equal(u32, 12345);
    assert_int_equal(gguf_get_u32(ctx, "t.i32", &u32), QK_EFORMAT);
    assert_int_equal(u32, 12345);
    assert_int_equal(gguf_get_str(ctx, "t.u8", &s), QK_EFORMAT);
    const void *data;
    uint64_t n;
    assert_int_equal(gguf_get_arr(ctx, "a.i32", GGUF_TYPE_I32, &data, &n), QK_OK);
    assert_int_equal(n, 3);
    assert_int_equal(((const int32_t *)data)[0], INT32_MIN);
    assert_int_equal(gguf_get_arr(ctx, "a.i32", GGUF_TYPE_U32, &data, &n), QK_EFORMAT);
    assert_int_equal(gguf_get_arr(ctx, "t.i32", GGUF_TYPE_I32, &data, &n), QK_EFORMAT);
    assert_int_equal(gguf_get_arr(ctx, "none", GGUF_TYPE_I32, &data, &n), GGUF_MISSING);
    const gguf_value *strs = gguf_kv_value(ctx, (uint64_t)gguf_find_key(ctx, "a.str"));
    uint64_t len = 0;
    assert_string_equal(gguf_arr_str(strs, 1, &len), "hello");
    assert_int_equal(len, 5);
    assert_memory_equal(gguf_arr_str(strs, 2, &len), "a\0b", 4);
    assert_int_equal(len, 3);
    assert_null(gguf_arr_str(strs, 4, NULL));
    assert_null(gguf_kv_key(ctx, gguf_n_kv(ctx)));
    assert_null(gguf_kv_value(ctx, gguf_n_kv(ctx)));
    assert_int_equal(gguf_find_key(ctx, "absent"), -1);
    assert_string_equal(gguf_type_name(GGUF_TYPE_F64), "f64");
    assert_string_equal(gguf_type_name(GGUF_TYPE_ARR), "arr");
    assert_string_equal(gguf_type_name((enum gguf_vtype)13), "invalid");
    gguf_close(ctx);
}

/* ---- stories260K (values read off the header with a separate Python script) --------------- */

static void test_stories260k(void **state)
{
    (void)state;
    TU_SHARED(path, "models/stories260K.gguf");
    gguf_ctx *ctx = open_ok(path);
    assert_int_equal(gguf_version(ctx), 3);
    assert_int_equal(gguf_n_kv(ctx), 19);
    assert_int_equal(gguf_n_tensors(ctx), 48);
    const char *arch = NULL;
    assert_int_equal(gguf_get_str(ctx, "general.architecture", &arch), QK_OK);
    assert_string_equal(arch, "llama");
    uint32_t v = 0;
    assert_int_equal(gguf_get_u32(ctx, "llama.block_count", &v), QK_OK);
    assert_int_equal(v, 5);
    assert_int_equal(gguf_get_u32(ctx, "llama.feed_forward_length", &v), QK_OK);
    assert_int_equal(v, 172);
    assert_int_equal(gguf_get_u32(ctx, "tokenizer.ggml.seperator_token_id", &v), QK_OK);
    assert_int_equal(v, 4294967295u);
    float eps = 0;
    assert_int_equal(gguf_get_f32(ctx, "llama.attention.layer_norm_rms_epsilon", &eps), QK_OK);
    assert_true(eps == 1e-5f);
    const void *data;
    uint64_t n;
    assert_int_equal(gguf_get_arr(ctx, "tokenizer.ggml.tokens", GGUF_TYPE_STR, &data, &n), QK_OK);
    assert_int_equal(n, 512);
    const gguf_value *tokens = gguf_kv_value(ctx, (uint64_t)gguf_find_key(ctx, "tokenizer.ggml.tokens"));
    assert_string_equal(gguf_arr_str(tokens, 1, NULL), "<s>");
    assert_string_equal(gguf_arr_str(tokens, 3, NULL), "<0x00>");
    assert_string_equal(gguf_arr_str(tokens, 511, NULL), "\xe2\x80\x8a"); /* U+200A */
    assert_int_equal(gguf_get_arr(ctx, "tokenizer.ggml.scores", GGUF_TYPE_F32, &data, &n), QK_OK);
    assert_true(((const float *)data)[511] == -252.0f);
    assert_int_equal(gguf_get_arr(ctx, "tokenizer.ggml.token_type", GGUF_TYPE_I32, &data, &n), QK_OK);
    const int32_t tt[5] = {2, 3, 3, 6, 6};
    assert_memory_equal(data, tt, sizeof tt);

    const gguf_tensor_info *t = gguf_tensor(ctx, 0);
    assert_string_equal(t->name, "token_embd.weight");
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    float f[4];
    memcpy(f, t->data, sizeof f);
    assert_true(f[0] == -0.29474878311157227f && f[3] == 0.34057360887527466f);
    t = gguf_find_tensor(ctx, "output_norm.weight");
    assert_int_equal(t->offset, 131072);
    memcpy(f, t->data, 8);
    assert_true(f[0] == 2.4583089351654053f && f[1] == 1.3673226833343506f);
    t = gguf_find_tensor(ctx, "blk.4.ffn_norm.weight");
    assert_int_equal(t->offset, 1170944);
    memcpy(f, (const float *)t->data + 63, 4);
    assert_true(f[0] == 1.234261155128479f);
    /* the data section is 1171200 bytes: the 48 tensors fill it up to the padding */
    assert_true(gguf_data_bytes(ctx) <= 1171200 && gguf_data_bytes(ctx) > 1171200 - 48 * 32);
    gguf_close(ctx);

    /* copying the published file through reader and writer reproduces it byte for byte */
    const char *copy = tu_tmp("stories-copy.gguf");
    copy_file(path, copy);
    assert_same_file(path, copy);
}

/* ---- split models -------------------------------------------------------------------------- */

static int count_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".tmp-") != NULL;
    closedir(d);
    return n;
}

static void dir_of(char *dir, size_t size, const char *path)
{
    snprintf(dir, size, "%s", path);
    *strrchr(dir, '/') = '\0';
}

static void check_split(const char *prefix, const gguf_split_opts *opts, const ttensor *ts, int n,
                        uint32_t n_parts, const uint32_t *part_of)
{
    char path[4096], first[4096];
    snprintf(path, sizeof path, "%s.gguf", prefix);
    write_model(path, opts, 0, ts, n);
    assert_false(tu_exists(path)); /* only the parts exist */
    for (uint32_t p = 0; p < n_parts; p++) {
        char part[4096];
        snprintf(part, sizeof part, "%s-%05u-of-%05u.gguf", prefix, p + 1, n_parts);
        assert_true(tu_exists(part));
        /* split.no (u16) is the first key of every later part, written as gguf-split does */
        size_t size;
        uint8_t *b = tu_read(part, &size);
        if (p > 0) {
            assert_memory_equal(b + 24, "\x08\0\0\0\0\0\0\0split.no\x02\0\0\0", 20);
            assert_int_equal(b[44] | b[45] << 8, p);
            assert_memory_equal(b + 46, "\x0b\0\0\0\0\0\0\0split.count\x02\0\0\0", 23);
            assert_int_equal(b[69] | b[70] << 8, n_parts);
        }
        free(b);
    }
    char extra[4096];
    snprintf(extra, sizeof extra, "%s-%05u-of-%05u.gguf", prefix, n_parts + 1, n_parts);
    assert_false(tu_exists(extra));
    assert_int_equal(gguf_split_path(first, sizeof first, prefix, 0, n_parts), QK_OK);
    for (uint32_t open_part = 0; open_part < n_parts; open_part++) {
        char p[4096];
        gguf_split_path(p, sizeof p, prefix, open_part, n_parts);
        gguf_ctx *ctx = open_ok(p);
        assert_int_equal(gguf_n_parts(ctx), n_parts);
        assert_string_equal(gguf_part_path(ctx, 0), first);
        check_model(ctx, ts, n, 0);
        for (int i = 0; i < n; i++)
            assert_int_equal(gguf_tensor(ctx, (uint64_t)i)->part, part_of[i]);
        assert_int_equal(gguf_find_key(ctx, "split.count"), -1); /* consumed by the reader */
        gguf_close(ctx);
    }
}

static void make_sized(ttensor *ts, const size_t *bytes, int n)
{
    uint64_t seed = 5;
    for (int i = 0; i < n; i++) {
        snprintf(ts[i].name, sizeof ts[i].name, "t%d", i);
        ts[i].type = Q_TYPE_I8;
        ts[i].n_dims = 1;
        ts[i].ne[0] = (int64_t)bytes[i];
        ts[i].ne[1] = ts[i].ne[2] = ts[i].ne[3] = 1;
        ts[i].nbytes = bytes[i];
        ts[i].data = malloc(bytes[i]);
        for (size_t k = 0; k < bytes[i]; k++)
            ts[i].data[k] = (uint8_t)(tu_rand(&seed) >> 56);
    }
}

static void test_split_max_tensors(void **state)
{
    (void)state;
    ttensor ts[5];
    make_sized(ts, (const size_t[]){10, 20, 30, 40, 50}, 5);
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp("mt"));
    check_split(prefix, &(gguf_split_opts){.max_tensors = 2}, ts, 5, 3,
                (const uint32_t[]){0, 0, 1, 1, 2});
    free_tensors(ts, 5);
}

static void test_split_max_bytes(void **state)
{
    (void)state;
    ttensor ts[6];
    /* padded to 32: 64, 64, 64, 224, 32, 96 with at most 128 bytes a part: 64+64 fit exactly,
     * the 200-byte tensor is alone in a part of its own (no part is ever empty), 32+96 fit */
    make_sized(ts, (const size_t[]){64, 50, 33, 200, 1, 96}, 6);
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp("mb"));
    check_split(prefix, &(gguf_split_opts){.max_bytes = 128}, ts, 6, 4,
                (const uint32_t[]){0, 0, 1, 2, 3, 3});
    free_tensors(ts, 6);
}

/* Explicit part breaks (how quantize --keep-split reproduces any input layout). */
static void test_split_explicit_breaks(void **state)
{
    (void)state;
    const char *path = tu_tmp("eb.gguf");
    qk_err err;
    gguf_writer *w;
    static const uint8_t zeros[64];
    assert_int_equal(gguf_writer_open(&w, path, NULL, &err), QK_OK);
    for (int i = 0; i < 4; i++) {
        char name[8];
        snprintf(name, sizeof name, "t%d", i);
        if (i == 1 || i == 3)
            assert_int_equal(gguf_writer_next_part(w), QK_OK);
        assert_int_equal(gguf_writer_add_tensor(w, name, Q_TYPE_I8, 1, (const int64_t[]){16}), QK_OK);
    }
    assert_int_equal(gguf_writer_begin_data(w), QK_OK);
    assert_int_equal(gguf_writer_n_parts(w), 3);
    assert_int_equal(gguf_writer_next_part(w), QK_EFORMAT); /* too late: sticky error */
    gguf_writer_abort(w);
    assert_false(tu_exists(path));

    assert_int_equal(gguf_writer_open(&w, path, NULL, &err), QK_OK);
    for (int i = 0; i < 4; i++) {
        char name[8];
        snprintf(name, sizeof name, "t%d", i);
        if (i == 1 || i == 3)
            gguf_writer_next_part(w);
        gguf_writer_add_tensor(w, name, Q_TYPE_I8, 1, (const int64_t[]){16});
    }
    assert_int_equal(gguf_writer_begin_data(w), QK_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(gguf_writer_write(w, zeros, 16), QK_OK);
    assert_int_equal(gguf_writer_commit(w, &err), QK_OK);
    char first[4096], prefix[4096];
    snprintf(prefix, sizeof prefix, "%.*s", (int)strlen(path) - 5, path);
    gguf_split_path(first, sizeof first, prefix, 2, 3);
    gguf_ctx *ctx = open_ok(first);
    static const uint32_t want[4] = {0, 1, 1, 2};
    assert_int_equal(gguf_n_parts(ctx), 3);
    for (uint64_t i = 0; i < 4; i++)
        assert_int_equal(gguf_tensor(ctx, i)->part, want[i]);
    gguf_close(ctx);
}

static void test_split_single_part_and_no_split(void **state)
{
    (void)state;
    ttensor ts[2];
    make_sized(ts, (const size_t[]){10, 20}, 2);
    char prefix[4096], path[4096];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp("one"));
    check_split(prefix, &(gguf_split_opts){.max_bytes = 1u << 20}, ts, 2, 1, (const uint32_t[]){0, 0});
    /* zero limits mean no split: the path is used as given, no split keys */
    snprintf(path, sizeof path, "%s", tu_tmp("plain.gguf"));
    write_model(path, &(gguf_split_opts){0}, 0, ts, 2);
    gguf_ctx *ctx = open_ok(path);
    assert_int_equal(gguf_n_parts(ctx), 1);
    check_model(ctx, ts, 2, 0);
    gguf_close(ctx);
    free_tensors(ts, 2);
}

/* A hand-made split part: split keys (with the given values), one i8 tensor of 8 bytes. */
static void write_part(const char *prefix, uint32_t idx, uint32_t count, uint16_t no_key,
                       uint16_t count_key, int32_t total_key, const char *tensor)
{
    bb b = {0};
    bb_hdr(&b, 3, 1, 3);
    bb_kv_u16(&b, "split.no", no_key);
    bb_kv_u16(&b, "split.count", count_key);
    bb_kv_i32(&b, "split.tensors.count", total_key);
    bb_tinfo(&b, &(tspec){tensor, 1, {8}, Q_TYPE_I8, 0});
    bb_pad(&b, 32);
    bb_data(&b, 8, idx);
    char path[4096];
    gguf_split_path(path, sizeof path, prefix, idx, count);
    tu_write(path, b.p, b.n);
    bb_free(&b);
}

static void expect_open_fail(const char *path, int code, const char *fragment)
{
    gguf_ctx *ctx = NULL;
    qk_err err = {{0}};
    int rc = gguf_open(&ctx, path, &err);
    if (rc != code || !strstr(err.msg, fragment))
        fail_msg("got %d '%s', expected %d with '%s'", rc, err.msg, code, fragment);
    assert_null(ctx);
}

static void test_split_hand_made_and_errors(void **state)
{
    (void)state;
    char prefix[4096], p1[4096], p2[4096];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp("hs"));
    gguf_split_path(p1, sizeof p1, prefix, 0, 2);
    gguf_split_path(p2, sizeof p2, prefix, 1, 2);
    write_part(prefix, 0, 2, 0, 2, 2, "a");
    write_part(prefix, 1, 2, 1, 2, 2, "b");
    gguf_ctx *ctx = open_ok(p2);
    assert_int_equal(gguf_n_parts(ctx), 2);
    assert_int_equal(gguf_n_kv(ctx), 0);
    assert_int_equal(gguf_tensor(ctx, 1)->part, 1);
    assert_string_equal(gguf_tensor(ctx, 1)->name, "b");
    gguf_close(ctx);

    write_part(prefix, 1, 2, 1, 2, 3, "b"); /* disagrees on the total */
    expect_open_fail(p1, QK_EFORMAT, "split.tensors.count = 3 but");
    write_part(prefix, 0, 2, 0, 2, 3, "a"); /* both claim 3, only 2 exist */
    expect_open_fail(p1, QK_EFORMAT, "split.tensors.count = 3 but the 2 part(s) hold 2 tensors");
    write_part(prefix, 0, 2, 0, 2, 2, "a");
    write_part(prefix, 1, 2, 1, 3, 2, "b"); /* wrong count */
    expect_open_fail(p1, QK_EFORMAT, "says it is part 2 of 3, expected part 2 of 2");
    write_part(prefix, 1, 2, 0, 2, 2, "b"); /* wrong index */
    expect_open_fail(p1, QK_EFORMAT, "says it is part 1 of 2, expected part 2 of 2");
    write_part(prefix, 1, 2, 1, 2, 2, "a"); /* the same tensor in both */
    expect_open_fail(p1, QK_EFORMAT, "duplicate tensor name 'a', also in");
    unlink(p2);
    expect_open_fail(p1, QK_EFORMAT, "missing: part 2 of the 2-part model");
    /* a part whose name does not follow the convention */
    char odd[4096];
    snprintf(odd, sizeof odd, "%s", tu_tmp("renamed.gguf"));
    size_t n;
    void *b = tu_read(p1, &n);
    tu_write(odd, b, n);
    free(b);
    expect_open_fail(odd, QK_EFORMAT, "file name does not end in '-00001-of-00002.gguf'");
}

/* ---- split sets: identity, mixed sets, inputs kept ---------------------------------------- */

/* The split.id string of a part file (its 16 hex digits), read with the reader's own view of
 * the raw key (gguf_open_mem refuses multi-part sets, so it is searched in the bytes). */
static void part_id(const char *path, char id[17])
{
    size_t n;
    uint8_t *b = tu_read(path, &n);
    static const char key[] = "\x08\0\0\0\0\0\0\0split.id\x08\0\0\0\x10\0\0\0\0\0\0\0";
    uint8_t *at = NULL;
    for (size_t i = 0; !at && i + sizeof key - 1 + 16 <= n; i++)
        if (!memcmp(b + i, key, sizeof key - 1))
            at = b + i;
    assert_non_null(at);
    memcpy(id, at + sizeof key - 1, 16);
    id[16] = 0;
    for (int i = 0; i < 16; i++)
        assert_non_null(strchr("0123456789abcdef", id[i]));
    free(b);
}

/* Every part carries the same split.id, a hash of the headers and the source id: the same output
 * gives the same id, another input (source id) another even when the headers agree; a part of
 * another write makes the set "mixed" for the reader. */
static void test_split_id_and_mixed_sets(void **state)
{
    (void)state;
    ttensor a[4], b[4];
    make_sized(a, (const size_t[]){10, 20, 30, 40}, 4);
    make_sized(b, (const size_t[]){10, 20, 30, 40}, 4);
    b[3].data[0] ^= 1; /* one bit differs */
    char pa[4096], pb[4096], path[4200];
    snprintf(pa, sizeof pa, "%s", tu_tmp("ida"));
    snprintf(pb, sizeof pb, "%s", tu_tmp("idb"));
    const gguf_split_opts two = {.max_tensors = 2};
    snprintf(path, sizeof path, "%s.gguf", pa);
    write_model(path, &two, 0, a, 4);
    snprintf(path, sizeof path, "%s.gguf", pb);
    g_source_id = 1; /* another input */
    write_model(path, &two, 0, b, 4);
    g_source_id = 0;
    char a1[4096], a2[4096], b2[4096], id1[17], id2[17], idb[17];
    gguf_split_path(a1, sizeof a1, pa, 0, 2);
    gguf_split_path(a2, sizeof a2, pa, 1, 2);
    gguf_split_path(b2, sizeof b2, pb, 1, 2);
    part_id(a1, id1);
    part_id(a2, id2);
    part_id(b2, idb);
    assert_string_equal(id1, id2);
    assert_string_not_equal(id1, idb);
    /* written again: the same id (reproducible bytes) */
    snprintf(path, sizeof path, "%s.gguf", pa);
    write_model(path, &two, 0, a, 4);
    part_id(a2, id2);
    assert_string_equal(id1, id2);
    gguf_close(open_ok(a1));
    /* part 2 of the other write: refused from either end, naming the parts */
    tu_copy(b2, a2);
    expect_open_fail(a1, QK_EFORMAT, "the parts are a mixed set");
    expect_open_fail(a2, QK_EFORMAT, "belongs to another write of the model than");
    /* a part without any split.id next to one with it: mixed too */
    char prefix[4096], h1[4096];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp("idh"));
    write_part(prefix, 0, 2, 0, 2, 2, "a");
    write_part(prefix, 1, 2, 1, 2, 2, "b");
    gguf_split_path(h1, sizeof h1, prefix, 0, 2);
    gguf_close(open_ok(h1)); /* gguf-split's sets have no id: read as before */
    bb x = {0}; /* part 2 again, now with a split.id */
    bb_hdr(&x, 3, 1, 4);
    bb_kv_u16(&x, "split.no", 1);
    bb_kv_u16(&x, "split.count", 2);
    bb_kv_i32(&x, "split.tensors.count", 2);
    bb_str(&x, "split.id");
    bb_u32(&x, GGUF_TYPE_STR);
    bb_str(&x, "0123456789abcdef");
    bb_tinfo(&x, &(tspec){"b", 1, {8}, Q_TYPE_I8, 0});
    bb_pad(&x, 32);
    bb_data(&x, 8, 1);
    gguf_split_path(path, sizeof path, prefix, 1, 2);
    tu_write(path, x.p, x.n);
    bb_free(&x);
    expect_open_fail(h1, QK_EFORMAT, "split.id '0123456789abcdef' vs '(none)'");
    free_tensors(a, 4);
    free_tensors(b, 4);
}

/* --split-parts: exactly N parts cut at the N-ths of the data; sharded writers each write their
 * parts, byte for byte the parts of the unsharded write; bad shard and part counts refused. */
static void test_split_parts_and_shards(void **state)
{
    (void)state;
    ttensor t[6];
    make_sized(t, (const size_t[]){10, 100, 20, 30, 40, 500}, 6);
    char pa[4096], path[4200], want[4200], got[4200];
    snprintf(pa, sizeof pa, "%s", tu_tmp("whole"));
    snprintf(path, sizeof path, "%s.gguf", pa);
    const gguf_split_opts three = {.n_parts = 3};
    write_model(path, &three, 0, t, 6);
    gguf_split_path(want, sizeof want, pa, 0, 3);
    gguf_ctx *ctx = open_ok(want);
    /* padded sizes 32,128,32,32,64,512 (total 800): starts 0,32,160,192,224,288 → parts
     * cut where a start reaches 800/3 and 1600/3: [0..4], then forced: the last part needs one */
    assert_int_equal(gguf_n_parts(ctx), 3);
    assert_int_equal(gguf_tensor(ctx, 0)->part, 0);
    assert_int_equal(gguf_tensor(ctx, 1)->part, 0);
    assert_int_equal(gguf_tensor(ctx, 2)->part, 0);
    assert_int_equal(gguf_tensor(ctx, 3)->part, 0);
    assert_int_equal(gguf_tensor(ctx, 4)->part, 1);
    assert_int_equal(gguf_tensor(ctx, 5)->part, 2);
    gguf_close(ctx);
    /* two shards of 3 parts: shard 0 writes parts 1 and 3, shard 1 part 2 */
    char pb[4096];
    snprintf(pb, sizeof pb, "%s", tu_tmp("sharded"));
    snprintf(path, sizeof path, "%s.gguf", pb);
    for (uint32_t sh = 0; sh < 2; sh++) {
        gguf_writer *w = writer_ok(path, &three);
        for (size_t i = 0; i < N_KVS; i++)
            assert_int_equal(gguf_writer_set_value(w, KVS[i].key, &KVS[i].v), QK_OK);
        assert_int_equal(gguf_writer_set_shard(w, sh, 2), QK_OK);
        for (int i = 0; i < 6; i++)
            assert_int_equal(gguf_writer_add_tensor(w, t[i].name, t[i].type, t[i].n_dims, t[i].ne), QK_OK);
        assert_int_equal(gguf_writer_begin_data(w), QK_OK);
        assert_int_equal(gguf_writer_writes_part(w, 0), sh == 0);
        assert_int_equal(gguf_writer_writes_part(w, 1), sh == 1);
        assert_int_equal(gguf_writer_writes_part(w, 2), sh == 0);
        for (int i = 0; i < 6; i++)
            if (gguf_writer_writes(w, t[i].name))
                assert_int_equal(gguf_writer_write_tensor(w, t[i].name, t[i].data, t[i].nbytes), QK_OK);
        commit_ok(w);
        for (uint32_t k = 0; k < 3; k++) {
            gguf_split_path(got, sizeof got, pb, k, 3);
            assert_int_equal(access(got, F_OK) == 0, sh == 1 || k % 2 == 0);
        }
    }
    for (uint32_t k = 0; k < 3; k++) {
        gguf_split_path(want, sizeof want, pa, k, 3);
        gguf_split_path(got, sizeof got, pb, k, 3);
        size_t n1, n2;
        uint8_t *b1 = tu_read(want, &n1), *b2 = tu_read(got, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(b1, b2, n1);
        free(b1);
        free(b2);
    }
    /* more shards than parts, a shard that does not exist, more parts than tensors */
    gguf_writer *w = writer_ok(path, &three);
    assert_int_equal(gguf_writer_set_shard(w, 3, 4), QK_OK);
    for (int i = 0; i < 6; i++)
        assert_int_equal(gguf_writer_add_tensor(w, t[i].name, t[i].type, t[i].n_dims, t[i].ne), QK_OK);
    assert_int_equal(gguf_writer_begin_data(w), QK_ERANGE);
    assert_non_null(strstr(gguf_writer_error(w), "the output has only 3 split parts"));
    gguf_writer_abort(w);
    w = writer_ok(path, &three);
    assert_int_equal(gguf_writer_set_shard(w, 4, 4), QK_ERANGE);
    gguf_writer_abort(w);
    const gguf_split_opts seven = {.n_parts = 7};
    w = writer_ok(path, &seven);
    for (int i = 0; i < 6; i++)
        assert_int_equal(gguf_writer_add_tensor(w, t[i].name, t[i].type, t[i].n_dims, t[i].ne), QK_OK);
    assert_int_equal(gguf_writer_begin_data(w), QK_ERANGE);
    assert_non_null(strstr(gguf_writer_error(w), "6 tensors cannot fill 7 split parts"));
    gguf_writer_abort(w);
    free_tensors(t, 6);
}

/* The writer refuses, before creating anything, an output part that is a protected input. */
static void test_writer_protects_inputs(void **state)
{
    (void)state;
    ttensor ts[2];
    make_sized(ts, (const size_t[]){10, 20}, 2);
    const char *in = tu_tmp("in.gguf");
    write_model(in, NULL, 0, ts, 2);
    size_t n0;
    uint8_t *before = tu_read(in, &n0);
    char prefix[4096], part2[4096];
    snprintf(prefix, sizeof prefix, "%s", tu_tmp("prot"));
    gguf_split_path(part2, sizeof part2, prefix, 1, 2);
    assert_int_equal(symlink(in, part2), 0); /* part 2 of the output would be the input */
    char out[4200];
    snprintf(out, sizeof out, "%s.gguf", prefix);
    const char *targets[] = {in, out};
    const gguf_split_opts *opts[] = {NULL, &(gguf_split_opts){.max_tensors = 1}};
    for (int k = 0; k < 2; k++) {
        gguf_writer *w = writer_ok(targets[k], opts[k]);
        assert_int_equal(gguf_writer_protect(w, in), QK_OK);
        for (int i = 0; i < 2; i++)
            assert_int_equal(gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne), QK_OK);
        assert_int_equal(gguf_writer_begin_data(w), QK_EALIAS);
        tu_assert_msg(gguf_writer_error(w), "writing it would destroy the input");
        qk_err err = {{0}};
        assert_int_equal(gguf_writer_commit(w, &err), QK_EALIAS);
    }
    size_t n1;
    uint8_t *after = tu_read(in, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    char first[4096];
    gguf_split_path(first, sizeof first, prefix, 0, 2);
    assert_false(tu_exists(first));
    free(before);
    free(after);
    free_tensors(ts, 2);
}

/* A string value with a NUL inside is kept (its length says so) but gguf_get_str refuses it:
 * as a C string it would be cut ("llama\0x" read as "llama"). */
static void test_get_str_refuses_nul(void **state)
{
    (void)state;
    bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "general.architecture");
    bb_u32(&b, GGUF_TYPE_STR);
    bb_u64(&b, 7);
    bb_put(&b, "llama\0x", 7);
    gguf_ctx *ctx = NULL;
    qk_err err = {{0}};
    assert_int_equal(gguf_open_mem(&ctx, b.p, b.n, "nul.gguf", &err), QK_OK);
    const char *arch = NULL;
    assert_int_equal(gguf_get_str(ctx, "general.architecture", &arch), QK_EFORMAT);
    assert_null(arch);
    assert_int_equal(gguf_kv_value(ctx, 0)->str.len, 7);
    gguf_close(ctx);
    bb_free(&b);
}

/* ---- malformed files ----------------------------------------------------------------------- */

static void test_truncated_at_every_length(void **state)
{
    (void)state;
    ttensor ts[Q_TYPE_COUNT];
    int n_all = make_all_types(ts, 4), n = 3; /* a small file: all values and three tensors */
    const char *path = tu_tmp("trunc.gguf");
    write_model(path, NULL, 0, ts, n);
    size_t size;
    uint8_t *file = tu_read(path, &size);
    gguf_ctx *ctx = NULL;
    qk_err err;
    assert_int_equal(gguf_open_mem(&ctx, file, size, "t.gguf", &err), QK_OK);
    size_t data_end = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(ctx); i++) {
        const gguf_tensor_info *t = gguf_tensor(ctx, i);
        size_t end = (size_t)((const uint8_t *)t->data - file) + t->nbytes;
        data_end = end > data_end ? end : data_end;
    }
    gguf_close(ctx);
    assert_true(data_end < size); /* the last tensor's padding is not needed to read it */
    for (size_t len = 0; len < size; len++) {
        uint8_t *copy = malloc(len ? len : 1); /* exact size, so ASan sees any over-read */
        memcpy(copy, file, len);
        memset(&err, 0, sizeof err);
        int rc = gguf_open_mem(&ctx, copy, len, "t.gguf", &err);
        if (len < data_end) {
            if (rc != QK_EFORMAT || ctx || strncmp(err.msg, "t.gguf: ", 8) != 0)
                fail_msg("prefix %zu of %zu: rc %d '%s'", len, size, rc, err.msg);
        } else {
            assert_int_equal(rc, QK_OK);
            gguf_close(ctx);
        }
        free(copy);
    }
    free(file);
    free_tensors(ts, n_all);
}

static void test_bad_magic(void **state)
{
    (void)state;
    bb b = {0};
    bb_file(&b, NULL, 0, 0);
    memcpy(b.p, "GGML", 4);
    expect_fail(&b, QK_EFORMAT, "not a GGUF file");
    bb_free(&b);
}

static void test_version_1(void **state)
{
    (void)state;
    bb b = {0};
    bb_file(&b, NULL, 0, 0);
    b.p[4] = 1;
    expect_fail(&b, QK_EUNSUPPORTED, "GGUF version 1 is not supported");
    b.p[4] = 4;
    expect_fail(&b, QK_EUNSUPPORTED, "unsupported GGUF version 4");
    memcpy(b.p + 4, "\0\0\0\3", 4);
    expect_fail(&b, QK_EUNSUPPORTED, "big-endian");
    bb_free(&b);
}

static void test_huge_counts(void **state)
{
    (void)state;
    bb b = {0};
    bb_hdr(&b, 3, 0, 1ull << 62);
    bb_kv_u32(&b, "a", 1);
    expect_fail(&b, QK_EFORMAT, "key/value count 4611686018427387904 cannot fit");
    bb_free(&b);
    bb_hdr(&b, 3, UINT64_MAX, 1);
    bb_kv_u32(&b, "a", 1);
    expect_fail(&b, QK_EFORMAT, "tensor count 18446744073709551615 cannot fit");
    bb_free(&b);
    /* 2 tensors need at least 64 bytes after the key */
    bb_hdr(&b, 3, 2, 1);
    bb_kv_u32(&b, "a", 1);
    bb_data(&b, 40, 1);
    expect_fail(&b, QK_EFORMAT, "tensor count 2 cannot fit");
    bb_free(&b);
}

static void test_string_beyond_file(void **state)
{
    (void)state;
    bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "s");
    bb_u32(&b, GGUF_TYPE_STR);
    bb_u64(&b, 1000);
    bb_put(&b, "short", 5);
    expect_fail(&b, QK_EFORMAT, "key 's': string length 1000 exceeds the 5 bytes left");
    bb_free(&b);
    bb_hdr(&b, 3, 0, 1);
    bb_u64(&b, UINT64_MAX); /* the key's own length */
    bb_put(&b, "abcdefghijklm", 13);
    expect_fail(&b, QK_EFORMAT, "key 0: name length 18446744073709551615 exceeds");
    bb_free(&b);
}

static void test_array_overflow(void **state)
{
    (void)state;
    bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "arr");
    bb_u32(&b, GGUF_TYPE_ARR);
    bb_u32(&b, GGUF_TYPE_U64);
    bb_u64(&b, 1ull << 61); /* × 8 bytes wraps to 0 */
    bb_u64(&b, 1);
    expect_fail(&b, QK_EFORMAT, "key 'arr': array of 2305843009213693952 u64 elements exceeds");
    bb_free(&b);
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "strs");
    bb_u32(&b, GGUF_TYPE_ARR);
    bb_u32(&b, GGUF_TYPE_STR);
    bb_u64(&b, 3);
    bb_str(&b, "x");
    bb_u64(&b, 0);
    expect_fail(&b, QK_EFORMAT, "key 'strs': array of 3 str elements exceeds");
    bb_free(&b);
}

static void test_unknown_value_type(void **state)
{
    (void)state;
    bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 13);
    bb_u64(&b, 0);
    expect_fail(&b, QK_EFORMAT, "key 'k': unknown value type 13");
    bb_free(&b);
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, GGUF_TYPE_ARR);
    bb_u32(&b, 0xffffffffu);
    bb_u64(&b, 0);
    expect_fail(&b, QK_EFORMAT, "key 'k': unknown array element type 4294967295");
    bb_free(&b);
}

static void test_nesting_too_deep(void **state)
{
    (void)state;
    for (int depth = GGUF_MAX_DEPTH; depth <= GGUF_MAX_DEPTH + 1; depth++) {
        bb b = {0};
        bb_hdr(&b, 3, 0, 1);
        bb_str(&b, "deep");
        bb_u32(&b, GGUF_TYPE_ARR);
        for (int d = 1; d < depth; d++) {
            bb_u32(&b, GGUF_TYPE_ARR);
            bb_u64(&b, 1);
        }
        bb_u32(&b, GGUF_TYPE_U8);
        bb_u64(&b, 1);
        bb_put(&b, "\1", 1);
        if (depth > GGUF_MAX_DEPTH) {
            expect_fail(&b, QK_EFORMAT, "key 'deep': arrays nested deeper than 8 levels");
        } else {
            gguf_ctx *ctx = NULL;
            qk_err err;
            assert_int_equal(gguf_open_mem(&ctx, b.p, b.n, "ok.gguf", &err), QK_OK);
            const gguf_value *v = gguf_kv_value(ctx, 0);
            for (int d = 1; d < depth; d++)
                v = (const gguf_value *)v->arr.data;
            assert_int_equal(v->arr.type, GGUF_TYPE_U8);
            assert_int_equal(((const uint8_t *)v->arr.data)[0], 1);
            gguf_close(ctx);
        }
        bb_free(&b);
    }
}

static void expect_tensor_fail(const tspec *ts, int n, size_t data, const char *fragment)
{
    bb b = {0};
    bb_file(&b, ts, n, data);
    expect_fail(&b, QK_EFORMAT, fragment);
    bb_free(&b);
}

static void test_unknown_tensor_type(void **state)
{
    (void)state;
    expect_tensor_fail(&(tspec){"w", 1, {32}, 4, 0}, 1, 64, "tensor 'w': unknown tensor type 4");
    expect_tensor_fail(&(tspec){"w", 1, {32}, Q_TYPE_COUNT, 0}, 1, 64, "unknown tensor type 39");
}

static void test_bad_dims(void **state)
{
    (void)state;
    expect_tensor_fail(&(tspec){"w", 0, {0}, Q_TYPE_F32, 0}, 1, 64,
                       "tensor 'w': 0 dimensions (must be 1 to 4)");
    expect_tensor_fail(&(tspec){"w", 5, {1, 1, 1, 1, 1}, Q_TYPE_F32, 0}, 1, 64,
                       "tensor 'w': 5 dimensions");
}

static void test_zero_dim(void **state)
{
    (void)state;
    expect_tensor_fail(&(tspec){"w", 2, {4, 0}, Q_TYPE_F32, 0}, 1, 64,
                       "tensor 'w': dimension 1 has 0 elements");
    expect_tensor_fail(&(tspec){"w", 1, {-4}, Q_TYPE_F32, 0}, 1, 64,
                       "tensor 'w': dimension 0 has -4 elements");
}

static void test_element_overflow(void **state)
{
    (void)state;
    expect_tensor_fail(&(tspec){"w", 3, {1ll << 32, 1ll << 16, 1ll << 16}, Q_TYPE_I8, 0}, 1, 64,
                       "tensor 'w': element count overflows");
    /* 2^62 elements fit in int64, but not their 2^64 bytes */
    expect_tensor_fail(&(tspec){"w", 2, {1ll << 31, 1ll << 31}, Q_TYPE_F32, 0}, 1, 64,
                       "tensor 'w': byte size overflows");
    /* representable in bytes too, but running past any file */
    expect_tensor_fail(&(tspec){"w", 2, {1ll << 31, 1ll << 31}, Q_TYPE_I8, 0}, 1, 64,
                       "runs past the end of the file");
}

static void test_row_not_block_multiple(void **state)
{
    (void)state;
    expect_tensor_fail(&(tspec){"w", 2, {33, 2}, Q_TYPE_Q4_0, 0}, 1, 64,
                       "tensor 'w': row of 33 elements is not a multiple of the q4_0 block size 32");
    expect_tensor_fail(&(tspec){"k", 1, {128}, Q_TYPE_Q4_K, 0}, 1, 144, "q4_K block size 256");
}

static void test_misaligned_offset(void **state)
{
    (void)state;
    tspec ts[2] = {{"a", 1, {4}, Q_TYPE_F32, 0}, {"b", 1, {4}, Q_TYPE_F32, 16}};
    expect_tensor_fail(ts, 2, 64, "tensor 'b': data offset 16 is not a multiple of the alignment 32");
}

static void test_overlapping_offsets(void **state)
{
    (void)state;
    tspec ts[3] = {{"a", 1, {16}, Q_TYPE_F32, 64},
                   {"b", 1, {4}, Q_TYPE_F32, 0},
                   {"c", 1, {16}, Q_TYPE_F32, 96}};
    expect_tensor_fail(ts, 3, 192,
                       "tensor 'c' (data bytes 96..160) overlaps tensor 'a' (bytes 64..128)");
    /* order in the file does not matter, only the byte ranges */
    tspec ok[2] = {{"a", 1, {16}, Q_TYPE_F32, 64}, {"b", 1, {16}, Q_TYPE_F32, 0}};
    bb b = {0};
    bb_file(&b, ok, 2, 128);
    gguf_ctx *ctx = NULL;
    qk_err err;
    assert_int_equal(gguf_open_mem(&ctx, b.p, b.n, "ok.gguf", &err), QK_OK);
    assert_ptr_equal(gguf_tensor(ctx, 0)->data, b.p + b.n - 64);
    gguf_close(ctx);
    bb_free(&b);
}

static void test_data_beyond_file(void **state)
{
    (void)state;
    expect_tensor_fail(&(tspec){"w", 1, {16}, Q_TYPE_F32, 0}, 1, 63,
                       "tensor 'w': data at offset 96 + 0 of 64 bytes runs past the end of the "
                       "file (159 bytes)");
    expect_tensor_fail(&(tspec){"w", 1, {4}, Q_TYPE_F32, 1ull << 63}, 1, 64, "runs past the end");
}

static void test_duplicate_key(void **state)
{
    (void)state;
    bb b = {0};
    bb_hdr(&b, 3, 0, 3);
    bb_kv_u32(&b, "a", 1);
    bb_kv_u32(&b, "b", 2);
    bb_kv_u32(&b, "a", 3);
    expect_fail(&b, QK_EFORMAT, "duplicate key 'a' (entries 0 and 2)");
    bb_free(&b);
}

static void test_duplicate_tensor(void **state)
{
    (void)state;
    tspec ts[2] = {{"w", 1, {8}, Q_TYPE_F32, 0}, {"w", 1, {8}, Q_TYPE_F32, 32}};
    expect_tensor_fail(ts, 2, 64, "duplicate tensor name 'w' (tensors 0 and 1)");
}

static void test_bad_alignment_key(void **state)
{
    (void)state;
    const uint32_t bad[] = {0, 48};
    for (int i = 0; i < 2; i++) {
        bb b = {0};
        bb_hdr(&b, 3, 0, 1);
        bb_kv_u32(&b, "general.alignment", bad[i]);
        expect_fail(&b, QK_EFORMAT, "general.alignment = ");
        expect_fail(&b, QK_EFORMAT, "is not a non-zero power of two");
        bb_free(&b);
    }
    bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_kv_u16(&b, "general.alignment", 64);
    expect_fail(&b, QK_EFORMAT, "key 'general.alignment' must be a u32, found u16");
    bb_free(&b);
    /* a power of two, but every tensor would be padded to 2 GiB (fuzz_gguf: 97 bytes took 5 s) */
    bb big = {0};
    bb_hdr(&big, 3, 0, 1);
    bb_kv_u32(&big, "general.alignment", 1u << 31);
    expect_fail(&big, QK_EFORMAT, "general.alignment = 2147483648 is above qkit's limit of 1048576");
    bb_free(&big);
    bb ok = {0}; /* the limit itself is fine */
    bb_hdr(&ok, 3, 0, 1);
    bb_kv_u32(&ok, "general.alignment", 1u << 20);
    gguf_ctx *ctx = NULL;
    qk_err err = {{0}};
    assert_int_equal(gguf_open_mem(&ctx, ok.p, ok.n, "ok.gguf", &err), QK_OK);
    gguf_close(ctx);
    bb_free(&ok);
}

static void test_bad_key_names(void **state)
{
    (void)state;
    bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "", 1);
    expect_fail(&b, QK_EFORMAT, "key 0: empty name");
    bb_free(&b);
    bb_hdr(&b, 3, 0, 1);
    bb_u64(&b, 3);
    bb_put(&b, "a\0b", 3);
    bb_u32(&b, GGUF_TYPE_U8);
    bb_put(&b, "x", 1);
    expect_fail(&b, QK_EFORMAT, "key 0: name contains a NUL byte");
    bb_free(&b);
}

static void test_bad_split_keys(void **state)
{
    (void)state;
    bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_kv_u16(&b, "split.count", 2);
    expect_fail(&b, QK_EFORMAT, "split keys incomplete");
    bb_free(&b);
    bb_hdr(&b, 3, 0, 3);
    bb_kv_u16(&b, "split.no", 2);
    bb_kv_u16(&b, "split.count", 2);
    bb_kv_i32(&b, "split.tensors.count", 0);
    expect_fail(&b, QK_EFORMAT, "invalid split keys: part 2 of 2");
    bb_free(&b);
    bb_hdr(&b, 3, 0, 3);
    bb_kv_u16(&b, "split.no", 0);
    bb_kv_u32(&b, "split.count", 2);
    bb_kv_i32(&b, "split.tensors.count", 0);
    expect_fail(&b, QK_EFORMAT, "key 'split.count' must be a u16, found u32");
    bb_free(&b);
    /* a later part cannot be opened from memory */
    bb_hdr(&b, 3, 0, 3);
    bb_kv_u16(&b, "split.no", 1);
    bb_kv_u16(&b, "split.count", 2);
    bb_kv_i32(&b, "split.tensors.count", 0);
    gguf_ctx *ctx = NULL;
    qk_err err;
    assert_int_equal(gguf_open_mem(&ctx, b.p, b.n, "m.gguf", &err), QK_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "open it by path"));
    bb_free(&b);
}

static void test_missing_file(void **state)
{
    (void)state;
    expect_open_fail(tu_tmp("does-not-exist.gguf"), QK_EIO, "cannot open");
    char none[1] = {0};
    bb empty = {.p = none, .n = 0}; /* an empty file */
    expect_fail(&empty, QK_EFORMAT, "header: truncated: needs 24 bytes at offset 0 but the file has 0");
}

/* ---- writer refusals ----------------------------------------------------------------------- */

static void expect_commit_fail(gguf_writer *w, const char *path, int code, const char *fragment)
{
    char dir[4096];
    dir_of(dir, sizeof dir, path);
    qk_err err = {{0}};
    int rc = gguf_writer_commit(w, &err);
    if (rc != code || !strstr(err.msg, fragment))
        fail_msg("commit: got %d '%s', expected %d with '%s'", rc, err.msg, code, fragment);
    assert_false(tu_exists(path));
    assert_int_equal(count_tmp_files(dir), 0);
}

static gguf_writer *two_tensor_writer(const char *path)
{
    gguf_writer *w = writer_ok(path, NULL);
    gguf_writer_set_str(w, "general.name", "x");
    assert_int_equal(gguf_writer_add_tensor(w, "a", Q_TYPE_F32, 1, (int64_t[]){4}), QK_OK);
    assert_int_equal(gguf_writer_add_tensor(w, "b", Q_TYPE_F16, 1, (int64_t[]){4}), QK_OK);
    assert_int_equal(gguf_writer_begin_data(w), QK_OK);
    return w;
}

static void test_writer_abort_leaves_nothing(void **state)
{
    (void)state;
    const char *path = tu_tmp("aborted.gguf");
    char dir[4096];
    dir_of(dir, sizeof dir, path);
    gguf_writer *w = two_tensor_writer(path);
    assert_int_equal(gguf_writer_write(w, "0123456789abcdef", 16), QK_OK);
    assert_int_equal(count_tmp_files(dir), 1);
    gguf_writer_abort(w);
    assert_false(tu_exists(path));
    assert_int_equal(count_tmp_files(dir), 0);
    gguf_writer_abort(NULL);
    /* a split writer aborted midway removes every part */
    w = writer_ok(path, &(gguf_split_opts){.max_tensors = 1});
    gguf_writer_add_tensor(w, "a", Q_TYPE_I8, 1, (int64_t[]){4});
    gguf_writer_add_tensor(w, "b", Q_TYPE_I8, 1, (int64_t[]){4});
    assert_int_equal(gguf_writer_begin_data(w), QK_OK);
    assert_int_equal(gguf_writer_n_parts(w), 2);
    assert_int_equal(count_tmp_files(dir), 2);
    gguf_writer_abort(w);
    assert_int_equal(count_tmp_files(dir), 0);
}

static void test_writer_short_data(void **state)
{
    (void)state;
    const char *path = tu_tmp("short.gguf");
    gguf_writer *w = two_tensor_writer(path);
    assert_int_equal(gguf_writer_write(w, "0123456789abcdef", 16), QK_OK);
    assert_int_equal(gguf_writer_write(w, "0123", 4), QK_OK);
    expect_commit_fail(w, path, QK_EFORMAT,
                       "commit before all tensor data was written: tensor 'b' (2 of 2) has 4 of 8 bytes");
    w = two_tensor_writer(path);
    expect_commit_fail(w, path, QK_EFORMAT, "tensor 'a' (1 of 2) has 0 of 16 bytes");
}

static void test_writer_too_much_data(void **state)
{
    (void)state;
    const char *path = tu_tmp("long.gguf");
    gguf_writer *w = two_tensor_writer(path);
    assert_int_equal(gguf_writer_write(w, "0123456789abcdef", 10), QK_OK);
    assert_int_equal(gguf_writer_write(w, "0123456789abcdef", 7), QK_EFORMAT);
    assert_non_null(strstr(gguf_writer_error(w),
                           "tensor 'a': 7 more bytes exceed its declared size of 16 bytes (10 written)"));
    /* sticky: a valid call now fails with the first error, and commit reports that one */
    assert_int_equal(gguf_writer_write(w, "0123456", 6), QK_EFORMAT);
    expect_commit_fail(w, path, QK_EFORMAT, "7 more bytes exceed");

    w = two_tensor_writer(path);
    assert_int_equal(gguf_writer_write_tensor(w, "a", "0123456789abcdef", 16), QK_OK);
    assert_int_equal(gguf_writer_write_tensor(w, "b", "0123456789", 10), QK_EFORMAT);
    expect_commit_fail(w, path, QK_EFORMAT, "tensor 'b': 10 bytes given, 8 declared");

    w = two_tensor_writer(path);
    assert_int_equal(gguf_writer_write_tensor(w, "b", "01234567", 8), QK_EFORMAT);
    expect_commit_fail(w, path, QK_EFORMAT, "expected tensor 'a' next, got 'b'");
}

static void test_writer_past_last_tensor(void **state)
{
    (void)state;
    const char *path = tu_tmp("past.gguf");
    gguf_writer *w = two_tensor_writer(path);
    assert_int_equal(gguf_writer_write(w, "0123456789abcdef", 16), QK_OK);
    assert_int_equal(gguf_writer_write(w, "01234567", 8), QK_OK);
    assert_int_equal(gguf_writer_write(w, "x", 1), QK_EFORMAT);
    expect_commit_fail(w, path, QK_EFORMAT, "write of 1 bytes past the last tensor");
}

static void test_writer_misuse(void **state)
{
    (void)state;
    const char *path = tu_tmp("misuse.gguf");
    gguf_writer *w = writer_ok(path, NULL);
    assert_int_equal(gguf_writer_write(w, "x", 1), QK_EFORMAT);
    expect_commit_fail(w, path, QK_EFORMAT, "tensor data written before gguf_writer_begin_data");

    w = two_tensor_writer(path);
    assert_int_equal(gguf_writer_set_u32(w, "late", 1), QK_EFORMAT);
    expect_commit_fail(w, path, QK_EFORMAT, "key 'late' set after gguf_writer_begin_data");

    w = two_tensor_writer(path);
    assert_int_equal(gguf_writer_add_tensor(w, "c", Q_TYPE_F32, 1, (int64_t[]){4}), QK_EFORMAT);
    expect_commit_fail(w, path, QK_EFORMAT, "tensor 'c' added after gguf_writer_begin_data");
}

static void expect_writer_refusal(int (*declare)(gguf_writer *), const char *fragment)
{
    const char *path = tu_tmp("refused.gguf");
    gguf_writer *w = writer_ok(path, NULL);
    assert_int_not_equal(declare(w), QK_OK);
    assert_non_null(strstr(gguf_writer_error(w), fragment));
    expect_commit_fail(w, path, QK_EFORMAT, fragment);
}

static int dup_tensor(gguf_writer *w)
{
    gguf_writer_add_tensor(w, "t", Q_TYPE_F32, 1, (int64_t[]){4});
    return gguf_writer_add_tensor(w, "t", Q_TYPE_F32, 1, (int64_t[]){4});
}
static int add(gguf_writer *w, int type, uint32_t n_dims, const int64_t *ne)
{
    return gguf_writer_add_tensor(w, "t", type, n_dims, ne);
}
static int unknown_type(gguf_writer *w) { return add(w, 5, 1, (int64_t[]){32}); }
static int bad_block(gguf_writer *w) { return add(w, Q_TYPE_Q6_K, 1, (int64_t[]){100}); }
static int five_dims(gguf_writer *w) { return add(w, Q_TYPE_F32, 5, (int64_t[]){1, 1, 1, 1, 1}); }
static int zero_dim(gguf_writer *w) { return add(w, Q_TYPE_F32, 2, (int64_t[]){4, 0}); }
static int long_name(gguf_writer *w)
{
    char name[80];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    return gguf_writer_add_tensor(w, name, Q_TYPE_F32, 1, (int64_t[]){4});
}
static int split_key(gguf_writer *w) { return gguf_writer_set_u16(w, "split.count", 2); }
static int bad_align(gguf_writer *w) { return gguf_writer_set_u32(w, "general.alignment", 24); }
static int align_type(gguf_writer *w) { return gguf_writer_set_u64(w, "general.alignment", 64); }
static int empty_key(gguf_writer *w) { return gguf_writer_set_u8(w, "", 1); }
static int null_str(gguf_writer *w) { return gguf_writer_set_str(w, "s", NULL); }
static int arr_no_data(gguf_writer *w) { return gguf_writer_set_arr(w, "a", GGUF_TYPE_U32, NULL, 3); }
static int arr_bad_type(gguf_writer *w) { return gguf_writer_set_arr(w, "a", (enum gguf_vtype)20, "x", 1); }
static int too_deep(gguf_writer *w)
{
    gguf_value v[GGUF_MAX_DEPTH + 1];
    v[0] = (gguf_value){.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_U8, 0, NULL}};
    for (int d = 1; d <= GGUF_MAX_DEPTH; d++)
        v[d] = (gguf_value){.type = GGUF_TYPE_ARR, .arr = {GGUF_TYPE_ARR, 1, &v[d - 1]}};
    return gguf_writer_set_value(w, "deep", &v[GGUF_MAX_DEPTH]);
}

static void test_writer_refuses_bad_declarations(void **state)
{
    (void)state;
    expect_writer_refusal(dup_tensor, "duplicate tensor name 't'");
    expect_writer_refusal(unknown_type, "tensor 't': unknown tensor type 5");
    expect_writer_refusal(bad_block, "row of 100 elements is not a multiple of the q6_K block size 256");
    expect_writer_refusal(five_dims, "5 dimensions");
    expect_writer_refusal(zero_dim, "dimension 1 has 0 elements");
    expect_writer_refusal(long_name, "name longer than 63 bytes");
    expect_writer_refusal(split_key, "key 'split.count' is reserved");
    expect_writer_refusal(bad_align, "general.alignment = 24 is not a non-zero power of two");
    expect_writer_refusal(align_type, "key 'general.alignment' must be a u32, got u64");
    expect_writer_refusal(empty_key, "empty key");
    expect_writer_refusal(null_str, "key 's': NULL string");
    expect_writer_refusal(arr_no_data, "key 'a': array of 3 elements has no data");
    expect_writer_refusal(arr_bad_type, "key 'a': unknown array element type 20");
    expect_writer_refusal(too_deep, "key 'deep': arrays nested deeper than 8 levels");
}

static void test_writer_replace_keeps_order(void **state)
{
    (void)state;
    const char *path = tu_tmp("replace.gguf");
    gguf_writer *w = writer_ok(path, NULL);
    gguf_writer_set_u32(w, "a", 1);
    gguf_writer_set_str(w, "b", "first");
    gguf_writer_set_u32(w, "c", 3);
    const char *strs[] = {"x", "", "zz"};
    gguf_writer_set_arr_str(w, "b", strs, 3);
    gguf_writer_set_f32(w, "a", 2.5f);
    commit_ok(w);
    gguf_ctx *ctx = open_ok(path);
    assert_int_equal(gguf_n_kv(ctx), 3);
    assert_string_equal(gguf_kv_key(ctx, 0), "a");
    assert_string_equal(gguf_kv_key(ctx, 1), "b");
    assert_string_equal(gguf_kv_key(ctx, 2), "c");
    float f = 0;
    assert_int_equal(gguf_get_f32(ctx, "a", &f), QK_OK);
    assert_true(f == 2.5f);
    const gguf_value *b = gguf_kv_value(ctx, 1);
    assert_int_equal(b->arr.n, 3);
    assert_string_equal(gguf_arr_str(b, 0, NULL), "x");
    assert_string_equal(gguf_arr_str(b, 1, NULL), "");
    assert_string_equal(gguf_arr_str(b, 2, NULL), "zz");
    assert_int_equal(gguf_n_tensors(ctx), 0);
    gguf_close(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_type),
        cmocka_unit_test(test_roundtrip_byte_exact),
        cmocka_unit_test(test_writer_layout_by_hand),
        cmocka_unit_test(test_alignment_64),
        cmocka_unit_test(test_v2_file_reads),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_split_max_tensors),
        cmocka_unit_test(test_split_max_bytes),
        cmocka_unit_test(test_split_explicit_breaks),
        cmocka_unit_test(test_split_single_part_and_no_split),
        cmocka_unit_test(test_split_hand_made_and_errors),
        cmocka_unit_test(test_split_id_and_mixed_sets),
        cmocka_unit_test(test_split_parts_and_shards),
        cmocka_unit_test(test_writer_protects_inputs),
        cmocka_unit_test(test_get_str_refuses_nul),
        cmocka_unit_test(test_truncated_at_every_length),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_version_1),
        cmocka_unit_test(test_huge_counts),
        cmocka_unit_test(test_string_beyond_file),
        cmocka_unit_test(test_array_overflow),
        cmocka_unit_test(test_unknown_value_type),
        cmocka_unit_test(test_nesting_too_deep),
        cmocka_unit_test(test_unknown_tensor_type),
        cmocka_unit_test(test_bad_dims),
        cmocka_unit_test(test_zero_dim),
        cmocka_unit_test(test_element_overflow),
        cmocka_unit_test(test_row_not_block_multiple),
        cmocka_unit_test(test_misaligned_offset),
        cmocka_unit_test(test_overlapping_offsets),
        cmocka_unit_test(test_data_beyond_file),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_duplicate_tensor),
        cmocka_unit_test(test_bad_alignment_key),
        cmocka_unit_test(test_bad_key_names),
        cmocka_unit_test(test_bad_split_keys),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_writer_abort_leaves_nothing),
        cmocka_unit_test(test_writer_short_data),
        cmocka_unit_test(test_writer_too_much_data),
        cmocka_unit_test(test_writer_past_last_tensor),
        cmocka_unit_test(test_writer_misuse),
        cmocka_unit_test(test_writer_refuses_bad_declarations),
        cmocka_unit_test(test_writer_replace_keeps_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
