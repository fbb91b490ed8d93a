/* bgwrite.c — see bgwrite.h. */
#include "bgwrite.h"

static void *bg_main(void *arg)
{
    bg_writer *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->busy && !b->quit)
            pthread_cond_wait(&b->cv, &b->mu);
        if (!b->busy)
            break;
        pthread_mutex_unlock(&b->mu);
        int rc = b->fn(b->sink, b->data, b->n, &b->err);
        pthread_mutex_lock(&b->mu);
        b->rc = rc;
        b->busy = 0;
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

void bg_start(bg_writer *b)
{
    if (pthread_mutex_init(&b->mu, NULL) != 0)
        return;
    if (pthread_cond_init(&b->cv, NULL) != 0) {
        pthread_mutex_destroy(&b->mu);
        return;
    }
    b->started = 1 + (pthread_create(&b->th, NULL, bg_main, b) == 0);
}

int bg_wait(bg_writer *b, qk_err *err)
{
    if (b->started != 2)
        return QK_OK;
    pthread_mutex_lock(&b->mu);
    while (b->busy)
        pthread_cond_wait(&b->cv, &b->mu);
    int rc = b->rc;
    b->rc = QK_OK;
    pthread_mutex_unlock(&b->mu);
    if (rc != QK_OK && err)
        *err = b->err;
    return rc;
}

int bg_submit(bg_writer *b, bg_write_fn fn, void *sink, const void *data, size_t n, qk_err *err)
{
    if (b->started != 2)
        return fn(sink, data, n, err);
    int rc = bg_wait(b, err);
    if (rc != QK_OK)
        return rc;
    pthread_mutex_lock(&b->mu);
    b->fn = fn;
    b->sink = sink;
    b->data = data;
    b->n = n;
    b->busy = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return QK_OK;
}

void bg_stop(bg_writer *b)
{
    if (b->started == 2) {
        bg_wait(b, NULL);
        pthread_mutex_lock(&b->mu);
        b->quit = 1;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->th, NULL);
    }
    if (b->started) {
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
    }
    b->started = 0;
}
