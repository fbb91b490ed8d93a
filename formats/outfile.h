/* outfile.h — crash-safe output files: write PATH.tmp-XXXXXX, fsync, rename over PATH.
 *
 * Contract: nothing ever appears at PATH unless of_commit() succeeds. of_abort() (and of_commit()
 * on failure) removes the temporary. Open temporaries are registered so that a signal handler can
 * call of_remove_all_temporaries() (async-signal-safe) before the process dies. */
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

/* Closes and removes the temporary; frees f. Accepts NULL. */
void of_abort(of_file *f);

/* A whole in-memory buffer written to path the same crash-safe way. */
int of_write_all(const char *path, const void *data, size_t n, qk_err *err);

/* Unlinks every registered temporary. Async-signal-safe: for SIGINT/SIGTERM handlers. */
void of_remove_all_temporaries(void);

#endif
