/* test_imatrix.c — importance matrices from qkit's engine (calib/imatrix) and their files
 * (formats/imatrix writer, exact sums): llama-imatrix's values on stories3M, exact and
 * order-independent merging, thread independence, the observer changing nothing, mixtures of
 * experts with experts no token reached (through quantize), and bad input as tables. */
#include "tu.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../calib/imatrix.h"
#include "../calib/perplexity.h"
#include "../convert/convert.h"
#include "../convert/eval_model.h"
#include "../convert/quantize.h"
#include "../formats/gguf.h"
#include "../formats/imatrix.h"
#include "../quant/quant.h"
#include "../quant/types.h"

/* ==== fixed point ============================================================================ */

static void test_fx_exact(void **state)
{
    (void)state;
    uint64_t v[2], acc[2] = {0, 0};
    assert_int_equal(imx_fx_from_double(0.75, v), QK_OK);
    assert_true(v[1] == 0 && v[0] == 3ull << 62);
    assert_int_equal(imx_fx_add(acc, v), QK_OK);
    assert_int_equal(imx_fx_add(acc, v), QK_OK); /* the fraction carries into the integer word */
    assert_true(acc[1] == 1 && acc[0] == 1ull << 63);
    assert_true(imx_fx_to_double(acc) == 1.5);
    assert_int_equal(imx_fx_from_double(ldexp(1.0, -64), v), QK_OK);
    assert_true(v[0] == 1 && v[1] == 0);
    assert_int_equal(imx_fx_from_double(ldexp(1.0, -65), v), QK_OK); /* below the resolution */
    assert_true(v[0] == 0 && v[1] == 0);
    assert_int_equal(imx_fx_from_double(123456789.125, v), QK_OK);
    assert_true(v[1] == 123456789 && v[0] == 1ull << 61);
    const double bad[] = {-1.0, -0.0 - 1e-300, NAN, INFINITY, ldexp(1.0, 64)};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(imx_fx_from_double(bad[i], v), QK_ERANGE);
    /* the integer word overflowing is refused and leaves the sum alone */
    uint64_t big[2] = {1ull << 63, UINT64_MAX}, half[2] = {1ull << 63, 0};
    assert_int_equal(imx_fx_add(big, half), QK_ERANGE);
    assert_true(big[0] == 1ull << 63 && big[1] == UINT64_MAX);
    uint64_t one[2] = {0, 1};
    assert_int_equal(imx_fx_add(big, one), QK_ERANGE);
}

/* Sums in any order and grouping are the same integers (what makes merging exact). */
static void test_fx_order_independent(void **state)
{
    (void)state;
    enum { N = 4000 };
    static double x[N];
    uint64_t seed = 42;
    for (int i = 0; i < N; i++) {
        const float f = tu_randf(&seed) * 30.0f;
        x[i] = (double)(f * f) * (i % 7 ? 1.0 : 1e-9);
    }
    uint64_t fwd[2] = {0, 0}, bwd[2] = {0, 0}, parts[2] = {0, 0}, q[2] = {0, 0};
    for (int i = 0; i < N; i++) {
        assert_int_equal(imx_fx_from_double(x[i], q), QK_OK);
        assert_int_equal(imx_fx_add(fwd, q), QK_OK);
        assert_int_equal(imx_fx_from_double(x[N - 1 - i], q), QK_OK);
        assert_int_equal(imx_fx_add(bwd, q), QK_OK);
    }
    for (int p = 0; p < 3; p++) { /* three partial sums, added in another order */
        uint64_t part[2] = {0, 0};
        for (int i = p; i < N; i += 3) {
            assert_int_equal(imx_fx_from_double(x[i], q), QK_OK);
            assert_int_equal(imx_fx_add(part, q), QK_OK);
        }
        assert_int_equal(imx_fx_add(parts, part), QK_OK);
    }
    assert_memory_equal(fwd, bwd, sizeof fwd);
    assert_memory_equal(fwd, parts, sizeof fwd);
}

/* ==== writer and reader ====================================================================== */

typedef struct {
    uint64_t down[2 * 3 * 2], q[2 * 4 * 1], gone[2 * 2];
    int64_t c_down[2], c_q[1], c_gone[1];
    imx_out_entry e[3];
} sample;

/* Three entries: a 3-D [3 columns, 2 experts] with expert 1 unseen, a dense [4] and an entry
 * that saw nothing at all. */
static void sample_init(sample *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 3; i++)
        imx_fx_from_double(10.0 * (i + 1) + 0.25, s->down + 2 * i);
    for (int i = 0; i < 4; i++)
        imx_fx_from_double(1.0 / 3.0 * (i + 1), s->q + 2 * i);
    s->c_down[0] = 5, s->c_down[1] = 0, s->c_q[0] = 7;
    s->e[0] = (imx_out_entry){"blk.1.ffn_down_exps.weight", 3, 2, s->down, s->c_down};
    s->e[1] = (imx_out_entry){"blk.0.attn_q.weight", 4, 1, s->q, s->c_q};
    s->e[2] = (imx_out_entry){"blk.0.attn_k.weight", 2, 1, s->gone, s->c_gone};
}

static const char *const DATASETS[] = {"a.txt", "b.txt"};

static void write_sample(const char *path, const sample *s, int reverse, enum imx_format fmt, size_t *skipped)
{
    imx_out_entry e[3];
    for (int i = 0; i < 3; i++)
        e[i] = s->e[reverse ? 2 - i : i];
    const imx_out o = {e, 3, DATASETS, 2, 12, 256, NULL, {0, 0, 0, 0}};
    qk_err err = {{0}};
    if (imx_write(&o, path, fmt, skipped, &err))
        fail_msg("%s", err.msg);
}

