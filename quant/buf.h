/* buf.h — the one growable byte buffer and the one array-growth rule of qkit.
 *
 * It lives in quant/ next to status.h because quant/ is the lowest module: formats/, calib/,
 * convert/ and cli/ all include it. Capacities grow geometrically (at least doubling), every size
 * is checked for overflow before it is multiplied or added, and a failed growth leaves the old
 * memory and counts untouched. */
#ifndef QKIT_BUF_H
#define QKIT_BUF_H

#include <stddef.h>

/* A growable byte buffer. Zero-initialise (`qk_buf b = {0};`), append, read b.p[0..b.n), free.
 * After any successful append b.p[b.n] is '\0' (not counted in n), so text can be used as a C
 * string. A failed append sets the sticky `oom` flag: later appends do nothing and fail too, so a
 * writer may append many pieces and check once. */
typedef struct {
    char *p;
    size_t n;   /* bytes used */
    size_t cap; /* bytes allocated (room for n, the NUL and spare) */
    int oom;    /* an append or reserve failed (sticky) */
} qk_buf;

/* Makes room for `extra` more bytes after b.n plus the terminating NUL. QK_OK, or QK_ENOMEM when
 * the allocation fails or the size would overflow (then the sticky oom flag is set). */
int qk_buf_reserve(qk_buf *b, size_t extra);

/* Appends n bytes (data may be NULL when n is 0) and keeps the NUL after them. QK_OK or
 * QK_ENOMEM (sticky, see above). */
int qk_buf_append(qk_buf *b, const void *data, size_t n);

/* Appends a C string without its NUL. */
int qk_buf_puts(qk_buf *b, const char *s);

/* Frees the bytes and resets b to empty (oom cleared). NULL-tolerant. */
void qk_buf_free(qk_buf *b);

/* Grows a malloc'd array so it holds at least `need` elements of `elem` bytes. *cap is the number
 * of elements allocated; the new capacity is the larger of need and twice *cap (at least 16).
 * Returns the array to store back (moved or not; never NULL on success, even for need == 0) and
 * updates *cap; returns NULL when out of memory or when need * elem would overflow, leaving arr
 * (still owned by the caller) and *cap untouched:
 *
 *     int32_t *ids = qk_grow(v->ids, &v->cap, v->n + 1, sizeof *ids);
 *     if (!ids)
 *         return qk_err_set(err, QK_ENOMEM, "%s: out of memory", name);
 *     v->ids = ids;
 *
 * (It returns the pointer rather than taking a `void **`, which would need a cast at each call and
 * an access through an incompatible pointer type.) */
void *qk_grow(void *arr, size_t *cap, size_t need, size_t elem);

#endif
