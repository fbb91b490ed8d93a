#include "outfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OF_MAX_OPEN 16
#define OF_PATH_MAX 4096

struct of_file {
    FILE *fp;
    int slot;
    char *path;
    char tmp[OF_PATH_MAX];
};

/* Fixed slots (not a list) so the signal handler walks memory that is never reallocated. */
static char registry[OF_MAX_OPEN][OF_PATH_MAX];
static volatile int registry_used[OF_MAX_OPEN];

static int register_tmp(const char *tmp)
{
    for (int i = 0; i < OF_MAX_OPEN; i++) {
        if (!registry_used[i]) {
            memcpy(registry[i], tmp, strlen(tmp) + 1);
            registry_used[i] = 1;
            return i;
        }
    }
    return -1;
}

void of_remove_all_temporaries(void)
{
    for (int i = 0; i < OF_MAX_OPEN; i++)
        if (registry_used[i])
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
    f->fp = fdopen(fd, "wb");
    f->slot = register_tmp(f->tmp);
    if (!f->fp || f->slot < 0) {
        if (f->fp)
            fclose(f->fp);
        else
            close(fd);
        unlink(f->tmp);
        if (f->slot >= 0)
            registry_used[f->slot] = 0;
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
    registry_used[f->slot] = 0;
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