static void test_gguf_roundtrip(void **state)
{
    (void)state;
    sample s;
    sample_init(&s);
    const char *p1 = tu_tmp("s1.gguf"), *p2 = tu_tmp("s2.gguf");
    write_sample(p1, &s, 0, IMX_GGUF, NULL);
    write_sample(p2, &s, 1, IMX_GGUF, NULL);
    size_t n1, n2;
    char *b1 = tu_read(p1, &n1), *b2 = tu_read(p2, &n2);
    assert_int_equal(n1, n2); /* sorted by name whatever the order given */
    assert_memory_equal(b1, b2, n1);
    free(b1);
    free(b2);
    imx_file *f = NULL;
    qk_err err = {{0}};
    assert_int_equal(imx_load(&f, p1, &err), QK_OK);
    assert_int_equal(imx_format_of(f), IMX_GGUF);
    assert_int_equal(imx_count(f), 3); /* GGUF keeps entries without data, as llama.cpp */
    assert_int_equal(imx_chunk_count(f), 12);
    assert_int_equal(imx_chunk_size(f), 256);
    assert_string_equal(imx_dataset(f, 1), "b.txt");
    const imx_entry *e = imx_find(f, "blk.1.ffn_down_exps.weight");
    assert_non_null(e);
    assert_int_equal(e->n_mat, 2);
    assert_int_equal(e->n_unseen, 1);
    for (int i = 0; i < 3; i++) {
        assert_true(e->values[i] == (float)(10.0 * (i + 1) + 0.25) / 5.0f);
        assert_true(e->values[3 + i] == 1.0f); /* the unseen expert: uniform */
    }
    assert_non_null(e->exact);
    assert_memory_equal(e->exact, s.down, sizeof s.down);
    assert_true(e->exact_counts[0] == 5 && e->exact_counts[1] == 0);
    e = imx_find(f, "blk.0.attn_q.weight");
    assert_true(e->values[2] == (float)(1.0 / 3.0 * 3) / 7.0f);
    assert_int_equal(e->n_unseen, 0);
    imx_free(f);
}

static void test_legacy_write(void **state)
{
    (void)state;
    sample s;
    sample_init(&s);
    const char *p = tu_tmp("s.dat");
    size_t skipped = 99;
    write_sample(p, &s, 0, IMX_LEGACY, &skipped);
    assert_int_equal(skipped, 1); /* the entry that saw nothing */
    imx_file *f = NULL;
    qk_err err = {{0}};
    assert_int_equal(imx_load(&f, p, &err), QK_OK);
    assert_int_equal(imx_format_of(f), IMX_LEGACY);
    assert_int_equal(imx_count(f), 2);
    assert_int_equal(imx_chunk_count(f), 12);
    assert_int_equal(imx_n_datasets(f), 1);
    assert_string_equal(imx_dataset(f, 0), "b.txt"); /* the last one, as llama.cpp */
    const imx_entry *e = imx_find(f, "blk.1.ffn_down_exps.weight");
    assert_int_equal(e->n_per_mat, 6); /* one flat entry, llama.cpp c392e50's layout */
    assert_int_equal(e->ncall, 12);
    for (int i = 0; i < 3; i++) { /* (f32(sum) / f32(count)) * ncall, then / ncall by the reader */
        const float want = (float)(10.0 * (i + 1) + 0.25) / 5.0f * 12.0f / 12.0f;
        assert_true(e->values[i] == want);
        assert_true(e->values[3 + i] == 1.0f);
    }
    assert_null(imx_find(f, "blk.0.attn_k.weight"));
    imx_free(f);
}

static void test_write_errors(void **state)
{
    (void)state;
    sample s;
    sample_init(&s);
    qk_err err = {{0}};
    imx_out o = {s.e, 0, DATASETS, 2, 12, 256, NULL, {0, 0, 0, 0}};
    assert_int_equal(imx_write(&o, tu_tmp("none.gguf"), IMX_GGUF, NULL, &err), QK_ERANGE);
    tu_assert_msg(err.msg, "no importance matrix entries");
    imx_out_entry twice[2] = {s.e[1], s.e[1]};
    o = (imx_out){twice, 2, DATASETS, 2, 12, 256, NULL, {0, 0, 0, 0}};
    assert_int_equal(imx_write(&o, tu_tmp("dup.gguf"), IMX_GGUF, NULL, &err), QK_EINTERNAL);
    o = (imx_out){&s.e[2], 1, DATASETS, 2, 12, 256, NULL, {0, 0, 0, 0}};
    assert_int_equal(imx_write(&o, tu_tmp("empty.dat"), IMX_LEGACY, NULL, &err), QK_ERANGE);
    tu_assert_msg(err.msg, "no entry has seen a token");
    assert_false(tu_exists(tu_tmp("empty.dat")));
    o = (imx_out){s.e, 2, DATASETS, 2, 12, 256, NULL, {0, 0, 0, 0}};
    const char *missing = tu_tmp("no/such/dir/x.gguf");
    for (int fmt = IMX_LEGACY; fmt <= IMX_GGUF; fmt++) {
        int rc = imx_write(&o, missing, (enum imx_format)fmt, NULL, &err);
        assert_true(rc == QK_EIO || rc == QK_ENOTFOUND);
        assert_non_null(strstr(err.msg, "no/such/dir"));
    }
}

/* ---- hostile files, as a table ------------------------------------------------------------- */

typedef struct {
    const char *name;
    int type;
    uint32_t nd;
    int64_t ne[3];
    const void *data;
} gtensor;

