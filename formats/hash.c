/* hash.c — see hash.h. */
#define _GNU_SOURCE
#include "hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define H1 0x9E3779B185EBCA87ULL
#define H2 0xC2B2AE3D27D4EB4FULL
#define H3 0x165667B19E3779F9ULL

static uint64_t rotl64(uint64_t x, int r) { return x << r | x >> (64 - r); }
static uint64_t hround(uint64_t acc, uint64_t in) { return rotl64(acc + in * H2, 31) * H1; }

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

void qk_hash_init(qk_hash *h) { *h = (qk_hash){.v = {H1 + H2, H2, 0, 0 - H1}}; }

static void stripe(qk_hash *h, const uint8_t *p)
{
    for (int k = 0; k < 4; k++)
        h->v[k] = hround(h->v[k], le64(p + 8 * k));
}

void qk_hash_update(qk_hash *h, const void *data, size_t n)
{
    const uint8_t *p = data;
    h->len += n;
    if (h->nbuf) {
        size_t take = 32 - h->nbuf < n ? 32 - h->nbuf : n;
        memcpy(h->buf + h->nbuf, p, take);
        h->nbuf += take;
        p += take;
        n -= take;
        if (h->nbuf < 32)
            return;
        stripe(h, h->buf);
        h->nbuf = 0;
    }
    for (; n >= 32; p += 32, n -= 32)
        stripe(h, p);
    if (n)
        memcpy(h->buf, p, n);
    h->nbuf = n;
}

void qk_hash_u64(qk_hash *h, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    qk_hash_update(h, b, sizeof b);
}

uint64_t qk_hash_final(const qk_hash *h)
{
    uint64_t x = rotl64(h->v[0], 1) + rotl64(h->v[1], 7) + rotl64(h->v[2], 12) + rotl64(h->v[3], 18);
    for (int k = 0; k < 4; k++)
        x = (x ^ hround(0, h->v[k])) * H1 + H3;
    x += h->len;
    for (size_t i = 0; i < h->nbuf; i++)
        x = rotl64(x ^ (h->buf[i] * H3), 11) * H1;
    x ^= x >> 33;
    x *= H2;
    x ^= x >> 29;
    x *= H3;
    return x ^ x >> 32;
}

#define FP_WHOLE ((uint64_t)4 << 20)
#define FP_END ((uint64_t)1 << 20)
#define FP_PAGE ((uint64_t)4096)
#define FP_PAGES 64

/* Hashes bytes [off, off + n) of fd. */
static int hash_range(int fd, const char *path, uint64_t off, uint64_t n, uint8_t *buf,
                      qk_hash *h, qk_err *err)
{
    while (n > 0) {
        size_t want = n < FP_END ? (size_t)n : (size_t)FP_END;
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return qk_err_set(err, QK_EIO, "%s: cannot read %zu bytes at offset %llu: %s", path,
                              want, (unsigned long long)off, got < 0 ? strerror(errno) : "file shrank");
        qk_hash_update(h, buf, (size_t)got);
        off += (uint64_t)got;
        n -= (uint64_t)got;
    }
    return QK_OK;
}

int qk_file_fingerprint(const char *path, qk_hash *h, qk_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qk_err_set(err, errno == ENOENT || errno == ENOTDIR ? QK_ENOTFOUND : QK_EIO,
                          "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    uint8_t *buf = malloc(FP_END);
    int rc = QK_OK;
    if (!buf)
        rc = qk_err_set(err, QK_ENOMEM, "%s: out of memory", path);
    else if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = qk_err_set(err, QK_EIO, "%s: cannot fingerprint: not a regular file", path);
    uint64_t size = rc ? 0 : (uint64_t)st.st_size;
    qk_hash_u64(h, size);
    if (!rc && size <= FP_WHOLE) {
        rc = hash_range(fd, path, 0, size, buf, h, err);
    } else if (!rc) {
        rc = hash_range(fd, path, 0, FP_END, buf, h, err);
        uint64_t span = size - 2 * FP_END - FP_PAGE;
        for (int k = 0; k < FP_PAGES && !rc; k++)
            rc = hash_range(fd, path, FP_END + span / (FP_PAGES - 1) * (uint64_t)k, FP_PAGE, buf,
                            h, err);
        if (!rc)
            rc = hash_range(fd, path, size - FP_END, FP_END, buf, h, err);
    }
    free(buf);
    close(fd);
    return rc;
}
