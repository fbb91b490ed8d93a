/* outfile.h — crash-safe output files: write PATH.tmp-XXXXXX, fsync, rename over PATH, fsync
 * the folder.
 *
 * Contract: nothing ever appears at PATH unless of_commit() succeeds. of_abort() (and of_commit()
 * on failure) removes the temporary. Open temporaries are registered so that a signal handler can
 * call of_remove_all_temporaries() (async-signal-safe) before the process dies.
 *
 * Sets of files (split GGUF parts) are committed together by of_commit_set(): every part is
 * written and fsynced as a temporary first, and only then renamed into place, one after the
 * other. While the renames run, SIGINT/SIGTERM/SIGHUP are deferred (handlers call
 * of_defer_signal() first; the signal is raised again as soon as the last rename is done), so an
 * interruption leaves either the complete old set or the complete new set. A part that replaces
 * an existing file keeps a hard link to the old file until all renames succeeded, so a failed
 * rename puts the old set back. Only SIGKILL or a crash between two renames can leave a mixed
 * set; split GGUF readers detect that through the parts' split.id (gguf.h). */
#ifndef QKIT_FORMATS_OUTFILE_H
#define QKIT_FORMATS_OUTFILE_H

#include <stdio.h>

#include "../quant/status.h"

typedef struct of_file of_file;

/* Creates the temporary next to path. *out owns it until of_commit/of_abort. */
int of_open(of_file **out, const char *path, qk_err *err);

/* The stdio stream to write to; borrowed until of_commit/of_abort. */
FILE *of_stream(of_file *f);

/* Flushes, fsyncs, closes and renames into place; on any failure removes the temporary.
 * Frees f either way. */
int of_commit(of_file *f, qk_err *err);

/* Commits n files as one set (see above): flush and fsync all, then rename all with signals
 * deferred; on any failure every temporary is removed and the files already renamed are put
 * back (old file restored, or the new one removed when there was none). Frees every f[i] (NULL
 * entries are skipped) either way. */
int of_commit_set(of_file **f, size_t n, qk_err *err);

/* For signal handlers, before anything else: returns 1 when a set commit is renaming (the
 * signal is recorded and raised again when the renames are done; the handler must return at
 * once), 0 otherwise. Async-signal-safe. */
int of_defer_signal(int sig);

/* Closes and removes the temporary; frees f. Accepts NULL. */
void of_abort(of_file *f);

/* A whole in-memory buffer written to path the same crash-safe way. */
int of_write_all(const char *path, const void *data, size_t n, qk_err *err);

/* Unlinks every registered temporary. Async-signal-safe: for SIGINT/SIGTERM handlers. */
void of_remove_all_temporaries(void);

/* Folders written whole (checkpoints): write everything into a temporary folder beside OUT, then
 * of_dir_install(). of_dir_check: OUT must be absent, an empty folder, or (force) a folder
 * holding only files — a tree is never deleted. of_dir_install renames tmp to out; with force an
 * existing out is moved aside first and removed only once the new one is in place.
 * of_dir_remove_flat removes a folder of files. */
int of_dir_check(const char *out, int force, qk_err *err);
int of_dir_install(const char *tmp, const char *out, int force, qk_err *err);
int of_dir_remove_flat(const char *dir, qk_err *err);

#endif