static void write_gguf(const char *path, int frac_key, const gtensor *t, size_t n)
{
    gguf_writer *w;
    qk_err err = {{0}};
    assert_int_equal(gguf_writer_open(&w, path, NULL, &err), QK_OK);
    gguf_writer_set_str(w, "general.type", "imatrix");
    gguf_writer_set_arr_str(w, "imatrix.datasets", DATASETS, 1);
    gguf_writer_set_u32(w, "imatrix.chunk_count", 3);
    gguf_writer_set_u32(w, "imatrix.chunk_size", 64);
    if (frac_key)
        gguf_writer_set_u32(w, "qkit.imatrix.sum2_fraction_bits", (uint32_t)frac_key);
    for (size_t i = 0; i < n; i++)
        gguf_writer_add_tensor(w, t[i].name, t[i].type, t[i].nd, t[i].ne);
    gguf_writer_begin_data(w);
    for (size_t i = 0; i < n; i++) {
        int64_t ne = t[i].ne[0] * (t[i].nd > 1 ? t[i].ne[1] : 1) * (t[i].nd > 2 ? t[i].ne[2] : 1);
        gguf_writer_write_tensor(w, t[i].name, t[i].data, q_row_size(t[i].type, ne));
    }
    if (gguf_writer_commit(w, &err))
        fail_msg("%s", err.msg);
}

static const float SUMS[2] = {6.5f, 2.0f}, NEG_SUMS[2] = {6.5f, -2.0f}, COUNT[1] = {4.0f},
                   NEG_COUNT[1] = {-4.0f}, HALF_COUNT[1] = {2.5f};
static const uint64_t XSUMS[4] = {1ull << 63, 6, 0, 2}, XSUMS_OFF[4] = {1ull << 62, 6, 0, 2};
static const int64_t XCOUNT[1] = {4}, XCOUNT_OFF[1] = {5};

typedef struct {
    const char *what;
    int frac_key;
    gtensor t[4];
    size_t n;
    int code;
    const char *fragment;
} hostile_case;

#define SUM(d) {"w.in_sum2", Q_TYPE_F32, 2, {2, 1, 1}, d}
#define CNT(d) {"w.counts", Q_TYPE_F32, 2, {1, 1, 1}, d}
#define XSUM(d) {"w.in_sum2.exact", Q_TYPE_I64, 3, {2, 2, 1}, d}
#define XCNT(d) {"w.counts.exact", Q_TYPE_I64, 1, {1, 1, 1}, d}

static const hostile_case HOSTILE[] = {
    {"valid", 64, {SUM(SUMS), CNT(COUNT), XSUM(XSUMS), XCNT(XCOUNT)}, 4, QK_OK, ""},
    {"exact sums disagree", 64, {SUM(SUMS), CNT(COUNT), XSUM(XSUMS_OFF), XCNT(XCOUNT)}, 4, QK_EFORMAT,
     "'w.in_sum2.exact': value 0 disagrees with 'w.in_sum2'"},
    {"exact counts disagree", 64, {SUM(SUMS), CNT(COUNT), XSUM(XSUMS), XCNT(XCOUNT_OFF)}, 4, QK_EFORMAT,
     "'w.counts.exact': count 0 is 5, 'w.counts' holds 4"},
    {"no fraction key", 0, {SUM(SUMS), CNT(COUNT), XSUM(XSUMS), XCNT(XCOUNT)}, 4, QK_EFORMAT,
     "exact sums need u32 qkit.imatrix.sum2_fraction_bits = 64 (missing)"},
    {"other fraction", 32, {SUM(SUMS), CNT(COUNT), XSUM(XSUMS), XCNT(XCOUNT)}, 4, QK_EFORMAT,
     "(other value)"},
    {"exact sums alone", 64, {SUM(SUMS), CNT(COUNT), XSUM(XSUMS)}, 3, QK_EFORMAT,
     "'w.in_sum2.exact' has no matching 'w.counts.exact'"},
    {"exact wrong type", 64, {SUM(SUMS), CNT(COUNT), {"w.in_sum2.exact", Q_TYPE_F32, 3, {2, 2, 1}, XSUMS},
     XCNT(XCOUNT)}, 4, QK_EFORMAT, "must be i64 of shape [2, 2, 1] and [1]"},
    {"orphan exact", 64, {{"v.in_sum2.exact", Q_TYPE_I64, 3, {2, 2, 1}, XSUMS}, SUM(SUMS), CNT(COUNT)}, 3,
     QK_EFORMAT, "'v.in_sum2.exact' has no matching 'v.in_sum2'"},
    {"negative sum", 0, {SUM(NEG_SUMS), CNT(COUNT)}, 2, QK_ERANGE, "entry 'w': value 1 is negative"},
    {"negative count", 0, {SUM(SUMS), CNT(NEG_COUNT)}, 2, QK_ERANGE, "'w.counts': count 0 is negative"},
    {"fractional count (readable)", 0, {SUM(SUMS), CNT(HALF_COUNT)}, 2, QK_OK, ""},
};

static void test_hostile_gguf(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof HOSTILE / sizeof HOSTILE[0]; i++) {
        const hostile_case *c = &HOSTILE[i];
        const char *path = tu_tmp("hostile.gguf");
        write_gguf(path, c->frac_key, c->t, c->n);
        imx_file *f = NULL;
        qk_err err = {{0}};
        int rc = imx_load(&f, path, &err);
        if (rc != c->code)
            fail_msg("%s: status %d, expected %d (%s)", c->what, rc, c->code, err.msg);
        if (c->code) {
            assert_null(f);
            tu_assert_msg(err.msg, c->fragment);
            tu_assert_msg(err.msg, path);
        }
        imx_free(f);
    }
}

/* qkit's shard keys: written and read back; hostile values refused; a set of parts is checked
 * for completeness, duplicates, other runs and other models. */
static void write_shard(const char *path, const sample *s, const char *model, imx_shard sh)
{
    const imx_out o = {s->e, 2, DATASETS, 2, 3, 256, model, sh};
    qk_err err = {{0}};
    if (imx_write(&o, path, IMX_GGUF, NULL, &err))
        fail_msg("%s", err.msg);
}

static imx_file *load_ok(const char *path)
{
    imx_file *f = NULL;
    qk_err err = {{0}};
    if (imx_load(&f, path, &err))
        fail_msg("%s", err.msg);
    return f;
}

