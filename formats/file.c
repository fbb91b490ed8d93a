/* file.c — the whole-file reader and the output-versus-input identity check (see file.h). */
#include "file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../quant/buf.h"

#define CHUNK ((size_t)1 << 16)     /* read size for pipes and devices, whose size is unknown */
#define MAX_READ ((size_t)1 << 30) /* one read() call at most (Linux caps it near 2 GiB) */

/* "100 MiB" when the limit is a whole number of MiB, else "12345 bytes". */
static const char *limit_str(size_t max, char *buf, size_t size)
{
    const size_t mib = (size_t)1 << 20;
    if (max >= mib && max % mib == 0)
        snprintf(buf, size, "%zu MiB", max / mib);
    else
        snprintf(buf, size, "%zu bytes", max);
    return buf;
}

static int too_large(const char *path, uint64_t size, int known, size_t max, qk_err *err)
{
    char lim[32];
    limit_str(max, lim, sizeof lim);
    if (known)
        return qk_err_set(err, QK_ERANGE, "%s: %" PRIu64 " bytes, over the limit of %s", path, size,
                          lim);
    return qk_err_set(err, QK_ERANGE, "%s: over the limit of %s", path, lim);
}

int qk_file_read(const char *path, size_t max_bytes, char **out, size_t *len, qk_err *err)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return qk_err_set(err, e == ENOENT || e == ENOTDIR ? QK_ENOTFOUND : QK_EIO,
                          "%s: cannot open: %s", path, strerror(e));
    }
    int rc = QK_OK;
    qk_buf b = {0};
    struct stat st;
    size_t hint = CHUNK; /* bytes expected: the size of a regular file */
    if (fstat(fd, &st) != 0) {
        rc = qk_err_set(err, QK_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = qk_err_set(err, QK_EIO, "%s: is a folder, not a file", path);
        goto done;
    }
    if (S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > max_bytes) {
            rc = too_large(path, (uint64_t)st.st_size, 1, max_bytes, err);
            goto done;
        }
        hint = (size_t)st.st_size;
    }
    /* Read at most max_bytes + 1 bytes: the extra byte tells a file at the limit from one over
     * it. Room for one byte past the expected size lets the end be seen without growing. */
    const size_t stop = max_bytes < SIZE_MAX ? max_bytes + 1 : SIZE_MAX;
    if (qk_buf_reserve(&b, hint < stop ? hint + 1 : stop)) {
        rc = qk_err_set(err, QK_ENOMEM, "%s: out of memory for %zu bytes", path, hint);
        goto done;
    }
    while (b.n < stop) {
        if (b.cap - b.n - 1 == 0 && qk_buf_reserve(&b, CHUNK)) {
            rc = qk_err_set(err, QK_ENOMEM, "%s: out of memory after %zu bytes", path, b.n);
            goto done;
        }
        size_t room = b.cap - b.n - 1; /* keep the NUL's byte */
        if (room > stop - b.n)
            room = stop - b.n;
        if (room > MAX_READ)
            room = MAX_READ;
        ssize_t got = read(fd, b.p + b.n, room);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = qk_err_set(err, QK_EIO, "%s: read failed after %zu bytes: %s", path, b.n,
                            strerror(errno));
            goto done;
        }
        if (got == 0)
            break;
        b.n += (size_t)got;
    }
    if (b.n > max_bytes) { /* a pipe, or a file that grew after fstat: the total is unknown */
        rc = too_large(path, 0, 0, max_bytes, err);
        goto done;
    }
    b.p[b.n] = '\0';
    *out = b.p;
    *len = b.n;
    b.p = NULL;
done:
    qk_buf_free(&b);
    close(fd);
    return rc;
}

/* ---- outputs that would destroy an input ------------------------------------------------------ */

/* out's resolved form when it does not exist: realpath of its folder, then its name. */
static char *resolve_new(const char *out)
{
    const char *slash = strrchr(out, '/');
    const char *name = slash ? slash + 1 : out;
    char *dir = slash ? strndup(out, slash == out ? 1 : (size_t)(slash - out)) : strdup(".");
    char *rdir = dir ? realpath(dir, NULL) : NULL, *res = NULL;
    if (rdir && (res = malloc(strlen(rdir) + strlen(name) + 2)))
        sprintf(res, "%s%s%s", rdir, strcmp(rdir, "/") ? "/" : "", name);
    free(dir);
    free(rdir);
    return res;
}

static int alias(const char *out, const char *in, int folder, qk_err *err)
{
    return qk_err_set(err, QK_EALIAS,
                      "%s: is the input %s (the same %s): writing it would destroy the input; "
                      "choose another output path", out, in, folder ? "folder" : "file");
}

int qk_output_check(const char *out, const char *in, qk_err *err)
{
    struct stat so, si;
    if (stat(in, &si) != 0)
        return QK_OK;
    if (stat(out, &so) != 0) {
        /* nothing at out yet: nothing of the input can be there either, unless the spelling
         * resolves to it (checked anyway, it is cheap) */
        char *ro = resolve_new(out), *ri = realpath(in, NULL);
        int same = ro && ri && !strcmp(ro, ri);
        free(ro);
        free(ri);
        return same ? alias(out, in, S_ISDIR(si.st_mode), err) : QK_OK;
    }
    if (so.st_dev == si.st_dev && so.st_ino == si.st_ino)
        return alias(out, in, S_ISDIR(si.st_mode), err);
    if (!S_ISDIR(si.st_mode))
        return QK_OK;
    DIR *d = opendir(in);
    if (!d)
        return QK_OK; /* unreadable: the command itself will fail to read it */
    int rc = QK_OK;
    struct dirent *e;
    size_t n = strlen(in);
    char *p = malloc(n + 258);
    while (p && rc == QK_OK && (e = readdir(d))) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || strlen(e->d_name) > 255)
            continue;
        sprintf(p, "%s/%s", in, e->d_name);
        if (stat(p, &st) == 0 && !S_ISDIR(st.st_mode) && st.st_dev == so.st_dev && st.st_ino == so.st_ino)
            rc = alias(out, p, 0, err);
    }
    closedir(d);
    if (!p)
        rc = qk_err_set(err, QK_ENOMEM, "%s: out of memory", out);
    free(p);
    return rc;
}
