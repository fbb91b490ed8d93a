/* buf.c — the growable byte buffer and the array-growth rule (see buf.h). */
#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

enum { MIN_ELEMS = 16, MIN_BYTES = 64 };

/* The capacity after growing from cap to hold at least need: twice cap, at least need and lo,
 * never more than max (the caller checked need <= max). */
static size_t next_cap(size_t cap, size_t need, size_t lo, size_t max)
{
    size_t c = cap <= max / 2 ? 2 * cap : max;
    if (c < lo)
        c = lo < max ? lo : max;
    return c < need ? need : c;
}

void *qk_grow(void *arr, size_t *cap, size_t need, size_t elem)
{
    if (need == 0)
        need = 1;
    if (arr && need <= *cap)
        return arr;
    if (elem == 0 || need > SIZE_MAX / elem)
        return NULL;
    size_t c = next_cap(arr ? *cap : 0, need, MIN_ELEMS, SIZE_MAX / elem);
    void *p = realloc(arr, c * elem);
    if (p)
        *cap = c;
    return p;
}

int qk_buf_reserve(qk_buf *b, size_t extra)
{
    if (b->oom)
        return QK_ENOMEM;
    if (b->p && extra < b->cap - b->n) /* room for extra bytes and the NUL */
        return QK_OK;
    if (extra > SIZE_MAX - 1 - b->n) {
        b->oom = 1;
        return QK_ENOMEM;
    }
    size_t c = next_cap(b->p ? b->cap : 0, b->n + extra + 1, MIN_BYTES, SIZE_MAX);
    char *p = realloc(b->p, c);
    if (!p) {
        b->oom = 1;
        return QK_ENOMEM;
    }
    if (!b->p)
        p[0] = '\0';
    b->p = p;
    b->cap = c;
    return QK_OK;
}

int qk_buf_append(qk_buf *b, const void *data, size_t n)
{
    int rc = qk_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = '\0';
    return QK_OK;
}

int qk_buf_puts(qk_buf *b, const char *s) { return qk_buf_append(b, s, strlen(s)); }

void qk_buf_free(qk_buf *b)
{
    if (!b)
        return;
    free(b->p);
    *b = (qk_buf){0};
}
