/* test_safetensors.c — reader, sharded models and the streaming writer of formats/safetensors. */
#include "tu.h"

#include <cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../formats/safetensors.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A safetensors file by hand: header length, the JSON exactly as given, then data_len bytes
 * counting 0, 1, 2 ... */
static void write_raw(const char *path, const char *json, size_t data_len)
{
    size_t n = strlen(json);
    uint8_t *buf = malloc(8 + n + data_len + 1);
    assert_non_null(buf);
    put_le64(buf, n);
    memcpy(buf + 8, json, n);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + n + i] = (uint8_t)i;
    tu_write(path, buf, 8 + n + data_len);
    free(buf);
}

static void write_text(const char *path, const char *text) { tu_write(path, text, strlen(text)); }

static void make_dir(const char *path) { assert_int_equal(mkdir(path, 0755), 0); }

static uint64_t fnv1a64(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Opening path fails with code and a message holding fragment, both as a file and as a model. */
static void expect_open_error(const char *path, int code, const char *fragment)
{
    qk_err err = {{0}};
    st_file *f = (st_file *)1;
    assert_int_equal(st_file_open(&f, path, &err), code);
    assert_null(f);
    tu_assert_msg(err.msg, fragment);
    assert_non_null(strstr(err.msg, path));
    st_model *m = (st_model *)1;
    memset(&err, 0, sizeof err);
    assert_int_equal(st_model_open(&m, path, &err), code);
    assert_null(m);
    tu_assert_msg(err.msg, fragment);
}

/* A header made of one tensor entry, written with data_len data bytes, must fail to open. */
static void expect_header_error(const char *json, size_t data_len, int code, const char *fragment)
{
    const char *path = tu_tmp("bad.safetensors");
    write_raw(path, json, data_len);
    expect_open_error(path, code, fragment);
}

static void expect_model_error(const char *path, int code, const char *fragment)
{
    qk_err err = {{0}};
    st_model *m = (st_model *)1;
    assert_int_equal(st_model_open(&m, path, &err), code);
    assert_null(m);
    tu_assert_msg(err.msg, fragment);
}

/* Nothing named like the target nor any temporary of it is left in dir. */
static void assert_no_trace(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strncmp(e->d_name, base, strlen(base)) == 0)
            fail_msg("left behind: %s/%s", dir, e->d_name);
    closedir(d);
}

static st_tensor_spec spec1(const char *name, st_dtype dtype, int n_dims, const int64_t *shape)
{
    st_tensor_spec s = {.name = name, .dtype = dtype, .n_dims = n_dims};
    for (int d = 0; d < n_dims && d < ST_MAX_DIMS; d++)
        s.shape[d] = shape[d];
    return s;
}

/* ---- dtype table --------------------------------------------------------------------------- */

static void test_dtype_table(void **state)
{
    (void)state;
    /* Names and sizes as the safetensors specification spells them. */
    static const struct {
        st_dtype dt;
        const char *name;
        size_t size;
    } want[] = {
        {ST_F64, "F64", 8},   {ST_F32, "F32", 4},         {ST_F16, "F16", 2},
        {ST_BF16, "BF16", 2}, {ST_I64, "I64", 8},         {ST_I32, "I32", 4},
        {ST_I16, "I16", 2},   {ST_I8, "I8", 1},           {ST_U8, "U8", 1},
        {ST_BOOL, "BOOL", 1}, {ST_F8_E4M3, "F8_E4M3", 1}, {ST_F8_E5M2, "F8_E5M2", 1},
        {ST_U16, "U16", 2},   {ST_U32, "U32", 4},         {ST_U64, "U64", 8},
    };
    assert_int_equal(sizeof want / sizeof want[0], ST_DTYPE_COUNT);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_string_equal(st_dtype_name(want[i].dt), want[i].name);
        assert_int_equal(st_dtype_size(want[i].dt), want[i].size);
        assert_int_equal(st_dtype_from_name(want[i].name), want[i].dt);
    }
    assert_int_equal(st_dtype_from_name("f32"), -1); /* the spelling is case-sensitive */
    assert_int_equal(st_dtype_from_name("F4"), -1);
    assert_int_equal(st_dtype_from_name(""), -1);
    assert_string_equal(st_dtype_name(ST_DTYPE_COUNT), "invalid");
    assert_int_equal(st_dtype_size((st_dtype)-1), 0);
}

static void test_spec_nbytes(void **state)
{
    (void)state;
    uint64_t nb = 7;
    st_tensor_spec s = spec1("x", ST_BF16, 3, (const int64_t[]){3, 5, 7});
    assert_int_equal(st_spec_nbytes(&s, &nb), QK_OK);
    assert_int_equal(nb, 3 * 5 * 7 * 2);
    s = spec1("x", ST_F64, 0, NULL);
    assert_int_equal(st_spec_nbytes(&s, &nb), QK_OK);
    assert_int_equal(nb, 8); /* a scalar holds one element */
    /* A zero dim empties the tensor even when the other dims alone overflow. */
    s = spec1("x", ST_F32, 3, (const int64_t[]){INT64_MAX, INT64_MAX, 0});
    assert_int_equal(st_spec_nbytes(&s, &nb), QK_OK);
    assert_int_equal(nb, 0);
    s = spec1("x", ST_F32, 2, (const int64_t[]){1ll << 32, 1ll << 31});
    assert_int_equal(st_spec_nbytes(&s, &nb), QK_ERANGE);
    s = spec1("x", ST_F32, 1, (const int64_t[]){-1});
    assert_int_equal(st_spec_nbytes(&s, &nb), QK_EFORMAT);
    s = spec1("x", ST_F32, 8, (const int64_t[]){1, 1, 1, 1, 1, 1, 1, 1});
    s.n_dims = 9;
    assert_int_equal(st_spec_nbytes(&s, &nb), QK_EFORMAT);
}

/* ---- writer: exact bytes and round trips ------------------------------------------------- */

