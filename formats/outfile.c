#include "outfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OF_MAX_OPEN 4096 /* split outputs keep every part open until the final rename */
#define OF_PATH_MAX 4096

struct of_file {
    FILE *fp;
    int slot;
    char *path;
    char tmp[OF_PATH_MAX];
};

/* Fixed slots pointing at each file's own path buffer, so the signal handler walks memory that
 * is never reallocated. */
static const char *volatile registry[OF_MAX_OPEN];

static int register_tmp(const char *tmp)
{
    for (int i = 0; i < OF_MAX_OPEN; i++) {
        if (!registry[i]) {
            registry[i] = tmp;
            return i;
        }
    }
    return -1;
}

void of_remove_all_temporaries(void)
{
    for (int i = 0; i < OF_MAX_OPEN; i++)
        if (registry[i])
            unlink(registry[i]);
}

int of_open(of_file **out, const char *path, qk_err *err)
{
    *out = NULL;
    size_t n = strlen(path);
    if (n + 16 > OF_PATH_MAX)
        return qk_err_set(err, QK_ERANGE, "%s: output path too long", path);
    of_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    }
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(f->tmp);
    if (fd < 0) {
        int e = errno;
        free(f->path);
        free(f);
        return qk_err_set(err, QK_EIO, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    /* mkstemp creates 0600; outputs get the usual 0666 & ~umask (on failure they stay 0600). */
    mode_t mask = umask(0);
    umask(mask);
    (void)fchmod(fd, 0666 & ~mask);
    f->fp = fdopen(fd, "wb");
    f->slot = register_tmp(f->tmp);
    if (!f->fp || f->slot < 0) {
        if (f->fp)
            fclose(f->fp);
        else
            close(fd);
        unlink(f->tmp);
        if (f->slot >= 0)
            registry[f->slot] = NULL;
        free(f->path);
        free(f);
        return qk_err_set(err, QK_EIO, "%s: cannot open temporary file", path);
    }
    *out = f;
    return QK_OK;
}

FILE *of_stream(of_file *f) { return f->fp; }

static void release(of_file *f, int remove_tmp)
{
    if (remove_tmp)
        unlink(f->tmp);
    registry[f->slot] = NULL;
    free(f->path);
    free(f);
}

int of_commit(of_file *f, qk_err *err)
{
    int rc = QK_OK;
    const char *what = NULL;
    if (fflush(f->fp) != 0 || ferror(f->fp))
        what = "write";
    else if (fsync(fileno(f->fp)) != 0)
        what = "fsync";
    int e = errno;
    if (fclose(f->fp) != 0 && !what) {
        what = "close";
        e = errno;
    }
    if (!what && rename(f->tmp, f->path) != 0) {
        what = "rename";
        e = errno;
    }
    if (what)
        rc = qk_err_set(err, QK_EIO, "%s: %s failed: %s", f->path, what, strerror(e));
    release(f, rc != QK_OK);
    return rc;
}

void of_abort(of_file *f)
{
    if (!f)
        return;
    fclose(f->fp);
    release(f, 1);
}

int of_write_all(const char *path, const void *data, size_t n, qk_err *err)
{
    of_file *f;
    int rc = of_open(&f, path, err);
    if (rc != QK_OK)
        return rc;
    if (fwrite(data, 1, n, f->fp) != n) {
        int e = errno;
        of_abort(f);
        return qk_err_set(err, QK_EIO, "%s: write failed: %s", path, strerror(e));
    }
    return of_commit(f, err);
}
