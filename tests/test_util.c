/* test_util.c — the small pieces every module shares: the whole-file reader and the output-versus-
 * input identity check (formats/file), crash-safe output sets (formats/outfile), the growable
 * buffer and array growth (quant/buf), and the status codes (quant/status). */
#include "tu.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../formats/file.h"
#include "../formats/outfile.h"
#include "../quant/buf.h"
#include "../quant/status.h"

/* Some cases ask for impossible allocations and expect NULL back, as glibc gives; under
 * AddressSanitizer (make test-all) that needs allocator_may_return_null. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

/* ---- whole-file reader -------------------------------------------------------------------- */

/* A file of n bytes: 'a', 'b', ... 'z', 'a' ... */
static const char *make_file(const char *name, size_t n)
{
    char *data = malloc(n ? n : 1);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)('a' + i % 26);
    const char *path = tu_tmp(name);
    tu_write(path, data, n);
    free(data);
    return path;
}

static void expect_read(const char *path, size_t max, size_t want_len)
{
    char *out = NULL;
    size_t len = 1234;
    qk_err err = {{0}};
    int rc = qk_file_read(path, max, &out, &len, &err);
    if (rc != QK_OK)
        fail_msg("%s: got %d (%s)", path, rc, err.msg);
    assert_non_null(out);
    assert_int_equal(len, want_len);
    assert_int_equal(out[len], '\0');
    for (size_t i = 0; i < len; i++)
        if (out[i] != (char)('a' + i % 26))
            fail_msg("%s: byte %zu differs", path, i);
    free(out);
}

static void test_read_empty(void **state)
{
    (void)state;
    expect_read(make_file("empty", 0), QK_FILE_NO_LIMIT, 0);
    expect_read(make_file("empty0", 0), 0, 0); /* a zero limit still takes an empty file */
}

static void test_read_contents(void **state)
{
    (void)state;
    expect_read(make_file("small", 5), QK_FILE_NO_LIMIT, 5);
    expect_read(make_file("big", 300007), QK_FILE_NO_LIMIT, 300007); /* several read() calls */
}

static void test_read_at_limit(void **state)
{
    (void)state;
    expect_read(make_file("at16", 16), 16, 16);
    expect_read(make_file("at1m", 1 << 20), 1 << 20, 1 << 20);
}

/* A file whose size the kernel does not report (st_size 0): read as a stream. */
static void test_read_unknown_size(void **state)
{
    (void)state;
    char *out = NULL;
    size_t len = 0;
    qk_err err = {{0}};
    struct stat st;
    if (stat("/proc/self/status", &st) != 0 || st.st_size != 0)
        skip();
    assert_int_equal(qk_file_read("/proc/self/status", QK_FILE_NO_LIMIT, &out, &len, &err), QK_OK);
    assert_true(len > 0);
    assert_int_equal(out[len], '\0');
    assert_int_equal(strlen(out), len);
    assert_non_null(strstr(out, "Name:"));
    free(out);
}

typedef struct {
    const char *what;
    const char *path; /* a path under the temporary directory, or an absolute one */
    size_t size;      /* bytes to create at path (SIZE_MAX: create nothing) */
    size_t max;       /* max_bytes */
    int code;
    const char *fragment;
} read_case;

static void test_read_refusals(void **state)
{
    (void)state;
    const read_case cases[] = {
        {"one byte over", "over17", 17, 16, QK_ERANGE, "over17: 17 bytes, over the limit of 16 bytes"},
        {"over in MiB", "over1m", (1 << 20) + 1, 1 << 20, QK_ERANGE,
         "over1m: 1048577 bytes, over the limit of 1 MiB"},
        {"any byte over zero", "over0", 1, 0, QK_ERANGE, "over the limit of 0 bytes"},
        {"missing", "absent.json", SIZE_MAX, QK_FILE_NO_LIMIT, QK_ENOTFOUND,
         "absent.json: cannot open: No such file or directory"},
        {"missing folder", "no-such-dir/config.json", SIZE_MAX, QK_FILE_NO_LIMIT, QK_ENOTFOUND,
         "no-such-dir/config.json: cannot open"},
        {"through a file", "plain/config.json", SIZE_MAX, QK_FILE_NO_LIMIT, QK_ENOTFOUND,
         "plain/config.json: cannot open: Not a directory"},
        {"a folder", "folder", SIZE_MAX, QK_FILE_NO_LIMIT, QK_EIO, "folder: is a folder, not a file"},
        {"stream over", "/proc/self/status", SIZE_MAX, 10, QK_ERANGE,
         "/proc/self/status: over the limit of 10 bytes"},
    };
    make_file("plain", 3);
    tu_mkdir("folder");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const read_case *c = &cases[i];
        const char *path = c->path[0] == '/' ? c->path : tu_tmp(c->path);
        if (c->size != SIZE_MAX)
            make_file(c->path, c->size);
        char *out = (char *)&out;
        size_t len = 99;
        qk_err err = {{0}};
        int rc = qk_file_read(path, c->max, &out, &len, &err);
        if (rc != c->code || !strstr(err.msg, c->fragment))
            fail_msg("%s: got %d '%s', expected %d with '%s'", c->what, rc, err.msg, c->code,
                     c->fragment);
        tu_assert_msg(err.msg, path); /* every message names the file */
        assert_null(out);
        assert_int_equal(len, 0);
        /* without an error context the status is the same */
        assert_int_equal(qk_file_read(path, c->max, &out, &len, NULL), c->code);
        assert_null(out);
    }
}