/* The bytes a conforming writer must produce, spelled out from the format description. */
static void test_writer_exact_bytes(void **state)
{
    (void)state;
    const float v[2] = {1.0f, -2.0f};
    const void *data[1] = {v};
    st_tensor_spec s = spec1("a", ST_F32, 1, (const int64_t[]){2});
    const char *path = tu_tmp("exact.safetensors");
    qk_err err;
    assert_int_equal(st_write_file(path, &s, data, 1, NULL, NULL, 0, &err), QK_OK);
    static const char hdr[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  ";
    uint8_t want[8 + sizeof hdr - 1 + 8] = {56};
    memcpy(want + 8, hdr, sizeof hdr - 1);
    memcpy(want + 8 + 56, (const uint8_t[]){0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}, 8);
    size_t n;
    uint8_t *got = tu_read(path, &n);
    assert_int_equal(n, sizeof want);
    assert_memory_equal(got, want, sizeof want);
    free(got);

    /* With metadata, which goes first. */
    const char *k[] = {"format"}, *val[] = {"pt"};
    assert_int_equal(st_write_file(path, &s, data, 1, k, val, 1, &err), QK_OK);
    static const char hdr2[] = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\","
                               "\"shape\":[2],\"data_offsets\":[0,8]}}   ";
    got = tu_read(path, &n);
    assert_int_equal(n, 8 + 88 + 8);
    assert_int_equal(got[0], 88);
    assert_memory_equal(got + 8, hdr2, 88);
    assert_memory_equal(got + 96, want + 64, 8);
    free(got);

    /* No tensors at all: "{}" padded to 8 bytes. */
    assert_int_equal(st_write_file(path, NULL, NULL, 0, NULL, NULL, 0, &err), QK_OK);
    got = tu_read(path, &n);
    assert_int_equal(n, 16);
    assert_memory_equal(got, "\x08\0\0\0\0\0\0\0{}      ", 16);
    free(got);
}

#define RT_SHAPES 6
static const int rt_ndims[RT_SHAPES] = {0, 1, 1, 2, 3, 8};
static const int64_t rt_shapes[RT_SHAPES][ST_MAX_DIMS] = {
    {0}, {0}, {3}, {2, 3}, {3, 0, 2}, {1, 2, 1, 3, 1, 1, 2, 1},
};
static const uint64_t rt_elems[RT_SHAPES] = {1, 0, 3, 6, 0, 12};

/* The header of path checked with cJSON directly (not through the reader): metadata first, the
 * tensors in spec order with consecutive offsets, data 8-byte aligned, the file exactly full. */
static void check_header_independently(const char *path, const st_tensor_spec *specs, size_t n,
                                       const uint64_t *nbytes, const char *first_meta_key)
{
    size_t size;
    uint8_t *buf = tu_read(path, &size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | buf[i];
    assert_int_equal((8 + hlen) % 8, 0);
    for (uint64_t i = 0; i < hlen; i++) /* JSON allows no raw control bytes */
        assert_true(buf[8 + i] >= 0x20);
    char *text = strndup((const char *)buf + 8, hlen);
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    const cJSON *c = root->child;
    assert_string_equal(c->string, "__metadata__");
    assert_string_equal(c->child->string, first_meta_key);
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        c = c->next;
        assert_non_null(c);
        assert_string_equal(c->string, specs[i].name);
        const cJSON *o = cJSON_GetObjectItem(c, "data_offsets");
        assert_int_equal((uint64_t)cJSON_GetArrayItem(o, 0)->valuedouble, at);
        at += nbytes[i];
        assert_int_equal((uint64_t)cJSON_GetArrayItem(o, 1)->valuedouble, at);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(c, "shape")), specs[i].n_dims);
    }
    assert_null(c->next);
    assert_int_equal(size, 8 + hlen + at);
    cJSON_Delete(root);
    free(text);
    free(buf);
}

static void check_read_back(const st_tensor *t, const st_tensor_spec *s, const uint8_t *want,
                            uint64_t nbytes, uint64_t elems)
{
    assert_string_equal(t->name, s->name);
    assert_int_equal(t->dtype, s->dtype);
    assert_int_equal(t->n_dims, s->n_dims);
    for (int d = 0; d < s->n_dims; d++)
        assert_int_equal(t->shape[d], s->shape[d]);
    assert_int_equal(t->n_elements, elems);
    assert_int_equal(t->nbytes, nbytes);
    if (nbytes)
        assert_memory_equal(t->data, want, nbytes);
}

static void test_roundtrip_all_dtypes_streaming(void **state)
{
    (void)state;
    enum { N = ST_DTYPE_COUNT * RT_SHAPES };
    st_tensor_spec specs[N];
    char names[N][32];
    uint8_t *data[N];
    uint64_t nbytes[N], elems[N];
    uint64_t rng = 0x5eed;
    for (int i = 0; i < N; i++) {
        int dt = i / RT_SHAPES, k = i % RT_SHAPES;
        snprintf(names[i], sizeof names[i], "t.%s.%d", st_dtype_name((st_dtype)dt), k);
        specs[i] = spec1(names[i], (st_dtype)dt, rt_ndims[k], rt_shapes[k]);
        elems[i] = rt_elems[k];
        nbytes[i] = rt_elems[k] * st_dtype_size((st_dtype)dt);
        data[i] = malloc(nbytes[i] + 1);
        for (uint64_t j = 0; j < nbytes[i]; j++)
            data[i][j] = (uint8_t)tu_rand(&rng);
    }
    /* Metadata that needs escaping: quote, backslash, newline, a control byte, UTF-8. */
    const char *keys[] = {"format", "odd \"key\"\\", "note"};
    const char *vals[] = {"pt", "line1\nline2\t\x01", "h\xc3\xa9llo \xe2\x82\xac"};
    const char *path = tu_tmp("roundtrip.safetensors");
    qk_err err;
    st_writer *w;
    assert_int_equal(st_writer_open(&w, path, specs, N, keys, vals, 3, &err), QK_OK);
    assert_false(tu_exists(path)); /* nothing at the target before commit */
    /* Concatenate and write in random pieces, some spanning tensors, some empty. */
    uint64_t total = 0;
    for (int i = 0; i < N; i++)
        total += nbytes[i];
    assert_int_equal(st_writer_remaining(w), total);
    uint8_t *all = malloc(total);
    for (int i = 0, at = 0; i < N; at += (int)nbytes[i], i++)
        memcpy(all + at, data[i], nbytes[i]);
    for (uint64_t at = 0; at < total;) {
        uint64_t piece = tu_rand(&rng) % 14;
        if (piece > total - at)
            piece = total - at;
        assert_int_equal(st_writer_write(w, all + at, piece, &err), QK_OK);
        at += piece;
    }
    assert_int_equal(st_writer_remaining(w), 0);
    assert_int_equal(st_writer_commit(w, &err), QK_OK);
    check_header_independently(path, specs, N, nbytes, "format");

    st_model *m;
    assert_int_equal(st_model_open(&m, path, &err), QK_OK);
    assert_int_equal(st_model_n_tensors(m), N);
    assert_int_equal(st_model_data_bytes(m), total);
    for (int i = 0; i < N; i++) {
        const st_tensor *t = st_model_tensor(m, (size_t)i);
        check_read_back(t, &specs[i], data[i], nbytes[i], elems[i]);
        assert_ptr_equal(st_model_find(m, names[i]), t);
        assert_string_equal(t->path, path);
    }
    assert_int_equal(st_model_n_meta(m), 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(st_model_meta_key(m, i), keys[i]);
        assert_string_equal(st_model_meta_value(m, i), vals[i]);
    }
    assert_null(st_model_meta_key(m, 3));
    assert_int_equal(st_model_n_index_meta(m), 0);
    assert_int_equal(st_model_n_files(m), 1);
    assert_string_equal(st_model_file_path(m, 0), path);
    st_model_close(m);
    free(all);
    for (int i = 0; i < N; i++)
        free(data[i]);
}

