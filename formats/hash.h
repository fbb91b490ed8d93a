/* hash.h — the one non-cryptographic 64-bit hash of qkit (split-set ids, input fingerprints).
 *
 * Four xxHash64-style lanes over 32-byte stripes: the result depends only on the bytes, not on
 * how they were cut into qk_hash_update() calls, and it runs far faster than a disk. It detects
 * accidents (parts of two different outputs, a changed input), not adversaries. */
#ifndef QKIT_FORMATS_HASH_H
#define QKIT_FORMATS_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "../quant/status.h"

typedef struct {
    uint64_t v[4];
    uint8_t buf[32];
    size_t nbuf;
    uint64_t len;
} qk_hash;

void qk_hash_init(qk_hash *h);
void qk_hash_update(qk_hash *h, const void *data, size_t n);
void qk_hash_u64(qk_hash *h, uint64_t v); /* 8 bytes, little-endian */
uint64_t qk_hash_final(const qk_hash *h); /* h stays usable */

/* Adds a fingerprint of the file at path to h: its size, then all of it when it holds at most
 * 4 MiB, else its first and last 1 MiB and 64 evenly spaced 4 KiB pages in between. Cheap on a
 * terabyte checkpoint on a network filesystem (about 2.3 MiB read per file), and it changes when
 * the file is replaced by any other file of a different size, header or sampled page. The path
 * itself is not hashed (the same input under two names has one fingerprint).
 * QK_EIO / QK_ENOTFOUND with "PATH: cannot …" on failure. */
int qk_file_fingerprint(const char *path, qk_hash *h, qk_err *err);

#endif