/* ---- growable buffer ---------------------------------------------------------------------- */

static void test_buf_append(void **state)
{
    (void)state;
    qk_buf b = {0};
    assert_int_equal(qk_buf_append(&b, NULL, 0), QK_OK); /* empty, but a valid C string */
    assert_non_null(b.p);
    assert_int_equal(b.n, 0);
    assert_string_equal(b.p, "");
    char want[5000];
    for (size_t i = 0; i < sizeof want; i++) {
        char c = (char)('A' + i % 23);
        want[i] = c;
        assert_int_equal(qk_buf_append(&b, &c, 1), QK_OK);
        assert_int_equal(b.n, i + 1);
        assert_true(b.cap >= b.n + 1);
        assert_int_equal(b.p[b.n], '\0');
    }
    assert_memory_equal(b.p, want, sizeof want);
    assert_true(b.cap < 4 * sizeof want); /* geometric, not wildly over */
    assert_int_equal(qk_buf_puts(&b, "xyz"), QK_OK);
    assert_string_equal(b.p + sizeof want, "xyz");
    assert_false(b.oom);
    qk_buf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.cap, 0);
    qk_buf_free(&b); /* twice is fine */
    qk_buf_free(NULL);
}

static void test_buf_reserve(void **state)
{
    (void)state;
    qk_buf b = {0};
    assert_int_equal(qk_buf_reserve(&b, 1000), QK_OK);
    assert_true(b.cap >= 1001);
    assert_int_equal(b.n, 0);
    char *p = b.p;
    char block[1000];
    memset(block, 'q', sizeof block);
    assert_int_equal(qk_buf_append(&b, block, sizeof block), QK_OK);
    assert_ptr_equal(b.p, p); /* the reserved room was used: no move */
    assert_int_equal(b.n, 1000);
    assert_int_equal(b.p[1000], '\0');
    qk_buf_free(&b);
}

static void test_buf_overflow_is_sticky(void **state)
{
    (void)state;
    qk_buf b = {0};
    assert_int_equal(qk_buf_puts(&b, "hello"), QK_OK);
    char *p = b.p;
    size_t cap = b.cap;
    /* n + extra + 1 would wrap around */
    assert_int_equal(qk_buf_reserve(&b, SIZE_MAX - 3), QK_ENOMEM);
    assert_true(b.oom);
    assert_ptr_equal(b.p, p); /* the bytes so far are untouched */
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.n, 5);
    assert_string_equal(b.p, "hello");
    /* sticky: even a small append now fails and changes nothing */
    assert_int_equal(qk_buf_append(&b, "!", 1), QK_ENOMEM);
    assert_int_equal(qk_buf_reserve(&b, 0), QK_ENOMEM);
    assert_int_equal(b.n, 5);
    /* an allocation that cannot succeed (no wrap-around, just too large) also fails cleanly */
    qk_buf c = {0};
    assert_int_equal(qk_buf_reserve(&c, SIZE_MAX - 1), QK_ENOMEM);
    assert_true(c.oom);
    assert_null(c.p);
    qk_buf_free(&b);
    qk_buf_free(&c);
    assert_false(b.oom); /* free resets */
    assert_int_equal(qk_buf_puts(&b, "again"), QK_OK);
    qk_buf_free(&b);
}

/* ---- array growth ------------------------------------------------------------------------- */