/* The one-call writer and st_file's own accessors. */
static void test_write_file_and_file_api(void **state)
{
    (void)state;
    int32_t a[6] = {1, -2, 3, -4, 5, -6};
    uint16_t b[1] = {0x3f80};
    uint8_t c[5] = {9, 8, 7, 6, 5};
    st_tensor_spec specs[3] = {
        spec1("z.last.alphabetically", ST_I32, 2, (const int64_t[]){2, 3}),
        spec1("a.scalar", ST_BF16, 0, NULL),
        spec1("m.bytes", ST_U8, 1, (const int64_t[]){5}),
    };
    const void *data[3] = {a, b, c};
    const char *path = tu_tmp("file_api.safetensors");
    qk_err err;
    assert_int_equal(st_write_file(path, specs, data, 3, NULL, NULL, 0, &err), QK_OK);
    st_file *f;
    assert_int_equal(st_file_open(&f, path, &err), QK_OK);
    assert_string_equal(st_file_path(f), path);
    assert_int_equal(st_file_n_tensors(f), 3);
    assert_int_equal(st_file_n_meta(f), 0);
    assert_null(st_file_meta_key(f, 0));
    assert_int_equal(st_file_data_bytes(f), 24 + 2 + 5);
    /* Caller's order, not alphabetical; offsets in the file follow it. */
    const st_tensor *t0 = st_file_tensor(f, 0), *t1 = st_file_tensor(f, 1);
    const st_tensor *t2 = st_file_tensor(f, 2);
    assert_string_equal(t0->name, "z.last.alphabetically");
    assert_int_equal(t1->offset, t0->offset + 24);
    assert_int_equal(t2->offset, t1->offset + 2);
    assert_int_equal(t0->offset % 8, 0);
    assert_int_equal(((const int32_t *)t0->data)[5], -6);
    assert_int_equal(t1->n_dims, 0);
    assert_int_equal(t1->n_elements, 1);
    assert_int_equal(*(const uint16_t *)t1->data, 0x3f80);
    assert_ptr_equal(st_file_find(f, "m.bytes"), t2);
    assert_null(st_file_find(f, "m.byte"));
    assert_null(st_file_tensor(f, 3));
    /* Offsets are from the start of the file. */
    size_t n;
    uint8_t *raw = tu_read(path, &n);
    assert_memory_equal(raw + t2->offset, c, 5);
    free(raw);
    st_file_close(f);
    st_file_close(NULL);
    st_model_close(NULL);
}

static void test_open_mem(void **state)
{
    (void)state;
    static const char json[] = "{\"x\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    uint8_t img[8 + sizeof json - 1 + 4];
    put_le64(img, sizeof json - 1);
    memcpy(img + 8, json, sizeof json - 1);
    memcpy(img + 8 + sizeof json - 1, (const uint8_t[]){1, 0, 0xff, 0xff}, 4);
    st_file *f;
    qk_err err;
    assert_int_equal(st_file_open_mem(&f, img, sizeof img, "mem.safetensors", &err), QK_OK);
    const st_tensor *t = st_file_find(f, "x");
    assert_non_null(t);
    assert_ptr_equal(t->data, img + 8 + sizeof json - 1);
    int16_t second; /* the data sits at an odd address: no direct int16_t load */
    memcpy(&second, (const uint8_t *)t->data + 2, 2);
    assert_int_equal(second, -1);
    assert_string_equal(t->path, "mem.safetensors");
    st_file_close(f);
    assert_int_equal(st_file_open_mem(&f, img, 7, "mem.safetensors", &err), QK_EFORMAT);
    tu_assert_msg(err.msg, "mem.safetensors: file is 7 bytes");
}

/* Gaps, trailing bytes, leading spaces and empty tensors anywhere are all legal. */
static void test_lenient_layouts(void **state)
{
    (void)state;
    const char *path = tu_tmp("lenient.safetensors");
    write_raw(path,
              "  {\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]},"
              "\"e\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[7,7]},"
              "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3],\"extra\":1}}   ",
              12);
    st_file *f;
    qk_err err;
    assert_int_equal(st_file_open(&f, path, &err), QK_OK);
    assert_int_equal(st_file_n_tensors(f), 3);
    const st_tensor *a = st_file_find(f, "a"), *b = st_file_find(f, "b");
    assert_int_equal(((const uint8_t *)a->data)[0], 1);
    assert_int_equal(((const uint8_t *)b->data)[1], 7);
    assert_int_equal(st_file_find(f, "e")->nbytes, 0);
    assert_string_equal(st_file_tensor(f, 0)->name, "b"); /* header order */
    st_file_close(f);
}

/* Many tensors: every lookup lands on the right one. */
static void test_find_many(void **state)
{
    (void)state;
    enum { N = 3000 };
    st_tensor_spec *specs = calloc(N, sizeof *specs);
    char(*names)[40] = calloc(N, sizeof *names);
    uint16_t *vals = calloc(N, sizeof *vals);
    const void **data = calloc(N, sizeof *data);
    uint64_t rng = 99;
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "model.layers.%llu.w%d",
                 (unsigned long long)(tu_rand(&rng) % 100000), i);
        specs[i] = spec1(names[i], ST_U16, 1, (const int64_t[]){1});
        vals[i] = (uint16_t)i;
        data[i] = &vals[i];
    }
    const char *path = tu_tmp("many.safetensors");
    qk_err err;
    assert_int_equal(st_write_file(path, specs, data, N, NULL, NULL, 0, &err), QK_OK);
    st_model *m;
    assert_int_equal(st_model_open(&m, path, &err), QK_OK);
    for (int i = 0; i < N; i++) {
        const st_tensor *t = st_model_find(m, names[i]);
        assert_non_null(t);
        assert_int_equal(*(const uint16_t *)t->data, i);
    }
    assert_null(st_model_find(m, "model.layers.0"));
    st_model_close(m);
    free(specs);
    free(names);
    free(vals);
    free(data);
}

/* ---- real checkpoints ------------------------------------------------------------------- */

