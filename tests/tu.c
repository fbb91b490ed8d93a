#include "tu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>
#include <unistd.h>

#include "../formats/file.h"

const char *tu_shared(const char *rel)
{
    static char buf[8][4096];
    static int slot;
    const char *root = getenv("QKIT_SHARED");
    if (!root)
        root = "../shared";
    char *p = buf[slot++ & 7];
    snprintf(p, sizeof buf[0], "%s/%s", root, rel);
    struct stat st;
    return stat(p, &st) == 0 ? p : NULL;
}

static char tmpdir[256];

static void remove_tmpdir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

const char *tu_tmp(const char *name)
{
    static char buf[8][4096];
    static int slot;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/qkit-test-XXXXXX");
        if (!mkdtemp(tmpdir))
            fail_msg("mkdtemp failed");
        atexit(remove_tmpdir);
    }
    char *p = buf[slot++ & 7];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

void *tu_read(const char *path, size_t *size)
{
    char *p;
    qk_err err = {{0}};
    if (qk_file_read(path, QK_FILE_NO_LIMIT, &p, size, &err))
        fail_msg("%s", err.msg);
    return p;
}

void tu_write(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        fail_msg("cannot write %s", path);
}

int tu_exists(const char *path) { return access(path, F_OK) == 0; }

void tu_assert_near_impl(double a, double b, double tol, const char *file, int line)
{
    if (!(a - b <= tol && b - a <= tol)) {
        print_error("%.9g != %.9g (tolerance %.3g)\n", a, b, tol);
        _fail(file, line);
    }
}

uint64_t tu_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

float tu_randf(uint64_t *s) { return (float)((tu_rand(s) >> 40) * (1.0 / (1ull << 24))) * 2.0f - 1.0f; }

void tu_copy(const char *from, const char *to)
{
    size_t n;
    void *p = tu_read(from, &n);
    tu_write(to, p, n);
    free(p);
}

const char *tu_mkdir(const char *name)
{
    const char *d = tu_tmp(name);
    if (mkdir(d, 0755) != 0)
        fail_msg("cannot create %s", d);
    return d;
}

const char *tu_join(const char *dir, const char *name)
{
    static char buf[8][4096];
    static int slot;
    char *p = buf[slot++ & 7];
    int n = snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof buf[0])
        fail_msg("path too long: %s/%s", dir, name);
    return p;
}

cJSON *tu_read_json(const char *path)
{
    size_t n;
    char *text = tu_read(path, &n);
    cJSON *j = cJSON_ParseWithLength(text, n);
    free(text);
    if (!j)
        fail_msg("%s: invalid JSON", path);
    return j;
}

void tu_assert_msg(const char *msg, const char *fragment)
{
    if (!strstr(msg, fragment))
        fail_msg("message '%s' lacks '%s'", msg, fragment);
    if (strchr(msg, '\n'))
        fail_msg("message '%s' spans several lines", msg);
}