static void test_shard_keys_and_sets(void **state)
{
    (void)state;
    sample s;
    sample_init(&s);
    const char *paths[4] = {tu_tmp("sh0.gguf"), tu_tmp("sh1.gguf"), tu_tmp("sh2.gguf"), tu_tmp("sh3.gguf")};
    for (uint32_t i = 0; i < 3; i++)
        write_shard(paths[i], &s, "00112233aabbccdd", (imx_shard){i, 3, 10, 9});
    imx_file *f[4];
    for (int i = 0; i < 3; i++)
        f[i] = load_ok(paths[i]);
    assert_string_equal(imx_model_id(f[1]), "00112233aabbccdd");
    imx_shard sh = imx_shard_of(f[2]);
    assert_true(sh.index == 2 && sh.count == 3 && sh.plan_first == 10 && sh.plan_chunks == 9);
    qk_err err = {{0}};
    assert_int_equal(eng_imatrix_check_shards((const imx_file *const *)f, paths, 3, &err), QK_OK);
    assert_int_equal(eng_imatrix_check_shards((const imx_file *const *)f, paths, 2, &err), QK_EFORMAT);
    tu_assert_msg(err.msg, "shard 2 of 3 (chunks 16-18) is missing");
    /* shard 1 again under another name */
    f[3] = f[1];
    const char *dup[4] = {paths[0], paths[1], paths[2], "again.gguf"};
    assert_int_equal(eng_imatrix_check_shards((const imx_file *const *)f, dup, 4, &err), QK_EFORMAT);
    tu_assert_msg(err.msg, "again.gguf: shard 1 of 3 is also in");
    /* a part of another plan, of another model, and a whole file among parts */
    const struct { imx_shard sh; const char *model; const char *fragment; } bad[] = {
        {{2, 3, 10, 12}, "00112233aabbccdd", "shard 2 of 3 of chunks 10-21, but"},
        {{2, 4, 10, 9}, "00112233aabbccdd", "shard 2 of 4 of chunks 10-18, but"},
        {{2, 3, 10, 9}, "ffffffffffffffff", "collected on another model than"},
        {{0, 0, 0, 0}, "00112233aabbccdd", "not a shard, but"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        write_shard(paths[3], &s, bad[k].model, bad[k].sh);
        imx_file *g[3] = {f[0], f[1], load_ok(paths[3])};
        const char *gp[3] = {paths[0], paths[1], paths[3]};
        assert_int_equal(eng_imatrix_check_shards((const imx_file *const *)g, gp, 3, &err), QK_EFORMAT);
        tu_assert_msg(err.msg, bad[k].fragment);
        imx_free(g[2]);
    }
    /* hostile shard keys in the file: index >= count, more shards than chunks */
    const imx_shard hostile[] = {{3, 3, 0, 9}, {0, 5, 0, 4}, {0, 1, UINT32_MAX, 2}};
    for (size_t k = 0; k < sizeof hostile / sizeof hostile[0]; k++) {
        write_shard(paths[3], &s, NULL, hostile[k]);
        imx_file *g = NULL;
        assert_int_equal(imx_load(&g, paths[3], &err), QK_EFORMAT);
        tu_assert_msg(err.msg, "is not a shard of a plan");
        assert_null(g);
    }
    for (int i = 0; i < 3; i++)
        imx_free(f[i]);
}

/* Every truncation of a valid file of either layout is refused with a message (never a crash). */
static void test_truncated_files(void **state)
{
    (void)state;
    sample s;
    sample_init(&s);
    const char *paths[] = {tu_tmp("t.gguf"), tu_tmp("t.dat")};
    write_sample(paths[0], &s, 0, IMX_GGUF, NULL);
    write_sample(paths[1], &s, 0, IMX_LEGACY, NULL);
    for (int k = 0; k < 2; k++) {
        size_t n;
        char *b = tu_read(paths[k], &n);
        for (size_t cut = 0; cut < n; cut++) {
            imx_file *f = (imx_file *)1;
            qk_err err = {{0}};
            int rc = imx_load_mem(&f, b, cut, "cut", &err);
            /* a legacy file cut exactly at the end of its entries is still a legacy file, a
             * GGUF cut in the padding after its last tensor still holds every byte */
            if (rc == QK_OK && (k == 1 || cut > n - GGUF_DEFAULT_ALIGNMENT)) {
                imx_free(f);
                continue;
            }
            if (rc == QK_OK)
                fail_msg("%s cut at %zu of %zu bytes loaded", paths[k], cut, n);
            assert_null(f);
            tu_assert_msg(err.msg, "cut");
        }
        free(b);
    }
}

static void test_legacy_hostile(void **state)
{
    (void)state;
    struct {
        int32_t ncall;
        float v;
        int code;
        const char *fragment;
    } cases[] = {
        {3, 1.0f, QK_OK, ""},
        {3, -1.0f, QK_ERANGE, "entry 'w': value 0 is negative"},
        {-1, 1.0f, QK_EFORMAT, "entry 'w': call count -1"},
        {3, NAN, QK_ERANGE, "entry 'w': value 0 is not finite"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t b[64];
        size_t n = 0;
        const int32_t head[] = {1, 1};
        memcpy(b, head, 8), n = 8;
        b[n++] = 'w';
        const int32_t mid[] = {cases[i].ncall, 1};
        memcpy(b + n, mid, 8), n += 8;
        memcpy(b + n, &cases[i].v, 4), n += 4;
        imx_file *f = NULL;
        qk_err err = {{0}};
        assert_int_equal(imx_load_mem(&f, b, n, "h.dat", &err), cases[i].code);
        if (cases[i].code)
            tu_assert_msg(err.msg, cases[i].fragment);
        imx_free(f);
    }
    /* a name with a line break is quoted on one line */
    const uint8_t nl[] = {1, 0, 0, 0, 3, 0, 0, 0, 'a', '\n', 'b', 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x80, 0xbf};
    imx_file *f = NULL;
    qk_err err = {{0}};
    assert_int_equal(imx_load_mem(&f, nl, sizeof nl, "h.dat", &err), QK_ERANGE);
    tu_assert_msg(err.msg, "entry 'a?b': value 0 is negative");
}

/* ==== the collector on real models ============================================================ */

typedef struct {
    cv_eval_model em;
    tok_ids ids;
    int bos;
} model_fx;

static int open_fx(model_fx *fx, const char *model, const char *text)
{
    qk_err err = {{0}};
    memset(fx, 0, sizeof *fx);
    const char *m = tu_shared(model), *t = tu_shared(text);
    if (!m || !t)
        return 0;
    if (cv_eval_open(&fx->em, m, &err) || eng_tokenize_text_file(fx->em.vocab, t, &fx->ids, &err))
        fail_msg("%s", err.msg);
    fx->bos = tok_vocab_add_bos(fx->em.vocab) ? fx->em.vocab->special[TOK_BOS] : -1;
    return 1;
}

#define OPEN_FX(fx, model, text)                                                              \
    do {                                                                                      \
        if (!open_fx(fx, model, text)) {                                                      \
            print_message("shared data missing: %s (test skipped)\n", model);                 \
            skip();                                                                           \
        }                                                                                     \
    } while (0)

static void close_fx(model_fx *fx)
{
    tok_ids_free(&fx->ids);
    cv_eval_close(&fx->em);
}

/* Collects chunks [first, last] (n_ctx tokens) with `threads` threads, merges `in` files first,
 * writes path. */
static void collect(const model_fx *fx, int n_ctx, int first, int last, int threads,
                    const char *const *in, int n_in, const char *path, enum imx_format fmt)
{
    eng_imatrix *im;
    qk_err err = {{0}};
    const eng_imatrix_opts io = {0, "model"};
    assert_int_equal(eng_imatrix_create(&im, &fx->em.m, &io, &err), QK_OK);
    assert_int_equal(eng_imatrix_set_chunk_size(im, (uint32_t)n_ctx, &err), QK_OK);
    for (int i = 0; i < n_in; i++) {
        imx_file *f;
        if (imx_load(&f, in[i], &err) || eng_imatrix_add_file(im, f, in[i], &err))
            fail_msg("%s", err.msg);
        imx_free(f);
    }
    if (first >= 0) {
        omp_set_num_threads(threads);
        const eng_imatrix_run_opts ro = {n_ctx, first, last, 0, fx->bos};
        if (eng_imatrix_run(im, fx->ids.ids, fx->ids.n, &ro, NULL, NULL, NULL, &err))
            fail_msg("%s", err.msg);
        assert_int_equal(eng_imatrix_add_dataset(im, "text", &err), QK_OK);
    }
    if (eng_imatrix_write(im, path, fmt, NULL, &err))
        fail_msg("%s", err.msg);
    eng_imatrix_free(im);
    omp_set_num_threads(2);
}

static void assert_same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = tu_read(a, &na), *y = tu_read(b, &nb);
    if (na != nb || memcmp(x, y, na))
        fail_msg("%s and %s differ", a, b);
    free(x);
    free(y);
}

/* One job over chunks 0..5 equals jobs over 0..1 and 2..5 merged in either order, and any
 * thread count; the legacy output of merged statistics equals the single job's too. */
static void test_merge_exact(void **state)
{
    (void)state;
    model_fx fx;
    OPEN_FX(&fx, "models/stories260K.gguf", "text/tinystories-eval.txt");
    const char *all1 = tu_tmp("all1.gguf"), *all3 = tu_tmp("all3.gguf"), *p = tu_tmp("p.gguf"),
               *q = tu_tmp("q.gguf");
    collect(&fx, 64, 0, 5, 1, NULL, 0, all1, IMX_GGUF);
    collect(&fx, 64, 0, 5, 3, NULL, 0, all3, IMX_GGUF);
    assert_same_file(all1, all3);
    collect(&fx, 64, 0, 1, 2, NULL, 0, p, IMX_GGUF);
    collect(&fx, 64, 2, 5, 1, NULL, 0, q, IMX_GGUF);
    const char *pq[] = {p, q}, *qp[] = {q, p};
    const char *m1 = tu_tmp("m1.gguf"), *m2 = tu_tmp("m2.gguf");
    collect(&fx, 64, -1, -1, 1, pq, 2, m1, IMX_GGUF);
    collect(&fx, 64, -1, -1, 1, qp, 2, m2, IMX_GGUF);
    assert_same_file(all1, m1);
    assert_same_file(all1, m2);
    /* a run on top of a partial file, too */
    const char *m3 = tu_tmp("m3.gguf");
    collect(&fx, 64, 2, 5, 2, pq, 1, m3, IMX_GGUF);
    assert_same_file(all1, m3);
    const char *d1 = tu_tmp("all.dat"), *d2 = tu_tmp("m.dat");
    collect(&fx, 64, 0, 5, 2, NULL, 0, d1, IMX_LEGACY);
    collect(&fx, 64, -1, -1, 1, qp, 2, d2, IMX_LEGACY);
    assert_same_file(d1, d2);
    close_fx(&fx);
}

/* The observer sees every block matrix once per forward pass, with the pass's tokens, and the
 * logits are bit for bit those of a pass without it. */
typedef struct {
    int calls;
    int rows;
    int bad;
} seen;

static void count_calls(void *user, const eng_tensor *w, int expert, const float *x, int n)
{
    seen *s = user;
    s->calls++;
    s->rows += n;
    s->bad += expert != -1 || !w->name || !x;
}

static void test_observer_changes_nothing(void **state)
{
    (void)state;
    model_fx fx;
    OPEN_FX(&fx, "models/stories260K.gguf", "text/tinystories-eval.txt");
    const eng_model *m = &fx.em.m;
    enum { N = 48 };
    float *a = malloc(sizeof(float) * N * (size_t)m->n_vocab), *b = malloc(sizeof(float) * N * (size_t)m->n_vocab);
    eng_ctx *c;
    qk_err err = {{0}};
    assert_int_equal(eng_ctx_create(&c, m, N, &err), QK_OK);
    assert_int_equal(eng_forward(c, fx.ids.ids, N, a, &err), QK_OK);
    seen s = {0};
    eng_ctx_set_observer(c, count_calls, &s);
    assert_int_equal(eng_forward(c, fx.ids.ids, N, b, &err), QK_OK);
    assert_memory_equal(a, b, sizeof(float) * N * (size_t)m->n_vocab);
    assert_int_equal(s.calls, 7 * m->n_layer + 1); /* q k v o gate up down per block, output */
    assert_int_equal(s.rows, N * s.calls);
    assert_int_equal(s.bad, 0);
    eng_ctx_set_observer(c, NULL, NULL);
    eng_ctx_free(c);
    free(a);
    free(b);
    close_fx(&fx);
}

/* A non-finite activation names the tensor, the column and the chunk (counted from 0). */
static void test_nan_activation(void **state)
{
    (void)state;
    model_fx fx;
    OPEN_FX(&fx, "models/stories260K.gguf", "text/tinystories-eval.txt");
    fx.em.m.layers[1].v[GA_T_ATTN_NORM][3] = NAN; /* an owned F32 copy */
    eng_imatrix *im;
    qk_err err = {{0}};
    assert_int_equal(eng_imatrix_create(&im, &fx.em.m, NULL, &err), QK_OK);
    const eng_imatrix_run_opts ro = {64, 2, 4, 0, fx.bos};
    assert_int_equal(eng_imatrix_run(im, fx.ids.ids, fx.ids.n, &ro, NULL, NULL, NULL, &err), QK_ERANGE);
    tu_assert_msg(err.msg, "chunk 2: tensor 'blk.1.attn_q.weight': input column 3 holds a non-finite activation");
    eng_imatrix_free(im);
    close_fx(&fx);
}

/* Chunk plans: the text must hold one chunk, and the range must lie in it. */
static void test_plans(void **state)
{
    (void)state;
    struct {
        size_t tokens;
        eng_imatrix_run_opts o;
        int code, first, n;
        const char *fragment;
    } cases[] = {
        {1000, {256, 0, -1, 0, 1}, QK_OK, 0, 3, ""},
        {1000, {256, 1, 2, 0, 1}, QK_OK, 1, 2, ""},
        {1000, {256, 1, -1, 1, 1}, QK_OK, 1, 1, ""},
        {255, {256, 0, -1, 0, 1}, QK_ERANGE, 0, 0,
         "the text has 255 tokens, fewer than one chunk: at least 256 are needed (--ctx 256)"},
        {1000, {256, 3, -1, 0, 1}, QK_ERANGE, 0, 0, "chunk range 3:-1 is outside the text's 3 chunks (0:2)"},
        {1000, {256, 0, 3, 0, 1}, QK_ERANGE, 0, 0, "outside the text's 3 chunks"},
        {1000, {256, 2, 1, 0, 1}, QK_ERANGE, 0, 0, "chunk range 2:1 is empty"},
        {1000, {2, 0, -1, 0, 1}, QK_ERANGE, 0, 0, "too small"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int first = -1, n = -1;
        qk_err err = {{0}};
        assert_int_equal(eng_imatrix_plan(NULL, cases[i].tokens, &cases[i].o, &first, &n, &err), cases[i].code);
        if (cases[i].code)
            tu_assert_msg(err.msg, cases[i].fragment);
        else
            assert_true(first == cases[i].first && n == cases[i].n);
    }
}

/* Files that do not fit the model: names, shapes, chunk sizes, counts; as a table. */
static void test_add_file_errors(void **state)
{
    (void)state;
    model_fx fx;
    OPEN_FX(&fx, "models/stories260K.gguf", "text/tinystories-eval.txt");
    static uint64_t sums[2 * 64];
    static int64_t one[1] = {64};
    const float fsum[64] = {1}, half[1] = {2.5f};
    struct {
        const char *what;
        imx_out_entry e;
        uint32_t chunk_size;
        int raw_half_count;
        const char *fragment;
    } cases[] = {
        {"unknown name", {"blk.99.attn_q.weight", 64, 1, sums, one}, 64, 0,
         "entry 'blk.99.attn_q.weight' is not a weight matrix of model"},
        {"other shape", {"blk.0.attn_q.weight", 32, 1, sums, one}, 64, 0,
         "entry 'blk.0.attn_q.weight' has 32 values x 1 matrices, the tensor in model 64 x 1"},
        {"other chunk size", {"blk.0.attn_q.weight", 64, 1, sums, one}, 128, 0,
         "chunks of 128 tokens, but the statistics merged so far used chunks of 64"},
        {"fractional count", {NULL, 0, 0, NULL, NULL}, 64, 1, "count 2.5 is not a whole number of tokens"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = tu_tmp("bad-in.gguf");
        qk_err err = {{0}};
        if (cases[i].raw_half_count) {
            gtensor t[] = {{"blk.0.attn_q.weight.in_sum2", Q_TYPE_F32, 2, {64, 1, 1}, fsum},
                           {"blk.0.attn_q.weight.counts", Q_TYPE_F32, 2, {1, 1, 1}, half}};
            write_gguf(path, 0, t, 2);
        } else {
            const imx_out o = {&cases[i].e, 1, DATASETS, 1, 1, cases[i].chunk_size, NULL, {0, 0, 0, 0}};
            assert_int_equal(imx_write(&o, path, IMX_GGUF, NULL, &err), QK_OK);
        }
        imx_file *f;
        assert_int_equal(imx_load(&f, path, &err), QK_OK);
        eng_imatrix *im;
        assert_int_equal(eng_imatrix_create(&im, &fx.em.m, &(eng_imatrix_opts){0, "model"}, &err), QK_OK);
        assert_int_equal(eng_imatrix_set_chunk_size(im, 64, &err), QK_OK);
        int rc = eng_imatrix_add_file(im, f, path, &err);
        if (rc == QK_OK)
            fail_msg("%s: merged", cases[i].what);
        tu_assert_msg(err.msg, cases[i].fragment);
        tu_assert_msg(err.msg, path);
        eng_imatrix_free(im);
        imx_free(f);
    }
    close_fx(&fx);
}

/* llama-imatrix (c392e50) on stories3M's F32 conversion, tinystories-calib.txt, n_ctx 256, all
 * 639 chunks: every column's mean of x² within 1e-3 relative, the same 28 entries. The quantized
 * bytes then differ for many tensors (the search is sensitive to the fourth digit): the test
 * prints how many match and requires the same types and shapes. */
static void test_stories3m_against_llama(void **state)
{
    (void)state;
    TU_SHARED(golden, "golden/stories3M/imatrix-calib.dat");
    TU_SHARED(hf, "models/stories3M");
    /* llama-imatrix ran on the F32 conversion (the BF16 folder's dot products round otherwise) */
    const char *f32 = tu_tmp("s3m-f32.gguf"), *qa = tu_tmp("s3m-qa.gguf"), *qb = tu_tmp("s3m-qb.gguf");
    qk_err err = {{0}};
    cv_options co;
    cv_options_init(&co);
    co.outtype = "f32";
    assert_int_equal(cv_convert(hf, f32, &co, NULL, &err), QK_OK);
    model_fx fx;
    memset(&fx, 0, sizeof fx);
    if (cv_eval_open(&fx.em, f32, &err) ||
        eng_tokenize_text_file(fx.em.vocab, tu_shared("text/tinystories-calib.txt"), &fx.ids, &err))
        fail_msg("%s", err.msg);
    fx.bos = fx.em.vocab->special[TOK_BOS];
    const char *path = tu_tmp("s3m-imatrix.gguf");
    omp_set_num_threads(2);
    eng_imatrix *im;
    assert_int_equal(eng_imatrix_create(&im, &fx.em.m, NULL, &err), QK_OK);
    const eng_imatrix_run_opts ro = {256, 0, -1, 0, fx.bos};
    eng_ppl_acc ppl = {0};
    /* Under the sanitizers 16 chunks exercise the same code for memory errors (all 639 take
     * minutes there); the values against llama-imatrix's are checked in the fast tier. */
    const size_t n_ids = SANITIZED ? 16 * 256 + 1 : fx.ids.n;
    if (eng_imatrix_run(im, fx.ids.ids, n_ids, &ro, &ppl, NULL, NULL, &err))
        fail_msg("%s", err.msg);
    if (SANITIZED) {
        assert_int_equal(eng_imatrix_chunk_count(im), 16);
        eng_imatrix_free(im);
        close_fx(&fx);
        return;
    }
    assert_int_equal(eng_imatrix_chunk_count(im), 639);
    assert_int_equal(eng_imatrix_add_dataset(im, "text/tinystories-calib.txt", &err), QK_OK);
    assert_int_equal(eng_imatrix_write(im, path, IMX_GGUF, NULL, &err), QK_OK);
    int64_t unrouted, experts;
    eng_imatrix_unrouted(im, &unrouted, &experts);
    assert_true(unrouted == 0 && experts == 0);
    eng_imatrix_free(im);
    imx_file *ours, *theirs;
    assert_int_equal(imx_load(&ours, path, &err), QK_OK);
    assert_int_equal(imx_load(&theirs, golden, &err), QK_OK);
    assert_int_equal(imx_count(ours), imx_count(theirs));
    assert_int_equal(imx_count(ours), 28);
    double worst = 0;
    for (size_t i = 0; i < imx_count(theirs); i++) {
        const imx_entry *t = imx_entry_at(theirs, i), *o = imx_find(ours, t->name);
        if (!o)
            fail_msg("no entry %s", t->name);
        assert_int_equal(o->n_per_mat * o->n_mat, t->n_per_mat);
        assert_int_equal(o->ncall, 639 * 256); /* every token of every chunk */
        for (int64_t j = 0; j < t->n_per_mat; j++) {
            const double rel = fabs((double)o->values[j] - t->values[j]) / t->values[j];
            worst = rel > worst ? rel : worst;
        }
    }
    print_message("stories3M: worst relative difference to llama-imatrix %.2e\n", worst);
    assert_true(worst < 1e-3);
    /* quantize with both files: same types and shapes; count identical tensors */
    static const int mixes[] = {MX_FTYPE_Q2_K, MX_FTYPE_Q3_K_M, MX_FTYPE_IQ4_XS, MX_FTYPE_Q4_K_M};
    static const char *const names[] = {"Q2_K", "Q3_K_M", "IQ4_XS", "Q4_K_M"};
    for (size_t k = 0; k < 4; k++) {
        const char *imats[2] = {path, golden}, *outs[2] = {qa, qb};
        for (int w = 0; w < 2; w++) {
            qz_params p;
            qz_params_init(&p);
            p.in_path = f32, p.out_path = outs[w], p.ftype = mixes[k], p.imatrix_path = imats[w];
            qz_report *r = NULL;
            if (qz_quantize(&p, &r, NULL, &err))
                fail_msg("%s", err.msg);
            qz_report_free(r);
        }
        gguf_ctx *ga, *gb;
        assert_int_equal(gguf_open(&ga, qa, &err), QK_OK);
        assert_int_equal(gguf_open(&gb, qb, &err), QK_OK);
        assert_int_equal(gguf_n_tensors(ga), gguf_n_tensors(gb));
        int same = 0, matrices = 0, same_matrices = 0;
        for (uint64_t i = 0; i < gguf_n_tensors(ga); i++) {
            const gguf_tensor_info *a = gguf_tensor(ga, i), *b = gguf_find_tensor(gb, a->name);
            assert_non_null(b);
            assert_int_equal(a->type, b->type);
            assert_int_equal(a->nbytes, b->nbytes);
            const int eq = !memcmp(a->data, b->data, a->nbytes);
            const int weighted = !strncmp(a->name, "blk.", 4) && a->n_dims == 2;
            same += eq;
            matrices += weighted;
            same_matrices += eq && weighted;
        }
        print_message("stories3M %s with qkit's imatrix vs llama-imatrix's: %d of %d tensors identical "
                      "(%d of %d weighted matrices)\n", names[k], same, (int)gguf_n_tensors(ga),
                      same_matrices, matrices);
        gguf_close(ga);
        gguf_close(gb);
    }
    imx_free(ours);
    imx_free(theirs);
    close_fx(&fx);
}

/* storiesMoE with every router row made equal: each token picks experts 0 and 1 (ties go to the
 * lower index), so 6 of 8 experts per block see nothing. They are recorded with count 0, merge
 * as such, and quantize gives them uniform weights with a warning: finite output. */
static int g_warned;
static void on_warn(void *user, const char *msg)
{
    (void)user;
    g_warned += strstr(msg, "saw no token during calibration") != NULL;
}

static void test_moe_unrouted_experts(void **state)
{
    (void)state;
    model_fx fx;
    OPEN_FX(&fx, "models/storiesMoE", "text/tinystories-calib.txt");
    eng_model *m = &fx.em.m;
    float *routers[64] = {0};
    assert_true(m->n_layer <= 64);
    for (int l = 0; l < m->n_layer; l++) {
        eng_tensor *r = &m->layers[l].w[GA_T_FFN_GATE_INP];
        assert_true(r->data != NULL);
        const q_kernels *k = q_kernels_get(r->type);
        float *buf = malloc(sizeof(float) * (size_t)(r->ne0 * r->ne1));
        assert_non_null(buf);
        k->dequantize(r->data, buf, r->ne0); /* row 0 everywhere */
        for (int64_t e = 1; e < r->ne1; e++)
            memcpy(buf + e * r->ne0, buf, sizeof(float) * (size_t)r->ne0);
        r->type = Q_TYPE_F32;
        r->data = routers[l] = buf;
    }
    eng_imatrix *im;
    qk_err err = {{0}};
    assert_int_equal(eng_imatrix_create(&im, m, NULL, &err), QK_OK);
    const eng_imatrix_run_opts ro = {64, 0, 1, 0, fx.bos};
    assert_int_equal(eng_imatrix_run(im, fx.ids.ids, fx.ids.n, &ro, NULL, NULL, NULL, &err), QK_OK);
    int64_t unrouted, experts;
    eng_imatrix_unrouted(im, &unrouted, &experts);
    assert_int_equal(experts, 8 * m->n_layer);
    assert_int_equal(unrouted, 6 * m->n_layer);
    eng_imatrix_summary *s;
    size_t n;
    assert_int_equal(eng_imatrix_summarize(im, &s, &n, &err), QK_OK);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(s[i].n_unseen, strstr(s[i].name, "_exps") ? 6 : 0);
        assert_true(isfinite(s[i].mean) && s[i].frac50 > 0 && s[i].frac50 <= 1);
    }
    free(s);
    const char *path = tu_tmp("moe-imatrix.gguf");
    assert_int_equal(eng_imatrix_write(im, path, IMX_GGUF, NULL, &err), QK_OK);
    eng_imatrix_free(im);
    imx_file *f;
    assert_int_equal(imx_load(&f, path, &err), QK_OK);
    const imx_entry *e = imx_find(f, "blk.0.ffn_down_exps.weight");
    assert_non_null(e);
    assert_int_equal(e->n_mat, 8);
    assert_int_equal(e->n_unseen, 6);
    assert_true(e->exact_counts[0] == 128 && e->exact_counts[1] == 128 && e->exact_counts[2] == 0);
    for (int64_t j = 2 * e->n_per_mat; j < 8 * e->n_per_mat; j++)
        assert_true(e->values[j] == 1.0f);
    imx_free(f);
    /* quantize the (unmodified) model with it */
    const char *f32 = tu_tmp("moe-f32.gguf"), *out = tu_tmp("moe-q4km.gguf");
    cv_options co;
    cv_options_init(&co);
    co.outtype = "f32";
    assert_int_equal(cv_convert(tu_shared("models/storiesMoE"), f32, &co, NULL, &err), QK_OK);
    qz_params p;
    qz_params_init(&p);
    p.in_path = f32, p.out_path = out, p.ftype = MX_FTYPE_Q4_K_M, p.imatrix_path = path;
    p.warn = on_warn;
    g_warned = 0;
    qz_report *r = NULL;
    if (qz_quantize(&p, &r, NULL, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(g_warned, 3 * m->n_layer); /* gate, up and down experts of each block */
    for (size_t i = 0; i < r->n; i++)
        assert_true(isfinite(r->t[i].rel_rmse) || r->t[i].quantized == 0);
    qz_report_free(r);
    for (int l = 0; l < m->n_layer; l++)
        free(routers[l]);
    close_fx(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fx_exact),
        cmocka_unit_test(test_fx_order_independent),
        cmocka_unit_test(test_gguf_roundtrip),
        cmocka_unit_test(test_legacy_write),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_hostile_gguf),
        cmocka_unit_test(test_shard_keys_and_sets),
        cmocka_unit_test(test_truncated_files),
        cmocka_unit_test(test_legacy_hostile),
        cmocka_unit_test(test_plans),
        cmocka_unit_test(test_observer_changes_nothing),
        cmocka_unit_test(test_merge_exact),
        cmocka_unit_test(test_nan_activation),
        cmocka_unit_test(test_add_file_errors),
        cmocka_unit_test(test_moe_unrouted_experts),
        cmocka_unit_test(test_stories3m_against_llama),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