static void test_stories260k(void **state)
{
    (void)state;
    TU_SHARED(path, "models/stories260K/model.safetensors");
    st_model *m;
    qk_err err;
    assert_int_equal(st_model_open(&m, path, &err), QK_OK);
    /* Expected values read from the header with a separate script (python json/struct). */
    assert_int_equal(st_model_n_tensors(m), 47);
    for (size_t i = 0; i < 47; i++)
        assert_int_equal(st_model_tensor(m, i)->dtype, ST_F32);
    assert_int_equal(st_model_data_bytes(m), 1040128);
    assert_string_equal(st_model_tensor(m, 0)->name, "model.embed_tokens.weight");
    assert_string_equal(st_model_tensor(m, 46)->name, "model.norm.weight");
    const st_tensor *e = st_model_find(m, "model.embed_tokens.weight");
    assert_int_equal(e->n_dims, 2);
    assert_int_equal(e->shape[0], 512);
    assert_int_equal(e->shape[1], 64);
    assert_int_equal(e->offset, 8 + 4856);
    const st_tensor *down = st_model_find(m, "model.layers.0.mlp.down_proj.weight");
    assert_int_equal(down->shape[0], 64);
    assert_int_equal(down->shape[1], 172);
    assert_int_equal(down->offset, 8 + 4856 + 131328);
    const st_tensor *v = st_model_find(m, "model.layers.4.self_attn.v_proj.weight");
    assert_int_equal(v->shape[0], 32);
    assert_int_equal(v->shape[1], 64);
    assert_int_equal(fnv1a64(v->data, v->nbytes), 0xe77325f5e6ef428bull);
    const st_tensor *norm = st_model_find(m, "model.norm.weight");
    assert_int_equal(norm->nbytes, 256);
    assert_int_equal(fnv1a64(norm->data, norm->nbytes), 0x411bf9c8787bfab5ull);
    double sum = 0;
    for (int i = 0; i < 64; i++)
        sum += ((const float *)norm->data)[i];
    tu_assert_near(sum, 115.95276230573654, 1e-9);
    tu_assert_near(((const float *)norm->data)[0], 2.4583089351654053, 0);
    assert_null(st_model_find(m, "lm_head.weight")); /* tied embeddings */
    assert_int_equal(st_model_n_meta(m), 1);
    assert_string_equal(st_model_meta_key(m, 0), "format");
    assert_string_equal(st_model_meta_value(m, 0), "pt");
    st_model_close(m);
}

static void test_stories3m_bf16(void **state)
{
    (void)state;
    TU_SHARED(path, "models/stories3M/model.safetensors");
    st_model *m;
    qk_err err;
    assert_int_equal(st_model_open(&m, path, &err), QK_OK);
    assert_int_equal(st_model_n_tensors(m), 39);
    for (size_t i = 0; i < 39; i++)
        assert_int_equal(st_model_tensor(m, i)->dtype, ST_BF16);
    assert_int_equal(st_model_data_bytes(m), 6820352);
    const st_tensor *head = st_model_find(m, "lm_head.weight");
    assert_ptr_equal(head, st_model_tensor(m, 0));
    assert_int_equal(head->shape[0], 512);
    assert_int_equal(head->shape[1], 256);
    assert_int_equal(head->nbytes, 262144);
    assert_int_equal(fnv1a64(head->data, head->nbytes), 0xb972003c0aead316ull);
    /* First value -0.1328125 is bf16 0xbe08 (little-endian bytes 08 be). */
    assert_int_equal(((const uint16_t *)head->data)[0], 0xbe08);
    const st_tensor *ln = st_model_find(m, "model.layers.0.input_layernorm.weight");
    assert_int_equal(ln->n_dims, 1);
    assert_int_equal(ln->shape[0], 256);
    assert_int_equal(fnv1a64(ln->data, ln->nbytes), 0x86464faeb0b9509cull);
    st_model_close(m);
}

/* ---- sharded models ------------------------------------------------------------------------ */

static const char *shard_names[3] = {"model-00001-of-00003.safetensors",
                                     "model-00002-of-00003.safetensors",
                                     "model-00003-of-00003.safetensors"};

/* Shard k holds tensors named "<k>.<j>" (1, 2, 3 of them), U8 [4] filled with 16k + j. */
static void write_shards(const char *dir)
{
    const char *fmt[] = {"format"}, *pt[] = {"pt"};
    for (int k = 0; k < 3; k++) {
        st_tensor_spec specs[3];
        char names[3][16];
        uint8_t vals[3][4];
        const void *data[3];
        for (int j = 0; j <= k; j++) {
            snprintf(names[j], sizeof names[j], "%c.%d", 'a' + k, j);
            specs[j] = spec1(names[j], ST_U8, 1, (const int64_t[]){4});
            memset(vals[j], 16 * k + j, 4);
            data[j] = vals[j];
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, shard_names[k]);
        qk_err err;
        assert_int_equal(st_write_file(path, specs, data, (size_t)k + 1, fmt, pt, 1, &err), QK_OK);
    }
}

static const char good_index[] =
    "{\"metadata\": {\"total_size\": 24, \"note\": \"hi\", \"list\": [1, 2]},\n"
    " \"weight_map\": {\"c.2\": \"model-00003-of-00003.safetensors\",\n"
    "  \"a.0\": \"model-00001-of-00003.safetensors\",\n"
    "  \"b.1\": \"model-00002-of-00003.safetensors\",\n"
    "  \"b.0\": \"model-00002-of-00003.safetensors\",\n"
    "  \"c.0\": \"model-00003-of-00003.safetensors\",\n"
    "  \"c.1\": \"model-00003-of-00003.safetensors\"}}\n";

static void check_sharded(const st_model *m, const char *dir)
{
    static const char *order[6] = {"a.0", "b.0", "b.1", "c.0", "c.1", "c.2"};
    static const int shard_of[6] = {0, 1, 1, 2, 2, 2}, fill[6] = {0, 16, 17, 32, 33, 34};
    assert_int_equal(st_model_n_files(m), 3);
    assert_int_equal(st_model_n_tensors(m), 6);
    assert_int_equal(st_model_data_bytes(m), 24);
    char path[4096];
    for (size_t k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, shard_names[k]);
        assert_string_equal(st_model_file_path(m, k), path);
    }
    assert_null(st_model_file_path(m, 3));
    for (size_t i = 0; i < 6; i++) {
        const st_tensor *t = st_model_tensor(m, i);
        assert_string_equal(t->name, order[i]);
        assert_ptr_equal(st_model_find(m, order[i]), t);
        assert_int_equal(t->file, shard_of[i]);
        assert_string_equal(t->path, st_model_file_path(m, (size_t)shard_of[i]));
        assert_memory_equal(t->data, ((const uint8_t[4]){fill[i], fill[i], fill[i], fill[i]}), 4);
    }
    assert_null(st_model_tensor(m, 6));
    assert_null(st_model_find(m, "d.0"));
    assert_int_equal(st_model_n_meta(m), 1);
    assert_string_equal(st_model_meta_value(m, 0), "pt");
}

static void test_sharded_index(void **state)
{
    (void)state;
    const char *dir = tu_tmp("sharded");
    make_dir(dir);
    write_shards(dir);
    char index[4096];
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    write_text(index, good_index);
    qk_err err;
    st_model *m;
    assert_int_equal(st_model_open(&m, index, &err), QK_OK);
    check_sharded(m, dir);
    assert_int_equal(st_model_n_index_meta(m), 3);
    assert_string_equal(st_model_index_meta_key(m, 0), "total_size");
    assert_string_equal(st_model_index_meta_value(m, 0), "24");
    assert_string_equal(st_model_index_meta_value(m, 1), "hi");
    assert_string_equal(st_model_index_meta_value(m, 2), "[1,2]");
    assert_null(st_model_index_meta_key(m, 3));
    st_model_close(m);
    /* The folder resolves to its index. */
    assert_int_equal(st_model_open(&m, dir, &err), QK_OK);
    check_sharded(m, dir);
    assert_int_equal(st_model_n_index_meta(m), 3);
    st_model_close(m);
}