static void test_grow(void **state)
{
    (void)state;
    size_t cap = 12345; /* ignored while the array is NULL */
    int32_t *a = qk_grow(NULL, &cap, 0, sizeof *a);
    assert_non_null(a); /* need 0 still gives an array */
    assert_true(cap >= 1);
    size_t n = 0;
    for (int32_t i = 0; i < 10000; i++) {
        int32_t *g = qk_grow(a, &cap, n + 1, sizeof *g);
        assert_non_null(g);
        assert_true(cap >= n + 1);
        a = g;
        a[n++] = i * 7;
    }
    for (size_t i = 0; i < n; i++)
        assert_int_equal(a[i], (int32_t)i * 7);
    assert_true(cap < 2 * 10000 + 16);
    size_t before = cap;
    assert_ptr_equal(qk_grow(a, &cap, cap, sizeof *a), a); /* fits: no move */
    assert_int_equal(cap, before);
    int32_t *g = qk_grow(a, &cap, cap + 1, sizeof *a);
    assert_non_null(g);
    assert_true(cap >= 2 * before); /* geometric */
    a = g;
    g = qk_grow(a, &cap, 3 * cap, sizeof *a); /* a jump past twice the capacity */
    assert_non_null(g);
    assert_true(cap >= 3 * before);
    free(g);
}

static void test_grow_overflow(void **state)
{
    (void)state;
    size_t cap = 0;
    double *a = qk_grow(NULL, &cap, 4, sizeof *a);
    assert_non_null(a);
    a[3] = 2.5;
    size_t before = cap;
    /* need * elem would overflow size_t: refused, the array and capacity untouched */
    assert_null(qk_grow(a, &cap, SIZE_MAX / sizeof *a + 1, sizeof *a));
    assert_int_equal(cap, before);
    assert_null(qk_grow(a, &cap, SIZE_MAX, sizeof *a));
    assert_int_equal(cap, before);
    assert_true(a[3] == 2.5);
    /* representable but impossible to allocate: NULL, still untouched */
    assert_null(qk_grow(a, &cap, SIZE_MAX / sizeof *a - 1, sizeof *a));
    assert_int_equal(cap, before);
    /* a huge element size: even two elements overflow */
    size_t cap2 = 0;
    assert_null(qk_grow(NULL, &cap2, 2, SIZE_MAX / 2 + 1));
    assert_int_equal(cap2, 0);
    free(a);
}

/* ---- outputs that would destroy an input ------------------------------------------------- */

/* Every spelling of "the same file" is refused (QK_EALIAS, one line naming both), everything
 * else passes: the input is never touched by the check. */
