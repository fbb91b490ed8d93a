/* bgwrite.h — one write in flight on a background thread, so that producing the next buffer
 * (generating, converting) and the disk work at once.
 *
 * A hand-off (bg_submit) first waits for the write in flight, which also frees the buffer it was
 * writing: a producer alternating two buffers may refill the other one as soon as bg_submit
 * returns. The writer's first error is kept and returned by the next hand-off or wait. Without a
 * thread (creation failed) every write is synchronous: slower, the same bytes. */
#ifndef QKIT_FORMATS_BGWRITE_H
#define QKIT_FORMATS_BGWRITE_H

#include <pthread.h>
#include <stddef.h>

#include "../quant/status.h"

/* Writes n bytes of data to sink; a status and err's message on failure. */
typedef int (*bg_write_fn)(void *sink, const void *data, size_t n, qk_err *err);

typedef struct {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, busy, quit, rc;
    bg_write_fn fn;
    void *sink;
    const void *data;
    size_t n;
    qk_err err;
} bg_writer;

void bg_start(bg_writer *b);
/* Waits for the write in flight; returns its status (err, when non-NULL, gets its message). */
int bg_wait(bg_writer *b, qk_err *err);
/* Waits for the write in flight, then hands data[0..n) to fn(sink, …) on the thread. data must
 * stay valid until the next bg_submit or bg_wait returns. */
int bg_submit(bg_writer *b, bg_write_fn fn, void *sink, const void *data, size_t n, qk_err *err);
/* Waits, then ends the thread. */
void bg_stop(bg_writer *b);

#endif