static void test_folder_without_index(void **state)
{
    (void)state;
    const char *dir = tu_tmp("noindex");
    make_dir(dir);
    write_shards(dir);
    /* Neither hidden files nor other extensions count. */
    char p[4096];
    snprintf(p, sizeof p, "%s/.hidden.safetensors", dir);
    write_text(p, "garbage");
    snprintf(p, sizeof p, "%s/README.md", dir);
    write_text(p, "hello");
    snprintf(p, sizeof p, "%s/sub.safetensors", dir);
    make_dir(p);
    qk_err err;
    st_model *m;
    assert_int_equal(st_model_open(&m, dir, &err), QK_OK);
    check_sharded(m, dir);
    assert_int_equal(st_model_n_index_meta(m), 0);
    st_model_close(m);
    /* model.safetensors wins over the other files. */
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    st_tensor_spec s = spec1("only", ST_I8, 1, (const int64_t[]){1});
    const void *d[1] = {"\x05"};
    assert_int_equal(st_write_file(p, &s, d, 1, NULL, NULL, 0, &err), QK_OK);
    assert_int_equal(st_model_open(&m, dir, &err), QK_OK);
    assert_int_equal(st_model_n_files(m), 1);
    assert_int_equal(st_model_n_tensors(m), 1);
    assert_string_equal(st_model_tensor(m, 0)->name, "only");
    assert_int_equal(st_model_n_meta(m), 0);
    st_model_close(m);
}

/* ---- malformed files: one test per case ---------------------------------------------------- */

#define T_OK "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"

static void test_bad_short_file(void **state)
{
    (void)state;
    const char *path = tu_tmp("short.safetensors");
    tu_write(path, "\x02\0\0\0\0", 5);
    expect_open_error(path, QK_EFORMAT, "file is 5 bytes, too short for the 8-byte header length");
    tu_write(path, "", 0);
    expect_open_error(path, QK_EFORMAT, "file is 0 bytes");
}

static void test_bad_header_past_end(void **state)
{
    (void)state;
    const char *path = tu_tmp("past.safetensors");
    uint8_t buf[8 + 2];
    put_le64(buf, 1000);
    memcpy(buf + 8, "{}", 2);
    tu_write(path, buf, sizeof buf);
    expect_open_error(path, QK_EFORMAT,
                      "header length 1000 runs past the end of the file (10 bytes)");
}

static void test_bad_header_too_long(void **state)
{
    (void)state;
    const char *path = tu_tmp("huge.safetensors");
    uint8_t buf[8 + 2];
    put_le64(buf, 100ull << 21);
    memcpy(buf + 8, "{}", 2);
    tu_write(path, buf, sizeof buf);
    expect_open_error(path, QK_EFORMAT, "header length 209715200 is over the limit");
    put_le64(buf, UINT64_MAX);
    tu_write(path, buf, sizeof buf);
    expect_open_error(path, QK_EFORMAT, "is over the limit of 104857600 bytes (100 MiB)");
}

static void test_bad_invalid_json(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{" T_OK "}", 8, QK_EFORMAT, "header is not valid JSON");
}

static void test_bad_trailing_garbage(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{" T_OK "}} x", 8, QK_EFORMAT, "header is not valid JSON");
}

static void test_bad_nul_in_header(void **state)
{
    (void)state;
    const char *path = tu_tmp("nul.safetensors");
    uint8_t buf[8 + 8] = {8};
    memcpy(buf + 8, "{}  \0   ", 8);
    tu_write(path, buf, sizeof buf);
    expect_open_error(path, QK_EFORMAT, "header contains a NUL byte at offset 4");
}

static void test_bad_not_object(void **state)
{
    (void)state;
    expect_header_error("[1, 2, 3]", 0, QK_EFORMAT, "header is not a JSON object");
}

static void test_bad_entry_not_object(void **state)
{
    (void)state;
    expect_header_error("{\"w\": [1]}", 0, QK_EFORMAT, "tensor 'w': entry is not an object");
}

static void test_bad_missing_dtype(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, QK_EFORMAT,
                        "tensor 'w': missing 'dtype'");
}

static void test_bad_dtype_not_string(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                        QK_EFORMAT, "tensor 'w': 'dtype' is not a string");
}

static void test_bad_unknown_dtype(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 8,
                        QK_EFORMAT, "tensor 'w': unknown dtype 'F4'");
}

static void test_bad_missing_shape(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, QK_EFORMAT,
                        "tensor 'w': missing 'shape'");
}

static void test_bad_shape_not_array(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
                        QK_EFORMAT, "tensor 'w': 'shape' is not an array");
}

static void test_bad_shape_negative(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8,
                        QK_EFORMAT, "tensor 'w': shape[1] is not a non-negative integer");
}

static void test_bad_shape_fraction(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8,
                        QK_EFORMAT, "tensor 'w': shape[0] is not a non-negative integer");
}

static void test_bad_shape_string(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
                        QK_EFORMAT, "tensor 'w': shape[0] is not a non-negative integer");
}

static void test_bad_shape_huge_dim(void **state)
{
    (void)state;
    /* Beyond 2^53 a double no longer holds the exact integer. */
    expect_header_error("{\"w\":{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8,
                        QK_EFORMAT, "tensor 'w': shape[0] is not a non-negative integer");
}

static void test_bad_too_many_dims(void **state)
{
    (void)state;
    expect_header_error(
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
        QK_EUNSUPPORTED, "tensor 'w': shape has 9 dims, at most 8 are supported");
}

static void test_bad_missing_offsets(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, QK_EFORMAT,
                        "tensor 'w': missing 'data_offsets'");
}

static void test_bad_offsets_not_pair(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4,8]}}", 8,
                        QK_EFORMAT, "tensor 'w': 'data_offsets' is not an array of two integers");
}

static void test_bad_offsets_not_integer(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.5]}}", 8,
                        QK_EFORMAT, "tensor 'w': data_offsets[1] is not a non-negative integer");
}

static void test_bad_span_mismatch(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
                        QK_EFORMAT,
                        "tensor 'w': shape [2, 3] of F32 is 24 bytes but data_offsets [0, 20] "
                        "span 20");
}

static void test_bad_shape_overflow(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                        "\"data_offsets\":[0,8]}}",
                        8, QK_ERANGE,
                        "tensor 'w': shape [4294967296, 4294967296] of F32 overflows 64 bits");
}

static void test_bad_offsets_past_data(void **state)
{
    (void)state;
    expect_header_error("{\"model.layers.3.mlp.up_proj.weight\":{\"dtype\":\"F32\",\"shape\":[2],"
                        "\"data_offsets\":[4,12]}}",
                        9, QK_EFORMAT,
                        "tensor 'model.layers.3.mlp.up_proj.weight': data ends at byte 12 but the "
                        "data section has 9");
}