static void test_output_check(void **state)
{
    (void)state;
    const char *dir = tu_mkdir("alias");
    char in[4096], cwd[4096], rel[4096];
    snprintf(in, sizeof in, "%s", tu_join(dir, "a.gguf"));
    tu_write(in, "GGUF", 4);
    assert_int_equal(symlink("a.gguf", tu_join(dir, "link.gguf")), 0);
    assert_int_equal(link(in, tu_join(dir, "hard.gguf")), 0);
    tu_write(tu_join(dir, "other.gguf"), "x", 1);
    assert_int_equal(mkdir(tu_join(dir, "hf"), 0755), 0);
    tu_write(tu_join(tu_join(dir, "hf"), "config.json"), "{}", 2);
    assert_int_equal(mkdir(tu_join(tu_join(dir, "hf"), "sub"), 0755), 0);
    assert_int_equal(symlink("../a.gguf", tu_join(tu_join(dir, "hf"), "model.safetensors")), 0);
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    snprintf(rel, sizeof rel, "./sub/../a.gguf");
    assert_int_equal(mkdir("sub", 0755), 0);
    static const struct {
        const char *out, *in;
        int want;
        const char *msg;
    } cases[] = {
        {"a.gguf", "a.gguf", QK_EALIAS, "a.gguf: is the input a.gguf (the same file)"},
        {"./a.gguf", "a.gguf", QK_EALIAS, "./a.gguf: is the input a.gguf"},
        {"sub/../a.gguf", "a.gguf", QK_EALIAS, "writing it would destroy the input"},
        {"link.gguf", "a.gguf", QK_EALIAS, "link.gguf: is the input a.gguf"},
        {"a.gguf", "link.gguf", QK_EALIAS, "a.gguf: is the input link.gguf"},
        {"hard.gguf", "a.gguf", QK_EALIAS, "hard.gguf: is the input a.gguf"},
        {"hf/config.json", "hf", QK_EALIAS, "hf/config.json: is the input hf/config.json"},
        {"hf", "hf", QK_EALIAS, "hf: is the input hf (the same folder)"},
        {"a.gguf", "hf", QK_EALIAS, "a.gguf: is the input hf/model.safetensors"}, /* a link in the folder */
        {"other.gguf", "a.gguf", QK_OK, NULL},
        {"new.gguf", "a.gguf", QK_OK, NULL},
        {"nodir/new.gguf", "a.gguf", QK_OK, NULL},
        {"hf/new.gguf", "hf", QK_OK, NULL},
        {"hf/sub", "hf", QK_OK, NULL},     /* a sub-folder is not an input */
        {"a.gguf", "missing.gguf", QK_OK, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qk_err err = {{0}};
        int rc = qk_output_check(cases[i].out, cases[i].in, &err);
        if (rc != cases[i].want)
            fail_msg("case %zu (%s vs %s): %d, expected %d: %s", i, cases[i].out, cases[i].in, rc,
                     cases[i].want, err.msg);
        if (cases[i].msg)
            tu_assert_msg(err.msg, cases[i].msg);
    }
    /* the absolute spelling */
    char abs_out[4096];
    snprintf(abs_out, sizeof abs_out, "%s", in);
    qk_err err = {{0}};
    assert_int_equal(qk_output_check(abs_out, "a.gguf", &err), QK_EALIAS);
    assert_int_equal(chdir(cwd), 0);
    size_t n;
    char *kept = tu_read(in, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(kept, "GGUF", 4);
    free(kept);
}

/* A set commit that fails at its second rename puts the first file's old contents back and
 * removes every temporary: the old set stays whole. */
static void test_commit_set_failure_keeps_old_set(void **state)
{
    (void)state;
    const char *dir = tu_mkdir("set");
    char p1[4096], p2[4096];
    snprintf(p1, sizeof p1, "%s", tu_join(dir, "m-00001-of-00002.gguf"));
    snprintf(p2, sizeof p2, "%s", tu_join(dir, "m-00002-of-00002.gguf"));
    tu_write(p1, "old1", 4);
    assert_int_equal(mkdir(p2, 0755), 0); /* renaming a file over a folder fails */
    of_file *f[2];
    qk_err err = {{0}};
    assert_int_equal(of_open(&f[0], p1, &err), QK_OK);
    assert_int_equal(of_open(&f[1], p2, &err), QK_OK);
    fputs("new1", of_stream(f[0]));
    fputs("new2", of_stream(f[1]));
    assert_int_equal(of_commit_set(f, 2, &err), QK_EIO);
    tu_assert_msg(err.msg, "m-00002-of-00002.gguf: rename failed");
    size_t n;
    char *b = tu_read(p1, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(b, "old1", 4);
    free(b);
    rmdir(p2);
    /* nothing else is left: no temporaries, no backups */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);
    /* and a set that succeeds replaces both, with no backups left over */
    tu_write(p2, "old2", 4);
    assert_int_equal(of_open(&f[0], p1, &err), QK_OK);
    assert_int_equal(of_open(&f[1], p2, &err), QK_OK);
    fputs("new1", of_stream(f[0]));
    fputs("new2", of_stream(f[1]));
    assert_int_equal(of_commit_set(f, 2, &err), QK_OK);
    b = tu_read(p2, &n);
    assert_memory_equal(b, "new2", 4);
    free(b);
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 2", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(of_defer_signal(SIGTERM), 0); /* outside a commit, handlers run as usual */
}

/* ---- status codes ------------------------------------------------------------------------- */

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(qk_status_str(QK_ENOTFOUND), "not found");
    assert_string_equal(qk_status_str(QK_EIO), "I/O error");
    assert_string_equal(qk_status_str(QK_OK), "ok");
    const int codes[] = {QK_EIO, QK_ENOMEM, QK_EFORMAT, QK_EUNSUPPORTED, QK_ERANGE, QK_EINTERNAL,
                         QK_ENOTFOUND, QK_EALIAS};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        for (size_t j = 0; j < i; j++)
            assert_true(codes[i] != codes[j]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_empty),
        cmocka_unit_test(test_read_contents),
        cmocka_unit_test(test_read_at_limit),
        cmocka_unit_test(test_read_unknown_size),
        cmocka_unit_test(test_read_refusals),
        cmocka_unit_test(test_buf_append),
        cmocka_unit_test(test_buf_reserve),
        cmocka_unit_test(test_buf_overflow_is_sticky),
        cmocka_unit_test(test_grow),
        cmocka_unit_test(test_grow_overflow),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_output_check),
        cmocka_unit_test(test_commit_set_failure_keeps_old_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
