/* outfile.c — crash-safe output files and sets of them (see outfile.h). */
#include "outfile.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OF_MAX_OPEN 4096 /* split outputs keep every part open until the final rename */
#define OF_PATH_MAX 4096

struct of_file {
    FILE *fp;     /* NULL once closed */
    int slot;
    int has_old;  /* of_commit_set: a hard link TMP.old keeps the file PATH held before */
    char *path;
    char tmp[OF_PATH_MAX];
};

/* A set commit is renaming: signal handlers defer (of_defer_signal). */
static volatile sig_atomic_t committing, pending_signal;

int of_defer_signal(int sig)
{
    if (!committing)
        return 0;
    pending_signal = sig;
    return 1;
}

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
    if (n + 24 > OF_PATH_MAX)
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
    int e = errno;
    f->slot = f->fp ? register_tmp(f->tmp) : -1;
    if (!f->fp || f->slot < 0) {
        const char *why = f->fp ? "more than 4096 outputs open at once" : strerror(e);
        if (f->fp)
            fclose(f->fp);
        else
            close(fd);
        unlink(f->tmp);
        free(f->path);
        free(f);
        return qk_err_set(err, QK_EIO, "%s: cannot open temporary file: %s", path, why);
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

/* fsyncs the folder holding path, so a rename survives a power loss (best effort: some file
 * systems refuse fsync on folders). */
static void sync_dir_of(const char *path)
{
    char dir[OF_PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Flushes, fsyncs and closes the temporary; QK_EIO naming the step on failure. */
static int finish(of_file *f, qk_err *err)
{
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
    f->fp = NULL;
    return what ? qk_err_set(err, QK_EIO, "%s: %s failed: %s", f->path, what, strerror(e)) : QK_OK;
}

int of_commit(of_file *f, qk_err *err)
{
    int rc = finish(f, err);
    if (!rc && rename(f->tmp, f->path) != 0)
        rc = qk_err_set(err, QK_EIO, "%s: rename failed: %s", f->path, strerror(errno));
    if (!rc)
        sync_dir_of(f->path);
    release(f, rc != QK_OK);
    return rc;
}

static void old_name(const of_file *f, char *buf, size_t size)
{
    snprintf(buf, size, "%s.old", f->tmp);
}

int of_commit_set(of_file **f, size_t n, qk_err *err)
{
    int rc = QK_OK;
    for (size_t i = 0; i < n && !rc; i++)
        if (f[i])
            rc = finish(f[i], err);
    char old[OF_PATH_MAX + 8];
    size_t done = 0;
    committing = 1;
    for (; done < n && !rc; done++) {
        of_file *x = f[done];
        if (!x)
            continue;
        old_name(x, old, sizeof old);
        /* no link (no old file, or a file system without hard links): nothing to put back */
        x->has_old = link(x->path, old) == 0;
        if (rename(x->tmp, x->path) != 0) {
            rc = qk_err_set(err, QK_EIO, "%s: rename failed: %s", x->path, strerror(errno));
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!f[i])
            continue;
        old_name(f[i], old, sizeof old);
        if (rc && i < done) /* renamed: put the old file back, or remove the new one */
            (void)(f[i]->has_old ? rename(old, f[i]->path) : unlink(f[i]->path));
        else if (f[i]->has_old)
            unlink(old);
    }
    for (size_t i = 0; i < n; i++) /* parts share a folder: one fsync of it is enough */
        if (f[i] && (i == 0 || !f[i - 1]))
            sync_dir_of(f[i]->path);
    for (size_t i = 0; i < n; i++) {
        if (f[i] && f[i]->fp) /* a flush failed before it was reached */
            fclose(f[i]->fp);
        if (f[i])
            release(f[i], rc != QK_OK);
    }
    committing = 0;
    int sig = pending_signal;
    pending_signal = 0;
    if (sig) /* the handler runs again, now outside the commit */
        raise(sig);
    return rc;
}

void of_abort(of_file *f)
{
    if (!f)
        return;
    if (f->fp)
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

/* ---- folders ------------------------------------------------------------------------------ */

/* Removes a folder holding only files (what sy_synth writes, or what --force may replace). */
int of_dir_remove_flat(const char *dir, qk_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return qk_err_set(err, QK_EIO, "%s: cannot open folder: %s", dir, strerror(errno));
    int rc = QK_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[4096];
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p || unlink(p) != 0)
            rc = qk_err_set(err, QK_EIO, "%s: cannot remove '%s'", dir, e->d_name);
    }
    closedir(d);
    if (rc == QK_OK && rmdir(dir) != 0)
        rc = qk_err_set(err, QK_EIO, "%s: cannot remove folder: %s", dir, strerror(errno));
    return rc;
}

/* OUT must be absent, an empty folder, or (with force) a folder holding only files: --force
 * replaces a checkpoint, it never deletes a tree. Checked before any work. */
int of_dir_check(const char *out, int force, qk_err *err)
{
    struct stat st;
    if (lstat(out, &st) != 0)
        return errno == ENOENT ? QK_OK
                               : qk_err_set(err, QK_EIO, "%s: %s", out, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return qk_err_set(err, QK_EFORMAT, "%s: exists and is not a folder", out);
    DIR *d = opendir(out);
    if (!d)
        return qk_err_set(err, QK_EIO, "%s: cannot open folder: %s", out, strerror(errno));
    int rc = QK_OK;
    struct dirent *e;
    while (rc == QK_OK && (e = readdir(d))) {
        char p[4096];
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (!force)
            rc = qk_err_set(err, QK_EFORMAT,
                            "%s: folder exists and is not empty (--force replaces it)", out);
        else if (snprintf(p, sizeof p, "%s/%s", out, e->d_name) < (int)sizeof p &&
                 (lstat(p, &st) != 0 || S_ISDIR(st.st_mode)))
            rc = qk_err_set(err, QK_EFORMAT,
                            "%s: holds the sub-folder '%.100s'; refusing to replace it", out,
                            e->d_name);
    }
    closedir(d);
    return rc;
}

/* Renames the finished folder into place; with force, the old one is moved aside first and
 * removed only once the new one is in place. */
int of_dir_install(const char *tmp, const char *out, int force, qk_err *err)
{
    if (rename(tmp, out) == 0)
        return QK_OK;
    int e = errno, occupied = e == ENOTEMPTY || e == EEXIST;
    if (!occupied || !force)
        return qk_err_set(err, occupied ? QK_EFORMAT : QK_EIO,
                          "%s: cannot rename the finished folder into place: %s", out,
                          strerror(e));
    char old[4096];
    if (snprintf(old, sizeof old, "%s.old-XXXXXX", out) >= (int)sizeof old || !mkdtemp(old))
        return qk_err_set(err, QK_EIO, "%s: cannot create a folder to move it aside", out);
    if (rename(out, old) != 0) {
        e = errno;
        rmdir(old);
        return qk_err_set(err, QK_EIO, "%s: cannot move it aside: %s", out, strerror(e));
    }
    if (rename(tmp, out) != 0) {
        e = errno;
        if (rename(old, out) != 0)
            return qk_err_set(err, QK_EIO, "%s: rename failed (%s); the old folder is now %s",
                              out, strerror(e), old);
        return qk_err_set(err, QK_EIO, "%s: rename failed: %s", out, strerror(e));
    }
    return of_dir_remove_flat(old, err);
}