static void test_bad_offsets_reversed(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
                        QK_EFORMAT, "tensor 'w': data_offsets [8, 4] begin after they end");
}

static void test_bad_overlap(void **state)
{
    (void)state;
    expect_header_error("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                        "\"z\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[10,12]},"
                        "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}",
                        12, QK_EFORMAT, "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
}

static void test_bad_overlap_same_range(void **state)
{
    (void)state;
    /* Two names for the same bytes (an aliasing writer) is an overlap too. */
    expect_header_error("{\"y\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[4,8]},"
                        "\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                        8, QK_EFORMAT, "tensors 'x' [4, 8) and 'y' [4, 8) overlap");
}

static void test_bad_duplicate_name(void **state)
{
    (void)state;
    expect_header_error("{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                        "\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
                        4, QK_EFORMAT, "tensor 'w' appears twice in the header");
}

static void test_bad_metadata_not_object(void **state)
{
    (void)state;
    expect_header_error("{\"__metadata__\":[\"pt\"],\"w\":{" T_OK "}}", 8, QK_EFORMAT,
                        "'__metadata__' is not an object");
}

static void test_bad_metadata_value(void **state)
{
    (void)state;
    expect_header_error("{\"__metadata__\":{\"format\":\"pt\",\"n\":3},\"w\":{" T_OK "}}", 8,
                        QK_EFORMAT, "metadata 'n' is not a string");
}

static void test_bad_metadata_twice(void **state)
{
    (void)state;
    expect_header_error("{\"__metadata__\":{},\"__metadata__\":{},\"w\":{" T_OK "}}", 8,
                        QK_EFORMAT, "'__metadata__' appears twice");
    expect_header_error("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, QK_EFORMAT,
                        "metadata key 'k' appears twice");
}

static void test_bad_name_control_chars(void **state)
{
    (void)state;
    /* A name with a newline must not break the one-line message. */
    expect_header_error("{\"a\\nb\":{\"dtype\":\"X\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                        QK_EFORMAT, "tensor 'a?b': unknown dtype 'X'");
}

static void test_bad_not_regular(void **state)
{
    (void)state;
    const char *dir = tu_tmp("a_dir.safetensors");
    make_dir(dir);
    qk_err err;
    st_file *f;
    assert_int_equal(st_file_open(&f, dir, &err), QK_EFORMAT);
    tu_assert_msg(err.msg, "not a regular file");
}

static void test_bad_missing_path(void **state)
{
    (void)state;
    expect_open_error(tu_tmp("absent.safetensors"), QK_EIO, "cannot open: No such file");
}

/* ---- malformed sharded models ------------------------------------------------------------ */

/* A fresh folder with the three good shards and the given index text. */
static const char *shard_dir_with_index(const char *name, const char *index_text)
{
    static char index[4096];
    const char *dir = tu_tmp(name);
    make_dir(dir);
    write_shards(dir);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    write_text(index, index_text);
    return index;
}

/* An escaped NUL (\u0000) in a name would be decoded into a NUL that silently ends it: "a\u0000b"
 * and "a" would alias. Refused anywhere in a header or an index, naming the file; an escaped
 * backslash before "u0000" is not an escape of NUL and stays accepted. */
static void test_bad_escaped_nul_in_names(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int want;
    } headers[] = {
        {"{\"a\\u0000b\":{" T_OK "}}", QK_EFORMAT},
        {"{\"a\":{" T_OK "},\"a\\u0000\":{" T_OK "}}", QK_EFORMAT},
        {"{\"__metadata__\":{\"k\":\"v\\u0000w\"},\"a\":{" T_OK "}}", QK_EFORMAT},
        {"{\"a\\U0000\":{" T_OK "}}", QK_EFORMAT}, /* not an escape JSON knows */
        {"{\"a\\\\u0000\":{" T_OK "}}", QK_OK},     /* "a\\u0000": backslash, then text */
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        const char *path = tu_tmp("esc.safetensors");
        write_raw(path, headers[i].json, 8);
        qk_err err = {{0}};
        st_file *f = NULL;
        int rc = st_file_open(&f, path, &err);
        if (rc != headers[i].want)
            fail_msg("case %zu (%s): %d, expected %d: %s", i, headers[i].json, rc, headers[i].want, err.msg);
        if (rc == QK_OK)
            st_file_close(f);
        else if (i < 3)
            tu_assert_msg(err.msg, "header holds an escaped NUL (\\u0000) in a string at offset");
    }
    const char *index = shard_dir_with_index(
        "ix_nul", "{\"weight_map\": {\"a.0\\u0000x\": \"model-00001-of-00003.safetensors\"}}");
    expect_model_error(index, QK_EFORMAT, "index holds an escaped NUL (\\u0000)");
}

static void test_bad_index_json(void **state)
{
    (void)state;
    const char *index = shard_dir_with_index("ix_json", "{\"weight_map\": {\"a.0\": ");
    expect_model_error(index, QK_EFORMAT, "index is not valid JSON");
}

static void test_bad_index_not_object(void **state)
{
    (void)state;
    const char *index = shard_dir_with_index("ix_obj", "[\"weight_map\"]");
    expect_model_error(index, QK_EFORMAT, "index is not a JSON object");
}

static void test_bad_index_no_weight_map(void **state)
{
    (void)state;
    const char *index = shard_dir_with_index("ix_nowm", "{\"metadata\": {}}");
    expect_model_error(index, QK_EFORMAT, "no 'weight_map' in the index");
}

static void test_bad_index_weight_map_type(void **state)
{
    (void)state;
    const char *index = shard_dir_with_index("ix_wmtype", "{\"weight_map\": [\"a\"]}");
    expect_model_error(index, QK_EFORMAT, "'weight_map' is not an object");
}

static void test_bad_index_empty(void **state)
{
    (void)state;
    const char *index = shard_dir_with_index("ix_empty", "{\"weight_map\": {}}");
    expect_model_error(index, QK_EFORMAT, "'weight_map' is empty");
}

static void test_bad_index_shard_not_string(void **state)
{
    (void)state;
    const char *index = shard_dir_with_index("ix_shtype", "{\"weight_map\": {\"a.0\": 1}}");
    expect_model_error(index, QK_EFORMAT, "weight_map: tensor 'a.0': shard is not a string");
}

static void test_bad_index_shard_escapes(void **state)
{
    (void)state;
    const char *index = shard_dir_with_index(
        "ix_escape", "{\"weight_map\": {\"a.0\": \"x/../../etc.safetensors\"}}");
    expect_model_error(index, QK_EFORMAT,
                       "shard 'x/../../etc.safetensors' is not a path inside the model folder");
    index = shard_dir_with_index("ix_abs", "{\"weight_map\": {\"a.0\": \"/etc/passwd\"}}");
    expect_model_error(index, QK_EFORMAT, "is not a path inside the model folder");
}

static void test_bad_index_missing_shard(void **state)
{
    (void)state;
    const char *index = shard_dir_with_index(
        "ix_missing", "{\"weight_map\": {\"a.0\": \"model-00001-of-00003.safetensors\","
                      "\"x\": \"model-00009-of-00009.safetensors\"}}");
    expect_model_error(index, QK_EIO, "model-00009-of-00009.safetensors: cannot open");
    qk_err err;
    st_model *m;
    assert_int_equal(st_model_open(&m, index, &err), QK_EIO);
    assert_non_null(strstr(err.msg, index)); /* the message names the index too */
}

static void test_bad_index_tensor_not_in_shard(void **state)
{
    (void)state;
    /* b.1 exists, but in shard 2. */
    const char *index = shard_dir_with_index(
        "ix_wrong", "{\"weight_map\": {\"a.0\": \"model-00001-of-00003.safetensors\","
                    "\"b.0\": \"model-00002-of-00003.safetensors\","
                    "\"b.1\": \"model-00003-of-00003.safetensors\"}}");
    expect_model_error(index, QK_EFORMAT,
                       "weight_map puts tensor 'b.1' in model-00003-of-00003.safetensors but that "
                       "file has no such tensor");
    index = shard_dir_with_index(
        "ix_absent", "{\"weight_map\": {\"zz\": \"model-00001-of-00003.safetensors\"}}");
    expect_model_error(index, QK_EFORMAT, "weight_map puts tensor 'zz' in");
}

static void test_bad_index_duplicate_key(void **state)
{
    (void)state;
    const char *index = shard_dir_with_index(
        "ix_dupkey", "{\"weight_map\": {\"a.0\": \"model-00001-of-00003.safetensors\","
                     "\"a.0\": \"model-00002-of-00003.safetensors\"}}");
    expect_model_error(index, QK_EFORMAT, "weight_map lists tensor 'a.0' twice");
}

static void test_bad_same_tensor_two_shards(void **state)
{
    (void)state;
    const char *index = shard_dir_with_index("ix_twice", good_index);
    /* Replace shard 3 with one that also holds b.1. */
    char shard3[4096];
    snprintf(shard3, sizeof shard3, "%.*s/%s", (int)(strrchr(index, '/') - index), index,
             shard_names[2]);
    st_tensor_spec specs[4] = {
        spec1("c.0", ST_U8, 1, (const int64_t[]){4}), spec1("c.1", ST_U8, 1, (const int64_t[]){4}),
        spec1("c.2", ST_U8, 1, (const int64_t[]){4}), spec1("b.1", ST_U8, 1, (const int64_t[]){4}),
    };
    const void *data[4] = {"abcd", "abcd", "abcd", "abcd"};
    qk_err err;
    assert_int_equal(st_write_file(shard3, specs, data, 4, NULL, NULL, 0, &err), QK_OK);
    expect_model_error(index, QK_EFORMAT,
                       "model-00003-of-00003.safetensors: tensor 'b.1' is also in");
    expect_model_error(index, QK_EFORMAT, "model-00002-of-00003.safetensors");
}

static void test_bad_index_metadata(void **state)
{
    (void)state;
    const char *index = shard_dir_with_index(
        "ix_meta",
        "{\"metadata\": 5, \"weight_map\": {\"a.0\": \"model-00001-of-00003.safetensors\"}}");
    expect_model_error(index, QK_EFORMAT, "'metadata' is not an object");
}

static void test_bad_empty_folder(void **state)
{
    (void)state;
    const char *dir = tu_tmp("empty_folder");
    make_dir(dir);
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, "{}");
    expect_model_error(dir, QK_EFORMAT,
                       "no model.safetensors.index.json, model.safetensors or other *.safetensors "
                       "file in this folder");
}

/* A real 10-shard index whose shards are not here: parsed, then the first shard is missing. */
static void test_real_index_without_shards(void **state)
{
    (void)state;
    TU_SHARED(index, "hf-configs/Dolphin3.0-R1-Mistral-24B/model.safetensors.index.json");
    expect_model_error(index, QK_EIO, "model-00001-of-00010.safetensors: cannot open");
}

/* ---- writer failures ------------------------------------------------------------------------ */

static const st_tensor_spec two_specs[2] = {
    {.name = "a", .dtype = ST_F32, .n_dims = 1, .shape = {2}},
    {.name = "b", .dtype = ST_I16, .n_dims = 2, .shape = {2, 2}},
};

static void test_writer_short_data(void **state)
{
    (void)state;
    const char *dir = tu_tmp("w_short");
    make_dir(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    st_writer *w;
    qk_err err;
    assert_int_equal(st_writer_open(&w, path, two_specs, 2, NULL, NULL, 0, &err), QK_OK);
    assert_int_equal(st_writer_write(w, "12345678abc", 11, &err), QK_OK);
    assert_int_equal(st_writer_remaining(w), 5);
    assert_int_equal(st_writer_commit(w, &err), QK_EFORMAT);
    tu_assert_msg(err.msg, "only 11 of the 16 bytes of tensor data were written (tensor 'b' is "
                         "incomplete)");
    assert_non_null(strstr(err.msg, path));
    assert_no_trace(dir, "out.safetensors");
}

static void test_writer_too_much_data(void **state)
{
    (void)state;
    const char *dir = tu_tmp("w_long");
    make_dir(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    st_writer *w;
    qk_err err;
    assert_int_equal(st_writer_open(&w, path, two_specs, 2, NULL, NULL, 0, &err), QK_OK);
    assert_int_equal(st_writer_write(w, "0123456789", 10, &err), QK_OK);
    assert_int_equal(st_writer_write(w, "0123456789", 10, &err), QK_ERANGE);
    tu_assert_msg(err.msg, "writing 10 bytes would pass the 16 bytes of tensor data the header "
                         "declares (10 written)");
    /* Sticky: a later, valid write reports the first error, and so does commit. */
    memset(&err, 0, sizeof err);
    assert_int_equal(st_writer_write(w, "012345", 6, &err), QK_ERANGE);
    tu_assert_msg(err.msg, "would pass");
    assert_int_equal(st_writer_commit(w, &err), QK_ERANGE);
    tu_assert_msg(err.msg, "would pass");
    assert_no_trace(dir, "out.safetensors");
}

static void test_writer_abort(void **state)
{
    (void)state;
    const char *dir = tu_tmp("w_abort");
    make_dir(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    /* An older file at the path survives a failed or aborted rewrite. */
    write_text(path, "old");
    st_writer *w;
    qk_err err;
    assert_int_equal(st_writer_open(&w, path, two_specs, 2, NULL, NULL, 0, &err), QK_OK);
    assert_int_equal(st_writer_write(w, "0123", 4, &err), QK_OK);
    st_writer_abort(w);
    st_writer_abort(NULL);
    size_t n;
    char *old = tu_read(path, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(old, "old", 3);
    free(old);
    assert_int_equal(st_writer_open(&w, path, two_specs, 2, NULL, NULL, 0, &err), QK_OK);
    assert_int_equal(st_writer_commit(w, &err), QK_EFORMAT);
    old = tu_read(path, &n);
    assert_int_equal(n, 3);
    free(old);
    unlink(path);
    assert_no_trace(dir, "out.safetensors");
}

static void expect_writer_open_error(const st_tensor_spec *specs, size_t n, const char *const *k,
                                     const char *const *v, size_t n_meta, int code,
                                     const char *fragment)
{
    const char *path = tu_tmp("w_bad.safetensors");
    st_writer *w = (st_writer *)1;
    qk_err err;
    assert_int_equal(st_writer_open(&w, path, specs, n, k, v, n_meta, &err), code);
    assert_null(w);
    tu_assert_msg(err.msg, fragment);
    assert_false(tu_exists(path));
}

static void test_writer_bad_specs(void **state)
{
    (void)state;
    st_tensor_spec s[2] = {two_specs[0], two_specs[1]};
    s[1].name = "a";
    expect_writer_open_error(s, 2, NULL, NULL, 0, QK_EFORMAT, "tensor name 'a' appears twice");
    s[1] = two_specs[1];
    s[1].shape[1] = -2;
    expect_writer_open_error(s, 2, NULL, NULL, 0, QK_EFORMAT, "tensor 'b': shape[1] is negative");
    s[1] = two_specs[1];
    s[1].dtype = ST_DTYPE_COUNT;
    expect_writer_open_error(s, 2, NULL, NULL, 0, QK_EFORMAT,
                             "tensor 'b': dtype 15 is not an st_dtype");
    s[1] = two_specs[1];
    s[1].n_dims = 9;
    expect_writer_open_error(s, 2, NULL, NULL, 0, QK_EFORMAT, "tensor 'b': 9 dims, not 0..8");
    s[1] = two_specs[1];
    s[1].name = "__metadata__";
    expect_writer_open_error(s, 2, NULL, NULL, 0, QK_EFORMAT, "'__metadata__' is not a valid");
    s[1].name = NULL;
    expect_writer_open_error(s, 2, NULL, NULL, 0, QK_EFORMAT, "tensor 1 has no name");
    s[1] = spec1("huge", ST_F64, 3, (const int64_t[]){1ll << 30, 1ll << 30, 1ll << 30});
    expect_writer_open_error(s, 2, NULL, NULL, 0, QK_ERANGE,
                             "tensor 'huge': size overflows 64 bits");
    const char *k[2] = {"x", "x"}, *v[2] = {"1", "2"};
    expect_writer_open_error(two_specs, 2, k, v, 2, QK_EFORMAT, "metadata key 'x' appears twice");
    v[1] = NULL;
    k[1] = "y";
    expect_writer_open_error(two_specs, 2, k, v, 2, QK_EFORMAT, "metadata 'y' has a NULL value");
}

static void test_writer_bad_directory(void **state)
{
    (void)state;
    const char *path = tu_tmp("no/such/dir/out.safetensors");
    st_writer *w;
    qk_err err;
    assert_int_equal(st_writer_open(&w, path, two_specs, 2, NULL, NULL, 0, &err), QK_EIO);
    assert_null(w);
    tu_assert_msg(err.msg, "cannot create temporary file");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_spec_nbytes),
        cmocka_unit_test(test_writer_exact_bytes),
        cmocka_unit_test(test_roundtrip_all_dtypes_streaming),
        cmocka_unit_test(test_write_file_and_file_api),
        cmocka_unit_test(test_open_mem),
        cmocka_unit_test(test_lenient_layouts),
        cmocka_unit_test(test_find_many),
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_stories3m_bf16),
        cmocka_unit_test(test_sharded_index),
        cmocka_unit_test(test_folder_without_index),
        cmocka_unit_test(test_bad_short_file),
        cmocka_unit_test(test_bad_header_past_end),
        cmocka_unit_test(test_bad_header_too_long),
        cmocka_unit_test(test_bad_invalid_json),
        cmocka_unit_test(test_bad_trailing_garbage),
        cmocka_unit_test(test_bad_nul_in_header),
        cmocka_unit_test(test_bad_escaped_nul_in_names),
        cmocka_unit_test(test_bad_not_object),
        cmocka_unit_test(test_bad_entry_not_object),
        cmocka_unit_test(test_bad_missing_dtype),
        cmocka_unit_test(test_bad_dtype_not_string),
        cmocka_unit_test(test_bad_unknown_dtype),
        cmocka_unit_test(test_bad_missing_shape),
        cmocka_unit_test(test_bad_shape_not_array),
        cmocka_unit_test(test_bad_shape_negative),
        cmocka_unit_test(test_bad_shape_fraction),
        cmocka_unit_test(test_bad_shape_string),
        cmocka_unit_test(test_bad_shape_huge_dim),
        cmocka_unit_test(test_bad_too_many_dims),
        cmocka_unit_test(test_bad_missing_offsets),
        cmocka_unit_test(test_bad_offsets_not_pair),
        cmocka_unit_test(test_bad_offsets_not_integer),
        cmocka_unit_test(test_bad_span_mismatch),
        cmocka_unit_test(test_bad_shape_overflow),
        cmocka_unit_test(test_bad_offsets_past_data),
        cmocka_unit_test(test_bad_offsets_reversed),
        cmocka_unit_test(test_bad_overlap),
        cmocka_unit_test(test_bad_overlap_same_range),
        cmocka_unit_test(test_bad_duplicate_name),
        cmocka_unit_test(test_bad_metadata_not_object),
        cmocka_unit_test(test_bad_metadata_value),
        cmocka_unit_test(test_bad_metadata_twice),
        cmocka_unit_test(test_bad_name_control_chars),
        cmocka_unit_test(test_bad_not_regular),
        cmocka_unit_test(test_bad_missing_path),
        cmocka_unit_test(test_bad_index_json),
        cmocka_unit_test(test_bad_index_not_object),
        cmocka_unit_test(test_bad_index_no_weight_map),
        cmocka_unit_test(test_bad_index_weight_map_type),
        cmocka_unit_test(test_bad_index_empty),
        cmocka_unit_test(test_bad_index_shard_not_string),
        cmocka_unit_test(test_bad_index_shard_escapes),
        cmocka_unit_test(test_bad_index_missing_shard),
        cmocka_unit_test(test_bad_index_tensor_not_in_shard),
        cmocka_unit_test(test_bad_index_duplicate_key),
        cmocka_unit_test(test_bad_same_tensor_two_shards),
        cmocka_unit_test(test_bad_index_metadata),
        cmocka_unit_test(test_bad_empty_folder),
        cmocka_unit_test(test_real_index_without_shards),
        cmocka_unit_test(test_writer_short_data),
        cmocka_unit_test(test_writer_too_much_data),
        cmocka_unit_test(test_writer_abort),
        cmocka_unit_test(test_writer_bad_specs),
        cmocka_unit_test(test_writer_bad_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
